//! Heron's x86 CPU: the architectural state ([`state::CpuState`], one `#[repr(C)]` struct) and
//! the tier-0 interpreter over iced-x86-decoded blocks, the reference semantics for every
//! later tier (DESIGN.md §1–§2, §4, §6–§8).
//!
//! The CPU sees the rest of the machine only through [`heron_softmmu::Bus`] (port I/O, MMIO,
//! the INTR line) and guest RAM ([`heron_softmmu::GuestRam`]).

#![warn(missing_docs)]

pub mod block;
pub mod cpuid;
pub mod debug;
mod exec;
mod fast;
pub mod flags;
pub mod mmu;
mod sse;
pub mod state;
mod system;
mod x87;
pub mod testutil;
pub mod tier1;
pub mod trace;

pub use block::{Cpu, ExitReason, Stats};
pub use state::CpuState;

/// An exception raised by an instruction (Intel SDM Vol. 3A §6.3.1, Table 6-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    /// Vector 0–31.
    pub vector: u8,
    /// Error code pushed by the exception, if it has one.
    pub error_code: Option<u32>,
}

/// Exception vectors (Intel SDM Vol. 3A Table 6-1).
pub mod vec {
    /// #DE divide error.
    pub const DE: u8 = 0;
    /// #DB debug.
    pub const DB: u8 = 1;
    /// NMI.
    pub const NMI: u8 = 2;
    /// #BP breakpoint.
    pub const BP: u8 = 3;
    /// #OF overflow.
    pub const OF: u8 = 4;
    /// #BR bound range.
    pub const BR: u8 = 5;
    /// #UD invalid opcode.
    pub const UD: u8 = 6;
    /// #NM device not available.
    pub const NM: u8 = 7;
    /// #DF double fault.
    pub const DF: u8 = 8;
    /// #TS invalid TSS.
    pub const TS: u8 = 10;
    /// #NP segment not present.
    pub const NP: u8 = 11;
    /// #SS stack fault.
    pub const SS: u8 = 12;
    /// #GP general protection.
    pub const GP: u8 = 13;
    /// #PF page fault.
    pub const PF: u8 = 14;
    /// #MF x87 floating-point error.
    pub const MF: u8 = 16;
    /// #AC alignment check.
    pub const AC: u8 = 17;
    /// #XM SIMD floating-point exception.
    pub const XM: u8 = 19;
}

impl Exception {
    /// An exception without error code.
    pub const fn new(vector: u8) -> Self {
        Exception { vector, error_code: None }
    }
    /// An exception with an error code.
    pub const fn with_code(vector: u8, code: u32) -> Self {
        Exception { vector, error_code: Some(code) }
    }
    /// #GP(code).
    pub const fn gp(code: u32) -> Self {
        Self::with_code(vec::GP, code)
    }
    /// #UD.
    pub const fn ud() -> Self {
        Self::new(vec::UD)
    }
}

/// Result of an operation that can raise a guest exception.
pub type Res<T> = Result<T, Exception>;

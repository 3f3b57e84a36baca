//! Heron's softMMU: guest-physical RAM, the TLB and the page walk, and the bus the CPU uses for
//! MMIO and port I/O.
//!
//! The CPU crate owns the access logic (segmentation, then [`Tlb`] lookup, then on a miss
//! [`walk::walk`] and a TLB fill); this crate holds the pieces that do not depend on the
//! instruction set.

#![warn(missing_docs)]

pub mod ram;
pub mod tlb;
pub mod walk;

pub use ram::{GuestRam, RamError};
pub use tlb::{Tlb, TlbEntry, TlbKind};
pub use walk::{walk, Access, PagingMode, PagingRegs, Translation, WalkFault};

/// The devices side of the machine, as seen by the CPU: port I/O, MMIO, and the interrupt line.
///
/// `icount` is the number of guest instructions retired so far; the machine turns it into
/// virtual time (DESIGN.md §8), so a device sees the same time on every run.
pub trait Bus {
    /// `IN` of `size` bytes (1, 2 or 4) from `port`.
    fn pio_read(&mut self, icount: u64, port: u16, size: u8) -> u32;
    /// `OUT` of `size` bytes (1, 2 or 4) to `port`.
    fn pio_write(&mut self, icount: u64, port: u16, size: u8, value: u32);
    /// Read of `size` bytes (1, 2, 4 or 8) at a guest-physical address outside RAM.
    fn mmio_read(&mut self, icount: u64, addr: u64, size: u8) -> u64;
    /// Write of `size` bytes (1, 2, 4 or 8) at a guest-physical address outside RAM.
    fn mmio_write(&mut self, icount: u64, addr: u64, size: u8, value: u64);
    /// Level of the INTR line from the interrupt controller (8259A INT output).
    fn interrupt_pending(&self) -> bool;
    /// The INTA cycle: the vector of the interrupt the CPU now takes.
    fn acknowledge_interrupt(&mut self) -> u8;
}

//! The architectural state of one x86 CPU in a single `#[repr(C)]` struct (DESIGN.md §1):
//! translated code and the interpreter read and write the same fields.

use heron_softmmu::Tlb;

/// RFLAGS bits (Intel SDM Vol. 1 §3.4.3).
pub mod rf {
    /// Carry flag.
    pub const CF: u64 = 1 << 0;
    /// Reserved, always 1.
    pub const FIXED: u64 = 1 << 1;
    /// Parity flag.
    pub const PF: u64 = 1 << 2;
    /// Auxiliary carry flag.
    pub const AF: u64 = 1 << 4;
    /// Zero flag.
    pub const ZF: u64 = 1 << 6;
    /// Sign flag.
    pub const SF: u64 = 1 << 7;
    /// Trap flag.
    pub const TF: u64 = 1 << 8;
    /// Interrupt enable flag.
    pub const IF: u64 = 1 << 9;
    /// Direction flag.
    pub const DF: u64 = 1 << 10;
    /// Overflow flag.
    pub const OF: u64 = 1 << 11;
    /// I/O privilege level (2 bits).
    pub const IOPL: u64 = 3 << 12;
    /// Nested task.
    pub const NT: u64 = 1 << 14;
    /// Resume flag.
    pub const RF: u64 = 1 << 16;
    /// Virtual-8086 mode.
    pub const VM: u64 = 1 << 17;
    /// Alignment check.
    pub const AC: u64 = 1 << 18;
    /// Virtual interrupt flag.
    pub const VIF: u64 = 1 << 19;
    /// Virtual interrupt pending.
    pub const VIP: u64 = 1 << 20;
    /// CPUID instruction available.
    pub const ID: u64 = 1 << 21;
    /// The six status flags kept lazily (CC_OP).
    pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;
}

/// Control register bits (Intel SDM Vol. 3A §2.5).
pub mod cr {
    /// CR0.PE: protection enable.
    pub const CR0_PE: u64 = 1 << 0;
    /// CR0.MP.
    pub const CR0_MP: u64 = 1 << 1;
    /// CR0.EM: x87 emulation (x87 instructions raise #NM).
    pub const CR0_EM: u64 = 1 << 2;
    /// CR0.TS: task switched (FPU/SSE raise #NM).
    pub const CR0_TS: u64 = 1 << 3;
    /// CR0.ET (fixed 1).
    pub const CR0_ET: u64 = 1 << 4;
    /// CR0.NE.
    pub const CR0_NE: u64 = 1 << 5;
    /// CR0.WP: supervisor write protection.
    pub const CR0_WP: u64 = 1 << 16;
    /// CR0.AM.
    pub const CR0_AM: u64 = 1 << 18;
    /// CR0.NW.
    pub const CR0_NW: u64 = 1 << 29;
    /// CR0.CD.
    pub const CR0_CD: u64 = 1 << 30;
    /// CR0.PG: paging.
    pub const CR0_PG: u64 = 1 << 31;
    /// CR4.VME.
    pub const CR4_VME: u64 = 1 << 0;
    /// CR4.PVI.
    pub const CR4_PVI: u64 = 1 << 1;
    /// CR4.TSD: RDTSC privileged.
    pub const CR4_TSD: u64 = 1 << 2;
    /// CR4.DE.
    pub const CR4_DE: u64 = 1 << 3;
    /// CR4.PSE: 4 MiB pages in 32-bit paging.
    pub const CR4_PSE: u64 = 1 << 4;
    /// CR4.PAE.
    pub const CR4_PAE: u64 = 1 << 5;
    /// CR4.MCE.
    pub const CR4_MCE: u64 = 1 << 6;
    /// CR4.PGE: global pages.
    pub const CR4_PGE: u64 = 1 << 7;
    /// CR4.PCE.
    pub const CR4_PCE: u64 = 1 << 8;
    /// CR4.OSFXSR: SSE enabled, FXSAVE saves XMM.
    pub const CR4_OSFXSR: u64 = 1 << 9;
    /// CR4.OSXMMEXCPT.
    pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
    /// EFER.SCE: SYSCALL enable.
    pub const EFER_SCE: u64 = 1 << 0;
    /// EFER.LME: long mode enable.
    pub const EFER_LME: u64 = 1 << 8;
    /// EFER.LMA: long mode active.
    pub const EFER_LMA: u64 = 1 << 10;
    /// EFER.NXE: execute-disable enable.
    pub const EFER_NXE: u64 = 1 << 11;
}

/// A segment register with its descriptor cache (Intel SDM Vol. 3A §3.4.3).
///
/// `attr` holds descriptor bits 40–47 in bits 0–7 (type, S, DPL, P) and bits 52–55 in bits
/// 12–15 (AVL, L, D/B, G), the layout VMX uses for access rights.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Visible part: the selector.
    pub selector: u16,
    /// Access rights (see above).
    pub attr: u16,
    /// Limit in bytes (already scaled by G).
    pub limit: u32,
    /// Base linear address.
    pub base: u64,
}

/// Segment attribute bits in [`Segment::attr`].
pub mod seg {
    /// Accessed (type bit 0).
    pub const ACCESSED: u16 = 1 << 0;
    /// Writable (data) / readable (code) — type bit 1.
    pub const RW: u16 = 1 << 1;
    /// Expand-down (data) / conforming (code) — type bit 2.
    pub const DC: u16 = 1 << 2;
    /// Code segment — type bit 3.
    pub const CODE: u16 = 1 << 3;
    /// S: code/data (1) or system (0).
    pub const S: u16 = 1 << 4;
    /// Present.
    pub const P: u16 = 1 << 7;
    /// L: 64-bit code segment.
    pub const L: u16 = 1 << 13;
    /// D/B: default 32-bit operand size / big stack.
    pub const DB: u16 = 1 << 14;
    /// G: limit in 4 KiB units.
    pub const G: u16 = 1 << 15;
}

impl Segment {
    /// DPL of the cached descriptor.
    pub fn dpl(&self) -> u8 {
        ((self.attr >> 5) & 3) as u8
    }
    /// A real-mode segment: base = selector × 16, 64 KiB limit, writable data.
    pub fn real(selector: u16) -> Self {
        Segment { selector, attr: seg::P | seg::S | seg::RW | seg::ACCESSED, limit: 0xFFFF, base: (selector as u64) << 4 }
    }
    /// Decode a 8-byte segment descriptor into a cache value (Intel SDM Vol. 3A §3.4.5).
    pub fn from_descriptor(selector: u16, d: u64) -> Self {
        let base = ((d >> 16) & 0xFF_FFFF) | (((d >> 56) & 0xFF) << 24);
        let mut limit = ((d & 0xFFFF) | ((d >> 32) & 0xF_0000)) as u32;
        let attr = (((d >> 40) & 0xFF) | (((d >> 52) & 0xF) << 12)) as u16;
        if attr & seg::G != 0 {
            limit = (limit << 12) | 0xFFF;
        }
        Segment { selector, attr, limit, base }
    }
}

/// A descriptor-table register (GDTR, IDTR).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TableReg {
    /// Base linear address.
    pub base: u64,
    /// Limit in bytes (the last valid byte offset).
    pub limit: u16,
}

/// Indices into [`CpuState::seg`].
pub mod sreg {
    /// ES.
    pub const ES: usize = 0;
    /// CS.
    pub const CS: usize = 1;
    /// SS.
    pub const SS: usize = 2;
    /// DS.
    pub const DS: usize = 3;
    /// FS.
    pub const FS: usize = 4;
    /// GS.
    pub const GS: usize = 5;
}

/// Lazy-flags operation kinds (QEMU's CC_OP): which operation last set the status flags.
/// The status flags are computed from `cc_dst`/`cc_src`/`cc_src2` only when read.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CcOp {
    /// Flags are materialized in `cc_src` (CF, PF, AF, ZF, SF, OF bits).
    Eflags = 0,
    /// ADD: dst = result, src = second operand.
    Add,
    /// ADC: dst = result, src = second operand, src2 = carry in.
    Adc,
    /// SUB/CMP/NEG: dst = result, src = second operand.
    Sub,
    /// SBB: dst = result, src = second operand, src2 = borrow in.
    Sbb,
    /// AND/OR/XOR/TEST: dst = result; CF = OF = 0.
    Logic,
    /// INC: dst = result, src = CF before.
    Inc,
    /// DEC: dst = result, src = CF before.
    Dec,
    /// SHL/SAL: dst = result, src = operand shifted by count − 1.
    Shl,
    /// SHR: dst = result, src = operand shifted by count − 1, src2 = original operand.
    Shr,
    /// SAR: dst = result, src = operand shifted by count − 1.
    Sar,
    /// MUL/IMUL: dst = low result, src = overflow indicator (non-zero: CF = OF = 1).
    Mul,
}

/// x87 FPU state (Intel SDM Vol. 1 §8.1). Registers are 80-bit extended values stored as
/// (64-bit significand, 16-bit sign+exponent), indexed physically (ST(i) = regs[(top+i)&7]).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct X87 {
    /// Physical data registers R0–R7.
    pub regs: [[u8; 10]; 8],
    /// Control word.
    pub fcw: u16,
    /// Status word, without TOP (bits 11–13 are taken from `top`).
    pub fsw: u16,
    /// Top-of-stack index.
    pub top: u8,
    /// Full tag word (2 bits per register, 11 = empty).
    pub ftw: u16,
    /// Last instruction opcode (11 bits).
    pub fop: u16,
    /// Last instruction pointer.
    pub fip: u64,
    /// Last data pointer.
    pub fdp: u64,
}

impl Default for X87 {
    fn default() -> Self {
        X87 { regs: [[0; 10]; 8], fcw: 0x037F, fsw: 0, top: 0, ftw: 0xFFFF, fop: 0, fip: 0, fdp: 0 }
    }
}

/// Model-specific registers kept in the state (Intel SDM Vol. 4).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Msrs {
    /// IA32_STAR (0xC000_0081).
    pub star: u64,
    /// IA32_LSTAR (0xC000_0082).
    pub lstar: u64,
    /// IA32_CSTAR (0xC000_0083).
    pub cstar: u64,
    /// IA32_FMASK (0xC000_0084), called SFMASK.
    pub sfmask: u64,
    /// IA32_KERNEL_GS_BASE (0xC000_0102), swapped by SWAPGS.
    pub kernel_gs_base: u64,
    /// IA32_SYSENTER_CS/ESP/EIP (0x174–0x176).
    pub sysenter: [u64; 3],
    /// IA32_PAT (0x277).
    pub pat: u64,
    /// IA32_APIC_BASE (0x1B).
    pub apic_base: u64,
    /// IA32_MISC_ENABLE (0x1A0).
    pub misc_enable: u64,
    /// Offset added to the virtual clock for IA32_TSC (0x10) writes.
    pub tsc_offset: u64,
    /// IA32_MTRR_DEF_TYPE (0x2FF).
    pub mtrr_def_type: u64,
    /// Variable-range MTRR base/mask pairs (0x200–0x20F).
    pub mtrr_var: [u64; 16],
    /// Fixed-range MTRRs (0x250, 0x258, 0x259, 0x268–0x26F).
    pub mtrr_fix: [u64; 11],
}

/// The whole architectural state of the CPU, plus the TLB and run-control fields.
#[repr(C)]
pub struct CpuState {
    /// RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8–R15 (Intel encoding order).
    pub regs: [u64; 16],
    /// Instruction pointer (offset in CS).
    pub rip: u64,
    /// RFLAGS except the six status flags, which live in the lazy fields below.
    pub rflags: u64,
    /// Lazy flags: the last flag-setting operation (a [`CcOp`] as u32).
    pub cc_op: u32,
    /// Operand size in bytes of that operation (1, 2, 4, 8).
    pub cc_size: u32,
    /// Lazy flags: result.
    pub cc_dst: u64,
    /// Lazy flags: source operand (see [`CcOp`]).
    pub cc_src: u64,
    /// Lazy flags: second source (carry in, original operand).
    pub cc_src2: u64,
    /// ES, CS, SS, DS, FS, GS ([`sreg`] indices).
    pub seg: [Segment; 6],
    /// LDTR with its descriptor cache.
    pub ldtr: Segment,
    /// TR with its descriptor cache.
    pub tr: Segment,
    /// GDTR.
    pub gdtr: TableReg,
    /// IDTR.
    pub idtr: TableReg,
    /// CR0.
    pub cr0: u64,
    /// CR2: last page-fault linear address.
    pub cr2: u64,
    /// CR3: page-table base.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8: task priority (TPR[7:4]).
    pub cr8: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// DR0–DR3, DR6, DR7 (stored, not yet acted on).
    pub dr: [u64; 8],
    /// XMM0–XMM15.
    pub xmm: [u128; 16],
    /// MXCSR.
    pub mxcsr: u32,
    /// x87 state.
    pub x87: X87,
    /// MSRs.
    pub msr: Msrs,
    /// Guest instructions retired since reset: the virtual clock (DESIGN.md §8).
    pub icount: u64,
    /// Set by anyone who needs the CPU to leave its run loop at the next instruction boundary.
    pub exit_request: u32,
    /// Interrupts are inhibited for one instruction (after STI, MOV SS, POP SS).
    pub irq_inhibit: bool,
    /// The CPU is halted (HLT) until an interrupt.
    pub halted: bool,
    /// Mask applied to physical addresses (bit 20 cleared when the A20 gate is off).
    pub a20_mask: u64,
    /// The software TLB.
    pub tlb: Tlb,
}

impl CpuState {
    /// Status of the CPU after RESET (Intel SDM Vol. 3A §9.1.1, Table 9-1): real mode,
    /// CS = F000 with base FFFF0000, IP = FFF0.
    pub fn new() -> Box<Self> {
        // Built in place: the TLB makes the state too large for the stack.
        // SAFETY: every field of CpuState is plain data (integers, bools, arrays and
        // `#[repr(C)]` structs of them, the `u32` CC_OP) for which all-zero bytes are valid.
        let mut s: Box<CpuState> = unsafe { Box::new_zeroed().assume_init() };
        s.tlb.reset();
        s.rip = 0xFFF0;
        s.rflags = rf::FIXED;
        s.cc_op = CcOp::Eflags as u32;
        s.cc_size = 4;
        s.seg = [Segment::real(0); 6];
        s.ldtr = Segment { selector: 0, attr: 0x82, limit: 0xFFFF, base: 0 };
        s.tr = Segment { selector: 0, attr: 0x8B, limit: 0xFFFF, base: 0 };
        s.gdtr = TableReg { base: 0, limit: 0xFFFF };
        s.idtr = TableReg { base: 0, limit: 0x3FF };
        s.cr0 = cr::CR0_ET | cr::CR0_CD | cr::CR0_NW;
        s.dr = [0, 0, 0, 0, 0, 0, 0xFFFF0FF0, 0x400];
        s.mxcsr = 0x1F80;
        s.x87 = X87::default();
        s.msr = Msrs { pat: 0x0007_0406_0007_0406, apic_base: 0, misc_enable: 1, ..Default::default() };
        s.a20_mask = !0;
        s.seg[sreg::CS] = Segment { selector: 0xF000, base: 0xFFFF_0000, limit: 0xFFFF, attr: seg::P | seg::S | seg::CODE | seg::RW | seg::ACCESSED };
        s.regs[2] = 0x600; // EDX: processor signature after reset (family 6)
        s
    }

    /// Current privilege level: CS.RPL in protected mode, 0 in real mode, 3 in virtual-8086.
    #[inline]
    pub fn cpl(&self) -> u8 {
        if self.cr0 & cr::CR0_PE == 0 {
            0
        } else if self.rflags & rf::VM != 0 {
            3
        } else {
            (self.seg[sreg::CS].selector & 3) as u8
        }
    }

    /// IA-32e mode active (EFER.LMA).
    #[inline]
    pub fn long_mode(&self) -> bool {
        self.efer & cr::EFER_LMA != 0
    }

    /// Code size of the current CS in bits: 16, 32 or 64.
    #[inline]
    pub fn code_bits(&self) -> u32 {
        let cs = &self.seg[sreg::CS];
        if self.long_mode() && cs.attr & seg::L != 0 {
            64
        } else if self.cr0 & cr::CR0_PE != 0 && self.rflags & rf::VM == 0 && cs.attr & seg::DB != 0 {
            32
        } else {
            16
        }
    }

    /// The paging structure format in force (CR0.PG, EFER.LMA, CR4.PAE, CR4.PSE).
    pub fn paging_mode(&self) -> heron_softmmu::PagingMode {
        use heron_softmmu::PagingMode;
        if self.cr0 & cr::CR0_PG == 0 {
            PagingMode::None
        } else if self.efer & cr::EFER_LMA != 0 {
            PagingMode::Level4
        } else if self.cr4 & cr::CR4_PAE != 0 {
            PagingMode::Pae
        } else {
            PagingMode::Legacy { pse: self.cr4 & cr::CR4_PSE != 0 }
        }
    }

    /// Stack address size in bits for implicit stack accesses.
    #[inline]
    pub fn stack_bits(&self) -> u32 {
        if self.code_bits() == 64 {
            64
        } else if self.seg[sreg::SS].attr & seg::DB != 0 && self.cr0 & cr::CR0_PE != 0 {
            32
        } else {
            16
        }
    }
}

/// The differences between two states' architectural parts, one line each (lockstep check).
/// Status flags are compared as computed values, not as their lazy representation.
pub fn arch_diff(a: &CpuState, b: &CpuState) -> Vec<String> {
    const NAMES: [&str; 16] = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
    let mut d = Vec::new();
    for n in 0..16 {
        if a.regs[n] != b.regs[n] {
            d.push(format!("{}: {:#x} vs {:#x}", NAMES[n], a.regs[n], b.regs[n]));
        }
    }
    let cmp = |d: &mut Vec<String>, name: &str, x: u64, y: u64| {
        if x != y {
            d.push(format!("{name}: {x:#x} vs {y:#x}"));
        }
    };
    cmp(&mut d, "rip", a.rip, b.rip);
    cmp(&mut d, "rflags", a.get_rflags(), b.get_rflags());
    cmp(&mut d, "icount", a.icount, b.icount);
    for (k, (x, y)) in a.seg.iter().zip(b.seg.iter()).enumerate() {
        if x != y {
            d.push(format!("segment {k}: {x:?} vs {y:?}"));
        }
    }
    cmp(&mut d, "cr0", a.cr0, b.cr0);
    cmp(&mut d, "cr2", a.cr2, b.cr2);
    cmp(&mut d, "cr3", a.cr3, b.cr3);
    cmp(&mut d, "cr4", a.cr4, b.cr4);
    cmp(&mut d, "cr8", a.cr8, b.cr8);
    cmp(&mut d, "efer", a.efer, b.efer);
    cmp(&mut d, "mxcsr", a.mxcsr as u64, b.mxcsr as u64);
    cmp(&mut d, "irq_inhibit", a.irq_inhibit as u64, b.irq_inhibit as u64);
    cmp(&mut d, "halted", a.halted as u64, b.halted as u64);
    cmp(&mut d, "gs_base(kernel)", a.msr.kernel_gs_base, b.msr.kernel_gs_base);
    for n in 0..16 {
        if a.xmm[n] != b.xmm[n] {
            d.push(format!("xmm{n}: {:#x} vs {:#x}", a.xmm[n], b.xmm[n]));
        }
    }
    if a.ldtr != b.ldtr || a.tr != b.tr || a.gdtr.base != b.gdtr.base || a.gdtr.limit != b.gdtr.limit || a.idtr.base != b.idtr.base || a.idtr.limit != b.idtr.limit {
        d.push("descriptor-table registers differ".to_string());
    }
    if a.x87.regs != b.x87.regs || a.x87.fcw != b.x87.fcw || a.x87.fsw != b.x87.fsw || a.x87.top != b.x87.top || a.x87.ftw != b.x87.ftw {
        d.push("x87 state differs".to_string());
    }
    d
}

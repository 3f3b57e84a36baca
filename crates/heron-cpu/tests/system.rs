//! System-level conformance: protection, paging, interrupt and mode behaviour that user-mode
//! code cannot exercise natively (so the host-oracle harness in `conformance.rs` cannot check
//! it). Each case builds a small guest program with iced-x86's `code_asm`, runs it on a bare
//! [`Cpu`] (real mode or 32-bit protected mode, set up here) or on [`TestCpu`] (64-bit mode),
//! and checks the result the Intel SDM states for it; the SDM section is cited per case.
//!
//! Exception handlers are HLT instructions at `HANDLERS + 16 * vector` in every fixture, so the
//! vector is read off RIP once the CPU halts, and the exception frame off the stack.
//!
//! Not covered because Heron does not implement them (they raise #GP(0) instead): hardware task
//! switching (task gates, far JMP/CALL to a TSS, IRET with NT = 1), call gates, and
//! virtual-8086 mode.
//!
//! `HERON_SYSTEM_WRITE=1 cargo test --release -p heron-cpu --test system -- system_table`
//! writes the table of cases to `docs/conformance-system.md`.

use std::panic;

use heron_cpu::state::{cr, rf, seg, sreg, Segment, TableReg};
use heron_cpu::testutil::{NullBus, TestCpu, CODE, DATA, HANDLERS, STACK_TOP};
use heron_cpu::{Cpu, ExitReason};
use heron_softmmu::GuestRam;
use iced_x86::code_asm::*;

type R = Result<(), IcedError>;

// ---------------------------------------------------------------------------------------------
// Helpers shared by all fixtures.

fn asm(bits: u32, ip: u64, f: impl FnOnce(&mut CodeAssembler) -> R) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).unwrap();
    f(&mut a).unwrap();
    if a.instructions().is_empty() {
        return Vec::new();
    }
    a.assemble(ip).unwrap()
}

/// Assemble `pre` then `at` at `ip`; returns the bytes and the address where `at` starts (the
/// RIP an exception raised by `at`'s first instruction must report).
fn asm2(bits: u32, ip: u64, pre: impl FnOnce(&mut CodeAssembler) -> R, at: impl FnOnce(&mut CodeAssembler) -> R) -> (Vec<u8>, u64) {
    let mut bytes = asm(bits, ip, pre);
    let at_ip = ip + bytes.len() as u64;
    bytes.extend(asm(bits, at_ip, at));
    (bytes, at_ip)
}

fn put(ram: &GuestRam, at: u64, b: &[u8]) {
    // GuestRam is a shared handle; a clone writes the same memory.
    ram.clone().write_bytes(at, b).unwrap();
}

fn put64(ram: &GuestRam, at: u64, v: u64) {
    put(ram, at, &v.to_le_bytes());
}

fn get(ram: &GuestRam, at: u64, size: usize) -> u64 {
    let mut b = [0u8; 8];
    ram.read_bytes(at, &mut b[..size]).unwrap();
    u64::from_le_bytes(b)
}

/// The vector whose HLT handler the CPU stopped after, if RIP is just past one.
fn handler_vector(rip: u64) -> Option<u8> {
    if (HANDLERS + 1..HANDLERS + 32 * 16).contains(&rip) && (rip - HANDLERS - 1) & 15 == 0 {
        Some(((rip - HANDLERS - 1) / 16) as u8)
    } else {
        None
    }
}

/// An 8-byte code/data segment descriptor (Intel SDM Vol. 3A §3.4.5, Figure 3-8). `access` is
/// descriptor byte 5 (P, DPL, S, type), `flags` the G, D/B, L, AVL nibble.
fn desc(base: u64, limit: u64, access: u64, flags: u64) -> u64 {
    (limit & 0xFFFF) | (base & 0xFF_FFFF) << 16 | access << 40 | ((limit >> 16) & 0xF) << 48 | flags << 52 | (base >> 24) << 56
}

// ---------------------------------------------------------------------------------------------
// Legacy fixture: a bare Cpu in real mode or 32-bit protected mode (no paging), 16 MiB of RAM,
// exception handlers (HLT) at HANDLERS + 16 * v reached through the IVT or a 32-bit IDT.

const GDT32: u64 = 0x500;
const IDT32: u64 = 0x1000;
const TSS32: u64 = 0x7000;

// The protected-mode GDT.
const KCODE: u16 = 0x08;
const KDATA: u16 = 0x10;
const TSS_SEL: u16 = 0x28;
/// Data, base DATA, byte-granular limit 0xFFF.
const SMALL: u16 = 0x30;
/// Read-only data, base DATA, limit 0xFFFF.
const RDONLY: u16 = 0x38;
/// Expand-down data, B = 0: valid offsets 0x1000..=0xFFFF.
const EXPDOWN16: u16 = 0x40;
/// Data with P = 0.
const NOTPRESENT: u16 = 0x48;
/// Expand-down data, B = 1: valid offsets 0x1000..=0xFFFF_FFFF.
const EXPDOWN32: u16 = 0x50;
const GDT32_LIMIT: u16 = 0x57;

struct Legacy {
    cpu: Cpu,
    ram: GuestRam,
}

impl Legacy {
    fn ram() -> GuestRam {
        let ram = GuestRam::new(16 << 20).unwrap();
        for v in 0..32u64 {
            put(&ram, HANDLERS + 16 * v, &[0xF4]); // HLT
        }
        ram
    }

    /// Real mode, CS = DS = ES = SS = 0, SP = 0x7000, IVT at 0 pointing every exception vector
    /// at its handler.
    fn real() -> Self {
        let ram = Self::ram();
        for v in 0..32u64 {
            put(&ram, 4 * v, &((HANDLERS + 16 * v) as u32).to_le_bytes()); // 0000:handler
        }
        let mut cpu = Cpu::new(ram.clone());
        cpu.s.seg[sreg::CS] = Segment { selector: 0, base: 0, ..cpu.s.seg[sreg::CS] };
        cpu.s.regs[4] = 0x7000;
        Legacy { cpu, ram }
    }

    /// 32-bit protected mode, CPL 0, flat 4 GiB code/data, no paging; IDT of 32-bit interrupt
    /// gates; a 32-bit TSS (ESP0 = 0x2F_0000) in TR.
    fn pm32() -> Self {
        let ram = Self::ram();
        let gdt = [
            0,
            0x00CF_9A00_0000_FFFF,
            0x00CF_9200_0000_FFFF,
            0x00CF_FA00_0000_FFFF, // 0x18: user code
            0x00CF_F200_0000_FFFF, // 0x20: user data
            desc(TSS32, 0x67, 0x8B, 0),
            desc(DATA, 0xFFF, 0x92, 0x4),
            desc(DATA, 0xFFFF, 0x90, 0x4),
            desc(DATA, 0xFFF, 0x96, 0x0),
            desc(DATA, 0xFFFF, 0x12, 0x4),
            desc(DATA, 0xFFF, 0x96, 0x4),
        ];
        for (k, d) in gdt.iter().enumerate() {
            put64(&ram, GDT32 + 8 * k as u64, *d);
        }
        for v in 0..32u64 {
            let h = HANDLERS + 16 * v;
            put64(&ram, IDT32 + 8 * v, (h & 0xFFFF) | (KCODE as u64) << 16 | 0x8E00u64 << 32 | (h >> 16) << 48);
        }
        put(&ram, TSS32 + 4, &0x2F_0000u32.to_le_bytes()); // ESP0
        put(&ram, TSS32 + 8, &(KDATA as u32).to_le_bytes()); // SS0
        let mut cpu = Cpu::new(ram.clone());
        let s = &mut *cpu.s;
        s.cr0 = cr::CR0_PE | cr::CR0_ET | cr::CR0_NE;
        s.gdtr = TableReg { base: GDT32, limit: GDT32_LIMIT };
        s.idtr = TableReg { base: IDT32, limit: 32 * 8 - 1 };
        s.ldtr = Segment::default();
        s.seg[sreg::CS] = Segment::from_descriptor(KCODE, gdt[1]);
        for r in [sreg::SS, sreg::DS, sreg::ES, sreg::FS, sreg::GS] {
            s.seg[r] = Segment::from_descriptor(KDATA, gdt[2]);
        }
        s.tr = Segment { selector: TSS_SEL, attr: seg::P | 0xB, limit: 0x67, base: TSS32 };
        s.regs[4] = STACK_TOP;
        Legacy { cpu, ram }
    }

    /// Place `code` + HLT at linear CS.base + `ip` and run from CS:`ip` until the CPU halts.
    fn run(&mut self, ip: u64, code: &[u8]) -> ExitReason {
        let mut bytes = code.to_vec();
        bytes.push(0xF4);
        put(&self.ram, self.cpu.s.seg[sreg::CS].base + ip, &bytes);
        self.cpu.flush_code();
        self.cpu.s.rip = ip;
        self.cpu.s.halted = false;
        let until = self.cpu.s.icount + 1000;
        loop {
            let r = self.cpu.run(&mut NullBus, until);
            if r != ExitReason::Io {
                return r;
            }
        }
    }

    fn exception(&self) -> Option<u8> {
        if self.cpu.s.seg[sreg::CS].base != 0 {
            return None;
        }
        handler_vector(self.cpu.s.rip)
    }

    /// The `k`-th stack slot of `size` bytes above SS:(E)SP.
    fn stack(&self, k: u64, size: u64) -> u64 {
        let top = self.cpu.s.regs[4] & if self.cpu.s.stack_bits() == 32 { 0xFFFF_FFFF } else { 0xFFFF };
        get(&self.ram, self.cpu.s.seg[sreg::SS].base + top + k * size, size as usize)
    }

    /// 32-bit exception frame with error code: (error code, EIP, CS, EFLAGS).
    fn frame32(&self) -> (u64, u64, u64, u64) {
        (self.stack(0, 4), self.stack(1, 4), self.stack(2, 4) & 0xFFFF, self.stack(3, 4))
    }

    fn describe(&mut self) -> String {
        self.cpu.describe()
    }
}

/// Run 32-bit code at CPL 0 in protected mode; `pre` must succeed, `at` must raise `vector`
/// with error code `code` (checked against the frame) at its own address.
fn pm32_fault(pre: impl FnOnce(&mut CodeAssembler) -> R, at: impl FnOnce(&mut CodeAssembler) -> R, vector: u8, code: u32) -> Legacy {
    let mut m = Legacy::pm32();
    let (bytes, ip) = asm2(32, CODE, pre, at);
    m.run(CODE, &bytes);
    assert_eq!(m.exception(), Some(vector), "{}", m.describe());
    let (ec, eip, csel, _) = m.frame32();
    assert_eq!(ec, code as u64, "error code");
    assert_eq!(eip, ip, "faulting EIP");
    assert_eq!(csel, KCODE as u64);
    m
}

// ---------------------------------------------------------------------------------------------
// 64-bit fixture helpers on top of TestCpu.

/// Ring-0 stack (TSS.RSP0) for events from CPL 3.
const KSTACK: u64 = 0x28_0000;
/// The user stack.
const USTACK: u64 = 0x1F_0000;
const UDATA: u16 = 0x23;
const UCODE: u16 = 0x2B;
const UCODE_DESC: u64 = 0x00AF_FA00_0000_FFFF;
const UDATA_DESC: u64 = 0x00CF_F200_0000_FFFF;

/// Add user segments (0x18 32-bit code, 0x23 data, 0x2B 64-bit code: the SYSRET layout with
/// STAR[63:48] = 0x18), TSS.RSP0, and U/S on the identity mapping of the first 16 MiB.
fn user_setup(t: &mut TestCpu) {
    let gdt = t.cpu.s.gdtr.base;
    put64(&t.ram, gdt + 0x18, 0x00CF_FA00_0000_FFFF);
    put64(&t.ram, gdt + 0x20, UDATA_DESC);
    put64(&t.ram, gdt + 0x28, UCODE_DESC);
    t.cpu.s.gdtr.limit = 0x2F;
    put64(&t.ram, t.cpu.s.tr.base + 4, KSTACK);
    for a in [0x1000u64, 0x2000] {
        put64(&t.ram, a, get(&t.ram, a, 8) | 4);
    }
    for k in 0..8u64 {
        put64(&t.ram, 0x3000 + 8 * k, (k << 21) | 0x87);
    }
}

/// [`user_setup`] and switch the CPU to CPL 3 (CS = 0x2B, SS = DS = ES = 0x23, RSP = USTACK).
fn user_mode(t: &mut TestCpu) {
    user_setup(t);
    let s = &mut *t.cpu.s;
    s.seg[sreg::CS] = Segment::from_descriptor(UCODE, UCODE_DESC);
    for r in [sreg::SS, sreg::DS, sreg::ES] {
        s.seg[r] = Segment::from_descriptor(UDATA, UDATA_DESC);
    }
    s.regs[4] = USTACK;
}

/// Run like [`TestCpu::run`], continuing after port I/O exits.
fn run64(t: &mut TestCpu, code: &[u8]) -> ExitReason {
    let mut r = t.run(code, 1000);
    let until = t.cpu.s.icount + 1000;
    while r == ExitReason::Io {
        r = t.cpu.run(&mut NullBus, until);
    }
    r
}

/// The `k`-th quadword of the stack (an exception frame: error code, RIP, CS, RFLAGS, RSP, SS).
fn q(t: &TestCpu, k: u64) -> u64 {
    get(&t.ram, t.cpu.s.regs[4] + 8 * k, 8)
}

/// 64-bit code that must raise `vector` with error code `code` at the start of `at`.
fn fault64(t: &mut TestCpu, pre: impl FnOnce(&mut CodeAssembler) -> R, at: impl FnOnce(&mut CodeAssembler) -> R, vector: u8, code: Option<u64>) -> u64 {
    let (bytes, ip) = asm2(64, CODE, pre, at);
    run64(t, &bytes);
    assert_eq!(t.exception(), Some(vector), "{}", t.cpu.describe());
    match code {
        Some(c) => {
            assert_eq!(q(t, 0), c, "error code");
            assert_eq!(q(t, 1), ip, "faulting RIP");
        }
        None => assert_eq!(q(t, 0), ip, "faulting RIP"),
    }
    ip
}

// A 4 KiB-page region for the paging cases: PML4[1] -> PDPT 0x50_0000 -> PD 0x50_1000 ->
// PT 0x50_2000, linear LIN + k * 4 KiB -> physical PHYS + k * 4 KiB as PTE k says. None of
// these entries is used by anything else, so their A/D bits are the test's alone.
const LIN: u64 = 0x80_0000_0000;
const PDPT4K: u64 = 0x50_0000;
const PD4K: u64 = 0x50_1000;
const PT4K: u64 = 0x50_2000;
const PHYS: u64 = 0x60_0000;
const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const NX: u64 = 1 << 63;

fn map4k(t: &mut TestCpu) {
    put64(&t.ram, 0x1008, PDPT4K | P | RW | US);
    put64(&t.ram, PDPT4K, PD4K | P | RW | US);
    put64(&t.ram, PD4K, PT4K | P | RW | US);
}

fn lin(k: u64) -> u64 {
    LIN + k * 0x1000
}

fn set_pte(t: &TestCpu, k: u64, flags: u64) {
    put64(&t.ram, PT4K + 8 * k, (PHYS + k * 0x1000) | flags);
}

// ---------------------------------------------------------------------------------------------
// (1) Segmentation in 32-bit protected mode.

/// SDM Vol. 3A §5.3 (Limit Checking): an access whose last byte lies above the effective limit
/// of DS raises #GP(0) (Vol. 3A §6.15 Interrupt 13; Vol. 2B MOV "#GP(0) If a memory operand
/// effective address is outside the CS, DS, ES, FS, or GS segment limit").
#[test]
fn seg_ds_limit_gp0() {
    pm32_fault(
        |a| {
            a.mov(ax, SMALL as i32)?;
            a.mov(ds, ax)?;
            a.mov(eax, dword_ptr(0xFFC))?; // bytes 0xFFC..=0xFFF: inside
            a.mov(al, byte_ptr(0xFFF))
        },
        |a| a.mov(eax, dword_ptr(0xFFD)), // last byte 0x1000 > limit
        13,
        0,
    );
}

/// SDM Vol. 3A §5.3: the same limit check for ES, here as the implicit destination of STOSD
/// (Vol. 2B STOS: "#GP(0) If a memory operand effective address is outside the limit of the ES
/// segment").
#[test]
fn seg_es_limit_gp0() {
    pm32_fault(
        |a| {
            a.mov(ax, SMALL as i32)?;
            a.mov(es, ax)?;
            a.mov(edi, 0xFFC)?;
            a.stosd()?; // 0xFFC..=0xFFF, EDI -> 0x1000
            a.mov(edi, 0xFFE)
        },
        |a| a.stosd(),
        13,
        0,
    );
}

/// SDM Vol. 3A §5.3: an SS-relative operand ([EBP], or an explicit SS: override) beyond the SS
/// limit raises #SS(0), not #GP (Vol. 3A §6.15 Interrupt 12; Vol. 2B MOV "#SS(0) If a memory
/// operand effective address is outside the SS segment limit").
#[test]
fn seg_ss_limit_ss0() {
    let m = pm32_fault(
        |a| {
            a.mov(ax, SMALL as i32)?;
            a.mov(ss, ax)?;
            a.mov(esp, 0xF00)?; // the exception frame still fits below
            a.mov(ebp, 0xFFC)?;
            a.mov(eax, dword_ptr(ebp))?;
            a.mov(eax, dword_ptr(0xFFC).ss())?;
            a.push(eax)?;
            a.pop(eax)?;
            a.inc(ebp)
        },
        |a| a.mov(eax, dword_ptr(ebp)), // [EBP] defaults to SS: 0xFFD..=0x1000
        12,
        0,
    );
    assert_eq!(m.cpu.s.seg[sreg::SS].selector, SMALL, "same-privilege delivery keeps SS");
    assert_eq!(m.cpu.s.regs[4] & 0xFFFF_FFFF, 0xF00 - 16);
}

/// SDM Vol. 3A §5.3 / §3.4.5.1: in an expand-down data segment the valid offsets are
/// limit + 1 ..= 0xFFFF (B = 0); an offset at or below the limit, or an access running past
/// 0xFFFF, raises #GP(0).
#[test]
fn seg_expand_down_gp0() {
    let pre = |a: &mut CodeAssembler| {
        a.mov(ax, EXPDOWN16 as i32)?;
        a.mov(ds, ax)?;
        a.mov(eax, dword_ptr(0x1000))?; // lowest valid offset
        a.mov(ax, word_ptr(0xFFFE)) // highest valid word
    };
    pm32_fault(pre, |a| a.mov(al, byte_ptr(0xFFF)), 13, 0);
    pm32_fault(pre, |a| a.mov(eax, dword_ptr(0xFFFE)), 13, 0);
}

/// SDM Vol. 3A §5.3: an expand-down stack segment (B = 1, valid offsets limit + 1 ..=
/// 0xFFFF_FFFF): PUSH/POP inside work, an SS-relative operand at or below the limit raises
/// #SS(0).
#[test]
fn seg_expand_down_stack_ss0() {
    let m = pm32_fault(
        |a| {
            a.mov(ax, EXPDOWN32 as i32)?;
            a.mov(ss, ax)?;
            a.mov(esp, 0x8000)?;
            a.push(0x1234_5678)?;
            a.pop(ebx)?;
            a.mov(ebp, 0x1000)?;
            a.mov(ecx, dword_ptr(ebp))?;
            a.mov(ebp, 0xFFF)
        },
        |a| a.mov(eax, dword_ptr(ebp)),
        12,
        0,
    );
    assert_eq!(m.cpu.s.regs[3] & 0xFFFF_FFFF, 0x1234_5678);
}

/// SDM Vol. 3A §5.4.1 (type checking) / Vol. 2B MOV: "#GP(0) If the destination is located in
/// a non-writable segment" — reading a read-only data segment works, writing raises #GP(0).
#[test]
fn seg_write_read_only_gp0() {
    pm32_fault(
        |a| {
            a.mov(ax, RDONLY as i32)?;
            a.mov(ds, ax)?;
            a.mov(eax, dword_ptr(0x10))
        },
        |a| a.mov(dword_ptr(0x10), eax),
        13,
        0,
    );
}

/// SDM Vol. 2B MOV: "#GP(selector) If the SS register is being loaded and the segment pointed
/// to is a non-writable data segment".
#[test]
fn seg_load_ss_read_only_gp_sel() {
    pm32_fault(|a| a.mov(ax, RDONLY as i32), |a| a.mov(ss, ax), 13, RDONLY as u32);
}

/// SDM Vol. 2B MOV: "#GP(0) If attempt is made to load SS register with NULL segment
/// selector" (protected mode, not 64-bit mode).
#[test]
fn seg_load_null_ss_gp0() {
    pm32_fault(|a| a.xor(eax, eax), |a| a.mov(ss, ax), 13, 0);
}

/// SDM Vol. 3A §5.4.1 / Vol. 2B MOV: a null selector may be loaded into DS, but "#GP(0) If the
/// DS, ES, FS, or GS register is used to access memory and it contains a NULL segment
/// selector".
#[test]
fn seg_null_ds_access_gp0() {
    pm32_fault(
        |a| {
            a.mov(eax, 3)?; // null selector with RPL 3
            a.mov(ds, ax)
        },
        |a| a.mov(eax, dword_ptr(0x100)),
        13,
        0,
    );
}

/// SDM Vol. 2B MOV: "#GP(selector) If segment selector index is outside descriptor table
/// limits" — the error code is the selector's index and TI bits (Vol. 3A §6.13, Figure 6-7),
/// RPL dropped. Also for TI = 1 with a null LDTR.
#[test]
fn seg_selector_beyond_gdt_limit_gp_sel() {
    pm32_fault(|a| a.mov(ax, 0x5B), |a| a.mov(ds, ax), 13, 0x58); // index 11 > GDT limit 0x57
    pm32_fault(|a| a.mov(ax, 0x0F), |a| a.mov(es, ax), 13, 0x0C); // LDT selector, no LDT
}

/// SDM Vol. 2B MOV: "#NP(selector) If the DS, ES, FS, or GS register is being loaded and the
/// segment pointed to is marked not present"; "#SS(selector) If the SS register is being loaded
/// and the segment pointed to is marked not present" (Vol. 3A §6.15 Interrupts 11 and 12).
#[test]
fn seg_not_present_np_sel() {
    pm32_fault(|a| a.mov(ax, NOTPRESENT as i32), |a| a.mov(ds, ax), 11, NOTPRESENT as u32);
    pm32_fault(|a| a.mov(ax, NOTPRESENT as i32), |a| a.mov(fs, ax), 11, NOTPRESENT as u32);
    pm32_fault(|a| a.mov(ax, NOTPRESENT as i32), |a| a.mov(ss, ax), 12, NOTPRESENT as u32);
}

// ---------------------------------------------------------------------------------------------
// (2) Privilege (64-bit mode, CPL 3).

/// SDM Vol. 3A §5.9 (Privileged Instructions) and each instruction's page in Vol. 2: at
/// CPL 3, CLI (CPL > IOPL), HLT, MOV to/from CR0, MOV to CR3, RDMSR, WRMSR, LGDT, LIDT,
/// INVLPG and SWAPGS raise #GP(0) at the instruction.
#[test]
fn cpl3_privileged_instructions_gp0() {
    type F = fn(&mut CodeAssembler) -> R;
    let cases: [(&str, F); 11] = [
        ("cli", |a| a.cli()),
        ("hlt", |a| a.hlt()),
        ("mov rax, cr0", |a| a.mov(rax, cr0)),
        ("mov cr0, rax", |a| a.mov(cr0, rax)),
        ("mov cr3, rax", |a| a.mov(cr3, rax)),
        ("rdmsr", |a| a.rdmsr()),
        ("wrmsr", |a| a.wrmsr()),
        ("lgdt [rsp]", |a| a.lgdt(ptr(rsp))),
        ("lidt [rsp]", |a| a.lidt(ptr(rsp))),
        ("invlpg [rsp]", |a| a.invlpg(ptr(rsp))),
        ("swapgs", |a| a.swapgs()),
    ];
    for (name, f) in cases {
        let mut t = TestCpu::new();
        user_mode(&mut t);
        let (bytes, ip) = asm2(
            64,
            CODE,
            |a| {
                a.mov(ecx, 0xC000_0080u32)?;
                a.mov(rax, 0x8001_0033u64)?;
                a.xor(edx, edx)
            },
            f,
        );
        run64(&mut t, &bytes);
        assert_eq!(t.exception(), Some(13), "{name}: {}", t.cpu.describe());
        assert_eq!((q(&t, 0), q(&t, 1), q(&t, 2)), (0, ip, UCODE as u64), "{name}: #GP(0) at the instruction, from CPL 3");
        assert_eq!(t.cpu.s.regs[4], KSTACK - 6 * 8, "{name}: frame on the RSP0 stack");
        assert_eq!(t.cpu.s.cr0 & cr::CR0_PG, cr::CR0_PG, "{name}: CR0 unchanged");
        assert_eq!(t.cpu.s.gdtr.base, 0x500, "{name}: GDTR unchanged");
    }
}

/// SDM Vol. 1 §19.5.1–19.5.2 (I/O privilege level, I/O permission bit map) and Vol. 2A IN/OUT:
/// at CPL 3 with IOPL 0, an access is allowed only if every bit for its ports in the TSS I/O
/// bitmap is 0; a set bit, or a port whose bitmap bytes lie beyond the TSS limit, raises #GP(0).
/// With IOPL 3 the bitmap is not consulted.
#[test]
fn io_bitmap_cpl3() {
    // I/O map base 0x68, bitmap for ports 0..0x3FF (0x80 bytes) plus the 0xFF terminator;
    // everything denied except port 0x80.
    let setup = |iopl: u64| {
        let mut t = TestCpu::new();
        user_mode(&mut t);
        let tss = t.cpu.s.tr.base;
        put(&t.ram, tss + 0x66, &0x68u16.to_le_bytes());
        put(&t.ram, tss + 0x68, &[0xFF; 0x81]);
        put(&t.ram, tss + 0x68 + 0x80 / 8, &[0xFE]);
        t.cpu.s.tr.limit = 0x68 + 0x80;
        t.cpu.s.rflags |= iopl << 12;
        t
    };
    // Allowed: the IN completes and the CPU reaches the HLT after it (#GP there, CPL 3).
    let mut t = setup(0);
    let (bytes, hlt) = asm2(64, CODE, |a| a.in_(al, 0x80), |a| a.hlt());
    run64(&mut t, &bytes);
    assert_eq!((t.exception(), q(&t, 1)), (Some(13), hlt), "IN from port 0x80 is allowed");
    assert_eq!(t.cpu.s.regs[0] & 0xFF, 0xFF, "NullBus reads all ones");
    type F = fn(&mut CodeAssembler) -> R;
    let denied: [(&str, F); 4] = [
        ("out 0x81, al", |a| a.out(0x81, al)),
        ("in ax, 0x80 (0x81 denied)", |a| a.in_(ax, 0x80)),
        ("in al, 0x7f", |a| a.in_(al, 0x7F)),
        ("out dx, al, dx=0x400 (beyond the TSS limit)", |a| a.out(dx, al)),
    ];
    for (name, f) in denied {
        let mut t = setup(0);
        let (bytes, ip) = asm2(64, CODE, |a| a.mov(edx, 0x400), f);
        run64(&mut t, &bytes);
        assert_eq!(t.exception(), Some(13), "{name}: {}", t.cpu.describe());
        assert_eq!((q(&t, 0), q(&t, 1)), (0, ip), "{name}: #GP(0) at the instruction");
    }
    // IOPL 3: CPL <= IOPL, no bitmap check.
    let mut t = setup(3);
    let (bytes, hlt) = asm2(64, CODE, |a| a.out(0x81, al), |a| a.hlt());
    run64(&mut t, &bytes);
    assert_eq!((t.exception(), q(&t, 1)), (Some(13), hlt), "OUT 0x81 with IOPL 3");
}

/// SDM Vol. 2A INT n ("IF gate DPL < CPL THEN #GP((vector_number << 3) + 2)") and Vol. 3A
/// §6.12.1.1: INT n from CPL 3 through a DPL-0 gate raises #GP(vector * 8 + 2) (IDT bit set,
/// EXT clear); through a DPL-3 gate it reaches the handler at CPL 0 on the RSP0 stack.
#[test]
fn int_n_gate_dpl_gp() {
    let mut t = TestCpu::new();
    user_mode(&mut t);
    fault64(&mut t, |_| Ok(()), |a| a.int(0x10), 13, Some(0x10 * 8 + 2));

    let mut t = TestCpu::new();
    user_mode(&mut t);
    let gate = t.cpu.s.idtr.base + 0x11 * 16;
    put64(&t.ram, gate, get(&t.ram, gate, 8) | 3 << 45); // DPL 3
    let bytes = asm(64, CODE, |a| a.int(0x11));
    run64(&mut t, &bytes);
    assert_eq!(t.exception(), Some(0x11), "{}", t.cpu.describe());
    assert_eq!(t.cpu.s.cpl(), 0);
    // No error code for INT n: RIP (next instruction), CS, RFLAGS, RSP, SS.
    assert_eq!((q(&t, 0), q(&t, 1), q(&t, 3), q(&t, 4)), (CODE + 2, UCODE as u64, USTACK, UDATA as u64));
    assert_eq!(t.cpu.s.regs[4], KSTACK - 5 * 8);
}

/// Regression (bug: a fault of INT n's gate checks was reported with the RIP of the next
/// instruction, as if the INT had completed). SDM Vol. 2A INT n: the #GP/#NP raised by the gate
/// checks are faults of the INT instruction (Vol. 3A §6.5: a fault's saved RIP is the faulting
/// instruction) — DPL (INT3 from CPL 3 → #GP(3·8+2)), vector beyond the IDT limit
/// (#GP(v·8+2)), gate not present (#NP(v·8+2)), and in real mode a vector beyond the IVT limit
/// (interrupt 13 with IP = the INT).
#[test]
fn bug_int_n_gate_fault_saved_rip_after_int() {
    let mut t = TestCpu::new();
    user_mode(&mut t);
    fault64(&mut t, |a| a.nop(), |a| a.int3(), 13, Some(3 * 8 + 2));
    let mut t = TestCpu::new();
    fault64(&mut t, |a| a.nop(), |a| a.int(0x40), 13, Some(0x40 * 8 + 2));
    let mut t = TestCpu::new();
    let gate = t.cpu.s.idtr.base + 0x12 * 16;
    put64(&t.ram, gate, get(&t.ram, gate, 8) & !(1 << 47));
    fault64(&mut t, |a| a.nop(), |a| a.int(0x12), 11, Some(0x12 * 8 + 2));

    let mut m = Legacy::real();
    m.cpu.s.idtr.limit = 32 * 4 - 1;
    let (bytes, ip) = asm2(16, 0x7C00, |a| a.nop(), |a| a.int(0x80));
    m.run(0x7C00, &bytes);
    assert_eq!(m.exception(), Some(13), "{}", m.describe());
    assert_eq!(m.stack(0, 2), ip, "IP of the INT");
}

// ---------------------------------------------------------------------------------------------
// (3) #PF error codes and CR2 (SDM Vol. 3A §4.7, Figure 4-12; §6.15 Interrupt 14).

/// SDM Vol. 3A §4.7: P = 0 for a not-present page; W/R = 1 for a write; CR2 = the linear
/// address (§6.15 Interrupt 14, "Page-Fault Linear Address").
#[test]
fn pf_not_present_read_write() {
    for (write, ec) in [(false, 0u64), (true, 2)] {
        let mut t = TestCpu::new();
        map4k(&mut t);
        set_pte(&t, 3, P | RW); // page 4 stays not present
        let la = lin(4) + 0x123;
        fault64(
            &mut t,
            |a| {
                a.mov(rsi, la)?;
                a.mov(al, byte_ptr(rsi - 0x1000)) // page 3: fine
            },
            |a| if write { a.mov(byte_ptr(rsi), al) } else { a.mov(al, byte_ptr(rsi)) },
            14,
            Some(ec),
        );
        assert_eq!(t.cpu.s.cr2, la);
    }
}

/// SDM Vol. 3A §4.6 (access rights: user-mode accesses need U/S = 1 at every level, user
/// writes R/W = 1) and §4.7: a CPL-3 read of a supervisor page gives P | U/S = 0b101; a CPL-3
/// write to a read-only user page gives P | W/R | U/S = 0b111.
#[test]
fn pf_user_supervisor_and_read_only() {
    for (pte, write, ec) in [(P | RW, false, 0b101u64), (P | US, true, 0b111), (P | RW, true, 0b111)] {
        let mut t = TestCpu::new();
        user_mode(&mut t);
        map4k(&mut t);
        set_pte(&t, 0, pte);
        fault64(&mut t, |a| a.mov(rsi, lin(0) + 8), |a| if write { a.mov(byte_ptr(rsi), al) } else { a.mov(al, byte_ptr(rsi)) }, 14, Some(ec));
        assert_eq!(t.cpu.s.cr2, lin(0) + 8);
    }
}

/// SDM Vol. 3A §4.6.1: a supervisor write to a read-only page faults (P | W/R = 0b011) when
/// CR0.WP = 1 and succeeds when CR0.WP = 0.
#[test]
fn pf_supervisor_write_read_only_wp() {
    let mut t = TestCpu::new();
    map4k(&mut t);
    set_pte(&t, 0, P);
    fault64(&mut t, |a| a.mov(rsi, lin(0) + 0x10), |a| a.mov(dword_ptr(rsi), 0x55AA), 14, Some(0b011));
    assert_eq!(get(&t.ram, PHYS + 0x10, 4), 0);

    let mut t = TestCpu::new();
    map4k(&mut t);
    set_pte(&t, 0, P);
    let code = asm(64, CODE, |a| {
        a.mov(rax, cr0)?;
        a.and(eax, !(cr::CR0_WP as i32))?;
        a.mov(cr0, rax)?;
        a.mov(rsi, lin(0) + 0x10)?;
        a.mov(dword_ptr(rsi), 0x55AA)
    });
    assert_eq!(run64(&mut t, &code), ExitReason::Halted);
    assert_eq!(t.exception(), None, "{}", t.cpu.describe());
    assert_eq!(get(&t.ram, PHYS + 0x10, 4), 0x55AA);
}

/// SDM Vol. 3A §4.6 (execute-disable with IA32_EFER.NXE = 1) and §4.7 (I/D = 1 for an
/// instruction fetch with PAE/4-level paging and NXE): fetching from an XD page gives
/// P | I/D = 0x11, CR2 = RIP = the target.
#[test]
fn pf_fetch_nx_page() {
    let mut t = TestCpu::new();
    map4k(&mut t);
    set_pte(&t, 2, P | RW | NX);
    put(&t.ram, PHYS + 2 * 0x1000, &[0x90, 0xF4]);
    let target = lin(2);
    let code = asm(64, CODE, |a| {
        a.mov(rax, target)?;
        a.jmp(rax)
    });
    run64(&mut t, &code);
    assert_eq!(t.exception(), Some(14), "{}", t.cpu.describe());
    assert_eq!((q(&t, 0), q(&t, 1)), (0x11, target));
    assert_eq!(t.cpu.s.cr2, target);
    // A data read of the same page is allowed.
    let mut t = TestCpu::new();
    map4k(&mut t);
    set_pte(&t, 2, P | RW | NX);
    put(&t.ram, PHYS + 2 * 0x1000, &[0x90, 0xF4]);
    let code = asm(64, CODE, |a| {
        a.mov(rax, target)?;
        a.mov(bl, byte_ptr(rax))
    });
    assert_eq!(run64(&mut t, &code), ExitReason::Halted);
    assert_eq!((t.exception(), t.cpu.s.regs[3] & 0xFF), (None, 0x90));
}

/// SDM Vol. 3A §4.5.4 / Table 4-19 (PTE bits 51:MAXPHYADDR reserved) and §4.7: a reserved bit
/// set gives P | RSVD (| W/R for a write).
#[test]
fn pf_reserved_bit_pte() {
    for (write, ec) in [(false, 0b1001u64), (true, 0b1011)] {
        let mut t = TestCpu::new();
        map4k(&mut t);
        set_pte(&t, 1, P | RW | 1 << 45); // MAXPHYADDR is 40
        fault64(&mut t, |a| a.mov(rsi, lin(1) + 4), |a| if write { a.mov(byte_ptr(rsi), al) } else { a.mov(al, byte_ptr(rsi)) }, 14, Some(ec));
        assert_eq!(t.cpu.s.cr2, lin(1) + 4);
    }
}

/// Regression (bug: the walk ignored reserved bits 20:13 of a PDE that maps a 2-MiB page).
/// SDM Vol. 3A §4.5.4, Table 4-18 ("20:13 Reserved (must be 0)"): such a PDE gives
/// P | RSVD.
#[test]
fn bug_pf_reserved_bit_2m_pde_ignored() {
    let mut t = TestCpu::new();
    map4k(&mut t);
    put64(&t.ram, PD4K + 8, 0xA0_0000 | P | RW | PS | 1 << 13);
    let la = LIN + 0x20_0000 + 0x10;
    fault64(&mut t, |a| a.mov(rsi, la), |a| a.mov(al, byte_ptr(rsi)), 14, Some(0b1001));
    assert_eq!(t.cpu.s.cr2, la);
    // Bit 12 is PAT, not reserved: the same PDE with only bit 12 set maps.
    let mut t = TestCpu::new();
    map4k(&mut t);
    put64(&t.ram, PD4K + 8, 0xA0_0000 | P | RW | PS | 1 << 12);
    put(&t.ram, 0xA0_0010, &[0x5A]);
    let code = asm(64, CODE, |a| {
        a.mov(rsi, la)?;
        a.mov(bl, byte_ptr(rsi))
    });
    run64(&mut t, &code);
    assert_eq!((t.exception(), t.cpu.s.regs[3] & 0xFF), (None, 0x5A), "{}", t.cpu.describe());
}

/// SDM Vol. 3A §6.15 Interrupt 14 (CR2 holds the linear address that caused the fault): a
/// data access or an instruction that starts in a mapped page and runs into an unmapped one
/// faults with CR2 = the first byte of the unmapped page; the saved RIP is the instruction's.
#[test]
fn pf_cr2_access_crossing_into_unmapped_page() {
    for (write, ec) in [(false, 0u64), (true, 2)] {
        let mut t = TestCpu::new();
        map4k(&mut t);
        set_pte(&t, 5, P | RW);
        fault64(&mut t, |a| a.mov(rsi, lin(5) + 0xFFC), |a| if write { a.mov(qword_ptr(rsi), rax) } else { a.mov(rax, qword_ptr(rsi)) }, 14, Some(ec));
        assert_eq!(t.cpu.s.cr2, lin(6), "write={write}");
    }
    // Instruction fetch: a 5-byte MOV at offset 0xFFE of an executable page.
    let mut t = TestCpu::new();
    map4k(&mut t);
    set_pte(&t, 5, P | RW);
    put(&t.ram, PHYS + 5 * 0x1000 + 0xFFE, &[0xB8, 1, 2, 3, 4]);
    let target = lin(5) + 0xFFE;
    let code = asm(64, CODE, |a| {
        a.mov(rax, target)?;
        a.jmp(rax)
    });
    run64(&mut t, &code);
    assert_eq!(t.exception(), Some(14), "{}", t.cpu.describe());
    assert_eq!((q(&t, 0), q(&t, 1)), (0x10, target), "I/D, not present; RIP = the instruction");
    assert_eq!(t.cpu.s.cr2, lin(6));
}

/// Regression (bug: I/D was set for fetch faults under 32-bit paging when EFER.NXE = 1).
/// SDM Vol. 3A §4.7: "I/D flag (bit 4). This flag is 1 if (1) the access causing the
/// page-fault exception was an instruction fetch; and (2) either (a) CR4.SMEP = 1; or (b) both
/// (i) CR4.PAE = 1 ... and (ii) IA32_EFER.NXE = 1" — with 32-bit paging (PAE = 0) it is 0.
#[test]
fn bug_pf_fetch_id_bit_with_32bit_paging() {
    let mut m = Legacy::pm32();
    // 32-bit paging with 4-MiB pages identity-mapping 16 MiB; PDE 0x100 (linear 0x4000_0000)
    // -> page table 0x40_1000 with every PTE not present.
    let pd = 0x40_0000u64;
    for k in 0..4u64 {
        put(&m.ram, pd + 4 * k, &(((k << 22) | 0x83) as u32).to_le_bytes());
    }
    put(&m.ram, pd + 4 * 0x100, &(0x40_1003u32).to_le_bytes());
    m.cpu.s.cr3 = pd;
    m.cpu.s.cr4 = cr::CR4_PSE;
    m.cpu.s.cr0 |= cr::CR0_PG | cr::CR0_WP;
    m.cpu.s.efer = cr::EFER_NXE;
    let code = asm(32, CODE, |a| {
        a.mov(eax, 0x4000_0000u32)?;
        a.jmp(eax)
    });
    m.run(CODE, &code);
    assert_eq!(m.exception(), Some(14), "{}", m.describe());
    let (ec, eip, _, _) = m.frame32();
    assert_eq!((ec, eip), (0, 0x4000_0000), "fetch of a not-present page: no I/D without PAE");
    assert_eq!(m.cpu.s.cr2, 0x4000_0000);
}

// ---------------------------------------------------------------------------------------------
// (4) Accessed/dirty bits and TLB invalidation.

/// SDM Vol. 3A §4.8: "Whenever the processor uses a paging-structure entry as part of
/// linear-address translation, it sets the accessed flag in that entry"; "Whenever there is a
/// write to a linear address, the processor sets the dirty flag ... in the paging-structure
/// entry that identifies the final physical address" — a read sets A on the PML4E, PDPTE, PDE
/// and PTE but no D; a write sets D on the leaf only (a PTE, or a PDE mapping a 2-MiB page).
#[test]
fn paging_accessed_dirty_bits() {
    let mut t = TestCpu::new();
    map4k(&mut t);
    set_pte(&t, 0, P | RW);
    set_pte(&t, 1, P | RW);
    put64(&t.ram, PD4K + 8, 0xA0_0000 | P | RW | PS); // 2 MiB page at LIN + 2 MiB
    let code = asm(64, CODE, |a| {
        a.mov(rsi, lin(0))?;
        a.mov(al, byte_ptr(rsi))
    });
    run64(&mut t, &code);
    assert_eq!(t.exception(), None);
    let upper = [0x1008u64, PDPT4K, PD4K];
    for e in upper.iter().copied().chain([PT4K]) {
        assert_eq!(get(&t.ram, e, 8) & (A | D), A, "read: entry at {e:#x} accessed, not dirty");
    }
    assert_eq!(get(&t.ram, PT4K + 8, 8) & (A | D), 0, "an unused PTE is untouched");
    // Read then write page 0, write page 1, write the 2 MiB page.
    let code = asm(64, CODE, |a| {
        a.mov(rsi, lin(0))?;
        a.mov(al, byte_ptr(rsi))?;
        a.mov(byte_ptr(rsi + 1), al)?;
        a.mov(byte_ptr(rsi + 0x1000), al)?;
        a.mov(rdi, LIN + 0x20_0000)?;
        a.mov(byte_ptr(rdi), al)
    });
    run64(&mut t, &code);
    assert_eq!(t.exception(), None);
    for e in upper {
        assert_eq!(get(&t.ram, e, 8) & (A | D), A, "write: non-leaf entry at {e:#x} gets no D");
    }
    assert_eq!(get(&t.ram, PT4K, 8) & (A | D), A | D, "PTE 0 dirty after the write");
    assert_eq!(get(&t.ram, PT4K + 8, 8) & (A | D), A | D, "PTE 1 dirty");
    assert_eq!(get(&t.ram, PD4K + 8, 8) & (A | D), A | D, "2-MiB PDE dirty");
}

/// Guest code: read LIN page 5 into R8, rewrite its PTE to point at another frame (as the guest
/// would, through memory), read again into R9, run `inval`, read into R10.
fn tlb_program(new_pte: u64, inval: impl FnOnce(&mut CodeAssembler) -> R) -> Vec<u8> {
    asm(64, CODE, |a| {
        a.mov(rsi, lin(5))?;
        a.mov(r8, qword_ptr(rsi))?;
        a.mov(rbx, PT4K + 5 * 8)?;
        a.mov(rcx, new_pte)?;
        a.mov(qword_ptr(rbx), rcx)?;
        a.mov(r9, qword_ptr(rsi))?;
        inval(a)?;
        a.mov(r10, qword_ptr(rsi))
    })
}

fn tlb_setup(global: bool) -> TestCpu {
    let mut t = TestCpu::new();
    map4k(&mut t);
    set_pte(&t, 5, P | RW | if global { G } else { 0 });
    put64(&t.ram, PHYS + 5 * 0x1000, 0x1111);
    put64(&t.ram, PHYS + 7 * 0x1000, 0x2222);
    t
}

/// SDM Vol. 3A §4.10.2–4.10.4: a translation cached in the TLB may still be used after the PTE
/// changes (§4.10.4.2, software must invalidate), INVLPG invalidates the page's entry
/// (§4.10.4.1) and MOV to CR3 all non-global entries. Heron's TLB keeps the stale entry until
/// then, so the read between the PTE write and the invalidation sees the old frame.
#[test]
fn tlb_invlpg_and_cr3_reload() {
    let new_pte = (PHYS + 7 * 0x1000) | P | RW;
    let mut t = tlb_setup(false);
    run64(&mut t, &tlb_program(new_pte, |a| a.invlpg(ptr(rsi))));
    let r = &t.cpu.s.regs;
    assert_eq!((t.exception(), r[8], r[9], r[10]), (None, 0x1111, 0x1111, 0x2222), "INVLPG");

    let mut t = tlb_setup(false);
    run64(&mut t, &tlb_program(new_pte, |a| {
        a.mov(rax, cr3)?;
        a.mov(cr3, rax)
    }));
    let r = &t.cpu.s.regs;
    assert_eq!((t.exception(), r[8], r[9], r[10]), (None, 0x1111, 0x1111, 0x2222), "CR3 reload");
}

/// SDM Vol. 3A §4.10.2.4 (Global Pages) and §4.10.4.1: with CR4.PGE = 1, MOV to CR3 does not
/// invalidate global translations; INVLPG and a write to CR4 that changes PGE do.
#[test]
fn tlb_global_page_survives_cr3_reload() {
    let new_pte = (PHYS + 7 * 0x1000) | P | RW | G;
    let mut t = tlb_setup(true);
    run64(&mut t, &tlb_program(new_pte, |a| {
        a.mov(rax, cr3)?;
        a.mov(cr3, rax)
    }));
    let r = &t.cpu.s.regs;
    assert_eq!((t.exception(), r[8], r[9], r[10]), (None, 0x1111, 0x1111, 0x1111), "global entry survives CR3 reload");

    let mut t = tlb_setup(true);
    run64(&mut t, &tlb_program(new_pte, |a| {
        a.mov(rax, cr3)?;
        a.mov(cr3, rax)?;
        a.invlpg(ptr(rsi))
    }));
    assert_eq!(t.cpu.s.regs[10], 0x2222, "INVLPG drops a global entry");

    let mut t = tlb_setup(true);
    run64(&mut t, &tlb_program(new_pte, |a| {
        a.mov(rax, cr4)?;
        a.btr(eax, 7)?;
        a.mov(cr4, rax)?;
        a.bts(eax, 7)?;
        a.mov(cr4, rax)
    }));
    assert_eq!(t.cpu.s.regs[10], 0x2222, "toggling CR4.PGE flushes global entries");
}

// ---------------------------------------------------------------------------------------------
// (5) Real mode.

/// SDM Vol. 3A ch. 22 "Segment Wraparound" and Vol. 2B MOV (Real-Address Mode Exceptions: "#GP
/// If a memory operand effective address is outside the CS, DS, ES, FS, or GS segment limit";
/// "#SS ... outside the SS segment limit"): a word at offset 0xFFFF does not wrap to offset 0
/// as on the 8086 but raises interrupt 13 (12 for SS), delivered through the IVT with no error
/// code: FLAGS, CS, IP of the faulting instruction.
#[test]
fn real_mode_segment_wrap_gp() {
    for (via_ss, vector) in [(false, 13u8), (true, 12)] {
        let mut m = Legacy::real();
        m.cpu.s.seg[sreg::CS] = Segment { selector: 0x1000, base: 0x10000, ..m.cpu.s.seg[sreg::CS] };
        let (bytes, ip) = asm2(
            16,
            0x100,
            |a| {
                a.mov(bp, 0xFFFF)?;
                a.mov(al, byte_ptr(0xFFFF))?; // a byte at 0xFFFF is fine
                a.mov(al, byte_ptr(bp))
            },
            |a| if via_ss { a.mov(ax, word_ptr(bp)) } else { a.mov(ax, word_ptr(0xFFFF)) },
        );
        m.run(0x100, &bytes);
        assert_eq!(m.exception(), Some(vector), "{}", m.describe());
        assert_eq!(m.cpu.s.regs[4] & 0xFFFF, 0x7000 - 6, "no error code in real mode");
        assert_eq!((m.stack(0, 2), m.stack(1, 2)), (ip, 0x1000), "IP, CS of the faulting instruction");
    }
}

/// SDM Vol. 3A §20.1.4 (real-mode interrupt handling) and Vol. 2A INT n (real-address mode:
/// push FLAGS, clear IF, TF, AC, push CS, push IP, load CS:IP from the IVT at vector * 4).
#[test]
fn real_mode_int_ivt_frame() {
    let mut m = Legacy::real();
    put(&m.ram, 0x80 * 4, &[0x34, 0x12, 0x00, 0x09]); // INT 0x80 -> 0900:1234
    put(&m.ram, 0x9000 + 0x1234, &[0xF4]);
    m.cpu.s.seg[sreg::CS] = Segment { selector: 0x1000, base: 0x10000, ..m.cpu.s.seg[sreg::CS] };
    let (bytes, next) = asm2(
        16,
        0x100,
        |a| {
            a.sti()?;
            a.stc()?;
            a.int(0x80)
        },
        |_| Ok(()),
    );
    m.run(0x100, &bytes);
    assert_eq!((m.cpu.s.seg[sreg::CS].selector, m.cpu.s.rip), (0x900, 0x1235), "{}", m.describe());
    assert_eq!(m.cpu.s.regs[4] & 0xFFFF, 0x7000 - 6);
    assert_eq!((m.stack(0, 2), m.stack(1, 2)), (next, 0x1000), "IP after INT, CS");
    assert_eq!(m.stack(2, 2) & (rf::IF | rf::CF), rf::IF | rf::CF, "FLAGS as before the INT");
    assert_eq!(m.cpu.s.rflags & rf::IF, 0, "IF cleared");
}

/// SDM Vol. 3A ch. 22 "A20M# Signal" ("Asserting this pin causes bit 20 of the physical address
/// to be masked (forced to zero)"): with the A20 gate off, FFFF:0510 (physical 0x100500)
/// aliases 0x500 for reads and writes.
#[test]
fn real_mode_a20_masking() {
    let mut m = Legacy::real();
    put(&m.ram, 0x500, &[0xAA]);
    put(&m.ram, 0x10_0500, &[0xBB]);
    let code = asm(16, 0x7C00, |a| {
        a.mov(ax, 0xFFFF)?;
        a.mov(es, ax)?;
        a.mov(bl, byte_ptr(0x510).es())?;
        a.mov(byte_ptr(0x511).es(), 0x77)
    });
    m.run(0x7C00, &code);
    assert_eq!(m.cpu.s.regs[3] & 0xFF, 0xBB, "A20 on: 0x100500");
    assert_eq!(get(&m.ram, 0x10_0501, 1), 0x77);
    m.cpu.set_a20(false);
    m.run(0x7C00, &code);
    assert_eq!(m.cpu.s.regs[3] & 0xFF, 0xAA, "A20 off: 0x100500 reads 0x500");
    assert_eq!(get(&m.ram, 0x501, 1), 0x77, "A20 off: the write lands at 0x501");
    m.cpu.set_a20(true);
    m.run(0x7C00, &code);
    assert_eq!(m.cpu.s.regs[3] & 0xFF, 0xBB, "A20 on again");
}

// ---------------------------------------------------------------------------------------------
// (6) IRET.

/// SDM Vol. 2A IRET (RETURN-TO-OUTER-PRIVILEGE-LEVEL; in IA-32e mode IRETQ always pops SS:RSP):
/// IRETQ from CPL 0 to a CPL-3 frame loads CS, RIP, RFLAGS, RSP and SS from the stack, and
/// nulls DS/ES whose DPL is below the new CPL.
#[test]
fn iretq_to_cpl3() {
    let mut t = TestCpu::new();
    user_setup(&mut t);
    let user = CODE + 0x100;
    let (ubytes, hlt) = asm2(64, user, |a| a.mov(r8, rsp), |a| a.hlt());
    put(&t.ram, user, &ubytes);
    let code = asm(64, CODE, |a| {
        a.push(UDATA as i32)?;
        a.push(0x1E_0000)?; // RSP
        a.push(0x203)?; // RFLAGS: IF, CF
        a.push(UCODE as i32)?;
        a.push(user as i32)?;
        a.iretq()
    });
    run64(&mut t, &code);
    assert_eq!(t.exception(), Some(13), "{}", t.cpu.describe());
    assert_eq!(t.cpu.s.regs[8], 0x1E_0000, "user RSP popped");
    // The #GP frame from the HLT: error code, RIP, CS, RFLAGS, RSP, SS at CPL 3.
    assert_eq!((q(&t, 1), q(&t, 2), q(&t, 3), q(&t, 4), q(&t, 5)), (hlt, UCODE as u64, 0x203, 0x1E_0000, UDATA as u64));
    assert_eq!(t.cpu.s.seg[sreg::DS].selector, 0, "DS (DPL 0) nulled on return to CPL 3");
    assert_eq!(t.cpu.s.seg[sreg::ES].selector, 0, "ES nulled");
}

/// SDM Vol. 2A IRET (RETURN-TO-SAME-PRIVILEGE-LEVEL): IRETD in 32-bit protected mode pops
/// EIP, CS, EFLAGS only — ESP ends 12 bytes higher, SS unchanged.
#[test]
fn iretd_same_privilege_pm32() {
    let mut m = Legacy::pm32();
    let target = CODE + 0x100;
    let tb = asm(32, target, |a| {
        a.pushfd()?;
        a.pop(ebx)?;
        a.mov(ecx, esp)
    });
    let mut tb2 = tb.clone();
    tb2.push(0xF4);
    put(&m.ram, target, &tb2);
    let code = asm(32, CODE, |a| {
        a.push(0x0CD7)?; // EFLAGS: CF PF AF ZF SF DF OF
        a.push(KCODE as i32)?;
        a.push(target as i32)?;
        a.iretd()
    });
    m.run(CODE, &code);
    assert_eq!(m.exception(), None, "{}", m.describe());
    assert_eq!(m.cpu.s.rip, target + tb.len() as u64 + 1);
    assert_eq!(m.cpu.s.regs[3] & 0xFFFF_FFFF, 0x0CD7, "EFLAGS popped");
    assert_eq!(m.cpu.s.regs[1] & 0xFFFF_FFFF, STACK_TOP, "ESP: only EIP, CS, EFLAGS popped");
    assert_eq!(m.cpu.s.seg[sreg::SS].selector, KDATA);
}

/// SDM Vol. 2A IRET (real-address mode: pop IP, CS, FLAGS; CS base = selector * 16).
#[test]
fn iret_real_mode() {
    let mut m = Legacy::real();
    let tb = asm(16, 0x10, |a| {
        a.pushf()?;
        a.pop(bx)?;
        a.mov(cx, sp)
    });
    put(&m.ram, 0x20010, &tb);
    put(&m.ram, 0x20010 + tb.len() as u64, &[0xF4]);
    let code = asm(16, 0x7C00, |a| {
        a.push(0x0CD7)?;
        a.push(0x2000)?;
        a.push(0x10)?;
        a.iret()
    });
    m.run(0x7C00, &code);
    assert_eq!((m.cpu.s.seg[sreg::CS].selector, m.cpu.s.seg[sreg::CS].base), (0x2000, 0x20000), "{}", m.describe());
    assert_eq!(m.cpu.s.rip, 0x10 + tb.len() as u64 + 1);
    assert_eq!(m.cpu.s.regs[3] & 0xFFFF, 0x0CD7, "FLAGS popped");
    assert_eq!(m.cpu.s.regs[1] & 0xFFFF, 0x7000);
}

/// Regression (bug: IRETQ loaded a non-canonical RIP and went on fetching from it). SDM Vol. 2A
/// IRET: "IF tempRIP is non-canonical THEN #GP(0)" for a return to 64-bit mode — the fault is
/// raised by the IRETQ itself, with nothing popped.
#[test]
fn bug_iretq_noncanonical_rip_not_checked() {
    let mut t = TestCpu::new();
    let ip = fault64(
        &mut t,
        |a| {
            a.push(0x10)?;
            a.push(STACK_TOP as i32)?;
            a.push(2)?;
            a.push(0x08)?;
            a.mov(rax, 0x8000_0000_0000_0000u64)?;
            a.push(rax)
        },
        |a| a.iretq(),
        13,
        Some(0),
    );
    assert_eq!(q(&t, 4), STACK_TOP - 5 * 8, "RSP at the fault: nothing popped");
    assert_eq!(q(&t, 2), 0x08, "still in the 64-bit kernel code segment");
    let _ = ip;
}

/// Regression (bug: far JMP, far CALL and RETF loaded a non-canonical RIP). SDM Vol. 2A JMP and
/// CALL ("IF tempRIP is non-canonical THEN #GP(0)" for a far transfer to 64-bit code) and RET
/// ("IF the return instruction pointer is not canonical THEN #GP(0)" for a far return to 64-bit
/// mode).
#[test]
fn bug_far_transfer_noncanonical_rip_not_checked() {
    let mut t = TestCpu::new();
    put64(&t.ram, DATA, 0x8000_0000_0000_0000);
    put(&t.ram, DATA + 8, &0x08u16.to_le_bytes());
    fault64(&mut t, |a| a.mov(rsi, DATA), |a| a.jmp(tword_ptr(rsi)), 13, Some(0));
    let mut t = TestCpu::new();
    put64(&t.ram, DATA, 0x8000_0000_0000_0000);
    put(&t.ram, DATA + 8, &0x08u16.to_le_bytes());
    fault64(&mut t, |a| a.mov(rsi, DATA), |a| a.call(tword_ptr(rsi)), 13, Some(0));
    assert_eq!(t.cpu.s.regs[4], STACK_TOP - 6 * 8, "nothing pushed by the CALL");
    let mut t = TestCpu::new();
    fault64(
        &mut t,
        |a| {
            a.push(0x08)?;
            a.mov(rax, 0x8000_0000_0000_0000u64)?;
            a.push(rax)
        },
        |a| a.db(&[0x48, 0xCB]), // RETFQ
        13,
        Some(0),
    );
}

// ---------------------------------------------------------------------------------------------
// (7) Double and triple faults.

/// Point IDT gate `v` at IST1 and IST1 at an unmapped stack (linear 0x4000_1000: PDPT[1] of
/// the test tables is not present).
fn gate_on_unmapped_ist(t: &TestCpu, v: u64) {
    let gate = t.cpu.s.idtr.base + 16 * v;
    put64(&t.ram, gate, get(&t.ram, gate, 8) | 1 << 32);
    put64(&t.ram, t.cpu.s.tr.base + 0x24, 0x4000_1000);
}

/// SDM Vol. 3A §6.15 Interrupt 8 and Table 6-5 (page fault followed by page fault -> #DF): a
/// #PF whose delivery faults on the (unmapped) handler stack becomes #DF with error code 0;
/// CR2 holds the second fault's address.
#[test]
fn double_fault_pf_during_pf() {
    let mut t = TestCpu::new();
    gate_on_unmapped_ist(&t, 14);
    let code = asm(64, CODE, |a| {
        a.mov(rax, 0x80_0000_0000u64)?;
        a.mov(al, byte_ptr(rax))
    });
    assert_eq!(run64(&mut t, &code), ExitReason::Halted);
    assert_eq!(t.exception(), Some(8), "{}", t.cpu.describe());
    assert_eq!(q(&t, 0), 0, "#DF error code");
    assert_eq!(t.cpu.s.cr2, 0x4000_1000 - 8, "CR2: the first frame write on the IST stack");
}

/// SDM Vol. 3A Table 6-5 (contributory followed by contributory -> #DF): #GP whose gate is not
/// present (#NP during delivery) becomes #DF.
#[test]
fn double_fault_np_during_gp() {
    let mut t = TestCpu::new();
    let gate = t.cpu.s.idtr.base + 16 * 13;
    put64(&t.ram, gate, get(&t.ram, gate, 8) & !(1 << 47));
    let code = asm(64, CODE, |a| {
        a.mov(ecx, 0x1234_5678)?;
        a.rdmsr()
    });
    run64(&mut t, &code);
    assert_eq!((t.exception(), q(&t, 0)), (Some(8), 0), "{}", t.cpu.describe());
}

/// SDM Vol. 3A Table 6-5 (contributory followed by page fault -> handle serially): a #PF while
/// delivering #GP is delivered as #PF, not #DF.
#[test]
fn pf_during_gp_is_serial() {
    let mut t = TestCpu::new();
    gate_on_unmapped_ist(&t, 13);
    let code = asm(64, CODE, |a| {
        a.mov(ecx, 0x1234_5678)?;
        a.rdmsr()
    });
    run64(&mut t, &code);
    assert_eq!(t.exception(), Some(14), "{}", t.cpu.describe());
    assert_eq!((q(&t, 0), t.cpu.s.cr2), (0b10, 0x4000_1000 - 8), "supervisor write, not present");
}

/// SDM Vol. 3A §6.15 Interrupt 8: "If another exception occurs while attempting to call the
/// double-fault handler, the processor enters shutdown mode" — Heron reports a triple fault.
#[test]
fn triple_fault_during_df() {
    let mut t = TestCpu::new();
    gate_on_unmapped_ist(&t, 14);
    gate_on_unmapped_ist(&t, 8);
    let code = asm(64, CODE, |a| {
        a.mov(rax, 0x80_0000_0000u64)?;
        a.mov(al, byte_ptr(rax))
    });
    let r = run64(&mut t, &code);
    assert!(matches!(r, ExitReason::TripleFault(_)), "{r:?}: {}", t.cpu.describe());
}

// ---------------------------------------------------------------------------------------------
// (8) SYSCALL/SYSRET and SWAPGS.

/// SDM Vol. 2B SYSCALL (RCX = next RIP, R11 = RFLAGS, CS = STAR[47:32], SS = STAR[47:32] + 8,
/// RFLAGS &= ~FMASK, RIP = LSTAR), SYSRET (64-bit: CS = STAR[63:48] + 16 | 3,
/// SS = STAR[63:48] + 8 | 3, RFLAGS = R11 & 0x3C7FD7 | 2, RIP = RCX) and SWAPGS (exchanges
/// GS.base with IA32_KERNEL_GS_BASE); Vol. 3A §5.8.8.
#[test]
fn syscall_sysret_swapgs_round_trip() {
    let mut t = TestCpu::new();
    user_mode(&mut t);
    let entry = CODE + 0x400;
    let s = &mut *t.cpu.s;
    s.msr.star = (0x18u64 << 48) | (0x08 << 32);
    s.msr.lstar = entry;
    s.msr.sfmask = rf::IF | rf::DF;
    s.seg[sreg::GS].base = 0x1111_0000;
    s.msr.kernel_gs_base = 0x2222_0000;
    s.rflags |= rf::IF;
    let kernel = asm(64, entry, |a| {
        a.mov(r8, rcx)?;
        a.mov(r9, r11)?;
        a.pushfq()?;
        a.pop(r10)?;
        a.mov(r12d, cs)?;
        a.mov(r13d, ss)?;
        a.swapgs()?;
        a.mov(ecx, 0xC000_0101u32)?;
        a.rdmsr()?;
        a.shl(rdx, 32)?;
        a.or(rax, rdx)?;
        a.mov(r14, rax)?;
        a.swapgs()?;
        a.mov(rcx, r8)?;
        a.mov(r11, r9)?;
        a.sysretq()
    });
    put(&t.ram, entry, &kernel);
    let (user, after) = asm2(64, CODE, |a| {
        a.std()?;
        a.syscall()
    }, |a| {
        a.pushfq()?;
        a.pop(r15)?;
        a.hlt() // #GP at CPL 3 ends the test
    });
    run64(&mut t, &user);
    let r = &t.cpu.s.regs;
    assert_eq!(t.exception(), Some(13), "{}", t.cpu.describe());
    assert_eq!(r[8], after, "RCX = the instruction after SYSCALL");
    assert_eq!(r[9] & (rf::IF | rf::DF), rf::IF | rf::DF, "R11 = RFLAGS before masking");
    assert_eq!(r[10] & (rf::IF | rf::DF), 0, "RFLAGS masked by FMASK in the kernel");
    assert_eq!((r[12], r[13]), (0x08, 0x10), "kernel CS, SS from STAR[47:32]");
    assert_eq!(r[14], 0x2222_0000, "SWAPGS: GS.base = old KERNEL_GS_BASE");
    assert_eq!(r[15] & (rf::IF | rf::DF), rf::IF | rf::DF, "SYSRET restored RFLAGS from R11");
    // #GP frame from the HLT after SYSRET: CPL 3 selectors from STAR[63:48].
    assert_eq!((q(&t, 1), q(&t, 2), q(&t, 5)), (after + 3, 0x18 + 16 + 3, 0x18 + 8 + 3));
    assert_eq!(t.cpu.s.seg[sreg::GS].base, 0x1111_0000, "two SWAPGS: GS.base back");
    assert_eq!(t.cpu.s.msr.kernel_gs_base, 0x2222_0000);
}

// ---------------------------------------------------------------------------------------------
// (9) CR0/CR4/EFER and MSR write checks.

/// SDM Vol. 2B MOV to CR0: "#GP(0) If an attempt is made to activate IA-32e mode and PAE is
/// disabled" (Vol. 3A §9.8.5): CR0.PG with EFER.LME = 1 and CR4.PAE = 0.
#[test]
fn cr0_pg_with_lme_without_pae_gp0() {
    let m = pm32_fault(
        |a| {
            a.mov(ecx, 0xC000_0080u32)?;
            a.rdmsr()?;
            a.or(eax, cr::EFER_LME as i32)?;
            a.wrmsr()?;
            a.mov(eax, cr0)?;
            a.or(eax, cr::CR0_PG as u32 as i32)
        },
        |a| a.mov(cr0, eax),
        13,
        0,
    );
    assert_eq!(m.cpu.s.cr0 & cr::CR0_PG, 0);
    assert_eq!(m.cpu.s.efer & (cr::EFER_LME | cr::EFER_LMA), cr::EFER_LME);
}

/// SDM Vol. 2B MOV to CR4 (64-bit mode exceptions): "#GP(0) If an attempt is made to clear
/// CR4.PAE".
#[test]
fn cr4_clear_pae_in_long_mode_gp0() {
    let mut t = TestCpu::new();
    fault64(
        &mut t,
        |a| {
            a.mov(rax, cr4)?;
            a.and(eax, !(cr::CR4_PAE as i32))
        },
        |a| a.mov(cr4, rax),
        13,
        Some(0),
    );
    assert_ne!(t.cpu.s.cr4 & cr::CR4_PAE, 0);
}

/// SDM Vol. 2B WRMSR/RDMSR: "#GP(0) If the value in ECX specifies a reserved or unimplemented
/// MSR address".
#[test]
fn wrmsr_rdmsr_unknown_msr_gp0() {
    let mut t = TestCpu::new();
    fault64(&mut t, |a| a.mov(ecx, 0x1234_5678), |a| a.wrmsr(), 13, Some(0));
    let mut t = TestCpu::new();
    fault64(&mut t, |a| a.mov(ecx, 0x1234_5678), |a| a.rdmsr(), 13, Some(0));
}

/// SDM Vol. 2B WRMSR: "#GP(0) If the source register contains a non-canonical address and ECX
/// specifies one of the following MSRs: ... IA32_FS_BASE, IA32_GS_BASE, IA32_KERNEL_GS_BASE,
/// IA32_LSTAR ..."
#[test]
fn wrmsr_noncanonical_base_gp0() {
    for msr in [0xC000_0100u32, 0xC000_0101, 0xC000_0102, 0xC000_0082] {
        let mut t = TestCpu::new();
        fault64(
            &mut t,
            |a| {
                a.mov(ecx, msr)?;
                a.xor(eax, eax)?;
                a.mov(edx, 0x8000) // 0x0000_8000_0000_0000
            },
            |a| a.wrmsr(),
            13,
            Some(0),
        );
        assert_eq!(t.cpu.s.seg[sreg::FS].base, 0);
    }
    // A canonical value is accepted.
    let mut t = TestCpu::new();
    let code = asm(64, CODE, |a| {
        a.mov(ecx, 0xC000_0100u32)?;
        a.mov(eax, 0x1000)?;
        a.mov(edx, 0xFFFF_8000u32)?;
        a.wrmsr()
    });
    run64(&mut t, &code);
    assert_eq!((t.exception(), t.cpu.s.seg[sreg::FS].base), (None, 0xFFFF_8000_0000_1000));
}

// ---------------------------------------------------------------------------------------------
// The table in docs/conformance-system.md.

struct Case {
    name: &'static str,
    sdm: &'static str,
    expect: &'static str,
    run: fn(),
}

macro_rules! case {
    ($f:ident, $sdm:expr, $expect:expr) => {
        Case { name: stringify!($f), sdm: $sdm, expect: $expect, run: $f }
    };
}

const CASES: &[Case] = &[
    case!(seg_ds_limit_gp0, "Vol. 3A §5.3; Vol. 2B MOV", "DS access past the limit → #GP(0)"),
    case!(seg_es_limit_gp0, "Vol. 3A §5.3; Vol. 2B STOS", "STOSD past the ES limit → #GP(0)"),
    case!(seg_ss_limit_ss0, "Vol. 3A §5.3; Vol. 2B MOV", "[EBP] past the SS limit → #SS(0)"),
    case!(seg_expand_down_gp0, "Vol. 3A §5.3, §3.4.5.1", "expand-down (B=0): offset ≤ limit or past 0xFFFF → #GP(0)"),
    case!(seg_expand_down_stack_ss0, "Vol. 3A §5.3, §3.4.5.1", "expand-down stack (B=1): PUSH/POP ok, [EBP] ≤ limit → #SS(0)"),
    case!(seg_write_read_only_gp0, "Vol. 3A §5.4.1; Vol. 2B MOV", "write to read-only data segment → #GP(0)"),
    case!(seg_load_ss_read_only_gp_sel, "Vol. 2B MOV", "SS ← read-only data segment → #GP(selector)"),
    case!(seg_load_null_ss_gp0, "Vol. 2B MOV", "SS ← null selector → #GP(0)"),
    case!(seg_null_ds_access_gp0, "Vol. 3A §5.4.1; Vol. 2B MOV", "access through null DS → #GP(0)"),
    case!(seg_selector_beyond_gdt_limit_gp_sel, "Vol. 2B MOV; Vol. 3A §6.13", "selector past the GDT limit / null LDT → #GP(selector)"),
    case!(seg_not_present_np_sel, "Vol. 2B MOV; Vol. 3A §6.15", "DS/FS ← not-present → #NP(selector); SS ← not-present → #SS(selector)"),
    case!(cpl3_privileged_instructions_gp0, "Vol. 3A §5.9; Vol. 2 per instruction", "CLI, HLT, MOV CR0/CR3, RDMSR, WRMSR, LGDT, LIDT, INVLPG, SWAPGS at CPL 3 → #GP(0)"),
    case!(io_bitmap_cpl3, "Vol. 1 §19.5; Vol. 2A IN/OUT", "CPL 3, IOPL 0: bitmap-allowed port ok; denied bit or port past TSS limit → #GP(0); IOPL 3 ok"),
    case!(int_n_gate_dpl_gp, "Vol. 2A INT n; Vol. 3A §6.12.1.1", "INT n via DPL-0 gate from CPL 3 → #GP(n·8+2); DPL-3 gate → handler on RSP0"),
    case!(bug_int_n_gate_fault_saved_rip_after_int, "Vol. 2A INT n; Vol. 3A §6.5", "gate faults of INT n / INT3 (DPL, IDT/IVT limit, not present) are faults at the INT"),
    case!(pf_not_present_read_write, "Vol. 3A §4.7, §6.15", "not present: EC 0 (read) / 2 (write), CR2 = address"),
    case!(pf_user_supervisor_and_read_only, "Vol. 3A §4.6, §4.7", "CPL 3 read of supervisor page → EC 5; user write to read-only → EC 7"),
    case!(pf_supervisor_write_read_only_wp, "Vol. 3A §4.6.1", "CPL 0 write to read-only page: CR0.WP=1 → EC 3; WP=0 → allowed"),
    case!(pf_fetch_nx_page, "Vol. 3A §4.6, §4.7", "fetch from XD page (NXE=1) → EC 0x11 (P, I/D), CR2 = RIP"),
    case!(pf_reserved_bit_pte, "Vol. 3A §4.5.4, §4.7", "PTE reserved bit → EC 9 (read) / 0xB (write)"),
    case!(bug_pf_reserved_bit_2m_pde_ignored, "Vol. 3A §4.5.4 Table 4-18, §4.7", "2-MiB PDE bit 13 set → EC 9 (PAT bit 12 is fine)"),
    case!(pf_cr2_access_crossing_into_unmapped_page, "Vol. 3A §6.15 Interrupt 14", "data access / instruction crossing into an unmapped page → CR2 = that page's first byte"),
    case!(bug_pf_fetch_id_bit_with_32bit_paging, "Vol. 3A §4.7", "32-bit paging, NXE=1: fetch fault has I/D = 0"),
    case!(paging_accessed_dirty_bits, "Vol. 3A §4.8", "read sets A on PML4E/PDPTE/PDE/PTE, no D; write sets D on the leaf only"),
    case!(tlb_invlpg_and_cr3_reload, "Vol. 3A §4.10.4.1–4.10.4.2", "changed PTE: stale until INVLPG / CR3 reload, fresh after"),
    case!(tlb_global_page_survives_cr3_reload, "Vol. 3A §4.10.2.4, §4.10.4.1", "global page (PGE=1) survives CR3 reload; INVLPG or CR4.PGE toggle flush it"),
    case!(real_mode_segment_wrap_gp, "Vol. 3A ch. 22 Segment Wraparound; Vol. 2B MOV", "real mode: word at offset 0xFFFF → interrupt 13 (12 via SS) through the IVT"),
    case!(real_mode_int_ivt_frame, "Vol. 3A §20.1.4; Vol. 2A INT n", "real mode INT n: FLAGS, CS, IP pushed, IF cleared, CS:IP from IVT"),
    case!(real_mode_a20_masking, "Vol. 3A ch. 22 A20M# Signal", "A20 off: 0x100500 aliases 0x500 (read and write)"),
    case!(iretq_to_cpl3, "Vol. 2A IRET", "IRETQ to CPL 3 pops RIP, CS, RFLAGS, RSP, SS; nulls DPL-0 DS/ES"),
    case!(iretd_same_privilege_pm32, "Vol. 2A IRET", "IRETD same privilege pops EIP, CS, EFLAGS only"),
    case!(iret_real_mode, "Vol. 2A IRET", "real-mode IRET pops IP, CS, FLAGS"),
    case!(bug_iretq_noncanonical_rip_not_checked, "Vol. 2A IRET", "IRETQ to non-canonical RIP → #GP(0) at the IRETQ"),
    case!(bug_far_transfer_noncanonical_rip_not_checked, "Vol. 2A JMP, CALL, RET", "far JMP / CALL / RETF to non-canonical RIP → #GP(0)"),
    case!(double_fault_pf_during_pf, "Vol. 3A §6.15 Interrupt 8, Table 6-5", "#PF while delivering #PF → #DF(0)"),
    case!(double_fault_np_during_gp, "Vol. 3A Table 6-5", "#NP while delivering #GP → #DF(0)"),
    case!(pf_during_gp_is_serial, "Vol. 3A Table 6-5", "#PF while delivering #GP → #PF (serial)"),
    case!(triple_fault_during_df, "Vol. 3A §6.15 Interrupt 8", "fault while delivering #DF → shutdown (ExitReason::TripleFault)"),
    case!(syscall_sysret_swapgs_round_trip, "Vol. 2B SYSCALL, SYSRET, SWAPGS; Vol. 3A §5.8.8", "RCX/R11, STAR selectors, FMASK, SWAPGS ↔ KERNEL_GS_BASE"),
    case!(cr0_pg_with_lme_without_pae_gp0, "Vol. 2B MOV CR; Vol. 3A §9.8.5", "CR0.PG with LME=1, PAE=0 → #GP(0)"),
    case!(cr4_clear_pae_in_long_mode_gp0, "Vol. 2B MOV CR", "clear CR4.PAE in IA-32e mode → #GP(0)"),
    case!(wrmsr_rdmsr_unknown_msr_gp0, "Vol. 2B WRMSR, RDMSR", "unknown MSR → #GP(0)"),
    case!(wrmsr_noncanonical_base_gp0, "Vol. 2B WRMSR", "non-canonical FS/GS/KERNEL_GS base, LSTAR → #GP(0)"),
];

/// Runs every case (each is also its own #[test]) and, with HERON_SYSTEM_WRITE=1, writes the
/// table to docs/conformance-system.md.
#[test]
fn system_table() {
    if !std::env::var("HERON_SYSTEM_WRITE").is_ok_and(|v| v == "1") {
        return;
    }
    let mut s = String::from(
        "# CPU conformance: system-level cases\n\n\
         Generated by `crates/heron-cpu/tests/system.rs`:\n\n\
         ```\nHERON_SYSTEM_WRITE=1 cargo test --release -p heron-cpu --test system -- system_table\n```\n\n\
         Protection, paging, interrupt and mode behaviour that user-mode code cannot run natively, \
         so the host-oracle harness ([conformance.md](conformance.md)) cannot check it. Each case \
         is a small guest program (iced-x86 `code_asm`) run on a bare `Cpu` in real mode or 32-bit \
         protected mode, or on `TestCpu` in 64-bit mode, and checked against the result the Intel \
         SDM states; exception handlers are HLTs at known addresses, so the vector, error code, \
         saved RIP and CR2 are all checked. Cases named `bug_…` are regression tests for Heron \
         bugs these cases found.\n\n\
         Not tested, because Heron does not implement them and raises #GP(0) instead: hardware \
         task switching (task gates, far JMP/CALL to a TSS, IRET with NT = 1), call gates, and \
         virtual-8086 mode.\n\n\
         | case | Intel SDM | expected (SDM) | Heron |\n|---|---|---|---|\n",
    );
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let mut failed = Vec::new();
    for c in CASES {
        let ok = panic::catch_unwind(c.run).is_ok();
        if !ok {
            failed.push(c.name);
        }
        s += &format!("| `{}` | {} | {} | {} |\n", c.name, c.sdm, c.expect, if ok { "pass" } else { "**FAIL**" });
    }
    panic::set_hook(hook);
    s += &format!("\n{} cases, {} failing.\n", CASES.len(), failed.len());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/conformance-system.md");
    std::fs::write(path, s).expect("write docs/conformance-system.md");
    println!("wrote {path}");
    assert!(failed.is_empty(), "failing cases: {failed:?}");
}

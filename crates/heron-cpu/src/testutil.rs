//! A bare CPU for instruction tests: flat 64-bit long mode over identity-mapped RAM, no
//! devices, and an IDT whose handlers halt at known addresses so a test can tell which
//! exception was raised. Used by unit tests and the conformance harness.

use heron_softmmu::{Bus, GuestRam};

use crate::state::{cr, rf, seg, sreg, Segment, TableReg};
use crate::{Cpu, ExitReason};

/// A bus with nothing on it: I/O reads all ones, writes are dropped, no interrupts.
pub struct NullBus;

impl Bus for NullBus {
    fn pio_read(&mut self, _: u64, _: u16, _: u8) -> u32 {
        u32::MAX
    }
    fn pio_write(&mut self, _: u64, _: u16, _: u8, _: u32) {}
    fn mmio_read(&mut self, _: u64, _: u64, _: u8) -> u64 {
        u64::MAX
    }
    fn mmio_write(&mut self, _: u64, _: u64, _: u8, _: u64) {}
    fn interrupt_pending(&self) -> bool {
        false
    }
    fn acknowledge_interrupt(&mut self) -> u8 {
        0
    }
}

/// Guest-physical address where test code is placed.
pub const CODE: u64 = 0x10_0000;
/// Guest-physical address of a 64 KiB scratch data area.
pub const DATA: u64 = 0x20_0000;
/// Top of the test stack.
pub const STACK_TOP: u64 = 0x30_0000;
/// Exception handler for vector `v` is a HLT at `HANDLERS + 16 * v`.
pub const HANDLERS: u64 = 0x8000;
const IDT: u64 = 0x4000;
const GDT: u64 = 0x500;

/// A CPU in 64-bit mode (CPL 0, paging with 2 MiB identity pages over the first GiB) on
/// 16 MiB of RAM.
pub struct TestCpu {
    /// The CPU under test.
    pub cpu: Cpu,
    /// Its RAM.
    pub ram: GuestRam,
}

impl Default for TestCpu {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCpu {
    /// Build the machine: page tables at 0x1000–0x3FFF, IDT at 0x4000, handlers at 0x8000.
    pub fn new() -> Self {
        let mut ram = GuestRam::new(16 << 20).expect("test RAM");
        let w64 = |ram: &mut GuestRam, a: u64, v: u64| ram.write_bytes(a, &v.to_le_bytes()).unwrap();
        w64(&mut ram, 0x1000, 0x2000 | 3);
        w64(&mut ram, 0x2000, 0x3000 | 3);
        for k in 0..512u64 {
            w64(&mut ram, 0x3000 + 8 * k, (k << 21) | 0x83);
        }
        // GDT: null, 64-bit code (0x08), data (0x10).
        w64(&mut ram, GDT, 0);
        w64(&mut ram, GDT + 8, 0x00AF_9A00_0000_FFFF);
        w64(&mut ram, GDT + 16, 0x00CF_9200_0000_FFFF);
        for v in 0..32u64 {
            let h = HANDLERS + 16 * v;
            ram.write_bytes(h, &[0xF4]).unwrap(); // HLT
            let lo = (h & 0xFFFF) | (0x08 << 16) | (0x8E00u64 << 32) | ((h >> 16) & 0xFFFF) << 48;
            w64(&mut ram, IDT + 16 * v, lo);
            w64(&mut ram, IDT + 16 * v + 8, h >> 32);
        }
        let mut cpu = Cpu::new(ram.clone());
        let s = &mut *cpu.s;
        s.cr0 = cr::CR0_PE | cr::CR0_MP | cr::CR0_ET | cr::CR0_NE | cr::CR0_WP | cr::CR0_PG;
        s.cr4 = cr::CR4_PAE | cr::CR4_PGE | cr::CR4_OSFXSR | cr::CR4_OSXMMEXCPT;
        s.cr3 = 0x1000;
        s.efer = cr::EFER_LME | cr::EFER_LMA | cr::EFER_NXE | cr::EFER_SCE;
        s.gdtr = TableReg { base: GDT, limit: 23 };
        s.idtr = TableReg { base: IDT, limit: 32 * 16 - 1 };
        s.seg[sreg::CS] = Segment::from_descriptor(0x08, 0x00AF_9A00_0000_FFFF);
        for r in [sreg::SS, sreg::DS, sreg::ES, sreg::FS, sreg::GS] {
            s.seg[r] = Segment::from_descriptor(0x10, 0x00CF_9200_0000_FFFF);
        }
        s.tr = Segment { selector: 0, attr: seg::P | 0xB, limit: 0x67, base: 0x7000 };
        s.rflags = rf::FIXED;
        s.regs[4] = STACK_TOP;
        TestCpu { cpu, ram }
    }

    /// Place `code` at [`CODE`] followed by HLT, run it from there until it halts (at most
    /// `max_insns` instructions), and return why it stopped.
    pub fn run(&mut self, code: &[u8], max_insns: u64) -> ExitReason {
        let mut bytes = code.to_vec();
        bytes.push(0xF4);
        self.ram.write_bytes(CODE, &bytes).unwrap();
        self.cpu.flush_code();
        self.cpu.s.rip = CODE;
        self.cpu.s.halted = false;
        let until = self.cpu.s.icount + max_insns;
        self.cpu.run(&mut NullBus, until)
    }

    /// Like [`TestCpu::run`], but the TLB keeps its entries: only the blocks decoded from the
    /// code's pages are invalidated (their translations become unreachable and go at the next
    /// code-cache flush). Memory accesses to pages earlier runs touched then take the TLB fast
    /// path, in tier 1 the inline one. Only valid while the page tables stay as `new` built
    /// them.
    pub fn run_keep_tlb(&mut self, code: &[u8], max_insns: u64) -> ExitReason {
        let mut bytes = code.to_vec();
        bytes.push(0xF4);
        self.ram.write_bytes(CODE, &bytes).unwrap();
        self.cpu.invalidate_code_range(CODE, bytes.len() as u64);
        self.cpu.s.rip = CODE;
        self.cpu.s.halted = false;
        let until = self.cpu.s.icount + max_insns;
        self.cpu.run(&mut NullBus, until)
    }

    /// The exception vector whose handler the CPU halted in, if any.
    pub fn exception(&self) -> Option<u8> {
        let rip = self.cpu.s.rip;
        if (HANDLERS + 1..HANDLERS + 32 * 16).contains(&rip) && (rip - HANDLERS - 1) % 16 == 0 {
            Some(((rip - HANDLERS - 1) / 16) as u8)
        } else {
            None
        }
    }

    /// The error code the last exception pushed (valid for vectors that push one).
    pub fn error_code(&self) -> u64 {
        let mut b = [0u8; 8];
        self.ram.read_bytes(self.cpu.s.regs[4], &mut b).unwrap();
        u64::from_le_bytes(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_flags() {
        let mut t = TestCpu::new();
        // mov eax, 0xFFFFFFFF; add eax, 1; setc bl; setz cl
        let r = t.run(&[0xB8, 0xFF, 0xFF, 0xFF, 0xFF, 0x83, 0xC0, 0x01, 0x0F, 0x92, 0xC3, 0x0F, 0x94, 0xC1], 100);
        assert_eq!(r, ExitReason::Halted);
        assert_eq!(t.exception(), None);
        assert_eq!(t.cpu.s.regs[0], 0);
        assert_eq!(t.cpu.s.regs[3] & 0xFF, 1);
        assert_eq!(t.cpu.s.regs[1] & 0xFF, 1);
    }

    #[test]
    fn divide_error_and_ud() {
        let mut t = TestCpu::new();
        // xor ecx, ecx; div ecx
        t.run(&[0x31, 0xC9, 0xF7, 0xF1], 100);
        assert_eq!(t.exception(), Some(crate::vec::DE));
        let mut t = TestCpu::new();
        t.run(&[0x0F, 0x0B], 100);
        assert_eq!(t.exception(), Some(crate::vec::UD));
    }

    #[test]
    fn page_fault_sets_cr2() {
        let mut t = TestCpu::new();
        // mov rax, 0x8000000000 (unmapped); mov [rax], al
        let mut code = vec![0x48, 0xB8];
        code.extend_from_slice(&0x80_0000_0000u64.to_le_bytes());
        code.extend_from_slice(&[0x88, 0x00]);
        t.run(&code, 100);
        assert_eq!(t.exception(), Some(crate::vec::PF));
        assert_eq!(t.cpu.s.cr2, 0x80_0000_0000);
        assert_eq!(t.error_code(), 0b10); // write, not present, supervisor
    }

    #[test]
    fn enter_leave_restore_frame() {
        let mut t = TestCpu::new();
        // push rbp; mov rbp, rsp; sub rsp, 0x20; leave; enter 0x10, 0; leave
        t.run(&[0x55, 0x48, 0x89, 0xE5, 0x48, 0x83, 0xEC, 0x20, 0xC9, 0xC8, 0x10, 0x00, 0x00, 0xC9], 100);
        assert_eq!(t.exception(), None);
        assert_eq!(t.cpu.s.regs[4], STACK_TOP);
    }

    #[test]
    fn rep_movsb_and_self_modifying_code() {
        let mut t = TestCpu::new();
        t.ram.write_bytes(DATA, b"hello, world").unwrap();
        // lea rsi,[DATA]; lea rdi,[DATA+0x100]; mov ecx,12; rep movsb
        let mut code = vec![0x48, 0xC7, 0xC6];
        code.extend_from_slice(&(DATA as u32).to_le_bytes());
        code.extend_from_slice(&[0x48, 0xC7, 0xC7]);
        code.extend_from_slice(&((DATA + 0x100) as u32).to_le_bytes());
        code.extend_from_slice(&[0xB9, 12, 0, 0, 0, 0xF3, 0xA4]);
        t.run(&code, 1000);
        let mut b = [0u8; 12];
        t.ram.read_bytes(DATA + 0x100, &mut b).unwrap();
        assert_eq!(&b, b"hello, world");
        // Self-modifying: overwrite the next instruction's immediate, then run it.
        // mov byte [rip+1], 0x42 ; mov al, 0x00   (the store patches the imm8 of mov al)
        let code = [0xC6, 0x05, 0x01, 0x00, 0x00, 0x00, 0x42, 0xB0, 0x00];
        t.run(&code, 100);
        assert_eq!(t.cpu.s.regs[0] & 0xFF, 0x42);
    }
}

//! The mode machinery end to end: real mode (IVT interrupt) → 32-bit protected mode (IDT
//! interrupt gate, IRETD) → PAE paging + EFER.LME → 64-bit mode, as a boot loader does it
//! (Intel SDM Vol. 3A §9.8–9.9). Also a user-mode (CPL 3) #GP with a privilege-changing
//! interrupt in 64-bit mode.

use heron_cpu::state::{cr, sreg, Segment};
use heron_cpu::testutil::{NullBus, TestCpu};
use heron_cpu::{Cpu, ExitReason};
use heron_softmmu::GuestRam;
use iced_x86::code_asm::*;

fn asm(bits: u32, ip: u64, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).unwrap();
    f(&mut a).unwrap();
    a.assemble(ip).unwrap()
}

fn put(ram: &mut GuestRam, at: u64, b: &[u8]) {
    ram.write_bytes(at, b).unwrap();
}

fn put64(ram: &mut GuestRam, at: u64, v: u64) {
    put(ram, at, &v.to_le_bytes());
}

#[test]
fn real_to_protected_to_long_mode() {
    let mut ram = GuestRam::new(16 << 20).unwrap();
    // GDT at 0x6000: null, 0x08 32-bit code, 0x10 data, 0x18 64-bit code.
    put64(&mut ram, 0x6000, 0);
    put64(&mut ram, 0x6008, 0x00CF_9A00_0000_FFFF);
    put64(&mut ram, 0x6010, 0x00CF_9200_0000_FFFF);
    put64(&mut ram, 0x6018, 0x00AF_9A00_0000_FFFF);
    // GDTR image at 0x6100: limit, base.
    put(&mut ram, 0x6100, &[0x1F, 0x00, 0x00, 0x60, 0x00, 0x00]);
    // 32-bit IDT at 0x6200 with one interrupt gate (vector 0x81 -> 0x08:0x8800); IDTR at 0x6180.
    let gate = 0x8800u64 | (0x08 << 16) | (0x8E00u64 << 32);
    put64(&mut ram, 0x6200 + 0x81 * 8, gate);
    put(&mut ram, 0x6180, &[0xFF, 0x07, 0x00, 0x62, 0x00, 0x00]);
    // PAE/4-level tables: PML4 0x10000 -> PDPT 0x11000 -> PD 0x12000, 2 MiB identity pages.
    put64(&mut ram, 0x10000, 0x11000 | 3);
    put64(&mut ram, 0x11000, 0x12000 | 3);
    put64(&mut ram, 0x12000, 0x83);
    put64(&mut ram, 0x12008, 0x20_0000 | 0x83);

    // Real-mode handler for INT 0x80 at 0000:7B00: mov bx, 0x1234; iret.
    put(&mut ram, 0x7B00, &asm(16, 0x7B00, |a| {
        a.mov(bx, 0x1234)?;
        a.iret()
    }));
    // Real mode at 0000:7C00.
    let mut real = asm(16, 0x7C00, |a| {
        a.cli()?;
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.mov(ss, ax)?;
        a.mov(sp, 0x7000)?;
        a.mov(word_ptr(0x80 * 4), 0x7B00)?;
        a.mov(word_ptr(0x80 * 4 + 2), 0)?;
        a.int(0x80)?;
        a.lgdt(word_ptr(0x6100))?;
        a.mov(eax, cr0)?;
        a.or(eax, 1)?;
        a.mov(cr0, eax)
    });
    real.extend_from_slice(&[0xEA, 0x00, 0x80, 0x08, 0x00]); // jmp 0x08:0x8000
    put(&mut ram, 0x7C00, &real);
    // 32-bit handler: mov ecx, 0xCAFE; iretd.
    put(&mut ram, 0x8800, &asm(32, 0x8800, |a| {
        a.mov(ecx, 0xCAFE)?;
        a.iretd()
    }));
    // 32-bit protected mode at 0x8000: segments, IDT interrupt, then long mode.
    let mut pm = asm(32, 0x8000, |a| {
        a.mov(ax, 0x10)?;
        a.mov(ds, ax)?;
        a.mov(es, ax)?;
        a.mov(ss, ax)?;
        a.mov(esp, 0x9F00)?;
        a.lidt(dword_ptr(0x6180))?;
        a.int(0x81)?;
        a.mov(edi, ecx)?;
        a.mov(eax, cr4)?;
        a.or(eax, 0x20)?; // PAE
        a.mov(cr4, eax)?;
        a.mov(eax, 0x10000)?;
        a.mov(cr3, eax)?;
        a.mov(ecx, 0xC000_0080u32)?;
        a.rdmsr()?;
        a.or(eax, 0x100)?; // LME
        a.wrmsr()?;
        a.mov(eax, cr0)?;
        a.or(eax, 0x8000_0000u32 as i32)?; // PG
        a.mov(cr0, eax)
    });
    pm.extend_from_slice(&[0xEA, 0x00, 0x90, 0x00, 0x00, 0x18, 0x00]); // jmp 0x18:0x9000
    put(&mut ram, 0x8000, &pm);
    // 64-bit code at 0x9000.
    put(&mut ram, 0x9000, &asm(64, 0x9000, |a| {
        a.mov(rax, 0x1122_3344_5566_7788u64)?;
        a.mov(r15, rax)?;
        a.hlt()
    }));

    let mut cpu = Cpu::new(ram.clone());
    cpu.s.seg[sreg::CS] = Segment { selector: 0, base: 0, ..cpu.s.seg[sreg::CS] };
    cpu.s.rip = 0x7C00;
    let r = cpu.run(&mut NullBus, 10_000);
    assert_eq!(r, ExitReason::Halted, "{}", cpu.describe());
    assert_eq!(cpu.s.regs[3] & 0xFFFF, 0x1234, "real-mode INT 0x80 via the IVT");
    assert_eq!(cpu.s.regs[7] & 0xFFFF_FFFF, 0xCAFE, "protected-mode INT 0x81 via the IDT");
    assert_eq!(cpu.s.regs[15], 0x1122_3344_5566_7788, "64-bit code ran");
    assert_ne!(cpu.s.efer & cr::EFER_LMA, 0);
    assert_eq!(cpu.s.code_bits(), 64);
    assert_eq!(cpu.s.rip, 0x9000 + 10 + 3 + 1);
}

#[test]
fn user_mode_gp_switches_to_the_kernel_stack() {
    let mut t = TestCpu::new();
    // A user code segment (0x1B) and data segment (0x23) in the test GDT, a TSS with RSP0.
    let gdt = t.cpu.s.gdtr.base;
    put64(&mut t.ram, gdt + 0x18, 0x00AF_FA00_0000_FFFF);
    put64(&mut t.ram, gdt + 0x20, 0x00CF_F200_0000_FFFF);
    t.cpu.s.gdtr.limit = 0x27;
    let tss = t.cpu.s.tr.base;
    put64(&mut t.ram, tss + 4, 0x28_0000); // RSP0
    // Pages must be user-accessible: set U/S on the identity mappings.
    for k in 0..8u64 {
        put64(&mut t.ram, 0x3000 + 8 * k, (k << 21) | 0x87);
    }
    for a in [0x1000u64, 0x2000] {
        let mut b = [0u8; 8];
        t.ram.read_bytes(a, &mut b).unwrap();
        put64(&mut t.ram, a, u64::from_le_bytes(b) | 4);
    }
    // Kernel: build an IRETQ frame to user code at CODE+0x100, which executes CLI (#GP at CPL 3).
    let user = heron_cpu::testutil::CODE + 0x100;
    put(&mut t.ram, user, &[0xFA]);
    let code = asm(64, heron_cpu::testutil::CODE, |a| {
        a.push(0x23)?; // SS
        a.push(0x1F_0000)?; // RSP
        a.push(0x202)?; // RFLAGS (IF)
        a.push(0x1B)?; // CS
        a.push(user as i32)?; // RIP
        a.iretq()
    });
    t.run(&code, 100);
    assert_eq!(t.exception(), Some(13), "{}", t.cpu.describe());
    assert_eq!(t.cpu.s.cpl(), 0);
    // The frame is on the RSP0 stack: error code, RIP, CS, RFLAGS, RSP, SS.
    let frame = t.cpu.s.regs[4];
    assert_eq!(frame, 0x28_0000 - 6 * 8);
    let word = |k: u64| {
        let mut b = [0u8; 8];
        t.ram.read_bytes(frame + 8 * k, &mut b).unwrap();
        u64::from_le_bytes(b)
    };
    assert_eq!(word(0), 0, "#GP(0)");
    assert_eq!(word(1), user, "faulting RIP");
    assert_eq!(word(2), 0x1B);
    assert_eq!(word(4), 0x1F_0000);
    assert_eq!(word(5), 0x23);
}

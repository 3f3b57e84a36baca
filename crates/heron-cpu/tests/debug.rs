//! Debugging: the external debugger's breakpoints, watchpoints and single-step, and the
//! guest-visible TF single-step and DR0–DR7 breakpoints (Intel SDM Vol. 3B ch. 18), on the
//! bare 64-bit test CPU.

use heron_cpu::debug::{DebugStop, WatchKind, Watchpoint};
use heron_cpu::testutil::{NullBus, TestCpu, CODE, DATA};
use heron_cpu::ExitReason;
use iced_x86::code_asm::*;

fn asm(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.assemble(CODE).unwrap()
}

/// Go on from the current RIP (TestCpu::run restarts at CODE).
fn resume(t: &mut TestCpu) -> ExitReason {
    let until = t.cpu.s.icount + 1000;
    t.cpu.run(&mut NullBus, until)
}

/// Length of the first instruction of `code`.
fn len1(code: &[u8]) -> u64 {
    let mut d = iced_x86::Decoder::with_ip(64, code, CODE, 0);
    d.decode().len() as u64
}

#[test]
fn debugger_breakpoint_stops_before_the_instruction_and_memory_is_unchanged() {
    let code = asm(|a| {
        a.mov(eax, 1)?;
        a.mov(ebx, 2)?;
        a.mov(ecx, 3)
    });
    let mut t = TestCpu::new();
    let brk = CODE + len1(&code);
    t.cpu.set_breakpoint(brk, true);
    assert_eq!(t.run(&code, 100), ExitReason::Debug(DebugStop::Breakpoint));
    assert_eq!(t.cpu.s.rip, brk);
    assert_eq!((t.cpu.s.regs[0], t.cpu.s.regs[3]), (1, 0));
    assert_eq!(t.cpu.debug_read_linear(brk), Some(code[len1(&code) as usize]), "breakpoints do not show in memory");
    // Stopped there again while it stays set; cleared, the run goes on to the HLT.
    assert_eq!(resume(&mut t), ExitReason::Debug(DebugStop::Breakpoint));
    t.cpu.set_breakpoint(brk, false);
    assert_eq!(resume(&mut t), ExitReason::Halted);
    assert_eq!((t.cpu.s.regs[3], t.cpu.s.regs[1]), (2, 3));
}

#[test]
fn single_step_retires_exactly_one_instruction() {
    let code = asm(|a| {
        a.mov(eax, 1)?;
        a.add(eax, eax)?;
        a.jmp(CODE + 0x20)?;
        a.db(&[0x90; 0x20])
    });
    let mut t = TestCpu::new();
    t.cpu.set_single_step(true);
    let mut rips = Vec::new();
    assert_eq!(t.run(&code, 100), ExitReason::Debug(DebugStop::Step));
    rips.push(t.cpu.s.rip);
    for _ in 0..3 {
        let n = t.cpu.s.icount;
        assert_eq!(resume(&mut t), ExitReason::Debug(DebugStop::Step));
        assert_eq!(t.cpu.s.icount, n + 1);
        rips.push(t.cpu.s.rip);
    }
    let l1 = len1(&code);
    assert_eq!(rips[0], CODE + l1);
    assert_eq!(t.cpu.s.regs[0], 2);
    assert_eq!(rips[2], CODE + 0x20, "the jump was taken");
    assert_eq!(rips[3], CODE + 0x21);
}

#[test]
fn watchpoints_stop_after_the_access_by_kind() {
    let code = asm(|a| {
        a.mov(eax, dword_ptr(DATA + 0x10))?; // read
        a.mov(dword_ptr(DATA + 0x12), ebx)?; // write overlapping bytes 0x12..0x16
        a.nop()
    });
    let mut t = TestCpu::new();
    let w = Watchpoint { addr: DATA + 0x14, len: 4, kind: WatchKind::Write };
    t.cpu.set_watchpoint(w, true);
    // The read of DATA+0x10..0x14 does not overlap; the write does.
    assert_eq!(t.run(&code, 100), ExitReason::Debug(DebugStop::Watchpoint { addr: w.addr, kind: WatchKind::Write }));
    let mut d = iced_x86::Decoder::with_ip(64, &code, CODE, 0);
    let (_, second) = (d.decode(), d.decode());
    assert_eq!(t.cpu.s.rip, second.next_ip(), "stops after the writing instruction");
    t.cpu.set_watchpoint(w, false);
    let r = Watchpoint { addr: DATA + 0x10, len: 1, kind: WatchKind::Read };
    t.cpu.set_watchpoint(r, true);
    assert_eq!(t.run(&code, 100), ExitReason::Debug(DebugStop::Watchpoint { addr: r.addr, kind: WatchKind::Read }));
    assert_eq!(t.cpu.s.rip, CODE + len1(&code));
    t.cpu.clear_debugger();
    assert_eq!(t.run(&code, 100), ExitReason::Halted);
}

#[test]
fn guest_tf_single_step_traps_after_the_next_instruction() {
    // POPF sets TF: the trap comes after the instruction following POPF (SDM Vol. 3B
    // §18.3.1.4), with DR6.BS set and the saved RIP past that instruction.
    let code = asm(|a| {
        a.pushfq()?;
        a.or(qword_ptr(rsp), 0x100)?;
        a.popfq()?;
        a.mov(eax, 7)?;
        a.mov(ebx, 8)
    });
    let mut t = TestCpu::new();
    assert_eq!(t.run(&code, 100), ExitReason::Halted);
    assert_eq!(t.exception(), Some(1), "{}", t.cpu.describe());
    assert_eq!(t.cpu.s.regs[0], 7);
    assert_eq!(t.cpu.s.regs[3], 0, "trapped before the second instruction");
    assert_ne!(t.cpu.s.dr[6] & (1 << 14), 0, "DR6.BS");
    let saved_rip = t.error_code(); // no error code: the top of the frame is RIP
    let mut d = iced_x86::Decoder::with_ip(64, &code, CODE, 0);
    let mov_eax = (0..4).map(|_| d.decode()).last().unwrap();
    assert_eq!(saved_rip, mov_eax.next_ip());
    assert_eq!(t.cpu.s.rflags & 0x100, 0, "TF is cleared in the handler");
}

#[test]
fn guest_dr0_execute_breakpoint_faults_before_the_instruction() {
    let target = CODE + 0x40;
    let code = asm(|a| {
        a.mov(rax, target)?;
        a.mov(dr0, rax)?;
        a.mov(eax, 1)?; // L0, R/W0 = 00 (execute), LEN0 = 00
        a.mov(dr7, rax)?;
        a.jmp(target)?;
        a.db(&[0x90; 0x30])
    });
    let mut code = code;
    code.resize(0x40, 0x90);
    code.extend(asm(|a| a.mov(ecx, 5)));
    let mut t = TestCpu::new();
    assert_eq!(t.run(&code, 100), ExitReason::Halted);
    assert_eq!(t.exception(), Some(1), "{}", t.cpu.describe());
    assert_eq!(t.error_code(), target, "a fault: the saved RIP is the breakpoint");
    assert_eq!(t.cpu.s.regs[1], 0, "the instruction did not run");
    assert_eq!(t.cpu.s.dr[6] & 0xF, 1, "DR6.B0");
}

#[test]
fn guest_data_breakpoint_traps_after_the_write() {
    let code = asm(|a| {
        a.mov(rax, DATA + 0x100)?;
        a.mov(dr1, rax)?;
        // L1 (bit 2), R/W1 = 01 (writes) at bits 20-21, LEN1 = 11 (4 bytes) at bits 22-23.
        a.mov(eax, (1 << 2) | (1 << 20) | (3 << 22))?;
        a.mov(dr7, rax)?;
        a.mov(ebx, dword_ptr(DATA + 0x100))?; // a read: no trap
        a.mov(byte_ptr(DATA + 0x102), 9)?; // a write inside the 4 bytes
        a.mov(ecx, 5)
    });
    let mut t = TestCpu::new();
    assert_eq!(t.run(&code, 100), ExitReason::Halted);
    assert_eq!(t.exception(), Some(1), "{}", t.cpu.describe());
    assert_eq!(t.cpu.s.dr[6] & 0xF, 2, "DR6.B1");
    assert_eq!(t.cpu.s.regs[1], 0, "trap delivered before the next instruction");
    let mut b = [0u8; 1];
    t.ram.read_bytes(DATA + 0x102, &mut b).unwrap();
    assert_eq!(b[0], 9, "the write completed");
}

#[test]
fn debugger_memory_writes_replace_decoded_code() {
    let code = asm(|a| {
        a.mov(eax, 1)?;
        a.mov(ebx, 2)
    });
    let mut t = TestCpu::new();
    assert_eq!(t.run(&code, 100), ExitReason::Halted);
    assert_eq!(t.cpu.s.regs[3], 2);
    // Patch the immediate of `mov ebx, 2` (decoded and cached by now) through the debugger.
    let imm = CODE + len1(&code) + 1;
    assert_eq!(t.cpu.debug_write_linear(imm, &[7]), 1);
    assert_eq!(t.cpu.debug_read_linear(imm), Some(7));
    t.cpu.s.rip = CODE;
    t.cpu.s.halted = false;
    assert_eq!(resume(&mut t), ExitReason::Halted);
    assert_eq!(t.cpu.s.regs[3], 7, "the patched instruction ran, not the cached block");
    // Unmapped linear addresses are refused (the test CPU maps the first GiB).
    assert_eq!(t.cpu.debug_write_linear(1 << 40, &[0]), 0);
}

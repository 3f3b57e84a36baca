//! Tier-1 behaviour the conformance harness cannot reach from user mode: SSE availability
//! checks made when a translation runs (CR0/CR4 may change after it was made), and
//! background translation.

use heron_cpu::state::cr;
use heron_cpu::testutil::{TestCpu, DATA};
use heron_cpu::vec;

/// A test CPU whose every block is translated on its first run.
fn tier1_cpu() -> TestCpu {
    let mut t = TestCpu::new();
    t.cpu.translator = Some(heron_jit::default_translator(false).expect("translator"));
    t.cpu.set_tier1_threshold(1);
    t
}

// movaps xmm0, xmm1 ; paddd xmm0, xmm1 ; movq rax, xmm0
const SSE_CODE: &[u8] = &[0x0F, 0x28, 0xC1, 0x66, 0x0F, 0xFE, 0xC1, 0x66, 0x48, 0x0F, 0x7E, 0xC0];

#[test]
fn sse_runs_translated_and_faults_on_cr_state() {
    let mut t = tier1_cpu();
    t.cpu.s.xmm[1] = 0x0000_0002_0000_0003;
    t.run(SSE_CODE, 100);
    assert_eq!(t.exception(), None);
    assert_eq!(t.cpu.s.regs[0], 0x0000_0004_0000_0006, "PADDD lanes");
    assert_eq!(t.cpu.stats.tier1_insns, 3 + 1, "three SSE instructions and HLT in tier 1");
    assert_eq!(t.cpu.translator.as_ref().unwrap().stats().lifted_insns, 3, "the SSE instructions are lifted");
    // Translations of the same code run with CR0.TS or CR0.EM set or CR4.OSFXSR clear
    // (the checks are made when the code runs): the exception, and nothing written.
    for (cr0, cr4, want) in [(cr::CR0_TS, 0, vec::NM), (cr::CR0_EM, 0, vec::UD), (0, cr::CR4_OSFXSR, vec::UD)] {
        let mut t = tier1_cpu();
        t.run(SSE_CODE, 100);
        t.cpu.s.cr0 |= cr0;
        t.cpu.s.cr4 &= !cr4;
        t.cpu.s.xmm[0] = 7;
        t.cpu.s.xmm[1] = 9;
        t.cpu.s.regs[0] = 1;
        t.run_keep_tlb(SSE_CODE, 100);
        assert_eq!(t.exception(), Some(want), "cr0 |= {cr0:#x}, cr4 &= !{cr4:#x}");
        assert_eq!((t.cpu.s.xmm[0], t.cpu.s.regs[0]), (7, 1), "nothing written before the fault");
    }
}

#[test]
fn misaligned_movaps_faults_and_movups_does_not() {
    let mut t = tier1_cpu();
    t.cpu.s.regs[3] = DATA + 8; // rbx
    // movups xmm2, [rbx] ; movaps xmm3, [rbx]
    t.run(&[0x0F, 0x10, 0x13, 0x0F, 0x28, 0x1B], 100);
    assert_eq!(t.exception(), Some(vec::GP));
    assert_eq!(t.error_code(), 0);
}

/// With background translation the guest's results do not change, and translations arrive.
#[test]
fn background_translation_gives_the_same_results() {
    // A loop: rcx = 200000 ; l: add rax, rcx ; dec rcx ; jnz l
    let code = [0x48, 0xC7, 0xC1, 0x40, 0x0D, 0x03, 0x00, 0x48, 0x01, 0xC8, 0x48, 0xFF, 0xC9, 0x75, 0xF8];
    let mut sync = tier1_cpu();
    sync.cpu.set_tier1_threshold(100);
    sync.run(&code, 10_000_000);
    let mut bg = tier1_cpu();
    bg.cpu.set_tier1_threshold(100);
    bg.cpu.set_background_translation(true);
    // Several runs: the translation arrives while tier 0 runs the loop.
    for _ in 0..50 {
        bg.run(&code, 10_000_000);
        if bg.cpu.stats.tier1_insns > 0 {
            break;
        }
        bg.cpu.s.regs[0] = 0;
    }
    assert_eq!(bg.cpu.s.regs[0], sync.cpu.s.regs[0]);
    assert_eq!(bg.cpu.s.regs[0], (1..=200_000u64).sum::<u64>());
    assert!(bg.cpu.stats.tier1_insns > 0, "the background translation was installed");
}

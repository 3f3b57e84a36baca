//! Tier-1 behaviour the conformance harness cannot reach from user mode: SSE availability
//! checks made when a translation runs (CR0/CR4 may change after it was made), MMIO from
//! translated code, and background translation.

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

/// Run `code` from RAX = 0 again and again, checking each run's result with `check`, until
/// `done` (background translations arrive when the compiler thread delivers them) or 30 s.
fn rerun_until(t: &mut TestCpu, code: &[u8], max_insns: u64, done: impl Fn(&TestCpu) -> bool, check: impl Fn(&TestCpu)) {
    let start = std::time::Instant::now();
    loop {
        t.cpu.s.regs[0] = 0;
        t.run(code, max_insns);
        check(t);
        if done(t) || start.elapsed().as_secs() > 30 {
            break;
        }
    }
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
    // Until the translation has arrived (the compiler thread may be slow to start on a loaded
    // host); every run must give the same result.
    rerun_until(&mut bg, &code, 10_000_000, |t| t.cpu.stats.tier1_insns > 0, |t| assert_eq!(t.cpu.s.regs[0], sync.cpu.s.regs[0]));
    assert_eq!(bg.cpu.s.regs[0], (1..=200_000u64).sum::<u64>());
    assert!(bg.cpu.stats.tier1_insns > 0, "the background translation was installed");
}

/// A code arena too small for the guest's hot code: background results that do not fit flush
/// the code cache (dropping every block and the other requests), and the guest still computes
/// the right result.
#[test]
fn background_translation_survives_code_cache_flushes() {
    // mov rcx, 3000 ; outer: 200 × (add rax, k ; jmp $+2) ; dec rcx ; jnz outer
    let mut code = vec![0x48, 0xC7, 0xC1, 0xB8, 0x0B, 0x00, 0x00];
    let outer = code.len();
    let mut per_pass = 0u64;
    for k in 0..200u64 {
        let imm = k % 100 + 1;
        per_pass += imm;
        code.extend_from_slice(&[0x48, 0x83, 0xC0, imm as u8, 0xEB, 0x00]);
    }
    code.extend_from_slice(&[0x48, 0xFF, 0xC9, 0x0F, 0x85]);
    let rel = outer as i64 - (code.len() as i64 + 4);
    code.extend_from_slice(&(rel as i32).to_le_bytes());
    let mut t = TestCpu::new();
    let config = heron_jit::JitConfig { arena_bytes: 16 << 10, ..Default::default() };
    t.cpu.translator = Some(Box::new(heron_jit::Jit::new(&config).expect("translator")));
    t.cpu.set_tier1_threshold(20);
    t.cpu.set_background_translation(true);
    // Until the arena has overflowed and translations have run (a flush may come before any
    // translation was entered, depending on when the compiler thread delivers).
    let done = |t: &TestCpu| t.cpu.translator.as_ref().unwrap().stats().flushes > 0 && t.cpu.stats.tier1_insns > 0;
    rerun_until(&mut t, &code, 100_000_000, done, |t| {
        assert_eq!(t.exception(), None);
        assert_eq!(t.cpu.s.regs[0], 3000 * per_pass);
    });
    let ts = t.cpu.translator.as_ref().unwrap().stats();
    assert!(ts.flushes > 0, "the arena overflowed ({} translations)", ts.translations);
    assert!(t.cpu.stats.tier1_insns > 0);
}

/// A bus whose MMIO reads return 1, 2, 3, … and which counts the writes.
#[derive(Default)]
struct CountingBus {
    reads: u64,
    writes: Vec<u64>,
}

impl heron_softmmu::Bus for CountingBus {
    fn pio_read(&mut self, _: u64, _: u16, _: u8) -> u32 {
        u32::MAX
    }
    fn pio_write(&mut self, _: u64, _: u16, _: u8, _: u32) {}
    fn mmio_read(&mut self, _: u64, _: u64, _: u8) -> u64 {
        self.reads += 1;
        self.reads
    }
    fn mmio_write(&mut self, _: u64, _: u64, _: u8, v: u64) {
        self.writes.push(v);
    }
    fn interrupt_pending(&self) -> bool {
        false
    }
    fn acknowledge_interrupt(&mut self) -> u8 {
        0
    }
}

/// Run `code` to its HLT on `bus`, returning (icount, RIP) at each return of the run loop.
fn run_with_bus(t: &mut TestCpu, code: &[u8], bus: &mut CountingBus) -> Vec<(u64, u64)> {
    t.ram.write_bytes(heron_cpu::testutil::CODE, code).unwrap();
    t.cpu.flush_code();
    t.cpu.s.rip = heron_cpu::testutil::CODE;
    t.cpu.s.regs[2] = 0; // rdx (the reset value is the CPU signature)
    let mut stops = Vec::new();
    for _ in 0..1000 {
        t.cpu.run(bus, t.cpu.s.icount + 1000);
        stops.push((t.cpu.s.icount, t.cpu.s.rip));
        if t.cpu.s.halted {
            break;
        }
    }
    stops
}

/// MMIO from translated code happens exactly once per guest access, and the translation
/// stops after the accessing instruction, as tier 0 does (devices see the same instruction
/// counts): it leaves to tier 0 before the access instead of making it in the helper.
#[test]
fn mmio_from_translated_code_is_made_once_and_ends_the_block() {
    // mov rbx, 0x2000_0000 (identity-mapped, above RAM: MMIO) ; mov ecx, 10 ;
    // l: mov rax, [rbx] ; mov [rbx+8], rax ; add rdx, rax ; dec rcx ; jnz l ; hlt
    let code = [
        0x48, 0xC7, 0xC3, 0x00, 0x00, 0x00, 0x20, 0xB9, 0x0A, 0x00, 0x00, 0x00, 0x48, 0x8B, 0x03, 0x48, 0x89, 0x43, 0x08, 0x48, 0x01, 0xC2, 0x48,
        0xFF, 0xC9, 0x75, 0xF1, 0xF4,
    ];
    let mut t0 = TestCpu::new();
    let mut bus0 = CountingBus::default();
    let stops0 = run_with_bus(&mut t0, &code, &mut bus0);
    let mut t = tier1_cpu();
    let mut bus = CountingBus::default();
    let stops = run_with_bus(&mut t, &code, &mut bus);
    assert!(t.cpu.s.halted, "the loop ends");
    assert_eq!(t.exception(), None);
    assert_eq!(bus.reads, 10, "one MMIO read per iteration");
    assert_eq!(bus.writes, (1..=10).collect::<Vec<u64>>(), "one MMIO write per iteration, of the value read");
    assert_eq!(t.cpu.s.regs[2], (1..=10).sum::<u64>());
    assert!(t.cpu.stats.tier1_insns > 0, "the loop ran translated");
    assert_eq!(stops, stops0, "the run loop returns at the same instructions as tier 0 alone");
    assert_eq!(stops.len(), 21, "after each MMIO access, and at HLT");
}

/// A loop whose every pass patches the immediate of its callee (`mov eax, imm32 ; ret`) with
/// the loop counter. After each store the unchanged blocks of the page keep their
/// translations, but neither their links nor translations that include the callee: each pass
/// sees the previous pass's patch. With `call rax` first, the callee becomes an entry of its
/// own, which the call site's translation reaches through a link; without, the call site's
/// translation includes the callee.
#[test]
fn stores_into_code_keep_unchanged_translations_and_drop_their_links() {
    use heron_cpu::testutil::CODE;
    const PASSES: u32 = 10;
    for callee_first in [true, false] {
        let mut code = vec![0xB9];
        code.extend_from_slice(&PASSES.to_le_bytes()); // mov ecx, PASSES
        code.extend_from_slice(&[0x45, 0x31, 0xC0]); // xor r8d, r8d
        let rel = |code: &Vec<u8>, len: usize| (CODE + 0x100) as i64 - (CODE + (code.len() + len) as u64) as i64;
        if callee_first {
            code.extend_from_slice(&[0x48, 0x8D, 0x05]); // lea rax, [rip + callee]
            code.extend_from_slice(&(rel(&code, 4) as i32).to_le_bytes());
            code.extend_from_slice(&[0xFF, 0xD0]); // call rax
        }
        let top = code.len();
        code.push(0xE8); // call callee
        code.extend_from_slice(&(rel(&code, 4) as i32).to_le_bytes());
        code.extend_from_slice(&[0x49, 0x01, 0xC0]); // add r8, rax
        code.extend_from_slice(&[0x88, 0x0C, 0x25]); // mov [callee + 1], cl
        code.extend_from_slice(&((CODE + 0x101) as u32).to_le_bytes());
        code.extend_from_slice(&[0xFF, 0xC9]); // dec ecx
        code.extend_from_slice(&[0x75, (top as i64 - (code.len() as i64 + 2)) as u8, 0xF4]); // jnz top ; hlt
        code.resize(0x100, 0xCC);
        code.extend_from_slice(&[0xB8, 0, 0, 0, 0, 0xC3]); // callee: mov eax, 0 ; ret
        let mut t = tier1_cpu();
        t.run(&code, 100_000);
        assert!(t.cpu.s.halted);
        assert_eq!(t.exception(), None);
        // Pass k (from 1) gets the counter of pass k - 1: PASSES - k + 2 (the first, 0).
        assert_eq!(t.cpu.s.regs[8], (2..=PASSES as u64).sum::<u64>(), "callee first: {callee_first}");
        if callee_first {
            // One translation of the callee per patch; the rest of the page once.
            let ts = t.cpu.translator.as_ref().unwrap().stats();
            assert!(ts.translations <= PASSES as u64 + 5, "{} translations", ts.translations);
        }
    }
}

/// IMUL whose flags the next instruction overwrites (tier 1 then computes the product's low
/// bits only) gives tier 0's results, in every operand size.
#[test]
fn imul_with_dead_flags_matches_tier0() {
    // mov rax, -3 ; mov rcx, 0x1_0000_0007 ; mov rdx, -5 ;
    // imul ax, cx ; add rbx, 1 ; imul ecx, edx ; add rbx, 1 ; imul rdx, rax, 9 ; cmp rax, rcx
    let code = [
        0x48, 0xC7, 0xC0, 0xFD, 0xFF, 0xFF, 0xFF, 0x48, 0xB9, 0x07, 0, 0, 0, 1, 0, 0, 0, 0x48, 0xC7, 0xC2, 0xFB, 0xFF, 0xFF, 0xFF, 0x66, 0x0F, 0xAF,
        0xC1, 0x48, 0x83, 0xC3, 0x01, 0x0F, 0xAF, 0xCA, 0x48, 0x83, 0xC3, 0x01, 0x48, 0x6B, 0xD0, 0x09, 0x48, 0x39, 0xC8,
    ];
    let mut t0 = TestCpu::new();
    t0.run(&code, 100);
    let mut t1 = tier1_cpu();
    t1.run(&code, 100);
    assert!(t1.cpu.stats.tier1_insns > 0);
    assert_eq!(t1.exception(), None);
    assert_eq!(t1.cpu.s.regs[..4], t0.cpu.s.regs[..4], "rax, rcx, rdx, rbx");
    assert_eq!(t1.cpu.s.get_rflags(), t0.cpu.s.get_rflags());
    assert_eq!(t0.cpu.s.regs[0], 0xFFFF_FFFF_FFFF_0000 | (-21i16 as u16 as u64), "AX = -3 × 7, upper bits kept");
}

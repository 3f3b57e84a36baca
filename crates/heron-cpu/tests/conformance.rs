//! CPU conformance harness: instructions run natively on the x86-64 host (the oracle) and in
//! both of Heron's engines — the tier-0 interpreter and tier 1 (Cranelift, `heron-jit`, with
//! every block translated the first time it runs) — on `TestCpu`s, from the same registers,
//! RFLAGS, x87/MMX/SSE state and data memory. All 16 GPRs, the status flags and DF, the FP
//! state (FCW, FSW, abridged FTW, ST0–7 as 80-bit values, MXCSR, XMM0–15) and the data window
//! must agree, except flags the Intel SDM documents as undefined for the instruction (masks in
//! `conformance/classes.rs`, each with its SDM reference). Every case checks that tier 1 really
//! ran it: all the instructions it retired must have retired inside translated code.
//!
//! Environment:
//! - `HERON_CONFORMANCE_CASES=N`: total random cases (default 200 000), split over the classes
//!   by weight; run ≥ 10^6 with `cargo test --release -p heron-cpu --test conformance`.
//! - `HERON_CONFORMANCE_SEED=S`: PRNG seed (default fixed, so runs are reproducible).
//! - `HERON_CONFORMANCE_CLASS=name`: only classes whose name contains `name`.
//! - `HERON_CONFORMANCE_ENGINE=0` or `1`: only tier 0 or tier 1 (default both).
//! - `HERON_CONFORMANCE_DUMP=n`: print the first `n` generated instructions of each class.
//! - `HERON_CONFORMANCE_SHOW=n`: print up to `n` mismatches per class and engine (default 4).
//! - `HERON_CONFORMANCE_WRITE=1`: write the per-class table to `docs/conformance.md`.
//!
//! The host side needs x86-64 Linux (raw syscalls, glibc's signal structures).

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

#[path = "conformance/classes.rs"]
mod classes;
#[path = "conformance/fixed.rs"]
mod fixed;
#[path = "conformance/fp.rs"]
mod fp;
#[path = "conformance/gen.rs"]
mod gen;
#[path = "conformance/native.rs"]
mod native;

use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use heron_cpu::state::{rf, CpuState};
use heron_cpu::testutil::TestCpu;
use heron_cpu::ExitReason;
use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

use classes::CLASSES;
use gen::{f, fx, Case, G};
use native::{Native, CODE, DATA, FX_LEN};

const _: () = assert!(CODE == heron_cpu::testutil::CODE && DATA == heron_cpu::testutil::DATA);

/// Default number of random cases (all classes together): about 15 s for both engines on
/// one core of the CI machine.
const DEFAULT_CASES: u64 = 200_000;
const DEFAULT_SEED: u64 = 0x4845_524F_4E00_0001;
/// Mismatches printed per class and engine (`HERON_CONFORMANCE_SHOW` overrides).
fn show() -> usize {
    env_u64("HERON_CONFORMANCE_SHOW", 4) as usize
}

/// The native executor owns fixed addresses: one per process, used under this lock.
fn native() -> &'static Mutex<Native> {
    static N: OnceLock<Mutex<Native>> = OnceLock::new();
    N.get_or_init(|| Mutex::new(Native::new()))
}

/// Heron's two engines.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Engine {
    /// The interpreter.
    Tier0,
    /// Cranelift translation (heron-jit), every block translated at its first run.
    Tier1,
}

const ENGINES: [Engine; 2] = [Engine::Tier0, Engine::Tier1];

/// One side's result.
struct Outcome {
    regs: [u64; 16],
    flags: u64,
    fx: Box<[u8; FX_LEN]>,
    data: Vec<u8>,
    /// Exception vector (Heron) or the vector a host signal stands for.
    exc: Option<u8>,
    /// Host signal number, for reporting.
    signal: Option<i32>,
    /// On an exception: the RIP of the faulting instruction (`regs` and `flags` are the state
    /// it faulted in, RSP included: from the host's signal context or Heron's exception frame).
    fault_rip: u64,
    /// Heron did not stop at the end of the code (HLT) without an exception.
    stray: Option<String>,
    /// Tier 1: the case's instructions did not all retire in translated code.
    not_tier1: Option<String>,
    /// Tier 1: guest instructions translated for this case, and how many of them were lifted
    /// (the rest call tier 0's semantics through `helper_exec`).
    translated: (u64, u64),
}

/// The x87 tag of an 80-bit value (Intel SDM Vol. 1 §8.1.7: 00 valid, 01 zero, 10 special).
fn x87_tag(r: &[u8; 10]) -> u16 {
    let sig = u64::from_le_bytes(r[..8].try_into().unwrap());
    let exp = u16::from_le_bytes([r[8], r[9]]) & 0x7FFF;
    match exp {
        0x7FFF => 2,
        0 if sig == 0 => 1,
        0 => 2,
        _ if sig >> 63 == 0 => 2, // unnormal
        _ => 0,
    }
}

/// Load Heron's FP state from an FXSAVE64 image, as FXRSTOR64 would (Intel SDM Vol. 2A
/// FXRSTOR: the full tag word is rebuilt from the abridged one and the register contents).
fn load_fx(s: &mut CpuState, b: &[u8; FX_LEN]) {
    let r16 = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let x = &mut s.x87;
    x.fcw = r16(fx::FCW);
    let fsw = r16(fx::FSW);
    x.fsw = fsw & !0x3800;
    x.top = ((fsw >> 11) & 7) as u8;
    x.ftw = 0;
    for i in 0..8 {
        let p = (x.top as usize + i) & 7;
        x.regs[p].copy_from_slice(&b[fx::ST + 16 * i..fx::ST + 16 * i + 10]);
    }
    for p in 0..8 {
        let t = if b[fx::FTW] & (1 << p) != 0 { x87_tag(&x.regs[p]) } else { 3 };
        x.ftw |= t << (2 * p);
    }
    s.mxcsr = u32::from_le_bytes(b[fx::MXCSR..fx::MXCSR + 4].try_into().unwrap());
    for k in 0..16 {
        s.xmm[k] = u128::from_le_bytes(b[fx::XMM + 16 * k..fx::XMM + 16 * k + 16].try_into().unwrap());
    }
}

/// The compared parts of Heron's FP state as an FXSAVE64 image (FCW, FSW with TOP, abridged
/// FTW, MXCSR, ST0–7, XMM0–15).
fn save_fx(s: &CpuState) -> Box<[u8; FX_LEN]> {
    let mut b = Box::new([0u8; FX_LEN]);
    let x = &s.x87;
    b[fx::FCW..fx::FCW + 2].copy_from_slice(&x.fcw.to_le_bytes());
    let fsw = (x.fsw & !0x3800) | ((x.top as u16 & 7) << 11);
    b[fx::FSW..fx::FSW + 2].copy_from_slice(&fsw.to_le_bytes());
    for p in 0..8 {
        if (x.ftw >> (2 * p)) & 3 != 3 {
            b[fx::FTW] |= 1 << p;
        }
    }
    for i in 0..8 {
        let p = (x.top as usize + i) & 7;
        b[fx::ST + 16 * i..fx::ST + 16 * i + 10].copy_from_slice(&x.regs[p]);
    }
    b[fx::MXCSR..fx::MXCSR + 4].copy_from_slice(&s.mxcsr.to_le_bytes());
    for k in 0..16 {
        b[fx::XMM + 16 * k..fx::XMM + 16 * k + 16].copy_from_slice(&s.xmm[k].to_le_bytes());
    }
    b
}

struct Heron {
    engine: Engine,
    t: TestCpu,
    /// FS and GS bases: the host thread's, so FS:/GS: operands mean the same on both.
    seg_base: [u64; 2],
    /// Cases run: every fourth starts with an empty TLB (slow paths), the others with the
    /// entries earlier cases left (fast paths, inline in tier 1).
    runs: u64,
}

impl Heron {
    fn new(engine: Engine) -> Heron {
        Heron { engine, t: Self::cpu(engine, None), seg_base: native::seg_bases(), runs: 0 }
    }

    /// A fresh `TestCpu`; for tier 1 with a translator (the old CPU's, if given) and a
    /// promotion threshold of 1, so every block is translated the first time it runs.
    fn cpu(engine: Engine, old: Option<&mut TestCpu>) -> TestCpu {
        let mut t = TestCpu::new();
        if engine == Engine::Tier1 {
            let tr = match old.and_then(|o| o.cpu.translator.take()) {
                Some(mut tr) => {
                    tr.flush();
                    tr
                }
                None => heron_jit::default_translator(false).expect("tier-1 translator"),
            };
            t.cpu.translator = Some(tr);
            t.cpu.set_tier1_threshold(1);
        }
        t
    }

    fn run(&mut self, c: &Case) -> Outcome {
        let s = &mut self.t.cpu.s;
        s.seg[heron_cpu::state::sreg::FS].base = self.seg_base[0];
        s.seg[heron_cpu::state::sreg::GS].base = self.seg_base[1];
        s.regs = c.regs;
        s.rflags = (c.flags & !rf::STATUS & rf::DF) | rf::FIXED;
        s.set_status_flags(c.flags & rf::STATUS);
        load_fx(s, &c.fx);
        self.t.ram.write_bytes(DATA, &c.data).unwrap();
        if self.runs.is_multiple_of(4) {
            self.t.cpu.s.tlb.flush_all();
        }
        self.runs += 1;
        let (icount0, t1_insns0) = (self.t.cpu.s.icount, self.t.cpu.stats.tier1_insns);
        let tstats0 = self.t.cpu.translator.as_ref().map(|t| t.stats());
        let exit = self.t.run_keep_tlb(&c.code, 100_000);
        let retired = self.t.cpu.s.icount - icount0;
        let in_tier1 = self.t.cpu.stats.tier1_insns - t1_insns0;
        let mut translated = (0, 0);
        let mut not_tier1 = None;
        if let (Some(a), Some(t)) = (tstats0, self.t.cpu.translator.as_ref()) {
            let b = t.stats();
            translated = (b.translated_insns - a.translated_insns, b.lifted_insns - a.lifted_insns);
            // Every retired instruction (the case's, the final HLT, or a handler's HLT) must
            // have run as translated code.
            if in_tier1 != retired || retired == 0 {
                not_tier1 = Some(format!("only {in_tier1} of {retired} retired instructions ran in tier-1 code"));
            }
        }
        let exc = self.t.exception();
        let end = CODE + c.code.len() as u64 + 1;
        let stray = if exc.is_none() && (exit != ExitReason::Halted || self.t.cpu.s.rip != end) {
            Some(format!("stopped with {exit:?} at RIP {:#x} (expected HLT at {:#x})", self.t.cpu.s.rip, end - 1))
        } else {
            None
        };
        let mut data = vec![0; c.data.len()];
        self.t.ram.read_bytes(DATA, &mut data).unwrap();
        let s = &self.t.cpu.s;
        let mut out = Outcome { regs: s.regs, flags: s.get_rflags(), fx: save_fx(s), data, exc, signal: None, fault_rip: 0, stray, not_tier1, translated };
        if let Some(v) = exc {
            // The 64-bit exception frame: [error code], RIP, CS, RFLAGS, RSP, SS.
            let mut sp = self.t.cpu.s.regs[4];
            if matches!(v, 8 | 10..=14 | 17) {
                sp += 8;
            }
            let mut frame = [0u8; 40];
            self.t.ram.read_bytes(sp, &mut frame).unwrap();
            let q = |k: usize| u64::from_le_bytes(frame[8 * k..8 * k + 8].try_into().unwrap());
            out.fault_rip = q(0);
            out.flags = q(2);
            out.regs[4] = q(3);
        }
        if exc.is_some() || out.stray.is_some() {
            // Exception delivery changed RSP/RFLAGS/stack contents: start from a clean CPU.
            self.t = Self::cpu(self.engine, Some(&mut self.t));
        }
        out
    }
}

fn run_native(n: &mut Native, c: &Case) -> Outcome {
    let mut data = c.data.clone();
    let o = n.run(&c.code, &c.regs, c.flags, &c.fx, &mut data);
    // The kernel's trap number is the vector; the signal says which group it is in.
    let exc = o.signal.map(|s| match s {
        native::SIGFPE if matches!(o.trapno, 0 | 16 | 19) => o.trapno as u8,
        native::SIGFPE => 0,
        native::SIGILL => 6,
        _ => 13,
    });
    Outcome { regs: o.regs, flags: o.rflags, fx: o.fx, data, exc, signal: o.signal, fault_rip: o.rip, stray: None, not_tier1: None, translated: (0, 0) }
}

/// Do an exception seen natively (as a signal) and one raised by Heron agree?
fn same_exception(native: u8, heron: u8) -> bool {
    match native {
        // SIGSEGV/SIGBUS: #GP, #SS, #PF or #AC (the host's page tables differ from Heron's).
        13 => matches!(heron, 12 | 13 | 14 | 17),
        v => v == heron,
    }
}

/// An 80-bit x87 value as sign/exponent and significand.
fn f80_hex(b: &[u8]) -> String {
    format!("{:04x}:{:016x}", u16::from_le_bytes([b[8], b[9]]), u64::from_le_bytes(b[..8].try_into().unwrap()))
}

/// Differences in the compared parts of two FXSAVE images (expected `n`, Heron `h`).
fn compare_fx(d: &mut String, n: &[u8; FX_LEN], h: &[u8; FX_LEN], fsw_undef: u16, fsw_sdm: (u16, u16)) {
    let r16 = |b: &[u8; FX_LEN], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let r32 = |b: &[u8; FX_LEN], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    if r16(n, fx::FCW) != r16(h, fx::FCW) {
        let _ = writeln!(d, "  FCW: expected {:#06x}, Heron {:#06x}", r16(n, fx::FCW), r16(h, fx::FCW));
    }
    // Bits the SDM defines where the host does otherwise: expected as the SDM states them.
    let want = (r16(n, fx::FSW) & !fsw_sdm.0) | (fsw_sdm.1 & fsw_sdm.0);
    if (want ^ r16(h, fx::FSW)) & !fsw_undef != 0 {
        let _ = writeln!(d, "  FSW: expected {want:#06x}, Heron {:#06x} (undefined, ignored: {fsw_undef:#06x})", r16(h, fx::FSW));
    }
    if n[fx::FTW] != h[fx::FTW] {
        let _ = writeln!(d, "  FTW (abridged): expected {:#04x}, Heron {:#04x}", n[fx::FTW], h[fx::FTW]);
    }
    if r32(n, fx::MXCSR) != r32(h, fx::MXCSR) {
        let _ = writeln!(d, "  MXCSR: expected {:#010x}, Heron {:#010x}", r32(n, fx::MXCSR), r32(h, fx::MXCSR));
    }
    for i in 0..8 {
        let o = fx::ST + 16 * i;
        if n[o..o + 10] != h[o..o + 10] {
            let _ = writeln!(d, "  ST{i}: expected {}, Heron {}", f80_hex(&n[o..o + 10]), f80_hex(&h[o..o + 10]));
        }
    }
    for k in 0..16 {
        let o = fx::XMM + 16 * k;
        let (a, b) = (u128::from_le_bytes(n[o..o + 16].try_into().unwrap()), u128::from_le_bytes(h[o..o + 16].try_into().unwrap()));
        if a != b {
            let _ = writeln!(d, "  xmm{k}: expected {a:#034x}, Heron {b:#034x}");
        }
    }
}

const REG_NAMES: [&str; 16] = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

fn flag_names(v: u64) -> String {
    let mut s = String::new();
    for (b, n) in [(f::OF, "OF"), (f::DF, "DF"), (f::SF, "SF"), (f::ZF, "ZF"), (f::AF, "AF"), (f::PF, "PF"), (f::CF, "CF")] {
        if v & b != 0 {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(n);
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    s
}

/// The case's instructions in Intel syntax.
fn disasm(code: &[u8]) -> String {
    let mut d = Decoder::with_ip(64, code, CODE, DecoderOptions::NONE);
    let mut fmt = IntelFormatter::new();
    fmt.options_mut().set_rip_relative_addresses(true);
    let mut out = Vec::new();
    for i in &mut d {
        let mut s = String::new();
        fmt.format(&i, &mut s);
        out.push(s);
    }
    out.join("; ")
}

/// Compare the two outcomes; a description of the differences on mismatch.
fn compare(c: &Case, n: &Outcome, h: &Outcome) -> Option<String> {
    let mut d = String::new();
    match (n.exc, h.exc) {
        (Some(nv), Some(hv)) => {
            if !same_exception(nv, hv) {
                let _ = writeln!(d, "  exception: host signal {:?} (vector ~{nv}), Heron vector {hv}", n.signal);
                return Some(d);
            }
            // Both faulted: the faulting instruction's RIP and the state it faulted in (a
            // fault leaves registers, flags and memory as they were) must agree.
            if n.fault_rip != h.fault_rip {
                let _ = writeln!(d, "  faulting RIP: host {:#x}, Heron {:#x}", n.fault_rip, h.fault_rip);
            }
        }
        (Some(nv), None) => {
            let _ = writeln!(d, "  exception: host signal {:?} (vector ~{nv}), Heron none", n.signal);
            return Some(d);
        }
        (None, Some(hv)) => {
            let _ = writeln!(d, "  exception: host none, Heron vector {hv}");
            return Some(d);
        }
        (None, None) => {}
    }
    if let Some(s) = &h.stray {
        let _ = writeln!(d, "  Heron {s}");
    }
    if let Some(s) = &h.not_tier1 {
        let _ = writeln!(d, "  tier 1: {s}");
    }
    for (r, name) in REG_NAMES.iter().enumerate() {
        if n.regs[r] != h.regs[r] {
            let _ = writeln!(d, "  {name:>3}: expected {:#018x}, Heron {:#018x}", n.regs[r], h.regs[r]);
        }
    }
    // Flags are compared in full at a fault: the faulting instruction changed nothing.
    let cmp = (f::STATUS | f::DF) & if h.exc.is_some() { !0 } else { !c.undef };
    if (n.flags ^ h.flags) & cmp != 0 {
        let _ = writeln!(
            d,
            "  flags: expected [{}], Heron [{}] (differ: {}; undefined, ignored: {})",
            flag_names(n.flags & (f::STATUS | f::DF)),
            flag_names(h.flags & (f::STATUS | f::DF)),
            flag_names((n.flags ^ h.flags) & cmp),
            flag_names(c.undef)
        );
    }
    // A fault on the first instruction leaves the FSW as it was; one later (FWAIT raising
    // #MF) follows instructions that did their part.
    let (undef, sdm) = if h.exc.is_some() && h.fault_rip == CODE { (0, (0, 0)) } else { (c.fsw_undef, c.fsw_sdm) };
    compare_fx(&mut d, &n.fx, &h.fx, undef, sdm);
    // Skip memory when a fault's exception frame (Heron) or signal frame (host, if it has no
    // alternate signal stack) may have landed in the window.
    let frame_in_window = h.exc.is_some() && c.regs[4].wrapping_sub(DATA) < (c.data.len() + 0x1000) as u64;
    let len = if frame_in_window { 0 } else { c.data.len() };
    let diffs: Vec<usize> = (0..len).filter(|&k| n.data[k] != h.data[k]).collect();
    if !diffs.is_empty() {
        let shown: Vec<String> = diffs.iter().take(8).map(|&k| format!("{:#x}: {:02x}/{:02x}", DATA + k as u64, n.data[k], h.data[k])).collect();
        let _ = writeln!(d, "  memory: {} bytes differ (address: expected/Heron) {}", diffs.len(), shown.join(", "));
    }
    (!d.is_empty()).then_some(d)
}

fn describe(c: &Case, engine: Engine, diff: &str) -> String {
    let mut s = String::new();
    let name = c.name.map(|n| format!(" [{n}]")).unwrap_or_default();
    let _ = writeln!(s, "{}{name} ({engine:?}): {}    ({:02x?})", CLASSES[c.class].name, disasm(&c.code), c.code);
    let _ = write!(s, "  in:");
    for (r, name) in REG_NAMES.iter().enumerate() {
        if r % 4 == 0 {
            let _ = write!(s, "\n   ");
        }
        let _ = write!(s, " {name:>3}={:016x}", c.regs[r]);
    }
    let _ = writeln!(s, "\n   flags [{}]", flag_names(c.flags));
    if *c.fx != *fx::reset() {
        let b = &c.fx;
        let r16 = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let mxcsr = u32::from_le_bytes(b[fx::MXCSR..fx::MXCSR + 4].try_into().unwrap());
        let _ = writeln!(s, "   FCW {:#06x} FSW {:#06x} FTW {:#04x} MXCSR {mxcsr:#010x}", r16(fx::FCW), r16(fx::FSW), b[fx::FTW]);
        for i in 0..8 {
            let o = fx::ST + 16 * i;
            if b[o..o + 10].iter().any(|&x| x != 0) {
                let _ = writeln!(s, "   ST{i} {}", f80_hex(&b[o..o + 10]));
            }
        }
        for k in 0..16 {
            let v = u128::from_le_bytes(b[fx::XMM + 16 * k..fx::XMM + 16 * k + 16].try_into().unwrap());
            if v != 0 {
                let _ = writeln!(s, "   xmm{k} {v:#034x}");
            }
        }
    }
    s.push_str(diff);
    s
}

/// Per-class, per-engine tally.
#[derive(Clone, Default)]
struct Tally {
    cases: u64,
    mismatches: u64,
    exceptions: u64,
    /// Tier 1: guest instructions translated, and lifted to host code (not via helper_exec).
    translated: u64,
    lifted: u64,
    shown: Vec<String>,
}

struct Runner<'a> {
    native: &'a mut Native,
    /// One `TestCpu` per engine run (`None`: engine not selected).
    heron: [Option<Heron>; 2],
    /// `tally[class][engine]`.
    tally: Vec<[Tally; 2]>,
}

impl Runner<'_> {
    fn new(native: &mut Native) -> Runner<'_> {
        let only = std::env::var("HERON_CONFORMANCE_ENGINE").ok();
        let heron = ENGINES.map(|e| {
            let on = only.as_deref().is_none_or(|o| o == "both" || o == (e as u8).to_string());
            on.then(|| Heron::new(e))
        });
        Runner { native, heron, tally: vec![Default::default(); CLASSES.len()] }
    }

    fn seg_base(&self) -> [u64; 2] {
        native::seg_bases()
    }

    fn check(&mut self, c: &Case) {
        let n = run_native(self.native, c);
        for (k, h) in self.heron.iter_mut().enumerate() {
            let Some(h) = h else { continue };
            let o = h.run(c);
            let t = &mut self.tally[c.class][k];
            t.cases += 1;
            t.translated += o.translated.0;
            t.lifted += o.translated.1;
            if o.exc.is_some() {
                t.exceptions += 1;
            }
            if let Some(d) = compare(c, &n, &o) {
                t.mismatches += 1;
                if t.shown.len() < show() {
                    t.shown.push(describe(c, h.engine, &d));
                }
            }
        }
    }

    /// Print the table and mismatches; the number of mismatching cases (both engines).
    fn report(&self, title: &str) -> u64 {
        let mut out = format!("\n{title}\n{:<46} {:>9} {:>6} {:>8} {:>8} {:>8}\n", "class", "cases", "faults", "t0 bad", "t1 bad", "lifted");
        let mut total = [0u64; 3];
        for (k, t) in self.tally.iter().enumerate() {
            let cases = t[0].cases.max(t[1].cases);
            if cases == 0 {
                continue;
            }
            let faults = t[0].exceptions.max(t[1].exceptions);
            let _ = writeln!(out, "{:<46} {:>9} {:>6} {:>8} {:>8} {:>8}", CLASSES[k].name, cases, faults, cell(&t[0]), cell(&t[1]), lifted(&t[1]));
            total[0] += cases;
            total[1] += t[0].mismatches;
            total[2] += t[1].mismatches;
        }
        let _ = writeln!(out, "{:<46} {:>9} {:>6} {:>8} {:>8}", "total", total[0], "", total[1], total[2]);
        for t in self.tally.iter().flatten() {
            for s in &t.shown {
                out.push('\n');
                out.push_str(s);
            }
        }
        println!("{out}");
        total[1] + total[2]
    }
}

/// A tally's mismatches, or "-" when the engine did not run.
fn cell(t: &Tally) -> String {
    if t.cases == 0 {
        "-".into()
    } else {
        t.mismatches.to_string()
    }
}

/// Share of tier 1's translated instructions that were lifted (not left to `helper_exec`).
fn lifted(t: &Tally) -> String {
    if t.translated == 0 {
        "-".into()
    } else {
        format!("{:.0}%", 100.0 * t.lifted as f64 / t.translated as f64)
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim().replace('_', "");
            if let Some(h) = v.strip_prefix("0x") {
                u64::from_str_radix(h, 16).expect(name)
            } else {
                v.parse().expect(name)
            }
        }
        Err(_) => default,
    }
}

/// Seed of case `k` of class `class`: any case can be regenerated on its own.
fn case_seed(seed: u64, class: usize, k: u64) -> u64 {
    let mut x = seed ^ ((class as u64) << 40) ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 29)
}

#[test]
fn regressions() {
    let mut guard = native().lock().unwrap_or_else(|e| e.into_inner());
    let mut r = Runner::new(&mut guard);
    let cases = fixed::cases();
    for c in &cases {
        r.check(c);
    }
    let bad = r.report(&format!("conformance: {} fixed cases (edge cases and regressions)", cases.len()));
    assert_eq!(bad, 0, "fixed conformance cases mismatch (see above)");
}

#[test]
fn random() {
    let total = env_u64("HERON_CONFORMANCE_CASES", DEFAULT_CASES);
    let seed = env_u64("HERON_CONFORMANCE_SEED", DEFAULT_SEED);
    let only = std::env::var("HERON_CONFORMANCE_CLASS").ok();
    let dump = env_u64("HERON_CONFORMANCE_DUMP", 0);
    let weights: u64 = CLASSES.iter().map(|c| c.weight as u64).sum();
    let mut guard = native().lock().unwrap_or_else(|e| e.into_inner());
    let mut r = Runner::new(&mut guard);
    let mut g = G::new(seed);
    g.seg_base = r.seg_base();
    let start = Instant::now();
    for (k, class) in CLASSES.iter().enumerate() {
        if only.as_ref().is_some_and(|o| !class.name.contains(o.as_str())) {
            continue;
        }
        let n = (total * class.weight as u64).div_ceil(weights);
        for i in 0..n {
            g.rng = gen::Rng::new(case_seed(seed, k, i));
            g.begin();
            (class.gen)(&mut g, class.arg);
            let c = g.finish(k);
            if i < dump {
                println!("{:<24} {}", class.name, disasm(&c.code));
            }
            r.check(&c);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cases: u64 = r.tally.iter().map(|t| t[0].cases.max(t[1].cases)).sum();
    let bad = r.report(&format!("conformance: {cases} random cases, seed {seed:#x}, {secs:.1} s"));
    let both = r.heron.iter().all(|h| h.is_some());
    if std::env::var("HERON_CONFORMANCE_WRITE").is_ok_and(|v| v == "1") && only.is_none() && both {
        write_doc(&r.tally, cases, total, seed, secs);
    }
    assert_eq!(bad, 0, "conformance mismatches (see above)");
}

fn write_doc(tally: &[[Tally; 2]], cases: u64, cases_requested: u64, seed: u64, secs: f64) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let fixed = fixed::cases();
    let mut s = String::new();
    s.push_str("# CPU conformance\n\n");
    let cases_env = if cases_requested == DEFAULT_CASES { String::new() } else { format!("HERON_CONFORMANCE_CASES={cases_requested} ") };
    let seed_env = if seed == DEFAULT_SEED { String::new() } else { format!("HERON_CONFORMANCE_SEED={seed:#x} ") };
    let _ = writeln!(
        s,
        "Generated by `crates/heron-cpu/tests/conformance.rs`:\n\n```\n{cases_env}{seed_env}HERON_CONFORMANCE_WRITE=1 \
         cargo test --release -p heron-cpu --test conformance -- --nocapture\n```\n"
    );
    s.push_str(DOC_PROSE);
    let _ = writeln!(
        s,
        "Host: {cpu}. Seed {seed:#x}; {cases} random cases ({secs:.0} s for both engines) plus {} fixed edge/regression cases, \
         each run in both engines.\n",
        fixed.len()
    );
    s.push_str("| class | cases | tier 0 mismatches | tier 1 mismatches | tier 1 lifted |\n|---|---:|---:|---:|---:|\n");
    let mut tot = [0u64; 3];
    for (k, t) in tally.iter().enumerate() {
        if t[0].cases > 0 {
            let _ = writeln!(s, "| {} | {} | {} | {} | {} |", CLASSES[k].name, t[0].cases, t[0].mismatches, t[1].mismatches, lifted(&t[1]));
            tot[0] += t[0].cases;
            tot[1] += t[0].mismatches;
            tot[2] += t[1].mismatches;
        }
    }
    let _ = writeln!(s, "| **total** | {} | {} | {} | |", tot[0], tot[1], tot[2]);
    s.push_str(
        "\n\"Tier 1 lifted\" is the share of the instructions tier 1 translated for the class's cases \
         (the final HLT included) that it compiles to host code itself; the rest call tier 0's \
         semantics for that one instruction (`helper_exec`) from translated code.\n\n\
         The fixed cases (`tests/conformance/fixed.rs`) include one regression case per Heron bug \
         this harness found:\n\n",
    );
    for c in &fixed {
        if let Some(n) = c.name.and_then(|n| n.strip_prefix("bug: ")) {
            let _ = writeln!(s, "- {}: `{}` ({n})", CLASSES[c.class].name, disasm(&c.code));
        }
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/conformance.md");
    // The system-level cases (tests/system.rs) are documented in their own file; keep the link.
    s.push_str(SYSTEM_SECTION);
    std::fs::write(path, s).expect("write docs/conformance.md");
    println!("wrote {path}");
}

/// How the harness works, for docs/conformance.md.
const DOC_PROSE: &str = "\
Each case runs the same instruction bytes natively on the x86-64 host (the oracle) and in both \
of Heron's engines, each on its own `TestCpu`: tier 0 (the interpreter) and tier 1 (Cranelift, \
`heron-jit`, with the promotion threshold set to 1 so every block is translated the first time \
it runs; a case counts as a tier-1 mismatch unless every instruction it retired ran inside \
translated code). All start from identical registers, RFLAGS (random CF/PF/AF/ZF/SF/OF/DF), \
x87/MMX/SSE state (loaded natively with FXRSTOR64) and data memory (the host maps the data and \
code areas at Heron's guest addresses). Compared afterwards: all 16 GPRs, the status flags and \
DF, an 8 KiB data window straddling a page boundary, and the FP state from an FXSAVE64 image: \
FCW, FSW (condition codes, TOP, exception flags), the abridged tag word, ST0–ST7 as 80-bit \
values (MM0–MM7), MXCSR (flags included) and XMM0–XMM15 (not FOP/FIP/FDP: AMD processors \
store those only while an x87 exception is pending). Only flags and x87 condition codes the \
Intel SDM documents as undefined for the instruction are masked (see \
`tests/conformance/classes.rs`). Cases raising an exception must raise the same one on both \
(the host's vector is the kernel's trap number: #DE, #MF and #XM are all SIGFPE), at the same \
RIP and with the same registers, flags and FP state (the host's from the signal context, \
Heron's from its exception frame). Operands mix random values from a seeded xorshift PRNG with \
edge cases (0, 1, −1, sign boundaries, maxima, aliased operands, garbage above the operand \
size; for floating point ±0, denormals, ±∞, QNaN/SNaN, the largest and smallest normals and \
values at the integer-indefinite boundaries) and every addressing form (base, index·scale, \
disp8/32, absolute, RIP-relative, 32-bit address size via 0x67, segment overrides including \
FS/GS with the host thread's bases), with LOCK on memory read-modify-write forms (and on forms \
where it must raise #UD). A flag-producing instruction followed by 1–3 flag readers exercises \
Heron's lazy flags; counted loops make tier-1 regions of several blocks with a back-edge. \
Every fourth case starts with an empty TLB (the memory slow paths), the others with the \
entries earlier cases left (the fast paths, inline in tier 1).\n\n\
The SSE/SSE2, MMX and x87 cases start from a random FP state: XMM0–15 with lanes of the \
class's type, MXCSR with a random rounding mode, FTZ, DAZ, sticky flags and (1 in 8) unmasked \
exceptions, so #XM must leave the destination alone; an x87 stack with random TOP, tags and \
values (pseudo-denormals and unnormals included), FCW precision and rounding control, and (1 in \
12) unmasked exceptions followed by FWAIT, which must raise #MF. Misaligned operands of the \
aligned forms must raise #GP. One SDM-defined result differs on the AMD host: FCOMI/FUCOMI(P) \
leave C1 alone there, while the SDM (Vol. 2A FCOMI, \"FPU Flags Affected\") says C1 is set to \
0; Heron follows the SDM and its C1 is checked against 0 instead of the host's. Bit 17 of \
MXCSR (AMD's MM, reserved on Intel) is not used as a reserved bit. Not covered, by design: \
RCPPS/RCPSS/RSQRTPS/RSQRTSS (approximations whose bits the SDM leaves to the implementation), \
the x87 transcendentals (documented as approximations in `x87.rs`), FBLD/FBSTP, and FOP/FIP/FDP.\n\n";

/// The section of docs/conformance.md that points at the system-level table.
const SYSTEM_SECTION: &str = r####"
## System-level cases

Protection, paging, interrupt and mode behaviour (segment limits and types, privilege checks, the TSS I/O bitmap, #PF error codes and CR2, A/D bits and TLB invalidation, real mode and A20, IRET variants, double and triple faults, SYSCALL/SYSRET/SWAPGS, CR0/CR4/EFER/MSR checks) cannot run natively in user mode, so the host oracle above does not cover it. Those cases are checked against the Intel SDM's stated results by `crates/heron-cpu/tests/system.rs`; their table is in [conformance-system.md](conformance-system.md), written by:

```
HERON_SYSTEM_WRITE=1 cargo test --release -p heron-cpu --test system -- system_table
```
"####;

//! CPU conformance harness: general-purpose instructions run natively on the x86-64 host (the
//! oracle) and in Heron's tier-0 interpreter (`TestCpu`) from the same registers, RFLAGS and
//! data memory; all 16 GPRs, the status flags and DF, and the data window must agree, except
//! flags the Intel SDM documents as undefined for the instruction (masks in
//! `conformance/classes.rs`, each with its SDM reference).
//!
//! Environment:
//! - `HERON_CONFORMANCE_CASES=N`: total random cases (default 50 000), split over the classes
//!   by weight; run ≥ 10^6 with `cargo test --release -p heron-cpu --test conformance`.
//! - `HERON_CONFORMANCE_SEED=S`: PRNG seed (default fixed, so runs are reproducible).
//! - `HERON_CONFORMANCE_CLASS=name`: only classes whose name contains `name`.
//! - `HERON_CONFORMANCE_DUMP=n`: print the first `n` generated instructions of each class.
//! - `HERON_CONFORMANCE_WRITE=1`: write the per-class table to `docs/conformance.md`.
//!
//! The host side needs x86-64 Linux (raw syscalls, glibc's signal structures).

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

#[path = "conformance/classes.rs"]
mod classes;
#[path = "conformance/fixed.rs"]
mod fixed;
#[path = "conformance/gen.rs"]
mod gen;
#[path = "conformance/native.rs"]
mod native;

use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use heron_cpu::state::rf;
use heron_cpu::testutil::TestCpu;
use heron_cpu::ExitReason;
use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

use classes::CLASSES;
use gen::{f, Case, G};
use native::{Native, CODE, DATA};

const _: () = assert!(CODE == heron_cpu::testutil::CODE && DATA == heron_cpu::testutil::DATA);

/// Default number of random cases (all classes together).
const DEFAULT_CASES: u64 = 50_000;
const DEFAULT_SEED: u64 = 0x4845_524F_4E00_0001;
/// Mismatches printed per class.
const SHOW: usize = 4;

/// The native executor owns fixed addresses: one per process, used under this lock.
fn native() -> &'static Mutex<Native> {
    static N: OnceLock<Mutex<Native>> = OnceLock::new();
    N.get_or_init(|| Mutex::new(Native::new()))
}

/// One side's result.
struct Outcome {
    regs: [u64; 16],
    flags: u64,
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
}

struct Heron {
    t: TestCpu,
    /// FS and GS bases: the host thread's, so FS:/GS: operands mean the same on both.
    seg_base: [u64; 2],
}

impl Heron {
    fn new() -> Heron {
        Heron { t: TestCpu::new(), seg_base: native::seg_bases() }
    }

    fn run(&mut self, c: &Case) -> Outcome {
        let s = &mut self.t.cpu.s;
        s.seg[heron_cpu::state::sreg::FS].base = self.seg_base[0];
        s.seg[heron_cpu::state::sreg::GS].base = self.seg_base[1];
        s.regs = c.regs;
        s.rflags = (c.flags & !rf::STATUS & rf::DF) | rf::FIXED;
        s.set_status_flags(c.flags & rf::STATUS);
        self.t.ram.write_bytes(DATA, &c.data).unwrap();
        let exit = self.t.run(&c.code, 100_000);
        let exc = self.t.exception();
        let end = CODE + c.code.len() as u64 + 1;
        let stray = if exc.is_none() && (exit != ExitReason::Halted || self.t.cpu.s.rip != end) {
            Some(format!("stopped with {exit:?} at RIP {:#x} (expected HLT at {:#x})", self.t.cpu.s.rip, end - 1))
        } else {
            None
        };
        let mut data = vec![0; c.data.len()];
        self.t.ram.read_bytes(DATA, &mut data).unwrap();
        let mut out = Outcome { regs: self.t.cpu.s.regs, flags: self.t.cpu.s.get_rflags(), data, exc, signal: None, fault_rip: 0, stray };
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
            self.t = TestCpu::new();
        }
        out
    }
}

fn run_native(n: &mut Native, c: &Case) -> Outcome {
    let mut data = c.data.clone();
    let o = n.run(&c.code, &c.regs, c.flags, &mut data);
    let exc = o.signal.map(|s| match s {
        native::SIGFPE => 0,
        native::SIGILL => 6,
        _ => 13,
    });
    Outcome { regs: o.regs, flags: o.rflags, data, exc, signal: o.signal, fault_rip: o.rip, stray: None }
}

/// Do an exception seen natively (as a signal) and one raised by Heron agree?
fn same_exception(native: u8, heron: u8) -> bool {
    match native {
        // SIGSEGV/SIGBUS: #GP, #SS, #PF or #AC.
        13 => matches!(heron, 12 | 13 | 14 | 17),
        v => v == heron,
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

fn describe(c: &Case, diff: &str) -> String {
    let mut s = String::new();
    let name = c.name.map(|n| format!(" [{n}]")).unwrap_or_default();
    let _ = writeln!(s, "{}{name}: {}    ({:02x?})", CLASSES[c.class].name, disasm(&c.code), c.code);
    let _ = write!(s, "  in:");
    for (r, name) in REG_NAMES.iter().enumerate() {
        if r % 4 == 0 {
            let _ = write!(s, "\n   ");
        }
        let _ = write!(s, " {name:>3}={:016x}", c.regs[r]);
    }
    let _ = writeln!(s, "\n   flags [{}]", flag_names(c.flags));
    s.push_str(diff);
    s
}

/// Per-class tally.
#[derive(Clone, Default)]
struct Tally {
    cases: u64,
    mismatches: u64,
    exceptions: u64,
    shown: Vec<String>,
}

struct Runner<'a> {
    native: &'a mut Native,
    heron: Heron,
    tally: Vec<Tally>,
}

impl Runner<'_> {
    fn check(&mut self, c: &Case) {
        let n = run_native(self.native, c);
        let h = self.heron.run(c);
        let t = &mut self.tally[c.class];
        t.cases += 1;
        if h.exc.is_some() {
            t.exceptions += 1;
        }
        if let Some(d) = compare(c, &n, &h) {
            t.mismatches += 1;
            if t.shown.len() < SHOW {
                t.shown.push(describe(c, &d));
            }
        }
    }

    /// Print the table and mismatches; the number of mismatching cases.
    fn report(&self, title: &str) -> u64 {
        let mut out = format!("\n{title}\n{:<46} {:>9} {:>6} {:>10}\n", "class", "cases", "faults", "mismatches");
        let mut total = (0, 0);
        for (k, t) in self.tally.iter().enumerate() {
            if t.cases == 0 {
                continue;
            }
            let _ = writeln!(out, "{:<46} {:>9} {:>6} {:>10}", CLASSES[k].name, t.cases, t.exceptions, t.mismatches);
            total.0 += t.cases;
            total.1 += t.mismatches;
        }
        let _ = writeln!(out, "{:<46} {:>9} {:>6} {:>10}", "total", total.0, "", total.1);
        for t in &self.tally {
            for s in &t.shown {
                out.push('\n');
                out.push_str(s);
            }
        }
        println!("{out}");
        total.1
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
    let mut r = Runner { native: &mut guard, heron: Heron::new(), tally: vec![Tally::default(); CLASSES.len()] };
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
    let mut r = Runner { native: &mut guard, heron: Heron::new(), tally: vec![Tally::default(); CLASSES.len()] };
    let mut g = G::new(seed);
    g.seg_base = r.heron.seg_base;
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
    let cases: u64 = r.tally.iter().map(|t| t.cases).sum();
    let bad = r.report(&format!("conformance: {cases} random cases, seed {seed:#x}, {secs:.1} s"));
    if std::env::var("HERON_CONFORMANCE_WRITE").is_ok_and(|v| v == "1") && only.is_none() {
        write_doc(&r.tally, cases, total, seed, fixed::cases().len());
    }
    assert_eq!(bad, 0, "conformance mismatches (see above)");
}

fn write_doc(tally: &[Tally], cases: u64, cases_requested: u64, seed: u64, fixed: usize) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let mut s = String::new();
    s.push_str("# CPU conformance\n\n");
    let cases_env = if cases_requested == DEFAULT_CASES { String::new() } else { format!("HERON_CONFORMANCE_CASES={cases_requested} ") };
    let seed_env = if seed == DEFAULT_SEED { String::new() } else { format!("HERON_CONFORMANCE_SEED={seed:#x} ") };
    let _ = writeln!(
        s,
        "Generated by `crates/heron-cpu/tests/conformance.rs`:\n\n```\n{cases_env}{seed_env}HERON_CONFORMANCE_WRITE=1 \
         cargo test --release -p heron-cpu --test conformance -- --nocapture\n```\n"
    );
    s.push_str(
        "\
         Each case runs the same instruction bytes natively on the x86-64 host (the oracle) and in \
         Heron's `TestCpu` from identical registers, RFLAGS (random CF/PF/AF/ZF/SF/OF/DF) and data \
         memory (the host maps the data and code areas at Heron's guest addresses). All 16 GPRs, \
         the status flags and DF, and an 8 KiB data window straddling a page boundary are \
         compared; only flags the Intel SDM documents as undefined for the instruction are \
         masked (see `tests/conformance/classes.rs`). Cases raising an exception must raise the \
         same one on both (#DE is SIGFPE on the host), at the same RIP and with the same \
         registers and flags (the host's from the signal context, Heron's from its exception \
         frame). Operands mix random values from a seeded \
         xorshift PRNG with edge cases (0, 1, −1, sign boundaries, maxima, aliased operands, \
         garbage above the operand size) and every addressing form (base, index·scale, disp8/32, \
         absolute, RIP-relative, 32-bit address size via 0x67, segment overrides including FS/GS \
         with the host thread's bases), with LOCK on memory read-modify-write forms (and on \
         forms where it must raise #UD). A flag-producing instruction followed by 1–3 \
         flag readers exercises Heron's lazy flags.\n\n",
    );
    let _ = writeln!(s, "Host: {cpu}. Seed {seed:#x}; {cases} random cases plus {fixed} fixed edge/regression cases.\n");
    s.push_str("| class | cases | mismatches | engine |\n|---|---:|---:|---|\n");
    for (k, t) in tally.iter().enumerate() {
        if t.cases > 0 {
            let _ = writeln!(s, "| {} | {} | {} | tier 0 (interpreter) |", CLASSES[k].name, t.cases, t.mismatches);
        }
    }
    let total: u64 = tally.iter().map(|t| t.mismatches).sum();
    let _ = writeln!(s, "| **total** | {cases} | {total} | tier 0 (interpreter) |");
    s.push_str(
        "\nThe fixed cases (`tests/conformance/fixed.rs`) include one regression case per Heron bug \
         this harness found:\n\n",
    );
    for c in fixed::cases() {
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

/// The section of docs/conformance.md that points at the system-level table.
const SYSTEM_SECTION: &str = r####"
## System-level cases

Protection, paging, interrupt and mode behaviour (segment limits and types, privilege checks, the TSS I/O bitmap, #PF error codes and CR2, A/D bits and TLB invalidation, real mode and A20, IRET variants, double and triple faults, SYSCALL/SYSRET/SWAPGS, CR0/CR4/EFER/MSR checks) cannot run natively in user mode, so the host oracle above does not cover it. Those cases are checked against the Intel SDM's stated results by `crates/heron-cpu/tests/system.rs`; their table is in [conformance-system.md](conformance-system.md), written by:

```
HERON_SYSTEM_WRITE=1 cargo test --release -p heron-cpu --test system -- system_table
```
"####;

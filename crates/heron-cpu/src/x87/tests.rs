//! x87 tests. The host is x86-64 with a real x87, used as the oracle: the same instruction
//! bytes run natively (in an RWX page mapped with a raw mmap syscall, the host state saved
//! and restored around them with FXSAVE/FXRSTOR) and in Heron's `TestCpu`, on identical
//! data memory addressed through RDI; the FNSAVE images and memory are compared.
//! Behaviour the SDM leaves implementation-dependent was checked on an AMD EPYC host.

use std::arch::asm;

use iced_x86::code_asm::*;

use super::sf::{self, Class, F80, J, QBIT};
use crate::testutil::{TestCpu, DATA};
use crate::vec;

// ---- memory layout (offsets from RDI) ----

const MEM: usize = 0x1000;
/// FRSTOR image loaded at the start of every snippet.
const IN: usize = 0x000;
/// Operands.
const OPS: usize = 0x080;
/// Stored results.
const RES: usize = 0x100;
/// FNSAVE image stored at the end of every snippet.
const OUT: usize = 0x200;
/// Miscellaneous (EFLAGS, AX).
const MISC: usize = 0x300;
/// FXSAVE areas.
const FX: usize = 0x400;
const FX2: usize = 0x800;

#[repr(C, align(64))]
#[derive(Clone)]
struct Mem([u8; MEM]);

impl Mem {
    fn new() -> Box<Mem> {
        let mut m = Box::new(Mem([0; MEM]));
        m.0[RES..RES + 0x80].fill(0xCC);
        m
    }
    fn put(&mut self, off: usize, b: &[u8]) {
        self.0[off..off + b.len()].copy_from_slice(b);
    }
    fn u16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.0[off], self.0[off + 1]])
    }
    fn f80(&self, off: usize) -> F80 {
        F80::from_bytes(self.0[off..off + 10].try_into().unwrap())
    }
    /// ST(k) of the FNSAVE image at OUT.
    fn out_st(&self, k: usize) -> F80 {
        self.f80(OUT + 28 + 10 * k)
    }
    fn out_fsw(&self) -> u16 {
        self.u16(OUT + 4)
    }
    fn out_ftw(&self) -> u16 {
        self.u16(OUT + 8)
    }
}

// ---- the host oracle ----

fn mmap_rwx(len: usize) -> *mut u8 {
    let ret: isize;
    // SAFETY: a raw Linux mmap(NULL, len, RWX, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) syscall.
    unsafe {
        asm!("syscall", inlateout("rax") 9isize => ret, in("rdi") 0usize, in("rsi") len, in("rdx") 7usize,
             in("r10") 0x22usize, in("r8") -1isize, in("r9") 0usize, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    assert!(ret > 0, "mmap failed: {ret}");
    ret as *mut u8
}

thread_local! {
    static PAGE: *mut u8 = mmap_rwx(0x10000);
}

#[repr(C, align(64))]
struct Save([u8; 512]);

/// Run `code` natively with RDI = the data memory. The code may use RAX, RCX, RDX, R8–R11.
fn host_run(code: &[u8], mem: &mut Mem) {
    let mut c = vec![0x0F, 0xAE, 0x06]; // fxsave [rsi]
    c.extend_from_slice(code);
    c.extend_from_slice(&[0x0F, 0xAE, 0x0E, 0xC3]); // fxrstor [rsi]; ret
    assert!(c.len() < 0x10000);
    PAGE.with(|&p| {
        let mut save = Save([0; 512]);
        // SAFETY: `p` is an RWX page we own; the snippet only touches `mem` through RDI and
        // the save area through RSI, uses caller-saved registers, and restores the x87/SSE
        // state before returning.
        unsafe {
            std::ptr::copy_nonoverlapping(c.as_ptr(), p, c.len());
            asm!("call {f}", f = in(reg) p, in("rdi") mem.0.as_mut_ptr(), in("rsi") save.0.as_mut_ptr(), clobber_abi("C"));
        }
    });
}

/// Run `code` in Heron with RDI = DATA; returns the exception vector if one was raised.
fn heron_run(t: &mut TestCpu, code: &[u8], mem: &mut Mem) -> Option<u8> {
    t.ram.write_bytes(DATA, &mem.0).unwrap();
    t.cpu.s.regs[7] = DATA;
    t.run(code, 100_000);
    t.ram.read_bytes(DATA, &mut mem.0).unwrap();
    t.exception()
}

fn asm(f: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a);
    a.assemble(0).unwrap()
}

/// FRSTOR [rdi+IN]; body; FNSAVE [rdi+OUT].
fn wrap(body: &[u8]) -> Vec<u8> {
    let mut c = asm(|a| a.frstor(ptr(rdi + IN as i32)).unwrap());
    c.extend_from_slice(body);
    c.extend(asm(|a| a.fnsave(ptr(rdi + OUT as i32)).unwrap()));
    c
}

/// Run wrapped `body` on both; returns (host, heron) memories.
fn both(t: &mut TestCpu, body: &[u8], mem: &Mem) -> (Box<Mem>, Box<Mem>) {
    let code = wrap(body);
    let mut h = Box::new(mem.clone());
    host_run(&code, &mut h);
    let mut e = Box::new(mem.clone());
    let exc = heron_run(t, &code, &mut e);
    assert_eq!(exc, None, "Heron raised an exception running {:02x?}", body);
    (h, e)
}

/// An FSAVE image: ST(k) = st[k], the rest empty, TOP = `top`.
fn image(fcw: u16, fsw: u16, top: u8, st: &[F80]) -> [u8; 108] {
    let mut b = [0u8; 108];
    b[0..2].copy_from_slice(&fcw.to_le_bytes());
    let fsw = (fsw & !0x3800) | ((top as u16) << 11);
    b[4..6].copy_from_slice(&fsw.to_le_bytes());
    let mut tags = 0xFFFFu16;
    for (k, v) in st.iter().enumerate() {
        let p = (top as usize + k) & 7;
        tags = (tags & !(3 << (2 * p))) | (v.tag() << (2 * p));
        b[28 + 10 * k..38 + 10 * k].copy_from_slice(&v.to_bytes());
    }
    b[8..10].copy_from_slice(&tags.to_le_bytes());
    b
}

fn fmt_f80(v: F80) -> String {
    format!("{:04x}:{:016x}", v.se, v.sig)
}

/// Differences between host and Heron memories: FCW, FSW, FTW, the registers of the FNSAVE
/// image and everything outside it (pointer fields are not compared).
fn diff(h: &Mem, e: &Mem) -> Option<String> {
    let mut s = String::new();
    if h.u16(OUT) != e.u16(OUT) {
        s += &format!(" fcw {:04x}/{:04x}", h.u16(OUT), e.u16(OUT));
    }
    if h.out_fsw() != e.out_fsw() {
        s += &format!(" fsw {:04x}/{:04x}", h.out_fsw(), e.out_fsw());
    }
    if h.out_ftw() != e.out_ftw() {
        s += &format!(" ftw {:04x}/{:04x}", h.out_ftw(), e.out_ftw());
    }
    for k in 0..8 {
        if h.out_st(k) != e.out_st(k) {
            s += &format!(" st{k} {}/{}", fmt_f80(h.out_st(k)), fmt_f80(e.out_st(k)));
        }
    }
    for off in (0..MEM).filter(|o| !(OUT..OUT + 108).contains(o)) {
        if h.0[off] != e.0[off] {
            s += &format!(" mem[{off:#x}] {:02x}/{:02x}", h.0[off], e.0[off]);
            break;
        }
    }
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

/// Collects mismatches and fails at the end with the first few.
struct Failures {
    n: usize,
    total: usize,
    msgs: Vec<String>,
}

impl Failures {
    fn new() -> Self {
        Failures { n: 0, total: 0, msgs: Vec::new() }
    }
    fn check(&mut self, what: impl FnOnce() -> String, h: &Mem, e: &Mem) {
        self.total += 1;
        if let Some(d) = diff(h, e) {
            self.n += 1;
            if self.msgs.len() < 25 {
                self.msgs.push(format!("{}: host/heron{}", what(), d));
            }
        }
    }
    fn finish(self) {
        assert!(self.n == 0, "{} of {} cases differ:\n{}", self.n, self.total, self.msgs.join("\n"));
    }
}

// ---- value generation ----

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An extended value from every class, weighted toward normals near 1.
fn gen_f80(r: &mut Rng) -> F80 {
    let s: u16 = if r.next() & 1 != 0 { 0x8000 } else { 0 };
    let rnd = r.next();
    match r.below(40) {
        0 | 1 => F80 { se: s, sig: 0 },
        2 | 3 => F80 { se: s, sig: (rnd >> (1 + r.below(63))).max(1) },
        4 => F80 { se: s, sig: J | rnd },
        5 | 6 => F80 { se: s | 0x7FFF, sig: J },
        7 => F80 { se: s | 0x7FFF, sig: J | QBIT | (rnd >> 2) },
        8 => F80 { se: s | 0x7FFF, sig: J | ((rnd >> 2) | 1) },
        9 => F80 { se: s | (1 + r.below(0x7FFE)) as u16, sig: rnd >> 1 },
        10..=13 => F80 { se: s | (1 + r.below(80)) as u16, sig: J | rnd },
        14..=16 => F80 { se: s | (0x7FFE - r.below(80)) as u16, sig: J | rnd },
        17..=19 => sf::from_i64(((rnd as i64) >> r.below(64)) | 1).neg_if(s != 0),
        20..=22 => F80 { se: s | (0x3FFF - 8 + r.below(16)) as u16, sig: J | (rnd & (u64::MAX << r.below(64))) },
        _ => F80 { se: s | (0x3FFF - 40 + r.below(80)) as u16, sig: J | rnd },
    }
}

/// A second operand, often close in magnitude to the first.
fn gen_near(r: &mut Rng, a: F80) -> F80 {
    if r.below(3) == 0 || !matches!(a.class(), Class::Normal) {
        return gen_f80(r);
    }
    let s: u16 = if r.next() & 1 != 0 { 0x8000 } else { 0 };
    let e = (a.bexp() as i32 + r.below(140) as i32 - 70).clamp(1, 0x7FFE) as u16;
    let sig = if r.below(4) == 0 { a.sig ^ (r.next() >> r.below(64)) | J } else { J | r.next() };
    F80 { se: s | e, sig }
}

trait NegIf {
    fn neg_if(self, c: bool) -> Self;
}
impl NegIf for F80 {
    fn neg_if(self, c: bool) -> F80 {
        if c {
            self.neg()
        } else {
            self
        }
    }
}

/// FCW with all exceptions masked and the given RC and PC.
fn fcw_of(rc: u16, pc: u16) -> u16 {
    0x007F | (pc << 8) | (rc << 10)
}

/// The twelve RC × PC combinations.
fn all_modes() -> Vec<u16> {
    let mut v = Vec::new();
    for rc in 0..4 {
        for pc in [0u16, 2, 3] {
            v.push(fcw_of(rc, pc));
        }
    }
    v
}

fn gen_f32(r: &mut Rng) -> u32 {
    let x = r.next() as u32;
    match r.below(8) {
        0 => x & 0x807F_FFFF,          // denormal or zero
        1 => (x & 0x807F_FFFF) | 0x7F80_0000, // inf or NaN
        2 => x & 0x8000_0000,
        _ => x,
    }
}

fn gen_f64(r: &mut Rng) -> u64 {
    let x = r.next();
    match r.below(8) {
        0 => x & 0x800F_FFFF_FFFF_FFFF,
        1 => (x & 0x800F_FFFF_FFFF_FFFF) | 0x7FF0_0000_0000_0000,
        2 => x & 0x8000_0000_0000_0000,
        _ => x,
    }
}

// ---- tests: arithmetic ----

type Emit = fn(&mut CodeAssembler);

fn reg_ops() -> Vec<(&'static str, Emit)> {
    vec![
        ("fadd st0,st1", |a| a.fadd_2(st0, st1).unwrap()),
        ("fadd st1,st0", |a| a.fadd_2(st1, st0).unwrap()),
        ("faddp", |a| a.faddp(st1, st0).unwrap()),
        ("fsub st0,st1", |a| a.fsub_2(st0, st1).unwrap()),
        ("fsub st1,st0", |a| a.fsub_2(st1, st0).unwrap()),
        ("fsubp", |a| a.fsubp(st1, st0).unwrap()),
        ("fsubr st0,st1", |a| a.fsubr_2(st0, st1).unwrap()),
        ("fsubrp", |a| a.fsubrp(st1, st0).unwrap()),
        ("fmul st0,st1", |a| a.fmul_2(st0, st1).unwrap()),
        ("fmulp", |a| a.fmulp(st1, st0).unwrap()),
        ("fdiv st0,st1", |a| a.fdiv_2(st0, st1).unwrap()),
        ("fdiv st1,st0", |a| a.fdiv_2(st1, st0).unwrap()),
        ("fdivp", |a| a.fdivp(st1, st0).unwrap()),
        ("fdivr st0,st1", |a| a.fdivr_2(st0, st1).unwrap()),
        ("fdivrp", |a| a.fdivrp(st1, st0).unwrap()),
    ]
}

fn run_reg_cases(seed: u64, n: usize, unmask: bool) {
    let mut t = TestCpu::new();
    let mut r = Rng(seed);
    let mut f = Failures::new();
    let ops = reg_ops();
    let modes = all_modes();
    for k in 0..n {
        let (name, emit) = ops[k % ops.len()];
        let mut fcw = modes[r.below(modes.len() as u64) as usize];
        if unmask {
            fcw &= !(r.next() as u16 & 0x3F);
        }
        let a = gen_f80(&mut r);
        let b = gen_near(&mut r, a);
        let mut m = Mem::new();
        m.put(IN, &image(fcw, 0, 6, &[a, b]));
        let (h, e) = both(&mut t, &asm(emit), &m);
        f.check(|| format!("{name} fcw={fcw:04x} st0={} st1={}", fmt_f80(a), fmt_f80(b)), &h, &e);
    }
    f.finish();
}

#[test]
fn x87_arith_reg() {
    run_reg_cases(0x1234_5678_9ABC_DEF1, 6000, false);
}

#[test]
fn x87_arith_reg_unmasked() {
    run_reg_cases(0x0F0F_1234_5555_AAAB, 3000, true);
}

fn mem_ops() -> Vec<(&'static str, u32, Emit)> {
    // (name, operand kind: 4 = m32fp, 8 = m64fp, 2 = m16int, 5 = m32int)
    vec![
        ("fadd m32", 4, |a| a.fadd(dword_ptr(rdi + OPS as i32)).unwrap()),
        ("fadd m64", 8, |a| a.fadd(qword_ptr(rdi + OPS as i32)).unwrap()),
        ("fsub m32", 4, |a| a.fsub(dword_ptr(rdi + OPS as i32)).unwrap()),
        ("fsubr m64", 8, |a| a.fsubr(qword_ptr(rdi + OPS as i32)).unwrap()),
        ("fmul m64", 8, |a| a.fmul(qword_ptr(rdi + OPS as i32)).unwrap()),
        ("fdiv m32", 4, |a| a.fdiv(dword_ptr(rdi + OPS as i32)).unwrap()),
        ("fdivr m64", 8, |a| a.fdivr(qword_ptr(rdi + OPS as i32)).unwrap()),
        ("fiadd m16", 2, |a| a.fiadd(word_ptr(rdi + OPS as i32)).unwrap()),
        ("fisub m32", 5, |a| a.fisub(dword_ptr(rdi + OPS as i32)).unwrap()),
        ("fisubr m16", 2, |a| a.fisubr(word_ptr(rdi + OPS as i32)).unwrap()),
        ("fimul m32", 5, |a| a.fimul(dword_ptr(rdi + OPS as i32)).unwrap()),
        ("fidiv m16", 2, |a| a.fidiv(word_ptr(rdi + OPS as i32)).unwrap()),
        ("fidivr m32", 5, |a| a.fidivr(dword_ptr(rdi + OPS as i32)).unwrap()),
        ("fcom m32", 4, |a| a.fcom(dword_ptr(rdi + OPS as i32)).unwrap()),
        ("fcomp m64", 8, |a| a.fcomp(qword_ptr(rdi + OPS as i32)).unwrap()),
        ("ficom m16", 2, |a| a.ficom(word_ptr(rdi + OPS as i32)).unwrap()),
        ("ficomp m32", 5, |a| a.ficomp(dword_ptr(rdi + OPS as i32)).unwrap()),
        ("fld m32", 4, |a| a.fld(dword_ptr(rdi + OPS as i32)).unwrap()),
        ("fld m64", 8, |a| a.fld(qword_ptr(rdi + OPS as i32)).unwrap()),
        ("fild m16", 2, |a| a.fild(word_ptr(rdi + OPS as i32)).unwrap()),
        ("fild m32", 5, |a| a.fild(dword_ptr(rdi + OPS as i32)).unwrap()),
    ]
}

fn run_mem_cases(seed: u64, n: usize, unmask: bool) {
    let mut t = TestCpu::new();
    let mut r = Rng(seed);
    let mut f = Failures::new();
    let ops = mem_ops();
    let modes = all_modes();
    for k in 0..n {
        let (name, kind, emit) = ops[k % ops.len()];
        let mut fcw = modes[r.below(modes.len() as u64) as usize];
        if unmask {
            fcw &= !(r.next() as u16 & 0x3F);
        }
        let a = gen_f80(&mut r);
        let mut m = Mem::new();
        let opnd: u64 = match kind {
            4 => gen_f32(&mut r) as u64,
            8 => gen_f64(&mut r),
            _ => r.next() >> r.below(64),
        };
        m.put(OPS, &opnd.to_le_bytes());
        m.put(IN, &image(fcw, 0, 6, &[a]));
        let (h, e) = both(&mut t, &asm(emit), &m);
        f.check(|| format!("{name} fcw={fcw:04x} st0={} opnd={opnd:#x}", fmt_f80(a)), &h, &e);
    }
    f.finish();
}

#[test]
fn x87_arith_mem() {
    run_mem_cases(0xDEAD_BEEF_0123_4567, 6000, false);
}

#[test]
fn x87_arith_mem_unmasked() {
    run_mem_cases(0x7777_1111_2222_3333, 3000, true);
}

/// One-operand instructions on ST(0) (with ST(1) for FSCALE/FPREM).
fn run_unary(name: &str, emit: Emit, seed: u64, n: usize, two: bool, near: bool) {
    let mut t = TestCpu::new();
    let mut r = Rng(seed);
    let mut f = Failures::new();
    let modes = all_modes();
    for _ in 0..n {
        let mut fcw = modes[r.below(modes.len() as u64) as usize];
        if r.below(4) == 0 {
            fcw &= !(r.next() as u16 & 0x3F);
        }
        let a = gen_f80(&mut r);
        let b = if near { gen_near(&mut r, a) } else { gen_f80(&mut r) };
        let mut m = Mem::new();
        let st: &[F80] = if two { &[a, b] } else { &[a] };
        m.put(IN, &image(fcw, 0, 5, st));
        let (h, e) = both(&mut t, &asm(emit), &m);
        f.check(|| format!("{name} fcw={fcw:04x} st0={} st1={}", fmt_f80(a), fmt_f80(b)), &h, &e);
    }
    f.finish();
}

#[test]
fn x87_sqrt() {
    run_unary("fsqrt", |a| a.fsqrt().unwrap(), 11, 4000, false, false);
}

#[test]
fn x87_frndint() {
    run_unary("frndint", |a| a.frndint().unwrap(), 12, 4000, false, false);
}

#[test]
fn x87_fscale() {
    run_unary("fscale", |a| a.fscale().unwrap(), 13, 4000, true, false);
}

#[test]
fn x87_fxtract() {
    run_unary("fxtract", |a| a.fxtract().unwrap(), 14, 2000, false, false);
}

#[test]
fn x87_fprem() {
    run_unary("fprem", |a| a.fprem().unwrap(), 15, 4000, true, true);
    run_unary("fprem1", |a| a.fprem1().unwrap(), 16, 4000, true, true);
}

/// NaN propagation: QNaN/SNaN pairs with equal and different significands and signs, in
/// both operand orders and from memory.
#[test]
fn x87_nan_propagation() {
    let mut t = TestCpu::new();
    let mut f = Failures::new();
    let sigs = [J | QBIT | 5, J | QBIT | 7, J | 5, J | 7, J | QBIT, J | 1];
    let mut nans = Vec::new();
    for &sig in &sigs {
        for se in [0x7FFFu16, 0xFFFF] {
            nans.push(F80 { se, sig });
        }
    }
    let others = [F80::ONE, F80 { se: 0, sig: 3 }, F80::inf(true), F80::ZERO];
    let ops = reg_ops();
    for (name, emit) in &ops {
        for &a in &nans {
            for &b in nans.iter().chain(others.iter()) {
                for (x, y) in [(a, b), (b, a)] {
                    let mut m = Mem::new();
                    m.put(IN, &image(fcw_of(0, 3), 0, 6, &[x, y]));
                    let (h, e) = both(&mut t, &asm(*emit), &m);
                    f.check(|| format!("{name} st0={} st1={}", fmt_f80(x), fmt_f80(y)), &h, &e);
                }
            }
        }
    }
    // Memory NaNs (m32/m64) against register NaNs.
    for &a in &nans {
        for bits in [0x7FC0_0001u64, 0xFFA0_0000, 0x7F80_0001, 0x7FF8_0000_0000_0001, 0xFFF0_0000_0000_0001] {
            let mut m = Mem::new();
            m.put(IN, &image(fcw_of(0, 3), 0, 6, &[a]));
            m.put(OPS, &bits.to_le_bytes());
            let body = if bits >> 32 == 0 {
                asm(|x| x.fsubr(dword_ptr(rdi + OPS as i32)).unwrap())
            } else {
                asm(|x| x.fmul(qword_ptr(rdi + OPS as i32)).unwrap())
            };
            let (h, e) = both(&mut t, &body, &m);
            f.check(|| format!("mem {bits:#x} st0={}", fmt_f80(a)), &h, &e);
        }
    }
    f.finish();
}

/// Results at the underflow threshold (tininess after rounding) and the overflow threshold,
/// in every precision and rounding mode, masked and unmasked.
#[test]
fn x87_thresholds() {
    let mut t = TestCpu::new();
    let mut f = Failures::new();
    let mut pairs = Vec::new();
    for k in [0u64, 1, 2, 3, 0x7F, 0x80, 0x81, 0x3FF, 0x400, 0x401, 0xFF_FFFF_FFFF, 0x100_0000_0000, 0x1FF_FFFF_FFFF] {
        let a = F80 { se: 0x3FFE, sig: u64::MAX - k };
        let b = F80 { se: 0x3FFF, sig: u64::MAX - k };
        // Just below the smallest normal, and just below the largest finite value's successor.
        pairs.push((a, F80 { se: 0x0001, sig: J }));
        pairs.push((b, F80 { se: 0x7FFE, sig: u64::MAX }));
        pairs.push((a.neg(), F80 { se: 0x0001, sig: J | k }));
        pairs.push((b, F80 { se: 0xFFFE, sig: u64::MAX - (k << 11) }));
        pairs.push((b, F80 { se: 0x7FFE, sig: u64::MAX << 40 }));
        pairs.push((a, F80 { se: 0x0001, sig: J | (k << 40) }));
    }
    let ops: Vec<(&str, Emit)> = vec![("fmul", |a| a.fmul_2(st0, st1).unwrap()), ("fdivr", |a| a.fdivr_2(st0, st1).unwrap())];
    for (name, emit) in &ops {
        for &(x, y) in &pairs {
            for fcw in all_modes() {
                for unmask in [0u16, fl_ou()] {
                    let y = if *name == "fdivr" { F80 { se: y.se, sig: y.sig } } else { y };
                    let x = if *name == "fdivr" {
                        // y / (1/x) ≈ y·x: use the reciprocal through an exact power of two.
                        F80 { se: 0x3FFF + 0x3FFF - x.bexp() | (x.se & 0x8000), sig: J }
                    } else {
                        x
                    };
                    let mut m = Mem::new();
                    m.put(IN, &image(fcw & !unmask, 0, 6, &[x, y]));
                    let (h, e) = both(&mut t, &asm(*emit), &m);
                    f.check(|| format!("{name} fcw={:04x} st0={} st1={}", fcw & !unmask, fmt_f80(x), fmt_f80(y)), &h, &e);
                }
            }
        }
    }
    f.finish();
}

fn fl_ou() -> u16 {
    super::sf::fl::OE | super::sf::fl::UE
}

/// FPREM/FPREM1 iterated until C2 = 0 (complete reduction), with large exponent
/// differences: exercises the partial-remainder steps.
#[test]
fn x87_fprem_loop() {
    let mut t = TestCpu::new();
    let mut r = Rng(17);
    let mut f = Failures::new();
    for k in 0..600 {
        let ieee = k % 2 == 1;
        let fcw = fcw_of(r.below(4) as u16, 3);
        let s: u16 = if r.next() & 1 != 0 { 0x8000 } else { 0 };
        let y = F80 { se: s | (0x3FFF - 100 + r.below(200)) as u16, sig: J | r.next() };
        let d = r.below(400) as u16;
        let x = F80 { se: (r.below(2) as u16) << 15 | ((y.bexp() + d).min(0x7FFE)), sig: J | r.next() };
        let mut m = Mem::new();
        m.put(IN, &image(fcw, 0, 6, &[x, y]));
        let body = asm(|a| {
            let mut l = a.create_label();
            a.set_label(&mut l).unwrap();
            if ieee {
                a.fprem1().unwrap();
            } else {
                a.fprem().unwrap();
            }
            a.fnstsw(ax).unwrap();
            a.test(ah, 4).unwrap();
            a.jnz(l).unwrap();
        });
        let (h, e) = both(&mut t, &body, &m);
        f.check(|| format!("fprem{} loop fcw={fcw:04x} st0={} st1={}", if ieee { "1" } else { "" }, fmt_f80(x), fmt_f80(y)), &h, &e);
    }
    f.finish();
}

/// FRSTOR/FLDENV/FXRSTOR of arbitrary control and status words: ES and B are recomputed
/// from the exception flags and masks; tags come from the register contents.
#[test]
fn x87_restore_status() {
    let mut t = TestCpu::new();
    let mut r = Rng(18);
    let mut f = Failures::new();
    for k in 0..300 {
        let fcw = r.next() as u16;
        let fsw = r.next() as u16;
        let n = r.below(9) as usize;
        let st: Vec<F80> = (0..n).map(|_| gen_f80(&mut r)).collect();
        let mut img = image(fcw, fsw, (fsw >> 11) as u8 & 7, &st);
        // Tags of non-empty registers given as arbitrary non-empty values.
        let mut tags = u16::from_le_bytes([img[8], img[9]]);
        for p in 0..8 {
            if (tags >> (2 * p)) & 3 != 3 {
                tags = (tags & !(3 << (2 * p))) | ((r.below(3) as u16) << (2 * p));
            }
        }
        img[8..10].copy_from_slice(&tags.to_le_bytes());
        let mut m = Mem::new();
        let body = match k % 3 {
            0 => {
                // The image goes in through FRSTOR itself (wrap), nothing else runs.
                m.put(IN, &img);
                vec![]
            }
            1 => {
                m.put(IN, &image(fcw_of(0, 3), 0, 0, &st));
                let mut env = [0u8; 28];
                env.copy_from_slice(&img[..28]);
                m.put(RES, &env);
                asm(|a| a.fldenv(ptr(rdi + RES as i32)).unwrap())
            }
            _ => {
                m.put(IN, &image(fcw_of(0, 3), 0, 0, &st));
                // An FXSAVE image with these words and the abridged tags.
                let mut fx = [0u8; 512];
                fx[0..2].copy_from_slice(&fcw.to_le_bytes());
                fx[2..4].copy_from_slice(&fsw.to_le_bytes());
                let mut ab = 0u8;
                for p in 0..8 {
                    if (tags >> (2 * p)) & 3 != 3 {
                        ab |= 1 << p;
                    }
                }
                fx[4] = ab;
                fx[24..28].copy_from_slice(&0x1F80u32.to_le_bytes());
                for (k, v) in st.iter().enumerate() {
                    fx[32 + 16 * k..42 + 16 * k].copy_from_slice(&v.to_bytes());
                }
                m.put(FX2, &fx);
                asm(|a| a.fxrstor(ptr(rdi + FX2 as i32)).unwrap())
            }
        };
        let (h, e) = both(&mut t, &body, &m);
        f.check(|| format!("case {k} fcw={fcw:04x} fsw={fsw:04x} tags={tags:04x}"), &h, &e);
    }
    f.finish();
}

#[test]
fn x87_chs_abs_xam_tst() {
    run_unary("fchs", |a| a.fchs().unwrap(), 17, 500, false, false);
    run_unary("fabs", |a| a.fabs().unwrap(), 18, 500, false, false);
    run_unary("fxam", |a| a.fxam().unwrap(), 19, 1000, false, false);
    run_unary("ftst", |a| a.ftst().unwrap(), 20, 1000, false, false);
}

#[test]
fn x87_compare() {
    fn flags(a: &mut CodeAssembler) {
        a.pushfq().unwrap();
        a.pop(rax).unwrap();
        a.and(rax, 0x8D5).unwrap();
        a.mov(qword_ptr(rdi + MISC as i32), rax).unwrap();
    }
    let ops: Vec<(&str, Emit)> = vec![
        ("fcom", |a| a.fcom_2(st0, st1).unwrap()),
        ("fcomp", |a| a.fcomp_2(st0, st1).unwrap()),
        ("fcompp", |a| a.fcompp().unwrap()),
        ("fucom", |a| a.fucom(st0, st1).unwrap()),
        ("fucomp", |a| a.fucomp(st0, st1).unwrap()),
        ("fucompp", |a| a.fucompp().unwrap()),
        ("fcomi", |a| {
            a.fcomi(st0, st1).unwrap();
            flags(a)
        }),
        ("fcomip", |a| {
            a.fcomip(st0, st1).unwrap();
            flags(a)
        }),
        ("fucomi", |a| {
            a.fucomi(st0, st1).unwrap();
            flags(a)
        }),
        ("fucomip", |a| {
            a.fucomip(st0, st1).unwrap();
            flags(a)
        }),
    ];
    let mut seed = 100;
    for (name, emit) in ops {
        seed += 1;
        run_unary(name, emit, seed, 700, true, true);
    }
}

// ---- stores and conversions ----

#[test]
fn x87_stores() {
    let ops: Vec<(&str, Emit)> = vec![
        ("fst m32", |a| a.fst(dword_ptr(rdi + RES as i32)).unwrap()),
        ("fstp m32", |a| a.fstp(dword_ptr(rdi + RES as i32)).unwrap()),
        ("fst m64", |a| a.fst(qword_ptr(rdi + RES as i32)).unwrap()),
        ("fstp m64", |a| a.fstp(qword_ptr(rdi + RES as i32)).unwrap()),
        ("fstp m80", |a| a.fstp(tword_ptr(rdi + RES as i32)).unwrap()),
        ("fst st2", |a| a.fst(st2).unwrap()),
        ("fstp st1", |a| a.fstp(st1).unwrap()),
        ("fist m16", |a| a.fist(word_ptr(rdi + RES as i32)).unwrap()),
        ("fistp m16", |a| a.fistp(word_ptr(rdi + RES as i32)).unwrap()),
        ("fist m32", |a| a.fist(dword_ptr(rdi + RES as i32)).unwrap()),
        ("fistp m64", |a| a.fistp(qword_ptr(rdi + RES as i32)).unwrap()),
        ("fbstp", |a| a.fbstp(tword_ptr(rdi + RES as i32)).unwrap()),
    ];
    let mut seed = 200;
    for (name, emit) in ops {
        seed += 1;
        run_unary(name, emit, seed, 1500, true, false);
    }
}

/// Integers near the limits of each width, for FIST/FBSTP range checks.
#[test]
fn x87_fist_limits() {
    let mut t = TestCpu::new();
    let mut f = Failures::new();
    let mut vals = Vec::new();
    for lim in [32768i128, 2147483648, 9223372036854775808, 1_000_000_000_000_000_000] {
        for d in [-2i128, -1, 0, 1] {
            for frac in [0u64, 1 << 62, 1 << 63, (1 << 63) | 1, u64::MAX] {
                for s in [false, true] {
                    // (lim + d) + frac/2^64
                    let v = lim + d;
                    if v <= 0 {
                        continue;
                    }
                    let ex = sf::from_int(s, ((v as u128) << 64) | frac as u128, -64);
                    vals.push(sf::to_f80_nearest(ex));
                }
            }
        }
    }
    vals.push(F80 { se: 0x403E, sig: J });
    vals.push(F80 { se: 0xC03E, sig: J });
    vals.push(F80 { se: 0xC03E, sig: J | 1 });
    let ops: Vec<(&str, Emit)> = vec![
        ("fistp m16", |a| a.fistp(word_ptr(rdi + RES as i32)).unwrap()),
        ("fistp m32", |a| a.fistp(dword_ptr(rdi + RES as i32)).unwrap()),
        ("fistp m64", |a| a.fistp(qword_ptr(rdi + RES as i32)).unwrap()),
        ("fbstp", |a| a.fbstp(tword_ptr(rdi + RES as i32)).unwrap()),
    ];
    for (name, emit) in &ops {
        for &v in &vals {
            for fcw in [fcw_of(0, 3), fcw_of(1, 3), fcw_of(2, 3), fcw_of(3, 3), 0x037E] {
                let mut m = Mem::new();
                m.put(IN, &image(fcw, 0, 0, &[v]));
                let (h, e) = both(&mut t, &asm(*emit), &m);
                f.check(|| format!("{name} fcw={fcw:04x} st0={}", fmt_f80(v)), &h, &e);
            }
        }
    }
    f.finish();
}

#[test]
fn x87_loads() {
    let mut t = TestCpu::new();
    let mut r = Rng(300);
    let mut f = Failures::new();
    let ops: Vec<(&str, Emit)> = vec![
        ("fld m32", |a| a.fld(dword_ptr(rdi + OPS as i32)).unwrap()),
        ("fld m64", |a| a.fld(qword_ptr(rdi + OPS as i32)).unwrap()),
        ("fld m80", |a| a.fld(tword_ptr(rdi + OPS as i32)).unwrap()),
        ("fild m64", |a| a.fild(qword_ptr(rdi + OPS as i32)).unwrap()),
        ("fbld", |a| a.fbld(tword_ptr(rdi + OPS as i32)).unwrap()),
        ("fld st1", |a| a.fld(st1).unwrap()),
    ];
    for (name, emit) in &ops {
        for _ in 0..600 {
            let mut fcw = fcw_of(r.below(4) as u16, 3);
            if r.below(3) == 0 {
                fcw &= !(r.next() as u16 & 0x3F);
            }
            let mut m = Mem::new();
            let opnd: Vec<u8> = match *name {
                "fld m32" => (gen_f32(&mut r) as u64).to_le_bytes().to_vec(),
                "fld m64" => gen_f64(&mut r).to_le_bytes().to_vec(),
                "fbld" => {
                    let mut b = [0u8; 10];
                    let any = r.below(4) == 0; // sometimes invalid digits and sign-byte junk
                    for x in b.iter_mut().take(9) {
                        *x = if any { r.next() as u8 } else { ((r.below(10) << 4) | r.below(10)) as u8 };
                    }
                    b[9] = if any { r.next() as u8 } else if r.next() & 1 != 0 { 0x80 } else { 0 };
                    b.to_vec()
                }
                "fild m64" => (r.next() >> r.below(64)).to_le_bytes().to_vec(),
                _ => gen_f80(&mut r).to_bytes().to_vec(),
            };
            m.put(OPS, &opnd);
            // Vary stack fullness to hit overflow sometimes.
            let depth = r.below(9) as usize;
            let st: Vec<F80> = (0..depth).map(|_| gen_f80(&mut r)).collect();
            m.put(IN, &image(fcw, 0, r.below(8) as u8, &st));
            let (h, e) = both(&mut t, &asm(*emit), &m);
            f.check(|| format!("{name} fcw={fcw:04x} depth={depth} opnd={opnd:02x?}"), &h, &e);
        }
    }
    f.finish();
}

#[test]
fn x87_constants() {
    let mut t = TestCpu::new();
    let mut f = Failures::new();
    let ops: Vec<(&str, Emit)> = vec![
        ("fld1", |a| a.fld1().unwrap()),
        ("fldz", |a| a.fldz().unwrap()),
        ("fldpi", |a| a.fldpi().unwrap()),
        ("fldl2e", |a| a.fldl2e().unwrap()),
        ("fldl2t", |a| a.fldl2t().unwrap()),
        ("fldlg2", |a| a.fldlg2().unwrap()),
        ("fldln2", |a| a.fldln2().unwrap()),
    ];
    for (name, emit) in &ops {
        for fcw in all_modes() {
            for depth in [0usize, 8] {
                let mut m = Mem::new();
                let st = vec![F80::ONE; depth];
                m.put(IN, &image(fcw, 0, 3, &st));
                let (h, e) = both(&mut t, &asm(*emit), &m);
                f.check(|| format!("{name} fcw={fcw:04x} depth={depth}"), &h, &e);
            }
        }
    }
    f.finish();
}

// ---- stack handling ----

#[test]
fn x87_stack_faults() {
    let mut t = TestCpu::new();
    let mut r = Rng(400);
    let mut f = Failures::new();
    let ops: Vec<(&str, Emit)> = vec![
        ("fadd st0,st3", |a| a.fadd_2(st0, st3).unwrap()),
        ("faddp st2", |a| a.faddp(st2, st0).unwrap()),
        ("fld st3", |a| a.fld(st3).unwrap()),
        ("fxch st2", |a| a.fxch(st0, st2).unwrap()),
        ("fsqrt", |a| a.fsqrt().unwrap()),
        ("fchs", |a| a.fchs().unwrap()),
        ("fcom st2", |a| a.fcom_2(st0, st2).unwrap()),
        ("fcompp", |a| a.fcompp().unwrap()),
        ("fucomip st1", |a| a.fucomip(st0, st1).unwrap()),
        ("fst m64", |a| a.fst(qword_ptr(rdi + RES as i32)).unwrap()),
        ("fstp m80", |a| a.fstp(tword_ptr(rdi + RES as i32)).unwrap()),
        ("fistp m32", |a| a.fistp(dword_ptr(rdi + RES as i32)).unwrap()),
        ("fbstp", |a| a.fbstp(tword_ptr(rdi + RES as i32)).unwrap()),
        ("fstp st3", |a| a.fstp(st3).unwrap()),
        ("fxtract", |a| a.fxtract().unwrap()),
        ("fprem", |a| a.fprem().unwrap()),
        ("fscale", |a| a.fscale().unwrap()),
        ("fptan", |a| a.fptan().unwrap()),
        ("fsincos", |a| a.fsincos().unwrap()),
        ("fsin", |a| a.fsin().unwrap()),
        ("fyl2x", |a| a.fyl2x().unwrap()),
        ("fpatan", |a| a.fpatan().unwrap()),
        ("fcmovb st2", |a| a.fcmovb(st0, st2).unwrap()),
        ("fcmovnb st2", |a| a.fcmovnb(st0, st2).unwrap()),
        ("fincstp", |a| a.fincstp().unwrap()),
        ("fdecstp", |a| a.fdecstp().unwrap()),
        ("ffree st1", |a| a.ffree(st1).unwrap()),
        ("ffreep st1", |a| a.ffreep(st1).unwrap()),
        ("fxam", |a| a.fxam().unwrap()),
        ("frndint", |a| a.frndint().unwrap()),
        ("fild m16", |a| a.fild(word_ptr(rdi + OPS as i32)).unwrap()),
        ("fmul m32", |a| a.fmul(dword_ptr(rdi + OPS as i32)).unwrap()),
    ];
    for (name, emit) in &ops {
        for _ in 0..60 {
            let mut fcw = fcw_of(0, 3);
            if r.below(2) == 0 {
                fcw &= !1; // IE unmasked
            }
            // A random set of empty registers.
            let top = r.below(8) as u8;
            // Transcendentals get operands with exact results (tan 0, sin 0, atan2(0, 0),
            // 1·log2 1) so that only the stack handling is compared.
            let mut st = Vec::new();
            for _ in 0..8 {
                st.push(match *name {
                    "fptan" | "fsincos" | "fsin" | "fpatan" => F80::ZERO,
                    "fyl2x" => F80::ONE,
                    _ => F80 { se: 0x3FFF + r.below(4) as u16, sig: J | r.next() },
                });
            }
            let mut img = image(fcw, 0, top, &st);
            let empties = r.next() as u8 & r.next() as u8;
            let mut tags = u16::from_le_bytes([img[8], img[9]]);
            for p in 0..8 {
                if empties & (1 << p) != 0 {
                    tags |= 3 << (2 * p);
                }
            }
            img[8..10].copy_from_slice(&tags.to_le_bytes());
            let mut m = Mem::new();
            m.put(IN, &img);
            m.put(OPS, &0x3F80_0000u32.to_le_bytes());
            // Deterministic EFLAGS for FCMOVcc.
            let body = asm(|a| {
                a.xor(eax, eax).unwrap();
                emit(a);
            });
            let (h, e) = both(&mut t, &body, &m);
            f.check(|| format!("{name} fcw={fcw:04x} top={top} empties={empties:08b}"), &h, &e);
        }
    }
    f.finish();
}

#[test]
fn x87_fcmov() {
    let mut t = TestCpu::new();
    let mut f = Failures::new();
    let ops: Vec<(&str, Emit)> = vec![
        ("fcmovb", |a| a.fcmovb(st0, st1).unwrap()),
        ("fcmove", |a| a.fcmove(st0, st1).unwrap()),
        ("fcmovbe", |a| a.fcmovbe(st0, st1).unwrap()),
        ("fcmovu", |a| a.fcmovu(st0, st1).unwrap()),
        ("fcmovnb", |a| a.fcmovnb(st0, st1).unwrap()),
        ("fcmovne", |a| a.fcmovne(st0, st1).unwrap()),
        ("fcmovnbe", |a| a.fcmovnbe(st0, st1).unwrap()),
        ("fcmovnu", |a| a.fcmovnu(st0, st1).unwrap()),
    ];
    for (name, emit) in &ops {
        for flg in [0u8, 0x01, 0x04, 0x40, 0x41, 0x45, 0x05, 0x44] {
            let mut m = Mem::new();
            m.put(IN, &image(fcw_of(0, 3), 0, 2, &[F80::ONE, F80 { se: 0xC000, sig: J | 12345 }]));
            let body = asm(|a| {
                a.mov(ah, flg as u32).unwrap();
                a.sahf().unwrap();
                emit(a);
            });
            let (h, e) = both(&mut t, &body, &m);
            f.check(|| format!("{name} ah={flg:02x}"), &h, &e);
        }
    }
    f.finish();
}

#[test]
fn x87_control_words() {
    let mut t = TestCpu::new();
    let mut f = Failures::new();
    for cw in [0x0000u16, 0xFFFF, 0x1F7F, 0x037F, 0x0C40, 0x13BF, 0x8000] {
        let mut m = Mem::new();
        m.put(OPS, &cw.to_le_bytes());
        m.put(IN, &image(fcw_of(0, 3), 0x0027, 3, &[F80::ONE]));
        let body = asm(|a| {
            a.fnclex().unwrap();
            a.fldcw(word_ptr(rdi + OPS as i32)).unwrap();
            a.fnstcw(word_ptr(rdi + RES as i32)).unwrap();
            a.fnstsw(word_ptr(rdi + RES as i32 + 2)).unwrap();
            a.fnstsw(ax).unwrap();
            a.mov(word_ptr(rdi + MISC as i32), ax).unwrap();
            a.fldcw(word_ptr(rdi + IN as i32)).unwrap();
        });
        let (h, e) = both(&mut t, &body, &m);
        f.check(|| format!("fldcw {cw:04x}"), &h, &e);
    }
    // FNCLEX keeps the condition codes; FNSTSW AX includes TOP.
    let mut m = Mem::new();
    m.put(IN, &image(fcw_of(0, 3), 0x47FF & !0x80, 5, &[F80::ONE]));
    let body = asm(|a| {
        a.fnstsw(ax).unwrap();
        a.mov(word_ptr(rdi + MISC as i32), ax).unwrap();
        a.fnclex().unwrap();
        a.fnstsw(ax).unwrap();
        a.mov(word_ptr(rdi + MISC as i32 + 2), ax).unwrap();
        a.fninit().unwrap();
        a.fnstsw(ax).unwrap();
        a.mov(word_ptr(rdi + MISC as i32 + 4), ax).unwrap();
        a.fnstcw(word_ptr(rdi + MISC as i32 + 6)).unwrap();
    });
    let (h, e) = both(&mut t, &body, &m);
    f.check(|| "fnclex/fninit".into(), &h, &e);
    f.finish();
}

// ---- state save/restore ----

fn random_state(r: &mut Rng) -> [u8; 108] {
    let top = r.below(8) as u8;
    let n = r.below(9) as usize;
    let st: Vec<F80> = (0..n).map(|_| gen_f80(r)).collect();
    let fcw = fcw_of(r.below(4) as u16, [0u16, 2, 3][r.below(3) as usize]);
    // Flags without unmasked exceptions pending (so no #MF anywhere).
    let fsw = (r.next() as u16) & 0x477F & !0x3F | (r.next() as u16 & 0x3F & fcw);
    image(fcw, fsw, top, &st)
}

#[test]
fn x87_fsave_frstor_fstenv() {
    let mut t = TestCpu::new();
    let mut r = Rng(500);
    let mut f = Failures::new();
    for k in 0..300 {
        let mut m = Mem::new();
        m.put(IN, &random_state(&mut r));
        let body = match k % 6 {
            // FNSTENV 32-bit, then FLDENV of it, FNSAVE of the result happens in wrap().
            0 => asm(|a| {
                a.fnstenv(ptr(rdi + RES as i32)).unwrap();
                a.fldenv(ptr(rdi + RES as i32)).unwrap();
            }),
            // 16-bit FNSTENV / FLDENV (66 prefix).
            1 => {
                // o16 fnstenv [rdi+RES]; o16 fldenv [rdi+RES]
                vec![0x66, 0xD9, 0xB7, 0x00, 0x01, 0, 0, 0x66, 0xD9, 0xA7, 0x00, 0x01, 0, 0]
            }
            // 16-bit FNSAVE then FRSTOR.
            2 => vec![0x66, 0xDD, 0xB7, 0x00, 0x05, 0, 0, 0x66, 0xDD, 0xA7, 0x00, 0x05, 0, 0],
            // FNSAVE + FRSTOR 32-bit through another buffer.
            3 => asm(|a| {
                a.fnsave(ptr(rdi + 0x500)).unwrap();
                a.fld1().unwrap();
                a.frstor(ptr(rdi + 0x500)).unwrap();
            }),
            // FXSAVE then FXRSTOR.
            4 => asm(|a| {
                a.fxsave(ptr(rdi + FX as i32)).unwrap();
                a.fldpi().unwrap();
                a.fxrstor(ptr(rdi + FX as i32)).unwrap();
            }),
            _ => asm(|a| {
                a.fxsave64(ptr(rdi + FX as i32)).unwrap();
                a.fninit().unwrap();
                a.fxrstor64(ptr(rdi + FX as i32)).unwrap();
            }),
        };
        let (mut h, mut e) = both(&mut t, &body, &m);
        // Mask the pointer fields (FIP/FCS/FOP/FDP/FDS) of the stored images, which hold host
        // addresses (and on AMD are saved only when an exception is pending).
        for mm in [&mut h, &mut e] {
            match k % 6 {
                0 => mm.0[RES + 12..RES + 28].fill(0),
                1 => mm.0[RES + 6..RES + 14].fill(0),
                2 => mm.0[0x500 + 6..0x500 + 14].fill(0),
                3 => mm.0[0x500 + 12..0x500 + 28].fill(0),
                _ => {
                    mm.0[FX + 6..FX + 24].fill(0);
                    mm.0[FX + 28..FX + 32].fill(0); // MXCSR_MASK: host dependent
                    mm.0[FX + 416..FX + 512].fill(0);
                    // XMM registers are the host's own; only compare the x87 part.
                    mm.0[FX + 160..FX + 416].fill(0);
                }
            }
        }
        f.check(|| format!("case {k}"), &h, &e);
    }
    f.finish();
}

/// FXSAVE layout including MXCSR and XMM registers, against the host's FXSAVE of the same
/// state (loaded by FXRSTOR from a prepared image).
#[test]
fn x87_fxsave_layout() {
    let mut t = TestCpu::new();
    let mut r = Rng(600);
    let mut f = Failures::new();
    for k in 0..100 {
        let mut m = Mem::new();
        m.put(IN, &random_state(&mut r));
        // Prepare an FXSAVE image: our own FXSAVE of the random state, plus MXCSR and XMM.
        let mut img = [0u8; 512];
        let mut xm = Mem::new();
        xm.put(IN, &random_state(&mut r));
        let code = wrap(&asm(|a| a.fxsave(ptr(rdi + FX as i32)).unwrap()));
        heron_run(&mut t, &code, &mut xm);
        img.copy_from_slice(&xm.0[FX..FX + 512]);
        let mxcsr = (r.next() as u32 & super::MXCSR_MASK) | 0x1F80;
        img[24..28].copy_from_slice(&mxcsr.to_le_bytes());
        for b in img[160..416].iter_mut() {
            *b = r.next() as u8;
        }
        m.put(FX2, &img);
        let w = k % 2 == 1;
        let body = asm(|a| {
            if w {
                a.fxrstor64(ptr(rdi + FX2 as i32)).unwrap();
                a.fxsave64(ptr(rdi + FX as i32)).unwrap();
            } else {
                a.fxrstor(ptr(rdi + FX2 as i32)).unwrap();
                a.fxsave(ptr(rdi + FX as i32)).unwrap();
            }
        });
        let (mut h, mut e) = both(&mut t, &body, &m);
        for mm in [&mut h, &mut e] {
            mm.0[FX + 6..FX + 24].fill(0);
            mm.0[FX + 28..FX + 32].fill(0);
            mm.0[FX + 416..FX + 512].fill(0);
        }
        f.check(|| format!("case {k} w={w}"), &h, &e);
    }
    f.finish();
}

// ---- transcendentals (approximate: compared within a tolerance) ----

fn rel_err(a: F80, b: F80) -> f64 {
    if a == b {
        return 0.0;
    }
    if a.is_nan() && b.is_nan() {
        return 0.0;
    }
    let (x, y) = (sf::to_f64(a), sf::to_f64(b));
    if x == y {
        return 0.0;
    }
    ((x - y) / x.abs().max(y.abs()).max(1e-300)).abs()
}

#[test]
fn x87_transcendental() {
    let mut t = TestCpu::new();
    let mut r = Rng(700);
    let ops: Vec<(&str, Emit, u8)> = vec![
        ("fsin", |a| a.fsin().unwrap(), 0),
        ("fcos", |a| a.fcos().unwrap(), 0),
        ("fsincos", |a| a.fsincos().unwrap(), 0),
        ("fptan", |a| a.fptan().unwrap(), 0),
        ("f2xm1", |a| a.f2xm1().unwrap(), 1),
        ("fyl2x", |a| a.fyl2x().unwrap(), 2),
        ("fyl2xp1", |a| a.fyl2xp1().unwrap(), 3),
        ("fpatan", |a| a.fpatan().unwrap(), 4),
    ];
    let mut bad = Vec::new();
    let mut total = 0;
    for (name, emit, dom) in &ops {
        for k in 0..600 {
            let s: u16 = if r.next() & 1 != 0 { 0x8000 } else { 0 };
            let rnd = J | r.next();
            let x = if k % 10 == 0 {
                gen_f80(&mut r)
            } else {
                match dom {
                    // |x| up to 2^20 for the trig functions.
                    0 => F80 { se: s | (0x3FFF - 30 + r.below(50)) as u16, sig: rnd },
                    1 => F80 { se: s | (0x3FFF - 70 + r.below(70)) as u16, sig: rnd },
                    2 => F80 { se: (0x3FFF - 200 + r.below(400)) as u16, sig: rnd },
                    3 => F80 { se: s | (0x3FFF - 70 + r.below(69)) as u16, sig: rnd },
                    _ => F80 { se: s | (0x3FFF - 100 + r.below(200)) as u16, sig: rnd },
                }
            };
            let y = if k % 10 == 1 { gen_f80(&mut r) } else { F80 { se: s ^ 0x8000 | (0x3FFF - 100 + r.below(200)) as u16, sig: J | r.next() } };
            let mut m = Mem::new();
            m.put(IN, &image(fcw_of(0, 3), 0, 4, &[x, y]));
            // Outside the documented domains the result is undefined and differs between
            // vendors (AMD returns the operand): not compared.
            let undefined = match *name {
                "f2xm1" => matches!(x.class(), Class::Normal | Class::Denormal) && x.abs().se >= 0x3FFF && x.abs() != F80::ONE,
                "fyl2xp1" => x.sign() && matches!(x.class(), Class::Normal) && x.bexp() >= 0x3FFF,
                _ => false,
            };
            if undefined {
                continue;
            }
            let (h, e) = both(&mut t, &asm(*emit), &m);
            total += 1;
            let mut err = 0.0f64;
            for st in 0..2 {
                err = err.max(rel_err(h.out_st(st), e.out_st(st)));
            }
            // The status word must match except C1 (round-up of a different approximation).
            let fsw_ok = (h.out_fsw() ^ e.out_fsw()) & !0x0200 == 0;
            let tags_ok = h.out_ftw() == e.out_ftw();
            let class_ok = (0..2).all(|k| h.out_st(k).class() == e.out_st(k).class() || (rel_err(h.out_st(k), e.out_st(k)) < 1e-14));
            if err > 1e-13 || !fsw_ok || !tags_ok || !class_ok {
                bad.push(format!(
                    "{name} x={} y={}: host {} {} fsw {:04x}, heron {} {} fsw {:04x} (rel err {err:e})",
                    fmt_f80(x),
                    fmt_f80(y),
                    fmt_f80(h.out_st(0)),
                    fmt_f80(h.out_st(1)),
                    h.out_fsw(),
                    fmt_f80(e.out_st(0)),
                    fmt_f80(e.out_st(1)),
                    e.out_fsw()
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{} of {total} differ:\n{}", bad.len(), bad[..bad.len().min(30)].join("\n"));
}

// ---- Heron-only behaviour (exceptions the host cannot take in a unit test) ----

fn run_heron(t: &mut TestCpu, code: &[u8]) -> Option<u8> {
    let mut m = Mem::new();
    heron_run(t, code, &mut m)
}

#[test]
fn x87_device_not_available() {
    use crate::state::cr;
    let fld1 = asm(|a| a.fld1().unwrap());
    let fwait = asm(|a| a.wait().unwrap());
    let fxsave = asm(|a| a.fxsave(ptr(rdi + FX as i32)).unwrap());
    for (cr0_set, code, expect) in [
        (cr::CR0_TS, &fld1, Some(vec::NM)),
        (cr::CR0_EM, &fld1, Some(vec::NM)),
        (cr::CR0_EM, &fwait, None),
        (cr::CR0_TS, &fwait, Some(vec::NM)),
        (cr::CR0_TS, &fxsave, Some(vec::NM)),
        (cr::CR0_EM, &fxsave, Some(vec::NM)),
    ] {
        let mut t = TestCpu::new();
        t.cpu.s.cr0 |= cr0_set;
        assert_eq!(run_heron(&mut t, code), expect, "cr0 {cr0_set:#x} code {code:02x?}");
    }
    // WAIT with TS but not MP does not fault.
    let mut t = TestCpu::new();
    t.cpu.s.cr0 = (t.cpu.s.cr0 | cr::CR0_TS) & !cr::CR0_MP;
    assert_eq!(run_heron(&mut t, &fwait), None);
}

#[test]
fn x87_pending_exception_mf() {
    use crate::state::cr;
    // Unmask ZE, divide by zero: the flag is set and ES/B pend; the next waiting instruction
    // raises #MF, the FN* forms do not.
    let setup = |a: &mut CodeAssembler| {
        a.fninit().unwrap();
        a.mov(word_ptr(rdi + OPS as i32), 0x037Bu32).unwrap();
        a.fldcw(word_ptr(rdi + OPS as i32)).unwrap();
        a.fldz().unwrap();
        a.fld1().unwrap();
        a.fdiv_2(st0, st1).unwrap();
    };
    let mut t = TestCpu::new();
    let code = asm(|a| {
        setup(a);
        a.fnstsw(ax).unwrap();
        a.fnstenv(ptr(rdi + RES as i32)).unwrap();
        a.fnclex().unwrap();
        a.fld1().unwrap();
    });
    assert_eq!(run_heron(&mut t, &code), None);
    assert_eq!(t.cpu.s.regs[0] as u16 & 0x80FF, 0x8084, "ZE, ES and B set");
    assert_eq!(t.cpu.s.x87.top, 5);
    // The divide left ST(0) = 1 (unmasked ZE: destination unchanged).
    let code = asm(|a| {
        setup(a);
        a.wait().unwrap();
    });
    let mut t = TestCpu::new();
    assert_eq!(run_heron(&mut t, &code), Some(vec::MF));
    let fwait_ip = t.cpu.s.rip; // inside the handler: check the faulting instruction instead
    let _ = fwait_ip;
    // A waiting FP instruction also faults; FXSAVE does not.
    for (body, expect) in [
        (asm(|a| a.fld1().unwrap()), Some(vec::MF)),
        (asm(|a| a.fstsw(ax).unwrap()), Some(vec::MF)),
        (asm(|a| a.fxsave(ptr(rdi + FX as i32)).unwrap()), None),
        (asm(|a| a.fnsave(ptr(rdi + FX as i32)).unwrap()), None),
    ] {
        let mut t = TestCpu::new();
        let mut c = asm(setup);
        c.extend_from_slice(&body);
        assert_eq!(run_heron(&mut t, &c), expect, "{body:02x?}");
    }
    // With CR0.NE = 0 the exception stays pending and execution continues.
    let mut t = TestCpu::new();
    t.cpu.s.cr0 &= !cr::CR0_NE;
    let mut c = asm(setup);
    c.extend(asm(|a| a.fld1().unwrap()));
    assert_eq!(run_heron(&mut t, &c), None);
    assert_ne!(t.cpu.s.x87.fsw & 0x80, 0);
}

#[test]
fn x87_fisttp_ud_and_fxsave_faults() {
    let mut t = TestCpu::new();
    assert_eq!(run_heron(&mut t, &[0xDD, 0x0F]), Some(vec::UD)); // fisttp qword [rdi]
    let mut t = TestCpu::new();
    assert_eq!(run_heron(&mut t, &asm(|a| a.fxsave(ptr(rdi + 8)).unwrap())), Some(vec::GP));
    let mut t = TestCpu::new();
    assert_eq!(run_heron(&mut t, &asm(|a| a.fxrstor(ptr(rdi + 8)).unwrap())), Some(vec::GP));
    // FXRSTOR with a reserved MXCSR bit (bit 16 is outside MXCSR_MASK; DAZ is supported).
    let mut t = TestCpu::new();
    let code = asm(|a| {
        a.fxsave(ptr(rdi + FX as i32)).unwrap();
        a.or(dword_ptr(rdi + FX as i32 + 24), 0x1_0000).unwrap();
        a.fxrstor(ptr(rdi + FX as i32)).unwrap();
    });
    assert_eq!(run_heron(&mut t, &code), Some(vec::GP));
    let mut t = TestCpu::new();
    let code = asm(|a| {
        a.fxsave(ptr(rdi + FX as i32)).unwrap();
        a.fxrstor(ptr(rdi + FX as i32)).unwrap();
    });
    assert_eq!(run_heron(&mut t, &code), None);
    let mut b = [0u8; 4];
    t.ram.read_bytes(DATA + FX as u64 + 28, &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b), super::MXCSR_MASK);
}

#[test]
fn x87_pointers() {
    // FOP/FIP/FDP of the last non-control instruction, as stored by FNSTENV and FXSAVE64.
    let mut t = TestCpu::new();
    let code = asm(|a| {
        a.fninit().unwrap();
        a.fld(qword_ptr(rdi + 0x48)).unwrap();
        a.fadd_2(st0, st0).unwrap(); // at offset 2+3 = 5: D8 C0
        a.fnstenv(ptr(rdi + RES as i32)).unwrap();
        a.fldcw(word_ptr(rdi + RES as i32)).unwrap(); // control: pointers unchanged
        a.fxsave64(ptr(rdi + FX as i32)).unwrap();
    });
    assert_eq!(run_heron(&mut t, &code), None);
    let mut env = [0u8; 28];
    t.ram.read_bytes(DATA + RES as u64, &mut env).unwrap();
    let fip = u32::from_le_bytes(env[12..16].try_into().unwrap()) as u64;
    let fop = u16::from_le_bytes([env[18], env[19]]);
    assert_eq!(fip, crate::testutil::CODE + 5);
    assert_eq!(fop, 0x0C0);
    let mut fx = [0u8; 32];
    t.ram.read_bytes(DATA + FX as u64, &mut fx).unwrap();
    assert_eq!(u16::from_le_bytes([fx[6], fx[7]]), 0x0C0);
    assert_eq!(u64::from_le_bytes(fx[8..16].try_into().unwrap()), crate::testutil::CODE + 5);
    assert_eq!(u64::from_le_bytes(fx[16..24].try_into().unwrap()), DATA + 0x48);
}

/// The soft-float core against rustc_apfloat's X87DoubleExtended (64-bit precision, the
/// four rounding modes) as a second, host-independent oracle.
#[test]
fn x87_softfloat_vs_apfloat() {
    use rustc_apfloat::ieee::X87DoubleExtended as X;
    use rustc_apfloat::{Float, Round};
    let mut r = Rng(800);
    let to_x = |v: F80| X::from_bits(((v.se as u128) << 64) | v.sig as u128);
    for _ in 0..20000 {
        let a = F80 { se: (0x3FFF - 100 + r.below(200)) as u16 | (r.below(2) as u16) << 15, sig: J | r.next() };
        let b = F80 { se: (0x3FFF - 100 + r.below(200)) as u16 | (r.below(2) as u16) << 15, sig: J | r.next() };
        for (rc, round) in [(0u16, Round::NearestTiesToEven), (1, Round::TowardNegative), (2, Round::TowardPositive), (3, Round::TowardZero)] {
            let fcw = fcw_of(rc, 3);
            for op in [super::Bin::Add, super::Bin::Sub, super::Bin::Mul, super::Bin::Div] {
                let ours = super::binop(op, a, b, fcw, false).v.unwrap();
                let (xa, xb) = (to_x(a), to_x(b));
                let theirs = match op {
                    super::Bin::Add => xa.add_r(xb, round),
                    super::Bin::Sub => xa.sub_r(xb, round),
                    super::Bin::Mul => xa.mul_r(xb, round),
                    super::Bin::Div => xa.div_r(xb, round),
                }
                .value
                .to_bits();
                let ours_bits = ((ours.se as u128) << 64) | ours.sig as u128;
                assert_eq!(ours_bits, theirs, "{op:?} rc={rc} {} {}", fmt_f80(a), fmt_f80(b));
            }
        }
    }
}

/// Real-mode FSTENV formats (SDM Vol. 1 Figures 8-10 and 8-12), run in real mode.
#[test]
fn x87_real_mode_env() {
    use crate::state::{cr, sreg, Segment};
    let mut t = TestCpu::new();
    {
        let s = &mut *t.cpu.s;
        s.cr0 = cr::CR0_ET | cr::CR0_NE;
        s.efer = 0;
        s.cr4 = cr::CR4_OSFXSR;
        for r in 0..6 {
            s.seg[r] = Segment::real(0);
        }
        s.seg[sreg::CS] = Segment::real(0x0A00);
        s.rip = 0;
        s.regs[4] = 0x9000;
    }
    let code = [
        0xDB, 0xE3, // fninit
        0xD9, 0xE8, // fld1                  (CS:0002)
        0xD9, 0x06, 0x00, 0x01, // fld dword [0x100]  (CS:0004)
        0xD9, 0x36, 0x00, 0x02, // fnstenv [0x200]  (16-bit)
        0x66, 0xD9, 0x36, 0x00, 0x03, // o32 fnstenv [0x300]
        0x66, 0xD9, 0x26, 0x00, 0x03, // o32 fldenv [0x300]
        0xD9, 0x36, 0x40, 0x02, // fnstenv [0x240]
        0xF4,
    ];
    t.ram.write_bytes(0xA000, &code).unwrap();
    t.cpu.flush_code();
    let until = t.cpu.s.icount + 100;
    t.cpu.run(&mut crate::testutil::NullBus, until);
    assert_eq!(t.cpu.s.rip, code.len() as u64, "ran to the HLT");
    let rd = |t: &TestCpu, a: u64, n: usize| {
        let mut b = vec![0u8; n];
        t.ram.read_bytes(a, &mut b).unwrap();
        b
    };
    let w16 = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let w32 = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let e16 = rd(&t, 0x200, 14);
    assert_eq!(w16(&e16, 0), 0x037F);
    assert_eq!(w16(&e16, 2) >> 11 & 7, 6, "TOP");
    assert_eq!(w16(&e16, 4), 0x0FFF | (1 << 12) | (0 << 14), "tags: R6 valid... R7 valid");
    assert_eq!(w16(&e16, 6), 0xA004, "FIP[15:0] (linear)");
    assert_eq!(w16(&e16, 8), 0x106, "FIP[19:16] and FOP");
    assert_eq!(w16(&e16, 10), 0x0100, "FDP[15:0]");
    assert_eq!(w16(&e16, 12), 0);
    let e32 = rd(&t, 0x300, 28);
    assert_eq!(w32(&e32, 12) & 0xFFFF, 0xA004);
    assert_eq!(w32(&e32, 16), 0x106);
    assert_eq!(w32(&e32, 20) & 0xFFFF, 0x100);
    assert_eq!(w32(&e32, 24), 0);
    // FLDENV of the 32-bit image then FNSTENV (16-bit) gives the same pointers back.
    let again = rd(&t, 0x240, 14);
    assert_eq!(again, e16);
}

//! x87 FPU instructions (Intel SDM Vol. 1 ch. 8, Vol. 2) and FXSAVE/FXRSTOR.
//!
//! Arithmetic is done by the soft-float core in `x87/sf.rs`: every basic operation is
//! computed exactly (with a sticky bit) and rounded once, honouring FCW.RC and FCW.PC, so
//! FADD/FSUB/FMUL/FDIV/FSQRT, FPREM/FPREM1, FRNDINT, FSCALE, FXTRACT, conversions and
//! compares match hardware bit for bit, including the OE/UE/PE/DE/ZE/IE flags, C1 as the
//! round-up bit, masked responses and the bias-adjusted (±24576) results of unmasked
//! overflow/underflow. rustc_apfloat's `X87DoubleExtended` cannot do precision control,
//! square roots, pseudo-denormals or bias-adjusted results, so it is used only as a second
//! oracle in the tests.
//!
//! Where the SDM leaves behaviour open, Heron follows the processor the tests were checked
//! against (an AMD EPYC host): which of DE/IE/ZE win when several apply, C1 of stack faults,
//! unordered condition codes even for unmasked invalid compares, the FPREM partial-remainder
//! step (n = 32 + d mod 32), FPREM/FPREM1 condition codes when there is no quotient (C2 and C1
//! cleared, C0/C3 kept), C1 cleared when an unmasked exception suppresses FXTRACT's result,
//! out-of-domain F2XM1/FYL2XP1 returning the operand.
//!
//! Approximations (documented deviations from hardware):
//! - Transcendentals (F2XM1, FYL2X, FYL2XP1, FPTAN, FPATAN, FSIN, FCOS, FSINCOS) use the
//!   host's f64 libm with a first-order correction for the low bits of the argument: about
//!   double precision, not the last bit of the 64-bit significand (see `x87/trans.rs`).
//!   Trigonometric arguments are reduced exactly with the 66-bit π the x87 uses, so large
//!   arguments give the hardware's results; C1 after these reflects only the final rounding.
//! - FIP is the offset of the instruction in CS (the linear RIP in 64-bit mode); FCS and
//!   FDS are the CS and DS selectors current when the environment is stored, not those of
//!   the last instruction. FDP is the effective address of the last memory operand.
//!   Real-mode FSTENV/FSAVE images convert to and from linear pointers with the current CS
//!   and DS bases. FOP is read back from the instruction bytes.
//! - An unmasked pending exception raises #MF at the next waiting x87 instruction when
//!   CR0.NE = 1. With CR0.NE = 0 the exception just stays pending (ES/B set): the external
//!   FERR# → IRQ13 path is not modelled.

mod sf;
mod trans;
// The tests use the host's x87 as the oracle.
#[cfg(all(test, target_arch = "x86_64", target_os = "linux"))]
mod tests;

use core::cmp::Ordering;

use iced_x86::{Instruction, MemorySize, Mnemonic, OpKind, Register};

use crate::exec::Ctx;
use crate::state::{cr, rf, sreg};
use crate::{vec, Exception, Res};
use sf::{fl, Class, Exact, Rc, F80};

/// MXCSR bits FXRSTOR accepts: the same as LDMXCSR (DAZ supported).
pub const MXCSR_MASK: u32 = crate::sse::MXCSR_MASK;

/// Outcome of a computation for one destination register.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Out {
    /// Value to store; `None` when an unmasked pre-computation exception (IE, DE, ZE)
    /// suppresses the result (destination and TOP unchanged).
    v: Option<F80>,
    /// Exception flags to raise.
    flags: u16,
    /// New C1 (round-up bit).
    c1: bool,
}

impl Out {
    fn val(v: F80) -> Out {
        Out { v: Some(v), flags: 0, c1: false }
    }
    fn reg(r: sf::RegOut) -> Out {
        Out { v: Some(r.v), flags: r.flags, c1: r.c1 }
    }
    fn abort(flags: u16) -> Out {
        Out { v: None, flags, c1: false }
    }
    /// Invalid operation: the indefinite when masked.
    fn invalid(fcw: u16) -> Out {
        Out { v: if fcw & fl::IE != 0 { Some(F80::INDEFINITE) } else { None }, flags: fl::IE, c1: false }
    }
    /// A NaN result, with IE if an SNaN was involved.
    fn nan(v: F80, flags: u16, fcw: u16) -> Out {
        if flags & fl::IE != 0 && fcw & fl::IE == 0 {
            Out::abort(flags)
        } else {
            Out { v: Some(v), flags, c1: false }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
}

/// a OP b with x87 special cases, rounded with FCW.PC and FCW.RC.
fn binop(op: Bin, a: F80, b: F80, fcw: u16, de_extra: bool) -> Out {
    let de = match trans::screen2(a, b, fcw, de_extra) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let rc = Rc::from_fcw(fcw);
    let f = sf::ext_pc(fcw);
    let (ca, cb) = (a.class(), b.class());
    let invalid = match op {
        Bin::Add => ca == Class::Inf && cb == Class::Inf && a.sign() != b.sign(),
        Bin::Sub => ca == Class::Inf && cb == Class::Inf && a.sign() == b.sign(),
        Bin::Mul => (ca == Class::Inf && cb == Class::Zero) || (ca == Class::Zero && cb == Class::Inf),
        Bin::Div => (ca == Class::Inf && cb == Class::Inf) || (ca == Class::Zero && cb == Class::Zero),
    };
    if invalid {
        return Out::invalid(fcw);
    }
    if op == Bin::Div && cb == Class::Zero && ca != Class::Inf {
        // Division of a finite non-zero value by zero: ZE, and DE is not reported.
        if fcw & fl::ZE == 0 {
            return Out::abort(fl::ZE);
        }
        return Out { v: Some(F80::inf(a.sign() != b.sign())), flags: fl::ZE, c1: false };
    }
    if let Some(o) = trans::de_gate(de, fcw) {
        return o;
    }
    let mut o = match op {
        Bin::Add | Bin::Sub => {
            let b = if op == Bin::Sub { b.neg() } else { b };
            match (ca == Class::Inf, cb == Class::Inf) {
                (true, true) => {
                    if a.sign() == b.sign() {
                        Out::val(a)
                    } else {
                        Out::invalid(fcw)
                    }
                }
                (true, false) => Out::val(a),
                (false, true) => Out::val(b),
                _ => Out::reg(sf::round_reg(sf::add_exact(a, b, rc), f, rc, fcw)),
            }
        }
        Bin::Mul => {
            let s = a.sign() != b.sign();
            match (ca, cb) {
                (Class::Inf, Class::Zero) | (Class::Zero, Class::Inf) => Out::invalid(fcw),
                (Class::Inf, _) | (_, Class::Inf) => Out::val(F80::inf(s)),
                _ => Out::reg(sf::round_reg(sf::mul_exact(a, b), f, rc, fcw)),
            }
        }
        Bin::Div => {
            let s = a.sign() != b.sign();
            match (ca, cb) {
                (Class::Inf, Class::Inf) | (Class::Zero, Class::Zero) => Out::invalid(fcw),
                (Class::Inf, _) => Out::val(F80::inf(s)),
                (_, Class::Inf) | (Class::Zero, _) => Out::val(F80::zero(s)),
                (_, Class::Zero) => {
                    if fcw & fl::ZE == 0 {
                        return Out::abort(fl::ZE | de);
                    }
                    Out { v: Some(F80::inf(s)), flags: fl::ZE, c1: false }
                }
                _ => Out::reg(sf::round_reg(Exact::Val(sf::div(a.unpack(), b.unpack())), f, rc, fcw)),
            }
        }
    };
    o.flags |= de;
    o
}

/// Result of a comparison for the condition codes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rel {
    Gt,
    Lt,
    Eq,
    Un,
}

/// Compare for FCOM/FUCOM/FICOM/FTST/FCOMI: (relation, flags). The condition codes are
/// set even when the IE or DE raised is unmasked (an invalid compare reports unordered).
fn fcompare(a: F80, b: F80, quiet: bool, de_extra: bool) -> (Rel, u16) {
    let (ca, cb) = (a.class(), b.class());
    let nan = a.is_nan() || b.is_nan();
    let unsup = ca == Class::Unsupported || cb == Class::Unsupported;
    if unsup || nan {
        let ie = unsup || !quiet || a.is_snan() || b.is_snan();
        return (Rel::Un, if ie { fl::IE } else { 0 });
    }
    let de = if ca == Class::Denormal || cb == Class::Denormal || de_extra { fl::DE } else { 0 };
    let r = match sf::compare(a, b) {
        Ordering::Greater => Rel::Gt,
        Ordering::Less => Rel::Lt,
        Ordering::Equal => Rel::Eq,
    };
    (r, de)
}

/// Number of an ST(i) register operand.
fn st_num(r: Register) -> u8 {
    (r as u32 - Register::ST0 as u32) as u8
}

/// Is this an x87 instruction (or FXSAVE/FXRSTOR)?
fn is_x87(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        M::F2xm1 | M::Fabs | M::Fadd | M::Faddp | M::Fbld | M::Fbstp | M::Fchs | M::Fclex | M::Fnclex | M::Fcmovb
            | M::Fcmove | M::Fcmovbe | M::Fcmovu | M::Fcmovnb | M::Fcmovne | M::Fcmovnbe | M::Fcmovnu | M::Fcom
            | M::Fcomp | M::Fcompp | M::Fcomi | M::Fcomip | M::Fucomi | M::Fucomip | M::Fcos | M::Fdecstp | M::Fdiv
            | M::Fdivp | M::Fdivr | M::Fdivrp | M::Ffree | M::Ffreep | M::Fiadd | M::Ficom | M::Ficomp | M::Fidiv
            | M::Fidivr | M::Fild | M::Fimul | M::Fincstp | M::Finit | M::Fninit | M::Fist | M::Fistp | M::Fisttp
            | M::Fisub | M::Fisubr | M::Fld | M::Fld1 | M::Fldcw | M::Fldenv | M::Fldl2e | M::Fldl2t | M::Fldlg2
            | M::Fldln2 | M::Fldpi | M::Fldz | M::Fmul | M::Fmulp | M::Fnop | M::Fpatan | M::Fprem | M::Fprem1
            | M::Fptan | M::Frndint | M::Frstor | M::Fsave | M::Fnsave | M::Fscale | M::Fsin | M::Fsincos | M::Fsqrt
            | M::Fst | M::Fstcw | M::Fnstcw | M::Fstenv | M::Fnstenv | M::Fstp | M::Fstpnce | M::Fstsw | M::Fnstsw
            | M::Fsub | M::Fsubp | M::Fsubr | M::Fsubrp | M::Ftst | M::Fucom | M::Fucomp | M::Fucompp | M::Fxam
            | M::Fxch | M::Fxtract | M::Fyl2x | M::Fyl2xp1 | M::Wait | M::Fxsave | M::Fxsave64 | M::Fxrstor
            | M::Fxrstor64 | M::Feni | M::Fneni | M::Fdisi | M::Fndisi | M::Fsetpm | M::Fnsetpm | M::Frstpm
    )
}

/// Instructions that do not check for pending unmasked exceptions (the FN* forms).
fn no_wait(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        M::Fninit | M::Fnclex | M::Fnstcw | M::Fnstsw | M::Fnstenv | M::Fnsave | M::Fxsave | M::Fxsave64
            | M::Fxrstor | M::Fxrstor64 | M::Fneni | M::Fndisi | M::Fnsetpm
    )
}

/// Control instructions, which leave FOP/FIP/FDP alone (SDM Vol. 1 §8.1.8).
fn is_control(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        M::Finit | M::Fninit | M::Fclex | M::Fnclex | M::Fldcw | M::Fstcw | M::Fnstcw | M::Fstsw | M::Fnstsw
            | M::Fstenv | M::Fnstenv | M::Fldenv | M::Fsave | M::Fnsave | M::Frstor | M::Wait | M::Fxsave
            | M::Fxsave64 | M::Fxrstor | M::Fxrstor64 | M::Feni | M::Fneni | M::Fdisi | M::Fndisi | M::Fsetpm
            | M::Fnsetpm
    )
}

impl Ctx<'_> {
    /// Floating-point and SIMD dispatch: SSE/MMX, then x87; anything else is #UD.
    pub fn exec_fp(&mut self, i: &Instruction) -> Res<()> {
        if let Some(()) = self.exec_sse(i)? {
            return Ok(());
        }
        if let Some(()) = self.exec_x87(i)? {
            return Ok(());
        }
        Err(Exception::ud())
    }

    // ---- register stack ----

    fn st_phys(&self, n: u8) -> usize {
        ((self.s.x87.top.wrapping_add(n)) & 7) as usize
    }

    fn st_empty(&self, n: u8) -> bool {
        let p = self.st_phys(n);
        (self.s.x87.ftw >> (2 * p)) & 3 == 3
    }

    fn st(&self, n: u8) -> F80 {
        F80::from_bytes(&self.s.x87.regs[self.st_phys(n)])
    }

    fn set_tag(&mut self, p: usize, t: u16) {
        let x = &mut self.s.x87;
        x.ftw = (x.ftw & !(3 << (2 * p))) | (t << (2 * p));
    }

    fn set_st(&mut self, n: u8, v: F80) {
        let p = self.st_phys(n);
        self.s.x87.regs[p] = v.to_bytes();
        self.set_tag(p, v.tag());
    }

    fn fpush(&mut self, v: F80) {
        self.s.x87.top = self.s.x87.top.wrapping_sub(1) & 7;
        self.set_st(0, v);
    }

    fn fpop(&mut self) {
        let p = self.st_phys(0);
        self.set_tag(p, 3);
        self.s.x87.top = (self.s.x87.top + 1) & 7;
    }

    // ---- status word ----

    /// Recompute ES and B from the exception flags and masks.
    fn update_es(&mut self) {
        let x = &mut self.s.x87;
        if x.fsw & !x.fcw & fl::EXC != 0 {
            x.fsw |= fl::ES | fl::B;
        } else {
            x.fsw &= !(fl::ES | fl::B);
        }
    }

    fn fraise(&mut self, flags: u16) {
        self.s.x87.fsw |= flags;
        self.update_es();
    }

    fn set_c1(&mut self, c1: bool) {
        self.s.x87.fsw = (self.s.x87.fsw & !fl::C1) | if c1 { fl::C1 } else { 0 };
    }

    fn set_cc(&mut self, c3: bool, c2: bool, c1: bool, c0: bool) {
        let x = &mut self.s.x87;
        x.fsw &= !(fl::C0 | fl::C1 | fl::C2 | fl::C3);
        x.fsw |= if c0 { fl::C0 } else { 0 } | if c1 { fl::C1 } else { 0 } | if c2 { fl::C2 } else { 0 } | if c3 { fl::C3 } else { 0 };
    }

    fn fcw(&self) -> u16 {
        self.s.x87.fcw
    }

    /// The status word with TOP.
    fn fsw_full(&self) -> u16 {
        (self.s.x87.fsw & !0x3800) | ((self.s.x87.top as u16 & 7) << 11)
    }

    /// Stack underflow (#IS, C1 = 0). True when masked (the caller stores the indefinite).
    fn underflow(&mut self) -> bool {
        self.fraise(fl::IE | fl::SF);
        self.set_c1(false);
        self.fcw() & fl::IE != 0
    }

    /// Stack overflow (#IS, C1 = 1). True when masked.
    fn overflow(&mut self) -> bool {
        self.fraise(fl::IE | fl::SF);
        self.set_c1(true);
        self.fcw() & fl::IE != 0
    }

    /// Is the register a push would use already in use?
    fn push_overflows(&self) -> bool {
        !self.st_empty(7)
    }

    /// Store an outcome into ST(dst), popping afterwards if asked.
    fn commit(&mut self, dst: u8, o: Out, pop: bool) {
        self.fraise(o.flags);
        self.set_c1(o.c1);
        if let Some(v) = o.v {
            self.set_st(dst, v);
            if pop {
                self.fpop();
            }
        }
    }

    /// Push an outcome (the caller has checked for overflow).
    fn commit_push(&mut self, o: Out) {
        self.fraise(o.flags);
        self.set_c1(o.c1);
        if let Some(v) = o.v {
            self.fpush(v);
        }
    }

    // ---- memory helpers ----

    fn la_add(&self, la: u64, off: u64) -> u64 {
        if self.s.efer & cr::EFER_LMA != 0 {
            la.wrapping_add(off)
        } else {
            la.wrapping_add(off) & 0xFFFF_FFFF
        }
    }

    fn read_buf(&mut self, la: u64, buf: &mut [u8]) -> Res<()> {
        let mut k = 0;
        while k < buf.len() {
            let n = chunk(buf.len() - k);
            let v = self.read_lin(self.la_add(la, k as u64), n as u32)?;
            buf[k..k + n].copy_from_slice(&v.to_le_bytes()[..n]);
            k += n;
        }
        Ok(())
    }

    /// Write a buffer after checking the whole destination is writable.
    fn write_buf(&mut self, la: u64, buf: &[u8]) -> Res<()> {
        self.probe_write(la, buf.len() as u32)?;
        let mut k = 0;
        while k < buf.len() {
            let n = chunk(buf.len() - k);
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(&buf[k..k + n]);
            self.write_lin(self.la_add(la, k as u64), n as u32, u64::from_le_bytes(b))?;
            k += n;
        }
        Ok(())
    }

    fn read_f80(&mut self, la: u64) -> Res<F80> {
        let mut b = [0u8; 10];
        self.read_buf(la, &mut b)?;
        Ok(F80::from_bytes(&b))
    }

    /// Read a memory source operand as extended: (value, source was a denormal m32/m64).
    fn read_mem_operand(&mut self, i: &Instruction) -> Res<(F80, bool)> {
        let size = i.memory_size().size() as u32;
        let la = self.mem_lin(i, size, false)?;
        Ok(match i.memory_size() {
            MemorySize::Float32 => sf::from_ieee(self.read_lin(la, 4)?, sf::SINGLE),
            MemorySize::Float64 => sf::from_ieee(self.read_lin(la, 8)?, sf::DOUBLE),
            MemorySize::Float80 => (self.read_f80(la)?, false),
            MemorySize::Int16 => (sf::from_i64(self.read_lin(la, 2)? as u16 as i16 as i64), false),
            MemorySize::Int32 => (sf::from_i64(self.read_lin(la, 4)? as u32 as i32 as i64), false),
            MemorySize::Int64 => (sf::from_i64(self.read_lin(la, 8)? as i64), false),
            MemorySize::Bcd => {
                let mut b = [0u8; 10];
                self.read_buf(la, &mut b)?;
                (bcd_to_f80(&b), false)
            }
            _ => return Err(Exception::ud()),
        })
    }

    /// FOP: low 3 bits of the escape opcode and the ModR/M byte, read back from the
    /// instruction bytes.
    fn x87_fop(&mut self, i: &Instruction) -> u16 {
        let base = if self.bits == 64 { 0 } else { self.s.seg[sreg::CS].base };
        let start = self.la_add(base, i.ip());
        for k in 0..i.len().saturating_sub(1) as u64 {
            let Ok(b) = self.read_lin(self.la_add(start, k), 1) else { return 0 };
            if (0xD8..=0xDF).contains(&b) {
                let Ok(m) = self.read_lin(self.la_add(start, k + 1), 1) else { return 0 };
                return (((b & 7) << 8) | m) as u16;
            }
        }
        0
    }

    // ---- the dispatcher ----

    /// Execute an x87 instruction; `Ok(None)` if `i` is not one.
    pub fn exec_x87(&mut self, i: &Instruction) -> Res<Option<()>> {
        use Mnemonic as M;
        let m = i.mnemonic();
        if !is_x87(m) {
            return Ok(None);
        }
        // FISTTP is SSE3, which is not advertised; FRSTPM is 287XL only.
        if matches!(m, M::Fisttp | M::Frstpm) {
            return Err(Exception::ud());
        }
        let cr0 = self.s.cr0;
        if m == M::Wait {
            if cr0 & (cr::CR0_TS | cr::CR0_MP) == cr::CR0_TS | cr::CR0_MP {
                return Err(Exception::new(vec::NM));
            }
        } else if cr0 & (cr::CR0_EM | cr::CR0_TS) != 0 {
            return Err(Exception::new(vec::NM));
        }
        if !no_wait(m) && self.s.x87.fsw & fl::ES != 0 && cr0 & cr::CR0_NE != 0 {
            return Err(Exception::new(vec::MF));
        }
        if !is_control(m) {
            self.s.x87.fop = self.x87_fop(i) & 0x7FF;
            self.s.x87.fip = i.ip();
            if i.op_count() > 0 && i.op0_kind() == OpKind::Memory {
                self.s.x87.fdp = self.ea(i);
            }
        }
        self.x87_op(i, m)?;
        Ok(Some(()))
    }

    fn x87_op(&mut self, i: &Instruction, m: Mnemonic) -> Res<()> {
        use Mnemonic as M;
        let fcw = self.fcw();
        let mem = i.op_count() > 0 && i.op0_kind() == OpKind::Memory;
        match m {
            M::Wait | M::Fnop | M::Feni | M::Fneni | M::Fdisi | M::Fndisi | M::Fsetpm | M::Fnsetpm => {}
            M::Fadd | M::Fiadd => self.arith(i, Bin::Add, false, false)?,
            M::Faddp => self.arith(i, Bin::Add, false, true)?,
            M::Fsub | M::Fisub => self.arith(i, Bin::Sub, false, false)?,
            M::Fsubp => self.arith(i, Bin::Sub, false, true)?,
            M::Fsubr | M::Fisubr => self.arith(i, Bin::Sub, true, false)?,
            M::Fsubrp => self.arith(i, Bin::Sub, true, true)?,
            M::Fmul | M::Fimul => self.arith(i, Bin::Mul, false, false)?,
            M::Fmulp => self.arith(i, Bin::Mul, false, true)?,
            M::Fdiv | M::Fidiv => self.arith(i, Bin::Div, false, false)?,
            M::Fdivp => self.arith(i, Bin::Div, false, true)?,
            M::Fdivr | M::Fidivr => self.arith(i, Bin::Div, true, false)?,
            M::Fdivrp => self.arith(i, Bin::Div, true, true)?,
            M::Fld | M::Fild | M::Fbld => {
                let (src, de, src_empty) = if mem {
                    let (v, de) = self.read_mem_operand(i)?;
                    (v, de, false)
                } else {
                    let n = st_num(i.op0_register());
                    (self.st(n), false, self.st_empty(n))
                };
                if src_empty {
                    if self.underflow() {
                        self.fpush(F80::INDEFINITE);
                    }
                    return Ok(());
                }
                if self.push_overflows() {
                    if self.overflow() {
                        self.fpush(F80::INDEFINITE);
                    }
                    return Ok(());
                }
                let converted = mem && matches!(i.memory_size(), MemorySize::Float32 | MemorySize::Float64);
                let o = if converted {
                    if src.is_snan() {
                        Out::nan(src.quiet(), fl::IE, fcw)
                    } else if de {
                        // Loading a denormal m32/m64 completes even with DE unmasked.
                        Out { v: Some(src), flags: fl::DE, c1: false }
                    } else {
                        Out::val(src)
                    }
                } else {
                    Out::val(src)
                };
                self.commit_push(o);
            }
            M::Fld1 | M::Fldz | M::Fldpi | M::Fldl2e | M::Fldl2t | M::Fldlg2 | M::Fldln2 => {
                let rc = Rc::from_fcw(fcw);
                let down = matches!(rc, Rc::Down | Rc::Zero);
                // 66-bit internal constants rounded by RC (SDM Vol. 1 §8.3.8).
                let v = match m {
                    M::Fld1 => F80::ONE,
                    M::Fldz => F80::ZERO,
                    M::Fldpi => F80 { se: 0x4000, sig: 0xC90F_DAA2_2168_C235 - down as u64 },
                    M::Fldl2e => F80 { se: 0x3FFF, sig: 0xB8AA_3B29_5C17_F0BC - down as u64 },
                    M::Fldl2t => F80 { se: 0x4000, sig: 0xD49A_784B_CD1B_8AFE + (rc == Rc::Up) as u64 },
                    M::Fldlg2 => F80 { se: 0x3FFD, sig: 0x9A20_9A84_FBCF_F799 - down as u64 },
                    _ => F80 { se: 0x3FFE, sig: 0xB172_17F7_D1CF_79AC - down as u64 },
                };
                if self.push_overflows() {
                    if self.overflow() {
                        self.fpush(F80::INDEFINITE);
                    }
                    return Ok(());
                }
                self.commit_push(Out::val(v));
            }
            M::Fst | M::Fstp | M::Fstpnce => self.fst(i, m != M::Fst)?,
            M::Fist | M::Fistp => self.fist(i, m == M::Fistp)?,
            M::Fbstp => self.fbstp(i)?,
            M::Fxch => {
                let n = st_num(i.op1_register());
                let (e0, en) = (self.st_empty(0), self.st_empty(n));
                if e0 || en {
                    if !self.underflow() {
                        return Ok(());
                    }
                    if e0 {
                        self.set_st(0, F80::INDEFINITE);
                    }
                    if en {
                        self.set_st(n, F80::INDEFINITE);
                    }
                } else {
                    self.set_c1(false);
                }
                let (a, b) = (self.st(0), self.st(n));
                self.set_st(0, b);
                self.set_st(n, a);
            }
            M::Fcmovb | M::Fcmove | M::Fcmovbe | M::Fcmovu | M::Fcmovnb | M::Fcmovne | M::Fcmovnbe | M::Fcmovnu => {
                let n = st_num(i.op1_register());
                if self.st_empty(0) || self.st_empty(n) {
                    if self.underflow() {
                        self.set_st(0, F80::INDEFINITE);
                    }
                    return Ok(());
                }
                let f = self.s.status_flags();
                let cf = f & rf::CF != 0;
                let zf = f & rf::ZF != 0;
                let pf = f & rf::PF != 0;
                let c = match m {
                    M::Fcmovb => cf,
                    M::Fcmove => zf,
                    M::Fcmovbe => cf || zf,
                    M::Fcmovu => pf,
                    M::Fcmovnb => !cf,
                    M::Fcmovne => !zf,
                    M::Fcmovnbe => !cf && !zf,
                    _ => !pf,
                };
                // SDM Vol. 2A FCMOVcc: "C1 Set to 0 if stack underflow occurred": otherwise kept.
                if c {
                    let v = self.st(n);
                    self.set_st(0, v);
                }
            }
            M::Fchs | M::Fabs => {
                if self.st_empty(0) {
                    if self.underflow() {
                        self.set_st(0, F80::INDEFINITE);
                    }
                    return Ok(());
                }
                let v = self.st(0);
                self.set_c1(false);
                self.set_st(0, if m == M::Fchs { v.neg() } else { v.abs() });
            }
            M::Fcom | M::Fcomp | M::Fucom | M::Fucomp | M::Ficom | M::Ficomp | M::Fcomi | M::Fcomip | M::Fucomi
            | M::Fucomip => {
                let quiet = matches!(m, M::Fucom | M::Fucomp | M::Fucomi | M::Fucomip);
                let pop = matches!(m, M::Fcomp | M::Fucomp | M::Ficomp | M::Fcomip | M::Fucomip);
                let eflags = matches!(m, M::Fcomi | M::Fcomip | M::Fucomi | M::Fucomip);
                let (b, de, b_empty) = if mem {
                    let (v, de) = self.read_mem_operand(i)?;
                    (v, de, false)
                } else {
                    let n = if i.op_count() > 1 { st_num(i.op1_register()) } else { 1 };
                    (self.st(n), false, self.st_empty(n))
                };
                self.compare_op(b, de, b_empty, quiet, eflags, if pop { 1 } else { 0 });
            }
            M::Fcompp | M::Fucompp => {
                let b = self.st(1);
                let b_empty = self.st_empty(1);
                self.compare_op(b, false, b_empty, m == M::Fucompp, false, 2);
            }
            M::Ftst => {
                self.compare_op(F80::ZERO, false, false, false, false, 0);
            }
            M::Fxam => {
                let v = self.st(0);
                let (c3, c2, c0) = if self.st_empty(0) {
                    (true, false, true)
                } else {
                    match v.class() {
                        Class::Unsupported => (false, false, false),
                        Class::QNaN | Class::SNaN => (false, false, true),
                        Class::Normal => (false, true, false),
                        Class::Inf => (false, true, true),
                        Class::Zero => (true, false, false),
                        Class::Denormal => (true, true, false),
                    }
                };
                self.set_cc(c3, c2, v.sign(), c0);
            }
            M::Fsqrt | M::Frndint => {
                if self.st_empty(0) {
                    if self.underflow() {
                        self.set_st(0, F80::INDEFINITE);
                    }
                    return Ok(());
                }
                let a = self.st(0);
                let o = if m == M::Fsqrt { fsqrt(a, fcw) } else { frndint(a, fcw) };
                self.commit(0, o, false);
            }
            M::Fscale => {
                if self.st_empty(0) || self.st_empty(1) {
                    if self.underflow() {
                        self.set_st(0, F80::INDEFINITE);
                    }
                    return Ok(());
                }
                let o = fscale(self.st(0), self.st(1), fcw);
                self.commit(0, o, false);
            }
            M::Fxtract => self.fxtract(),
            M::Fprem | M::Fprem1 => self.fprem(m == M::Fprem1),
            M::Fsin | M::Fcos | M::Fsincos | M::Fptan => self.ftrig(m),
            M::F2xm1 => {
                if self.st_empty(0) {
                    if self.underflow() {
                        self.set_st(0, F80::INDEFINITE);
                    }
                    return Ok(());
                }
                let o = trans::f2xm1(self.st(0), fcw);
                self.commit(0, o, false);
            }
            M::Fyl2x | M::Fyl2xp1 | M::Fpatan => {
                if self.st_empty(0) || self.st_empty(1) {
                    if self.underflow() {
                        self.set_st(1, F80::INDEFINITE);
                        self.fpop();
                    }
                    return Ok(());
                }
                let (x, y) = (self.st(0), self.st(1));
                let o = match m {
                    M::Fyl2x => trans::fyl2x(x, y, fcw),
                    M::Fyl2xp1 => trans::fyl2xp1(x, y, fcw),
                    _ => trans::fpatan(x, y, fcw),
                };
                self.commit(1, o, false);
                if o.v.is_some() {
                    self.fpop();
                }
            }
            M::Ffree | M::Ffreep => {
                let p = self.st_phys(st_num(i.op0_register()));
                self.set_tag(p, 3);
                if m == M::Ffreep {
                    self.fpop();
                }
            }
            M::Fincstp => {
                self.s.x87.top = (self.s.x87.top + 1) & 7;
                self.set_c1(false);
            }
            M::Fdecstp => {
                self.s.x87.top = self.s.x87.top.wrapping_sub(1) & 7;
                self.set_c1(false);
            }
            M::Finit | M::Fninit => self.fninit(),
            M::Fclex | M::Fnclex => {
                self.s.x87.fsw &= !(fl::EXC | fl::SF | fl::ES | fl::B);
            }
            M::Fldcw => {
                let la = self.mem_lin(i, 2, false)?;
                let v = self.read_lin(la, 2)? as u16;
                self.s.x87.fcw = (v & 0x1F3F) | 0x40;
                self.update_es();
            }
            M::Fstcw | M::Fnstcw => {
                let la = self.mem_lin(i, 2, true)?;
                self.write_lin(la, 2, fcw as u64)?;
            }
            M::Fstsw | M::Fnstsw => {
                let v = self.fsw_full() as u64;
                if i.op0_kind() == OpKind::Register {
                    self.set_reg(Register::AX, v);
                } else {
                    let la = self.mem_lin(i, 2, true)?;
                    self.write_lin(la, 2, v)?;
                }
            }
            M::Fstenv | M::Fnstenv | M::Fsave | M::Fnsave => {
                let save = matches!(m, M::Fsave | M::Fnsave);
                let small = matches!(i.memory_size(), MemorySize::FpuEnv14 | MemorySize::FpuState94);
                let env_len = if small { 14 } else { 28 };
                let len = if save { env_len + 80 } else { env_len };
                let la = self.mem_lin(i, len as u32, true)?;
                let mut buf = vec![0u8; len];
                self.store_env(&mut buf[..env_len], small);
                if save {
                    for n in 0..8u8 {
                        let b = self.s.x87.regs[self.st_phys(n)];
                        buf[env_len + 10 * n as usize..env_len + 10 * n as usize + 10].copy_from_slice(&b);
                    }
                }
                self.write_buf(la, &buf)?;
                if save {
                    self.fninit();
                } else {
                    // FSTENV masks all exceptions after saving.
                    self.s.x87.fcw |= fl::EXC;
                    self.update_es();
                }
            }
            M::Fldenv | M::Frstor => {
                let rstor = m == M::Frstor;
                let small = matches!(i.memory_size(), MemorySize::FpuEnv14 | MemorySize::FpuState94);
                let env_len = if small { 14 } else { 28 };
                let len = if rstor { env_len + 80 } else { env_len };
                let la = self.mem_lin(i, len as u32, false)?;
                let mut buf = vec![0u8; len];
                self.read_buf(la, &mut buf)?;
                if rstor {
                    for n in 0..8u8 {
                        let p = ((self.top_from_env(&buf, small) + n) & 7) as usize;
                        self.s.x87.regs[p].copy_from_slice(&buf[env_len + 10 * n as usize..env_len + 10 * n as usize + 10]);
                    }
                }
                self.load_env(&buf[..env_len], small);
            }
            M::Fxsave | M::Fxsave64 => self.fxsave(i, m == M::Fxsave64)?,
            M::Fxrstor | M::Fxrstor64 => self.fxrstor(i, m == M::Fxrstor64)?,
            _ => return Err(Exception::ud()),
        }
        Ok(())
    }

    fn fninit(&mut self) {
        let x = &mut self.s.x87;
        x.fcw = 0x037F;
        x.fsw = 0;
        x.top = 0;
        x.ftw = 0xFFFF;
        x.fop = 0;
        x.fip = 0;
        x.fdp = 0;
    }

    /// FADD/FSUB/FSUBR/FMUL/FDIV/FDIVR in all forms (register, m32fp, m64fp, m16int, m32int).
    fn arith(&mut self, i: &Instruction, op: Bin, rev: bool, pop: bool) -> Res<()> {
        let fcw = self.fcw();
        let (dst, src, de, src_empty) = if i.op0_kind() == OpKind::Memory {
            let (v, de) = self.read_mem_operand(i)?;
            (0u8, v, de, false)
        } else {
            let s = st_num(i.op1_register());
            (st_num(i.op0_register()), self.st(s), false, self.st_empty(s))
        };
        if self.st_empty(dst) || src_empty {
            if self.underflow() {
                self.set_st(dst, F80::INDEFINITE);
                if pop {
                    self.fpop();
                }
            }
            return Ok(());
        }
        let d = self.st(dst);
        let o = if rev { binop(op, src, d, fcw, de) } else { binop(op, d, src, fcw, de) };
        self.commit(dst, o, pop);
        Ok(())
    }

    /// FCOM family: compare ST(0) with `b`, set C3/C2/C0 or ZF/PF/CF, pop `pops` times
    /// (not when an unmasked exception was raised).
    fn compare_op(&mut self, b: F80, de: bool, b_empty: bool, quiet: bool, eflags: bool, pops: u8) {
        let fcw = self.fcw();
        let (rel, flags) = if self.st_empty(0) || b_empty { (Rel::Un, fl::IE | fl::SF) } else { fcompare(self.st(0), b, quiet, de) };
        self.fraise(flags);
        self.set_c1(false);
        let (c3, c2, c0) = match rel {
            Rel::Gt => (false, false, false),
            Rel::Lt => (false, false, true),
            Rel::Eq => (true, false, false),
            Rel::Un => (true, true, true),
        };
        if eflags {
            let f = self.s.status_flags() & !(rf::ZF | rf::PF | rf::CF | rf::OF | rf::SF | rf::AF);
            self.s.set_status_flags(f | if c3 { rf::ZF } else { 0 } | if c2 { rf::PF } else { 0 } | if c0 { rf::CF } else { 0 });
        } else {
            self.set_cc(c3, c2, false, c0);
        }
        if flags & !fcw & (fl::IE | fl::DE) != 0 {
            return;
        }
        for _ in 0..pops {
            self.fpop();
        }
    }

    /// FST/FSTP to m32fp, m64fp, m80fp or ST(i).
    fn fst(&mut self, i: &Instruction, pop: bool) -> Res<()> {
        let fcw = self.fcw();
        let rc = Rc::from_fcw(fcw);
        let v = self.st(0);
        let empty = self.st_empty(0);
        if i.op0_kind() != OpKind::Memory {
            let n = st_num(i.op0_register());
            if empty {
                if !self.underflow() {
                    return Ok(());
                }
                self.set_st(n, F80::INDEFINITE);
            } else {
                self.set_c1(false);
                self.set_st(n, v);
            }
            if pop {
                self.fpop();
            }
            return Ok(());
        }
        let ms = i.memory_size();
        let size = ms.size() as u32;
        let la = self.mem_lin(i, size, true)?;
        if ms == MemorySize::Float80 {
            let v = if empty { F80::INDEFINITE } else { v };
            if empty && fcw & fl::IE == 0 {
                self.underflow();
                return Ok(());
            }
            self.write_buf(la, &v.to_bytes())?;
            if empty {
                self.underflow();
            } else {
                self.set_c1(false);
            }
            if pop {
                self.fpop();
            }
            return Ok(());
        }
        let f = if ms == MemorySize::Float32 { sf::SINGLE } else { sf::DOUBLE };
        let o = if empty {
            if fcw & fl::IE == 0 {
                self.underflow();
                return Ok(());
            }
            sf::MemOut { bits: Some(if size == 4 { 0xFFC0_0000 } else { 0xFFF8_0000_0000_0000 }), flags: fl::IE | fl::SF, c1: false }
        } else {
            sf::round_mem(v, f, rc, fcw)
        };
        if let Some(bits) = o.bits {
            self.write_lin(la, size, bits)?;
        }
        self.fraise(o.flags);
        self.set_c1(o.c1);
        if o.bits.is_some() && pop {
            self.fpop();
        }
        Ok(())
    }

    /// FIST/FISTP to m16int, m32int, m64int.
    fn fist(&mut self, i: &Instruction, pop: bool) -> Res<()> {
        let fcw = self.fcw();
        let size = i.memory_size().size() as u32;
        let la = self.mem_lin(i, size, true)?;
        let indefinite = 1u64 << (size * 8 - 1);
        let (val, flags, c1) = if self.st_empty(0) {
            (None, fl::IE | fl::SF, false)
        } else {
            float_to_int(self.st(0), size * 8, Rc::from_fcw(fcw))
        };
        let store = match val {
            Some(v) => Some(v & crate::flags::mask(size)),
            None if fcw & fl::IE != 0 => Some(indefinite),
            None => None,
        };
        if let Some(v) = store {
            self.write_lin(la, size, v)?;
        }
        self.fraise(flags);
        self.set_c1(c1);
        if store.is_some() && pop {
            self.fpop();
        }
        Ok(())
    }

    /// FBSTP m80bcd.
    fn fbstp(&mut self, i: &Instruction) -> Res<()> {
        let fcw = self.fcw();
        let la = self.mem_lin(i, 10, true)?;
        let (val, flags, c1) = if self.st_empty(0) {
            (None, fl::IE | fl::SF, false)
        } else {
            let v = self.st(0);
            match v.class() {
                Class::Zero => (Some((0u64, v.sign())), 0, false),
                Class::Normal | Class::Denormal => {
                    let u = v.unpack();
                    let (mag, inexact, up) = if u.exp >= 64 { (u128::MAX, false, false) } else { sf::round_to_int(u, Rc::from_fcw(fcw)) };
                    if mag > 999_999_999_999_999_999 {
                        (None, fl::IE, false)
                    } else {
                        (Some((mag as u64, u.sign)), if inexact { fl::PE } else { 0 }, up)
                    }
                }
                _ => (None, fl::IE, false),
            }
        };
        let bytes = match val {
            Some((mut mag, sign)) => {
                let mut b = [0u8; 10];
                for byte in b.iter_mut().take(9) {
                    let lo = mag % 10;
                    mag /= 10;
                    let hi = mag % 10;
                    mag /= 10;
                    *byte = (lo | (hi << 4)) as u8;
                }
                b[9] = if sign { 0x80 } else { 0 };
                Some(b)
            }
            None if fcw & fl::IE != 0 => Some([0, 0, 0, 0, 0, 0, 0, 0xC0, 0xFF, 0xFF]),
            None => None,
        };
        if let Some(b) = bytes {
            self.write_buf(la, &b)?;
        }
        self.fraise(flags);
        self.set_c1(c1);
        if bytes.is_some() {
            self.fpop();
        }
        Ok(())
    }

    /// FXTRACT: ST(0) ← exponent, then push the significand.
    fn fxtract(&mut self) {
        let fcw = self.fcw();
        if self.st_empty(0) {
            if self.underflow() {
                self.set_st(0, F80::INDEFINITE);
                self.fpush(F80::INDEFINITE);
            }
            return;
        }
        if self.push_overflows() {
            if self.overflow() {
                self.set_st(0, F80::INDEFINITE);
                self.fpush(F80::INDEFINITE);
            }
            return;
        }
        let v = self.st(0);
        let (e, s, flags) = match v.class() {
            // An unmasked exception stores nothing; C1 is cleared as for any result without
            // a round-up (as on the host).
            Class::Unsupported => {
                if fcw & fl::IE == 0 {
                    self.fraise(fl::IE);
                    self.set_c1(false);
                    return;
                }
                (F80::INDEFINITE, F80::INDEFINITE, fl::IE)
            }
            Class::SNaN | Class::QNaN => {
                let ie = if v.is_snan() { fl::IE } else { 0 };
                if ie & !fcw != 0 {
                    self.fraise(ie);
                    self.set_c1(false);
                    return;
                }
                (v.quiet(), v.quiet(), ie)
            }
            Class::Inf => (F80::inf(false), v, 0),
            Class::Zero => {
                if fcw & fl::ZE == 0 {
                    self.fraise(fl::ZE);
                    self.set_c1(false);
                    return;
                }
                (F80::inf(true), v, fl::ZE)
            }
            Class::Normal | Class::Denormal => {
                let de = if v.class() == Class::Denormal { fl::DE } else { 0 };
                if de & !fcw != 0 {
                    self.fraise(de);
                    return;
                }
                let u = v.unpack();
                (sf::from_i64(u.exp as i64), F80::pack_normal(u.sign, 0, u.sig), de)
            }
        };
        self.fraise(flags);
        self.set_c1(false);
        self.set_st(0, e);
        self.fpush(s);
    }

    /// FPREM / FPREM1.
    fn fprem(&mut self, ieee: bool) {
        let fcw = self.fcw();
        // Without a quotient (stack underflow, NaN operand, invalid operation; masked or not)
        // the SDM gives no C0/C3 values: as on the AMD host, C2 is cleared (the reduction is
        // complete) and C0/C3 are kept.
        if self.st_empty(0) || self.st_empty(1) {
            if self.underflow() {
                self.set_st(0, F80::INDEFINITE);
            }
            self.s.x87.fsw &= !fl::C2;
            return;
        }
        let (x, y) = (self.st(0), self.st(1));
        let de = match trans::screen2(x, y, fcw, false) {
            Ok(d) => d,
            Err(o) => {
                self.commit(0, o, false);
                self.s.x87.fsw &= !fl::C2;
                return;
            }
        };
        let (cx, cy) = (x.class(), y.class());
        if cx == Class::Inf || cy == Class::Zero {
            let o = Out::invalid(fcw);
            self.commit(0, o, false);
            self.s.x87.fsw &= !(fl::C1 | fl::C2);
            return;
        }
        if let Some(o) = trans::de_gate(de, fcw) {
            self.commit(0, o, false);
            return;
        }
        if cx == Class::Zero || cy == Class::Inf {
            let mut o = trans::pass(x, fcw);
            o.flags |= de;
            self.commit(0, o, false);
            self.set_cc(false, false, false, false);
            return;
        }
        let (ux, uy) = (x.unpack(), y.unpack());
        let d = ux.exp - uy.exp;
        let rc = Rc::from_fcw(fcw);
        let (res, q, partial) = if d >= 64 {
            // Partial remainder: reduce by y·2^(d−n) with n = 32 + d mod 32 (SDM: an
            // implementation-dependent n in 32..63; this matches AMD and Intel parts).
            let n = 32 + (d % 32) as u32;
            let num = (ux.sig as u128) << n;
            let r = num % uy.sig as u128;
            (sf::from_int(ux.sign, r, ux.exp - n as i32 - 63), 0u64, true)
        } else if d < 0 {
            if ieee && d == -1 && ux.sig > uy.sig {
                // |x| > |y|/2: quotient 1, remainder x − y (opposite sign).
                let r = 2 * uy.sig as u128 - ux.sig as u128;
                (sf::from_int(!ux.sign, r, uy.exp - 64), 1u64, false)
            } else {
                (sf::exact_of(x), 0, false)
            }
        } else {
            let num = (ux.sig as u128) << d;
            let ys = uy.sig as u128;
            let mut qq = num / ys;
            let mut r = num % ys;
            let mut sign = ux.sign;
            if ieee && (2 * r > ys || (2 * r == ys && qq & 1 == 1)) {
                qq += 1;
                r = ys - r;
                sign = !sign;
            }
            let res = if r == 0 { Exact::Zero(ux.sign) } else { sf::from_int(sign, r, uy.exp - 63) };
            (res, qq as u64, false)
        };
        let o = sf::round_reg(res, sf::EXT, rc, fcw);
        self.fraise(o.flags | de);
        self.set_st(0, o.v);
        if partial {
            self.set_cc(false, true, false, false);
        } else {
            self.set_cc(q & 2 != 0, false, q & 1 != 0, q & 4 != 0);
        }
    }

    /// FSIN, FCOS, FSINCOS, FPTAN.
    fn ftrig(&mut self, m: Mnemonic) {
        use Mnemonic as M;
        let fcw = self.fcw();
        let two = matches!(m, M::Fsincos | M::Fptan);
        if self.st_empty(0) {
            if self.underflow() {
                self.set_st(0, F80::INDEFINITE);
                if two {
                    self.fpush(F80::INDEFINITE);
                }
            }
            return;
        }
        if two && self.push_overflows() {
            if self.overflow() {
                self.set_st(0, F80::INDEFINITE);
                self.fpush(F80::INDEFINITE);
            }
            return;
        }
        let x = self.st(0);
        if trans::out_of_range(x) {
            let c = self.s.x87.fsw;
            self.s.x87.fsw = (c & !fl::C1) | fl::C2;
            return;
        }
        let de = match trans::screen1(x, fcw) {
            Ok(d) => d,
            Err(o) => {
                self.commit(0, o, false);
                if o.v.is_some() {
                    self.s.x87.fsw &= !fl::C2;
                    if two {
                        self.fpush(o.v.unwrap_or(F80::INDEFINITE));
                    }
                }
                return;
            }
        };
        if x.class() == Class::Inf {
            let o = Out::invalid(fcw);
            self.commit(0, o, false);
            if let Some(v) = o.v {
                self.s.x87.fsw &= !fl::C2;
                if two {
                    self.fpush(v);
                }
            }
            return;
        }
        if let Some(o) = trans::de_gate(de, fcw) {
            self.commit(0, o, false);
            return;
        }
        let (first, second) = match m {
            M::Fsin => (trans::sincos(x, fcw, de).0, None),
            M::Fcos => (trans::sincos(x, fcw, de).1, None),
            M::Fsincos => {
                let (s, c) = trans::sincos(x, fcw, de);
                (s, Some(c))
            }
            _ => (trans::tan(x, fcw, de), Some(Out::val(F80::ONE))),
        };
        self.s.x87.fsw &= !fl::C2;
        self.commit(0, first, false);
        if let Some(s) = second {
            let c1 = self.s.x87.fsw & fl::C1 != 0;
            self.commit_push(s);
            if m == M::Fptan {
                self.set_c1(c1);
            }
        }
    }

    // ---- environment ----

    fn real_mode_env(&self) -> bool {
        self.s.cr0 & cr::CR0_PE == 0 || self.s.rflags & rf::VM != 0
    }

    /// Full tag word with the tags of non-empty registers recomputed from their contents.
    fn full_tags(&self) -> u16 {
        let mut t = 0u16;
        for p in 0..8 {
            let tag = if (self.s.x87.ftw >> (2 * p)) & 3 == 3 { 3 } else { F80::from_bytes(&self.s.x87.regs[p]).tag() };
            t |= tag << (2 * p);
        }
        t
    }

    /// Tag word loaded by FLDENV/FRSTOR/FXRSTOR: empty or recomputed from the register.
    fn load_tags(&mut self, empty_mask: u8) {
        for p in 0..8 {
            let t = if empty_mask & (1 << p) != 0 { 3 } else { F80::from_bytes(&self.s.x87.regs[p]).tag() };
            self.set_tag(p, t);
        }
    }

    /// Write the FSTENV image (14 or 28 bytes, protected- or real-mode format).
    fn store_env(&self, b: &mut [u8], small: bool) {
        let x = &self.s.x87;
        let fsw = self.fsw_full();
        let tags = self.full_tags();
        let fcs = self.s.seg[sreg::CS].selector;
        let fds = self.s.seg[sreg::DS].selector;
        let fip = x.fip;
        let fdp = x.fdp;
        let fop = x.fop & 0x7FF;
        let w16 = |b: &mut [u8], o: usize, v: u16| b[o..o + 2].copy_from_slice(&v.to_le_bytes());
        let w32 = |b: &mut [u8], o: usize, v: u32| b[o..o + 4].copy_from_slice(&v.to_le_bytes());
        if self.real_mode_env() {
            let lip = (self.s.seg[sreg::CS].base.wrapping_add(fip)) as u32;
            let ldp = (self.s.seg[sreg::DS].base.wrapping_add(fdp)) as u32;
            if small {
                w16(b, 0, x.fcw);
                w16(b, 2, fsw);
                w16(b, 4, tags);
                w16(b, 6, lip as u16);
                w16(b, 8, (((lip >> 16) & 0xF) << 12) as u16 | fop);
                w16(b, 10, ldp as u16);
                w16(b, 12, (((ldp >> 16) & 0xF) << 12) as u16);
            } else {
                w32(b, 0, 0xFFFF_0000 | x.fcw as u32);
                w32(b, 4, 0xFFFF_0000 | fsw as u32);
                w32(b, 8, 0xFFFF_0000 | tags as u32);
                w32(b, 12, 0xFFFF_0000 | (lip & 0xFFFF));
                w32(b, 16, ((lip >> 16) << 12) | fop as u32);
                w32(b, 20, 0xFFFF_0000 | (ldp & 0xFFFF));
                w32(b, 24, (ldp >> 16) << 12);
            }
        } else if small {
            w16(b, 0, x.fcw);
            w16(b, 2, fsw);
            w16(b, 4, tags);
            w16(b, 6, fip as u16);
            w16(b, 8, fcs);
            w16(b, 10, fdp as u16);
            w16(b, 12, fds);
        } else {
            w32(b, 0, 0xFFFF_0000 | x.fcw as u32);
            w32(b, 4, 0xFFFF_0000 | fsw as u32);
            w32(b, 8, 0xFFFF_0000 | tags as u32);
            w32(b, 12, fip as u32);
            w32(b, 16, fcs as u32 | ((fop as u32) << 16));
            w32(b, 20, fdp as u32);
            w32(b, 24, 0xFFFF_0000 | fds as u32);
        }
    }

    fn top_from_env(&self, b: &[u8], small: bool) -> u8 {
        let o = if small { 2 } else { 4 };
        ((u16::from_le_bytes([b[o], b[o + 1]]) >> 11) & 7) as u8
    }

    /// Load an FLDENV image.
    fn load_env(&mut self, b: &[u8], small: bool) {
        let r16 = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let r32 = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let (fcw, fsw, ftw) = if small { (r16(0), r16(2), r16(4)) } else { (r16(0), r16(4), r16(8)) };
        let real = self.real_mode_env();
        let (fip, fop, fdp) = match (real, small) {
            (false, true) => (r16(6) as u64, self.s.x87.fop, r16(10) as u64),
            (false, false) => (r32(12) as u64, (r32(16) >> 16) as u16 & 0x7FF, r32(20) as u64),
            (true, true) => {
                let ip = r16(6) as u64 | (((r16(8) >> 12) as u64) << 16);
                let dp = r16(10) as u64 | (((r16(12) >> 12) as u64) << 16);
                (ip, r16(8) & 0x7FF, dp)
            }
            (true, false) => {
                let ip = (r32(12) & 0xFFFF) as u64 | (((r32(16) >> 12) as u64 & 0xFFFF) << 16);
                let dp = (r32(20) & 0xFFFF) as u64 | (((r32(24) >> 12) as u64 & 0xFFFF) << 16);
                (ip, (r32(16) & 0x7FF) as u16, dp)
            }
        };
        // Real-mode images hold linear pointers; keep offsets from the current CS and DS.
        let (fip, fdp) = if real {
            (fip.wrapping_sub(self.s.seg[sreg::CS].base) & 0xFFFF_FFFF, fdp.wrapping_sub(self.s.seg[sreg::DS].base) & 0xFFFF_FFFF)
        } else {
            (fip, fdp)
        };
        let x = &mut self.s.x87;
        x.fcw = (fcw & 0x1F3F) | 0x40;
        x.fsw = fsw & !0x3800;
        x.top = ((fsw >> 11) & 7) as u8;
        x.fip = fip;
        x.fop = fop;
        x.fdp = fdp;
        let mut empty = 0u8;
        for p in 0..8 {
            if (ftw >> (2 * p)) & 3 == 3 {
                empty |= 1 << p;
            }
        }
        self.load_tags(empty);
        self.update_es();
    }

    /// FXSAVE / FXSAVE64 (SDM Vol. 2A FXSAVE, Tables 3-53 and 3-56).
    fn fxsave(&mut self, i: &Instruction, w: bool) -> Res<()> {
        let ea = self.ea(i);
        if ea & 15 != 0 {
            return Err(Exception::gp(0));
        }
        let len = if self.bits == 64 { 416 } else { 288 };
        let la = self.mem_lin(i, 512, true)?;
        let mut b = vec![0u8; len];
        let x = self.s.x87;
        b[0..2].copy_from_slice(&x.fcw.to_le_bytes());
        b[2..4].copy_from_slice(&self.fsw_full().to_le_bytes());
        let mut abridged = 0u8;
        for p in 0..8 {
            if (x.ftw >> (2 * p)) & 3 != 3 {
                abridged |= 1 << p;
            }
        }
        b[4] = abridged;
        b[6..8].copy_from_slice(&(x.fop & 0x7FF).to_le_bytes());
        if w {
            b[8..16].copy_from_slice(&x.fip.to_le_bytes());
            b[16..24].copy_from_slice(&x.fdp.to_le_bytes());
        } else {
            b[8..12].copy_from_slice(&(x.fip as u32).to_le_bytes());
            b[12..14].copy_from_slice(&self.s.seg[sreg::CS].selector.to_le_bytes());
            b[16..20].copy_from_slice(&(x.fdp as u32).to_le_bytes());
            b[20..22].copy_from_slice(&self.s.seg[sreg::DS].selector.to_le_bytes());
        }
        b[24..28].copy_from_slice(&self.s.mxcsr.to_le_bytes());
        b[28..32].copy_from_slice(&MXCSR_MASK.to_le_bytes());
        for n in 0..8u8 {
            let o = 32 + 16 * n as usize;
            b[o..o + 10].copy_from_slice(&x.regs[self.st_phys(n)]);
        }
        if self.s.cr4 & cr::CR4_OSFXSR != 0 {
            let nx = if self.bits == 64 { 16 } else { 8 };
            for k in 0..nx {
                let o = 160 + 16 * k;
                b[o..o + 16].copy_from_slice(&self.s.xmm[k].to_le_bytes());
            }
        } else {
            // Without OSFXSR the XMM area is not written.
            b.truncate(160);
        }
        self.probe_write(la, 512)?;
        self.write_buf(la, &b)
    }

    /// FXRSTOR / FXRSTOR64.
    fn fxrstor(&mut self, i: &Instruction, w: bool) -> Res<()> {
        let ea = self.ea(i);
        if ea & 15 != 0 {
            return Err(Exception::gp(0));
        }
        let la = self.mem_lin(i, 512, false)?;
        let len = if self.bits == 64 { 416 } else { 288 };
        let mut b = vec![0u8; len];
        self.read_buf(la, &mut b)?;
        let r16 = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let r32 = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let r64 = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let mxcsr = r32(24);
        if mxcsr & !MXCSR_MASK != 0 {
            return Err(Exception::gp(0));
        }
        let fsw = r16(2);
        {
            let x = &mut self.s.x87;
            x.fcw = (r16(0) & 0x1F3F) | 0x40;
            x.fsw = fsw & !0x3800;
            x.top = ((fsw >> 11) & 7) as u8;
            x.fop = r16(6) & 0x7FF;
            if w {
                x.fip = r64(8);
                x.fdp = r64(16);
            } else {
                x.fip = r32(8) as u64;
                x.fdp = r32(16) as u64;
            }
        }
        let top = self.s.x87.top;
        for n in 0..8u8 {
            let o = 32 + 16 * n as usize;
            let p = ((top + n) & 7) as usize;
            self.s.x87.regs[p].copy_from_slice(&b[o..o + 10]);
        }
        self.load_tags(!b[4]);
        self.update_es();
        self.s.mxcsr = mxcsr;
        if self.s.cr4 & cr::CR4_OSFXSR != 0 {
            let nx = if self.bits == 64 { 16 } else { 8 };
            for k in 0..nx {
                let o = 160 + 16 * k;
                self.s.xmm[k] = u128::from_le_bytes(b[o..o + 16].try_into().unwrap());
            }
        }
        Ok(())
    }
}

/// Largest access size (8, 4, 2, 1) not above `n`.
fn chunk(n: usize) -> usize {
    match n {
        8.. => 8,
        4..=7 => 4,
        2..=3 => 2,
        _ => 1,
    }
}

/// FSQRT.
fn fsqrt(a: F80, fcw: u16) -> Out {
    let de = match trans::screen1(a, fcw) {
        Ok(d) => d,
        Err(o) => return o,
    };
    if a.sign() && a.class() != Class::Zero {
        return Out::invalid(fcw);
    }
    if let Some(o) = trans::de_gate(de, fcw) {
        return o;
    }
    let mut o = match a.class() {
        Class::Zero => Out::val(a),
        Class::Inf => Out::val(a),
        _ => {
            let rc = Rc::from_fcw(fcw);
            Out::reg(sf::round_reg(Exact::Val(sf::sqrt(a.unpack())), sf::ext_pc(fcw), rc, fcw))
        }
    };
    o.flags |= de;
    o
}

/// FRNDINT.
fn frndint(a: F80, fcw: u16) -> Out {
    let de = match trans::screen1(a, fcw) {
        Ok(d) => d,
        Err(o) => return o,
    };
    if let Some(o) = trans::de_gate(de, fcw) {
        return o;
    }
    let mut o = match a.class() {
        Class::Zero | Class::Inf => Out::val(a),
        _ => {
            let u = a.unpack();
            if u.exp >= 63 {
                Out::val(a)
            } else {
                let (mag, inexact, up) = sf::round_to_int(u, Rc::from_fcw(fcw));
                let v = sf::to_f80_nearest(sf::from_int(u.sign, mag, 0));
                Out { v: Some(v), flags: if inexact { fl::PE } else { 0 }, c1: up }
            }
        }
    };
    o.flags |= de;
    o
}

/// FSCALE: ST(0) × 2^trunc(ST(1)).
fn fscale(a: F80, b: F80, fcw: u16) -> Out {
    let de = match trans::screen2(a, b, fcw, false) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let (ca, cb) = (a.class(), b.class());
    if (ca == Class::Inf && cb == Class::Inf && b.sign()) || (ca == Class::Zero && cb == Class::Inf && !b.sign()) {
        return Out::invalid(fcw);
    }
    if let Some(o) = trans::de_gate(de, fcw) {
        return o;
    }
    let mut o = match (ca, cb) {
        (Class::Inf, _) | (Class::Zero, _) => Out::val(a),
        (_, Class::Inf) => Out::val(if b.sign() { F80::zero(a.sign()) } else { F80::inf(a.sign()) }),
        (_, Class::Zero) => trans::pass(a, fcw),
        _ => {
            let ub = b.unpack();
            let n: i32 = if ub.exp < 0 {
                0
            } else if ub.exp >= 30 {
                if ub.sign {
                    -(1 << 30)
                } else {
                    1 << 30
                }
            } else {
                let v = (ub.sig >> (63 - ub.exp)) as i32;
                if ub.sign {
                    -v
                } else {
                    v
                }
            };
            if n == 0 {
                trans::pass(a, fcw)
            } else {
                let mut r = a.unpack().raw();
                r.exp = r.exp.saturating_add(n);
                Out::reg(sf::round_reg(Exact::Val(r), sf::EXT, Rc::from_fcw(fcw), fcw))
            }
        }
    };
    o.flags |= de;
    o
}

/// Convert to a `bits`-wide integer: (value, flags, C1); `None` for an invalid conversion.
fn float_to_int(v: F80, bits: u32, rc: Rc) -> (Option<u64>, u16, bool) {
    match v.class() {
        Class::Zero => (Some(0), 0, false),
        Class::Normal | Class::Denormal => {
            let u = v.unpack();
            if u.exp >= 64 {
                return (None, fl::IE, false);
            }
            let (mag, inexact, up) = sf::round_to_int(u, rc);
            let limit = if u.sign { 1u128 << (bits - 1) } else { (1u128 << (bits - 1)) - 1 };
            if mag > limit {
                return (None, fl::IE, false);
            }
            let val = if u.sign { (mag as u64).wrapping_neg() } else { mag as u64 };
            (Some(val), if inexact { fl::PE } else { 0 }, up)
        }
        _ => (None, fl::IE, false),
    }
}

/// Packed BCD (18 digits, sign in bit 7 of byte 9) to extended; invalid digits are taken
/// at face value.
fn bcd_to_f80(b: &[u8; 10]) -> F80 {
    let mut v: u64 = 0;
    for k in (0..9).rev() {
        v = v * 100 + ((b[k] >> 4) as u64) * 10 + (b[k] & 0xF) as u64;
    }
    let f = sf::from_i64(v as i64);
    if b[9] & 0x80 != 0 {
        f.neg()
    } else {
        f
    }
}

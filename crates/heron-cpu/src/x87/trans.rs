//! Transcendental instructions (F2XM1, FYL2X, FYL2XP1, FPTAN, FPATAN, FSIN, FCOS, FSINCOS).
//!
//! These are approximations computed with the host's f64 libm: each argument is split into
//! a double plus an exact double remainder and a first-order correction is applied, so
//! results are accurate to about double precision (roughly 2^-52 relative), not to the last
//! bit of the 64-bit significand as on hardware. Results are then rounded once to the
//! extended format and always report PE (and C1 reflects that final rounding only).

use super::sf::{self, fl, Class, Exact, F80, Rc, EXT};
use super::Out;

/// ln 2 rounded to 64 bits (nearest).
pub const LN2: F80 = F80 { se: 0x3FFE, sig: 0xB172_17F7_D1CF_79AC };
/// log2 e rounded to 64 bits (nearest).
pub const LOG2E: F80 = F80 { se: 0x3FFF, sig: 0xB8AA_3B29_5C17_F0BC };

/// Split a finite extended value (within f64 range) into hi + lo doubles; hi is the nearest
/// double and lo the exact remainder.
fn split(v: F80) -> (f64, f64) {
    let hi = sf::to_f64(v);
    let d = sf::add_exact(v, sf::from_f64(hi).neg(), Rc::Nearest);
    (hi, sf::to_f64(sf::to_f80_nearest(d)))
}

/// hi + lo as an inexact intermediate (an infinite hi stands for a huge value that
/// overflows when rounded).
fn approx(hi: f64, lo: f64) -> Exact {
    if !hi.is_finite() {
        return Exact::Val(sf::Raw { sign: hi.is_sign_negative(), exp: 1 << 16, sig: 1 << 127 });
    }
    let lo = if lo.is_finite() { lo } else { 0.0 };
    sf::inexact(sf::add_exact(sf::from_f64(hi), sf::from_f64(lo), Rc::Nearest))
}

fn fin(x: Exact) -> F80 {
    sf::to_f80_nearest(x)
}

fn round(x: Exact, fcw: u16) -> Out {
    Out::reg(sf::round_reg(x, EXT, Rc::from_fcw(fcw), fcw))
}

/// Screen one operand: unsupported → invalid, NaN → propagated. `Err` carries the decided
/// outcome; `Ok` the DE flag if the operand is a denormal. Callers apply [`de_gate`] only
/// once they know the operation is not invalid and not a division by zero: the hardware
/// does not report DE in those cases.
pub fn screen1(a: F80, fcw: u16) -> Result<u16, Out> {
    match a.class() {
        Class::Unsupported => Err(Out::invalid(fcw)),
        Class::SNaN => Err(Out::nan(a.quiet(), fl::IE, fcw)),
        Class::QNaN => Err(Out::val(a)),
        Class::Denormal => Ok(fl::DE),
        _ => Ok(0),
    }
}

/// An unmasked denormal-operand exception suppresses the operation.
pub fn de_gate(de: u16, fcw: u16) -> Option<Out> {
    if de & !fcw != 0 {
        Some(Out::abort(de))
    } else {
        None
    }
}

/// A finite operand returned as the result: through the rounding path, so pseudo-denormals
/// are normalized and a denormal result reports underflow (biased when UE is unmasked).
pub fn pass(a: F80, fcw: u16) -> Out {
    match a.class() {
        Class::Normal | Class::Denormal => Out::reg(sf::round_reg(sf::exact_of(a), EXT, Rc::from_fcw(fcw), fcw)),
        _ => Out::val(a),
    }
}

/// Screen two operands (see [`screen1`]).
pub fn screen2(a: F80, b: F80, fcw: u16, de_extra: bool) -> Result<u16, Out> {
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return Err(Out::invalid(fcw));
    }
    if a.is_nan() || b.is_nan() {
        let flags = if a.is_snan() || b.is_snan() { fl::IE } else { 0 };
        return Err(Out::nan(sf::propagate_nan(a, b), flags, fcw));
    }
    Ok(if ca == Class::Denormal || cb == Class::Denormal || de_extra { fl::DE } else { 0 })
}

/// |x| ≥ 2^63: FSIN/FCOS/FSINCOS/FPTAN leave the operand and set C2.
pub fn out_of_range(x: F80) -> bool {
    matches!(x.class(), Class::Normal | Class::Denormal) && x.unpack().exp >= 63
}

/// π rounded to 66 bits, as an integer: π ≈ PI66 × 2^-64. The x87 reduces trigonometric
/// arguments with this approximation (SDM Vol. 1 §8.3.10), so large arguments give the
/// hardware's (not the mathematically exact) results.
const PI66: u128 = 0x3_243F_6A88_85A3_08D3;

/// Reduce a finite non-zero |x| < 2^63 modulo π/2 (with the 66-bit π): (quadrant mod 4,
/// r as hi + lo doubles) with x = quadrant·π66/2 + r, |r| ≤ π66/4.
fn reduce(x: F80) -> (u32, f64, f64) {
    let u = x.unpack();
    if u.exp < -1 {
        let (h, l) = split(x);
        return (0, h, l);
    }
    // x = m·2^(e−63); π66/2 = PI66·2^-65; x / (π66/2) = m·2^(e+2) / PI66.
    let n = (u.sig as u128) << (u.exp + 2) as u32;
    let k = (n + PI66 / 2) / PI66;
    let r = n.wrapping_sub(k * PI66) as i128; // |r| ≤ PI66/2 < 2^65
    let scale = 2f64.powi(-65);
    let hi = r as f64;
    let lo = (r - hi as i128) as f64;
    let (mut hi, mut lo) = (hi * scale, lo * scale);
    let mut q = (k & 3) as u32;
    if u.sign {
        hi = -hi;
        lo = -lo;
        q = (4 - q) & 3;
    }
    (q, hi, lo)
}

/// sin and cos of a finite in-range x, as (sin, cos) outcomes.
pub fn sincos(x: F80, fcw: u16, de: u16) -> (Out, Out) {
    if x.class() == Class::Zero {
        let mut c = Out::val(F80::ONE);
        c.flags = de;
        let mut s = Out::val(x);
        s.flags = de;
        return (s, c);
    }
    let u = x.unpack();
    let (s, c) = if u.exp < -40 {
        // sin x = x (1 - x²/6), cos x = 1 - x²/2: below the last bit.
        (sf::inexact(sf::exact_of(x)), approx(1.0, -0.0))
    } else {
        let (q, h, l) = reduce(x);
        let (sh, ch) = h.sin_cos();
        // sin(h + l) ≈ sin h + l cos h; cos(h + l) ≈ cos h − l sin h.
        let (s0, s1) = (sh, ch * l);
        let (c0, c1) = (ch, -sh * l);
        match q {
            0 => (approx(s0, s1), approx(c0, c1)),
            1 => (approx(c0, c1), approx(-s0, -s1)),
            2 => (approx(-s0, -s1), approx(-c0, -c1)),
            _ => (approx(-c0, -c1), approx(s0, s1)),
        }
    };
    let mut so = round(s, fcw);
    let mut co = round(c, fcw);
    so.flags |= de;
    co.flags |= de;
    (so, co)
}

/// tan of a finite in-range x.
pub fn tan(x: F80, fcw: u16, de: u16) -> Out {
    let mut o = if x.class() == Class::Zero {
        Out::val(x)
    } else if x.unpack().exp < -40 {
        round(sf::inexact(sf::exact_of(x)), fcw)
    } else {
        let (q, h, l) = reduce(x);
        let t = h.tan();
        let d = (1.0 + t * t) * l;
        if q & 1 == 0 {
            round(approx(t, d), fcw)
        } else {
            // −cot(h + l) = −1/(t + d) ≈ −1/t + d/t².
            round(approx(-1.0 / t, d / (t * t)), fcw)
        }
    };
    o.flags |= de;
    o
}

/// 2^x − 1.
pub fn f2xm1(x: F80, fcw: u16) -> Out {
    let de = match screen1(x, fcw) {
        Ok(d) => d,
        Err(o) => return o,
    };
    if let Some(o) = de_gate(de, fcw) {
        return o;
    }
    let mut o = match x.class() {
        Class::Zero => Out::val(x),
        Class::Inf => Out::val(if x.sign() { F80::ONE.neg() } else { x }),
        _ => {
            let u = x.unpack();
            if u.exp < -60 {
                round(sf::inexact(sf::mul_exact(x, LN2)), fcw)
            } else if u.exp > 0 || (u.exp == 0 && u.sig != sf::J) {
                // Outside the architectural domain [-1, 1] the result is undefined; the
                // operand is returned (with PE), as AMD processors do.
                let mut o = Out::val(x);
                o.flags = fl::PE;
                o
            } else {
                let t = fin(sf::mul_exact(x, LN2));
                let (th, tl) = split(t);
                let e = th.exp_m1();
                round(approx(e, (e + 1.0) * tl), fcw)
            }
        }
    };
    o.flags |= de;
    o
}

/// log2 of a finite positive x, as an extended value (approximate).
fn log2(x: F80) -> F80 {
    let u = x.unpack();
    if u.exp == 0 || u.exp == -1 {
        // Near 1: log2(x) = ln1p(x − 1) · log2 e with x − 1 exact.
        let d = fin(sf::add_exact(x, F80::ONE.neg(), Rc::Nearest));
        if d.class() == Class::Zero {
            return F80::ZERO;
        }
        return fin(sf::mul_exact(fin(ln1p(d)), LOG2E));
    }
    let m = F80::pack_normal(false, 0, u.sig);
    let (mh, ml) = split(m);
    let lm = mh.log2();
    let corr = ml / (mh * core::f64::consts::LN_2);
    let frac = fin(approx(lm, corr));
    fin(sf::add_exact(sf::from_i64(u.exp as i64), frac, Rc::Nearest))
}

/// ln(1 + d) for a finite non-zero d > −1, approximate.
fn ln1p(d: F80) -> Exact {
    let u = d.unpack();
    if u.exp < -60 {
        return sf::inexact(sf::exact_of(d));
    }
    let (h, l) = split(d);
    approx(h.ln_1p(), l / (1.0 + h))
}

/// y · log2(x): (value for ST(1), flags).
pub fn fyl2x(x: F80, y: F80, fcw: u16) -> Out {
    let de = match screen2(x, y, fcw, false) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let (cx, cy) = (x.class(), y.class());
    if x.sign() && cx != Class::Zero {
        return Out::invalid(fcw);
    }
    let x_zero_or_inf = matches!(cx, Class::Zero | Class::Inf);
    if (x_zero_or_inf && cy == Class::Zero) || (x == F80::ONE && cy == Class::Inf) {
        return Out::invalid(fcw);
    }
    if cx != Class::Zero || cy == Class::Inf {
        if let Some(o) = de_gate(de, fcw) {
            return o;
        }
    }
    let de = if cx == Class::Zero && cy != Class::Inf { 0 } else { de };
    let mut o = if cx == Class::Zero {
        match cy {
            Class::Zero => Out::invalid(fcw),
            Class::Inf => Out::val(F80::inf(!y.sign())),
            _ => {
                if fcw & fl::ZE == 0 {
                    return Out::abort(fl::ZE);
                }
                let mut o = Out::val(F80::inf(!y.sign()));
                o.flags = fl::ZE;
                o
            }
        }
    } else if cx == Class::Inf {
        if cy == Class::Zero {
            Out::invalid(fcw)
        } else {
            Out::val(F80::inf(y.sign()))
        }
    } else if x == F80::ONE {
        if cy == Class::Inf {
            Out::invalid(fcw)
        } else {
            Out::val(F80::zero(y.sign()))
        }
    } else {
        let below_one = x.unpack().exp < 0;
        match cy {
            Class::Zero => Out::val(F80::zero(y.sign() != below_one)),
            Class::Inf => Out::val(F80::inf(y.sign() != below_one)),
            _ => {
                let l = log2(x);
                round(sf::inexact(sf::mul_exact(y, l)), fcw)
            }
        }
    };
    o.flags |= de;
    o
}

/// y · log2(x + 1).
pub fn fyl2xp1(x: F80, y: F80, fcw: u16) -> Out {
    let de = match screen2(x, y, fcw, false) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let (cx, cy) = (x.class(), y.class());
    let o = fyl2xp1_inner(x, y, fcw);
    if o.flags & (fl::IE | fl::ZE) != 0 {
        return o;
    }
    if let Some(a) = de_gate(de, fcw) {
        return a;
    }
    let mut o = o;
    o.flags |= de;
    let _ = (cx, cy);
    o
}

fn fyl2xp1_inner(x: F80, y: F80, fcw: u16) -> Out {
    let (cx, cy) = (x.class(), y.class());
    match cx {
        Class::Zero => {
            if cy == Class::Inf {
                Out::invalid(fcw)
            } else {
                Out::val(F80::zero(x.sign() != y.sign()))
            }
        }
        Class::Inf => {
            if x.sign() || cy == Class::Zero {
                Out::invalid(fcw)
            } else {
                Out::val(F80::inf(y.sign()))
            }
        }
        _ => {
            let u = x.unpack();
            if x.sign() && u.exp >= 0 {
                // x ≤ −1: outside the domain.
                if u.exp == 0 && u.sig == sf::J {
                    // log2(0)
                    match cy {
                        Class::Zero => Out::invalid(fcw),
                        _ => {
                            let mut o = Out::val(F80::inf(!y.sign()));
                            o.flags = fl::ZE;
                            o
                        }
                    }
                } else {
                    // x < −1: undefined; AMD processors return the operand (with PE).
                    let mut o = Out::val(x);
                    o.flags = fl::PE;
                    o
                }
            } else {
                match cy {
                    Class::Zero => Out::val(F80::zero(x.sign() != y.sign())),
                    Class::Inf => Out::val(F80::inf(x.sign() != y.sign())),
                    _ => {
                        let l = if u.exp >= -1 {
                            // |x| ≥ 1/2: 1 + x is exact enough; take log2 of it directly.
                            log2(fin(sf::add_exact(x, F80::ONE, Rc::Nearest)))
                        } else {
                            fin(sf::mul_exact(fin(ln1p(x)), LOG2E))
                        };
                        round(sf::inexact(sf::mul_exact(y, l)), fcw)
                    }
                }
            }
        }
    }
}

/// atan2(y, x) for FPATAN (ST(1) = y, ST(0) = x).
pub fn fpatan(x: F80, y: F80, fcw: u16) -> Out {
    let de = match screen2(x, y, fcw, false) {
        Ok(d) => d,
        Err(o) => return o,
    };
    if let Some(o) = de_gate(de, fcw) {
        return o;
    }
    let (cx, cy) = (x.class(), y.class());
    let finite = |c: Class| matches!(c, Class::Normal | Class::Denormal);
    let mut o = if finite(cx) && finite(cy) {
        let (ux, uy) = (x.unpack(), y.unpack());
        let d = uy.exp - ux.exp;
        if d < -70 && !x.sign() {
            // atan(y/x) ≈ y/x
            let q = sf::div(uy, ux);
            round(sf::inexact(Exact::Val(q)), fcw)
        } else if d.abs() > 1000 {
            let v = if d > 0 {
                core::f64::consts::FRAC_PI_2
            } else {
                core::f64::consts::PI
            };
            let v = if y.sign() { -v } else { v };
            round(approx(v, 0.0), fcw)
        } else {
            // Scale both so that x is near 1; the ratio is unchanged.
            let sx = F80::pack_normal(ux.sign, 0, ux.sig);
            let sy = F80::pack_normal(uy.sign, d, uy.sig);
            let (xh, xl) = split(sx);
            let (yh, yl) = split(sy);
            let a = yh.atan2(xh);
            let corr = (xh * yl - yh * xl) / (xh * xh + yh * yh);
            round(approx(a, corr), fcw)
        }
    } else {
        // Zeros and infinities: the atan2 special cases match the x87 table.
        let xf = if cx == Class::Inf { if x.sign() { f64::NEG_INFINITY } else { f64::INFINITY } } else if cx == Class::Zero { if x.sign() { -0.0 } else { 0.0 } } else if x.sign() { -1.0 } else { 1.0 };
        let yf = if cy == Class::Inf { if y.sign() { f64::NEG_INFINITY } else { f64::INFINITY } } else if cy == Class::Zero { if y.sign() { -0.0 } else { 0.0 } } else if y.sign() { -1.0 } else { 1.0 };
        let a = yf.atan2(xf);
        if a == 0.0 {
            Out::val(F80::zero(a.is_sign_negative()))
        } else {
            round(approx(a, 0.0), fcw)
        }
    };
    o.flags |= de;
    o
}

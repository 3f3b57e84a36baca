//! SSE, SSE2 and MMX instructions (Intel SDM Vol. 1 ch. 9–11, Vol. 2 instruction pages).
//!
//! Scope: what CPUID advertises (MMX, SSE, SSE2 — no SSE3 and later). Instructions of later
//! extensions fall through (`Ok(None)`) and end up as #UD.
//!
//! Floating point is computed by the small exact soft-float in [`sf`], not by host floating
//! point: every operation forms the exact result as a wide integer significand (plus a sticky
//! bit) and rounds it once, in the MXCSR rounding mode, with x86 semantics: tininess detected
//! after rounding, FTZ flushing tiny results (exact ones too) to zero with UE+PE when underflow
//! is masked, DAZ reading denormal operands as signed zeros, DE suppressed by NaN operands,
//! invalid operations and divide-by-zero, first-source NaN propagation with quieting, the
//! default NaN and integer indefinite. RCPPS/RSQRTPS are approximations by definition; Heron
//! returns the (nearly) exact value, see [`sf::rcp`].
//!
//! SIMD floating-point exceptions follow the SDM (§11.5.1): pre-computation exceptions (IE, DE,
//! ZE) of all elements are collected first; if one of them is unmasked only those flags are set
//! and #XM (or #UD when CR4.OSXMMEXCPT is clear) is raised. Otherwise post-computation flags
//! (OE, UE, PE) are added, and an unmasked one raises the exception. The destination is left
//! unchanged whenever the exception is raised.

use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};

use crate::exec::{sreg_index, Ctx};
use crate::flags::mask;
use crate::state::{cr, rf};
use crate::{vec, Exception, Res};

use sf::{Env, Fmt, F32, F64};

/// A 64-bit-exact soft-float for binary32/binary64 with x86 SSE semantics.
pub(crate) mod sf {
    use std::cmp::Ordering;

    /// MXCSR exception flag bits.
    pub const IE: u32 = 0x01;
    pub const DE: u32 = 0x02;
    pub const ZE: u32 = 0x04;
    pub const OE: u32 = 0x08;
    pub const UE: u32 = 0x10;
    pub const PE: u32 = 0x20;

    /// MXCSR.RC encodings.
    pub const RNE: u32 = 0;
    pub const RD: u32 = 1;
    pub const RU: u32 = 2;
    pub const RZ: u32 = 3;

    /// An IEEE binary interchange format.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Fmt {
        mbits: u32,
        ebits: u32,
    }

    /// binary32.
    pub const F32: Fmt = Fmt { mbits: 23, ebits: 8 };
    /// binary64.
    pub const F64: Fmt = Fmt { mbits: 52, ebits: 11 };

    impl Fmt {
        pub fn bits(self) -> u32 {
            self.mbits + self.ebits + 1
        }
        fn bias(self) -> i32 {
            (1 << (self.ebits - 1)) - 1
        }
        fn emin(self) -> i32 {
            1 - self.bias()
        }
        fn emax(self) -> i32 {
            self.bias()
        }
        pub fn sign(self) -> u64 {
            1 << (self.mbits + self.ebits)
        }
        fn exp_mask(self) -> u64 {
            ((1u64 << self.ebits) - 1) << self.mbits
        }
        fn frac_mask(self) -> u64 {
            (1u64 << self.mbits) - 1
        }
        pub fn qbit(self) -> u64 {
            1 << (self.mbits - 1)
        }
        /// The default NaN ("QNaN floating-point indefinite").
        pub fn default_nan(self) -> u64 {
            self.sign() | self.exp_mask() | self.qbit()
        }
        fn sgn(self, neg: bool) -> u64 {
            if neg {
                self.sign()
            } else {
                0
            }
        }
        fn inf(self, neg: bool) -> u64 {
            self.sgn(neg) | self.exp_mask()
        }
        fn max_finite(self, neg: bool) -> u64 {
            self.sgn(neg) | (self.exp_mask() - (1 << self.mbits)) | self.frac_mask()
        }
        pub fn is_nan(self, x: u64) -> bool {
            x & self.exp_mask() == self.exp_mask() && x & self.frac_mask() != 0
        }
        pub fn is_snan(self, x: u64) -> bool {
            self.is_nan(x) && x & self.qbit() == 0
        }
        pub fn is_inf(self, x: u64) -> bool {
            x & !self.sign() == self.exp_mask()
        }
        pub fn is_zero(self, x: u64) -> bool {
            x & !self.sign() == 0
        }
        pub fn is_denormal(self, x: u64) -> bool {
            x & self.exp_mask() == 0 && x & self.frac_mask() != 0
        }
        pub fn neg(self, x: u64) -> bool {
            x & self.sign() != 0
        }
        /// A finite value as (sign, exp, sig) with |x| = sig · 2^exp (sig = 0 for zeros).
        fn unpack(self, x: u64) -> (bool, i32, u128) {
            let e = ((x & self.exp_mask()) >> self.mbits) as i32;
            let frac = (x & self.frac_mask()) as u128;
            if e == 0 {
                (self.neg(x), self.emin() - self.mbits as i32, frac)
            } else {
                (self.neg(x), e - self.bias() - self.mbits as i32, frac | 1 << self.mbits)
            }
        }
        /// Like `unpack` for a non-zero value, with the significand's top bit at `mbits`.
        fn unpack_norm(self, x: u64) -> (i32, u128) {
            let (_, e, m) = self.unpack(x);
            let sh = self.mbits as i32 - msb(m);
            (e - sh, m << sh)
        }
        /// Total order key of a non-NaN value (both zeros compare equal).
        fn key(self, x: u64) -> i128 {
            let mag = (x & !self.sign()) as i128;
            if self.neg(x) {
                -mag
            } else {
                mag
            }
        }
    }

    fn msb(m: u128) -> i32 {
        127 - m.leading_zeros() as i32
    }

    /// Round sig·2^exp (plus a positive amount below half of 2^q when `sticky`) to a multiple of
    /// 2^q in rounding mode `rc`: (multiple, inexact). Callers pass `sticky` only when the
    /// significand has at least two bits below the rounding position, so the sticky part can
    /// never reach the rounding bit.
    fn rnd(sig: u128, exp: i32, sticky: bool, q: i32, rc: u32, neg: bool) -> (u128, bool) {
        let sh = q - exp;
        let (m, rbit, st) = if sh <= 0 {
            (sig << (-sh) as u32, false, sticky)
        } else if sh > 128 {
            (0, false, sig != 0 || sticky)
        } else {
            let sh = sh as u32;
            let m = if sh == 128 { 0 } else { sig >> sh };
            let rbit = (sig >> (sh - 1)) & 1 != 0;
            let low = if sh == 1 { 0 } else { sig & ((1u128 << (sh - 1)) - 1) };
            (m, rbit, sticky || low != 0)
        };
        let inexact = rbit || st;
        let up = match rc {
            RNE => rbit && (st || m & 1 != 0),
            RD => inexact && neg,
            RU => inexact && !neg,
            _ => false,
        };
        (m + up as u128, inexact)
    }

    /// Integer square root (floor).
    fn isqrt(n: u128) -> u128 {
        if n == 0 {
            return 0;
        }
        // Start from the host estimate (always within a few units for n < 2^112) and correct.
        let mut x = (n as f64).sqrt() as u128;
        while x * x > n {
            x -= 1;
        }
        while (x + 1) * (x + 1) <= n {
            x += 1;
        }
        x
    }

    /// The floating-point environment of one instruction: MXCSR controls plus the exception
    /// flags raised so far, split into pre-computation (IE, DE, ZE) and post-computation
    /// (OE, UE, PE) ones.
    #[derive(Clone, Copy, Debug)]
    pub struct Env {
        rc: u32,
        daz: bool,
        ftz: bool,
        /// MXCSR.OM and UM: with an unmasked overflow or underflow the result is not
        /// delivered, and PE reports whether rounding with an unbounded exponent was inexact
        /// (SDM Vol. 1 §11.5.2.4/§11.5.2.5: the handler gets that result scaled by 2^∓192).
        om: bool,
        um: bool,
        pub pre: u32,
        pub post: u32,
    }

    impl Env {
        pub fn new(mxcsr: u32) -> Self {
            Env { rc: (mxcsr >> 13) & 3, daz: mxcsr & 0x40 != 0, ftz: mxcsr & 0x8000 != 0, om: mxcsr & 0x400 != 0, um: mxcsr & 0x800 != 0, pre: 0, post: 0 }
        }

        /// Round the exact value (-1)^neg · (sig + sticky) · 2^exp to the format.
        pub fn round_pack(&mut self, f: Fmt, neg: bool, exp: i32, sig: u128, sticky: bool) -> u64 {
            let s = f.sgn(neg);
            if sig == 0 {
                return s;
            }
            let p = f.mbits as i32 + 1;
            let e = exp + msb(sig);
            // Rounding with unbounded exponent decides tininess (x86 detects it after rounding).
            let (m1, inexact1) = rnd(sig, exp, sticky, e - (p - 1), self.rc, neg);
            let (m1, e1) = if m1 >> p != 0 { (m1 >> 1, e + 1) } else { (m1, e) };
            if e1 >= f.emin() {
                if e1 > f.emax() {
                    self.post |= if self.om || inexact1 { OE | PE } else { OE };
                    let to_inf = match self.rc {
                        RNE => true,
                        RD => neg,
                        RU => !neg,
                        _ => false,
                    };
                    return if to_inf { f.inf(neg) } else { f.max_finite(neg) };
                }
                if inexact1 {
                    self.post |= PE;
                }
                return s | (((e1 + f.bias()) as u64) << f.mbits) | (m1 as u64 & f.frac_mask());
            }
            // Tiny.
            if !self.um {
                self.post |= if inexact1 { UE | PE } else { UE };
            } else if self.ftz {
                self.post |= UE | PE;
                return s;
            }
            let (m2, inexact2) = rnd(sig, exp, sticky, f.emin() - f.mbits as i32, self.rc, neg);
            if inexact2 && self.um {
                self.post |= UE | PE;
            }
            // A carry out of the denormal significand lands in the exponent field: min normal.
            s | m2 as u64
        }

        /// DAZ: a denormal reads as a zero of the same sign. Returns (value, is a denormal
        /// operand that may raise DE).
        fn daz(&self, f: Fmt, x: u64) -> (u64, bool) {
            if f.is_denormal(x) {
                if self.daz {
                    (x & f.sign(), false)
                } else {
                    (x, true)
                }
            } else {
                (x, false)
            }
        }

        fn de(&mut self, d: bool) {
            if d {
                self.pre |= DE;
            }
        }

        /// NaN operands of a two-operand arithmetic instruction: the first NaN source wins,
        /// quieted; an SNaN raises IE.
        fn nan2(&mut self, f: Fmt, a: u64, b: u64) -> Option<u64> {
            let (na, nb) = (f.is_nan(a), f.is_nan(b));
            if !na && !nb {
                return None;
            }
            if f.is_snan(a) || f.is_snan(b) {
                self.pre |= IE;
            }
            Some(if na { a | f.qbit() } else { b | f.qbit() })
        }

        fn invalid(&mut self, f: Fmt) -> u64 {
            self.pre |= IE;
            f.default_nan()
        }

        pub fn add(&mut self, f: Fmt, a: u64, b: u64) -> u64 {
            self.addsub(f, a, b, false)
        }

        pub fn sub(&mut self, f: Fmt, a: u64, b: u64) -> u64 {
            self.addsub(f, a, b, true)
        }

        fn addsub(&mut self, f: Fmt, a: u64, b: u64, sub: bool) -> u64 {
            if let Some(n) = self.nan2(f, a, b) {
                return n;
            }
            let (a, da) = self.daz(f, a);
            let (b, db) = self.daz(f, b);
            let b = if sub { b ^ f.sign() } else { b };
            let (sa, sb) = (f.neg(a), f.neg(b));
            if f.is_inf(a) || f.is_inf(b) {
                if f.is_inf(a) && f.is_inf(b) && sa != sb {
                    return self.invalid(f);
                }
                self.de(da || db);
                return if f.is_inf(a) { a } else { b };
            }
            self.de(da || db);
            let (_, ea, ma) = f.unpack(a);
            let (_, eb, mb) = f.unpack(b);
            let exact_zero = |rc: u32| if rc == RD { f.sign() } else { 0 };
            if ma == 0 && mb == 0 {
                return if sa == sb { a } else { exact_zero(self.rc) };
            }
            if ma == 0 {
                return self.round_pack(f, sb, eb, mb, false);
            }
            if mb == 0 {
                return self.round_pack(f, sa, ea, ma, false);
            }
            let (sa, ea, ma, sb, eb, mb) = if ea >= eb { (sa, ea, ma, sb, eb, mb) } else { (sb, eb, mb, sa, ea, ma) };
            let d = ea - eb;
            if d <= 70 {
                let x = ma << d;
                if sa == sb {
                    self.round_pack(f, sa, eb, x + mb, false)
                } else if x > mb {
                    self.round_pack(f, sa, eb, x - mb, false)
                } else if x < mb {
                    self.round_pack(f, sb, eb, mb - x, false)
                } else {
                    exact_zero(self.rc)
                }
            } else {
                // b lies entirely below the rounding position of a: it only acts as sticky.
                let x = ma << 3;
                if sa == sb {
                    self.round_pack(f, sa, ea - 3, x, true)
                } else {
                    self.round_pack(f, sa, ea - 3, x - 1, true)
                }
            }
        }

        pub fn mul(&mut self, f: Fmt, a: u64, b: u64) -> u64 {
            if let Some(n) = self.nan2(f, a, b) {
                return n;
            }
            let (a, da) = self.daz(f, a);
            let (b, db) = self.daz(f, b);
            let neg = f.neg(a) != f.neg(b);
            if f.is_inf(a) || f.is_inf(b) {
                if f.is_zero(a) || f.is_zero(b) {
                    return self.invalid(f);
                }
                self.de(da || db);
                return f.inf(neg);
            }
            self.de(da || db);
            let (_, ea, ma) = f.unpack(a);
            let (_, eb, mb) = f.unpack(b);
            if ma == 0 || mb == 0 {
                return f.sgn(neg);
            }
            self.round_pack(f, neg, ea + eb, ma * mb, false)
        }

        pub fn div(&mut self, f: Fmt, a: u64, b: u64) -> u64 {
            if let Some(n) = self.nan2(f, a, b) {
                return n;
            }
            let (a, da) = self.daz(f, a);
            let (b, db) = self.daz(f, b);
            let neg = f.neg(a) != f.neg(b);
            if f.is_inf(a) {
                if f.is_inf(b) {
                    return self.invalid(f);
                }
                self.de(db);
                return f.inf(neg);
            }
            if f.is_inf(b) {
                self.de(da);
                return f.sgn(neg);
            }
            if f.is_zero(b) {
                if f.is_zero(a) {
                    return self.invalid(f);
                }
                // Divide-by-zero takes priority over (and suppresses) the denormal exception.
                self.pre |= ZE;
                return f.inf(neg);
            }
            self.de(da || db);
            if f.is_zero(a) {
                return f.sgn(neg);
            }
            let (ea, ma) = f.unpack_norm(a);
            let (eb, mb) = f.unpack_norm(b);
            let k = f.mbits + 3;
            let num = ma << k;
            let (q, r) = (num / mb, num % mb);
            self.round_pack(f, neg, ea - eb - k as i32, q, r != 0)
        }

        pub fn sqrt(&mut self, f: Fmt, x: u64) -> u64 {
            if f.is_nan(x) {
                if f.is_snan(x) {
                    self.pre |= IE;
                }
                return x | f.qbit();
            }
            let (x, dx) = self.daz(f, x);
            if f.is_zero(x) {
                return x;
            }
            if f.neg(x) {
                return self.invalid(f);
            }
            self.de(dx);
            if f.is_inf(x) {
                return x;
            }
            let (e, m) = f.unpack_norm(x);
            let (e, m) = if e & 1 != 0 { (e - 1, m << 1) } else { (e, m) };
            let s = (f.mbits + 5) & !1;
            let r = m << s;
            let q = isqrt(r);
            self.round_pack(f, false, (e - s as i32) / 2, q, q * q != r)
        }

        /// MIN (max = false) / MAX: the second operand when either is a NaN (IE, even for
        /// QNaNs) or both are zeros; DAZ-flushed values are what gets returned (also when the
        /// other operand is a NaN, as hardware does).
        pub fn minmax(&mut self, f: Fmt, a: u64, b: u64, max: bool) -> u64 {
            let (a, da) = self.daz(f, a);
            let (b, db) = self.daz(f, b);
            if f.is_nan(a) || f.is_nan(b) {
                self.pre |= IE;
                return b;
            }
            self.de(da || db);
            let first = if max { f.key(a) > f.key(b) } else { f.key(a) < f.key(b) };
            if first {
                a
            } else {
                b
            }
        }

        pub fn min(&mut self, f: Fmt, a: u64, b: u64) -> u64 {
            self.minmax(f, a, b, false)
        }

        pub fn max(&mut self, f: Fmt, a: u64, b: u64) -> u64 {
            self.minmax(f, a, b, true)
        }

        /// Compare; `None` = unordered. SNaNs always raise IE, QNaNs only when `signal_qnan`.
        pub fn compare(&mut self, f: Fmt, a: u64, b: u64, signal_qnan: bool) -> Option<Ordering> {
            if f.is_nan(a) || f.is_nan(b) {
                if signal_qnan || f.is_snan(a) || f.is_snan(b) {
                    self.pre |= IE;
                }
                return None;
            }
            let (a, da) = self.daz(f, a);
            let (b, db) = self.daz(f, b);
            self.de(da || db);
            Some(f.key(a).cmp(&f.key(b)))
        }

        /// Floating-point format conversion (CVTSS2SD, CVTSD2SS, ...).
        pub fn f2f(&mut self, from: Fmt, to: Fmt, x: u64) -> u64 {
            let neg = from.neg(x);
            if from.is_nan(x) {
                if from.is_snan(x) {
                    self.pre |= IE;
                }
                let frac = x & from.frac_mask();
                let frac = if to.mbits >= from.mbits { frac << (to.mbits - from.mbits) } else { frac >> (from.mbits - to.mbits) };
                return to.sgn(neg) | to.exp_mask() | frac | to.qbit();
            }
            let (x, dx) = self.daz(from, x);
            if from.is_inf(x) {
                return to.inf(neg);
            }
            self.de(dx);
            let (_, e, m) = from.unpack(x);
            self.round_pack(to, neg, e, m, false)
        }

        /// Signed integer to floating point (may be inexact).
        pub fn i2f(&mut self, to: Fmt, v: i64) -> u64 {
            self.round_pack(to, v < 0, 0, v.unsigned_abs() as u128, false)
        }

        /// Floating point to a `bits`-bit signed integer, rounding per MXCSR or truncating.
        /// NaN, infinity and out-of-range values give the integer indefinite with IE. Denormal
        /// sources never raise DE here (but DAZ applies).
        pub fn f2i(&mut self, from: Fmt, x: u64, bits: u32, trunc: bool) -> u64 {
            let indef = 1u64 << (bits - 1);
            if from.is_nan(x) || from.is_inf(x) {
                self.pre |= IE;
                return indef;
            }
            let (x, _) = self.daz(from, x);
            let (neg, e, m) = from.unpack(x);
            if m == 0 {
                return 0;
            }
            if e + msb(m) >= 64 {
                self.pre |= IE;
                return indef;
            }
            let rc = if trunc { RZ } else { self.rc };
            let (r, inexact) = rnd(m, e, false, 0, rc, neg);
            let limit = if neg { 1u128 << (bits - 1) } else { (1u128 << (bits - 1)) - 1 };
            if r > limit {
                self.pre |= IE;
                return indef;
            }
            if inexact {
                self.post |= PE;
            }
            let v = r as u64;
            (if neg { v.wrapping_neg() } else { v }) & super::mask(bits / 8)
        }
    }

    /// RCPSS/RCPPS. The architecture only promises |relative error| ≤ 1.5·2^-12 and real
    /// implementations differ in the low bits (Intel and AMD use different tables). Heron
    /// returns 1/x computed in binary64 and rounded to nearest binary32 (error < 2^-24), with
    /// the architectural special cases: denormal inputs read as ±0 (→ ±∞), tiny results are
    /// flushed to ±0, NaNs are quieted; MXCSR is neither consulted nor updated.
    pub fn rcp(x: u32) -> u32 {
        let f = F32;
        let xb = x as u64;
        if f.is_nan(xb) {
            return x | f.qbit() as u32;
        }
        let neg = f.neg(xb);
        if f.is_zero(xb) || f.is_denormal(xb) {
            return f.inf(neg) as u32;
        }
        if f.is_inf(xb) {
            return f.sgn(neg) as u32;
        }
        let r = (1.0f64 / f32::from_bits(x) as f64) as f32;
        flush_tiny(r)
    }

    /// RSQRTSS/RSQRTPS, the same way as [`rcp`]: 1/sqrt(x) computed in binary64, rounded to
    /// binary32. ±0 and denormals → ±∞, negative → default NaN, +∞ → +0, NaNs quieted.
    pub fn rsqrt(x: u32) -> u32 {
        let f = F32;
        let xb = x as u64;
        if f.is_nan(xb) {
            return x | f.qbit() as u32;
        }
        let neg = f.neg(xb);
        if f.is_zero(xb) || f.is_denormal(xb) {
            return f.inf(neg) as u32;
        }
        if neg {
            return f.default_nan() as u32;
        }
        if f.is_inf(xb) {
            return 0;
        }
        let r = (1.0f64 / (f32::from_bits(x) as f64).sqrt()) as f32;
        flush_tiny(r)
    }

    fn flush_tiny(r: f32) -> u32 {
        if r.is_subnormal() {
            r.to_bits() & 0x8000_0000
        } else {
            r.to_bits()
        }
    }
}

// ---- lane helpers ----

/// Lane `k` of `bits` bits.
#[inline]
fn lane(v: u128, bits: u32, k: u32) -> u64 {
    (v >> (bits * k)) as u64 & mask(bits / 8)
}

/// Replace lane `k` of `bits` bits.
#[inline]
fn set_lane(v: u128, bits: u32, k: u32, x: u64) -> u128 {
    let m = (mask(bits / 8) as u128) << (bits * k);
    (v & !m) | (((x & mask(bits / 8)) as u128) << (bits * k))
}

/// Element-wise `f` over `w`-byte vectors of `es`-byte elements.
#[inline]
fn map2(a: u128, b: u128, es: u32, w: u32, f: impl Fn(u64, u64) -> u64) -> u128 {
    let bits = es * 8;
    let mut r = 0u128;
    for k in 0..w / es {
        r = set_lane(r, bits, k, f(lane(a, bits, k), lane(b, bits, k)));
    }
    r
}

/// Sign-extend an `es`-byte element.
#[inline]
fn sx(v: u64, es: u32) -> i64 {
    crate::flags::sext(v, es) as i64
}

/// Signed saturation to `es` bytes.
#[inline]
fn sat_s(v: i64, es: u32) -> u64 {
    let hi = (1i64 << (es * 8 - 1)) - 1;
    let lo = -(1i64 << (es * 8 - 1));
    v.clamp(lo, hi) as u64 & mask(es)
}

/// Unsigned saturation to `es` bytes.
#[inline]
fn sat_u(v: i64, es: u32) -> u64 {
    v.clamp(0, mask(es) as i64) as u64
}

/// PACKSS/PACKUS: `es`-byte elements of a then b narrowed to `es/2` bytes by `f`.
fn pack(a: u128, b: u128, es: u32, w: u32, f: impl Fn(u64) -> u64) -> u128 {
    let n = w / es;
    let (sb, db) = (es * 8, es * 4);
    let mut r = 0u128;
    for k in 0..n {
        r = set_lane(r, db, k, f(lane(a, sb, k)));
        r = set_lane(r, db, n + k, f(lane(b, sb, k)));
    }
    r
}

/// PUNPCKL/PUNPCKH, UNPCKL/UNPCKH: interleave the low (or high) halves of a and b.
fn unpack(a: u128, b: u128, es: u32, w: u32, high: bool) -> u128 {
    let n = w / 2 / es;
    let base = if high { n } else { 0 };
    let bits = es * 8;
    let mut r = 0u128;
    for k in 0..n {
        r = set_lane(r, bits, 2 * k, lane(a, bits, base + k));
        r = set_lane(r, bits, 2 * k + 1, lane(b, bits, base + k));
    }
    r
}

fn psll(a: u128, count: u64, es: u32, w: u32) -> u128 {
    if count >= es as u64 * 8 {
        0
    } else {
        map2(a, 0, es, w, |x, _| x << count)
    }
}

fn psrl(a: u128, count: u64, es: u32, w: u32) -> u128 {
    if count >= es as u64 * 8 {
        0
    } else {
        map2(a, 0, es, w, |x, _| x >> count)
    }
}

fn psra(a: u128, count: u64, es: u32, w: u32) -> u128 {
    let c = count.min(es as u64 * 8 - 1);
    map2(a, 0, es, w, |x, _| (sx(x, es) >> c) as u64)
}

/// Truncate to the vector width (8 bytes for MMX, 16 for XMM).
#[inline]
fn wmask(v: u128, w: u32) -> u128 {
    if w == 16 {
        v
    } else {
        v & u64::MAX as u128
    }
}

type IntOp = fn(u128, u128, u32) -> u128;

/// The element-wise integer (and bitwise) operations sharing the dst = f(dst, src) shape.
fn int_op(m: Mnemonic) -> Option<IntOp> {
    use Mnemonic as M;
    Some(match m {
        M::Paddb => |a, b, w| map2(a, b, 1, w, |x, y| x.wrapping_add(y)),
        M::Paddw => |a, b, w| map2(a, b, 2, w, |x, y| x.wrapping_add(y)),
        M::Paddd => |a, b, w| map2(a, b, 4, w, |x, y| x.wrapping_add(y)),
        M::Paddq => |a, b, w| map2(a, b, 8, w, |x, y| x.wrapping_add(y)),
        M::Psubb => |a, b, w| map2(a, b, 1, w, |x, y| x.wrapping_sub(y)),
        M::Psubw => |a, b, w| map2(a, b, 2, w, |x, y| x.wrapping_sub(y)),
        M::Psubd => |a, b, w| map2(a, b, 4, w, |x, y| x.wrapping_sub(y)),
        M::Psubq => |a, b, w| map2(a, b, 8, w, |x, y| x.wrapping_sub(y)),
        M::Paddsb => |a, b, w| map2(a, b, 1, w, |x, y| sat_s(sx(x, 1) + sx(y, 1), 1)),
        M::Paddsw => |a, b, w| map2(a, b, 2, w, |x, y| sat_s(sx(x, 2) + sx(y, 2), 2)),
        M::Psubsb => |a, b, w| map2(a, b, 1, w, |x, y| sat_s(sx(x, 1) - sx(y, 1), 1)),
        M::Psubsw => |a, b, w| map2(a, b, 2, w, |x, y| sat_s(sx(x, 2) - sx(y, 2), 2)),
        M::Paddusb => |a, b, w| map2(a, b, 1, w, |x, y| sat_u(x as i64 + y as i64, 1)),
        M::Paddusw => |a, b, w| map2(a, b, 2, w, |x, y| sat_u(x as i64 + y as i64, 2)),
        M::Psubusb => |a, b, w| map2(a, b, 1, w, |x, y| sat_u(x as i64 - y as i64, 1)),
        M::Psubusw => |a, b, w| map2(a, b, 2, w, |x, y| sat_u(x as i64 - y as i64, 2)),
        M::Pcmpeqb => |a, b, w| map2(a, b, 1, w, |x, y| if x == y { !0 } else { 0 }),
        M::Pcmpeqw => |a, b, w| map2(a, b, 2, w, |x, y| if x == y { !0 } else { 0 }),
        M::Pcmpeqd => |a, b, w| map2(a, b, 4, w, |x, y| if x == y { !0 } else { 0 }),
        M::Pcmpgtb => |a, b, w| map2(a, b, 1, w, |x, y| if sx(x, 1) > sx(y, 1) { !0 } else { 0 }),
        M::Pcmpgtw => |a, b, w| map2(a, b, 2, w, |x, y| if sx(x, 2) > sx(y, 2) { !0 } else { 0 }),
        M::Pcmpgtd => |a, b, w| map2(a, b, 4, w, |x, y| if sx(x, 4) > sx(y, 4) { !0 } else { 0 }),
        M::Pand | M::Andps | M::Andpd => |a, b, _| a & b,
        M::Pandn | M::Andnps | M::Andnpd => |a, b, w| wmask(!a & b, w),
        M::Por | M::Orps | M::Orpd => |a, b, _| a | b,
        M::Pxor | M::Xorps | M::Xorpd => |a, b, _| a ^ b,
        M::Pmullw => |a, b, w| map2(a, b, 2, w, |x, y| x * y),
        M::Pmulhw => |a, b, w| map2(a, b, 2, w, |x, y| ((sx(x, 2) * sx(y, 2)) >> 16) as u64),
        M::Pmulhuw => |a, b, w| map2(a, b, 2, w, |x, y| (x * y) >> 16),
        M::Pmuludq => |a, b, w| map2(a, b, 8, w, |x, y| (x & 0xFFFF_FFFF) * (y & 0xFFFF_FFFF)),
        M::Pmaddwd => |a, b, w| {
            map2(a, b, 4, w, |x, y| (sx(x, 2) * sx(y, 2) + sx(x >> 16, 2) * sx(y >> 16, 2)) as u64)
        },
        M::Pminub => |a, b, w| map2(a, b, 1, w, |x, y| x.min(y)),
        M::Pmaxub => |a, b, w| map2(a, b, 1, w, |x, y| x.max(y)),
        M::Pminsw => |a, b, w| map2(a, b, 2, w, |x, y| sx(x, 2).min(sx(y, 2)) as u64),
        M::Pmaxsw => |a, b, w| map2(a, b, 2, w, |x, y| sx(x, 2).max(sx(y, 2)) as u64),
        M::Pavgb => |a, b, w| map2(a, b, 1, w, |x, y| (x + y + 1) >> 1),
        M::Pavgw => |a, b, w| map2(a, b, 2, w, |x, y| (x + y + 1) >> 1),
        M::Psadbw => |a, b, w| {
            map2(a, b, 8, w, |x, y| (0..8).map(|k| ((x >> (8 * k)) as u8).abs_diff((y >> (8 * k)) as u8) as u64).sum())
        },
        M::Packsswb => |a, b, w| pack(a, b, 2, w, |v| sat_s(sx(v, 2), 1)),
        M::Packssdw => |a, b, w| pack(a, b, 4, w, |v| sat_s(sx(v, 4), 2)),
        M::Packuswb => |a, b, w| pack(a, b, 2, w, |v| sat_u(sx(v, 2), 1)),
        M::Punpcklbw => |a, b, w| unpack(a, b, 1, w, false),
        M::Punpcklwd => |a, b, w| unpack(a, b, 2, w, false),
        M::Punpckldq | M::Unpcklps => |a, b, w| unpack(a, b, 4, w, false),
        M::Punpcklqdq | M::Unpcklpd => |a, b, w| unpack(a, b, 8, w, false),
        M::Punpckhbw => |a, b, w| unpack(a, b, 1, w, true),
        M::Punpckhwd => |a, b, w| unpack(a, b, 2, w, true),
        M::Punpckhdq | M::Unpckhps => |a, b, w| unpack(a, b, 4, w, true),
        M::Punpckhqdq | M::Unpckhpd => |a, b, w| unpack(a, b, 8, w, true),
        M::Psllw => |a, b, w| psll(a, b as u64, 2, w),
        M::Pslld => |a, b, w| psll(a, b as u64, 4, w),
        M::Psllq => |a, b, w| psll(a, b as u64, 8, w),
        M::Psrlw => |a, b, w| psrl(a, b as u64, 2, w),
        M::Psrld => |a, b, w| psrl(a, b as u64, 4, w),
        M::Psrlq => |a, b, w| psrl(a, b as u64, 8, w),
        M::Psraw => |a, b, w| psra(a, b as u64, 2, w),
        M::Psrad => |a, b, w| psra(a, b as u64, 4, w),
        M::Pslldq => |a, b, _| if b as u64 > 15 { 0 } else { a << (8 * b as u32) },
        M::Psrldq => |a, b, _| if b as u64 > 15 { 0 } else { a >> (8 * b as u32) },
        _ => return None,
    })
}

type FpOp = fn(&mut Env, Fmt, u64, u64) -> u64;

/// The dst = f(dst, src) floating-point operations: (op, format, scalar).
fn fp_op(m: Mnemonic) -> Option<(FpOp, Fmt, bool)> {
    use Mnemonic as M;
    let add: FpOp = Env::add;
    let sub: FpOp = Env::sub;
    let mul: FpOp = Env::mul;
    let div: FpOp = Env::div;
    let min: FpOp = Env::min;
    let max: FpOp = Env::max;
    let sqrt: FpOp = |e, f, _, b| e.sqrt(f, b);
    Some(match m {
        M::Addps => (add, F32, false),
        M::Addss => (add, F32, true),
        M::Addpd => (add, F64, false),
        M::Addsd => (add, F64, true),
        M::Subps => (sub, F32, false),
        M::Subss => (sub, F32, true),
        M::Subpd => (sub, F64, false),
        M::Subsd => (sub, F64, true),
        M::Mulps => (mul, F32, false),
        M::Mulss => (mul, F32, true),
        M::Mulpd => (mul, F64, false),
        M::Mulsd => (mul, F64, true),
        M::Divps => (div, F32, false),
        M::Divss => (div, F32, true),
        M::Divpd => (div, F64, false),
        M::Divsd => (div, F64, true),
        M::Minps => (min, F32, false),
        M::Minss => (min, F32, true),
        M::Minpd => (min, F64, false),
        M::Minsd => (min, F64, true),
        M::Maxps => (max, F32, false),
        M::Maxss => (max, F32, true),
        M::Maxpd => (max, F64, false),
        M::Maxsd => (max, F64, true),
        M::Sqrtps => (sqrt, F32, false),
        M::Sqrtss => (sqrt, F32, true),
        M::Sqrtpd => (sqrt, F64, false),
        M::Sqrtsd => (sqrt, F64, true),
        _ => return None,
    })
}

/// MXCSR bits that may be set (MXCSR_MASK as reported by FXSAVE: DAZ supported).
pub const MXCSR_MASK: u32 = 0xFFFF;

impl Ctx<'_> {
    /// Execute an SSE/SSE2/MMX instruction; `Ok(None)` if `i` is not one.
    pub fn exec_sse(&mut self, i: &Instruction) -> Res<Option<()>> {
        // A memory fault leaves the x87 state as it was: the x87→MMX transition (TOP = 0, all
        // tags valid) comes after the operands are read. A SIMD floating-point exception (#XM)
        // comes after the transition (as on the AMD host).
        let saved = self.s.x87;
        let r = self.exec_sse_insn(i);
        if r.as_ref().is_err_and(|e| e.vector != vec::XM) {
            self.s.x87 = saved;
        }
        r
    }

    fn exec_sse_insn(&mut self, i: &Instruction) -> Res<Option<()>> {
        use Mnemonic as M;
        let m = i.mnemonic();
        match m {
            // The string instructions share these mnemonics.
            M::Movsd | M::Cmpsd if !self.has_xmm(i) => return Ok(None),
            // SSE4.1's memory form of PEXTRW.
            M::Pextrw if matches!(i.code(), Code::Pextrw_r32m16_xmm_imm8 | Code::Pextrw_r64m16_xmm_imm8) => return Ok(None),
            M::Movnti => {
                // A plain GPR store with a non-temporal hint: no CR0/CR4 checks apply.
                if i.has_lock_prefix() {
                    return Err(Exception::ud());
                }
                let size = self.op_size(i, 1);
                let v = self.get_reg(i.op1_register());
                self.write_op(i, 0, size, v)?;
                return Ok(Some(()));
            }
            _ => {}
        }
        if let Some(f) = int_op(m) {
            self.prologue(i, m)?;
            self.int_bin(i, f)?;
            return Ok(Some(()));
        }
        if let Some((op, f, scalar)) = fp_op(m) {
            self.prologue(i, m)?;
            self.fp_bin(i, f, scalar, op)?;
            return Ok(Some(()));
        }
        match m {
            M::Cmpps | M::Cmpss | M::Cmppd | M::Cmpsd => {
                self.prologue(i, m)?;
                let f = if matches!(m, M::Cmpps | M::Cmpss) { F32 } else { F64 };
                self.fp_cmp(i, f, matches!(m, M::Cmpss | M::Cmpsd))?;
            }
            M::Comiss | M::Ucomiss | M::Comisd | M::Ucomisd => {
                self.prologue(i, m)?;
                let f = if matches!(m, M::Comiss | M::Ucomiss) { F32 } else { F64 };
                self.comis(i, f, matches!(m, M::Comiss | M::Comisd))?;
            }
            M::Movaps | M::Movapd | M::Movdqa | M::Movups | M::Movupd | M::Movdqu | M::Movntps | M::Movntpd | M::Movntdq => {
                self.prologue(i, m)?;
                if i.op0_kind() == OpKind::Register {
                    let v = self.xsrc(i, 1)?;
                    self.s.xmm[i.op0_register().number()] = v;
                } else {
                    let v = self.s.xmm[i.op1_register().number()];
                    self.xstore(i, v)?;
                }
            }
            M::Movss | M::Movsd => {
                self.prologue(i, m)?;
                let bits = if m == M::Movss { 32 } else { 64 };
                if i.op0_kind() == OpKind::Register {
                    let d = i.op0_register().number();
                    if i.op1_kind() == OpKind::Register {
                        let v = lane(self.s.xmm[i.op1_register().number()], bits, 0);
                        self.s.xmm[d] = set_lane(self.s.xmm[d], bits, 0, v);
                    } else {
                        self.s.xmm[d] = self.xsrc(i, 1)?;
                    }
                } else {
                    let v = self.s.xmm[i.op1_register().number()];
                    self.xstore(i, v)?;
                }
            }
            M::Movlps | M::Movlpd | M::Movhps | M::Movhpd => {
                self.prologue(i, m)?;
                let k = if matches!(m, M::Movlps | M::Movlpd) { 0 } else { 1 };
                if i.op0_kind() == OpKind::Register {
                    let d = i.op0_register().number();
                    let v = self.xsrc(i, 1)? as u64;
                    self.s.xmm[d] = set_lane(self.s.xmm[d], 64, k, v);
                } else {
                    let v = lane(self.s.xmm[i.op1_register().number()], 64, k);
                    self.xstore(i, v as u128)?;
                }
            }
            M::Movhlps | M::Movlhps => {
                self.prologue(i, m)?;
                let d = i.op0_register().number();
                let s = self.s.xmm[i.op1_register().number()];
                self.s.xmm[d] = if m == M::Movhlps {
                    set_lane(self.s.xmm[d], 64, 0, lane(s, 64, 1))
                } else {
                    set_lane(self.s.xmm[d], 64, 1, lane(s, 64, 0))
                };
            }
            M::Movd | M::Movq => {
                self.prologue(i, m)?;
                self.movdq(i)?;
            }
            M::Movq2dq => {
                self.prologue(i, m)?;
                let v = self.get_mm(i.op1_register());
                self.s.xmm[i.op0_register().number()] = v as u128;
            }
            M::Movdq2q => {
                self.prologue(i, m)?;
                let v = self.s.xmm[i.op1_register().number()] as u64;
                self.set_mm(i.op0_register(), v);
            }
            M::Movntq => {
                self.prologue(i, m)?;
                let v = self.get_mm(i.op1_register());
                self.write_op(i, 0, 8, v)?;
            }
            M::Movmskps | M::Movmskpd | M::Pmovmskb => {
                self.prologue(i, m)?;
                let src = i.op1_register();
                let (v, w) = if src.is_mm() { (self.get_mm(src) as u128, 8) } else { (self.s.xmm[src.number()], 16) };
                let es = match m {
                    M::Movmskps => 4,
                    M::Movmskpd => 8,
                    _ => 1,
                };
                let mut r = 0u64;
                for k in 0..w / es {
                    r |= ((lane(v, es * 8, k) >> (es * 8 - 1)) & 1) << k;
                }
                self.set_reg(i.op0_register(), r);
            }
            M::Maskmovdqu | M::Maskmovq => {
                self.prologue(i, m)?;
                self.maskmov(i)?;
            }
            M::Ldmxcsr => {
                self.prologue(i, m)?;
                let la = self.mem_lin(i, 4, false)?;
                let v = self.read_lin(la, 4)? as u32;
                if v & !MXCSR_MASK != 0 {
                    return Err(Exception::gp(0));
                }
                self.s.mxcsr = v;
            }
            M::Stmxcsr => {
                self.prologue(i, m)?;
                let v = self.s.mxcsr as u64;
                self.write_op(i, 0, 4, v)?;
            }
            M::Emms => {
                self.prologue(i, m)?;
                self.s.x87.ftw = 0xFFFF;
            }
            M::Pshufd | M::Pshuflw | M::Pshufhw | M::Pshufw => {
                self.prologue(i, m)?;
                let imm = i.immediate(2) as u32;
                let sel = |k: u32| (imm >> (2 * k)) & 3;
                if m == M::Pshufw {
                    let s = self.msrc(i, 1)? as u128;
                    let r = (0..4).fold(0u128, |r, k| set_lane(r, 16, k, lane(s, 16, sel(k))));
                    self.set_mm(i.op0_register(), r as u64);
                } else {
                    let s = self.xsrc(i, 1)?;
                    let r = match m {
                        M::Pshufd => (0..4).fold(0u128, |r, k| set_lane(r, 32, k, lane(s, 32, sel(k)))),
                        M::Pshuflw => (0..4).fold(s, |r, k| set_lane(r, 16, k, lane(s, 16, sel(k)))),
                        _ => (0..4).fold(s, |r, k| set_lane(r, 16, 4 + k, lane(s, 16, 4 + sel(k)))),
                    };
                    self.s.xmm[i.op0_register().number()] = r;
                }
            }
            M::Shufps | M::Shufpd => {
                self.prologue(i, m)?;
                let d = i.op0_register().number();
                let a = self.s.xmm[d];
                let b = self.xsrc(i, 1)?;
                let imm = i.immediate(2) as u32;
                self.s.xmm[d] = if m == M::Shufps {
                    let sel = |k: u32| (imm >> (2 * k)) & 3;
                    let mut r = set_lane(0, 32, 0, lane(a, 32, sel(0)));
                    r = set_lane(r, 32, 1, lane(a, 32, sel(1)));
                    r = set_lane(r, 32, 2, lane(b, 32, sel(2)));
                    set_lane(r, 32, 3, lane(b, 32, sel(3)))
                } else {
                    set_lane(set_lane(0, 64, 0, lane(a, 64, imm & 1)), 64, 1, lane(b, 64, (imm >> 1) & 1))
                };
            }
            M::Pextrw => {
                self.prologue(i, m)?;
                let src = i.op1_register();
                let imm = i.immediate(2) as u32;
                let v = if src.is_mm() { lane(self.get_mm(src) as u128, 16, imm & 3) } else { lane(self.s.xmm[src.number()], 16, imm & 7) };
                self.set_reg(i.op0_register(), v);
            }
            M::Pinsrw => {
                self.prologue(i, m)?;
                let v = if i.op1_kind() == OpKind::Register { self.get_reg(i.op1_register()) } else { self.read_op(i, 1, 2)? };
                let imm = i.immediate(2) as u32;
                let d = i.op0_register();
                if d.is_mm() {
                    let r = set_lane(self.get_mm(d) as u128, 16, imm & 3, v);
                    self.set_mm(d, r as u64);
                } else {
                    self.s.xmm[d.number()] = set_lane(self.s.xmm[d.number()], 16, imm & 7, v);
                }
            }
            M::Rcpps | M::Rcpss | M::Rsqrtps | M::Rsqrtss => {
                self.prologue(i, m)?;
                let d = i.op0_register().number();
                let s = self.xsrc(i, 1)?;
                let f: fn(u32) -> u32 = if matches!(m, M::Rcpps | M::Rcpss) { sf::rcp } else { sf::rsqrt };
                let n = if matches!(m, M::Rcpps | M::Rsqrtps) { 4 } else { 1 };
                let mut r = self.s.xmm[d];
                for k in 0..n {
                    r = set_lane(r, 32, k, f(lane(s, 32, k) as u32) as u64);
                }
                self.s.xmm[d] = r;
            }
            M::Cvtsi2ss | M::Cvtsi2sd | M::Cvtss2si | M::Cvtsd2si | M::Cvttss2si | M::Cvttsd2si | M::Cvtss2sd | M::Cvtsd2ss | M::Cvtps2pd
            | M::Cvtpd2ps | M::Cvtdq2ps | M::Cvtps2dq | M::Cvttps2dq | M::Cvtdq2pd | M::Cvtpd2dq | M::Cvttpd2dq | M::Cvtpi2ps | M::Cvtps2pi
            | M::Cvttps2pi | M::Cvtpi2pd | M::Cvtpd2pi | M::Cvttpd2pi => {
                self.prologue(i, m)?;
                self.convert(i, m)?;
            }
            _ => return Ok(None),
        }
        Ok(Some(()))
    }

    fn has_xmm(&self, i: &Instruction) -> bool {
        (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Register && i.op_register(n).is_xmm())
    }

    /// Availability checks (#UD for CR0.EM / CR4.OSFXSR clear / LOCK, #NM for CR0.TS, #MF for
    /// a pending x87 exception before MMX instructions) and the x87→MMX transition.
    fn prologue(&mut self, i: &Instruction, m: Mnemonic) -> Res<()> {
        use Mnemonic as M;
        if i.has_lock_prefix() {
            return Err(Exception::ud());
        }
        // CVTPI2PS/CVTPI2PD with a memory source touch no MMX register and make no
        // transition (as the AMD host does; checked by tests/conformance.rs).
        let mut mmx = false;
        let mut sse = matches!(m, M::Ldmxcsr | M::Stmxcsr);
        for n in 0..i.op_count() {
            if i.op_kind(n) == OpKind::Register {
                let r = i.op_register(n);
                mmx |= r.is_mm();
                sse |= r.is_xmm();
            }
        }
        let emms = m == M::Emms;
        if self.s.cr0 & cr::CR0_EM != 0 || (sse && self.s.cr4 & cr::CR4_OSFXSR == 0) {
            return Err(Exception::ud());
        }
        if self.s.cr0 & cr::CR0_TS != 0 {
            return Err(Exception::new(vec::NM));
        }
        if mmx || emms {
            if self.s.x87.fsw & 0x80 != 0 && self.s.cr0 & cr::CR0_NE != 0 {
                return Err(Exception::new(vec::MF));
            }
            if mmx {
                self.s.x87.top = 0;
                self.s.x87.ftw = 0;
            }
        }
        Ok(())
    }

    // ---- registers and memory ----

    fn get_mm(&self, r: Register) -> u64 {
        let b = &self.s.x87.regs[r.number()];
        u64::from_le_bytes(b[..8].try_into().unwrap())
    }

    /// Write an MMX register: the low 64 bits of the aliased x87 register, exponent all ones.
    fn set_mm(&mut self, r: Register, v: u64) {
        let b = &mut self.s.x87.regs[r.number()];
        b[..8].copy_from_slice(&v.to_le_bytes());
        b[8] = 0xFF;
        b[9] = 0xFF;
    }

    fn lin_add(&self, la: u64, n: u64) -> u64 {
        let a = la.wrapping_add(n);
        if self.s.efer & cr::EFER_LMA != 0 {
            a
        } else {
            a & 0xFFFF_FFFF
        }
    }

    /// Read 16 bytes at linear `la`.
    pub fn read_lin128(&mut self, la: u64) -> Res<u128> {
        let lo = self.read_lin(la, 8)?;
        let hi = self.read_lin(self.lin_add(la, 8), 8)?;
        Ok(lo as u128 | (hi as u128) << 64)
    }

    /// Write 16 bytes at linear `la`; faults before anything is written.
    pub fn write_lin128(&mut self, la: u64, v: u128) -> Res<()> {
        self.probe_write(la, 16)?;
        self.write_lin(la, 8, v as u64)?;
        self.write_lin(self.lin_add(la, 8), 8, (v >> 64) as u64)
    }

    /// 16-byte memory operands must be aligned except for the explicitly unaligned moves.
    fn check_align(i: &Instruction, la: u64) -> Res<()> {
        use Mnemonic as M;
        if la & 15 != 0 && !matches!(i.mnemonic(), M::Movups | M::Movupd | M::Movdqu) {
            return Err(Exception::gp(0));
        }
        Ok(())
    }

    /// Source operand `n`: an XMM register, or memory of the instruction's memory size
    /// (zero-extended; 16-byte operands alignment-checked).
    fn xsrc(&mut self, i: &Instruction, n: u32) -> Res<u128> {
        if i.op_kind(n) == OpKind::Register {
            return Ok(self.s.xmm[i.op_register(n).number()]);
        }
        let size = i.memory_size().size() as u32;
        let la = self.mem_lin(i, size, false)?;
        if size == 16 {
            Self::check_align(i, la)?;
            self.read_lin128(la)
        } else {
            Ok(self.read_lin(la, size)? as u128)
        }
    }

    /// Source operand `n`: an MMX register or memory (≤ 8 bytes, zero-extended).
    fn msrc(&mut self, i: &Instruction, n: u32) -> Res<u64> {
        if i.op_kind(n) == OpKind::Register {
            return Ok(self.get_mm(i.op_register(n)));
        }
        let size = i.memory_size().size() as u32;
        let la = self.mem_lin(i, size, false)?;
        self.read_lin(la, size)
    }

    /// Store the low bytes of `v` to the memory destination (operand 0), of the instruction's
    /// memory size.
    fn xstore(&mut self, i: &Instruction, v: u128) -> Res<()> {
        let size = i.memory_size().size() as u32;
        let la = self.mem_lin(i, size, true)?;
        if size == 16 {
            Self::check_align(i, la)?;
            self.write_lin128(la, v)
        } else {
            self.write_lin(la, size, v as u64)
        }
    }

    // ---- instruction groups ----

    fn int_bin(&mut self, i: &Instruction, f: IntOp) -> Res<()> {
        let d = i.op0_register();
        let imm = matches!(i.op1_kind(), OpKind::Immediate8);
        if d.is_mm() {
            let b = if imm { i.immediate8() as u64 } else { self.msrc(i, 1)? };
            let r = f(self.get_mm(d) as u128, b as u128, 8);
            self.set_mm(d, r as u64);
        } else {
            let b = if imm { i.immediate8() as u128 } else { self.xsrc(i, 1)? };
            let k = d.number();
            self.s.xmm[k] = f(self.s.xmm[k], b, 16);
        }
        Ok(())
    }

    /// Apply the collected SIMD floating-point exceptions to MXCSR; raise #XM (or #UD) when an
    /// unmasked one occurred, in which case the caller must not write its destination.
    fn fp_commit(&mut self, env: &Env) -> Res<()> {
        let masks = (self.s.mxcsr >> 7) & 0x3F;
        let flags = if env.pre & !masks != 0 { env.pre } else { env.pre | env.post };
        self.s.mxcsr |= flags;
        if flags & !masks != 0 {
            return Err(if self.s.cr4 & cr::CR4_OSXMMEXCPT != 0 { Exception::new(vec::XM) } else { Exception::ud() });
        }
        Ok(())
    }

    fn fp_bin(&mut self, i: &Instruction, f: Fmt, scalar: bool, op: FpOp) -> Res<()> {
        let d = i.op0_register().number();
        let a = self.s.xmm[d];
        let b = self.xsrc(i, 1)?;
        let mut env = Env::new(self.s.mxcsr);
        let bits = f.bits();
        let n = if scalar { 1 } else { 128 / bits };
        let mut r = a;
        for k in 0..n {
            r = set_lane(r, bits, k, op(&mut env, f, lane(a, bits, k), lane(b, bits, k)));
        }
        self.fp_commit(&env)?;
        self.s.xmm[d] = r;
        Ok(())
    }

    fn fp_cmp(&mut self, i: &Instruction, f: Fmt, scalar: bool) -> Res<()> {
        use std::cmp::Ordering as O;
        let d = i.op0_register().number();
        let a = self.s.xmm[d];
        let b = self.xsrc(i, 1)?;
        let pred = i.immediate(2) & 7;
        let signal = matches!(pred, 1 | 2 | 5 | 6);
        let mut env = Env::new(self.s.mxcsr);
        let bits = f.bits();
        let n = if scalar { 1 } else { 128 / bits };
        let mut r = a;
        for k in 0..n {
            let o = env.compare(f, lane(a, bits, k), lane(b, bits, k), signal);
            let t = match pred {
                0 => o == Some(O::Equal),
                1 => o == Some(O::Less),
                2 => matches!(o, Some(O::Less | O::Equal)),
                3 => o.is_none(),
                4 => o != Some(O::Equal),
                5 => o != Some(O::Less),
                6 => !matches!(o, Some(O::Less | O::Equal)),
                _ => o.is_some(),
            };
            r = set_lane(r, bits, k, if t { u64::MAX } else { 0 });
        }
        self.fp_commit(&env)?;
        self.s.xmm[d] = r;
        Ok(())
    }

    fn comis(&mut self, i: &Instruction, f: Fmt, signal: bool) -> Res<()> {
        use std::cmp::Ordering as O;
        let bits = f.bits();
        let a = lane(self.s.xmm[i.op0_register().number()], bits, 0);
        let b = lane(self.xsrc(i, 1)?, bits, 0);
        let mut env = Env::new(self.s.mxcsr);
        let o = env.compare(f, a, b, signal);
        self.fp_commit(&env)?;
        let fl = match o {
            None => rf::ZF | rf::PF | rf::CF,
            Some(O::Less) => rf::CF,
            Some(O::Equal) => rf::ZF,
            Some(O::Greater) => 0,
        };
        self.s.set_status_flags(fl);
        Ok(())
    }

    fn movdq(&mut self, i: &Instruction) -> Res<()> {
        let reg = |n: u32| if i.op_kind(n) == OpKind::Register { Some(i.op_register(n)) } else { None };
        let (r0, r1) = (reg(0), reg(1));
        match r0 {
            Some(d) if d.is_xmm() => {
                let v = match r1 {
                    Some(s) if s.is_xmm() => self.s.xmm[s.number()] as u64,
                    Some(s) => self.get_reg(s),
                    None => self.xsrc(i, 1)? as u64,
                };
                self.s.xmm[d.number()] = v as u128;
            }
            Some(d) if d.is_mm() => {
                let v = match r1 {
                    Some(s) if !s.is_mm() => self.get_reg(s),
                    _ => self.msrc(i, 1)?,
                };
                self.set_mm(d, v);
            }
            _ => {
                let s = r1.unwrap_or_default();
                let v = if s.is_xmm() { self.s.xmm[s.number()] as u64 } else { self.get_mm(s) };
                match r0 {
                    Some(d) => self.set_reg(d, v),
                    None => {
                        let size = i.memory_size().size() as u32;
                        self.write_op(i, 0, size, v)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// MASKMOVDQU / MASKMOVQ: store the bytes of op1 selected by the top bits of op2's bytes at
    /// seg:rDI.
    fn maskmov(&mut self, i: &Instruction) -> Res<()> {
        let (data, sel, w) = if i.op1_register().is_mm() {
            (self.get_mm(i.op1_register()) as u128, self.get_mm(i.op2_register()) as u128, 8u32)
        } else {
            (self.s.xmm[i.op1_register().number()], self.s.xmm[i.op2_register().number()], 16u32)
        };
        let bytes: u32 = (0..w).filter(|&k| (sel >> (8 * k + 7)) & 1 != 0).fold(0, |a, k| a | 1 << k);
        if bytes == 0 {
            return Ok(());
        }
        let asz = match i.op0_kind() {
            OpKind::MemorySegDI => 2,
            OpKind::MemorySegEDI => 4,
            _ => 8,
        };
        let ea = self.s.regs[7] & mask(asz);
        let la = self.seg_lin(sreg_index(i.memory_segment()), ea, w, true)?;
        self.probe_write(la, w)?;
        for k in 0..w {
            if bytes & (1 << k) != 0 {
                let a = self.lin_add(la, k as u64);
                self.write_lin(a, 1, (data >> (8 * k)) as u64 & 0xFF)?;
            }
        }
        Ok(())
    }

    fn convert(&mut self, i: &Instruction, m: Mnemonic) -> Res<()> {
        use Mnemonic as M;
        let mut env = Env::new(self.s.mxcsr);
        match m {
            M::Cvtsi2ss | M::Cvtsi2sd => {
                let size = self.op_size(i, 1);
                let v = crate::flags::sext(self.read_op(i, 1, size)?, size) as i64;
                let (f, bits) = if m == M::Cvtsi2ss { (F32, 32) } else { (F64, 64) };
                let r = env.i2f(f, v);
                self.fp_commit(&env)?;
                let d = i.op0_register().number();
                self.s.xmm[d] = set_lane(self.s.xmm[d], bits, 0, r);
            }
            M::Cvtss2si | M::Cvtsd2si | M::Cvttss2si | M::Cvttsd2si => {
                let f = if matches!(m, M::Cvtss2si | M::Cvttss2si) { F32 } else { F64 };
                let x = lane(self.xsrc(i, 1)?, f.bits(), 0);
                let size = self.op_size(i, 0);
                let r = env.f2i(f, x, size * 8, matches!(m, M::Cvttss2si | M::Cvttsd2si));
                self.fp_commit(&env)?;
                self.set_reg(i.op0_register(), r);
            }
            M::Cvtss2sd | M::Cvtsd2ss => {
                let (from, to) = if m == M::Cvtss2sd { (F32, F64) } else { (F64, F32) };
                let x = lane(self.xsrc(i, 1)?, from.bits(), 0);
                let r = env.f2f(from, to, x);
                self.fp_commit(&env)?;
                let d = i.op0_register().number();
                self.s.xmm[d] = set_lane(self.s.xmm[d], to.bits(), 0, r);
            }
            M::Cvtps2pd | M::Cvtpd2ps | M::Cvtdq2ps | M::Cvtps2dq | M::Cvttps2dq | M::Cvtdq2pd | M::Cvtpd2dq | M::Cvttpd2dq => {
                let s = self.xsrc(i, 1)?;
                // (source lane bits, destination lane bits, lanes)
                let (sb, db, n) = match m {
                    M::Cvtps2pd | M::Cvtdq2pd => (32, 64, 2),
                    M::Cvtpd2ps | M::Cvtpd2dq | M::Cvttpd2dq => (64, 32, 2),
                    _ => (32, 32, 4),
                };
                let mut r = 0u128;
                for k in 0..n {
                    let x = lane(s, sb, k);
                    let v = match m {
                        M::Cvtps2pd => env.f2f(F32, F64, x),
                        M::Cvtpd2ps => env.f2f(F64, F32, x),
                        M::Cvtdq2ps => env.i2f(F32, x as u32 as i32 as i64),
                        M::Cvtdq2pd => env.i2f(F64, x as u32 as i32 as i64),
                        M::Cvtps2dq | M::Cvttps2dq => env.f2i(F32, x, 32, m == M::Cvttps2dq),
                        _ => env.f2i(F64, x, 32, m == M::Cvttpd2dq),
                    };
                    r = set_lane(r, db, k, v);
                }
                self.fp_commit(&env)?;
                self.s.xmm[i.op0_register().number()] = r;
            }
            M::Cvtpi2ps | M::Cvtpi2pd => {
                let s = self.msrc(i, 1)? as u128;
                let (f, bits) = if m == M::Cvtpi2ps { (F32, 32) } else { (F64, 64) };
                let d = i.op0_register().number();
                let mut r = if m == M::Cvtpi2ps { self.s.xmm[d] } else { 0 };
                for k in 0..2 {
                    r = set_lane(r, bits, k, env.i2f(f, lane(s, 32, k) as u32 as i32 as i64));
                }
                self.fp_commit(&env)?;
                self.s.xmm[d] = r;
            }
            _ => {
                // CVT(T)PS2PI, CVT(T)PD2PI: to an MMX register.
                let s = self.xsrc(i, 1)?;
                let f = if matches!(m, M::Cvtps2pi | M::Cvttps2pi) { F32 } else { F64 };
                let trunc = matches!(m, M::Cvttps2pi | M::Cvttpd2pi);
                let mut r = 0u128;
                for k in 0..2 {
                    r = set_lane(r, 32, k, env.f2i(f, lane(s, f.bits(), k), 32, trunc));
                }
                self.fp_commit(&env)?;
                self.set_mm(i.op0_register(), r as u64);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Differential tests against the host CPU (x86-64 with SSE2): each instruction runs natively
    //! (inline asm, with MXCSR loaded for the mode under test) and in Heron's interpreter via
    //! [`TestCpu`]; results, MXCSR and (for COMIS) the status flags must agree bit for bit.
    use super::*;
    use crate::state::cr as crs;
    use crate::testutil::{TestCpu, DATA};
    use crate::ExitReason;
    use iced_x86::code_asm::*;
    use std::arch::asm;
    use std::arch::x86_64::__m128i;

    fn t(v: u128) -> __m128i {
        // SAFETY: same size, plain bits.
        unsafe { std::mem::transmute(v) }
    }
    fn u(v: __m128i) -> u128 {
        // SAFETY: same size, plain bits.
        unsafe { std::mem::transmute(v) }
    }

    type Build = fn(&mut CodeAssembler) -> Result<(), IcedError>;
    /// (mxcsr, xmm0, xmm1, rax) → (xmm0, rax, mxcsr, rflags)
    type NativeX = fn(u32, u128, u128, u64) -> (u128, u64, u32, u64);
    /// (mm0, mm1, rax) → (mm0, rax)
    type NativeM = fn(u64, u64, u64) -> (u64, u64);

    /// One instruction on xmm0, xmm1 and rax, run natively.
    macro_rules! nx {
        ($insn:literal) => {
            |csr: u32, x0: u128, x1: u128, ra: u64| -> (u128, u64, u32, u64) {
                let mut c = csr;
                let mut a = ra;
                let mut o0 = t(x0);
                let f: u64;
                // SAFETY: only the named registers and MXCSR are touched; MXCSR is restored to
                // the Rust default before the block ends.
                unsafe {
                    asm!(
                        "ldmxcsr [{c}]",
                        $insn,
                        "pushfq",
                        "pop {f}",
                        "stmxcsr [{c}]",
                        "push 0x1f80",
                        "ldmxcsr [rsp]",
                        "add rsp, 8",
                        c = in(reg) &mut c,
                        f = out(reg) f,
                        inout("xmm0") o0,
                        in("xmm1") t(x1),
                        inout("rax") a,
                    );
                }
                (u(o0), a, c, f)
            }
        };
    }

    /// One instruction on mm0, mm1 and rax, run natively.
    macro_rules! nm {
        ($insn:literal) => {
            |m0: u64, m1: u64, ra: u64| -> (u64, u64) {
                let mut a = ra;
                let r: u64;
                // SAFETY: only the named registers are touched; EMMS leaves the x87 stack empty.
                unsafe {
                    asm!(
                        "movq mm0, rcx",
                        "movq mm1, rdx",
                        $insn,
                        "movq rdx, mm0",
                        "emms",
                        inout("rax") a,
                        in("rcx") m0,
                        inout("rdx") m1 => r,
                        out("mm0") _,
                        out("mm1") _,
                    );
                }
                (r, a)
            }
        };
    }

    struct XCase {
        name: &'static str,
        native: NativeX,
        build: Build,
        flags: bool,
    }

    macro_rules! xc {
        ($insn:literal, $b:expr) => {
            XCase { name: $insn, native: nx!($insn), build: $b, flags: false }
        };
        ($insn:literal, $b:expr, flags) => {
            XCase { name: $insn, native: nx!($insn), build: $b, flags: true }
        };
    }

    struct MCase {
        name: &'static str,
        native: NativeM,
        build: Build,
    }

    macro_rules! mc {
        ($insn:literal, $b:expr) => {
            MCase { name: $insn, native: nm!($insn), build: $b }
        };
    }

    fn assemble(b: Build) -> Vec<u8> {
        let mut a = CodeAssembler::new(64).unwrap();
        b(&mut a).unwrap();
        a.assemble(crate::testutil::CODE).unwrap()
    }

    /// xorshift64*.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        /// A binary32 with an interesting exponent distribution.
        fn f32(&mut self) -> u64 {
            let s = (self.next() & 1) << 31;
            let e = match self.below(6) {
                0 => self.below(4),
                1 => 120 + self.below(16),
                2 => 250 + self.below(6),
                3 => 100 + self.below(60),
                _ => self.below(256),
            };
            let m = match self.below(5) {
                0 => 0x7F_FFFF,
                1 => 0,
                2 => 0x40_0000 | self.below(4),
                _ => self.next() & 0x7F_FFFF,
            };
            s | e << 23 | m
        }
        /// A binary64 with an interesting exponent distribution.
        fn f64(&mut self) -> u64 {
            let s = (self.next() & 1) << 63;
            let e = match self.below(7) {
                0 => self.below(4),
                1 => 1016 + self.below(16),
                2 => 2042 + self.below(6),
                3 => 1023 - 130 + self.below(10), // near binary32's denormal range
                4 => 1023 + 120 + self.below(16), // near binary32's overflow / int ranges
                _ => self.below(2048),
            };
            let m = match self.below(5) {
                0 => (1 << 52) - 1,
                1 => 0,
                2 => 1 << 51 | self.below(4),
                3 => self.next() & 0xF_FFFF_E000_0000, // exactly representable in binary32
                _ => self.next() & ((1 << 52) - 1),
            };
            s | e << 52 | m
        }
    }

    const F32_EDGE: &[u64] = &[
        0x0000_0000, 0x8000_0000, 0x3F80_0000, 0xBF80_0000, 0x3FC0_0000, 0x0000_0001, 0x8000_0001, 0x007F_FFFF, 0x0080_0000, 0x8080_0000,
        0x7F7F_FFFF, 0xFF7F_FFFF, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 0x7FC1_2345, 0xFFC0_0000, 0x7F80_0001, 0xFFA0_0000, 0x4F00_0000,
        0xCF00_0000, 0x4EFF_FFFF, 0xCF00_0001, 0x5F00_0000, 0xDF00_0000, 0x4020_0000, 0xC060_0000, 0x3F00_0000, 0x3EAA_AAAB, 0x3F7F_FFFF,
        0x0040_0000, 0x7F00_0000, 0x1F80_0000, 0x4B80_0001,
    ];

    const F64_EDGE: &[u64] = &[
        0x0000_0000_0000_0000, 0x8000_0000_0000_0000, 0x3FF0_0000_0000_0000, 0xBFF0_0000_0000_0000, 0x3FF8_0000_0000_0000,
        0x0000_0000_0000_0001, 0x8000_0000_0000_0001, 0x000F_FFFF_FFFF_FFFF, 0x0010_0000_0000_0000, 0x8010_0000_0000_0000,
        0x7FEF_FFFF_FFFF_FFFF, 0xFFEF_FFFF_FFFF_FFFF, 0x7FF0_0000_0000_0000, 0xFFF0_0000_0000_0000, 0x7FF8_0000_0000_0000,
        0x7FF8_0000_1234_5678, 0xFFF8_0000_0000_0000, 0x7FF0_0000_0000_0001, 0xFFF4_0000_0000_0000, 0x41E0_0000_0000_0000,
        0xC1E0_0000_0000_0000, 0x41DF_FFFF_FFC0_0000, 0xC1E0_0000_0020_0000, 0x43E0_0000_0000_0000, 0xC3E0_0000_0000_0000,
        0x4004_0000_0000_0000, 0xC00C_0000_0000_0000, 0x3FE0_0000_0000_0000, 0x3FD5_5555_5555_5555, 0x3FEF_FFFF_FFFF_FFFF,
        0x47EF_FFFF_E000_0000, 0x47EF_FFFF_F000_0000, 0x3810_0000_0000_0000, 0x380F_FFFF_F000_0000, 0x36A0_0000_0000_0000,
        0x7E00_0000_0000_0000, 0x0008_0000_0000_0000,
    ];

    /// MXCSR settings: the four rounding modes, then DAZ/FTZ combinations (all masked).
    const MODES: &[u32] = &[0x1F80, 0x3F80, 0x5F80, 0x7F80, 0x1FC0, 0x9F80, 0x9FC0, 0xFF80, 0xDFC0];

    fn pack(lanes: &[u64], bits: u32) -> u128 {
        lanes.iter().enumerate().fold(0u128, |r, (k, &x)| set_lane(r, bits, k as u32, x))
    }

    /// Inputs for binary32 operations: every pair of edge values, plus random pairs.
    fn f32_inputs(rng: &mut Rng, random: usize) -> Vec<(u128, u128, u64)> {
        let mut v = Vec::new();
        for &a in F32_EDGE {
            for &b in F32_EDGE {
                let x0 = pack(&[a, b, rng.f32(), rng.f32()], 32);
                let x1 = pack(&[b, a, rng.f32(), rng.f32()], 32);
                v.push((x0, x1, rng.next()));
            }
        }
        for _ in 0..random {
            let a: Vec<u64> = (0..4).map(|_| rng.f32()).collect();
            // Partner lanes: independent, or close to a (cancellation, rounding ties).
            let b: Vec<u64> = a
                .iter()
                .map(|&x| match rng.below(3) {
                    0 => rng.f32(),
                    1 => (x ^ (rng.below(8))) ^ (rng.below(2) << 31),
                    _ => (x & 0x807F_FFFF) | ((((x >> 23) & 0xFF).saturating_sub(rng.below(30)).max(1)) << 23),
                })
                .collect();
            v.push((pack(&a, 32), pack(&b, 32), rng.next()));
        }
        v
    }

    fn f64_inputs(rng: &mut Rng, random: usize) -> Vec<(u128, u128, u64)> {
        let mut v = Vec::new();
        for &a in F64_EDGE {
            for &b in F64_EDGE {
                v.push((pack(&[a, b], 64), pack(&[b, a], 64), rng.next()));
            }
        }
        for _ in 0..random {
            let a: Vec<u64> = (0..2).map(|_| rng.f64()).collect();
            let b: Vec<u64> = a
                .iter()
                .map(|&x| match rng.below(3) {
                    0 => rng.f64(),
                    1 => (x ^ (rng.below(8))) ^ (rng.below(2) << 63),
                    _ => (x & 0x800F_FFFF_FFFF_FFFF) | ((((x >> 52) & 0x7FF).saturating_sub(rng.below(60)).max(1)) << 52),
                })
                .collect();
            v.push((pack(&a, 64), pack(&b, 64), rng.next()));
        }
        v
    }

    /// Integer inputs for CVTSI2SS/SD and CVTDQ2PS/PD.
    fn int_inputs(rng: &mut Rng, n: usize) -> Vec<(u128, u128, u64)> {
        let edge: &[u64] = &[
            0,
            1,
            u64::MAX,
            i64::MAX as u64,
            i64::MIN as u64,
            0x7FFF_FFFF,
            0x8000_0000,
            0xFFFF_FFFF,
            (1 << 24) + 1,
            (1 << 53) + 1,
            (1 << 54) + 3,
            0x7FFF_FFC0,
            0xFFFF_FFFF_8000_0001,
            0x0123_4567_89AB_CDEF,
        ];
        let mut v: Vec<_> = edge.iter().map(|&x| (rng.next() as u128, pack(&[x, x.rotate_left(32), x ^ 1, !x], 32), x)).collect();
        for _ in 0..n {
            let sh = rng.below(64);
            let x = rng.next() >> sh;
            let y = rng.next() >> rng.below(32);
            v.push((rng.next() as u128 | (rng.next() as u128) << 64, (x as u128) | (y as u128) << 64, x));
        }
        v
    }

    /// Integer-SIMD inputs: random vectors and ones made of saturation-boundary elements.
    fn simd_inputs(rng: &mut Rng, n: usize) -> Vec<(u128, u128, u64)> {
        let pats: &[u64] = &[0, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1, 0x0101];
        let mut v = Vec::new();
        for _ in 0..n {
            let g = |rng: &mut Rng| -> u128 {
                match rng.below(3) {
                    0 => rng.next() as u128 | (rng.next() as u128) << 64,
                    1 => (0..16).fold(0u128, |r, k| r | (pats[rng.below(4) as usize] as u128 & 0xFF) << (8 * k)),
                    _ => (0..8).fold(0u128, |r, k| r | (pats[rng.below(pats.len() as u64) as usize] as u128 & 0xFFFF) << (16 * k)),
                }
            };
            let a = g(rng);
            let b = if rng.below(8) == 0 { a } else { g(rng) };
            v.push((a, b, rng.next()));
        }
        v
    }

    /// Run one case over all inputs and modes in Heron and natively; return mismatches.
    fn run_x(c: &XCase, inputs: &[(u128, u128, u64)], modes: &[u32]) -> Vec<String> {
        let code = assemble(c.build);
        let mut tc = TestCpu::new();
        let mut bad = Vec::new();
        for &csr in modes {
            for &(x0, x1, ra) in inputs {
                let (nx0, nrax, ncsr, nfl) = (c.native)(csr, x0, x1, ra);
                {
                    let s = &mut *tc.cpu.s;
                    s.xmm[0] = x0;
                    s.xmm[1] = x1;
                    s.regs[0] = ra;
                    s.mxcsr = csr;
                    s.set_status_flags(0);
                }
                let r = tc.run(&code, 10);
                let s = &tc.cpu.s;
                let hfl = s.status_flags();
                let fl_ok = !c.flags || (hfl & rf::STATUS) == (nfl & rf::STATUS);
                if r != ExitReason::Halted || tc.exception().is_some() || s.xmm[0] != nx0 || s.regs[0] != nrax || s.mxcsr != ncsr || !fl_ok {
                    bad.push(format!(
                        "{} mxcsr={:04x} xmm0={:032x} xmm1={:032x} rax={:x}: native xmm0={:032x} rax={:x} mxcsr={:04x} fl={:x}; heron xmm0={:032x} rax={:x} mxcsr={:04x} fl={:x} exc={:?}",
                        c.name,
                        csr,
                        x0,
                        x1,
                        ra,
                        nx0,
                        nrax,
                        ncsr,
                        nfl & rf::STATUS,
                        s.xmm[0],
                        s.regs[0],
                        s.mxcsr,
                        hfl,
                        tc.exception()
                    ));
                }
            }
        }
        bad
    }

    fn check_all(cases: &[XCase], inputs: &[(u128, u128, u64)], modes: &[u32]) {
        let mut bad = Vec::new();
        for c in cases {
            let b = run_x(c, inputs, modes);
            if !b.is_empty() {
                bad.push(format!("{}: {} mismatches, first: {}", c.name, b.len(), b[0]));
            }
        }
        assert!(bad.is_empty(), "\n{}", bad.join("\n"));
    }

    #[test]
    fn sse_f32_arith_matches_host() {
        let cases = [
            xc!("addps xmm0, xmm1", |a| a.addps(xmm0, xmm1)),
            xc!("addss xmm0, xmm1", |a| a.addss(xmm0, xmm1)),
            xc!("subps xmm0, xmm1", |a| a.subps(xmm0, xmm1)),
            xc!("subss xmm0, xmm1", |a| a.subss(xmm0, xmm1)),
            xc!("mulps xmm0, xmm1", |a| a.mulps(xmm0, xmm1)),
            xc!("mulss xmm0, xmm1", |a| a.mulss(xmm0, xmm1)),
            xc!("divps xmm0, xmm1", |a| a.divps(xmm0, xmm1)),
            xc!("divss xmm0, xmm1", |a| a.divss(xmm0, xmm1)),
            xc!("sqrtps xmm0, xmm1", |a| a.sqrtps(xmm0, xmm1)),
            xc!("sqrtss xmm0, xmm1", |a| a.sqrtss(xmm0, xmm1)),
            xc!("minps xmm0, xmm1", |a| a.minps(xmm0, xmm1)),
            xc!("minss xmm0, xmm1", |a| a.minss(xmm0, xmm1)),
            xc!("maxps xmm0, xmm1", |a| a.maxps(xmm0, xmm1)),
            xc!("maxss xmm0, xmm1", |a| a.maxss(xmm0, xmm1)),
        ];
        let mut rng = Rng(0x1234_5678_9ABC_DEF1);
        check_all(&cases, &f32_inputs(&mut rng, 3000), MODES);
    }

    #[test]
    fn sse_f64_arith_matches_host() {
        let cases = [
            xc!("addpd xmm0, xmm1", |a| a.addpd(xmm0, xmm1)),
            xc!("addsd xmm0, xmm1", |a| a.addsd(xmm0, xmm1)),
            xc!("subpd xmm0, xmm1", |a| a.subpd(xmm0, xmm1)),
            xc!("subsd xmm0, xmm1", |a| a.subsd(xmm0, xmm1)),
            xc!("mulpd xmm0, xmm1", |a| a.mulpd(xmm0, xmm1)),
            xc!("mulsd xmm0, xmm1", |a| a.mulsd(xmm0, xmm1)),
            xc!("divpd xmm0, xmm1", |a| a.divpd(xmm0, xmm1)),
            xc!("divsd xmm0, xmm1", |a| a.divsd(xmm0, xmm1)),
            xc!("sqrtpd xmm0, xmm1", |a| a.sqrtpd(xmm0, xmm1)),
            xc!("sqrtsd xmm0, xmm1", |a| a.sqrtsd(xmm0, xmm1)),
            xc!("minpd xmm0, xmm1", |a| a.minpd(xmm0, xmm1)),
            xc!("minsd xmm0, xmm1", |a| a.minsd(xmm0, xmm1)),
            xc!("maxpd xmm0, xmm1", |a| a.maxpd(xmm0, xmm1)),
            xc!("maxsd xmm0, xmm1", |a| a.maxsd(xmm0, xmm1)),
        ];
        let mut rng = Rng(0x0FED_CBA9_8765_4321);
        check_all(&cases, &f64_inputs(&mut rng, 3000), MODES);
    }

    #[test]
    fn sse_compare_matches_host() {
        let mut rng = Rng(77);
        let f32s = f32_inputs(&mut rng, 300);
        let f64s = f64_inputs(&mut rng, 300);
        let modes = &[0x1F80, 0x1FC0];
        check_all(
            &[
                xc!("cmpps xmm0, xmm1, 0", |a| a.cmpps(xmm0, xmm1, 0)),
                xc!("cmpps xmm0, xmm1, 1", |a| a.cmpps(xmm0, xmm1, 1)),
                xc!("cmpps xmm0, xmm1, 2", |a| a.cmpps(xmm0, xmm1, 2)),
                xc!("cmpps xmm0, xmm1, 3", |a| a.cmpps(xmm0, xmm1, 3)),
                xc!("cmpps xmm0, xmm1, 4", |a| a.cmpps(xmm0, xmm1, 4)),
                xc!("cmpps xmm0, xmm1, 5", |a| a.cmpps(xmm0, xmm1, 5)),
                xc!("cmpps xmm0, xmm1, 6", |a| a.cmpps(xmm0, xmm1, 6)),
                xc!("cmpps xmm0, xmm1, 7", |a| a.cmpps(xmm0, xmm1, 7)),
                xc!("cmpss xmm0, xmm1, 1", |a| a.cmpss(xmm0, xmm1, 1)),
                xc!("cmpss xmm0, xmm1, 4", |a| a.cmpss(xmm0, xmm1, 4)),
                xc!("comiss xmm0, xmm1", |a| a.comiss(xmm0, xmm1), flags),
                xc!("ucomiss xmm0, xmm1", |a| a.ucomiss(xmm0, xmm1), flags),
            ],
            &f32s,
            modes,
        );
        check_all(
            &[
                xc!("cmppd xmm0, xmm1, 0", |a| a.cmppd(xmm0, xmm1, 0)),
                xc!("cmppd xmm0, xmm1, 1", |a| a.cmppd(xmm0, xmm1, 1)),
                xc!("cmppd xmm0, xmm1, 2", |a| a.cmppd(xmm0, xmm1, 2)),
                xc!("cmppd xmm0, xmm1, 3", |a| a.cmppd(xmm0, xmm1, 3)),
                xc!("cmppd xmm0, xmm1, 4", |a| a.cmppd(xmm0, xmm1, 4)),
                xc!("cmppd xmm0, xmm1, 5", |a| a.cmppd(xmm0, xmm1, 5)),
                xc!("cmppd xmm0, xmm1, 6", |a| a.cmppd(xmm0, xmm1, 6)),
                xc!("cmppd xmm0, xmm1, 7", |a| a.cmppd(xmm0, xmm1, 7)),
                xc!("cmpsd xmm0, xmm1, 2", |a| a.cmpsd_3(xmm0, xmm1, 2)),
                xc!("cmpsd xmm0, xmm1, 3", |a| a.cmpsd_3(xmm0, xmm1, 3)),
                xc!("comisd xmm0, xmm1", |a| a.comisd(xmm0, xmm1), flags),
                xc!("ucomisd xmm0, xmm1", |a| a.ucomisd(xmm0, xmm1), flags),
            ],
            &f64s,
            modes,
        );
    }

    #[test]
    fn sse_conversions_match_host() {
        let mut rng = Rng(4242);
        let f32s = f32_inputs(&mut rng, 1500);
        let f64s = f64_inputs(&mut rng, 1500);
        let ints = int_inputs(&mut rng, 1500);
        check_all(
            &[
                xc!("cvtss2sd xmm0, xmm1", |a| a.cvtss2sd(xmm0, xmm1)),
                xc!("cvtps2pd xmm0, xmm1", |a| a.cvtps2pd(xmm0, xmm1)),
                xc!("cvtps2dq xmm0, xmm1", |a| a.cvtps2dq(xmm0, xmm1)),
                xc!("cvttps2dq xmm0, xmm1", |a| a.cvttps2dq(xmm0, xmm1)),
                xc!("cvtss2si eax, xmm1", |a| a.cvtss2si(eax, xmm1)),
                xc!("cvtss2si rax, xmm1", |a| a.cvtss2si(rax, xmm1)),
                xc!("cvttss2si eax, xmm1", |a| a.cvttss2si(eax, xmm1)),
                xc!("cvttss2si rax, xmm1", |a| a.cvttss2si(rax, xmm1)),
            ],
            &f32s,
            MODES,
        );
        check_all(
            &[
                xc!("cvtsd2ss xmm0, xmm1", |a| a.cvtsd2ss(xmm0, xmm1)),
                xc!("cvtpd2ps xmm0, xmm1", |a| a.cvtpd2ps(xmm0, xmm1)),
                xc!("cvtpd2dq xmm0, xmm1", |a| a.cvtpd2dq(xmm0, xmm1)),
                xc!("cvttpd2dq xmm0, xmm1", |a| a.cvttpd2dq(xmm0, xmm1)),
                xc!("cvtsd2si eax, xmm1", |a| a.cvtsd2si(eax, xmm1)),
                xc!("cvtsd2si rax, xmm1", |a| a.cvtsd2si(rax, xmm1)),
                xc!("cvttsd2si eax, xmm1", |a| a.cvttsd2si(eax, xmm1)),
                xc!("cvttsd2si rax, xmm1", |a| a.cvttsd2si(rax, xmm1)),
            ],
            &f64s,
            MODES,
        );
        check_all(
            &[
                xc!("cvtsi2ss xmm0, eax", |a| a.cvtsi2ss(xmm0, eax)),
                xc!("cvtsi2ss xmm0, rax", |a| a.cvtsi2ss(xmm0, rax)),
                xc!("cvtsi2sd xmm0, eax", |a| a.cvtsi2sd(xmm0, eax)),
                xc!("cvtsi2sd xmm0, rax", |a| a.cvtsi2sd(xmm0, rax)),
                xc!("cvtdq2ps xmm0, xmm1", |a| a.cvtdq2ps(xmm0, xmm1)),
                xc!("cvtdq2pd xmm0, xmm1", |a| a.cvtdq2pd(xmm0, xmm1)),
            ],
            &ints,
            &MODES[..4],
        );
    }

    /// Inputs for shifts by register: counts around the element widths in the low quadword.
    fn count_inputs(rng: &mut Rng, n: usize) -> Vec<(u128, u128, u64)> {
        (0..n)
            .map(|k| {
                let a = rng.next() as u128 | (rng.next() as u128) << 64;
                let c = match k % 4 {
                    0 => rng.below(70),
                    1 => rng.below(17),
                    2 => rng.next(),
                    _ => rng.below(1 << 33) | if rng.below(2) == 0 { 1 << 40 } else { 0 },
                };
                (a, c as u128 | (rng.next() as u128) << 64, rng.next())
            })
            .collect()
    }

    #[test]
    fn sse2_integer_matches_host() {
        let mut rng = Rng(99);
        let ins = simd_inputs(&mut rng, 400);
        check_all(
            &[
                xc!("paddb xmm0, xmm1", |a| a.paddb(xmm0, xmm1)),
                xc!("paddw xmm0, xmm1", |a| a.paddw(xmm0, xmm1)),
                xc!("paddd xmm0, xmm1", |a| a.paddd(xmm0, xmm1)),
                xc!("paddq xmm0, xmm1", |a| a.paddq(xmm0, xmm1)),
                xc!("psubb xmm0, xmm1", |a| a.psubb(xmm0, xmm1)),
                xc!("psubw xmm0, xmm1", |a| a.psubw(xmm0, xmm1)),
                xc!("psubd xmm0, xmm1", |a| a.psubd(xmm0, xmm1)),
                xc!("psubq xmm0, xmm1", |a| a.psubq(xmm0, xmm1)),
                xc!("paddsb xmm0, xmm1", |a| a.paddsb(xmm0, xmm1)),
                xc!("paddsw xmm0, xmm1", |a| a.paddsw(xmm0, xmm1)),
                xc!("psubsb xmm0, xmm1", |a| a.psubsb(xmm0, xmm1)),
                xc!("psubsw xmm0, xmm1", |a| a.psubsw(xmm0, xmm1)),
                xc!("paddusb xmm0, xmm1", |a| a.paddusb(xmm0, xmm1)),
                xc!("paddusw xmm0, xmm1", |a| a.paddusw(xmm0, xmm1)),
                xc!("psubusb xmm0, xmm1", |a| a.psubusb(xmm0, xmm1)),
                xc!("psubusw xmm0, xmm1", |a| a.psubusw(xmm0, xmm1)),
                xc!("pcmpeqb xmm0, xmm1", |a| a.pcmpeqb(xmm0, xmm1)),
                xc!("pcmpeqw xmm0, xmm1", |a| a.pcmpeqw(xmm0, xmm1)),
                xc!("pcmpeqd xmm0, xmm1", |a| a.pcmpeqd(xmm0, xmm1)),
                xc!("pcmpgtb xmm0, xmm1", |a| a.pcmpgtb(xmm0, xmm1)),
                xc!("pcmpgtw xmm0, xmm1", |a| a.pcmpgtw(xmm0, xmm1)),
                xc!("pcmpgtd xmm0, xmm1", |a| a.pcmpgtd(xmm0, xmm1)),
                xc!("pand xmm0, xmm1", |a| a.pand(xmm0, xmm1)),
                xc!("pandn xmm0, xmm1", |a| a.pandn(xmm0, xmm1)),
                xc!("por xmm0, xmm1", |a| a.por(xmm0, xmm1)),
                xc!("pxor xmm0, xmm1", |a| a.pxor(xmm0, xmm1)),
                xc!("pmullw xmm0, xmm1", |a| a.pmullw(xmm0, xmm1)),
                xc!("pmulhw xmm0, xmm1", |a| a.pmulhw(xmm0, xmm1)),
                xc!("pmulhuw xmm0, xmm1", |a| a.pmulhuw(xmm0, xmm1)),
                xc!("pmuludq xmm0, xmm1", |a| a.pmuludq(xmm0, xmm1)),
                xc!("pmaddwd xmm0, xmm1", |a| a.pmaddwd(xmm0, xmm1)),
                xc!("pminub xmm0, xmm1", |a| a.pminub(xmm0, xmm1)),
                xc!("pmaxub xmm0, xmm1", |a| a.pmaxub(xmm0, xmm1)),
                xc!("pminsw xmm0, xmm1", |a| a.pminsw(xmm0, xmm1)),
                xc!("pmaxsw xmm0, xmm1", |a| a.pmaxsw(xmm0, xmm1)),
                xc!("pavgb xmm0, xmm1", |a| a.pavgb(xmm0, xmm1)),
                xc!("pavgw xmm0, xmm1", |a| a.pavgw(xmm0, xmm1)),
                xc!("psadbw xmm0, xmm1", |a| a.psadbw(xmm0, xmm1)),
                xc!("packsswb xmm0, xmm1", |a| a.packsswb(xmm0, xmm1)),
                xc!("packssdw xmm0, xmm1", |a| a.packssdw(xmm0, xmm1)),
                xc!("packuswb xmm0, xmm1", |a| a.packuswb(xmm0, xmm1)),
                xc!("punpcklbw xmm0, xmm1", |a| a.punpcklbw(xmm0, xmm1)),
                xc!("punpcklwd xmm0, xmm1", |a| a.punpcklwd(xmm0, xmm1)),
                xc!("punpckldq xmm0, xmm1", |a| a.punpckldq(xmm0, xmm1)),
                xc!("punpcklqdq xmm0, xmm1", |a| a.punpcklqdq(xmm0, xmm1)),
                xc!("punpckhbw xmm0, xmm1", |a| a.punpckhbw(xmm0, xmm1)),
                xc!("punpckhwd xmm0, xmm1", |a| a.punpckhwd(xmm0, xmm1)),
                xc!("punpckhdq xmm0, xmm1", |a| a.punpckhdq(xmm0, xmm1)),
                xc!("punpckhqdq xmm0, xmm1", |a| a.punpckhqdq(xmm0, xmm1)),
                xc!("andps xmm0, xmm1", |a| a.andps(xmm0, xmm1)),
                xc!("andnps xmm0, xmm1", |a| a.andnps(xmm0, xmm1)),
                xc!("orps xmm0, xmm1", |a| a.orps(xmm0, xmm1)),
                xc!("xorps xmm0, xmm1", |a| a.xorps(xmm0, xmm1)),
                xc!("andpd xmm0, xmm1", |a| a.andpd(xmm0, xmm1)),
                xc!("andnpd xmm0, xmm1", |a| a.andnpd(xmm0, xmm1)),
                xc!("orpd xmm0, xmm1", |a| a.orpd(xmm0, xmm1)),
                xc!("xorpd xmm0, xmm1", |a| a.xorpd(xmm0, xmm1)),
                xc!("unpcklps xmm0, xmm1", |a| a.unpcklps(xmm0, xmm1)),
                xc!("unpckhps xmm0, xmm1", |a| a.unpckhps(xmm0, xmm1)),
                xc!("unpcklpd xmm0, xmm1", |a| a.unpcklpd(xmm0, xmm1)),
                xc!("unpckhpd xmm0, xmm1", |a| a.unpckhpd(xmm0, xmm1)),
                xc!("shufps xmm0, xmm1, 0x1b", |a| a.shufps(xmm0, xmm1, 0x1b)),
                xc!("shufps xmm0, xmm1, 0xe4", |a| a.shufps(xmm0, xmm1, 0xe4)),
                xc!("shufpd xmm0, xmm1, 1", |a| a.shufpd(xmm0, xmm1, 1)),
                xc!("shufpd xmm0, xmm1, 2", |a| a.shufpd(xmm0, xmm1, 2)),
                xc!("pshufd xmm0, xmm1, 0x1b", |a| a.pshufd(xmm0, xmm1, 0x1b)),
                xc!("pshufd xmm0, xmm1, 0x93", |a| a.pshufd(xmm0, xmm1, 0x93)),
                xc!("pshuflw xmm0, xmm1, 0x4e", |a| a.pshuflw(xmm0, xmm1, 0x4e)),
                xc!("pshufhw xmm0, xmm1, 0xb1", |a| a.pshufhw(xmm0, xmm1, 0xb1)),
                xc!("psllw xmm0, 3", |a| a.psllw(xmm0, 3)),
                xc!("psllw xmm0, 16", |a| a.psllw(xmm0, 16)),
                xc!("pslld xmm0, 31", |a| a.pslld(xmm0, 31)),
                xc!("psllq xmm0, 33", |a| a.psllq(xmm0, 33)),
                xc!("psrlw xmm0, 15", |a| a.psrlw(xmm0, 15)),
                xc!("psrld xmm0, 40", |a| a.psrld(xmm0, 40)),
                xc!("psrlq xmm0, 63", |a| a.psrlq(xmm0, 63)),
                xc!("psraw xmm0, 7", |a| a.psraw(xmm0, 7)),
                xc!("psraw xmm0, 200", |a| a.psraw(xmm0, 200)),
                xc!("psrad xmm0, 31", |a| a.psrad(xmm0, 31)),
                xc!("pslldq xmm0, 5", |a| a.pslldq(xmm0, 5)),
                xc!("pslldq xmm0, 16", |a| a.pslldq(xmm0, 16)),
                xc!("psrldq xmm0, 15", |a| a.psrldq(xmm0, 15)),
                xc!("psrldq xmm0, 3", |a| a.psrldq(xmm0, 3)),
                xc!("pextrw eax, xmm1, 5", |a| a.pextrw(eax, xmm1, 5)),
                xc!("pinsrw xmm0, eax, 6", |a| a.pinsrw(xmm0, eax, 6)),
                xc!("pmovmskb eax, xmm1", |a| a.pmovmskb(eax, xmm1)),
                xc!("movmskps eax, xmm1", |a| a.movmskps(eax, xmm1)),
                xc!("movmskpd rax, xmm1", |a| a.movmskpd(rax, xmm1)),
                xc!("movd eax, xmm1", |a| a.movd(eax, xmm1)),
                xc!("movq rax, xmm1", |a| a.movq(rax, xmm1)),
                xc!("movd xmm0, eax", |a| a.movd(xmm0, eax)),
                xc!("movq xmm0, rax", |a| a.movq(xmm0, rax)),
                xc!("movq xmm0, xmm1", |a| a.movq(xmm0, xmm1)),
                xc!("movss xmm0, xmm1", |a| a.movss(xmm0, xmm1)),
                xc!("movsd xmm0, xmm1", |a| a.movsd_2(xmm0, xmm1)),
                xc!("movhlps xmm0, xmm1", |a| a.movhlps(xmm0, xmm1)),
                xc!("movlhps xmm0, xmm1", |a| a.movlhps(xmm0, xmm1)),
                xc!("movaps xmm0, xmm1", |a| a.movaps(xmm0, xmm1)),
                xc!("movdqu xmm0, xmm1", |a| a.movdqu(xmm0, xmm1)),
            ],
            &ins,
            &[0x1F80],
        );
        let counts = count_inputs(&mut rng, 400);
        check_all(
            &[
                xc!("psllw xmm0, xmm1", |a| a.psllw(xmm0, xmm1)),
                xc!("pslld xmm0, xmm1", |a| a.pslld(xmm0, xmm1)),
                xc!("psllq xmm0, xmm1", |a| a.psllq(xmm0, xmm1)),
                xc!("psrlw xmm0, xmm1", |a| a.psrlw(xmm0, xmm1)),
                xc!("psrld xmm0, xmm1", |a| a.psrld(xmm0, xmm1)),
                xc!("psrlq xmm0, xmm1", |a| a.psrlq(xmm0, xmm1)),
                xc!("psraw xmm0, xmm1", |a| a.psraw(xmm0, xmm1)),
                xc!("psrad xmm0, xmm1", |a| a.psrad(xmm0, xmm1)),
            ],
            &counts,
            &[0x1F80],
        );
    }

    /// Run MMX cases natively and in Heron; also checks the x87 side effects.
    fn check_mmx(cases: &[MCase], inputs: &[(u64, u64, u64)]) {
        let mut bad = Vec::new();
        for c in cases {
            let code = assemble(c.build);
            let mut tc = TestCpu::new();
            let mut n = 0;
            for &(m0, m1, ra) in inputs {
                let (nm0, nra) = (c.native)(m0, m1, ra);
                {
                    let s = &mut *tc.cpu.s;
                    s.x87.regs[0] = [0; 10];
                    s.x87.regs[0][..8].copy_from_slice(&m0.to_le_bytes());
                    s.x87.regs[1][..8].copy_from_slice(&m1.to_le_bytes());
                    s.x87.top = 5;
                    s.x87.ftw = 0xFFFF;
                    s.regs[0] = ra;
                }
                tc.run(&code, 10);
                let s = &tc.cpu.s;
                let hm0 = u64::from_le_bytes(s.x87.regs[0][..8].try_into().unwrap());
                let exp_ok = hm0 == m0 || s.x87.regs[0][8..] == [0xFF, 0xFF];
                if tc.exception().is_some() || hm0 != nm0 || s.regs[0] != nra || s.x87.top != 0 || s.x87.ftw != 0 || !exp_ok {
                    n += 1;
                    if n == 1 {
                        bad.push(format!(
                            "{}: mm0={:016x} mm1={:016x} rax={:x}: native mm0={:016x} rax={:x}; heron mm0={:016x} rax={:x} top={} ftw={:x} exp={:?} exc={:?}",
                            c.name,
                            m0,
                            m1,
                            ra,
                            nm0,
                            nra,
                            hm0,
                            s.regs[0],
                            s.x87.top,
                            s.x87.ftw,
                            &s.x87.regs[0][8..],
                            tc.exception()
                        ));
                    }
                }
            }
        }
        assert!(bad.is_empty(), "\n{}", bad.join("\n"));
    }

    #[test]
    fn mmx_matches_host() {
        let mut rng = Rng(2024);
        let mut ins: Vec<(u64, u64, u64)> = simd_inputs(&mut rng, 300).into_iter().map(|(a, b, r)| (a as u64, (b >> 64) as u64, r)).collect();
        ins.extend(count_inputs(&mut rng, 100).into_iter().map(|(a, b, r)| (a as u64, b as u64, r)));
        check_mmx(
            &[
                mc!("paddb mm0, mm1", |a| a.paddb(mm0, mm1)),
                mc!("paddw mm0, mm1", |a| a.paddw(mm0, mm1)),
                mc!("paddd mm0, mm1", |a| a.paddd(mm0, mm1)),
                mc!("paddq mm0, mm1", |a| a.paddq(mm0, mm1)),
                mc!("psubq mm0, mm1", |a| a.psubq(mm0, mm1)),
                mc!("paddsw mm0, mm1", |a| a.paddsw(mm0, mm1)),
                mc!("psubsb mm0, mm1", |a| a.psubsb(mm0, mm1)),
                mc!("paddusb mm0, mm1", |a| a.paddusb(mm0, mm1)),
                mc!("psubusw mm0, mm1", |a| a.psubusw(mm0, mm1)),
                mc!("pcmpeqd mm0, mm1", |a| a.pcmpeqd(mm0, mm1)),
                mc!("pcmpgtw mm0, mm1", |a| a.pcmpgtw(mm0, mm1)),
                mc!("pmullw mm0, mm1", |a| a.pmullw(mm0, mm1)),
                mc!("pmulhw mm0, mm1", |a| a.pmulhw(mm0, mm1)),
                mc!("pmulhuw mm0, mm1", |a| a.pmulhuw(mm0, mm1)),
                mc!("pmuludq mm0, mm1", |a| a.pmuludq(mm0, mm1)),
                mc!("pmaddwd mm0, mm1", |a| a.pmaddwd(mm0, mm1)),
                mc!("psadbw mm0, mm1", |a| a.psadbw(mm0, mm1)),
                mc!("pavgb mm0, mm1", |a| a.pavgb(mm0, mm1)),
                mc!("pavgw mm0, mm1", |a| a.pavgw(mm0, mm1)),
                mc!("pminub mm0, mm1", |a| a.pminub(mm0, mm1)),
                mc!("pmaxsw mm0, mm1", |a| a.pmaxsw(mm0, mm1)),
                mc!("packsswb mm0, mm1", |a| a.packsswb(mm0, mm1)),
                mc!("packssdw mm0, mm1", |a| a.packssdw(mm0, mm1)),
                mc!("packuswb mm0, mm1", |a| a.packuswb(mm0, mm1)),
                mc!("punpcklbw mm0, mm1", |a| a.punpcklbw(mm0, mm1)),
                mc!("punpcklwd mm0, mm1", |a| a.punpcklwd(mm0, mm1)),
                mc!("punpckhdq mm0, mm1", |a| a.punpckhdq(mm0, mm1)),
                mc!("punpckhbw mm0, mm1", |a| a.punpckhbw(mm0, mm1)),
                mc!("pand mm0, mm1", |a| a.pand(mm0, mm1)),
                mc!("pandn mm0, mm1", |a| a.pandn(mm0, mm1)),
                mc!("por mm0, mm1", |a| a.por(mm0, mm1)),
                mc!("pxor mm0, mm1", |a| a.pxor(mm0, mm1)),
                mc!("psllw mm0, mm1", |a| a.psllw(mm0, mm1)),
                mc!("psrld mm0, mm1", |a| a.psrld(mm0, mm1)),
                mc!("psrlq mm0, mm1", |a| a.psrlq(mm0, mm1)),
                mc!("psraw mm0, mm1", |a| a.psraw(mm0, mm1)),
                mc!("psrad mm0, 7", |a| a.psrad(mm0, 7)),
                mc!("psllq mm0, 40", |a| a.psllq(mm0, 40)),
                mc!("psrlw mm0, 16", |a| a.psrlw(mm0, 16)),
                mc!("pshufw mm0, mm1, 0x8d", |a| a.pshufw(mm0, mm1, 0x8d)),
                mc!("pextrw eax, mm1, 2", |a| a.pextrw(eax, mm1, 2)),
                mc!("pinsrw mm0, eax, 1", |a| a.pinsrw(mm0, eax, 1)),
                mc!("pmovmskb eax, mm1", |a| a.pmovmskb(eax, mm1)),
                mc!("movd eax, mm1", |a| a.movd(eax, mm1)),
                mc!("movq rax, mm1", |a| a.movq(rax, mm1)),
                mc!("movd mm0, eax", |a| a.movd(mm0, eax)),
                mc!("movq mm0, rax", |a| a.movq(mm0, rax)),
                mc!("movq mm0, mm1", |a| a.movq(mm0, mm1)),
            ],
            &ins,
        );
    }

    // ---- hand-checked behaviour: memory forms, faults, state ----

    /// Assemble and run `b` with rbx = DATA; return the exception vector, if any.
    fn run1(tc: &mut TestCpu, b: Build) -> Option<u8> {
        let code = assemble(b);
        tc.cpu.s.regs[3] = DATA;
        tc.run(&code, 20);
        tc.exception()
    }

    fn mem(tc: &TestCpu, off: u64, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        tc.ram.read_bytes(DATA + off, &mut b).unwrap();
        b
    }

    fn put(tc: &mut TestCpu, off: u64, b: &[u8]) {
        tc.ram.write_bytes(DATA + off, b).unwrap();
    }

    const V: u128 = 0x0F0E_0D0C_0B0A_0908_0706_0504_0302_0100;

    #[test]
    fn sse_alignment_faults() {
        let mut tc = TestCpu::new();
        let bytes: Vec<u8> = (0..64).collect();
        put(&mut tc, 0, &bytes);
        tc.cpu.s.xmm[0] = 0x1111;
        assert_eq!(run1(&mut tc, |a| a.movaps(xmm0, xmmword_ptr(rbx + 8))), Some(vec::GP));
        assert_eq!(tc.error_code(), 0);
        assert_eq!(tc.cpu.s.xmm[0], 0x1111);
        assert_eq!(run1(&mut tc, |a| a.movdqa(xmm0, xmmword_ptr(rbx + 4))), Some(vec::GP));
        assert_eq!(run1(&mut tc, |a| a.paddb(xmm0, xmmword_ptr(rbx + 1))), Some(vec::GP));
        assert_eq!(run1(&mut tc, |a| a.addps(xmm0, xmmword_ptr(rbx + 8))), Some(vec::GP));
        assert_eq!(run1(&mut tc, |a| a.cvtpd2pi(mm0, xmmword_ptr(rbx + 8))), Some(vec::GP));
        assert_eq!(run1(&mut tc, |a| a.pshufd(xmm0, xmmword_ptr(rbx + 8), 0)), Some(vec::GP));
        tc.cpu.s.xmm[1] = u128::MAX;
        assert_eq!(run1(&mut tc, |a| a.movntdq(xmmword_ptr(rbx + 24), xmm1)), Some(vec::GP));
        assert_eq!(run1(&mut tc, |a| a.movaps(xmmword_ptr(rbx + 24), xmm1)), Some(vec::GP));
        assert_eq!(mem(&tc, 0, 64), bytes, "faulting stores must not write");
        // Unaligned forms are fine.
        assert_eq!(run1(&mut tc, |a| a.movups(xmm0, xmmword_ptr(rbx + 8))), None);
        assert_eq!(tc.cpu.s.xmm[0], V + 0x0808_0808_0808_0808_0808_0808_0808_0808);
        assert_eq!(run1(&mut tc, |a| a.movdqu(xmm2, xmmword_ptr(rbx + 3))), None);
        assert_eq!(tc.cpu.s.xmm[2], V + 0x0303_0303_0303_0303_0303_0303_0303_0303);
        assert_eq!(run1(&mut tc, |a| a.movupd(xmmword_ptr(rbx + 33), xmm1)), None);
        assert_eq!(mem(&tc, 33, 16), vec![0xFF; 16]);
        assert_eq!(run1(&mut tc, |a| a.movlps(xmm0, qword_ptr(rbx + 3))), None);
        assert_eq!(run1(&mut tc, |a| a.addsd(xmm0, qword_ptr(rbx + 5))), None);
        // Aligned ones work when aligned.
        assert_eq!(run1(&mut tc, |a| a.movaps(xmm3, xmmword_ptr(rbx + 16))), None);
        assert_eq!(tc.cpu.s.xmm[3], V + 0x1010_1010_1010_1010_1010_1010_1010_1010);
        // A store crossing into an unmapped page faults before writing anything.
        tc.cpu.s.regs[0] = (1 << 30) - 8;
        assert_eq!(run1(&mut tc, |a| a.movups(xmmword_ptr(rax), xmm1)), Some(vec::PF));
        // (CR2 is somewhere in the unmapped page; `probe_write` reports the last byte.)
        assert!(((1 << 30)..(1 << 30) + 8).contains(&tc.cpu.s.cr2));
    }

    #[test]
    fn sse_availability_faults() {
        // CR4.OSFXSR clear: SSE instructions #UD, MMX ones still run.
        let mut tc = TestCpu::new();
        tc.cpu.s.cr4 &= !crs::CR4_OSFXSR;
        assert_eq!(run1(&mut tc, |a| a.addps(xmm0, xmm1)), Some(vec::UD));
        assert_eq!(run1(&mut tc, |a| a.movaps(xmm0, xmm1)), Some(vec::UD));
        assert_eq!(run1(&mut tc, |a| a.paddb(xmm0, xmm1)), Some(vec::UD));
        assert_eq!(run1(&mut tc, |a| a.ldmxcsr(dword_ptr(rbx))), Some(vec::UD));
        assert_eq!(run1(&mut tc, |a| a.cvtpi2ps(xmm0, mm1)), Some(vec::UD));
        assert_eq!(run1(&mut tc, |a| a.paddb(mm0, mm1)), None);
        assert_eq!(run1(&mut tc, |a| a.emms()), None);
        // CR0.TS: #NM for both.
        let mut tc = TestCpu::new();
        tc.cpu.s.cr0 |= crs::CR0_TS;
        assert_eq!(run1(&mut tc, |a| a.addps(xmm0, xmm1)), Some(vec::NM));
        assert_eq!(run1(&mut tc, |a| a.stmxcsr(dword_ptr(rbx))), Some(vec::NM));
        assert_eq!(run1(&mut tc, |a| a.paddb(mm0, mm1)), Some(vec::NM));
        assert_eq!(run1(&mut tc, |a| a.emms()), Some(vec::NM));
        // MOVNTI has no CR0/CR4 conditions.
        assert_eq!(run1(&mut tc, |a| a.movnti(dword_ptr(rbx), eax)), None);
        // CR0.EM: #UD for both (before TS).
        tc.cpu.s.cr0 |= crs::CR0_EM;
        assert_eq!(run1(&mut tc, |a| a.addps(xmm0, xmm1)), Some(vec::UD));
        assert_eq!(run1(&mut tc, |a| a.paddb(mm0, mm1)), Some(vec::UD));
        // Not advertised: SSSE3/SSE4.1 encodings are #UD.
        let mut tc = TestCpu::new();
        assert_eq!(run1(&mut tc, |a| a.pshufb(xmm0, xmm1)), Some(vec::UD));
        assert_eq!(run1(&mut tc, |a| a.pextrw(word_ptr(rbx), xmm1, 1)), Some(vec::UD));
        // LOCK prefix: #UD.
        assert_eq!(run1(&mut tc, |a| a.db(&[0xF0, 0x0F, 0x58, 0xC1])), Some(vec::UD));
    }

    #[test]
    fn sse_unmasked_exceptions() {
        let one = 0x3F80_0000u128;
        let snan = 0x7F80_0001u128;
        let mut tc = TestCpu::new();
        // IE unmasked: #XM, destination unchanged, IE set.
        tc.cpu.s.mxcsr = 0x1F00;
        tc.cpu.s.xmm[0] = one;
        tc.cpu.s.xmm[1] = snan;
        assert_eq!(run1(&mut tc, |a| a.addss(xmm0, xmm1)), Some(vec::XM));
        assert_eq!(tc.cpu.s.xmm[0], one);
        assert_eq!(tc.cpu.s.mxcsr, 0x1F01);
        // COMISS with a QNaN and IE unmasked: #XM, flags untouched.
        tc.cpu.s.mxcsr = 0x1F00;
        tc.cpu.s.xmm[1] = 0x7FC0_0000;
        tc.cpu.s.set_status_flags(rf::OF | rf::SF);
        assert_eq!(run1(&mut tc, |a| a.comiss(xmm0, xmm1)), Some(vec::XM));
        assert_eq!(tc.cpu.s.status_flags(), rf::OF | rf::SF);
        // UCOMISS with a QNaN does not signal.
        tc.cpu.s.mxcsr = 0x1F00;
        assert_eq!(run1(&mut tc, |a| a.ucomiss(xmm0, xmm1)), None);
        assert_eq!(tc.cpu.s.status_flags(), rf::ZF | rf::PF | rf::CF);
        // Without CR4.OSXMMEXCPT the same fault is #UD.
        tc.cpu.s.cr4 &= !crs::CR4_OSXMMEXCPT;
        tc.cpu.s.mxcsr = 0x1F00;
        tc.cpu.s.xmm[1] = snan;
        assert_eq!(run1(&mut tc, |a| a.addss(xmm0, xmm1)), Some(vec::UD));
        assert_eq!(tc.cpu.s.mxcsr, 0x1F01);
        tc.cpu.s.cr4 |= crs::CR4_OSXMMEXCPT;
        // ZE unmasked with an inexact lane elsewhere: only the pre-computation flag is set.
        tc.cpu.s.mxcsr = 0x1D80;
        tc.cpu.s.xmm[0] = pack(&[0x3F80_0000, 0x3F80_0000, 0, 0], 32);
        tc.cpu.s.xmm[1] = pack(&[0, 0x4040_0000, 0x3F80_0000, 0x3F80_0000], 32);
        let before = tc.cpu.s.xmm[0];
        assert_eq!(run1(&mut tc, |a| a.divps(xmm0, xmm1)), Some(vec::XM));
        assert_eq!(tc.cpu.s.xmm[0], before);
        assert_eq!(tc.cpu.s.mxcsr, 0x1D84);
        // Same with ZE masked, PE unmasked: ZE and PE set, still #XM.
        tc.cpu.s.mxcsr = 0x0F80;
        assert_eq!(run1(&mut tc, |a| a.divps(xmm0, xmm1)), Some(vec::XM));
        assert_eq!(tc.cpu.s.mxcsr, 0x0FA4);
        assert_eq!(tc.cpu.s.xmm[0], before);
        // UE unmasked: an exact tiny result still signals underflow (no PE).
        tc.cpu.s.mxcsr = 0x1780;
        tc.cpu.s.xmm[0] = 0x0080_0000;
        tc.cpu.s.xmm[1] = 0x3F00_0000;
        assert_eq!(run1(&mut tc, |a| a.mulss(xmm0, xmm1)), Some(vec::XM));
        assert_eq!(tc.cpu.s.mxcsr, 0x1790);
        assert_eq!(tc.cpu.s.xmm[0], 0x0080_0000);
        // ... and UE masked (FTZ clear): no flags at all.
        tc.cpu.s.mxcsr = 0x1F80;
        assert_eq!(run1(&mut tc, |a| a.mulss(xmm0, xmm1)), None);
        assert_eq!((tc.cpu.s.mxcsr, tc.cpu.s.xmm[0]), (0x1F80, 0x0040_0000));
        // OE unmasked: OE, and PE only if the result rounded with an unbounded exponent is
        // inexact (max · 2 is exact; max · 3 is not), as on the host (tests/conformance.rs).
        tc.cpu.s.mxcsr = 0x1B80;
        tc.cpu.s.xmm[0] = 0x7F7F_FFFF;
        tc.cpu.s.xmm[1] = 0x4000_0000;
        assert_eq!(run1(&mut tc, |a| a.mulss(xmm0, xmm1)), Some(vec::XM));
        assert_eq!(tc.cpu.s.mxcsr, 0x1B88);
        tc.cpu.s.mxcsr = 0x1B80;
        tc.cpu.s.xmm[1] = 0x4040_0000;
        assert_eq!(run1(&mut tc, |a| a.mulss(xmm0, xmm1)), Some(vec::XM));
        assert_eq!(tc.cpu.s.mxcsr, 0x1BA8);
        // Conversions: invalid with IE unmasked leaves the GPR alone.
        tc.cpu.s.mxcsr = 0x1F00;
        tc.cpu.s.regs[0] = 0x1234;
        tc.cpu.s.xmm[1] = 0x4F00_0000; // 2^31
        assert_eq!(run1(&mut tc, |a| a.cvtss2si(eax, xmm1)), Some(vec::XM));
        assert_eq!(tc.cpu.s.regs[0], 0x1234);
        // Flags accumulate (sticky) and masked exceptions do not fault.
        tc.cpu.s.mxcsr = 0x1F80 | 0x20;
        tc.cpu.s.xmm[0] = 0;
        tc.cpu.s.xmm[1] = 0;
        assert_eq!(run1(&mut tc, |a| a.divss(xmm0, xmm1)), None);
        assert_eq!(tc.cpu.s.mxcsr, 0x1FA1);
        assert_eq!(tc.cpu.s.xmm[0], 0xFFC0_0000);
    }

    #[test]
    fn mxcsr_load_store() {
        let mut tc = TestCpu::new();
        put(&mut tc, 0, &0xFFC0u32.to_le_bytes());
        assert_eq!(run1(&mut tc, |a| a.ldmxcsr(dword_ptr(rbx))), None);
        assert_eq!(tc.cpu.s.mxcsr, 0xFFC0);
        assert_eq!(run1(&mut tc, |a| a.stmxcsr(dword_ptr(rbx + 8))), None);
        assert_eq!(mem(&tc, 8, 4), 0xFFC0u32.to_le_bytes());
        put(&mut tc, 0, &0x1_1F80u32.to_le_bytes());
        assert_eq!(run1(&mut tc, |a| a.ldmxcsr(dword_ptr(rbx))), Some(vec::GP));
        assert_eq!(tc.cpu.s.mxcsr, 0xFFC0);
        // A loaded rounding mode is used: 1 + 2^-24 rounds up under RU.
        put(&mut tc, 0, &0x5F80u32.to_le_bytes());
        tc.cpu.s.xmm[0] = 0x3F80_0000;
        tc.cpu.s.xmm[1] = 0x3380_0000;
        assert_eq!(run1(&mut tc, |a| {
            a.ldmxcsr(dword_ptr(rbx))?;
            a.addss(xmm0, xmm1)
        }), None);
        assert_eq!(tc.cpu.s.xmm[0], 0x3F80_0001);
        assert_eq!(tc.cpu.s.mxcsr, 0x5FA0);
    }

    #[test]
    fn mmx_x87_aliasing() {
        let mut tc = TestCpu::new();
        tc.cpu.s.x87.top = 3;
        tc.cpu.s.x87.ftw = 0xFFFF;
        tc.cpu.s.x87.regs[1] = [1, 2, 3, 4, 5, 6, 7, 8, 0x34, 0x12];
        tc.cpu.s.x87.regs[2] = [0; 10];
        assert_eq!(run1(&mut tc, |a| a.movq(mm2, mm1)), None);
        assert_eq!(tc.cpu.s.x87.regs[2], [1, 2, 3, 4, 5, 6, 7, 8, 0xFF, 0xFF]);
        assert_eq!(tc.cpu.s.x87.regs[1][8..], [0x34, 0x12], "reading does not touch the exponent");
        assert_eq!((tc.cpu.s.x87.top, tc.cpu.s.x87.ftw), (0, 0));
        // Reads from MMX registers also enter MMX state.
        tc.cpu.s.x87.top = 6;
        tc.cpu.s.x87.ftw = 0xFFFF;
        assert_eq!(run1(&mut tc, |a| a.movd(eax, mm1)), None);
        assert_eq!(tc.cpu.s.regs[0], 0x0403_0201);
        assert_eq!((tc.cpu.s.x87.top, tc.cpu.s.x87.ftw), (0, 0));
        assert_eq!(run1(&mut tc, |a| a.emms()), None);
        assert_eq!(tc.cpu.s.x87.ftw, 0xFFFF);
        // A pending unmasked x87 exception: #MF before any MMX instruction (CR0.NE set).
        tc.cpu.s.x87.fsw = 0x80 | 0x01;
        assert_eq!(run1(&mut tc, |a| a.paddb(mm0, mm1)), Some(vec::MF));
        assert_eq!(run1(&mut tc, |a| a.addps(xmm0, xmm1)), None, "SSE does not care");
        tc.cpu.s.x87.fsw = 0;
        // MOVQ2DQ / MOVDQ2Q.
        tc.cpu.s.xmm[3] = u128::MAX;
        assert_eq!(run1(&mut tc, |a| a.movq2dq(xmm3, mm2)), None);
        assert_eq!(tc.cpu.s.xmm[3], 0x0807_0605_0403_0201);
        tc.cpu.s.xmm[4] = V;
        assert_eq!(run1(&mut tc, |a| a.movdq2q(mm5, xmm4)), None);
        assert_eq!(tc.cpu.s.x87.regs[5], [0, 1, 2, 3, 4, 5, 6, 7, 0xFF, 0xFF]);
    }

    #[test]
    fn sse_memory_forms() {
        let mut tc = TestCpu::new();
        let bytes: Vec<u8> = (0..64).collect();
        put(&mut tc, 0, &bytes);
        let s = |tc: &TestCpu, k: usize| tc.cpu.s.xmm[k];
        tc.cpu.s.xmm[0] = u128::MAX;
        assert_eq!(run1(&mut tc, |a| a.movss(xmm0, dword_ptr(rbx + 4))), None);
        assert_eq!(s(&tc, 0), 0x0706_0504, "MOVSS load zeroes the upper lanes");
        tc.cpu.s.xmm[0] = u128::MAX;
        assert_eq!(run1(&mut tc, |a| a.movsd_2(xmm0, qword_ptr(rbx + 8))), None);
        assert_eq!(s(&tc, 0), 0x0F0E_0D0C_0B0A_0908);
        tc.cpu.s.xmm[0] = u128::MAX;
        assert_eq!(run1(&mut tc, |a| a.movd(xmm0, dword_ptr(rbx))), None);
        assert_eq!(s(&tc, 0), 0x0302_0100);
        tc.cpu.s.xmm[0] = u128::MAX;
        assert_eq!(run1(&mut tc, |a| a.movq(xmm0, qword_ptr(rbx))), None);
        assert_eq!(s(&tc, 0), 0x0706_0504_0302_0100);
        tc.cpu.s.xmm[0] = u128::MAX;
        assert_eq!(run1(&mut tc, |a| a.movlps(xmm0, qword_ptr(rbx))), None);
        assert_eq!(s(&tc, 0), (u64::MAX as u128) << 64 | 0x0706_0504_0302_0100);
        assert_eq!(run1(&mut tc, |a| a.movhpd(xmm0, qword_ptr(rbx + 8))), None);
        assert_eq!(s(&tc, 0), V);
        tc.cpu.s.xmm[1] = 0xAAAA_AAAA_AAAA_AAAA_5555_5555_5555_5555;
        assert_eq!(run1(&mut tc, |a| a.movhps(qword_ptr(rbx + 32), xmm1)), None);
        assert_eq!(mem(&tc, 32, 9), [0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 40]);
        assert_eq!(run1(&mut tc, |a| a.movss(dword_ptr(rbx + 48), xmm1)), None);
        assert_eq!(mem(&tc, 48, 5), [0x55, 0x55, 0x55, 0x55, 52]);
        assert_eq!(run1(&mut tc, |a| a.movq(qword_ptr(rbx + 16), xmm1)), None);
        assert_eq!(mem(&tc, 16, 9), [0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 24]);
        assert_eq!(run1(&mut tc, |a| a.movdqa(xmmword_ptr(rbx + 16), xmm0)), None);
        assert_eq!(mem(&tc, 16, 16), (0..16).collect::<Vec<u8>>());
        assert_eq!(run1(&mut tc, |a| a.movd(dword_ptr(rbx + 60), xmm1)), None);
        assert_eq!(mem(&tc, 60, 4), [0x55; 4]);
        // Non-temporal stores.
        put(&mut tc, 0, &bytes);
        tc.cpu.s.regs[0] = 0xDEAD_BEEF_1234_5678;
        assert_eq!(run1(&mut tc, |a| a.movnti(qword_ptr(rbx + 8), rax)), None);
        assert_eq!(mem(&tc, 8, 8), 0xDEAD_BEEF_1234_5678u64.to_le_bytes());
        tc.cpu.s.x87.regs[1][..8].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(run1(&mut tc, |a| a.movntq(qword_ptr(rbx + 16), mm1)), None);
        assert_eq!(mem(&tc, 16, 8), 0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(run1(&mut tc, |a| a.movntps(xmmword_ptr(rbx + 32), xmm1)), None);
        assert_eq!(u128::from_le_bytes(mem(&tc, 32, 16).try_into().unwrap()), s(&tc, 1));
        // Packed arithmetic with aligned memory, PINSRW from memory.
        put(&mut tc, 0, &bytes);
        tc.cpu.s.xmm[2] = 0x0101_0101_0101_0101_0101_0101_0101_0101;
        assert_eq!(run1(&mut tc, |a| a.paddb(xmm2, xmmword_ptr(rbx))), None);
        assert_eq!(s(&tc, 2), V + 0x0101_0101_0101_0101_0101_0101_0101_0101);
        assert_eq!(run1(&mut tc, |a| a.pinsrw(xmm2, word_ptr(rbx + 6), 7)), None);
        assert_eq!(s(&tc, 2) >> 112, 0x0706);
        // Conversions with memory sources.
        put(&mut tc, 0, &(-7i32).to_le_bytes());
        assert_eq!(run1(&mut tc, |a| a.cvtsi2sd(xmm3, dword_ptr(rbx))), None);
        assert_eq!(s(&tc, 3) as u64, (-7.0f64).to_bits());
        put(&mut tc, 0, &2.75f32.to_bits().to_le_bytes());
        assert_eq!(run1(&mut tc, |a| a.cvtss2si(eax, dword_ptr(rbx))), None);
        assert_eq!(tc.cpu.s.regs[0], 3);
        put(&mut tc, 0, &[5, 0, 0, 0, 0xFB, 0xFF, 0xFF, 0xFF]);
        tc.cpu.s.xmm[4] = u128::MAX;
        assert_eq!(run1(&mut tc, |a| a.cvtpi2pd(xmm4, qword_ptr(rbx))), None);
        assert_eq!(s(&tc, 4), pack(&[5.0f64.to_bits(), (-5.0f64).to_bits()], 64));
        tc.cpu.s.x87.regs[1][..8].copy_from_slice(&[5, 0, 0, 0, 0xFB, 0xFF, 0xFF, 0xFF]);
        tc.cpu.s.xmm[4] = u128::MAX;
        assert_eq!(run1(&mut tc, |a| a.cvtpi2ps(xmm4, mm1)), None);
        assert_eq!(s(&tc, 4), (u64::MAX as u128) << 64 | pack(&[5.0f32.to_bits() as u64, (-5.0f32).to_bits() as u64], 32));
        tc.cpu.s.xmm[5] = pack(&[2.5f32.to_bits() as u64, (-3.5f32).to_bits() as u64, 0, 0], 32);
        assert_eq!(run1(&mut tc, |a| a.cvtps2pi(mm3, xmm5)), None);
        assert_eq!(&tc.cpu.s.x87.regs[3][..8], &[2, 0, 0, 0, 0xFC, 0xFF, 0xFF, 0xFF]);
        assert_eq!(run1(&mut tc, |a| a.cvttps2pi(mm3, xmm5)), None);
        assert_eq!(&tc.cpu.s.x87.regs[3][..8], &[2, 0, 0, 0, 0xFD, 0xFF, 0xFF, 0xFF]);
        tc.cpu.s.xmm[5] = pack(&[1e10f64.to_bits(), (-1.5f64).to_bits()], 64);
        assert_eq!(run1(&mut tc, |a| a.cvtpd2pi(mm3, xmm5)), None);
        assert_eq!(&tc.cpu.s.x87.regs[3][..8], &[0, 0, 0, 0x80, 0xFE, 0xFF, 0xFF, 0xFF]);
        assert_eq!(tc.cpu.s.mxcsr & 0x3F, 0x21);
        assert_eq!(run1(&mut tc, |a| a.cvttpd2pi(mm3, xmm5)), None);
        assert_eq!(&tc.cpu.s.x87.regs[3][..8], &[0, 0, 0, 0x80, 0xFF, 0xFF, 0xFF, 0xFF]);
        // COMISD with a memory operand.
        put(&mut tc, 0, &1.0f64.to_bits().to_le_bytes());
        tc.cpu.s.xmm[6] = 2.0f64.to_bits() as u128;
        assert_eq!(run1(&mut tc, |a| a.comisd(xmm6, qword_ptr(rbx))), None);
        assert_eq!(tc.cpu.s.status_flags(), 0);
    }

    #[test]
    fn maskmov_stores_selected_bytes() {
        let mut tc = TestCpu::new();
        put(&mut tc, 0, &[0xEE; 32]);
        tc.cpu.s.regs[7] = DATA + 4;
        tc.cpu.s.xmm[1] = V;
        tc.cpu.s.xmm[2] = 0x8000_0000_0000_0000_0000_0000_0080_FF80; // bytes 0, 1, 2, 15 selected
        assert_eq!(run1(&mut tc, |a| a.maskmovdqu(xmm1, xmm2)), None);
        let mut want = vec![0xEE; 32];
        want[4] = 0;
        want[5] = 1;
        want[6] = 2;
        want[4 + 15] = 15;
        assert_eq!(mem(&tc, 0, 32), want);
        tc.cpu.s.x87.regs[3][..8].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        tc.cpu.s.x87.regs[4][..8].copy_from_slice(&0x8000_0000_0000_0080u64.to_le_bytes());
        tc.cpu.s.regs[7] = DATA + 24;
        assert_eq!(run1(&mut tc, |a| a.maskmovq(mm3, mm4)), None);
        want[24] = 0x88;
        want[31] = 0x11;
        assert_eq!(mem(&tc, 0, 32), want);
        // Nothing selected: nothing written, no fault even at a bad address.
        tc.cpu.s.regs[7] = 1 << 60;
        tc.cpu.s.xmm[2] = 0;
        assert_eq!(run1(&mut tc, |a| a.maskmovdqu(xmm1, xmm2)), None);
    }

    #[test]
    fn rcp_rsqrt_are_close_to_host() {
        // RCP/RSQRT results are implementation-specific approximations: check Heron against
        // the exact value (≤ 2^-22 relative) and the host within the architectural bound
        // (1.5·2^-12), plus exact agreement on special inputs.
        let native_rcp: NativeX = nx!("rcpps xmm0, xmm1");
        let native_rsqrt: NativeX = nx!("rsqrtps xmm0, xmm1");
        let mut rng = Rng(5);
        let mut vals: Vec<u64> = F32_EDGE.to_vec();
        vals.extend((0..4000).map(|_| rng.f32()));
        let mut tc = TestCpu::new();
        for chunk in vals.chunks(4) {
            let mut lanes = chunk.to_vec();
            lanes.resize(4, 0x3F80_0000);
            let x = pack(&lanes, 32);
            for (rs, native) in [(false, native_rcp), (true, native_rsqrt)] {
                let (n, _, ncsr, _) = native(0x1F80, 0, x, 0);
                assert_eq!(ncsr, 0x1F80);
                tc.cpu.s.xmm[1] = x;
                let r = if rs { run1(&mut tc, |a| a.rsqrtps(xmm0, xmm1)) } else { run1(&mut tc, |a| a.rcpps(xmm0, xmm1)) };
                assert_eq!(r, None);
                assert_eq!(tc.cpu.s.mxcsr, 0x1F80);
                for k in 0..4 {
                    let xi = f32::from_bits(lane(x, 32, k) as u32);
                    let h = f32::from_bits(lane(tc.cpu.s.xmm[0], 32, k) as u32);
                    let nv = f32::from_bits(lane(n, 32, k) as u32);
                    let exact = if rs { 1.0 / (xi as f64).sqrt() } else { 1.0 / xi as f64 };
                    let tiny_boundary = exact.abs() < 1.2e-38 && exact.abs() > 1.1e-38;
                    if !h.is_finite() || h == 0.0 || !nv.is_finite() || nv == 0.0 {
                        if !tiny_boundary {
                            assert_eq!(h.to_bits(), nv.to_bits(), "rsqrt={rs} x={:08x}", xi.to_bits());
                        }
                        continue;
                    }
                    assert!(((h as f64 - exact) / exact).abs() <= 2f64.powi(-22), "rsqrt={rs} x={xi:e} h={h:e}");
                    assert!(((nv as f64 - exact) / exact).abs() <= 1.5 * 2f64.powi(-12), "host rsqrt={rs} x={xi:e} n={nv:e}");
                }
            }
        }
    }

    /// `movsd [mem], xmm` must run as the SSE2 store, not as the string instruction MOVSD.
    #[test]
    fn movsd_store_is_sse() {
        let mut tc = TestCpu::new();
        put(&mut tc, 0, &(0..64).collect::<Vec<u8>>());
        tc.cpu.s.xmm[1] = 0x5555_5555_5555_5555;
        tc.cpu.s.regs[6] = DATA;
        tc.cpu.s.regs[7] = DATA + 8;
        assert_eq!(run1(&mut tc, |a| a.movsd_2(qword_ptr(rbx + 40), xmm1)), None);
        assert_eq!(mem(&tc, 40, 9), [0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 48]);
        assert_eq!(mem(&tc, 8, 4), [8, 9, 10, 11], "the string MOVSD must not run");
    }
}

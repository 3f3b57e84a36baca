//! Soft-float core of the x87: the 80-bit extended format, exact arithmetic on unpacked
//! values (results carry a sticky bit), and one rounding routine that implements precision
//! control, the four rounding modes, denormalization, tininess detection after rounding
//! with unbounded exponent (Intel SDM Vol. 1 §4.9.1.5, §8.5.5) and the masked/unmasked
//! overflow and underflow responses (§8.5.4–8.5.5).
//!
//! Every basic operation (add, subtract, multiply, divide, square root, remainder, scale,
//! integer conversion) computes its result exactly — a 128-bit significand whose lowest bit
//! is a sticky bit — and is then rounded once, so results are correctly rounded for every
//! precision (24/53/64 bits) and rounding mode, as on hardware.

use core::cmp::Ordering;

/// FSW exception flag bits (also the FCW mask bits for the first six).
pub mod fl {
    /// Invalid operation.
    pub const IE: u16 = 1 << 0;
    /// Denormal operand.
    pub const DE: u16 = 1 << 1;
    /// Zero divide.
    pub const ZE: u16 = 1 << 2;
    /// Overflow.
    pub const OE: u16 = 1 << 3;
    /// Underflow.
    pub const UE: u16 = 1 << 4;
    /// Precision (inexact).
    pub const PE: u16 = 1 << 5;
    /// Stack fault.
    pub const SF: u16 = 1 << 6;
    /// Error summary.
    pub const ES: u16 = 1 << 7;
    /// Condition code C0.
    pub const C0: u16 = 1 << 8;
    /// Condition code C1.
    pub const C1: u16 = 1 << 9;
    /// Condition code C2.
    pub const C2: u16 = 1 << 10;
    /// Condition code C3.
    pub const C3: u16 = 1 << 14;
    /// FPU busy (mirrors ES).
    pub const B: u16 = 1 << 15;
    /// The six exception flags.
    pub const EXC: u16 = 0x3F;
}

/// The explicit integer bit of an extended significand.
pub const J: u64 = 1 << 63;
/// The quiet bit of a NaN significand.
pub const QBIT: u64 = 1 << 62;
/// Exponent bias of the extended format.
pub const BIAS: i32 = 16383;
/// Exponent adjustment of unmasked overflow/underflow results on the register stack.
pub const WRAP: i32 = 24576;

/// An 80-bit extended value: sign and 15-bit biased exponent, 64-bit significand with explicit
/// integer bit.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct F80 {
    /// Sign (bit 15) and biased exponent (bits 0–14).
    pub se: u16,
    /// Significand, integer bit at bit 63.
    pub sig: u64,
}

/// Classification of an extended encoding (Intel SDM Vol. 1 §8.2.2, Table 8-3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class {
    /// ±0.
    Zero,
    /// Denormal, or pseudo-denormal (exponent 0, integer bit 1).
    Denormal,
    /// Normalized finite.
    Normal,
    /// ±∞.
    Inf,
    /// Quiet NaN.
    QNaN,
    /// Signaling NaN.
    SNaN,
    /// Unnormal, pseudo-NaN, pseudo-infinity: invalid operands since the 387.
    Unsupported,
}

/// A finite non-zero value unpacked: value = sig × 2^(exp − 63), sig normalized (bit 63 set).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Unp {
    /// Negative.
    pub sign: bool,
    /// Unbiased exponent of bit 63.
    pub exp: i32,
    /// Normalized significand.
    pub sig: u64,
}

/// An exact (or sticky) intermediate: value = sig × 2^(exp − 127), bit 127 of `sig` set; an
/// inexact tail is folded into bit 0 (sticky).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Raw {
    /// Negative.
    pub sign: bool,
    /// Unbiased exponent of bit 127.
    pub exp: i32,
    /// Normalized 128-bit significand.
    pub sig: u128,
}

/// The result of an exact operation: a non-zero value or a signed zero.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Exact {
    /// An exact zero with this sign.
    Zero(bool),
    /// A non-zero value.
    Val(Raw),
}

/// Rounding control (FCW.RC encoding).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Rc {
    /// Round to nearest, ties to even.
    Nearest,
    /// Round toward −∞.
    Down,
    /// Round toward +∞.
    Up,
    /// Round toward zero.
    Zero,
}

impl Rc {
    /// From FCW bits 10–11.
    pub fn from_fcw(fcw: u16) -> Rc {
        match (fcw >> 10) & 3 {
            0 => Rc::Nearest,
            1 => Rc::Down,
            2 => Rc::Up,
            _ => Rc::Zero,
        }
    }
}

/// A destination format: precision and normal exponent range.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Fmt {
    /// Significand bits including the integer bit.
    pub p: u32,
    /// Smallest normal unbiased exponent.
    pub emin: i32,
    /// Largest unbiased exponent.
    pub emax: i32,
}

/// Extended format with 64-bit precision.
pub const EXT: Fmt = Fmt { p: 64, emin: -16382, emax: 16383 };
/// Single precision (m32fp).
pub const SINGLE: Fmt = Fmt { p: 24, emin: -126, emax: 127 };
/// Double precision (m64fp).
pub const DOUBLE: Fmt = Fmt { p: 53, emin: -1022, emax: 1023 };

/// Extended exponent range with the precision selected by FCW.PC (00: 24 bits, 10: 53 bits,
/// 11: 64 bits; 01 is reserved and behaves as 64 bits here).
pub fn ext_pc(fcw: u16) -> Fmt {
    let p = match (fcw >> 8) & 3 {
        0 => 24,
        2 => 53,
        _ => 64,
    };
    Fmt { p, ..EXT }
}

impl F80 {
    /// The QNaN floating-point indefinite.
    pub const INDEFINITE: F80 = F80 { se: 0xFFFF, sig: 0xC000_0000_0000_0000 };
    /// +0.
    pub const ZERO: F80 = F80 { se: 0, sig: 0 };
    /// +1.
    pub const ONE: F80 = F80 { se: 0x3FFF, sig: J };

    /// From the 10-byte memory image (significand first).
    pub fn from_bytes(b: &[u8; 10]) -> F80 {
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[..8]);
        F80 { sig: u64::from_le_bytes(s), se: u16::from_le_bytes([b[8], b[9]]) }
    }

    /// To the 10-byte memory image.
    pub fn to_bytes(self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[..8].copy_from_slice(&self.sig.to_le_bytes());
        b[8..].copy_from_slice(&self.se.to_le_bytes());
        b
    }

    /// Negative sign bit.
    pub fn sign(self) -> bool {
        self.se & 0x8000 != 0
    }

    /// Biased exponent.
    pub fn bexp(self) -> u16 {
        self.se & 0x7FFF
    }

    /// ±∞.
    pub fn inf(sign: bool) -> F80 {
        F80 { se: 0x7FFF | if sign { 0x8000 } else { 0 }, sig: J }
    }

    /// ±0.
    pub fn zero(sign: bool) -> F80 {
        F80 { se: if sign { 0x8000 } else { 0 }, sig: 0 }
    }

    /// Flip the sign.
    pub fn neg(self) -> F80 {
        F80 { se: self.se ^ 0x8000, sig: self.sig }
    }

    /// Clear the sign.
    pub fn abs(self) -> F80 {
        F80 { se: self.se & 0x7FFF, sig: self.sig }
    }

    /// Classify the encoding.
    pub fn class(self) -> Class {
        let e = self.bexp();
        if e == 0 {
            if self.sig == 0 {
                Class::Zero
            } else {
                Class::Denormal
            }
        } else if self.sig & J == 0 {
            Class::Unsupported
        } else if e == 0x7FFF {
            if self.sig << 1 == 0 {
                Class::Inf
            } else if self.sig & QBIT != 0 {
                Class::QNaN
            } else {
                Class::SNaN
            }
        } else {
            Class::Normal
        }
    }

    /// NaN (quiet or signaling).
    pub fn is_nan(self) -> bool {
        matches!(self.class(), Class::QNaN | Class::SNaN)
    }

    /// Signaling NaN.
    pub fn is_snan(self) -> bool {
        self.class() == Class::SNaN
    }

    /// Quiet a NaN.
    pub fn quiet(self) -> F80 {
        F80 { se: self.se, sig: self.sig | QBIT }
    }

    /// Tag of a non-empty register holding this value: 00 valid, 01 zero, 10 special.
    pub fn tag(self) -> u16 {
        match self.class() {
            Class::Normal => 0,
            Class::Zero => 1,
            _ => 2,
        }
    }

    /// Unpack a finite non-zero value (Normal or Denormal class).
    pub fn unpack(self) -> Unp {
        let e = self.bexp() as i32;
        let sign = self.sign();
        if e == 0 {
            // Denormals and pseudo-denormals: value = sig × 2^(1 − 16383 − 63).
            let lz = self.sig.leading_zeros();
            Unp { sign, exp: 1 - BIAS - lz as i32, sig: self.sig << lz }
        } else {
            Unp { sign, exp: e - BIAS, sig: self.sig }
        }
    }

    /// Pack a normalized value that is known to fit (exponent within the extended range).
    pub fn pack_normal(sign: bool, exp: i32, sig: u64) -> F80 {
        debug_assert!(sig & J != 0);
        let be = exp + BIAS;
        debug_assert!((1..0x7FFF).contains(&be));
        F80 { se: be as u16 | if sign { 0x8000 } else { 0 }, sig }
    }
}

impl Unp {
    /// As a 128-bit intermediate (exact).
    pub fn raw(self) -> Raw {
        Raw { sign: self.sign, exp: self.exp, sig: (self.sig as u128) << 64 }
    }
}

/// Shift right with the shifted-out bits ORed into bit 0.
pub fn shr_jam(v: u128, sh: u32) -> u128 {
    if sh == 0 {
        v
    } else if sh >= 128 {
        (v != 0) as u128
    } else {
        (v >> sh) | ((v & ((1u128 << sh) - 1)) != 0) as u128
    }
}

fn normalize(sign: bool, exp_of_bit127: i32, sig: u128) -> Exact {
    if sig == 0 {
        return Exact::Zero(sign);
    }
    let lz = sig.leading_zeros();
    Exact::Val(Raw { sign, exp: exp_of_bit127 - lz as i32, sig: sig << lz })
}

/// Exact a + b (sticky). A zero result of an effective subtraction gets the sign the
/// rounding mode prescribes (−0 only when rounding down).
pub fn add(a: Unp, b: Unp, rc: Rc) -> Exact {
    let (big, small) = if (a.exp, a.sig) >= (b.exp, b.sig) { (a, b) } else { (b, a) };
    let d = (big.exp - small.exp) as u32;
    // Place the larger significand at bits 126..63, leaving bit 127 for a carry.
    let x = (big.sig as u128) << 63;
    let y = shr_jam((small.sig as u128) << 63, d);
    if a.sign == b.sign {
        normalize(a.sign, big.exp + 1, x + y)
    } else {
        let r = x - y;
        if r == 0 {
            return Exact::Zero(rc == Rc::Down);
        }
        normalize(big.sign, big.exp + 1, r)
    }
}

/// Exact a × b.
pub fn mul(a: Unp, b: Unp) -> Raw {
    let p = (a.sig as u128) * (b.sig as u128);
    let lz = p.leading_zeros();
    Raw { sign: a.sign != b.sign, exp: a.exp + b.exp + 1 - lz as i32, sig: p << lz }
}

/// a / b with a sticky bit.
pub fn div(a: Unp, b: Unp) -> Raw {
    let bs = b.sig as u128;
    let n = (a.sig as u128) << 64;
    let q1 = n / bs;
    let r1 = n % bs;
    let n2 = r1 << 64;
    let q2 = n2 / bs;
    let r2 = n2 % bs;
    // q1 < 2^65, q2 < 2^64: q = q1·2^62 + q2/4, sticky from the rest.
    let q = (q1 << 62) | (q2 >> 2);
    let sticky = (q2 & 3) != 0 || r2 != 0;
    let lz = q.leading_zeros();
    Raw { sign: a.sign != b.sign, exp: a.exp - b.exp + 1 - lz as i32, sig: (q << lz) | sticky as u128 }
}

/// Integer square root of a u128 (floor).
pub fn isqrt(x: u128) -> u128 {
    if x == 0 {
        return 0;
    }
    let mut r = (x as f64).sqrt() as u128;
    // Newton steps from the floating-point estimate, then exact correction.
    for _ in 0..4 {
        if r == 0 {
            r = 1;
        }
        let nr = (r + x / r) / 2;
        if nr == r {
            break;
        }
        r = nr;
    }
    while r.checked_mul(r).is_none_or(|s| s > x) {
        r -= 1;
    }
    while (r + 1).checked_mul(r + 1).is_some_and(|s| s <= x) {
        r += 1;
    }
    r
}

/// √a for positive a, with guard and sticky bits.
pub fn sqrt(a: Unp) -> Raw {
    let k = a.exp - 63; // exponent of the lsb
    let t: u32 = if (k - 63).rem_euclid(2) == 0 { 63 } else { 64 };
    let x = (a.sig as u128) << t;
    let r = isqrt(x);
    let rem = x - r * r;
    let guard = rem > r;
    let sticky = rem != 0;
    let sig = (r << 64) | ((guard as u128) << 63) | sticky as u128;
    Raw { sign: false, exp: (k - t as i32) / 2 + 63, sig }
}

/// An exact intermediate from an unsigned integer magnitude × 2^e.
pub fn from_int(sign: bool, mag: u128, e: i32) -> Exact {
    normalize(sign, e + 127, mag)
}

/// The result of rounding an intermediate to a format.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rounded {
    /// Negative.
    pub sign: bool,
    /// Unbiased exponent of bit 63 of `sig` (the format's emin for denormals).
    pub exp: i32,
    /// Significand, msb-aligned at bit 63 (bit 63 clear for denormals, 0 for zero).
    pub sig: u64,
    /// Rounding changed the value.
    pub inexact: bool,
    /// The magnitude was increased.
    pub up: bool,
    /// Tiny: non-zero and below 2^emin after rounding with unbounded exponent.
    pub tiny: bool,
    /// The exponent after rounding exceeds emax.
    pub ovf: bool,
}

fn round_inc(sign: bool, kept: u128, rem: u128, half: u128, rc: Rc) -> bool {
    if rem == 0 {
        return false;
    }
    match rc {
        Rc::Nearest => rem > half || (rem == half && kept & 1 == 1),
        Rc::Up => !sign,
        Rc::Down => sign,
        Rc::Zero => false,
    }
}

/// Round `r` to `f.p` bits. With `denorm`, results below 2^emin are denormalized (the lsb
/// weight is fixed at 2^(emin − p + 1)); without, the significand is rounded to p bits
/// whatever the exponent (for bias-adjusted unmasked underflow results).
pub fn round(r: Raw, f: Fmt, rc: Rc, denorm: bool) -> Rounded {
    let p = f.p;
    let drop = 128 - p;
    let mask = (1u128 << drop) - 1;
    let half = 1u128 << (drop - 1);
    // Unbounded exponent range.
    let mut kept = r.sig >> drop;
    let rem = r.sig & mask;
    let inc = round_inc(r.sign, kept, rem, half, rc);
    let mut exp = r.exp;
    if inc {
        kept += 1;
        if kept >> p != 0 {
            kept >>= 1;
            exp += 1;
        }
    }
    let tiny = exp < f.emin;
    if denorm && r.exp < f.emin {
        let s2 = shr_jam(r.sig, (f.emin - r.exp) as u32);
        let mut k = s2 >> drop;
        let rem = s2 & mask;
        let inc = round_inc(r.sign, k, rem, half, rc);
        if inc {
            k += 1;
        }
        return Rounded { sign: r.sign, exp: f.emin, sig: (k << (64 - p)) as u64, inexact: rem != 0, up: inc, tiny, ovf: false };
    }
    Rounded { sign: r.sign, exp, sig: (kept << (64 - p)) as u64, inexact: rem != 0, up: inc, tiny, ovf: exp > f.emax }
}

/// Largest finite magnitude of a format, msb-aligned.
fn largest_sig(f: Fmt) -> u64 {
    (((1u128 << f.p) - 1) << (64 - f.p)) as u64
}

/// Does masked overflow in this direction give ∞ (else the largest finite value)?
fn ovf_to_inf(sign: bool, rc: Rc) -> bool {
    match rc {
        Rc::Nearest => true,
        Rc::Up => !sign,
        Rc::Down => sign,
        Rc::Zero => false,
    }
}

/// Outcome of rounding to a register: value, exception flags, C1 (round-up).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RegOut {
    /// The value to store.
    pub v: F80,
    /// Exception flags raised (OE, UE, PE).
    pub flags: u16,
    /// C1: the significand was rounded up.
    pub c1: bool,
}

/// Round an exact result for a register destination with masked or unmasked overflow and
/// underflow responses (SDM Vol. 1 §8.5.4–8.5.6). `fcw` supplies the masks.
pub fn round_reg(x: Exact, f: Fmt, rc: Rc, fcw: u16) -> RegOut {
    let r = match x {
        Exact::Zero(s) => return RegOut { v: F80::zero(s), flags: 0, c1: false },
        Exact::Val(r) => r,
    };
    let um_ue = fcw & fl::UE == 0;
    let um_oe = fcw & fl::OE == 0;
    let q = round(r, f, rc, !um_ue);
    let pe = if q.inexact { fl::PE } else { 0 };
    if q.ovf {
        if um_oe {
            let e = q.exp - WRAP;
            if e > f.emax {
                // Massive overflow (FSCALE): ∞ even after the bias adjustment.
                return RegOut { v: F80::inf(q.sign), flags: fl::OE | fl::PE, c1: true };
            }
            return RegOut { v: F80::pack_normal(q.sign, e, q.sig), flags: fl::OE | pe, c1: q.up };
        }
        return if ovf_to_inf(q.sign, rc) {
            RegOut { v: F80::inf(q.sign), flags: fl::OE | fl::PE, c1: true }
        } else {
            RegOut { v: F80::pack_normal(q.sign, f.emax, largest_sig(f)), flags: fl::OE | fl::PE, c1: false }
        };
    }
    if q.tiny && um_ue {
        let e = q.exp + WRAP;
        if e < f.emin {
            // Massive underflow (FSCALE): zero even after the bias adjustment.
            return RegOut { v: F80::zero(q.sign), flags: fl::UE | fl::PE, c1: false };
        }
        return RegOut { v: F80::pack_normal(q.sign, e, q.sig), flags: fl::UE | pe, c1: q.up };
    }
    let ue = if q.tiny && q.inexact { fl::UE } else { 0 };
    let v = if q.sig == 0 {
        F80::zero(q.sign)
    } else if q.sig & J == 0 {
        F80 { se: if q.sign { 0x8000 } else { 0 }, sig: q.sig }
    } else {
        F80::pack_normal(q.sign, q.exp, q.sig)
    };
    RegOut { v, flags: ue | pe, c1: q.up }
}

/// Outcome of rounding for a memory destination (m32fp/m64fp).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MemOut {
    /// Bits to store; `None` when an unmasked overflow/underflow suppresses the store.
    pub bits: Option<u64>,
    /// Exception flags raised.
    pub flags: u16,
    /// C1: rounded up.
    pub c1: bool,
}

fn pack_ieee(sign: bool, exp_field: u64, frac: u64, f: Fmt) -> u64 {
    let ebits = if f.p == 24 { 8 } else { 11 };
    let fbits = f.p as u64 - 1;
    ((sign as u64) << (ebits + fbits)) | (exp_field << fbits) | frac
}

/// Round an extended value for an m32fp/m64fp store (format `f` is SINGLE or DOUBLE).
/// NaNs, infinities and zeros are converted here too; `v` must not be unsupported.
pub fn round_mem(v: F80, f: Fmt, rc: Rc, fcw: u16) -> MemOut {
    let fbits = f.p - 1;
    let emax_field: u64 = if f.p == 24 { 0xFF } else { 0x7FF };
    let sign = v.sign();
    match v.class() {
        Class::Zero => return MemOut { bits: Some(pack_ieee(sign, 0, 0, f)), flags: 0, c1: false },
        Class::Inf => return MemOut { bits: Some(pack_ieee(sign, emax_field, 0, f)), flags: 0, c1: false },
        Class::QNaN | Class::SNaN => {
            let frac = ((v.sig | QBIT) << 1) >> (64 - fbits);
            let flags = if v.is_snan() { fl::IE } else { 0 };
            if flags != 0 && fcw & fl::IE == 0 {
                return MemOut { bits: None, flags, c1: false };
            }
            return MemOut { bits: Some(pack_ieee(sign, emax_field, frac, f)), flags, c1: false };
        }
        Class::Unsupported => return invalid_mem(f, fcw),
        _ => {}
    }
    let u = v.unpack();
    let um_ue = fcw & fl::UE == 0;
    let um_oe = fcw & fl::OE == 0;
    let q = round(u.raw(), f, rc, true);
    let pe = if q.inexact { fl::PE } else { 0 };
    let bias = f.emax;
    if q.ovf {
        if um_oe {
            return MemOut { bits: None, flags: fl::OE, c1: false };
        }
        return if ovf_to_inf(sign, rc) {
            MemOut { bits: Some(pack_ieee(sign, emax_field, 0, f)), flags: fl::OE | fl::PE, c1: true }
        } else {
            let frac = (largest_sig(f) << 1) >> (64 - fbits);
            MemOut { bits: Some(pack_ieee(sign, emax_field - 1, frac, f)), flags: fl::OE | fl::PE, c1: false }
        };
    }
    if q.tiny && um_ue {
        return MemOut { bits: None, flags: fl::UE, c1: false };
    }
    let ue = if q.tiny && q.inexact { fl::UE } else { 0 };
    let bits = if q.sig & J == 0 {
        pack_ieee(sign, 0, q.sig >> (64 - f.p), f)
    } else {
        pack_ieee(sign, (q.exp + bias) as u64, (q.sig << 1) >> (64 - fbits), f)
    };
    MemOut { bits: Some(bits), flags: ue | pe, c1: q.up }
}

fn invalid_mem(f: Fmt, fcw: u16) -> MemOut {
    if fcw & fl::IE == 0 {
        return MemOut { bits: None, flags: fl::IE, c1: false };
    }
    let bits = if f.p == 24 { 0xFFC0_0000 } else { 0xFFF8_0000_0000_0000 };
    MemOut { bits: Some(bits), flags: fl::IE, c1: false }
}

/// Convert an m32fp/m64fp bit pattern to extended (exact). Returns the value and whether the
/// source was a denormal. SNaNs stay signaling (the consumer raises #IA).
pub fn from_ieee(bits: u64, f: Fmt) -> (F80, bool) {
    let fbits = f.p - 1;
    let ebits = if f.p == 24 { 8 } else { 11 };
    let sign = (bits >> (fbits + ebits)) & 1 != 0;
    let e = ((bits >> fbits) & ((1 << ebits) - 1)) as i32;
    let frac = bits & ((1u64 << fbits) - 1);
    let emax_field = (1 << ebits) - 1;
    let s = if sign { 0x8000 } else { 0 };
    if e == emax_field {
        return (F80 { se: 0x7FFF | s, sig: J | (frac << (64 - f.p)) }, false);
    }
    if e == 0 {
        if frac == 0 {
            return (F80::zero(sign), false);
        }
        let lz = frac.leading_zeros();
        // value = frac × 2^(emin − fbits)
        let exp = f.emin - fbits as i32 + 63 - lz as i32;
        return (F80::pack_normal(sign, exp, frac << lz), true);
    }
    (F80::pack_normal(sign, e - f.emax, J | (frac << (64 - f.p))), false)
}

/// Compare two non-NaN, supported values.
pub fn compare(a: F80, b: F80) -> Ordering {
    let ca = a.class();
    let cb = b.class();
    let key = |v: F80, c: Class| -> (i32, i32, u64) {
        // (sign-adjusted magnitude class, exponent, significand)
        match c {
            Class::Zero => (0, 0, 0),
            Class::Inf => (2, 0, 0),
            _ => {
                let u = v.unpack();
                (1, u.exp, u.sig)
            }
        }
    };
    let (ka, kb) = (key(a, ca), key(b, cb));
    let za = ca == Class::Zero;
    let zb = cb == Class::Zero;
    if za && zb {
        return Ordering::Equal;
    }
    let sa = a.sign() && !za;
    let sb = b.sign() && !zb;
    match (sa, sb) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => ka.cmp(&kb),
        (true, true) => kb.cmp(&ka),
    }
}

/// x87 NaN propagation for two operands, at least one a NaN (SDM Vol. 1 Table 4-7): an SNaN
/// with a QNaN gives the QNaN; two of the same kind give the larger significand. Returns the
/// quieted result.
pub fn propagate_nan(a: F80, b: F80) -> F80 {
    let (an, bn) = (a.is_nan(), b.is_nan());
    let r = if an && bn {
        let (asn, bsn) = (a.is_snan(), b.is_snan());
        let pick_a = if asn != bsn {
            bsn
        } else if a.sig != b.sig {
            a.sig > b.sig
        } else {
            !a.sign()
        };
        if pick_a {
            a
        } else {
            b
        }
    } else if an {
        a
    } else {
        b
    };
    r.quiet()
}

/// Round a finite value to an integer magnitude with the given mode: (magnitude, inexact,
/// rounded up). The magnitude may reach 2^64 for |x| near 2^64 (callers range-check).
pub fn round_to_int(u: Unp, rc: Rc) -> (u128, bool, bool) {
    if u.exp >= 63 {
        // Already an integer; may not fit, callers check the exponent first.
        let sh = (u.exp - 63).min(64) as u32;
        return ((u.sig as u128) << sh, false, false);
    }
    let s = (u.sig as u128) << 64; // value = s × 2^(exp − 127)
    let sh = (127 - u.exp) as u32; // bits below the binary point
    let (kept, rem, half) = if sh > 128 {
        (0u128, s | 1, u128::MAX) // below one half: rem nonzero, never ≥ half
    } else if sh == 128 {
        (0u128, s, 1u128 << 127) // in [0.5, 1)
    } else {
        (s >> sh, s & ((1u128 << sh) - 1), 1u128 << (sh - 1))
    };
    let inc = round_inc(u.sign, kept, rem, half, rc);
    (kept + inc as u128, rem != 0, inc)
}

/// An extended value from an i64 (exact).
pub fn from_i64(v: i64) -> F80 {
    if v == 0 {
        return F80::ZERO;
    }
    let m = v.unsigned_abs();
    let lz = m.leading_zeros();
    F80::pack_normal(v < 0, 63 - lz as i32, m << lz)
}

/// Round a Raw to 64 bits, nearest, ignoring flags, for intermediate constants.
pub fn to_f80_nearest(x: Exact) -> F80 {
    round_reg(x, EXT, Rc::Nearest, 0x3F).v
}

/// Extended to f64, round to nearest (for the transcendental approximations).
pub fn to_f64(v: F80) -> f64 {
    match v.class() {
        Class::Zero => {
            if v.sign() {
                -0.0
            } else {
                0.0
            }
        }
        Class::Inf => {
            if v.sign() {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }
        }
        Class::Normal | Class::Denormal => f64::from_bits(round_mem(v, DOUBLE, Rc::Nearest, 0x3F).bits.unwrap_or(0)),
        _ => f64::NAN,
    }
}

/// f64 to extended (exact).
pub fn from_f64(x: f64) -> F80 {
    from_ieee(x.to_bits(), DOUBLE).0
}

/// Exact intermediate of a finite extended value (or zero).
pub fn exact_of(v: F80) -> Exact {
    match v.class() {
        Class::Zero => Exact::Zero(v.sign()),
        _ => Exact::Val(v.unpack().raw()),
    }
}

/// Exact sum of two finite extended values.
pub fn add_exact(a: F80, b: F80, rc: Rc) -> Exact {
    match (a.class(), b.class()) {
        (Class::Zero, Class::Zero) => Exact::Zero(if a.sign() == b.sign() { a.sign() } else { rc == Rc::Down }),
        (Class::Zero, _) => exact_of(b),
        (_, Class::Zero) => exact_of(a),
        _ => add(a.unpack(), b.unpack(), rc),
    }
}

/// Exact product of two finite extended values.
pub fn mul_exact(a: F80, b: F80) -> Exact {
    if a.class() == Class::Zero || b.class() == Class::Zero {
        return Exact::Zero(a.sign() != b.sign());
    }
    Exact::Val(mul(a.unpack(), b.unpack()))
}

/// Mark an intermediate inexact (set the sticky bit): for approximated results.
pub fn inexact(x: Exact) -> Exact {
    match x {
        Exact::Val(mut r) => {
            r.sig |= 1;
            Exact::Val(r)
        }
        z => z,
    }
}

//! Generators for the SSE/SSE2, MMX and x87 classes. Each case starts from a random FP state
//! (XMM0–15 with lanes of the class's type, MXCSR with a random rounding mode, FTZ/DAZ and
//! now and then unmasked exceptions; an x87 stack with random TOP, tags, values, FCW precision
//! and rounding control) and operand values that mix special values (±0, denormals, ±∞,
//! QNaN/SNaN, the largest and smallest normals, values at the integer-indefinite boundaries)
//! with random ones. Undefined x87 condition codes are set in `G::fsw_undef` with their SDM
//! reference; SSE instructions leave nothing undefined (SDM Vol. 2, "SIMD Floating-Point
//! Exceptions" and "Flags Affected" of each page).

use super::gen::{fx, Rm, Spec, G, PAGE, RDI, WIN};
use super::native::DATA;

// ---- values ----

/// A 32-bit float: specials, boundaries, or random bits.
fn f32v(g: &mut G) -> u32 {
    let s = (g.rng.next() as u32) & 0x8000_0000;
    s | match g.rng.below(20) {
        0 => 0,                                    // ±0
        1 => 1 + g.rng.below(0x7F_FFFF) as u32,    // denormal
        2 => 0x7F80_0000,                          // ±inf
        3 => 0x7FC0_0000 | (g.rng.next() as u32 & 0x3F_FFFF), // QNaN
        4 => 0x7F80_0001 | (g.rng.next() as u32 & 0x3F_FFFF), // SNaN
        5 => 0x7F7F_FFFF,                          // largest normal
        6 => 0x0080_0000,                          // smallest normal
        7 => 0x3F80_0000,                          // 1.0
        // 2^31 and 2^63 neighbourhoods (integer indefinite boundaries), ±0.5 steps.
        8 => g.rng.pick(&[0x4F00_0000, 0x4EFF_FFFF, 0x5F00_0000, 0x5EFF_FFFF, 0x4F80_0000, 0x3F00_0000, 0x3FC0_0000, 0x4020_0000]),
        // Small integers and halves (rounding-mode sensitive).
        9 => {
            let v = g.rng.below(64) as f32 * 0.5;
            v.to_bits()
        }
        10 => 0x0000_0001 | (g.rng.next() as u32 & 0xF), // tiny denormals
        11 => 0x0080_0000 | (g.rng.next() as u32 & 0xFF), // just above the smallest normal
        _ => g.rng.next() as u32 & 0x7FFF_FFFF,
    }
}

/// A 64-bit float: as [`f32v`].
fn f64v(g: &mut G) -> u64 {
    let s = g.rng.next() & (1 << 63);
    s | match g.rng.below(20) {
        0 => 0,
        1 => 1 + g.rng.below(0xF_FFFF_FFFF_FFFF),
        2 => 0x7FF0_0000_0000_0000,
        3 => 0x7FF8_0000_0000_0000 | (g.rng.next() & 0x7_FFFF_FFFF_FFFF),
        4 => 0x7FF0_0000_0000_0001 | (g.rng.next() & 0x7_FFFF_FFFF_FFFF),
        5 => 0x7FEF_FFFF_FFFF_FFFF,
        6 => 0x0010_0000_0000_0000,
        7 => 0x3FF0_0000_0000_0000,
        8 => g.rng.pick(&[
            0x41E0_0000_0000_0000, // 2^31
            0x41DF_FFFF_FFC0_0000, // 2^31 - 1
            0x41DF_FFFF_FFE0_0000, // 2^31 - 0.5
            0xC1E0_0000_0010_0000, // -(2^31 + 0.5)
            0x43E0_0000_0000_0000, // 2^63
            0x43DF_FFFF_FFFF_FFFF,
            0x3FE0_0000_0000_0000, // 0.5
            0x3FF8_0000_0000_0000, // 1.5
            0x36A0_0000_0000_0000, // below f32's range
            0x47F0_0000_0000_0000, // above f32's range
            0x47EF_FFFF_F000_0000, // f32 max + half an ulp
        ]),
        9 => (g.rng.below(64) as f64 * 0.5).to_bits(),
        10 => 1 | (g.rng.next() & 0xF),
        11 => {
            // Inside f32's range, with low bits to round.
            let e = 0x380 + g.rng.below(0xFF);
            (e << 52) | (g.rng.next() & 0xF_FFFF_FFFF_FFFF)
        }
        _ => g.rng.next() & 0x7FFF_FFFF_FFFF_FFFF,
    }
}

/// An 80-bit x87 value: specials (pseudo-denormals and unnormals too), boundaries, random.
fn f80v(g: &mut G) -> [u8; 10] {
    let sign = (g.rng.next() as u16) & 0x8000;
    let j = 1u64 << 63;
    let (exp, sig): (u16, u64) = match g.rng.below(24) {
        0 => (0, 0),
        1 => (0, g.rng.next() & !j),               // denormal
        2 => (0x7FFF, j),                          // inf
        3 => (0x7FFF, j | (1 << 62) | (g.rng.next() & ((1 << 62) - 1))), // QNaN
        4 => (0x7FFF, j | 1 | (g.rng.next() & ((1 << 62) - 1))),          // SNaN
        5 => (0x7FFE, u64::MAX),                   // largest
        6 => (1, j),                               // smallest normal
        7 => (0x3FFF, j),                          // 1.0
        8 => {
            // Integers around the 16/32/64-bit limits and halves.
            let e = g.rng.pick(&[0x3FFE, 0x3FFF, 0x400E, 0x400D, 0x401E, 0x401D, 0x403E, 0x403D, 0x403F]);
            (e, j | (g.rng.pick(&[0u64, 1, u64::MAX >> 1, 1 << 62, 3 << 61]) & (j - 1)))
        }
        9 => (0x3FFF + g.rng.below(8) as u16, j | (g.rng.below(16) << 59)), // small numbers
        10 => (0, j | (g.rng.next() & !j)),       // pseudo-denormal
        11 if g.rng.one_in(4) => (1 + g.rng.below(0x7FFD) as u16, g.rng.next() & !j), // unnormal
        12 => (0x3F80 + g.rng.below(0x100) as u16, j | g.rng.next()), // f32 range
        13 => (0x3C00 + g.rng.below(0x800) as u16, j | g.rng.next()), // f64 range
        14 => (0x3F81 - g.rng.below(40) as u16, j | g.rng.next()), // near f32 underflow
        15 => (0x3C01 - g.rng.below(80) as u16, j | g.rng.next()), // near f64 underflow
        _ => (1 + g.rng.below(0x7FFE) as u16, j | g.rng.next()),
    };
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&sig.to_le_bytes());
    b[8..].copy_from_slice(&(sign | exp).to_le_bytes());
    b
}

/// 128 bits of lanes of the given kind.
#[derive(Clone, Copy, PartialEq)]
enum Lanes {
    F32,
    F64,
    /// Integer lanes of this many bytes.
    Int(u32),
}

fn lanes(g: &mut G, k: Lanes) -> u128 {
    let mut v = 0u128;
    match k {
        Lanes::F32 => {
            for i in 0..4 {
                v |= (f32v(g) as u128) << (32 * i);
            }
        }
        Lanes::F64 => {
            for i in 0..2 {
                v |= (f64v(g) as u128) << (64 * i);
            }
        }
        Lanes::Int(es) => {
            for i in 0..16 / es {
                v |= (g.val(es) as u128 & ((1u128 << (8 * es)) - 1)) << (8 * es * i);
            }
        }
    }
    v
}

fn set_xmm(g: &mut G, k: u8, v: u128) {
    let o = fx::XMM + 16 * k as usize;
    g.fx[o..o + 16].copy_from_slice(&v.to_le_bytes());
}

fn set_mxcsr(g: &mut G, v: u32) {
    g.fx[fx::MXCSR..fx::MXCSR + 4].copy_from_slice(&v.to_le_bytes());
}

/// A random MXCSR: rounding control, FTZ, DAZ, sticky flags, and (1 in 8) some exceptions
/// unmasked, so #XM is raised and must leave the destination unchanged.
fn rand_mxcsr(g: &mut G) -> u32 {
    let mut m = 0x1F80 | ((g.rng.below(4) as u32) << 13);
    if g.rng.one_in(4) {
        m |= 1 << 15; // FTZ
    }
    if g.rng.one_in(4) {
        m |= 1 << 6; // DAZ
    }
    if g.rng.one_in(3) {
        m |= g.rng.next() as u32 & 0x3F;
    }
    if g.rng.one_in(8) {
        m &= !((g.rng.next() as u32 & 0x3F) << 7);
    }
    m
}

/// Random XMM registers of lane kind `k` and a random MXCSR.
fn sse_state(g: &mut G, k: Lanes) {
    for r in 0..16 {
        let v = lanes(g, k);
        set_xmm(g, r, v);
    }
    // Some registers equal to another (aliasing values: x - x, min(x, x), compares).
    if g.rng.one_in(4) {
        let (a, b) = (g.rng.below(16) as usize, g.rng.below(16) as usize);
        let v: [u8; 16] = g.fx[fx::XMM + 16 * a..fx::XMM + 16 * a + 16].try_into().unwrap();
        g.fx[fx::XMM + 16 * b..fx::XMM + 16 * b + 16].copy_from_slice(&v);
    }
    let m = rand_mxcsr(g);
    set_mxcsr(g, m);
}

/// A memory operand of `size` bytes holding `v`: 16-byte aligned when `align` (1 in 16
/// misaligned, which must raise #GP(0): SDM Vol. 1 §4.1.1 and each aligned form's page), else
/// anywhere in the window, straddling the page boundary now and then.
fn mem(g: &mut G, size: u32, align: bool, v: u128) -> Rm {
    let a = if align && !g.rng.one_in(16) {
        match g.rng.below(4) {
            0 => PAGE - 16,
            1 => PAGE,
            _ => (DATA + 0x100 + g.rng.below(WIN as u64 - 0x200)) & !15,
        }
    } else if size > 8 && g.rng.one_in(3) {
        PAGE - 1 - g.rng.below(15)
    } else {
        g.target(size.min(8))
    };
    let b = v.to_le_bytes();
    for (k, &x) in b.iter().take(size as usize).enumerate() {
        g.put(a + k as u64, 1, x as u64);
    }
    Rm::Mem(a)
}

fn xreg(g: &mut G) -> u8 {
    g.rng.below(16) as u8
}

/// An SSE instruction: mandatory prefix `pre` (0, 0x66, 0xF2, 0xF3), `0F op...`, ModRM.reg
/// `reg`, r/m `rm`, optional imm8.
fn sse_spec(pre: u8, op: &[u8], reg: u8, rm: Rm, imm: Option<u8>) -> Spec {
    let mut o = vec![0x0F];
    o.extend_from_slice(op);
    let mut s = Spec::op(&o).reg(reg).rm(rm);
    match pre {
        0x66 => s.p66 = true,
        0xF2 | 0xF3 => s.pre = vec![pre],
        _ => {}
    }
    if let Some(i) = imm {
        s = s.imm(i as u64, 1);
    }
    s
}

/// `op xmm, xmm/m` with the source in memory 1 time in 3 (`size` bytes, `align` as [`mem`]).
fn sse_rr(g: &mut G, pre: u8, op: &[u8], size: u32, align: bool, k: Lanes, imm: Option<u8>) {
    let d = xreg(g);
    let rm = if g.rng.one_in(3) {
        let v = lanes(g, k);
        mem(g, size, align, v)
    } else {
        Rm::Reg(xreg(g))
    };
    g.emit(sse_spec(pre, op, d, rm, imm));
}

// ---- SSE/SSE2 classes ----

/// MOVAPS/MOVUPS/MOVAPD/MOVUPD/MOVDQA/MOVDQU/MOVSS/MOVSD/MOVLPS/MOVHPS/MOVLPD/MOVHPD/
/// MOVHLPS/MOVLHPS/MOVD/MOVQ/MOVNT*/MOVMSK*/PMOVMSKB/MASKMOVDQU/PINSRW/PEXTRW.
pub fn sse_move(g: &mut G, _: u8) {
    let k = g.rng.pick(&[Lanes::F32, Lanes::F64, Lanes::Int(1), Lanes::Int(8)]);
    sse_state(g, k);
    let d = xreg(g);
    let v = lanes(g, k);
    match g.rng.below(22) {
        // Full-width loads and register moves (aligned forms fault when misaligned).
        0 => sse_rr(g, 0, &[0x28], 16, true, k, None),    // movaps
        1 => sse_rr(g, 0x66, &[0x28], 16, true, k, None), // movapd
        2 => sse_rr(g, 0x66, &[0x6F], 16, true, k, None), // movdqa
        3 => sse_rr(g, 0, &[0x10], 16, false, k, None),   // movups
        4 => sse_rr(g, 0x66, &[0x10], 16, false, k, None), // movupd
        5 => sse_rr(g, 0xF3, &[0x6F], 16, false, k, None), // movdqu
        6 => {
            // Stores: movaps/movapd/movdqa/movups/movupd/movdqu/movntps/movntpd/movntdq.
            let (pre, op, align) = g.rng.pick(&[
                (0u8, 0x29u8, true),
                (0x66, 0x29, true),
                (0x66, 0x7F, true),
                (0, 0x11, false),
                (0x66, 0x11, false),
                (0xF3, 0x7F, false),
                (0, 0x2B, true),
                (0x66, 0x2B, true),
                (0x66, 0xE7, true),
            ]);
            let rm = mem(g, 16, align, v);
            g.emit(sse_spec(pre, &[op], d, rm, None));
        }
        // MOVSS/MOVSD: register forms merge, loads zero the rest, stores write the low lane.
        7 => sse_rr(g, 0xF3, &[0x10], 4, false, k, None),
        8 => sse_rr(g, 0xF2, &[0x10], 8, false, k, None),
        9 => {
            let (pre, size) = g.rng.pick(&[(0xF3u8, 4u32), (0xF2, 8)]);
            let rm = if g.rng.one_in(4) { Rm::Reg(xreg(g)) } else { mem(g, size, false, v) };
            g.emit(sse_spec(pre, &[0x11], d, rm, None));
        }
        // MOVLPS/MOVHPS/MOVLPD/MOVHPD loads and stores; MOVHLPS/MOVLHPS.
        10 => {
            let (pre, op) = g.rng.pick(&[(0u8, 0x12u8), (0, 0x13), (0, 0x16), (0, 0x17), (0x66, 0x12), (0x66, 0x13), (0x66, 0x16), (0x66, 0x17)]);
            let rm = mem(g, 8, false, v);
            g.emit(sse_spec(pre, &[op], d, rm, None));
        }
        11 => {
            let op = g.rng.pick(&[0x12, 0x16]);
            let s = xreg(g);
            g.emit(sse_spec(0, &[op], d, Rm::Reg(s), None));
        }
        // MOVD/MOVQ xmm <- r/m32/64 and r/m32/64 <- xmm.
        12 | 13 => {
            let w = g.rng.one_in(2);
            let size = if w { 8 } else { 4 };
            let op = if g.rng.one_in(2) { 0x6E } else { 0x7E };
            let rm = if g.rng.one_in(3) {
                let m = g.val(size) as u128;
                mem(g, size, false, m)
            } else {
                let r = g.r();
                Rm::Reg(r)
            };
            let mut s = sse_spec(0x66, &[op], d, rm, None);
            s.w = w;
            g.emit(s);
        }
        // MOVQ xmm, xmm/m64 (F3 0F 7E: upper zeroed) and MOVQ xmm/m64, xmm (66 0F D6).
        14 => sse_rr(g, 0xF3, &[0x7E], 8, false, k, None),
        15 => {
            let rm = if g.rng.one_in(2) { Rm::Reg(xreg(g)) } else { mem(g, 8, false, v) };
            g.emit(sse_spec(0x66, &[0xD6], d, rm, None));
        }
        // MOVMSKPS/MOVMSKPD/PMOVMSKB r32, xmm (REX.W now and then: same result).
        16 => {
            let (pre, op) = g.rng.pick(&[(0u8, 0x50u8), (0x66, 0x50), (0x66, 0xD7)]);
            let r = g.r();
            let s = xreg(g);
            let mut sp = sse_spec(pre, &[op], r, Rm::Reg(s), None);
            sp.w = g.rng.one_in(4);
            g.emit(sp);
        }
        // MOVNTI m32/m64, r.
        17 => {
            let w = g.rng.one_in(2);
            let size = if w { 8 } else { 4 };
            let r = g.r();
            let rm = mem(g, size, false, v);
            let mut s = sse_spec(0, &[0xC3], r, rm, None);
            s.w = w;
            g.emit(s);
        }
        // MASKMOVDQU xmm, xmm: byte-masked store to DS:[RDI].
        18 => {
            let a = (DATA + 0x100 + g.rng.below(WIN as u64 - 0x200)) & !if g.rng.one_in(2) { 15 } else { 0 };
            g.regs[RDI as usize] = a;
            g.fixed |= 1 << RDI;
            let s = xreg(g);
            g.emit(sse_spec(0x66, &[0xF7], d, Rm::Reg(s), None));
        }
        // PINSRW xmm, r32/m16, imm8; PEXTRW r32, xmm, imm8.
        19 => {
            let imm = g.rng.below(256) as u8;
            let rm = if g.rng.one_in(3) {
                let m = g.val(2) as u128;
                mem(g, 2, false, m)
            } else {
                Rm::Reg(g.r())
            };
            g.emit(sse_spec(0x66, &[0xC4], d, rm, Some(imm)));
        }
        20 => {
            let imm = g.rng.below(256) as u8;
            let r = g.r();
            let s = xreg(g);
            g.emit(sse_spec(0x66, &[0xC5], r, Rm::Reg(s), Some(imm)));
        }
        // Two dependent moves: store then reload through memory.
        _ => {
            let rm = mem(g, 16, false, v);
            g.emit(sse_spec(0, &[0x11], d, rm, None));
            let d2 = xreg(g);
            g.emit(sse_spec(0xF3, &[0x6F], d2, rm, None));
        }
    }
}

/// ADD/SUB/MUL/DIV/MIN/MAX/SQRT PS/PD (`scalar` 0) or SS/SD (`scalar` 1).
pub fn sse_arith(g: &mut G, scalar: u8) {
    let pd = g.rng.one_in(2);
    let k = if pd { Lanes::F64 } else { Lanes::F32 };
    sse_state(g, k);
    let op = g.rng.pick(&[0x58, 0x59, 0x5C, 0x5D, 0x5E, 0x5F, 0x51]);
    let (pre, size) = match (scalar != 0, pd) {
        (false, false) => (0, 16),
        (false, true) => (0x66, 16),
        (true, false) => (0xF3, 4),
        (true, true) => (0xF2, 8),
    };
    sse_rr(g, pre, &[op], size, size == 16, k, None);
    if g.rng.one_in(4) {
        // A dependent second operation (same rounding state, flags accumulate).
        let op = g.rng.pick(&[0x58, 0x59, 0x5C, 0x5E]);
        sse_rr(g, pre, &[op], size, size == 16, k, None);
    }
}

/// CMPPS/CMPPD/CMPSS/CMPSD with every predicate (imm8 0–7).
pub fn sse_cmp(g: &mut G, _: u8) {
    let pd = g.rng.one_in(2);
    let k = if pd { Lanes::F64 } else { Lanes::F32 };
    sse_state(g, k);
    let (pre, size) = g.rng.pick(&[(0u8, 16u32), (0x66, 16), (0xF3, 4), (0xF2, 8)]);
    let k = if pre == 0x66 || pre == 0xF2 { Lanes::F64 } else { Lanes::F32 };
    let imm = g.rng.below(8) as u8;
    sse_rr(g, pre, &[0xC2], size, size == 16, k, Some(imm));
}

/// COMISS/UCOMISS/COMISD/UCOMISD: ZF, PF, CF from the compare; OF, SF, AF cleared (SDM Vol.
/// 2A COMISS: nothing undefined).
pub fn sse_comi(g: &mut G, _: u8) {
    let (pre, size) = g.rng.pick(&[(0u8, 4u32), (0x66, 8)]);
    let k = if pre == 0x66 { Lanes::F64 } else { Lanes::F32 };
    sse_state(g, k);
    let op = g.rng.pick(&[0x2E, 0x2F]);
    sse_rr(g, pre, &[op], size, false, k, None);
    if g.rng.one_in(3) {
        // A flag reader: SETcc on the result (lazy flags after a non-ALU producer).
        let cc = g.rng.below(16) as u8;
        let r = g.r();
        g.emit(Spec { rex: true, ..Spec::op(&[0x0F, 0x90 + cc]).reg(0).rm(Rm::Reg(r)) });
    }
}

/// ANDPS/ANDNPS/ORPS/XORPS (and PD), PAND/PANDN/POR/PXOR.
pub fn sse_logic(g: &mut G, _: u8) {
    let k = g.rng.pick(&[Lanes::F32, Lanes::F64, Lanes::Int(4)]);
    sse_state(g, k);
    let (pre, op) = g.rng.pick(&[
        (0u8, 0x54u8),
        (0, 0x55),
        (0, 0x56),
        (0, 0x57),
        (0x66, 0x54),
        (0x66, 0x55),
        (0x66, 0x56),
        (0x66, 0x57),
        (0x66, 0xDB),
        (0x66, 0xDF),
        (0x66, 0xEB),
        (0x66, 0xEF),
    ]);
    sse_rr(g, pre, &[op], 16, true, k, None);
}

/// SSE2 integer arithmetic, compares, min/max, averages and PSADBW (66 0F xx).
pub fn sse_int(g: &mut G, _: u8) {
    let (op, es): (u8, u32) = g.rng.pick(&[
        (0xFC, 1), (0xFD, 2), (0xFE, 4), (0xD4, 8), // PADDB/W/D/Q
        (0xF8, 1), (0xF9, 2), (0xFA, 4), (0xFB, 8), // PSUBB/W/D/Q
        (0xEC, 1), (0xED, 2), (0xDC, 1), (0xDD, 2), // PADDSB/SW, PADDUSB/USW
        (0xE8, 1), (0xE9, 2), (0xD8, 1), (0xD9, 2), // PSUBSB/SW, PSUBUSB/USW
        (0xD5, 2), (0xE5, 2), (0xE4, 2), (0xF4, 4), (0xF5, 2), // PMULLW/HW/HUW, PMULUDQ, PMADDWD
        (0xE0, 1), (0xE3, 2), (0xDA, 1), (0xDE, 1), (0xEA, 2), (0xEE, 2), (0xF6, 1), // PAVG*, PMIN/MAX, PSADBW
        (0x74, 1), (0x75, 2), (0x76, 4), (0x64, 1), (0x65, 2), (0x66, 4), // PCMPEQ*, PCMPGT*
    ]);
    sse_state(g, Lanes::Int(es));
    sse_rr(g, 0x66, &[op], 16, true, Lanes::Int(es), None);
}

/// PSLL/PSRL/PSRA by xmm/m128 and by imm8, PSLLDQ/PSRLDQ.
pub fn sse_shift(g: &mut G, _: u8) {
    let es = g.rng.pick(&[2, 4, 8]);
    sse_state(g, Lanes::Int(es));
    let count = |g: &mut G, bits: u64| -> u64 {
        match g.rng.below(6) {
            0 => 0,
            1 => bits - 1,
            2 => bits,
            3 => bits + g.rng.below(100),
            4 => g.rng.next(),
            _ => g.rng.below(bits),
        }
    };
    if g.rng.one_in(2) {
        // By register/memory: the count is the low 64 bits.
        let op = match es {
            2 => g.rng.pick(&[0xD1, 0xE1, 0xF1]),
            4 => g.rng.pick(&[0xD2, 0xE2, 0xF2]),
            _ => g.rng.pick(&[0xD3, 0xF3]),
        };
        let c = count(g, es as u64 * 8) as u128 | ((g.rng.one_in(4) as u128 * g.rng.next() as u128) << 64);
        let d = xreg(g);
        let rm = if g.rng.one_in(3) {
            mem(g, 16, true, c)
        } else {
            let s = xreg(g);
            set_xmm(g, s, c);
            Rm::Reg(s)
        };
        g.emit(sse_spec(0x66, &[op], d, rm, None));
    } else {
        let (op, digit) = match es {
            2 => (0x71, g.rng.pick(&[2, 4, 6])),
            4 => (0x72, g.rng.pick(&[2, 4, 6])),
            _ => (0x73, g.rng.pick(&[2, 3, 6, 7])),
        };
        let bits = if op == 0x73 && (digit == 3 || digit == 7) { 16 } else { es as u64 * 8 };
        let c = count(g, bits) as u8;
        let d = xreg(g);
        g.emit(sse_spec(0x66, &[op], digit, Rm::Reg(d), Some(c)));
    }
}

/// PSHUFD/PSHUFHW/PSHUFLW, PUNPCK*, PACK*, SHUFPS/SHUFPD, UNPCKLPS/UNPCKHPS/UNPCKLPD/UNPCKHPD.
pub fn sse_shuffle(g: &mut G, _: u8) {
    let k = g.rng.pick(&[Lanes::Int(1), Lanes::Int(2), Lanes::Int(4), Lanes::F32]);
    sse_state(g, k);
    let imm = g.rng.below(256) as u8;
    let (pre, op, has_imm) = g.rng.pick(&[
        (0x66u8, 0x70u8, true),
        (0xF3, 0x70, true),
        (0xF2, 0x70, true),
        (0x66, 0x60, false),
        (0x66, 0x61, false),
        (0x66, 0x62, false),
        (0x66, 0x68, false),
        (0x66, 0x69, false),
        (0x66, 0x6A, false),
        (0x66, 0x6C, false),
        (0x66, 0x6D, false),
        (0x66, 0x63, false),
        (0x66, 0x67, false),
        (0x66, 0x6B, false),
        (0, 0xC6, true),
        (0x66, 0xC6, true),
        (0, 0x14, false),
        (0, 0x15, false),
        (0x66, 0x14, false),
        (0x66, 0x15, false),
    ]);
    sse_rr(g, pre, &[op], 16, true, k, has_imm.then_some(imm));
}

/// CVT* between single, double and integers, truncating forms included, under every MXCSR
/// rounding mode (random in `sse_state`).
pub fn sse_cvt(g: &mut G, _: u8) {
    let pick = g.rng.below(19);
    let k = match pick {
        0 | 3 | 5 | 6 | 12..=13 => Lanes::F32,
        4 | 7 => Lanes::Int(4),
        _ => Lanes::F64,
    };
    sse_state(g, k);
    let d = xreg(g);
    match pick {
        0 => sse_rr(g, 0, &[0x5A], 8, false, k, None),       // cvtps2pd
        1 => sse_rr(g, 0x66, &[0x5A], 16, true, k, None),    // cvtpd2ps
        2 => sse_rr(g, 0xF2, &[0x5A], 8, false, k, None),    // cvtsd2ss
        3 => sse_rr(g, 0xF3, &[0x5A], 4, false, k, None),    // cvtss2sd
        4 => sse_rr(g, 0, &[0x5B], 16, true, k, None),       // cvtdq2ps
        5 => sse_rr(g, 0x66, &[0x5B], 16, true, k, None),    // cvtps2dq
        6 => sse_rr(g, 0xF3, &[0x5B], 16, true, k, None),    // cvttps2dq
        7 => sse_rr(g, 0xF3, &[0xE6], 8, false, k, None),    // cvtdq2pd
        8 => sse_rr(g, 0xF2, &[0xE6], 16, true, k, None),    // cvtpd2dq
        9 => sse_rr(g, 0x66, &[0xE6], 16, true, k, None),    // cvttpd2dq
        10 | 11 => {
            // CVTSI2SS/SD xmm, r/m32 or r/m64.
            let pre = if pick == 10 { 0xF3 } else { 0xF2 };
            let w = g.rng.one_in(2);
            let size = if w { 8 } else { 4 };
            let rm = if g.rng.one_in(3) {
                let v = g.val(size) as u128;
                mem(g, size, false, v)
            } else {
                let r = g.r();
                let v = g.val(size);
                g.set_reg(r, size, v);
                Rm::Reg(r)
            };
            let mut s = sse_spec(pre, &[0x2A], d, rm, None);
            s.w = w;
            g.emit(s);
        }
        _ => {
            // CVT(T)SS2SI / CVT(T)SD2SI r32/r64, xmm/m.
            let single = pick <= 14;
            let pre = if single { 0xF3 } else { 0xF2 };
            let op = g.rng.pick(&[0x2C, 0x2D]);
            let size = if single { 4 } else { 8 };
            let kk = if single { Lanes::F32 } else { Lanes::F64 };
            let rm = if g.rng.one_in(3) {
                let v = lanes(g, kk);
                mem(g, size, false, v)
            } else {
                Rm::Reg(xreg(g))
            };
            let r = g.r();
            let mut s = sse_spec(pre, &[op], r, rm, None);
            s.w = g.rng.one_in(2);
            g.emit(s);
        }
    }
}

/// LDMXCSR/STMXCSR (reserved bits set: #GP(0), SDM Vol. 2A LDMXCSR), and an operation under
/// the loaded mode.
pub fn sse_mxcsr(g: &mut G, _: u8) {
    sse_state(g, Lanes::F32);
    let mut v = rand_mxcsr(g);
    if g.rng.one_in(10) {
        // A reserved bit. Not bit 17: AMD's MXCSR.MM (misaligned-access mask, AMD APM Vol. 1
        // §4.2.2), which the host accepts; Heron, like Intel (MXCSR_MASK 0xFFFF), does not.
        let b = loop {
            let b = 16 + g.rng.below(16);
            if b != 17 {
                break b;
            }
        };
        v |= 1 << b;
    }
    if g.rng.one_in(2) {
        let rm = mem(g, 4, false, v as u128);
        g.emit(sse_spec(0, &[0xAE], 2, rm, None));
        let op = g.rng.pick(&[0x58, 0x59, 0x5E, 0x51]);
        sse_rr(g, 0, &[op], 16, true, Lanes::F32, None);
    } else {
        let rm = mem(g, 4, false, 0);
        g.emit(sse_spec(0, &[0xAE], 3, rm, None));
    }
}

// ---- MMX ----

/// Random x87 state (see [`x87_state`]) whose registers hold integer lanes: the MMX view.
fn mmx_state(g: &mut G) {
    x87_state(g);
    for i in 0..8 {
        if g.rng.one_in(2) {
            let es = g.rng.pick(&[1, 2, 4, 8]);
            let v = lanes(g, Lanes::Int(es)) as u64;
            let o = fx::ST + 16 * i;
            g.fx[o..o + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// MMX (and SSE's MMX additions): arithmetic, compares, logic, shifts, packs/unpacks, MOVD/MOVQ,
/// PSHUFW/PINSRW/PEXTRW/PMOVMSKB, MOVQ2DQ/MOVDQ2Q, CVT*PI*, EMMS. Each sets TOP = 0 and all
/// tags valid (EMMS: all empty), and writing an MMX register sets its exponent bits to all
/// ones (SDM Vol. 1 §9.5).
pub fn mmx(g: &mut G, _: u8) {
    mmx_state(g);
    sse_state(g, Lanes::F32);
    let mm = |g: &mut G| g.rng.below(8) as u8;
    let d = mm(g);
    let src = |g: &mut G| -> Rm {
        if g.rng.one_in(3) {
            let v = g.val(8) as u128;
            mem(g, 8, false, v)
        } else {
            Rm::Reg(g.rng.below(8) as u8)
        }
    };
    match g.rng.below(10) {
        0..=3 => {
            let op = g.rng.pick(&[
                0xFC, 0xFD, 0xFE, 0xD4, 0xF8, 0xF9, 0xFA, 0xFB, 0xEC, 0xED, 0xDC, 0xDD, 0xE8, 0xE9, 0xD8, 0xD9, 0xD5, 0xE5, 0xE4,
                0xF4, 0xF5, 0xE0, 0xE3, 0xDA, 0xDE, 0xEA, 0xEE, 0xF6, 0x74, 0x75, 0x76, 0x64, 0x65, 0x66, 0xDB, 0xDF, 0xEB,
                0xEF, 0x60, 0x61, 0x62, 0x63, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0xD1, 0xD2, 0xD3, 0xE1, 0xE2, 0xF1, 0xF2, 0xF3,
            ]);
            let rm = src(g);
            g.emit(sse_spec(0, &[op], d, rm, None));
        }
        4 => {
            let (op, digit) = g.rng.pick(&[(0x71u8, 2u8), (0x71, 4), (0x71, 6), (0x72, 2), (0x72, 4), (0x72, 6), (0x73, 2), (0x73, 6)]);
            let c = if g.rng.one_in(3) { g.rng.below(256) } else { g.rng.below(64) } as u8;
            g.emit(sse_spec(0, &[op], digit, Rm::Reg(d), Some(c)));
        }
        5 => {
            // MOVD/MOVQ mm <-> r/m32/64, MOVQ mm <-> mm/m64.
            match g.rng.below(3) {
                0 => {
                    let w = g.rng.one_in(2);
                    let op = g.rng.pick(&[0x6E, 0x7E]);
                    let rm = Rm::Reg(g.r());
                    let mut s = sse_spec(0, &[op], d, rm, None);
                    s.w = w;
                    g.emit(s);
                }
                1 => {
                    let rm = src(g);
                    g.emit(sse_spec(0, &[0x6F], d, rm, None));
                }
                _ => {
                    let rm = src(g);
                    let op = g.rng.pick(&[0x7F, 0xE7]); // MOVQ / MOVNTQ (memory only)
                    let rm = if op == 0xE7 && !matches!(rm, Rm::Mem(_)) { mem(g, 8, false, 0) } else { rm };
                    g.emit(sse_spec(0, &[op], d, rm, None));
                }
            }
        }
        6 => {
            // PSHUFW, PINSRW, PEXTRW, PMOVMSKB.
            let imm = g.rng.below(256) as u8;
            match g.rng.below(4) {
                0 => {
                    let rm = src(g);
                    g.emit(sse_spec(0, &[0x70], d, rm, Some(imm)));
                }
                1 => {
                    let rm = Rm::Reg(g.r());
                    g.emit(sse_spec(0, &[0xC4], d, rm, Some(imm)));
                }
                2 => {
                    let r = g.r();
                    let m = mm(g);
                g.emit(sse_spec(0, &[0xC5], r, Rm::Reg(m), Some(imm)));
                }
                _ => {
                    let r = g.r();
                    let m = mm(g);
                g.emit(sse_spec(0, &[0xD7], r, Rm::Reg(m), None));
                }
            }
        }
        7 => {
            // MOVQ2DQ xmm, mm / MOVDQ2Q mm, xmm.
            if g.rng.one_in(2) {
                let x = xreg(g);
                let m = mm(g);
                g.emit(sse_spec(0xF3, &[0xD6], x, Rm::Reg(m), None));
            } else {
                let x = xreg(g);
                g.emit(sse_spec(0xF2, &[0xD6], d, Rm::Reg(x), None));
            }
        }
        8 => {
            // CVTPI2PS/CVTPI2PD xmm, mm/m64; CVT(T)PS2PI mm, xmm/m64; CVT(T)PD2PI mm, xmm/m128.
            let x = xreg(g);
            match g.rng.below(4) {
                0 => {
                    let rm = src(g);
                    g.emit(sse_spec(0, &[0x2A], x, rm, None));
                }
                1 => {
                    let rm = src(g);
                    g.emit(sse_spec(0x66, &[0x2A], x, rm, None));
                }
                2 => {
                    let op = g.rng.pick(&[0x2C, 0x2D]);
                    let rm = if g.rng.one_in(3) {
                        let v = lanes(g, Lanes::F32);
                        mem(g, 8, false, v)
                    } else {
                        Rm::Reg(x)
                    };
                    g.emit(sse_spec(0, &[op], d, rm, None));
                }
                _ => {
                    let op = g.rng.pick(&[0x2C, 0x2D]);
                    let rm = if g.rng.one_in(3) {
                        let v = lanes(g, Lanes::F64);
                        mem(g, 16, true, v)
                    } else {
                        let v = lanes(g, Lanes::F64);
                        set_xmm(g, x, v);
                        Rm::Reg(x)
                    };
                    g.emit(sse_spec(0x66, &[op], d, rm, None));
                }
            }
        }
        _ => {
            // MASKMOVQ mm, mm (store to DS:[RDI]) or EMMS after an operation.
            if g.rng.one_in(2) {
                let a = DATA + 0x100 + g.rng.below(WIN as u64 - 0x200);
                g.regs[RDI as usize] = a;
                g.fixed |= 1 << RDI;
                let m = mm(g);
                g.emit(sse_spec(0, &[0xF7], d, Rm::Reg(m), None));
            } else {
                let rm = src(g);
                g.emit(sse_spec(0, &[0xFC], d, rm, None));
                g.code.extend_from_slice(&[0x0F, 0x77]);
            }
        }
    }
}

// ---- x87 ----

fn set_fcw(g: &mut G, v: u16) {
    g.fx[fx::FCW..fx::FCW + 2].copy_from_slice(&v.to_le_bytes());
}

/// A random x87 state: FCW with random precision (single, double, extended; the reserved
/// value 01 is not used) and rounding control, exceptions masked (1 in 12 some unmasked, with
/// an FWAIT after the operation so a pending one raises #MF there); FSW with random TOP,
/// condition codes and sticky flags; a random set of non-empty registers with random values.
fn x87_state(g: &mut G) -> bool {
    let pc = g.rng.pick(&[0u16, 2, 3, 3]);
    let rc = g.rng.below(4) as u16;
    let mut masks = 0x3F;
    let unmasked = g.rng.one_in(12);
    if unmasked {
        masks &= !((g.rng.next() as u16 & 0x3D) | 1);
    }
    let fcw = 0x40 | masks | (pc << 8) | (rc << 10);
    set_fcw(g, fcw);
    let top = g.rng.below(8) as u16;
    // Sticky flags only where masked (ES and B stay clear: nothing pending).
    let sticky = g.rng.next() as u16 & 0x3F & masks;
    let cc = g.rng.next() as u16 & (fx::C0 | fx::C1 | fx::C2 | fx::C3);
    let fsw = (top << 11) | cc | if g.rng.one_in(2) { sticky } else { 0 };
    g.fx[fx::FSW..fx::FSW + 2].copy_from_slice(&fsw.to_le_bytes());
    // Tags: mostly a stack of depth 0-8 from ST0 down, sometimes random.
    let depth = g.rng.below(9) as usize;
    let mut tags = 0u8;
    for i in 0..8usize {
        let valid = if g.rng.one_in(4) { g.rng.one_in(2) } else { i < depth };
        let phys = (top as usize + i) & 7;
        if valid {
            tags |= 1 << phys;
        }
        let v = f80v(g);
        let o = fx::ST + 16 * i;
        g.fx[o..o + 10].copy_from_slice(&v);
    }
    g.fx[fx::FTW] = tags;
    unmasked
}

/// All four condition codes.
const CC_ALL: u16 = fx::C0 | fx::C1 | fx::C2 | fx::C3;
/// C0, C2, C3: undefined after loads, stores, arithmetic (SDM Vol. 2A FADD, FLD, FST, ...:
/// "C0, C2, C3 Undefined").
const CC_023: u16 = fx::C0 | fx::C2 | fx::C3;

/// A memory operand holding an x87 memory value of `size` bytes (`int`: integer format).
fn x87_mem(g: &mut G, size: u32, int: bool) -> Rm {
    let v: u128 = match (size, int) {
        (4, false) => f32v(g) as u128,
        (8, false) => f64v(g) as u128,
        (10, _) => u128::from_le_bytes({
            let mut b = [0u8; 16];
            b[..10].copy_from_slice(&f80v(g));
            b
        }),
        (s, _) => g.val(s) as u128,
    };
    mem(g, size, false, v)
}

/// x87 with the FWAIT that raises a pending unmasked exception (#MF).
fn x87_finish(g: &mut G, unmasked: bool) {
    if unmasked {
        g.code.push(0x9B);
    }
}

/// FLD/FILD/FLD1.../FST/FSTP/FIST/FISTP (memory and ST(i) forms).
pub fn x87_load_store(g: &mut G, _: u8) {
    let un = x87_state(g);
    let i = g.rng.below(8) as u8;
    match g.rng.below(12) {
        0 => {
            let (op, digit, size, int) = g.rng.pick(&[(0xD9u8, 0u8, 4u32, false), (0xDD, 0, 8, false), (0xDB, 5, 10, false), (0xDF, 0, 2, true), (0xDB, 0, 4, true), (0xDF, 5, 8, true)]);
            let rm = x87_mem(g, size, int);
            g.emit(Spec::op(&[op]).reg(digit).rm(rm));
        }
        1 => g.code.extend_from_slice(&[0xD9, 0xC0 + i]), // fld st(i)
        2 => {
            let c = g.rng.below(7) as u8;
            g.code.extend_from_slice(&[0xD9, 0xE8 + c]); // fld1, fldl2t, fldl2e, fldpi, fldlg2, fldln2, fldz
        }
        3..=5 => {
            // FST/FSTP m32/m64/m80.
            let (op, digit, size) = g.rng.pick(&[(0xD9u8, 2u8, 4u32), (0xDD, 2, 8), (0xD9, 3, 4), (0xDD, 3, 8), (0xDB, 7, 10)]);
            let rm = x87_mem(g, size, false);
            g.emit(Spec::op(&[op]).reg(digit).rm(rm));
        }
        6 | 7 => {
            // FIST/FISTP m16/m32/m64.
            let (op, digit, size) = g.rng.pick(&[(0xDFu8, 2u8, 2u32), (0xDB, 2, 4), (0xDF, 3, 2), (0xDB, 3, 4), (0xDF, 7, 8)]);
            let rm = x87_mem(g, size, true);
            g.emit(Spec::op(&[op]).reg(digit).rm(rm));
        }
        8 => g.code.extend_from_slice(&[0xDD, g.rng.pick(&[0xD0, 0xD8]) + i]), // fst/fstp st(i)
        _ => {
            // A load, an operation-free round trip through memory, a store.
            let (lop, ld, size) = g.rng.pick(&[(0xD9u8, 0u8, 4u32), (0xDD, 0, 8), (0xDB, 5, 10)]);
            let rm = x87_mem(g, size, false);
            g.emit(Spec::op(&[lop]).reg(ld).rm(rm));
            let (sop, sd, ssize) = g.rng.pick(&[(0xD9u8, 3u8, 4u32), (0xDD, 3, 8), (0xDB, 7, 10), (0xDF, 7, 8), (0xDB, 3, 4)]);
            let rm = x87_mem(g, ssize, false);
            g.emit(Spec::op(&[sop]).reg(sd).rm(rm));
        }
    }
    x87_finish(g, un);
    // SDM Vol. 2A FLD/FILD/FLD1, FST/FSTP, FIST/FISTP: "C1 ... C0, C2, C3 Undefined."
    g.fsw_undef = CC_023;
}

/// FADD/FSUB/FSUBR/FMUL/FDIV/FDIVR (m32, m64, m16int, m32int, ST(0)/ST(i) both ways and the
/// popping forms), FSQRT, FABS, FCHS, FRNDINT, FSCALE, FXTRACT, FPREM, FPREM1.
pub fn x87_arith(g: &mut G, _: u8) {
    let un = x87_state(g);
    let i = g.rng.below(8) as u8;
    let arith = [0u8, 1, 4, 5, 6, 7]; // ModRM.reg of FADD, FMUL, FSUB, FSUBR, FDIV, FDIVR
    g.fsw_undef = CC_023;
    match g.rng.below(8) {
        0 => {
            let d = g.rng.pick(&arith);
            let rm = x87_mem(g, 4, false);
            g.emit(Spec::op(&[0xD8]).reg(d).rm(rm));
        }
        1 => {
            let d = g.rng.pick(&arith);
            let rm = x87_mem(g, 8, false);
            g.emit(Spec::op(&[0xDC]).reg(d).rm(rm));
        }
        2 => {
            let d = g.rng.pick(&arith);
            let (op, size) = g.rng.pick(&[(0xDAu8, 4u32), (0xDE, 2)]);
            let rm = x87_mem(g, size, true);
            g.emit(Spec::op(&[op]).reg(d).rm(rm));
        }
        3..=5 => {
            let d = g.rng.pick(&arith);
            let op = g.rng.pick(&[0xD8, 0xDC, 0xDE]);
            g.code.extend_from_slice(&[op, 0xC0 | (d << 3) | i]);
        }
        _ => {
            // FSQRT, FABS, FCHS, FRNDINT, FSCALE, FXTRACT, FPREM, FPREM1.
            let op = g.rng.pick(&[0xFA, 0xE1, 0xE0, 0xFC, 0xFD, 0xF4, 0xF8, 0xF5]);
            g.code.extend_from_slice(&[0xD9, op]);
            if matches!(op, 0xF8 | 0xF5) {
                // SDM Vol. 2A FPREM/FPREM1: C0, C3, C1 are quotient bits, C2 the
                // incomplete-reduction flag: all defined.
                g.fsw_undef = 0;
            }
        }
    }
    x87_finish(g, un);
}

/// FCOM/FCOMP/FCOMPP/FUCOM/FUCOMP/FUCOMPP (ST(i), m32, m64), FICOM/FICOMP, FCOMI/FCOMIP/
/// FUCOMI/FUCOMIP (EFLAGS), FTST, FXAM.
pub fn x87_cmp(g: &mut G, _: u8) {
    let un = x87_state(g);
    let i = g.rng.below(8) as u8;
    match g.rng.below(8) {
        0 => {
            let op = g.rng.pick(&[0xD0, 0xD8]);
            g.code.extend_from_slice(&[0xD8, op + i]); // fcom/fcomp st(i)
        }
        1 => {
            let op = g.rng.pick(&[0xE0, 0xE8]);
            g.code.extend_from_slice(&[0xDD, op + i]); // fucom/fucomp st(i)
        }
        2 => {
            let b = g.rng.pick(&[[0xDEu8, 0xD9u8], [0xDA, 0xE9], [0xD9, 0xE4], [0xD9, 0xE5]]);
            g.code.extend_from_slice(&b); // fcompp, fucompp, ftst, fxam
        }
        3 => {
            let (op, size, int) = g.rng.pick(&[(0xD8u8, 4u32, false), (0xDC, 8, false), (0xDA, 4, true), (0xDE, 2, true)]);
            let d = g.rng.pick(&[2, 3]);
            let rm = x87_mem(g, size, int);
            g.emit(Spec::op(&[op]).reg(d).rm(rm));
        }
        _ => {
            // FCOMI/FUCOMI/FCOMIP/FUCOMIP: ZF, PF, CF; OF, SF, AF cleared (SDM Vol. 2A FCOMI).
            let (op, base) = g.rng.pick(&[(0xDBu8, 0xF0u8), (0xDB, 0xE8), (0xDF, 0xF0), (0xDF, 0xE8)]);
            g.code.extend_from_slice(&[op, base + i]);
            // SDM Vol. 2A FCOMI/FCOMIP/FUCOMI/FUCOMIP, "FPU Flags Affected": "C1 Set to 0."
            // The AMD host leaves C1 as it was; Heron follows the SDM.
            g.fsw_sdm = (fx::C1, 0);
            if g.rng.one_in(3) {
                let cc = g.rng.below(16) as u8;
                let r = g.r();
                g.emit(Spec { rex: true, ..Spec::op(&[0x0F, 0x90 + cc]).reg(0).rm(Rm::Reg(r)) });
            }
        }
    }
    x87_finish(g, un);
    // SDM Vol. 2A FCOM/FUCOM/FICOM/FTST/FXAM: C0, C2, C3 from the result, C1 defined; FCOMI:
    // C0, C2, C3 not affected. Nothing is undefined.
}

/// FLDCW/FNSTCW/FNSTSW (m16, AX), FXCH, FINCSTP/FDECSTP, FFREE, FNCLEX, FNINIT, FNOP,
/// FCMOVcc.
pub fn x87_control(g: &mut G, _: u8) {
    let un = x87_state(g);
    let i = g.rng.below(8) as u8;
    g.fsw_undef = 0;
    match g.rng.below(10) {
        0 => {
            // FLDCW m16, exceptions masked, reserved bits set now and then (the reserved
            // precision control 01 is not used), then an operation under it.
            let mut v = (g.rng.next() as u16 & if g.rng.one_in(4) { 0xFFFF } else { 0x0F7F }) | 0x3F;
            if (v >> 8) & 3 == 1 {
                v |= 0x200;
            }
            let rm = mem(g, 2, false, v as u128);
            g.emit(Spec::op(&[0xD9]).reg(5).rm(rm));
            if g.rng.one_in(2) {
                let d = g.rng.pick(&[0, 1, 4, 6]);
                g.code.extend_from_slice(&[0xD8, 0xC0 | (d << 3) | i]);
            }
            // SDM Vol. 2A FLDCW: "C0, C1, C2, C3 undefined."
            g.fsw_undef = CC_ALL;
        }
        1 => {
            let (op, d) = g.rng.pick(&[(0xD9u8, 7u8), (0xDD, 7)]);
            let rm = mem(g, 2, false, 0);
            g.emit(Spec::op(&[op]).reg(d).rm(rm));
            // SDM Vol. 2A FSTCW/FSTSW: "C0, C1, C2, C3 undefined."
            g.fsw_undef = CC_ALL;
        }
        2 => {
            g.code.extend_from_slice(&[0xDF, 0xE0]); // fnstsw ax
            g.fsw_undef = CC_ALL;
        }
        3 => {
            g.code.extend_from_slice(&[0xD9, 0xC8 + i]); // fxch st(i)
            // SDM Vol. 2A FXCH: "C0, C2, C3 undefined."
            g.fsw_undef = CC_023;
        }
        4 => {
            g.code.extend_from_slice(&[0xD9, g.rng.pick(&[0xF6, 0xF7])]); // fdecstp, fincstp
            // SDM Vol. 2A FDECSTP/FINCSTP: "C0, C2, C3 undefined."
            g.fsw_undef = CC_023;
        }
        5 => {
            g.code.extend_from_slice(&[0xDD, 0xC0 + i]); // ffree st(i)
            // SDM Vol. 2A FFREE: "C0, C1, C2, C3 undefined."
            g.fsw_undef = CC_ALL;
        }
        6 => {
            let b = g.rng.pick(&[[0xDBu8, 0xE2u8], [0xDB, 0xE3], [0xD9, 0xD0]]);
            g.code.extend_from_slice(&b); // fnclex, fninit, fnop
            // SDM Vol. 2A FCLEX and FNOP: "C0, C1, C2, C3 undefined"; FINIT clears them.
            g.fsw_undef = if b[1] == 0xE3 { 0 } else { CC_ALL };
        }
        _ => {
            // FCMOVcc st(0), st(i) (reads CF, ZF, PF).
            let (op, base) = g.rng.pick(&[(0xDAu8, 0xC0u8), (0xDA, 0xC8), (0xDA, 0xD0), (0xDA, 0xD8), (0xDB, 0xC0), (0xDB, 0xC8), (0xDB, 0xD0), (0xDB, 0xD8)]);
            g.code.extend_from_slice(&[op, base + i]);
            // SDM Vol. 2A FCMOVcc: "C0, C2, C3 undefined."
            g.fsw_undef = CC_023;
        }
    }
    x87_finish(g, un);
}

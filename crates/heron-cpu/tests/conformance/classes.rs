//! The instruction classes and their case generators. Each generator builds one case in a
//! [`G`] whose registers, flags and data window `G::begin` has already randomized, and sets
//! `G::undef` to the status flags the Intel SDM (Vol. 2, "Flags Affected") leaves undefined for
//! that particular case; only those are masked in the comparison.

use super::gen::{f, mask, sext, Rm, Spec, G, PAGE, RAX, RBP, RCX, RDI, RDX, RSI, RSP, WIN};
use super::fp::{mmx, sse_arith, sse_cmp, sse_comi, sse_cvt, sse_int, sse_logic, sse_move, sse_mxcsr, sse_shift, sse_shuffle, x87_arith, x87_cmp, x87_control, x87_load_store};
use super::native::DATA;

/// A class: table name, relative weight of its share of the cases, generator and its argument.
pub struct Class {
    pub name: &'static str,
    pub weight: u32,
    pub gen: fn(&mut G, u8),
    pub arg: u8,
}

macro_rules! c {
    ($name:expr, $w:expr, $gen:ident, $arg:expr) => {
        Class { name: $name, weight: $w, gen: $gen, arg: $arg }
    };
}

pub const CLASSES: &[Class] = &[
    c!("ADD", 2, alu, 0),
    c!("OR", 2, alu, 1),
    c!("ADC", 2, alu, 2),
    c!("SBB", 2, alu, 3),
    c!("AND", 2, alu, 4),
    c!("SUB", 2, alu, 5),
    c!("XOR", 2, alu, 6),
    c!("CMP", 2, alu, 7),
    c!("TEST", 2, test, 0),
    c!("INC", 2, unary, 0),
    c!("DEC", 2, unary, 1),
    c!("NOT", 1, unary, 2),
    c!("NEG", 2, unary, 3),
    c!("ROL", 3, shift, 0),
    c!("ROR", 3, shift, 1),
    c!("RCL", 3, shift, 2),
    c!("RCR", 3, shift, 3),
    c!("SHL", 3, shift, 4),
    c!("SHR", 3, shift, 5),
    c!("SAR", 3, shift, 7),
    c!("SHLD", 3, shiftd, 0),
    c!("SHRD", 3, shiftd, 1),
    c!("MUL", 2, muldiv, 4),
    c!("IMUL (1-operand)", 2, muldiv, 5),
    c!("IMUL (2-operand)", 2, imul, 2),
    c!("IMUL (3-operand)", 2, imul, 3),
    c!("DIV", 3, muldiv, 6),
    c!("IDIV", 3, muldiv, 7),
    c!("BT", 2, bt, 0),
    c!("BTS", 2, bt, 1),
    c!("BTR", 2, bt, 2),
    c!("BTC", 2, bt, 3),
    c!("BSF", 2, bitscan, 0),
    c!("BSR", 2, bitscan, 1),
    c!("POPCNT", 1, bitscan, 2),
    c!("MOVS", 2, string, 0),
    c!("STOS", 2, string, 1),
    c!("LODS", 2, string, 2),
    c!("CMPS", 3, string, 3),
    c!("SCAS", 3, string, 4),
    c!("LAHF/SAHF", 1, flagops, 0),
    c!("CLC/STC/CMC", 1, flagops, 1),
    c!("CMOVcc", 3, cmov, 0),
    c!("SETcc", 2, setcc, 0),
    c!("CMPXCHG", 2, cmpxchg, 0),
    c!("XADD", 2, xadd, 0),
    c!("XCHG", 2, xchg, 0),
    c!("CMPXCHG8B", 1, cmpxchg_wide, 0),
    c!("CMPXCHG16B", 1, cmpxchg_wide, 1),
    c!("BSWAP", 1, bswap, 0),
    c!("MOVZX/MOVSX/MOVSXD", 2, movx, 0),
    c!("CBW/CWDE/CDQE/CWD/CDQ/CQO", 1, cbw, 0),
    c!("LEA", 3, lea, 0),
    c!("ENTER/LEAVE", 2, enter_leave, 0),
    c!("PUSH/POP", 3, push_pop, 0),
    c!("MOV (page-crossing operands)", 1, mov, 1),
    c!("memory operands crossing a page boundary", 3, page_cross, 0),
    c!("lazy flags: producer + 1-3 consumers", 4, chain, 0),
    c!("counted loops (multi-block tier-1 regions)", 4, counted_loop, 0),
    c!("precise #GP after earlier instructions", 2, precise_fault, 0),
    c!("SSE moves (MOV*PS/PD/DQ/SS/SD/D/Q, PINSRW..)", 6, sse_move, 0),
    c!("SSE FP arithmetic PS/PD (ADD..SQRT)", 5, sse_arith, 0),
    c!("SSE FP arithmetic SS/SD (ADD..SQRT)", 5, sse_arith, 1),
    c!("SSE CMPPS/CMPPD/CMPSS/CMPSD (predicates 0-7)", 4, sse_cmp, 0),
    c!("SSE COMISS/UCOMISS/COMISD/UCOMISD", 3, sse_comi, 0),
    c!("SSE logic (ANDPS..XORPD, PAND..PXOR)", 2, sse_logic, 0),
    c!("SSE2 integer (PADD/PSUB/PMUL/PAVG/PMIN/PCMP..)", 5, sse_int, 0),
    c!("SSE2 shifts (PSLL/PSRL/PSRA, PSLLDQ/PSRLDQ)", 3, sse_shift, 0),
    c!("SSE shuffles/unpacks/packs (PSHUF*, SHUFP*..)", 4, sse_shuffle, 0),
    c!("SSE conversions (CVT*/CVTT*, 4 rounding modes)", 6, sse_cvt, 0),
    c!("SSE LDMXCSR/STMXCSR", 2, sse_mxcsr, 0),
    c!("MMX (arith, shifts, packs, MOVQ, CVT*PI*..)", 5, mmx, 0),
    c!("x87 loads/stores (FLD/FILD/FST(P)/FIST(P)..)", 5, x87_load_store, 0),
    c!("x87 arithmetic (FADD..FDIVR, FSQRT, FPREM..)", 6, x87_arith, 0),
    c!("x87 compares (FCOM/FUCOM/FCOMI/FTST/FXAM..)", 4, x87_cmp, 0),
    c!("x87 control (FLDCW/FNSTCW/FNSTSW/FXCH/FCMOV..)", 4, x87_control, 0),
];

/// Index of the class named `name`.
pub fn class_index(name: &str) -> usize {
    CLASSES.iter().position(|c| c.name == name).unwrap_or_else(|| panic!("no class {name}"))
}

fn size_any(g: &mut G) -> u32 {
    g.rng.pick(&[1, 2, 4, 8])
}

fn size_wide(g: &mut G) -> u32 {
    g.rng.pick(&[2, 4, 8])
}

/// A spec for an instruction with operand size `size` (byte operations decide on REX).
fn sized(g: &mut G, size: u32, op: &[u8]) -> Spec {
    let mut s = Spec::op(op).size(size);
    if size == 1 {
        g.byte_rex(&mut s);
    }
    s
}

/// Immediate bytes for an operand of `size` (at most 4: imm32 is sign-extended for 64-bit).
fn imm_len(size: u32) -> usize {
    size.min(4) as usize
}

/// A register operand holding a random value of `size` bytes.
fn reg_val(g: &mut G, size: u32) -> u8 {
    let r = g.r();
    let v = g.val(size);
    g.set_reg(r, size, v);
    r
}

/// The current value of a register-or-memory operand.
fn rm_value(g: &G, rm: Rm, size: u32) -> u64 {
    match rm {
        Rm::Mem(t) => g.get(t, size),
        Rm::Reg(r) if size == 1 && g.low_regs && (4..8).contains(&r) => (g.regs[(r - 4) as usize] >> 8) & 0xFF,
        Rm::Reg(r) => g.regs[r as usize] & mask(size),
        Rm::Any => 0,
    }
}

/// Place `v` in a register-or-memory operand.
fn set_rm(g: &mut G, rm: Rm, size: u32, v: u64) {
    match rm {
        Rm::Mem(t) => g.put(t, size, v),
        Rm::Reg(r) => g.set_reg(r, size, v),
        Rm::Any => {}
    }
}

/// LOCK now and then: on a memory destination of a lockable instruction it is accepted; on a
/// register operand or an instruction that cannot be locked it raises #UD (SDM Vol. 2A LOCK).
fn lock(g: &mut G, s: &mut Spec, rm: Rm, lockable: bool) {
    s.lock = if lockable && matches!(rm, Rm::Mem(_)) { g.rng.one_in(6) } else { g.rng.one_in(64) };
}

// ---- ADD/OR/ADC/SBB/AND/SUB/XOR/CMP, TEST ----

fn alu(g: &mut G, op: u8) {
    let size = size_any(g);
    let b = (size != 1) as u8;
    let mut s = sized(g, size, &[]);
    match g.rng.below(6) {
        form @ (0 | 1) => {
            // op r/m, r  and  op r, r/m (aliasing the same register sometimes).
            let r = reg_val(g, size);
            let rm = if g.rng.one_in(6) { Rm::Reg(r) } else { g.rm_operand(size, 2) };
            s.op = vec![op * 8 + b + 2 * form as u8];
            // Only the r/m-destination form with a memory destination can be locked.
            lock(g, &mut s, if form == 0 { rm } else { Rm::Any }, op != 7);
            s = s.reg(r).rm(rm);
        }
        2 => {
            s.op = vec![op * 8 + 4 + b];
            let v = g.val(size);
            s = s.imm(v, imm_len(size));
        }
        3 | 4 => {
            let rm = g.rm_operand(size, 2);
            s.op = vec![0x80 + b];
            lock(g, &mut s, rm, op != 7);
            let v = g.val(size);
            s = s.reg(op).rm(rm).imm(v, imm_len(size));
        }
        _ => {
            let rm = g.rm_operand(size, 2);
            lock(g, &mut s, rm, op != 7);
            s.op = vec![if size == 1 { 0x80 } else { 0x83 }];
            let v = g.val(1);
            s = s.reg(op).rm(rm).imm(v, 1);
        }
    }
    g.emit(s);
    if matches!(op, 1 | 4 | 6) {
        // SDM Vol. 2A AND/OR, Vol. 2C XOR: "OF and CF cleared; SF, ZF, PF set according to
        // the result. The state of the AF flag is undefined."
        g.undef = f::AF;
    }
}

fn test(g: &mut G, _: u8) {
    let size = size_any(g);
    let b = (size != 1) as u8;
    let mut s = sized(g, size, &[]);
    match g.rng.below(3) {
        0 => {
            let r = reg_val(g, size);
            let rm = if g.rng.one_in(6) { Rm::Reg(r) } else { g.rm_operand(size, 2) };
            s.op = vec![0x84 + b];
            s = s.reg(r).rm(rm);
        }
        1 => {
            s.op = vec![0xA8 + b];
            let v = g.val(size);
            s = s.imm(v, imm_len(size));
        }
        _ => {
            let rm = g.rm_operand(size, 2);
            s.op = vec![0xF6 + b];
            lock(g, &mut s, rm, false);
            let v = g.val(size);
            s = s.reg(0).rm(rm).imm(v, imm_len(size));
        }
    }
    g.emit(s);
    // SDM Vol. 2C TEST: "The OF and CF flags are set to 0. The SF, ZF, and PF flags are set
    // according to the result. The state of the AF flag is undefined."
    g.undef = f::AF;
}

// ---- INC/DEC/NOT/NEG ----

fn unary(g: &mut G, k: u8) {
    let size = size_any(g);
    let b = (size != 1) as u8;
    let (op, digit) = match k {
        0 => (0xFE, 0),
        1 => (0xFE, 1),
        2 => (0xF6, 2),
        _ => (0xF6, 3),
    };
    let mut s = sized(g, size, &[op + b]);
    let rm = g.rm_operand(size, 2);
    lock(g, &mut s, rm, true);
    g.emit(s.reg(digit).rm(rm));
    // INC/DEC (CF unaffected), NOT (no flags) and NEG define every flag they touch.
}

// ---- shifts and rotates ----

/// A shift count: 0, 1, width − 1, width, > width, the masking boundaries, or random.
fn count(g: &mut G, width: u32) -> u8 {
    let w = width as u64;
    let c = match g.rng.below(12) {
        0 => 0,
        1 | 2 => 1,
        3 => w - 1,
        4 => w,
        5 => w + 1,
        6 => g.rng.pick(&[31, 32, 33]),
        7 => g.rng.pick(&[63, 64, 65]),
        8 => 2 + g.rng.below(w - 2),
        9 => g.rng.pick(&[0x80, 0xFF, 0x9F, 0xE1]),
        _ => g.rng.below(256),
    };
    c as u8
}

/// Masked count as the SDM defines it: the count is masked to 5 bits (6 with REX.W).
fn masked(c: u8, size: u32) -> u32 {
    (c & if size == 8 { 63 } else { 31 }) as u32
}

/// Undefined flags of a shift or rotate (`digit` = ModRM.reg of C0/D0/D2).
fn shift_undef(digit: u8, mc: u32, width: u32) -> u64 {
    if mc == 0 {
        // SDM Vol. 2B SAL/SAR/SHL/SHR and RCL/RCR/ROL/ROR: "If the count is 0, the flags are
        // not affected."
        return 0;
    }
    match digit {
        4 | 5 | 7 => {
            // SDM Vol. 2B SAL/SAR/SHL/SHR: "The OF flag is affected only on 1-bit shifts. For
            // left shifts, the OF flag is set to 0 if the most-significant bit of the result is
            // the same as the CF flag ...; For a non-zero count, the AF flag is undefined."
            // and "[CF] is undefined for SHL and SHR instructions where the count is greater
            // than or equal to the size (in bits) of the destination operand."
            let mut u = f::AF;
            if mc != 1 {
                u |= f::OF;
            }
            if digit != 7 && mc >= width {
                u |= f::CF;
            }
            u
        }
        // SDM Vol. 2B RCL/RCR/ROL/ROR: "If the masked count is 1, then the OF flag is
        // affected, otherwise (masked count is greater than 1) the OF flag is undefined."
        _ => {
            if mc != 1 {
                f::OF
            } else {
                0
            }
        }
    }
}

fn shift(g: &mut G, digit: u8) {
    let size = size_any(g);
    let b = (size != 1) as u8;
    let mut s = sized(g, size, &[]);
    let rm = g.rm_operand(size, 3);
    let c = match g.rng.below(3) {
        0 => {
            s.op = vec![0xD0 + b];
            1
        }
        1 => {
            s.op = vec![0xD2 + b];
            let c = count(g, size * 8);
            g.regs[RCX as usize] = (g.regs[RCX as usize] & !0xFF) | c as u64;
            g.fixed |= 1 << RCX;
            c
        }
        _ => {
            s.op = vec![0xC0 + b];
            let c = count(g, size * 8);
            s = s.imm(c as u64, 1);
            c
        }
    };
    // With a CL count, the destination may itself be (part of) RCX: the count is what CL
    // holds before the instruction.
    let c = if s.op[0] & 0xFE == 0xD2 { g.regs[RCX as usize] as u8 } else { c };
    g.emit(s.reg(digit).rm(rm));
    g.undef = shift_undef(digit, masked(c, size), size * 8);
}

fn shiftd(g: &mut G, right: u8) {
    let size = size_wide(g);
    let mut s = Spec::op(&[]).size(size);
    let src = reg_val(g, size);
    let rm = if g.rng.one_in(8) { Rm::Reg(src) } else { g.rm_operand(size, 3) };
    let base = if right != 0 { 0xAC } else { 0xA4 };
    let cl = g.rng.one_in(2);
    // SDM Vol. 2B SHLD/SHRD: "If the count is greater than the operand size, the result is
    // undefined" (only possible for 16-bit operands): such counts are not generated.
    let c = loop {
        let c = count(g, size * 8);
        if !(size == 2 && masked(c, size) > 16) {
            break c;
        }
    };
    if cl {
        s.op = vec![0x0F, base + 1];
        g.regs[RCX as usize] = (g.regs[RCX as usize] & !0xFF) | c as u64;
        g.fixed |= 1 << RCX;
    } else {
        s.op = vec![0x0F, base];
        s = s.imm(c as u64, 1);
    }
    g.emit(s.reg(src).rm(rm));
    let mc = masked(c, size);
    // SDM Vol. 2B SHLD/SHRD: "If the count is 1 or greater, the CF flag is filled with the last
    // bit shifted out ... For a 1-bit shift, the OF flag is set if a sign change occurred;
    // otherwise, it is cleared. For shifts greater than 1 bit, the OF flag is undefined. If a
    // shift occurs, the AF flag is undefined. If the count operand is 0, the flags are not
    // affected."
    g.undef = if mc == 0 {
        0
    } else if mc == 1 {
        f::AF
    } else {
        f::AF | f::OF
    };
}

// ---- MUL/IMUL/DIV/IDIV ----

fn muldiv(g: &mut G, digit: u8) {
    let size = size_any(g);
    let b = (size != 1) as u8;
    let s = sized(g, size, &[0xF6 + b]);
    let bits = size * 8;
    let m = mask(size);
    // Divisor / multiplier: zero now and then.
    let d = if digit >= 6 && g.rng.one_in(10) { 0 } else { g.val(size) & m };
    let rm = if g.rng.one_in(10) {
        Rm::Reg(if size == 1 || g.rng.one_in(2) { RAX } else { RDX })
    } else {
        let rm = g.rm_operand(size, 3);
        set_rm(g, rm, size, d);
        rm
    };
    // Accumulator (and RDX/AH for the dividend's high half).
    let (lo, hi) = match (digit, g.rng.below(4)) {
        (6, 0 | 1) if d != 0 => (g.val(size), g.rng.next() % d),
        (7, 0 | 1) => {
            let lo = g.val(size);
            (lo, if lo & (1 << (bits - 1)) != 0 { m } else { 0 })
        }
        (7, 2) if d != 0 => {
            // A dividend whose quotient fits: q·d + r with |r| < |d|.
            let sd = sext(d, size) as i64 as i128;
            let lim = 1i128 << (bits - 1);
            let q = (sext(g.rng.next(), size) as i64 as i128) % lim;
            // The remainder takes the dividend's sign, which is that of q·d.
            let r = (g.rng.next() as i64 as i128) % sd.abs();
            let r = if ((q * sd) < 0) != (r < 0) && r != 0 { -r } else { r };
            let n = q * sd + r;
            (n as u64 & m, (n >> bits) as u64 & m)
        }
        _ => (g.val(size), g.val(size)),
    };
    if size == 1 {
        g.regs[RAX as usize] = (g.regs[RAX as usize] & !0xFFFF) | (lo & 0xFF) | ((hi & 0xFF) << 8);
    } else {
        g.set_reg(RAX, size, lo);
        g.set_reg(RDX, size, hi);
    }
    g.fixed |= (1 << RAX) | (1 << RDX);
    g.emit(s.reg(digit).rm(rm));
    g.undef = if digit >= 6 {
        // SDM Vol. 2A DIV / IDIV: "The CF, OF, SF, ZF, AF, and PF flags are undefined."
        f::ALL
    } else {
        // SDM Vol. 2B MUL / IMUL: "The SF, ZF, AF, and PF flags are undefined."
        f::SF | f::ZF | f::AF | f::PF
    };
}

fn imul(g: &mut G, ops: u8) {
    let size = size_wide(g);
    let r = reg_val(g, size);
    let rm = if g.rng.one_in(6) { Rm::Reg(r) } else { g.rm_operand(size, 3) };
    let s = if ops == 2 {
        Spec::op(&[0x0F, 0xAF]).size(size)
    } else if g.rng.one_in(2) {
        let v = g.val(1);
        Spec::op(&[0x6B]).size(size).imm(v, 1)
    } else {
        let v = g.val(size);
        Spec::op(&[0x69]).size(size).imm(v, imm_len(size))
    };
    g.emit(s.reg(r).rm(rm));
    // SDM Vol. 2B IMUL: "The SF, ZF, AF, and PF flags are undefined."
    g.undef = f::SF | f::ZF | f::AF | f::PF;
}

// ---- BT/BTS/BTR/BTC, BSF/BSR/POPCNT ----

fn bt(g: &mut G, k: u8) {
    let size = size_wide(g);
    let bits = size as i64 * 8;
    let mut s = Spec::op(&[]).size(size);
    match g.rng.below(4) {
        0 => {
            // bt r/m(reg), r: the offset is taken modulo the width.
            let o = reg_val(g, size);
            let d = if g.rng.one_in(6) { o } else { reg_val(g, size) };
            s.op = vec![0x0F, 0xA3 + 8 * k];
            s = s.reg(o).rm(Rm::Reg(d));
        }
        1 => {
            // bt mem, r: a signed bit offset reaching beyond the operand (SDM Vol. 2A BT,
            // "Bit(BitBase, BitOffset)" with BitOffset in −2^(n−1)..2^(n−1)−1).
            let o = g.r();
            let off = g.rng.below(0x7000) as i64 - 0x3800;
            let off = if g.rng.one_in(4) { g.rng.below(bits as u64 * 2) as i64 - bits } else { off };
            let garbage = g.rng.next() & !mask(size);
            g.regs[o as usize] = (off as u64 & mask(size)) | garbage;
            g.fixed |= 1 << o;
            let t = PAGE - 0x80 + g.rng.below(0x100);
            s.op = vec![0x0F, 0xA3 + 8 * k];
            lock(g, &mut s, Rm::Mem(t), k != 0);
            s = s.reg(o).rm(Rm::Mem(t));
        }
        2 => {
            let d = reg_val(g, size);
            s.op = vec![0x0F, 0xBA];
            let i = g.rng.below(256);
            s = s.reg(4 + k).rm(Rm::Reg(d)).imm(i, 1);
        }
        _ => {
            let t = g.target(size);
            s.op = vec![0x0F, 0xBA];
            lock(g, &mut s, Rm::Mem(t), k != 0);
            let i = g.rng.below(256);
            s = s.reg(4 + k).rm(Rm::Mem(t)).imm(i, 1);
        }
    }
    g.emit(s);
    // SDM Vol. 2A BT/BTC/BTR/BTS: "The CF flag contains the value of the selected bit before
    // it is changed. The ZF flag is unaffected. The OF, SF, AF, and PF flags are undefined."
    g.undef = f::OF | f::SF | f::AF | f::PF;
}

fn bitscan(g: &mut G, k: u8) {
    let size = size_wide(g);
    let d = reg_val(g, size);
    let v = match g.rng.below(4) {
        0 => 0,
        1 => 1 << g.rng.below(size as u64 * 8),
        _ => g.val(size),
    };
    let rm = if g.rng.one_in(8) {
        Rm::Reg(d)
    } else {
        let rm = g.rm_operand(size, 3);
        set_rm(g, rm, size, v);
        rm
    };
    let s = match k {
        0 => Spec::op(&[0x0F, 0xBC]),
        1 => Spec::op(&[0x0F, 0xBD]),
        _ => Spec { pre: vec![0xF3], ..Spec::op(&[0x0F, 0xB8]) },
    };
    g.emit(s.size(size).reg(d).rm(rm));
    if k < 2 {
        // SDM Vol. 2A BSF/BSR: "The ZF flag is set to 1 if the source operand is 0; otherwise,
        // the ZF flag is cleared. The CF, OF, SF, AF, and PF flags are undefined." (A zero
        // source leaves the destination unchanged: AMD APM Vol. 3 BSF/BSR; the host is AMD.)
        g.undef = f::CF | f::OF | f::SF | f::AF | f::PF;
    }
}

// ---- string instructions ----

fn string(g: &mut G, k: u8) {
    let size = size_any(g);
    let b = (size != 1) as u8;
    let op = [0xA4, 0xAA, 0xAC, 0xA6, 0xAE][k as usize] + b;
    let mut s = Spec::op(&[op]).size(size);
    let a32 = g.rng.one_in(4);
    if a32 {
        s.pre.push(0x67);
    }
    let rep = match g.rng.below(4) {
        0 => None,
        1 | 2 => Some(0xF3),
        _ if k >= 3 => Some(0xF2),
        _ => Some(0xF3),
    };
    if let Some(p) = rep {
        s.pre.push(p);
    }
    let n = if g.rng.one_in(8) { 0 } else { g.rng.below(34) };
    let back = g.flags & f::DF != 0;
    let span = 40 * 8;
    let ptr = |g: &mut G| -> u64 {
        if g.rng.one_in(3) {
            PAGE - 48 + g.rng.below(96)
        } else {
            DATA + 0x200 + span + g.rng.below(WIN as u64 - 0x400 - 2 * span)
        }
    };
    let si = ptr(g);
    let di = if k == 0 && g.rng.one_in(3) { si + g.rng.below(33) - 16 } else { ptr(g) };
    let garbage = |g: &mut G| if a32 { g.rng.next() & !0xFFFF_FFFF } else { 0 };
    // A segment override on the source (DS:rSI) now and then; ES:rDI cannot be overridden.
    let mut si_reg = si;
    if matches!(k, 0 | 2 | 3) && g.rng.one_in(6) {
        let p = g.rng.pick(&[0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65]);
        let base = if p >= 0x64 { g.seg_base[(p - 0x64) as usize] } else { 0 };
        if !a32 || base == 0 {
            s.pre.insert(0, p);
            si_reg = si.wrapping_sub(base);
        }
    }
    g.regs[RSI as usize] = if a32 { si_reg | garbage(g) } else { si_reg };
    g.regs[RDI as usize] = di | garbage(g);
    g.regs[RCX as usize] = if rep.is_some() { n | garbage(g) } else { g.rng.next() };
    g.fixed |= (1 << RSI) | (1 << RDI) | (1 << RCX) | (1 << RAX);
    // CMPS/SCAS: make the compared elements equal up to a stop point so REPE/REPNE end early.
    if k >= 3 {
        let stop = g.rng.below(n + 3);
        let step = |j: u64| if back { (j as i64 * -(size as i64)) as u64 } else { j * size as u64 };
        let acc = g.regs[RAX as usize] & mask(size);
        for j in 0..n.max(1) + 2 {
            let da = di.wrapping_add(step(j));
            let sa = si.wrapping_add(step(j));
            let src = if k == 3 { g.get(sa, size) } else { acc };
            let equal = (j < stop) == (rep == Some(0xF3) || rep.is_none());
            let v = if equal { src } else { src ^ (1 << g.rng.below(size as u64 * 8)) };
            if (DATA..DATA + WIN as u64 - 8).contains(&da) {
                g.put(da, size, v);
            }
        }
    }
    g.emit(s);
    // MOVS/STOS/LODS affect no flags; CMPS/SCAS set all six like CMP (SDM Vol. 2A CMPS,
    // Vol. 2B SCAS): nothing is undefined.
}

// ---- LAHF/SAHF/CLC/STC/CMC ----

fn flagops(g: &mut G, k: u8) {
    let pool: &[u8] = if k == 0 { &[0x9F, 0x9E] } else { &[0xF8, 0xF9, 0xF5] };
    let n = 1 + g.rng.below(3);
    for _ in 0..n {
        let op = g.rng.pick(pool);
        g.code.push(op);
    }
    // SDM: LAHF/SAHF, CLC/STC/CMC define every flag they touch.
}

// ---- CMOVcc/SETcc ----

fn cmov(g: &mut G, _: u8) {
    let size = size_wide(g);
    let cc = g.rng.below(16) as u8;
    let d = reg_val(g, size);
    let rm = if g.rng.one_in(6) { Rm::Reg(d) } else { g.rm_operand(size, 3) };
    g.emit(Spec::op(&[0x0F, 0x40 + cc]).size(size).reg(d).rm(rm));
}

fn setcc(g: &mut G, _: u8) {
    let cc = g.rng.below(16) as u8;
    let s = sized(g, 1, &[0x0F, 0x90 + cc]);
    let rm = g.rm_operand(1, 3);
    g.emit(s.reg(0).rm(rm));
}

// ---- CMPXCHG/XADD/XCHG, CMPXCHG8B/16B ----

fn cmpxchg(g: &mut G, _: u8) {
    let size = size_any(g);
    let b = (size != 1) as u8;
    let mut s = sized(g, size, &[0x0F, 0xB0 + b]);
    let dst = g.rm_operand(size, 2);
    // The source: a register with a random value, sometimes the destination register itself
    // or the accumulator.
    let src = match (g.rng.below(8), dst) {
        (0, Rm::Reg(r)) => r,
        (1, _) => RAX,
        _ => reg_val(g, size),
    };
    // Half the time the accumulator equals the destination (the exchange happens).
    let dv = rm_value(g, dst, size);
    if g.rng.one_in(2) {
        g.set_reg(RAX, size, dv);
    }
    g.fixed |= 1 << RAX;
    lock(g, &mut s, dst, true);
    g.emit(s.reg(src).rm(dst));
    // SDM Vol. 2A CMPXCHG: "The ZF flag is set if the values in the destination operand and
    // register AL, AX, or EAX are equal; otherwise it is cleared. The CF, PF, AF, SF, and OF
    // flags are set according to the results of the comparison operation." Nothing undefined.
}

fn xadd(g: &mut G, _: u8) {
    let size = size_any(g);
    let b = (size != 1) as u8;
    let mut s = sized(g, size, &[0x0F, 0xC0 + b]);
    let src = reg_val(g, size);
    let dst = if g.rng.one_in(6) { Rm::Reg(src) } else { g.rm_operand(size, 2) };
    lock(g, &mut s, dst, true);
    g.emit(s.reg(src).rm(dst));
}

fn xchg(g: &mut G, _: u8) {
    let size = size_any(g);
    if size > 1 && g.rng.one_in(3) {
        // 90+r: xchg rAX, r (90 without REX.B is NOP, so r ≠ 0 or REX.B).
        let r = 1 + g.rng.below(15) as u8;
        if r == RSP {
            return xchg(g, 0);
        }
        let v = g.val(size);
        g.set_reg(r, size, v);
        let mut s = Spec::op(&[0x90]).size(size);
        s.opreg = Some(r);
        return g.emit(s);
    }
    let b = (size != 1) as u8;
    let mut s = sized(g, size, &[0x86 + b]);
    let src = reg_val(g, size);
    let dst = if g.rng.one_in(6) { Rm::Reg(src) } else { g.rm_operand(size, 2) };
    lock(g, &mut s, dst, true);
    g.emit(s.reg(src).rm(dst));
}

fn cmpxchg_wide(g: &mut G, wide: u8) {
    let half = if wide != 0 { 8 } else { 4 };
    let t = if wide != 0 {
        if g.rng.one_in(10) {
            // Misaligned: #GP(0) (SDM Vol. 2A CMPXCHG16B: "the destination operand must be
            // 16-byte aligned").
            DATA + 0x100 + g.rng.below(WIN as u64 - 0x200)
        } else {
            (DATA + 0x100 + g.rng.below(WIN as u64 - 0x200)) & !15
        }
    } else {
        g.target(8)
    };
    let lo = g.get(t, half);
    let hi = g.get(t + half as u64, half);
    match g.rng.below(4) {
        0 | 1 => {
            g.set_reg(RAX, half, lo);
            g.set_reg(RDX, half, hi);
        }
        2 => g.set_reg(RAX, half, lo),
        _ => {}
    }
    g.fixed |= (1 << RAX) | (1 << RDX) | (1 << RCX) | (1 << 3); // RBX
    let mut s = Spec::op(&[0x0F, 0xC7]).reg(1).rm(Rm::Mem(t));
    s.w = wide != 0;
    lock(g, &mut s, Rm::Mem(t), true);
    g.emit(s);
    // SDM Vol. 2A CMPXCHG8B/16B: "The ZF flag is set if the destination operand and EDX:EAX
    // are equal; otherwise it is cleared. The CF, PF, AF, SF, and OF flags are unaffected."
}

// ---- BSWAP, MOVZX/MOVSX/MOVSXD, CBW.. ----

fn bswap(g: &mut G, _: u8) {
    // SDM Vol. 2A BSWAP: "When the BSWAP instruction references a 16-bit register, the result
    // is undefined": only 32- and 64-bit forms.
    let size = g.rng.pick(&[4, 8]);
    let r = reg_val(g, size);
    let mut s = Spec::op(&[0x0F, 0xC8]).size(size);
    s.opreg = Some(r);
    g.emit(s);
}

fn movx(g: &mut G, _: u8) {
    let (op, ssize): (&[u8], u32) = g.rng.pick(&[
        (&[0x0F, 0xB6][..], 1),
        (&[0x0F, 0xB7][..], 2),
        (&[0x0F, 0xBE][..], 1),
        (&[0x0F, 0xBF][..], 2),
        (&[0x63][..], 4),
    ]);
    let dsize = if op[0] == 0x63 { g.rng.pick(&[2, 4, 8, 8]) } else { size_wide(g) };
    let ssize = if op[0] == 0x63 { dsize.min(4) } else { ssize };
    let mut s = Spec::op(op).size(dsize);
    if ssize == 1 && dsize == 8 {
        s.rex = true;
    } else if ssize == 1 {
        g.byte_rex(&mut s);
    }
    // The destination is a word or wider: register 4 is (E)SP even without REX.
    let d = g.r_not(1 << RSP);
    let v = g.val(dsize);
    g.set_reg(d, dsize, v);
    let rm = if g.rng.one_in(6) { Rm::Reg(d) } else { g.rm_operand(ssize, 3) };
    if let Rm::Reg(r) = rm {
        let v = g.val(ssize);
        g.set_reg(r, ssize, v);
    }
    g.emit(s.reg(d).rm(rm));
}

fn cbw(g: &mut G, _: u8) {
    let size = g.rng.pick(&[2, 4, 8]);
    let v = g.val(8);
    g.regs[RAX as usize] = v;
    let op = g.rng.pick(&[0x98, 0x99]);
    g.emit(Spec::op(&[op]).size(size));
}

// ---- LEA ----

fn lea(g: &mut G, _: u8) {
    let size = size_wide(g);
    let d = g.r();
    g.emit(Spec::op(&[0x8D]).size(size).reg(d).rm(Rm::Any));
}

// ---- ENTER/LEAVE, PUSH/POP ----

fn enter_leave(g: &mut G, _: u8) {
    g.regs[RSP as usize] = PAGE - 24 + g.rng.below(48);
    g.regs[RBP as usize] = PAGE + 0x700 + g.rng.below(32);
    g.fixed |= (1 << RSP) | (1 << RBP);
    let p66 = g.rng.one_in(3);
    let enter = |g: &mut G| {
        let alloc = match g.rng.below(4) {
            0 => 0,
            1 => 8 * g.rng.below(8),
            _ => g.rng.below(0x400),
        };
        let level = match g.rng.below(4) {
            0 => 0,
            1 => 1,
            2 => g.rng.below(32),
            _ => g.rng.below(256),
        };
        let mut s = Spec::op(&[0xC8]).imm(alloc | (level << 16), 3);
        s.p66 = p66;
        g.emit(s);
    };
    match g.rng.below(3) {
        0 => enter(g),
        1 => {
            // LEAVE alone: RBP points at a saved frame pointer in the window.
            g.regs[RBP as usize] = PAGE - 12 + g.rng.below(24);
            g.regs[RSP as usize] = g.regs[RBP as usize] - g.rng.below(64);
            let mut s = Spec::op(&[0xC9]);
            s.p66 = p66;
            g.emit(s);
        }
        _ => {
            enter(g);
            let mut s = Spec::op(&[0xC9]);
            s.p66 = p66;
            g.emit(s);
        }
    }
}

fn push_pop(g: &mut G, _: u8) {
    g.regs[RSP as usize] = PAGE - 20 + g.rng.below(40);
    let n = 1 + g.rng.below(3);
    for k in 0..n {
        let p66 = g.rng.one_in(3);
        let size = if p66 { 2 } else { 8 };
        let last = k == n - 1;
        let mut s = match g.rng.below(8) {
            // push r / pop r (RSP included: PUSH RSP pushes the old value; POP RSP loads RSP).
            0 | 1 => {
                let r = g.rng.below(16) as u8;
                let mut s = Spec::op(&[0x50]);
                s.opreg = Some(r);
                s
            }
            2 | 3 => {
                let r = g.rng.below(16) as u8;
                if r == RSP && !last {
                    continue;
                }
                let mut s = Spec::op(&[0x58]);
                s.opreg = Some(r);
                s
            }
            4 => {
                let v = g.val(4);
                if p66 {
                    Spec::op(&[0x68]).imm(v, 2)
                } else {
                    Spec::op(&[0x68]).imm(v, 4)
                }
            }
            5 => {
                let v = g.val(1);
                Spec::op(&[0x6A]).imm(v, 1)
            }
            6 => {
                // push r/m (memory only as the first instruction: later ones see changed
                // registers the operand solver does not model).
                let rm = if k == 0 && g.rng.one_in(2) { Rm::Mem(g.target(size)) } else { Rm::Reg(g.rng.below(16) as u8) };
                Spec::op(&[0xFF]).reg(6).rm(rm)
            }
            _ => {
                // pop r/m; with [rsp+x] the address is computed after the increment (SDM Vol.
                // 2B POP).
                let rm = if k == 0 && g.rng.one_in(2) { Rm::Mem(g.target(size) + 16) } else { Rm::Reg(g.rng.below(16) as u8) };
                if matches!(rm, Rm::Reg(RSP)) && !last {
                    continue;
                }
                Spec::op(&[0x8F]).reg(0).rm(rm)
            }
        };
        s.p66 = p66;
        g.emit(s);
    }
    if g.code.is_empty() {
        g.code.push(0x50);
    }
}

// ---- MOV, page crossing, flag chains ----

fn mov(g: &mut G, cross: u8) {
    let size = size_any(g);
    let b = (size != 1) as u8;
    let mut s = sized(g, size, &[]);
    let t = if cross != 0 && size > 1 { PAGE - 1 - g.rng.below(size as u64 - 1) } else { g.target(size) };
    let v = g.val(size);
    g.put(t, size, v);
    match g.rng.below(3) {
        0 => {
            let r = reg_val(g, size);
            s.op = vec![0x88 + b];
            s = s.reg(r).rm(Rm::Mem(t));
        }
        1 => {
            let r = g.r();
            s.op = vec![0x8A + b];
            s = s.reg(r).rm(Rm::Mem(t));
        }
        _ => {
            s.op = vec![0xC6 + b];
            let v = g.val(size);
            s = s.reg(0).rm(Rm::Mem(t)).imm(v, imm_len(size));
        }
    }
    g.emit(s);
}

/// Operations with memory operands, their targets forced across the page boundary.
fn page_cross(g: &mut G, _: u8) {
    g.cross = true;
    match g.rng.below(16) {
        12 => {
            let d = g.rng.pick(&[4, 5, 6, 7]);
            muldiv(g, d)
        }
        13 => {
            let k = g.rng.below(4) as u8;
            bt(g, k)
        }
        14 => {
            let k = g.rng.below(3) as u8;
            bitscan(g, k)
        }
        15 => test(g, 0),
        0 => {
            let op = g.rng.below(8) as u8;
            alu(g, op)
        }
        1 => {
            let k = g.rng.below(4) as u8;
            unary(g, k)
        }
        2 => {
            let d = g.rng.pick(&[0, 1, 2, 3, 4, 5, 7]);
            shift(g, d)
        }
        3 => xchg(g, 0),
        4 => xadd(g, 0),
        5 => cmpxchg(g, 0),
        6 => cmov(g, 0),
        7 => movx(g, 0),
        8 => {
            let r = g.rng.below(2) as u8;
            shiftd(g, r)
        }
        9 => imul(g, 2),
        10 => cmpxchg_wide(g, 0),
        _ => mov(g, 1),
    }
    g.cross = false;
}

/// Flags read by condition code `cc`.
fn cc_reads(cc: u8) -> u64 {
    match cc >> 1 {
        0 => f::OF,
        1 => f::CF,
        2 => f::ZF,
        3 => f::CF | f::ZF,
        4 => f::SF,
        5 => f::PF,
        6 => f::SF | f::OF,
        _ => f::ZF | f::SF | f::OF,
    }
}

/// A flag-setting instruction followed by one to three instructions that read and/or
/// partially update the flags, so Heron's lazily computed flags (CC_OP) are consumed by later
/// instructions instead of being materialized at the end. Undefined flags are tracked through
/// the sequence: a consumer is only chosen if it reads no flag undefined at that point.
fn chain(g: &mut G, _: u8) {
    // Producer: any flag-setting instruction except DIV/IDIV (all flags undefined); the
    // flags it leaves undefined are in g.undef.
    match g.rng.below(14) {
        0..=3 => {
            let op = g.rng.below(8) as u8;
            alu(g, op)
        }
        4 => {
            let k = g.rng.pick(&[0, 1, 3]);
            unary(g, k)
        }
        5 => test(g, 0),
        6 => {
            // A 1-bit shift or rotate (every flag it touches defined).
            let size = size_any(g);
            let b = (size != 1) as u8;
            let digit = g.rng.pick(&[0, 1, 2, 3, 4, 5, 7]);
            let s = sized(g, size, &[0xD0 + b]);
            let rm = g.rm_operand(size, 3);
            g.emit(s.reg(digit).rm(rm));
            g.undef = shift_undef(digit, 1, size * 8);
        }
        7 => {
            let d = g.rng.pick(&[0, 1, 2, 3, 4, 5, 7]);
            shift(g, d)
        }
        8 => {
            let r = g.rng.below(2) as u8;
            shiftd(g, r)
        }
        9 => {
            let d = g.rng.pick(&[4, 5]);
            muldiv(g, d)
        }
        10 => {
            let k = g.rng.pick(&[2, 3]);
            imul(g, k)
        }
        11 => {
            let k = g.rng.below(4) as u8;
            bt(g, k)
        }
        12 => {
            let k = g.rng.below(3) as u8;
            bitscan(g, k)
        }
        _ => {
            if g.rng.one_in(2) {
                cmpxchg(g, 0)
            } else {
                xadd(g, 0)
            }
        }
    }
    // Consumers use registers only and set no register values (the producer's memory operand
    // was solved against the current ones).
    let r = |g: &mut G| loop {
        let r = g.rng.below(16) as u8;
        if r != RSP {
            break r;
        }
    };
    let n = 1 + g.rng.below(3);
    let mut done = 0;
    while done < n {
        let mark = g.code.len();
        // (flags read, flags defined, flags made undefined)
        let (reads, defines, undef) = match g.rng.below(13) {
            0 | 1 => {
                let cc = g.rng.below(16) as u8;
                if cc_reads(cc) & g.undef != 0 {
                    continue;
                }
                let d = r(g);
                g.emit(Spec { rex: true, ..Spec::op(&[0x0F, 0x90 + cc]).reg(0).rm(Rm::Reg(d)) });
                (cc_reads(cc), 0, 0)
            }
            2 => {
                let cc = g.rng.below(16) as u8;
                if cc_reads(cc) & g.undef != 0 {
                    continue;
                }
                let size = size_wide(g);
                let (d, s) = (r(g), r(g));
                g.emit(Spec::op(&[0x0F, 0x40 + cc]).size(size).reg(d).rm(Rm::Reg(s)));
                (cc_reads(cc), 0, 0)
            }
            3 => {
                // jcc +2 over "mov cl, 1".
                let cc = g.rng.below(16) as u8;
                if cc_reads(cc) & g.undef != 0 {
                    continue;
                }
                g.code.extend_from_slice(&[0x70 + cc, 0x02, 0xB1, 0x01]);
                (cc_reads(cc), 0, 0)
            }
            4 => {
                // ADC/SBB reg, reg.
                let size = size_wide(g);
                let op = g.rng.pick(&[0x11, 0x19]);
                let (d, s) = (r(g), r(g));
                g.emit(Spec::op(&[op]).size(size).reg(s).rm(Rm::Reg(d)));
                (f::CF, f::ALL, 0)
            }
            5 => {
                // RCL/RCR by 1 (OF defined for a 1-bit rotate).
                let size = size_wide(g);
                let digit = g.rng.pick(&[2, 3]);
                let d = r(g);
                g.emit(Spec::op(&[0xD1]).size(size).reg(digit).rm(Rm::Reg(d)));
                (f::CF, f::CF | f::OF, 0)
            }
            6 => {
                g.code.push(0x9F); // LAHF
                (f::SF | f::ZF | f::AF | f::PF | f::CF, 0, 0)
            }
            7 => {
                g.code.push(0xF5); // CMC
                (f::CF, f::CF, 0)
            }
            8 => {
                let op = g.rng.pick(&[0xF8, 0xF9]); // CLC/STC
                g.code.push(op);
                (0, f::CF, 0)
            }
            9 => {
                // SAHF (AH is whatever the registers hold).
                g.code.push(0x9E);
                (0, f::SF | f::ZF | f::AF | f::PF | f::CF, 0)
            }
            10 => {
                // INC/DEC: CF kept.
                let size = size_wide(g);
                let d = r(g);
                let digit = g.rng.below(2) as u8;
                g.emit(Spec::op(&[0xFF]).size(size).reg(digit).rm(Rm::Reg(d)));
                (0, f::ALL & !f::CF, 0)
            }
            11 => {
                // BT r, imm8: CF from the bit, ZF kept; OF/SF/AF/PF undefined (SDM Vol. 2A BT).
                let size = size_wide(g);
                let d = r(g);
                let i = g.rng.below(64);
                g.emit(Spec::op(&[0x0F, 0xBA]).size(size).reg(4).rm(Rm::Reg(d)).imm(i, 1));
                (0, f::CF, f::OF | f::SF | f::AF | f::PF)
            }
            _ => {
                // ROL/ROR by 1: CF and OF only.
                let size = size_wide(g);
                let digit = g.rng.below(2) as u8;
                let d = r(g);
                g.emit(Spec::op(&[0xD1]).size(size).reg(digit).rm(Rm::Reg(d)));
                (0, f::CF | f::OF, 0)
            }
        };
        if reads & g.undef != 0 {
            // LAHF after an undefined AF etc.: take the instruction back.
            g.code.truncate(mark);
            continue;
        }
        g.undef = (g.undef & !defines) | undef;
        done += 1;
    }
}

/// A counted loop (`mov ecx, n; top: body; dec ecx; jnz top`) whose body mixes ALU, memory,
/// LEA, IMUL, shifts and CMOVcc on registers other than RCX/RSI/RSP, with stores and loads at
/// [rsi + rcx·8]: in tier 1 a region of several blocks with a back-edge, lazy flags carried
/// around it (ADC/SBB read the CF of the previous iteration) and the inline TLB paths.
/// Every body instruction that writes CF defines it, and DEC defines the rest: nothing is
/// undefined at the end. Inside the body the undefined flags are tracked (as in `chain`) so
/// CMOVcc reads only defined ones.
fn counted_loop(g: &mut G, _: u8) {
    let n = 1 + g.rng.below(12);
    let base = (DATA + 0x200 + g.rng.below(0x1800)) & !7;
    g.regs[RSI as usize] = base;
    g.fixed |= (1 << RCX) | (1 << RSI);
    g.code.push(0xB9); // mov ecx, n
    g.code.extend_from_slice(&(n as u32).to_le_bytes());
    let top = g.code.len();
    let r = |g: &mut G| loop {
        let r = g.rng.below(16) as u8;
        if ![RCX, RSI, RSP].contains(&r) {
            break r;
        }
    };
    let rex = |w: bool, reg: u8, rm: u8, index: u8| 0x40 | (w as u8) << 3 | ((reg >> 3) << 2) | ((index >> 3) << 1) | (rm >> 3);
    // Flags undefined at this point of the body (at its start, all are defined: the case's
    // flags, then DEC's with the CF of a body instruction).
    let mut undef = 0;
    for _ in 0..1 + g.rng.below(4) {
        let (a, b) = (r(g), r(g));
        let w = g.rng.one_in(2);
        match g.rng.below(8) {
            0 | 1 => {
                // add/or/adc/sbb/and/sub/xor r, r (SDM: AND/OR/XOR leave AF undefined).
                let op = g.rng.pick(&[0x01, 0x09, 0x11, 0x19, 0x21, 0x29, 0x31]);
                g.code.extend_from_slice(&[rex(w, b, a, 0), op, 0xC0 | ((b & 7) << 3) | (a & 7)]);
                undef = if matches!(op, 0x09 | 0x21 | 0x31) { f::AF } else { 0 };
            }
            2 => {
                // add/sub/adc [rsi + rcx*8 - 8], r  (RSI = 6, RCX = 1: SIB 0xCE).
                let op = g.rng.pick(&[0x01, 0x29, 0x11]);
                g.code.extend_from_slice(&[rex(w, b, 0, 0), op, 0x44 | ((b & 7) << 3), 0xCE, 0xF8]);
                undef = 0;
            }
            3 => {
                // mov r, [rsi + rcx*8 - 8] or mov [rsi + rcx*8], r.
                let op = g.rng.pick(&[0x8B, 0x89]);
                let disp = if op == 0x8B { 0xF8 } else { 0x00 };
                g.code.extend_from_slice(&[rex(w, b, 0, 0), op, 0x44 | ((b & 7) << 3), 0xCE, disp]);
            }
            4 => {
                // lea r, [r + r*2 + disp8].
                let d = g.rng.next() as u8;
                g.code.extend_from_slice(&[rex(w, a, b, b), 0x8D, 0x44 | ((a & 7) << 3), 0x40 | ((b & 7) << 3) | (b & 7), d]);
            }
            5 => {
                // imul r, r.
                g.code.extend_from_slice(&[rex(w, a, b, 0), 0x0F, 0xAF, 0xC0 | ((a & 7) << 3) | (b & 7)]);
                // SDM Vol. 2B IMUL: SF/ZF/AF/PF undefined; DEC below defines them again.
                undef = f::SF | f::ZF | f::AF | f::PF;
            }
            6 => {
                // shl/shr/sar r, imm8 with 1 <= count < width (CF defined).
                let digit = g.rng.pick(&[4, 5, 7]);
                let c = 1 + g.rng.below(if w { 63 } else { 31 }) as u8;
                g.code.extend_from_slice(&[rex(w, 0, a, 0), 0xC1, 0xC0 | (digit << 3) | (a & 7), c]);
                undef = shift_undef(digit, c as u32, if w { 64 } else { 32 });
            }
            _ => {
                // cmovcc r, r, on defined flags only.
                let cc = g.rng.below(16) as u8;
                if cc_reads(cc) & undef != 0 {
                    continue;
                }
                g.code.extend_from_slice(&[rex(w, a, b, 0), 0x0F, 0x40 + cc, 0xC0 | ((a & 7) << 3) | (b & 7)]);
            }
        }
    }
    g.code.extend_from_slice(&[0xFF, 0xC9]); // dec ecx
    let rel = top as i64 - (g.code.len() as i64 + 2);
    g.code.extend_from_slice(&[0x75, rel as i8 as u8]); // jnz top
}

/// Precise exceptions in the middle of a sequence: sometimes a valid store, one to three ALU
/// instructions (ADD/SUB/ADC/SBB/CMP, every flag defined, since a fault compares all flags;
/// they write no register an address depends on), then an access through a non-canonical address (#GP(0): SDM Vol. 3A §3.3.7.1) — a load, a
/// store, a read-modify-write, or an SSE load — and an instruction that must never run. The
/// state at the fault must be that after the instructions before it, with RIP on the faulting
/// one and memory holding only the earlier stores (in tier 1: registers written through,
/// the fault exit of translated code).
fn precise_fault(g: &mut G, _: u8) {
    // The base register of the faulting access: encodable as [r] with mod 00 and no SIB.
    let base = loop {
        let r = g.rng.below(16) as u8;
        if ![RSP, RBP, 12, 13].contains(&r) {
            break r;
        }
    };
    let bad = g.rng.pick(&[0x0000_8000_0000_0000u64, 0xFFFF_7FFF_FFFF_F000, 0x8000_0000_0000_0000, 0x1234_5678_9ABC_DEF0]) + g.rng.below(0x100);
    g.regs[base as usize] = bad;
    g.fixed |= 1 << base;
    // Registers no address depends on (`fixed` covers RSP, the base and the store's).
    let other = |g: &mut G| loop {
        let r = g.rng.below(16) as u8;
        if g.fixed & (1 << r) == 0 {
            break r;
        }
    };
    if g.rng.one_in(2) {
        let t = g.target(8);
        let r = other(g);
        g.emit(Spec::op(&[0x89]).size(8).reg(r).rm(Rm::Mem(t)));
    }
    for _ in 0..1 + g.rng.below(3) {
        let size = size_wide(g);
        let op = g.rng.pick(&[0x01, 0x29, 0x11, 0x19, 0x39]);
        let (d, s) = (other(g), other(g));
        g.emit(Spec::op(&[op]).size(size).reg(s).rm(Rm::Reg(d)));
    }
    let r = other(g);
    let rex = 0x48 | ((r >> 3) << 2) | (base >> 3);
    let modrm = ((r & 7) << 3) | (base & 7);
    match g.rng.below(5) {
        0 => g.code.extend_from_slice(&[rex, 0x8B, modrm]), // mov r, [base]
        1 => g.code.extend_from_slice(&[rex, 0x89, modrm]), // mov [base], r
        2 => g.code.extend_from_slice(&[rex, 0x01, modrm]), // add [base], r
        3 => g.code.extend_from_slice(&[rex & !4, 0xFF, base & 7]), // inc qword [base]
        _ => g.code.extend_from_slice(&[0xF3, 0x40 | ((r >> 3) << 2) | (base >> 3), 0x0F, 0x6F, modrm]), // movdqu xmm, [base]
    }
    g.code.extend_from_slice(&[0x48, 0x31, 0xC0]); // xor rax, rax: never reached
}

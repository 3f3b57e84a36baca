//! Lazy flags (DESIGN.md §4, QEMU's CC_OP scheme): the six status flags are computed from the
//! last flag-setting operation only when something reads them.

use crate::state::{rf, CcOp, CpuState};

/// Mask of an operand of `size` bytes.
#[inline]
pub fn mask(size: u32) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

/// The sign bit of an operand of `size` bytes.
#[inline]
pub fn sign_bit(size: u32) -> u64 {
    1u64 << (size * 8 - 1)
}

/// Sign-extend the low `size` bytes of `v`.
#[inline]
pub fn sext(v: u64, size: u32) -> u64 {
    let sh = 64 - size * 8;
    (((v << sh) as i64) >> sh) as u64
}

#[inline]
fn parity(v: u64) -> u64 {
    if (v as u8).count_ones() % 2 == 0 {
        rf::PF
    } else {
        0
    }
}

impl CpuState {
    /// Record a flag-setting operation (the result is masked to `size`).
    #[inline]
    pub fn set_cc(&mut self, op: CcOp, size: u32, dst: u64, src: u64, src2: u64) {
        self.cc_op = op as u32;
        self.cc_size = size;
        self.cc_dst = dst & mask(size);
        self.cc_src = src;
        self.cc_src2 = src2;
    }

    /// Set all six status flags from `flags` (other bits ignored).
    #[inline]
    pub fn set_status_flags(&mut self, flags: u64) {
        self.cc_op = CcOp::Eflags as u32;
        self.cc_src = flags & rf::STATUS;
    }

    /// The six status flags (CF, PF, AF, ZF, SF, OF) as RFLAGS bits.
    pub fn status_flags(&self) -> u64 {
        let size = self.cc_size;
        let m = mask(size);
        let sb = sign_bit(size);
        let dst = self.cc_dst;
        let src = self.cc_src;
        let zf_sf_pf = |d: u64| -> u64 {
            let d = d & m;
            (if d == 0 { rf::ZF } else { 0 }) | (if d & sb != 0 { rf::SF } else { 0 }) | parity(d)
        };
        let op = self.cc_op;
        if op == CcOp::Eflags as u32 {
            return src & rf::STATUS;
        }
        let op: CcOp = unsafe_ccop(op);
        match op {
            CcOp::Eflags => src & rf::STATUS,
            CcOp::Add | CcOp::Adc => {
                let cin = if op == CcOp::Adc { self.cc_src2 & 1 } else { 0 };
                let a = dst.wrapping_sub(src).wrapping_sub(cin) & m;
                let b = src & m;
                let cf = if cin != 0 { dst <= a } else { dst < a };
                let of = ((a ^ dst) & (b ^ dst) & sb) != 0;
                let af = (a ^ b ^ dst) & 0x10;
                (cf as u64) | zf_sf_pf(dst) | (if af != 0 { rf::AF } else { 0 }) | if of { rf::OF } else { 0 }
            }
            CcOp::Sub | CcOp::Sbb => {
                let bin = if op == CcOp::Sbb { self.cc_src2 & 1 } else { 0 };
                let a = dst.wrapping_add(src).wrapping_add(bin) & m;
                let b = src & m;
                let cf = if bin != 0 { a <= b } else { a < b };
                let of = ((a ^ b) & (a ^ dst) & sb) != 0;
                let af = (a ^ b ^ dst) & 0x10;
                (cf as u64) | zf_sf_pf(dst) | (if af != 0 { rf::AF } else { 0 }) | if of { rf::OF } else { 0 }
            }
            CcOp::Logic => zf_sf_pf(dst),
            CcOp::Inc | CcOp::Dec => {
                let (a, ofv) = if op == CcOp::Inc { (dst.wrapping_sub(1) & m, sb) } else { (dst.wrapping_add(1) & m, sb - 1) };
                let af = (a ^ 1 ^ dst) & 0x10;
                (src & rf::CF)
                    | zf_sf_pf(dst)
                    | (if af != 0 { rf::AF } else { 0 })
                    | if dst == ofv { rf::OF } else { 0 }
            }
            CcOp::Shl => {
                let cf = (src & sb) != 0;
                let of = cf ^ ((dst & sb) != 0);
                (cf as u64) | zf_sf_pf(dst) | if of { rf::OF } else { 0 }
            }
            CcOp::Shr => {
                let cf = src & 1;
                let of = (self.cc_src2 & sb) != 0;
                cf | zf_sf_pf(dst) | if of { rf::OF } else { 0 }
            }
            CcOp::Sar => (src & 1) | zf_sf_pf(dst),
            CcOp::Mul => {
                let o = if src != 0 { rf::CF | rf::OF } else { 0 };
                o | zf_sf_pf(dst)
            }
        }
    }

    /// CF alone (cheaper than [`CpuState::status_flags`] for ADC/SBB/RCL).
    #[inline]
    pub fn cf(&self) -> bool {
        self.status_flags() & rf::CF != 0
    }

    /// The full RFLAGS value.
    #[inline]
    pub fn get_rflags(&self) -> u64 {
        (self.rflags & !rf::STATUS) | self.status_flags() | rf::FIXED
    }

    /// Replace RFLAGS bits selected by `mask` with those of `v` (status flags included).
    pub fn set_rflags_masked(&mut self, v: u64, mask: u64) {
        let cur = self.get_rflags();
        let new = (cur & !mask) | (v & mask);
        self.set_status_flags(new);
        self.rflags = (new & !rf::STATUS) | rf::FIXED;
    }

    /// Evaluate condition code `cc` (0–15, the low nibble of Jcc/SETcc/CMOVcc opcodes).
    pub fn cond(&self, cc: u8) -> bool {
        // After CMP/SUB and TEST/AND/OR/XOR (most conditions tier 0 evaluates), straight from
        // the operands, without the other flags (PF goes the long way).
        let op = self.cc_op;
        if (op == CcOp::Sub as u32 || op == CcOp::Logic as u32) && cc >> 1 != 5 {
            let size = self.cc_size;
            let (m, sb) = (mask(size), sign_bit(size));
            let dst = self.cc_dst & m;
            let r = if op == CcOp::Logic as u32 {
                // CF = OF = 0.
                match cc >> 1 {
                    0 | 1 => false,
                    2 | 3 => dst == 0,
                    4 | 6 => dst & sb != 0,
                    _ => dst == 0 || dst & sb != 0,
                }
            } else {
                // dst = a - b.
                let b = self.cc_src & m;
                let a = dst.wrapping_add(b) & m;
                let (sa, sb_) = (sext(a, size) as i64, sext(b, size) as i64);
                match cc >> 1 {
                    0 => (a ^ b) & (a ^ dst) & sb != 0,
                    1 => a < b,
                    2 => dst == 0,
                    3 => a <= b,
                    4 => dst & sb != 0,
                    6 => sa < sb_,
                    _ => sa <= sb_,
                }
            };
            return r ^ (cc & 1 != 0);
        }
        let f = self.status_flags();
        let r = match cc >> 1 {
            0 => f & rf::OF != 0,
            1 => f & rf::CF != 0,
            2 => f & rf::ZF != 0,
            3 => f & (rf::CF | rf::ZF) != 0,
            4 => f & rf::SF != 0,
            5 => f & rf::PF != 0,
            6 => ((f & rf::SF) != 0) != ((f & rf::OF) != 0),
            _ => (f & rf::ZF != 0) || (((f & rf::SF) != 0) != ((f & rf::OF) != 0)),
        };
        r ^ (cc & 1 != 0)
    }
}

#[inline]
fn unsafe_ccop(v: u32) -> CcOp {
    match v {
        1 => CcOp::Add,
        2 => CcOp::Adc,
        3 => CcOp::Sub,
        4 => CcOp::Sbb,
        5 => CcOp::Logic,
        6 => CcOp::Inc,
        7 => CcOp::Dec,
        8 => CcOp::Shl,
        9 => CcOp::Shr,
        10 => CcOp::Sar,
        11 => CcOp::Mul,
        _ => CcOp::Eflags,
    }
}

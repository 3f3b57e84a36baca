//! SSE/SSE2 instructions lifted to scalar host code: the moves and the integer and bitwise
//! operations hot in compiled C (memcpy/memset, 7-Zip). Each XMM register is two 64-bit
//! halves in `CpuState::xmm`; none of these touch MXCSR. Checks in tier 0's order
//! (`heron-cpu/src/sse.rs`): #UD/#NM from CR0/CR4, then the memory operand's canonical form
//! and 16-byte alignment (#GP(0)), then the page walk.

use std::mem::offset_of;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{InstBuilder, Value};
use heron_cpu::state::{cr, CpuState};
use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};

use super::{Flow, Lifter, TRUSTED};

/// Byte offset of the low half of XMM register `r` in the state.
fn xmm_off(r: Register) -> i32 {
    (offset_of!(CpuState, xmm) + 16 * r.number()) as i32
}

impl Lifter<'_, '_> {
    /// Lift an SSE/SSE2 instruction of the supported set, or `None` (tier 0 runs it).
    pub(super) fn lift_sse(&mut self, i: &Instruction) -> Option<Flow> {
        let m = i.mnemonic();
        let ops = 0..i.op_count();
        // Only XMM forms (MMX registers switch the x87 unit to MMX mode: tier 0).
        if i.has_lock_prefix() || ops.clone().any(|n| i.op_kind(n) == OpKind::Register && i.op_register(n).is_mm()) {
            return None;
        }
        if !ops.clone().any(|n| i.op_kind(n) == OpKind::Register && i.op_register(n).is_xmm()) {
            return None;
        }
        let xmm0 = i.op_kind(0) == OpKind::Register && i.op_register(0).is_xmm();
        match m {
            M::Movaps | M::Movapd | M::Movdqa | M::Movups | M::Movupd | M::Movdqu => {
                if xmm0 {
                    self.sse_check();
                    let (lo, hi) = self.xmm_src(i, 1);
                    self.xmm_set(i.op_register(0), lo, hi);
                } else {
                    self.sse_check();
                    let aligned = !matches!(m, M::Movups | M::Movupd | M::Movdqu);
                    let la = self.xmm_la(i, aligned);
                    if !aligned {
                        // Both halves in one page, or tier 0 (which checks both pages before
                        // writing either): the first half must not be written when the
                        // second faults.
                        let off = self.b.ins().band_imm_s(la, 0xFFF);
                        let crosses = self.b.ins().icmp_imm_s(IntCC::UnsignedGreaterThan, off, 0xFF0);
                        self.tier0_if(crosses);
                    }
                    let (lo, hi) = self.xmm_get(i.op_register(1));
                    self.store(la, 8, lo);
                    let la8 = self.add_imm(la, 8);
                    self.store(la8, 8, hi);
                }
            }
            M::Movd | M::Movq => {
                self.sse_check();
                if xmm0 {
                    // MOVD/MOVQ xmm, r/m32/64 and MOVQ xmm, xmm/m64: zero the rest.
                    let lo = match i.op_kind(1) {
                        OpKind::Register if i.op_register(1).is_xmm() => self.xmm_get(i.op_register(1)).0,
                        OpKind::Register => self.get_reg(i.op_register(1)),
                        _ => {
                            let size = i.memory_size().size() as u32;
                            let la = self.lin(i);
                            self.load(la, size)
                        }
                    };
                    let z = self.iconst(0);
                    self.xmm_set(i.op_register(0), lo, z);
                } else {
                    let lo = self.xmm_get(i.op_register(1)).0;
                    match i.op_kind(0) {
                        OpKind::Register => self.set_reg(i.op_register(0), lo),
                        _ => {
                            let size = i.memory_size().size() as u32;
                            let la = self.lin(i);
                            self.store(la, size, lo);
                        }
                    }
                }
            }
            M::Pxor | M::Por | M::Pand | M::Pandn | M::Xorps | M::Xorpd | M::Orps | M::Orpd | M::Andps | M::Andpd | M::Andnps | M::Andnpd
            | M::Paddd | M::Paddq | M::Psubd | M::Psubq | M::Punpckldq | M::Punpcklqdq | M::Pshufd => {
                if !xmm0 {
                    return None;
                }
                self.sse_check();
                let d = i.op_register(0);
                // Same register as source: x ^ x and similar still read it (no shortcut
                // needed for correctness).
                let (b0, b1) = self.xmm_src(i, 1);
                let (a0, a1) = if m == M::Pshufd { (b0, b1) } else { self.xmm_get(d) };
                let ins = |l: &mut Self, a: Value, b: Value| -> Value {
                    match m {
                        M::Pxor | M::Xorps | M::Xorpd => l.b.ins().bxor(a, b),
                        M::Por | M::Orps | M::Orpd => l.b.ins().bor(a, b),
                        M::Pand | M::Andps | M::Andpd => l.b.ins().band(a, b),
                        M::Pandn | M::Andnps | M::Andnpd => l.b.ins().band_not(b, a),
                        M::Paddq => l.b.ins().iadd(a, b),
                        M::Psubq => l.b.ins().isub(a, b),
                        _ => {
                            // PADDD/PSUBD: two 32-bit lanes.
                            let op = |l: &mut Self, x: Value, y: Value| if m == M::Paddd { l.b.ins().iadd(x, y) } else { l.b.ins().isub(x, y) };
                            let lo = op(l, a, b);
                            let lo = l.zext32(lo);
                            let ah = l.b.ins().ushr_imm_s(a, 32);
                            let bh = l.b.ins().ushr_imm_s(b, 32);
                            let hi = op(l, ah, bh);
                            let hi = l.b.ins().ishl_imm_s(hi, 32);
                            l.b.ins().bor(lo, hi)
                        }
                    }
                };
                let (r0, r1) = match m {
                    M::Punpcklqdq => (a0, b0),
                    M::Punpckldq => {
                        // [a.d0, b.d0, a.d1, b.d1]
                        let ad0 = self.zext32(a0);
                        let bd0 = self.b.ins().ishl_imm_s(b0, 32);
                        let ad1 = self.b.ins().ushr_imm_s(a0, 32);
                        let bd1 = self.b.ins().ushr_imm_s(b0, 32);
                        let bd1 = self.b.ins().ishl_imm_s(bd1, 32);
                        (self.b.ins().bor(ad0, bd0), self.b.ins().bor(ad1, bd1))
                    }
                    M::Pshufd => {
                        let d = [self.zext32(b0), self.b.ins().ushr_imm_s(b0, 32), self.zext32(b1), self.b.ins().ushr_imm_s(b1, 32)];
                        let imm = i.immediate8() as usize;
                        let sel = |k: usize| d[(imm >> (2 * k)) & 3];
                        let (s0, s1, s2, s3) = (sel(0), sel(1), sel(2), sel(3));
                        let s1 = self.b.ins().ishl_imm_s(s1, 32);
                        let s3 = self.b.ins().ishl_imm_s(s3, 32);
                        (self.b.ins().bor(s0, s1), self.b.ins().bor(s2, s3))
                    }
                    _ => (ins(self, a0, b0), ins(self, a1, b1)),
                };
                self.xmm_set(d, r0, r1);
            }
            _ => return None,
        }
        Some(Flow::Next)
    }

    /// #UD when CR0.EM is set or CR4.OSFXSR clear, #NM when CR0.TS is set (checked at run time:
    /// a translation may be entered after the guest changed them).
    fn sse_check(&mut self) {
        let cr0 = self.b.ins().load(I64, TRUSTED, self.state, offset_of!(CpuState, cr0) as i32);
        let cr4 = self.b.ins().load(I64, TRUSTED, self.state, offset_of!(CpuState, cr4) as i32);
        let em = self.b.ins().band_imm_s(cr0, cr::CR0_EM as i64);
        let fx = self.b.ins().band_imm_s(cr4, cr::CR4_OSFXSR as i64);
        let em = self.b.ins().icmp_imm_s(IntCC::NotEqual, em, 0);
        let nofx = self.b.ins().icmp_imm_s(IntCC::Equal, fx, 0);
        let ud = self.b.ins().bor(em, nofx);
        self.tier0_if(ud);
        let ts = self.b.ins().band_imm_s(cr0, cr::CR0_TS as i64);
        let ts = self.b.ins().icmp_imm_s(IntCC::NotEqual, ts, 0);
        self.tier0_if(ts);
    }

    fn xmm_get(&mut self, r: Register) -> (Value, Value) {
        let off = xmm_off(r);
        (self.b.ins().load(I64, TRUSTED, self.state, off), self.b.ins().load(I64, TRUSTED, self.state, off + 8))
    }

    fn xmm_set(&mut self, r: Register, lo: Value, hi: Value) {
        let off = xmm_off(r);
        self.b.ins().store(TRUSTED, lo, self.state, off);
        self.b.ins().store(TRUSTED, hi, self.state, off + 8);
    }

    /// Linear address of a 16-byte memory operand; when `aligned`, a misaligned one leaves to
    /// tier 0 (which raises #GP(0), or #GP/#SS for a non-canonical address first; a
    /// non-canonical address misses the TLB, so the accesses' helpers leave to tier 0 too).
    fn xmm_la(&mut self, i: &Instruction, aligned: bool) -> Value {
        let la = self.lin(i);
        if aligned {
            let low = self.b.ins().band_imm_s(la, 15);
            let bad = self.b.ins().icmp_imm_s(IntCC::NotEqual, low, 0);
            self.tier0_if(bad);
        }
        la
    }

    /// Source operand `n`: an XMM register or a 16-byte memory operand (aligned except for
    /// MOVUPS/MOVUPD/MOVDQU), as two halves.
    fn xmm_src(&mut self, i: &Instruction, n: u32) -> (Value, Value) {
        if i.op_kind(n) == OpKind::Register {
            return self.xmm_get(i.op_register(n));
        }
        let aligned = !matches!(i.mnemonic(), M::Movups | M::Movupd | M::Movdqu);
        let la = self.xmm_la(i, aligned);
        let lo = self.load(la, 8);
        let la8 = self.add_imm(la, 8);
        let hi = self.load(la8, 8);
        (lo, hi)
    }
}

//! Tier 0's pre-decoded forms of the instructions it runs most: MOV, LEA, MOVZX/MOVSX, the
//! ALU operations, near branches, CALL/RET and PUSH/POP in 64-bit code (over 80% of what
//! Linux's kernel and user code run in tier 0). A block picks each instruction's form once,
//! when it is decoded, so running it needs no walk through iced-x86's operand accessors
//! (about half of tier 0's time went there). Everything else, and every form with a LOCK or
//! REP prefix, a high-byte register or a non-GPR register, runs through the generic
//! `Ctx::exec`; both use the same segmentation, TLB, stack and lazy-flag primitives, so the
//! semantics are one.

use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use crate::exec::{gpr, sreg_index, Ctx};
use crate::flags::{mask, sext};
use crate::mmu::canonical;
use crate::state::CcOp;
use crate::Res;

/// What a [`Fast`] instruction does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Op {
    /// Not pre-decoded: `Ctx::exec` runs it.
    Generic,
    Nop,
    Mov,
    Lea,
    Movzx,
    /// MOVSX and MOVSXD.
    Movsx,
    Add,
    Or,
    And,
    Sub,
    Xor,
    Cmp,
    Test,
    /// Jcc with its condition (`CpuState::cond` numbering: iced's `ConditionCode` − 1).
    Jcc(u8),
    Jmp,
    Call,
    Ret,
    Push,
    Pop,
}

/// Where an operand is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Opnd {
    None,
    /// General-purpose register 0–15 (no AH–BH).
    Reg(u8),
    /// The instruction's memory operand.
    Mem,
    /// `Fast::imm`.
    Imm,
}

/// No base or index register.
const NO_REG: u8 = 0xFF;

/// One pre-decoded instruction (32 bytes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fast {
    pub(crate) op: Op,
    /// Length in bytes: RIP advances by it.
    len: u8,
    /// Operand size in bytes (the destination's for MOVZX/MOVSX).
    size: u8,
    /// Source size in bytes of MOVZX/MOVSX.
    ssize: u8,
    dst: Opnd,
    src: Opnd,
    /// The memory operand: segment (`sreg` index), base and index registers (or [`NO_REG`]),
    /// log2 of the scale, 32-bit address size, displacement (absolute for RIP-relative).
    seg: u8,
    base: u8,
    index: u8,
    scale: u8,
    addr32: bool,
    disp: u64,
    /// Immediate (sign-extended, then truncated to `size`) or branch target.
    imm: u64,
}

const _: () = assert!(std::mem::size_of::<Fast>() == 32);

impl Fast {
    /// Run through `Ctx::exec`.
    pub(crate) const GENERIC: Fast = Fast { op: Op::Generic, len: 0, size: 0, ssize: 0, dst: Opnd::None, src: Opnd::None, seg: 0, base: NO_REG, index: NO_REG, scale: 0, addr32: false, disp: 0, imm: 0 };

    /// Length in bytes.
    #[inline]
    pub(crate) fn len(&self) -> u64 {
        self.len as u64
    }

    /// The form of `i`, decoded in code of `bits` bits.
    pub(crate) fn decode(i: &Instruction, bits: u32) -> Fast {
        Self::try_decode(i, bits).unwrap_or(Self::GENERIC)
    }

    fn try_decode(i: &Instruction, bits: u32) -> Option<Fast> {
        use Mnemonic as M;
        if bits != 64 || i.has_lock_prefix() || i.has_rep_prefix() || i.has_repne_prefix() {
            return None;
        }
        let mut f = Fast { len: i.len() as u8, ..Self::GENERIC };
        if i.is_jcc_short_or_near() {
            f.op = Op::Jcc(i.condition_code() as u8 - 1);
            return f.branch(i);
        }
        let spi = i.stack_pointer_increment();
        match i.mnemonic() {
            M::Nop => f.op = Op::Nop,
            M::Jmp => {
                f.op = Op::Jmp;
                return f.branch(i);
            }
            M::Call if spi == -8 => {
                f.op = Op::Call;
                return f.branch(i);
            }
            M::Ret if spi == 8 && i.op_count() == 0 => f.op = Op::Ret,
            M::Push if spi == -8 => {
                f.op = Op::Push;
                f.src = match i.op0_kind() {
                    OpKind::Register => Opnd::Reg(reg(i.op0_register(), 8)?),
                    OpKind::Immediate8to64 | OpKind::Immediate32to64 => {
                        f.imm = i.immediate(0);
                        Opnd::Imm
                    }
                    _ => return None,
                };
            }
            M::Pop if spi == 8 && i.op0_kind() == OpKind::Register => {
                f.op = Op::Pop;
                f.dst = Opnd::Reg(reg(i.op0_register(), 8)?);
            }
            M::Lea => {
                f.op = Op::Lea;
                f.size = reg_size(i.op0_register())?;
                f.dst = Opnd::Reg(reg(i.op0_register(), f.size)?);
                f.src = f.operand(i, 1)?;
            }
            m @ (M::Movzx | M::Movsx | M::Movsxd) => {
                f.op = if m == M::Movzx { Op::Movzx } else { Op::Movsx };
                f.size = reg_size(i.op0_register())?;
                f.dst = Opnd::Reg(reg(i.op0_register(), f.size)?);
                f.ssize = operand_size(i, 1)?;
                f.src = f.operand(i, 1)?;
            }
            m @ (M::Mov | M::Add | M::Or | M::And | M::Sub | M::Xor | M::Cmp | M::Test) => {
                f.op = match m {
                    M::Mov => Op::Mov,
                    M::Add => Op::Add,
                    M::Or => Op::Or,
                    M::And => Op::And,
                    M::Sub => Op::Sub,
                    M::Xor => Op::Xor,
                    M::Cmp => Op::Cmp,
                    _ => Op::Test,
                };
                f.size = operand_size(i, 0)?;
                f.dst = f.operand(i, 0)?;
                f.src = f.operand(i, 1)?;
                if f.dst == Opnd::Imm {
                    return None;
                }
            }
            _ => return None,
        }
        Some(f)
    }

    /// A near branch to a constant canonical target (a non-canonical one faults: generic).
    fn branch(mut self, i: &Instruction) -> Option<Fast> {
        if i.op0_kind() != OpKind::NearBranch64 || !canonical(i.near_branch_target()) {
            return None;
        }
        self.imm = i.near_branch_target();
        Some(self)
    }

    /// Operand `n` of `i`, with `self.size` already set (immediates are truncated to it).
    fn operand(&mut self, i: &Instruction, n: u32) -> Option<Opnd> {
        Some(match i.op_kind(n) {
            OpKind::Register => {
                let r = i.op_register(n);
                Opnd::Reg(reg(r, reg_size(r)?)?)
            }
            OpKind::Memory => {
                self.memory(i)?;
                Opnd::Mem
            }
            OpKind::Immediate8 | OpKind::Immediate16 | OpKind::Immediate32 | OpKind::Immediate64 | OpKind::Immediate8to16 | OpKind::Immediate8to32 | OpKind::Immediate8to64 | OpKind::Immediate32to64 => {
                self.imm = i.immediate(n) & mask(self.size as u32);
                Opnd::Imm
            }
            _ => return None,
        })
    }

    /// The memory operand's segment and address computation (as `Ctx::ea`).
    fn memory(&mut self, i: &Instruction) -> Option<()> {
        self.seg = sreg_index(i.memory_segment()) as u8;
        self.disp = i.memory_displacement64();
        match i.memory_base() {
            // iced resolved RIP-relative displacements against the instruction's address.
            Register::RIP => {}
            Register::EIP => self.disp &= 0xFFFF_FFFF,
            Register::None => {}
            r => {
                let size = reg_size(r).filter(|&s| s >= 4)?;
                self.base = reg(r, size)?;
                self.addr32 = size == 4;
            }
        }
        let x = i.memory_index();
        if x != Register::None {
            let size = reg_size(x).filter(|&s| s >= 4)?;
            self.index = reg(x, size)?;
            self.scale = i.memory_index_scale().trailing_zeros() as u8;
            self.addr32 |= size == 4;
        }
        Some(())
    }
}

/// Size in bytes of general-purpose register `r` (`None` for other registers).
fn reg_size(r: Register) -> Option<u8> {
    r.is_gpr().then(|| gpr(r).1 as u8)
}

/// Number of general-purpose register `r` of `size` bytes (`None` for AH–BH and others).
fn reg(r: Register, size: u8) -> Option<u8> {
    let (n, sz, hi) = gpr(r);
    (r.is_gpr() && !hi && sz == size as u32).then_some(n as u8)
}

/// Size in bytes of operand `n` (a GPR or memory; `None` otherwise).
fn operand_size(i: &Instruction, n: u32) -> Option<u8> {
    match i.op_kind(n) {
        OpKind::Register => reg_size(i.op_register(n)),
        OpKind::Memory => Some(i.memory_size().size() as u8).filter(|s| matches!(s, 1 | 2 | 4 | 8)),
        _ => None,
    }
}

impl Ctx<'_> {
    /// Effective address of `f`'s memory operand.
    #[inline]
    fn fast_ea(&self, f: &Fast) -> u64 {
        let mut a = f.disp;
        if f.base != NO_REG {
            a = a.wrapping_add(self.s.regs[f.base as usize]);
        }
        if f.index != NO_REG {
            a = a.wrapping_add(self.s.regs[f.index as usize] << f.scale);
        }
        if f.addr32 {
            a & 0xFFFF_FFFF
        } else {
            a
        }
    }

    /// Linear address of `f`'s memory operand for an access of `size` bytes.
    #[inline]
    fn fast_lin(&mut self, f: &Fast, size: u32, write: bool) -> Res<u64> {
        let ea = self.fast_ea(f);
        self.seg_lin(f.seg as usize, ea, size, write)
    }

    #[inline]
    fn fast_read(&mut self, f: &Fast, o: Opnd, size: u32) -> Res<u64> {
        match o {
            Opnd::Reg(r) => Ok(self.s.regs[r as usize] & mask(size)),
            Opnd::Mem => {
                let la = self.fast_lin(f, size, false)?;
                self.read_lin(la, size)
            }
            _ => Ok(f.imm),
        }
    }

    /// Execute pre-decoded `f` (not [`Op::Generic`]). RIP already points past it; on an
    /// exception the caller puts it back.
    #[inline(always)]
    pub(crate) fn exec_fast(&mut self, f: &Fast) -> Res<()> {
        let size = f.size as u32;
        match f.op {
            Op::Generic | Op::Nop => {}
            Op::Mov => {
                let v = self.fast_read(f, f.src, size)?;
                match f.dst {
                    Opnd::Reg(r) => self.set_reg_n(r as usize, size, v),
                    _ => {
                        let la = self.fast_lin(f, size, true)?;
                        self.write_lin(la, size, v)?;
                    }
                }
            }
            Op::Lea => {
                if let Opnd::Reg(r) = f.dst {
                    self.set_reg_n(r as usize, size, self.fast_ea(f) & mask(size));
                }
            }
            Op::Movzx | Op::Movsx => {
                let ssize = f.ssize as u32;
                let v = self.fast_read(f, f.src, ssize)?;
                let v = if f.op == Op::Movsx { sext(v, ssize) } else { v };
                if let Opnd::Reg(r) = f.dst {
                    self.set_reg_n(r as usize, size, v & mask(size));
                }
            }
            Op::Add | Op::Or | Op::And | Op::Sub | Op::Xor | Op::Cmp | Op::Test => {
                let writes = !matches!(f.op, Op::Cmp | Op::Test);
                let (a, la) = match f.dst {
                    Opnd::Reg(r) => (self.s.regs[r as usize] & mask(size), 0),
                    _ => {
                        let la = self.fast_lin(f, size, writes)?;
                        (self.read_lin(la, size)?, la)
                    }
                };
                let b = self.fast_read(f, f.src, size)?;
                let (r, cc) = match f.op {
                    Op::Add => (a.wrapping_add(b), CcOp::Add),
                    Op::Sub | Op::Cmp => (a.wrapping_sub(b), CcOp::Sub),
                    Op::And | Op::Test => (a & b, CcOp::Logic),
                    Op::Or => (a | b, CcOp::Logic),
                    _ => (a ^ b, CcOp::Logic),
                };
                let r = r & mask(size);
                if writes {
                    match f.dst {
                        Opnd::Reg(d) => self.set_reg_n(d as usize, size, r),
                        _ => self.write_lin(la, size, r)?,
                    }
                }
                self.s.set_cc(cc, size, r, b, 0);
            }
            Op::Jcc(cc) => {
                if self.s.cond(cc) {
                    self.s.rip = f.imm;
                }
            }
            Op::Jmp => self.s.rip = f.imm,
            Op::Call => {
                self.push(self.s.rip, 8)?;
                self.s.rip = f.imm;
            }
            Op::Ret => {
                let t = self.peek(0, 8)?;
                self.check_branch(t, 8)?;
                self.adjust_sp(8);
                self.s.rip = t;
            }
            Op::Push => {
                let v = self.fast_read(f, f.src, 8)?;
                self.push(v, 8)?;
            }
            Op::Pop => {
                let v = self.peek(0, 8)?;
                self.adjust_sp(8);
                if let Opnd::Reg(r) = f.dst {
                    self.s.regs[r as usize] = v;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    fn first(bytes: &[u8]) -> Fast {
        let i = Decoder::with_ip(64, bytes, 0x1000, DecoderOptions::NONE).decode();
        Fast::decode(&i, 64)
    }

    /// The forms that must stay generic: prefixes with extra semantics, high-byte and
    /// non-GPR registers, other code sizes, non-canonical targets, 16-bit pushes.
    #[test]
    fn unusual_forms_stay_generic() {
        let generic: &[&[u8]] = &[
            &[0xF0, 0x01, 0x03],       // lock add [rbx],eax
            &[0xF3, 0xC3],             // rep ret
            &[0x88, 0xE0],             // mov al,ah
            &[0x8C, 0xD8],             // mov eax,ds
            &[0x0F, 0x20, 0xD8],       // mov rax,cr3
            &[0x66, 0x50],             // push ax
            &[0xC2, 0x08, 0x00],       // ret 8
            &[0xFF, 0xE0],             // jmp rax
            &[0x0F, 0x01, 0xF8],       // swapgs
        ];
        for b in generic {
            assert_eq!(first(b).op, Op::Generic, "{b:02x?}");
        }
        let i = Decoder::with_ip(32, &[0x01, 0xC3], 0x1000, DecoderOptions::NONE).decode();
        assert_eq!(Fast::decode(&i, 32).op, Op::Generic, "32-bit code");
        // jmp rel32 from just below the canonical hole to beyond it.
        let i = Decoder::with_ip(64, &[0xE9, 0x00, 0x00, 0x00, 0x10], 0x7FFF_F000_0000, DecoderOptions::NONE).decode();
        assert_eq!(Fast::decode(&i, 64).op, Op::Generic, "non-canonical target");
    }

    #[test]
    fn common_forms_are_pre_decoded() {
        let fast: &[(&[u8], Op)] = &[
            (&[0x48, 0x89, 0xD8], Op::Mov),                   // mov rax,rbx
            (&[0x8B, 0x44, 0x8B, 0x10], Op::Mov),             // mov eax,[rbx+rcx*4+10h]
            (&[0x48, 0x8D, 0x05, 0x10, 0x00, 0x00, 0x00], Op::Lea), // lea rax,[rip+10h]
            (&[0x0F, 0xB6, 0x03], Op::Movzx),                 // movzx eax,byte [rbx]
            (&[0x48, 0x63, 0xC3], Op::Movsx),                 // movsxd rax,ebx
            (&[0x83, 0xC0, 0x01], Op::Add),                   // add eax,1
            (&[0x31, 0xC0], Op::Xor),                         // xor eax,eax
            (&[0x74, 0x02], Op::Jcc(4)),                      // je
            (&[0xE8, 0x00, 0x00, 0x00, 0x00], Op::Call),      // call rel32
            (&[0xC3], Op::Ret),
            (&[0x53], Op::Push),
            (&[0x6A, 0xFF], Op::Push),                        // push -1
            (&[0x5B], Op::Pop),
            (&[0x0F, 0x1F, 0x44, 0x00, 0x00], Op::Nop),
        ];
        for (b, op) in fast {
            let f = first(b);
            assert_eq!(f.op, *op, "{b:02x?}");
            assert_eq!(f.len as usize, b.len());
        }
        let f = first(&[0x6A, 0xFF]);
        assert_eq!(f.imm, u64::MAX, "push imm8 sign-extends to 64 bits");
        let f = first(&[0x67, 0x8B, 0x04, 0x8B]); // mov eax,[ebx+ecx*4]
        assert!(f.addr32 && f.scale == 2);
    }
}

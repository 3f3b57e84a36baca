//! The tier-0 interpreter: semantics of each instruction over iced-x86's decoded form
//! (Intel SDM Vol. 2). General-purpose instructions live here; system instructions in
//! `system.rs`, SSE in `sse.rs`, x87 in `x87.rs`.

use heron_softmmu::{Bus, GuestRam};
use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use crate::block::CodeMap;
use crate::flags::{mask, sext, sign_bit};
use crate::state::{rf, CcOp, CpuState};
use crate::state::sreg;
use crate::{vec, Exception, Res};

/// Maximum iterations of a REP string instruction before it yields (RIP stays on it, so it
/// resumes after pending interrupts, as the SDM allows: Vol. 2B "REP" Operation).
const REP_CHUNK: u64 = 16384;

/// Everything an instruction may touch while it executes.
pub struct Ctx<'a> {
    /// Architectural state.
    pub s: &'a mut CpuState,
    /// Guest RAM.
    pub ram: &'a mut GuestRam,
    /// RAM size in bytes (cached).
    pub ram_size: u64,
    /// Which physical pages hold decoded code.
    pub code: &'a mut CodeMap,
    /// Devices.
    pub bus: &'a mut dyn Bus,
    /// Code size of CS in bits (16, 32, 64), recomputed after mode changes.
    pub bits: u32,
    /// A store hit a page holding decoded code: end the block after this instruction.
    pub smc: bool,
    /// Port I/O or MMIO happened: return to the machine so devices can react.
    pub io_touched: bool,
    /// The instruction changed state that ends the block (mode, IF, CR writes...).
    pub end_block: bool,
    /// TLB misses (statistics).
    pub stats_tlb_miss: u64,
    /// The execution trace, when `--trace` is on.
    pub tracer: Option<&'a mut crate::trace::Tracer>,
    /// Lockstep check mode: every guest RAM write is recorded here (and the REP string fast
    /// paths, which write RAM directly, are off).
    pub wlog: Option<&'a mut Vec<crate::mmu::WriteRec>>,
    /// Debugger and guest breakpoints and watchpoints (see [`crate::debug`]).
    pub(crate) debug: crate::debug::DebugCtx<'a>,
}

/// Where an operand lives.
#[derive(Clone, Copy)]
pub enum Loc {
    /// A general-purpose register.
    Reg(Register),
    /// Memory at a linear address.
    Mem(u64),
}

/// Decompose a general-purpose register: (index in `regs`, size in bytes, is AH/CH/DH/BH).
#[inline]
pub fn gpr(r: Register) -> (usize, u32, bool) {
    let v = r as u32;
    let al = Register::AL as u32;
    let ax = Register::AX as u32;
    let eax = Register::EAX as u32;
    let rax = Register::RAX as u32;
    if v >= rax && v < rax + 16 {
        ((v - rax) as usize, 8, false)
    } else if v >= eax && v < eax + 16 {
        ((v - eax) as usize, 4, false)
    } else if v >= ax && v < ax + 16 {
        ((v - ax) as usize, 2, false)
    } else {
        let n = v - al;
        if (4..8).contains(&n) {
            ((n - 4) as usize, 1, true)
        } else if n < 4 {
            (n as usize, 1, false)
        } else {
            ((n - 4) as usize, 1, false)
        }
    }
}

/// Segment register index of an iced segment register.
#[inline]
pub fn sreg_index(r: Register) -> usize {
    match r {
        Register::ES => sreg::ES,
        Register::CS => sreg::CS,
        Register::SS => sreg::SS,
        Register::FS => sreg::FS,
        Register::GS => sreg::GS,
        _ => sreg::DS,
    }
}

impl Ctx<'_> {
    /// Record a port or MMIO access in the trace, if tracing.
    #[inline]
    pub fn trace_io(&mut self, what: &str, addr: u64, size: u32, value: u64) {
        if let Some(t) = self.tracer.as_deref_mut() {
            t.io(self.s.icount, what, addr, size, value);
        }
    }

    // ---- registers ----

    /// Read a general-purpose register (zero-extended).
    #[inline]
    pub fn get_reg(&self, r: Register) -> u64 {
        let (i, size, hi) = gpr(r);
        let v = self.s.regs[i];
        if hi {
            (v >> 8) & 0xFF
        } else {
            v & mask(size)
        }
    }

    /// Write a general-purpose register with x86 merging rules (32-bit writes zero-extend).
    #[inline]
    pub fn set_reg(&mut self, r: Register, v: u64) {
        let (i, size, hi) = gpr(r);
        let old = self.s.regs[i];
        self.s.regs[i] = match (size, hi) {
            (1, true) => (old & !0xFF00) | ((v & 0xFF) << 8),
            (1, false) => (old & !0xFF) | (v & 0xFF),
            (2, _) => (old & !0xFFFF) | (v & 0xFFFF),
            (4, _) => v & 0xFFFF_FFFF,
            _ => v,
        };
    }

    /// Write register number `i` (0–15) with operand size `size` bytes (no high-byte forms).
    #[inline]
    pub fn set_reg_n(&mut self, i: usize, size: u32, v: u64) {
        let old = self.s.regs[i];
        self.s.regs[i] = match size {
            1 => (old & !0xFF) | (v & 0xFF),
            2 => (old & !0xFFFF) | (v & 0xFFFF),
            4 => v & 0xFFFF_FFFF,
            _ => v,
        };
    }

    // ---- operands ----

    /// Size in bytes of operand `n`.
    #[inline]
    pub fn op_size(&self, i: &Instruction, n: u32) -> u32 {
        match i.op_kind(n) {
            OpKind::Register => gpr_size(i.op_register(n)),
            OpKind::Immediate8 | OpKind::Immediate8_2nd => 1,
            OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
            OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
            OpKind::Immediate64 | OpKind::Immediate8to64 | OpKind::Immediate32to64 => 8,
            _ => i.memory_size().size() as u32,
        }
    }

    /// Effective address (offset in its segment) of the memory operand.
    #[inline]
    pub fn ea(&self, i: &Instruction) -> u64 {
        let base = i.memory_base();
        let index = i.memory_index();
        let mut a = i.memory_displacement64();
        if base == Register::RIP || base == Register::EIP {
            // iced already resolved RIP-relative addresses against the decode IP = RIP.
            return if base == Register::EIP { a & 0xFFFF_FFFF } else { a };
        }
        let mut asz = 0;
        if base != Register::None {
            a = a.wrapping_add(self.get_reg(base));
            asz = gpr_size(base);
        }
        if index != Register::None {
            a = a.wrapping_add(self.get_reg(index) << i.memory_index_scale().trailing_zeros());
            if asz == 0 {
                asz = gpr_size(index);
            }
        }
        if asz == 0 {
            if self.bits == 64 {
                return a;
            }
            asz = i.memory_displ_size().max(2);
        }
        a & mask(asz)
    }

    /// Linear address of the memory operand for an access of `size` bytes.
    #[inline]
    pub fn mem_lin(&mut self, i: &Instruction, size: u32, write: bool) -> Res<u64> {
        let ea = self.ea(i);
        self.seg_lin(sreg_index(i.memory_segment()), ea, size, write)
    }

    /// Location of operand `n` (register or memory).
    #[inline]
    pub fn loc(&mut self, i: &Instruction, n: u32, size: u32, write: bool) -> Res<Loc> {
        if i.op_kind(n) == OpKind::Register {
            Ok(Loc::Reg(i.op_register(n)))
        } else {
            Ok(Loc::Mem(self.mem_lin(i, size, write)?))
        }
    }

    /// Read a location.
    #[inline]
    pub fn read_loc(&mut self, l: Loc, size: u32) -> Res<u64> {
        match l {
            Loc::Reg(r) => Ok(self.get_reg(r)),
            Loc::Mem(la) => self.read_lin(la, size),
        }
    }

    /// Write a location.
    #[inline]
    pub fn write_loc(&mut self, l: Loc, size: u32, v: u64) -> Res<()> {
        match l {
            Loc::Reg(r) => {
                self.set_reg(r, v);
                Ok(())
            }
            Loc::Mem(la) => self.write_lin(la, size, v),
        }
    }

    /// Read operand `n` as a `size`-byte value (immediates sign-extended then truncated).
    #[inline]
    pub fn read_op(&mut self, i: &Instruction, n: u32, size: u32) -> Res<u64> {
        match i.op_kind(n) {
            OpKind::Register => Ok(self.get_reg(i.op_register(n))),
            OpKind::Memory => {
                let la = self.mem_lin(i, size, false)?;
                self.read_lin(la, size)
            }
            _ => Ok(i.immediate(n) & mask(size)),
        }
    }

    /// Write operand `n`.
    #[inline]
    pub fn write_op(&mut self, i: &Instruction, n: u32, size: u32, v: u64) -> Res<()> {
        if i.op_kind(n) == OpKind::Register {
            self.set_reg(i.op_register(n), v);
            Ok(())
        } else {
            let la = self.mem_lin(i, size, true)?;
            self.write_lin(la, size, v)
        }
    }

    // ---- stack ----

    #[inline]
    fn sp_mask(&self) -> u64 {
        mask(self.s.stack_bits() / 8)
    }

    /// Push `size` bytes.
    pub fn push(&mut self, v: u64, size: u32) -> Res<()> {
        let m = self.sp_mask();
        let sp = self.s.regs[4].wrapping_sub(size as u64) & m;
        self.write_seg(sreg::SS, sp, size, v)?;
        self.s.regs[4] = (self.s.regs[4] & !m) | sp;
        Ok(())
    }

    /// Pop `size` bytes.
    pub fn pop(&mut self, size: u32) -> Res<u64> {
        let m = self.sp_mask();
        let sp = self.s.regs[4] & m;
        let v = self.read_seg(sreg::SS, sp, size)?;
        self.s.regs[4] = (self.s.regs[4] & !m) | (sp.wrapping_add(size as u64) & m);
        Ok(v)
    }

    /// Read the stack at RSP + `off` without popping.
    pub fn peek(&mut self, off: u64, size: u32) -> Res<u64> {
        let m = self.sp_mask();
        let sp = self.s.regs[4].wrapping_add(off) & m;
        self.read_seg(sreg::SS, sp, size)
    }

    /// Add `n` to the stack pointer, honouring the stack size.
    pub fn adjust_sp(&mut self, n: u64) {
        let m = self.sp_mask();
        self.s.regs[4] = (self.s.regs[4] & !m) | (self.s.regs[4].wrapping_add(n) & m);
    }

    /// Near jump to `target` (CS limit check outside 64-bit mode, canonical check inside).
    pub fn jump(&mut self, target: u64, size: u32) -> Res<()> {
        let t = target & mask(size);
        if self.bits == 64 {
            if !crate::mmu::canonical(t) {
                return Err(Exception::gp(0));
            }
        } else if t > self.s.seg[sreg::CS].limit as u64 {
            return Err(Exception::gp(0));
        }
        self.s.rip = t;
        Ok(())
    }

    /// Operand size of a branch or stack-using instruction (from iced's stack increment).
    #[inline]
    fn stack_opsize(i: &Instruction) -> u32 {
        i.stack_pointer_increment().unsigned_abs()
    }

    // ---- the dispatcher ----

    /// Execute one decoded instruction. RIP already points past it; on an exception the caller
    /// restores RIP to the instruction (faults) and delivers it.
    pub fn exec(&mut self, i: &Instruction) -> Res<()> {
        use Mnemonic as M;
        let m = i.mnemonic();
        if i.is_jcc_short_or_near() {
            if self.s.cond(i.condition_code() as u8 - 1) {
                let sz = self.bits.min(if i.op0_kind() == OpKind::NearBranch16 { 16 } else { 64 }) / 8;
                self.jump(i.near_branch_target(), sz)?;
            }
            return Ok(());
        }
        match m {
            M::Add | M::Or | M::Adc | M::Sbb | M::And | M::Sub | M::Xor | M::Cmp | M::Test => self.alu(i, m),
            M::Mov => self.mov(i),
            M::Lea => {
                let size = self.op_size(i, 0);
                let ea = self.ea(i);
                self.set_reg(i.op0_register(), ea & mask(size));
                Ok(())
            }
            M::Movzx | M::Movsx | M::Movsxd => {
                let dsize = self.op_size(i, 0);
                let ssize = self.op_size(i, 1);
                let v = self.read_op(i, 1, ssize)?;
                let v = if m == M::Movzx { v } else { sext(v, ssize) };
                self.set_reg(i.op0_register(), v & mask(dsize));
                Ok(())
            }
            M::Inc | M::Dec | M::Not | M::Neg => self.unary(i, m),
            M::Shl | M::Sal | M::Shr | M::Sar | M::Rol | M::Ror | M::Rcl | M::Rcr => self.shift(i, m),
            M::Shld | M::Shrd => self.shiftd(i, m),
            M::Mul | M::Imul => self.mul(i, m),
            M::Div | M::Idiv => self.div(i, m),
            M::Xchg => {
                let size = self.op_size(i, 0);
                let a = self.loc(i, 0, size, true)?;
                let b = self.loc(i, 1, size, true)?;
                let va = self.read_loc(a, size)?;
                let vb = self.read_loc(b, size)?;
                if let Loc::Mem(_) = a {
                    self.write_loc(a, size, vb)?;
                    self.write_loc(b, size, va)
                } else {
                    self.write_loc(b, size, va)?;
                    self.write_loc(a, size, vb)
                }
            }
            M::Cmpxchg => {
                let size = self.op_size(i, 0);
                let d = self.loc(i, 0, size, true)?;
                let dv = self.read_loc(d, size)?;
                let acc = self.s.regs[0] & mask(size);
                if acc == dv {
                    let src = self.read_op(i, 1, size)?;
                    self.write_loc(d, size, src)?;
                } else {
                    if let Loc::Mem(_) = d {
                        self.write_loc(d, size, dv)?;
                    }
                    self.set_reg_n(0, size, dv);
                }
                self.s.set_cc(CcOp::Sub, size, acc.wrapping_sub(dv), dv, 0);
                Ok(())
            }
            M::Cmpxchg8b | M::Cmpxchg16b => self.cmpxchg_wide(i, m == M::Cmpxchg16b),
            M::Xadd => {
                let size = self.op_size(i, 0);
                let d = self.loc(i, 0, size, true)?;
                let dv = self.read_loc(d, size)?;
                let sv = self.get_reg(i.op1_register());
                let r = dv.wrapping_add(sv) & mask(size);
                self.write_loc(d, size, r)?;
                self.set_reg(i.op1_register(), dv);
                if let Loc::Reg(_) = d {
                    self.set_reg(i.op0_register(), r);
                }
                self.s.set_cc(CcOp::Add, size, r, sv, 0);
                Ok(())
            }
            M::Bswap => {
                let r = i.op0_register();
                let v = self.get_reg(r);
                let nv = match gpr_size(r) {
                    8 => v.swap_bytes(),
                    4 => (v as u32).swap_bytes() as u64,
                    _ => 0, // BSWAP r16 is undefined; real CPUs give 0.
                };
                self.set_reg(r, nv);
                Ok(())
            }
            M::Push => {
                let size = Self::stack_opsize(i);
                let v = match i.op0_kind() {
                    OpKind::Register if is_sreg(i.op0_register()) => self.s.seg[sreg_index(i.op0_register())].selector as u64,
                    OpKind::Memory => self.read_op(i, 0, size)?,
                    OpKind::Register => self.get_reg(i.op0_register()),
                    _ => i.immediate(0),
                };
                if i.op0_kind() == OpKind::Register && is_sreg(i.op0_register()) && size > 2 {
                    // Pushing a segment register with a 32/64-bit operand writes only 16 bits
                    // on recent processors; writing the zero-extended value is also allowed.
                    return self.push(v, size);
                }
                self.push(v, size)
            }
            M::Pop => {
                let size = Self::stack_opsize(i);
                if i.op0_kind() == OpKind::Register && is_sreg(i.op0_register()) {
                    let v = self.peek(0, size)?;
                    let sr = sreg_index(i.op0_register());
                    self.load_seg(sr, v as u16)?;
                    self.adjust_sp(size as u64);
                    if sr == sreg::SS {
                        self.s.irq_inhibit = true;
                    }
                    return Ok(());
                }
                let v = self.peek(0, size)?;
                let old_sp = self.s.regs[4];
                self.adjust_sp(size as u64);
                if let Err(e) = self.write_op(i, 0, size, v) {
                    self.s.regs[4] = old_sp;
                    return Err(e);
                }
                Ok(())
            }
            M::Pushf | M::Pushfd | M::Pushfq => {
                let size = Self::stack_opsize(i);
                if self.s.rflags & rf::VM != 0 && self.iopl() < 3 {
                    return Err(Exception::gp(0));
                }
                let f = self.s.get_rflags() & !(rf::VM | rf::RF);
                self.push(f, size)
            }
            M::Popf | M::Popfd | M::Popfq => {
                let size = Self::stack_opsize(i);
                if self.s.rflags & rf::VM != 0 && self.iopl() < 3 {
                    return Err(Exception::gp(0));
                }
                let v = self.pop(size)?;
                self.write_flags(v, size);
                self.end_block = true;
                Ok(())
            }
            M::Pusha | M::Pushad => {
                let size = if m == M::Pushad { 4 } else { 2 };
                let sp = self.s.regs[4];
                for r in 0..8 {
                    let v = if r == 4 { sp } else { self.s.regs[r] };
                    self.push(v & mask(size), size)?;
                }
                Ok(())
            }
            M::Popa | M::Popad => {
                let size = if m == M::Popad { 4 } else { 2 };
                let mut vals = [0u64; 8];
                for k in 0..8 {
                    vals[7 - k] = self.peek((k as u64) * size as u64, size)?;
                }
                for r in 0..8 {
                    if r != 4 {
                        self.set_reg_n(r, size, vals[r]);
                    }
                }
                self.adjust_sp(8 * size as u64);
                Ok(())
            }
            M::Enter => self.enter(i),
            M::Leave => {
                let size = match i.code() {
                    iced_x86::Code::Leaveq => 8,
                    iced_x86::Code::Leaved => 4,
                    _ => 2,
                };
                let m2 = self.sp_mask();
                let bp = self.s.regs[5] & m2;
                let v = self.read_seg(sreg::SS, bp, size)?;
                self.s.regs[4] = (self.s.regs[4] & !m2) | (bp.wrapping_add(size as u64) & m2);
                self.set_reg_n(5, size, v);
                Ok(())
            }
            M::Jmp => match i.op0_kind() {
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                    let sz = if i.op0_kind() == OpKind::NearBranch16 { 2 } else { 8 };
                    self.jump(i.near_branch_target(), sz)
                }
                OpKind::FarBranch16 | OpKind::FarBranch32 => {
                    let off = if i.op0_kind() == OpKind::FarBranch16 { i.far_branch16() as u64 } else { i.far_branch32() as u64 };
                    self.far_jump(i.far_branch_selector(), off)
                }
                _ if is_far_mem(i) => {
                    let (sel, off) = self.read_far_ptr(i)?;
                    self.far_jump(sel, off)
                }
                _ => {
                    let size = self.op_size(i, 0);
                    let t = self.read_op(i, 0, size)?;
                    self.jump(t, size)
                }
            },
            M::Call => match i.op0_kind() {
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                    let size = Self::stack_opsize(i);
                    let ret = self.s.rip;
                    let t = i.near_branch_target();
                    self.check_branch(t, size)?;
                    self.push(ret, size)?;
                    self.jump(t, size)
                }
                OpKind::FarBranch16 | OpKind::FarBranch32 => {
                    let (off, size) = if i.op0_kind() == OpKind::FarBranch16 { (i.far_branch16() as u64, 2) } else { (i.far_branch32() as u64, 4) };
                    self.far_call(i.far_branch_selector(), off, size)
                }
                _ if is_far_mem(i) => {
                    let (sel, off) = self.read_far_ptr(i)?;
                    let size = (i.memory_size().size() as u32 - 2).max(2);
                    self.far_call(sel, off, size)
                }
                _ => {
                    let size = self.op_size(i, 0);
                    let t = self.read_op(i, 0, size)?;
                    let ret = self.s.rip;
                    self.check_branch(t, size)?;
                    self.push(ret, size)?;
                    self.jump(t, size)
                }
            },
            M::Ret => {
                let size = if self.bits == 64 && i.code_size() != iced_x86::CodeSize::Code16 {
                    if i.op_count() > 0 || i.stack_pointer_increment() > 0 { ret_size(i, 8) } else { 8 }
                } else {
                    ret_size(i, self.bits / 8)
                };
                let t = self.peek(0, size)?;
                self.check_branch(t, size)?;
                let extra = if i.op_count() > 0 { i.immediate(0) } else { 0 };
                self.adjust_sp(size as u64 + extra);
                self.jump(t, size)
            }
            M::Retf => {
                let extra = if i.op_count() > 0 { i.immediate(0) } else { 0 };
                let total = i.stack_pointer_increment() as u64;
                let size = ((total - extra) / 2) as u32;
                self.far_ret(size, extra)
            }
            M::Iret | M::Iretd | M::Iretq => {
                let size = match m {
                    M::Iret => 2,
                    M::Iretd => 4,
                    _ => 8,
                };
                self.iret(size)
            }
            M::Loop | M::Loope | M::Loopne | M::Jcxz | M::Jecxz | M::Jrcxz => {
                let asz = match i.op1_kind() {
                    _ if m == M::Jcxz => 2,
                    _ if m == M::Jecxz => 4,
                    _ if m == M::Jrcxz => 8,
                    _ => loop_asize(i, self.bits),
                };
                let c = self.s.regs[1] & mask(asz);
                let take = if matches!(m, M::Jcxz | M::Jecxz | M::Jrcxz) {
                    c == 0
                } else {
                    let c2 = c.wrapping_sub(1) & mask(asz);
                    self.set_reg_n(1, asz, c2);
                    c2 != 0
                        && match m {
                            M::Loope => self.s.cond(4),
                            M::Loopne => self.s.cond(5),
                            _ => true,
                        }
                };
                if take {
                    let sz = if i.op0_kind() == OpKind::NearBranch16 { 2 } else { 8 };
                    self.jump(i.near_branch_target(), sz)?;
                }
                Ok(())
            }
            M::Seto | M::Setno | M::Setb | M::Setae | M::Sete | M::Setne | M::Setbe | M::Seta | M::Sets | M::Setns
            | M::Setp | M::Setnp | M::Setl | M::Setge | M::Setle | M::Setg => {
                let v = self.s.cond(i.condition_code() as u8 - 1) as u64;
                self.write_op(i, 0, 1, v)
            }
            M::Cmovo | M::Cmovno | M::Cmovb | M::Cmovae | M::Cmove | M::Cmovne | M::Cmovbe | M::Cmova | M::Cmovs
            | M::Cmovns | M::Cmovp | M::Cmovnp | M::Cmovl | M::Cmovge | M::Cmovle | M::Cmovg => {
                let size = self.op_size(i, 0);
                let v = self.read_op(i, 1, size)?;
                let r = i.op0_register();
                if self.s.cond(i.condition_code() as u8 - 1) {
                    self.set_reg(r, v);
                } else if size == 4 {
                    // A 32-bit CMOV zero-extends its destination even when the condition fails.
                    let cur = self.get_reg(r);
                    self.set_reg(r, cur);
                }
                Ok(())
            }
            M::Bt | M::Bts | M::Btr | M::Btc => self.bit_test(i, m),
            M::Bsf | M::Bsr | M::Tzcnt | M::Lzcnt => {
                // TZCNT/LZCNT are not advertised (no BMI1/ABM): F3 0F BC/BD execute as BSF/BSR,
                // as on processors without those extensions.
                let size = self.op_size(i, 0);
                let v = self.read_op(i, 1, size)?;
                let f = self.s.status_flags() & !rf::ZF;
                if v == 0 {
                    self.s.set_status_flags(f | rf::ZF);
                } else {
                    let r = if matches!(m, M::Bsf | M::Tzcnt) { v.trailing_zeros() as u64 } else { 63 - v.leading_zeros() as u64 };
                    self.set_reg(i.op0_register(), r);
                    self.s.set_status_flags(f);
                }
                Ok(())
            }
            M::Popcnt => {
                let size = self.op_size(i, 0);
                let v = self.read_op(i, 1, size)?;
                self.set_reg(i.op0_register(), v.count_ones() as u64);
                self.s.set_status_flags(if v == 0 { rf::ZF } else { 0 });
                Ok(())
            }
            M::Cbw => {
                let v = sext(self.s.regs[0], 1);
                self.set_reg_n(0, 2, v);
                Ok(())
            }
            M::Cwde => {
                let v = sext(self.s.regs[0], 2);
                self.set_reg_n(0, 4, v);
                Ok(())
            }
            M::Cdqe => {
                self.s.regs[0] = sext(self.s.regs[0], 4);
                Ok(())
            }
            M::Cwd | M::Cdq | M::Cqo => {
                let size = match m {
                    M::Cwd => 2,
                    M::Cdq => 4,
                    _ => 8,
                };
                let v = if self.s.regs[0] & sign_bit(size) != 0 { u64::MAX } else { 0 };
                self.set_reg_n(2, size, v);
                Ok(())
            }
            M::Clc | M::Stc | M::Cmc => {
                let f = self.s.status_flags();
                let nf = match m {
                    M::Clc => f & !rf::CF,
                    M::Stc => f | rf::CF,
                    _ => f ^ rf::CF,
                };
                self.s.set_status_flags(nf);
                Ok(())
            }
            M::Cld => {
                self.s.rflags &= !rf::DF;
                Ok(())
            }
            M::Std => {
                self.s.rflags |= rf::DF;
                Ok(())
            }
            M::Lahf => {
                let f = self.s.get_rflags() & 0xFF;
                self.set_reg(Register::AH, f);
                Ok(())
            }
            M::Sahf => {
                let ah = (self.s.regs[0] >> 8) & 0xFF;
                let f = self.s.status_flags();
                self.s.set_status_flags((f & rf::OF) | (ah & (rf::CF | rf::PF | rf::AF | rf::ZF | rf::SF)));
                Ok(())
            }
            M::Nop | M::Pause | M::Endbr32 | M::Endbr64 | M::Lfence | M::Mfence | M::Sfence | M::Prefetchnta
            | M::Prefetcht0 | M::Prefetcht1 | M::Prefetcht2 | M::Prefetchw | M::Prefetch | M::Clflush | M::Clflushopt => {
                if matches!(m, M::Clflush | M::Clflushopt) {
                    // CLFLUSH faults like a byte read of its operand.
                    let la = self.mem_lin(i, 1, false)?;
                    self.read_lin(la, 1)?;
                }
                Ok(())
            }
            M::Xlatb => {
                let asz = match i.memory_base() {
                    Register::BX => 2,
                    Register::EBX => 4,
                    _ => 8,
                };
                let ea = (self.s.regs[3].wrapping_add(self.s.regs[0] & 0xFF)) & mask(asz);
                let v = self.read_seg(sreg_index(i.memory_segment()), ea, 1)?;
                self.set_reg_n(0, 1, v);
                Ok(())
            }
            M::Movsb | M::Movsw | M::Movsq | M::Stosb | M::Stosw | M::Stosd | M::Stosq | M::Lodsb | M::Lodsw
            | M::Lodsd | M::Lodsq | M::Cmpsb | M::Cmpsw | M::Cmpsq | M::Scasb | M::Scasw | M::Scasd | M::Scasq
            | M::Insb | M::Insw | M::Insd | M::Outsb | M::Outsw | M::Outsd => self.string(i, m),
            M::Movsd | M::Cmpsd if !matches!(i.op0_kind(), OpKind::Register | OpKind::Memory) => self.string(i, m),
            M::Aaa | M::Aas | M::Daa | M::Das | M::Aam | M::Aad | M::Salc => self.bcd(i, m),
            M::Int3 => Err(self.soft_int(3)),
            M::Int => Err(self.soft_int(i.immediate(0) as u8)),
            M::Into => {
                if self.s.status_flags() & rf::OF != 0 {
                    Err(self.soft_int(4))
                } else {
                    Ok(())
                }
            }
            M::Int1 => Err(self.soft_int(1)),
            M::Ud0 | M::Ud1 | M::Ud2 => Err(Exception::ud()),
            M::Bound => {
                let size = self.op_size(i, 0);
                let idx = sext(self.get_reg(i.op0_register()), size) as i64;
                let la = self.mem_lin(i, size * 2, false)?;
                let lo = sext(self.read_lin(la, size)?, size) as i64;
                let hi = sext(self.read_lin(la + size as u64, size)?, size) as i64;
                if idx < lo || idx > hi {
                    return Err(Exception::new(vec::BR));
                }
                Ok(())
            }
            _ => self.exec_system(i),
        }
    }

    /// #GP(0) unless `t` (truncated to `size` bytes) is a near-branch target this mode allows:
    /// canonical in 64-bit mode, within the CS limit otherwise.
    pub(crate) fn check_branch(&self, t: u64, size: u32) -> Res<()> {
        let t = t & mask(size);
        if self.bits == 64 {
            if !crate::mmu::canonical(t) {
                return Err(Exception::gp(0));
            }
        } else if t > self.s.seg[sreg::CS].limit as u64 {
            return Err(Exception::gp(0));
        }
        Ok(())
    }

    /// IOPL from RFLAGS.
    pub fn iopl(&self) -> u8 {
        ((self.s.rflags >> 12) & 3) as u8
    }

    /// POPF semantics: which bits may change depends on CPL and IOPL (SDM Vol. 2B POPF).
    pub fn write_flags(&mut self, v: u64, size: u32) {
        let cpl = self.s.cpl();
        let mut m = rf::STATUS | rf::TF | rf::DF | rf::NT;
        if size >= 4 {
            m |= rf::AC | rf::ID;
        }
        if cpl == 0 {
            m |= rf::IOPL;
        }
        if cpl <= self.iopl() {
            m |= rf::IF;
        }
        if size == 2 {
            m &= 0xFFFF;
        }
        let was_if = self.s.rflags & rf::IF;
        self.s.set_rflags_masked(v, m);
        if was_if == 0 && self.s.rflags & rf::IF != 0 {
            self.end_block = true;
        }
    }

    fn alu(&mut self, i: &Instruction, m: Mnemonic) -> Res<()> {
        use Mnemonic as M;
        let size = self.op_size(i, 0);
        let writes = !matches!(m, M::Cmp | M::Test);
        let d = self.loc(i, 0, size, writes)?;
        let a = self.read_loc(d, size)?;
        let b = self.read_op(i, 1, size)?;
        let mk = mask(size);
        let (r, op, src2) = match m {
            M::Add => (a.wrapping_add(b), CcOp::Add, 0),
            M::Adc => {
                let c = self.s.cf() as u64;
                (a.wrapping_add(b).wrapping_add(c), CcOp::Adc, c)
            }
            M::Sub | M::Cmp => (a.wrapping_sub(b), CcOp::Sub, 0),
            M::Sbb => {
                let c = self.s.cf() as u64;
                (a.wrapping_sub(b).wrapping_sub(c), CcOp::Sbb, c)
            }
            M::And | M::Test => (a & b, CcOp::Logic, 0),
            M::Or => (a | b, CcOp::Logic, 0),
            _ => (a ^ b, CcOp::Logic, 0),
        };
        let r = r & mk;
        if writes {
            self.write_loc(d, size, r)?;
        }
        self.s.set_cc(op, size, r, b, src2);
        Ok(())
    }

    fn mov(&mut self, i: &Instruction) -> Res<()> {
        // MOV to/from segment, control and debug registers.
        if i.op0_kind() == OpKind::Register {
            let r = i.op0_register();
            if is_sreg(r) {
                let v = self.read_op(i, 1, 2)?;
                let sr = sreg_index(r);
                if sr == sreg::CS {
                    return Err(Exception::ud());
                }
                self.load_seg(sr, v as u16)?;
                if sr == sreg::SS {
                    self.s.irq_inhibit = true;
                }
                return Ok(());
            }
            if r.is_cr() {
                return self.mov_to_cr(r, self.get_reg(i.op1_register()));
            }
            if r.is_dr() {
                return self.mov_to_dr(r, self.get_reg(i.op1_register()));
            }
            if i.op1_kind() == OpKind::Register {
                let r1 = i.op1_register();
                if r1.is_cr() {
                    let v = self.mov_from_cr(r1)?;
                    self.set_reg(r, v);
                    return Ok(());
                }
                if r1.is_dr() {
                    let v = self.mov_from_dr(r1)?;
                    self.set_reg(r, v);
                    return Ok(());
                }
                if is_sreg(r1) {
                    // MOV r32/r64, Sreg zero-extends the selector.
                    let v = self.s.seg[sreg_index(r1)].selector as u64;
                    let (n, sz, _) = gpr(r);
                    self.set_reg_n(n, sz, v);
                    return Ok(());
                }
            }
        } else if i.op1_kind() == OpKind::Register && is_sreg(i.op1_register()) {
            let v = self.s.seg[sreg_index(i.op1_register())].selector as u64;
            return self.write_op(i, 0, 2, v);
        }
        let size = self.op_size(i, 0);
        let v = self.read_op(i, 1, size)?;
        self.write_op(i, 0, size, v)
    }

    fn unary(&mut self, i: &Instruction, m: Mnemonic) -> Res<()> {
        use Mnemonic as M;
        let size = self.op_size(i, 0);
        let d = self.loc(i, 0, size, true)?;
        let a = self.read_loc(d, size)?;
        let mk = mask(size);
        match m {
            M::Inc | M::Dec => {
                let r = if m == M::Inc { a.wrapping_add(1) } else { a.wrapping_sub(1) } & mk;
                self.write_loc(d, size, r)?;
                let cf = self.s.status_flags() & rf::CF;
                self.s.set_cc(if m == M::Inc { CcOp::Inc } else { CcOp::Dec }, size, r, cf, 0);
            }
            M::Not => self.write_loc(d, size, !a & mk)?,
            _ => {
                let r = a.wrapping_neg() & mk;
                self.write_loc(d, size, r)?;
                self.s.set_cc(CcOp::Sub, size, r, a, 0);
            }
        }
        Ok(())
    }

    fn shift(&mut self, i: &Instruction, m: Mnemonic) -> Res<()> {
        use Mnemonic as M;
        let size = self.op_size(i, 0);
        let bits = size * 8;
        let d = self.loc(i, 0, size, true)?;
        let a = self.read_loc(d, size)?;
        let cnt_raw = if i.op_count() > 1 { self.read_op(i, 1, 1)? } else { 1 };
        let cnt = (cnt_raw & if size == 8 { 63 } else { 31 }) as u32;
        if cnt == 0 {
            // Count 0: no flags change (but a memory operand is still written back on real CPUs;
            // the value is unchanged so skip the write). A 32-bit register destination is still
            // written, so its upper half is cleared.
            if let Loc::Reg(_) = d {
                self.write_loc(d, size, a)?;
            }
            return Ok(());
        }
        let mk = mask(size);
        match m {
            M::Shl | M::Sal => {
                let r = if cnt >= 64 { 0 } else { (a << cnt) & mk };
                let pre = if cnt - 1 >= 64 { 0 } else { (a << (cnt - 1)) & mk };
                self.write_loc(d, size, r)?;
                self.s.set_cc(CcOp::Shl, size, r, pre, 0);
            }
            M::Shr => {
                let r = if cnt >= 64 { 0 } else { a >> cnt };
                let pre = if cnt - 1 >= 64 { 0 } else { a >> (cnt - 1) };
                self.write_loc(d, size, r)?;
                self.s.set_cc(CcOp::Shr, size, r, pre, a);
            }
            M::Sar => {
                let sa = sext(a, size) as i64;
                let r = (sa >> cnt.min(63)) as u64 & mk;
                let pre = (sa >> (cnt - 1).min(63)) as u64;
                self.write_loc(d, size, r)?;
                self.s.set_cc(CcOp::Sar, size, r, pre, 0);
            }
            M::Rol | M::Ror => {
                let c = cnt % bits;
                let r = if c == 0 {
                    a
                } else if m == M::Rol {
                    ((a << c) | (a >> (bits - c))) & mk
                } else {
                    ((a >> c) | (a << (bits - c))) & mk
                };
                self.write_loc(d, size, r)?;
                let mut f = self.s.status_flags() & !(rf::CF | rf::OF);
                let sb = sign_bit(size);
                if m == M::Rol {
                    let cf = r & 1;
                    f |= cf;
                    if ((r & sb != 0) as u64 ^ cf) != 0 {
                        f |= rf::OF;
                    }
                } else {
                    let cf = (r & sb != 0) as u64;
                    f |= cf;
                    let b2 = (r >> (bits - 2)) & 1;
                    if cf ^ b2 != 0 {
                        f |= rf::OF;
                    }
                }
                self.s.set_status_flags(f);
            }
            _ => {
                // RCL/RCR rotate through CF: (bits + 1)-bit rotation.
                let c = cnt % (bits + 1);
                let f0 = self.s.status_flags();
                let mut cf = f0 & rf::CF;
                let mut r = a;
                let sb = sign_bit(size);
                for _ in 0..c {
                    if m == M::Rcl {
                        let out = (r & sb != 0) as u64;
                        r = ((r << 1) | cf) & mk;
                        cf = out;
                    } else {
                        let out = r & 1;
                        r = (r >> 1) | if cf != 0 { sb } else { 0 };
                        cf = out;
                    }
                }
                self.write_loc(d, size, r)?;
                let mut f = (f0 & !(rf::CF | rf::OF)) | cf;
                let of = if m == M::Rcl { ((r & sb != 0) as u64) ^ cf } else { ((r >> (bits - 1)) ^ (r >> (bits - 2))) & 1 };
                if of != 0 {
                    f |= rf::OF;
                }
                self.s.set_status_flags(f);
            }
        }
        Ok(())
    }

    fn shiftd(&mut self, i: &Instruction, m: Mnemonic) -> Res<()> {
        let size = self.op_size(i, 0);
        let bits = size * 8;
        let d = self.loc(i, 0, size, true)?;
        let a = self.read_loc(d, size)?;
        let b = self.get_reg(i.op1_register());
        let cnt = (self.read_op(i, 2, 1)? & if size == 8 { 63 } else { 31 }) as u32;
        if cnt == 0 {
            // As for the other shifts: a 32-bit register destination is zero-extended.
            if let Loc::Reg(_) = d {
                self.write_loc(d, size, a)?;
            }
            return Ok(());
        }
        let mk = mask(size);
        // Operate on a 128-bit concatenation; counts above the width give undefined results.
        let (r, cf) = if m == Mnemonic::Shld {
            let wide = ((a as u128) << bits) | b as u128;
            let sh = wide << cnt;
            (((sh >> bits) as u64) & mk, ((wide >> (2 * bits - cnt)) & 1) as u64)
        } else {
            let wide = ((b as u128) << bits) | a as u128;
            let sh = wide >> cnt;
            ((sh as u64) & mk, ((wide >> (cnt - 1)) & 1) as u64)
        };
        self.write_loc(d, size, r)?;
        let sb = sign_bit(size);
        let mut f = 0;
        if r == 0 {
            f |= rf::ZF;
        }
        if r & sb != 0 {
            f |= rf::SF;
        }
        if (r as u8).count_ones() % 2 == 0 {
            f |= rf::PF;
        }
        f |= cf;
        if (r ^ a) & sb != 0 {
            f |= rf::OF;
        }
        self.s.set_status_flags(f);
        Ok(())
    }

    fn mul(&mut self, i: &Instruction, m: Mnemonic) -> Res<()> {
        let n = i.op_count();
        if n == 1 {
            let size = self.op_size(i, 0);
            let src = self.read_op(i, 0, size)?;
            let a = self.s.regs[0] & mask(size);
            let bits = size * 8;
            let (lo, hi, over) = if m == Mnemonic::Mul {
                let p = (a as u128) * (src as u128);
                let lo = p as u64 & mask(size);
                let hi = (p >> bits) as u64 & mask(size);
                (lo, hi, hi != 0)
            } else {
                let p = (sext(a, size) as i64 as i128) * (sext(src, size) as i64 as i128);
                let lo = p as u64 & mask(size);
                let hi = (p >> bits) as u64 & mask(size);
                (lo, hi, p != sext(lo, size) as i64 as i128)
            };
            if size == 1 {
                self.set_reg_n(0, 2, lo | (hi << 8));
            } else {
                self.set_reg_n(0, size, lo);
                self.set_reg_n(2, size, hi);
            }
            self.s.set_cc(CcOp::Mul, size, lo, over as u64, 0);
            return Ok(());
        }
        let size = self.op_size(i, 0);
        let (a, b) = if n == 2 {
            (self.get_reg(i.op0_register()), self.read_op(i, 1, size)?)
        } else {
            (self.read_op(i, 1, size)?, i.immediate(2) & mask(size))
        };
        let p = (sext(a, size) as i64 as i128) * (sext(b, size) as i64 as i128);
        let lo = p as u64 & mask(size);
        self.set_reg(i.op0_register(), lo);
        self.s.set_cc(CcOp::Mul, size, lo, (p != sext(lo, size) as i64 as i128) as u64, 0);
        Ok(())
    }

    fn div(&mut self, i: &Instruction, m: Mnemonic) -> Res<()> {
        let size = self.op_size(i, 0);
        let d = self.read_op(i, 0, size)?;
        if d & mask(size) == 0 {
            return Err(Exception::new(vec::DE));
        }
        let bits = size * 8;
        let (lo, hi) = if size == 1 { (self.s.regs[0] & 0xFF, (self.s.regs[0] >> 8) & 0xFF) } else { (self.s.regs[0] & mask(size), self.s.regs[2] & mask(size)) };
        let dividend = ((hi as u128) << bits) | lo as u128;
        let (q, r) = if m == Mnemonic::Div {
            let q = dividend / d as u128;
            if q > mask(size) as u128 {
                return Err(Exception::new(vec::DE));
            }
            (q as u64, (dividend % d as u128) as u64)
        } else {
            // Sign-extend the 2*bits dividend.
            let sh = 128 - 2 * bits;
            let sd = ((dividend << sh) as i128) >> sh;
            let dv = sext(d, size) as i64 as i128;
            let q = sd.checked_div(dv).ok_or(Exception::new(vec::DE))?;
            let r = sd.checked_rem(dv).ok_or(Exception::new(vec::DE))?;
            let min = -(1i128 << (bits - 1));
            let max = (1i128 << (bits - 1)) - 1;
            if q < min || q > max {
                return Err(Exception::new(vec::DE));
            }
            (q as u64 & mask(size), r as u64 & mask(size))
        };
        if size == 1 {
            self.set_reg_n(0, 2, q | (r << 8));
        } else {
            self.set_reg_n(0, size, q);
            self.set_reg_n(2, size, r);
        }
        Ok(())
    }

    fn bit_test(&mut self, i: &Instruction, m: Mnemonic) -> Res<()> {
        use Mnemonic as M;
        let size = self.op_size(i, 0);
        let bits = size as u64 * 8;
        let (d, bit) = if i.op1_kind() == OpKind::Register {
            let off = sext(self.get_reg(i.op1_register()), size) as i64;
            if i.op0_kind() == OpKind::Memory {
                // Register bit offsets address memory beyond the operand (SDM Vol. 2A BT).
                let ea = self.ea(i).wrapping_add(((off >> (bits.trailing_zeros())) * size as i64) as u64);
                let ea = if self.bits == 64 { ea } else { ea & 0xFFFF_FFFF };
                let la = self.seg_lin(sreg_index(i.memory_segment()), ea, size, m != M::Bt)?;
                (Loc::Mem(la), (off as u64) & (bits - 1))
            } else {
                (Loc::Reg(i.op0_register()), (off as u64) & (bits - 1))
            }
        } else {
            let b = i.immediate(1) & (bits - 1);
            (self.loc(i, 0, size, m != M::Bt)?, b)
        };
        let v = self.read_loc(d, size)?;
        let cf = (v >> bit) & 1;
        let nv = match m {
            M::Bts => v | (1 << bit),
            M::Btr => v & !(1 << bit),
            M::Btc => v ^ (1 << bit),
            _ => v,
        };
        if m != M::Bt {
            self.write_loc(d, size, nv)?;
        }
        let f = self.s.status_flags() & !rf::CF;
        self.s.set_status_flags(f | cf);
        Ok(())
    }

    fn cmpxchg_wide(&mut self, i: &Instruction, wide: bool) -> Res<()> {
        let half = if wide { 8 } else { 4 };
        let la = self.mem_lin(i, half * 2, true)?;
        if wide && la & 15 != 0 {
            return Err(Exception::gp(0));
        }
        let lo = self.read_lin(la, half)?;
        let hi = self.read_lin(la + half as u64, half)?;
        let m = mask(half);
        let f = self.s.status_flags() & !rf::ZF;
        if lo == self.s.regs[0] & m && hi == self.s.regs[2] & m {
            let (nl, nh) = (self.s.regs[3] & m, self.s.regs[1] & m);
            self.probe_write(la, half * 2)?;
            self.write_lin(la, half, nl)?;
            self.write_lin(la + half as u64, half, nh)?;
            self.s.set_status_flags(f | rf::ZF);
        } else {
            self.probe_write(la, half * 2)?;
            self.write_lin(la, half, lo)?;
            self.write_lin(la + half as u64, half, hi)?;
            self.set_reg_n(0, half, lo);
            self.set_reg_n(2, half, hi);
            self.s.set_status_flags(f);
        }
        Ok(())
    }

    fn enter(&mut self, i: &Instruction) -> Res<()> {
        let size = match i.code() {
            iced_x86::Code::Enterq_imm16_imm8 => 8,
            iced_x86::Code::Enterd_imm16_imm8 => 4,
            _ => 2,
        };
        let alloc = i.immediate(0) & 0xFFFF;
        let level = i.immediate(1) & 31;
        let m = self.sp_mask();
        let bp = self.s.regs[5];
        self.push(bp, size)?;
        let frame = self.s.regs[4] & m;
        if level > 0 {
            let mut b = bp;
            for _ in 1..level {
                b = b.wrapping_sub(size as u64);
                let v = self.read_seg(sreg::SS, b & m, size)?;
                self.push(v, size)?;
            }
            self.push(frame, size)?;
        }
        let sp = (self.s.regs[4].wrapping_sub(alloc)) & m;
        // The final stack pointer must be writable.
        self.seg_lin(sreg::SS, sp, 1, true)?;
        self.set_reg_n(5, size, frame);
        self.s.regs[4] = (self.s.regs[4] & !m) | sp;
        Ok(())
    }

    fn string(&mut self, i: &Instruction, m: Mnemonic) -> Res<()> {
        use Mnemonic as M;
        let size: u32 = match m {
            M::Movsb | M::Stosb | M::Lodsb | M::Cmpsb | M::Scasb | M::Insb | M::Outsb => 1,
            M::Movsw | M::Stosw | M::Lodsw | M::Cmpsw | M::Scasw | M::Insw | M::Outsw => 2,
            M::Movsd | M::Stosd | M::Lodsd | M::Cmpsd | M::Scasd | M::Insd | M::Outsd => 4,
            _ => 8,
        };
        // Address size from the implicit operands.
        let asz: u32 = {
            // The string operand is op0 for STOS/INS/MOVS/CMPS, op1 for LODS/OUTS/SCAS (whose
            // op0 is the accumulator).
            let k = if matches!(m, M::Stosb | M::Stosw | M::Stosd | M::Stosq | M::Insb | M::Insw | M::Insd) {
                i.op0_kind()
            } else if matches!(m, M::Lodsb | M::Lodsw | M::Lodsd | M::Lodsq | M::Outsb | M::Outsw | M::Outsd | M::Scasb | M::Scasw | M::Scasd | M::Scasq) {
                i.op1_kind()
            } else {
                i.op0_kind()
            };
            match k {
                OpKind::MemorySegSI | OpKind::MemorySegDI | OpKind::MemoryESDI => 2,
                OpKind::MemorySegESI | OpKind::MemorySegEDI | OpKind::MemoryESEDI => 4,
                _ => 8,
            }
        };
        let am = mask(asz);
        let rep = i.has_rep_prefix() || i.has_repe_prefix() || i.has_repne_prefix();
        let src_seg = sreg_index(i.memory_segment());
        let step = if self.s.rflags & rf::DF != 0 { (size as u64).wrapping_neg() } else { size as u64 };
        let is_io = matches!(m, M::Insb | M::Insw | M::Insd | M::Outsb | M::Outsw | M::Outsd);
        if is_io {
            let port = self.s.regs[2] as u16;
            self.check_io(port, size)?;
        }
        let mut n = 0u64;
        loop {
            if rep {
                if self.s.regs[1] & am == 0 {
                    break;
                }
                if n == REP_CHUNK {
                    // Yield: RIP back to this instruction; it resumes with the remaining count.
                    self.s.rip = i.ip();
                    self.end_block = true;
                    break;
                }
            }
            let si = self.s.regs[6] & am;
            let di = self.s.regs[7] & am;
            let mut stop = false;
            match m {
                M::Movsb | M::Movsw | M::Movsd | M::Movsq => {
                    if rep && self.rep_movs_fast(src_seg, size, asz, step)? {
                        continue;
                    }
                    let v = self.read_seg(src_seg, si, size)?;
                    self.write_seg(sreg::ES, di, size, v)?;
                    self.set_reg_n(6, asz, si.wrapping_add(step));
                    self.set_reg_n(7, asz, di.wrapping_add(step));
                }
                M::Stosb | M::Stosw | M::Stosd | M::Stosq => {
                    if rep && self.rep_stos_fast(size, asz, step)? {
                        continue;
                    }
                    let v = self.s.regs[0] & mask(size);
                    self.write_seg(sreg::ES, di, size, v)?;
                    self.set_reg_n(7, asz, di.wrapping_add(step));
                }
                M::Lodsb | M::Lodsw | M::Lodsd | M::Lodsq => {
                    let v = self.read_seg(src_seg, si, size)?;
                    self.set_reg_n(0, size, v);
                    self.set_reg_n(6, asz, si.wrapping_add(step));
                }
                M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq => {
                    let a = self.read_seg(src_seg, si, size)?;
                    let b = self.read_seg(sreg::ES, di, size)?;
                    self.s.set_cc(CcOp::Sub, size, a.wrapping_sub(b), b, 0);
                    self.set_reg_n(6, asz, si.wrapping_add(step));
                    self.set_reg_n(7, asz, di.wrapping_add(step));
                    stop = true;
                }
                M::Scasb | M::Scasw | M::Scasd | M::Scasq => {
                    let a = self.s.regs[0] & mask(size);
                    let b = self.read_seg(sreg::ES, di, size)?;
                    self.s.set_cc(CcOp::Sub, size, a.wrapping_sub(b), b, 0);
                    self.set_reg_n(7, asz, di.wrapping_add(step));
                    stop = true;
                }
                M::Insb | M::Insw | M::Insd => {
                    let la = self.seg_lin(sreg::ES, di, size, true)?;
                    self.probe_write(la, size)?;
                    let v = self.bus.pio_read(self.s.icount, self.s.regs[2] as u16, size as u8) as u64;
                    self.io_touched = true;
                    self.trace_io("in", self.s.regs[2] & 0xFFFF, size, v);
                    self.write_lin(la, size, v)?;
                    self.set_reg_n(7, asz, di.wrapping_add(step));
                }
                _ => {
                    let v = self.read_seg(src_seg, si, size)?;
                    self.bus.pio_write(self.s.icount, self.s.regs[2] as u16, size as u8, v as u32);
                    self.io_touched = true;
                    self.trace_io("out", self.s.regs[2] & 0xFFFF, size, v);
                    self.set_reg_n(6, asz, si.wrapping_add(step));
                }
            }
            n += 1;
            if !rep {
                break;
            }
            let c = (self.s.regs[1] & am).wrapping_sub(1) & am;
            self.set_reg_n(1, asz, c);
            if stop {
                let zf = self.s.cond(4);
                if (i.has_repe_prefix() && !zf) || (i.has_repne_prefix() && zf) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// REP MOVS within single RAM pages, forward or backward (DF), as one host copy per page.
    /// Returns false when the slow element-by-element path must run instead.
    fn rep_movs_fast(&mut self, src_seg: usize, size: u32, asz: u32, step: u64) -> Res<bool> {
        if self.wlog.is_some() || !self.debug.ranges.is_empty() {
            return Ok(false);
        }
        if self.smc {
            return Ok(false);
        }
        let back = (step as i64) < 0;
        let sz = size as u64;
        let am = mask(asz);
        let count = self.s.regs[1] & am;
        let si = self.s.regs[6] & am;
        let di = self.s.regs[7] & am;
        let sla = self.seg_lin(src_seg, si, size, false)?;
        let dla = self.seg_lin(sreg::ES, di, size, true)?;
        // Elements available in the current page in the direction of travel, and before the
        // offsets wrap around the address size.
        let room = |la: u64| if back { (la & 0xFFF) / sz + 1 } else { (0x1000 - (la & 0xFFF)) / sz };
        let wrap = if back { si.min(di) / sz + 1 } else { am.wrapping_sub(si.max(di)) / sz + 1 };
        let n = count.min(room(sla)).min(room(dla)).min(wrap);
        if n < 2 || (sla & (sz - 1)) + sz > 0x1000 || (dla & (sz - 1)) + sz > 0x1000 {
            return Ok(false);
        }
        let bytes = n * sz;
        // Offsets of the lowest element: the whole block must pass the limit checks.
        let (slo, dlo) = if back { (si - (n - 1) * sz, di - (n - 1) * sz) } else { (si, di) };
        let (shi, dhi) = (slo + bytes - sz, dlo + bytes - sz);
        self.seg_lin(src_seg, shi, size, false)?;
        self.seg_lin(sreg::ES, dhi, size, true)?;
        let slo_la = self.seg_lin(src_seg, slo, size, false)?;
        let dlo_la = self.seg_lin(sreg::ES, dlo, size, true)?;
        let user = self.s.cpl() == 3;
        let sp = self.host_ptr(slo_la, heron_softmmu::TlbKind::Read, user)?;
        let dp = self.host_ptr(dlo_la, heron_softmmu::TlbKind::Write, user)?;
        let (Some(sp), Some(dp)) = (sp, dp) else { return Ok(false) };
        // SAFETY: both blocks lie within single RAM pages mapped by the TLB (host_ptr on their
        // lowest byte; `room` keeps them inside the page). Overlap where the element order
        // matters (copying towards the not-yet-read source) is done element by element in
        // the architectural order, each element read whole before it is written (so a
        // distance smaller than the element size behaves as on hardware); otherwise a memmove
        // gives the same result.
        unsafe {
            let overlap_fwd = !back && dp > sp && (dp as u64) < sp as u64 + bytes;
            let overlap_back = back && dp < sp && (dp as u64) + bytes > sp as u64;
            let sz = size as usize;
            if overlap_fwd {
                for k in 0..n as usize {
                    std::ptr::copy(sp.add(k * sz), dp.add(k * sz), sz);
                }
            } else if overlap_back {
                for k in (0..n as usize).rev() {
                    std::ptr::copy(sp.add(k * sz), dp.add(k * sz), sz);
                }
            } else {
                std::ptr::copy(sp, dp, bytes as usize);
            }
        }
        let delta = if back { bytes.wrapping_neg() } else { bytes };
        self.set_reg_n(6, asz, si.wrapping_add(delta));
        self.set_reg_n(7, asz, di.wrapping_add(delta));
        self.set_reg_n(1, asz, count - n);
        Ok(true)
    }

    /// REP STOS within one RAM page as one host fill. Returns false for the slow path.
    fn rep_stos_fast(&mut self, size: u32, asz: u32, step: u64) -> Res<bool> {
        if self.wlog.is_some() || !self.debug.ranges.is_empty() {
            return Ok(false);
        }
        if step as i64 != size as i64 {
            return Ok(false);
        }
        let am = mask(asz);
        let count = self.s.regs[1] & am;
        let di = self.s.regs[7] & am;
        let dla = self.seg_lin(sreg::ES, di, size, true)?;
        let n = count.min((0x1000 - (dla & 0xFFF)) / size as u64).min(am.wrapping_sub(di) / size as u64 + 1);
        if n < 2 {
            return Ok(false);
        }
        let bytes = n * size as u64;
        self.seg_lin(sreg::ES, di + bytes - size as u64, size, true)?;
        let user = self.s.cpl() == 3;
        let Some(dp) = self.host_ptr(dla, heron_softmmu::TlbKind::Write, user)? else { return Ok(false) };
        let v = self.s.regs[0].to_le_bytes();
        // SAFETY: the range lies in one RAM page mapped writable by the TLB.
        unsafe {
            if size == 1 {
                std::ptr::write_bytes(dp, v[0], bytes as usize);
            } else {
                for k in 0..n as usize {
                    std::ptr::copy_nonoverlapping(v.as_ptr(), dp.add(k * size as usize), size as usize);
                }
            }
        }
        self.set_reg_n(7, asz, di + bytes);
        self.set_reg_n(1, asz, count - n);
        Ok(true)
    }

    /// Host pointer of linear `la` through the TLB (filling it), or None for non-RAM pages.
    fn host_ptr(&mut self, la: u64, kind: heron_softmmu::TlbKind, user: bool) -> Res<Option<*mut u8>> {
        if let Some(p) = self.s.tlb.lookup(user, kind, la, 1) {
            return Ok(Some(p));
        }
        self.translate(la, kind, user)?;
        Ok(self.s.tlb.lookup(user, kind, la, 1))
    }

    fn bcd(&mut self, i: &Instruction, m: Mnemonic) -> Res<()> {
        use Mnemonic as M;
        if self.bits == 64 {
            return Err(Exception::ud());
        }
        let f = self.s.status_flags();
        let al = self.s.regs[0] & 0xFF;
        let ah = (self.s.regs[0] >> 8) & 0xFF;
        let af = f & rf::AF != 0;
        let cf = f & rf::CF != 0;
        let szp = |v: u64| -> u64 {
            let v = v & 0xFF;
            (if v == 0 { rf::ZF } else { 0 }) | (if v & 0x80 != 0 { rf::SF } else { 0 }) | if v.count_ones() % 2 == 0 { rf::PF } else { 0 }
        };
        match m {
            M::Aaa | M::Aas => {
                if (al & 0xF) > 9 || af {
                    let ax = if m == M::Aaa { (self.s.regs[0] & 0xFFFF).wrapping_add(0x106) } else { (self.s.regs[0] & 0xFFFF).wrapping_sub(6).wrapping_sub(0x100) };
                    self.set_reg_n(0, 2, ax & 0xFF0F);
                    self.s.set_status_flags((f & !(rf::CF | rf::AF)) | rf::CF | rf::AF);
                } else {
                    self.set_reg_n(0, 1, al & 0xF);
                    self.s.set_status_flags(f & !(rf::CF | rf::AF));
                }
            }
            M::Daa | M::Das => {
                let mut nal = al;
                let mut ncf = false;
                let mut naf = false;
                if (al & 0xF) > 9 || af {
                    nal = if m == M::Daa { nal.wrapping_add(6) } else { nal.wrapping_sub(6) } & 0xFF;
                    ncf = cf || if m == M::Daa { al > 0xF9 } else { al < 6 };
                    naf = true;
                }
                if al > 0x99 || cf {
                    nal = if m == M::Daa { nal.wrapping_add(0x60) } else { nal.wrapping_sub(0x60) } & 0xFF;
                    ncf = true;
                }
                self.set_reg_n(0, 1, nal);
                self.s.set_status_flags(szp(nal) | if ncf { rf::CF } else { 0 } | if naf { rf::AF } else { 0 });
            }
            M::Aam => {
                let base = i.immediate(0) & 0xFF;
                if base == 0 {
                    return Err(Exception::new(vec::DE));
                }
                let nal = al % base;
                self.set_reg_n(0, 2, ((al / base) << 8) | nal);
                self.s.set_status_flags(szp(nal));
            }
            M::Aad => {
                let base = i.immediate(0) & 0xFF;
                let nal = (al + ah * base) & 0xFF;
                self.set_reg_n(0, 2, nal);
                self.s.set_status_flags(szp(nal));
            }
            _ => {
                let v = if cf { 0xFF } else { 0 };
                self.set_reg_n(0, 1, v);
            }
        }
        Ok(())
    }
}

/// Size in bytes of a general-purpose register.
#[inline]
pub fn gpr_size(r: Register) -> u32 {
    gpr(r).1
}

fn is_sreg(r: Register) -> bool {
    matches!(r, Register::ES | Register::CS | Register::SS | Register::DS | Register::FS | Register::GS)
}

fn is_far_mem(i: &Instruction) -> bool {
    use iced_x86::MemorySize as S;
    i.op0_kind() == OpKind::Memory && matches!(i.memory_size(), S::SegPtr16 | S::SegPtr32 | S::SegPtr64)
}

fn ret_size(i: &Instruction, default: u32) -> u32 {
    let extra = if i.op_count() > 0 { i.immediate(0) as i32 } else { 0 };
    let inc = i.stack_pointer_increment() - extra;
    if inc > 0 {
        inc as u32
    } else {
        default
    }
}

fn loop_asize(i: &Instruction, bits: u32) -> u32 {
    // iced encodes the counter register of LOOP as op1 when it has one; otherwise derive
    // from the code: LOOP uses CX/ECX/RCX by address size.
    if i.op_count() > 1 && i.op1_kind() == OpKind::Register {
        return gpr_size(i.op1_register());
    }
    bits / 8
}

// Keep CpuState's helpers reachable for the rest of the crate.
#[allow(dead_code)]
fn _assert_state(_: &CpuState) {}

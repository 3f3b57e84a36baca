//! Lifting one decoded 64-bit block to Cranelift IR (DESIGN.md §4, §5, §7).
//!
//! - Guest registers are SSA values within a block, loaded from [`CpuState`] at first use and
//!   stored as they are written (so exits and fault paths store none: fewer values live into
//!   them, 10% less compile time).
//! - Lazy flags: the last flag-setting operation is kept as SSA values ([`Cc::Known`]); a
//!   condition is computed only where read (`cmp`/`test` + `jcc` need no flags at all) and the
//!   lazy fields are stored only at exits.
//! - Memory: the TLB compare and addend are inline; a miss calls [`helper_load`]/
//!   [`helper_store`] through a stub that clobbers no register.
//! - Precise exceptions: an instruction's memory accesses and checks come before its register
//!   writes, so when an access is not plain RAM (a fault, MMIO, a store into code) or a check
//!   fails, the translation can leave with the state of the instruction's start and have tier
//!   0 run that instruction ([`helper_exec`]), which raises the fault or makes the access.
//! - Anything not lifted here runs through [`helper_exec`] (tier-0 semantics of that one
//!   instruction).

use std::mem::{offset_of, size_of};

use cranelift_codegen::ir::condcodes::{CondCode, IntCC};
use cranelift_codegen::ir::types::{I16, I32, I64, I8};
use cranelift_codegen::ir::{Block, BlockArg, InstBuilder, InstructionData, MemFlagsData, Opcode, SigRef, Value};
use cranelift_codegen::packed_option::ReservedValue;
use cranelift_frontend::{FunctionBuilder, Variable};
use heron_cpu::state::{rf, sreg, CcOp, CpuState, Segment};
use heron_cpu::tier1::{
    helper_exec, helper_flags, helper_load, helper_store, Helper, JitEnv, LinkSlot, ACCESS_USER,
};
use heron_softmmu::{Tlb, TlbEntry, TlbKind};
use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};

mod sse;

/// What the translation knows about the status flags at the current point.
#[derive(Clone, Copy)]
enum Cc {
    /// In the lazy fields of the state.
    Mem,
    /// In the lazy-flag variables (at the start of a region block: they carry the flags along
    /// branches inside the translation without touching memory).
    Vars,
    /// The last flag-setting operation, as values (QEMU's CC_OP with CC_DST/CC_SRC/CC_SRC2);
    /// `a` is the first operand where known, for fused compares. `stored`: already in the state.
    Known { op: CcOp, size: u32, dst: Value, src: Value, src2: Option<Value>, a: Option<Value>, stored: bool },
}

/// How the translation of one instruction ended.
enum Flow {
    /// Go on with the next instruction.
    Next,
    /// A direct branch: to `taken` if `cond` (always when `None`), else to `next`.
    Jump { cond: Option<Value>, taken: u64, next: u64 },
    /// An indirect branch to this RIP.
    Indirect(Value),
}

/// The lazy-flag variables.
struct CcVars {
    op: Variable,
    size: Variable,
    dst: Variable,
    src: Variable,
    src2: Variable,
}

/// The helpers translations call, each through a register-preserving stub of its own
/// (`Compiler::helper_stub`).
#[derive(Clone, Copy)]
pub(crate) enum HelperId {
    Exec,
    Load,
    Store,
    Flags,
}

impl HelperId {
    pub const ALL: [HelperId; 4] = [HelperId::Exec, HelperId::Load, HelperId::Store, HelperId::Flags];

    /// The helper, and how many arguments it takes after `env`.
    pub fn helper(self) -> (Helper, usize) {
        match self {
            HelperId::Exec => (helper_exec, 1),
            HelperId::Load => (helper_load, 2),
            HelperId::Store => (helper_store, 3),
            HelperId::Flags => (helper_flags, 0),
        }
    }
}

/// Builds the IR of one region.
pub(crate) struct Lifter<'a, 'f> {
    pub b: &'a mut FunctionBuilder<'f>,
    pub env: Value,
    pub state: Value,
    /// The helper stubs' addresses by [`HelperId`], and their signature (imported into the
    /// function at first use).
    stubs: [u64; HelperId::ALL.len()],
    stub_sig: Option<SigRef>,
    /// Guest registers already read or written in the current block (mainline values; the
    /// state always has them too: an instruction writes registers after its last memory
    /// access or check, so a fault path leaves the state of the faulting instruction's start).
    cache: [Option<Value>; 16],
    /// Values known to be zero-extended from this many bytes (1, 2 or 4): no `mov r32, r32`
    /// or AND needed to mask them to that size or more.
    zx: std::collections::HashMap<Value, u32>,
    /// [`Lifter::zext32`] results by operand, in the current region block (where they
    /// dominate what follows).
    zx_of: std::collections::HashMap<Value, Value>,
    /// Values made by [`Lifter::add_imm`]: `(x, c)` for `x + c`.
    offs: std::collections::HashMap<Value, (Value, i64)>,
    cc: Cc,
    ccv: CcVars,
    /// `icount` at the start of the current region block, and its variable.
    icount0: Value,
    ic: Variable,
    /// [`JitEnv::until`], loaded once.
    until: Variable,
    /// Instructions of the current block retired before the current one.
    k: u64,
    user: bool,
    /// The current instruction's way out to tier 0 (see [`Lifter::brif_tier0`]), once made.
    bail: Option<Block>,
    /// The shared exits: normal (params RIP, icount, link slot) with the flags in variables /
    /// in the state, to tier 0 (params instruction, icount) likewise, back to the run loop
    /// (params RIP, icount) likewise; and which were used.
    exits: [Block; 6],
    used_exits: [bool; 6],
    /// A link slot that is never linked, for exits without one.
    null_slot: u64,
    /// [`heron_cpu::tier1::JumpEntry::mode`] of this translation (the trampoline's lookup
    /// finds translations of the same mode only).
    pub mode_key: u32,
    cur: Instruction,
    /// Where `cur` lives as long as the translation (what [`helper_exec`] is given).
    cur_ptr: *const Instruction,
    /// The instruction after `cur` in the same block, if any.
    next: Option<Instruction>,
    /// Guest instructions lifted (the rest went to `helper_exec`).
    pub lifted: u64,
    /// Fresh link slots for exits to constant addresses, used from the end (none when the
    /// region spans pages).
    links: Vec<u64>,
    /// Stores try the TLB inline (off in the lockstep check, where the helper records them).
    pub inline_stores: bool,
    /// The region's blocks by guest address.
    targets: std::collections::HashMap<u64, Block>,
}

const TRUSTED: MemFlagsData = MemFlagsData::trusted();

fn mask(size: u32) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

fn gpr(r: Register) -> Option<(usize, u32, bool)> {
    if !r.is_gpr() {
        return None;
    }
    let size = r.size() as u32;
    let n = r.number();
    if size == 1 && r.is_gpr8() && (Register::AH..=Register::BH).contains(&r) {
        return Some((n - 4, 1, true));
    }
    Some((r.full_register().number(), size, false))
}

fn canonical(v: u64) -> bool {
    ((v << 16) as i64 >> 16) as u64 == v
}

fn reg_off(n: usize) -> i32 {
    (offset_of!(CpuState, regs) + 8 * n) as i32
}

fn tlb_off(user: bool, kind: TlbKind) -> i32 {
    let table = (user as usize * 3 + kind as usize) * heron_softmmu::tlb::TLB_SIZE * size_of::<TlbEntry>();
    (offset_of!(CpuState, tlb) + offset_of!(Tlb, tables) + table) as i32
}

impl<'a, 'f> Lifter<'a, 'f> {
    /// Start a function whose entry block has `env` and `state` as parameters.
    pub fn new(
        b: &'a mut FunctionBuilder<'f>,
        env: Value,
        state: Value,
        stubs: [u64; HelperId::ALL.len()],
        user: bool,
        links: Vec<u64>,
        null_slot: u64,
    ) -> Self {
        let ic = b.declare_var(I64);
        let until = b.declare_var(I64);
        let ccv = CcVars { op: b.declare_var(I32), size: b.declare_var(I32), dst: b.declare_var(I64), src: b.declare_var(I64), src2: b.declare_var(I64) };
        // Set at the start of each region block (`lift_region`).
        let icount0 = Value::reserved_value();
        let exits = std::array::from_fn(|n| {
            let blk = b.create_block();
            b.set_cold_block(blk);
            for _ in 0..if n < 2 { 3 } else { 2 } {
                b.append_block_param(blk, I64);
            }
            blk
        });
        Lifter {
            b,
            env,
            state,
            stubs,
            stub_sig: None,
            cache: [None; 16],
            zx: Default::default(),
            zx_of: Default::default(),
            offs: Default::default(),
            cc: Cc::Mem,
            ccv,
            icount0,
            ic,
            until,
            k: 0,
            user,
            bail: None,
            exits,
            used_exits: [false; 6],
            null_slot,
            mode_key: 0,
            cur: Instruction::default(),
            cur_ptr: std::ptr::null(),
            next: None,
            lifted: 0,
            links,
            inline_stores: true,
            targets: Default::default(),
        }
    }

    // ---- state ----

    fn full(&mut self, n: usize) -> Value {
        if let Some(v) = self.cache[n] {
            return v;
        }
        let v = self.b.ins().load(I64, TRUSTED, self.state, reg_off(n));
        self.cache[n] = Some(v);
        v
    }

    /// Write register `n`, in the state too (see `cache`).
    fn set_full(&mut self, n: usize, v: Value) {
        self.cache[n] = Some(v);
        self.b.ins().store(TRUSTED, v, self.state, reg_off(n));
    }

    fn iconst(&mut self, v: u64) -> Value {
        self.b.ins().iconst(I64, v as i64)
    }

    /// The value of `v` when it is a constant (Cranelift does not fold at `opt_level=none`).
    fn konst(&self, v: Value) -> Option<u64> {
        let dfg = &self.b.func.dfg;
        match dfg.value_def(v).inst().map(|i| dfg.insts[i]) {
            Some(InstructionData::UnaryImm { opcode: Opcode::Iconst, imm }) => Some(imm.bits() as u64),
            _ => None,
        }
    }

    /// `v + c` (64-bit), folded into a constant or into an earlier `x + c0` as `x + (c0 + c)`,
    /// so chains of address and counter arithmetic cost one `lea` and no materialized
    /// constants.
    fn add_imm(&mut self, v: Value, c: i64) -> Value {
        if let Some(k) = self.konst(v) {
            return self.iconst(k.wrapping_add(c as u64));
        }
        let (base, c) = match self.offs.get(&v) {
            Some(&(base, c0)) => (base, c0.wrapping_add(c)),
            None => (v, c),
        };
        if c == 0 {
            return base;
        }
        let r = self.b.ins().iadd_imm_s(base, c);
        self.offs.insert(r, (base, c));
        r
    }

    /// `a + b` (64-bit), through [`Lifter::add_imm`] when `b` is a constant.
    fn add(&mut self, a: Value, b: Value) -> Value {
        match self.konst(b) {
            Some(k) => self.add_imm(a, k as i64),
            None => self.b.ins().iadd(a, b),
        }
    }

    fn mask_to(&mut self, v: Value, size: u32) -> Value {
        match size {
            8.. => v,
            4 => self.zext32(v),
            _ if self.zx.get(&v).is_some_and(|&w| w <= size) => v,
            _ => match self.konst(v) {
                Some(k) => self.iconst(k & mask(size)),
                None => {
                    let r = self.b.ins().band_imm_s(v, mask(size) as i64);
                    self.zx.insert(r, size);
                    r
                }
            },
        }
    }

    /// The low 32 bits of `v`, zero-extended: one `mov r32, r32` on x86-64 (an AND with
    /// 0xFFFF_FFFF would load its mask from the constant pool).
    fn zext32(&mut self, v: Value) -> Value {
        if self.zx.contains_key(&v) {
            return v;
        }
        if let Some(&r) = self.zx_of.get(&v) {
            return r;
        }
        let r = match self.konst(v) {
            Some(k) => self.iconst(k & 0xFFFF_FFFF),
            None => {
                let t = self.b.ins().ireduce(I32, v);
                self.b.ins().uextend(I64, t)
            }
        };
        self.zx.insert(r, 4);
        self.zx_of.insert(v, r);
        r
    }

    /// The low 32 bits of `v` as an I32, for a 32-bit operation (whose result Cranelift
    /// zero-extends for free on x86-64): the operand of `v`'s zero-extension, or a constant.
    fn low32(&mut self, v: Value) -> Value {
        if let Some(k) = self.konst(v) {
            return self.b.ins().iconst(I32, k as u32 as i64);
        }
        let dfg = &self.b.func.dfg;
        if let Some(inst) = dfg.value_def(v).inst() {
            if let InstructionData::Unary { opcode: Opcode::Uextend, arg } = dfg.insts[inst] {
                if dfg.value_type(arg) == I32 {
                    return arg;
                }
            }
        }
        self.b.ins().ireduce(I32, v)
    }

    /// Sign-extend the low `size` bytes of `v` to 64 bits.
    fn sext(&mut self, v: Value, size: u32) -> Value {
        if size >= 8 {
            return v;
        }
        let sh = 64 - 8 * size as i64;
        let t = self.b.ins().ishl_imm_s(v, sh);
        self.b.ins().sshr_imm_s(t, sh)
    }

    /// A general register read, zero-extended from its size.
    fn get_reg(&mut self, r: Register) -> Value {
        let (n, size, hi) = gpr(r).expect("general register");
        let v = self.full(n);
        if hi {
            let t = self.b.ins().ushr_imm_s(v, 8);
            self.b.ins().band_imm_s(t, 0xFF)
        } else {
            self.mask_to(v, size)
        }
    }

    /// A general register write with x86's merging rules (32-bit writes zero-extend).
    fn set_reg(&mut self, r: Register, v: Value) {
        let (n, size, hi) = gpr(r).expect("general register");
        let nv = match (size, hi) {
            (8, _) => v,
            (4, _) => self.zext32(v),
            (1, true) => {
                let old = self.full(n);
                let o = self.b.ins().band_imm_s(old, !0xFF00i64);
                let lo = self.b.ins().band_imm_s(v, 0xFF);
                let sh = self.b.ins().ishl_imm_s(lo, 8);
                self.b.ins().bor(o, sh)
            }
            _ => {
                let old = self.full(n);
                let m = mask(size) as i64;
                let o = self.b.ins().band_imm_s(old, !m);
                let lo = self.b.ins().band_imm_s(v, m);
                self.b.ins().bor(o, lo)
            }
        };
        self.set_full(n, nv);
    }

    fn st32(&mut self, v: Value, off: usize) {
        self.b.ins().store(TRUSTED, v, self.state, off as i32);
    }

    /// Make the state's lazy-flag fields current.
    fn store_cc(&mut self) {
        match self.cc {
            Cc::Known { op, size, dst, src, src2, stored: false, a } => {
                let opv = self.b.ins().iconst(I32, op as i64);
                self.st32(opv, offset_of!(CpuState, cc_op));
                let sz = self.b.ins().iconst(I32, size as i64);
                self.st32(sz, offset_of!(CpuState, cc_size));
                self.st32(dst, offset_of!(CpuState, cc_dst));
                self.st32(src, offset_of!(CpuState, cc_src));
                if let Some(s2) = src2 {
                    self.st32(s2, offset_of!(CpuState, cc_src2));
                }
                self.cc = Cc::Known { op, size, dst, src, src2, a, stored: true };
            }
            Cc::Vars => {
                let v = [self.ccv.op, self.ccv.size, self.ccv.dst, self.ccv.src, self.ccv.src2];
                let offs = [offset_of!(CpuState, cc_op), offset_of!(CpuState, cc_size), offset_of!(CpuState, cc_dst), offset_of!(CpuState, cc_src), offset_of!(CpuState, cc_src2)];
                for (var, off) in v.into_iter().zip(offs) {
                    let x = self.b.use_var(var);
                    self.st32(x, off);
                }
                self.cc = Cc::Mem;
            }
            _ => {}
        }
    }

    /// Carry the flags into the lazy-flag variables (before a branch inside the region).
    fn cc_to_vars(&mut self) {
        match self.cc {
            Cc::Known { op, size, dst, src, src2, .. } => {
                let opv = self.b.ins().iconst(I32, op as i64);
                self.b.def_var(self.ccv.op, opv);
                let sz = self.b.ins().iconst(I32, size as i64);
                self.b.def_var(self.ccv.size, sz);
                self.b.def_var(self.ccv.dst, dst);
                self.b.def_var(self.ccv.src, src);
                if let Some(s2) = src2 {
                    self.b.def_var(self.ccv.src2, s2);
                }
            }
            Cc::Mem => self.load_cc_vars(),
            Cc::Vars => {}
        }
        self.cc = Cc::Vars;
    }

    fn load_cc_vars(&mut self) {
        let v = [(self.ccv.op, I32, offset_of!(CpuState, cc_op)), (self.ccv.size, I32, offset_of!(CpuState, cc_size))];
        for (var, ty, off) in v {
            let x = self.b.ins().load(ty, TRUSTED, self.state, off as i32);
            self.b.def_var(var, x);
        }
        let v = [(self.ccv.dst, offset_of!(CpuState, cc_dst)), (self.ccv.src, offset_of!(CpuState, cc_src)), (self.ccv.src2, offset_of!(CpuState, cc_src2))];
        for (var, off) in v {
            let x = self.b.ins().load(I64, TRUSTED, self.state, off as i32);
            self.b.def_var(var, x);
        }
    }

    /// Write back the lazy flags (the compile-time tracking is unchanged: used on side exits
    /// as well as before helpers). Registers are always written through.
    fn writeback(&mut self) {
        let cc = self.cc;
        self.store_cc();
        self.cc = cc;
    }

    fn store_icount(&mut self, retired: u64) {
        let v = self.add_imm(self.icount0, retired as i64);
        self.b.ins().store(TRUSTED, v, self.state, offset_of!(CpuState, icount) as i32);
    }

    /// Leave the translation after `retired` instructions of the current block with RIP =
    /// `rip`, through link slot `slot` if given (the shared exit returns the translation the
    /// slot holds, or 0 for the trampoline to look it up).
    fn exit(&mut self, rip: Value, retired: u64, slot: Option<u64>) {
        let ic = self.add_imm(self.icount0, retired as i64);
        let slot = self.iconst(slot.unwrap_or(self.null_slot));
        let target = self.shared_exit(0);
        self.b.ins().jump(target, &[BlockArg::Value(rip), BlockArg::Value(ic), BlockArg::Value(slot)]);
    }

    /// Shared exit `base` (0: normal, 2: to tier 0, 4: to the run loop) in its variant for where the flags are now:
    /// in variables (defined here from known values, without changing the tracking of the
    /// code that goes on) or in the state (`base + 1`).
    fn shared_exit(&mut self, base: usize) -> Block {
        let n = if matches!(self.cc, Cc::Mem) {
            base + 1
        } else {
            let saved = self.cc;
            self.cc_to_vars();
            self.cc = saved;
            base
        };
        self.used_exits[n] = true;
        self.exits[n]
    }

    /// Continue at guest address `target` after `retired` instructions of the current block:
    /// inside the region when it holds that block (checking the instruction budget and the
    /// exit request, as tier 0 does between blocks), else leave through a link slot.
    fn edge(&mut self, target: u64, retired: u64) {
        let Some(&blk) = self.targets.get(&target) else {
            let slot = self.links.pop();
            let rip = self.iconst(target);
            self.exit(rip, retired, slot);
            return;
        };
        let ic = self.add_imm(self.icount0, retired as i64);
        let until = self.b.use_var(self.until);
        let over = self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, ic, until);
        let (out, cont) = (self.b.create_block(), self.b.create_block());
        self.b.set_cold_block(out);
        if target <= self.cur.ip() {
            // A back-edge: a loop must also notice an exit request (two branches: cheaper
            // than combining the conditions).
            let check = self.b.create_block();
            self.b.ins().brif(over, out, &[], check, &[]);
            self.b.switch_to_block(check);
            let req = self.b.ins().load(I32, TRUSTED, self.state, offset_of!(CpuState, exit_request) as i32);
            self.b.ins().brif(req, out, &[], cont, &[]);
        } else {
            self.b.ins().brif(over, out, &[], cont, &[]);
        }
        self.b.switch_to_block(out);
        let rip = self.iconst(target);
        let exit = self.shared_exit(4);
        self.b.ins().jump(exit, &[BlockArg::Value(rip), BlockArg::Value(ic)]);
        self.b.switch_to_block(cont);
        self.cc_to_vars();
        self.b.def_var(self.ic, ic);
        self.b.ins().jump(blk, &[]);
    }

    /// Branch to the current instruction's way out to tier 0 if `cond`, else to `next` with
    /// `args` (the builder is then in no block). That way out leaves the translation with the
    /// state of the instruction's start (an instruction writes registers and flags only after
    /// its last memory access or check) and has tier 0 run it ([`helper_exec`]): it raises
    /// the instruction's fault, or makes its MMIO access or store into code and ends the
    /// block after it, exactly as tier 0 alone would.
    fn brif_tier0(&mut self, cond: Value, next: Block, args: &[BlockArg]) {
        let (bail, first) = match self.bail {
            Some(b) => (b, false),
            None => (self.b.create_block(), true),
        };
        self.b.ins().brif(cond, bail, &[], next, args);
        if first {
            self.bail = Some(bail);
            self.b.set_cold_block(bail);
            self.b.switch_to_block(bail);
            let ic = self.add_imm(self.icount0, self.k as i64);
            let insn = self.iconst(self.cur_ptr as u64);
            let target = self.shared_exit(2);
            self.b.ins().jump(target, &[BlockArg::Value(insn), BlockArg::Value(ic)]);
        }
    }

    /// Leave to tier 0 (as [`Lifter::brif_tier0`]) if `cond`, else go on.
    fn tier0_if(&mut self, cond: Value) {
        let cont = self.b.create_block();
        self.brif_tier0(cond, cont, &[]);
        self.b.switch_to_block(cont);
    }

    /// Emit the bodies of the shared exits that were used (at the end: the frontend finds
    /// each variable's value on every incoming edge).
    fn finish_exits(&mut self) {
        for (n, &blk) in self.exits.clone().iter().enumerate() {
            if !self.used_exits[n] {
                continue;
            }
            self.b.switch_to_block(blk);
            self.cc = if n % 2 == 0 { Cc::Vars } else { Cc::Mem };
            let params = self.b.block_params(blk).to_vec();
            self.writeback();
            if n >= 4 {
                // Back to the run loop (over the budget, or an exit request).
                self.b.ins().store(TRUSTED, params[0], self.state, offset_of!(CpuState, rip) as i32);
                self.b.ins().store(TRUSTED, params[1], self.state, offset_of!(CpuState, icount) as i32);
                let z = self.iconst(0);
                self.b.ins().store(TRUSTED, z, self.env, JitEnv::LAST_SLOT_OFFSET);
                self.b.ins().return_(&[z]);
                continue;
            }
            if n >= 2 {
                // Tier 0 sets RIP (past the instruction, or on it for a fault).
                self.b.ins().store(TRUSTED, params[1], self.state, offset_of!(CpuState, icount) as i32);
                self.call_helper(HelperId::Exec, &[params[0]]);
                let z = self.iconst(0);
                self.b.ins().return_(&[z]);
                continue;
            }
            self.b.ins().store(TRUSTED, params[0], self.state, offset_of!(CpuState, rip) as i32);
            self.b.ins().store(TRUSTED, params[1], self.state, offset_of!(CpuState, icount) as i32);
            self.b.ins().store(TRUSTED, params[2], self.env, JitEnv::LAST_SLOT_OFFSET);
            // A linked slot gives the next translation; 0 has the trampoline look it up.
            let mode = (tlb_off(self.user, TlbKind::Fetch) as u64) << 32 | self.mode_key as u64;
            let mode = self.iconst(mode);
            self.b.ins().store(TRUSTED, mode, self.env, JitEnv::EXIT_MODE_OFFSET);
            let t = self.b.ins().load(I64, TRUSTED, params[2], offset_of!(LinkSlot, target) as i32);
            self.b.ins().return_(&[t]);
        }
    }

    // ---- memory ----

    /// Call helper `h` with `args` through its stub (no register is clobbered); its result
    /// is then in [`JitEnv::result`].
    fn call_helper(&mut self, h: HelperId, args: &[Value]) {
        debug_assert_eq!(args.len(), h.helper().1);
        let sig = match self.stub_sig {
            Some(s) => s,
            None => {
                let s = self.b.import_signature(crate::stub_sig());
                self.stub_sig = Some(s);
                s
            }
        };
        for (k, &a) in args.iter().enumerate() {
            self.b.ins().store(TRUSTED, a, self.env, JitEnv::ARGS_OFFSET + 8 * k as i32);
        }
        let stub = self.b.ins().iconst(I64, self.stubs[h as usize] as i64);
        self.b.ins().call_indirect(sig, stub, &[self.env]);
    }

    /// [`JitEnv::result`], as the last helper left it.
    fn helper_result(&mut self) -> Value {
        self.b.ins().load(I64, TRUSTED, self.env, JitEnv::RESULT_OFFSET)
    }

    /// Entry address of the TLB slot for `la` in table `(user, kind)`, minus the table offset.
    fn tlb_slot(&mut self, la: Value) -> Value {
        debug_assert_eq!(size_of::<TlbEntry>(), 32);
        // ((la >> 12) & (TLB_SIZE - 1)) * 32, in two operations.
        let sh = self.b.ins().ushr_imm_s(la, 12 - 5);
        let off = self.b.ins().band_imm_s(sh, ((heron_softmmu::tlb::TLB_SIZE - 1) << 5) as i64);
        self.b.ins().iadd(self.state, off)
    }

    /// The helpers' `flags` for an access of `size` bytes.
    fn access_flags(&self, size: u32) -> u64 {
        (size | if self.user { ACCESS_USER } else { 0 }) as u64
    }

    /// The inline TLB probe for an access of `size` bytes at `la`: branches to a new fast
    /// block (where the builder is left, with the host address returned) on a hit of an
    /// access inside one page, else to the returned cold slow block; both go on at the
    /// returned join.
    fn tlb_probe(&mut self, la: Value, size: u32, kind: TlbKind, inline: bool) -> (Value, Block, Block) {
        let slot = self.tlb_slot(la);
        let off = tlb_off(self.user, kind);
        let hit = if inline {
            // The page of the access's last byte against the tag of `la`'s page: a hit
            // when the access lies in one page (misaligned ones too).
            let tag = self.b.ins().load(I64, TRUSTED, slot, off);
            let last = if size > 1 { self.add_imm(la, size as i64 - 1) } else { la };
            let masked = self.b.ins().band_imm_s(last, !0xFFF);
            self.b.ins().icmp(IntCC::Equal, masked, tag)
        } else {
            self.b.ins().iconst(I8, 0)
        };
        let (fast, slow, join) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        self.b.set_cold_block(slow);
        self.b.ins().brif(hit, fast, &[], slow, &[]);
        self.b.switch_to_block(fast);
        let addend = self.b.ins().load(I64, TRUSTED, slot, off + offset_of!(TlbEntry, addend) as i32);
        (self.b.ins().iadd(la, addend), slow, join)
    }

    /// Load `size` bytes at linear `la`, zero-extended.
    fn load(&mut self, la: Value, size: u32) -> Value {
        let (host, slow, join) = self.tlb_probe(la, size, TlbKind::Read, true);
        let v = self.b.append_block_param(join, I64);
        if size < 8 {
            self.zx.insert(v, size);
        }
        let fl = MemFlagsData::new().with_notrap();
        let fast = match size {
            1 => self.b.ins().uload8(I64, fl, host, 0),
            2 => self.b.ins().uload16(I64, fl, host, 0),
            4 => self.b.ins().uload32(fl, host, 0),
            _ => self.b.ins().load(I64, fl, host, 0),
        };
        self.b.ins().jump(join, &[BlockArg::Value(fast)]);

        self.b.switch_to_block(slow);
        let flags = self.iconst(self.access_flags(size));
        self.call_helper(HelperId::Load, &[la, flags]);
        let st = self.b.ins().load(I32, TRUSTED, self.env, JitEnv::STATUS_OFFSET);
        let slow_v = self.helper_result();
        self.brif_tier0(st, join, &[BlockArg::Value(slow_v)]);
        self.b.switch_to_block(join);
        v
    }

    /// Store the low `size` bytes of `v` at linear `la`.
    fn store(&mut self, la: Value, size: u32, v: Value) {
        let (host, slow, join) = self.tlb_probe(la, size, TlbKind::Write, self.inline_stores);
        let gm = MemFlagsData::new().with_notrap();
        match size {
            1 => self.b.ins().istore8(gm, v, host, 0),
            2 => self.b.ins().istore16(gm, v, host, 0),
            4 => self.b.ins().istore32(gm, v, host, 0),
            _ => self.b.ins().store(gm, v, host, 0),
        };
        self.b.ins().jump(join, &[]);

        self.b.switch_to_block(slow);
        let flags = self.iconst(self.access_flags(size));
        self.call_helper(HelperId::Store, &[la, v, flags]);
        let st = self.b.ins().load(I32, TRUSTED, self.env, JitEnv::STATUS_OFFSET);
        self.brif_tier0(st, join, &[]);
        self.b.switch_to_block(join);
    }

    /// Leave to tier 0 (which raises #GP(0)) unless the 64-bit address `t` is canonical.
    fn check_canonical(&mut self, t: Value) {
        let sh = self.b.ins().ishl_imm_s(t, 16);
        let sx = self.b.ins().sshr_imm_s(sh, 16);
        let bad = self.b.ins().icmp(IntCC::NotEqual, sx, t);
        self.tier0_if(bad);
    }

    // ---- operands ----

    /// Effective address plus segment base: the 64-bit linear address of the memory operand.
    fn lin(&mut self, i: &Instruction) -> Value {
        let a = self.ea(i);
        let seg = match i.memory_segment() {
            Register::FS => sreg::FS,
            Register::GS => sreg::GS,
            _ => return a,
        };
        let off = offset_of!(CpuState, seg) + seg * size_of::<Segment>() + offset_of!(Segment, base);
        let b = self.b.ins().load(I64, TRUSTED, self.state, off as i32);
        self.b.ins().iadd(a, b)
    }

    /// Effective address (offset in the segment) of the memory operand.
    fn ea(&mut self, i: &Instruction) -> Value {
        let base = i.memory_base();
        let index = i.memory_index();
        let disp = i.memory_displacement64();
        if base == Register::RIP {
            self.iconst(disp)
        } else if base == Register::EIP {
            self.iconst(disp & 0xFFFF_FFFF)
        } else {
            let mut a = None;
            let mut asz = 8;
            if base != Register::None {
                a = Some(self.get_reg(base));
                asz = base.size();
            }
            if index != Register::None {
                let v = self.get_reg(index);
                let sh = i.memory_index_scale().trailing_zeros() as i64;
                let v = if sh > 0 { self.b.ins().ishl_imm_s(v, sh) } else { v };
                a = Some(match a {
                    Some(a) => self.b.ins().iadd(a, v),
                    None => v,
                });
                asz = index.size();
            }
            let a = match a {
                Some(a) if disp == 0 => a,
                Some(a) => self.add_imm(a, disp as i64),
                None => self.iconst(disp),
            };
            if asz == 4 {
                self.zext32(a)
            } else {
                a
            }
        }
    }

    /// Read operand `n` (register, memory or immediate) as a `size`-byte value.
    fn read_op(&mut self, i: &Instruction, n: u32, size: u32) -> Value {
        match i.op_kind(n) {
            OpKind::Register => self.get_reg(i.op_register(n)),
            OpKind::Memory => {
                let la = self.lin(i);
                self.load(la, size)
            }
            _ => self.iconst(i.immediate(n) & mask(size)),
        }
    }

    fn op_size(i: &Instruction, n: u32) -> u32 {
        match i.op_kind(n) {
            OpKind::Register => i.op_register(n).size() as u32,
            OpKind::Immediate8 | OpKind::Immediate8_2nd => 1,
            OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
            OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
            OpKind::Immediate64 | OpKind::Immediate8to64 | OpKind::Immediate32to64 => 8,
            _ => i.memory_size().size() as u32,
        }
    }

    // ---- flags ----

    fn sign(&mut self, v: Value, size: u32) -> Value {
        let sh = 64 - 8 * size as i64;
        let t = self.b.ins().ishl_imm_s(v, sh);
        self.b.ins().icmp_imm_s(IntCC::SignedLessThan, t, 0)
    }

    /// Status flags as RFLAGS bits, computed by the helper from the stored lazy fields.
    fn flag_bits(&mut self) -> Value {
        if let Cc::Known { op: CcOp::Eflags, src, .. } = self.cc {
            return src;
        }
        self.store_cc();
        self.call_helper(HelperId::Flags, &[]);
        self.helper_result()
    }

    fn bit(&mut self, flags: Value, bit: u32) -> Value {
        let t = self.b.ins().ushr_imm_s(flags, bit as i64);
        let t = self.b.ins().band_imm_s(t, 1);
        self.b.ins().ireduce(I8, t)
    }

    /// CF as a 0/1 i64.
    fn cf(&mut self) -> Value {
        match self.cc {
            Cc::Known { op: CcOp::Sub, src, a: Some(a), .. } => {
                let c = self.b.ins().icmp(IntCC::UnsignedLessThan, a, src);
                self.b.ins().uextend(I64, c)
            }
            Cc::Known { op: CcOp::Add, dst, a: Some(a), .. } => {
                let c = self.b.ins().icmp(IntCC::UnsignedLessThan, dst, a);
                self.b.ins().uextend(I64, c)
            }
            Cc::Known { op: CcOp::Logic, .. } => self.iconst(0),
            Cc::Known { op: CcOp::Inc | CcOp::Dec, src, .. } => self.b.ins().band_imm_s(src, 1),
            _ => {
                let f = self.flag_bits();
                self.b.ins().band_imm_s(f, 1)
            }
        }
    }

    /// Condition `cc` (0–15, the low nibble of Jcc) as an i8 0/1.
    fn cond(&mut self, cc: u8) -> Value {
        let kind = cc >> 1;
        let r = match self.cc {
            Cc::Known { op: CcOp::Sub, size, dst, src, a: Some(a), .. } if kind != 5 => match kind {
                0 => {
                    // OF = ((a ^ b) & (a ^ r)) sign.
                    let x = self.b.ins().bxor(a, src);
                    let y = self.b.ins().bxor(a, dst);
                    let z = self.b.ins().band(x, y);
                    self.sign(z, size)
                }
                1 => self.b.ins().icmp(IntCC::UnsignedLessThan, a, src),
                2 => self.b.ins().icmp_imm_s(IntCC::Equal, dst, 0),
                3 => self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, a, src),
                4 => self.sign(dst, size),
                _ => {
                    let sh = 64 - 8 * size as i64;
                    let x = self.b.ins().ishl_imm_s(a, sh);
                    let y = self.b.ins().ishl_imm_s(src, sh);
                    let c = if kind == 6 { IntCC::SignedLessThan } else { IntCC::SignedLessThanOrEqual };
                    self.b.ins().icmp(c, x, y)
                }
            },
            Cc::Known { op: CcOp::Logic, size, dst, .. } if kind != 5 => match kind {
                0 | 1 => self.b.ins().iconst(I8, 0),
                2 | 3 => self.b.ins().icmp_imm_s(IntCC::Equal, dst, 0),
                4 | 6 => self.sign(dst, size),
                _ => {
                    let z = self.b.ins().icmp_imm_s(IntCC::Equal, dst, 0);
                    let s = self.sign(dst, size);
                    self.b.ins().bor(z, s)
                }
            },
            Cc::Known { op: CcOp::Add | CcOp::Inc | CcOp::Dec, size, dst, .. } if kind == 2 || kind == 4 => {
                if kind == 2 {
                    self.b.ins().icmp_imm_s(IntCC::Equal, dst, 0)
                } else {
                    self.sign(dst, size)
                }
            }
            _ => {
                let f = self.flag_bits();
                match kind {
                    0 => self.bit(f, 11),
                    1 => self.bit(f, 0),
                    2 => self.bit(f, 6),
                    3 => {
                        let t = self.b.ins().band_imm_s(f, 0x41);
                        self.b.ins().icmp_imm_s(IntCC::NotEqual, t, 0)
                    }
                    4 => self.bit(f, 7),
                    5 => self.bit(f, 2),
                    6 => {
                        let s = self.bit(f, 7);
                        let o = self.bit(f, 11);
                        self.b.ins().bxor(s, o)
                    }
                    _ => {
                        let s = self.bit(f, 7);
                        let o = self.bit(f, 11);
                        let l = self.b.ins().bxor(s, o);
                        let z = self.bit(f, 6);
                        self.b.ins().bor(l, z)
                    }
                }
            }
        };
        if cc & 1 != 0 {
            self.negate(r)
        } else {
            r
        }
    }

    /// Logical NOT of the i8 0/1 `r`: the complementary comparison when `r` is a compare (so
    /// that a branch on it stays one `cmp` + `jcc`).
    fn negate(&mut self, r: Value) -> Value {
        let dfg = &self.b.func.dfg;
        if let Some(inst) = dfg.value_def(r).inst() {
            if let InstructionData::IntCompare { cond, args, .. } = dfg.insts[inst] {
                return self.b.ins().icmp(cond.complement(), args[0], args[1]);
            }
        }
        self.b.ins().bxor_imm_s(r, 1)
    }

    fn set_cc(&mut self, op: CcOp, size: u32, dst: Value, src: Value, src2: Option<Value>, a: Option<Value>) {
        self.cc = Cc::Known { op, size, dst, src, src2, a, stored: false };
    }

    // ---- the region ----

    /// Lift a region (`blocks[0]` is the entry; the instructions' addresses stay valid as long
    /// as the translation) and close the function.
    pub fn lift_region(&mut self, blocks: &[&[Instruction]]) {
        let entry_ip = blocks[0][0].ip();
        let ir: Vec<Block> = blocks.iter().map(|_| self.b.create_block()).collect();
        for (blk, insns) in ir.iter().zip(blocks) {
            self.targets.insert(insns[0].ip(), *blk);
        }
        let ic = self.b.ins().load(I64, TRUSTED, self.state, offset_of!(CpuState, icount) as i32);
        self.b.def_var(self.ic, ic);
        let until = self.b.ins().load(I64, TRUSTED, self.env, JitEnv::UNTIL_OFFSET);
        self.b.def_var(self.until, until);
        // The entry block starts with the flags in variables when a branch inside the
        // region comes back to it.
        let loops_to_entry = blocks.iter().any(|b| {
            let l = b.last().expect("blocks are never empty");
            l.next_ip() == entry_ip || (l.is_jcc_short_or_near() || matches!(l.op0_kind(), OpKind::NearBranch64)) && l.near_branch_target() == entry_ip
        });
        if loops_to_entry {
            self.load_cc_vars();
        }
        self.b.ins().jump(ir[0], &[]);
        for (j, insns) in blocks.iter().enumerate() {
            self.b.switch_to_block(ir[j]);
            self.cc = if j == 0 && !loops_to_entry { Cc::Mem } else { Cc::Vars };
            self.icount0 = self.b.use_var(self.ic);
            self.cache = [None; 16];
            self.zx_of.clear();
            self.lift_block(insns);
        }
        self.finish_exits();
    }

    /// Lift one block of the region, ending in exits or branches to other region blocks.
    fn lift_block(&mut self, insns: &[Instruction]) {
        let n = insns.len();
        // The instruction after STI, MOV SS or POP SS runs in tier 0, which ends the interrupt
        // shadow (and the block) after it, as the interpreter does.
        let mut shadow = false;
        for (k, i) in insns.iter().enumerate() {
            self.k = k as u64;
            self.cur = *i;
            self.cur_ptr = i;
            self.next = insns.get(k + 1).copied();
            self.bail = None;
            let last = k + 1 == n;
            let retired = k as u64 + 1;
            let lifted = if shadow { None } else { self.lift(i) };
            shadow = i.mnemonic() == M::Sti || (matches!(i.mnemonic(), M::Mov | M::Pop) && i.op0_kind() == OpKind::Register && i.op0_register() == Register::SS);
            match lifted {
                Some(Flow::Jump { cond: Some(c), taken, next }) => {
                    self.lifted += 1;
                    let (bt, bn) = (self.b.create_block(), self.b.create_block());
                    self.b.ins().brif(c, bt, &[], bn, &[]);
                    let cc = self.cc;
                    self.b.switch_to_block(bt);
                    self.edge(taken, retired);
                    self.cc = cc;
                    self.b.switch_to_block(bn);
                    self.edge(next, retired);
                    return;
                }
                Some(Flow::Jump { cond: None, taken, .. }) => {
                    self.lifted += 1;
                    self.edge(taken, retired);
                    return;
                }
                Some(Flow::Indirect(rip)) => {
                    self.lifted += 1;
                    self.exit(rip, retired, None);
                    return;
                }
                Some(Flow::Next) => {
                    self.lifted += 1;
                    if last {
                        self.edge(i.next_ip(), retired);
                    }
                }
                None => {
                    self.call_exec(i);
                    if last {
                        // RIP and icount are already in the state.
                        let z = self.b.ins().iconst(I64, 0);
                        self.b.ins().return_(&[z]);
                    }
                }
            }
        }
    }

    /// Run `i` through tier 0.
    fn call_exec(&mut self, i: &Instruction) {
        self.writeback();
        self.cc = Cc::Mem;
        self.store_icount(self.k);
        let p = self.iconst(i as *const Instruction as u64);
        self.call_helper(HelperId::Exec, &[p]);
        let r = self.helper_result();
        let (out, cont) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(r, out, &[], cont, &[]);
        self.b.switch_to_block(out);
        let z = self.b.ins().iconst(I64, 0);
        self.b.ins().return_(&[z]);
        self.b.switch_to_block(cont);
        // The instruction may have changed any register or the flags.
        self.cache = [None; 16];
        self.cc = Cc::Mem;
    }

    /// SHL/SHR/SAR of the zero-extended `size`-byte value `a` by `cnt` (1–63, already masked;
    /// `c1` = `cnt` − 1; constants become immediate forms): the result, the operand shifted
    /// by `cnt` − 1 (where CF comes from), the CC_OP and its CC_SRC2 (the original operand for
    /// SHR's OF).
    fn shift(&mut self, m: M, a: Value, size: u32, cnt: Value, c1: Value) -> (Value, Value, CcOp, Option<Value>) {
        match m {
            M::Shl | M::Sal => {
                let r = self.b.ins().ishl(a, cnt);
                let p = self.b.ins().ishl(a, c1);
                (self.mask_to(r, size), self.mask_to(p, size), CcOp::Shl, None)
            }
            M::Shr => (self.b.ins().ushr(a, cnt), self.b.ins().ushr(a, c1), CcOp::Shr, Some(a)),
            _ => {
                let sa = self.sext(a, size);
                let r = self.b.ins().sshr(sa, cnt);
                let p = self.b.ins().sshr(sa, c1);
                (self.mask_to(r, size), p, CcOp::Sar, None)
            }
        }
    }

    /// A shift or rotate of a general register by CL.
    fn count_in_cl(i: &Instruction) -> bool {
        i.op_count() == 2 && i.op1_kind() == OpKind::Register && i.op1_register() == Register::CL && i.op0_kind() == OpKind::Register && i.op0_register().is_gpr()
    }

    /// The next instruction of the block overwrites all six status flags without reading
    /// them and cannot fault (a register/immediate ALU operation), so nobody can observe the
    /// flags the current instruction leaves: they need not be computed.
    fn flags_dead_after(&self) -> bool {
        use iced_x86::RflagsBits as F;
        const ALL: u32 = F::OF | F::SF | F::ZF | F::AF | F::CF | F::PF;
        let Some(n) = self.next else { return false };
        matches!(n.mnemonic(), M::Add | M::Sub | M::And | M::Or | M::Xor | M::Cmp | M::Test)
            && (0..n.op_count()).all(|k| n.op_kind(k) != OpKind::Memory)
            && n.rflags_read() & ALL == 0
            && n.rflags_modified() & ALL == ALL
    }

    fn ok_dst(i: &Instruction) -> bool {
        match i.op0_kind() {
            OpKind::Register => i.op0_register().is_gpr(),
            OpKind::Memory => true,
            _ => false,
        }
    }

    fn ok_src(i: &Instruction, n: u32) -> bool {
        match i.op_kind(n) {
            OpKind::Register => i.op_register(n).is_gpr(),
            OpKind::Memory => i.op0_kind() != OpKind::Memory,
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => true,
            _ => false,
        }
    }

    /// Write `v` to operand 0 (`la` when it is memory).
    fn write_dst(&mut self, i: &Instruction, la: Option<Value>, size: u32, v: Value) {
        match la {
            Some(la) => self.store(la, size, v),
            None => self.set_reg(i.op0_register(), v),
        }
    }

    /// Read operand 0 for a read-modify-write: (value, linear address if memory).
    fn read_dst(&mut self, i: &Instruction, size: u32) -> (Value, Option<Value>) {
        if i.op0_kind() == OpKind::Memory {
            let la = self.lin(i);
            (self.load(la, size), Some(la))
        } else {
            (self.get_reg(i.op0_register()), None)
        }
    }

    fn branch_target(i: &Instruction) -> Option<u64> {
        matches!(i.op0_kind(), OpKind::NearBranch64).then(|| i.near_branch_target()).filter(|t| canonical(*t))
    }

    /// Lift one instruction; `None` when it is left to tier 0 (nothing was emitted).
    fn lift(&mut self, i: &Instruction) -> Option<Flow> {
        let m = i.mnemonic();
        if i.has_lock_prefix() && i.op0_kind() != OpKind::Memory {
            return None; // #UD: tier 0 raises it.
        }
        if i.is_jcc_short_or_near() {
            let t = Self::branch_target(i)?;
            let c = self.cond(i.condition_code() as u8 - 1);
            return Some(Flow::Jump { cond: Some(c), taken: t, next: i.next_ip() });
        }
        match m {
            _ if (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Register && i.op_register(n).is_xmm()) => self.lift_sse(i),
            M::Add | M::Or | M::Adc | M::Sbb | M::And | M::Sub | M::Xor | M::Cmp | M::Test => {
                if !Self::ok_dst(i) || !Self::ok_src(i, 1) {
                    return None;
                }
                let size = Self::op_size(i, 0);
                let writes = !matches!(m, M::Cmp | M::Test);
                if m == M::Xor && i.op0_kind() == OpKind::Register && i.op1_kind() == OpKind::Register && i.op0_register() == i.op1_register() {
                    let z = self.iconst(0);
                    self.set_reg(i.op0_register(), z);
                    self.set_cc(CcOp::Logic, size, z, z, None, None);
                    return Some(Flow::Next);
                }
                let (a, la) = self.read_dst(i, size);
                let b = self.read_op(i, 1, size);
                let (r, op, src2) = match m {
                    M::Add | M::Sub | M::Cmp | M::And | M::Test | M::Or | M::Xor if size == 4 => {
                        // In 32 bits: the result needs no zero-extension of its own.
                        let (x, y) = (self.low32(a), self.low32(b));
                        let (r, op) = match m {
                            M::Add => (self.b.ins().iadd(x, y), CcOp::Add),
                            M::Sub | M::Cmp => (self.b.ins().isub(x, y), CcOp::Sub),
                            M::And | M::Test => (self.b.ins().band(x, y), CcOp::Logic),
                            M::Or => (self.b.ins().bor(x, y), CcOp::Logic),
                            _ => (self.b.ins().bxor(x, y), CcOp::Logic),
                        };
                        let r = self.b.ins().uextend(I64, r);
                        self.zx.insert(r, 4);
                        (r, op, None)
                    }
                    M::Add => (self.add(a, b), CcOp::Add, None),
                    M::Adc => {
                        let c = self.cf();
                        let t = self.b.ins().iadd(a, b);
                        (self.b.ins().iadd(t, c), CcOp::Adc, Some(c))
                    }
                    M::Sub | M::Cmp => match self.konst(b) {
                        Some(k) => (self.add_imm(a, (k as i64).wrapping_neg()), CcOp::Sub, None),
                        None => (self.b.ins().isub(a, b), CcOp::Sub, None),
                    },
                    M::Sbb => {
                        let c = self.cf();
                        let t = self.b.ins().isub(a, b);
                        (self.b.ins().isub(t, c), CcOp::Sbb, Some(c))
                    }
                    M::And | M::Test => (self.b.ins().band(a, b), CcOp::Logic, None),
                    M::Or => (self.b.ins().bor(a, b), CcOp::Logic, None),
                    _ => (self.b.ins().bxor(a, b), CcOp::Logic, None),
                };
                let r = self.mask_to(r, size);
                if writes {
                    self.write_dst(i, la, size, r);
                }
                let keep_a = matches!(op, CcOp::Add | CcOp::Sub).then_some(a);
                self.set_cc(op, size, r, b, src2, keep_a);
                Some(Flow::Next)
            }
            M::Mov => {
                let size = Self::op_size(i, 0);
                if !Self::ok_dst(i) || !Self::ok_src(i, 1) {
                    return None;
                }
                let v = self.read_op(i, 1, size);
                if i.op0_kind() == OpKind::Memory {
                    let la = self.lin(i);
                    self.store(la, size, v);
                } else {
                    self.set_reg(i.op0_register(), v);
                }
                Some(Flow::Next)
            }
            M::Movzx | M::Movsx | M::Movsxd => {
                if !i.op0_register().is_gpr() || !Self::ok_src(i, 1) {
                    return None;
                }
                let dsize = Self::op_size(i, 0);
                let ssize = Self::op_size(i, 1);
                let v = self.read_op(i, 1, ssize);
                let v = if m == M::Movzx { v } else { self.sext(v, ssize) };
                let v = self.mask_to(v, dsize);
                self.set_reg(i.op0_register(), v);
                Some(Flow::Next)
            }
            M::Lea => {
                if !i.op0_register().is_gpr() {
                    return None;
                }
                let size = Self::op_size(i, 0);
                // LEA computes the offset only: no segment base.
                let ea = self.ea(i);
                let ea = self.mask_to(ea, size);
                self.set_reg(i.op0_register(), ea);
                Some(Flow::Next)
            }
            M::Inc | M::Dec | M::Not | M::Neg => {
                if !Self::ok_dst(i) {
                    return None;
                }
                let size = Self::op_size(i, 0);
                let cf = matches!(m, M::Inc | M::Dec).then(|| self.cf());
                let (a, la) = self.read_dst(i, size);
                let r = match m {
                    M::Inc => self.add_imm(a, 1),
                    M::Dec => self.add_imm(a, -1),
                    M::Not => self.b.ins().bnot(a),
                    _ => self.b.ins().ineg(a),
                };
                let r = self.mask_to(r, size);
                self.write_dst(i, la, size, r);
                match m {
                    M::Inc => self.set_cc(CcOp::Inc, size, r, cf.unwrap(), None, None),
                    M::Dec => self.set_cc(CcOp::Dec, size, r, cf.unwrap(), None, None),
                    M::Neg => {
                        let z = self.iconst(0);
                        self.set_cc(CcOp::Sub, size, r, a, None, Some(z));
                    }
                    _ => {}
                }
                Some(Flow::Next)
            }
            M::Shl | M::Sal | M::Shr | M::Sar if Self::count_in_cl(i) => {
                // Count in CL (register destination): a masked count of 0 changes nothing,
                // not even the flags, so the flag state is selected at run time.
                let size = Self::op_size(i, 0);
                let a = self.get_reg(i.op0_register());
                let cl = self.get_reg(Register::CL);
                let cnt = self.b.ins().band_imm_s(cl, if size == 8 { 63 } else { 31 });
                let c1 = self.b.ins().iadd_imm_s(cnt, -1);
                let (r, pre, op, src2) = self.shift(m, a, size, cnt, c1);
                let zero = self.b.ins().icmp_imm_s(IntCC::Equal, cnt, 0);
                let out = self.b.ins().select(zero, a, r);
                self.set_reg(i.op0_register(), out);
                if !self.flags_dead_after() {
                    self.cc_to_vars();
                    let op = self.b.ins().iconst(I32, op as i64);
                    let sz = self.b.ins().iconst(I32, size as i64);
                    let new = [(self.ccv.op, op), (self.ccv.size, sz), (self.ccv.dst, r), (self.ccv.src, pre), (self.ccv.src2, src2.unwrap_or(a))];
                    for (var, v) in new {
                        let old = self.b.use_var(var);
                        let x = self.b.ins().select(zero, old, v);
                        self.b.def_var(var, x);
                    }
                }
                Some(Flow::Next)
            }
            M::Shl | M::Sal | M::Shr | M::Sar => {
                if !Self::ok_dst(i) || (i.op_count() > 1 && i.op1_kind() != OpKind::Immediate8) {
                    return None;
                }
                let size = Self::op_size(i, 0);
                let cnt = if i.op_count() > 1 { i.immediate8() as u32 } else { 1 } & if size == 8 { 63 } else { 31 };
                let (a, la) = self.read_dst(i, size);
                if cnt == 0 {
                    if la.is_none() && size == 4 {
                        self.set_reg(i.op0_register(), a);
                    }
                    return Some(Flow::Next);
                }
                let (c, c1) = (self.iconst(cnt as u64), self.iconst(cnt as u64 - 1));
                let (r, pre, op, src2) = self.shift(m, a, size, c, c1);
                self.write_dst(i, la, size, r);
                self.set_cc(op, size, r, pre, src2, None);
                Some(Flow::Next)
            }
            M::Rol | M::Ror => {
                // Register destination; count 1, imm8 or CL (Intel SDM Vol. 2B RCL/RCR/ROL/ROR:
                // CF and OF from the result, the other status flags unchanged; a masked count
                // of 0 changes nothing).
                let by_cl = Self::count_in_cl(i);
                if i.op0_kind() != OpKind::Register || !i.op0_register().is_gpr() || !(by_cl || i.op_count() == 1 || i.op1_kind() == OpKind::Immediate8) {
                    return None;
                }
                let size = Self::op_size(i, 0);
                let bits = 8 * size as i64;
                let cmask = if size == 8 { 63 } else { 31 };
                let a = self.get_reg(i.op0_register());
                let (cnt, zero) = if by_cl {
                    let cl = self.get_reg(Register::CL);
                    let c = self.b.ins().band_imm_s(cl, cmask);
                    (c, Some(self.b.ins().icmp_imm_s(IntCC::Equal, c, 0)))
                } else {
                    let c = if i.op_count() > 1 { i.immediate8() as i64 } else { 1 } & cmask;
                    if c == 0 {
                        if size == 4 {
                            self.set_reg(i.op0_register(), a);
                        }
                        return Some(Flow::Next);
                    }
                    (self.b.ins().iconst(I64, c), None)
                };
                // Rotate in the operand's width (Cranelift's rotates take the count modulo
                // the type's width, as x86 does after masking it).
                let ty = [I8, I16, I32, I64][size.trailing_zeros() as usize];
                let x = if size == 8 { a } else { self.b.ins().ireduce(ty, a) };
                let v = if m == M::Rol { self.b.ins().rotl(x, cnt) } else { self.b.ins().rotr(x, cnt) };
                let res = if size == 8 { v } else { self.b.ins().uextend(I64, v) };
                if size == 4 {
                    self.zx.insert(res, 4);
                }
                let out = match zero {
                    Some(z) => self.b.ins().select(z, a, res),
                    None => res,
                };
                self.set_reg(i.op0_register(), out);
                if !self.flags_dead_after() {
                    let old = self.flag_bits();
                    let sign = self.b.ins().ushr_imm_s(res, bits - 1);
                    let sign = self.b.ins().band_imm_s(sign, 1);
                    let (cf, of) = if m == M::Rol {
                        let cf = self.b.ins().band_imm_s(res, 1);
                        (cf, self.b.ins().bxor(sign, cf))
                    } else {
                        let b2 = self.b.ins().ushr_imm_s(res, bits - 2);
                        let b2 = self.b.ins().band_imm_s(b2, 1);
                        (sign, self.b.ins().bxor(sign, b2))
                    };
                    let kept = self.b.ins().band_imm_s(old, !(rf::CF | rf::OF) as i64 & rf::STATUS as i64);
                    let of = self.b.ins().ishl_imm_s(of, 11);
                    let t = self.b.ins().bor(kept, cf);
                    let mut f = self.b.ins().bor(t, of);
                    if let Some(z) = zero {
                        f = self.b.ins().select(z, old, f);
                    }
                    self.set_cc(CcOp::Eflags, size, res, f, None, None);
                }
                Some(Flow::Next)
            }
            M::Imul if i.op_count() >= 2 => {
                if !i.op0_register().is_gpr() || !Self::ok_src(i, 1) {
                    return None;
                }
                let size = Self::op_size(i, 0);
                let (a, b) = if i.op_count() == 2 {
                    let a = self.get_reg(i.op0_register());
                    (a, self.read_op(i, 1, size))
                } else {
                    let a = self.read_op(i, 1, size);
                    (a, self.iconst(i.immediate(2) & mask(size)))
                };
                if self.flags_dead_after() {
                    // The low bits of a product do not depend on the operands' upper bits
                    // (`set_reg` keeps the operand size's).
                    let p = self.b.ins().imul(a, b);
                    self.set_reg(i.op0_register(), p);
                    return Some(Flow::Next);
                }
                let (lo, ovf) = if size == 8 {
                    let lo = self.b.ins().imul(a, b);
                    let hi = self.b.ins().smulhi(a, b);
                    let s = self.b.ins().sshr_imm_s(lo, 63);
                    (lo, self.b.ins().icmp(IntCC::NotEqual, hi, s))
                } else {
                    let sa = self.sext(a, size);
                    let sb = self.sext(b, size);
                    let p = self.b.ins().imul(sa, sb);
                    let lo = self.mask_to(p, size);
                    let back = self.sext(lo, size);
                    (lo, self.b.ins().icmp(IntCC::NotEqual, p, back))
                };
                let ovf = self.b.ins().uextend(I64, ovf);
                self.set_reg(i.op0_register(), lo);
                self.set_cc(CcOp::Mul, size, lo, ovf, None, None);
                Some(Flow::Next)
            }
            M::Push => {
                if i.stack_pointer_increment() != -8 {
                    return None;
                }
                let v = match i.op0_kind() {
                    OpKind::Register if i.op0_register().is_gpr64() => self.get_reg(i.op0_register()),
                    OpKind::Immediate8to64 | OpKind::Immediate32to64 => self.iconst(i.immediate(0)),
                    _ => return None,
                };
                let sp = self.full(4);
                let nsp = self.add_imm(sp, -8);
                self.store(nsp, 8, v);
                self.set_full(4, nsp);
                Some(Flow::Next)
            }
            M::Pop => {
                if i.stack_pointer_increment() != 8 || i.op0_kind() != OpKind::Register || !i.op0_register().is_gpr64() {
                    return None;
                }
                let sp = self.full(4);
                let v = self.load(sp, 8);
                let nsp = self.add_imm(sp, 8);
                self.set_full(4, nsp);
                self.set_reg(i.op0_register(), v);
                Some(Flow::Next)
            }
            M::Leave if i.code() == iced_x86::Code::Leaveq => {
                let bp = self.full(5);
                let v = self.load(bp, 8);
                let nsp = self.add_imm(bp, 8);
                self.set_full(4, nsp);
                self.set_full(5, v);
                Some(Flow::Next)
            }
            M::Jmp => match i.op0_kind() {
                OpKind::NearBranch64 => {
                    let t = Self::branch_target(i)?;
                    Some(Flow::Jump { cond: None, taken: t, next: 0 })
                }
                OpKind::Register | OpKind::Memory if Self::op_size(i, 0) == 8 && (i.op0_kind() == OpKind::Memory || i.op0_register().is_gpr64()) => {
                    let t = self.read_op(i, 0, 8);
                    self.check_canonical(t);
                    Some(Flow::Indirect(t))
                }
                _ => None,
            },
            M::Call => {
                if i.stack_pointer_increment() != -8 {
                    return None;
                }
                let target = match i.op0_kind() {
                    OpKind::NearBranch64 => Ok(Self::branch_target(i)?),
                    OpKind::Register | OpKind::Memory if Self::op_size(i, 0) == 8 && (i.op0_kind() == OpKind::Memory || i.op0_register().is_gpr64()) => {
                        let t = self.read_op(i, 0, 8);
                        self.check_canonical(t);
                        Err(t)
                    }
                    _ => return None,
                };
                let sp = self.full(4);
                let nsp = self.add_imm(sp, -8);
                let ret = self.iconst(i.next_ip());
                self.store(nsp, 8, ret);
                self.set_full(4, nsp);
                Some(match target {
                    Ok(t) => Flow::Jump { cond: None, taken: t, next: 0 },
                    Err(t) => Flow::Indirect(t),
                })
            }
            M::Ret => {
                if i.code() != iced_x86::Code::Retnq && i.code() != iced_x86::Code::Retnq_imm16 {
                    return None;
                }
                let extra = if i.op_count() > 0 { i.immediate(0) } else { 0 };
                let sp = self.full(4);
                let t = self.load(sp, 8);
                self.check_canonical(t);
                let nsp = self.add_imm(sp, 8 + extra as i64);
                self.set_full(4, nsp);
                Some(Flow::Indirect(t))
            }
            M::Cmovo | M::Cmovno | M::Cmovb | M::Cmovae | M::Cmove | M::Cmovne | M::Cmovbe | M::Cmova | M::Cmovs
            | M::Cmovns | M::Cmovp | M::Cmovnp | M::Cmovl | M::Cmovge | M::Cmovle | M::Cmovg => {
                if !i.op0_register().is_gpr() || !Self::ok_src(i, 1) {
                    return None;
                }
                let size = Self::op_size(i, 0);
                let v = self.read_op(i, 1, size);
                let c = self.cond(i.condition_code() as u8 - 1);
                let old = self.get_reg(i.op0_register());
                let r = self.b.ins().select(c, v, old);
                self.set_reg(i.op0_register(), r);
                Some(Flow::Next)
            }
            M::Seto | M::Setno | M::Setb | M::Setae | M::Sete | M::Setne | M::Setbe | M::Seta | M::Sets | M::Setns
            | M::Setp | M::Setnp | M::Setl | M::Setge | M::Setle | M::Setg => {
                if !Self::ok_dst(i) {
                    return None;
                }
                let c = self.cond(i.condition_code() as u8 - 1);
                let v = self.b.ins().uextend(I64, c);
                let la = (i.op0_kind() == OpKind::Memory).then(|| self.lin(i));
                self.write_dst(i, la, 1, v);
                Some(Flow::Next)
            }
            M::Xchg if i.op0_kind() == OpKind::Register && i.op1_kind() == OpKind::Register => {
                let (r0, r1) = (i.op0_register(), i.op1_register());
                if !r0.is_gpr() || !r1.is_gpr() {
                    return None;
                }
                let a = self.get_reg(r0);
                let b = self.get_reg(r1);
                self.set_reg(r1, a);
                self.set_reg(r0, b);
                Some(Flow::Next)
            }
            M::Nop | M::Pause | M::Endbr64 | M::Endbr32 | M::Lfence | M::Mfence | M::Sfence | M::Prefetchnta
            | M::Prefetcht0 | M::Prefetcht1 | M::Prefetcht2 | M::Prefetchw => Some(Flow::Next),
            M::Cdqe | M::Cwde => {
                let (from, to) = if m == M::Cdqe { (4, 8) } else { (2, 4) };
                let v = self.full(0);
                let v = self.sext(v, from);
                let v = self.mask_to(v, to);
                let reg = if to == 8 { Register::RAX } else { Register::EAX };
                self.set_reg(reg, v);
                Some(Flow::Next)
            }
            M::Cdq | M::Cqo => {
                let size = if m == M::Cdq { 4 } else { 8 };
                let v = self.full(0);
                let s = self.sext(v, size);
                let h = self.b.ins().sshr_imm_s(s, 63);
                self.set_reg(if size == 4 { Register::EDX } else { Register::RDX }, h);
                Some(Flow::Next)
            }
            _ => None,
        }
    }
}

//! Debugging support: the external debugger's breakpoints, watchpoints and single-step (what
//! the GDB stub drives), and the guest-visible debug features: EFLAGS.TF single-step and the
//! DR0–DR7 breakpoints with DR6 status (Intel SDM Vol. 3B ch. 18).
//!
//! While any of them is armed the run loop runs tier 0 one instruction at a time with the
//! checks in [`debug_block`]; otherwise nothing here costs more than three tests per block.
//! Data accesses are watched through the softMMU: a watched page never gets a TLB entry for
//! reads or writes, so every access to it takes the slow path, which checks the ranges.

use crate::block::{raise, step, Stats, Step};
use crate::exec::Ctx;
use crate::state::{rf, sreg, CpuState};
use crate::system::IntSource;
use crate::{vec, ExitReason};
use iced_x86::{Mnemonic, Register};

/// What a watchpoint reacts to (GDB's `watch`, `rwatch`, `awatch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchKind {
    /// Stores.
    Write,
    /// Loads.
    Read,
    /// Loads and stores.
    Access,
}

/// A debugger watchpoint: `len` bytes at linear address `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watchpoint {
    /// First linear address watched.
    pub addr: u64,
    /// Length in bytes (at least 1).
    pub len: u64,
    /// Accesses that trigger it.
    pub kind: WatchKind,
}

/// Why the CPU stopped for the external debugger ([`ExitReason::Debug`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugStop {
    /// RIP is at a debugger breakpoint; the instruction there has not run.
    Breakpoint,
    /// The instruction before RIP accessed memory a watchpoint covers; it has completed.
    Watchpoint {
        /// The watchpoint's own address (as the debugger set it).
        addr: u64,
        /// The watchpoint's kind.
        kind: WatchKind,
    },
    /// Single-step: one instruction retired (or an event was delivered and RIP is at its
    /// handler).
    Step,
}

/// The external debugger's settings, kept by [`crate::Cpu`].
#[derive(Clone, Debug, Default)]
pub struct Debugger {
    /// Breakpoint linear addresses (software and hardware breakpoints alike: both stop before
    /// the instruction, and neither shows in guest memory).
    pub(crate) breakpoints: Vec<u64>,
    pub(crate) watchpoints: Vec<Watchpoint>,
    /// Stop after each instruction.
    pub(crate) single_step: bool,
}

impl Debugger {
    /// Nothing armed: the run loop may run at full speed.
    pub(crate) fn is_idle(&self) -> bool {
        self.breakpoints.is_empty() && self.watchpoints.is_empty() && !self.single_step
    }
}

/// Who set a watched range.
#[derive(Clone, Copy, Debug)]
enum Owner {
    Debugger(Watchpoint),
    /// Guest data breakpoint DRn.
    Guest(u8),
}

/// One watched linear range `[start, end)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WatchRange {
    start: u64,
    end: u64,
    read: bool,
    write: bool,
    owner: Owner,
}

/// The run loop's view of debugging for one [`crate::Cpu::run`] call.
#[derive(Default)]
pub(crate) struct DebugCtx<'a> {
    /// The debugger's settings, `None` when it has nothing armed.
    pub dbg: Option<&'a Debugger>,
    /// Watched ranges: the debugger's watchpoints and the guest's enabled data breakpoints.
    pub ranges: Vec<WatchRange>,
    /// A debugger watchpoint hit by the current instruction.
    pub hit: Option<Watchpoint>,
    /// DR6 B0–B3 bits of guest data breakpoints hit by the current instruction.
    pub dr_hits: u64,
}

/// DR6 bits (Intel SDM Vol. 3B §18.2.3).
pub mod dr6 {
    /// B0–B3: breakpoint condition n met.
    pub const B: u64 = 0xF;
    /// BD: debug-register access detected.
    pub const BD: u64 = 1 << 13;
    /// BS: single-step.
    pub const BS: u64 = 1 << 14;
}

/// DR7 fields of breakpoint `n` (Intel SDM Vol. 3B §18.2.4): (enabled (Ln or Gn), R/Wn,
/// length in bytes).
fn dr7_fields(dr7: u64, n: usize) -> (bool, u64, u64) {
    let enabled = dr7 >> (2 * n) & 3 != 0;
    let rw = dr7 >> (16 + 4 * n) & 3;
    let len = match dr7 >> (18 + 4 * n) & 3 {
        0 => 1,
        1 => 2,
        2 => 8,
        _ => 4,
    };
    (enabled, rw, len)
}

impl<'a> DebugCtx<'a> {
    /// The state for a run: the debugger's settings (if armed) and the watched ranges.
    pub fn new(dbg: &'a Debugger, s: &CpuState) -> Self {
        let mut d = DebugCtx { dbg: (!dbg.is_idle()).then_some(dbg), ..Default::default() };
        d.rebuild(s);
        d
    }

    /// Recompute the watched ranges (after a guest write to DR7 or DR0–DR3).
    pub fn rebuild(&mut self, s: &CpuState) {
        self.ranges.clear();
        if let Some(d) = self.dbg {
            for w in &d.watchpoints {
                let (read, write) = (w.kind != WatchKind::Write, w.kind != WatchKind::Read);
                self.ranges.push(WatchRange { start: w.addr, end: w.addr.saturating_add(w.len.max(1)), read, write, owner: Owner::Debugger(*w) });
            }
        }
        for n in 0..4 {
            let (enabled, rw, len) = dr7_fields(s.dr[7], n);
            // R/W 01: writes; 11: reads and writes; 10 (I/O) needs CR4.DE and is not modelled.
            if enabled && (rw == 1 || rw == 3) {
                let start = s.dr[n] & !(len - 1);
                self.ranges.push(WatchRange { start, end: start + len, read: rw == 3, write: true, owner: Owner::Guest(n as u8) });
            }
        }
    }

    /// Is the page of linear address `la` watched (so it must not be cached in the TLB)?
    #[inline]
    pub fn page_watched(&self, la: u64) -> bool {
        let page = la & !0xFFF;
        self.ranges.iter().any(|r| r.start < page + 0x1000 && r.end > page)
    }

    /// Record an access of `size` bytes at `la` against the watched ranges.
    pub fn access(&mut self, la: u64, size: u32, write: bool) {
        let end = la.saturating_add(size as u64);
        for r in &self.ranges {
            if r.start < end && la < r.end && ((write && r.write) || (!write && r.read)) {
                match r.owner {
                    Owner::Debugger(w) => self.hit = self.hit.or(Some(w)),
                    Owner::Guest(n) => self.dr_hits |= 1 << n,
                }
            }
        }
    }
}

/// Is anything armed that needs [`debug_block`] instead of the fast paths?
#[inline]
pub(crate) fn active(ctx: &Ctx) -> bool {
    ctx.debug.dbg.is_some() || ctx.s.rflags & rf::TF != 0 || ctx.s.dr[7] & 0xFF != 0
}

/// Run the instructions of a block one at a time with the debug checks: the debugger's
/// breakpoints and guest instruction breakpoints before each instruction; watchpoints, guest
/// data breakpoints, TF and the debugger's single-step after it. Returns `Err` to leave the
/// run loop (a debugger stop or a triple fault).
pub(crate) fn debug_block(ctx: &mut Ctx, stats: &mut Stats, insns: &[iced_x86::Instruction]) -> Result<(), ExitReason> {
    for i in insns {
        let la = if ctx.bits == 64 { i.ip() } else { ctx.s.seg[sreg::CS].base.wrapping_add(i.ip()) & 0xFFFF_FFFF };
        if ctx.debug.dbg.is_some_and(|d| d.breakpoints.contains(&la)) {
            return Err(ExitReason::Debug(DebugStop::Breakpoint));
        }
        // Instruction breakpoints are faults, suppressed for one instruction by RF (SDM Vol.
        // 3B §18.3.1.1): a handler returns with RF set in the EFLAGS image to go on.
        if ctx.s.rflags & rf::RF == 0 {
            let hits = (0..4).filter(|&n| matches!(dr7_fields(ctx.s.dr[7], n), (true, 0, _)) && ctx.s.dr[n] == la).fold(0, |m, n| m | 1 << n);
            if hits != 0 {
                ctx.s.dr[6] = (ctx.s.dr[6] & !dr6::B) | hits;
                raise(ctx, stats, vec::DB, None, IntSource::Exception)?;
                return stop_if_stepping(ctx);
            }
        }
        let tf = ctx.s.rflags & rf::TF != 0;
        ctx.debug.hit = None;
        ctx.debug.dr_hits = 0;
        if let Some(t) = ctx.tracer.as_deref_mut() {
            t.insn(ctx.s.icount, ctx.bits, i);
        }
        let r = step(ctx, i, &crate::fast::Fast::GENERIC);
        if let Step::Raise(v, c, src) = r {
            raise(ctx, stats, v, c, src)?;
            return stop_if_stepping(ctx);
        }
        ctx.s.rflags &= !rf::RF;
        if let Some(w) = ctx.debug.hit.take() {
            return Err(ExitReason::Debug(DebugStop::Watchpoint { addr: w.addr, kind: w.kind }));
        }
        // Traps after the instruction: data breakpoints, then single-step (TF as it was before
        // the instruction; MOV SS / POP SS hold it off for one instruction, SDM §6.8.3).
        let mut trap = ctx.debug.dr_hits;
        let mov_ss = matches!(i.mnemonic(), Mnemonic::Mov | Mnemonic::Pop) && i.op0_register() == Register::SS;
        if tf && !mov_ss {
            trap |= dr6::BS;
        }
        if trap != 0 {
            ctx.s.dr[6] = (ctx.s.dr[6] & !(dr6::B | dr6::BS)) | trap;
            raise(ctx, stats, vec::DB, None, IntSource::Exception)?;
            return stop_if_stepping(ctx);
        }
        if ctx.debug.dbg.is_some_and(|d| d.single_step) {
            return Err(ExitReason::Debug(DebugStop::Step));
        }
        if matches!(r, Step::End) {
            break;
        }
    }
    Ok(())
}

/// After an event was delivered: the debugger's single-step stops at the handler.
fn stop_if_stepping(ctx: &Ctx) -> Result<(), ExitReason> {
    match ctx.debug.dbg {
        Some(d) if d.single_step => Err(ExitReason::Debug(DebugStop::Step)),
        _ => Ok(()),
    }
}

impl crate::Cpu {
    /// Set (`on`) or clear a debugger breakpoint at linear address `la`: the CPU stops with
    /// [`DebugStop::Breakpoint`] before executing an instruction there. Guest memory is not
    /// touched, so reads of it never show the breakpoint.
    pub fn set_breakpoint(&mut self, la: u64, on: bool) {
        let b = &mut self.debugger.breakpoints;
        b.retain(|&a| a != la);
        if on {
            b.push(la);
        }
    }

    /// Set or clear a debugger watchpoint. Pages it covers leave the TLB so that every access
    /// to them is checked.
    pub fn set_watchpoint(&mut self, w: Watchpoint, on: bool) {
        let ws = &mut self.debugger.watchpoints;
        ws.retain(|x| *x != w);
        if on {
            ws.push(w);
        }
        self.s.tlb.flush_all();
    }

    /// Stop after every instruction ([`DebugStop::Step`]); external interrupts are held off
    /// meanwhile unless the CPU is halted.
    pub fn set_single_step(&mut self, on: bool) {
        self.debugger.single_step = on;
    }

    /// The debugger rewrote registers (control registers, EFER, segments): drop TLB entries
    /// made under the old ones. The code size is recomputed when the CPU next runs.
    pub fn state_changed(&mut self) {
        self.s.tlb.flush_all();
    }

    /// Remove every debugger breakpoint and watchpoint and stop single-stepping (the debugger
    /// detached).
    pub fn clear_debugger(&mut self) {
        self.debugger = Debugger::default();
        self.s.tlb.flush_all();
    }
}

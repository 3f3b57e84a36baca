//! Tier 0: blocks of iced-x86-decoded instructions cached by (RIP, physical address, code
//! size), the run loop, and interrupt/exception entry with the double-fault rules.
//!
//! A block never spans more than two physical pages; each page it uses is marked as holding
//! code in [`CodeMap`], so a store to it invalidates the block (DESIGN.md §6).

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::{Rc, Weak};

use heron_softmmu::{Bus, GuestRam, TlbKind};
use iced_x86::{Decoder, DecoderError, DecoderOptions, FlowControl, Instruction, Mnemonic};

use crate::exec::Ctx;
use crate::fast::{Fast, Op};
use crate::state::{rf, sreg, CpuState};
use crate::system::{IntSource, SOFT_INT_FLAG};
use crate::tier1::{JumpEntry, LinkSlot, TbInfo, Tier1Enter, Tier1Fn, TranslateError, Translator};
use crate::{vec, Exception};

/// Most instructions in one block.
const MAX_BLOCK_INSNS: usize = 64;
/// The block cache is dropped whole when it grows past this many blocks.
const MAX_BLOCKS: usize = 1 << 18;
/// Tier 0 runs a block this many times before tier 1 translates it (with the region around
/// it): Cranelift costs about 1 ms a region, so only code that keeps running pays that back
/// (DESIGN.md §2). Measured on the kit's boot: 64 spent 70% of the wall time compiling; 1000
/// to 4000 leave 98–99% of guest instructions in tier 1 with compilation at 12–18%. With
/// translation in the background (the machine's default), 1000 booted fastest (8.1 s against
/// 8.8–9.4 s for 3000 and 8.6–9.6 s for 300). Once regions were about 40% cheaper to compile
/// (no blocks that never ran, the lookup in the trampoline, registers written through, helper
/// arguments in memory), 300 boots fastest: 4.28–4.42 s against 4.65–4.75 s for 1000 and
/// 4.37–4.39 s for 150–200 (alternating runs), and the first 15G instructions of `kit=bench`
/// take 9.8 s against 10.3 s.
pub const TIER1_THRESHOLD: u32 = 300;

/// Why [`Cpu::run`] returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// The instruction budget was reached.
    Budget,
    /// The guest did port I/O or MMIO; devices may need attention.
    Io,
    /// HLT: the CPU waits for an interrupt.
    Halted,
    /// `exit_request` was set.
    ExitRequest,
    /// A fault while delivering a double fault: the processor shuts down (Intel SDM Vol. 3A
    /// §6.15, interrupt 8). The string describes the faults.
    TripleFault(String),
    /// Lockstep check mode: tier 1 and tier 0 disagreed on a block. The string names the
    /// block (RIP, instructions) and the differences.
    Divergence(String),
    /// The external debugger's breakpoint, watchpoint or single-step (see [`crate::debug`]).
    Debug(crate::debug::DebugStop),
}

/// Per-physical-page code marks and generation counters for invalidation.
pub struct CodeMap {
    has_code: Vec<bool>,
    gen: Vec<u32>,
    /// Page invalidations so far: caches of translations are valid only for one epoch.
    epoch: u64,
}

impl CodeMap {
    fn new(ram_size: u64) -> Self {
        let pages = (ram_size / 4096) as usize + 1;
        CodeMap { has_code: vec![false; pages], gen: vec![0; pages], epoch: 0 }
    }

    /// Does guest-physical page `pa` hold decoded code?
    #[inline]
    pub fn is_code_page(&self, pa: u64) -> bool {
        self.has_code.get((pa >> 12) as usize).copied().unwrap_or(false)
    }

    /// Invalidate all blocks decoded from page `pa`.
    pub fn invalidate_page(&mut self, pa: u64) {
        let p = (pa >> 12) as usize;
        if p < self.has_code.len() {
            self.has_code[p] = false;
            self.gen[p] = self.gen[p].wrapping_add(1);
            self.epoch += 1;
        }
    }

    fn gen(&self, pa: u64) -> u32 {
        self.gen.get((pa >> 12) as usize).copied().unwrap_or(0)
    }

    fn mark(&mut self, pa: u64) -> u32 {
        let p = (pa >> 12) as usize;
        if p < self.has_code.len() {
            self.has_code[p] = true;
        }
        self.gen(pa)
    }
}

/// A decoded block. The fields running it needs come first, in the first two host cache
/// lines of its allocation (with the reference counts), which `prefetch_links` fetches ahead.
#[repr(C)]
struct Block {
    /// RIP of its first instruction, and of the one after its last (the fall-through).
    rip: u64,
    end: u64,
    pages: [u64; 2],
    /// The code generations of `pages` it is valid for (see `revalidate`).
    gens: [Cell<u32>; 2],
    /// Code size it was decoded for, in bits.
    bits: u32,
    /// Times tier 0 ran this block (counts up to the tier-1 threshold).
    hits: Cell<u32>,
    /// Its tier-1 translation and the CPL it was made for.
    tier1: Cell<Option<(Tier1Fn, u8)>>,
    /// Tier 0's links to the blocks that ran after it last, at `end` (0) and elsewhere (1):
    /// both in its physical page, which it is alone in (see `linked`).
    next: [Cell<Option<Weak<Block>>>; 2],
    /// Where the linked blocks keep their pre-decoded instructions (for `prefetch_links`).
    next_fast: [Cell<*const Fast>; 2],
    /// The pre-decoded forms of `insns`, one for each.
    fast: Box<[Fast]>,
    insns: Box<[Instruction]>,
    /// Guest-physical address of its first byte, and its bytes (none for a block that
    /// crosses a page: it is never revalidated).
    pa: u64,
    bytes: Box<[u8]>,
    /// The other blocks its translation was made from, and whether the translation must be
    /// unlinked before it runs again (see `revalidate`).
    region: Cell<Box<[Weak<Block>]>>,
    unlink: Cell<bool>,
}

#[derive(Default)]
struct FxHasher(u64);
impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64)
    }
}
type BlockMap = HashMap<(u64, u64, u32), Rc<Block>, BuildHasherDefault<FxHasher>>;

/// Entries of the jump cache.
const JMP_CACHE_SIZE: usize = crate::tier1::JUMP_CACHE_SIZE;
/// The key of an empty [`JmpCache`] entry (no block has this RIP and physical address).
const NO_KEY: (u64, u64, u32) = (u64::MAX, 0, 0);

/// A direct-mapped cache in front of the block map, indexed by RIP (QEMU's tb_jmp_cache):
/// most block lookups hit here without hashing. Beside it, the translations the run loop
/// entered, by RIP, where translated code looks up successors ([`JumpEntry`]).
pub(crate) struct JmpCache {
    /// Block keys and blocks side by side (one host cache line per lookup).
    blocks: Vec<((u64, u64, u32), Option<Rc<Block>>)>,
    tier1: Vec<JumpEntry>,
    /// The [`CodeMap`] epoch the `tier1` entries belong to (older entries are never used).
    tier1_epoch: u64,
    /// A table like `tier1` where every lookup misses.
    empty: Vec<JumpEntry>,
}

impl JmpCache {
    fn new() -> Self {
        let empty = vec![JumpEntry::EMPTY; JMP_CACHE_SIZE];
        JmpCache { blocks: vec![(NO_KEY, None); JMP_CACHE_SIZE], tier1: empty.clone(), tier1_epoch: 0, empty }
    }
    #[inline]
    fn index(rip: u64) -> usize {
        crate::tier1::jump_cache_index(rip)
    }
    fn clear(&mut self) {
        self.blocks.fill((NO_KEY, None));
        self.tier1.fill(JumpEntry::EMPTY);
    }

    /// Note that translation `f` runs `block` at the current RIP, CPL and code size, unless
    /// the block spans two pages (a link to it would outlive a store into its second page:
    /// such blocks are entered from the run loop only).
    fn set_tier1(&mut self, ctx: &Ctx, block: &Block, f: Tier1Fn) {
        if self.tier1_epoch != ctx.code.epoch {
            self.tier1.fill(JumpEntry::EMPTY);
            self.tier1_epoch = ctx.code.epoch;
        }
        if block.pages[0] != block.pages[1] {
            return;
        }
        let rip = ctx.s.rip;
        let mode = JumpEntry::mode(ctx.bits, ctx.s.cpl());
        self.tier1[Self::index(rip)] = JumpEntry { rip, page: block.pages[0], mode, f: Some(f) };
    }
}

/// Counters for `--stats`.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Blocks decoded.
    pub blocks_decoded: u64,
    /// Whole block-cache flushes.
    pub cache_flushes: u64,
    /// Interrupts taken from INTR.
    pub interrupts: u64,
    /// Exceptions delivered.
    pub exceptions: u64,
    /// TLB misses (slow-path translations).
    pub tlb_misses: u64,
    /// Blocks invalidated by stores to their pages.
    pub smc_invalidations: u64,
    /// Calls of tier-1 translations.
    pub tier1_runs: u64,
    /// Guest instructions retired inside tier-1 translations (helpers included).
    pub tier1_insns: u64,
    /// Translations entered straight from another through a link slot or the lookup in the
    /// table of translations ([`crate::tier1::JumpEntry`]).
    pub tier1_chained: u64,
    /// Of those, translations found by the jump-cache lookup (indirect branches, returns,
    /// exits not linked yet).
    pub tier1_lookups: u64,
    /// Lockstep mode: blocks run by both tiers and compared.
    pub lockstep_checked: u64,
    /// Lockstep mode: blocks that did I/O or stored into code, kept from tier 0 unchecked.
    pub lockstep_unchecked: u64,
}

/// One x86 CPU with its tier-0 engine.
pub struct Cpu {
    /// Architectural state.
    pub s: Box<CpuState>,
    ram: GuestRam,
    code: CodeMap,
    blocks: BlockMap,
    jmp_cache: JmpCache,
    fetch: Vec<u8>,
    /// The execution trace (`--trace`), off when `None`.
    pub tracer: Option<crate::trace::Tracer>,
    /// Statistics.
    pub stats: Stats,
    /// The tier-1 translator; `None` runs tier 0 alone (`--engine interp`).
    pub translator: Option<Box<dyn Translator>>,
    /// Lockstep check mode (`--check-jit`), see [`Cpu::enable_lockstep`].
    lockstep: Option<Box<Lockstep>>,
    /// Tier-0 runs of a block before tier 1 translates it, see [`Cpu::set_tier1_threshold`].
    tier1_threshold: u32,
    /// Translations requested in the background, see [`Cpu::set_background_translation`].
    pending: Pending,
    /// The external debugger's breakpoints, watchpoints and single-step.
    pub(crate) debugger: crate::debug::Debugger,
}

/// Background translations by request id.
#[derive(Default)]
struct Pending {
    enabled: bool,
    next_id: u64,
    blocks: HashMap<u64, PendingRegion>,
}

/// A region being translated in the background.
struct PendingRegion {
    entry: Rc<Block>,
    /// The CPL it is made for.
    cpl: u8,
    /// The region's other blocks.
    region: Box<[Weak<Block>]>,
    /// Those of them whose own requests wait meanwhile (hits at [`HITS_WAITING`]: the
    /// synchronous translator would have left tier 0 for them at once).
    waiting: Vec<Rc<Block>>,
}

/// [`Block::hits`] of a block inside a region whose translation is pending.
const HITS_WAITING: u32 = u32::MAX;

/// Scratch space of the lockstep check.
struct Lockstep {
    log: Vec<crate::mmu::WriteRec>,
    before: Box<CpuState>,
    interp: Box<CpuState>,
}

impl Cpu {
    /// A CPU in its RESET state over `ram`.
    pub fn new(ram: GuestRam) -> Self {
        let code = CodeMap::new(ram.size());
        Cpu { s: CpuState::new(), ram, code, blocks: BlockMap::default(), jmp_cache: JmpCache::new(), fetch: Vec::with_capacity(4096 + 16), tracer: None, stats: Stats::default(), translator: None, lockstep: None, tier1_threshold: TIER1_THRESHOLD, pending: Pending::default(), debugger: Default::default() }
    }

    /// Translate on the translator's background thread ([`Translator::submit`]) instead of
    /// stopping the guest: a hot block keeps running in tier 0 until its translation is
    /// ready. Both tiers retire the same instructions at the same boundaries, so the guest's
    /// behaviour does not depend on when translations arrive (only `--stats` does). Off by
    /// default (the lockstep check and the conformance tests want translations at once).
    pub fn set_background_translation(&mut self, on: bool) {
        self.pending.enabled = on;
    }

    /// How many times tier 0 runs a block before the translator (if any) translates it:
    /// [`TIER1_THRESHOLD`] by default; 1 (or 0, taken as 1) translates every block the first
    /// time it runs, so even code that runs once executes as tier-1 code (the conformance
    /// tests use this to run each instruction case in tier 1).
    pub fn set_tier1_threshold(&mut self, runs: u32) {
        self.tier1_threshold = runs.max(1);
    }

    /// Lockstep check mode (DESIGN.md testing layer 3): each time a translation would run,
    /// tier 0 runs the block first (recording its RAM writes), then the state and RAM are put
    /// back and the translation runs the same block; any difference in registers, flags,
    /// other architectural state or RAM written stops the run with
    /// [`ExitReason::Divergence`]. Blocks that did port I/O or MMIO, or stored into code, keep
    /// tier 0's result (devices cannot be replayed). The translator must emit every store
    /// through its slow path, so that each one is recorded.
    pub fn enable_lockstep(&mut self) {
        self.lockstep = Some(Box::new(Lockstep { log: Vec::new(), before: CpuState::new(), interp: CpuState::new() }));
    }

    /// Forget all decoded blocks and TLB entries (after the machine rewrote RAM behind the
    /// CPU's back, e.g. loading a kernel).
    pub fn flush_code(&mut self) {
        self.blocks.clear();
        self.jmp_cache.clear();
        self.pending.blocks.clear();
        if let Some(t) = self.translator.as_deref_mut() {
            t.flush();
        }
        for p in 0..self.code.has_code.len() {
            if self.code.has_code[p] {
                self.code.invalidate_page((p as u64) << 12);
            }
        }
        self.s.tlb.flush_all();
    }

    /// Invalidate decoded code in guest-physical `[pa, pa + len)`: a device wrote there by
    /// DMA, behind the CPU's store path.
    pub fn invalidate_code_range(&mut self, pa: u64, len: u64) {
        if len == 0 {
            return;
        }
        let mut page = pa & !0xFFF;
        while page < pa + len {
            if self.code.is_code_page(page) {
                self.code.invalidate_page(page);
            }
            page += 0x1000;
        }
    }

    /// Set the A20 gate (bit 20 of physical addresses masked when off).
    pub fn set_a20(&mut self, enabled: bool) {
        let m = if enabled { !0 } else { !(1u64 << 20) };
        if m != self.s.a20_mask {
            self.s.a20_mask = m;
            self.s.tlb.flush_all();
        }
    }

    /// Run until `icount` reaches `until` or something needs the machine (see [`ExitReason`]).
    pub fn run(&mut self, bus: &mut dyn Bus, until: u64) -> ExitReason {
        let ram_size = self.ram.size();
        let Cpu { s, ram, code, blocks, jmp_cache, fetch, stats, tracer, translator, lockstep, tier1_threshold, pending, debugger } = self;
        let (wlog, snaps) = match lockstep.as_deref_mut() {
            Some(Lockstep { log, before, interp }) => (Some(log), Some((before, interp))),
            None => (None, None),
        };
        let bits = s.code_bits();
        let debug = crate::debug::DebugCtx::new(debugger, s);
        let mut ctx = Ctx { s, ram, ram_size, code, bus, bits, smc: false, io_touched: false, end_block: false, stats_tlb_miss: 0, tracer: tracer.as_mut(), wlog, debug };
        let mut caches = Caches { blocks, jmp: jmp_cache, fetch, tier1: translator.as_deref_mut(), lockstep: snaps, tier1_threshold: *tier1_threshold, pending };
        let r = run_loop(&mut ctx, &mut caches, stats, until);
        stats.tlb_misses += ctx.stats_tlb_miss;
        r
    }
}

/// The decoded-code caches the run loop needs.
struct Caches<'a> {
    blocks: &'a mut BlockMap,
    jmp: &'a mut JmpCache,
    fetch: &'a mut Vec<u8>,
    tier1: Option<&'a mut (dyn Translator + 'static)>,
    /// Lockstep check mode: snapshots of the state before a block and after tier 0 ran it.
    lockstep: Option<(&'a mut Box<CpuState>, &'a mut Box<CpuState>)>,
    /// Tier-0 runs before translation ([`Cpu::set_tier1_threshold`]).
    tier1_threshold: u32,
    pending: &'a mut Pending,
}

impl Caches<'_> {
    /// Drop every decoded block, and the translations they lead to when the translator is
    /// here (while it translates, its caller flushes it).
    fn drop_blocks(&mut self, stats: &mut Stats) {
        self.blocks.clear();
        self.jmp.clear();
        self.pending.blocks.clear();
        stats.cache_flushes += 1;
        if let Some(t) = self.tier1.as_deref_mut() {
            t.flush();
        }
    }
}

fn run_loop(ctx: &mut Ctx, caches: &mut Caches, stats: &mut Stats, until: u64) -> ExitReason {
    // The INTR line only changes when the machine runs (between calls) or on INTA: devices
    // are reached only through I/O, which ends this call.
    let mut intr = ctx.bus.interrupt_pending();
    // The link slot the last translation left through, to be pointed at the next one.
    let (mut link, mut link_epoch): (*mut LinkSlot, u64) = (std::ptr::null_mut(), 0);
    // The block tier 0 last ran to its end, with the TLB's flush count then.
    let mut ran: Option<(Rc<Block>, u64)> = None;
    loop {
        let mut prev = ran.take();
        if ctx.io_touched {
            return ExitReason::Io;
        }
        if ctx.s.icount >= until {
            return ExitReason::Budget;
        }
        if ctx.s.exit_request != 0 {
            ctx.s.exit_request = 0;
            return ExitReason::ExitRequest;
        }
        // The debugger's single-step keeps interrupts off (as QEMU's default), except to wake
        // a halted CPU.
        let stepping = ctx.debug.dbg.is_some_and(|d| d.single_step) && !ctx.s.halted;
        if intr && ctx.s.rflags & rf::IF != 0 && !ctx.s.irq_inhibit && !stepping {
            let v = ctx.bus.acknowledge_interrupt();
            intr = ctx.bus.interrupt_pending();
            stats.interrupts += 1;
            ctx.s.halted = false;
            prev = None;
            if let Err(r) = raise(ctx, stats, v, None, IntSource::External) {
                return r;
            }
        }
        if ctx.s.halted {
            return ExitReason::Halted;
        }
        if !caches.pending.blocks.is_empty() {
            install_background(ctx, caches, stats);
        }
        let block = match prev.as_ref().and_then(|(p, flushes)| linked(ctx, p, *flushes)) {
            Some(b) => b,
            None => match get_block(ctx, caches, stats) {
                Ok(b) => {
                    if let Some((p, flushes)) = &prev {
                        link_blocks(ctx, p, *flushes, &b);
                    }
                    b
                }
                Err(e) => {
                    if let Err(r) = raise(ctx, stats, e.vector, e.error_code, IntSource::Exception) {
                        return r;
                    }
                    continue;
                }
            },
        };
        ctx.end_block = false;
        ctx.smc = false;
        if crate::debug::active(ctx) {
            link = std::ptr::null_mut();
            if let Err(r) = crate::debug::debug_block(ctx, stats, &block.insns) {
                return r;
            }
            continue;
        }
        let tier1 = match caches.tier1.take() {
            Some(t) => {
                let f = if ctx.tracer.is_none() && !ctx.s.irq_inhibit { enter_tier1(ctx, caches, &mut *t, stats, &block) } else { None };
                let enter = t.enter();
                caches.tier1 = Some(t);
                f.map(|f| (f, enter))
            }
            None => None,
        };
        if let Some((f, enter)) = tier1 {
            caches.jmp.set_tier1(ctx, &block, f);
            // A flush since the link was taken emptied its slot table.
            if !link.is_null() && link_epoch == stats.cache_flushes && block.pages[0] == block.pages[1] {
                // SAFETY: `link` came from a translation still in the code cache (a flush
                // clears it); linking is only allowed within one page.
                unsafe {
                    if (*link).page == block.pages[0] {
                        (*link).target = f.addr();
                    }
                }
            }
            let r = match caches.lockstep.as_mut() {
                Some((before, interp)) => lockstep_block(ctx, stats, &block, enter, f, caches.jmp, before, interp).map(|()| std::ptr::null_mut()),
                // With the INTR line up (and IF clear, or the run loop would have taken it),
                // chains return to the run loop at every exit, which checks IF.
                None => run_tier1(ctx, stats, enter, f, until, caches.jmp, !intr),
            };
            match r {
                Ok(l) => (link, link_epoch) = (l, stats.cache_flushes),
                Err(r) => return r,
            }
            continue;
        }
        link = std::ptr::null_mut();
        prefetch_links(&block);
        let flushes = ctx.s.tlb.flushes;
        match interpret_block(ctx, stats, &block) {
            Ok(true) => ran = Some((block, flushes)),
            Ok(false) => {}
            Err(r) => return r,
        }
        if let Some(log) = ctx.wlog.as_deref_mut() {
            log.clear();
        }
    }
}

/// Run `block` in tier 0, delivering the exception that ends it, if any. Returns whether its
/// last instruction retired and nothing ended it early (mode change, I/O, store into code, an
/// interrupt shadow over, an event).
fn interpret_block(ctx: &mut Ctx, stats: &mut Stats, block: &Block) -> Result<bool, ExitReason> {
    for (i, f) in block.insns.iter().zip(&block.fast) {
        if let Some(t) = ctx.tracer.as_deref_mut() {
            t.insn(ctx.s.icount, ctx.bits, i);
        }
        match step(ctx, i, f) {
            Step::Next => {}
            Step::End => {
                if ctx.smc {
                    stats.smc_invalidations += 1;
                }
                return Ok(false);
            }
            Step::Raise(v, c, src) => {
                raise(ctx, stats, v, c, src)?;
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The slot of `prev.next` for a successor at RIP `rip`.
fn link_index(prev: &Block, rip: u64) -> usize {
    (rip != prev.end) as usize
}

/// The block at RIP that `prev` (run to its end while the TLB's flush count was `flushes`)
/// links to, if that is the one `get_block` would give: a link joins two blocks of one
/// physical page, so with the TLB unflushed and RIP in `prev`'s linear page the physical
/// address is the same, and the code size and code generation are checked. Saves
/// `get_block`'s TLB, jump-cache and code-map lookups (host cache misses, in code that runs
/// rarely).
#[inline]
fn linked(ctx: &Ctx, prev: &Block, flushes: u64) -> Option<Rc<Block>> {
    let rip = ctx.s.rip;
    if ctx.s.tlb.flushes != flushes || (rip ^ prev.rip) & !0xFFF != 0 {
        return None;
    }
    let slot = &prev.next[link_index(prev, rip)];
    let w = slot.take();
    let b = w.as_ref().and_then(Weak::upgrade);
    slot.set(w);
    b.filter(|b| b.rip == rip && b.bits == ctx.bits && b.valid(ctx.code))
}

/// Ask the host CPU to bring the blocks `b` links to into its caches while `b` runs: tier 0
/// mostly runs code that ran long ago, whose blocks (allocation and pre-decoded instructions)
/// were evicted meanwhile. Only a hint: a block freed since costs nothing.
#[inline]
fn prefetch_links(b: &Block) {
    #[cfg(target_arch = "x86_64")]
    for (slot, fast) in b.next.iter().zip(&b.next_fast) {
        let w = slot.take();
        if let Some(p) = w.as_ref().map(Weak::as_ptr) {
            let (p, f) = (p as *const i8, fast.get() as *const i8);
            // SAFETY: PREFETCHT0 only hints at an address: it never faults, whatever is there.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_sub(16));
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(48));
                _mm_prefetch::<_MM_HINT_T0>(f);
                _mm_prefetch::<_MM_HINT_T0>(f.wrapping_add(64));
            }
        }
        slot.set(w);
    }
}

/// Link `prev` (as in `linked`) to `next`, the block `get_block` gave after it, when both lie
/// in one physical page and `prev`'s linear page.
fn link_blocks(ctx: &Ctx, prev: &Block, flushes: u64, next: &Rc<Block>) {
    let one_page = |b: &Block| b.pages[0] == b.pages[1];
    if ctx.s.tlb.flushes == flushes && (next.rip ^ prev.rip) & !0xFFF == 0 && one_page(prev) && one_page(next) && next.pages[0] == prev.pages[0] {
        let k = link_index(prev, next.rip);
        prev.next[k].set(Some(Rc::downgrade(next)));
        prev.next_fast[k].set(next.fast.as_ptr());
    }
}

/// Copy the architectural part of `from` (everything before the TLB) into `to`.
fn copy_arch(from: &CpuState, to: &mut CpuState) {
    // SAFETY: CpuState is `#[repr(C)]` plain data; the bytes before `tlb` are whole fields of
    // both (valid bit patterns copied from a valid value of the same type).
    unsafe {
        std::ptr::copy_nonoverlapping(from as *const CpuState as *const u8, to as *mut CpuState as *mut u8, std::mem::offset_of!(CpuState, tlb));
    }
}

/// Lockstep check of one block (see [`Cpu::enable_lockstep`]).
fn lockstep_block(ctx: &mut Ctx, stats: &mut Stats, block: &Block, enter: Tier1Enter, f: Tier1Fn, jmp: &JmpCache, before: &mut CpuState, interp: &mut CpuState) -> Result<(), ExitReason> {
    copy_arch(ctx.s, before);
    let bits = ctx.bits;
    ctx.wlog.as_deref_mut().expect("lockstep log").clear();
    interpret_block(ctx, stats, block)?;
    if ctx.io_touched || ctx.smc {
        stats.lockstep_unchecked += 1;
        return Ok(());
    }
    copy_arch(ctx.s, interp);
    let ilog: Vec<_> = std::mem::take(ctx.wlog.as_deref_mut().expect("lockstep log"));
    let after: Vec<u64> = ilog.iter().map(|w| ctx.ram_peek(w.pa, w.size)).collect();
    ctx.undo_writes(&ilog);
    copy_arch(before, ctx.s);
    ctx.bits = bits;
    ctx.end_block = false;
    run_tier1(ctx, stats, enter, f, 0, jmp, false)?;
    stats.lockstep_checked += 1;
    let jlog = std::mem::take(ctx.wlog.as_deref_mut().expect("lockstep log"));
    let mut diffs = crate::state::arch_diff(interp, ctx.s);
    for (w, v) in ilog.iter().zip(&after) {
        let now = ctx.ram_peek(w.pa, w.size);
        if now != *v {
            diffs.push(format!("RAM {:#x} ({} bytes): tier 0 wrote {:#x}, tier 1 left {:#x}", w.pa, w.size, v, now));
        }
    }
    for w in jlog.iter() {
        if !ilog.iter().any(|i| i.pa <= w.pa && w.pa + w.size as u64 <= i.pa + i.size as u64) {
            diffs.push(format!("RAM {:#x} ({} bytes): written by tier 1 only (now {:#x})", w.pa, w.size, ctx.ram_peek(w.pa, w.size)));
        }
    }
    if diffs.is_empty() {
        return Ok(());
    }
    use iced_x86::Formatter;
    let mut fmt = iced_x86::IntelFormatter::new();
    let mut text = format!("tier 1 diverged from tier 0 on the block at RIP {:#x} (icount {}, CPL {}):\n", before.rip, before.icount, before.cpl());
    for i in block.insns.iter() {
        let mut t = String::new();
        fmt.format(i, &mut t);
        text += &format!("  {:016x}  {t}\n", i.ip());
    }
    text += "differences (tier 0 vs tier 1):\n";
    for d in diffs {
        text += &format!("  {d}\n");
    }
    Err(ExitReason::Divergence(text))
}

/// Run translation `f` and the translations it chains to, while the budget lasts. Returns
/// the link slot the last one left through (null if none). `lookup`: whether translations may
/// look their successors up in `jmp`'s table of translations (if not, they get its empty
/// table, and every exit without a linked successor returns to the run loop).
fn run_tier1(ctx: &mut Ctx, stats: &mut Stats, enter: Tier1Enter, f: Tier1Fn, until: u64, jmp: &JmpCache, lookup: bool) -> Result<*mut LinkSlot, ExitReason> {
    let start = ctx.s.icount;
    let mut env = crate::tier1::JitEnv::new(ctx);
    env.until = until;
    // Entries of an older epoch are never used. Within this call the epoch changes only
    // through stores into code, after which translations return without looking up.
    env.jump_table = if lookup && jmp.tier1_epoch == ctx.code.epoch { jmp.tier1.as_ptr() } else { jmp.empty.as_ptr() };
    let state: *mut crate::CpuState = &mut *ctx.s;
    // SAFETY: `f` was made by the translator whose trampoline `enter` is, for a block valid in
    // this mode, at this CPL (checked by `enter_tier1`, the lookup or the link's same-page
    // rule), and stays valid until the next flush, which cannot happen during the call. It
    // gets the live state and an env over this context, which nothing else touches meanwhile.
    unsafe { enter(&mut env, state, f.0.as_ptr()) };
    stats.tier1_runs += 1 + env.chained;
    stats.tier1_chained += env.chained;
    stats.tier1_insns += ctx.s.icount - start;
    stats.tier1_lookups += env.lookups;
    if ctx.smc {
        stats.smc_invalidations += 1;
    }
    if let Some((v, c, src)) = env.take_pending() {
        raise(ctx, stats, v, c, src)?;
        return Ok(std::ptr::null_mut());
    }
    Ok(env.last_slot)
}

/// The outcome of one tier-0 instruction.
pub(crate) enum Step {
    /// Go on with the next instruction of the block.
    Next,
    /// The block ends after this instruction (mode change, I/O, self-modifying store,
    /// interrupt shadow over).
    End,
    /// Deliver this event (vector, error code, source); the state is ready for it.
    Raise(u8, Option<u32>, IntSource),
}

/// Execute one instruction with tier-0 semantics: RIP past it, `icount` advanced when it
/// retires, RIP back on it for a fault. `f` is its pre-decoded form (or [`Fast::GENERIC`]); a
/// pre-decoded instruction must be the one at RIP.
pub(crate) fn step(ctx: &mut Ctx, i: &Instruction, f: &Fast) -> Step {
    let inhibited = ctx.s.irq_inhibit;
    let (ip, r) = if f.op != Op::Generic {
        // Pre-decoded forms are 64-bit code: no RIP wrap-around.
        debug_assert_eq!(ctx.s.rip, i.ip());
        let ip = ctx.s.rip;
        ctx.s.rip = ip.wrapping_add(f.len());
        (ip, ctx.exec_fast(f))
    } else {
        let ipmask = match ctx.bits {
            64 => u64::MAX,
            32 => 0xFFFF_FFFF,
            _ => 0xFFFF,
        };
        ctx.s.rip = i.next_ip() & ipmask;
        (i.ip() & ipmask, ctx.exec(i))
    };
    match r {
        Ok(()) => ctx.s.icount += 1,
        Err(e) if e.error_code == Some(SOFT_INT_FLAG) => {
            // INT n / INT3 / INTO: a trap, the saved RIP is the next instruction.
            ctx.s.icount += 1;
            return Step::Raise(e.vector, None, IntSource::Software);
        }
        Err(e) => {
            ctx.s.rip = ip;
            return Step::Raise(e.vector, e.error_code, IntSource::Exception);
        }
    }
    if inhibited {
        ctx.s.irq_inhibit = false;
        return Step::End;
    }
    if ctx.end_block || ctx.smc || ctx.io_touched {
        return Step::End;
    }
    Step::Next
}

/// The tier-1 code to run for `block` now, translating it when it has just become hot.
fn enter_tier1(ctx: &mut Ctx, caches: &mut Caches, t: &mut dyn Translator, stats: &mut Stats, block: &Rc<Block>) -> Option<Tier1Fn> {
    let cpl = ctx.s.cpl();
    if let Some((f, c)) = block.tier1.get() {
        if block.unlink.take() {
            t.unlink(f);
        }
        return (c == cpl).then_some(f);
    }
    let hits = block.hits.get().saturating_add(1);
    block.hits.set(hits);
    if hits != caches.tier1_threshold {
        return None;
    }
    let region = form_region(ctx, caches, stats, block);
    let page = (block.pages[0] == block.pages[1]).then_some(block.pages[0]);
    let tb = TbInfo { blocks: region.iter().map(|b| &b.insns[..]).collect(), bits: ctx.bits, cpl, page };
    if caches.pending.enabled {
        let id = caches.pending.next_id;
        if t.submit(id, &tb) {
            caches.pending.next_id += 1;
            let waiting: Vec<Rc<Block>> = region[1..].iter().filter(|b| b.hits.get() < caches.tier1_threshold).cloned().collect();
            waiting.iter().for_each(|b| b.hits.set(HITS_WAITING));
            let region = region[1..].iter().map(Rc::downgrade).collect();
            caches.pending.blocks.insert(id, PendingRegion { entry: block.clone(), cpl, region, waiting });
            return None;
        }
    }
    let r = match t.translate(&tb) {
        Err(TranslateError::CacheFull) => {
            // Every block may point into the code cache: drop them all, then start afresh
            // (`t` is out of `caches` while it translates, so it is flushed here).
            caches.drop_blocks(stats);
            t.flush();
            t.translate(&tb)
        }
        r => r,
    };
    match r {
        Ok(f) => {
            block.tier1.set(Some((f, cpl)));
            block.region.set(region[1..].iter().map(Rc::downgrade).collect());
            Some(f)
        }
        Err(_) => None,
    }
}

/// Give the blocks whose background translations are ready their translations (unless
/// their code changed meanwhile).
fn install_background(ctx: &mut Ctx, caches: &mut Caches, stats: &mut Stats) {
    let Some(t) = caches.tier1.take() else { return };
    while let Some((id, r)) = t.poll() {
        let Some(PendingRegion { entry, cpl, region, waiting }) = caches.pending.blocks.remove(&id) else { continue };
        // Blocks of the region count their own runs again (entered from elsewhere).
        waiting.iter().filter(|b| b.hits.get() == HITS_WAITING).for_each(|b| b.hits.set(0));
        match r {
            // Made from the code there now (its page may have been stored into meanwhile).
            Ok(f) if (entry.valid(ctx.code) || revalidate(ctx, &entry)) && region_unchanged(ctx, &region) => {
                entry.tier1.set(Some((f, cpl)));
                entry.region.set(region);
            }
            Err(TranslateError::CacheFull) => {
                // As in `enter_tier1`: drop every block (and the other requests), then flush.
                caches.drop_blocks(stats);
                t.flush();
            }
            _ => {}
        }
    }
    caches.tier1 = Some(t);
}

/// Most blocks in one region.
const MAX_REGION_BLOCKS: usize = 8;

/// The blocks reachable from `entry` through direct branches and fall-through without leaving
/// its page (64-bit code; otherwise the entry alone), entry first, at most
/// [`MAX_REGION_BLOCKS`]: those that have run in tier 0 and are not the entries of other
/// translations. (Blocks that never ran were a fifth of the compiled instructions in the kit's
/// boot; the region leaves to them, and they get translations of their own if they turn hot.)
fn form_region(ctx: &mut Ctx, caches: &mut Caches, stats: &mut Stats, entry: &Rc<Block>) -> Vec<Rc<Block>> {
    let mut region = vec![entry.clone()];
    if ctx.bits != 64 || entry.pages[0] != entry.pages[1] {
        return region;
    }
    let page = entry.insns[0].ip() & !0xFFF;
    let mut queue: std::collections::VecDeque<u64> = successors(entry).collect();
    let saved_rip = ctx.s.rip;
    while let Some(t) = queue.pop_front() {
        if region.len() >= MAX_REGION_BLOCKS {
            break;
        }
        if t & !0xFFF != page || region.iter().any(|b| b.insns[0].ip() == t) {
            continue;
        }
        ctx.s.rip = t;
        if let Ok(b) = get_block(ctx, caches, stats) {
            // A block that is already the entry of a translation (made or pending) is left
            // through a link instead of compiled twice.
            let hits = b.hits.get();
            let entry_elsewhere = b.tier1.get().is_some() || (hits >= caches.tier1_threshold && hits != HITS_WAITING);
            if b.pages[0] == b.pages[1] && b.pages[0] == entry.pages[0] && !entry_elsewhere && hits > 0 {
                queue.extend(successors(&b));
                region.push(b);
            }
        }
    }
    ctx.s.rip = saved_rip;
    region
}

/// Constant successors of a block: branch targets and fall-through.
fn successors(b: &Block) -> impl Iterator<Item = u64> {
    let last = b.insns.last().expect("blocks are never empty");
    let mut out = [None, None];
    match last.flow_control() {
        FlowControl::Next if last.mnemonic() != Mnemonic::Hlt => out[0] = Some(last.next_ip()),
        FlowControl::ConditionalBranch if last.is_jcc_short_or_near() => {
            out = [Some(last.near_branch_target()), Some(last.next_ip())];
        }
        FlowControl::UnconditionalBranch | FlowControl::Call if last.op0_kind() == iced_x86::OpKind::NearBranch64 => {
            out[0] = Some(last.near_branch_target());
        }
        _ => {}
    }
    out.into_iter().flatten()
}

/// Is `v` a contributory exception (Intel SDM Vol. 3A Table 6-4)?
fn contributory(v: u8) -> bool {
    matches!(v, vec::DE | vec::TS | vec::NP | vec::SS | vec::GP)
}

/// Deliver an event; a fault during delivery follows the double-fault rules, and a fault while
/// delivering #DF shuts the processor down.
pub(crate) fn raise(ctx: &mut Ctx, stats: &mut Stats, v: u8, code: Option<u32>, src: IntSource) -> Result<(), ExitReason> {
    let (mut v, mut code, mut src) = (v, code, src);
    if src == IntSource::Exception {
        stats.exceptions += 1;
    }
    if let Some(t) = ctx.tracer.as_deref_mut() {
        let kind = match src {
            IntSource::Exception => "exception",
            IntSource::External => "interrupt",
            IntSource::Software => "software-interrupt",
        };
        t.event(ctx.s.icount, v, code, ctx.s.rip, kind);
    }
    for _ in 0..4 {
        match ctx.deliver(v, code, src) {
            Ok(()) => return Ok(()),
            Err(e2) => {
                stats.exceptions += 1;
                if v == vec::DF {
                    return Err(ExitReason::TripleFault(format!(
                        "triple fault: exception {} while delivering #DF (RIP {:#x})",
                        e2.vector, ctx.s.rip
                    )));
                }
                let first_pf = v == vec::PF && src == IntSource::Exception;
                let first_contrib = contributory(v) && src == IntSource::Exception;
                let double = (first_contrib && contributory(e2.vector)) || (first_pf && (contributory(e2.vector) || e2.vector == vec::PF));
                if double {
                    v = vec::DF;
                    code = Some(0);
                } else {
                    v = e2.vector;
                    code = e2.error_code;
                }
                src = IntSource::Exception;
            }
        }
    }
    Err(ExitReason::TripleFault(format!("unrecoverable fault delivering vector {v}")))
}

impl Block {
    /// Its bytes are still in guest RAM, unchanged.
    fn same_bytes(&self, ram: &GuestRam) -> bool {
        !self.bytes.is_empty() && ram.as_slice().get(self.pa as usize..self.pa as usize + self.bytes.len()) == Some(&self.bytes[..])
    }

    /// Still valid: every page it was decoded from holds code of the same generation.
    #[inline]
    fn valid(&self, code: &CodeMap) -> bool {
        self.gens[0].get() == code.gen(self.pages[0]) && self.gens[1].get() == code.gen(self.pages[1]) && code.is_code_page(self.pages[0]) && code.is_code_page(self.pages[1])
    }
}

/// Make `b`, invalidated by a store into its page, valid again if its bytes are unchanged (a
/// store changes a few bytes of a page: Linux patches single instructions throughout its text
/// while it boots, each store invalidating a whole page), keeping its run count and, when the
/// rest of its region is unchanged too, its translation (to be unlinked before it runs again:
/// the translations it linked to may have changed).
fn revalidate(ctx: &mut Ctx, b: &Block) -> bool {
    if !b.same_bytes(ctx.ram) {
        return false;
    }
    let page = b.pages[0];
    if !ctx.code.is_code_page(page) {
        ctx.s.tlb.flush_writes_to(page);
    }
    let g = ctx.code.mark(page);
    b.gens.iter().for_each(|c| c.set(g));
    if b.tier1.get().is_some() {
        let region = b.region.take();
        if region_unchanged(ctx, &region) {
            b.unlink.set(true);
            b.region.set(region);
        } else {
            b.tier1.set(None);
            b.hits.set(0);
        }
    }
    true
}

/// Every block of `region` still has its bytes.
fn region_unchanged(ctx: &Ctx, region: &[Weak<Block>]) -> bool {
    region.iter().all(|r| r.upgrade().is_some_and(|r| r.same_bytes(ctx.ram)))
}

fn get_block(ctx: &mut Ctx, caches: &mut Caches, stats: &mut Stats) -> Result<Rc<Block>, Exception> {
    let bits = ctx.bits;
    let rip = ctx.s.rip;
    let cs = ctx.s.seg[sreg::CS];
    if bits != 64 && rip > cs.limit as u64 {
        return Err(Exception::gp(0));
    }
    let la = if bits == 64 { rip } else { (cs.base.wrapping_add(rip)) & 0xFFFF_FFFF };
    let user = ctx.s.cpl() == 3;
    let pa = match ctx.s.tlb.lookup(user, TlbKind::Fetch, la, 1) {
        Some(p) => p as u64 - ctx.ram.host_base() as u64,
        None => ctx.translate(la, TlbKind::Fetch, user)?,
    };
    let key = (rip, pa, bits);
    let ji = JmpCache::index(rip);
    if caches.jmp.blocks[ji].0 == key {
        if let Some(b) = &caches.jmp.blocks[ji].1 {
            if b.valid(ctx.code) {
                return Ok(b.clone());
            }
        }
    }
    if let Some(b) = caches.blocks.get(&key) {
        if b.valid(ctx.code) || revalidate(ctx, b) {
            caches.jmp.blocks[ji] = (key, Some(b.clone()));
            return Ok(b.clone());
        }
    }
    let fetch = &mut *caches.fetch;
    // Decode a new block from this page.
    // Enough for the longest block (a cut before the page's end only ends a block early:
    // the first instruction always fits).
    ctx.fetch_page(la, fetch, (MAX_BLOCK_INSNS * 15) as u64)?;
    let mut insns = Vec::with_capacity(16);
    let mut page2 = pa & !0xFFF;
    {
        let mut dec = Decoder::with_ip(bits, fetch, rip, DecoderOptions::NONE);
        let mut ins = Instruction::default();
        while insns.len() < MAX_BLOCK_INSNS {
            let pos = dec.position();
            dec.decode_out(&mut ins);
            if ins.is_invalid() && dec.last_error() == DecoderError::NoMoreBytes {
                if insns.is_empty() {
                    // The first instruction crosses into the next page: fetch 15 more bytes.
                    let next_la = if bits == 64 { (la | 0xFFF).wrapping_add(1) } else { ((la | 0xFFF) + 1) & 0xFFFF_FFFF };
                    let mut buf2 = Vec::new();
                    let pa2 = ctx.fetch_page(next_la, &mut buf2, 15)?;
                    page2 = pa2 & !0xFFF;
                    let mut bytes = fetch[pos..].to_vec();
                    bytes.extend_from_slice(&buf2);
                    let mut d2 = Decoder::with_ip(bits, &bytes, rip, DecoderOptions::NONE);
                    d2.decode_out(&mut ins);
                    insns.push(ins);
                }
                break;
            }
            insns.push(ins);
            // HLT ends the block too: what follows runs only after an interrupt, entered
            // through the run loop (and would only cost tier 1 compile time).
            if ins.flow_control() != FlowControl::Next || ins.is_invalid() || ins.mnemonic() == Mnemonic::Hlt {
                break;
            }
        }
    }
    stats.blocks_decoded += 1;
    let p1 = pa & !0xFFF;
    for p in [p1, page2] {
        // A page already holding code has no write entries (they are never filled for it).
        if !ctx.code.is_code_page(p) {
            ctx.s.tlb.flush_writes_to(p);
        }
    }
    let g1 = ctx.code.mark(p1);
    let g2 = ctx.code.mark(page2);
    let end = insns.last().map_or(rip, |i| i.next_ip());
    let bytes = fetch.get(..end.wrapping_sub(rip) as usize).filter(|_| page2 == p1).map_or_else(Box::default, Into::into);
    if caches.blocks.len() >= MAX_BLOCKS {
        caches.drop_blocks(stats);
    }
    let fast = insns.iter().map(|i| Fast::decode(i, bits)).collect();
    let b = Rc::new(Block {
        rip,
        end,
        bits,
        next: Default::default(),
        next_fast: Default::default(),
        insns: insns.into_boxed_slice(),
        fast,
        pages: [p1, page2],
        gens: [Cell::new(g1), Cell::new(g2)],
        hits: Cell::new(0),
        tier1: Cell::new(None),
        pa,
        bytes,
        region: Cell::default(),
        unlink: Cell::new(false),
    });
    caches.blocks.insert(key, b.clone());
    caches.jmp.blocks[ji] = (key, Some(b.clone()));
    Ok(b)
}

impl Cpu {
    /// A human-readable dump of the registers and the instruction at RIP (for error reports
    /// and `--stats`).
    pub fn describe(&mut self) -> String {
        use iced_x86::Formatter;
        let s = &*self.s;
        let names = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
        let mut out = String::new();
        for (k, n) in names.iter().enumerate() {
            out += &format!("{n}={:016x}{}", s.regs[k], if k % 4 == 3 { "\n" } else { " " });
        }
        out += &format!(
            "rip={:016x} rflags={:08x} cpl={} cs={:04x}/{:x} ss={:04x} cr0={:x} cr2={:x} cr3={:x} cr4={:x} efer={:x} icount={}\n",
            s.rip,
            s.get_rflags(),
            s.cpl(),
            s.seg[sreg::CS].selector,
            s.seg[sreg::CS].attr,
            s.seg[sreg::SS].selector,
            s.cr0,
            s.cr2,
            s.cr3,
            s.cr4,
            s.efer,
            s.icount
        );
        let bits = s.code_bits();
        let la = if bits == 64 { s.rip } else { (s.seg[sreg::CS].base + s.rip) & 0xFFFF_FFFF };
        let mut bytes = Vec::new();
        for k in 0..16u64 {
            match self.debug_read_linear(la + k) {
                Some(b) => bytes.push(b),
                None => break,
            }
        }
        let mut dec = Decoder::with_ip(bits, &bytes, s.rip, DecoderOptions::NONE);
        let mut fmt = iced_x86::IntelFormatter::new();
        let mut text = String::new();
        if dec.can_decode() {
            let ins = dec.decode();
            fmt.format(&ins, &mut text);
        }
        out += &format!("code: {:02x?}  {text}\n", &bytes);
        out
    }

    /// Translate linear `la` through the current page tables as an access `acc` would, without
    /// side effects (no A/D updates, no TLB fill): the physical address, or the #PF error code
    /// the access would raise.
    pub fn debug_translate(&self, la: u64, acc: heron_softmmu::Access) -> Result<u64, u32> {
        use crate::state::cr;
        use heron_softmmu::{walk, PagingMode, PagingRegs};
        let s = &*self.s;
        let mode = s.paging_mode();
        if mode == PagingMode::None {
            return Ok(la & s.a20_mask);
        }
        let mut ram = self.ram.clone();
        let regs = PagingRegs { cr3: s.cr3, wp: s.cr0 & cr::CR0_WP != 0, nxe: s.efer & cr::EFER_NXE != 0, pge: false, set_ad: false };
        walk(ram.as_mut_slice(), mode, regs, la, acc).map(|t| t.paddr & s.a20_mask).map_err(|f| f.error_code)
    }

    /// Read one byte at a linear address through the current page tables without side
    /// effects (no A/D updates, no TLB fill); `None` if unmapped or not RAM.
    pub fn debug_read_linear(&self, la: u64) -> Option<u8> {
        let pa = self.debug_translate(la, heron_softmmu::Access::default()).ok()?;
        self.ram.as_slice().get(pa as usize).copied()
    }

    /// Write `data` at linear address `la` for a debugger: byte by byte through the current
    /// page tables (regardless of write protection, as a debugger may patch code), invalidating
    /// decoded code there. Returns the number of bytes written: less than `data.len()` where a
    /// page is unmapped or not RAM.
    pub fn debug_write_linear(&mut self, la: u64, data: &[u8]) -> usize {
        for (k, b) in data.iter().enumerate() {
            let Ok(pa) = self.debug_translate(la.wrapping_add(k as u64), heron_softmmu::Access::default()) else { return k };
            if pa >= self.ram.size() {
                return k;
            }
            if self.code.is_code_page(pa & !0xFFF) {
                self.code.invalidate_page(pa & !0xFFF);
            }
            if self.ram.write_bytes(pa, &[*b]).is_err() {
                return k;
            }
        }
        data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TestCpu, CODE};

    /// `call CODE+0x100; add r8,rax; mov [CODE+0x101],cl; dec ecx; jnz` three times, the
    /// callee `mov eax,imm32; ret` with the immediate patched by each pass.
    fn patching_loop() -> Vec<u8> {
        let mut code = vec![0x45, 0x31, 0xC0, 0xB9, 3, 0, 0, 0];
        let top = CODE + code.len() as u64;
        let rel = (CODE + 0x100) as i64 - (top + 5) as i64;
        code.push(0xE8);
        code.extend_from_slice(&(rel as i32).to_le_bytes());
        code.extend_from_slice(&[0x49, 0x01, 0xC0]); // add r8, rax
        code.extend_from_slice(&[0x88, 0x0C, 0x25]); // mov [abs32], cl
        code.extend_from_slice(&((CODE + 0x101) as u32).to_le_bytes());
        code.extend_from_slice(&[0xFF, 0xC9]); // dec ecx
        let back = top as i64 - (CODE + code.len() as u64 + 2) as i64;
        code.extend_from_slice(&[0x75, back as u8, 0xF4]); // jnz top; hlt
        code.resize(0x100, 0xCC);
        code.extend_from_slice(&[0xB8, 0, 0, 0, 0, 0xC3]); // mov eax, 0; ret
        code
    }

    /// Tier 0 links blocks of one page and follows the links (here call → callee → return
    /// site); stores into the page still take effect at the next run of the code they change.
    #[test]
    fn tier0_links_blocks_and_self_modifying_code_still_counts() {
        let mut t = TestCpu::new();
        let code = patching_loop();
        assert_eq!(t.run(&code, 1000), ExitReason::Halted);
        assert_eq!(t.exception(), None);
        assert_eq!(t.cpu.s.regs[8], 3 + 2, "each pass saw the previous pass's patch");

        // Without the patching store the blocks stay valid: after the first pass, the call
        // site's block links to the callee's, and the callee's to the return site.
        let mut code = code;
        code[16..23].copy_from_slice(&[0x0F, 0x1F, 0x80, 0, 0, 0, 0]); // 7-byte NOP
        assert_eq!(t.run(&code, 1000), ExitReason::Halted);
        let block_at = |t: &TestCpu, rip: u64| t.cpu.blocks.get(&(rip, rip, 64)).cloned().expect("decoded");
        let linked_rip = |b: &Block| {
            let w = b.next[1].take();
            let r = w.as_ref().and_then(Weak::upgrade).map(|n| n.rip);
            b.next[1].set(w);
            r
        };
        assert_eq!(linked_rip(&block_at(&t, CODE + 8)), Some(CODE + 0x100), "call site → callee");
        assert_eq!(linked_rip(&block_at(&t, CODE + 0x100)), Some(CODE + 13), "callee → return site");
    }
}

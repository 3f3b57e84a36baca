//! Tier 1 of Heron's CPU: blocks that proved hot in the tier-0 interpreter are translated to
//! host code with Cranelift (DESIGN.md §2–§7).
//!
//! [`Jit`] implements [`heron_cpu::tier1::Translator`]: the run loop offers it a decoded block
//! once the block has run [`heron_cpu::block::TIER1_THRESHOLD`] times; [`lift`] turns the block
//! into Cranelift IR (registers as SSA variables, lazy flags, inline TLB fast path, helpers for
//! the rest); the machine code is copied into a [`arena::CodeArena`] that is flushed whole when
//! full.

#![warn(missing_docs)]

pub mod arena;
mod lift;

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Instant;

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I32, I64};
use cranelift_codegen::ir::{AbiParam, Block, BlockArg, InstBuilder, MemFlagsData, Signature, UserFuncName, Value};
use cranelift_codegen::isa::{CallConv, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use heron_cpu::state::CpuState;
use heron_cpu::tier1::{JitEnv, JumpEntry, LinkSlot, TbInfo, Tier1Enter, Tier1Fn, TranslateError, Translator, TranslatorStats};
use heron_softmmu::TlbEntry;
use iced_x86::Instruction;
use lift::HelperId;

use crate::arena::CodeArena;

/// Size of the code arena in bytes (reserved address space; pages are touched as used).
pub const DEFAULT_ARENA_BYTES: usize = 64 << 20;

/// Link slots per arena epoch.
const LINK_SLOTS: usize = 1 << 18;

/// Errors creating a [`Jit`].
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    /// Cranelift does not support this host, or rejected a setting.
    #[error("Cranelift: {0}")]
    Isa(String),
    /// The executable code arena could not be mapped.
    #[error("mapping the code arena: {0}")]
    Arena(#[from] std::io::Error),
}

/// Code-generation settings.
#[derive(Clone, Debug)]
pub struct JitConfig {
    /// Cranelift `opt_level`: `"none"` or `"speed"`.
    pub opt_level: &'static str,
    /// Cranelift `regalloc_algorithm`: `"single_pass"` (fast to run) or `"backtracking"`.
    pub regalloc: &'static str,
    /// Code arena size in bytes.
    pub arena_bytes: usize,
    /// Lockstep check mode: every store takes the helper (which records it), none is inline.
    pub lockstep: bool,
}

impl Default for JitConfig {
    fn default() -> Self {
        // Measured on the kit's boot (regions of up to 8 blocks): opt_level "speed" compiles
        // 40% slower for no gain in run time; the single-pass register allocator compiles
        // 40% faster but its spills cost more than that.
        JitConfig { opt_level: "none", regalloc: "backtracking", arena_bytes: DEFAULT_ARENA_BYTES, lockstep: false }
    }
}

/// The Cranelift translator. Translates on the caller's thread ([`Translator::translate`])
/// or, for [`Translator::submit`], on a background thread started at the first request: the
/// host has two cores, and Cranelift's time then no longer stops the guest (tier 0 runs the
/// block meanwhile; both tiers retire the same instructions, so guest output is unchanged).
pub struct Jit {
    compiler: Compiler,
    arena: CodeArena,
    /// The trampoline ([`Tier1Enter`]), in a mapping of its own that flushes leave alone.
    enter: Tier1Enter,
    _enter_code: CodeArena,
    /// Copies of the translated instructions: translations pass their addresses to
    /// `helper_exec`, so they live until the next flush.
    insns: Vec<Box<[Instruction]>>,
    links: LinkTable,
    /// Each translation's link slots (indices in `links`), by its address.
    slots_of: HashMap<u64, std::ops::Range<usize>>,
    /// `/tmp/perf-PID.map` when `HERON_PERF_MAP` is set, so `perf report` names translations.
    perf_map: Option<std::io::BufWriter<std::fs::File>>,
    /// `HERON_JIT_DUMP=DIR`: each translation's host code (`ADDR.bin`) and guest instructions
    /// (`ADDR.txt`) are written there, ADDR as in the perf map.
    dump_dir: Option<std::path::PathBuf>,
    stats: TranslatorStats,
    background: Option<Background>,
    /// Flushes so far: a background result made before the last flush refers to link slots
    /// since reused, and is dropped.
    epoch: u64,
}

/// The background compiler thread and its two queues.
struct Background {
    requests: Option<mpsc::Sender<(u64, u64, Request)>>,
    results: mpsc::Receiver<(u64, u64, Result<Compiled, TranslateError>)>,
    /// Results sent so far, and taken: `poll` runs between every two guest blocks, and an
    /// atomic load is cheaper than an empty channel's `try_recv`.
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    taken: u64,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Cranelift's state for compiling regions (one per compiling thread).
struct Compiler {
    isa: OwnedTargetIsa,
    ctx: cranelift_codegen::Context,
    fb_ctx: FunctionBuilderContext,
    lockstep: bool,
    /// Addresses of the helper stubs ([`Compiler::helper_stub`]), by [`HelperId`].
    stubs: [u64; HelperId::ALL.len()],
}

/// A region to compile, with what its code refers to already allocated by the translator.
struct Request {
    /// Copies of the region's blocks, entry first (their addresses end up in the code).
    blocks: Vec<Box<[Instruction]>>,
    cpl: u8,
    bits: u32,
    /// Fresh link slots for exits to constant addresses, used from the end.
    slots: Vec<u64>,
    /// Their indices in the [`LinkTable`] (consecutive).
    slot_range: std::ops::Range<usize>,
    null_slot: u64,
}

/// A compiled region: position-independent machine code, and the blocks it refers to.
struct Compiled {
    code: Vec<u8>,
    slot_range: std::ops::Range<usize>,
    blocks: Vec<Box<[Instruction]>>,
    lifted: u64,
    /// Time compiling, in ns.
    ns: u64,
}

/// Link slots, one per exit to a constant address, reset with the arena.
pub(crate) struct LinkTable {
    slots: Box<[LinkSlot]>,
    used: usize,
}

impl LinkTable {
    fn new(n: usize) -> Self {
        LinkTable { slots: (0..n).map(|_| LinkSlot { target: 0, page: u64::MAX }).collect(), used: 1 }
    }

    /// A fresh slot for an exit of a region in guest-physical page `page`: its address, or
    /// `None` when the table is full (the exit then always returns to the run loop).
    pub(crate) fn alloc(&mut self, page: u64) -> Option<u64> {
        let s = self.slots.get_mut(self.used)?;
        *s = LinkSlot { target: 0, page };
        self.used += 1;
        Some(s as *mut LinkSlot as u64)
    }

    /// Slot 0: never handed out, never linked (its `page` matches no block).
    fn null_slot(&mut self) -> u64 {
        &mut self.slots[0] as *mut LinkSlot as u64
    }

    fn reset(&mut self) {
        self.used = 1;
    }
}

impl Jit {
    /// A translator for the host CPU.
    ///
    /// # Errors
    /// The host is not supported by Cranelift, or the code arena cannot be mapped.
    pub fn new(config: &JitConfig) -> Result<Self, JitError> {
        let mut flags = settings::builder();
        let set = |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| JitError::Isa(format!("{k}={v}: {e}")));
        set(&mut flags, "opt_level", config.opt_level)?;
        set(&mut flags, "regalloc_algorithm", config.regalloc)?;
        // The IR verifier in the lockstep check mode only (it costs ~50% more compile time).
        set(&mut flags, "enable_verifier", if config.lockstep { "true" } else { "false" })?;
        set(&mut flags, "unwind_info", "false")?;
        let isa = cranelift_native::builder()
            .map_err(|e| JitError::Isa(e.to_string()))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| JitError::Isa(e.to_string()))?;
        let mut compiler = Compiler::new(isa, config.lockstep, [0; HelperId::ALL.len()]);
        let mut enter_code = CodeArena::new(ENTER_CODE_BYTES)?;
        let too_big = || JitError::Isa("trampoline and stubs larger than their arena".into());
        // Beside the translations (see `install`): the trampoline and the helper stubs.
        let dump = |name: String, code: &[u8]| {
            if let Some(dir) = std::env::var_os("HERON_JIT_DUMP") {
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(std::path::Path::new(&dir).join(name), code);
            }
        };
        for h in HelperId::ALL {
            let stub = compiler.helper_stub(h).map_err(JitError::Isa)?;
            let p = enter_code.alloc(&stub).ok_or_else(too_big)? as u64;
            compiler.stubs[h as usize] = p;
            dump(format!("stub-{p:x}.bin"), &stub);
        }
        let code = compiler.trampoline().map_err(JitError::Isa)?;
        let p = enter_code.alloc(&code).ok_or_else(too_big)?;
        dump(format!("trampoline-{:x}.bin", p as usize), &code);
        // SAFETY: `p` holds the trampoline Cranelift compiled for the `Tier1Enter` signature
        // (three pointers in, u64 out, the host's C calling convention), with no relocations.
        let enter = unsafe { std::mem::transmute::<*const u8, Tier1Enter>(p) };
        Ok(Jit {
            compiler,
            arena: CodeArena::new(config.arena_bytes)?,
            enter,
            _enter_code: enter_code,
            insns: Vec::new(),
            links: LinkTable::new(LINK_SLOTS),
            slots_of: HashMap::new(),
            perf_map: std::env::var_os("HERON_PERF_MAP").and_then(|_| std::fs::File::create(format!("/tmp/perf-{}.map", std::process::id())).ok()).map(std::io::BufWriter::new),
            dump_dir: std::env::var_os("HERON_JIT_DUMP").map(std::path::PathBuf::from).filter(|d| std::fs::create_dir_all(d).is_ok()),
            stats: TranslatorStats::default(),
            background: None,
            epoch: 0,
        })
    }

    /// The request for `tb`: copies of its blocks and link slots for its exits (at most two
    /// per block; none when the region spans pages, or when the table is full). Only 64-bit
    /// code is translated.
    fn request(&mut self, tb: &TbInfo) -> Result<Request, TranslateError> {
        if tb.bits != 64 {
            return Err(TranslateError::Unsupported("only 64-bit code is translated"));
        }
        let blocks: Vec<Box<[Instruction]>> = tb.blocks.iter().map(|b| Box::<[Instruction]>::from(*b)).collect();
        let first = self.links.used;
        let slots = match tb.page {
            Some(page) => (0..2 * blocks.len()).map_while(|_| self.links.alloc(page)).collect::<Vec<_>>().into_iter().rev().collect(),
            None => Vec::new(),
        };
        Ok(Request { blocks, cpl: tb.cpl, bits: tb.bits, slots, slot_range: first..self.links.used, null_slot: self.links.null_slot() })
    }

    /// Copy compiled code into the arena and keep what it refers to until the next flush
    /// (`background`: it was compiled on the background thread).
    fn install(&mut self, c: Compiled, background: bool) -> Result<Tier1Fn, TranslateError> {
        let p = self.arena.alloc(&c.code).ok_or(TranslateError::CacheFull)?;
        let n: usize = c.blocks.iter().map(|b| b.len()).sum();
        if let Some(map) = self.perf_map.as_mut() {
            use std::io::Write;
            // perf's JIT symbol map (tools/perf/Documentation/jit-interface.txt).
            let _ = writeln!(map, "{:x} {:x} guest_{:x}_{}i", p as usize, c.code.len(), c.blocks[0][0].ip(), n);
            let _ = map.flush();
        }
        if let Some(dir) = &self.dump_dir {
            // The host code and the guest instructions it came from, for `objdump -b binary`.
            let _ = std::fs::write(dir.join(format!("{:x}.bin", p as usize)), &c.code);
            let text: String = c.blocks.iter().map(|b| b.iter().map(|i| format!("{:016x}  {i}\n", i.ip())).collect::<String>() + "--\n").collect();
            let _ = std::fs::write(dir.join(format!("{:x}.txt", p as usize)), text);
        }
        self.stats.translations += 1;
        self.stats.translated_insns += n as u64;
        self.stats.lifted_insns += c.lifted;
        self.stats.code_bytes += c.code.len() as u64;
        self.stats.compile_ns += c.ns;
        if background {
            self.stats.background_ns += c.ns;
        }
        self.insns.extend(c.blocks);
        self.slots_of.insert(p as u64, c.slot_range);
        // The code was compiled for the signature the trampoline calls; the link slots and
        // instructions it refers to live until the next flush.
        Ok(Tier1Fn(std::ptr::NonNull::new(p as *mut u8).expect("arena addresses are not null")))
    }

    /// The background thread, started on first use.
    fn background(&mut self) -> &mut Background {
        let (lockstep, stubs) = (self.compiler.lockstep, self.compiler.stubs);
        let isa = self.compiler.isa.clone();
        self.background.get_or_insert_with(|| {
            let (req_tx, req_rx) = mpsc::channel::<(u64, u64, Request)>();
            let (res_tx, res_rx) = mpsc::channel();
            let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let counter = sent.clone();
            let thread = std::thread::Builder::new()
                .name("heron-jit".into())
                .spawn(move || {
                    let mut compiler = Compiler::new(isa, lockstep, stubs);
                    // Requests not started yet. The newest goes first: when many regions
                    // turn hot together, the one that turned hot last is the code running now
                    // (a delay loop, say), while older ones may be done running. Measured on
                    // the kit's boot: 7% fewer instructions left in tier 0 than in order.
                    let mut queue = Vec::new();
                    loop {
                        if queue.is_empty() {
                            match req_rx.recv() {
                                Ok(r) => queue.push(r),
                                Err(_) => return,
                            }
                        }
                        loop {
                            match req_rx.try_recv() {
                                Ok(r) => queue.push(r),
                                Err(mpsc::TryRecvError::Empty) => break,
                                Err(mpsc::TryRecvError::Disconnected) => return,
                            }
                        }
                        let Some((epoch, id, req)) = queue.pop() else { return };
                        if res_tx.send((epoch, id, compiler.compile(req))).is_err() {
                            break;
                        }
                        counter.fetch_add(1, std::sync::atomic::Ordering::Release);
                    }
                })
                .ok();
            Background { requests: Some(req_tx), results: res_rx, sent, taken: 0, thread }
        })
    }
}

impl Drop for Jit {
    fn drop(&mut self) {
        if let Some(bg) = self.background.as_mut() {
            // Closing the request queue ends the thread after its current region.
            bg.requests = None;
            if let Some(t) = bg.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Translations' calling convention: Cranelift's `winch` convention has no callee-saved
/// registers, so a translation saves none in its prologue (the trampoline saves them once per
/// run of a chain).
const TRANSLATION_CC: CallConv = CallConv::Winch;

/// Bytes of the mapping that holds the trampoline and the helper stubs.
const ENTER_CODE_BYTES: usize = 16 * 1024;

/// The signature of a helper stub: `env` only (the helper's other arguments are in
/// [`JitEnv::args`]), in Cranelift's `preserve_all` convention: a call to it clobbers no
/// register, so the values a translation keeps in registers stay there across a slow path
/// (with a clobbering call, the register allocator spills them, often on the fast path too).
pub(crate) fn stub_sig() -> Signature {
    let mut s = Signature::new(CallConv::PreserveAll);
    s.params.push(AbiParam::new(I64));
    s
}

impl Compiler {
    /// The [`Tier1Enter`] trampoline: calls translations in [`TRANSLATION_CC`] while they
    /// return a successor, or left through a link slot whose successor the lookup finds, and
    /// the budget and exit request allow.
    ///
    /// The lookup (QEMU's lookup_and_goto_ptr, here once for all translations): the
    /// successor's entry in the run loop's table of translations by RIP must have the same
    /// RIP and mode, and the fetch TLB must still map RIP's page to the physical page the
    /// block came from; then the slot is linked to it when both lie in the same page (the
    /// table holds one-page blocks only). A miss returns to the run loop, which decides (the
    /// table is all empty entries when it must: lockstep mode, an interrupt line up).
    fn trampoline(&mut self) -> Result<Vec<u8>, String> {
        const T: MemFlagsData = MemFlagsData::trusted();
        self.ctx.clear();
        self.ctx.func.signature = self.sig(&[I64, I64, I64], Some(I64));
        let tsig = self.sig_cc(TRANSLATION_CC, &[I64, I64], Some(I64));
        let frontend = self.isa.frontend_config();
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fb_ctx);
            let tsig = b.import_signature(tsig);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            let (lp, check, cont, done) = (b.create_block(), b.create_block(), b.create_block(), b.create_block());
            b.append_block_param(lp, I64);
            b.append_block_param(check, I64);
            b.switch_to_block(entry);
            let p = b.block_params(entry).to_vec();
            let (env, state) = (p[0], p[1]);
            b.ins().jump(lp, &[BlockArg::Value(p[2])]);
            let count = |b: &mut FunctionBuilder, off: i32| {
                let n = b.ins().load(I64, T, env, off);
                let n = b.ins().iadd_imm_s(n, 1);
                b.ins().store(T, n, env, off);
            };
            b.switch_to_block(lp);
            let f = b.block_params(lp)[0];
            let z = b.ins().iconst(I64, 0);
            b.ins().store(T, z, env, JitEnv::LAST_SLOT_OFFSET);
            let call = b.ins().call_indirect(tsig, f, &[env, state]);
            let next = b.inst_results(call)[0];
            let miss = b.create_block();
            b.ins().brif(next, check, &[BlockArg::Value(next)], miss, &[]);
            b.switch_to_block(miss);
            let slot = b.ins().load(I64, T, env, JitEnv::LAST_SLOT_OFFSET);
            let lookup = b.create_block();
            b.ins().brif(slot, lookup, &[], done, &[]);
            b.switch_to_block(lookup);
            let next = Self::lookup(&mut b, env, state, slot, done);
            b.ins().jump(check, &[BlockArg::Value(next)]);
            b.switch_to_block(check);
            let next = b.block_params(check)[0];
            let ic = b.ins().load(I64, T, state, std::mem::offset_of!(CpuState, icount) as i32);
            let until = b.ins().load(I64, T, env, JitEnv::UNTIL_OFFSET);
            let req = b.ins().load(I32, T, state, std::mem::offset_of!(CpuState, exit_request) as i32);
            let over = b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, ic, until);
            let req = b.ins().icmp_imm_s(IntCC::NotEqual, req, 0);
            let stop = b.ins().bor(over, req);
            b.ins().brif(stop, done, &[], cont, &[]);
            b.switch_to_block(cont);
            count(&mut b, JitEnv::CHAINED_OFFSET);
            b.ins().jump(lp, &[BlockArg::Value(next)]);
            b.switch_to_block(done);
            let z = b.ins().iconst(I64, 0);
            b.ins().return_(&[z]);
            b.seal_all_blocks();
            b.finalize(frontend);
        }
        self.finish_code("the trampoline")
    }

    /// The trampoline's lookup of the successor of a translation that left through `slot` (see
    /// [`Compiler::trampoline`]): the translation found, or a jump to `miss`.
    fn lookup(b: &mut FunctionBuilder, env: Value, state: Value, slot: Value, miss: Block) -> Value {
        const T: MemFlagsData = MemFlagsData::trusted();
        let next = |b: &mut FunctionBuilder, bad: Value| {
            let ok = b.create_block();
            b.ins().brif(bad, miss, &[], ok, &[]);
            b.switch_to_block(ok);
        };
        let rip = b.ins().load(I64, T, state, std::mem::offset_of!(CpuState, rip) as i32);
        let mode = b.ins().load(I64, T, env, JitEnv::EXIT_MODE_OFFSET);
        let table = b.ins().load(I64, T, env, JitEnv::JUMP_TABLE_OFFSET);
        // The entry: jump_cache_index(rip) * size_of::<JumpEntry>().
        debug_assert_eq!(std::mem::size_of::<JumpEntry>(), 32);
        let sh = b.ins().ushr_imm_s(rip, 12);
        let x = b.ins().bxor(rip, sh);
        let x = b.ins().band_imm_s(x, (heron_cpu::tier1::JUMP_CACHE_SIZE - 1) as i64);
        let off = b.ins().ishl_imm_s(x, 5);
        let e = b.ins().iadd(table, off);
        let erip = b.ins().load(I64, T, e, JumpEntry::RIP_OFFSET);
        let bad = b.ins().icmp(IntCC::NotEqual, erip, rip);
        next(b, bad);
        let emode = b.ins().uload32(T, e, JumpEntry::MODE_OFFSET);
        let key = b.ins().band_imm_s(mode, 0xFFFF_FFFF);
        let bad = b.ins().icmp(IntCC::NotEqual, emode, key);
        next(b, bad);
        // The fetch TLB entry of RIP's page ((rip >> 12) & (TLB_SIZE - 1)) * 32 into the table
        // of the translation's CPL.
        debug_assert_eq!(std::mem::size_of::<TlbEntry>(), 32);
        let sh = b.ins().ushr_imm_s(rip, 12 - 5);
        let slot_off = b.ins().band_imm_s(sh, ((heron_softmmu::tlb::TLB_SIZE - 1) << 5) as i64);
        let table_off = b.ins().ushr_imm_s(mode, 32);
        let tlb = b.ins().iadd(state, slot_off);
        let tlb = b.ins().iadd(tlb, table_off);
        let tag = b.ins().load(I64, T, tlb, 0);
        let page = b.ins().band_imm_s(rip, !0xFFF);
        let bad = b.ins().icmp(IntCC::NotEqual, tag, page);
        next(b, bad);
        let pa = b.ins().load(I64, T, tlb, std::mem::offset_of!(TlbEntry, paddr) as i32);
        let epage = b.ins().load(I64, T, e, JumpEntry::PAGE_OFFSET);
        let bad = b.ins().icmp(IntCC::NotEqual, pa, epage);
        next(b, bad);
        let f = b.ins().load(I64, T, e, JumpEntry::F_OFFSET);
        // Link a slot of the same page (its first use; later exits take the link).
        let spage = b.ins().load(I64, T, slot, std::mem::offset_of!(LinkSlot, page) as i32);
        let (dolink, counted) = (b.create_block(), b.create_block());
        b.set_cold_block(dolink);
        let same = b.ins().icmp(IntCC::Equal, spage, epage);
        b.ins().brif(same, dolink, &[], counted, &[]);
        b.switch_to_block(dolink);
        b.ins().store(T, f, slot, std::mem::offset_of!(LinkSlot, target) as i32);
        b.ins().jump(counted, &[]);
        b.switch_to_block(counted);
        let n = b.ins().load(I64, T, env, JitEnv::LOOKUPS_OFFSET);
        let n = b.ins().iadd_imm_s(n, 1);
        b.ins().store(T, n, env, JitEnv::LOOKUPS_OFFSET);
        f
    }

    /// The stub of helper `h`: takes `env` ([`stub_sig`]), calls the helper (a
    /// [`heron_cpu::tier1::Helper`], in the host's C convention) with `env` and the arguments
    /// in [`JitEnv::args`] (those it does not take, 0), saving every register it clobbers.
    fn helper_stub(&mut self, h: HelperId) -> Result<Vec<u8>, String> {
        let (helper, args) = h.helper();
        self.ctx.clear();
        self.ctx.func.signature = stub_sig();
        let hsig = self.sig(&[I64; 4], None);
        let frontend = self.isa.frontend_config();
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fb_ctx);
            let hsig = b.import_signature(hsig);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let mut p = b.block_params(entry).to_vec();
            for k in 0..args {
                p.push(b.ins().load(I64, MemFlagsData::trusted(), p[0], JitEnv::ARGS_OFFSET + 8 * k as i32));
            }
            let zero = b.ins().iconst(I64, 0);
            p.resize(4, zero);
            let f = b.ins().iconst(I64, helper as usize as i64);
            b.ins().call_indirect(hsig, f, &p);
            b.ins().return_(&[]);
            b.seal_all_blocks();
            b.finalize(frontend);
        }
        self.finish_code("the helper stub")
    }

    /// The machine code of the function in `self.ctx`, which must need no relocations.
    fn finish_code(&mut self, what: &str) -> Result<Vec<u8>, String> {
        let code = self.ctx.compile(&*self.isa, &mut ControlPlane::default()).map_err(|e| format!("{what}: {:?}", e.inner))?;
        if !code.buffer.relocs().is_empty() {
            return Err(format!("unexpected relocations in {what}"));
        }
        Ok(code.code_buffer().to_vec())
    }

    fn new(isa: OwnedTargetIsa, lockstep: bool, stubs: [u64; HelperId::ALL.len()]) -> Self {
        Compiler { isa, ctx: cranelift_codegen::Context::new(), fb_ctx: FunctionBuilderContext::new(), lockstep, stubs }
    }

    fn sig(&self, params: &[cranelift_codegen::ir::Type], ret: Option<cranelift_codegen::ir::Type>) -> Signature {
        self.sig_cc(CallConv::triple_default(self.isa.triple()), params, ret)
    }

    fn sig_cc(&self, cc: CallConv, params: &[cranelift_codegen::ir::Type], ret: Option<cranelift_codegen::ir::Type>) -> Signature {
        let mut s = Signature::new(cc);
        s.params.extend(params.iter().map(|t| AbiParam::new(*t)));
        s.returns.extend(ret.map(AbiParam::new));
        s
    }

    fn compile(&mut self, req: Request) -> Result<Compiled, TranslateError> {
        let t0 = Instant::now();
        self.ctx.clear();
        self.ctx.func.signature = self.sig_cc(TRANSLATION_CC, &[I64, I64], Some(I64));
        self.ctx.func.name = UserFuncName::user(0, 0);
        let lifted;
        let frontend = self.isa.frontend_config();
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fb_ctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let (env, state) = (b.block_params(entry)[0], b.block_params(entry)[1]);
            let mut l = lift::Lifter::new(&mut b, env, state, self.stubs, req.cpl == 3, req.slots, req.null_slot);
            l.inline_stores = !self.lockstep;
            l.mode_key = heron_cpu::tier1::JumpEntry::mode(req.bits, req.cpl);
            let blocks: Vec<&[Instruction]> = req.blocks.iter().map(|b| &b[..]).collect();
            l.lift_region(&blocks);
            lifted = l.lifted;
            b.seal_all_blocks();
            b.finalize(frontend);
        }
        let code = self.ctx.compile(&*self.isa, &mut ControlPlane::default()).map_err(|e| TranslateError::Backend(format!("{:?}", e.inner)))?;
        if !code.buffer.relocs().is_empty() {
            return Err(TranslateError::Backend("unexpected relocations".into()));
        }
        Ok(Compiled { code: code.code_buffer().to_vec(), slot_range: req.slot_range, blocks: req.blocks, lifted, ns: t0.elapsed().as_nanos() as u64 })
    }
}

impl Translator for Jit {
    fn translate(&mut self, tb: &TbInfo) -> Result<Tier1Fn, TranslateError> {
        let req = self.request(tb)?;
        let c = self.compiler.compile(req)?;
        self.install(c, false)
    }

    fn submit(&mut self, id: u64, tb: &TbInfo) -> bool {
        let Ok(req) = self.request(tb) else { return false };
        let epoch = self.epoch;
        let bg = self.background();
        bg.thread.is_some() && bg.requests.as_ref().is_some_and(|q| q.send((epoch, id, req)).is_ok())
    }

    fn poll(&mut self) -> Option<(u64, Result<Tier1Fn, TranslateError>)> {
        loop {
            let bg = self.background.as_mut()?;
            if bg.sent.load(std::sync::atomic::Ordering::Acquire) == bg.taken {
                return None;
            }
            let (epoch, id, r) = bg.results.try_recv().ok()?;
            bg.taken += 1;
            if epoch == self.epoch {
                return Some((id, r.and_then(|c| self.install(c, true))));
            }
        }
    }

    fn flush(&mut self) {
        if self.arena.used() > 0 {
            self.stats.flushes += 1;
        }
        self.arena.reset();
        self.links.reset();
        self.slots_of.clear();
        self.insns.clear();
        self.epoch += 1;
    }

    fn unlink(&mut self, f: Tier1Fn) {
        if let Some(r) = self.slots_of.get(&f.addr()) {
            self.links.slots[r.clone()].iter_mut().for_each(|s| s.target = 0);
        }
    }

    fn stats(&self) -> TranslatorStats {
        self.stats.clone()
    }

    fn enter(&self) -> Tier1Enter {
        self.enter
    }
}

/// A translator with the default settings (`lockstep`: for the lockstep check mode), boxed
/// for [`heron_cpu::Cpu::translator`].
///
/// # Errors
/// As [`Jit::new`].
pub fn default_translator(lockstep: bool) -> Result<Box<dyn Translator>, JitError> {
    Ok(Box::new(Jit::new(&JitConfig { lockstep, ..JitConfig::default() })?))
}

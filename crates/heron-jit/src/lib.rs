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

use std::time::Instant;

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::types::{I32, I64};
use cranelift_codegen::ir::{AbiParam, Signature, UserFuncName};
use cranelift_codegen::isa::{CallConv, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use heron_cpu::tier1::{LinkSlot, TbInfo, Tier1Fn, TranslateError, Translator, TranslatorStats};
use iced_x86::Instruction;

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

/// The Cranelift translator.
pub struct Jit {
    isa: OwnedTargetIsa,
    ctx: cranelift_codegen::Context,
    fb_ctx: FunctionBuilderContext,
    arena: CodeArena,
    /// Copies of the translated instructions: translations pass their addresses to
    /// `helper_exec`, so they live until the next flush.
    insns: Vec<Box<[Instruction]>>,
    links: LinkTable,
    lockstep: bool,
    /// `/tmp/perf-PID.map` when `HERON_PERF_MAP` is set, so `perf report` names translations.
    perf_map: Option<std::io::BufWriter<std::fs::File>>,
    /// `HERON_JIT_DUMP=DIR`: each translation's host code (`ADDR.bin`) and guest instructions
    /// (`ADDR.txt`) are written there, ADDR as in the perf map.
    dump_dir: Option<std::path::PathBuf>,
    stats: TranslatorStats,
}

/// Link slots, one per exit to a constant address, reset with the arena.
pub(crate) struct LinkTable {
    slots: Box<[LinkSlot]>,
    used: usize,
}

impl LinkTable {
    fn new(n: usize) -> Self {
        LinkTable { slots: (0..n).map(|_| LinkSlot { target: 0, page: u64::MAX }).collect(), used: 2 }
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

    /// Slot 1: like slot 0, for exits that must go back to the run loop without looking the
    /// next translation up (budget or exit request, I/O, stores into code).
    fn stop_slot(&mut self) -> u64 {
        &mut self.slots[1] as *mut LinkSlot as u64
    }

    fn reset(&mut self) {
        self.used = 2;
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
        let opt = std::env::var("HERON_JIT_OPT").ok();
        set(&mut flags, "opt_level", opt.as_deref().unwrap_or(config.opt_level))?;
        set(&mut flags, "regalloc_algorithm", config.regalloc)?;
        set(&mut flags, "enable_verifier", "false")?;
        set(&mut flags, "unwind_info", "false")?;
        let isa = cranelift_native::builder()
            .map_err(|e| JitError::Isa(e.to_string()))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| JitError::Isa(e.to_string()))?;
        Ok(Jit {
            isa,
            ctx: cranelift_codegen::Context::new(),
            fb_ctx: FunctionBuilderContext::new(),
            arena: CodeArena::new(config.arena_bytes)?,
            insns: Vec::new(),
            links: LinkTable::new(LINK_SLOTS),
            lockstep: config.lockstep,
            perf_map: std::env::var_os("HERON_PERF_MAP").and_then(|_| std::fs::File::create(format!("/tmp/perf-{}.map", std::process::id())).ok()).map(std::io::BufWriter::new),
            dump_dir: std::env::var_os("HERON_JIT_DUMP").map(std::path::PathBuf::from).filter(|d| std::fs::create_dir_all(d).is_ok()),
            stats: TranslatorStats::default(),
        })
    }

    fn sig(&self, params: &[cranelift_codegen::ir::Type], ret: Option<cranelift_codegen::ir::Type>) -> Signature {
        let mut s = Signature::new(CallConv::triple_default(self.isa.triple()));
        s.params.extend(params.iter().map(|t| AbiParam::new(*t)));
        s.returns.extend(ret.map(AbiParam::new));
        s
    }
}

impl Translator for Jit {
    fn translate(&mut self, tb: &TbInfo) -> Result<Tier1Fn, TranslateError> {
        if tb.bits != 64 {
            return Err(TranslateError::Unsupported("only 64-bit code is translated"));
        }
        let t0 = Instant::now();
        let insns: Vec<Box<[Instruction]>> = tb.blocks.iter().map(|b| Box::<[Instruction]>::from(*b)).collect();
        self.ctx.clear();
        self.ctx.func.signature = self.sig(&[I64, I64], Some(I64));
        self.ctx.func.name = UserFuncName::user(0, self.stats.translations as u32);
        let (exec, load, store, flags, raise, lookup) = (
            self.sig(&[I64, I64], Some(I32)),
            self.sig(&[I64, I64, I32], Some(I64)),
            self.sig(&[I64, I64, I64, I32], None),
            self.sig(&[I64], Some(I64)),
            self.sig(&[I64, I32, I32], None),
            self.sig(&[I64], Some(I64)),
        );
        let lifted;
        let frontend = self.isa.frontend_config();
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fb_ctx);
            let sigs = lift::Sigs {
                exec: b.import_signature(exec),
                load: b.import_signature(load),
                store: b.import_signature(store),
                flags: b.import_signature(flags),
                raise: b.import_signature(raise),
                lookup: b.import_signature(lookup),
            };
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let (env, state) = (b.block_params(entry)[0], b.block_params(entry)[1]);
            let null_slot = self.links.null_slot();
            let stop_slot = self.links.stop_slot();
            let links = tb.page.map(|p| (&mut self.links, p));
            let mut l = lift::Lifter::new(&mut b, env, state, sigs, tb.cpl == 3, links, null_slot);
            l.inline_stores = !self.lockstep;
            l.stop_slot = stop_slot;
            l.mode_key = heron_cpu::tier1::JumpEntry::mode(tb.bits, tb.cpl, false);
            let blocks: Vec<&[Instruction]> = insns.iter().map(|b| &b[..]).collect();
            l.lift_region(&blocks);
            lifted = l.lifted;
            b.seal_all_blocks();
            b.finalize(frontend);
        }
        let code = self.ctx.compile(&*self.isa, &mut ControlPlane::default()).map_err(|e| TranslateError::Backend(format!("{:?}", e.inner)))?;
        if !code.buffer.relocs().is_empty() {
            return Err(TranslateError::Backend("unexpected relocations".into()));
        }
        let bytes = code.code_buffer();
        let len = bytes.len();
        let p = self.arena.alloc(bytes).ok_or(TranslateError::CacheFull)?;
        if let Some(map) = self.perf_map.as_mut() {
            use std::io::Write;
            // perf's JIT symbol map (tools/perf/Documentation/jit-interface.txt).
            let _ = writeln!(map, "{:x} {:x} guest_{:x}_{}i", p as usize, len, tb.blocks[0][0].ip(), insns.iter().map(|b| b.len()).sum::<usize>());
            let _ = map.flush();
        }
        if let Some(dir) = &self.dump_dir {
            // The host code and the guest instructions it came from, for `objdump -b binary`.
            let _ = std::fs::write(dir.join(format!("{:x}.bin", p as usize)), bytes);
            let text: String = insns.iter().map(|b| b.iter().map(|i| format!("{:016x}  {i}\n", i.ip())).collect::<String>() + "--\n").collect();
            let _ = std::fs::write(dir.join(format!("{:x}.txt", p as usize)), text);
        }
        self.stats.translations += 1;
        self.stats.translated_insns += insns.iter().map(|b| b.len() as u64).sum::<u64>();
        self.stats.lifted_insns += lifted;
        self.stats.code_bytes += len as u64;
        self.insns.extend(insns);
        self.stats.compile_ns += t0.elapsed().as_nanos() as u64;
        // SAFETY: `p` holds the function Cranelift just compiled for the `Tier1Fn` signature
        // (two pointers in, u32 out, the host's C calling convention), with no relocations.
        Ok(unsafe { std::mem::transmute::<*const u8, Tier1Fn>(p) })
    }

    fn flush(&mut self) {
        if self.arena.used() > 0 {
            self.stats.flushes += 1;
        }
        self.arena.reset();
        self.links.reset();
        self.insns.clear();
    }

    fn stats(&self) -> TranslatorStats {
        self.stats.clone()
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

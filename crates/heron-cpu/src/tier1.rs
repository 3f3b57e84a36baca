//! The contract between the run loop and a tier-1 translator (DESIGN.md §2): what translated
//! code is given, what it must leave in [`CpuState`], and the helpers it calls for everything it
//! does not do inline (QEMU's helper pattern).
//!
//! A translation is a host function `(env, state) -> next` for a region of tier-0 blocks, run
//! through the translator's trampoline ([`Tier1Enter`]). It starts with
//! the state exact at the block's first instruction and returns with the state exact again:
//! general registers, RIP, the lazy flags and `icount` written back. A fault inside it leaves
//! the state as it was before the faulting instruction (RIP on that instruction) and the
//! exception pending in [`JitEnv`]; the run loop delivers it (DESIGN.md §7).
//!
//! The CPU crate does not know how translations are made: a [`Translator`] (the `heron-jit`
//! crate, on Cranelift) is plugged into [`crate::Cpu`] by the machine.

use std::ffi::c_void;

use iced_x86::Instruction;

use crate::exec::Ctx;
use crate::state::CpuState;
use crate::system::IntSource;
use heron_softmmu::TlbKind;

/// A translated block's entry address. A translation takes `env` (the run loop's
/// [`JitEnv`]) and `state` and returns the translation to run next when the block left
/// through a linked exit (direct chaining), or 0: to have the trampoline look its successor
/// up when it left through a link slot not linked yet ([`JitEnv::last_slot`] set), else to go
/// back to the run loop (which also finds any exception pending in `env`). It uses the translator's own
/// calling convention (one without callee-saved registers, so that chaining costs little):
/// only the translator's [`Tier1Enter`] trampoline may call it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct Tier1Fn(pub std::ptr::NonNull<u8>);

impl Tier1Fn {
    /// The entry address as an integer (what link slots and [`JumpEntry`] hold).
    pub fn addr(self) -> u64 {
        self.0.as_ptr() as u64
    }
}

/// The translator's trampoline: runs translation `f`, then the translations each returns,
/// while the next is non-zero and `icount` is below [`JitEnv::until`] and no exit request is
/// set, clearing [`JitEnv::last_slot`] before each and counting [`JitEnv::chained`]. Returns 0.
pub type Tier1Enter = unsafe extern "C" fn(env: *mut JitEnv, state: *mut CpuState, f: *const u8) -> u64;

/// One direct-chaining link (QEMU's goto_tb slot): a translation's exit to a constant guest
/// address loads `target` and returns it. The run loop fills `target` once the block at that
/// address has a translation, if both blocks lie in the same single physical page `page`:
/// a store into that page invalidates both, so a link never outlives the code it joins
/// (DESIGN.md §6).
#[repr(C)]
#[derive(Debug)]
pub struct LinkSlot {
    /// The next translation, or 0 while unlinked.
    pub target: u64,
    /// Guest-physical page both blocks must lie in, or `u64::MAX` for an exit never linked.
    pub page: u64,
}

/// Entries of the run loop's table of translations by RIP (a power of two).
pub const JUMP_CACHE_SIZE: usize = 4096;

/// Index of RIP `rip` in the table of [`JumpEntry`]s.
#[inline]
pub fn jump_cache_index(rip: u64) -> usize {
    ((rip ^ (rip >> 12)) as usize) & (JUMP_CACHE_SIZE - 1)
}

/// One entry of the run loop's table of translations by RIP (QEMU's tb_jmp_cache), which
/// translated code searches inline at exits without a linked successor: valid while the
/// fetch TLB maps `rip`'s linear page to guest-physical `page` (the table is emptied when
/// code is invalidated anywhere). `#[repr(C)]`: translated code reads it at fixed offsets.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct JumpEntry {
    /// Guest RIP of the block, or `u64::MAX` for an empty entry.
    pub rip: u64,
    /// Guest-physical page the block was decoded from.
    pub page: u64,
    /// [`JumpEntry::mode`] of the translation.
    pub mode: u32,
    /// The translation.
    pub f: Option<Tier1Fn>,
}

impl JumpEntry {
    /// An empty entry.
    pub const EMPTY: JumpEntry = JumpEntry { rip: u64::MAX, page: 0, mode: 0, f: None };
    /// Byte offsets of the fields.
    pub const RIP_OFFSET: i32 = std::mem::offset_of!(JumpEntry, rip) as i32;
    #[allow(missing_docs)]
    pub const PAGE_OFFSET: i32 = std::mem::offset_of!(JumpEntry, page) as i32;
    #[allow(missing_docs)]
    pub const MODE_OFFSET: i32 = std::mem::offset_of!(JumpEntry, mode) as i32;
    #[allow(missing_docs)]
    pub const F_OFFSET: i32 = std::mem::offset_of!(JumpEntry, f) as i32;

    /// The mode key: code size in bits and CPL (never 0, so [`JumpEntry::EMPTY`] matches no
    /// translation).
    pub fn mode(bits: u32, cpl: u8) -> u32 {
        bits | (cpl as u32) << 8
    }
}

/// `flags` bit of [`helper_load`]/[`helper_store`]: a CPL-3 access (user TLB, U/S checks).
pub const ACCESS_USER: u32 = 1 << 9;

/// [`JitEnv::status`] after a load/store helper: the access completed.
pub const STATUS_OK: u32 = 0;
/// [`JitEnv::status`]: the access was not made (it faults, or reaches MMIO or a page holding
/// code): leave the translation with the state of the instruction's start and run the
/// instruction in tier 0 ([`helper_exec`]), which raises the fault, makes the device access or
/// the store into code, and ends the block after it as tier 0 always does.
pub const STATUS_TIER0: u32 = 1;

/// What translated code and its helpers share during one call. `#[repr(C)]`: translated code
/// reads [`JitEnv::status`] at its fixed offset ([`JitEnv::STATUS_OFFSET`]).
#[repr(C)]
pub struct JitEnv {
    /// Result of the last load/store helper: [`STATUS_OK`] or [`STATUS_TIER0`].
    pub status: u32,
    /// The value the last helper returned (a load's value, the flags, whether to leave).
    pub result: u64,
    /// The link slot of the exit a translation last left through (null for exits without
    /// one): the run loop links it to the next translation it enters.
    pub last_slot: *mut LinkSlot,
    /// `icount` at which a translation must leave at its next block boundary.
    pub until: u64,
    ctx: *mut c_void,
    pending: Option<(u8, Option<u32>, IntSource)>,
    /// The run loop's table of [`JumpEntry`]s ([`JUMP_CACHE_SIZE`] of them) where the
    /// trampoline looks up successors at exits without a linked one: never null, a table of empty
    /// entries when they must go back to the run loop instead (lockstep mode, an interrupt
    /// line up, a stale table).
    pub jump_table: *const JumpEntry,
    /// Successors found by that lookup.
    pub lookups: u64,
    /// The arguments after `env` of the helper a translation calls, which its stub passes on
    /// (in registers they would tie the translation's values to fixed registers).
    pub args: [u64; 3],
    /// Set by a translation leaving through a link slot, for the lookup: the translation's
    /// [`JumpEntry::mode`] in the low 32 bits, and in the high 32 the byte offset in
    /// [`crate::CpuState`] of the fetch TLB table of its CPL.
    pub exit_mode: u64,
    /// Translations the trampoline entered straight from the previous one (it runs one more:
    /// the first).
    pub chained: u64,
}

impl JitEnv {
    /// Byte offset of [`JitEnv::status`].
    pub const STATUS_OFFSET: i32 = std::mem::offset_of!(JitEnv, status) as i32;
    /// Byte offset of [`JitEnv::result`].
    pub const RESULT_OFFSET: i32 = std::mem::offset_of!(JitEnv, result) as i32;
    /// Byte offset of [`JitEnv::until`].
    pub const UNTIL_OFFSET: i32 = std::mem::offset_of!(JitEnv, until) as i32;
    /// Byte offset of [`JitEnv::chained`].
    pub const CHAINED_OFFSET: i32 = std::mem::offset_of!(JitEnv, chained) as i32;
    /// Byte offset of [`JitEnv::lookups`].
    pub const LOOKUPS_OFFSET: i32 = std::mem::offset_of!(JitEnv, lookups) as i32;
    /// Byte offset of [`JitEnv::jump_table`].
    pub const JUMP_TABLE_OFFSET: i32 = std::mem::offset_of!(JitEnv, jump_table) as i32;
    /// Byte offset of [`JitEnv::last_slot`].
    pub const LAST_SLOT_OFFSET: i32 = std::mem::offset_of!(JitEnv, last_slot) as i32;
    /// Byte offset of [`JitEnv::args`].
    pub const ARGS_OFFSET: i32 = std::mem::offset_of!(JitEnv, args) as i32;
    /// Byte offset of [`JitEnv::exit_mode`].
    pub const EXIT_MODE_OFFSET: i32 = std::mem::offset_of!(JitEnv, exit_mode) as i32;

    pub(crate) fn new(ctx: &mut Ctx) -> Self {
        JitEnv { status: STATUS_OK, result: 0, last_slot: std::ptr::null_mut(), until: 0, ctx: ctx as *mut Ctx as *mut c_void, pending: None, jump_table: std::ptr::null(), lookups: 0, args: [0; 3], exit_mode: 0, chained: 0 }
    }

    /// The exception a translation left pending (vector, error code, source).
    pub(crate) fn take_pending(&mut self) -> Option<(u8, Option<u32>, IntSource)> {
        self.pending.take()
    }

    /// # Safety
    /// Only inside a translation called by the run loop, which built this env from a live
    /// `Ctx` that nothing else uses during the call.
    unsafe fn ctx<'a>(&mut self) -> &'a mut Ctx<'a> {
        // SAFETY: see above; the returned borrow does not outlive the helper call.
        unsafe { &mut *(self.ctx as *mut Ctx<'a>) }
    }

}

/// A region offered to the translator: decoded blocks of one page, the first being the entry.
/// Branches between them may stay inside the translation (DESIGN.md §2: regions amortize
/// Cranelift's fixed cost and keep loops in one function); each block still ends where tier 0
/// ends it, and the instruction budget and exit request are checked at every block boundary
/// inside, so the run is instruction-for-instruction the same as tier 0's.
pub struct TbInfo<'a> {
    /// The blocks (instructions in order; the last one of each may be a branch).
    pub blocks: Vec<&'a [Instruction]>,
    /// Code size in bits (16, 32, 64): the translation is only entered in this mode.
    pub bits: u32,
    /// CPL the translation is made for (its memory accesses use this privilege).
    pub cpl: u8,
    /// The guest-physical page holding the whole block, `None` when it spans two pages (its
    /// exits are then never linked).
    pub page: Option<u64>,
}

/// Why a translation was not made.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    /// The code cache is full: the caller must drop every translation (its own references
    /// included) and call [`Translator::flush`] before trying again.
    #[error("tier-1 code cache full")]
    CacheFull,
    /// This block is not translated (e.g. a CPU mode the translator does not handle).
    #[error("block not translatable: {0}")]
    Unsupported(&'static str),
    /// The code generator failed.
    #[error("code generation failed: {0}")]
    Backend(String),
}

/// Counters a translator keeps for `--stats`.
#[derive(Clone, Debug, Default)]
pub struct TranslatorStats {
    /// Blocks translated.
    pub translations: u64,
    /// Guest instructions in those blocks.
    pub translated_insns: u64,
    /// Guest instructions lifted to host code (the rest call [`helper_exec`]).
    pub lifted_insns: u64,
    /// Host time spent translating, in ns (both threads).
    pub compile_ns: u64,
    /// Of that, time on the background thread ([`Translator::submit`]), in ns: it does not
    /// stop the guest.
    pub background_ns: u64,
    /// Bytes of host code emitted.
    pub code_bytes: u64,
    /// Whole code-cache flushes (of a non-empty cache).
    pub flushes: u64,
}

/// A tier-1 translator: turns hot blocks into host code.
pub trait Translator {
    /// Translate one block. The function stays valid until [`Translator::flush`].
    fn translate(&mut self, tb: &TbInfo) -> Result<Tier1Fn, TranslateError>;
    /// The trampoline that runs this translator's translations.
    fn enter(&self) -> Tier1Enter;
    /// Start translating `tb` in the background; [`Translator::poll`] gives the result
    /// under `id`. `false` when this translator cannot (the caller translates at once).
    /// A flush drops the requests made before it.
    fn submit(&mut self, _id: u64, _tb: &TbInfo) -> bool {
        false
    }
    /// A finished background translation, if any (without waiting): its id and the result,
    /// as [`Translator::translate`] would have returned it.
    fn poll(&mut self) -> Option<(u64, Result<Tier1Fn, TranslateError>)> {
        None
    }
    /// Drop every translation (the caller holds none any more).
    fn flush(&mut self);
    /// Unlink translation `f`'s exits (its direct-chaining slots go back to the lookup): it is
    /// kept after a store into its page, which may have changed the translations it linked to.
    fn unlink(&mut self, f: Tier1Fn);
    /// Counters for `--stats`.
    fn stats(&self) -> TranslatorStats;
}

/// The one signature of the helpers translated code calls: `env` and up to three arguments
/// (the unused ones are ignored); results go to [`JitEnv::result`] and [`JitEnv::status`].
/// One shape lets a translator wrap them all alike in register-preserving stubs (so a slow
/// path does not make the translation spill its registers).
pub type Helper = unsafe extern "C" fn(env: *mut JitEnv, a: u64, b: u64, c: u64);

/// Execute the instruction at address `insn` (an [`Instruction`]) with tier-0 semantics
/// (QEMU's helper pattern). Before the call the translation has written back every register,
/// the lazy flags and `icount`; RIP is set here. [`JitEnv::result`]: 0 to go on with the next
/// instruction (the state may have changed: reload it), 1 to leave the block now (it ended, or
/// an exception is pending in `env`).
///
/// # Safety
/// `env` is the env the run loop passed to the translation; `insn` points to a live instruction.
pub unsafe extern "C" fn helper_exec(env: *mut JitEnv, insn: u64, _: u64, _: u64) {
    // SAFETY: per the contract above.
    let (env, i) = unsafe { (&mut *env, &*(insn as *const Instruction)) };
    // SAFETY: called from a translation the run loop entered with this env.
    let ctx = unsafe { env.ctx() };
    env.result = match crate::block::step(ctx, i, &crate::fast::Fast::GENERIC) {
        crate::block::Step::Next => 0,
        crate::block::Step::End => 1,
        crate::block::Step::Raise(v, c, src) => {
            env.pending = Some((v, c, src));
            1
        }
    };
}

/// Whether an access of `size` bytes at 64-bit linear `la` can be made by a helper, to be
/// seen as tier 0 would make it: canonical, every page it touches mapped (filling the TLB)
/// to RAM, and, for a write, none of them holding decoded code. Leaves CR2 alone (the walk of
/// a faulting access sets it; tier 0 will fault the same way).
fn plain_ram(ctx: &mut Ctx, la: u64, size: u32, kind: TlbKind, user: bool) -> bool {
    let last = la.wrapping_add(size as u64 - 1);
    if !crate::mmu::canonical(la) || !crate::mmu::canonical(last) {
        return false;
    }
    if ctx.s.tlb.lookup(user, kind, la, size as u64).is_some() {
        // TLB entries map RAM only, write entries pages without code only.
        return true;
    }
    let cr2 = ctx.s.cr2;
    let pages = if last & !0xFFF == la & !0xFFF { &[la][..] } else { &[la, last][..] };
    for &a in pages {
        let page = match ctx.translate(a, kind, user) {
            Ok(pa) => pa & !0xFFF,
            Err(_) => {
                ctx.s.cr2 = cr2;
                return false;
            }
        };
        if page + 0x1000 > ctx.ram_size || (kind == TlbKind::Write && ctx.code.is_code_page(page)) {
            return false;
        }
    }
    true
}

/// The slow path of a load of `flags & 0xF` bytes (1, 2, 4, 8) at 64-bit linear address `la`
/// (`flags & ACCESS_USER`: a CPL-3 access): a TLB miss or a page-crossing access. When the
/// access is plain RAM ([`STATUS_OK`]) the value, zero-extended, goes to
/// [`JitEnv::result`]; otherwise nothing is done and the status is [`STATUS_TIER0`].
///
/// # Safety
/// As for [`helper_exec`].
pub unsafe extern "C" fn helper_load(env: *mut JitEnv, la: u64, flags: u64, _: u64) {
    // SAFETY: per the contract above.
    let env = unsafe { &mut *env };
    // SAFETY: as above.
    let ctx = unsafe { env.ctx() };
    let (size, user) = (flags as u32 & 0xF, flags as u32 & ACCESS_USER != 0);
    env.status = STATUS_TIER0;
    if plain_ram(ctx, la, size, TlbKind::Read, user) {
        if let Ok(v) = ctx.read_lin_as(la, size, user) {
            env.result = v;
            env.status = STATUS_OK;
        }
    }
}

/// The slow path of a store of the low `flags & 0xF` bytes of `value` (see [`helper_load`]):
/// made when it is plain RAM without code ([`STATUS_OK`]), else [`STATUS_TIER0`].
///
/// # Safety
/// As for [`helper_exec`].
pub unsafe extern "C" fn helper_store(env: *mut JitEnv, la: u64, value: u64, flags: u64) {
    // SAFETY: per the contract above.
    let env = unsafe { &mut *env };
    // SAFETY: as above.
    let ctx = unsafe { env.ctx() };
    let (size, user) = (flags as u32 & 0xF, flags as u32 & ACCESS_USER != 0);
    env.status = STATUS_TIER0;
    if plain_ram(ctx, la, size, TlbKind::Write, user) && ctx.write_lin_as(la, size, value, user).is_ok() {
        env.status = STATUS_OK;
    }
}

/// The six status flags computed from the lazy-flag fields of the state (RFLAGS bit
/// positions), to [`JitEnv::result`].
///
/// # Safety
/// As for [`helper_exec`].
pub unsafe extern "C" fn helper_flags(env: *mut JitEnv, _: u64, _: u64, _: u64) {
    // SAFETY: per the contract above.
    let env = unsafe { &mut *env };
    // SAFETY: as above.
    let ctx = unsafe { env.ctx() };
    env.result = ctx.s.status_flags();
}

//! Tier 0: blocks of iced-x86-decoded instructions cached by (RIP, physical address, code
//! size), the run loop, and interrupt/exception entry with the double-fault rules.
//!
//! A block never spans more than two physical pages; each page it uses is marked as holding
//! code in [`CodeMap`], so a store to it invalidates the block (DESIGN.md §6).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use heron_softmmu::{Bus, GuestRam, TlbKind};
use iced_x86::{Decoder, DecoderError, DecoderOptions, FlowControl, Instruction};

use crate::exec::Ctx;
use crate::state::{rf, sreg, CpuState};
use crate::system::{IntSource, SOFT_INT_FLAG};
use crate::{vec, Exception};

/// Most instructions in one block.
const MAX_BLOCK_INSNS: usize = 64;
/// The block cache is dropped whole when it grows past this many blocks.
const MAX_BLOCKS: usize = 1 << 18;

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
}

/// Per-physical-page code marks and generation counters for invalidation.
pub struct CodeMap {
    has_code: Vec<bool>,
    gen: Vec<u32>,
}

impl CodeMap {
    fn new(ram_size: u64) -> Self {
        let pages = (ram_size / 4096) as usize + 1;
        CodeMap { has_code: vec![false; pages], gen: vec![0; pages] }
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

struct Block {
    insns: Vec<Instruction>,
    pages: [u64; 2],
    gens: [u32; 2],
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

/// Entries of the jump cache (a power of two).
const JMP_CACHE_SIZE: usize = 4096;

/// A direct-mapped cache in front of the block map, indexed by RIP (QEMU's tb_jmp_cache):
/// most block lookups hit here without hashing.
struct JmpCache {
    keys: Vec<(u64, u64, u32)>,
    blocks: Vec<Option<Rc<Block>>>,
}

impl JmpCache {
    fn new() -> Self {
        JmpCache { keys: vec![(u64::MAX, 0, 0); JMP_CACHE_SIZE], blocks: vec![None; JMP_CACHE_SIZE] }
    }
    #[inline]
    fn index(rip: u64) -> usize {
        ((rip ^ (rip >> 12)) as usize) & (JMP_CACHE_SIZE - 1)
    }
    fn clear(&mut self) {
        self.keys.fill((u64::MAX, 0, 0));
        self.blocks.fill(None);
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
}

impl Cpu {
    /// A CPU in its RESET state over `ram`.
    pub fn new(ram: GuestRam) -> Self {
        let code = CodeMap::new(ram.size());
        Cpu { s: CpuState::new(), ram, code, blocks: BlockMap::default(), jmp_cache: JmpCache::new(), fetch: Vec::with_capacity(4096 + 16), tracer: None, stats: Stats::default() }
    }

    /// Forget all decoded blocks and TLB entries (after the machine rewrote RAM behind the
    /// CPU's back, e.g. loading a kernel).
    pub fn flush_code(&mut self) {
        self.blocks.clear();
        self.jmp_cache.clear();
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
        let Cpu { s, ram, code, blocks, jmp_cache, fetch, stats, tracer } = self;
        let bits = s.code_bits();
        let mut ctx = Ctx { s, ram, ram_size, code, bus, bits, smc: false, io_touched: false, end_block: false, stats_tlb_miss: 0, tracer: tracer.as_mut() };
        let mut caches = Caches { blocks, jmp: jmp_cache, fetch };
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
}

fn run_loop(ctx: &mut Ctx, caches: &mut Caches, stats: &mut Stats, until: u64) -> ExitReason {
    // The INTR line only changes when the machine runs (between calls) or on INTA: devices
    // are reached only through I/O, which ends this call.
    let mut intr = ctx.bus.interrupt_pending();
    loop {
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
        if intr && ctx.s.rflags & rf::IF != 0 && !ctx.s.irq_inhibit {
            let v = ctx.bus.acknowledge_interrupt();
            intr = ctx.bus.interrupt_pending();
            stats.interrupts += 1;
            ctx.s.halted = false;
            if let Err(r) = raise(ctx, stats, v, None, IntSource::External) {
                return r;
            }
        }
        if ctx.s.halted {
            return ExitReason::Halted;
        }
        let block = match get_block(ctx, caches, stats) {
            Ok(b) => b,
            Err(e) => {
                if let Err(r) = raise(ctx, stats, e.vector, e.error_code, IntSource::Exception) {
                    return r;
                }
                continue;
            }
        };
        ctx.end_block = false;
        ctx.smc = false;
        let ipmask = match ctx.bits {
            64 => u64::MAX,
            32 => 0xFFFF_FFFF,
            _ => 0xFFFF,
        };
        for i in block.insns.iter() {
            if let Some(t) = ctx.tracer.as_deref_mut() {
                t.insn(ctx.s.icount, ctx.bits, i);
            }
            ctx.s.rip = i.next_ip() & ipmask;
            let inhibited = ctx.s.irq_inhibit;
            match ctx.exec(i) {
                Ok(()) => ctx.s.icount += 1,
                Err(e) if e.error_code == Some(SOFT_INT_FLAG) => {
                    // INT n / INT3 / INTO: a trap, the saved RIP is the next instruction.
                    ctx.s.icount += 1;
                    if let Err(r) = raise(ctx, stats, e.vector, None, IntSource::Software) {
                        return r;
                    }
                    break;
                }
                Err(e) => {
                    ctx.s.rip = i.ip() & ipmask;
                    if let Err(r) = raise(ctx, stats, e.vector, e.error_code, IntSource::Exception) {
                        return r;
                    }
                    break;
                }
            }
            if inhibited {
                ctx.s.irq_inhibit = false;
                break;
            }
            if ctx.end_block || ctx.smc || ctx.io_touched {
                if ctx.smc {
                    stats.smc_invalidations += 1;
                }
                break;
            }
        }
    }
}

/// Is `v` a contributory exception (Intel SDM Vol. 3A Table 6-4)?
fn contributory(v: u8) -> bool {
    matches!(v, vec::DE | vec::TS | vec::NP | vec::SS | vec::GP)
}

/// Deliver an event; a fault during delivery follows the double-fault rules, and a fault while
/// delivering #DF shuts the processor down.
fn raise(ctx: &mut Ctx, stats: &mut Stats, v: u8, code: Option<u32>, src: IntSource) -> Result<(), ExitReason> {
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
    /// Still valid: every page it was decoded from holds code of the same generation.
    #[inline]
    fn valid(&self, code: &CodeMap) -> bool {
        self.gens[0] == code.gen(self.pages[0]) && self.gens[1] == code.gen(self.pages[1]) && code.is_code_page(self.pages[0]) && code.is_code_page(self.pages[1])
    }
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
    if caches.jmp.keys[ji] == key {
        if let Some(b) = &caches.jmp.blocks[ji] {
            if b.valid(ctx.code) {
                return Ok(b.clone());
            }
        }
    }
    if let Some(b) = caches.blocks.get(&key) {
        if b.valid(ctx.code) {
            caches.jmp.keys[ji] = key;
            caches.jmp.blocks[ji] = Some(b.clone());
            return Ok(b.clone());
        }
    }
    let (blocks, fetch) = (&mut *caches.blocks, &mut *caches.fetch);
    // Decode a new block from this page.
    ctx.fetch_page(la, fetch)?;
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
                    let pa2 = ctx.fetch_page(next_la, &mut buf2)?;
                    page2 = pa2 & !0xFFF;
                    let mut bytes = fetch[pos..].to_vec();
                    bytes.extend_from_slice(&buf2[..buf2.len().min(15)]);
                    let mut d2 = Decoder::with_ip(bits, &bytes, rip, DecoderOptions::NONE);
                    d2.decode_out(&mut ins);
                    insns.push(ins);
                }
                break;
            }
            insns.push(ins);
            if ins.flow_control() != FlowControl::Next || ins.is_invalid() {
                break;
            }
        }
    }
    stats.blocks_decoded += 1;
    let p1 = pa & !0xFFF;
    let g1 = ctx.code.mark(p1);
    let g2 = ctx.code.mark(page2);
    ctx.s.tlb.flush_writes_to(p1);
    if page2 != p1 {
        ctx.s.tlb.flush_writes_to(page2);
    }
    if blocks.len() >= MAX_BLOCKS {
        blocks.clear();
        caches.jmp.clear();
        stats.cache_flushes += 1;
    }
    let b = Rc::new(Block { insns, pages: [p1, page2], gens: [g1, g2] });
    blocks.insert(key, b.clone());
    caches.jmp.keys[ji] = key;
    caches.jmp.blocks[ji] = Some(b.clone());
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

    /// Read one byte at a linear address through the current page tables without side
    /// effects (no A/D updates, no TLB fill); `None` if unmapped.
    pub fn debug_read_linear(&self, la: u64) -> Option<u8> {
        use crate::state::cr;
        use heron_softmmu::{walk, Access, PagingMode, PagingRegs};
        let s = &*self.s;
        let mode = s.paging_mode();
        let mut ram = self.ram.clone();
        let slice = ram.as_mut_slice();
        let regs = PagingRegs { cr3: s.cr3, wp: false, nxe: s.efer & cr::EFER_NXE != 0, pge: false, set_ad: false };
        let pa = if mode == PagingMode::None { la } else { walk(slice, mode, regs, la, Access::default()).ok()?.paddr };
        slice.get(pa as usize).copied()
    }
}

//! Execution trace (`--trace`): each executed instruction with its address and iced-x86
//! disassembly, interrupts and exceptions, and port/MMIO accesses, filtered by address range
//! and code size. Deterministic (it only prints the virtual clock), and one `Option` check per
//! instruction when off.

use std::io::Write;

use iced_x86::{Formatter, Instruction, IntelFormatter};

/// What to trace.
#[derive(Clone, Debug)]
pub struct TraceFilter {
    /// Executed instructions.
    pub insns: bool,
    /// Interrupts and exceptions taken.
    pub events: bool,
    /// Port I/O and MMIO accesses.
    pub io: bool,
    /// Only instructions whose RIP is in `[start, end)`.
    pub range: Option<(u64, u64)>,
    /// Only code of this size in bits (16, 32 or 64).
    pub bits: Option<u32>,
}

impl Default for TraceFilter {
    fn default() -> Self {
        TraceFilter { insns: true, events: true, io: false, range: None, bits: None }
    }
}

/// A trace sink with its filter.
pub struct Tracer {
    out: Box<dyn Write>,
    fmt: IntelFormatter,
    text: String,
    /// The filter.
    pub filter: TraceFilter,
    /// The last instruction passed the address/mode filter (I/O lines follow it).
    in_scope: bool,
}

impl Tracer {
    /// Trace into `out` (buffered by the caller if it wants).
    pub fn new(out: Box<dyn Write>, filter: TraceFilter) -> Self {
        Tracer { out, fmt: IntelFormatter::new(), text: String::new(), filter, in_scope: true }
    }

    /// An instruction is about to execute.
    #[inline]
    pub fn insn(&mut self, icount: u64, bits: u32, i: &Instruction) {
        let f = &self.filter;
        self.in_scope = f.range.is_none_or(|(a, b)| (a..b).contains(&i.ip())) && f.bits.is_none_or(|m| m == bits);
        if f.insns && self.in_scope {
            self.text.clear();
            self.fmt.format(i, &mut self.text);
            let _ = writeln!(self.out, "{icount} {bits} {:x}: {}", i.ip(), self.text);
        }
    }

    /// An interrupt or exception is delivered (`software` for INT n).
    pub fn event(&mut self, icount: u64, vector: u8, code: Option<u32>, rip: u64, kind: &str) {
        if self.filter.events {
            let c = code.map(|c| format!(" error {c:#x}")).unwrap_or_default();
            let _ = writeln!(self.out, "{icount} {kind} vector {vector}{c} at {rip:x}");
        }
    }

    /// A port or MMIO access (`what` = "in", "out", "mmio-read", "mmio-write").
    pub fn io(&mut self, icount: u64, what: &str, addr: u64, size: u32, value: u64) {
        if self.filter.io && self.in_scope {
            let _ = writeln!(self.out, "{icount} {what} {addr:#x}/{size} = {value:#x}");
        }
    }

    /// Flush the sink.
    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

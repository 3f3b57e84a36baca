//! The software TLB: direct-mapped, one table per access type and privilege class.
//!
//! An entry maps a 4 KiB linear page to a host address (`addend` + linear address = host
//! address) for pages backed by RAM. Pages that are MMIO, that hold translated code (for
//! writes), or whose walk did not grant the access are never entered, so a hit needs no further
//! check (DESIGN.md §5; QEMU's CPUTLBEntry works the same way).

/// Number of entries per table (a power of two). 4096 pages (16 MiB) per table: with 256,
/// 7-Zip's match finder (a few MiB of tables) missed 1.8 times per 1000 instructions.
/// Flushes stay cheap through [`Tlb`]'s list of filled entries.
pub const TLB_SIZE: usize = 4096;

/// Most filled entries [`Tlb`] lists; past this a flush scans the tables.
const FILLED_MAX: usize = TLB_SIZE;

/// One TLB entry. `tag` is the linear page address (low 12 bits clear) or [`TlbEntry::INVALID`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TlbEntry {
    /// Linear page address this entry maps, or `INVALID`.
    pub tag: u64,
    /// Host address minus linear address for this page.
    pub addend: u64,
    /// Guest-physical page address (for code-page invalidation).
    pub paddr: u64,
    /// Entry came from a global (G=1, CR4.PGE) mapping: survives CR3 reloads.
    pub global: bool,
}

impl TlbEntry {
    /// Tag value of an empty entry (not a valid page address: low bits set).
    pub const INVALID: u64 = u64::MAX;
    const EMPTY: TlbEntry = TlbEntry { tag: Self::INVALID, addend: 0, paddr: 0, global: false };
}

/// Access kinds the TLB keeps apart (index into [`Tlb::tables`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbKind {
    /// Data read.
    Read = 0,
    /// Data write.
    Write = 1,
    /// Instruction fetch.
    Fetch = 2,
}

/// The TLB: `tables[user][kind]`, `user` = 1 for CPL 3 accesses. About 800 KiB: it is built
/// in place inside a heap allocation (all-zero bytes, then [`Tlb::reset`]), never on the stack.
#[repr(C)]
pub struct Tlb {
    /// Direct-mapped tables indexed by `(linear >> 12) % TLB_SIZE`.
    pub tables: [[[TlbEntry; TLB_SIZE]; 3]; 2],
    /// Fills since creation (for statistics).
    pub fills: u64,
    /// Misses since creation (for statistics).
    pub misses: u64,
    /// The entries filled since the tables were last known empty, as `table << 16 | index`
    /// (`table` = `user * 3 + kind`; repeats allowed), so a flush touches only those.
    filled: [u32; FILLED_MAX],
    /// Entries used in `filled`; `FILLED_MAX + 1` once more were filled than it holds, until
    /// a flush that scans the tables.
    n_filled: usize,
}

impl Tlb {
    /// An empty TLB on the heap.
    pub fn new_boxed() -> Box<Tlb> {
        // SAFETY: all fields are integers, bools and arrays of them: all-zero bytes are valid.
        let mut t: Box<Tlb> = unsafe { Box::new_zeroed().assume_init() };
        t.reset();
        t
    }

    /// Make every entry empty, in place: the TLB is too large to build on the stack (it lives
    /// inside the boxed CPU state). All-zero bytes are a valid `Tlb` to call this on.
    pub fn reset(&mut self) {
        self.tables.iter_mut().flatten().for_each(|t| t.fill(TlbEntry::EMPTY));
        self.n_filled = 0;
    }

    /// Index of the entry for linear address `la`.
    #[inline]
    pub fn index(la: u64) -> usize {
        ((la >> 12) as usize) & (TLB_SIZE - 1)
    }

    /// Host pointer for an access of `len` bytes at `la` if it hits and stays in the page.
    #[inline]
    pub fn lookup(&self, user: bool, kind: TlbKind, la: u64, len: u64) -> Option<*mut u8> {
        let e = &self.tables[user as usize][kind as usize][Self::index(la)];
        if e.tag == la & !0xFFF && (la & 0xFFF) + len <= 0x1000 {
            Some(la.wrapping_add(e.addend) as *mut u8)
        } else {
            None
        }
    }

    /// Enter a mapping of linear page `la` to host page address `host` (guest-physical `paddr`).
    pub fn fill(&mut self, user: bool, kind: TlbKind, la: u64, host: u64, paddr: u64, global: bool) {
        self.fills += 1;
        let page = la & !0xFFF;
        let (t, i) = (user as usize * 3 + kind as usize, Self::index(la));
        self.tables[user as usize][kind as usize][i] = TlbEntry { tag: page, addend: host.wrapping_sub(page), paddr: paddr & !0xFFF, global };
        if self.n_filled < FILLED_MAX {
            self.filled[self.n_filled] = (t << 16 | i) as u32;
        }
        self.n_filled = (self.n_filled + 1).min(FILLED_MAX + 1);
    }

    /// The listed filled entries, or `None` when there were too many to list.
    fn listed(&self) -> Option<std::ops::Range<usize>> {
        (self.n_filled <= FILLED_MAX).then_some(0..self.n_filled)
    }

    fn entry(&mut self, slot: u32) -> &mut TlbEntry {
        let t = (slot >> 16) as usize;
        &mut self.tables[t / 3][t % 3][slot as usize & 0xFFFF]
    }

    /// Flush everything (CR0/CR4 paging changes, EFER writes).
    pub fn flush_all(&mut self) {
        match self.listed() {
            Some(r) => {
                for k in r {
                    *self.entry(self.filled[k]) = TlbEntry::EMPTY;
                }
                self.n_filled = 0;
            }
            None => self.reset(),
        }
    }

    /// Flush non-global entries (MOV to CR3, Intel SDM Vol. 3A §4.10.4.1). The global
    /// survivors are listed again, unless there are too many to list.
    pub fn flush_nonglobal(&mut self) {
        let mut kept = 0;
        let mut keep = |filled: &mut [u32; FILLED_MAX], s: u32| {
            if kept < FILLED_MAX {
                filled[kept] = s;
            }
            kept += 1;
        };
        match self.listed() {
            Some(r) => {
                for k in r {
                    let s = self.filled[k];
                    let e = self.entry(s);
                    if e.global {
                        keep(&mut self.filled, s);
                    } else {
                        *e = TlbEntry::EMPTY;
                    }
                }
            }
            None => {
                for (t, table) in self.tables.iter_mut().flatten().enumerate() {
                    for (i, e) in table.iter_mut().enumerate() {
                        if !e.global {
                            *e = TlbEntry::EMPTY;
                        } else if e.tag != TlbEntry::INVALID {
                            keep(&mut self.filled, (t << 16 | i) as u32);
                        }
                    }
                }
            }
        }
        self.n_filled = kept.min(FILLED_MAX + 1);
    }

    /// Flush the entries for one linear page, global or not (INVLPG).
    pub fn flush_page(&mut self, la: u64) {
        let i = Self::index(la);
        for t in self.tables.iter_mut().flatten() {
            if t[i].tag == la & !0xFFF {
                t[i] = TlbEntry::EMPTY;
            }
        }
    }

    /// Drop write entries that map guest-physical page `paddr` (the page now holds code).
    pub fn flush_writes_to(&mut self, paddr: u64) {
        let p = paddr & !0xFFF;
        let drop = |e: &mut TlbEntry| {
            if e.tag != TlbEntry::INVALID && e.paddr == p {
                *e = TlbEntry::EMPTY;
            }
        };
        match self.listed() {
            Some(r) => {
                for k in r {
                    let s = self.filled[k];
                    if (s >> 16) as usize % 3 == TlbKind::Write as usize {
                        drop(self.entry(s));
                    }
                }
            }
            None => {
                for user in 0..2 {
                    self.tables[user][TlbKind::Write as usize].iter_mut().for_each(drop);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: u64 = 0x7000_0000_0000;

    fn hit(t: &Tlb, user: bool, kind: TlbKind, la: u64) -> bool {
        t.lookup(user, kind, la, 1).is_some()
    }

    /// CR3 reloads keep global entries and drop the rest, whether the filled entries are
    /// listed or (after more fills than the list holds) the tables are scanned.
    #[test]
    fn flush_nonglobal_keeps_globals_listed_and_scanned() {
        for fills in [10, FILLED_MAX + 10] {
            let mut t = Tlb::new_boxed();
            t.fill(false, TlbKind::Read, 0xffff_8000_0000_0000, HOST, 0x1000, true);
            for k in 0..fills as u64 {
                let kind = [TlbKind::Read, TlbKind::Write, TlbKind::Fetch][k as usize % 3];
                t.fill(k % 2 == 0, kind, 0x40_0000 + (k << 12), HOST + (k << 12), 0x10_0000 + (k << 12), false);
            }
            assert!(hit(&t, true, TlbKind::Read, 0x40_0000));
            t.flush_nonglobal();
            assert!(hit(&t, false, TlbKind::Read, 0xffff_8000_0000_0000), "{fills} fills: global entry kept");
            for k in 0..fills as u64 {
                let kind = [TlbKind::Read, TlbKind::Write, TlbKind::Fetch][k as usize % 3];
                assert!(!hit(&t, k % 2 == 0, kind, 0x40_0000 + (k << 12)), "{fills} fills: entry {k} flushed");
            }
            // The global survivor is listed again: a later full flush drops it.
            t.flush_all();
            assert!(!hit(&t, false, TlbKind::Read, 0xffff_8000_0000_0000));
        }
    }

    /// A page that starts holding code loses its write entries only.
    #[test]
    fn flush_writes_to_drops_write_entries_of_that_page() {
        for extra in [0, FILLED_MAX] {
            let mut t = Tlb::new_boxed();
            t.fill(true, TlbKind::Write, 0x1000, HOST, 0x5000, false);
            t.fill(false, TlbKind::Write, 0x2000, HOST, 0x5000, false);
            t.fill(true, TlbKind::Read, 0x1000, HOST, 0x5000, false);
            t.fill(true, TlbKind::Write, 0x3000, HOST, 0x6000, false);
            for k in 0..extra as u64 {
                t.fill(false, TlbKind::Fetch, 0x100_0000 + (k << 12), HOST, 0x200_0000 + (k << 12), false);
            }
            t.flush_writes_to(0x5123);
            assert!(!hit(&t, true, TlbKind::Write, 0x1000));
            assert!(!hit(&t, false, TlbKind::Write, 0x2000));
            assert!(hit(&t, true, TlbKind::Read, 0x1000));
            assert!(hit(&t, true, TlbKind::Write, 0x3000));
        }
    }
}

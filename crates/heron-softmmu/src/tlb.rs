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

/// Most slots [`Tlb`] lists as filled with non-global entries since the last CR3 reload; past
/// this the next reload scans the tables.
const LOCAL_MAX: usize = TLB_SIZE;
/// Slots of all six tables: the list of global entries can hold each once.
const GLOBAL_MAX: usize = 6 * TLB_SIZE;
/// Buckets of [`Tlb`]'s counts of write entries by physical page (a power of two: exact for
/// 256 MiB of RAM; pages further apart share buckets, which costs only scans).
const WRITE_BUCKETS: usize = 1 << 16;

/// The bucket of guest-physical address `paddr` in the counts of write entries.
fn write_bucket(paddr: u64) -> usize {
    (paddr >> 12) as usize & (WRITE_BUCKETS - 1)
}

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

/// The TLB: `tables[user][kind]`, `user` = 1 for CPL 3 accesses. About 900 KiB: it is built
/// in place inside a heap allocation (all-zero bytes, then [`Tlb::reset`]), never on the stack.
#[repr(C)]
pub struct Tlb {
    /// Direct-mapped tables indexed by `(linear >> 12) % TLB_SIZE`.
    pub tables: [[[TlbEntry; TLB_SIZE]; 3]; 2],
    /// Fills since creation (for statistics).
    pub fills: u64,
    /// Misses since creation (for statistics).
    pub misses: u64,
    /// Flushes of fetch entries so far (full, non-global, single page): translations of
    /// linear addresses kept outside the TLB (tier 0's links between blocks) hold only while
    /// this is unchanged.
    pub flushes: u64,
    /// Slots filled with a non-global entry since the last flush of non-global entries, so a
    /// CR3 reload touches only those (the kernel's global entries can be thousands).
    local: SlotList<LOCAL_MAX>,
    /// Slots filled with a global entry since the last full flush.
    global: SlotList<GLOBAL_MAX>,
    /// Write entries mapping the physical pages of each bucket ([`write_bucket`]; at most the
    /// two write tables' 8192 entries): `flush_writes_to` scans only when its page's count is
    /// not zero (a page turning into code is seldom mapped for writing at that moment).
    write_maps: [u16; WRITE_BUCKETS],
}

/// Empty entry `e` of table `t` (`user * 3 + kind`), keeping the counts of write entries.
fn empty(write_maps: &mut [u16; WRITE_BUCKETS], t: usize, e: &mut TlbEntry) {
    if t % 3 == TlbKind::Write as usize && e.tag != TlbEntry::INVALID {
        write_maps[write_bucket(e.paddr)] -= 1;
    }
    *e = TlbEntry::EMPTY;
}

/// The entry of slot `s` (see [`SlotList`]).
fn slot_entry(tables: &mut [[[TlbEntry; TLB_SIZE]; 3]; 2], s: u32) -> &mut TlbEntry {
    let t = (s >> 16) as usize;
    &mut tables[t / 3][t % 3][s as usize & 0xFFFF]
}

/// Table slots as `table << 16 | index` (`table` = `user * 3 + kind`). A slot is listed when
/// it is filled with an entry of the list's kind (global or not) while it does not already hold
/// one, so each appears once unless it was emptied meanwhile (INVLPG, a page turning into code,
/// a CR3 reload of the non-global entry that replaced a global one) and filled again.
#[repr(C)]
struct SlotList<const N: usize> {
    slots: [u32; N],
    /// Slots used; `N + 1` once more were filled than it holds (the tables must be scanned).
    n: usize,
}

impl<const N: usize> SlotList<N> {
    fn push(&mut self, slot: u32) {
        if self.n < N {
            self.slots[self.n] = slot;
        }
        self.n = (self.n + 1).min(N + 1);
    }

    /// The listed slots, or `None` when there were too many to list.
    fn listed(&self) -> Option<&[u32]> {
        (self.n <= N).then(|| &self.slots[..self.n])
    }
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
        self.local.n = 0;
        self.global.n = 0;
        self.write_maps.fill(0);
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
        let e = &mut self.tables[user as usize][kind as usize][i];
        if kind == TlbKind::Write {
            if e.tag != TlbEntry::INVALID {
                self.write_maps[write_bucket(e.paddr)] -= 1;
            }
            self.write_maps[write_bucket(paddr)] += 1;
        }
        // An entry of the same kind in the slot means the slot is listed already.
        if e.tag == TlbEntry::INVALID || e.global != global {
            let slot = (t << 16 | i) as u32;
            if global {
                self.global.push(slot);
            } else {
                self.local.push(slot);
            }
        }
        *e = TlbEntry { tag: page, addend: host.wrapping_sub(page), paddr: paddr & !0xFFF, global };
    }

    /// Apply `f` to the counts of write entries, the table (`user * 3 + kind`) and the entry
    /// of every listed slot (both lists), or return false when a list overflowed (the caller
    /// scans the tables instead).
    fn for_listed(&mut self, mut f: impl FnMut(&mut [u16; WRITE_BUCKETS], usize, &mut TlbEntry)) -> bool {
        let Tlb { tables, local, global, write_maps, .. } = self;
        let (Some(l), Some(g)) = (local.listed(), global.listed()) else { return false };
        for &s in l.iter().chain(g) {
            f(write_maps, (s >> 16) as usize, slot_entry(tables, s));
        }
        true
    }

    /// Flush everything (CR0/CR4 paging changes, EFER writes).
    pub fn flush_all(&mut self) {
        self.flushes += 1;
        if self.for_listed(|_, _, e| *e = TlbEntry::EMPTY) {
            self.local.n = 0;
            self.global.n = 0;
            self.write_maps.fill(0);
        } else {
            self.reset();
        }
    }

    /// Flush non-global entries (MOV to CR3, Intel SDM Vol. 3A §4.10.4.1).
    pub fn flush_nonglobal(&mut self) {
        self.flushes += 1;
        let Tlb { tables, local, write_maps, .. } = self;
        // A listed slot filled with a global entry since keeps it.
        let mut drop = |t: usize, e: &mut TlbEntry| {
            if !e.global {
                empty(write_maps, t, e);
            }
        };
        match local.listed() {
            Some(l) => l.iter().for_each(|&s| drop((s >> 16) as usize, slot_entry(tables, s))),
            None => tables.iter_mut().flatten().enumerate().for_each(|(t, table)| table.iter_mut().for_each(|e| drop(t, e))),
        }
        local.n = 0;
    }

    /// Flush the entries for one linear page, global or not (INVLPG).
    pub fn flush_page(&mut self, la: u64) {
        self.flushes += 1;
        let i = Self::index(la);
        let Tlb { tables, write_maps, .. } = self;
        for (t, table) in tables.iter_mut().flatten().enumerate() {
            if table[i].tag == la & !0xFFF {
                empty(write_maps, t, &mut table[i]);
            }
        }
    }

    /// Drop write entries that map guest-physical page `paddr` (the page now holds code).
    pub fn flush_writes_to(&mut self, paddr: u64) {
        let p = paddr & !0xFFF;
        if self.write_maps[write_bucket(p)] == 0 {
            return;
        }
        let write = TlbKind::Write as usize;
        let drop = |maps: &mut [u16; WRITE_BUCKETS], t: usize, e: &mut TlbEntry| {
            if t % 3 == write && e.tag != TlbEntry::INVALID && e.paddr == p {
                empty(maps, t, e);
            }
        };
        if !self.for_listed(drop) {
            let Tlb { tables, write_maps, .. } = self;
            for user in 0..2 {
                tables[user][write].iter_mut().for_each(|e| drop(write_maps, user * 3 + write, e));
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

    /// `flush_writes_to` drops exactly the write entries that map its page; the counts that
    /// let it skip the scan follow every way an entry goes (a refill of its slot, INVLPG, a
    /// CR3 reload, the flush itself) and come back to zero.
    #[test]
    fn flush_writes_to_counts_write_entries() {
        use TlbKind::{Read, Write};
        let mut t = Tlb::new_boxed();
        let zero = |t: &Tlb| t.write_maps.iter().all(|&c| c == 0);
        t.fill(false, Write, 0x40_0000, HOST, 0x9000, false);
        t.fill(false, Read, 0x40_0000, HOST, 0x9000, false);
        t.fill(true, Write, 0x41_0000, HOST, 0x9000, false);
        t.flush_writes_to(0xA000);
        assert!(hit(&t, false, Write, 0x40_0000) && hit(&t, true, Write, 0x41_0000), "another page's entries stay");
        t.flush_writes_to(0x9000);
        assert!(!hit(&t, false, Write, 0x40_0000) && !hit(&t, true, Write, 0x41_0000));
        assert!(hit(&t, false, Read, 0x40_0000), "read entries stay");
        assert!(zero(&t));
        // A slot refilled with another page: only the new one counts.
        let same_slot = 0x40_0000 + (TLB_SIZE as u64) * 0x1000;
        t.fill(false, Write, 0x40_0000, HOST, 0xA000, false);
        t.fill(false, Write, same_slot, HOST, 0xB000, false);
        t.flush_writes_to(0xA000);
        assert!(hit(&t, false, Write, same_slot));
        t.flush_writes_to(0xB000);
        assert!(!hit(&t, false, Write, same_slot));
        assert!(zero(&t));
        // INVLPG and CR3 reloads; a global entry survives the reload.
        t.fill(false, Write, 0x7000, HOST, 0xC000, false);
        t.flush_page(0x7000);
        t.fill(false, Write, 0x8000, HOST, 0xD000, false);
        t.fill(false, Write, 0x9000, HOST, 0xE000, true);
        t.flush_nonglobal();
        assert!(hit(&t, false, Write, 0x9000));
        t.flush_writes_to(0xE000);
        assert!(!hit(&t, false, Write, 0x9000));
        assert!(zero(&t));
    }

    /// CR3 reloads keep global entries and drop the rest, whether the filled entries are
    /// listed or (after more fills than the list holds) the tables are scanned.
    #[test]
    fn flush_nonglobal_keeps_globals_listed_and_scanned() {
        for fills in [10, LOCAL_MAX + 10] {
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
            // The global survivor is still listed: a later full flush drops it.
            t.flush_all();
            assert!(!hit(&t, false, TlbKind::Read, 0xffff_8000_0000_0000));
        }
    }

    /// Each slot is listed once however often it is refilled, and a slot whose entry changed
    /// between global and non-global is flushed by what it holds now.
    #[test]
    fn slots_listed_once_and_flushed_by_their_current_entry() {
        let mut t = Tlb::new_boxed();
        for k in 0..3 * LOCAL_MAX as u64 {
            t.fill(false, TlbKind::Read, 0x40_0000 + ((k % 4) << 12), HOST, 0x1000, false);
            t.fill(false, TlbKind::Read, 0xffff_8000_0000_0000 + ((k % 4) << 12), HOST, 0x1000, true);
            if k % 8 == 7 {
                t.flush_nonglobal();
            }
        }
        assert_eq!((t.local.n, t.global.n), (0, 4), "refills and CR3 reloads do not grow the lists");
        for k in 0..8 {
            t.fill(false, TlbKind::Read, 0x40_0000 + ((k % 4) << 12), HOST, 0x1000, false);
        }
        assert_eq!(t.local.n, 4);
        // Local then global in one slot: the reload keeps it; global then local: it drops it.
        t.fill(false, TlbKind::Write, 0x7000, HOST, 0x2000, false);
        t.fill(false, TlbKind::Write, 0x7000, HOST, 0x2000, true);
        t.fill(false, TlbKind::Write, 0xffff_8000_0000_8000, HOST, 0x3000, true);
        t.fill(false, TlbKind::Write, 0xffff_8000_0000_8000, HOST, 0x3000, false);
        t.flush_nonglobal();
        assert!(hit(&t, false, TlbKind::Write, 0x7000));
        assert!(!hit(&t, false, TlbKind::Write, 0xffff_8000_0000_8000));
        // Global write entries are found through their list too.
        t.flush_writes_to(0x2000);
        assert!(!hit(&t, false, TlbKind::Write, 0x7000));
        t.flush_all();
        assert!(!hit(&t, false, TlbKind::Read, 0xffff_8000_0000_0000));
        assert_eq!((t.local.n, t.global.n), (0, 0));
    }

    /// A page that starts holding code loses its write entries only.
    #[test]
    fn flush_writes_to_drops_write_entries_of_that_page() {
        for extra in [0, LOCAL_MAX] {
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

//! The software TLB: direct-mapped, one table per access type and privilege class.
//!
//! An entry maps a 4 KiB linear page to a host address (`addend` + linear address = host
//! address) for pages backed by RAM. Pages that are MMIO, that hold translated code (for
//! writes), or whose walk did not grant the access are never entered, so a hit needs no further
//! check (DESIGN.md §5; QEMU's CPUTLBEntry works the same way).

/// Number of entries per table (a power of two).
pub const TLB_SIZE: usize = 256;

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

/// The TLB: `tables[user][kind]`, `user` = 1 for CPL 3 accesses.
#[repr(C)]
pub struct Tlb {
    /// Direct-mapped tables indexed by `(linear >> 12) % TLB_SIZE`.
    pub tables: [[[TlbEntry; TLB_SIZE]; 3]; 2],
    /// Fills since creation (for statistics).
    pub fills: u64,
    /// Misses since creation (for statistics).
    pub misses: u64,
}

impl Default for Tlb {
    fn default() -> Self {
        Tlb { tables: [[[TlbEntry::EMPTY; TLB_SIZE]; 3]; 2], fills: 0, misses: 0 }
    }
}

impl Tlb {
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
        self.tables[user as usize][kind as usize][Self::index(la)] =
            TlbEntry { tag: page, addend: host.wrapping_sub(page), paddr: paddr & !0xFFF, global };
    }

    /// Flush everything (CR0/CR4 paging changes, EFER writes).
    pub fn flush_all(&mut self) {
        for t in self.tables.iter_mut().flatten() {
            t.fill(TlbEntry::EMPTY);
        }
    }

    /// Flush non-global entries (MOV to CR3, Intel SDM Vol. 3A §4.10.4.1).
    pub fn flush_nonglobal(&mut self) {
        for e in self.tables.iter_mut().flatten().flatten() {
            if !e.global {
                *e = TlbEntry::EMPTY;
            }
        }
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
        for user in 0..2 {
            for e in self.tables[user][TlbKind::Write as usize].iter_mut() {
                if e.tag != TlbEntry::INVALID && e.paddr == p {
                    *e = TlbEntry::EMPTY;
                }
            }
        }
    }
}

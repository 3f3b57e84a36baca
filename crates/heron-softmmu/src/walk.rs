//! The page walk (Intel SDM Vol. 3A §4.3 32-bit paging, §4.4 PAE paging, §4.5 4-level paging):
//! translate a linear address, check access rights, set accessed/dirty bits, or report the #PF
//! error code (§4.7).

/// Which paging structure format is in force (from CR0.PG, CR4.PAE, EFER.LMA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    /// CR0.PG = 0: linear = physical.
    None,
    /// 32-bit paging (CR4.PAE = 0), 4 KiB and, with CR4.PSE, 4 MiB pages.
    Legacy {
        /// CR4.PSE: 4 MiB pages allowed.
        pse: bool,
    },
    /// PAE paging (CR4.PAE = 1, not IA-32e), 4 KiB and 2 MiB pages.
    Pae,
    /// 4-level paging (IA-32e mode), 4 KiB and 2 MiB pages.
    Level4,
}

/// What an access wants from the translation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Access {
    /// Write access.
    pub write: bool,
    /// Instruction fetch.
    pub fetch: bool,
    /// User-mode access (CPL 3, not an implicit supervisor access such as a descriptor read).
    pub user: bool,
}

/// A successful translation.
#[derive(Clone, Copy, Debug)]
pub struct Translation {
    /// Guest-physical address of the byte at the linear address.
    pub paddr: u64,
    /// The page may be written by this access's privilege (the dirty bit is set if `write`).
    pub writable: bool,
    /// The mapping is global (G = 1 with CR4.PGE).
    pub global: bool,
    /// The leaf's dirty bit is set (so a write TLB entry may be created).
    pub dirty: bool,
}

/// A failed translation: the #PF error code (Intel SDM Vol. 3A §4.7, Figure 4-12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkFault {
    /// Error code: P (bit 0), W/R (1), U/S (2), RSVD (3), I/D (4).
    pub error_code: u32,
}

/// Physical address bits this CPU implements (CPUID 0x80000008 EAX[7:0]).
pub const MAXPHYADDR: u32 = 40;

const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const NX: u64 = 1 << 63;
const ADDR_MASK: u64 = ((1u64 << MAXPHYADDR) - 1) & !0xFFF;

/// Control-register state the walk depends on.
#[derive(Clone, Copy, Debug)]
pub struct PagingRegs {
    /// CR3.
    pub cr3: u64,
    /// CR0.WP: supervisor writes honour R/W.
    pub wp: bool,
    /// EFER.NXE: bit 63 is XD instead of reserved.
    pub nxe: bool,
    /// CR4.PGE: the G bit is honoured.
    pub pge: bool,
    /// Set accessed/dirty bits as the processor does; false for debugger look-ups that must
    /// not change guest memory.
    pub set_ad: bool,
}

/// Walk the paging structures in `mem` (guest RAM as bytes; entries outside it read as 0,
/// i.e. not present) for linear address `la`. Sets accessed bits on every level and the dirty
/// bit on the leaf for writes, as the processor does.
pub fn walk(
    mem: &mut [u8],
    mode: PagingMode,
    regs: PagingRegs,
    la: u64,
    acc: Access,
) -> Result<Translation, WalkFault> {
    let fault = |present: bool, rsvd: bool| {
        let mut ec = present as u32;
        ec |= (acc.write as u32) << 1;
        ec |= (acc.user as u32) << 2;
        ec |= (rsvd as u32) << 3;
        // I/D: an instruction fetch with PAE or 4-level paging and NXE (no SMEP here).
        if acc.fetch && regs.nxe && matches!(mode, PagingMode::Pae | PagingMode::Level4) {
            ec |= 1 << 4;
        }
        WalkFault { error_code: ec }
    };
    let (levels, wide): (&[(u32, u32)], bool) = match mode {
        PagingMode::None => {
            return Ok(Translation { paddr: la, writable: true, global: false, dirty: true })
        }
        PagingMode::Legacy { .. } => (&[(22, 10), (12, 10)], false),
        PagingMode::Pae => (&[(30, 2), (21, 9), (12, 9)], true),
        PagingMode::Level4 => (&[(39, 9), (30, 9), (21, 9), (12, 9)], true),
    };
    let mut table = match mode {
        PagingMode::Legacy { .. } => regs.cr3 & 0xFFFF_F000,
        PagingMode::Pae => regs.cr3 & 0xFFFF_FFE0,
        _ => regs.cr3 & ADDR_MASK,
    };
    let mut writable = true;
    let mut user = true;
    let mut nx = false;
    let mut entries: [(u64, u64); 4] = [(0, 0); 4];
    let nlev = levels.len();
    for (lvl, &(shift, bits)) in levels.iter().enumerate() {
        let idx = (la >> shift) & ((1 << bits) - 1);
        let eaddr = table + idx * if wide { 8 } else { 4 };
        let e = read_entry(mem, eaddr, wide);
        if e & P == 0 {
            return Err(fault(false, false));
        }
        let pdpte_pae = mode == PagingMode::Pae && lvl == 0;
        // Reserved bits: above MAXPHYADDR, XD without NXE, and per-level fixed ones.
        let mut rsvd = wide && (e & !NX & !ADDR_MASK & 0x000F_FFFF_FFFF_F000) != 0;
        if wide && !regs.nxe && e & NX != 0 {
            rsvd = true;
        }
        if pdpte_pae && (e & 0x1E6) != 0 {
            rsvd = true;
        }
        let is_leaf_large = e & PS != 0
            && match mode {
                PagingMode::Legacy { pse } => lvl == 0 && pse,
                PagingMode::Pae => lvl == 1,
                PagingMode::Level4 => lvl == 2,
                PagingMode::None => false,
            };
        if mode == PagingMode::Level4 && (lvl == 0 || lvl == 1) && e & PS != 0 {
            // PS in a PML4E is reserved; 1-GiB pages are not advertised (no PDPE1GB).
            rsvd = true;
        }
        if wide && is_leaf_large && e & ((1u64 << shift) - 1) & !0x1FFF != 0 {
            // A 2-MiB page's PDE: bits 20:13 are reserved (bit 12 is PAT), Tables 4-11, 4-18.
            rsvd = true;
        }
        if rsvd {
            return Err(fault(true, true));
        }
        entries[lvl] = (eaddr, e);
        if !pdpte_pae {
            writable &= e & RW != 0;
            user &= e & US != 0;
        }
        if wide && regs.nxe {
            nx |= e & NX != 0;
        }
        if is_leaf_large || lvl == nlev - 1 {
            let paddr = if is_leaf_large {
                let size_shift = shift;
                let base = if wide {
                    e & ADDR_MASK & !((1u64 << size_shift) - 1)
                } else {
                    e & 0xFFC0_0000
                };
                base | (la & ((1u64 << size_shift) - 1))
            } else {
                (e & if wide { ADDR_MASK } else { 0xFFFF_F000 }) | (la & 0xFFF)
            };
            // Access rights (SDM Vol. 3A §4.6).
            if acc.user && !user {
                return Err(fault(true, false));
            }
            if acc.write && !writable && (acc.user || regs.wp) {
                return Err(fault(true, false));
            }
            if acc.fetch && nx {
                return Err(fault(true, false));
            }
            // Accessed on every level used, dirty on the leaf for writes.
            for &(ea, ev) in entries.iter().take(lvl + 1) {
                let mut nv = ev;
                if !(mode == PagingMode::Pae && ea == entries[0].0 && lvl > 0) {
                    nv |= A;
                }
                if ea == eaddr && acc.write {
                    nv |= D;
                }
                if nv != ev && regs.set_ad {
                    write_entry(mem, ea, nv, wide);
                }
            }
            let dirty = acc.write || e & D != 0;
            return Ok(Translation {
                paddr,
                writable: writable || (!acc.user && !regs.wp),
                global: regs.pge && e & G != 0,
                dirty,
            });
        }
        table = e & if wide { ADDR_MASK } else { 0xFFFF_F000 };
    }
    unreachable!("paging levels always end in a leaf")
}

fn read_entry(mem: &[u8], addr: u64, wide: bool) -> u64 {
    let a = addr as usize;
    let n = if wide { 8 } else { 4 };
    match mem.get(a..a + n) {
        Some(b) => {
            let mut v = [0u8; 8];
            v[..n].copy_from_slice(b);
            u64::from_le_bytes(v)
        }
        None => 0,
    }
}

fn write_entry(mem: &mut [u8], addr: u64, v: u64, wide: bool) {
    let a = addr as usize;
    let n = if wide { 8 } else { 4 };
    if let Some(b) = mem.get_mut(a..a + n) {
        b.copy_from_slice(&v.to_le_bytes()[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(cr3: u64) -> PagingRegs {
        PagingRegs { cr3, wp: true, nxe: true, pge: true, set_ad: true }
    }

    #[test]
    fn four_level_4k_sets_accessed_and_dirty() {
        let mut m = vec![0u8; 0x10000];
        // PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000 -> page 0x8000.
        m[0x1000..0x1008].copy_from_slice(&(0x2000u64 | 7).to_le_bytes());
        m[0x2000..0x2008].copy_from_slice(&(0x3000u64 | 7).to_le_bytes());
        m[0x3000..0x3008].copy_from_slice(&(0x4000u64 | 7).to_le_bytes());
        m[0x4008..0x4010].copy_from_slice(&(0x8000u64 | 7).to_le_bytes());
        let t = walk(&mut m, PagingMode::Level4, regs(0x1000), 0x1234, Access { write: true, ..Default::default() }).unwrap();
        assert_eq!(t.paddr, 0x8234);
        let pte = u64::from_le_bytes(m[0x4008..0x4010].try_into().unwrap());
        assert_eq!(pte & (A | D), A | D);
        let pml4e = u64::from_le_bytes(m[0x1000..0x1008].try_into().unwrap());
        assert_eq!(pml4e & (A | D), A);
    }

    #[test]
    fn not_present_and_protection_error_codes() {
        let mut m = vec![0u8; 0x10000];
        let e = walk(&mut m, PagingMode::Level4, regs(0x1000), 0x5000, Access { user: true, ..Default::default() });
        assert_eq!(e.unwrap_err().error_code, 0b100);
        // Supervisor-only 2 MiB page; user write -> P|W|U.
        m[0x1000..0x1008].copy_from_slice(&(0x2000u64 | 7).to_le_bytes());
        m[0x2000..0x2008].copy_from_slice(&(0x3000u64 | 7).to_le_bytes());
        m[0x3000..0x3008].copy_from_slice(&(0x200000u64 | P | RW | PS).to_le_bytes());
        let e = walk(&mut m, PagingMode::Level4, regs(0x1000), 0x5000, Access { user: true, write: true, fetch: false });
        assert_eq!(e.unwrap_err().error_code, 0b111);
        // XD page fetched by supervisor -> P|I/D.
        m[0x3000..0x3008].copy_from_slice(&(0x200000u64 | P | RW | PS | NX).to_le_bytes());
        let e = walk(&mut m, PagingMode::Level4, regs(0x1000), 0x5000, Access { fetch: true, ..Default::default() });
        assert_eq!(e.unwrap_err().error_code, 0b10001);
        // XD with NXE clear is a reserved-bit violation.
        let r = PagingRegs { nxe: false, ..regs(0x1000) };
        let e = walk(&mut m, PagingMode::Level4, r, 0x5000, Access::default());
        assert_eq!(e.unwrap_err().error_code, 0b1001);
    }

    #[test]
    fn legacy_4m_page_and_wp() {
        let mut m = vec![0u8; 0x10000];
        m[0x1000 + 4..0x1000 + 8].copy_from_slice(&((0x0080_0000u32 | 0x81) as u32).to_le_bytes());
        let mode = PagingMode::Legacy { pse: true };
        let t = walk(&mut m, mode, regs(0x1000), 0x0040_1234, Access::default()).unwrap();
        assert_eq!(t.paddr, 0x0080_1234);
        // Read-only page, supervisor write with WP=1 faults, with WP=0 succeeds.
        let e = walk(&mut m, mode, regs(0x1000), 0x0040_1234, Access { write: true, ..Default::default() });
        assert_eq!(e.unwrap_err().error_code, 0b011);
        let r = PagingRegs { wp: false, ..regs(0x1000) };
        assert!(walk(&mut m, mode, r, 0x0040_1234, Access { write: true, ..Default::default() }).is_ok());
    }
}

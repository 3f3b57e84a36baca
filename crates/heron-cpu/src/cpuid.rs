//! CPUID (Intel SDM Vol. 2A CPUID): an x86-64 baseline that advertises only what Heron
//! implements — no local APIC, no SSE3+, no XSAVE, no 1-GiB pages.

/// Physical address width in bits (leaf 0x8000_0008 EAX[7:0]).
pub const PHYS_BITS: u32 = heron_softmmu::walk::MAXPHYADDR;
/// Linear address width in bits (leaf 0x8000_0008 EAX[15:8]).
pub const LINEAR_BITS: u32 = 48;

/// Leaf 1 EDX: FPU, PSE, TSC, MSR, PAE, CX8, MTRR, PGE, CMOV, PAT, CLFSH, MMX, FXSR, SSE, SSE2.
pub const LEAF1_EDX: u32 = (1 << 0) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 8) | (1 << 12) | (1 << 13) | (1 << 15) | (1 << 16) | (1 << 19) | (1 << 23) | (1 << 24) | (1 << 25) | (1 << 26);
/// Leaf 1 ECX: CMPXCHG16B, POPCNT.
pub const LEAF1_ECX: u32 = (1 << 13) | (1 << 23);
/// Leaf 7 sub-leaf 0 EDX: IA32_ARCH_CAPABILITIES (bit 29).
pub const LEAF7_EDX: u32 = 1 << 29;
/// IA32_ARCH_CAPABILITIES (MSR 0x10A, Intel SDM Vol. 4 Table 2-2): Heron retires each
/// instruction whole and in program order, nothing executes transiently for a guest to
/// observe, so it sets the "not susceptible" bits of the transient-execution attacks: RDCL_NO
/// (0, Meltdown), SSB_NO (4), MDS_NO (5), PSCHANGE_MC_NO (6), TAA_NO (8), SBDR_SSDP_NO (13),
/// FBSDP_NO (14), PSDP_NO (15), BHI_NO (20), PBRSB_NO (24), GDS_NO (26), RFDS_NO (27). Bits
/// that enumerate controls or mitigations Heron lacks (IBRS_ALL, RSBA, TSX_CTRL, FB_CLEAR...)
/// stay clear. Linux keys page-table isolation on RDCL_NO: without it, every system call and
/// interrupt from user mode would reload CR3 twice.
pub const ARCH_CAPABILITIES: u64 = (1 << 0) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 8) | (1 << 13) | (1 << 14) | (1 << 15) | (1 << 20) | (1 << 24) | (1 << 26) | (1 << 27);
/// Leaf 0x8000_0001 EDX: SYSCALL, NX, LM.
pub const EXT1_EDX: u32 = (1 << 11) | (1 << 20) | (1 << 29);
/// Leaf 0x8000_0001 ECX: LAHF/SAHF in 64-bit mode.
pub const EXT1_ECX: u32 = 1;

const BRAND: &[u8; 48] = b"Heron Virtual CPU\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

fn regs4(b: &[u8]) -> (u32, u32, u32, u32) {
    let w = |k: usize| u32::from_le_bytes([b[k], b[k + 1], b[k + 2], b[k + 3]]);
    (w(0), w(4), w(8), w(12))
}

/// CPUID for leaf `eax`, sub-leaf `ecx`: returns (EAX, EBX, ECX, EDX).
pub fn cpuid(eax: u32, ecx: u32) -> (u32, u32, u32, u32) {
    match eax {
        // "GenuineIntel": EBX, EDX, ECX.
        0 => (7, 0x756E_6547, 0x6C65_746E, 0x4965_6E69),
        // Family 6, model 15, stepping 11; CLFLUSH line 8 × 8 bytes.
        1 => (0x0000_06FB, 0x0000_0800, LEAF1_ECX, LEAF1_EDX),
        // One descriptor byte 0xFF: "use leaf 4 for cache parameters".
        2 => (0x0000_FF01, 0, 0, 0),
        4 => {
            // (type, level, ways, line, sets): 32 KiB L1d, 32 KiB L1i, 256 KiB L2.
            let caches = [(1u32, 1u32, 8u32, 64u32, 64u32), (2, 1, 8, 64, 64), (3, 2, 8, 64, 512)];
            match caches.get(ecx as usize) {
                Some(&(t, l, w, line, sets)) => (t | (l << 5) | (1 << 8), ((w - 1) << 22) | (line - 1), sets - 1, 0),
                None => (0, 0, 0, 0),
            }
        }
        // Sub-leaf 0: no sub-leaves beyond it (EAX), IA32_ARCH_CAPABILITIES (EDX).
        7 => (0, 0, 0, if ecx == 0 { LEAF7_EDX } else { 0 }),
        0x8000_0000 => (0x8000_0008, 0, 0, 0),
        0x8000_0001 => (0, 0, EXT1_ECX, EXT1_EDX),
        0x8000_0002..=0x8000_0004 => {
            let k = (eax - 0x8000_0002) as usize * 16;
            regs4(&BRAND[k..k + 16])
        }
        0x8000_0006 => (0, 0, (256 << 16) | (6 << 12) | 64, 0),
        // Invariant TSC: the TSC is the virtual clock, constant rate in every state.
        0x8000_0007 => (0, 0, 0, 1 << 8),
        0x8000_0008 => (PHYS_BITS | (LINEAR_BITS << 8), 0, 0, 0),
        _ => (0, 0, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_and_brand() {
        let (_, b, c, d) = cpuid(0, 0);
        let mut v = Vec::new();
        for r in [b, d, c] {
            v.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&v, b"GenuineIntel");
        let (a, _, _, _) = cpuid(0x8000_0002, 0);
        assert_eq!(&a.to_le_bytes(), b"Hero");
    }

    #[test]
    fn no_apic_no_sse3() {
        let (_, _, c, d) = cpuid(1, 0);
        assert_eq!(d & (1 << 9), 0, "APIC must not be advertised");
        assert_eq!(c & 1, 0, "SSE3 must not be advertised");
        assert_ne!(d & (1 << 26), 0);
    }

    #[test]
    fn leaf7_enumerates_arch_capabilities_only() {
        assert_eq!(cpuid(7, 0), (0, 0, 0, 1 << 29));
        assert_eq!(cpuid(7, 1), (0, 0, 0, 0));
        // RDCL_NO, so Linux does not isolate page tables; no control or mitigation bits.
        assert_ne!(ARCH_CAPABILITIES & 1, 0);
        assert_eq!(ARCH_CAPABILITIES & ((1 << 1) | (1 << 2) | (1 << 7) | (1 << 17)), 0);
    }
}

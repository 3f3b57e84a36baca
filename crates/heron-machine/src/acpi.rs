//! ACPI tables for direct Linux boot: just enough for Linux to find the fixed power-management
//! hardware ([`heron_devices::acpi_pm`]) and power the machine off through S5, as on QEMU's PC.
//!
//! References: ACPI Specification 6.5 §5.2.5 (RSDP, and where an OS finds it on IA-PC), §5.2.6
//! (system description table header), §5.2.7 (RSDT), §5.2.8 (XSDT), §5.2.9 (FADT, Table 5.9;
//! flags Table 5.10; IA-PC boot architecture flags Table 5.11), §5.2.10 (FACS), §5.2.11.1 (DSDT),
//! §5.2.3.2 (generic address structure), §6.4 (resource descriptors), §7.4.2 (`\_Sx`), §20
//! (AML encoding; PkgLength §20.2.4).
//!
//! # Layout
//!
//! [`build_acpi_tables`] writes one block at `base` (the machine uses 0xE0000, inside the range
//! the loader's e820 map reserves, 0xE0000 – 0x100000), 64-byte aligned:
//!
//! | offset  | address (base 0xE0000) | table | size |
//! |---------|------------------------|-------|------|
//! | `0x000` | `0xE0000`              | RSDP, revision 2 (ACPI 2.0+), RSDT and XSDT addresses | 36 |
//! | `0x040` | `0xE0040`              | FACS (64-byte aligned, as §5.2.10 requires) | 64 |
//! | `0x080` | `0xE0080`              | RSDT → FADT | 40 |
//! | `0x0C0` | `0xE00C0`              | XSDT → FADT | 44 |
//! | `0x100` | `0xE0100`              | FADT ("FACP"), revision 6.5 layout | 276 |
//! | `0x220` | `0xE0220`              | DSDT (AML below) | [`dsdt`]`.len()` |
//!
//! The RSDP is at `base` itself, on a 16-byte boundary in 0xE0000 – 0xFFFFF, where an OS without
//! a boot-loader hint scans for it (§5.2.5.1); Linux with boot protocol 2.14+ is also told its
//! address through `boot_params.acpi_rsdp_addr` (`linux::set_acpi_rsdp`). The RSDT and XSDT
//! list only the FADT: the DSDT and FACS are reached from it.
//!
//! # FADT
//!
//! A full ACPI 6.5 FADT (revision 6, minor 5, 276 bytes) whose 32-bit block addresses and `X_`
//! generic address structures agree (ACPICA warns when they differ): SCI_INT = `sci_irq`;
//! SMI_CMD = 0 (no SMM: the machine is always in ACPI mode, SCI_EN reads 1); PM1a_EVT_BLK =
//! `pm_base` (4 bytes), PM1a_CNT_BLK = `pm_base + 4` (2 bytes), PM_TMR_BLK = `pm_base + 8`
//! (4 bytes, 24-bit timer); no PM1b, PM2 or GPE blocks; C2/C3 latencies that mean "not
//! supported"; CENTURY = 0x32 (the RTC's century byte); IAPC_BOOT_ARCH = LEGACY_DEVICES | 8042;
//! flags WBINVD | PROC_C1 | SLP_BUTTON (no sleep button) | FIX_RTC (no RTC wake status in the
//! fixed registers) | RESET_REG_SUP, with RESET_REG = I/O port 0xCF9, value 0x06 (full reset
//! through the PIIX reset control register, which the machine implements). PWR_BUTTON is clear:
//! the fixed power button of [`heron_devices::acpi_pm::AcpiPm::press_power_button`] exists.
//! FIRMWARE_CTRL holds the FACS address and X_FIRMWARE_CTRL is 0 (§5.2.9: only one may be set);
//! DSDT and X_DSDT both hold the DSDT address.
//!
//! # DSDT
//!
//! Hand-assembled AML (DSDT revision 2, 64-bit integers), equivalent to this ASL:
//!
//! ```text
//! DefinitionBlock ("", "DSDT", 2, "HERON ", "HERONPC ", 1) {
//!     Name (_S5, Package () { 5, 5, 0, 0 })      // SLP_TYPa, SLP_TYPb = SLP_TYP_S5
//!     Scope (\_SB) {
//!         Device (PCI0) {
//!             Name (_HID, EisaId ("PNP0A03"))       // PCI host bridge
//!             Name (_UID, 0)
//!             Name (_CRS, ResourceTemplate () {
//!                 WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
//!                     0, 0x00, 0xFF, 0, 0x100)
//!                 WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
//!                     0, 0x0000, 0x0CF7, 0, 0x0CF8)
//!                 WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
//!                     0, 0x0D00, 0xFFFF, 0, 0xF300)
//!                 DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable,
//!                     ReadWrite, 0, 0x000A0000, 0x000BFFFF, 0, 0x00020000)
//!                 DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable,
//!                     ReadWrite, 0, HOLE_START, 0xFEBFFFFF, 0, 0xFEC00000 - HOLE_START)
//!             })
//!         }
//!     }
//! }
//! ```
//!
//! `_S5` is all that S5 needs. The PCI host bridge is there because Linux on x86 with ACPI
//! enumerates PCI **only** through ACPI root bridges (`pci_acpi_init` replaces the legacy bus
//! scan), so without it the i440FX bus and every PCI device would disappear. Its windows: all
//! bus numbers, all I/O ports except the configuration ports 0xCF8 – 0xCFF, the VGA window, and
//! the 32-bit PCI hole from HOLE_START = max(0xC0000000, RAM size rounded up to 1 MiB) to below
//! the I/O APIC area at 0xFEC00000 (left out if RAM reaches that far). There is no `_PRT`:
//! Linux then takes each PCI function's IRQ from its Interrupt Line register ("no GSI – using
//! ISA IRQ n"), so the machine must fill Interrupt Line as a BIOS would; a `_PRT` can be added
//! when the board fixes its INTx wiring.
//!
//! # No MADT
//!
//! The CPU has no local APIC (CPUID does not advertise one) and the board has no I/O APIC, so
//! there is no MADT: Linux then keeps the 8259A PIC and treats the SCI as ISA IRQ `sci_irq`
//! (level-triggered through the ELCR). An MADT comes with the APIC.

use heron_devices::acpi_pm::{PM1_CNT_LEN, PM1_CNT_OFFSET, PM1_EVT_LEN, PM_TMR_LEN, PM_TMR_OFFSET, SLP_TYP_S5};
use heron_softmmu::{GuestRam, RamError};

/// OEM ID of every table (6 bytes).
pub const OEM_ID: &[u8; 6] = b"HERON ";
/// OEM table ID of every table (8 bytes).
pub const OEM_TABLE_ID: &[u8; 8] = b"HERONPC ";
/// OEM revision of every table.
pub const OEM_REVISION: u32 = 1;
/// Creator ID of every table (the "ASL compiler" vendor ID, 4 bytes).
pub const CREATOR_ID: &[u8; 4] = b"HRON";
/// Creator revision of every table.
pub const CREATOR_REVISION: u32 = 1;

/// Offset of the RSDP from `base`.
pub const RSDP_OFFSET: u64 = 0x000;
/// Offset of the FACS from `base` (64-byte aligned).
pub const FACS_OFFSET: u64 = 0x040;
/// Offset of the RSDT from `base`.
pub const RSDT_OFFSET: u64 = 0x080;
/// Offset of the XSDT from `base`.
pub const XSDT_OFFSET: u64 = 0x0C0;
/// Offset of the FADT from `base`.
pub const FADT_OFFSET: u64 = 0x100;
/// Offset of the DSDT from `base`.
pub const DSDT_OFFSET: u64 = 0x220;

/// Length of the RSDP, revision 2 (§5.2.5.3).
pub const RSDP_LEN: usize = 36;
/// Length of the FACS (§5.2.10).
pub const FACS_LEN: usize = 64;
/// Length of a system description table header (§5.2.6).
pub const HEADER_LEN: usize = 36;
/// Length of the ACPI 6.5 FADT (§5.2.9, Table 5.9).
pub const FADT_LEN: usize = 276;
/// FADT major revision (ACPI 6.x).
pub const FADT_REVISION: u8 = 6;
/// FADT minor revision (ACPI 6.5).
pub const FADT_MINOR_REVISION: u8 = 5;

/// Lowest address the tables may use: the RSDP must be on a 16-byte boundary in 0xE0000 –
/// 0xFFFFF (§5.2.5.1) and the block must stay in the e820-reserved BIOS area.
pub const BIOS_AREA_START: u64 = 0xE0000;
/// One past the highest address the tables may use.
pub const BIOS_AREA_END: u64 = 0x10_0000;

/// I/O port of the reset register (PIIX reset control register).
pub const RESET_PORT: u16 = 0xCF9;
/// Value written to [`RESET_PORT`] for a reset: SYS_RST | RST_CPU (full reset).
pub const RESET_VALUE: u8 = 0x06;
/// CMOS index of the RTC's century byte (FADT CENTURY).
pub const RTC_CENTURY_INDEX: u8 = 0x32;

/// Lowest start of the 32-bit PCI memory window (the board's PCI hole starts at 3 GiB).
pub const PCI_HOLE_MIN_START: u64 = 0xC000_0000;
/// End (exclusive) of the 32-bit PCI memory window: the I/O APIC, HPET, local APIC and BIOS
/// ranges above it are not PCI's.
pub const PCI_HOLE_END: u64 = 0xFEC0_0000;

// FADT flags (§5.2.9, Table 5.10).
/// WBINVD works (cache flush).
pub const FADT_F_WBINVD: u32 = 1 << 0;
/// C1 (HLT) is supported on all processors.
pub const FADT_F_PROC_C1: u32 = 1 << 2;
/// Power button is a control-method device (clear here: fixed-feature power button).
pub const FADT_F_PWR_BUTTON: u32 = 1 << 4;
/// Sleep button is a control-method device or absent (set: no sleep button).
pub const FADT_F_SLP_BUTTON: u32 = 1 << 5;
/// RTC wake status is not in the fixed register space (set).
pub const FADT_F_FIX_RTC: u32 = 1 << 6;
/// The PM timer is 32 bits (clear: 24 bits).
pub const FADT_F_TMR_VAL_EXT: u32 = 1 << 8;
/// RESET_REG is supported.
pub const FADT_F_RESET_REG_SUP: u32 = 1 << 10;
/// The flags this machine's FADT carries.
pub const FADT_FLAGS: u32 =
    FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON | FADT_F_FIX_RTC | FADT_F_RESET_REG_SUP;

// IA-PC boot architecture flags (§5.2.9.3, Table 5.11).
/// LEGACY_DEVICES: the motherboard has ISA-style devices not enumerated by ACPI (COM1, RTC…).
pub const IAPC_LEGACY_DEVICES: u16 = 1 << 0;
/// 8042: the motherboard has an 8042 keyboard controller at ports 0x60/0x64.
pub const IAPC_8042: u16 = 1 << 1;

// FADT field offsets (§5.2.9, Table 5.9).
const FADT_FIRMWARE_CTRL: usize = 36;
const FADT_DSDT: usize = 40;
const FADT_SCI_INT: usize = 46;
const FADT_SMI_CMD: usize = 48;
const FADT_PM1A_EVT_BLK: usize = 56;
const FADT_PM1A_CNT_BLK: usize = 64;
const FADT_PM_TMR_BLK: usize = 76;
const FADT_PM1_EVT_LEN: usize = 88;
const FADT_PM1_CNT_LEN: usize = 89;
const FADT_PM_TMR_LEN: usize = 91;
const FADT_P_LVL2_LAT: usize = 96;
const FADT_P_LVL3_LAT: usize = 98;
const FADT_CENTURY: usize = 108;
const FADT_IAPC_BOOT_ARCH: usize = 109;
const FADT_FLAGS_OFF: usize = 112;
const FADT_RESET_REG: usize = 116;
const FADT_RESET_VALUE: usize = 128;
const FADT_MINOR: usize = 131;
const FADT_X_FIRMWARE_CTRL: usize = 132;
const FADT_X_DSDT: usize = 140;
const FADT_X_PM1A_EVT_BLK: usize = 148;
const FADT_X_PM1A_CNT_BLK: usize = 172;
const FADT_X_PM_TMR_BLK: usize = 208;

/// C2 latency meaning "C2 not supported" (> 100 µs).
const P_LVL2_LAT_NONE: u16 = 101;
/// C3 latency meaning "C3 not supported" (> 1000 µs).
const P_LVL3_LAT_NONE: u16 = 1001;

// Generic address structure (§5.2.3.2).
const GAS_SYSTEM_IO: u8 = 1;
const GAS_ACCESS_BYTE: u8 = 1;
const GAS_ACCESS_WORD: u8 = 2;
const GAS_ACCESS_DWORD: u8 = 3;

// AML opcodes (§20.2).
const ZERO_OP: u8 = 0x00;
const ONE_OP: u8 = 0x01;
const NAME_OP: u8 = 0x08;
const BYTE_PREFIX: u8 = 0x0A;
const WORD_PREFIX: u8 = 0x0B;
const DWORD_PREFIX: u8 = 0x0C;
const QWORD_PREFIX: u8 = 0x0E;
const SCOPE_OP: u8 = 0x10;
const BUFFER_OP: u8 = 0x11;
const PACKAGE_OP: u8 = 0x12;
const EXT_OP_PREFIX: u8 = 0x5B;
const DEVICE_OP: u8 = 0x82;
const ROOT_CHAR: u8 = b'\\';

/// The AML of `Name(_S5, Package(){5, 5, 0, 0})` as this module emits it (with
/// [`SLP_TYP_S5`] = 5): NameOp, `_S5_`, PackageOp, PkgLength 8, NumElements 4, BytePrefix 5,
/// BytePrefix 5, ZeroOp, ZeroOp.
pub const S5_AML: [u8; 14] = [
    NAME_OP, b'_', b'S', b'5', b'_', PACKAGE_OP, 0x08, 0x04, BYTE_PREFIX, 0x05, BYTE_PREFIX, 0x05, ZERO_OP, ZERO_OP,
];

/// Errors of [`build_acpi_tables`].
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// `base` is not 64-byte aligned (the RSDP needs 16, the FACS at `base + 0x40` needs 64).
    #[error("ACPI tables at {base:#x}: the base must be 64-byte aligned")]
    Misaligned {
        /// The requested base.
        base: u64,
    },
    /// The tables would not lie inside the BIOS area 0xE0000 – 0x100000.
    #[error(
        "ACPI tables at {base:#x}–{end:#x} must lie in the e820-reserved BIOS area \
         {BIOS_AREA_START:#x}–{BIOS_AREA_END:#x} (where an OS scans for the RSDP)"
    )]
    OutsideBiosArea {
        /// The requested base.
        base: u64,
        /// One past the last byte the tables would use.
        end: u64,
    },
    /// The PM register block (12 bytes) does not fit in the 64 KiB I/O space.
    #[error("ACPI PM registers at I/O port {0:#x} do not fit below port 0x10000")]
    BadPmBase(u16),
    /// Guest RAM does not reach the tables.
    #[error(transparent)]
    Ram(#[from] RamError),
}

/// Build the RSDP, RSDT, XSDT, FADT, FACS and DSDT at `base` in guest RAM (see the module
/// documentation for the layout and contents) for PM registers at I/O port `pm_base` (laid out
/// as [`heron_devices::acpi_pm`] documents) and the SCI on ISA IRQ `sci_irq`. Returns the
/// address of the RSDP, which is `base`.
pub fn build_acpi_tables(ram: &mut GuestRam, base: u64, pm_base: u16, sci_irq: u8) -> Result<u64, AcpiError> {
    if !base.is_multiple_of(64) {
        return Err(AcpiError::Misaligned { base });
    }
    if u32::from(pm_base) + u32::from(PM_TMR_OFFSET as u16) + u32::from(PM_TMR_LEN) > 0x1_0000 {
        return Err(AcpiError::BadPmBase(pm_base));
    }
    let dsdt = dsdt(ram.size());
    let total = DSDT_OFFSET + dsdt.len() as u64;
    let end = base.saturating_add(total);
    if base < BIOS_AREA_START || end > BIOS_AREA_END {
        return Err(AcpiError::OutsideBiosArea { base, end });
    }
    let at = |off: u64| base + off;

    let mut blob = vec![0u8; total as usize];
    let mut place = |off: u64, bytes: &[u8]| {
        blob[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
    };
    place(RSDP_OFFSET, &rsdp(at(RSDT_OFFSET), at(XSDT_OFFSET)));
    place(FACS_OFFSET, &facs());
    place(RSDT_OFFSET, &rsdt(&[at(FADT_OFFSET)]));
    place(XSDT_OFFSET, &xsdt(&[at(FADT_OFFSET)]));
    place(FADT_OFFSET, &fadt(at(FACS_OFFSET), at(DSDT_OFFSET), pm_base, sci_irq));
    place(DSDT_OFFSET, &dsdt);
    ram.write_bytes(base, &blob)?;
    Ok(at(RSDP_OFFSET))
}

/// Byte that makes `bytes` sum to 0 mod 256 when stored in a zeroed checksum field.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_sub(b))
}

fn put_u16(buf: &mut [u8], off: usize, v: u16) {
    buf[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    buf[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Generic address structure (§5.2.3.2) for an I/O-port register.
fn put_gas_io(buf: &mut [u8], off: usize, port: u16, bit_width: u8, access: u8) {
    buf[off] = GAS_SYSTEM_IO;
    buf[off + 1] = bit_width;
    buf[off + 2] = 0; // bit offset
    buf[off + 3] = access;
    put_u64(buf, off + 4, u64::from(port));
}

/// A table of `len` bytes with its header (§5.2.6) filled in, checksum still 0.
fn table(signature: &[u8; 4], len: usize, revision: u8) -> Vec<u8> {
    let mut t = vec![0u8; len];
    t[0..4].copy_from_slice(signature);
    put_u32(&mut t, 4, len as u32);
    t[8] = revision;
    t[10..16].copy_from_slice(OEM_ID);
    t[16..24].copy_from_slice(OEM_TABLE_ID);
    put_u32(&mut t, 24, OEM_REVISION);
    t[28..32].copy_from_slice(CREATOR_ID);
    put_u32(&mut t, 32, CREATOR_REVISION);
    t
}

/// Set the header checksum (byte 9) of a finished table.
fn seal(mut t: Vec<u8>) -> Vec<u8> {
    t[9] = 0;
    t[9] = checksum(&t);
    t
}

/// RSDP, revision 2 (§5.2.5.3): checksum over the first 20 bytes, extended checksum over all 36.
fn rsdp(rsdt: u64, xsdt: u64) -> [u8; RSDP_LEN] {
    let mut r = [0u8; RSDP_LEN];
    r[0..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(OEM_ID);
    r[15] = 2;
    put_u32(&mut r, 16, rsdt as u32);
    put_u32(&mut r, 20, RSDP_LEN as u32);
    put_u64(&mut r, 24, xsdt);
    r[8] = checksum(&r[..20]);
    r[32] = checksum(&r);
    r
}

/// FACS (§5.2.10): no hardware signature, no waking vector, global lock free, version 2.
fn facs() -> [u8; FACS_LEN] {
    let mut f = [0u8; FACS_LEN];
    f[0..4].copy_from_slice(b"FACS");
    put_u32(&mut f, 4, FACS_LEN as u32);
    f[32] = 2; // version
    f
}

/// RSDT (§5.2.7) with 32-bit entries.
fn rsdt(entries: &[u64]) -> Vec<u8> {
    let mut t = table(b"RSDT", HEADER_LEN + 4 * entries.len(), 1);
    for (i, &e) in entries.iter().enumerate() {
        put_u32(&mut t, HEADER_LEN + 4 * i, e as u32);
    }
    seal(t)
}

/// XSDT (§5.2.8) with 64-bit entries.
fn xsdt(entries: &[u64]) -> Vec<u8> {
    let mut t = table(b"XSDT", HEADER_LEN + 8 * entries.len(), 1);
    for (i, &e) in entries.iter().enumerate() {
        put_u64(&mut t, HEADER_LEN + 8 * i, e);
    }
    seal(t)
}

/// FADT (§5.2.9), ACPI 6.5 layout; see the module documentation.
fn fadt(facs: u64, dsdt: u64, pm_base: u16, sci_irq: u8) -> Vec<u8> {
    let mut t = table(b"FACP", FADT_LEN, FADT_REVISION);
    let pm1a_evt = pm_base;
    let pm1a_cnt = pm_base + PM1_CNT_OFFSET as u16;
    let pm_tmr = pm_base + PM_TMR_OFFSET as u16;
    put_u32(&mut t, FADT_FIRMWARE_CTRL, facs as u32);
    put_u32(&mut t, FADT_DSDT, dsdt as u32);
    // Byte 44 (ACPI 1.0 INT_MODEL: 0 = dual PIC) and 45 (Preferred_PM_Profile: unspecified) are 0.
    put_u16(&mut t, FADT_SCI_INT, u16::from(sci_irq));
    put_u32(&mut t, FADT_SMI_CMD, 0);
    put_u32(&mut t, FADT_PM1A_EVT_BLK, u32::from(pm1a_evt));
    put_u32(&mut t, FADT_PM1A_CNT_BLK, u32::from(pm1a_cnt));
    put_u32(&mut t, FADT_PM_TMR_BLK, u32::from(pm_tmr));
    t[FADT_PM1_EVT_LEN] = PM1_EVT_LEN;
    t[FADT_PM1_CNT_LEN] = PM1_CNT_LEN;
    t[FADT_PM_TMR_LEN] = PM_TMR_LEN;
    put_u16(&mut t, FADT_P_LVL2_LAT, P_LVL2_LAT_NONE);
    put_u16(&mut t, FADT_P_LVL3_LAT, P_LVL3_LAT_NONE);
    t[FADT_CENTURY] = RTC_CENTURY_INDEX;
    put_u16(&mut t, FADT_IAPC_BOOT_ARCH, IAPC_LEGACY_DEVICES | IAPC_8042);
    put_u32(&mut t, FADT_FLAGS_OFF, FADT_FLAGS);
    put_gas_io(&mut t, FADT_RESET_REG, RESET_PORT, 8, GAS_ACCESS_BYTE);
    t[FADT_RESET_VALUE] = RESET_VALUE;
    t[FADT_MINOR] = FADT_MINOR_REVISION;
    put_u64(&mut t, FADT_X_FIRMWARE_CTRL, 0);
    put_u64(&mut t, FADT_X_DSDT, dsdt);
    put_gas_io(&mut t, FADT_X_PM1A_EVT_BLK, pm1a_evt, PM1_EVT_LEN * 8, GAS_ACCESS_WORD);
    put_gas_io(&mut t, FADT_X_PM1A_CNT_BLK, pm1a_cnt, PM1_CNT_LEN * 8, GAS_ACCESS_WORD);
    put_gas_io(&mut t, FADT_X_PM_TMR_BLK, pm_tmr, PM_TMR_LEN * 8, GAS_ACCESS_DWORD);
    seal(t)
}

// ---- AML ------------------------------------------------------------------------------------

/// PkgLength (§20.2.4) for a package whose contents after the PkgLength are `len` bytes: the
/// encoded value counts the PkgLength bytes themselves. One byte holds up to 63 (bits 5:0);
/// otherwise bits 7:6 of the lead byte give the number (1–3) of following bytes, its bits 3:0
/// the low nibble, and each following byte the next 8 bits (up to 2^28 − 1 in all).
///
/// # Panics
///
/// If the package would be 2^28 bytes or more (never for the tables built here).
pub fn pkg_length(len: usize) -> Vec<u8> {
    if len < 0x3F {
        return vec![(len + 1) as u8];
    }
    for extra in 1..=3usize {
        let total = len + 1 + extra;
        if total < 1 << (4 + 8 * extra) {
            let mut out = vec![((extra as u8) << 6) | (total & 0xF) as u8];
            out.extend((0..extra).map(|i| (total >> (4 + 8 * i)) as u8));
            return out;
        }
    }
    panic!("AML package of {len} bytes exceeds the 2^28-byte PkgLength limit");
}

/// `op` (one or more opcode bytes), a PkgLength, then `body`.
fn aml_pkg(op: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = op.to_vec();
    out.extend(pkg_length(body.len()));
    out.extend_from_slice(body);
    out
}

/// An AML integer with the shortest encoding (ZeroOp, OneOp, Byte/Word/DWord/QWordPrefix).
fn aml_integer(v: u64) -> Vec<u8> {
    match v {
        0 => vec![ZERO_OP],
        1 => vec![ONE_OP],
        2..=0xFF => vec![BYTE_PREFIX, v as u8],
        0x100..=0xFFFF => [&[WORD_PREFIX][..], &(v as u16).to_le_bytes()].concat(),
        0x1_0000..=0xFFFF_FFFF => [&[DWORD_PREFIX][..], &(v as u32).to_le_bytes()].concat(),
        _ => [&[QWORD_PREFIX][..], &v.to_le_bytes()].concat(),
    }
}

/// `Name(seg, <data>)` with a 4-character NameSeg.
fn aml_name(seg: &[u8; 4], data: &[u8]) -> Vec<u8> {
    [&[NAME_OP][..], seg, data].concat()
}

/// `Package(){...}` of integers.
fn aml_package(elements: &[u64]) -> Vec<u8> {
    let mut body = vec![elements.len() as u8];
    for &e in elements {
        body.extend(aml_integer(e));
    }
    aml_pkg(&[PACKAGE_OP], &body)
}

/// `Buffer(){bytes}`.
fn aml_buffer(bytes: &[u8]) -> Vec<u8> {
    let mut body = aml_integer(bytes.len() as u64);
    body.extend_from_slice(bytes);
    aml_pkg(&[BUFFER_OP], &body)
}

/// Compressed EISA ID (`EisaId("PNP0A03")`, §19.6.47) as the 32-bit integer AML stores: three
/// 5-bit letters and four hex digits, big-endian in memory.
///
/// # Panics
///
/// If `id` is not three uppercase letters followed by four hex digits.
pub fn eisa_id(id: &str) -> u32 {
    let b = id.as_bytes();
    assert!(b.len() == 7 && b[..3].iter().all(u8::is_ascii_uppercase), "bad EISA ID {id}");
    let letters = b[..3].iter().fold(0u16, |acc, &c| (acc << 5) | u16::from(c - b'@'));
    let product = u16::from_str_radix(&id[3..], 16).unwrap_or_else(|_| panic!("bad EISA ID {id}"));
    let bytes = [(letters >> 8) as u8, letters as u8, (product >> 8) as u8, product as u8];
    u32::from_le_bytes(bytes)
}

// Resource descriptors (§6.4.3.5).
const RES_DWORD_ADDRESS: u8 = 0x87;
const RES_WORD_ADDRESS: u8 = 0x88;
const RES_END_TAG: u8 = 0x79;
const RES_TYPE_MEMORY: u8 = 0;
const RES_TYPE_IO: u8 = 1;
const RES_TYPE_BUS: u8 = 2;
/// General flags: producer, positive decode, _MIF (min fixed), _MAF (max fixed).
const RES_FLAGS_FIXED_WINDOW: u8 = 0x0C;
/// I/O type-specific flags: _RNG = entire range (ISA and non-ISA).
const RES_IO_ENTIRE_RANGE: u8 = 0x03;
/// Memory type-specific flags: read/write, cacheable.
const RES_MEM_RW_CACHEABLE: u8 = 0x03;
/// Memory type-specific flags: read/write, non-cacheable.
const RES_MEM_RW_NONCACHEABLE: u8 = 0x01;

/// Word Address Space Descriptor (§6.4.3.5.3) for the window `min..=max`.
fn res_word(kind: u8, type_flags: u8, min: u16, max: u16) -> Vec<u8> {
    let mut d = vec![RES_WORD_ADDRESS, 0x0D, 0x00, kind, RES_FLAGS_FIXED_WINDOW, type_flags];
    for v in [0, min, max, 0, max - min + 1] {
        d.extend(v.to_le_bytes());
    }
    d
}

/// DWord Address Space Descriptor (§6.4.3.5.2) for the window `min..=max`.
fn res_dword(kind: u8, type_flags: u8, min: u32, max: u32) -> Vec<u8> {
    let mut d = vec![RES_DWORD_ADDRESS, 0x17, 0x00, kind, RES_FLAGS_FIXED_WINDOW, type_flags];
    for v in [0, min, max, 0, max - min + 1] {
        d.extend(v.to_le_bytes());
    }
    d
}

/// The PCI host bridge's `_CRS` resource template for `ram_size` bytes of RAM from address 0.
fn pci0_crs(ram_size: u64) -> Vec<u8> {
    let mut r = res_word(RES_TYPE_BUS, 0, 0x00, 0xFF);
    r.extend(res_word(RES_TYPE_IO, RES_IO_ENTIRE_RANGE, 0x0000, 0x0CF7));
    r.extend(res_word(RES_TYPE_IO, RES_IO_ENTIRE_RANGE, 0x0D00, 0xFFFF));
    r.extend(res_dword(RES_TYPE_MEMORY, RES_MEM_RW_CACHEABLE, 0x000A_0000, 0x000B_FFFF));
    let hole_start = ram_size.div_ceil(1 << 20).saturating_mul(1 << 20).max(PCI_HOLE_MIN_START);
    if hole_start < PCI_HOLE_END {
        r.extend(res_dword(RES_TYPE_MEMORY, RES_MEM_RW_NONCACHEABLE, hole_start as u32, (PCI_HOLE_END - 1) as u32));
    }
    r.extend([RES_END_TAG, 0x00]); // checksum 0: "treat as correct"
    r
}

/// The DSDT (header and AML) for a machine with `ram_size` bytes of RAM from address 0; see
/// the module documentation for its ASL.
pub fn dsdt(ram_size: u64) -> Vec<u8> {
    let slp_typ = u64::from(SLP_TYP_S5);
    let mut aml = aml_name(b"_S5_", &aml_package(&[slp_typ, slp_typ, 0, 0]));

    let mut pci0 = aml_name(b"_HID", &aml_integer(u64::from(eisa_id("PNP0A03"))));
    pci0.extend(aml_name(b"_UID", &aml_integer(0)));
    pci0.extend(aml_name(b"_CRS", &aml_buffer(&pci0_crs(ram_size))));
    let device = aml_pkg(&[EXT_OP_PREFIX, DEVICE_OP], &[&b"PCI0"[..], &pci0].concat());
    aml.extend(aml_pkg(&[SCOPE_OP], &[&[ROOT_CHAR][..], b"_SB_", &device].concat()));

    let mut t = table(b"DSDT", HEADER_LEN + aml.len(), 2);
    t[HEADER_LEN..].copy_from_slice(&aml);
    seal(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const BASE: u64 = 0xE0000;
    const PM: u16 = 0x600;

    fn ram(mib: u64) -> GuestRam {
        GuestRam::new(mib * MIB).unwrap()
    }

    fn bytes(ram: &GuestRam, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        ram.read_bytes(addr, &mut v).unwrap();
        v
    }
    fn u16_at(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }
    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |s, &x| s.wrapping_add(x))
    }

    /// A table at `addr`, its length taken from its header.
    fn read_table(ram: &GuestRam, addr: u64) -> Vec<u8> {
        let len = u32_at(&bytes(ram, addr, 8), 4) as usize;
        bytes(ram, addr, len)
    }

    /// Build at the default place and return (ram, rsdp address).
    fn built() -> (GuestRam, u64) {
        let mut ram = ram(64);
        let rsdp = build_acpi_tables(&mut ram, BASE, PM, 9).unwrap();
        (ram, rsdp)
    }

    /// Every table reachable from the RSDP, by signature.
    fn tables(ram: &GuestRam, rsdp: u64) -> Vec<(String, u64, Vec<u8>)> {
        let r = bytes(ram, rsdp, RSDP_LEN);
        let rsdt = read_table(ram, u64::from(u32_at(&r, 16)));
        let xsdt = read_table(ram, u64_at(&r, 24));
        let fadt_addr = u64_at(&xsdt, 36);
        let fadt = read_table(ram, fadt_addr);
        let dsdt_addr = u64_at(&fadt, FADT_X_DSDT);
        let facs_addr = u64::from(u32_at(&fadt, FADT_FIRMWARE_CTRL));
        vec![
            ("RSDT".into(), u64::from(u32_at(&r, 16)), rsdt),
            ("XSDT".into(), u64_at(&r, 24), xsdt),
            ("FACP".into(), fadt_addr, fadt),
            ("DSDT".into(), dsdt_addr, read_table(ram, dsdt_addr)),
            ("FACS".into(), facs_addr, read_table(ram, facs_addr)),
        ]
    }

    #[test]
    fn rsdp_fields_and_checksums() {
        let (ram, rsdp) = built();
        assert_eq!(rsdp, BASE);
        assert_eq!(rsdp % 16, 0);
        assert!((0xE0000..0x100000).contains(&rsdp));
        let r = bytes(&ram, rsdp, RSDP_LEN);
        assert_eq!(&r[0..8], b"RSD PTR ");
        assert_eq!(sum(&r[..20]), 0, "ACPI 1.0 checksum");
        assert_eq!(sum(&r), 0, "extended checksum");
        assert_eq!(&r[9..15], b"HERON ");
        assert_eq!(r[15], 2, "revision");
        assert_eq!(u32_at(&r, 16), (BASE + RSDT_OFFSET) as u32);
        assert_eq!(u32_at(&r, 20), 36);
        assert_eq!(u64_at(&r, 24), BASE + XSDT_OFFSET);
        assert_eq!(&r[33..36], &[0, 0, 0]);
    }

    #[test]
    fn every_table_checksums_to_zero() {
        let (ram, rsdp) = built();
        for (sig, addr, t) in tables(&ram, rsdp) {
            assert_eq!(&t[0..4], sig.as_bytes());
            if sig == "FACS" {
                assert_eq!(t.len(), 64);
                assert_eq!(addr % 64, 0, "FACS must be 64-byte aligned");
                continue; // the FACS has no checksum
            }
            assert_eq!(sum(&t), 0, "{sig} checksum");
            assert_eq!(&t[10..16], b"HERON ", "{sig} OEM ID");
            assert_eq!(&t[16..24], OEM_TABLE_ID, "{sig} OEM table ID");
            assert_eq!(&t[28..32], CREATOR_ID, "{sig} creator ID");
            assert!(addr + t.len() as u64 <= 0x100000, "{sig} ends inside the BIOS area");
        }
    }

    #[test]
    fn rsdt_and_xsdt_list_only_the_fadt() {
        let (ram, rsdp) = built();
        let t = tables(&ram, rsdp);
        let (rsdt, xsdt) = (&t[0].2, &t[1].2);
        assert_eq!(rsdt.len(), 40);
        assert_eq!(rsdt[8], 1);
        assert_eq!(u32_at(rsdt, 36), (BASE + FADT_OFFSET) as u32);
        assert_eq!(xsdt.len(), 44);
        assert_eq!(xsdt[8], 1);
        assert_eq!(u64_at(xsdt, 36), BASE + FADT_OFFSET);
    }

    #[test]
    fn tables_do_not_overlap() {
        let (ram, rsdp) = built();
        let mut spans: Vec<(u64, u64)> = tables(&ram, rsdp).iter().map(|(_, a, t)| (*a, *a + t.len() as u64)).collect();
        spans.push((rsdp, rsdp + RSDP_LEN as u64));
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "{:x?} overlaps {:x?}", w[0], w[1]);
        }
    }

    /// Check a generic address structure: system I/O, `width` bits, `access` size, `port`.
    fn assert_gas(f: &[u8], off: usize, port: u16, width: u8, access: u8) {
        assert_eq!(f[off], 1, "system I/O");
        assert_eq!(f[off + 1], width);
        assert_eq!(f[off + 2], 0);
        assert_eq!(f[off + 3], access);
        assert_eq!(u64_at(f, off + 4), u64::from(port));
    }

    #[test]
    fn fadt_fields() {
        let mut ram = ram(64);
        let rsdp = build_acpi_tables(&mut ram, BASE, 0xB000, 10).unwrap();
        let f = &tables(&ram, rsdp)[2].2;
        assert_eq!(&f[0..4], b"FACP");
        assert_eq!(f.len(), 276);
        assert_eq!(f[8], 6, "revision");
        assert_eq!(f[131], 5, "minor revision");
        assert_eq!(u32_at(f, 36), (BASE + FACS_OFFSET) as u32, "FIRMWARE_CTRL");
        assert_eq!(u32_at(f, 40), (BASE + DSDT_OFFSET) as u32, "DSDT");
        assert_eq!(u64_at(f, 132), 0, "X_FIRMWARE_CTRL (FIRMWARE_CTRL is set)");
        assert_eq!(u64_at(f, 140), BASE + DSDT_OFFSET, "X_DSDT");
        assert_eq!(f[44], 0, "INT_MODEL: dual PIC");
        assert_eq!(u16_at(f, 46), 10, "SCI_INT");
        assert_eq!(u32_at(f, 48), 0, "SMI_CMD");
        assert_eq!(&f[52..56], &[0, 0, 0, 0], "ACPI_ENABLE, ACPI_DISABLE, S4BIOS_REQ, PSTATE_CNT");
        assert_eq!(u32_at(f, 56), 0xB000, "PM1a_EVT_BLK");
        assert_eq!(u32_at(f, 60), 0, "PM1b_EVT_BLK");
        assert_eq!(u32_at(f, 64), 0xB004, "PM1a_CNT_BLK");
        assert_eq!(u32_at(f, 68), 0, "PM1b_CNT_BLK");
        assert_eq!(u32_at(f, 72), 0, "PM2_CNT_BLK");
        assert_eq!(u32_at(f, 76), 0xB008, "PM_TMR_BLK");
        assert_eq!(u32_at(f, 80), 0, "GPE0_BLK");
        assert_eq!(u32_at(f, 84), 0, "GPE1_BLK");
        assert_eq!(&f[88..96], &[4, 2, 0, 4, 0, 0, 0, 0], "block lengths, GPE1_BASE, CST_CNT");
        assert!(u16_at(f, 96) > 100, "no C2");
        assert!(u16_at(f, 98) > 1000, "no C3");
        assert_eq!(f[108], 0x32, "CENTURY");
        assert_eq!(u16_at(f, 109), 0x0003, "IAPC_BOOT_ARCH: LEGACY_DEVICES | 8042");
        let flags = u32_at(f, 112);
        assert_eq!(flags, 1 | 1 << 2 | 1 << 5 | 1 << 6 | 1 << 10);
        assert_eq!(flags & FADT_F_PWR_BUTTON, 0, "fixed power button present");
        assert_eq!(flags & FADT_F_TMR_VAL_EXT, 0, "24-bit PM timer");
        assert_gas(f, 116, 0xCF9, 8, 1);
        assert_eq!(f[128], 0x06, "RESET_VALUE");
        assert_gas(f, 148, 0xB000, 32, 2);
        assert_gas(f, 172, 0xB004, 16, 2);
        assert_gas(f, 208, 0xB008, 32, 3);
        for off in [160, 184, 196, 220, 232, 244, 256] {
            assert_eq!(&f[off..off + 12], &[0; 12], "unused GAS at {off}");
        }
        assert_eq!(u64_at(f, 268), 0, "hypervisor vendor identity");
        // The defaults the machine uses.
        let (ram, rsdp) = built();
        let f = &tables(&ram, rsdp)[2].2;
        assert_eq!((u32_at(f, 56), u32_at(f, 64), u32_at(f, 76), u16_at(f, 46)), (0x600, 0x604, 0x608, 9));
    }

    #[test]
    fn fadt_matches_the_pm_device_layout() {
        use heron_devices::acpi_pm::{PM1_CNT_OFFSET, PM1_EVT_OFFSET, PM_TMR_OFFSET, REGION_LEN};
        let (ram, rsdp) = built();
        let f = &tables(&ram, rsdp)[2].2;
        assert_eq!(u64::from(u32_at(f, 56)), u64::from(PM) + PM1_EVT_OFFSET);
        assert_eq!(u64::from(u32_at(f, 64)), u64::from(PM) + PM1_CNT_OFFSET);
        assert_eq!(u64::from(u32_at(f, 76)), u64::from(PM) + PM_TMR_OFFSET);
        assert_eq!(PM_TMR_OFFSET + u64::from(f[91]), REGION_LEN);
    }

    #[test]
    fn facs_fields() {
        let (ram, rsdp) = built();
        let f = &tables(&ram, rsdp)[4].2;
        assert_eq!(&f[0..4], b"FACS");
        assert_eq!(u32_at(f, 4), 64);
        assert_eq!(u32_at(f, 16), 0, "global lock free");
        assert_eq!(f[32], 2, "version");
    }

    #[test]
    fn dsdt_contains_s5() {
        let (ram, rsdp) = built();
        let d = &tables(&ram, rsdp)[3].2;
        assert_eq!(d[8], 2, "DSDT revision 2: 64-bit integers");
        let expect = [0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00];
        assert_eq!(S5_AML, expect);
        assert_eq!(&d[36..36 + 14], &expect, "_S5 is the first object of the DSDT");
        assert_eq!(d.windows(14).filter(|w| *w == expect).count(), 1);
        assert_eq!(SLP_TYP_S5, 5, "the package's SLP_TYP values are the device's S5 value");
    }

    #[test]
    fn dsdt_pci_host_bridge() {
        let d = dsdt(64 * MIB);
        let aml = &d[36..];
        // Scope(\_SB_) follows _S5.
        let scope = &aml[14..];
        assert_eq!(scope[0], 0x10);
        let (len, n) = decode_pkg_length(&scope[1..]);
        assert_eq!(1 + len, scope.len(), "scope spans the rest of the DSDT");
        assert_eq!(&scope[1 + n..1 + n + 5], b"\\_SB_");
        let dev = &scope[1 + n + 5..];
        assert_eq!(&dev[0..2], &[0x5B, 0x82]);
        let (dlen, dn) = decode_pkg_length(&dev[2..]);
        assert_eq!(2 + dlen, dev.len());
        assert_eq!(&dev[2 + dn..2 + dn + 4], b"PCI0");
        let hid = [0x08, b'_', b'H', b'I', b'D', 0x0C, 0x41, 0xD0, 0x0A, 0x03];
        assert!(d.windows(hid.len()).any(|w| w == hid), "_HID PNP0A03");
        assert!(d.windows(6).any(|w| w == [0x08, b'_', b'U', b'I', b'D', 0x00]), "_UID 0");
        // _CRS: 5 descriptors + end tag = 16 + 16 + 16 + 26 + 26 + 2 = 102 bytes.
        let crs = pci0_crs(64 * MIB);
        assert_eq!(crs.len(), 102);
        let crs_aml = [&[0x08, b'_', b'C', b'R', b'S', 0x11, 0x4A, 0x06, 0x0A, 102][..], &crs].concat();
        assert!(d.windows(crs_aml.len()).any(|w| w == crs_aml), "_CRS buffer encoding");
        // Bus 0–255; I/O 0–0xCF7 and 0xD00–0xFFFF.
        assert_eq!(&crs[..16], &[0x88, 0x0D, 0, 2, 0x0C, 0, 0, 0, 0, 0, 0xFF, 0, 0, 0, 0x00, 0x01]);
        assert_eq!(&crs[16..32], &[0x88, 0x0D, 0, 1, 0x0C, 3, 0, 0, 0, 0, 0xF7, 0x0C, 0, 0, 0xF8, 0x0C]);
        assert_eq!(&crs[32..48], &[0x88, 0x0D, 0, 1, 0x0C, 3, 0, 0, 0x00, 0x0D, 0xFF, 0xFF, 0, 0, 0x00, 0xF3]);
        // VGA window and PCI hole.
        assert_eq!(u32_at(&crs, 48 + 10), 0xA0000);
        assert_eq!(u32_at(&crs, 48 + 14), 0xBFFFF);
        assert_eq!(u32_at(&crs, 48 + 22), 0x20000);
        assert_eq!(crs[74 + 5], 0x01, "non-cacheable");
        assert_eq!(u32_at(&crs, 74 + 10), 0xC000_0000);
        assert_eq!(u32_at(&crs, 74 + 14), 0xFEBF_FFFF);
        assert_eq!(u32_at(&crs, 74 + 22), 0x3EC0_0000);
        assert_eq!(&crs[100..], &[0x79, 0x00]);
    }

    #[test]
    fn pci_hole_follows_large_ram() {
        // RAM above 3 GiB pushes the window up; RAM reaching the I/O APIC removes it.
        let crs = pci0_crs(0xD000_0000 + 1);
        assert_eq!(u32_at(&crs, 74 + 10), 0xD010_0000);
        assert_eq!(pci0_crs(0xFEC0_0000).len(), 102 - 26);
        assert_eq!(pci0_crs(0).len(), 102);
    }

    /// Decode a PkgLength: (value, bytes used).
    fn decode_pkg_length(b: &[u8]) -> (usize, usize) {
        let extra = usize::from(b[0] >> 6);
        if extra == 0 {
            return (usize::from(b[0] & 0x3F), 1);
        }
        let mut v = usize::from(b[0] & 0x0F);
        for i in 0..extra {
            v |= usize::from(b[1 + i]) << (4 + 8 * i);
        }
        (v, 1 + extra)
    }

    #[test]
    fn pkg_length_encoding() {
        // One byte up to a total of 63.
        assert_eq!(pkg_length(0), [0x01]);
        assert_eq!(pkg_length(7), [0x08]);
        assert_eq!(pkg_length(62), [0x3F]);
        // 63 content bytes: 65 in all with a 2-byte PkgLength.
        assert_eq!(pkg_length(63), [0x41, 0x04]);
        assert_eq!(pkg_length(104), [0x4A, 0x06]);
        // Two bytes up to 0xFFF, three up to 0xFFFFF, four up to 0xFFFFFFF.
        assert_eq!(pkg_length(0xFFD), [0x4F, 0xFF]);
        assert_eq!(pkg_length(0xFFE), [0x81, 0x00, 0x01]);
        assert_eq!(pkg_length(0xF_FFFC), [0x8F, 0xFF, 0xFF]);
        assert_eq!(pkg_length(0xF_FFFD), [0xC1, 0x00, 0x00, 0x01]);
        for len in [0, 1, 62, 63, 64, 200, 0xFFD, 0xFFE, 0x1_0000, 0xF_FFFC, 0xF_FFFD, 0xFF_FFFF, 0xFFF_FFFB] {
            let enc = pkg_length(len);
            assert_eq!(decode_pkg_length(&enc), (len + enc.len(), enc.len()), "{len}");
        }
    }

    #[test]
    fn aml_integers_and_eisa_id() {
        assert_eq!(aml_integer(0), [0x00]);
        assert_eq!(aml_integer(1), [0x01]);
        assert_eq!(aml_integer(5), [0x0A, 0x05]);
        assert_eq!(aml_integer(0x1234), [0x0B, 0x34, 0x12]);
        assert_eq!(aml_integer(0x030A_D041), [0x0C, 0x41, 0xD0, 0x0A, 0x03]);
        assert_eq!(aml_integer(1 << 32), [0x0E, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(eisa_id("PNP0A03"), 0x030A_D041);
        assert_eq!(eisa_id("PNP0C0C"), 0x0C0C_D041);
    }

    #[test]
    fn bad_placements_are_errors() {
        let mut mem = ram(64);
        assert!(matches!(build_acpi_tables(&mut mem, 0xE0010, PM, 9), Err(AcpiError::Misaligned { base: 0xE0010 })));
        assert!(matches!(build_acpi_tables(&mut mem, 0xD0000, PM, 9), Err(AcpiError::OutsideBiosArea { .. })));
        assert!(matches!(build_acpi_tables(&mut mem, 0x10_0000, PM, 9), Err(AcpiError::OutsideBiosArea { .. })));
        assert!(matches!(build_acpi_tables(&mut mem, 0xFFF00, PM, 9), Err(AcpiError::OutsideBiosArea { .. })));
        assert!(matches!(
            build_acpi_tables(&mut mem, !63, PM, 9),
            Err(AcpiError::OutsideBiosArea { .. })
        ));
        assert!(matches!(build_acpi_tables(&mut mem, BASE, 0xFFF8, 9), Err(AcpiError::BadPmBase(0xFFF8))));
        build_acpi_tables(&mut mem, BASE, 0xFFF4, 9).unwrap();
        // The highest base that fits.
        let top = (BIOS_AREA_END - DSDT_OFFSET - dsdt(64 * MIB).len() as u64) & !63;
        build_acpi_tables(&mut mem, top, PM, 9).unwrap();
        // RAM that does not reach the BIOS area.
        let mut small = GuestRam::new(0x8_0000).unwrap();
        let err = build_acpi_tables(&mut small, BASE, PM, 9).unwrap_err();
        assert!(matches!(err, AcpiError::Ram(_)), "{err}");
        // Nothing outside the block is touched.
        let mut fresh = ram(64);
        build_acpi_tables(&mut fresh, BASE, PM, 9).unwrap();
        let end = BASE + DSDT_OFFSET + dsdt(64 * MIB).len() as u64;
        assert!(bytes(&fresh, end, (BIOS_AREA_END - end) as usize).iter().all(|&b| b == 0));
        assert!(bytes(&fresh, 0xD0000, 0x10000).iter().all(|&b| b == 0));
    }

    /// The ASL of the module documentation with the PCI hole of a machine with little RAM.
    const REFERENCE_ASL: &str = r#"
DefinitionBlock ("", "DSDT", 2, "HERON ", "HERONPC ", 1) {
    Name (_S5, Package () { 5, 5, 0, 0 })
    Scope (\_SB) {
        Device (PCI0) {
            Name (_HID, EisaId ("PNP0A03"))
            Name (_UID, 0)
            Name (_CRS, ResourceTemplate () {
                WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
                    0, 0x00, 0xFF, 0, 0x100)
                WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
                    0, 0x0000, 0x0CF7, 0, 0x0CF8)
                WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
                    0, 0x0D00, 0xFFFF, 0, 0xF300)
                DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable,
                    ReadWrite, 0, 0x000A0000, 0x000BFFFF, 0, 0x00020000)
                DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable,
                    ReadWrite, 0, 0xC0000000, 0xFEBFFFFF, 0, 0x3EC00000)
            })
        }
    }
}
"#;

    /// Optional cross-check with ACPICA's compiler/disassembler when `iasl` is installed (Debian
    /// package acpica-tools); skipped otherwise. The DSDT's AML must equal what iasl compiles
    /// from the documented ASL (`-on`: keep the `\_SB` root prefix as written), and iasl must
    /// disassemble every table without a checksum complaint.
    #[test]
    fn iasl_agrees() {
        let iasl_ok = std::process::Command::new("iasl").arg("-v").output().is_ok_and(|o| o.status.success());
        if !iasl_ok {
            eprintln!("skipping: iasl not installed");
            return;
        }
        let run = |args: &[&std::ffi::OsStr]| {
            let out = std::process::Command::new("iasl").args(args).output().unwrap();
            let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "iasl {args:?}: {log}");
        };
        let dir = std::env::temp_dir().join(format!("heron-acpi-iasl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();

        // Compile the reference ASL and compare the AML after the header (iasl writes its own
        // creator ID and checksum).
        let asl = dir.join("ref.asl");
        std::fs::write(&asl, REFERENCE_ASL).unwrap();
        let prefix = dir.join("ref");
        run(&["-on".as_ref(), "-p".as_ref(), prefix.as_os_str(), asl.as_os_str()]);
        let reference = std::fs::read(dir.join("ref.aml")).unwrap();
        let (ram, rsdp) = built();
        let tabs = tables(&ram, rsdp);
        let ours = &tabs[3].2;
        assert_eq!(&ours[..9], &reference[..9], "DSDT signature, length, revision");
        assert_eq!(&ours[10..28], &reference[10..28], "DSDT OEM ID, table ID, revision");
        assert_eq!(ours[36..], reference[36..], "DSDT AML differs from iasl's");

        // Disassemble every table.
        for (sig, _, t) in &tabs {
            let dat = dir.join(format!("{}.dat", sig.to_lowercase()));
            std::fs::write(&dat, t).unwrap();
            run(&["-d".as_ref(), dat.as_os_str()]);
            let dsl = std::fs::read_to_string(dat.with_extension("dsl")).unwrap();
            assert!(!dsl.contains("Incorrect checksum"), "{sig}: {dsl}");
            if sig == "FACP" {
                for line in [
                    "PM1A Event Block Address : 00000600",
                    "PM1A Control Block Address : 00000604",
                    "PM Timer Block Address : 00000608",
                    "Reset Register Supported (V2) : 1",
                    "Address : 0000000000000CF9",
                ] {
                    assert!(dsl.contains(line), "{line}: {dsl}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

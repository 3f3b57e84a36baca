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
//! # Firmware boot: fw_cfg files and the linker/loader
//!
//! For SeaBIOS the same tables travel as QEMU hands them over ([`acpi_fw_cfg_files`]; QEMU
//! `hw/acpi/bios-linker-loader.c`, SeaBIOS `src/fw/romfile_loader.c`): the RSDP alone in
//! fw_cfg file `etc/acpi/rsdp`, the other tables in `etc/acpi/tables` (the block above from the
//! FACS on, so each table sits at its offset above minus [`TABLES_BLOB_START`]), and a script,
//! `etc/table-loader`, of 128-byte [`LoaderCommand`]s. SeaBIOS allocates the RSDP in its
//! F segment and the tables at the top of RAM below 4 GiB (e820-reserved), adds each file's
//! address to the pointer fields (which hold offsets inside the tables blob) and fills in every
//! checksum (zero in the blobs). The result is byte for byte the direct-boot block wherever the
//! two pieces land. Both paths build the tables with the same code.
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

/// Errors of [`build_acpi_tables`] and [`acpi_fw_cfg_files`].
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
    check_pm_base(pm_base)?;
    // Wrapping: a base near the top of the address space is rejected just below.
    let blob = acpi_blob(|off| base.wrapping_add(off), ram.size(), pm_base, sci_irq);
    let end = base.saturating_add(blob.len() as u64);
    if base < BIOS_AREA_START || end > BIOS_AREA_END {
        return Err(AcpiError::OutsideBiosArea { base, end });
    }
    ram.write_bytes(base, &blob)?;
    Ok(base + RSDP_OFFSET)
}

/// The PM register block must fit below port 0x10000.
fn check_pm_base(pm_base: u16) -> Result<(), AcpiError> {
    if u32::from(pm_base) + u32::from(PM_TMR_OFFSET as u16) + u32::from(PM_TMR_LEN) > 0x1_0000 {
        return Err(AcpiError::BadPmBase(pm_base));
    }
    Ok(())
}

/// The whole table block of the layout in the module documentation (RSDP at offset 0 … DSDT
/// at [`DSDT_OFFSET`]), every table sealed with its checksum. Each table-to-table pointer holds
/// `at(offset of the target)`: the target's address for direct boot, or its offset inside the
/// fw_cfg tables blob for [`acpi_fw_cfg_files`]. `pm_base` must have passed [`check_pm_base`].
/// This is the one place the tables are put together; both boot paths use it.
fn acpi_blob(at: impl Fn(u64) -> u64, ram_size: u64, pm_base: u16, sci_irq: u8) -> Vec<u8> {
    let dsdt = dsdt(ram_size);
    let mut blob = vec![0u8; DSDT_OFFSET as usize + dsdt.len()];
    let mut place = |off: u64, bytes: &[u8]| {
        blob[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
    };
    place(RSDP_OFFSET, &rsdp(at(RSDT_OFFSET), at(XSDT_OFFSET)));
    place(FACS_OFFSET, &facs());
    place(RSDT_OFFSET, &rsdt(&[at(FADT_OFFSET)]));
    place(XSDT_OFFSET, &xsdt(&[at(FADT_OFFSET)]));
    place(FADT_OFFSET, &fadt(at(FACS_OFFSET), at(DSDT_OFFSET), pm_base, sci_irq));
    place(DSDT_OFFSET, &dsdt);
    blob
}

// ---- fw_cfg blobs and the BIOS linker/loader (SeaBIOS) ---------------------------------------

/// fw_cfg file holding the RSDP (QEMU `ACPI_BUILD_RSDP_FILE`).
pub const ACPI_RSDP_FILE: &str = "etc/acpi/rsdp";
/// fw_cfg file holding every other table (QEMU `ACPI_BUILD_TABLE_FILE`).
pub const ACPI_TABLES_FILE: &str = "etc/acpi/tables";
/// fw_cfg file holding the linker/loader script (QEMU `ACPI_BUILD_LOADER_FILE`).
pub const TABLE_LOADER_FILE: &str = "etc/table-loader";
/// Offset in the direct-boot layout where the tables blob starts: the tables blob is the
/// direct-boot block from the FACS on, so a table's offset in the blob is its offset in the
/// module documentation's table minus this.
pub const TABLES_BLOB_START: u64 = FACS_OFFSET;
/// Size of one loader command (SeaBIOS `struct romfile_loader_entry_s`).
pub const LOADER_ENTRY_LEN: usize = 128;
/// Size of a file name field in a loader command, including the terminating NUL.
pub const LOADER_FILE_NAME_LEN: usize = 56;
/// Loader command: allocate and load a file.
pub const LOADER_ALLOCATE: u32 = 1;
/// Loader command: add a file's address to a pointer field.
pub const LOADER_ADD_POINTER: u32 = 2;
/// Loader command: fix up a checksum byte.
pub const LOADER_ADD_CHECKSUM: u32 = 3;
/// Loader command: write a pointer back to QEMU (not used here).
pub const LOADER_WRITE_POINTER: u32 = 4;
/// ALLOCATE zone: high memory (SeaBIOS `ZoneHigh`, the top of RAM below 4 GiB, e820-reserved).
pub const LOADER_ZONE_HIGH: u8 = 1;
/// ALLOCATE zone: the F segment (0xF0000 – 0xFFFFF, where an OS scans for the RSDP).
pub const LOADER_ZONE_FSEG: u8 = 2;

/// One command of the BIOS linker/loader script (QEMU `hw/acpi/bios-linker-loader.c`, SeaBIOS
/// `src/fw/romfile_loader.[ch]`). Encoded as a [`LOADER_ENTRY_LEN`]-byte little-endian record:
/// command u32 at 0, then per command
///
/// * ALLOCATE: file\[56\] at 4, align u32 at 60, zone u8 at 64;
/// * ADD_POINTER: dest_file\[56\] at 4, src_file\[56\] at 60, offset u32 at 116, size u8 at 120;
/// * ADD_CHECKSUM: file\[56\] at 4, offset u32 at 60, start u32 at 64, length u32 at 68;
///
/// the rest zero. File names are NUL-padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoaderCommand {
    /// Copy the fw_cfg file `file` into firmware memory of `zone` ([`LOADER_ZONE_HIGH`] or
    /// [`LOADER_ZONE_FSEG`]) at an address aligned to `align` bytes (a power of two).
    Allocate {
        /// fw_cfg file name.
        file: String,
        /// Alignment in bytes.
        align: u32,
        /// Memory zone.
        zone: u8,
    },
    /// Add the address where `src` was allocated to the `size`-byte (1, 2, 4 or 8)
    /// little-endian field at byte `offset` of `dest`: the field holds an offset inside `src`
    /// and becomes the guest-physical address of that byte.
    AddPointer {
        /// File holding the pointer field.
        dest: String,
        /// File the pointer points into.
        src: String,
        /// Byte offset of the field in `dest`.
        offset: u32,
        /// Field size in bytes.
        size: u8,
    },
    /// Subtract the 8-bit sum of `file[start .. start + length]` from the byte at `offset`, so
    /// the range sums to 0 (an ACPI checksum).
    AddChecksum {
        /// File to fix up.
        file: String,
        /// Byte offset of the checksum byte.
        offset: u32,
        /// First byte of the summed range.
        start: u32,
        /// Length of the summed range in bytes.
        length: u32,
    },
}

impl LoaderCommand {
    /// The command's 128-byte record.
    ///
    /// # Panics
    ///
    /// If a file name has 56 bytes or more (the names used here are constants).
    pub fn encode(&self) -> [u8; LOADER_ENTRY_LEN] {
        let mut e = [0u8; LOADER_ENTRY_LEN];
        let name = |e: &mut [u8; LOADER_ENTRY_LEN], at: usize, n: &str| {
            assert!(n.len() < LOADER_FILE_NAME_LEN, "loader file name {n:?} too long");
            e[at..at + n.len()].copy_from_slice(n.as_bytes());
        };
        match self {
            LoaderCommand::Allocate { file, align, zone } => {
                put_u32(&mut e, 0, LOADER_ALLOCATE);
                name(&mut e, 4, file);
                put_u32(&mut e, 60, *align);
                e[64] = *zone;
            }
            LoaderCommand::AddPointer { dest, src, offset, size } => {
                put_u32(&mut e, 0, LOADER_ADD_POINTER);
                name(&mut e, 4, dest);
                name(&mut e, 60, src);
                put_u32(&mut e, 116, *offset);
                e[120] = *size;
            }
            LoaderCommand::AddChecksum { file, offset, start, length } => {
                put_u32(&mut e, 0, LOADER_ADD_CHECKSUM);
                name(&mut e, 4, file);
                put_u32(&mut e, 60, *offset);
                put_u32(&mut e, 64, *start);
                put_u32(&mut e, 68, *length);
            }
        }
        e
    }

    /// Decode a 128-byte record; `None` for other commands (SeaBIOS skips those) or names
    /// without a terminating NUL.
    pub fn decode(e: &[u8; LOADER_ENTRY_LEN]) -> Option<LoaderCommand> {
        let u32_at = |o: usize| u32::from_le_bytes(e[o..o + 4].try_into().unwrap());
        let name = |o: usize| -> Option<String> {
            let field = &e[o..o + LOADER_FILE_NAME_LEN];
            let end = field.iter().position(|&b| b == 0)?;
            Some(String::from_utf8_lossy(&field[..end]).into_owned())
        };
        Some(match u32_at(0) {
            LOADER_ALLOCATE => LoaderCommand::Allocate { file: name(4)?, align: u32_at(60), zone: e[64] },
            LOADER_ADD_POINTER => {
                LoaderCommand::AddPointer { dest: name(4)?, src: name(60)?, offset: u32_at(116), size: e[120] }
            }
            LOADER_ADD_CHECKSUM => {
                LoaderCommand::AddChecksum { file: name(4)?, offset: u32_at(60), start: u32_at(64), length: u32_at(68) }
            }
            _ => return None,
        })
    }
}

/// The same tables as [`build_acpi_tables`], as the fw_cfg files QEMU hands SeaBIOS, for a
/// machine with `ram_size` bytes of RAM from address 0 (the DSDT's PCI hole depends on it), PM
/// registers at I/O port `pm_base` and the SCI on ISA IRQ `sci_irq`:
///
/// * [`ACPI_RSDP_FILE`]: the 36-byte RSDP, checksums zero, its RSDT and XSDT fields holding the
///   tables' offsets in [`ACPI_TABLES_FILE`];
/// * [`ACPI_TABLES_FILE`]: FACS, RSDT, XSDT, FADT and DSDT, laid out as the module
///   documentation's table from offset [`TABLES_BLOB_START`] on (FACS at blob offset 0, so the
///   blob's 64-byte alignment aligns it), header checksums zero, pointers holding offsets in
///   the blob;
/// * [`TABLE_LOADER_FILE`]: the [`LoaderCommand`]s, in QEMU's order: ALLOCATE the tables
///   (HIGH zone, align 64); per table its ADD_POINTERs (RSDT → FADT 4 bytes, XSDT → FADT
///   8 bytes, FADT FIRMWARE_CTRL → FACS 4 bytes, FADT DSDT → DSDT 4 bytes, FADT X_DSDT → DSDT
///   8 bytes; X_FIRMWARE_CTRL stays 0) then its ADD_CHECKSUM over the whole table (none for the
///   FACS, which has no checksum); ALLOCATE the RSDP (FSEG zone, align 16), its two
///   ADD_POINTERs (RSDT 4 bytes at 16, XSDT 8 bytes at 24), its checksum over bytes 0 – 19,
///   then its extended checksum over all 36 bytes.
///
/// After SeaBIOS runs the script, the tables are byte for byte what [`build_acpi_tables`]
/// writes at an RSDP address R whose tables start at R + [`TABLES_BLOB_START`] — only the
/// addresses differ. Returned in the order rsdp, tables, loader.
pub fn acpi_fw_cfg_files(ram_size: u64, pm_base: u16, sci_irq: u8) -> Result<Vec<(String, Vec<u8>)>, AcpiError> {
    check_pm_base(pm_base)?;
    // Pointers hold offsets relative to the start of the tables blob.
    let blob = acpi_blob(|off| off - TABLES_BLOB_START, ram_size, pm_base, sci_irq);
    let mut rsdp = blob[RSDP_OFFSET as usize..RSDP_OFFSET as usize + RSDP_LEN].to_vec();
    let mut tables = blob[TABLES_BLOB_START as usize..].to_vec();
    let rel = |off: u64| (off - TABLES_BLOB_START) as u32;

    let mut cmds = vec![LoaderCommand::Allocate { file: ACPI_TABLES_FILE.into(), align: 64, zone: LOADER_ZONE_HIGH }];
    let pointer = |dest: &str, src: &str, offset: u32, size: u8| LoaderCommand::AddPointer {
        dest: dest.into(),
        src: src.into(),
        offset,
        size,
    };
    // (table offset, pointer fields as (offset in the table, size)) in QEMU's order of building:
    // FACS, DSDT, FADT, RSDT, XSDT.
    let fadt_ptrs = [(FADT_FIRMWARE_CTRL, 4), (FADT_DSDT, 4), (FADT_X_DSDT, 8)];
    let sdts: [(u64, &[(usize, u8)]); 4] =
        [(DSDT_OFFSET, &[]), (FADT_OFFSET, &fadt_ptrs), (RSDT_OFFSET, &[(HEADER_LEN, 4)]), (XSDT_OFFSET, &[(HEADER_LEN, 8)])];
    for (table, ptrs) in sdts {
        let start = rel(table);
        for &(field, size) in ptrs {
            cmds.push(pointer(ACPI_TABLES_FILE, ACPI_TABLES_FILE, start + field as u32, size));
        }
        let len = u32::from_le_bytes(tables[start as usize + 4..start as usize + 8].try_into().unwrap());
        tables[start as usize + 9] = 0;
        cmds.push(LoaderCommand::AddChecksum { file: ACPI_TABLES_FILE.into(), offset: start + 9, start, length: len });
    }
    cmds.push(LoaderCommand::Allocate { file: ACPI_RSDP_FILE.into(), align: 16, zone: LOADER_ZONE_FSEG });
    cmds.push(pointer(ACPI_RSDP_FILE, ACPI_TABLES_FILE, RSDP_RSDT, 4));
    cmds.push(pointer(ACPI_RSDP_FILE, ACPI_TABLES_FILE, RSDP_XSDT, 8));
    rsdp[RSDP_CHECKSUM as usize] = 0;
    rsdp[RSDP_EXT_CHECKSUM as usize] = 0;
    cmds.push(LoaderCommand::AddChecksum { file: ACPI_RSDP_FILE.into(), offset: RSDP_CHECKSUM, start: 0, length: 20 });
    cmds.push(LoaderCommand::AddChecksum {
        file: ACPI_RSDP_FILE.into(),
        offset: RSDP_EXT_CHECKSUM,
        start: 0,
        length: RSDP_LEN as u32,
    });
    let loader: Vec<u8> = cmds.iter().flat_map(|c| c.encode()).collect();

    Ok(vec![(ACPI_RSDP_FILE.into(), rsdp), (ACPI_TABLES_FILE.into(), tables), (TABLE_LOADER_FILE.into(), loader)])
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

// RSDP field offsets (§5.2.5.3).
const RSDP_CHECKSUM: u32 = 8;
const RSDP_RSDT: u32 = 16;
const RSDP_XSDT: u32 = 24;
const RSDP_EXT_CHECKSUM: u32 = 32;

/// RSDP, revision 2 (§5.2.5.3): checksum over the first 20 bytes, extended checksum over all 36.
fn rsdp(rsdt: u64, xsdt: u64) -> [u8; RSDP_LEN] {
    let mut r = [0u8; RSDP_LEN];
    r[0..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(OEM_ID);
    r[15] = 2;
    put_u32(&mut r, RSDP_RSDT as usize, rsdt as u32);
    put_u32(&mut r, 20, RSDP_LEN as u32);
    put_u64(&mut r, RSDP_XSDT as usize, xsdt);
    r[RSDP_CHECKSUM as usize] = checksum(&r[..20]);
    r[RSDP_EXT_CHECKSUM as usize] = checksum(&r);
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

    // ---- fw_cfg files and the linker/loader ----------------------------------------------

    /// The loader script's commands.
    fn commands(loader: &[u8]) -> Vec<LoaderCommand> {
        assert_eq!(loader.len() % LOADER_ENTRY_LEN, 0, "whole 128-byte records");
        loader
            .chunks_exact(LOADER_ENTRY_LEN)
            .map(|c| LoaderCommand::decode(c.try_into().unwrap()).expect("known command"))
            .collect()
    }

    /// Run the script as SeaBIOS's `romfile_loader_execute` does, with the checks it makes
    /// (which would otherwise end in `warn_internalerror`): ALLOCATE copies a file to the address
    /// `place(file, align, zone)` picks, ADD_POINTER adds a file's address to a field,
    /// ADD_CHECKSUM subtracts a range's sum from a byte. Returns file → (address, bytes).
    fn run_loader(
        files: &[(String, Vec<u8>)],
        place: impl Fn(&str, u32, u8) -> u64,
    ) -> std::collections::BTreeMap<String, (u64, Vec<u8>)> {
        let file = |n: &str| files.iter().find(|(f, _)| f == n).map(|(_, d)| d.clone()).unwrap();
        let mut loaded = std::collections::BTreeMap::new();
        for cmd in commands(&file(TABLE_LOADER_FILE)) {
            match cmd {
                LoaderCommand::Allocate { file: f, align, zone } => {
                    assert!(align.is_power_of_two());
                    assert!(zone == LOADER_ZONE_HIGH || zone == LOADER_ZONE_FSEG);
                    assert!(!loaded.contains_key(&f), "{f} allocated twice");
                    let addr = place(&f, align, zone);
                    assert_eq!(addr % u64::from(align), 0);
                    loaded.insert(f.clone(), (addr, file(&f)));
                }
                LoaderCommand::AddPointer { dest, src, offset, size } => {
                    assert!(matches!(size, 1 | 2 | 4 | 8));
                    let src_addr = loaded.get(&src).expect("src allocated first").0;
                    let d = &mut loaded.get_mut(&dest).expect("dest allocated first").1;
                    let o = offset as usize;
                    assert!(o + usize::from(size) <= d.len());
                    let mut v = [0u8; 8];
                    v[..usize::from(size)].copy_from_slice(&d[o..o + usize::from(size)]);
                    let p = u64::from_le_bytes(v).wrapping_add(src_addr);
                    d[o..o + usize::from(size)].copy_from_slice(&p.to_le_bytes()[..usize::from(size)]);
                }
                LoaderCommand::AddChecksum { file: f, offset, start, length } => {
                    let d = &mut loaded.get_mut(&f).expect("allocated first").1;
                    assert!((offset as usize) < d.len() && (start + length) as usize <= d.len());
                    let sum = d[start as usize..(start + length) as usize].iter().fold(0u8, |a, &b| a.wrapping_add(b));
                    d[offset as usize] = d[offset as usize].wrapping_sub(sum);
                }
            }
        }
        loaded
    }

    fn fw_files() -> Vec<(String, Vec<u8>)> {
        acpi_fw_cfg_files(64 * MIB, PM, 9).unwrap()
    }

    #[test]
    fn fw_cfg_files_are_the_three_files() {
        let files = fw_files();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [ACPI_RSDP_FILE, ACPI_TABLES_FILE, TABLE_LOADER_FILE]);
        assert_eq!(names, ["etc/acpi/rsdp", "etc/acpi/tables", "etc/table-loader"]);
        let (rsdp, tables) = (&files[0].1, &files[1].1);
        assert_eq!(rsdp.len(), RSDP_LEN);
        assert_eq!(&rsdp[0..8], b"RSD PTR ");
        assert_eq!((rsdp[8], rsdp[32]), (0, 0), "checksums are left to the loader");
        assert_eq!(u32_at(rsdp, 16), (RSDT_OFFSET - TABLES_BLOB_START) as u32, "RSDT offset in the blob");
        assert_eq!(u64_at(rsdp, 24), XSDT_OFFSET - TABLES_BLOB_START, "XSDT offset in the blob");
        assert_eq!(&tables[0..4], b"FACS", "FACS first, 64-byte aligned with the blob");
        for (sig, off) in [("RSDT", RSDT_OFFSET), ("XSDT", XSDT_OFFSET), ("FACP", FADT_OFFSET), ("DSDT", DSDT_OFFSET)] {
            let o = (off - TABLES_BLOB_START) as usize;
            assert_eq!(&tables[o..o + 4], sig.as_bytes());
            assert_eq!(tables[o + 9], 0, "{sig} checksum left to the loader");
        }
        let f = (FADT_OFFSET - TABLES_BLOB_START) as usize;
        assert_eq!(u32_at(tables, f + 36), 0, "FIRMWARE_CTRL = FACS at blob offset 0");
        assert_eq!(u32_at(tables, f + 40) as u64, DSDT_OFFSET - TABLES_BLOB_START);
        assert_eq!(u64_at(tables, f + 140), DSDT_OFFSET - TABLES_BLOB_START);
        assert_eq!(u64_at(tables, f + 132), 0, "X_FIRMWARE_CTRL unused");
        assert!(matches!(acpi_fw_cfg_files(0, 0xFFF8, 9), Err(AcpiError::BadPmBase(0xFFF8))));
    }

    #[test]
    fn loader_script_commands() {
        let files = fw_files();
        let t = ACPI_TABLES_FILE.to_string();
        let r = ACPI_RSDP_FILE.to_string();
        let rel = |o: u64| (o - TABLES_BLOB_START) as u32;
        let ptr = |dest: &String, src: &String, offset: u32, size: u8| LoaderCommand::AddPointer {
            dest: dest.clone(),
            src: src.clone(),
            offset,
            size,
        };
        let sum = |file: &String, table: u64, len: u32| LoaderCommand::AddChecksum {
            file: file.clone(),
            offset: rel(table) + 9,
            start: rel(table),
            length: len,
        };
        let dsdt_len = dsdt(64 * MIB).len() as u32;
        let expect = vec![
            LoaderCommand::Allocate { file: t.clone(), align: 64, zone: LOADER_ZONE_HIGH },
            sum(&t, DSDT_OFFSET, dsdt_len),
            ptr(&t, &t, rel(FADT_OFFSET) + 36, 4),
            ptr(&t, &t, rel(FADT_OFFSET) + 40, 4),
            ptr(&t, &t, rel(FADT_OFFSET) + 140, 8),
            sum(&t, FADT_OFFSET, 276),
            ptr(&t, &t, rel(RSDT_OFFSET) + 36, 4),
            sum(&t, RSDT_OFFSET, 40),
            ptr(&t, &t, rel(XSDT_OFFSET) + 36, 8),
            sum(&t, XSDT_OFFSET, 44),
            LoaderCommand::Allocate { file: r.clone(), align: 16, zone: LOADER_ZONE_FSEG },
            ptr(&r, &t, 16, 4),
            ptr(&r, &t, 24, 8),
            LoaderCommand::AddChecksum { file: r.clone(), offset: 8, start: 0, length: 20 },
            LoaderCommand::AddChecksum { file: r.clone(), offset: 32, start: 0, length: 36 },
        ];
        assert_eq!(commands(&files[2].1), expect);
    }

    #[test]
    fn loader_command_encoding() {
        // Field offsets of SeaBIOS's packed struct romfile_loader_entry_s.
        let a = LoaderCommand::Allocate { file: "etc/acpi/rsdp".into(), align: 16, zone: 2 }.encode();
        assert_eq!(&a[0..4], &[1, 0, 0, 0]);
        assert_eq!(&a[4..17], b"etc/acpi/rsdp");
        assert!(a[17..60].iter().all(|&b| b == 0));
        assert_eq!(&a[60..65], &[16, 0, 0, 0, 2]);
        assert!(a[65..].iter().all(|&b| b == 0));
        let p = LoaderCommand::AddPointer { dest: "d".into(), src: "s".into(), offset: 0x1234, size: 8 }.encode();
        assert_eq!(&p[0..6], &[2, 0, 0, 0, b'd', 0]);
        assert_eq!(&p[60..62], b"s\0");
        assert_eq!(&p[116..121], &[0x34, 0x12, 0, 0, 8]);
        assert!(p[121..].iter().all(|&b| b == 0));
        let c = LoaderCommand::AddChecksum { file: "f".into(), offset: 9, start: 0x40, length: 0x114 }.encode();
        assert_eq!(&c[0..6], &[3, 0, 0, 0, b'f', 0]);
        assert_eq!(&c[60..72], &[9, 0, 0, 0, 0x40, 0, 0, 0, 0x14, 1, 0, 0]);
        assert!(c[72..].iter().all(|&b| b == 0));
        for e in [a, p, c] {
            assert_eq!(LoaderCommand::decode(&e).unwrap().encode(), e);
        }
        let mut unknown = [0u8; LOADER_ENTRY_LEN];
        unknown[0] = LOADER_WRITE_POINTER as u8;
        assert_eq!(LoaderCommand::decode(&unknown), None);
        let mut unterminated = a;
        unterminated[4..60].fill(b'x');
        assert_eq!(LoaderCommand::decode(&unterminated), None);
    }

    /// Loaded where build_acpi_tables puts them (RSDP at `base`, tables at `base + 0x40`), the
    /// patched files are byte-identical to the direct-boot block.
    #[test]
    fn loaded_tables_equal_the_direct_boot_tables() {
        for (mib, pm, sci) in [(64, PM, 9), (3072, 0xB000, 10), (16, 0xFFF4, 11)] {
            let files = acpi_fw_cfg_files(mib * MIB, pm, sci).unwrap();
            let loaded = run_loader(&files, |f, _, _| if f == ACPI_RSDP_FILE { BASE } else { BASE + TABLES_BLOB_START });
            let mut via_loader = ram(1);
            for (addr, bytes) in loaded.values() {
                via_loader.write_bytes(*addr, bytes).unwrap();
            }
            // The DSDT depends on the RAM size: build the direct tables in RAM of that size.
            let mut direct = GuestRam::new(mib * MIB).unwrap();
            assert_eq!(build_acpi_tables(&mut direct, BASE, pm, sci).unwrap(), BASE);
            let len = (TABLES_BLOB_START as usize) + loaded[ACPI_TABLES_FILE].1.len();
            assert_eq!(bytes(&via_loader, BASE, len), bytes(&direct, BASE, len), "{mib} MiB");
        }
    }

    /// Loaded the way SeaBIOS places them (RSDP in the F segment, tables at the top of RAM),
    /// every checksum is 0 and every pointer leads to the right table, whose contents are the
    /// direct-boot table's but for the addresses.
    #[test]
    fn loaded_tables_at_seabios_addresses() {
        const RSDP_AT: u64 = 0xF5A30;
        const TABLES_AT: u64 = 64 * MIB - 0x2_0000;
        let loaded = run_loader(&fw_files(), |f, align, zone| match f {
            ACPI_RSDP_FILE => {
                assert_eq!((align, zone), (16, LOADER_ZONE_FSEG));
                RSDP_AT
            }
            _ => {
                assert_eq!((align, zone), (64, LOADER_ZONE_HIGH));
                TABLES_AT
            }
        });
        let mut mem = ram(64);
        for (addr, b) in loaded.values() {
            mem.write_bytes(*addr, b).unwrap();
        }
        let r = bytes(&mem, RSDP_AT, RSDP_LEN);
        assert_eq!(sum(&r[..20]), 0, "RSDP checksum");
        assert_eq!(sum(&r), 0, "RSDP extended checksum");
        let t = tables(&mem, RSDP_AT);
        let at = |off: u64| TABLES_AT + off - TABLES_BLOB_START;
        let expect_addr = [("RSDT", RSDT_OFFSET), ("XSDT", XSDT_OFFSET), ("FACP", FADT_OFFSET), ("DSDT", DSDT_OFFSET), ("FACS", FACS_OFFSET)];
        let (direct_ram, direct_rsdp) = built();
        let direct = tables(&direct_ram, direct_rsdp);
        for ((sig, addr, table), (esig, eoff)) in t.iter().zip(expect_addr) {
            assert_eq!(sig, esig);
            assert_eq!(*addr, at(eoff), "{sig} address");
            assert_eq!(&table[0..4], sig.as_bytes());
            if sig != "FACS" {
                assert_eq!(sum(table), 0, "{sig} checksum");
            }
        }
        // RSDT and XSDT point at the FADT, the FADT at the FACS and DSDT (both fields).
        assert_eq!(u64::from(u32_at(&t[0].2, 36)), at(FADT_OFFSET));
        assert_eq!(u64_at(&t[1].2, 36), at(FADT_OFFSET));
        let f = &t[2].2;
        assert_eq!(u64::from(u32_at(f, 36)), at(FACS_OFFSET));
        assert_eq!(u64::from(u32_at(f, 40)), at(DSDT_OFFSET));
        assert_eq!(u64_at(f, 140), at(DSDT_OFFSET));
        assert_eq!(u64_at(f, 132), 0);
        // Apart from pointers and checksums, each table is the direct-boot one.
        let mask = |sig: &str, mut b: Vec<u8>| {
            let fields: &[(usize, usize)] = match sig {
                "RSDT" => &[(9, 1), (36, 4)],
                "XSDT" => &[(9, 1), (36, 8)],
                "FACP" => &[(9, 1), (36, 8), (140, 8)],
                "DSDT" => &[(9, 1)],
                _ => &[],
            };
            for &(o, n) in fields {
                b[o..o + n].fill(0);
            }
            b
        };
        for ((sig, _, ours), (_, _, theirs)) in t.iter().zip(&direct) {
            assert_eq!(mask(sig, ours.clone()), mask(sig, theirs.clone()), "{sig}");
        }
    }
}

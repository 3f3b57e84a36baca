//! What SeaBIOS (Debian's `seabios` 1.16.x `bios.bin`, built with `CONFIG_QEMU`) learns from the
//! machine when it boots on Heron as it would on QEMU's i440FX PC: fw_cfg files and items
//! ([`heron_devices::fw_cfg`]) and CMOS bytes.
//!
//! References are SeaBIOS rel-1.16.2 sources: `src/fw/paravirt.c` (`qemu_preinit`,
//! `qemu_early_e820`, `qemu_cfg_legacy`, `qemu_cfg_init`, `qemu_cfg_e820`), `src/malloc.c`
//! (`malloc_preinit`), `src/post.c`, `src/boot.c` (`boot_init`, `build_pci_path`,
//! `build_ata_path`, `glob_prefix`, `boot_fail`), `src/hw/ata.c`, `src/block.c`
//! (`get_translation`), `src/hw/floppy.c`, `src/fw/smp.c`, `src/resume.c`, `src/hw/rtc.h`; and
//! QEMU's side of the same interface: `hw/i386/pc.c` (`pc_cmos_init`, `set_boot_dev`,
//! `pc_cmos_init_late`), `hw/i386/fw_cfg.c`, `hw/i386/e820_memory_layout.h`, `hw/ide/qdev.c`
//! (boot device paths), `softmmu/bootdevice.c` (`get_boot_devices_list`).
//!
//! # fw_cfg files ([`SeabiosConfig::files`])
//!
//! | file | format | SeaBIOS use |
//! |------|--------|-------------|
//! | `etc/e820` | [`E820_FW_CFG_ENTRY_LEN`]-byte entries { address LE64, length LE64, type LE32 } ([`e820_file`]) | the memory map; RAM entries below 4 GiB set `RamSize` (top of low RAM), above 4 GiB `RamSizeOver4G`; only types 1 (RAM) and 2 (reserved) are used |
//! | `bootorder` | OpenFirmware device paths, one per line, NUL-terminated ([`bootorder_file`]) | boot priority of the devices it matches |
//! | `etc/boot-fail-wait` | LE32, milliseconds; `0xFFFFFFFF` = never | how long "No bootable device." waits before rebooting (default 60 s) |
//! | `etc/acpi/rsdp`, `etc/acpi/tables`, `etc/table-loader` | see [`crate::acpi::acpi_fw_cfg_files`] | the ACPI tables; with `etc/table-loader` present SeaBIOS also uses PM base 0x600 for a PIIX4 PM function it finds |
//!
//! # fw_cfg items ([`SeabiosConfig::apply`])
//!
//! [`FW_CFG_RAM_SIZE`](heron_devices::fw_cfg::FW_CFG_RAM_SIZE) = the RAM size;
//! [`FW_CFG_NB_CPUS`](heron_devices::fw_cfg::FW_CFG_NB_CPUS) =
//! [`FW_CFG_MAX_CPUS`](heron_devices::fw_cfg::FW_CFG_MAX_CPUS) = [`SeabiosConfig::cpus`];
//! [`FW_CFG_NOGRAPHIC`](heron_devices::fw_cfg::FW_CFG_NOGRAPHIC) = [`SeabiosConfig::serial_console`]
//! (SeaBIOS then adds `etc/sercon-port` = 0x3F8 itself and runs its serial console on COM1,
//! taking over int 10h when there is no VGA option ROM);
//! [`FW_CFG_BOOT_MENU`](heron_devices::fw_cfg::FW_CFG_BOOT_MENU) = 0 (no "Press ESC for boot
//! menu" and no 2.5 s wait for it).
//!
//! Left out on purpose, as optional: `etc/smbios/*` (SeaBIOS then builds its own SMBIOS 2.x
//! tables), `etc/reserved-memory-end` (only places 64-bit PCI BARs above RAM over 4 GiB),
//! `etc/sercon-port` (follows from NOGRAPHIC), `etc/msr_feature_control`, `etc/threads`,
//! `vgaroms/*` and `genroms/*` option ROMs, and the legacy arch-local keys 0x8000 – 0x8003 and
//! NUMA key 0x000D, which read as zeros (no legacy ACPI tables, SMBIOS fields, IRQ0 override,
//! e820 reservations or NUMA nodes).
//!
//! # Memory map ([`seabios_e820`])
//!
//! Like QEMU, the map lists plain RAM: one entry 0 – top of low RAM and, when RAM continues
//! above 4 GiB, one from 4 GiB. SeaBIOS cuts the holes itself: `malloc_preinit` removes
//! 0xA0000 – 0xF0000 and reserves 0xF0000 – 0x100000 (its own code), `post.c` reserves its
//! EBDA up to 0xA0000, the high zone it keeps (256 KiB – 16 MiB at the top of low RAM, where the
//! ACPI tables go) is reserved, and `qemu_preinit` reserves 0xFFFC0000 – 4 GiB (the BIOS ROM).
//!
//! # Boot order
//!
//! SeaBIOS matches each device it finds against the `bootorder` lines with `glob_prefix`; an IDE
//! drive's pattern is `/pci@i0cf8/*@<dev>[,<fn>]/drive@<channel>/disk@<unit>` (`build_ata_path`:
//! the PCI IDE function, the channel it sits on — 0 primary, 1 secondary — and 0 for master or 1
//! for slave). QEMU writes `ide` for the `*` ([`ide_boot_path`]). A matched line's position
//! (1, 2, …) is the device's priority; unmatched devices get the CMOS defaults below (101 …
//! 103), so the CMOS boot bytes and the file should agree. Listing a device that is not there
//! does no harm.
//!
//! # CMOS bytes SeaBIOS reads ([`SeabiosConfig::cmos_bytes`])
//!
//! | index | value here | read by |
//! |-------|------------|---------|
//! | 0x0F | 0x00 | shutdown status: anything else at power-on sends SeaBIOS down its resume paths (`handle_resume`) |
//! | 0x10 | 0x00 | floppy drive types (high nibble drive A, low B): 0 = no floppy |
//! | 0x38 | bits 7–4: third boot device; bit 0: 1 = skip the floppy boot-signature check (0, as QEMU) | `boot_init` |
//! | 0x39 | 2 bits per ATA disk, index = channel × 2 + unit: BIOS CHS translation 0 none, 1 LBA, 2 large, 3 r-echs | `get_translation` |
//! | 0x3D | bits 3–0: first boot device, 7–4: second (1 floppy, 2 hard disk, 3 CD-ROM, 4 network) | `boot_init` |
//! | 0x5F | CPUs − 1 | `qemu_get_present_cpus_count` (count = max(fw_cfg NB_CPUS, this + 1)) |
//!
//! The memory-size bytes are the RTC model's own ([`heron_devices::rtc::Rtc::set_memory_size`]:
//! 0x15/0x16, 0x17/0x18, 0x30/0x31, 0x34/0x35, 0x5B – 0x5D): SeaBIOS reads 0x30/0x31, 0x34/0x35
//! and 0x5B – 0x5D only when `etc/e820` is missing, but QEMU sets them and so should the
//! machine. SeaBIOS also reads the clock registers 0x00 – 0x0D and the
//! century byte 0x32 (the RTC model provides them), and tests 0x08 ≠ 0xFF for "an RTC exists".

use heron_devices::fw_cfg::{FwCfg, FwCfgError};

use crate::acpi::{acpi_fw_cfg_files, AcpiError};
use crate::linux::{E820Entry, E820_RAM};

/// fw_cfg file: the e820 memory map.
pub const E820_FILE: &str = "etc/e820";
/// fw_cfg file: the boot order.
pub const BOOTORDER_FILE: &str = "bootorder";
/// fw_cfg file: milliseconds to wait after "No bootable device." before rebooting.
pub const BOOT_FAIL_WAIT_FILE: &str = "etc/boot-fail-wait";
/// Size of one `etc/e820` entry in bytes (QEMU `struct e820_entry`, packed; SeaBIOS
/// `struct e820_reservation`, built for i386 where u64 fields are 4-byte aligned).
pub const E820_FW_CFG_ENTRY_LEN: usize = 20;
/// Start of RAM above 4 GiB.
pub const HIGH_RAM_START: u64 = 1 << 32;

/// PCI device number of the PIIX3 IDE function on bus 0 (00:01.1, as on QEMU's i440FX PC).
pub const IDE_PCI_DEVICE: u8 = 1;
/// PCI function number of the PIIX3 IDE function.
pub const IDE_PCI_FUNCTION: u8 = 1;
/// Boot path of the primary master IDE drive (QEMU `-hda`), the hard disk's place.
pub const PRIMARY_MASTER_PATH: &str = "/pci@i0cf8/ide@1,1/drive@0/disk@0";
/// Boot path of the secondary master IDE drive (QEMU `-cdrom`), the CD-ROM's place.
pub const SECONDARY_MASTER_PATH: &str = "/pci@i0cf8/ide@1,1/drive@1/disk@0";

/// CMOS index of the shutdown status byte (SeaBIOS `CMOS_RESET_CODE`).
pub const CMOS_SHUTDOWN_STATUS: u8 = 0x0F;
/// CMOS index of the floppy drive types (`CMOS_FLOPPY_DRIVE_TYPE`).
pub const CMOS_FLOPPY_TYPES: u8 = 0x10;
/// CMOS index of boot flags 1: third boot device and floppy-signature check (`CMOS_BIOS_BOOTFLAG1`).
pub const CMOS_BOOT_FLAG1: u8 = 0x38;
/// CMOS index of the ATA disks' BIOS CHS translation (`CMOS_BIOS_DISKTRANSFLAG`).
pub const CMOS_DISK_TRANSLATION: u8 = 0x39;
/// CMOS index of boot flags 2: first and second boot device (`CMOS_BIOS_BOOTFLAG2`).
pub const CMOS_BOOT_FLAG2: u8 = 0x3D;
/// CMOS index of the CPU count minus one (`CMOS_BIOS_SMP_COUNT`).
pub const CMOS_SMP_COUNT: u8 = 0x5F;

/// CMOS boot device code: floppy.
pub const BOOT_DEVICE_FLOPPY: u8 = 1;
/// CMOS boot device code: hard disk.
pub const BOOT_DEVICE_DISK: u8 = 2;
/// CMOS boot device code: CD-ROM.
pub const BOOT_DEVICE_CDROM: u8 = 3;
/// CMOS boot device code: network (option ROM BEV).
pub const BOOT_DEVICE_NETWORK: u8 = 4;

/// ATA translation code: none, logical CHS = physical (SeaBIOS `TRANSLATION_NONE`).
pub const ATA_TRANSLATION_NONE: u8 = 0;
/// ATA translation code: LBA-assisted, up to 1024/255/63 (`TRANSLATION_LBA`).
pub const ATA_TRANSLATION_LBA: u8 = 1;

/// Which device SeaBIOS tries first; the other comes second. The hard disk is the primary
/// master ([`PRIMARY_MASTER_PATH`]), the CD-ROM the secondary master ([`SECONDARY_MASTER_PATH`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BootOrder {
    /// Hard disk, then CD-ROM (QEMU `-boot order=cd`).
    #[default]
    DiskFirst,
    /// CD-ROM, then hard disk (QEMU `-boot order=dc`).
    CdromFirst,
}

impl BootOrder {
    /// The `bootorder` lines, first device first.
    pub fn paths(self) -> [&'static str; 2] {
        match self {
            BootOrder::DiskFirst => [PRIMARY_MASTER_PATH, SECONDARY_MASTER_PATH],
            BootOrder::CdromFirst => [SECONDARY_MASTER_PATH, PRIMARY_MASTER_PATH],
        }
    }

    /// CMOS boot device codes, first to third (0 = none).
    pub fn cmos_devices(self) -> [u8; 3] {
        match self {
            BootOrder::DiskFirst => [BOOT_DEVICE_DISK, BOOT_DEVICE_CDROM, 0],
            BootOrder::CdromFirst => [BOOT_DEVICE_CDROM, BOOT_DEVICE_DISK, 0],
        }
    }
}

/// Errors of [`SeabiosConfig::apply`].
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// The ACPI tables could not be built.
    #[error(transparent)]
    Acpi(#[from] AcpiError),
    /// A fw_cfg file could not be added.
    #[error(transparent)]
    FwCfg(#[from] FwCfgError),
}

/// Logical/physical CHS geometry of an ATA disk as its IDENTIFY DEVICE words 1, 3 and 6 report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chs {
    /// Cylinders (1 – 16383).
    pub cylinders: u32,
    /// Heads (1 – 16).
    pub heads: u32,
    /// Sectors per track (1 – 63).
    pub sectors: u32,
}

/// Everything the machine tells SeaBIOS. Build it with [`SeabiosConfig::new`], adjust fields,
/// then [`SeabiosConfig::apply`] it to the fw_cfg device and write
/// [`SeabiosConfig::cmos_bytes`] into CMOS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeabiosConfig {
    /// Guest RAM in bytes ([`FW_CFG_RAM_SIZE`](heron_devices::fw_cfg::FW_CFG_RAM_SIZE); the
    /// DSDT's PCI hole starts above it).
    pub ram_size: u64,
    /// The `etc/e820` map.
    pub e820: Vec<E820Entry>,
    /// Which IDE device boots first.
    pub boot_order: BootOrder,
    /// Milliseconds to wait after "No bootable device." before rebooting; `None` = never reboot
    /// (QEMU's default, SeaBIOS then idles with interrupts on).
    pub boot_fail_wait_ms: Option<u32>,
    /// I/O base of the ACPI PM registers (FADT).
    pub pm_base: u16,
    /// ISA IRQ of the ACPI SCI (FADT).
    pub sci_irq: u8,
    /// Run SeaBIOS's console on COM1 (fw_cfg NOGRAPHIC).
    pub serial_console: bool,
    /// CPUs present (NB_CPUS, MAX_CPUS, CMOS 0x5F).
    pub cpus: u16,
    /// Physical geometry of the ATA hard disks, indexed by channel × 2 + unit, for CMOS 0x39;
    /// `None` (no disk, a CD-ROM, or unknown) gives LBA translation.
    pub ata_chs: [Option<Chs>; 4],
}

impl SeabiosConfig {
    /// Defaults for `ram_size` bytes of RAM contiguous from address 0 (Heron's RAM, at most
    /// 3 GiB, below the PCI hole): the e820 map [`seabios_e820`]`(ram_size, 0)`, a 1 s
    /// boot-failure wait, the serial console on, one CPU, no disk geometry. `pm_base` and
    /// `sci_irq` are the board's ACPI PM base and SCI (`board::ACPI_PM_BASE`, `ACPI_SCI_IRQ`).
    pub fn new(ram_size: u64, boot_order: BootOrder, pm_base: u16, sci_irq: u8) -> Self {
        SeabiosConfig {
            ram_size,
            e820: seabios_e820(ram_size, 0),
            boot_order,
            boot_fail_wait_ms: Some(1000),
            pm_base,
            sci_irq,
            serial_console: true,
            cpus: 1,
            ata_chs: [None; 4],
        }
    }

    /// The fw_cfg files, in this order: `etc/e820`, `bootorder`, `etc/boot-fail-wait`,
    /// `etc/acpi/rsdp`, `etc/acpi/tables`, `etc/table-loader` (see the module documentation).
    pub fn files(&self) -> Result<Vec<(String, Vec<u8>)>, AcpiError> {
        let mut files = vec![
            (E820_FILE.to_string(), e820_file(&self.e820)),
            (BOOTORDER_FILE.to_string(), bootorder_file(&self.boot_order.paths())),
            (BOOT_FAIL_WAIT_FILE.to_string(), self.boot_fail_wait_ms.unwrap_or(u32::MAX).to_le_bytes().to_vec()),
        ];
        files.extend(acpi_fw_cfg_files(self.ram_size, self.pm_base, self.sci_irq)?);
        Ok(files)
    }

    /// Set the fw_cfg items (RAM size, CPU counts, NOGRAPHIC, no boot menu) and add every file
    /// of [`SeabiosConfig::files`] to `fw`.
    pub fn apply(&self, fw: &mut FwCfg) -> Result<(), FirmwareError> {
        fw.set_ram_size(self.ram_size);
        fw.set_cpus(self.cpus, self.cpus);
        fw.set_nographic(self.serial_console);
        fw.set_boot_menu(false);
        for (name, data) in self.files()? {
            fw.add_file(&name, data)?;
        }
        Ok(())
    }

    /// The CMOS bytes (index, value) SeaBIOS reads besides the clock and memory size; see the
    /// module documentation's table.
    pub fn cmos_bytes(&self) -> Vec<(u8, u8)> {
        let [first, second, third] = self.boot_order.cmos_devices();
        let translation = self.ata_chs.iter().enumerate().fold(0u8, |acc, (i, chs)| {
            let t = chs.map_or(ATA_TRANSLATION_LBA, |c| ata_translation(c.cylinders, c.heads, c.sectors));
            acc | t << (2 * i)
        });
        vec![
            (CMOS_SHUTDOWN_STATUS, 0),
            (CMOS_FLOPPY_TYPES, 0),
            (CMOS_BOOT_FLAG1, third << 4),
            (CMOS_DISK_TRANSLATION, translation),
            (CMOS_BOOT_FLAG2, second << 4 | first),
            (CMOS_SMP_COUNT, self.cpus.clamp(1, 256).wrapping_sub(1) as u8),
        ]
    }
}

/// The fw_cfg files SeaBIOS needs, for `ram_size` bytes of RAM with memory map `e820` (usually
/// [`seabios_e820`]), boot order `boot_order`, ACPI PM registers at `pm_base` and the SCI on
/// ISA IRQ `sci_irq`, a 1 s boot-failure wait: [`SeabiosConfig::files`] of such a config.
pub fn seabios_fw_cfg(
    ram_size: u64,
    e820: &[E820Entry],
    boot_order: BootOrder,
    pm_base: u16,
    sci_irq: u8,
) -> Result<Vec<(String, Vec<u8>)>, AcpiError> {
    let mut cfg = SeabiosConfig::new(ram_size, boot_order, pm_base, sci_irq);
    cfg.e820 = e820.to_vec();
    cfg.files()
}

/// The e820 map QEMU gives SeaBIOS: RAM from 0 to `below_4g` bytes and, if `above_4g` > 0,
/// RAM from 4 GiB for `above_4g` bytes. SeaBIOS reserves the BIOS areas itself (see the module
/// documentation).
pub fn seabios_e820(below_4g: u64, above_4g: u64) -> Vec<E820Entry> {
    let mut map = Vec::with_capacity(2);
    if below_4g > 0 {
        map.push(E820Entry { addr: 0, size: below_4g, kind: E820_RAM });
    }
    if above_4g > 0 {
        map.push(E820Entry { addr: HIGH_RAM_START, size: above_4g, kind: E820_RAM });
    }
    map
}

/// The `etc/e820` file: per entry address LE64, length LE64, type LE32 (20 bytes, no padding).
pub fn e820_file(entries: &[E820Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(E820_FW_CFG_ENTRY_LEN * entries.len());
    for e in entries {
        out.extend(e.addr.to_le_bytes());
        out.extend(e.size.to_le_bytes());
        out.extend(e.kind.to_le_bytes());
    }
    out
}

/// The `bootorder` file for `paths`, highest priority first: the paths joined by newlines with
/// a terminating NUL, as QEMU's `get_boot_devices_list` writes it.
pub fn bootorder_file(paths: &[&str]) -> Vec<u8> {
    let mut out = paths.join("\n").into_bytes();
    out.push(0);
    out
}

/// The boot path of the IDE drive `unit` (0 master, 1 slave) on `channel` (0 primary,
/// 1 secondary) of the PCI IDE function `pci_device`.`pci_function` on bus 0, as QEMU names it
/// and SeaBIOS's `build_ata_path` matches it: `/pci@i0cf8/ide@1,1/drive@1/disk@0` for the
/// secondary master on 00:01.1 (the function is left out when 0).
pub fn ide_boot_path(pci_device: u8, pci_function: u8, channel: u8, unit: u8) -> String {
    let function = if pci_function == 0 { String::new() } else { format!(",{pci_function:x}") };
    format!("/pci@i0cf8/ide@{pci_device:x}{function}/drive@{channel:x}/disk@{unit:x}")
}

/// The BIOS CHS translation QEMU chooses for an ATA disk of physical geometry
/// `cylinders`/`heads`/`sectors` (`hd_bios_chs_auto_trans`): none when it fits the int 13h
/// limits 1024/16/63, else LBA. The value is CMOS 0x39's 2-bit code.
pub fn ata_translation(cylinders: u32, heads: u32, sectors: u32) -> u8 {
    if cylinders <= 1024 && heads <= 16 && sectors <= 63 {
        ATA_TRANSLATION_NONE
    } else {
        ATA_TRANSLATION_LBA
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heron_devices::fw_cfg::{FW_CFG_FILE_DIR, FW_CFG_MAX_CPUS, FW_CFG_NB_CPUS, FW_CFG_NOGRAPHIC, FW_CFG_RAM_SIZE};
    use heron_devices::Device;

    const MIB: u64 = 1 << 20;

    fn file<'a>(files: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
        &files.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} missing")).1
    }

    /// SeaBIOS's `glob_prefix` (boot.c): does `glob` match a prefix of `s` ending at the end
    /// of `s` or at a '/'? `*` matches any characters up to a '/' or the next glob character.
    fn glob_prefix(glob: &str, s: &str) -> bool {
        let (g, s) = (glob.as_bytes(), s.as_bytes());
        let (mut gi, mut si) = (0, 0);
        loop {
            if gi == g.len() && (si == s.len() || s[si] == b'/') {
                return true;
            }
            if gi < g.len() && g[gi] == b'*' {
                let next = g.get(gi + 1).copied();
                if si == s.len() || s[si] == b'/' || Some(s[si]) == next {
                    gi += 1;
                } else {
                    si += 1;
                }
                continue;
            }
            if gi == g.len() || si == s.len() || g[gi] != s[si] {
                return false;
            }
            gi += 1;
            si += 1;
        }
    }

    /// SeaBIOS's priority for an ATA drive: `build_ata_path` with devname "*", then the 1-based
    /// line of `bootorder` it matches (`find_prio`), splitting lines as `loadBootOrder` does.
    fn find_prio(bootorder: &[u8], dev: u8, func: u8, channel: u8, unit: u8) -> Option<usize> {
        let text = std::str::from_utf8(&bootorder[..bootorder.iter().position(|&b| b == 0).unwrap()]).unwrap();
        let f = if func == 0 { String::new() } else { format!(",{func:x}") };
        let glob = format!("/pci@i0cf8/*@{dev:x}{f}/drive@{channel:x}/disk@{unit:x}");
        text.split('\n').position(|line| glob_prefix(&glob, line.trim_end())).map(|i| i + 1)
    }

    #[test]
    fn e820_file_format() {
        let map = seabios_e820(512 * MIB, 0);
        assert_eq!(map, [E820Entry { addr: 0, size: 512 * MIB, kind: 1 }]);
        let f = e820_file(&map);
        assert_eq!(f.len(), 20);
        assert_eq!(&f[0..8], &0u64.to_le_bytes());
        assert_eq!(&f[8..16], &(512 * MIB).to_le_bytes());
        assert_eq!(&f[16..20], &[1, 0, 0, 0]);
        let map = seabios_e820(3 << 30, 1 << 30);
        assert_eq!(map[1], E820Entry { addr: 1 << 32, size: 1 << 30, kind: 1 });
        let f = e820_file(&map);
        assert_eq!(f.len(), 40);
        assert_eq!(&f[20..28], &(1u64 << 32).to_le_bytes());
        // A reserved entry keeps its type.
        let f = e820_file(&[E820Entry { addr: 0xFEFFC000, size: 0x4000, kind: 2 }]);
        assert_eq!(&f[16..20], &[2, 0, 0, 0]);
    }

    /// What SeaBIOS's `qemu_early_e820` makes of the file: RamSize and RamSizeOver4G.
    #[test]
    fn e820_gives_seabios_the_ram_size() {
        for (below, above) in [(16 * MIB, 0), (3 << 30, 0), (3 << 30, 2 << 30)] {
            let f = e820_file(&seabios_e820(below, above));
            let (mut ram, mut over) = (0u64, 0u64);
            for e in f.chunks_exact(20) {
                let addr = u64::from_le_bytes(e[0..8].try_into().unwrap());
                let len = u64::from_le_bytes(e[8..16].try_into().unwrap());
                if u32::from_le_bytes(e[16..20].try_into().unwrap()) == 1 {
                    if addr < 1 << 32 {
                        ram = ram.max(addr + len);
                    } else {
                        over = over.max(addr + len - (1 << 32));
                    }
                }
            }
            assert_eq!((ram, over), (below, above));
        }
    }

    #[test]
    fn boot_paths() {
        assert_eq!(ide_boot_path(IDE_PCI_DEVICE, IDE_PCI_FUNCTION, 0, 0), PRIMARY_MASTER_PATH);
        assert_eq!(ide_boot_path(IDE_PCI_DEVICE, IDE_PCI_FUNCTION, 1, 0), SECONDARY_MASTER_PATH);
        assert_eq!(ide_boot_path(1, 1, 1, 1), "/pci@i0cf8/ide@1,1/drive@1/disk@1");
        assert_eq!(ide_boot_path(0x1F, 0, 0, 0), "/pci@i0cf8/ide@1f/drive@0/disk@0");
    }

    #[test]
    fn bootorder_matches_seabios_globs() {
        let disk_first = bootorder_file(&BootOrder::DiskFirst.paths());
        assert_eq!(disk_first, b"/pci@i0cf8/ide@1,1/drive@0/disk@0\n/pci@i0cf8/ide@1,1/drive@1/disk@0\0");
        assert_eq!(find_prio(&disk_first, 1, 1, 0, 0), Some(1), "primary master disk");
        assert_eq!(find_prio(&disk_first, 1, 1, 1, 0), Some(2), "secondary master CD");
        assert_eq!(find_prio(&disk_first, 1, 1, 0, 1), None, "primary slave unlisted");
        assert_eq!(find_prio(&disk_first, 1, 1, 1, 1), None, "secondary slave unlisted");
        assert_eq!(find_prio(&disk_first, 2, 1, 0, 0), None, "another PCI slot");
        let cd_first = bootorder_file(&BootOrder::CdromFirst.paths());
        assert_eq!(find_prio(&cd_first, 1, 1, 1, 0), Some(1));
        assert_eq!(find_prio(&cd_first, 1, 1, 0, 0), Some(2));
        // The glob helper itself, on SeaBIOS's own examples.
        assert!(glob_prefix("/pci@i0cf8/*@1,1", "/pci@i0cf8/ide@1,1/drive@1/disk@0"));
        assert!(!glob_prefix("/pci@i0cf8/*@1", "/pci@i0cf8/ide@1,1"));
        assert!(glob_prefix("/pci@i0cf8/*@1", "/pci@i0cf8/isa@1"));
    }

    #[test]
    fn cmos_boot_bytes_agree_with_qemu() {
        let mut cfg = SeabiosConfig::new(64 * MIB, BootOrder::DiskFirst, 0x600, 9);
        let bytes = cfg.cmos_bytes();
        assert_eq!(bytes, [(0x0F, 0), (0x10, 0), (0x38, 0x00), (0x39, 0x55), (0x3D, 0x32), (0x5F, 0)]);
        // SeaBIOS boot_init: bootorder = 0x3D | (0x38 & 0xF0) << 4, one nibble per priority.
        let get = |b: &[(u8, u8)], i: u8| b.iter().find(|(k, _)| *k == i).unwrap().1;
        let order = u32::from(get(&bytes, 0x3D)) | u32::from(get(&bytes, 0x38) & 0xF0) << 4;
        assert_eq!([order & 0xF, order >> 4 & 0xF, order >> 8 & 0xF], [2, 3, 0], "HD 101, CD 102");
        cfg.boot_order = BootOrder::CdromFirst;
        cfg.cpus = 2;
        cfg.ata_chs[0] = Some(Chs { cylinders: 1024, heads: 16, sectors: 63 });
        cfg.ata_chs[1] = Some(Chs { cylinders: 16383, heads: 16, sectors: 63 });
        let bytes = cfg.cmos_bytes();
        assert_eq!(get(&bytes, 0x3D), 0x23);
        assert_eq!(get(&bytes, 0x5F), 1);
        assert_eq!(get(&bytes, 0x39), 0b01_01_01_00, "disk 0 none, disk 1 LBA, slots 2, 3 LBA");
        assert_eq!(ata_translation(1025, 16, 63), ATA_TRANSLATION_LBA);
        assert_eq!(ata_translation(1024, 17, 63), ATA_TRANSLATION_LBA);
    }

    #[test]
    fn files_and_formats() {
        let files = seabios_fw_cfg(256 * MIB, &seabios_e820(256 * MIB, 0), BootOrder::CdromFirst, 0x600, 9).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["etc/e820", "bootorder", "etc/boot-fail-wait", "etc/acpi/rsdp", "etc/acpi/tables", "etc/table-loader"]);
        assert_eq!(file(&files, "etc/boot-fail-wait"), &1000u32.to_le_bytes());
        assert_eq!(file(&files, "etc/e820"), e820_file(&seabios_e820(256 * MIB, 0)));
        assert!(file(&files, "bootorder").starts_with(SECONDARY_MASTER_PATH.as_bytes()));
        let mut cfg = SeabiosConfig::new(256 * MIB, BootOrder::DiskFirst, 0x600, 9);
        cfg.boot_fail_wait_ms = None;
        assert_eq!(file(&cfg.files().unwrap(), "etc/boot-fail-wait"), &[0xFF; 4]);
        cfg.pm_base = 0xFFFC;
        assert!(cfg.files().is_err());
    }

    /// Read the fw_cfg device the way SeaBIOS's qemu_cfg_init does (without DMA): the
    /// directory, then each file by its selector, and the legacy items.
    #[test]
    fn applied_to_the_device() {
        let cfg = SeabiosConfig::new(128 * MIB, BootOrder::DiskFirst, 0x600, 9);
        let mut fw = FwCfg::without_dma();
        cfg.apply(&mut fw).unwrap();
        let mut read = |key: u16, n: usize| {
            fw.write(0, 0, &key.to_le_bytes());
            (0..n)
                .map(|_| {
                    let mut b = [0];
                    fw.read(0, 1, &mut b);
                    b[0]
                })
                .collect::<Vec<u8>>()
        };
        assert_eq!(read(FW_CFG_RAM_SIZE, 8), (128 * MIB).to_le_bytes());
        assert_eq!(read(FW_CFG_NB_CPUS, 2), [1, 0]);
        assert_eq!(read(FW_CFG_MAX_CPUS, 2), [1, 0]);
        assert_eq!(read(FW_CFG_NOGRAPHIC, 2), [1, 0]);
        assert_eq!(read(0x000E, 2), [0, 0], "no boot menu");
        let count = u32::from_be_bytes(read(FW_CFG_FILE_DIR, 4).try_into().unwrap()) as usize;
        let dir = read(FW_CFG_FILE_DIR, 4 + 64 * count);
        let expected = cfg.files().unwrap();
        assert_eq!(count, expected.len());
        let mut seen = Vec::new();
        for e in dir[4..].chunks_exact(64) {
            let size = u32::from_be_bytes(e[0..4].try_into().unwrap()) as usize;
            let select = u16::from_be_bytes(e[4..6].try_into().unwrap());
            let name = std::str::from_utf8(&e[8..]).unwrap().trim_end_matches('\0').to_string();
            // SeaBIOS's early e820 scan compares the first 9 bytes, NUL included.
            if name == "etc/e820" {
                assert_eq!(&e[8..17], b"etc/e820\0");
            }
            assert_eq!(read(select, size), file(&expected, &name), "{name}");
            seen.push(name);
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "directory in name order");
    }
}

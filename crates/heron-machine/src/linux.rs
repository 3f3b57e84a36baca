//! Direct Linux boot: load an x86 bzImage, its initrd and command line into guest RAM and prepare
//! everything the kernel's 64-bit entry point expects, following the Linux x86 boot protocol 2.xx
//! (Documentation/x86/boot.rst; structure layouts from arch/x86/include/uapi/asm/bootparam.h and
//! Documentation/x86/zero-page.rst).
//!
//! [`load_linux`] writes guest RAM and returns a [`LinuxBoot`] describing the CPU state the machine
//! must establish before running the guest (Documentation/x86/boot.rst, "64-bit Boot Protocol"):
//! long mode with paging (CR0.PE|PG, CR4.PAE, EFER.LME|LMA), CR3 = [`LinuxBoot::cr3`], the GDT at
//! [`LinuxBoot::gdt_base`], CS = [`LinuxBoot::code_selector`] (64-bit code), DS/ES/SS =
//! [`LinuxBoot::data_selector`], RSI = [`LinuxBoot::zero_page`], RIP = [`LinuxBoot::entry64`],
//! interrupts disabled. The kernel sets up its own stack, so RSP does not matter.
//!
//! # Guest-physical memory layout
//!
//! Everything the loader writes below 1 MiB lies in the low "usable" e820 range
//! (0 – 0x9FC00), which Linux reserves for itself early in boot, so none of it is overwritten
//! before the kernel has copied what it needs (boot_params and the command line are copied in
//! `copy_bootdata`; the kernel builds its own page tables and GDT).
//!
//! | range                 | contents                                                          |
//! |-----------------------|-------------------------------------------------------------------|
//! | `0x0000 – 0x5FFF`     | untouched (real-mode IVT / BDA area; left as is)                  |
//! | `0x6000 – 0x601F`     | GDT: null, null, `__BOOT_CS` (0x10) 64-bit code, `__BOOT_DS` (0x18) data |
//! | `0x7000 – 0x7FFF`     | zero page (`struct boot_params`, 4096 bytes)                      |
//! | `0x9000 – 0x9FFF`     | PML4 (entry 0 → PDPT)                                             |
//! | `0xA000 – 0xAFFF`     | PDPT (entries 0–3 → the four page directories)                    |
//! | `0xB000 – 0xEFFF`     | four page directories: identity map of 0 – 4 GiB with 2 MiB pages |
//! | `0x20000 – …`         | kernel command line, NUL-terminated (at most up to `0x9F000`)      |
//! | load address (≥ 1 MiB)| protected-mode kernel; `init_size` bytes reserved from here       |
//! | high RAM              | initrd, page aligned, as high as allowed (below 4 GiB)            |
//!
//! The load address is the kernel's `pref_address` (16 MiB for usual x86-64 kernels; for a
//! relocatable kernel raised to ≥ 1 MiB and aligned to `kernel_alignment`), and RAM must hold
//! `init_size` bytes from there. The loader does not move a kernel lower to save RAM: the
//! decompressor would still use `init_size` bytes from `pref_address` (see `choose_load_address`).
//!
//! Only 64-bit entry is implemented. The header parsing ([`SetupHeader`]) and the zero-page
//! construction are independent of the entry mode, so a 32-bit entry (`code32_start`, flat 32-bit
//! segments, paging off) can be added as another [`EntryMode`].

use heron_softmmu::{GuestRam, RamError};

/// Guest-physical address of the GDT the loader builds (bytes; 4 descriptors of 8 bytes).
pub const GDT_ADDR: u64 = 0x6000;
/// Guest-physical address of the zero page (`struct boot_params`, [`ZERO_PAGE_SIZE`] bytes).
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Size in bytes of the zero page (`struct boot_params`, arch/x86/include/uapi/asm/bootparam.h).
pub const ZERO_PAGE_SIZE: usize = 4096;
/// Guest-physical address of the PML4 of the identity page tables (loaded into CR3).
pub const PML4_ADDR: u64 = 0x9000;
/// Guest-physical address of the page-directory-pointer table (one 4 KiB page).
pub const PDPT_ADDR: u64 = 0xA000;
/// Guest-physical address of the first of the four page directories (4 × 4 KiB, contiguous).
pub const PD_ADDR: u64 = 0xB000;
/// Bytes of guest-physical address space identity-mapped by the boot page tables (4 GiB).
pub const IDENTITY_MAP_BYTES: u64 = 4 << 30;
/// Guest-physical address of the kernel command line (NUL-terminated).
pub const CMDLINE_ADDR: u64 = 0x20000;
/// Guest-physical address one past the last byte the command line (with its NUL) may occupy.
pub const CMDLINE_REGION_END: u64 = 0x9F000;

/// GDT selector of the 64-bit boot code segment (`__BOOT_CS`, Documentation/x86/boot.rst).
pub const BOOT_CS: u16 = 0x10;
/// GDT selector of the flat boot data segment (`__BOOT_DS`, Documentation/x86/boot.rst).
pub const BOOT_DS: u16 = 0x18;
/// 64-bit code descriptor: base 0, limit 4 GiB, present, DPL 0, execute/read, L=1, G=1.
pub const GDT_CODE64: u64 = 0x00AF_9A00_0000_FFFF;
/// Flat data descriptor: base 0, limit 4 GiB, present, DPL 0, read/write, D/B=1, G=1.
pub const GDT_DATA: u64 = 0x00CF_9200_0000_FFFF;

/// E820 type of usable RAM (`E820_TYPE_RAM`, arch/x86/include/asm/e820/types.h).
pub const E820_RAM: u32 = 1;
/// E820 type of reserved memory (`E820_TYPE_RESERVED`).
pub const E820_RESERVED: u32 = 2;
/// Most e820 entries the zero page can hold (`E820_MAX_ENTRIES_ZEROPAGE`, bootparam.h).
pub const E820_MAX_ENTRIES_ZEROPAGE: usize = 128;

/// `loadflags` bit 0: the protected-mode code is loaded at 0x100000 (a bzImage).
/// Documentation/x86/boot.rst, "Details of header fields", loadflags.
pub const LOADED_HIGH: u8 = 0x01;
/// `loadflags` bit 7: `heap_end_ptr` is valid.
pub const CAN_USE_HEAP: u8 = 0x80;
/// `xloadflags` bit 0: the kernel has the legacy 64-bit entry point at load address + 0x200.
pub const XLF_KERNEL_64: u16 = 0x0001;
/// `xloadflags` bit 1: kernel, boot_params, command line and initrd may live above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 0x0002;

/// Offset in bytes of the 64-bit entry point from the load address (Documentation/x86/boot.rst,
/// "64-bit Boot Protocol").
pub const ENTRY64_OFFSET: u64 = 0x200;

// Offsets (bytes) inside the kernel file's first sector == inside `struct boot_params`.
// Documentation/x86/boot.rst, "The real-mode kernel header"; Documentation/x86/zero-page.rst.
const BP_EXT_RAMDISK_IMAGE: usize = 0x0C0;
const BP_EXT_RAMDISK_SIZE: usize = 0x0C4;
const BP_EXT_CMD_LINE_PTR: usize = 0x0C8;
const BP_ALT_MEM_K: usize = 0x1E0;
const BP_E820_ENTRIES: usize = 0x1E8;
const BP_E820_TABLE: usize = 0x2D0;
const BP_HDR_LIMIT: usize = 0x290; // edd_mbr_sig_buffer follows struct setup_header (+ padding)
const E820_ENTRY_SIZE: usize = 20;

const HDR_SETUP_SECTS: usize = 0x1F1;
const HDR_SYSSIZE: usize = 0x1F4;
const HDR_VID_MODE: usize = 0x1FA;
const HDR_JUMP: usize = 0x200;
const HDR_HEADER: usize = 0x202;
const HDR_VERSION: usize = 0x206;
const HDR_TYPE_OF_LOADER: usize = 0x210;
const HDR_LOADFLAGS: usize = 0x211;
const HDR_CODE32_START: usize = 0x214;
const HDR_RAMDISK_IMAGE: usize = 0x218;
const HDR_RAMDISK_SIZE: usize = 0x21C;
const HDR_HEAP_END_PTR: usize = 0x224;
const HDR_CMD_LINE_PTR: usize = 0x228;
const HDR_INITRD_ADDR_MAX: usize = 0x22C;
const HDR_KERNEL_ALIGNMENT: usize = 0x230;
const HDR_RELOCATABLE_KERNEL: usize = 0x234;
const HDR_XLOADFLAGS: usize = 0x236;
const HDR_CMDLINE_SIZE: usize = 0x238;
const HDR_SETUP_DATA: usize = 0x250;
const HDR_PREF_ADDRESS: usize = 0x258;
const HDR_INIT_SIZE: usize = 0x260;

const HDRS_MAGIC: &[u8; 4] = b"HdrS";
const MIB: u64 = 1 << 20;
const HIGH_MEMORY: u64 = 0x10_0000;
const PAGE: u64 = 4096;
const LOADER_TYPE_UNDEFINED: u8 = 0xFF;
const HEAP_END_PTR: u16 = 0xFE00;
const VID_MODE_NORMAL: u16 = 0xFFFF;

/// Errors of [`load_linux`] and [`SetupHeader::parse`].
#[derive(Debug, thiserror::Error)]
pub enum LinuxBootError {
    /// The file has no "HdrS" signature at offset 0x202.
    #[error("not a bzImage: missing HdrS signature")]
    NotBzImage,
    /// `loadflags` lacks LOADED_HIGH: an old zImage that loads at 0x10000.
    #[error("not a bzImage: LOADED_HIGH is clear in loadflags (zImage kernels are not supported)")]
    NotLoadedHigh,
    /// The boot protocol version (offset 0x206) is older than 2.06.
    #[error("Linux boot protocol {}.{:02} is too old; need 2.06 or later", .version >> 8, .version & 0xFF)]
    ProtocolTooOld {
        /// Protocol version as in the header (major << 8 | minor).
        version: u16,
    },
    /// The kernel has no 64-bit entry point (protocol < 2.12 or XLF_KERNEL_64 clear).
    #[error(
        "kernel has no 64-bit entry point: need boot protocol 2.12 or later with XLF_KERNEL_64 \
         (have protocol {}.{:02}, xloadflags {:#06x})",
        .version >> 8, .version & 0xFF, .xloadflags
    )]
    No64BitEntry {
        /// Protocol version (major << 8 | minor).
        version: u16,
        /// `xloadflags` (0 for protocols before 2.12).
        xloadflags: u16,
    },
    /// The file ends before a part the header declares.
    #[error("kernel image is truncated: {what} needs {need} bytes of file, have {have}")]
    Truncated {
        /// Which part is cut off.
        what: &'static str,
        /// File length in bytes the part needs.
        need: u64,
        /// Actual file length in bytes.
        have: u64,
    },
    /// A header field holds an impossible value.
    #[error("corrupt kernel header: {0}")]
    BadHeader(String),
    /// Guest RAM is too small for the kernel's `init_size` at its load address.
    #[error("kernel needs {need_mib} MiB of RAM; have {have_mib} MiB")]
    TooLittleRam {
        /// RAM needed, in MiB (rounded up).
        need_mib: u64,
        /// RAM present, in MiB (rounded down).
        have_mib: u64,
    },
    /// The command line is longer than the kernel's `cmdline_size` (or the loader's region).
    #[error("kernel command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Command-line length in bytes (without the terminating NUL).
        len: usize,
        /// Maximum length in bytes (without the terminating NUL).
        max: u64,
    },
    /// The command line contains a NUL byte.
    #[error("kernel command line contains a NUL byte")]
    CmdlineNul,
    /// No page-aligned place for the initrd between the kernel's end and the highest allowed address.
    #[error(
        "initrd of {size} bytes does not fit between the kernel's end {low:#x} and the highest \
         allowed address {high:#x}"
    )]
    InitrdDoesNotFit {
        /// Initrd size in bytes.
        size: u64,
        /// Lowest usable guest-physical address (end of the kernel's `init_size` area).
        low: u64,
        /// One past the highest guest-physical address the initrd may occupy.
        high: u64,
    },
    /// More e820 entries than the zero page holds.
    #[error("{count} e820 entries; the zero page holds at most 128")]
    TooManyE820Entries {
        /// Number of entries requested.
        count: usize,
    },
    /// A guest RAM access failed (should not happen after the loader's own checks).
    #[error(transparent)]
    Ram(#[from] RamError),
}

/// One entry of the BIOS e820 memory map (`struct boot_e820_entry`,
/// arch/x86/include/uapi/asm/bootparam.h; 20 bytes in the zero page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// Guest-physical start address in bytes.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// Type: [`E820_RAM`], [`E820_RESERVED`], …
    pub kind: u32,
}

/// The e820 map of a PC with `ram_bytes` bytes of RAM at guest-physical 0: usable
/// 0 – 0x9FC00, reserved 0x9FC00 – 0xA0000 (EBDA), reserved 0xE0000 – 0x100000 (BIOS area:
/// the machine's ACPI tables live at 0xE0000, see `acpi.rs`), usable 0x100000 – `ram_bytes`.
/// The VGA/option-ROM hole 0xA0000 – 0xE0000 is left out. Ranges are clipped to the RAM that
/// exists.
pub fn e820_for_ram(ram_bytes: u64) -> Vec<E820Entry> {
    let mut map = Vec::with_capacity(4);
    let low_end = ram_bytes.min(0x9FC00);
    if low_end > 0 {
        map.push(E820Entry { addr: 0, size: low_end, kind: E820_RAM });
    }
    map.push(E820Entry { addr: 0x9FC00, size: 0x400, kind: E820_RESERVED });
    map.push(E820Entry { addr: 0xE0000, size: 0x20000, kind: E820_RESERVED });
    if ram_bytes > HIGH_MEMORY {
        map.push(E820Entry { addr: HIGH_MEMORY, size: ram_bytes - HIGH_MEMORY, kind: E820_RAM });
    }
    map
}

/// Offset in `struct boot_params` of `acpi_rsdp_addr` (u64; boot protocol 2.14+,
/// Documentation/x86/zero-page.rst).
const BP_ACPI_RSDP_ADDR: u64 = 0x070;

/// Write the guest-physical address of the ACPI RSDP into the zero page at `zero_page` (as
/// returned in [`LinuxBoot::zero_page`]), field `acpi_rsdp_addr` (offset 0x070). Kernels with
/// boot protocol 2.14 or later take the RSDP from there; older ones ignore the field and scan
/// 0xE0000 – 0xFFFFF, so the RSDP should also sit there. Call it after [`load_linux`], which
/// clears the zero page. A `zero_page` outside RAM is a caller bug: nothing is written.
pub fn set_acpi_rsdp(ram: &mut GuestRam, zero_page: u64, rsdp: u64) {
    let written = zero_page
        .checked_add(BP_ACPI_RSDP_ADDR)
        .map(|addr| ram.write_bytes(addr, &rsdp.to_le_bytes()));
    debug_assert!(matches!(written, Some(Ok(()))), "zero page {zero_page:#x} is outside RAM");
}

/// How the kernel is entered. Only the 64-bit entry exists today; a 32-bit entry
/// (`code32_start`, protected mode without paging) would be a second variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// 64-bit entry at load address + 0x200 (Documentation/x86/boot.rst, "64-bit Boot Protocol").
    Long64,
}

/// The fields of the real-mode kernel header the loader uses (Documentation/x86/boot.rst,
/// "The real-mode kernel header"), read from a bzImage file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupHeader {
    /// Number of 512-byte setup sectors after the boot sector (0x1F1; a stored 0 reads as 4).
    pub setup_sects: u8,
    /// Size of the protected-mode code in 16-byte paragraphs (0x1F4).
    pub syssize: u32,
    /// Boot protocol version, major << 8 | minor (0x206).
    pub version: u16,
    /// `loadflags` (0x211).
    pub loadflags: u8,
    /// Highest guest-physical address (inclusive) the initrd may occupy (0x22C).
    pub initrd_addr_max: u32,
    /// Required alignment in bytes of a relocated kernel (0x230).
    pub kernel_alignment: u32,
    /// Whether the kernel may be loaded at another address than `pref_address` (0x234).
    pub relocatable_kernel: bool,
    /// `xloadflags` (0x236; 0 for protocol < 2.12).
    pub xloadflags: u16,
    /// Longest command line in bytes, without the terminating NUL (0x238).
    pub cmdline_size: u32,
    /// Preferred guest-physical load address (0x258; 0x100000 for protocol < 2.10).
    pub pref_address: u64,
    /// Bytes of memory the kernel needs from its load address while decompressing (0x260;
    /// 0 for protocol < 2.10).
    pub init_size: u32,
    /// File offset one past the end of the setup header (0x202 + byte at 0x201).
    pub header_end: usize,
}

fn field<const N: usize>(file: &[u8], off: usize, what: &'static str) -> Result<[u8; N], LinuxBootError> {
    file.get(off..off + N).and_then(|s| s.try_into().ok()).ok_or(LinuxBootError::Truncated {
        what,
        need: (off + N) as u64,
        have: file.len() as u64,
    })
}

fn u8_at(f: &[u8], off: usize) -> Result<u8, LinuxBootError> {
    Ok(field::<1>(f, off, "setup header")?[0])
}
fn u16_at(f: &[u8], off: usize) -> Result<u16, LinuxBootError> {
    Ok(u16::from_le_bytes(field(f, off, "setup header")?))
}
fn u32_at(f: &[u8], off: usize) -> Result<u32, LinuxBootError> {
    Ok(u32::from_le_bytes(field(f, off, "setup header")?))
}
fn u64_at(f: &[u8], off: usize) -> Result<u64, LinuxBootError> {
    Ok(u64::from_le_bytes(field(f, off, "setup header")?))
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

fn align_up(x: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    x.checked_add(align - 1).map(|v| v & !(align - 1))
}

impl SetupHeader {
    /// Parse and validate the setup header of a bzImage: "HdrS" magic, protocol ≥ 2.06,
    /// LOADED_HIGH, and a file long enough for the header, the setup sectors and `syssize`.
    pub fn parse(kernel: &[u8]) -> Result<SetupHeader, LinuxBootError> {
        let have = kernel.len() as u64;
        if kernel.len() < HDR_VERSION + 2 {
            return Err(LinuxBootError::Truncated {
                what: "setup header",
                need: (HDR_VERSION + 2) as u64,
                have,
            });
        }
        if field::<4>(kernel, HDR_HEADER, "setup header")? != *HDRS_MAGIC {
            return Err(LinuxBootError::NotBzImage);
        }
        let version = u16_at(kernel, HDR_VERSION)?;
        if version < 0x0206 {
            return Err(LinuxBootError::ProtocolTooOld { version });
        }
        let header_end = HDR_HEADER + usize::from(u8_at(kernel, HDR_JUMP + 1)?);
        // Fields this protocol version defines must be in the file.
        let fields_end = if version >= 0x020A { HDR_INIT_SIZE + 4 } else { HDR_CMDLINE_SIZE + 4 };
        let need = header_end.max(fields_end);
        if kernel.len() < need {
            return Err(LinuxBootError::Truncated { what: "setup header", need: need as u64, have });
        }
        let loadflags = u8_at(kernel, HDR_LOADFLAGS)?;
        if loadflags & LOADED_HIGH == 0 {
            return Err(LinuxBootError::NotLoadedHigh);
        }
        let setup_sects = match u8_at(kernel, HDR_SETUP_SECTS)? {
            0 => 4,
            n => n,
        };
        let (pref_address, init_size) = if version >= 0x020A {
            (u64_at(kernel, HDR_PREF_ADDRESS)?, u32_at(kernel, HDR_INIT_SIZE)?)
        } else {
            (HIGH_MEMORY, 0)
        };
        let hdr = SetupHeader {
            setup_sects,
            syssize: u32_at(kernel, HDR_SYSSIZE)?,
            version,
            loadflags,
            initrd_addr_max: u32_at(kernel, HDR_INITRD_ADDR_MAX)?,
            kernel_alignment: u32_at(kernel, HDR_KERNEL_ALIGNMENT)?,
            relocatable_kernel: u8_at(kernel, HDR_RELOCATABLE_KERNEL)? != 0,
            xloadflags: if version >= 0x020C { u16_at(kernel, HDR_XLOADFLAGS)? } else { 0 },
            cmdline_size: u32_at(kernel, HDR_CMDLINE_SIZE)?,
            pref_address,
            init_size,
            header_end,
        };
        let setup_end = hdr.kernel_offset();
        if have < setup_end {
            return Err(LinuxBootError::Truncated { what: "setup code", need: setup_end, have });
        }
        if hdr.syssize != 0 {
            let need = setup_end + u64::from(hdr.syssize) * 16;
            if have < need {
                return Err(LinuxBootError::Truncated {
                    what: "protected-mode kernel (syssize)",
                    need,
                    have,
                });
            }
        } else if have == setup_end {
            return Err(LinuxBootError::Truncated {
                what: "protected-mode kernel",
                need: setup_end + 1,
                have,
            });
        }
        Ok(hdr)
    }

    /// File offset in bytes of the protected-mode kernel: (`setup_sects` + 1) × 512.
    pub fn kernel_offset(&self) -> u64 {
        (u64::from(self.setup_sects) + 1) * 512
    }

    /// Whether the kernel has the 64-bit entry point: protocol ≥ 2.12 and XLF_KERNEL_64.
    pub fn has_entry64(&self) -> bool {
        self.version >= 0x020C && self.xloadflags & XLF_KERNEL_64 != 0
    }

    /// The protected-mode kernel bytes of `kernel` (the file this header was parsed from):
    /// `syssize` × 16 bytes from [`SetupHeader::kernel_offset`], or the rest of the file when
    /// `syssize` is 0.
    pub fn protected_mode_code<'a>(&self, kernel: &'a [u8]) -> Result<&'a [u8], LinuxBootError> {
        let start = self.kernel_offset();
        let end = if self.syssize == 0 { kernel.len() as u64 } else { start + u64::from(self.syssize) * 16 };
        usize::try_from(start).ok().zip(usize::try_from(end).ok()).and_then(|(s, e)| kernel.get(s..e)).ok_or(
            LinuxBootError::Truncated { what: "protected-mode kernel", need: end, have: kernel.len() as u64 },
        )
    }
}

/// Where and how the kernel was loaded, and the CPU state to enter it with
/// (Documentation/x86/boot.rst, "64-bit Boot Protocol"). All addresses are guest-physical bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxBoot {
    /// RIP at entry: load address + 0x200.
    pub entry64: u64,
    /// Address of the zero page (`struct boot_params`); goes in RSI.
    pub zero_page: u64,
    /// CR3: address of the PML4 identity-mapping the first 4 GiB.
    pub cr3: u64,
    /// GDTR base: address of the boot GDT.
    pub gdt_base: u64,
    /// GDTR limit in bytes (size − 1).
    pub gdt_limit: u16,
    /// CS selector: 0x10 (`__BOOT_CS`), a 64-bit code segment.
    pub code_selector: u16,
    /// DS/ES/SS selector: 0x18 (`__BOOT_DS`), a flat data segment.
    pub data_selector: u16,
    /// Address the protected-mode kernel was loaded at.
    pub load_address: u64,
    /// Initrd (address, size in bytes), if one was loaded.
    pub initrd: Option<(u64, u64)>,
    /// Boot protocol version of the kernel (major << 8 | minor, e.g. 0x020F for 2.15).
    pub protocol_version: u16,
}

/// Load the bzImage `kernel`, an optional `initrd` and the command line `cmdline` into `ram`
/// for 64-bit entry, with the e820 map [`e820_for_ram`]`(ram.size())`. See the module
/// documentation for the memory layout. An empty initrd counts as none.
pub fn load_linux(
    ram: &mut GuestRam,
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
) -> Result<LinuxBoot, LinuxBootError> {
    let e820 = e820_for_ram(ram.size());
    load_linux_with_e820(ram, kernel, initrd, cmdline, &e820)
}

/// [`load_linux`] with an explicit e820 map (at most 128 entries) for machines that reserve
/// more ranges. The map describes guest RAM to the kernel; the loader itself still places
/// the kernel and initrd by `ram.size()`.
pub fn load_linux_with_e820(
    ram: &mut GuestRam,
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    e820: &[E820Entry],
) -> Result<LinuxBoot, LinuxBootError> {
    load(ram, kernel, initrd, cmdline, e820, EntryMode::Long64)
}

fn load(
    ram: &mut GuestRam,
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    e820: &[E820Entry],
    mode: EntryMode,
) -> Result<LinuxBoot, LinuxBootError> {
    let hdr = SetupHeader::parse(kernel)?;
    match mode {
        EntryMode::Long64 => {
            if !hdr.has_entry64() {
                return Err(LinuxBootError::No64BitEntry {
                    version: hdr.version,
                    xloadflags: hdr.xloadflags,
                });
            }
        }
    }
    if e820.len() > E820_MAX_ENTRIES_ZEROPAGE {
        return Err(LinuxBootError::TooManyE820Entries { count: e820.len() });
    }
    let ram_size = ram.size();
    let pm = hdr.protected_mode_code(kernel)?;

    // Command line.
    let cmd = cmdline.as_bytes();
    if cmd.contains(&0) {
        return Err(LinuxBootError::CmdlineNul);
    }
    let cmd_max = u64::from(hdr.cmdline_size).min(CMDLINE_REGION_END - CMDLINE_ADDR - 1);
    if cmd.len() as u64 > cmd_max {
        return Err(LinuxBootError::CmdlineTooLong { len: cmd.len(), max: cmd_max });
    }

    // Kernel placement.
    let room = u64::from(hdr.init_size).max(pm.len() as u64);
    let load_address = choose_load_address(&hdr, room, ram_size)?;
    let kernel_end = load_address + room;

    // Initrd placement: page aligned, as high as possible below every limit, above the kernel.
    let initrd = initrd.filter(|d| !d.is_empty());
    let initrd_place = match initrd {
        None => None,
        Some(data) => {
            let size = data.len() as u64;
            let addr_max = match hdr.initrd_addr_max {
                0 => 0x37FF_FFFF, // the documented default for kernels that leave it 0
                m => m,
            };
            let high = (u64::from(addr_max) + 1).min(ram_size).min(1 << 32);
            let low = align_up(kernel_end, PAGE).unwrap_or(u64::MAX);
            let addr = high.checked_sub(size).map(|a| a & !(PAGE - 1));
            match addr {
                Some(a) if a >= low && size <= u64::from(u32::MAX) => Some((a, data)),
                _ => return Err(LinuxBootError::InitrdDoesNotFit { size, low, high }),
            }
        }
    };

    // Zero page.
    let mut zp = vec![0u8; ZERO_PAGE_SIZE];
    let copy_end = hdr.header_end.min(BP_HDR_LIMIT);
    if copy_end > HDR_SETUP_SECTS {
        let src = kernel.get(HDR_SETUP_SECTS..copy_end).ok_or(LinuxBootError::Truncated {
            what: "setup header",
            need: copy_end as u64,
            have: kernel.len() as u64,
        })?;
        zp[HDR_SETUP_SECTS..copy_end].copy_from_slice(src);
    }
    put_u16(&mut zp, HDR_VID_MODE, VID_MODE_NORMAL);
    zp[HDR_TYPE_OF_LOADER] = LOADER_TYPE_UNDEFINED;
    zp[HDR_LOADFLAGS] = hdr.loadflags | LOADED_HIGH | CAN_USE_HEAP;
    put_u16(&mut zp, HDR_HEAP_END_PTR, HEAP_END_PTR);
    put_u32(&mut zp, HDR_CODE32_START, load_address as u32);
    put_u32(&mut zp, HDR_CMD_LINE_PTR, CMDLINE_ADDR as u32);
    put_u32(&mut zp, BP_EXT_CMD_LINE_PTR, (CMDLINE_ADDR >> 32) as u32);
    put_u64(&mut zp, HDR_SETUP_DATA, 0);
    if let Some((addr, data)) = initrd_place {
        let size = data.len() as u64;
        put_u32(&mut zp, HDR_RAMDISK_IMAGE, addr as u32);
        put_u32(&mut zp, HDR_RAMDISK_SIZE, size as u32);
        put_u32(&mut zp, BP_EXT_RAMDISK_IMAGE, (addr >> 32) as u32);
        put_u32(&mut zp, BP_EXT_RAMDISK_SIZE, (size >> 32) as u32);
    }
    let alt_mem_k = ram_size.saturating_sub(MIB) / 1024;
    put_u32(&mut zp, BP_ALT_MEM_K, alt_mem_k.min(u64::from(u32::MAX)) as u32);
    zp[BP_E820_ENTRIES] = e820.len() as u8;
    for (i, e) in e820.iter().enumerate() {
        let off = BP_E820_TABLE + i * E820_ENTRY_SIZE;
        put_u64(&mut zp, off, e.addr);
        put_u64(&mut zp, off + 8, e.size);
        put_u32(&mut zp, off + 16, e.kind);
    }

    // Everything is validated; write guest RAM.
    ram.write_bytes(load_address, pm)?;
    if let Some((addr, data)) = initrd_place {
        ram.write_bytes(addr, data)?;
    }
    let mut cmd_buf = Vec::with_capacity(cmd.len() + 1);
    cmd_buf.extend_from_slice(cmd);
    cmd_buf.push(0);
    ram.write_bytes(CMDLINE_ADDR, &cmd_buf)?;
    ram.write_bytes(ZERO_PAGE_ADDR, &zp)?;

    let (gdt_base, gdt_limit) = match mode {
        EntryMode::Long64 => {
            write_identity_page_tables(ram)?;
            write_gdt(ram)?
        }
    };

    Ok(LinuxBoot {
        entry64: load_address + ENTRY64_OFFSET,
        zero_page: ZERO_PAGE_ADDR,
        cr3: PML4_ADDR,
        gdt_base,
        gdt_limit,
        code_selector: BOOT_CS,
        data_selector: BOOT_DS,
        load_address,
        initrd: initrd_place.map(|(a, d)| (a, d.len() as u64)),
        protocol_version: hdr.version,
    })
}

/// Pick the kernel's load address: `pref_address`, which for a relocatable kernel is first raised
/// to at least 1 MiB and aligned up to `kernel_alignment`. The `room` bytes from there must lie in
/// RAM and below 4 GiB.
///
/// Loading a relocatable kernel *below* `pref_address` would not save RAM: the decompressor
/// (arch/x86/boot/compressed/head_64.S) moves its work area up to at least
/// `LOAD_PHYSICAL_ADDR` (= `pref_address`) and uses `init_size` bytes from there, so the
/// kernel's real footprint would still end at `pref_address + init_size`, over an initrd placed
/// lower.
fn choose_load_address(hdr: &SetupHeader, room: u64, ram_size: u64) -> Result<u64, LinuxBootError> {
    let addr = if hdr.relocatable_kernel {
        let align = match u64::from(hdr.kernel_alignment) {
            a if a.is_power_of_two() && a >= PAGE => a,
            _ => 2 * MIB,
        };
        align_up(hdr.pref_address.max(HIGH_MEMORY), align)
    } else {
        Some(hdr.pref_address)
    };
    let end = addr.filter(|&a| a >= HIGH_MEMORY).and_then(|a| a.checked_add(room));
    match (addr, end) {
        (Some(a), Some(e)) if e <= IDENTITY_MAP_BYTES => {
            if e <= ram_size {
                Ok(a)
            } else {
                Err(LinuxBootError::TooLittleRam { need_mib: e.div_ceil(MIB), have_mib: ram_size / MIB })
            }
        }
        _ => Err(LinuxBootError::BadHeader(format!(
            "load address {:#x} (relocatable: {}) with init_size {room:#x} is outside 1 MiB – 4 GiB",
            hdr.pref_address, hdr.relocatable_kernel
        ))),
    }
}

/// Identity page tables for the first 4 GiB with 2 MiB pages: PML4 at [`PML4_ADDR`], PDPT at
/// [`PDPT_ADDR`], four page directories from [`PD_ADDR`]. Flags: present | writable (+ PS).
fn write_identity_page_tables(ram: &mut GuestRam) -> Result<(), RamError> {
    const P_RW: u64 = 0x3;
    const PS: u64 = 0x80;
    let mut page = vec![0u8; PAGE as usize];
    put_u64(&mut page, 0, PDPT_ADDR | P_RW);
    ram.write_bytes(PML4_ADDR, &page)?;

    page.fill(0);
    let n_pd = IDENTITY_MAP_BYTES >> 30;
    for i in 0..n_pd {
        put_u64(&mut page, (i * 8) as usize, (PD_ADDR + i * PAGE) | P_RW);
    }
    ram.write_bytes(PDPT_ADDR, &page)?;

    for i in 0..n_pd {
        for j in 0..512u64 {
            let phys = (i << 30) | (j << 21);
            put_u64(&mut page, (j * 8) as usize, phys | P_RW | PS);
        }
        ram.write_bytes(PD_ADDR + i * PAGE, &page)?;
    }
    Ok(())
}

/// GDT at [`GDT_ADDR`]: null, null, 64-bit code at 0x10, flat data at 0x18. Returns (base, limit).
fn write_gdt(ram: &mut GuestRam) -> Result<(u64, u16), RamError> {
    let gdt: [u64; 4] = [0, 0, GDT_CODE64, GDT_DATA];
    let mut bytes = [0u8; 32];
    for (i, d) in gdt.iter().enumerate() {
        put_u64(&mut bytes, i * 8, *d);
    }
    ram.write_bytes(GDT_ADDR, &bytes)?;
    Ok((GDT_ADDR, (bytes.len() - 1) as u16))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic bzImage: boot sector + setup sectors with a setup header, then a
    /// protected-mode "kernel" of recognisable bytes.
    #[derive(Clone)]
    struct FakeKernel {
        setup_sects: u8,
        version: u16,
        loadflags: u8,
        xloadflags: u16,
        relocatable: u8,
        pref_address: u64,
        init_size: u32,
        kernel_alignment: u32,
        cmdline_size: u32,
        initrd_addr_max: u32,
        pm_len: usize,
    }

    impl Default for FakeKernel {
        fn default() -> Self {
            FakeKernel {
                setup_sects: 4,
                version: 0x020F,
                loadflags: LOADED_HIGH,
                xloadflags: XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G,
                relocatable: 1,
                pref_address: 0x100_0000,
                init_size: 0x40_0000,
                kernel_alignment: 0x20_0000,
                cmdline_size: 0x7FF,
                initrd_addr_max: 0x7FFF_FFFF,
                pm_len: 0x3010,
            }
        }
    }

    impl FakeKernel {
        fn pm_byte(i: usize) -> u8 {
            (i * 7 + 3) as u8
        }

        fn build(&self) -> Vec<u8> {
            let sects = if self.setup_sects == 0 { 4 } else { self.setup_sects } as usize;
            let setup = (sects + 1) * 512;
            let mut f = vec![0u8; setup + self.pm_len];
            f[0x1F1] = self.setup_sects;
            f[0x1F4..0x1F8].copy_from_slice(&(self.pm_len.div_ceil(16) as u32).to_le_bytes());
            f[0x1FE] = 0x55;
            f[0x1FF] = 0xAA;
            f[0x200] = 0xEB;
            f[0x201] = 0x6A; // header ends at 0x26C, as in Linux 6.x
            f[0x202..0x206].copy_from_slice(b"HdrS");
            f[0x206..0x208].copy_from_slice(&self.version.to_le_bytes());
            f[0x211] = self.loadflags;
            f[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
            f[0x22C..0x230].copy_from_slice(&self.initrd_addr_max.to_le_bytes());
            f[0x230..0x234].copy_from_slice(&self.kernel_alignment.to_le_bytes());
            f[0x234] = self.relocatable;
            f[0x236..0x238].copy_from_slice(&self.xloadflags.to_le_bytes());
            f[0x238..0x23C].copy_from_slice(&self.cmdline_size.to_le_bytes());
            f[0x258..0x260].copy_from_slice(&self.pref_address.to_le_bytes());
            f[0x260..0x264].copy_from_slice(&self.init_size.to_le_bytes());
            f[0x26C] = 0xEE; // just past the header: must not be copied
            for i in 0..self.pm_len {
                f[setup + i] = Self::pm_byte(i);
            }
            // syssize rounds up to paragraphs: pad the file accordingly.
            f.resize(setup + self.pm_len.div_ceil(16) * 16, 0);
            f
        }
    }

    fn ram(mib: u64) -> GuestRam {
        GuestRam::new(mib * MIB).unwrap()
    }

    fn rd<const N: usize>(ram: &GuestRam, addr: u64) -> [u8; N] {
        let mut b = [0u8; N];
        ram.read_bytes(addr, &mut b).unwrap();
        b
    }
    fn rd8(ram: &GuestRam, addr: u64) -> u8 {
        rd::<1>(ram, addr)[0]
    }
    fn rd16(ram: &GuestRam, addr: u64) -> u16 {
        u16::from_le_bytes(rd(ram, addr))
    }
    fn rd32(ram: &GuestRam, addr: u64) -> u32 {
        u32::from_le_bytes(rd(ram, addr))
    }
    fn rd64(ram: &GuestRam, addr: u64) -> u64 {
        u64::from_le_bytes(rd(ram, addr))
    }
    fn zp(off: usize) -> u64 {
        ZERO_PAGE_ADDR + off as u64
    }

    #[test]
    fn loads_fake_kernel_and_fills_zero_page() {
        let fk = FakeKernel::default();
        let image = fk.build();
        let mut ram = ram(64);
        // Dirty the zero page to check it is cleared.
        ram.write_bytes(ZERO_PAGE_ADDR, &[0xAB; ZERO_PAGE_SIZE]).unwrap();
        let cmdline = "console=ttyS0 panic=-1 kit=boot";
        let boot = load_linux(&mut ram, &image, None, cmdline).unwrap();

        assert_eq!(boot.load_address, 0x100_0000);
        assert_eq!(boot.entry64, 0x100_0200);
        assert_eq!(boot.zero_page, 0x7000);
        assert_eq!(boot.cr3, PML4_ADDR);
        assert_eq!(boot.gdt_base, GDT_ADDR);
        assert_eq!(boot.gdt_limit, 31);
        assert_eq!(boot.code_selector, 0x10);
        assert_eq!(boot.data_selector, 0x18);
        assert_eq!(boot.initrd, None);
        assert_eq!(boot.protocol_version, 0x020F);

        // Protected-mode kernel bytes.
        let mut pm = vec![0u8; fk.pm_len];
        ram.read_bytes(boot.load_address, &mut pm).unwrap();
        assert!(pm.iter().enumerate().all(|(i, &b)| b == FakeKernel::pm_byte(i)));

        // Setup header copied: 0x1F1 .. 0x26C, nothing past it.
        assert_eq!(&rd::<4>(&ram, zp(0x202)), b"HdrS");
        assert_eq!(rd16(&ram, zp(0x206)), 0x020F);
        assert_eq!(rd8(&ram, zp(0x1F1)), 4);
        assert_eq!(rd32(&ram, zp(0x238)), 0x7FF);
        assert_eq!(rd64(&ram, zp(0x258)), 0x100_0000);
        assert_eq!(rd8(&ram, zp(0x26C)), 0);
        assert_eq!(rd8(&ram, zp(0x1EF)), 0, "sentinel must be 0");
        assert_eq!(rd8(&ram, zp(0x000)), 0, "screen_info cleared");
        assert_eq!(rd8(&ram, zp(0x00F)), 0, "orig_video_isVGA");
        assert_eq!(rd8(&ram, zp(0xFFF)), 0);

        // Loader-set fields.
        assert_eq!(rd16(&ram, zp(0x1FA)), 0xFFFF, "vid_mode");
        assert_eq!(rd8(&ram, zp(0x210)), 0xFF, "type_of_loader");
        assert_eq!(rd8(&ram, zp(0x211)), LOADED_HIGH | CAN_USE_HEAP, "loadflags");
        assert_eq!(rd16(&ram, zp(0x224)), 0xFE00, "heap_end_ptr");
        assert_eq!(rd32(&ram, zp(0x214)), 0x100_0000, "code32_start");
        assert_eq!(rd32(&ram, zp(0x228)), 0x20000, "cmd_line_ptr");
        assert_eq!(rd32(&ram, zp(0x0C8)), 0, "ext_cmd_line_ptr");
        assert_eq!(rd32(&ram, zp(0x218)), 0, "ramdisk_image");
        assert_eq!(rd32(&ram, zp(0x21C)), 0, "ramdisk_size");
        assert_eq!(rd64(&ram, zp(0x250)), 0, "setup_data");
        assert_eq!(rd32(&ram, zp(0x1E0)), 63 * 1024, "alt_mem_k");

        // Command line, NUL-terminated.
        let mut c = vec![0u8; cmdline.len() + 1];
        ram.read_bytes(CMDLINE_ADDR, &mut c).unwrap();
        assert_eq!(&c[..cmdline.len()], cmdline.as_bytes());
        assert_eq!(c[cmdline.len()], 0);

        // e820.
        let expect =
            [(0u64, 0x9FC00u64, 1u32), (0x9FC00, 0x400, 2), (0xE0000, 0x20000, 2), (0x10_0000, 63 * MIB, 1)];
        assert_eq!(rd8(&ram, zp(0x1E8)), 4);
        for (i, (a, s, t)) in expect.iter().enumerate() {
            let off = 0x2D0 + i * 20;
            assert_eq!(rd64(&ram, zp(off)), *a);
            assert_eq!(rd64(&ram, zp(off + 8)), *s);
            assert_eq!(rd32(&ram, zp(off + 16)), *t);
        }
        assert_eq!(rd64(&ram, zp(0x2D0 + 4 * 20)), 0);

        // GDT.
        assert_eq!(rd64(&ram, GDT_ADDR), 0);
        assert_eq!(rd64(&ram, GDT_ADDR + 8), 0);
        assert_eq!(rd64(&ram, GDT_ADDR + 0x10), 0x00AF_9A00_0000_FFFF);
        assert_eq!(rd64(&ram, GDT_ADDR + 0x18), 0x00CF_9200_0000_FFFF);

        // Page tables.
        assert_eq!(rd64(&ram, PML4_ADDR), PDPT_ADDR | 3);
        assert_eq!(rd64(&ram, PML4_ADDR + 8), 0);
        for i in 0..4 {
            assert_eq!(rd64(&ram, PDPT_ADDR + i * 8), (PD_ADDR + i * 0x1000) | 3);
        }
        assert_eq!(rd64(&ram, PDPT_ADDR + 32), 0);
        assert_eq!(rd64(&ram, PD_ADDR), 0x83);
        assert_eq!(rd64(&ram, PD_ADDR + 8), 0x20_0000 | 0x83);
        assert_eq!(rd64(&ram, PD_ADDR + 3 * 0x1000 + 511 * 8), 0xFFE0_0000 | 0x83);
    }

    /// Walk the boot page tables for `va` (identity map check).
    fn translate(ram: &GuestRam, va: u64) -> Option<u64> {
        let pml4e = rd64(ram, PML4_ADDR + ((va >> 39) & 511) * 8);
        if pml4e & 1 == 0 {
            return None;
        }
        let pdpte = rd64(ram, (pml4e & !0xFFF) + ((va >> 30) & 511) * 8);
        if pdpte & 1 == 0 {
            return None;
        }
        let pde = rd64(ram, (pdpte & !0xFFF) + ((va >> 21) & 511) * 8);
        if pde & 0x81 != 0x81 {
            return None;
        }
        Some((pde & !0x1F_FFFF) | (va & 0x1F_FFFF))
    }

    #[test]
    fn boot_structures_are_identity_mapped() {
        let image = FakeKernel::default().build();
        let mut ram = ram(64);
        let boot = load_linux(&mut ram, &image, Some(&[1, 2, 3]), "x").unwrap();
        let (ird, _) = boot.initrd.unwrap();
        for va in
            [boot.zero_page, CMDLINE_ADDR, boot.entry64, boot.load_address + 0x3F_FFFF, ird, 0xFFFF_FFFF]
        {
            assert_eq!(translate(&ram, va), Some(va), "{va:#x}");
        }
        assert_eq!(translate(&ram, 1 << 32), None);
    }

    #[test]
    fn initrd_is_placed_high_and_page_aligned() {
        let image = FakeKernel::default().build();
        let mut ram = ram(64);
        let initrd: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let boot = load_linux(&mut ram, &image, Some(&initrd), "").unwrap();
        let (addr, size) = boot.initrd.unwrap();
        assert_eq!(size, 10_000);
        assert_eq!(addr % 4096, 0);
        assert_eq!(addr, (64 * MIB - 10_000) & !0xFFF);
        assert!(addr + size <= 64 * MIB);
        let mut back = vec![0u8; initrd.len()];
        ram.read_bytes(addr, &mut back).unwrap();
        assert_eq!(back, initrd);
        assert_eq!(rd32(&ram, zp(0x218)) as u64, addr);
        assert_eq!(rd32(&ram, zp(0x21C)), 10_000);
        assert_eq!(rd32(&ram, zp(0x0C0)), 0);
        assert_eq!(rd32(&ram, zp(0x0C4)), 0);
        // Empty command line is a lone NUL.
        assert_eq!(rd8(&ram, CMDLINE_ADDR), 0);
    }

    #[test]
    fn initrd_respects_initrd_addr_max() {
        let image = FakeKernel { initrd_addr_max: 0x1FF_FFFF, ..Default::default() }.build();
        let mut ram = ram(64);
        let boot = load_linux(&mut ram, &image, Some(&[7u8; 5000]), "").unwrap();
        let (addr, size) = boot.initrd.unwrap();
        assert_eq!(addr, (0x200_0000 - 5000) & !0xFFF);
        assert!(addr + size - 1 <= 0x1FF_FFFF);
        assert!(addr >= boot.load_address + 0x40_0000);
    }

    #[test]
    fn initrd_that_does_not_fit_is_an_error() {
        let image = FakeKernel::default().build();
        let mut ram = ram(32);
        // Kernel occupies 16 MiB .. 20 MiB; 13 MiB does not fit in 20 .. 32 MiB.
        let big = vec![0u8; 13 * MIB as usize];
        let err = load_linux(&mut ram, &image, Some(&big), "").unwrap_err();
        assert!(
            matches!(err, LinuxBootError::InitrdDoesNotFit { size, low: 0x140_0000, high: 0x200_0000 } if size == 13 * MIB),
            "{err}"
        );
        // initrd_addr_max below the kernel's end.
        let image = FakeKernel { initrd_addr_max: 0x13F_FFFF, ..Default::default() }.build();
        let err = load_linux(&mut ram, &image, Some(&[1]), "").unwrap_err();
        assert!(matches!(err, LinuxBootError::InitrdDoesNotFit { .. }), "{err}");
        // An empty initrd is no initrd.
        let image = FakeKernel::default().build();
        assert_eq!(load_linux(&mut ram, &image, Some(&[]), "").unwrap().initrd, None);
    }

    #[test]
    fn setup_sects_zero_means_four() {
        let image = FakeKernel { setup_sects: 0, ..Default::default() }.build();
        let hdr = SetupHeader::parse(&image).unwrap();
        assert_eq!(hdr.setup_sects, 4);
        assert_eq!(hdr.kernel_offset(), 5 * 512);
        let mut ram = ram(64);
        let boot = load_linux(&mut ram, &image, None, "").unwrap();
        assert_eq!(rd8(&ram, boot.load_address), FakeKernel::pm_byte(0));
        let image = FakeKernel { setup_sects: 30, ..Default::default() }.build();
        let boot = load_linux(&mut ram, &image, None, "").unwrap();
        assert_eq!(rd8(&ram, boot.load_address + 1), FakeKernel::pm_byte(1));
    }

    #[test]
    fn load_address_follows_pref_address() {
        // Relocatable: pref_address is aligned up to kernel_alignment and raised to ≥ 1 MiB.
        let mut mem = ram(64);
        let image = FakeKernel { pref_address: 0x110_0000, ..Default::default() }.build();
        assert_eq!(load_linux(&mut mem, &image, None, "").unwrap().load_address, 0x120_0000);
        let image = FakeKernel { pref_address: 0, ..Default::default() }.build();
        let boot = load_linux(&mut mem, &image, None, "").unwrap();
        assert_eq!(boot.load_address, 0x20_0000);
        assert_eq!(rd32(&mem, zp(0x214)), 0x20_0000);
        // Not relocatable: exactly pref_address, which must be ≥ 1 MiB.
        let image = FakeKernel { pref_address: 0x110_0000, relocatable: 0, ..Default::default() }.build();
        assert_eq!(load_linux(&mut mem, &image, None, "").unwrap().load_address, 0x110_0000);
        let image = FakeKernel { pref_address: 0x8_0000, relocatable: 0, ..Default::default() }.build();
        let err = load_linux(&mut mem, &image, None, "").unwrap_err();
        assert!(matches!(err, LinuxBootError::BadHeader(_)), "{err}");
        // A kernel is never moved below pref_address to squeeze into less RAM.
        let mut small = ram(32);
        for relocatable in [0, 1] {
            let image = FakeKernel { pref_address: 0x300_0000, relocatable, ..Default::default() }.build();
            let err = load_linux(&mut small, &image, None, "").unwrap_err();
            assert!(matches!(err, LinuxBootError::TooLittleRam { need_mib: 52, have_mib: 32 }), "{err}");
        }
    }

    #[test]
    fn too_little_ram() {
        let image = FakeKernel { init_size: 64 << 20, ..Default::default() }.build();
        let mut small = ram(32);
        let err = load_linux(&mut small, &image, None, "").unwrap_err();
        // 16 MiB + 64 MiB.
        assert_eq!(err.to_string(), "kernel needs 80 MiB of RAM; have 32 MiB");
        // Exactly enough RAM is enough.
        let mut exact = ram(80);
        load_linux(&mut exact, &image, None, "").unwrap();
    }

    #[test]
    fn missing_hdrs() {
        let mut image = FakeKernel::default().build();
        image[0x202] = b'X';
        let err = load_linux(&mut ram(64), &image, None, "").unwrap_err();
        assert!(matches!(err, LinuxBootError::NotBzImage));
        assert_eq!(err.to_string(), "not a bzImage: missing HdrS signature");
    }

    #[test]
    fn old_protocol() {
        let image = FakeKernel { version: 0x0205, ..Default::default() }.build();
        let err = load_linux(&mut ram(64), &image, None, "").unwrap_err();
        assert!(matches!(err, LinuxBootError::ProtocolTooOld { version: 0x0205 }));
        assert!(err.to_string().contains("2.05"), "{err}");
    }

    #[test]
    fn no_64bit_entry() {
        let image = FakeKernel { xloadflags: 0, ..Default::default() }.build();
        let err = load_linux(&mut ram(64), &image, None, "").unwrap_err();
        assert!(matches!(err, LinuxBootError::No64BitEntry { version: 0x020F, xloadflags: 0 }));
        let image = FakeKernel { version: 0x020B, ..Default::default() }.build();
        let err = load_linux(&mut ram(64), &image, None, "").unwrap_err();
        assert!(matches!(err, LinuxBootError::No64BitEntry { version: 0x020B, .. }), "{err}");
        assert!(err.to_string().contains("2.11"), "{err}");
    }

    #[test]
    fn not_loaded_high() {
        let image = FakeKernel { loadflags: 0, ..Default::default() }.build();
        let err = load_linux(&mut ram(64), &image, None, "").unwrap_err();
        assert!(matches!(err, LinuxBootError::NotLoadedHigh));
    }

    #[test]
    fn truncated_files() {
        let image = FakeKernel::default().build();
        let mut ram = ram(64);
        for len in [0, 0x100, 0x1F1, 0x205, 0x240, 0x263] {
            let err = load_linux(&mut ram, &image[..len], None, "").unwrap_err();
            assert!(matches!(err, LinuxBootError::Truncated { what: "setup header", .. }), "{len}: {err}");
        }
        let err = load_linux(&mut ram, &image[..0x600], None, "").unwrap_err();
        assert!(matches!(err, LinuxBootError::Truncated { what: "setup code", need: 0xA00, .. }), "{err}");
        let err = load_linux(&mut ram, &image[..image.len() - 1], None, "").unwrap_err();
        assert!(
            matches!(err, LinuxBootError::Truncated { what: "protected-mode kernel (syssize)", .. }),
            "{err}"
        );
        assert!(err.to_string().starts_with("kernel image is truncated"), "{err}");
    }

    #[test]
    fn no_panic_on_any_truncation_or_corruption() {
        let image = FakeKernel { pm_len: 0x40, ..Default::default() }.build();
        let mut ram = ram(32);
        for len in 0..=image.len() {
            let _ = load_linux(&mut ram, &image[..len], Some(&[1, 2, 3]), "a b c");
        }
        // Every header byte set to each of a few extreme values.
        for off in 0x1F1..0x270 {
            for v in [0u8, 1, 0x7F, 0x80, 0xFF] {
                let mut bad = image.clone();
                bad[off] = v;
                let _ = load_linux(&mut ram, &bad, Some(&[1, 2, 3]), "a b c");
            }
        }
        // Whole fields at their maximum.
        for (off, n) in [(0x1F4, 4), (0x22C, 4), (0x230, 4), (0x238, 4), (0x258, 8), (0x260, 4)] {
            let mut bad = image.clone();
            bad[off..off + n].fill(0xFF);
            let _ = load_linux(&mut ram, &bad, Some(&[1, 2, 3]), "a b c");
        }
    }

    #[test]
    fn command_line_limits() {
        let image = FakeKernel { cmdline_size: 16, ..Default::default() }.build();
        let mut ram = ram(64);
        load_linux(&mut ram, &image, None, "0123456789abcdef").unwrap();
        assert_eq!(rd8(&ram, CMDLINE_ADDR + 16), 0);
        let err = load_linux(&mut ram, &image, None, "0123456789abcdefg").unwrap_err();
        assert!(matches!(err, LinuxBootError::CmdlineTooLong { len: 17, max: 16 }), "{err}");
        let err = load_linux(&mut ram, &image, None, "a\0b").unwrap_err();
        assert!(matches!(err, LinuxBootError::CmdlineNul));
        // A huge cmdline_size is capped by the loader's region.
        let image = FakeKernel { cmdline_size: u32::MAX, ..Default::default() }.build();
        let long = "x".repeat((CMDLINE_REGION_END - CMDLINE_ADDR) as usize);
        let err = load_linux(&mut ram, &image, None, &long).unwrap_err();
        assert!(matches!(err, LinuxBootError::CmdlineTooLong { .. }), "{err}");
    }

    #[test]
    fn e820_helper() {
        let m = e820_for_ram(256 * MIB);
        assert_eq!(
            m,
            vec![
                E820Entry { addr: 0, size: 0x9FC00, kind: E820_RAM },
                E820Entry { addr: 0x9FC00, size: 0x400, kind: E820_RESERVED },
                E820Entry { addr: 0xE0000, size: 0x20000, kind: E820_RESERVED },
                E820Entry { addr: 0x10_0000, size: 255 * MIB, kind: E820_RAM },
            ]
        );
        // 1 MiB or less: no high RAM entry.
        assert_eq!(e820_for_ram(MIB).len(), 3);
        assert_eq!(e820_for_ram(0x8_0000)[0].size, 0x8_0000);
        // Custom map through load_linux_with_e820; too many entries is an error.
        let image = FakeKernel::default().build();
        let mut ram = ram(64);
        let mut map = e820_for_ram(64 * MIB);
        map.push(E820Entry { addr: 0xFEC0_0000, size: 0x1000, kind: E820_RESERVED });
        load_linux_with_e820(&mut ram, &image, None, "", &map).unwrap();
        assert_eq!(rd8(&ram, zp(0x1E8)), 5);
        assert_eq!(rd64(&ram, zp(0x2D0 + 4 * 20)), 0xFEC0_0000);
        let many = vec![map[0]; 129];
        let err = load_linux_with_e820(&mut ram, &image, None, "", &many).unwrap_err();
        assert!(matches!(err, LinuxBootError::TooManyE820Entries { count: 129 }));
    }

    #[test]
    fn acpi_rsdp_in_zero_page() {
        let image = FakeKernel::default().build();
        let mut ram = ram(64);
        let boot = load_linux(&mut ram, &image, None, "").unwrap();
        assert_eq!(rd64(&ram, zp(0x070)), 0, "cleared by the loader");
        set_acpi_rsdp(&mut ram, boot.zero_page, 0xE0000);
        assert_eq!(rd64(&ram, zp(0x070)), 0xE0000);
        // Neighbouring fields are untouched.
        assert_eq!(rd64(&ram, zp(0x068)), 0);
        assert_eq!(rd64(&ram, zp(0x078)), 0);
        assert_eq!(&rd::<4>(&ram, zp(0x202)), b"HdrS");
    }

    const REAL_KERNEL: &str = "/work/shared/guests/vmlinuz";
    const REAL_INITRD: &str = "/work/shared/guests/initramfs.cpio.gz";

    #[test]
    fn real_debian_kernel() {
        let Ok(image) = std::fs::read(REAL_KERNEL) else {
            eprintln!("skipping: {REAL_KERNEL} not present");
            return;
        };
        let hdr = SetupHeader::parse(&image).unwrap();
        assert_eq!(hdr.version, 0x020F);
        assert!(hdr.xloadflags & XLF_KERNEL_64 != 0);
        assert!(hdr.has_entry64());
        assert!(hdr.relocatable_kernel);
        let initrd = std::fs::read(REAL_INITRD).ok();
        let mut ram = ram(256);
        let cmdline = "console=ttyS0 quiet panic=-1 kit=boot";
        let boot = load_linux(&mut ram, &image, initrd.as_deref(), cmdline).unwrap();
        assert_eq!(boot.protocol_version, 0x020F);
        assert_eq!(boot.load_address, hdr.pref_address);
        assert_eq!(boot.entry64, hdr.pref_address + 0x200);
        let pm = hdr.protected_mode_code(&image).unwrap();
        let mut head = [0u8; 64];
        ram.read_bytes(boot.load_address, &mut head).unwrap();
        assert_eq!(&head[..], &pm[..64]);
        assert_eq!(&rd::<4>(&ram, zp(0x202)), b"HdrS");
        assert_eq!(rd8(&ram, zp(0x210)), 0xFF);
        if let Some(data) = initrd {
            let (addr, size) = boot.initrd.unwrap();
            assert_eq!(size, data.len() as u64);
            assert!(addr >= boot.load_address + u64::from(hdr.init_size));
            assert!(addr + size <= 256 * MIB);
        }
        // Too little RAM for this kernel's init_size is reported, not a panic.
        let err = load_linux(&mut GuestRam::new(32 * MIB).unwrap(), &image, None, "").unwrap_err();
        assert!(matches!(err, LinuxBootError::TooLittleRam { .. }), "{err}");
    }
}

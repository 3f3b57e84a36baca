//! Multiboot (version 1) direct boot: find the Multiboot header of a kernel image, load the kernel
//! (ELF32 program headers, or the "a.out kludge" address fields) and its boot modules into guest
//! RAM, and build the Multiboot information structure, following the Multiboot Specification
//! version 0.6.96 (§3.1 "OS image format", §3.2 "Machine state", §3.3 "Boot information format").
//!
//! [`load_multiboot`] writes guest RAM and returns a [`MultibootBoot`] describing the CPU state the
//! machine must establish before running the guest (§3.2 "Machine state"):
//!
//! * 32-bit protected mode, paging off: CR0.PE = 1, CR0.PG = 0 (no EFER.LME, no CR4.PAE needed);
//! * GDTR = ([`MultibootBoot::gdt_base`], [`MultibootBoot::gdt_limit`]) — the GDT the loader writes
//!   with [`write_gdt`] (the spec leaves GDTR undefined, but the kernel's segment registers must
//!   hold selectors of a real table until it loads its own);
//! * CS = [`CODE_SELECTOR`] (0x08): 32-bit execute/read code, base 0, limit 4 GiB
//!   (descriptor [`GDT_CODE32`]);
//! * DS, ES, FS, GS, SS = [`DATA_SELECTOR`] (0x10): 32-bit read/write data, base 0, limit 4 GiB
//!   (descriptor [`GDT_DATA32`]);
//! * EAX = [`BOOTLOADER_MAGIC`] (0x2BADB002), EBX = [`MultibootBoot::info_addr`], EIP =
//!   [`MultibootBoot::entry`]; the other general registers are undefined (zero is fine);
//! * EFLAGS: IF = 0 (interrupts disabled), VM = 0 — i.e. just the fixed bit 1;
//! * the A20 gate enabled; IDTR undefined (the kernel must not enable interrupts before loading its
//!   own IDT); ESP undefined (the kernel sets up its own stack).
//!
//! # Guest-physical memory layout
//!
//! | range                          | contents                                                   |
//! |--------------------------------|------------------------------------------------------------|
//! | `0x8000 – 0x8017`              | GDT: null, code 0x08 (32-bit flat), data 0x10 (flat)       |
//! | `0x9000 – 0x907F`              | `multiboot_info` (88 bytes used, the rest zero)            |
//! | `0x9080 – …`                   | memory map entries, then module structures, then the boot  |
//! |                                | loader name, the command line and the module strings, each |
//! |                                | NUL-terminated; all of it below [`BOOT_AREA_END`]          |
//! | kernel's physical addresses    | kernel segments (ELF `p_paddr`, or the a.out-kludge range) |
//! | above the kernel (≥ 1 MiB)     | modules, each page aligned, in order                       |
//!
//! The memory map is the one [`crate::linux::e820_for_ram`] gives Linux: usable 0 – 0x9FC00,
//! reserved 0x9FC00 – 0xA0000 and 0xE0000 – 0x100000, usable 1 MiB – top of RAM. Kernel segments
//! must lie inside the usable ranges and must not overlap the loader's own area (0x8000 up to
//! the end of the boot information). As the specification allows, the boot information, the GDT
//! and the modules lie in memory the map reports as usable: the kernel must not reuse them before
//! it has read them (§3.3).
//!
//! # Header flags
//!
//! Bits 0–15 are requirements (§3.1.2): a loader that does not understand one must refuse the
//! kernel. Heron understands:
//!
//! * bit 0 (modules page aligned): modules are always placed on 4 KiB boundaries;
//! * bit 1 (memory information): `mem_lower`/`mem_upper` and the memory map are always provided;
//! * bit 2 (video mode): **accepted and ignored**, as QEMU does (hw/i386/multiboot.c). Heron has
//!   no VBE/framebuffer information to give, so the information structure's flags bits 11 and 12
//!   stay clear; a kernel can see from them that it got no video mode and should fall back to
//!   VGA text mode. The request itself is reported in [`MultibootHeader::video`].
//!
//! Any other bit in 0–15 is an [`MultibootError::UnsupportedFlags`] error. Bit 16 (address
//! fields valid, the "a.out kludge") selects the kludge loader even for an ELF file (as GRUB and
//! QEMU do); other bits in 16–31 are optional and ignored.
//!
//! Not provided: `boot_device` (flags bit 1), symbol tables (bits 4/5), drives (7),
//! config table (8), APM (10), VBE (11) and framebuffer (12).

use heron_softmmu::{GuestRam, RamError};

use crate::linux::{e820_for_ram, E820_RAM};

/// Magic number at the start of the Multiboot header (`MULTIBOOT_HEADER_MAGIC`, §3.1.1).
pub const HEADER_MAGIC: u32 = 0x1BAD_B002;
/// Value of EAX at kernel entry telling it a Multiboot loader started it
/// (`MULTIBOOT_BOOTLOADER_MAGIC`, §3.2).
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
/// The header must lie completely within this many bytes at the start of the file (§3.1).
pub const HEADER_SEARCH_LIMIT: usize = 8192;
/// Alignment in bytes of the header within the file (§3.1).
pub const HEADER_ALIGN: usize = 4;

/// Header flag bit 0: boot modules must be 4 KiB page aligned (§3.1.2).
pub const FLAG_PAGE_ALIGN: u32 = 1 << 0;
/// Header flag bit 1: the `mem_*` fields (and the memory map, if any) must be provided (§3.1.2).
pub const FLAG_MEMORY_INFO: u32 = 1 << 1;
/// Header flag bit 2: video mode information must be provided (§3.1.2). Heron accepts and
/// ignores it (see the module documentation).
pub const FLAG_VIDEO_MODE: u32 = 1 << 2;
/// Header flag bit 16: the address fields at header offsets 12–28 are valid ("a.out kludge",
/// §3.1.2/§3.1.3) and are used instead of the executable format's.
pub const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
/// The requirement bits (0–15) Heron understands: bits 0, 1 and 2.
pub const SUPPORTED_REQUIRED_FLAGS: u32 = FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO | FLAG_VIDEO_MODE;

/// Information flag bit 0: `mem_lower` and `mem_upper` are valid (§3.3).
pub const INFO_MEMORY: u32 = 1 << 0;
/// Information flag bit 1: `boot_device` is valid (§3.3). Heron never sets it.
pub const INFO_BOOT_DEVICE: u32 = 1 << 1;
/// Information flag bit 2: `cmdline` is valid (§3.3).
pub const INFO_CMDLINE: u32 = 1 << 2;
/// Information flag bit 3: `mods_count` and `mods_addr` are valid (§3.3).
pub const INFO_MODS: u32 = 1 << 3;
/// Information flag bit 6: `mmap_length` and `mmap_addr` are valid (§3.3).
pub const INFO_MEM_MAP: u32 = 1 << 6;
/// Information flag bit 9: `boot_loader_name` is valid (§3.3).
pub const INFO_BOOT_LOADER_NAME: u32 = 1 << 9;
/// The information flags Heron sets: memory, command line, modules, memory map, loader name.
pub const INFO_FLAGS: u32 = INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MEM_MAP | INFO_BOOT_LOADER_NAME;

/// Name written to `boot_loader_name` (§3.3).
pub const BOOT_LOADER_NAME: &str = "Heron";

/// Guest-physical address of the GDT the loader writes (3 descriptors of 8 bytes).
pub const GDT_ADDR: u64 = 0x8000;
/// GDT selector of the flat 32-bit code segment (CS at entry).
pub const CODE_SELECTOR: u16 = 0x08;
/// GDT selector of the flat data segment (DS, ES, FS, GS, SS at entry).
pub const DATA_SELECTOR: u16 = 0x10;
/// 32-bit code descriptor: base 0, limit 4 GiB (G=1), present, DPL 0, execute/read, D=1.
pub const GDT_CODE32: u64 = 0x00CF_9A00_0000_FFFF;
/// Data descriptor: base 0, limit 4 GiB (G=1), present, DPL 0, read/write, B=1.
pub const GDT_DATA32: u64 = 0x00CF_9200_0000_FFFF;
/// Guest-physical address of the Multiboot information structure (goes in EBX).
pub const INFO_ADDR: u64 = 0x9000;
/// Size in bytes of `struct multiboot_info` in specification 0.6.96 (flags … vbe_interface_len).
pub const INFO_SIZE: usize = 88;
/// Bytes reserved for the information structure before the memory map (the tail past
/// [`INFO_SIZE`] is zero, so later revisions' framebuffer fields read as absent).
pub const INFO_RESERVED: usize = 128;
/// Guest-physical address one past the last byte the boot information may use (the end of low
/// usable memory in the memory map).
pub const BOOT_AREA_END: u64 = 0x9FC00;
/// Alignment in bytes of every boot module (a 4 KiB page, §3.1.2 bit 0).
pub const MODULE_ALIGN: u64 = 4096;
/// Lowest guest-physical address of a boot module: 1 MiB (modules go above the kernel and
/// never below 1 MiB).
pub const MODULE_MIN_ADDR: u64 = 0x10_0000;
/// Size in bytes of one memory-map entry including its leading `size` field (`size` = 20).
pub const MMAP_ENTRY_SIZE: usize = 24;
/// Size in bytes of one module structure (`mod_start`, `mod_end`, `string`, `reserved`).
pub const MODULE_ENTRY_SIZE: usize = 16;

// ELF constants (System V ABI, ELF32 as used by i386).
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_386: u16 = 3;
const PT_LOAD: u32 = 1;
const ELF32_EHDR_SIZE: usize = 52;
const ELF32_PHDR_SIZE: usize = 32;

const FOUR_GIB: u64 = 1 << 32;

/// Errors of [`load_multiboot`] and [`MultibootHeader::find`].
#[derive(Debug, thiserror::Error)]
pub enum MultibootError {
    /// No 4-byte-aligned magic 0x1BADB002 in the first 8192 bytes.
    #[error("not a Multiboot kernel: no Multiboot header (magic 0x1BADB002, 4-byte aligned) in the first 8192 bytes")]
    NoHeader,
    /// A header magic was found but no candidate had a valid checksum.
    #[error(
        "Multiboot header at file offset {offset:#x} has a bad checksum: magic + flags ({flags:#010x}) \
         + checksum ({checksum:#010x}) = {sum:#010x}, must be 0"
    )]
    BadChecksum {
        /// File offset of the (first) magic found, in bytes.
        offset: usize,
        /// The header's flags field.
        flags: u32,
        /// The header's checksum field.
        checksum: u32,
        /// magic + flags + checksum (mod 2³²).
        sum: u32,
    },
    /// The header requires features (flag bits 0–15) Heron does not provide.
    #[error(
        "Multiboot header flags {flags:#010x} require features Heron does not support \
         (unknown required bits {unsupported:#06x}; only bits 0, 1, 2 and 16+ are understood)"
    )]
    UnsupportedFlags {
        /// The header's flags field.
        flags: u32,
        /// The required bits (0–15) not understood.
        unsupported: u32,
    },
    /// A 64-bit ELF file without the a.out-kludge address fields.
    #[error(
        "not a 32-bit Multiboot kernel: the file is ELF64; link an ELF32 image (e.g. objcopy -O elf32-i386) \
         or set the a.out-kludge address fields (header flag bit 16)"
    )]
    NotElf32,
    /// Header flag bit 16 is clear and the file is not ELF: there is no way to know where to load it.
    #[error("Multiboot kernel is neither ELF nor has the a.out-kludge address fields (header flag bit 16)")]
    UnknownFormat,
    /// The ELF32 headers are inconsistent or unsupported.
    #[error("bad ELF32 Multiboot kernel: {0}")]
    BadElf(String),
    /// The a.out-kludge address fields are inconsistent.
    #[error("bad Multiboot a.out-kludge address fields: {0}")]
    BadAoutKludge(String),
    /// The file ends before a part the headers declare.
    #[error("Multiboot kernel is truncated: {what} needs {need} bytes of file, have {have}")]
    Truncated {
        /// Which part is cut off.
        what: &'static str,
        /// File length in bytes the part needs.
        need: u64,
        /// Actual file length in bytes.
        have: u64,
    },
    /// A kernel segment does not lie inside usable RAM.
    #[error(
        "kernel segment {start:#x}–{end:#x} is outside usable RAM (0 – 0x9fc00 and 0x100000 – {ram_size:#x})"
    )]
    SegmentOutsideRam {
        /// Guest-physical start address of the segment.
        start: u64,
        /// Guest-physical end address (exclusive) of the segment, including bss.
        end: u64,
        /// RAM size in bytes (end of the high usable range).
        ram_size: u64,
    },
    /// Two kernel segments overlap.
    #[error("kernel segments {a_start:#x}–{a_end:#x} and {b_start:#x}–{b_end:#x} overlap")]
    SegmentsOverlap {
        /// Start of the first segment (guest-physical).
        a_start: u64,
        /// End (exclusive) of the first segment.
        a_end: u64,
        /// Start of the second segment.
        b_start: u64,
        /// End (exclusive) of the second segment.
        b_end: u64,
    },
    /// A kernel segment overlaps the GDT and boot information the loader writes in low memory.
    #[error(
        "kernel segment {start:#x}–{end:#x} overlaps the loader's GDT and boot information at \
         {area_start:#x}–{area_end:#x}"
    )]
    OverlapsBootInfo {
        /// Start of the segment (guest-physical).
        start: u64,
        /// End (exclusive) of the segment.
        end: u64,
        /// Start of the loader's area ([`GDT_ADDR`]).
        area_start: u64,
        /// End (exclusive) of the boot information actually written.
        area_end: u64,
    },
    /// The entry point is not inside the loaded kernel.
    #[error("kernel entry point {entry:#x} is not inside the loaded kernel image")]
    EntryOutsideImage {
        /// The entry address from the ELF header or the a.out-kludge `entry_addr`.
        entry: u64,
    },
    /// A boot module does not fit in RAM (below 4 GiB) above the kernel and the modules before it.
    /// Modules are placed by the loader, one after the other, so they never overlap each other.
    #[error(
        "module {index} ({size} bytes) does not fit in RAM: placed at {start:#x} it would end at \
         {end:#x}, past the end of RAM {limit:#x}"
    )]
    ModuleDoesNotFit {
        /// Index of the module (0-based) in the `modules` argument.
        index: usize,
        /// Module size in bytes.
        size: u64,
        /// Where it would start (guest-physical, page aligned).
        start: u64,
        /// Where it would end (exclusive).
        end: u64,
        /// End of usable memory for modules: RAM size, at most 4 GiB.
        limit: u64,
    },
    /// The kernel command line contains a NUL byte.
    #[error("Multiboot command line contains a NUL byte")]
    CmdlineNul,
    /// A module's command line contains a NUL byte.
    #[error("command line of module {index} contains a NUL byte")]
    ModuleCmdlineNul {
        /// Index of the module (0-based).
        index: usize,
    },
    /// The boot information (memory map, module list, strings) does not fit below [`BOOT_AREA_END`].
    #[error(
        "boot information (command line, module strings) needs {need} bytes from {INFO_ADDR:#x}; \
         only {max} fit below {BOOT_AREA_END:#x}"
    )]
    BootInfoTooLarge {
        /// Bytes needed from [`INFO_ADDR`].
        need: u64,
        /// Bytes available from [`INFO_ADDR`] to [`BOOT_AREA_END`].
        max: u64,
    },
    /// A guest RAM access failed (should not happen after the loader's own checks).
    #[error(transparent)]
    Ram(#[from] RamError),
}

/// The a.out-kludge address fields of a Multiboot header (offsets 12–28, valid when flag bit 16
/// is set; §3.1.3). All are guest-physical addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AoutKludge {
    /// Address the first byte of the Multiboot header is loaded at (maps file offsets to addresses).
    pub header_addr: u32,
    /// Address of the start of the text segment: where loading starts.
    pub load_addr: u32,
    /// End (exclusive) of the data segment; 0 means "the rest of the file".
    pub load_end_addr: u32,
    /// End (exclusive) of the bss, zero-filled from `load_end_addr`; 0 means no bss.
    pub bss_end_addr: u32,
    /// Entry point (EIP at entry).
    pub entry_addr: u32,
}

/// The graphics fields of a Multiboot header (offsets 32–44, valid when flag bit 2 is set;
/// §3.1.4). Heron records them but provides no video mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoModeRequest {
    /// 0 = linear graphics mode, 1 = EGA text mode.
    pub mode_type: u32,
    /// Columns (pixels, or characters in text mode); 0 = no preference.
    pub width: u32,
    /// Rows (pixels, or characters in text mode); 0 = no preference.
    pub height: u32,
    /// Bits per pixel in graphics mode (0 in text mode or no preference).
    pub depth: u32,
}

/// A Multiboot header found in a kernel image (§3.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultibootHeader {
    /// File offset of the header (its magic), in bytes; a multiple of 4, below 8192.
    pub offset: usize,
    /// The `flags` field.
    pub flags: u32,
    /// Address fields, when flag bit 16 is set.
    pub aout: Option<AoutKludge>,
    /// Video mode request, when flag bit 2 is set and the fields are in the file.
    pub video: Option<VideoModeRequest>,
}

fn rd_u16(f: &[u8], off: usize) -> Option<u16> {
    f.get(off..off.checked_add(2)?).map(|b| u16::from_le_bytes([b[0], b[1]]))
}
fn rd_u32(f: &[u8], off: usize) -> Option<u32> {
    f.get(off..off.checked_add(4)?).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    buf[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
fn align_up(x: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    x.saturating_add(align - 1) & !(align - 1)
}

/// The file offset and flags of the first valid header (magic and checksum); see
/// [`MultibootHeader::find`].
fn locate_header(kernel: &[u8]) -> Result<(usize, u32), MultibootError> {
    let window = &kernel[..kernel.len().min(HEADER_SEARCH_LIMIT)];
    let mut bad = None;
    let mut off = 0;
    while off + 12 <= window.len() {
        if rd_u32(window, off) == Some(HEADER_MAGIC) {
            let flags = rd_u32(window, off + 4).unwrap_or(0);
            let checksum = rd_u32(window, off + 8).unwrap_or(0);
            let sum = HEADER_MAGIC.wrapping_add(flags).wrapping_add(checksum);
            if sum == 0 {
                return Ok((off, flags));
            }
            bad.get_or_insert(MultibootError::BadChecksum { offset: off, flags, checksum, sum });
        }
        off += HEADER_ALIGN;
    }
    Err(bad.unwrap_or(MultibootError::NoHeader))
}

impl MultibootHeader {
    /// Find the Multiboot header: the first 4-byte-aligned offset whose 12 bytes (magic, flags,
    /// checksum) lie within the first 8192 bytes of the file, hold [`HEADER_MAGIC`], and sum to 0
    /// mod 2³² (§3.1.1). Candidates with the magic but a bad checksum are skipped, as GRUB does;
    /// if no valid header exists but such a candidate does, the error is
    /// [`MultibootError::BadChecksum`] for the first one. The address fields (flag bit 16) and
    /// video fields (bit 2) are read when set; missing address fields are a truncation error.
    pub fn find(kernel: &[u8]) -> Result<MultibootHeader, MultibootError> {
        let (offset, flags) = locate_header(kernel)?;
        Self::parse_at(kernel, offset, flags)
    }

    fn parse_at(kernel: &[u8], offset: usize, flags: u32) -> Result<MultibootHeader, MultibootError> {
        let aout = if flags & FLAG_AOUT_KLUDGE != 0 {
            let need = offset + 32;
            let f = |i: usize| {
                rd_u32(kernel, offset + 12 + 4 * i).ok_or(MultibootError::Truncated {
                    what: "Multiboot header address fields",
                    need: need as u64,
                    have: kernel.len() as u64,
                })
            };
            Some(AoutKludge {
                header_addr: f(0)?,
                load_addr: f(1)?,
                load_end_addr: f(2)?,
                bss_end_addr: f(3)?,
                entry_addr: f(4)?,
            })
        } else {
            None
        };
        // The video fields are only informational: read them if present, never fail on them.
        let video = if flags & FLAG_VIDEO_MODE != 0 {
            let f = |i: usize| rd_u32(kernel, offset + 32 + 4 * i);
            match (f(0), f(1), f(2), f(3)) {
                (Some(mode_type), Some(width), Some(height), Some(depth)) => {
                    Some(VideoModeRequest { mode_type, width, height, depth })
                }
                _ => None,
            }
        } else {
            None
        };
        Ok(MultibootHeader { offset, flags, aout, video })
    }

    /// The requirement bits (0–15) of `flags` that Heron does not understand (0 if none).
    pub fn unsupported_required_flags(&self) -> u32 {
        self.flags & 0xFFFF & !SUPPORTED_REQUIRED_FLAGS
    }
}

/// Whether `kernel` has a valid Multiboot header (magic and checksum, 4-byte aligned, within the
/// first 8192 bytes; §3.1.1). Loading may still fail (unsupported flags, ELF64, truncated or bad
/// addresses), and [`load_multiboot`] then says why; the caller should try a bzImage ("HdrS" at
/// 0x202) first, as QEMU does, and this second.
pub fn is_multiboot(kernel: &[u8]) -> bool {
    locate_header(kernel).is_ok()
}

/// How the kernel image was interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// ELF32 executable: `PT_LOAD` program headers loaded at their physical addresses (`p_paddr`).
    Elf32,
    /// Raw image placed by the header's a.out-kludge address fields (flag bit 16).
    AoutKludge,
}

/// Where and how the kernel was loaded, and the register values to enter it with (§3.2). All
/// addresses are guest-physical bytes. See the module documentation for the full CPU state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultibootBoot {
    /// EIP at entry.
    pub entry: u32,
    /// EBX at entry: address of the Multiboot information structure ([`INFO_ADDR`]).
    pub info_addr: u32,
    /// EAX at entry: [`BOOTLOADER_MAGIC`] (0x2BADB002).
    pub eax: u32,
    /// GDTR base: [`GDT_ADDR`].
    pub gdt_base: u64,
    /// GDTR limit in bytes (size − 1): 23.
    pub gdt_limit: u16,
    /// CS selector: [`CODE_SELECTOR`] (0x08), descriptor [`GDT_CODE32`].
    pub code_selector: u16,
    /// DS/ES/FS/GS/SS selector: [`DATA_SELECTOR`] (0x10), descriptor [`GDT_DATA32`].
    pub data_selector: u16,
    /// How the image was loaded.
    pub format: KernelFormat,
    /// Lowest guest-physical address the kernel occupies.
    pub kernel_start: u64,
    /// End (exclusive) of the highest kernel segment, bss included.
    pub kernel_end: u64,
    /// Each module's (start, end) guest-physical range, end exclusive (`mod_start`, `mod_end`).
    pub modules: Vec<(u64, u64)>,
    /// End (exclusive) of the boot information written from [`INFO_ADDR`].
    pub info_end: u64,
    /// The Multiboot header that was used (flags; video request, which Heron ignores).
    pub header: MultibootHeader,
}

/// One piece of the kernel image to place in RAM: `data` at `addr`, then zeros up to `addr + memsz`.
#[derive(Debug, Clone, Copy)]
struct Segment<'a> {
    addr: u64,
    data: &'a [u8],
    memsz: u64,
}

impl Segment<'_> {
    fn end(&self) -> u64 {
        self.addr + self.memsz
    }
}

/// Kernel image parsed into segments plus its physical entry point.
struct Image<'a> {
    format: KernelFormat,
    segments: Vec<Segment<'a>>,
    entry: u64,
}

fn elf_segments(kernel: &[u8]) -> Result<Image<'_>, MultibootError> {
    let have = kernel.len() as u64;
    if kernel.len() < ELF32_EHDR_SIZE {
        return Err(MultibootError::Truncated { what: "ELF header", need: ELF32_EHDR_SIZE as u64, have });
    }
    if kernel[5] != ELFDATA2LSB {
        return Err(MultibootError::BadElf(format!("not little-endian (EI_DATA = {})", kernel[5])));
    }
    let u16_at = |off| rd_u16(kernel, off).unwrap_or(0);
    let u32_at = |off| rd_u32(kernel, off).unwrap_or(0);
    let e_type = u16_at(16);
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(MultibootError::BadElf(format!(
            "e_type {e_type} is not an executable (ET_EXEC or ET_DYN)"
        )));
    }
    let e_machine = u16_at(18);
    if e_machine != EM_386 {
        return Err(MultibootError::BadElf(format!("e_machine {e_machine} is not EM_386 (3)")));
    }
    let e_entry = u64::from(u32_at(24));
    let e_phoff = u64::from(u32_at(28));
    let e_phentsize = u64::from(u16_at(42));
    let e_phnum = u64::from(u16_at(44));
    if e_phnum == 0 {
        return Err(MultibootError::BadElf("no program headers".into()));
    }
    if e_phentsize < ELF32_PHDR_SIZE as u64 {
        return Err(MultibootError::BadElf(format!("e_phentsize {e_phentsize} is smaller than 32")));
    }
    let ph_end = e_phoff + e_phentsize * e_phnum;
    if ph_end > have {
        return Err(MultibootError::Truncated { what: "ELF program headers", need: ph_end, have });
    }
    let mut segments = Vec::new();
    let mut entry = None;
    for i in 0..e_phnum {
        let ph = (e_phoff + i * e_phentsize) as usize;
        let f = |k: usize| u64::from(u32_at(ph + 4 * k));
        let (p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz) =
            (f(0) as u32, f(1), f(2), f(3), f(4), f(5));
        if p_type != PT_LOAD || p_memsz == 0 {
            continue;
        }
        if p_filesz > p_memsz {
            return Err(MultibootError::BadElf(format!(
                "program header {i}: p_filesz {p_filesz:#x} is larger than p_memsz {p_memsz:#x}"
            )));
        }
        if p_paddr + p_memsz > FOUR_GIB {
            return Err(MultibootError::BadElf(format!(
                "program header {i}: {p_paddr:#x} + {p_memsz:#x} bytes goes past 4 GiB"
            )));
        }
        let data = usize::try_from(p_offset)
            .ok()
            .zip(usize::try_from(p_offset + p_filesz).ok())
            .and_then(|(s, e)| kernel.get(s..e))
            .ok_or(MultibootError::Truncated { what: "ELF segment", need: p_offset + p_filesz, have })?;
        // As GRUB does, an entry point inside a segment's virtual range is translated to its
        // physical address (higher-half kernels link at p_vaddr != p_paddr).
        if entry.is_none() && (p_vaddr..p_vaddr + p_memsz).contains(&e_entry) {
            entry = Some(e_entry - p_vaddr + p_paddr);
        }
        segments.push(Segment { addr: p_paddr, data, memsz: p_memsz });
    }
    if segments.is_empty() {
        return Err(MultibootError::BadElf("no loadable (PT_LOAD) segments".into()));
    }
    Ok(Image { format: KernelFormat::Elf32, segments, entry: entry.unwrap_or(e_entry) })
}

fn aout_segments<'a>(kernel: &'a [u8], offset: usize, k: &AoutKludge) -> Result<Image<'a>, MultibootError> {
    let have = kernel.len() as u64;
    let header_addr = u64::from(k.header_addr);
    let load_addr = u64::from(k.load_addr);
    if header_addr < load_addr {
        return Err(MultibootError::BadAoutKludge(format!(
            "header_addr {header_addr:#x} is below load_addr {load_addr:#x}"
        )));
    }
    // The header sits (header_addr - load_addr) bytes into the loaded image, so loading starts
    // that many bytes before the header's file offset.
    let start = (offset as u64).checked_sub(header_addr - load_addr).ok_or_else(|| {
        MultibootError::BadAoutKludge(format!(
            "load_addr {load_addr:#x} lies {:#x} bytes before header_addr {header_addr:#x}, but the header is \
             only {offset:#x} bytes into the file",
            header_addr - load_addr
        ))
    })?;
    let load_size = if k.load_end_addr == 0 {
        have - start
    } else {
        let load_end = u64::from(k.load_end_addr);
        if load_end < load_addr {
            return Err(MultibootError::BadAoutKludge(format!(
                "load_end_addr {load_end:#x} is below load_addr {load_addr:#x}"
            )));
        }
        load_end - load_addr
    };
    if start + load_size > have {
        return Err(MultibootError::Truncated {
            what: "a.out-kludge text and data",
            need: start + load_size,
            have,
        });
    }
    let memsz = if k.bss_end_addr == 0 {
        load_size
    } else {
        let bss_end = u64::from(k.bss_end_addr);
        if bss_end < load_addr + load_size {
            return Err(MultibootError::BadAoutKludge(format!(
                "bss_end_addr {bss_end:#x} is below the end of the loaded data {:#x}",
                load_addr + load_size
            )));
        }
        bss_end - load_addr
    };
    if memsz == 0 {
        return Err(MultibootError::BadAoutKludge("the image to load is empty".into()));
    }
    if load_addr + memsz > FOUR_GIB {
        return Err(MultibootError::BadAoutKludge(format!(
            "{load_addr:#x} + {memsz:#x} bytes goes past 4 GiB"
        )));
    }
    let data = &kernel[start as usize..(start + load_size) as usize];
    Ok(Image {
        format: KernelFormat::AoutKludge,
        segments: vec![Segment { addr: load_addr, data, memsz }],
        entry: u64::from(k.entry_addr),
    })
}

/// Parse the kernel image: a.out kludge when header flag bit 16 is set, else ELF32.
fn parse_image<'a>(kernel: &'a [u8], hdr: &MultibootHeader) -> Result<Image<'a>, MultibootError> {
    if let Some(k) = &hdr.aout {
        return aout_segments(kernel, hdr.offset, k);
    }
    if kernel.len() < 5 || kernel[..4] != *b"\x7FELF" {
        return Err(MultibootError::UnknownFormat);
    }
    match kernel[4] {
        ELFCLASS32 => elf_segments(kernel),
        ELFCLASS64 => Err(MultibootError::NotElf32),
        c => Err(MultibootError::BadElf(format!("unknown ELF class {c}"))),
    }
}

/// Load the Multiboot kernel `kernel`, the command line `cmdline` and the boot `modules`
/// (contents, command line) into `ram`; write the GDT ([`write_gdt`]) and the Multiboot
/// information structure at [`INFO_ADDR`]. See the module documentation for the memory layout
/// and the CPU state to enter the kernel with.
///
/// Each module is placed page aligned above the kernel (and at or above 1 MiB), in the given
/// order; its command line string is written as given — by convention (GRUB's `module` command)
/// the module's file name followed by its arguments. Nothing is written unless every check passes.
pub fn load_multiboot(
    ram: &mut GuestRam,
    kernel: &[u8],
    cmdline: &str,
    modules: &[(Vec<u8>, String)],
) -> Result<MultibootBoot, MultibootError> {
    let header = MultibootHeader::find(kernel)?;
    let unsupported = header.unsupported_required_flags();
    if unsupported != 0 {
        return Err(MultibootError::UnsupportedFlags { flags: header.flags, unsupported });
    }
    let image = parse_image(kernel, &header)?;
    if cmdline.as_bytes().contains(&0) {
        return Err(MultibootError::CmdlineNul);
    }
    if let Some(index) = modules.iter().position(|(_, c)| c.as_bytes().contains(&0)) {
        return Err(MultibootError::ModuleCmdlineNul { index });
    }
    let ram_size = ram.size();
    let e820 = e820_for_ram(ram_size);

    // Boot information layout (computed first: kernel segments must not overlap it).
    let mmap_addr = INFO_ADDR + INFO_RESERVED as u64;
    let mmap_len = e820.len() * MMAP_ENTRY_SIZE;
    let mods_addr = align_up(mmap_addr + mmap_len as u64, 16);
    let strings_addr = mods_addr + (modules.len() * MODULE_ENTRY_SIZE) as u64;
    let strings_len: u64 = (BOOT_LOADER_NAME.len() + 1 + cmdline.len() + 1) as u64
        + modules.iter().map(|(_, c)| c.len() as u64 + 1).sum::<u64>();
    let info_end = strings_addr + strings_len;
    if info_end > BOOT_AREA_END {
        return Err(MultibootError::BootInfoTooLarge {
            need: info_end - INFO_ADDR,
            max: BOOT_AREA_END - INFO_ADDR,
        });
    }

    // Kernel placement checks.
    let usable: Vec<(u64, u64)> =
        e820.iter().filter(|e| e.kind == E820_RAM).map(|e| (e.addr, e.addr + e.size)).collect();
    let mut sorted = image.segments.clone();
    sorted.sort_by_key(|s| s.addr);
    for s in &sorted {
        if !usable.iter().any(|&(lo, hi)| s.addr >= lo && s.end() <= hi) {
            return Err(MultibootError::SegmentOutsideRam { start: s.addr, end: s.end(), ram_size });
        }
        if s.addr < info_end && s.end() > GDT_ADDR {
            return Err(MultibootError::OverlapsBootInfo {
                start: s.addr,
                end: s.end(),
                area_start: GDT_ADDR,
                area_end: info_end,
            });
        }
    }
    for w in sorted.windows(2) {
        if w[1].addr < w[0].end() {
            return Err(MultibootError::SegmentsOverlap {
                a_start: w[0].addr,
                a_end: w[0].end(),
                b_start: w[1].addr,
                b_end: w[1].end(),
            });
        }
    }
    if !sorted.iter().any(|s| (s.addr..s.end()).contains(&image.entry)) {
        return Err(MultibootError::EntryOutsideImage { entry: image.entry });
    }
    let kernel_start = sorted.first().map_or(0, |s| s.addr);
    let kernel_end = sorted.iter().map(Segment::end).max().unwrap_or(0);

    // Module placement: page aligned, one after the other, above the kernel and 1 MiB.
    let limit = ram_size.min(FOUR_GIB);
    let mut next = align_up(kernel_end.max(MODULE_MIN_ADDR), MODULE_ALIGN);
    let mut placed = Vec::with_capacity(modules.len());
    for (index, (data, _)) in modules.iter().enumerate() {
        let size = data.len() as u64;
        let start = next;
        let end = start.saturating_add(size);
        if end > limit {
            return Err(MultibootError::ModuleDoesNotFit { index, size, start, end, limit });
        }
        placed.push((start, end));
        next = align_up(end, MODULE_ALIGN);
    }

    // Boot information block, from INFO_ADDR to info_end.
    let mut info = vec![0u8; (info_end - INFO_ADDR) as usize];
    let rel = |addr: u64| (addr - INFO_ADDR) as usize;
    let mut string_at = strings_addr;
    let mut add_string = |info: &mut Vec<u8>, s: &str| -> u32 {
        let at = string_at;
        let o = rel(at);
        info[o..o + s.len()].copy_from_slice(s.as_bytes());
        info[o + s.len()] = 0;
        string_at += s.len() as u64 + 1;
        at as u32
    };
    let name_ptr = add_string(&mut info, BOOT_LOADER_NAME);
    let cmdline_ptr = add_string(&mut info, cmdline);
    for (i, ((_, mod_cmdline), &(start, end))) in modules.iter().zip(&placed).enumerate() {
        let string = add_string(&mut info, mod_cmdline);
        let o = rel(mods_addr) + i * MODULE_ENTRY_SIZE;
        put_u32(&mut info, o, start as u32);
        put_u32(&mut info, o + 4, end as u32);
        put_u32(&mut info, o + 8, string);
        put_u32(&mut info, o + 12, 0);
    }
    for (i, e) in e820.iter().enumerate() {
        let o = rel(mmap_addr) + i * MMAP_ENTRY_SIZE;
        put_u32(&mut info, o, (MMAP_ENTRY_SIZE - 4) as u32);
        put_u64(&mut info, o + 4, e.addr);
        put_u64(&mut info, o + 12, e.size);
        put_u32(&mut info, o + 20, e.kind);
    }
    let mem_lower_kib = ram_size.min(BOOT_AREA_END) / 1024;
    let mem_upper_kib =
        (ram_size.min(FOUR_GIB).saturating_sub(MODULE_MIN_ADDR) / 1024).min(u64::from(u32::MAX));
    put_u32(&mut info, 0, INFO_FLAGS);
    put_u32(&mut info, 4, mem_lower_kib as u32);
    put_u32(&mut info, 8, mem_upper_kib as u32);
    put_u32(&mut info, 12, 0); // boot_device: absent (flag bit 1 clear)
    put_u32(&mut info, 16, cmdline_ptr);
    put_u32(&mut info, 20, modules.len() as u32);
    put_u32(&mut info, 24, mods_addr as u32);
    put_u32(&mut info, 44, mmap_len as u32);
    put_u32(&mut info, 48, mmap_addr as u32);
    put_u32(&mut info, 64, name_ptr);

    // Everything is validated; write guest RAM.
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    for s in &image.segments {
        ram.write_bytes(s.addr, s.data)?;
        let mut at = s.addr + s.data.len() as u64;
        while at < s.end() {
            let n = (s.end() - at).min(ZEROS.len() as u64);
            ram.write_bytes(at, &ZEROS[..n as usize])?;
            at += n;
        }
    }
    for ((data, _), &(start, _)) in modules.iter().zip(&placed) {
        ram.write_bytes(start, data)?;
    }
    ram.write_bytes(INFO_ADDR, &info)?;
    let (gdt_base, gdt_limit) = write_gdt(ram)?;

    Ok(MultibootBoot {
        entry: image.entry as u32,
        info_addr: INFO_ADDR as u32,
        eax: BOOTLOADER_MAGIC,
        gdt_base,
        gdt_limit,
        code_selector: CODE_SELECTOR,
        data_selector: DATA_SELECTOR,
        format: image.format,
        kernel_start,
        kernel_end,
        modules: placed,
        info_end,
        header,
    })
}

/// Write the entry GDT at [`GDT_ADDR`]: null, [`GDT_CODE32`] at selector [`CODE_SELECTOR`] (0x08),
/// [`GDT_DATA32`] at selector [`DATA_SELECTOR`] (0x10). Returns the GDTR value (base, limit).
/// [`load_multiboot`] calls it; it is public for machines that need the table again (e.g. after
/// a reset that reloads the kernel).
pub fn write_gdt(ram: &mut GuestRam) -> Result<(u64, u16), RamError> {
    let gdt: [u64; 3] = [0, GDT_CODE32, GDT_DATA32];
    let mut bytes = [0u8; 24];
    for (i, d) in gdt.iter().enumerate() {
        put_u64(&mut bytes, i * 8, *d);
    }
    ram.write_bytes(GDT_ADDR, &bytes)?;
    Ok((GDT_ADDR, (bytes.len() - 1) as u16))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn ram(mib: u64) -> GuestRam {
        GuestRam::new(mib * MIB).unwrap()
    }
    fn rd<const N: usize>(ram: &GuestRam, addr: u64) -> [u8; N] {
        let mut b = [0u8; N];
        ram.read_bytes(addr, &mut b).unwrap();
        b
    }
    fn rd32(ram: &GuestRam, addr: u64) -> u32 {
        u32::from_le_bytes(rd(ram, addr))
    }
    fn rd64(ram: &GuestRam, addr: u64) -> u64 {
        u64::from_le_bytes(rd(ram, addr))
    }
    fn info(ram: &GuestRam, off: u64) -> u32 {
        rd32(ram, INFO_ADDR + off)
    }
    fn cstr(ram: &GuestRam, addr: u64) -> String {
        let mut out = Vec::new();
        let mut a = addr;
        loop {
            let b = rd::<1>(ram, a)[0];
            if b == 0 {
                break;
            }
            out.push(b);
            a += 1;
        }
        String::from_utf8(out).unwrap()
    }
    fn read_vec(ram: &GuestRam, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        ram.read_bytes(addr, &mut v).unwrap();
        v
    }

    /// A Multiboot header: magic, flags, checksum, then the 5 address fields and 4 video fields
    /// (48 bytes; only the first 12 matter unless bits 16 / 2 are set).
    fn mb_header(flags: u32, aout: [u32; 5], video: [u32; 4]) -> Vec<u8> {
        let mut h = Vec::with_capacity(48);
        for v in [HEADER_MAGIC, flags, 0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags))] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        for v in aout.iter().chain(video.iter()) {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h
    }

    /// One ELF32 program header to build.
    #[derive(Clone)]
    struct Ph {
        p_type: u32,
        paddr: u32,
        vaddr: u32,
        data: Vec<u8>,
        memsz: u32,
    }

    fn load_ph(paddr: u32, data: Vec<u8>, memsz: u32) -> Ph {
        Ph { p_type: PT_LOAD, paddr, vaddr: paddr, data, memsz }
    }

    /// A synthetic ELF32 i386 executable with a Multiboot header right after the program
    /// headers and each segment's bytes from file offset 0x1000 on, each page aligned.
    #[derive(Clone)]
    struct Elf {
        entry: u32,
        phs: Vec<Ph>,
        mb_flags: u32,
        class: u8,
        machine: u16,
        e_type: u16,
    }

    impl Elf {
        fn new(entry: u32, phs: Vec<Ph>) -> Self {
            Elf { entry, phs, mb_flags: FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO, class: 1, machine: 3, e_type: 2 }
        }

        fn build(&self) -> Vec<u8> {
            let n = self.phs.len();
            let mut f = vec![0u8; 0x1000 * (n + 1)];
            f[..4].copy_from_slice(b"\x7FELF");
            f[4] = self.class;
            f[5] = 1;
            f[6] = 1;
            f[16..18].copy_from_slice(&self.e_type.to_le_bytes());
            f[18..20].copy_from_slice(&self.machine.to_le_bytes());
            f[20..24].copy_from_slice(&1u32.to_le_bytes());
            f[24..28].copy_from_slice(&self.entry.to_le_bytes());
            f[28..32].copy_from_slice(&52u32.to_le_bytes());
            f[40..42].copy_from_slice(&52u16.to_le_bytes());
            f[42..44].copy_from_slice(&32u16.to_le_bytes());
            f[44..46].copy_from_slice(&(n as u16).to_le_bytes());
            let mut next = 0x1000u32;
            for (i, ph) in self.phs.iter().enumerate() {
                let o = 52 + 32 * i;
                let off = next;
                next = (off + ph.data.len() as u32).next_multiple_of(0x1000).max(off + 0x1000);
                let fields = [ph.p_type, off, ph.vaddr, ph.paddr, ph.data.len() as u32, ph.memsz, 5, 0x1000];
                for (k, v) in fields.iter().enumerate() {
                    f[o + 4 * k..o + 4 * k + 4].copy_from_slice(&v.to_le_bytes());
                }
                let end = off as usize + ph.data.len();
                if f.len() < end {
                    f.resize(end, 0);
                }
                f[off as usize..end].copy_from_slice(&ph.data);
            }
            let h = (52 + 32 * n).next_multiple_of(4);
            f[h..h + 48].copy_from_slice(&mb_header(self.mb_flags, [0; 5], [1, 80, 25, 0]));
            f
        }
    }

    fn text(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
    }

    /// An a.out-kludge image: `pad` bytes of file (loaded too) before the header, the 32-byte
    /// header at `load_addr + pad`, then `code`; `bss` bytes of bss; entry at `entry_off` from load_addr.
    fn aout(load_addr: u32, pad: usize, code: &[u8], bss: u32, entry_off: u32) -> Vec<u8> {
        let image_len = (pad + 32 + code.len()) as u32;
        let header_addr = load_addr + pad as u32;
        let load_end = load_addr + image_len;
        let mut f = vec![0x90u8; pad];
        f.extend_from_slice(
            &mb_header(
                FLAG_AOUT_KLUDGE | FLAG_PAGE_ALIGN,
                [header_addr, load_addr, load_end, load_end + bss, load_addr + entry_off],
                [0; 4],
            )[..32],
        );
        f.extend_from_slice(code);
        f
    }

    fn two_segment_kernel() -> (Elf, Vec<u8>, Vec<u8>) {
        let t = text(0x1234, 1);
        let d = text(0x100, 9);
        let elf = Elf::new(
            0x10_0010,
            vec![load_ph(0x10_0000, t.clone(), 0x1234), load_ph(0x10_2000, d.clone(), 0x3000)],
        );
        (elf, t, d)
    }

    #[test]
    fn elf32_loads_segments_and_fills_info() {
        let (elf, t, d) = two_segment_kernel();
        let image = elf.build();
        let mut ram = ram(64);
        // Dirty the bss and the info area to check they are cleared.
        ram.write_bytes(0x10_2000, &[0xAB; 0x3000]).unwrap();
        ram.write_bytes(INFO_ADDR, &[0xCD; 0x1000]).unwrap();
        let mod0 = text(5000, 3);
        let mod1 = text(17, 4);
        let modules =
            vec![(mod0.clone(), "/boot/initrd.img root=x".to_string()), (mod1.clone(), "m1".to_string())];
        let boot = load_multiboot(&mut ram, &image, "console=e9 -v", &modules).unwrap();

        assert_eq!(boot.format, KernelFormat::Elf32);
        assert_eq!(boot.entry, 0x10_0010);
        assert_eq!(boot.eax, 0x2BAD_B002);
        assert_eq!(boot.info_addr, 0x9000);
        assert_eq!((boot.gdt_base, boot.gdt_limit), (0x8000, 23));
        assert_eq!((boot.code_selector, boot.data_selector), (0x08, 0x10));
        assert_eq!((boot.kernel_start, boot.kernel_end), (0x10_0000, 0x10_5000));
        assert_eq!(boot.header.offset, 116);
        assert_eq!(boot.header.aout, None);

        // Segments: file bytes, then zeros to p_memsz.
        assert!(read_vec(&ram, 0x10_0000, t.len()) == t);
        assert!(read_vec(&ram, 0x10_2000, d.len()) == d);
        assert!(read_vec(&ram, 0x10_2100, 0x2F00).iter().all(|&b| b == 0), "bss zeroed");

        // Information structure.
        assert_eq!(
            info(&ram, 0),
            INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MEM_MAP | INFO_BOOT_LOADER_NAME
        );
        assert_eq!(info(&ram, 0) & INFO_BOOT_DEVICE, 0);
        assert_eq!(info(&ram, 4), 639, "mem_lower KiB");
        assert_eq!(info(&ram, 8), 63 * 1024, "mem_upper KiB");
        assert_eq!(info(&ram, 12), 0, "boot_device");
        assert_eq!(cstr(&ram, info(&ram, 16).into()), "console=e9 -v");
        assert_eq!(cstr(&ram, info(&ram, 64).into()), "Heron");
        for off in (28..44).chain(52..64).chain(68..128).step_by(4) {
            assert_eq!(info(&ram, off), 0, "field at {off} must be zero");
        }

        // Modules: page aligned, above the kernel, in order, with their strings.
        assert_eq!(info(&ram, 20), 2);
        let mods = u64::from(info(&ram, 24));
        assert_eq!(boot.modules, vec![(0x10_5000, 0x10_5000 + 5000), (0x10_7000, 0x10_7000 + 17)]);
        for (i, (data, cmd)) in modules.iter().enumerate() {
            let e = mods + 16 * i as u64;
            let (start, end) = (u64::from(rd32(&ram, e)), u64::from(rd32(&ram, e + 4)));
            assert_eq!((start, end), boot.modules[i]);
            assert_eq!(start % 4096, 0);
            assert!(start >= boot.kernel_end);
            assert!(read_vec(&ram, start, data.len()) == *data, "module {i}");
            assert_eq!(cstr(&ram, rd32(&ram, e + 8).into()), *cmd);
            assert_eq!(rd32(&ram, e + 12), 0);
        }

        // Memory map: same ranges as the e820 map for Linux.
        assert_eq!(info(&ram, 44), 4 * 24, "mmap_length");
        let mmap = u64::from(info(&ram, 48));
        let expect =
            [(0u64, 0x9FC00u64, 1u32), (0x9FC00, 0x400, 2), (0xE0000, 0x20000, 2), (0x10_0000, 63 * MIB, 1)];
        for (i, (base, len, kind)) in expect.iter().enumerate() {
            let e = mmap + 24 * i as u64;
            assert_eq!(rd32(&ram, e), 20, "size");
            assert_eq!(rd64(&ram, e + 4), *base);
            assert_eq!(rd64(&ram, e + 12), *len);
            assert_eq!(rd32(&ram, e + 20), *kind);
        }

        // Everything the loader wrote in low memory lies in [GDT_ADDR, info_end) below 0x9FC00.
        for p in [mods, mmap, info(&ram, 16).into(), info(&ram, 64).into()] {
            assert!((INFO_ADDR..boot.info_end).contains(&p), "{p:#x}");
        }
        assert!(boot.info_end <= BOOT_AREA_END);

        // GDT.
        assert_eq!(rd64(&ram, 0x8000), 0);
        assert_eq!(rd64(&ram, 0x8008), 0x00CF_9A00_0000_FFFF);
        assert_eq!(rd64(&ram, 0x8010), 0x00CF_9200_0000_FFFF);
    }

    #[test]
    fn no_modules_and_empty_cmdline() {
        let (elf, _, _) = two_segment_kernel();
        let mut ram = ram(16);
        let boot = load_multiboot(&mut ram, &elf.build(), "", &[]).unwrap();
        assert!(boot.modules.is_empty());
        assert_eq!(info(&ram, 0) & INFO_MODS, INFO_MODS);
        assert_eq!(info(&ram, 20), 0);
        assert_eq!(cstr(&ram, info(&ram, 16).into()), "");
        assert_eq!(info(&ram, 8), 15 * 1024);
    }

    #[test]
    fn modules_are_page_aligned_and_above_one_mib() {
        // A kernel entirely below 1 MiB: modules still start at 1 MiB.
        let elf = Elf::new(0x2_0000, vec![load_ph(0x2_0000, text(0x800, 0), 0x800)]);
        let mut ram = ram(16);
        let modules: Vec<(Vec<u8>, String)> = [1usize, 4096, 4097, 0, 3]
            .iter()
            .enumerate()
            .map(|(i, &n)| (text(n, i as u8), format!("mod{i}")))
            .collect();
        let boot = load_multiboot(&mut ram, &elf.build(), "", &modules).unwrap();
        assert_eq!(
            boot.modules,
            vec![
                (0x10_0000, 0x10_0001),
                (0x10_1000, 0x10_2000),
                (0x10_2000, 0x10_3001),
                (0x10_4000, 0x10_4000),
                (0x10_4000, 0x10_4003),
            ]
        );
        for (i, (data, _)) in modules.iter().enumerate() {
            assert!(read_vec(&ram, boot.modules[i].0, data.len()) == *data, "module {i}");
        }
    }

    #[test]
    fn higher_half_entry_is_translated() {
        let mut ph = load_ph(0x10_0000, text(0x100, 0), 0x100);
        ph.vaddr = 0xC010_0000;
        let elf = Elf::new(0xC010_0040, vec![ph]);
        let boot = load_multiboot(&mut ram(16), &elf.build(), "", &[]).unwrap();
        assert_eq!(boot.entry, 0x10_0040);
    }

    #[test]
    fn non_load_and_empty_segments_are_skipped() {
        let mut note = load_ph(0x5000_0000, vec![1, 2, 3], 3);
        note.p_type = 4; // PT_NOTE, at an address outside RAM: ignored
        let empty = load_ph(0x7000_0000, vec![], 0);
        let elf = Elf::new(0x10_0000, vec![note, load_ph(0x10_0000, text(16, 0), 16), empty]);
        let boot = load_multiboot(&mut ram(16), &elf.build(), "", &[]).unwrap();
        assert_eq!((boot.kernel_start, boot.kernel_end), (0x10_0000, 0x10_0010));
    }

    #[test]
    fn aout_kludge_loads_and_zeroes_bss() {
        let code = text(0x300, 5);
        // 0x40 bytes of the file before the header are part of the image.
        let image = aout(0x20_0000, 0x40, &code, 0x2000, 0x60);
        let mut ram = ram(16);
        ram.write_bytes(0x20_0000, &[0xEE; 0x3000]).unwrap();
        let boot = load_multiboot(&mut ram, &image, "k", &[(vec![1, 2, 3], "mod a b".into())]).unwrap();
        assert_eq!(boot.format, KernelFormat::AoutKludge);
        assert_eq!(boot.entry, 0x20_0060);
        assert_eq!(boot.header.offset, 0x40);
        let k = boot.header.aout.unwrap();
        assert_eq!((k.header_addr, k.load_addr), (0x20_0040, 0x20_0000));
        let len = image.len();
        assert!(read_vec(&ram, 0x20_0000, len) == image);
        assert!(read_vec(&ram, 0x20_0000 + len as u64, 0x2000).iter().all(|&b| b == 0));
        assert_eq!(rd::<1>(&ram, 0x20_2000 + len as u64)[0], 0xEE, "nothing past bss_end_addr");
        assert_eq!((boot.kernel_start, boot.kernel_end), (0x20_0000, 0x20_2000 + len as u64));
        assert_eq!(boot.modules, vec![(0x20_3000, 0x20_3003)]);
        let mods = u64::from(info(&ram, 24));
        assert_eq!(cstr(&ram, rd32(&ram, mods + 8).into()), "mod a b");
    }

    #[test]
    fn aout_kludge_load_end_zero_means_rest_of_file_and_bss_zero_means_none() {
        let code = text(100, 1);
        let mut image =
            mb_header(FLAG_AOUT_KLUDGE, [0x10_0000, 0x10_0000, 0, 0, 0x10_0020], [0; 4])[..32].to_vec();
        image.extend_from_slice(&code);
        let boot = load_multiboot(&mut ram(16), &image, "", &[]).unwrap();
        assert_eq!(boot.kernel_end, 0x10_0000 + 132);
    }

    #[test]
    fn aout_kludge_takes_precedence_over_elf() {
        // An ELF64 file with the address fields set loads by the kludge (as in GRUB and QEMU).
        let mut elf = Elf::new(0, vec![load_ph(0x10_0000, text(64, 0), 64)]).build();
        elf[4] = ELFCLASS64;
        let h = 52 + 32;
        let hdr =
            mb_header(FLAG_AOUT_KLUDGE, [0x10_0000 + h as u32, 0x10_0000, 0x10_1000, 0, 0x10_0000], [0; 4]);
        elf[h..h + 48].copy_from_slice(&hdr);
        let boot = load_multiboot(&mut ram(16), &elf, "", &[]).unwrap();
        assert_eq!(boot.format, KernelFormat::AoutKludge);
        assert_eq!((boot.kernel_start, boot.kernel_end), (0x10_0000, 0x10_1000));
    }

    #[test]
    fn video_mode_request_is_accepted_and_ignored() {
        let (mut elf, _, _) = two_segment_kernel();
        elf.mb_flags |= FLAG_VIDEO_MODE;
        let mut ram = ram(16);
        let boot = load_multiboot(&mut ram, &elf.build(), "", &[]).unwrap();
        assert_eq!(
            boot.header.video,
            Some(VideoModeRequest { mode_type: 1, width: 80, height: 25, depth: 0 })
        );
        assert_eq!(info(&ram, 0) & (3 << 11), 0, "no VBE / framebuffer info");
    }

    #[test]
    fn header_search_window_and_alignment() {
        let hdr = mb_header(FLAG_AOUT_KLUDGE, [0; 5], [0; 4]);
        let at = |off: usize| {
            let mut f = vec![0u8; 9000];
            f[off..off + 12].copy_from_slice(&hdr[..12]);
            f
        };
        assert!(is_multiboot(&at(0)));
        assert!(is_multiboot(&at(8180)), "12 bytes end exactly at 8192");
        assert!(!is_multiboot(&at(8184)), "header crosses 8192");
        assert!(!is_multiboot(&at(8192)));
        assert!(!is_multiboot(&at(2)), "unaligned");
        assert!(matches!(MultibootHeader::find(&at(2)), Err(MultibootError::NoHeader)));
        assert!(!is_multiboot(&[]));
        assert!(!is_multiboot(&hdr[..11]));
        assert!(is_multiboot(&hdr[..12]));
        // A bad candidate before a good one is skipped.
        let mut f = at(64);
        f[8..12].copy_from_slice(&HEADER_MAGIC.to_le_bytes());
        assert_eq!(MultibootHeader::find(&f).unwrap().offset, 64);
    }

    #[test]
    fn error_no_header() {
        let mut elf = two_segment_kernel().0.build();
        elf[116..120].fill(0);
        let err = load_multiboot(&mut ram(16), &elf, "", &[]).unwrap_err();
        assert!(matches!(err, MultibootError::NoHeader), "{err}");
        assert!(err.to_string().starts_with("not a Multiboot kernel"), "{err}");
        assert!(!is_multiboot(&elf));
    }

    #[test]
    fn error_bad_checksum() {
        let mut elf = two_segment_kernel().0.build();
        elf[124] ^= 1;
        assert!(!is_multiboot(&elf));
        let err = load_multiboot(&mut ram(16), &elf, "", &[]).unwrap_err();
        assert!(
            matches!(err, MultibootError::BadChecksum { offset: 116, flags: 3, sum, .. } if sum != 0),
            "{err}"
        );
        assert!(err.to_string().contains("bad checksum"), "{err}");
    }

    #[test]
    fn error_elf64() {
        let mut elf = two_segment_kernel().0;
        elf.class = ELFCLASS64;
        elf.machine = 62;
        let err = load_multiboot(&mut ram(16), &elf.build(), "", &[]).unwrap_err();
        assert!(matches!(err, MultibootError::NotElf32));
        assert!(err.to_string().starts_with("not a 32-bit Multiboot kernel"), "{err}");
    }

    #[test]
    fn error_unsupported_required_flags() {
        for bit in 3..16 {
            let mut elf = two_segment_kernel().0;
            elf.mb_flags |= 1 << bit;
            let err = load_multiboot(&mut ram(16), &elf.build(), "", &[]).unwrap_err();
            assert!(
                matches!(err, MultibootError::UnsupportedFlags { unsupported, .. } if unsupported == 1 << bit),
                "{err}"
            );
        }
        // Optional bits 17–31 are ignored.
        let mut elf = two_segment_kernel().0;
        elf.mb_flags |= 0xFFFE_0000;
        load_multiboot(&mut ram(16), &elf.build(), "", &[]).unwrap();
    }

    #[test]
    fn error_not_elf_without_kludge() {
        let mut f = mb_header(FLAG_PAGE_ALIGN, [0; 5], [0; 4]);
        f.extend_from_slice(&[0x90; 100]);
        let err = load_multiboot(&mut ram(16), &f, "", &[]).unwrap_err();
        assert!(matches!(err, MultibootError::UnknownFormat), "{err}");
    }

    #[test]
    fn error_bad_elf_headers() {
        let (elf, _, _) = two_segment_kernel();
        let cases: Vec<(Elf, &str)> = vec![
            (Elf { machine: 40, ..elf.clone() }, "e_machine"),
            (Elf { e_type: 1, ..elf.clone() }, "e_type"),
            (Elf { phs: vec![], ..elf.clone() }, "no program headers"),
            (Elf { phs: vec![load_ph(0x10_0000, text(32, 0), 16)], ..elf.clone() }, "p_filesz"),
            (Elf { phs: vec![load_ph(0xFFFF_F000, vec![], 0x2000)], ..elf.clone() }, "4 GiB"),
        ];
        for (e, what) in cases {
            let err = load_multiboot(&mut ram(16), &e.build(), "", &[]).unwrap_err();
            assert!(matches!(err, MultibootError::BadElf(ref m) if m.contains(what)), "{what}: {err}");
        }
        let mut note = load_ph(0x10_0000, vec![1], 1);
        note.p_type = 4;
        let err = load_multiboot(&mut ram(16), &Elf { phs: vec![note], ..elf.clone() }.build(), "", &[])
            .unwrap_err();
        assert!(matches!(err, MultibootError::BadElf(ref m) if m.contains("PT_LOAD")), "{err}");
        let mut big_endian = elf.build();
        big_endian[5] = 2;
        let err = load_multiboot(&mut ram(16), &big_endian, "", &[]).unwrap_err();
        assert!(matches!(err, MultibootError::BadElf(ref m) if m.contains("little-endian")), "{err}");
    }

    #[test]
    fn error_truncated_elf() {
        let image = two_segment_kernel().0.build();
        // The first segment's bytes are at 0x1000..0x2234, the second's at 0x3000..0x3100.
        let err = load_multiboot(&mut ram(16), &image[..0x3080], "", &[]).unwrap_err();
        assert!(
            matches!(err, MultibootError::Truncated { what: "ELF segment", need: 0x3100, have: 0x3080 }),
            "{err}"
        );
        let err = load_multiboot(&mut ram(16), &image[..0xA0], "", &[]).unwrap_err();
        assert!(matches!(err, MultibootError::Truncated { what: "ELF segment", need: 0x2234, .. }), "{err}");
        // Program headers past the end of the file.
        let mut bad = image.clone();
        bad[28..32].copy_from_slice(&0x3100u32.to_le_bytes()); // e_phoff
        let err = load_multiboot(&mut ram(16), &bad, "", &[]).unwrap_err();
        assert!(
            matches!(err, MultibootError::Truncated { what: "ELF program headers", need: 0x3140, .. }),
            "{err}"
        );
        let err = load_multiboot(&mut ram(16), &image[..0x70], "", &[]).unwrap_err();
        assert!(matches!(err, MultibootError::NoHeader), "{err}");
    }

    #[test]
    fn error_segment_outside_ram() {
        let cases = [
            (0x0F0_0000u32, 0x20_0000u32), // runs past the end of 16 MiB
            (0x100_0000, 0x10),            // starts at the end of RAM
            (0x9F000, 0x1000),             // into the reserved EBDA
            (0xA0000, 0x100),              // VGA hole
            (0xE0000, 0x100),              // BIOS / ACPI area
            (0xFFF00, 0x200),              // straddles 1 MiB
        ];
        for (addr, len) in cases {
            let elf = Elf::new(addr, vec![load_ph(addr, vec![0xC3], len)]);
            let err = load_multiboot(&mut ram(16), &elf.build(), "", &[]).unwrap_err();
            assert!(
                matches!(err, MultibootError::SegmentOutsideRam { start, end, ram_size: 0x100_0000 }
                    if start == u64::from(addr) && end == u64::from(addr) + u64::from(len)),
                "{addr:#x}: {err}"
            );
            assert!(err.to_string().contains("outside usable RAM"), "{err}");
        }
        // Low memory away from the loader's area is fine.
        let elf = Elf::new(0x1000, vec![load_ph(0x1000, vec![0xC3], 0x1000)]);
        load_multiboot(&mut ram(16), &elf.build(), "", &[]).unwrap();
        let elf = Elf::new(0x2_0000, vec![load_ph(0x2_0000, vec![0xC3], 0x7_FC00)]);
        load_multiboot(&mut ram(16), &elf.build(), "", &[]).unwrap();
    }

    #[test]
    fn error_overlaps_loader_area_or_other_segment() {
        for addr in [0x8000u32, 0x9000, 0x7800] {
            let elf = Elf::new(addr + 0x800, vec![load_ph(addr, vec![0xC3], 0x1000)]);
            let err = load_multiboot(&mut ram(16), &elf.build(), "", &[]).unwrap_err();
            assert!(
                matches!(err, MultibootError::OverlapsBootInfo { area_start: 0x8000, .. }),
                "{addr:#x}: {err}"
            );
        }
        let elf = Elf::new(
            0x10_0000,
            vec![load_ph(0x10_1000, vec![1], 0x100), load_ph(0x10_0000, vec![2], 0x1001)],
        );
        let err = load_multiboot(&mut ram(16), &elf.build(), "", &[]).unwrap_err();
        assert!(
            matches!(
                err,
                MultibootError::SegmentsOverlap {
                    a_start: 0x10_0000,
                    a_end: 0x10_1001,
                    b_start: 0x10_1000,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn error_entry_outside_image() {
        let elf = Elf::new(0x20_0000, vec![load_ph(0x10_0000, vec![0xC3], 0x1000)]);
        let err = load_multiboot(&mut ram(16), &elf.build(), "", &[]).unwrap_err();
        assert!(matches!(err, MultibootError::EntryOutsideImage { entry: 0x20_0000 }), "{err}");
        let image = aout(0x10_0000, 0, &[0xC3; 16], 0, 0x1000);
        let err = load_multiboot(&mut ram(16), &image, "", &[]).unwrap_err();
        assert!(matches!(err, MultibootError::EntryOutsideImage { entry: 0x10_1000 }), "{err}");
    }

    #[test]
    fn error_bad_aout_fields() {
        let kludge = |fields: [u32; 5], tail: usize| {
            let mut f = mb_header(FLAG_AOUT_KLUDGE, fields, [0; 4])[..32].to_vec();
            f.extend(std::iter::repeat_n(0x90, tail));
            f
        };
        let cases = [
            ([0x10_0000, 0x10_0004, 0, 0, 0x10_0004], "below load_addr"), // header_addr < load_addr
            ([0x10_0010, 0x10_0000, 0, 0, 0x10_0010], "only 0x0 bytes into the file"),
            ([0x10_0000, 0x10_0000, 0xF_0000, 0, 0x10_0000], "load_end_addr"),
            ([0x10_0000, 0x10_0000, 0x10_0040, 0x10_0020, 0x10_0000], "bss_end_addr"),
            ([0xFFFF_FF00, 0xFFFF_FF00, 0, 0, 0xFFFF_FF00], "4 GiB"),
        ];
        for (fields, what) in cases {
            let err = load_multiboot(&mut ram(16), &kludge(fields, 0x100), "", &[]).unwrap_err();
            assert!(matches!(err, MultibootError::BadAoutKludge(ref m) if m.contains(what)), "{what}: {err}");
        }
        // load_end_addr beyond the file.
        let err = load_multiboot(
            &mut ram(16),
            &kludge([0x10_0000, 0x10_0000, 0x10_1000, 0, 0x10_0000], 0x100),
            "",
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, MultibootError::Truncated { need: 0x1000, have: 0x120, .. }), "{err}");
        // Address fields cut off by the end of the file.
        let f = kludge([0x10_0000; 5], 0);
        let err = load_multiboot(&mut ram(16), &f[..20], "", &[]).unwrap_err();
        assert!(
            matches!(err, MultibootError::Truncated { what: "Multiboot header address fields", .. }),
            "{err}"
        );
    }

    #[test]
    fn error_modules_do_not_fit() {
        let (elf, _, _) = two_segment_kernel();
        let mut ram = ram(16);
        ram.write_bytes(INFO_ADDR, &[0x5A; 16]).unwrap();
        // Kernel ends at 0x105000; 16 MiB − that is 0xEFB000 bytes.
        let fits = vec![0u8; 0xEFB000];
        load_multiboot(&mut ram, &elf.build(), "", &[(fits, "big".into())]).unwrap();
        let mut ram = GuestRam::new(16 * MIB).unwrap();
        ram.write_bytes(INFO_ADDR, &[0x5A; 16]).unwrap();
        let modules = vec![(vec![1u8; 10], "a".to_string()), (vec![0u8; 0xEFA001], "b".to_string())];
        let err = load_multiboot(&mut ram, &elf.build(), "", &modules).unwrap_err();
        assert!(
            matches!(
                err,
                MultibootError::ModuleDoesNotFit {
                    index: 1,
                    size: 0xEFA001,
                    start: 0x10_6000,
                    end: 0x100_0001,
                    limit: 0x100_0000
                }
            ),
            "{err}"
        );
        // Nothing was written.
        assert_eq!(rd::<16>(&ram, INFO_ADDR), [0x5A; 16]);
        assert_eq!(rd::<1>(&ram, 0x10_0000)[0], 0);
    }

    #[test]
    fn error_nul_in_command_lines() {
        let image = two_segment_kernel().0.build();
        let err = load_multiboot(&mut ram(16), &image, "a\0b", &[]).unwrap_err();
        assert!(matches!(err, MultibootError::CmdlineNul));
        let modules = vec![(vec![1], "ok".to_string()), (vec![2], "x\0".to_string())];
        let err = load_multiboot(&mut ram(16), &image, "", &modules).unwrap_err();
        assert!(matches!(err, MultibootError::ModuleCmdlineNul { index: 1 }));
    }

    #[test]
    fn error_boot_info_too_large() {
        let image = two_segment_kernel().0.build();
        let max = (BOOT_AREA_END - INFO_ADDR) as usize;
        let err = load_multiboot(&mut ram(16), &image, &"x".repeat(max), &[]).unwrap_err();
        assert!(matches!(err, MultibootError::BootInfoTooLarge { .. }), "{err}");
        // A long but reasonable command line fits.
        let long = "y".repeat(64 * 1024);
        let mut ram = ram(16);
        load_multiboot(&mut ram, &image, &long, &[]).unwrap();
        assert_eq!(cstr(&ram, info(&ram, 16).into()), long);
    }

    #[test]
    fn no_panic_on_any_truncation_or_corruption() {
        let (elf, _, _) = two_segment_kernel();
        let image = elf.build();
        let mut ram = ram(16);
        for len in (0..image.len()).step_by(7) {
            let _ = load_multiboot(&mut ram, &image[..len], "c", &[(vec![1], "m".into())]);
        }
        for off in 0..200 {
            for v in [0u8, 1, 0x7F, 0x80, 0xFF] {
                let mut bad = image.clone();
                bad[off] = v;
                let _ = load_multiboot(&mut ram, &bad, "c", &[(vec![1], "m".into())]);
            }
        }
        let k = aout(0x10_0000, 8, &[0xC3; 64], 16, 40);
        for off in 8..40 {
            for v in [0u8, 0x7F, 0xFF] {
                let mut bad = k.clone();
                bad[off] = v;
                let _ = load_multiboot(&mut ram, &bad, "", &[]);
                // Keep the checksum valid so the address fields get parsed.
                let flags = u32::from_le_bytes(bad[12..16].try_into().unwrap());
                bad[16..20]
                    .copy_from_slice(&0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)).to_le_bytes());
                let _ = load_multiboot(&mut ram, &bad, "", &[]);
            }
        }
    }

    /// Source of a tiny a.out-kludge Multiboot kernel for `nasm -f bin`: checks EAX, prints the
    /// command line to the debug console (port 0xE9) and exits through isa-debug-exit at 0xF4
    /// with mods_count (status (n << 1) | 1), or with 0x7F if EAX was wrong.
    const NASM_KERNEL: &str = r#"
bits 32
org 0x100000
MB_MAGIC equ 0x1BADB002
MB_FLAGS equ 0x00010003
header:
    dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
    dd header, header, load_end, bss_end, start
start:
    mov esp, stack_top
    cmp eax, 0x2BADB002
    jne fail
    mov esi, [ebx + 16]
.print:
    lodsb
    test al, al
    jz .done
    out 0xE9, al
    jmp .print
.done:
    mov eax, [ebx + 20]
    out 0xF4, eax
fail:
    mov eax, 0x7F
    out 0xF4, eax
.hang:
    cli
    hlt
    jmp .hang
load_end:
section .bss
alignb 16
stack: resb 4096
stack_top:
bss_end:
"#;

    /// Assemble `src` with `nasm -f bin`; `None` if nasm is not installed.
    fn nasm(src: &str) -> Option<Vec<u8>> {
        use std::process::Command;
        if Command::new("nasm").arg("-v").output().is_err() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "heron-multiboot-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (asm, bin) = (dir.join("k.asm"), dir.join("k.bin"));
        std::fs::write(&asm, src).unwrap();
        let out = Command::new("nasm").args(["-f", "bin", "-o"]).arg(&bin).arg(&asm).output().unwrap();
        assert!(out.status.success(), "nasm failed: {}", String::from_utf8_lossy(&out.stderr));
        let image = std::fs::read(&bin).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        Some(image)
    }

    #[test]
    fn nasm_assembled_kernel_loads() {
        let Some(image) = nasm(NASM_KERNEL) else {
            eprintln!("skipping: nasm not installed");
            return;
        };
        assert!(is_multiboot(&image));
        let mut ram = ram(32);
        ram.write_bytes(0x10_0000 + image.len() as u64, &[0xFF; 0x2000]).unwrap();
        let boot =
            load_multiboot(&mut ram, &image, "hello", &[(b"abc".to_vec(), "mod.bin x".into())]).unwrap();
        assert_eq!(boot.format, KernelFormat::AoutKludge);
        assert_eq!(boot.entry, 0x10_0020, "start follows the 32-byte header");
        assert_eq!(boot.kernel_start, 0x10_0000);
        assert!(read_vec(&ram, 0x10_0000, image.len()) == image);
        // bss: 4 KiB stack after load_end aligned to 16.
        let bss_end = u64::from(boot.header.aout.unwrap().bss_end_addr);
        assert_eq!(boot.kernel_end, bss_end);
        assert!(bss_end >= 0x10_0000 + image.len() as u64 + 4096);
        let bss =
            read_vec(&ram, 0x10_0000 + image.len() as u64, (bss_end - 0x10_0000) as usize - image.len());
        assert!(bss.iter().all(|&b| b == 0));
        assert_eq!(boot.modules, vec![(0x10_2000, 0x10_2003)]);
        // First instruction: mov esp, imm32 (BC).
        assert_eq!(rd::<1>(&ram, 0x10_0020)[0], 0xBC);
    }
}

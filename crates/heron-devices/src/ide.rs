//! IDE (ATA/ATAPI) controller as in the Intel 82371SB PIIX3: two channels (primary and
//! secondary), each with a master and a slave drive, legacy ("compatibility mode") command and
//! control blocks, and the Bus Master IDE function (PRD-table DMA).
//!
//! References: ATA/ATAPI-7 Vol. 1 (T13/1532D): the feature set definitions (48-bit Address,
//! PACKET, Power Management), the command descriptions (IDENTIFY DEVICE and its data table,
//! READ/WRITE SECTOR(S), READ/WRITE MULTIPLE, READ/WRITE DMA, their EXT forms, SET FEATURES, …)
//! and the register descriptions (Data, Error/Features, Sector Count, LBA Low/Mid/High, Device,
//! Status/Command, Alternate Status/Device Control); Vol. 2: the device reset protocols and the
//! PIO data-in, PIO data-out, non-data, DMA and PACKET protocols; Intel 82371FB/82371SB
//! (PIIX/PIIX3) datasheet: Bus Master IDE I/O registers (BMICx, BMISx, BMIDTPx) and IDE bus
//! master operation (physical region descriptors, ending conditions). References below name
//! the command, register or protocol of those documents.
//!
//! # Wiring (what the machine does)
//!
//! [`IdeController`] implements [`Device`]; the machine passes these `offset`s:
//!
//! | guest ports | `offset` passed | registers |
//! |---|---|---|
//! | 0x1F0–0x1F7 (primary command block) | the port number itself (0x1F0–0x1F7) | Data, Error/Features, Sector Count, LBA Low/Mid/High, Device, Status/Command |
//! | 0x3F6 (primary control block) | 0x3F6 | Alternate Status / Device Control |
//! | 0x170–0x177 (secondary command block) | 0x170–0x177 | as primary |
//! | 0x376 (secondary control block) | 0x376 | as primary |
//! | BMIBA + 0 … BMIBA + 15 (Bus Master IDE) | [`BUS_MASTER_OFFSET`] + (port − BMIBA) | BMICP (0), BMISP (2), BMIDTPP (4–7), BMICS (8), BMISS (0xA), BMIDTPS (0xC–0xF) |
//!
//! BMIBA is the PIIX3 IDE function's BAR4 ([`crate::piix3::Piix3Ide`]); the legacy ranges are
//! decoded when that function's I/O Space enable and the channel's IDETIM decode enable bit are
//! set, and the Bus Master range when I/O Space is enabled and BMIBA is nonzero (see
//! [`crate::piix3::IdeDecode`]). [`IdeController::bus_master_read`] / `_write` take the bus master
//! offset (0–15) directly as an alternative. 0x3F7/0x377 are not decoded here (0x3F7 belongs to
//! the floppy controller).
//!
//! Interrupts: [`IdeController::irq14_level`] (primary) and [`IdeController::irq15_level`]
//! (secondary) are level outputs to the 8259A; sample them after every access and tick.
//! Bus mastering: give the controller a [`DmaMemory`] handle with
//! [`IdeController::set_dma_memory`] and mirror the IDE function's PCI Command bit 2 (Bus Master
//! Enable) with [`IdeController::set_bus_master_enabled`] whenever configuration space changes;
//! no DMA happens while it is clear. Timers: include [`Device::next_deadline`] in the machine's
//! deadline and call [`Device::tick`] when it passes.
//!
//! # Timing
//!
//! Commands complete after a small fixed virtual-time delay ([`DEFAULT_COMMAND_DELAY`], 2 µs;
//! [`IdeController::set_command_delay`]): writing the Command register sets BSY and schedules the
//! command; at the deadline the device executes it (DRQ + INTRQ for data-in, DRQ for data-out,
//! INTRQ for non-data). Each later step (next PIO block, commit of a written block, execution of
//! a received command packet, a DMA transfer once both the command and the bus master Start bit
//! are in place) again shows BSY for one delay. This is deterministic (virtual time only) and
//! lets drivers observe BSY before the interrupt as on hardware; Linux's ata_piix (interrupt
//! driven) and SeaBIOS (nIEN set, polling BSY/DRQ with ≥ 400 ns pauses) both handle it. A delay
//! of 0 completes every step during the access itself. Software reset (SRST 1 → 0) and ATAPI
//! DEVICE RESET complete immediately. A whole DMA command is transferred at one deadline.
//!
//! # Modelling choices
//!
//! * Both drives of a channel latch every Command Block register write (each keeps its own copy,
//!   so each can report its own signature); reads come from the selected drive. With the
//!   selected drive absent but the other present, Error and (Alternate) Status read 0 and the
//!   other registers read the latched values; a channel with no drives reads 0xFF everywhere
//!   (floating bus). Commands to an absent drive are ignored. Writes to the Command Block
//!   (except Command) while the selected drive has BSY or DRQ set are ignored; so are
//!   commands, except DEVICE RESET to an ATAPI drive.
//! * Writing any Command Block register clears the Device Control HOB bit (ATA/ATAPI-7 Vol. 1
//!   Device Control register); each of Features, Sector Count and LBA Low/Mid/High is a two-deep FIFO (the previous
//!   value is the "HOB" byte read back with HOB = 1).
//! * The data register moves as many bytes as the access is wide (1, 2 or 4); data reads with
//!   DRQ clear return all ones and data writes are dropped. Other registers are 8 bits wide; a
//!   wider access is split into byte accesses at consecutive ports.
//! * The Bus Master Interrupt bit is set whenever a drive asserts INTRQ with nIEN clear (the
//!   PIIX3 latches the rising edge of the IRQ line), for PIO and DMA commands alike — libata
//!   relies on it to recognise ATAPI status interrupts. The DMA direction is the command's; the
//!   BMICx Read/Write Control bit is stored but not checked.
//! * Ending conditions of a DMA transfer follow the PIIX3 datasheet table: PRD table exhausted
//!   exactly → Active 0, Interrupt 1; PRD table larger than the transfer → Active 1,
//!   Interrupt 1; PRD table smaller (EOT before the data ended) → Active 0, Interrupt 0 with the
//!   drive still waiting in DRQ (a new Start continues from where it stopped); a PRD or data
//!   address outside RAM → Error 1, Active 0, Interrupt 1 and the command fails with ERR/ABRT.
//!   At most [`MAX_PRD_ENTRIES`] descriptors are read per Start.
//! * Writes are write-through to the backend; FLUSH CACHE calls [`BlockBackend::flush`]. The
//!   write cache enable of SET FEATURES only changes IDENTIFY word 85.

use heron_block::BlockBackend;

use crate::atapi::{self, Atapi, PacketData, Sense};
use crate::{Device, DmaMemory, Nanos};

/// First port of the primary channel's Command Block registers (PC/AT compatibility mode).
pub const PRIMARY_COMMAND_BASE: u16 = 0x1F0;
/// Primary channel's Control Block port: Alternate Status (read) / Device Control (write).
pub const PRIMARY_CONTROL_PORT: u16 = 0x3F6;
/// First port of the secondary channel's Command Block registers.
pub const SECONDARY_COMMAND_BASE: u16 = 0x170;
/// Secondary channel's Control Block port.
pub const SECONDARY_CONTROL_PORT: u16 = 0x376;
/// ISA IRQ of the primary channel in compatibility mode.
pub const PRIMARY_IRQ: u8 = 14;
/// ISA IRQ of the secondary channel in compatibility mode.
pub const SECONDARY_IRQ: u8 = 15;
/// `offset` base under which [`Device::read`]/[`Device::write`] reach the 16 Bus Master IDE
/// registers: offset `BUS_MASTER_OFFSET + n` is BMIBA + n (n = 0–15).
pub const BUS_MASTER_OFFSET: u64 = 0x1_0000;
/// Size of the Bus Master IDE register block in bytes (PIIX3 datasheet, Bus Master IDE I/O registers).
pub const BUS_MASTER_SIZE: u64 = 16;
/// Offset of the secondary channel's bus master registers within the block.
pub const BUS_MASTER_SECONDARY: u64 = 8;
/// ATA logical sector size in bytes.
pub const SECTOR_SIZE: u64 = 512;
/// Largest READ/WRITE MULTIPLE block, in sectors (IDENTIFY word 47); also the power-on setting.
pub const MAX_MULTIPLE: u8 = 16;
/// Default virtual-time delay of each command step, in nanoseconds (see the module docs).
pub const DEFAULT_COMMAND_DELAY: Nanos = 2_000;
/// At most this many physical region descriptors are read per bus master start (a 64 KiB table).
pub const MAX_PRD_ENTRIES: u32 = 8192;
/// Model string of IDENTIFY DEVICE words 27–46.
pub const MODEL: &str = "HERON HARDDISK";
/// Firmware revision of IDENTIFY (PACKET) DEVICE words 23–26.
pub const FIRMWARE_REVISION: &str = "1.0";

/// Status register bit 7: BSY, the device is busy (ATA/ATAPI-7 Vol. 1, Status register).
pub const STATUS_BSY: u8 = 0x80;
/// Status register bit 6: DRDY, device ready.
pub const STATUS_DRDY: u8 = 0x40;
/// Status register bit 5: DF, device fault (never set by this model).
pub const STATUS_DF: u8 = 0x20;
/// Status register bit 4: DSC, device seek complete (SERV for packet devices).
pub const STATUS_DSC: u8 = 0x10;
/// Status register bit 3: DRQ, data request.
pub const STATUS_DRQ: u8 = 0x08;
/// Status register bit 0: ERR, the Error register holds the error.
pub const STATUS_ERR: u8 = 0x01;

/// Error register bit 6: UNC, uncorrectable data error (ATA/ATAPI-7 Vol. 1, Error register).
pub const ERROR_UNC: u8 = 0x40;
/// Error register bit 4: IDNF, address not found / out of range.
pub const ERROR_IDNF: u8 = 0x10;
/// Error register bit 2: ABRT, command aborted.
pub const ERROR_ABRT: u8 = 0x04;

/// Device Control bit 1: nIEN, INTRQ disabled (ATA/ATAPI-7 Vol. 1, Device Control register).
pub const DEVCTL_NIEN: u8 = 0x02;
/// Device Control bit 2: SRST, software reset.
pub const DEVCTL_SRST: u8 = 0x04;
/// Device Control bit 7: HOB, read the previous ("high order") register contents.
pub const DEVCTL_HOB: u8 = 0x80;

/// Device register bit 4: DEV, selects device 1 (ATA/ATAPI-7 Vol. 1, Device register).
pub const DEVICE_DEV: u8 = 0x10;
/// Device register bit 6: LBA addressing (clear = CHS).
pub const DEVICE_LBA: u8 = 0x40;

/// BMICx bit 0: Start/Stop Bus Master (SSBM) (PIIX3 datasheet, BMICx register).
pub const BMIC_START: u8 = 0x01;
/// BMICx bit 3: Read/Write Control (RWCON): 1 = bus master writes memory (device-to-memory).
pub const BMIC_RWCON: u8 = 0x08;
/// BMISx bit 0: Bus Master IDE Active (read-only) (PIIX3 datasheet, BMISx register).
pub const BMIS_ACTIVE: u8 = 0x01;
/// BMISx bit 1: IDE DMA Error (write 1 to clear).
pub const BMIS_ERROR: u8 = 0x02;
/// BMISx bit 2: IDE Interrupt Status (write 1 to clear).
pub const BMIS_INTERRUPT: u8 = 0x04;
/// BMISx bits 6:5: drive 1 / drive 0 DMA capable (read/write scratch for software).
pub const BMIS_DMA_CAPABLE: u8 = 0x60;

// Command codes (ATA/ATAPI-7 Vol. 1, command descriptions; command code summary).
const CMD_NOP: u8 = 0x00;
const CMD_DEVICE_RESET: u8 = 0x08;
const CMD_READ_SECTORS: u8 = 0x20;
const CMD_READ_SECTORS_NORETRY: u8 = 0x21;
const CMD_READ_SECTORS_EXT: u8 = 0x24;
const CMD_READ_DMA_EXT: u8 = 0x25;
const CMD_READ_MULTIPLE_EXT: u8 = 0x29;
const CMD_WRITE_SECTORS: u8 = 0x30;
const CMD_WRITE_SECTORS_NORETRY: u8 = 0x31;
const CMD_WRITE_SECTORS_EXT: u8 = 0x34;
const CMD_WRITE_DMA_EXT: u8 = 0x35;
const CMD_WRITE_MULTIPLE_EXT: u8 = 0x39;
const CMD_READ_VERIFY_SECTORS: u8 = 0x40;
const CMD_READ_VERIFY_SECTORS_NORETRY: u8 = 0x41;
const CMD_READ_VERIFY_SECTORS_EXT: u8 = 0x42;
const CMD_SEEK: u8 = 0x70;
const CMD_EXECUTE_DEVICE_DIAGNOSTIC: u8 = 0x90;
const CMD_INITIALIZE_DEVICE_PARAMETERS: u8 = 0x91;
const CMD_CHECK_POWER_MODE_ALT: u8 = 0x98;
const CMD_PACKET: u8 = 0xA0;
const CMD_IDENTIFY_PACKET_DEVICE: u8 = 0xA1;
const CMD_READ_MULTIPLE: u8 = 0xC4;
const CMD_WRITE_MULTIPLE: u8 = 0xC5;
const CMD_SET_MULTIPLE_MODE: u8 = 0xC6;
const CMD_READ_DMA: u8 = 0xC8;
const CMD_READ_DMA_NORETRY: u8 = 0xC9;
const CMD_WRITE_DMA: u8 = 0xCA;
const CMD_WRITE_DMA_NORETRY: u8 = 0xCB;
const CMD_STANDBY_IMMEDIATE: u8 = 0xE0;
const CMD_IDLE_IMMEDIATE: u8 = 0xE1;
const CMD_STANDBY: u8 = 0xE2;
const CMD_IDLE: u8 = 0xE3;
const CMD_CHECK_POWER_MODE: u8 = 0xE5;
const CMD_SLEEP: u8 = 0xE6;
const CMD_FLUSH_CACHE: u8 = 0xE7;
const CMD_FLUSH_CACHE_EXT: u8 = 0xEA;
const CMD_IDENTIFY_DEVICE: u8 = 0xEC;
const CMD_SET_FEATURES: u8 = 0xEF;

/// One of the two IDE channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdeChannel {
    /// Primary channel: ports 0x1F0–0x1F7 / 0x3F6, IRQ 14, bus master registers BMIBA + 0.
    Primary,
    /// Secondary channel: ports 0x170–0x177 / 0x376, IRQ 15, bus master registers BMIBA + 8.
    Secondary,
}

impl IdeChannel {
    /// 0 for primary, 1 for secondary.
    pub fn index(self) -> usize {
        match self {
            IdeChannel::Primary => 0,
            IdeChannel::Secondary => 1,
        }
    }

    /// The compatibility-mode ISA IRQ (14 or 15).
    pub fn irq(self) -> u8 {
        [PRIMARY_IRQ, SECONDARY_IRQ][self.index()]
    }

    /// First Command Block port (0x1F0 or 0x170).
    pub fn command_base(self) -> u16 {
        [PRIMARY_COMMAND_BASE, SECONDARY_COMMAND_BASE][self.index()]
    }

    /// Control Block port (0x3F6 or 0x376).
    pub fn control_port(self) -> u16 {
        [PRIMARY_CONTROL_PORT, SECONDARY_CONTROL_PORT][self.index()]
    }
}

/// Master (device 0) or slave (device 1) on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdeDrive {
    /// Device 0 (DEV = 0).
    Master,
    /// Device 1 (DEV = 1).
    Slave,
}

impl IdeDrive {
    /// 0 for master, 1 for slave.
    pub fn index(self) -> usize {
        match self {
            IdeDrive::Master => 0,
            IdeDrive::Slave => 1,
        }
    }
}

/// What is attached at a drive position.
pub enum IdeMedia {
    /// An ATA hard disk over `backend` (512-byte sectors; the size is rounded down to whole
    /// sectors; a read-only backend rejects writes with ABRT).
    HardDisk(Box<dyn BlockBackend>),
    /// An ATAPI CD-ROM/DVD-ROM drive (2048-byte sectors, read-only) with a medium, or empty
    /// (`None`: "no medium", NOT READY 02/3A).
    CdRom(Option<Box<dyn BlockBackend>>),
}

impl std::fmt::Debug for IdeMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdeMedia::HardDisk(b) => write!(f, "HardDisk({} bytes)", b.size()),
            IdeMedia::CdRom(Some(b)) => write!(f, "CdRom({} bytes)", b.size()),
            IdeMedia::CdRom(None) => write!(f, "CdRom(empty)"),
        }
    }
}

/// Errors of the controller's host-side API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdeError {
    /// The drive position does not hold an ATAPI CD-ROM drive.
    #[error("no CD-ROM drive at that position")]
    NotCdRom,
}

/// Logical CHS geometry (IDENTIFY DEVICE words 1/3/6 default, 54–56 current).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChsGeometry {
    /// Number of cylinders (1–65535; at most 16383 in the default geometry).
    pub cylinders: u16,
    /// Number of heads (1–16).
    pub heads: u8,
    /// Sectors per track (1–63 in the default geometry; up to 255 after INITIALIZE DEVICE
    /// PARAMETERS).
    pub sectors: u8,
}

impl ChsGeometry {
    /// The conventional default translation for a disk of `total` 512-byte sectors: 16 heads,
    /// 63 sectors per track, cylinders = total / 1008 capped at 16383 (the "16383/16/63"
    /// values ATA/ATAPI-7 Vol. 1 IDENTIFY DEVICE words 1/3/6 prescribe for large devices). Disks under 1008 sectors use 1 head and up to 63
    /// sectors per track; there is always at least one cylinder.
    pub fn for_sectors(total: u64) -> Self {
        if total >= 16 * 63 {
            ChsGeometry {
                cylinders: (total / (16 * 63)).min(16383) as u16,
                heads: 16,
                sectors: 63,
            }
        } else {
            let sectors = total.clamp(1, 63);
            ChsGeometry {
                cylinders: (total / sectors).max(1) as u16,
                heads: 1,
                sectors: sectors as u8,
            }
        }
    }

    /// Number of sectors addressable through this geometry.
    pub fn capacity(&self) -> u64 {
        self.cylinders as u64 * self.heads as u64 * self.sectors as u64
    }
}

/// Writes an ATA string into IDENTIFY words: two ASCII characters per word, the first in the
/// high byte (ATA/ATAPI-7 Vol. 1, IDENTIFY DEVICE: ATA string convention, "byte-swapped"), space padded.
pub fn put_ata_string(words: &mut [u16], s: &str) {
    let b = s.as_bytes();
    for (i, w) in words.iter_mut().enumerate() {
        let hi = b.get(2 * i).copied().unwrap_or(b' ');
        let lo = b.get(2 * i + 1).copied().unwrap_or(b' ');
        *w = (hi as u16) << 8 | lo as u16;
    }
}

/// Sets IDENTIFY word 255 (integrity word): signature 0xA5 in bits 7:0 and a checksum in bits
/// 15:8 that makes the byte sum of all 512 bytes 0 mod 256 (ATA/ATAPI-7 Vol. 1, IDENTIFY DEVICE word 255).
pub fn finish_identify(w: &mut [u16; 256]) {
    w[255] = 0x00A5;
    let sum = w.iter().fold(0u8, |s, &x| {
        s.wrapping_add(x as u8).wrapping_add((x >> 8) as u8)
    });
    w[255] |= (sum.wrapping_neg() as u16) << 8;
}

/// IDENTIFY word 93 (hardware reset result): bit 14 set, bit 13 = 80-conductor cable detected
/// (CBLID- above VIH), device 0 or 1 number determined by jumper, diagnostics passed.
fn hardware_reset_word(slave: bool) -> u16 {
    if slave {
        0x6000 | 0x0100 | 0x0200 | 0x0800
    } else {
        0x6000 | 0x0001 | 0x0002 | 0x0008
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct TaskFile {
    feature: u8,
    hob_feature: u8,
    nsector: u8,
    hob_nsector: u8,
    lbal: u8,
    hob_lbal: u8,
    lbam: u8,
    hob_lbam: u8,
    lbah: u8,
    hob_lbah: u8,
    device: u8,
}

struct Disk {
    backend: Box<dyn BlockBackend>,
    sectors: u64,
    default_geometry: ChsGeometry,
    geometry: ChsGeometry,
    multiple: u8,
    write_cache: bool,
}

enum Kind {
    Absent,
    Disk(Box<Disk>),
    Cd(Box<Atapi>),
}

/// Data of a transfer: a response buffer or a byte range of the medium.
enum Span {
    Buffer { data: Vec<u8>, pos: usize },
    Medium { offset: u64, remaining: u64 },
}

impl Span {
    fn remaining(&self) -> u64 {
        match self {
            Span::Buffer { data, pos } => (data.len() - *pos) as u64,
            Span::Medium { remaining, .. } => *remaining,
        }
    }

    /// Fills `out` with the next bytes and advances.
    fn read_into(&mut self, kind: &mut Kind, out: &mut [u8]) -> Result<(), ()> {
        match self {
            Span::Buffer { data, pos } => {
                let n = out.len().min(data.len() - *pos);
                out[..n].copy_from_slice(&data[*pos..*pos + n]);
                *pos += n;
                Ok(())
            }
            Span::Medium { offset, remaining } => {
                let r = match kind {
                    Kind::Disk(d) => d.backend.read_at(*offset, out).map_err(|_| ()),
                    Kind::Cd(a) => a.read_medium(*offset, out).map_err(|_| ()),
                    Kind::Absent => Err(()),
                };
                *offset += out.len() as u64;
                *remaining = remaining.saturating_sub(out.len() as u64);
                r
            }
        }
    }

    /// Stores `data` at the current position (disks only) and advances.
    fn write_from(&mut self, kind: &mut Kind, data: &[u8]) -> Result<(), ()> {
        match (self, kind) {
            (Span::Medium { offset, remaining }, Kind::Disk(d)) => {
                let r = d.backend.write_at(*offset, data).map_err(|_| ());
                *offset += data.len() as u64;
                *remaining = remaining.saturating_sub(data.len() as u64);
                r
            }
            _ => Err(()),
        }
    }
}

struct DmaJob {
    span: Span,
    to_device: bool,
    atapi: bool,
}

enum Phase {
    Idle,
    /// ATA PIO data-in: the buffer holds one DRQ block; `remaining` sectors follow at `next_lba`.
    PioIn {
        next_lba: u64,
        remaining: u64,
        block: u64,
    },
    /// ATA PIO data-out: the buffer receives the block for `lba`; `remaining` sectors follow.
    PioOut {
        lba: u64,
        remaining: u64,
        block: u64,
    },
    /// PACKET: receiving the 12-byte command packet.
    Packet {
        dma: bool,
        limit: u16,
    },
    /// PACKET PIO data-in: the buffer holds one DRQ block; `span` has the rest.
    AtapiIn {
        span: Span,
        limit: u16,
    },
    /// Waiting for (or in) the bus master transfer.
    Dma(DmaJob),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Command(u8),
    PioInNext,
    PioOutCommit,
    PacketExec,
    AtapiNext,
    DmaRun,
}

struct Drive {
    kind: Kind,
    tf: TaskFile,
    status: u8,
    error: u8,
    intrq: bool,
    slave: bool,
    serial: String,
    mwdma: Option<u8>,
    udma: Option<u8>,
    /// The current command uses 48-bit addressing (for error address reporting).
    ext: bool,
    buf: Vec<u8>,
    pos: usize,
    phase: Phase,
    pending: Option<(Nanos, Action)>,
}

impl Drive {
    fn new(channel: usize, slave: bool) -> Self {
        let mut d = Drive {
            kind: Kind::Absent,
            tf: TaskFile::default(),
            status: 0,
            error: 0,
            intrq: false,
            slave,
            serial: format!("HERON{:015}", channel * 2 + slave as usize + 1),
            mwdma: Some(2),
            udma: None,
            ext: false,
            buf: Vec::new(),
            pos: 0,
            phase: Phase::Idle,
            pending: None,
        };
        d.power_on();
        d
    }

    fn present(&self) -> bool {
        !matches!(self.kind, Kind::Absent)
    }

    fn is_cd(&self) -> bool {
        matches!(self.kind, Kind::Cd(_))
    }

    /// Hardware reset (power-on) state: registers cleared, defaults restored, signature.
    fn power_on(&mut self) {
        self.tf = TaskFile::default();
        self.mwdma = Some(2);
        self.udma = None;
        match &mut self.kind {
            Kind::Disk(d) => {
                d.geometry = d.default_geometry;
                d.multiple = MAX_MULTIPLE;
                d.write_cache = true;
            }
            Kind::Cd(a) => a.reset(),
            Kind::Absent => {}
        }
        self.soft_reset();
    }

    /// Software reset / EXECUTE DEVICE DIAGNOSTIC / DEVICE RESET outcome (ATA/ATAPI-7 Vol. 2,
    /// software reset protocol): transfer abandoned, signature loaded, Error = 01h (passed), status DRDY|DSC for
    /// ATA and 00h for packet devices (DRDY clear).
    fn soft_reset(&mut self) {
        self.pending = None;
        self.phase = Phase::Idle;
        self.buf = Vec::new();
        self.pos = 0;
        self.intrq = false;
        self.set_signature();
        self.error = 0x01;
        self.status = match self.kind {
            Kind::Disk(_) => STATUS_DRDY | STATUS_DSC,
            _ => 0,
        };
    }

    /// Device signature (ATA/ATAPI-7 Vol. 1, signature and persistence): Sector Count 01h, LBA Low 01h, LBA Mid/High
    /// 00h/00h for ATA, 14h/EBh for PACKET devices (FFh/FFh for an absent device); the head
    /// bits of the Device register are cleared.
    fn set_signature(&mut self) {
        let (mid, high) = match self.kind {
            Kind::Disk(_) => (0x00, 0x00),
            Kind::Cd(_) => (0x14, 0xEB),
            Kind::Absent => (0xFF, 0xFF),
        };
        self.tf.nsector = 1;
        self.tf.lbal = 1;
        self.tf.lbam = mid;
        self.tf.lbah = high;
        self.tf.device &= 0xF0;
    }

    fn schedule(&mut self, at: Nanos, action: Action) {
        self.pending = Some((at, action));
    }

    /// LBA and sector count of a read/write command (28-bit LBA, CHS or 48-bit), checked
    /// against the capacity; Err(error bits) otherwise.
    fn lba_count(&self, ext: bool) -> Result<(u64, u64), u8> {
        let Kind::Disk(disk) = &self.kind else {
            return Err(ERROR_ABRT);
        };
        let t = &self.tf;
        let (lba, count) = if ext {
            let lba = (t.hob_lbah as u64) << 40
                | (t.hob_lbam as u64) << 32
                | (t.hob_lbal as u64) << 24
                | (t.lbah as u64) << 16
                | (t.lbam as u64) << 8
                | t.lbal as u64;
            let c = (t.hob_nsector as u64) << 8 | t.nsector as u64;
            (lba, if c == 0 { 65536 } else { c })
        } else {
            let c = if t.nsector == 0 {
                256
            } else {
                t.nsector as u64
            };
            let lba = if t.device & DEVICE_LBA != 0 {
                (t.device as u64 & 0x0F) << 24
                    | (t.lbah as u64) << 16
                    | (t.lbam as u64) << 8
                    | t.lbal as u64
            } else {
                let g = disk.geometry;
                let cyl = (t.lbah as u64) << 8 | t.lbam as u64;
                let head = (t.device & 0x0F) as u64;
                let sector = t.lbal as u64;
                if sector == 0
                    || sector > g.sectors as u64
                    || head >= g.heads as u64
                    || cyl >= g.cylinders as u64
                {
                    return Err(ERROR_IDNF);
                }
                (cyl * g.heads as u64 + head) * g.sectors as u64 + sector - 1
            };
            (lba, c)
        };
        if lba.saturating_add(count) > disk.sectors {
            return Err(ERROR_IDNF);
        }
        Ok((lba, count))
    }

    /// Loads the address of the failing sector into the LBA registers (LBA modes only).
    fn report_lba(&mut self, lba: u64) {
        let t = &mut self.tf;
        if self.ext {
            t.lbal = lba as u8;
            t.lbam = (lba >> 8) as u8;
            t.lbah = (lba >> 16) as u8;
            t.hob_lbal = (lba >> 24) as u8;
            t.hob_lbam = (lba >> 32) as u8;
            t.hob_lbah = (lba >> 40) as u8;
        } else if t.device & DEVICE_LBA != 0 {
            t.lbal = lba as u8;
            t.lbam = (lba >> 8) as u8;
            t.lbah = (lba >> 16) as u8;
            t.device = (t.device & 0xF0) | ((lba >> 24) as u8 & 0x0F);
        }
    }

    /// IDENTIFY DEVICE data (ATA/ATAPI-7 Vol. 1, IDENTIFY DEVICE data table).
    fn identify_device(&self) -> [u16; 256] {
        let mut w = [0u16; 256];
        let Kind::Disk(disk) = &self.kind else {
            return w;
        };
        let dg = disk.default_geometry;
        let cg = disk.geometry;
        w[0] = 0x0040; // fixed device, ATA
        w[1] = dg.cylinders;
        w[3] = dg.heads as u16;
        w[6] = dg.sectors as u16;
        put_ata_string(&mut w[10..20], &self.serial);
        put_ata_string(&mut w[23..27], FIRMWARE_REVISION);
        put_ata_string(&mut w[27..47], MODEL);
        w[47] = 0x8000 | MAX_MULTIPLE as u16;
        // Capabilities: IORDY supported, IORDY may be disabled, LBA, DMA.
        w[49] = (1 << 11) | (1 << 10) | (1 << 9) | (1 << 8);
        w[50] = 0x4000;
        w[51] = 0x0200; // PIO data transfer cycle timing mode 2 (obsolete)
        w[52] = 0x0200;
        w[53] = 0x0007; // words 54–58, 64–70 and 88 valid
        w[54] = cg.cylinders;
        w[55] = cg.heads as u16;
        w[56] = cg.sectors as u16;
        let cur = cg.capacity().min(disk.sectors).min(0xFFFF_FFFF) as u32;
        w[57] = cur as u16;
        w[58] = (cur >> 16) as u16;
        w[59] = 0x0100 | disk.multiple as u16;
        let lba28 = disk.sectors.min(0x0FFF_FFFF) as u32;
        w[60] = lba28 as u16;
        w[61] = (lba28 >> 16) as u16;
        w[63] = 0x0007 | self.mwdma.map_or(0, |m| 1 << (8 + m));
        w[64] = 0x0003; // PIO modes 3 and 4
        w[65] = 120;
        w[66] = 120;
        w[67] = 120;
        w[68] = 120;
        w[80] = 0x00F0; // ATA/ATAPI-4 through ATA/ATAPI-7
                        // Supported: NOP, write cache, Power Management; FLUSH CACHE (EXT), 48-bit Address.
        w[82] = (1 << 14) | (1 << 5) | (1 << 3);
        w[83] = (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10);
        w[84] = 1 << 14;
        w[85] = (1 << 14) | (1 << 3) | if disk.write_cache { 1 << 5 } else { 0 };
        w[86] = (1 << 13) | (1 << 12) | (1 << 10);
        w[87] = 1 << 14;
        w[88] = 0x003F | self.udma.map_or(0, |m| 1 << (8 + m));
        w[93] = hardware_reset_word(self.slave);
        let n = disk.sectors.min(0xFFFF_FFFF_FFFF);
        for i in 0..4 {
            w[100 + i] = (n >> (16 * i)) as u16;
        }
        finish_identify(&mut w);
        w
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct BusMaster {
    command: u8,
    status: u8,
    prd: u32,
}

/// Controller-wide state the channels need while executing.
struct Env {
    dma: Option<Box<dyn DmaMemory>>,
    bus_master: bool,
    delay: Nanos,
    now: Nanos,
}

impl Env {
    fn at(&self) -> Nanos {
        self.now.saturating_add(self.delay)
    }
}

enum DmaOutcome {
    Done { exhausted: bool },
    Stalled,
    DmaFault,
    MediumFault,
}

struct Channel {
    drives: [Drive; 2],
    devctl: u8,
    bm: BusMaster,
    /// IRQ line level at the last edge check (for the BMISx Interrupt latch).
    line: bool,
}

impl Channel {
    fn new(index: usize) -> Self {
        Channel {
            drives: [Drive::new(index, false), Drive::new(index, true)],
            devctl: 0,
            bm: BusMaster::default(),
            line: false,
        }
    }

    fn sel(&self) -> usize {
        ((self.drives[0].tf.device & DEVICE_DEV) >> 4) as usize
    }

    fn empty(&self) -> bool {
        !self.drives[0].present() && !self.drives[1].present()
    }

    fn irq_level(&self) -> bool {
        let d = &self.drives[self.sel()];
        d.present() && d.intrq && self.devctl & DEVCTL_NIEN == 0
    }

    /// The drive asserts INTRQ; the PIIX3 latches the IRQ line's rising edge in BMISx.
    fn raise(&mut self, d: usize) {
        self.drives[d].intrq = true;
        if self.devctl & DEVCTL_NIEN == 0 && self.sel() == d {
            self.bm.status |= BMIS_INTERRUPT;
        }
    }

    /// Latches a rising edge of the IRQ line that did not come from [`Channel::raise`]
    /// (nIEN cleared or a drive with a pending interrupt selected) into BMISx.
    fn check_edge(&mut self) {
        let l = self.irq_level();
        if l && !self.line {
            self.bm.status |= BMIS_INTERRUPT;
        }
        self.line = l;
    }

    fn ok(&mut self, d: usize) {
        let drive = &mut self.drives[d];
        drive.phase = Phase::Idle;
        drive.buf = Vec::new();
        drive.pos = 0;
        drive.status = STATUS_DRDY | STATUS_DSC;
        self.raise(d);
    }

    fn fail(&mut self, d: usize, error: u8) {
        let drive = &mut self.drives[d];
        drive.phase = Phase::Idle;
        drive.buf = Vec::new();
        drive.pos = 0;
        drive.error = error;
        drive.status = STATUS_DRDY | STATUS_ERR;
        self.raise(d);
    }

    fn abort(&mut self, d: usize) {
        self.fail(d, ERROR_ABRT);
    }

    // ----- register interface -----

    fn read_reg(&mut self, reg: u64) -> u8 {
        if self.empty() {
            return 0xFF;
        }
        let hob = self.devctl & DEVCTL_HOB != 0;
        let d = self.sel();
        let drive = &mut self.drives[d];
        let present = drive.present();
        let t = drive.tf;
        match reg {
            1 => {
                if present {
                    drive.error
                } else {
                    0
                }
            }
            2 => {
                if hob {
                    t.hob_nsector
                } else {
                    t.nsector
                }
            }
            3 => {
                if hob {
                    t.hob_lbal
                } else {
                    t.lbal
                }
            }
            4 => {
                if hob {
                    t.hob_lbam
                } else {
                    t.lbam
                }
            }
            5 => {
                if hob {
                    t.hob_lbah
                } else {
                    t.lbah
                }
            }
            6 => t.device,
            7 => {
                if present {
                    drive.intrq = false;
                    drive.status
                } else {
                    0
                }
            }
            _ => 0xFF,
        }
    }

    fn alt_status(&self) -> u8 {
        if self.empty() {
            return 0xFF;
        }
        let d = &self.drives[self.sel()];
        if d.present() {
            d.status
        } else {
            0
        }
    }

    fn write_reg(&mut self, env: &mut Env, reg: u64, v: u8) {
        self.devctl &= !DEVCTL_HOB;
        if reg == 7 {
            self.write_command(env, v);
            return;
        }
        let cur = &self.drives[self.sel()];
        if cur.present() && cur.status & (STATUS_BSY | STATUS_DRQ) != 0 {
            return;
        }
        for drive in &mut self.drives {
            let t = &mut drive.tf;
            match reg {
                1 => {
                    t.hob_feature = t.feature;
                    t.feature = v;
                }
                2 => {
                    t.hob_nsector = t.nsector;
                    t.nsector = v;
                }
                3 => {
                    t.hob_lbal = t.lbal;
                    t.lbal = v;
                }
                4 => {
                    t.hob_lbam = t.lbam;
                    t.lbam = v;
                }
                5 => {
                    t.hob_lbah = t.lbah;
                    t.lbah = v;
                }
                6 => t.device = v,
                _ => {}
            }
        }
    }

    fn write_command(&mut self, env: &mut Env, cmd: u8) {
        if self.devctl & DEVCTL_SRST != 0 {
            return;
        }
        let d = self.sel();
        let drive = &mut self.drives[d];
        if !drive.present() {
            return;
        }
        if cmd == CMD_DEVICE_RESET && drive.is_cd() {
            // ATA/ATAPI-7 Vol. 1, DEVICE RESET: executes even while BSY; no interrupt.
            drive.soft_reset();
            return;
        }
        if drive.status & (STATUS_BSY | STATUS_DRQ) != 0 {
            return;
        }
        drive.intrq = false;
        drive.status = STATUS_BSY | (drive.status & STATUS_DRDY);
        drive.schedule(env.at(), Action::Command(cmd));
    }

    fn write_devctl(&mut self, v: u8) {
        let old = self.devctl;
        self.devctl = v & (DEVCTL_NIEN | DEVCTL_SRST | DEVCTL_HOB);
        if old & DEVCTL_SRST == 0 && v & DEVCTL_SRST != 0 {
            for drive in &mut self.drives {
                drive.pending = None;
                drive.phase = Phase::Idle;
                drive.buf = Vec::new();
                drive.pos = 0;
                drive.intrq = false;
                drive.status = if drive.present() { STATUS_BSY } else { 0 };
            }
        } else if old & DEVCTL_SRST != 0 && v & DEVCTL_SRST == 0 {
            for drive in &mut self.drives {
                drive.soft_reset();
            }
        }
    }

    fn data_read(&mut self, env: &mut Env, out: &mut [u8]) {
        out.fill(0xFF);
        if self.empty() {
            return;
        }
        let d = self.sel();
        let drive = &mut self.drives[d];
        if !drive.present()
            || drive.status & STATUS_DRQ == 0
            || !matches!(drive.phase, Phase::PioIn { .. } | Phase::AtapiIn { .. })
        {
            return;
        }
        for b in out.iter_mut() {
            if drive.pos < drive.buf.len() {
                *b = drive.buf[drive.pos];
                drive.pos += 1;
            } else {
                *b = 0;
            }
        }
        if drive.pos >= drive.buf.len() {
            match &drive.phase {
                Phase::PioIn { remaining: 0, .. } => {
                    drive.phase = Phase::Idle;
                    drive.buf = Vec::new();
                    drive.pos = 0;
                    drive.status = STATUS_DRDY | STATUS_DSC;
                }
                Phase::PioIn { .. } => {
                    drive.status = STATUS_BSY | STATUS_DRDY;
                    drive.schedule(env.at(), Action::PioInNext);
                }
                _ => {
                    drive.status = STATUS_BSY | STATUS_DRDY;
                    drive.schedule(env.at(), Action::AtapiNext);
                }
            }
        }
    }

    fn data_write(&mut self, env: &mut Env, data: &[u8]) {
        let d = self.sel();
        let drive = &mut self.drives[d];
        if !drive.present()
            || drive.status & STATUS_DRQ == 0
            || !matches!(drive.phase, Phase::PioOut { .. } | Phase::Packet { .. })
        {
            return;
        }
        for &b in data {
            if drive.pos < drive.buf.len() {
                drive.buf[drive.pos] = b;
                drive.pos += 1;
            }
        }
        if drive.pos >= drive.buf.len() {
            let action = if matches!(drive.phase, Phase::Packet { .. }) {
                Action::PacketExec
            } else {
                Action::PioOutCommit
            };
            drive.status = STATUS_BSY | STATUS_DRDY;
            drive.schedule(env.at(), action);
        }
    }

    // ----- bus master registers (offset 0–7 within the channel's block) -----

    fn bm_read(&self, off: u64) -> u8 {
        match off {
            0 => self.bm.command,
            2 => self.bm.status,
            4..=7 => (self.bm.prd >> (8 * (off - 4))) as u8,
            _ => 0,
        }
    }

    fn bm_write(&mut self, env: &mut Env, off: u64, v: u8) {
        match off {
            0 => {
                let old = self.bm.command;
                self.bm.command = v & (BMIC_START | BMIC_RWCON);
                if old & BMIC_START == 0 && v & BMIC_START != 0 {
                    self.bm.status |= BMIS_ACTIVE;
                    self.kick_dma(env);
                } else if old & BMIC_START != 0 && v & BMIC_START == 0 {
                    // Stopping the engine aborts a transfer in progress; the drive keeps waiting.
                    self.bm.status &= !BMIS_ACTIVE;
                    for drive in &mut self.drives {
                        if matches!(drive.pending, Some((_, Action::DmaRun))) {
                            drive.pending = None;
                        }
                    }
                }
            }
            2 => {
                let mut s = self.bm.status & !(v & (BMIS_ERROR | BMIS_INTERRUPT));
                s = (s & !BMIS_DMA_CAPABLE) | (v & BMIS_DMA_CAPABLE);
                self.bm.status = s;
            }
            4..=7 => {
                let shift = 8 * (off - 4);
                let p = (self.bm.prd & !(0xFF << shift)) | (v as u32) << shift;
                self.bm.prd = p & !3;
            }
            _ => {}
        }
    }

    /// Schedules the DMA transfer of a drive waiting for it, if the engine can run.
    fn kick_dma(&mut self, env: &mut Env) {
        if self.bm.status & BMIS_ACTIVE == 0 || !env.bus_master {
            return;
        }
        let s = self.sel();
        for d in [s, 1 - s] {
            let drive = &mut self.drives[d];
            if matches!(drive.phase, Phase::Dma(_)) && drive.pending.is_none() {
                drive.schedule(env.at(), Action::DmaRun);
                return;
            }
        }
    }

    // ----- command execution -----

    fn run_action(&mut self, d: usize, action: Action, env: &mut Env) {
        match action {
            Action::Command(cmd) => self.exec_command(d, cmd, env),
            Action::PioInNext => self.pio_in_block(d),
            Action::PioOutCommit => self.pio_out_commit(d),
            Action::PacketExec => self.packet_exec(d, env),
            Action::AtapiNext => self.atapi_next(d),
            Action::DmaRun => self.run_dma(d, env),
        }
    }

    fn exec_command(&mut self, d: usize, cmd: u8, env: &mut Env) {
        let drive = &mut self.drives[d];
        drive.error = 0;
        drive.phase = Phase::Idle;
        drive.ext = false;
        if drive.is_cd() {
            self.exec_packet_device_command(d, cmd, env);
            return;
        }
        match cmd {
            CMD_IDENTIFY_DEVICE => {
                let w = drive.identify_device();
                self.start_pio_in_buffer(d, &w);
            }
            CMD_READ_SECTORS | CMD_READ_SECTORS_NORETRY | CMD_READ_SECTORS_EXT => {
                self.start_pio_read(d, cmd == CMD_READ_SECTORS_EXT, false)
            }
            CMD_READ_MULTIPLE | CMD_READ_MULTIPLE_EXT => {
                self.start_pio_read(d, cmd == CMD_READ_MULTIPLE_EXT, true)
            }
            CMD_WRITE_SECTORS | CMD_WRITE_SECTORS_NORETRY | CMD_WRITE_SECTORS_EXT => {
                self.start_pio_write(d, cmd == CMD_WRITE_SECTORS_EXT, false)
            }
            CMD_WRITE_MULTIPLE | CMD_WRITE_MULTIPLE_EXT => {
                self.start_pio_write(d, cmd == CMD_WRITE_MULTIPLE_EXT, true)
            }
            CMD_READ_DMA | CMD_READ_DMA_NORETRY | CMD_READ_DMA_EXT => {
                self.start_ata_dma(d, env, cmd == CMD_READ_DMA_EXT, false)
            }
            CMD_WRITE_DMA | CMD_WRITE_DMA_NORETRY | CMD_WRITE_DMA_EXT => {
                self.start_ata_dma(d, env, cmd == CMD_WRITE_DMA_EXT, true)
            }
            CMD_READ_VERIFY_SECTORS
            | CMD_READ_VERIFY_SECTORS_NORETRY
            | CMD_READ_VERIFY_SECTORS_EXT => {
                self.read_verify(d, cmd == CMD_READ_VERIFY_SECTORS_EXT)
            }
            CMD_FLUSH_CACHE | CMD_FLUSH_CACHE_EXT => {
                let r = match &mut self.drives[d].kind {
                    Kind::Disk(disk) => disk.backend.flush().is_ok(),
                    _ => false,
                };
                if r {
                    self.ok(d)
                } else {
                    self.abort(d)
                }
            }
            CMD_SET_FEATURES => self.set_features(d),
            CMD_SET_MULTIPLE_MODE => {
                let n = drive.tf.nsector;
                if n > MAX_MULTIPLE || (n != 0 && !n.is_power_of_two()) {
                    self.abort(d);
                } else {
                    if let Kind::Disk(disk) = &mut drive.kind {
                        disk.multiple = n;
                    }
                    self.ok(d);
                }
            }
            CMD_INITIALIZE_DEVICE_PARAMETERS => {
                let spt = drive.tf.nsector;
                let heads = (drive.tf.device & 0x0F) + 1;
                let Kind::Disk(disk) = &mut drive.kind else {
                    return self.abort(d);
                };
                if spt == 0 {
                    return self.abort(d);
                }
                let cyl = (disk.sectors / (heads as u64 * spt as u64)).min(65535);
                disk.geometry = ChsGeometry {
                    cylinders: cyl as u16,
                    heads,
                    sectors: spt,
                };
                self.ok(d);
            }
            CMD_CHECK_POWER_MODE | CMD_CHECK_POWER_MODE_ALT => {
                drive.tf.nsector = 0xFF; // active or idle
                self.ok(d);
            }
            CMD_STANDBY_IMMEDIATE | CMD_IDLE_IMMEDIATE | CMD_STANDBY | CMD_IDLE | CMD_SLEEP => {
                self.ok(d)
            }
            0x10..=0x1F | CMD_SEEK => self.ok(d), // RECALIBRATE (obsolete), SEEK
            CMD_EXECUTE_DEVICE_DIAGNOSTIC => self.diagnostic(d),
            // NOP always aborts (ATA/ATAPI-7 Vol. 1, NOP); DEVICE RESET and PACKET commands
            // are for packet devices only; everything else is not implemented.
            CMD_NOP | CMD_DEVICE_RESET | CMD_PACKET | CMD_IDENTIFY_PACKET_DEVICE => self.abort(d),
            _ => self.abort(d),
        }
    }

    /// ATA commands to a packet device (ATA/ATAPI-7 Vol. 1, PACKET feature set: its
    /// mandatory commands plus Power Management). IDENTIFY DEVICE aborts with the signature.
    fn exec_packet_device_command(&mut self, d: usize, cmd: u8, _env: &mut Env) {
        let drive = &mut self.drives[d];
        match cmd {
            CMD_IDENTIFY_DEVICE => {
                drive.set_signature();
                self.abort(d);
            }
            CMD_IDENTIFY_PACKET_DEVICE => {
                let w = atapi::identify_packet_device(
                    &drive.serial,
                    FIRMWARE_REVISION,
                    drive.mwdma,
                    drive.udma,
                    hardware_reset_word(drive.slave),
                );
                self.start_pio_in_buffer(d, &w);
            }
            CMD_PACKET => {
                if drive.tf.feature & 0x02 != 0 {
                    // Overlapped feature set not supported.
                    return self.abort(d);
                }
                let dma = drive.tf.feature & 0x01 != 0;
                let limit = u16::from_le_bytes([drive.tf.lbam, drive.tf.lbah]);
                drive.buf = vec![0; atapi::PACKET_SIZE];
                drive.pos = 0;
                drive.phase = Phase::Packet { dma, limit };
                drive.tf.nsector = atapi::INT_REASON_COD;
                drive.status = STATUS_DRDY | STATUS_DRQ;
            }
            CMD_SET_FEATURES => self.set_features(d),
            CMD_CHECK_POWER_MODE | CMD_CHECK_POWER_MODE_ALT => {
                drive.tf.nsector = 0xFF;
                self.ok(d);
            }
            CMD_STANDBY_IMMEDIATE | CMD_IDLE_IMMEDIATE | CMD_SLEEP => self.ok(d),
            CMD_EXECUTE_DEVICE_DIAGNOSTIC => self.diagnostic(d),
            _ => self.abort(d),
        }
    }

    /// EXECUTE DEVICE DIAGNOSTIC (ATA/ATAPI-7 Vol. 1, EXECUTE DEVICE DIAGNOSTIC): both devices run it and load their
    /// signatures; the Error register of each reads 01h (device 0 passed, device 1 passed or
    /// absent). The interrupt comes from device 0 (the issuing drive here).
    fn diagnostic(&mut self, d: usize) {
        for drive in &mut self.drives {
            drive.soft_reset();
        }
        self.raise(d);
    }

    fn set_features(&mut self, d: usize) {
        let drive = &mut self.drives[d];
        let v = drive.tf.nsector;
        let good = match drive.tf.feature {
            // Set transfer mode (SET FEATURES subcommand 03h): PIO default / PIO n / MWDMA n / UDMA n.
            0x03 => match (v >> 3, v & 7) {
                (0, _) => true,
                (1, m) => m <= 4,
                (4, m) if m <= 2 => {
                    drive.mwdma = Some(m);
                    drive.udma = None;
                    true
                }
                (8, m) if m <= 5 => {
                    drive.udma = Some(m);
                    drive.mwdma = None;
                    true
                }
                _ => false,
            },
            // Write cache enable / disable.
            0x02 | 0x82 => match &mut drive.kind {
                Kind::Disk(disk) => {
                    disk.write_cache = drive.tf.feature == 0x02;
                    true
                }
                _ => false,
            },
            // Read look-ahead disable/enable, reverting to power-on defaults disable/enable.
            0x55 | 0xAA | 0x66 | 0xCC => true,
            _ => false,
        };
        if good {
            self.ok(d)
        } else {
            self.abort(d)
        }
    }

    /// Starts a PIO data-in transfer of a prepared 512-byte block (IDENTIFY data).
    fn start_pio_in_buffer(&mut self, d: usize, words: &[u16; 256]) {
        let drive = &mut self.drives[d];
        drive.buf = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        drive.pos = 0;
        drive.phase = Phase::PioIn {
            next_lba: 0,
            remaining: 0,
            block: 1,
        };
        drive.status = STATUS_DRDY | STATUS_DSC | STATUS_DRQ;
        self.raise(d);
    }

    fn block_size(&self, d: usize, multiple: bool) -> Option<u64> {
        match &self.drives[d].kind {
            Kind::Disk(disk) if multiple => match disk.multiple {
                0 => None,
                m => Some(m as u64),
            },
            _ => Some(1),
        }
    }

    fn start_pio_read(&mut self, d: usize, ext: bool, multiple: bool) {
        let Some(block) = self.block_size(d, multiple) else {
            return self.abort(d);
        };
        let drive = &mut self.drives[d];
        drive.ext = ext;
        match drive.lba_count(ext) {
            Err(e) => self.fail(d, e),
            Ok((lba, count)) => {
                drive.phase = Phase::PioIn {
                    next_lba: lba,
                    remaining: count,
                    block,
                };
                self.pio_in_block(d);
            }
        }
    }

    /// Loads the next DRQ block of a PIO read and interrupts (ATA/ATAPI-7 Vol. 2, PIO data-in protocol).
    fn pio_in_block(&mut self, d: usize) {
        let drive = &mut self.drives[d];
        let Phase::PioIn {
            next_lba,
            remaining,
            block,
        } = drive.phase
        else {
            return;
        };
        let n = remaining.min(block);
        let mut buf = vec![0u8; (n * SECTOR_SIZE) as usize];
        let mut span = Span::Medium {
            offset: next_lba * SECTOR_SIZE,
            remaining: n * SECTOR_SIZE,
        };
        if span.read_into(&mut drive.kind, &mut buf).is_err() {
            drive.report_lba(next_lba);
            return self.fail(d, ERROR_UNC);
        }
        drive.buf = buf;
        drive.pos = 0;
        drive.phase = Phase::PioIn {
            next_lba: next_lba + n,
            remaining: remaining - n,
            block,
        };
        drive.status = STATUS_DRDY | STATUS_DSC | STATUS_DRQ;
        self.raise(d);
    }

    fn read_only(&self, d: usize) -> bool {
        match &self.drives[d].kind {
            Kind::Disk(disk) => disk.backend.read_only(),
            _ => true,
        }
    }

    fn start_pio_write(&mut self, d: usize, ext: bool, multiple: bool) {
        let Some(block) = self.block_size(d, multiple) else {
            return self.abort(d);
        };
        if self.read_only(d) {
            return self.abort(d);
        }
        let drive = &mut self.drives[d];
        drive.ext = ext;
        match drive.lba_count(ext) {
            Err(e) => self.fail(d, e),
            Ok((lba, count)) => {
                let n = count.min(block);
                drive.buf = vec![0; (n * SECTOR_SIZE) as usize];
                drive.pos = 0;
                drive.phase = Phase::PioOut {
                    lba,
                    remaining: count - n,
                    block,
                };
                // The first DRQ block of a PIO data-out command comes without an interrupt.
                drive.status = STATUS_DRDY | STATUS_DSC | STATUS_DRQ;
            }
        }
    }

    /// Writes a received PIO block, then requests the next one or completes (ATA/ATAPI-7 Vol. 2
    /// PIO data-out protocol: INTRQ after every block).
    fn pio_out_commit(&mut self, d: usize) {
        let drive = &mut self.drives[d];
        let Phase::PioOut {
            lba,
            remaining,
            block,
        } = drive.phase
        else {
            return;
        };
        let n = drive.buf.len() as u64 / SECTOR_SIZE;
        let mut span = Span::Medium {
            offset: lba * SECTOR_SIZE,
            remaining: n * SECTOR_SIZE,
        };
        let buf = std::mem::take(&mut drive.buf);
        if span.write_from(&mut drive.kind, &buf).is_err() {
            drive.report_lba(lba);
            return self.abort(d);
        }
        if remaining == 0 {
            return self.ok(d);
        }
        let m = remaining.min(block);
        drive.buf = vec![0; (m * SECTOR_SIZE) as usize];
        drive.pos = 0;
        drive.phase = Phase::PioOut {
            lba: lba + n,
            remaining: remaining - m,
            block,
        };
        drive.status = STATUS_DRDY | STATUS_DSC | STATUS_DRQ;
        self.raise(d);
    }

    fn read_verify(&mut self, d: usize, ext: bool) {
        let drive = &mut self.drives[d];
        drive.ext = ext;
        let (lba, count) = match drive.lba_count(ext) {
            Err(e) => return self.fail(d, e),
            Ok(v) => v,
        };
        let mut buf = vec![0u8; 128 * SECTOR_SIZE as usize];
        let mut at = lba;
        let end = lba + count;
        while at < end {
            let n = (end - at).min(128);
            let chunk = &mut buf[..(n * SECTOR_SIZE) as usize];
            let mut span = Span::Medium {
                offset: at * SECTOR_SIZE,
                remaining: n * SECTOR_SIZE,
            };
            if span.read_into(&mut drive.kind, chunk).is_err() {
                drive.report_lba(at);
                return self.fail(d, ERROR_UNC);
            }
            at += n;
        }
        self.ok(d);
    }

    fn start_ata_dma(&mut self, d: usize, env: &mut Env, ext: bool, write: bool) {
        if write && self.read_only(d) {
            return self.abort(d);
        }
        let drive = &mut self.drives[d];
        drive.ext = ext;
        match drive.lba_count(ext) {
            Err(e) => self.fail(d, e),
            Ok((lba, count)) => {
                let span = Span::Medium {
                    offset: lba * SECTOR_SIZE,
                    remaining: count * SECTOR_SIZE,
                };
                self.start_dma(d, env, span, write, false);
            }
        }
    }

    fn start_dma(&mut self, d: usize, env: &mut Env, span: Span, to_device: bool, atapi: bool) {
        let drive = &mut self.drives[d];
        drive.phase = Phase::Dma(DmaJob {
            span,
            to_device,
            atapi,
        });
        drive.buf = Vec::new();
        drive.pos = 0;
        if atapi {
            drive.tf.nsector = atapi::INT_REASON_IO;
            drive.status = STATUS_DRDY | STATUS_DRQ;
        } else {
            drive.status = STATUS_DRDY | STATUS_DSC | STATUS_DRQ;
        }
        // The command itself already took one delay: transfer now if the engine is running.
        self.run_dma(d, env);
    }

    /// Runs the bus master transfer of drive `d` through the PRD table (PIIX3 datasheet, IDE bus master operation):
    /// each descriptor is 8 bytes — dword 0 the physical base address (bit 0 ignored), dword 1
    /// bits 15:1 the byte count (0 = 64 KiB) and bit 31 EOT.
    fn run_dma(&mut self, d: usize, env: &mut Env) {
        if self.bm.status & BMIS_ACTIVE == 0 || !env.bus_master {
            return;
        }
        if !matches!(self.drives[d].phase, Phase::Dma(_)) {
            return;
        }
        let outcome = match env.dma.as_deref_mut() {
            None => DmaOutcome::DmaFault,
            Some(mem) => {
                let Drive { kind, phase, .. } = &mut self.drives[d];
                let Phase::Dma(job) = phase else {
                    return;
                };
                Self::transfer(mem, self.bm.prd, kind, job)
            }
        };
        let atapi = matches!(&self.drives[d].phase, Phase::Dma(j) if j.atapi);
        let to_device = matches!(&self.drives[d].phase, Phase::Dma(j) if j.to_device);
        match outcome {
            DmaOutcome::Done { exhausted } => {
                if exhausted {
                    self.bm.status &= !BMIS_ACTIVE;
                }
                if atapi {
                    self.atapi_complete(d);
                } else {
                    self.ok(d);
                }
            }
            DmaOutcome::Stalled => {
                self.bm.status &= !BMIS_ACTIVE;
            }
            DmaOutcome::DmaFault => {
                self.bm.status = (self.bm.status | BMIS_ERROR) & !BMIS_ACTIVE;
                if atapi {
                    self.atapi_check_condition(d, Sense::ABORTED, ERROR_ABRT);
                } else {
                    self.abort(d);
                }
            }
            DmaOutcome::MediumFault => {
                if atapi {
                    self.atapi_check_condition(d, Sense::UNRECOVERED_READ_ERROR, 0);
                } else if to_device {
                    self.abort(d);
                } else {
                    self.fail(d, ERROR_UNC);
                }
            }
        }
    }

    fn transfer(
        mem: &mut dyn DmaMemory,
        prd: u32,
        kind: &mut Kind,
        job: &mut DmaJob,
    ) -> DmaOutcome {
        let mut table = prd & !3;
        for _ in 0..MAX_PRD_ENTRIES {
            if job.span.remaining() == 0 {
                return DmaOutcome::Done { exhausted: false };
            }
            let mut e = [0u8; 8];
            if mem.read(table as u64, &mut e).is_err() {
                return DmaOutcome::DmaFault;
            }
            table = table.wrapping_add(8);
            let base = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) & !1;
            let ctl = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            let len = match ctl & 0xFFFE {
                0 => 0x1_0000u64,
                l => l as u64,
            };
            let eot = ctl & 0x8000_0000 != 0;
            let n = len.min(job.span.remaining());
            let mut tmp = vec![0u8; n as usize];
            if job.to_device {
                if mem.read(base as u64, &mut tmp).is_err() {
                    return DmaOutcome::DmaFault;
                }
                if job.span.write_from(kind, &tmp).is_err() {
                    return DmaOutcome::MediumFault;
                }
            } else {
                if job.span.read_into(kind, &mut tmp).is_err() {
                    return DmaOutcome::MediumFault;
                }
                if mem.write(base as u64, &tmp).is_err() {
                    return DmaOutcome::DmaFault;
                }
            }
            if job.span.remaining() == 0 {
                return DmaOutcome::Done {
                    exhausted: eot && n == len,
                };
            }
            if eot {
                return DmaOutcome::Stalled;
            }
        }
        DmaOutcome::Stalled
    }

    // ----- PACKET protocol -----

    /// Executes a received command packet (ATA/ATAPI-7 Vol. 2, PACKET PIO data-in and PACKET DMA protocols).
    fn packet_exec(&mut self, d: usize, env: &mut Env) {
        let drive = &mut self.drives[d];
        let Phase::Packet { dma, limit } = drive.phase else {
            return;
        };
        let mut cdb = [0u8; atapi::PACKET_SIZE];
        let n = drive.buf.len().min(atapi::PACKET_SIZE);
        cdb[..n].copy_from_slice(&drive.buf[..n]);
        drive.buf = Vec::new();
        drive.pos = 0;
        let Kind::Cd(a) = &mut drive.kind else {
            return self.abort(d);
        };
        let span = match a.execute(&cdb) {
            Err(sense) => return self.atapi_check_condition(d, sense, 0),
            Ok(PacketData::None) => return self.atapi_complete(d),
            Ok(PacketData::Buffer(data)) => Span::Buffer { data, pos: 0 },
            Ok(PacketData::Medium { offset, len }) => Span::Medium {
                offset,
                remaining: len,
            },
        };
        if dma {
            self.start_dma(d, env, span, false, true);
        } else {
            self.drives[d].phase = Phase::AtapiIn { span, limit };
            self.atapi_next(d);
        }
    }

    /// Next PIO DRQ block of a packet command, or the status phase when all data went out:
    /// byte count in LBA Mid/High, interrupt reason I/O (data) or C/D + I/O (status).
    fn atapi_next(&mut self, d: usize) {
        let drive = &mut self.drives[d];
        let Drive {
            kind, phase, tf, ..
        } = drive;
        let Phase::AtapiIn { span, limit } = phase else {
            return;
        };
        if span.remaining() == 0 {
            return self.atapi_complete(d);
        }
        let sector_data = matches!(span, Span::Medium { .. });
        let n = atapi::pio_chunk_len(span.remaining(), *limit, sector_data) as usize;
        let mut buf = vec![0u8; n];
        if span.read_into(kind, &mut buf).is_err() {
            return self.atapi_check_condition(d, Sense::UNRECOVERED_READ_ERROR, 0);
        }
        tf.lbam = n as u8;
        tf.lbah = (n >> 8) as u8;
        tf.nsector = atapi::INT_REASON_IO;
        drive.buf = buf;
        drive.pos = 0;
        drive.status = STATUS_DRDY | STATUS_DRQ;
        self.raise(d);
    }

    fn atapi_complete(&mut self, d: usize) {
        let drive = &mut self.drives[d];
        drive.phase = Phase::Idle;
        drive.buf = Vec::new();
        drive.pos = 0;
        drive.error = 0;
        drive.tf.nsector = atapi::INT_REASON_IO | atapi::INT_REASON_COD;
        drive.status = STATUS_DRDY;
        self.raise(d);
    }

    /// CHECK CONDITION: sense stored for REQUEST SENSE, Error = sense key << 4 (| `extra`),
    /// status ERR (ATA/ATAPI-7 Vol. 1, PACKET command: error outputs).
    fn atapi_check_condition(&mut self, d: usize, sense: Sense, extra: u8) {
        let drive = &mut self.drives[d];
        if let Kind::Cd(a) = &mut drive.kind {
            a.set_sense(sense);
        }
        drive.phase = Phase::Idle;
        drive.buf = Vec::new();
        drive.pos = 0;
        drive.error = (sense.key << 4) | extra;
        drive.tf.nsector = atapi::INT_REASON_IO | atapi::INT_REASON_COD;
        drive.status = STATUS_DRDY | STATUS_ERR;
        self.raise(d);
    }
}

/// The PIIX3 IDE controller: two channels of two drives, legacy task-file registers and Bus
/// Master IDE DMA. See the module documentation for the port/offset map, interrupts and timing.
pub struct IdeController {
    channels: [Channel; 2],
    env: Env,
}

impl std::fmt::Debug for IdeController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("IdeController");
        for (i, ch) in self.channels.iter().enumerate() {
            for (j, d) in ch.drives.iter().enumerate() {
                let kind = match &d.kind {
                    Kind::Absent => "absent",
                    Kind::Disk(_) => "disk",
                    Kind::Cd(_) => "cdrom",
                };
                s.field(
                    ["pm", "ps", "sm", "ss"][i * 2 + j],
                    &format_args!("{kind} status={:#04x}", d.status),
                );
            }
        }
        s.field("bus_master", &self.env.bus_master)
            .field("delay", &self.env.delay)
            .finish()
    }
}

impl Default for IdeController {
    fn default() -> Self {
        Self::new()
    }
}

enum Port {
    Command(usize, u64),
    Control(usize),
    BusMaster(u64),
}

fn decode(offset: u64) -> Option<Port> {
    let p = offset;
    let pc = PRIMARY_COMMAND_BASE as u64;
    let sc = SECONDARY_COMMAND_BASE as u64;
    match p {
        _ if (pc..pc + 8).contains(&p) => Some(Port::Command(0, p - pc)),
        _ if (sc..sc + 8).contains(&p) => Some(Port::Command(1, p - sc)),
        _ if p == PRIMARY_CONTROL_PORT as u64 => Some(Port::Control(0)),
        _ if p == SECONDARY_CONTROL_PORT as u64 => Some(Port::Control(1)),
        _ if (BUS_MASTER_OFFSET..BUS_MASTER_OFFSET + BUS_MASTER_SIZE).contains(&p) => {
            Some(Port::BusMaster(p - BUS_MASTER_OFFSET))
        }
        _ => None,
    }
}

impl IdeController {
    /// A controller with no drives, power-on state, bus mastering disabled, no DMA memory and
    /// [`DEFAULT_COMMAND_DELAY`].
    pub fn new() -> Self {
        IdeController {
            channels: [Channel::new(0), Channel::new(1)],
            env: Env {
                dma: None,
                bus_master: false,
                delay: DEFAULT_COMMAND_DELAY,
                now: 0,
            },
        }
    }

    /// Attaches `media` at `channel`/`drive` (replacing what was there) in its power-on state.
    /// Default CHS geometry of disks: [`ChsGeometry::for_sectors`].
    pub fn attach(&mut self, channel: IdeChannel, drive: IdeDrive, media: IdeMedia) {
        let d = &mut self.channels[channel.index()].drives[drive.index()];
        d.kind = match media {
            IdeMedia::HardDisk(backend) => {
                let sectors = backend.size() / SECTOR_SIZE;
                let g = ChsGeometry::for_sectors(sectors);
                Kind::Disk(Box::new(Disk {
                    backend,
                    sectors,
                    default_geometry: g,
                    geometry: g,
                    multiple: MAX_MULTIPLE,
                    write_cache: true,
                }))
            }
            IdeMedia::CdRom(medium) => Kind::Cd(Box::new(Atapi::new(medium))),
        };
        d.power_on();
    }

    /// Flush every attached hard disk's backend (host fsync): afterwards every write the guest
    /// saw complete is durable. Stops at the first error.
    pub fn flush_all(&mut self) -> Result<(), heron_block::BlockError> {
        for ch in self.channels.iter_mut() {
            for d in ch.drives.iter_mut() {
                if let Kind::Disk(disk) = &mut d.kind {
                    disk.backend.flush()?;
                }
            }
        }
        Ok(())
    }

    /// Removes the drive at `channel`/`drive` and returns it (a CD-ROM with its medium).
    pub fn detach(&mut self, channel: IdeChannel, drive: IdeDrive) -> Option<IdeMedia> {
        let d = &mut self.channels[channel.index()].drives[drive.index()];
        let kind = std::mem::replace(&mut d.kind, Kind::Absent);
        d.power_on();
        match kind {
            Kind::Absent => None,
            Kind::Disk(disk) => Some(IdeMedia::HardDisk(disk.backend)),
            Kind::Cd(mut a) => Some(IdeMedia::CdRom(a.change_medium(None))),
        }
    }

    /// Host-side medium change of the CD-ROM at `channel`/`drive` (`None` = remove): the guest
    /// sees UNIT ATTENTION 06/28 and a media event (see [`Atapi::change_medium`]). Returns the
    /// previous medium.
    pub fn change_cd_medium(
        &mut self,
        channel: IdeChannel,
        drive: IdeDrive,
        medium: Option<Box<dyn BlockBackend>>,
    ) -> Result<Option<Box<dyn BlockBackend>>, IdeError> {
        match &mut self.channels[channel.index()].drives[drive.index()].kind {
            Kind::Cd(a) => Ok(a.change_medium(medium)),
            _ => Err(IdeError::NotCdRom),
        }
    }

    /// The ATAPI state of the CD-ROM at `channel`/`drive`, if that is one (medium, tray, lock).
    pub fn atapi(&self, channel: IdeChannel, drive: IdeDrive) -> Option<&Atapi> {
        match &self.channels[channel.index()].drives[drive.index()].kind {
            Kind::Cd(a) => Some(a),
            _ => None,
        }
    }

    /// Gives the controller its view of guest RAM for bus master DMA.
    pub fn set_dma_memory(&mut self, mem: Box<dyn DmaMemory>) {
        self.env.dma = Some(mem);
    }

    /// Mirrors the IDE function's PCI Command register bit 2 (Bus Master Enable, PCI Local Bus
    /// Spec 3.0 §6.2.2): while clear, the bus master engine does not transfer. Enabling it
    /// resumes a transfer that is waiting.
    pub fn set_bus_master_enabled(&mut self, enabled: bool) {
        self.env.bus_master = enabled;
        if enabled {
            for ch in &mut self.channels {
                ch.kick_dma(&mut self.env);
            }
            self.run_due();
        }
    }

    /// Current Bus Master Enable mirror.
    pub fn bus_master_enabled(&self) -> bool {
        self.env.bus_master
    }

    /// Sets the virtual-time delay of each command step in nanoseconds (0 = complete during
    /// the register access).
    pub fn set_command_delay(&mut self, ns: Nanos) {
        self.env.delay = ns;
    }

    /// The virtual-time delay of each command step in nanoseconds.
    pub fn command_delay(&self) -> Nanos {
        self.env.delay
    }

    /// Level of the channel's interrupt line (INTRQ of the selected drive, masked by nIEN).
    pub fn irq_level(&self, channel: IdeChannel) -> bool {
        self.channels[channel.index()].irq_level()
    }

    /// Level of IRQ 14 (primary channel).
    pub fn irq14_level(&self) -> bool {
        self.irq_level(IdeChannel::Primary)
    }

    /// Level of IRQ 15 (secondary channel).
    pub fn irq15_level(&self) -> bool {
        self.irq_level(IdeChannel::Secondary)
    }

    /// Hardware reset (PCI RST#): every drive returns to its power-on state (registers,
    /// multiple mode 16, default geometry and transfer modes, signature), Device Control and the
    /// bus master registers are cleared. Media stay attached.
    pub fn reset(&mut self) {
        for ch in &mut self.channels {
            for d in &mut ch.drives {
                d.power_on();
            }
            ch.devctl = 0;
            ch.bm = BusMaster::default();
            ch.line = false;
        }
    }

    /// Bus Master IDE register read: `offset` 0–15 relative to BMIBA (PIIX3 datasheet, Bus Master IDE I/O registers):
    /// 0 BMICP, 2 BMISP, 4–7 BMIDTPP, 8 BMICS, 0xA BMISS, 0xC–0xF BMIDTPS; reserved bytes read 0,
    /// bytes past 15 read 0xFF.
    pub fn bus_master_read(&mut self, now: Nanos, offset: u64, data: &mut [u8]) {
        self.advance(now);
        for (i, b) in data.iter_mut().enumerate() {
            let o = offset.wrapping_add(i as u64);
            *b = if o < BUS_MASTER_SIZE {
                self.channels[(o / 8) as usize].bm_read(o % 8)
            } else {
                0xFF
            };
        }
    }

    /// Bus Master IDE register write at `offset` 0–15 relative to BMIBA: BMICx (Start, R/W
    /// Control), BMISx (write 1 to clear Error/Interrupt; DMA capable bits), BMIDTPx (dword
    /// aligned PRD table address).
    pub fn bus_master_write(&mut self, now: Nanos, offset: u64, data: &[u8]) {
        self.advance(now);
        for (i, &v) in data.iter().enumerate() {
            let o = offset.wrapping_add(i as u64);
            if o < BUS_MASTER_SIZE {
                self.channels[(o / 8) as usize].bm_write(&mut self.env, o % 8, v);
            }
        }
        self.run_due();
    }

    fn advance(&mut self, now: Nanos) {
        self.env.now = self.env.now.max(now);
        self.run_due();
    }

    /// Runs every scheduled step whose time has come (chains of zero-delay steps included).
    fn run_due(&mut self) {
        for _ in 0..256 {
            let now = self.env.now;
            let mut ran = false;
            for ch in &mut self.channels {
                for d in 0..2 {
                    if let Some((t, a)) = ch.drives[d].pending {
                        if t <= now {
                            ch.drives[d].pending = None;
                            ch.run_action(d, a, &mut self.env);
                            ran = true;
                        }
                    }
                }
            }
            if !ran {
                break;
            }
        }
        for ch in &mut self.channels {
            ch.check_edge();
        }
    }
}

impl Device for IdeController {
    /// Port read; `offset` per the module table (absolute legacy port numbers, or
    /// [`BUS_MASTER_OFFSET`] + n). A read at the Data port moves `data.len()` bytes; other
    /// registers are byte-wide (wider reads cover consecutive ports). Reading Status clears the
    /// selected drive's pending interrupt; Alternate Status does not. Unknown offsets read 0xFF.
    fn read(&mut self, now: Nanos, offset: u64, data: &mut [u8]) {
        self.advance(now);
        data.fill(0xFF);
        match decode(offset) {
            Some(Port::Command(ch, 0)) => self.channels[ch].data_read(&mut self.env, data),
            Some(Port::BusMaster(o)) => {
                for (i, b) in data.iter_mut().enumerate() {
                    let o = o + i as u64;
                    if o < BUS_MASTER_SIZE {
                        *b = self.channels[(o / 8) as usize].bm_read(o % 8);
                    }
                }
            }
            _ => {
                for (i, b) in data.iter_mut().enumerate() {
                    *b = match decode(offset.wrapping_add(i as u64)) {
                        Some(Port::Command(ch, 0)) => {
                            let mut one = [0xFF];
                            self.channels[ch].data_read(&mut self.env, &mut one);
                            one[0]
                        }
                        Some(Port::Command(ch, r)) => self.channels[ch].read_reg(r),
                        Some(Port::Control(ch)) => self.channels[ch].alt_status(),
                        Some(Port::BusMaster(o)) => self.channels[(o / 8) as usize].bm_read(o % 8),
                        None => 0xFF,
                    };
                }
            }
        }
        self.run_due();
    }

    /// Port write; `offset` as for [`Device::read`]. A write at the Data port moves
    /// `data.len()` bytes; other registers are byte-wide. Unknown offsets are ignored.
    fn write(&mut self, now: Nanos, offset: u64, data: &[u8]) {
        self.advance(now);
        match decode(offset) {
            Some(Port::Command(ch, 0)) => self.channels[ch].data_write(&mut self.env, data),
            _ => {
                for (i, &v) in data.iter().enumerate() {
                    match decode(offset.wrapping_add(i as u64)) {
                        Some(Port::Command(ch, 0)) => {
                            self.channels[ch].data_write(&mut self.env, &[v])
                        }
                        Some(Port::Command(ch, r)) => {
                            self.channels[ch].write_reg(&mut self.env, r, v)
                        }
                        Some(Port::Control(ch)) => self.channels[ch].write_devctl(v),
                        Some(Port::BusMaster(o)) => {
                            self.channels[(o / 8) as usize].bm_write(&mut self.env, o % 8, v)
                        }
                        None => {}
                    }
                }
            }
        }
        self.run_due();
    }

    /// Earliest scheduled command step of any drive.
    fn next_deadline(&self) -> Option<Nanos> {
        self.channels
            .iter()
            .flat_map(|c| c.drives.iter())
            .filter_map(|d| d.pending.map(|(t, _)| t))
            .min()
    }

    /// Runs the command steps due at `now` (completions raise the IRQ outputs).
    fn tick(&mut self, now: Nanos) {
        self.advance(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DmaError;
    use heron_block::BlockError;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;
    use std::sync::{Arc, Mutex};

    /// Default content of test media: a function of the byte offset.
    fn pattern(o: u64) -> u8 {
        ((o >> 9) as u8).wrapping_mul(31) ^ (o as u8) ^ ((o >> 11) as u8)
    }

    #[derive(Default)]
    struct DiskState {
        written: HashMap<u64, u8>,
        size: u64,
        flushes: usize,
        fail_reads: bool,
        fail_flush: bool,
        read_only: bool,
    }

    /// Sparse in-memory backend: unwritten bytes read as `pattern`.
    #[derive(Clone)]
    struct TestDisk(Arc<Mutex<DiskState>>);

    impl TestDisk {
        fn new(size: u64) -> Self {
            TestDisk(Arc::new(Mutex::new(DiskState {
                size,
                ..Default::default()
            })))
        }
        fn byte(&self, o: u64) -> u8 {
            let s = self.0.lock().unwrap();
            s.written.get(&o).copied().unwrap_or(pattern(o))
        }
    }

    impl BlockBackend for TestDisk {
        fn size(&self) -> u64 {
            self.0.lock().unwrap().size
        }
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            let s = self.0.lock().unwrap();
            if s.fail_reads {
                return Err(BlockError::Format("injected read error".into()));
            }
            if offset + buf.len() as u64 > s.size {
                return Err(BlockError::OutOfRange {
                    offset,
                    len: buf.len() as u64,
                    size: s.size,
                });
            }
            for (i, b) in buf.iter_mut().enumerate() {
                let o = offset + i as u64;
                *b = s.written.get(&o).copied().unwrap_or(pattern(o));
            }
            Ok(())
        }
        fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
            let mut s = self.0.lock().unwrap();
            if s.read_only {
                return Err(BlockError::ReadOnly);
            }
            if offset + buf.len() as u64 > s.size {
                return Err(BlockError::OutOfRange {
                    offset,
                    len: buf.len() as u64,
                    size: s.size,
                });
            }
            for (i, &b) in buf.iter().enumerate() {
                s.written.insert(offset + i as u64, b);
            }
            Ok(())
        }
        fn flush(&mut self) -> Result<(), BlockError> {
            let mut s = self.0.lock().unwrap();
            s.flushes += 1;
            if s.fail_flush {
                Err(BlockError::Format("injected flush error".into()))
            } else {
                Ok(())
            }
        }
        fn read_only(&self) -> bool {
            self.0.lock().unwrap().read_only
        }
    }

    /// Vec-backed guest RAM.
    #[derive(Clone)]
    struct Ram(Rc<RefCell<Vec<u8>>>);

    impl Ram {
        fn new(size: usize) -> Self {
            Ram(Rc::new(RefCell::new(vec![0; size])))
        }
        fn put(&self, addr: usize, data: &[u8]) {
            self.0.borrow_mut()[addr..addr + data.len()].copy_from_slice(data);
        }
        fn get(&self, addr: usize, len: usize) -> Vec<u8> {
            self.0.borrow()[addr..addr + len].to_vec()
        }
        fn prd(&self, table: usize, entries: &[(u32, u32, bool)]) {
            for (i, &(addr, len, eot)) in entries.iter().enumerate() {
                let ctl = (len & 0xFFFF) | if eot { 0x8000_0000 } else { 0 };
                self.put(table + 8 * i, &addr.to_le_bytes());
                self.put(table + 8 * i + 4, &ctl.to_le_bytes());
            }
        }
    }

    impl DmaMemory for Ram {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
            let m = self.0.borrow();
            let err = DmaError {
                addr,
                len: buf.len() as u64,
            };
            let end = addr.checked_add(buf.len() as u64).ok_or(err)?;
            if end > m.len() as u64 {
                return Err(err);
            }
            buf.copy_from_slice(&m[addr as usize..end as usize]);
            Ok(())
        }
        fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), DmaError> {
            let mut m = self.0.borrow_mut();
            let err = DmaError {
                addr,
                len: buf.len() as u64,
            };
            let end = addr.checked_add(buf.len() as u64).ok_or(err)?;
            if end > m.len() as u64 {
                return Err(err);
            }
            m[addr as usize..end as usize].copy_from_slice(buf);
            Ok(())
        }
    }

    const PRI: u64 = 0x1F0;
    const PCTL: u64 = 0x3F6;
    const SEC: u64 = 0x170;
    const SCTL: u64 = 0x376;
    const BM: u64 = BUS_MASTER_OFFSET;

    /// Test harness: the controller and a virtual clock.
    struct H {
        c: IdeController,
        t: Nanos,
    }

    impl H {
        fn new() -> Self {
            H {
                c: IdeController::new(),
                t: 1000,
            }
        }
        fn with_disk(size: u64) -> (Self, TestDisk) {
            let mut h = H::new();
            let d = TestDisk::new(size);
            h.c.attach(
                IdeChannel::Primary,
                IdeDrive::Master,
                IdeMedia::HardDisk(Box::new(d.clone())),
            );
            (h, d)
        }
        fn outb(&mut self, port: u64, v: u8) {
            self.t += 10;
            self.c.write(self.t, port, &[v]);
        }
        fn inb(&mut self, port: u64) -> u8 {
            self.t += 10;
            let mut b = [0u8];
            self.c.read(self.t, port, &mut b);
            b[0]
        }
        fn outw(&mut self, port: u64, v: u16) {
            self.t += 10;
            self.c.write(self.t, port, &v.to_le_bytes());
        }
        fn inw(&mut self, port: u64) -> u16 {
            self.t += 10;
            let mut b = [0u8; 2];
            self.c.read(self.t, port, &mut b);
            u16::from_le_bytes(b)
        }
        fn inl(&mut self, port: u64) -> u32 {
            self.t += 10;
            let mut b = [0u8; 4];
            self.c.read(self.t, port, &mut b);
            u32::from_le_bytes(b)
        }
        fn outl(&mut self, port: u64, v: u32) {
            self.t += 10;
            self.c.write(self.t, port, &v.to_le_bytes());
        }
        /// Runs every scheduled step (to quiescence).
        fn run(&mut self) {
            for _ in 0..10_000 {
                match self.c.next_deadline() {
                    Some(d) => {
                        self.t = self.t.max(d);
                        self.c.tick(self.t);
                    }
                    None => return,
                }
            }
            panic!("controller never settles");
        }
        fn read_block(&mut self, base: u64, bytes: usize) -> Vec<u8> {
            let mut v = Vec::with_capacity(bytes);
            for _ in 0..bytes / 2 {
                v.extend_from_slice(&self.inw(base).to_le_bytes());
            }
            v
        }
        fn write_block(&mut self, base: u64, data: &[u8]) {
            for c in data.chunks(2) {
                self.outw(base, u16::from_le_bytes([c[0], c[1]]));
            }
        }
        /// Loads a 28-bit LBA task file and issues `cmd` to the primary master.
        fn lba28(&mut self, base: u64, cmd: u8, lba: u32, count: u8) {
            self.outb(base + 2, count);
            self.outb(base + 3, lba as u8);
            self.outb(base + 4, (lba >> 8) as u8);
            self.outb(base + 5, (lba >> 16) as u8);
            self.outb(base + 6, 0xE0 | ((lba >> 24) as u8 & 0x0F));
            self.outb(base + 7, cmd);
        }
        fn identify(&mut self, base: u64, cmd: u8) -> [u16; 256] {
            self.outb(base + 7, cmd);
            self.run();
            let mut w = [0u16; 256];
            for x in w.iter_mut() {
                *x = self.inw(base);
            }
            w
        }
    }

    fn ata_str(words: &[u16]) -> String {
        words
            .iter()
            .flat_map(|w| [(w >> 8) as u8 as char, *w as u8 as char])
            .collect()
    }

    fn checksum_ok(w: &[u16; 256]) -> bool {
        let sum = w.iter().fold(0u8, |s, &x| {
            s.wrapping_add(x as u8).wrapping_add((x >> 8) as u8)
        });
        sum == 0 && w[255] & 0xFF == 0xA5
    }

    #[test]
    fn identify_device_contents() {
        let (mut h, _d) = H::with_disk(100_000 * 512);
        assert_eq!(h.inb(PRI + 7), STATUS_DRDY | STATUS_DSC);
        h.outb(PRI + 6, 0xA0);
        h.outb(PRI + 7, CMD_IDENTIFY_DEVICE);
        assert_eq!(h.inb(PCTL) & (STATUS_BSY | STATUS_DRQ), STATUS_BSY);
        assert!(!h.c.irq14_level(), "no interrupt while BSY");
        h.run();
        assert!(h.c.irq14_level());
        assert_eq!(h.inb(PCTL), 0x58);
        assert!(h.c.irq14_level(), "Alternate Status does not acknowledge");
        assert_eq!(h.inb(PRI + 7), 0x58);
        assert!(!h.c.irq14_level(), "Status acknowledges");
        let mut w = [0u16; 256];
        for x in w.iter_mut() {
            *x = h.inw(PRI);
        }
        assert_eq!(h.inb(PRI + 7), 0x50, "DRQ clear after the block");
        assert!(!h.c.irq14_level());
        assert_eq!(w[0], 0x0040);
        assert_eq!((w[1], w[3], w[6]), (99, 16, 63));
        assert_eq!(ata_str(&w[27..47]).trim_end(), "HERON HARDDISK");
        assert_eq!(ata_str(&w[10..20]).trim_end(), "HERON000000000000001");
        assert_eq!(ata_str(&w[23..27]).trim_end(), "1.0");
        assert_eq!(w[47], 0x8010);
        assert_eq!(w[49] & 0x0300, 0x0300, "LBA and DMA");
        assert_eq!(w[53], 0x0007);
        assert_eq!((w[54], w[55], w[56]), (99, 16, 63));
        assert_eq!(w[57] as u32 | (w[58] as u32) << 16, 99 * 16 * 63);
        assert_eq!(w[59], 0x0110, "multiple 16 valid");
        assert_eq!(w[60] as u32 | (w[61] as u32) << 16, 100_000);
        assert_eq!(w[63], 0x0407, "MWDMA 0-2, mode 2 selected");
        assert_eq!(w[64], 0x0003);
        assert_eq!(w[80] & 0x00F0, 0x00F0);
        assert_ne!(w[83] & (1 << 10), 0, "48-bit supported");
        assert_ne!(w[83] & (1 << 13), 0, "FLUSH CACHE EXT supported");
        assert_eq!(w[83] >> 14, 1);
        assert_ne!(w[86] & (1 << 10), 0, "48-bit enabled");
        assert_ne!(w[85] & (1 << 5), 0, "write cache enabled");
        assert_eq!(w[88] & 0x3F, 0x3F);
        assert_ne!(w[93] & (1 << 13), 0, "80-conductor cable");
        assert_eq!(w[93] & 0xC000, 0x4000);
        let n = (0..4).fold(0u64, |a, i| a | (w[100 + i] as u64) << (16 * i));
        assert_eq!(n, 100_000);
        assert!(checksum_ok(&w));
        // Features change IDENTIFY: UDMA 2, write cache off.
        h.outb(PRI + 1, 0x03);
        h.outb(PRI + 2, 0x42);
        h.outb(PRI + 7, CMD_SET_FEATURES);
        h.run();
        assert_eq!(h.inb(PRI + 7), 0x50);
        h.outb(PRI + 1, 0x82);
        h.outb(PRI + 7, CMD_SET_FEATURES);
        h.run();
        let w = h.identify(PRI, CMD_IDENTIFY_DEVICE);
        assert_eq!((w[63], w[88]), (0x0007, 0x043F));
        assert_eq!(w[85] & (1 << 5), 0);
        assert!(checksum_ok(&w));
        // Unsupported subcommand aborts.
        h.outb(PRI + 1, 0x77);
        h.outb(PRI + 7, CMD_SET_FEATURES);
        h.run();
        assert_eq!((h.inb(PRI + 7), h.inb(PRI + 1)), (0x41, ERROR_ABRT));
    }

    #[test]
    fn pio_read_sectors_drq_irq_sequence() {
        let (mut h, _d) = H::with_disk(1000 * 512);
        h.lba28(PRI, CMD_READ_SECTORS, 5, 3);
        assert_ne!(h.inb(PCTL) & STATUS_BSY, 0);
        let mut data = Vec::new();
        for block in 0..3 {
            assert!(!h.c.irq14_level());
            h.run();
            assert!(h.c.irq14_level(), "INTRQ for block {block}");
            assert_eq!(h.inb(PRI + 7), 0x58);
            if block == 1 {
                for _ in 0..128 {
                    data.extend_from_slice(&h.inl(PRI).to_le_bytes());
                }
            } else {
                data.extend(h.read_block(PRI, 512));
            }
            if block < 2 {
                assert_eq!(h.inb(PCTL) & (STATUS_BSY | STATUS_DRQ), STATUS_BSY);
            }
        }
        assert_eq!(h.inb(PRI + 7), 0x50, "idle after the last block");
        assert_eq!(h.c.next_deadline(), None);
        assert!(
            !h.c.irq14_level(),
            "no interrupt after the last data-in block"
        );
        let want: Vec<u8> = (5 * 512..8 * 512).map(pattern).collect();
        assert_eq!(data, want);
        // Data port reads with DRQ clear read all ones.
        assert_eq!(h.inw(PRI), 0xFFFF);
        // Sector count 0 means 256 sectors.
        h.lba28(PRI, CMD_READ_SECTORS, 0, 0);
        let mut blocks = 0;
        loop {
            h.run();
            if h.inb(PRI + 7) & STATUS_DRQ == 0 {
                break;
            }
            h.read_block(PRI, 512);
            blocks += 1;
        }
        assert_eq!(blocks, 256);
    }

    #[test]
    fn pio_write_multiple() {
        let (mut h, d) = H::with_disk(1000 * 512);
        // Invalid multiple counts abort; 0 disables READ/WRITE MULTIPLE.
        h.outb(PRI + 2, 3);
        h.outb(PRI + 7, CMD_SET_MULTIPLE_MODE);
        h.run();
        assert_eq!(h.inb(PRI + 7), 0x41);
        h.outb(PRI + 2, 0);
        h.outb(PRI + 7, CMD_SET_MULTIPLE_MODE);
        h.run();
        assert_eq!(h.inb(PRI + 7), 0x50);
        h.lba28(PRI, CMD_READ_MULTIPLE, 0, 1);
        h.run();
        assert_eq!((h.inb(PRI + 7), h.inb(PRI + 1)), (0x41, ERROR_ABRT));
        h.outb(PRI + 2, 2);
        h.outb(PRI + 7, CMD_SET_MULTIPLE_MODE);
        h.run();
        assert!(h.c.irq14_level());
        assert_eq!(h.inb(PRI + 7), 0x50);

        let data: Vec<u8> = (0..3 * 512).map(|i| (i * 7 + 3) as u8).collect();
        h.lba28(PRI, CMD_WRITE_MULTIPLE, 10, 3);
        h.run();
        assert_eq!(h.inb(PCTL), 0x58, "DRQ for the first block");
        assert!(
            !h.c.irq14_level(),
            "no interrupt before the first data-out block"
        );
        h.write_block(PRI, &data[..1024]);
        assert_eq!(h.inb(PCTL) & (STATUS_BSY | STATUS_DRQ), STATUS_BSY);
        h.run();
        assert!(h.c.irq14_level());
        assert_eq!(h.inb(PRI + 7), 0x58, "DRQ for the second (short) block");
        h.write_block(PRI, &data[1024..]);
        assert!(!h.c.irq14_level());
        h.run();
        assert!(h.c.irq14_level(), "completion interrupt");
        assert_eq!(h.inb(PRI + 7), 0x50);
        for (i, &b) in data.iter().enumerate() {
            assert_eq!(d.byte(10 * 512 + i as u64), b);
        }
        // Read it back with READ MULTIPLE: blocks of 2 and 1.
        h.lba28(PRI, CMD_READ_MULTIPLE, 10, 3);
        h.run();
        let mut back = h.read_block(PRI, 1024);
        h.run();
        back.extend(h.read_block(PRI, 512));
        assert_eq!(back, data);
        assert_eq!(h.inb(PRI + 7), 0x50);
    }

    #[test]
    fn lba48_hob_registers() {
        let (mut h, d) = H::with_disk(1 << 50);
        let lba: u64 = 0x0001_2345_6789;
        // Previous-content FIFO: write the high bytes first, then the low bytes.
        h.outb(PRI + 2, 0x00);
        h.outb(PRI + 3, (lba >> 24) as u8);
        h.outb(PRI + 4, (lba >> 32) as u8);
        h.outb(PRI + 5, (lba >> 40) as u8);
        h.outb(PRI + 2, 0x02);
        h.outb(PRI + 3, lba as u8);
        h.outb(PRI + 4, (lba >> 8) as u8);
        h.outb(PRI + 5, (lba >> 16) as u8);
        h.outb(PRI + 6, 0x40);
        assert_eq!(
            [
                h.inb(PRI + 2),
                h.inb(PRI + 3),
                h.inb(PRI + 4),
                h.inb(PRI + 5)
            ],
            [0x02, 0x89, 0x67, 0x45]
        );
        h.outb(PCTL, DEVCTL_HOB);
        assert_eq!(
            [
                h.inb(PRI + 2),
                h.inb(PRI + 3),
                h.inb(PRI + 4),
                h.inb(PRI + 5)
            ],
            [0x00, 0x23, 0x01, 0x00]
        );
        // Writing a Command Block register clears HOB.
        h.outb(PRI + 1, 0);
        assert_eq!(h.inb(PRI + 3), 0x89);
        let data: Vec<u8> = (0..1024).map(|i| (i as u8) ^ 0x5A).collect();
        h.outb(PRI + 7, CMD_WRITE_SECTORS_EXT);
        h.run();
        h.write_block(PRI, &data[..512]);
        h.run();
        h.write_block(PRI, &data[512..]);
        h.run();
        assert_eq!(h.inb(PRI + 7), 0x50);
        for i in 0..1024 {
            assert_eq!(d.byte(lba * 512 + i), data[i as usize]);
        }
        // 28-bit READ SECTORS ignores the HOB bytes: LBA 0x4456789 (device bits 3:0 = 4).
        h.outb(PRI + 6, 0x44);
        h.outb(PRI + 2, 1);
        h.outb(PRI + 7, CMD_READ_SECTORS);
        h.run();
        let got = h.read_block(PRI, 512);
        let want: Vec<u8> = (0x445_6789u64 * 512..0x445_678Au64 * 512)
            .map(pattern)
            .collect();
        assert_eq!(got, want);
        // IDENTIFY capacity words: 28-bit field saturates.
        let w = h.identify(PRI, CMD_IDENTIFY_DEVICE);
        assert_eq!((w[60], w[61]), (0xFFFF, 0x0FFF));
        assert_eq!(w[100..104], [0, 0, 0x0200, 0]);
        // Out of range 48-bit address: IDNF.
        for v in [0u8, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0] {
            let _ = v;
        }
        h.outb(PRI + 2, 0);
        h.outb(PRI + 5, 0xFF);
        h.outb(PRI + 2, 1);
        h.outb(PRI + 5, 0);
        h.outb(PRI + 7, CMD_READ_SECTORS_EXT);
        h.run();
        assert_eq!((h.inb(PRI + 7), h.inb(PRI + 1)), (0x41, ERROR_IDNF));
    }

    fn dma_setup(h: &mut H, ram: &Ram, table: u32, to_memory: bool) {
        h.outl(BM + 4, table);
        h.outb(BM, if to_memory { BMIC_RWCON } else { 0 });
        h.outb(BM + 2, BMIS_ERROR | BMIS_INTERRUPT);
        let _ = ram;
    }

    #[test]
    fn dma_read_and_write_through_prd_table() {
        let (mut h, d) = H::with_disk(1000 * 512);
        let ram = Ram::new(1 << 20);
        h.c.set_dma_memory(Box::new(ram.clone()));
        h.c.set_bus_master_enabled(true);
        // READ DMA of 3 sectors into two regions.
        ram.prd(0x1000, &[(0x10000, 512, false), (0x20000, 1024, true)]);
        dma_setup(&mut h, &ram, 0x1000, true);
        assert_eq!(h.inl(BM + 4), 0x1000);
        h.lba28(PRI, CMD_READ_DMA, 7, 3);
        h.outb(BM, BMIC_RWCON | BMIC_START);
        assert_eq!(h.inb(BM + 2) & BMIS_ACTIVE, BMIS_ACTIVE);
        h.run();
        assert!(h.c.irq14_level());
        assert_eq!(h.inb(BM + 2), BMIS_INTERRUPT, "PRD table exhausted exactly");
        assert_eq!(h.inb(PRI + 7), 0x50);
        assert_eq!(
            ram.get(0x10000, 512),
            (7 * 512..8 * 512).map(pattern).collect::<Vec<_>>()
        );
        assert_eq!(
            ram.get(0x20000, 1024),
            (8 * 512..10 * 512).map(pattern).collect::<Vec<_>>()
        );
        h.outb(BM, BMIC_RWCON);
        h.outb(BM + 2, BMIS_INTERRUPT);
        assert_eq!(h.inb(BM + 2), 0);

        // WRITE DMA of 2 sectors from one region; start the engine before the command.
        let src: Vec<u8> = (0..1024).map(|i| (i * 13) as u8).collect();
        ram.put(0x30000, &src);
        ram.prd(0x2000, &[(0x30000, 1024, true)]);
        dma_setup(&mut h, &ram, 0x2000, false);
        h.outb(BM, BMIC_START);
        h.lba28(PRI, CMD_WRITE_DMA, 500, 2);
        h.run();
        assert!(h.c.irq14_level());
        assert_eq!(h.inb(BM + 2), BMIS_INTERRUPT);
        assert_eq!(h.inb(PRI + 7), 0x50);
        for i in 0..1024u64 {
            assert_eq!(d.byte(500 * 512 + i), src[i as usize]);
        }
        h.outb(BM, 0);

        // PRD table larger than the transfer: Active and Interrupt both set.
        ram.prd(0x1000, &[(0x40000, 4096, true)]);
        dma_setup(&mut h, &ram, 0x1000, true);
        h.lba28(
            PRI,
            CMD_READ_DMA_EXT - CMD_READ_DMA_EXT + CMD_READ_DMA,
            1,
            1,
        );
        h.outb(BM, BMIC_RWCON | BMIC_START);
        h.run();
        assert_eq!(h.inb(BM + 2), BMIS_ACTIVE | BMIS_INTERRUPT);
        h.outb(BM, BMIC_RWCON);
        assert_eq!(h.inb(BM + 2), BMIS_INTERRUPT);

        // PRD table smaller than the transfer: stalls without interrupt, resumes on restart.
        ram.prd(0x1000, &[(0x50000, 512, true)]);
        dma_setup(&mut h, &ram, 0x1000, true);
        h.lba28(PRI, CMD_READ_DMA, 20, 2);
        h.outb(BM, BMIC_RWCON | BMIC_START);
        h.run();
        assert_eq!(h.inb(BM + 2), 0, "not active, no interrupt");
        assert!(!h.c.irq14_level());
        assert_eq!(
            h.inb(PRI + 7) & STATUS_DRQ,
            STATUS_DRQ,
            "drive still wants data"
        );
        ram.prd(0x1000, &[(0x50200, 512, true)]);
        h.outb(BM, BMIC_RWCON);
        h.outb(BM, BMIC_RWCON | BMIC_START);
        h.run();
        assert_eq!(h.inb(BM + 2), BMIS_INTERRUPT);
        assert_eq!(h.inb(PRI + 7), 0x50);
        assert_eq!(
            ram.get(0x50000, 1024),
            (20 * 512..22 * 512).map(pattern).collect::<Vec<_>>()
        );
        h.outb(BM, 0);

        // Bus master disabled in PCI: nothing moves until it is enabled.
        h.c.set_bus_master_enabled(false);
        ram.prd(0x1000, &[(0x60000, 512, true)]);
        dma_setup(&mut h, &ram, 0x1000, true);
        h.lba28(PRI, CMD_READ_DMA, 30, 1);
        h.outb(BM, BMIC_RWCON | BMIC_START);
        h.run();
        assert!(!h.c.irq14_level());
        assert_eq!(ram.get(0x60000, 4), vec![0; 4]);
        h.c.set_bus_master_enabled(true);
        h.run();
        assert!(h.c.irq14_level());
        assert_eq!(
            ram.get(0x60000, 512),
            (30 * 512..31 * 512).map(pattern).collect::<Vec<_>>()
        );
        // LBA48 READ DMA EXT with a 64 KiB descriptor (byte count 0).
        h.outb(BM, 0);
        ram.prd(0x1000, &[(0x70000, 0, true)]);
        dma_setup(&mut h, &ram, 0x1000, true);
        h.outb(PRI + 2, 0);
        h.outb(PRI + 2, 128);
        for r in 3..=5 {
            h.outb(PRI + r, 0);
            h.outb(PRI + r, 0);
        }
        h.outb(PRI + 6, 0x40);
        h.outb(PRI + 7, CMD_READ_DMA_EXT);
        h.outb(BM, BMIC_RWCON | BMIC_START);
        h.run();
        assert_eq!(h.inb(BM + 2), BMIS_INTERRUPT);
        assert!(ram.get(0x70000, 0x10000) == (0..0x10000).map(pattern).collect::<Vec<_>>());
    }

    #[test]
    fn dma_outside_ram_sets_error() {
        let (mut h, _d) = H::with_disk(1000 * 512);
        let ram = Ram::new(1 << 20);
        h.c.set_dma_memory(Box::new(ram.clone()));
        h.c.set_bus_master_enabled(true);
        ram.prd(0x1000, &[(0xFFF0_0000, 512, true)]);
        dma_setup(&mut h, &ram, 0x1000, true);
        h.lba28(PRI, CMD_READ_DMA, 0, 1);
        h.outb(BM, BMIC_RWCON | BMIC_START);
        h.run();
        assert!(h.c.irq14_level());
        assert_eq!(h.inb(BM + 2), BMIS_ERROR | BMIS_INTERRUPT);
        assert_eq!((h.inb(PRI + 7), h.inb(PRI + 1)), (0x41, ERROR_ABRT));
        h.outb(BM, 0);
        // The PRD table itself outside RAM.
        dma_setup(&mut h, &ram, 0xFFFF_F000, false);
        h.lba28(PRI, CMD_WRITE_DMA, 0, 1);
        h.outb(BM, BMIC_START);
        h.run();
        assert_eq!(h.inb(BM + 2), BMIS_ERROR | BMIS_INTERRUPT);
        assert_eq!(h.inb(PRI + 7) & STATUS_ERR, STATUS_ERR);
        // No DMA memory at all.
        let (mut h, _d) = H::with_disk(1000 * 512);
        h.c.set_bus_master_enabled(true);
        h.lba28(PRI, CMD_READ_DMA, 0, 1);
        h.outb(BM, BMIC_RWCON | BMIC_START);
        h.run();
        assert_eq!(h.inb(BM + 2), BMIS_ERROR | BMIS_INTERRUPT);
    }

    #[test]
    fn srst_signatures_and_absent_drives() {
        let (mut h, _d) = H::with_disk(1000 * 512);
        h.c.attach(IdeChannel::Primary, IdeDrive::Slave, IdeMedia::CdRom(None));
        // A transfer in progress is abandoned by SRST.
        h.lba28(PRI, CMD_READ_SECTORS, 0, 2);
        h.run();
        h.outb(PCTL, DEVCTL_SRST);
        assert_eq!(h.inb(PCTL), STATUS_BSY);
        h.outb(PRI + 7, CMD_IDENTIFY_DEVICE); // ignored while in reset
        h.outb(PCTL, 0);
        assert_eq!(h.c.next_deadline(), None);
        h.outb(PRI + 6, 0xA0);
        assert_eq!(
            [
                h.inb(PRI + 1),
                h.inb(PRI + 2),
                h.inb(PRI + 3),
                h.inb(PRI + 4),
                h.inb(PRI + 5)
            ],
            [0x01, 0x01, 0x01, 0x00, 0x00]
        );
        assert_eq!(h.inb(PRI + 7), 0x50);
        h.outb(PRI + 6, 0xB0);
        assert_eq!(h.inb(PRI + 6), 0xB0);
        assert_eq!(
            [
                h.inb(PRI + 1),
                h.inb(PRI + 2),
                h.inb(PRI + 3),
                h.inb(PRI + 4),
                h.inb(PRI + 5)
            ],
            [0x01, 0x01, 0x01, 0x14, 0xEB]
        );
        assert_eq!(
            h.inb(PRI + 7),
            0x00,
            "packet device: DRDY clear after reset"
        );
        // EXECUTE DEVICE DIAGNOSTIC: signatures and an interrupt.
        h.outb(PRI + 6, 0xA0);
        h.outb(PRI + 4, 0x55);
        h.outb(PRI + 7, CMD_EXECUTE_DEVICE_DIAGNOSTIC);
        h.run();
        assert!(h.c.irq14_level());
        assert_eq!((h.inb(PRI + 1), h.inb(PRI + 4)), (0x01, 0x00));
        assert_eq!(h.inb(PRI + 7), 0x50);
        // ATAPI DEVICE RESET: signature, no interrupt.
        h.outb(PRI + 6, 0xB0);
        h.outb(PRI + 4, 0x00);
        h.outb(PRI + 7, CMD_DEVICE_RESET);
        assert_eq!((h.inb(PRI + 4), h.inb(PRI + 5)), (0x14, 0xEB));
        assert!(!h.c.irq14_level());
        // DEVICE RESET to an ATA device aborts.
        h.outb(PRI + 6, 0xA0);
        h.outb(PRI + 7, CMD_DEVICE_RESET);
        h.run();
        assert_eq!((h.inb(PRI + 7), h.inb(PRI + 1)), (0x41, ERROR_ABRT));

        // Master only: the absent slave reads Status/Error 0, latches the other registers.
        let (mut h, _d) = H::with_disk(1000 * 512);
        h.outb(PRI + 6, 0xB0);
        h.outb(PRI + 2, 0x55);
        h.outb(PRI + 3, 0xAA);
        assert_eq!((h.inb(PRI + 2), h.inb(PRI + 3)), (0x55, 0xAA));
        assert_eq!((h.inb(PRI + 7), h.inb(PCTL), h.inb(PRI + 1)), (0, 0, 0));
        h.outb(PRI + 7, CMD_IDENTIFY_DEVICE);
        assert_eq!(
            h.c.next_deadline(),
            None,
            "commands to an absent drive are ignored"
        );
        // Empty secondary channel floats.
        assert_eq!(
            (h.inb(SEC + 7), h.inb(SCTL), h.inb(SEC + 2)),
            (0xFF, 0xFF, 0xFF)
        );
        h.outb(SEC + 7, CMD_IDENTIFY_DEVICE);
        assert_eq!(h.c.next_deadline(), None);
        assert!(!h.c.irq15_level());
    }

    #[test]
    fn flush_reaches_backend() {
        let (mut h, d) = H::with_disk(1000 * 512);
        h.outb(PRI + 7, CMD_FLUSH_CACHE);
        h.run();
        assert_eq!(h.inb(PRI + 7), 0x50);
        h.outb(PRI + 7, CMD_FLUSH_CACHE_EXT);
        h.run();
        assert_eq!(h.inb(PRI + 7), 0x50);
        assert_eq!(d.0.lock().unwrap().flushes, 2);
        d.0.lock().unwrap().fail_flush = true;
        h.outb(PRI + 7, CMD_FLUSH_CACHE);
        h.run();
        assert!(h.c.irq14_level());
        assert_eq!((h.inb(PRI + 7), h.inb(PRI + 1)), (0x41, ERROR_ABRT));
        assert_eq!(d.0.lock().unwrap().flushes, 3);
    }

    #[test]
    fn nien_masks_the_interrupt_line() {
        let (mut h, _d) = H::with_disk(1000 * 512);
        h.outb(PCTL, DEVCTL_NIEN);
        h.outb(PRI + 7, CMD_CHECK_POWER_MODE);
        h.run();
        assert!(!h.c.irq14_level());
        assert_eq!(h.inb(BM + 2) & BMIS_INTERRUPT, 0);
        assert_eq!(h.inb(PRI + 2), 0xFF, "active/idle");
        h.outb(PCTL, 0);
        assert!(h.c.irq14_level(), "pending interrupt shows once unmasked");
        assert_eq!(
            h.inb(BM + 2) & BMIS_INTERRUPT,
            BMIS_INTERRUPT,
            "rising edge latched"
        );
        h.outb(BM + 2, BMIS_INTERRUPT);
        h.inb(PRI + 7);
        assert!(!h.c.irq14_level());
        // With nIEN clear the bus master Interrupt bit follows INTRQ.
        h.outb(PRI + 7, CMD_IDLE_IMMEDIATE);
        h.run();
        assert!(h.c.irq14_level());
        assert_eq!(h.inb(BM + 2) & BMIS_INTERRUPT, BMIS_INTERRUPT);
        // Selecting the other (absent) drive drops the line.
        h.outb(PRI + 6, 0xB0);
        assert!(!h.c.irq14_level());
    }

    #[test]
    fn errors_unknown_commands_and_read_only() {
        let (mut h, d) = H::with_disk(1000 * 512);
        for cmd in [CMD_NOP, 0x5C, CMD_PACKET, CMD_IDENTIFY_PACKET_DEVICE, 0xFF] {
            h.outb(PRI + 7, cmd);
            h.run();
            assert!(h.c.irq14_level());
            assert_eq!(
                (h.inb(PRI + 7), h.inb(PRI + 1)),
                (0x41, ERROR_ABRT),
                "cmd {cmd:#x}"
            );
        }
        // A command clears the previous error.
        h.outb(PRI + 7, CMD_IDLE_IMMEDIATE);
        h.run();
        assert_eq!((h.inb(PRI + 7), h.inb(PRI + 1)), (0x50, 0));
        // Backend read error: UNC with the failing LBA.
        d.0.lock().unwrap().fail_reads = true;
        h.lba28(PRI, CMD_READ_SECTORS, 0x345, 2);
        h.run();
        assert_eq!((h.inb(PRI + 7), h.inb(PRI + 1)), (0x41, ERROR_UNC));
        assert_eq!(
            (h.inb(PRI + 3), h.inb(PRI + 4), h.inb(PRI + 5)),
            (0x45, 0x03, 0x00)
        );
        h.lba28(PRI, CMD_READ_VERIFY_SECTORS, 1, 1);
        h.run();
        assert_eq!(h.inb(PRI + 1), ERROR_UNC);
        d.0.lock().unwrap().fail_reads = false;
        h.lba28(PRI, CMD_READ_VERIFY_SECTORS, 1, 100);
        h.run();
        assert_eq!(h.inb(PRI + 7), 0x50);
        // Out of range: IDNF.
        h.lba28(PRI, CMD_READ_SECTORS, 999, 2);
        h.run();
        assert_eq!((h.inb(PRI + 7), h.inb(PRI + 1)), (0x41, ERROR_IDNF));
        // Read-only backend: writes abort.
        d.0.lock().unwrap().read_only = true;
        h.lba28(PRI, CMD_WRITE_SECTORS, 0, 1);
        h.run();
        assert_eq!((h.inb(PRI + 7), h.inb(PRI + 1)), (0x41, ERROR_ABRT));
    }

    #[test]
    fn chs_addressing_and_initialize_device_parameters() {
        let (mut h, _d) = H::with_disk(100_000 * 512);
        // C/H/S = 1/2/3 with the default 16 heads × 63 sectors.
        h.outb(PRI + 2, 1);
        h.outb(PRI + 3, 3);
        h.outb(PRI + 4, 1);
        h.outb(PRI + 5, 0);
        h.outb(PRI + 6, 0xA2);
        h.outb(PRI + 7, CMD_READ_SECTORS);
        h.run();
        let lba = (16 + 2) * 63 + 2;
        assert_eq!(
            h.read_block(PRI, 512),
            (lba * 512..(lba + 1) * 512)
                .map(pattern)
                .collect::<Vec<_>>()
        );
        // INITIALIZE DEVICE PARAMETERS: 4 heads, 32 sectors per track.
        h.outb(PRI + 2, 32);
        h.outb(PRI + 6, 0xA3);
        h.outb(PRI + 7, CMD_INITIALIZE_DEVICE_PARAMETERS);
        h.run();
        assert_eq!(h.inb(PRI + 7), 0x50);
        let w = h.identify(PRI, CMD_IDENTIFY_DEVICE);
        assert_eq!((w[54], w[55], w[56]), (781, 4, 32));
        assert_eq!(
            (w[1], w[3], w[6]),
            (99, 16, 63),
            "default geometry unchanged"
        );
        h.outb(PRI + 2, 1);
        h.outb(PRI + 3, 1);
        h.outb(PRI + 4, 0);
        h.outb(PRI + 6, 0xA1);
        h.outb(PRI + 7, CMD_READ_SECTORS);
        h.run();
        assert_eq!(
            h.read_block(PRI, 512),
            (32 * 512..33 * 512).map(pattern).collect::<Vec<_>>()
        );
        // Sector 0 does not exist; nor does head 4.
        h.outb(PRI + 3, 0);
        h.outb(PRI + 7, CMD_READ_SECTORS);
        h.run();
        assert_eq!(h.inb(PRI + 1), ERROR_IDNF);
        h.outb(PRI + 3, 1);
        h.outb(PRI + 6, 0xA4);
        h.outb(PRI + 7, CMD_READ_SECTORS);
        h.run();
        assert_eq!(h.inb(PRI + 1), ERROR_IDNF);
        // Zero sectors per track aborts.
        h.outb(PRI + 2, 0);
        h.outb(PRI + 7, CMD_INITIALIZE_DEVICE_PARAMETERS);
        h.run();
        assert_eq!(h.inb(PRI + 1), ERROR_ABRT);
        // Small disks still get a usable geometry.
        assert_eq!(
            ChsGeometry::for_sectors(64),
            ChsGeometry {
                cylinders: 1,
                heads: 1,
                sectors: 63
            }
        );
        assert_eq!(ChsGeometry::for_sectors(0).cylinders, 1);
        assert_eq!(ChsGeometry::for_sectors(1 << 40).cylinders, 16383);
    }

    // ----- ATAPI -----

    fn cd_harness(sectors: u64) -> (H, TestDisk) {
        let mut h = H::new();
        let m = TestDisk::new(sectors * 2048);
        h.c.attach(
            IdeChannel::Secondary,
            IdeDrive::Master,
            IdeMedia::CdRom(Some(Box::new(m.clone()))),
        );
        (h, m)
    }

    /// Result of one PIO packet command.
    struct PacketResult {
        data: Vec<u8>,
        chunks: Vec<usize>,
        status: u8,
        error: u8,
    }

    fn packet(h: &mut H, cdb: &[u8], limit: u16) -> PacketResult {
        let mut c = [0u8; 12];
        c[..cdb.len()].copy_from_slice(cdb);
        h.outb(SEC + 1, 0);
        h.outb(SEC + 4, limit as u8);
        h.outb(SEC + 5, (limit >> 8) as u8);
        h.outb(SEC + 6, 0xA0);
        h.outb(SEC + 7, CMD_PACKET);
        h.run();
        assert!(!h.c.irq15_level(), "no interrupt for the packet DRQ");
        assert_eq!(h.inb(SEC + 7) & (STATUS_BSY | STATUS_DRQ), STATUS_DRQ);
        assert_eq!(h.inb(SEC + 2) & 3, atapi::INT_REASON_COD);
        h.write_block(SEC, &c);
        assert_ne!(h.inb(SCTL) & STATUS_BSY, 0);
        let mut data = Vec::new();
        let mut chunks = Vec::new();
        loop {
            h.run();
            assert!(h.c.irq15_level());
            let st = h.inb(SEC + 7);
            let reason = h.inb(SEC + 2) & 3;
            if st & STATUS_DRQ == 0 {
                assert_eq!(reason, atapi::INT_REASON_COD | atapi::INT_REASON_IO);
                return PacketResult {
                    data,
                    chunks,
                    status: st,
                    error: h.inb(SEC + 1),
                };
            }
            assert_eq!(reason, atapi::INT_REASON_IO);
            let n = h.inb(SEC + 4) as usize | (h.inb(SEC + 5) as usize) << 8;
            chunks.push(n);
            let mut block = h.read_block(SEC, (n + 1) & !1);
            block.truncate(n);
            data.extend(block);
        }
    }

    #[test]
    fn atapi_identify_and_signature() {
        let (mut h, _m) = cd_harness(100);
        h.outb(SEC + 6, 0xA0);
        h.outb(SEC + 7, CMD_IDENTIFY_DEVICE);
        h.run();
        assert!(h.c.irq15_level());
        assert_eq!((h.inb(SEC + 7), h.inb(SEC + 1)), (0x41, ERROR_ABRT));
        assert_eq!((h.inb(SEC + 4), h.inb(SEC + 5)), (0x14, 0xEB));
        let w = h.identify(SEC, CMD_IDENTIFY_PACKET_DEVICE);
        assert_eq!(w[0], 0x85C0);
        assert_eq!(ata_str(&w[27..47]).trim_end(), "HERON CD-ROM");
        assert_ne!(w[49] & (1 << 8), 0, "DMA");
        assert_ne!(w[82] & (1 << 4), 0, "PACKET feature set");
        assert_ne!(w[93] & (1 << 13), 0);
        assert!(checksum_ok(&w));
        // ATA-only commands abort on a packet device.
        h.lba28(SEC, CMD_READ_SECTORS, 0, 1);
        h.run();
        assert_eq!((h.inb(SEC + 7), h.inb(SEC + 1)), (0x41, ERROR_ABRT));
    }

    #[test]
    fn atapi_inquiry_capacity_and_read() {
        let (mut h, _m) = cd_harness(50);
        let r = packet(&mut h, &[atapi::INQUIRY, 0, 0, 0, 36], 0xFFFE);
        assert_eq!((r.status, r.error), (STATUS_DRDY, 0));
        assert_eq!(r.data.len(), 36);
        assert_eq!((r.data[0], r.data[1]), (0x05, 0x80));
        assert_eq!(&r.data[8..13], b"HERON");
        let r = packet(&mut h, &[atapi::READ_CAPACITY_10], 0xFFFE);
        assert_eq!(r.data, vec![0, 0, 0, 49, 0, 0, 0x08, 0]);
        let r = packet(&mut h, &[atapi::READ_10, 0, 0, 0, 0, 3, 0, 0, 2], 0xFFFE);
        assert_eq!(r.status, STATUS_DRDY);
        assert_eq!(r.chunks, vec![4096]);
        assert_eq!(
            r.data,
            (3 * 2048..5 * 2048).map(pattern).collect::<Vec<_>>()
        );
        let r = packet(&mut h, &[atapi::TEST_UNIT_READY], 0);
        assert_eq!((r.status, r.data.len()), (STATUS_DRDY, 0));
    }

    #[test]
    fn atapi_byte_count_limit_splits_transfers() {
        let (mut h, _m) = cd_harness(50);
        let r = packet(&mut h, &[atapi::READ_10, 0, 0, 0, 0, 0, 0, 0, 3], 4096);
        assert_eq!(r.chunks, vec![4096, 2048]);
        assert_eq!(r.data, (0..3 * 2048).map(pattern).collect::<Vec<_>>());
        let r = packet(&mut h, &[atapi::READ_10, 0, 0, 0, 0, 0, 0, 0, 3], 1001);
        assert_eq!(r.chunks, vec![1000, 1000, 1000, 1000, 1000, 1000, 144]);
        assert_eq!(r.data, (0..3 * 2048).map(pattern).collect::<Vec<_>>());
        let r = packet(&mut h, &[atapi::INQUIRY, 0, 0, 0, 36], 8);
        assert_eq!(r.chunks, vec![8, 8, 8, 8, 4]);
        // Odd-length response: the last word carries a pad byte.
        let r = packet(&mut h, &[atapi::INQUIRY, 0, 0, 0, 5], 0xFFFE);
        assert_eq!(r.chunks, vec![5]);
        assert_eq!(r.data.len(), 5);
    }

    #[test]
    fn atapi_errors_and_request_sense() {
        let (mut h, _m) = cd_harness(50);
        let r = packet(&mut h, &[0xFF], 0xFFFE);
        assert_eq!((r.status, r.error), (STATUS_DRDY | STATUS_ERR, 0x50));
        let r = packet(&mut h, &[atapi::REQUEST_SENSE, 0, 0, 0, 18], 0xFFFE);
        assert_eq!(r.status, STATUS_DRDY);
        assert_eq!(
            (r.data[0], r.data[2], r.data[12], r.data[13]),
            (0x70, 5, 0x20, 0)
        );
        // LBA out of range.
        let r = packet(&mut h, &[atapi::READ_10, 0, 0, 0, 0, 49, 0, 0, 2], 0xFFFE);
        assert_eq!(r.error, 0x50);
        let r = packet(&mut h, &[atapi::REQUEST_SENSE, 0, 0, 0, 18], 0xFFFE);
        assert_eq!((r.data[2], r.data[12]), (5, 0x21));
        // Medium read error during the data phase: MEDIUM ERROR.
        _m.0.lock().unwrap().fail_reads = true;
        let r = packet(&mut h, &[atapi::READ_10, 0, 0, 0, 0, 0, 0, 0, 1], 0xFFFE);
        assert_eq!((r.status, r.error), (STATUS_DRDY | STATUS_ERR, 0x30));
        let r = packet(&mut h, &[atapi::REQUEST_SENSE, 0, 0, 0, 18], 0xFFFE);
        assert_eq!((r.data[2], r.data[12]), (3, 0x11));
    }

    #[test]
    fn atapi_no_medium_and_media_change() {
        let mut h = H::new();
        h.c.attach(
            IdeChannel::Secondary,
            IdeDrive::Master,
            IdeMedia::CdRom(None),
        );
        let r = packet(&mut h, &[atapi::TEST_UNIT_READY], 0);
        assert_eq!((r.status, r.error), (STATUS_DRDY | STATUS_ERR, 0x20));
        let r = packet(&mut h, &[atapi::REQUEST_SENSE, 0, 0, 0, 18], 0xFFFE);
        assert_eq!((r.data[2], r.data[12]), (2, 0x3A));
        let r = packet(&mut h, &[atapi::READ_CAPACITY_10], 0xFFFE);
        assert_eq!(r.error, 0x20);
        let m = TestDisk::new(10 * 2048);
        let old =
            h.c.change_cd_medium(IdeChannel::Secondary, IdeDrive::Master, Some(Box::new(m)))
                .unwrap();
        assert!(old.is_none());
        let r = packet(&mut h, &[atapi::TEST_UNIT_READY], 0);
        assert_eq!(r.error, 0x60, "UNIT ATTENTION after the change");
        let r = packet(&mut h, &[atapi::TEST_UNIT_READY], 0);
        assert_eq!((r.status, r.error), (STATUS_DRDY, 0));
        assert!(h
            .c
            .atapi(IdeChannel::Secondary, IdeDrive::Master)
            .unwrap()
            .medium_present());
        assert_eq!(
            h.c.change_cd_medium(IdeChannel::Primary, IdeDrive::Master, None)
                .err(),
            Some(IdeError::NotCdRom)
        );
        // Overlapped PACKET is not supported.
        h.outb(SEC + 1, 0x02);
        h.outb(SEC + 7, CMD_PACKET);
        h.run();
        assert_eq!((h.inb(SEC + 7), h.inb(SEC + 1)), (0x41, ERROR_ABRT));
    }

    #[test]
    fn atapi_dma_read() {
        let (mut h, _m) = cd_harness(50);
        let ram = Ram::new(1 << 20);
        h.c.set_dma_memory(Box::new(ram.clone()));
        h.c.set_bus_master_enabled(true);
        ram.prd(0x1000, &[(0x10000, 2048, false), (0x20000, 2048, true)]);
        h.outl(BM + 8 + 4, 0x1000);
        h.outb(BM + 8 + 2, 0x06);
        h.outb(BM + 8, BMIC_RWCON | BMIC_START);
        h.outb(SEC + 1, 0x01); // DMA
        h.outb(SEC + 4, 0);
        h.outb(SEC + 5, 0);
        h.outb(SEC + 6, 0xA0);
        h.outb(SEC + 7, CMD_PACKET);
        h.run();
        assert_eq!(h.inb(SEC + 2) & 3, atapi::INT_REASON_COD);
        h.write_block(SEC, &[atapi::READ_10, 0, 0, 0, 0, 7, 0, 0, 2, 0, 0, 0]);
        h.run();
        assert!(h.c.irq15_level());
        assert_eq!(h.inb(BM + 8 + 2), BMIS_INTERRUPT);
        assert_eq!(h.inb(SEC + 7), STATUS_DRDY);
        assert_eq!(h.inb(SEC + 2) & 3, 3);
        assert_eq!(
            ram.get(0x10000, 2048),
            (7 * 2048..8 * 2048).map(pattern).collect::<Vec<_>>()
        );
        assert_eq!(
            ram.get(0x20000, 2048),
            (8 * 2048..9 * 2048).map(pattern).collect::<Vec<_>>()
        );
        assert_eq!(h.inb(BM + 2), 0, "primary channel untouched");
        // An error packet with DMA requested completes without using the bus master.
        h.outb(BM + 8, BMIC_RWCON);
        h.outb(BM + 8 + 2, 0x06);
        h.outb(SEC + 1, 0x01);
        h.outb(SEC + 7, CMD_PACKET);
        h.run();
        h.write_block(SEC, &[0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        h.run();
        assert!(h.c.irq15_level());
        assert_eq!((h.inb(SEC + 7), h.inb(SEC + 1)), (0x41, 0x50));
        assert_eq!(
            h.inb(BM + 8 + 2),
            BMIS_INTERRUPT,
            "interrupt latched for libata"
        );
    }

    #[test]
    fn zero_delay_completes_during_the_access() {
        let (mut h, _d) = H::with_disk(1000 * 512);
        h.c.set_command_delay(0);
        assert_eq!(h.c.command_delay(), 0);
        h.outb(PRI + 7, CMD_IDENTIFY_DEVICE);
        assert_eq!(h.c.next_deadline(), None);
        assert!(h.c.irq14_level());
        assert_eq!(h.inb(PRI + 7), 0x58);
        h.read_block(PRI, 512);
        h.lba28(PRI, CMD_WRITE_SECTORS, 3, 2);
        assert_eq!(h.inb(PRI + 7), 0x58);
        h.write_block(PRI, &[0xAB; 512]);
        assert_eq!(h.inb(PRI + 7), 0x58);
        h.write_block(PRI, &[0xCD; 512]);
        assert_eq!(h.inb(PRI + 7), 0x50);
        assert_eq!(_d.byte(3 * 512), 0xAB);
        assert_eq!(_d.byte(4 * 512 + 511), 0xCD);
    }

    #[test]
    fn hardware_reset_and_detach() {
        let (mut h, _d) = H::with_disk(1000 * 512);
        h.outb(PRI + 2, 4);
        h.outb(PRI + 7, CMD_SET_MULTIPLE_MODE);
        h.run();
        h.outb(PCTL, DEVCTL_NIEN);
        h.c.reset();
        let w = h.identify(PRI, CMD_IDENTIFY_DEVICE);
        assert_eq!(w[59], 0x0110, "multiple mode back to its default");
        assert!(h.c.irq14_level(), "nIEN cleared by reset");
        assert!(matches!(
            h.c.detach(IdeChannel::Primary, IdeDrive::Master),
            Some(IdeMedia::HardDisk(_))
        ));
        assert!(h.c.detach(IdeChannel::Primary, IdeDrive::Master).is_none());
        assert_eq!(h.inb(PRI + 7), 0xFF);
        assert!(!format!("{:?}", h.c).is_empty());
    }

    /// xorshift64* — deterministic pseudo-random numbers for the fuzz test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn fuzz_random_port_traffic_never_panics() {
        for (seed, delay) in [
            (1u64, DEFAULT_COMMAND_DELAY),
            (2, 0),
            (3, 7),
            (4, DEFAULT_COMMAND_DELAY),
        ] {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
            let mut h = H::new();
            h.c.set_command_delay(delay);
            let disk = TestDisk::new(4096 * 512);
            h.c.attach(
                IdeChannel::Primary,
                IdeDrive::Master,
                IdeMedia::HardDisk(Box::new(disk.clone())),
            );
            h.c.attach(
                IdeChannel::Primary,
                IdeDrive::Slave,
                IdeMedia::CdRom(Some(Box::new(TestDisk::new(64 * 2048)))),
            );
            h.c.attach(
                IdeChannel::Secondary,
                IdeDrive::Master,
                IdeMedia::CdRom(None),
            );
            let ram = Ram::new(256 * 1024);
            // A valid-looking PRD table so that some DMA commands really transfer.
            ram.prd(0x100, &[(0x8000, 0x4000, false), (0x10000, 0, true)]);
            h.c.set_dma_memory(Box::new(ram.clone()));
            let ports: Vec<u64> = (PRI..PRI + 8)
                .chain(SEC..SEC + 8)
                .chain([PCTL, SCTL, 0x3F7, 0x377, 0x1EF, 0])
                .chain(BM..BM + 17)
                .collect();
            let commands = [
                0x00, 0x08, 0x10, 0x20, 0x24, 0x25, 0x29, 0x30, 0x34, 0x35, 0x39, 0x40, 0x42, 0x70,
                0x90, 0x91, 0xA0, 0xA1, 0xC4, 0xC5, 0xC6, 0xC8, 0xCA, 0xE0, 0xE1, 0xE5, 0xE7, 0xEA,
                0xEC, 0xEF,
            ];
            for _ in 0..150_000 {
                let port = ports[rng.below(ports.len() as u64) as usize];
                let size = [1usize, 2, 4, 3][rng.below(4) as usize];
                let r = rng.next();
                match rng.below(17) {
                    16 => {
                        // A whole packet command to the primary slave CD-ROM.
                        let ops = [
                            0x00, 0x03, 0x12, 0x1A, 0x1B, 0x1E, 0x25, 0x28, 0x2B, 0x43, 0x46, 0x4A,
                            0x51, 0x5A, 0xA0, 0xA8, 0xBB, 0xBD, 0x55,
                        ];
                        h.outb(PRI + 6, 0xB0);
                        h.outb(PRI + 1, (r & 1) as u8);
                        h.outb(PRI + 4, (r >> 8) as u8);
                        h.outb(PRI + 5, (r >> 16) as u8 & 0x3F);
                        h.outb(PRI + 7, CMD_PACKET);
                        if let Some(d) = h.c.next_deadline() {
                            h.t = h.t.max(d);
                            h.c.tick(h.t);
                        }
                        let mut cdb = [0u8; 12];
                        cdb[0] = ops[(r >> 24) as usize % ops.len()];
                        for b in cdb.iter_mut().skip(1) {
                            *b = if rng.below(3) == 0 {
                                rng.next() as u8
                            } else {
                                0
                            };
                        }
                        cdb[8] = (r >> 40) as u8 & 7;
                        h.write_block(PRI, &cdb);
                    }
                    0..=5 => {
                        let mut b = [0u8; 4];
                        h.t += rng.below(50);
                        h.c.read(h.t, port, &mut b[..size]);
                    }
                    6..=10 => {
                        h.t += rng.below(50);
                        h.c.write(h.t, port, &r.to_le_bytes()[..size]);
                    }
                    11 => {
                        // A plausible command to a random channel.
                        let base = if r & 1 == 0 { PRI } else { SEC };
                        let cmd = commands[(r >> 8) as usize % commands.len()];
                        let ctl = if base == PRI { PCTL } else { SCTL };
                        if r & 0x8 != 0 {
                            h.outb(ctl, DEVCTL_SRST);
                        }
                        h.outb(ctl, (r >> 56) as u8 & DEVCTL_NIEN);
                        h.outb(base + 6, 0xE0 | (r >> 4) as u8 & DEVICE_DEV);
                        for reg in 2..=5 {
                            h.outb(base + reg, 0);
                        }
                        h.outb(base + 2, (r >> 32) as u8 & 0x7);
                        h.outb(base + 3, (r >> 40) as u8);
                        h.outb(base + 4, (r >> 48) as u8 & 0x0F);
                        h.outb(base + 5, 0);
                        h.outb(base + 7, cmd);
                    }
                    12 => {
                        // Long data runs so that transfers actually finish.
                        let base = if r & 1 == 0 { PRI } else { SEC };
                        for _ in 0..(r >> 8) % 300 {
                            if r & 2 == 0 {
                                h.inw(base);
                            } else {
                                h.outw(base, (r >> 16) as u16);
                            }
                        }
                    }
                    13 => {
                        if let Some(d) = h.c.next_deadline() {
                            h.t = h.t.max(d);
                            h.c.tick(h.t);
                        }
                    }
                    14 => h.c.set_bus_master_enabled(r & 1 == 0),
                    _ => {
                        let medium: Option<Box<dyn BlockBackend>> = if r & 1 == 0 {
                            None
                        } else {
                            Some(Box::new(TestDisk::new((r >> 8) % 100 * 2048 + 7)))
                        };
                        let _ =
                            h.c.change_cd_medium(IdeChannel::Secondary, IdeDrive::Master, medium);
                        if r & 0x100 != 0 {
                            disk.0.lock().unwrap().fail_reads = r & 0x200 != 0;
                        }
                    }
                }
                let _ = (h.c.irq14_level(), h.c.irq15_level());
            }
            h.run();
        }
    }
}

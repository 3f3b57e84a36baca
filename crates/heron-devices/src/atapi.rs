//! ATAPI CD-ROM/DVD-ROM command layer: the PACKET interface's helpers (interrupt reason, byte
//! count limit, IDENTIFY PACKET DEVICE data) and the MMC/SPC commands that Linux's `sr` driver,
//! libata's ATAPI error handling and SeaBIOS's El Torito boot code issue.
//!
//! References: ATA/ATAPI-7 Vol. 1 (T13/1532D): IDENTIFY PACKET DEVICE, PACKET; Vol. 2: the
//! PACKET protocols (interrupt reason in the Sector Count register, byte count limit in
//! LBA Mid/High); SPC-3 (T10/1416-D): INQUIRY, REQUEST SENSE, REPORT LUNS, TEST UNIT READY,
//! MODE SENSE, sense data (fixed format, sense keys, additional sense codes); MMC-3
//! (T10/1363-D): features and profiles, the command descriptions (GET CONFIGURATION,
//! GET EVENT STATUS NOTIFICATION, MECHANISM STATUS, READ(10/12), READ CAPACITY,
//! READ DISC INFORMATION, READ TOC/PMA/ATIP, SET CD SPEED, START STOP UNIT, PREVENT ALLOW MEDIUM
//! REMOVAL) and the mode pages (0x01, 0x0D, 0x2A). References below name the command, page or
//! field of those documents.
//!
//! Structure: [`Atapi`] holds one drive's medium and SCSI state (sense data, unit attention,
//! tray, removal lock, pending media event) and executes a 12-byte command packet
//! ([`Atapi::execute`]), returning either a CHECK CONDITION [`Sense`] or what the data-in phase
//! must deliver ([`PacketData`]). The register-level PACKET protocol (DRQ phases, PIO chunking,
//! bus master DMA, interrupts) lives in [`crate::ide`], which owns the [`Atapi`] of each CD-ROM
//! drive.
//!
//! Modelling choices: the drive is read-only and has no audio; all packet commands are data-in
//! or non-data (commands with a data-out phase, e.g. MODE SELECT, are rejected as invalid
//! operation codes). The medium is a single-session, single-track data disc (track 1 at LBA 0,
//! 2048-byte user data sectors). Eject (START STOP UNIT with LoEj) opens the tray and keeps the
//! medium on it; a load closes the tray again and reports the medium as new.

use heron_block::BlockBackend;

/// Size of an ATAPI command packet in bytes (IDENTIFY PACKET DEVICE word 0 bits 1:0 = 00b).
pub const PACKET_SIZE: usize = 12;
/// Logical block size of CD/DVD user data in bytes (MMC-3, Mode 1 CD and DVD logical blocks).
pub const CD_SECTOR_SIZE: u64 = 2048;
/// Largest medium reported with the CD-ROM profile, in 2048-byte sectors (80 minutes × 60 s ×
/// 75 sectors/s); anything larger is reported as DVD-ROM (MMC-3, Profile List feature).
pub const CD_MAX_SECTORS: u64 = 80 * 60 * 75;
/// Interrupt reason (Sector Count register) bit 0: C/D — 1 = command packet or status, 0 = user
/// data (ATA/ATAPI-7 Vol. 2, PACKET protocols).
pub const INT_REASON_COD: u8 = 0x01;
/// Interrupt reason (Sector Count register) bit 1: I/O — 1 = transfer to the host.
pub const INT_REASON_IO: u8 = 0x02;
/// Interrupt reason (Sector Count register) bit 2: REL — bus release (overlap; never set here).
pub const INT_REASON_REL: u8 = 0x04;

/// SCSI operation code: TEST UNIT READY (SPC-3, TEST UNIT READY).
pub const TEST_UNIT_READY: u8 = 0x00;
/// SCSI operation code: REQUEST SENSE (SPC-3, REQUEST SENSE).
pub const REQUEST_SENSE: u8 = 0x03;
/// SCSI operation code: INQUIRY (SPC-3, INQUIRY).
pub const INQUIRY: u8 = 0x12;
/// SCSI operation code: MODE SENSE(6) (SPC-3, MODE SENSE(6)).
pub const MODE_SENSE_6: u8 = 0x1A;
/// SCSI operation code: START STOP UNIT (MMC-3, START STOP UNIT).
pub const START_STOP_UNIT: u8 = 0x1B;
/// SCSI operation code: PREVENT ALLOW MEDIUM REMOVAL (MMC-3, PREVENT ALLOW MEDIUM REMOVAL).
pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1E;
/// SCSI operation code: READ CAPACITY (10) (MMC-3, READ CAPACITY).
pub const READ_CAPACITY_10: u8 = 0x25;
/// SCSI operation code: READ (10) (MMC-3, READ (10)).
pub const READ_10: u8 = 0x28;
/// SCSI operation code: SEEK (10) (MMC-3, SEEK (10)).
pub const SEEK_10: u8 = 0x2B;
/// SCSI operation code: READ TOC/PMA/ATIP (MMC-3, READ TOC/PMA/ATIP).
pub const READ_TOC_PMA_ATIP: u8 = 0x43;
/// SCSI operation code: GET CONFIGURATION (MMC-3, GET CONFIGURATION).
pub const GET_CONFIGURATION: u8 = 0x46;
/// SCSI operation code: GET EVENT STATUS NOTIFICATION (MMC-3, GET EVENT STATUS NOTIFICATION).
pub const GET_EVENT_STATUS_NOTIFICATION: u8 = 0x4A;
/// SCSI operation code: READ DISC INFORMATION (MMC-3, READ DISC INFORMATION).
pub const READ_DISC_INFORMATION: u8 = 0x51;
/// SCSI operation code: MODE SENSE (10) (SPC-3, MODE SENSE(10); MMC-3 mode pages).
pub const MODE_SENSE_10: u8 = 0x5A;
/// SCSI operation code: REPORT LUNS (SPC-3, REPORT LUNS).
pub const REPORT_LUNS: u8 = 0xA0;
/// SCSI operation code: READ (12) (MMC-3, READ (12)).
pub const READ_12: u8 = 0xA8;
/// SCSI operation code: SET CD SPEED (MMC-3, SET CD SPEED).
pub const SET_CD_SPEED: u8 = 0xBB;
/// SCSI operation code: MECHANISM STATUS (MMC-3, MECHANISM STATUS).
pub const MECHANISM_STATUS: u8 = 0xBD;

/// Sense key NO SENSE (SPC-3, sense key descriptions).
pub const SENSE_NO_SENSE: u8 = 0x00;
/// Sense key NOT READY.
pub const SENSE_NOT_READY: u8 = 0x02;
/// Sense key MEDIUM ERROR.
pub const SENSE_MEDIUM_ERROR: u8 = 0x03;
/// Sense key ILLEGAL REQUEST.
pub const SENSE_ILLEGAL_REQUEST: u8 = 0x05;
/// Sense key UNIT ATTENTION.
pub const SENSE_UNIT_ATTENTION: u8 = 0x06;
/// Sense key ABORTED COMMAND.
pub const SENSE_ABORTED_COMMAND: u8 = 0x0B;

/// Additional sense code: UNRECOVERED READ ERROR (SPC-3, ASC and ASCQ assignments).
pub const ASC_UNRECOVERED_READ_ERROR: u8 = 0x11;
/// Additional sense code: INVALID COMMAND OPERATION CODE.
pub const ASC_INVALID_COMMAND_OPERATION_CODE: u8 = 0x20;
/// Additional sense code: LOGICAL BLOCK ADDRESS OUT OF RANGE.
pub const ASC_LBA_OUT_OF_RANGE: u8 = 0x21;
/// Additional sense code: INVALID FIELD IN CDB.
pub const ASC_INVALID_FIELD_IN_CDB: u8 = 0x24;
/// Additional sense code: NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED.
pub const ASC_MEDIUM_MAY_HAVE_CHANGED: u8 = 0x28;
/// Additional sense code: SAVING PARAMETERS NOT SUPPORTED.
pub const ASC_SAVING_PARAMETERS_NOT_SUPPORTED: u8 = 0x39;
/// Additional sense code: MEDIUM NOT PRESENT.
pub const ASC_MEDIUM_NOT_PRESENT: u8 = 0x3A;
/// Additional sense code: MEDIUM REMOVAL PREVENTED (with ASCQ 0x02).
pub const ASC_MEDIUM_REMOVAL_PREVENTED: u8 = 0x53;

/// MMC profile number of CD-ROM (MMC-3, profile list).
pub const PROFILE_CD_ROM: u16 = 0x0008;
/// MMC profile number of DVD-ROM (MMC-3, profile list).
pub const PROFILE_DVD_ROM: u16 = 0x0010;

/// Model string of IDENTIFY PACKET DEVICE words 27–46 (ATA/ATAPI-7 Vol. 1, IDENTIFY PACKET DEVICE).
pub const MODEL: &str = "HERON CD-ROM";
/// INQUIRY vendor identification (SPC-3, standard INQUIRY data, 8 ASCII bytes).
pub const INQUIRY_VENDOR: &str = "HERON";
/// INQUIRY product identification (SPC-3, standard INQUIRY data, 16 ASCII bytes).
pub const INQUIRY_PRODUCT: &str = "CD-ROM";
/// INQUIRY product revision level (SPC-3, standard INQUIRY data, 4 ASCII bytes).
pub const INQUIRY_REVISION: &str = "1.0";

/// SCSI sense data: sense key, additional sense code and qualifier (SPC-3, sense data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    /// Sense key (bits 3:0), e.g. [`SENSE_NOT_READY`].
    pub key: u8,
    /// Additional sense code (ASC).
    pub asc: u8,
    /// Additional sense code qualifier (ASCQ).
    pub ascq: u8,
}

impl Sense {
    /// NO SENSE, 00/00: nothing to report.
    pub const NONE: Sense = Sense::new(SENSE_NO_SENSE, 0, 0);
    /// NOT READY / MEDIUM NOT PRESENT, 02/3A/00.
    pub const MEDIUM_NOT_PRESENT: Sense = Sense::new(SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT, 0);
    /// UNIT ATTENTION / NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED, 06/28/00.
    pub const MEDIUM_MAY_HAVE_CHANGED: Sense =
        Sense::new(SENSE_UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED, 0);
    /// ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE, 05/20/00.
    pub const INVALID_OPCODE: Sense =
        Sense::new(SENSE_ILLEGAL_REQUEST, ASC_INVALID_COMMAND_OPERATION_CODE, 0);
    /// ILLEGAL REQUEST / LOGICAL BLOCK ADDRESS OUT OF RANGE, 05/21/00.
    pub const LBA_OUT_OF_RANGE: Sense = Sense::new(SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
    /// ILLEGAL REQUEST / INVALID FIELD IN CDB, 05/24/00.
    pub const INVALID_FIELD: Sense = Sense::new(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, 0);
    /// ILLEGAL REQUEST / SAVING PARAMETERS NOT SUPPORTED, 05/39/00.
    pub const SAVING_NOT_SUPPORTED: Sense = Sense::new(
        SENSE_ILLEGAL_REQUEST,
        ASC_SAVING_PARAMETERS_NOT_SUPPORTED,
        0,
    );
    /// ILLEGAL REQUEST / MEDIUM REMOVAL PREVENTED, 05/53/02.
    pub const REMOVAL_PREVENTED: Sense =
        Sense::new(SENSE_ILLEGAL_REQUEST, ASC_MEDIUM_REMOVAL_PREVENTED, 0x02);
    /// MEDIUM ERROR / UNRECOVERED READ ERROR, 03/11/00 (a backend read failed).
    pub const UNRECOVERED_READ_ERROR: Sense =
        Sense::new(SENSE_MEDIUM_ERROR, ASC_UNRECOVERED_READ_ERROR, 0);
    /// ABORTED COMMAND, 0B/00/00 (the bus master DMA transfer failed).
    pub const ABORTED: Sense = Sense::new(SENSE_ABORTED_COMMAND, 0, 0);

    /// A sense triple.
    pub const fn new(key: u8, asc: u8, ascq: u8) -> Self {
        Sense { key, asc, ascq }
    }

    /// Fixed-format sense data (response code 0x70, current error), 18 bytes (SPC-3, fixed format sense data).
    pub fn fixed_format(&self) -> [u8; 18] {
        let mut b = [0u8; 18];
        b[0] = 0x70;
        b[2] = self.key & 0x0F;
        b[7] = 10; // additional sense length: bytes 8..18
        b[12] = self.asc;
        b[13] = self.ascq;
        b
    }
}

/// What the data-in phase of a successful packet command delivers to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketData {
    /// Non-data command: go straight to the status phase.
    None,
    /// A response built by the drive (already truncated to the allocation length).
    Buffer(Vec<u8>),
    /// User data read from the medium: `len` bytes at byte `offset` (whole 2048-byte sectors).
    Medium {
        /// Byte offset on the medium.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
}

/// Media event codes of GET EVENT STATUS NOTIFICATION, media class (MMC-3, GET EVENT STATUS NOTIFICATION, media event descriptor).
const MEDIA_EVENT_NO_CHANGE: u8 = 0;
const MEDIA_EVENT_NEW_MEDIA: u8 = 2;
const MEDIA_EVENT_MEDIA_REMOVAL: u8 = 3;

/// One ATAPI CD-ROM drive's medium and SCSI state (sense data, unit attention, tray, removal
/// lock, pending media event). Register-level protocol: see [`crate::ide`].
pub struct Atapi {
    medium: Option<Box<dyn BlockBackend>>,
    tray_open: bool,
    sense: Sense,
    unit_attention: bool,
    prevent_removal: bool,
    media_event: u8,
}

impl std::fmt::Debug for Atapi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Atapi")
            .field("medium_sectors", &self.capacity_sectors())
            .field("tray_open", &self.tray_open)
            .field("sense", &self.sense)
            .field("unit_attention", &self.unit_attention)
            .field("prevent_removal", &self.prevent_removal)
            .finish()
    }
}

fn be16(b: &[u8], i: usize) -> u64 {
    u16::from_be_bytes([b[i], b[i + 1]]) as u64
}

fn be32(b: &[u8], i: usize) -> u64 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as u64
}

fn truncated(mut v: Vec<u8>, alloc: u64) -> PacketData {
    v.truncate(alloc.min(usize::MAX as u64) as usize);
    if v.is_empty() {
        PacketData::None
    } else {
        PacketData::Buffer(v)
    }
}

/// Writes `s` left-justified and space-padded into `out` (SCSI ASCII fields).
fn put_ascii(out: &mut [u8], s: &str) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = s.as_bytes().get(i).copied().unwrap_or(b' ');
    }
}

/// MSF address (minute, second, frame) of logical block `lba`, with the 2-second (150-frame)
/// pregap offset (MMC-3, LBA to MSF translation); values saturate at 255 minutes.
pub fn lba_to_msf(lba: u64) -> [u8; 3] {
    let f = lba + 150;
    let m = (f / (60 * 75)).min(255) as u8;
    [m, ((f / 75) % 60) as u8, (f % 75) as u8]
}

impl Atapi {
    /// A drive with `medium` (2048-byte sectors, read-only) loaded, or empty for `None`. No unit
    /// attention is pending at power-on.
    pub fn new(medium: Option<Box<dyn BlockBackend>>) -> Self {
        Atapi {
            medium,
            tray_open: false,
            sense: Sense::NONE,
            unit_attention: false,
            prevent_removal: false,
            media_event: MEDIA_EVENT_NO_CHANGE,
        }
    }

    /// Hardware reset: clears sense data, unit attention, the removal lock and pending media
    /// events; the medium and the tray position are kept.
    pub fn reset(&mut self) {
        self.sense = Sense::NONE;
        self.unit_attention = false;
        self.prevent_removal = false;
        self.media_event = MEDIA_EVENT_NO_CHANGE;
    }

    /// Replaces the medium (host-side media change, e.g. a monitor "change cdrom" command):
    /// closes the tray, raises UNIT ATTENTION 06/28 for the next command, and queues a NewMedia
    /// (or MediaRemoval for `None`) event for GET EVENT STATUS NOTIFICATION. Returns the previous
    /// medium. The removal lock (PREVENT ALLOW MEDIUM REMOVAL) does not stop the host.
    pub fn change_medium(
        &mut self,
        medium: Option<Box<dyn BlockBackend>>,
    ) -> Option<Box<dyn BlockBackend>> {
        let old = std::mem::replace(&mut self.medium, medium);
        self.tray_open = false;
        if self.medium.is_some() {
            self.unit_attention = true;
            self.media_event = MEDIA_EVENT_NEW_MEDIA;
        } else {
            self.media_event = MEDIA_EVENT_MEDIA_REMOVAL;
        }
        old
    }

    /// A medium is loaded and the tray is closed (the drive is ready).
    pub fn medium_present(&self) -> bool {
        self.medium.is_some() && !self.tray_open
    }

    /// The tray is open (after an eject through START STOP UNIT).
    pub fn tray_open(&self) -> bool {
        self.tray_open
    }

    /// The guest has locked the tray (MMC-3, PREVENT ALLOW MEDIUM REMOVAL).
    pub fn removal_prevented(&self) -> bool {
        self.prevent_removal
    }

    /// Capacity of the present medium in 2048-byte sectors (0 when not ready).
    pub fn capacity_sectors(&self) -> u64 {
        match &self.medium {
            Some(m) if !self.tray_open => m.size() / CD_SECTOR_SIZE,
            _ => 0,
        }
    }

    /// Current sense data (kept until the next command other than REQUEST SENSE).
    pub fn sense(&self) -> Sense {
        self.sense
    }

    /// Sets the sense data; used by the register layer for errors found during the data phase
    /// (a failed medium read → [`Sense::UNRECOVERED_READ_ERROR`]).
    pub fn set_sense(&mut self, sense: Sense) {
        self.sense = sense;
    }

    /// Reads `buf.len()` bytes of user data at byte `offset` from the present medium.
    pub fn read_medium(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Sense> {
        if self.tray_open {
            return Err(Sense::MEDIUM_NOT_PRESENT);
        }
        match &mut self.medium {
            None => Err(Sense::MEDIUM_NOT_PRESENT),
            Some(m) => m
                .read_at(offset, buf)
                .map_err(|_| Sense::UNRECOVERED_READ_ERROR),
        }
    }

    /// Executes a command packet (`cdb`, 12 bytes; shorter slices are zero-extended). Returns
    /// the data-in phase, or the CHECK CONDITION sense (also stored for REQUEST SENSE). Every
    /// command other than REQUEST SENSE starts by clearing the previous sense data (SPC-3,
    /// sense data). A pending UNIT ATTENTION fails every command except INQUIRY, REQUEST SENSE,
    /// GET CONFIGURATION and GET EVENT STATUS NOTIFICATION once (MMC-3, unit attention conditions).
    pub fn execute(&mut self, cdb: &[u8]) -> Result<PacketData, Sense> {
        let mut c = [0u8; 16];
        let n = cdb.len().min(16);
        c[..n].copy_from_slice(&cdb[..n]);
        let op = c[0];
        if op == REQUEST_SENSE {
            return Ok(self.request_sense(&c));
        }
        self.sense = Sense::NONE;
        let r = self.dispatch(&c);
        if let Err(s) = r {
            self.sense = s;
        }
        r
    }

    fn dispatch(&mut self, c: &[u8; 16]) -> Result<PacketData, Sense> {
        let op = c[0];
        if self.unit_attention
            && !matches!(
                op,
                INQUIRY | GET_CONFIGURATION | GET_EVENT_STATUS_NOTIFICATION
            )
        {
            self.unit_attention = false;
            return Err(Sense::MEDIUM_MAY_HAVE_CHANGED);
        }
        match op {
            TEST_UNIT_READY => self.ready().map(|_| PacketData::None),
            INQUIRY => self.inquiry(c),
            READ_CAPACITY_10 => {
                self.ready()?;
                let last = self.capacity_sectors().saturating_sub(1).min(0xFFFF_FFFF) as u32;
                let mut b = last.to_be_bytes().to_vec();
                b.extend_from_slice(&(CD_SECTOR_SIZE as u32).to_be_bytes());
                Ok(PacketData::Buffer(b))
            }
            READ_10 => self.read(be32(c, 2), be16(c, 7)),
            READ_12 => self.read(be32(c, 2), be32(c, 6)),
            SEEK_10 => {
                self.ready()?;
                if be32(c, 2) >= self.capacity_sectors() {
                    return Err(Sense::LBA_OUT_OF_RANGE);
                }
                Ok(PacketData::None)
            }
            READ_TOC_PMA_ATIP => self.read_toc(c),
            GET_CONFIGURATION => self.get_configuration(c),
            GET_EVENT_STATUS_NOTIFICATION => self.get_event_status(c),
            MODE_SENSE_10 => self.mode_sense(c, true),
            MODE_SENSE_6 => self.mode_sense(c, false),
            START_STOP_UNIT => self.start_stop(c),
            PREVENT_ALLOW_MEDIUM_REMOVAL => {
                self.prevent_removal = c[4] & 1 != 0;
                Ok(PacketData::None)
            }
            READ_DISC_INFORMATION => self.read_disc_information(c),
            MECHANISM_STATUS => {
                // MMC-3 MECHANISM STATUS: 8-byte header, no changer slots.
                let mut b = vec![0u8; 8];
                if self.tray_open {
                    b[1] |= 0x10; // door open
                }
                Ok(truncated(b, be16(c, 8)))
            }
            SET_CD_SPEED => Ok(PacketData::None),
            REPORT_LUNS => {
                // SPC-3 REPORT LUNS: one LUN (0); list length 8.
                let mut b = vec![0u8; 16];
                b[3] = 8;
                Ok(truncated(b, be32(c, 6)))
            }
            _ => Err(Sense::INVALID_OPCODE),
        }
    }

    fn ready(&self) -> Result<(), Sense> {
        if self.medium_present() {
            Ok(())
        } else {
            Err(Sense::MEDIUM_NOT_PRESENT)
        }
    }

    /// REQUEST SENSE (SPC-3): fixed format; reports a pending unit attention first, then
    /// the stored sense, then NOT READY when no medium is loaded; clears what it reported.
    fn request_sense(&mut self, c: &[u8; 16]) -> PacketData {
        let s = if self.unit_attention {
            self.unit_attention = false;
            Sense::MEDIUM_MAY_HAVE_CHANGED
        } else if self.sense != Sense::NONE {
            self.sense
        } else if !self.medium_present() {
            Sense::MEDIUM_NOT_PRESENT
        } else {
            Sense::NONE
        };
        self.sense = Sense::NONE;
        truncated(s.fixed_format().to_vec(), c[4] as u64)
    }

    /// INQUIRY (SPC-3): standard data (peripheral device type 5, removable) or the vital
    /// product data pages 0x00 (supported pages) and 0x80 (unit serial number).
    fn inquiry(&self, c: &[u8; 16]) -> Result<PacketData, Sense> {
        let alloc = be16(c, 3);
        if c[1] & 0x01 != 0 {
            let page = c[2];
            let b = match page {
                0x00 => vec![0x05, 0x00, 0x00, 2, 0x00, 0x80],
                0x80 => {
                    let mut b = vec![0x05, 0x80, 0x00, 8];
                    b.extend_from_slice(b"HERONCD1");
                    b
                }
                _ => return Err(Sense::INVALID_FIELD),
            };
            return Ok(truncated(b, alloc));
        }
        if c[2] != 0 {
            return Err(Sense::INVALID_FIELD);
        }
        let mut b = vec![0u8; 36];
        b[0] = 0x05; // peripheral qualifier 0, device type 5 (CD/DVD)
        b[1] = 0x80; // RMB: removable medium
        b[2] = 0x05; // version: SPC-3
        b[3] = 0x02; // response data format 2
        b[4] = 31; // additional length
        put_ascii(&mut b[8..16], INQUIRY_VENDOR);
        put_ascii(&mut b[16..32], INQUIRY_PRODUCT);
        put_ascii(&mut b[32..36], INQUIRY_REVISION);
        Ok(truncated(b, alloc))
    }

    /// READ(10)/READ(12) (MMC-3): `count` 2048-byte blocks at `lba`.
    fn read(&self, lba: u64, count: u64) -> Result<PacketData, Sense> {
        self.ready()?;
        if lba.saturating_add(count) > self.capacity_sectors() {
            return Err(Sense::LBA_OUT_OF_RANGE);
        }
        if count == 0 {
            return Ok(PacketData::None);
        }
        Ok(PacketData::Medium {
            offset: lba * CD_SECTOR_SIZE,
            len: count * CD_SECTOR_SIZE,
        })
    }

    /// READ TOC/PMA/ATIP (MMC-3) formats 0 (TOC) and 1 (session information), in LBA or
    /// MSF form. The disc holds one data track (control 4, ADR 1) at LBA 0.
    fn read_toc(&self, c: &[u8; 16]) -> Result<PacketData, Sense> {
        self.ready()?;
        let msf = c[1] & 0x02 != 0;
        let mut format = c[2] & 0x0F;
        if format == 0 {
            // SFF-8020 placed the format in byte 9 bits 7:6.
            format = c[9] >> 6;
        }
        let start = c[6];
        let alloc = be16(c, 7);
        let addr = |lba: u64| -> [u8; 4] {
            if msf {
                let m = lba_to_msf(lba);
                [0, m[0], m[1], m[2]]
            } else {
                (lba.min(0xFFFF_FFFF) as u32).to_be_bytes()
            }
        };
        let mut b = vec![0u8, 0, 1, 1];
        match format {
            0 => {
                if start > 1 && start != 0xAA {
                    return Err(Sense::INVALID_FIELD);
                }
                if start <= 1 {
                    b.extend_from_slice(&[0, 0x14, 1, 0]);
                    b.extend_from_slice(&addr(0));
                }
                b.extend_from_slice(&[0, 0x14, 0xAA, 0]);
                b.extend_from_slice(&addr(self.capacity_sectors()));
            }
            1 => {
                b.extend_from_slice(&[0, 0x14, 1, 0]);
                b.extend_from_slice(&addr(0));
            }
            _ => return Err(Sense::INVALID_FIELD),
        }
        let len = (b.len() - 2) as u16;
        b[..2].copy_from_slice(&len.to_be_bytes());
        Ok(truncated(b, alloc))
    }

    /// The current MMC profile: DVD-ROM for media larger than [`CD_MAX_SECTORS`], CD-ROM for
    /// smaller ones, 0 with no medium (MMC-3, profiles).
    pub fn current_profile(&self) -> u16 {
        if !self.medium_present() {
            0
        } else if self.capacity_sectors() > CD_MAX_SECTORS {
            PROFILE_DVD_ROM
        } else {
            PROFILE_CD_ROM
        }
    }

    /// GET CONFIGURATION (MMC-3): features Profile List (0x0000), Core (0x0001),
    /// Removable Medium (0x0003), Random Readable (0x0010), CD Read (0x001E), DVD Read (0x001F);
    /// RT 0 = all from the starting feature, 1 = current ones, 2 = exactly that feature.
    fn get_configuration(&self, c: &[u8; 16]) -> Result<PacketData, Sense> {
        let rt = c[1] & 0x03;
        let sfn = be16(c, 2) as u16;
        let alloc = be16(c, 7);
        if rt == 3 {
            return Err(Sense::INVALID_FIELD);
        }
        let profile = self.current_profile();
        let has_medium = profile != 0;
        let cur = |on: bool| if on { 0x01u8 } else { 0 };
        let mut feats: Vec<(u16, bool, Vec<u8>)> = Vec::new();
        // Profile List: persistent, current; descriptors in descending profile order.
        let mut pl = Vec::new();
        for p in [PROFILE_DVD_ROM, PROFILE_CD_ROM] {
            pl.extend_from_slice(&p.to_be_bytes());
            pl.push(cur(p == profile));
            pl.push(0);
        }
        feats.push((0x0000, true, with_header(0x0000, 0x03, &pl)));
        // Core: physical interface standard 2 = ATAPI.
        feats.push((0x0001, true, with_header(0x0001, 0x03, &[0, 0, 0, 2])));
        // Removable Medium: tray loading mechanism (001b), eject, lock (+ current lock state).
        let rm = 0x20 | 0x08 | 0x01 | if self.prevent_removal { 0x04 } else { 0 };
        feats.push((0x0003, true, with_header(0x0003, 0x03, &[rm, 0, 0, 0])));
        let blocking: u16 = if profile == PROFILE_DVD_ROM { 16 } else { 1 };
        let mut rr = (CD_SECTOR_SIZE as u32).to_be_bytes().to_vec();
        rr.extend_from_slice(&blocking.to_be_bytes());
        rr.extend_from_slice(&[0, 0]);
        feats.push((
            0x0010,
            has_medium,
            with_header(0x0010, cur(has_medium), &rr),
        ));
        let cd = profile == PROFILE_CD_ROM;
        feats.push((0x001E, cd, with_header(0x001E, cur(cd), &[0, 0, 0, 0])));
        let dvd = profile == PROFILE_DVD_ROM;
        feats.push((0x001F, dvd, with_header(0x001F, cur(dvd), &[])));

        let mut b = vec![0u8; 8];
        b[6..8].copy_from_slice(&profile.to_be_bytes());
        for (code, current, desc) in feats {
            let take = match rt {
                0 => code >= sfn,
                1 => code >= sfn && current,
                _ => code == sfn,
            };
            if take {
                b.extend_from_slice(&desc);
            }
        }
        let len = (b.len() - 4) as u32;
        b[..4].copy_from_slice(&len.to_be_bytes());
        Ok(truncated(b, alloc))
    }

    /// GET EVENT STATUS NOTIFICATION (MMC-3), polled mode only: the media class reports
    /// NewMedia / MediaRemoval once after a change, then NoChange, with media-present and
    /// tray-open status. Asynchronous mode (Polled = 0) is rejected with 05/24.
    fn get_event_status(&mut self, c: &[u8; 16]) -> Result<PacketData, Sense> {
        if c[1] & 0x01 == 0 {
            return Err(Sense::INVALID_FIELD);
        }
        let request = c[4];
        let alloc = be16(c, 7);
        const MEDIA_CLASS: u8 = 1 << 4;
        let mut b = vec![0u8; 4];
        b[3] = MEDIA_CLASS; // supported event classes
        if request & MEDIA_CLASS != 0 {
            b[2] = 4; // notification class: media
            let mut status = 0;
            if self.medium_present() {
                status |= 0x02;
            }
            if self.tray_open {
                status |= 0x01;
            }
            b.extend_from_slice(&[self.media_event, status, 0, 0]);
            self.media_event = MEDIA_EVENT_NO_CHANGE;
        } else {
            b[2] = 0x80; // NEA: no requested class is supported
        }
        let len = (b.len() - 2) as u16;
        b[..2].copy_from_slice(&len.to_be_bytes());
        Ok(truncated(b, alloc))
    }

    /// Mode page contents (`changeable` = the changeable-values mask, all zero here).
    fn mode_page(&self, page: u8, changeable: bool) -> Vec<u8> {
        let mut p = match page {
            // Read/Write Error Recovery (MMC-3 mode page 01h): read retry count 5.
            0x01 => vec![0x01, 0x0A, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0],
            // CD Device Parameters (MMC-3 mode page 0Dh): 60 S units per M, 75 F units per S.
            0x0D => vec![0x0D, 0x06, 0, 0, 0, 60, 0, 75],
            // MM Capabilities and Mechanical Status (MMC-3 mode page 2Ah).
            _ => {
                let mut p = vec![0u8; 22];
                p[0] = 0x2A;
                p[1] = 20;
                p[2] = 0x08; // DVD-ROM read
                p[4] = 0x70; // mode 2 form 1/2, multi-session
                p[6] = 0x20 | 0x08 | 0x01 | if self.prevent_removal { 0x02 } else { 0 };
                p[8..10].copy_from_slice(&2816u16.to_be_bytes()); // max read speed, kB/s (16x)
                p[12..14].copy_from_slice(&512u16.to_be_bytes()); // buffer size, KiB
                p[14..16].copy_from_slice(&2816u16.to_be_bytes()); // current read speed
                p
            }
        };
        if changeable {
            p[2..].fill(0);
        }
        p
    }

    /// MODE SENSE(10)/(6) (SPC-3): pages 0x01, 0x0D, 0x2A and 0x3F (all); no block
    /// descriptors. Saved values (PC = 3) are not supported (05/39).
    fn mode_sense(&self, c: &[u8; 16], ten: bool) -> Result<PacketData, Sense> {
        let pc = c[2] >> 6;
        let page = c[2] & 0x3F;
        let alloc = if ten { be16(c, 7) } else { c[4] as u64 };
        if pc == 3 {
            return Err(Sense::SAVING_NOT_SUPPORTED);
        }
        let changeable = pc == 1;
        let pages: &[u8] = match page {
            0x01 => &[0x01],
            0x0D => &[0x0D],
            0x2A => &[0x2A],
            0x3F => &[0x01, 0x0D, 0x2A],
            _ => return Err(Sense::INVALID_FIELD),
        };
        let hdr = if ten { 8 } else { 4 };
        let mut b = vec![0u8; hdr];
        for &p in pages {
            b.extend_from_slice(&self.mode_page(p, changeable));
        }
        if ten {
            let len = (b.len() - 2) as u16;
            b[..2].copy_from_slice(&len.to_be_bytes());
        } else {
            b[0] = (b.len() - 1).min(255) as u8;
        }
        Ok(truncated(b, alloc))
    }

    /// START STOP UNIT (MMC-3): LoEj + !Start ejects (opens the tray, unless removal is
    /// prevented: 05/53/02); LoEj + Start loads (closes the tray; a medium on it becomes new).
    fn start_stop(&mut self, c: &[u8; 16]) -> Result<PacketData, Sense> {
        let start = c[4] & 0x01 != 0;
        let loej = c[4] & 0x02 != 0;
        let power_condition = c[4] >> 4;
        if !loej || power_condition != 0 {
            return Ok(PacketData::None);
        }
        if start {
            if self.tray_open {
                self.tray_open = false;
                if self.medium.is_some() {
                    self.media_event = MEDIA_EVENT_NEW_MEDIA;
                }
            }
        } else {
            if self.prevent_removal {
                return Err(Sense::REMOVAL_PREVENTED);
            }
            if !self.tray_open {
                self.tray_open = true;
                self.media_event = MEDIA_EVENT_MEDIA_REMOVAL;
            }
        }
        Ok(PacketData::None)
    }

    /// READ DISC INFORMATION (MMC-3), data type 000b: a complete, finalized
    /// single-session disc with one track.
    fn read_disc_information(&self, c: &[u8; 16]) -> Result<PacketData, Sense> {
        self.ready()?;
        if c[1] & 0x07 != 0 {
            return Err(Sense::INVALID_FIELD);
        }
        let mut b = vec![0u8; 34];
        b[1] = 32; // disc information length
        b[2] = 0x0E; // last session complete, disc complete
        b[3] = 1; // first track on disc
        b[4] = 1; // number of sessions (LSB)
        b[5] = 1; // first track in last session (LSB)
        b[6] = 1; // last track in last session (LSB)
        b[7] = 0x20; // URU: unrestricted use
        b[8] = 0x00; // disc type: CD-DA or CD-ROM
        b[16..24].fill(0xFF); // lead-in / last lead-out start: not applicable
        Ok(truncated(b, be16(c, 7)))
    }
}

/// A feature descriptor (MMC-3, feature descriptor format): feature code, version/persistent/current byte,
/// additional length, data.
fn with_header(code: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.push(flags);
    v.push(data.len() as u8);
    v.extend_from_slice(data);
    v
}

/// Length of the next PIO data-in DRQ block of a packet command, in bytes, for `remaining`
/// bytes of response and the host's byte count limit (LBA Mid/High at PACKET time;
/// ATA/ATAPI-7 Vol. 2, PACKET PIO data-in protocol): the whole rest if it fits, else the limit made even (an odd
/// limit is decremented), rounded down to whole 2048-byte sectors when `sector_data` and the limit
/// allows at least one. A limit of 0 (which hosts must not use) or 0xFFFF is treated as 0xFFFE;
/// a limit of 1 as 2 (so that every DRQ block makes progress).
pub fn pio_chunk_len(remaining: u64, byte_count_limit: u16, sector_data: bool) -> u64 {
    let mut limit = match byte_count_limit {
        0 | 0xFFFF => 0xFFFE,
        l => l as u64,
    };
    if remaining <= limit {
        return remaining;
    }
    limit = (limit & !1).max(2);
    if sector_data && limit >= CD_SECTOR_SIZE {
        limit -= limit % CD_SECTOR_SIZE;
    }
    limit
}

/// IDENTIFY PACKET DEVICE data (ATA/ATAPI-7 Vol. 1, IDENTIFY PACKET DEVICE data table): a removable CD-ROM
/// (word 0 = 0x85C0: ATAPI, device type 5, removable, DRQ within 50 µs, 12-byte packets),
/// model [`MODEL`], LBA and DMA supported, multiword DMA 0–2 (`mwdma` = selected mode), PIO 3–4,
/// Ultra DMA 0–5 (`udma` = selected mode), PACKET and DEVICE RESET feature sets, hardware reset
/// result `word93`, integrity word 255.
pub fn identify_packet_device(
    serial: &str,
    firmware: &str,
    mwdma: Option<u8>,
    udma: Option<u8>,
    word93: u16,
) -> [u16; 256] {
    let mut w = [0u16; 256];
    w[0] = (2 << 14) | (5 << 8) | (1 << 7) | (2 << 5);
    crate::ide::put_ata_string(&mut w[10..20], serial);
    crate::ide::put_ata_string(&mut w[23..27], firmware);
    crate::ide::put_ata_string(&mut w[27..47], MODEL);
    w[49] = (1 << 11) | (1 << 10) | (1 << 9) | (1 << 8); // IORDY, LBA, DMA
    w[50] = 0x4000;
    w[53] = 0x0006; // words 64–70 and 88 valid
    w[63] = 0x0007 | mwdma.map_or(0, |m| 1 << (8 + m));
    w[64] = 0x0003;
    w[65] = 120;
    w[66] = 120;
    w[67] = 120;
    w[68] = 120;
    w[71] = 30;
    w[72] = 30;
    w[80] = 0x00F0; // ATA/ATAPI-4 through -7
    let sets = (1 << 14) | (1 << 9) | (1 << 4); // NOP, DEVICE RESET, PACKET
    w[82] = sets;
    w[83] = 0x4000;
    w[84] = 0x4000;
    w[85] = sets;
    w[86] = 0;
    w[87] = 0x4000;
    w[88] = 0x003F | udma.map_or(0, |m| 1 << (8 + m));
    w[93] = word93;
    crate::ide::finish_identify(&mut w);
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use heron_block::BlockError;

    struct Mem(Vec<u8>);
    impl BlockBackend for Mem {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            let end = offset as usize + buf.len();
            if end > self.0.len() {
                return Err(BlockError::OutOfRange {
                    offset,
                    len: buf.len() as u64,
                    size: self.size(),
                });
            }
            buf.copy_from_slice(&self.0[offset as usize..end]);
            Ok(())
        }
        fn write_at(&mut self, _: u64, _: &[u8]) -> Result<(), BlockError> {
            Err(BlockError::ReadOnly)
        }
        fn flush(&mut self) -> Result<(), BlockError> {
            Ok(())
        }
        fn read_only(&self) -> bool {
            true
        }
    }

    fn cd(sectors: usize) -> Atapi {
        Atapi::new(Some(Box::new(Mem(vec![0; sectors * 2048]))))
    }

    fn buf(r: Result<PacketData, Sense>) -> Vec<u8> {
        match r {
            Ok(PacketData::Buffer(b)) => b,
            other => panic!("expected a buffer, got {other:?}"),
        }
    }

    fn cdb(bytes: &[u8]) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[..bytes.len()].copy_from_slice(bytes);
        c
    }

    #[test]
    fn inquiry_standard_and_vpd() {
        let mut a = cd(10);
        let b = buf(a.execute(&cdb(&[INQUIRY, 0, 0, 0, 96])));
        assert_eq!(b.len(), 36);
        assert_eq!(b[0], 0x05);
        assert_eq!(b[1], 0x80);
        assert_eq!(&b[8..16], b"HERON   ");
        assert_eq!(&b[16..32], b"CD-ROM          ");
        // Allocation length truncates.
        assert_eq!(buf(a.execute(&cdb(&[INQUIRY, 0, 0, 0, 5]))).len(), 5);
        let p0 = buf(a.execute(&cdb(&[INQUIRY, 1, 0, 0, 255])));
        assert_eq!(&p0[..], &[0x05, 0, 0, 2, 0, 0x80]);
        assert_eq!(
            a.execute(&cdb(&[INQUIRY, 1, 0x83, 0, 255])),
            Err(Sense::INVALID_FIELD)
        );
    }

    #[test]
    fn read_capacity_and_read_range() {
        let mut a = cd(100);
        let b = buf(a.execute(&cdb(&[READ_CAPACITY_10])));
        assert_eq!(b, vec![0, 0, 0, 99, 0, 0, 0x08, 0]);
        assert_eq!(
            a.execute(&cdb(&[READ_10, 0, 0, 0, 0, 98, 0, 0, 2])),
            Ok(PacketData::Medium {
                offset: 98 * 2048,
                len: 4096
            })
        );
        assert_eq!(
            a.execute(&cdb(&[READ_10, 0, 0, 0, 0, 99, 0, 0, 2])),
            Err(Sense::LBA_OUT_OF_RANGE)
        );
        assert_eq!(a.sense(), Sense::LBA_OUT_OF_RANGE);
        assert_eq!(
            a.execute(&cdb(&[READ_12, 0, 0, 0, 0, 1, 0, 0, 0, 3])),
            Ok(PacketData::Medium {
                offset: 2048,
                len: 3 * 2048
            })
        );
        assert_eq!(a.execute(&cdb(&[READ_10])), Ok(PacketData::None));
    }

    #[test]
    fn request_sense_reports_and_clears() {
        let mut a = cd(10);
        assert_eq!(a.execute(&cdb(&[0xFF])), Err(Sense::INVALID_OPCODE));
        let s = buf(a.execute(&cdb(&[REQUEST_SENSE, 0, 0, 0, 18])));
        assert_eq!(s.len(), 18);
        assert_eq!((s[0], s[2], s[7], s[12], s[13]), (0x70, 5, 10, 0x20, 0));
        let s = buf(a.execute(&cdb(&[REQUEST_SENSE, 0, 0, 0, 18])));
        assert_eq!(s[2], 0, "sense cleared after being reported");
    }

    #[test]
    fn no_medium_and_unit_attention() {
        let mut a = Atapi::new(None);
        assert_eq!(
            a.execute(&cdb(&[TEST_UNIT_READY])),
            Err(Sense::MEDIUM_NOT_PRESENT)
        );
        assert_eq!(a.current_profile(), 0);
        let s = buf(a.execute(&cdb(&[REQUEST_SENSE, 0, 0, 0, 18])));
        assert_eq!((s[2], s[12]), (2, 0x3A));
        a.change_medium(Some(Box::new(Mem(vec![0; 2048 * 4]))));
        // INQUIRY does not consume the unit attention; TUR reports it once.
        assert!(a.execute(&cdb(&[INQUIRY, 0, 0, 0, 36])).is_ok());
        assert_eq!(
            a.execute(&cdb(&[TEST_UNIT_READY])),
            Err(Sense::MEDIUM_MAY_HAVE_CHANGED)
        );
        assert_eq!(a.execute(&cdb(&[TEST_UNIT_READY])), Ok(PacketData::None));
        // GESN reports new media once.
        let e = buf(a.execute(&cdb(&[
            GET_EVENT_STATUS_NOTIFICATION,
            1,
            0,
            0,
            0x10,
            0,
            0,
            0,
            8,
        ])));
        assert_eq!(&e[..], &[0, 6, 4, 0x10, 2, 2, 0, 0]);
        let e = buf(a.execute(&cdb(&[
            GET_EVENT_STATUS_NOTIFICATION,
            1,
            0,
            0,
            0x10,
            0,
            0,
            0,
            8,
        ])));
        assert_eq!(e[4], 0);
        assert_eq!(
            a.execute(&cdb(&[
                GET_EVENT_STATUS_NOTIFICATION,
                0,
                0,
                0,
                0x10,
                0,
                0,
                0,
                8
            ])),
            Err(Sense::INVALID_FIELD)
        );
    }

    #[test]
    fn toc_formats() {
        let mut a = cd(1000);
        let t = buf(a.execute(&cdb(&[READ_TOC_PMA_ATIP, 0, 0, 0, 0, 0, 0, 0, 100])));
        assert_eq!(t.len(), 20);
        assert_eq!(&t[..4], &[0, 18, 1, 1]);
        assert_eq!(&t[4..12], &[0, 0x14, 1, 0, 0, 0, 0, 0]);
        assert_eq!(&t[12..20], &[0, 0x14, 0xAA, 0, 0, 0, 0x03, 0xE8]);
        let t = buf(a.execute(&cdb(&[READ_TOC_PMA_ATIP, 2, 0, 0, 0, 0, 0, 0, 100])));
        assert_eq!(&t[8..12], &[0, 0, 2, 0], "track 1 at 00:02:00");
        assert_eq!(
            &t[16..20],
            &[0, 0, 15, 25],
            "lead-out at 1150 frames = 00:15:25"
        );
        let t = buf(a.execute(&cdb(&[READ_TOC_PMA_ATIP, 0, 1, 0, 0, 0, 0, 0, 100])));
        assert_eq!(&t[..], &[0, 10, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0]);
        assert_eq!(
            a.execute(&cdb(&[READ_TOC_PMA_ATIP, 0, 0, 0, 0, 0, 2, 0, 100])),
            Err(Sense::INVALID_FIELD)
        );
        assert_eq!(
            a.execute(&cdb(&[READ_TOC_PMA_ATIP, 0, 5, 0, 0, 0, 0, 0, 100])),
            Err(Sense::INVALID_FIELD)
        );
    }

    #[test]
    fn configuration_profiles() {
        let mut a = cd(1000);
        let g = buf(a.execute(&cdb(&[GET_CONFIGURATION, 0, 0, 0, 0, 0, 0, 2, 0])));
        assert_eq!(&g[6..8], &[0x00, 0x08], "current profile CD-ROM");
        let len = u32::from_be_bytes([g[0], g[1], g[2], g[3]]) as usize;
        assert_eq!(len + 4, g.len());
        assert_eq!(&g[8..12], &[0, 0, 0x03, 8]);
        assert_eq!(&g[12..16], &[0, 0x10, 0, 0]);
        assert_eq!(&g[16..20], &[0, 0x08, 1, 0]);
        // RT = 2: only the requested feature.
        let g = buf(a.execute(&cdb(&[GET_CONFIGURATION, 2, 0, 0x1E, 0, 0, 0, 2, 0])));
        assert_eq!(&g[8..], &[0, 0x1E, 1, 4, 0, 0, 0, 0]);
        let big = Atapi::new(Some(Box::new(Mem(vec![
            0;
            (CD_MAX_SECTORS as usize + 1)
                * 2048
        ]))));
        assert_eq!(big.current_profile(), PROFILE_DVD_ROM);
    }

    #[test]
    fn mode_sense_pages() {
        let mut a = cd(10);
        let m = buf(a.execute(&cdb(&[MODE_SENSE_10, 0, 0x2A, 0, 0, 0, 0, 1, 0])));
        assert_eq!(m.len(), 8 + 22);
        assert_eq!(u16::from_be_bytes([m[0], m[1]]) as usize, m.len() - 2);
        assert_eq!(&m[8..10], &[0x2A, 20]);
        let all = buf(a.execute(&cdb(&[MODE_SENSE_10, 0, 0x3F, 0, 0, 0, 0, 1, 0])));
        assert_eq!(all.len(), 8 + 12 + 8 + 22);
        assert_eq!(
            a.execute(&cdb(&[MODE_SENSE_10, 0, 0x05, 0, 0, 0, 0, 1, 0])),
            Err(Sense::INVALID_FIELD)
        );
        assert_eq!(
            a.execute(&cdb(&[MODE_SENSE_10, 0, 0xEA, 0, 0, 0, 0, 1, 0])),
            Err(Sense::SAVING_NOT_SUPPORTED)
        );
    }

    #[test]
    fn eject_lock_and_load() {
        let mut a = cd(10);
        a.execute(&cdb(&[PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 1]))
            .unwrap();
        assert_eq!(
            a.execute(&cdb(&[START_STOP_UNIT, 0, 0, 0, 2])),
            Err(Sense::REMOVAL_PREVENTED)
        );
        a.execute(&cdb(&[PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 0]))
            .unwrap();
        a.execute(&cdb(&[START_STOP_UNIT, 0, 0, 0, 2])).unwrap();
        assert!(a.tray_open());
        assert_eq!(
            a.execute(&cdb(&[TEST_UNIT_READY])),
            Err(Sense::MEDIUM_NOT_PRESENT)
        );
        a.execute(&cdb(&[START_STOP_UNIT, 0, 0, 0, 3])).unwrap();
        assert_eq!(a.execute(&cdb(&[TEST_UNIT_READY])), Ok(PacketData::None));
    }

    #[test]
    fn misc_commands() {
        let mut a = cd(10);
        let d = buf(a.execute(&cdb(&[READ_DISC_INFORMATION, 0, 0, 0, 0, 0, 0, 0, 34])));
        assert_eq!((d.len(), d[1], d[2]), (34, 32, 0x0E));
        let m = buf(a.execute(&cdb(&[MECHANISM_STATUS, 0, 0, 0, 0, 0, 0, 0, 0, 8])));
        assert_eq!(m.len(), 8);
        assert_eq!(
            a.execute(&cdb(&[SET_CD_SPEED, 0, 0xFF, 0xFF])),
            Ok(PacketData::None)
        );
        assert_eq!(
            a.execute(&cdb(&[0x55])),
            Err(Sense::INVALID_OPCODE),
            "MODE SELECT"
        );
    }

    #[test]
    fn chunking() {
        assert_eq!(pio_chunk_len(18, 0xFFFE, false), 18);
        assert_eq!(pio_chunk_len(100, 33, false), 32);
        assert_eq!(pio_chunk_len(8192, 5000, true), 4096);
        assert_eq!(pio_chunk_len(8192, 1000, true), 1000);
        assert_eq!(pio_chunk_len(0x20000, 0, true), 0xF800);
        assert_eq!(pio_chunk_len(3, 1, false), 2, "always makes progress");
    }

    #[test]
    fn msf() {
        assert_eq!(lba_to_msf(0), [0, 2, 0]);
        assert_eq!(lba_to_msf(4500 - 150), [1, 0, 0]);
    }
}

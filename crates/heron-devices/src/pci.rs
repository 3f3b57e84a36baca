//! PCI bus 0 behind an Intel 440FX host bridge (82441FX PMC), reached through PCI configuration
//! mechanism #1 (CONFIG_ADDRESS at port 0xCF8, CONFIG_DATA at ports 0xCFC–0xCFF).
//!
//! References: PCI Local Bus Specification 3.0 §3.2.2.3.2 (configuration mechanism #1), §6.1
//! (configuration space header), §6.2.2 (command), §6.2.3 (status), §6.2.5.1 (base address
//! registers); Intel 82441FX PCI and Memory Controller (PMC) datasheet §3.2 (register
//! descriptions).
//!
//! Structure: [`ConfigSpace`] is a 256-byte type-0 configuration space with per-byte write and
//! write-1-to-clear masks; [`PciFunction`] is what a device function implements (its config space
//! plus optional side effects); [`PciHost`] decodes CONFIG_ADDRESS / CONFIG_DATA and routes
//! accesses to the functions registered on bus 0. The host bridge itself is [`I440fx`] at 00:00.0.
//!
//! Port 0xCF9 (the PIIX3 reset control register) is not decoded here: the machine handles it
//! before dispatching to [`PciHost`]. Byte and word accesses to 0xCF8–0xCFB are not
//! CONFIG_ADDRESS accesses (§3.2.2.3.2): they read all ones and writes are ignored.

use std::collections::BTreeMap;

use crate::{le_value, set_le_value, Device, Nanos};

/// CONFIG_ADDRESS port (32-bit accesses only; PCI Local Bus Spec 3.0 §3.2.2.3.2).
pub const CONFIG_ADDRESS_PORT: u64 = 0xCF8;
/// First CONFIG_DATA port; 0xCFC–0xCFF select bytes of the addressed dword.
pub const CONFIG_DATA_PORT: u64 = 0xCFC;
/// Size of a PCI configuration space in bytes (PCI Local Bus Spec 3.0 §6.1).
pub const CONFIG_SPACE_SIZE: usize = 256;

/// CONFIG_ADDRESS bit 31: configuration-space mapping enable.
pub const CONFIG_ADDRESS_ENABLE: u32 = 0x8000_0000;
/// Bits of CONFIG_ADDRESS that are stored; bits 30:24 (reserved) and 1:0 read as 0.
const CONFIG_ADDRESS_MASK: u32 = 0x80FF_FFFC;

/// Config register offset: Vendor ID (16 bits; PCI Local Bus Spec 3.0 §6.2.1).
pub const REG_VENDOR_ID: u8 = 0x00;
/// Config register offset: Device ID (16 bits; §6.2.1).
pub const REG_DEVICE_ID: u8 = 0x02;
/// Config register offset: Command (16 bits; §6.2.2).
pub const REG_COMMAND: u8 = 0x04;
/// Config register offset: Status (16 bits; §6.2.3).
pub const REG_STATUS: u8 = 0x06;
/// Config register offset: Revision ID (8 bits; §6.2.1).
pub const REG_REVISION_ID: u8 = 0x08;
/// Config register offset: Class Code (24 bits: programming interface, sub-class, base class).
pub const REG_CLASS_CODE: u8 = 0x09;
/// Config register offset: Cache Line Size (8 bits; §6.2.4).
pub const REG_CACHE_LINE_SIZE: u8 = 0x0C;
/// Config register offset: Latency Timer (8 bits; §6.2.4).
pub const REG_LATENCY_TIMER: u8 = 0x0D;
/// Config register offset: Header Type (8 bits; bit 7 = multi-function; §6.2.1).
pub const REG_HEADER_TYPE: u8 = 0x0E;
/// Config register offset: BIST (8 bits; §6.2.4).
pub const REG_BIST: u8 = 0x0F;
/// Config register offset: Base Address Register 0 (BAR n is at 0x10 + 4·n; §6.2.5.1).
pub const REG_BAR0: u8 = 0x10;
/// Config register offset: Subsystem Vendor ID (16 bits; §6.2.4).
pub const REG_SUBSYSTEM_VENDOR_ID: u8 = 0x2C;
/// Config register offset: Subsystem ID (16 bits; §6.2.4).
pub const REG_SUBSYSTEM_ID: u8 = 0x2E;
/// Config register offset: Interrupt Line (8 bits, read/write scratch for software; §6.2.4).
pub const REG_INTERRUPT_LINE: u8 = 0x3C;
/// Config register offset: Interrupt Pin (8 bits; 1–4 = INTA#–INTD#, 0 = none; §6.2.4).
pub const REG_INTERRUPT_PIN: u8 = 0x3D;

/// Command register bit 0: I/O Space enable (§6.2.2).
pub const COMMAND_IO_SPACE: u16 = 1 << 0;
/// Command register bit 1: Memory Space enable (§6.2.2).
pub const COMMAND_MEMORY_SPACE: u16 = 1 << 1;
/// Command register bit 2: Bus Master enable (§6.2.2).
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command register bit 6: Parity Error Response (§6.2.2).
pub const COMMAND_PARITY_ERROR_RESPONSE: u16 = 1 << 6;
/// Command register bit 8: SERR# enable (§6.2.2).
pub const COMMAND_SERR_ENABLE: u16 = 1 << 8;
/// Command register bit 10: Interrupt Disable (§6.2.2).
pub const COMMAND_INTERRUPT_DISABLE: u16 = 1 << 10;

/// Errors from configuring the PCI bus or a function's config space.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PciError {
    /// Device number outside 0–31.
    #[error("PCI device number {0} out of range (0-31)")]
    InvalidDevice(u8),
    /// Function number outside 0–7.
    #[error("PCI function number {0} out of range (0-7)")]
    InvalidFunction(u8),
    /// A function is already registered at this device/function.
    #[error("PCI slot 00:{device:02x}.{function} already occupied")]
    SlotOccupied {
        /// Device number 0–31.
        device: u8,
        /// Function number 0–7.
        function: u8,
    },
    /// A BAR definition that cannot exist (bad index, size, or overlaps a 64-bit BAR).
    #[error("invalid BAR {index}: {reason}")]
    InvalidBar {
        /// BAR index 0–5.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Address space and type of a base address register (PCI Local Bus Spec 3.0 §6.2.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciBarKind {
    /// I/O space BAR (bit 0 = 1); size 4–256 bytes.
    Io,
    /// 32-bit memory BAR (type 00), optionally prefetchable (bit 3).
    Memory32 {
        /// Prefetchable bit (bit 3).
        prefetchable: bool,
    },
    /// 64-bit memory BAR (type 10), using this BAR and the next one for the upper dword.
    Memory64 {
        /// Prefetchable bit (bit 3).
        prefetchable: bool,
    },
}

/// A decoded base address register: where software placed the function's region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciBar {
    /// BAR index 0–5 (for 64-bit BARs, the lower of the pair).
    pub index: usize,
    /// Address space and type.
    pub kind: PciBarKind,
    /// Base address programmed by software (bytes; I/O port number for [`PciBarKind::Io`]).
    pub address: u64,
    /// Region size in bytes (a power of two).
    pub size: u64,
}

/// A 256-byte type-0 PCI configuration space with per-byte write masks (PCI Local Bus Spec 3.0
/// §6.1). Guest writes go through [`ConfigSpace::write`]: a bit changes only where the write mask
/// has a 1; bits set in the write-1-to-clear mask are cleared by writing 1 (status registers).
/// Device-side setters (`set_*`) ignore the masks.
#[derive(Debug, Clone)]
pub struct ConfigSpace {
    bytes: [u8; CONFIG_SPACE_SIZE],
    wmask: [u8; CONFIG_SPACE_SIZE],
    w1cmask: [u8; CONFIG_SPACE_SIZE],
    bar_defs: [Option<(PciBarKind, u64)>; 6],
}

impl ConfigSpace {
    /// A config space with the given Vendor ID and Device ID, everything else 0 and read-only.
    pub fn new(vendor_id: u16, device_id: u16) -> Self {
        let mut c = ConfigSpace {
            bytes: [0; CONFIG_SPACE_SIZE],
            wmask: [0; CONFIG_SPACE_SIZE],
            w1cmask: [0; CONFIG_SPACE_SIZE],
            bar_defs: [None; 6],
        };
        c.set_u16(REG_VENDOR_ID, vendor_id);
        c.set_u16(REG_DEVICE_ID, device_id);
        c
    }

    /// Guest read of `data.len()` bytes at register `reg` (little-endian). Bytes past offset
    /// 0xFF read as 0xFF.
    pub fn read(&self, reg: u8, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.bytes.get(reg as usize + i).copied().unwrap_or(0xFF);
        }
    }

    /// Guest write of `data` at register `reg`, honouring the write and write-1-to-clear masks.
    /// Bytes past offset 0xFF are ignored.
    pub fn write(&mut self, reg: u8, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let r = reg as usize + i;
            if r >= CONFIG_SPACE_SIZE {
                break;
            }
            let wm = self.wmask[r];
            let mut new = (self.bytes[r] & !wm) | (v & wm);
            new &= !(v & self.w1cmask[r]);
            self.bytes[r] = new;
        }
    }

    /// Byte at `reg` (device-side view, no side effects).
    pub fn u8(&self, reg: u8) -> u8 {
        self.bytes[reg as usize]
    }

    /// Little-endian 16-bit value at `reg` (bytes past 0xFF read 0xFF).
    pub fn u16(&self, reg: u8) -> u16 {
        let mut b = [0u8; 2];
        self.read(reg, &mut b);
        u16::from_le_bytes(b)
    }

    /// Little-endian 32-bit value at `reg` (bytes past 0xFF read 0xFF).
    pub fn u32(&self, reg: u8) -> u32 {
        let mut b = [0u8; 4];
        self.read(reg, &mut b);
        u32::from_le_bytes(b)
    }

    /// Sets the byte at `reg`, ignoring the write mask (device-side).
    pub fn set_u8(&mut self, reg: u8, v: u8) {
        self.bytes[reg as usize] = v;
    }

    /// Sets a little-endian 16-bit value at `reg`, ignoring masks (bytes past 0xFF dropped).
    pub fn set_u16(&mut self, reg: u8, v: u16) {
        self.set_bytes(reg, &v.to_le_bytes());
    }

    /// Sets a little-endian 32-bit value at `reg`, ignoring masks (bytes past 0xFF dropped).
    pub fn set_u32(&mut self, reg: u8, v: u32) {
        self.set_bytes(reg, &v.to_le_bytes());
    }

    fn set_bytes(&mut self, reg: u8, v: &[u8]) {
        for (i, &b) in v.iter().enumerate() {
            if let Some(x) = self.bytes.get_mut(reg as usize + i) {
                *x = b;
            }
        }
    }

    /// Sets the guest-writable bits of the byte at `reg` (1 = writable).
    pub fn set_wmask_u8(&mut self, reg: u8, mask: u8) {
        self.wmask[reg as usize] = mask;
    }

    /// Sets the guest-writable bits of the 16-bit register at `reg`.
    pub fn set_wmask_u16(&mut self, reg: u8, mask: u16) {
        self.set_mask_bytes(reg, &mask.to_le_bytes(), false);
    }

    /// Sets the guest-writable bits of the 32-bit register at `reg`.
    pub fn set_wmask_u32(&mut self, reg: u8, mask: u32) {
        self.set_mask_bytes(reg, &mask.to_le_bytes(), false);
    }

    /// Sets the write-1-to-clear bits of the 16-bit register at `reg` (e.g. status error bits).
    pub fn set_w1c_mask_u16(&mut self, reg: u8, mask: u16) {
        self.set_mask_bytes(reg, &mask.to_le_bytes(), true);
    }

    fn set_mask_bytes(&mut self, reg: u8, m: &[u8], w1c: bool) {
        let arr = if w1c {
            &mut self.w1cmask
        } else {
            &mut self.wmask
        };
        for (i, &b) in m.iter().enumerate() {
            if let Some(x) = arr.get_mut(reg as usize + i) {
                *x = b;
            }
        }
    }

    /// Vendor ID (§6.2.1).
    pub fn vendor_id(&self) -> u16 {
        self.u16(REG_VENDOR_ID)
    }

    /// Device ID (§6.2.1).
    pub fn device_id(&self) -> u16 {
        self.u16(REG_DEVICE_ID)
    }

    /// Command register (§6.2.2).
    pub fn command(&self) -> u16 {
        self.u16(REG_COMMAND)
    }

    /// Status register (§6.2.3).
    pub fn status(&self) -> u16 {
        self.u16(REG_STATUS)
    }

    /// Sets the Revision ID (§6.2.1).
    pub fn set_revision(&mut self, rev: u8) {
        self.set_u8(REG_REVISION_ID, rev);
    }

    /// Sets the 24-bit Class Code: `(base_class << 16) | (sub_class << 8) | prog_if` (§6.2.1).
    pub fn set_class_code(&mut self, class: u32) {
        self.set_u8(REG_CLASS_CODE, class as u8);
        self.set_u8(REG_CLASS_CODE + 1, (class >> 8) as u8);
        self.set_u8(REG_CLASS_CODE + 2, (class >> 16) as u8);
    }

    /// The 24-bit Class Code.
    pub fn class_code(&self) -> u32 {
        self.u32(REG_REVISION_ID) >> 8
    }

    /// Sets the Header Type byte (bit 7 = multi-function device; §6.2.1).
    pub fn set_header_type(&mut self, v: u8) {
        self.set_u8(REG_HEADER_TYPE, v);
    }

    /// Sets Subsystem Vendor ID and Subsystem ID (§6.2.4).
    pub fn set_subsystem(&mut self, vendor: u16, id: u16) {
        self.set_u16(REG_SUBSYSTEM_VENDOR_ID, vendor);
        self.set_u16(REG_SUBSYSTEM_ID, id);
    }

    /// Sets the Interrupt Pin (1–4 = INTA#–INTD#, 0 = none) and makes Interrupt Line writable
    /// when a pin is used (§6.2.4).
    pub fn set_interrupt_pin(&mut self, pin: u8) {
        self.set_u8(REG_INTERRUPT_PIN, pin);
        self.set_wmask_u8(REG_INTERRUPT_LINE, if pin != 0 { 0xFF } else { 0 });
    }

    /// Defines BAR `index` (0–5) of `kind` and `size` bytes (rounded up to a power of two, at
    /// least 4 for I/O and 16 for memory): sets its read-only type bits and a write mask that
    /// makes the low address bits read 0, so that software sizing (write all ones, read back)
    /// works (PCI Local Bus Spec 3.0 §6.2.5.1). A 64-bit BAR also takes index + 1.
    pub fn init_bar(&mut self, index: usize, kind: PciBarKind, size: u64) -> Result<(), PciError> {
        let bad = |reason| Err(PciError::InvalidBar { index, reason });
        if index > 5 {
            return bad("index out of range 0-5");
        }
        let wide = matches!(kind, PciBarKind::Memory64 { .. });
        if wide && index == 5 {
            return bad("64-bit BAR needs two BAR slots");
        }
        if self.bar_defs[index].is_some() || (wide && self.bar_defs[index + 1].is_some()) {
            return bad("BAR slot already defined");
        }
        if index > 0
            && matches!(
                self.bar_defs[index - 1],
                Some((PciBarKind::Memory64 { .. }, _))
            )
        {
            return bad("slot is the upper half of a 64-bit BAR");
        }
        let (min, max) = match kind {
            PciBarKind::Io => (4, 256),
            PciBarKind::Memory32 { .. } => (16, 1 << 31),
            PciBarKind::Memory64 { .. } => (16, 1 << 63),
        };
        if size == 0 || size > max {
            return bad("size out of range");
        }
        let size = size.max(min).next_power_of_two();
        let reg = REG_BAR0 + 4 * index as u8;
        let addr_mask = !(size - 1);
        match kind {
            PciBarKind::Io => {
                self.set_u32(reg, 0x1);
                self.set_wmask_u32(reg, addr_mask as u32 & 0xFFFF_FFFC);
            }
            PciBarKind::Memory32 { prefetchable } => {
                self.set_u32(reg, if prefetchable { 0x8 } else { 0 });
                self.set_wmask_u32(reg, addr_mask as u32 & 0xFFFF_FFF0);
            }
            PciBarKind::Memory64 { prefetchable } => {
                self.set_u32(reg, 0x4 | if prefetchable { 0x8 } else { 0 });
                self.set_wmask_u32(reg, addr_mask as u32 & 0xFFFF_FFF0);
                self.set_u32(reg + 4, 0);
                self.set_wmask_u32(reg + 4, (addr_mask >> 32) as u32);
            }
        }
        self.bar_defs[index] = Some((kind, size));
        Ok(())
    }

    /// The BAR defined at `index` with its current software-programmed address, or `None` if
    /// the slot is not implemented (or is the upper half of a 64-bit BAR).
    pub fn bar(&self, index: usize) -> Option<PciBar> {
        let (kind, size) = (*self.bar_defs.get(index)?)?;
        let reg = REG_BAR0 + 4 * index as u8;
        let low = self.u32(reg) as u64;
        let address = match kind {
            PciBarKind::Io => low & !0x3,
            PciBarKind::Memory32 { .. } => low & !0xF,
            PciBarKind::Memory64 { .. } => ((self.u32(reg + 4) as u64) << 32) | (low & !0xF),
        };
        Some(PciBar {
            index,
            kind,
            address,
            size,
        })
    }

    /// All defined BARs, in index order.
    pub fn bars(&self) -> Vec<PciBar> {
        (0..6).filter_map(|i| self.bar(i)).collect()
    }
}

/// Subsystem vendor ID of the QEMU PC platform (Red Hat, 0x1AF4). Heron implements that
/// platform's firmware interfaces (fw_cfg, PIIX3, ACPI PM at 0x600), and SeaBIOS recognizes
/// it by the host bridge's subsystem IDs (SeaBIOS src/hw/pci.c, `qemu_detect`).
pub const QEMU_SUBSYSTEM_VENDOR: u16 = 0x1AF4;
/// Subsystem ID "QEMU virtual machine" (0x1100), paired with [`QEMU_SUBSYSTEM_VENDOR`].
pub const QEMU_SUBSYSTEM_ID: u16 = 0x1100;

/// A PCI function on bus 0: a config space plus optional side effects of config accesses.
///
/// Implementors provide [`PciFunction::config`] / [`PciFunction::config_mut`]; the default
/// `config_read` / `config_write` apply the [`ConfigSpace`] masks. Override them for registers
/// with side effects (and call [`ConfigSpace::write`] for the plain part).
pub trait PciFunction {
    /// The function's configuration space.
    fn config(&self) -> &ConfigSpace;
    /// Mutable access to the configuration space (device-side).
    fn config_mut(&mut self) -> &mut ConfigSpace;
    /// Guest config read of `data.len()` (1, 2 or 4) bytes at register `reg`.
    fn config_read(&mut self, reg: u8, data: &mut [u8]) {
        self.config().read(reg, data);
    }
    /// Guest config write of `data` at register `reg`.
    fn config_write(&mut self, reg: u8, data: &[u8]) {
        self.config_mut().write(reg, data);
    }
    /// The function's decoded base address registers (for the machine to map I/O / MMIO).
    fn bars(&self) -> Vec<PciBar> {
        self.config().bars()
    }
}

/// 82441FX register offset: PAM0 (0x59); PAM0–PAM6 are 0x59–0x5F (82441FX datasheet §3.2).
pub const I440FX_PAM0: u8 = 0x59;
/// 82441FX register offset: SMRAM control (82441FX datasheet §3.2).
pub const I440FX_SMRAM: u8 = 0x72;
/// 82441FX register offset: Master Latency Timer (82441FX datasheet §3.2).
const I440FX_MLT: u8 = REG_LATENCY_TIMER;

const SMRAM_D_OPEN: u8 = 0x40;
const SMRAM_D_CLS: u8 = 0x20;
const SMRAM_D_LCK: u8 = 0x10;
const SMRAM_G_SMRAME: u8 = 0x08;
/// C_BASE_SEG = 010b: SMRAM at 0xA0000 (read-only).
const SMRAM_DEFAULT: u8 = 0x02;

/// The Intel 82441FX PCI and Memory Controller (i440FX host bridge) at 00:00.0: vendor 0x8086,
/// device 0x1237, revision 0x02, class 0x060000 (host bridge), header type 0
/// (82441FX datasheet §3.2).
///
/// Writable: PCICMD bits 6 (PERRE) and 8 (SERRE) — memory access and bus master are hardwired
/// to 1 —, PCISTS error bits (write 1 to clear), MLT bits 7:3, PAM0–PAM6 (0x59–0x5F) and SMRAM
/// (0x72, with D_LCK semantics). Other 82441FX registers read 0 and ignore writes. The PAM and
/// SMRAM values are only stored: the machine does not (yet) remap the 0xA0000–0xFFFFF range
/// according to them.
#[derive(Debug, Clone)]
pub struct I440fx {
    config: ConfigSpace,
}

impl Default for I440fx {
    fn default() -> Self {
        Self::new()
    }
}

impl I440fx {
    /// The PMC in its reset state (82441FX datasheet §3.2 defaults): PCICMD 0x0006, PCISTS
    /// 0x0280, PAM0–6 = 0 (0xC0000–0xFFFFF goes to PCI/ROM), SMRAM = 0x02.
    pub fn new() -> Self {
        let mut c = ConfigSpace::new(0x8086, 0x1237);
        c.set_revision(0x02);
        c.set_class_code(0x06_00_00);
        c.set_header_type(0x00);
        c.set_subsystem(QEMU_SUBSYSTEM_VENDOR, QEMU_SUBSYSTEM_ID);
        c.set_u16(REG_COMMAND, COMMAND_MEMORY_SPACE | COMMAND_BUS_MASTER);
        c.set_wmask_u16(
            REG_COMMAND,
            COMMAND_PARITY_ERROR_RESPONSE | COMMAND_SERR_ENABLE,
        );
        // DEVSEL timing medium (bits 10:9 = 01), fast back-to-back capable (bit 7).
        c.set_u16(REG_STATUS, 0x0280);
        c.set_w1c_mask_u16(REG_STATUS, 0xF900);
        c.set_wmask_u8(I440FX_MLT, 0xF8);
        // PAM0: only the high nibble (0xF0000–0xFFFFF) exists; PAM1–6: two regions each.
        // Bits 2 and 6 (cache enable) are reserved on the 82441FX.
        c.set_wmask_u8(I440FX_PAM0, 0x30);
        for r in I440FX_PAM0 + 1..=I440FX_PAM0 + 6 {
            c.set_wmask_u8(r, 0x33);
        }
        c.set_u8(I440FX_SMRAM, SMRAM_DEFAULT);
        c.set_wmask_u8(
            I440FX_SMRAM,
            SMRAM_D_OPEN | SMRAM_D_CLS | SMRAM_D_LCK | SMRAM_G_SMRAME,
        );
        I440fx { config: c }
    }

    /// PAM0–PAM6 (registers 0x59–0x5F): read/write enables of the 0xC0000–0xFFFFF segments
    /// (82441FX datasheet §3.2, PAM registers). Stored only.
    pub fn pam(&self) -> [u8; 7] {
        let mut p = [0u8; 7];
        for (i, v) in p.iter_mut().enumerate() {
            *v = self.config.u8(I440FX_PAM0 + i as u8);
        }
        p
    }

    /// SMRAM control register (0x72; 82441FX datasheet §3.2, SMRAM). Stored only.
    pub fn smram(&self) -> u8 {
        self.config.u8(I440FX_SMRAM)
    }
}

impl PciFunction for I440fx {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }

    /// Plain masked write, then SMRAM D_LCK: once set, D_OPEN is cleared and only D_CLS stays
    /// writable until reset (82441FX datasheet §3.2, SMRAM bit 4).
    fn config_write(&mut self, reg: u8, data: &[u8]) {
        self.config.write(reg, data);
        let smram = self.config.u8(I440FX_SMRAM);
        if smram & SMRAM_D_LCK != 0 {
            self.config.set_u8(I440FX_SMRAM, smram & !SMRAM_D_OPEN);
            self.config.set_wmask_u8(I440FX_SMRAM, SMRAM_D_CLS);
        }
    }
}

/// The PCI host: configuration mechanism #1 and bus 0 with its functions.
///
/// Register at ports 0xCF8–0xCFF with `offset` = absolute port (the machine keeps 0xCF9 for
/// itself). [`PciHost::new`] places the [`I440fx`] at device 0, function 0.
pub struct PciHost {
    config_address: u32,
    i440fx: I440fx,
    functions: BTreeMap<(u8, u8), Box<dyn PciFunction>>,
    config_writes: u64,
}

impl Default for PciHost {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for PciHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciHost")
            .field(
                "config_address",
                &format_args!("{:#010x}", self.config_address),
            )
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PciHost {
    /// A bus 0 holding only the i440FX host bridge at 00:00.0; CONFIG_ADDRESS = 0.
    pub fn new() -> Self {
        PciHost {
            config_address: 0,
            i440fx: I440fx::new(),
            functions: BTreeMap::new(),
            config_writes: 0,
        }
    }

    /// Registers `f` at bus 0, `device` (0–31), `function` (0–7). Fails if out of range or
    /// occupied (00:00.0 is the i440FX). A multi-function device must set Header Type bit 7 in
    /// function 0, or software will not look at its other functions.
    pub fn add_function(
        &mut self,
        device: u8,
        function: u8,
        f: Box<dyn PciFunction>,
    ) -> Result<(), PciError> {
        if device > 31 {
            return Err(PciError::InvalidDevice(device));
        }
        if function > 7 {
            return Err(PciError::InvalidFunction(function));
        }
        if (device, function) == (0, 0) || self.functions.contains_key(&(device, function)) {
            return Err(PciError::SlotOccupied { device, function });
        }
        self.functions.insert((device, function), f);
        Ok(())
    }

    /// The host bridge.
    pub fn i440fx(&self) -> &I440fx {
        &self.i440fx
    }

    /// The host bridge, mutably.
    pub fn i440fx_mut(&mut self) -> &mut I440fx {
        &mut self.i440fx
    }

    /// The function at bus 0, `device`, `function`, if present (00:00.0 is the i440FX).
    pub fn function(&self, device: u8, function: u8) -> Option<&dyn PciFunction> {
        if (device, function) == (0, 0) {
            return Some(&self.i440fx);
        }
        self.functions.get(&(device, function)).map(|b| b.as_ref())
    }

    /// The function at bus 0, `device`, `function`, mutably.
    pub fn function_mut(&mut self, device: u8, function: u8) -> Option<&mut dyn PciFunction> {
        if (device, function) == (0, 0) {
            return Some(&mut self.i440fx);
        }
        match self.functions.get_mut(&(device, function)) {
            Some(b) => Some(b.as_mut()),
            None => None,
        }
    }

    /// The latched CONFIG_ADDRESS register (PCI Local Bus Spec 3.0 §3.2.2.3.2).
    pub fn config_address(&self) -> u32 {
        self.config_address
    }

    /// Number of configuration writes delivered to any function so far. The machine can compare
    /// it between exits to know when to re-read BARs and command registers.
    pub fn config_write_count(&self) -> u64 {
        self.config_writes
    }

    /// Configuration read of `data.len()` bytes at `reg` of bus/device/function, as the host
    /// bridge would perform it. Absent functions (and buses other than 0) read all ones.
    pub fn config_read(&mut self, bus: u8, device: u8, function: u8, reg: u8, data: &mut [u8]) {
        data.fill(0xFF);
        if bus != 0 {
            return;
        }
        if let Some(f) = self.function_mut(device, function) {
            f.config_read(reg, data);
        }
    }

    /// Configuration write of `data` at `reg` of bus/device/function. Writes to absent
    /// functions are dropped (master abort).
    pub fn config_write(&mut self, bus: u8, device: u8, function: u8, reg: u8, data: &[u8]) {
        if bus != 0 {
            return;
        }
        if let Some(f) = self.function_mut(device, function) {
            f.config_write(reg, data);
            self.config_writes += 1;
        }
    }

    /// Decodes CONFIG_ADDRESS and a CONFIG_DATA port into (bus, device, function, register),
    /// or `None` when the enable bit is clear.
    fn target(&self, port: u64) -> Option<(u8, u8, u8, u8)> {
        let a = self.config_address;
        if a & CONFIG_ADDRESS_ENABLE == 0 {
            return None;
        }
        let bus = (a >> 16) as u8;
        let device = ((a >> 11) & 0x1F) as u8;
        let function = ((a >> 8) & 0x7) as u8;
        let reg = (a & 0xFC) as u8 + (port - CONFIG_DATA_PORT) as u8;
        Some((bus, device, function, reg))
    }

    /// Number of bytes of an access at `port` that fall inside CONFIG_DATA (0xCFC–0xCFF).
    fn data_len(port: u64, len: usize) -> usize {
        len.min((CONFIG_DATA_PORT + 4 - port) as usize)
    }
}

impl Device for PciHost {
    /// Port read: 0xCF8 (dword only) returns CONFIG_ADDRESS; 0xCFC–0xCFF return config data of
    /// the addressed function (bytes past 0xCFF, disabled mapping and absent functions read all
    /// ones); anything else reads all ones.
    fn read(&mut self, _now: Nanos, offset: u64, data: &mut [u8]) {
        data.fill(0xFF);
        match offset {
            CONFIG_ADDRESS_PORT if data.len() == 4 => {
                set_le_value(data, self.config_address as u64)
            }
            CONFIG_DATA_PORT..=0xCFF => {
                if let Some((bus, dev, func, reg)) = self.target(offset) {
                    let n = Self::data_len(offset, data.len());
                    self.config_read(bus, dev, func, reg, &mut data[..n]);
                }
            }
            _ => {}
        }
    }

    /// Port write: a dword at 0xCF8 latches CONFIG_ADDRESS; 0xCFC–0xCFF write config data of the
    /// addressed function (bytes past 0xCFF dropped); anything else is ignored.
    fn write(&mut self, _now: Nanos, offset: u64, data: &[u8]) {
        match offset {
            CONFIG_ADDRESS_PORT if data.len() == 4 => {
                self.config_address = le_value(data) as u32 & CONFIG_ADDRESS_MASK;
            }
            CONFIG_DATA_PORT..=0xCFF => {
                if let Some((bus, dev, func, reg)) = self.target(offset) {
                    let n = Self::data_len(offset, data.len());
                    self.config_write(bus, dev, func, reg, &data[..n]);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(bus: u8, dev: u8, func: u8, reg: u8) -> u32 {
        0x8000_0000 | (bus as u32) << 16 | (dev as u32) << 11 | (func as u32) << 8 | reg as u32
    }

    fn set_addr(h: &mut PciHost, a: u32) {
        h.write(0, 0xCF8, &a.to_le_bytes());
    }

    fn rd(h: &mut PciHost, port: u64, len: usize) -> u32 {
        let mut b = [0u8; 4];
        h.read(0, port, &mut b[..len]);
        le_value(&b[..len]) as u32
    }

    fn wr(h: &mut PciHost, port: u64, len: usize, v: u32) {
        h.write(0, port, &v.to_le_bytes()[..len]);
    }

    fn cfg32(h: &mut PciHost, bus: u8, dev: u8, func: u8, reg: u8) -> u32 {
        set_addr(h, addr(bus, dev, func, reg));
        rd(h, 0xCFC, 4)
    }

    #[test]
    fn i440fx_ids_via_mechanism_1() {
        let mut h = PciHost::new();
        assert_eq!(cfg32(&mut h, 0, 0, 0, 0x00), 0x1237_8086);
        assert_eq!(cfg32(&mut h, 0, 0, 0, 0x04), 0x0280_0006);
        assert_eq!(cfg32(&mut h, 0, 0, 0, 0x08), 0x0600_0002);
        assert_eq!(
            cfg32(&mut h, 0, 0, 0, 0x0C) & 0x00FF_0000,
            0,
            "header type 0"
        );
        assert_eq!(
            cfg32(&mut h, 0, 0, 0, 0x70) >> 16 & 0xFF,
            0x02,
            "SMRAM default"
        );
        // CONFIG_ADDRESS reads back (reserved bits and bits 1:0 as 0).
        set_addr(&mut h, 0xFFFF_FFFF);
        assert_eq!(rd(&mut h, 0xCF8, 4), 0x80FF_FFFC);
    }

    #[test]
    fn absent_functions_read_all_ones() {
        let mut h = PciHost::new();
        assert_eq!(cfg32(&mut h, 0, 1, 0, 0), 0xFFFF_FFFF);
        assert_eq!(cfg32(&mut h, 0, 0, 1, 0), 0xFFFF_FFFF);
        assert_eq!(cfg32(&mut h, 1, 0, 0, 0), 0xFFFF_FFFF, "no bus 1");
        // Enable bit clear: nothing is addressed.
        h.write(0, 0xCF8, &0x0000_0000u32.to_le_bytes());
        assert_eq!(rd(&mut h, 0xCFC, 4), 0xFFFF_FFFF);
        // Writes to absent functions are dropped without effect.
        set_addr(&mut h, addr(0, 5, 0, 0x04));
        wr(&mut h, 0xCFC, 4, 0xFFFF_FFFF);
        assert_eq!(h.config_write_count(), 0);
    }

    #[test]
    fn byte_and_word_offsets() {
        let mut h = PciHost::new();
        set_addr(&mut h, addr(0, 0, 0, 0x00));
        assert_eq!(rd(&mut h, 0xCFC, 1), 0x86);
        assert_eq!(rd(&mut h, 0xCFD, 1), 0x80);
        assert_eq!(rd(&mut h, 0xCFE, 1), 0x37);
        assert_eq!(rd(&mut h, 0xCFF, 1), 0x12);
        assert_eq!(rd(&mut h, 0xCFC, 2), 0x8086);
        assert_eq!(rd(&mut h, 0xCFE, 2), 0x1237);
        // Word at 0xCFF: only one byte is CONFIG_DATA, the rest reads all ones.
        assert_eq!(rd(&mut h, 0xCFF, 2), 0xFF12);
        // Class code via word access at 0x0A (Linux pci_sanity_check).
        set_addr(&mut h, addr(0, 0, 0, 0x08));
        assert_eq!(rd(&mut h, 0xCFE, 2), 0x0600);
        // Byte/word accesses to 0xCF8–0xCFB are not CONFIG_ADDRESS.
        set_addr(&mut h, addr(0, 0, 0, 0x00));
        wr(&mut h, 0xCF8, 1, 0);
        wr(&mut h, 0xCFA, 2, 0);
        wr(&mut h, 0xCFB, 1, 1);
        assert_eq!(rd(&mut h, 0xCF8, 1), 0xFF);
        assert_eq!(rd(&mut h, 0xCFA, 1), 0xFF);
        assert_eq!(rd(&mut h, 0xCF8, 2), 0xFFFF);
        assert_eq!(rd(&mut h, 0xCF8, 4), 0x8000_0000);
        assert_eq!(rd(&mut h, 0xCF9, 4), 0xFFFF_FFFF);
        assert_eq!(rd(&mut h, 0xD00, 4), 0xFFFF_FFFF);
        let mut empty: [u8; 0] = [];
        h.read(0, 0xCFC, &mut empty);
        h.write(0, 0xCFC, &empty);
    }

    #[test]
    fn write_masks() {
        let mut h = PciHost::new();
        // IDs, class and revision are read-only.
        set_addr(&mut h, addr(0, 0, 0, 0x00));
        wr(&mut h, 0xCFC, 4, 0);
        assert_eq!(rd(&mut h, 0xCFC, 4), 0x1237_8086);
        set_addr(&mut h, addr(0, 0, 0, 0x08));
        wr(&mut h, 0xCFC, 4, 0);
        assert_eq!(rd(&mut h, 0xCFC, 4), 0x0600_0002);
        // Command: only PERRE/SERRE writable; MAE/BME hardwired; status error bits W1C.
        set_addr(&mut h, addr(0, 0, 0, 0x04));
        wr(&mut h, 0xCFC, 2, 0xFFFF);
        assert_eq!(rd(&mut h, 0xCFC, 2), 0x0146);
        wr(&mut h, 0xCFC, 2, 0);
        assert_eq!(rd(&mut h, 0xCFC, 2), 0x0006);
        h.i440fx_mut().config_mut().set_u16(REG_STATUS, 0x2280);
        wr(&mut h, 0xCFE, 2, 0x2000);
        assert_eq!(rd(&mut h, 0xCFE, 2), 0x0280);
        // MLT bits 7:3.
        set_addr(&mut h, addr(0, 0, 0, 0x0C));
        wr(&mut h, 0xCFD, 1, 0xFF);
        assert_eq!(rd(&mut h, 0xCFD, 1), 0xF8);
        // PAM registers via byte writes at the right offsets (0x59 = dword 0x58, byte 1).
        set_addr(&mut h, addr(0, 0, 0, 0x58));
        wr(&mut h, 0xCFD, 1, 0xFF);
        wr(&mut h, 0xCFE, 2, 0xFFFF);
        assert_eq!(rd(&mut h, 0xCFC, 4), 0x3333_3000);
        set_addr(&mut h, addr(0, 0, 0, 0x5C));
        wr(&mut h, 0xCFC, 4, 0x1111_2233);
        assert_eq!(h.i440fx().pam(), [0x30, 0x33, 0x33, 0x33, 0x22, 0x11, 0x11]);
        assert!(h.config_write_count() > 0);
        // Unimplemented register: reads 0, ignores writes.
        set_addr(&mut h, addr(0, 0, 0, 0x90));
        wr(&mut h, 0xCFC, 4, 0xFFFF_FFFF);
        assert_eq!(rd(&mut h, 0xCFC, 4), 0);
    }

    #[test]
    fn smram_lock() {
        let mut h = PciHost::new();
        set_addr(&mut h, addr(0, 0, 0, 0x70));
        wr(&mut h, 0xCFE, 1, 0xEF);
        assert_eq!(
            h.i440fx().smram(),
            0x6A,
            "C_BASE_SEG read-only 010, bit 7 reserved"
        );
        wr(&mut h, 0xCFE, 1, (0x0A | SMRAM_D_LCK | SMRAM_D_OPEN).into());
        assert_eq!(h.i440fx().smram(), 0x1A, "D_LCK clears D_OPEN");
        wr(&mut h, 0xCFE, 1, (SMRAM_D_OPEN | SMRAM_D_CLS).into());
        assert_eq!(h.i440fx().smram(), 0x3A, "only D_CLS writable when locked");
    }

    struct TestDev {
        cfg: ConfigSpace,
    }

    impl PciFunction for TestDev {
        fn config(&self) -> &ConfigSpace {
            &self.cfg
        }
        fn config_mut(&mut self) -> &mut ConfigSpace {
            &mut self.cfg
        }
    }

    #[test]
    fn added_function_and_bars() {
        let mut h = PciHost::new();
        let mut cfg = ConfigSpace::new(0x8086, 0x100E);
        cfg.set_class_code(0x02_00_00);
        cfg.set_wmask_u16(
            REG_COMMAND,
            COMMAND_IO_SPACE | COMMAND_MEMORY_SPACE | COMMAND_BUS_MASTER,
        );
        cfg.set_interrupt_pin(1);
        cfg.init_bar(
            0,
            PciBarKind::Memory32 {
                prefetchable: false,
            },
            0x20000,
        )
        .unwrap();
        cfg.init_bar(1, PciBarKind::Io, 0x40).unwrap();
        cfg.init_bar(2, PciBarKind::Memory64 { prefetchable: true }, 0x1000)
            .unwrap();
        assert!(
            cfg.init_bar(3, PciBarKind::Io, 8).is_err(),
            "upper half of 64-bit BAR"
        );
        assert!(cfg.init_bar(6, PciBarKind::Io, 8).is_err());
        h.add_function(3, 0, Box::new(TestDev { cfg })).unwrap();
        assert_eq!(
            h.add_function(
                3,
                0,
                Box::new(TestDev {
                    cfg: ConfigSpace::new(1, 2)
                })
            ),
            Err(PciError::SlotOccupied {
                device: 3,
                function: 0
            })
        );
        assert!(h
            .add_function(
                0,
                0,
                Box::new(TestDev {
                    cfg: ConfigSpace::new(1, 2)
                })
            )
            .is_err());
        assert_eq!(
            h.add_function(
                32,
                0,
                Box::new(TestDev {
                    cfg: ConfigSpace::new(1, 2)
                })
            ),
            Err(PciError::InvalidDevice(32))
        );
        assert_eq!(cfg32(&mut h, 0, 3, 0, 0), 0x100E_8086);
        // BAR sizing: write all ones, read back the size mask with the type bits.
        for (reg, expect) in [
            (0x10u8, 0xFFFE_0000u32),
            (0x14, 0xFFFF_FFC1),
            (0x18, 0xFFFF_F00C),
            (0x1C, 0xFFFF_FFFF),
            (0x20, 0),
        ] {
            set_addr(&mut h, addr(0, 3, 0, reg));
            wr(&mut h, 0xCFC, 4, 0xFFFF_FFFF);
            assert_eq!(rd(&mut h, 0xCFC, 4), expect, "BAR at {reg:#x}");
        }
        set_addr(&mut h, addr(0, 3, 0, 0x10));
        wr(&mut h, 0xCFC, 4, 0xFEBC_0000);
        set_addr(&mut h, addr(0, 3, 0, 0x14));
        wr(&mut h, 0xCFC, 4, 0xC000);
        set_addr(&mut h, addr(0, 3, 0, 0x18));
        wr(&mut h, 0xCFC, 4, 0xE000_0000);
        set_addr(&mut h, addr(0, 3, 0, 0x1C));
        wr(&mut h, 0xCFC, 4, 0x1);
        set_addr(&mut h, addr(0, 3, 0, 0x3C));
        wr(&mut h, 0xCFC, 4, 0xFFFF_FF0B);
        assert_eq!(
            rd(&mut h, 0xCFC, 4),
            0x0000_010B,
            "line writable, pin read-only"
        );
        let bars = h.function(3, 0).unwrap().bars();
        assert_eq!(bars.len(), 3);
        assert_eq!(bars[0].address, 0xFEBC_0000);
        assert_eq!(bars[0].size, 0x20000);
        assert_eq!(
            bars[1],
            PciBar {
                index: 1,
                kind: PciBarKind::Io,
                address: 0xC000,
                size: 0x40
            }
        );
        assert_eq!(bars[2].address, 0x1_E000_0000);
        assert_eq!(bars[2].kind, PciBarKind::Memory64 { prefetchable: true });
        assert!(h.function(0, 0).unwrap().bars().is_empty());
        assert!(h.function(4, 0).is_none());
    }
}

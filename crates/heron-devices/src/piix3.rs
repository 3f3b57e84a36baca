//! Intel 82371SB PIIX3 PCI functions at device 1 of bus 0: function 0, the PCI-to-ISA bridge
//! (PIRQ routing and miscellaneous ISA configuration), and function 1, the IDE controller's PCI
//! face (timing registers and the Bus Master IDE base address, BAR4).
//!
//! References: Intel 82371FB (PIIX) and 82371SB (PIIX3) PCI ISA IDE Xcelerator datasheet:
//! PCI-to-ISA bridge configuration registers (function 0), IDE interface configuration
//! registers (function 1), Bus Master IDE I/O registers; PCI Local Bus Specification 3.0
//! §6.2.5.1 (base address registers), §6.2.4 (Interrupt Pin / Interrupt Line). References below
//! name the datasheet register (mnemonic and offset).
//!
//! Only configuration space lives here. The task-file registers and the bus master engine are
//! [`crate::ide::IdeController`]; the machine routes ports to it according to
//! [`Piix3Ide::decode`] (legacy ports when I/O Space and the channel's IDETIM decode enable are
//! set, BMIBA..BMIBA+15 when I/O Space is enabled) and mirrors the Bus Master Enable bit with
//! [`crate::ide::IdeController::set_bus_master_enabled`]. Since [`crate::pci::PciHost`] keeps
//! functions as `Box<dyn PciFunction>`, both decoders are also available as associated functions
//! over a [`ConfigSpace`] ([`IdeDecode::from_config`], [`Piix3Isa::pirq_route_config`]), so the
//! machine can evaluate them through `PciHost::function(1, f).config()`.

use crate::pci::{
    ConfigSpace, PciBarKind, PciFunction, COMMAND_BUS_MASTER, COMMAND_IO_SPACE,
    COMMAND_MEMORY_SPACE, COMMAND_SERR_ENABLE, QEMU_SUBSYSTEM_ID, QEMU_SUBSYSTEM_VENDOR, REG_BAR0,
    REG_COMMAND, REG_LATENCY_TIMER, REG_STATUS,
};

/// PCI device number of the PIIX3 on bus 0 (as on the i440FX reference board).
pub const PIIX3_DEVICE: u8 = 1;
/// Function number of the PCI-to-ISA bridge.
pub const ISA_FUNCTION: u8 = 0;
/// Function number of the IDE interface.
pub const IDE_FUNCTION: u8 = 1;
/// Intel vendor ID.
pub const INTEL_VENDOR_ID: u16 = 0x8086;
/// Device ID of the PIIX3 PCI-to-ISA bridge (datasheet, function 0 DID register).
pub const PIIX3_ISA_DEVICE_ID: u16 = 0x7000;
/// Device ID of the PIIX3 IDE interface (datasheet, function 1 DID register).
pub const PIIX3_IDE_DEVICE_ID: u16 = 0x7010;

/// ISA bridge register: IORT, ISA I/O recovery timer (8 bits, default 0x4D).
pub const REG_IORT: u8 = 0x4C;
/// ISA bridge register: XBCS, X-Bus chip select enable (16 bits, default 0x0003).
pub const REG_XBCS: u8 = 0x4E;
/// ISA bridge register: PIRQRCA, PCI interrupt routing control (8 bits each; PIRQRCB–PIRQRCD at
/// 0x61–0x63; default 0x80).
pub const REG_PIRQRC: u8 = 0x60;
/// ISA bridge register: TOM, top of memory (8 bits, default 0x02).
pub const REG_TOM: u8 = 0x69;
/// ISA bridge register: MSTAT, miscellaneous status (16 bits, default 0x0000).
pub const REG_MSTAT: u8 = 0x6A;
/// ISA bridge register: MBIRQ0, motherboard device IRQ route control 0 (default 0x80; MBIRQ1 at
/// 0x71).
pub const REG_MBIRQ0: u8 = 0x70;
/// ISA bridge register: MBDMA0, motherboard device DMA control 0 (default 0x04; MBDMA1 at
/// 0x77).
pub const REG_MBDMA0: u8 = 0x76;
/// ISA bridge register: PCSC, programmable chip select control (16 bits, default 0x0002).
pub const REG_PCSC: u8 = 0x78;
/// ISA bridge register: APICBASE, APIC base address relocation (8 bits, default 0).
pub const REG_APICBASE: u8 = 0x80;
/// ISA bridge register: DLC, deterministic latency control (8 bits, default 0).
pub const REG_DLC: u8 = 0x82;
/// ISA bridge register: SMICNTL, SMI control (8 bits, default 0x08).
pub const REG_SMICNTL: u8 = 0xA0;
/// ISA bridge register: SMIEN, SMI enable (16 bits).
pub const REG_SMIEN: u8 = 0xA2;
/// ISA bridge register: SEE, system event enable (32 bits).
pub const REG_SEE: u8 = 0xA4;
/// ISA bridge register: FTMR, fast off timer (8 bits, default 0x0F).
pub const REG_FTMR: u8 = 0xA8;
/// ISA bridge register: SMIREQ, SMI request (16 bits).
pub const REG_SMIREQ: u8 = 0xAA;
/// ISA bridge register: CTLTMR, clock scale STPCLK# low timer (8 bits).
pub const REG_CTLTMR: u8 = 0xAC;
/// ISA bridge register: CTHTMR, clock scale STPCLK# high timer (8 bits).
pub const REG_CTHTMR: u8 = 0xAE;

/// PIRQRCx bit 7: IRQROUTEN — 1 = routing disabled (the reset value).
pub const PIRQRC_DISABLE: u8 = 0x80;
/// PIRQRCx bits 3:0: the ISA IRQ the PIRQx# line is routed to.
pub const PIRQRC_IRQ_MASK: u8 = 0x0F;

/// IDE register: IDETIM, primary channel IDE timing (16 bits at 0x40–0x41).
pub const REG_IDETIM_PRIMARY: u8 = 0x40;
/// IDE register: IDETIM, secondary channel IDE timing (16 bits at 0x42–0x43).
pub const REG_IDETIM_SECONDARY: u8 = 0x42;
/// IDE register: SIDETIM, slave IDE timing (8 bits).
pub const REG_SIDETIM: u8 = 0x44;
/// IDETIM bit 15: IDE decode enable — the channel's legacy ports are decoded.
pub const IDETIM_DECODE_ENABLE: u16 = 0x8000;
/// IDETIM writable bits (bits 11:10 are reserved).
const IDETIM_WRITE_MASK: u16 = 0xF3FF;
/// BAR index of BMIBA, the Bus Master Interface Base Address (register 0x20).
pub const BMIBA_BAR: usize = 4;
/// Config register offset of BMIBA.
pub const REG_BMIBA: u8 = REG_BAR0 + 4 * BMIBA_BAR as u8;

/// Whether ISA IRQ `irq` may be the target of a PIRQ route (PIIX3 datasheet, PIRQRC: 0–2, 8
/// and 13 are reserved).
fn routable_irq(irq: u8) -> bool {
    matches!(irq, 3..=7 | 9..=12 | 14 | 15)
}

/// The PIIX3 PCI-to-ISA bridge, function 0 (vendor 0x8086, device 0x7000, class 0x060100,
/// header type 0x80: multi-function), with the QEMU platform's subsystem IDs 1AF4:1100.
///
/// Writable: PCICMD bits 3 (special cycle enable) and 8 (SERR# enable) — I/O space, memory
/// space and bus master are hardwired on —, PCISTS error bits (write 1 to clear), PIRQRC[A–D]
/// (bits 7 and 3:0), and IORT, XBCS, TOM, MSTAT, MBIRQ0/1, MBDMA0/1, PCSC, APICBASE, DLC and the
/// SMI/power management registers as plain storage without side effects. Other registers read
/// 0 and ignore writes.
#[derive(Debug, Clone)]
pub struct Piix3Isa {
    config: ConfigSpace,
}

impl Default for Piix3Isa {
    fn default() -> Self {
        Self::new()
    }
}

impl Piix3Isa {
    /// The bridge in its reset state (datasheet register defaults): PCICMD 0x0007, PCISTS 0x0200,
    /// IORT 0x4D, XBCS 0x0003, PIRQRC[A–D] 0x80 (disabled), TOM 0x02, MBIRQ0/1 0x80,
    /// MBDMA0/1 0x04, PCSC 0x0002, SMICNTL 0x08, FTMR 0x0F.
    pub fn new() -> Self {
        let mut c = ConfigSpace::new(INTEL_VENDOR_ID, PIIX3_ISA_DEVICE_ID);
        c.set_revision(0x00);
        c.set_class_code(0x06_01_00);
        c.set_header_type(0x80);
        c.set_subsystem(QEMU_SUBSYSTEM_VENDOR, QEMU_SUBSYSTEM_ID);
        c.set_u16(
            REG_COMMAND,
            COMMAND_IO_SPACE | COMMAND_MEMORY_SPACE | COMMAND_BUS_MASTER,
        );
        c.set_wmask_u16(REG_COMMAND, (1 << 3) | COMMAND_SERR_ENABLE);
        c.set_u16(REG_STATUS, 0x0200); // DEVSEL# timing medium
        c.set_w1c_mask_u16(REG_STATUS, 0x7800);
        let plain: &[(u8, u8, u8)] = &[
            // (register, reset value, write mask)
            (REG_IORT, 0x4D, 0xFF),
            (REG_XBCS, 0x03, 0xFF),
            (REG_XBCS + 1, 0x00, 0x07),
            (REG_TOM, 0x02, 0xFF),
            (REG_MSTAT, 0x00, 0xFF),
            (REG_MSTAT + 1, 0x00, 0xFF),
            (REG_MBIRQ0, 0x80, 0xFF),
            (REG_MBIRQ0 + 1, 0x80, 0xFF),
            (REG_MBDMA0, 0x04, 0xFF),
            (REG_MBDMA0 + 1, 0x04, 0xFF),
            (REG_PCSC, 0x02, 0xFF),
            (REG_PCSC + 1, 0x00, 0xFF),
            (REG_APICBASE, 0x00, 0x7F),
            (REG_DLC, 0x00, 0x0F),
            (REG_SMICNTL, 0x08, 0xFF),
            (REG_SMIEN, 0x00, 0xFF),
            (REG_SMIEN + 1, 0x00, 0xFF),
            (REG_SEE, 0x00, 0xFF),
            (REG_SEE + 1, 0x00, 0xFF),
            (REG_SEE + 2, 0x00, 0xFF),
            (REG_SEE + 3, 0x00, 0xFF),
            (REG_FTMR, 0x0F, 0xFF),
            (REG_SMIREQ, 0x00, 0xFF),
            (REG_SMIREQ + 1, 0x00, 0xFF),
            (REG_CTLTMR, 0x00, 0xFF),
            (REG_CTHTMR, 0x00, 0xFF),
        ];
        for &(r, v, m) in plain {
            c.set_u8(r, v);
            c.set_wmask_u8(r, m);
        }
        for i in 0..4 {
            c.set_u8(REG_PIRQRC + i, PIRQRC_DISABLE);
            c.set_wmask_u8(REG_PIRQRC + i, PIRQRC_DISABLE | PIRQRC_IRQ_MASK);
        }
        Piix3Isa { config: c }
    }

    /// The ISA IRQ that PCI interrupt line PIRQ`pirq`# (0 = PIRQA# … 3 = PIRQD#) is routed to,
    /// or `None` when PIRQRC bit 7 disables the route, the IRQ field is reserved (0–2, 8, 13),
    /// or `pirq` > 3 (datasheet, PIRQRC registers).
    pub fn pirq_route(&self, pirq: u8) -> Option<u8> {
        Self::pirq_route_config(&self.config, pirq)
    }

    /// [`Piix3Isa::pirq_route`] evaluated on a bridge configuration space (e.g. obtained through
    /// `PciHost::function(1, 0).config()`).
    pub fn pirq_route_config(config: &ConfigSpace, pirq: u8) -> Option<u8> {
        if pirq > 3 {
            return None;
        }
        let v = config.u8(REG_PIRQRC + pirq);
        let irq = v & PIRQRC_IRQ_MASK;
        (v & PIRQRC_DISABLE == 0 && routable_irq(irq)).then_some(irq)
    }

    /// The PIRQ line (0 = PIRQA# … 3 = PIRQD#) that interrupt pin `intx` (0 = INTA# … 3 =
    /// INTD#, i.e. the Interrupt Pin register value minus 1) of bus 0 device `device` is wired
    /// to on the i440FX/PIIX3 board: the standard rotation `(device + intx − 1) mod 4`, so that
    /// device 1 INTA# → PIRQA#, device 2 INTA# → PIRQB#, device 3 INTA# → PIRQC#, … (the
    /// wiring SeaBIOS and QEMU's i440FX assume; the ACPI _PRT / $PIR table must match).
    pub fn pirq_for_pin(device: u8, intx: u8) -> u8 {
        ((device as u16 + (intx & 3) as u16 + 3) % 4) as u8
    }

    /// The ISA IRQ that pin `intx` (0 = INTA#) of bus 0 device `device` currently reaches:
    /// [`Piix3Isa::pirq_for_pin`] then [`Piix3Isa::pirq_route`].
    pub fn route_intx(&self, device: u8, intx: u8) -> Option<u8> {
        self.pirq_route(Self::pirq_for_pin(device, intx))
    }
}

impl PciFunction for Piix3Isa {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }
}

/// What the machine must decode for the IDE function, derived from its configuration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdeDecode {
    /// PCICMD bit 0, I/O Space enable.
    pub io_space: bool,
    /// PCICMD bit 2, Bus Master enable: DMA may run (mirror into
    /// [`crate::ide::IdeController::set_bus_master_enabled`]).
    pub bus_master: bool,
    /// Route 0x1F0–0x1F7 and 0x3F6 to the controller (I/O Space and IDETIM primary bit 15).
    pub primary: bool,
    /// Route 0x170–0x177 and 0x376 to the controller (I/O Space and IDETIM secondary bit 15).
    pub secondary: bool,
    /// Route BMIBA..BMIBA+15 to the controller's bus master registers (I/O Space enabled and
    /// BMIBA programmed to a nonzero port).
    pub bmiba: Option<u16>,
}

impl IdeDecode {
    /// Evaluates an IDE function configuration space (e.g. `PciHost::function(1, 1).config()`).
    pub fn from_config(config: &ConfigSpace) -> Self {
        let cmd = config.command();
        let io = cmd & COMMAND_IO_SPACE != 0;
        let base = (config.u32(REG_BMIBA) & 0xFFF0) as u16;
        IdeDecode {
            io_space: io,
            bus_master: cmd & COMMAND_BUS_MASTER != 0,
            primary: io && config.u16(REG_IDETIM_PRIMARY) & IDETIM_DECODE_ENABLE != 0,
            secondary: io && config.u16(REG_IDETIM_SECONDARY) & IDETIM_DECODE_ENABLE != 0,
            bmiba: (io && base != 0).then_some(base),
        }
    }
}

/// The PIIX3 IDE interface, function 1 (vendor 0x8086, device 0x7010, class 0x010180: mass
/// storage / IDE, programming interface 0x80 = bus master capable, both channels in fixed
/// compatibility mode; header type 0x00; subsystem 1AF4:1100). No interrupt pin: the channels
/// use ISA IRQ 14/15.
///
/// Writable: PCICMD bits 0 (I/O Space) and 2 (Bus Master), PCISTS bits 12–13 (write 1 to
/// clear), MLT bits 7:4, IDETIM primary/secondary (0x40, 0x42; bits 15:12 and 9:0), SIDETIM
/// (0x44), and BMIBA (BAR4 at 0x20: an I/O BAR of 16 bytes). The datasheet reserves bits 31:16;
/// they are writable here, as on QEMU, so sizing with all ones reads back 0xFFFFFFF1 — firmware
/// such as SeaBIOS computes the size as `~(value & ~3) + 1` in 32 bits and needs the upper ones
/// (PCI Local Bus Spec 3.0 §6.2.5.1). Only bits 15:4 take part in decoding.
#[derive(Debug, Clone)]
pub struct Piix3Ide {
    config: ConfigSpace,
}

impl Default for Piix3Ide {
    fn default() -> Self {
        Self::new()
    }
}

impl Piix3Ide {
    /// The IDE function in its reset state (datasheet register defaults): PCICMD 0x0000 (no
    /// decoding, no bus mastering), PCISTS 0x0280, IDETIM 0x0000 (both channels' decode
    /// disabled), SIDETIM 0x00, BMIBA 0x00000001.
    pub fn new() -> Self {
        let mut c = ConfigSpace::new(INTEL_VENDOR_ID, PIIX3_IDE_DEVICE_ID);
        c.set_revision(0x00);
        c.set_class_code(0x01_01_80);
        c.set_header_type(0x00);
        c.set_subsystem(QEMU_SUBSYSTEM_VENDOR, QEMU_SUBSYSTEM_ID);
        c.set_wmask_u16(REG_COMMAND, COMMAND_IO_SPACE | COMMAND_BUS_MASTER);
        c.set_u16(REG_STATUS, 0x0280);
        c.set_w1c_mask_u16(REG_STATUS, 0x3000);
        c.set_wmask_u8(REG_LATENCY_TIMER, 0xF0);
        c.set_wmask_u16(REG_IDETIM_PRIMARY, IDETIM_WRITE_MASK);
        c.set_wmask_u16(REG_IDETIM_SECONDARY, IDETIM_WRITE_MASK);
        c.set_wmask_u8(REG_SIDETIM, 0xFF);
        c.init_bar(BMIBA_BAR, PciBarKind::Io, crate::ide::BUS_MASTER_SIZE)
            .expect("BAR4 definition is valid");
        c.set_wmask_u32(REG_BMIBA, 0xFFFF_FFF0);
        Piix3Ide { config: c }
    }

    /// Current decoding state (see [`IdeDecode`]).
    pub fn decode(&self) -> IdeDecode {
        IdeDecode::from_config(&self.config)
    }

    /// Device-side programming of BMIBA to I/O port `base` (bits 3:0 ignored).
    pub fn set_bmiba(&mut self, base: u16) {
        self.config.set_u32(REG_BMIBA, (base as u32 & 0xFFF0) | 0x1);
    }

    /// Programs the function the way PC firmware does before handing over to an OS (SeaBIOS's
    /// PIIX IDE setup plus PCI resource assignment): IDETIM decode enable on both channels,
    /// BMIBA = `bmiba`, PCICMD I/O Space and Bus Master enabled. For direct kernel boot without
    /// firmware; Linux's ata_piix ignores a channel whose IDETIM decode bit is clear.
    pub fn configure_like_firmware(&mut self, bmiba: u16) {
        self.config
            .set_u16(REG_IDETIM_PRIMARY, IDETIM_DECODE_ENABLE);
        self.config
            .set_u16(REG_IDETIM_SECONDARY, IDETIM_DECODE_ENABLE);
        self.set_bmiba(bmiba);
        self.config
            .set_u16(REG_COMMAND, COMMAND_IO_SPACE | COMMAND_BUS_MASTER);
    }
}

impl PciFunction for Piix3Ide {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::PciHost;
    use crate::Device;

    fn addr(dev: u8, func: u8, reg: u8) -> u32 {
        0x8000_0000 | (dev as u32) << 11 | (func as u32) << 8 | (reg & 0xFC) as u32
    }

    fn cfg_read(h: &mut PciHost, dev: u8, func: u8, reg: u8, len: usize) -> u32 {
        h.write(0, 0xCF8, &addr(dev, func, reg).to_le_bytes());
        let mut b = [0u8; 4];
        let port = 0xCFC + (reg & 3) as u64;
        h.read(0, port, &mut b[..len]);
        u32::from_le_bytes(b)
    }

    fn cfg_write(h: &mut PciHost, dev: u8, func: u8, reg: u8, len: usize, v: u32) {
        h.write(0, 0xCF8, &addr(dev, func, reg).to_le_bytes());
        let port = 0xCFC + (reg & 3) as u64;
        h.write(0, port, &v.to_le_bytes()[..len]);
    }

    fn host() -> PciHost {
        let mut h = PciHost::new();
        h.add_function(PIIX3_DEVICE, ISA_FUNCTION, Box::new(Piix3Isa::new()))
            .unwrap();
        h.add_function(PIIX3_DEVICE, IDE_FUNCTION, Box::new(Piix3Ide::new()))
            .unwrap();
        h
    }

    #[test]
    fn config_ids_and_class() {
        let mut h = host();
        assert_eq!(cfg_read(&mut h, 1, 0, 0x00, 4), 0x7000_8086);
        assert_eq!(cfg_read(&mut h, 1, 0, 0x08, 4), 0x0601_0000);
        assert_eq!(cfg_read(&mut h, 1, 0, 0x0E, 1), 0x80, "multi-function");
        assert_eq!(cfg_read(&mut h, 1, 0, 0x04, 2), 0x0007);
        assert_eq!(cfg_read(&mut h, 1, 1, 0x00, 4), 0x7010_8086);
        assert_eq!(cfg_read(&mut h, 1, 1, 0x08, 4), 0x0101_8000);
        assert_eq!(cfg_read(&mut h, 1, 1, 0x0E, 1), 0x00);
        assert_eq!(cfg_read(&mut h, 1, 1, 0x20, 4), 0x0000_0001);
        assert_eq!(cfg_read(&mut h, 1, 1, 0x2C, 4), 0x1100_1AF4);
        assert_eq!(cfg_read(&mut h, 1, 0, 0x2C, 4), 0x1100_1AF4);
        assert_eq!(cfg_read(&mut h, 1, 1, 0x3D, 1), 0, "no interrupt pin");
        assert_eq!(
            cfg_read(&mut h, 1, 2, 0x00, 4),
            0xFFFF_FFFF,
            "no function 2"
        );
        // IDs and class are read-only.
        cfg_write(&mut h, 1, 1, 0x00, 4, 0);
        cfg_write(&mut h, 1, 1, 0x08, 4, 0);
        assert_eq!(cfg_read(&mut h, 1, 1, 0x00, 4), 0x7010_8086);
        assert_eq!(cfg_read(&mut h, 1, 1, 0x08, 4), 0x0101_8000);
    }

    #[test]
    fn isa_bridge_registers() {
        let mut h = host();
        assert_eq!(cfg_read(&mut h, 1, 0, 0x60, 4), 0x8080_8080);
        assert_eq!(cfg_read(&mut h, 1, 0, 0x4C, 1), 0x4D);
        assert_eq!(cfg_read(&mut h, 1, 0, 0x4E, 2), 0x0003);
        assert_eq!(cfg_read(&mut h, 1, 0, 0x69, 1), 0x02);
        cfg_write(&mut h, 1, 0, 0x69, 1, 0xF8);
        assert_eq!(cfg_read(&mut h, 1, 0, 0x69, 1), 0xF8);
        cfg_write(&mut h, 1, 0, 0x60, 1, 0xFF);
        assert_eq!(cfg_read(&mut h, 1, 0, 0x60, 1), 0x8F, "bits 6:4 reserved");
        // PCICMD: IO/MEM/BM hardwired.
        cfg_write(&mut h, 1, 0, 0x04, 2, 0);
        assert_eq!(cfg_read(&mut h, 1, 0, 0x04, 2), 0x0007);
    }

    #[test]
    fn pirq_routing() {
        let mut isa = Piix3Isa::new();
        for p in 0..4 {
            assert_eq!(isa.pirq_route(p), None, "disabled at reset");
        }
        isa.config_write(0x60, &[0x0B, 0x0A, 0x85, 0x08]);
        assert_eq!(isa.pirq_route(0), Some(11));
        assert_eq!(isa.pirq_route(1), Some(10));
        assert_eq!(isa.pirq_route(2), None, "IRQROUTEN set");
        assert_eq!(isa.pirq_route(3), None, "IRQ 8 is reserved");
        assert_eq!(isa.pirq_route(4), None);
        assert_eq!(Piix3Isa::pirq_route_config(isa.config(), 1), Some(10));
        // Swizzle: device 1 INTA# -> PIRQA#, device 2 INTA# -> PIRQB#, device 3 INTB# -> PIRQD#.
        assert_eq!(Piix3Isa::pirq_for_pin(1, 0), 0);
        assert_eq!(Piix3Isa::pirq_for_pin(2, 0), 1);
        assert_eq!(Piix3Isa::pirq_for_pin(3, 1), 3);
        assert_eq!(Piix3Isa::pirq_for_pin(4, 1), 0);
        assert_eq!(Piix3Isa::pirq_for_pin(0, 0), 3);
        assert_eq!(isa.route_intx(2, 0), Some(10));
        assert_eq!(isa.route_intx(5, 0), Some(11));
    }

    #[test]
    fn bmiba_sizing_and_decode() {
        let mut h = host();
        cfg_write(&mut h, 1, 1, 0x20, 4, 0xFFFF_FFFF);
        assert_eq!(
            cfg_read(&mut h, 1, 1, 0x20, 4),
            0xFFFF_FFF1,
            "16-byte I/O BAR"
        );
        cfg_write(&mut h, 1, 1, 0x20, 4, 0xC001);
        assert_eq!(cfg_read(&mut h, 1, 1, 0x20, 4), 0xC001);
        let f = h.function(1, 1).unwrap();
        let bars = f.bars();
        assert_eq!(bars.len(), 1);
        assert_eq!(
            (bars[0].index, bars[0].address, bars[0].size),
            (4, 0xC000, 16)
        );
        // Not decoded until I/O space is enabled.
        let d = IdeDecode::from_config(f.config());
        assert_eq!(d.bmiba, None);
        assert!(!d.primary && !d.bus_master);
        cfg_write(&mut h, 1, 1, 0x04, 2, 0xFFFF);
        assert_eq!(
            cfg_read(&mut h, 1, 1, 0x04, 2),
            0x0005,
            "IOSE and BME writable"
        );
        cfg_write(&mut h, 1, 1, 0x40, 4, 0x8000_8000 | 0x0C00_0C00 | 0x0077);
        assert_eq!(
            cfg_read(&mut h, 1, 1, 0x40, 4),
            0x8000_8077,
            "IDETIM bits 11:10 reserved"
        );
        cfg_write(&mut h, 1, 1, 0x44, 1, 0x33);
        assert_eq!(cfg_read(&mut h, 1, 1, 0x44, 1), 0x33);
        let d = IdeDecode::from_config(h.function(1, 1).unwrap().config());
        assert_eq!(
            d,
            IdeDecode {
                io_space: true,
                bus_master: true,
                primary: true,
                secondary: true,
                bmiba: Some(0xC000)
            }
        );
        // Only the primary channel.
        cfg_write(&mut h, 1, 1, 0x42, 2, 0);
        let d = IdeDecode::from_config(h.function(1, 1).unwrap().config());
        assert!(d.primary && !d.secondary);
    }

    #[test]
    fn firmware_style_setup() {
        let mut ide = Piix3Ide::new();
        assert_eq!(ide.decode().bmiba, None);
        ide.configure_like_firmware(0xC040);
        assert_eq!(
            ide.decode(),
            IdeDecode {
                io_space: true,
                bus_master: true,
                primary: true,
                secondary: true,
                bmiba: Some(0xC040)
            }
        );
        assert_eq!(ide.config().u32(REG_BMIBA), 0xC041);
    }
}

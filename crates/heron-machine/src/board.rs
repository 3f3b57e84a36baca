//! The PC board's devices and their wiring: port-I/O decode, interrupt lines into the 8259A
//! pair, device timers against the virtual clock. Implements [`heron_softmmu::Bus`] for the CPU.

use heron_devices::i8042::I8042;
use heron_devices::pci::{PciFunction, PciHost};
use heron_devices::pic::Pic;
use heron_devices::pit::Pit;
use heron_devices::rtc::Rtc;
use heron_devices::uart::Uart;
use heron_devices::{le_value, set_le_value, Device, Nanos};
use heron_devices::fw_cfg::FwCfg;
use heron_devices::ide::{IdeController, BUS_MASTER_OFFSET, BUS_MASTER_SIZE};
use heron_devices::e1000::{E1000Decode, E1000PciProxy, E1000, IO_SIZE as NIC_IO_SIZE, MMIO_SIZE as NIC_MMIO_SIZE};
use heron_devices::piix3::{IdeDecode, Piix3Ide, Piix3Isa};
use heron_devices::{DmaError, DmaMemory};
use heron_softmmu::{Bus, GuestRam};
use std::cell::RefCell;
use std::rc::Rc;

/// Guest RAM as bus-mastering devices see it. Every write range is logged so the machine can
/// invalidate decoded code there before the CPU runs on (DMA bypasses the CPU's stores).
pub struct RamDma {
    ram: GuestRam,
    written: Rc<RefCell<Vec<(u64, u64)>>>,
}

impl RamDma {
    /// A DMA view of `ram` logging writes into `written` (guest-physical start, length).
    pub fn new(ram: GuestRam, written: Rc<RefCell<Vec<(u64, u64)>>>) -> Self {
        RamDma { ram, written }
    }
}

impl DmaMemory for RamDma {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.ram.read_bytes(addr, buf).map_err(|_| DmaError { addr, len: buf.len() as u64 })
    }
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), DmaError> {
        self.ram.write_bytes(addr, buf).map_err(|_| DmaError { addr, len: buf.len() as u64 })?;
        self.written.borrow_mut().push((addr, buf.len() as u64));
        Ok(())
    }
}

/// Guest instructions retired per nanosecond of virtual time is 1: the virtual CPU runs at
/// 1 GHz, the TSC counts retired instructions (DESIGN.md §8).
#[inline]
pub fn insns_to_ns(icount: u64) -> Nanos {
    icount
}

/// Inverse of [`insns_to_ns`].
#[inline]
pub fn ns_to_insns(ns: Nanos) -> u64 {
    ns
}

/// Requests from the guest that the machine acts on after the CPU returns.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BoardEvents {
    /// Reset through the keyboard controller, port 0x92 or port 0xCF9.
    pub reset: bool,
    /// ACPI S5 power-off.
    pub poweroff: bool,
}

/// The devices of the PC, as one bus.
pub struct Board {
    /// 8259A master/slave pair (IRQ 0–15).
    pub pic: Pic,
    /// 8254 PIT and port 0x61.
    pub pit: Pit,
    /// MC146818 RTC/CMOS.
    pub rtc: Rtc,
    /// 16550A on COM1.
    pub uart: Uart,
    /// i8042 keyboard controller.
    pub i8042: I8042,
    /// PCI host bridge (i440FX) with configuration mechanism #1.
    pub pci: PciHost,
    /// ACPI PM1 registers and PM timer.
    pub acpi: heron_devices::acpi_pm::AcpiPm,
    /// Last value written to port 0x80 (POST code).
    pub post_code: u8,
    /// PIIX3 reset control register (port 0xCF9).
    rcr: u8,
    /// System control port A (port 0x92): bit 1 = fast A20.
    port92: u8,
    /// Pending guest requests.
    pub events: BoardEvents,
    /// BIOS ROM mapped at 4 GiB − its size (read-only MMIO).
    bios: Option<std::sync::Arc<[u8]>>,
    /// The PIIX3 IDE controller (both channels; ports routed per the IDE function's decode).
    pub ide: IdeController,
    /// Port decode of the PIIX3 IDE function, refreshed after PCI configuration writes.
    ide_decode: IdeDecode,
    /// `PciHost::config_write_count` when the decodes below were last refreshed.
    pci_writes_seen: u64,
    /// The e1000 NIC at PCI 00:03.0, if the machine has one.
    pub nic: Option<Rc<RefCell<E1000>>>,
    /// BAR decode of the NIC.
    nic_decode: E1000Decode,
    /// PIC input of the NIC's INTA# (through the PIIX3 PIRQ routing), if routed.
    nic_irq: Option<u8>,
    /// QEMU's firmware configuration interface (ports 0x510–0x51B), present for BIOS boot.
    pub fw_cfg: Option<FwCfg>,
    /// isa-debug-exit, if configured.
    debug_exit: Option<heron_devices::debug_exit::DebugExit>,
    /// isa-debugcon devices with their output (None = the console's output stream).
    debugcons: Vec<(heron_devices::debugcon::DebugCon, Option<std::fs::File>)>,
}

/// I/O base of the ACPI PM registers (PM1a_EVT_BLK; PM1a_CNT_BLK at +4, PM_TMR_BLK at +8).
pub const ACPI_PM_BASE: u16 = 0x600;
/// PCI device number of the e1000 (00:03.0, as on QEMU's pc machine).
pub const NIC_PCI_DEVICE: u8 = 3;

/// IRQ of the ACPI SCI.
pub const ACPI_SCI_IRQ: u8 = 9;

impl Board {
    /// A board with every device in its power-on state; `rtc_start` is the host time (Unix
    /// seconds) the RTC starts from; `ram_bytes` goes into the CMOS memory-size bytes.
    pub fn new(rtc_start: i64, ram_bytes: u64, bios: Option<std::sync::Arc<[u8]>>, nic: Option<Rc<RefCell<E1000>>>) -> Self {
        let mut rtc = Rtc::new(rtc_start);
        rtc.set_memory_size(ram_bytes);
        let mut pci = PciHost::new();
        // PIIX3 at device 1, as on QEMU's pc machine: the slots are free on a new host.
        let _ = pci.add_function(1, 0, Box::new(Piix3Isa::new()));
        let _ = pci.add_function(1, 1, Box::new(Piix3Ide::new()));
        if let Some(n) = &nic {
            let _ = pci.add_function(NIC_PCI_DEVICE, 0, Box::new(E1000PciProxy::new(n.clone())));
        }
        Board {
            pic: Pic::new(),
            pit: Pit::new(),
            rtc,
            uart: Uart::new(),
            i8042: I8042::new(),
            pci,
            ide: IdeController::new(),
            ide_decode: IdeDecode::from_config(Piix3Ide::new().config()),
            pci_writes_seen: u64::MAX,
            nic_decode: nic.as_ref().map(|n| n.borrow().decode()).unwrap_or(E1000Decode { mmio: None, io: None, bus_master: false }),
            nic,
            nic_irq: None,
            acpi: heron_devices::acpi_pm::AcpiPm::new(),
            post_code: 0,
            rcr: 0,
            port92: 0x02,
            events: BoardEvents::default(),
            bios,
            fw_cfg: None,
            debug_exit: None,
            debugcons: Vec::new(),
        }
    }

    /// A20 gate state: on if either the i8042 output port or port 0x92 enables it.
    pub fn a20_enabled(&self) -> bool {
        self.i8042.a20_enabled() || self.port92 & 2 != 0
    }

    /// Earliest virtual time any device needs [`Board::tick`].
    pub fn next_deadline(&self) -> Option<Nanos> {
        let nic = self.nic.as_ref().and_then(|n| n.borrow().next_deadline());
        [self.pit.next_deadline(), self.rtc.next_deadline(), self.i8042.next_deadline(), self.acpi.next_deadline(), self.uart.next_deadline(), self.ide.next_deadline(), nic]
            .into_iter()
            .flatten()
            .min()
    }

    /// Run device timers up to `now` and update interrupt lines.
    pub fn tick(&mut self, now: Nanos) {
        if self.pit.next_deadline().is_some_and(|d| d <= now) {
            self.pit.tick(now);
        }
        if self.rtc.next_deadline().is_some_and(|d| d <= now) {
            self.rtc.tick(now);
        }
        if self.i8042.next_deadline().is_some_and(|d| d <= now) {
            self.i8042.tick(now);
        }
        if self.acpi.next_deadline().is_some_and(|d| d <= now) {
            self.acpi.tick(now);
        }
        if self.uart.next_deadline().is_some_and(|d| d <= now) {
            self.uart.tick(now);
        }
        if self.ide.next_deadline().is_some_and(|d| d <= now) {
            self.ide.tick(now);
        }
        if let Some(n) = &self.nic {
            let mut n = n.borrow_mut();
            if n.next_deadline().is_some_and(|d| d <= now) {
                n.tick(now);
            }
        }
        self.update_irqs();
    }

    /// Copy every device's interrupt output to its PIC input.
    pub fn update_irqs(&mut self) {
        if self.pit.take_irq0_edge() {
            self.pic.set_irq(0, true);
            self.pic.set_irq(0, false);
        }
        self.pic.set_irq(1, self.i8042.irq1_level());
        self.pic.set_irq(4, self.uart.irq_level());
        self.pic.set_irq(8, self.rtc.irq_level());
        self.pic.set_irq(ACPI_SCI_IRQ, self.acpi.sci_level());
        self.pic.set_irq(12, self.i8042.irq12_level());
        self.pic.set_irq(14, self.ide.irq14_level());
        self.pic.set_irq(15, self.ide.irq15_level());
        if let (Some(n), Some(irq)) = (&self.nic, self.nic_irq) {
            self.pic.set_irq(irq, n.borrow().irq_level());
        }
        if self.i8042.take_reset_request() {
            self.events.reset = true;
        }
        if self.acpi.take_poweroff_request() {
            self.events.poweroff = true;
        }
    }

    /// Program the PIIX3 IDE function as firmware would (I/O decode, both channels, bus
    /// master at `bmiba`), for direct Linux boot where no BIOS does it.
    pub fn configure_ide_like_firmware(&mut self, bmiba: u16) {
        if let Some(f) = self.pci.function_mut(1, 1) {
            let mut ide = Piix3Ide::new();
            ide.configure_like_firmware(bmiba);
            *f.config_mut() = ide.config().clone();
        }
        self.pci_writes_seen = u64::MAX;
    }

    /// Add the `--device` ISA devices (they take precedence over built-in ports they overlap).
    pub fn add_isa_devices(&mut self, specs: &[crate::device_spec::DeviceSpec]) -> Result<(), crate::MachineError> {
        use crate::device_spec::{DebugConOutput, DeviceSpec};
        for spec in specs {
            match spec {
                DeviceSpec::DebugExit { iobase, iosize } => {
                    self.debug_exit = Some(heron_devices::debug_exit::DebugExit::new(*iobase, *iosize));
                }
                DeviceSpec::DebugCon { iobase, readback, output } => {
                    let file = match output {
                        DebugConOutput::Stdio => None,
                        DebugConOutput::File(p) => Some(std::fs::File::create(p).map_err(|e| crate::MachineError::Drive(format!("isa-debugcon file {}: {e}", p.display())))?),
                    };
                    self.debugcons.push((heron_devices::debugcon::DebugCon::with_readback(*iobase, *readback), file));
                }
            }
        }
        Ok(())
    }

    /// The exit status an isa-debug-exit write asked for, once.
    pub fn take_debug_exit(&mut self) -> Option<u32> {
        self.debug_exit.as_mut().and_then(|d| d.take_exit_request())
    }

    /// Write what the guest sent to isa-debugcon ports to their files (or `console`).
    pub fn drain_debugcons(&mut self, console: &mut dyn std::io::Write) -> std::io::Result<()> {
        for (dev, file) in self.debugcons.iter_mut() {
            let bytes = dev.take_output();
            if !bytes.is_empty() {
                match file {
                    Some(f) => std::io::Write::write_all(f, &bytes)?,
                    None => console.write_all(&bytes)?,
                }
            }
        }
        Ok(())
    }

    /// An isa-debug-exit or isa-debugcon device at `port` (device, offset).
    fn isa_device(&mut self, port: u16) -> Option<(&mut dyn Device, u64)> {
        if let Some(d) = self.debug_exit.as_mut() {
            let off = port.wrapping_sub(d.iobase());
            if off < d.iosize() {
                return Some((d, off as u64));
            }
        }
        for (d, _) in self.debugcons.iter_mut() {
            if port == d.iobase() {
                return Some((d, 0));
            }
        }
        None
    }

    /// Program the NIC and its PIRQ route as firmware would (BAR0 at `mmio`, BAR1 at `io`,
    /// INTA# on `irq`), for direct Linux boot where no BIOS does it.
    pub fn configure_nic_like_firmware(&mut self, mmio: u32, io: u16, irq: u8) {
        if let Some(n) = &self.nic {
            n.borrow_mut().configure_like_firmware(mmio, io, irq);
            let pirq = Piix3Isa::pirq_for_pin(NIC_PCI_DEVICE, 0);
            if let Some(isa) = self.pci.function_mut(1, 0) {
                isa.config_mut().set_u8(0x60 + pirq, irq);
            }
        }
        self.pci_writes_seen = u64::MAX;
    }

    /// Poll the NIC's backend and move received frames into the guest's RX ring.
    pub fn poll_nic(&mut self, now: Nanos) {
        if let Some(n) = &self.nic {
            n.borrow_mut().poll_rx(now);
            self.update_irqs();
        }
    }

    /// Re-read PCI-programmed decodes (IDE ports, NIC BARs, PIRQ routes) after configuration
    /// writes.
    fn refresh_ide_decode(&mut self) {
        let n = self.pci.config_write_count();
        if n != self.pci_writes_seen {
            self.pci_writes_seen = n;
            if let Some(f) = self.pci.function(1, 1) {
                self.ide_decode = IdeDecode::from_config(f.config());
            }
            self.ide.set_bus_master_enabled(self.ide_decode.bus_master);
            if let Some(nic) = &self.nic {
                self.nic_decode = nic.borrow().decode();
                let pirq = Piix3Isa::pirq_for_pin(NIC_PCI_DEVICE, 0);
                self.nic_irq = self.pci.function(1, 0).and_then(|isa| Piix3Isa::pirq_route_config(isa.config(), pirq));
            }
        }
    }

    /// The NIC if `addr` falls in its BAR0 (offset within BAR0).
    fn nic_mmio(&mut self, addr: u64) -> Option<(Rc<RefCell<E1000>>, u64)> {
        self.refresh_ide_decode();
        let base = self.nic_decode.mmio?;
        let nic = self.nic.as_ref()?;
        (addr >= base && addr < base + NIC_MMIO_SIZE as u64).then(|| (nic.clone(), addr - base))
    }

    /// The NIC if `port` falls in its I/O BAR (offset within BAR1).
    fn nic_io(&mut self, port: u16) -> Option<(Rc<RefCell<E1000>>, u64)> {
        self.refresh_ide_decode();
        let base = self.nic_decode.io? as u64;
        let nic = self.nic.as_ref()?;
        let p = port as u64;
        (p >= base && p < base + NIC_IO_SIZE as u64).then(|| (nic.clone(), p - base))
    }

    fn port_device(&mut self, port: u16) -> Option<(&mut dyn Device, u64)> {
        let p = port as u64;
        if self.isa_device(port).is_some() {
            return self.isa_device(port);
        }
        self.refresh_ide_decode();
        let d = self.ide_decode;
        if let Some(base) = d.bmiba {
            if (base as u64..base as u64 + BUS_MASTER_SIZE).contains(&p) {
                return Some((&mut self.ide, BUS_MASTER_OFFSET + p - base as u64));
            }
        }
        if (d.primary && matches!(port, 0x1F0..=0x1F7 | 0x3F6)) || (d.secondary && matches!(port, 0x170..=0x177 | 0x376)) {
            return Some((&mut self.ide, p));
        }
        Some(match port {
            0x20 | 0x21 | 0xA0 | 0xA1 | 0x4D0 | 0x4D1 => (&mut self.pic, p),
            0x40..=0x43 | 0x61 => (&mut self.pit, p),
            0x70 | 0x71 => (&mut self.rtc, p),
            0x60 | 0x64 => (&mut self.i8042, p),
            0x3F8..=0x3FF => (&mut self.uart, p - 0x3F8),
            0xCF8 | 0xCFA | 0xCFB | 0xCFC..=0xCFF => (&mut self.pci, p),
            ACPI_PM_BASE..=0x60B => (&mut self.acpi, p - ACPI_PM_BASE as u64),
            0x510..=0x51B => match self.fw_cfg.as_mut() {
                Some(f) => (f, p - 0x510),
                None => return None,
            },
            _ => return None,
        })
    }
}

impl Bus for Board {
    fn pio_read(&mut self, icount: u64, port: u16, size: u8) -> u32 {
        let now = insns_to_ns(icount);
        let mut buf = [0xFFu8; 4];
        let data = &mut buf[..size.clamp(1, 4) as usize];
        match port {
            _ if self.isa_device(port).is_some() => {
                if let Some((d, off)) = self.isa_device(port) {
                    d.read(now, off, data);
                }
            }
            0x80 => set_le_value(data, self.post_code as u64),
            0x92 => set_le_value(data, self.port92 as u64),
            0xCF9 => set_le_value(data, self.rcr as u64),
            _ if self.nic_io(port).is_some() => {
                let (n, off) = self.nic_io(port).unwrap();
                n.borrow_mut().io_read(now, off, data);
            }
            _ => {
                if let Some((d, off)) = self.port_device(port) {
                    d.read(now, off, data);
                }
            }
        }
        let v = le_value(data) as u32;
        self.update_irqs();
        v
    }

    fn pio_write(&mut self, icount: u64, port: u16, size: u8, value: u32) {
        let now = insns_to_ns(icount);
        let mut buf = [0u8; 4];
        let data = &mut buf[..size.clamp(1, 4) as usize];
        set_le_value(data, value as u64);
        match port {
            _ if self.isa_device(port).is_some() => {
                if let Some((d, off)) = self.isa_device(port) {
                    d.write(now, off, data);
                }
            }
            0x80 => self.post_code = value as u8,
            0x92 => {
                // Port 0x92: bit 0 = fast reset (on a 0 -> 1 transition), bit 1 = A20.
                if value & 1 != 0 && self.port92 & 1 == 0 {
                    self.events.reset = true;
                }
                self.port92 = value as u8 & 3;
            }
            0xCF9 if size == 1 => {
                // PIIX3 RCR: writing RST_CPU (bit 2) resets the system (SYS_RST bit 1 selects
                // hard vs soft reset; both restart the machine here).
                if value & 4 != 0 {
                    self.events.reset = true;
                }
                self.rcr = value as u8 & 0x0A;
            }
            _ if self.nic_io(port).is_some() => {
                let (n, off) = self.nic_io(port).unwrap();
                n.borrow_mut().io_write(now, off, data);
            }
            _ => {
                if let Some((d, off)) = self.port_device(port) {
                    d.write(now, off, data);
                }
            }
        }
        self.update_irqs();
    }

    fn mmio_read(&mut self, icount: u64, addr: u64, size: u8) -> u64 {
        if let Some((n, off)) = self.nic_mmio(addr) {
            let mut buf = [0u8; 8];
            let data = &mut buf[..size.clamp(1, 8) as usize];
            n.borrow_mut().read(insns_to_ns(icount), off, data);
            let v = le_value(data);
            self.update_irqs();
            return v;
        }
        if let Some(rom) = &self.bios {
            let base = (1u64 << 32) - rom.len() as u64;
            if addr >= base && addr + size as u64 <= 1 << 32 {
                let off = (addr - base) as usize;
                let mut v = 0u64;
                for k in 0..size as usize {
                    v |= (rom[off + k] as u64) << (8 * k);
                }
                return v;
            }
        }
        // Nothing else is mapped above RAM: open bus reads as all ones.
        u64::MAX
    }

    fn mmio_write(&mut self, icount: u64, addr: u64, size: u8, value: u64) {
        if let Some((n, off)) = self.nic_mmio(addr) {
            let mut buf = [0u8; 8];
            let data = &mut buf[..size.clamp(1, 8) as usize];
            set_le_value(data, value);
            n.borrow_mut().write(insns_to_ns(icount), off, data);
            self.update_irqs();
        }
    }

    fn interrupt_pending(&self) -> bool {
        self.pic.has_interrupt()
    }

    fn acknowledge_interrupt(&mut self) -> u8 {
        let v = self.pic.acknowledge();
        self.update_irqs();
        v
    }
}

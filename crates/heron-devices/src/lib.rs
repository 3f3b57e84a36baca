//! PC chipset device models for Heron: one file per device, each behind [`Device`].
//!
//! Devices know nothing of the CPU. They are driven by the machine (`heron-machine`), which
//! dispatches port I/O and MMIO to them, passes the current virtual time, asks for their next
//! timer deadline, and reads their interrupt lines (level of each IRQ output) to feed the 8259A PIC.
//! Time is virtual (DESIGN.md §8): `now` is nanoseconds of guest time derived from retired
//! guest instructions, never the host clock (except the RTC's initial date, read once at start).

#![warn(missing_docs)]

pub mod acpi_pm;
pub mod atapi;
pub mod debug_exit;
pub mod debugcon;
pub mod e1000;
pub mod fw_cfg;
pub mod i8042;
pub mod ide;
pub mod pci;
pub mod pic;
pub mod piix3;
pub mod pit;
pub mod rtc;
pub mod uart;

/// Virtual time in nanoseconds since machine start.
pub type Nanos = u64;

/// A device on the port-I/O or MMIO bus.
///
/// `offset` is relative to the base of the region the device was registered at; `data.len()` is
/// the access size in bytes (1, 2 or 4 for port I/O; up to 8 for MMIO). Values are little-endian.
/// A device must accept any offset and size the guest issues: unknown registers read as the
/// device's documented open-bus value (usually all ones) and ignore writes — never panic.
pub trait Device {
    /// Guest read of `data.len()` bytes at `offset`, at virtual time `now`.
    fn read(&mut self, now: Nanos, offset: u64, data: &mut [u8]);
    /// Guest write of `data` at `offset`, at virtual time `now`.
    fn write(&mut self, now: Nanos, offset: u64, data: &[u8]);
    /// The next virtual time at which the device needs [`Device::tick`] (e.g. a timer expiry),
    /// or `None`. The machine calls `tick` at or after that time and before the guest can observe it.
    fn next_deadline(&self) -> Option<Nanos> {
        None
    }
    /// Advance the device's timers to `now` (raise interrupt lines for expired timers).
    fn tick(&mut self, _now: Nanos) {}
}

/// Errors of a DMA transfer: the guest pointed a device at memory that is not RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("DMA to guest-physical {addr:#x}+{len:#x} is outside RAM")]
pub struct DmaError {
    /// Guest-physical start address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Guest memory as seen by a bus-mastering device (IDE bus master, e1000): guest-physical
/// addresses, RAM only. The machine implements it; a device holds a boxed handle.
pub trait DmaMemory {
    /// Read `buf.len()` bytes at guest-physical `addr`.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError>;
    /// Write `buf` at guest-physical `addr`.
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), DmaError>;
}

/// Little-endian value of an access buffer (1–8 bytes).
pub fn le_value(data: &[u8]) -> u64 {
    let mut v = 0u64;
    for (i, b) in data.iter().enumerate().take(8) {
        v |= (*b as u64) << (8 * i);
    }
    v
}

/// Fill an access buffer with the little-endian bytes of `v`.
pub fn set_le_value(data: &mut [u8], v: u64) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = if i < 8 { (v >> (8 * i)) as u8 } else { 0 };
    }
}

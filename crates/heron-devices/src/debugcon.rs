//! QEMU's `isa-debugcon` device (hw/char/debugcon.c), the Bochs "port 0xE9 hack": every byte the
//! guest writes to the port goes to a host character device, with no setup, no status register
//! and no interrupts — the simplest possible debug output for firmware and OS kernels.
//!
//! The device occupies one port (QEMU registers a 1-byte region). A write emits the low byte of
//! the written value; reads return the `readback` value, 0xE9 by default, which guests test to see
//! whether the console is present. QEMU accepts only 1-byte accesses there
//! (`valid.max_access_size = 1`), so a wider `out` reaches the device as its low byte and the
//! remaining bytes go to the following (unassigned) ports: here a write keeps only its first byte,
//! and the extra bytes of a wider read return 0xFF (open bus).
//!
//! The device only collects the bytes; the machine drains them with [`DebugCon::take_output`] and
//! writes them to a file or stdout. The buffer is unbounded, so the machine should drain it
//! regularly (e.g. with the serial console output).

use crate::{Device, Nanos};

/// QEMU's default I/O port of `isa-debugcon` (property `iobase`, hw/char/debugcon.c).
pub const DEFAULT_IOBASE: u16 = 0xE9;
/// QEMU's default value read back from the port (property `readback`): 0xE9.
pub const DEFAULT_READBACK: u8 = 0xE9;

/// QEMU's `isa-debugcon`: bytes written to its single port are collected for the host.
///
/// Register it at [`DebugCon::iobase`] (one port; `offset` 0); drain with [`DebugCon::take_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugCon {
    iobase: u16,
    readback: u8,
    output: Vec<u8>,
}

impl Default for DebugCon {
    /// QEMU's defaults: port 0xE9, readback 0xE9.
    fn default() -> Self {
        Self::new(DEFAULT_IOBASE)
    }
}

impl DebugCon {
    /// A debug console at I/O port `iobase`, reading back [`DEFAULT_READBACK`].
    pub fn new(iobase: u16) -> Self {
        Self::with_readback(iobase, DEFAULT_READBACK)
    }

    /// A debug console at I/O port `iobase` whose port reads as `readback` (QEMU property
    /// `readback`; QEMU stores a u32 but a 1-byte read only returns its low byte).
    pub fn with_readback(iobase: u16, readback: u8) -> Self {
        DebugCon {
            iobase,
            readback,
            output: Vec::new(),
        }
    }

    /// The device's I/O port.
    pub fn iobase(&self) -> u16 {
        self.iobase
    }

    /// The byte a read of the port returns.
    pub fn readback(&self) -> u8 {
        self.readback
    }

    /// Takes all bytes the guest has written since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// True if written bytes are waiting in the output buffer.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }
}

impl Device for DebugCon {
    /// A read at offset 0 returns the readback byte in the first byte of the access; every other
    /// byte (wider accesses, other offsets) reads 0xFF.
    fn read(&mut self, _now: Nanos, offset: u64, data: &mut [u8]) {
        data.fill(0xFF);
        if offset == 0 {
            if let Some(first) = data.first_mut() {
                *first = self.readback;
            }
        }
    }

    /// A write at offset 0 appends its first (low) byte to the output; other offsets are ignored.
    fn write(&mut self, _now: Nanos, offset: u64, data: &[u8]) {
        if offset == 0 {
            if let Some(&b) = data.first() {
                self.output.push(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_written_bytes() {
        let mut d = DebugCon::default();
        assert_eq!(d.iobase(), 0xE9);
        assert!(!d.has_output());
        for &b in b"hello\n" {
            d.write(0, 0, &[b]);
        }
        assert!(d.has_output());
        assert_eq!(d.take_output(), b"hello\n");
        assert!(d.take_output().is_empty());
        assert!(!d.has_output());
        // All byte values pass through unchanged.
        for b in 0..=255u8 {
            d.write(0, 0, &[b]);
        }
        assert_eq!(d.take_output(), (0..=255u8).collect::<Vec<_>>());
    }

    #[test]
    fn wide_writes_emit_the_low_byte_only() {
        let mut d = DebugCon::default();
        d.write(0, 0, &0x4142u16.to_le_bytes());
        d.write(0, 0, &0x4344_4546u32.to_le_bytes());
        d.write(0, 1, b"Z");
        d.write(0, 0, &[]);
        assert_eq!(d.take_output(), b"BF");
    }

    #[test]
    fn reads_return_readback() {
        let mut d = DebugCon::default();
        let mut b = [0u8; 1];
        d.read(0, 0, &mut b);
        assert_eq!(b, [0xE9]);
        let mut w = [0u8; 4];
        d.read(0, 0, &mut w);
        assert_eq!(w, [0xE9, 0xFF, 0xFF, 0xFF]);
        d.read(0, 1, &mut b);
        assert_eq!(b, [0xFF]);
        let mut d = DebugCon::with_readback(0x402, 0x42);
        assert_eq!((d.iobase(), d.readback()), (0x402, 0x42));
        d.read(0, 0, &mut b);
        assert_eq!(b, [0x42]);
        assert!(!d.has_output(), "reads produce no output");
    }
}

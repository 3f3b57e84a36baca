//! QEMU's `isa-debug-exit` device (hw/misc/debugexit.c): a port the guest writes to ask the
//! emulator to exit, used by OS test harnesses to report pass/fail.
//!
//! A write of value `V` (1, 2 or 4 bytes, little-endian) at any offset inside the device's
//! `iosize` ports requests an exit with status `(V << 1) | 1` — QEMU's rule, so a guest can never
//! request status 0 and a test harness can tell the guest's exit from QEMU's own. The status is
//! computed in 32 bits (`V << 1` wraps); a host process exit status keeps only its low 8 bits,
//! e.g. `V` = 0x10 gives 0x21 (33). Reads return 0, as in QEMU.
//!
//! The device only records the request; the machine polls [`DebugExit::take_exit_request`] after
//! each port write (or each run slice), stops the guest and exits with that status. If the guest
//! writes again before the machine takes the request, the first request is kept: the guest asked
//! to stop there.
//!
//! QEMU's defaults are `iobase=0x501,iosize=2` ([`DEFAULT_IOBASE`], [`DEFAULT_IOSIZE`]); OS-dev
//! tutorials mostly use `iobase=0xf4,iosize=4` ([`OSDEV_IOBASE`], [`OSDEV_IOSIZE`]).

use crate::{le_value, Device, Nanos};

/// QEMU's default I/O base of `isa-debug-exit` (property `iobase`, hw/misc/debugexit.c).
pub const DEFAULT_IOBASE: u16 = 0x501;
/// QEMU's default size in ports of `isa-debug-exit` (property `iosize`).
pub const DEFAULT_IOSIZE: u16 = 2;
/// The I/O base most OS-development guides configure (`-device isa-debug-exit,iobase=0xf4,iosize=4`).
pub const OSDEV_IOBASE: u16 = 0xF4;
/// The size in ports most OS-development guides configure (4: a 32-bit `out`).
pub const OSDEV_IOSIZE: u16 = 4;

/// QEMU's `isa-debug-exit`: a write of `V` asks the machine to exit with status `(V << 1) | 1`.
///
/// Register it at [`DebugExit::iobase`] for [`DebugExit::iosize`] ports; `offset` is relative to
/// the base. After guest writes, call [`DebugExit::take_exit_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugExit {
    iobase: u16,
    iosize: u16,
    request: Option<u32>,
}

impl Default for DebugExit {
    /// QEMU's defaults: iobase 0x501, iosize 2.
    fn default() -> Self {
        Self::new(DEFAULT_IOBASE, DEFAULT_IOSIZE)
    }
}

impl DebugExit {
    /// A device at I/O base `iobase` covering `iosize` ports (QEMU properties `iobase`, `iosize`).
    /// The machine decides whether the range is valid and free; an `iosize` of 0 makes a device
    /// that ignores every access.
    pub fn new(iobase: u16, iosize: u16) -> Self {
        DebugExit {
            iobase,
            iosize,
            request: None,
        }
    }

    /// First I/O port of the device.
    pub fn iobase(&self) -> u16 {
        self.iobase
    }

    /// Number of I/O ports the device covers, from [`DebugExit::iobase`].
    pub fn iosize(&self) -> u16 {
        self.iosize
    }

    /// The exit status the guest requested, `(V << 1) | 1`, if it wrote since the last call;
    /// clears the request.
    pub fn take_exit_request(&mut self) -> Option<u32> {
        self.request.take()
    }

    /// Whether an exit request is waiting (without taking it).
    pub fn exit_requested(&self) -> bool {
        self.request.is_some()
    }

    fn covers(&self, offset: u64) -> bool {
        offset < u64::from(self.iosize)
    }
}

impl Device for DebugExit {
    /// Reads inside the device return 0 (QEMU's `debug_exit_read`); bytes beyond `iosize` read as
    /// open bus (0xFF).
    fn read(&mut self, _now: Nanos, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = if self.covers(offset.saturating_add(i as u64)) {
                0
            } else {
                0xFF
            };
        }
    }

    /// A write of any size at an offset inside the device requests exit status
    /// `(V << 1) | 1`, where `V` is the written little-endian value (QEMU's `debug_exit_write`;
    /// the offset does not matter). Writes outside `iosize` are ignored.
    fn write(&mut self, _now: Nanos, offset: u64, data: &[u8]) {
        if data.is_empty() || !self.covers(offset) {
            return;
        }
        let v = le_value(data) as u32;
        self.request.get_or_insert((v << 1) | 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_qemus() {
        let d = DebugExit::default();
        assert_eq!((d.iobase(), d.iosize()), (0x501, 2));
        assert_eq!((OSDEV_IOBASE, OSDEV_IOSIZE), (0xF4, 4));
    }

    #[test]
    fn write_requests_exit_with_shifted_status() {
        let mut d = DebugExit::new(0xF4, 4);
        assert_eq!(d.take_exit_request(), None);
        d.write(0, 0, &[0x10]);
        assert!(d.exit_requested());
        assert_eq!(d.take_exit_request(), Some(0x21));
        assert_eq!(d.take_exit_request(), None, "taking clears the request");
        d.write(0, 0, &[0]);
        assert_eq!(d.take_exit_request(), Some(1));
        // 32-bit out: the whole value counts.
        d.write(0, 0, &0x1234_5678u32.to_le_bytes());
        assert_eq!(d.take_exit_request(), Some(0x2468_ACF1));
        // 16-bit out.
        d.write(0, 0, &0x0102u16.to_le_bytes());
        assert_eq!(d.take_exit_request(), Some(0x0205));
        // The top bit of a 32-bit value is shifted out.
        d.write(0, 0, &0xFFFF_FFFFu32.to_le_bytes());
        assert_eq!(d.take_exit_request(), Some(0xFFFF_FFFF));
        // The low 8 bits are what a host process exit status keeps: V = 0x31 -> 0x63 = 99.
        d.write(0, 0, &[0x31]);
        assert_eq!(d.take_exit_request().map(|s| s & 0xFF), Some(99));
    }

    #[test]
    fn any_offset_inside_iosize_counts() {
        let mut d = DebugExit::new(0xF4, 4);
        for off in 0..4 {
            d.write(0, off, &[3]);
            assert_eq!(d.take_exit_request(), Some(7), "offset {off}");
        }
        d.write(0, 4, &[3]);
        assert_eq!(d.take_exit_request(), None, "outside iosize");
        let mut d = DebugExit::default();
        d.write(0, 1, &[2]);
        assert_eq!(d.take_exit_request(), Some(5));
        d.write(0, 2, &[2]);
        assert_eq!(d.take_exit_request(), None);
        let mut none = DebugExit::new(0x501, 0);
        none.write(0, 0, &[1]);
        assert_eq!(none.take_exit_request(), None);
        d.write(0, 0, &[]);
        assert_eq!(d.take_exit_request(), None, "empty access");
    }

    #[test]
    fn first_request_wins_until_taken() {
        let mut d = DebugExit::default();
        d.write(0, 0, &[1]);
        d.write(0, 0, &[2]);
        assert_eq!(d.take_exit_request(), Some(3));
        assert_eq!(d.take_exit_request(), None);
    }

    #[test]
    fn reads_return_zero() {
        let mut d = DebugExit::new(0xF4, 4);
        let mut b = [0xAAu8; 4];
        d.read(0, 0, &mut b);
        assert_eq!(b, [0; 4]);
        let mut b = [0xAAu8; 1];
        d.read(0, 3, &mut b);
        assert_eq!(b, [0]);
        // Bytes past iosize read as open bus.
        let mut d = DebugExit::default();
        let mut b = [0xAAu8; 4];
        d.read(0, 0, &mut b);
        assert_eq!(b, [0, 0, 0xFF, 0xFF]);
        d.read(0, 7, &mut b);
        assert_eq!(b, [0xFF; 4]);
        d.read(0, u64::MAX, &mut b);
        assert_eq!(b, [0xFF; 4]);
        assert!(!d.exit_requested(), "reads never request an exit");
    }
}

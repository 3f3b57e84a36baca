//! TAP backend: the guest's frames go to and come from a host TAP interface (Linux
//! `/dev/net/tun`, see the kernel's Documentation/networking/tuntap.rst).
//!
//! The interface is opened with `IFF_TAP | IFF_NO_PI` (bare Ethernet frames, no packet-info
//! header) and non-blocking I/O. Configuring it (addresses, bridge, `ip link set up`) is the
//! host administrator's business; opening one needs `CAP_NET_ADMIN`, or a persistent device
//! made for this user beforehand (`ip tuntap add dev tap0 mode tap user $USER`).
//!
//! Unlike the user-mode backend this one keeps no clocks of its own, but frames arrive when
//! the host sends them, so runs with a live TAP are not deterministic either.

use crate::{NetBackend, NetError};

/// The longest interface name, bytes (the kernel's `IFNAMSIZ` less the terminating NUL).
pub const MAX_IFNAME: usize = 15;

/// Largest frame read from the device, bytes (a TAP interface's MTU can be raised up to
/// 64 KiB).
const READ_BUF: usize = 65536;

/// A host TAP interface as a [`NetBackend`].
#[derive(Debug)]
pub struct TapNet {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
    name: String,
    buf: Vec<u8>,
    dropped: u64,
}

impl TapNet {
    /// Opens (creating if needed) the TAP interface `ifname` (at most [`MAX_IFNAME`] bytes; a
    /// `%d` in it lets the kernel pick a number, an empty name picks `tapN`).
    ///
    /// Errors: a bad name ([`NetError::Config`]); `/dev/net/tun` missing, permission denied
    /// (no `CAP_NET_ADMIN`), or the device busy ([`NetError::Io`] with a hint).
    pub fn open(ifname: &str) -> Result<Self, NetError> {
        if ifname.len() > MAX_IFNAME {
            return Err(NetError::Config(format!(
                "tap interface name '{ifname}' is longer than {MAX_IFNAME} bytes"
            )));
        }
        if ifname
            .bytes()
            .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace())
            || ifname == "."
            || ifname == ".."
        {
            return Err(NetError::Config(format!(
                "'{ifname}' is not a valid interface name"
            )));
        }
        Self::open_os(ifname)
    }

    #[cfg(not(target_os = "linux"))]
    fn open_os(_ifname: &str) -> Result<Self, NetError> {
        Err(NetError::Config(
            "the tap backend is only available on Linux".into(),
        ))
    }

    #[cfg(target_os = "linux")]
    fn open_os(ifname: &str) -> Result<Self, NetError> {
        use std::ffi::CStr;
        use std::io;
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

        const PATH: &CStr = c"/dev/net/tun";
        // SAFETY: a NUL-terminated path and plain flags.
        let raw = unsafe {
            libc::open(
                PATH.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            let source = io::Error::last_os_error();
            let hint = match source.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
                    " (no TUN/TAP support: load the 'tun' module, or in a container pass /dev/net/tun through)"
                }
                Some(libc::EACCES) | Some(libc::EPERM) => {
                    " (permission denied: needs read/write access to /dev/net/tun)"
                }
                _ => "",
            };
            return Err(NetError::Io {
                what: format!("opening /dev/net/tun{hint}"),
                source,
            });
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        /// `struct ifreq` as TUNSETIFF reads it: the name, then `ifr_flags` in the union.
        #[repr(C)]
        struct IfReq {
            name: [u8; libc::IFNAMSIZ],
            flags: libc::c_short,
            _pad: [u8; 24 - std::mem::size_of::<libc::c_short>()],
        }
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
        req.flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes an ifreq-sized struct, which `req` is (40 bytes).
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) };
        if rc < 0 {
            let source = io::Error::last_os_error();
            let hint = match source.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    " (permission denied: needs CAP_NET_ADMIN, or a persistent tap made for this \
                     user with 'ip tuntap add dev NAME mode tap user USER')"
                }
                Some(libc::EBUSY) => " (busy: another process has it open)",
                Some(libc::EINVAL) => " (invalid: the name may belong to a non-TAP interface)",
                _ => "",
            };
            return Err(NetError::Io {
                what: format!("creating tap interface '{ifname}'{hint}"),
                source,
            });
        }
        let len = req
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(req.name.len());
        let name = String::from_utf8_lossy(&req.name[..len]).into_owned();
        Ok(TapNet {
            fd,
            name,
            buf: vec![0; READ_BUF],
            dropped: 0,
        })
    }

    /// The interface's name as the kernel gave it (e.g. `tap0` for a requested `tap%d`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Frames from the guest dropped because the device would not take them (queue full,
    /// interface down).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(target_os = "linux")]
impl NetBackend for TapNet {
    fn send(&mut self, frame: &[u8]) {
        use std::os::fd::AsRawFd;
        // SAFETY: writes `frame.len()` bytes from a live slice to our descriptor.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n < 0 || n as usize != frame.len() {
            self.dropped += 1;
        }
    }

    fn recv(&mut self) -> Option<Vec<u8>> {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: reads at most `buf.len()` bytes into our buffer.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                )
            };
            if n > 0 {
                return Some(self.buf[..n as usize].to_vec());
            }
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return None; // EAGAIN (nothing waiting) or an error: nothing for the guest.
        }
    }
}

#[cfg(not(target_os = "linux"))]
impl NetBackend for TapNet {
    fn send(&mut self, _frame: &[u8]) {}

    fn recv(&mut self) -> Option<Vec<u8>> {
        None
    }
}

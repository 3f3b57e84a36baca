//! Network backends for Heron's NICs: the [`NetBackend`] trait the device models (e1000) use,
//! and its implementations:
//!
//! * [`user::UserNet`]: user-mode NAT like QEMU's `-netdev user` (slirp), on smoltcp: no
//!   privileges needed; guest 10.0.2.15, gateway/host 10.0.2.2, DNS 10.0.2.3, DHCP, TCP and
//!   UDP NAT to host sockets, `hostfwd` port forwards. Real-time, so not deterministic.
//! * [`tap::TapNet`]: a host TAP interface (Linux `/dev/net/tun`).
//! * [`spec`]: `--nic` option strings ([`NicSpec`]) and [`open_nic`].

#![warn(missing_docs)]

pub mod spec;
pub mod tap;
pub mod user;

pub use spec::{open_nic, parse_mac, MacAddr, NicSpec};
pub use tap::TapNet;
pub use user::{HostFwd, UserConfig, UserNet};

/// Errors of a network backend.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A host I/O error (socket, TAP device).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Host error.
        source: std::io::Error,
    },
    /// A bad backend option.
    #[error("{0}")]
    Config(String),
}

/// The host side of a guest NIC: Ethernet frames in and out.
///
/// Frames are whole Ethernet II frames without the FCS (14-byte header + payload, at most
/// 1514 bytes for a standard MTU unless the backend says otherwise). Backends never block:
/// the machine polls them from its run loop.
pub trait NetBackend {
    /// The guest transmitted `frame`.
    fn send(&mut self, frame: &[u8]);
    /// The next frame for the guest, if one is waiting.
    fn recv(&mut self) -> Option<Vec<u8>>;
    /// Let the backend do its host-side work (sockets, timers); called often by the machine.
    fn poll(&mut self) {}
}

//! User-mode networking, like QEMU's `-netdev user` (slirp): a virtual NAT router that needs no
//! privileges, built on [smoltcp] for the guest-facing TCP.
//!
//! # The virtual network (QEMU slirp's defaults)
//!
//! | address | what |
//! | --- | --- |
//! | 10.0.2.0/24 | the network |
//! | 10.0.2.2 | gateway and host: TCP/UDP to it goes to the host's 127.0.0.1; DHCP server; answers ping |
//! | 10.0.2.3 | DNS: queries are forwarded to the host's resolvers (/etc/resolv.conf) |
//! | 10.0.2.15 | the address the DHCP server gives the guest |
//!
//! Both virtual hosts answer ARP (RFC 826) with the MAC 52:55:0a:00:02:02.
//!
//! # How traffic is carried
//!
//! * **TCP, guest → anywhere**: smoltcp terminates the guest's connection (any destination
//!   address: smoltcp's AnyIP mode) while a non-blocking host socket connects to the same
//!   address (10.0.2.2 → 127.0.0.1). The SYN-ACK is held back until the host connect
//!   succeeds; a refused or failed connect, or one still pending after
//!   [`UserConfig::connect_timeout`] ([`CONNECT_TIMEOUT`] by default), resets the guest's
//!   connection. Data is pumped both ways through 64 KiB buffers with backpressure (a slow
//!   host reader closes the guest's TCP window; a slow guest stops the host reads), FIN
//!   becomes `shutdown(Write)` and back, a reset on either side resets the other.
//! * **TCP, host → guest** ([`HostFwd`]): a host listener; each accepted connection becomes a
//!   smoltcp connection from 10.0.2.2 (port 49152–65535) to the guest's port.
//! * **UDP**: one non-blocking host socket per guest (address, port); replies from the host's
//!   loopback appear to come from 10.0.2.2. Flows idle for [`UDP_IDLE_TIMEOUT`] are dropped.
//! * **DHCP** (RFC 2131) and **DNS** forwarding are answered by this module directly.
//!
//! # Time and determinism
//!
//! smoltcp's clock is the host's monotonic clock ([`std::time::Instant`]), not the guest's
//! virtual time: the peers are real host sockets, so this backend is real-time by nature, and
//! **a run that uses it is not deterministic** (DESIGN.md §8 allows this for real networks).
//!
//! # Limits
//!
//! IPv4 only (IPv6 frames are dropped); one guest (every DHCP client gets 10.0.2.15); ICMP
//! only to 10.0.2.2 and 10.0.2.3 (echo); fragmented UDP datagrams from the guest are dropped
//! (the host → guest direction is fragmented as needed); no `restrict=`, `net=`, UDP hostfwd,
//! TFTP, SMB.

mod dhcp;
mod dns;
mod frames;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant as StdInstant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress,
    IpAddress, IpCidr, IpEndpoint, IpListenEndpoint, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket,
};

pub use dns::{host_resolvers, parse_resolv_conf};

use crate::{NetBackend, NetError};

/// The address the DHCP server gives the guest (QEMU slirp's default, 10.0.2.15).
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The virtual gateway, also the host as the guest sees it (QEMU slirp's 10.0.2.2).
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// The virtual DNS server (QEMU slirp's 10.0.2.3).
pub const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// The virtual network, 10.0.2.0 with [`PREFIX_LEN`] bits of prefix.
pub const NETWORK: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 0);
/// The virtual network's prefix length, bits (a /24).
pub const PREFIX_LEN: u8 = 24;
/// The virtual network's subnet mask (255.255.255.0), as DHCP option 1 gives it.
pub const NETMASK: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 0);
/// The MAC address of the virtual gateway and DNS server (QEMU slirp's 52:55:0a:00:02:02).
pub const GATEWAY_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
/// The DHCP lease time, seconds (one day; T1 and T2 are half and 7/8 of it, RFC 2131 §4.4.5).
pub const DHCP_LEASE_SECS: u32 = 86_400;
/// How long a TCP connection may stay half-open by default ([`UserConfig::connect_timeout`]):
/// a host connect still pending, or a forwarded connection's SYN to the guest still
/// unanswered, after this is reset (75 s, the classic BSD connection-establishment timer, as
/// in QEMU's slirp).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(75);
/// A UDP flow with no datagram either way for this long is dropped (240 s, slirp's
/// `SO_EXPIRE`).
pub const UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(240);
/// A DNS flow (to 10.0.2.3:53) idle for this long is dropped (10 s, slirp's `SO_EXPIREFAST`).
pub const DNS_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Each smoltcp TCP socket's receive and transmit buffer, bytes (window scaling is used).
const TCP_BUFFER: usize = 64 * 1024;
/// Most TCP connections at once (more SYNs are reset).
const MAX_TCP: usize = 1024;
/// Most UDP flows at once (the least recently used one goes first).
const MAX_UDP: usize = 512;
/// Most frames queued towards the guest; past it smoltcp holds back and host reads pause.
const TO_GUEST_MAX: usize = 512;
/// Most frames queued from the guest between two polls; past it frames are dropped.
const FROM_GUEST_MAX: usize = 1024;
/// A listener made for a SYN that smoltcp did not take (a bad checksum) is dropped after this.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(2);
/// A reset connection whose RST could not be sent (no ARP answer) is forgotten after this.
const CLOSED_LINGER: Duration = Duration::from_secs(5);
/// First local port of forwarded (host → guest) connections on 10.0.2.2 (IANA dynamic range).
const EPHEMERAL_FIRST: u16 = 49152;
/// The DHCP server and client ports (RFC 2131 §4.1).
const DHCP_SERVER_PORT: u16 = 67;
const DHCP_CLIENT_PORT: u16 = 68;

/// One host-to-guest TCP port forward, QEMU's `hostfwd=tcp:HOSTADDR:HOSTPORT-GUESTADDR:GUESTPORT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFwd {
    /// Host address to listen on (QEMU: empty means 0.0.0.0, all interfaces).
    pub host_addr: Ipv4Addr,
    /// Host port to listen on; 0 picks a free one (see [`UserNet::hostfwd_addrs`]).
    pub host_port: u16,
    /// Guest address to connect to (empty means [`GUEST_IP`]); must be in 10.0.2.0/24.
    pub guest_addr: Ipv4Addr,
    /// Guest port to connect to (1–65535).
    pub guest_port: u16,
}

impl HostFwd {
    /// A forward from `127.0.0.1:host_port` to the guest's ([`GUEST_IP`]) `guest_port`.
    pub fn localhost(host_port: u16, guest_port: u16) -> Self {
        HostFwd {
            host_addr: Ipv4Addr::LOCALHOST,
            host_port,
            guest_addr: GUEST_IP,
            guest_port,
        }
    }
}

impl FromStr for HostFwd {
    type Err = NetError;

    /// Parses QEMU's `[tcp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT` (the value of
    /// `hostfwd=`), e.g. `tcp:127.0.0.1:2222-:22` or `tcp::8080-10.0.2.15:80`.
    fn from_str(s: &str) -> Result<Self, NetError> {
        let bad = |why: &str| {
            NetError::Config(format!(
                "hostfwd={s}: {why} (expected tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT)"
            ))
        };
        let (host, guest) = s.split_once('-').ok_or_else(|| bad("missing '-'"))?;
        let mut parts = host.split(':');
        let (Some(proto), Some(haddr), Some(hport), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("the host part must be PROTO:HOSTADDR:HOSTPORT"));
        };
        match proto {
            "" | "tcp" => {}
            "udp" => return Err(bad("UDP forwarding is not supported, only tcp")),
            p => return Err(bad(&format!("unknown protocol '{p}'"))),
        }
        let host_addr = if haddr.is_empty() {
            Ipv4Addr::UNSPECIFIED
        } else {
            haddr
                .parse()
                .map_err(|_| bad(&format!("bad host address '{haddr}'")))?
        };
        let host_port = hport
            .parse()
            .map_err(|_| bad(&format!("bad host port '{hport}'")))?;
        let (gaddr, gport) = guest
            .rsplit_once(':')
            .ok_or_else(|| bad("the guest part must be GUESTADDR:GUESTPORT"))?;
        let guest_addr = if gaddr.is_empty() {
            GUEST_IP
        } else {
            gaddr
                .parse()
                .map_err(|_| bad(&format!("bad guest address '{gaddr}'")))?
        };
        if !is_guest_addr(guest_addr) {
            return Err(bad(&format!(
                "guest address {guest_addr} is not a host of 10.0.2.0/24"
            )));
        }
        let guest_port: u16 = gport
            .parse()
            .map_err(|_| bad(&format!("bad guest port '{gport}'")))?;
        if guest_port == 0 {
            return Err(bad("guest port 0"));
        }
        Ok(HostFwd {
            host_addr,
            host_port,
            guest_addr,
            guest_port,
        })
    }
}

impl fmt::Display for HostFwd {
    /// QEMU's syntax, e.g. `tcp:127.0.0.1:2222-10.0.2.15:22`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tcp:{}:{}-{}:{}",
            self.host_addr, self.host_port, self.guest_addr, self.guest_port
        )
    }
}

/// Options of [`UserNet`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserConfig {
    /// Host-to-guest TCP port forwards.
    pub hostfwd: Vec<HostFwd>,
    /// Where DNS queries to 10.0.2.3 go: `None` reads the host's /etc/resolv.conf (at
    /// [`UserNet::new`]); an empty list answers every query with SERVFAIL. Only the first
    /// server is asked.
    pub dns_servers: Option<Vec<SocketAddr>>,
    /// How long a TCP connection may stay half-open (host connect pending, or a forwarded
    /// connection's SYN unanswered by the guest) before it is reset; [`CONNECT_TIMEOUT`] by
    /// default.
    pub connect_timeout: Duration,
}

impl Default for UserConfig {
    /// No forwards, the host's resolvers, [`CONNECT_TIMEOUT`].
    fn default() -> Self {
        UserConfig {
            hostfwd: Vec::new(),
            dns_servers: None,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }
}

impl UserConfig {
    /// Parses a QEMU-style `user[,hostfwd=tcp:ADDR:HPORT-:GPORT]...` string.
    pub fn parse(s: &str) -> Result<Self, NetError> {
        let mut opts = s.split(',');
        if opts.next() != Some("user") {
            return Err(NetError::Config(format!(
                "'{s}': a user network spec starts with 'user'"
            )));
        }
        let mut config = UserConfig::default();
        for opt in opts {
            let (key, value) = opt.split_once('=').ok_or_else(|| {
                NetError::Config(format!("user network option '{opt}' is not KEY=VALUE"))
            })?;
            config.apply_option(key, value)?;
        }
        Ok(config)
    }

    /// Applies one `key=value` option of a `user` spec.
    pub(crate) fn apply_option(&mut self, key: &str, value: &str) -> Result<(), NetError> {
        match key {
            "hostfwd" => self.hostfwd.push(value.parse()?),
            _ => {
                return Err(NetError::Config(format!(
                    "unsupported user network option '{key}' (supported: hostfwd)"
                )))
            }
        }
        Ok(())
    }
}

impl FromStr for UserConfig {
    type Err = NetError;

    /// See [`UserConfig::parse`].
    fn from_str(s: &str) -> Result<Self, NetError> {
        UserConfig::parse(s)
    }
}

/// Whether `ip` can be a guest on the virtual network: in 10.0.2.0/24 and not the network,
/// broadcast, gateway or DNS address.
fn is_guest_addr(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    o[..3] == NETWORK.octets()[..3] && !matches!(o[3], 0 | 2 | 3 | 255)
}

/// The smoltcp device: frame queues between [`UserNet`]'s `send`/`recv` and the interface.
struct Queues {
    /// Frames from the guest, for smoltcp.
    from_guest: VecDeque<Vec<u8>>,
    /// Frames for the guest (smoltcp's and hand-built ones).
    to_guest: VecDeque<Vec<u8>>,
}

struct RxTok(Vec<u8>);
struct TxTok<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        self.0.push_back(frame);
        r
    }
}

impl Device for Queues {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxTok, TxTok<'_>)> {
        let frame = self.from_guest.pop_front()?;
        Some((RxTok(frame), TxTok(&mut self.to_guest)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxTok<'_>> {
        (self.to_guest.len() < TO_GUEST_MAX).then_some(TxTok(&mut self.to_guest))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = frames::ETH_HEADER + frames::MTU;
        caps
    }
}

/// The host side of one TCP connection.
enum HostSide {
    /// A non-blocking connect in progress.
    Connecting(socket2::Socket),
    /// Connected.
    Open(TcpStream),
    /// Closed, failed or never opened.
    Gone,
}

/// One proxied TCP connection: a smoltcp socket (the guest's peer) and a host socket.
struct TcpConn {
    host: HostSide,
    /// (guest endpoint, virtual peer endpoint).
    tuple: (IpEndpoint, IpEndpoint),
    started: StdInstant,
    /// The guest's FIN was passed on as `shutdown(Write)`.
    host_write_shut: bool,
    /// The host's EOF was passed on (smoltcp `close()`, a FIN after the buffered data).
    host_eof: bool,
    /// When the smoltcp socket was first seen closed.
    closed_at: Option<StdInstant>,
}

/// What a non-blocking connect has come to.
enum ConnectStatus {
    Pending,
    Connected,
    Failed,
}

/// One UDP flow, keyed by the guest's address and whether it is DNS (10.0.2.3:53).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct UdpKey {
    guest: SocketAddrV4,
    dns: bool,
}

struct UdpFlow {
    sock: UdpSocket,
    last: StdInstant,
}

/// A hostfwd listener.
struct Forward {
    listener: TcpListener,
    rule: HostFwd,
}

/// User-mode NAT networking (see the [module docs](self)): a [`NetBackend`] that needs no
/// privileges.
///
/// # What the machine must do
///
/// * `send` only sorts the guest's frame (DHCP is answered there at once); TCP, ARP and ICMP
///   are processed at the next [`NetBackend::poll`]. So call `poll` after a burst of `send`s
///   and then drain `recv` until `None`.
/// * Call `poll` often in host time — every 1–10 ms while the guest runs, also while it
///   halts — since host sockets (hostfwd listeners, connects, data, UDP replies) are polled,
///   not waited on. [`UserNet::poll_delay`] gives the longest sensible wait. Throughput is
///   bounded by the cadence: about one TCP window (64 KiB) per connection and direction per
///   poll.
/// * Time is the host's monotonic clock, read inside `poll`; the guest's virtual time is not
///   used (see the module docs: runs with this backend are not deterministic).
/// * Frames from `recv` are at least 60 bytes (padded) and at most 1514; up to 512 wait in
///   the queue, beyond which the backend holds back (TCP) or drops (UDP) until the guest
///   drains it. The guest's frames must carry valid checksums: an e1000 model must complete
///   checksum offload and TSO before `send`.
pub struct UserNet {
    iface: Interface,
    dev: Queues,
    sockets: SocketSet<'static>,
    epoch: StdInstant,
    guest_mac: Option<EthernetAddress>,
    dns: Vec<SocketAddr>,
    connect_timeout: Duration,
    tcp: HashMap<SocketHandle, TcpConn>,
    tuples: HashMap<(IpEndpoint, IpEndpoint), SocketHandle>,
    /// Listeners made for SYNs not yet taken by smoltcp, and when.
    pending: Vec<(SocketHandle, StdInstant)>,
    pending_tuples: HashSet<(IpEndpoint, IpEndpoint)>,
    forwards: Vec<Forward>,
    next_port: u16,
    udp: HashMap<UdpKey, UdpFlow>,
    ip_ident: u16,
    udp_buf: Vec<u8>,
}

impl fmt::Debug for UserNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserNet")
            .field("guest_mac", &self.guest_mac)
            .field("dns", &self.dns)
            .field("tcp_connections", &self.tcp.len())
            .field("udp_flows", &self.udp.len())
            .field(
                "hostfwd",
                &self.forwards.iter().map(|f| f.rule).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl UserNet {
    /// Sets up the virtual network and binds the hostfwd listeners (an error names the rule
    /// whose address could not be bound).
    pub fn new(config: UserConfig) -> Result<Self, NetError> {
        let mut forwards = Vec::new();
        for rule in &config.hostfwd {
            let addr = SocketAddrV4::new(rule.host_addr, rule.host_port);
            let listener = TcpListener::bind(addr).map_err(|source| NetError::Io {
                what: format!("hostfwd={rule}: listening on {addr}"),
                source,
            })?;
            listener
                .set_nonblocking(true)
                .map_err(|source| NetError::Io {
                    what: format!("hostfwd={rule}: making the listener non-blocking"),
                    source,
                })?;
            forwards.push(Forward {
                listener,
                rule: *rule,
            });
        }
        let mut dev = Queues {
            from_guest: VecDeque::new(),
            to_guest: VecDeque::new(),
        };
        let epoch = StdInstant::now();
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(GATEWAY_MAC)));
        // TCP initial sequence numbers: a run is real-time anyway, so seed from the clock.
        cfg.random_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32;
        let mut iface = Interface::new(cfg, &mut dev, Instant::from_micros(0));
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(IpAddress::Ipv4(GATEWAY_IP), PREFIX_LEN))
                .expect("2 addresses");
            addrs
                .push(IpCidr::new(IpAddress::Ipv4(DNS_IP), PREFIX_LEN))
                .expect("2 addresses");
        });
        // Accept TCP for any destination address: that is the NAT.
        iface.set_any_ip(true);
        Ok(UserNet {
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            epoch,
            guest_mac: None,
            dns: config.dns_servers.unwrap_or_else(host_resolvers),
            connect_timeout: config.connect_timeout,
            tcp: HashMap::new(),
            tuples: HashMap::new(),
            pending: Vec::new(),
            pending_tuples: HashSet::new(),
            forwards,
            next_port: EPHEMERAL_FIRST,
            udp: HashMap::new(),
            ip_ident: 0,
            udp_buf: vec![0; 65536],
        })
    }

    /// The host addresses the hostfwd rules listen on, in rule order (with the real port
    /// where a rule asked for port 0).
    pub fn hostfwd_addrs(&self) -> Vec<SocketAddr> {
        self.forwards
            .iter()
            .map(|f| {
                f.listener.local_addr().unwrap_or_else(|_| {
                    SocketAddr::V4(SocketAddrV4::new(f.rule.host_addr, f.rule.host_port))
                })
            })
            .collect()
    }

    /// The DNS servers queries to 10.0.2.3 are forwarded to (the first one is asked).
    pub fn dns_servers(&self) -> &[SocketAddr] {
        &self.dns
    }

    /// The guest's MAC address, once a frame from it has been seen.
    pub fn guest_mac(&self) -> Option<[u8; 6]> {
        self.guest_mac.map(|m| m.0)
    }

    /// Number of open TCP connections (both directions).
    pub fn tcp_connections(&self) -> usize {
        self.tcp.len()
    }

    /// Number of live UDP flows (DNS included).
    pub fn udp_flows(&self) -> usize {
        self.udp.len()
    }

    /// How long the machine may wait before the next [`NetBackend::poll`] when the guest
    /// does nothing, host time: `None` when nothing is pending at all (no connection, flow
    /// or listener); otherwise at most 10 ms, since host sockets are polled, not waited on.
    pub fn poll_delay(&mut self) -> Option<Duration> {
        let now = self.now();
        let stack = self
            .iface
            .poll_delay(now, &self.sockets)
            .map(Duration::from);
        let host = (!self.tcp.is_empty()
            || !self.udp.is_empty()
            || !self.forwards.is_empty()
            || !self.pending.is_empty())
        .then_some(Duration::from_millis(10));
        match (stack, host) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    fn gateway_mac() -> EthernetAddress {
        EthernetAddress(GATEWAY_MAC)
    }

    /// Queues a hand-built frame for the guest (dropped when the queue is full).
    fn push_to_guest(&mut self, frame: Vec<u8>) {
        if self.dev.to_guest.len() < TO_GUEST_MAX {
            self.dev.to_guest.push_back(frame);
        }
    }

    /// Queues a guest frame for smoltcp.
    fn push_to_stack(&mut self, frame: &[u8]) {
        if self.dev.from_guest.len() < FROM_GUEST_MAX {
            self.dev.from_guest.push_back(frame.to_vec());
        }
    }

    /// Sends a UDP datagram to the guest.
    fn udp_to_guest(
        &mut self,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        dst_mac: EthernetAddress,
        payload: &[u8],
    ) {
        self.ip_ident = self.ip_ident.wrapping_add(1);
        for frame in frames::udp_frames(
            Self::gateway_mac(),
            dst_mac,
            src,
            dst,
            payload,
            self.ip_ident,
        ) {
            self.push_to_guest(frame);
        }
    }

    /// Where a guest connection to `ip:port` goes on the host, if anywhere.
    fn host_target(&self, ip: Ipv4Addr, port: u16) -> Option<SocketAddr> {
        if ip == GATEWAY_IP {
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)))
        } else if ip == DNS_IP {
            // DNS over TCP goes to the resolver; nothing else listens there.
            (port == dns::DNS_PORT)
                .then(|| self.dns.first().copied())
                .flatten()
        } else if ip.octets()[..3] == NETWORK.octets()[..3]
            || ip.is_broadcast()
            || ip.is_multicast()
            || ip.is_unspecified()
            || ip.is_loopback()
            || port == 0
        {
            None
        } else {
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
    }

    /// An IPv4 packet from the guest.
    fn guest_ipv4(&mut self, frame: &[u8], dst_mac: EthernetAddress, payload: &[u8]) {
        let Ok(ip) = Ipv4Packet::new_checked(payload) else {
            return;
        };
        if !ip.verify_checksum() {
            return;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let fragmented = ip.more_frags() || ip.frag_offset() != 0;
        match ip.next_header() {
            IpProtocol::Udp => {
                if fragmented {
                    return;
                }
                let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
                    return;
                };
                if !udp.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst)) {
                    return;
                }
                let data = udp.payload();
                if udp.dst_port() == DHCP_SERVER_PORT
                    && (dst.is_broadcast() || dst == GATEWAY_IP)
                    && udp.src_port() == DHCP_CLIENT_PORT
                {
                    if let Some(reply) = dhcp::handle(data) {
                        self.udp_to_guest(
                            SocketAddrV4::new(GATEWAY_IP, DHCP_SERVER_PORT),
                            SocketAddrV4::new(reply.dst_ip, DHCP_CLIENT_PORT),
                            reply.dst_mac,
                            &reply.payload,
                        );
                    }
                } else if is_guest_addr(src) && !dst_mac.is_broadcast() {
                    let guest = SocketAddrV4::new(src, udp.src_port());
                    let to = SocketAddrV4::new(dst, udp.dst_port());
                    let data = data.to_vec();
                    self.guest_udp(guest, to, &data);
                }
            }
            IpProtocol::Tcp => {
                if !is_guest_addr(src) || dst_mac.is_broadcast() {
                    return;
                }
                if !fragmented {
                    if let Ok(tcp) = TcpPacket::new_checked(ip.payload()) {
                        if tcp.syn() && !tcp.ack() && !tcp.rst() {
                            self.prepare_listener(
                                IpEndpoint::new(IpAddress::Ipv4(src), tcp.src_port()),
                                IpEndpoint::new(IpAddress::Ipv4(dst), tcp.dst_port()),
                            );
                        }
                    }
                }
                self.push_to_stack(frame);
            }
            // Echo (ping) to the virtual hosts: smoltcp answers. Nothing else is routed.
            IpProtocol::Icmp if dst == GATEWAY_IP || dst == DNS_IP => self.push_to_stack(frame),
            _ => {}
        }
    }

    /// A guest SYN to `peer`: make a smoltcp listener for it, unless its connection exists.
    fn prepare_listener(&mut self, guest: IpEndpoint, peer: IpEndpoint) {
        let tuple = (guest, peer);
        if self.tuples.contains_key(&tuple) || self.pending_tuples.contains(&tuple) {
            return; // A retransmitted SYN.
        }
        let IpAddress::Ipv4(peer_ip) = peer.addr;
        if self.host_target(peer_ip, peer.port).is_none()
            || self.tcp.len() + self.pending.len() >= MAX_TCP
        {
            return; // smoltcp (AnyIP) resets the SYN: no socket listens.
        }
        let mut sock = new_tcp_socket();
        if sock
            .listen(IpListenEndpoint {
                addr: Some(peer.addr),
                port: peer.port,
            })
            .is_err()
        {
            return;
        }
        // Hold the SYN-ACK until the host connect succeeds.
        sock.pause_synack(true);
        let handle = self.sockets.add(sock);
        self.pending.push((handle, StdInstant::now()));
        self.pending_tuples.insert(tuple);
    }

    /// Turns the listeners that received a SYN into connections, starting their host connect.
    fn adopt_pending(&mut self) {
        self.pending_tuples.clear();
        for (handle, since) in std::mem::take(&mut self.pending) {
            let sock = self.sockets.get_mut::<tcp::Socket>(handle);
            if sock.state() == tcp::State::Listen {
                if since.elapsed() < LISTEN_TIMEOUT {
                    self.pending.push((handle, since));
                } else {
                    self.sockets.remove(handle);
                }
                continue;
            }
            let (Some(guest), Some(peer)) = (sock.remote_endpoint(), sock.local_endpoint()) else {
                self.sockets.remove(handle);
                continue;
            };
            let IpAddress::Ipv4(peer_ip) = peer.addr;
            let host = match self.host_target(peer_ip, peer.port).map(connect_host) {
                Some(Ok(s)) => HostSide::Connecting(s),
                _ => {
                    self.sockets.get_mut::<tcp::Socket>(handle).abort();
                    HostSide::Gone
                }
            };
            self.add_conn(handle, (guest, peer), host);
        }
    }

    fn add_conn(&mut self, handle: SocketHandle, tuple: (IpEndpoint, IpEndpoint), host: HostSide) {
        self.tuples.insert(tuple, handle);
        self.tcp.insert(
            handle,
            TcpConn {
                host,
                tuple,
                started: StdInstant::now(),
                host_write_shut: false,
                host_eof: false,
                closed_at: None,
            },
        );
    }

    /// Accepts host connections on the hostfwd listeners and connects them to the guest.
    fn accept_forwarded(&mut self) {
        let mut accepted = Vec::new();
        for fwd in &self.forwards {
            for _ in 0..16 {
                match fwd.listener.accept() {
                    Ok((stream, _)) => accepted.push((stream, fwd.rule)),
                    Err(_) => break, // WouldBlock, or a transient accept error.
                }
            }
        }
        for (stream, rule) in accepted {
            if self.tcp.len() >= MAX_TCP
                || stream.set_nonblocking(true).is_err()
                || stream.set_nodelay(true).is_err()
            {
                reset_stream(&stream);
                continue;
            }
            let Some(port) = self.alloc_port() else {
                reset_stream(&stream);
                continue;
            };
            let guest = IpEndpoint::new(IpAddress::Ipv4(rule.guest_addr), rule.guest_port);
            let local = IpEndpoint::new(IpAddress::Ipv4(GATEWAY_IP), port);
            let mut sock = new_tcp_socket();
            if sock.connect(self.iface.context(), guest, local).is_err() {
                reset_stream(&stream);
                continue;
            }
            let handle = self.sockets.add(sock);
            self.add_conn(handle, (guest, local), HostSide::Open(stream));
        }
    }

    /// A free local port on 10.0.2.2 for a forwarded connection.
    fn alloc_port(&mut self) -> Option<u16> {
        let in_use: HashSet<u16> = self
            .tuples
            .keys()
            .filter(|(_, local)| local.addr == IpAddress::Ipv4(GATEWAY_IP))
            .map(|(_, local)| local.port)
            .collect();
        for _ in EPHEMERAL_FIRST..=u16::MAX {
            let port = self.next_port;
            self.next_port = if port == u16::MAX {
                EPHEMERAL_FIRST
            } else {
                port + 1
            };
            if !in_use.contains(&port) {
                return Some(port);
            }
        }
        None
    }

    /// Moves data between every smoltcp socket and its host socket; true if anything moved.
    fn pump_tcp(&mut self) -> bool {
        let now = StdInstant::now();
        let mut progress = false;
        for (&handle, conn) in self.tcp.iter_mut() {
            let sock = self.sockets.get_mut::<tcp::Socket>(handle);
            progress |= pump_conn(sock, conn, now, self.connect_timeout);
        }
        progress
    }

    /// Forgets the connections whose smoltcp socket is closed (and its RST, if any, sent).
    fn reap_tcp(&mut self) {
        let now = StdInstant::now();
        let mut done = Vec::new();
        for (&handle, conn) in self.tcp.iter_mut() {
            let sock = self.sockets.get::<tcp::Socket>(handle);
            if sock.state() != tcp::State::Closed {
                continue;
            }
            let since = *conn.closed_at.get_or_insert(now);
            if sock.remote_endpoint().is_none() || now - since > CLOSED_LINGER {
                done.push(handle);
            }
        }
        for handle in done {
            if let Some(conn) = self.tcp.remove(&handle) {
                if let HostSide::Open(stream) = &conn.host {
                    if !(conn.host_eof && conn.host_write_shut) {
                        reset_stream(stream);
                    }
                }
                self.tuples.remove(&conn.tuple);
            }
            self.sockets.remove(handle);
        }
    }

    /// A UDP datagram from the guest to `to` (not DHCP).
    fn guest_udp(&mut self, guest: SocketAddrV4, to: SocketAddrV4, data: &[u8]) {
        let (dns, target) = if *to.ip() == DNS_IP {
            if to.port() != dns::DNS_PORT {
                return;
            }
            match self.dns.first() {
                Some(&server) => (true, server),
                None => return self.dns_servfail(guest, data),
            }
        } else {
            match self.host_target(*to.ip(), to.port()) {
                Some(t) => (false, t),
                None => return,
            }
        };
        let key = UdpKey { guest, dns };
        if !self.udp.contains_key(&key) {
            if self.udp.len() >= MAX_UDP {
                if let Some(oldest) = self.udp.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| *k) {
                    self.udp.remove(&oldest);
                }
            }
            let bind: SocketAddr = if target.is_ipv6() {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            };
            let Ok(sock) = UdpSocket::bind(bind) else {
                if dns {
                    self.dns_servfail(guest, data);
                }
                return;
            };
            if sock.set_nonblocking(true).is_err() {
                return;
            }
            self.udp.insert(
                key,
                UdpFlow {
                    sock,
                    last: StdInstant::now(),
                },
            );
        }
        let flow = self.udp.get_mut(&key).expect("just inserted");
        match flow.sock.send_to(data, target) {
            Ok(_) => flow.last = StdInstant::now(),
            Err(_) if dns => self.dns_servfail(guest, data),
            Err(_) => {}
        }
    }

    /// Answers the guest's DNS query `query` with SERVFAIL.
    fn dns_servfail(&mut self, guest: SocketAddrV4, query: &[u8]) {
        if let Some(reply) = dns::servfail(query) {
            let mac = self.guest_mac.unwrap_or(EthernetAddress::BROADCAST);
            self.udp_to_guest(SocketAddrV4::new(DNS_IP, dns::DNS_PORT), guest, mac, &reply);
        }
    }

    /// Passes datagrams from the host sockets to the guest and expires idle flows.
    fn pump_udp(&mut self) {
        let now = StdInstant::now();
        let mac = self.guest_mac.unwrap_or(EthernetAddress::BROADCAST);
        let mut buf = std::mem::take(&mut self.udp_buf);
        let mut out = Vec::new();
        for (key, flow) in self.udp.iter_mut() {
            for _ in 0..64 {
                if self.dev.to_guest.len() + out.len() >= TO_GUEST_MAX {
                    break; // Leave the rest in the host socket until the guest catches up.
                }
                let Ok((n, from)) = flow.sock.recv_from(&mut buf) else {
                    break;
                };
                let src = if key.dns {
                    if !self.dns.contains(&from) {
                        continue;
                    }
                    SocketAddrV4::new(DNS_IP, dns::DNS_PORT)
                } else {
                    match from {
                        SocketAddr::V4(a) if a.ip().is_loopback() => {
                            SocketAddrV4::new(GATEWAY_IP, a.port())
                        }
                        SocketAddr::V4(a) => a,
                        SocketAddr::V6(_) => continue,
                    }
                };
                flow.last = now;
                out.push((src, key.guest, buf[..n].to_vec()));
            }
        }
        self.udp_buf = buf;
        for (src, dst, data) in out {
            self.udp_to_guest(src, dst, mac, &data);
        }
        self.udp.retain(|key, flow| {
            let idle = if key.dns {
                DNS_IDLE_TIMEOUT
            } else {
                UDP_IDLE_TIMEOUT
            };
            now.duration_since(flow.last) < idle
        });
    }
}

/// A smoltcp TCP socket for a proxied connection.
fn new_tcp_socket() -> tcp::Socket<'static> {
    let mut sock = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
        tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
    );
    // A proxy passes on what it gets at once; the guest's own stack does any coalescing.
    sock.set_nagle_enabled(false);
    sock
}

/// Starts a non-blocking connect to `target`.
fn connect_host(target: SocketAddr) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    sock.set_nonblocking(true)?;
    match sock.connect(&target.into()) {
        Ok(()) => Ok(sock),
        Err(e)
            if e.raw_os_error() == Some(libc::EINPROGRESS)
                || e.kind() == io::ErrorKind::WouldBlock =>
        {
            Ok(sock)
        }
        Err(e) => Err(e),
    }
}

/// Where a non-blocking connect stands (SO_ERROR, then whether there is a peer).
fn connect_status(sock: &socket2::Socket) -> ConnectStatus {
    match sock.take_error() {
        Ok(Some(_)) | Err(_) => ConnectStatus::Failed,
        Ok(None) => match sock.peer_addr() {
            Ok(_) => ConnectStatus::Connected,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => ConnectStatus::Pending,
            Err(_) => ConnectStatus::Failed,
        },
    }
}

/// Makes closing `stream` send an RST (SO_LINGER with a zero timeout).
fn reset_stream(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// One connection's work: connect completion, data both ways, FIN and RST propagation.
/// True if anything changed.
fn pump_conn(
    sock: &mut tcp::Socket<'static>,
    conn: &mut TcpConn,
    now: StdInstant,
    connect_timeout: Duration,
) -> bool {
    let mut progress = false;
    if sock.state() == tcp::State::Listen {
        // An RST from the guest in SYN-RECEIVED puts smoltcp's socket back to LISTEN: the
        // guest gave up. Close it so that it cannot take another connection's SYN.
        sock.abort();
        if let HostSide::Open(stream) = &conn.host {
            reset_stream(stream);
        }
        conn.host = HostSide::Gone;
        return true;
    }
    if let HostSide::Connecting(s) = &conn.host {
        if sock.state() == tcp::State::Closed {
            conn.host = HostSide::Gone; // The guest gave up (RST).
            return true;
        }
        match connect_status(s) {
            ConnectStatus::Pending if now.duration_since(conn.started) < connect_timeout => {
                return false;
            }
            ConnectStatus::Pending | ConnectStatus::Failed => {
                sock.abort(); // RST to the guest's SYN.
                conn.host = HostSide::Gone;
                return true;
            }
            ConnectStatus::Connected => {
                let HostSide::Connecting(s) = std::mem::replace(&mut conn.host, HostSide::Gone)
                else {
                    unreachable!()
                };
                let stream = TcpStream::from(s);
                let _ = stream.set_nodelay(true);
                conn.host = HostSide::Open(stream);
                sock.pause_synack(false);
                progress = true;
            }
        }
    }
    let HostSide::Open(stream) = &mut conn.host else {
        return progress;
    };
    let state = sock.state();
    if state == tcp::State::Closed {
        // The guest reset the connection (or it timed out): reset the host side too.
        if !(conn.host_eof && conn.host_write_shut) {
            reset_stream(stream);
        }
        conn.host = HostSide::Gone;
        return true;
    }
    if state == tcp::State::SynSent && now.duration_since(conn.started) >= connect_timeout {
        sock.abort(); // A forwarded connection the guest never answered.
        reset_stream(stream);
        conn.host = HostSide::Gone;
        return true;
    }
    let mut failed = false;
    // Guest → host: write straight out of smoltcp's receive buffer; what the host does not
    // take stays there and closes the guest's window.
    while sock.can_recv() {
        let r = sock.recv(|buf| match stream.write(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        });
        match r {
            Ok(Ok(0)) => break,
            Ok(Ok(_)) => progress = true,
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => {
                failed = true;
                break;
            }
            Err(_) => break,
        }
    }
    // The guest's FIN, once its data is all out: half-close the host side.
    if !failed
        && !conn.host_write_shut
        && sock.recv_queue() == 0
        && matches!(
            sock.state(),
            tcp::State::CloseWait
                | tcp::State::LastAck
                | tcp::State::Closing
                | tcp::State::TimeWait
        )
    {
        let _ = stream.shutdown(Shutdown::Write);
        conn.host_write_shut = true;
        progress = true;
    }
    // Host → guest: read straight into smoltcp's transmit buffer while it has room.
    while !failed && !conn.host_eof && sock.can_send() {
        let r = sock.send(|buf| {
            if buf.is_empty() {
                return (0, Ok(None));
            }
            match stream.read(buf) {
                Ok(n) => (n, Ok(Some(n))),
                Err(e) => (0, Err(e)),
            }
        });
        match r {
            Ok(Ok(None)) => break,
            Ok(Ok(Some(0))) => {
                conn.host_eof = true;
                sock.close(); // FIN after the buffered data.
                progress = true;
            }
            Ok(Ok(Some(_))) => progress = true,
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => failed = true,
            Err(_) => break,
        }
    }
    if failed {
        // The host reset the connection (or it broke): reset the guest's.
        sock.abort();
        reset_stream(stream);
        conn.host = HostSide::Gone;
        return true;
    }
    if conn.host_eof && conn.host_write_shut {
        conn.host = HostSide::Gone; // Both halves closed: a plain close.
    }
    progress
}

impl NetBackend for UserNet {
    fn send(&mut self, frame: &[u8]) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        let src = eth.src_addr();
        if src.is_unicast() {
            self.guest_mac = Some(src);
        }
        let dst = eth.dst_addr();
        if dst != Self::gateway_mac() && !dst.is_broadcast() {
            return;
        }
        match eth.ethertype() {
            EthernetProtocol::Arp => {
                // Only the virtual hosts answer ARP: smoltcp's AnyIP would claim every address,
                // the guest's own included (a gratuitous ARP would look like a conflict).
                let Ok(arp) = ArpPacket::new_checked(eth.payload()) else {
                    return;
                };
                if let Ok(ArpRepr::EthernetIpv4 {
                    target_protocol_addr,
                    ..
                }) = ArpRepr::parse(&arp)
                {
                    if target_protocol_addr == GATEWAY_IP || target_protocol_addr == DNS_IP {
                        self.push_to_stack(frame);
                    }
                }
            }
            EthernetProtocol::Ipv4 => self.guest_ipv4(frame, dst, eth.payload()),
            _ => {}
        }
    }

    fn recv(&mut self) -> Option<Vec<u8>> {
        let mut frame = self.dev.to_guest.pop_front()?;
        if frame.len() < frames::MIN_FRAME {
            frame.resize(frames::MIN_FRAME, 0);
        }
        Some(frame)
    }

    fn poll(&mut self) {
        self.accept_forwarded();
        let now = self.now();
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        self.adopt_pending();
        for _ in 0..8 {
            let progress = self.pump_tcp();
            let now = self.now();
            self.iface.poll(now, &mut self.dev, &mut self.sockets);
            if !progress {
                break;
            }
        }
        self.reap_tcp();
        self.pump_udp();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostfwd_parse() {
        let f: HostFwd = "tcp:127.0.0.1:2222-:22".parse().unwrap();
        assert_eq!(f, HostFwd::localhost(2222, 22));
        let f: HostFwd = "::8080-10.0.2.16:80".parse().unwrap();
        assert_eq!(f.host_addr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(f.guest_addr, Ipv4Addr::new(10, 0, 2, 16));
        assert_eq!(f.to_string(), "tcp:0.0.0.0:8080-10.0.2.16:80");
        for bad in [
            "tcp:127.0.0.1:2222",
            "udp::53-:53",
            "sctp::1-:1",
            "tcp:1.2.3:22-:22",
            "tcp::99999-:22",
            "tcp::22-:0",
            "tcp::22-192.168.1.1:22",
            "tcp::22-10.0.2.2:22",
            "tcp:22-:22",
        ] {
            let e = bad.parse::<HostFwd>().unwrap_err();
            assert!(matches!(e, NetError::Config(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn user_config_parse() {
        assert_eq!(UserConfig::parse("user").unwrap(), UserConfig::default());
        let c =
            UserConfig::parse("user,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp::80-:8080").unwrap();
        assert_eq!(c.hostfwd.len(), 2);
        assert_eq!(c.hostfwd[1].guest_port, 8080);
        let e = UserConfig::parse("user,net=10.0.3.0/24")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported user network option 'net'"), "{e}");
        assert!(UserConfig::parse("user,hostfwd").is_err());
        assert!(UserConfig::parse("tap").is_err());
    }

    #[test]
    fn guest_addresses() {
        assert!(is_guest_addr(GUEST_IP));
        assert!(!is_guest_addr(GATEWAY_IP));
        assert!(!is_guest_addr(DNS_IP));
        assert!(!is_guest_addr(Ipv4Addr::new(10, 0, 2, 255)));
        assert!(!is_guest_addr(Ipv4Addr::new(10, 0, 3, 15)));
    }
}

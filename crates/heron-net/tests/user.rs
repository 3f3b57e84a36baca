//! The user-mode backend end to end: a second smoltcp interface plays the guest, wired to
//! `UserNet` through `send`/`recv`; host peers are sockets on 127.0.0.1 only. Every wait is
//! bounded (see `Rig::run_until`).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant as StdInstant};

use heron_net::user::{DHCP_LEASE_SECS, DNS_IP, GATEWAY_IP, GATEWAY_MAC, GUEST_IP};
use heron_net::{HostFwd, NetBackend, UserConfig, UserNet};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, DhcpMessageType, DhcpPacket, DhcpRepr, EthernetAddress,
    EthernetFrame, EthernetProtocol, EthernetRepr, HardwareAddress, Icmpv4Packet, Icmpv4Repr,
    IpAddress, IpCidr, IpEndpoint, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, UdpPacket, UdpRepr,
};

const GUEST_MAC: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const TIMEOUT: Duration = Duration::from_secs(20);

/// The guest's NIC: frame queues.
#[derive(Default)]
struct GuestDev {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
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
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl Device for GuestDev {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;
    fn receive(&mut self, _: Instant) -> Option<(RxTok, TxTok<'_>)> {
        let f = self.rx.pop_front()?;
        Some((RxTok(f), TxTok(&mut self.tx)))
    }
    fn transmit(&mut self, _: Instant) -> Option<TxTok<'_>> {
        Some(TxTok(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// The backend plus a smoltcp "guest" wired to it.
struct Rig {
    net: UserNet,
    iface: Interface,
    dev: GuestDev,
    sockets: SocketSet<'static>,
    epoch: StdInstant,
    /// Every frame the backend gave the guest, when `capture` is set.
    seen: Vec<Vec<u8>>,
    capture: bool,
}

impl Rig {
    /// A guest with the address 10.0.2.15/24 and a default route via 10.0.2.2 (`static_ip`),
    /// or none (for DHCP).
    fn new(config: UserConfig, static_ip: bool) -> Rig {
        let net = UserNet::new(config).expect("UserNet::new");
        let mut dev = GuestDev::default();
        let mut cfg = Config::new(HardwareAddress::Ethernet(GUEST_MAC));
        cfg.random_seed = 0x1234_5678;
        let mut iface = Interface::new(cfg, &mut dev, Instant::from_micros(0));
        if static_ip {
            iface.update_ip_addrs(|a| {
                a.push(IpCidr::new(IpAddress::Ipv4(GUEST_IP), 24)).unwrap();
            });
            iface
                .routes_mut()
                .add_default_ipv4_route(GATEWAY_IP)
                .unwrap();
        }
        Rig {
            net,
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            epoch: StdInstant::now(),
            seen: Vec::new(),
            capture: false,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// One round: backend poll, frames to the guest, guest poll, frames to the backend.
    fn step(&mut self) {
        self.net.poll();
        while let Some(f) = self.net.recv() {
            if self.capture {
                self.seen.push(f.clone());
            }
            self.dev.rx.push_back(f);
        }
        let now = self.now();
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        while let Some(f) = self.dev.tx.pop_front() {
            self.net.send(&f);
        }
    }

    /// Steps until `cond` holds (true) or [`TIMEOUT`] passes (false).
    fn run_until(&mut self, mut cond: impl FnMut(&mut Rig) -> bool) -> bool {
        let deadline = StdInstant::now() + TIMEOUT;
        while StdInstant::now() < deadline {
            self.step();
            if cond(self) {
                return true;
            }
            thread::sleep(Duration::from_micros(200));
        }
        false
    }

    fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    fn udp(&mut self, h: SocketHandle) -> &mut udp::Socket<'static> {
        self.sockets.get_mut::<udp::Socket>(h)
    }

    fn add_tcp(&mut self) -> SocketHandle {
        let s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 64 * 1024]),
            tcp::SocketBuffer::new(vec![0; 64 * 1024]),
        );
        self.sockets.add(s)
    }

    fn add_udp(&mut self, port: u16) -> SocketHandle {
        let mut s = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 64 * 1024]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 64 * 1024]),
        );
        s.bind(port).unwrap();
        self.sockets.add(s)
    }
}

fn no_dns() -> UserConfig {
    UserConfig {
        dns_servers: Some(vec![]),
        ..Default::default()
    }
}

fn pattern(len: usize, modulus: usize) -> Vec<u8> {
    (0..len).map(|i| (i % modulus) as u8).collect()
}

/// A broadcast-capable frame from the guest: Ethernet + IPv4 + UDP.
fn guest_udp_frame(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    dst_mac: EthernetAddress,
    payload: &[u8],
) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    };
    let ip = Ipv4Repr {
        src_addr: src.0,
        dst_addr: dst.0,
        next_header: IpProtocol::Udp,
        payload_len: 8 + payload.len(),
        hop_limit: 64,
    };
    let mut frame = vec![0u8; 14 + 20 + 8 + payload.len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: GUEST_MAC,
        dst_addr: dst_mac,
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut ipp, &ChecksumCapabilities::default());
    udp.emit(
        &mut UdpPacket::new_unchecked(ipp.payload_mut()),
        &IpAddress::Ipv4(src.0),
        &IpAddress::Ipv4(dst.0),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    frame
}

fn arp_request(target: Ipv4Addr, sender: Ipv4Addr) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: GUEST_MAC,
        source_protocol_addr: sender,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let mut frame = vec![0u8; 14 + arp.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: GUEST_MAC,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut eth);
    arp.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    frame
}

/// Polls the backend a few times and collects what it sends to the guest.
fn drain(net: &mut UserNet) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..5 {
        net.poll();
        while let Some(f) = net.recv() {
            out.push(f);
        }
    }
    out
}

#[test]
fn arp_answers_only_virtual_hosts() {
    let mut net = UserNet::new(no_dns()).unwrap();
    for host in [GATEWAY_IP, DNS_IP] {
        net.send(&arp_request(host, GUEST_IP));
        let frames = drain(&mut net);
        assert_eq!(frames.len(), 1, "one ARP reply for {host}");
        let eth = EthernetFrame::new_checked(&frames[0][..]).unwrap();
        assert!(frames[0].len() >= 60, "padded to the Ethernet minimum");
        assert_eq!(eth.dst_addr(), GUEST_MAC);
        assert_eq!(eth.src_addr(), EthernetAddress(GATEWAY_MAC));
        let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
        let ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_hardware_addr,
            target_protocol_addr,
        } = arp
        else {
            panic!("{arp:?}")
        };
        assert_eq!(operation, ArpOperation::Reply);
        assert_eq!(source_hardware_addr, EthernetAddress(GATEWAY_MAC));
        assert_eq!(source_protocol_addr, host);
        assert_eq!(target_hardware_addr, GUEST_MAC);
        assert_eq!(target_protocol_addr, GUEST_IP);
    }
    // The guest's own address (a gratuitous ARP) and unused addresses get no answer.
    net.send(&arp_request(GUEST_IP, GUEST_IP));
    net.send(&arp_request(Ipv4Addr::new(10, 0, 2, 99), GUEST_IP));
    net.send(&arp_request(Ipv4Addr::new(192, 0, 2, 1), GUEST_IP));
    assert!(drain(&mut net).is_empty());
}

#[test]
fn ping_gateway() {
    let mut net = UserNet::new(no_dns()).unwrap();
    net.send(&arp_request(GATEWAY_IP, GUEST_IP)); // Lets the gateway learn the guest's MAC.
    drain(&mut net);
    let data = b"heron ping";
    let icmp = Icmpv4Repr::EchoRequest {
        ident: 0x42,
        seq_no: 7,
        data,
    };
    let ip = Ipv4Repr {
        src_addr: GUEST_IP,
        dst_addr: GATEWAY_IP,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    let mut frame = vec![0u8; 14 + 20 + icmp.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: GUEST_MAC,
        dst_addr: EthernetAddress(GATEWAY_MAC),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut ipp, &ChecksumCapabilities::default());
    icmp.emit(
        &mut Icmpv4Packet::new_unchecked(ipp.payload_mut()),
        &ChecksumCapabilities::default(),
    );
    net.send(&frame);
    let frames = drain(&mut net);
    let reply = frames
        .iter()
        .find_map(|f| {
            let eth = EthernetFrame::new_checked(&f[..]).ok()?;
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Icmp || ip.src_addr() != GATEWAY_IP {
                return None;
            }
            let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
            match Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).ok()? {
                Icmpv4Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                } => Some((ident, seq_no, data.to_vec())),
                _ => None,
            }
        })
        .expect("an echo reply from 10.0.2.2");
    assert_eq!(reply, (0x42, 7, data.to_vec()));
}

/// Checks a server → client DHCP frame the way busybox udhcpc's raw-socket receive path does
/// (20-byte IP header, UDP to port 68, lengths, both checksums, cookie, xid, chaddr) and
/// returns (ethernet destination, IP destination, parsed reply, raw options).
fn check_dhcp_reply(
    frame: &[u8],
    xid: u32,
) -> (EthernetAddress, Ipv4Addr, Vec<(u8, Vec<u8>)>, Ipv4Addr) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv4);
    assert_eq!(eth.src_addr(), EthernetAddress(GATEWAY_MAC));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.header_len(), 20, "udhcpc wants a 20-byte IP header");
    assert!(ip.verify_checksum());
    assert_eq!(ip.next_header(), IpProtocol::Udp);
    assert_eq!(ip.src_addr(), GATEWAY_IP);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(udp.src_port(), 67);
    assert_eq!(udp.dst_port(), 68);
    assert_eq!(usize::from(udp.len()), usize::from(ip.total_len()) - 20);
    assert_ne!(udp.checksum(), 0);
    assert!(udp.verify_checksum(
        &IpAddress::Ipv4(ip.src_addr()),
        &IpAddress::Ipv4(ip.dst_addr())
    ));
    assert!(udp.payload().len() >= 300, "BOOTP minimum size");
    let dhcp = DhcpPacket::new_checked(udp.payload()).unwrap();
    assert_eq!(dhcp.magic_number(), 0x6382_5363);
    assert_eq!(dhcp.transaction_id(), xid);
    assert_eq!(dhcp.client_hardware_address(), GUEST_MAC);
    let opts: Vec<(u8, Vec<u8>)> = dhcp.options().map(|o| (o.kind, o.data.to_vec())).collect();
    (eth.dst_addr(), ip.dst_addr(), opts, dhcp.your_ip())
}

fn opt(opts: &[(u8, Vec<u8>)], kind: u8) -> Option<&[u8]> {
    opts.iter().find(|(k, _)| *k == kind).map(|(_, d)| &d[..])
}

fn dhcp_message(
    kind: DhcpMessageType,
    xid: u32,
    ciaddr: Ipv4Addr,
    requested: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
    broadcast: bool,
) -> Vec<u8> {
    let params = [1u8, 3, 6, 15, 28, 51, 54];
    let repr = DhcpRepr {
        message_type: kind,
        transaction_id: xid,
        secs: 0,
        client_hardware_address: GUEST_MAC,
        client_ip: ciaddr,
        your_ip: Ipv4Addr::UNSPECIFIED,
        server_ip: Ipv4Addr::UNSPECIFIED,
        router: None,
        subnet_mask: None,
        relay_agent_ip: Ipv4Addr::UNSPECIFIED,
        broadcast,
        requested_ip: requested,
        client_identifier: Some(GUEST_MAC),
        server_identifier: server,
        parameter_request_list: Some(&params),
        dns_servers: None,
        max_size: Some(576),
        lease_duration: None,
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut DhcpPacket::new_unchecked(&mut buf[..]))
        .unwrap();
    buf
}

#[test]
fn dhcp_handcrafted_exchange() {
    let mut net = UserNet::new(no_dns()).unwrap();
    let bcast = (Ipv4Addr::BROADCAST, 67);
    let any = (Ipv4Addr::UNSPECIFIED, 68);

    // DISCOVER → OFFER, unicast to yiaddr at chaddr (no BROADCAST flag).
    let discover = dhcp_message(
        DhcpMessageType::Discover,
        0xdead_beef,
        Ipv4Addr::UNSPECIFIED,
        None,
        None,
        false,
    );
    net.send(&guest_udp_frame(
        any,
        bcast,
        EthernetAddress::BROADCAST,
        &discover,
    ));
    let frames = drain(&mut net);
    assert_eq!(frames.len(), 1);
    let (mac, ip, opts, yiaddr) = check_dhcp_reply(&frames[0], 0xdead_beef);
    assert_eq!((mac, ip, yiaddr), (GUEST_MAC, GUEST_IP, GUEST_IP));
    assert_eq!(opt(&opts, 53), Some(&[2u8][..]), "DHCPOFFER");
    assert_eq!(
        opt(&opts, 54),
        Some(&GATEWAY_IP.octets()[..]),
        "server identifier"
    );
    assert_eq!(
        opt(&opts, 1),
        Some(&[255u8, 255, 255, 0][..]),
        "subnet mask"
    );
    assert_eq!(opt(&opts, 3), Some(&GATEWAY_IP.octets()[..]), "router");
    assert_eq!(opt(&opts, 6), Some(&DNS_IP.octets()[..]), "DNS");
    assert_eq!(
        opt(&opts, 51),
        Some(&DHCP_LEASE_SECS.to_be_bytes()[..]),
        "lease time"
    );
    assert_eq!(
        opt(&opts, 28),
        Some(&[10u8, 0, 2, 255][..]),
        "broadcast address"
    );

    // REQUEST (SELECTING, BROADCAST flag) → ACK, broadcast.
    let request = dhcp_message(
        DhcpMessageType::Request,
        0xdead_beef,
        Ipv4Addr::UNSPECIFIED,
        Some(GUEST_IP),
        Some(GATEWAY_IP),
        true,
    );
    net.send(&guest_udp_frame(
        any,
        bcast,
        EthernetAddress::BROADCAST,
        &request,
    ));
    let frames = drain(&mut net);
    assert_eq!(frames.len(), 1);
    let (mac, ip, opts, yiaddr) = check_dhcp_reply(&frames[0], 0xdead_beef);
    assert_eq!(
        (mac, ip, yiaddr),
        (EthernetAddress::BROADCAST, Ipv4Addr::BROADCAST, GUEST_IP)
    );
    assert_eq!(opt(&opts, 53), Some(&[5u8][..]), "DHCPACK");
    assert_eq!(opt(&opts, 51), Some(&DHCP_LEASE_SECS.to_be_bytes()[..]));
    assert_eq!(
        opt(&opts, 58),
        Some(&(DHCP_LEASE_SECS / 2).to_be_bytes()[..]),
        "T1"
    );

    // RENEWING: unicast from 10.0.2.15 to 10.0.2.2 with ciaddr → ACK to ciaddr.
    let renew = dhcp_message(DhcpMessageType::Request, 7, GUEST_IP, None, None, false);
    net.send(&guest_udp_frame(
        (GUEST_IP, 68),
        (GATEWAY_IP, 67),
        EthernetAddress(GATEWAY_MAC),
        &renew,
    ));
    let frames = drain(&mut net);
    assert_eq!(frames.len(), 1);
    let (mac, ip, opts, _) = check_dhcp_reply(&frames[0], 7);
    assert_eq!((mac, ip), (GUEST_MAC, GUEST_IP));
    assert_eq!(opt(&opts, 53), Some(&[5u8][..]));

    // INIT-REBOOT for an address we do not give → NAK (broadcast).
    let wrong = dhcp_message(
        DhcpMessageType::Request,
        8,
        Ipv4Addr::UNSPECIFIED,
        Some(Ipv4Addr::new(10, 0, 2, 99)),
        None,
        false,
    );
    net.send(&guest_udp_frame(
        any,
        bcast,
        EthernetAddress::BROADCAST,
        &wrong,
    ));
    let frames = drain(&mut net);
    assert_eq!(frames.len(), 1);
    let (mac, _, opts, _) = check_dhcp_reply(&frames[0], 8);
    assert_eq!(mac, EthernetAddress::BROADCAST);
    assert_eq!(opt(&opts, 53), Some(&[6u8][..]), "DHCPNAK");

    // A REQUEST that chose another server, and a RELEASE: no answer.
    let other = dhcp_message(
        DhcpMessageType::Request,
        9,
        Ipv4Addr::UNSPECIFIED,
        Some(GUEST_IP),
        Some(Ipv4Addr::new(10, 0, 2, 9)),
        false,
    );
    net.send(&guest_udp_frame(
        any,
        bcast,
        EthernetAddress::BROADCAST,
        &other,
    ));
    let release = dhcp_message(
        DhcpMessageType::Release,
        10,
        GUEST_IP,
        None,
        Some(GATEWAY_IP),
        false,
    );
    net.send(&guest_udp_frame(
        (GUEST_IP, 68),
        (GATEWAY_IP, 67),
        EthernetAddress(GATEWAY_MAC),
        &release,
    ));
    assert!(drain(&mut net).is_empty());
}

#[test]
fn dhcp_with_smoltcp_client() {
    let mut rig = Rig::new(no_dns(), false);
    let h = rig.sockets.add(dhcpv4::Socket::new());
    let mut got = None;
    let ok = rig.run_until(|r| {
        if let Some(dhcpv4::Event::Configured(cfg)) = r.sockets.get_mut::<dhcpv4::Socket>(h).poll()
        {
            got = Some((cfg.address, cfg.router, cfg.dns_servers.to_vec()));
            return true;
        }
        false
    });
    assert!(ok, "no DHCP lease within {TIMEOUT:?}");
    let (address, router, dns) = got.unwrap();
    assert_eq!(address.address(), GUEST_IP);
    assert_eq!(address.prefix_len(), 24);
    assert_eq!(router, Some(GATEWAY_IP));
    assert_eq!(dns, vec![DNS_IP]);
    assert_eq!(rig.net.guest_mac(), Some(GUEST_MAC.0));
}

/// Guest TCP to 10.0.2.2:PORT reaches a host listener on 127.0.0.1:PORT; `len` bytes each
/// way, then a clean close from both ends.
#[test]
fn tcp_to_host_both_ways() {
    const LEN: usize = 300 * 1024;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let host = thread::spawn(move || -> (Vec<u8>, SocketAddr) {
        listener.set_nonblocking(true).unwrap();
        let deadline = StdInstant::now() + TIMEOUT;
        let (stream, peer) = loop {
            match listener.accept() {
                Ok(x) => break x,
                Err(_) if StdInstant::now() < deadline => thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("no connection: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let w = thread::spawn(move || {
            writer.write_all(&pattern(LEN, 251)).unwrap();
            writer.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        (&stream).read_to_end(&mut got).unwrap();
        w.join().unwrap();
        (got, peer)
    });

    let mut rig = Rig::new(no_dns(), true);
    let h = rig.add_tcp();
    let cx = rig.iface.context();
    rig.sockets
        .get_mut::<tcp::Socket>(h)
        .connect(
            cx,
            IpEndpoint::new(IpAddress::Ipv4(GATEWAY_IP), port),
            49500,
        )
        .unwrap();
    let to_send = pattern(LEN, 241);
    let mut sent = 0;
    let mut received = Vec::new();
    let mut closed = false;
    let ok = rig.run_until(|r| {
        let s = r.tcp(h);
        while s.can_send() && sent < LEN {
            sent += s.send_slice(&to_send[sent..]).unwrap();
        }
        if sent == LEN && !closed {
            s.close();
            closed = true;
        }
        while s.can_recv() {
            s.recv(|b| {
                received.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
        }
        received.len() == LEN
            && !s.may_recv()
            && closed
            && matches!(s.state(), tcp::State::TimeWait | tcp::State::Closed)
    });
    let state = rig.tcp(h).state();
    assert!(
        ok,
        "transfer stalled: sent {sent}, received {}, state {state}",
        received.len()
    );
    assert!(received == pattern(LEN, 251), "host → guest data differs");
    let (got, peer) = host.join().unwrap();
    assert!(peer.ip().is_loopback());
    assert_eq!(got.len(), LEN);
    assert!(got == to_send, "guest → host data differs");
    // The proxy forgets the connection once both sides are done.
    assert!(
        rig.run_until(|r| r.net.tcp_connections() == 0),
        "connection not reaped"
    );
}

/// A guest connection to a host port nobody listens on is reset, not left hanging.
#[test]
fn tcp_to_closed_port_resets() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // Closed on drop.
    let mut rig = Rig::new(no_dns(), true);
    rig.capture = true;
    let h = rig.add_tcp();
    let cx = rig.iface.context();
    rig.sockets
        .get_mut::<tcp::Socket>(h)
        .connect(
            cx,
            IpEndpoint::new(IpAddress::Ipv4(GATEWAY_IP), port),
            49501,
        )
        .unwrap();
    let mut established = false;
    let ok = rig.run_until(|r| {
        let s = r.tcp(h);
        established |= s.state() == tcp::State::Established;
        s.state() == tcp::State::Closed
    });
    assert!(ok, "the guest's connect was not reset");
    assert!(
        !established,
        "the connection must never have been established"
    );
    let rst = rig.seen.iter().any(|f| {
        let Ok(eth) = EthernetFrame::new_checked(&f[..]) else {
            return false;
        };
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            return false;
        };
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
            return false;
        };
        ip.src_addr() == GATEWAY_IP
            && tcp.src_port() == port
            && tcp.dst_port() == 49501
            && tcp.rst()
    });
    assert!(rst, "no RST from 10.0.2.2:{port}");
    assert!(rig.run_until(|r| r.net.tcp_connections() == 0));
}

/// hostfwd: a host client connects to 127.0.0.1:HOSTPORT and talks to a guest listener.
#[test]
fn hostfwd_to_guest_listener() {
    const LEN: usize = 200 * 1024;
    let config = UserConfig {
        hostfwd: vec![HostFwd::localhost(0, 8080)],
        dns_servers: Some(vec![]),
        ..Default::default()
    };
    let mut rig = Rig::new(config, true);
    let addr = rig.net.hostfwd_addrs()[0];
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let h = rig.add_tcp();
    rig.tcp(h).listen(8080).unwrap();
    let host = thread::spawn(move || -> Vec<u8> {
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.write_all(b"hello from host").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let data = pattern(LEN, 239);
    let mut sent = 0;
    let mut greeting = Vec::new();
    let mut remote = None;
    let ok = rig.run_until(|r| {
        let s = r.tcp(h);
        if s.state() == tcp::State::Established || s.state() == tcp::State::CloseWait {
            remote = remote.or(s.remote_endpoint());
        }
        while s.can_recv() {
            s.recv(|b| {
                greeting.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
        }
        while s.can_send() && sent < LEN {
            sent += s.send_slice(&data[sent..]).unwrap();
        }
        if sent == LEN && s.state() == tcp::State::CloseWait {
            s.close();
        }
        sent == LEN && matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait)
    });
    assert!(
        ok,
        "forwarded connection stalled: sent {sent}, state {}",
        rig.tcp(h).state()
    );
    assert_eq!(greeting, b"hello from host");
    assert_eq!(
        remote.map(|e| e.addr),
        Some(IpAddress::Ipv4(GATEWAY_IP)),
        "forwarded connections come from 10.0.2.2"
    );
    let got = host.join().unwrap();
    assert!(
        got == data,
        "guest → host data differs ({} bytes)",
        got.len()
    );
    // (The proxy's end closed first, so it sits in TIME-WAIT for smoltcp's 10 s: not waited.)
}

/// hostfwd to a guest port nobody listens on: the host client is reset.
#[test]
fn hostfwd_to_closed_guest_port_resets_host() {
    let config = UserConfig {
        hostfwd: vec![HostFwd::localhost(0, 9)],
        dns_servers: Some(vec![]),
        ..Default::default()
    };
    let mut rig = Rig::new(config, true);
    let addr = rig.net.hostfwd_addrs()[0];
    let host = thread::spawn(move || {
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = [0u8; 16];
        s.read(&mut buf)
    });
    assert!(
        rig.run_until(|_| host.is_finished()),
        "the host client was left hanging"
    );
    match host.join().unwrap() {
        Ok(0) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        Ok(n) => panic!("unexpected {n} bytes"),
    }
}

/// UDP to 10.0.2.2:PORT reaches a host socket on 127.0.0.1:PORT; its replies (one bigger
/// than the MTU, so fragmented) come back from 10.0.2.2:PORT.
#[test]
fn udp_round_trip() {
    let host = UdpSocket::bind("127.0.0.1:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let port = host.local_addr().unwrap().port();
    let mut rig = Rig::new(no_dns(), true);
    rig.capture = true;
    let h = rig.add_udp(5000);
    rig.udp(h)
        .send_slice(b"ping", IpEndpoint::new(IpAddress::Ipv4(GATEWAY_IP), port))
        .unwrap();
    let big = pattern(3000, 233);
    let mut buf = [0u8; 4096];
    let mut replied = false;
    let mut got = None;
    let ok = rig.run_until(|r| {
        if let Ok((n, from)) = host.recv_from(&mut buf) {
            assert_eq!(&buf[..n], b"ping");
            host.send_to(b"pong", from).unwrap();
            host.send_to(&big, from).unwrap();
            replied = true;
        }
        if let Ok((data, meta)) = r.udp(h).recv() {
            got = Some((data.to_vec(), meta.endpoint));
        }
        got.is_some()
    });
    assert!(
        ok && replied,
        "no UDP reply (host got the datagram: {replied})"
    );
    let (data, from) = got.unwrap();
    assert_eq!(data, b"pong");
    assert_eq!(from, IpEndpoint::new(IpAddress::Ipv4(GATEWAY_IP), port));
    // The 3000-byte reply: reassemble its fragments from the captured frames.
    assert!(rig.run_until(|r| r.seen.iter().filter(|f| is_fragment(f)).count() >= 3));
    let mut whole = vec![0u8; 8 + big.len()];
    let mut filled = 0;
    let (mut src, mut dst) = (Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED);
    for f in rig.seen.iter().filter(|f| is_fragment(f)) {
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert!(ip.total_len() <= 1500);
        let off = usize::from(ip.frag_offset());
        whole[off..off + ip.payload().len()].copy_from_slice(ip.payload());
        filled += ip.payload().len();
        (src, dst) = (ip.src_addr(), ip.dst_addr());
    }
    assert_eq!(filled, whole.len());
    assert_eq!((src, dst), (GATEWAY_IP, GUEST_IP));
    let udp = UdpPacket::new_checked(&whole[..]).unwrap();
    assert!(udp.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst)));
    assert_eq!(udp.src_port(), port);
    assert_eq!(udp.dst_port(), 5000);
    assert!(udp.payload() == &big[..]);
    assert_eq!(rig.net.udp_flows(), 1);
}

fn is_fragment(f: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(f) else {
        return false;
    };
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return false;
    };
    ip.next_header() == IpProtocol::Udp && (ip.more_frags() || ip.frag_offset() != 0)
}

/// A DNS query for "localhost. A" with ID `id`.
fn dns_query(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(b"\x09localhost\x00\x00\x01\x00\x01");
    q
}

/// Sends `query` to 10.0.2.3:53 from the guest and returns the answer, if one comes within
/// `wait`; `serve` runs each round (a fake server).
fn dns_exchange(
    rig: &mut Rig,
    query: &[u8],
    wait: Duration,
    mut serve: impl FnMut(),
) -> Option<Vec<u8>> {
    let h = rig.add_udp(5353);
    rig.udp(h)
        .send_slice(query, IpEndpoint::new(IpAddress::Ipv4(DNS_IP), 53))
        .unwrap();
    let deadline = StdInstant::now() + wait;
    while StdInstant::now() < deadline {
        rig.step();
        serve();
        if let Ok((data, meta)) = rig.udp(h).recv() {
            assert_eq!(meta.endpoint, IpEndpoint::new(IpAddress::Ipv4(DNS_IP), 53));
            return Some(data.to_vec());
        }
        thread::sleep(Duration::from_micros(200));
    }
    None
}

#[test]
fn dns_forwarded_to_configured_server() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let addr = server.local_addr().unwrap();
    let mut rig = Rig::new(
        UserConfig {
            dns_servers: Some(vec![addr]),
            ..Default::default()
        },
        true,
    );
    assert_eq!(rig.net.dns_servers(), &[addr]);
    let mut buf = [0u8; 512];
    let answer = dns_exchange(&mut rig, &dns_query(0xabcd), TIMEOUT, || {
        if let Ok((n, from)) = server.recv_from(&mut buf) {
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80; // A canned "response": the query with QR set.
            reply.extend_from_slice(b"tail");
            server.send_to(&reply, from).unwrap();
        }
    })
    .expect("no DNS answer");
    assert_eq!(&answer[..2], &[0xab, 0xcd]);
    assert!(answer.ends_with(b"tail"));
}

#[test]
fn dns_without_servers_gets_servfail() {
    let mut rig = Rig::new(no_dns(), true);
    let answer = dns_exchange(&mut rig, &dns_query(0x1234), TIMEOUT, || {}).expect("no SERVFAIL");
    assert_eq!(&answer[..2], &[0x12, 0x34]);
    assert_eq!(answer[2] & 0x80, 0x80, "a response");
    assert_eq!(answer[3] & 0x0f, 2, "SERVFAIL");
}

/// Through the host's own resolver, only when it is on loopback (this machine has no other
/// network to use): skipped otherwise, or if it does not answer.
#[test]
fn dns_via_host_resolver_if_local() {
    let local: Vec<SocketAddr> = heron_net::user::host_resolvers()
        .into_iter()
        .filter(|a| a.ip().is_loopback())
        .collect();
    if local.is_empty() {
        eprintln!("skipped: /etc/resolv.conf lists no loopback nameserver");
        return;
    }
    let mut rig = Rig::new(
        UserConfig {
            dns_servers: Some(local),
            ..Default::default()
        },
        true,
    );
    match dns_exchange(&mut rig, &dns_query(0x4242), Duration::from_secs(3), || {}) {
        Some(answer) => assert_eq!(&answer[..2], &[0x42, 0x42]),
        None => eprintln!("skipped: the local resolver did not answer"),
    }
}

#[test]
fn hostfwd_bind_error_is_clear() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = UserConfig {
        hostfwd: vec![HostFwd::localhost(port, 22)],
        dns_servers: Some(vec![]),
        ..Default::default()
    };
    let err = UserNet::new(config).unwrap_err().to_string();
    assert!(
        err.contains(&format!("hostfwd=tcp:127.0.0.1:{port}-10.0.2.15:22")),
        "{err}"
    );
}

/// A host listener whose accept queue is full: the kernel drops further SYNs, so a connect to
/// it stays pending (all on loopback). `None` if the kernel would not fill it.
fn stalled_listener() -> Option<(socket2::Socket, Vec<TcpStream>, u16)> {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    l.listen(0).unwrap();
    let port = l.local_addr().unwrap().as_socket().unwrap().port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            Err(_) => return Some((l, fillers, port)), // Full: this one stayed pending.
        }
    }
    None
}

/// A host connect that never completes does not leave the guest hanging: after the connect
/// timeout the guest's connection is reset.
#[test]
fn tcp_pending_host_connect_times_out() {
    let Some((_listener, _fillers, port)) = stalled_listener() else {
        eprintln!("skipped: could not fill a loopback listener's accept queue");
        return;
    };
    let config = UserConfig {
        dns_servers: Some(vec![]),
        connect_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let mut rig = Rig::new(config, true);
    let h = rig.add_tcp();
    let cx = rig.iface.context();
    rig.sockets
        .get_mut::<tcp::Socket>(h)
        .connect(
            cx,
            IpEndpoint::new(IpAddress::Ipv4(GATEWAY_IP), port),
            49502,
        )
        .unwrap();
    let start = StdInstant::now();
    let mut established = false;
    let ok = rig.run_until(|r| {
        let s = r.tcp(h);
        established |= s.state() == tcp::State::Established;
        s.state() == tcp::State::Closed
    });
    if established {
        eprintln!("skipped: the kernel completed the connect despite the full accept queue");
        return;
    }
    assert!(ok, "the guest's connect was left hanging");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "reset before the timeout"
    );
    assert!(rig.run_until(|r| r.net.tcp_connections() == 0));
}

/// The guest gives up (RST) while the host connect is pending: the proxy forgets the
/// connection and its socket does not linger as a listener.
#[test]
fn guest_reset_during_pending_connect() {
    let Some((_listener, _fillers, port)) = stalled_listener() else {
        eprintln!("skipped: could not fill a loopback listener's accept queue");
        return;
    };
    let mut rig = Rig::new(no_dns(), true);
    let h = rig.add_tcp();
    let cx = rig.iface.context();
    rig.sockets
        .get_mut::<tcp::Socket>(h)
        .connect(
            cx,
            IpEndpoint::new(IpAddress::Ipv4(GATEWAY_IP), port),
            49503,
        )
        .unwrap();
    assert!(rig.run_until(|r| r.net.tcp_connections() == 1));
    for _ in 0..20 {
        rig.step();
    }
    if rig.tcp(h).state() != tcp::State::SynSent {
        eprintln!("skipped: the kernel completed the connect despite the full accept queue");
        return;
    }
    rig.tcp(h).abort(); // SYN-SENT abort: smoltcp sends an RST.
    assert!(
        rig.run_until(|r| r.net.tcp_connections() == 0),
        "connection not forgotten"
    );
}

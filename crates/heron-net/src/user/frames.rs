//! Hand-built frames towards the guest: UDP datagrams (DHCP, DNS and UDP NAT replies) with
//! IPv4 fragmentation (RFC 791 §2.3) when a datagram does not fit one 1500-byte MTU packet.

use std::net::SocketAddrV4;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

/// Ethernet II header length, bytes.
pub(crate) const ETH_HEADER: usize = 14;
/// IPv4 header length without options, bytes.
pub(crate) const IPV4_HEADER: usize = 20;
/// The link MTU (IPv4 packet size), bytes.
pub(crate) const MTU: usize = 1500;
/// The smallest Ethernet frame without FCS, bytes (IEEE 802.3: 64 with the 4-byte FCS).
pub(crate) const MIN_FRAME: usize = 60;

/// Builds the frame(s) carrying one UDP datagram `src` → `dst` with a valid UDP checksum.
///
/// Datagrams whose IPv4 packet exceeds [`MTU`] are split into fragments with identification
/// `ident`. A datagram too big for IPv4 (over 65507 payload bytes) yields no frame.
pub(crate) fn udp_frames(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
    ident: u16,
) -> Vec<Vec<u8>> {
    let udp_len = 8 + payload.len();
    if udp_len + IPV4_HEADER > 65535 {
        return Vec::new();
    }
    // The whole UDP datagram (header + payload) first: its checksum covers everything.
    let mut udp = vec![0u8; udp_len];
    let repr = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    repr.emit(
        &mut UdpPacket::new_unchecked(&mut udp[..]),
        &IpAddress::Ipv4(*src.ip()),
        &IpAddress::Ipv4(*dst.ip()),
        payload.len(),
        |buf| buf.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    // Fragment payloads are multiples of 8 bytes except the last (RFC 791).
    let max_chunk = (MTU - IPV4_HEADER) & !7;
    let mut frames = Vec::with_capacity(udp_len.div_ceil(max_chunk));
    let mut offset = 0;
    while offset < udp_len {
        let chunk = (udp_len - offset).min(max_chunk);
        let more = offset + chunk < udp_len;
        let mut frame = vec![0u8; (ETH_HEADER + IPV4_HEADER + chunk).max(MIN_FRAME)];
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
        EthernetRepr {
            src_addr: src_mac,
            dst_addr: dst_mac,
            ethertype: EthernetProtocol::Ipv4,
        }
        .emit(&mut eth);
        let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
        Ipv4Repr {
            src_addr: *src.ip(),
            dst_addr: *dst.ip(),
            next_header: IpProtocol::Udp,
            payload_len: chunk,
            hop_limit: 64,
        }
        .emit(&mut ip, &ChecksumCapabilities::ignored());
        ip.set_ident(ident);
        ip.set_dont_frag(false);
        ip.set_more_frags(more);
        ip.set_frag_offset(offset as u16);
        ip.fill_checksum();
        ip.payload_mut()[..chunk].copy_from_slice(&udp[offset..offset + chunk]);
        frames.push(frame);
        offset += chunk;
    }
    frames
}

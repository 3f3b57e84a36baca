//! The virtual network's DHCP server (RFC 2131, options from RFC 2132), in the manner of QEMU's
//! slirp `bootp.c`: one address, [`GUEST_IP`](super::GUEST_IP), for whoever asks.

use std::net::Ipv4Addr;

use smoltcp::wire::{DhcpMessageType, DhcpOption, DhcpPacket, DhcpRepr, EthernetAddress};

use super::{DHCP_LEASE_SECS, DNS_IP, GATEWAY_IP, GUEST_IP, NETMASK};

/// BOOTP's minimum message size (RFC 1542 §3.1.1 lets relays drop shorter ones; some clients
/// too), bytes of UDP payload.
const BOOTP_MIN_LEN: usize = 300;

/// A reply to send to the client: the UDP payload (server port 67 → client port 68) and where
/// to send it.
#[derive(Debug)]
pub(crate) struct DhcpReply {
    /// The BOOTP/DHCP message.
    pub payload: Vec<u8>,
    /// Destination IPv4 address.
    pub dst_ip: Ipv4Addr,
    /// Destination MAC address.
    pub dst_mac: EthernetAddress,
}

/// Answers one client message (the UDP payload sent to port 67), or `None` when it calls for
/// no answer (malformed, a RELEASE or DECLINE, a REQUEST for another server).
pub(crate) fn handle(msg: &[u8]) -> Option<DhcpReply> {
    let packet = DhcpPacket::new_checked(msg).ok()?;
    let req = DhcpRepr::parse(&packet).ok()?;
    let (reply_type, your_ip) = match req.message_type {
        DhcpMessageType::Discover => (DhcpMessageType::Offer, GUEST_IP),
        DhcpMessageType::Request => {
            // RFC 2131 §4.3.2: SELECTING carries the server identifier and the requested
            // address; INIT-REBOOT only the requested address; RENEWING/REBINDING neither,
            // with ciaddr set.
            if req.server_identifier.is_some_and(|id| id != GATEWAY_IP) {
                return None; // The client chose another server.
            }
            let wanted = req.requested_ip.unwrap_or(req.client_ip);
            if wanted == GUEST_IP {
                (DhcpMessageType::Ack, GUEST_IP)
            } else {
                (DhcpMessageType::Nak, Ipv4Addr::UNSPECIFIED)
            }
        }
        // RFC 2131 §3.4: an INFORM gets an ACK with parameters but no lease or yiaddr.
        DhcpMessageType::Inform => (DhcpMessageType::Ack, Ipv4Addr::UNSPECIFIED),
        _ => return None,
    };
    let nak = reply_type == DhcpMessageType::Nak;
    let inform = req.message_type == DhcpMessageType::Inform;

    let dns = DNS_IP.octets();
    let broadcast_addr = Ipv4Addr::new(10, 0, 2, 255).octets();
    let t1 = (DHCP_LEASE_SECS / 2).to_be_bytes();
    let t2 = (DHCP_LEASE_SECS / 8 * 7).to_be_bytes();
    let mut extra = Vec::new();
    if !nak {
        extra.push(DhcpOption {
            kind: 6,
            data: &dns,
        }); // Domain name servers (RFC 2132 §3.8).
        extra.push(DhcpOption {
            kind: 28,
            data: &broadcast_addr,
        }); // Broadcast address (§5.3).
        if !inform {
            extra.push(DhcpOption {
                kind: 58,
                data: &t1,
            }); // Renewal (T1) time (§9.11).
            extra.push(DhcpOption {
                kind: 59,
                data: &t2,
            }); // Rebinding (T2) time (§9.12).
        }
    }
    let reply = DhcpRepr {
        message_type: reply_type,
        transaction_id: req.transaction_id,
        secs: 0,
        client_hardware_address: req.client_hardware_address,
        client_ip: if inform {
            req.client_ip
        } else {
            Ipv4Addr::UNSPECIFIED
        },
        your_ip,
        server_ip: Ipv4Addr::UNSPECIFIED,
        router: (!nak).then_some(GATEWAY_IP),
        subnet_mask: (!nak).then_some(NETMASK),
        relay_agent_ip: Ipv4Addr::UNSPECIFIED,
        broadcast: req.broadcast,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(GATEWAY_IP),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: (!nak && !inform).then_some(DHCP_LEASE_SECS),
        renew_duration: None,
        rebind_duration: None,
        additional_options: &extra,
    };
    let mut payload = vec![0u8; reply.buffer_len().max(BOOTP_MIN_LEN)];
    reply
        .emit(&mut DhcpPacket::new_unchecked(&mut payload[..]))
        .ok()?;

    // RFC 2131 §4.1: to ciaddr when set (RENEWING, INFORM); a NAK, or a client that asked for
    // it with the BROADCAST flag, gets a broadcast; otherwise unicast to yiaddr at chaddr.
    let (dst_ip, dst_mac) = if !req.client_ip.is_unspecified() && !nak {
        (req.client_ip, req.client_hardware_address)
    } else if nak || req.broadcast {
        (Ipv4Addr::BROADCAST, EthernetAddress::BROADCAST)
    } else {
        (your_ip, req.client_hardware_address)
    };
    Some(DhcpReply {
        payload,
        dst_ip,
        dst_mac,
    })
}

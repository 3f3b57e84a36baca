//! The virtual DNS server's helpers: the host's resolvers (resolv.conf(5)) and the SERVFAIL
//! answer (RFC 1035 §4.1.1) given when no resolver can be asked.

use std::net::{IpAddr, SocketAddr};

/// The DNS port (RFC 1035 §4.2).
pub(crate) const DNS_PORT: u16 = 53;

/// The `nameserver` addresses of a resolv.conf(5) text, port 53, in order, at most 3 (the
/// resolver's MAXNS). Entries that do not parse (e.g. IPv6 with a `%zone`) are skipped.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            if words.next() != Some("nameserver") {
                return None;
            }
            let addr: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(addr, DNS_PORT))
        })
        .take(3)
        .collect()
}

/// The host's resolvers from /etc/resolv.conf (empty when the file is missing or lists none).
pub fn host_resolvers() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| parse_resolv_conf(&t))
        .unwrap_or_default()
}

/// A SERVFAIL response (RCODE 2) to the DNS `query`, echoing its ID, opcode, RD bit and
/// question section; `None` for something that is not a query.
pub(crate) fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None; // Too short for a header, or already a response (QR set).
    }
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    // Walk the question section: QNAME labels (queries carry no compression) + QTYPE + QCLASS.
    let mut end = Some(12usize);
    for _ in 0..qdcount {
        let Some(mut pos) = end else { break };
        end = loop {
            match query.get(pos) {
                Some(0) => break Some(pos + 1 + 4),
                Some(&len) if len & 0xc0 == 0 => pos += 1 + usize::from(len),
                _ => break None,
            }
        };
    }
    let (question_end, qd) = match end {
        Some(e) if e <= query.len() => (e, qdcount),
        _ => (12, 0), // Unparseable question: answer with the header alone.
    };
    let mut reply = query[..question_end].to_vec();
    reply[2] = 0x80 | (query[2] & 0x79); // QR=1, keep OPCODE and RD; AA=TC=0.
    reply[3] = 0x80 | 2; // RA=1, Z=0, RCODE=SERVFAIL.
    reply[4..6].copy_from_slice(&qd.to_be_bytes());
    reply[6..12].fill(0); // ANCOUNT = NSCOUNT = ARCOUNT = 0.
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let text = "# comment\nsearch example.org\nnameserver 127.0.0.53 # local\n\
                    nameserver ::1\nnameserver fe80::1%eth0\nnameserver bogus\n\
                    nameserver 10.0.0.1\nnameserver 10.0.0.2\n";
        let got = parse_resolv_conf(text);
        assert_eq!(
            got,
            vec![
                "127.0.0.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
                "10.0.0.1:53".parse().unwrap()
            ]
        );
        assert!(parse_resolv_conf("").is_empty());
    }

    #[test]
    fn servfail_echoes_question() {
        // ID 0x1234, RD, one question "a.b" A IN, plus an EDNS OPT record in additional.
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend_from_slice(&[1, b'a', 1, b'b', 0, 0, 1, 0, 1]);
        q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        let r = servfail(&q).unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[2], 0x81);
        assert_eq!(r[3] & 0x0f, 2);
        assert_eq!(&r[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&r[12..], &q[12..21]);
        assert!(servfail(&r).is_none(), "responses are not answered");
        assert!(servfail(&[0; 5]).is_none());
        // A truncated question: header only.
        let r = servfail(&q[..15]).unwrap();
        assert_eq!(r.len(), 12);
        assert_eq!(&r[4..6], &[0, 0]);
    }
}

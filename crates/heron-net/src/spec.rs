//! `--nic` option strings, after QEMU's `-nic`: `user[,hostfwd=...]`, `tap[,ifname=NAME]`,
//! `none`, each with an optional `mac=52:54:00:12:34:56`; and [`open_nic`] to make the backend.
//!
//! Also accepted, for QEMU command lines: `model=e1000` (Heron's only NIC) and, for `tap`,
//! `script=no` / `downscript=no`.

use std::fmt;
use std::str::FromStr;

use crate::tap::TapNet;
use crate::user::{UserConfig, UserNet};
use crate::{NetBackend, NetError};

/// An Ethernet MAC address (IEEE 802), 6 bytes in transmission order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// QEMU's default guest MAC, 52:54:00:12:34:56 (a locally administered address).
    pub const QEMU_DEFAULT: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
}

/// Parses a MAC address `xx:xx:xx:xx:xx:xx` (hex; `-` separators are accepted too). A
/// multicast address (low bit of the first byte set) is refused: a NIC's own address is
/// unicast.
pub fn parse_mac(s: &str) -> Result<MacAddr, NetError> {
    let bad = || {
        NetError::Config(format!(
            "bad MAC address '{s}' (expected e.g. 52:54:00:12:34:56)"
        ))
    };
    let mut mac = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for byte in &mut mac {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if mac[0] & 1 != 0 {
        return Err(NetError::Config(format!(
            "MAC address '{s}' is multicast; a NIC needs a unicast one"
        )));
    }
    Ok(MacAddr(mac))
}

impl FromStr for MacAddr {
    type Err = NetError;

    /// See [`parse_mac`].
    fn from_str(s: &str) -> Result<Self, NetError> {
        parse_mac(s)
    }
}

impl fmt::Display for MacAddr {
    /// Lower-case hex with colons, e.g. `52:54:00:12:34:56`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// A parsed `--nic` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NicSpec {
    /// `none`: no network card.
    None,
    /// `user[,hostfwd=...][,mac=...]`: user-mode NAT ([`UserNet`]).
    User {
        /// The backend's options.
        config: UserConfig,
        /// The guest NIC's MAC address, if given.
        mac: Option<MacAddr>,
    },
    /// `tap[,ifname=NAME][,mac=...]`: a host TAP interface ([`TapNet`]).
    Tap {
        /// The interface name (empty: the kernel picks `tapN`).
        ifname: String,
        /// The guest NIC's MAC address, if given.
        mac: Option<MacAddr>,
    },
}

impl NicSpec {
    /// Parses a `--nic` option string, e.g. `user,hostfwd=tcp:127.0.0.1:2222-:22`,
    /// `tap,ifname=tap0,mac=52:54:00:12:34:57` or `none`.
    pub fn parse(s: &str) -> Result<Self, NetError> {
        let mut opts = s.split(',');
        let kind = opts.next().unwrap_or("");
        let mut mac = None;
        let mut user = UserConfig::default();
        let mut ifname = None;
        for opt in opts {
            let (key, value) = opt.split_once('=').ok_or_else(|| {
                NetError::Config(format!("--nic {s}: option '{opt}' is not KEY=VALUE"))
            })?;
            match (kind, key) {
                ("none", _) => {
                    return Err(NetError::Config(format!("--nic none takes no options (got '{opt}')")))
                }
                (_, "mac") => mac = Some(parse_mac(value)?),
                (_, "model") => {
                    if value != "e1000" {
                        return Err(NetError::Config(format!(
                            "--nic model={value}: Heron emulates only model=e1000"
                        )));
                    }
                }
                ("user", _) => user.apply_option(key, value)?,
                ("tap", "ifname") => ifname = Some(value.to_string()),
                ("tap", "script" | "downscript") if value == "no" => {}
                ("tap", "script" | "downscript") => {
                    return Err(NetError::Config(format!(
                        "--nic tap,{key}={value}: scripts are not supported; configure the \
                         interface beforehand and use {key}=no"
                    )))
                }
                ("tap", _) => {
                    return Err(NetError::Config(format!(
                        "unsupported tap option '{key}' (supported: ifname, mac, script=no, downscript=no)"
                    )))
                }
                _ => break, // Reported below.
            }
        }
        match kind {
            "none" => Ok(NicSpec::None),
            "user" => Ok(NicSpec::User { config: user, mac }),
            "tap" => {
                let ifname = ifname.unwrap_or_default();
                if ifname.len() > crate::tap::MAX_IFNAME {
                    return Err(NetError::Config(format!(
                        "tap ifname '{ifname}' is longer than {} bytes",
                        crate::tap::MAX_IFNAME
                    )));
                }
                Ok(NicSpec::Tap { ifname, mac })
            }
            "" => Err(NetError::Config(
                "empty --nic option (expected user, tap or none)".into(),
            )),
            other => Err(NetError::Config(format!(
                "unknown --nic backend '{other}' (expected user, tap or none)"
            ))),
        }
    }

    /// The MAC address the option gave, if any.
    pub fn mac(&self) -> Option<MacAddr> {
        match self {
            NicSpec::None => None,
            NicSpec::User { mac, .. } | NicSpec::Tap { mac, .. } => *mac,
        }
    }
}

impl FromStr for NicSpec {
    type Err = NetError;

    /// See [`NicSpec::parse`].
    fn from_str(s: &str) -> Result<Self, NetError> {
        NicSpec::parse(s)
    }
}

/// Opens the backend `spec` describes: `Ok(None)` for `none`.
pub fn open_nic(spec: &NicSpec) -> Result<Option<Box<dyn NetBackend>>, NetError> {
    Ok(match spec {
        NicSpec::None => None,
        NicSpec::User { config, .. } => Some(Box::new(UserNet::new(config.clone())?)),
        NicSpec::Tap { ifname, .. } => Some(Box::new(TapNet::open(ifname)?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::HostFwd;

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("52:54:00:12:34:56").unwrap(),
            MacAddr::QEMU_DEFAULT
        );
        assert_eq!(
            parse_mac("52-54-00-AB-cd-EF").unwrap().to_string(),
            "52:54:00:ab:cd:ef"
        );
        for bad in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "52:54:00:12:34:5g",
            "5:54:00:12:34:567",
            "01:00:5e:00:00:01",
        ] {
            assert!(matches!(parse_mac(bad), Err(NetError::Config(_))), "{bad}");
        }
        assert!(parse_mac("01:00:5e:00:00:01")
            .unwrap_err()
            .to_string()
            .contains("multicast"));
    }

    #[test]
    fn specs() {
        assert_eq!(NicSpec::parse("none").unwrap(), NicSpec::None);
        assert_eq!(
            NicSpec::parse("user").unwrap(),
            NicSpec::User {
                config: UserConfig::default(),
                mac: None
            }
        );
        let s =
            NicSpec::parse("user,model=e1000,hostfwd=tcp:127.0.0.1:2222-:22,mac=52:54:00:12:34:57")
                .unwrap();
        let NicSpec::User { config, mac } = &s else {
            panic!("{s:?}")
        };
        assert_eq!(config.hostfwd, vec![HostFwd::localhost(2222, 22)]);
        assert_eq!(*mac, Some(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x57])));
        assert_eq!(s.mac(), *mac);
        assert_eq!(
            NicSpec::parse("tap,ifname=tap0,script=no,downscript=no").unwrap(),
            NicSpec::Tap {
                ifname: "tap0".into(),
                mac: None
            }
        );
        assert_eq!(
            NicSpec::parse("tap").unwrap(),
            NicSpec::Tap {
                ifname: String::new(),
                mac: None
            }
        );
        for (bad, what) in [
            ("", "empty"),
            ("slirp", "unknown --nic backend 'slirp'"),
            ("none,mac=52:54:00:12:34:56", "takes no options"),
            ("user,model=virtio-net-pci", "only model=e1000"),
            (
                "user,ifname=tap0",
                "unsupported user network option 'ifname'",
            ),
            ("tap,hostfwd=tcp::1-:1", "unsupported tap option 'hostfwd'"),
            ("tap,script=/etc/qemu-ifup", "scripts are not supported"),
            ("tap,ifname=averyveryverylongname", "longer than 15"),
            ("user,mac=zz", "bad MAC"),
            ("user,hostfwd=tcp::22", "hostfwd=tcp::22"),
            ("user,restrict", "not KEY=VALUE"),
        ] {
            let e = NicSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(what), "{bad}: {e}");
        }
    }

    #[test]
    fn open_none_and_user() {
        assert!(open_nic(&NicSpec::None).unwrap().is_none());
        let spec = NicSpec::User {
            config: UserConfig {
                dns_servers: Some(vec![]),
                ..Default::default()
            },
            mac: None,
        };
        let mut nic = open_nic(&spec).unwrap().expect("a backend");
        nic.poll();
        assert!(nic.recv().is_none());
    }
}

#[cfg(test)]
mod send_tests {
    /// The backends can move to another thread (the machine may run devices off the main one).
    #[test]
    fn backends_are_send() {
        fn is_send<T: Send>() {}
        is_send::<crate::UserNet>();
        is_send::<crate::TapNet>();
    }
}

//! Parser for QEMU-style `--device` strings naming the optional debug devices Heron models:
//!
//! * `isa-debug-exit[,iobase=N][,iosize=N]` — QEMU's exit port (hw/misc/debugexit.c; defaults
//!   iobase 0x501, iosize 2; OS-dev harnesses mostly use `iobase=0xf4,iosize=4`);
//! * `isa-debugcon[,iobase=N][,readback=N][,file=PATH|chardev=stdio]` — the port-0xE9 debug
//!   console (hw/char/debugcon.c; defaults iobase 0xE9, readback 0xE9).
//!
//! The syntax follows QEMU's option strings: the driver name, then comma-separated `key=value`
//! options; a literal comma inside a value is written `,,` (e.g. `file=a,,b.log` for `a,b.log`).
//! Numbers are decimal or `0x`-prefixed hexadecimal. A decimal with a leading zero (`010`) is
//! rejected because QEMU would read it as octal. `id=…` is accepted and ignored, as Heron has no
//! device tree to name things in.
//!
//! Differences from QEMU: QEMU's `isa-debugcon` needs `chardev=ID` naming a `-chardev` backend.
//! Heron has no `-chardev`, so it takes `file=PATH` (what `-debugcon file:PATH` does in QEMU) or
//! `chardev=stdio`, and without either writes to stdout.

use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;

use heron_devices::{debug_exit, debugcon};

/// Driver name of QEMU's exit device.
pub const ISA_DEBUG_EXIT: &str = "isa-debug-exit";
/// Driver name of QEMU's debug console.
pub const ISA_DEBUGCON: &str = "isa-debugcon";

/// A summary of the accepted `--device` strings, for `--help` output and error messages.
pub const DEVICE_HELP: &str = "\
isa-debug-exit[,iobase=0x501][,iosize=2]   guest write of V exits with status (V << 1) | 1
isa-debugcon[,iobase=0xe9][,readback=0xe9][,file=PATH|chardev=stdio]   port output to a file or stdout";

/// Where the debug console's bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebugConOutput {
    /// The host's standard output (`chardev=stdio`, or no output option).
    Stdio,
    /// A file, created or truncated when the machine starts (`file=PATH`).
    File(PathBuf),
}

/// One parsed `--device` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// `isa-debug-exit`: a guest write of `V` to any of its ports exits with status `(V << 1) | 1`.
    DebugExit {
        /// First I/O port.
        iobase: u16,
        /// Number of I/O ports (≥ 1; `iobase + iosize` ≤ 0x10000).
        iosize: u16,
    },
    /// `isa-debugcon`: bytes written to its port go to `output`.
    DebugCon {
        /// The I/O port.
        iobase: u16,
        /// Byte returned by a read of the port.
        readback: u8,
        /// Destination of the written bytes.
        output: DebugConOutput,
    },
}

/// Errors of [`DeviceSpec::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceSpecError {
    /// The string is empty or has no driver name.
    #[error("empty --device value; supported:\n{DEVICE_HELP}")]
    Empty,
    /// The driver name is not one Heron models.
    #[error("unknown device '{0}'; supported:\n{DEVICE_HELP}")]
    UnknownDevice(String),
    /// An option the device does not have.
    #[error("{device}: unknown option '{key}' (known options: {})", .known.join(", "))]
    UnknownKey {
        /// Driver name.
        device: &'static str,
        /// The unknown key.
        key: String,
        /// The device's options.
        known: &'static [&'static str],
    },
    /// An option without `=value`.
    #[error("{device}: option '{item}' must be key=value")]
    NotKeyValue {
        /// Driver name.
        device: &'static str,
        /// The offending item.
        item: String,
    },
    /// An option given twice.
    #[error("{device}: option '{key}' is given more than once")]
    DuplicateKey {
        /// Driver name.
        device: &'static str,
        /// The repeated key.
        key: String,
    },
    /// A value that is not a number in an accepted spelling.
    #[error(
        "{device}: {key}={value} is not a number: write decimal (no leading zeros, which QEMU would read \
         as octal) or 0x-prefixed hex"
    )]
    BadNumber {
        /// Driver name.
        device: &'static str,
        /// The option.
        key: &'static str,
        /// The value as given.
        value: String,
    },
    /// A number outside the option's range.
    #[error("{device}: {key}={value:#x} is out of range: {limit}")]
    OutOfRange {
        /// Driver name.
        device: &'static str,
        /// The option.
        key: &'static str,
        /// The parsed value.
        value: u64,
        /// What the range is.
        limit: &'static str,
    },
    /// `chardev=` names something other than `stdio`.
    #[error(
        "isa-debugcon: chardev={0} is not supported (Heron has no -chardev); use chardev=stdio or file=PATH"
    )]
    UnsupportedChardev(String),
    /// Both `file=` and `chardev=` were given.
    #[error("isa-debugcon: give file=PATH or chardev=stdio, not both")]
    FileAndChardev,
    /// `file=` with an empty path.
    #[error("isa-debugcon: file= needs a path")]
    EmptyPath,
}

/// Split a QEMU option string at single commas; `,,` stands for a literal comma.
fn split_options(s: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                items.last_mut().expect("never empty").push(',');
            } else {
                items.push(String::new());
            }
        } else {
            items.last_mut().expect("never empty").push(c);
        }
    }
    items
}

/// Parse a number: decimal without leading zeros, or `0x`/`0X` hex. No signs, no spaces.
fn parse_number(device: &'static str, key: &'static str, value: &str) -> Result<u64, DeviceSpecError> {
    let bad = || DeviceSpecError::BadNumber { device, key, value: value.to_string() };
    let (digits, radix) = match value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (value, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    if radix == 10 && digits.len() > 1 && digits.starts_with('0') {
        return Err(bad());
    }
    u64::from_str_radix(digits, radix).map_err(|_| bad())
}

fn parse_iobase(device: &'static str, value: &str) -> Result<u16, DeviceSpecError> {
    let v = parse_number(device, "iobase", value)?;
    u16::try_from(v).map_err(|_| DeviceSpecError::OutOfRange {
        device,
        key: "iobase",
        value: v,
        limit: "I/O ports are 0 to 0xffff",
    })
}

/// Options of one device: (key, value) pairs, checked for duplicates and unknown keys.
struct Options {
    pairs: Vec<(String, String)>,
}

impl Options {
    fn new(
        device: &'static str,
        items: &[String],
        known: &'static [&'static str],
    ) -> Result<Self, DeviceSpecError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for item in items {
            let Some((key, value)) = item.split_once('=') else {
                return Err(DeviceSpecError::NotKeyValue { device, item: item.clone() });
            };
            if !known.contains(&key) {
                return Err(DeviceSpecError::UnknownKey { device, key: key.to_string(), known });
            }
            if pairs.iter().any(|(k, _)| k == key) {
                return Err(DeviceSpecError::DuplicateKey { device, key: key.to_string() });
            }
            pairs.push((key.to_string(), value.to_string()));
        }
        Ok(Options { pairs })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

impl DeviceSpec {
    /// Parse a `--device` string (see the module documentation for the syntax).
    pub fn parse(s: &str) -> Result<DeviceSpec, DeviceSpecError> {
        let items = split_options(s);
        let (name, rest) = items.split_first().expect("split_options never returns an empty list");
        match name.as_str() {
            "" => Err(DeviceSpecError::Empty),
            ISA_DEBUG_EXIT => {
                let device = ISA_DEBUG_EXIT;
                let opts = Options::new(device, rest, &["iobase", "iosize", "id"])?;
                let iobase =
                    opts.get("iobase").map_or(Ok(debug_exit::DEFAULT_IOBASE), |v| parse_iobase(device, v))?;
                let iosize = match opts.get("iosize") {
                    None => debug_exit::DEFAULT_IOSIZE,
                    Some(v) => {
                        let n = parse_number(device, "iosize", v)?;
                        if n == 0 || u64::from(iobase) + n > 0x1_0000 {
                            return Err(DeviceSpecError::OutOfRange {
                                device,
                                key: "iosize",
                                value: n,
                                limit: "must be at least 1 and iobase + iosize must not pass port 0xffff",
                            });
                        }
                        n as u16
                    }
                };
                if u32::from(iobase) + u32::from(iosize) > 0x1_0000 {
                    return Err(DeviceSpecError::OutOfRange {
                        device,
                        key: "iobase",
                        value: iobase.into(),
                        limit: "iobase + iosize must not pass port 0xffff",
                    });
                }
                Ok(DeviceSpec::DebugExit { iobase, iosize })
            }
            ISA_DEBUGCON => {
                let device = ISA_DEBUGCON;
                let opts = Options::new(device, rest, &["iobase", "readback", "file", "chardev", "id"])?;
                let iobase =
                    opts.get("iobase").map_or(Ok(debugcon::DEFAULT_IOBASE), |v| parse_iobase(device, v))?;
                let readback = match opts.get("readback") {
                    None => debugcon::DEFAULT_READBACK,
                    Some(v) => {
                        let n = parse_number(device, "readback", v)?;
                        u8::try_from(n).map_err(|_| DeviceSpecError::OutOfRange {
                            device,
                            key: "readback",
                            value: n,
                            limit: "a 1-byte port reads 0 to 0xff",
                        })?
                    }
                };
                let output = match (opts.get("file"), opts.get("chardev")) {
                    (Some(_), Some(_)) => return Err(DeviceSpecError::FileAndChardev),
                    (Some(""), None) => return Err(DeviceSpecError::EmptyPath),
                    (Some(path), None) => DebugConOutput::File(PathBuf::from(path)),
                    (None, Some("stdio")) | (None, None) => DebugConOutput::Stdio,
                    (None, Some(other)) => {
                        return Err(DeviceSpecError::UnsupportedChardev(other.to_string()))
                    }
                };
                Ok(DeviceSpec::DebugCon { iobase, readback, output })
            }
            other => Err(DeviceSpecError::UnknownDevice(other.to_string())),
        }
    }

    /// The I/O ports the device occupies: `iobase .. iobase + iosize` (one port for the debug
    /// console). `u32` so a range ending at port 0xFFFF can be expressed.
    pub fn io_ports(&self) -> Range<u32> {
        match self {
            DeviceSpec::DebugExit { iobase, iosize } => {
                u32::from(*iobase)..u32::from(*iobase) + u32::from(*iosize)
            }
            DeviceSpec::DebugCon { iobase, .. } => u32::from(*iobase)..u32::from(*iobase) + 1,
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = DeviceSpecError;

    /// Same as [`DeviceSpec::parse`], for `clap`'s `value_parser` and `str::parse`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceSpec::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<DeviceSpec, DeviceSpecError> {
        s.parse()
    }

    #[test]
    fn debug_exit_defaults_and_options() {
        assert_eq!(p("isa-debug-exit").unwrap(), DeviceSpec::DebugExit { iobase: 0x501, iosize: 2 });
        assert_eq!(
            p("isa-debug-exit,iobase=0xf4,iosize=0x04").unwrap(),
            DeviceSpec::DebugExit { iobase: 0xF4, iosize: 4 }
        );
        assert_eq!(
            p("isa-debug-exit,iosize=4,iobase=244").unwrap(),
            DeviceSpec::DebugExit { iobase: 0xF4, iosize: 4 }
        );
        assert_eq!(
            p("isa-debug-exit,iobase=0XF4").unwrap(),
            DeviceSpec::DebugExit { iobase: 0xF4, iosize: 2 }
        );
        assert_eq!(
            p("isa-debug-exit,id=x,iobase=0").unwrap(),
            DeviceSpec::DebugExit { iobase: 0, iosize: 2 }
        );
        assert_eq!(p("isa-debug-exit,iobase=0xfffe").unwrap().io_ports(), 0xFFFE..0x1_0000);
        assert_eq!(p("isa-debug-exit,iobase=0xf4,iosize=4").unwrap().io_ports(), 0xF4..0xF8);
    }

    #[test]
    fn debugcon_defaults_and_options() {
        let stdio = DeviceSpec::DebugCon { iobase: 0xE9, readback: 0xE9, output: DebugConOutput::Stdio };
        assert_eq!(p("isa-debugcon").unwrap(), stdio);
        assert_eq!(p("isa-debugcon,chardev=stdio").unwrap(), stdio);
        assert_eq!(p("isa-debugcon,iobase=0xe9").unwrap(), stdio);
        assert_eq!(
            p("isa-debugcon,iobase=0x402,file=/tmp/debug.log").unwrap(),
            DeviceSpec::DebugCon {
                iobase: 0x402,
                readback: 0xE9,
                output: DebugConOutput::File("/tmp/debug.log".into())
            }
        );
        assert_eq!(
            p("isa-debugcon,file=a,,b=c.log,readback=0x42").unwrap(),
            DeviceSpec::DebugCon {
                iobase: 0xE9,
                readback: 0x42,
                output: DebugConOutput::File("a,b=c.log".into())
            }
        );
        assert_eq!(p("isa-debugcon,iobase=0x402").unwrap().io_ports(), 0x402..0x403);
    }

    #[test]
    fn unknown_device_and_empty() {
        let err = p("isa-debugexit").unwrap_err();
        assert_eq!(err, DeviceSpecError::UnknownDevice("isa-debugexit".into()));
        assert!(
            err.to_string().starts_with("unknown device 'isa-debugexit'; supported:\nisa-debug-exit"),
            "{err}"
        );
        assert_eq!(p("").unwrap_err(), DeviceSpecError::Empty);
        assert_eq!(p(",iobase=1").unwrap_err(), DeviceSpecError::Empty);
        assert!(matches!(p("e1000").unwrap_err(), DeviceSpecError::UnknownDevice(d) if d == "e1000"));
    }

    #[test]
    fn unknown_missing_and_duplicate_keys() {
        let err = p("isa-debug-exit,iobase=0xf4,size=4").unwrap_err();
        assert_eq!(
            err,
            DeviceSpecError::UnknownKey {
                device: ISA_DEBUG_EXIT,
                key: "size".into(),
                known: &["iobase", "iosize", "id"]
            }
        );
        assert_eq!(
            err.to_string(),
            "isa-debug-exit: unknown option 'size' (known options: iobase, iosize, id)"
        );
        assert!(matches!(p("isa-debug-exit,file=x").unwrap_err(), DeviceSpecError::UnknownKey { .. }));
        assert!(
            matches!(p("isa-debugcon,iosize=1").unwrap_err(), DeviceSpecError::UnknownKey { key, .. } if key == "iosize")
        );
        assert_eq!(
            p("isa-debug-exit,iobase").unwrap_err(),
            DeviceSpecError::NotKeyValue { device: ISA_DEBUG_EXIT, item: "iobase".into() }
        );
        assert!(
            matches!(p("isa-debug-exit,").unwrap_err(), DeviceSpecError::NotKeyValue { item, .. } if item.is_empty())
        );
        assert_eq!(
            p("isa-debugcon,iobase=1,iobase=2").unwrap_err(),
            DeviceSpecError::DuplicateKey { device: ISA_DEBUGCON, key: "iobase".into() }
        );
    }

    #[test]
    fn bad_numbers() {
        for v in ["", "0x", "xyz", "0xg", "-1", "+5", " 5", "5 ", "0b101", "1_000", "010", "0x-1", "1e3"] {
            let err = p(&format!("isa-debug-exit,iobase={v}")).unwrap_err();
            assert_eq!(
                err,
                DeviceSpecError::BadNumber { device: ISA_DEBUG_EXIT, key: "iobase", value: v.into() },
                "{v:?}"
            );
        }
        assert!(p("isa-debug-exit,iobase=0").is_ok(), "a lone 0 is fine");
        assert!(p("isa-debug-exit,iobase=0x00f4").is_ok(), "hex may have leading zeros");
        let err = p("isa-debugcon,readback=0x1zz").unwrap_err();
        assert!(err.to_string().contains("readback=0x1zz is not a number"), "{err}");
        assert!(matches!(
            p("isa-debug-exit,iobase=99999999999999999999999").unwrap_err(),
            DeviceSpecError::BadNumber { .. }
        ));
    }

    #[test]
    fn out_of_range_numbers() {
        assert!(matches!(
            p("isa-debug-exit,iobase=0x10000").unwrap_err(),
            DeviceSpecError::OutOfRange { key: "iobase", value: 0x10000, .. }
        ));
        assert!(matches!(
            p("isa-debug-exit,iosize=0").unwrap_err(),
            DeviceSpecError::OutOfRange { key: "iosize", .. }
        ));
        assert!(matches!(
            p("isa-debug-exit,iobase=0xfffe,iosize=3").unwrap_err(),
            DeviceSpecError::OutOfRange { key: "iosize", value: 3, .. }
        ));
        // Default iosize 2 at the last port does not fit either.
        assert!(matches!(
            p("isa-debug-exit,iobase=0xffff").unwrap_err(),
            DeviceSpecError::OutOfRange { key: "iobase", .. }
        ));
        assert!(matches!(
            p("isa-debugcon,iobase=70000").unwrap_err(),
            DeviceSpecError::OutOfRange { key: "iobase", .. }
        ));
        assert!(p("isa-debugcon,iobase=0xffff").is_ok());
        let err = p("isa-debugcon,readback=0x100").unwrap_err();
        assert!(matches!(err, DeviceSpecError::OutOfRange { key: "readback", value: 0x100, .. }));
        assert_eq!(
            err.to_string(),
            "isa-debugcon: readback=0x100 is out of range: a 1-byte port reads 0 to 0xff"
        );
    }

    #[test]
    fn debugcon_output_errors() {
        assert_eq!(
            p("isa-debugcon,chardev=serial0").unwrap_err(),
            DeviceSpecError::UnsupportedChardev("serial0".into())
        );
        assert_eq!(p("isa-debugcon,file=x,chardev=stdio").unwrap_err(), DeviceSpecError::FileAndChardev);
        assert_eq!(p("isa-debugcon,file=").unwrap_err(), DeviceSpecError::EmptyPath);
        assert!(p("isa-debugcon,chardev=serial0")
            .unwrap_err()
            .to_string()
            .contains("use chardev=stdio or file=PATH"));
    }

    #[test]
    fn comma_escaping() {
        assert_eq!(split_options("a,b=c,,d,e"), vec!["a", "b=c,d", "e"]);
        assert_eq!(split_options(""), vec![""]);
        assert_eq!(split_options("a,,,b"), vec!["a,", "b"]);
    }
}

//! `--drive` specifications (QEMU `-drive` syntax, the subset Heron supports) and opening them.

use crate::qcow2::{probe_qcow2_magic, Qcow2Image};
use crate::raw::RawImage;
use crate::snapshot::SnapshotOverlay;
use crate::{io_err, BlockBackend, BlockError};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Highest IDE `index=`: the PC's two IDE channels with two devices each give positions 0..=3
/// (index = channel × 2 + unit: 0 primary master, 1 primary slave, 2 secondary master,
/// 3 secondary slave), as in QEMU.
pub const IDE_MAX_INDEX: u32 = 3;

/// Disk image format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    /// Raw bytes ([`RawImage`]).
    Raw,
    /// qcow2 ([`Qcow2Image`]).
    Qcow2,
}

/// What the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Media {
    /// A hard disk (ATA).
    #[default]
    Disk,
    /// A CD-ROM (ATAPI); always read-only.
    Cdrom,
}

/// A parsed `--drive` option.
///
/// Syntax (QEMU `-drive`): comma-separated `key=value` pairs; a comma inside a value is written
/// `,,` (so `file=a,,b.img` names `a,b.img`). Keys:
///
/// | key | values | default |
/// |---|---|---|
/// | `file` | path (required) | — |
/// | `format` | `raw`, `qcow2` | probed: qcow2 magic `QFI\xfb` → qcow2, else raw |
/// | `media` | `disk`, `cdrom` | `disk` |
/// | `if` | `ide` | `ide` |
/// | `snapshot` | `on`, `off` | `off` |
/// | `readonly` | `on`, `off` | `off` |
/// | `index` | `0`..=[`IDE_MAX_INDEX`] | next free position (the machine decides) |
/// | `cache` | `writeback`, `writethrough`, `none`, `directsync`, `unsafe` | accepted, ignored |
///
/// Each key may appear once. Unknown keys, bad values and a missing `file=` are errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriveSpec {
    /// Host path of the image.
    pub file: PathBuf,
    /// Image format; `None` = probe at open ([`probe_format`]).
    pub format: Option<ImageFormat>,
    /// Disk or CD-ROM.
    pub media: Media,
    /// `snapshot=on`: writes go to memory and are discarded at exit ([`SnapshotOverlay`]).
    pub snapshot: bool,
    /// `readonly=on`: the guest cannot write.
    pub readonly: bool,
    /// IDE position 0..=[`IDE_MAX_INDEX`], if given.
    pub index: Option<u32>,
}

/// A `--drive` string that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The string is empty.
    #[error("empty drive specification")]
    Empty,
    /// A part without `=` (QEMU's implied keys are not supported).
    #[error("'{0}' is not of the form key=value")]
    NotKeyValue(String),
    /// A key that is not supported.
    #[error("unknown drive option '{0}' (known: file, format, media, if, snapshot, readonly, index, cache)")]
    UnknownKey(String),
    /// A key given twice.
    #[error("drive option '{0}' given more than once")]
    Duplicate(String),
    /// A value not allowed for its key.
    #[error("bad value '{value}' for drive option '{key}': expected {expected}")]
    BadValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What is allowed.
        expected: String,
    },
    /// No `file=`.
    #[error("drive specification has no file=")]
    MissingFile,
}

impl DriveSpec {
    /// A disk drive for `file` with every option at its default.
    pub fn new(file: impl Into<PathBuf>) -> DriveSpec {
        DriveSpec {
            file: file.into(),
            format: None,
            media: Media::Disk,
            snapshot: false,
            readonly: false,
            index: None,
        }
    }

    /// Parse a `--drive` string (see the type's docs for the syntax).
    pub fn parse(s: &str) -> Result<DriveSpec, SpecError> {
        if s.is_empty() {
            return Err(SpecError::Empty);
        }
        let mut spec = DriveSpec::new(PathBuf::new());
        let mut file = None;
        let mut seen: Vec<String> = Vec::new();
        for part in split_opts(s) {
            let Some((key, value)) = part.split_once('=') else {
                return Err(SpecError::NotKeyValue(part));
            };
            if seen.iter().any(|k| k == key) {
                return Err(SpecError::Duplicate(key.to_string()));
            }
            seen.push(key.to_string());
            let bad = |expected: &str| SpecError::BadValue {
                key: key.to_string(),
                value: value.to_string(),
                expected: expected.to_string(),
            };
            let on_off = || match value {
                "on" => Ok(true),
                "off" => Ok(false),
                _ => Err(bad("on or off")),
            };
            match key {
                "file" => {
                    if value.is_empty() {
                        return Err(bad("a path"));
                    }
                    file = Some(PathBuf::from(value));
                }
                "format" => {
                    spec.format = Some(match value {
                        "raw" => ImageFormat::Raw,
                        "qcow2" => ImageFormat::Qcow2,
                        _ => return Err(bad("raw or qcow2")),
                    })
                }
                "media" => {
                    spec.media = match value {
                        "disk" => Media::Disk,
                        "cdrom" => Media::Cdrom,
                        _ => return Err(bad("disk or cdrom")),
                    }
                }
                "if" => {
                    if value != "ide" {
                        return Err(bad("ide (the only interface Heron emulates)"));
                    }
                }
                "snapshot" => spec.snapshot = on_off()?,
                "readonly" => spec.readonly = on_off()?,
                "index" => {
                    let expected = format!("an IDE position 0..={IDE_MAX_INDEX}");
                    let n: u32 = value.parse().map_err(|_| bad(&expected))?;
                    if n > IDE_MAX_INDEX || value.starts_with('+') {
                        return Err(bad(&expected));
                    }
                    spec.index = Some(n);
                }
                "cache" => {
                    if !["writeback", "writethrough", "none", "directsync", "unsafe"]
                        .contains(&value)
                    {
                        return Err(bad("writeback, writethrough, none, directsync or unsafe"));
                    }
                }
                _ => return Err(SpecError::UnknownKey(key.to_string())),
            }
        }
        spec.file = file.ok_or(SpecError::MissingFile)?;
        Ok(spec)
    }

    /// Whether the guest may not write: `readonly=on` or a CD-ROM. (`snapshot=on` is not
    /// read-only for the guest; the image file underneath is.)
    pub fn guest_read_only(&self) -> bool {
        self.readonly || self.media == Media::Cdrom
    }
}

impl FromStr for DriveSpec {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<DriveSpec, SpecError> {
        DriveSpec::parse(s)
    }
}

/// Split QEMU option syntax at single commas; `,,` is a literal comma.
fn split_opts(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                parts.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

/// Guess the format of the image at `path` from its first bytes: [`ImageFormat::Qcow2`] if it
/// starts with the qcow2 magic `"QFI\xfb"`, else [`ImageFormat::Raw`] (also for files shorter
/// than 4 bytes). The file is opened read-only. A missing file is an error naming it.
///
/// As in QEMU, probing is unsafe for images a guest could have written: a guest can write a
/// qcow2 header into a raw disk. Give `format=raw` explicitly for such images.
pub fn probe_format(path: &Path) -> Result<ImageFormat, BlockError> {
    let mut f = File::open(path).map_err(|e| io_err(path, e))?;
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match f.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(path, e)),
        }
    }
    Ok(if probe_qcow2_magic(&magic[..got]) {
        ImageFormat::Qcow2
    } else {
        ImageFormat::Raw
    })
}

/// Open the image a [`DriveSpec`] names, as the backend the device model uses.
///
/// - Format: `spec.format`, or [`probe_format`]. An explicit `format=qcow2` on a file without
///   the magic is an error; an explicit `format=raw` is honoured even for a qcow2 file.
/// - Read-only (`O_RDONLY`) when `readonly=on`, for CD-ROMs, and under `snapshot=on` (where
///   the result is a [`SnapshotOverlay`] over the read-only image; ignored for CD-ROMs, which
///   are read-only anyway).
/// - Errors: a missing file → [`BlockError::Io`] naming the path; a damaged or unsupported
///   qcow2 → [`BlockError::Format`], with the file not modified (see [`Qcow2Image::open`]).
pub fn open_drive(spec: &DriveSpec) -> Result<Box<dyn BlockBackend>, BlockError> {
    let path = spec.file.as_path();
    let probed = probe_format(path)?;
    let format = spec.format.unwrap_or(probed);
    if format == ImageFormat::Qcow2 && probed != ImageFormat::Qcow2 {
        return Err(BlockError::Format(format!(
            "{}: format=qcow2 given but the file has no qcow2 magic",
            path.display()
        )));
    }
    let cdrom = spec.media == Media::Cdrom;
    let snapshot = spec.snapshot && !cdrom;
    let open_ro = spec.guest_read_only() || snapshot;
    let image: Box<dyn BlockBackend> = match format {
        ImageFormat::Raw => Box::new(RawImage::open(path, open_ro)?),
        ImageFormat::Qcow2 => Box::new(Qcow2Image::open(path, open_ro)?),
    };
    Ok(if snapshot {
        Box::new(SnapshotOverlay::new(image))
    } else {
        image
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{pattern, TempDir};

    #[test]
    fn parse_good() {
        let s = DriveSpec::parse("file=disk.img").unwrap();
        assert_eq!(s, DriveSpec::new("disk.img"));
        let s: DriveSpec =
            "file=/x/y.qcow2,format=qcow2,media=disk,if=ide,snapshot=on,readonly=off,index=2,cache=none"
                .parse()
                .unwrap();
        assert_eq!(s.file, PathBuf::from("/x/y.qcow2"));
        assert_eq!(s.format, Some(ImageFormat::Qcow2));
        assert_eq!(s.media, Media::Disk);
        assert!(s.snapshot && !s.readonly);
        assert_eq!(s.index, Some(2));
        let s = DriveSpec::parse("media=cdrom,file=boot.iso,format=raw").unwrap();
        assert_eq!(s.media, Media::Cdrom);
        assert!(s.guest_read_only());
        assert_eq!(s.format, Some(ImageFormat::Raw));
        let s = DriveSpec::parse("file=a,,b.img,readonly=on").unwrap();
        assert_eq!(s.file, PathBuf::from("a,b.img"));
        assert!(s.readonly && s.guest_read_only());
        assert_eq!(
            DriveSpec::parse("file=x=y").unwrap().file,
            PathBuf::from("x=y")
        );
        assert_eq!(DriveSpec::parse("file=d,index=0").unwrap().index, Some(0));
    }

    #[test]
    fn parse_bad() {
        use SpecError::*;
        let err = |s: &str| DriveSpec::parse(s).unwrap_err();
        assert_eq!(err(""), Empty);
        assert_eq!(err("format=raw"), MissingFile);
        assert_eq!(err("disk.img"), NotKeyValue("disk.img".into()));
        assert_eq!(err("file=a,"), NotKeyValue("".into()));
        assert_eq!(err("file=a,bus=1"), UnknownKey("bus".into()));
        assert_eq!(err("file=a,file=b"), Duplicate("file".into()));
        assert!(matches!(err("file="), BadValue { .. }));
        assert!(matches!(err("file=a,format=vmdk"), BadValue { .. }));
        assert!(matches!(err("file=a,media=floppy"), BadValue { .. }));
        assert!(matches!(err("file=a,snapshot=yes"), BadValue { .. }));
        assert!(matches!(err("file=a,readonly=1"), BadValue { .. }));
        assert!(matches!(err("file=a,index=4"), BadValue { .. }));
        assert!(matches!(err("file=a,index=-1"), BadValue { .. }));
        assert!(matches!(err("file=a,index=+1"), BadValue { .. }));
        assert!(matches!(err("file=a,cache=fast"), BadValue { .. }));
        let e = err("file=a,if=virtio");
        assert!(matches!(e, BadValue { .. }));
        assert!(
            e.to_string().contains("virtio") && e.to_string().contains("ide"),
            "{e}"
        );
        assert!(err("file=a,Format=raw").to_string().contains("Format"));
    }

    #[test]
    fn probe() {
        let dir = TempDir::new("probe");
        let raw = dir.path("r.img");
        std::fs::write(&raw, vec![0u8; 1024]).unwrap();
        assert_eq!(probe_format(&raw).unwrap(), ImageFormat::Raw);
        let tiny = dir.path("tiny.img");
        std::fs::write(&tiny, b"QF").unwrap();
        assert_eq!(probe_format(&tiny).unwrap(), ImageFormat::Raw);
        let empty = dir.path("empty.img");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(probe_format(&empty).unwrap(), ImageFormat::Raw);
        let q = dir.path("q.qcow2");
        Qcow2Image::create(&q, 1 << 20).unwrap();
        assert_eq!(probe_format(&q).unwrap(), ImageFormat::Qcow2);
        let e = probe_format(&dir.path("missing.img")).unwrap_err();
        assert!(e.to_string().contains("missing.img"), "{e}");
    }

    #[test]
    fn open_drive_variants() {
        let dir = TempDir::new("open-drive");
        let raw = dir.path("disk.img");
        let data = pattern(2, 1 << 20);
        std::fs::write(&raw, &data).unwrap();
        let spec = |s: String| DriveSpec::parse(&s).unwrap();

        // Raw, read-write, probed.
        let mut d = open_drive(&spec(format!("file={}", raw.display()))).unwrap();
        assert!(!d.read_only());
        assert_eq!(d.size(), 1 << 20);
        d.write_at(0, &[0xAA; 512]).unwrap();
        d.flush().unwrap();
        drop(d);
        let mut data = data;
        data[..512].fill(0xAA);
        assert_eq!(std::fs::read(&raw).unwrap(), data);

        // readonly=on and cdrom: read-only.
        for opts in ["readonly=on", "media=cdrom", "media=cdrom,snapshot=on"] {
            let mut d = open_drive(&spec(format!("file={},{opts}", raw.display()))).unwrap();
            assert!(d.read_only(), "{opts}");
            assert!(
                matches!(d.write_at(0, &[1]), Err(BlockError::ReadOnly)),
                "{opts}"
            );
        }

        // snapshot=on: writable for the guest, file unchanged.
        let mtime = std::fs::metadata(&raw).unwrap().modified().unwrap();
        let mut d = open_drive(&spec(format!("file={},snapshot=on", raw.display()))).unwrap();
        assert!(!d.read_only());
        d.write_at(4096, &[0x55; 8192]).unwrap();
        let mut b = vec![0u8; 8192];
        d.read_at(4096, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 0x55));
        d.flush().unwrap();
        drop(d);
        assert_eq!(std::fs::read(&raw).unwrap(), data);
        assert_eq!(std::fs::metadata(&raw).unwrap().modified().unwrap(), mtime);

        // qcow2, probed and explicit; snapshot=on over qcow2 leaves it unchanged.
        let q = dir.path("d.qcow2");
        Qcow2Image::create(&q, 2 << 20).unwrap();
        for s in [
            format!("file={}", q.display()),
            format!("file={},format=qcow2", q.display()),
        ] {
            let mut d = open_drive(&spec(s)).unwrap();
            assert_eq!(d.size(), 2 << 20);
            d.write_at(512, &[7; 512]).unwrap();
        }
        let qbytes = std::fs::read(&q).unwrap();
        let mut d = open_drive(&spec(format!("file={},snapshot=on", q.display()))).unwrap();
        d.write_at(0, &[9; 65536 * 2]).unwrap();
        let mut b = [0u8; 4];
        d.read_at(65536 * 2 - 2, &mut b).unwrap();
        assert_eq!(b, [9, 9, 0, 0]);
        drop(d);
        assert!(std::fs::read(&q).unwrap() == qbytes);
        // format=raw on a qcow2 file: opened as raw, as asked.
        let d = open_drive(&spec(format!(
            "file={},format=raw,readonly=on",
            q.display()
        )))
        .unwrap();
        assert_eq!(d.size(), qbytes.len() as u64 / 512 * 512);

        // format=qcow2 on a raw file: error, file unchanged.
        let e = open_drive(&spec(format!("file={},format=qcow2", raw.display())))
            .err()
            .unwrap();
        assert!(matches!(e, BlockError::Format(_)), "{e:?}");
        assert_eq!(std::fs::read(&raw).unwrap(), data);

        // Missing file: error naming it.
        let e = open_drive(&spec(format!("file={}/gone.img", dir.dir().display())))
            .err()
            .unwrap();
        assert!(e.to_string().contains("gone.img"), "{e}");
    }

    #[test]
    fn garbage_qcow2_via_open_drive_is_untouched() {
        let dir = TempDir::new("open-drive-bad");
        let p = dir.path("bad.qcow2");
        let mut bytes = b"QFI\xfb".to_vec();
        bytes.extend(pattern(3, 10_000));
        std::fs::write(&p, &bytes).unwrap();
        for s in ["", ",snapshot=on", ",format=qcow2", ",readonly=on"] {
            let spec = DriveSpec::parse(&format!("file={}{s}", p.display())).unwrap();
            assert!(
                matches!(open_drive(&spec), Err(BlockError::Format(_))),
                "{s}"
            );
        }
        assert_eq!(std::fs::read(&p).unwrap(), bytes);
    }
}

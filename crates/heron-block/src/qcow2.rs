//! qcow2 images through the `imago` crate (native synchronous build, feature `sync`).
//!
//! The format is QEMU's `docs/interop/qcow2.txt`: a big-endian header in cluster 0, a
//! two-level table (L1 → L2 → data cluster) mapping guest clusters to host clusters, refcounts
//! for host clusters, and an optional backing image that unallocated guest clusters read from.
//!
//! imago does the format work (mapping, allocation, copy-on-write from the backing image,
//! refcounts). It is lenient about damaged files (a table past the end of the file reads as
//! zeroes, encryption is not checked), so [`Qcow2Image::open`] first checks the file itself,
//! read-only ([`validate`]): header fields, that every L1 table, L2 table and refcount
//! structure lies inside the file, and the backing chain. Only then is the image opened by
//! imago, again read-only, and only after that, if writes are wanted, reopened read-write.
//! A file that fails any of these steps has never been opened for writing.

use crate::spec::ImageFormat;
use crate::{check_range, io_err, BlockBackend, BlockError};
use imago::file::File as ImagoFile;
use imago::qcow2::Qcow2;
use imago::{FormatAccess, FormatCreateBuilder, FormatDriverBuilder, PermissiveImplicitOpenGate};
use imago::{Storage, StorageCreateOptions};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The qcow2 magic number, the first 4 bytes of every qcow2 file: `"QFI\xfb"`.
pub const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

/// Whether `first_bytes` (the start of a file) begins with [`QCOW2_MAGIC`].
pub fn probe_qcow2_magic(first_bytes: &[u8]) -> bool {
    first_bytes.starts_with(&QCOW2_MAGIC)
}

/// Deepest backing chain accepted (image + backing files), to stop loops (`a` backed by `b`
/// backed by `a`).
const MAX_CHAIN_DEPTH: usize = 16;
/// Largest L1 table accepted, in bytes (QEMU's `QCOW_MAX_L1_SIZE`, 32 MiB).
const MAX_L1_BYTES: u64 = 32 << 20;
/// Largest refcount table accepted, in bytes (QEMU's `QCOW_MAX_REFTABLE_SIZE`, 8 MiB).
const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// Host-offset bits of an L1, L2 or refcount-table entry (bits 9..=55).
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// L2 entry flag: the cluster is compressed.
const L2_COMPRESSED: u64 = 1 << 62;

/// A qcow2 (v2 or v3) image, opened through imago.
///
/// - **Size**: the virtual disk size from the header, in bytes.
/// - **Backing files**: the backing image named in the header (a path relative to the image's
///   directory, or absolute; format from the header's backing-format extension, probed if
///   absent) is opened read-only (`O_RDONLY`) and never written: writes allocate clusters in
///   this image (copy-on-write).
/// - **Durability**: `write_at` writes the data and then writes back imago's L2-table and
///   refcount-block caches (imago caches metadata in memory, write-back) before returning
///   `Ok`, so a completed write — data *and* the metadata that maps it — is in the host file
///   (page cache) and survives the emulator process being killed. [`BlockBackend::flush`]
///   additionally `fsync`s the image file (host crash safety). The per-write metadata
///   write-back costs at most one L2-table and one refcount-block write (one cluster each) per
///   write that allocates; writes to already-allocated clusters write no metadata.
/// - **Not supported** (rejected at open with [`BlockError::Format`]): encryption, external
///   data files, non-zlib compression, extended L2 entries, images marked dirty or corrupt
///   (repair them with `qemu-img check -r all`).
pub struct Qcow2Image {
    inner: FormatAccess<ImagoFile>,
    path: PathBuf,
    size: u64,
    read_only: bool,
    backing: Option<String>,
}

impl std::fmt::Debug for Qcow2Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2Image")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("read_only", &self.read_only)
            .field("backing", &self.backing)
            .finish()
    }
}

impl Qcow2Image {
    /// Open the qcow2 image at `path`, with its backing chain.
    ///
    /// The file is first validated read-only (see the module docs); a damaged, truncated or
    /// unsupported image fails with [`BlockError::Format`] and is left untouched. A missing
    /// image or backing file fails with [`BlockError::Io`] naming it. With `read_only` false the
    /// image is then reopened read-write (imago clears the header's autoclear feature bits on a
    /// read-write open, as QEMU does).
    pub fn open(path: impl AsRef<Path>, read_only: bool) -> Result<Qcow2Image, BlockError> {
        let path = path.as_ref();
        let header = validate(path, 0)?;
        // imago, read-only: must succeed before the file is ever opened for writing.
        let ro = open_imago(path, false)?;
        let inner = if read_only {
            ro
        } else {
            drop(ro);
            open_imago(path, true)?
        };
        let size = inner.size();
        Ok(Qcow2Image {
            inner,
            path: path.to_path_buf(),
            size,
            read_only,
            backing: header.backing,
        })
    }

    /// Create a new qcow2 v3 image of `size` bytes at `path` (64 KiB clusters, 16-bit
    /// refcounts, every cluster unallocated so it reads as zeroes). Fails if `path` exists.
    /// For tests and tools; the emulator itself never creates images.
    pub fn create(path: impl AsRef<Path>, size: u64) -> Result<(), BlockError> {
        create_impl(path.as_ref(), size, None)
    }

    /// Create a new qcow2 v3 overlay at `path` whose backing image is `backing` in
    /// `backing_format` (like `qemu-img create -f qcow2 -b BACKING -F FMT PATH [SIZE]`).
    ///
    /// `backing` is recorded in the header as given: a relative path is resolved against the
    /// directory of `path` when the overlay is opened. `size` in bytes defaults to the backing
    /// image's size (a raw backing file's length rounded down to 512-byte sectors). The backing
    /// file is only read. Fails if `path` exists.
    pub fn create_overlay(
        path: impl AsRef<Path>,
        backing: impl AsRef<Path>,
        backing_format: ImageFormat,
        size: Option<u64>,
    ) -> Result<(), BlockError> {
        let path = path.as_ref();
        let backing = backing.as_ref();
        let resolved = resolve_backing(path, &backing.to_string_lossy());
        let size = match size {
            Some(s) => s,
            None => match backing_format {
                ImageFormat::Raw => crate::RawImage::open(&resolved, true)?.size(),
                ImageFormat::Qcow2 => Qcow2Image::open(&resolved, true)?.size(),
            },
        };
        let fmt = match backing_format {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
        };
        create_impl(
            path,
            size,
            Some((backing.to_string_lossy().into_owned(), fmt.to_string())),
        )
    }

    /// The image file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The backing file name as recorded in the header, if the image has one.
    pub fn backing_file(&self) -> Option<&str> {
        self.backing.as_deref()
    }

    fn err(&self, e: io::Error) -> BlockError {
        io_err(&self.path, e)
    }
}

impl BlockBackend for Qcow2Image {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(offset, buf.len(), self.size)?;
        if buf.is_empty() {
            return Ok(());
        }
        self.inner.read(&mut *buf, offset).map_err(|e| self.err(e))
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        check_range(offset, buf.len(), self.size)?;
        if buf.is_empty() {
            return Ok(());
        }
        self.inner.write(buf, offset).map_err(|e| self.err(e))?;
        // imago's `flush` writes back the dirty L2 tables and refcount blocks (no fsync), so the
        // metadata of this write is in the host file before we report success.
        self.inner.flush().map_err(|e| self.err(e))
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.read_only {
            return Ok(());
        }
        self.inner.flush().map_err(|e| self.err(e))?;
        self.inner.sync().map_err(|e| self.err(e))
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

/// Open `path` with imago (and its backing chain, read-only).
fn open_imago(path: &Path, write: bool) -> Result<FormatAccess<ImagoFile>, BlockError> {
    let q = Qcow2::<ImagoFile>::builder_path(path)
        .write(write)
        .open(PermissiveImplicitOpenGate::default())
        .map_err(|e| imago_err(path, e))?;
    Ok(FormatAccess::new(q))
}

/// imago's "the file is wrong" errors become [`BlockError::Format`], host errors stay
/// [`BlockError::Io`].
fn imago_err(path: &Path, e: io::Error) -> BlockError {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::Other | io::ErrorKind::UnexpectedEof => {
            BlockError::Format(format!("{}: {e}", path.display()))
        }
        _ => io_err(path, e),
    }
}

fn create_impl(
    path: &Path,
    size: u64,
    backing: Option<(String, String)>,
) -> Result<(), BlockError> {
    let file = ImagoFile::create_open(StorageCreateOptions::new().filename(path))
        .map_err(|e| io_err(path, e))?;
    let mut builder = Qcow2::<ImagoFile>::create_builder(file).size(size);
    if let Some((name, fmt)) = backing {
        builder = builder.backing(name, fmt);
    }
    let result = builder.create();
    if let Err(e) = result {
        let _ = std::fs::remove_file(path);
        return Err(imago_err(path, e));
    }
    // Durable before we say it exists.
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(path, e))
}

/// A backing file name from a header, resolved like QEMU and imago do: absolute as is,
/// relative against the directory of the image that names it.
fn resolve_backing(image: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        image.parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// What [`validate`] learned from a header.
#[derive(Debug)]
pub(crate) struct Header {
    /// Backing file name as recorded.
    pub backing: Option<String>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// Check the qcow2 file at `path` without writing to it (opened `O_RDONLY`), and its backing
/// chain (`depth` = how many images above it): header, tables inside the file, supported
/// features, backing files present. Errors are [`BlockError::Format`] (damaged or unsupported)
/// or [`BlockError::Io`] (missing or unreadable file, naming it).
pub(crate) fn validate(path: &Path, depth: usize) -> Result<Header, BlockError> {
    let bad = |what: String| {
        BlockError::Format(format!(
            "{}: not a usable qcow2 image: {what}",
            path.display()
        ))
    };
    if depth >= MAX_CHAIN_DEPTH {
        return Err(bad(format!(
            "backing chain deeper than {MAX_CHAIN_DEPTH} (a loop?)"
        )));
    }
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let file_len = file.metadata().map_err(|e| io_err(path, e))?.len();
    let read = |off: u64, len: u64| -> Result<Vec<u8>, BlockError> {
        match off.checked_add(len) {
            Some(end) if end <= file_len => {}
            _ => {
                return Err(bad(format!(
                    "truncated: needs bytes {off}..{} but the file has {file_len}",
                    off.saturating_add(len)
                )))
            }
        }
        let mut v = vec![0u8; len as usize];
        file.read_exact_at(&mut v, off)
            .map_err(|e| io_err(path, e))?;
        Ok(v)
    };

    if file_len < 72 {
        return Err(bad(format!("truncated header ({file_len} bytes)")));
    }
    let h = read(0, 72)?;
    if !probe_qcow2_magic(&h) {
        return Err(bad("no qcow2 magic".into()));
    }
    let version = be32(&h, 4);
    if version != 2 && version != 3 {
        return Err(bad(format!("unsupported version {version}")));
    }
    let backing_file_offset = be64(&h, 8);
    let backing_file_size = be32(&h, 16) as u64;
    let cluster_bits = be32(&h, 20);
    let virtual_size = be64(&h, 24);
    let crypt_method = be32(&h, 32);
    let l1_size = be32(&h, 36) as u64;
    let l1_offset = be64(&h, 40);
    let rt_offset = be64(&h, 48);
    let rt_clusters = be32(&h, 56) as u64;
    let nb_snapshots = be32(&h, 60);
    let snapshots_offset = be64(&h, 64);

    if !(9..=21).contains(&cluster_bits) {
        return Err(bad(format!("cluster_bits {cluster_bits} outside 9..=21")));
    }
    let cs = 1u64 << cluster_bits;
    if crypt_method != 0 {
        return Err(bad(format!(
            "encrypted (crypt_method {crypt_method}) images are not supported"
        )));
    }

    let (header_len, incompat, refcount_order) = if version == 3 {
        let v3 = read(72, 32)?;
        let incompat = be64(&v3, 0);
        let refcount_order = be32(&v3, 24);
        let header_len = be32(&v3, 28) as u64;
        if header_len < 104 || header_len > cs {
            return Err(bad(format!(
                "header_length {header_len} outside 104..={cs}"
            )));
        }
        (header_len, incompat, refcount_order)
    } else {
        (72, 0, 4)
    };
    if refcount_order > 6 {
        return Err(bad(format!("refcount_order {refcount_order} > 6")));
    }
    for (bit, name, hint) in [
        (
            0,
            "dirty",
            "it was not closed cleanly; repair it with `qemu-img check -r all`",
        ),
        (1, "corrupt", "repair it with `qemu-img check -r all`"),
        (2, "external data file", "not supported"),
        (3, "compression type", "only zlib compression is supported"),
        (4, "extended L2 entries", "not supported"),
    ] {
        if incompat & (1 << bit) != 0 {
            return Err(bad(format!("incompatible feature '{name}' is set: {hint}")));
        }
    }
    if incompat >> 5 != 0 {
        return Err(bad(format!(
            "unknown incompatible features {:#x}",
            incompat >> 5
        )));
    }

    // Header extensions (v2 images may have them too, right after the 72-byte header).
    let mut backing_format: Option<String> = None;
    let mut off = header_len;
    loop {
        if off + 8 > cs {
            return Err(bad("header extensions run past the first cluster".into()));
        }
        let eh = read(off, 8)?;
        let (ty, len) = (be32(&eh, 0), be32(&eh, 4) as u64);
        off += 8;
        if ty == 0 {
            break;
        }
        if off + len > cs {
            return Err(bad("header extension runs past the first cluster".into()));
        }
        let data = read(off, len)?;
        if ty == 0xe279_2aca {
            backing_format = Some(String::from_utf8_lossy(&data).into_owned());
        }
        off += len.next_multiple_of(8);
    }

    let backing = if backing_file_offset != 0 {
        if backing_file_size > 1023 || backing_file_offset.saturating_add(backing_file_size) > cs {
            return Err(bad("bad backing file name location".into()));
        }
        let name = read(backing_file_offset, backing_file_size)?;
        Some(String::from_utf8(name).map_err(|_| bad("backing file name is not UTF-8".into()))?)
    } else {
        None
    };

    // L1 table: aligned, inside the file, big enough for the virtual size.
    let l2_entries = cs / 8;
    let needed_l1 = virtual_size.div_ceil(cs * l2_entries);
    if l1_size < needed_l1 {
        return Err(bad(format!(
            "L1 table has {l1_size} entries, the size needs {needed_l1}"
        )));
    }
    if l1_size * 8 > MAX_L1_BYTES {
        return Err(bad(format!("L1 table too large ({l1_size} entries)")));
    }
    let check_cluster = |what: &str, off: u64, len: u64| -> Result<(), BlockError> {
        if !off.is_multiple_of(cs) {
            return Err(bad(format!("{what} at {off:#x} is not cluster-aligned")));
        }
        match off.checked_add(len) {
            Some(end) if end <= file_len => Ok(()),
            _ => Err(bad(format!(
                "truncated: {what} at {off:#x} (+{len} bytes) is past the end of the file ({file_len} bytes)"
            ))),
        }
    };
    if l1_size > 0 {
        check_cluster("L1 table", l1_offset, l1_size * 8)?;
    }
    let l1 = read(l1_offset, l1_size * 8)?;
    for (i, e) in l1.chunks_exact(8).enumerate() {
        let l2_off = u64::from_be_bytes(e.try_into().unwrap()) & OFFSET_MASK;
        if l2_off == 0 {
            continue;
        }
        check_cluster(&format!("L2 table {i}"), l2_off, cs)?;
        let l2 = read(l2_off, cs)?;
        for e in l2.chunks_exact(8) {
            let e = u64::from_be_bytes(e.try_into().unwrap());
            let host = if e & L2_COMPRESSED != 0 {
                e & ((1u64 << (62 - (cluster_bits - 8))) - 1)
            } else {
                let host = e & OFFSET_MASK;
                if !host.is_multiple_of(cs) {
                    return Err(bad(format!(
                        "data cluster at {host:#x} is not cluster-aligned"
                    )));
                }
                host
            };
            // Data clusters need only start inside the file (the tail of the last one may be
            // missing and reads as zeroes, as in QEMU).
            if host != 0 && host >= file_len {
                return Err(bad(format!(
                    "truncated: data cluster at {host:#x} is past the end of the file ({file_len} bytes)"
                )));
            }
        }
    }

    // Refcount table and blocks.
    if rt_clusters == 0 || rt_clusters * cs > MAX_REFTABLE_BYTES {
        return Err(bad(format!(
            "bad refcount table size ({rt_clusters} clusters)"
        )));
    }
    check_cluster("refcount table", rt_offset, rt_clusters * cs)?;
    let rt = read(rt_offset, rt_clusters * cs)?;
    for e in rt.chunks_exact(8) {
        let rb = u64::from_be_bytes(e.try_into().unwrap()) & !0x1ff;
        if rb != 0 {
            check_cluster("refcount block", rb, cs)?;
        }
    }

    if nb_snapshots > 0 && (!snapshots_offset.is_multiple_of(8) || snapshots_offset >= file_len) {
        return Err(bad(format!(
            "snapshot table at {snapshots_offset:#x} is outside the file"
        )));
    }

    // The backing chain: present, and valid where it is qcow2.
    if let Some(name) = &backing {
        let bpath = resolve_backing(path, name);
        let fmt = match backing_format.as_deref() {
            Some("qcow2") => ImageFormat::Qcow2,
            Some("raw") | Some("file") => ImageFormat::Raw,
            Some(other) => return Err(bad(format!("backing format '{other}' is not supported"))),
            None => crate::spec::probe_format(&bpath)?,
        };
        match fmt {
            ImageFormat::Qcow2 => {
                validate(&bpath, depth + 1)?;
            }
            ImageFormat::Raw => {
                File::open(&bpath).map_err(|e| io_err(&bpath, e))?;
            }
        }
    }

    Ok(Header { backing })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{pattern, TempDir};
    use std::process::Command;

    fn qemu_img() -> Option<&'static str> {
        let ok = Command::new("qemu-img")
            .arg("--version")
            .output()
            .map(|o| o.status.success());
        matches!(ok, Ok(true)).then_some("qemu-img")
    }

    #[test]
    fn create_write_read_reopen() {
        let dir = TempDir::new("q2-basic");
        let p = dir.path("a.qcow2");
        Qcow2Image::create(&p, 8 << 20).unwrap();
        assert!(
            Qcow2Image::create(&p, 1 << 20).is_err(),
            "create must not overwrite"
        );
        let mut img = Qcow2Image::open(&p, false).unwrap();
        assert_eq!(img.size(), 8 << 20);
        assert!(img.backing_file().is_none());
        let mut zero = vec![1u8; 4096];
        img.read_at(0, &mut zero).unwrap();
        assert!(zero.iter().all(|&b| b == 0));
        let data = pattern(5, 200 * 1024 + 512);
        img.write_at(3 * 65536 - 512, &data).unwrap();
        let mut back = vec![0u8; data.len()];
        img.read_at(3 * 65536 - 512, &mut back).unwrap();
        assert_eq!(back, data);
        assert!(matches!(
            img.write_at((8 << 20) - 1, &[0, 0]),
            Err(BlockError::OutOfRange { .. })
        ));
        img.flush().unwrap();
        drop(img);
        let mut img = Qcow2Image::open(&p, true).unwrap();
        assert!(img.read_only());
        let mut back = vec![0u8; data.len()];
        img.read_at(3 * 65536 - 512, &mut back).unwrap();
        assert_eq!(back, data);
        assert!(matches!(img.write_at(0, &[1]), Err(BlockError::ReadOnly)));
    }

    /// Without `flush` and without a clean close (the process "dies": the image is leaked, not
    /// dropped), another opener sees every write that returned Ok.
    #[test]
    fn completed_writes_are_in_file_without_flush() {
        let dir = TempDir::new("q2-kill");
        let p = dir.path("a.qcow2");
        Qcow2Image::create(&p, 4 << 20).unwrap();
        let mut img = Qcow2Image::open(&p, false).unwrap();
        let data = pattern(11, 70000);
        img.write_at(1 << 20, &data).unwrap();
        img.write_at(12345, &data[..1000]).unwrap();
        std::mem::forget(img); // no Drop, no flush: as if killed
        let mut other = Qcow2Image::open(&p, true).unwrap();
        let mut back = vec![0u8; data.len()];
        other.read_at(1 << 20, &mut back).unwrap();
        assert_eq!(back, data);
        let mut back = vec![0u8; 1000];
        other.read_at(12345, &mut back).unwrap();
        assert_eq!(back, &data[..1000]);
        if qemu_img().is_some() {
            let out = Command::new("qemu-img")
                .args(["check", "-f", "qcow2"])
                .arg(&p)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "qemu-img check: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }

    fn file_state(p: &Path) -> (Vec<u8>, std::time::SystemTime, u64) {
        let m = std::fs::metadata(p).unwrap();
        (std::fs::read(p).unwrap(), m.modified().unwrap(), m.len())
    }

    #[test]
    fn overlay_on_raw_base_leaves_base_unchanged() {
        let dir = TempDir::new("q2-overlay");
        let base = dir.path("base.raw");
        let base_data = pattern(1, 1 << 20);
        std::fs::write(&base, &base_data).unwrap();
        let before = file_state(&base);
        let ov = dir.path("overlay.qcow2");
        // Relative backing name: resolved against the overlay's directory.
        Qcow2Image::create_overlay(&ov, "base.raw", ImageFormat::Raw, None).unwrap();
        let mut img = Qcow2Image::open(&ov, false).unwrap();
        assert_eq!(img.size(), 1 << 20);
        assert_eq!(img.backing_file(), Some("base.raw"));
        // Unwritten areas read through to the base.
        let mut b = vec![0u8; 5000];
        img.read_at(70000, &mut b).unwrap();
        assert_eq!(b, &base_data[70000..75000]);
        // A partial-cluster write: copy-on-write keeps the rest of the cluster from the base.
        let w = pattern(200, 1536);
        img.write_at(65536 + 512, &w).unwrap();
        let mut back = vec![0u8; 65536];
        img.read_at(65536, &mut back).unwrap();
        assert_eq!(&back[..512], &base_data[65536..65536 + 512]);
        assert_eq!(&back[512..2048], &w[..]);
        assert_eq!(&back[2048..], &base_data[65536 + 2048..131072]);
        img.flush().unwrap();
        drop(img);
        let after = file_state(&base);
        assert_eq!(after.2, before.2, "base size changed");
        assert_eq!(after.1, before.1, "base mtime changed");
        assert!(after.0 == before.0, "base bytes changed");
        // Reopened, the overlay still has the write.
        let mut img = Qcow2Image::open(&ov, true).unwrap();
        let mut back = vec![0u8; 1536];
        img.read_at(65536 + 512, &mut back).unwrap();
        assert_eq!(back, w);
    }

    #[test]
    fn overlay_on_qcow2_base() {
        let dir = TempDir::new("q2-chain");
        let base = dir.path("base.qcow2");
        Qcow2Image::create(&base, 2 << 20).unwrap();
        let d = pattern(7, 100_000);
        {
            let mut b = Qcow2Image::open(&base, false).unwrap();
            b.write_at(0, &d).unwrap();
            b.flush().unwrap();
        }
        let before = file_state(&base);
        let ov = dir.path("top.qcow2");
        Qcow2Image::create_overlay(&ov, &base, ImageFormat::Qcow2, Some(4 << 20)).unwrap();
        let mut img = Qcow2Image::open(&ov, false).unwrap();
        assert_eq!(img.size(), 4 << 20);
        img.write_at(50_000, &[0xEE; 10]).unwrap();
        let mut back = vec![0u8; 100_000];
        img.read_at(0, &mut back).unwrap();
        assert_eq!(&back[..50_000], &d[..50_000]);
        assert_eq!(&back[50_000..50_010], &[0xEE; 10]);
        assert_eq!(&back[50_010..], &d[50_010..]);
        // Beyond the base's size: zeroes.
        let mut z = vec![1u8; 512];
        img.read_at(3 << 20, &mut z).unwrap();
        assert!(z.iter().all(|&b| b == 0));
        img.flush().unwrap();
        drop(img);
        let after = file_state(&base);
        assert!(after.0 == before.0 && after.1 == before.1 && after.2 == before.2);
    }

    #[test]
    fn missing_backing_file_is_an_error() {
        let dir = TempDir::new("q2-nobacking");
        let base = dir.path("base.raw");
        std::fs::write(&base, vec![0u8; 65536]).unwrap();
        let ov = dir.path("ov.qcow2");
        Qcow2Image::create_overlay(&ov, "base.raw", ImageFormat::Raw, None).unwrap();
        std::fs::remove_file(&base).unwrap();
        let before = std::fs::read(&ov).unwrap();
        let e = Qcow2Image::open(&ov, false).unwrap_err();
        assert!(e.to_string().contains("base.raw"), "{e}");
        assert_eq!(std::fs::read(&ov).unwrap(), before);
    }

    #[test]
    fn qemu_img_created_image_opens() {
        let Some(qi) = qemu_img() else {
            eprintln!("skipped: qemu-img not installed");
            return;
        };
        let dir = TempDir::new("q2-qemu");
        let p = dir.path("q.qcow2");
        let st = Command::new(qi)
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&p)
            .arg("16M")
            .status()
            .unwrap();
        assert!(st.success());
        let mut img = Qcow2Image::open(&p, false).unwrap();
        assert_eq!(img.size(), 16 << 20);
        let mut b = vec![1u8; 65536];
        img.read_at(5 << 20, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 0));
        let d = pattern(42, 3 * 512);
        img.write_at(10 << 20, &d).unwrap();
        img.flush().unwrap();
        drop(img);
        // qemu-img agrees the image is consistent and sees our data.
        let out = Command::new(qi)
            .args(["check", "-f", "qcow2"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "qemu-img check: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let raw = dir.path("q.raw");
        let st = Command::new(qi)
            .args(["convert", "-f", "qcow2", "-O", "raw"])
            .arg(&p)
            .arg(&raw)
            .status()
            .unwrap();
        assert!(st.success());
        let r = std::fs::read(&raw).unwrap();
        assert_eq!(&r[10 << 20..(10 << 20) + d.len()], &d[..]);
    }

    #[test]
    fn qemu_img_data_written_by_qemu_reads_back() {
        let Some(qi) = qemu_img() else {
            eprintln!("skipped: qemu-img not installed");
            return;
        };
        let dir = TempDir::new("q2-qemu-data");
        let raw = dir.path("src.raw");
        let d = pattern(99, 3 << 20);
        std::fs::write(&raw, &d).unwrap();
        let q = dir.path("conv.qcow2");
        let st = Command::new(qi)
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&q)
            .status()
            .unwrap();
        assert!(st.success());
        let mut img = Qcow2Image::open(&q, true).unwrap();
        let mut back = vec![0u8; d.len()];
        img.read_at(0, &mut back).unwrap();
        assert!(back == d);
        // A compressed image too (zlib).
        let qc = dir.path("conv-c.qcow2");
        let st = Command::new(qi)
            .args(["convert", "-c", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&qc)
            .status()
            .unwrap();
        assert!(st.success());
        let mut img = Qcow2Image::open(&qc, true).unwrap();
        let mut back = vec![0u8; d.len()];
        img.read_at(0, &mut back).unwrap();
        assert!(back == d);
        // And a qemu-img overlay with a relative raw backing file.
        let ov = dir.path("ov.qcow2");
        let st = Command::new(qi)
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b", "src.raw"])
            .arg(&ov)
            .status()
            .unwrap();
        assert!(st.success());
        let mut img = Qcow2Image::open(&ov, false).unwrap();
        let mut back = vec![0u8; 4096];
        img.read_at(1 << 20, &mut back).unwrap();
        assert_eq!(back, &d[1 << 20..(1 << 20) + 4096]);
    }

    #[test]
    fn damaged_images_are_rejected_untouched() {
        let dir = TempDir::new("q2-bad");
        let good = dir.path("good.qcow2");
        Qcow2Image::create(&good, 64 << 20).unwrap();
        {
            let mut img = Qcow2Image::open(&good, false).unwrap();
            img.write_at(0, &pattern(1, 300_000)).unwrap();
            img.write_at(40 << 20, &pattern(2, 4096)).unwrap();
            img.flush().unwrap();
        }
        let good_bytes = std::fs::read(&good).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("magic only", QCOW2_MAGIC.to_vec()),
            ("header cut", good_bytes[..50].to_vec()),
            ("first cluster only", good_bytes[..65536].to_vec()),
            ("cut mid-file", good_bytes[..good_bytes.len() / 2].to_vec()),
            (
                "last cluster missing",
                good_bytes[..good_bytes.len() - 65536].to_vec(),
            ),
            ("garbage after magic", {
                let mut v = QCOW2_MAGIC.to_vec();
                v.extend(pattern(77, 200_000));
                v
            }),
            ("version 9", {
                let mut v = good_bytes.clone();
                v[4..8].copy_from_slice(&9u32.to_be_bytes());
                v
            }),
            ("cluster bits 40", {
                let mut v = good_bytes.clone();
                v[20..24].copy_from_slice(&40u32.to_be_bytes());
                v
            }),
            ("encrypted", {
                let mut v = good_bytes.clone();
                v[32..36].copy_from_slice(&1u32.to_be_bytes());
                v
            }),
            ("dirty", {
                let mut v = good_bytes.clone();
                v[79] |= 1;
                v
            }),
            ("size beyond L1", {
                let mut v = good_bytes.clone();
                v[24..32].copy_from_slice(&(1u64 << 50).to_be_bytes());
                v
            }),
        ];
        for (name, bytes) in cases {
            let p = dir.path(&format!("bad-{}.qcow2", name.replace(' ', "-")));
            std::fs::write(&p, &bytes).unwrap();
            let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
            for ro in [false, true] {
                let r = Qcow2Image::open(&p, ro);
                assert!(r.is_err(), "{name}: opened");
                let e = r.unwrap_err();
                assert!(matches!(e, BlockError::Format(_)), "{name}: {e:?}");
                assert!(
                    e.to_string().contains(&p.display().to_string()),
                    "{name}: {e}"
                );
            }
            assert!(std::fs::read(&p).unwrap() == bytes, "{name}: file modified");
            assert_eq!(
                std::fs::metadata(&p).unwrap().modified().unwrap(),
                mtime,
                "{name}"
            );
        }
    }
}

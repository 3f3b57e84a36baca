//! Disk image backends for Heron's storage devices: the [`BlockBackend`] trait the device
//! models (IDE/ATAPI) use, and its implementations (raw files, qcow2, snapshot overlays).
//!
//! - [`RawImage`] (`raw.rs`): a plain host file, positional I/O.
//! - [`Qcow2Image`] (`qcow2.rs`): qcow2 v2/v3 images, with backing files, through the `imago`
//!   crate built in its native synchronous mode.
//! - [`SnapshotOverlay`] (`snapshot.rs`): `snapshot=on`, writes kept in memory and discarded.
//! - [`DriveSpec`] and [`open_drive`] (`spec.rs`): QEMU-style `--drive` strings.
//!
//! Offsets and lengths are in bytes throughout; [`SECTOR_SIZE`] is the 512-byte unit the IDE
//! disk model addresses in.

#![warn(missing_docs)]

mod qcow2;
mod raw;
mod snapshot;
mod spec;

pub use qcow2::{probe_qcow2_magic, Qcow2Image, QCOW2_MAGIC};
pub use raw::RawImage;
pub use snapshot::{SnapshotOverlay, SNAPSHOT_BLOCK_SIZE};
pub use spec::{open_drive, probe_format, DriveSpec, ImageFormat, Media, SpecError, IDE_MAX_INDEX};

/// Bytes in a disk sector (the ATA logical sector). Image sizes that are not a multiple of this
/// are rounded down by [`RawImage`] (see there).
pub const SECTOR_SIZE: u64 = 512;

/// Errors of a block backend.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// A host I/O error.
    #[error("{path}: {source}")]
    Io {
        /// Image file.
        path: String,
        /// Host error.
        source: std::io::Error,
    },
    /// An access beyond the end of the image.
    #[error("access at byte {offset} + {len} is beyond the end of the image ({size} bytes)")]
    OutOfRange {
        /// Start offset in bytes.
        offset: u64,
        /// Length in bytes.
        len: u64,
        /// Image size in bytes.
        size: u64,
    },
    /// A write to a read-only image.
    #[error("the image is read-only")]
    ReadOnly,
    /// The image file is not in the format it claims or is damaged.
    #[error("{0}")]
    Format(String),
}

/// A disk image as the storage device models see it: a byte-addressed, fixed-size medium.
///
/// Offsets and lengths are in bytes. A write that returns `Ok` is visible to later reads;
/// after [`BlockBackend::flush`] returns `Ok` it is durable in the host file (fsync).
pub trait BlockBackend: Send {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Read `buf.len()` bytes at `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Write `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError>;
    /// Make every completed write durable (FLUSH CACHE).
    fn flush(&mut self) -> Result<(), BlockError>;
    /// The medium rejects writes.
    fn read_only(&self) -> bool;
}

impl<T: BlockBackend + ?Sized> BlockBackend for Box<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        (**self).read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        (**self).write_at(offset, buf)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        (**self).flush()
    }
    fn read_only(&self) -> bool {
        (**self).read_only()
    }
}

/// `Ok` when the byte range `offset .. offset + len` lies within an image of `size` bytes
/// (an empty range at `offset == size` is allowed), else [`BlockError::OutOfRange`].
pub(crate) fn check_range(offset: u64, len: usize, size: u64) -> Result<(), BlockError> {
    let len = len as u64;
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(BlockError::OutOfRange { offset, len, size }),
    }
}

/// A [`BlockError::Io`] for `path`.
pub(crate) fn io_err(path: &std::path::Path, source: std::io::Error) -> BlockError {
    BlockError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Scratch files for the unit tests (no tempfile dependency).
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A scratch directory removed on drop.
    pub struct TempDir(PathBuf);

    impl TempDir {
        /// A new empty directory under the system temp dir.
        pub fn new(tag: &str) -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("heron-block-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        /// `name` inside the directory.
        pub fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
        /// The directory.
        pub fn dir(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A deterministic byte pattern: byte `i` of the pattern seeded `seed`.
    pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| {
                (i as u32)
                    .wrapping_mul(31)
                    .wrapping_add(seed as u32 * 7 + (i >> 9) as u32) as u8
            })
            .collect()
    }
}

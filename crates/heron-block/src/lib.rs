//! Disk image backends for Heron's storage devices: the [`BlockBackend`] trait the device
//! models (IDE/ATAPI) use, and its implementations (raw files, qcow2, snapshot overlays).

#![warn(missing_docs)]

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

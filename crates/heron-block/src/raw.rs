//! Raw disk images: the guest's bytes are the host file's bytes, offset for offset.

use crate::{check_range, io_err, BlockBackend, BlockError, SECTOR_SIZE};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A raw image over a host file, accessed with positional I/O (`pread`/`pwrite` through
/// [`std::os::unix::fs::FileExt`]), so there is no shared file cursor and no user-space cache.
///
/// - **Size**: the file's length in bytes rounded *down* to a multiple of [`SECTOR_SIZE`]
///   (512 bytes), fixed at open. A trailing partial sector is accepted but unreachable. (QEMU
///   also accepts such files but rounds *up*, reading the missing tail as zeroes and extending
///   the file when the guest writes the last sector; rounding down keeps the rule that writes
///   never change the file's length.)
/// - **Reads and writes** outside `0..size()` fail with [`BlockError::OutOfRange`]; writes never
///   extend the file.
/// - **Durability**: a `write_at` that returned `Ok` has been handed to the kernel with `pwrite`
///   and is in the host page cache, so it survives the emulator process being killed;
///   [`BlockBackend::flush`] adds `fdatasync` ([`File::sync_data`]) so it survives a host crash.
/// - **Read-only**: opened with `O_RDONLY`; `write_at` fails with [`BlockError::ReadOnly`].
#[derive(Debug)]
pub struct RawImage {
    file: File,
    path: PathBuf,
    size: u64,
    read_only: bool,
}

impl RawImage {
    /// Open the raw image at `path`: `O_RDONLY` when `read_only`, else `O_RDWR`. The file must
    /// exist (it is never created). Errors name the path ([`BlockError::Io`]).
    pub fn open(path: impl AsRef<Path>, read_only: bool) -> Result<RawImage, BlockError> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        let meta = file.metadata().map_err(|e| io_err(path, e))?;
        if meta.is_dir() {
            return Err(BlockError::Format(format!(
                "{}: is a directory",
                path.display()
            )));
        }
        let size = meta.len() / SECTOR_SIZE * SECTOR_SIZE;
        Ok(RawImage {
            file,
            path: path.to_path_buf(),
            size,
            read_only,
        })
    }

    /// The host file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl BlockBackend for RawImage {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(offset, buf.len(), self.size)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| io_err(&self.path, e))
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        check_range(offset, buf.len(), self.size)?;
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| io_err(&self.path, e))
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data().map_err(|e| io_err(&self.path, e))
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{pattern, TempDir};

    #[test]
    fn round_trip_and_reopen() {
        let dir = TempDir::new("raw-rt");
        let p = dir.path("disk.img");
        std::fs::write(&p, vec![0u8; 64 * 1024]).unwrap();
        let mut img = RawImage::open(&p, false).unwrap();
        assert_eq!(img.size(), 65536);
        assert!(!img.read_only());
        let data = pattern(3, 3 * 512 + 17);
        img.write_at(1000, &data).unwrap();
        let mut back = vec![0u8; data.len()];
        img.read_at(1000, &mut back).unwrap();
        assert_eq!(back, data);
        img.flush().unwrap();
        drop(img);
        // The bytes are in the host file at the same offsets, and the length is unchanged.
        let raw = std::fs::read(&p).unwrap();
        assert_eq!(raw.len(), 65536);
        assert_eq!(&raw[1000..1000 + data.len()], &data[..]);
        assert!(raw[..1000].iter().all(|&b| b == 0));
    }

    #[test]
    fn written_data_is_in_file_before_flush() {
        let dir = TempDir::new("raw-noflush");
        let p = dir.path("disk.img");
        std::fs::write(&p, vec![0u8; 4096]).unwrap();
        let mut img = RawImage::open(&p, false).unwrap();
        img.write_at(512, &[0xAB; 512]).unwrap();
        // No flush, image still open: another reader of the file sees the write (page cache).
        let raw = std::fs::read(&p).unwrap();
        assert!(raw[512..1024].iter().all(|&b| b == 0xAB));
    }

    #[test]
    fn read_only_rejects_writes_and_leaves_file() {
        let dir = TempDir::new("raw-ro");
        let p = dir.path("disk.img");
        let data = pattern(9, 8192);
        std::fs::write(&p, &data).unwrap();
        let mut img = RawImage::open(&p, true).unwrap();
        assert!(img.read_only());
        assert!(matches!(
            img.write_at(0, &[1, 2, 3]),
            Err(BlockError::ReadOnly)
        ));
        let mut b = vec![0u8; 100];
        img.read_at(4000, &mut b).unwrap();
        assert_eq!(b, &data[4000..4100]);
        img.flush().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), data);
    }

    #[test]
    fn read_only_open_works_without_write_permission() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("raw-perm");
        let p = dir.path("disk.img");
        std::fs::write(&p, vec![7u8; 1024]).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).unwrap();
        // O_RDONLY: works even though the file is not writable (unless running as root, where
        // the read-write open would succeed too, so only the read-only open is checked).
        let mut img = RawImage::open(&p, true).unwrap();
        let mut b = [0u8; 4];
        img.read_at(1020, &mut b).unwrap();
        assert_eq!(b, [7; 4]);
    }

    #[test]
    fn out_of_range() {
        let dir = TempDir::new("raw-oor");
        let p = dir.path("disk.img");
        std::fs::write(&p, vec![0u8; 2048]).unwrap();
        let mut img = RawImage::open(&p, false).unwrap();
        let mut b = [0u8; 512];
        img.read_at(1536, &mut b).unwrap();
        assert!(matches!(
            img.read_at(1537, &mut b),
            Err(BlockError::OutOfRange {
                offset: 1537,
                len: 512,
                size: 2048
            })
        ));
        assert!(matches!(
            img.read_at(u64::MAX, &mut b),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            img.write_at(2048, &[1]),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            img.write_at(2000, &[1; 100]),
            Err(BlockError::OutOfRange { .. })
        ));
        // Empty access at the end is fine.
        img.read_at(2048, &mut []).unwrap();
        // The file never grew.
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 2048);
    }

    #[test]
    fn size_rounds_down_to_sectors() {
        let dir = TempDir::new("raw-odd");
        let p = dir.path("odd.img");
        std::fs::write(&p, vec![1u8; 1000]).unwrap();
        let mut img = RawImage::open(&p, false).unwrap();
        assert_eq!(img.size(), 512);
        let mut b = [0u8; 512];
        img.read_at(0, &mut b).unwrap();
        assert!(matches!(
            img.read_at(512, &mut b),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            img.write_at(512, &b),
            Err(BlockError::OutOfRange { .. })
        ));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1000);
    }

    #[test]
    fn missing_file_names_path() {
        let dir = TempDir::new("raw-missing");
        let p = dir.path("nope.img");
        let e = RawImage::open(&p, true).unwrap_err();
        assert!(e.to_string().contains("nope.img"), "{e}");
    }
}

//! `snapshot=on`: a throw-away, in-memory write overlay over any backend.

use crate::{check_range, BlockBackend, BlockError};
use std::collections::HashMap;

/// Granule of the overlay in bytes (4 KiB = 8 sectors): the first write into a block copies
/// that block from the wrapped image, then the block lives in memory.
pub const SNAPSHOT_BLOCK_SIZE: u64 = 4096;

/// A copy-on-write overlay kept in memory: writes go to a map of [`SNAPSHOT_BLOCK_SIZE`]-byte
/// blocks, reads see those blocks first and the wrapped image elsewhere. The wrapped image is
/// never written (open it read-only); everything written is discarded when the overlay is
/// dropped — QEMU's `snapshot=on`, which QEMU implements with a temporary qcow2 overlay.
///
/// - **Size**: that of the wrapped image, in bytes.
/// - **Memory**: grows by one block (plus map overhead) per distinct block written, up to the
///   image size; nothing is freed before drop.
/// - **Flush**: succeeds and does nothing (nothing written is meant to persist).
/// - **Read-only**: never; writes are accepted even when the wrapped image is read-only.
#[derive(Debug)]
pub struct SnapshotOverlay<B: BlockBackend = Box<dyn BlockBackend>> {
    base: B,
    size: u64,
    /// Block index → block contents (the last block is shorter when the size is not a multiple
    /// of the block size).
    blocks: HashMap<u64, Box<[u8]>>,
}

impl<B: BlockBackend> SnapshotOverlay<B> {
    /// Wrap `base` (which should be opened read-only; it is only ever read).
    pub fn new(base: B) -> SnapshotOverlay<B> {
        let size = base.size();
        SnapshotOverlay {
            base,
            size,
            blocks: HashMap::new(),
        }
    }

    /// The wrapped image.
    pub fn base(&self) -> &B {
        &self.base
    }

    /// Bytes held by the overlay's blocks (not counting map overhead).
    pub fn overlay_bytes(&self) -> u64 {
        self.blocks.values().map(|b| b.len() as u64).sum()
    }

    /// Length in bytes of block `idx`.
    fn block_len(&self, idx: u64) -> usize {
        (self.size - idx * SNAPSHOT_BLOCK_SIZE).min(SNAPSHOT_BLOCK_SIZE) as usize
    }
}

impl<B: BlockBackend> BlockBackend for SnapshotOverlay<B> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(offset, buf.len(), self.size)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let idx = pos / SNAPSHOT_BLOCK_SIZE;
            let in_block = (pos % SNAPSHOT_BLOCK_SIZE) as usize;
            let n = (self.block_len(idx) - in_block).min(buf.len() - done);
            if let Some(b) = self.blocks.get(&idx) {
                buf[done..done + n].copy_from_slice(&b[in_block..in_block + n]);
                done += n;
            } else {
                // Coalesce a run of blocks not in the overlay into one read of the base.
                let mut end = done + n;
                while end < buf.len() {
                    let p = offset + end as u64;
                    let i = p / SNAPSHOT_BLOCK_SIZE;
                    if self.blocks.contains_key(&i) {
                        break;
                    }
                    end += (self.block_len(i)).min(buf.len() - end);
                }
                self.base.read_at(pos, &mut buf[done..end])?;
                done = end;
            }
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_range(offset, buf.len(), self.size)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let idx = pos / SNAPSHOT_BLOCK_SIZE;
            let in_block = (pos % SNAPSHOT_BLOCK_SIZE) as usize;
            let blen = self.block_len(idx);
            let n = (blen - in_block).min(buf.len() - done);
            if !self.blocks.contains_key(&idx) {
                let mut b = vec![0u8; blen].into_boxed_slice();
                if n < blen {
                    // Partial block: the rest comes from the base.
                    self.base.read_at(idx * SNAPSHOT_BLOCK_SIZE, &mut b)?;
                }
                self.blocks.insert(idx, b);
            }
            let b = self.blocks.get_mut(&idx).expect("inserted above");
            b[in_block..in_block + n].copy_from_slice(&buf[done..done + n]);
            done += n;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }

    fn read_only(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{pattern, TempDir};
    use crate::RawImage;

    #[test]
    fn overlay_reads_and_writes_leave_file_unchanged() {
        let dir = TempDir::new("snap");
        let p = dir.path("base.img");
        // Not a multiple of the block size: 10 sectors.
        let data = pattern(4, 5120);
        std::fs::write(&p, &data).unwrap();
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        let mut ov = SnapshotOverlay::new(RawImage::open(&p, true).unwrap());
        assert_eq!(ov.size(), 5120);
        assert!(!ov.read_only());
        let mut model = data.clone();
        let writes: [(u64, usize, u8); 5] = [
            (100, 10, 1),
            (4090, 20, 2),
            (0, 5120, 3),
            (512, 512, 4),
            (5119, 1, 5),
        ];
        for (i, &(off, len, seed)) in writes.iter().enumerate() {
            if i == 2 {
                // Check a mixed read before the full overwrite.
                let mut all = vec![0u8; 5120];
                ov.read_at(0, &mut all).unwrap();
                assert_eq!(all, model);
            }
            let w = pattern(seed, len);
            ov.write_at(off, &w).unwrap();
            model[off as usize..off as usize + len].copy_from_slice(&w);
            let mut all = vec![0u8; 5120];
            ov.read_at(0, &mut all).unwrap();
            assert_eq!(all, model, "after write {i}");
        }
        let mut b = vec![0u8; 77];
        ov.read_at(4050, &mut b).unwrap();
        assert_eq!(b, &model[4050..4127]);
        assert!(matches!(
            ov.write_at(5120, &[1]),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            ov.read_at(5000, &mut [0; 200]),
            Err(BlockError::OutOfRange { .. })
        ));
        ov.flush().unwrap();
        assert_eq!(ov.overlay_bytes(), 5120);
        drop(ov);
        assert_eq!(std::fs::read(&p).unwrap(), data);
        assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), mtime);
    }

    #[test]
    fn unwritten_reads_pass_through() {
        let dir = TempDir::new("snap-pass");
        let p = dir.path("base.img");
        let data = pattern(8, 64 * 1024);
        std::fs::write(&p, &data).unwrap();
        let mut ov: SnapshotOverlay =
            SnapshotOverlay::new(Box::new(RawImage::open(&p, true).unwrap()));
        ov.write_at(8192, &[9; 4096]).unwrap();
        let mut b = vec![0u8; 64 * 1024];
        ov.read_at(0, &mut b).unwrap();
        assert_eq!(&b[..8192], &data[..8192]);
        assert_eq!(&b[8192..12288], &[9; 4096][..]);
        assert_eq!(&b[12288..], &data[12288..]);
        assert!(ov.base().read_only());
    }
}

//! Guest-physical RAM: one anonymous host mapping (memmap2), zero-filled.

use std::sync::Arc;

use memmap2::{MmapMut, MmapRaw};

/// Errors of guest-physical RAM.
#[derive(Debug, thiserror::Error)]
pub enum RamError {
    /// The host could not map the requested size.
    #[error("cannot allocate {size} bytes of guest RAM: {source}")]
    Alloc {
        /// Requested size in bytes.
        size: u64,
        /// Host error.
        source: std::io::Error,
    },
    /// An access fell outside guest RAM.
    #[error("guest-physical range {addr:#x}+{len:#x} is outside RAM ({size:#x} bytes)")]
    OutOfRange {
        /// Guest-physical start address.
        addr: u64,
        /// Length in bytes.
        len: u64,
        /// RAM size in bytes.
        size: u64,
    },
}

/// Guest-physical RAM starting at guest-physical address 0, `size` bytes long.
///
/// A cheap, cloneable handle: the CPU (through TLB host pointers) and DMA-capable devices each
/// hold one. The host mapping never moves and lives as long as any handle, so
/// [`GuestRam::host_base`] plus a guest-physical address below [`GuestRam::size`] stays a valid
/// host pointer; the TLB caches such pointers (as an addend) for its fast path. Like the guest's
/// own RAM, it is shared mutable memory: Heron touches it from one thread at a time.
#[derive(Clone)]
pub struct GuestRam {
    map: Arc<MmapRaw>,
}

impl GuestRam {
    /// Map `size` bytes (a multiple of 4096) of zeroed guest RAM.
    pub fn new(size: u64) -> Result<Self, RamError> {
        let map = MmapMut::map_anon(size as usize).map_err(|source| RamError::Alloc { size, source })?;
        Ok(GuestRam { map: Arc::new(MmapRaw::from(map)) })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.map.len() as u64
    }

    /// Host address of guest-physical address 0.
    pub fn host_base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    fn range(&self, addr: u64, len: usize) -> Result<std::ops::Range<usize>, RamError> {
        let end = addr.checked_add(len as u64).filter(|&e| e <= self.size());
        match end {
            Some(end) => Ok(addr as usize..end as usize),
            None => Err(RamError::OutOfRange { addr, len: len as u64, size: self.size() }),
        }
    }

    /// Copy guest-physical bytes at `addr` into `buf`.
    pub fn read_bytes(&self, addr: u64, buf: &mut [u8]) -> Result<(), RamError> {
        let r = self.range(addr, buf.len())?;
        // SAFETY: `r` lies inside the mapping, which lives as long as `self`.
        unsafe { std::ptr::copy_nonoverlapping(self.host_base().add(r.start), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copy `buf` to guest-physical `addr`.
    pub fn write_bytes(&mut self, addr: u64, buf: &[u8]) -> Result<(), RamError> {
        let r = self.range(addr, buf.len())?;
        // SAFETY: `r` lies inside the mapping, which lives as long as `self`.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), self.host_base().add(r.start), buf.len()) };
        Ok(())
    }

    /// The whole of RAM as a byte slice. Callers must not hold it across guest execution.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `size` bytes and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.host_base(), self.size() as usize) }
    }

    /// The whole of RAM as a mutable byte slice. Callers must not hold it across guest
    /// execution or while another handle's slice is alive.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above; Heron is single-threaded over guest RAM, so no other reference
        // into the mapping is in use while this one is.
        unsafe { std::slice::from_raw_parts_mut(self.host_base(), self.size() as usize) }
    }
}

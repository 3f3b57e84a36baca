//! Guest-physical RAM: one anonymous host mapping (memmap2), zero-filled.

use memmap2::MmapMut;

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
/// The host mapping never moves, so [`GuestRam::host_base`] plus a guest-physical address below
/// [`GuestRam::size`] is a valid host pointer for the lifetime of the `GuestRam`; the TLB caches
/// such pointers (as an addend) for its fast path.
pub struct GuestRam {
    map: MmapMut,
}

impl GuestRam {
    /// Map `size` bytes (a multiple of 4096) of zeroed guest RAM.
    pub fn new(size: u64) -> Result<Self, RamError> {
        let map = MmapMut::map_anon(size as usize).map_err(|source| RamError::Alloc { size, source })?;
        Ok(GuestRam { map })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.map.len() as u64
    }

    /// Host address of guest-physical address 0.
    pub fn host_base(&self) -> *mut u8 {
        self.map.as_ptr() as *mut u8
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
        buf.copy_from_slice(&self.map[r]);
        Ok(())
    }

    /// Copy `buf` to guest-physical `addr`.
    pub fn write_bytes(&mut self, addr: u64, buf: &[u8]) -> Result<(), RamError> {
        let r = self.range(addr, buf.len())?;
        self.map[r].copy_from_slice(buf);
        Ok(())
    }

    /// The whole of RAM as a byte slice.
    pub fn as_slice(&self) -> &[u8] {
        &self.map
    }

    /// The whole of RAM as a mutable byte slice.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.map
    }
}

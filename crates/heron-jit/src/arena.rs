//! The code arena: one executable mapping Heron owns, filled by bump allocation and emptied
//! whole (DESIGN.md §3: cranelift-jit's JITModule can neither free one function nor avoid a
//! mapping per finalize).

use std::io;

/// Alignment of each translation's start, in bytes (the host's preferred branch-target
/// alignment on x86-64).
const ALIGN: usize = 16;

/// An anonymous read-write-execute mapping of `size` bytes.
pub struct CodeArena {
    base: *mut u8,
    size: usize,
    used: usize,
}

impl CodeArena {
    /// Map `size` bytes (reserved, touched only as code is written).
    ///
    /// # Errors
    /// The host refused the mapping (e.g. a policy against writable-executable memory).
    pub fn new(size: usize) -> io::Result<Self> {
        // SAFETY: an anonymous private mapping at an address the kernel chooses; no existing
        // memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(CodeArena { base: p as *mut u8, size, used: 0 })
    }

    /// Copy `code` into the arena; its start address, or `None` when full.
    pub fn alloc(&mut self, code: &[u8]) -> Option<*const u8> {
        let start = self.used.next_multiple_of(ALIGN);
        if start + code.len() > self.size {
            return None;
        }
        // SAFETY: `start..start + len` lies inside the mapping and holds no live translation
        // (bump allocation only moves forward until `reset`).
        unsafe {
            let dst = self.base.add(start);
            std::ptr::copy_nonoverlapping(code.as_ptr(), dst, code.len());
            self.used = start + code.len();
            // x86-64 keeps instruction fetch coherent with stores; other hosts would need an
            // instruction-cache flush of the range here.
            Some(dst)
        }
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Forget every translation (the caller holds no pointer into the arena any more).
    pub fn reset(&mut self) {
        self.used = 0;
    }
}

impl Drop for CodeArena {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping `new` created; no code from it runs any more.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.size);
        }
    }
}

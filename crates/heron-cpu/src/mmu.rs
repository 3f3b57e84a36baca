//! Guest memory access from the CPU's side: segmentation (Intel SDM Vol. 3A §3.4, §5.3), the
//! TLB fast path, TLB fill through the page walk, and physical dispatch to RAM or MMIO.
//! A write to a page holding decoded blocks invalidates them (DESIGN.md §6).

use heron_softmmu::{walk, Access, PagingMode, PagingRegs, TlbKind};

use crate::exec::Ctx;
use crate::state::{cr, rf, seg, sreg};
use crate::{vec, Exception, Res};

#[inline]
unsafe fn load(p: *const u8, size: u32) -> u64 {
    // SAFETY (caller): `p` points to `size` readable bytes inside guest RAM.
    match size {
        1 => *p as u64,
        2 => (p as *const u16).read_unaligned() as u64,
        4 => (p as *const u32).read_unaligned() as u64,
        _ => (p as *const u64).read_unaligned(),
    }
}

#[inline]
unsafe fn store(p: *mut u8, size: u32, v: u64) {
    // SAFETY (caller): `p` points to `size` writable bytes inside guest RAM.
    match size {
        1 => *p = v as u8,
        2 => (p as *mut u16).write_unaligned(v as u16),
        4 => (p as *mut u32).write_unaligned(v as u32),
        _ => (p as *mut u64).write_unaligned(v),
    }
}

/// One guest RAM write recorded for the lockstep check: where, how many bytes (1, 2, 4, 8) and
/// what they held before, so the write can be undone.
#[derive(Clone, Copy, Debug)]
pub struct WriteRec {
    /// Guest-physical address.
    pub pa: u64,
    /// Size in bytes.
    pub size: u32,
    /// The previous contents (little-endian).
    pub old: u64,
}

impl Ctx<'_> {
    /// Undo the writes in `log`, newest first.
    pub(crate) fn undo_writes(&mut self, log: &[WriteRec]) {
        for w in log.iter().rev() {
            // SAFETY: every record was a write inside RAM.
            unsafe { store(self.ram.host_base().add(w.pa as usize), w.size, w.old) }
        }
    }

    /// Read `size` bytes of guest RAM at `pa` (lockstep comparison).
    pub(crate) fn ram_peek(&self, pa: u64, size: u32) -> u64 {
        // SAFETY: `pa` comes from a write record, inside RAM.
        unsafe { load(self.ram.host_base().add(pa as usize), size) }
    }

    /// Translate linear `la` for `kind` at privilege `user`, filling the TLB when the page is
    /// RAM (and, for writes, dirty and free of decoded code). Raises #PF (setting CR2).
    pub fn translate(&mut self, la: u64, kind: TlbKind, user: bool) -> Res<u64> {
        self.stats_tlb_miss += 1;
        let mode = self.s.paging_mode();
        let acc = Access { write: kind == TlbKind::Write, fetch: kind == TlbKind::Fetch, user };
        let (pa, global, dirty) = if mode == PagingMode::None {
            (la, false, true)
        } else {
            let regs = PagingRegs {
                cr3: self.s.cr3,
                wp: self.s.cr0 & cr::CR0_WP != 0,
                nxe: self.s.efer & cr::EFER_NXE != 0,
                pge: self.s.cr4 & cr::CR4_PGE != 0,
                set_ad: true,
            };
            let ram = self.ram.as_mut_slice();
            match walk(ram, mode, regs, la, acc) {
                Ok(t) => (t.paddr, t.global, t.dirty),
                Err(f) => {
                    self.s.cr2 = la;
                    return Err(Exception::with_code(vec::PF, f.error_code));
                }
            }
        };
        let pa = pa & self.s.a20_mask;
        let page = pa & !0xFFF;
        if page + 0x1000 <= self.ram_size {
            // Watched pages stay out of the TLB so each access reaches the watch check.
            let ok = match kind {
                TlbKind::Write => dirty && !self.code.is_code_page(page) && !self.debug.page_watched(la),
                TlbKind::Read => !self.debug.page_watched(la),
                TlbKind::Fetch => true,
            };
            if ok {
                let host = self.ram.host_base() as u64 + page;
                self.s.tlb.fill(user, kind, la, host, page, global);
            }
        }
        Ok(pa)
    }

    #[inline]
    fn is_user(&self) -> bool {
        self.s.cpl() == 3
    }

    /// Mask a linear address to the width of the current mode (32 bits outside IA-32e mode).
    #[inline]
    fn wrap_la(&self, la: u64) -> u64 {
        if self.s.efer & cr::EFER_LMA != 0 {
            la
        } else {
            la & 0xFFFF_FFFF
        }
    }

    /// Read `size` bytes (1, 2, 4, 8) at linear `la` with the current privilege.
    #[inline]
    pub fn read_lin(&mut self, la: u64, size: u32) -> Res<u64> {
        let user = self.is_user();
        self.read_lin_as(la, size, user)
    }

    /// Read at linear `la`, as a user (CPL 3) or supervisor access.
    #[inline]
    pub fn read_lin_as(&mut self, la: u64, size: u32, user: bool) -> Res<u64> {
        if let Some(p) = self.s.tlb.lookup(user, TlbKind::Read, la, size as u64) {
            // SAFETY: a TLB hit maps the whole access inside one RAM page.
            return Ok(unsafe { load(p, size) });
        }
        self.read_lin_slow(la, size, user, TlbKind::Read)
    }

    fn read_lin_slow(&mut self, la: u64, size: u32, user: bool, kind: TlbKind) -> Res<u64> {
        if !self.debug.ranges.is_empty() && kind == TlbKind::Read {
            self.debug.access(la, size, false);
        }
        if (la & 0xFFF) + size as u64 > 0x1000 {
            let mut v = 0u64;
            for k in 0..size {
                let a = self.wrap_la(la.wrapping_add(k as u64));
                let pa = self.translate(a, kind, user)?;
                v |= self.phys_read(pa, 1) << (8 * k);
            }
            return Ok(v);
        }
        let pa = self.translate(la, kind, user)?;
        Ok(self.phys_read(pa, size))
    }

    /// Write `size` bytes at linear `la` with the current privilege.
    #[inline]
    pub fn write_lin(&mut self, la: u64, size: u32, v: u64) -> Res<()> {
        let user = self.is_user();
        self.write_lin_as(la, size, v, user)
    }

    /// Write at linear `la`, as a user or supervisor access.
    #[inline]
    pub fn write_lin_as(&mut self, la: u64, size: u32, v: u64, user: bool) -> Res<()> {
        if let Some(p) = self.s.tlb.lookup(user, TlbKind::Write, la, size as u64) {
            if let Some(log) = self.wlog.as_deref_mut() {
                // SAFETY: as below; reading the bytes about to be replaced.
                let old = unsafe { load(p, size) };
                log.push(WriteRec { pa: p as u64 - self.ram.host_base() as u64, size, old });
            }
            // SAFETY: a TLB hit maps the whole access inside one writable RAM page without code.
            unsafe { store(p, size, v) };
            return Ok(());
        }
        self.write_lin_slow(la, size, v, user)
    }

    fn write_lin_slow(&mut self, la: u64, size: u32, v: u64, user: bool) -> Res<()> {
        if !self.debug.ranges.is_empty() {
            self.debug.access(la, size, true);
        }
        if (la & 0xFFF) + size as u64 > 0x1000 {
            // Translate both pages before writing anything, so a fault leaves memory unchanged.
            let second = self.wrap_la((la | 0xFFF).wrapping_add(1));
            let pa1 = self.translate(la, TlbKind::Write, user)?;
            let pa2 = self.translate(second, TlbKind::Write, user)?;
            let first_len = 0x1000 - (la & 0xFFF);
            for k in 0..size as u64 {
                let pa = if k < first_len { pa1 + k } else { pa2 + (k - first_len) };
                self.phys_write(pa, 1, v >> (8 * k));
            }
            return Ok(());
        }
        let pa = self.translate(la, TlbKind::Write, user)?;
        self.phys_write(pa, size, v);
        Ok(())
    }

    /// Check that a write of `size` bytes at `la` would succeed (for instructions that must not
    /// fault after partially committing state).
    pub fn probe_write(&mut self, la: u64, size: u32) -> Res<()> {
        let user = self.is_user();
        if self.s.tlb.lookup(user, TlbKind::Write, la, size as u64).is_some() {
            return Ok(());
        }
        self.translate(la, TlbKind::Write, user)?;
        let end = self.wrap_la(la.wrapping_add(size as u64 - 1));
        if end & !0xFFF != la & !0xFFF {
            self.translate(end & !0xFFF, TlbKind::Write, user)?;
        }
        Ok(())
    }

    /// Fetch up to `max` bytes of code at linear `la` into `buf` (stopping at the end of the
    /// page); returns the physical address of `la`.
    pub fn fetch_page(&mut self, la: u64, buf: &mut Vec<u8>, max: u64) -> Res<u64> {
        let user = self.is_user();
        let pa = self.translate(la, TlbKind::Fetch, user)?;
        let n = (0x1000 - (pa & 0xFFF)).min(max);
        buf.clear();
        if pa + n <= self.ram_size {
            buf.extend_from_slice(&self.ram.as_slice()[pa as usize..(pa + n) as usize]);
        } else {
            for k in 0..n {
                let b = self.phys_read(pa + k, 1) as u8;
                buf.push(b);
            }
        }
        Ok(pa)
    }

    /// Read guest-physical memory (RAM or MMIO).
    pub fn phys_read(&mut self, pa: u64, size: u32) -> u64 {
        let pa = pa & self.s.a20_mask;
        if pa + size as u64 <= self.ram_size {
            // SAFETY: bounds checked against the RAM size just above.
            unsafe { load(self.ram.host_base().add(pa as usize), size) }
        } else if pa < self.ram_size {
            (0..size as u64).fold(0, |v, k| v | (self.phys_read(pa + k, 1) << (8 * k)))
        } else {
            self.io_touched = true;
            let v = self.bus.mmio_read(self.s.icount, pa, size as u8);
            self.trace_io("mmio-read", pa, size, v);
            v
        }
    }

    /// Write guest-physical memory (RAM or MMIO), invalidating decoded code it overwrites.
    pub fn phys_write(&mut self, pa: u64, size: u32, v: u64) {
        let pa = pa & self.s.a20_mask;
        if pa + size as u64 <= self.ram_size {
            let last = (pa + size as u64 - 1) & !0xFFF;
            for page in [pa & !0xFFF, last] {
                if self.code.is_code_page(page) {
                    self.code.invalidate_page(page);
                    self.smc = true;
                }
            }
            let p = self.ram.host_base().wrapping_add(pa as usize);
            if let Some(log) = self.wlog.as_deref_mut() {
                // SAFETY: bounds checked against the RAM size just above.
                log.push(WriteRec { pa, size, old: unsafe { load(p, size) } });
            }
            // SAFETY: bounds checked against the RAM size just above.
            unsafe { store(p, size, v) }
        } else if pa < self.ram_size {
            for k in 0..size as u64 {
                self.phys_write(pa + k, 1, v >> (8 * k));
            }
        } else {
            self.io_touched = true;
            self.trace_io("mmio-write", pa, size, v);
            self.bus.mmio_write(self.s.icount, pa, size as u8, v);
        }
    }

    /// Segmentation: turn offset `ea` in segment `sr` into a linear address for an access of
    /// `size` bytes, with the limit, type and null-selector checks of protected mode and the
    /// canonical-address check of 64-bit mode (#GP(0), or #SS(0) for SS).
    #[inline]
    pub fn seg_lin(&mut self, sr: usize, ea: u64, size: u32, write: bool) -> Res<u64> {
        let fault = if sr == sreg::SS { Exception::with_code(vec::SS, 0) } else { Exception::gp(0) };
        if self.bits == 64 {
            let la = if sr >= sreg::FS { ea.wrapping_add(self.s.seg[sr].base) } else { ea };
            if !canonical(la) {
                return Err(fault);
            }
            return Ok(la);
        }
        let s = &self.s.seg[sr];
        let pe = self.s.cr0 & cr::CR0_PE != 0 && self.s.rflags & rf::VM == 0;
        if pe {
            if s.attr & seg::P == 0 {
                return Err(fault);
            }
            if write && (s.attr & seg::CODE != 0 || s.attr & seg::RW == 0) {
                return Err(fault);
            }
            if !write && s.attr & seg::CODE != 0 && s.attr & seg::RW == 0 {
                return Err(fault);
            }
        }
        let last = ea.wrapping_add(size as u64 - 1);
        if s.attr & (seg::CODE | seg::DC) == seg::DC && pe {
            let upper = if s.attr & seg::DB != 0 { 0xFFFF_FFFF } else { 0xFFFF };
            if ea <= s.limit as u64 || last > upper || last < ea {
                return Err(fault);
            }
        } else if last > s.limit as u64 || last < ea {
            return Err(fault);
        }
        Ok((s.base.wrapping_add(ea)) & 0xFFFF_FFFF)
    }

    /// Read `size` bytes at offset `ea` of segment `sr`.
    #[inline]
    pub fn read_seg(&mut self, sr: usize, ea: u64, size: u32) -> Res<u64> {
        let la = self.seg_lin(sr, ea, size, false)?;
        self.read_lin(la, size)
    }

    /// Write `size` bytes at offset `ea` of segment `sr`.
    #[inline]
    pub fn write_seg(&mut self, sr: usize, ea: u64, size: u32, v: u64) -> Res<()> {
        let la = self.seg_lin(sr, ea, size, true)?;
        self.write_lin(la, size, v)
    }
}

/// A 64-bit linear address is canonical when bits 63:47 are all equal (48-bit linear addresses).
#[inline]
pub fn canonical(la: u64) -> bool {
    ((la as i64) << 16 >> 16) as u64 == la
}

//! System instructions and protected-mode mechanics (Intel SDM Vol. 3A): segment loads with
//! descriptor checks (§5.5–5.8), far transfers, interrupt and exception delivery (§6.12, §6.14),
//! control and debug registers (§2.5), MSRs, port I/O with IOPL and the TSS I/O bitmap (Vol. 1
//! §19.5), SYSCALL/SYSRET, SWAPGS, descriptor-table instructions.

use heron_softmmu::TlbKind;
use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use crate::exec::{gpr, sreg_index, Ctx};
use crate::flags::mask;
use crate::state::{cr, rf, seg, sreg, Segment};
use crate::{vec, Exception, Res};

/// How an interrupt or exception came about (affects privilege checks, the EXT bit and the
/// saved RIP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntSource {
    /// A processor exception (fault or trap); EXT = 1 in error codes.
    Exception,
    /// External interrupt from INTR; EXT = 1.
    External,
    /// INT n, INT3, INTO: gate DPL is checked against CPL.
    Software,
}

/// Why an instruction raised an exception through [`Ctx::soft_int`]: a marker vector used to
/// carry INT n out of `exec` as an `Err`, delivered by the run loop as a software interrupt.
pub const SOFT_INT_FLAG: u32 = 0x8000_0000;

impl Ctx<'_> {
    /// INT n as an `Err` the run loop turns into a software-interrupt delivery. The IVT/IDT
    /// gate is checked here first: a fault of those checks (vector beyond the table limit, bad
    /// gate type, gate DPL < CPL, gate not present) is a fault of the INT instruction itself and
    /// is returned as an ordinary exception, so the saved RIP is the INT's (Intel SDM Vol. 2A
    /// INT n).
    pub fn soft_int(&mut self, v: u8) -> Exception {
        let gate = if self.s.cr0 & cr::CR0_PE == 0 {
            if v as u64 * 4 + 3 > self.s.idtr.limit as u64 {
                Err(Exception::gp(v as u32 * 8 + 2))
            } else {
                Ok(())
            }
        } else if self.s.rflags & rf::VM == 0 {
            self.idt_gate(v, IntSource::Software).map(|_| ())
        } else {
            Ok(())
        };
        match gate {
            Err(e) => e,
            Ok(()) => Exception { vector: v, error_code: Some(SOFT_INT_FLAG) },
        }
    }

    /// Read and check the protected-mode IDT gate for vector `v`: returns (low quadword, high
    /// quadword in IA-32e mode, 32-bit gate, trap gate). Task gates are not implemented (#GP).
    fn idt_gate(&mut self, v: u8, src: IntSource) -> Res<(u64, u64, bool, bool)> {
        let ext = if src == IntSource::Software { 0 } else { 1 };
        let long = self.s.long_mode();
        let gsize: u64 = if long { 16 } else { 8 };
        let idt_err = (v as u32) * 8 + 2 + ext;
        if v as u64 * gsize + gsize - 1 > self.s.idtr.limit as u64 {
            return Err(Exception::gp(idt_err));
        }
        let gla = self.s.idtr.base + v as u64 * gsize;
        let g = self.read_lin_as(gla, 8, false)?;
        let ghi = if long { self.read_lin_as(gla + 8, 8, false)? } else { 0 };
        let gtype = ((g >> 40) & 0x1F) as u8;
        let gdpl = ((g >> 45) & 3) as u8;
        let (gate32, trap) = match (long, gtype) {
            (true, 0x0E) => (true, false),
            (true, 0x0F) => (true, true),
            (false, 0x0E) => (true, false),
            (false, 0x0F) => (true, true),
            (false, 0x06) => (false, false),
            (false, 0x07) => (false, true),
            _ => return Err(Exception::gp(idt_err)), // task gates are not implemented
        };
        if src == IntSource::Software && gdpl < self.s.cpl() {
            return Err(Exception::gp(idt_err));
        }
        if g & (1 << 47) == 0 {
            return Err(Exception::with_code(vec::NP, idt_err));
        }
        Ok((g, ghi, gate32, trap))
    }

    fn desc_table(&self, sel: u16) -> (u64, u32) {
        if sel & 4 != 0 {
            (self.s.ldtr.base, if self.s.ldtr.attr & seg::P != 0 { self.s.ldtr.limit } else { 0 })
        } else {
            (self.s.gdtr.base, self.s.gdtr.limit as u32)
        }
    }

    /// Read the 8-byte descriptor for `sel`; `Err(#GP(sel))` (or `code` with the selector) if
    /// it lies outside its table.
    pub fn read_descriptor(&mut self, sel: u16, fault_vec: u8) -> Res<u64> {
        let (base, limit) = self.desc_table(sel);
        let off = (sel & !7) as u64;
        if sel & 4 != 0 && self.s.ldtr.attr & seg::P == 0 || off + 7 > limit as u64 {
            return Err(Exception::with_code(fault_vec, (sel & !3) as u32));
        }
        self.read_lin_as(base + off, 8, false)
    }

    /// The high 8 bytes of a 16-byte system descriptor in IA-32e mode.
    fn read_descriptor_high(&mut self, sel: u16) -> Res<u64> {
        let (base, limit) = self.desc_table(sel);
        let off = (sel & !7) as u64 + 8;
        if off + 7 > limit as u64 {
            return Err(Exception::gp((sel & !3) as u32));
        }
        self.read_lin_as(base + off, 8, false)
    }

    fn set_accessed(&mut self, sel: u16, d: u64) -> Res<()> {
        if d & (1 << 40) == 0 {
            let (base, _) = self.desc_table(sel);
            let la = base + (sel & !7) as u64 + 5;
            let b = ((d >> 40) as u8) | 1;
            self.write_lin_as(la, 1, b as u64, false)?;
        }
        Ok(())
    }

    fn in_protected(&self) -> bool {
        self.s.cr0 & cr::CR0_PE != 0 && self.s.rflags & rf::VM == 0
    }

    /// Load a data or stack segment register (MOV/POP Sreg, LDS...), Intel SDM Vol. 2B MOV.
    pub fn load_seg(&mut self, sr: usize, sel: u16) -> Res<()> {
        if !self.in_protected() {
            let mut s = Segment::real(sel);
            // Real mode keeps the cached limit and attributes ("unreal mode"), only base and
            // selector change; virtual-8086 mode reloads them.
            if self.s.rflags & rf::VM == 0 {
                s.limit = self.s.seg[sr].limit;
                s.attr = self.s.seg[sr].attr | seg::P;
            }
            self.s.seg[sr] = s;
            self.after_seg_load(sr);
            return Ok(());
        }
        let cpl = self.s.cpl();
        let rpl = (sel & 3) as u8;
        if sel & !3 == 0 {
            if sr == sreg::SS && !(self.bits == 64 && cpl != 3 && rpl == cpl) {
                return Err(Exception::gp(0));
            }
            // A null selector marks the register unusable (P = 0).
            self.s.seg[sr] = Segment { selector: sel, attr: 0, limit: 0, base: 0 };
            return Ok(());
        }
        let d = self.read_descriptor(sel, vec::GP)?;
        let s = Segment::from_descriptor(sel, d);
        let gp = Exception::gp((sel & !3) as u32);
        if s.attr & seg::S == 0 {
            return Err(gp);
        }
        let dpl = s.dpl();
        if sr == sreg::SS {
            if rpl != cpl || dpl != cpl || s.attr & seg::CODE != 0 || s.attr & seg::RW == 0 {
                return Err(gp);
            }
            if s.attr & seg::P == 0 {
                return Err(Exception::with_code(vec::SS, (sel & !3) as u32));
            }
        } else {
            if s.attr & seg::CODE != 0 && s.attr & seg::RW == 0 {
                return Err(gp);
            }
            let conforming = s.attr & (seg::CODE | seg::DC) == (seg::CODE | seg::DC);
            if !conforming && dpl < cpl.max(rpl) {
                return Err(gp);
            }
            if s.attr & seg::P == 0 {
                return Err(Exception::with_code(vec::NP, (sel & !3) as u32));
            }
        }
        self.set_accessed(sel, d)?;
        let mut s = s;
        s.attr |= seg::ACCESSED;
        if self.bits == 64 && sr >= sreg::FS {
            // In 64-bit mode the FS/GS base comes from the descriptor only in its low 32 bits.
            s.base &= 0xFFFF_FFFF;
        }
        self.s.seg[sr] = s;
        self.after_seg_load(sr);
        Ok(())
    }

    fn after_seg_load(&mut self, sr: usize) {
        if sr == sreg::CS || sr == sreg::SS {
            self.bits = self.s.code_bits();
            self.end_block = true;
        }
    }

    /// Load CS for a far transfer to `sel`:`off` (checks per Intel SDM Vol. 2A JMP/CALL);
    /// returns the new CPL. Call gates and task switches are not implemented (#GP).
    fn load_cs_far(&mut self, sel: u16, new_cpl_for_ret: Option<u8>) -> Res<Segment> {
        if sel & !3 == 0 {
            return Err(Exception::gp(0));
        }
        let d = self.read_descriptor(sel, vec::GP)?;
        let s = Segment::from_descriptor(sel, d);
        let gp = Exception::gp((sel & !3) as u32);
        if s.attr & seg::S == 0 || s.attr & seg::CODE == 0 {
            return Err(gp);
        }
        let cpl = self.s.cpl();
        let rpl = (sel & 3) as u8;
        let dpl = s.dpl();
        let conforming = s.attr & seg::DC != 0;
        match new_cpl_for_ret {
            None => {
                if conforming {
                    if dpl > cpl {
                        return Err(gp);
                    }
                } else if rpl > cpl || dpl != cpl {
                    return Err(gp);
                }
            }
            Some(_) => {
                // Return: RPL is the new CPL and must not be more privileged.
                if rpl < cpl || (conforming && dpl > rpl) || (!conforming && dpl != rpl) {
                    return Err(gp);
                }
            }
        }
        if s.attr & seg::P == 0 {
            return Err(Exception::with_code(vec::NP, (sel & !3) as u32));
        }
        if self.s.long_mode() && s.attr & seg::L != 0 && s.attr & seg::DB != 0 {
            return Err(gp);
        }
        self.set_accessed(sel, d)?;
        let mut s = s;
        s.attr |= seg::ACCESSED;
        let new_cpl = match new_cpl_for_ret {
            Some(r) => r,
            None => cpl,
        };
        s.selector = (sel & !3) | new_cpl as u16;
        Ok(s)
    }

    fn set_cs(&mut self, s: Segment) {
        self.s.seg[sreg::CS] = s;
        self.bits = self.s.code_bits();
        self.end_block = true;
    }

    /// JMP ptr16:16/32 and JMP m16:16/32/64.
    pub fn far_jump(&mut self, sel: u16, off: u64) -> Res<()> {
        if !self.in_protected() {
            self.s.seg[sreg::CS] = Segment { attr: self.s.seg[sreg::CS].attr, limit: self.s.seg[sreg::CS].limit, ..Segment::real(sel) };
            self.set_cs(self.s.seg[sreg::CS]);
            self.s.rip = off & if self.bits == 32 { 0xFFFF_FFFF } else { 0xFFFF };
            return Ok(());
        }
        let s = self.load_cs_far(sel, None)?;
        self.check_far_target(&s, off)?;
        self.set_cs(s);
        self.s.rip = off;
        Ok(())
    }

    /// The new RIP of a far transfer must lie within the CS limit, or be canonical when the
    /// target is 64-bit code (Intel SDM Vol. 2A JMP, CALL, RET, IRET): else #GP(0).
    fn check_far_target(&self, s: &Segment, off: u64) -> Res<()> {
        let ok = if self.code_bits_for(s) == 64 { crate::mmu::canonical(off) } else { off <= s.limit as u64 };
        if ok {
            Ok(())
        } else {
            Err(Exception::gp(0))
        }
    }

    fn code_bits_for(&self, s: &Segment) -> u32 {
        if self.s.long_mode() && s.attr & seg::L != 0 {
            64
        } else if s.attr & seg::DB != 0 {
            32
        } else {
            16
        }
    }

    /// CALL ptr16:16/32 and CALL m16:16/32/64 (same privilege only).
    pub fn far_call(&mut self, sel: u16, off: u64, size: u32) -> Res<()> {
        let old_cs = self.s.seg[sreg::CS].selector as u64;
        let ret = self.s.rip;
        if !self.in_protected() {
            self.push(old_cs, size)?;
            self.push(ret, size)?;
            let mut cs = Segment::real(sel);
            cs.attr = self.s.seg[sreg::CS].attr;
            cs.limit = self.s.seg[sreg::CS].limit;
            self.set_cs(cs);
            self.s.rip = off & mask(size);
            return Ok(());
        }
        let s = self.load_cs_far(sel, None)?;
        self.check_far_target(&s, off & mask(size))?;
        let sp = self.s.regs[4];
        if let Err(e) = self.push(old_cs, size).and_then(|_| self.push(ret, size)) {
            self.s.regs[4] = sp;
            return Err(e);
        }
        self.set_cs(s);
        self.s.rip = off & mask(size);
        Ok(())
    }

    /// RET far (RETF), with `extra` bytes of parameters released.
    pub fn far_ret(&mut self, size: u32, extra: u64) -> Res<()> {
        let off = self.peek(0, size)?;
        let sel = self.peek(size as u64, size)? as u16;
        if !self.in_protected() {
            let mut cs = Segment::real(sel);
            cs.attr = self.s.seg[sreg::CS].attr;
            cs.limit = self.s.seg[sreg::CS].limit;
            self.set_cs(cs);
            self.s.rip = off;
            self.adjust_sp(2 * size as u64 + extra);
            return Ok(());
        }
        let cpl = self.s.cpl();
        let rpl = (sel & 3) as u8;
        let s = self.load_cs_far(sel, Some(rpl))?;
        self.check_far_target(&s, off)?;
        if rpl > cpl {
            let sp = self.peek(2 * size as u64 + extra, size)?;
            let ss = self.peek(3 * size as u64 + extra, size)? as u16;
            self.set_cs(s);
            self.load_ss_for_return(ss, rpl)?;
            self.s.regs[4] = sp.wrapping_add(extra) & mask(size.max(self.s.stack_bits() / 8));
            self.null_outer_segments(rpl);
        } else {
            self.set_cs(s);
            self.adjust_sp(2 * size as u64 + extra);
        }
        self.s.rip = off;
        Ok(())
    }

    fn load_ss_for_return(&mut self, ss: u16, rpl: u8) -> Res<()> {
        if ss & !3 == 0 && self.bits == 64 && rpl != 3 {
            self.s.seg[sreg::SS] = Segment { selector: ss, attr: seg::P | seg::S | seg::RW | seg::DB | ((rpl as u16) << 5), limit: 0xFFFF_FFFF, base: 0 };
            return Ok(());
        }
        if ss & !3 == 0 {
            return Err(Exception::gp(0));
        }
        let d = self.read_descriptor(ss, vec::GP)?;
        let s = Segment::from_descriptor(ss, d);
        if (ss & 3) as u8 != rpl || s.dpl() != rpl || s.attr & seg::S == 0 || s.attr & seg::CODE != 0 || s.attr & seg::RW == 0 {
            return Err(Exception::gp((ss & !3) as u32));
        }
        if s.attr & seg::P == 0 {
            return Err(Exception::with_code(vec::SS, (ss & !3) as u32));
        }
        self.set_accessed(ss, d)?;
        self.s.seg[sreg::SS] = Segment { attr: s.attr | seg::ACCESSED, ..s };
        Ok(())
    }

    /// On a return to an outer privilege level, data segment registers the new CPL may not use
    /// become null (Intel SDM Vol. 2A RET, IRET).
    fn null_outer_segments(&mut self, new_cpl: u8) {
        for sr in [sreg::ES, sreg::DS, sreg::FS, sreg::GS] {
            let s = self.s.seg[sr];
            let conforming_code = s.attr & (seg::CODE | seg::DC) == (seg::CODE | seg::DC);
            if s.attr & seg::P != 0 && !conforming_code && s.dpl() < new_cpl {
                self.s.seg[sr] = Segment { selector: 0, attr: 0, limit: 0, base: if sr >= sreg::FS { s.base } else { 0 } };
            }
        }
    }

    /// IRET/IRETD/IRETQ (Intel SDM Vol. 2A IRET). Task returns (NT = 1) and returns to
    /// virtual-8086 mode are not implemented and raise #GP(0).
    pub fn iret(&mut self, size: u32) -> Res<()> {
        self.end_block = true;
        if !self.in_protected() {
            if self.s.rflags & rf::VM != 0 && self.iopl() < 3 {
                return Err(Exception::gp(0));
            }
            let ip = self.peek(0, size)?;
            let cs = self.peek(size as u64, size)? as u16;
            let fl = self.peek(2 * size as u64, size)?;
            if ip > self.s.seg[sreg::CS].limit as u64 && self.s.rflags & rf::VM == 0 && size == 2 {
                return Err(Exception::gp(0));
            }
            self.adjust_sp(3 * size as u64);
            let mut c = Segment::real(cs);
            c.attr = self.s.seg[sreg::CS].attr;
            c.limit = self.s.seg[sreg::CS].limit;
            self.set_cs(c);
            self.s.rip = ip;
            let m = if size == 2 { 0xFFFF } else { 0x257FD5 } & !(rf::VM | rf::VIP | rf::VIF);
            self.s.set_rflags_masked(fl, m);
            return Ok(());
        }
        if self.s.rflags & rf::NT != 0 {
            if self.s.long_mode() {
                return Err(Exception::gp(0));
            }
            return Err(Exception::gp(0));
        }
        let ip = self.peek(0, size)?;
        let cs = self.peek(size as u64, size)? as u16;
        let fl = self.peek(2 * size as u64, size)?;
        let cpl = self.s.cpl();
        if fl & rf::VM != 0 && cpl == 0 && !self.s.long_mode() && size == 4 {
            return Err(Exception::gp(0));
        }
        let rpl = (cs & 3) as u8;
        let s = self.load_cs_far(cs, Some(rpl))?;
        let to_outer = rpl > cpl;
        let pops_ss = to_outer || self.bits == 64;
        let (sp, ss) = if pops_ss {
            (self.peek(3 * size as u64, size)?, self.peek(4 * size as u64, size)? as u16)
        } else {
            (0, 0)
        };
        // Flags that may change depend on the CPL before the return.
        let mut m = rf::STATUS | rf::TF | rf::DF | rf::NT | rf::RF | rf::AC | rf::ID;
        if cpl <= self.iopl() {
            m |= rf::IF;
        }
        if cpl == 0 {
            m |= rf::IOPL | rf::VIF | rf::VIP;
        }
        if size == 2 {
            m &= 0xFFFF;
        }
        self.check_far_target(&s, ip)?;
        if pops_ss {
            let saved = (self.s.seg[sreg::CS], self.bits);
            self.set_cs(s);
            if let Err(e) = self.load_ss_for_return(ss, rpl) {
                self.s.seg[sreg::CS] = saved.0;
                self.bits = saved.1;
                return Err(e);
            }
            self.s.regs[4] = if self.s.stack_bits() == 64 { sp } else { sp & mask(size) };
            if to_outer {
                self.null_outer_segments(rpl);
            }
        } else {
            self.set_cs(s);
            self.adjust_sp(3 * size as u64);
        }
        self.s.rip = ip;
        self.s.set_rflags_masked(fl, m);
        Ok(())
    }

    /// Read a far pointer operand m16:16/32/64 as (selector, offset).
    pub fn read_far_ptr(&mut self, i: &Instruction) -> Res<(u16, u64)> {
        let total = i.memory_size().size() as u32;
        let osz = total - 2;
        let la = self.mem_lin(i, total, false)?;
        let off = self.read_lin(la, osz)?;
        let sel = self.read_lin(la + osz as u64, 2)? as u16;
        Ok((sel, off))
    }

    /// Deliver an interrupt or exception through the IVT or IDT (Intel SDM Vol. 3A §6.12,
    /// §6.14; real mode §20.1.4). `rip` is the return address to save.
    pub fn deliver(&mut self, v: u8, code: Option<u32>, src: IntSource) -> Res<()> {
        self.end_block = true;
        self.s.halted = false;
        let ext = if src == IntSource::Software { 0 } else { 1 };
        if self.s.cr0 & cr::CR0_PE == 0 {
            let off = v as u64 * 4;
            if off + 3 > self.s.idtr.limit as u64 {
                return Err(Exception::gp(off as u32 * 2 + 2 + ext));
            }
            let ent = self.read_lin_as(self.s.idtr.base + off, 4, false)?;
            let fl = self.s.get_rflags();
            let cs = self.s.seg[sreg::CS].selector as u64;
            let ip = self.s.rip;
            self.push(fl, 2)?;
            self.push(cs, 2)?;
            self.push(ip, 2)?;
            self.s.rflags &= !(rf::IF | rf::TF | rf::AC | rf::RF);
            let mut c = Segment::real((ent >> 16) as u16);
            c.attr = self.s.seg[sreg::CS].attr;
            c.limit = self.s.seg[sreg::CS].limit;
            self.set_cs(c);
            self.s.rip = ent & 0xFFFF;
            return Ok(());
        }
        if self.s.rflags & rf::VM != 0 {
            // Virtual-8086 mode interrupts are not implemented.
            return Err(Exception::gp(0));
        }
        let long = self.s.long_mode();
        let (g, ghi, gate32, trap) = self.idt_gate(v, src)?;
        let cpl = self.s.cpl();
        let sel = (g >> 16) as u16;
        let mut off = (g & 0xFFFF) | ((g >> 32) & 0xFFFF_0000);
        if long {
            off |= (ghi & 0xFFFF_FFFF) << 32;
        }
        if sel & !3 == 0 {
            return Err(Exception::gp(ext));
        }
        let d = self.read_descriptor(sel, vec::GP)?;
        let mut cs = Segment::from_descriptor(sel, d);
        let selerr = (sel & !3) as u32 + ext;
        if cs.attr & seg::S == 0 || cs.attr & seg::CODE == 0 || cs.dpl() > cpl {
            return Err(Exception::gp(selerr));
        }
        if cs.attr & seg::P == 0 {
            return Err(Exception::with_code(vec::NP, selerr));
        }
        if long && (cs.attr & seg::L == 0 || cs.attr & seg::DB != 0) {
            return Err(Exception::gp(selerr));
        }
        let conforming = cs.attr & seg::DC != 0;
        let new_cpl = if conforming { cpl } else { cs.dpl() };
        let old_ss = self.s.seg[sreg::SS];
        let old_rsp = self.s.regs[4];
        let old_cs = self.s.seg[sreg::CS];
        let old_flags = self.s.get_rflags();
        let old_rip = self.s.rip;
        let user_stack = new_cpl == 3;
        if long {
            let ist = (g >> 32) & 7;
            let mut rsp = if new_cpl < cpl {
                self.read_lin_as(self.s.tr.base + 4 + new_cpl as u64 * 8, 8, false)?
            } else {
                old_rsp
            };
            if ist != 0 {
                rsp = self.read_lin_as(self.s.tr.base + 0x24 + (ist - 1) * 8, 8, false)?;
            }
            rsp &= !0xF;
            let mut frame = vec![old_ss.selector as u64, old_rsp, old_flags, old_cs.selector as u64, old_rip];
            if let Some(c) = code {
                frame.push(c as u64);
            }
            for val in frame {
                rsp = rsp.wrapping_sub(8);
                if !crate::mmu::canonical(rsp) {
                    return Err(Exception::with_code(vec::SS, 0));
                }
                self.write_lin_as(rsp, 8, val, user_stack)?;
            }
            if new_cpl < cpl {
                self.s.seg[sreg::SS] = Segment { selector: new_cpl as u16, attr: seg::P | seg::S | seg::RW | seg::DB | ((new_cpl as u16) << 5), limit: 0xFFFF_FFFF, base: 0 };
            }
            self.s.regs[4] = rsp;
        } else {
            let psize: u32 = if gate32 { 4 } else { 2 };
            let (mut sp, ss_seg, sp_mask) = if new_cpl < cpl {
                // Inner stack from the TSS (32-bit TSS: ESPn at 4 + 8n, SSn at 8 + 8n).
                let t32 = self.s.tr.attr & 0x8 != 0;
                let (esp, ss) = if t32 {
                    let base = self.s.tr.base + 4 + new_cpl as u64 * 8;
                    (self.read_lin_as(base, 4, false)?, self.read_lin_as(base + 4, 2, false)? as u16)
                } else {
                    let base = self.s.tr.base + 2 + new_cpl as u64 * 4;
                    (self.read_lin_as(base, 2, false)?, self.read_lin_as(base + 2, 2, false)? as u16)
                };
                if ss & !3 == 0 {
                    return Err(Exception::with_code(vec::TS, ext));
                }
                let dd = self.read_descriptor(ss, vec::TS)?;
                let sss = Segment::from_descriptor(ss, dd);
                if (ss & 3) as u8 != new_cpl || sss.dpl() != new_cpl || sss.attr & seg::CODE != 0 || sss.attr & seg::RW == 0 || sss.attr & seg::S == 0 {
                    return Err(Exception::with_code(vec::TS, (ss & !3) as u32 + ext));
                }
                if sss.attr & seg::P == 0 {
                    return Err(Exception::with_code(vec::SS, (ss & !3) as u32 + ext));
                }
                let m = if sss.attr & seg::DB != 0 { 0xFFFF_FFFF } else { 0xFFFF };
                (esp & m, sss, m)
            } else {
                let m = if old_ss.attr & seg::DB != 0 { 0xFFFF_FFFFu64 } else { 0xFFFF };
                (old_rsp & m, old_ss, m)
            };
            let mut frame = Vec::with_capacity(6);
            if new_cpl < cpl {
                frame.push(old_ss.selector as u64);
                frame.push(old_rsp);
            }
            frame.extend_from_slice(&[old_flags, old_cs.selector as u64, old_rip]);
            if let Some(c) = code {
                frame.push(c as u64);
            }
            for val in frame {
                sp = sp.wrapping_sub(psize as u64) & sp_mask;
                if sp.wrapping_add(psize as u64 - 1) > ss_seg.limit as u64 && ss_seg.attr & seg::DC == 0 {
                    return Err(Exception::with_code(vec::SS, 0));
                }
                let la = (ss_seg.base + sp) & 0xFFFF_FFFF;
                self.write_lin_as(la, psize, val & mask(psize), user_stack)?;
            }
            if new_cpl < cpl {
                self.s.seg[sreg::SS] = ss_seg;
            }
            self.s.regs[4] = (self.s.regs[4] & !sp_mask) | sp;
        }
        self.set_accessed(sel, d)?;
        cs.attr |= seg::ACCESSED;
        cs.selector = (sel & !3) | new_cpl as u16;
        self.set_cs(cs);
        self.s.rip = off;
        self.s.rflags &= !(rf::TF | rf::NT | rf::RF | rf::VM);
        if !trap {
            self.s.rflags &= !rf::IF;
        }
        Ok(())
    }

    /// Check IN/OUT permission: CPL ≤ IOPL, else the TSS I/O permission bitmap (Intel SDM
    /// Vol. 1 §19.5.2).
    pub fn check_io(&mut self, port: u16, size: u32) -> Res<()> {
        if !self.in_protected() && self.s.rflags & rf::VM == 0 {
            return Ok(());
        }
        if self.s.rflags & rf::VM == 0 && self.s.cpl() <= self.iopl() {
            return Ok(());
        }
        let tr = self.s.tr;
        if tr.attr & 0xF != 0x9 && tr.attr & 0xF != 0xB || tr.limit < 0x67 {
            return Err(Exception::gp(0));
        }
        let base = self.read_lin_as(tr.base + 0x66, 2, false)? as u64;
        let byte = base + (port as u64 / 8);
        if byte + 1 > tr.limit as u64 {
            return Err(Exception::gp(0));
        }
        let bits = self.read_lin_as(tr.base + byte, 2, false)?;
        let m = ((1u64 << size) - 1) << (port & 7);
        if bits & m != 0 {
            return Err(Exception::gp(0));
        }
        Ok(())
    }

    fn cr_fault_if_not_cpl0(&self) -> Res<()> {
        if self.s.cpl() != 0 {
            return Err(Exception::gp(0));
        }
        Ok(())
    }

    /// MOV to CR0/CR2/CR3/CR4/CR8 (Intel SDM Vol. 3A §2.5, Vol. 2B MOV—Move to/from CR).
    pub fn mov_to_cr(&mut self, r: Register, v: u64) -> Res<()> {
        self.cr_fault_if_not_cpl0()?;
        self.end_block = true;
        match r {
            Register::CR0 => self.write_cr0(v),
            Register::CR2 => {
                self.s.cr2 = v;
                Ok(())
            }
            Register::CR3 => {
                if self.s.long_mode() && v >> crate::cpuid::PHYS_BITS != 0 {
                    return Err(Exception::gp(0));
                }
                self.s.cr3 = v;
                self.s.tlb.flush_nonglobal();
                Ok(())
            }
            Register::CR4 => {
                // VME and PVI are not supported (no virtual-8086 mode extensions).
                let allowed = cr::CR4_TSD | cr::CR4_DE | cr::CR4_PSE | cr::CR4_PAE | cr::CR4_MCE | cr::CR4_PGE | cr::CR4_PCE | cr::CR4_OSFXSR | cr::CR4_OSXMMEXCPT;
                if v & !allowed != 0 || (self.s.long_mode() && v & cr::CR4_PAE == 0) {
                    return Err(Exception::gp(0));
                }
                self.s.cr4 = v;
                self.s.tlb.flush_all();
                Ok(())
            }
            Register::CR8 => {
                if v >> 4 != 0 {
                    return Err(Exception::gp(0));
                }
                self.s.cr8 = v;
                Ok(())
            }
            _ => Err(Exception::ud()),
        }
    }

    /// Write CR0, activating or leaving IA-32e mode as EFER.LME and CR0.PG say.
    pub fn write_cr0(&mut self, v: u64) -> Res<()> {
        let v = (v | cr::CR0_ET) & 0xFFFF_FFFF;
        if v >> 32 != 0 || (v & cr::CR0_PG != 0 && v & cr::CR0_PE == 0) || (v & cr::CR0_NW != 0 && v & cr::CR0_CD == 0) {
            return Err(Exception::gp(0));
        }
        let was_pg = self.s.cr0 & cr::CR0_PG != 0;
        let pg = v & cr::CR0_PG != 0;
        if pg && !was_pg && self.s.efer & cr::EFER_LME != 0 {
            if self.s.cr4 & cr::CR4_PAE == 0 {
                return Err(Exception::gp(0));
            }
            self.s.efer |= cr::EFER_LMA;
        }
        if !pg && was_pg && self.s.long_mode() {
            if self.bits == 64 {
                return Err(Exception::gp(0));
            }
            self.s.efer &= !cr::EFER_LMA;
        }
        self.s.cr0 = v;
        self.s.tlb.flush_all();
        self.bits = self.s.code_bits();
        self.end_block = true;
        Ok(())
    }

    pub(crate) fn mov_from_cr(&mut self, r: Register) -> Res<u64> {
        self.cr_fault_if_not_cpl0()?;
        Ok(match r {
            Register::CR0 => self.s.cr0,
            Register::CR2 => self.s.cr2,
            Register::CR3 => self.s.cr3,
            Register::CR4 => self.s.cr4,
            Register::CR8 => self.s.cr8,
            _ => return Err(Exception::ud()),
        })
    }

    fn dr_index(r: Register) -> usize {
        (r as usize - Register::DR0 as usize).min(7)
    }

    /// MOV to DRn (Intel SDM Vol. 3B §18.2). A new breakpoint address or DR7 re-arms the
    /// watched ranges and drops TLB entries of pages that are now watched; the block ends so
    /// the run loop sees whether debug checks are needed.
    pub fn mov_to_dr(&mut self, r: Register, v: u64) -> Res<()> {
        self.cr_fault_if_not_cpl0()?;
        let n = Self::dr_index(r);
        match n {
            0..=3 => self.s.dr[n] = v,
            4 | 6 => self.s.dr[6] = (v & 0xE00F) | 0xFFFF_0FF0,
            5 | 7 => self.s.dr[7] = (v & 0xFFFF_2BFF) | 0x400,
            _ => return Err(Exception::ud()),
        }
        if n != 4 && n != 6 {
            self.debug.rebuild(self.s);
            self.s.tlb.flush_all();
            self.end_block = true;
        }
        Ok(())
    }

    pub(crate) fn mov_from_dr(&mut self, r: Register) -> Res<u64> {
        self.cr_fault_if_not_cpl0()?;
        let n = Self::dr_index(r);
        Ok(match n {
            0..=3 => self.s.dr[n],
            4 | 6 => self.s.dr[6],
            _ => self.s.dr[7],
        })
    }

    /// System and less common instructions; anything unknown ends here as #UD.
    pub fn exec_system(&mut self, i: &Instruction) -> Res<()> {
        use Mnemonic as M;
        let m = i.mnemonic();
        match m {
            M::In => {
                let size = self.op_size(i, 0);
                let port = if i.op1_kind() == OpKind::Register { self.s.regs[2] as u16 } else { i.immediate(1) as u16 };
                self.check_io(port, size)?;
                let v = self.bus.pio_read(self.s.icount, port, size as u8) as u64;
                self.io_touched = true;
                self.trace_io("in", port as u64, size, v);
                self.set_reg_n(0, size, v);
                Ok(())
            }
            M::Out => {
                let size = self.op_size(i, 1);
                let port = if i.op0_kind() == OpKind::Register { self.s.regs[2] as u16 } else { i.immediate(0) as u16 };
                self.check_io(port, size)?;
                let v = self.s.regs[0] & mask(size);
                self.bus.pio_write(self.s.icount, port, size as u8, v as u32);
                self.io_touched = true;
                self.trace_io("out", port as u64, size, v);
                Ok(())
            }
            M::Cli | M::Sti => {
                if self.in_protected() && self.s.cpl() > self.iopl() || self.s.rflags & rf::VM != 0 && self.iopl() < 3 {
                    return Err(Exception::gp(0));
                }
                if m == M::Cli {
                    self.s.rflags &= !rf::IF;
                } else if self.s.rflags & rf::IF == 0 {
                    self.s.rflags |= rf::IF;
                    self.s.irq_inhibit = true;
                }
                Ok(())
            }
            M::Hlt => {
                self.cr_fault_if_not_cpl0()?;
                self.s.halted = true;
                self.end_block = true;
                Ok(())
            }
            M::Cpuid => {
                let (a, b, c, d) = crate::cpuid::cpuid(self.s.regs[0] as u32, self.s.regs[1] as u32);
                self.s.regs[0] = a as u64;
                self.s.regs[3] = b as u64;
                self.s.regs[1] = c as u64;
                self.s.regs[2] = d as u64;
                Ok(())
            }
            M::Rdtsc => {
                if self.s.cr4 & cr::CR4_TSD != 0 && self.s.cpl() != 0 {
                    return Err(Exception::gp(0));
                }
                let t = self.tsc();
                self.s.regs[0] = t & 0xFFFF_FFFF;
                self.s.regs[2] = t >> 32;
                Ok(())
            }
            M::Rdmsr => {
                self.cr_fault_if_not_cpl0()?;
                let v = self.rdmsr(self.s.regs[1] as u32)?;
                self.s.regs[0] = v & 0xFFFF_FFFF;
                self.s.regs[2] = v >> 32;
                Ok(())
            }
            M::Wrmsr => {
                self.cr_fault_if_not_cpl0()?;
                let v = (self.s.regs[0] & 0xFFFF_FFFF) | (self.s.regs[2] << 32);
                self.wrmsr(self.s.regs[1] as u32, v)?;
                self.end_block = true;
                Ok(())
            }
            M::Lgdt | M::Lidt => {
                self.cr_fault_if_not_cpl0()?;
                let la = self.mem_lin(i, 6, false)?;
                let limit = self.read_lin(la, 2)? as u16;
                let base = if self.bits == 64 {
                    self.read_lin(la + 2, 8)?
                } else {
                    let b = self.read_lin(la + 2, 4)?;
                    if i.code_size() == iced_x86::CodeSize::Code16 && self.op16(i) { b & 0xFF_FFFF } else { b }
                };
                if m == M::Lgdt {
                    self.s.gdtr = crate::state::TableReg { base, limit };
                } else {
                    self.s.idtr = crate::state::TableReg { base, limit };
                }
                Ok(())
            }
            M::Sgdt | M::Sidt => {
                let t = if m == M::Sgdt { self.s.gdtr } else { self.s.idtr };
                let la = self.mem_lin(i, 6, true)?;
                self.write_lin(la, 2, t.limit as u64)?;
                if self.bits == 64 {
                    self.write_lin(la + 2, 8, t.base)
                } else {
                    self.write_lin(la + 2, 4, t.base & 0xFFFF_FFFF)
                }
            }
            M::Lldt | M::Ltr => {
                if !self.in_protected() {
                    return Err(Exception::ud());
                }
                self.cr_fault_if_not_cpl0()?;
                let sel = self.read_op(i, 0, 2)? as u16;
                self.load_system_seg(sel, m == M::Ltr)
            }
            M::Sldt | M::Str => {
                if !self.in_protected() {
                    return Err(Exception::ud());
                }
                let v = if m == M::Sldt { self.s.ldtr.selector } else { self.s.tr.selector } as u64;
                let size = if i.op0_kind() == OpKind::Register { self.op_size(i, 0) } else { 2 };
                self.write_op(i, 0, size, v)
            }
            M::Smsw => {
                let size = if i.op0_kind() == OpKind::Register { self.op_size(i, 0) } else { 2 };
                self.write_op(i, 0, size, self.s.cr0 & mask(size))
            }
            M::Lmsw => {
                self.cr_fault_if_not_cpl0()?;
                let v = self.read_op(i, 0, 2)?;
                // LMSW changes PE, MP, EM, TS; it can set PE but not clear it.
                let new = (self.s.cr0 & !0xE) | (v & 0xE) | ((self.s.cr0 | v) & 1);
                self.write_cr0(new)
            }
            M::Clts => {
                self.cr_fault_if_not_cpl0()?;
                self.s.cr0 &= !cr::CR0_TS;
                Ok(())
            }
            M::Invlpg => {
                self.cr_fault_if_not_cpl0()?;
                let ea = self.ea(i);
                let la = if self.bits == 64 {
                    let sr = sreg_index(i.memory_segment());
                    if sr >= sreg::FS { ea.wrapping_add(self.s.seg[sr].base) } else { ea }
                } else {
                    (self.s.seg[sreg_index(i.memory_segment())].base + ea) & 0xFFFF_FFFF
                };
                self.s.tlb.flush_page(la);
                self.end_block = true;
                Ok(())
            }
            M::Invd | M::Wbinvd => self.cr_fault_if_not_cpl0(),
            M::Swapgs => {
                if self.bits != 64 {
                    return Err(Exception::ud());
                }
                self.cr_fault_if_not_cpl0()?;
                std::mem::swap(&mut self.s.seg[sreg::GS].base, &mut self.s.msr.kernel_gs_base);
                Ok(())
            }
            M::Syscall => self.syscall(),
            M::Sysret | M::Sysretq => self.sysret(m == M::Sysretq || i.code() == iced_x86::Code::Sysretq),
            M::Lar | M::Lsl => self.lar_lsl(i, m == M::Lar),
            M::Verr | M::Verw => self.verr_verw(i, m == M::Verw),
            M::Arpl => {
                if self.bits == 64 || !self.in_protected() {
                    return Err(Exception::ud());
                }
                let d = self.read_op(i, 0, 2)?;
                let s = self.get_reg(i.op1_register());
                let f = self.s.status_flags() & !rf::ZF;
                if d & 3 < s & 3 {
                    self.write_op(i, 0, 2, (d & !3) | (s & 3))?;
                    self.s.set_status_flags(f | rf::ZF);
                } else {
                    self.s.set_status_flags(f);
                }
                Ok(())
            }
            M::Lds | M::Les | M::Lfs | M::Lgs | M::Lss => {
                let (sel, off) = self.read_far_ptr_op1(i)?;
                let sr = match m {
                    M::Lds => sreg::DS,
                    M::Les => sreg::ES,
                    M::Lfs => sreg::FS,
                    M::Lgs => sreg::GS,
                    _ => sreg::SS,
                };
                self.load_seg(sr, sel)?;
                self.set_reg(i.op0_register(), off);
                Ok(())
            }
            M::Rdpmc => Err(Exception::gp(0)),
            _ => self.exec_fp(i),
        }
    }

    fn op16(&self, i: &Instruction) -> bool {
        i.op_count() > 0 && i.memory_size() == iced_x86::MemorySize::Fword6
    }

    fn read_far_ptr_op1(&mut self, i: &Instruction) -> Res<(u16, u64)> {
        let total = i.memory_size().size() as u32;
        let osz = total - 2;
        let la = self.mem_lin(i, total, false)?;
        let off = self.read_lin(la, osz)?;
        let sel = self.read_lin(la + osz as u64, 2)? as u16;
        Ok((sel, off))
    }

    fn load_system_seg(&mut self, sel: u16, tr: bool) -> Res<()> {
        if sel & !3 == 0 {
            if tr {
                return Err(Exception::gp(0));
            }
            self.s.ldtr = Segment { selector: sel, attr: 0, limit: 0, base: 0 };
            return Ok(());
        }
        if sel & 4 != 0 {
            return Err(Exception::gp((sel & !3) as u32));
        }
        let d = self.read_descriptor(sel, vec::GP)?;
        let mut s = Segment::from_descriptor(sel, d);
        let ty = s.attr & 0x1F;
        let ok = if tr { ty == 0x09 || (ty == 0x01 && !self.s.long_mode()) } else { ty == 0x02 };
        if !ok {
            return Err(Exception::gp((sel & !3) as u32));
        }
        if s.attr & seg::P == 0 {
            return Err(Exception::with_code(vec::NP, (sel & !3) as u32));
        }
        if self.s.long_mode() {
            let hi = self.read_descriptor_high(sel)?;
            s.base |= (hi & 0xFFFF_FFFF) << 32;
        }
        if tr {
            // Mark the TSS busy in its descriptor (type 1/9 -> 3/B).
            let la = self.s.gdtr.base + (sel & !7) as u64 + 5;
            let b = ((d >> 40) as u8) | 2;
            self.write_lin_as(la, 1, b as u64, false)?;
            s.attr |= 2;
            self.s.tr = s;
        } else {
            self.s.ldtr = s;
        }
        Ok(())
    }

    fn lar_lsl(&mut self, i: &Instruction, lar: bool) -> Res<()> {
        if !self.in_protected() {
            return Err(Exception::ud());
        }
        let sel = self.read_op(i, 1, 2)? as u16;
        let f = self.s.status_flags() & !rf::ZF;
        let valid = (|| -> Res<Option<u64>> {
            if sel & !3 == 0 {
                return Ok(None);
            }
            let d = match self.read_descriptor(sel, vec::GP) {
                Ok(d) => d,
                Err(_) => return Ok(None),
            };
            let s = Segment::from_descriptor(sel, d);
            let ty = s.attr & 0x1F;
            let sys_ok = if lar { matches!(ty, 0x02 | 0x09 | 0x0B | 0x0C) || (!self.s.long_mode() && matches!(ty, 0x01 | 0x03 | 0x04 | 0x05)) } else { matches!(ty, 0x02 | 0x09 | 0x0B) || (!self.s.long_mode() && matches!(ty, 0x01 | 0x03)) };
            if s.attr & seg::S == 0 && !sys_ok {
                return Ok(None);
            }
            let conforming = s.attr & (seg::CODE | seg::DC) == (seg::CODE | seg::DC);
            if !conforming && s.dpl() < self.s.cpl().max((sel & 3) as u8) {
                return Ok(None);
            }
            Ok(Some(if lar { d & 0x00F0_FF00_0000_0000 } else { s.limit as u64 }))
        })()?;
        match valid {
            Some(v) => {
                let v = if lar { v >> 32 } else { v };
                let size = self.op_size(i, 0);
                self.set_reg(i.op0_register(), v & mask(size));
                self.s.set_status_flags(f | rf::ZF);
            }
            None => self.s.set_status_flags(f),
        }
        Ok(())
    }

    fn verr_verw(&mut self, i: &Instruction, w: bool) -> Res<()> {
        if !self.in_protected() {
            return Err(Exception::ud());
        }
        let sel = self.read_op(i, 0, 2)? as u16;
        let f = self.s.status_flags() & !rf::ZF;
        let ok = sel & !3 != 0
            && match self.read_descriptor(sel, vec::GP) {
                Ok(d) => {
                    let s = Segment::from_descriptor(sel, d);
                    let conforming = s.attr & (seg::CODE | seg::DC) == (seg::CODE | seg::DC);
                    s.attr & seg::S != 0
                        && (conforming || s.dpl() >= self.s.cpl().max((sel & 3) as u8))
                        && if w { s.attr & seg::CODE == 0 && s.attr & seg::RW != 0 } else { s.attr & seg::CODE == 0 || s.attr & seg::RW != 0 }
                }
                Err(_) => false,
            };
        self.s.set_status_flags(if ok { f | rf::ZF } else { f });
        Ok(())
    }

    fn syscall(&mut self) -> Res<()> {
        if self.s.efer & cr::EFER_SCE == 0 || !self.s.long_mode() {
            return Err(Exception::ud());
        }
        let star = self.s.msr.star;
        let sel = ((star >> 32) & 0xFFFC) as u16;
        if self.bits == 64 {
            self.s.regs[1] = self.s.rip;
            self.s.regs[11] = self.s.get_rflags() & !rf::RF;
            let fl = self.s.get_rflags() & !self.s.msr.sfmask & !rf::RF;
            self.s.set_rflags_masked(fl, !0);
            self.s.rip = self.s.msr.lstar;
        } else {
            self.s.regs[1] = self.s.rip;
            self.s.regs[11] = self.s.get_rflags() & !rf::RF;
            let fl = self.s.get_rflags() & !self.s.msr.sfmask & !rf::RF;
            self.s.set_rflags_masked(fl, !0);
            self.s.rip = self.s.msr.cstar;
        }
        self.s.seg[sreg::SS] = Segment { selector: sel + 8, attr: seg::P | seg::S | seg::RW | seg::ACCESSED | seg::DB | seg::G, limit: 0xFFFF_FFFF, base: 0 };
        self.set_cs(Segment { selector: sel, attr: seg::P | seg::S | seg::CODE | seg::RW | seg::ACCESSED | seg::L | seg::G, limit: 0xFFFF_FFFF, base: 0 });
        Ok(())
    }

    fn sysret(&mut self, to64: bool) -> Res<()> {
        if self.s.efer & cr::EFER_SCE == 0 || !self.s.long_mode() {
            return Err(Exception::ud());
        }
        self.cr_fault_if_not_cpl0()?;
        let base = ((self.s.msr.star >> 48) & 0xFFFF) as u16;
        let rip = self.s.regs[1];
        if to64 && !crate::mmu::canonical(rip) {
            return Err(Exception::gp(0));
        }
        let cs = if to64 {
            Segment { selector: (base + 16) | 3, attr: seg::P | seg::S | seg::CODE | seg::RW | seg::ACCESSED | seg::L | seg::G | (3 << 5), limit: 0xFFFF_FFFF, base: 0 }
        } else {
            Segment { selector: base | 3, attr: seg::P | seg::S | seg::CODE | seg::RW | seg::ACCESSED | seg::DB | seg::G | (3 << 5), limit: 0xFFFF_FFFF, base: 0 }
        };
        let fl = (self.s.regs[11] & 0x3C_7FD7) | rf::FIXED;
        self.s.set_rflags_masked(fl, !0);
        self.s.seg[sreg::SS].selector = (base + 8) | 3;
        self.s.seg[sreg::SS].attr = seg::P | seg::S | seg::RW | seg::ACCESSED | seg::DB | seg::G | (3 << 5);
        self.s.seg[sreg::SS].base = 0;
        self.s.seg[sreg::SS].limit = 0xFFFF_FFFF;
        self.set_cs(cs);
        self.s.rip = if to64 { rip } else { rip & 0xFFFF_FFFF };
        self.end_block = true;
        Ok(())
    }

    /// The TSC: the virtual clock (retired instructions) plus the IA32_TSC write offset.
    pub fn tsc(&self) -> u64 {
        self.s.icount.wrapping_add(self.s.msr.tsc_offset)
    }

    /// RDMSR (Intel SDM Vol. 4). Unknown MSRs raise #GP(0).
    pub fn rdmsr(&mut self, idx: u32) -> Res<u64> {
        let s = &self.s;
        Ok(match idx {
            0x10 => self.tsc(),
            0x17 => 0, // IA32_PLATFORM_ID: platform 0 (read by the microcode loader).
            0x1B => s.msr.apic_base,
            0x3A => 1, // IA32_FEATURE_CONTROL: locked, VMX off.
            0x8B => 0, // IA32_BIOS_SIGN_ID: no microcode.
            0xFE => 0x508, // IA32_MTRRCAP: 8 variable ranges, fixed ranges, WC.
            0x10A => crate::cpuid::ARCH_CAPABILITIES,
            0x174 => s.msr.sysenter[0],
            0x175 => s.msr.sysenter[1],
            0x176 => s.msr.sysenter[2],
            0x1A0 => s.msr.misc_enable,
            0x200..=0x20F => s.msr.mtrr_var[(idx - 0x200) as usize],
            0x250 => s.msr.mtrr_fix[0],
            0x258 => s.msr.mtrr_fix[1],
            0x259 => s.msr.mtrr_fix[2],
            0x268..=0x26F => s.msr.mtrr_fix[3 + (idx - 0x268) as usize],
            0x277 => s.msr.pat,
            0x2FF => s.msr.mtrr_def_type,
            0xC000_0080 => s.efer,
            0xC000_0081 => s.msr.star,
            0xC000_0082 => s.msr.lstar,
            0xC000_0083 => s.msr.cstar,
            0xC000_0084 => s.msr.sfmask,
            0xC000_0100 => s.seg[sreg::FS].base,
            0xC000_0101 => s.seg[sreg::GS].base,
            0xC000_0102 => s.msr.kernel_gs_base,
            _ => return Err(Exception::gp(0)),
        })
    }

    /// WRMSR. Unknown MSRs, reserved bits and non-canonical bases raise #GP(0).
    pub fn wrmsr(&mut self, idx: u32, v: u64) -> Res<()> {
        let need_canon = |v: u64| if crate::mmu::canonical(v) { Ok(()) } else { Err(Exception::gp(0)) };
        match idx {
            0x10 => self.s.msr.tsc_offset = v.wrapping_sub(self.s.icount),
            0x1B => {
                // No local APIC is advertised; keep the value for software that reads it back.
                self.s.msr.apic_base = v & 0xF_FFFF_FD00;
            }
            0x8B => {}
            0x174 => self.s.msr.sysenter[0] = v & 0xFFFF,
            0x175 => {
                need_canon(v)?;
                self.s.msr.sysenter[1] = v
            }
            0x176 => {
                need_canon(v)?;
                self.s.msr.sysenter[2] = v
            }
            0x1A0 => self.s.msr.misc_enable = v,
            0x200..=0x20F => self.s.msr.mtrr_var[(idx - 0x200) as usize] = v,
            0x250 => self.s.msr.mtrr_fix[0] = v,
            0x258 => self.s.msr.mtrr_fix[1] = v,
            0x259 => self.s.msr.mtrr_fix[2] = v,
            0x268..=0x26F => self.s.msr.mtrr_fix[3 + (idx - 0x268) as usize] = v,
            0x277 => {
                // Each PAT entry must be a valid memory type (0, 1, 4, 5, 6, 7).
                for k in 0..8 {
                    let t = (v >> (8 * k)) & 0xFF;
                    if !matches!(t, 0 | 1 | 4 | 5 | 6 | 7) {
                        return Err(Exception::gp(0));
                    }
                }
                self.s.msr.pat = v
            }
            0x2FF => self.s.msr.mtrr_def_type = v & 0xCFF,
            0xC000_0080 => {
                let allowed = cr::EFER_SCE | cr::EFER_LME | cr::EFER_NXE | cr::EFER_LMA;
                if v & !allowed != 0 {
                    return Err(Exception::gp(0));
                }
                let lme_change = (v ^ self.s.efer) & cr::EFER_LME != 0;
                if lme_change && self.s.cr0 & cr::CR0_PG != 0 {
                    return Err(Exception::gp(0));
                }
                // LMA is read-only: keep the current value.
                self.s.efer = (v & !cr::EFER_LMA) | (self.s.efer & cr::EFER_LMA);
                self.s.tlb.flush_all();
            }
            0xC000_0081 => self.s.msr.star = v,
            0xC000_0082 => {
                need_canon(v)?;
                self.s.msr.lstar = v
            }
            0xC000_0083 => {
                need_canon(v)?;
                self.s.msr.cstar = v
            }
            0xC000_0084 => self.s.msr.sfmask = v & 0xFFFF_FFFF,
            0xC000_0100 => {
                need_canon(v)?;
                self.s.seg[sreg::FS].base = v
            }
            0xC000_0101 => {
                need_canon(v)?;
                self.s.seg[sreg::GS].base = v
            }
            0xC000_0102 => {
                need_canon(v)?;
                self.s.msr.kernel_gs_base = v
            }
            _ => return Err(Exception::gp(0)),
        }
        Ok(())
    }
}

#[allow(dead_code)]
fn _unused(_: TlbKind) -> (usize, u32, bool) {
    gpr(Register::AL)
}

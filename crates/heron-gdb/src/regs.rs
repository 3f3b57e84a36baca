//! The register file GDB sees: one table per view (x86-64, i386, i8086) that gives the
//! target description XML, the `g`/`G` packet layout and the `p`/`P` register numbers, so the
//! three always agree. Feature and register names are GDB's ("org.gnu.gdb.i386.core",
//! ".sse", ".segments"; GDB manual, "i386 Features"); control registers and EFER are an
//! extra feature, shown by `info registers`.

use heron_cpu::state::{cr, sreg, CpuState, Segment};

/// Which register view GDB gets; fixed for a connection (GDB reads the description once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// 64-bit registers, architecture `i386:x86-64` (the CPU is in IA-32e mode).
    X86_64,
    /// 32-bit registers, architecture `i386` (protected mode).
    I386,
    /// 32-bit registers, architecture `i8086` (real mode: GDB disassembles 16-bit code).
    I8086,
}

impl View {
    /// The view for the CPU's current mode.
    pub fn of(s: &CpuState) -> View {
        if s.efer & cr::EFER_LMA != 0 {
            View::X86_64
        } else if s.cr0 & cr::CR0_PE != 0 {
            View::I386
        } else {
            View::I8086
        }
    }

    fn wide(self) -> bool {
        self == View::X86_64
    }
}

/// One register of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    /// GPR by index in `CpuState::regs`.
    Gpr(usize),
    Rip,
    Eflags,
    /// Segment selector by `sreg` index.
    Sel(usize),
    /// x87 ST(i) (physical register (TOP + i) mod 8), 80 bits.
    St(usize),
    Fctrl,
    Fstat,
    Ftag,
    Fiseg,
    Fioff,
    Foseg,
    Fooff,
    Fop,
    Xmm(usize),
    Mxcsr,
    FsBase,
    GsBase,
    Cr(u8),
    Efer,
}

/// A register's place in the file.
struct Def {
    name: String,
    reg: Reg,
    /// Size in bytes.
    size: usize,
    /// GDB type name.
    ty: &'static str,
    feature: usize,
}

const FEATURES: [&str; 4] = ["org.gnu.gdb.i386.core", "org.gnu.gdb.i386.sse", "org.gnu.gdb.i386.segments", "org.heron.x86.system"];

/// The register table of `view`, in GDB's numbering order.
fn table(view: View) -> Vec<Def> {
    let w = view.wide();
    let (gsz, gty) = if w { (8, "int64") } else { (4, "int32") };
    let mut t = Vec::new();
    let mut add = |name: &str, reg, size, ty, feature| t.push(Def { name: name.to_string(), reg, size, ty, feature });
    // GDB's core order: amd64 rax rbx rcx rdx rsi rdi rbp rsp r8-r15; i386 eax ecx edx ebx esp ebp esi edi.
    let gprs: &[(&str, usize)] = if w {
        &[("rax", 0), ("rbx", 3), ("rcx", 1), ("rdx", 2), ("rsi", 6), ("rdi", 7), ("rbp", 5), ("rsp", 4), ("r8", 8), ("r9", 9), ("r10", 10), ("r11", 11), ("r12", 12), ("r13", 13), ("r14", 14), ("r15", 15)]
    } else {
        &[("eax", 0), ("ecx", 1), ("edx", 2), ("ebx", 3), ("esp", 4), ("ebp", 5), ("esi", 6), ("edi", 7)]
    };
    for &(n, k) in gprs {
        let ty = match k {
            4 | 5 => "data_ptr",
            _ => gty,
        };
        add(n, Reg::Gpr(k), gsz, ty, 0);
    }
    add(if w { "rip" } else { "eip" }, Reg::Rip, gsz, "code_ptr", 0);
    add("eflags", Reg::Eflags, 4, "int32", 0);
    for (n, k) in [("cs", sreg::CS), ("ss", sreg::SS), ("ds", sreg::DS), ("es", sreg::ES), ("fs", sreg::FS), ("gs", sreg::GS)] {
        add(n, Reg::Sel(k), 4, "int32", 0);
    }
    for k in 0..8 {
        add(&format!("st{k}"), Reg::St(k), 10, "i387_ext", 0);
    }
    for (n, r) in [("fctrl", Reg::Fctrl), ("fstat", Reg::Fstat), ("ftag", Reg::Ftag), ("fiseg", Reg::Fiseg), ("fioff", Reg::Fioff), ("foseg", Reg::Foseg), ("fooff", Reg::Fooff), ("fop", Reg::Fop)] {
        add(n, r, 4, "int", 0);
    }
    for k in 0..if w { 16 } else { 8 } {
        add(&format!("xmm{k}"), Reg::Xmm(k), 16, "vec128", 1);
    }
    add("mxcsr", Reg::Mxcsr, 4, "int", 1);
    // GDB's i386 GNU/Linux ABI numbers the segments feature past its register count (an
    // internal error in GDB 13), so the 32-bit views carry the bases with the system registers.
    let seg_feature = if w { 2 } else { 3 };
    add("fs_base", Reg::FsBase, gsz, gty, seg_feature);
    add("gs_base", Reg::GsBase, gsz, gty, seg_feature);
    for c in [0u8, 2, 3, 4, 8] {
        add(&format!("cr{c}"), Reg::Cr(c), gsz, gty, 3);
    }
    add("efer", Reg::Efer, 8, "int64", 3);
    t
}

/// The target description XML of `view` (GDB manual, "Target Descriptions").
pub fn target_xml(view: View) -> String {
    let arch = match view {
        View::X86_64 => "i386:x86-64",
        View::I386 => "i386",
        View::I8086 => "i8086",
    };
    let mut x = format!("<?xml version=\"1.0\"?>\n<!DOCTYPE target SYSTEM \"gdb-target.dtd\">\n<target version=\"1.0\">\n<architecture>{arch}</architecture>\n");
    let t = table(view);
    for (f, name) in FEATURES.iter().enumerate() {
        if !t.iter().any(|d| d.feature == f) {
            continue;
        }
        x += &format!("<feature name=\"{name}\">\n");
        if f == 1 {
            // GDB's vec128 (a union of the packed views), as its own 64bit-sse.xml defines it.
            x += "<vector id=\"v4f\" type=\"ieee_single\" count=\"4\"/>\n<vector id=\"v2d\" type=\"ieee_double\" count=\"2\"/>\n<vector id=\"v16i8\" type=\"int8\" count=\"16\"/>\n<vector id=\"v8i16\" type=\"int16\" count=\"8\"/>\n<vector id=\"v4i32\" type=\"int32\" count=\"4\"/>\n<vector id=\"v2i64\" type=\"int64\" count=\"2\"/>\n<union id=\"vec128\"><field name=\"v4_float\" type=\"v4f\"/><field name=\"v2_double\" type=\"v2d\"/><field name=\"v16_int8\" type=\"v16i8\"/><field name=\"v8_int16\" type=\"v8i16\"/><field name=\"v4_int32\" type=\"v4i32\"/><field name=\"v2_int64\" type=\"v2i64\"/><field name=\"uint128\" type=\"uint128\"/></union>\n";
        }
        for (n, d) in t.iter().enumerate().filter(|(_, d)| d.feature == f) {
            let group = match d.reg {
                Reg::St(_) | Reg::Fctrl | Reg::Fstat | Reg::Ftag | Reg::Fiseg | Reg::Fioff | Reg::Foseg | Reg::Fooff | Reg::Fop => " group=\"float\"",
                Reg::Xmm(_) | Reg::Mxcsr => " group=\"vector\"",
                _ => "",
            };
            x += &format!("<reg name=\"{}\" bitsize=\"{}\" type=\"{}\" regnum=\"{n}\"{group}/>\n", d.name, d.size * 8, d.ty);
        }
        x += "</feature>\n";
    }
    x += "</target>\n";
    x
}

/// The bytes of one register (little-endian, `size` bytes).
fn get(s: &CpuState, reg: Reg, size: usize) -> Vec<u8> {
    let v: u128 = match reg {
        Reg::Gpr(k) => s.regs[k] as u128,
        Reg::Rip => s.rip as u128,
        Reg::Eflags => s.get_rflags() as u128,
        Reg::Sel(k) => s.seg[k].selector as u128,
        Reg::St(k) => {
            let r = s.x87.regs[(s.x87.top as usize + k) & 7];
            let mut b = [0u8; 16];
            b[..10].copy_from_slice(&r);
            u128::from_le_bytes(b)
        }
        Reg::Fctrl => s.x87.fcw as u128,
        Reg::Fstat => ((s.x87.fsw & !0x3800) | ((s.x87.top as u16 & 7) << 11)) as u128,
        Reg::Ftag => s.x87.ftw as u128,
        Reg::Fiseg | Reg::Foseg => 0,
        Reg::Fioff => s.x87.fip as u128,
        Reg::Fooff => s.x87.fdp as u128,
        Reg::Fop => s.x87.fop as u128,
        Reg::Xmm(k) => s.xmm[k],
        Reg::Mxcsr => s.mxcsr as u128,
        Reg::FsBase => s.seg[sreg::FS].base as u128,
        Reg::GsBase => s.seg[sreg::GS].base as u128,
        Reg::Cr(c) => (match c {
            0 => s.cr0,
            2 => s.cr2,
            3 => s.cr3,
            4 => s.cr4,
            _ => s.cr8,
        }) as u128,
        Reg::Efer => s.efer as u128,
    };
    v.to_le_bytes()[..size].to_vec()
}

/// Write one register from GDB. Selectors change only in real mode (where the base follows
/// the selector); in protected mode a selector load needs a descriptor and is ignored, as
/// are the x87 selector registers Heron does not keep.
fn set(s: &mut CpuState, reg: Reg, bytes: &[u8]) {
    let mut b = [0u8; 16];
    b[..bytes.len()].copy_from_slice(bytes);
    let v = u128::from_le_bytes(b);
    let v64 = v as u64;
    match reg {
        Reg::Gpr(k) => s.regs[k] = if bytes.len() == 4 { (s.regs[k] & !0xFFFF_FFFF) | v64 } else { v64 },
        Reg::Rip => s.rip = v64,
        Reg::Eflags => s.set_rflags_masked(v64, 0x003F_7FD5),
        Reg::Sel(k) => {
            if s.cr0 & cr::CR0_PE == 0 && s.seg[k].selector != v64 as u16 {
                let attr = s.seg[k].attr;
                s.seg[k] = Segment { attr, ..Segment::real(v64 as u16) };
            }
        }
        Reg::St(k) => s.x87.regs[(s.x87.top as usize + k) & 7].copy_from_slice(&b[..10]),
        Reg::Fctrl => s.x87.fcw = v64 as u16,
        Reg::Fstat => {
            s.x87.fsw = v64 as u16 & !0x3800;
            s.x87.top = (v64 >> 11) as u8 & 7;
        }
        Reg::Ftag => s.x87.ftw = v64 as u16,
        Reg::Fiseg | Reg::Foseg => {}
        Reg::Fioff => s.x87.fip = v64,
        Reg::Fooff => s.x87.fdp = v64,
        Reg::Fop => s.x87.fop = v64 as u16 & 0x7FF,
        Reg::Xmm(k) => s.xmm[k] = v,
        Reg::Mxcsr => s.mxcsr = v64 as u32 & 0xFFFF,
        Reg::FsBase => s.seg[sreg::FS].base = v64,
        Reg::GsBase => s.seg[sreg::GS].base = v64,
        Reg::Cr(c) => match c {
            0 => s.cr0 = v64,
            2 => s.cr2 = v64,
            3 => s.cr3 = v64,
            4 => s.cr4 = v64,
            _ => s.cr8 = v64 & 0xF,
        },
        Reg::Efer => s.efer = v64,
    }
}

/// The `g` packet: every register of `view` in order.
pub fn read_all(s: &CpuState, view: View) -> Vec<u8> {
    table(view).iter().flat_map(|d| get(s, d.reg, d.size)).collect()
}

/// GDB sent a register number or a size that is not in the view.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRegister;

/// The `G` packet. Errors when the length is not the view's.
pub fn write_all(s: &mut CpuState, view: View, bytes: &[u8]) -> Result<(), BadRegister> {
    let t = table(view);
    if bytes.len() != t.iter().map(|d| d.size).sum::<usize>() {
        return Err(BadRegister);
    }
    let mut off = 0;
    for d in t {
        set(s, d.reg, &bytes[off..off + d.size]);
        off += d.size;
    }
    Ok(())
}

/// The `p` packet: register number `n`, or `None` past the end of the file.
pub fn read_one(s: &CpuState, view: View, n: usize) -> Option<Vec<u8>> {
    table(view).get(n).map(|d| get(s, d.reg, d.size))
}

/// The `P` packet. Errors when `n` is not a register or the size is wrong.
pub fn write_one(s: &mut CpuState, view: View, n: usize, bytes: &[u8]) -> Result<(), BadRegister> {
    let t = table(view);
    let d = t.get(n).ok_or(BadRegister)?;
    if bytes.len() != d.size {
        return Err(BadRegister);
    }
    set(s, d.reg, bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_gdb_sizes() {
        // amd64 core+sse+segments as in GDB's own descriptions: 16*8 + 8 + 4 + 6*4 + 8*10 +
        // 8*4 = 276 bytes, SSE 16*16 + 4 = 260, segments 16; then 5 CRs + EFER = 48.
        let s = CpuState::new();
        assert_eq!(read_all(&s, View::X86_64).len(), 276 + 260 + 16 + 48);
        // i386: 8*4 + 4 + 4 + 6*4 + 80 + 32 = 176, SSE 8*16 + 4 = 132, segments 8, CRs 20 + 8.
        assert_eq!(read_all(&s, View::I386).len(), 176 + 132 + 8 + 28);
    }

    #[test]
    fn round_trip_and_numbering() {
        let mut s = CpuState::new();
        s.regs[3] = 0x1122_3344_5566_7788;
        s.rip = 0xFFFF_FFFF_8100_0000;
        s.cr3 = 0x1234_5000;
        let g = read_all(&s, View::X86_64);
        let mut t = CpuState::new();
        write_all(&mut t, View::X86_64, &g).unwrap();
        assert_eq!((t.regs[3], t.rip, t.cr3), (s.regs[3], s.rip, s.cr3));
        assert_eq!(read_one(&s, View::X86_64, 1).unwrap(), s.regs[3].to_le_bytes(), "rbx is register 1");
        assert_eq!(read_one(&s, View::X86_64, 16).unwrap(), s.rip.to_le_bytes(), "rip is register 16");
        assert_eq!(read_one(&s, View::I386, 3).unwrap(), (s.regs[3] as u32).to_le_bytes(), "ebx is register 3");
        assert!(write_all(&mut t, View::X86_64, &g[1..]).is_err());
        let xml = target_xml(View::X86_64);
        assert!(xml.contains("<reg name=\"cr3\" bitsize=\"64\" type=\"int64\" regnum=\"61\"/>"), "{xml}");
        assert!(xml.contains("<architecture>i386:x86-64</architecture>"));
    }
}

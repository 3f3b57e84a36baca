//! Case generation: a seeded xorshift PRNG, operand values mixing edge cases with random
//! ones, and a raw x86-64 encoder whose memory operands are solved so that any addressing
//! form (base, index·scale, disp8/disp32, SIB without base, absolute, RIP-relative, 32-bit
//! address size via 0x67) lands on a chosen address in the data window.

use super::native::{CODE, DATA, FX_LEN};

/// Bytes of the data area loaded and compared for every case (it straddles the page boundary
/// at `DATA + 0x1000`).
pub const WIN: usize = 0x2000;
/// The page boundary inside the window.
pub const PAGE: u64 = DATA + 0x1000;
/// Default RSP: inside the mapped data area, outside the compared window.
pub const STACK: u64 = DATA + 0x8000;

/// RFLAGS bits.
pub mod f {
    pub const CF: u64 = 1;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const DF: u64 = 1 << 10;
    pub const OF: u64 = 1 << 11;
    pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;
    /// All six status flags.
    pub const ALL: u64 = STATUS;
}

pub const RAX: u8 = 0;
pub const RCX: u8 = 1;
pub const RDX: u8 = 2;
pub const RSP: u8 = 4;
pub const RBP: u8 = 5;
pub const RSI: u8 = 6;
pub const RDI: u8 = 7;

/// xorshift64*.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }
    /// True with probability 1/n.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

pub fn mask(size: u32) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

pub fn sext(v: u64, size: u32) -> u64 {
    let sh = 64 - size * 8;
    (((v << sh) as i64) >> sh) as u64
}

/// One generated (or fixed) test case.
#[derive(Clone)]
pub struct Case {
    /// Index into the class table.
    pub class: usize,
    /// Instruction bytes, placed at `CODE`.
    pub code: Vec<u8>,
    pub regs: [u64; 16],
    /// Initial status flags and DF.
    pub flags: u64,
    /// Initial contents of the data window.
    pub data: Vec<u8>,
    /// Status flags the SDM leaves undefined for this case: not compared.
    pub undef: u64,
    /// Initial x87/MMX/SSE state: an FXSAVE64 image (see [`fx`]).
    pub fx: Box<[u8; FX_LEN]>,
    /// FSW bits (x87 condition codes C0–C3) the SDM leaves undefined for this case.
    pub fsw_undef: u16,
    /// FSW bits (mask, value) the SDM defines but the AMD host sets differently: Heron's are
    /// checked against the SDM's value instead of the host's.
    pub fsw_sdm: (u16, u16),
    /// Name of a fixed regression case.
    pub name: Option<&'static str>,
}

/// The FXSAVE64 image (Intel SDM Vol. 1 §10.5.1, Table 10-2): field offsets, and the reset
/// state the cases start from.
pub mod fx {
    use super::FX_LEN;
    pub const FCW: usize = 0;
    pub const FSW: usize = 2;
    /// Abridged tag word: bit p set when physical register Rp is not empty.
    pub const FTW: usize = 4;
    pub const MXCSR: usize = 24;
    /// ST(i) (stack order, 10 bytes used of 16) at `ST + 16 * i`.
    pub const ST: usize = 32;
    /// XMMk at `XMM + 16 * k`.
    pub const XMM: usize = 160;
    /// FSW condition-code bits.
    pub const C0: u16 = 1 << 8;
    pub const C1: u16 = 1 << 9;
    pub const C2: u16 = 1 << 10;
    pub const C3: u16 = 1 << 14;
    /// FNINIT state (FCW 0x037F, empty stack), MXCSR 0x1F80, zero registers.
    pub fn reset() -> Box<[u8; FX_LEN]> {
        let mut b = Box::new([0u8; FX_LEN]);
        b[FCW..FCW + 2].copy_from_slice(&0x037Fu16.to_le_bytes());
        b[MXCSR..MXCSR + 4].copy_from_slice(&0x1F80u32.to_le_bytes());
        b
    }
}

/// A memory operand: the address it must hit, or `Any` (LEA: no access, any values).
#[derive(Clone, Copy)]
pub enum Rm {
    Reg(u8),
    Mem(u64),
    Any,
}

/// One instruction to encode.
#[derive(Clone, Default)]
pub struct Spec {
    /// Operand-size prefix.
    pub p66: bool,
    /// REX.W.
    pub w: bool,
    /// Emit a REX prefix even when no bit is needed (SPL/BPL/SIL/DIL instead of AH..BH).
    pub rex: bool,
    /// Prefixes after 66/67 (REP/REPNE, mandatory F3).
    pub pre: Vec<u8>,
    pub op: Vec<u8>,
    /// Register encoded in the low three bits of the last opcode byte (REX.B for r8–r15).
    pub opreg: Option<u8>,
    /// ModRM.reg: an opcode extension or a register.
    pub reg: Option<u8>,
    pub rm: Option<Rm>,
    /// Force 32-bit (true) or 64-bit (false) addressing; `None` picks randomly.
    pub a32: Option<bool>,
    /// LOCK prefix.
    pub lock: bool,
    pub imm: Vec<u8>,
}

impl Spec {
    pub fn op(op: &[u8]) -> Spec {
        Spec { op: op.to_vec(), ..Default::default() }
    }
    /// Operand size in bytes: 2 → 66, 8 → REX.W (1 and 4 need nothing).
    pub fn size(mut self, size: u32) -> Spec {
        self.p66 = size == 2;
        self.w = size == 8;
        self
    }
    pub fn reg(mut self, r: u8) -> Spec {
        self.reg = Some(r);
        self
    }
    pub fn rm(mut self, rm: Rm) -> Spec {
        self.rm = Some(rm);
        self
    }
    pub fn imm(mut self, v: u64, bytes: usize) -> Spec {
        self.imm = v.to_le_bytes()[..bytes].to_vec();
        self
    }
}

/// Case builder.
pub struct G {
    pub rng: Rng,
    pub regs: [u64; 16],
    pub flags: u64,
    pub data: Vec<u8>,
    pub undef: u64,
    pub fx: Box<[u8; FX_LEN]>,
    pub fsw_undef: u16,
    pub fsw_sdm: (u16, u16),
    pub code: Vec<u8>,
    /// Registers whose values the instruction's semantics need (counts, string pointers,
    /// dividend...): memory operands may use them only with their current value.
    pub fixed: u16,
    /// The instruction being built is a byte operation encoded without REX: registers 0–7 only.
    pub low_regs: bool,
    /// Memory targets straddle the page boundary whenever the operand is wider than a byte.
    pub cross: bool,
    /// FS and GS bases (the host thread's; Heron is given the same), for segment overrides.
    pub seg_base: [u64; 2],
}

impl G {
    pub fn new(seed: u64) -> G {
        G { rng: Rng::new(seed), regs: [0; 16], flags: 0, data: vec![0; WIN], undef: 0, fx: fx::reset(), fsw_undef: 0, fsw_sdm: (0, 0), code: Vec::new(), fixed: 0, low_regs: false, cross: false, seg_base: [0; 2] }
    }

    /// Start a new case: random registers (RSP = `STACK`), flags and data.
    pub fn begin(&mut self) {
        for r in 0..16 {
            self.regs[r] = self.val(8);
        }
        self.regs[RSP as usize] = STACK;
        self.flags = 0;
        for b in [f::CF, f::PF, f::AF, f::ZF, f::SF, f::OF, f::DF] {
            if self.rng.one_in(2) {
                self.flags |= b;
            }
        }
        // Clear DF more often than not: most code runs with DF = 0.
        if self.rng.one_in(2) {
            self.flags &= !f::DF;
        }
        for k in (0..WIN).step_by(8) {
            let v = self.rng.next().to_le_bytes();
            self.data[k..k + 8].copy_from_slice(&v);
        }
        self.undef = 0;
        self.fx = fx::reset();
        self.fsw_undef = 0;
        self.fsw_sdm = (0, 0);
        self.code.clear();
        self.fixed = 1 << RSP;
        self.low_regs = false;
        self.cross = false;
    }

    pub fn finish(&mut self, class: usize) -> Case {
        Case { class, code: self.code.clone(), regs: self.regs, flags: self.flags, data: self.data.clone(), undef: self.undef, fx: self.fx.clone(), fsw_undef: self.fsw_undef, fsw_sdm: self.fsw_sdm, name: None }
    }

    // ---- values ----

    /// An operand value of `size` bytes: edge cases (0, 1, −1, sign boundaries, maximum),
    /// single bits, small numbers or random, sometimes with garbage above the operand size.
    pub fn val(&mut self, size: u32) -> u64 {
        let m = mask(size);
        let sb = 1u64 << (size * 8 - 1);
        let v = match self.rng.below(16) {
            0 => 0,
            1 => 1,
            2 => m,
            3 => sb - 1,
            4 => sb,
            5 => sb + 1,
            6 => m - 1,
            7 => self.rng.below(64),
            8 => 1u64 << self.rng.below(size as u64 * 8),
            9 => m - self.rng.below(64),
            10 => sb ^ self.rng.below(256),
            _ => self.rng.next(),
        } & m;
        if size < 8 && self.rng.one_in(2) {
            v | (self.rng.next() & !m)
        } else {
            v
        }
    }

    /// A register for an operand (never RSP; for byte operands without REX, AH..BH allowed).
    pub fn r(&mut self) -> u8 {
        loop {
            let r = if self.low_regs { self.rng.below(8) } else { self.rng.below(16) } as u8;
            if r != RSP || self.low_regs {
                return r;
            }
        }
    }

    /// A register other than those in `avoid` (a bit set).
    pub fn r_not(&mut self, avoid: u16) -> u8 {
        loop {
            let r = self.r();
            if avoid & (1 << r) == 0 {
                return r;
            }
        }
    }

    /// Set the low `size` bytes of a register operand (respecting AH..BH when `low_regs`).
    pub fn set_reg(&mut self, r: u8, size: u32, v: u64) {
        if size == 1 && self.low_regs && (4..8).contains(&r) {
            let i = (r - 4) as usize;
            self.regs[i] = (self.regs[i] & !0xFF00) | ((v & 0xFF) << 8);
        } else {
            let m = mask(size);
            self.regs[r as usize] = (self.regs[r as usize] & !m) | (v & m);
        }
    }

    /// Decide REX usage for a byte operation: with REX, registers 4–7 are SPL..DIL (SPL is
    /// avoided); without it, AH..BH and no r8–r15 anywhere in the instruction.
    pub fn byte_rex(&mut self, s: &mut Spec) {
        if self.rng.one_in(2) {
            s.rex = true;
            self.low_regs = false;
        } else {
            self.low_regs = true;
        }
    }

    /// A target address for a `size`-byte access: anywhere in the window, or straddling or
    /// touching the page boundary.
    pub fn target(&mut self, size: u32) -> u64 {
        let s = size as u64;
        if self.cross && s > 1 {
            return PAGE - 1 - self.rng.below(s - 1);
        }
        match self.rng.below(8) {
            0 | 1 if s > 1 => PAGE - 1 - self.rng.below(s - 1),
            2 => PAGE - s,
            3 => PAGE,
            _ => DATA + 0x100 + self.rng.below(WIN as u64 - 0x200 - s),
        }
    }

    /// Store `size` bytes of `v` at address `a` in the window.
    pub fn put(&mut self, a: u64, size: u32, v: u64) {
        let o = (a - DATA) as usize;
        self.data[o..o + size as usize].copy_from_slice(&v.to_le_bytes()[..size as usize]);
    }

    pub fn get(&self, a: u64, size: u32) -> u64 {
        let o = (a - DATA) as usize;
        let mut b = [0u8; 8];
        b[..size as usize].copy_from_slice(&self.data[o..o + size as usize]);
        u64::from_le_bytes(b)
    }

    /// A register-or-memory operand for a `size`-byte access: a register, or (1 in
    /// `mem_one_in`, always when `cross`) memory holding an operand value.
    pub fn rm_operand(&mut self, size: u32, mem_one_in: u64) -> Rm {
        if self.cross || self.rng.one_in(mem_one_in) {
            let t = self.target(size);
            let v = self.val(size);
            self.put(t, size, v);
            Rm::Mem(t)
        } else {
            let r = self.r();
            let v = self.val(size);
            self.set_reg(r, size, v);
            Rm::Reg(r)
        }
    }

    // ---- encoding ----

    /// Encode `s` and append it to the case's code.
    pub fn emit(&mut self, s: Spec) {
        let at = CODE + self.code.len() as u64;
        let bytes = self.encode(at, &s);
        self.code.extend_from_slice(&bytes);
        self.low_regs = false;
    }

    fn encode(&mut self, at: u64, s: &Spec) -> Vec<u8> {
        let mut rex = if s.w { 8u8 } else { 0 };
        let force_rex = s.rex;
        let mut body = Vec::new();
        let mut mem: Option<MemEnc> = None;
        let reg = s.reg.unwrap_or(0);
        if reg & 8 != 0 {
            rex |= 4;
        }
        if let Some(r) = s.opreg {
            if r & 8 != 0 {
                rex |= 1;
            }
        }
        let mut a32 = false;
        let mut seg = None;
        match s.rm {
            None => {}
            Some(Rm::Reg(r)) => {
                if r & 8 != 0 {
                    rex |= 1;
                }
                body.push(0xC0 | ((reg & 7) << 3) | (r & 7));
            }
            Some(Rm::Mem(t)) => {
                a32 = s.a32.unwrap_or_else(|| self.rng.one_in(4));
                // A segment override now and then: ES/CS/SS/DS are ignored in 64-bit mode,
                // FS/GS add their base (the effective address is solved to compensate).
                let mut t = t;
                if self.rng.one_in(8) {
                    let p = self.rng.pick(&[0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65]);
                    let base = if p >= 0x64 { self.seg_base[(p - 0x64) as usize] } else { 0 };
                    if !a32 || base == 0 {
                        seg = Some(p);
                        t = t.wrapping_sub(base);
                    }
                }
                mem = Some(self.mem(Some(t), a32));
            }
            Some(Rm::Any) => {
                a32 = s.a32.unwrap_or_else(|| self.rng.one_in(3));
                if self.rng.one_in(8) {
                    seg = Some(self.rng.pick(&[0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65]));
                }
                mem = Some(self.mem(None, a32));
            }
        }
        if let Some(m) = &mem {
            if m.x {
                rex |= 2;
            }
            if m.b {
                rex |= 1;
            }
            body.push((m.md << 6) | ((reg & 7) << 3) | m.rm);
            if let Some(sib) = m.sib {
                body.push(sib);
            }
        }
        if self.low_regs && rex != 0 {
            panic!("byte operation without REX needs REX: {:02x?}", s.op);
        }
        let mut out = Vec::new();
        if s.lock {
            out.push(0xF0);
        }
        if let Some(p) = seg {
            out.push(p);
        }
        if s.p66 {
            out.push(0x66);
        }
        if a32 {
            out.push(0x67);
        }
        out.extend_from_slice(&s.pre);
        if rex != 0 || force_rex {
            out.push(0x40 | rex);
        }
        out.extend_from_slice(&s.op);
        if let Some(r) = s.opreg {
            *out.last_mut().unwrap() |= r & 7;
        }
        out.extend_from_slice(&body);
        let disp_at = out.len();
        if let Some(m) = &mem {
            out.extend_from_slice(&m.disp.to_le_bytes()[..m.disp_len]);
        }
        out.extend_from_slice(&s.imm);
        if let Some(m) = &mem {
            if let Some(t) = m.rip_target {
                let next = at + out.len() as u64;
                let d = t.wrapping_sub(next) as u32;
                out[disp_at..disp_at + 4].copy_from_slice(&d.to_le_bytes());
            }
        }
        out
    }

    /// Choose an addressing form and register values so the effective address is `target`
    /// (or anything, for `None`).
    fn mem(&mut self, target: Option<u64>, a32: bool) -> MemEnc {
        for _ in 0..64 {
            let form = self.rng.below(8);
            if let Some(m) = self.try_mem(target, a32, form) {
                return m;
            }
        }
        // [base + disp8] works with any register whose value is free.
        loop {
            if let Some(m) = self.try_mem(target, a32, 1) {
                return m;
            }
        }
    }

    fn try_mem(&mut self, target: Option<u64>, a32: bool, form: u64) -> Option<MemEnc> {
        let amask = if a32 { 0xFFFF_FFFFu64 } else { u64::MAX };
        // Absolute and RIP-relative.
        if form >= 6 {
            let t = target.unwrap_or_else(|| CODE.wrapping_add(self.rng.next() as i32 as i64 as u64));
            // The disp32 must reach the target: sign-extended in 64-bit addressing (absolute, or
            // from the next RIP), anything below 4 GiB with 0x67.
            let ok = if a32 {
                t <= amask
            } else if form == 6 {
                t as i64 == t as i32 as i64
            } else {
                let d = t.wrapping_sub(CODE) as i64;
                d > i32::MIN as i64 + 0x1000 && d < i32::MAX as i64 - 0x1000
            };
            if !ok {
                return None;
            }
            return Some(if form == 6 {
                MemEnc { md: 0, rm: 4, sib: Some(0x25), disp: t as u32, disp_len: 4, x: false, b: false, rip_target: None }
            } else {
                MemEnc { md: 0, rm: 5, sib: None, disp: 0, disp_len: 4, x: false, b: false, rip_target: Some(t) }
            });
        }
        let pick_reg = |g: &mut G| -> u8 { if g.low_regs { g.rng.below(8) as u8 } else { g.rng.below(16) as u8 } };
        let base = if form == 5 { None } else { Some(pick_reg(self)) };
        let index = if form >= 3 {
            let i = pick_reg(self);
            if i == RSP {
                return None;
            }
            Some(i)
        } else {
            None
        };
        let scale = if index.is_some() { 1u64 << self.rng.below(4) } else { 1 };
        let mut disp_len = match form {
            0 => 0,
            1 => 1,
            2 => 4,
            5 => 4,
            _ => [0usize, 1, 4][self.rng.below(3) as usize],
        };
        if disp_len == 0 && base.is_some_and(|b| b & 7 == 5) {
            disp_len = 1;
        }
        let fixed = |g: &G, r: u8| g.fixed & (1 << r) != 0;
        let garbage = |g: &mut G| if a32 { g.rng.next() & !0xFFFF_FFFF } else { 0 };
        let rand_disp = |g: &mut G, len: usize| -> u64 {
            match len {
                0 => 0,
                1 => g.rng.next() as i8 as i64 as u64,
                _ => g.rng.next() as i32 as i64 as u64,
            }
        };
        let fits = |d: u64, len: usize| -> bool {
            let d = d & amask;
            let sx = |v: u64, bits: u32| -> u64 { ((((v << (64 - bits)) as i64) >> (64 - bits)) as u64) & amask };
            match len {
                0 => d == 0,
                1 => sx(d, 8) == d,
                _ => sx(d, 32) == d,
            }
        };
        let mut disp;
        match target {
            None => {
                for r in [base, index].into_iter().flatten() {
                    if !fixed(self, r) {
                        let v = self.val(8);
                        self.regs[r as usize] = v;
                    }
                }
                disp = rand_disp(self, disp_len);
            }
            Some(t) => {
                let bv = base.map(|b| self.regs[b as usize]);
                match (base, index) {
                    (Some(b), Some(i)) if b == i => {
                        let c = scale + 1;
                        if fixed(self, b) {
                            disp = t.wrapping_sub(bv.unwrap().wrapping_mul(c)) & amask;
                            if !fits(disp, disp_len) {
                                return None;
                            }
                        } else {
                            if disp_len == 0 {
                                disp_len = 1;
                            }
                            disp = rand_disp(self, disp_len);
                            let mut x = t.wrapping_sub(disp);
                            if c == 2 {
                                if x & 1 != 0 {
                                    disp ^= 1;
                                    x = t.wrapping_sub(disp);
                                }
                                let k = self.rng.next() & 1;
                                let v = ((x & amask) >> 1) | (k << if a32 { 31 } else { 63 });
                                self.regs[b as usize] = v | garbage(self);
                            } else {
                                // c is odd: multiply by its inverse modulo 2^64 (or 2^32).
                                let v = x.wrapping_mul(inverse(c)) & amask;
                                self.regs[b as usize] = v | garbage(self);
                            }
                        }
                    }
                    _ => {
                        let iv = index.map(|i| self.regs[i as usize]);
                        let base_fixed = base.is_none_or(|b| fixed(self, b));
                        let index_fixed = index.is_none_or(|i| fixed(self, i));
                        let bval = bv.unwrap_or(0);
                        if !base_fixed {
                            // Base absorbs everything: random index (if not fixed) and disp.
                            let ivv = match index {
                                Some(i) if !index_fixed => {
                                    let v = self.val(8);
                                    self.regs[i as usize] = v;
                                    v
                                }
                                _ => iv.unwrap_or(0),
                            };
                            disp = rand_disp(self, disp_len);
                            let b = t.wrapping_sub(disp).wrapping_sub(ivv.wrapping_mul(scale)) & amask;
                            self.regs[base.unwrap() as usize] = b | garbage(self);
                        } else if !index_fixed {
                            // Fixed (or no) base: the index absorbs the rest, disp fixes the
                            // low bits the scale cannot reach.
                            disp = rand_disp(self, disp_len);
                            let mut x = t.wrapping_sub(disp).wrapping_sub(bval);
                            let lo = x & (scale - 1);
                            if lo != 0 {
                                if disp_len == 0 {
                                    return None;
                                }
                                disp = disp.wrapping_add(lo);
                                if !fits(disp, disp_len) {
                                    return None;
                                }
                                x = t.wrapping_sub(disp).wrapping_sub(bval);
                            }
                            let top = if a32 { 32 } else { 64 } - scale.trailing_zeros();
                            let k = if top < 64 { self.rng.next() << top } else { 0 };
                            let v = ((x & amask) >> scale.trailing_zeros()) | (k & amask);
                            self.regs[index.unwrap() as usize] = v | garbage(self);
                        } else {
                            disp = t.wrapping_sub(bval).wrapping_sub(iv.unwrap_or(0).wrapping_mul(scale)) & amask;
                            if !fits(disp, disp_len) {
                                if fits(disp, 4) && disp_len != 0 && base.is_some() {
                                    disp_len = 4;
                                } else {
                                    return None;
                                }
                            }
                        }
                    }
                }
            }
        }
        disp &= 0xFFFF_FFFF;
        if target.is_some() {
            // Later instructions of the case must not change what this address depends on.
            for r in [base, index].into_iter().flatten() {
                self.fixed |= 1 << r;
            }
        }
        let (md, b_bits) = match disp_len {
            0 => (0u8, base.unwrap_or(5)),
            1 => (1, base.unwrap_or(5)),
            _ => (if base.is_some() { 2 } else { 0 }, base.unwrap_or(5)),
        };
        let needs_sib = index.is_some() || base.is_none() || b_bits & 7 == 4;
        let (rm, sib, x) = if needs_sib {
            let i = index.unwrap_or(4);
            let ss = scale.trailing_zeros() as u8;
            (4u8, Some((ss << 6) | ((i & 7) << 3) | (b_bits & 7)), i & 8 != 0)
        } else {
            (b_bits & 7, None, false)
        };
        Some(MemEnc { md, rm, sib, disp: disp as u32, disp_len, x, b: base.is_some_and(|b| b & 8 != 0), rip_target: None })
    }
}

/// Inverse of odd `c` modulo 2^64 (Newton's iteration).
fn inverse(c: u64) -> u64 {
    let mut x = c;
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(c.wrapping_mul(x)));
    }
    x
}

struct MemEnc {
    md: u8,
    rm: u8,
    sib: Option<u8>,
    disp: u32,
    disp_len: usize,
    x: bool,
    b: bool,
    /// RIP-relative: the displacement is fixed up once the instruction length is known.
    rip_target: Option<u64>,
}

//! Fixed cases: hand-picked edge cases, and one regression case per Heron bug the harness
//! found (named after the bug).

use super::classes::class_index;
use super::gen::{f, fx, Case, PAGE, STACK, WIN};
use super::native::DATA;

/// A case with the given code, registers (index, value) and flags; other registers zero,
/// RSP = `STACK`, data window filled with a fixed pattern.
fn case(name: &'static str, class: &str, code: &[u8], regs: &[(usize, u64)], flags: u64) -> Case {
    let mut r = [0u64; 16];
    r[4] = STACK;
    for &(i, v) in regs {
        r[i] = v;
    }
    let data = (0..WIN).map(|k| (k as u8).wrapping_mul(37).wrapping_add(11)).collect();
    Case { class: class_index(class), code: code.to_vec(), regs: r, flags, data, undef: 0, fx: fx::reset(), fsw_undef: 0, fsw_sdm: (0, 0), name: Some(name) }
}

fn with_data(mut c: Case, at: u64, bytes: &[u8]) -> Case {
    let o = (at - DATA) as usize;
    c.data[o..o + bytes.len()].copy_from_slice(bytes);
    c
}

/// Compare `len` bytes of data (for long REP strings) instead of the default window.
fn big(mut c: Case, len: usize) -> Case {
    c.data = (0..len).map(|k| (k as u8).wrapping_mul(37).wrapping_add(11) ^ (k >> 8) as u8).collect();
    c
}

/// An 80-bit x87 value from its sign/exponent and significand.
fn f80(se: u16, sig: u64) -> [u8; 10] {
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&sig.to_le_bytes());
    b[8..].copy_from_slice(&se.to_le_bytes());
    b
}

/// Set the case's x87 state: FCW, FSW (TOP included), abridged tag word and ST0, ST1, ...
fn x87(mut c: Case, fcw: u16, fsw: u16, ftw: u8, st: &[[u8; 10]]) -> Case {
    c.fx[fx::FCW..fx::FCW + 2].copy_from_slice(&fcw.to_le_bytes());
    c.fx[fx::FSW..fx::FSW + 2].copy_from_slice(&fsw.to_le_bytes());
    c.fx[fx::FTW] = ftw;
    for (i, v) in st.iter().enumerate() {
        c.fx[fx::ST + 16 * i..fx::ST + 16 * i + 10].copy_from_slice(v);
    }
    c
}

/// Set MXCSR and the low dwords of XMM0 and XMM1.
fn sse(mut c: Case, mxcsr: u32, x0: u32, x1: u32) -> Case {
    c.fx[fx::MXCSR..fx::MXCSR + 4].copy_from_slice(&mxcsr.to_le_bytes());
    c.fx[fx::XMM..fx::XMM + 4].copy_from_slice(&x0.to_le_bytes());
    c.fx[fx::XMM + 16..fx::XMM + 20].copy_from_slice(&x1.to_le_bytes());
    c
}

const ONE: [u8; 10] = [0, 0, 0, 0, 0, 0, 0, 0x80, 0xFF, 0x3F];

fn undef(mut c: Case, u: u64) -> Case {
    c.undef = u;
    c
}

const X87_ARITH: &str = "x87 arithmetic (FADD..FDIVR, FSQRT, FPREM..)";
const X87_CTRL: &str = "x87 control (FLDCW/FNSTCW/FNSTSW/FXCH/FCMOV..)";
const X87_CMP: &str = "x87 compares (FCOM/FUCOM/FCOMI/FTST/FXAM..)";
const MMX: &str = "MMX (arith, shifts, packs, MOVQ, CVT*PI*..)";
const SSE_SCALAR: &str = "SSE FP arithmetic SS/SD (ADD..SQRT)";

const RAX: usize = 0;
const RCX: usize = 1;
const RDX: usize = 2;
const RBX: usize = 3;
const RSP: usize = 4;
const RBP: usize = 5;
const RSI: usize = 6;
const RDI: usize = 7;

pub fn cases() -> Vec<Case> {
    vec![
        // ---- regressions: bugs the harness found in Heron ----
        // Shifts, rotates and SHLD/SHRD whose masked count is 0 left a 32-bit register
        // destination's upper half in place; the register is still written (zero-extended).
        case("bug: shl r32 by imm 0 must zero-extend", "SHL", &[0xC1, 0xE5, 0x00], &[(RBP, 0x0071_4845_0E60_189F)], f::OF | f::CF),
        case("bug: rol r32 by cl=32 (masked 0) must zero-extend", "ROL", &[0xD3, 0xC0], &[(RAX, 0x8000_0000_8000_0020), (RCX, 32)], f::ZF),
        case("bug: rcl r32 by imm 0x20 (masked 0) must zero-extend", "RCL", &[0x41, 0xC1, 0xD2, 0x20], &[(10, 0xE3AD_05CF_0000_001F)], f::CF),
        case("bug: sar r32 by imm 0x80 (masked 0) must zero-extend", "SAR", &[0xC1, 0xFB, 0x80], &[(RBX, 0xFFFF_FFFF_457A_30BC)], f::PF),
        case("bug: shld r32 by cl=0x20 (masked 0) must zero-extend", "SHLD", &[0x41, 0x0F, 0xA5, 0xD0], &[(8, 0x906F_C057_FFFF_FFFF), (RDX, 5), (RCX, 0x20)], f::SF),
        case("bug: shrd r32 by imm 0x20 (masked 0) must zero-extend", "SHRD", &[0x44, 0x0F, 0xAC, 0xF6, 0x20], &[(RSI, 0xF6EF_CA34_FFFF_FFFF), (14, 1)], 0),
        // SCAS took its address size from operand 0 (the accumulator, not the string
        // operand), so 67 AE used all of RDI and faulted (#GP) on a non-canonical RDI.
        case("bug: scasb with 0x67 must use EDI", "SCAS", &[0x67, 0xAE], &[(RDI, 0xCE69_CD85_0020_0FFA), (RAX, 0x04)], f::ZF),
        case("bug: repne scasq with 0x67 must use EDI and ECX", "SCAS", &[0x67, 0xF2, 0x48, 0xAF], &[(RDI, 0x54E3_F3A8_0020_1939), (RCX, 0x8C02_5A92_0000_0008), (RAX, 1)], 0),
        // The REP MOVS fast path copied overlapping blocks byte by byte; with source and
        // destination closer than the element size, hardware (element by element, each read
        // whole before it is written) gives a different result.
        case("bug: rep movsd, destination 2 bytes above source", "MOVS", &[0xF3, 0xA5], &[(RSI, DATA + 0x16E9), (RDI, DATA + 0x16EB), (RCX, 25)], 0),
        case("bug: rep movsq backwards, destination 5 bytes below source", "MOVS", &[0xF3, 0x48, 0xA5], &[(RSI, DATA + 0x8E4), (RDI, DATA + 0x8DF), (RCX, 23)], f::DF),
        case("bug: rep movsw, destination 1 byte above source", "MOVS", &[0x66, 0xF3, 0xA5], &[(RSI, DATA + 0x17F8), (RDI, DATA + 0x17F9), (RCX, 19)], 0),
        // FPREM/FPREM1 without a quotient (stack underflow, NaN or invalid operand) cleared C0
        // and C3 or kept C2; the host clears C2 (and C1) and keeps C0 and C3.
        x87(case("bug: fprem with ST1 empty clears C2, keeps C0/C3", X87_ARITH, &[0xD9, 0xF8], &[], 0), 0x037F, 0x4500, 0x01, &[ONE]),
        x87(case("bug: fprem of an SNaN keeps C0/C3", X87_ARITH, &[0xD9, 0xF8], &[], 0), 0x037F, 0x4100, 0x03, &[f80(0x7FFF, 0xA000_0000_0000_0000), ONE]),
        x87(case("bug: fprem of infinity (invalid) keeps C0/C3, clears C1/C2", X87_ARITH, &[0xD9, 0xF8], &[], 0), 0x037F, 0x4700, 0x03, &[f80(0x7FFF, 1 << 63), ONE]),
        // FCMOVcc cleared C1 (SDM Vol. 2A FCMOVcc: "C1 Set to 0 if stack underflow occurred").
        x87(case("bug: fprem1 of an SNaN with IE unmasked clears C2", X87_ARITH, &[0xD9, 0xF5], &[], 0), 0x0376, 0x0500, 0x03, &[f80(0x7FFF, 0xA000_0000_0000_0000), ONE]),
        x87(case("bug: fxtract of an SNaN with IE unmasked clears C1", X87_ARITH, &[0xD9, 0xF4], &[], 0), 0x0376, 0x0200, 0x01, &[f80(0x7FFF, 0xA000_0000_0000_0000)]),
        x87(case("bug: fxtract of zero with ZE unmasked clears C1", X87_ARITH, &[0xD9, 0xF4], &[], 0), 0x037B, 0x0200, 0x01, &[f80(0x8000, 0)]),
        x87(case("bug: fcmovb keeps C1 without a stack underflow", X87_CTRL, &[0xDA, 0xC1], &[], f::CF), 0x037F, 0x0200, 0x03, &[ONE, f80(0x4000, 1 << 63)]),
        // CVTPI2PS made the x87→MMX transition (TOP = 0, all tags valid) even with a memory
        // source; a faulting MMX instruction left the transition behind.
        x87(case("bug: cvtpi2ps xmm0, [rbx] makes no MMX transition", MMX, &[0x0F, 0x2A, 0x03], &[(RBX, DATA + 0x100)], 0), 0x037F, 0x1800, 0x08, &[ONE]),
        x87(case("bug: misaligned cvttpd2pi faults (#GP) without an MMX transition", MMX, &[0x66, 0x0F, 0x2C, 0x03], &[(RBX, DATA + 0x101)], 0), 0x037F, 0x2800, 0x20, &[ONE]),
        // With overflow/underflow unmasked, PE was always added; it reports whether the result
        // rounded with an unbounded exponent is inexact (the #XM handler's scaled result).
        sse(case("bug: unmasked overflow, exact result: OE without PE", SSE_SCALAR, &[0xF3, 0x0F, 0x59, 0xC1], &[], 0), 0x1B80, 0x7F00_0000, 0x4000_0000),
        sse(case("bug: unmasked underflow, denormal inexact but exact unbounded: UE without PE", SSE_SCALAR, &[0xF3, 0x0F, 0x59, 0xC1], &[], 0), 0x1780, 0x0080_0001, 0x3F00_0000),
        sse(case("unmasked overflow, inexact result: OE and PE", SSE_SCALAR, &[0xF3, 0x0F, 0x59, 0xC1], &[], 0), 0x1B80, 0x7F7F_FFFF, 0x7F7F_FFFF),
        // FCOMI: C1 = 0 as the SDM states (the AMD host keeps it; see classes.rs).
        {
            let mut c = x87(case("fcomi sets C1 to 0", X87_CMP, &[0xDB, 0xF1], &[], 0), 0x037F, 0x0200, 0x03, &[ONE, ONE]);
            c.fsw_sdm = (fx::C1, 0);
            c
        },

        // ---- edge cases ----
        case("add rax, rax (aliased, carry out)", "ADD", &[0x48, 0x01, 0xC0], &[(RAX, 0x8000_0000_0000_0001)], 0),
        case("adc al, 0xFF with CF=1", "ADC", &[0x14, 0xFF], &[(RAX, 0x7F)], f::CF),
        case("sbb eax, eax with CF=1 zero-extends", "SBB", &[0x19, 0xC0], &[(RAX, 0xFFFF_FFFF_0000_0000)], f::CF),
        case("neg of the minimum", "NEG", &[0x48, 0xF7, 0xD8], &[(RAX, 1 << 63)], 0),
        case("xor ah, ah keeps al", "XOR", &[0x30, 0xE4], &[(RAX, 0x1234)], f::AF),
        undef(case("shl cl by cl=65 (masked to 1)", "SHL", &[0xD2, 0xE1], &[(RCX, 65)], 0), f::AF),
        undef(case("sar 8-bit by 31", "SAR", &[0xC0, 0xF8, 31], &[(RAX, 0x80)], 0), f::AF | f::OF),
        undef(case("rcl 8-bit by 9 (identity, CF kept)", "RCL", &[0xC0, 0xD0, 9], &[(RAX, 0xA5)], f::CF), f::OF),
        undef(case("rcr 16-bit by 17", "RCR", &[0x66, 0xC1, 0xD8, 17], &[(RAX, 0x8001)], 0), f::OF),
        undef(case("rol 8-bit by 8 (CF = bit 0)", "ROL", &[0xC0, 0xC0, 8], &[(RAX, 0x81)], 0), f::OF),
        undef(case("shld 16-bit by 16 (result = source)", "SHLD", &[0x66, 0x0F, 0xA4, 0xD8, 16], &[(RAX, 0x1234), (RBX, 0xABCD)], 0), f::AF | f::OF),
        undef(case("imul r64 overflow", "IMUL (2-operand)", &[0x48, 0x0F, 0xAF, 0xC3], &[(RAX, 1 << 62), (RBX, 2)], 0), f::SF | f::ZF | f::AF | f::PF),
        undef(case("div by zero", "DIV", &[0xF7, 0xF1], &[(RAX, 5), (RCX, 0)], 0), f::ALL),
        undef(case("idiv quotient overflow (min / -1)", "IDIV", &[0x48, 0xF7, 0xF9], &[(RAX, 1 << 63), (RDX, u64::MAX), (RCX, u64::MAX)], 0), f::ALL),
        undef(case("div 8-bit quotient overflow", "DIV", &[0xF6, 0xF1], &[(RAX, 0x0200), (RCX, 2)], 0), f::ALL),
        undef(case("idiv 16-bit -32768 / 1", "IDIV", &[0x66, 0xF7, 0xF9], &[(RAX, 0x8000), (RDX, 0xFFFF), (RCX, 1)], 0), f::ALL),
        undef(
            case("bt mem with negative register offset", "BT", &[0x48, 0x0F, 0xA3, 0x0B], &[(RBX, PAGE), (RCX, (-100i64) as u64)], 0),
            f::OF | f::SF | f::AF | f::PF,
        ),
        undef(case("bsf zero source keeps destination", "BSF", &[0x0F, 0xBC, 0xC1], &[(RAX, 0xDEAD_BEEF_1234_5678), (RCX, 0)], 0), f::CF | f::OF | f::SF | f::AF | f::PF),
        undef(case("bsr 64-bit", "BSR", &[0x48, 0x0F, 0xBD, 0xC1], &[(RCX, 1 << 63)], f::ZF), f::CF | f::OF | f::SF | f::AF | f::PF),
        case("popcnt zero", "POPCNT", &[0xF3, 0x48, 0x0F, 0xB8, 0xC1], &[(RCX, 0), (RAX, 7)], f::CF | f::OF),
        case("rep movsb backwards, overlapping", "MOVS", &[0xF3, 0xA4], &[(RSI, PAGE + 4), (RDI, PAGE + 6), (RCX, 9)], f::DF),
        case("rep stosq across the page boundary", "STOS", &[0xF3, 0x48, 0xAB], &[(RDI, PAGE - 20), (RCX, 6), (RAX, 0x1122_3344_5566_7788)], 0),
        case("repne scasb finds nothing (count 0)", "SCAS", &[0xF2, 0xAE], &[(RDI, PAGE), (RCX, 0)], f::ZF),
        case("repe cmpsd, 32-bit address size", "CMPS", &[0x67, 0xF3, 0xA7], &[(RSI, 0xFFFF_0000_0000_0000 | (PAGE - 8)), (RDI, PAGE + 0x100), (RCX, 4)], 0),
        case("sahf; lahf", "LAHF/SAHF", &[0x9E, 0x9F], &[(RAX, 0xFF00)], f::OF),
        case("cmovne r32 not taken zero-extends", "CMOVcc", &[0x0F, 0x45, 0xC1], &[(RAX, 0xFFFF_FFFF_FFFF_FFFF), (RCX, 5)], f::ZF),
        case("cmpxchg r32 equal", "CMPXCHG", &[0x0F, 0xB1, 0xCB], &[(RAX, 0xAAAA_0000_0000_0007), (RBX, 0xBBBB_0000_0000_0007), (RCX, 0x1_0000_0009)], 0),
        case("cmpxchg r32 not equal", "CMPXCHG", &[0x0F, 0xB1, 0xCB], &[(RAX, 0xAAAA_0000_0000_0006), (RBX, 0xBBBB_0000_0000_0007), (RCX, 0x1_0000_0009)], 0),
        case("xadd rax, rax", "XADD", &[0x48, 0x0F, 0xC1, 0xC0], &[(RAX, 21)], 0),
        case("xchg r8d, eax (41 90)", "XCHG", &[0x41, 0x90], &[(RAX, 0xFFFF_FFFF_0000_0001), (8, 0xEEEE_EEEE_0000_0002)], 0),
        case("cmpxchg16b equal", "CMPXCHG16B", &[0x48, 0x0F, 0xC7, 0x0E], &[(RSI, PAGE + 0x40), (RAX, 0x4746_4544_4342_4140), (RDX, 0x4F4E_4D4C_4B4A_4948), (RBX, 1), (RCX, 2)], 0),
        with_data(
            case("cmpxchg8b across the page boundary", "CMPXCHG8B", &[0x0F, 0xC7, 0x0E], &[(RSI, PAGE - 3), (RAX, 0x0403_0201), (RDX, 0x0807_0605), (RBX, 9), (RCX, 10)], 0),
            PAGE - 3,
            &[1, 2, 3, 4, 5, 6, 7, 8],
        ),
        case("movsxd rax, dword [rbx]", "MOVZX/MOVSX/MOVSXD", &[0x48, 0x63, 0x03], &[(RBX, PAGE - 2)], 0),
        case("movzx eax, ah", "MOVZX/MOVSX/MOVSXD", &[0x0F, 0xB6, 0xC4], &[(RAX, 0xFFFF_FFFF_FFFF_80FF)], 0),
        case("cqo", "CBW/CWDE/CDQE/CWD/CDQ/CQO", &[0x48, 0x99], &[(RAX, 1 << 63)], 0),
        case("lea eax, [rip+x] (32-bit destination)", "LEA", &[0x8D, 0x05, 0x78, 0x56, 0x34, 0x12], &[], 0),
        case("lea with 0x67 wraps at 4 GiB", "LEA", &[0x67, 0x48, 0x8D, 0x44, 0x48, 0x10], &[(RAX, 0xFFFF_FFF0), (RCX, 0x8000_0000_0000_0001)], 0),
        case("lea with 0x67, [disp32] only", "LEA", &[0x67, 0x48, 0x8D, 0x04, 0x25, 0x00, 0x00, 0x00, 0x80], &[], 0),
        case("enter 16, 3; leave", "ENTER/LEAVE", &[0xC8, 0x10, 0x00, 0x03, 0xC9], &[(RSP, PAGE + 4), (RBP, PAGE + 0x700)], 0),
        case("push rsp; pop rsp", "PUSH/POP", &[0x54, 0x5C], &[(RSP, PAGE + 4)], 0),
        case("pop qword [rsp] (address after increment)", "PUSH/POP", &[0x8F, 0x04, 0x24], &[(RSP, PAGE - 4)], 0),
        case("push word imm across the page boundary", "PUSH/POP", &[0x66, 0x68, 0x34, 0x12], &[(RSP, PAGE + 1)], 0),
        case("add [disp32] crossing the page boundary", "memory operands crossing a page boundary", &[0x48, 0x01, 0x04, 0x25, 0xFD, 0x0F, 0x20, 0x00], &[(RAX, 0x0101_0101_0101_0101)], 0),
        case("cmp eax, ebx; setl cl (lazy flags)", "lazy flags: producer + 1-3 consumers", &[0x39, 0xD8, 0x0F, 0x9C, 0xC1], &[(RAX, 0x8000_0000), (RBX, 1)], 0),
        case("add; adc (lazy CF)", "lazy flags: producer + 1-3 consumers", &[0x48, 0x01, 0xD8, 0x48, 0x11, 0xD1], &[(RAX, u64::MAX), (RBX, 1), (RCX, 5), (RDX, 6)], 0),
        case("inc keeps lazy CF", "lazy flags: producer + 1-3 consumers", &[0x48, 0x01, 0xD8, 0xFF, 0xC1, 0x0F, 0x92, 0xC2], &[(RAX, u64::MAX), (RBX, 1), (RCX, u64::MAX)], 0),
        case("sub; lahf", "lazy flags: producer + 1-3 consumers", &[0x2C, 0x01, 0x9F], &[(RAX, 0x10)], 0),
        case("bswap r64", "BSWAP", &[0x49, 0x0F, 0xC8], &[(8, 0x0102_0304_0506_0708)], 0),
        case("setc sil (REX byte register)", "SETcc", &[0x40, 0x0F, 0x92, 0xC6], &[(RSI, u64::MAX)], f::CF),
        case("mov ah across page", "MOV (page-crossing operands)", &[0x8A, 0x63, 0x00], &[(RBX, PAGE - 1)], 0),
        case("movs with rep count in ecx, 0x67, upper rcx garbage", "MOVS", &[0x67, 0xF3, 0xA5], &[(RSI, PAGE - 6), (RDI, DATA + 0x1800), (RCX, 0x1234_5678_0000_0003)], 0),
        case("unused registers", "ADD", &[0x4D, 0x01, 0xF7], &[(14, 3), (15, 4), (RDX, 9), (RBP, 1)], 0),
        // REP counts beyond Heron's REP_CHUNK (16384 iterations per slice).
        big(case("rep stosb, 20000 bytes", "STOS", &[0xF3, 0xAA], &[(RDI, DATA + 0x100), (RCX, 20000), (RAX, 0x5A)], 0), 0x6000),
        big(case("rep movsb, 18000 bytes, DF=1", "MOVS", &[0xF3, 0xA4], &[(RSI, DATA + 0x5F00), (RDI, DATA + 0x7F00), (RCX, 18000)], f::DF), 0x8000),
        big(case("rep movsw overlapping by one byte, 17000 words", "MOVS", &[0x66, 0xF3, 0xA5], &[(RSI, DATA + 0x10), (RDI, DATA + 0x11), (RCX, 17000)], 0), 0x8000),
        big(case("repe cmpsb equal for 17000 bytes", "CMPS", &[0xF3, 0xA6], &[(RSI, DATA), (RDI, DATA), (RCX, 17000)], 0), 0x6000),
        big(case("repne scasb over 0x5000 bytes", "SCAS", &[0xF2, 0xAE], &[(RDI, DATA + 1), (RCX, 0x5000), (RAX, 0x100)], 0), 0x6000),
    ]
}

//! The host oracle: run instruction bytes natively with all 16 GPRs, RFLAGS and the x87/MMX/SSE
//! state (an FXSAVE image: x87 registers and control/status/tag words, MXCSR, XMM0–15) loaded
//! from a case, and capture all of them and the data window afterwards.
//!
//! Heron's `TestCpu` identity-maps its guest-physical addresses, so the host maps the same
//! addresses (code at `CODE`, the data area at `DATA`) into this process with raw
//! `mmap(MAP_FIXED_NOREPLACE)` syscalls (the technique of `src/x87/tests.rs`, whose small
//! helper is copied here rather than imported from test-only code). The same bytes, register
//! values and memory addresses then mean the same thing on both sides, including RIP-relative
//! operands (the instruction bytes sit at exactly `CODE` on both).
//!
//! Faults (#DE/#MF/#XM → SIGFPE, #GP/#PF → SIGSEGV, #UD → SIGILL) are caught by a signal
//! handler that redirects the faulting context to a recovery stub, so a case that raises an
//! exception natively reports the signal (and the kernel's trap number, the exception vector)
//! instead of killing the test process. The host's own FP state is saved before a case and
//! restored after it (FXSAVE64/FXRSTOR64), so a case's MXCSR or x87 state never leaks out.

use std::arch::asm;

/// Where the instruction bytes run (same as `heron_cpu::testutil::CODE`).
pub const CODE: u64 = 0x10_0000;
/// The data area (same as `heron_cpu::testutil::DATA`); 64 KiB are mapped.
pub const DATA: u64 = 0x20_0000;
const DATA_LEN: usize = 0x1_0000;

/// Trampoline entry: saves the host state, loads the case state, jumps to `CODE`.
const ENTRY: u64 = CODE + 0x1000;
/// Epilogue: stores the case state, restores the host state.
const EPILOGUE: u64 = CODE + 0x1800;
/// Where a caught fault resumes.
const RECOVER: u64 = CODE + 0x1C00;
/// Control block (RW): input/output state, saved host RSP, fault info, a scratch stack.
const CTL: u64 = CODE + 0x2000;
const IN_REGS: u64 = CTL;
const IN_FLAGS: u64 = CTL + 0x80;
const OUT_REGS: u64 = CTL + 0x100;
const OUT_FLAGS: u64 = CTL + 0x180;
const SAVE_RSP: u64 = CTL + 0x200;
const SIGNO: u64 = CTL + 0x208;
/// glibc's `gregs[0..23]` (R8–R15, RDI, RSI, RBP, RBX, RDX, RAX, RCX, RSP, RIP, EFL, CSGSFS,
/// ERR, TRAPNO, OLDMASK, CR2) at a fault.
const FAULT_REGS: u64 = CTL + 0x280;
const FAULT_GREGS: usize = 23;
/// FXSAVE images (16-byte aligned): the host's state, the case's input and its output.
const HOST_FX: u64 = CTL + 0x400;
const IN_FX: u64 = CTL + 0x600;
const OUT_FX: u64 = CTL + 0x800;
const SCRATCH_TOP: u64 = CTL + 0x1000;
/// Code plus control block.
const CODE_LEN: usize = 0x3000;
/// Largest instruction sequence a case may have.
pub const MAX_CODE: usize = 0xF00;

/// Signals that stand for exceptions.
pub const SIGILL: i32 = 4;
pub const SIGBUS: i32 = 7;
pub const SIGFPE: i32 = 8;
pub const SIGSEGV: i32 = 11;

/// Size of an FXSAVE image (Intel SDM Vol. 1 §10.5.1, Table 10-2).
pub const FX_LEN: usize = 512;

/// What a native run produced.
pub struct NativeOut {
    pub regs: [u64; 16],
    pub rflags: u64,
    /// The FXSAVE64 image after the case (at a fault: the state at the faulting instruction).
    pub fx: Box<[u8; FX_LEN]>,
    /// The signal a fault raised, if any; then `regs`, `rflags` and `rip` are the state at
    /// the faulting instruction.
    pub signal: Option<i32>,
    /// The kernel's trap number at a fault: the exception vector (sigcontext `trapno`).
    pub trapno: u64,
    pub rip: u64,
}

fn mmap_fixed(addr: u64, len: usize, prot: usize) {
    let ret: isize;
    // MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE.
    let flags = 0x02usize | 0x20 | 0x10_0000;
    // SAFETY: a raw Linux mmap(addr, len, prot, flags, -1, 0) syscall; MAP_FIXED_NOREPLACE
    // fails instead of replacing anything already mapped there.
    unsafe {
        asm!("syscall", inlateout("rax") 9isize => ret, in("rdi") addr, in("rsi") len, in("rdx") prot,
             in("r10") flags, in("r8") -1isize, in("r9") 0usize, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    assert!(ret as u64 == addr, "mmap({addr:#x}, {len:#x}) failed: {ret} (address range in use?)");
}

/// The calling thread's FS and GS bases (arch_prctl ARCH_GET_FS / ARCH_GET_GS).
pub fn seg_bases() -> [u64; 2] {
    let mut out = [0u64; 2];
    for (k, code) in [0x1003usize, 0x1004].into_iter().enumerate() {
        let ret: isize;
        // SAFETY: arch_prctl(code, &mut out[k]) writes one u64.
        unsafe {
            asm!("syscall", inlateout("rax") 158isize => ret, in("rdi") code, in("rsi") &mut out[k] as *mut u64,
                 lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        assert_eq!(ret, 0, "arch_prctl({code:#x})");
    }
    out
}

// ---- signal handling (glibc's struct sigaction layout on x86-64) ----

#[repr(C)]
struct SigAction {
    handler: usize,
    mask: [u64; 16],
    flags: i32,
    restorer: usize,
}

extern "C" {
    fn sigaction(sig: i32, act: *const SigAction, old: *mut SigAction) -> i32;
}

const SA_SIGINFO: i32 = 4;
const SA_ONSTACK: i32 = 0x0800_0000;
/// Offset of `uc_mcontext.gregs[REG_RIP]` in glibc's x86-64 `ucontext_t`.
const UC_RIP: usize = 40 + 16 * 8;

static mut OLD: [SigAction; 4] = [const { SigAction { handler: 0, mask: [0; 16], flags: 0, restorer: 0 } }; 4];
const SIGNALS: [i32; 4] = [SIGILL, SIGBUS, SIGFPE, SIGSEGV];

extern "C" fn on_fault(sig: i32, _info: *mut u8, uc: *mut u8) {
    // SAFETY: the kernel passes a valid ucontext_t; the control block is mapped.
    unsafe {
        let rip = uc.add(UC_RIP) as *mut u64;
        if (CODE..CODE + 0x2000).contains(&*rip) {
            *(SIGNO as *mut u64) = sig as u64;
            std::ptr::copy_nonoverlapping(uc.add(UC_RIP - 16 * 8), FAULT_REGS as *mut u8, FAULT_GREGS * 8);
            *rip = RECOVER;
        } else if let Some(k) = SIGNALS.iter().position(|&s| s == sig) {
            // Not ours: put the previous handler back; the faulting instruction re-executes.
            sigaction(sig, std::ptr::addr_of!(OLD[k]), std::ptr::null_mut());
        }
    }
}

fn install_handlers() {
    for (k, &sig) in SIGNALS.iter().enumerate() {
        let act = SigAction { handler: on_fault as *const () as usize, mask: [0; 16], flags: SA_SIGINFO | SA_ONSTACK, restorer: 0 };
        // SAFETY: installing a handler with glibc's sigaction; OLD is written once, before any
        // case runs, under the executor's lock.
        let r = unsafe { sigaction(sig, &act, std::ptr::addr_of_mut!(OLD[k])) };
        assert_eq!(r, 0, "sigaction({sig})");
    }
}

// ---- the trampoline ----

/// `mov [abs32], r64` or `mov r64, [abs32]`.
fn mov_abs(c: &mut Vec<u8>, store: bool, r: u8, addr: u64) {
    c.push(0x48 | if r & 8 != 0 { 4 } else { 0 });
    c.push(if store { 0x89 } else { 0x8B });
    c.push(((r & 7) << 3) | 4);
    c.push(0x25);
    c.extend_from_slice(&(addr as u32).to_le_bytes());
}

/// `fxsave64 [abs32]` (`restore` false) or `fxrstor64 [abs32]`.
fn fx_abs(c: &mut Vec<u8>, restore: bool, addr: u64) {
    c.extend_from_slice(&[0x48, 0x0F, 0xAE, if restore { 0x0C } else { 0x04 }, 0x25]);
    c.extend_from_slice(&(addr as u32).to_le_bytes());
}

fn restore_host(c: &mut Vec<u8>, ret: u8) {
    fx_abs(c, false, OUT_FX); // the case's FP state, then the host's back
    fx_abs(c, true, HOST_FX);
    mov_abs(c, false, 4, SAVE_RSP); // mov rsp, [SAVE_RSP]
    c.push(0xFC); // cld
    c.extend_from_slice(&[0x41, 0x5F, 0x41, 0x5E, 0x41, 0x5D, 0x41, 0x5C, 0x5D, 0x5B]); // pop r15..r12, rbp, rbx
    c.extend_from_slice(&[0xB8, ret, 0, 0, 0, 0xC3]); // mov eax, ret; ret
}

fn put(addr: u64, bytes: &[u8]) {
    // SAFETY: callers only write inside the mappings made by `Native::new`.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) }
}

/// The native executor. Only one may exist (it owns fixed addresses); serialize users.
pub struct Native;

impl Native {
    /// Map the code, control and data areas and install the fault handlers.
    pub fn new() -> Native {
        mmap_fixed(CODE, CODE_LEN, 7);
        mmap_fixed(DATA, DATA_LEN, 3);
        install_handlers();
        // Entry: save callee-saved registers and RSP, load RFLAGS and the 16 GPRs, jump to CODE.
        let mut c = vec![0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57]; // push rbx..r15
        mov_abs(&mut c, true, 4, SAVE_RSP);
        fx_abs(&mut c, false, HOST_FX);
        fx_abs(&mut c, true, IN_FX);
        c.extend_from_slice(&[0xFF, 0x34, 0x25]); // push qword [IN_FLAGS]
        c.extend_from_slice(&(IN_FLAGS as u32).to_le_bytes());
        c.push(0x9D); // popfq
        for r in 0..16u8 {
            mov_abs(&mut c, false, r, IN_REGS + 8 * r as u64);
        }
        let rel = CODE.wrapping_sub(ENTRY + c.len() as u64 + 5) as u32;
        c.push(0xE9);
        c.extend_from_slice(&rel.to_le_bytes());
        put(ENTRY, &c);
        // Epilogue: store the 16 GPRs (MOV leaves the flags alone), then RFLAGS via a scratch
        // stack, then return to the host.
        let mut c = Vec::new();
        for r in 0..16u8 {
            mov_abs(&mut c, true, r, OUT_REGS + 8 * r as u64);
        }
        c.extend_from_slice(&[0x48, 0xC7, 0xC4]); // mov rsp, SCRATCH_TOP
        c.extend_from_slice(&(SCRATCH_TOP as u32).to_le_bytes());
        c.push(0x9C); // pushfq
        c.extend_from_slice(&[0x8F, 0x04, 0x25]); // pop qword [OUT_FLAGS]
        c.extend_from_slice(&(OUT_FLAGS as u32).to_le_bytes());
        restore_host(&mut c, 0);
        put(EPILOGUE, &c);
        let mut c = Vec::new();
        restore_host(&mut c, 1);
        put(RECOVER, &c);
        Native
    }

    /// Run `code` with the given GPRs, RFLAGS (only status flags and DF are loaded; the host
    /// keeps IF, and TF/AC stay clear) and FP state (`fx`, an FXSAVE64 image with a valid
    /// MXCSR) over a data window copied to `DATA`; on return `data` holds the window's new
    /// contents.
    pub fn run(&mut self, code: &[u8], regs: &[u64; 16], rflags: u64, fx: &[u8; FX_LEN], data: &mut [u8]) -> NativeOut {
        assert!(code.len() <= MAX_CODE && data.len() <= DATA_LEN);
        let mut c = code.to_vec();
        let rel = EPILOGUE.wrapping_sub(CODE + c.len() as u64 + 5) as u32;
        c.push(0xE9); // jmp EPILOGUE
        c.extend_from_slice(&rel.to_le_bytes());
        put(CODE, &c);
        put(DATA, data);
        let mut inregs = [0u8; 128];
        for (k, r) in regs.iter().enumerate() {
            inregs[8 * k..8 * k + 8].copy_from_slice(&r.to_le_bytes());
        }
        put(IN_REGS, &inregs);
        let f = (rflags & (0x8D5 | 0x400)) | 0x202;
        put(IN_FLAGS, &f.to_le_bytes());
        put(IN_FX, fx);
        put(SIGNO, &0u64.to_le_bytes());
        let faulted: u64;
        // SAFETY: the trampoline saves and restores every callee-saved register and RSP, clears
        // DF before returning, and the case code only touches the mappings made above (a fault
        // is caught and resumes at the recovery stub, which restores the host state).
        unsafe {
            asm!("call {f}", f = in(reg) ENTRY, lateout("rax") faulted, clobber_abi("C"));
        }
        let mut out = NativeOut { regs: [0; 16], rflags: 0, fx: Box::new([0; FX_LEN]), signal: None, trapno: 0, rip: 0 };
        // SAFETY: reading the control block and data area mapped above.
        unsafe {
            for k in 0..16 {
                out.regs[k] = *((OUT_REGS + 8 * k as u64) as *const u64);
            }
            out.rflags = *(OUT_FLAGS as *const u64);
            if faulted != 0 {
                out.signal = Some(*(SIGNO as *const u64) as i32);
                let g = |k: u64| *((FAULT_REGS + 8 * k) as *const u64);
                // gregs order → Intel register numbers.
                const MAP: [u64; 16] = [13, 14, 12, 11, 15, 10, 9, 8, 0, 1, 2, 3, 4, 5, 6, 7];
                for (r, &k) in MAP.iter().enumerate() {
                    out.regs[r] = g(k);
                }
                out.rip = g(16);
                out.rflags = g(17);
                out.trapno = g(20);
            }
            std::ptr::copy_nonoverlapping(OUT_FX as *const u8, out.fx.as_mut_ptr(), FX_LEN);
            std::ptr::copy_nonoverlapping(DATA as *const u8, data.as_mut_ptr(), data.len());
        }
        out
    }
}

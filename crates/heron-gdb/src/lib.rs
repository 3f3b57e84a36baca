//! GDB remote stub for Heron (the gdbstub crate speaks the protocol): registers in the view
//! of the CPU's mode ([`regs::View`]), memory by linear address through the guest's page
//! tables, continue, Ctrl-C, single-step (one guest instruction, whatever the engine: the CPU
//! runs tier 0 while the debugger has anything armed), breakpoints and watchpoints kept by
//! the CPU outside guest memory ([`heron_cpu::debug`]), and `monitor` commands.
//!
//! [`run`] is the whole run of a machine with a debug port: it runs the guest, accepts a GDB
//! connection (at start with `wait`, or whenever one arrives), serves it until GDB detaches,
//! kills, or the guest ends, and goes on.

#![warn(missing_docs)]

pub mod regs;

use std::io::Write;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::Instant;

use gdbstub::arch::Arch;
use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::base::singlethread::{SingleThreadBase, SingleThreadResume, SingleThreadSingleStep};
use gdbstub::target::ext::base::single_register_access::SingleRegisterAccess;
use gdbstub::target::ext::breakpoints::{Breakpoints, HwBreakpoint, HwWatchpoint, SwBreakpoint, WatchKind as GdbWatch};
use gdbstub::target::ext::monitor_cmd::{outputln, ConsoleOutput, MonitorCmd};
use gdbstub::target::ext::target_description_xml_override::TargetDescriptionXmlOverride;
use gdbstub::target::{Target, TargetError, TargetResult};
use heron_cpu::debug::{DebugStop, WatchKind, Watchpoint};
use heron_machine::{ConsoleInput, Machine, MachineError, RunLimits, RunOutcome};
use regs::View;

/// Errors of the debug port.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// The `--gdb` address is not `tcp:HOST:PORT` (or `HOST:PORT`).
    #[error("invalid GDB address '{0}': expected tcp:HOST:PORT, e.g. tcp:127.0.0.1:1234")]
    BadAddress(String),
    /// Listening or accepting failed.
    #[error("GDB port {addr}: {err}")]
    Io {
        /// The address.
        addr: String,
        /// What failed.
        err: std::io::Error,
    },
    /// The machine failed while GDB was attached.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// The connection broke or GDB sent something the stub could not handle.
    #[error("GDB connection: {0}")]
    Protocol(String),
}

/// Guest instructions run between checks for GDB input (Ctrl-C) or a new connection: about
/// 10 ms of tier-1 code, 100 ms of tier 0.
const SLICE: u64 = 4_000_000;

/// A listening debug port.
pub struct GdbServer {
    listener: TcpListener,
    addr: String,
}

impl GdbServer {
    /// Listen on `spec`: `tcp:HOST:PORT` or `HOST:PORT` (QEMU's `-gdb` syntax; `-s` is
    /// `tcp:127.0.0.1:1234`). Port 0 picks a free port ([`GdbServer::local_addr`]).
    pub fn bind(spec: &str) -> Result<Self, GdbError> {
        let hostport = spec.strip_prefix("tcp:").unwrap_or(spec);
        let addrs: Vec<_> = hostport.to_socket_addrs().map_err(|_| GdbError::BadAddress(spec.to_string()))?.collect();
        let listener = TcpListener::bind(&addrs[..]).map_err(|err| GdbError::Io { addr: hostport.to_string(), err })?;
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| hostport.to_string());
        Ok(GdbServer { listener, addr })
    }

    /// The address it listens on (`HOST:PORT`).
    pub fn local_addr(&self) -> &str {
        &self.addr
    }

    fn io(&self, err: std::io::Error) -> GdbError {
        GdbError::Io { addr: self.addr.clone(), err }
    }

    /// Wait for GDB to connect.
    fn accept(&self) -> Result<TcpStream, GdbError> {
        self.listener.set_nonblocking(false).map_err(|e| self.io(e))?;
        let (s, _) = self.listener.accept().map_err(|e| self.io(e))?;
        s.set_nodelay(true).map_err(|e| self.io(e))?;
        Ok(s)
    }

    /// A connection if one is waiting.
    fn try_accept(&self) -> Result<Option<TcpStream>, GdbError> {
        self.listener.set_nonblocking(true).map_err(|e| self.io(e))?;
        match self.listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).map_err(|e| self.io(e))?;
                s.set_nodelay(true).map_err(|e| self.io(e))?;
                Ok(Some(s))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(self.io(e)),
        }
    }
}

/// The console and limits a run uses.
pub struct RunIo<'a> {
    /// Guest serial output.
    pub out: &'a mut dyn Write,
    /// Guest serial input.
    pub input: &'a mut dyn ConsoleInput,
    /// `--max-insns`, `--timeout` and the signal flag, for the whole run.
    pub limits: RunLimits,
}

/// Run `machine` with the debug port `server` until the guest ends (or GDB kills it). With
/// `wait`, nothing runs until GDB connects (QEMU's `-S`). A detached GDB leaves the guest
/// running without breakpoints; another GDB may connect later.
pub fn run(machine: &mut Machine, server: &GdbServer, wait: bool, io: RunIo) -> Result<RunOutcome, GdbError> {
    let mut t = Session { m: machine, io, start: Instant::now(), icount0: 0, view: View::X86_64, step: false, hw: Vec::new(), sw: Vec::new(), ended: None };
    t.icount0 = t.m.icount();
    let mut conn = if wait {
        eprintln!("heron: waiting for GDB on {}", server.local_addr());
        Some(server.accept()?)
    } else {
        None
    };
    loop {
        if let Some(c) = conn.take() {
            t.view = View::of(&t.m.cpu.s);
            t.step = false;
            let stub = GdbStub::new(c);
            let reason = stub.run_blocking::<EventLoop<'_, '_>>(&mut t);
            t.m.cpu.clear_debugger();
            t.hw.clear();
            t.sw.clear();
            if let Some(o) = t.ended.take() {
                return Ok(o);
            }
            match reason {
                Ok(DisconnectReason::Kill) => return Ok(RunOutcome::UserQuit),
                Ok(_) => {}
                // A debugger that went away without detaching leaves the guest running.
                Err(e) if e.is_connection_error() => eprintln!("heron: GDB connection lost ({e}); the guest runs on"),
                Err(e) if e.is_target_error() => return Err(GdbError::Machine(e.into_target_error().expect("a target error"))),
                Err(e) => return Err(GdbError::Protocol(e.to_string())),
            }
        }
        match t.run_slice()? {
            RunOutcome::InstructionLimit if !t.limit_reached() => conn = server.try_accept()?,
            // No debugger is attached: nothing is armed, so no debug stop can come.
            o => return Ok(o),
        }
    }
}

/// One GDB connection's target: the machine and what GDB set.
struct Session<'a, 'b> {
    m: &'a mut Machine,
    io: RunIo<'b>,
    start: Instant,
    /// Guest instructions retired when the run started (for `--max-insns`).
    icount0: u64,
    view: View,
    /// The next resume is a single-step.
    step: bool,
    /// Hardware and software breakpoints GDB inserted (both are CPU breakpoints; kept apart
    /// to report the right kind of stop).
    hw: Vec<u64>,
    sw: Vec<u64>,
    /// The guest ended while GDB was attached.
    ended: Option<RunOutcome>,
}

impl Session<'_, '_> {
    fn limit_reached(&self) -> bool {
        self.io.limits.max_insns.is_some_and(|n| self.m.icount() - self.icount0 >= n)
    }

    /// Run up to [`SLICE`] instructions within the run's limits.
    fn run_slice(&mut self) -> Result<RunOutcome, MachineError> {
        let l = &self.io.limits;
        let left = l.max_insns.map_or(u64::MAX, |n| n.saturating_sub(self.m.icount() - self.icount0));
        if left == 0 {
            return Ok(RunOutcome::InstructionLimit);
        }
        let timeout = match l.timeout {
            Some(t) if self.start.elapsed() >= t => return Ok(RunOutcome::Timeout),
            Some(t) => Some(t - self.start.elapsed()),
            None => None,
        };
        let limits = RunLimits { max_insns: Some(left.min(SLICE)), timeout, stop: l.stop.clone() };
        self.m.run(self.io.out, self.io.input, limits)
    }

    fn set_breakpoint(&mut self, addr: u64, hw: bool, on: bool) {
        let list = if hw { &mut self.hw } else { &mut self.sw };
        match list.iter().position(|&a| a == addr) {
            Some(k) if !on => {
                list.remove(k);
            }
            None if on => list.push(addr),
            _ => {}
        }
        let armed = self.hw.contains(&addr) || self.sw.contains(&addr);
        self.m.cpu.set_breakpoint(addr, armed);
    }
}

/// Heron's x86 for gdbstub: registers travel as the bytes of the session's view.
enum HeronX86 {}

/// A register file in the session's view, serialized by [`regs`].
#[derive(Clone, Debug, Default, PartialEq)]
struct RegBytes {
    bytes: Vec<u8>,
    pc: u64,
}

impl gdbstub::arch::Registers for RegBytes {
    type ProgramCounter = u64;
    fn pc(&self) -> u64 {
        self.pc
    }
    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        self.bytes.iter().for_each(|b| write_byte(Some(*b)));
    }
    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        self.bytes = bytes.to_vec();
        Ok(())
    }
}

/// A register number; its size depends on the view, resolved by the target.
#[derive(Debug)]
struct RawRegId(usize);

impl gdbstub::arch::RegId for RawRegId {
    fn from_raw_id(id: usize) -> Option<(Self, Option<std::num::NonZeroUsize>)> {
        Some((RawRegId(id), None))
    }
}

impl Arch for HeronX86 {
    type Usize = u64;
    type Registers = RegBytes;
    type BreakpointKind = usize;
    type RegId = RawRegId;
}

impl Target for Session<'_, '_> {
    type Arch = HeronX86;
    type Error = MachineError;

    fn base_ops(&mut self) -> gdbstub::target::ext::base::BaseOps<'_, Self::Arch, Self::Error> {
        gdbstub::target::ext::base::BaseOps::SingleThread(self)
    }
    fn support_breakpoints(&mut self) -> Option<gdbstub::target::ext::breakpoints::BreakpointsOps<'_, Self>> {
        Some(self)
    }
    fn support_monitor_cmd(&mut self) -> Option<gdbstub::target::ext::monitor_cmd::MonitorCmdOps<'_, Self>> {
        Some(self)
    }
    fn support_target_description_xml_override(&mut self) -> Option<gdbstub::target::ext::target_description_xml_override::TargetDescriptionXmlOverrideOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadBase for Session<'_, '_> {
    fn read_registers(&mut self, r: &mut RegBytes) -> TargetResult<(), Self> {
        r.bytes = regs::read_all(&self.m.cpu.s, self.view);
        r.pc = self.m.cpu.s.rip;
        Ok(())
    }

    fn write_registers(&mut self, r: &RegBytes) -> TargetResult<(), Self> {
        regs::write_all(&mut self.m.cpu.s, self.view, &r.bytes).map_err(|_| TargetError::NonFatal)?;
        self.m.cpu.state_changed();
        Ok(())
    }

    fn support_single_register_access(&mut self) -> Option<gdbstub::target::ext::base::single_register_access::SingleRegisterAccessOps<'_, (), Self>> {
        Some(self)
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        let mut n = 0;
        for (k, b) in data.iter_mut().enumerate() {
            match self.m.cpu.debug_read_linear(start.wrapping_add(k as u64)) {
                Some(v) => *b = v,
                None => break,
            }
            n += 1;
        }
        if n == 0 && !data.is_empty() {
            return Err(TargetError::Errno(14)); // EFAULT: unmapped
        }
        Ok(n)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        if self.m.cpu.debug_write_linear(start, data) != data.len() {
            return Err(TargetError::Errno(14));
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<gdbstub::target::ext::base::singlethread::SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleRegisterAccess<()> for Session<'_, '_> {
    fn read_register(&mut self, _: (), reg: RawRegId, buf: &mut [u8]) -> TargetResult<usize, Self> {
        let v = regs::read_one(&self.m.cpu.s, self.view, reg.0).ok_or(TargetError::NonFatal)?;
        let dst = buf.get_mut(..v.len()).ok_or(TargetError::NonFatal)?;
        dst.copy_from_slice(&v);
        Ok(v.len())
    }

    fn write_register(&mut self, _: (), reg: RawRegId, val: &[u8]) -> TargetResult<(), Self> {
        regs::write_one(&mut self.m.cpu.s, self.view, reg.0, val).map_err(|_| TargetError::NonFatal)?;
        self.m.cpu.state_changed();
        Ok(())
    }
}

impl SingleThreadResume for Session<'_, '_> {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.step = false;
        Ok(())
    }
    fn support_single_step(&mut self) -> Option<gdbstub::target::ext::base::singlethread::SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for Session<'_, '_> {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.step = true;
        Ok(())
    }
}

impl Breakpoints for Session<'_, '_> {
    fn support_sw_breakpoint(&mut self) -> Option<gdbstub::target::ext::breakpoints::SwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_breakpoint(&mut self) -> Option<gdbstub::target::ext::breakpoints::HwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_watchpoint(&mut self) -> Option<gdbstub::target::ext::breakpoints::HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for Session<'_, '_> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.set_breakpoint(addr, false, true);
        Ok(true)
    }
    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.set_breakpoint(addr, false, false);
        Ok(true)
    }
}

impl HwBreakpoint for Session<'_, '_> {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.set_breakpoint(addr, true, true);
        Ok(true)
    }
    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.set_breakpoint(addr, true, false);
        Ok(true)
    }
}

fn watch_kind(k: GdbWatch) -> WatchKind {
    match k {
        GdbWatch::Write => WatchKind::Write,
        GdbWatch::Read => WatchKind::Read,
        GdbWatch::ReadWrite => WatchKind::Access,
    }
}

impl HwWatchpoint for Session<'_, '_> {
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, kind: GdbWatch) -> TargetResult<bool, Self> {
        self.m.cpu.set_watchpoint(Watchpoint { addr, len: len.max(1), kind: watch_kind(kind) }, true);
        Ok(true)
    }
    fn remove_hw_watchpoint(&mut self, addr: u64, len: u64, kind: GdbWatch) -> TargetResult<bool, Self> {
        self.m.cpu.set_watchpoint(Watchpoint { addr, len: len.max(1), kind: watch_kind(kind) }, false);
        Ok(true)
    }
}

impl TargetDescriptionXmlOverride for Session<'_, '_> {
    fn target_description_xml(&self, annex: &[u8], offset: u64, length: usize, buf: &mut [u8]) -> TargetResult<usize, Self> {
        if annex != b"target.xml" {
            return Err(TargetError::NonFatal);
        }
        let xml = regs::target_xml(self.view);
        let bytes = xml.as_bytes();
        let start = (offset as usize).min(bytes.len());
        let n = length.min(buf.len()).min(bytes.len() - start);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        Ok(n)
    }
}

/// Parse a number as GDB users write it: `0x` hex or decimal.
fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

impl MonitorCmd for Session<'_, '_> {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), Self::Error> {
        let cmd = String::from_utf8_lossy(cmd);
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.as_slice() {
            ["info", "registers"] => outputln!(out, "{}", self.m.cpu.describe().trim_end()),
            ["info", "tlb", addr] | ["walk", addr] => match parse_num(addr) {
                Some(la) => outputln!(out, "{}", self.walk_text(la)),
                None => outputln!(out, "bad address '{addr}'"),
            },
            ["x" | "xp", addr, rest @ ..] => {
                let len = rest.first().and_then(|l| parse_num(l)).unwrap_or(64).min(4096);
                match parse_num(addr) {
                    Some(pa) => outputln!(out, "{}", self.dump_physical(pa, len)),
                    None => outputln!(out, "bad address '{addr}'"),
                }
            }
            ["stats"] => outputln!(out, "{}", self.m.stats_text(self.start.elapsed()).trim_end()),
            _ => outputln!(
                out,
                "Heron monitor commands:\n  info registers        CPU state (CRs, EFER, segments, RIP's instruction)\n  info tlb ADDR | walk ADDR\n                        page-table walk of linear ADDR: physical address and rights\n  x PADDR [LEN]         hex dump of LEN (default 64, at most 4096) bytes of physical memory\n  stats                 execution statistics"
            ),
        }
        Ok(())
    }
}

impl Session<'_, '_> {
    /// The translation of linear `la` for reads, writes and fetches at CPL 0 and 3.
    fn walk_text(&self, la: u64) -> String {
        use heron_softmmu::Access;
        let s = &self.m.cpu.s;
        let mut t = format!("linear {la:#x}: paging {:?}, CR3 {:#x}\n", s.paging_mode(), s.cr3);
        match self.m.cpu.debug_translate(la, Access::default()) {
            Ok(pa) => t += &format!("  physical {pa:#x}\n"),
            Err(ec) => return t + &format!("  not mapped (#PF error code {ec:#x})"),
        }
        for (what, write, fetch) in [("read", false, false), ("write", true, false), ("execute", false, true)] {
            let ok = |user| self.m.cpu.debug_translate(la, Access { write, fetch, user }).is_ok();
            t += &format!("  {what:8} supervisor {}  user {}\n", if ok(false) { "yes" } else { "no" }, if ok(true) { "yes" } else { "no" });
        }
        t.trim_end().to_string()
    }

    /// Hex dump of guest-physical memory (RAM only).
    fn dump_physical(&self, pa: u64, len: u64) -> String {
        let ram = self.m.ram();
        let mut t = String::new();
        for line in (0..len).step_by(16) {
            let a = pa + line;
            let n = 16.min(len - line);
            let mut b = vec![0u8; n as usize];
            if ram.read_bytes(a, &mut b).is_err() {
                t += &format!("{a:016x}: outside RAM\n");
                break;
            }
            t += &format!("{a:016x}: {}\n", b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" "));
        }
        t.trim_end().to_string()
    }
}

/// gdbstub's event loop over [`Session`]: runs the guest in slices, checking the connection
/// for Ctrl-C between them.
struct EventLoop<'a, 'b>(std::marker::PhantomData<Session<'a, 'b>>);

impl<'a, 'b> BlockingEventLoop for EventLoop<'a, 'b> {
    type Target = Session<'a, 'b>;
    type Connection = TcpStream;
    type StopReason = SingleThreadStopReason<u64>;

    fn wait_for_stop_reason(t: &mut Self::Target, conn: &mut TcpStream) -> Result<Event<Self::StopReason>, WaitForStopReasonError<MachineError, std::io::Error>> {
        t.m.cpu.set_single_step(t.step);
        loop {
            let o = t.run_slice().map_err(WaitForStopReasonError::Target)?;
            let stop = match o {
                RunOutcome::Debug(DebugStop::Step) => SingleThreadStopReason::DoneStep,
                RunOutcome::Debug(DebugStop::Breakpoint) if t.hw.contains(&t.m.cpu.s.rip) => SingleThreadStopReason::HwBreak(()),
                RunOutcome::Debug(DebugStop::Breakpoint) => SingleThreadStopReason::SwBreak(()),
                RunOutcome::Debug(DebugStop::Watchpoint { addr, kind }) => {
                    let kind = match kind {
                        WatchKind::Write => GdbWatch::Write,
                        WatchKind::Read => GdbWatch::Read,
                        WatchKind::Access => GdbWatch::ReadWrite,
                    };
                    SingleThreadStopReason::Watch { tid: (), kind, addr }
                }
                RunOutcome::InstructionLimit if !t.limit_reached() => {
                    if conn.peek().map_err(WaitForStopReasonError::Connection)?.is_some() {
                        let b = conn.read().map_err(WaitForStopReasonError::Connection)?;
                        return Ok(Event::IncomingData(b));
                    }
                    continue;
                }
                ended => {
                    let code = ended.exit_status();
                    t.ended = Some(ended);
                    SingleThreadStopReason::Exited(code)
                }
            };
            t.m.cpu.set_single_step(false);
            return Ok(Event::TargetStopped(stop));
        }
    }

    fn on_interrupt(t: &mut Self::Target) -> Result<Option<Self::StopReason>, MachineError> {
        t.m.cpu.set_single_step(false);
        Ok(Some(SingleThreadStopReason::Signal(Signal::SIGINT)))
    }
}

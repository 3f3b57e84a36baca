//! `heron`: boot a guest on the Heron PC emulator.

mod console;
mod signals;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use heron_block::{DriveSpec, Media};
use heron_machine::{BootOrder, Engine, Firmware, Machine, MachineConfig, RunLimits, RunOutcome};

/// Heron: a full-system x86 PC emulator (no hardware virtualization needed).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Linux kernel (bzImage) to boot directly, without a BIOS. Without it, the machine
    /// boots the BIOS (`--bios`).
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// BIOS image for BIOS boot (Debian's `seabios` package provides the default).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_BIOS)]
    bios: PathBuf,
    /// Initial ramdisk for a Linux kernel; for a Multiboot kernel, a comma-separated list of
    /// modules, each `FILE[ ARGS]` (as QEMU's -initrd).
    #[arg(long, value_name = "FILE")]
    initrd: Option<String>,
    /// Kernel command line.
    #[arg(long, value_name = "STRING", default_value = "")]
    append: String,
    /// Guest RAM size: a number with an optional K, M or G suffix (a plain number is MiB).
    #[arg(short = 'm', long = "memory", value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    memory: u64,
    /// Stop after this many seconds of host time (exit status 3).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Stop after this many guest instructions (exit status 3).
    #[arg(long, value_name = "N")]
    max_insns: Option<u64>,
    /// Exit when the guest resets instead of rebooting it (as QEMU's -no-reboot).
    #[arg(long)]
    no_reboot: bool,
    /// CPU engine: `jit` (the interpreter plus Cranelift translation of hot 64-bit code) or
    /// `interp` (the interpreter alone). `--trace` runs the interpreter while tracing.
    #[arg(long, value_name = "ENGINE", default_value = "jit", value_parser = parse_engine)]
    engine: Engine,
    /// Check the JIT against the interpreter: each translated block also runs in the
    /// interpreter and the run stops (exit status 5) at the first difference in registers,
    /// flags or memory, with a report. Slow; for finding JIT bugs.
    #[arg(long, conflicts_with = "trace")]
    check_jit: bool,
    /// A disk or CD-ROM image: `file=F[,format=raw|qcow2][,media=disk|cdrom][,if=ide]
    /// [,snapshot=on][,readonly=on][,index=N]` (repeatable; index 0–3 = primary master,
    /// primary slave, secondary master, secondary slave).
    #[arg(long = "drive", value_name = "SPEC", value_parser = parse_drive)]
    drives: Vec<DriveSpec>,
    /// Hard disk image as the primary master (`--drive file=F,index=0`).
    #[arg(long, value_name = "FILE")]
    hda: Option<PathBuf>,
    /// CD-ROM image as the secondary master (`--drive file=F,media=cdrom,index=2`).
    #[arg(long, value_name = "FILE")]
    cdrom: Option<PathBuf>,
    /// BIOS boot order: `c` = hard disk first, `d` = CD-ROM first.
    #[arg(long, value_name = "c|d", default_value = "c", value_parser = ["c", "d"])]
    boot: String,
    /// Network card (an Intel e1000): `user[,hostfwd=tcp:127.0.0.1:HOSTPORT-:GUESTPORT]`
    /// (user-mode NAT: guest 10.0.2.15, gateway 10.0.2.2 = the host's loopback, DNS 10.0.2.3),
    /// `tap,ifname=NAME`, or `none` (the default).
    #[arg(long, value_name = "SPEC", default_value = "none", value_parser = parse_nic)]
    nic: heron_net::NicSpec,
    /// MAC address of the network card (default 52:54:00:12:34:56).
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    mac: Option<heron_net::MacAddr>,
    /// Write an execution trace to FILE: each executed instruction (virtual clock, code size,
    /// address, disassembly), interrupts and exceptions, port/MMIO accesses.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// What `--trace` records: a comma-separated list of `insns`, `int` (interrupts and
    /// exceptions), `io` (port and MMIO accesses).
    #[arg(long, value_name = "LIST", default_value = "insns,int")]
    trace_events: String,
    /// Only trace instructions with RIP in START-END (hex, end exclusive), e.g. 0x1000-0x2000.
    #[arg(long, value_name = "START-END", value_parser = parse_range)]
    trace_range: Option<(u64, u64)>,
    /// Only trace code of this size in bits: 16, 32 or 64.
    #[arg(long, value_name = "BITS", value_parser = ["16", "32", "64"])]
    trace_mode: Option<String>,
    /// An extra device: `isa-debug-exit[,iobase=0xf4][,iosize=4]` (a guest write of V ends
    /// Heron with status (V << 1) | 1) or `isa-debugcon[,iobase=0xe9][,file=PATH]` (bytes written
    /// to the port go to PATH or to stdout). Repeatable.
    #[arg(long = "device", value_name = "SPEC", value_parser = parse_device)]
    devices: Vec<heron_machine::device_spec::DeviceSpec>,
    /// Listen for GDB on `tcp:HOST:PORT` (QEMU's -gdb): connect with `target remote
    /// HOST:PORT`. While GDB has breakpoints, watchpoints or is stepping, the CPU runs the
    /// interpreter one instruction at a time.
    #[arg(long, value_name = "tcp:HOST:PORT")]
    gdb: Option<String>,
    /// Shorthand for `--gdb tcp:127.0.0.1:1234` (QEMU's -s).
    #[arg(short = 's', conflicts_with = "gdb")]
    gdb_default: bool,
    /// Do not start the guest until GDB connects (QEMU's -S); needs --gdb or -s.
    #[arg(long, short = 'S')]
    wait_gdb: bool,
    /// Print execution statistics to standard error at exit.
    #[arg(long)]
    stats: bool,
    /// Date the RTC starts from: `now` (the host clock at start), `YYYY-MM-DD`,
    /// `YYYY-MM-DDTHH:MM:SS` (UTC) or `@SECONDS` since 1970. The default is a fixed date so
    /// that runs are reproducible byte for byte; afterwards the RTC follows the virtual clock.
    #[arg(long, value_name = "DATE", default_value = DEFAULT_RTC_BASE, value_parser = parse_rtc_base)]
    rtc_base: RtcBase,
}

/// Where Debian's `seabios` package installs SeaBIOS.
const DEFAULT_BIOS: &str = "/usr/share/seabios/bios.bin";

/// The default `--rtc-base`: fixed, so the guest sees the same date on every run.
const DEFAULT_RTC_BASE: &str = "2025-01-01T00:00:00";

fn parse_engine(s: &str) -> Result<Engine, String> {
    match s {
        "jit" => Ok(Engine::Jit),
        "interp" => Ok(Engine::Interp),
        _ => Err(format!("unknown engine '{s}': use jit or interp")),
    }
}

/// Where the RTC's date comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RtcBase {
    /// The host clock when the machine starts.
    Now,
    /// Seconds since 1970-01-01T00:00:00 UTC.
    Fixed(i64),
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn parse_rtc_base(s: &str) -> Result<RtcBase, String> {
    let bad = || format!("invalid --rtc-base '{s}': expected now, YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or @SECONDS");
    if s == "now" {
        return Ok(RtcBase::Now);
    }
    if let Some(n) = s.strip_prefix('@') {
        return n.parse().map(RtcBase::Fixed).map_err(|_| bad());
    }
    let (date, time) = s.split_once('T').unwrap_or((s, "00:00:00"));
    let num = |v: Option<&str>, lo: i64, hi: i64| -> Result<i64, String> {
        let n: i64 = v.ok_or_else(bad)?.parse().map_err(|_| bad())?;
        if (lo..=hi).contains(&n) { Ok(n) } else { Err(bad()) }
    };
    let mut d = date.split('-');
    let (y, mo, day) = (num(d.next(), 1970, 9999)?, num(d.next(), 1, 12)?, num(d.next(), 1, 31)?);
    let mut t = time.split(':');
    let (h, mi, sec) = (num(t.next(), 0, 23)?, num(t.next(), 0, 59)?, num(t.next(), 0, 59)?);
    if d.next().is_some() || t.next().is_some() {
        return Err(bad());
    }
    Ok(RtcBase::Fixed(days_from_civil(y, mo, day) * 86400 + h * 3600 + mi * 60 + sec))
}

/// Parse "256M", "1G", "65536K", "512" (MiB) into bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1 << 30),
        Some(c) if c.is_ascii_digit() => (s, 1 << 20),
        _ => return Err(format!("invalid size '{s}': expected e.g. 256M or 1G")),
    };
    let n: u64 = num.parse().map_err(|_| format!("invalid size '{s}': expected e.g. 256M or 1G"))?;
    n.checked_mul(mult).ok_or_else(|| format!("size '{s}' is too large"))
}

fn parse_device(s: &str) -> Result<heron_machine::device_spec::DeviceSpec, String> {
    s.parse::<heron_machine::device_spec::DeviceSpec>().map_err(|e| e.to_string())
}

/// Build the direct-boot firmware for `kernel`: a bzImage boots by the Linux protocol, a
/// Multiboot kernel by the Multiboot protocol with `--initrd` as its module list.
fn kernel_firmware(cli: &Cli, path: &PathBuf) -> Result<Firmware> {
    let kernel = read_file(path, "kernel")?;
    let bzimage = heron_machine::linux::SetupHeader::parse(&kernel).is_ok();
    if !bzimage && heron_machine::multiboot::is_multiboot(&kernel) {
        let mut modules = Vec::new();
        for m in cli.initrd.as_deref().unwrap_or("").split(',').filter(|m| !m.trim().is_empty()) {
            let file = m.split_whitespace().next().unwrap_or("");
            modules.push((read_file(&PathBuf::from(file), "module")?, m.trim().to_string()));
        }
        return Ok(Firmware::Multiboot { kernel, modules, cmdline: cli.append.clone() });
    }
    let initrd = match cli.initrd.as_deref() {
        Some(i) if i.contains(',') => bail!("a Linux kernel takes one --initrd file (a list is for Multiboot kernels)"),
        Some(i) => Some(read_file(&PathBuf::from(i), "initrd")?),
        None => None,
    };
    Ok(Firmware::Linux { kernel, initrd, cmdline: cli.append.clone() })
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("invalid range '{s}': expected START-END in hex, e.g. 0x1000-0x2000");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let num = |x: &str| u64::from_str_radix(x.trim().trim_start_matches("0x"), 16).map_err(|_| bad());
    let (a, b) = (num(a)?, num(b)?);
    if a >= b {
        return Err(bad());
    }
    Ok((a, b))
}

fn trace_filter(cli: &Cli) -> Result<heron_cpu::trace::TraceFilter> {
    let mut f = heron_cpu::trace::TraceFilter { insns: false, events: false, io: false, range: cli.trace_range, bits: None };
    for e in cli.trace_events.split(',').filter(|e| !e.is_empty()) {
        match e {
            "insns" => f.insns = true,
            "int" => f.events = true,
            "io" => f.io = true,
            other => bail!("unknown --trace-events entry '{other}': use insns, int, io"),
        }
    }
    f.bits = cli.trace_mode.as_deref().map(|b| b.parse().unwrap_or(64));
    Ok(f)
}

fn parse_nic(s: &str) -> Result<heron_net::NicSpec, String> {
    heron_net::NicSpec::parse(s).map_err(|e| e.to_string())
}

fn parse_mac(s: &str) -> Result<heron_net::MacAddr, String> {
    heron_net::parse_mac(s).map_err(|e| e.to_string())
}

fn parse_drive(s: &str) -> Result<DriveSpec, String> {
    DriveSpec::parse(s).map_err(|e| e.to_string())
}

fn read_file(p: &PathBuf, what: &str) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("cannot read {what} '{}'", p.display()))
}

fn run(cli: Cli) -> Result<ExitCode> {
    let firmware = match &cli.kernel {
        Some(k) => kernel_firmware(&cli, k)?,
        None => {
            if cli.initrd.is_some() || !cli.append.is_empty() {
                bail!("--initrd and --append need --kernel");
            }
            if !cli.bios.exists() && cli.bios.as_os_str() == DEFAULT_BIOS {
                bail!("no BIOS at {DEFAULT_BIOS}: install Debian's 'seabios' package, or give --bios FILE or --kernel FILE");
            }
            Firmware::Bios { rom: read_file(&cli.bios, "BIOS")? }
        }
    };
    if let Some(t) = cli.timeout {
        if !(t > 0.0 && t.is_finite()) {
            bail!("--timeout must be a positive number of seconds");
        }
    }
    let rtc_start = match cli.rtc_base {
        RtcBase::Now => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0),
        RtcBase::Fixed(t) => t,
    };
    let what = cli.kernel.as_ref().unwrap_or(&cli.bios).display().to_string();
    let mut drives = cli.drives.clone();
    if let Some(f) = &cli.hda {
        let mut d = DriveSpec::new(f.clone());
        d.index = Some(0);
        drives.push(d);
    }
    if let Some(f) = &cli.cdrom {
        let mut d = DriveSpec::new(f.clone());
        d.media = Media::Cdrom;
        d.index = Some(2);
        drives.push(d);
    }
    let boot_order = if cli.boot == "d" { BootOrder::CdromFirst } else { BootOrder::DiskFirst };
    let mut nic = cli.nic.clone();
    if let Some(m) = cli.mac {
        match &mut nic {
            heron_net::NicSpec::User { mac, .. } | heron_net::NicSpec::Tap { mac, .. } => *mac = Some(m),
            heron_net::NicSpec::None => bail!("--mac needs a network card (--nic user or --nic tap,...)"),
        }
    }
    let engine = match (cli.engine, cli.check_jit) {
        (Engine::Interp, true) => bail!("--check-jit needs --engine jit"),
        (_, true) => Engine::Lockstep,
        (e, false) => e,
    };
    let cfg = MachineConfig { memory: cli.memory, firmware, drives, boot_order, nic, devices: cli.devices.clone(), no_reboot: cli.no_reboot, rtc_start, engine };
    let mut machine = Machine::new(cfg).with_context(|| format!("cannot boot '{what}'"))?;
    if let Some(path) = &cli.trace {
        let file = std::fs::File::create(path).with_context(|| format!("cannot create trace file '{}'", path.display()))?;
        let out = Box::new(std::io::BufWriter::with_capacity(1 << 20, file));
        machine.cpu.tracer = Some(heron_cpu::trace::Tracer::new(out, trace_filter(&cli)?));
    }
    let gdb_addr = cli.gdb.clone().or(cli.gdb_default.then(|| "tcp:127.0.0.1:1234".to_string()));
    if cli.wait_gdb && gdb_addr.is_none() {
        bail!("--wait-gdb (-S) needs --gdb tcp:HOST:PORT or -s");
    }
    let gdb = gdb_addr.map(|a| heron_gdb::GdbServer::bind(&a)).transpose()?;
    let stop = signals::install();
    let limits = RunLimits { max_insns: cli.max_insns, timeout: cli.timeout.map(Duration::from_secs_f64), stop: Some(stop) };
    let mut input = console::StdinConsole::new();
    let mut out = std::io::stdout();
    let start = Instant::now();
    let outcome = match &gdb {
        Some(server) => {
            let io = heron_gdb::RunIo { out: &mut out, input: &mut input, limits };
            heron_gdb::run(&mut machine, server, cli.wait_gdb, io).map_err(anyhow::Error::from)
        }
        None => machine.run(&mut out, &mut input, limits).map_err(anyhow::Error::from),
    };
    drop(input);
    // Whatever ended the run, make the guest's completed writes durable before exiting.
    let flushed = machine.flush_drives();
    let outcome = outcome?;
    flushed?;
    let wall = start.elapsed();
    if cli.stats {
        eprint!("{}", machine.stats_text(wall));
        eprint!("{}", machine.cpu.describe());
    }
    let mut code = outcome.exit_status();
    let why = match outcome {
        RunOutcome::PowerOff | RunOutcome::Halted | RunOutcome::Reset | RunOutcome::UserQuit | RunOutcome::Debug(_) | RunOutcome::DebugExit(_) => None,
        RunOutcome::TripleFault(msg) | RunOutcome::Divergence(msg) => Some(msg),
        RunOutcome::Timeout => Some(format!("timeout after {:.1} s", wall.as_secs_f64())),
        RunOutcome::InstructionLimit => Some(format!("instruction limit reached ({} instructions)", machine.icount())),
        RunOutcome::Hung => Some("guest halted with interrupts enabled and nothing can wake it".to_string()),
        RunOutcome::Stopped => {
            let sig = signals::received();
            code = 128 + sig as u8;
            Some(format!("stopped by signal {sig}; drives flushed"))
        }
    };
    if let Some(w) = why {
        eprintln!("heron: {w}");
    }
    // The process ends here: drives are flushed and the console restored, and freeing the
    // machine (hundreds of thousands of decoded blocks, guest RAM, the code cache) would only
    // delay the exit, by 50–70 ms after the kit's boot.
    std::mem::forget(machine);
    Ok(ExitCode::from(code))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("heron: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_rtc_base, parse_size, RtcBase};

    #[test]
    fn rtc_bases() {
        assert_eq!(parse_rtc_base("now").unwrap(), RtcBase::Now);
        assert_eq!(parse_rtc_base("1970-01-01").unwrap(), RtcBase::Fixed(0));
        assert_eq!(parse_rtc_base("2025-01-01T00:00:00").unwrap(), RtcBase::Fixed(1_735_689_600));
        assert_eq!(parse_rtc_base("2000-03-01T12:30:05").unwrap(), RtcBase::Fixed(951_913_805));
        assert_eq!(parse_rtc_base("@42").unwrap(), RtcBase::Fixed(42));
        for bad in ["yesterday", "2025-13-01", "2025-01-01T25:00:00", "2025-01", "@x", "2025-01-01-01"] {
            assert!(parse_rtc_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512").unwrap(), 512 << 20);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert!(parse_size("abc").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }
}

//! `heron`: boot a guest on the Heron PC emulator.

mod console;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use heron_machine::{Machine, MachineConfig, RunLimits, RunOutcome};

/// Heron: a full-system x86 PC emulator (no hardware virtualization needed).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Linux kernel (bzImage) to boot directly, without a BIOS.
    #[arg(long, value_name = "FILE")]
    kernel: PathBuf,
    /// Initial ramdisk for the kernel.
    #[arg(long, value_name = "FILE")]
    initrd: Option<PathBuf>,
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
    /// Print execution statistics to standard error at exit.
    #[arg(long)]
    stats: bool,
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

fn read_file(p: &PathBuf, what: &str) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("cannot read {what} '{}'", p.display()))
}

fn run(cli: Cli) -> Result<ExitCode> {
    let kernel = read_file(&cli.kernel, "kernel")?;
    let initrd = cli.initrd.as_ref().map(|p| read_file(p, "initrd")).transpose()?;
    if let Some(t) = cli.timeout {
        if !(t > 0.0 && t.is_finite()) {
            bail!("--timeout must be a positive number of seconds");
        }
    }
    let rtc_start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let cfg = MachineConfig { memory: cli.memory, kernel, initrd, cmdline: cli.append.clone(), no_reboot: cli.no_reboot, rtc_start };
    let mut machine = Machine::new(cfg).with_context(|| format!("cannot boot '{}'", cli.kernel.display()))?;
    let limits = RunLimits { max_insns: cli.max_insns, timeout: cli.timeout.map(Duration::from_secs_f64) };
    let mut input = console::StdinConsole::new();
    let mut out = std::io::stdout();
    let start = Instant::now();
    let outcome = machine.run(&mut out, &mut input, limits);
    drop(input);
    let outcome = outcome?;
    let wall = start.elapsed();
    if cli.stats {
        let st = &machine.cpu.stats;
        let n = machine.icount();
        eprintln!(
            "heron: {n} guest instructions in {:.2} s ({:.1} M/s), RIP {:#x}; blocks decoded {}, code-cache flushes {}, TLB misses {}, interrupts {}, exceptions {}, SMC invalidations {}",
            wall.as_secs_f64(),
            n as f64 / wall.as_secs_f64() / 1e6,
            machine.cpu.s.rip,
            st.blocks_decoded,
            st.cache_flushes,
            st.tlb_misses,
            st.interrupts,
            st.exceptions,
            st.smc_invalidations
        );
    }
    if cli.stats {
        eprint!("{}", machine.cpu.describe());
    }
    let (code, why) = match outcome {
        RunOutcome::PowerOff | RunOutcome::Halted | RunOutcome::Reset | RunOutcome::UserQuit => (0, None),
        RunOutcome::TripleFault(msg) => (2, Some(msg)),
        RunOutcome::Timeout => (3, Some(format!("timeout after {:.1} s", wall.as_secs_f64()))),
        RunOutcome::InstructionLimit => (3, Some(format!("instruction limit reached ({} instructions)", machine.icount()))),
        RunOutcome::Hung => (4, Some("guest halted with interrupts enabled and nothing can wake it".to_string())),
    };
    if let Some(w) = why {
        eprintln!("heron: {w}");
    }
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
    use super::parse_size;

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

//! End-to-end: boot the stock Debian kernel with the kit's initramfs (../shared/guests) and
//! assert what the guest prints. Run with `cargo test --release`: the guest executes a few
//! hundred million instructions.

use std::time::Duration;

use heron_machine::{Engine, Firmware, Machine, MachineConfig, NoInput, RunLimits, RunOutcome};

mod common;
use common::guests;

/// Boot with `cmdline`, return (outcome, serial output).
fn boot(cmdline: &str, engine: Engine) -> Option<(RunOutcome, String)> {
    let g = guests()?;
    let cfg = MachineConfig {
        memory: 256 << 20,
        firmware: Firmware::Linux {
            kernel: std::fs::read(g.join("vmlinuz")).unwrap(),
            initrd: Some(std::fs::read(g.join("initramfs.cpio.gz")).unwrap()),
            cmdline: cmdline.to_string(),
        },
        drives: Vec::new(),
        boot_order: Default::default(),
        nic: heron_net::NicSpec::None, devices: Vec::new(),
        no_reboot: true,
        rtc_start: 1_700_000_000,
        engine,
    };
    let mut m = Machine::new(cfg).expect("machine");
    let mut out = Vec::new();
    let limits = RunLimits { max_insns: Some(40_000_000_000), timeout: Some(Duration::from_secs(900)), ..Default::default() };
    let outcome = m.run(&mut out, &mut NoInput, limits).expect("run");
    Some((outcome, String::from_utf8_lossy(&out).into_owned()))
}

#[test]
fn kit_boot_passes_and_is_deterministic() {
    let Some((outcome, out)) = boot("console=ttyS0 kit=boot", Engine::Jit) else { return };
    assert!(out.contains("KIT-READY"), "no KIT-READY; outcome {outcome:?}; output:\n{out}");
    assert!(out.contains("KIT-PASS"), "no KIT-PASS; outcome {outcome:?}; output:\n{out}");
    assert_eq!(outcome, RunOutcome::PowerOff, "output:\n{out}");
    // Same command, same bytes (virtual time, DESIGN.md §8) — and the same with the
    // interpreter alone: tier 1 retires the same instructions at the same virtual times.
    let (_, out2) = boot("console=ttyS0 kit=boot", Engine::Jit).unwrap();
    assert_eq!(out, out2, "two runs gave different serial output");
    let (outcome3, out3) = boot("console=ttyS0 kit=boot", Engine::Interp).unwrap();
    assert_eq!(outcome3, RunOutcome::PowerOff);
    assert_eq!(out, out3, "the JIT and the interpreter gave different serial output");
}

/// Lockstep check (DESIGN.md testing layer 3): every translated block also runs in the
/// interpreter; the boot must reach KIT-PASS without a single divergence.
#[test]
fn kit_boot_jit_lockstep_with_interpreter() {
    let Some((outcome, out)) = boot("console=ttyS0 kit=boot", Engine::Lockstep) else { return };
    if let RunOutcome::Divergence(report) = &outcome {
        panic!("{report}");
    }
    assert!(out.contains("KIT-PASS"), "no KIT-PASS; outcome {outcome:?}; output:\n{out}");
    assert_eq!(outcome, RunOutcome::PowerOff);
}

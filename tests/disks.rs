//! End-to-end storage and BIOS tests with the kit (../shared/guests): the `disk` check on a
//! copy of data.ext4 (then e2fsck/debugfs on the host), the `cdrom` check with data.iso, BIOS
//! boot (SeaBIOS) of boot.iso and of a copy of boot-fat.img, and a qcow2 overlay that leaves
//! its base untouched. Run with `cargo test --release`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use heron_block::{DriveSpec, Media};
use heron_machine::{BootOrder, Firmware, Machine, MachineConfig, NoInput, RunLimits, RunOutcome};

mod common;
use common::guests;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("heron-disks-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn linux(g: &Path, kit: &str) -> Firmware {
    Firmware::Linux {
        kernel: std::fs::read(g.join("vmlinuz")).unwrap(),
        initrd: Some(std::fs::read(g.join("initramfs.cpio.gz")).unwrap()),
        cmdline: format!("console=ttyS0 quiet kit={kit}"),
    }
}

fn bios() -> Option<Firmware> {
    match std::fs::read("/usr/share/seabios/bios.bin") {
        Ok(rom) => Some(Firmware::Bios { rom }),
        Err(_) => {
            eprintln!("skipping: SeaBIOS (Debian package 'seabios') not installed");
            None
        }
    }
}

fn run(firmware: Firmware, drives: Vec<DriveSpec>, boot_order: BootOrder) -> (RunOutcome, String) {
    let cfg = MachineConfig { memory: 256 << 20, firmware, drives, boot_order, nic: heron_net::NicSpec::None, devices: Vec::new(), no_reboot: true, rtc_start: 1_735_689_600, engine: Default::default() };
    let mut m = Machine::new(cfg).expect("machine");
    let mut out = Vec::new();
    let limits = RunLimits { max_insns: Some(60_000_000_000), timeout: Some(Duration::from_secs(1200)), stop: None };
    let outcome = m.run(&mut out, &mut NoInput, limits).expect("run");
    m.flush_drives().expect("flush");
    (outcome, String::from_utf8_lossy(&out).into_owned())
}

fn assert_pass(outcome: &RunOutcome, out: &str) {
    assert!(out.contains("KIT-PASS"), "no KIT-PASS; outcome {outcome:?}; output:\n{out}");
    assert_eq!(*outcome, RunOutcome::PowerOff, "output:\n{out}");
}

fn disk(path: &Path) -> DriveSpec {
    let mut d = DriveSpec::new(path.to_path_buf());
    d.index = Some(0);
    d
}

fn cdrom(path: &Path) -> DriveSpec {
    let mut d = DriveSpec::new(path.to_path_buf());
    d.media = Media::Cdrom;
    d.index = Some(2);
    d
}

#[test]
fn kit_disk_writes_a_clean_ext4() {
    let Some(g) = guests() else { return };
    let dir = scratch("disk");
    let img = dir.join("data.ext4");
    std::fs::copy(g.join("data.ext4"), &img).unwrap();
    let (outcome, out) = run(linux(&g, "disk"), vec![disk(&img)], BootOrder::DiskFirst);
    assert_pass(&outcome, &out);
    if Command::new("e2fsck").arg("-V").output().is_err() {
        eprintln!("skipping host checks: e2fsprogs not installed");
        return;
    }
    let fsck = Command::new("e2fsck").args(["-fn"]).arg(&img).output().unwrap();
    assert!(fsck.status.success(), "e2fsck: {}{}", String::from_utf8_lossy(&fsck.stdout), String::from_utf8_lossy(&fsck.stderr));
    let cat = Command::new("debugfs").args(["-R", "cat written.txt"]).arg(&img).output().unwrap();
    let text = String::from_utf8_lossy(&cat.stdout);
    assert_eq!(text.lines().count(), 20000);
    assert_eq!(text.lines().last(), Some("20000"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kit_cdrom_reads_the_iso() {
    let Some(g) = guests() else { return };
    let (outcome, out) = run(linux(&g, "cdrom"), vec![cdrom(&g.join("data.iso"))], BootOrder::DiskFirst);
    assert_pass(&outcome, &out);
}

#[test]
fn bios_boots_isolinux_cd() {
    let Some(_) = guests() else { return };
    let Some(fw) = bios() else { return };
    let g = guests().unwrap();
    let (outcome, out) = run(fw, vec![cdrom(&g.join("boot.iso"))], BootOrder::CdromFirst);
    assert_pass(&outcome, &out);
}

#[test]
fn bios_boots_syslinux_disk() {
    let Some(g) = guests() else { return };
    let Some(fw) = bios() else { return };
    let dir = scratch("bios-disk");
    let img = dir.join("boot-fat.img");
    std::fs::copy(g.join("boot-fat.img"), &img).unwrap();
    let (outcome, out) = run(fw, vec![disk(&img)], BootOrder::DiskFirst);
    assert_pass(&outcome, &out);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn qcow2_overlay_leaves_the_base_untouched() {
    let Some(g) = guests() else { return };
    let dir = scratch("qcow2");
    let base = dir.join("base.ext4");
    std::fs::copy(g.join("data.ext4"), &base).unwrap();
    let before = std::fs::read(&base).unwrap();
    let overlay = dir.join("overlay.qcow2");
    heron_block::Qcow2Image::create_overlay(&overlay, &base, heron_block::ImageFormat::Raw, None).unwrap();
    let (outcome, out) = run(linux(&g, "disk"), vec![disk(&overlay)], BootOrder::DiskFirst);
    assert_pass(&outcome, &out);
    assert!(std::fs::read(&base).unwrap() == before, "the base image changed");
    assert!(std::fs::metadata(&overlay).unwrap().len() > 64 * 1024, "the overlay holds no data");
    let _ = std::fs::remove_dir_all(&dir);
}

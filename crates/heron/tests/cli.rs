//! The `heron` command line: bad input gets a clear one-line error and a non-zero status,
//! never a panic.

use std::process::Command;

fn heron(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_heron")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn missing_kernel_file() {
    let (code, err) = heron(&["--kernel", "/nonexistent/vmlinuz"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read kernel '/nonexistent/vmlinuz'"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn not_a_bzimage() {
    let dir = std::env::temp_dir().join(format!("heron-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("junk");
    std::fs::write(&f, vec![0x5Au8; 8192]).unwrap();
    let (code, err) = heron(&["--kernel", f.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("not a bzImage"), "{err}");
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let (code, err) = heron(&["--kernel", empty.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn impossible_memory_sizes() {
    let (code, err) = heron(&["--kernel", "/dev/null", "-m", "lots"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid size"), "{err}");
    let kernel = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/guests/vmlinuz");
    if std::path::Path::new(kernel).exists() {
        let (code, err) = heron(&["--kernel", kernel, "-m", "1M"]);
        assert_eq!(code, 1);
        assert!(err.contains("memory size"), "{err}");
        let (code, err) = heron(&["--kernel", kernel, "-m", "64G"]);
        assert_eq!(code, 1);
        assert!(err.contains("memory size"), "{err}");
    }
}

#[test]
fn bad_drive_images() {
    let kernel = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/guests/vmlinuz");
    if !std::path::Path::new(kernel).exists() {
        return;
    }
    let (code, err) = heron(&["--kernel", kernel, "--hda", "/nonexistent/disk.img"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/disk.img"), "{err}");
    // A file that claims to be qcow2 but is garbage: a clear error, and the file is unchanged.
    let dir = std::env::temp_dir().join(format!("heron-cli-img-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.qcow2");
    let mut bytes = b"QFI\xfb".to_vec();
    bytes.extend(std::iter::repeat(0xA5u8).take(4096));
    std::fs::write(&f, &bytes).unwrap();
    let (code, err) = heron(&["--kernel", kernel, "--drive", &format!("file={},format=qcow2", f.display())]);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(std::fs::read(&f).unwrap(), bytes, "a rejected image was modified");
    let (code, err) = heron(&["--kernel", kernel, "--drive", "file=x.img,if=scsi"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("if"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_bios_names_the_package() {
    let (code, err) = heron(&["--bios", "/nonexistent/bios.bin"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/bios.bin"), "{err}");
}

/// `--trace` is deterministic (two runs, same bytes) and honours its filters.
#[test]
fn trace_is_deterministic_and_filtered() {
    let g = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/guests");
    if !std::path::Path::new(g).join("vmlinuz").exists() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("heron-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |name: &str, extra: &[&str]| {
        let f = dir.join(name);
        let mut args = vec!["--kernel", concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/guests/vmlinuz"), "--append", "console=ttyS0"];
        args.extend_from_slice(&["--max-insns", "3000000", "--trace", f.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let (code, err) = heron(&args);
        assert_eq!(code, 3, "{err}");
        std::fs::read_to_string(&f).unwrap()
    };
    let a = run("a", &["--trace-events", "insns,int,io"]);
    let b = run("b", &["--trace-events", "insns,int,io"]);
    assert!(a == b, "two runs gave different traces");
    assert!(a.lines().count() > 3_000_000, "one line per instruction plus events");
    // The decompressor takes #PF while it maps the output buffer on demand.
    assert!(a.contains("exception vector 14 error 0x2"), "no page fault traced");
    // Only instructions in the range, and no events.
    let r = run("r", &["--trace-events", "insns", "--trace-range", "0x1000200-0x1000300"]);
    assert!(!r.is_empty());
    for line in r.lines() {
        let addr = u64::from_str_radix(line.split_whitespace().nth(2).unwrap().trim_end_matches(':'), 16).unwrap();
        assert!((0x1000200..0x1000300).contains(&addr), "{line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gdb_options_are_checked() {
    let k = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/guests/vmlinuz");
    let (code, err) = heron(&["--kernel", k, "-S"]);
    assert_eq!(code, 1);
    assert!(err.contains("--wait-gdb (-S) needs --gdb"), "{err}");
    let (code, err) = heron(&["--kernel", k, "--gdb", "nonsense"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid GDB address 'nonsense'"), "{err}");
    let (code, err) = heron(&["--kernel", k, "--gdb", "tcp:1.2.3.4:5"]);
    assert_eq!(code, 1);
    assert!(err.contains("GDB port 1.2.3.4:5"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

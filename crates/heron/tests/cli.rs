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

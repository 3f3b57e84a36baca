//! The interactive path: boot the kit without `kit=`, type commands on the serial console
//! (stdin), and check the shell's answers and the exit status after `poweroff -f`.

use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn shell_on_serial_console() {
    let g = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/guests");
    if !std::path::Path::new(g).join("vmlinuz").exists() {
        eprintln!("skipping: ../shared/guests not present");
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_heron"))
        .args(["--kernel", &format!("{g}/vmlinuz"), "--initrd", &format!("{g}/initramfs.cpio.gz")])
        .args(["--append", "console=ttyS0 quiet", "-m", "256M", "--timeout", "900"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Typed ahead: the bytes wait in the UART and the tty layer until the shell reads them.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"uname -a\nls /\ncat /proc/cpuinfo\necho SHELL-DONE\npoweroff -f\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "status {:?}\nstderr: {err}\nstdout:\n{text}", out.status);
    assert!(text.contains("Linux") && text.contains("6.1.0"), "uname -a missing:\n{text}");
    assert!(text.contains("init") && text.contains("proc"), "ls / missing:\n{text}");
    assert!(text.contains("model name") && text.contains("Heron Virtual CPU"), "cpuinfo missing:\n{text}");
    assert!(text.contains("SHELL-DONE"), "{text}");
}

//! The interactive path: boot the kit without `kit=`, wait for the shell prompt on the serial
//! console, type commands one at a time, and check the answers and the exit status after
//! `poweroff -f`.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Wait until the output holds `needle` `count` times (or time runs out).
fn wait_for(buf: &Arc<Mutex<Vec<u8>>>, needle: &str, count: usize, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        let text = String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
        if text.matches(needle).count() >= count {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

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
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let o = out.clone();
    let reader = std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut b) {
            if n == 0 {
                break;
            }
            o.lock().unwrap().extend_from_slice(&b[..n]);
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let limit = Duration::from_secs(600);
    let cmds = ["uname -a", "ls /", "cat /proc/cpuinfo", "echo SHELL-DONE"];
    for (k, cmd) in cmds.iter().enumerate() {
        let seen = wait_for(&out, "# ", k + 1, limit);
        assert!(seen, "no shell prompt #{}; output:\n{}", k + 1, String::from_utf8_lossy(&out.lock().unwrap()));
        stdin.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    assert!(wait_for(&out, "SHELL-DONE\r\n", 1, limit) || wait_for(&out, "SHELL-DONE\n", 1, limit));
    stdin.write_all(b"poweroff -f\n").unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let text = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    assert!(status.success(), "status {status:?}; output:\n{text}");
    assert!(text.contains("Linux") && text.contains("6.1.0"), "uname -a missing:\n{text}");
    assert!(text.contains("init") && text.contains("proc"), "ls / missing:\n{text}");
    assert!(text.contains("model name") && text.contains("Heron Virtual CPU"), "cpuinfo missing:\n{text}");
}

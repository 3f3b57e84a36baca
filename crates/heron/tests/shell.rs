//! The interactive path on the serial console: boot the kit without `kit=`, wait for the shell
//! prompt, type commands, check the answers. Also the durability test: kill Heron with SIGTERM
//! right after the guest's `sync` returns and check the host sees the data.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GUESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/guests");
const LIMIT: Duration = Duration::from_secs(600);

/// A running `heron` with its serial console captured.
struct Guest {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Guest {
    fn start(extra: &[&str]) -> Option<Guest> {
        Self::start_with_cmdline("console=ttyS0 quiet", extra)
    }

    fn start_with_cmdline(cmdline: &str, extra: &[&str]) -> Option<Guest> {
        if !Path::new(GUESTS).join("vmlinuz").exists() {
            eprintln!("skipping: ../shared/guests not present");
            return None;
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_heron"))
            .args(["--kernel", &format!("{GUESTS}/vmlinuz"), "--initrd", &format!("{GUESTS}/initramfs.cpio.gz")])
            .args(["--append", cmdline, "-m", "256M", "--timeout", "900"])
            .args(extra)
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
        let stdin = child.stdin.take();
        Some(Guest { child, stdin, out, reader: Some(reader) })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Wait until the output holds `needle` at least `count` times.
    fn wait_for(&self, needle: &str, count: usize) {
        let start = Instant::now();
        while start.elapsed() < LIMIT {
            if self.text().matches(needle).count() >= count {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("waited {LIMIT:?} for {needle:?} x{count}; output:\n{}", self.text());
    }

    fn send(&mut self, line: &str) {
        let s = self.stdin.as_mut().unwrap();
        s.write_all(format!("{line}\n").as_bytes()).unwrap();
        s.flush().unwrap();
    }

    /// Type `cmds` one at a time, each after a fresh prompt.
    fn run_commands(&mut self, cmds: &[&str]) {
        let prompts = self.text().matches("# ").count();
        self.wait_for("# ", prompts.max(1));
        for (k, cmd) in cmds.iter().enumerate() {
            self.wait_for("# ", prompts.max(1) + k);
            self.send(cmd);
        }
    }

    fn finish(mut self) -> (std::process::ExitStatus, String) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        self.reader.take().unwrap().join().unwrap();
        (status, self.text())
    }
}

#[test]
fn shell_on_serial_console() {
    let Some(mut g) = Guest::start(&[]) else { return };
    g.run_commands(&["uname -a", "ls /", "cat /proc/cpuinfo", "echo SHELL-$((6*7))"]);
    g.wait_for("SHELL-42", 1);
    g.send("poweroff -f");
    let (status, text) = g.finish();
    assert!(status.success(), "status {status:?}; output:\n{text}");
    assert!(text.contains("Linux") && text.contains("6.1.0"), "uname -a missing:\n{text}");
    assert!(text.contains("init") && text.contains("proc"), "ls / missing:\n{text}");
    assert!(text.contains("model name") && text.contains("Heron Virtual CPU"), "cpuinfo missing:\n{text}");
}

/// Heron killed with SIGTERM right after the guest's `sync` returns: the data is on the host.
#[test]
fn sigterm_after_sync_keeps_the_data() {
    if Command::new("e2fsck").arg("-V").output().is_err() {
        eprintln!("skipping: e2fsprogs not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("heron-durability-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("d.img");
    if std::fs::copy(Path::new(GUESTS).join("data.ext4"), &img).is_err() {
        eprintln!("skipping: ../shared/guests not present");
        return;
    }
    let Some(mut g) = Guest::start(&["--hda", img.to_str().unwrap()]) else { return };
    g.run_commands(&[
        "for m in $(cat /lib/modules/load-order); do insmod /lib/modules/$m 2>/dev/null; done; sleep 1",
        "mount -t ext4 /dev/sda /mnt && seq 1 5000 > /mnt/durable.txt && sync && echo SYNC-$((1+1))",
    ]);
    g.wait_for("SYNC-2", 1);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(g.child.id() as i32, libc::SIGTERM) };
    let (status, text) = g.finish();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "output:\n{text}");
    // The filesystem was not unmounted: replay its journal on a copy, as a mount would.
    let copy = dir.join("copy.img");
    std::fs::copy(&img, &copy).unwrap();
    let fsck = Command::new("e2fsck").args(["-fy"]).arg(&copy).output().unwrap();
    assert!(fsck.status.code().unwrap_or(8) <= 1, "e2fsck: {}", String::from_utf8_lossy(&fsck.stdout));
    let cat = Command::new("debugfs").args(["-R", "cat durable.txt"]).arg(&copy).output().unwrap();
    let data = String::from_utf8_lossy(&cat.stdout);
    assert_eq!(data.lines().count(), 5000, "durable.txt on the host:\n{data}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A one-shot HTTP/1.0 server on 127.0.0.1 serving `body` for any GET; returns the port.
fn serve_once(body: Vec<u8>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        // Bounded: serve at most a few connections, then stop.
        for _ in 0..4 {
            let Ok((mut s, _)) = listener.accept() else { return };
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req);
            let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    port
}

fn sha256_hex(data: &[u8]) -> String {
    let dir = std::env::temp_dir().join(format!("heron-sha-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("blob");
    std::fs::write(&f, data).unwrap();
    let out = Command::new("sha256sum").arg(&f).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

/// The kit's `net` check over the e1000 and user-mode NAT: DHCP, then an HTTP download from a
/// server of the test's own on the host's loopback (10.0.2.2 in the guest).
#[test]
fn kit_net_downloads_through_user_nat() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let body: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let want = sha256_hex(&body);
    let port = serve_once(body);
    let cmdline = format!("console=ttyS0 quiet kit=net kiturl=http://10.0.2.2:{port}/blob");
    let Some(g) = Guest::start_with_cmdline(&cmdline, &["--nic", "user"]) else { return };
    let (status, text) = g.finish();
    assert!(text.contains("KIT-PASS"), "output:\n{text}");
    assert!(text.contains(&want), "guest sha256 differs from the host's {want}; output:\n{text}");
    assert!(status.success(), "status {status:?}");
}

/// Host-to-guest port forwarding: the guest listens with busybox nc, the host connects to the
/// forwarded port and reads what the guest sends.
#[test]
fn hostfwd_reaches_a_guest_listener() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hostport = probe.local_addr().unwrap().port();
    drop(probe);
    let nic = format!("user,hostfwd=tcp:127.0.0.1:{hostport}-:8080");
    let Some(mut g) = Guest::start(&["--nic", &nic]) else { return };
    g.run_commands(&[
        "for m in $(cat /lib/modules/load-order); do insmod /lib/modules/$m 2>/dev/null; done; sleep 1",
        "ip link set lo up; ip link set eth0 up; udhcpc -i eth0 -n -q -t 5 -s /usr/share/udhcpc/default.script >/dev/null 2>&1; echo NET-$((3*3))",
    ]);
    g.wait_for("NET-9", 1);
    g.run_commands(&["echo GUEST-SAYS-$((40+2)) | nc -l -p 8080; echo NC-$((5+5))"]);
    // Connect (retrying while the guest's nc starts) and read its greeting.
    let start = Instant::now();
    let got = loop {
        assert!(start.elapsed() < LIMIT, "no forwarded connection; output:\n{}", g.text());
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", hostport)) {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            if !buf.is_empty() {
                break String::from_utf8_lossy(&buf).into_owned();
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(got.contains("GUEST-SAYS-42"), "host read {got:?}");
    g.wait_for("NC-10", 1);
    g.send("poweroff -f");
    let (status, text) = g.finish();
    assert!(status.success(), "status {status:?}; output:\n{text}");
}

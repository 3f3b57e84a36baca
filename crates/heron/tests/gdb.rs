//! Debian's `gdb` in batch mode against Heron booting the kit (`kit=boot`): the stop at the
//! bzImage's 64-bit entry, 100 `stepi` compared with `--trace` of the same deterministic boot,
//! a hardware breakpoint and a watchpoint that fire, `info registers` with CR0/CR3/EFER,
//! monitor commands, then `detach` and the guest runs on to `KIT-PASS`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn guests() -> Option<PathBuf> {
    let g = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/guests");
    g.join("vmlinuz").exists().then_some(g)
}

fn kernel_args(g: &Path) -> Vec<String> {
    let s = |p: &str| g.join(p).to_str().unwrap().to_string();
    vec!["--kernel".into(), s("vmlinuz"), "--initrd".into(), s("initramfs.cpio.gz"), "--append".into(), "console=ttyS0 kit=boot".into()]
}

/// Start Heron on the kit with `extra` arguments and a GDB port on a free port, waiting for
/// GDB (-S); returns the process (stdout piped when `serial`), its stderr and the `HOST:PORT`
/// it announced there.
fn spawn_waiting(g: &Path, extra: &[&str], serial: bool) -> (std::process::Child, BufReader<std::process::ChildStderr>, String) {
    let mut heron = Command::new(env!("CARGO_BIN_EXE_heron"))
        .args(kernel_args(g))
        .args(["-S", "--gdb", "tcp:127.0.0.1:0"])
        .args(extra)
        .stdout(if serial { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(heron.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(line.contains("waiting for GDB on 127.0.0.1:"), "{line}");
    (heron, err, addr)
}

/// Hex number after `tag ` in gdb's output lines (`printf "TAG %#lx\n", ...`).
fn tagged(out: &str, tag: &str) -> Vec<u64> {
    out.lines().filter_map(|l| l.strip_prefix(tag)).map(|v| u64::from_str_radix(v.trim().trim_start_matches("0x"), 16).unwrap()).collect()
}

#[test]
fn gdb_batch_session_on_the_kit_boot() {
    let Some(g) = guests() else {
        eprintln!("skipping: ../shared/guests not present");
        return;
    };
    let gdb_ok = Command::new("gdb").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(gdb_ok, "gdb is needed (Debian package 'gdb'; .ci/run installs it)");
    let dir = std::env::temp_dir().join(format!("heron-gdb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // The bzImage's 64-bit entry: the load address (pref_address, setup header 0x258) + 0x200
    // (Documentation/x86/boot.rst, "64-bit Boot Protocol").
    let bz = std::fs::read(g.join("vmlinuz")).unwrap();
    let entry = u64::from_le_bytes(bz[0x258..0x260].try_into().unwrap()) + 0x200;

    // The reference: the first 200 instructions of the same boot, traced.
    let trace = dir.join("trace");
    let st = Command::new(env!("CARGO_BIN_EXE_heron"))
        .args(kernel_args(&g))
        .args(["--max-insns", "200", "--trace-events", "insns", "--trace", trace.to_str().unwrap()])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(3));
    let traced: Vec<u64> = std::fs::read_to_string(&trace).unwrap().lines().map(|l| u64::from_str_radix(l.split_whitespace().nth(2).unwrap().trim_end_matches(':'), 16).unwrap()).collect();
    assert!(traced.len() >= 200);
    assert_eq!(traced[0], entry);

    let (mut heron, mut err, addr) = spawn_waiting(&g, &["--timeout", "600"], true);
    let mut stdout = heron.stdout.take().unwrap();
    let serial = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });

    let bp = traced[150];
    let script = format!(
        r#"set pagination off
set confirm off
target remote {addr}
printf "PC0 %#lx\n", $pc
set $i = 0
while $i < 100
  stepi
  printf "STEP %#lx\n", $pc
  set $i = $i + 1
end
hbreak *{bp:#x}
continue
printf "BRK %#lx\n", $pc
delete
set $w = $rsp - 8
printf "WADDR %#lx\n", $w
watch -l *(long *)$w
continue
printf "WATCHPC %#lx\n", $pc
printf "WVAL %#lx\n", *(long *)$w
delete
info registers
monitor info registers
monitor info tlb {bp:#x}
monitor stats
detach
"#
    );
    let script_path = dir.join("script.gdb");
    std::fs::write(&script_path, script).unwrap();
    let out = Command::new("gdb").args(["-batch", "-nx", "-x", script_path.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);

    assert_eq!(tagged(&text, "PC0 "), vec![entry], "GDB stops at the 64-bit entry first:\n{text}");
    let steps = tagged(&text, "STEP ");
    assert_eq!(steps.len(), 100, "{text}");
    assert_eq!(steps, traced[1..101], "stepi RIPs must match the trace");
    assert_eq!(tagged(&text, "BRK "), vec![bp], "the hardware breakpoint stops before its instruction:\n{text}");
    assert!(text.contains("Hardware watchpoint"), "{text}");
    let waddr = tagged(&text, "WADDR ")[0];
    assert_eq!(tagged(&text, "WATCHPC ").len(), 1, "the watchpoint fired:\n{text}");
    assert!(text.contains("New value"), "{text}");
    assert!(waddr > 0);
    for reg in ["cr0", "cr3", "efer", "fs_base", "rip"] {
        assert!(text.lines().any(|l| l.starts_with(reg)), "info registers lacks {reg}:\n{text}");
    }
    assert!(text.contains("icount="), "monitor info registers:\n{text}");
    assert!(text.contains("paging Level4"), "monitor info tlb:\n{text}");
    assert!(text.contains("guest instructions in"), "monitor stats:\n{text}");
    assert!(text.contains("Inferior 1 (Remote target) detached") || text.contains("detached"), "{text}");

    // Detached, the guest runs on to the end of the kit.
    let status = heron.wait().unwrap();
    let serial = serial.join().unwrap();
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(serial.contains("KIT-PASS"), "serial:\n{serial}\nstderr:\n{rest}");
    assert_eq!(status.code(), Some(0), "{rest}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A raw remote-protocol packet: `$data#checksum`.
fn packet(data: &str) -> Vec<u8> {
    let sum = data.bytes().fold(0u8, |s, b| s.wrapping_add(b));
    format!("${data}#{sum:02x}").into_bytes()
}

/// Read from `s` until `pred` holds for what arrived (or 30 s pass).
fn read_until(s: &mut std::net::TcpStream, pred: impl Fn(&str) -> bool) -> String {
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 512];
    while !pred(&got) {
        let n = s.read(&mut buf).expect("GDB stub went quiet");
        assert!(n > 0, "connection closed; got {got:?}");
        got += &String::from_utf8_lossy(&buf[..n]);
    }
    got
}

/// Ctrl-C (0x03) while the guest runs stops it with SIGINT; after `D` (detach) it runs on
/// without a debugger until its instruction limit.
#[test]
fn ctrl_c_interrupts_a_running_guest() {
    use std::io::Write;
    let Some(g) = guests() else {
        return;
    };
    // Enough instructions that the guest still runs when Ctrl-C comes (300M took under the
    // 300 ms the test waits once the kernel's decompressor ran at 1G instructions a second).
    let (mut heron, mut err, addr) = spawn_waiting(&g, &["--max-insns", "3000000000"], false);
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(&packet("?")).unwrap();
    read_until(&mut s, |g| g.contains('#'));
    s.write_all(b"+").unwrap();
    s.write_all(&packet("c")).unwrap();
    read_until(&mut s, |g| g.contains('+'));
    std::thread::sleep(std::time::Duration::from_millis(300));
    s.write_all(&[0x03]).unwrap();
    let stop = read_until(&mut s, |g| g.contains("$T02") || g.contains("$S02"));
    assert!(stop.contains("02"), "{stop}");
    s.write_all(b"+").unwrap();
    s.write_all(&packet("D")).unwrap();
    read_until(&mut s, |g| g.contains("$OK"));
    drop(s);
    let status = heron.wait().unwrap();
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(3), "ran on to --max-insns after the detach: {rest}");
    assert!(rest.contains("instruction limit reached"), "{rest}");
}

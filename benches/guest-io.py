#!/usr/bin/env python3
"""Guest I/O throughput under Heron and under QEMU TCG, same kit, same machine, one run.

disk: the kit kernel with a copy of data.ext4 as the first IDE disk; after the ATA modules load,
      time `dd if=/dev/sda of=/dev/null bs=1M` (the whole 32 MiB disk, first read after boot).
net:  an e1000 with user-mode NAT; after DHCP, time `wget -O /dev/null` of a 64 MiB file from an
      HTTP server on the host's loopback (10.0.2.2 in the guest).

Prints the guest's own `time` (Heron's guest time is virtual: 1 ns per instruction, but
host-synchronized while the guest waits on the network) and the host wall time of the command.

usage: benches/guest-io.py [disk|net|all] [path/to/heron]
"""
import http.server, os, shutil, socketserver, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
G = os.path.join(ROOT, "..", "shared", "guests")
WHAT = sys.argv[1] if len(sys.argv) > 1 else "all"
HERON = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "target", "release", "heron")
KERNEL = ["--kernel", os.path.join(G, "vmlinuz"), "--initrd", os.path.join(G, "initramfs.cpio.gz")]
MODS = "for m in $(cat /lib/modules/load-order); do insmod /lib/modules/$m 2>/dev/null; done; sleep 1"


def session(cmd, setup, measured, mib):
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    buf = b""

    def wait(token):
        nonlocal buf
        while token not in buf:
            b = os.read(p.stdout.fileno(), 4096)
            if not b:
                raise RuntimeError("guest output ended: " + buf[-2000:].decode("latin1"))
            buf += b

    def send(line):
        p.stdin.write(line.encode() + b"\n")
        p.stdin.flush()

    wait(b"# ")
    send(setup + "; echo SETUP-$((1+1))")
    wait(b"SETUP-2")
    start = time.time()
    send("time " + measured + "; echo DONE-$((2+2))")
    wait(b"DONE-4")
    wall = time.time() - start
    real = [l.strip() for l in buf.decode("latin1").splitlines() if l.startswith("real")]
    send("poweroff -f")
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
    return "guest %s | host wall %.2f s for %d MiB = %.1f MiB/s" % (real[-1] if real else "?", wall, mib, mib / wall)


def qemu(extra):
    return ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-display", "none", "-serial", "stdio",
            "-monitor", "none", "-no-reboot", "-kernel", KERNEL[1], "-initrd", KERNEL[3],
            "-append", "console=ttyS0 quiet"] + extra


def disk(tmp):
    img = os.path.join(tmp, "d.img")
    for name, cmd in (("heron", [HERON] + KERNEL + ["--append", "console=ttyS0 quiet", "--hda", img]),
                      ("qemu-tcg", qemu(["-drive", "file=%s,format=raw,if=ide" % img]))):
        shutil.copy(os.path.join(G, "data.ext4"), img)
        print("disk %-9s" % name, session(cmd, MODS, "dd if=/dev/sda of=/dev/null bs=1M", 32), flush=True)


def net(tmp):
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    with open(os.path.join(www, "blob"), "wb") as f:
        f.write(os.urandom(64 << 20))
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=www)
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    setup = MODS + "; ip link set lo up; ip link set eth0 up; udhcpc -i eth0 -n -q -t 5 -s /usr/share/udhcpc/default.script >/dev/null 2>&1"
    get = "wget -q -O /dev/null http://10.0.2.2:%d/blob" % port
    for name, cmd in (("heron", [HERON] + KERNEL + ["--append", "console=ttyS0 quiet", "--nic", "user"]),
                      ("qemu-tcg", qemu(["-netdev", "user,id=n0", "-device", "e1000,netdev=n0"]))):
        print("net  %-9s" % name, session(cmd, setup, get, 64), flush=True)
    srv.shutdown()


def main():
    tmp = tempfile.mkdtemp()
    try:
        if WHAT in ("disk", "all"):
            disk(tmp)
        if WHAT in ("net", "all"):
            net(tmp)
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()

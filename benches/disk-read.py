#!/usr/bin/env python3
"""Guest disk read throughput under Heron and under QEMU TCG, same kit, same machine.

Boots the kit kernel with a copy of data.ext4 as the first IDE disk, waits for the shell,
loads the ATA modules, then times `dd if=/dev/sda of=/dev/null bs=1M` (the whole 32 MiB disk,
uncached: first read after boot). Prints the guest's `time` of the dd (guest time; Heron's guest time is
virtual, 1 ns per instruction) and the host wall time of the dd command.

usage: benches/disk-read.py [path/to/heron]
"""
import os, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
G = os.path.join(ROOT, "..", "shared", "guests")
HERON = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "heron")


def session(cmd):
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    buf = b""

    def wait(token, count=1):
        nonlocal buf
        while buf.count(token) < count:
            b = os.read(p.stdout.fileno(), 4096)
            if not b:
                raise RuntimeError("guest output ended: " + buf[-2000:].decode("latin1"))
            buf += b

    def send(line):
        p.stdin.write(line.encode() + b"\n")
        p.stdin.flush()

    wait(b"# ")
    send("for m in $(cat /lib/modules/load-order); do insmod /lib/modules/$m 2>/dev/null; done; sleep 1; echo MODS-$((1+1))")
    wait(b"MODS-2")
    start = time.time()
    send("time dd if=/dev/sda of=/dev/null bs=1M; echo DD-$((2+2))")
    wait(b"DD-4")
    wall = time.time() - start
    text = buf.decode("latin1")
    line = [l for l in text.splitlines() if l.startswith("real")]
    if not line:
        print(text[-600:], file=sys.stderr)
    send("poweroff -f")
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
    return (line[-1].strip() if line else "?"), wall


def main():
    tmp = tempfile.mkdtemp()
    try:
        img = os.path.join(tmp, "d.img")
        shutil.copy(os.path.join(G, "data.ext4"), img)
        k = ["--kernel", os.path.join(G, "vmlinuz"), "--initrd", os.path.join(G, "initramfs.cpio.gz")]
        heron = [HERON] + k + ["--append", "console=ttyS0 quiet", "-m", "256M", "--hda", img]
        qemu = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-display", "none", "-serial", "stdio",
                "-monitor", "none", "-no-reboot", "-kernel", k[1], "-initrd", k[3], "-append", "console=ttyS0 quiet",
                "-drive", "file=%s,format=raw,if=ide" % img]
        for name, cmd in (("heron", heron), ("qemu-tcg", qemu)):
            dd, wall = session(cmd)
            mbs = 32 / wall
            print("%-9s guest %s | host wall %.2f s for 32 MiB = %.1f MiB/s" % (name, dd, wall, mbs))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()

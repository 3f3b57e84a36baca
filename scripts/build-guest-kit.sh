#!/usr/bin/env bash
# Build a minimal Heron guest kit from Debian 12 (bookworm) packages, for users who do not have
# the prepared ../shared/guests directory:
#
#   OUTDIR/vmlinuz            the stock Debian kernel (bzImage) from linux-image-amd64
#   OUTDIR/initramfs.cpio.gz  busybox-static plus an /init that runs the "boot" check
#   OUTDIR/SHA256SUMS         checksums of the two files
#
# Usage: scripts/build-guest-kit.sh OUTDIR
#
# Needs a Debian/Ubuntu-style host with apt whose sources include Debian 12 main (run
# `apt-get update` first if the package lists are empty), plus dpkg-deb and gzip. No root is
# needed: packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x`.
# The initramfs is written with the host's cpio if present, otherwise with busybox's own cpio.
#
# Boot it, e.g.:
#   qemu-system-x86_64 -m 256 -nographic -no-reboot -kernel OUTDIR/vmlinuz \
#     -initrd OUTDIR/initramfs.cpio.gz -append "console=ttyS0 quiet panic=-1 kit=boot"
# /init prints `KIT-READY <kernel release> kit=boot`, the CPU model, CPU count, MemTotal and the
# sha256 of 1 MiB of zeros, then `KIT-PASS` (or `KIT-FAIL`) and powers off. Without kit= on the
# command line it starts a shell on the console.

set -euo pipefail

prog=${0##*/}

die() {
    echo "$prog: error: $*" >&2
    exit 1
}

usage() {
    echo "usage: $prog OUTDIR" >&2
    echo "Builds OUTDIR/vmlinuz and OUTDIR/initramfs.cpio.gz from Debian 12 packages." >&2
    exit 2
}

[[ $# -eq 1 ]] || usage
[[ $1 != -h && $1 != --help ]] || usage
out=$1

for tool in apt-get apt-cache dpkg-deb gzip find sort sha256sum; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "'$tool' not found; this script needs a Debian-style host with apt and dpkg"
done

mkdir -p "$out" || die "cannot create output directory '$out'"
out=$(cd "$out" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/heron-guest-kit.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# apt-get download drops privileges to _apt when run as root; let it reach its directory.
chmod 755 "$tmp"

# linux-image-amd64 is a metapackage; the kernel itself is in the linux-image-<abi>-amd64 it
# depends on.
apt-cache show linux-image-amd64 >/dev/null 2>&1 ||
    die "apt knows no package 'linux-image-amd64': add Debian 12 (bookworm) main to the apt sources and run 'apt-get update'"
apt-cache show busybox-static >/dev/null 2>&1 ||
    die "apt knows no package 'busybox-static': run 'apt-get update' (Debian 12 main is needed)"
kpkg=$(apt-cache depends linux-image-amd64 |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ { print $2; exit }')
[[ -n $kpkg ]] || die "cannot find the kernel package linux-image-amd64 depends on"
echo "$prog: kernel package: $kpkg" >&2

debs=$tmp/debs
mkdir -p "$debs"
if [[ $EUID -eq 0 ]] && id _apt >/dev/null 2>&1; then
    chown _apt "$debs" # avoids apt's "download is performed unsandboxed" warning
fi
echo "$prog: downloading linux-image-amd64 $kpkg busybox-static ..." >&2
(cd "$debs" && apt-get download -q linux-image-amd64 "$kpkg" busybox-static) ||
    die "apt-get download failed (network? package lists out of date? try 'apt-get update')"

extract() { # extract PACKAGE DEST
    local deb
    deb=$(find "$debs" -maxdepth 1 -name "${1}_*.deb" -print -quit)
    [[ -n $deb ]] || die "downloaded .deb for '$1' not found"
    mkdir -p "$2"
    dpkg-deb -x "$deb" "$2" || die "dpkg-deb -x failed on $deb"
}
extract "$kpkg" "$tmp/kernel"
extract busybox-static "$tmp/busybox"

# Kernel.
mapfile -t kernels < <(find "$tmp/kernel/boot" -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null)
[[ ${#kernels[@]} -eq 1 ]] ||
    die "expected exactly one /boot/vmlinuz-* in $kpkg, found ${#kernels[@]}"
release=${kernels[0]##*/vmlinuz-}
cp "${kernels[0]}" "$out/vmlinuz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"

# Initramfs tree.
busybox=$tmp/busybox/bin/busybox
[[ -x $busybox ]] || die "busybox-static did not contain an executable /bin/busybox"
root=$tmp/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,root,etc,mnt}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
chmod 755 "$root/bin/busybox"
# /init is a script, so /bin/sh must exist before `busybox --install` runs.
ln -s busybox "$root/bin/sh"

cat >"$root/init" <<'INIT'
#!/bin/sh
# Heron guest kit /init (built by scripts/build-guest-kit.sh).
# kit=boot on the kernel command line runs the boot check and powers off; no kit= gives a shell.
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s

kit=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        kit=*) kit=${arg#kit=} ;;
    esac
done

echo "KIT-READY $(uname -r) kit=${kit:-shell}"
case "$kit" in
    "")
        echo "no kit= on the command line: starting a shell (type 'poweroff -f' to stop)"
        setsid cttyhack sh
        ;;
    boot)
        model=$(grep -m1 'model name' /proc/cpuinfo | sed 's/^[^:]*: *//')
        echo "cpu: ${model:-unknown}"
        echo "nproc: $(nproc)"
        grep MemTotal /proc/meminfo
        sum=$(head -c 1048576 /dev/zero | sha256sum | cut -d' ' -f1)
        echo "sha256 $sum"
        if [ "$sum" = 30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58 ]; then
            echo KIT-PASS
        else
            echo "sha256 of 1 MiB of zeros is wrong"
            echo KIT-FAIL
        fi
        ;;
    *)
        echo "unknown kit '$kit' (this kit only has kit=boot)"
        echo KIT-FAIL
        ;;
esac
sync
poweroff -f
INIT
chmod 755 "$root/init"

# Archive (newc, owned by root), compressed reproducibly.
if command -v cpio >/dev/null 2>&1; then
    cpio_create() { cpio -o -H newc -R 0:0 --quiet; }
else
    cpio_create() { "$busybox" cpio -o -H newc -R 0:0 2>/dev/null; }
fi
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio_create) | gzip -9 -n >"$out/initramfs.cpio.gz.tmp" ||
    die "creating the initramfs failed"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"

(cd "$out" && sha256sum vmlinuz initramfs.cpio.gz >SHA256SUMS)

echo "$prog: kernel $release" >&2
echo "$prog: wrote $out/vmlinuz, $out/initramfs.cpio.gz, $out/SHA256SUMS" >&2

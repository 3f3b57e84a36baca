#!/bin/bash
# CPU speed of Heron against QEMU TCG on the guest kit, both measured in this run, same machine:
#   bench: kit=bench, 7-Zip's LZMA benchmark (`7zz b 1 -mmt1 -md18`); compares the `Tot:` rating
#          (the last column; higher is faster). 7-Zip times itself with the guest's clock, and
#          Heron's guest time is virtual (1 ns per guest instruction), so Heron's rating is
#          also shown scaled to host time: rating x (virtual seconds / host seconds of the run,
#          from --stats). The ratio uses the scaled rating.
#   boot:  kit=boot, wall time from start to power-off (lower is faster), median of N runs.
# Heron runs with --stats, whose tier-1 lines (translations, compile time, share of guest
# instructions in tier 1, exits) are printed with its results.
#
# usage: benches/guest-cpu.sh [bench|boot|all] [runs (boot, default 3)] [path/to/heron]
# Needs qemu-system-x86_64 (../shared/tools/qemu-kit installs it when missing).
set -u
what=${1:-all}
runs=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
heron=${3:-$root/target/release/heron}
G=$root/../shared/guests
qkit=$root/../shared/tools/qemu-kit
[ -x "$heron" ] || { echo "no Heron binary at $heron: run cargo build --release" >&2; exit 2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# heron_run CHECK OUT: one run, serial output to OUT, --stats to OUT.stats; prints the wall time.
heron_run() {
  local s e
  s=$(date +%s.%N)
  timeout 1800 "$heron" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" -m 256M --no-reboot --stats \
    --append "console=ttyS0 quiet panic=-1 kit=$1" < /dev/null > "$2" 2> "$2.stats"
  e=$(date +%s.%N)
  awk -v s="$s" -v e="$e" 'BEGIN{printf "%.2f\n", e-s}'
}

# qemu_run CHECK OUT: one run through qemu-kit; prints the wall time it reports.
qemu_run() {
  "$qkit" "$1" > "$2" 2>&1
  sed -n 's/.* in \([0-9.]*\) s wall.*/\1/p' "$2"
}

median() { sort -n | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

tot() { tr -d '\r' < "$1" | grep -a 'Tot:' | tail -1 | awk '{print $NF}'; }

if [ "$what" = bench ] || [ "$what" = all ]; then
  echo "== kit=bench (7-Zip LZMA rating, Tot: last column; higher is faster)"
  hw=$(heron_run bench "$tmp/hb")
  qw=$(qemu_run bench "$tmp/qb")
  h=$(tot "$tmp/hb"); q=$(tot "$tmp/qb")
  grep -a -E 'Avr:|Tot:|KIT-' "$tmp/hb" | sed 's/^/heron: /'
  grep -a -E 'Avr:|Tot:|KIT-' "$tmp/qb" | sed 's/^/qemu:  /'
  grep -a '^heron:' "$tmp/hb.stats" | sed 's/^heron: /heron --stats: /'
  # Virtual seconds = guest instructions / 1e9; host seconds from the same --stats line.
  scale=$(grep -a -m1 'guest instructions in' "$tmp/hb.stats" | awk '{for(i=1;i<=NF;i++) if($i=="guest") n=$(i-1); for(i=1;i<=NF;i++) if($i=="s") t=$(i-1); if (t>0) printf "%.4f", n/1e9/t}')
  echo "bench: heron Tot ${h:-?} in virtual time (${hw} s wall), qemu-tcg Tot ${q:-?} (${qw} s wall)"
  if [ -n "$h" ] && [ -n "$q" ] && [ -n "$scale" ]; then
    awk -v h="$h" -v q="$q" -v k="$scale" 'BEGIN{printf "heron Tot scaled to host time: %.0f (virtual/host time %.3f)\nbench ratio heron/qemu (rating, host time): %.2f\n", h*k, k, h*k/q}'
  fi
fi

if [ "$what" = boot ] || [ "$what" = all ]; then
  echo "== kit=boot (wall time to power-off, median of $runs; lower is faster)"
  : > "$tmp/hw"; : > "$tmp/qw"
  for _ in $(seq "$runs"); do
    heron_run boot "$tmp/hboot" >> "$tmp/hw"
    grep -a -q KIT-PASS "$tmp/hboot" || echo "heron: kit=boot did not pass" >&2
    qemu_run boot "$tmp/qboot" >> "$tmp/qw"
  done
  grep -a '^heron:' "$tmp/hboot.stats" | sed 's/^heron: /heron --stats: /'
  hm=$(median < "$tmp/hw"); qm=$(median < "$tmp/qw")
  echo "boot: heron $(tr '\n' ' ' < "$tmp/hw")-> median $hm s; qemu-tcg $(tr '\n' ' ' < "$tmp/qw")-> median $qm s"
  awk -v h="$hm" -v q="$qm" 'BEGIN{printf "boot ratio heron/qemu (wall): %.2f\n", h/q}'
fi

#!/usr/bin/env bash
# `scripts/bench downtime`: the seconds a web server is down while its own
# package is updated (a new build of lighttpd's binary), on a real Debian forky
# boot (composefs; see image.sh): (a) `livefs apply --restart`, (b) `systemctl
# soft-reboot` into the new deployment (ostree admin prepare-soft-reboot), (c) a
# reboot into it (poweroff, then QEMU boots the new entry at once: no firmware).
# A probe on the host (127.0.0.1, QEMU forwarding to the guest's port 80) sends
# GET / every 10 ms all along; downtime = time from the first failed request
# of each outage to the next answered one, summed over the phase.
# Usage: LIVEFS=BINARY downtime.sh. Prints the table; the last line is
#   downtime: livefs X s, soft-reboot Y s, reboot Z s
set -euo pipefail
: "${LIVEFS:?}"
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${LIVEFS_TEST_CACHE:-/var/cache/livefs-test}/vm-forky
IMG=$(bash "$HERE/image.sh" "$CACHE" forky | tail -n 1)
OUT=$(mktemp -d /tmp/livefs-downtime.XXXXXX)
S=$OUT/share
mkdir -p "$S/out"
cp "$LIVEFS" "$S/livefs"
cp "$HERE/guest-downtime.sh" "$S/scenario.sh"
cp "$HERE/guest-lib.sh" "$IMG/commit-a" "$IMG/commit-b" "$S/"
if [ -e /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
    ACCEL=(-machine q35,accel=kvm -cpu host)
else
    ACCEL=(-machine q35,accel=tcg -cpu max)
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
qemu-img create -q -f qcow2 -b "$IMG/disk.raw" -F raw "$OUT/disk.qcow2"
QEMU=
# boot CMDLINE N: starts QEMU in the background (QEMU).
boot() {
    timeout 1800 qemu-system-x86_64 -nodefaults -no-user-config "${ACCEL[@]}" -smp 2 -m 2048 \
        -kernel "$IMG/vmlinuz" -initrd "$IMG/initramfs.img" -append "$1 panic=-1 mitigations=off" \
        -drive "file=$OUT/disk.qcow2,if=virtio,format=qcow2,cache=unsafe" \
        -virtfs "local,path=$S,mount_tag=livefs,security_model=none,id=share" \
        -nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$PORT-:80" \
        -display none -serial "file:$OUT/console$2.log" -no-reboot &
    QEMU=$!
}
# wait_for FILE: until the guest leaves FILE in the share (QEMU still running).
wait_for() {
    until [ -e "$S/$1" ]; do
        kill -0 "$QEMU" 2>/dev/null || { echo "downtime: the VM stopped before $1; see $OUT" >&2; exit 1; }
        sleep 0.01
    done
}
now() { date +%s.%N; }
mark() { echo "$1 $(now)" >>"$OUT/marks"; }
trap 'touch "$OUT/probe.stop"; [ -z "$QEMU" ] || kill "$QEMU" 2>/dev/null || true' EXIT

boot "$(cat "$IMG/cmdline")" 1
python3 "$HERE/http-probe.py" "$PORT" 0.01 "$OUT/probe.stop" >"$OUT/probe.log" &
echo "downtime: booting the forky VM (${ACCEL[1]}); the guest builds and deploys the update first" >&2
wait_for ready-live
sleep 3
mark live
touch "$S/go-live"
wait_for live-done
mark live-done
wait_for ready-soft
sleep 3
mark soft-reboot
touch "$S/go-soft"
wait_for soft-done
sleep 3
mark reboot
touch "$S/go-reboot"
wait "$QEMU" || true
boot "$(cat "$S/cmdline-next")" 2
wait_for reboot-done
sleep 3
mark end
touch "$S/finish"
wait "$QEMU" || true
QEMU=
touch "$OUT/probe.stop"
sleep 0.2
python3 - "$OUT/probe.log" "$OUT/marks" <<'PY'
import sys
probes = [(float(t), ok == "1") for t, ok in (l.split() for l in open(sys.argv[1]) if len(l.split()) == 2)]
marks = dict((name, float(t)) for name, t in (l.split() for l in open(sys.argv[2])))
def phase(start, end):
    """Downtime (s) and wall time until served again (s) of [start, end)."""
    down, outage, served = 0.0, None, None
    for t, ok in probes:
        if t < start or t >= end:
            continue
        if not ok and outage is None:
            outage = t
        elif ok and outage is not None:
            down += t - outage
            served, outage = t, None
    if outage is not None:
        down += end - outage
        served = end
    return down, (served - start) if served else 0.0
live = phase(marks["live"], marks["soft-reboot"])
live_wall = marks["live-done"] - marks["live"]
soft = phase(marks["soft-reboot"], marks["reboot"])
reboot = phase(marks["reboot"], marks["end"])
n = sum(1 for t, _ in probes if marks["live"] <= t < marks["end"])
print(f"{n} requests, one every 10 ms; downtime = failed or refused requests until the next answer")
print(f"{'':28} {'downtime':>10} {'until served':>13} {'downtime ratio':>15}")
ratio = lambda d: "-" if live[0] == 0 else f"{d / live[0]:.0f}x livefs"
print(f"{'livefs apply --restart':28} {live[0]:9.3f}s {live_wall:12.2f}s {'':>15}")
print(f"{'systemctl soft-reboot':28} {soft[0]:9.3f}s {soft[1]:12.2f}s {ratio(soft[0]):>15}")
print(f"{'reboot':28} {reboot[0]:9.3f}s {reboot[1]:12.2f}s {ratio(reboot[0]):>15}")
print(f"downtime: livefs {live[0]:.3f} s, soft-reboot {soft[0]:.3f} s, reboot {reboot[0]:.3f} s")
PY
rm -f "$OUT/disk.qcow2"

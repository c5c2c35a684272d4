#!/usr/bin/env bash
# `scripts/bench downtime`: the seconds a web server is down while its own
# package is updated (a new build of lighttpd's binary), on a real Debian forky
# boot (composefs; see image.sh), each row ROUNDS times (default 3; medians and
# ranges), in one run: (a) `livefs apply --restart`; the restart floor: the same
# unit restarted by `systemctl restart` alone, on the same boot, between the
# rounds of (a) (the update is undone by `livefs apply --target B` between
# them, not measured); (a) again with X-ReloadIfChanged=yes on the unit
# (lighttpd's graceful reload instead of a restart); a socket-activated lighttpd
# (port 8081, its .socket unchanged, its binary changed) through `livefs apply
# --restart`: every request counted; a broken build (X: lighttpd exits 1)
# through `livefs apply --restart`, rolled back by its failed health check: the
# outage from the broken restart until the previous build serves again;
# (b) `systemctl soft-reboot` into the new
# deployment (ostree admin prepare-soft-reboot); (c) a reboot into it (poweroff,
# then QEMU boots the new entry at once: no firmware). Probes on the host
# (127.0.0.1, QEMU forwarding to the guest's ports 80 and 8081) send GET /
# every 10 ms all along; downtime = time from the first failed request of each
# outage to the next answered one, summed over the step.
# Usage: LIVEFS=BINARY [ROUNDS=N] downtime.sh. Prints the table; the last lines are
#   downtime: livefs X s, restart-floor F s, rolled-back B s, soft-reboot Y s, reboot Z s
#   socket-activated: N failed of M requests
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
ROUNDS=${ROUNDS:-3}
echo "$ROUNDS" >"$S/rounds"
if [ -e /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
    ACCEL=(-machine q35,accel=kvm -cpu host)
else
    ACCEL=(-machine q35,accel=tcg -cpu max)
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
PORT_SA=$(free_port)
qemu-img create -q -f qcow2 -b "$IMG/disk.raw" -F raw "$OUT/disk.qcow2"
QEMU=
# boot CMDLINE N: starts QEMU in the background (QEMU).
boot() {
    timeout 1800 qemu-system-x86_64 -nodefaults -no-user-config "${ACCEL[@]}" -smp 2 -m 2048 \
        -kernel "$IMG/vmlinuz" -initrd "$IMG/initramfs.img" -append "$1 panic=-1 mitigations=off" \
        -drive "file=$OUT/disk.qcow2,if=virtio,format=qcow2,cache=unsafe" \
        -virtfs "local,path=$S,mount_tag=livefs,security_model=none,id=share" \
        -nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$PORT-:80,hostfwd=tcp:127.0.0.1:$PORT_SA-:8081" \
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
# A socket-activated server's first request waits for it to start: 10 s each.
python3 "$HERE/http-probe.py" "$PORT_SA" 0.01 "$OUT/probe.stop" 10 >"$OUT/probe-sa.log" &
echo "downtime: booting the forky VM (${ACCEL[1]}); the guest builds and deploys the update first" >&2
STEPS=()
for i in $(seq "$ROUNDS"); do STEPS+=("live-$i" "back-$i" "floor-$i"); done
for i in $(seq "$ROUNDS"); do STEPS+=("reload-$i" "reload-back-$i"); done
for i in $(seq "$ROUNDS"); do STEPS+=("broken-$i"); done
STEPS+=(sa)
for step in "${STEPS[@]}"; do
    wait_for "ready-$step"
    sleep 3
    mark "$step"
    touch "$S/go-$step"
    wait_for "done-$step"
    mark "$step-done"
    echo "downtime: $step done" >&2
done
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
python3 - "$OUT/probe.log" "$OUT/marks" "$OUT/probe-sa.log" "$ROUNDS" "$S/out/guest.log" <<'PY'
import statistics, sys
def load(path):
    return [(float(t), ok == "1") for t, ok in (l.split() for l in open(path) if len(l.split()) == 2)]
probes, sa_probes = load(sys.argv[1]), load(sys.argv[3])
marks = [(name, float(t)) for name, t in (l.split() for l in open(sys.argv[2]))]
at = dict(marks)
rounds = int(sys.argv[4])
# A step lasts from its mark to the next step's (3 s or more after it returned).
starts = [(n, t) for n, t in marks if not n.endswith("-done")]
ends = {n: starts[i + 1][1] for i, (n, _) in enumerate(starts[:-1])}
def phase(start, end, probes=probes):
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
def row(prefix):
    downs = [phase(at[f"{prefix}-{i}"], ends[f"{prefix}-{i}"])[0] for i in range(1, rounds + 1)]
    walls = [at[f"{prefix}-{i}-done"] - at[f"{prefix}-{i}"] for i in range(1, rounds + 1)]
    return statistics.median(downs), min(downs), max(downs), statistics.median(walls), downs
live, floor, reload, broken = row("live"), row("floor"), row("reload"), row("broken")
soft = phase(at["soft-reboot"], at["reboot"])
reboot = phase(at["reboot"], at["end"])
sa = [ok for t, ok in sa_probes if at["sa"] <= t < ends["sa"]]
n = sum(1 for t, _ in probes if at["live-1"] <= t < at["end"])
print(f"{n} requests on port 80, one every 10 ms; downtime = failed or refused requests until the next answer")
print(f"{rounds} rounds a row; median [min-max]; 'command' = how long the command ran")
print(f"{'':34} {'downtime median':>16} {'range':>17} {'command':>9} {'vs floor':>9}")
for name, r in [("livefs apply --restart", live), ("restart floor (systemctl restart)", floor),
                ("livefs apply, X-ReloadIfChanged", reload), ("broken build, rolled back", broken)]:
    ratio = f"{r[0] / floor[0]:.2f}x" if floor[0] else "-"
    print(f"{name:34} {r[0]:15.3f}s {r[1]:7.3f}s-{r[2]:7.3f}s {r[3]:8.2f}s {ratio:>9}")
for name, p in [("systemctl soft-reboot", soft), ("reboot", reboot)]:
    ratio = f"{p[0] / live[0]:.0f}x livefs" if live[0] else "-"
    print(f"{name:34} {p[0]:15.3f}s {'(one run)':>17} {p[1]:8.2f}s {ratio:>9}")
print("every round (s): " + "; ".join(f"{k} " + " ".join(f"{d:.3f}" for d in r[4])
                                   for k, r in [("livefs", live), ("floor", floor), ("reload", reload),
                                                ("rolled-back", broken)]))
# The way back as livefs measured it (the guest logs each rollback's seconds).
import re
backs = [m.group(1) for m in (re.search(r" broken-\d+: rolled_back in ([0-9.]+) s", l) for l in open(sys.argv[5])) if m]
print(f"the broken build was rolled back (exit status 5) in {len(backs)} of {rounds} rounds; "
      f"livefs's way back took {', '.join(backs)} s; rolled back vs floor: "
      + (f"{broken[0] / floor[0]:.2f}x (goal: at most 2x)" if floor[0] else "-"))
# Whether the reload ran the new build (the guest logs both binaries' digests).
runs = [l.split()[-4].rstrip(",") == l.split()[-1] for l in open(sys.argv[5]) if "C's is" in l]
print(f"after the reload, lighttpd runs the new build in {sum(runs)} of {len(runs)} rounds "
      "(a graceful reload that does not re-execute keeps the old code: livefs still lists it as needing a restart)")
print(f"downtime: livefs {live[0]:.3f} s, restart-floor {floor[0]:.3f} s, rolled-back {broken[0]:.3f} s, soft-reboot {soft[0]:.3f} s, reboot {reboot[0]:.3f} s")
print(f"socket-activated: {sum(1 for ok in sa if not ok)} failed of {len(sa)} requests")
PY
rm -f "$OUT/disk.qcow2"

#!/usr/bin/env bash
# The VM tests of a real boot: a Debian OSTree system (image.sh; or bootc's
# native composefs backend, image-bootc.sh) booted with
# QEMU (direct kernel boot of version 1's boot entry; KVM when a usable one is
# loaded, else TCG), systemd as PID 1, ostree-prepare-root in the initramfs.
# The host talks to the guest through a 9p share: the guest's agent unit runs
# the scenario script found there and powers off (or soft-reboots, when the
# scenario asks, and runs it again). One boot per scenario script:
#   bookworm (Debian 12):
#   1. guest-boot1.sh: status, apply (refused, then --allow-replacement), the new
#      unit loaded, the web server started and serving, restart hints, restart,
#      reset, apply again (left live);
#   2. guest-boot2.sh: after that reboot, nothing is live, stale state is cleaned.
#   forky (composefs, read-only sysroot):
#   1. guest-composefs.sh: the seed flow on a composefs boot, a state overlay on
#      /usr/local kept across apply and reset, then a soft reboot.
#   forky-selinux (composefs, refpolicy enforcing, labelled commits):
#   1. guest-selinux.sh: the seed flow enforcing: the server confined, the labels
#      of /usr and /etc, no denials of livefs, reset.
#   bookworm, automatic runs:
#   1. guest-auto.sh: livefs-auto.path enabled; deployments made by `ostree admin
#      deploy` (and --stage) go live by themselves, a kernel update is left for the
#      reboot, a forbidden replacement fails the unit; the journal has each;
#   2. guest-auto2.sh: the reboot starts the last deployment (the boot entry the
#      first boot named in next-cmdline), nothing is live.
#   forky-bootc (bootc's native composefs backend: no OSTree, image-bootc.sh):
#   1. guest-bootc.sh: the seed flow, a rollback of a broken build, the
#      automatic run, then a soft reboot; 2. guest-bootc2.sh: after a reboot.
#   bookworm, ssh: guest-ssh.sh brings up the network and sshd and waits while the
#   host drives it with Ansible over SSH (SSH_PORT: the host's forward to port 22).
# Usage: OUT=DIR LIVEFS=BINARY [SSH_PORT=N] run.sh RELEASE SCRIPT... Results land in $OUT/boot1, ….
set -euo pipefail
: "${OUT:?}" "${LIVEFS:?}"
HERE=$(cd "$(dirname "$0")" && pwd)
RELEASE=${1:?usage: run.sh RELEASE SCRIPT...}
shift
case $RELEASE in
bookworm) CACHE=${LIVEFS_TEST_CACHE:-/var/cache/livefs-test}/vm ;;
# bootc's native composefs backend, of forky's trees.
forky-bootc) CACHE=${LIVEFS_TEST_CACHE:-/var/cache/livefs-test}/vm-forky ;;
*) CACHE=${LIVEFS_TEST_CACHE:-/var/cache/livefs-test}/vm-$RELEASE ;;
esac
if [ "$RELEASE" = forky-bootc ]; then
    IMG=$(bash "$HERE/image-bootc.sh" "$CACHE" | tail -n 1)
else
    IMG=$(bash "$HERE/image.sh" "$CACHE" "$RELEASE" | tail -n 1)
fi

if [ -e /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
    ACCEL=(-machine q35,accel=kvm -cpu host)
else
    ACCEL=(-machine q35,accel=tcg -cpu max)
fi
# A network only when asked: QEMU's user networking, the guest's sshd forwarded
# to 127.0.0.1:SSH_PORT on the host.
NET=(-nic none)
[ -z "${SSH_PORT:-}" ] || NET=(-nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$SSH_PORT-:22")
mkdir -p "$OUT"
qemu-img create -q -f qcow2 -b "$IMG/disk.raw" -F raw "$OUT/disk.qcow2"

# The kernel command line: version 1's boot entry's, or the one a scenario left
# in its share's next-cmdline (the boot entry its deployments made the default).
CMDLINE=$(cat "$IMG/cmdline")
boot() {
    local n=$1 script=$2 share=$OUT/boot$1 start
    mkdir -p "$share/out"
    cp "$LIVEFS" "$share/livefs"
    cp "$HERE"/../../packaging/systemd/livefs-auto.* "$share/"
    cp "$HERE/$script" "$share/scenario.sh"
    cp "$HERE/guest-lib.sh" "$share/guest-lib.sh"
    chmod 755 "$share/scenario.sh"
    cp "$IMG/commit-a" "$share/commit-a"
    cp "$IMG/commit-b" "$share/commit-b"
    for f in commit-c manifest-a manifest-b; do
        [ ! -e "$IMG/$f" ] || cp "$IMG/$f" "$share/$f"
    done
    start=$(date +%s)
    timeout 900 qemu-system-x86_64 -nodefaults -no-user-config "${ACCEL[@]}" -smp 2 -m 2048 \
        -kernel "$IMG/vmlinuz" -initrd "$IMG/initramfs.img" \
        -append "$CMDLINE panic=-1 mitigations=off" \
        -drive "file=$OUT/disk.qcow2,if=virtio,format=qcow2,cache=unsafe" \
        -virtfs "local,path=$share,mount_tag=livefs,security_model=none,id=share" \
        "${NET[@]}" -display none -serial "file:$OUT/console$n.log" -no-reboot ||
        { echo "boot $n: qemu failed or timed out; console: $OUT/console$n.log" >&2; tail -20 "$OUT/console$n.log" >&2; exit 1; }
    echo "boot $n: $(($(date +%s) - start)) s (${ACCEL[1]})" >>"$OUT/times.txt"
    if [ "$(cat "$share/scenario.rc" 2>/dev/null)" != 0 ]; then
        echo "boot $n: the guest scenario failed:" >&2
        cat "$share/scenario.log" >&2 || true
        exit 1
    fi
    if [ -s "$share/next-cmdline" ]; then
        CMDLINE=$(cat "$share/next-cmdline")
    fi
}
n=0
for script in "$@"; do
    n=$((n + 1))
    boot "$n" "$script"
done
rm -f "$OUT/disk.qcow2"

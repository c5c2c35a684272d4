#!/bin/bash
# The composefs VM test (Debian forky: / a composefs overlay, /sysroot read-only),
# run by the guest's agent as root under systemd, twice: phase 1 after the cold
# boot ends by asking for a soft reboot; phase 2 runs after it. Every command's
# stdout, stderr and exit status land in out/NAME.{out,err,rc}.
. /run/livefs-vm/guest-lib.sh
# What /usr shows, for the record: its mount, and what is mounted below it.
usr_mounts() {
    findmnt -n -o TARGET,SOURCE,FSTYPE /usr || echo "/usr: no mount of its own"
    findmnt -n -o TARGET,SOURCE,FSTYPE /usr/local || echo "/usr/local: no mount of its own"
}

if [ ! -e "$O/phase1.done" ]; then
    # The composefs facts.
    findmnt -n -o SOURCE,FSTYPE / >"$O/root-mount.txt"
    findmnt -n -o OPTIONS /sysroot >"$O/sysroot-options.txt"
    ls /sysroot/ostree/deploy/debian/deploy/"$A".0/.ostree.cfs >"$O/cfs.txt" 2>&1
    systemctl show -P SoftRebootsCount >"$O/soft-reboots-before"
    # A state overlay on /usr/local, as ostree-state-overlay@usr-local.service
    # mounts it on Fedora CoreOS (its upper under /var).
    S=/var/lib/livefs-test/state-overlay
    mkdir -p "$S/upper" "$S/work"
    mount -t overlay livefs-state-overlay -o "lowerdir=/usr/local,upperdir=$S/upper,workdir=$S/work" /usr/local
    echo "state of /usr/local" >/usr/local/state-file
    run status-before "$L" status --json
    run apply "$L" apply --allow-replacement --restart
    run status-live "$L" status --json
    cat /usr/local/state-file >"$O/state-after-apply" 2>&1
    usr_mounts >"$O/mounts-after-apply"
    for _ in $(seq 30); do http_get >"$O/http.txt" 2>/dev/null && break; sleep 1; done
    run reset "$L" reset --restart --json
    cat /usr/local/state-file >"$O/state-after-reset" 2>&1
    systemctl show -p ActiveState --value lighttpd.service >"$O/lighttpd-after-reset"
    run apply-again "$L" apply --allow-replacement --json
    usr_mounts >"$O/mounts-before-soft-reboot"
    touch "$O/phase1.done"
    # The agent soft-reboots, then runs this script again.
    touch soft-reboot
    exit 0
fi

# Phase 2: after `systemctl soft-reboot` (/run and the boot ID kept).
systemctl show -P SoftRebootsCount >"$O/soft-reboots-after"
usr_mounts >"$O/mounts-after-soft-reboot"
ls /run/ostree/deployment-state/"$A".0/ >"$O/deployment-state-after-soft-reboot" 2>&1
run status-after-soft-reboot "$L" status --json
ls /run/ostree/deployment-state/"$A".0/ >"$O/deployment-state-after-status" 2>&1
run reset-after-soft-reboot "$L" reset --json
run status-final "$L" status --json
usr_mounts >"$O/mounts-final"
exit 0

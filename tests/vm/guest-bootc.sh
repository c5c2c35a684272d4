#!/bin/bash
# The VM test of bootc's native composefs backend (image-bootc.sh: no OSTree,
# `/` the composefs image A, /etc and /var from its state directory), run by the
# guest's agent as root under systemd, twice: phase 1 after the cold boot ends
# by asking for a soft reboot; phase 2 runs after it.
#   1. the host's facts; B staged as bootc stages it; the seed flow: status,
#      apply refused then allowed (--restart: lighttpd starts and serves from
#      the live /usr), /etc merged with an admin's edit kept, /usr exactly B's
#      and read-only for everyone, nothing written; reset to A exactly;
#   2. C (B with a broken lighttpd) applied: rolled back at once (exit 5);
#   3. livefs-auto.path: B staged goes live by itself; C staged is rolled back
#      by the automatic run, its unit failed;
#   4. (phase 2) after `systemctl soft-reboot`: status tells the truth; reset.
# Each command's outputs land in out/NAME.{out,err,rc}; transcript.txt tells the story.
. /run/livefs-vm/guest-lib.sh
B=$(cat commit-b)
C=$(cat commit-c)
# Stages image $1 as bootc does.
stage() {
    mkdir -p /run/composefs
    printf '{"depl_id":"%s","finalization_locked":false}\n' "$1" >/run/composefs/staged-deployment
}
# Checks /usr against image-bootc.sh's manifest $1 (every path's type, mode,
# owner and symlink target; the content of the files A and B differ in):
# out/$2 holds what /usr shows, out/$2.diff what differs (empty: the same).
usr_is() {
    local ref=$PWD/$1
    {
        (cd / && find usr -printf '/%p %y %m %U %G %l\n' | LC_ALL=C sort)
        (cd / && awk '!/^\// { print $2 }' "$ref" | xargs -r -d '\n' sha256sum --)
    } >"$O/$2"
    diff "$ref" "$O/$2" >"$O/$2.diff"
    say "/usr is exactly $3: $([ -s "$O/$2.diff" ] && echo "no, see $2.diff" || echo yes)"
}
usr_mount() { findmnt -n -o SOURCE,FSTYPE,OPTIONS /usr || echo "/usr: no mount of its own"; }
objects_bytes() { du -s --block-size=1 /sysroot/composefs/objects | cut -f1; }

if [ ! -e "$O/phase1.done" ]; then
    say "## the host: bootc's native composefs backend, no OSTree"
    findmnt -n -o SOURCE,FSTYPE,OPTIONS / >"$O/root-mount.txt"
    cp /proc/cmdline "$O/cmdline.txt"
    shown findmnt -n -o SOURCE,FSTYPE,OPTIONS /
    shown cat /proc/cmdline
    shown ls /sysroot /sysroot/composefs /sysroot/composefs/images /sysroot/state/deploy
    shown cat /sysroot/composefs/meta.json
    shown cat /sysroot/boot/loader/entries/bootc_debian-1-1.conf
    test -e /run/ostree-booted; echo $? >"$O/no-ostree-booted"
    usr_mount >"$O/usr-mount-booted"

    say "## 1. the seed flow: B staged, applied live, reset"
    stage "$B"
    shown cat /run/composefs/staged-deployment
    echo "# the admin's line" >>/etc/motd
    run status-before "$L" status --json
    shown "$L" status
    run refused "$L" apply
    shown cat "$O/refused.out" "$O/refused.err"
    usr_mount >"$O/usr-mount-refused"
    objects_bytes >"$O/objects-before"
    run apply "$L" apply --allow-replacement --restart --settle 3
    shown cat "$O/apply.out"
    objects_bytes >"$O/objects-after"
    say "bytes in /sysroot/composefs/objects: $(cat "$O/objects-before") before, $(cat "$O/objects-after") after"
    for _ in $(seq 30); do http_get >"$O/http.txt" 2>/dev/null && break; sleep 1; done
    shown cat "$O/http.txt"
    usr_mount >"$O/usr-mount-live"
    shown findmnt -n -o SOURCE,FSTYPE,OPTIONS /usr
    usr_is manifest-b usr-live B
    touch /usr/livefs-intruder 2>"$O/touch-root.err"; echo $? >"$O/touch-root.rc"
    setpriv --reuid=nobody --regid=nogroup --clear-groups touch /usr/livefs-intruder 2>"$O/touch-nobody.err"
    echo $? >"$O/touch-nobody.rc"
    setpriv --reuid=nobody --regid=nogroup --clear-groups cat /usr/share/livefs-demo/www/index.html \
        >"$O/read-nobody.txt" 2>&1
    shown cat "$O/touch-root.err" "$O/touch-nobody.err"
    cp /etc/motd "$O/motd-live"
    cp /etc/default/livefs-demo "$O/default-live"
    shown cat /etc/motd /etc/default/livefs-demo
    run status-live "$L" status --json
    shown "$L" status
    run reset "$L" reset --restart --json
    systemctl show -p ActiveState --value lighttpd.service >"$O/lighttpd-after-reset"
    usr_mount >"$O/usr-mount-reset"
    usr_is manifest-a usr-reset A
    cp /etc/motd "$O/motd-reset"
    cp /etc/default/livefs-demo "$O/default-reset"
    run status-reset "$L" status --json

    say "## 2. C (B with a broken lighttpd), applied: rolled back at once"
    stage "$C"
    run broken "$L" apply --allow-replacement --restart --settle 3 --json
    shown "$L" status
    usr_mount >"$O/usr-mount-broken"
    usr_is manifest-a usr-broken A
    run status-broken "$L" status --json

    say "## 3. the automatic run: B staged goes live by itself; C staged is rolled back"
    install -D -m 755 "$L" /var/lib/livefs-vm/livefs
    cp livefs-auto.service livefs-auto.path livefs-auto.timer /etc/systemd/system/
    mkdir -p /etc/systemd/system/livefs-auto.service.d /etc/livefs/auto.conf.d
    printf '[Service]\nExecStart=\nExecStart=/var/lib/livefs-vm/livefs --lock-timeout 600 auto\n' \
        >/etc/systemd/system/livefs-auto.service.d/vm.conf
    printf '[Auto]\nAllowReplacement=yes\nSettle=3\n' >/etc/livefs/auto.conf.d/vm.conf
    rm /run/composefs/staged-deployment
    shown systemctl enable --now livefs-auto.path
    # Waits (at most 120 s) for the automatic run of image $1 to be over.
    wait_auto() {
        local i
        for i in $(seq 1200); do
            if grep -q "\"target\":\"$1\"" /run/livefs/auto.json 2>/dev/null &&
                ! systemctl -q is-active livefs-auto.service; then
                return 0
            fi
            sleep 0.1
        done
        return 1
    }
    stage "$B"
    wait_auto "$B"; echo $? >"$O/auto-b-waited"
    run status-auto-b "$L" status --json
    usr_is manifest-b usr-auto-b B
    stage "$C"
    wait_auto "$C"; echo $? >"$O/auto-c-waited"
    run status-auto-c "$L" status --json
    shown "$L" status
    usr_is manifest-b usr-auto-c B
    journalctl --no-pager -o cat -u livefs-auto.service >"$O/auto-journal.txt"
    shown tail -5 "$O/auto-journal.txt"
    systemctl disable --now livefs-auto.path livefs-auto.timer >/dev/null 2>&1
    usr_mount >"$O/mounts-before-soft-reboot"
    systemctl show -P SoftRebootsCount >"$O/soft-reboots-before"
    touch "$O/phase1.done"
    # The agent soft-reboots, then runs this script again.
    touch soft-reboot
    exit 0
fi

say "## 4. after systemctl soft-reboot (/run kept)"
systemctl show -P SoftRebootsCount >"$O/soft-reboots-after"
usr_mount >"$O/mounts-after-soft-reboot"
shown findmnt -n -o SOURCE,FSTYPE /usr
run status-after-soft-reboot "$L" status --json
shown "$L" status
run reset-after-soft-reboot "$L" reset --json
usr_is manifest-a usr-final A
run status-final "$L" status --json
usr_mount >"$O/mounts-final"
exit 0

#!/bin/bash
# Boot 1 of the VM test, run by the guest's agent as root under systemd. Every
# command's stdout, stderr and exit status land in out/NAME.{out,err,rc}.
. /run/livefs-vm/guest-lib.sh
D=/sysroot/ostree/deploy/debian/deploy/$A.0
# What /etc and /usr hold (type, mode, owner, file size, link target; content digest).
snapshot() {
    (cd "$1" && find . \( -type d -printf '%p d %m %U %G\n' \) -o -printf '%p %y %m %U %G %s %l\n' | sort)
}
etc_digest() {
    (cd /etc && find . -type f ! -name ld.so.cache -print0 | sort -z | xargs -0 md5sum)
}

echo "edited by the admin" >>/etc/motd
snapshot /etc >"$O/etc-before.txt"
etc_digest >"$O/etc-before.md5"
systemctl show -p LoadState --value lighttpd.service >"$O/lighttpd-load-before"
pids() {
    for u in livefs-demo livefs-demo-worker@1 livefs-demo-pinned; do
        echo "$u $(systemctl show -p MainPID --value "$u.service")"
    done
}
# A process outside any service (a transient scope, as a login session's) running
# the binary the update replaces: listed, never killed.
systemd-run --scope --unit=livefs-demo-session -- /usr/libexec/livefs-demo/livefs-demo-daemon infinity \
    >/dev/null 2>&1 &
sleep 1
pids >"$O/pids-before"
run status-before "$L" status
run apply-refused "$L" apply
# The dry run lists what apply --restart will do, and changes nothing.
run apply-dry "$L" apply --allow-replacement --restart --dry-run
run apply-dry-json "$L" apply --allow-replacement --restart --dry-run --json
pids >"$O/pids-dry"
systemctl show -p LoadState --value lighttpd.service >"$O/lighttpd-load-dry"
run status-dry "$L" status
run apply "$L" apply --allow-replacement --restart
pids >"$O/pids-after"
systemctl show -p LoadState --value lighttpd.service >"$O/lighttpd-load-after"
systemctl show -p ActiveState --value lighttpd.service >"$O/lighttpd-active-after"
systemctl show -p Description --value livefs-demo.service >"$O/demo-description-after"
for _ in $(seq 30); do http_get >"$O/http.txt" 2>/dev/null && break; sleep 1; done
demo_pid=$(systemctl show -p MainPID --value livefs-demo.service)
cmp "/proc/$demo_pid/exe" /usr/libexec/livefs-demo/livefs-demo-daemon >"$O/demo-exe-cmp" 2>&1
echo $? >>"$O/demo-exe-cmp"
systemctl show -p ActiveState --value livefs-demo-session.scope >"$O/session-after"
systemctl stop livefs-demo-session.scope
run status-live "$L" status
run status-live-json "$L" status --json
run restart-dry-json "$L" restart --dry-run --json
systemctl --failed --no-legend --plain >"$O/failed-units-live.txt"
# Back to the booted content, services too: lighttpd (its unit gone) stops, the demo runs v1 again.
run reset "$L" reset --restart --json
systemctl show -p ActiveState --value lighttpd.service >"$O/lighttpd-active-reset"
demo_pid=$(systemctl show -p MainPID --value livefs-demo.service)
cmp "/proc/$demo_pid/exe" "$D/usr/libexec/livefs-demo/livefs-demo-daemon" >"$O/demo-exe-reset-cmp" 2>&1
echo $? >>"$O/demo-exe-reset-cmp"
run status-reset "$L" status
snapshot /usr >"$O/usr-after-reset.txt"
snapshot "$D/usr" >"$O/usr-booted.txt"
snapshot /etc >"$O/etc-after-reset.txt"
etc_digest >"$O/etc-after-reset.md5"
# Leave an apply live, for boot 2 to find it gone.
run apply-again "$L" apply --allow-replacement
ls -d /sysroot/ostree/deploy/debian/backing/*/livefs/usr.* >"$O/uppers.txt" 2>&1
# livefs restart after a plain apply. A restart that fails (a runtime drop-in makes
# the service fail to start) is reported with the unit's status, exit status 1,
# and the other actions still run; once fixed, a second run restarts it.
mkdir -p /run/systemd/system/livefs-demo.service.d
printf '[Service]\nExecStartPre=/bin/false\n' >/run/systemd/system/livefs-demo.service.d/fail.conf
systemctl daemon-reload
run restart-failing "$L" restart --json
rm -r /run/systemd/system/livefs-demo.service.d
systemctl daemon-reload
systemctl reset-failed livefs-demo.service
run restart-retry "$L" restart
run restart-done-json "$L" restart --dry-run --json
systemctl --failed --no-legend --plain >"$O/failed-units.txt"
journalctl -b --no-pager -o cat -t systemctl >"$O/journal-systemctl.txt" 2>&1
# The entries livefs logged itself: one per change, refusal and failure.
journalctl -b --no-pager -o json SYSLOG_IDENTIFIER=livefs _TRANSPORT=journal >"$O/journal.json" 2>&1
exit 0

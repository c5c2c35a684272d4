#!/bin/bash
# The SELinux VM test (Debian forky booted with composefs, Debian's refpolicy
# enforcing, commits labelled by ostree), run by the guest's agent as root under
# systemd, enforcing (the agent is permissive only while it reads and writes the
# 9p share). The seed flow: apply refused, then --allow-replacement --restart;
# the web server confined and serving; every label of the live /usr equal to the
# target deployment's; /etc as the policy labels it; no denial of livefs or of
# what it runs; reset. The web server is nginx (rootfs.sh says why).
. /run/livefs-vm/guest-lib.sh
B=$(cat commit-b)
DB=/sysroot/ostree/deploy/debian/deploy/$B.0
AUDIT=/var/log/audit/audit.log
getenforce >"$O/getenforce-before"
audit_from=$(($(stat -c %s $AUDIT 2>/dev/null || echo 0) + 1))
run apply-refused "$L" apply
run apply "$L" apply --allow-replacement --restart --json
for _ in $(seq 30); do http_get >"$O/http.txt" 2>/dev/null && break; sleep 1; done
ps -eZ >"$O/ps.txt"
# Every path of /usr with its label: the live tree, and the target deployment's.
labels() { (cd "$1" && find . -mindepth 1 -printf '%P %Z\n' | LC_ALL=C sort); }
labels /usr >"$O/usr-labels-live.txt"
labels "$DB/usr" >"$O/usr-labels-target.txt"
diff "$O/usr-labels-live.txt" "$O/usr-labels-target.txt" >"$O/usr-labels-diff.txt"
# /etc: what the apply wrote is labelled as the target deployment has it, and as
# the policy says.
labels /etc >"$O/etc-labels-live.txt"
labels "$DB/etc" >"$O/etc-labels-target.txt"
# The /etc paths the apply added or updated, checked against the policy as
# `restorecon -n` checks them (matchpathcon -V: restorecon itself, in
# setfiles_t, may not write to this scenario's files).
# (Each of /etc's paths is an object of its own: its "path" and "action", in either order.)
awk '/\{/ { p = ""; a = "" } /"path": / { p = $2 } /"action": / { a = $2 }
    /\}/ { if (p != "" && a ~ /"(added|updated)"/) { gsub(/[",]/, "", p); print "/etc" p }; p = ""; a = "" }' \
    "$O/apply.out" >"$O/etc-changed.txt"
xargs -r matchpathcon -V <"$O/etc-changed.txt" | grep -v ' verified\.$' >"$O/restorecon-etc.txt"
tail -c +"$audit_from" $AUDIT | grep -E '^type=(AVC|USER_AVC|SELINUX_ERR) ' >"$O/denials-apply.txt"
run status-live "$L" status --json
run reset "$L" reset --restart
systemctl show -p ActiveState --value nginx.service >"$O/server-after-reset"
labels /usr >"$O/usr-labels-reset.txt"
labels /sysroot/ostree/deploy/debian/deploy/"$A".0/usr >"$O/usr-labels-booted.txt"
tail -c +"$audit_from" $AUDIT | grep -E '^type=(AVC|USER_AVC|SELINUX_ERR) ' >"$O/denials.txt"
getenforce >"$O/getenforce-after"
exit 0

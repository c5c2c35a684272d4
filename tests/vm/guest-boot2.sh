#!/bin/bash
# Boot 2 of the VM test: the reboot threw the live update away; livefs says so and
# removes what the previous boot left.
. /run/livefs-vm/guest-lib.sh
run status "$L" status
run status-json "$L" status --json
findmnt -n -o FSTYPE /usr >"$O/usr-mount.txt"
ls -d /sysroot/ostree/deploy/debian/backing/*/livefs/usr.* >"$O/uppers-before.txt" 2>&1
test -e /usr/sbin/lighttpd && echo present >"$O/lighttpd.txt" || echo absent >"$O/lighttpd.txt"
run reset "$L" reset
ls -d /sysroot/ostree/deploy/debian/backing/*/livefs/usr.* >"$O/uppers-after.txt" 2>&1
ls /sysroot/ostree/repo/refs/heads/livefs >"$O/refs-after.txt" 2>&1
exit 0

#!/bin/bash
# Boot 2 of the automatic-runs VM test: the reboot started the last deployment
# (E, whose replacement the policy kept from going live); nothing is live, the
# sentinel is gone with /run, the automatic runs are still enabled.
. /run/livefs-vm/guest-lib.sh
run status "$L" status
run status-json "$L" status --json
run hello /usr/bin/livefs-auto-hello
run staged /usr/bin/livefs-auto-staged
systemctl is-enabled livefs-auto.path >"$O/path-enabled.txt" 2>&1
systemctl show -p ActiveState --value livefs-auto.path >"$O/path-active.txt"
test -e /run/reboot-required && echo present >"$O/reboot-required.txt" || echo absent >"$O/reboot-required.txt"
exit 0

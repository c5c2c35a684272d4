#!/bin/bash
# Boot 2 of the VM test of bootc's native composefs backend: a reboot forgot
# what was live. Outputs land in out/; transcript.txt tells the story.
. /run/livefs-vm/guest-lib.sh
say "## 5. after a reboot: nothing live"
findmnt -n -o SOURCE,FSTYPE,OPTIONS / >"$O/root-mount.txt"
{ findmnt -n -o SOURCE,FSTYPE /usr || echo "/usr: no mount of its own"; } >"$O/usr-mount"
run status "$L" status --json
shown "$L" status
exit 0

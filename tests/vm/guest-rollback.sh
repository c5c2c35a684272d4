#!/bin/bash
# The rollback VM test (bookworm), run by the guest's agent as root under
# systemd: live updates that break something undo themselves, and the way back
# by hand. Each case's outputs land in out/; transcript.txt tells the story.
#   1. C = A + a /usr/sbin/nginx that exits 1: apply --restart exits 5, nginx
#      serves the booted page again;
#   2. a failing greenboot required.d check: rolled back, red.d ran;
#   3. a failing wanted.d check: kept with a warning, green.d ran;
#   4. livefs rollback from live E to live B (not the booted A);
#   5. --confirm-within 20, its session killed, unconfirmed: rolled back by the timer;
#   6. --confirm-within 20, confirmed from another session: kept;
#   7. the automatic run rolls back a broken staged deployment, fails its unit,
#      and does not apply it again on the next trigger.
. /run/livefs-vm/guest-lib.sh
B=$(cat commit-b)
REPO=/ostree/repo
W=/var/tmp/livefs-rollback
mkdir -p "$W"
# A commit: $1 (the parent) with the files of directory $2 on top; version $3.
commit_on() {
    ostree commit --repo=$REPO -b livefs-rollback/os --tree=ref="$1" --tree=dir="$2" \
        --add-metadata-string=version="$3" -s "livefs rollback VM $3"
}
# A program $2 that prints $3, in directory $1.
program() {
    mkdir -p "$1/usr/bin"
    printf '#!/bin/sh\necho %s\n' "$3" >"$1/usr/bin/$2"
    chmod 755 "$1/usr/bin/$2"
}
# The journal entries of one event (verbose, for people) since the scenario started.
entries() { journalctl --no-pager -o verbose --since "@$START" "MESSAGE_ID=$1"; }
ROLLED_BACK=9d32385a68d040ea8f3cfcbcb494ecd9
START=$(date +%s)
APPLY=("$L" apply --allow-replacement --restart --settle 3)

say "## 1. a broken nginx build, rolled back"
systemctl start nginx
http_get 8081 >"$O/nginx-before.txt"
mkdir -p "$W/c/usr/sbin" "$W/c/usr/share/livefs-demo/nginx"
printf '#!/bin/sh\necho "nginx: this build is broken" >&2\nexit 1\n' >"$W/c/usr/sbin/nginx"
chmod 755 "$W/c/usr/sbin/nginx"
echo '<h1>served by nginx, the broken build</h1>' >"$W/c/usr/share/livefs-demo/nginx/index.html"
C=$(commit_on "$A" "$W/c" 3)
echo "$C" >"$O/commit-c"
run nginx-pid-before systemctl show -p MainPID --value nginx.service
run broken "${APPLY[@]}" --target "$C" --json
shown "${APPLY[@]}" --target "$C"
for _ in $(seq 20); do http_get 8081 >"$O/nginx-after.txt" 2>/dev/null && break; sleep 0.5; done
systemctl show -p ActiveState --value nginx.service >"$O/nginx-active-after"
cmp /usr/sbin/nginx "/sysroot/ostree/deploy/debian/deploy/$A.0/usr/sbin/nginx" >"$O/nginx-binary-cmp" 2>&1
echo $? >>"$O/nginx-binary-cmp"
run status-broken "$L" status
run status-broken-json "$L" status --json
shown "$L" status
entries $ROLLED_BACK >"$O/journal-broken.txt"
shown entries $ROLLED_BACK

say "## 2. a required greenboot check fails: rolled back, red.d runs"
G=/etc/greenboot
mkdir -p $G/check/required.d $G/check/wanted.d $G/green.d $G/red.d
printf 'echo red >> /run/livefs-red\n' >$G/red.d/10-red.sh
printf 'echo green >> /run/livefs-green\n' >$G/green.d/10-green.sh
printf 'test -e /run/livefs-vm-healthy || { echo "marker missing: unhealthy"; exit 1; }\n' \
    >$G/check/required.d/10-marker.sh
D=$(program "$W/d" livefs-vm-new "new program of D"; commit_on "$A" "$W/d" 4)
run required "$L" apply --allow-replacement --target "$D" --json
cp /run/livefs-red "$O/red.txt"
shown cat /run/livefs-red
test -e /usr/bin/livefs-vm-new; echo $? >"$O/required-program-gone"
run status-required-json "$L" status --json

say "## 3. a wanted greenboot check fails: kept, with a warning; green.d runs"
rm $G/check/required.d/10-marker.sh
printf 'echo "a wanted check is unhappy"; exit 1\n' >$G/check/wanted.d/20-wanted.sh
run wanted "$L" apply --allow-replacement --target "$D"
cp /run/livefs-green "$O/green.txt"
shown cat "$O/wanted.out" "$O/wanted.err" /run/livefs-green
/usr/bin/livefs-vm-new >"$O/wanted-program.txt" 2>&1
rm $G/check/wanted.d/20-wanted.sh

say "## 4. livefs rollback from live E to live B"
run apply-b "${APPLY[@]}" --target "$B"
E=$(program "$W/e" livefs-vm-e "program of E"; commit_on "$B" "$W/e" 5)
run apply-e "${APPLY[@]}" --target "$E"
run status-e "$L" status
run rollback-e "$L" rollback --restart --json
shown "$L" status
run status-after-rollback-json "$L" status --json
test -e /usr/bin/livefs-vm-e; echo $? >"$O/rollback-program-gone"
for _ in $(seq 20); do http_get >"$O/lighttpd-after-rollback.txt" 2>/dev/null && break; sleep 0.5; done

say "## 5. --confirm-within 20, the session killed, not confirmed"
F=$(program "$W/f" livefs-vm-f "program of F"; commit_on "$B" "$W/f" 6)
echo "$F" >"$O/commit-f"
# The session: a transient scope holding the apply, then a shell that waits, as a
# login shell would; killed whole right after the apply returned.
systemd-run --scope --unit=livefs-vm-session -- bash -c \
    "$L apply --allow-replacement --restart --settle 3 --target $F --confirm-within 20 --json >$O/confirm-apply.json 2>$O/confirm-apply.err; echo \$? >$O/confirm-apply.rc; sleep infinity" \
    >/dev/null 2>&1 &
for _ in $(seq 600); do [ -s "$O/confirm-apply.rc" ] && break; sleep 0.1; done
applied=$(now)
systemctl kill --signal=SIGKILL livefs-vm-session.scope
run status-awaiting "$L" status
shown "$L" status
systemctl list-timers --all --no-pager 'livefs-confirm-*' >"$O/timers-awaiting.txt" 2>&1
shown cat "$O/timers-awaiting.txt"
for _ in $(seq 600); do
    grep -q '"cause":"unconfirmed"' /run/livefs/rollback.json 2>/dev/null && break
    sleep 0.1
done
minus "$(now)" "$applied" >"$O/unconfirmed-seconds"
run status-unconfirmed-json "$L" status --json
shown "$L" status
test -e /usr/bin/livefs-vm-f; echo $? >"$O/unconfirmed-program-gone"
run confirm-late "$L" confirm
shown "$L" confirm
entries $ROLLED_BACK >"$O/journal-unconfirmed.txt"

say "## 6. --confirm-within 20, confirmed from another session: kept"
run confirm-apply2 "$L" apply --allow-replacement --restart --settle 3 --target "$F" --confirm-within 20 --json
run confirm "$(command -v systemd-run)" --wait --pipe --quiet -- "$L" confirm --json
shown cat "$O/confirm.out"
sleep 25
run status-confirmed-json "$L" status --json
shown "$L" status
/usr/bin/livefs-vm-f >"$O/confirmed-program.txt" 2>&1
systemctl list-timers --all --no-pager 'livefs-confirm-*' >"$O/timers-confirmed.txt" 2>&1

say "## 7. the automatic run rolls back a broken staged deployment"
install -D -m 755 "$L" /var/lib/livefs-vm/livefs
cp livefs-auto.service livefs-auto.path livefs-auto.timer /etc/systemd/system/
mkdir -p /etc/systemd/system/livefs-auto.service.d /etc/livefs
printf '[Service]\nExecStart=\nExecStart=/var/lib/livefs-vm/livefs --lock-timeout 600 auto\n' \
    >/etc/systemd/system/livefs-auto.service.d/vm.conf
printf '[Auto]\nMaxStrategy=reboot\nAllowReplacement=yes\nSettle=3\n' >/etc/livefs/auto.conf
systemctl daemon-reload
shown systemctl enable --now livefs-auto.path
systemctl start nginx
# (the page of the build that runs before the broken one)
http_get 8081 >"$O/auto-nginx-before.txt"
mkdir -p "$W/g"
cp -a "$W/c/." "$W/g/"
Gc=$(commit_on "$F" "$W/g" 7)
echo "$Gc" >"$O/commit-g"
start=$(now)
shown ostree admin deploy --stage --os=debian livefs-rollback/os
for _ in $(seq 900); do
    grep -q "\"target\":\"$Gc\"" /run/livefs/auto.json 2>/dev/null && ! systemctl -q is-active livefs-auto.service && break
    sleep 0.1
done
minus "$(now)" "$start" >"$O/auto-seconds"
systemctl show -p ActiveState --value livefs-auto.service >"$O/auto-unit-state"
systemctl --failed --no-legend --plain >"$O/auto-failed-units.txt"
http_get 8081 >"$O/auto-nginx-after.txt"
run status-auto-json "$L" status --json
shown "$L" status
cp /run/reboot-required.pkgs "$O/auto-reboot-required.pkgs" 2>/dev/null
shown cat /run/reboot-required.pkgs
# The next trigger: the same deployment under the same policy is not applied again.
systemctl reset-failed livefs-auto.service
systemctl start livefs-auto.service
systemctl show -p ActiveState --value livefs-auto.service >"$O/auto-again-unit-state"
run status-auto-again-json "$L" status --json
journalctl -b --no-pager -o json SYSLOG_IDENTIFIER=livefs _TRANSPORT=journal >"$O/journal.json" 2>&1
entries $ROLLED_BACK >"$O/journal-rolled-back.txt"
shown journalctl -b --no-pager -o verbose "MESSAGE_ID=$ROLLED_BACK"
systemctl disable --now livefs-auto.path livefs-auto.timer >/dev/null 2>&1
exit 0

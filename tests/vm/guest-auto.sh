#!/bin/bash
# Boot 1 of the automatic-runs VM test, run by the guest's agent as root under
# systemd: livefs-auto.path enabled as an admin would (the units as the packages
# ship them, in /etc; livefs under /var, this image's /usr being read-only), then
# deployments made by ostree itself:
#   C: `ostree admin deploy`, adds a program          -> live by itself
#   D: `ostree admin deploy --stage`, adds another    -> live by itself
#   K: `ostree admin deploy`, changes the kernel      -> left for the reboot
#   E: `ostree admin deploy`, replaces a program, with AllowReplacement=no
#      -> not applied, livefs-auto.service failed
# Each step's times and outputs land in out/; transcript.txt tells the story.
. /run/livefs-vm/guest-lib.sh
# Waits (at most 60 s) until the automatic run recorded a run for commit $1 and
# its service is no longer running; prints the seconds since $2.
wait_auto() {
    local commit=$1 since=$2 i
    for i in $(seq 600); do
        if grep -q "\"target\":\"$commit\"" /run/livefs/auto.json 2>/dev/null &&
            ! systemctl -q is-active livefs-auto.service; then
            minus "$(now)" "$since"
            return 0
        fi
        sleep 0.1
    done
    echo timeout
    return 1
}
REPO=/ostree/repo
W=/var/tmp/livefs-auto
mkdir -p "$W"
# A commit: $1 (the parent) with the files of directory $2 on top.
commit_on() {
    ostree commit --repo=$REPO -b livefs-auto/os --tree=ref="$1" --tree=dir="$2" \
        --add-metadata-string=version="$3" -s "livefs auto VM $3"
}

install -D -m 755 "$L" /var/lib/livefs-vm/livefs
cp livefs-auto.service livefs-auto.path livefs-auto.timer /etc/systemd/system/
mkdir -p /etc/systemd/system/livefs-auto.service.d
printf '[Service]\nExecStart=\nExecStart=/var/lib/livefs-vm/livefs --lock-timeout 600 auto\n' \
    >/etc/systemd/system/livefs-auto.service.d/vm.conf
# The image's pending deployment (version 2) is another test's: undeployed first.
ostree admin undeploy 0 >"$O/undeploy.txt" 2>&1
"$L" status --json >"$O/status-start.json"
shown systemctl enable --now livefs-auto.path
systemctl is-active livefs-auto.path livefs-auto.timer >"$O/units-active.txt"

# A commit on $1 (version $2) holding program $3 that prints $4; prints the commit.
program_commit() {
    local dir=$W/$2
    mkdir -p "$dir/usr/bin"
    printf '#!/bin/sh\necho %s\n' "$4" >"$dir/usr/bin/$3"
    chmod 755 "$dir/usr/bin/$3"
    commit_on "$1" "$dir" "$2"
}
# `ostree admin deploy ARGS livefs-auto/os` of commit $2, then the wait for the
# automatic run of it: out/$1-deploy-seconds (ostree's own time) and
# out/$1-seconds (from ostree's return to the run's end).
deploy_and_wait() {
    local name=$1 commit=$2 start deployed
    shift 2
    echo "$commit" >"$O/commit-$name"
    start=$(now)
    shown ostree admin deploy --os=debian "$@" livefs-auto/os
    deployed=$(now)
    minus "$deployed" "$start" >"$O/$name-deploy-seconds"
    wait_auto "$commit" "$deployed" >"$O/$name-seconds"
    say "$name: the automatic run was done $(cat "$O/$name-seconds") s after ostree admin deploy $* returned" \
        "(which took $(cat "$O/$name-deploy-seconds") s)"
}

# C: an immediate deployment that adds a program.
C=$(program_commit "$A" 3 livefs-auto-hello "hello from commit C")
deploy_and_wait c "$C"
run c-status "$L" status
run c-hello /usr/bin/livefs-auto-hello
shown /usr/bin/livefs-auto-hello

# D: staged (what rpm-ostree, bootc and Zincati do).
D=$(program_commit "$C" 4 livefs-auto-staged "staged D")
deploy_and_wait d "$D" --stage
run d-status-json "$L" status --json
run d-staged /usr/bin/livefs-auto-staged

# K: a changed kernel, which only a reboot delivers.
kver=$(uname -r)
mkdir -p "$W/k/usr/lib/modules/$kver"
cp "/usr/lib/modules/$kver/vmlinuz" "$W/k/usr/lib/modules/$kver/vmlinuz"
echo "livefs auto VM: a changed kernel" >>"$W/k/usr/lib/modules/$kver/vmlinuz"
deploy_and_wait k "$(commit_on "$D" "$W/k" 5)"
run k-status-json "$L" status --json
run k-status "$L" status
cp /run/reboot-required.pkgs "$O/k-reboot-required.pkgs" 2>/dev/null
systemctl show -p ActiveState --value livefs-auto.service >"$O/k-unit-state"
shown cat /run/reboot-required /run/reboot-required.pkgs

# E: replaces the program, under a policy that forbids it.
mkdir -p /etc/livefs
printf '[Auto]\nAllowReplacement=no\n' >/etc/livefs/auto.conf
deploy_and_wait e "$(program_commit "$D" 6 livefs-auto-hello "hello from commit E")"
run e-status-json "$L" status --json
run e-hello /usr/bin/livefs-auto-hello
systemctl show -p ActiveState --value livefs-auto.service >"$O/e-unit-state"
systemctl --failed --no-legend --plain >"$O/e-failed-units.txt"
shown systemctl --failed --no-legend --plain
cp /run/reboot-required.pkgs "$O/e-reboot-required.pkgs" 2>/dev/null

# The journal: every entry livefs wrote itself (its output, which the journal
# has from the service's stdout, aside), verbose for people and JSON for the test.
journalctl -b --no-pager -o verbose SYSLOG_IDENTIFIER=livefs _TRANSPORT=journal >"$O/journal-verbose.txt" 2>&1
journalctl -b --no-pager -o json SYSLOG_IDENTIFIER=livefs _TRANSPORT=journal >"$O/journal.json" 2>&1
journalctl -b --no-pager -o cat -u livefs-auto.service >"$O/journal-service.txt" 2>&1
shown journalctl -b --no-pager MESSAGE_ID=9156c2b8b135400a9b1a466e48a2a1ca
# The next boot starts the default boot entry: E's.
entry=$(grep -l '^version' /boot/loader/entries/*.conf | while read -r f; do
    echo "$(sed -n 's/^version //p' "$f") $f"
done | sort -n | tail -n 1 | cut -d' ' -f2)
sed -n 's/^options //p' "$entry" >"$O/next-entry-options"
cp "$O/next-entry-options" /run/livefs-vm/next-cmdline
exit 0

#!/bin/bash
# The guest side of `scripts/bench downtime` (Debian forky, composefs), run by
# the agent at each boot; the phase lives in the share. The host probes the web
# server (lighttpd, forwarded to a host port) all along and says when to go.
#   1 (cold boot of A): network, apply B live (lighttpd starts), commit C = B
#     with a new build of lighttpd's binary and deploy it; then the measured
#     steps, each on the host's go-STEP (ROUNDS rounds, from the share's
#     `rounds`): live-N `livefs apply --restart` (B -> C live), back-N the same
#     back to B (not measured), floor-N `systemctl restart lighttpd` (the
#     unit's own restart); reload-N / reload-back-N the same with
#     X-ReloadIfChanged=yes on lighttpd; sa: a socket-activated lighttpd on
#     port 8081 (its .socket unchanged, its binary changed) through
#     `livefs apply --restart`; broken-N: `livefs apply --restart` of X = B
#     with a lighttpd build that exits 1, rolled back by its failed health
#     check (exit status 5); then, on go-soft, prepare a soft reboot into C
#     and soft-reboot;
#   2 (after the soft reboot, C): on go-reboot, leave C's kernel command line
#     for the host and power off (the host boots it: a reboot);
#   3 (cold boot of C): serve until the host says finish.
. /run/livefs-vm/guest-lib.sh
set -e
phase=$(cat phase 2>/dev/null || echo 1)
wait_for() {
    until [ -e "$1" ]; do sleep 0.05; done
}
log() { echo "$(date +%s.%N) $*" >>"$O/guest.log"; }
network() {
    for _ in $(seq 1 120); do
        grep -q 10.0.2.15 /proc/net/fib_trie && return 0
        sleep 0.5
    done
    echo "no address after 60 s" >&2
    return 1
}
# step NAME CMD...: says ready-NAME, runs CMD on the host's go-NAME, says done-NAME.
step() {
    local name=$1
    shift
    touch "ready-$name"
    wait_for "go-$name"
    log "$name: $*"
    "$@" >"$O/$name.out" 2>"$O/$name.err" || log "$name: exit status $?"
    touch "done-$name"
}
# A second lighttpd on port 8081, socket-activated (the same .socket in B and C).
socket_activated() {
    cat >/etc/lighttpd/sa.conf <<'CONF'
server.document-root = "/usr/share/livefs-demo/www"
server.port = 8081
index-file.names = ( "index.html" )
server.systemd-socket-activation = "enable"
server.username = "www-data"
server.groupname = "www-data"
CONF
    cat >/etc/systemd/system/lighttpd-sa.socket <<'UNIT'
[Socket]
ListenStream=0.0.0.0:8081
Backlog=1024

[Install]
WantedBy=sockets.target
UNIT
    cat >/etc/systemd/system/lighttpd-sa.service <<'UNIT'
[Service]
ExecStart=/usr/sbin/lighttpd -D -f /etc/lighttpd/sa.conf
UNIT
    systemctl daemon-reload
    systemctl start lighttpd-sa.socket
}
lighttpd_exe() {
    local pid
    pid=$(systemctl show -P MainPID lighttpd.service)
    sha256sum "/proc/$pid/exe" | cut -c1-16
}

case $phase in
1)
    network_dhcp
    network
    run apply-b "$L" apply --allow-replacement --restart
    log "B live, lighttpd $(lighttpd_exe)"
    # C: B with a new build of lighttpd (bytes an ELF loader ignores appended).
    mount -o remount,rw /sysroot
    B=$(cat commit-b)
    rm -rf /var/tmp/c
    ostree checkout --repo=/sysroot/ostree/repo "$B" /var/tmp/c
    cp /var/tmp/c/usr/sbin/lighttpd /var/tmp/c/usr/sbin/lighttpd.new
    echo "lighttpd, a new build" >>/var/tmp/c/usr/sbin/lighttpd.new
    mv /var/tmp/c/usr/sbin/lighttpd.new /var/tmp/c/usr/sbin/lighttpd
    ostree commit --repo=/sysroot/ostree/repo -b debian/os --link-checkout-speedup \
        --add-metadata-string=version=3 -s "Debian forky livefs VM 3" --tree=dir=/var/tmp/c >commit-c
    rm -rf /var/tmp/c
    ostree admin deploy --os=debian debian/os >/dev/null
    log "C deployed: $(cat commit-c)"
    # X: B with a broken build of lighttpd (it exits 1), on a branch of its own.
    rm -rf /var/tmp/x
    ostree checkout --repo=/sysroot/ostree/repo "$B" /var/tmp/x
    printf '#!/bin/sh\necho "lighttpd: a broken build" >&2\nexit 1\n' >/var/tmp/x/usr/sbin/lighttpd
    ostree commit --repo=/sysroot/ostree/repo -b livefs/broken --link-checkout-speedup \
        --add-metadata-string=version=broken -s "a broken lighttpd" --tree=dir=/var/tmp/x >commit-x
    rm -rf /var/tmp/x
    rounds=$(cat rounds)
    for i in $(seq "$rounds"); do
        step "live-$i" "$L" apply --allow-replacement --restart
        step "back-$i" "$L" apply --target "$B" --allow-replacement --restart
        step "floor-$i" systemctl restart lighttpd.service
    done
    # Debian's unit reloads with /bin/kill, which this minimal image lacks: the
    # shell's kill sends the same signal (lighttpd's graceful restart).
    mkdir -p /etc/systemd/system/lighttpd.service.d
    cat >/etc/systemd/system/lighttpd.service.d/livefs-reload.conf <<'UNIT'
[Unit]
X-ReloadIfChanged=yes

[Service]
ExecReload=
ExecReload=/usr/sbin/lighttpd -tt -f /etc/lighttpd/lighttpd.conf
ExecReload=/bin/sh -c 'kill -USR1 ${MAINPID}'
UNIT
    systemctl daemon-reload
    for i in $(seq "$rounds"); do
        step "reload-$i" "$L" apply --allow-replacement --restart
        log "reload-$i: lighttpd $(lighttpd_exe), C's is $(sha256sum /usr/sbin/lighttpd | cut -c1-16)"
        step "reload-back-$i" "$L" apply --target "$B" --allow-replacement --restart
    done
    rm -r /etc/systemd/system/lighttpd.service.d
    systemctl daemon-reload
    for i in $(seq "$rounds"); do
        step "broken-$i" "$L" apply --target "$(cat commit-x)" --allow-replacement --restart
        back=$(sed -n 's/^Rolled back: .* in \([0-9.]*\) s (.*/\1/p' "$O/broken-$i.out")
        log "broken-$i: rolled_back in ${back:-?} s, lighttpd $(lighttpd_exe)"
    done
    socket_activated
    step sa "$L" apply --allow-replacement --restart
    log "C live, lighttpd $(lighttpd_exe)"
    "$L" status >"$O/status-live.txt" 2>&1 || true
    touch ready-soft
    wait_for go-soft
    run prepare-soft-reboot ostree admin prepare-soft-reboot 0
    echo 2 >phase
    touch soft-reboot
    ;;
2)
    network
    log "after the soft reboot: booted $(ostree admin status | grep -m1 '^\*'), lighttpd $(lighttpd_exe)"
    systemctl show -P SoftRebootsCount >"$O/soft-reboots"
    touch soft-done ready-reboot
    wait_for go-reboot
    # The default boot entry (C's): the host boots its command line.
    entry=$(grep -l "^options .*ostree=" /boot/loader/entries/*.conf | while read -r f; do
        echo "$(sed -n 's/^version //p' "$f") $f"
    done | sort -n | tail -1 | cut -d' ' -f2)
    sed -n 's/^options //p' "$entry" >cmdline-next
    echo 3 >phase
    ;;
3)
    network
    log "after the reboot: booted $(ostree admin status | grep -m1 '^\*'), lighttpd $(lighttpd_exe)"
    touch reboot-done
    wait_for finish
    ;;
esac
exit 0

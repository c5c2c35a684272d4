# What every guest scenario shares, sourced from the 9p share (run.sh puts it
# there): the share's layout, and helpers.
set -u
cd /run/livefs-vm
O=$PWD/out
L=$PWD/livefs
A=$(cat commit-a)
# The story of a scenario, for people: transcript.txt, each command shown with
# its output and exit status.
T=$O/transcript.txt
say() { echo "$*" >>"$T"; }
shown() {
    say "# $*"
    "$@" >>"$T" 2>&1
    say "(exit status $?)"
}
now() { date +%s.%N; }
# $1 - $2, in seconds with one decimal.
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", a - b }'; }
# Runs a command; its stdout, stderr and exit status land in out/NAME.{out,err,rc}.
run() {
    local name=$1
    shift
    "$@" >"$O/$name.out" 2>"$O/$name.err"
    echo $? >"$O/$name.rc"
}
# The web server's page, over loopback (port $1, default 80).
http_get() {
    exec 3<>/dev/tcp/127.0.0.1/"${1:-80}" || return 1
    printf 'GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
    cat <&3
    exec 3>&-
}
# QEMU's user network, by DHCP (systemd-networkd, enabled: the configuration
# stays in /etc for the next boots).
network_dhcp() {
    cat >/etc/systemd/network/80-livefs-vm.network <<'NET'
[Match]
Name=en* eth*

[Network]
DHCP=yes
NET
    systemctl enable --quiet systemd-networkd
    systemctl restart systemd-networkd
}

#!/bin/bash
# The SSH boot of the VM test (bookworm): the network up (QEMU's user network,
# by DHCP), the host's key authorised for root, sshd running; then the host
# drives livefs with Ansible over SSH, and says when it is done (a file `done`
# in the share). Everything the host does is checked on the host.
. /run/livefs-vm/guest-lib.sh
run networkd network_dhcp
install -d -m 700 /root/.ssh
install -m 600 authorized_keys /root/.ssh/authorized_keys
run sshd systemctl restart ssh
# Ready once sshd listens and the address is up.
for _ in $(seq 1 120); do
    if systemctl is-active --quiet ssh && networkctl status 2>/dev/null | grep -q 10.0.2.15; then
        break
    fi
    sleep 1
done
networkctl status >"$O/network.txt" 2>&1
# A user whose manager runs without a session (lingering): it runs livefs-demo-user.service.
useradd -m livefs-user
run linger loginctl enable-linger livefs-user
as_user() {
    runuser -u livefs-user -- env XDG_RUNTIME_DIR="/run/user/$(id -u livefs-user)" systemctl --user "$@"
}
for _ in $(seq 1 60); do
    [ "$(as_user is-active livefs-demo-user.service 2>/dev/null)" = active ] && break
    sleep 1
done
as_user show -p MainPID --value livefs-demo-user.service >"$O/user-pid-before"
# The restart of livefs-demo.service takes 15 s more: an apply --restart lasts
# long enough for the host to kill its SSH session mid-way.
mkdir -p /run/systemd/system/livefs-demo.service.d
printf '[Service]\nExecStopPost=/bin/sleep 15\n' >/run/systemd/system/livefs-demo.service.d/slow.conf
systemctl daemon-reload
# A probe of the socket-activated web server every 20 ms, from before the apply
# until the host says stop: every refused, reset or unanswered request counts (a
# request queued while the new code starts may wait: seconds under TCG).
cat >/run/livefs-probe.py <<'PROBE'
import collections, os, socket, time
seen, failed, errors, slowest = collections.Counter(), 0, collections.Counter(), 0.0
while not os.path.exists("/run/livefs-probe.stop"):
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", 8080), timeout=60) as c:
            c.sendall(b"GET / HTTP/1.0\r\n\r\n")
            reply = b""
            while chunk := c.recv(4096):
                reply += chunk
        if not reply.startswith(b"HTTP/1.0 200 OK"):
            raise OSError("bad reply %r" % reply[:40])
        seen[reply.split(b"version ")[-1].strip().decode()] += 1
        slowest = max(slowest, time.monotonic() - start)
    except OSError as e:
        failed += 1
        errors[time.strftime("%H:%M:%S ") + type(e).__name__ + ": " + str(e)] += 1
    time.sleep(0.02)
with open("/run/livefs-vm/out/probe.txt", "w") as out:
    print("failed", failed, file=out)
    print("slowest %.3f s" % slowest, file=out)
    for version, n in sorted(seen.items()):
        print("version", version, n, file=out)
    for e, n in errors.items():
        print("error", n, e, file=out)
PROBE
systemd-run --quiet --unit=livefs-probe python3 /run/livefs-probe.py
for _ in $(seq 1 60); do
    systemctl is-active --quiet livefs-demo-web.service && break
    sleep 1
done
systemctl show -p ActiveState --value livefs-demo-web.service >"$O/web-active-before"
left_alone_pids() {
    for u in ssh systemd-journald systemd-logind; do
        echo "$u $(systemctl show -p MainPID --value "$u.service")"
    done
}
left_alone_pids >"$O/left-alone-before"
touch "$O/ssh-ready"
for _ in $(seq 1 1200); do
    [ -e /run/livefs-vm/done ] && break
    sleep 1
done
touch /run/livefs-probe.stop
for _ in $(seq 1 30); do
    systemctl is-active --quiet livefs-probe.service || break
    sleep 1
done
"$L" status >"$O/status-after.txt" 2>&1
journalctl -o short-precise --no-pager -u livefs-demo-web.service -u livefs-demo-web.socket >"$O/web-journal.txt" 2>&1
as_user show -p MainPID --value livefs-demo-user.service >"$O/user-pid-after"
left_alone_pids >"$O/left-alone-after"
test -e /run/livefs-vm/done

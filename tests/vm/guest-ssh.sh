#!/bin/bash
# The SSH boot of the VM test (bookworm): the network up (QEMU's user network,
# by DHCP), the host's key authorised for root, sshd running; then the host
# drives livefs with Ansible over SSH, and says when it is done (a file `done`
# in the share). Everything the host does is checked on the host.
. /run/livefs-vm/guest-lib.sh
cat >/etc/systemd/network/80-livefs-vm.network <<'NET'
[Match]
Name=en* eth*

[Network]
DHCP=yes
NET
run networkd systemctl restart systemd-networkd
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
touch "$O/ssh-ready"
for _ in $(seq 1 1200); do
    [ -e /run/livefs-vm/done ] && break
    sleep 1
done
"$L" status >"$O/status-after.txt" 2>&1
test -e /run/livefs-vm/done

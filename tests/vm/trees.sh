# The trees of the VM images, sourced by image.sh (OSTree deployments) and
# image-bootc.sh (bootc's native composefs backend): a Debian root file system
# (rootfs.sh) made into an OS tree as rpm-ostree composes one, with the test's
# own units. NAME (the OS's name), CACHE and W (the work directory) are the
# caller's.

# A command of the release, chrooted in rootfs A with the work directory on
# /mnt; / is a mount point (bwrap, which ostree's deploy runs `semodule` in,
# needs one).
in_a() {
    unshare -m --propagation private bash -c '
        set -e
        a=$1 w=$2; shift 2
        mount --bind "$a" "$a"
        mount -t proc proc "$a/proc"
        mount -t sysfs sysfs "$a/sys"
        mount --rbind /dev "$a/dev"
        mount --bind "$w" "$a/mnt"
        OSTREE_SYSROOT_DEBUG=mutable-deployments chroot "$a" "$@"
    ' in_a "$CACHE/rootfs-a" "$W" "$@"
}

# Each root file system as an OSTree commit, the way rpm-ostree composes one:
# /etc moves to /usr/etc, /var's directories become a tmpfiles.d snippet, the
# kernel and initramfs go to /usr/lib/modules/KVER/.
to_ostree_tree() {
    local src=$1 dst=$2 kver
    cp -a "$src" "$dst"
    kver=$(ls "$dst/usr/lib/modules")
    # Newer kernel packages ship the image there already (a hardlink of /boot's).
    [ -e "$dst/usr/lib/modules/$kver/vmlinuz" ] || mv "$dst/boot/vmlinuz-$kver" "$dst/usr/lib/modules/$kver/vmlinuz"
    mv "$dst/boot/initramfs-$kver.img" "$dst/usr/lib/modules/$kver/initramfs.img"
    rm -rf "${dst:?}"/boot/* "$dst"/dev/* "$dst"/run/* "$dst"/tmp/* "$dst"/etc/machine-id
    # A fixed machine id: no first-boot logic on a test VM.
    echo 2c1b8a5a2e3b4d1c9f0e7d6c5b4a3f21 >"$dst/etc/machine-id"
    : >"$dst/etc/fstab"
    mv "$dst/etc" "$dst/usr/etc"
    mkdir -p "$dst/usr/lib/tmpfiles.d"
    (cd "$src/var" && find . -mindepth 1 -type d -printf 'd /var/%P %#m %U %G -\n') \
        >"$dst/usr/lib/tmpfiles.d/livefs-vm-var.conf"
    rm -rf "${dst:?}/var"
    mkdir -p "$dst/var" "$dst/sysroot"
    ln -s sysroot/ostree "$dst/ostree"
}

# What the test adds to both versions:
# - livefs-vm-agent.service: at boot, mounts the host's 9p share and runs the
#   scenario script the host left there, then powers off (the command channel);
# - livefs-demo.service: a small service of ours running a program from /usr.
add_test_units() {
    local t=$1 version=$2
    cat >"$t/usr/libexec/livefs-vm-agent" <<'AGENT'
#!/bin/sh
# Runs the host's scenario from the 9p share, then powers off; or, when the
# scenario asks for it (a file soft-reboot in the share), soft-reboots: this unit
# runs again afterwards, and the scenario goes on.
mkdir -p /run/livefs-vm
next=poweroff
share="-t 9p -o trans=virtio,version=9p2000.L,msize=262144 livefs"
# Under SELinux enforcing the 9p share has no policy of its own: it is mounted,
# read and written back with the guest permissive for those moments only; the
# scenario runs enforcing, from a copy in /run.
if [ "$(cat /sys/fs/selinux/enforce 2>/dev/null)" = 1 ]; then
    echo 0 >/sys/fs/selinux/enforce
    mkdir -p /run/livefs-share
    if mount $share /run/livefs-share; then
        cp -r /run/livefs-share/. /run/livefs-vm/
        restorecon -R /run/livefs-vm
        echo 1 >/sys/fs/selinux/enforce
        if [ -x /run/livefs-vm/scenario.sh ]; then
            /run/livefs-vm/scenario.sh >>/run/livefs-vm/scenario.log 2>&1
            echo $? >/run/livefs-vm/scenario.rc
        fi
        echo 0 >/sys/fs/selinux/enforce
        cp -r /run/livefs-vm/out /run/livefs-vm/scenario.log /run/livefs-vm/scenario.rc /run/livefs-share/
        [ ! -e /run/livefs-vm/next-cmdline ] || cp /run/livefs-vm/next-cmdline /run/livefs-share/
        sync
        umount /run/livefs-share
    fi
    echo 1 >/sys/fs/selinux/enforce
    systemctl --no-block "$next"
    exit 0
fi
if mount $share /run/livefs-vm; then
    if [ -x /run/livefs-vm/scenario.sh ]; then
        /run/livefs-vm/scenario.sh >>/run/livefs-vm/scenario.log 2>&1
        echo $? >/run/livefs-vm/scenario.rc
    fi
    if [ -e /run/livefs-vm/soft-reboot ]; then
        rm /run/livefs-vm/soft-reboot
        next=soft-reboot
    fi
    sync
    umount /run/livefs-vm
fi
systemctl --no-block "$next"
AGENT
    chmod 755 "$t/usr/libexec/livefs-vm-agent"
    cat >"$t/usr/lib/systemd/system/livefs-vm-agent.service" <<'UNIT'
[Unit]
Description=livefs VM test agent
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/libexec/livefs-vm-agent
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
UNIT
    mkdir -p "$t/usr/libexec/livefs-demo"
    cp "$t/usr/bin/sleep" "$t/usr/libexec/livefs-demo/livefs-demo-daemon"
    # Version 2's binary differs (trailing bytes an ELF loader ignores).
    [ "$version" = 1 ] || echo "livefs-demo version $version" >>"$t/usr/libexec/livefs-demo/livefs-demo-daemon"
    cat >"$t/usr/lib/systemd/system/livefs-demo.service" <<UNIT
[Unit]
Description=livefs demo service, version $version

[Service]
EnvironmentFile=-/etc/default/livefs-demo
ExecStart=/usr/libexec/livefs-demo/livefs-demo-daemon infinity

[Install]
WantedBy=multi-user.target
UNIT
    # A template whose instance runs: a changed template means its instances.
    cat >"$t/usr/lib/systemd/system/livefs-demo-worker@.service" <<UNIT
[Unit]
Description=livefs demo worker %i, version $version

[Service]
ExecStart=/usr/libexec/livefs-demo/livefs-demo-daemon infinity

[Install]
WantedBy=multi-user.target
UNIT
    # A service that opts out of live restarts, as NixOS's units do.
    cat >"$t/usr/lib/systemd/system/livefs-demo-pinned.service" <<UNIT
[Unit]
Description=livefs demo pinned service, version $version
X-RestartIfChanged=false

[Service]
ExecStart=/usr/libexec/livefs-demo/livefs-demo-daemon infinity

[Install]
WantedBy=multi-user.target
UNIT
    # A socket-activated web server (python3: bookworm only): the socket is the
    # same in both versions, the service and its program change; a live update
    # must not refuse one connection.
    # It stops gracefully, as web servers' units do: SIGTERM ends it between
    # requests, never with a connection accepted and not answered.
    cat >"$t/usr/libexec/livefs-demo/web.py" <<WEB
import signal, socket
VERSION = "$version"
stopping = False
def stop(*_):
    global stopping
    stopping = True
signal.signal(signal.SIGTERM, stop)
listener = socket.socket(fileno=3)
listener.settimeout(0.2)
while not stopping:
    try:
        conn, _ = listener.accept()
    except TimeoutError:
        continue
    with conn:
        conn.settimeout(None)
        conn.recv(4096)
        body = b"livefs demo web, version " + VERSION.encode() + b"\\n"
        conn.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
WEB
    cat >"$t/usr/lib/systemd/system/livefs-demo-web.socket" <<UNIT
[Unit]
Description=livefs demo web socket

[Socket]
ListenStream=127.0.0.1:8080
Backlog=512

[Install]
WantedBy=sockets.target
UNIT
    cat >"$t/usr/lib/systemd/system/livefs-demo-web.service" <<UNIT
[Unit]
Description=livefs demo web, version $version

[Service]
ExecStart=/usr/bin/python3 /usr/libexec/livefs-demo/web.py
UNIT
    if [ -x "$t/usr/bin/python3" ]; then
        mkdir -p "$t/usr/etc/systemd/system/sockets.target.wants"
        ln -sf /usr/lib/systemd/system/livefs-demo-web.socket \
            "$t/usr/etc/systemd/system/sockets.target.wants/livefs-demo-web.socket"
    fi
    # A unit of users' managers, started by every user manager.
    mkdir -p "$t/usr/lib/systemd/user" "$t/usr/etc/systemd/user/default.target.wants"
    cat >"$t/usr/lib/systemd/user/livefs-demo-user.service" <<UNIT
[Unit]
Description=livefs demo user service, version $version

[Service]
ExecStart=/usr/libexec/livefs-demo/livefs-demo-daemon infinity

[Install]
WantedBy=default.target
UNIT
    ln -sf /usr/lib/systemd/user/livefs-demo-user.service \
        "$t/usr/etc/systemd/user/default.target.wants/livefs-demo-user.service"
    # Version 2 changes units a live update leaves alone (sshd, the journal, the
    # login manager): each reported with its reason, none restarted.
    if [ "$version" != 1 ]; then
        for u in ssh systemd-journald systemd-logind; do
            mkdir -p "$t/usr/lib/systemd/system/$u.service.d"
            printf '[Unit]\nX-LivefsDemo=%s\n' "$version" >"$t/usr/lib/systemd/system/$u.service.d/livefs-demo.conf"
        done
    fi
    ln -sf "/usr/lib/systemd/system/livefs-demo-worker@.service" \
        "$t/usr/etc/systemd/system/multi-user.target.wants/livefs-demo-worker@1.service"
    mkdir -p "$t/usr/etc/default"
    echo "LIVEFS_DEMO_VERSION=$version" >"$t/usr/etc/default/livefs-demo"
    echo "$NAME livefs VM, version $version" >"$t/usr/etc/motd"
    # No virtual terminals in this VM (serial console only): getty-static's
    # gettys on tty2-6 would fail, and a failed unit is what the test looks for.
    ln -sf /dev/null "$t/usr/etc/systemd/system/getty-static.service"
    for u in livefs-vm-agent livefs-demo livefs-demo-pinned; do
        ln -sf "/usr/lib/systemd/system/$u.service" "$t/usr/etc/systemd/system/multi-user.target.wants/$u.service"
    done
}

# B's web server serves a page from /usr (files under /var are not part of a
# commit). ETC: the tree's /etc defaults (usr/etc in an OSTree tree).
serve_page_from_usr() {
    local t=$1 etc=$2
    mkdir -p "$t/usr/share/livefs-demo/www"
    if [ -e "$t/$etc/lighttpd/lighttpd.conf" ]; then
        echo '<h1>served by lighttpd from a live-updated /usr</h1>' >"$t/usr/share/livefs-demo/www/index.html"
        sed -i 's|^server.document-root .*|server.document-root = "/usr/share/livefs-demo/www"|' \
            "$t/$etc/lighttpd/lighttpd.conf"
    else
        echo '<h1>served by nginx from a live-updated /usr</h1>' >"$t/usr/share/livefs-demo/www/index.html"
        sed -i 's|^\(\s*root\) /var/www/html;|\1 /usr/share/livefs-demo/www;|' \
            "$t/$etc/nginx/sites-available/default"
        grep -q 'root /usr/share/livefs-demo/www;' "$t/$etc/nginx/sites-available/default"
    fi
}

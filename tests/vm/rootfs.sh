#!/usr/bin/env bash
# Builds (once, cached) the two Debian root filesystems of a VM test:
#   A = a bootable OSTree system (systemd, linux-image-amd64, dracut with ostree's
#       module; on bookworm also sshd and python3, for Ansible over SSH, the
#       message bus with pam_systemd, for logind and users' managers, and nginx,
#       not enabled, on port 8081, serving a page from /usr: the server the
#       rollback scenario breaks);
#   B = A + a web server: lighttpd (nginx on forky-selinux: Debian's lighttpd
#       runs a script of /usr/share at start, which refpolicy's httpd_t may not).
# RELEASE is bookworm (Debian 12: ostree 2022.7, no composefs) or forky (ostree
# 2026.x built with composefs: A's /usr/lib/ostree/prepare-root.conf enables
# composefs and a read-only sysroot, in the commits and in the initramfs), or
# forky-selinux: forky with Debian's refpolicy, enforcing (its module store in
# /etc/selinux, as Fedora keeps it: a deployment's /var is empty when ostree's
# deploy runs `semodule -N --refresh`; plus selinux-local.cil, the rules the
# test's own /var directories need).
# Usage: rootfs.sh CACHE_DIR [RELEASE]. Prints nothing on success; logs go to CACHE_DIR/*.log.
set -euo pipefail
CACHE=${1:?usage: rootfs.sh CACHE_DIR [RELEASE]}
RELEASE=${2:-bookworm}
. "$(dirname "$0")/../../scripts/deps.sh"
MIRROR=$(livefs_mirror)
mkdir -p "$CACHE"

in_chroot() {
    local dir=$1
    shift
    unshare -m --propagation private bash -c '
        set -e
        dir=$1; shift
        mount -t proc proc "$dir/proc"
        mount --rbind /dev "$dir/dev"
        mount -t sysfs sysfs "$dir/sys"
        chroot "$dir" "$@"
    ' in_chroot "$dir" "$@"
}

exec 9>"$CACHE/.lock"
flock 9

server=lighttpd
A=$CACHE/rootfs-a
B=$CACHE/rootfs-b
# VERSION: bump when what this script builds for a release changes, so that
# release's cache is rebuilt.
case $RELEASE in
bookworm)
    VERSION=6
    script=()
    drivers="virtio_blk virtio_pci virtio_net ext4"
    # The message bus and pam_systemd: logind, sessions' scopes, users' managers.
    extra="openssh-server python3 dbus libpam-systemd nginx"
    ;;
forky)
    VERSION=3
    # bookworm's debootstrap has no forky script: sid's is the same.
    script=(/usr/share/debootstrap/scripts/sid)
    drivers="virtio_blk virtio_pci ext4 erofs overlay loop"
    extra=""
    ;;
forky-selinux)
    VERSION=2
    script=(/usr/share/debootstrap/scripts/sid)
    drivers="virtio_blk virtio_pci ext4 erofs overlay loop"
    extra="selinux-policy-default policycoreutils selinux-utils auditd bubblewrap procps"
    server=nginx
    ;;
*)
    echo "rootfs.sh: unknown release $RELEASE (bookworm, forky or forky-selinux)" >&2
    exit 1
    ;;
esac

if [ "$(cat "$A.done" 2>/dev/null)" != "$VERSION" ]; then
    rm -rf "$A" "$A.done" "$B" "$B.done"
    debootstrap --variant=minbase --include=systemd-sysv,udev,kmod "${RELEASE%-selinux}" "$A" "$MIRROR" "${script[@]}" \
        >"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    # A mirror snapshot can serve a testing release past its Release file's Valid-Until.
    [ "$RELEASE" = bookworm ] ||
        echo 'Acquire::Check-Valid-Until "false";' >"$A/etc/apt/apt.conf.d/99livefs-mirror-snapshot"
    printf '#!/bin/sh\nexit 101\n' >"$A/usr/sbin/policy-rc.d"
    chmod 755 "$A/usr/sbin/policy-rc.d"
    # dracut (not initramfs-tools) so that ostree's dracut module runs ostree-prepare-root.
    in_chroot "$A" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends dracut linux-image-amd64 ostree ostree-boot '"$extra" >"$CACHE/apt-a.log" 2>&1 ||
        { tail -20 "$CACHE/apt-a.log" >&2; exit 1; }
    if [ "$RELEASE" != bookworm ]; then
        # Composefs and a read-only sysroot, as Fedora CoreOS and bootc images boot;
        # ostree's dracut module copies this file into the initramfs.
        printf '[composefs]\nenabled = yes\n[sysroot]\nreadonly = true\n' >"$A/usr/lib/ostree/prepare-root.conf"
        in_chroot "$A" dpkg-query -W libcomposefs1 >/dev/null ||
            { echo "rootfs.sh: forky's ostree does not pull libcomposefs1" >&2; exit 1; }
    fi
    if [ "$RELEASE" = forky-selinux ]; then
        printf 'SELINUX=enforcing\nSELINUXTYPE=default\n' >"$A/etc/selinux/config"
        echo 'store-root = /etc/selinux' >>"$A/etc/selinux/semanage.conf"
        cp -a "$A/var/lib/selinux/default/." "$A/etc/selinux/default/"
        rm -rf "$A/var/lib/selinux/default"
        cp "$(dirname "$0")/selinux-local.cil" "$A/tmp/livefs-vm-local.cil"
        in_chroot "$A" semodule -n -i /tmp/livefs-vm-local.cil >"$CACHE/semodule.log" 2>&1 ||
            { tail -20 "$CACHE/semodule.log" >&2; exit 1; }
        rm "$A/tmp/livefs-vm-local.cil"
    fi
    if [ "$RELEASE" = bookworm ]; then
        # nginx: started by the scenario that needs it, on a port of its own
        # (B's lighttpd has 80), serving a page from /usr.
        rm -f "$A/etc/systemd/system/multi-user.target.wants/nginx.service"
        sed -i -e 's/listen 80 default_server;/listen 8081 default_server;/' \
            -e 's/listen \[::\]:80 default_server;/listen [::]:8081 default_server;/' \
            -e 's|^\(\s*root\) /var/www/html;|\1 /usr/share/livefs-demo/nginx;|' "$A/etc/nginx/sites-available/default"
        grep -q 'listen 8081 default_server;' "$A/etc/nginx/sites-available/default"
        grep -q 'root /usr/share/livefs-demo/nginx;' "$A/etc/nginx/sites-available/default"
        mkdir -p "$A/usr/share/livefs-demo/nginx"
        echo '<h1>served by nginx, the booted build</h1>' >"$A/usr/share/livefs-demo/nginx/index.html"
    fi
    kver=$(ls "$A/lib/modules")
    # A generic initramfs (not host-only: the VM is not this machine) with ostree's module.
    in_chroot "$A" dracut --force --no-hostonly --add ostree --omit "plymouth network" \
        --add-drivers "$drivers" "/boot/initramfs-$kver.img" "$kver" \
        >"$CACHE/dracut.log" 2>&1 || { tail -20 "$CACHE/dracut.log" >&2; exit 1; }
    in_chroot "$A" apt-get clean >/dev/null
    rm -f "$A/usr/sbin/policy-rc.d"
    echo "$VERSION" >"$A.done"
fi

if [ "$(cat "$B.done" 2>/dev/null)" != "$VERSION" ]; then
    rm -rf "$B" "$B.done"
    cp -a "$A" "$B"
    printf '#!/bin/sh\nexit 101\n' >"$B/usr/sbin/policy-rc.d"
    chmod 755 "$B/usr/sbin/policy-rc.d"
    in_chroot "$B" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends '"$server"' && apt-get clean' >"$CACHE/apt-b.log" 2>&1 ||
        { tail -20 "$CACHE/apt-b.log" >&2; exit 1; }
    rm -f "$B/usr/sbin/policy-rc.d"
    echo "$VERSION" >"$B.done"
fi

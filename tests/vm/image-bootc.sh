#!/usr/bin/env bash
# Builds (once, cached) the disk image of the VM test of bootc's native composefs
# backend, laid out as bootc lays it out, with composefs-rs's own tools
# (scripts/deps.sh's livefs_composefs_tools) and Debian forky's trees
# (rootfs.sh, trees.sh):
#   /composefs: the repository (cfsctl init --insecure: this machine's kernel has
#     no fs-verity), images A (version 1, booted), B (version 2: A + lighttpd
#     serving a page from /usr) and C (B with a broken lighttpd: it exits 1);
#   /state/deploy/HEX/{etc,var}: each image's deployment state (its /etc a copy
#     of the image's, /var empty: tmpfiles fills it);
#   /boot/loader/entries/bootc_debian-1-1.conf: A's Type 1 entry (composefs=?A);
#     B and C are staged by the scenario as bootc stages them
#     (/run/composefs/staged-deployment);
# and an initramfs of forky's dracut with a module of ours that runs
# composefs-setup-root (/etc bound from the state directory, as bootc has it).
# Usage: image-bootc.sh CACHE_DIR (the forky cache: its root file systems are
# image.sh's). Prints the image directory last; it holds disk.raw, vmlinuz,
# initramfs.img, cmdline, commit-{a,b,c} (the images' names) and manifest-{a,b}
# (every /usr path's type, mode and owner, and the content of each file A and B
# differ in: what the guest checks its /usr against).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${1:?usage: image-bootc.sh CACHE_DIR}
# composefs-rs's tools (built once, cached: what scripts/test already did).
. "$HERE/../../scripts/deps.sh"
livefs_composefs_tools
bash "$HERE/rootfs.sh" "$CACHE" forky
. "$HERE/trees.sh"
NAME="Debian forky"
KEY=$(cat "$HERE/rootfs.sh" "$HERE/trees.sh" "$HERE/image-bootc.sh" "$CACHE/rootfs-a.done" \
    "$LIVEFS_CFSCTL" "$LIVEFS_COMPOSEFS_SETUP_ROOT" | sha256sum | cut -c1-16)
IMG=$CACHE/bootc-image-$KEY
exec 9>"$CACHE/.bootc-image-lock"
flock 9
if [ -e "$IMG/done" ]; then
    echo "$IMG"
    exit 0
fi
rm -rf "$CACHE"/bootc-image-* "$CACHE/work-bootc"
W=$CACHE/work-bootc
mkdir -p "$W"

# A tree as bootc's native backend boots it: the OS tree with /etc where a
# container image has it, no initramfs inside (the composefs one is made below).
to_image_tree() {
    local src=$1 dst=$2 version=$3 kver
    to_ostree_tree "$src" "$dst"
    add_test_units "$dst" "$version"
    rm "$dst/ostree"
    mv "$dst/usr/etc" "$dst/etc"
    kver=$(ls "$dst/usr/lib/modules")
    rm -f "$dst/usr/lib/modules/$kver/initramfs.img"
}
to_image_tree "$CACHE/rootfs-a" "$W/tree-a" 1
to_image_tree "$CACHE/rootfs-b" "$W/tree-b" 2
serve_page_from_usr "$W/tree-b" etc
cp -a "$W/tree-b" "$W/tree-c"
printf '#!/bin/sh\necho "lighttpd: a broken build" >&2\nexit 1\n' >"$W/tree-c/usr/sbin/lighttpd"
KVER=$(ls "$W/tree-a/usr/lib/modules")

# The initramfs: forky's dracut, chrooted in A, with our module.
D=$W/dracut
mkdir -p "$D"
cp "$LIVEFS_COMPOSEFS_SETUP_ROOT" "$D/composefs-setup-root"
cat >"$D/module-setup.sh" <<'MODULE'
#!/bin/bash
# composefs-setup-root in the initramfs: mounts the image composefs= names as
# the new root, with /etc and /var from its state directory.
check() { return 0; }
depends() { echo systemd; }
installkernel() { instmods erofs overlay; }
install() {
    inst_binary "$moddir/composefs-setup-root" /usr/bin/composefs-setup-root
    inst_simple "$moddir/setup-root-conf.toml" /usr/lib/composefs/setup-root-conf.toml
    inst_simple "$moddir/composefs-setup-root.service" "$systemdsystemunitdir/composefs-setup-root.service"
    $SYSTEMCTL -q --root "$initdir" add-wants initrd-root-fs.target composefs-setup-root.service
}
MODULE
cat >"$D/composefs-setup-root.service" <<'UNIT'
[Unit]
Description=Mount the composefs image as the root
DefaultDependencies=no
ConditionKernelCommandLine=composefs
ConditionPathExists=/etc/initrd-release
Requires=sysroot.mount
After=sysroot.mount
Before=initrd-root-fs.target initrd-parse-etc.service
OnFailure=emergency.target
OnFailureJobMode=isolate

[Service]
Type=oneshot
RemainAfterExit=yes
Environment=TMPDIR=/run
ExecStart=/usr/bin/composefs-setup-root --sysroot /sysroot
UNIT
# bootc binds /etc from the state directory (composefs-setup-root's default is an overlay).
printf '[etc]\nmount = "bind"\n' >"$D/setup-root-conf.toml"
mkdir -p "$CACHE/rootfs-a/usr/lib/dracut/modules.d/90livefs-composefs"
in_a bash -c "mount --bind /mnt/dracut /usr/lib/dracut/modules.d/90livefs-composefs &&
    dracut -q --force --no-hostonly -a 'systemd systemd-initrd livefs-composefs' -o ostree \
        --add-drivers 'erofs overlay virtio_blk virtio_pci ext4' /mnt/initramfs.img $KVER" \
    >"$CACHE/dracut-bootc.log" 2>&1 || { tail -20 "$CACHE/dracut-bootc.log" >&2; exit 1; }
rmdir "$CACHE/rootfs-a/usr/lib/dracut/modules.d/90livefs-composefs"

# The physical root: the repository, the images, their state, A's boot entry.
S=$W/sysroot
mkdir -p "$S/boot/loader/entries"
"$LIVEFS_CFSCTL" --repo "$S/composefs" init --insecure --erofs-version 2 >/dev/null
for v in a b c; do
    out=$("$LIVEFS_CFSCTL" --repo "$S/composefs" create-image --bootable "$W/tree-$v" "debian-$v")
    hex=${out#sha512:}
    [ ${#hex} = 128 ] || { echo "image-bootc.sh: cfsctl create-image printed $out" >&2; exit 1; }
    echo "$hex" >"$W/commit-$v"
    mkdir -p "$S/state/deploy/$hex/var"
    cp -a "$W/tree-$v/etc" "$S/state/deploy/$hex/etc"
done
A=$(cat "$W/commit-a")
karg=$("$LIVEFS_CFSCTL" --erofs-version 2 compute-karg "$W/tree-a")
[ "$karg" = "composefs=$A" ] || { echo "image-bootc.sh: compute-karg says $karg, the image is $A" >&2; exit 1; }
CMDLINE="root=LABEL=livefs-root rw console=ttyS0 composefs=?$A"
cat >"$S/boot/loader/entries/bootc_debian-1-1.conf" <<ENTRY
title $NAME livefs VM 1
version 1
linux /bootc_composefs-$A/vmlinuz
initrd /bootc_composefs-$A/initrd
options $CMDLINE
ENTRY

# What the guest checks /usr against: every path's type, mode and owner, and
# the content of the files A and B differ in.
manifest() {
    local tree=$1
    (cd "$tree" && find usr -printf '/%p %y %m %U %G %l\n' | LC_ALL=C sort)
    (cd "$tree" && LC_ALL=C sort "$W/differ" | xargs -r -d '\n' sha256sum --)
}
diff -rq --no-dereference "$W/tree-a/usr" "$W/tree-b/usr" 2>/dev/null |
    sed -n "s|^Files $W/tree-a/\(.*\) and .* differ$|\1|p" >"$W/differ" || true
[ -s "$W/differ" ] || { echo "image-bootc.sh: A and B differ in no file of both" >&2; exit 1; }

mkdir -p "$IMG.tmp"
manifest "$W/tree-a" >"$IMG.tmp/manifest-a"
manifest "$W/tree-b" >"$IMG.tmp/manifest-b"
echo "$CMDLINE" >"$IMG.tmp/cmdline"
cp "$W/tree-a/usr/lib/modules/$KVER/vmlinuz" "$IMG.tmp/vmlinuz"
cp "$W/initramfs.img" "$IMG.tmp/initramfs.img"
cp "$W"/commit-a "$W"/commit-b "$W"/commit-c "$IMG.tmp/"
mkfs.ext4 -q -L livefs-root -d "$S" "$IMG.tmp/disk.raw" 6G
rm -rf "$W"
touch "$IMG.tmp/done"
mv "$IMG.tmp" "$IMG"
echo "$IMG"

#!/usr/bin/env bash
# Builds (once, cached) the disk image of a VM test: an ext4 file system holding
# an OSTree sysroot with two deployments of Debian RELEASE (see rootfs.sh):
#   version 1 (A): the booted one; version 2 (B): the pending one (default entry).
# The commits and deployments are made by the release's own ostree, run chrooted
# in A (only a composefs-enabled build writes a deployment's .ostree.cfs).
# Usage: image.sh CACHE_DIR [RELEASE]. Prints the image directory last; it holds
# disk.raw, vmlinuz, initramfs.img, cmdline (A's boot entry options) and the two commits.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${1:?usage: image.sh CACHE_DIR [RELEASE]}
RELEASE=${2:-bookworm}
bash "$HERE/rootfs.sh" "$CACHE" "$RELEASE"
. "$HERE/trees.sh"
case $RELEASE in
bookworm) NAME="Debian 12" ;;
*) NAME="Debian ${RELEASE%-selinux}" ;;
esac
# forky-selinux: commits labelled by ostree itself from the tree's policy (it
# labels nothing unless the tree's selinux/config says enforcing or permissive),
# and a boot with SELinux enforcing (Debian's default LSM is AppArmor).
COMMIT_LABELS=()
SELINUX_KARGS=()
if [ "$RELEASE" = forky-selinux ]; then
    COMMIT_LABELS=(--selinux-policy-from-base --selinux-labeling-epoch=1)
    SELINUX_KARGS=(--karg=security=selinux --karg=selinux=1 --karg=enforcing=1 --karg=audit=1)
fi
KEY=$(cat "$HERE/rootfs.sh" "$HERE/trees.sh" "$HERE/image.sh" "$CACHE/rootfs-a.done" | sha256sum | cut -c1-16)
IMG=$CACHE/image-$KEY
exec 9>"$CACHE/.image-lock"
flock 9
if [ -e "$IMG/done" ]; then
    echo "$IMG"
    exit 0
fi
rm -rf "$CACHE"/image-* "$CACHE/work"
W=$CACHE/work
mkdir -p "$W"

to_ostree_tree "$CACHE/rootfs-a" "$W/tree-a"
add_test_units "$W/tree-a" 1
to_ostree_tree "$CACHE/rootfs-b" "$W/tree-b"
add_test_units "$W/tree-b" 2
serve_page_from_usr "$W/tree-b" usr/etc

S=$W/sysroot
mkdir "$S"
ostree_in_a() { in_a ostree "$@"; }
ostree_in_a admin init-fs /mnt/sysroot >/dev/null
ostree_in_a admin os-init --sysroot=/mnt/sysroot debian >/dev/null
ostree_in_a commit --repo=/mnt/sysroot/ostree/repo -b debian/os --add-metadata-string=version=1 \
    -s "$NAME livefs VM 1" "${COMMIT_LABELS[@]}" --tree=dir=/mnt/tree-a >"$W/commit-a"
ostree_in_a admin deploy --sysroot=/mnt/sysroot --os=debian --karg=root=LABEL=livefs-root --karg=rw \
    --karg=console=ttyS0 "${SELINUX_KARGS[@]}" debian/os >/dev/null
ostree_in_a commit --repo=/mnt/sysroot/ostree/repo -b debian/os --add-metadata-string=version=2 \
    -s "$NAME livefs VM 2" "${COMMIT_LABELS[@]}" --tree=dir=/mnt/tree-b >"$W/commit-b"
ostree_in_a admin deploy --retain --sysroot=/mnt/sysroot --os=debian debian/os >/dev/null
if [ "$RELEASE" = forky-selinux ]; then
    # The stateroot's /var, which no commit holds, labelled as a boot expects it.
    in_a setfiles -r /mnt/sysroot/ostree/deploy/debian /etc/selinux/default/contexts/files/file_contexts \
        /mnt/sysroot/ostree/deploy/debian/var
fi

mkdir -p "$IMG.tmp"
A=$(cat "$W/commit-a")
entry=$(grep -l '^version 1$' "$S"/boot/loader/entries/*.conf)
grep '^options ' "$entry" | cut -d' ' -f2- >"$IMG.tmp/cmdline"
cp "$S/boot$(grep '^linux ' "$entry" | cut -d' ' -f2)" "$IMG.tmp/vmlinuz"
cp "$S/boot$(grep '^initrd ' "$entry" | cut -d' ' -f2)" "$IMG.tmp/initramfs.img"
cp "$W/commit-a" "$IMG.tmp/commit-a"
cp "$W/commit-b" "$IMG.tmp/commit-b"
grep -q "ostree=" "$IMG.tmp/cmdline"
test -d "$S/ostree/deploy/debian/deploy/$A.0"
if [ "$RELEASE" != bookworm ] && [ ! -e "$S/ostree/deploy/debian/deploy/$A.0/.ostree.cfs" ]; then
    echo "image.sh: $RELEASE's ostree wrote no .ostree.cfs: the deployment cannot boot with composefs" >&2
    exit 1
fi
# ext4 with the sysroot's hardlinks and xattrs.
mkfs.ext4 -q -L livefs-root -d "$S" "$IMG.tmp/disk.raw" 4G
rm -rf "$W"
touch "$IMG.tmp/done"
mv "$IMG.tmp" "$IMG"
echo "$IMG"

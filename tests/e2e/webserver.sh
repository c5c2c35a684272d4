#!/usr/bin/env bash
# End to end: `apt-get install lighttpd` on a Debian 12 OSTree system, `livefs
# apply`, start the server from the live root and fetch a page; then `livefs
# reset`. Run by tests/e2e_webserver.rs (as root), with OUT set to a scratch
# directory; everything it mounts is in a private mount namespace.
set -euo pipefail
: "${OUT:?}" "${LIVEFS:?}"
CACHE=${LIVEFS_TEST_CACHE:-/var/cache/livefs-test}
. "$(dirname "$0")/../../scripts/deps.sh"
MIRROR=$(livefs_mirror)
mkdir -p "$CACHE"
export OSTREE_SYSROOT_DEBUG=mutable-deployments

# 1. Two Debian root filesystems, cached: minbase, and minbase + lighttpd.
(
    flock 9
    if [ ! -e "$CACHE/v1.done" ]; then
        rm -rf "$CACHE/v1"
        debootstrap --variant=minbase bookworm "$CACHE/v1" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
            { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
        touch "$CACHE/v1.done"
    fi
    if [ ! -e "$CACHE/v2.done" ]; then
        rm -rf "$CACHE/v2"
        cp -a "$CACHE/v1" "$CACHE/v2"
        printf '#!/bin/sh\nexit 101\n' >"$CACHE/v2/usr/sbin/policy-rc.d"
        chmod 755 "$CACHE/v2/usr/sbin/policy-rc.d"
        unshare -m --propagation private bash -c "
            mount -t proc proc '$CACHE/v2/proc'
            chroot '$CACHE/v2' sh -c 'apt-get update -qq &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lighttpd'
        " >"$CACHE/apt.log" 2>&1 || { tail -20 "$CACHE/apt.log" >&2; exit 1; }
        rm "$CACHE/v2/usr/sbin/policy-rc.d"
        touch "$CACHE/v2.done"
    fi
) 9>"$CACHE/.lock"

# 2. Each root filesystem as an OSTree commit, the way rpm-ostree composes one:
#    /etc moves to /usr/etc, /var's directories become a tmpfiles.d snippet, a fake
#    kernel goes to /usr/lib/modules.
to_ostree_tree() {
    local src=$1 dst=$2
    cp -a "$src" "$dst"
    mv "$dst/etc" "$dst/usr/etc"
    mkdir -p "$dst/usr/lib/tmpfiles.d"
    (cd "$src/var" && find . -mindepth 1 -type d -printf 'd /var/%P %#m %U %G -\n') \
        >"$dst/usr/lib/tmpfiles.d/livefs-e2e-var.conf"
    rm -rf "${dst:?}/var" "$dst"/dev/* "$dst"/run/* "$dst"/tmp/*
    mkdir -p "$dst/var" "$dst/sysroot" "$dst/usr/lib/modules/6.1.0-livefs-e2e"
    echo "fake kernel" >"$dst/usr/lib/modules/6.1.0-livefs-e2e/vmlinuz"
    ln -s sysroot/ostree "$dst/ostree"
}
W=$OUT/work
mkdir -p "$W"
to_ostree_tree "$CACHE/v1" "$W/tree1"
to_ostree_tree "$CACHE/v2" "$W/tree2"
# The update also changes two configuration files; the admin will edit one.
echo "Debian with lighttpd (livefs e2e v2)" >"$W/tree2/usr/etc/motd"
echo "Debian GNU/Linux 12 (livefs e2e v2)" >"$W/tree2/usr/etc/issue.net"

S=$W/sysroot
mkdir "$S"
ostree admin init-fs "$S" >/dev/null
ostree admin os-init --sysroot="$S" debian >/dev/null
commit() {
    ostree commit --repo="$S/ostree/repo" -b debian/12 --add-metadata-string=version="$1" -s "Debian 12 $2" \
        --tree=dir="$3" >/dev/null
    ostree admin deploy --retain --sysroot="$S" --os=debian debian/12 >/dev/null
}
commit 1 minbase "$W/tree1"
commit 2 "+ lighttpd" "$W/tree2"
BOOTED=$(ostree rev-parse --repo="$S/ostree/repo" debian/12^)
ostree rev-parse --repo="$S/ostree/repo" debian/12 >"$OUT/target"
echo "$BOOTED" >"$OUT/booted"
ostree checkout --repo="$S/ostree/repo" --force-copy --subpath=/usr/etc "$BOOTED" "$OUT/booted-etc"

# 3. Boot version 1 (simulated) and update it live.
PORT=$((20000 + $$ % 20000))
cat >"$W/booted.sh" <<SCRIPT
set -euo pipefail
R=$W/root
mkdir -p \$R
mount --bind $S/ostree/deploy/debian/deploy/$BOOTED.0 \$R
mount --bind $S/ostree/deploy/debian/var \$R/var
mount -t tmpfs tmpfs \$R/run
touch \$R/run/ostree-booted
mount --bind \$R/usr \$R/usr
mount -o remount,bind,ro \$R/usr
mount -t proc proc \$R/proc
mount --bind /dev \$R/dev
L() { $LIVEFS --root \$R --sysroot $S "\$@"; }

echo "edited by the admin" >> \$R/etc/motd
cp \$R/etc/motd $OUT/motd-edited
L status > $OUT/status-before.txt
L apply --allow-replacement --dry-run > $OUT/apply-dry.txt
L apply --allow-replacement --json > $OUT/apply.json
L apply --allow-replacement > $OUT/apply-again.txt
L status > $OUT/status-after.txt

# The server, from the live /usr and /etc, with a page of our own.
mkdir -p \$R/var/www/html
echo '<h1>served by lighttpd from a live-updated /usr</h1>' > \$R/var/www/html/index.html
printf 'server.document-root = "/var/www/html"\nserver.port = $PORT\nserver.bind = "127.0.0.1"\nserver.pid-file = "/run/e2e-lighttpd.pid"\nserver.errorlog = "/var/log/lighttpd/error.log"\n' > \$R/run/e2e-lighttpd.conf
chroot \$R /usr/sbin/lighttpd -f /run/e2e-lighttpd.conf
for i in \$(seq 50); do
    if exec 3<>/dev/tcp/127.0.0.1/$PORT 2>/dev/null; then break; fi
    sleep 0.1
done
printf 'GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
cat <&3 > $OUT/response.txt
exec 3>&-
kill \$(cat \$R/run/e2e-lighttpd.pid)
ls -ld --time-style=+ \$R/var/log/lighttpd \$R/var/cache/lighttpd > $OUT/var-dirs.txt
cp \$R/etc/motd $OUT/motd-after-apply
cp \$R/etc/issue.net $OUT/issue-after-apply
test -f \$R/etc/lighttpd/lighttpd.conf

L reset --json > $OUT/reset.json
L status > $OUT/status-reset.txt
if test -e \$R/usr/sbin/lighttpd; then echo "reset left /usr/sbin/lighttpd" >&2; exit 1; fi
if test -e \$R/etc/lighttpd; then echo "reset left /etc/lighttpd" >&2; exit 1; fi
cp -a \$R/etc $OUT/etc-after-reset
SCRIPT
unshare -m --propagation private bash "$W/booted.sh"

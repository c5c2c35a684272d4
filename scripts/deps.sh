# Installs what livefs's demo, tests and benchmarks need, when it is missing.
# Sourced by the other scripts; needs root (apt-get) on a fresh Debian machine.
#
# apt never removes a package for us (--no-remove): a fresh machine may carry a
# backported package (qemu-utils 10 from bookworm-backports) that installing its
# sibling from the release (qemu-system-x86 7.2) would silently remove. Related
# packages are installed together, at the installed one's version.

# The Debian mirror this machine's apt uses (LIVEFS_TEST_MIRROR overrides it):
# the first URIs of a deb822 source, else of a one-line `deb` source, that serves
# the machine's release (not -security, -updates or -backports).
livefs_mirror() {
    if [ -n "${LIVEFS_TEST_MIRROR:-}" ]; then
        echo "$LIVEFS_TEST_MIRROR"
        return
    fi
    local mirror
    mirror=$(awk '
        /^URIs:/ { uri = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i !~ /-/) { print uri; exit } }
        /^deb / { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i + 1) !~ /-/) { print $i; exit } break } }
    ' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null)
    if [ -z "$mirror" ]; then
        echo "livefs: no Debian mirror in /etc/apt/sources.list{,.d/*.sources}; set LIVEFS_TEST_MIRROR" >&2
        return 1
    fi
    echo "${mirror%/}"
}

# Packages that must be of one version. When one of them is installed from a
# suite the machine's sources lack (a backport), the others come from there too.
LIVEFS_RELATED_GROUPS=("qemu-utils qemu-system-x86")

livefs_installed_version() {
    dpkg-query -W -f '${db:Status-Status} ${Version}\n' "$1" 2>/dev/null | awk '$1 == "installed" { print $2 }'
}

# True when apt knows a source for version $2 of package $1.
livefs_apt_has() {
    apt-cache madison "$1" 2>/dev/null | awk -v v="$2" '$3 == v { found = 1 } END { exit !found }'
}

# apt-get install that never removes anything; its log is shown when it fails.
livefs_apt_get() {
    apt-get install -y -qq --no-install-recommends --no-remove "$@" >/tmp/livefs-apt.log 2>&1 && return 0
    echo "livefs: apt-get install $* failed (nothing was removed):" >&2
    tail -15 /tmp/livefs-apt.log >&2
    return 1
}

livefs_apt_install() {
    local plain=() related=() backported=0 pkg group member version
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    for pkg in "$@"; do
        for group in "${LIVEFS_RELATED_GROUPS[@]}"; do
            [[ " $group " == *" $pkg "* ]] || continue
            for member in $group; do
                version=$(livefs_installed_version "$member")
                [ -n "$version" ] || continue
                related+=("$pkg" "$member")
                livefs_apt_has "$member" "$version" || backported=1
                continue 3
            done
        done
        plain+=("$pkg")
    done
    [ ${#plain[@]} -eq 0 ] || livefs_apt_get "${plain[@]}" || exit 1
    [ ${#related[@]} -ne 0 ] || return 0
    if [ "$backported" = 0 ]; then
        livefs_apt_get "${related[@]}" || exit 1
        return 0
    fi
    local codename mirror rc=0 list=/etc/apt/sources.list.d/livefs-backports.sources
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    mirror=$(livefs_mirror) || exit 1
    echo "livefs: ${related[*]}: installed from $codename-backports, adding it from $mirror for this install" >&2
    printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\nSigned-By: %s\n' \
        "$mirror" "$codename" /usr/share/keyrings/debian-archive-keyring.gpg >"$list"
    apt-get update -qq >/dev/null && livefs_apt_get -t "$codename-backports" "${related[@]}" || rc=1
    rm -f "$list"
    [ "$rc" = 0 ] || exit 1
}

livefs_need() {
    # usage: livefs_need COMMAND PACKAGE [COMMAND PACKAGE ...]
    local missing=() pairs=("$@")
    while [ $# -ge 2 ]; do
        command -v "$1" >/dev/null 2>&1 || [[ " ${missing[*]} " == *" $2 "* ]] || missing+=("$2")
        shift 2
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "livefs: installing ${missing[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "livefs: run as root to install ${missing[*]}" >&2
        exit 1
    fi
    livefs_apt_install "${missing[@]}"
    # Every command the scripts rely on, checked again: a package that did not
    # provide it (or that something removed) is named here, not 20 minutes later.
    set -- "${pairs[@]}"
    local absent=()
    while [ $# -ge 2 ]; do
        command -v "$1" >/dev/null 2>&1 || absent+=("$1 ($2)")
        shift 2
    done
    if [ ${#absent[@]} -ne 0 ]; then
        echo "livefs: still missing after installing: ${absent[*]}" >&2
        exit 1
    fi
}

# The Python tools the tests use, from PyPI, in a virtualenv cached beside the VM
# images (LIVEFS_VENV overrides where): ansible-core (the collection's tests) and
# check-jsonschema (a standard validator of the JSON outputs). Versions are
# pinned to a minor series; the venv is made again when one is missing.
LIVEFS_VENV=${LIVEFS_VENV:-/var/cache/livefs-test/venv}
LIVEFS_PIP_PACKAGES=('ansible-core>=2.17,<2.18' 'check-jsonschema>=0.29,<1')
livefs_python_tools() {
    local v=$LIVEFS_VENV/bin
    if ! { [ -x "$v/ansible-playbook" ] && [ -x "$v/ansible-test" ] && [ -x "$v/check-jsonschema" ]; }; then
        command -v python3 >/dev/null || { echo "livefs: python3 is missing (needed for the Python tools)" >&2; exit 1; }
        echo "livefs: installing ${LIVEFS_PIP_PACKAGES[*]} into $LIVEFS_VENV" >&2
        rm -rf "$LIVEFS_VENV"
        mkdir -p "$(dirname "$LIVEFS_VENV")"
        python3 -m venv "$LIVEFS_VENV" || { echo "livefs: python3 -m venv failed" >&2; exit 1; }
        "$v/pip" install -q --disable-pip-version-check "${LIVEFS_PIP_PACKAGES[@]}" ||
            { echo "livefs: pip install ${LIVEFS_PIP_PACKAGES[*]} failed" >&2; exit 1; }
    fi
    # ansible-test bootstraps pip in its sanity venvs from a host only it uses:
    # a stand-in (ensurepip, then PyPI) in its cache, for the pip it asks for.
    local pip_version
    pip_version=$("$v/python" - <<'PY'
import re, ansible_test, pathlib
text = (pathlib.Path(ansible_test.__file__).parent / "_internal/python_requirements.py").read_text()
print(re.search(r"pip='([0-9.]+)'", text).group(1))
PY
    ) || { echo "livefs: cannot tell which pip ansible-test bootstraps" >&2; exit 1; }
    mkdir -p ~/.ansible/test/cache
    cp scripts/ansible-test-get-pip.py ~/.ansible/test/cache/get_pip_${pip_version//./_}.py
    local absent=()
    for c in ansible-playbook ansible-test check-jsonschema; do
        [ -x "$v/$c" ] || absent+=("$c")
    done
    if [ ${#absent[@]} -ne 0 ]; then
        echo "livefs: still missing after installing: ${absent[*]} (in $LIVEFS_VENV)" >&2
        exit 1
    fi
}

# composefs-rs's tools, from crates.io, built once and cached beside the VM
# images (LIVEFS_COMPOSEFS_TOOLS overrides where): cfsctl (without its default
# features: OCI, containers-storage, FUSE are not needed to make repositories
# and images, mount them and compute kernel arguments) makes the composefs
# repositories and images the tests read, as bootc's native backend does;
# composefs-setup-root is the initramfs side of the VM test's composefs boot.
# They link libssl (its headers and pkg-config to build).
LIVEFS_COMPOSEFS_VERSION=0.9.4
LIVEFS_COMPOSEFS_TOOLS=${LIVEFS_COMPOSEFS_TOOLS:-/var/cache/livefs-test/composefs-$LIVEFS_COMPOSEFS_VERSION}
livefs_composefs_tools() {
    local bin=$LIVEFS_COMPOSEFS_TOOLS/bin crate
    for crate in composefs-ctl:cfsctl composefs-setup-root:composefs-setup-root; do
        [ -x "$bin/${crate#*:}" ] && continue
        livefs_need pkg-config pkg-config
        [ -e /usr/include/openssl/ssl.h ] || livefs_apt_install libssl-dev
        [ -e /usr/include/openssl/ssl.h ] || { echo "livefs: libssl-dev's headers are missing" >&2; exit 1; }
        echo "livefs: building ${crate%%:*} $LIVEFS_COMPOSEFS_VERSION from crates.io into $LIVEFS_COMPOSEFS_TOOLS (once)" >&2
        CARGO_TARGET_DIR=$LIVEFS_COMPOSEFS_TOOLS/target cargo install -q "${crate%%:*}" \
            --version "$LIVEFS_COMPOSEFS_VERSION" --locked --no-default-features --root "$LIVEFS_COMPOSEFS_TOOLS" ||
            { echo "livefs: cargo install ${crate%%:*} failed" >&2; exit 1; }
    done
    rm -rf "$LIVEFS_COMPOSEFS_TOOLS/target"
    for c in cfsctl composefs-setup-root; do
        [ -x "$bin/$c" ] || { echo "livefs: $c is missing after installing (in $bin)" >&2; exit 1; }
    done
    export LIVEFS_CFSCTL=$bin/cfsctl LIVEFS_COMPOSEFS_SETUP_ROOT=$bin/composefs-setup-root
}

# The build every script ships, tests and measures: on a glibc host, livefs is
# linked statically (static-pie). It then starts in 1.0 ms instead of 1.4 (no
# dynamic loading of libc and libgcc_s; a third of a `livefs diff`), and keeps
# running whatever an update does to the libc below /usr. The flag goes to the
# target only (`--target`, through CARGO_BUILD_TARGET): proc-macros are built for
# the host as before. Sets LIVEFS_RELEASE_DIR to where the binary is built.
livefs_static_build() {
    local host var
    host=$(rustc -vV | sed -n 's/^host: //p')
    LIVEFS_RELEASE_DIR=${CARGO_TARGET_DIR:-$PWD/target}/release
    case "$host" in
    *-linux-gnu*)
        export CARGO_BUILD_TARGET=$host
        var=CARGO_TARGET_$(echo "$host" | tr 'a-z.-' 'A-Z__')_RUSTFLAGS
        export "$var=${!var:-} -C target-feature=+crt-static"
        LIVEFS_RELEASE_DIR=${CARGO_TARGET_DIR:-$PWD/target}/$host/release
        ;;
    esac
}

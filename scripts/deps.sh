# Installs what livefs's demo, tests and benchmarks need, when it is missing.
# Sourced by the other scripts; needs root (apt-get) on a fresh Debian machine.
livefs_need() {
    # usage: livefs_need COMMAND PACKAGE [COMMAND PACKAGE ...]
    local missing=()
    while [ $# -ge 2 ]; do
        command -v "$1" >/dev/null 2>&1 || missing+=("$2")
        shift 2
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "livefs: installing ${missing[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "livefs: run as root to install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

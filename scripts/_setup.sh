#!/usr/bin/env bash
# shellcheck shell=bash
# Shared setup for scripts/run and scripts/test. Source it, then call:
#
#     mk_setup            # runtime dependencies:          pip install -e .
#     mk_setup test       # runtime + the test extra:      pip install -e '.[test]'
#
# It refuses to run unless root, installs the Debian/Ubuntu packages the daemon and
# its tests need (only those missing), makes sure "$MK_TOP/.venv" exists and works,
# builds the compiled pause into it (mk_build_pause),
# and (re)installs the project into it only when pyproject.toml changed since the
# last install of that extra. Quiet on success; on failure it prints what failed
# (with the tail of the command's log) and exits non-zero.
#
# Sets: MK_TOP (repo top, absolute), MK_VENV (= $MK_TOP/.venv).
# Environment:
#   MINIKUBELET_PYTHON   interpreter for a new .venv (must be >= 3.11). Otherwise the
#                        real path of python3.11, python3, python3.13, python3.12 on
#                        PATH (pyenv shims are resolved through sys.executable).
#                        Only used when .venv is created; `rm -rf .venv` to switch.

MK_TOP="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
MK_VENV="$MK_TOP/.venv"
MK_APT_PACKAGES=(python3 iproute2 busybox-static procps tmux openssl gcc libc6-dev docker-registry apache2-utils
                 zstd mmdebstrap)

mk_die() {
    echo "minikubelet setup: $*" >&2
    exit 1
}

# mk_quiet LOGNAME CMD...: run CMD with its output kept aside; show it only on failure.
mk_quiet() {
    local what="$1" log rc=0
    shift
    log="$(mktemp "${TMPDIR:-/tmp}/minikubelet-setup.XXXXXX")"
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "minikubelet setup: $what failed (exit $rc): $*" >&2
        tail -n 40 "$log" | sed 's/^/    /' >&2
        echo "minikubelet setup: full log: $log" >&2
        return "$rc"
    fi
    rm -f "$log"
}

mk_require_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "minikubelet needs root: run sudo scripts/$(basename "$0")" >&2
        exit 1
    fi
}

mk_pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'
}

MK_APT_UPDATED=
# mk_apt_install PKG...: apt-get install the given packages (apt-get update once first).
mk_apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        mk_die "missing packages ($*) and no apt-get here: install them by hand"
    echo "minikubelet setup: apt-get install $*" >&2
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$MK_APT_UPDATED" ]; then
        mk_quiet "apt-get update" apt-get update -q || exit 1
        MK_APT_UPDATED=1
    fi
    mk_quiet "installing $*" apt-get install -y -q --no-install-recommends "$@" || exit 1
}

mk_ensure_packages() {
    local pkg missing=()
    for pkg in "${MK_APT_PACKAGES[@]}"; do
        case "$pkg" in
            # Any working python3 (or an explicit interpreter) will do; the version is checked later.
            python3) { [ -n "${MINIKUBELET_PYTHON:-}" ] || command -v python3 >/dev/null 2>&1; } && continue ;;
            tmux | openssl) command -v "$pkg" >/dev/null 2>&1 && continue ;;
            # Any C compiler that can link statically builds the pause (mk_build_pause says if it cannot).
            gcc) command -v cc >/dev/null 2>&1 && continue ;;
        esac
        command -v dpkg-query >/dev/null 2>&1 && mk_pkg_installed "$pkg" && continue
        missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        mk_apt_install "${missing[@]}"
    fi
}

# mk_resolve_python CMD: print the absolute interpreter path behind CMD if it is Python >= 3.11.
mk_resolve_python() {
    "$1" -c 'import sys; assert sys.version_info >= (3, 11); print(sys.executable)' 2>/dev/null
}

mk_pick_python() {
    local cand exe
    if [ -n "${MINIKUBELET_PYTHON:-}" ]; then
        exe="$(mk_resolve_python "$MINIKUBELET_PYTHON")" ||
            mk_die "MINIKUBELET_PYTHON=$MINIKUBELET_PYTHON is not a working Python >= 3.11"
        echo "$exe"
        return
    fi
    for cand in python3.11 python3 python3.13 python3.12; do
        command -v "$cand" >/dev/null 2>&1 || continue
        if exe="$(mk_resolve_python "$cand")" && [ -n "$exe" ]; then
            echo "$exe"
            return
        fi
    done
    mk_die "no Python >= 3.11 found (tried python3.11, python3, python3.13, python3.12 on PATH);" \
        "install one or set MINIKUBELET_PYTHON=/path/to/python3.11"
}

mk_venv_ok() {
    [ -x "$MK_VENV/bin/python" ] &&
        "$MK_VENV/bin/python" -c 'import sys, pip; assert sys.version_info >= (3, 11)' >/dev/null 2>&1 &&
        # Console scripts carry absolute shebangs: a venv copied or moved from elsewhere is broken.
        head -n 1 "$MK_VENV/bin/pip" 2>/dev/null | grep -qF "#!$MK_VENV/bin/python"
}

mk_ensure_venv() {
    mk_venv_ok && return 0
    local py ver
    py="$(mk_pick_python)" || exit 1
    [ -e "$MK_VENV" ] && echo "minikubelet setup: recreating broken $MK_VENV" >&2
    rm -rf "$MK_VENV"
    if ! "$py" -m venv "$MK_VENV" >/dev/null 2>&1; then
        rm -rf "$MK_VENV"
        # Debian/Ubuntu ship venv/ensurepip for the system Python separately.
        case "$py" in
            /usr/bin/*)
                ver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
                if ! mk_pkg_installed "python$ver-venv"; then
                    # python3-venv for the distribution's default python3, else the versioned one.
                    if [ "$(readlink -f /usr/bin/python3)" = "$(readlink -f "$py")" ]; then
                        mk_apt_install python3-venv
                    else
                        mk_apt_install "python$ver-venv"
                    fi
                fi
                ;;
        esac
        mk_quiet "creating $MK_VENV with $py" "$py" -m venv "$MK_VENV" || { rm -rf "$MK_VENV"; exit 1; }
    fi
    mk_venv_ok || mk_die "$MK_VENV was created with $py but does not work (no pip?)"
}

# mk_build_pause: compile minikubelet/nsexec/pause.c into $MK_VENV/libexec/minikubelet/pause when it is missing or
# older than its source. Static when the C library allows it (no shared pages to fault in per pod), else dynamic.
# Without a compiler the daemon uses the Python pause (about 1.3 MB per pod instead of about 0.1 MB).
# The same build, with the same flags, is the wheel's (setup.py), so `pip install .` gets it too.
mk_build_pause() {
    local src="$MK_TOP/minikubelet/nsexec/pause.c" out="$MK_VENV/libexec/minikubelet/pause" cc
    [ -x "$out" ] && [ ! "$src" -nt "$out" ] && return 0
    cc="$(command -v cc || command -v gcc || true)"
    if [ -z "$cc" ]; then
        echo "minikubelet setup: no C compiler; pods use the Python pause (more memory per pod)" >&2
        return 0
    fi
    mkdir -p "$(dirname "$out")"
    if "$cc" -O2 -static -o "$out.tmp" "$src" 2>/dev/null || mk_quiet "building the pause" "$cc" -O2 -o "$out.tmp" "$src"
    then
        mv -f "$out.tmp" "$out"
    else
        rm -f "$out.tmp"
        echo "minikubelet setup: the pause did not build; pods use the Python pause (more memory per pod)" >&2
    fi
}

# mk_setup [EXTRA]: see the top of this file.
mk_setup() {
    local extra="${1:-}" spec="." sum stamp_dir want
    mk_require_root
    mk_ensure_packages
    mk_ensure_venv
    mk_build_pause
    [ -n "$extra" ] && spec=".[$extra]"
    sum="$(sha256sum "$MK_TOP/pyproject.toml" | cut -d' ' -f1)"
    stamp_dir="$MK_VENV/.minikubelet-stamps"
    want="$sum ${extra:-runtime}"
    # An install with any extra also satisfies the plain runtime install.
    if [ -z "$extra" ]; then
        grep -qs "^$sum " "$stamp_dir"/* && return 0
    else
        [ "$(cat "$stamp_dir/$extra" 2>/dev/null)" = "$want" ] && return 0
    fi
    echo "minikubelet setup: pip install -e '$spec' into $MK_VENV" >&2
    (cd "$MK_TOP" && mk_quiet "pip install -e '$spec'" "$MK_VENV/bin/python" -m pip install \
        --disable-pip-version-check -q -e "$spec") || exit 1
    mkdir -p "$stamp_dir"
    echo "$want" >"$stamp_dir/${extra:-runtime}"
}

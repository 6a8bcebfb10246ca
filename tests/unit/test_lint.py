"""The generated chip-level Verilog is Verilator ``-Wall`` clean (``make lint`` checks the defaults)."""

import os
import subprocess

import pytest

from cimdv.rtl import cli
from cimdv.tb.sim import VLT_FILE, tool_env, verilator_bin_dir

STUBS = os.path.join(os.path.dirname(VLT_FILE), "ice40_lint_stubs.v")


@pytest.mark.parametrize(
    ("top", "params", "extra"),
    [
        ("chip", {"cols": 2, "rows": 2, "core_rows": 16, "core_cols": 12, "watchdog": 5000, "tile_watchdog": 999}, []),
        ("fpga_top", {}, [STUBS]),
    ],
)
def test_verilator_lint_is_clean(top, params, extra, tmp_path):
    path = cli.generate(top, params, tmp_path / f"{top}.v")
    verilator = os.path.join(verilator_bin_dir(), "verilator")
    cmd = [verilator, "--lint-only", "--quiet", "-Wall", "--top-module", top, str(VLT_FILE), *extra, str(path)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), check=False)
    assert run.returncode == 0 and not run.stderr.strip(), run.stderr[-4000:]

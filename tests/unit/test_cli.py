"""cimdv-gen (cimdv.rtl.cli) with the stand-in counter: parameters, errors by name, deterministic output."""

import os
import subprocess
import sys

import pytest

from cimdv.rtl import cli
from cimdv.tb.selftest import make_counter

TOPS = {"counter": make_counter}


def test_core_is_registered_lazily():
    code = "import sys, cimdv.rtl.cli as c; print(type(c.TOPS['core']).__name__, 'cimdv.rtl.core.core' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["LazyTop", "False"]


def test_elaborate_params_fills_defaults():
    assert cli.elaborate_params("counter", {}, tops=TOPS) == {"width": 8}
    assert cli.elaborate_params("counter", {"width": 4}, tops=TOPS) == {"width": 4}


def test_bad_names_are_named():
    with pytest.raises(ValueError, match=r"unknown top 'nope'; valid tops: counter"):
        cli.elaborate_params("nope", {}, tops=TOPS)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) depth .*valid parameters: width"):
        cli.elaborate_params("counter", {"depth": 3}, tops=TOPS)


def test_main_writes_verilog(tmp_path, capsys):
    out = tmp_path / "counter.v"
    assert cli.main(["counter", "-o", str(out), "--param", "width=4"], tops=TOPS) == 0
    text = out.read_text()
    assert "module counter(" in text
    assert "output [3:0] count;" in text
    assert "cimdv-gen: wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["nope"], "invalid choice: 'nope' (choose from", id="top"),
        pytest.param(["counter", "--param", "depth=3"], "valid parameters: width", id="param-name"),
        pytest.param(["counter", "--param", "width"], "--param expects NAME=VALUE", id="param-syntax"),
    ],
)
def test_main_rejects_bad_names(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv, tops=TOPS)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_output_is_deterministic_and_relocatable(tmp_path):
    first = cli.generate("counter", {"width": 6}, tmp_path / "a.v", tops=TOPS).read_text()
    code = (
        "import sys; from cimdv.rtl import cli; from cimdv.tb.selftest import make_counter; "
        "cli.generate('counter', {'width': 6}, sys.argv[1], tops={'counter': make_counter})"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "b.v")], check=True, env=env)
    assert (tmp_path / "b.v").read_text() == first
    assert str(cli._REPO_ROOT) not in first, "absolute checkout paths in src attributes"
    assert 'src = "tb/selftest.py:' in first

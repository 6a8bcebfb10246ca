"""The simulation flow (cimdv.tb.sim) end to end on the stand-in counter of cimdv.tb.selftest.

Runs a real cocotb module by dotted name on both simulators, without PYTHONPATH, and checks what the
DV tests rely on: parameters reach the bench, ports are reachable through VPI without --public-flat-rw,
builds are reused, and a failure names its seed and a reproduce line.
"""

import json

import pytest

from cimdv.tb import sim as simflow
from cimdv.tb.selftest import make_counter

TOPS = {"counter": make_counter}
MODULE = "cimdv.tb.selftest"


def run_counter(sim, seed, params=None, **kwargs):
    return simflow.run("counter", params, sim, MODULE, seed=seed, tops=TOPS, **kwargs)


def test_selftest_passes(sim, seed):
    visible = "1" if sim == "icarus" else "0"  # Verilator: ports only, cocotb's --public-flat-rw removed
    result = run_counter(sim, seed, extra_env={"SELFTEST_INTERNALS_VISIBLE": visible})
    assert len(result.passed) == 6, result.passed
    assert result.seed == seed
    assert json.loads((result.build.build_dir / "params.json").read_text()) == {"width": 8}
    assert result.build.build_dir.parent == simflow.BUILD_ROOT / "sim" / sim
    assert result.build.build_dir.name == f"counter-{simflow.param_hash({'width': 8})}"
    copy = result.build.verilog.read_text()
    assert ("initial #0" in copy) == (sim == "icarus"), "Icarus copy must set the Yosys dummy at #0"


def test_params_reach_the_bench(sim, seed):
    result = run_counter(sim, seed, {"width": 12}, testcase="test_counts")
    assert result.passed == ("cimdv.tb.selftest.test_counts",)
    assert result.build.params == {"width": 12}


def test_failure_names_seed_and_reproduce_line(sim):
    with pytest.raises(AssertionError) as info:
        run_counter(sim, 1234, testcase="test_failure_path", extra_env={"SELFTEST_FAIL": "1"})
    message = str(info.value)
    assert "cimdv.tb.selftest.test_failure_path: deliberate failure" in message
    assert "seed: 1234" in message
    assert f"make test-one SIM={sim} TEST=" in message and "SEED=1234" in message


def test_unknown_testcase_is_an_error(sim, seed):
    with pytest.raises(AssertionError, match=r"no cocotb test ran|wrote no results"):
        run_counter(sim, seed, testcase="test_does_not_exist")


def test_verilator_debug_build_exposes_internals(seed):
    result = run_counter(
        "verilator",
        seed,
        debug=True,
        testcase="test_internal_visibility",
        extra_env={"SELFTEST_INTERNALS_VISIBLE": "1"},
    )
    assert result.build.public and result.build.build_dir.name.endswith("-debug")


def test_build_is_reused_across_calls(sim):
    first = simflow.build("counter", {"width": 8}, sim, tops=TOPS)
    simflow._BUILT.clear()  # as a fresh process (another xdist worker) would see it
    again = simflow.build("counter", {"width": 8}, sim, tops=TOPS)
    assert again.build_dir == first.build_dir
    assert again.build_s == 0.0


def test_sim_copy_sets_the_yosys_dummy_at_time_zero():
    dummy = "\\$auto$verilog_backend.cc:2355:dump_module$1 "
    text = f"module m;\n  reg {dummy} = 0;\n  always @* begin\n    if ({dummy}) begin end\n  end\nendmodule\n"
    icarus = simflow.sim_verilog_text(text, "icarus")
    assert f"  reg {dummy};\n  initial #0 {dummy} = 1'h0;\n" in icarus
    assert "always @* begin" in icarus and f"reg {dummy} = 0;" not in icarus
    assert simflow.sim_verilog_text(text, "verilator") == text


def test_top_ports():
    text = "module \\top.sub (a);\nendmodule\nmodule top(clk, rst, acts__payload,\n  acts__valid);\n"
    assert simflow.top_ports(text, "top") == ["clk", "rst", "acts__payload", "acts__valid"]


def test_verilator_version_is_checked():
    assert simflow.parse_verilator_version('#define VERILATOR_VERSION "5.049 2026-01-01"') == (5, 49)
    assert simflow.verilator_version() >= (5, 36)
    with pytest.raises(RuntimeError, match=r"5\.006 is too old.*>= 5\.036"):
        simflow.parse_verilator_version('#define VERILATOR_VERSION "5.006 2023-01-22"')


def test_tool_env(monkeypatch):
    monkeypatch.setenv("VERILATOR_ROOT", "/stale")
    env = simflow.tool_env()
    assert "VERILATOR_ROOT" not in env
    assert env["PATH"].split(":")[0] == str(simflow.verilator_bin_dir())


def test_params_from_env(monkeypatch):
    monkeypatch.delenv(simflow.PARAMS_ENV, raising=False)
    assert simflow.params_from_env({"rows": 8}) == {"rows": 8}
    with pytest.raises(KeyError, match="CIMDV_PARAMS"):
        simflow.params_from_env()
    monkeypatch.setenv(simflow.PARAMS_ENV, json.dumps({"rows": 32, "cols": 16}))
    assert simflow.params_from_env({"rows": 8, "lanes": 4}) == {"rows": 32, "cols": 16, "lanes": 4}

"""DV regression of the chip: every cocotb test of tb/chip/tests.py on both simulators.

The reduced chip is 2 x 2 tiles of 32 x 32 cores; the full-size one is 2 x 1 tiles of
256 x 256 cores (NeuRRAM's core) and runs the MVM tests. The seed comes from the ``seed``
fixture; a failure prints it with the command that reproduces it.
"""

import pytest

from cimdv.tb import sim as simflow
from cimdv.tb.chip.env import traces_on_each_simulator

MODULE = "cimdv.tb.chip.tests"

CHIPS = {
    "2x2_32": {
        "cols": 2,
        "rows": 2,
        "core_rows": 32,
        "core_cols": 32,
        "capacity": 512,
        "watchdog": 20_000,
        "tile_watchdog": 4_000,
    },
    "2x1_256": {
        "cols": 2,
        "rows": 1,
        "core_rows": 256,
        "core_cols": 256,
        "capacity": 1024,
        "watchdog": 200_000,
        "tile_watchdog": 50_000,
    },
}
#: The full-size chip runs the MVM tests (multicast, per-core, reduction).
FULL_TESTS = ("multicast_mvm_every_core", "per_core_inputs_model_parallel", "split_layer_reduction")

TESTS = simflow.cocotb_test_names(MODULE)


@pytest.mark.parametrize("testcase", TESTS)
def test_chip(sim, seed, testcase):
    result = simflow.run("chip", CHIPS["2x2_32"], sim, MODULE, testcase=testcase, seed=seed)
    assert result.passed == (f"{MODULE}.{testcase}",)


@pytest.mark.parametrize("testcase", FULL_TESTS)
def test_chip_full_size_cores(sim, seed, testcase):
    result = simflow.run("chip", CHIPS["2x1_256"], sim, MODULE, testcase=testcase, seed=seed)
    assert result.passed == (f"{MODULE}.{testcase}",)


def test_plan_lists_every_cocotb_test():
    """The AST scan finds the tests (guards against a silently empty parametrisation)."""
    assert len(TESTS) >= 12
    assert {"checker_catches_wrong_weight", "checker_catches_wrong_sum"} <= set(TESTS)
    assert set(FULL_TESTS) <= set(TESTS)


def test_simulators_agree(seed, tmp_path):
    """Same seed, same random host traffic: Icarus and Verilator give identical responses at
    identical times."""
    traces = traces_on_each_simulator(CHIPS["2x2_32"], MODULE, "random_host_traffic", seed, tmp_path)
    assert len(traces["icarus"]) > 20
    assert traces["icarus"] == traces["verilator"]

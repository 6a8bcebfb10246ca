"""DV regression of the chip's pyuvm environment: every test of tb/chip/uvm_tests.py on both simulators.

The chip is the reduced one of tests/dv/test_chip.py (2 x 2 tiles of 32 x 32 cores). The seed comes from
the ``seed`` fixture; a failure prints it with the command that reproduces it. The negative tests
(``expect_fail``) pass only when the scoreboard fails with the report they name.
"""

import importlib.util
from pathlib import Path

import pytest

from cimdv.tb import sim as simflow
from cimdv.tb.chip.env import traces_on_each_simulator


def _chips():
    """``CHIPS`` of tests/dv/test_chip.py (one definition of the chip configurations)."""
    spec = importlib.util.spec_from_file_location("cimdv_dv_test_chip", Path(__file__).with_name("test_chip.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CHIPS


CHIPS = _chips()
MODULE = "cimdv.tb.chip.uvm_tests"
TESTS = simflow.cocotb_test_names(MODULE)
NEGATIVE = ("UvmWeightFaultFails", "UvmPredictorFaultFails", "UvmBiasedMacroFails")


@pytest.mark.parametrize("testcase", TESTS)
def test_chip_uvm(sim, seed, testcase):
    result = simflow.run("chip", CHIPS["2x2_32"], sim, MODULE, testcase=testcase, seed=seed)
    assert result.passed == (f"{MODULE}.{testcase}",)


def test_uvm_tests_are_found():
    """The AST scan finds the pyuvm test classes (guards against a silently empty parametrisation), and no
    test name ends with another's (cocotb's runner selects tests by a name suffix)."""
    assert len(TESTS) >= 9
    assert set(NEGATIVE) <= set(TESTS)
    assert not [(a, b) for a in TESTS for b in TESTS if a != b and a.endswith(b)]


def test_uvm_simulators_agree(seed, tmp_path):
    """Same seed, noisy physical macros on every tile: Icarus and Verilator give identical responses at
    identical times (the sequences' draws, the macro agents' noise and the monitors' timing agree)."""
    traces = traces_on_each_simulator(CHIPS["2x2_32"], MODULE, "UvmNoisyLayerTest", seed, tmp_path)
    assert len(traces["icarus"]) > 10
    assert traces["icarus"] == traces["verilator"]

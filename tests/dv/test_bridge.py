"""DV regression of the host bridge facing a rogue tile: every cocotb test of tb/host/bridge_tests.py on both
simulators, on the ``bridge`` top at its default parameters (2 x 2 tiles of 32 x 32 cores, watchdog 2000)."""

import pytest

from cimdv.tb import sim as simflow
from cimdv.tb.host.bridge_tests import DEFAULTS

MODULE = "cimdv.tb.host.bridge_tests"
TESTS = simflow.cocotb_test_names(MODULE)


@pytest.mark.parametrize("testcase", TESTS)
def test_bridge(sim, seed, testcase):
    result = simflow.run("bridge", DEFAULTS, sim, MODULE, testcase=testcase, seed=seed)
    assert result.passed == (f"{MODULE}.{testcase}",)


def test_plan_lists_every_cocotb_test():
    """The AST scan finds the tests (guards against a silently empty parametrisation)."""
    assert len(TESTS) >= 6

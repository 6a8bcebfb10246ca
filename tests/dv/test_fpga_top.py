"""DV regression of ``fpga_top`` driven through its UART pins (tb/chip/fpga_tests.py), both simulators."""

import pytest

from cimdv.tb import sim as simflow
from cimdv.tb.chip.fpga_tests import DEFAULTS

MODULE = "cimdv.tb.chip.fpga_tests"
TESTS = simflow.cocotb_test_names(MODULE)


@pytest.mark.parametrize("testcase", TESTS)
def test_fpga_top(sim, seed, testcase):
    result = simflow.run("fpga_top", DEFAULTS, sim, MODULE, testcase=testcase, seed=seed)
    assert result.passed == (f"{MODULE}.{testcase}",)


def test_plan_lists_every_cocotb_test():
    assert len(TESTS) >= 2

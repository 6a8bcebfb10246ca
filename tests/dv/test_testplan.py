"""docs/testplan.md names only tests that exist, and every cocotb test of the environment is in it."""

import re
from pathlib import Path

from cimdv.tb.sim import cocotb_test_names

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "docs" / "testplan.md"
#: Every cocotb test module of the environment; each test must be in the plan.
MODULES = ("cimdv.tb.core.tests", "cimdv.tb.noc.tests", "cimdv.tb.chip.tests", "cimdv.tb.chip.fpga_tests")
TESTS = {name for module in MODULES for name in cocotb_test_names(module)}


def plan_rows():
    rows = []
    for line in PLAN.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("testpoint", "---"):
            rows.append((cells[0], re.findall(r"`([^`]+)`", cells[2])))
    return rows


def test_plan_has_testpoints():
    assert len(plan_rows()) >= 20


def test_every_named_test_exists():
    for testpoint, names in plan_rows():
        assert names, f"testpoint {testpoint} names no test"
        for name in names:
            if name.startswith("tests/"):
                path, _, func = name.partition("::")
                assert (ROOT / path).exists(), f"{testpoint}: {path} does not exist"
                if func:
                    assert f"def {func}(" in (ROOT / path).read_text(), f"{testpoint}: {name} does not exist"
            else:
                assert name in TESTS, f"{testpoint}: cocotb test {name} does not exist in {', '.join(MODULES)}"


def test_every_cocotb_test_is_planned():
    planned = {name for _, names in plan_rows() for name in names}
    missing = sorted(set(TESTS) - planned)
    assert not missing, f"cocotb tests missing from docs/testplan.md: {missing}"

"""docs/testplan.toml names only tests and covergroups that exist, and every test of the environment is in it."""

import ast
from pathlib import Path

import pytest

from cimdv.tb.coverage.functional import covergroup_names
from cimdv.tb.sim import cocotb_test_names
from cimdv.tb.testplan import BLOCKS, load_testplan, parse_testplan

ROOT = Path(__file__).resolve().parents[2]
PLAN = load_testplan()
COCOTB = {module: cocotb_test_names(module) for module in PLAN.modules}


def pytest_functions(path: Path) -> list[tuple[str, list[str]]]:
    """``(name, argument names)`` of every top-level ``test_*`` function of a pytest file."""
    tree = ast.parse(path.read_text())
    return [
        (node.name, [a.arg for a in node.args.args])
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    ]


def test_plan_covers_every_block():
    assert len(PLAN.testpoints) >= 60
    assert {p.block for p in PLAN.testpoints} == set(BLOCKS)


def test_every_named_test_exists():
    cocotb = {name for names in COCOTB.values() for name in names}
    for point in PLAN.testpoints:
        for ref in point.tests:
            if ref.startswith("tests/"):
                path, _, func = ref.partition("::")
                assert (ROOT / path).is_file(), f"{point.name}: {path} does not exist"
                if func:
                    names = [name for name, _ in pytest_functions(ROOT / path)]
                    assert func in names, f"{point.name}: {ref} does not exist"
            else:
                assert ref in cocotb, f"{point.name}: cocotb test {ref} is in none of {sorted(COCOTB)}"


def test_every_cocotb_test_is_planned():
    planned = set(PLAN.test_refs())
    missing = sorted(name for names in COCOTB.values() for name in names if name not in planned)
    assert not missing, f"cocotb tests missing from docs/testplan.toml: {missing}"


def test_every_pytest_test_is_planned():
    """A pytest function is planned by its file, by ``file::function``, or (a DV harness function taking
    ``testcase``) through the cocotb tests it runs, which the previous test checks one by one."""
    refs = set(PLAN.test_refs())
    harnesses = set(PLAN.modules.values())
    missing = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in refs:
            continue
        for name, args in pytest_functions(path):
            if f"{rel}::{name}" in refs or (rel in harnesses and "testcase" in args):
                continue
            missing.append(f"{rel}::{name}")
    assert not missing, f"pytest tests missing from docs/testplan.toml: {missing}"


def test_every_covergroup_is_planned_and_exists():
    implemented = set(covergroup_names())
    declared = set(PLAN.covergroup_names())
    assert declared, "the plan declares no covergroup"
    assert declared <= implemented, f"covergroups in the plan but not implemented: {sorted(declared - implemented)}"
    assert implemented <= declared, f"covergroups implemented but not in the plan: {sorted(implemented - declared)}"
    used = {g for p in PLAN.testpoints for g in p.covergroups}
    assert used == declared, f"covergroups no testpoint measures itself with: {sorted(declared - used)}"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["testpoint"][0].pop("tests"), "has no 'tests'"),
        (lambda d: d["testpoint"][0].update(block="gpu"), "block 'gpu'"),
        (lambda d: d["testpoint"][0].update(stage="V9"), "stage 'V9'"),
        (lambda d: d["testpoint"][0].update(tests=[]), "names no test"),
        (lambda d: d["testpoint"][0].update(covergroups=["nope_cg"]), "undeclared covergroup"),
        (lambda d: d["testpoint"].append(dict(d["testpoint"][0])), "duplicate testpoint"),
        (lambda d: d["testpoint"][0].update(owner="me"), "unknown field"),
    ],
)
def test_malformed_plan_is_refused(mutate, message):
    """Negative tests of the loader: each defect is named."""
    data = {
        "modules": {},
        "testpoint": [{"name": "a", "block": "core", "stage": "V1", "desc": "d", "tests": ["x"], "covergroups": []}],
        "covergroup": [],
    }
    mutate(data)
    with pytest.raises(ValueError, match=message):
        parse_testplan(data)


def test_cases_of_matches_junit_names():
    cases = [
        ("tests.dv.test_core", "test_core[icarus-zero_input-16x12]"),
        ("tests.dv.test_core", "test_core[verilator-zero_input_twice-16x12]"),
        ("tests.unit.test_cli", "test_core_is_registered_lazily"),
        ("tests.unit.test_cli", "test_other[1]"),
    ]
    harness = {"zero_input": "tests/dv/test_core.py"}
    assert PLAN.cases_of("zero_input", cases, harness) == [cases[0]]
    assert PLAN.cases_of("tests/unit/test_cli.py", cases, harness) == cases[2:]
    assert PLAN.cases_of("tests/unit/test_cli.py::test_other", cases, harness) == [cases[3]]

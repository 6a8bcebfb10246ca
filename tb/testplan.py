"""The testplan as data: ``docs/testplan.toml`` loaded, validated and matched against test results.

A :class:`Testplan` holds testpoints (one feature each: block, stage, description, the tests that cover it,
the covergroups that measure it), covergroups, and the map from cocotb test modules to the pytest file
that runs their tests on both simulators. :func:`load_testplan` refuses a malformed plan with a
``ValueError`` naming the entry and the field. :meth:`Testplan.cases_of` finds the JUnit test cases a
test reference stands for, which is how the regression report gives each testpoint its pass rate.

Test references
---------------
``name``
    a cocotb test (``@cocotb.test`` in one of the plan's modules); its JUnit cases are the items of the
    module's pytest harness whose parameters include ``name`` (``test_core[icarus-zero_input-16x12]``).
``tests/<path>.py``
    every test in that pytest file.
``tests/<path>.py::<function>``
    every case of one pytest function (all its parameter sets).
"""

import dataclasses
import tomllib
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "BLOCKS", "PLAN_PATH", "STAGES", "Covergroup", "Testplan", "Testpoint",
    "load_testplan", "markdown", "parse_testplan",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
PLAN_PATH = REPO_ROOT / "docs" / "testplan.toml"
BLOCKS = ("core", "programming", "noc", "chip", "host", "fpga", "model", "flow")
STAGES = ("V1", "V2", "V3")


@dataclasses.dataclass(frozen=True)
class Testpoint:
    """One feature of the design and how it is verified."""

    name: str
    block: str
    stage: str
    desc: str
    tests: tuple[str, ...]
    covergroups: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Covergroup:
    """One functional covergroup the plan names."""

    name: str
    block: str
    desc: str


def _split_ref(ref: str) -> tuple[str, str | None]:
    """``("tests/x.py", "func" or None)`` for a pytest reference."""
    path, _, func = ref.partition("::")
    return path, func or None


def _params(case_name: str) -> list[str]:
    """``["icarus", "zero_input", "16x12"]`` for ``test_core[icarus-zero_input-16x12]``."""
    _, bracket, rest = case_name.partition("[")
    return rest.rstrip("]").split("-") if bracket else []


@dataclasses.dataclass(frozen=True)
class Testplan:
    """The loaded plan: testpoints, covergroups and the cocotb module -> pytest harness map."""

    testpoints: tuple[Testpoint, ...]
    covergroups: tuple[Covergroup, ...]
    modules: dict[str, str]  # cocotb test module (dotted) -> pytest harness file (tests/...py)

    def testpoint(self, name: str) -> Testpoint:
        for point in self.testpoints:
            if point.name == name:
                return point
        raise KeyError(f"no testpoint {name!r} in the plan")

    def test_refs(self) -> list[str]:
        """Every test reference of the plan, once, in plan order."""
        return list(dict.fromkeys(ref for point in self.testpoints for ref in point.tests))

    def covergroup_names(self) -> list[str]:
        return [group.name for group in self.covergroups]

    def harness_of(self, cocotb_tests: dict[str, Iterable[str]]) -> dict[str, str]:
        """Harness file of every cocotb test, given ``{module: test names}``."""
        return {name: self.modules[module] for module, names in cocotb_tests.items() for name in names}

    def cases_of(self, ref: str, cases: Iterable[tuple[str, str]], harness: dict[str, str]) -> list[tuple[str, str]]:
        """The JUnit ``(classname, name)`` cases that ``ref`` stands for.

        ``harness`` maps each cocotb test name to its pytest harness file (:meth:`harness_of`).
        """
        if ref.startswith("tests/"):
            path, func = _split_ref(ref)
            classname = path.removesuffix(".py").replace("/", ".")
            return [
                (cls, name)
                for cls, name in cases
                if cls == classname and (func is None or name == func or name.startswith(f"{func}["))
            ]
        harness_file = harness.get(ref)
        if harness_file is None:
            return []
        classname = harness_file.removesuffix(".py").replace("/", ".")
        return [(cls, name) for cls, name in cases if cls == classname and ref in _params(name)]


def _require(entry: dict, kind: str, index: int, fields: dict[str, type]) -> None:
    label = f"{kind} #{index + 1} ({entry.get('name', 'unnamed')!r})"
    for field, kind_type in fields.items():
        if field not in entry:
            raise ValueError(f"testplan: {label} has no {field!r}")
        if not isinstance(entry[field], kind_type):
            raise ValueError(f"testplan: {label} field {field!r} must be {kind_type.__name__}")
    extra = set(entry) - set(fields)
    if extra:
        raise ValueError(f"testplan: {label} has unknown field(s) {sorted(extra)}; valid: {sorted(fields)}")


def parse_testplan(data: dict) -> Testplan:
    """A :class:`Testplan` from the parsed TOML document; ``ValueError`` names the first problem."""
    points, groups = [], []
    for i, entry in enumerate(data.get("testpoint", [])):
        _require(entry, "testpoint", i, {"name": str, "block": str, "stage": str, "desc": str, "tests": list,
                                         "covergroups": list})
        if entry["block"] not in BLOCKS:
            raise ValueError(f"testplan: testpoint {entry['name']!r} block {entry['block']!r}; valid: {BLOCKS}")
        if entry["stage"] not in STAGES:
            raise ValueError(f"testplan: testpoint {entry['name']!r} stage {entry['stage']!r}; valid: {STAGES}")
        if not entry["tests"]:
            raise ValueError(f"testplan: testpoint {entry['name']!r} names no test")
        points.append(
            Testpoint(
                entry["name"], entry["block"], entry["stage"], entry["desc"],
                tuple(entry["tests"]), tuple(entry["covergroups"]),
            )
        )
    for i, entry in enumerate(data.get("covergroup", [])):
        _require(entry, "covergroup", i, {"name": str, "block": str, "desc": str})
        if entry["block"] not in BLOCKS:
            raise ValueError(f"testplan: covergroup {entry['name']!r} block {entry['block']!r}; valid: {BLOCKS}")
        groups.append(Covergroup(entry["name"], entry["block"], entry["desc"]))
    for kind, names in (("testpoint", [p.name for p in points]), ("covergroup", [g.name for g in groups])):
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"testplan: duplicate {kind} name(s) {dupes}")
    known = {g.name for g in groups}
    for point in points:
        unknown = [g for g in point.covergroups if g not in known]
        if unknown:
            raise ValueError(f"testplan: testpoint {point.name!r} names undeclared covergroup(s) {unknown}")
    modules = data.get("modules", {})
    if not isinstance(modules, dict) or not all(isinstance(v, str) for v in modules.values()):
        raise ValueError("testplan: [modules] must map cocotb module names to pytest harness files")
    return Testplan(tuple(points), tuple(groups), dict(modules))


def load_testplan(path: Path = PLAN_PATH) -> Testplan:
    """Load and validate ``docs/testplan.toml`` (or ``path``)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"testplan: {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"testplan: {path} is not valid TOML: {exc}") from None
    return parse_testplan(data)


def markdown(plan: Testplan) -> str:
    """The plan as Markdown tables, one per stage (``python -m cimdv.tb.testplan``)."""
    lines = []
    for stage in STAGES:
        points = [p for p in plan.testpoints if p.stage == stage]
        if not points:
            continue
        lines += [f"## {stage}", "", "| testpoint | block | description | tests | covergroups |"]
        lines.append("|---|---|---|---|---|")
        for p in points:
            tests = ", ".join(f"`{t}`" for t in p.tests)
            groups = ", ".join(f"`{g}`" for g in p.covergroups)
            lines.append(f"| {p.name} | {p.block} | {p.desc.replace('|', '/')} | {tests} | {groups} |")
        lines.append("")
    if plan.covergroups:
        lines += ["## Covergroups", "", "| covergroup | block | description |", "|---|---|---|"]
        lines += [f"| `{g.name}` | {g.block} | {g.desc.replace('|', '/')} |" for g in plan.covergroups]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(load_testplan()), end="")

"""The regression flow: JUnit summary and merge, failure buckets, gates, shards and the HTML report."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cimdv.tb.flows import regression
from cimdv.tb.flows.report import plan_rows, write_report
from cimdv.tb.testplan import parse_testplan

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="tests.dv.test_core" name="test_core[icarus-zero_input-16x12]" time="2.5">
  <properties><property name="seed" value="11"/></properties></testcase>
<testcase classname="tests.dv.test_core" name="test_core[verilator-zero_input-16x12]" time="1.5">
  <properties><property name="seed" value="12"/></properties>
  <failure message="count differs at neuron 3: RTL 17, model 18">trace</failure></testcase>
<testcase classname="tests.dv.test_core" name="test_core[verilator-abort_run-16x12]" time="1.0">
  <properties><property name="seed" value="13"/></properties>
  <failure message="count differs at neuron 9: RTL 1, model 2">trace</failure></testcase>
<testcase classname="tests.unit.test_cli" name="test_help" time="0.1"/>
<testcase classname="tests.unit.test_cli" name="test_skip" time="0.0"><skipped message="no"/></testcase>
</testsuite></testsuites>
"""


@pytest.fixture
def junit(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    return path


def test_summary_counts_seeds_and_reproduce_lines(junit):
    summary = regression.summarize(junit)
    assert (summary["passed"], summary["failed"], summary["skipped"]) == (2, 2, 1)
    assert summary["by_simulator"]["verilator"] == {"passed": 0, "failed": 2, "skipped": 0}
    assert summary["seeds"]["tests/dv/test_core.py::test_core[icarus-zero_input-16x12]"] == 11
    first = summary["failures"][0]
    assert first["seed"] == 12 and first["simulator"] == "verilator"
    node = "tests/dv/test_core.py::test_core[verilator-zero_input-16x12]"
    assert first["reproduce"] == f"make test-one TEST='{node}' SEED=12"


def test_failures_with_the_same_message_shape_share_a_bucket(junit):
    buckets = regression.bucket_failures(regression.summarize(junit)["failures"])
    assert len(buckets) == 1 and buckets[0]["count"] == 2
    assert buckets[0]["signature"] == "count differs at neuron N: RTL N, model N"
    other = {"message": "TIMEOUT after 4000 cycles", "test": "t", "seed": 1}
    assert len(regression.bucket_failures([*buckets[0]["failures"], other])) == 2


def test_merge_junit_keeps_every_case_once(junit, tmp_path):
    out = tmp_path / "merged.xml"
    regression.merge_junit([junit, junit], out)
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite.get("tests") == "10" and suite.get("failures") == "4" and suite.get("skipped") == "2"
    with pytest.raises(ValueError, match="no JUnit files"):
        regression.merge_junit([], out)


def _summary(**coverage):
    return {"passed": 5, "failed": 0, **coverage}


def test_gates_pass_only_at_their_thresholds():
    good = _summary(functional_coverage_pct=100.0, line_coverage_pct=90.0, fsm_coverage_pct=100.0)
    assert all(g["passed"] for g in regression.evaluate_gates(good, enforced=True).values())
    # negative tests: one missing functional bin, line below 90 %, one unvisited state, a failure, nothing run
    for change, gate in (
        ({"functional_coverage_pct": 99.9}, "functional"),
        ({"line_coverage_pct": 89.99}, "line"),
        ({"fsm_coverage_pct": 97.0}, "fsm"),
        ({"failed": 1}, "tests"),
        ({"passed": 0}, "tests"),
    ):
        assert not regression.evaluate_gates({**good, **change}, enforced=True)[gate]["passed"], change
    unmeasured = regression.evaluate_gates(_summary(), enforced=False)
    assert not unmeasured["line"]["passed"] and not unmeasured["line"]["enforced"]


PLAN = {
    "modules": {"cimdv.tb.core.tests": "tests/dv/test_core.py"},
    "testpoint": [
        {"name": "zeros", "block": "core", "stage": "V1", "desc": "d", "tests": ["zero_input"], "covergroups": []},
        {"name": "cli", "block": "flow", "stage": "V2", "desc": "d", "tests": ["tests/unit/test_cli.py"],
         "covergroups": []},
    ],
    "covergroup": [],
}


def test_plan_rows_give_each_testpoint_its_pass_rate(junit):
    rows = plan_rows(parse_testplan(PLAN), junit)
    v1, v2, _ = rows["stages"]
    assert (v1["passed"], v1["total"]) == (1, 2) and v1["rate"] == 50.0
    assert v1["points"][0]["tests"][0]["max_s"] == 2.5
    assert (v2["passed"], v2["total"]) == (1, 1)  # the skipped case does not count
    assert rows["unplanned"] == ["tests.dv.test_core::test_core[verilator-abort_run-16x12]"]


def test_report_renders_failures_gates_and_plan(junit, tmp_path):
    summary = regression.summarize(junit)
    summary.update(
        git="abc", branch="main", finished="now", sim="both", seed=None, shards=1, wall_s=1.0, coverage_wall_s=0.5,
        full_regression=True, junit=str(junit), functional=None, code=None, closure=None,
        functional_coverage_pct=None, line_coverage_pct=None, toggle_coverage_pct=None, fsm_coverage_pct=None,
    )
    summary["gates"] = regression.evaluate_gates(summary, enforced=True)
    summary["failure_buckets"] = regression.bucket_failures(summary["failures"])
    html = write_report(summary, tmp_path / "index.html", plan=parse_testplan(PLAN)).read_text()
    assert "count differs at neuron N: RTL N, model N" in html
    assert "SEED=12" in html and "FAIL" in html and "zeros" in html
    assert "&lt;" not in summary["failures"][0]["message"]  # autoescaped in the page, raw in the JSON


def _run(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "cimdv.tb.flows.regression", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_shards_split_the_tests_and_merge_back(tmp_path):
    """Two shards of one small test file run disjoint halves; the merge has every test exactly once."""
    root = Path(regression.__file__).resolve().parents[2]
    select = ["--sim", "icarus", "--no-closure", "--out", str(tmp_path), "-n", "0", "--", "tests/unit/test_cli.py"]
    for shard in ("1", "2"):
        done = _run("run", "--shards", "2", "--shard", shard, *select, cwd=root)
        assert done.returncode == 0, done.stdout + done.stderr
    halves = [regression.summarize(tmp_path / "shards" / f"{i}-of-2" / "junit.xml") for i in (1, 2)]
    assert all(h["passed"] > 0 for h in halves)
    merged = _run("merge", "--out", str(tmp_path), cwd=root)
    assert merged.returncode == 0, merged.stdout + merged.stderr  # partial run: coverage gates not enforced
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["passed"] == halves[0]["passed"] + halves[1]["passed"]
    assert summary["shards"] == 2 and not summary["full_regression"]
    names = [c.get("name") for c in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")]
    assert len(names) == len(set(names))
    assert (tmp_path / "index.html").exists()
    # a missing shard is named, not merged silently
    missing = _run("merge", "--out", str(tmp_path), "--shards", "3", cwd=root)
    assert missing.returncode == 2 and "shards [1, 2, 3] of 3 are missing" in missing.stderr


def test_bad_shard_arguments_are_refused(tmp_path):
    done = _run("run", "--shards", "2", "--shard", "3", "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and "--shard must be in 1..2" in done.stderr

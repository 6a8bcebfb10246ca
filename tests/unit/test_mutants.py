"""The mutation check (``cimdv-mutants``, ``make mutants``; docs/mutation.md).

Fast: parsing of Yosys' ``mutate -list`` output, of ``sat`` counterexamples and of ``equiv_status``, the
report's arithmetic, argument errors. End to end (Yosys + Icarus, ~20 s): the flow on the stand-in counter of
:mod:`cimdv.tb.selftest` with its ``test_counts`` as the smoke suite, restricted to the 12 mutations of the
constant B inputs of ``count + 1`` and ``count == 7``, which gives kills, survivors proven equivalent and
observable survivors (``wrap`` at another count than 7, which ``test_counts`` never looks at: a testbench
gap); a failing sanity run stops the flow; the watchdog turns a run that takes too long into a ``timeout``.
"""

import json
import shutil

import pytest

from cimdv.tb.flows import mutants

LIST = """\
mutate -mode cnot1 -module core.regs -cell $procdff$8043 -port Q -portbit 26 -ctrlbit 27 -wire prog_reset \
-wirebit 26 -src rtl/common/csr.py:142
mutate -mode const0 -module core -cell $procmux$5418 -port A -portbit 0 -src core.v:2614.9-2614.21 \
-src core.v:2614.5-2622.8
mutate -mode const0 -module counter -cell $procdff$17 -port CLK -portbit 0 -wire clk -wirebit 0 \
-src site-packages/amaranth/hdl/_ir.py:283 -src tb/selftest.py:46
"""

SAT_TABLE = r"""
  Time Signal Name              Dec       Hex           Bin
  ---- ---------------- ----------- --------- -------------
  init \gate.count                0         0           000
  ---- ---------------- ----------- --------- -------------
     1 \gate_count                0         0           000
     1 \gate_wrap                 0         0             0
     1 \gold_count                0         0           000
     1 \gold_wrap                 0         0             0
     1 \trigger                   0         0             0
  ---- ---------------- ----------- --------- -------------
     2 \gate_count                7         7           111
     2 \gate_wrap                 0         0             0
     2 \gold_count                7         7           111
     2 \gold_wrap                 1         1             1
     2 \trigger                   1         1             1
"""


def test_parse_mutations():
    ms = mutants.parse_mutations(LIST)
    assert [m.id for m in ms] == [1, 2, 3]
    first = ms[0]
    assert (first.mode, first.module, first.cell, first.port, first.portbit, first.ctrlbit) == (
        "cnot1",
        "core.regs",
        "$procdff$8043",
        "Q",
        26,
        27,
    )
    assert (first.wire, first.wirebit, first.src) == ("prog_reset", 26, ("rtl/common/csr.py:142",))
    assert first.command.startswith("mutate -mode cnot1 ") and first.command.endswith("csr.py:142")
    assert ms[1].wire is None and ms[1].ctrlbit is None
    # The location names the HDL line (not Amaranth's own source, not the Verilog) when there is one.
    assert first.location()["src"] == "rtl/common/csr.py:142"
    assert ms[1].location() | {"src_all": None} == {
        "module": "core",
        "cell": "$procmux$5418",
        "port": "A[0]",
        "wire": None,
        "src": "core.v:2614.9-2614.21",
        "src_all": None,
    }
    assert ms[2].location()["src"] == "tb/selftest.py:46"
    assert mutants.parse_mutations("\n# comment\n") == []


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("write_verilog x.v", "line 1 is not"),
        ("mutate -mode inv -module", "line 1 is not"),
        ("mutate -mode inv -module m -cell c -port A -portbit 0 -bogus 1", "unknown option '-bogus'"),
        ("mutate -mode inv -module m -cell c -port A -portbit 0 -cell d", "-cell given twice"),
        ("mutate -mode inv -module m -cell c -portbit 0", "missing -port"),
        ("mutate -mode flip -module m -cell c -port A -portbit 0", "unknown mode 'flip'"),
        ("mutate -mode cnot0 -module m -cell c -port A -portbit 0", "needs -ctrlbit"),
    ],
)
def test_parse_mutations_rejects(text, match):
    with pytest.raises(ValueError, match=f"^text: .*{match}"):
        mutants.parse_mutations(text)


def test_parse_sat_counterexample():
    assert mutants.parse_sat_counterexample(SAT_TABLE) == (2, ["wrap"])
    assert mutants.parse_sat_counterexample(SAT_TABLE.split("     2 ")[0]) is None
    assert mutants.parse_sat_counterexample("no table") is None


def test_parse_unproven():
    log = (
        "Found 2 unproven $equiv cells in 'equiv_status':\n"
        "  Unproven $equiv $auto$equiv_make.cc:274:find_same_wires$17752: \\out_mask0_gold [25] \\out_mask0_gate [25]\n"
        "  Unproven $equiv $auto$equiv_make.cc:274:find_same_wires$14504: \\$164_gold \\$164_gate\n"
    )
    assert mutants.parse_unproven(log) == ["$164", "out_mask0[25]"]
    assert mutants.parse_unproven("Equivalence successfully proven!") == []


def _result(status, killed_by=None):
    return {"status": status, "killed_by": killed_by, "failed": [killed_by] if killed_by else [], "wall_s": 1.0}


def test_make_report():
    ms = mutants.parse_mutations(LIST * 2)  # six mutations
    results = {
        1: _result("failed", "zero_input"),
        2: _result("timeout", "timeout"),
        3: _result("passed"),
        4: _result("passed"),
        5: _result("failed", "abort_run"),
        6: _result("error"),
    }
    classes = {
        3: {"verdict": "equivalent", "reason": "equivalent: proven"},
        4: {"verdict": "observable", "reason": "observable difference at output busy"},
    }
    report = mutants.make_report(ms, results, classes, goal=0.5, seed=7)
    assert (report["mutants"], report["killed"], report["survived"], report["errors"]) == (6, 3, 2, 1)
    assert report["kill_rate"] == 0.5 and report["goal_met"]
    assert report["relevant"] == 5 and report["kill_rate_relevant"] == 0.6
    assert report["seed"] == 7 and report["survivor_verdicts"] == {"equivalent": 1, "observable": 1, "error": 1}
    assert [s["id"] for s in report["survivors"]] == [3, 4, 6]
    assert report["survivors"][1]["reason"] == "observable difference at output busy"
    assert report["survivors"][2]["reason"].startswith("flow error, not a verdict")
    modules = {s["id"]: s["location"]["module"] for s in report["survivors"]}
    assert modules == {3: "counter", 4: "core.regs", 6: "counter"}
    by_id = {r["id"]: r for r in report["results"]}
    assert by_id[1]["killed_by"] == "zero_input" and by_id[2]["killed_by"] == "timeout"
    assert by_id[3]["outcome"] == "survived" and by_id[3]["killed_by"] is None
    assert not mutants.make_report(ms, results, classes, goal=0.9)["goal_met"]
    # The goal applies to the relevant kill rate (0.6) by default, or to all mutants (0.5).
    assert report["goal_applies_to"] == "kill_rate_relevant"
    assert mutants.make_report(ms, results, classes, goal=0.55)["goal_met"]
    on_all = mutants.make_report(ms, results, classes, goal=0.55, goal_on="all")
    assert on_all["goal_applies_to"] == "kill_rate" and not on_all["goal_met"]
    json.dumps(report)  # JSON-safe


def test_make_report_rejects_bad_input():
    ms = mutants.parse_mutations(LIST)
    with pytest.raises(ValueError, match=r"^goal: "):
        mutants.make_report(ms, {}, {}, goal=1.5)
    with pytest.raises(ValueError, match=r"^goal_on: "):
        mutants.make_report(ms, {}, {}, goal=0.9, goal_on="some")
    with pytest.raises(ValueError, match=r"^results: no smoke result for mutant\(s\) \[2, 3\]"):
        mutants.make_report(ms, {1: _result("passed")}, {}, goal=0.9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"count": 0}, "^count: "),
        ({"jobs": 0}, "^jobs: "),
        ({"tests": ()}, "^tests: "),
        ({"tests": ("zero_input", "no_such_test")}, "^tests: not cocotb tests of cimdv.tb.core.tests: no_such_test"),
        ({"timeout": 0}, "^timeout: "),
        ({"goal": -0.1}, "^goal: "),
        ({"sim": "xcelium"}, "^sim: "),
    ],
)
def test_run_flow_rejects_bad_arguments(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        mutants.run_flow(out=tmp_path, **kwargs)


def test_prepare_rejects_odd_options(tmp_path):
    with pytest.raises(ValueError, match=r"^options: "):
        mutants.prepare(tmp_path / "x.v", "core", tmp_path, count=1, seed=1, options=["-mode", "inv; rm"])


def test_cli_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        mutants.main(["--count", "0"])
    assert exc.value.code == 2
    assert "count: 0 mutants" in capsys.readouterr().err


# --- end to end ----------------------------------------------------------------------------------

needs_tools = pytest.mark.skipif(
    shutil.which("yosys") is None or shutil.which("iverilog") is None,
    reason="needs yosys (bash sim/require-tools.sh fpga) and Icarus (bash sim/require-tools.sh)",
)
COUNTER = {
    "top": "counter",
    "factory": "cimdv.tb.selftest:make_counter",
    "params": {"width": 3},
    "module": "cimdv.tb.selftest",
    "tests": ("test_counts",),
}


@needs_tools
def test_flow_kills_and_classifies_survivors(tmp_path):
    """The 12 mutations of the counter's constant B inputs (``count + 1``, ``count == 7``): kills, equivalents
    and testbench gaps, each recognised."""
    report = mutants.run_flow(
        **COUNTER,
        count=12,
        seed=1,
        goal=0.9,
        bmc_steps=12,
        mutate_options=("-port", "B", "t:$add", "t:$eq"),
        out=tmp_path,
        echo=lambda _: None,
    )
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert report["sanity"]["status"] == "passed"

    def key(entry):
        m = mutants.parse_mutations(entry["mutation"])[0]
        return m.mode, m.cell.split("$")[1], m.portbit

    outcome = {key(r): r["killed_by"] or r["verdict"] for r in report["results"]}
    assert outcome == {
        # count + 1 with B stuck at 0 or inverted: the count never moves.
        ("inv", "add", 0): "test_counts",
        ("const0", "add", 0): "test_counts",
        # wrap at count 5 instead of 7: test_counts sees wrap at 5.
        ("inv", "eq", 1): "test_counts",
        ("const0", "eq", 1): "test_counts",
        # wrap at 6 or 3, counts test_counts never checks it at: real differences the suite misses.
        ("inv", "eq", 0): "observable",
        ("const0", "eq", 0): "observable",
        ("inv", "eq", 2): "observable",
        ("const0", "eq", 2): "observable",
        # a constant 1 bit forced to 1: nothing changes.
        ("const1", "add", 0): "equivalent",
        ("const1", "eq", 0): "equivalent",
        ("const1", "eq", 1): "equivalent",
        ("const1", "eq", 2): "equivalent",
    }
    assert (report["mutants"], report["killed"], report["survived"], report["relevant"]) == (12, 4, 8, 8)
    assert report["kill_rate"] == round(4 / 12, 4) and report["kill_rate_relevant"] == 0.5 and not report["goal_met"]
    gaps = [s for s in report["survivors"] if s["verdict"] == "observable"]
    assert all(s["formal"]["outputs"] == ["wrap"] and "testbench gap" in s["reason"] for s in gaps)
    proven = [s for s in report["survivors"] if s["verdict"] == "equivalent"]
    assert all(s["reason"].startswith("equivalent (proven by induction") for s in proven)
    assert all(s["location"]["module"] == "counter" and s["location"]["src"] for s in report["survivors"])
    assert (tmp_path / "mutants" / "m001.v").read_text().startswith("/* Generated by Yosys")


@needs_tools
def test_flow_stops_when_the_unmutated_design_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFTEST_FAIL", "1")  # inherited by the smoke run: test_failure_path fails
    with pytest.raises(mutants.FlowError, match=r"^sanity run failed: .*test_failure_path"):
        mutants.run_flow(**COUNTER | {"tests": ("test_failure_path",)}, count=2, out=tmp_path, echo=lambda _: None)
    assert not (tmp_path / "report.json").exists()


@needs_tools
def test_watchdog_counts_a_hang_as_killed(tmp_path):
    mutants.prepare(
        mutants.simflow.generate_verilog("counter", {"width": 3}, tops=_counter_tops())[0],
        "counter",
        tmp_path,
        count=1,
        seed=1,
    )
    result = mutants.run_smoke(
        tmp_path / "original.v",
        top="counter",
        params={"width": 3},
        tests=["test_counts"],
        seed=1,
        module="cimdv.tb.selftest",
        factory=COUNTER["factory"],
        timeout=0.2,
    )
    assert result["status"] == "timeout" and result["killed_by"] == "timeout"


def _counter_tops():
    from cimdv.rtl import cli

    return {"counter": cli.LazyTop(COUNTER["factory"])}

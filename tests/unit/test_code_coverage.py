"""Code coverage (cimdv.tb.coverage.code): merge, waivers and figures on small synthetic Verilator files, the
FSM-state instrumentation on small Verilog texts, the scope and the file names of tb/sim.py, and one real
instrumented Verilator run of the self-test counter with two state machines, whose unvisited states must be
reported as holes.
"""

import json
import re
import shutil
from pathlib import Path

import pytest

from cimdv.tb import sim as simflow
from cimdv.tb.coverage import code
from cimdv.tb.selftest import make_counter_with_states

TOOLS_MISSING = [tool for tool in ("verilator_coverage", "genhtml") if shutil.which(tool) is None]
needs_tools = pytest.mark.skipif(
    bool(TOOLS_MISSING),
    reason=f"{', '.join(TOOLS_MISSING)} missing: bash sim/require-tools.sh installs Debian verilator and lcov",
)

UNIT = "CoreState@rtl/core/core.py:10"

# A stand-in for an instrumented simulation copy; the synthetic points below refer to its lines.
VERILOG = """\
module core(clk, rst);
  (* src = "rtl/core/core.py:10" *)
  reg [1:0] state = 2'h0;
  always @(posedge clk)
    if (rst) begin state <= 2'h0; end
    else state <= nxt;
  always @* begin
    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end
    nxt = 2'h1;
  end
endmodule
  \\cimdv_fsm|{unit}|core|state|IDLE|0 : cover property (@(posedge clk) state == 2'd0);
  \\cimdv_fsm|{unit}|core|state|RUN|1 : cover property (@(posedge clk) state == 2'd1);
  \\cimdv_fsm|{unit}|core|state|WRAP|2 : cover property (@(posedge clk) state == 2'd2);
""".replace("{unit}", UNIT)


def mangle(label: str) -> str:
    """A label as Verilator writes an escaped identifier in a coverage comment (``|`` -> ``__07c``)."""
    return "".join(c if c.isalnum() or c == "_" else f"__0{ord(c):02x}" for c in label)


def point(file: Path, line: int, vtype: str, comment: str, count: int, *, module="core", lines="") -> str:
    fields = {
        "f": str(file),
        "l": str(line),
        "n": "5",
        "t": vtype,
        "page": f"v_{vtype}/{module}",
        "o": comment,
        "S": lines or str(line),
        "h": f"TOP.{module}",
    }
    key = "".join(f"\x01{name}\x02{value}" for name, value in fields.items())
    return f"C '{key}' {count}"


def fsm(file: Path, line: int, state: str, value: int, count: int, *, hashed: bool = False) -> str:
    """An FSM cover point; ``hashed``: its label as Verilator writes a long one (``___Vhsh`` and a hash)."""
    label = mangle(f"cimdv_fsm|{UNIT}|core|state|{state}|{value}")
    if hashed:
        label = label[:20] + "___VhshFOdCYiMQLwWVfA178yQcwFZikcXLd7uvBn0IKlgs"
    return point(file, line, "user", label, count, module="cimdv_fsm_cover_0")


def write_dat(path: Path, points: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# SystemC::Coverage-3\n" + "\n".join(points) + "\n")
    return path


@pytest.fixture
def design(tmp_path) -> Path:
    """The simulation copy of a fake coverage build ``core-abc``, with its params.json."""
    build_dir = tmp_path / "sim" / "core-abc-cov"
    build_dir.mkdir(parents=True)
    (build_dir / "params.json").write_text(json.dumps({"rows": 4}))
    path = build_dir / "core.v"
    path.write_text(VERILOG)
    return path


def runs(design: Path, tmp_path: Path) -> list[Path]:
    """Two runs: RUN is visited only by the second; the else arm and WRAP by neither."""
    common = [
        point(design, 4, "line", "block", 10, lines="4"),
        point(design, 5, "branch", "if", 2, lines="5"),
        point(design, 5, "branch", "else", 0, lines="6"),
        point(design, 8, "branch", "if", 0, lines="8"),  # Yosys dummy read: dropped
        point(design, 3, "toggle", "state[0]:0->1", 3),
        point(design, 3, "toggle", "state[0]:1->0", 0),
        point(design, 3, "toggle", "$auto$verilog_backend.cc:2355:dump_module$1:0->1", 0),  # dropped
        fsm(design, 12, "IDLE", 0, 5),
        fsm(design, 14, "WRAP", 2, 0, hashed=True),  # named by its line in the simulation copy
        point(design, 14, "user", "someone_elses_cover", 0),  # not an FSM label: ignored
    ]
    first = write_dat(tmp_path / "dat" / "a.dat", [*common, fsm(design, 13, "RUN", 1, 0)])
    second = write_dat(tmp_path / "dat" / "b.dat", [*common, fsm(design, 13, "RUN", 1, 4)])
    return [first, second]


def waiver_file(tmp_path: Path, body: str = "") -> Path:
    path = tmp_path / "waivers.toml"
    path.write_text("# test waivers\n[[functional]]\nbin = 'not ours'\n" + body)
    return path


# --- merge and figures ---------------------------------------------------------------------------------


@needs_tools
def test_merge_counts_and_holes(design, tmp_path):
    out = tmp_path / "report"
    result = code.merge_code_coverage(runs(design, tmp_path), out, waiver_file(tmp_path))
    assert result["line"] == {"hit": 2, "total": 3, "waived": 0}
    assert result["toggle"] == {"hit": 1, "total": 2, "waived": 0}
    assert result["fsm"] == {"hit": 2, "total": 3, "waived": 0}  # RUN visited in the second run
    assert result["line_pct"] == pytest.approx(66.67) and result["fsm_pct"] == pytest.approx(66.67)
    assert result["toggle_pct"] == 50.0
    assert result["yosys_dummy_points"] == 2
    assert [(h["state"], h["value"], h["register"]) for h in result["fsm_holes"]] == [("WRAP", 2, "state")]
    [hole] = result["line_holes"]
    assert (hole["line"], hole["kind"], hole["module"]) == (6, "else", "core")
    assert hole["text"] == "else state <= nxt;"
    assert result["line_holes_by_module"] == [{"top": "core-abc", "module": "core", "missed": 1, "total": 3}]
    top = result["per_top"]["core-abc"]
    assert top["params"] == {"rows": 4} and top["fsm_holes"] == ["core.state WRAP"]
    # merged.dat sums the runs (verilator_coverage), coverage.info and the HTML exist
    merged = code.read_dat(out / "merged.dat")
    assert sum(merged.values()) == 2 * (10 + 2 + 3 + 5) + 4
    info = (out / "coverage.info").read_text()
    assert f"SF:{design}" in info and "DA:6,0" in info and "DA:4,20" in info and "DA:8," not in info
    assert "BRDA:3,0,0,6" in info
    assert Path(result["html"]).is_file() and result["html"].endswith("html/index.html")
    assert json.loads((out / "summary.json").read_text())["fsm_holes"] == result["fsm_holes"]


@needs_tools
def test_fsm_states_merge_across_builds_by_design_unit(design, tmp_path):
    """WRAP unvisited in core-abc but visited in another build of the same unit: covered overall, a hole per top."""
    other = tmp_path / "sim" / "chip-def-cov" / "chip.v"
    other.parent.mkdir(parents=True)
    other.write_text(VERILOG)
    dat = write_dat(tmp_path / "dat" / "c.dat", [fsm(other, 14, "WRAP", 2, 7)])
    result = code.merge_code_coverage([*runs(design, tmp_path), dat], tmp_path / "r", waiver_file(tmp_path))
    assert result["fsm_holes"] == [] and result["fsm_pct"] == 100.0
    assert result["per_top"]["core-abc"]["fsm_holes"] == ["core.state WRAP"]
    assert result["per_top"]["chip-def"]["fsm"] == {"hit": 1, "total": 1, "waived": 0}


@needs_tools
def test_waivers_exclude_exactly_what_they_name(design, tmp_path):
    waivers = waiver_file(
        tmp_path,
        """
[[code]]
kind = "line"
module = "core"
condition = "rst"
text = "else"
category = "UNR"
reason = "test: the else arm of the reset branch"

[[code]]
kind = "fsm"
unit = "CoreState@*"
state = "WRAP"
category = "UNR"
reason = "test: WRAP"

[[code]]
kind = "toggle"
signal = "nothing_like_this"
category = "LOW_RISK"
reason = "test: matches no point, so it is reported as unused"

[[code]]
kind = "line"
condition = "r?t"
category = "UNR"
reason = "test: names both arms of the reset branch; the if arm was hit, so it stays covered"
""",
    )
    result = code.merge_code_coverage(runs(design, tmp_path), tmp_path / "r", waivers)
    assert result["line"] == {"hit": 2, "total": 2, "waived": 1}
    assert result["line_holes"] == []
    assert result["fsm"] == {"hit": 2, "total": 2, "waived": 1} and result["fsm_holes"] == []
    assert result["toggle"]["waived"] == 0
    # a waiver excuses only points no run hit; the hit ones it matches stay covered and are reported
    assert [(w["points"], w["covered"]) for w in result["waivers"]] == [(1, 0), (1, 0), (0, 0), (0, 1)]
    assert all(w["reason"] and w["category"] for w in result["waivers"])
    info = (tmp_path / "r" / "coverage.info").read_text()
    assert "DA:5,4" in info and "DA:6," not in info  # the waived arm is not in the report


def test_cli_prints_the_three_figures(design, tmp_path, capsys):
    if TOOLS_MISSING:
        pytest.skip(f"{', '.join(TOOLS_MISSING)} missing")
    assert (
        code.main(
            ["--out", str(tmp_path / "r"), "--waivers", str(waiver_file(tmp_path)), *map(str, runs(design, tmp_path))]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert re.search(r"line\s+66\.67 %", printed) and re.search(r"fsm\s+66\.67 %", printed)
    assert re.search(r"toggle\s+50\.00 %", printed)


# --- bad input --------------------------------------------------------------------------------------


def test_fsm_labels_are_checked_against_the_simulation_copy(design, tmp_path):
    hashed = write_dat(tmp_path / "dat" / "h.dat", [fsm(design, 14, "WRAP", 2, 1, hashed=True)])
    plain = write_dat(tmp_path / "dat" / "p.dat", [fsm(design, 13, "RUN", 1, 1)])
    points, _ = code._points({**code.read_dat(hashed), **code.read_dat(plain)}, code._Sources())
    assert sorted(p.fsm["state"] for p in points) == ["RUN", "WRAP"]
    # a label on the wrong line (the copy was rebuilt since the run) is refused, hashed or not
    moved = write_dat(tmp_path / "dat" / "m.dat", [fsm(design, 12, "RUN", 1, 1)])
    with pytest.raises(ValueError, match=r"core\.v:12 \(cimdv_fsm\|CoreState.*does not name it"):
        code._points(code.read_dat(moved), code._Sources())
    design.write_text("rebuilt\n" * 20)
    with pytest.raises(ValueError, match=r"core\.v:14 .*rebuilt since the run"):
        code._points(code.read_dat(hashed), code._Sources())
    # without the copy, a label Verilator kept whole still describes itself
    design.unlink()
    points, _ = code._points(code.read_dat(plain), code._Sources())
    assert [p.fsm["state"] for p in points] == ["RUN"]


def test_bad_inputs_are_value_errors(design, tmp_path):
    good = runs(design, tmp_path)
    waivers = waiver_file(tmp_path)
    with pytest.raises(ValueError, match="dat_files is empty"):
        code.merge_code_coverage([], tmp_path / "r", waivers)
    with pytest.raises(ValueError, match=r"do not exist: .*nope\.dat"):
        code.merge_code_coverage([tmp_path / "nope.dat"], tmp_path / "r", waivers)
    with pytest.raises(ValueError, match=r"waiver file .*missing\.toml does not exist"):
        code.merge_code_coverage(good, tmp_path / "r", tmp_path / "missing.toml")
    bad = tmp_path / "bad.dat"
    bad.write_text("hello\n")
    with pytest.raises(ValueError, match="not a Verilator coverage file"):
        code.merge_code_coverage([bad], tmp_path / "r", waivers)
    bad.write_text("# SystemC::Coverage-3\nC 'x' many\n")
    with pytest.raises(ValueError, match=r"bad\.dat, line 2: not a coverage point"):
        code.read_dat(bad)
    with pytest.raises(TypeError, match="dat_files must be a list"):
        code.merge_code_coverage(good[0], tmp_path / "r", waivers)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('kind = "line"\ntext = "x"\ncategory = "UNR"\n', "non-empty 'reason'"),
        ('kind = "line"\ntext = "x"\ncategory = "UNR"\nreason = "  "\n', "non-empty 'reason'"),
        ('kind = "line"\nmodule = "core"\ncategory = "UNR"\nreason = "r"\n', "name the excluded item"),
        ('kind = "lines"\ntext = "x"\ncategory = "UNR"\nreason = "r"\n', "kind must be one of"),
        ('kind = "line"\ntext = "x"\ncategory = "LATER"\nreason = "r"\n', "category must be one of"),
        ('kind = "line"\ntext = "x"\nstate = "IDLE"\ncategory = "UNR"\nreason = "r"\n', "unknown key.*state"),
        ('kind = "line"\ntext = "("\ncategory = "UNR"\nreason = "r"\n', "not a regular expression"),
        ('kind = "toggle"\nsignal = 3\ncategory = "UNR"\nreason = "r"\n', "signal must be a string"),
    ],
)
def test_malformed_waivers_are_refused(tmp_path, body, message):
    path = waiver_file(tmp_path, "[[code]]\n" + body)
    with pytest.raises(ValueError, match=rf"\[\[code\]\] entry #0: .*{message}"):
        code.load_waivers(path)


def test_invalid_toml_is_refused(tmp_path):
    path = tmp_path / "w.toml"
    path.write_text("[[code]\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        code.load_waivers(path)


def test_the_project_waiver_file_loads():
    for waiver in code.load_waivers(code.DEFAULT_WAIVERS):
        assert waiver.reason.strip() and waiver.category in code.WAIVER_CATEGORIES


# --- instrumentation --------------------------------------------------------------------------------

ENUM_AND_FSM = """\
module top(clk, rst, o);
  (* enum_base_type = "CoreState" *)
  (* enum_value_00 = "IDLE" *)
  (* enum_value_01 = "BUSY" *)
  (* src = "rtl/x.py:3" *)
  output [1:0] o;
  reg [1:0] o = 2'h0;
  (* enum_base_type = "MacroOp" *)
  (* enum_value_0 = "IDLE" *)
  reg op = 1'h0;
  (* src = "/usr/lib/python3.11/contextlib.py:144" *)
  reg [1:0] \\fsm_state$3  = 2'h0;
  always @(posedge clk)
    o <= 2'h1;
  always @(posedge clk)
    op <= 1'h1;
  always @(posedge clk)
    \\fsm_state$3  <= 2'h2;
  always @* begin
    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end
  end
endmodule
"""
FSM = {"module": "top", "register": "fsm_state$3", "unit": "Top.fsm@rtl/x.py:9", "states": {"A": 0, "B": 1, "C": 2}}


def test_state_registers_enum_and_fsm():
    regs = code.state_registers(ENUM_AND_FSM, [FSM])
    assert [(r.module, r.register, r.width, r.clock, r.kind, r.unit, r.states) for r in regs] == [
        ("top", "o", 2, "clk", "enum", "CoreState@rtl/x.py:3", (("IDLE", 0), ("BUSY", 1))),
        ("top", "fsm_state$3", 2, "clk", "fsm", "Top.fsm@rtl/x.py:9", (("A", 0), ("B", 1), ("C", 2))),
    ]  # MacroOp is not a state: only enums named *State are


def test_state_registers_refuses_an_fsm_the_verilog_lacks():
    with pytest.raises(ValueError, match="not a clocked register of module 'top'"):
        code.state_registers(ENUM_AND_FSM, [{**FSM, "register": "other_state"}])
    with pytest.raises(ValueError, match=r"absent from the Verilog: Top\.fsm"):
        code.state_registers(ENUM_AND_FSM, [{**FSM, "module": "top.sub"}])
    with pytest.raises(ValueError, match="does not fit"):
        code.state_registers(ENUM_AND_FSM, [{**FSM, "states": {"A": 0, "Z": 4}}])


def test_instrumentation_keeps_line_numbers_and_binds_covers():
    text = code.instrument_verilog(ENUM_AND_FSM, code.state_registers(ENUM_AND_FSM, [FSM]))
    before, after = ENUM_AND_FSM.splitlines(), text.splitlines()
    assert len(after) > len(before)
    for number, (old, new) in enumerate(zip(before, after, strict=False), 1):
        if "dump_module" in old and "begin end" in old:
            assert new.strip() == "/* cimdv coverage: Yosys' time-0 dummy read removed */", number
        else:
            assert new == old, number
    tail = "\n".join(after[len(before) :])
    assert tail.count("cover property") == 5
    assert "\\cimdv_fsm|Top.fsm@rtl/x.py:9|top|fsm_state$3|C|2 : cover property (@(posedge clk) state == 2'd2);" in tail
    assert "bind \\top  cimdv_fsm_cover_1 cimdv_fsm_cover_1_i (.clk(\\clk ), .state(\\fsm_state$3 ));" in tail
    label = code.fsm_label("U@f:1", "m.sub", "r$1", "S", 3)
    assert code.parse_fsm_label(label) == {
        "unit": "U@f:1",
        "module": "m.sub",
        "register": "r$1",
        "state": "S",
        "value": 3,
    }
    with pytest.raises(ValueError, match="contains"):
        code.fsm_label("U", "m", "r", "two words", 0)


def test_amaranth_fsms_of_the_chip_name_every_state():
    """The m.FSM() states of the chip's tile, bridge and receiver, with the Verilog names of their registers."""
    fsms = code.amaranth_fsms("chip", {"cols": 1, "rows": 1, "core_rows": 4, "core_cols": 4})
    units = {f["unit"].split("@")[0]: f for f in fsms}
    assert {"Tile.req_fsm", "Tile.rsp_fsm", "HostBridge.fsm", "HostBridge.sender", "CommandReceiver.fsm"} <= set(units)
    assert units["Tile.req_fsm"]["module"] == "chip_tile" and units["Tile.req_fsm"]["register"] == "req_fsm_state"
    assert units["Tile.req_fsm"]["states"]["IDLE"] == 0 and "START_REFUSED" in units["Tile.req_fsm"]["states"]
    assert units["CommandReceiver.fsm"]["module"] == "chip.bridge.receiver"
    assert units["Tile.req_fsm"]["unit"].endswith("@rtl/chip/tile.py:" + units["Tile.req_fsm"]["unit"].split(":")[-1])


# --- scope and file names (tb/sim.py) ---------------------------------------------------------------


def test_scope():
    assert code.in_scope("core", {"rows": 16, "cols": 12})
    assert code.in_scope("mesh", {"cols": 3, "rows": 3})
    assert code.in_scope("chip", {"core_rows": 32, "core_cols": 32})
    assert code.in_scope("fpga_top", {"core_rows": 8, "core_cols": 8})
    assert code.in_scope("bridge", {"core_rows": 32, "core_cols": 32})
    assert not code.in_scope("core", {"rows": 256, "cols": 256})
    assert not code.in_scope("chip", {"core_rows": 256, "core_cols": 256})
    assert not code.in_scope("twin_chip", {"core_rows": 8, "core_cols": 8})


def test_coverage_files_follow_the_contract(tmp_path, monkeypatch):
    monkeypatch.delenv(simflow.COVERAGE_ENV, raising=False)
    assert simflow.coverage_files("verilator", "core", {"rows": 4}, "m.t", 3) == (None, None)
    assert not simflow._coverage_wanted(None, "verilator", "core", {"rows": 16, "cols": 12}, None, None)
    monkeypatch.setenv(simflow.COVERAGE_ENV, "relative/dir")
    with pytest.raises(ValueError, match="CIMDV_COVERAGE_DIR must be an absolute path"):
        simflow.coverage_dir()
    monkeypatch.setenv(simflow.COVERAGE_ENV, str(tmp_path))
    dat, yml = simflow.coverage_files("verilator", "core", {"rows": 4}, "cimdv.tb.core.tests.a/b", 3)
    stem = f"verilator-core-{simflow.param_hash({'rows': 4})}-cimdv.tb.core.tests.a_b-s3"
    assert dat == tmp_path / "code" / f"{stem}.dat" and yml == tmp_path / "functional" / f"{stem}.yml"
    assert dat.parent.is_dir() and yml.parent.is_dir()
    full = {"rows": 16, "cols": 12}
    assert simflow._coverage_wanted(None, "verilator", "core", full, None, None)
    assert not simflow._coverage_wanted(None, "icarus", "core", full, None, None)
    assert not simflow._coverage_wanted(None, "verilator", "core", full, None, Path("mutant.v"))
    assert not simflow._coverage_wanted(None, "verilator", "core", {"rows": 256, "cols": 256}, None, None)
    assert not simflow._coverage_wanted(None, "verilator", "core", full, {"core": make_counter_with_states}, None)
    with pytest.raises(ValueError, match="Verilator only"):
        simflow._coverage_wanted(True, "icarus", "core", full, None, None)


# --- end to end ---------------------------------------------------------------------------------------


@needs_tools
def test_instrumented_run_counts_lines_and_fsm_states(tmp_path, monkeypatch, seed):
    """A real Verilator run: line and FSM points are counted, and the states no test reaches are holes."""
    monkeypatch.setenv(simflow.COVERAGE_ENV, str(tmp_path / "cov"))
    tops = {"counter_states": make_counter_with_states}
    result = simflow.run(
        "counter_states",
        None,
        "verilator",
        "cimdv.tb.selftest",
        testcase="test_counts",
        seed=seed,
        tops=tops,
        coverage=True,
    )
    assert result.build.coverage and result.build.build_dir.name.endswith("-cov")
    dats = sorted((tmp_path / "cov" / "code").glob("*.dat"))
    phash = simflow.param_hash({"width": 8})
    assert [d.name for d in dats] == [f"verilator-counter_states-{phash}-cimdv.tb.selftest.test_counts-s{seed}.dat"]
    summary = code.merge_code_coverage(dats, tmp_path / "report", waiver_file(tmp_path))
    assert 0 < summary["line"]["hit"] < summary["line"]["total"]
    assert summary["toggle"]["hit"] > 0
    holes = {(h["register"], h["state"]) for h in summary["fsm_holes"]}
    assert holes == {("mode_state", "WRAPPED"), ("phase", "WRAP")}
    assert summary["fsm"] == {"hit": 4, "total": 6, "waived": 0}
    units = {h["unit"].split("@")[0] for h in summary["fsm_holes"]}
    assert units == {"CounterState", "Counter.mode"}  # the second one's long label is hashed by Verilator
    assert summary["yosys_dummy_points"] > 0  # the dummy register's toggle point, dropped
    assert not [h for h in summary["line_holes"] if "verilog_backend" in h["text"]]  # its reads were removed
    assert Path(summary["html"]).is_file()


CONTEXT = """\
module \\chip.bridge (clk, rst);
  (* src = "rtl/host/bridge.py:300" *)
  reg [1:0] fsm_state = 2'h0;
  assign \\$5  = count == (* src = "rtl/host/bridge.py:310" *) 4'h3;
  always @* begin
    casez (fsm_state)
      2'h1:
          (* full_case = 32'd1 *)
          if (\\$5 ) begin
            x = 1;
          end else if (req__payload[32]) begin
            x = 2;
          end
      2'h2:
          casez (req__payload[27:24])
            4'h3:
                x = 3;
            default:
                x = 4;
          endcase
    endcase
  end
endmodule
  \\cimdv_fsm|HostBridge.fsm@rtl/host/bridge.py:1|chip.bridge|fsm_state|ARGS|1 : cover property (@(posedge clk) 1);
"""


def test_hole_context_names_condition_enclosing_arm_state_and_src(tmp_path):
    path = tmp_path / "chip.v"
    path.write_text(CONTEXT)
    sources = code._Sources()

    def context(line):
        return sources.context(str(path), line, "chip.bridge")

    assert context(9) == ("fsm_state == 2'h1 (ARGS): $5", "rtl/host/bridge.py:310")
    assert context(11) == ("fsm_state == 2'h1 (ARGS): req__payload[32]", "")
    assert context(7) == ("fsm_state == 2'h1 (ARGS)", "rtl/host/bridge.py:300")
    assert context(16) == ("req__payload[27:24] == 4'h3", "")
    assert context(18) == ("req__payload[27:24] == default", "")
    assert context(10) == ("", "")
    # waiver globs: * and ? only, brackets are literal
    assert code._glob("req__payload[27:24] == 4'h3", "req__payload[27:24] == 4'h3")
    assert code._glob("chip_tile", "*tile*") and not code._glob("chip_tile", "tile")

# amaranth: UnusedElaboratable=no
"""The FPGA flow (``cimdv-fpga``, ``make fpga``) and the top it builds.

Fast: report parsing from nextpnr's and Yosys' JSON, the clock convention and the PLL
dividers, argument errors, the flow's plumbing with stand-in tools, and the ``fpga_twin_demo``
top end to end in Amaranth's simulator (UART bytes in: the core's write-verify programs the
twin, then an MVM whose result comes back over the UART and is checked against the exact
golden model). Slow: the real Yosys + nextpnr + icepack run of ``fpga_top`` (``make fpga``'s
default), only where the tools are installed (``bash sim/require-tools.sh fpga``); it takes
about 1.5 minutes on this machine kind. ``fpga_top`` itself is simulated through its UART pins
by the cocotb tests (tests/dv/test_fpga_top.py).
"""

import json
import shutil

import numpy as np
import pytest
from amaranth.sim import Simulator

from cimdv.model.exact import CoreConfig, ExactCore, MacroParams
from cimdv.rtl.core.layouts import input_beat_layout
from cimdv.rtl.core.regs import PROG_KEY
from cimdv.rtl.fpga.demo import STATUS_BITS, FpgaTwinDemo, Opcode, Reply
from cimdv.rtl.fpga.pll import pll_params
from cimdv.rtl.fpga.twin import MIN_T_READ, g_code_of
from cimdv.tb.flows import fpga

NEXTPNR_REPORT = {
    "utilization": {
        "ICESTORM_LC": {"available": 7680, "used": 5065},
        "ICESTORM_PLL": {"available": 2, "used": 1},
        "ICESTORM_RAM": {"available": 32, "used": 3},
        "SB_GB": {"available": 8, "used": 4},
        "SB_IO": {"available": 256, "used": 11},
    },
    "fmax": {"clk": {"achieved": 51.5, "constraint": 50.25}},
    "critical_paths": [
        {
            "from": "posedge clk",
            "to": "posedge clk",
            "path": [
                {"delay": 0.5, "from": {"cell": "core.a"}, "to": {"cell": "x"}},
                {"delay": 18.9, "from": {"cell": "x"}, "to": {"cell": "core.state"}},
            ],
        }
    ],
}
NETLIST = {
    "modules": {
        "top": {
            "cells": {
                "a": {"type": "SB_DFFESR"},
                "b": {"type": "SB_DFF"},
                "c": {"type": "SB_LUT4"},
                "d": {"type": "SB_RAM40_4K"},
                "e": {"type": "SB_DFFR"},
            }
        }
    }
}


# ---------------------------------------------------------------------------------------------
# Report parsing and the clock


def test_parse_reports_takes_every_figure_from_the_json_reports():
    out = fpga.parse_reports(NEXTPNR_REPORT, NETLIST, top="top", target_mhz=50.25)
    assert out["luts"] == 5065 and out["luts_available"] == 7680
    assert out["rams"] == 3 and out["rams_available"] == 32
    assert (out["ffs"], out["plls"], out["ios"]) == (3, 1, 11)
    assert out["fmax_mhz"] == 51.5
    assert out["clocks"] == {"clk": {"fmax_mhz": 51.5, "constraint_mhz": 50.25}}
    assert out["fit"] and out["timing_met"]
    assert fpga.critical_path_summary(NEXTPNR_REPORT) == ("core.a", "core.state", 19.4)


def test_parse_reports_timing_and_fit_failures():
    slow = fpga.parse_reports(NEXTPNR_REPORT, target_mhz=60.0)
    assert slow["fit"] and not slow["timing_met"] and slow["ffs"] is None
    over = json.loads(json.dumps(NEXTPNR_REPORT))
    over["utilization"]["ICESTORM_LC"]["used"] = 8000
    assert not fpga.parse_reports(over, target_mhz=50.0)["fit"]
    failed = fpga.parse_reports(None, NETLIST, top="top", target_mhz=50.0)
    assert (failed["fit"], failed["timing_met"], failed["luts"], failed["ffs"]) == (False, False, None, 3)


def test_pll_dividers_are_icepll_s():
    """``icepll -i 12 -o 50`` / ``-o 60``: DIVR 0, DIVF 66 / 79, DIVQ 4, FILTER_RANGE 1."""
    p = pll_params(12e6, 50e6)
    assert (p.divr, p.divf, p.divq, p.filter_range, p.f_out_hz) == (0, 66, 4, 1, 50.25e6)
    p = pll_params(12e6, 60e6)
    assert (p.divr, p.divf, p.divq, p.filter_range, p.f_out_hz) == (0, 79, 4, 1, 60e6)
    assert pll_params(12e6, 49e6, at_least=True).f_out_hz >= 49e6
    with pytest.raises(ValueError, match=r"16\.\.275 MHz"):
        pll_params(12e6, 300e6)


def test_clock_convention():
    assert fpga.clock_mhz({"clk_mhz": 50.0, "pll": True}, 50.0) == 50.25
    assert fpga.clock_mhz({"clk_mhz": 40.0, "pll": False}, 50.0) == 40.0
    assert fpga.clock_mhz({"rows": 8}, 45.0) == 45.0


# ---------------------------------------------------------------------------------------------
# The command line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--top", "nope"], "invalid choice: 'nope' (choose from", id="top"),
        pytest.param(["--freq", "fast"], "--freq expects a number of MHz, not 'fast'", id="freq-text"),
        pytest.param(["--freq", "0"], "--freq must be 1..275 MHz, not 0", id="freq-range"),
        pytest.param(["--param", "rows"], "--param expects NAME=VALUE", id="param-syntax"),
        pytest.param(["--param", "depth=3"], "valid parameters: cols, rows, core_rows, core_cols", id="param-name"),
    ],
)
def test_bad_arguments_are_named(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        fpga.main([*argv, "--out", str(tmp_path)])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_demo_top_refuses_bad_parameters():
    with pytest.raises(ValueError, match=r"lanes must be 1\.\.3"):
        FpgaTwinDemo(lanes=5)
    with pytest.raises(TypeError, match="pll must be a bool"):
        FpgaTwinDemo(pll=1)


def test_missing_tools_name_the_install_command(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(fpga.shutil, "which", lambda tool: None)
    assert fpga.main(["--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "bash sim/require-tools.sh fpga" in err
    assert "apt-get install -y fpga-icestorm nextpnr-ice40 yosys" in err


@pytest.mark.parametrize("fmax", [55.0, 42.0], ids=["timing-met", "timing-missed"])
def test_flow_plumbing_with_stand_in_tools(monkeypatch, tmp_path, capsys, fmax):
    """The steps, their files and report.json, with the tools replaced by writers of their outputs."""
    calls = []

    def fake_run(argv, log):
        calls.append(argv[0])
        log.write_text("")
        if argv[0] == "yosys":
            json_out = argv[argv.index("-p") + 1].split("-json ")[1]
            top = {"cells": {"r": {"type": "SB_DFF"}, "l": {"type": "SB_LUT4"}}}
            (tmp_path / json_out.split("/")[-1]).write_text(json.dumps({"modules": {"fpga_twin_demo": top}}))
        elif argv[0] == "nextpnr-ice40":
            assert argv[argv.index("--freq") + 1] == "50.25"
            assert argv[argv.index("--pcf") + 1].endswith("constraints/hx8k-breakout.pcf")
            report = json.loads(json.dumps(NEXTPNR_REPORT))
            report["fmax"]["clk"]["achieved"] = fmax
            (tmp_path / "nextpnr_report.json").write_text(json.dumps(report))
            (tmp_path / "fpga_twin_demo.asc").write_text("")
        elif argv[0] == "icepack":
            (tmp_path / "fpga_twin_demo.bin").write_bytes(b"\0")
        return 0, 0.1

    monkeypatch.setattr(fpga, "_run", fake_run)
    monkeypatch.setattr(fpga, "missing_tools", dict)
    argv = ["--top", "fpga_twin_demo", "--out", str(tmp_path), "--param", "rows=4", "--param", "cols=4"]
    status = fpga.main(argv)
    report = json.loads((tmp_path / "report.json").read_text())
    for key in ("device", "luts", "luts_available", "ffs", "rams", "fmax_mhz", "target_mhz", "fit", "timing_met"):
        assert key in report
    assert report["device"] == "iCE40HX8K-CT256"
    assert report["target_mhz"] == 50.25 and report["ffs"] == 1 and report["params"]["rows"] == 4
    assert (tmp_path / "fpga_twin_demo.v").exists()
    if fmax > 50.25:
        assert status == 0 and report["pass"] and calls == ["yosys", "nextpnr-ice40", "icepack"]
        assert report["bitstream"].endswith("fpga_twin_demo.bin")
    else:
        assert status == 1 and not report["pass"] and calls == ["yosys", "nextpnr-ice40"]
        assert report["bitstream"] is None
        assert "misses timing at 50.25 MHz" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The demo top, end to end over its UART


DIVISOR = 4


def frame(byte):
    return [0, *((byte >> k) & 1 for k in range(8)), 1]


def test_demo_top_runs_an_mvm_over_the_uart():
    rows = cols = 4
    lanes = 2
    dut = FpgaTwinDemo(rows=rows, cols=cols, lanes=lanes, pll=False, clk_mhz=1.0, baud=250_000)
    assert dut.divisor == DIVISOR
    regmap = dut.core.regmap
    rng = np.random.default_rng(3)
    weights = rng.integers(0, 4, size=(rows, cols))
    params = MacroParams(delta=3, threshold=2)
    cfg = CoreConfig(
        rows=rows, cols=cols, backward=False, signed=True, in_bits=3, out_bits=5, pulse_mult=2, max_count=15
    )
    x = rng.integers(-3, 4, size=rows)
    expected = ExactCore(weights, params).mvm(cfg, x)

    def word(opcode, low=0):
        return (opcode << 28) | low

    def csr_write(name, value):
        return [word(Opcode.CSR_WRITE, regmap[name].addr << 20), value]

    words = [word(Opcode.TWIN_PARAM, (0 << 24) | params.delta), word(Opcode.TWIN_PARAM, (1 << 24) | params.threshold)]
    # The core's write-verify sequencer programs the twin: target 2w + 1, tolerance 1; each
    # cell's PROG_RESULT is read back (the UART is far slower than a write-verify command).
    words += csr_write("PROG_KEY", PROG_KEY) + csr_write("T_PULSE", 1) + csr_write("T_READ", MIN_T_READ)
    for (i, j), w in np.ndenumerate(weights):
        words += csr_write("PROG_CELL", i | (j << 16)) + csr_write("PROG_TARGET", g_code_of(int(w)) | (1 << 8))
        words += [*csr_write("PROG_CTRL", 1), word(Opcode.CSR_READ, regmap["PROG_RESULT"].addr << 20)]
    mode = regmap["MODE"]
    csr = {
        "MODE": sum(int(getattr(cfg, f)) << mode.field(f).offset for f in ("signed", "in_bits", "out_bits"))
        | (cfg.pulse_mult << mode.field("pulse_mult").offset),
        "MAX_COUNT": cfg.max_count,
        "BATCH": 1,
        "T_INIT": 1,
        "T_SAMPLE": 1,
        "T_INTEG": dut.twin.min_sample_integ - 1,
        "T_COMPARE": 1,
        "T_DECR": 1,
        "T_NOISE": 1,
    }
    for name, value in csr.items():
        words += csr_write(name, value)
    words += [word(Opcode.CSR_READ, regmap["MODE"].addr << 20), word(Opcode.START)]
    in_layout = input_beat_layout(lanes)
    for b in range(rows // lanes):
        beat = in_layout.const({"elems": [int(v) for v in x[b * lanes : (b + 1) * lanes]], "last": b == 1})
        words += [word(Opcode.INPUT, beat.as_value().value)]
    words += [word(Opcode.STATUS)]
    n_replies = 2 * rows * cols + 2 + rows // lanes + 1  # PROG_RESULTs, MODE read, outputs, status
    replies = []

    async def host(ctx):
        for w in words:
            for byte in w.to_bytes(4, "little"):
                for bit in frame(byte):
                    ctx.set(dut.uart_rx, bit)
                    await ctx.tick().repeat(DIVISOR)

    async def listen(ctx):
        data = bytearray()
        while len(data) < 4 * n_replies:
            if ctx.get(dut.uart_tx) == 0:
                await ctx.tick().repeat(DIVISOR // 2)  # the middle of the start bit
                bits = []
                for k in range(10):
                    bits.append(ctx.get(dut.uart_tx))
                    if k < 9:
                        await ctx.tick().repeat(DIVISOR)
                assert bits[0] == 0 and bits[9] == 1
                data.append(sum(b << k for k, b in enumerate(bits[1:9])))
                await ctx.tick().repeat(DIVISOR - DIVISOR // 2)  # the end of the stop bit
            else:
                await ctx.tick()
        replies.extend(int.from_bytes(data[k : k + 4], "little") for k in range(0, len(data), 4))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(listen)
    sim.run()

    # Parse in order: a CSR_DATA header (tag, addr) is followed by the raw data word.
    reads, others = {}, []
    k = 0
    while k < len(replies):
        if replies[k] >> 28 == Reply.CSR_DATA:
            reads.setdefault((replies[k] >> 20) & 0xFF, []).append(replies[k + 1])
            k += 2
        else:
            others.append(replies[k])
            k += 1
    results = reads[regmap["PROG_RESULT"].addr]
    assert [(r & 7, (r >> 8) & 0xFF) for r in results] == [(0, g_code_of(int(w))) for w in weights.ravel()]
    assert reads[regmap["MODE"].addr] == [csr["MODE"]]
    replies = others
    tags = [r >> 28 for r in replies]
    outputs = [r & ((1 << 28) - 1) for r, t in zip(replies, tags, strict=True) if t == Reply.OUTPUT]
    elems = [((o >> (9 * e)) & 0x7F, (o >> (9 * e + 7)) & 1, (o >> (9 * e + 8)) & 1) for o in outputs for e in range(2)]
    assert [c for c, _, _ in elems] == expected.count.tolist()
    assert [s for _, s, _ in elems] == expected.sign.tolist()
    assert [s for _, _, s in elems] == expected.sat.astype(int).tolist()
    # STATUS may overtake the MVM (the core may still be busy): no error flag may be set.
    (status,) = [r for r, t in zip(replies, tags, strict=True) if t == Reply.STATUS]
    flags = {name for b, name in enumerate(STATUS_BITS) if (status >> b) & 1}
    assert flags <= {"core_busy"}, flags


# ---------------------------------------------------------------------------------------------
# The real tools


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in fpga.REQUIRED_TOOLS),
    reason="FPGA tools not installed (bash sim/require-tools.sh fpga)",
)
def test_real_synthesis_of_fpga_top(tmp_path):
    """Yosys + nextpnr + icepack on ``fpga_top`` (``make fpga``'s default): it fits the HX8K, meets
    its 50.25 MHz clock (58-60 MHz over nextpnr seeds 1-4, docs/fpga.md) and the report is complete."""
    report = fpga.run_flow("fpga_top", {}, freq_mhz=50.0, out_dir=tmp_path)
    for key in ("device", "luts", "luts_available", "ffs", "rams", "fmax_mhz", "target_mhz", "fit", "timing_met"):
        assert key in report, key
    assert report["fit"], report
    assert report["luts"] and report["luts"] <= report["luts_available"] == 7680
    assert report["rams"] >= 3 and report["plls"] == 1 and report["ffs"] > 1000
    assert report["target_mhz"] == 50.25 and report["timing_met"], report["critical_path"]
    assert report["pass"] and report["fmax_mhz"] >= 50.25
    assert (tmp_path / "nextpnr_report.json").exists()
    assert (tmp_path / "fpga_top.bin").exists()

"""``make fpga``: synthesis, place and route and bitstream of an FPGA top for the iCE40-HX8K Breakout Board.

Steps, every output in ``build/fpga/`` (``--out``):

1. Verilog of the top with Amaranth (``<top>.v``; the tops are ``cimdv.rtl.cli.TOPS``);
2. Yosys ``synth_ice40 -json`` (``<top>.json``, ``yosys.log``);
3. nextpnr-ice40 ``--hx8k --package ct256 --pcf constraints/hx8k-breakout.pcf --freq <clock>
   --report nextpnr_report.json`` (``<top>.asc``, ``nextpnr.log``), with ``--timing-allow-fail``
   so that a design that misses timing is still measured;
4. icepack (``<top>.bin``), only when the design fits and meets timing;
5. ``report.json``: ``device``, ``luts``, ``luts_available``, ``ffs``, ``rams``, ``fmax_mhz``,
   ``target_mhz``, ``fit``, ``timing_met``, ``pass`` and the details (docs/fpga.md). LUT, RAM and
   PLL counts and Fmax come from nextpnr's JSON report; flip-flops from Yosys' JSON netlist
   (nextpnr's report counts logic cells, not flops). No log is scraped.

The clock: a top with a ``clk_mhz`` parameter gets ``--freq`` as its requested clock, and
reports the clock it really runs at in its ``clk_hz`` attribute (the PLL's achieved
frequency); that clock is the timing target. Exit status 0 when the design fits and meets
timing, 1 when it does not (the report is written either way), 2 on a usage error.
"""

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cimdv.rtl import cli
from cimdv.rtl.fpga.pll import pll_params
from cimdv.rtl.fpga.top import F_OSC_HZ
from cimdv.tb.sim import BUILD_ROOT, REPO_ROOT

__all__ = ["DEVICE", "PCF", "REQUIRED_TOOLS", "main", "parse_reports", "run_flow"]

#: The device of the iCE40-HX8K Breakout Board, and nextpnr's options for it.
DEVICE = "iCE40HX8K-CT256"
NEXTPNR_DEVICE = ("--hx8k", "--package", "ct256")
#: Pin constraints of the board (constraints/README.md).
PCF = REPO_ROOT / "constraints" / "hx8k-breakout.pcf"
#: Tool -> Debian package.
REQUIRED_TOOLS = {"yosys": "yosys", "nextpnr-ice40": "nextpnr-ice40", "icepack": "fpga-icestorm"}
DEFAULT_TOP = "fpga_top"
DEFAULT_FREQ_MHZ = 50.0
#: The iCE40 PLL's output range; a target outside it cannot be a clock of these tops.
FREQ_RANGE_MHZ = (1.0, 275.0)
_FF_CELL = re.compile(r"^SB_DFF")


class FlowError(Exception):
    """A step of the flow could not run (missing tool, tool crash); the message says which and why."""


def missing_tools():
    """Tools of the flow that are not on PATH, with their Debian packages."""
    return {tool: pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None}


def _count_ffs(netlist, top):
    cells = netlist["modules"][top]["cells"].values()
    return sum(1 for cell in cells if _FF_CELL.match(cell["type"]))


def parse_reports(nextpnr_report, netlist=None, *, top=None, target_mhz):
    """The figures of ``report.json`` from nextpnr's ``--report`` JSON and Yosys' JSON netlist.

    Parameters
    ----------
    nextpnr_report : dict or None
        nextpnr's report (``utilization``, ``fmax``); None when place and route failed.
    netlist : dict, optional
        Yosys' JSON netlist of the top (for the flip-flop count).
    top : str, optional
        The top module's name in ``netlist``.
    target_mhz : float
        The clock the design must meet.

    Returns
    -------
    dict
        ``luts``, ``luts_available``, ``ffs``, ``rams``, ``rams_available``, ``plls``, ``ios``,
        ``fmax_mhz`` (the slowest constrained clock), ``clocks`` (every clock: achieved and
        constraint), ``fit``, ``timing_met``. Unknown figures are None.
    """
    out = {
        "luts": None,
        "luts_available": None,
        "ffs": None,
        "rams": None,
        "rams_available": None,
        "plls": None,
        "ios": None,
        "fmax_mhz": None,
        "target_mhz": target_mhz,
        "clocks": {},
        "fit": False,
        "timing_met": False,
    }
    if netlist is not None and top is not None:
        out["ffs"] = _count_ffs(netlist, top)
    if nextpnr_report is None:
        return out
    util = nextpnr_report.get("utilization", {})
    for key, bel in (("luts", "ICESTORM_LC"), ("rams", "ICESTORM_RAM"), ("plls", "ICESTORM_PLL"), ("ios", "SB_IO")):
        if bel in util:
            out[key] = util[bel]["used"]
            if key in ("luts", "rams"):
                out[f"{key}_available"] = util[bel]["available"]
    out["fit"] = all(entry["used"] <= entry["available"] for entry in util.values()) and bool(util)
    clocks = {
        name: {"fmax_mhz": entry["achieved"], "constraint_mhz": entry.get("constraint")}
        for name, entry in nextpnr_report.get("fmax", {}).items()
    }
    out["clocks"] = clocks
    if clocks:
        out["fmax_mhz"] = min(c["fmax_mhz"] for c in clocks.values())
        out["timing_met"] = out["fit"] and out["fmax_mhz"] >= target_mhz
    return out


def critical_path_summary(nextpnr_report):
    """``(from cell, to cell, delay ns)`` of the worst register-to-register path, or None."""
    for path in (nextpnr_report or {}).get("critical_paths", []):
        steps = path.get("path", [])
        if steps and path.get("from", "").startswith("posedge") and path.get("to", "").startswith("posedge"):
            return steps[0]["from"]["cell"], steps[-1]["to"]["cell"], round(sum(s["delay"] for s in steps), 2)
    return None


def clock_mhz(params, freq_mhz):
    """The clock a top runs at, by the FPGA tops' convention (docs/fpga.md).

    A top with a ``clk_mhz`` parameter runs at it, or, with ``pll=True``, at the iCE40 PLL's
    closest setting at or above it (from the board's 12 MHz oscillator); any other top at
    ``freq_mhz``.
    """
    if "clk_mhz" not in params:
        return freq_mhz
    if params.get("pll"):
        return round(pll_params(F_OSC_HZ, params["clk_mhz"] * 1e6, at_least=True).f_out_hz / 1e6, 4)
    return params["clk_mhz"]


def _tool_version(argv):
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    text = (res.stdout or res.stderr).strip().splitlines()
    return text[0] if text else None


def _run(argv, log):
    """Run one tool; its console output goes to ``log``. Returns (exit status, wall seconds)."""
    started = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    log.write_text(res.stdout + res.stderr)
    return res.returncode, time.perf_counter() - started


def run_flow(top, params, *, freq_mhz, out_dir, pcf=PCF, seed=1, tops=cli.TOPS):
    """Run the whole flow for ``top`` and write ``out_dir/report.json``; returns the report.

    Raises
    ------
    ValueError, TypeError
        A bad top or parameter (message lists the valid ones); checked before the tools, and
        the Verilog is written even where the tools are missing.
    FlowError
        A tool is missing or crashed (synthesis errors included).
    """
    params = dict(params)
    defaults = cli.top_defaults(tops[top]) if top in tops else {}
    if "clk_mhz" in defaults and "clk_mhz" not in params:
        params["clk_mhz"] = freq_mhz
    full = cli.elaborate_params(top, params, tops=tops)
    target_mhz = clock_mhz(full, freq_mhz)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    verilog, netlist, asc, bitstream = (out_dir / f"{top}{ext}" for ext in (".v", ".json", ".asc", ".bin"))
    nextpnr_json = out_dir / "nextpnr_report.json"
    for stale in (netlist, asc, bitstream, nextpnr_json):
        stale.unlink(missing_ok=True)
    wall = {}
    started = time.perf_counter()
    cli.generate(top, full, verilog, tops=tops)
    wall["verilog"] = time.perf_counter() - started

    missing = missing_tools()
    if missing:
        raise FlowError(
            f"missing {', '.join(missing)}: run `bash sim/require-tools.sh fpga` "
            f"(or: sudo apt-get install -y {' '.join(sorted(set(missing.values())))})"
        )

    yosys = [
        "yosys",
        "-q",
        "-l",
        str(out_dir / "yosys.log"),
        "-p",
        f"synth_ice40 -top {top} -json {netlist}",
        str(verilog),
    ]
    rc, wall["yosys"] = _run(yosys, out_dir / "yosys.console.log")
    if rc != 0 or not netlist.exists():
        raise FlowError(f"yosys failed (exit {rc}); see {out_dir / 'yosys.log'}")

    nextpnr = [
        "nextpnr-ice40",
        *NEXTPNR_DEVICE,
        "--json", str(netlist),
        "--pcf", str(pcf),
        "--freq", f"{target_mhz:g}",
        "--seed", str(seed),
        "--timing-allow-fail",
        "--report", str(nextpnr_json),
        "--asc", str(asc),
        "-q",
        "-l", str(out_dir / "nextpnr.log"),
    ]  # fmt: skip
    rc, wall["nextpnr"] = _run(nextpnr, out_dir / "nextpnr.console.log")
    pnr_report = json.loads(nextpnr_json.read_text()) if rc == 0 and nextpnr_json.exists() else None
    figures = parse_reports(pnr_report, json.loads(netlist.read_text()), top=top, target_mhz=target_mhz)
    if rc != 0:
        figures["fit"] = False  # nextpnr stops when the design does not fit (or cannot be placed)

    passed = figures["fit"] and figures["timing_met"]
    if passed:
        rc, wall["icepack"] = _run(["icepack", str(asc), str(bitstream)], out_dir / "icepack.log")
        if rc != 0:
            raise FlowError(f"icepack failed (exit {rc}); see {out_dir / 'icepack.log'}")
    wall["total"] = time.perf_counter() - started

    cp = critical_path_summary(pnr_report)
    report = {
        "device": DEVICE,
        "board": "Lattice iCE40-HX8K Breakout Board (ICE40HX8K-B-EVN)",
        "top": top,
        "params": full,
        **figures,
        "pass": passed,
        "critical_path": {"from": cp[0], "to": cp[1], "delay_ns": cp[2]} if cp else None,
        "bitstream": str(bitstream) if passed else None,
        "pcf": str(pcf),
        "seed": seed,
        "wall_s": {k: round(v, 2) for k, v in wall.items()},
        "tools": {
            "yosys": _tool_version(["yosys", "-V"]),
            "nextpnr-ice40": _tool_version(["nextpnr-ice40", "--version"]),
        },
        "command": "cimdv-fpga " + shlex.join(_argv_of(top, params, freq_mhz, seed)),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _argv_of(top, params, freq_mhz, seed):
    argv = ["--top", top, "--freq", f"{freq_mhz:g}", "--seed", str(seed)]
    for name, value in sorted(params.items()):
        if name != "clk_mhz" or value != freq_mhz:
            argv += ["--param", f"{name}={value!r}"]
    return argv


def _freq(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--freq expects a number of MHz, not {text!r}") from None
    lo, hi = FREQ_RANGE_MHZ
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"--freq must be {lo:g}..{hi:g} MHz, not {value:g}")
    return value


def main(argv=None, *, tops=cli.TOPS):
    p = argparse.ArgumentParser(
        prog="cimdv-fpga",
        description="Synthesise, place and route an FPGA top for the iCE40-HX8K Breakout Board "
        "(build/fpga/report.json).",
    )
    p.add_argument("--top", default=DEFAULT_TOP, choices=sorted(tops), help=f"top to build (default: {DEFAULT_TOP})")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one parameter of the top (repeatable); VALUE is a Python literal",
    )
    p.add_argument(
        "--freq",
        type=_freq,
        default=DEFAULT_FREQ_MHZ,
        metavar="MHZ",
        help=f"requested clock and timing target in MHz (default {DEFAULT_FREQ_MHZ:g}); a top with a PLL "
        "runs at its closest setting at or above it, which becomes the target",
    )
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    p.add_argument("--out", type=Path, default=BUILD_ROOT / "fpga", help="output directory (default build/fpga)")
    args = p.parse_args(argv)

    params = {}
    for item in args.param:
        match = re.match(r"^([A-Za-z_]\w*)=(.*)$", item)
        if not match:
            p.error(f"--param expects NAME=VALUE, got {item!r}")
        params[match[1]] = cli._parse_value(match[2])
    try:
        cli.elaborate_params(args.top, {**params}, tops=tops)
        report = run_flow(args.top, params, freq_mhz=args.freq, out_dir=args.out, seed=args.seed, tops=tops)
    except (ValueError, TypeError) as exc:
        p.error(str(exc))
    except FlowError as exc:
        print(f"cimdv-fpga: {exc}", file=sys.stderr)
        return 1

    def num(v, fmt):
        return "?" if v is None else format(v, fmt)

    print(f"cimdv-fpga: {report['top']} on {report['device']} ({report['board']})")
    print(f"  LUTs (logic cells)  {num(report['luts'], 'd')} / {num(report['luts_available'], 'd')}")
    print(f"  flip-flops          {num(report['ffs'], 'd')}")
    print(f"  block RAMs          {num(report['rams'], 'd')} / {num(report['rams_available'], 'd')}")
    print(f"  PLLs                {num(report['plls'], 'd')}")
    print(f"  Fmax                {num(report['fmax_mhz'], '.2f')} MHz (target {report['target_mhz']:g} MHz)")
    print(f"  fit, timing         {'yes' if report['fit'] else 'NO'}, {'met' if report['timing_met'] else 'NOT MET'}")
    if report["critical_path"] and not report["timing_met"]:
        cp = report["critical_path"]
        print(f"  critical path       {cp['from']} -> {cp['to']} ({cp['delay_ns']} ns)")
    print(f"  wall seconds        {report['wall_s']['total']:.1f} (yosys {report['wall_s']['yosys']:.1f}, "
          f"nextpnr {report['wall_s']['nextpnr']:.1f})")  # fmt: skip
    out = args.out / "report.json"
    if report["pass"]:
        print(f"cimdv-fpga: wrote {report['bitstream']} and {out}")
        return 0
    why = "does not fit" if not report["fit"] else f"misses timing at {report['target_mhz']:g} MHz"
    print(f"cimdv-fpga: the design {why}; no bitstream. Report: {out}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""``make test``: the whole pytest suite on both cores, with JUnit XML and a JSON summary.

    python -m cimdv.tb.flows.regression [--sim icarus|verilator|both] [--seed N] [-n WORKERS] [-- PYTEST_ARGS]

Writes ``build/regression/junit.xml`` (pytest's, xunit2) and ``build/regression/summary.json``:
``passed``, ``failed`` (failures and errors), ``skipped``, ``wall_s``, ``exit_code``, ``command``,
``by_simulator`` ({"icarus": {"passed", "failed", "skipped"}, "verilator": {...}}, classified by the
``[icarus]`` / ``[verilator]`` test-id parameter) and ``failures`` (test, simulator, seed, message).
Ends with the plain line ``regression: N passed, N failed, N skipped`` and exits non-zero on any failure,
or when no test ran.
"""

import argparse
import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from cimdv.tb.sim import BUILD_ROOT, REPO_ROOT, SIMULATORS

OUT_DIR = BUILD_ROOT / "regression"
_SIM_ID = re.compile(r"\[(?:[^\]]*-)?(" + "|".join(SIMULATORS) + r")(?:-[^\]]*)?\]$")


def simulator_of(test_name: str) -> str | None:
    """``"icarus"`` for ``test_x[icarus]`` or ``test_x[icarus-rows32]``; None for a test without a simulator."""
    match = _SIM_ID.search(test_name)
    return match[1] if match else None


def summarize(junit: Path) -> dict:
    """Counts from a pytest JUnit XML file, overall and per simulator."""
    summary = {
        "passed": 0,
        "failed": 0,
        "skipped": 0,
        "by_simulator": {sim: {"passed": 0, "failed": 0, "skipped": 0} for sim in SIMULATORS},
        "failures": [],
    }
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        outcome = "failed" if bad is not None else "skipped" if case.find("skipped") is not None else "passed"
        sim = simulator_of(name)
        summary[outcome] += 1
        if sim is not None:
            summary["by_simulator"][sim][outcome] += 1
        if bad is not None:
            seeds = [p.get("value") for p in case.iter("property") if p.get("name") == "seed"]
            summary["failures"].append(
                {
                    "test": f"{case.get('classname')}::{name}",
                    "simulator": sim,
                    "seed": int(seeds[0]) if seeds else None,
                    "message": (bad.get("message") or "").splitlines()[0][:300] if bad.get("message") else "",
                }
            )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cimdv.tb.flows.regression", description=__doc__.splitlines()[0])
    parser.add_argument("--sim", choices=[*SIMULATORS, "both"], default="both")
    parser.add_argument("--seed", type=int, help="one cocotb seed for every test (default: random per test)")
    parser.add_argument("-n", "--workers", default="2", help="pytest-xdist workers (default 2: the machine's cores)")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest after --")
    args = parser.parse_args(argv)

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    junit = OUT_DIR / "junit.xml"
    summary_path = OUT_DIR / "summary.json"
    junit.unlink(missing_ok=True)
    summary_path.unlink(missing_ok=True)

    command = [sys.executable, "-m", "pytest", "-n", args.workers, f"--junitxml={junit}", "--sim", args.sim]
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    command += args.pytest_args
    print("regression:", " ".join(command), flush=True)
    started = time.perf_counter()
    exit_code = subprocess.call(command, cwd=REPO_ROOT)
    wall_s = time.perf_counter() - started

    if not junit.exists():
        print(f"regression: pytest wrote no {junit} (exit {exit_code})", file=sys.stderr)
        return exit_code or 1
    summary = summarize(junit)
    summary.update(
        wall_s=round(wall_s, 1),
        exit_code=exit_code,
        sim=args.sim,
        seed=args.seed,
        command=command,
        junit=str(junit.relative_to(REPO_ROOT)),
    )
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")

    for sim, counts in summary["by_simulator"].items():
        passed, failed, skipped = counts["passed"], counts["failed"], counts["skipped"]
        print(f"regression: on {sim}: passed {passed}, failed {failed}, skipped {skipped}")
    for failure in summary["failures"]:
        print(f"regression: FAILED {failure['test']} (seed {failure['seed']}): {failure['message']}")
    print(f"regression: wall {wall_s:.1f} s; {summary_path.relative_to(REPO_ROOT)}")
    print(f"regression: {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped")
    if summary["passed"] + summary["failed"] == 0:
        print("regression: no test ran", file=sys.stderr)
        return exit_code or 1
    return exit_code if exit_code else int(summary["failed"] > 0)


if __name__ == "__main__":
    sys.exit(main())

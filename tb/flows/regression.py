"""``make test``: the regression, its coverage, its gates and its report.

    python -m cimdv.tb.flows.regression run [--sim S] [--seed N] [-n W] [--shards N --shard I] [-- PYTEST_ARGS]
    python -m cimdv.tb.flows.regression merge [--shards N] [--no-closure]
    python -m cimdv.tb.flows.regression durations

``run`` runs pytest (unit, model and DV tests on both simulators, pytest-xdist workers) into
``build/regression/shards/<I>-of-<N>/``: ``junit.xml``, ``shard.json`` and ``coverage/``
(functional-coverage exports of every simulation and Verilator ``.dat`` files, collected through
``CIMDV_COVERAGE_DIR``). Every random test draws a fresh seed, printed and recorded in the JUnit
XML; ``--seed`` fixes it. With ``--shards N --shard I`` it runs one duration-balanced shard
(pytest-split, durations from ``tests/durations.json``); without, it runs everything and merges.

``merge`` combines the shards (all of ``1..N`` must be there): JUnit, functional coverage
(then the coverage-driven closure run aims the core's random generator at the holes and the
database is merged again), code coverage (merged, waivers applied, lcov HTML), and evaluates
the gates:

=================== ================================================================
gate                rule
=================== ================================================================
tests               every test passed, and at least one ran
functional          100 % of planned functional bins outside documented waivers
line                Verilator line coverage >= 90 %
fsm                 every FSM state visited (100 %)
=================== ================================================================

Gates are enforced (exit status) on a full regression: both simulators, every test, no extra
pytest arguments; a partial run reports them as not enforced. Outputs: ``build/regression/``
``junit.xml``, ``summary.json`` (counts, per simulator, ``failures`` with seed and reproduce
command, ``seeds``, ``functional_coverage_pct``, ``line_coverage_pct``, ``toggle_coverage_pct``,
``fsm_coverage_pct``, ``gates``, ``closure``), ``index.html`` (:mod:`cimdv.tb.flows.report`), and
``coverage/`` (merged databases, the lcov HTML). The last line is
``regression: N passed, N failed, N skipped``.

``durations`` rewrites ``tests/durations.json`` (pytest-split's input: seconds per test id) from
the merged JUnit of a full run; commit it when the suite's balance has changed.
"""

import argparse
import datetime
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from cimdv.tb.sim import BUILD_ROOT, REPO_ROOT, SIMULATORS

__all__ = [
    "DURATIONS",
    "GATES",
    "OUT_DIR",
    "bucket_failures",
    "evaluate_gates",
    "main",
    "merge_junit",
    "nodeid",
    "simulator_of",
    "summarize",
]

OUT_DIR = BUILD_ROOT / "regression"
DURATIONS = REPO_ROOT / "tests" / "durations.json"
WAIVERS = REPO_ROOT / "docs" / "coverage_waivers.toml"
#: Gate thresholds (percent).
GATES = {"functional": 100.0, "line": 90.0, "fsm": 100.0}
#: Transactions the coverage-driven closure run may spend.
CLOSURE_BUDGET = 400

_SIM_ID = re.compile(r"\[(?:[^\]]*-)?(" + "|".join(SIMULATORS) + r")(?:-[^\]]*)?\]$")
_SHARD_DIR = re.compile(r"^(\d+)-of-(\d+)$")


def simulator_of(test_name: str) -> str | None:
    """``"icarus"`` for ``test_x[icarus]`` or ``test_x[icarus-rows32]``; None for a test without a simulator."""
    match = _SIM_ID.search(test_name)
    return match[1] if match else None


def nodeid(classname: str, name: str) -> str:
    """pytest node id of a JUnit case: ``tests.unit.test_cli``, ``test_x[1]`` -> ``tests/unit/test_cli.py::test_x[1]``
    (importlib mode: the class name is the dotted file path)."""
    return f"{classname.replace('.', '/')}.py::{name}"


def _outcome(case: ET.Element) -> tuple[str, ET.Element | None]:
    bad = case.find("failure")
    if bad is None:
        bad = case.find("error")
    if bad is not None:
        return "failed", bad
    return ("skipped" if case.find("skipped") is not None else "passed"), None


def _seed_of(case: ET.Element) -> int | None:
    seeds = [p.get("value") for p in case.iter("property") if p.get("name") == "seed"]
    return int(seeds[0]) if seeds else None


def summarize(junit: Path) -> dict:
    """Counts from a pytest JUnit XML file, overall and per simulator; failures; the seed of every seeded test."""
    summary = {
        "passed": 0,
        "failed": 0,
        "skipped": 0,
        "by_simulator": {sim: {"passed": 0, "failed": 0, "skipped": 0} for sim in SIMULATORS},
        "failures": [],
        "seeds": {},
    }
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        outcome, bad = _outcome(case)
        sim = simulator_of(name)
        summary[outcome] += 1
        if sim is not None:
            summary["by_simulator"][sim][outcome] += 1
        node = nodeid(case.get("classname", ""), name)
        seed = _seed_of(case)
        if seed is not None:
            summary["seeds"][node] = seed
        if bad is not None:
            message = (bad.get("message") or bad.text or "").strip()
            summary["failures"].append(
                {
                    "test": node,
                    "simulator": sim,
                    "seed": seed,
                    "message": message.splitlines()[0][:300] if message else "",
                    "reproduce": f"make test-one TEST='{node}'" + (f" SEED={seed}" if seed is not None else ""),
                }
            )
    return summary


def bucket_failures(failures: list[dict]) -> list[dict]:
    """Failures grouped by their normalised first message line (numbers, hex and paths folded), biggest first."""
    buckets: dict[str, list[dict]] = {}
    for failure in failures:
        key = re.sub(r"0x[0-9a-fA-F]+", "0x?", failure["message"])
        key = re.sub(r"(/[\w.+-]+)+", "<path>", key)
        key = re.sub(r"\d+", "N", key)
        buckets.setdefault(key or "(no message)", []).append(failure)
    ordered = sorted(buckets.items(), key=lambda kv: -len(kv[1]))
    return [{"signature": key, "count": len(items), "failures": items} for key, items in ordered]


def merge_junit(files: list[Path], out: Path) -> None:
    """One JUnit file with every test case of ``files`` (one ``testsuite``, counts recomputed)."""
    if not files:
        raise ValueError("merge_junit: no JUnit files given")
    suite = ET.Element("testsuite", name="cimdv-regression")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for path in files:
        for case in ET.parse(path).getroot().iter("testcase"):
            suite.append(case)
            counts["tests"] += 1
            counts["failures"] += case.find("failure") is not None
            counts["errors"] += case.find("error") is not None
            counts["skipped"] += case.find("skipped") is not None
            total_time += float(case.get("time", 0) or 0)
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{total_time:.3f}")
    root = ET.Element("testsuites")
    root.append(suite)
    out.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)


def evaluate_gates(summary: dict, *, enforced: bool) -> dict:
    """``{gate: {"value", "threshold", "passed", "rule"}}``; a coverage figure that was not measured fails."""
    ran = summary["passed"] + summary["failed"]
    gates = {
        "tests": {
            "value": f"{summary['passed']}/{ran}",
            "threshold": "all pass",
            "passed": ran > 0 and summary["failed"] == 0,
            "rule": "every test passed, and at least one ran",
        }
    }
    for gate, key, rule in (
        ("functional", "functional_coverage_pct", "planned functional bins hit, outside waivers"),
        ("line", "line_coverage_pct", "Verilator line coverage, outside waivers"),
        ("fsm", "fsm_coverage_pct", "FSM states visited"),
    ):
        value = summary.get(key)
        threshold = GATES[gate]
        gates[gate] = {
            "value": value,
            "threshold": threshold,
            "passed": value is not None and value >= threshold - 1e-9,
            "rule": f"{rule} >= {threshold:g} %",
        }
    for gate in gates.values():
        gate["enforced"] = enforced
    return gates


# ---- run --------------------------------------------------------------------------------------


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def run_shard(args: argparse.Namespace) -> int:
    """One pytest run (a shard, or everything) into ``build/regression/shards/<I>-of-<N>/``."""
    shards, shard = args.shards, args.shard
    if shards < 1:
        raise ValueError(f"--shards must be >= 1, got {shards}")
    if not 1 <= shard <= shards:
        raise ValueError(f"--shard must be in 1..{shards}, got {shard}")
    shards_dir = args.out / "shards"
    shard_dir = shards_dir / f"{shard}-of-{shards}"
    if shards == 1 and shards_dir.exists():
        shutil.rmtree(shards_dir)  # a whole run replaces every earlier shard
    shutil.rmtree(shard_dir, ignore_errors=True)
    coverage_dir = shard_dir / "coverage"
    coverage_dir.mkdir(parents=True)
    junit = shard_dir / "junit.xml"

    command = [sys.executable, "-m", "pytest", "-n", args.workers, f"--junitxml={junit}", "--sim", args.sim]
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    if shards > 1:
        command += [
            f"--splits={shards}",
            f"--group={shard}",
            f"--durations-path={DURATIONS}",
            "--splitting-algorithm=least_duration",
        ]
    command += args.pytest_args
    env = {**os.environ, "CIMDV_COVERAGE_DIR": str(coverage_dir)}
    print(f"regression: shard {shard}/{shards}:", " ".join(command), flush=True)
    started = time.perf_counter()
    exit_code = subprocess.call(command, cwd=REPO_ROOT, env=env)
    wall_s = time.perf_counter() - started
    meta = {
        "shard": shard,
        "shards": shards,
        "sim": args.sim,
        "seed": args.seed,
        "pytest_args": args.pytest_args,
        "command": command,
        "exit_code": exit_code,
        "wall_s": round(wall_s, 1),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": _git("rev-parse", "HEAD"),
    }
    (shard_dir / "shard.json").write_text(json.dumps(meta, indent=2) + "\n")
    if not junit.exists():
        print(f"regression: pytest wrote no {junit} (exit {exit_code})", file=sys.stderr)
        return exit_code or 1
    counts = summarize(junit)
    print(
        f"regression: shard {shard}/{shards}: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped in {wall_s:.1f} s"
    )
    if shards == 1:
        return merge(argparse.Namespace(shards=1, closure=args.closure, out=args.out, wall_s=wall_s))
    return exit_code if exit_code else int(counts["failed"] > 0)


# ---- merge ------------------------------------------------------------------------------------


def _shard_dirs(shards_dir: Path, shards: int | None) -> list[Path]:
    found = {}
    for path in sorted(shards_dir.glob("*-of-*")) if shards_dir.exists() else []:
        match = _SHARD_DIR.match(path.name)
        if match and (path / "shard.json").exists():
            found.setdefault(int(match[2]), {})[int(match[1])] = path
    if not found:
        raise ValueError(f"no shard results under {shards_dir}: run `make test` or `make test SHARDS=N SHARD=I` first")
    if shards is None:
        if len(found) > 1:
            raise ValueError(f"shard results of several splits {sorted(found)} under {shards_dir}: pass --shards N")
        shards = next(iter(found))
    have = found.get(shards, {})
    missing = [i for i in range(1, shards + 1) if i not in have]
    if missing:
        raise ValueError(f"shards {missing} of {shards} are missing under {shards_dir}")
    return [have[i] for i in range(1, shards + 1)]


def _functional(files: list[Path], out: Path) -> dict | None:
    if not files:
        return None
    from cimdv.tb.coverage.functional import merge_functional

    return merge_functional(files, out, WAIVERS)


def _code(files: list[Path], out: Path) -> dict | None:
    if not files:
        return None
    from cimdv.tb.coverage.code import merge_code_coverage

    return merge_code_coverage(files, out, WAIVERS)


def merge(args: argparse.Namespace) -> int:
    """Combine the shards, close coverage, evaluate the gates, write the summary and the HTML report."""
    out = args.out
    coverage_out = out / "coverage"
    dirs = _shard_dirs(out / "shards", args.shards)
    metas = [json.loads((d / "shard.json").read_text()) for d in dirs]
    junits = [d / "junit.xml" for d in dirs if (d / "junit.xml").exists()]
    if len(junits) != len(dirs):
        raise ValueError(f"a shard under {out / 'shards'} has no junit.xml (its pytest did not finish)")
    junit = out / "junit.xml"
    merge_junit(junits, junit)
    summary = summarize(junit)
    full = all(m["sim"] == "both" and not m["pytest_args"] for m in metas)
    seeds = {m["seed"] for m in metas}

    shutil.rmtree(coverage_out, ignore_errors=True)
    coverage_out.mkdir(parents=True)
    functional_files = sorted(f for d in dirs for f in (d / "coverage" / "functional").glob("*.yml"))
    code_files = sorted(f for d in dirs for f in (d / "coverage" / "code").glob("*.dat"))
    started = time.perf_counter()
    functional = _functional(functional_files, coverage_out / "functional_regression.yml")
    closure = None
    if functional is not None and args.closure and "verilator" in _sims(metas):
        from cimdv.tb.flows.closure import run_closure

        closure_seed = next(iter(seeds)) if len(seeds) == 1 and None not in seeds else _fresh_seed()
        closure = run_closure(
            coverage_out / "functional_regression.yml",
            coverage_out / "closure",
            seed=closure_seed,
            budget=CLOSURE_BUDGET,
        )
        closure["seed"] = closure_seed
        functional_before = functional
        functional = _functional(
            [*functional_files, Path(closure["coverage_file"])], coverage_out / "functional_merged.yml"
        )
        functional["before_closure_pct"] = functional_before["pct"]
    code = _code(code_files, coverage_out / "code")
    coverage_wall_s = time.perf_counter() - started

    shard_wall = [m["wall_s"] for m in metas]
    summary.update(
        functional_coverage_pct=None if functional is None else round(functional["pct"], 2),
        line_coverage_pct=None if code is None else round(code["line_pct"], 2),
        toggle_coverage_pct=None if code is None else round(code["toggle_pct"], 2),
        fsm_coverage_pct=None if code is None else round(code["fsm_pct"], 2),
        full_regression=full,
        shards=len(dirs),
        shard_wall_s=shard_wall,
        wall_s=round(getattr(args, "wall_s", None) or max(shard_wall), 1),
        coverage_wall_s=round(coverage_wall_s, 1),
        sim=metas[0]["sim"] if len({m["sim"] for m in metas}) == 1 else "mixed",
        seed=metas[0]["seed"] if len(seeds) == 1 else None,
        commands=[m["command"] for m in metas],
        git=_git("rev-parse", "HEAD"),
        branch=_git("rev-parse", "--abbrev-ref", "HEAD"),
        finished=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        junit=str(junit),
        functional=functional,
        code=code,
        closure=closure,
    )
    summary["gates"] = evaluate_gates(summary, enforced=full)
    summary["failure_buckets"] = bucket_failures(summary["failures"])
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    from cimdv.tb.flows.report import write_report

    html = write_report(summary, out / "index.html")
    _print(summary, html)
    failed_gates = [name for name, gate in summary["gates"].items() if not gate["passed"]]
    if summary["passed"] + summary["failed"] == 0:
        print("regression: no test ran", file=sys.stderr)
        return 1
    if summary["failed"]:
        return 1
    if full and failed_gates:
        print(f"regression: gates failed: {', '.join(failed_gates)}", file=sys.stderr)
        return 1
    return 0


def _sims(metas: list[dict]) -> set[str]:
    return {s for m in metas for s in (SIMULATORS if m["sim"] == "both" else (m["sim"],))}


def _fresh_seed() -> int:
    return secrets.randbelow(2**31)


def _pct(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f} %"


def _print(summary: dict, html: Path) -> None:
    for sim, counts in summary["by_simulator"].items():
        passed, failed, skipped = counts["passed"], counts["failed"], counts["skipped"]
        print(f"regression: on {sim}: passed {passed}, failed {failed}, skipped {skipped}")
    for bucket in summary["failure_buckets"]:
        print(f"regression: {bucket['count']} failure(s): {bucket['signature']}")
        for failure in bucket["failures"]:
            print(f"regression:   {failure['test']} (seed {failure['seed']}): {failure['reproduce']}")
    print(
        f"regression: coverage functional {_pct(summary['functional_coverage_pct'])}, line "
        f"{_pct(summary['line_coverage_pct'])}, toggle {_pct(summary['toggle_coverage_pct'])}, FSM "
        f"{_pct(summary['fsm_coverage_pct'])}"
    )
    closure = summary.get("closure")
    if closure:
        print(
            f"regression: closure of the core's MVM groups {closure['before_pct']:.2f} % -> "
            f"{closure['after_pct']:.2f} %; "
            "to that goal from empty coverage: guided "
            f"{closure['guided_transactions']} transactions, unguided {closure['unguided_transactions']}"
            f"{'' if closure['unguided_reached_goal'] else ' (budget spent, goal not reached)'}"
        )
    for name, gate in summary["gates"].items():
        state = "pass" if gate["passed"] else "FAIL"
        enforced = "" if gate["enforced"] else " (partial regression: not enforced)"
        print(f"regression: gate {name}: {state} ({gate['value']} vs {gate['threshold']}){enforced}")
    print(f"regression: wall {summary['wall_s']:.1f} s; {html}")
    print(f"regression: {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped")


# ---- durations --------------------------------------------------------------------------------


def write_durations(junit: Path = OUT_DIR / "junit.xml", out: Path = DURATIONS) -> int:
    """pytest-split's durations file (``{node id: seconds}``) from a merged JUnit file."""
    if not junit.exists():
        raise ValueError(f"{junit} does not exist: run the full regression first (make test)")
    durations = {
        nodeid(case.get("classname", ""), case.get("name", "")): round(float(case.get("time", 0) or 0), 3)
        for case in ET.parse(junit).getroot().iter("testcase")
    }
    out.write_text(json.dumps(dict(sorted(durations.items())), indent=1) + "\n")
    print(f"regression: {len(durations)} durations, {sum(durations.values()):.0f} s in all, -> {out}")
    return 0


# ---- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cimdv.tb.flows.regression", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the tests (one shard or all) and, when not sharded, merge")
    run.add_argument("--sim", choices=[*SIMULATORS, "both"], default="both")
    run.add_argument("--seed", type=int, help="one cocotb seed for every test (default: random per test)")
    run.add_argument("-n", "--workers", default="2", help="pytest-xdist workers (default 2: the machine's cores)")
    run.add_argument("--shards", type=int, default=1, help="split the regression into N duration-balanced shards")
    run.add_argument("--shard", type=int, default=1, help="which shard to run, 1..N")
    run.add_argument("--no-closure", dest="closure", action="store_false", help="skip the coverage-closure run")
    run.add_argument("--out", type=Path, default=OUT_DIR, help=f"output directory (default {OUT_DIR})")
    run.add_argument("pytest_args", nargs="*", help="passed to pytest after --")
    merge_cmd = sub.add_parser("merge", help="combine shard results: JUnit, coverage, closure, gates, report")
    merge_cmd.add_argument("--shards", type=int, help="the N of the shards to merge (default: the one present)")
    merge_cmd.add_argument("--no-closure", dest="closure", action="store_false", help="skip the coverage-closure run")
    merge_cmd.add_argument("--out", type=Path, default=OUT_DIR, help=f"output directory (default {OUT_DIR})")
    sub.add_parser("durations", help="rewrite tests/durations.json from build/regression/junit.xml")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return run_shard(args)
        if args.command == "merge":
            return merge(args)
        return write_durations()
    except ValueError as exc:
        parser.error(str(exc))
    return 2


if __name__ == "__main__":
    sys.exit(main())

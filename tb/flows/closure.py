"""Coverage-driven closure: aim the core's random generator at the holes of a merged functional-coverage file.

    python -m cimdv.tb.flows.closure --merged build/regression/coverage/functional_regression.yml \\
        --out build/closure --seed 1 --budget 400

The goal is every bin of the core's MVM covergroups (:data:`~cimdv.tb.coverage.functional.CLOSURE_GROUPS`)
outside the waivers. :func:`run_closure` reads the holes the regression left in it, runs the closure bench
(:mod:`cimdv.tb.core.closure`) on a 16 x 12 core on Verilator with the fast timing, which targets the holes
with :class:`~cimdv.tb.coverage.stimulus.CoreStimulus` (every result checked exactly against the golden
model), then measures the whole goal from empty coverage guided and unguided (same seed, unguided capped at
the budget). Its own coverage export is merged with the regression's to give the figures after closure.
Outputs under ``out_dir``: ``closure.json`` (the returned dict), ``closure.yml`` (the bench's coverage),
``before.yml`` / ``after.yml`` (merged databases), ``bench.json`` (the bench's raw result).
"""

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from cimdv.tb import sim
from cimdv.tb.core.closure import PLAN_ENV
from cimdv.tb.coverage import functional as fc

__all__ = ["GEOMETRY", "WALL_S", "run_closure", "main"]

#: The closure bench's core: the 16 x 12 geometry of the DV tests (tests/dv/test_core.py).
GEOMETRY = {"rows": 16, "cols": 12, "lanes": 4, "pulse_bits": 8}
#: Wall-clock seconds the bench's three phases may use together (the build comes on top).
WALL_S = 90.0
_BENCH = "cimdv.tb.core.closure"


@contextlib.contextmanager
def _without_code_coverage():
    """The bench is not part of the code-coverage measurement: no instrumented build for it."""
    saved = os.environ.pop(sim.COVERAGE_ENV, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[sim.COVERAGE_ENV] = saved


def _goal_pct(result: dict) -> tuple[float, int, int]:
    bins = sum(result["groups"][g]["bins"] for g in fc.CLOSURE_GROUPS)
    hit = sum(result["groups"][g]["hit"] for g in fc.CLOSURE_GROUPS)
    return (100.0 * hit / bins if bins else 100.0), bins, hit


def run_closure(
    merged: Path,
    out_dir: Path,
    *,
    seed: int,
    budget: int,
    wall_s: float = WALL_S,
    waivers: Path | None = fc.WAIVERS_PATH,
) -> dict:
    """Close the holes of ``merged`` in the core's goal, and measure guided against unguided closure.

    Parameters
    ----------
    merged : Path
        A merged functional-coverage database (:func:`~cimdv.tb.coverage.functional.merge_functional`).
    out_dir : Path
        Where the outputs go (created).
    seed : int
        Seed of the bench (generator, weights).
    budget : int
        Transactions each phase may spend.
    wall_s : float
        Seconds the bench's phases may use together.
    waivers : Path or None
        Waived bins are not part of the goal.

    Returns
    -------
    dict
        ``before_pct`` / ``after_pct`` (the goal's coverage in ``merged`` and after merging the bench's
        export), ``goal_pct`` (100), ``before_total_pct`` / ``after_total_pct`` (every covergroup),
        ``goal_reached``, ``closure_transactions`` (spent on the holes),
        ``guided_transactions`` / ``unguided_transactions`` and ``guided_reached_goal`` /
        ``unguided_reached_goal`` (from empty coverage), ``holes_before`` / ``holes_after``
        ({group: [bins]}), ``wall_s``, ``coverage_file`` (the bench's export), ``vectors_checked``,
        ``seed``, ``budget``, ``geometry``. Also written to ``out_dir/closure.json``.
    """
    started = time.perf_counter()
    merged = Path(merged)
    if not merged.is_file():
        raise ValueError(f"merged: {merged} does not exist")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive integer, not {budget!r}")
    if not wall_s > 0:
        raise ValueError(f"wall_s must be positive, not {wall_s!r}")
    out_dir = Path(out_dir).resolve()  # the simulator runs in its own directory
    out_dir.mkdir(parents=True, exist_ok=True)
    before = fc.merge_functional([merged], out_dir / "before.yml", waivers)
    specs = fc.group_specs(pulse_bits=GEOMETRY["pulse_bits"])
    rules = fc.load_waivers(waivers)
    goal = {
        g: sorted(b for b in fc.planned_bins(specs[g]) if not any(w.matches(g, b) for w in rules))
        for g in fc.CLOSURE_GROUPS
    }
    holes_before = {}
    for g in fc.CLOSURE_GROUPS:
        holes = before["groups"][g]["holes"]
        holes_before[g] = goal[g] if holes == [fc.NOT_SAMPLED] else list(holes)
    before_pct, _, _ = _goal_pct(before)

    coverage_file = out_dir / "closure.yml"
    bench_file = out_dir / "bench.json"
    for stale in (coverage_file, bench_file):
        stale.unlink(missing_ok=True)
    plan = {"holes": holes_before, "goal": goal, "budget": budget, "wall_s": wall_s, "result": str(bench_file)}
    env = {PLAN_ENV: json.dumps(plan), fc.FCOV_ENV: str(coverage_file)}
    with _without_code_coverage():
        sim.run("core", GEOMETRY, "verilator", _BENCH, testcase="coverage_closure", seed=seed, extra_env=env)
    bench = json.loads(bench_file.read_text())
    after = fc.merge_functional([merged, coverage_file], out_dir / "after.yml", waivers)
    after_pct, bins, hit = _goal_pct(after)
    phases = bench["phases"]
    result = {
        "before_pct": round(before_pct, 2),
        "after_pct": round(after_pct, 2),
        "goal_pct": 100.0,
        "before_total_pct": round(before["pct"], 2),
        "after_total_pct": round(after["pct"], 2),
        "goal_reached": hit == bins,
        "goal_bins": bins,
        "closure_transactions": phases["holes"]["transactions"],
        "guided_transactions": phases["guided"]["transactions"],
        "guided_reached_goal": phases["guided"]["reached"],
        "unguided_transactions": phases["unguided"]["transactions"],
        "unguided_reached_goal": phases["unguided"]["reached"],
        "stopped_by": {name: phase["stopped_by"] for name, phase in phases.items()},
        "holes_before": {g: h for g, h in holes_before.items() if h},
        "holes_after": {g: after["groups"][g]["holes"] for g in fc.CLOSURE_GROUPS if after["groups"][g]["holes"]},
        "vectors_checked": bench["vectors_checked"],
        "wall_s": round(time.perf_counter() - started, 1),
        "coverage_file": str(coverage_file),
        "seed": seed,
        "budget": budget,
        "geometry": dict(GEOMETRY),
    }
    (out_dir / "closure.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: run the closure on a merged file and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m cimdv.tb.flows.closure", description=__doc__.splitlines()[0])
    parser.add_argument("--merged", type=Path, required=True, help="merged functional-coverage database (YAML)")
    parser.add_argument("--out", type=Path, default=sim.BUILD_ROOT / "closure", help="output directory")
    parser.add_argument("--seed", type=int, default=1, help="seed of the bench (default 1)")
    parser.add_argument("--budget", type=int, default=400, help="transactions per phase (default 400)")
    parser.add_argument("--wall-s", type=float, default=WALL_S, help=f"seconds for the bench (default {WALL_S:g})")
    args = parser.parse_args(argv)
    try:
        r = run_closure(args.merged, args.out, seed=args.seed, budget=args.budget, wall_s=args.wall_s)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"closure: goal {r['goal_bins']} bins, {r['before_pct']:.2f} % -> {r['after_pct']:.2f} % "
          f"({r['closure_transactions']} transactions on the holes)")
    stopped = r["stopped_by"]["unguided"]
    print(f"closure: from empty coverage, guided {r['guided_transactions']} transactions"
          f"{'' if r['guided_reached_goal'] else ' (goal not reached)'}, unguided {r['unguided_transactions']}"
          f"{'' if r['unguided_reached_goal'] else f' (goal not reached: {stopped} spent)'}; wall {r['wall_s']} s")
    print(f"closure: wrote {args.out / 'closure.json'}")
    return 0 if r["goal_reached"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""``make bench``: simulation-speed benchmarks, written to ``build/bench/results.json``.

For a 256 x 256 core (4-bit signed inputs, 8-bit outputs, pulse multiplier 1) it measures,
side by side in one run (interleaved repeats, medians), on each simulator:

* the cocotb MVM workload (responder, monitors and scoreboard active; every output checked);
* ``clock_only_cycles_per_s``: the same build with only cocotb's C clock running and one
  ``Timer`` awaited, so no Python runs per cycle: the ceiling of any cocotb test;
* ``native_clock_only_cycles_per_s``: the same Verilog with a plain Verilog clock and no
  cocotb at all (Verilator ``--binary`` / Icarus ``vvp``), for reference.

Keys: ``core_mvm_verilator`` and ``core_mvm_icarus`` at NeuRRAM's phase timing (sample 3,
integrate 505, compare 17, decrement 1 cycles at 100 MHz), ``core_mvm_verilator_fast`` at
the shortest timing the contract allows. Targets are checked here, never in timed tests:
``cycles_per_s / clock_only_cycles_per_s >= 0.3`` for ``core_mvm_verilator``.
"""

import argparse
import json
import secrets
import statistics
import sys
import time

from cimdv.tb import sim as simflow
from cimdv.tb.flows.clock_only import measure as native_clock_only
from cimdv.tb.flows.workload import FULL_CORE, run_clock_only, run_workload

__all__ = ["main", "RATIO_TARGET"]

#: cocotb cycles/s over clock-only cycles/s that the Verilator default-timing run must reach.
RATIO_TARGET = 0.3

CASES = {
    # key: (simulator, timing, vectors, clock-only cycles, native clock-only cycles)
    "core_mvm_verilator": ("verilator", "neurram", 16, 400_000, 2_000_000),
    "core_mvm_verilator_fast": ("verilator", "fast", 64, 400_000, 2_000_000),
    "core_mvm_icarus": ("icarus", "neurram", 3, 20_000, 100_000),
}


def bench_case(key, *, repeats, seed, scale):
    sim, timing, vectors, clock_cycles, native_cycles = CASES[key]
    vectors = max(1, int(vectors * scale))
    clock_cycles = max(1000, int(clock_cycles * scale))
    workloads, clocks = [], []
    for r in range(repeats):  # interleaved, so load on the shared machine hits both alike
        clocks.append(run_clock_only(sim=sim, cycles=clock_cycles, seed=seed + r)["cycles_per_s"])
        workloads.append(run_workload(sim=sim, seed=seed + r, vectors=vectors, timing=timing))
    build = simflow.build("core", FULL_CORE, sim)
    native = native_clock_only(build.verilog, "core", sim, max(1000, int(native_cycles * scale)))
    cycles_per_s = statistics.median(w["sim_cycles_per_s"] for w in workloads)
    clock_only = statistics.median(clocks)
    first = workloads[0]
    return {
        "simulator": sim,
        "timing": timing,
        "phase_cycles": first["timing"],
        "rows": first["rows"],
        "cols": first["cols"],
        "in_bits": first["in_bits"],
        "signed": first["signed"],
        "out_bits": first["out_bits"],
        "pulse_mult": first["pulse_mult"],
        "vectors_per_run": vectors,
        "repeats": repeats,
        "mismatches": sum(w["mismatches"] for w in workloads),
        "cycles_per_mvm": statistics.median(w["cycles_per_mvm"] for w in workloads),
        "mvm_per_s": statistics.median(w["mvm_per_s"] for w in workloads),
        "cycles_per_s": cycles_per_s,
        "clock_only_cycles_per_s": clock_only,
        "ratio_to_clock_only": cycles_per_s / clock_only,
        "native_clock_only_cycles_per_s": native.cycles_per_s,
        "samples": {"cycles_per_s": [w["sim_cycles_per_s"] for w in workloads], "clock_only_cycles_per_s": clocks},
    }


def main(argv=None):
    p = argparse.ArgumentParser(prog="cimdv-bench", description=__doc__.splitlines()[0])
    p.add_argument("--case", action="append", choices=sorted(CASES), help="run only these cases (repeatable)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats per case (default: 3)")
    p.add_argument("--scale", type=float, default=1.0, help="scale vectors and cycles (smoke runs: 0.1)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--strict", action="store_true", help="exit non-zero when a speed target is missed")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, not {args.repeats}")
    if args.scale <= 0:
        p.error(f"--scale must be > 0, not {args.scale}")
    seed = secrets.randbelow(2**31) if args.seed is None else args.seed
    out = simflow.BUILD_ROOT / "bench" / "results.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    wall0 = time.perf_counter()
    for key in args.case or list(CASES):
        print(f"cimdv-bench: {key} ...", flush=True)
        results[key] = bench_case(key, repeats=args.repeats, seed=seed, scale=args.scale)
        r = results[key]
        print(
            f"  {r['cycles_per_mvm']:.0f} cycles/MVM, {r['mvm_per_s']:.1f} MVM/s, {r['cycles_per_s']:,.0f} cycles/s; "
            f"clock only {r['clock_only_cycles_per_s']:,.0f} (ratio {r['ratio_to_clock_only']:.2f}); "
            f"native {r['native_clock_only_cycles_per_s']:,.0f}; mismatches {r['mismatches']}"
        )
    targets = {}
    if "core_mvm_verilator" in results:
        ratio = results["core_mvm_verilator"]["ratio_to_clock_only"]
        targets["core_mvm_verilator_ratio"] = {"value": ratio, "target": RATIO_TARGET, "met": ratio >= RATIO_TARGET}
    results["targets"] = targets
    results["meta"] = {
        "seed": seed,
        "repeats": args.repeats,
        "scale": args.scale,
        "wall_s": time.perf_counter() - wall0,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"cimdv-bench: wrote {out}")
    bad = [k for k, v in results.items() if isinstance(v, dict) and v.get("mismatches")]
    if bad:
        print(f"cimdv-bench: FAILED: output mismatches in {bad}")
        return 1
    missed = [k for k, t in targets.items() if not t["met"]]
    for k in missed:
        print(f"cimdv-bench: target missed: {k} = {targets[k]['value']:.2f} < {targets[k]['target']}")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())

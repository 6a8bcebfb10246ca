"""``make sim``: random 256 x 256 MVMs through the core RTL, checked against the golden model.

Backdoor-loads a random weight matrix into the analog-macro responder, streams a batch of
random input vectors through the generated Verilog (Verilator by default), compares every
neuron's sign and count with the transaction-level model, prints a table and writes
``build/sim/summary.json``. (A later issue turns this into the end-to-end network demo.)
"""

import argparse
import json
import secrets
import sys
import time
from pathlib import Path

from cimdv.tb.flows.workload import TIMINGS, run_workload
from cimdv.tb.sim import BUILD_ROOT, SIMULATORS

__all__ = ["main"]


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value}")
    return value


def parser():
    p = argparse.ArgumentParser(prog="cimdv-sim", description=__doc__.splitlines()[0])
    p.add_argument("--sim", choices=SIMULATORS, default="verilator", help="simulator (default: verilator)")
    p.add_argument("--vectors", type=positive_int, default=16, help="input vectors in the batch (default: 16)")
    p.add_argument(
        "--timing",
        choices=sorted(TIMINGS),
        default="neurram",
        help="phase timing: NeuRRAM's defaults at 100 MHz, or the contract's minimum (default: neurram)",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default: fresh, printed)")
    p.add_argument("--out", type=Path, default=BUILD_ROOT / "sim" / "summary.json", help="summary JSON path")
    return p


def table(rows):
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def main(argv=None):
    args = parser().parse_args(argv)
    seed = secrets.randbelow(2**31) if args.seed is None else args.seed
    print(f"cimdv-sim: 256 x 256 core, {args.vectors} vectors, {args.timing} timing, {args.sim}, seed {seed}")
    wall0 = time.perf_counter()
    report = run_workload(sim=args.sim, seed=seed, vectors=args.vectors, timing=args.timing)
    wall = time.perf_counter() - wall0
    summary = {
        "simulator": args.sim,
        "seed": seed,
        "rows": report["rows"],
        "cols": report["cols"],
        "in_bits": report["in_bits"],
        "out_bits": report["out_bits"],
        "timing": args.timing,
        "vectors": report["vectors"],
        "matches": report["matches"],
        "mismatches": report["mismatches"],
        "cycles_per_mvm": report["cycles_per_mvm"],
        "sim_wall_s": report["wall_s"],
        "sim_cycles_per_s": report["sim_cycles_per_s"],
        "mvm_per_s": report["mvm_per_s"],
        "mean_count": report["mean_count"],
        "saturated_fraction": report["saturated_fraction"],
        "wall_s": wall,
        "reproduce": (
            f"make sim SIM={args.sim} SIM_ARGS='--vectors {args.vectors} --timing {args.timing} --seed {seed}'"
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        table(
            [
                ("vectors", summary["vectors"]),
                ("matches", summary["matches"]),
                ("mismatches", summary["mismatches"]),
                ("cycles per MVM", f"{summary['cycles_per_mvm']:.0f}"),
                ("wall seconds (simulation)", f"{summary['sim_wall_s']:.2f}"),
                ("wall seconds (total, incl. build)", f"{wall:.2f}"),
                ("simulated cycles per second", f"{summary['sim_cycles_per_s']:,.0f}"),
                ("MVMs per second", f"{summary['mvm_per_s']:.1f}"),
                (
                    "mean |count|, saturated fraction",
                    f"{summary['mean_count']:.1f}, {summary['saturated_fraction']:.3f}",
                ),
            ]
        )
    )
    print(f"cimdv-sim: wrote {args.out}")
    if summary["mismatches"] or summary["matches"] != summary["vectors"]:
        print(f"cimdv-sim: FAILED: {summary['mismatches']} mismatching vector(s); reproduce: {summary['reproduce']}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make sim``: a digit classifier, trained noise-aware and quantised, run end to end on the simulated chip.

Steps (docs/nn.md): the fixed split of scikit-learn's digits; float training with weight noise,
then 4-bit quantisation-aware fine-tuning; the mapping table (differential pairs, bias rows,
a layer split over two cores with its partial sums reduced over the NoC, two layers sharing a
core); then the test split through (a) the float network, (b) the quantised network, ideal,
(c) the physical chip model (programming, relaxation, read noise, per-neuron offsets and quanta)
over several seeds, a weight-noise sweep, the same for a network trained without weight noise,
and (d) the chip RTL with the physical model as every tile's analog macro on the first
``--rtl-images`` test images, compared output by output with (c).

Writes ``build/sim/``: ``summary.json``, ``mapping.json`` and ``mapping.md`` (the mapping table),
``network.json`` (the integer network), and the plots ``confusion_matrix.png``,
``accuracy_vs_weight_noise.png``, ``adc_counts.png``. Exits 1 when an RTL output differs from
the model (printing the first difference, the seed and the command that reproduces it).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cimdv.model.nn.chip import ChipModel, ChipNoise
from cimdv.model.nn.network import TrainParams
from cimdv.tb.chip.nn import TIMINGS
from cimdv.tb.flows import nn
from cimdv.tb.flows.nn_plots import plot_all
from cimdv.tb.sim import BUILD_ROOT, SIMULATORS

__all__ = ["main", "WEIGHT_NOISE", "ACCURACY_GAP_PP"]

#: Extra weight-noise levels of the sweep (σ as a fraction of the top level's conductance).
WEIGHT_NOISE = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
#: Target: the chip model's mean accuracy within this many percentage points of the quantised network.
ACCURACY_GAP_PP = 2.0


class _Parser(argparse.ArgumentParser):
    """argparse, with the list of valid options on any usage error."""

    def error(self, message):
        options = sorted(s for a in self._actions for s in a.option_strings if s.startswith("--"))
        self.exit(
            2,
            f"{self.prog}: error: {message}\n{self.prog}: valid options: {' '.join(options)} "
            f"(see {self.prog} --help)\n",
        )


def _int_at_least(lo, words):
    """An argparse type: an integer >= ``lo`` (``words`` names the bound in the message)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {words}, not {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected {words}, not {value}")
        return value

    return parse


positive_int = _int_at_least(1, "a positive integer")
non_negative_int = _int_at_least(0, "an integer >= 0")


def parser():
    p = _Parser(prog="cimdv-sim", description=__doc__.splitlines()[0])
    p.add_argument(
        "--sim", choices=SIMULATORS, default="verilator", help="simulator of the RTL run (default: verilator)"
    )
    p.add_argument(
        "--seed",
        type=non_negative_int,
        default=1,
        help="first chip seed: programming draws and read noise; seeds SEED..SEED+N-1 (default: 1)",
    )
    p.add_argument("--seeds", type=positive_int, default=5, help="chip-model seeds N for mean and std (default: 5)")
    p.add_argument(
        "--rtl-images",
        type=non_negative_int,
        default=50,
        help="test images through the RTL, with seed SEED (default: 50; 0 skips the RTL run)",
    )
    p.add_argument(
        "--timing",
        choices=sorted(TIMINGS),
        default="neurram",
        help="the cores' phase timing in the RTL run (default: neurram)",
    )
    p.add_argument(
        "--sweep-seeds",
        type=non_negative_int,
        default=3,
        help="seeds per weight-noise level of the sweep (default: 3; 0 skips the sweep)",
    )
    p.add_argument("--out-dir", type=Path, default=BUILD_ROOT / "sim", help="output directory (default: build/sim)")
    return p


def table(rows):
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def _reproduce(args):
    return (
        f"make sim SIM={args.sim} SEED={args.seed} SIM_ARGS='--seeds {args.seeds} --rtl-images {args.rtl_images} "
        f"--timing {args.timing} --sweep-seeds {args.sweep_seeds}'"
    )


def _chip_runs(prep, noise, seeds, desc):
    """The chip model over the test split, once per seed."""
    return [
        ChipModel(prep.net, prep.table, noise, seed=s).run(prep.test_codes) for s in tqdm(seeds, desc=desc, unit="seed")
    ]


def _sweep(prep, seeds, desc):
    """``[(weight_sigma, [accuracy per seed])]``: programming and relaxation replaced by Gaussian weight
    noise of each :data:`WEIGHT_NOISE` level, every other term as in the physical model."""
    seeds = list(seeds)
    if not seeds:
        return []
    got = {}
    for f, s in tqdm([(f, s) for f in WEIGHT_NOISE for s in seeds], desc=desc, unit="run"):
        noise = ChipNoise(g_tol_uS=0.0, relax_time_s=None, weight_sigma=f)
        result = ChipModel(prep.net, prep.table, noise, seed=s).run(prep.test_codes)
        got.setdefault(f, []).append(result.accuracy(prep.digits.y_test))
    return [(f, got[f]) for f in WEIGHT_NOISE]


def run(args):
    """The whole demo; returns the summary dict (also written to ``args.out_dir/summary.json``)."""
    wall0 = time.perf_counter()
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"cimdv-sim: digits on a 2-core 256x256 chip; seed {args.seed}, {args.seeds} seeds, "
        f"{args.rtl_images} RTL images on {args.sim}"
    )
    t0 = time.perf_counter()
    prep = nn.prepare()
    train_s = time.perf_counter() - t0
    print(f"cimdv-sim: trained and quantised in {train_s:.1f} s; mapping table ({len(prep.table.blocks)} blocks):")
    print(prep.table.markdown())
    prep.table.save(out / "mapping.json")
    (out / "mapping.md").write_text(prep.table.markdown() + "\n")
    (out / "network.json").write_text(json.dumps(prep.net.to_dict()) + "\n")
    labels, test = prep.digits.y_test, prep.test_codes

    acc_float = float(np.mean(prep.float_net.predict(test) == labels))
    acc_quant = ChipModel(prep.net, prep.table, ChipNoise.none()).run(test).accuracy(labels)
    seeds = list(range(args.seed, args.seed + args.seeds))
    physical = ChipNoise()
    t0 = time.perf_counter()
    results = _chip_runs(prep, physical, seeds, "chip model, test split")
    model_wall = time.perf_counter() - t0
    accs, first = [r.accuracy(labels) for r in results], results[0]
    sweep = _sweep(prep, range(args.seed, args.seed + args.sweep_seeds), "weight-noise sweep")

    # The same flow without noise-aware training: what the noise costs a network not trained for it.
    plain = nn.prepare(TrainParams(weight_noise=0.0))
    plain_quant = ChipModel(plain.net, plain.table, ChipNoise.none()).run(test).accuracy(labels)
    plain_accs = [r.accuracy(labels) for r in _chip_runs(plain, physical, seeds, "same, no noise-aware training")]
    plain_sweep = _sweep(plain, range(args.seed, args.seed + args.sweep_seeds), "sweep, no noise-aware training")

    rtl = {"rtl_images": 0, "rtl_agreement": None, "rtl_accuracy": None, "rtl_wall_s": None}
    difference = reproduce_rtl = None
    if args.rtl_images:
        n = min(args.rtl_images, len(test))
        with tqdm(total=n * prep.table.layers, desc=f"RTL on {args.sim}", unit="layer-image") as bar:

            def progress(done):
                bar.update(done - bar.n)

            run_ = nn.run_rtl(
                prep.net,
                prep.table,
                physical,
                args.seed,
                test[:n],
                range(n),
                sim=args.sim,
                timing=args.timing,
                progress=progress,
            )
            progress(n * prep.table.layers)
        agree, difference = nn.compare(run_, first)
        reproduce_rtl = run_.reproduce
        rtl = {
            "rtl_images": n,
            "rtl_agreement": float(agree.mean()),
            "rtl_accuracy": float(np.mean(run_.predictions == labels[:n])),
            "rtl_wall_s": run_.wall_s,
            "rtl_build_s": run_.build_s,
            "rtl_sim_ms": run_.sim_ns / 1e6,
            "rtl_model_accuracy": float(np.mean(first.predictions[:n] == labels[:n])),
        }

    plots = plot_all(
        out,
        labels=labels,
        predictions=first.predictions,
        sweep=sweep,
        plain_sweep=plain_sweep,
        quantized=acc_quant,
        chip_mean=float(np.mean(accs)),
        block_counts=first.block_counts,
        table=prep.table,
    )
    gap = (acc_quant - float(np.mean(accs))) * 100
    summary = {
        "accuracy_float": acc_float,
        "accuracy_quantized": acc_quant,
        "accuracy_chip_mean": float(np.mean(accs)),
        "accuracy_chip_std": float(np.std(accs)),
        **{k: rtl[k] for k in ("rtl_images", "rtl_agreement", "rtl_accuracy")},
        "wall_s": time.perf_counter() - wall0,
        "simulator": args.sim,
        "timing": args.timing,
        "seed": args.seed,
        "chip_seeds": seeds,
        "accuracy_chip_per_seed": accs,
        "chip_gap_pp": gap,
        "test_images": len(test),
        "train_images": len(prep.train_codes),
        "train_s": train_s,
        "model_wall_s": model_wall,
        "model_wall_per_seed_s": model_wall / len(seeds),
        **{k: v for k, v in rtl.items() if k not in ("rtl_images", "rtl_agreement", "rtl_accuracy")},
        "rtl_first_difference": difference,
        "weight_noise_sweep": [{"weight_sigma": f, "accuracy": a} for f, a in sweep],
        "without_noise_training": {
            "accuracy_quantized": plain_quant,
            "accuracy_chip_mean": float(np.mean(plain_accs)),
            "accuracy_chip_std": float(np.std(plain_accs)),
            "weight_noise_sweep": [{"weight_sigma": f, "accuracy": a} for f, a in plain_sweep],
        },
        "targets": {
            "chip_within_2pp_of_quantized": gap <= ACCURACY_GAP_PP,
            "rtl_agreement_1": rtl["rtl_agreement"] == 1.0 if args.rtl_images else None,
        },
        "plots": {k: str(v) for k, v in plots.items()},
        "reproduce": _reproduce(args),
        "reproduce_rtl": reproduce_rtl,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f} %"


def report(s):
    plain = s["without_noise_training"]
    plain_text = (
        f"{_pct(plain['accuracy_chip_mean'])} ± {100 * plain['accuracy_chip_std']:.2f} "
        f"(quantised {_pct(plain['accuracy_quantized'])})"
    )
    rows = [
        ("test images (train images)", f"{s['test_images']} ({s['train_images']})"),
        ("(a) float", _pct(s["accuracy_float"])),
        ("(b) quantised, ideal", _pct(s["accuracy_quantized"])),
        (
            f"(c) chip model, {len(s['chip_seeds'])} seeds",
            f"{_pct(s['accuracy_chip_mean'])} ± {100 * s['accuracy_chip_std']:.2f} (gap {s['chip_gap_pp']:+.2f} pp)",
        ),
        ("    same, trained without weight noise", plain_text),
        (f"(d) RTL, {s['rtl_images']} images ({s['simulator']})", _pct(s["rtl_accuracy"])),
        ("    same images, chip model", _pct(s.get("rtl_model_accuracy"))),
        ("    RTL outputs identical to (c)", _pct(s["rtl_agreement"])),
        ("chip model wall, per seed", f"{s['model_wall_per_seed_s']:.2f} s"),
        ("RTL wall (build)", "-" if s["rtl_wall_s"] is None else f"{s['rtl_wall_s']:.1f} s ({s['rtl_build_s']:.1f} s)"),
        ("total wall", f"{s['wall_s']:.1f} s"),
    ]
    return table(rows)


def main(argv=None):
    args = parser().parse_args(argv)
    s = run(args)
    print(report(s))
    print(
        f"cimdv-sim: wrote {args.out_dir}/summary.json, mapping.json, mapping.md, network.json and "
        f"{', '.join(Path(p).name for p in s['plots'].values())}"
    )
    if not s["targets"]["chip_within_2pp_of_quantized"]:
        print(
            f"cimdv-sim: target missed: chip model {s['chip_gap_pp']:.2f} pp below the quantised network "
            f"(target {ACCURACY_GAP_PP} pp)"
        )
    if s["rtl_images"] and s["rtl_agreement"] != 1.0:
        print(
            f"cimdv-sim: FAILED: RTL outputs differ from the chip model: {s['rtl_first_difference']}\n"
            f"cimdv-sim: seed {args.seed}; reproduce: {s['reproduce']}\n"
            f"cimdv-sim: the simulation alone: {s['reproduce_rtl']}"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

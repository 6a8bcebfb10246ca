"""``make model-report``: validation of the physical model against published NeuRRAM figures.

Writes ``build/model/report.json`` and PNG plots in ``build/model/``:

* ``rel_error_verify_only``, ``rel_error_relax_1s``, ``rel_error_relax_1d``: relative MVM
  error (per-column linear fit; 128 Gaussian weights per column, 4-bit signed inputs, sign
  mapping, 1-40 µS) — published ~0.04, ~0.10, ~0.17, accepted within ±25 %;
* ``program_fail_fraction``: cells the incremental write-verify could not bring into the
  ±1 µS window on a 256 x 256 array of mapped weights (the chip saw 0.2-0.8 %);
* plots: IF-ADC transfer curve, MVM error histograms, error versus relaxation time.
"""

import argparse
import json
import sys
import time

import numpy as np

from cimdv.model.array import ArrayParams
from cimdv.model.conductance import map_weights
from cimdv.model.physical import PhysicalParams
from cimdv.model.programming import program
from cimdv.model.validation import REFERENCE_POINTS, adc_transfer_curve, relative_mvm_error
from cimdv.tb.sim import BUILD_ROOT

__all__ = ["main", "build_report"]

SEEDS = (1, 2, 3)
TOLERANCE = 0.25


def _plots(out_dir, report, curves):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (v, decoded) in curves["adc"].items():
        ax.step(v * 1e3, decoded, where="mid", label=label)
    ax.set_xlabel("integrator voltage (mV)")
    ax.set_ylabel("decoded output (counts)")
    ax.set_title("IF-ADC transfer curve (8-bit, q = 1 mV)")
    ax.legend()
    ax.grid(alpha=0.3)
    paths["adc_transfer"] = out_dir / "adc_transfer.png"
    fig.tight_layout()
    fig.savefig(paths["adc_transfer"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, residual in curves["residuals"].items():
        ax.hist(residual, bins=80, histtype="step", density=True, label=f"{key}: {report[key]:.3f}")
    ax.set_xlabel("MVM error after per-column fit (units of std of ideal output)")
    ax.set_ylabel("density")
    ax.set_title("MVM error histogram")
    ax.legend(fontsize=8)
    paths["mvm_error_histogram"] = out_dir / "mvm_error_histogram.png"
    fig.tight_layout()
    fig.savefig(paths["mvm_error_histogram"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    t, err = curves["relax"]
    ax.semilogx(t, err, "o-", label="model")
    ax.semilogx([1.0, 86400.0], [0.10, 0.17], "s", color="C3", label="published (±25 %)")
    ax.errorbar([1.0, 86400.0], [0.10, 0.17], yerr=[0.025, 0.0425], fmt="none", color="C3")
    ax.axhline(report["rel_error_verify_only"], color="gray", ls="--", label="verify window only")
    ax.set_xlabel("time after programming (s)")
    ax.set_ylabel("relative MVM error")
    ax.set_title("MVM error versus relaxation time")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    paths["error_vs_relaxation"] = out_dir / "error_vs_relaxation.png"
    fig.tight_layout()
    fig.savefig(paths["error_vs_relaxation"], dpi=110)
    plt.close(fig)
    return {k: str(v) for k, v in paths.items()}


def build_report(seeds=SEEDS, *, plots=True, out_dir=None):
    out_dir = out_dir or BUILD_ROOT / "model"
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report = {"published": {}, "seeds": list(seeds), "tolerance": TOLERANCE}
    curves = {"residuals": {}}
    for key, params, published in REFERENCE_POINTS:
        runs = [relative_mvm_error(params, seed=s, keep_residuals=plots) for s in seeds]
        values = [r["rel_error"] for r in runs]
        report[key] = float(np.mean(values))
        report[f"{key}_std"] = float(np.std(values))
        report["published"][key] = published
        report[f"{key}_within_tolerance"] = bool(abs(report[key] / published - 1) <= TOLERANCE)
        if plots:
            curves["residuals"][key] = runs[0]["residuals"]

    # Programming: the incremental write-verify on a 256 x 256 array of mapped Gaussian weights.
    rng = np.random.default_rng(seeds[0])
    mapping = map_weights(rng.standard_normal((128, 256)), scheme="sign", bias_rows=0)
    programmed = program(mapping.g_target_uS, seed=seeds[0])
    report["program_fail_fraction"] = float(programmed.fail_fraction)
    report["program_summary"] = {
        k: (float(v) if isinstance(v, (int, float, np.number)) else v) for k, v in programmed.summary().items()
    }

    if plots:
        times = np.logspace(0, np.log10(2 * 86400), 9)
        relax = [
            relative_mvm_error(ArrayParams(g_tol_uS=1.0, g_min_uS=1.0, relax_time_s=float(t)), seed=seeds[0])[
                "rel_error"
            ]
            for t in times
        ]
        curves["relax"] = (times, np.array(relax))
        curves["adc"] = {
            "ideal": adc_transfer_curve(PhysicalParams(delta_V=1e-3)),
            "asymmetry 5 %, mismatch, offset": adc_transfer_curve(
                PhysicalParams(delta_V=1e-3, decrement_asymmetry=0.05, comparator_offset_V=3e-3),
            ),
        }
        report["plots"] = _plots(out_dir, report, curves)
    report["wall_s"] = time.perf_counter() - started
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv=None):
    p = argparse.ArgumentParser(prog="cimdv-model-report", description=__doc__.splitlines()[0])
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = p.parse_args(argv)
    report = build_report(plots=not args.no_plots)
    width = max(len(k) for k, _, _ in REFERENCE_POINTS)
    for key, _, published in REFERENCE_POINTS:
        ok = "ok" if report[f"{key}_within_tolerance"] else "OUT OF RANGE"
        print(f"  {key:<{width}}  {report[key]:.4f} ± {report[key + '_std']:.4f}  (published {published}; {ok})")
    fail = report["program_fail_fraction"]
    print(f"  {'program_fail_fraction':<{width}}  {fail:.4%}  (chip: 0.2-0.8 %)")
    print(f"cimdv-model-report: wrote {BUILD_ROOT / 'model' / 'report.json'}")
    bad = [k for k, _, _ in REFERENCE_POINTS if not report[f"{k}_within_tolerance"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

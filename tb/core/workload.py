"""The MVM workload behind ``make sim`` and ``make bench`` (one cocotb test, knobs from JSON).

Backdoor-loads a random weight matrix, runs a batch of random vectors through the RTL with
the golden model as the macro, compares every output with the transaction-level model, and
writes the figures to the JSON file named by ``CIMDV_WORKLOAD_OUT``.

Knobs (``CIMDV_WORKLOAD``, JSON): ``vectors``, ``in_bits``, ``signed``, ``out_bits``,
``pulse_mult``, ``timing`` (dict of ``T_*``), ``check_contract`` (run the passive contract
checker too; costs a little speed), ``weight_high`` (codes are drawn from 0..weight_high-1).
"""

import hashlib
import json
import os
import time

import cocotb
import numpy as np

from cimdv.model.exact import MacroParams
from cimdv.rtl.core.regs import NEURRAM_TIMING
from cimdv.tb.core.env import CLOCK_NS, CoreTb, error_names
from cimdv.tb.sim import params_from_env

__all__ = ["mvm_workload"]

DEFAULTS = {"rows": 256, "cols": 256, "lanes": 16, "pulse_bits": 8}
KNOBS = {
    "vectors": 8,
    "in_bits": 4,
    "signed": True,
    "out_bits": 8,
    "pulse_mult": 1,
    "timing": NEURRAM_TIMING,
    "check_contract": False,
    "weight_high": 64,
}


def workload_knobs():
    knobs = dict(KNOBS)
    knobs.update(json.loads(os.environ.get("CIMDV_WORKLOAD", "{}")))
    unknown = set(knobs) - set(KNOBS)
    if unknown:
        raise ValueError(f"CIMDV_WORKLOAD: unknown knob(s) {sorted(unknown)}; valid: {sorted(KNOBS)}")
    return knobs


@cocotb.test()
async def mvm_workload(dut):
    """Random weights and vectors through the RTL, checked exactly against the model."""
    knobs = workload_knobs()
    tb = CoreTb(dut, params_from_env(DEFAULTS), cocotb.RANDOM_SEED)
    weights = tb.random_weights(knobs["weight_high"])
    cfg = tb.config(
        signed=knobs["signed"],
        in_bits=knobs["in_bits"],
        out_bits=knobs["out_bits"],
        max_count=2 ** (knobs["out_bits"] - 1) - 1,
        pulse_mult=knobs["pulse_mult"],
    )
    # A quantum that puts the typical |integrator| near a quarter of the count range, so
    # counts spread over the range and the tails saturate on both signs.
    lo, hi = cfg.in_range
    x_rms = np.sqrt(np.mean(np.arange(lo, hi + 1, dtype=float) ** 2))
    typical = 2 * cfg.pulse_mult * x_rms * np.sqrt(cfg.n_in) * np.std(weights)
    delta = max(1, int(typical / max(1, cfg.max_count / 4)))
    await tb.start(weights, MacroParams(delta=delta))
    if not knobs["check_contract"]:
        tb.contract.stop()
    await tb.configure(cfg, timing=knobs["timing"], batch=knobs["vectors"], watchdog=1 << 24)
    xs = tb.random_inputs(knobs["vectors"], cfg)

    t0_ns = cocotb.simtime.get_sim_time("ns")
    wall0 = time.perf_counter()
    error = await tb.run(xs)
    wall = time.perf_counter() - wall0
    sim_cycles = (cocotb.simtime.get_sim_time("ns") - t0_ns) / CLOCK_NS

    mismatches = len(tb.scoreboard.mismatches) + len(tb.scoreboard.expected)
    counts = np.concatenate([r.count for r in tb.results]) if tb.results else np.zeros(0)
    sats = np.concatenate([r.sat for r in tb.results]) if tb.results else np.zeros(0)
    digest = hashlib.sha256()
    for r in tb.results:
        digest.update(np.stack([r.sign, r.count, r.sat]).astype(np.int64).tobytes())
    report = {
        "rows": tb.rows,
        "cols": tb.cols,
        "in_bits": cfg.in_bits,
        "signed": cfg.signed,
        "out_bits": cfg.out_bits,
        "pulse_mult": cfg.pulse_mult,
        "timing": knobs["timing"],
        "delta": delta,
        "vectors": len(xs),
        "outputs": len(tb.results),
        "matches": tb.scoreboard.matches,
        "mismatches": mismatches,
        "error": error_names(error),
        "sim_cycles": sim_cycles,
        "cycles_per_mvm": sim_cycles / max(1, len(xs)),
        "wall_s": wall,
        "sim_cycles_per_s": sim_cycles / wall if wall > 0 else 0.0,
        "mvm_per_s": len(xs) / wall if wall > 0 else 0.0,
        "mean_count": float(counts.mean()) if counts.size else 0.0,
        "saturated_fraction": float(sats.mean()) if sats.size else 0.0,
        "contract_checked": bool(knobs["check_contract"]),
        "outputs_sha256": digest.hexdigest(),
        "seed": tb.seed,
    }
    out = os.environ.get("CIMDV_WORKLOAD_OUT")
    if out:
        with open(out, "w") as f:
            json.dump(report, f, indent=2)
    dut._log.info("workload: %s", json.dumps(report))
    assert error == 0, f"ERROR {error_names(error)}"
    tb.check()

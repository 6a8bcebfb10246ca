"""Run the core MVM workload (``tb/core/workload.py``) and the clock-only ceiling from Python.

Shared by ``cimdv-sim`` and ``cimdv-bench`` so both measure the same thing the same way.
"""

import json
import tempfile
from pathlib import Path

from cimdv.rtl.core.regs import NEURRAM_TIMING
from cimdv.tb import sim as simflow
from cimdv.tb.core.env import FAST_TIMING

__all__ = ["FULL_CORE", "TIMINGS", "run_workload", "run_clock_only"]

#: NeuRRAM's core: 256 x 256, 16 elements per stream beat.
FULL_CORE = {"rows": 256, "cols": 256, "lanes": 16, "pulse_bits": 8}
#: Named phase timings: NeuRRAM's defaults at 100 MHz, and the shortest the contract allows.
TIMINGS = {"neurram": dict(NEURRAM_TIMING), "fast": dict(FAST_TIMING)}


def _run_json(params, sim, module, seed, env):
    with tempfile.TemporaryDirectory(prefix="cimdv-") as tmp:
        out = Path(tmp) / "report.json"
        result = simflow.run("core", params, sim, module, seed=seed, extra_env={**env, "CIMDV_WORKLOAD_OUT": str(out)})
        report = json.loads(out.read_text())
    report["reproduce"] = result.reproduce
    return report


def run_workload(
    *,
    sim,
    seed,
    vectors,
    timing="neurram",
    params=FULL_CORE,
    in_bits=4,
    signed=True,
    out_bits=8,
    pulse_mult=1,
    check_contract=False,
):
    """Run ``vectors`` random MVMs through the RTL, checked against the model; returns the report dict."""
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {sorted(TIMINGS)}, not {timing!r}")
    knobs = {
        "vectors": vectors,
        "timing": TIMINGS[timing],
        "in_bits": in_bits,
        "signed": signed,
        "out_bits": out_bits,
        "pulse_mult": pulse_mult,
        "check_contract": check_contract,
    }
    report = _run_json(params, sim, "cimdv.tb.core.workload", seed, {"CIMDV_WORKLOAD": json.dumps(knobs)})
    report["timing_name"] = timing
    return report


def run_clock_only(*, sim, cycles, params=FULL_CORE, seed=1):
    """Cycles per second of the same build with only cocotb's C clock running (no Python per cycle)."""
    return _run_json(params, sim, "cimdv.tb.core.clock_only", seed, {"CIMDV_CLOCK_ONLY_CYCLES": str(cycles)})

"""Coverage-driven closure bench on one core (run by :mod:`cimdv.tb.flows.closure` on Verilator).

One cocotb test, :func:`coverage_closure`, reads its plan from ``CIMDV_CLOSURE`` (JSON written by the flow)
and runs three phases on the same DUT, every transaction through the RTL with the scoreboard on (every
output vector compared exactly with the golden model) and the contract checker on:

``holes``
    the holes the regression left in the closure goal (:data:`~cimdv.tb.coverage.functional.CLOSURE_GROUPS`),
    targeted with :meth:`~cimdv.tb.coverage.stimulus.CoreStimulus.guided`, sampled into the process's
    coverage (exported to ``CIMDV_FCOV_FILE`` and merged into the regression's database);
``guided`` / ``unguided``
    the whole goal from empty coverage (own coverage instances, not exported), guided and unguided from
    the same seed, to measure how many transactions guidance saves; unguided is capped at the budget.

After each transaction the phase re-reads its coverage (what the monitors sampled) and stops when its
goal is met, its transaction budget is spent or its share of the wall-clock budget is used. The result
(transactions per phase, goal reached, holes left) is written to the plan's ``result`` file.
"""

import json
import os
import time

import cocotb
import numpy as np

from cimdv.model.exact import MacroParams
from cimdv.tb.core.env import CoreTb, error_names
from cimdv.tb.coverage import functional
from cimdv.tb.coverage.stimulus import CoreStimulus
from cimdv.tb.sim import params_from_env

__all__ = ["PLAN_ENV", "coverage_closure"]

#: JSON plan: ``holes`` and ``goal`` ({group: [item/label]}), ``budget`` (transactions per phase),
#: ``wall_s`` (seconds for all phases), ``result`` (path of the JSON result).
PLAN_ENV = "CIMDV_CLOSURE"
DEFAULTS = {"rows": 16, "cols": 12, "lanes": 4, "pulse_bits": 8}


def _hit(cov, groups):
    """``{group: bins hit}`` of a coverage instance."""
    return {g: {f"{item}/{label}" for item, bins in cov.groups[g].hits().items() for label, h in bins.items() if h}
            for g in groups}


async def _phase(tb, weights, cov, goal, gen, *, guided, budget, deadline):
    """Transactions until ``goal`` ({group: bins}) is hit in ``cov``, ``budget`` is spent or ``deadline`` passes."""
    tb.fcov = cov
    left = {g: set(bins) for g, bins in goal.items()}
    n = 0
    while any(left.values()) and n < budget and time.monotonic() < deadline:
        txn = gen.guided(left) if guided else gen.draw()
        tb.load_weights(weights, txn.macro)
        await tb.configure(txn.cfg, batch=1)
        error = await tb.run([txn.x])
        assert error == 0, f"transaction {n}: ERROR {error_names(error)} for {txn.cfg}"
        tb.check()
        n += 1
        hit = _hit(cov, left)
        left = {g: bins - hit[g] for g, bins in left.items()}
    reached = not any(left.values())
    stopped = "goal" if reached else "budget" if n >= budget else "wall"
    return {"transactions": n, "reached": reached, "stopped_by": stopped,
            "holes_left": {g: sorted(b) for g, b in left.items()}}


@cocotb.test()
async def coverage_closure(dut):
    """Closure of the core's functional-coverage goal, then guided against unguided from empty coverage."""
    plan = json.loads(os.environ[PLAN_ENV])
    params = params_from_env(DEFAULTS)
    tb = CoreTb(dut, params, cocotb.RANDOM_SEED)
    weights = tb.random_weights()
    tb.load_weights(weights, MacroParams(delta=1))
    await tb.start()
    started = time.monotonic()
    wall = float(plan["wall_s"])
    budget = int(plan["budget"])
    pulse_bits = params["pulse_bits"]
    seed = cocotb.RANDOM_SEED
    default = tb.fcov

    def stimulus():
        return CoreStimulus(tb.rows, tb.cols, pulse_bits, weights, np.random.default_rng(seed))

    phases = {}
    holes = {g: set(b) for g, b in plan["holes"].items()}
    phases["holes"] = await _phase(tb, weights, default, holes, stimulus(), guided=True, budget=budget,
                                   deadline=started + 0.4 * wall)
    goal = {g: set(b) for g, b in plan["goal"].items()}
    for name, guided, share in (("guided", True, 0.6), ("unguided", False, 1.0)):
        cov = functional.FunctionalCoverage(f"closure_{name}").use_core(pulse_bits)
        phases[name] = await _phase(tb, weights, cov, goal, stimulus(), guided=guided, budget=budget,
                                    deadline=started + share * wall)
        dut._log.info("%s from empty: %s", name, {k: v for k, v in phases[name].items() if k != "holes_left"})
    tb.fcov = default
    result = {
        "phases": phases,
        "vectors_checked": tb.scoreboard.matches,
        "sim_wall_s": round(time.monotonic() - started, 2),
        "seed": seed,
        "geometry": {k: params[k] for k in ("rows", "cols", "lanes", "pulse_bits")},
    }
    with open(plan["result"], "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)

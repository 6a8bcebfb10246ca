"""Coverage-driven closure (tb/flows/closure.py) on Verilator: from an empty merged database the bench closes the
core's goal with guided stimulus, measures guided against unguided, and exports coverage that merges."""

import json

import numpy as np
import pytest

from cimdv.model.encoding import CoreConfig
from cimdv.tb.coverage import functional as fc
from cimdv.tb.flows.closure import run_closure


@pytest.fixture
def verilator(request):
    if request.config.getoption("--sim") not in ("verilator", "both"):
        pytest.skip("the closure bench runs on Verilator")


def test_closure_from_empty_coverage(verilator, seed, tmp_path):
    cov = fc.FunctionalCoverage("closure_test_empty").use_core()
    cfg = CoreConfig(rows=2, cols=2, backward=False, signed=True, in_bits=4, out_bits=8, pulse_mult=1,
                     max_count=127)
    cov.sample_input(cfg, np.zeros(2, dtype=int))  # one vector: a few bins are already hit
    merged = fc.export(tmp_path / "merged.yml", cov)
    r = run_closure(merged, tmp_path / "out", seed=seed, budget=60, wall_s=80)
    assert r["goal_reached"] and r["after_pct"] == 100.0 and r["before_pct"] < 10.0, r
    assert 0 < r["closure_transactions"] <= 60 and r["guided_reached_goal"]
    assert r["guided_transactions"] < r["unguided_transactions"] or not r["unguided_reached_goal"]
    assert "in_x_signedness_x_direction/in_bits=4 x signed x forward" not in r["holes_before"]["core_input_cg"]
    assert not r["holes_after"] and r["vectors_checked"] >= r["closure_transactions"]
    assert json.loads((tmp_path / "out" / "closure.json").read_text()) == r
    merged_after = fc.merge_functional([merged, r["coverage_file"]], tmp_path / "after.yml", None)
    assert all(merged_after["groups"][g]["pct"] == 100.0 for g in fc.CLOSURE_GROUPS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": -1, "budget": 10}, "seed"),
        ({"seed": 1, "budget": 0}, "budget"),
        ({"seed": 1, "budget": 10, "wall_s": 0}, "wall_s"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, message):
    merged = fc.export(tmp_path / "m.yml", fc.FunctionalCoverage("closure_test_args").use_core())
    with pytest.raises(ValueError, match=message):
        run_closure(merged, tmp_path / "out", **kwargs)
    with pytest.raises(ValueError, match="merged"):
        run_closure(tmp_path / "missing.yml", tmp_path / "out", seed=1, budget=10)

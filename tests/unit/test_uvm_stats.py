"""The pyuvm scoreboard's reference rules, without a simulator: the statistical check of noisy macros
(its noise σ, count distribution, false-alarm rate and power) and the comparator-to-count rule."""

import numpy as np
import pytest

from cimdv.model.exact import ExactCore, MacroParams, MacroState, run_sequence
from cimdv.model.physical import PhysicalMacroState
from cimdv.tb.uvm.items import MacroItem
from cimdv.tb.uvm.macro_agent import BiasedMacroState, MacroProbe, SilentMacroState, macro_model
from cimdv.tb.uvm.scoreboard import comparator_result
from cimdv.tb.uvm.sequences import NOISE
from cimdv.tb.uvm.stats import CountErrorCheck, count_distribution, integrator_sigma
from cimdv.tb.vip.config import default_config

DELTA = 40
PARAMS = MacroParams(delta=DELTA)


def _core(seed=0, rows=32, cols=32):
    rng = np.random.default_rng(seed)
    return rng, rng.integers(0, 30, (rows, cols))


def _physical(weights, seed, offset=None):
    item = MacroItem("m", "physical" if offset is None else "biased", seed=seed, bias_lsb=offset or 0.0, **NOISE)
    return macro_model(item, weights, PARAMS)[0]


def _check(state, exact, cfg, xs):
    check = CountErrorCheck()
    for x in xs:
        got, want = run_sequence(cfg, x, state), exact.mvm(cfg, x)
        sigma = integrator_sigma(cfg, x, **NOISE)
        check.add(got.signed, want.signed, want.integ, sigma, float(DELTA), cfg.max_count)
    return check.result()


def test_sigma_matches_the_physical_macro():
    """integrator_sigma equals the spread of the cycle-level physical macro's integrators (forward and
    backward, with OFF lines)."""
    rng, w = _core(1)
    exact = ExactCore(w, PARAMS)
    modes = [1] * 24 + [0] * 8
    for cfg in (default_config(32, 32, line_modes=modes), default_config(32, 32, backward=True, in_bits=3)):
        state = _physical(w, seed=7)
        xs = rng.integers(cfg.in_range[0], cfg.in_range[1] + 1, (150, cfg.n_in))
        err = np.concatenate([run_sequence(cfg, x, state).integ - exact.mvm(cfg, x).integ for x in xs])
        sigmas = [integrator_sigma(cfg, x, **NOISE) for x in xs]
        assert np.std(err) == pytest.approx(np.sqrt(np.mean(np.square(sigmas))), rel=0.05)
        assert abs(np.mean(err)) < 0.1 * np.mean(sigmas)


def test_count_distribution_is_the_exact_rule_without_noise():
    """With a vanishing σ every probability sits on the exact model's count (ties, saturation)."""
    rng, w = _core(2)
    cfg = default_config(32, 32, max_count=15, out_bits=5)
    exact = ExactCore(w, PARAMS)
    for x in rng.integers(-7, 8, (5, 32)):
        want = exact.mvm(cfg, x)
        u = want.integ.astype(float) - 1e-9  # an edge belongs to the interval below it
        levels, prob = count_distribution(u, 1e-12, float(DELTA), cfg.max_count)
        assert np.allclose(prob.sum(axis=1), 1.0)
        assert np.array_equal(levels[prob.argmax(axis=1)], want.signed)


def test_unbiased_noisy_macro_passes_and_a_biased_one_fails():
    """False alarms: none over 60 seeded realisations of N = 128, and the mean's z-score has unit spread.
    Power: a bias of 2 LSB fails every time (as in UvmBiasedMacroFails)."""
    rng, w = _core(3)
    cfg = default_config(32, 32)
    exact = ExactCore(w, PARAMS)
    xs = rng.integers(-7, 8, (4, 32))
    z = []
    for seed in range(60):
        result = _check(_physical(w, seed), exact, cfg, xs)
        assert result.passed, result.describe()
        z.append((result.mean - result.mean_expected) / (result.mean_tol / 5))
    assert 0.7 < np.std(z) < 1.3
    for seed in range(10):
        result = _check(_physical(w, 100 + seed, offset=2.0), exact, cfg, xs)
        assert not result.passed and result.mean > 1.0, result.describe()


@pytest.mark.parametrize("kind", ["exact", "physical", "silent"])
def test_comparator_rule_equals_the_reference_sequencer(kind):
    """comparator_result, fed the comparator answers a MacroProbe records, reports what the reference
    sequencer (run_sequence) reports, masks and saturation included."""
    rng, w = _core(4)
    mask = [bool(b) for b in rng.integers(0, 2, 32)]
    cfg = default_config(32, 32, max_count=7, out_bits=4, out_mask=mask)
    seen = []
    state = {"exact": MacroState(w, PARAMS), "silent": SilentMacroState(w, PARAMS)}.get(kind) or _physical(w, 5)
    probe = MacroProbe(state, (0, 0), kind, None, seen.append, now=lambda: 0.0)
    for x in rng.integers(-7, 8, (4, 32)):
        want = run_sequence(cfg, x, probe)
        got = comparator_result(seen[-1].compares, cfg)
        for g, name in zip(got, ("sign", "count", "sat"), strict=True):
            assert np.array_equal(g, getattr(want, name)), name
    assert len(seen) == 4 and seen[0].samples == seen[0].integrates == 14


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="max_count"):
        count_distribution([0.0], 1.0, 40.0, 0)
    with pytest.raises(ValueError, match="q must"):
        count_distribution([0.0], 1.0, 0.0, 3)
    with pytest.raises(ValueError, match="read_noise"):
        integrator_sigma(default_config(4, 4), [0] * 4, read_noise=-1.0, ktc_noise=0.0)
    with pytest.raises(ValueError, match="kind"):
        MacroItem("m", "noisy")
    with pytest.raises(ValueError, match="fault"):
        MacroItem("m", "weight_fault")
    with pytest.raises(ValueError, match="params"):
        macro_model(MacroItem("m", "physical"), np.ones((4, 4), dtype=int), MacroParams(delta=4, threshold=1))
    assert isinstance(_physical(np.ones((4, 4), dtype=int), 0, offset=1.0), BiasedMacroState)
    assert type(_physical(np.ones((4, 4), dtype=int), 0)) is PhysicalMacroState

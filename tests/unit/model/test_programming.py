"""Unit tests of the weight-programming model (model/programming.py).

The chip-level numbers checked here come from neurram-chip.md §4.3 (write-verify, 0.18 % and
0.77 % measured failures) and cim-golden-model.md §3.1/§3.6 (accepted error U(−1, 1) µS, σ 0.58 µS).
"""

import math

import numpy as np
import pytest

from cimdv.model.programming import (
    OUTCOME_FAIL_HIGH,
    OUTCOME_FAIL_LOW,
    OUTCOME_NAMES,
    OUTCOME_PASS,
    OUTCOME_STUCK,
    DeviceParams,
    ProgramResult,
    WriteVerifyParams,
    program,
)

G_MAX = 40.0  # top of the weight window (µS), neurram-chip.md §4.4


def differential_targets(shape=(256, 256), seed=1):
    """Targets of one core holding differential-pair weights (neurram-chip.md §4.4, 'sign' scheme).

    Gaussian weights, w_max at the 95th percentile of |W|, |W| clipped at w_max (as the
    quantised, noise-aware-trained networks do), G+ on even rows and G- on odd rows: about
    half the cells target 0 µS and a few more target < 1 µS (both get the off procedure);
    the rest spread over 1-40 µS.
    """
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((shape[0] // 2, shape[1]))
    w_max = np.percentile(np.abs(w), 95)
    t = np.empty(shape)
    t[0::2] = G_MAX * np.clip(w / w_max, 0.0, 1.0)
    t[1::2] = G_MAX * np.clip(-w / w_max, 0.0, 1.0)
    return t


def verify_sigma(device, wv, g):
    """σ of one verify reading of a normal cell at conductance ``g``."""
    return np.sqrt((device.read_noise_rel * g) ** 2 + device.read_noise_uS**2) / math.sqrt(wv.reads_averaged)


@pytest.fixture(scope="module")
def core():
    """A realistic 256x256 core programmed with the defaults (seed 0).

    (Programming speed is measured by ``make bench``, never asserted in a test.)
    """
    return program(differential_targets(), seed=0), None


# -- determinism ------------------------------------------------------------------------------


def test_same_seed_same_result():
    t = differential_targets((32, 32), seed=5)
    a = program(t, seed=3, trace=True)
    b = program(t, seed=3, trace=True)
    c = program(t, rng=np.random.default_rng(3), trace=True)
    for other in (b, c):
        for name in ("g_uS", "g_read_uS", "ok", "outcome", "set_pulses", "reset_pulses", "iterations", "clip_hits"):
            assert np.array_equal(getattr(a, name), getattr(other, name)), name
        for key in a.trace:
            assert np.array_equal(a.trace[key], other.trace[key]), key


def test_different_seed_different_result():
    t = differential_targets((32, 32), seed=5)
    a = program(t, seed=3)
    b = program(t, seed=4)
    assert not np.array_equal(a.g_uS, b.g_uS)
    assert not np.array_equal(a.set_pulses + a.reset_pulses, b.set_pulses + b.reset_pulses)


# -- the chip's measured outcome on a realistic core ------------------------------------------


def test_fail_fraction_in_measured_range(core):
    res, _ = core
    # Measured after one epoch: 0.18 % (MNIST) and 0.77 % (one CIFAR core).
    assert 0.002 <= res.fail_fraction <= 0.008, res.summary()
    assert res.fail_fraction == pytest.approx(1.0 - res.ok.mean())
    assert np.array_equal(res.ok, res.outcome == OUTCOME_PASS)


def test_broken_algorithm_is_caught_by_the_fail_fraction_check():
    """With (almost) no outer iterations, an overshoot cannot be corrected: the check above fails."""
    t = differential_targets()
    one = program(t, wv=WriteVerifyParams(max_iterations=1), seed=0)
    assert one.fail_fraction > 2 * 0.008, one.summary()
    none = program(t, wv=WriteVerifyParams(max_iterations=0), seed=0)
    assert none.fail_fraction > 10 * 0.008, none.summary()


def test_accepted_error_is_the_verify_window(core):
    res, _ = core
    wv, dev = res.wv, res.device
    acc = res.ok & ~res.off
    t = res.targets_uS[acc]
    read_err = res.g_read_uS[acc] - t
    err = res.g_uS[acc] - t
    # The confirming reading is strictly inside the window by construction.
    assert np.all(np.abs(read_err) < wv.g_tol_uS)
    # The true conductance may leave it only by the read noise of that reading.
    assert np.all(np.abs(err) < wv.g_tol_uS + 5 * verify_sigma(dev, wv, res.g_uS[acc]))
    assert np.mean(np.abs(err) >= wv.g_tol_uS) < 0.05
    # Roughly U(−g_tol, g_tol): std g_tol/sqrt(3) = 0.577 µS, centred.
    assert 0.50 <= err.std() <= 0.66, res.summary()
    assert abs(err.mean()) < 0.25
    # Every part of the window is used.
    hist, _ = np.histogram(read_err, bins=10, range=(-wv.g_tol_uS, wv.g_tol_uS))
    assert hist.min() > 0.04 * read_err.size


def test_accepted_error_without_read_noise_is_within_tolerance():
    dev = DeviceParams(read_noise_rel=0.0, read_noise_uS=0.0)
    t = differential_targets((64, 64), seed=2)
    res = program(t, device=dev, seed=1)
    acc = res.ok & ~res.off
    assert np.all(np.abs(res.g_uS[acc] - res.targets_uS[acc]) < res.wv.g_tol_uS)
    assert np.all(res.g_uS[res.ok & res.off] < res.wv.g_min_uS)


def test_off_cells_end_below_g_min(core):
    res, _ = core
    wv, dev = res.wv, res.device
    assert np.array_equal(res.off, res.targets_uS < wv.g_min_uS)
    assert 0.5 < res.off.mean() < 0.6
    off_ok = res.ok & res.off
    assert np.all(res.g_read_uS[off_ok] < wv.g_min_uS)
    sigma_off = verify_sigma(dev, wv, res.g_uS[off_ok]) * math.sqrt(wv.reads_averaged / wv.off_reads_averaged)
    assert np.all(res.g_uS[off_ok] < wv.g_min_uS + 5 * sigma_off)
    assert np.mean(res.g_uS[off_ok] < wv.g_min_uS) > 0.98
    # An off-cell never SETs, and a failed one is too high (or stuck).
    assert np.all(res.set_pulses[res.off] == 0)
    assert set(np.unique(res.outcome[res.off & ~res.ok]).tolist()) <= {OUTCOME_FAIL_HIGH, OUTCOME_STUCK}


def test_pulse_counts_and_limits(core):
    res, _ = core
    wv = res.wv
    pulses = res.pulses
    assert pulses.min() >= 0
    assert 3.0 <= pulses.mean() <= 40.0, res.summary()
    # Every off-cell starts above 1.25 µS (forming), so it needs at least one RESET.
    assert np.all(res.reset_pulses[res.off] > 0)
    # A cell without any pulse passed on its first readings.
    assert np.all(res.ok[pulses == 0])
    normal = ~res.off
    assert res.iterations[normal].max() <= wv.max_iterations + 1
    assert res.iterations[res.off].max() <= wv.off_max_iterations + 1
    assert res.iterations.min() >= 1
    n_it = wv.max_iterations + 1
    assert res.set_pulses[normal].max() <= n_it * wv.max_pulses_per_loop("set")
    assert res.reset_pulses[normal].max() <= n_it * wv.max_pulses_per_loop("reset")
    n_off = wv.off_max_iterations + 1
    assert res.reset_pulses[res.off].max() <= n_off * wv.max_pulses_per_loop("reset", off=True)


def test_summary(core):
    res, _ = core
    s = res.summary()
    assert s["cells"] == 256 * 256
    assert s["passed"] + s["failed"] == s["cells"]
    assert s["fail_too_low"] + s["fail_too_high"] + s["stuck"] == s["failed"]
    assert s["fail_fraction"] == res.fail_fraction
    assert s["clipped"] == res.clipped == int(res.clip_hits.sum())
    assert s["max_iterations_run"] <= res.wv.max_iterations + 1
    assert all(isinstance(v, (int, float)) or v is None for v in s.values())
    assert OUTCOME_NAMES[OUTCOME_FAIL_LOW] in s


# -- the algorithm, pulse by pulse ------------------------------------------------------------


def loops_of(trace):
    """Split a trace into loops: runs of one cell's pulses of one polarity within one iteration."""
    key = np.stack([trace["cell"], trace["iteration"], trace["polarity"]], axis=1)
    cut = np.flatnonzero(np.any(key[1:] != key[:-1], axis=1)) + 1
    return np.split(np.arange(key.shape[0]), cut)


def check_ramps(res):
    wv, tr = res.wv, res.trace
    off = res.off.ravel()
    n_loops = 0
    for run in loops_of(tr):
        cell, pol = int(tr["cell"][run[0]]), int(tr["polarity"][run[0]])
        v = tr["voltage_V"][run]
        if pol == 1:
            assert not off[cell]
            start, end, lim = wv.set_v_start_V, wv.set_v_end_V, wv.max_pulses_at_end_voltage
            step = wv.set_v_step_V
        elif off[cell]:
            start, end, lim = wv.off_reset_v_start_V, wv.off_reset_v_end_V, wv.off_max_pulses_at_end_voltage
            step = wv.reset_v_step_V
        else:
            start, end, lim = wv.reset_v_start_V, wv.reset_v_end_V, wv.max_pulses_at_end_voltage
            step = wv.reset_v_step_V
        expect = np.minimum(start + step * np.arange(v.size), end)
        assert np.allclose(v, expect, atol=1e-9), (cell, pol, v)
        at_end = tr["at_end"][run]
        assert np.array_equal(at_end, np.isclose(v, end, atol=1e-9))
        assert at_end.sum() <= lim
        n_loops += 1
    return n_loops


def test_ramps_restart_and_respect_the_end_voltage_limit():
    # Weak SET (gain / 8) and high targets: many loops run to the end voltage and its limit.
    dev = DeviceParams(a_set_uS_per_V=1.25)
    t = np.linspace(0.0, 40.0, 24 * 24).reshape(24, 24)
    res = program(t, device=dev, seed=7, trace=True)
    assert check_ramps(res) > 100
    assert res.trace["at_end"].any()
    assert np.any(res.outcome == OUTCOME_FAIL_LOW)
    # Ramps restart every iteration: a cell with several iterations has several loops starting low.
    multi = np.flatnonzero(res.iterations.ravel() > 1)
    assert multi.size
    # Per cell, the trace's pulse counts are the result's.
    counts = np.bincount(res.trace["cell"], minlength=t.size)
    assert np.array_equal(counts, res.pulses.ravel())
    # A failure on the pulse limit: some loop reached exactly the limit of pulses at the end voltage.
    tr = res.trace
    assert max(int(tr["at_end"][r].sum()) for r in loops_of(tr)) == res.wv.max_pulses_at_end_voltage


def test_ramps_on_a_realistic_block():
    res = program(differential_targets((32, 32), seed=9), seed=2, trace=True)
    assert check_ramps(res) > 0
    # Readings and true conductances in the trace end where the result ends.
    tr = res.trace
    last = np.r_[np.flatnonzero(np.diff(tr["cell"])), tr["cell"].size - 1]
    cells = tr["cell"][last]
    assert np.array_equal(tr["g_uS"][last], res.g_uS.ravel()[cells])


def test_final_pulse_polarity():
    t = differential_targets((32, 32), seed=4)
    res = program(t, wv=WriteVerifyParams(final_pulse="reset"), seed=5, trace=True)
    tr = res.trace
    last_pol = np.zeros(t.size, dtype=np.int8)
    last_pol[tr["cell"]] = tr["polarity"]  # the trace is in time order within a cell
    passed = res.ok.ravel()
    assert np.all(last_pol[passed] <= 0)
    # Without the requirement, some cells pass on a SET.
    free = program(t, seed=5, trace=True)
    last_free = np.zeros(t.size, dtype=np.int8)
    last_free[free.trace["cell"]] = free.trace["polarity"]
    assert np.any(last_free[free.ok.ravel()] == 1)


def test_tighter_tolerance_needs_more_pulses():
    t = np.random.default_rng(11).uniform(2.0, 38.0, (64, 64))
    loose = program(t, wv=WriteVerifyParams(g_tol_uS=1.0), seed=1)
    tight = program(t, wv=WriteVerifyParams(g_tol_uS=0.5), seed=1)
    assert tight.pulses.mean() > 1.1 * loose.pulses.mean()
    acc = tight.ok & ~tight.off
    assert np.all(np.abs(tight.g_read_uS[acc] - t[acc]) < 0.5)


def test_stuck_cells_are_outcome_3():
    dev = DeviceParams(stuck_fraction=0.1)
    t = np.random.default_rng(12).uniform(10.0, 30.0, (32, 32))
    res = program(t, device=dev, seed=3, trace=True)
    assert 50 < res.stuck.sum() < 160
    assert np.array_equal(res.outcome == OUTCOME_STUCK, res.stuck & ~res.ok)
    assert np.any(res.outcome == OUTCOME_STUCK)
    # A stuck cell never moves: every conductance in its trace is the same, and no bound is hit.
    tr = res.trace
    stuck_cells = np.flatnonzero(res.stuck.ravel())
    for cell in stuck_cells[:20]:
        g = tr["g_uS"][tr["cell"] == cell]
        assert g.size and np.all(g == g[0])
    assert np.all(res.clip_hits[res.stuck] == 0)


def test_device_bounds_are_counted_not_silent():
    # A violent device: every SET overshoots towards g_hi, every RESET crashes to g_lo.
    dev = DeviceParams(a_set_uS_per_V=300.0, a_reset_uS_per_V=300.0, jump_prob=0.5)
    t = np.random.default_rng(13).uniform(0.0, 40.0, (32, 32))
    res = program(t, device=dev, seed=1, trace=True)
    assert res.clipped > 0
    g = res.trace["g_uS"]
    assert g.min() >= dev.g_lo_uS and g.max() <= dev.g_hi_uS
    hits = int(np.sum((g == dev.g_lo_uS) | (g == dev.g_hi_uS)))
    assert res.clipped <= hits


def test_unreachable_target_fails_too_low():
    t = np.full((4, 4), 80.0)  # above the device's g_hi_uS = 60
    res = program(t, seed=0)
    assert not res.ok.any()
    assert set(np.unique(res.outcome).tolist()) <= {OUTCOME_FAIL_LOW, OUTCOME_STUCK}
    assert np.all(res.g_uS <= res.device.g_hi_uS)


def test_any_shape():
    t = differential_targets((16, 16), seed=3).reshape(2, 8, 16)
    res = program(t, seed=0)
    assert isinstance(res, ProgramResult)
    for name in ("g_uS", "g_read_uS", "ok", "outcome", "off", "stuck", "set_pulses", "reset_pulses", "iterations"):
        assert getattr(res, name).shape == t.shape, name
    assert res.g_uS.dtype == np.float64 and res.outcome.dtype == np.int8 and res.ok.dtype == np.bool_
    one = program(20.0, seed=0)
    assert one.g_uS.shape == ()
    ints = program(np.array([[0, 5], [20, 35]]), seed=0)
    assert ints.g_uS.shape == (2, 2)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("targets", "exc"),
    [
        (np.array([1.0, np.nan]), ValueError),
        (np.array([[1.0, np.inf]]), ValueError),
        (np.array([5.0, -0.1]), ValueError),
        (np.zeros((0, 4)), ValueError),
        (np.array([True, False]), TypeError),
        (np.array([1 + 2j]), TypeError),
        (["a", "b"], TypeError),
    ],
)
def test_bad_targets(targets, exc):
    with pytest.raises(exc, match="targets_uS"):
        program(targets, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        (dict(), TypeError, "rng"),
        (dict(seed=1, rng=np.random.default_rng(1)), TypeError, "rng or seed"),
        (dict(rng=1), TypeError, "rng"),
        (dict(seed=1.5), TypeError, "seed"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(seed=0, device=WriteVerifyParams()), TypeError, "device"),
        (dict(seed=0, wv=DeviceParams()), TypeError, "wv"),
        (dict(seed=0, trace=1), TypeError, "trace"),
    ],
)
def test_bad_program_arguments(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        program(np.ones((2, 2)), **kwargs)


@pytest.mark.parametrize(
    ("field", "value", "exc"),
    [
        ("g_lo_uS", 0.0, ValueError),
        ("g_hi_uS", 0.05, ValueError),
        ("g_init_lo_uS", 0.01, ValueError),
        ("g_init_hi_uS", 100.0, ValueError),
        ("a_set_uS_per_V", -1.0, ValueError),
        ("a_reset_uS_per_V", 0.0, ValueError),
        ("c2c_sigma", -0.1, ValueError),
        ("gain_set_sigma", math.nan, ValueError),
        ("vth_set_V", math.inf, ValueError),
        ("jump_prob", 1.5, ValueError),
        ("jump_factor", 0.5, ValueError),
        ("stuck_fraction", -0.01, ValueError),
        ("read_noise_rel", -0.01, ValueError),
        ("p_set", "2", TypeError),
        ("stuck_fraction", True, TypeError),
        ("read_noise_uS", None, TypeError),
    ],
)
def test_bad_device_params(field, value, exc):
    with pytest.raises(exc, match=field):
        DeviceParams(**{field: value})


@pytest.mark.parametrize(
    ("field", "value", "exc"),
    [
        ("g_tol_uS", 0.0, ValueError),
        ("g_min_uS", -1.0, ValueError),
        ("set_v_end_V", 1.0, ValueError),
        ("reset_v_end_V", 1.1, ValueError),
        ("off_reset_v_end_V", 2.0, ValueError),
        ("set_v_step_V", 0.0, ValueError),
        ("set_v_start_V", -0.5, ValueError),
        ("max_iterations", -1, ValueError),
        ("max_iterations", 2.5, TypeError),
        ("max_pulses_at_end_voltage", 0, ValueError),
        ("reads_per_verify", 3, ValueError),
        ("reads_discarded", -1, ValueError),
        ("off_reads_per_verify", 1, ValueError),
        ("final_pulse", "both", ValueError),
        ("g_tol_uS", math.nan, ValueError),
        ("off_max_iterations", True, TypeError),
    ],
)
def test_bad_write_verify_params(field, value, exc):
    with pytest.raises(exc, match=field):
        WriteVerifyParams(**{field: value})


def test_params_serialisation_and_unknown_keys():
    dev = DeviceParams(c2c_sigma=0.3)
    assert DeviceParams.from_json(dev.to_json()) == dev
    wv = WriteVerifyParams(final_pulse="set", max_iterations=50)
    assert WriteVerifyParams.from_json(wv.to_json()) == wv
    with pytest.raises(ValueError, match="g_lo"):
        DeviceParams.from_dict({"g_lo": 0.2})
    with pytest.raises(ValueError, match="max_iter"):
        WriteVerifyParams.from_dict({"max_iter": 5})
    with pytest.raises(TypeError, match="data"):
        DeviceParams.from_dict([("g_lo_uS", 0.2)])
    with pytest.raises(TypeError, match="g_low_uS"):
        dev.replace(g_low_uS=1.0)
    assert wv.replace(g_tol_uS=0.5).g_tol_uS == 0.5
    with pytest.raises(ValueError, match="polarity"):
        wv.max_pulses_per_loop("both")


def test_default_settings_are_the_chips():
    wv = WriteVerifyParams()
    assert (wv.g_tol_uS, wv.g_min_uS) == (1.0, 1.0)
    assert (wv.set_v_start_V, wv.set_v_end_V, wv.set_v_step_V) == (1.2, 3.3, 0.1)
    assert (wv.reset_v_start_V, wv.reset_v_end_V, wv.reset_v_step_V) == (1.2, 3.3, 0.1)
    assert (wv.max_iterations, wv.max_pulses_at_end_voltage) == (20, 30)
    assert (wv.reads_per_verify, wv.reads_discarded, wv.reads_averaged) == (8, 3, 5)
    assert (wv.off_reset_v_start_V, wv.off_reset_v_end_V, wv.off_max_pulses_at_end_voltage) == (2.5, 3.3, 30)
    assert (wv.off_max_iterations, wv.off_reads_averaged) == (1, 2)
    assert wv.final_pulse is None
    # 1.2 V -> 3.3 V in 0.1 V steps: 21 pulses below the end voltage, then 30 at it.
    assert wv.max_pulses_per_loop("set") == 51
    assert wv.max_pulses_per_loop("reset", off=True) == 8 + 30
    assert wv.max_pulses_per_loop("set", off=True) == 0

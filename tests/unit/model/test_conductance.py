"""Unit tests of cimdv.model.conductance: relaxation fits, weight mapping, placement, splitting."""

import dataclasses
import itertools
import math

import numpy as np
import pytest

from cimdv.model.conductance import (
    OFF_TARGET_US,
    RELAXATION_COEFFS,
    RELAXATION_FIT_MAX_ERROR_US,
    RELAXATION_FITS,
    RELAXATION_G_US,
    RELAXATION_TIMES_S,
    RELAXATION_ZERO_CROSSING_US,
    WeightMapping,
    map_weights,
    place,
    relaxation_poly_uS,
    relaxation_sigma_uS,
    split_layer,
)
from cimdv.model.encoding import CoreConfig, LineMode, encode_phases

DAY = 86400.0
#: The table is printed to 0.01 uS, so a fit is judged to half its last digit.
FIT_TOL_US = 0.005


def differential(m, rows_in):
    """What the columns integrate, in weight units: sum_i polarity_i * in_i * G_i / scale."""
    pol = np.array([{LineMode.POS: 1, LineMode.NEG: -1, LineMode.OFF: 0}[lm] for lm in m.line_modes])
    return (rows_in * pol).astype(np.float64) @ m.g_target_uS / m.scale_uS


def dyadic_weights(k, n, seed=0):
    """Weights that are multiples of 1/8 in [-1, 1]: every product and difference below is exact."""
    return np.random.default_rng(seed).integers(-8, 9, size=(k, n)) / 8.0


# ---------------------------------------------------------------------------------------------
# Relaxation.


@pytest.mark.parametrize("t", RELAXATION_TIMES_S)
def test_fit_reproduces_table(t):
    got = relaxation_poly_uS(RELAXATION_G_US, t)
    err = np.abs(got - np.asarray(RELAXATION_FITS[t]))
    assert err.max() <= FIT_TOL_US
    assert err.max() == pytest.approx(RELAXATION_FIT_MAX_ERROR_US[t])
    # Inside 0..40 uS the public function is exactly the polynomial at the fit times.
    np.testing.assert_array_equal(relaxation_sigma_uS(RELAXATION_G_US, t), got)


@pytest.mark.parametrize("t", RELAXATION_TIMES_S)
def test_coefficients_rederived(t):
    x = np.asarray(RELAXATION_G_US) / 40.0
    c = np.polynomial.polynomial.polyfit(x, RELAXATION_FITS[t], 4)
    np.testing.assert_allclose(RELAXATION_COEFFS[t], c, rtol=0, atol=1e-8)


# aihwkit's own coefficients (c0..c4) of ReRamWan2022NoiseModel, src/aihwkit/inference/noise/reram.py
# (MIT licence), from which the table was evaluated: the refit must stay close to them on 0..40 uS.
AIHWKIT_WAN2022 = {
    1.0: (0.348, 16.030, -43.853, 45.393, -16.815),
    DAY: (0.701, 22.086, -50.773, 47.095, -16.458),
    2 * DAY: (0.782, 20.274, -43.507, 37.062, -11.934),
}


@pytest.mark.parametrize("t", RELAXATION_TIMES_S)
def test_fit_close_to_published_polynomial(t):
    g = np.linspace(0, 40, 401)
    ref = np.polynomial.polynomial.polyval(g / 40, AIHWKIT_WAN2022[t])
    assert np.abs(relaxation_poly_uS(g, t) - ref).max() < 0.01


@pytest.mark.parametrize("g", [17.0, 20.0, 25.0, 30.0])
def test_monotone_in_time_mid_range(g):
    ts = np.logspace(-1, math.log10(7 * DAY), 200)
    s = np.array([relaxation_sigma_uS(g, t) for t in ts])
    assert np.all(np.diff(s) >= 0)
    assert relaxation_sigma_uS(g, DAY) > relaxation_sigma_uS(g, 1.0)


@pytest.mark.parametrize("g", np.linspace(0, 40, 17))
def test_monotone_between_fit_times(g):
    for lo, hi in itertools.pairwise(RELAXATION_TIMES_S):
        s = np.array([relaxation_sigma_uS(g, t) for t in np.logspace(math.log10(lo), math.log10(hi), 50)])
        d = np.diff(s)
        assert np.all(d >= -1e-12) or np.all(d <= 1e-12)


@pytest.mark.parametrize("g", [5.0, 10.0, 15.0, 32.0, 36.0])
def test_documented_dip_from_one_to_two_days(g):
    """The published 2-day fit is below the 1-day fit for G in ~2.2-16.9 and ~30.1-38.2 uS (docstring)."""
    dip = relaxation_sigma_uS(g, DAY) - relaxation_sigma_uS(g, 2 * DAY)
    assert 0 < dip < 0.07


def test_interpolation_is_linear_in_log_time():
    g = np.array([1.0, 10.0, 25.0])
    mid = math.sqrt(1.0 * DAY)
    want = 0.5 * (relaxation_poly_uS(g, 1.0) + relaxation_poly_uS(g, DAY))
    np.testing.assert_allclose(relaxation_sigma_uS(g, mid), want, rtol=1e-12)
    t = DAY * 2**0.25
    want = 0.75 * relaxation_poly_uS(g, DAY) + 0.25 * relaxation_poly_uS(g, 2 * DAY)
    np.testing.assert_allclose(relaxation_sigma_uS(g, t), want, rtol=1e-12)


@pytest.mark.parametrize("t", [None, 0, 0.0])
def test_no_time_is_ideal(t):
    g = np.full((3, 4), 20.0)
    s = relaxation_sigma_uS(g, t)
    assert s.shape == (3, 4)
    assert not s.any()
    assert relaxation_sigma_uS(20.0, t) == 0.0


def test_times_outside_the_fits():
    g = np.linspace(0, 40, 9)
    np.testing.assert_array_equal(relaxation_sigma_uS(g, 1e-3), relaxation_poly_uS(g, 1.0))
    np.testing.assert_array_equal(relaxation_sigma_uS(g, 0.999), relaxation_poly_uS(g, 1.0))
    np.testing.assert_array_equal(relaxation_sigma_uS(g, 1e9), relaxation_poly_uS(g, 2 * DAY))


def test_vectorised_over_g():
    g = np.linspace(0, 40, 12).reshape(3, 4)
    s = relaxation_sigma_uS(g, 100.0)
    assert s.shape == (3, 4)
    np.testing.assert_array_equal(s.ravel(), [relaxation_sigma_uS(v, 100.0) for v in g.ravel()])
    assert isinstance(relaxation_sigma_uS(10, 1), float)


def test_polynomials_positive_on_range_and_where_they_cross_zero():
    """No floor acts on 0..40 uS; extrapolated, the fits cross zero near 48.0, 52.0, 55.5 uS (docstring)."""
    g = np.linspace(0, 40, 4001)
    for t, where in zip(RELAXATION_TIMES_S, (48.0, 52.0, 55.5), strict=True):
        assert relaxation_poly_uS(g, t).min() > 0.3
        z = RELAXATION_ZERO_CROSSING_US[t]
        assert z == pytest.approx(where, abs=0.05)
        assert relaxation_poly_uS(z - 0.01, t) > 0 > relaxation_poly_uS(z + 0.01, t)


def test_above_the_fitted_range():
    g = np.array([10.0, 40.0, 50.0, 80.0])
    hold = relaxation_sigma_uS(g, 1.0)
    assert hold[2] == hold[3] == hold[1] == relaxation_poly_uS(40.0, 1.0)
    poly = relaxation_sigma_uS(g, 1.0, above_fit="poly")
    assert poly[2] == 0.0 and poly[3] == 0.0  # floored: the 1 s polynomial is negative above 48 uS
    assert poly[1] == hold[1]
    with pytest.raises(ValueError, match="g_uS"):
        relaxation_sigma_uS(g, 1.0, above_fit="raise")
    relaxation_sigma_uS(g[:2], 1.0, above_fit="raise")


@pytest.mark.parametrize(
    ("g", "t", "kw", "exc", "name"),
    [
        (-1.0, 1.0, {}, ValueError, "g_uS"),
        ([1.0, np.nan], 1.0, {}, ValueError, "g_uS"),
        ([1.0, np.inf], 1.0, {}, ValueError, "g_uS"),
        (["a"], 1.0, {}, TypeError, "g_uS"),
        (1.0, -1.0, {}, ValueError, "t_s"),
        (1.0, math.nan, {}, ValueError, "t_s"),
        (1.0, math.inf, {}, ValueError, "t_s"),
        (1.0, "1", {}, TypeError, "t_s"),
        (1.0, True, {}, TypeError, "t_s"),
        (1.0, 1.0, {"above_fit": "clip"}, ValueError, "above_fit"),
        (1.0, 1.0, {"above_fit": 1}, TypeError, "above_fit"),
    ],
)
def test_relaxation_bad_input(g, t, kw, exc, name):
    with pytest.raises(exc, match=name):
        relaxation_sigma_uS(g, t, **kw)


def test_relaxation_poly_bad_time():
    with pytest.raises(ValueError, match="t_fit_s"):
        relaxation_poly_uS(1.0, 2.0)


# ---------------------------------------------------------------------------------------------
# Mapping.


def test_layout_and_line_modes():
    w = dyadic_weights(5, 3)
    m = map_weights(w, bias=np.ones(3), x_max=7, bias_rows=2, w_max=1.0)
    assert m.g_target_uS.shape == (2 * 5 + 2 * 2, 3)
    assert (m.fan_in, m.n_rows, m.n_cols) == (5, 14, 3)
    assert m.line_modes == (LineMode.POS, LineMode.NEG) * 7
    np.testing.assert_array_equal(m.g_target_uS[0:10:2], np.maximum(w, 0) * 40)
    np.testing.assert_array_equal(m.g_target_uS[1:10:2], np.maximum(-w, 0) * 40)
    np.testing.assert_allclose(m.g_target_uS[10::2], np.full((2, 3), 40 / 14), rtol=1e-15)
    assert not m.g_target_uS[11::2].any()


def test_sign_scheme_one_device_on():
    w = dyadic_weights(40, 16)
    m = map_weights(w, w_max=1.0, bias_rows=0)
    gp, gn = m.g_target_uS[0::2], m.g_target_uS[1::2]
    on = (gp > m.off_target_uS).astype(int) + (gn > m.off_target_uS).astype(int)
    np.testing.assert_array_equal(on, (w != 0).astype(int))
    assert m.off_target_uS == OFF_TARGET_US < m.g_min_uS
    np.testing.assert_array_equal((gp - gn) / m.scale_uS, w)


def test_sign_scheme_random_weights():
    w = np.random.default_rng(1).normal(size=(64, 8))
    m = map_weights(w, bias_rows=0)
    gp, gn = m.g_target_uS[0::2], m.g_target_uS[1::2]
    assert np.all(np.minimum(gp, gn) == m.off_target_uS)
    np.testing.assert_allclose((gp - gn) / m.scale_uS, w, rtol=1e-14, atol=0)


def test_offset_scheme():
    w = dyadic_weights(40, 16)
    m = map_weights(w, scheme="offset", w_max=1.0, bias_rows=0)
    gp, gn = m.g_target_uS[0::2], m.g_target_uS[1::2]
    np.testing.assert_array_equal((gp - gn) / m.scale_uS, w)
    np.testing.assert_array_equal(gp + gn, np.full_like(w, 40.0))
    assert m.scheme == "offset" and m.above_g_max == 0
    assert gp.min() >= 0 and gn.min() >= 0


def test_offset_scheme_random_weights():
    w = np.random.default_rng(2).normal(size=(64, 8))
    m = map_weights(w, scheme="offset", percentile=100, bias_rows=0)
    gp, gn = m.g_target_uS[0::2], m.g_target_uS[1::2]
    assert m.w_max == np.abs(w).max()
    np.testing.assert_allclose((gp - gn) / m.scale_uS, w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gp + gn, 40.0, rtol=1e-14)


def test_offset_scheme_refuses_negative_conductance():
    w = np.random.default_rng(3).normal(size=(64, 8))
    with pytest.raises(ValueError, match=r"^W: .*w_max"):
        map_weights(w, scheme="offset")  # 5 % of |W| lie above the 95th percentile
    with pytest.raises(ValueError, match=r"^bias: "):
        map_weights(w, scheme="offset", percentile=100, bias=np.full(8, 1e3), x_max=7)


def test_w_max_is_the_percentile():
    w = np.random.default_rng(4).normal(size=(100, 20))
    m = map_weights(w)
    assert m.w_max == np.percentile(np.abs(w), 95)
    assert m.scale_uS == 40.0 / m.w_max
    assert map_weights(w, percentile=50).w_max == np.percentile(np.abs(w), 50)
    assert map_weights(w, w_max=2.5).w_max == 2.5
    assert map_weights(w, g_max_uS=20.0).scale_uS == 20.0 / m.w_max


@pytest.mark.parametrize("scheme", ["sign", "offset"])
def test_differential_sum_reproduces_mvm_exactly(scheme):
    k, n, x_max, nb = 24, 10, 7, 2
    w = dyadic_weights(k, n, seed=5)
    b = np.random.default_rng(6).integers(-8, 9, size=n) / 8.0 * (nb * x_max)
    m = map_weights(w, scheme=scheme, w_max=1.0, bias=b, bias_rows=nb, x_max=x_max)
    x = np.random.default_rng(7).integers(-x_max, x_max + 1, size=(32, k))
    rows = m.inputs(x)
    assert rows.shape == (32, 2 * (k + nb)) and rows.dtype == np.int64
    np.testing.assert_array_equal(rows[:, 0 : 2 * k : 2], x)
    np.testing.assert_array_equal(rows[:, 1 : 2 * k : 2], x)
    assert np.all(rows[:, 2 * k :] == x_max)
    want = x @ w + b
    np.testing.assert_array_equal(m.ideal(x), want)
    np.testing.assert_array_equal(differential(m, rows), want)
    np.testing.assert_array_equal(differential(m, m.inputs(x[0])), want[0])


@pytest.mark.parametrize("scheme", ["sign", "offset"])
def test_differential_sum_random_weights(scheme):
    rng = np.random.default_rng(8)
    w, b = rng.normal(size=(50, 6)), rng.normal(size=6)
    m = map_weights(w, scheme=scheme, percentile=100, bias=b, x_max=15, bias_rows=3)
    x = rng.integers(-15, 16, size=(20, 50))
    np.testing.assert_allclose(differential(m, m.inputs(x, 15)), x @ w + b, rtol=1e-10, atol=1e-10)


def test_bias_convention():
    b = np.array([3.5, -7.0, 0.0])
    m = map_weights(np.ones((4, 3)), bias=b, bias_rows=4, x_max=7, w_max=1.0)
    np.testing.assert_allclose(m.bias_row_weight, b / (4 * 7), rtol=1e-15)
    g = m.g_target_uS[8:]
    per_row = (g[0::2] - g[1::2]) / m.scale_uS
    np.testing.assert_allclose(per_row, np.tile(b / 28, (4, 1)), rtol=1e-15)
    np.testing.assert_allclose(per_row.sum(axis=0) * m.x_max, b, rtol=1e-15)
    np.testing.assert_array_equal(m.ideal(np.zeros(4, dtype=int)), b)


def test_no_bias_keeps_the_rows():
    w = dyadic_weights(3, 2)
    m = map_weights(w, w_max=1.0)
    assert m.n_rows == 2 * (3 + 2) and not m.bias.any() and m.x_max is None
    assert not m.g_target_uS[6:].any()
    np.testing.assert_array_equal(m.inputs([1, 2, 3], x_max=3)[6:], [3, 3, 3, 3])
    assert map_weights(w, w_max=1.0, bias_rows=0).n_rows == 6
    np.testing.assert_array_equal(map_weights(w, w_max=1.0, bias_rows=0).inputs([1, 2, 3]), [1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(map_weights(w, scheme="offset", w_max=1.0).g_target_uS[6:], 20.0)


def test_above_g_max_and_below_g_min_are_counted_not_clipped():
    w = np.array([[2.0, -1.5, 1.0, 0.5], [-1.0, 0.01, 0.0, -3.0]])
    m = map_weights(w, w_max=1.0, bias_rows=0)
    assert m.above_g_max == 3  # 2.0, -1.5, -3.0
    assert m.g_target_uS.max() == 3.0 * 40.0
    assert m.below_g_min == 1  # 0.01 -> 0.4 uS
    m = map_weights(w, w_max=1.0, bias=np.array([0.0, 0.0, 70.0, 0.0]), x_max=7, bias_rows=2)
    assert m.above_g_max == 3 + 2  # each bias row carries 5.0 > w_max
    rng = np.random.default_rng(9)
    w = rng.normal(size=(200, 50))
    m = map_weights(w, bias_rows=0)
    assert m.above_g_max == np.count_nonzero(np.abs(w) > m.w_max) == 500


def test_mapping_is_frozen_and_readonly():
    m = map_weights(dyadic_weights(3, 2), w_max=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.w_max = 2.0
    for arr in (m.g_target_uS, m.weights, m.bias):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 1.0


W4 = np.arange(1.0, 9.0).reshape(4, 2)


@pytest.mark.parametrize(
    ("args", "kw", "exc", "name"),
    [
        ((np.ones(4),), {}, ValueError, "W"),
        ((np.ones((0, 3)),), {}, ValueError, "W"),
        ((np.array([[1.0, np.nan]]),), {}, ValueError, "W"),
        ((np.array([[1.0, np.inf]]),), {}, ValueError, "W"),
        ((np.array([["a"]]),), {}, TypeError, "W"),
        ((np.array([[True]]),), {}, TypeError, "W"),
        ((np.zeros((3, 3)),), {}, ValueError, "w_max"),
        ((W4,), {"scheme": "diff"}, ValueError, "scheme"),
        ((W4,), {"scheme": None}, TypeError, "scheme"),
        ((W4,), {"g_max_uS": -40.0}, ValueError, "g_max_uS"),
        ((W4,), {"g_max_uS": math.nan}, ValueError, "g_max_uS"),
        ((W4,), {"g_min_uS": -1.0}, ValueError, "g_min_uS"),
        ((W4,), {"g_min_uS": 40.0}, ValueError, "g_min_uS"),
        ((W4,), {"g_min_uS": "1"}, TypeError, "g_min_uS"),
        ((W4,), {"percentile": 0.0}, ValueError, "percentile"),
        ((W4,), {"percentile": 100.5}, ValueError, "percentile"),
        ((W4,), {"percentile": math.nan}, ValueError, "percentile"),
        ((W4,), {"w_max": 0.0}, ValueError, "w_max"),
        ((W4,), {"w_max": -1.0}, ValueError, "w_max"),
        ((W4,), {"w_max": math.inf}, ValueError, "w_max"),
        ((W4,), {"bias_rows": -1}, ValueError, "bias_rows"),
        ((W4,), {"bias_rows": 1.5}, TypeError, "bias_rows"),
        ((W4,), {"bias": np.ones(3), "x_max": 7}, ValueError, "bias"),
        ((W4,), {"bias": np.array([1.0, np.nan]), "x_max": 7}, ValueError, "bias"),
        ((W4,), {"bias": np.ones(2)}, ValueError, "x_max"),
        ((W4,), {"bias": np.ones(2), "x_max": 7, "bias_rows": 0}, ValueError, "bias_rows"),
        ((W4,), {"x_max": 0}, ValueError, "x_max"),
        ((W4,), {"x_max": 7.0}, TypeError, "x_max"),
    ],
)
def test_map_weights_bad_input(args, kw, exc, name):
    with pytest.raises(exc, match=name):
        map_weights(*args, **kw)


@pytest.mark.parametrize(
    ("x", "x_max", "exc", "name"),
    [
        ([1.0, 2.0, 3.0, 4.0], None, TypeError, "x"),
        ([True, False, True, False], None, TypeError, "x"),
        ([1, 2, 3], None, ValueError, "x"),
        ([1, 2, 3, 8], None, ValueError, "x"),
        ([1, 2, 3, -8], None, ValueError, "x"),
        ([1, 2, 3, 4], 5, ValueError, "x_max"),
        ([1, 2, 3, 4], 0, ValueError, "x_max"),
        ([1, 2, 3, 4], 7.0, TypeError, "x_max"),
    ],
)
def test_inputs_bad_input(x, x_max, exc, name):
    m = map_weights(W4, bias=np.ones(2), x_max=7)
    with pytest.raises(exc, match=name):
        m.inputs(x, x_max)


def test_inputs_needs_x_max_for_bias_rows():
    m = map_weights(W4)
    with pytest.raises(ValueError, match="x_max"):
        m.inputs([1, 2, 3, 4])
    with pytest.raises(ValueError, match="x"):
        m.inputs([1, 2, 3, 4], x_max=3)
    with pytest.raises(TypeError, match="x"):
        m.ideal([0.5, 0, 0, 0])


# ---------------------------------------------------------------------------------------------
# Placement.


def test_place_forward_padding():
    m = map_weights(dyadic_weights(10, 4), w_max=1.0, bias=np.ones(4), x_max=7)
    g, modes = place(m, 64)
    assert g.shape == (64, 4) and len(modes) == 64
    np.testing.assert_array_equal(g[:24], m.g_target_uS)
    assert np.all(g[24:] == m.off_target_uS)
    assert modes[:24] == m.line_modes and set(modes[24:]) == {LineMode.OFF}


def test_place_forward_skips_bad_rows():
    m = map_weights(dyadic_weights(10, 4), w_max=1.0, bias=np.ones(4), x_max=7)
    bad = {0, 3, 4, 17, 63}
    g, modes = place(m, 64, bad_rows=bad)
    used = [i for i, lm in enumerate(modes) if lm != LineMode.OFF]
    assert len(used) == m.n_rows and not bad & set(used)
    assert used == sorted(set(range(64)) - bad)[: m.n_rows]
    assert all(modes[r] == LineMode.OFF for r in bad)
    assert np.all(g[sorted(bad)] == m.off_target_uS)
    np.testing.assert_array_equal(g[used], m.g_target_uS)
    assert tuple(modes[r] for r in used) == m.line_modes


def test_place_backward_aligned_pairs():
    m = map_weights(dyadic_weights(10, 4), w_max=1.0, bias=np.ones(4), x_max=7)
    bad = {3, 10, 11, 20}
    g, modes = place(m, 64, backward=True, bad_rows=bad)
    used = [i for i, lm in enumerate(modes) if lm != LineMode.OFF]
    assert len(used) == m.n_rows and not bad & set(used)
    assert all(used[i] % 2 == 0 and used[i + 1] == used[i] + 1 for i in range(0, len(used), 2))
    assert modes[2] == modes[3] == LineMode.OFF  # the good partner of bad line 3 stays unused
    np.testing.assert_array_equal(g[used], m.g_target_uS)
    assert np.all(np.delete(g, used, axis=0) == m.off_target_uS)


@pytest.mark.parametrize("backward", [False, True])
def test_placed_core_computes_the_mvm_with_the_exact_encoder(backward):
    """Phase codes of the exact model (docs/analog-boundary.md §3.1) on the placed core give 2*s*(x@W+b)."""
    k, n, core = 12, 5, 40
    m = map_weights(dyadic_weights(k, n, seed=11), w_max=1.0, bias=np.arange(n) * 14 / 8, x_max=7)
    g, modes = place(m, core, backward=backward, bad_rows={1, 6})
    rows, cols = (n, core) if backward else (core, n)
    lines = max(rows, cols)
    cfg = CoreConfig(
        rows=rows,
        cols=cols,
        backward=backward,
        signed=True,
        in_bits=4,
        out_bits=8,
        pulse_mult=1,
        max_count=127,
        line_modes=modes + (LineMode.OFF,) * (lines - core),
    )
    x = np.random.default_rng(12).integers(-7, 8, size=k)
    x_lines = np.zeros(core, dtype=np.int64)
    x_lines[[i for i, lm in enumerate(modes) if lm != LineMode.OFF]] = m.inputs(x)
    codes = encode_phases(cfg, x_lines).astype(np.int64)
    drive = np.einsum("b,bpl->l", 1 << np.arange(cfg.nmag), codes)[:core]
    np.testing.assert_array_equal(drive @ g / (2 * m.scale_uS), x @ m.weights + m.bias)


def test_place_does_not_fit():
    m = map_weights(dyadic_weights(10, 4), w_max=1.0)  # 24 rows
    place(m, 24)
    with pytest.raises(ValueError, match="core_rows"):
        place(m, 23)
    with pytest.raises(ValueError, match="core_rows"):
        place(m, 25, bad_rows={5, 7})
    place(m, 26, bad_rows={5, 7})
    with pytest.raises(ValueError, match="core_rows"):
        place(m, 26, bad_rows={5, 7}, backward=True)  # two aligned pairs lost
    place(m, 26, bad_rows={4, 5}, backward=True)


@pytest.mark.parametrize(
    ("args", "kw", "exc", "name"),
    [
        (("not a mapping", 64), {}, TypeError, "mapping"),
        ((None, 0), {}, ValueError, "core_rows"),
        ((None, 64.0), {}, TypeError, "core_rows"),
        ((None, 64), {"bad_rows": {64}}, ValueError, "bad_rows"),
        ((None, 64), {"bad_rows": {-1}}, ValueError, "bad_rows"),
        ((None, 64), {"bad_rows": "12"}, TypeError, "bad_rows"),
        ((None, 64), {"bad_rows": {1.0}}, TypeError, "bad_rows"),
        ((None, 64), {"backward": 2}, ValueError, "backward"),
    ],
)
def test_place_bad_input(args, kw, exc, name):
    m = map_weights(W4, w_max=1.0)
    args = tuple(m if a is None else a for a in args)
    with pytest.raises(exc, match=name):
        place(*args, **kw)


# ---------------------------------------------------------------------------------------------
# Splitting.


@pytest.mark.parametrize(
    ("k", "core_rows", "bias_rows", "sizes"),
    [
        (300, 256, 2, [100, 100, 100]),
        (126, 256, 2, [126]),
        (127, 256, 2, [64, 63]),
        (1000, 256, 2, [125] * 8),  # 8 segments of <= 126; equal: 125 each
        (192, 196, 2, [96, 96]),  # NeuRRAM CIFAR: 96 weights + 2 bias pairs = 196 rows
        (10, 8, 0, [4, 3, 3]),
    ],
)
def test_split_fewest_equal_segments(k, core_rows, bias_rows, sizes):
    w = np.random.default_rng(13).normal(size=(k, 3))
    segs = split_layer(w, core_rows=core_rows, bias_rows=bias_rows)
    got = [s.fan_in for s in segs]
    assert sorted(got, reverse=True) == sorted(sizes, reverse=True)
    assert max(got) - min(got) <= 1
    assert all(2 * (s.fan_in + bias_rows) <= core_rows for s in segs)
    assert len(segs) == 1 or 2 * (math.ceil(k / (len(segs) - 1)) + bias_rows) > core_rows
    assert [s.fan_in_start for s in segs] == list(np.cumsum([0, *got[:-1]]))
    for s in segs:
        np.testing.assert_array_equal(s.weights, w[s.fan_in_start : s.fan_in_start + s.fan_in])
        place(s, core_rows)


def test_split_common_w_max():
    w = np.random.default_rng(14).normal(size=(300, 4))
    w[:100] *= 10  # a segment with a much larger spread must not get its own scale
    segs = split_layer(w)
    assert {s.w_max for s in segs} == {np.percentile(np.abs(w), 95)}
    assert {s.scale_uS for s in segs} == {40.0 / segs[0].w_max}
    assert {s.w_max for s in split_layer(w, w_max=3.0, percentile=50)} == {3.0}
    assert {s.w_max for s in split_layer(w, percentile=50)} == {np.percentile(np.abs(w), 50)}


def test_split_bias_sums_to_b():
    k, n, x_max = 400, 6, 7
    w = dyadic_weights(k, n, seed=15)
    b = np.random.default_rng(16).integers(-8, 9, size=n) / 8.0 * (4 * 2 * x_max)
    segs = split_layer(w, b, x_max=x_max, w_max=1.0)
    assert len(segs) == 4
    for s in segs:
        np.testing.assert_array_equal(s.bias, b / 4)
        np.testing.assert_array_equal(s.bias_row_weight, b / (4 * 2 * x_max))
    total = sum(s.bias_row_weight * s.bias_rows * x_max for s in segs)
    np.testing.assert_array_equal(total, b)
    x = np.random.default_rng(17).integers(-x_max, x_max + 1, size=(8, k))
    parts = [x[:, s.fan_in_start : s.fan_in_start + s.fan_in] for s in segs]
    np.testing.assert_array_equal(sum(s.ideal(p) for s, p in zip(segs, parts, strict=True)), x @ w + b)
    analog = sum(differential(s, s.inputs(p)) for s, p in zip(segs, parts, strict=True))
    np.testing.assert_array_equal(analog, x @ w + b)


def test_split_random_bias_uneven_segments():
    rng = np.random.default_rng(18)
    w, b = rng.normal(size=(301, 5)), rng.normal(size=5)
    segs = split_layer(w, b, x_max=7, bias_rows=3)
    assert len(segs) == 3
    total = sum(s.bias_row_weight * s.bias_rows * s.x_max for s in segs)
    np.testing.assert_allclose(total, b, rtol=1e-14)


@pytest.mark.parametrize(
    ("args", "kw", "exc", "name"),
    [
        ((np.ones(5),), {}, ValueError, "W"),
        ((np.ones((5, 2)),), {"core_rows": 5}, ValueError, "core_rows"),
        ((np.ones((5, 2)),), {"core_rows": 256.0}, TypeError, "core_rows"),
        ((np.ones((5, 2)),), {"bias_rows": -1}, ValueError, "bias_rows"),
        ((np.ones((5, 2)),), {"percentile": 0}, ValueError, "percentile"),
        ((np.ones((5, 2)), np.ones(3)), {"x_max": 7}, ValueError, "bias"),
        ((np.ones((5, 2)), np.ones(2)), {}, ValueError, "x_max"),
        ((np.ones((5, 2)),), {"scheme": "x"}, ValueError, "scheme"),
    ],
)
def test_split_bad_input(args, kw, exc, name):
    with pytest.raises(exc, match=name):
        split_layer(*args, **kw)


def test_weight_mapping_type_exported():
    assert isinstance(map_weights(W4), WeightMapping)

"""The physical core: ideal limit = exact model, closed form = phase stepping, each term's effect."""

import dataclasses

import numpy as np
import pytest

from cimdv.model import physical
from cimdv.model.encoding import CoreConfig, LineMode
from cimdv.model.exact import ExactCore, MacroParams, run_sequence
from cimdv.model.gauss import NormalStream
from cimdv.model.physical import ConversionMode, CoreStack, PhysicalCore, PhysicalMacroState, PhysicalParams


def random_case(rng, *, rows=None, cols=None):
    rows = rows or int(rng.integers(1, 13))
    cols = cols or int(rng.integers(1, 13))
    backward = bool(rng.integers(0, 2))
    signed = bool(rng.integers(0, 2))
    in_bits = int(rng.integers(2 if signed else 1, 9))
    nmag = in_bits - signed
    out_bits = int(rng.integers(1, 9))
    lines = max(rows, cols)
    cfg = CoreConfig(
        rows=rows,
        cols=cols,
        backward=backward,
        signed=signed,
        in_bits=in_bits,
        out_bits=out_bits,
        pulse_mult=int(rng.integers(1, max(2, 256 >> nmag))),
        max_count=int(rng.integers(0, 2 ** (out_bits - 1))),
        noise_pulses=int(rng.integers(0, 3)),
        line_modes=tuple(int(m) for m in rng.choice([0, 1, 1, 2], size=lines)),
        out_mask=tuple(bool(b) for b in rng.integers(0, 4, size=lines) > 0),
    )
    lo, hi = cfg.in_range
    xs = rng.integers(lo, hi + 1, size=(3, cfg.n_in))
    weights = rng.integers(0, 64, size=(rows, cols))
    return cfg, xs, weights


@pytest.mark.parametrize("seed", range(40))
def test_ideal_physical_core_is_bit_identical_to_the_exact_model(seed):
    rng = np.random.default_rng(seed)
    cfg, xs, weights = random_case(rng)
    delta = int(rng.integers(1, 300))
    threshold = 0
    noise_q = int(rng.integers(0, 40))
    exact = ExactCore(weights, MacroParams(delta=delta, threshold=threshold, noise_q=noise_q, noise_seed=seed + 1))
    params = PhysicalParams(delta_V=float(delta), noise_q_V=float(noise_q))
    assert params.ideal
    phys = PhysicalCore(weights, params, seed=seed, noise_seed=seed + 1)
    for x in xs:
        want = exact.mvm(cfg, x)
        got = phys.mvm(cfg, x)
        assert got.sign.tolist() == want.sign.tolist()
        assert got.count.tolist() == want.count.tolist()
        assert got.sat.tolist() == want.sat.tolist()
        assert got.steps == want.steps
        n_out = cfg.n_out
        assert np.array_equal(got.integ, want.integ[:n_out].astype(np.float64))


@pytest.mark.parametrize("seed", range(10))
def test_batched_count_mode_equals_single_vectors(seed):
    rng = np.random.default_rng(100 + seed)
    cfg, xs, weights = random_case(rng)
    cfg = cfg.replace(noise_pulses=0)
    params = PhysicalParams(
        voltage_mode=True,
        g_par_uS=5.0,
        delta_V=0.004,
        column_gain_sigma=0.05,
        comparator_offset_V=0.002,
        cds_residual_V=0.001,
        decrement_mismatch=0.01,
        decrement_asymmetry=0.05,
    )
    phys = PhysicalCore(weights + 1.0, params, seed=seed)
    sign, count, sat = phys.mvm_batch(cfg, xs)
    for i, x in enumerate(xs):
        r = phys.mvm(cfg, x)
        assert sign[i].tolist() == r.sign.tolist() and count[i].tolist() == r.count.tolist()
        assert sat[i].tolist() == r.sat.tolist()


def test_closed_form_equals_phase_stepping_without_noise():
    rng = np.random.default_rng(3)
    for _ in range(20):
        cfg, xs, weights = random_case(rng)
        cfg = cfg.replace(noise_pulses=0)
        params = PhysicalParams(
            voltage_mode=True,
            g_par_uS=2.0,
            vneg_error=0.08,
            droop=0.03,
            delta_V=0.01,
            column_gain_sigma=0.1,
            cds_residual_V=0.002,
        )
        phys = PhysicalCore(weights + 0.5, params, seed=1)
        for x in xs:
            closed = phys.integrate(cfg, x)
            stepped, clips = phys.integrate_phases(cfg, x)
            assert clips == 0
            np.testing.assert_allclose(closed, stepped, rtol=1e-9, atol=1e-12)


def test_output_referred_noise_matches_per_activation_noise_statistically():
    rows, cols = 64, 8
    weights = np.full((rows, cols), 20.0)
    cfg = CoreConfig(
        rows=rows, cols=cols, backward=False, signed=True, in_bits=3, out_bits=8, pulse_mult=2, max_count=127
    )
    params = PhysicalParams(voltage_mode=True, read_noise_uS=0.4, ktc_noise_V=0.0005, droop=0.02, delta_V=0.01)
    phys = PhysicalCore(weights, params, seed=0)
    x = np.resize([3, -2, 1, 0], rows)
    quiet = PhysicalCore(weights, dataclasses.replace(params, read_noise_uS=0.0, ktc_noise_V=0.0), seed=0)
    mean = quiet.integrate(cfg, x)
    rng = np.random.default_rng(7)
    closed = np.stack([phys.integrate(cfg, x, rng) - mean for _ in range(3000)])
    stepped = np.stack([phys.integrate_phases(cfg, x, rng)[0] - mean for _ in range(600)])
    sd_closed, sd_stepped = closed.std(), stepped.std()
    assert abs(closed.mean()) < 0.1 * sd_closed
    assert sd_closed == pytest.approx(sd_stepped, rel=0.1)


def test_voltage_mode_normalises_by_connected_conductance():
    weights = np.array([[10.0], [30.0], [60.0]])
    cfg = CoreConfig(
        rows=3,
        cols=1,
        backward=False,
        signed=False,
        in_bits=1,
        out_bits=8,
        pulse_mult=1,
        max_count=127,
        line_modes=(LineMode.POS, LineMode.POS, LineMode.OFF),
    )
    phys = PhysicalCore(weights, PhysicalParams(voltage_mode=True, v_read_V=0.1, delta_V=1e-3))
    # x = (1, 0): phase A drives +1, -1; phase B +1, +1; row 2 is disconnected (OFF).
    integ = phys.integrate(cfg, np.array([1, 0, 0]))
    expected = 0.1 * ((10 - 30) + (10 + 30)) / (10 + 30)
    assert integ[0] == pytest.approx(expected)


def test_vneg_error_breaks_the_phase_cancellation_of_a_zero_input():
    weights = np.full((4, 2), 10.0)
    cfg = CoreConfig(rows=4, cols=2, backward=False, signed=True, in_bits=2, out_bits=8, pulse_mult=1, max_count=127)
    ideal = PhysicalCore(weights, PhysicalParams(voltage_mode=True, delta_V=1e-3))
    skewed = PhysicalCore(weights, PhysicalParams(voltage_mode=True, delta_V=1e-3, vneg_error=0.1))
    zero = np.zeros(4, dtype=int)
    assert np.all(ideal.integrate(cfg, zero) == 0)
    assert np.all(skewed.integrate(cfg, zero) > 0)  # phase A (-1) is weaker than phase B (+1)


def test_integrator_rails_clip_and_are_counted():
    weights = np.full((8, 2), 40.0)
    cfg = CoreConfig(rows=8, cols=2, backward=False, signed=False, in_bits=4, out_bits=8, pulse_mult=4, max_count=127)
    phys = PhysicalCore(weights, PhysicalParams(integrator_sat_V=1000.0))
    integ, clips = phys.integrate_phases(cfg, np.full(8, 15))
    assert clips > 0 and np.all(integ == 1000.0)
    result = phys.mvm(cfg, np.full(8, 15))
    assert np.all(result.integ == 1000.0)
    assert result.rail_clips == clips and phys.rail_clips == 2 * clips


def test_static_terms_shift_the_conversion_and_are_reproducible():
    rng = np.random.default_rng(0)
    weights = rng.integers(0, 64, size=(16, 16)).astype(float)
    cfg = CoreConfig(rows=16, cols=16, backward=False, signed=True, in_bits=4, out_bits=8, pulse_mult=1, max_count=127)
    params = PhysicalParams(delta_V=20.0, comparator_offset_V=15.0, decrement_mismatch=0.05, column_gain_sigma=0.1)
    a = PhysicalCore(weights, params, seed=5)
    b = PhysicalCore(weights, params, seed=5)
    c = PhysicalCore(weights, params, seed=6)
    x = rng.integers(-7, 8, size=16)
    assert a.mvm(cfg, x).count.tolist() == b.mvm(cfg, x).count.tolist()
    assert a.mvm(cfg, x).count.tolist() != c.mvm(cfg, x).count.tolist()
    ideal = PhysicalCore(weights, PhysicalParams(delta_V=20.0))
    assert a.mvm(cfg, x).count.tolist() != ideal.mvm(cfg, x).count.tolist()


def test_ternary_and_sar_modes():
    weights = np.eye(4) * 10
    cfg = CoreConfig(rows=4, cols=4, backward=False, signed=True, in_bits=4, out_bits=5, pulse_mult=1, max_count=15)
    x = np.array([7, -7, 1, 0])
    tern = PhysicalCore(weights, PhysicalParams(mode=ConversionMode.TERNARY, ternary_threshold_V=50.0))
    assert tern.mvm(cfg, x).ternary.tolist() == [1, -1, 0, 0]
    # SAR: 4 magnitude bits, Δ0 = 8 quanta; the code is monotone in |u|.
    sar = PhysicalCore(np.ones((1, 1)), PhysicalParams(mode=ConversionMode.SAR, delta_V=2.0))
    cfg1 = CoreConfig(rows=1, cols=1, backward=False, signed=False, in_bits=8, out_bits=5, pulse_mult=1, max_count=15)
    codes = [int(sar.mvm(cfg1, np.array([v])).count[0]) for v in range(0, 33, 2)]
    assert codes == sorted(codes) and codes[-1] > codes[1]


def test_params_round_trip_and_reject_bad_values():
    params = PhysicalParams(voltage_mode=True, read_noise_uS=0.4, integrator_sat_V=0.5, mode="sar")
    assert PhysicalParams.from_json(params.to_json()) == params
    with pytest.raises(ValueError, match=r"unknown PhysicalParams key\(s\) \['read_nose_uS'\]"):
        PhysicalParams.from_dict({"read_nose_uS": 1.0})
    with pytest.raises(ValueError, match="read_noise_uS must be >= 0"):
        PhysicalParams(read_noise_uS=-1.0)
    with pytest.raises(ValueError, match="delta_V must be finite"):
        PhysicalParams(delta_V=float("nan"))
    with pytest.raises(ValueError, match="mode must be one of"):
        PhysicalParams(mode="flash")
    with pytest.raises(TypeError, match="voltage_mode must be a bool"):
        PhysicalParams(voltage_mode=1)
    with pytest.raises(ValueError, match="droop must be < 1"):
        PhysicalParams(droop=1.0)


def test_bad_conductances_and_inputs_name_the_parameter():
    with pytest.raises(ValueError, match="g_uS must be finite"):
        PhysicalCore(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="g_uS must be >= 0"):
        PhysicalCore(np.array([[1.0, -0.1]]))
    with pytest.raises(ValueError, match="g_uS must be a non-empty 2-D"):
        PhysicalCore(np.ones(4))
    core = PhysicalCore(np.ones((4, 4)), PhysicalParams(read_noise_uS=0.1))
    cfg = CoreConfig(rows=4, cols=4, backward=False, signed=True, in_bits=4, out_bits=8, pulse_mult=1, max_count=127)
    with pytest.raises(ValueError, match="rng is required"):
        core.mvm(cfg, np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="x"):
        core.mvm(cfg, np.array([8, 0, 0, 0]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="cfg is for a 8x4 core"):
        core.mvm(cfg.replace(rows=8, line_modes=None, out_mask=None), np.zeros(8, dtype=int))


def test_core_stack_equals_the_cores_one_by_one_and_checks_its_input():
    rng = np.random.default_rng(9)
    cfg = CoreConfig(rows=32, cols=24, backward=False, signed=True, in_bits=4, out_bits=8, pulse_mult=2, max_count=127)
    params = PhysicalParams(
        voltage_mode=True,
        g_par_uS=1.0,
        column_gain_sigma=0.05,
        comparator_offset_V=1e-3,
        cds_residual_V=5e-4,
        decrement_asymmetry=0.05,
        decrement_mismatch=0.01,
        delta_V=2e-3,
    )
    cores = [PhysicalCore(rng.uniform(0, 40, (32, 24)), params, seed=s) for s in range(5)]
    stack = CoreStack(cores)
    xs = rng.integers(-7, 8, (5, 32))
    sign, count, sat = stack.mvm(cfg, xs)
    for i, core in enumerate(cores):
        r = core.mvm(cfg, xs[i])
        # float32 products: a neuron exactly on a decision boundary could differ; none does here.
        assert count[i].tolist() == r.count.tolist() and sign[i].tolist() == r.sign.tolist()
        assert sat[i].tolist() == r.sat.tolist()
    with pytest.raises(ValueError, match=r"xs must be \(cores=5"):
        stack.mvm(cfg, xs[:4])
    with pytest.raises(ValueError, match="one geometry"):
        CoreStack([cores[0], PhysicalCore(np.ones((4, 4)), params)])
    with pytest.raises(ValueError, match="count mode"):
        CoreStack([PhysicalCore(np.ones((4, 4)), PhysicalParams(mode="sar"))])


@pytest.mark.parametrize("seed", range(15))
def test_ideal_physical_macro_steps_to_the_exact_result(seed):
    rng = np.random.default_rng(500 + seed)
    cfg, xs, weights = random_case(rng)
    delta, noise_q = int(rng.integers(1, 300)), int(rng.integers(0, 40))
    exact = ExactCore(weights, MacroParams(delta=delta, noise_q=noise_q, noise_seed=seed + 1))
    core = PhysicalCore(weights, PhysicalParams(delta_V=float(delta), noise_q_V=float(noise_q)), noise_seed=seed + 1)
    state = PhysicalMacroState(core, seed=seed)
    for x in xs:
        want, got = exact.mvm(cfg, x), run_sequence(cfg, x, state)
        assert got.count.tolist() == want.count.tolist() and got.sign.tolist() == want.sign.tolist()
        assert got.sat.tolist() == want.sat.tolist() and got.steps == want.steps


NOISY = PhysicalParams(
    voltage_mode=True,
    g_par_uS=1.0,
    read_noise_uS=0.5,
    ktc_noise_V=3e-4,
    vneg_error=0.05,
    droop=0.02,
    column_gain_sigma=0.05,
    comparator_offset_V=1e-3,
    cds_residual_V=5e-4,
    decrement_asymmetry=0.05,
    decrement_mismatch=0.01,
    delta_V=2e-3,
    noise_q_V=1e-3,
)


def test_noisy_macro_states_with_one_seed_are_bit_identical():
    """The noisy-RTL scoreboard: the reference steps its own copy with the responder's seed."""
    rng = np.random.default_rng(77)
    cfg, xs, weights = random_case(rng, rows=24, cols=20)
    core = PhysicalCore(weights + 0.5, NOISY, seed=3, noise_seed=9)
    a, b, c = (PhysicalMacroState(core, seed=s) for s in (5, 5, 6))
    results = [[run_sequence(cfg, x, st) for x in xs] for st in (a, b, c)]
    for ra, rb in zip(results[0], results[1], strict=True):
        assert np.array_equal(ra.integ, rb.integ) and ra.count.tolist() == rb.count.tolist()
    assert any(not np.array_equal(ra.integ, rc.integ) for ra, rc in zip(results[0], results[2], strict=True))


@pytest.mark.parametrize("multi_sampling", [True, False])
def test_macro_state_noise_matches_the_closed_form_statistically(multi_sampling):
    rows, cols = 32, 16
    weights = np.random.default_rng(1).uniform(1, 40, (rows, cols))
    cfg = CoreConfig(
        rows=rows, cols=cols, backward=False, signed=True, in_bits=3, out_bits=8, pulse_mult=2, max_count=0
    )
    params = dataclasses.replace(NOISY, noise_q_V=0.0, multi_sampling=multi_sampling)
    core = PhysicalCore(weights, params, seed=2)
    x = np.resize([3, -2, 1, 0, -3], rows)
    quiet = PhysicalCore(weights, dataclasses.replace(params, read_noise_uS=0.0, ktc_noise_V=0.0), seed=2)
    mean = quiet.integrate(cfg, x)
    state = PhysicalMacroState(core, seed=0)
    stepped = np.stack([run_sequence(cfg, x, state).integ - mean for _ in range(400)])
    rng = np.random.default_rng(3)
    closed = np.stack([core.integrate(cfg, x, rng) - mean for _ in range(4000)])
    assert abs(stepped.mean()) < 0.15 * stepped.std()
    assert stepped.std() == pytest.approx(closed.std(), rel=0.12)


def _full_kcl(g, drive, r_ohm, g_par):
    """Brute force: unknowns V' (driven lines after the series resistor) and V (floating sensed lines)."""
    n_in, n_out = g.shape
    g_s = 1e6 / r_ohm
    a = np.zeros((n_in + n_out, n_in + n_out))
    b = np.zeros(n_in + n_out)
    for i in range(n_in):
        a[i, i] = g_s + g[i].sum()
        a[i, n_in:] = -g[i]
        b[i] = g_s * drive[i]
    for j in range(n_out):
        a[n_in + j, :n_in] = -g[:, j]
        a[n_in + j, n_in + j] = g[:, j].sum() + g_par
    return np.linalg.solve(a, b)[n_in:]


def test_ir_drop_transfer_matches_a_full_kcl_solve_and_vanishes_with_resistance():
    rng = np.random.default_rng(4)
    g = rng.uniform(0, 40, (12, 5))
    drive = rng.choice([-1.0, 1.0], 12)
    for r_ohm in (100.0, 2000.0):
        core = PhysicalCore(g, PhysicalParams(voltage_mode=True, g_par_uS=2.0, ir_drop_ohm=r_ohm))
        t = core.transfer(False, np.ones(12, dtype=bool))
        np.testing.assert_allclose(drive @ t, _full_kcl(g, drive, r_ohm, 2.0), rtol=1e-10, atol=1e-12)
    tiny = PhysicalCore(g, PhysicalParams(voltage_mode=True, g_par_uS=2.0, ir_drop_ohm=1e-6))
    ideal = PhysicalCore(g, PhysicalParams(voltage_mode=True, g_par_uS=2.0))
    np.testing.assert_allclose(
        tiny.transfer(False, np.ones(12, bool)), ideal.transfer(False, np.ones(12, bool)), rtol=1e-6
    )
    # More series resistance, less signal for a drive that sources current one way.
    ones = np.ones(12)
    swing = [
        abs(ones @ PhysicalCore(g, PhysicalParams(ir_drop_ohm=r)).transfer(False, np.ones(12, bool))).sum()
        for r in (1.0, 1000.0, 10000.0)
    ]
    assert swing[0] > swing[1] > swing[2]


def test_ir_drop_paths_agree():
    rng = np.random.default_rng(8)
    cfg, xs, weights = random_case(rng, rows=10, cols=7)
    cfg = cfg.replace(noise_pulses=0)
    params = PhysicalParams(voltage_mode=True, g_par_uS=1.0, ir_drop_ohm=500.0, delta_V=0.01)
    core = PhysicalCore(weights + 1.0, params)
    state = PhysicalMacroState(core, seed=0)
    for x in xs:
        closed = core.integrate(cfg, x)  # float32 products (a non-ideality is on)
        stepped, _ = core.integrate_phases(cfg, x)
        np.testing.assert_allclose(stepped, closed, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(run_sequence(cfg, x, state).integ, stepped, rtol=1e-9, atol=1e-12)


# -- speed paths: the fused float32 count, the stack's two threads, block-drawn noise ----------------


def test_float32_count_equals_the_reference_count_off_the_boundaries():
    """_count32 multiplies by reciprocal quanta; away from exact quantum multiples it is _count."""
    rng = np.random.default_rng(41)
    n = 4096
    q = 1e-3 * rng.uniform(0.5, 1.5, n)
    q_pos, q_neg = -(q * 0.95).astype(np.float32), -(q * 1.05).astype(np.float32)
    u = (rng.uniform(-0.2, 0.2, (8, n))).astype(np.float32)
    u[0, :16] = 0.0
    want = physical._count(u, q_pos, q_neg, 100, None, True)
    got = physical._count32(u.copy(), 1.0 / q_pos, 1.0 / q_neg, 100, np.empty_like(u))
    ratio = np.where(u > 0, u / -q_pos, u / -q_neg)
    clear = np.abs(ratio - np.round(ratio)) > 1e-4  # not within rounding of a quantum boundary
    assert clear.mean() > 0.99 and (want[2] & clear).any() and (~want[2] & clear).any()
    for w, g in zip(want, got, strict=True):
        assert np.array_equal(w[clear], g[clear])


def test_reciprocal_quanta_keep_the_ordering_the_float32_count_relies_on():
    cfg = CoreConfig(rows=4, cols=6, backward=False, signed=True, in_bits=3, out_bits=8, pulse_mult=1, max_count=9)
    general = PhysicalCore(np.ones((4, 6)), NOISY, seed=4)
    assert general._plan(cfg)["fused"] is False  # vneg error and droop need the general path
    params = dataclasses.replace(NOISY, vneg_error=0.0, droop=0.0, decrement_mismatch=0.2)
    plan = PhysicalCore(np.ones((4, 6)), params, seed=4)._plan(cfg)
    assert plan["fused"] and (np.abs(plan["r_pos"]) >= np.abs(plan["r_neg"])).all()


FUSED = dataclasses.replace(NOISY, vneg_error=0.0, droop=0.0, noise_q_V=0.0)
CFG_32x24 = CoreConfig(rows=32, cols=24, backward=False, signed=True, in_bits=4, out_bits=8, pulse_mult=2, max_count=63)


def test_batch_results_do_not_alias_the_working_space():
    rng = np.random.default_rng(6)
    core = PhysicalCore(rng.uniform(0, 40, (32, 24)), FUSED, seed=1)
    xs = rng.integers(-7, 8, (50, 32))
    first = core.mvm_batch(CFG_32x24, xs, np.random.default_rng(2))
    kept = [a.copy() for a in first]
    core.mvm_batch(CFG_32x24, -xs, np.random.default_rng(3))
    single = core.mvm(CFG_32x24, xs[0], np.random.default_rng(2))
    core.mvm(CFG_32x24, -xs[0], np.random.default_rng(2))
    for a, b in zip(first, kept, strict=True):
        assert np.array_equal(a, b)
    assert single.integ.dtype == np.float32 and np.isfinite(single.integ).all()


def test_stream_noise_reproduces_and_feeds_every_path():
    rng = np.random.default_rng(12)
    core = PhysicalCore(rng.uniform(0, 40, (32, 24)), FUSED, seed=1)
    xs = rng.integers(-7, 8, (6, 32))
    a = [core.mvm(CFG_32x24, x, NormalStream(4)).count for x in xs]
    b = [core.mvm(CFG_32x24, x, NormalStream(4)).count for x in xs]
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    stream = NormalStream(4)
    sequence = [core.mvm(CFG_32x24, x, stream).integ for x in xs]
    assert len({bytes(s) for s in sequence}) == len(xs)  # each vector its own draw
    # The stepped path (integrator rails) takes the stream's generator.
    railed = PhysicalCore(core.g, dataclasses.replace(FUSED, integrator_sat_V=10.0), seed=1)
    assert railed.mvm(CFG_32x24, xs[0], NormalStream(4)).count.shape == (24,)


@pytest.mark.parametrize("noisy", [False, True])
def test_core_stack_threads_give_identical_results(noisy):
    rng = np.random.default_rng(13)
    params = FUSED if noisy else dataclasses.replace(FUSED, read_noise_uS=0.0, ktc_noise_V=0.0)
    cores = [PhysicalCore(rng.uniform(0, 40, (32, 24)), params, seed=s) for s in range(7)]
    xs = rng.integers(-7, 8, (7, 5, 32))
    one = CoreStack(cores, threads=1).mvm(CFG_32x24, xs, np.random.default_rng(9))
    two = CoreStack(cores, threads=2).mvm(CFG_32x24, xs, np.random.default_rng(9))
    for a, b in zip(one, two, strict=True):
        assert a.shape == (7, 5, 24) and np.array_equal(a, b)
    with pytest.raises(ValueError, match="threads must be 1, 2 or None"):
        CoreStack(cores, threads=3)
    assert CoreStack(cores).threads == 1  # 7 small cores: below THREAD_MIN_BYTES


def test_helper_thread_hands_back_failures_and_restarts_after_fork(monkeypatch):
    helper = physical._Helper.get()
    ran = []

    def fail():
        raise RuntimeError("helper job failed")

    with pytest.raises(RuntimeError, match="helper job failed"):
        helper.run_both(lambda: ran.append("here"), fail)
    assert ran == ["here"]
    helper.run_both(lambda: ran.append("again"), lambda: ran.append("there"))
    assert sorted(ran) == ["again", "here", "there"]
    monkeypatch.setattr(physical.os, "getpid", lambda: -1)  # as in a forked child
    assert physical._Helper.get() is not helper


def test_empty_batches_give_empty_results():
    core = PhysicalCore(np.ones((32, 24)), FUSED, seed=1)
    sign, count, sat = core.mvm_batch(CFG_32x24, np.zeros((0, 32), dtype=int), np.random.default_rng(0))
    assert sign.shape == count.shape == sat.shape == (0, 24)
    sign, count, sat = CoreStack([core, core]).mvm(CFG_32x24, np.zeros((2, 0, 32), dtype=int), np.random.default_rng(0))
    assert count.shape == (2, 0, 24)

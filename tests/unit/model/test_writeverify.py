"""Unit tests of the write-verify code view (model/writeverify.py).

The reference algorithm step by step on scripted readings, the conversions between
``WriteVerifyParams`` and codes, the per-cell devices, and the two checks that tie the code
view to ``program()``: identical decisions on noise-free cells formed from the same seed, and
the same statistics (fail fraction, accepted-error spread, pulses per cell) with noise.
"""

import math

import numpy as np
import pytest

from cimdv.model.programming import (
    OUTCOME_FAIL_HIGH,
    OUTCOME_FAIL_LOW,
    OUTCOME_PASS,
    OUTCOME_STUCK,
    DeviceParams,
    WriteVerifyParams,
    program,
)
from cimdv.model.writeverify import (
    Action,
    ArrayDevice,
    CellDevice,
    Outcome,
    ProgOp,
    WriteVerifyCodes,
    WriteVerifyRef,
    WriteVerifySettings,
    amp_to_volts,
    code_to_g,
    g_to_code,
    target_code,
    uS_to_code,
    volts_to_amp,
    write_verify_array,
)

G_MAX = 40.0


def differential_targets(shape, seed):
    """Differential-pair targets (as tests/unit/model/test_programming.py), on the 0.25 µS code grid."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((shape[0] // 2, shape[1]))
    w_max = np.percentile(np.abs(w), 95)
    t = np.empty(shape)
    t[0::2] = G_MAX * np.clip(w / w_max, 0.0, 1.0)
    t[1::2] = G_MAX * np.clip(-w / w_max, 0.0, 1.0)
    return np.round(t / 0.25) * 0.25


def run(settings, readings):
    """Drive a reference with scripted readings; returns the actions (as strings) and the reference."""
    ref = WriteVerifyRef(settings)
    readings = iter(readings)
    actions = []
    action = ref.action
    while not action.done:
        actions.append(str(action))
        action = ref.feed(next(readings) if action.op == ProgOp.READ else None)
    actions.append(str(action))
    return actions, ref


# -- codes ------------------------------------------------------------------------------------


def test_g_to_code_floors_and_saturates():
    assert g_to_code(0.0) == 0 and g_to_code(-3.0) == 0
    assert g_to_code(0.2499) == 0 and g_to_code(0.25) == 1 and g_to_code(19.99) == 79 and g_to_code(20.0) == 80
    assert g_to_code(63.75) == 255 and g_to_code(1e9) == 255 and g_to_code(math.inf) == 255
    assert g_to_code(7) == 28  # an int takes the array path
    arr = g_to_code(np.array([[0.1, 20.0], [70.0, -1.0]]))
    assert arr.tolist() == [[0, 80], [255, 0]] and arr.dtype == np.int64
    assert code_to_g(80) == 20.0 and code_to_g(np.array([1, 2])).tolist() == [0.25, 0.5]
    with pytest.raises(ValueError, match="NaN"):
        g_to_code(math.nan)
    with pytest.raises(ValueError, match="NaN"):
        g_to_code(np.array([1.0, math.nan]))


def test_voltage_and_conductance_codes():
    assert volts_to_amp(1.2) == 60 and volts_to_amp(3.3) == 165 and volts_to_amp(0.1) == 5
    assert volts_to_amp(5.1) == 255 and volts_to_amp(0) == 0
    assert amp_to_volts(60) == pytest.approx(1.2)
    assert uS_to_code(1.0) == 4 and uS_to_code(63.75) == 255
    assert target_code(20.1) == 80 and target_code(20.2) == 81 and target_code(0) == 0
    with pytest.raises(ValueError, match=r"set_v_step_V = 0\.13 V is not a whole number of 0\.02 V"):
        volts_to_amp(0.13, "set_v_step_V")
    with pytest.raises(ValueError, match=r"reset_v_end_V = 5\.2 V does not fit 8 bits"):
        volts_to_amp(5.2, "reset_v_end_V")
    with pytest.raises(ValueError, match=r"g_tol_uS = 0\.3 µS is not a whole number"):
        uS_to_code(0.3, "g_tol_uS")
    with pytest.raises(ValueError, match="does not fit 8 bits"):
        uS_to_code(64.0)
    with pytest.raises(ValueError, match=r"target_uS = 70\.0 µS does not fit"):
        target_code(70.0)
    with pytest.raises(ValueError, match=r"target_uS = -1\.0"):
        target_code(-1.0)
    with pytest.raises(TypeError, match="volts must be a real number"):
        volts_to_amp("1.2")
    with pytest.raises(ValueError, match="must be finite"):
        uS_to_code(math.inf)


def test_codes_of_the_default_params_round_trip():
    wv = WriteVerifyParams()
    codes = WriteVerifyCodes.from_params(wv)
    assert (codes.tol, codes.g_min) == (4, 4)
    assert (codes.set_start, codes.set_end, codes.set_step) == (60, 165, 5)
    assert (codes.off_reset_start, codes.off_reset_end) == (125, 165)
    assert (codes.pulse_limit, codes.iter_limit, codes.off_iter_limit) == (30, 20, 1)
    assert (codes.reads_averaged, codes.off_reads_averaged) == (5, 2)
    back = codes.to_params()
    for name in ("g_tol_uS", "set_v_start_V", "set_v_end_V", "reset_v_step_V", "off_reset_v_start_V"):
        assert getattr(back, name) == pytest.approx(getattr(wv, name)), name
    assert WriteVerifyCodes.from_params(back) == codes
    assert WriteVerifyCodes.from_dict(codes.to_dict()) == codes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"set_v_step_V": 0.15}, "set_v_step_V = 0.15 V is not a whole number"),
        ({"set_v_end_V": 6.0}, "set_v_end_V = 6.0 V does not fit 8 bits"),
        ({"g_tol_uS": 0.1}, "g_tol_uS = 0.1 µS is not a whole number"),
        ({"g_min_uS": 70.0}, "g_min_uS = 70.0 µS does not fit"),
        ({"max_pulses_at_end_voltage": 256}, "max_pulses_at_end_voltage = 256 does not fit"),
        ({"max_iterations": 300}, "max_iterations = 300 does not fit"),
        ({"final_pulse": "set"}, "final_pulse = 'set' is not supported"),
    ],
)
def test_params_that_do_not_fit_the_codes_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        WriteVerifyCodes.from_params(WriteVerifyParams(**change))


def test_codes_bad_inputs():
    with pytest.raises(TypeError, match="wv must be a WriteVerifyParams"):
        WriteVerifyCodes.from_params({"g_tol_uS": 1.0})
    with pytest.raises(ValueError, match="set_step must fit 8 bits"):
        WriteVerifyCodes(set_step=256)
    with pytest.raises(ValueError, match="reads_averaged must be >= 1"):
        WriteVerifyCodes(reads_averaged=0)
    with pytest.raises(TypeError, match="tol must be an integer"):
        WriteVerifyCodes(tol=1.5)
    with pytest.raises(ValueError, match=r"base\.reads_averaged = 7 differs"):
        WriteVerifyCodes().to_params(WriteVerifyParams(reads_per_verify=10))


def test_settings_per_target():
    codes = WriteVerifyCodes.from_params()
    normal = codes.settings(20.1)
    assert (normal.target, normal.tol, normal.reset_start, normal.iter_limit) == (80, 4, 60, 20)
    assert (normal.lo, normal.hi) == (76, 84)
    off = codes.settings(0.7)
    assert (off.target, off.tol, off.reset_start, off.reset_end, off.iter_limit) == (0, 4, 125, 165, 1)
    assert off.lo < 0 and off.hi == 4
    assert codes.is_off(0.99) and not codes.is_off(1.0)
    assert codes.reads_for(0.5) == 2 and codes.reads_for(5.0) == 5
    with pytest.raises(ValueError, match="does not fit the target code"):
        codes.settings(64.0)


def test_settings_fields_and_errors():
    s = WriteVerifySettings(target=80)
    assert s.errors() == ()
    bad = s.replace(set_step=0, reset_start=200, reset_end=100, tol=0, pulse_limit=0, max_ops=0)
    assert set(bad.errors()) == {
        "set_step is 0",
        "reset_start > reset_end",
        "tol is 0",
        "pulse_limit is 0",
        "max_ops is 0",
    }
    with pytest.raises(ValueError, match=r"target must fit 8 bits \(0..255\), not 256"):
        WriteVerifySettings(target=256)
    with pytest.raises(ValueError, match="max_ops must fit 16 bits"):
        WriteVerifySettings(max_ops=1 << 16)
    with pytest.raises(TypeError, match="iter_limit must be an integer, not a bool"):
        WriteVerifySettings(iter_limit=True)
    with pytest.raises(ValueError, match="illegal write-verify settings: set_step is 0"):
        WriteVerifyRef(s.replace(set_step=0))
    with pytest.raises(TypeError, match="settings must be a WriteVerifySettings"):
        WriteVerifyRef({"target": 80})


# -- the reference, step by step ---------------------------------------------------------------


def test_set_ramp_then_pass():
    s = WriteVerifySettings(target=80)  # window 76..83
    actions, ref = run(s, [10, 20, 60, 79, 80])
    assert actions == ["READ", "SET amp 60", "READ", "SET amp 65", "READ", "SET amp 70", "READ", "READ", "DONE PASS"]
    assert ref.result == (Outcome.PASS, 3, 0, 1, 80, 8)


def test_reset_loop_overshoot_and_restart():
    s = WriteVerifySettings(target=80)
    # Too high: RESET ramp; overshoot below: SET ramp (from its start); in window; confirm fails
    # (reads 90): restart with the RESET ramp from its start; then pass.
    actions, ref = run(s, [120, 100, 50, 78, 90, 82, 81])
    assert actions == [
        "READ",
        "RESET amp 60",
        "READ",
        "RESET amp 65",
        "READ",
        "SET amp 60",
        "READ",
        "READ",
        "RESET amp 60",
        "READ",
        "READ",
        "DONE PASS",
    ]
    assert ref.result.iterations == 2 and ref.result.set_pulses == 1 and ref.result.reset_pulses == 3


def test_window_bounds_are_lo_inclusive_hi_exclusive():
    s = WriteVerifySettings(target=80, tol=4)
    assert run(s, [76, 76])[0][-2:] == ["READ", "DONE PASS"]
    assert run(s, [75, 76, 76])[0][1] == "SET amp 60"
    assert run(s, [84, 83, 83])[0][1] == "RESET amp 60"
    assert run(s, [83, 83])[0][-1] == "DONE PASS"


def test_pulse_limit_counts_pulses_at_the_end_amplitude():
    s = WriteVerifySettings(target=80, set_start=60, set_end=80, set_step=15, pulse_limit=2, iter_limit=5)
    # Ramp 60, 75, then the end amplitude 80 (not 90): two pulses there, then the loop stops and the
    # cell fails (a loop out of pulses) even though iterations are left.
    actions, ref = run(s, [0] * 10)
    ramp = ["SET amp 60", "SET amp 75", "SET amp 80", "SET amp 80"]
    assert actions == [x for pulse in ramp for x in ("READ", pulse)] + ["READ", "DONE FAIL_LOW"]
    assert ref.result == (Outcome.FAIL_LOW, 4, 0, 1, 0, 9)
    # start == end: every pulse is at the end amplitude.
    actions, _ = run(s.replace(set_start=80), [0] * 10)
    assert actions == ["READ", "SET amp 80", "READ", "SET amp 80", "READ", "DONE FAIL_LOW"]


def test_iteration_limit_allows_limit_plus_one_iterations():
    s = WriteVerifySettings(target=80, iter_limit=2)
    # Every SET overshoots above, every RESET undershoots below: never in the window.
    readings = [20] + [200, 0] * 10
    actions, ref = run(s, readings)
    assert actions.count("SET amp 60") == 3 and actions.count("RESET amp 60") == 2
    assert ref.result.outcome == Outcome.FAIL_HIGH and ref.result.iterations == 3
    _, ref0 = run(s.replace(iter_limit=0), readings)
    assert ref0.result.iterations == 1 and ref0.result.set_pulses == 1


def test_budget_ends_with_timeout():
    s = WriteVerifySettings(target=80, max_ops=4)
    actions, ref = run(s, [0] * 5)
    assert actions == ["READ", "SET amp 60", "READ", "SET amp 65", "DONE TIMEOUT"]
    assert ref.result == (Outcome.TIMEOUT, 2, 0, 0, 0, 4)
    actions, _ = run(s.replace(max_ops=1), [0])
    assert actions == ["READ", "DONE TIMEOUT"]


def test_off_procedure_is_reset_only_and_fails_high():
    codes = WriteVerifyCodes.from_params()
    off = codes.settings(0.0)
    actions, ref = run(off, [40, 10, 3, 2])
    assert actions == ["READ", "RESET amp 125", "READ", "RESET amp 130", "READ", "READ", "DONE PASS"]
    assert ref.result.reading == 2
    # Never SETs, even from 0; fails high when stuck above g_min.
    assert run(off, [0, 0])[0] == ["READ", "READ", "DONE PASS"]
    actions, ref = run(off, [40] * 100)
    assert not any(a.startswith("SET") for a in actions) and ref.result.outcome == Outcome.FAIL_HIGH
    assert ref.result.reset_pulses == 8 + 30  # ramp 125..160 below the end 165, then 30 at it


def test_target_near_zero_has_no_set_loop():
    s = WriteVerifySettings(target=3, tol=4)  # lo = -1: readings can never be below it
    assert run(s, [0, 0])[0] == ["READ", "READ", "DONE PASS"]


def test_feed_protocol_errors():
    ref = WriteVerifyRef(WriteVerifySettings(target=80))
    with pytest.raises(ValueError, match="reading is required after a READ"):
        ref.feed()
    with pytest.raises(ValueError, match=r"reading must be a G code 0\.\.255, not 256"):
        ref.feed(256)
    with pytest.raises(TypeError, match="reading must be an integer"):
        ref.feed(3.0)
    assert ref.feed(0) == Action(ProgOp.SET, 60)
    with pytest.raises(ValueError, match="a SET pulse takes no reading"):
        ref.feed(5)
    _, done = run(WriteVerifySettings(target=80), [80, 80])
    with pytest.raises(ValueError, match=r"the write-verify is done \(PASS\)"):
        done.feed(80)


@pytest.mark.parametrize("seed", range(20))
def test_random_readings_terminate_within_the_bound(seed):
    """Any readings: the reference ends, within the worst-case operation count, with consistent counters."""
    rng = np.random.default_rng(seed)
    s = WriteVerifySettings(
        target=int(rng.integers(0, 256)),
        tol=int(rng.integers(1, 10)),
        set_start=60,
        set_end=int(rng.integers(60, 120)),
        set_step=int(rng.integers(1, 30)),
        reset_start=60,
        reset_end=int(rng.integers(60, 120)),
        reset_step=int(rng.integers(1, 30)),
        pulse_limit=int(rng.integers(1, 5)),
        iter_limit=int(rng.integers(0, 5)),
    )

    def ramp(start, end, step):
        return -(-(end - start) // step)

    per_iteration = 2 * (ramp(60, s.reset_end, s.reset_step) + s.pulse_limit) + 2 * (
        ramp(60, s.set_end, s.set_step) + s.pulse_limit
    )
    bound = (s.iter_limit + 1) * (per_iteration + 1) + 1
    actions, ref = run(s, (int(v) for v in rng.integers(0, 256, 10 * bound)))
    r = ref.result
    assert len(actions) - 1 == r.ops <= bound
    assert r.set_pulses + r.reset_pulses + actions.count("READ") == r.ops
    assert r.iterations <= s.iter_limit + 1


# -- devices ------------------------------------------------------------------------------------


def test_devices_are_deterministic_and_independent_of_the_cell_order():
    ops = [(ProgOp.READ, 0), (ProgOp.SET, 100), (ProgOp.READ, 0), (ProgOp.RESET, 120), (ProgOp.READ, 0)]

    def trace(seed, order):
        dev = ArrayDevice((3, 4), seed=seed)
        out = {}
        for cell in order:
            out[cell] = [dev.apply(op, *cell, amp) for op, amp in ops]
        return out, dev.g_uS

    cells = [(0, 0), (2, 3), (1, 2)]
    a, ga = trace(5, cells)
    b, gb = trace(5, cells[::-1])
    c, gc = trace(6, cells)
    assert a == b and np.array_equal(ga, gb)
    assert a != c and not np.array_equal(ga, gc)


def test_pulse_response_directions_and_stuck_cells():
    dev = ArrayDevice((2, 2), DeviceParams(c2c_sigma=0.0, jump_prob=0.0), seed=1)
    cell = dev.force((0, 0), g_uS=10.0, stuck=False)
    assert cell.set(1.0) == 10.0, "below the SET threshold nothing happens"
    g1 = cell.set(2.5)
    assert g1 > 10.0
    g2 = cell.reset(2.5)
    assert g2 < g1
    stuck = dev.force((1, 1), g_uS=7.0, stuck=True)
    assert stuck.set(3.3) == 7.0 and stuck.reset(3.3) == 7.0
    assert dev.stuck[1, 1] and not dev.stuck[0, 0]
    strong = dev.force((0, 1), g_uS=59.0, stuck=False)
    strong.gain_set = 1e6
    assert strong.set(3.3) == dev.device.g_hi_uS and strong.clip_hits == 1
    assert dev.operations == 6 and cell.set_pulses == 2 and cell.reset_pulses == 1


def test_read_noise_of_the_averaged_read():
    d = DeviceParams()
    cell = ArrayDevice((1,), d, seed=3).force(0, g_uS=20.0, stuck=True)
    for reads in (5, 2):
        cell.reads_averaged = reads
        values = np.array([cell.read() for _ in range(4000)])
        sigma = math.sqrt((d.read_noise_rel * 20.0) ** 2 + d.read_noise_uS**2) / math.sqrt(reads)
        assert values.mean() == pytest.approx(20.0, abs=4 * sigma / math.sqrt(4000))
        assert values.std() == pytest.approx(sigma, rel=0.06)
    assert 0 <= cell.read_code() <= 255
    formed = CellDevice.formed(seed=4)
    assert DeviceParams().g_init_lo_uS <= formed.g_uS <= DeviceParams().g_init_hi_uS


def test_device_bad_inputs():
    dev = ArrayDevice((2, 3), seed=0)
    with pytest.raises(ValueError, match=r"index\[0\] = 2 is outside 0..1"):
        dev.apply(ProgOp.READ, 2, 0)
    with pytest.raises(ValueError, match=r"amp must be an amplitude code 0\.\.255, not 300"):
        dev.apply(ProgOp.SET, 0, 0, 300)
    with pytest.raises(ValueError, match="7 is not a valid ProgOp"):
        dev.apply(7, 0, 0)
    with pytest.raises(TypeError, match="index must be a tuple of 2 ints"):
        dev.cell(1)
    with pytest.raises(ValueError, match="shape must have positive dimensions"):
        ArrayDevice((0, 3), seed=0)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        ArrayDevice((2, 2), seed=-1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        ArrayDevice((2, 2), seed=None)
    with pytest.raises(TypeError, match="device must be a DeviceParams"):
        ArrayDevice((2, 2), device={}, seed=0)
    with pytest.raises(ValueError, match=r"reads_averaged must be an int or of shape \(2, 3\)"):
        dev.set_reads_averaged(np.ones(4, dtype=int))
    with pytest.raises(ValueError, match="reads_averaged must be >= 1"):
        dev.set_reads_averaged(0)
    with pytest.raises(TypeError, match="stuck must be a bool"):
        dev.force((0, 0), stuck=1)
    with pytest.raises(TypeError, match="device must be an ArrayDevice"):
        write_verify_array(program, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"targets_uS must have the device's shape \(2, 3\)"):
        write_verify_array(dev, np.zeros((3, 2)))


# -- the code view against program() --------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_free_cells_take_the_same_decisions_as_program(seed):
    """Same forming (same seed), no pulse or read noise: identical outcomes, pulse counts, iterations, G.

    The code window is program()'s float window on the 0.25 µS grid, so only a reading exactly on
    a window edge could differ. program() reports its stuck cells as OUTCOME_STUCK; the RTL cannot
    know a cell is stuck and reports FAIL_LOW or FAIL_HIGH by the last reading.
    """
    targets = differential_targets((32, 32), seed + 10)
    dev = DeviceParams(c2c_sigma=0.0, jump_prob=0.0, read_noise_rel=0.0, read_noise_uS=0.0, stuck_fraction=0.01)
    p = program(targets, device=dev, seed=seed)
    a = write_verify_array(ArrayDevice(targets.shape, dev, seed=seed), targets)
    want = p.outcome.astype(np.int64).copy()
    stuck = want == OUTCOME_STUCK
    assert stuck.any()
    want[stuck] = np.where(p.g_read_uS[stuck] < targets[stuck], OUTCOME_FAIL_LOW, OUTCOME_FAIL_HIGH)
    assert np.array_equal(a.outcome, want)
    assert np.array_equal(a.set_pulses, p.set_pulses) and np.array_equal(a.reset_pulses, p.reset_pulses)
    assert np.array_equal(a.iterations, p.iterations)
    assert np.allclose(a.g_uS, p.g_uS, rtol=1e-12, atol=1e-12)
    assert np.array_equal(a.reading, g_to_code(p.g_read_uS))
    assert np.array_equal(a.off, p.off)


def test_statistics_match_program():
    """With every noise term on, the reference on ArrayDevice cells and program() agree statistically.

    A 128 x 64 core of differential-pair targets with the default device and write-verify
    (program() alone: 0.2-0.8 % failures, accepted-error std ~0.6 µS, ~10 pulses per cell).
    """
    targets = differential_targets((128, 64), 7)
    p = program(targets, seed=3)
    a = write_verify_array(ArrayDevice(targets.shape, seed=3), targets)
    p_fail = float(np.mean(p.outcome != OUTCOME_PASS))
    assert 0.001 <= a.fail_fraction <= 0.012 and 0.001 <= p_fail <= 0.012
    # Poisson bound on the difference of two counts of ~40 failures.
    n = targets.size
    assert abs(a.fail_fraction - p_fail) * n <= 4 * math.sqrt(max(a.fail_fraction, p_fail) * n * 2) + 1
    for res, ok in ((p, p.outcome == OUTCOME_PASS), (a, a.ok)):
        sel = ok & ~res.off
        err = res.g_uS[sel] - targets[sel]
        assert err.std() == pytest.approx(0.6, rel=0.1)
        assert 0.0 <= err.mean() <= 0.25
    err_p = (p.g_uS - targets)[(p.outcome == OUTCOME_PASS) & ~p.off]
    err_a = (a.g_uS - targets)[a.ok & ~a.off]
    assert err_a.std() == pytest.approx(err_p.std(), rel=0.05)
    pulses_p = float(np.mean(p.set_pulses + p.reset_pulses))
    assert a.pulses_per_cell == pytest.approx(pulses_p, rel=0.05)
    assert 8 <= a.pulses_per_cell <= 13
    # Off cells end below g_min when they pass.
    assert (a.g_uS[a.ok & a.off] < 1.0 + 0.3).all()

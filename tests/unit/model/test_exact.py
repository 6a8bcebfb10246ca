"""Unit tests of the exact golden model: one rule of docs/analog-boundary.md per test."""

import subprocess
import sys

import numpy as np
import pytest

from cimdv.model import (
    CoreConfig,
    Crossbar,
    DriveCode,
    ExactCore,
    LineMode,
    MacroOp,
    MacroParams,
    MacroState,
    MvmResult,
    bits_to_bool,
    bits_to_drive,
    cmp_to_bits,
    config_errors,
    decode,
    drive_to_bits,
    encode_phases,
    lfsr_seeds,
    lfsr_step,
    pulses_per_phase,
    run_sequence,
)

P, N, Z = 1, -1, 0


def cfg_of(rows=1, cols=1, *, backward=False, signed=False, in_bits=3, out_bits=8, pulse_mult=1, max_count=127, **kw):
    """A CoreConfig with short defaults for the tests."""
    return CoreConfig(
        rows=rows,
        cols=cols,
        backward=backward,
        signed=signed,
        in_bits=in_bits,
        out_bits=out_bits,
        pulse_mult=pulse_mult,
        max_count=max_count,
        **kw,
    )


def both_views(weights, params, cfg, x):
    """(a) and (b) of one vector on fresh cores; asserts they agree and returns (a)."""
    a = ExactCore(weights, params).mvm(cfg, x)
    b = run_sequence(cfg, x, MacroState(weights, params))
    assert a.mismatches(b) == [], (a, b)
    return a


# -- enumerations ---------------------------------------------------------------------------


def test_enum_values_match_the_contract():
    assert [(m.name, m.value) for m in LineMode] == [("OFF", 0), ("POS", 1), ("NEG", 2), ("RESERVED", 3)]
    assert [(m.name, m.value) for m in MacroOp] == [
        ("IDLE", 0),
        ("INIT", 1),
        ("SAMPLE", 2),
        ("INTEGRATE", 3),
        ("COMPARE", 4),
        ("DECREMENT", 5),
        ("NOISE", 6),
    ]
    assert [(m.name, m.value) for m in DriveCode] == [("ZERO", 0b00), ("NEG", 0b01), ("POS", 0b10)]


def test_model_imports_no_rtl_tb_amaranth_or_cocotb():
    code = (
        "import sys, cimdv.model\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('amaranth', 'cocotb', 'pyuvm')"
        " or m.startswith(('cimdv.rtl', 'cimdv.tb')))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- phase encoding (§3.1) ------------------------------------------------------------------


def test_encode_unsigned_bits():
    # x = 5 = 0b101: bit 1 -> A=+1, B=+1; bit 0 -> A=-1, B=+1.
    codes = encode_phases(cfg_of(in_bits=3), [5])
    assert codes.dtype == np.int8 and codes.shape == (3, 2, 1)
    assert codes[:, :, 0].tolist() == [[P, P], [N, P], [P, P]]


def test_encode_signed_sign_magnitude():
    cfg = cfg_of(rows=4, cols=1, signed=True, in_bits=3)  # nmag 2, range -3..3
    codes = encode_phases(cfg, [-3, 2, 0, 1])
    assert codes.shape == (2, 2, 4)
    # line: [bit0 (A, B), bit1 (A, B)]
    assert codes[:, :, 0].tolist() == [[N, N], [N, N]]  # -3: d = -1, -1
    assert codes[:, :, 1].tolist() == [[N, P], [P, P]]  # 2: d = 0, +1
    assert codes[:, :, 2].tolist() == [[N, P], [N, P]]  # 0: d = 0, 0
    assert codes[:, :, 3].tolist() == [[P, P], [N, P]]  # 1: d = +1, 0


def test_encode_neg_line_negates():
    modes = (LineMode.POS, LineMode.NEG)
    cfg = cfg_of(rows=2, cols=1, signed=True, in_bits=3, line_modes=modes)
    codes = encode_phases(cfg, [2, 2])
    assert (codes[:, :, 1] == -codes[:, :, 0]).all()
    ucfg = cfg_of(rows=2, cols=1, in_bits=2, line_modes=modes)
    ucodes = encode_phases(ucfg, [1, 1])
    assert ucodes[:, :, 1].tolist() == [[N, N], [P, N]]


def test_encode_off_forward_is_zero():
    cfg = cfg_of(rows=3, cols=2, in_bits=2, line_modes=(LineMode.POS, LineMode.OFF, LineMode.NEG))
    codes = encode_phases(cfg, [3, 3, 3])
    assert (codes[:, :, 1] == 0).all()
    assert (codes[:, :, 0] == P).all() and (codes[:, :, 2] == N).all()


def test_encode_off_backward_alternates_by_line_index():
    modes = (LineMode.POS, LineMode.OFF, LineMode.OFF, LineMode.POS)
    cfg = cfg_of(rows=2, cols=4, backward=True, in_bits=2, line_modes=modes)
    codes = encode_phases(cfg, [0, 3, 3, 0])
    assert codes[:, :, 1].tolist() == [[N, P], [N, P]]  # odd line: A = -1, B = +1
    assert codes[:, :, 2].tolist() == [[P, N], [P, N]]  # even line: A = +1, B = -1
    assert codes[:, :, 0].tolist() == [[N, P], [N, P]]  # x = 0 unsigned


def test_encode_lines_beyond_n_in_drive_zero():
    codes = encode_phases(cfg_of(rows=2, cols=4, in_bits=2), [3, 1])
    assert codes.shape == (2, 2, 4)
    assert (codes[:, :, 2:] == 0).all()
    codes = encode_phases(cfg_of(rows=4, cols=2, backward=True, signed=True, in_bits=2), [1, -1])
    assert (codes[:, :, 2:] == 0).all()


@pytest.mark.parametrize("in_bits", range(1, 9))
def test_encode_zero_and_full_scale_unsigned(in_bits):
    cfg = cfg_of(rows=2, cols=1, in_bits=in_bits)
    top = 2**in_bits - 1
    assert cfg.in_range == (0, top)
    codes = encode_phases(cfg, [0, top])
    assert (codes[:, 0, 0] == N).all() and (codes[:, 1, 0] == P).all()
    assert (codes[:, :, 1] == P).all()
    with pytest.raises(ValueError, match="x"):
        encode_phases(cfg, [0, top + 1])
    with pytest.raises(ValueError, match="x"):
        encode_phases(cfg, [-1, 0])


@pytest.mark.parametrize("in_bits", range(2, 9))
def test_encode_full_scale_signed(in_bits):
    cfg = cfg_of(rows=2, cols=1, signed=True, in_bits=in_bits)
    top = 2 ** (in_bits - 1) - 1
    assert cfg.in_range == (-top, top) and cfg.nmag == in_bits - 1
    codes = encode_phases(cfg, [-top, top])
    assert (codes[:, :, 0] == N).all() and (codes[:, :, 1] == P).all()
    with pytest.raises(ValueError, match=r"x\[1\] = -"):
        encode_phases(cfg, [0, -(2 ** (in_bits - 1))])


@pytest.mark.parametrize("signed", [False, True])
def test_encode_sums_to_two_x(signed):
    # Over both phases and all bits, each line contributes 2 * x * polarity (§3.1).
    for in_bits in range(2 if signed else 1, 9):
        cfg = cfg_of(rows=1, cols=1, signed=signed, in_bits=in_bits)
        lo, hi = cfg.in_range
        weights = 2 ** np.arange(cfg.nmag)
        for x in range(lo, hi + 1):
            codes = encode_phases(cfg, [x]).astype(np.int64)
            assert int((codes[:, 0, 0] + codes[:, 1, 0]) @ weights) == 2 * x


def test_encode_rejects_bad_x():
    cfg = cfg_of(rows=2, cols=1)
    with pytest.raises(TypeError, match="x"):
        encode_phases(cfg, [1.0, 2.0])
    with pytest.raises(TypeError, match="x"):
        encode_phases(cfg, [True, False])
    with pytest.raises(ValueError, match="x"):
        encode_phases(cfg, [1, 2, 3])
    with pytest.raises(TypeError, match="cfg"):
        encode_phases("cfg", [1, 2])


def test_pulses_per_phase():
    assert pulses_per_phase(cfg_of(signed=True, in_bits=4, pulse_mult=3)) == [3, 6, 12]
    assert pulses_per_phase(cfg_of(in_bits=1, pulse_mult=255)) == [255]


# -- bus codecs (§1) ------------------------------------------------------------------------


def test_drive_bits_layout():
    assert drive_to_bits([P, N, Z]) == 0b00_01_10
    assert bits_to_drive(0b00_01_10, 3).tolist() == [P, N, Z]
    assert drive_to_bits([Z, Z]) == 0
    codes = np.array([P, N, Z, N, P] * 60, dtype=np.int8)
    assert (bits_to_drive(drive_to_bits(codes), codes.size) == codes).all()


def test_drive_bits_errors():
    with pytest.raises(ValueError, match="0b11"):
        bits_to_drive(0b11_00, 2)
    with pytest.raises(ValueError, match="value"):
        bits_to_drive(1 << 4, 2)
    with pytest.raises(ValueError, match="codes"):
        drive_to_bits([2, 0])


def test_cmp_bits_layout():
    assert cmp_to_bits(np.array([True, False, True])) == 0b101
    assert bits_to_bool(0b101, 4).tolist() == [True, False, True, False]
    flags = np.arange(300) % 3 == 0
    assert (bits_to_bool(cmp_to_bits(flags), 300) == flags).all()
    with pytest.raises(ValueError, match="value"):
        bits_to_bool(1 << 4, 4)
    with pytest.raises(TypeError, match="cmp"):
        cmp_to_bits([1, 0])


# -- conversion (§4.1) ----------------------------------------------------------------------


def one_neuron(integ, *, delta=10, threshold=0, max_count=127, out_bits=8):
    """Result of one neuron whose integrator ends at ``integ`` (1x1 core, M = 1, x = 1)."""
    sign_line = LineMode.NEG if integ < 0 else LineMode.POS
    g = abs(integ) // 2
    assert 2 * g == abs(integ)
    cfg = cfg_of(in_bits=1, max_count=max_count, out_bits=out_bits, line_modes=(sign_line,))
    r = both_views(np.array([[g]]), MacroParams(delta=delta, threshold=threshold), cfg, [1])
    assert int(r.integ[0]) == integ
    return r


def test_tie_reads_negative_count_one():
    r = one_neuron(0)
    assert (int(r.sign[0]), int(r.count[0]), bool(r.sat[0]), r.steps) == (1, 1, False, 1)
    assert r.values.tolist() == [-0.5]
    r = one_neuron(40, threshold=40)  # a tie with a non-zero threshold
    assert (int(r.sign[0]), int(r.count[0])) == (1, 1)


@pytest.mark.parametrize(
    ("integ", "sign", "count"),
    [
        (30, 0, 3),  # exact multiple, positive: ceil(30/10)
        (32, 0, 4),
        (10, 0, 1),
        (2, 0, 1),
        (-30, 1, 4),  # exact multiple, negative: floor(30/10) + 1
        (-28, 1, 3),
        (-10, 1, 2),
        (-2, 1, 1),
    ],
)
def test_count_rule(integ, sign, count):
    r = one_neuron(integ, delta=10)
    assert (int(r.sign[0]), int(r.count[0]), bool(r.sat[0]), r.steps) == (sign, count, False, count)


@pytest.mark.parametrize("integ", [1000, -1000])
def test_saturation_both_signs(integ):
    r = one_neuron(integ, delta=10, max_count=7, out_bits=4)
    assert (int(r.sign[0]), int(r.count[0]), bool(r.sat[0]), r.steps) == (int(integ < 0), 7, True, 7)
    assert r.values.tolist() == [6.5 if integ > 0 else -6.5]


def test_count_equal_to_max_count_is_not_saturated():
    r = one_neuron(70, delta=10, max_count=7, out_bits=4)
    assert (int(r.count[0]), bool(r.sat[0])) == (7, False)
    r = one_neuron(-60, delta=10, max_count=7, out_bits=4)
    assert (int(r.count[0]), bool(r.sat[0])) == (7, False)
    r = one_neuron(-70, delta=10, max_count=7, out_bits=4)
    assert (int(r.count[0]), bool(r.sat[0])) == (7, True)


@pytest.mark.parametrize("integ", [1000, 0, -1000])
def test_max_count_zero_is_sign_only(integ):
    r = one_neuron(integ, max_count=0, out_bits=1)
    assert (int(r.sign[0]), int(r.count[0]), bool(r.sat[0]), r.steps) == (int(integ <= 0), 0, False, 0)


def test_masked_neurons_report_zeros_and_do_not_hold_up_the_early_stop():
    weights = np.array([[100, 5, 30]])
    cfg = cfg_of(rows=1, cols=3, in_bits=1, line_modes=(LineMode.NEG, LineMode.OFF, LineMode.OFF))
    params = MacroParams(delta=10)
    full = both_views(weights, params, cfg, [1])
    assert full.count.tolist() == [21, 2, 7] and full.sign.tolist() == [1, 1, 1]
    assert full.steps == 21
    masked = both_views(weights, params, cfg.replace(out_mask=(False, True, True)), [1])
    assert masked.sign.tolist() == [0, 1, 1]
    assert masked.count.tolist() == [0, 2, 7]
    assert masked.steps == 7
    assert masked.integ.tolist() == full.integ.tolist() == [-200, -10, -60]
    none = both_views(weights, params, cfg.replace(out_mask=(False, False, False)), [1])
    assert (none.sign.tolist(), none.count.tolist(), none.sat.tolist(), none.steps) == (
        [0] * 3,
        [0] * 3,
        [False] * 3,
        0,
    )


def test_saturated_masked_neuron_is_zero():
    weights = np.array([[1000, 5]])
    cfg = cfg_of(rows=1, cols=2, in_bits=1, max_count=3, out_bits=3, out_mask=(False, True))
    r = both_views(weights, MacroParams(delta=10), cfg, [1])
    assert r.sat.tolist() == [False, False] and r.count.tolist() == [0, 1]


def test_backward_is_transposed():
    rng = np.random.default_rng(7)
    g = rng.integers(0, 64, size=(5, 3))  # 5 rows, 3 columns
    x = rng.integers(-7, 8, size=3)  # backward drives the 3 columns
    params = MacroParams(delta=37, threshold=-3)
    bwd = both_views(g, params, cfg_of(rows=5, cols=3, backward=True, signed=True, in_bits=4), x)
    fwd_t = ExactCore(g.T, params).mvm(cfg_of(rows=3, cols=5, signed=True, in_bits=4), x)
    assert fwd_t.mismatches(bwd) == []
    assert bwd.integ.shape == (5,)
    assert bwd.integ.tolist() == (2 * (g @ x)).tolist()
    x5 = rng.integers(-7, 8, size=5)
    fwd = both_views(g, params, cfg_of(rows=5, cols=3, signed=True, in_bits=4), x5)
    assert fwd.integ.tolist() == (2 * (x5 @ g)).tolist()


def test_closed_form_integral():
    rng = np.random.default_rng(3)
    g = rng.integers(0, 64, size=(6, 4))
    modes = (LineMode.POS, LineMode.NEG, LineMode.OFF, LineMode.POS, LineMode.NEG, LineMode.POS)
    cfg = cfg_of(rows=6, cols=4, in_bits=5, pulse_mult=3, line_modes=modes)
    x = rng.integers(0, 32, size=6)
    pol = np.array([1, -1, 0, 1, -1, 1])
    r = both_views(g, MacroParams(delta=100), cfg, x)
    assert r.integ.tolist() == (2 * 3 * ((x * pol) @ g)).tolist()


def test_decode():
    assert decode([0, 1, 0, 1], [3, 3, 0, 1]).tolist() == [2.5, -2.5, 0.0, -0.5]
    with pytest.raises(ValueError, match="sign"):
        decode([2], [1])
    with pytest.raises(ValueError, match="count"):
        decode([0], [-1])


def test_result_equality_and_mismatches():
    a = MvmResult(np.array([1], np.uint8), np.array([2]), np.array([False]), np.array([-5]), 2)
    b = MvmResult(np.array([1], np.uint8), np.array([2]), np.array([False]), np.array([-6]), 3)
    same = MvmResult(a.sign.copy(), a.count.copy(), a.sat.copy(), a.integ.copy(), a.steps)
    assert a == same and a != b and a != "a"
    assert a.mismatches(b) == ["integ", "steps"]


# -- LFSR and noise (§4) ----------------------------------------------------------------------


def _bitwise_galois(state):
    """Independent bit-list model: taps of x^16 + x^14 + x^13 + x^11 + 1, right shift."""
    bits = [(state >> i) & 1 for i in range(16)]
    out = bits[0]
    bits = [*bits[1:], 0]
    if out:
        for t in (15, 13, 12, 10):  # x^16 -> bit 15, x^14 -> 13, x^13 -> 12, x^11 -> 10
            bits[t] ^= 1
    return out, sum(b << i for i, b in enumerate(bits))


def test_lfsr_known_values():
    state, outs = 0xACE1, []
    for _ in range(16):
        bit, state = lfsr_step(state)
        outs.append(bit)
    assert outs == [1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1]
    assert state == 0xEB62
    assert lfsr_step(0xACE1) == (1, 0xE270)


def test_lfsr_matches_bitwise_model_and_recurrence():
    s_ref = s = np.array([0xACE1, 1, 0x8000, 0x1234], dtype=np.uint32)
    s_ref = [int(v) for v in s_ref]
    outs = []
    for _ in range(300):
        bit, s = lfsr_step(s)
        ref = [_bitwise_galois(v) for v in s_ref]
        assert bit.tolist() == [o for o, _ in ref]
        s_ref = [n for _, n in ref]
        assert s.tolist() == s_ref
        outs.append(int(bit[0]))
    # The output is annihilated by the reciprocal x^16 + x^5 + x^3 + x^2 + 1 of the polynomial.
    assert all(outs[n + 16] == outs[n + 5] ^ outs[n + 3] ^ outs[n + 2] ^ outs[n] for n in range(len(outs) - 16))


def test_lfsr_period_is_maximal():
    state, n = 1, 0
    while True:
        _, state = lfsr_step(state)
        n += 1
        if state == 1:
            break
    assert n == 2**16 - 1


def test_lfsr_seeds():
    assert lfsr_seeds(1, 3).tolist() == [0x9E38, 0x3C6F, 0xDAA6]
    assert lfsr_seeds(0x61C9, 2).tolist() == [1, (0x61C9 + 2 * 0x9E37) % 65536]  # 0 is replaced by 1
    with pytest.raises(ValueError, match="noise_seed"):
        lfsr_seeds(65536, 2)


def test_first_noise_pulse_follows_seed_lsb():
    # noise_seed 1: neuron 0 seeds 0x9E38 (LSB 0 -> -q), neuron 1 seeds 0x3C6F (LSB 1 -> +q).
    params = MacroParams(delta=1, noise_q=7, noise_seed=1)
    cfg = cfg_of(rows=1, cols=2, in_bits=1, noise_pulses=1)
    r = both_views(np.zeros((1, 2), dtype=np.int64), params, cfg, [0])
    assert r.integ.tolist() == [-7, 7]


def test_noise_changes_results_and_is_reproducible():
    rng = np.random.default_rng(11)
    g = rng.integers(0, 64, size=(16, 16))
    xs = rng.integers(-7, 8, size=(5, 16))
    cfg = cfg_of(rows=16, cols=16, signed=True, in_bits=4, noise_pulses=3)
    quiet = ExactCore(g, MacroParams(delta=50)).mvm_batch(cfg.replace(noise_pulses=0), xs)
    runs = [ExactCore(g, MacroParams(delta=50, noise_q=40, noise_seed=s)).mvm_batch(cfg, xs) for s in (5, 5, 6)]
    assert all(a == b for a, b in zip(runs[0], runs[1], strict=True))
    assert any(a != b for a, b in zip(runs[0], runs[2], strict=True))
    assert any(a != b for a, b in zip(runs[0], quiet, strict=True))
    diff = np.array([r.integ - q.integ for r, q in zip(runs[0], quiet, strict=True)])
    assert set(np.unique(diff).tolist()) <= {-120, -40, 40, 120}
    # The LFSR is the macro's: it is not re-seeded per vector (INIT leaves it alone).
    core = ExactCore(g, MacroParams(delta=50, noise_q=40, noise_seed=5))
    first, second = core.mvm(cfg, xs[0]), core.mvm(cfg, xs[0])
    assert first.integ.tolist() != second.integ.tolist()
    core.reset_lfsr()
    assert core.mvm(cfg, xs[0]) == first
    # noise_q = 0 still advances the LFSR but changes nothing.
    zero_q = ExactCore(g, MacroParams(delta=50, noise_q=0))
    assert zero_q.mvm(cfg, xs[0]) == quiet[0]
    assert zero_q.lfsr_state.tolist() != lfsr_seeds(1, 16).tolist()


def test_mvm_batch_equals_sequential_mvm():
    rng = np.random.default_rng(5)
    g = rng.integers(0, 64, size=(7, 9))
    xs = rng.integers(0, 16, size=(6, 9))
    cfg = cfg_of(rows=7, cols=9, backward=True, in_bits=4, noise_pulses=2)
    params = MacroParams(delta=60, threshold=5, noise_q=33, noise_seed=999)
    batch = ExactCore(g, params).mvm_batch(cfg, xs)
    core = ExactCore(g, params)
    assert [core.mvm(cfg, x) for x in xs] == batch


# -- configuration legality ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"in_bits": 0}, "in_bits"),
        ({"in_bits": 9}, "in_bits"),
        ({"signed": True, "in_bits": 1}, "in_bits"),
        ({"out_bits": 0}, "out_bits"),
        ({"out_bits": 9}, "out_bits"),
        ({"pulse_mult": 0}, "pulse_mult"),
        ({"in_bits": 8, "pulse_mult": 2}, "pulse_mult"),  # 2 * 2**7 = 256 > 255
        ({"signed": True, "in_bits": 8, "pulse_mult": 4}, "pulse_mult"),  # 4 * 2**6 = 256 > 255
        ({"in_bits": 5, "pulse_mult": 8, "pulse_bits": 7}, "pulse_mult"),  # 8 * 2**4 = 128 > 127
        ({"max_count": 128}, "max_count"),
        ({"out_bits": 4, "max_count": 8}, "max_count"),
        ({"max_count": -1}, "max_count"),
        ({"noise_pulses": 256}, "noise_pulses"),
        ({"noise_pulses": -1}, "noise_pulses"),
        ({"rows": 0}, "rows"),
        ({"pulse_bits": 0}, "pulse_bits"),
        ({"line_modes": (LineMode.POS, LineMode.RESERVED, LineMode.POS)}, "line_modes"),
        ({"line_modes": (LineMode.POS,) * 2}, "line_modes"),
        ({"line_modes": (1, 4, 1)}, "line_modes"),
        ({"out_mask": (True, 2, True)}, "out_mask"),
        ({"out_mask": (True,)}, "out_mask"),
    ],
)
def test_illegal_config_names_the_parameter(changes, name):
    base = {"rows": 3, "cols": 2, "backward": False, "signed": False, "in_bits": 4, "out_bits": 8, "pulse_mult": 1}
    base["max_count"] = 127
    with pytest.raises(ValueError, match=name):
        CoreConfig(**{**base, **changes})


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"in_bits": "4"}, "in_bits"),
        ({"in_bits": True}, "in_bits"),
        ({"pulse_mult": 1.0}, "pulse_mult"),
        ({"backward": "yes"}, "backward"),
        ({"line_modes": "POS"}, "line_modes"),
    ],
)
def test_config_type_errors_name_the_parameter(changes, name):
    base = {"rows": 3, "cols": 2, "backward": False, "signed": False, "in_bits": 4, "out_bits": 8, "pulse_mult": 1}
    with pytest.raises(TypeError, match=name):
        CoreConfig(**{**base, "max_count": 127, **changes})


def test_legal_corner_configs():
    assert cfg_of(in_bits=8, pulse_mult=1).nmag == 8
    assert cfg_of(signed=True, in_bits=8, pulse_mult=3).nmag == 7  # 3 * 64 = 192 <= 255
    assert cfg_of(in_bits=1, pulse_mult=255).in_range == (0, 1)
    assert cfg_of(out_bits=1, max_count=0).max_count == 0
    # RESERVED on a line that is not driven is legal (the RTL does not look at it).
    cfg = cfg_of(rows=2, cols=3, line_modes=(1, 2, 3))
    assert cfg.line_modes == (LineMode.POS, LineMode.NEG, LineMode.RESERVED)
    assert cfg.lines == 3 and cfg.n_in == 2 and cfg.n_out == 3
    with pytest.raises(ValueError, match="line_modes"):
        cfg_of(rows=2, cols=3, backward=True, line_modes=(1, 2, 3))
    bwd = cfg_of(rows=2, cols=3, backward=True)
    assert (bwd.n_in, bwd.n_out) == (3, 2)
    assert cfg_of(out_mask=(1,)).out_mask == (True,)


def test_config_is_hashable_and_comparable():
    a = cfg_of(rows=2, cols=2, line_modes=(1, 2))
    b = cfg_of(rows=2, cols=2, line_modes=(LineMode.POS, LineMode.NEG))
    assert a == b and hash(a) == hash(b)
    assert a != b.replace(backward=True)


BASE_RAW = {"rows": 4, "cols": 3, "signed": 0, "in_bits": 4, "out_bits": 8, "pulse_mult": 1, "max_count": 127}


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({}, set()),
        ({"in_bits": 0}, {"IN_BITS"}),
        ({"in_bits": 9}, {"IN_BITS"}),
        ({"signed": 1, "in_bits": 1}, {"IN_BITS"}),
        ({"out_bits": 0}, {"OUT_BITS"}),
        ({"out_bits": 15}, {"OUT_BITS"}),
        ({"pulse_mult": 0}, {"PULSE_MULT"}),
        ({"in_bits": 8, "pulse_mult": 2}, {"PULSE_OVF"}),
        ({"in_bits": 8, "pulse_mult": 1}, set()),
        ({"signed": 1, "in_bits": 8, "pulse_mult": 3}, set()),
        ({"signed": 1, "in_bits": 8, "pulse_mult": 4}, {"PULSE_OVF"}),
        ({"in_bits": 5, "pulse_mult": 16, "pulse_bits": 7}, {"PULSE_OVF"}),
        ({"max_count": 127, "out_bits": 7}, {"MAX_COUNT"}),
        ({"max_count": 63, "out_bits": 7}, set()),
        ({"max_count": 0, "out_bits": 1}, set()),
        ({"max_count": 1, "out_bits": 1}, {"MAX_COUNT"}),
        ({"timing": {"T_INTEG": 0}}, {"TIMING"}),
        ({"timing": {"T_NOISE": 0, "T_INIT": 5}}, {"TIMING"}),
        ({"watchdog": 0}, {"TIMING"}),
        ({"batch": 0}, {"BATCH"}),
        ({"line_modes": (1, 1, 1, 3)}, {"LINE_MODE"}),  # line 3 is driven forward (rows 4)
        ({"backward": 1, "line_modes": (1, 1, 1, 3)}, set()),  # ... but not backward (cols 3)
        ({"backward": 1, "line_modes": (0, 2, 3, 1)}, {"LINE_MODE"}),
        # Dependent checks: PULSE_OVF only with a legal IN_BITS, MAX_COUNT only with a legal OUT_BITS.
        ({"in_bits": 9, "pulse_mult": 255}, {"IN_BITS"}),
        ({"in_bits": 0, "pulse_mult": 255}, {"IN_BITS"}),
        ({"signed": 1, "in_bits": 1, "pulse_mult": 255}, {"IN_BITS"}),
        ({"in_bits": 15, "pulse_mult": 0}, {"IN_BITS", "PULSE_MULT"}),
        ({"out_bits": 0, "max_count": 127}, {"OUT_BITS"}),
        ({"out_bits": 9, "max_count": 127}, {"OUT_BITS"}),
        (
            {"in_bits": 0, "out_bits": 0, "pulse_mult": 0, "batch": 0, "watchdog": 0, "line_modes": (3, 0, 0, 0)},
            {"IN_BITS", "OUT_BITS", "PULSE_MULT", "TIMING", "BATCH", "LINE_MODE"},
        ),
        ({"in_bits": 8, "pulse_mult": 200, "out_bits": 2, "max_count": 2}, {"PULSE_OVF", "MAX_COUNT"}),
    ],
)
def test_config_errors(changes, errors):
    assert config_errors(**{**BASE_RAW, **changes}) == frozenset(errors)


def test_config_errors_defaults_are_register_resets():
    assert config_errors(rows=2, cols=2) == frozenset()


@pytest.mark.parametrize(
    ("raw", "exc", "name"),
    [
        ({"in_bits": 16}, ValueError, "in_bits"),
        ({"pulse_mult": 256}, ValueError, "pulse_mult"),
        ({"max_count": 128}, ValueError, "max_count"),
        ({"max_count": -1}, ValueError, "max_count"),
        ({"batch": 1 << 16}, ValueError, "batch"),
        ({"timing": {"T_INTEG": 1 << 16}}, ValueError, "T_INTEG"),
        ({"timing": {"T_FOO": 1}}, ValueError, "timing"),
        ({"timing": [1]}, TypeError, "timing"),
        ({"signed": 2}, ValueError, "signed"),
        ({"line_modes": (1, 1)}, ValueError, "line_modes"),
        ({"bogus": 1}, TypeError, "bogus"),
        ({"in_bits": 4.0}, TypeError, "in_bits"),
    ],
)
def test_config_errors_rejects_unrepresentable_values(raw, exc, name):
    with pytest.raises(exc, match=name):
        config_errors(**{**BASE_RAW, **raw})


def test_config_errors_needs_geometry():
    with pytest.raises(ValueError, match="rows"):
        config_errors(cols=3)


# -- parameters and weights ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "exc", "name"),
    [
        ({"delta": 0}, ValueError, "delta"),
        ({"delta": 2**62 + 1}, ValueError, "delta"),
        ({"delta": 1.5}, TypeError, "delta"),
        ({"delta": 1, "threshold": 0.5}, TypeError, "threshold"),
        ({"delta": 1, "threshold": -(2**63)}, ValueError, "threshold"),
        ({"delta": 1, "noise_q": -1}, ValueError, "noise_q"),
        ({"delta": 1, "noise_seed": 65536}, ValueError, "noise_seed"),
        ({"delta": 1, "noise_seed": -1}, ValueError, "noise_seed"),
    ],
)
def test_params_errors(kw, exc, name):
    with pytest.raises(exc, match=name):
        MacroParams(**kw)


@pytest.mark.parametrize(
    ("weights", "exc"),
    [
        (np.array([[1, -1]]), ValueError),
        (np.array([[1.0, 2.0]]), TypeError),
        (np.array([[1.0, np.nan]]), TypeError),
        (np.array([[True]]), TypeError),
        (np.array([1, 2]), ValueError),
        (np.ones((1, 1, 1), dtype=int), ValueError),
        (np.zeros((0, 3), dtype=int), ValueError),
        (np.array([[2**62, 2**62]], dtype=np.uint64), ValueError),
    ],
)
@pytest.mark.parametrize("cls", [ExactCore, MacroState])
def test_weights_errors(cls, weights, exc):
    with pytest.raises(exc, match="weights"):
        cls(weights, MacroParams(delta=1))


def test_params_and_cfg_types_checked():
    with pytest.raises(TypeError, match="params"):
        ExactCore(np.ones((2, 2), dtype=int), {"delta": 1})
    core = ExactCore(np.ones((2, 2), dtype=int), MacroParams(delta=1))
    with pytest.raises(ValueError, match="cfg"):
        core.mvm(cfg_of(rows=2, cols=3), [1, 1])
    with pytest.raises(TypeError, match="cfg"):
        core.mvm(None, [1, 1])
    with pytest.raises(ValueError, match="x"):
        core.mvm(cfg_of(rows=2, cols=2), [[1, 1]])
    with pytest.raises(ValueError, match="xs"):
        core.mvm_batch(cfg_of(rows=2, cols=2), [1, 1])
    with pytest.raises(ValueError, match="cfg"):
        run_sequence(cfg_of(rows=2, cols=3), [1, 1], MacroState(np.ones((2, 2), dtype=int), MacroParams(delta=1)))


def test_integrator_headroom_is_enforced():
    big = np.array([[2**59]], dtype=np.int64)
    core = ExactCore(big, MacroParams(delta=1))
    assert core.mvm(cfg_of(in_bits=1), [1]).integ.tolist() == [2**60]
    with pytest.raises(ValueError, match="weights"):
        core.mvm(cfg_of(in_bits=3), [7])
    state = MacroState(big, MacroParams(delta=1))
    state.init(backward=False)
    state.sample([1], backward=False)
    for _ in range(8):
        state.integrate()
    assert state.integrator.tolist() == [2**62]
    with pytest.raises(OverflowError, match="2\\*\\*62"):
        state.integrate()


# -- exact arithmetic paths -----------------------------------------------------------------


@pytest.mark.parametrize("scale", [1, 2**17, 2**30, 2**45])
@pytest.mark.parametrize("backward", [False, True])
def test_crossbar_dot_is_exact_on_every_path(scale, backward):
    rng = np.random.default_rng(scale)
    g = rng.integers(0, 64, size=(9, 7)) * scale + rng.integers(0, scale, size=(9, 7))
    xbar = Crossbar(g)
    n_in = 7 if backward else 9
    x = rng.integers(-255, 256, size=(3, n_in))
    got = xbar.dot(x, backward, 255)
    obj = g.astype(object)
    ref = [list(obj @ np.array(v, dtype=object)) if backward else list(np.array(v, dtype=object) @ obj) for v in x]
    assert got.dtype == np.int64
    assert got.tolist() == [[int(e) for e in row] for row in ref]


# -- cycle-level macro ----------------------------------------------------------------------


def test_macro_state_operations():
    g = np.array([[1, 2, 3], [4, 5, 6]])  # 2 rows x 3 cols, lines = 3
    st = MacroState(g, MacroParams(delta=2, threshold=3))
    st.init(backward=False)
    st.sample([1, -1, 0], backward=False)
    st.integrate()
    st.integrate()
    assert st.integrator.tolist() == [-6, -6, -6]
    st.init()
    st.sample([1, 1, 0], backward=False)
    st.integrate()
    assert st.integrator.tolist() == [5, 7, 9]
    assert st.compare().tolist() == [True, True, True]
    st.decrement(np.array([False, True, False]))
    assert st.integrator.tolist() == [3, 9, 7]
    assert st.compare().tolist() == [False, True, True]
    # Backward: neuron 2 does not exist (2 rows); it answers False.
    st.init(backward=True)
    st.sample([1, 0, 1], backward=True)
    st.integrate()
    assert st.integrator.tolist() == [4, 10, 0]
    assert st.compare().tolist() == [True, True, False]
    st.decrement(np.array([True, True, True]))
    assert st.compare().tolist() == [True, True, False]


def test_macro_state_rejects_driving_missing_lines():
    st = MacroState(np.ones((2, 3), dtype=int), MacroParams(delta=1))
    with pytest.raises(ValueError, match="codes"):
        st.sample([0, 0, 1], backward=False)  # line 2 has no row
    st.sample([0, 0, 1], backward=True)  # ... but is column 2 backward
    with pytest.raises(ValueError, match="codes"):
        st.sample([0, 2, 0], backward=True)
    with pytest.raises(ValueError, match="codes"):
        st.sample([0, 1], backward=True)
    with pytest.raises(TypeError, match="dec_up"):
        st.decrement([1, 0, 1])


def test_macro_apply_bus_interface():
    g = np.array([[3, 1], [1, 3]])
    st = MacroState(g, MacroParams(delta=1, threshold=0))
    assert st.apply(MacroOp.INIT, backward=0) is None
    assert st.apply(int(MacroOp.SAMPLE), drive_bits=0b01_10) is None  # line 0 POS, line 1 NEG
    assert st.apply(MacroOp.INTEGRATE) is None
    assert st.integrator.tolist() == [2, -2]
    assert st.apply(MacroOp.COMPARE) == 0b01
    assert st.apply(MacroOp.DECREMENT, dec_up_bits=0b10) is None
    assert st.integrator.tolist() == [1, -1]
    assert st.apply(MacroOp.IDLE) is None
    with pytest.raises(ValueError, match="op"):
        st.apply(7)
    with pytest.raises(ValueError, match="drive_bits"):
        st.apply(MacroOp.SAMPLE)
    with pytest.raises(ValueError, match="dec_up_bits"):
        st.apply(MacroOp.DECREMENT)
    with pytest.raises(ValueError, match="0b11"):
        st.apply(MacroOp.SAMPLE, drive_bits=0b11)


def test_init_keeps_lfsr_and_clears_integrators():
    st = MacroState(np.zeros((1, 2), dtype=int), MacroParams(delta=1, noise_q=5, noise_seed=1))
    st.init()
    st.apply(MacroOp.NOISE)
    after_one = st.lfsr_state
    assert st.integrator.tolist() == [-5, 5]
    st.apply(MacroOp.INIT)
    assert st.integrator.tolist() == [0, 0]
    assert st.lfsr_state.tolist() == after_one.tolist() != lfsr_seeds(1, 2).tolist()
    st.reset_lfsr()
    assert st.lfsr_state.tolist() == lfsr_seeds(1, 2).tolist()

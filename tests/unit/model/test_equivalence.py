"""Property tests: the transaction view (ExactCore.mvm) equals the cycle view (run_sequence).

Both views see the same random geometry, configuration, weights, parameters and a sequence of
input vectors; every field of every result, and the LFSR states at the end, must be equal.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cimdv.model import (
    CoreConfig,
    ExactCore,
    LineMode,
    MacroParams,
    MacroState,
    config_errors,
    run_sequence,
)

DRIVEN_MODES = st.sampled_from([LineMode.OFF, LineMode.POS, LineMode.NEG])
ANY_MODE = st.sampled_from(list(LineMode))


@st.composite
def configs(draw, rows, cols):
    """A legal CoreConfig for a ``rows`` x ``cols`` core."""
    backward = draw(st.booleans())
    signed = draw(st.booleans())
    in_bits = draw(st.integers(2 if signed else 1, 8))
    nmag = in_bits - 1 if signed else in_bits
    pulse_bits = 8
    pulse_mult = draw(st.integers(1, ((1 << pulse_bits) - 1) >> (nmag - 1)))
    out_bits = draw(st.integers(1, 8))
    max_count = draw(st.integers(0, (1 << (out_bits - 1)) - 1))
    lines = max(rows, cols)
    n_in = cols if backward else rows
    # RESERVED is legal on a line that is not driven in this direction.
    modes = tuple(draw(DRIVEN_MODES if i < n_in else ANY_MODE) for i in range(lines))
    mask = tuple(draw(st.lists(st.booleans(), min_size=lines, max_size=lines)))
    return CoreConfig(
        rows=rows,
        cols=cols,
        backward=backward,
        signed=signed,
        in_bits=in_bits,
        out_bits=out_bits,
        pulse_mult=pulse_mult,
        max_count=max_count,
        noise_pulses=draw(st.integers(0, 3)),
        line_modes=modes,
        out_mask=mask,
        pulse_bits=pulse_bits,
    )


@st.composite
def scenarios(draw):
    """(weights, params, cfg, xs): a core, its parameters and a short sequence of vectors."""
    rows = draw(st.integers(1, 12))
    cols = draw(st.integers(1, 12))
    weights = draw(hnp.arrays(np.int64, (rows, cols), elements=st.integers(0, 63)))
    params = MacroParams(
        delta=draw(st.integers(1, 500)),
        threshold=draw(st.integers(-50, 50)),
        noise_q=draw(st.integers(0, 100)),
        noise_seed=draw(st.integers(0, 0xFFFF)),
    )
    cfg = draw(configs(rows, cols))
    lo, hi = cfg.in_range
    batch = draw(st.integers(1, 4))
    xs = draw(hnp.arrays(np.int64, (batch, cfg.n_in), elements=st.integers(lo, hi)))
    return weights, params, cfg, xs


def assert_views_agree(core, state, cfg, xs):
    """Run ``xs`` through both views in sequence; every result and the LFSRs must agree."""
    results = []
    for v, x in enumerate(xs):
        a = core.mvm(cfg, x)
        b = run_sequence(cfg, x, state)
        bad = a.mismatches(b)
        assert not bad, f"vector {v}: fields {bad} differ\n(a) {a}\n(b) {b}"
        assert a.sign.dtype == b.sign.dtype == np.uint8
        assert a.sat.dtype == b.sat.dtype == np.bool_
        results.append(a)
    assert core.lfsr_state.tolist() == state.lfsr_state.tolist()
    return results


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_transaction_view_equals_cycle_view(scenario):
    weights, params, cfg, xs = scenario
    core, state = ExactCore(weights, params), MacroState(weights, params)
    results = assert_views_agree(core, state, cfg, xs)
    # The batched transaction view is the same as the vector-by-vector one.
    assert ExactCore(weights, params).mvm_batch(cfg, xs) == results
    # Results obey the §4.1 invariants.
    mask = np.array(cfg.out_mask[: cfg.n_out])
    for r in results:
        assert (r.count <= cfg.max_count).all() and (r.count >= 0).all()
        assert not (r.sign[~mask].any() or r.count[~mask].any() or r.sat[~mask].any())
        if cfg.max_count:
            assert (r.count[mask] >= 1).all()
        else:
            assert not r.count.any() and not r.sat.any() and r.steps == 0
        assert (r.sat <= (r.count == cfg.max_count)).all()
        assert 0 <= r.steps <= cfg.max_count


@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 40),
    backward=st.integers(0, 1),
    signed=st.integers(0, 1),
    in_bits=st.integers(0, 15),
    out_bits=st.integers(0, 15),
    pulse_mult=st.integers(0, 255),
    max_count=st.integers(0, 127),
    pulse_bits=st.integers(1, 12),
    modes=st.lists(ANY_MODE, min_size=40, max_size=40),
)
def test_coreconfig_accepts_exactly_what_config_errors_accepts(
    rows, cols, backward, signed, in_bits, out_bits, pulse_mult, max_count, pulse_bits, modes
):
    raw = {
        "rows": rows,
        "cols": cols,
        "backward": backward,
        "signed": signed,
        "in_bits": in_bits,
        "out_bits": out_bits,
        "pulse_mult": pulse_mult,
        "max_count": max_count,
        "pulse_bits": pulse_bits,
        "line_modes": tuple(modes[: max(rows, cols)]),
    }
    errors = config_errors(**raw)
    assert errors <= {"IN_BITS", "OUT_BITS", "PULSE_MULT", "PULSE_OVF", "MAX_COUNT", "LINE_MODE"}
    if not errors:
        CoreConfig(**raw)
        return
    param = {
        "IN_BITS": "in_bits",
        "OUT_BITS": "out_bits",
        "PULSE_MULT": "pulse_mult",
        "PULSE_OVF": "pulse_mult",
        "MAX_COUNT": "max_count",
        "LINE_MODE": "line_modes",
    }
    with pytest.raises(ValueError, match="|".join(sorted({param[name] for name in errors}))) as info:
        CoreConfig(**raw)
    for name in errors:
        assert param[name] in str(info.value)


@pytest.mark.parametrize(
    ("rows", "cols", "backward"),
    [(256, 256, False), (256, 256, True), (64, 200, False), (64, 200, True)],
)
def test_views_agree_at_full_size(rows, cols, backward):
    rng = np.random.default_rng(rows * 1000 + cols + backward)
    weights = rng.integers(0, 64, size=(rows, cols))
    params = MacroParams(delta=1500, threshold=-20, noise_q=300, noise_seed=0xBEEF)
    lines = max(rows, cols)
    n_in = cols if backward else rows
    modes = tuple(rng.choice([LineMode.OFF, LineMode.POS, LineMode.NEG], size=lines).tolist())
    cfg = CoreConfig(
        rows=rows,
        cols=cols,
        backward=backward,
        signed=True,
        in_bits=4,
        out_bits=8,
        pulse_mult=2,
        max_count=127,
        noise_pulses=2,
        line_modes=modes,
        out_mask=tuple(rng.random(lines) < 0.9),
    )
    xs = rng.integers(-7, 8, size=(2, n_in))
    assert_views_agree(ExactCore(weights, params), MacroState(weights, params), cfg, xs)


def test_equivalence_check_detects_a_perturbed_weight():
    """The comparison is not vacuous: one weight changed in the cycle view only is caught."""
    rng = np.random.default_rng(42)
    weights = rng.integers(0, 64, size=(6, 5))
    params = MacroParams(delta=7)
    cfg = CoreConfig(rows=6, cols=5, backward=False, signed=True, in_bits=3, out_bits=8, pulse_mult=1, max_count=127)
    bad = weights.copy()
    bad[4, 2] += 1
    # Only line 4 driven, to +3: neuron 2 integrates 2 * 3 more charge in the perturbed macro.
    x = np.array([0, 0, 0, 0, 3, 0])
    a = ExactCore(weights, params).mvm(cfg, x)
    b = run_sequence(cfg, x, MacroState(bad, params))
    assert "integ" in a.mismatches(b)
    assert int(b.integ[2] - a.integ[2]) == 6
    with pytest.raises(AssertionError, match="differ"):
        assert_views_agree(ExactCore(weights, params), MacroState(bad, params), cfg, x[None, :])
    # The unperturbed pair passes on the same input.
    assert_views_agree(ExactCore(weights, params), MacroState(weights, params), cfg, x[None, :])


def test_equivalence_check_detects_a_shifted_lfsr():
    """A macro whose LFSR is one NOISE pulse ahead gives different results (or LFSR state)."""
    weights = np.zeros((3, 3), dtype=np.int64)
    params = MacroParams(delta=1, noise_q=10, noise_seed=3)
    cfg = CoreConfig(
        rows=3, cols=3, backward=False, signed=False, in_bits=1, out_bits=8, pulse_mult=1, max_count=127, noise_pulses=1
    )
    state = MacroState(weights, params)
    state.noise()
    with pytest.raises(AssertionError):
        assert_views_agree(ExactCore(weights, params), state, cfg, np.zeros((3, 3), dtype=np.int64))

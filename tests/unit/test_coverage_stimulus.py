"""The core's biased random generator (cimdv.tb.coverage.stimulus): knobs from holes, legality, guidance."""

import numpy as np
import pytest

from cimdv.model.encoding import config_errors
from cimdv.model.exact import ExactCore
from cimdv.tb.coverage import functional as fc
from cimdv.tb.coverage.stimulus import CoreStimulus, Knobs, knobs_for, merge_knobs


def make(seed=1, rows=16, cols=12):
    rng = np.random.default_rng(seed)
    return CoreStimulus(rows, cols, 8, rng.integers(0, 64, size=(rows, cols)), np.random.default_rng(seed))


def test_knobs_follow_the_hole_labels():
    k = knobs_for("core_input_cg", "in_x_signedness_x_direction/in_bits=3 x unsigned x backward")
    assert (k.in_bits, k.signed, k.backward) == (3, False, True)
    assert knobs_for("pulse_mult_cg", "pulse_mult/pulse_mult=128..254").pulse == (128, 254)
    k = knobs_for("core_output_cg", "out_x_saturation_x_mask/out_bits=2 x sat_negative x mask_partial")
    assert (k.out_bits, k.mask, k.target) == (2, "mask_partial", ("sat_negative",))
    k = knobs_for("count_buckets_cg", "count_negative/count_max")
    assert k.max_count_top and k.target == ("count_max-",)
    assert knobs_for("input_extremes_cg", "vector_x_signedness/all_min x signed").vector == "all_min"


@pytest.mark.parametrize(
    ("group", "hole", "message"),
    [
        ("core_errors_cg", "error/BATCH", "group must be one of"),
        ("core_input_cg", "in_bits=3", "item/label"),
        ("core_input_cg", "in_bits/weird", "no knob"),
    ],
)
def test_bad_holes_are_refused(group, hole, message):
    with pytest.raises(ValueError, match=message):
        knobs_for(group, hole)


def test_merging_refuses_contradictions_and_illegal_combinations():
    assert merge_knobs(Knobs(in_bits=3), Knobs(in_bits=4)) is None
    assert merge_knobs(Knobs(in_bits=1), Knobs(signed=True)) is None  # signed needs 2 bits
    assert merge_knobs(Knobs(in_bits=8, signed=False), Knobs(pulse=(255, 255))) is None  # PULSE_OVF
    both = merge_knobs(Knobs(in_bits=2, signed=True), Knobs(pulse=(128, 254), target=("sat_none",)))
    assert both == Knobs(in_bits=2, signed=True, pulse=(128, 254), target=("sat_none",))


@pytest.mark.parametrize("seed", range(4))
def test_every_transaction_is_legal_and_honours_its_knobs(seed):
    gen = make(seed)
    for knobs in (Knobs(), Knobs(in_bits=1, pulse=(255, 255)), Knobs(mask="mask_none", out_bits=1),
                  Knobs(vector="all_min", signed=True, backward=True), Knobs(max_count_top=True, out_bits=5)):
        for _ in range(10):
            t = gen.draw(knobs)
            c = t.cfg
            assert not config_errors(rows=c.rows, cols=c.cols, backward=c.backward, signed=c.signed,
                                     in_bits=c.in_bits, out_bits=c.out_bits, pulse_mult=c.pulse_mult,
                                     max_count=c.max_count)
            lo, hi = c.in_range
            assert t.x.shape == (c.n_in,) and t.x.min() >= lo and t.x.max() <= hi
            for name in ("in_bits", "signed", "backward", "out_bits"):
                if getattr(knobs, name) is not None:
                    assert getattr(c, name) == getattr(knobs, name)
            if knobs.pulse:
                assert knobs.pulse[0] <= c.pulse_mult <= knobs.pulse[1]
            if knobs.mask:
                assert fc.mask_kind(c.out_mask[: c.n_out]) == knobs.mask
            if knobs.vector:
                assert fc.vector_kind(t.x, c.in_range) == knobs.vector
            if knobs.max_count_top:
                assert c.max_count == (1 << (c.out_bits - 1)) - 1


def test_prediction_equals_what_sampling_records():
    """The generator predicts with the very classification the monitors' sampling uses."""
    gen = make(3)
    cov = fc.FunctionalCoverage("stimulus_predict").use_core()
    predicted = {g: set() for g in fc.CLOSURE_GROUPS}
    for _ in range(30):
        t = gen.draw()
        r = ExactCore(gen.weights, t.macro).mvm(t.cfg, t.x)
        cov.sample_input(t.cfg, t.x)
        cov.sample_output(t.cfg, r.sign, r.count, r.sat)
        for g, bins in gen.predict(t).items():
            predicted[g] |= bins
    for g in fc.CLOSURE_GROUPS:
        sampled = {f"{i}/{label}" for i, bins in cov.groups[g].hits().items() for label, h in bins.items() if h}
        assert sampled == predicted[g], g


def test_guidance_reaches_the_goal_in_far_fewer_transactions():
    """By prediction alone (no RTL): guided closes the whole goal from empty coverage several times faster."""
    counts = {}
    for guided in (True, False):
        gen = make(2)
        holes = {g: fc.planned_bins(s) for g, s in gen.specs.items()}
        n = 0
        while any(holes.values()) and n < 3000:
            t = gen.guided(holes) if guided else gen.draw()
            for g, bins in gen.predict(t).items():
                holes[g] -= bins
            n += 1
        counts[guided] = (n, any(holes.values()))
    assert counts[True][1] is False and counts[True][0] < 80
    assert counts[True][0] * 4 < counts[False][0]


def test_bad_geometry_is_refused():
    with pytest.raises(ValueError, match="weights"):
        CoreStimulus(4, 4, 8, np.zeros((4, 5), dtype=int), np.random.default_rng(0))


def test_every_pair_of_holes_gives_a_legal_transaction():
    """Any two holes of different groups, merged when compatible, draw a legal transaction honouring both."""
    gen = make(5)
    holes = [(g, b) for g, spec in gen.specs.items() for b in sorted(fc.planned_bins(spec))]
    rng = np.random.default_rng(0)
    pairs = [(i, i) for i in range(len(holes))] + [tuple(p) for p in rng.integers(0, len(holes), size=(600, 2))]
    for i, j in pairs:
        (g1, h1), (g2, h2) = holes[i], holes[j]
        both = merge_knobs(knobs_for(g1, h1), knobs_for(g2, h2))
        if both is None:
            continue
        t = gen.draw(both)
        hit = gen.predict(t)
        for g, h in ((g1, h1), (g2, h2)):
            if not both.target and g in ("core_input_cg", "pulse_mult_cg", "input_extremes_cg"):
                assert h in hit[g], (h, both, t.cfg)

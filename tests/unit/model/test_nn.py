"""The inference demo's model side: split, training, mapper and the chip model's two views.

The key property: the chip model's closed form (one product per block plus the summed read
noise) equals the cycle-level macro stepped through the controller's op sequence, sample by
sample, with the same seed — which is what lets the RTL run be compared exactly.
"""

import itertools
import json

import numpy as np
import pytest

from cimdv.model.exact import ExactCore, MacroParams, run_sequence
from cimdv.model.nn.chip import ChipModel, ChipNoise, NeuronParams, NoisyMacroState, noise_tag, read_noise
from cimdv.model.nn.data import X_MAX, input_codes, load_split
from cimdv.model.nn.mapper import MappingTable, _spread, map_network, segments_needed
from cimdv.model.nn.network import AnalogScale, QuantizedNet, QuantLayer, TrainParams, quantize, train_float


@pytest.fixture(scope="module")
def digits():
    return load_split()


@pytest.fixture(scope="module")
def small_net(digits):
    """A quickly trained 64-128-10 network (a few epochs: the properties do not need accuracy)."""
    p = TrainParams(epochs_float=4, epochs_qat=2)
    codes = input_codes(digits.x_train)
    return quantize(train_float(codes, digits.y_train, p), codes, digits.y_train, p)


def tiny_net(rng, sizes=(20, 12, 10), delta=600):
    """A random integer network for a 32 x 32 core geometry (layer 1 then splits over two cores)."""
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        hidden = i < len(sizes) - 2
        layers.append(
            QuantLayer(
                levels=rng.integers(-7, 8, (a, b)),
                bias_levels=rng.integers(-3, 4, b),
                pulse_mult=1 if hidden else 2,
                out_bits=5 if hidden else 8,
                hidden=hidden,
            )
        )
    return QuantizedNet(layers=tuple(layers), analog=AnalogScale(g_step=20, delta=delta, threshold=delta // 2))


# -- data -------------------------------------------------------------------------------------------


def test_split_is_fixed_and_stratified(digits):
    again = load_split()
    assert digits.x_train.shape == (1347, 64) and digits.x_test.shape == (450, 64)
    assert np.array_equal(digits.x_test, again.x_test) and np.array_equal(digits.y_train, again.y_train)
    share = np.bincount(digits.y_test, minlength=10) / np.bincount(digits.y_train, minlength=10)
    assert np.allclose(share, 450 / 1347, atol=0.02)


def test_input_codes_clip_and_refuse():
    assert input_codes([[0, 15, 16]]).tolist() == [[0, 15, 15]]
    with pytest.raises(ValueError, match="images must hold non-negative integer"):
        input_codes([[1.5]])
    with pytest.raises(ValueError, match="images"):
        input_codes([[-1]])


# -- training ---------------------------------------------------------------------------------------


def test_quantised_net_is_in_the_chip_ranges(small_net):
    l0, l1 = small_net.layers
    assert l0.levels.shape == (64, 128) and l1.levels.shape == (128, 10)
    for layer in small_net.layers:
        assert np.abs(layer.levels).max() <= 7
    assert small_net.analog.threshold * 2 == small_net.analog.delta
    assert 1 <= l1.pulse_mult <= 31
    assert QuantizedNet.from_dict(small_net.to_dict()).to_dict() == small_net.to_dict()


def test_training_is_deterministic(digits):
    p = TrainParams(epochs_float=1, epochs_qat=1)
    codes = input_codes(digits.x_train)
    a = quantize(train_float(codes, digits.y_train, p), codes, digits.y_train, p)
    b = quantize(train_float(codes, digits.y_train, p), codes, digits.y_train, p)
    assert a.to_dict() == b.to_dict()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hidden", 0, "hidden must be >= 1"),
        ("weight_noise", 1.5, "weight_noise must be in"),
        ("batch", 2.0, "batch must be"),
    ],
)
def test_train_params_refuse_bad_values(field, value, message):
    with pytest.raises((TypeError, ValueError), match=message):
        TrainParams(**{field: value})


# -- mapper -----------------------------------------------------------------------------------------


def test_demo_mapping_splits_shares_and_spreads_the_bias(small_net):
    t = map_network(small_net)
    assert [(b.layer, b.segment, b.x, b.y) for b in t.blocks] == [(0, 0, 0, 0), (1, 0, 0, 0), (1, 1, 1, 0)]
    first, seg0, seg1 = t.blocks
    assert first.rows == 2 * (64 + 4) and seg0.fan_in == seg1.fan_in == 64
    assert seg0.col0 == first.col0 + first.cols  # shares core (0, 0), beside layer 0
    targets = t.targets(small_net)
    g = small_net.analog.g_step

    def pair_levels(b):  # G+ - G- of every row pair of block b, in weight levels
        cells = targets[b.x, b.y][b.row0 : b.row0 + b.rows, b.col0 : b.col0 + b.cols]
        return (cells[0::2] - cells[1::2]) // g

    # Differential pairs: G+ - G- of every weight row is its level times g.
    for layer, blocks in ((0, [first]), (1, [seg0, seg1])):
        for b in blocks:
            w = small_net.layers[layer].levels[b.fan_in_start : b.fan_in_start + b.fan_in]
            assert np.array_equal(pair_levels(b)[: b.fan_in], w)
    # The bias rows of both segments add up to the layer's bias level.
    bias = sum(pair_levels(b)[b.fan_in :].sum(axis=0) for b in (seg0, seg1))
    assert np.array_equal(bias, small_net.layers[1].bias_levels)


def test_spread_is_exact_and_in_range():
    levels = np.array([0, 1, -1, 23, -56, 55])
    rows = _spread(levels, 8)
    assert np.array_equal(rows.sum(axis=0), levels) and np.abs(rows).max() <= 7
    assert rows[:, 3].max() - rows[:, 3].min() <= 1  # as even as possible
    with pytest.raises(ValueError, match="needs more than the 8 bias pairs"):
        _spread(np.array([57]), 8)


def test_segments_needed():
    assert segments_needed(64, 256) == 1 and segments_needed(128, 256) == 2 and segments_needed(124, 256) == 1
    with pytest.raises(ValueError, match="core_rows=8 cannot hold"):
        segments_needed(3, 8)


def test_mapper_refuses_what_does_not_fit(small_net):
    with pytest.raises(ValueError, match=r"layer 1 needs 2 cores in a row .* grid is 1 wide"):
        map_network(small_net, grid=(1, 2))
    with pytest.raises(ValueError, match="layer 0 has 128 outputs, more than core_cols=100"):
        map_network(small_net, core_cols=100)
    with pytest.raises(ValueError, match="does not fit the free cells"):
        map_network(small_net, core_cols=130)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x": 5}, "outside the 2 x 1 grid"),
        ({"row0": 200}, "exceed core_rows=256"),
        ({"fan_in_start": 1}, "expected 0 .gap or overlap"),
        ({"cols": 9}, "layer 1 has 10 outputs"),
        ({"col0": 0}, "overlap on core"),
    ],
)
def test_validate_names_the_bad_block(small_net, change, message):
    t = map_network(small_net)
    d = t.to_dict()
    d["blocks"][1] = {**d["blocks"][1], **change}
    with pytest.raises(ValueError, match=message):
        MappingTable.from_dict(d)


def test_table_round_trips(small_net, tmp_path):
    t = map_network(small_net)
    t.save(tmp_path / "m.json")
    assert MappingTable.from_dict(json.loads((tmp_path / "m.json").read_text())) == t
    assert "| 1 | 2/2 | (1,0) |" in t.markdown()
    with pytest.raises(ValueError, match="malformed"):
        MappingTable.from_dict({"grid": [2, 1]})


# -- the chip model ---------------------------------------------------------------------------------


def test_ideal_chip_is_the_exact_core_on_target_codes():
    rng = np.random.default_rng(5)
    net = tiny_net(rng)
    t = map_network(net, grid=(2, 1), core_rows=32, core_cols=32)
    assert len(t.layer_blocks(1)) == 1 and len(t.layer_blocks(0)) == 2  # fan-in 20 > 32/2 - 4: split
    x = rng.integers(0, X_MAX + 1, (7, 20))
    got = ChipModel(net, t, ChipNoise.none()).run(x)
    targets = t.targets(net)
    macro = MacroParams(delta=net.analog.delta, threshold=net.analog.threshold)
    layer_in = x
    for layer in range(2):
        total = 0
        for b in t.layer_blocks(layer):
            core = ExactCore(targets[b.x, b.y], macro)
            res = core.mvm_batch(t.config(b), t.block_inputs(b, layer_in))
            total = total + np.stack([r.signed[b.col0 : b.col0 + b.cols] for r in res])
        assert np.array_equal(got.outputs[layer], total)
        layer_in = np.clip(total, 0, X_MAX)


@pytest.mark.parametrize("seed", [0, 3])
def test_closed_form_equals_the_stepped_noisy_macro(seed):
    rng = np.random.default_rng(seed)
    net = tiny_net(rng)
    t = map_network(net, grid=(2, 1), core_rows=32, core_cols=32)
    noise = ChipNoise(read_noise_uS=0.2)  # read noise large against g_step = 20 codes: it decides counts
    model = ChipModel(net, t, noise, seed=seed)
    x = rng.integers(0, X_MAX + 1, (4, 20))
    images = np.array([3, 9, 10, 400])
    result = model.run(x, images)
    stepped_differs = False
    for index, b in enumerate(t.blocks):
        state = model.macro_state((b.x, b.y))
        layer_in = x if b.layer == 0 else np.clip(result.outputs[0], 0, X_MAX)
        xs = t.block_inputs(b, layer_in)
        for k, image in enumerate(images):
            state.seek(noise_tag(index, int(image)))
            r = run_sequence(t.config(b), xs[k], state)
            assert np.array_equal(r.signed[b.col0 : b.col0 + b.cols], result.block_counts[index][k])
            # Another tag is another noise draw: the comparison is sensitive to the stream.
            state.seek(noise_tag(index, int(image) + 1))
            other = run_sequence(t.config(b), xs[k], state)
            stepped_differs |= not np.array_equal(other.integ, r.integ)
    assert stepped_differs


def test_read_noise_draws_concatenate():
    """The closed form draws a transaction's samples at once, the macro one at a time: same numbers."""
    a = read_noise(np.random.default_rng([1, 2, 3]), 30, 17, 40.0)
    g = np.random.default_rng([1, 2, 3])
    b = np.concatenate([read_noise(g, 1, 17, 40.0) for _ in range(30)])
    assert np.array_equal(a, b)


def test_physical_noise_moves_counts_but_not_the_ideal():
    rng = np.random.default_rng(1)
    net = tiny_net(rng)
    t = map_network(net, grid=(2, 1), core_rows=32, core_cols=32)
    x = rng.integers(0, X_MAX + 1, (30, 20))
    ideal = [ChipModel(net, t, ChipNoise.none(), seed=s).run(x).outputs[0] for s in (0, 1)]
    assert np.array_equal(*ideal)
    noisy = [ChipModel(net, t, ChipNoise(), seed=s).run(x).outputs[0] for s in (0, 1)]
    assert not np.array_equal(noisy[0], noisy[1])
    assert np.array_equal(ChipModel(net, t, ChipNoise(), seed=0).run(x).outputs[0], noisy[0])


def test_chip_model_refuses_bad_input(small_net):
    t = map_network(small_net)
    with pytest.raises(ValueError, match=r"codes must be \(n, 64\)"):
        ChipModel(small_net, t).run(np.zeros((2, 63), int))
    with pytest.raises(ValueError, match=r"codes must be 0\.\.15"):
        ChipModel(small_net, t).run(np.full((1, 64), 16))
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        ChipModel(small_net, t, seed=-1)
    with pytest.raises(TypeError, match="noise must be a ChipNoise"):
        ChipModel(small_net, t, noise={})
    with pytest.raises(ValueError, match="read_noise_uS must be a finite number"):
        ChipNoise(read_noise_uS=-1.0)


def test_noisy_macro_needs_an_init_and_whole_neuron_arrays():
    state = NoisyMacroState(np.ones((4, 4), dtype=np.int64), MacroParams(delta=4), read_sigma=1.0, seed=0, core=0)
    with pytest.raises(RuntimeError, match="SAMPLE before the first INIT"):
        state.sample(np.array([1, 0, 0, 0]), False)
    short = NeuronParams(threshold=np.zeros(3, np.int64), delta=np.ones(3, np.int64))
    with pytest.raises(ValueError, match="neurons must hold 4 thresholds and quanta"):
        NoisyMacroState(np.ones((4, 4), np.int64), MacroParams(delta=4), read_sigma=0, seed=0, core=0, neurons=short)


def test_static_neuron_terms():
    """Thresholds and quanta are per neuron with the physical defaults, uniform when ideal; the stepped
    macro obeys them (a neuron whose threshold sits above its integrator reads 'not above')."""
    rng = np.random.default_rng(2)
    net = tiny_net(rng)
    t = map_network(net, grid=(2, 1), core_rows=32, core_cols=32)
    ideal = ChipModel(net, t, ChipNoise.none()).neurons[0, 0]
    assert (ideal.threshold == net.analog.threshold).all() and (ideal.delta == net.analog.delta).all()
    physical = ChipModel(net, t, seed=4).neurons[0, 0]
    assert np.unique(physical.threshold).size > 10 and np.unique(physical.delta).size > 10
    assert abs(np.std(physical.delta) / net.analog.delta - 0.01) < 0.005
    state = ChipModel(net, t, seed=4).macro_state((0, 0))
    state.init()
    state._integ[:] = physical.threshold  # exactly at each threshold: not above
    assert not state.compare().any()
    state._integ[:] += 1
    assert state.compare().all()

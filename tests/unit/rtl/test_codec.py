"""The bench's fast payload codec agrees bit for bit with Amaranth's own layout views."""

import random

import pytest

from cimdv.rtl.core.layouts import input_beat_layout, output_beat_layout
from cimdv.tb.vip.codec import LayoutCodec


@pytest.mark.parametrize("lanes", [1, 3, 16])
def test_output_beats_round_trip(lanes):
    layout = output_beat_layout(lanes)
    codec = LayoutCodec(layout)
    rng = random.Random(lanes)
    for _ in range(50):
        beat = {
            "elems": [
                {"count": rng.randrange(128), "sign": rng.randrange(2), "sat": rng.randrange(2)} for _ in range(lanes)
            ],
            "last": rng.randrange(2),
        }
        bits = layout.const(beat).as_value().value
        assert codec.encode(beat) == bits
        assert codec.decode(bits) == beat
        view = layout.from_bits(bits)
        assert [int(e.count) for e in view.elems] == [e["count"] for e in beat["elems"]]


@pytest.mark.parametrize("lanes", [1, 4, 16])
def test_input_beats_round_trip_with_signed_elements(lanes):
    layout = input_beat_layout(lanes)
    codec = LayoutCodec(layout)
    rng = random.Random(7 * lanes)
    for _ in range(50):
        beat = {"elems": [rng.randrange(-256, 256) for _ in range(lanes)], "last": rng.randrange(2)}
        bits = layout.const(beat).as_value().value & ((1 << layout.size) - 1)
        assert codec.encode(beat) == bits
        assert codec.decode(bits) == beat


def test_codec_rejects_values_that_do_not_fit():
    codec = LayoutCodec(input_beat_layout(2))
    with pytest.raises(ValueError, match="does not fit signed"):
        codec.encode({"elems": [256, 0], "last": 0})
    with pytest.raises(ValueError, match="3 elements, the layout 2"):
        codec.encode({"elems": [1, 2, 3], "last": 0})
    with pytest.raises(ValueError, match="fields"):
        codec.encode({"elems": [1, 2], "lost": 0})

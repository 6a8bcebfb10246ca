"""The inference flow's small version in the regression: the digits network through the chip RTL.

The network and mapping are ``make sim``'s (deterministic); the chip seed is the test's ``seed``.
The RTL's outputs, every layer and image, must equal the physical chip model's for that seed, on
each simulator; a corrupted responder cell must make the comparison fail (its negative test).
The chip is the regression's full-size 2 x 1 chip of 256 x 256 cores (tests/dv/test_chip.py's
build, whose smaller command buffer limits the batch).
"""

import re

import numpy as np
import pytest

from cimdv.model.nn.chip import ChipModel, ChipNoise
from cimdv.tb.flows import nn

from .test_chip import CHIPS

IMAGES = 6


@pytest.fixture(scope="module")
def prepared():
    return nn.prepare()


def _run(prepared, sim, seed, **kw):
    noise = ChipNoise()
    codes = prepared.test_codes[:IMAGES]
    rtl = nn.run_rtl(
        prepared.net,
        prepared.table,
        noise,
        seed,
        codes,
        range(IMAGES),
        sim=sim,
        timing="fast",
        params=CHIPS["2x1_256"],
        **kw,
    )
    model = ChipModel(prepared.net, prepared.table, noise, seed=seed).run(codes)
    return rtl, model


def test_small_inference_flow(prepared, sim, seed):
    rtl, model = _run(prepared, sim, seed)
    agree, first = nn.compare(rtl, model)
    assert agree.all(), f"seed {seed}: RTL differs from the chip model: {first}; reproduce: {rtl.reproduce}"
    assert np.array_equal(rtl.predictions, model.predictions)
    assert rtl.outputs[0].shape == (IMAGES, 128) and rtl.outputs[1].shape == (IMAGES, 10)
    assert rtl.outputs[0].any(), "layer 0 produced no activations: the comparison would be vacuous"


def test_corrupted_cell_is_caught(prepared, seed):
    """A bias-row cell of layer 0, neuron 0 (driven on every image) raised by 30 µS in the responder only."""
    b = prepared.table.blocks[0]
    fault = {"core": [b.x, b.y], "row": b.row0 + 2 * b.fan_in, "col": b.col0, "add": 3000}
    rtl, model = _run(prepared, "verilator", seed, fault=fault)
    agree, first = nn.compare(rtl, model)
    assert not agree.all(), f"seed {seed}: the fault went unseen"
    assert re.match(r"image \d+, layer 0, output 0: RTL -?\d+", first), first

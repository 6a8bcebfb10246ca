# amaranth: UnusedElaboratable=no
"""The host port's CRC-32 equals zlib's, word by word, in the reference and in the RTL."""

import zlib

import numpy as np
import pytest
from amaranth.sim import Simulator

from cimdv.rtl.host.crc import CRC_STEP_BITS, Crc32, crc32_bits, crc32_step


def _le_bytes(words):
    return b"".join(int(w).to_bytes(4, "little") for w in words)


def test_reference_step_is_zlib():
    words = np.random.default_rng(1).integers(0, 2**32, 50, dtype=np.uint64)
    state = 0xFFFF_FFFF
    for w in words:
        state = crc32_step(state, int(w))
    assert state ^ 0xFFFF_FFFF == zlib.crc32(_le_bytes(words))


def test_bit_serial_reference_is_the_word_step():
    rng = np.random.default_rng(3)
    for state, word in rng.integers(0, 2**32, (20, 2), dtype=np.uint64).tolist():
        assert crc32_bits(state, word, 32) == crc32_step(state, word)


@pytest.mark.parametrize("step_bits", CRC_STEP_BITS)
def test_rtl_crc_is_zlib_and_restarts_on_clear(step_bits):
    rng = np.random.default_rng(2)
    runs = [rng.integers(0, 2**32, n, dtype=np.uint64).tolist() for n in (1, 7, 0, 33)]
    dut = Crc32(step_bits=step_bits)
    seen = []
    busy_cycles = []

    async def bench(ctx):
        for words in runs:
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            for i, w in enumerate(words):
                ctx.set(dut.word, int(w))
                ctx.set(dut.en, 1)
                await ctx.tick()
                ctx.set(dut.en, 0)
                ctx.set(dut.word, 0)  # the word is needed on its `en` cycle only
                busy = 0
                while ctx.get(dut.busy):
                    busy += 1
                    await ctx.tick()
                busy_cycles.append(busy)
                if i % 3 == 0:  # gaps do not change the state
                    await ctx.tick()
            seen.append(ctx.get(dut.crc))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [zlib.crc32(_le_bytes(words)) for words in runs]
    assert seen[2] == 0  # the CRC of nothing
    assert set(busy_cycles) == {32 // step_bits - 1}


def test_clear_ends_a_word_in_progress_and_bad_steps_are_refused():
    dut = Crc32(step_bits=8)

    async def bench(ctx):
        ctx.set(dut.word, 0x12345678)
        ctx.set(dut.en, 1)
        await ctx.tick()
        ctx.set(dut.en, 0)
        assert ctx.get(dut.busy)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert not ctx.get(dut.busy) and ctx.get(dut.crc) == 0

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    with pytest.raises(ValueError, match="step_bits"):
        Crc32(step_bits=3)

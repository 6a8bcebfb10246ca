"""The host port's CRC-32 equals zlib's, word by word, in the reference and in the RTL."""

import zlib

import numpy as np
from amaranth.sim import Simulator

from cimdv.rtl.host.crc import Crc32, crc32_step


def _le_bytes(words):
    return b"".join(int(w).to_bytes(4, "little") for w in words)


def test_reference_step_is_zlib():
    words = np.random.default_rng(1).integers(0, 2**32, 50, dtype=np.uint64)
    state = 0xFFFF_FFFF
    for w in words:
        state = crc32_step(state, int(w))
    assert state ^ 0xFFFF_FFFF == zlib.crc32(_le_bytes(words))


def test_rtl_crc_is_zlib_and_restarts_on_clear():
    rng = np.random.default_rng(2)
    runs = [rng.integers(0, 2**32, n, dtype=np.uint64).tolist() for n in (1, 7, 0, 33)]
    dut = Crc32()
    seen = []

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
                if i % 3 == 0:  # gaps do not change the state
                    await ctx.tick()
            seen.append(ctx.get(dut.crc))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [zlib.crc32(_le_bytes(words)) for words in runs]
    assert seen[2] == 0  # the CRC of nothing

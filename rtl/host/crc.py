"""CRC-32 (zlib/Ethernet) of a stream of 32-bit words, one word per cycle.

The byte-wise reflected CRC is linear over GF(2): the next state after one little-endian
word is ``A·s ⊕ B·w``. The matrices are found here, in Python, by running the byte-wise
reference on unit vectors, and each next-state bit becomes one XOR tree.
"""

from functools import reduce

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .protocol import CRC_POLY_REFLECTED

__all__ = ["Crc32", "crc32_step"]


def crc32_step(state, word):
    """Reference: the raw CRC state after the four little-endian bytes of ``word``."""
    for k in range(4):
        state ^= (word >> (8 * k)) & 0xFF
        for _ in range(8):
            state = (state >> 1) ^ (CRC_POLY_REFLECTED if state & 1 else 0)
    return state


def _taps():
    """For every next-state bit: the state bits and word bits that XOR into it."""
    taps = []
    for out_bit in range(32):
        s_bits = [i for i in range(32) if crc32_step(1 << i, 0) >> out_bit & 1]
        w_bits = [i for i in range(32) if crc32_step(0, 1 << i) >> out_bit & 1]
        taps.append((s_bits, w_bits))
    return taps


_TAPS = _taps()


class Crc32(wiring.Component):
    """Running CRC-32 (zlib) over 32-bit words.

    Members
    -------
    clear : :py:`In(1)`
        Restart: the state returns to 0xFFFFFFFF (takes precedence over ``en``).
    en : :py:`In(1)`
        Fold ``word`` into the state on this cycle.
    word : :py:`In(32)`
        The word (its bytes little-endian, as on the wire).
    crc : :py:`Out(32)`
        ``zlib.crc32`` of every word folded since the last ``clear``.

    Timing
    ------
    ``crc`` is combinational from the state register, valid the cycle after ``en``.
    """

    def __init__(self):
        super().__init__({"clear": In(1), "en": In(1), "word": In(32), "crc": Out(32)})

    def elaborate(self, platform):
        m = Module()
        state = Signal(32, init=0xFFFF_FFFF)
        nxt = Cat(reduce(lambda a, b: a ^ b, [state[i] for i in s] + [self.word[i] for i in w], 0) for s, w in _TAPS)
        with m.If(self.clear):
            m.d.sync += state.eq(0xFFFF_FFFF)
        with m.Elif(self.en):
            m.d.sync += state.eq(nxt)
        m.d.comb += self.crc.eq(~state)
        return m

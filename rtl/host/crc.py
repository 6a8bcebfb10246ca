"""CRC-32 (zlib/Ethernet) of a stream of 32-bit words: one word per cycle, or a few bits per cycle.

The reflected CRC is linear over GF(2): the next state after ``k`` bits of data (taken LSB first,
so the bytes of a word are little-endian) is ``A·s ⊕ B·d``. The matrices are found here, in
Python, by running the bit-serial reference on unit vectors, and each next-state bit becomes one
XOR tree. ``Crc32(step_bits=32)`` folds a whole word per cycle (333 iCE40 LUTs); a narrower step
folds ``step_bits`` bits per cycle and takes ``32 / step_bits`` cycles per word, for an FPGA
whose host words arrive far apart (a byte per cycle: about a third of the LUTs).
"""

from functools import cache, reduce

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .protocol import CRC_POLY_REFLECTED

__all__ = ["Crc32", "CRC_STEP_BITS", "crc32_bits", "crc32_step"]

#: The widths :class:`Crc32` can fold per cycle (divisors of 32).
CRC_STEP_BITS = (1, 2, 4, 8, 16, 32)


def crc32_bits(state, data, n):
    """Reference: the raw CRC state after the ``n`` low bits of ``data``, least significant first."""
    for k in range(n):
        state ^= (data >> k) & 1
        state = (state >> 1) ^ (CRC_POLY_REFLECTED if state & 1 else 0)
    return state


def crc32_step(state, word):
    """Reference: the raw CRC state after the four little-endian bytes of ``word``."""
    for k in range(4):
        state ^= (word >> (8 * k)) & 0xFF
        for _ in range(8):
            state = (state >> 1) ^ (CRC_POLY_REFLECTED if state & 1 else 0)
    return state


@cache
def _taps(n):
    """For every next-state bit after ``n`` data bits: the state bits and data bits that XOR into it."""
    taps = []
    for out_bit in range(32):
        s_bits = [i for i in range(32) if crc32_bits(1 << i, 0, n) >> out_bit & 1]
        d_bits = [i for i in range(n) if crc32_bits(0, 1 << i, n) >> out_bit & 1]
        taps.append((s_bits, d_bits))
    return taps


def _xor_all(bits):
    return reduce(lambda a, b: a ^ b, bits, 0)


class Crc32(wiring.Component):
    """Running CRC-32 (zlib) over 32-bit words.

    Parameters
    ----------
    step_bits : int
        Data bits folded per cycle (one of :data:`CRC_STEP_BITS`, default 32: a word per
        cycle). Below 32 a word takes ``32 / step_bits`` cycles: the first ``step_bits`` are
        folded on the ``en`` cycle, the rest from a shift register while ``busy`` is high.

    Members
    -------
    clear : :py:`In(1)`
        Restart: the state returns to 0xFFFFFFFF (takes precedence over ``en`` and ends a
        word in progress).
    en : :py:`In(1)`
        Fold ``word`` into the state on this cycle. Must be low while ``busy``.
    word : :py:`In(32)`
        The word (its bytes little-endian, as on the wire).
    crc : :py:`Out(32)`
        ``zlib.crc32`` of every word folded since the last ``clear`` (when ``busy`` is low).
    busy : :py:`Out(1)`
        A word is still being folded (always 0 with ``step_bits=32``).

    Timing
    ------
    ``crc`` is combinational from the state register, valid ``32 / step_bits`` cycles after
    ``en`` (the cycle after it with ``step_bits=32``), when ``busy`` falls.
    """

    def __init__(self, *, step_bits=32):
        if step_bits not in CRC_STEP_BITS:
            raise ValueError(f"step_bits must be one of {', '.join(map(str, CRC_STEP_BITS))}, not {step_bits!r}")
        self.step_bits = step_bits
        #: Cycles one word takes.
        self.word_cycles = 32 // step_bits
        super().__init__({"clear": In(1), "en": In(1), "word": In(32), "crc": Out(32), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        n = self.step_bits
        state = Signal(32, init=0xFFFF_FFFF)
        m.d.comb += self.crc.eq(~state)
        if n == 32:
            nxt = Cat(_xor_all([state[i] for i in s] + [self.word[i] for i in d]) for s, d in _taps(32))
            with m.If(self.clear):
                m.d.sync += state.eq(0xFFFF_FFFF)
            with m.Elif(self.en):
                m.d.sync += state.eq(nxt)
            return m

        rest = Signal(32 - n)  # the word's bits still to fold, next ones lowest
        left = Signal(range(self.word_cycles))  # steps still to do after this one
        data = Signal(n)
        m.d.comb += [self.busy.eq(left != 0), data.eq(rest[:n])]
        with m.If(~self.busy):
            m.d.comb += data.eq(self.word[:n])
        nxt = Cat(_xor_all([state[i] for i in s] + [data[i] for i in d]) for s, d in _taps(n))
        with m.If(self.clear):
            m.d.sync += [state.eq(0xFFFF_FFFF), left.eq(0)]
        with m.Elif(self.busy):
            m.d.sync += [state.eq(nxt), rest.eq(rest >> n), left.eq(left - 1)]
        with m.Elif(self.en):
            m.d.sync += [state.eq(nxt), rest.eq(self.word[n:]), left.eq(self.word_cycles - 1)]
        return m

"""Bit-serial, two-phase input encoder: input magnitudes -> per-line drive codes.

Ref: docs/analog-boundary.md §3.1; neurram-chip.md §2.2 (NeuRRAM's 2-phase encoding).
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layouts import MAX_IN_BITS, DriveCode, LineMode

__all__ = ["PhaseEncoder"]


class PhaseEncoder(wiring.Component):
    """Combinational encoder of one (bit, phase) of the held input vector.

    Parameters
    ----------
    lines : int
        Number of drivable lines.

    Members
    -------
    mag : :py:`In(MAX_IN_BITS * lines)`
        Magnitude ``|x_i|`` of line ``i`` in bits ``8i+7:8i``.
    neg : :py:`In(lines)`
        Sign of ``x_i`` (1 = negative); only meaningful for signed inputs.
    mode : :py:`In(2 * lines)`
        :class:`LineMode` of each line.
    driven : :py:`In(lines)`
        1 for the lines of the current direction (``i < n_in``); others drive ZERO.
    bit : :py:`In(3)`
        Magnitude bit being applied (0 = LSB).
    phase_b : :py:`In(1)`
        0 for phase A, 1 for phase B.
    signed : :py:`In(1)`
        Sign-magnitude (1) or unsigned (0) inputs.
    backward : :py:`In(1)`
        Direction; decides what OFF lines drive.
    codes : :py:`Out(2 * lines)`
        :class:`DriveCode` of every line.

    Timing
    ------
    Purely combinational; the controller registers ``codes`` into ``macro.drive``.
    """

    def __init__(self, *, lines):
        self.lines = lines
        super().__init__(
            {
                "mag": In(MAX_IN_BITS * lines),
                "neg": In(lines),
                "mode": In(2 * lines),
                "driven": In(lines),
                "bit": In(3),
                "phase_b": In(1),
                "signed": In(1),
                "backward": In(1),
                "codes": Out(2 * lines),
            }
        )

    def elaborate(self, platform):
        m = Module()
        pos_code = DriveCode.POS.value
        neg_code = DriveCode.NEG.value
        zero_code = DriveCode.ZERO.value
        for i in range(self.lines):
            beta = self.mag[MAX_IN_BITS * i : MAX_IN_BITS * (i + 1)].bit_select(self.bit, 1)
            neg = self.neg[i]
            # Phase A drives +1 when the digit is positive; phase B when it is non-negative.
            # Unsigned: A = 2*beta - 1, B = +1 (so A + B = 2*beta).
            a_pos = Signal(name=f"a_pos{i}")
            b_pos = Signal(name=f"b_pos{i}")
            m.d.comb += [
                a_pos.eq(beta & ~(self.signed & neg)),
                b_pos.eq(~(self.signed & neg & beta)),
            ]
            positive = Signal(name=f"positive{i}")
            m.d.comb += positive.eq(Mux(self.phase_b, b_pos, a_pos))
            # Padding lines backward: +1 on even lines in phase A, -1 in B (opposite on odd).
            off_pos = ~self.phase_b if i % 2 == 0 else self.phase_b
            code = self.codes[2 * i : 2 * i + 2]
            mode = self.mode[2 * i : 2 * i + 2]
            with m.If(~self.driven[i]):
                m.d.comb += code.eq(zero_code)
            with m.Elif(mode == LineMode.POS.value):
                m.d.comb += code.eq(Mux(positive, pos_code, neg_code))
            with m.Elif(mode == LineMode.NEG.value):
                m.d.comb += code.eq(Mux(positive, neg_code, pos_code))
            with m.Elif((mode == LineMode.OFF.value) & self.backward):
                m.d.comb += code.eq(Mux(off_pos, pos_code, neg_code))
            with m.Else():
                m.d.comb += code.eq(zero_code)
        return m

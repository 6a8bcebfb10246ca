"""The digital/analog boundary of one core: the contract between controller and macro.

Ref: docs/analog-boundary.md, which this signature implements member by member.
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layouts import AMP_BITS, G_CODE_BITS, MacroOp, ProgOp

__all__ = ["MacroSignature", "ProgramSignature"]


class MacroSignature(wiring.Signature):
    """Controller-side view of the analog macro (crossbar, neurons, integrate-and-fire ADC).

    Parameters
    ----------
    lines : int
        ``max(rows, cols)``: lines that can be driven in either direction, and neurons.

    Members
    -------
    op : :py:`Out(MacroOp)`
        Operation in progress. Every operation instance starts with a change of ``op``
        and lasts its configured number of cycles (``T_*`` registers, at least 1).
        Two consecutive NOISE pulses are separated by one IDLE cycle.
    backward : :py:`Out(1)`
        Direction: 0 drives rows and senses columns, 1 drives columns and senses rows.
        Stable from INIT to the end of the vector's conversion.
    drive : :py:`Out(2 * lines)`
        :class:`DriveCode` of driven line ``i`` in bits ``2i+1:2i``. Valid and stable
        from the first to the last cycle of every SAMPLE; ZERO at all other times.
    dec_up : :py:`Out(lines)`
        Direction of each neuron's DECREMENT: 1 adds a quantum (integrator negative),
        0 subtracts one. Valid and stable throughout DECREMENT.
    cmp : :py:`In(lines)`
        Comparator bit of each neuron: 1 when its integrator is above the threshold.
        The controller samples it on the last cycle of each COMPARE only.

    Timing
    ------
    All members are registered outputs of the controller that change only on clock
    edges; ``drive``, ``dec_up`` and ``backward`` change on the same edge that starts the
    operation that uses them, so a macro may act on the change of ``op`` alone.
    """

    def __init__(self, *, lines):
        if not isinstance(lines, int) or lines < 1:
            raise TypeError(f"lines must be a positive integer, not {lines!r}")
        self.lines = lines
        super().__init__(
            {
                "op": Out(MacroOp),
                "backward": Out(1),
                "drive": Out(2 * lines),
                "dec_up": Out(lines),
                "cmp": In(lines),
            }
        )

    def __eq__(self, other):
        return type(other) is MacroSignature and other.lines == self.lines

    def __hash__(self):
        return hash((MacroSignature, self.lines))

    def __repr__(self):
        return f"MacroSignature(lines={self.lines})"


class ProgramSignature(wiring.Signature):
    """Controller-side view of the macro's cell-programming port (write-verify).

    Parameters
    ----------
    rows, cols : int
        Crossbar geometry: cell (``row``, ``col``) is selected.

    Members
    -------
    op : :py:`Out(ProgOp)`
        Operation in progress. Every operation instance starts with a change of ``op``
        (IDLE between two operations) and lasts its configured number of cycles
        (``T_PULSE`` for SET and RESET, ``T_READ`` for READ).
    row, col : :py:`Out(range(rows))`, :py:`Out(range(cols))`
        The selected cell; stable while ``op`` is not IDLE.
    amp : :py:`Out(AMP_BITS)`
        Pulse amplitude code (20 mV steps) of a SET or RESET; stable during the pulse.
    g_code : :py:`In(G_CODE_BITS)`
        The verify reading (0.25 µS steps, saturating at the top code), valid on the last
        cycle of a READ, where the controller samples it.

    Timing
    ------
    All members are registered controller outputs that change only on clock edges;
    ``row``, ``col`` and ``amp`` change on the edge that starts the operation, so a macro
    may act on the change of ``op`` alone (docs/analog-boundary.md).
    """

    def __init__(self, *, rows, cols):
        for name, value in (("rows", rows), ("cols", cols)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TypeError(f"{name} must be a positive integer, not {value!r}")
        self.rows, self.cols = rows, cols
        super().__init__(
            {
                "op": Out(ProgOp),
                "row": Out(range(rows)),
                "col": Out(range(cols)),
                "amp": Out(AMP_BITS),
                "g_code": In(G_CODE_BITS),
            }
        )

    def __eq__(self, other):
        return type(other) is ProgramSignature and (other.rows, other.cols) == (self.rows, self.cols)

    def __hash__(self):
        return hash((ProgramSignature, self.rows, self.cols))

    def __repr__(self):
        return f"ProgramSignature(rows={self.rows}, cols={self.cols})"

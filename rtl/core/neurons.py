"""Per-neuron state of the integrate-and-fire conversion.

Ref: docs/analog-boundary.md §4.1 (sign, count, saturation rules); neurram-chip.md §2.5
(NeuRRAM's NMLO engine, whose stale-count-on-saturation bug this block does not repeat).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layouts import COUNT_BITS

__all__ = ["NeuronArray"]


class NeuronArray(wiring.Component):
    """Sign latches, flip detectors and step counters of every neuron.

    Parameters
    ----------
    lines : int
        Number of neurons.

    Members
    -------
    cmp : :py:`In(lines)`
        Comparator bits from the macro (meaningful on the cycle of a strobe).
    active : :py:`In(lines)`
        Neurons to convert: output mask AND neuron exists in the current direction.
    sign_compare : :py:`In(1)`
        Strobe on the last cycle of the sign COMPARE: latches ``cmp`` as the reference,
        sets ``sign = ~cmp`` for active neurons, clears counts and saturation flags, and
        marks inactive neurons as already found (so they never hold up the early stop).
    step_compare : :py:`In(1)`
        Strobe on the last cycle of the COMPARE after decrement ``step``: every active
        neuron whose ``cmp`` differs from its reference for the first time records
        ``count = step``.
    step : :py:`In(COUNT_BITS)`
        Decrement step number (1-based) for ``step_compare``.
    last_step : :py:`In(1)`
        Qualifies ``step_compare`` as the last step allowed: active neurons that have not
        flipped by then get ``count = max_count`` and ``sat = 1``.
    max_count : :py:`In(COUNT_BITS)`
        Count reported by saturated neurons.
    all_found : :py:`Out(1)`
        Every active neuron has flipped, counting the flips of the current ``step_compare``
        cycle (combinational, for the controller's early stop).
    none_active : :py:`Out(1)`
        No neuron is active (early stop right after the sign compare).
    sign : :py:`Out(lines)`
        Latched sign, 1 = negative; 0 for inactive neurons. Doubles as ``dec_up``.
    sat : :py:`Out(lines)`
        Saturation flags.
    count : :py:`Out(COUNT_BITS * lines)`
        Count of neuron ``j`` in bits ``7j+6:7j``.

    Timing
    ------
    All state changes on the clock edge that ends a strobe cycle; no strobe, no change,
    so the results hold until the next sign compare.
    """

    def __init__(self, *, lines):
        self.lines = lines
        super().__init__(
            {
                "cmp": In(lines),
                "active": In(lines),
                "sign_compare": In(1),
                "step_compare": In(1),
                "step": In(COUNT_BITS),
                "last_step": In(1),
                "max_count": In(COUNT_BITS),
                "all_found": Out(1),
                "none_active": Out(1),
                "sign": Out(lines),
                "sat": Out(lines),
                "count": Out(COUNT_BITS * lines),
            }
        )

    def elaborate(self, platform):
        m = Module()
        n = self.lines
        ref = Signal(n)  # comparator bit at the sign compare
        found = Signal(n)
        flips = Signal(n)
        m.d.comb += [
            flips.eq((self.cmp ^ ref) & ~found),
            self.all_found.eq((found | flips).all()),
            self.none_active.eq(~self.active.any()),
        ]
        with m.If(self.sign_compare):
            m.d.sync += [
                ref.eq(self.cmp),
                found.eq(~self.active),
                self.sign.eq(~self.cmp & self.active),
                self.sat.eq(0),
                self.count.eq(0),
            ]
        with m.Elif(self.step_compare):
            m.d.sync += found.eq(found | flips)
            for j in range(n):
                with m.If(flips[j]):
                    m.d.sync += self.count[COUNT_BITS * j : COUNT_BITS * (j + 1)].eq(self.step)
            with m.If(self.last_step):
                m.d.sync += [found.eq((1 << n) - 1), self.sat.eq(~(found | flips))]
                for j in range(n):
                    with m.If(~(found[j] | flips[j])):
                        m.d.sync += self.count[COUNT_BITS * j : COUNT_BITS * (j + 1)].eq(self.max_count)
        return m

"""The exact golden model answering a macro port in Amaranth's simulator (the fast RTL tests).

The cocotb benches use :class:`~cimdv.tb.vip.macro.MacroResponder`; this is its counterpart for
``amaranth.sim`` testbenches, which call :meth:`SimMacro.step` once per cycle before ``ctx.tick()``.
"""

from cimdv.rtl.core.layouts import MacroOp

__all__ = ["SimMacro"]


class SimMacro:
    """Applies each operation of ``port`` to ``state`` (a cycle-level macro model) when it starts.

    Parameters
    ----------
    port : the DUT's macro port (``op``, ``drive``, ``dec_up``, ``backward``, ``cmp``)
    state : cimdv.model.exact.MacroState (or any model with the same ``apply``)
    """

    def __init__(self, port, state):
        self.port = port
        self.state = state
        self.prev_op = MacroOp.IDLE

    def step(self, ctx):
        """Act on a change of ``op`` (the contract, docs/analog-boundary.md) and drive ``cmp``."""
        port = self.port
        op = MacroOp(ctx.get(port.op))
        if op != self.prev_op:
            cmp = self.state.apply(
                op.value,
                drive_bits=ctx.get(port.drive),
                dec_up_bits=ctx.get(port.dec_up),
                backward=ctx.get(port.backward),
            )
            if cmp is not None:
                ctx.set(port.cmp, cmp)
        self.prev_op = op

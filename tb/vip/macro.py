"""The analog macro, played at the digital/analog boundary by the golden model.

Two agents on the ``macro`` port (docs/analog-boundary.md):

* :class:`MacroResponder` (reactive) answers the controller. It wakes on changes of
  ``macro__op`` only (every operation starts with one), so Python never runs on a clock edge
  while the macro integrates. The data an operation uses (SAMPLE: ``drive``; DECREMENT:
  ``dec_up``) is taken from change-tracked histories at the operation's start time, so no
  extra wake-up is needed to let registers that changed on the same edge settle (Icarus may
  report ``op`` first).
* :class:`MacroContractChecker` (passive) checks the controller side of the contract: each
  operation held exactly its configured cycles, ``drive`` ZERO outside SAMPLE, no unknown op.
"""

from collections import Counter

from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, ValueChange
from cocotb.types import Logic

from cimdv.model.exact import MacroOp
from cimdv.tb.vip.agent import Agent

__all__ = ["MacroResponder", "MacroContractChecker"]


class _MacroPort:
    def __init__(self, dut, prefix):
        self.op = getattr(dut, f"{prefix}__op")
        self.drive = getattr(dut, f"{prefix}__drive")
        self.dec_up = getattr(dut, f"{prefix}__dec_up")
        self.backward = getattr(dut, f"{prefix}__backward")
        self.cmp = getattr(dut, f"{prefix}__cmp")


class _Tracked(Agent):
    """History of a signal's values with the simulator time each one took effect.

    A watcher task wakes only when the signal changes. :meth:`at` answers "what was the
    value during the operation that started at time t" without reading the handle then,
    which is what lets the responder act on a change of ``op`` alone even on Icarus, where
    ``op`` may be reported before other registers updated on the same edge.
    """

    def __init__(self, handle):
        self.handle = handle
        self.history = []  # (time, value), oldest first

    def start(self):
        self.history = [(get_sim_time("step"), self._read())]
        return super().start()

    def _read(self):
        value = self.handle.value
        try:
            # to_unsigned() parses the simulator's string directly; is_resolvable would build
            # one Logic object per bit, which is what puts Python on the clock for wide buses.
            return int(value) if isinstance(value, Logic) else value.to_unsigned()
        except ValueError:
            return None  # X or Z somewhere

    async def _run(self):
        while True:
            await ValueChange(self.handle)
            self.history.append((get_sim_time("step"), self._read()))

    def at(self, time):
        """Value in effect at ``time`` (changes at ``time`` itself included); trims older history."""
        history = self.history
        i = len(history) - 1
        while i > 0 and history[i][0] > time:
            i -= 1
        if i > 0:
            del history[:i]
        return history[0][1]


class MacroResponder(Agent):
    """Reactive agent that answers the controller's macro operations.

    Parameters
    ----------
    dut : cocotb handle
    state : cimdv.model.exact.MacroState
        Cycle-level macro state (weights loaded by backdoor, no programming cycles).
    prefix : str
        Member name of the macro port (``macro``).

    Notes
    -----
    The responder wakes once per operation. SAMPLE and DECREMENT are recorded with their
    start time and applied, in order, when the next operation starts, using the values
    ``drive`` / ``dec_up`` / ``backward`` had at their start (docs/analog-boundary.md: valid
    from the first cycle of the operation). Their effect is invisible until the next
    COMPARE, so the order of effects on the integrators is exactly the contract's.

    Attributes
    ----------
    ops : collections.Counter
        Operations answered, by :class:`MacroOp` (coverage and sanity checks).
    """

    def __init__(self, dut, state, prefix="macro"):
        self.port = _MacroPort(dut, prefix)
        self.state = state
        self.ops = Counter()
        self._drive = _Tracked(self.port.drive)
        self._dec_up = _Tracked(self.port.dec_up)
        self._backward = _Tracked(self.port.backward)
        self._pending = None
        self._cmp = 0
        self.port.cmp.value = 0

    def load_weights(self, state):
        """Backdoor: replace the macro state (new weights) between vectors."""
        self.state = state

    def start(self):
        for tracked in (self._drive, self._dec_up, self._backward):
            tracked.start()
        return super().start()

    def stop(self):
        for tracked in (self._drive, self._dec_up, self._backward):
            tracked.stop()
        super().stop()

    def _flush(self):
        """Apply the SAMPLE or DECREMENT that started at the recorded time."""
        op, time = self._pending
        self._pending = None
        if op == MacroOp.SAMPLE:
            drive = self._drive.at(time)
            backward = self._backward.at(time)
            if drive is None or backward is None:
                raise ValueError(f"SAMPLE at step {time} with unresolvable drive or direction")
            self.state.apply(op, drive_bits=drive, backward=bool(backward))
        else:
            dec_up = self._dec_up.at(time)
            if dec_up is None:
                raise ValueError(f"DECREMENT at step {time} with unresolvable dec_up")
            self.state.apply(op, dec_up_bits=dec_up)

    async def _run(self):
        port = self.port
        while True:
            await ValueChange(port.op)
            if self._pending is not None:
                self._flush()
            try:
                op = MacroOp(port.op.value.to_unsigned())
            except ValueError:
                continue  # X op: no operation; the contract checker reports it
            self.ops[op] += 1
            if op in (MacroOp.SAMPLE, MacroOp.DECREMENT):
                self._pending = (op, get_sim_time("step"))
            elif op == MacroOp.COMPARE:
                bits = self.state.apply(op)
                if bits != self._cmp:
                    port.cmp.value = bits
                    self._cmp = bits
            elif op == MacroOp.INIT:
                # The direction is valid from INIT on (docs/analog-boundary.md §2).
                backward = self._backward.at(get_sim_time("step"))
                self.state.apply(op, backward=None if backward is None else bool(backward))
            else:
                self.state.apply(op)


class MacroContractChecker(Agent):
    """Passive checker of the controller's side of the analog-boundary contract.

    Attributes
    ----------
    hold_cycles : dict or None
        Expected cycles of each operation (from the ``T_*`` registers); None checks no timing.
    clock_period_steps : int
        Clock period in simulator steps.
    violations : list of str
        Every violation seen, in order.
    """

    def __init__(self, dut, prefix="macro"):
        self.port = _MacroPort(dut, prefix)
        self.hold_cycles = None
        self.clock_period_steps = 1
        self.violations = []

    async def _run(self):
        port = self.port
        prev_op, prev_t = None, 0
        while True:
            await ValueChange(port.op)
            await ReadOnly()
            now = get_sim_time("step")
            try:
                op = MacroOp(port.op.value.to_unsigned())
            except ValueError:
                self.violations.append(f"op unknown or unresolvable ({port.op.value}) at step {now}")
                prev_op = None
                continue
            try:
                drive = port.drive.value.to_unsigned()
            except ValueError:
                drive = None
            if op != MacroOp.SAMPLE and drive != 0:
                self.violations.append(f"drive not ZERO during {op.name} at step {now}")
            if self.hold_cycles is not None and prev_op is not None and prev_op != MacroOp.IDLE:
                held = (now - prev_t) / self.clock_period_steps
                want = self.hold_cycles.get(prev_op)
                if want is not None and held != want:
                    self.violations.append(
                        f"{prev_op.name} held {held:g} cycles, configured {want} (ended at step {now})"
                    )
            prev_op, prev_t = op, now

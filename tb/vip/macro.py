"""The analog macro, played at the digital/analog boundary by the golden model.

Two agents on the ``macro`` port (docs/analog-boundary.md):

* :class:`MacroResponder` (reactive) answers the controller. It wakes on changes of
  ``macro__op`` only (every operation starts with one), so Python never runs on a clock edge
  while the macro integrates. Operations that carry data (SAMPLE: ``drive``; DECREMENT:
  ``dec_up``) are read in the ``ReadWrite`` phase of that time step, after every register
  that changed on the same edge has settled (Icarus may report ``op`` first).
* :class:`MacroContractChecker` (passive) checks the controller side of the contract: each
  operation held exactly its configured cycles, ``drive`` ZERO outside SAMPLE, no unknown op.
"""

from collections import Counter

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, ReadWrite, ValueChange

from cimdv.model.exact import MacroOp

__all__ = ["MacroResponder", "MacroContractChecker"]


class _MacroPort:
    def __init__(self, dut, prefix):
        self.op = getattr(dut, f"{prefix}__op")
        self.drive = getattr(dut, f"{prefix}__drive")
        self.dec_up = getattr(dut, f"{prefix}__dec_up")
        self.backward = getattr(dut, f"{prefix}__backward")
        self.cmp = getattr(dut, f"{prefix}__cmp")


class MacroResponder:
    """Reactive agent that answers the controller's macro operations.

    Parameters
    ----------
    dut : cocotb handle
    state : cimdv.model.exact.MacroState
        Cycle-level macro state (weights loaded by backdoor, no programming cycles).
    prefix : str
        Member name of the macro port (``macro``).

    Attributes
    ----------
    ops : collections.Counter
        Operations answered, by :class:`MacroOp` (coverage and sanity checks).
    """

    def __init__(self, dut, state, prefix="macro"):
        self.port = _MacroPort(dut, prefix)
        self.state = state
        self.ops = Counter()
        self._task = None
        self.port.cmp.value = 0

    def load_weights(self, state):
        """Backdoor: replace the macro state (new weights) between vectors."""
        self.state = state

    def start(self):
        self._task = cocotb.start_soon(self._run())
        return self

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self):
        port = self.port
        while True:
            await ValueChange(port.op)
            value = port.op.value
            if not value.is_resolvable:
                continue  # reported by the contract checker; an X op is no operation
            op = MacroOp(value.to_unsigned())
            self.ops[op] += 1
            if op == MacroOp.SAMPLE:
                await ReadWrite()
                self.state.apply(op, drive_bits=port.drive.value.to_unsigned(), backward=bool(int(port.backward.value)))
            elif op == MacroOp.DECREMENT:
                await ReadWrite()
                self.state.apply(op, dec_up_bits=port.dec_up.value.to_unsigned())
            elif op == MacroOp.COMPARE:
                port.cmp.value = self.state.apply(op)
            else:
                self.state.apply(op)


class MacroContractChecker:
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
        self._task = None

    def start(self):
        self._task = cocotb.start_soon(self._run())
        return self

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self):
        port = self.port
        prev_op, prev_t = None, 0
        while True:
            await ValueChange(port.op)
            await ReadOnly()
            now = get_sim_time("step")
            value = port.op.value
            if not value.is_resolvable:
                self.violations.append(f"op unresolvable ({value}) at step {now}")
                prev_op = None
                continue
            op = MacroOp(value.to_unsigned())
            if op != MacroOp.SAMPLE and port.drive.value.to_unsigned() != 0:
                self.violations.append(f"drive not ZERO during {op.name} at step {now}")
            if self.hold_cycles is not None and prev_op is not None and prev_op != MacroOp.IDLE:
                held = (now - prev_t) / self.clock_period_steps
                want = self.hold_cycles.get(prev_op)
                if want is not None and held != want:
                    self.violations.append(f"{prev_op.name} held {held:g} cycles, configured {want} (ended at step {now})")
            prev_op, prev_t = op, now

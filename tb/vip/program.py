"""The macro's cell-programming port (``prog``), played and checked at the boundary.

Agents on the ``prog`` port (docs/analog-boundary.md §6):

* :class:`ProgramResponder` (reactive) answers SET, RESET and READ from a device model
  (``cimdv.model.writeverify.ArrayDevice``). It wakes only on changes of ``prog__op``; it
  reads ``row``/``col``/``amp`` in the ReadWrite phase of that time step (they change on the
  edge that starts the operation, and Icarus may report ``op`` first) and answers a READ
  on ``g_code`` at once, well before the controller samples it on the READ's last cycle.
* :class:`ProgramContractChecker` (passive) checks the controller side: every SET/RESET held
  ``T_PULSE`` cycles and every READ ``T_READ``, an IDLE cycle between two operations,
  ``row``/``col``/``amp`` stable during an operation, the cell inside the array.
* :class:`ProgramMonitor` (passive) turns the port into :class:`ProgItem` transactions (one
  per operation, published when it ends, a READ with the reading the controller sampled).
* :class:`ProgramScoreboard` checks every operation against the golden model's
  ``WriteVerifyRef`` fed with the same readings, and the result registers at the end.
"""

from collections import Counter
from dataclasses import dataclass

from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, ReadWrite, ValueChange

from cimdv.model.writeverify import ProgOp, WriteVerifyRef
from cimdv.tb.coverage import functional
from cimdv.tb.vip.agent import Agent

__all__ = ["ProgItem", "ProgramResponder", "ProgramContractChecker", "ProgramMonitor", "ProgramScoreboard"]


class _ProgPort:
    def __init__(self, dut, prefix):
        self.op = getattr(dut, f"{prefix}__op")
        self.row = getattr(dut, f"{prefix}__row")
        self.col = getattr(dut, f"{prefix}__col")
        self.amp = getattr(dut, f"{prefix}__amp")
        self.g_code = getattr(dut, f"{prefix}__g_code")


def _value(handle):
    """Unsigned value of a handle, None when it holds X or Z."""
    try:
        return handle.value.to_unsigned()
    except ValueError:
        return None


def _op(handle):
    value = _value(handle)
    return None if value is None else ProgOp(value)


@dataclass(frozen=True)
class ProgItem:
    """One operation seen on the programming port."""

    op: ProgOp
    row: int
    col: int
    #: Amplitude code (SET/RESET); 0 for a READ.
    amp: int
    #: For a READ: the G code on ``g_code`` when the READ ended (what the controller sampled).
    reading: int | None
    #: Simulator steps of the operation's first edge and of the edge that ended it.
    start: int
    end: int

    def __str__(self):
        what = f"READ -> {self.reading}" if self.op == ProgOp.READ else f"{self.op.name} amp {self.amp}"
        return f"{what} on ({self.row}, {self.col})"


class ProgramResponder(Agent):
    """Reactive agent answering the programming port from a device model.

    Parameters
    ----------
    dut : cocotb handle
    device : object with ``apply(op, row, col, amp)``
        Returns the G code for a READ and applies a pulse otherwise
        (``cimdv.model.writeverify.ArrayDevice``).
    prefix : str
        Member name of the port (``prog``).

    Attributes
    ----------
    ops : collections.Counter
        Operations answered, by :class:`ProgOp`.
    errors : list of str
        Operations the device refused (e.g. a cell outside the array); the contract checker
        reports the cause.
    """

    def __init__(self, dut, device, prefix="prog"):
        self.port = _ProgPort(dut, prefix)
        self.device = device
        self.ops = Counter()
        self.errors = []
        self.port.g_code.value = 0

    def load_device(self, device):
        """Backdoor: replace the device (between commands)."""
        self.device = device

    async def _run(self):
        port = self.port
        while True:
            await ValueChange(port.op)
            op = _op(port.op)
            if op is None or op == ProgOp.IDLE:
                continue
            await ReadWrite()
            row, col, amp = _value(port.row), _value(port.col), _value(port.amp)
            self.ops[op] += 1
            try:
                reading = self.device.apply(int(op), row, col, amp if op != ProgOp.READ else 0)
            except (TypeError, ValueError) as exc:
                self.errors.append(f"{op.name} on ({row}, {col}) amp {amp} at step {get_sim_time('step')}: {exc}")
                continue
            if reading is not None:
                port.g_code.value = reading


class ProgramContractChecker(Agent):
    """Passive checker of the controller's side of the programming-port contract.

    Parameters
    ----------
    dut : cocotb handle
    rows, cols : int
        Array geometry (the cell must be inside it).
    prefix : str

    Attributes
    ----------
    hold_cycles : dict or None
        Expected cycles per :class:`ProgOp` (``T_PULSE`` for SET and RESET, ``T_READ`` for READ);
        None checks no timing.
    clock_period_steps : int
    violations : list of str
    """

    def __init__(self, dut, rows, cols, prefix="prog"):
        self.port = _ProgPort(dut, prefix)
        self.rows, self.cols = rows, cols
        self.hold_cycles = None
        self.clock_period_steps = 1
        self.violations = []
        self._changes = []  # (time, member) of every change of row, col or amp
        self._watchers = []

    def start(self):
        self._watchers = [
            _ChangeLog(handle, name, self._changes).start()
            for name, handle in (("row", self.port.row), ("col", self.port.col), ("amp", self.port.amp))
        ]
        return super().start()

    def stop(self):
        for watcher in self._watchers:
            watcher.stop()
        super().stop()

    async def _run(self):
        port = self.port
        prev_op, prev_t = ProgOp.IDLE, 0
        while True:
            await ValueChange(port.op)
            await ReadOnly()
            now = get_sim_time("step")
            op = _op(port.op)
            if op is None:
                self.violations.append(f"prog op unresolvable ({port.op.value}) at step {now}")
                prev_op, prev_t = ProgOp.IDLE, now
                continue
            if prev_op != ProgOp.IDLE:
                if self.hold_cycles is not None:
                    held = (now - prev_t) / self.clock_period_steps
                    want = self.hold_cycles.get(prev_op)
                    if want is not None and held != want:
                        self.violations.append(
                            f"prog {prev_op.name} held {held:g} cycles, configured {want} (ended at step {now})"
                        )
                moved = sorted({name for t, name in self._changes if prev_t < t < now})
                if moved:
                    self.violations.append(
                        f"prog {', '.join(moved)} changed during {prev_op.name} (ended at step {now})"
                    )
                if op != ProgOp.IDLE:
                    self.violations.append(f"prog {op.name} right after {prev_op.name} at step {now}: no IDLE between")
            self._changes[:] = [(t, name) for t, name in self._changes if t >= now]
            if op != ProgOp.IDLE:
                row, col = _value(port.row), _value(port.col)
                if row is None or col is None or row >= self.rows or col >= self.cols:
                    self.violations.append(f"prog {op.name} on cell ({row}, {col}) outside the array at step {now}")
            prev_op, prev_t = op, now


class _ChangeLog(Agent):
    """Appends (time, name) to a shared list on every change of one handle."""

    def __init__(self, handle, name, log):
        self.handle, self.name, self.log = handle, name, log

    async def _run(self):
        while True:
            await ValueChange(self.handle)
            self.log.append((get_sim_time("step"), self.name))


class ProgramMonitor(Agent):
    """Passive monitor: one :class:`ProgItem` per operation, published to callbacks when it ends.

    Attributes
    ----------
    reading_fault : callable or None
        Only for negative tests: maps the sampled reading to the one published (a monitor
        that lies to the scoreboard must make it fail).
    items : int
        Operations published.
    """

    def __init__(self, dut, prefix="prog"):
        self.port = _ProgPort(dut, prefix)
        self.callbacks = []
        self.reading_fault = None
        self.items = 0

    def add_callback(self, callback):
        self.callbacks.append(callback)

    async def _run(self):
        port = self.port
        current = None  # (op, row, col, amp, start)
        while True:
            await ValueChange(port.op)
            await ReadOnly()
            now = get_sim_time("step")
            if current is not None:
                op, row, col, amp, start = current
                reading = None
                if op == ProgOp.READ:
                    reading = _value(port.g_code)
                    if self.reading_fault is not None and reading is not None:
                        reading = self.reading_fault(reading)
                item = ProgItem(op, row, col, amp if op != ProgOp.READ else 0, reading, start, now)
                self.items += 1
                for callback in self.callbacks:
                    callback(item)
                current = None
            op = _op(port.op)
            if op is not None and op != ProgOp.IDLE:
                current = (op, _value(port.row), _value(port.col), _value(port.amp), now)


class ProgramScoreboard:
    """Checks every programming operation against ``WriteVerifyRef`` and the result registers.

    The environment announces each accepted command with :meth:`expect`; the monitor feeds
    :meth:`on_item`; the environment passes the result registers to :meth:`check_result`
    when the command is done. Mismatches are collected, never raised in a callback;
    :meth:`check` fails the test listing them.

    After the first wrong operation of a command the reference is out of step with the RTL,
    so the rest of that command's operations are not compared (the first difference is the
    one that matters).

    Every command's end (:meth:`check_result`, or :meth:`abandon` with the result registers) is
    sampled into functional coverage (``prog_outcome_cg``: outcome, iterations against the
    command's ``iter_limit``); ``coverage`` defaults to the process's model.
    """

    def __init__(self, name="program", max_reported=5, coverage=None):
        self.coverage = functional.model() if coverage is None else coverage
        self.name = name
        self.max_reported = max_reported
        self.mismatches = []
        self.matched = 0
        self.commands = 0
        self.results = []
        self.ref = None
        self.cell = None
        self._desync = False

    def expect(self, row, col, settings):
        """A command on cell (``row``, ``col``) with ``settings`` (a WriteVerifySettings) was started."""
        if self.ref is not None and not self.ref.done and not self._desync:
            self.mismatches.append(
                f"{self.name}: command on {self.cell} started while the one before expects {self.ref.action}"
            )
        self.ref = WriteVerifyRef(settings)
        self.cell = (row, col)
        self._desync = False
        self.commands += 1

    def abandon(self, result=None):
        """The current command was aborted: stop comparing it (``result``: its result registers, sampled)."""
        if result is not None:
            self._sample(result)
        self.ref = None

    def _sample(self, result):
        limit = self.ref.settings.iter_limit if self.ref is not None else None
        self.coverage.sample_prog_result(result["outcome"], result["iterations"], limit)

    def on_item(self, item):
        ref = self.ref
        if ref is None:
            self.mismatches.append(f"{self.name}: {item} with no programming command accepted")
            return
        if self._desync:
            return
        want = ref.action
        index = ref.actions
        problem = None
        if want.done:
            problem = f"the reference had finished ({want.outcome.name})"
        elif (item.row, item.col) != self.cell:
            problem = f"the command is on cell {self.cell}"
        elif item.op != want.op or (item.op != ProgOp.READ and item.amp != want.amp):
            problem = f"the reference expects {want}"
        if problem is not None:
            self.mismatches.append(f"{self.name}: cell {self.cell} operation #{index}: RTL {item}; {problem}")
            self._desync = True
            return
        if item.op == ProgOp.READ and item.reading is None:
            self.mismatches.append(f"{self.name}: cell {self.cell} operation #{index}: READ with X on g_code")
            self._desync = True
            return
        ref.feed(item.reading if item.op == ProgOp.READ else None)
        self.matched += 1

    def check_result(self, result):
        """Compare the result registers (dict: outcome, set_pulses, reset_pulses, iterations, reading)."""
        ref = self.ref
        if ref is None:
            self.mismatches.append(f"{self.name}: a result with no programming command accepted")
            return
        self.results.append((self.cell, result))
        self._sample(result)
        if self._desync:
            return
        if not ref.done:
            self.mismatches.append(
                f"{self.name}: cell {self.cell}: the RTL finished after {ref.actions} operations, "
                f"the reference expects {ref.action}"
            )
            return
        want = ref.result
        diffs = [
            f"{field} {result[field]!r} != {getattr(want, field)!r}"
            for field in ("outcome", "set_pulses", "reset_pulses", "iterations", "reading")
            if result[field] != getattr(want, field)
        ]
        if diffs:
            self.mismatches.append(f"{self.name}: cell {self.cell} result registers: " + "; ".join(diffs))

    def check(self):
        """Raise AssertionError listing every mismatch."""
        if self.mismatches:
            shown = self.mismatches[: self.max_reported]
            if len(self.mismatches) > self.max_reported:
                shown.append(f"... and {len(self.mismatches) - self.max_reported} more")
            raise AssertionError(
                f"{self.name} scoreboard: {self.matched} operations matched, {len(self.mismatches)} mismatches\n  "
                + "\n  ".join(shown)
            )
        return self.matched

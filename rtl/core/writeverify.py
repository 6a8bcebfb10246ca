"""Write-verify sequencer: programs one RRAM cell to a target conductance code.

NeuRRAM's incremental-pulse write-verify (neurram-chip.md §4.3), moved from host software
into the core: RESET loop while the verify reading is above the window, SET loop while it is
below, amplitude ramps that restart every outer iteration, pulses at the end amplitude
counted against a limit, a confirming re-read, an iteration limit. Every decision is on
integer codes, so the golden model's ``WriteVerifyRef`` (model/writeverify.py) takes exactly
the same decisions given the same readings, and the testbench predicts every operation.

Ref: docs/architecture.md (the sequencer and its states), docs/analog-boundary.md §6 (the
programming port), docs/register-map.md (``PROG_*``, ``T_PULSE``, ``T_READ``).
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layouts import AMP_BITS, G_CODE_BITS, PROG_COUNT_BITS, ProgOp, ProgOutcome, ProgResult, ProgSettings, ProgState
from .macro import ProgramSignature

__all__ = ["WriteVerify"]

#: Width of the cell-select inputs (the ``PROG_CELL`` register fields).
CELL_BITS = 16

# The loop a reading is decided in (which decision follows a READ).
_LOOP_RESET, _LOOP_SET, _LOOP_CONFIRM = 0, 1, 2


class WriteVerify(wiring.Component):
    """Write-verify sequencer of one core: one cell per command.

    The algorithm (the window is ``lo <= reading < hi`` with ``lo = target - tol`` and
    ``hi = target + tol``; ``L`` = ``pulse_limit``)::

        READ
        loop:                                               (one outer iteration)
          amp = reset_start; n_r = 0
          while reading >= hi and n_r < L: RESET(amp); READ  (n_r += amp == reset_end;
                                                              amp = min(amp + step, end))
          amp = set_start;   n_s = 0
          while reading <  lo and n_s < L: SET(amp);   READ  (same ramp rule)
          iterations += 1
          if lo <= reading < hi: READ; if lo <= reading < hi: PASS
          if iterations > iter_limit or n_r >= L or n_s >= L:
              FAIL_LOW if reading < target else FAIL_HIGH

    Every operation first checks the budget: when ``max_ops`` operations (pulses + reads)
    have been issued, the command ends with TIMEOUT instead.

    Parameters
    ----------
    rows, cols : int
        Crossbar geometry: a command on ``row >= rows`` or ``col >= cols`` is refused.

    Members
    -------
    start : :py:`In(1)`
        One-cycle request: program cell (``row``, ``col``) with ``settings``. Ignored while
        busy, and refused (no operation) while ``cell_error`` or ``setting_error`` is high.
    abort : :py:`In(1)`
        End the command at once: the port goes IDLE on the next edge, outcome ABORTED.
    row, col : :py:`In(16)`
        The cell to program; latched at the accepted start.
    settings : :py:`In(ProgSettings)`
        Target, tolerance, ramps, limits, operation budget and timing (codes). Must be held
        stable while busy (the core refuses configuration writes while busy).
    cell_error : :py:`Out(1)`
        Combinational: ``row >= rows`` or ``col >= cols``.
    setting_error : :py:`Out(1)`
        Combinational: an illegal setting: a ramp step 0, a ramp start above its end,
        ``tol``, ``pulse_limit``, ``max_ops``, ``t_pulse`` or ``t_read`` equal to 0.
    busy : :py:`Out(1)`
        A command is in progress (from the cycle after the accepted start to ``done``).
    done : :py:`Out(1)`
        One-cycle pulse on the last busy cycle of a command (any outcome).
    state : :py:`Out(ProgState)`
        Sequencer state (diagnostic, ``PROG_STATUS.state``).
    result : :py:`Out(ProgResult)`
        Outcome, last reading, iterations and pulse counts; final when ``done`` pulses. The
        outcome reads NONE while a command runs and after reset.
    prog : :py:`Out(ProgramSignature(rows=rows, cols=cols))`
        The macro's programming port (docs/analog-boundary.md §6).

    Timing
    ------
    Every operation is preceded by at least one IDLE cycle on the port. A READ lasts
    ``t_read`` cycles and ``g_code`` is sampled on its last cycle; a pulse lasts ``t_pulse``
    cycles. Between a READ and the next operation the sequencer spends 1 to 6 decision
    cycles (IDLE on the port); after a pulse, 1 cycle. A command therefore takes at most
    ``max_ops * (max(t_pulse, t_read) + 6) + 8`` cycles whatever the macro answers: the
    budget is the watchdog of the whole command, and every loop is also bounded by the pulse
    and iteration limits.
    """

    def __init__(self, *, rows, cols):
        for name, value in (("rows", rows), ("cols", cols)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if not 1 <= value <= 1024:
                raise ValueError(f"{name} must be 1..1024, not {value}")
        self.rows, self.cols = rows, cols
        super().__init__(
            {
                "start": In(1),
                "abort": In(1),
                "row": In(CELL_BITS),
                "col": In(CELL_BITS),
                "settings": In(ProgSettings),
                "cell_error": Out(1),
                "setting_error": Out(1),
                "busy": Out(1),
                "done": Out(1),
                "state": Out(ProgState),
                "result": Out(ProgResult),
                "prog": Out(ProgramSignature(rows=rows, cols=cols)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        s = self.settings
        port = self.prog

        m.d.comb += [
            self.cell_error.eq((self.row >= self.rows) | (self.col >= self.cols)),
            self.setting_error.eq(
                (s.set_step == 0)
                | (s.reset_step == 0)
                | (s.set_start > s.set_end)
                | (s.reset_start > s.reset_end)
                | (s.tol == 0)
                | (s.pulse_limit == 0)
                | (s.max_ops == 0)
                | (s.t_pulse == 0)
                | (s.t_read == 0)
            ),
        ]

        state = Signal(ProgState)
        timer = Signal(16)
        loop = Signal(2)
        amp = Signal(AMP_BITS)  # the ramp's next amplitude
        cnt_r = Signal(8)  # RESET pulses at the end amplitude in this iteration's loop
        cnt_s = Signal(8)  # SET pulses at the end amplitude in this iteration's loop
        ops = Signal(PROG_COUNT_BITS)
        reading = Signal(G_CODE_BITS)
        iterations = Signal(PROG_COUNT_BITS)
        set_pulses = Signal(PROG_COUNT_BITS)
        reset_pulses = Signal(PROG_COUNT_BITS)
        outcome = Signal(ProgOutcome, init=ProgOutcome.NONE)

        # The window's bounds hi = target + tol and lo = max(target - tol, 0) (lo <= r  <=>  r + tol
        # >= target), registered on every idle cycle (the settings hold while busy) so that the
        # decisions after a READ compare the reading with flops.
        win_hi = Signal(G_CODE_BITS + 1)
        win_lo = Signal(G_CODE_BITS)
        above = reading >= win_hi
        below = reading < win_lo
        in_window = ~above & ~below
        limit = s.pulse_limit

        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)

        def finish(value):
            m.d.sync += [outcome.eq(value), port.op.eq(ProgOp.IDLE), state.eq(ProgState.DONE)]

        def issue_read():
            with m.If(ops == s.max_ops):
                finish(ProgOutcome.TIMEOUT)
            with m.Else():
                m.d.sync += [
                    port.op.eq(ProgOp.READ),
                    timer.eq(s.t_read - 1),
                    ops.eq(ops + 1),
                    state.eq(ProgState.READ),
                ]

        def issue_pulse(op, end, step, cnt, pulses):
            with m.If(ops == s.max_ops):
                finish(ProgOutcome.TIMEOUT)
            with m.Else():
                nxt = amp + step
                m.d.sync += [
                    port.op.eq(op),
                    port.amp.eq(amp),
                    timer.eq(s.t_pulse - 1),
                    ops.eq(ops + 1),
                    pulses.eq(pulses + 1),
                    cnt.eq(cnt + (amp == end)),
                    state.eq(ProgState.PULSE),
                ]
                with m.If(nxt >= end):
                    m.d.sync += amp.eq(end)
                with m.Else():
                    m.d.sync += amp.eq(nxt)

        with m.Switch(state):
            with m.Case(ProgState.IDLE):
                # The internal working registers and the window are loaded on every idle cycle
                # (the settings hold while busy), so an accepted start only reaches the state,
                # the port and the results (which hold the previous command's until then).
                m.d.sync += [ops.eq(0), loop.eq(_LOOP_RESET), amp.eq(s.reset_start), cnt_r.eq(0), cnt_s.eq(0)]
                m.d.sync += [
                    win_hi.eq(s.target + s.tol),
                    win_lo.eq(Mux(s.target > s.tol, s.target - s.tol, 0)),
                ]
                with m.If(self.start & ~self.cell_error & ~self.setting_error):
                    m.d.sync += [
                        port.row.eq(self.row),
                        port.col.eq(self.col),
                        reading.eq(0),
                        iterations.eq(0),
                        set_pulses.eq(0),
                        reset_pulses.eq(0),
                        outcome.eq(ProgOutcome.NONE),
                        state.eq(ProgState.ISSUE_READ),
                    ]

            with m.Case(ProgState.ISSUE_READ):
                issue_read()

            with m.Case(ProgState.READ):
                with m.If(timer == 0):
                    m.d.sync += [reading.eq(port.g_code), port.op.eq(ProgOp.IDLE)]
                    with m.Switch(loop):
                        with m.Case(_LOOP_RESET):
                            m.d.sync += state.eq(ProgState.RESET_DECIDE)
                        with m.Case(_LOOP_SET):
                            m.d.sync += state.eq(ProgState.SET_DECIDE)
                        with m.Default():
                            m.d.sync += state.eq(ProgState.CONFIRM)

            with m.Case(ProgState.PULSE):
                with m.If(timer == 0):
                    m.d.sync += [port.op.eq(ProgOp.IDLE), state.eq(ProgState.ISSUE_READ)]

            with m.Case(ProgState.RESET_DECIDE):
                with m.If(above & (cnt_r < limit)):
                    issue_pulse(ProgOp.RESET, s.reset_end, s.reset_step, cnt_r, reset_pulses)
                with m.Else():
                    m.d.sync += [
                        loop.eq(_LOOP_SET),
                        amp.eq(s.set_start),
                        cnt_s.eq(0),
                        state.eq(ProgState.SET_DECIDE),
                    ]

            with m.Case(ProgState.SET_DECIDE):
                with m.If(below & (cnt_s < limit)):
                    issue_pulse(ProgOp.SET, s.set_end, s.set_step, cnt_s, set_pulses)
                with m.Else():
                    m.d.sync += [iterations.eq(iterations + 1), state.eq(ProgState.ITER_END)]

            with m.Case(ProgState.ITER_END):
                with m.If(in_window):
                    m.d.sync += [loop.eq(_LOOP_CONFIRM), state.eq(ProgState.ISSUE_READ)]
                with m.Else():
                    m.d.sync += state.eq(ProgState.FAIL_CHECK)

            with m.Case(ProgState.CONFIRM):
                with m.If(in_window):
                    finish(ProgOutcome.PASS)
                with m.Else():
                    m.d.sync += state.eq(ProgState.FAIL_CHECK)

            with m.Case(ProgState.FAIL_CHECK):
                with m.If((iterations > s.iter_limit) | (cnt_r >= limit) | (cnt_s >= limit)):
                    with m.If(reading < s.target):
                        finish(ProgOutcome.FAIL_LOW)
                    with m.Else():
                        finish(ProgOutcome.FAIL_HIGH)
                with m.Else():
                    m.d.sync += [
                        loop.eq(_LOOP_RESET),
                        amp.eq(s.reset_start),
                        cnt_r.eq(0),
                        state.eq(ProgState.RESET_DECIDE),
                    ]

            with m.Case(ProgState.DONE):
                m.d.comb += self.done.eq(1)
                m.d.sync += state.eq(ProgState.IDLE)

        # Abort wins over everything the state machine did this cycle.
        with m.If(self.abort & (state != ProgState.IDLE) & (state != ProgState.DONE)):
            finish(ProgOutcome.ABORTED)

        m.d.comb += [
            self.busy.eq(state != ProgState.IDLE),
            self.state.eq(state),
            self.result.outcome.eq(outcome),
            self.result.reading.eq(reading),
            self.result.iterations.eq(iterations),
            self.result.set_pulses.eq(set_pulses),
            self.result.reset_pulses.eq(reset_pulses),
        ]
        return m

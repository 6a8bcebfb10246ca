"""The controller of one CIM core.

Ref: docs/architecture.md (states and data path), docs/analog-boundary.md (the macro
contract), docs/register-map.md (generated from ``regs.py``); neurram-chip.md §2 for the
reference controller whose hazards (silent overflow, hangs, stale saturated counts,
trigger races) this design avoids.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..common.csr import CsrBank, CsrSignature, port_name
from .encoder import PhaseEncoder
from .layouts import (
    COUNT_BITS,
    INPUT_ELEM,
    MAX_IN_BITS,
    CoreState,
    LineMode,
    MacroOp,
    ProgState,
    input_beat_layout,
    output_beat_layout,
)
from .macro import MacroSignature, ProgramSignature
from .neurons import NeuronArray
from .regs import LINES_PER_WORD, NEURONS_PER_WORD, PROG_KEY, ErrorBit, register_map
from .writeverify import WriteVerify

__all__ = ["CimCore", "DEBUG_SIGNATURE"]

_MAX_LINES = 1024

#: Read-only observation port of the core: controller and write-verify sequencer state.
DEBUG_SIGNATURE = wiring.Signature({"state": Out(CoreState), "prog_state": Out(ProgState)})


def _ceil_div(a, b):
    return -(-a // b)


class CimCore(wiring.Component):
    """Digital controller of one RRAM CIM core.

    Holds an input vector, encodes it into 2-phase bit-serial drive of the crossbar,
    sequences the neurons' integration and integrate-and-fire conversion, and streams
    out sign + count per neuron. Configuration is checked at START; an illegal one is
    refused with an error flag, never run.

    Parameters
    ----------
    rows, cols : int
        Crossbar geometry, 1..1024 each (NeuRRAM: 256 x 256).
    lanes : int
        Elements per stream beat (input and output), 1..64.
    pulse_bits : int
        Width of the per-phase pulse counter, 1..16. A configuration whose
        ``PULSE_MULT * 2**(magnitude bits - 1)`` does not fit is refused (``PULSE_OVF``).

    Members
    -------
    csr : :py:`In(CsrSignature(addr_width=8))`
        Register access (map in ``regs.py`` / docs/register-map.md).
    inputs : :py:`In(stream.Signature(input_beat_layout(lanes)))`
        Input vectors: ``ceil(n_in / lanes)`` beats each, ``last`` on the final beat.
        Accepted only while a run waits for a vector.
    outputs : :py:`Out(stream.Signature(output_beat_layout(lanes)))`
        Results: ``ceil(n_out / lanes)`` beats per vector, ``last`` on the final beat.
    start : :py:`In(1)`
        One-cycle start pulse, same as writing ``CTRL.start``.
    busy : :py:`Out(1)`
        A run or a write-verify command is in progress (from the cycle after an accepted
        start or ``PROG_CTRL.start`` to ``done``).
    done : :py:`Out(1)`
        One-cycle pulse on the last busy cycle of a run (normal end, abort or error) or of a
        write-verify command (any outcome).
    error : :py:`Out(1)`
        ``ERROR`` is non-zero.
    macro : :py:`Out(MacroSignature(lines=max(rows, cols)))`
        The analog boundary (docs/analog-boundary.md).
    prog : :py:`Out(ProgramSignature(rows=rows, cols=cols))`
        The macro's cell-programming port, driven by the :class:`WriteVerify` sequencer
        (docs/analog-boundary.md §6). IDLE unless a command was accepted, which needs
        ``PROG_KEY`` unlocked.
    debug : :py:`Out(DEBUG_SIGNATURE)`
        Read-only observation of the controller (``debug.state``, :class:`CoreState`) and of the
        write-verify sequencer (``debug.prog_state``, :class:`ProgState`): the same registers as
        ``STATUS.state`` and ``PROG_STATUS.state``, as ports so that a testbench sees the state
        in the cycle a reset is applied (functional coverage of reset in every state;
        docs/coverage.md). Nothing in the design reads them; a parent may leave them open.

    Timing
    ------
    A start is accepted on the cycle it is seen (``busy`` rises on the next cycle).
    Per vector: input beats at one per cycle, one more LOAD cycle after the final beat
    (``inputs.ready`` low) in which the range of the whole vector is decided (a vector
    with an element out of range is refused there: ``INPUT_RANGE``, then FINISH), then
    ``T_INIT`` + for every bit ``b`` and both phases ``PULSE_MULT * 2**b * (T_SAMPLE +
    T_INTEG)`` + ``NOISE_PULSES`` noise pulses + ``T_COMPARE`` + ``steps * (T_DECR +
    T_COMPARE)`` cycles (``LAST_CYCLES`` counts from INIT), then one output beat per
    cycle while ``outputs.ready`` is high. Every wait on a stream is bounded by
    ``WATCHDOG`` cycles. A write-verify command is accepted like a start (``busy`` on the
    next cycle) and takes the sequencer's time (:class:`WriteVerify`, bounded by its
    operation budget) plus one FINISH cycle.
    """

    def __init__(self, *, rows=256, cols=256, lanes=16, pulse_bits=8):
        for name, value, lo, hi in (
            ("rows", rows, 1, _MAX_LINES),
            ("cols", cols, 1, _MAX_LINES),
            ("lanes", lanes, 1, 64),
            ("pulse_bits", pulse_bits, 1, 16),
        ):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be {lo}..{hi}, not {value}")
        self.rows = rows
        self.cols = cols
        self.lines = max(rows, cols)
        self.lanes = lanes
        self.pulse_bits = pulse_bits
        self.regmap = register_map(rows=rows, cols=cols, pulse_bits=pulse_bits)
        super().__init__(
            {
                "csr": In(CsrSignature(addr_width=8)),
                "inputs": In(stream.Signature(input_beat_layout(lanes))),
                "outputs": Out(stream.Signature(output_beat_layout(lanes))),
                "start": In(1),
                "busy": Out(1),
                "done": Out(1),
                "error": Out(1),
                "macro": Out(MacroSignature(lines=self.lines)),
                "prog": Out(ProgramSignature(rows=rows, cols=cols)),
                "debug": Out(DEBUG_SIGNATURE),
            }
        )

    def elaborate(self, platform):
        m = Module()
        lines, lanes, rows, cols = self.lines, self.lanes, self.rows, self.cols
        regmap = self.regmap

        m.submodules.regs = regs = CsrBank(regmap)
        wiring.connect(m, wiring.flipped(self.csr), regs.bus)
        m.submodules.encoder = enc = PhaseEncoder(lines=lines)
        m.submodules.neurons = neurons = NeuronArray(lines=lines)
        m.submodules.write_verify = wv = WriteVerify(rows=rows, cols=cols)
        wiring.connect(m, wv.prog, wiring.flipped(self.prog))

        def field(reg, name):
            r = regmap[reg]
            f = r.field(name)
            return getattr(regs, port_name(r))[f.offset : f.offset + f.width]

        # ---- configuration --------------------------------------------------------------
        backward = field("MODE", "backward")
        signed_in = field("MODE", "signed")
        in_bits = field("MODE", "in_bits")
        out_bits = field("MODE", "out_bits")
        pulse_mult = field("MODE", "pulse_mult")
        max_count = field("MAX_COUNT", "max_count")
        batch = field("BATCH", "batch")
        timing = {
            name: field(name, name.lower())
            for name in ("T_INIT", "T_SAMPLE", "T_INTEG", "T_COMPARE", "T_DECR", "T_NOISE")
        }
        noise_pulses = field("NOISE_PULSES", "noise_pulses")
        watchdog = field("WATCHDOG", "watchdog")
        line_mode = Cat(
            getattr(regs, port_name(r))[: 2 * min(LINES_PER_WORD, lines - w * LINES_PER_WORD)]
            for w, r in enumerate(regmap.array("LINE_MODE"))
        )
        out_mask = Cat(
            getattr(regs, port_name(r))[: min(NEURONS_PER_WORD, lines - w * NEURONS_PER_WORD)]
            for w, r in enumerate(regmap.array("OUT_MASK"))
        )

        # Lines driven and neurons that exist in the current direction (constants muxed by it).
        driven = Signal(lines)
        exists = Signal(lines)
        for i in range(lines):
            m.d.comb += [
                driven[i].eq(Mux(backward, i < cols, i < rows)),
                exists[i].eq(Mux(backward, i < rows, i < cols)),
            ]
        n_in = Mux(backward, cols, rows)
        in_final = Mux(backward, _ceil_div(cols, lanes) - 1, _ceil_div(rows, lanes) - 1)
        out_final = Mux(backward, _ceil_div(rows, lanes) - 1, _ceil_div(cols, lanes) - 1)
        nmag = Signal(4)
        m.d.comb += nmag.eq(in_bits - signed_in)
        mag_max = Signal(MAX_IN_BITS + 1)  # largest legal |x|: 2**nmag - 1
        m.d.comb += mag_max.eq((Const(1, MAX_IN_BITS + 1) << nmag) - 1)

        # ---- legality checks evaluated at START (docs/register-map.md, ERROR) ------------
        cfg_err = {}
        cfg_err[ErrorBit.IN_BITS] = (in_bits == 0) | (in_bits > MAX_IN_BITS) | (signed_in & (in_bits < 2))
        cfg_err[ErrorBit.OUT_BITS] = (out_bits == 0) | (out_bits > COUNT_BITS + 1)
        cfg_err[ErrorBit.PULSE_MULT] = pulse_mult == 0
        # PULSE_OVF: PULSE_MULT * 2**(nmag - 1) > 2**pulse_bits - 1, i.e. PULSE_MULT >> (pulse_bits
        # - (nmag - 1)) is non-zero; MAX_COUNT: MAX_COUNT > 2**(OUT_BITS - 1) - 1, i.e. MAX_COUNT >>
        # (OUT_BITS - 1) is non-zero. Both as the OR of a fixed slice per shift, selected by the
        # shift: no shifter and comparator in front of the START decision.
        pulse_ovf = Cat(*(pulse_mult[max(self.pulse_bits - sh, 0) :].any() for sh in range(8)))
        cfg_err[ErrorBit.PULSE_OVF] = ~cfg_err[ErrorBit.IN_BITS] & pulse_ovf.bit_select((nmag - 1)[:3], 1)
        count_ovf = Cat(*(max_count[sh:].any() for sh in range(8)))
        cfg_err[ErrorBit.MAX_COUNT] = ~cfg_err[ErrorBit.OUT_BITS] & count_ovf.bit_select((out_bits - 1)[:3], 1)
        cfg_err[ErrorBit.TIMING] = Cat(*(t == 0 for t in timing.values()), watchdog == 0).any()
        cfg_err[ErrorBit.BATCH] = batch == 0
        reserved = Signal(lines)
        for i in range(lines):
            m.d.comb += reserved[i].eq(driven[i] & (line_mode[2 * i : 2 * i + 2] == LineMode.RESERVED.value))
        cfg_err[ErrorBit.LINE_MODE] = reserved.any()
        config_bits = Signal(32)
        for b in ErrorBit.CONFIG:
            m.d.comb += config_bits[b].eq(cfg_err[b])

        # ---- controller state -------------------------------------------------------------
        state = Signal(CoreState)

        # Derived values a run uses, registered while IDLE: the configuration cannot change
        # while busy (CONFIG_BUSY), so they hold the START cycle's values for the whole run and
        # keep MODE's arithmetic out of the per-beat and per-pulse paths (the START checks
        # above still use the live registers).
        run_nmag = Signal(4)
        in_lo = Signal(INPUT_ELEM)  # legal input range: -mag_max (signed) or 0 .. mag_max
        in_hi = Signal(INPUT_ELEM)
        with m.If(state == CoreState.IDLE):
            m.d.sync += [run_nmag.eq(nmag), in_lo.eq(Mux(signed_in, -mag_max, 0)), in_hi.eq(mag_max)]

        timer = Signal(16)
        timer_done = timer == 0
        bit = Signal(3)
        phase_b = Signal()
        pulse = Signal(self.pulse_bits)
        pulse_target = Signal(self.pulse_bits)
        m.d.comb += pulse_target.eq(pulse_mult << bit)
        noise_n = Signal(8)
        step = Signal(COUNT_BITS)
        in_beat = Signal(range(_ceil_div(lines, lanes)))
        out_beat = Signal(range(_ceil_div(lines, lanes)))
        range_seen = Signal()
        range_check = Signal()  # LOAD: the final beat is in; decide INPUT_RANGE this cycle
        vec = Signal(16)
        # Watchdog of the stream waits, counting down: ``wd_left`` idle cycles may still pass
        # before the one that times out, and ``wd_expire`` (``wd_left == 0``, kept registered)
        # marks that one, so no 32-bit compare sits in front of the next-state logic.
        wd_left = Signal(32)
        wd_expire = Signal()
        cycles = Signal(32)
        vectors = Signal(32)
        last_cycles = Signal(32)
        last_steps = Signal(8)
        done_q = Signal()
        aborted_q = Signal()
        err_set = Signal(32)

        # Input buffer: |x| and sign of every line, held for the whole vector.
        mag = Signal(MAX_IN_BITS * lines)
        neg = Signal(lines)

        # Encoder inputs: by default the current (bit, phase); transitions that start a new
        # SAMPLE with another (bit, phase) override them with the next values.
        enc_bit = Signal(3)
        enc_phase = Signal()
        m.d.comb += [
            enc_bit.eq(bit),
            enc_phase.eq(phase_b),
            enc.mag.eq(mag),
            enc.neg.eq(neg),
            enc.mode.eq(line_mode),
            enc.driven.eq(driven),
            enc.bit.eq(enc_bit),
            enc.phase_b.eq(enc_phase),
            enc.signed.eq(signed_in),
            enc.backward.eq(backward),
        ]

        m.d.comb += [
            neurons.cmp.eq(self.macro.cmp),
            neurons.active.eq(out_mask & exists),
            neurons.max_count.eq(max_count),
            self.macro.dec_up.eq(neurons.sign),
        ]

        def go(next_state, op=MacroOp.IDLE, cycles_=None):
            stmts = [state.eq(next_state), self.macro.op.eq(op)]
            if cycles_ is not None:
                stmts.append(timer.eq(cycles_ - 1))
            return stmts

        def go_sample(b, ph):
            # Drive the codes of (b, ph) from the first cycle of the SAMPLE.
            m.d.comb += [enc_bit.eq(b), enc_phase.eq(ph)]
            m.d.sync += go(CoreState.SAMPLE, MacroOp.SAMPLE, timing["T_SAMPLE"])
            m.d.sync += [bit.eq(b), phase_b.eq(ph), self.macro.drive.eq(enc.codes)]

        def finish():
            m.d.sync += go(CoreState.FINISH)

        def wd_reload():
            return [wd_left.eq(watchdog - 1), wd_expire.eq(watchdog == 1)]

        def wd_idle(timeout_bit):
            # A cycle of a stream wait without a transfer: the WATCHDOG-th in a row ends the run.
            with m.If(wd_expire):
                m.d.comb += err_set[timeout_bit].eq(1)
                finish()
            with m.Else():
                m.d.sync += [wd_left.eq(wd_left - 1), wd_expire.eq(wd_left == 1)]

        with m.If(~timer_done):
            m.d.sync += timer.eq(timer - 1)
        with m.If((state != CoreState.IDLE) & (state != CoreState.LOAD) & (state != CoreState.DRAIN)):
            m.d.sync += cycles.eq(cycles + 1)
        # The stream counters only count in the states that wait on a stream and are cleared in
        # every other one, so the late decision that enters OUTPUT (the early stop, from the
        # comparators) does not have to reach them.
        with m.If((state != CoreState.LOAD) & (state != CoreState.DRAIN) & (state != CoreState.OUTPUT)):
            m.d.sync += [*wd_reload(), out_beat.eq(0)]
        # Likewise the run's counters are cleared on every IDLE cycle rather than by the START
        # decision, which then only reaches the state and the visible flags.
        with m.If(state == CoreState.IDLE):
            m.d.sync += [vec.eq(0), in_beat.eq(0), range_seen.eq(0), range_check.eq(0)]

        start_req = self.start | regs.ctrl[0]
        abort_req = regs.ctrl[1]

        # ---- write-verify: key lock, settings, start checks ----------------------------------
        unlocked = Signal()
        prog_done_q = Signal()
        key_addr = regmap["PROG_KEY"].addr
        with m.If(self.csr.w_stb & (self.csr.addr == key_addr)):
            m.d.sync += unlocked.eq(self.csr.w_data == PROG_KEY)
        prog_start_req = regs.prog_ctrl[0]
        m.d.comb += [wv.row.eq(field("PROG_CELL", "row")), wv.col.eq(field("PROG_CELL", "col"))]
        settings = wv.settings
        for member, reg, name in (
            ("target", "PROG_TARGET", "target"),
            ("tol", "PROG_TARGET", "tol"),
            ("set_start", "PROG_SET", "start"),
            ("set_end", "PROG_SET", "end"),
            ("set_step", "PROG_SET", "step"),
            ("reset_start", "PROG_RESET", "start"),
            ("reset_end", "PROG_RESET", "end"),
            ("reset_step", "PROG_RESET", "step"),
            ("pulse_limit", "PROG_LIMITS", "pulse_limit"),
            ("iter_limit", "PROG_LIMITS", "iter_limit"),
            ("max_ops", "PROG_LIMITS", "max_ops"),
            ("t_pulse", "T_PULSE", "t_pulse"),
            ("t_read", "T_READ", "t_read"),
        ):
            m.d.comb += getattr(settings, member).eq(field(reg, name))
        # A programming start is refused while locked (PROG_LOCKED), while anything runs or an
        # error is pending (START_BUSY; an MVM start in the same cycle wins), and with an
        # illegal cell or setting. Only an accepted start reaches the sequencer. The bus writes
        # one register per cycle, so an MVM start in the same cycle can only be the `start`
        # port (CTRL.start is left out: that keeps the bus decode short on this path).
        prog_blocked = (state != CoreState.IDLE) | self.start | regs.error.any()
        with m.If(prog_start_req):
            with m.If(~unlocked):
                m.d.comb += err_set[ErrorBit.PROG_LOCKED].eq(1)
            with m.If(prog_blocked):
                m.d.comb += err_set[ErrorBit.START_BUSY].eq(1)
            with m.If(unlocked & ~prog_blocked):
                with m.If(wv.cell_error | wv.setting_error):
                    m.d.comb += [
                        err_set[ErrorBit.PROG_CELL].eq(wv.cell_error),
                        err_set[ErrorBit.PROG_SETTING].eq(wv.setting_error),
                    ]
                with m.Else():
                    m.d.comb += wv.start.eq(1)
                    m.d.sync += [go(CoreState.PROGRAM), done_q.eq(0), aborted_q.eq(0), prog_done_q.eq(0)]
        with m.If(wv.done):
            m.d.sync += prog_done_q.eq(1)

        # Input beat capture and range check (used in LOAD). A beat's range error is only
        # accumulated into range_seen; the decision is taken the cycle after the final beat.
        beat = self.inputs.payload
        beat_range_err = Signal()
        range_errs = []
        for k in range(lanes):
            v = beat.elems[k]
            line = in_beat * lanes + k
            range_errs.append(((v < in_lo) | (v > in_hi)) & (line < n_in))
        m.d.comb += beat_range_err.eq(Cat(*range_errs).any())
        is_final = in_beat == in_final

        with m.Switch(state):
            with m.Case(CoreState.IDLE):
                with m.If(start_req):
                    with m.If(regs.error.any()):
                        m.d.comb += err_set[ErrorBit.START_BUSY].eq(1)
                    with m.Elif(config_bits.any()):
                        m.d.comb += err_set.eq(config_bits)
                    with m.Else():
                        m.d.sync += [go(CoreState.LOAD), done_q.eq(0), aborted_q.eq(0)]

            with m.Case(CoreState.LOAD):
                m.d.comb += self.inputs.ready.eq(~range_check)
                with m.If(range_check):
                    # One cycle after the final beat (no beat accepted): range_seen covers
                    # every beat of the vector.
                    m.d.sync += range_check.eq(0)
                    with m.If(range_seen):
                        m.d.comb += err_set[ErrorBit.INPUT_RANGE].eq(1)
                        finish()
                    with m.Else():
                        m.d.sync += go(CoreState.INIT, MacroOp.INIT, timing["T_INIT"])
                        m.d.sync += cycles.eq(0)
                with m.Elif(self.inputs.valid):
                    m.d.sync += [*wd_reload(), in_beat.eq(in_beat + 1), range_seen.eq(range_seen | beat_range_err)]
                    for i in range(lines):
                        v = beat.elems[i % lanes]
                        with m.If(in_beat == i // lanes):
                            m.d.sync += [
                                mag[MAX_IN_BITS * i : MAX_IN_BITS * (i + 1)].eq(Mux(v < 0, -v, v)),
                                neg[i].eq(v < 0),
                            ]
                    with m.If(beat.last & ~is_final):
                        m.d.comb += err_set[ErrorBit.INPUT_LENGTH].eq(1)
                        finish()
                    with m.Elif(is_final & ~beat.last):
                        m.d.comb += err_set[ErrorBit.INPUT_LENGTH].eq(1)
                        m.d.sync += go(CoreState.DRAIN)
                    with m.Elif(is_final):
                        m.d.sync += range_check.eq(1)
                with m.Else():
                    wd_idle(ErrorBit.TIMEOUT_IN)

            with m.Case(CoreState.DRAIN):
                # Resynchronise on the host's framing after a vector without `last`.
                m.d.comb += self.inputs.ready.eq(1)
                with m.If(self.inputs.valid):
                    m.d.sync += wd_reload()
                    with m.If(beat.last):
                        finish()
                with m.Else():
                    wd_idle(ErrorBit.TIMEOUT_IN)

            with m.Case(CoreState.INIT):
                with m.If(timer_done):
                    m.d.sync += pulse.eq(0)
                    go_sample(0, 0)

            with m.Case(CoreState.SAMPLE):
                with m.If(timer_done):
                    m.d.sync += go(CoreState.INTEGRATE, MacroOp.INTEGRATE, timing["T_INTEG"])
                    m.d.sync += self.macro.drive.eq(0)

            with m.Case(CoreState.INTEGRATE):
                with m.If(timer_done):
                    with m.If(pulse + 1 != pulse_target):
                        m.d.sync += pulse.eq(pulse + 1)
                        go_sample(bit, phase_b)
                    with m.Elif(~phase_b):
                        m.d.sync += pulse.eq(0)
                        go_sample(bit, 1)
                    with m.Elif(bit + 1 < run_nmag):
                        m.d.sync += pulse.eq(0)
                        go_sample(bit + 1, 0)
                    with m.Elif(noise_pulses != 0):
                        m.d.sync += go(CoreState.NOISE, MacroOp.NOISE, timing["T_NOISE"])
                        m.d.sync += noise_n.eq(0)
                    with m.Else():
                        m.d.sync += go(CoreState.SIGN_COMPARE, MacroOp.COMPARE, timing["T_COMPARE"])

            with m.Case(CoreState.NOISE):
                with m.If(timer_done):
                    with m.If(noise_n + 1 < noise_pulses):
                        m.d.sync += noise_n.eq(noise_n + 1)
                        m.d.sync += go(CoreState.NOISE_GAP, MacroOp.IDLE, 1)
                    with m.Else():
                        m.d.sync += go(CoreState.SIGN_COMPARE, MacroOp.COMPARE, timing["T_COMPARE"])

            with m.Case(CoreState.NOISE_GAP):
                m.d.sync += go(CoreState.NOISE, MacroOp.NOISE, timing["T_NOISE"])

            with m.Case(CoreState.SIGN_COMPARE):
                with m.If(timer_done):
                    m.d.comb += neurons.sign_compare.eq(1)
                    m.d.sync += step.eq(0)
                    with m.If((max_count == 0) | neurons.none_active):
                        m.d.sync += [go(CoreState.OUTPUT), last_steps.eq(0)]
                    with m.Else():
                        m.d.sync += go(CoreState.DECREMENT, MacroOp.DECREMENT, timing["T_DECR"])

            with m.Case(CoreState.DECREMENT):
                with m.If(timer_done):
                    m.d.sync += go(CoreState.STEP_COMPARE, MacroOp.COMPARE, timing["T_COMPARE"])

            with m.Case(CoreState.STEP_COMPARE):
                with m.If(timer_done):
                    last = (step + 1 == max_count) | neurons.all_found
                    m.d.comb += [
                        neurons.step_compare.eq(1),
                        neurons.step.eq(step + 1),
                        neurons.last_step.eq(step + 1 == max_count),
                    ]
                    # The timer is loaded for a DECREMENT either way (OUTPUT does not use it).
                    m.d.sync += [step.eq(step + 1), timer.eq(timing["T_DECR"] - 1)]
                    with m.If(last):
                        m.d.sync += [go(CoreState.OUTPUT), last_steps.eq(step + 1)]
                    with m.Else():
                        m.d.sync += go(CoreState.DECREMENT, MacroOp.DECREMENT)

            with m.Case(CoreState.OUTPUT):
                m.d.comb += self.outputs.valid.eq(1)
                with m.If(self.outputs.ready):
                    m.d.sync += [*wd_reload(), out_beat.eq(out_beat + 1)]
                    with m.If(out_beat == out_final):
                        m.d.sync += [vectors.eq(vectors + 1), last_cycles.eq(cycles + 1), vec.eq(vec + 1)]
                        with m.If(vec + 1 == batch):
                            finish()
                        with m.Else():
                            m.d.sync += go(CoreState.LOAD)
                            m.d.sync += [in_beat.eq(0), range_seen.eq(0), range_check.eq(0)]
                with m.Else():
                    wd_idle(ErrorBit.TIMEOUT_OUT)

            with m.Case(CoreState.PROGRAM):
                with m.If(wv.done):
                    finish()

            with m.Case(CoreState.FINISH):
                m.d.comb += self.done.eq(1)
                m.d.sync += [go(CoreState.IDLE), done_q.eq(1)]

        # A start while busy is refused and flagged (the run goes on).
        with m.If(start_req & (state != CoreState.IDLE)):
            m.d.comb += err_set[ErrorBit.START_BUSY].eq(1)
        # Abort wins over everything the state machine did this cycle.
        with m.If(abort_req & (state != CoreState.IDLE) & (state != CoreState.FINISH)):
            m.d.sync += [go(CoreState.FINISH), self.macro.drive.eq(0), aborted_q.eq(1)]
            m.d.comb += wv.abort.eq(state == CoreState.PROGRAM)

        # Output beat: neurons out_beat*lanes .. +lanes-1 (inactive ones read as zero).
        payload = self.outputs.payload
        m.d.comb += payload.last.eq(out_beat == out_final)
        with m.Switch(out_beat):
            for b in range(_ceil_div(lines, lanes)):
                with m.Case(b):
                    for k in range(lanes):
                        j = b * lanes + k
                        if j >= lines:
                            continue
                        elem = payload.elems[k]
                        m.d.comb += [
                            elem.count.eq(neurons.count[COUNT_BITS * j : COUNT_BITS * (j + 1)]),
                            elem.sign.eq(neurons.sign[j]),
                            elem.sat.eq(neurons.sat[j]),
                        ]

        busy = state != CoreState.IDLE
        m.d.comb += [
            self.busy.eq(busy),
            self.error.eq(regs.error.any()),
            self.macro.backward.eq(backward),
            regs.busy.eq(busy),
            regs.error_set.eq(
                err_set | (regs.config_busy << ErrorBit.CONFIG_BUSY) | (regs.bad_addr << ErrorBit.BAD_ADDR)
            ),
            regs.status.eq(Cat(busy, done_q, regs.error.any(), aborted_q, Const(0, 4), state)),
            regs.id.eq(regmap["ID"].reset),
            regs.geometry.eq(regmap["GEOMETRY"].reset),
            regs.params.eq(regmap["PARAMS"].reset),
            regs.vectors.eq(vectors),
            regs.last_cycles.eq(last_cycles),
            regs.last_steps.eq(last_steps),
            regs.prog_status.eq(Cat(wv.busy, prog_done_q, unlocked, Const(0, 5), wv.state)),
            self.debug.state.eq(state),
            self.debug.prog_state.eq(wv.state),
            regs.prog_result.eq(Cat(wv.result.outcome, Const(0, 5), wv.result.reading, wv.result.iterations)),
            regs.prog_pulses.eq(Cat(wv.result.set_pulses, wv.result.reset_pulses)),
        ]
        return m

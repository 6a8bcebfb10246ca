"""A synthesisable digital twin of one core's analog macro, exact to the golden model.

The FPGA prototype has no RRAM: :class:`MacroTwin` sits on the other side of
:class:`~cimdv.rtl.core.macro.MacroSignature` and
:class:`~cimdv.rtl.core.macro.ProgramSignature` and behaves as the golden model's exact macro
(``model/exact.py``, ``MacroState``; docs/analog-boundary.md §4) does, bit for bit:

* integer conductance codes ``g[i, j]`` (``g_bits`` wide) in block RAM, one word per row;
* SAMPLE latches ``s_j = Σ_i p_i g[i, j]`` (forward) or ``s_i = Σ_j p_j g[i, j]`` (backward),
  ``p ∈ {−1, 0, +1}`` from ``drive``; INTEGRATE adds the latch to the integrator, so the pulse
  multiplier and both phases accumulate exactly as the controller repeats them;
* INIT clears integrators and latches (CDS); COMPARE answers ``integrator > θ``; DECREMENT
  moves by ±Δ; NOISE adds ±q from the per-neuron 16-bit Galois LFSRs (mask 0xB400, seeds
  ``(noise_seed + 0x9E37·(j + 1)) mod 2**16``, 0 -> 1), which INIT does not touch.

The dot products are computed one row per cycle during the SAMPLE + INTEGRATE window (see
:attr:`MacroTwin.min_sample_integ`); a controller that moves on before the twin is done
raises ``busy_overrun`` instead of receiving a wrong answer silently.

Weights reach the block RAM only through the programming port (no back door): SET raises
the selected cell's code by :func:`program_step` of the pulse amplitude, RESET lowers it by
the same amount (both saturate), READ answers ``g_code = 2·code + 1`` (:func:`g_code_of`): the
reading of code ``w`` is the middle of the 2-code window ``2w <= g_code < 2w + 2``, so the
core's write-verify sequencer, with target ``2w + 1`` and tolerance 1, accepts exactly ``w``.
docs/fpga.md states why it always converges.

The integrators are stored as ``u_j = integrator_j − θ`` so that COMPARE is a sign test;
INIT loads ``−θ``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..common.arith import tree_sum
from ..core.layouts import AMP_BITS, G_CODE_BITS, DriveCode, MacroOp, ProgOp
from ..core.macro import MacroSignature, ProgramSignature
from ..noc.compare import gt_const, lt_const

__all__ = [
    "AMP_SET_THRESHOLD",
    "AMP_STEP_SHIFT",
    "LFSR_MASK",
    "LFSR_SEED_STRIDE",
    "MVM_LATENCY",
    "MIN_T_READ",
    "MacroTwin",
    "g_code_of",
    "lfsr_seed",
    "program_step",
]

#: Amplitude code (20 mV steps) below which a SET or RESET pulse does nothing: 80 = 1.6 V.
AMP_SET_THRESHOLD = 80
#: Above the threshold the step grows by one code every ``2**AMP_STEP_SHIFT`` amplitude codes (0.64 V).
AMP_STEP_SHIFT = 5
#: Galois mask of x^16 + x^14 + x^13 + x^11 + 1 (docs/analog-boundary.md §4).
LFSR_MASK = 0xB400
#: Seed stride of the per-neuron LFSRs (docs/analog-boundary.md §4).
LFSR_SEED_STRIDE = 0x9E37
#: Cycles the dot-product pipeline adds to one row per cycle: read, term register, accumulate.
MVM_LATENCY = 3
#: Shortest READ the twin answers in time (the block RAM reads synchronously).
MIN_T_READ = 2


def program_step(amp):
    """Codes one SET (up) or RESET (down) pulse of amplitude ``amp`` moves a cell.

    ``0`` below :data:`AMP_SET_THRESHOLD` (1.6 V), then ``1 + (amp − 80) // 32``: 1 up to
    2.22 V, 2 up to 2.86 V, 3 up to 3.5 V, at most 6. The twin's hardware implements exactly
    this function.

    Parameters
    ----------
    amp : int
        Amplitude code, 0..255 (20 mV steps).

    Returns
    -------
    int
    """
    if not isinstance(amp, int) or not 0 <= amp < (1 << AMP_BITS):
        raise ValueError(f"amp must be an integer 0..{(1 << AMP_BITS) - 1}, not {amp!r}")
    return 0 if amp < AMP_SET_THRESHOLD else 1 + ((amp - AMP_SET_THRESHOLD) >> AMP_STEP_SHIFT)


def g_code_of(code):
    """The verify reading of a cell holding ``code``: ``2·code + 1``.

    With ``PROG_TARGET.target = 2w + 1`` and ``tol = 1`` the core's write-verify window
    ``target − tol <= g_code < target + tol`` holds exactly one reading, that of code ``w``.
    """
    return 2 * code + 1


def lfsr_seed(noise_seed, j):
    """Initial LFSR state of neuron ``j`` (the golden model's ``lfsr_seeds``, restated)."""
    s = (noise_seed + LFSR_SEED_STRIDE * (j + 1)) % (1 << 16)
    return s or 1


def _check_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be {lo}..{hi}, not {value}")
    return value


class MacroTwin(wiring.Component):
    """Digital twin of one core's analog macro: the exact golden model, in block RAM and logic.

    Parameters
    ----------
    rows, cols : int
        Crossbar geometry (1..256 rows, 1..64 columns: one row of codes is one RAM word).
    g_bits : int
        Bits of a conductance code, 1..7 (codes 0 .. ``2**g_bits − 1``; the reading
        ``2·code + 1`` must fit the 8-bit ``g_code``).
    integ_bits : int
        Width of each integrator (signed), 8..48. ``overflow`` flags any operation whose
        result does not fit.
    param_bits : int
        Width of the ``delta``, ``threshold`` and ``noise_q`` inputs, 2..32.
    noise_seed : int
        The 16-bit seed of the per-neuron LFSRs (``MacroParams.noise_seed``); the LFSRs are
        loaded at reset.

    Members
    -------
    macro : :py:`In(MacroSignature(lines=max(rows, cols)))`
        The analog boundary, macro side: consumes ``op``, ``backward``, ``drive``,
        ``dec_up``; produces ``cmp``.
    prog : :py:`In(ProgramSignature(rows=rows, cols=cols))`
        The programming port, macro side: consumes ``op``, ``row``, ``col``, ``amp``;
        produces ``g_code`` = ``2·code + 1`` of the selected cell.
    delta : :py:`In(unsigned(param_bits))`
        Decrement quantum Δ (``MacroParams.delta``, >= 1).
    threshold : :py:`In(signed(param_bits))`
        Comparator threshold θ; sampled by INIT (the integrators hold ``integrator − θ``).
    noise_q : :py:`In(unsigned(param_bits))`
        Charge of one NOISE pulse.
    busy : :py:`Out(1)`
        The twin is computing a SAMPLE, has an INTEGRATE pending, or is in a programming
        operation.
    busy_overrun : :py:`Out(1)`
        Sticky: an operation started while the twin was still busy (a SAMPLE + INTEGRATE
        window shorter than :attr:`min_sample_integ`, a READ shorter than
        :data:`MIN_T_READ`, or macro and programming operations overlapping). The results
        from then on are not the golden model's.
    drive_error : :py:`Out(1)`
        Sticky: a SAMPLE drove the code ``0b11``, or a non-zero code on a line that does not
        exist in the current direction (the golden model refuses both).
    overflow : :py:`Out(1)`
        Sticky: an integrator left the ``integ_bits`` range (set on the cycle after the
        operation that did it).
    clear : :py:`In(1)`
        Clears the sticky flags.

    Timing
    ------
    Every operation acts on the change of ``op`` (docs/analog-boundary.md §2). A SAMPLE
    latches ``drive`` and ``backward`` on its first cycle and then reads one row of codes
    per cycle: its dot products are ready ``rows + 2`` cycles later, and the INTEGRATE adds
    them on the first INTEGRATE cycle at which they are ready, so the controller's
    ``T_SAMPLE + T_INTEG`` must be at least :attr:`min_sample_integ` = ``rows + 3``.
    ``cmp`` is combinational from the integrators: valid on every cycle of a COMPARE,
    including a 1-cycle one right after a DECREMENT. INIT, DECREMENT and NOISE take one cycle.
    Programming: SET/RESET read-modify-write the cell in the two cycles from the start of
    the pulse (``T_PULSE`` >= 1); READ presents ``g_code`` from its second cycle on
    (``T_READ`` >= :data:`MIN_T_READ`) and holds it until the next READ.
    """

    def __init__(self, *, rows, cols, g_bits=4, integ_bits=24, param_bits=16, noise_seed=1):
        self.rows = _check_int("rows", rows, 1, 256)
        self.cols = _check_int("cols", cols, 1, 64)
        self.g_bits = _check_int("g_bits", g_bits, 1, G_CODE_BITS - 1)
        self.integ_bits = _check_int("integ_bits", integ_bits, 8, 48)
        self.param_bits = _check_int("param_bits", param_bits, 2, 32)
        self.noise_seed = _check_int("noise_seed", noise_seed, 0, 0xFFFF)
        self.lines = max(rows, cols)
        #: Width of a sample latch: the largest |Σ p g| of a line, signed.
        self.sample_bits = (self.lines * ((1 << g_bits) - 1)).bit_length() + 1
        if integ_bits < max(self.sample_bits, param_bits) + 1:
            raise ValueError(
                f"integ_bits must be at least {max(self.sample_bits, param_bits) + 1} for this geometry "
                f"and param_bits, not {integ_bits}"
            )
        super().__init__(
            {
                "macro": In(MacroSignature(lines=self.lines)),
                "prog": In(ProgramSignature(rows=rows, cols=cols)),
                "delta": In(unsigned(param_bits)),
                "threshold": In(signed(param_bits)),
                "noise_q": In(unsigned(param_bits)),
                "busy": Out(1),
                "busy_overrun": Out(1),
                "drive_error": Out(1),
                "overflow": Out(1),
                "clear": In(1),
            }
        )
        #: The integrators minus θ, one per neuron, with one guard bit (a view for testbenches; not ports).
        self.u = [Signal(signed(integ_bits + 1), name=f"u{j}") for j in range(self.lines)]

    @property
    def min_sample_integ(self):
        """int: The smallest ``T_SAMPLE + T_INTEG`` (cycles) at which the twin is exact: ``rows + 3``."""
        return self.rows + MVM_LATENCY

    def elaborate(self, platform):
        m = Module()
        rows, cols, lines, gb = self.rows, self.cols, self.lines, self.g_bits
        sw, iw = self.sample_bits, self.integ_bits
        bus, prog = self.macro, self.prog
        gmax = (1 << gb) - 1

        # ---- the conductance codes: one RAM word per row, one g_bits lane per column --------
        # A programming write happens while no MVM runs (else `busy_overrun`) and the read of
        # that cycle is never used, so no read-write collision logic is needed (`no_rw_check`).
        m.submodules.codes = codes = Memory(shape=unsigned(cols * gb), depth=rows, init=[], attrs={"no_rw_check": 1})
        rd = codes.read_port()
        wr = codes.write_port(granularity=gb)

        # ---- operation starts: the contract says every operation begins with a change of op --
        op_q = Signal(MacroOp)
        m.d.sync += op_q.eq(bus.op)
        starts = bus.op != op_q

        def start(op):
            return starts & (bus.op == op)

        pop_q = Signal(ProgOp)
        m.d.sync += pop_q.eq(prog.op)
        pstart = (prog.op != pop_q) & (prog.op != ProgOp.IDLE)

        # ---- SAMPLE: one row per cycle through a 3-stage pipeline -----------------------------
        # stage 0: address `row` issued (the start cycle issues row 0)
        # stage 1: the row's word arrives; terms p * g are formed and registered
        # stage 2: forward, s_j += term_j; backward, s_row = Σ_j term_j
        pcode = Signal(2 * lines)  # drive latched at the start of the SAMPLE
        back = Signal()  # direction latched at the start of the SAMPLE
        issuing = Signal()
        next_row = Signal(range(rows + 1))
        v1, row1 = Signal(), Signal(range(rows))
        v2, row2 = Signal(), Signal(range(rows))
        terms = [Signal(signed(gb + 1), name=f"term{j}") for j in range(cols)]
        s = [Signal(signed(sw), name=f"s{j}") for j in range(lines)]
        computing = issuing | v1 | v2

        sample_start = start(MacroOp.SAMPLE)
        do_init = start(MacroOp.INIT)
        m.d.sync += [v1.eq(0), v2.eq(v1), row2.eq(row1)]
        with m.If(do_init):  # INIT abandons any computation in flight (after an abort)
            m.d.sync += [issuing.eq(0), v2.eq(0)]
        with m.Elif(sample_start):
            m.d.sync += [pcode.eq(bus.drive), back.eq(bus.backward), v1.eq(1), row1.eq(0)]
            m.d.sync += [x.eq(0) for x in s]
            m.d.sync += [issuing.eq(rows > 1), next_row.eq(1)]
        with m.Elif(issuing):
            m.d.sync += [v1.eq(1), row1.eq(next_row), next_row.eq(next_row + 1)]
            with m.If(next_row == rows - 1):
                m.d.sync += issuing.eq(0)

        def signed_drive(code):
            """{−1, 0, +1} of a 2-bit drive code (0b11 reads as 0 and is flagged)."""
            return Mux(code == DriveCode.POS.value, 1, Mux(code == DriveCode.NEG.value, -1, 0))

        # Drive legality, checked on the SAMPLE's first cycle from the bus itself.
        n_in_mask = Signal(lines)
        for i in range(lines):
            m.d.comb += n_in_mask[i].eq(Mux(bus.backward, i < cols, i < rows))
        bad_drive = Signal()
        m.d.comb += bad_drive.eq(
            Cat(
                (bus.drive[2 * i : 2 * i + 2] == 0b11) | ((bus.drive[2 * i : 2 * i + 2] != 0) & ~n_in_mask[i])
                for i in range(lines)
            ).any()
        )

        # Stage 1: terms. Forward: p(row) * g[row, j]; backward: p(j) * g[row, j].
        p_row = Signal(2)
        m.d.comb += p_row.eq(pcode.word_select(row1, 2))
        for j in range(cols):
            g = rd.data[j * gb : (j + 1) * gb]
            code = Mux(back, pcode[2 * j : 2 * j + 2], p_row)
            p = Signal(signed(2), name=f"p{j}")
            m.d.comb += p.eq(signed_drive(code))
            m.d.sync += terms[j].eq(Mux(p == 1, g, Mux(p == -1, -g, 0)))

        # Stage 2: accumulate.
        with m.If(v2):
            with m.If(~back):
                for j in range(cols):
                    m.d.sync += s[j].eq(s[j] + terms[j])
            with m.Else():
                total = tree_sum(terms)
                with m.Switch(row2):
                    for i in range(rows):
                        with m.Case(i):
                            m.d.sync += s[i].eq(total)

        # ---- the integrators ----------------------------------------------------------------
        u = self.u
        pending = Signal()  # an INTEGRATE waits for its dot products
        integ_req = start(MacroOp.INTEGRATE) | pending
        do_integ = integ_req & ~computing
        with m.If(do_integ | do_init):
            m.d.sync += pending.eq(0)
        with m.Elif(start(MacroOp.INTEGRATE)):
            m.d.sync += pending.eq(1)

        lfsr = [Signal(16, init=lfsr_seed(self.noise_seed, j), name=f"lfsr{j}") for j in range(lines)]
        do_dec = start(MacroOp.DECREMENT)
        do_noise = start(MacroOp.NOISE)
        with m.If(do_init):
            m.d.sync += [x.eq(0) for x in s]
        # Each integrator carries one guard bit: no single operation can wrap it, so an
        # overflow is seen, one cycle later, as a guard bit that differs from the sign bit.
        overflow_any = []
        for j in range(lines):
            addend = Signal(signed(max(sw, self.param_bits + 1)), name=f"addend{j}")
            with m.If(do_integ):
                m.d.comb += addend.eq(s[j])
            with m.Elif(do_dec):
                m.d.comb += addend.eq(Mux(bus.dec_up[j], self.delta, -self.delta))
            with m.Elif(do_noise):
                m.d.comb += addend.eq(Mux(lfsr[j][0], self.noise_q, -self.noise_q))
            with m.If(do_init):
                m.d.sync += u[j].eq(-self.threshold)
            with m.Elif(do_integ | do_dec | do_noise):
                m.d.sync += u[j].eq(u[j] + addend)
            overflow_any.append(u[j][iw] != u[j][iw - 1])
            with m.If(do_noise):
                m.d.sync += lfsr[j].eq((lfsr[j] >> 1) ^ Mux(lfsr[j][0], LFSR_MASK, 0))

        # COMPARE: integrator > θ  <=>  u > 0, for the neurons of the current direction.
        for j in range(lines):
            exists = Mux(bus.backward, j < rows, j < cols)
            m.d.comb += bus.cmp[j].eq(exists & ~u[j][iw] & u[j].any())

        # ---- the programming port: read-modify-write of one cell ---------------------------
        prow, pcol = Signal(range(rows)), Signal(range(cols))
        pop, pamp = Signal(ProgOp), Signal(AMP_BITS)
        pv1 = Signal()  # the selected row's word arrives this cycle
        g_code_q = Signal(G_CODE_BITS)
        m.d.sync += pv1.eq(pstart)
        with m.If(pstart):
            m.d.sync += [prow.eq(prog.row), pcol.eq(prog.col), pop.eq(prog.op), pamp.eq(prog.amp)]

        # The read port serves the programming port on its start cycle, the MVM otherwise.
        m.d.comb += rd.addr.eq(Mux(pstart, prog.row, Mux(sample_start, 0, next_row)))

        cell = Signal(gb)
        m.d.comb += cell.eq(rd.data.word_select(pcol, gb))
        step = Signal(range(8))
        m.d.comb += step.eq(
            Mux(lt_const(pamp, AMP_SET_THRESHOLD), 0, 1 + ((pamp - AMP_SET_THRESHOLD) >> AMP_STEP_SHIFT)[:3])
        )
        up = Signal(gb + 1)
        down = Signal(signed(gb + 2))
        m.d.comb += [up.eq(cell + step), down.eq(cell - step)]
        new = Signal(gb)
        m.d.comb += new.eq(Mux(pop == ProgOp.SET, Mux(gt_const(up, gmax), gmax, up), Mux(down[-1], 0, down)))
        with m.If(pv1 & ((pop == ProgOp.SET) | (pop == ProgOp.RESET))):
            m.d.comb += [
                wr.addr.eq(prow),
                wr.data.eq(Cat(new for _ in range(cols))),
                wr.en.eq(Const(1, cols) << pcol),
            ]
        read_now = pv1 & (pop == ProgOp.READ)
        reading = Cat(Const(1, 1), cell)  # 2·code + 1
        with m.If(read_now):
            m.d.sync += g_code_q.eq(reading)
        m.d.comb += prog.g_code.eq(Mux(read_now, reading, g_code_q))

        # ---- status and errors ----------------------------------------------------------------
        busy = computing | pending | pv1
        m.d.comb += self.busy.eq(busy)
        # Overruns: an operation that needs the twin's state (or its RAM port) while the twin
        # is still busy with an earlier one. INIT is never one: it abandons the computation.
        mvm_busy = computing | pending
        needs_state = starts & (bus.op != MacroOp.IDLE) & (bus.op != MacroOp.INIT)
        integrate_after_sample = start(MacroOp.INTEGRATE) & (op_q == MacroOp.SAMPLE) & ~pending
        short_read = pv1 & (pop == ProgOp.READ) & (prog.op != ProgOp.READ)
        overrun = Signal()
        m.d.comb += overrun.eq(
            (needs_state & mvm_busy & ~integrate_after_sample)
            | (needs_state & pv1)
            | (pstart & (mvm_busy | pv1))
            | short_read
        )
        with m.If(self.clear):
            m.d.sync += [self.busy_overrun.eq(0), self.drive_error.eq(0), self.overflow.eq(0)]
        with m.If(overrun):
            m.d.sync += self.busy_overrun.eq(1)
        with m.If(sample_start & bad_drive):
            m.d.sync += self.drive_error.eq(1)
        with m.If(Cat(overflow_any).any()):
            m.d.sync += self.overflow.eq(1)
        return m

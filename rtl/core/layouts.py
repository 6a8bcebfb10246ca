"""Payload layouts and enumerations of the core, defined once.

The testbench packs and unpacks stream beats with these very layouts
(``Layout.const(...)`` / ``Layout.from_bits``), so the RTL and the bench cannot drift.

Ref: docs/analog-boundary.md (macro operations) and docs/register-map.md (streams).
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

__all__ = [
    "INPUT_ELEM",
    "MAX_IN_BITS",
    "MAX_OUT_BITS",
    "COUNT_BITS",
    "MacroOp",
    "ProgOp",
    "G_CODE_BITS",
    "AMP_BITS",
    "PROG_COUNT_BITS",
    "ProgOutcome",
    "ProgState",
    "ProgSettings",
    "ProgResult",
    "CoreState",
    "LineMode",
    "DriveCode",
    "OutputElem",
    "input_beat_layout",
    "output_beat_layout",
]

#: Widest input the encoder accepts (magnitude bits of an unsigned input).
MAX_IN_BITS = 8
#: Widest output (sign + magnitude) the converter produces.
MAX_OUT_BITS = 8
#: Width of the per-neuron count field (magnitude of an 8-bit sign + magnitude output).
COUNT_BITS = MAX_OUT_BITS - 1

#: One input element: a two's-complement integer wide enough for an 8-bit unsigned input
#: (0..255) and an 8-bit sign-magnitude input (-127..127). The configured width and
#: signedness define the legal range; the core flags anything outside it.
INPUT_ELEM = signed(MAX_IN_BITS + 1)


class MacroOp(enum.Enum, shape=3):
    """Operation the controller asks of the analog macro (held for its configured cycles)."""

    #: Nothing happens; lines at the reference level.
    IDLE = 0
    #: Initialise: precharge lines and sample capacitors, discharge the integrators (CDS).
    INIT = 1
    #: Drive the lines with ``drive`` (word lines on) and sample the settled output lines.
    SAMPLE = 2
    #: Move the sampled charge onto each neuron's integrator.
    INTEGRATE = 3
    #: Compare every integrator with the threshold; the macro answers on ``cmp``.
    COMPARE = 4
    #: Move every integrator one charge quantum towards zero (direction from ``dec_up``).
    DECREMENT = 5
    #: Inject one pseudo-random noise charge into every integrator (stochastic neurons).
    NOISE = 6


class ProgOp(enum.Enum, shape=2):
    """Operation the write-verify sequencer asks of the macro's programming port."""

    #: Nothing; the selected cell is not biased.
    IDLE = 0
    #: One SET pulse (conductance up) on cell (``row``, ``col``) at amplitude ``amp``.
    SET = 1
    #: One RESET pulse (conductance down) on cell (``row``, ``col``) at amplitude ``amp``.
    RESET = 2
    #: Verify read of cell (``row``, ``col``): the macro answers on ``g_code``.
    READ = 3


#: Width of a verify reading: the cell's conductance in steps of 0.25 µS (0 .. 63.75 µS).
G_CODE_BITS = 8
#: Width of a pulse amplitude code: the pulse voltage in steps of 20 mV (0 .. 5.1 V).
AMP_BITS = 8
#: Width of the write-verify operation budget and of its pulse and iteration counters.
PROG_COUNT_BITS = 16


class ProgOutcome(enum.Enum, shape=3):
    """Result of one write-verify command (``PROG_RESULT.outcome``; docs/architecture.md)."""

    #: The verify reading was in the window, and so was the confirming re-read.
    PASS = 0
    #: Failed (pulse or iteration limit) with the last reading below the target.
    FAIL_LOW = 1
    #: Failed (pulse or iteration limit) with the last reading at or above the target.
    FAIL_HIGH = 2
    #: The operation budget (``PROG_LIMITS.max_ops``) ran out before the cell was decided.
    TIMEOUT = 3
    #: Ended by ``CTRL.abort``.
    ABORTED = 4
    #: No command has completed since reset (reset value).
    NONE = 5


class ProgState(enum.Enum, shape=4):
    """States of the write-verify sequencer (``PROG_STATUS.state``; docs/architecture.md)."""

    IDLE = 0
    #: One IDLE cycle on the port, then a READ (or TIMEOUT when the budget is spent).
    ISSUE_READ = 1
    READ = 2
    #: A SET or RESET pulse.
    PULSE = 3
    #: RESET loop: pulse while the reading is above the window.
    RESET_DECIDE = 4
    #: SET loop: pulse while the reading is below the window.
    SET_DECIDE = 5
    #: End of an outer iteration: confirm a reading in the window, else check the limits.
    ITER_END = 6
    #: After the confirming re-read: PASS when still in the window.
    CONFIRM = 7
    #: Fail (limits reached) or restart the outer iteration.
    FAIL_CHECK = 8
    #: Last busy cycle: ``done`` pulses.
    DONE = 9


class ProgSettings(data.Struct):
    """Settings of one write-verify command, in the integer codes of the programming port.

    The register fields of ``PROG_TARGET``, ``PROG_SET``, ``PROG_RESET``, ``PROG_LIMITS``,
    ``T_PULSE`` and ``T_READ`` (docs/register-map.md) feed these members one to one.
    """

    #: Target conductance code (0.25 µS steps).
    target: unsigned(G_CODE_BITS)
    #: Tolerance code: the window is ``target - tol <= reading < target + tol``.
    tol: unsigned(G_CODE_BITS)
    #: SET amplitude ramp: first pulse of a SET loop, last (end) amplitude, increment (20 mV codes).
    set_start: unsigned(AMP_BITS)
    set_end: unsigned(AMP_BITS)
    set_step: unsigned(AMP_BITS)
    #: RESET amplitude ramp, same rule.
    reset_start: unsigned(AMP_BITS)
    reset_end: unsigned(AMP_BITS)
    reset_step: unsigned(AMP_BITS)
    #: Pulses at the end amplitude after which a SET or RESET loop stops (>= 1).
    pulse_limit: unsigned(8)
    #: The cell fails when an unsuccessful outer iteration leaves the count above it.
    iter_limit: unsigned(8)
    #: Most operations (pulses + reads) of one command before it ends with TIMEOUT (>= 1).
    max_ops: unsigned(PROG_COUNT_BITS)
    #: Cycles of each SET/RESET pulse and of each READ (>= 1).
    t_pulse: unsigned(16)
    t_read: unsigned(16)


class ProgResult(data.Struct):
    """Result of the latest write-verify command (``PROG_RESULT`` and ``PROG_PULSES``)."""

    outcome: ProgOutcome
    #: The last verify reading (G code).
    reading: unsigned(G_CODE_BITS)
    #: Outer iterations completed.
    iterations: unsigned(PROG_COUNT_BITS)
    set_pulses: unsigned(PROG_COUNT_BITS)
    reset_pulses: unsigned(PROG_COUNT_BITS)


class DriveCode(enum.Enum, shape=2):
    """Drive of one line during SAMPLE (NeuRRAM's 2-bit register code)."""

    #: Line at the reference level; in the forward direction its word line is off.
    ZERO = 0b00
    #: Line driven to VREF - vneg.
    NEG = 0b01
    #: Line driven to VREF + vpos.
    POS = 0b10


class LineMode(enum.Enum, shape=2):
    """Per-input-line configuration (``LINE_MODE`` registers)."""

    #: Unused line (padding): disconnected forward, driven with alternating signs backward.
    OFF = 0
    #: Drive the encoded input.
    POS = 1
    #: Drive the negated phase codes of the encoded input (second row of a differential pair).
    NEG = 2
    #: Reserved; starting with it configured is an error (``ERROR.LINE_MODE``).
    RESERVED = 3


class OutputElem(data.Struct):
    """Result of one neuron.

    A masked-out neuron reports all zeros. ``count`` never exceeds ``MAX_COUNT``.
    """

    #: Number of decrements until the comparator flipped (1..MAX_COUNT), or MAX_COUNT when saturated.
    count: unsigned(COUNT_BITS)
    #: Initial sign: 1 = negative (integrator not above the threshold at the sign compare).
    sign: 1
    #: Saturated: the comparator never flipped within MAX_COUNT decrements.
    sat: 1


def input_beat_layout(lanes):
    """Layout of one input-stream beat: ``lanes`` elements and an end-of-vector flag.

    Element ``k`` of beat ``b`` is input line ``b * lanes + k``; elements past the last line
    of the vector are ignored.
    """
    return data.StructLayout({"elems": data.ArrayLayout(INPUT_ELEM, lanes), "last": 1})


def output_beat_layout(lanes):
    """Layout of one output-stream beat: ``lanes`` :class:`OutputElem` and ``last``.

    Element ``k`` of beat ``b`` is neuron ``b * lanes + k``; elements past the last neuron
    read as zero.
    """
    return data.StructLayout({"elems": data.ArrayLayout(OutputElem, lanes), "last": 1})


class CoreState(enum.Enum, shape=4):
    """States of the core controller (``STATUS.state``; see docs/architecture.md)."""

    IDLE = 0
    LOAD = 1
    DRAIN = 2
    INIT = 3
    SAMPLE = 4
    INTEGRATE = 5
    NOISE = 6
    NOISE_GAP = 7
    SIGN_COMPARE = 8
    DECREMENT = 9
    STEP_COMPARE = 10
    OUTPUT = 11
    FINISH = 12
    #: A write-verify command is running (``WriteVerify`` drives the programming port).
    PROGRAM = 13

"""Register map of one CIM core, as data.

This is the single source of the map: :class:`~cimdv.rtl.core.core.CimCore` builds its
registers from it, the testbench's CSR driver addresses registers and fields by name
through it, and ``docs/register-map.md`` is generated from it (a test keeps the two equal).

All registers are 32 bits wide and word addressed. Access types:

``rw``   read/write configuration. Writes while the core is busy are refused and flag
         ``ERROR.CONFIG_BUSY``; the register keeps its value.
``ro``   read only; writes are ignored (not an error).
``w1c``  read; writing 1 to a bit clears it.
``wo``   write-only command bits; read as 0.
"""

from dataclasses import dataclass

from .layouts import COUNT_BITS, ProgOutcome

__all__ = ["Field", "Register", "RegisterMap", "ErrorBit", "register_map", "CORE_ID", "PROG_KEY", "PROG_TIMING"]

#: Value of the ``ID`` register ("CIM" core, map version 1).
CORE_ID = 0xC1A0_0001
#: The value that unlocks cell programming when written to ``PROG_KEY`` ("safe code").
PROG_KEY = 0x5AFE_C0DE


@dataclass(frozen=True)
class Field:
    """One field of a register."""

    name: str
    offset: int
    width: int
    reset: int = 0
    doc: str = ""

    @property
    def mask(self):
        return ((1 << self.width) - 1) << self.offset


@dataclass(frozen=True)
class Register:
    """One 32-bit register."""

    name: str
    addr: int
    access: str
    fields: tuple
    doc: str = ""

    def field(self, name):
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}")

    @property
    def reset(self):
        value = 0
        for f in self.fields:
            value |= f.reset << f.offset
        return value


class ErrorBit:
    """Bit positions of the ``ERROR`` register (sticky, write 1 to clear)."""

    #: START with IN_BITS 0 or > 8, or signed with IN_BITS < 2.
    IN_BITS = 0
    #: START with OUT_BITS 0 or > 8.
    OUT_BITS = 1
    #: START with PULSE_MULT 0.
    PULSE_MULT = 2
    #: START with PULSE_MULT * 2**(magnitude bits - 1) above the pulse counter's range.
    PULSE_OVF = 3
    #: START with MAX_COUNT above 2**(OUT_BITS - 1) - 1.
    MAX_COUNT = 4
    #: START with a timing field (T_*) or WATCHDOG equal to 0.
    TIMING = 5
    #: START with BATCH equal to 0.
    BATCH = 6
    #: START with a line in LineMode.RESERVED among the driven lines.
    LINE_MODE = 7
    #: START (CSR or port) or PROG_CTRL.start while a run or a write-verify command is in
    #: progress, or while ERROR is non-zero.
    START_BUSY = 8
    #: Configuration write while busy (refused; register unchanged).
    CONFIG_BUSY = 9
    #: An input element outside the configured range (vector refused, run ends).
    INPUT_RANGE = 10
    #: ``last`` on the wrong beat of an input vector (vector refused, run ends).
    INPUT_LENGTH = 11
    #: Watchdog expired waiting for input beats.
    TIMEOUT_IN = 12
    #: Watchdog expired waiting for the output stream to accept a beat.
    TIMEOUT_OUT = 13
    #: CSR access to an unmapped address (write ignored, read returns 0).
    BAD_ADDR = 14
    #: PROG_CTRL.start while programming is locked (PROG_KEY not written with the key).
    PROG_LOCKED = 15
    #: PROG_CTRL.start with PROG_CELL outside the array (row >= rows or col >= cols).
    PROG_CELL = 16
    #: PROG_CTRL.start with an illegal write-verify setting (step 0, start > end, a zero limit or time).
    PROG_SETTING = 17

    #: Errors that a START checks and refuses on.
    CONFIG = (IN_BITS, OUT_BITS, PULSE_MULT, PULSE_OVF, MAX_COUNT, TIMING, BATCH, LINE_MODE)

    @classmethod
    def names(cls):
        return {name: value for name, value in vars(cls).items() if name.isupper() and isinstance(value, int)}


class RegisterMap:
    """The registers of one core geometry, by name and by address."""

    def __init__(self, registers):
        self.registers = tuple(registers)
        self.by_name = {r.name: r for r in self.registers}
        self.by_addr = {r.addr: r for r in self.registers}
        if len(self.by_name) != len(self.registers) or len(self.by_addr) != len(self.registers):
            raise ValueError("register names and addresses must be unique")

    def __getitem__(self, name):
        return self.by_name[name]

    def __iter__(self):
        return iter(self.registers)

    def array(self, prefix):
        """The registers ``<prefix>0``, ``<prefix>1``, ... in index order."""
        regs = []
        while f"{prefix}{len(regs)}" in self.by_name:
            regs.append(self.by_name[f"{prefix}{len(regs)}"])
        return regs


# Addresses of the fixed registers, and bases of the per-line arrays.
_LINE_MODE_BASE = 0x40
_OUT_MASK_BASE = 0x80
#: Lines per LINE_MODE word (2 bits each) and neurons per OUT_MASK word.
LINES_PER_WORD = 16
NEURONS_PER_WORD = 32

# NeuRRAM's phase timings at a 100 MHz controller clock (neurram-chip.md §2.4):
# t_sample = 2 -> 3 cycles; t_integ = 63 -> 8*63+1 = 505; t_comp = 2 -> 17; t_reset = 0 -> 1.
NEURRAM_TIMING = {"T_INIT": 25, "T_SAMPLE": 3, "T_INTEG": 505, "T_COMPARE": 17, "T_DECR": 1, "T_NOISE": 1}
# Write-verify timing at 100 MHz: the chip's 1 µs programming pulse (neurram-chip.md §4.3), and a
# verify read of 10 µs (an assumption: the chip's averaged auto-range reads take far longer).
PROG_TIMING = {"T_PULSE": 100, "T_READ": 1000}


def register_map(*, rows, cols, pulse_bits=8):
    """Build the register map of a core with ``rows`` x ``cols`` cells."""
    lines = max(rows, cols)
    regs = [
        Register("ID", 0x00, "ro", (Field("id", 0, 32, CORE_ID, "Core identification and map version."),)),
        Register(
            "GEOMETRY",
            0x01,
            "ro",
            (
                Field("rows", 0, 16, rows, "Rows of the crossbar (lines driven in the forward direction)."),
                Field("cols", 16, 16, cols, "Columns of the crossbar (lines driven backward)."),
            ),
            "Elaboration parameters, so software can discover the core it talks to.",
        ),
        Register(
            "CTRL",
            0x02,
            "wo",
            (
                Field("start", 0, 1, 0, "Write 1: start a run of BATCH vectors (same as a pulse on the start port)."),
                Field(
                    "abort",
                    1,
                    1,
                    0,
                    "Write 1: abandon the run or write-verify command at once; the macro returns to IDLE, DONE is set.",
                ),
            ),
        ),
        Register(
            "STATUS",
            0x03,
            "ro",
            (
                Field("busy", 0, 1, 0, "A run or a write-verify command is in progress."),
                Field(
                    "done",
                    1,
                    1,
                    0,
                    "Sticky: a run or command has ended (normally, by abort or by error). Cleared by a new start.",
                ),
                Field("error", 2, 1, 0, "ERROR is non-zero."),
                Field(
                    "aborted",
                    3,
                    1,
                    0,
                    "Sticky: the last run or command ended by CTRL.abort. Cleared by a new start.",
                ),
                Field("state", 8, 4, 0, "Controller state (diagnostic; see docs/architecture.md)."),
            ),
        ),
        Register(
            "ERROR",
            0x04,
            "w1c",
            tuple(
                Field(name.lower(), bit, 1, 0, "")
                for name, bit in sorted(ErrorBit.names().items(), key=lambda kv: kv[1])
            ),
            "Sticky error flags (see ErrorBit). A START is refused while any bit is set.",
        ),
        Register(
            "MODE",
            0x05,
            "rw",
            (
                Field("backward", 0, 1, 0, "0: forward MVM (rows driven, columns sensed); 1: backward (transposed)."),
                Field("signed", 1, 1, 1, "Inputs are sign-magnitude (1) or unsigned (0)."),
                Field("in_bits", 4, 4, 4, "Input width: 1..8 (signed: 2..8, one of them the sign)."),
                Field("out_bits", 8, 4, 8, "Output width, sign + magnitude: 1..8."),
                Field("pulse_mult", 16, 8, 1, "Pulse multiplier M >= 1: bit b is sampled M*2**b times per phase."),
            ),
        ),
        Register(
            "MAX_COUNT",
            0x06,
            "rw",
            (
                Field(
                    "max_count",
                    0,
                    COUNT_BITS,
                    127,
                    "Decrement steps before a neuron is saturated: 0..2**(OUT_BITS-1)-1 (0 = sign only).",
                ),
            ),
        ),
        Register("BATCH", 0x07, "rw", (Field("batch", 0, 16, 1, "Vectors per run (>= 1)."),)),
    ]
    timing_doc = {
        "T_INIT": "Cycles of INIT (CDS) per vector.",
        "T_SAMPLE": "Cycles of each SAMPLE (lines driven and settling).",
        "T_INTEG": "Cycles of each INTEGRATE.",
        "T_COMPARE": "Cycles of each COMPARE; cmp is sampled on its last cycle.",
        "T_DECR": "Cycles of each DECREMENT.",
        "T_NOISE": "Cycles of each NOISE pulse.",
    }
    for i, name in enumerate(timing_doc):
        regs.append(
            Register(name, 0x08 + i, "rw", (Field(name.lower(), 0, 16, NEURRAM_TIMING[name], timing_doc[name]),))
        )
    regs += [
        Register(
            "NOISE_PULSES",
            0x0E,
            "rw",
            (Field("noise_pulses", 0, 8, 0, "NOISE pulses between integration and the sign compare (0 = none)."),),
        ),
        Register(
            "WATCHDOG",
            0x0F,
            "rw",
            (Field("watchdog", 0, 32, 1 << 20, "Cycles any wait on the host streams may last before TIMEOUT_IN/OUT."),),
        ),
        Register("VECTORS", 0x10, "ro", (Field("vectors", 0, 32, 0, "Vectors completed since reset (wraps)."),)),
        Register(
            "LAST_CYCLES",
            0x11,
            "ro",
            (Field("cycles", 0, 32, 0, "Cycles from INIT to the last output beat of the latest vector."),),
        ),
        Register("LAST_STEPS", 0x12, "ro", (Field("steps", 0, 8, 0, "Decrement steps the latest conversion took."),)),
        Register(
            "PARAMS",
            0x13,
            "ro",
            (Field("pulse_bits", 0, 8, pulse_bits, "Width of the per-phase pulse counter."),),
        ),
    ]
    regs += _program_registers()
    for w in range((lines + LINES_PER_WORD - 1) // LINES_PER_WORD):
        n = min(LINES_PER_WORD, lines - w * LINES_PER_WORD)
        regs.append(
            Register(
                f"LINE_MODE{w}",
                _LINE_MODE_BASE + w,
                "rw",
                tuple(Field(f"line{w * LINES_PER_WORD + k}", 2 * k, 2, 1, "") for k in range(n)),
                f"LineMode of driven lines {w * LINES_PER_WORD}..{w * LINES_PER_WORD + n - 1} (2 bits each).",
            )
        )
    for w in range((lines + NEURONS_PER_WORD - 1) // NEURONS_PER_WORD):
        n = min(NEURONS_PER_WORD, lines - w * NEURONS_PER_WORD)
        regs.append(
            Register(
                f"OUT_MASK{w}",
                _OUT_MASK_BASE + w,
                "rw",
                (Field("mask", 0, n, (1 << n) - 1, f"1 = convert neuron {w * NEURONS_PER_WORD}+bit; 0 = ignore it."),),
                f"Output mask of neurons {w * NEURONS_PER_WORD}..{w * NEURONS_PER_WORD + n - 1} (reset: all on).",
            )
        )
    return RegisterMap(regs)


def _program_registers():
    """The write-verify registers (0x14..0x1F): key, command, settings, results."""
    amp = "amplitude code (20 mV steps)"
    return [
        Register(
            "PROG_KEY",
            0x14,
            "wo",
            (
                Field(
                    "key",
                    0,
                    32,
                    0,
                    f"Write 0x{PROG_KEY:08X} to unlock cell programming; writing any other value locks it.",
                ),
            ),
        ),
        Register(
            "PROG_CTRL",
            0x15,
            "wo",
            (Field("start", 0, 1, 0, "Write 1: program cell PROG_CELL with the PROG_* settings (one cell)."),),
        ),
        Register(
            "PROG_STATUS",
            0x16,
            "ro",
            (
                Field("busy", 0, 1, 0, "A write-verify command is in progress."),
                Field("done", 1, 1, 0, "Sticky: a command has ended. Cleared by an accepted PROG_CTRL.start."),
                Field("unlocked", 2, 1, 0, "PROG_KEY holds the key: PROG_CTRL.start is allowed."),
                Field("state", 8, 4, 0, "Sequencer state (ProgState; diagnostic)."),
            ),
        ),
        Register(
            "PROG_CELL",
            0x17,
            "rw",
            (
                Field("row", 0, 16, 0, "Row of the cell to program (< rows)."),
                Field("col", 16, 16, 0, "Column of the cell to program (< cols)."),
            ),
        ),
        Register(
            "PROG_TARGET",
            0x18,
            "rw",
            (
                Field("target", 0, 8, 0, "Target conductance code (0.25 µS steps)."),
                Field("tol", 8, 8, 4, "Tolerance code (>= 1): pass when target - tol <= reading < target + tol."),
            ),
        ),
        Register(
            "PROG_SET",
            0x19,
            "rw",
            (
                Field("start", 0, 8, 60, f"SET {amp} of the first pulse of every SET loop (1.2 V)."),
                Field("end", 8, 8, 165, f"SET end {amp} (>= start; 3.3 V); pulses at it are counted."),
                Field("step", 16, 8, 5, f"SET {amp} increment per pulse (>= 1; 0.1 V)."),
            ),
        ),
        Register(
            "PROG_RESET",
            0x1A,
            "rw",
            (
                Field("start", 0, 8, 60, f"RESET {amp} of the first pulse of every RESET loop (1.2 V)."),
                Field("end", 8, 8, 165, f"RESET end {amp} (>= start; 3.3 V); pulses at it are counted."),
                Field("step", 16, 8, 5, f"RESET {amp} increment per pulse (>= 1; 0.1 V)."),
            ),
        ),
        Register(
            "PROG_LIMITS",
            0x1B,
            "rw",
            (
                Field("pulse_limit", 0, 8, 30, "Pulses at the end amplitude that stop a SET or RESET loop (>= 1)."),
                Field("iter_limit", 8, 8, 20, "Fail when an unsuccessful outer iteration leaves the count above it."),
                Field("max_ops", 16, 16, 0xFFFF, "Operation budget (pulses + reads, >= 1); then outcome TIMEOUT."),
            ),
        ),
        Register(
            "T_PULSE",
            0x1C,
            "rw",
            (Field("t_pulse", 0, 16, PROG_TIMING["T_PULSE"], "Cycles of each SET or RESET pulse (>= 1)."),),
        ),
        Register(
            "T_READ",
            0x1D,
            "rw",
            (Field("t_read", 0, 16, PROG_TIMING["T_READ"], "Cycles of each verify READ (>= 1)."),),
        ),
        Register(
            "PROG_RESULT",
            0x1E,
            "ro",
            (
                Field(
                    "outcome",
                    0,
                    3,
                    ProgOutcome.NONE.value,
                    "ProgOutcome: 0 PASS, 1 FAIL_LOW, 2 FAIL_HIGH, "
                    "3 TIMEOUT, 4 ABORTED, 5 NONE (none yet; also while a command runs).",
                ),
                Field("reading", 8, 8, 0, "The last verify reading (G code)."),
                Field("iterations", 16, 16, 0, "Outer iterations of the latest command."),
            ),
        ),
        Register(
            "PROG_PULSES",
            0x1F,
            "ro",
            (
                Field("set", 0, 16, 0, "SET pulses of the latest command."),
                Field("reset", 16, 16, 0, "RESET pulses of the latest command."),
            ),
        ),
    ]


def render_markdown(regmap=None):
    """``docs/register-map.md``: the map of a default (256 x 256) core, as Markdown.

    Run ``python -m cimdv.rtl.core.regs > docs/register-map.md`` after changing the map;
    ``tests/unit/rtl/test_regs.py`` fails while the two differ.
    """
    regmap = regmap or register_map(rows=256, cols=256)
    out = [
        "# Register map of one CIM core",
        "",
        "Generated from `rtl/core/regs.py` by `python -m cimdv.rtl.core.regs` for the default",
        "256 x 256 core; do not edit by hand (a test compares this file with the generator).",
        "",
        "32-bit registers, word addresses on the CSR bus (`rtl/common/csr.py`). Access: `rw`",
        "configuration (writes while busy are refused and flag `ERROR.config_busy`), `ro` read",
        "only, `w1c` write 1 to clear, `wo` command (reads 0). An unmapped address flags",
        "`ERROR.bad_addr`. `LINE_MODE*` and `OUT_MASK*` scale with `max(rows, cols)`.",
        "",
        "| addr | register | access | reset | field | bits | reset | description |",
        "|---|---|---|---|---|---|---|---|",
    ]
    array_prefixes = ("LINE_MODE", "OUT_MASK")
    for reg in regmap:
        if reg.name.startswith(array_prefixes) and not reg.name.endswith("0"):
            continue
        name = reg.name
        fields = reg.fields
        if reg.name.startswith("LINE_MODE"):
            count = len(regmap.array("LINE_MODE"))
            name = f"LINE_MODE0..{count - 1}"
            fields = (
                Field(
                    "line<16w+k>",
                    0,
                    2,
                    1,
                    "LineMode of driven line 16w+k at bits 2k+1:2k: 0 OFF, 1 POS, 2 NEG, 3 reserved",
                ),
            )
        elif reg.name.startswith("OUT_MASK"):
            count = len(regmap.array("OUT_MASK"))
            name = f"OUT_MASK0..{count - 1}"
            fields = (Field("mask", 0, 32, 0xFFFFFFFF, "bit k: 1 = convert neuron 32w+k"),)
        for i, f in enumerate(fields):
            bits = f"{f.offset}" if f.width == 1 else f"{f.offset + f.width - 1}:{f.offset}"
            doc = f.doc or reg.doc
            if reg.name == "ERROR":
                doc = _ERROR_DOCS[f.name.upper()]
            first = i == 0
            out.append(
                f"| {f'0x{reg.addr:02x}' if first else ''} | {name if first else ''} | {reg.access if first else ''} "
                f"| {f'0x{reg.reset:08x}' if first else ''} | {f.name} | {bits} "
                f"| {f.reset if f.reset < 10 else hex(f.reset)} | {doc} |"
            )
    out += [
        "",
        "## Streams",
        "",
        "`inputs` (host to core) carries `ceil(n_in / lanes)` beats per vector; each beat holds `lanes`",
        "elements, two's-complement `signed(9)`, element `k` of beat `b` being driven line `b*lanes + k`, and",
        "`last` on the final beat (`input_beat_layout` in `rtl/core/layouts.py`). `outputs` carries",
        "`ceil(n_out / lanes)` beats of `OutputElem` (`count[6:0]`, `sign`, `sat`) and `last`.",
        "`n_in`/`n_out` are rows/cols forward and cols/rows backward. The range of a vector (`INPUT_RANGE`) is",
        "decided on the cycle after its final beat, with `inputs.ready` low, before anything reaches the macro.",
        "",
        "## Errors",
        "",
        "Every error is sticky in `ERROR` (write 1 to clear), raises the `error` port, and a START is",
        "refused while any bit is set. Configuration errors are evaluated at START and refuse it;",
        "`PULSE_OVF` is evaluated only when `IN_BITS` is legal and `MAX_COUNT` only when `OUT_BITS` is.",
        "Stream errors end the run (`STATUS.done`) without producing the failing vector's output.",
        "",
        "## Programming (write-verify)",
        "",
        f"Cell programming is locked at reset. Writing `0x{PROG_KEY:08X}` to `PROG_KEY` unlocks it; writing",
        "any other value locks it again (a running command completes). `PROG_CTRL.start` programs the one",
        "cell of `PROG_CELL` with the `PROG_*` settings, `T_PULSE` and `T_READ`; it is refused (no operation",
        "reaches the macro) with `PROG_LOCKED` while locked, `START_BUSY` while an MVM run or a command is in",
        "progress or `ERROR` is non-zero, else `PROG_CELL` / `PROG_SETTING` when the cell or a setting is",
        "illegal. While a command runs the core is busy (`STATUS.busy`, `STATUS.state` = PROGRAM): `rw`",
        "writes and START are refused as during a run, and `CTRL.abort` ends it (outcome ABORTED). The end",
        "of a command pulses the `done` port and sets `STATUS.done` and `PROG_STATUS.done`; `PROG_RESULT`",
        "and `PROG_PULSES` are then final. Amplitude codes are 20 mV steps, conductance codes 0.25 µS steps",
        "(docs/analog-boundary.md §6).",
        "",
    ]
    return "\n".join(out)


_ERROR_DOCS = {
    "IN_BITS": "START with IN_BITS 0 or > 8, or signed with IN_BITS < 2",
    "OUT_BITS": "START with OUT_BITS 0 or > 8",
    "PULSE_MULT": "START with PULSE_MULT 0",
    "PULSE_OVF": "START with PULSE_MULT * 2**(magnitude bits - 1) above the pulse counter (2**pulse_bits - 1)",
    "MAX_COUNT": "START with MAX_COUNT above 2**(OUT_BITS - 1) - 1",
    "TIMING": "START with a T_* register or WATCHDOG equal to 0",
    "BATCH": "START with BATCH 0",
    "LINE_MODE": "START with a driven line in the reserved LineMode 3",
    "START_BUSY": "START or PROG_CTRL.start while busy (MVM run or programming) or while ERROR is non-zero (refused)",
    "CONFIG_BUSY": "rw register written while busy (refused, value kept)",
    "INPUT_RANGE": "input element outside the configured range (vector refused, run ends)",
    "INPUT_LENGTH": "`last` on the wrong beat (run ends; a missing `last` is drained up to the next one)",
    "TIMEOUT_IN": "WATCHDOG cycles without an input beat while waiting for one (run ends)",
    "TIMEOUT_OUT": "WATCHDOG cycles with an output beat not accepted (run ends)",
    "BAD_ADDR": "read or write of an unmapped address",
    "PROG_LOCKED": "PROG_CTRL.start while programming is locked (refused, no operation)",
    "PROG_CELL": "PROG_CTRL.start with PROG_CELL outside the array (refused)",
    "PROG_SETTING": "PROG_CTRL.start with a ramp step 0, a ramp start above its end, or tol, pulse_limit, "
    "max_ops, T_PULSE or T_READ equal to 0 (refused)",
}


if __name__ == "__main__":
    print(render_markdown(), end="")

"""The chip MVM workload of the raw-speed baseline: one command stream, two harnesses, one checker.

``make bench`` runs the same host command stream on the ``twin_chip`` top (the chip with a
:class:`~cimdv.rtl.fpga.twin.MacroTwin` behind every tile) twice: from a Verilator C++ harness
with no Python in the run (``tb/flows/raw_chip.py``) and from cocotb through
:class:`~cimdv.tb.chip.env.StreamHostPort` (``tb/chip/bench.py``). Both read the commands from
one file written by :meth:`ChipWorkload.write_commands`, write the responses in one format
(:func:`write_responses`), and :meth:`ChipWorkload.check` verifies either file against the
golden model (:class:`~cimdv.model.exact.ExactCore` with the twins' Δ and θ).

The workload, fixed by the chip's parameters, a seed and three sizes:

* phase ``program``: PING; unlock programming and set the write-verify registers (``T_PULSE`` 1,
  ``T_READ`` 2, SET/RESET ramps from 1.6 V, the twins' threshold); then, for every cell
  position, ``PROG_CELL`` multicast to every core, each core's own ``PROG_TARGET``
  (``2w + 1``, tolerance 1), ``PROG_CTRL.start`` multicast (the cores program in parallel),
  and each core's ``PROG_RESULT`` read until its outcome is no longer NONE (a *poll*);
* phase ``mvm``: every core configured (multicast CSR writes: signed 4-bit inputs, 8-bit
  outputs, the twin's shortest legal phase timing ``T_SAMPLE + T_INTEG = core_rows + 3``,
  ``BATCH`` = ``batch``); ``rounds`` x (one multicast MVM of ``batch`` vectors to every core,
  one MVM with ``batch`` vectors per core); then ``BATCH`` = 1 and ``reductions`` reduced MVMs
  (a layer split across every core, summed in the bridge).

Commands file (text, one record a line; ``poll_word`` in decimal, -1 for no poll, every other
number in hex without prefix)::

    cimdv-chip-workload 1
    phase <name>
    cmd <poll_word> <poll_mask> <poll_value> <max_tries> <n> <word> x n

A record is sent, its response collected, and, when ``poll_word >= 0``, the record is sent
again while ``response[poll_word] & poll_mask == poll_value``, at most ``max_tries`` times in
all (:func:`poll_again`). Responses file: ``resp <tries> <n> <word> x n``, one line per record
(the last response of a polled record). Both harnesses also report, per phase, the clock
cycles and the wall time of the run alone (start-up, file I/O and the build excluded), and the
chip's ``twin_overrun``, ``twin_error``, ``error`` and ``alarm`` outputs at the end.
"""

import dataclasses
from pathlib import Path

import numpy as np

from cimdv.model.exact import ExactCore, MacroParams
from cimdv.rtl.core.regs import PROG_KEY, register_map
from cimdv.rtl.fpga.twin import MIN_T_READ, MVM_LATENCY, g_code_of
from cimdv.rtl.host.protocol import Opcode, Status
from cimdv.tb.chip.host import command, core, mvm_args, mvm_blocks, parse_response, rect, reduced_sums
from cimdv.tb.vip.config import core_config_writes, decode_field, default_config, encode_fields

__all__ = [
    "BENCH_CHIP",
    "BENCH_SIZES",
    "FLAGS",
    "FORMAT",
    "ChipWorkload",
    "CheckReport",
    "Record",
    "poll_again",
    "read_commands",
    "read_responses",
    "write_responses",
]

FORMAT = "cimdv-chip-workload 1"
#: The chip's outputs that must be 0 at the end of a run.
FLAGS = ("twin_overrun", "twin_error", "error", "alarm")
#: ``twin_chip`` parameters of the bench: 2 x 2 tiles of 32 x 32 cores (the chip bench's reduced
#: chip), 4-bit conductance codes, Δ = 8 (random weights and inputs give counts of ~50).
BENCH_CHIP = {"cols": 2, "rows": 2, "core_rows": 32, "core_cols": 32, "g_bits": 4, "twin_delta": 8}
#: Sizes of the bench's workload (see :class:`ChipWorkload`).
BENCH_SIZES = {"batch": 4, "rounds": 24, "reductions": 24}
#: PROG_RESULT.outcome while a command runs (ProgOutcome.NONE) and when it passed.
_OUTCOME_NONE, _OUTCOME_PASS = 5, 0
#: Polls of one PROG_RESULT before the harness gives up (a write-verify takes a few).
_MAX_POLLS = 200
#: Amplitude code where the twin's SET and RESET start to move a cell (1.6 V).
_RAMP_START = 80


@dataclasses.dataclass(frozen=True)
class Record:
    """One command of the stream, what its response must be, and its poll rule."""

    phase: str
    words: tuple
    expect: tuple  # (kind, *details) for ChipWorkload.check
    poll_word: int = -1
    poll_mask: int = 0
    poll_value: int = 0
    max_tries: int = 1


def poll_again(record, response):
    """True when ``record`` must be sent again after ``response`` (a list of words)."""
    if record.poll_word < 0 or record.poll_word >= len(response):
        return False
    return response[record.poll_word] & record.poll_mask == record.poll_value


@dataclasses.dataclass
class CheckReport:
    """What :meth:`ChipWorkload.check` found."""

    responses: int = 0
    outputs: int = 0  # output neurons (blocks) and sums (reductions) compared with the model
    cells: int = 0  # programmed cells whose write-verify result was checked
    mismatches: int = 0  # responses (or end-of-run flags) that differ from the expectation
    details: list = dataclasses.field(default_factory=list)

    def fail(self, message):
        self.mismatches += 1
        if len(self.details) < 20:
            self.details.append(message)


class ChipWorkload:
    """The workload on a ``twin_chip`` with parameters ``params`` (see the module docstring).

    Parameters
    ----------
    params : dict
        ``twin_chip`` parameters (at least ``cols``, ``rows``, ``core_rows``, ``core_cols``;
        ``g_bits``, ``twin_delta``, ``twin_threshold`` default as in TwinChip).
    seed : int
        Weights and inputs.
    batch, rounds, reductions : int
        Vectors per MVM; multicast + per-core MVM pairs; reduced MVMs.
    """

    def __init__(self, params, *, seed=1, batch=4, rounds=8, reductions=8):
        self.params = dict(params)
        self.seed = seed
        self.cols, self.rows = params["cols"], params["rows"]
        self.core_rows, self.core_cols = params["core_rows"], params["core_cols"]
        self.g_bits = params.get("g_bits", 4)
        self.macro = MacroParams(delta=params.get("twin_delta", 4), threshold=params.get("twin_threshold", 0))
        self.batch, self.rounds, self.reductions = batch, rounds, reductions
        self.cores = [(x, y) for y in range(self.rows) for x in range(self.cols)]
        self.all = (0, 0, self.cols - 1, self.rows - 1)
        self.regmap = register_map(rows=self.core_rows, cols=self.core_cols)
        rng = np.random.default_rng(seed)
        shape = (self.core_rows, self.core_cols)
        self.weights = {xy: rng.integers(0, 1 << self.g_bits, shape) for xy in self.cores}
        self.models = {xy: ExactCore(w, self.macro) for xy, w in self.weights.items()}
        self.cfg = default_config(self.core_rows, self.core_cols)
        # The twin computes one row per cycle within SAMPLE + INTEGRATE (MacroTwin.min_sample_integ).
        self.timing = {
            "T_INIT": 1,
            "T_SAMPLE": 1,
            "T_INTEG": self.core_rows + MVM_LATENCY - 1,
            "T_COMPARE": 1,
            "T_DECR": 1,
            "T_NOISE": 1,
        }
        self._rng = rng
        self._tag = 0
        self.records = []
        self._program()
        self._mvm()

    # ---- building -------------------------------------------------------------------------
    def _add(self, phase, opcode, args, expect, **poll):
        self._tag = (self._tag + 1) & 0xFF
        self.records.append(Record(phase, tuple(command(opcode, args, tag=self._tag)), expect, **poll))

    def _write(self, phase, area, name, value):
        self._add(phase, Opcode.CSR_WRITE, [rect(*area), self.regmap[name].addr, value], ("ok",))

    def _program(self):
        regs = self.regmap
        self._add("program", Opcode.PING, [], ("ping",))
        ramp = {"start": _RAMP_START, "end": regs["PROG_SET"].field("end").reset, "step": 5}
        for name, value in (
            ("PROG_KEY", PROG_KEY),
            ("T_PULSE", 1),
            ("T_READ", MIN_T_READ),
            ("PROG_SET", encode_fields(regs, "PROG_SET", **ramp)),
            ("PROG_RESET", encode_fields(regs, "PROG_RESET", **ramp)),
        ):
            self._write("program", self.all, name, value)
        result = regs["PROG_RESULT"].field("outcome")
        for i in range(self.core_rows):
            for j in range(self.core_cols):
                self._write("program", self.all, "PROG_CELL", encode_fields(regs, "PROG_CELL", row=i, col=j))
                for xy in self.cores:
                    target = encode_fields(regs, "PROG_TARGET", target=g_code_of(int(self.weights[xy][i, j])), tol=1)
                    self._write("program", (*xy, *xy), "PROG_TARGET", target)
                self._write("program", self.all, "PROG_CTRL", 1)
                for xy in self.cores:
                    self._add(
                        "program",
                        Opcode.CSR_READ,
                        [core(*xy), regs["PROG_RESULT"].addr],
                        ("prog", xy, i, j),
                        poll_word=1,
                        poll_mask=result.mask,
                        poll_value=_OUTCOME_NONE << result.offset,
                        max_tries=_MAX_POLLS,
                    )
        self._write("program", self.all, "PROG_KEY", 0)

    def _mvm(self):
        cfg, lo, hi = self.cfg, *self.cfg.in_range
        writes = core_config_writes(self.regmap, cfg, timing=self.timing, batch=self.batch, watchdog=1 << 20)
        for name, value in writes:
            self._write("mvm", self.all, name, value)
        n = len(self.cores)
        for _ in range(self.rounds):
            xs = self._rng.integers(lo, hi + 1, (self.batch, cfg.n_in))
            args = mvm_args(self.all, xs, out_elems=cfg.n_out)
            self._add("mvm", Opcode.MVM, args, ("blocks", xs, False))
            xs = self._rng.integers(lo, hi + 1, (self.batch, n, cfg.n_in))
            args = mvm_args(self.all, xs, out_elems=cfg.n_out, per_core=True)
            self._add("mvm", Opcode.MVM, args, ("blocks", xs, True))
        self._write("mvm", self.all, "BATCH", 1)
        for _ in range(self.reductions):
            xs = self._rng.integers(lo, hi + 1, (1, n, cfg.n_in))
            args = mvm_args(self.all, xs, out_elems=cfg.n_out, per_core=True, reduce=True)
            self._add("mvm", Opcode.MVM, args, ("reduced", xs))

    # ---- files ----------------------------------------------------------------------------
    @property
    def phases(self):
        return list(dict.fromkeys(r.phase for r in self.records))

    def write_commands(self, path):
        """The commands file (module docstring); returns its path."""
        lines, phase = [FORMAT], None
        for r in self.records:
            if r.phase != phase:
                phase = r.phase
                lines.append(f"phase {phase}")
            head = f"cmd {r.poll_word} {r.poll_mask:x} {r.poll_value:x} {r.max_tries:x} {len(r.words):x}"
            lines.append(" ".join([head, *(f"{w:x}" for w in r.words)]))
        path = Path(path)
        path.write_text("\n".join(lines) + "\n")
        return path

    # ---- checks ---------------------------------------------------------------------------
    def check(self, responses, flags=None):
        """A :class:`CheckReport` of ``responses`` (``[(tries, words)]``, one per record) and of
        the end-of-run ``flags`` (``{name: value}``, :data:`FLAGS`)."""
        report = CheckReport()
        if len(responses) != len(self.records):
            report.fail(f"{len(responses)} responses for {len(self.records)} commands")
        for k, (record, (tries, words)) in enumerate(zip(self.records, responses, strict=False)):
            report.responses += 1
            where = f"command {k} ({record.phase}, {record.expect[0]})"
            try:
                response = parse_response(list(words))
            except ValueError as exc:
                report.fail(f"{where}: {exc}")
                continue
            tag = record.words[0] >> 8 & 0xFF
            if response.tag != tag or response.status != Status.OK:
                report.fail(f"{where}: tag {response.tag} (sent {tag}), status {response.status.name}")
                continue
            if poll_again(record, list(words)):
                report.fail(f"{where}: still polling after {tries} tries")
                continue
            message = self._check_one(record.expect, response.payload, report)
            if message:
                report.fail(f"{where}: {message}")
        for name in FLAGS:
            if (flags or {}).get(name, 0):
                report.fail(f"{name} = {flags[name]} at the end of the run")
        if flags is None:
            report.fail("no end-of-run flags reported")
        return report

    def _check_one(self, expect, payload, report):
        kind = expect[0]
        if kind == "ok":
            return None
        if kind == "ping":
            want = (0xC1A0_0001, self.cols | self.rows << 8, self.core_rows | self.core_cols << 16)
            return None if tuple(payload) == want else f"PING payload {[hex(p) for p in payload]}"
        if kind == "prog":
            _, xy, i, j = expect
            report.cells += 1
            outcome = decode_field(self.regmap, "PROG_RESULT", payload[0], "outcome")
            reading = decode_field(self.regmap, "PROG_RESULT", payload[0], "reading")
            want = g_code_of(int(self.weights[xy][i, j]))
            if outcome != _OUTCOME_PASS or reading != want:
                return f"core {xy} cell ({i}, {j}): outcome {outcome}, reading {reading}, expected PASS {want}"
            return None
        cfg, n_out = self.cfg, self.cfg.n_out
        if kind == "reduced":
            xs = expect[1]
            sums, sat = reduced_sums(payload)
            results = [self.models[xy].mvm(cfg, xs[0, c]) for c, xy in enumerate(self.cores)]
            want_sums = sum(r.signed for r in results)
            want_sat = np.any([r.sat for r in results], axis=0)
            report.outputs += n_out
            bad = np.flatnonzero((sums[:n_out] != want_sums) | (sat[:n_out] != want_sat))
            if len(sums) != n_out or bad.size:
                return f"reduced sums differ at neurons {bad[:8].tolist()} ({len(sums)} sums)"
            return None
        _, xs, per_core = expect
        got = {xy: [] for xy in self.cores}
        for b in mvm_blocks(payload, n_out):
            if (b.x, b.y) not in got:
                return f"output block from core ({b.x}, {b.y})"
            got[b.x, b.y].append(b)
        for c, xy in enumerate(self.cores):
            if len(got[xy]) != len(xs):
                return f"core {xy}: {len(got[xy])} output vectors, expected {len(xs)}"
            for v, b in enumerate(got[xy]):
                want = self.models[xy].mvm(cfg, xs[v, c] if per_core else xs[v])
                report.outputs += n_out
                for name in ("count", "sign", "sat"):
                    g, w = getattr(b, name)[:n_out], getattr(want, name)
                    if not np.array_equal(g, w):
                        bad = np.flatnonzero(g != w)[:8].tolist()
                        return f"core {xy} vector {v}: {name} differs at neurons {bad}"
        return None


def read_commands(path):
    """The :class:`Record` list of a commands file (``expect`` empty): what a harness replays."""
    lines = Path(path).read_text().splitlines()
    if not lines or lines[0].strip() != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT!r} file")
    records, phase = [], None
    for line in lines[1:]:
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "phase" and len(fields) == 2:
            phase = fields[1]
        elif fields[0] == "cmd" and len(fields) >= 6 and len(fields) == 6 + int(fields[5], 16) and phase:
            poll_word, mask, value, tries = int(fields[1]), *(int(f, 16) for f in fields[2:5])
            words = tuple(int(f, 16) for f in fields[6:])
            records.append(Record(phase, words, (), poll_word, mask, value, tries))
        else:
            raise ValueError(f"{path}: malformed line {line[:80]!r}")
    return records


def write_responses(path, responses):
    """The responses file: ``[(tries, words)]`` one line each."""
    lines = [" ".join([f"resp {tries:x} {len(words):x}", *(f"{w:x}" for w in words)]) for tries, words in responses]
    Path(path).write_text("".join(line + "\n" for line in lines))


def read_responses(path):
    """``[(tries, words)]`` from a responses file."""
    out = []
    for line in Path(path).read_text().splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] != "resp" or len(fields) < 3 or len(fields) != 3 + int(fields[2], 16):
            raise ValueError(f"malformed response line: {line[:80]!r}")
        out.append((int(fields[1], 16), [int(f, 16) for f in fields[3:]]))
    return out

"""The predictor: the chip's golden model, fed by the host monitor.

For every observed command (:class:`~cimdv.tb.uvm.items.HostTxn`) :class:`ChipPredictor` writes one
:class:`Expectation`: the status, the payload of PING and CSR commands, and for MVM the per-core results of
:class:`~cimdv.model.exact.ExactCore` (one per tile, the weights the macro agents were given) with the
bridge's semantics: which cores deliver, zero-filled blocks, reduced sums with the OR of the saturation
flags, the timeouts and stale packets the command leaves behind. Nothing comes from the test: the cores'
configurations come from a register shadow updated by the CSR writes the monitor saw, and a core whose
timing registers make it slower than the bridge's watchdog is predicted to time out.

A command outside the model (an illegal command, an unmapped register, a configuration a START refuses,
timing near the watchdog) gets an expectation with ``problem`` set: the scoreboard reports it.
"""

from dataclasses import dataclass, field

from pyuvm import ConfigDB, uvm_analysis_port, uvm_subscriber

from cimdv.model.encoding import CoreConfig, LineMode, pulses_per_phase
from cimdv.model.exact import ExactCore
from cimdv.rtl.core.regs import CORE_ID, LINES_PER_WORD, NEURONS_PER_WORD
from cimdv.rtl.host.protocol import Opcode, Status
from cimdv.tb.vip.config import decode_field

from .items import area_cores

__all__ = ["BRIDGE_ID", "TIMING_SLACK", "Expectation", "MvmExpectation", "RegisterShadow", "ChipPredictor"]

#: PING's first payload word (docs/host-protocol.md).
BRIDGE_ID = 0xC1A0_0001
#: Cycles of network transfer and bridge bookkeeping allowed around a core's computation when the
#: predictor decides whether an MVM beats the bridge's watchdog (docs/architecture.md).
TIMING_SLACK = 1000
#: Registers whose reads the predictor knows: every ``rw`` register and these read-only ones.
_KNOWN_RO = ("ID", "GEOMETRY", "PARAMS", "ERROR", "VECTORS")


class RegisterShadow:
    """The predicted register values of one core (reset values, then every accepted write).

    Parameters
    ----------
    regmap : cimdv.rtl.core.regs.RegisterMap
    """

    def __init__(self, regmap):
        self.regmap = regmap
        self.values = {r.name: r.reset for r in regmap}
        self.values["ID"] = CORE_ID

    def write(self, addr, value):
        """Apply a CSR write; returns an error text for writes the model does not cover."""
        reg = self.regmap.by_addr.get(addr)
        if reg is None:
            return f"write to unmapped address {addr:#x}"
        if reg.access == "rw":
            mask = 0
            for f in reg.fields:
                mask |= f.mask
            self.values[reg.name] = value & mask
        elif reg.access == "wo" and reg.name != "PROG_KEY":
            return f"write to command register {reg.name} (commands are outside the predictor's model)"
        return None

    def read(self, addr):
        """``(value, None)``, or ``(None, reason)`` when the register is not predicted."""
        reg = self.regmap.by_addr.get(addr)
        if reg is None:
            return None, f"read of unmapped address {addr:#x}"
        if reg.access == "rw" or reg.name in _KNOWN_RO:
            return self.values[reg.name], None
        return None, f"{reg.name} is not predicted"

    def field(self, reg, name):
        return decode_field(self.regmap, reg, self.values[reg], name)

    def config(self, rows, cols, pulse_bits):
        """The :class:`CoreConfig` the registers hold (ValueError if a START would refuse it)."""
        lines = max(rows, cols)
        modes = []
        for reg in self.regmap.array("LINE_MODE"):
            word = self.values[reg.name]
            modes += [LineMode(word >> (2 * k) & 3) for k in range(LINES_PER_WORD)]
        mask = []
        for reg in self.regmap.array("OUT_MASK"):
            word = self.values[reg.name]
            mask += [bool(word >> k & 1) for k in range(NEURONS_PER_WORD)]
        return CoreConfig(
            rows=rows,
            cols=cols,
            backward=bool(self.field("MODE", "backward")),
            signed=bool(self.field("MODE", "signed")),
            in_bits=self.field("MODE", "in_bits"),
            out_bits=self.field("MODE", "out_bits"),
            pulse_mult=self.field("MODE", "pulse_mult"),
            max_count=self.field("MAX_COUNT", "max_count"),
            noise_pulses=self.field("NOISE_PULSES", "noise_pulses"),
            line_modes=modes[:lines],
            out_mask=mask[:lines],
            pulse_bits=pulse_bits,
        )

    def cycles(self, cfg):
        """``(least, most)`` cycles one vector keeps the core computing (INIT to its last output beat)."""
        t = {name: self.values[name] for name in ("T_INIT", "T_SAMPLE", "T_INTEG", "T_COMPARE", "T_DECR", "T_NOISE")}
        least = t["T_INIT"] + 2 * sum(pulses_per_phase(cfg)) * (t["T_SAMPLE"] + t["T_INTEG"]) + t["T_COMPARE"]
        most = least + cfg.noise_pulses * (t["T_NOISE"] + 1) + cfg.max_count * (t["T_DECR"] + t["T_COMPARE"])
        return least, most + 2 * (cfg.n_in + cfg.n_out) + 64


@dataclass
class MvmExpectation:
    """The predicted outcome of one MVM command."""

    area: tuple
    cores: list
    #: Cores whose outputs arrive before the bridge's watchdog (the others' are zero-filled / left out).
    delivered: list
    #: Cores slower than the watchdog: their outputs arrive after the response (drained as stale).
    late: list
    vectors: int
    reduce: bool
    out_elems: int
    cfg: dict = field(default_factory=dict)
    #: ``{core: [input vector per batch step]}``.
    inputs: dict = field(default_factory=dict)
    #: ``{core: [MvmResult per batch step]}`` of the exact model.
    results: dict = field(default_factory=dict)


@dataclass
class Expectation:
    """What the chip must answer to one observed command (``index`` of its :class:`HostTxn`)."""

    index: int
    opcode: int
    status: Status | None = None
    #: Expected payload words (PING, CSR_WRITE, CSR_READ); None: not predicted.
    payload: tuple | None = None
    mvm: MvmExpectation | None = None
    #: New watchdog expiries and stale packets the command causes.
    timeouts: int = 0
    stale: int = 0
    problem: str | None = None
    note: str | None = None


class ChipPredictor(uvm_subscriber):
    """Predicts every response from the commands the host monitor saw; writes :class:`Expectation` on ``ap``.

    Configuration (ConfigDB): ``harness`` (geometry, weights and exact parameters of every tile, the
    bridge's watchdog).
    """

    def build_phase(self):
        super().build_phase()
        self.ap = uvm_analysis_port("ap", self)
        harness = ConfigDB().get(self, "", "harness")
        tb = harness.tb
        self.cols, self.rows = tb.cols, tb.rows
        self.core_rows, self.core_cols = tb.core_rows, tb.core_cols
        self.pulse_bits = tb.params.get("pulse_bits", 8)
        self.watchdog = tb.params["watchdog"]
        self.regmap = tb.regmap
        self.shadow = {xy: RegisterShadow(tb.regmap) for xy in tb.cores}
        self.models = {xy: ExactCore(w, tb.macro_params) for xy, w in tb.weights.items()}
        self.vectors_run = dict.fromkeys(tb.cores, 0)

    def write(self, txn):
        self.ap.write(self.predict(txn))

    def _inside(self, area):
        x0, y0, x1, y1 = area
        return 0 <= x0 <= x1 < self.cols and 0 <= y0 <= y1 < self.rows

    def predict(self, txn):
        """The :class:`Expectation` of one :class:`HostTxn`."""
        exp = Expectation(index=txn.index, opcode=txn.opcode)
        if txn.problem:
            exp.problem = f"undecodable command or response ({txn.problem})"
            return exp
        if txn.opcode == Opcode.PING and not txn.args:
            exp.status = Status.OK
            exp.payload = (
                BRIDGE_ID,
                self.cols | self.rows << 8,
                self.core_rows | self.core_cols << 16,
            )
        elif txn.opcode == Opcode.CSR_WRITE and txn.area is not None and self._inside(txn.area):
            cores = area_cores(txn.area)
            problems = [self.shadow[xy].write(txn.addr, txn.data) for xy in cores]
            exp.problem = next((p for p in problems if p), None)
            exp.status = Status.OK
            exp.payload = (len(cores), 0)
        elif txn.opcode == Opcode.CSR_READ and txn.area is not None and self._inside(txn.area):
            xy = txn.area[:2]
            value, why = self.shadow[xy].read(txn.addr)
            if value is not None and self.regmap.by_addr[txn.addr].name == "VECTORS":
                value = self.vectors_run[xy] & 0xFFFF_FFFF
            exp.status = Status.OK
            exp.payload = None if value is None else (value,)
            exp.note = why
            if why and why.startswith("read of unmapped"):
                exp.problem = why
        elif txn.opcode == Opcode.MVM and txn.mvm is not None and self._inside(txn.mvm.area):
            self.predict_mvm(txn, exp)
        else:
            exp.problem = "an illegal command (only legal traffic is predicted)"
        return exp

    def predict_mvm(self, txn, exp):
        """Fill ``exp`` for an MVM: configurations from the shadow, the exact model per core and vector."""
        req = txn.mvm
        cores = area_cores(req.area)
        m = MvmExpectation(
            area=req.area,
            cores=cores,
            delivered=[],
            late=[],
            vectors=req.vectors,
            reduce=req.reduce,
            out_elems=req.out_elems,
        )
        exp.mvm = m
        if req.reduce and req.vectors != 1:
            exp.problem = "reduced MVM of several vectors (refused by the bridge: not predicted)"
            return
        timing = {}
        for i, xy in enumerate(cores):
            shadow = self.shadow[xy]
            try:
                cfg = shadow.config(self.core_rows, self.core_cols, self.pulse_bits)
            except ValueError as exc:
                exp.problem = f"core {xy}: a START would be refused ({exc})"
                return
            batch = shadow.values["BATCH"]
            if batch != req.vectors or req.elems != cfg.n_in or req.out_elems != cfg.n_out:
                exp.problem = (
                    f"core {xy}: BATCH {batch}, {cfg.n_in} inputs, {cfg.n_out} outputs do not match the command's "
                    f"{req.vectors} vectors of {req.elems} elements and {req.out_elems} outputs"
                )
                return
            m.cfg[xy] = cfg
            m.inputs[xy] = [req.vector(v, i) for v in range(req.vectors)]
            m.results[xy] = [self.models[xy].mvm(cfg, x) for x in m.inputs[xy]]
            self.vectors_run[xy] += req.vectors
            timing[xy] = shadow.cycles(cfg)
        fast = [xy for xy in cores if timing[xy][1] + TIMING_SLACK < self.watchdog]
        busy_fast = req.vectors * max((timing[xy][1] for xy in fast), default=0) + TIMING_SLACK
        slow = [xy for xy in cores if timing[xy][0] > self.watchdog + busy_fast]
        unclear = [xy for xy in cores if xy not in fast and xy not in slow]
        if unclear or (slow and req.vectors != 1):
            exp.problem = (
                f"cores {unclear or slow}: computation time {[timing[xy] for xy in unclear or slow]} cycles against a "
                f"watchdog of {self.watchdog} (only clearly fast or clearly slow single-vector cores are predicted)"
            )
            return
        m.delivered, m.late = fast, slow
        exp.status = Status.TIMEOUT if slow else Status.OK
        exp.timeouts = int(bool(slow))
        exp.stale = len(slow) * req.vectors

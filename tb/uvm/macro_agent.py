"""The analog macro agent of one tile: sequencer, driver (the reactive responder) and monitor.

The driver owns the tile's :class:`~cimdv.tb.vip.macro.MacroResponder` (created by the chip bench) and,
for every :class:`~cimdv.tb.uvm.items.MacroItem`, loads a new macro model into it between MVMs: the
exact macro, the physical model with its own noise seed, a biased or a silent macro, or a weight fault.

The monitor does not add a wake-up of its own: it taps the operations the responder already decodes
(one per change of ``macro__op``) through :class:`MacroProbe`, a wrapper around the macro model, and
publishes one :class:`~cimdv.tb.uvm.items.MacroTxn` per vector: the integrators at the sign compare
and every comparator answer, which is what the tile's neurons must have counted.
"""

import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, ReadOnly, ValueChange
from pyuvm import ConfigDB, uvm_agent, uvm_analysis_port, uvm_driver, uvm_monitor, uvm_sequencer

from cimdv.model.encoding import MacroOp
from cimdv.model.exact import MacroState
from cimdv.model.physical import PhysicalCore, PhysicalMacroState, PhysicalParams

from .items import MacroTxn

__all__ = [
    "BiasedMacroState",
    "SilentMacroState",
    "MacroProbe",
    "MacroSequencer",
    "MacroDriver",
    "MacroMonitor",
    "MacroAgent",
    "macro_model",
]


class BiasedMacroState(PhysicalMacroState):
    """The physical macro with ``offset`` added to every integrator at INIT (a systematic bias)."""

    def __init__(self, core, *, seed=0, offset=0.0):
        super().__init__(core, seed=seed)
        self.offset = float(offset)

    def init(self, backward=None):
        super().init(backward)
        self._integ += self.offset


class SilentMacroState(MacroState):
    """An exact macro whose comparator never answers (``cmp`` stays low): every neuron reads
    negative and never flips, so the core reports each active neuron saturated at MAX_COUNT."""

    def compare(self):
        return np.zeros(self.lines, dtype=bool)


def macro_model(item, weights, params):
    """The macro model for ``item`` on a tile with ``weights`` and exact parameters ``params``.

    Returns ``(state, kind, noise)``: the state the responder runs, and what the monitor reports about
    it (a weight fault and a bias are reported as the model they corrupt: the checker must find them).
    """
    if item.kind in ("exact", "weight_fault", "silent"):
        w = np.array(weights, copy=True)
        if item.kind == "weight_fault":
            row, col, delta = item.fault
            w[row, col] += delta
        cls = SilentMacroState if item.kind == "silent" else MacroState
        return cls(w, params), ("silent" if item.kind == "silent" else "exact"), None
    if params.threshold or params.noise_q:
        raise ValueError("params: the physical macro agent needs threshold 0 and noise_q 0 (the exact model's ideal)")
    physical = PhysicalParams(
        read_noise_uS=item.read_noise, ktc_noise_V=item.ktc_noise, delta_V=float(params.delta), multi_sampling=False
    )
    core = PhysicalCore(np.asarray(weights, dtype=np.float64), physical, seed=item.seed, noise_seed=params.noise_seed)
    if item.kind == "biased":
        state = BiasedMacroState(core, seed=item.seed, offset=item.bias_lsb * params.delta)
    else:
        state = PhysicalMacroState(core, seed=item.seed)
    return state, "physical", (item.read_noise, item.ktc_noise, float(params.delta))


class MacroProbe:
    """A macro model seen through the monitor: forwards every operation, records each vector.

    It has the ``apply`` of a macro state (what :class:`~cimdv.tb.vip.macro.MacroResponder` calls), so
    it costs no wake-up: a vector starts at INIT and ends at the first IDLE after a COMPARE, when
    ``publish`` receives its :class:`MacroTxn`. ``now`` gives the time stamps (default: simulation ns).
    """

    def __init__(self, state, xy, kind, noise, publish, first_index=0, now=None):
        self.now = now or (lambda: get_sim_time("ns"))
        self.state = state
        self.xy = xy
        self.kind = kind
        self.noise = noise
        self.publish = publish
        self.index = first_index
        self._open = None

    @property
    def rows(self):
        return self.state.rows

    @property
    def cols(self):
        return self.state.cols

    @property
    def integrator(self):
        return self.state.integrator

    def apply(self, op, *, drive_bits=None, dec_up_bits=None, backward=None):
        result = self.state.apply(op, drive_bits=drive_bits, dec_up_bits=dec_up_bits, backward=backward)
        op = MacroOp(op)
        rec = self._open
        if op == MacroOp.INIT:
            if rec is not None and rec["compares"]:
                self._close()
            self._open = rec = {
                "t": self.now(),
                "backward": bool(backward),
                "compares": [],
                "integ": None,
                MacroOp.SAMPLE: 0,
                MacroOp.INTEGRATE: 0,
                MacroOp.DECREMENT: 0,
                MacroOp.NOISE: 0,
            }
        elif rec is None:
            return result
        elif op == MacroOp.COMPARE:
            if rec["integ"] is None:
                rec["integ"] = self.state.integrator
            rec["compares"].append(int(result))
        elif op == MacroOp.IDLE:
            if rec["compares"]:
                self._close()
        else:
            rec[op] += 1
        return result

    def _close(self):
        rec, self._open = self._open, None
        self.publish(
            MacroTxn(
                xy=self.xy,
                index=self.index,
                kind=self.kind,
                noise=self.noise,
                backward=rec["backward"],
                integ=rec["integ"],
                compares=tuple(rec["compares"]),
                samples=rec[MacroOp.SAMPLE],
                integrates=rec[MacroOp.INTEGRATE],
                decrements=rec[MacroOp.DECREMENT],
                noise_ops=rec[MacroOp.NOISE],
                t_start_ns=rec["t"],
                t_end_ns=self.now(),
            )
        )
        self.index += 1


class MacroSequencer(uvm_sequencer):
    """Sequencer of one tile's macro behaviours (``xy`` is the tile)."""

    def build_phase(self):
        super().build_phase()
        self.xy = ConfigDB().get(self, "", "xy")


class MacroMonitor(uvm_monitor):
    """Publishes what the tile's macro computed, one :class:`MacroTxn` per vector, on ``ap``."""

    def build_phase(self):
        super().build_phase()
        self.ap = uvm_analysis_port("ap", self)
        self.xy = ConfigDB().get(self, "", "xy")
        self.count = 0

    def probe(self, state, kind, noise):
        """The :class:`MacroProbe` the responder runs instead of ``state``."""
        return MacroProbe(state, self.xy, kind, noise, self._publish, first_index=self.count)

    def _publish(self, txn):
        self.count += 1
        self.ap.write(txn)


class MacroDriver(uvm_driver):
    """The tile's responder: answers the macro port with the current model; loads a new model per item.

    A new model is loaded only while the tile's core is idle (``busy`` low), so no vector ever sees two
    models; the responder keeps answering in the meantime.
    """

    def build_phase(self):
        super().build_phase()
        self.harness = ConfigDB().get(self, "", "harness")
        self.xy = ConfigDB().get(self, "", "xy")

    def connect_phase(self):
        super().connect_phase()
        tb = self.harness.tb
        self.responder = tb.responders[self.xy]
        self.weights = tb.weights[self.xy]
        self.params = tb.macro_params
        self.load(MacroState(self.weights, self.params), "exact", None)

    def load(self, state, kind, noise):
        self.responder.load_weights(self.monitor.probe(state, kind, noise))

    async def run_phase(self):
        await self.harness.ready.wait()
        dut = self.harness.tb.dut
        bit = 1 << (self.xy[1] * self.harness.tb.cols + self.xy[0])
        while True:
            item = await self.seq_item_port.get_next_item()
            await FallingEdge(dut.clk)
            await ReadOnly()
            while int(dut.busy.value) & bit:
                await ValueChange(dut.busy)
                await ReadOnly()
            state, kind, noise = macro_model(item, self.weights, self.params)
            self.load(state, kind, noise)
            self.logger.info(f"tile {self.xy}: {item}")
            self.seq_item_port.item_done()


class MacroAgent(uvm_agent):
    """Sequencer, driver (responder) and monitor of one tile's analog macro port."""

    def build_phase(self):
        super().build_phase()
        self.monitor = MacroMonitor.create("monitor", self)
        self.sequencer = MacroSequencer.create("sequencer", self)
        self.driver = MacroDriver.create("driver", self)
        self.driver.monitor = self.monitor

    def connect_phase(self):
        super().connect_phase()
        self.driver.seq_item_port.connect(self.sequencer.seq_item_export)

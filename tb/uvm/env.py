"""The chip environment: agents, NoC monitor, predictor, scoreboard and the virtual sequencer.

::

    ChipUvmTest ── starts a virtual sequence on env.vseqr
    ChipEnv
    ├── host       HostAgent   sequencer ─▶ driver ─▶ HostClient/StreamHostPort ─▶ host_in/host_out
    │                          monitor (host_in + host_out) ──ap──┬──▶ predictor ──ap──▶ scoreboard.expected
    │                                                             └──────────────────────▶ scoreboard.actual
    ├── macro_X_Y  MacroAgent  sequencer ─▶ driver = the tile's MacroResponder (model swapped per item)
    │   (per tile)             monitor (MacroProbe in the responder) ──ap──▶ scoreboard.macro
    ├── noc        NocMonitor  noc_drops, noc_dropped, stale, timeouts, error, busy ──ap──▶ scoreboard.noc
    ├── predictor  ChipPredictor: register shadow + ExactCore per tile + bridge semantics
    ├── scoreboard ChipScoreboard ─▶ ChipChecker (exact vs macro, exact vs model, statistical)
    └── vseqr      ChipVirtualSequencer: .host, .macro[(x, y)]

The cocotb side (clock, reset, host port, every tile's responders, the tiles' weights) is the chip bench's
own :class:`~cimdv.tb.chip.env.ChipTb`, wrapped in a :class:`ChipHarness` that every component gets from
the ConfigDB (key ``harness``); sequences get the geometry and the random generator as a :class:`ChipInfo`
(key ``chip``).
"""

from dataclasses import dataclass

import cocotb
import numpy as np
from cocotb.triggers import Event
from pyuvm import ConfigDB, uvm_env, uvm_sequencer, uvm_test

from cimdv.tb.chip.env import DEFAULTS, FAST_TIMING, ChipTb
from cimdv.tb.sim import params_from_env
from cimdv.tb.vip.config import default_config

from .host_agent import HostAgent
from .macro_agent import MacroAgent
from .noc_monitor import NocMonitor
from .predictor import ChipPredictor
from .scoreboard import ChipScoreboard

__all__ = ["ChipHarness", "ChipInfo", "ChipVirtualSequencer", "ChipEnv", "ChipUvmTest", "macro_name"]


def macro_name(xy):
    """Instance name of tile ``xy``'s macro agent."""
    return f"macro_{xy[0]}_{xy[1]}"


class ChipHarness:
    """The cocotb side shared by the components: a :class:`ChipTb` and the ``ready`` event (set once the
    clock runs and reset is over)."""

    def __init__(self, dut, params, seed):
        self.tb = ChipTb(dut, params, seed)
        self.seed = seed
        self.ready = Event()
        self.host_monitor = None

    async def start(self):
        await self.tb.start()
        self.ready.set()


@dataclass
class ChipInfo:
    """What sequences need to build legal stimulus: the geometry, the register map, the bridge's watchdog,
    the default core timing and one seeded random generator (its draws are the same on every simulator)."""

    cols: int
    rows: int
    core_rows: int
    core_cols: int
    pulse_bits: int
    cores: list
    regmap: object
    watchdog: int
    delta: int
    rng: np.random.Generator
    timing: dict

    @property
    def all(self):
        return (0, 0, self.cols - 1, self.rows - 1)

    def random_area(self):
        """A random rectangle ``(x0, y0, x1, y1)`` of the grid."""
        x0, x1 = sorted(int(v) for v in self.rng.integers(0, self.cols, 2))
        y0, y1 = sorted(int(v) for v in self.rng.integers(0, self.rows, 2))
        return x0, y0, x1, y1

    def random_core(self):
        return self.cores[int(self.rng.integers(len(self.cores)))]

    def config(self, **overrides):
        """A legal :class:`~cimdv.model.exact.CoreConfig` of this geometry with ``overrides``."""
        return default_config(self.core_rows, self.core_cols, **({"pulse_bits": self.pulse_bits} | overrides))


class ChipVirtualSequencer(uvm_sequencer):
    """Runs virtual sequences: ``host`` is the host sequencer, ``macro[(x, y)]`` each tile's, ``chip`` the
    :class:`ChipInfo`. It has no driver; a virtual sequence starts sub-sequences on those sequencers."""

    def build_phase(self):
        super().build_phase()
        self.chip = ConfigDB().get(self, "", "chip")
        self.host = None
        self.macro = {}


class ChipEnv(uvm_env):
    """Every agent, monitor and checker of the chip (see the module docstring)."""

    def build_phase(self):
        super().build_phase()
        tb_params = params_from_env(DEFAULTS)
        self.harness = harness = ChipHarness(cocotb.top, tb_params, cocotb.RANDOM_SEED)
        tb = harness.tb
        if "watchdog" not in tb.params:
            raise ValueError("params: the chip's 'watchdog' must be given (the predictor needs it)")
        chip = ChipInfo(
            cols=tb.cols,
            rows=tb.rows,
            core_rows=tb.core_rows,
            core_cols=tb.core_cols,
            pulse_bits=tb.params.get("pulse_bits", 8),
            cores=list(tb.cores),
            regmap=tb.regmap,
            watchdog=tb.params["watchdog"],
            delta=tb.macro_params.delta,
            rng=np.random.default_rng([harness.seed % (1 << 63), 1]),
            timing=dict(FAST_TIMING),
        )
        ConfigDB().set(self, "*", "harness", harness)
        ConfigDB().set(self, "*", "chip", chip)
        self.host = HostAgent.create("host", self)
        self.macros = {}
        for xy in tb.cores:
            ConfigDB().set(self, f"{macro_name(xy)}*", "xy", xy)
            self.macros[xy] = MacroAgent.create(macro_name(xy), self)
        self.noc = NocMonitor.create("noc", self)
        self.predictor = ChipPredictor.create("predictor", self)
        self.scoreboard = ChipScoreboard.create("scoreboard", self)
        self.vseqr = ChipVirtualSequencer.create("vseqr", self)

    def connect_phase(self):
        super().connect_phase()
        monitor = self.host.monitor
        monitor.ap.connect(self.predictor.analysis_export)
        monitor.ap.connect(self.scoreboard.actual.analysis_export)
        self.predictor.ap.connect(self.scoreboard.expected.analysis_export)
        for agent in self.macros.values():
            agent.monitor.ap.connect(self.scoreboard.macro.analysis_export)
        self.noc.ap.connect(self.scoreboard.noc.analysis_export)
        self.vseqr.host = self.host.sequencer
        self.vseqr.macro = {xy: agent.sequencer for xy, agent in self.macros.items()}
        self.harness.host_monitor = monitor

    async def run_phase(self):
        await self.harness.start()
        self.logger.info(
            f"seed {self.harness.seed}: chip {self.harness.tb.cols}x{self.harness.tb.rows} of "
            f"{self.harness.tb.core_rows}x{self.harness.tb.core_cols} cores"
        )


class ChipUvmTest(uvm_test):
    """Base of the chip's pyuvm tests: builds :class:`ChipEnv` and runs ``vseq_type`` on its virtual
    sequencer. Subclasses set ``vseq_type`` and, for a negative test, ``expected_failure`` (a regular
    expression the scoreboard's report must match; the test is then run with ``expect_fail=True``)."""

    vseq_type = None
    expected_failure = None
    expect_errors = False

    def build_phase(self):
        super().build_phase()
        if self.vseq_type is None:
            raise TypeError(f"{type(self).__name__}.vseq_type must name a virtual sequence class")
        ConfigDB().set(self, "*", "expected_failure", self.expected_failure)
        ConfigDB().set(self, "*", "expect_errors", self.expect_errors)
        self.env = ChipEnv.create("env", self)

    async def run_phase(self):
        self.raise_objection()
        await self.env.harness.ready.wait()
        vseq = self.vseq_type.create("vseq")
        await vseq.start(self.env.vseqr)
        self.drop_objection()

"""Chip-level cocotb environment: the host port driver, an analog responder per tile, and the
golden-model checks of every MVM.

The host speaks through :class:`~cimdv.tb.chip.host.HostClient` over :class:`StreamHostPort`
(the chip's ``host_in``/``host_out`` streams) or :class:`~cimdv.tb.chip.uart.UartHostPort`
(the FPGA top's serial pins): one host API for every chip bench. Every tile's macro port is
answered by a :class:`~cimdv.tb.vip.macro.MacroResponder` running the exact golden model's
cycle-level macro, and every programming port by a
:class:`~cimdv.tb.vip.program.ProgramResponder` running the device model. Results are checked
against :class:`~cimdv.model.exact.ExactCore` (blocks, element by element) and against the sum
of the cores' signed counts (reduced layers).
"""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, FallingEdge, with_timeout

from cimdv.model.exact import ExactCore, MacroParams, MacroState
from cimdv.model.programming import DeviceParams
from cimdv.model.writeverify import ArrayDevice
from cimdv.rtl.chip.chip import tile_member
from cimdv.rtl.core.regs import register_map
from cimdv.tb.chip.host import HostClient
from cimdv.tb.sim import params_from_env
from cimdv.tb.vip.config import core_config_writes, default_config
from cimdv.tb.vip.macro import MacroResponder
from cimdv.tb.vip.program import ProgramResponder
from cimdv.tb.vip.stream import StreamBus, StreamMonitor, StreamSink, StreamSource

__all__ = [
    "ChipTb", "StreamHostPort", "CLOCK_NS", "FAST_TIMING", "TRACE_ENV", "make_chip_tb", "traces_on_each_simulator",
]

#: If set, every response (its words and the simulation time it completed at, ns) is appended
#: there as one JSON line: same seed and DUT must give the same file on every simulator.
TRACE_ENV = "CIMDV_CHIP_TRACE"



def traces_on_each_simulator(params, module, testcase, seed, out_dir):
    """``{sim: [response lines]}``: one cocotb chip test run with the same seed on every simulator, each
    response traced through :data:`TRACE_ENV` (for the Icarus/Verilator agreement tests; pytest side)."""
    from cimdv.tb import sim as simflow

    traces = {}
    for sim in simflow.SIMULATORS:
        out = Path(out_dir) / f"{sim}.jsonl"
        simflow.run("chip", params, sim, module, testcase=testcase, seed=seed, extra_env={TRACE_ENV: str(out)})
        traces[sim] = out.read_text().splitlines()
    return traces


CLOCK_NS = 10
#: Shortest legal timing of the core (docs/analog-boundary.md): the chip tests' default.
FAST_TIMING = {"T_INIT": 1, "T_SAMPLE": 1, "T_INTEG": 1, "T_COMPARE": 1, "T_DECR": 1, "T_NOISE": 1}
#: The host streams' payload, as a layout for the stream VIP (raw words are sent as ints).
HOST_WORD = data.StructLayout({"word": 32})
#: Defaults of the chip under test when the runner passes no parameters.
DEFAULTS = {"cols": 2, "rows": 2, "core_rows": 32, "core_cols": 32, "pulse_bits": 8}


class StreamHostPort:
    """``transact(words)`` over the chip's host streams (the :class:`HostClient` port).

    The source sleeps while ``host_in`` is not ready and the monitor wakes only on transfers,
    so no Python runs on idle clock edges. A response that does not complete within
    ``timeout_ns`` raises ``TimeoutError`` (the bench never hangs).
    """

    def __init__(self, dut, clock, *, timeout_ns=20_000_000, pause=None):
        self.source = StreamSource(StreamBus(dut, "host_in", HOST_WORD), clock)
        out = StreamBus(dut, "host_out", HOST_WORD)
        self.sink = StreamSink(out, clock, pause)
        self.monitor = StreamMonitor(out, clock)
        self.monitor.add_callback(self._on_word)
        self.timeout_ns = timeout_ns
        self.trace = os.environ.get(TRACE_ENV)
        self.words = []
        self._complete = Event()
        self.responses = 0

    def start(self):
        self.sink.start()
        self.monitor.start()

    def stop(self):
        self.sink.stop()
        self.monitor.stop()

    def _on_word(self, beat):
        self.words.append(int(beat["word"]))
        if len(self.words) >= 3 and len(self.words) == (self.words[0] >> 16) + 3:
            self._complete.set()

    def flush(self):
        """Forget a partial response (after a reset)."""
        self.words = []
        self._complete.clear()

    async def transact(self, words):
        self.flush()
        await self.source.send(words, timeout_ns=self.timeout_ns)
        await with_timeout(self._complete.wait(), self.timeout_ns, "ns")
        got, self.words = self.words, []
        self._complete.clear()
        self.responses += 1
        if self.trace:
            with open(self.trace, "a") as f:
                f.write(json.dumps({"ns": get_sim_time("ns"), "words": got}) + "\n")
        return got


class ChipTb:
    """Testbench around one ``chip`` (or the analog side of ``fpga_top``).

    Parameters
    ----------
    dut : cocotb handle
    params : dict
        The chip's elaborated parameters (``cols``, ``rows``, ``core_rows``, ``core_cols``).
    seed : int
    macro : MacroParams
        Δ and θ of every tile's exact macro.
    responders : bool
        Answer the tiles' macro and programming ports from Python (False for ``fpga_top``,
        whose twins are in the design).
    """

    def __init__(self, dut, params, seed, *, macro=None, responders=True, port=None):
        self.dut = dut
        self.params = params
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.cols, self.rows = params["cols"], params["rows"]
        self.core_rows, self.core_cols = params["core_rows"], params["core_cols"]
        self.cores = [(x, y) for y in range(self.rows) for x in range(self.cols)]
        self.all = (0, 0, self.cols - 1, self.rows - 1)
        self.regmap = register_map(rows=self.core_rows, cols=self.core_cols, pulse_bits=params.get("pulse_bits", 8))
        self.macro_params = macro or MacroParams(delta=40)
        self.weights = {xy: self.rng.integers(0, 30, (self.core_rows, self.core_cols)) for xy in self.cores}
        self.models = {xy: ExactCore(w, self.macro_params) for xy, w in self.weights.items()}
        self.responders, self.prog_responders, self.devices = {}, {}, {}
        if responders:
            for x, y in self.cores:
                state = MacroState(self.weights[x, y], self.macro_params)
                self.responders[x, y] = MacroResponder(dut, state, prefix=tile_member("macro", x, y))
                device = ArrayDevice((self.core_rows, self.core_cols), DeviceParams(), seed=seed + 1 + x + 16 * y)
                self.devices[x, y] = device
                self.prog_responders[x, y] = ProgramResponder(dut, device, prefix=tile_member("prog", x, y))
        self.port = port or StreamHostPort(dut, dut.clk)
        self.client = HostClient(self.port, grid=(self.cols, self.rows))

    async def start(self):
        """Clock, reset, agents."""
        Clock(self.dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
        self.port.start()
        for agent in (*self.responders.values(), *self.prog_responders.values()):
            agent.start()
        await self.reset()

    async def reset(self, cycles=3):
        self.dut.rst.value = 1
        for _ in range(cycles):
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await FallingEdge(self.dut.clk)

    def set_weights(self, xy, weights):
        """New weights of tile ``xy`` in the reference (and, backdoor, in its macro responder if any)."""
        self.weights[xy] = weights
        self.models[xy] = ExactCore(weights, self.macro_params)
        if xy in self.responders:
            self.responders[xy].load_weights(MacroState(weights, self.macro_params))

    # ---- configuration -------------------------------------------------------------------
    def config(self, **overrides):
        """A legal CoreConfig for this geometry with the given fields changed."""
        pulse_bits = self.params.get("pulse_bits", 8)
        return default_config(self.core_rows, self.core_cols, **({"pulse_bits": pulse_bits} | overrides))

    async def configure(self, cfg, *, area=None, batch=1, timing=None, watchdog=1 << 20):
        """Every configuration register of the cores of ``area`` (default: all), multicast."""
        writes = core_config_writes(
            self.regmap, cfg, timing=FAST_TIMING if timing is None else timing, batch=batch, watchdog=watchdog
        )
        await self.client.write_all(area or self.all, self.regmap, writes)

    async def csr(self, xy, name):
        return await self.client.csr_read(*xy, self.regmap[name].addr)

    # ---- checks ------------------------------------------------------------------------
    def check_blocks(self, blocks, cfg, area, inputs, *, per_core=False):
        """Every core of ``area`` returned each vector once, in order, equal to the model."""
        x0, y0, x1, y1 = area
        cores = [(x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]
        vectors = len(inputs)
        got = {xy: [] for xy in cores}
        for b in blocks:
            assert (b.x, b.y) in got, f"output block from core ({b.x}, {b.y}) outside {area}"
            got[b.x, b.y].append(b)
        for i, xy in enumerate(cores):
            assert len(got[xy]) == vectors, f"core {xy}: {len(got[xy])} output vectors, expected {vectors}"
            for v, b in enumerate(got[xy]):
                x = inputs[v, i] if per_core else inputs[v]
                want = self.models[xy].mvm(cfg, x)
                for name in ("count", "sign", "sat"):
                    g, w = getattr(b, name)[: cfg.n_out], getattr(want, name)
                    assert np.array_equal(g, w), (
                        f"core {xy} vector {v}: {name} differs at neurons {np.flatnonzero(g != w)[:8].tolist()}: "
                        f"RTL {g[g != w][:8].tolist()}, model {w[g != w][:8].tolist()}"
                    )

    def reduced_reference(self, cfg, area, inputs):
        """``(sums, sat)`` the chip must return for a reduced MVM of ``inputs[0, core]``."""
        x0, y0, x1, y1 = area
        cores = [(x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]
        results = [self.models[xy].mvm(cfg, inputs[0, i]) for i, xy in enumerate(cores)]
        return sum(r.signed for r in results), np.any([r.sat for r in results], axis=0)

    def check_reduced(self, got, cfg, area, inputs):
        sums, sat = got
        want_sums, want_sat = self.reduced_reference(cfg, area, inputs)
        bad = np.flatnonzero((sums[: cfg.n_out] != want_sums) | (sat[: cfg.n_out] != want_sat))
        assert not bad.size, (
            f"reduced sums differ at neurons {bad[:8].tolist()}: RTL {sums[bad[:8]].tolist()}, "
            f"model {want_sums[bad[:8]].tolist()}"
        )


async def make_chip_tb(dut, **knobs):
    tb = ChipTb(dut, params_from_env(DEFAULTS), cocotb.RANDOM_SEED, **knobs)
    await tb.start()
    dut._log.info("seed %d, chip %dx%d of %dx%d cores", tb.seed, tb.cols, tb.rows, tb.core_rows, tb.core_cols)
    return tb

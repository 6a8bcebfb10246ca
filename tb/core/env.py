"""Core-level cocotb environment: agents, golden model and scoreboard around ``CimCore``.

Wiring (style-anchors §3.11): input monitor -> transaction-level model (``ExactCore``)
-> scoreboard <- output monitor. The analog macro is the cycle-level model
(``MacroState``) behind :class:`MacroResponder`; both views share weights and macro
parameters, and the property tests of the model prove them equal, so the comparison here
is exact.

The programming port has its own agents (tb/vip/program.py): a responder answering from a
per-cell device model (``ArrayDevice``), a contract checker, and a monitor feeding a
scoreboard that checks every operation against ``WriteVerifyRef`` and the result registers
of every command. They sleep until ``prog__op`` changes, so tests that never program pay
nothing for them.
"""

from dataclasses import dataclass

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import convert
from cocotb.triggers import Event, FallingEdge, RisingEdge, SimTimeoutError, with_timeout

from cimdv.model.exact import ExactCore, MacroOp, MacroParams, MacroState, run_sequence
from cimdv.model.physical import PhysicalCore, PhysicalMacroState
from cimdv.model.programming import DeviceParams
from cimdv.model.writeverify import ArrayDevice, ProgOp
from cimdv.rtl.core.layouts import input_beat_layout, output_beat_layout
from cimdv.rtl.core.regs import PROG_KEY, PROG_TIMING, ErrorBit, register_map
from cimdv.tb.coverage import functional
from cimdv.tb.scoreboard import InOrderScoreboard
from cimdv.tb.vip.config import config_writes, decode_prog_result, default_config, prog_settings_writes
from cimdv.tb.vip.csr import CsrMaster
from cimdv.tb.vip.macro import MacroContractChecker, MacroResponder
from cimdv.tb.vip.program import ProgramContractChecker, ProgramMonitor, ProgramResponder, ProgramScoreboard
from cimdv.tb.vip.stream import StreamBus, StreamMonitor, StreamSink, StreamSource

__all__ = ["CoreTb", "FAST_TIMING", "FAST_PROG_TIMING", "error_names"]

CLOCK_NS = 10
#: The shortest timing the analog-boundary contract allows (1 cycle per operation).
FAST_TIMING = {"T_INIT": 1, "T_SAMPLE": 1, "T_INTEG": 1, "T_COMPARE": 1, "T_DECR": 1, "T_NOISE": 1}
#: Short write-verify timing for the DV tests (the contract allows 1; 2 and 3 keep them distinct).
FAST_PROG_TIMING = {"T_PULSE": 2, "T_READ": 3}


def _value(handle):
    """Unsigned value of a port, None while it holds X or Z."""
    try:
        return handle.value.to_unsigned()
    except ValueError:
        return None


def error_names(value):
    """Names of the ERROR bits set in ``value``."""
    return sorted(name for name, bit in ErrorBit.names().items() if value >> bit & 1 and name != "CONFIG")


@dataclass(frozen=True)
class CoreOutput:
    """One output vector as seen on the output stream (``n_out`` neurons)."""

    sign: np.ndarray
    count: np.ndarray
    sat: np.ndarray


def compare_results(expected, actual):
    """Differences between two MvmResults, neuron by neuron (empty when equal)."""
    diffs = []
    for field in ("sign", "count", "sat"):
        want = np.asarray(getattr(expected, field)).astype(np.int64)
        got = np.asarray(getattr(actual, field)).astype(np.int64)
        if want.shape != got.shape:
            diffs.append(f"{field}: {got.size} neurons, expected {want.size}")
            continue
        bad = np.flatnonzero(want != got)
        if bad.size:
            shown = ", ".join(f"n{j}: {got[j]} != {want[j]}" for j in bad[:6])
            diffs.append(f"{field} differs at {bad.size} neuron(s) ({shown})")
    return diffs


class _SequenceReference:
    """Transaction-level reference that steps a macro state through the contract's sequence."""

    def __init__(self, state):
        self.state = state

    def mvm(self, cfg, x):
        return run_sequence(cfg, x, self.state)


class CoreTb:
    """Testbench around one ``CimCore`` instance.

    Parameters
    ----------
    dut : cocotb handle
    params : dict
        Elaboration parameters (``rows``, ``cols``, ``lanes``, ``pulse_bits``).
    seed : int
        Seed of the bench's random generator (``cocotb.RANDOM_SEED``).
    in_pause, out_pause : iterator of bool or None
        Idle cycles on the input stream and backpressure on the output stream.
    """

    def __init__(self, dut, params, seed, *, in_pause=None, out_pause=None):
        self.dut = dut
        self.rows = params["rows"]
        self.cols = params["cols"]
        self.lanes = params["lanes"]
        self.pulse_bits = params["pulse_bits"]
        self.lines = max(self.rows, self.cols)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.regmap = register_map(rows=self.rows, cols=self.cols, pulse_bits=self.pulse_bits)
        self.in_bus = StreamBus(dut, "inputs", input_beat_layout(self.lanes))
        self.out_bus = StreamBus(dut, "outputs", output_beat_layout(self.lanes))
        self.csr = CsrMaster(dut, dut.clk, self.regmap)
        self.source = StreamSource(self.in_bus, dut.clk, in_pause)
        self.sink = StreamSink(self.out_bus, dut.clk, out_pause)
        self.in_monitor = StreamMonitor(self.in_bus, dut.clk)
        self.out_monitor = StreamMonitor(self.out_bus, dut.clk)
        self.in_monitor.add_callback(self._on_input_beat)
        self.out_monitor.add_callback(self._on_output_beat)
        self.scoreboard = InOrderScoreboard("core", compare_results)
        self.cfg = None
        self.timing = dict(FAST_TIMING)
        self.reference = None
        self.responder = None
        self.contract = MacroContractChecker(dut)
        self.results = []
        self.expected = []
        self.refused_vectors = 0
        self._in_elems = []
        self._out_elems = []
        self._done = Event()
        dut.start.value = 0
        # Programming port: device model, agents and the write-verify scoreboard.
        self.prog_device = None
        self.prog_responder = None
        self.prog_timing = dict(PROG_TIMING)
        self.prog_contract = ProgramContractChecker(dut, self.rows, self.cols)
        self.prog_monitor = ProgramMonitor(dut)
        self.prog_scoreboard = ProgramScoreboard()
        self.prog_monitor.add_callback(self.prog_scoreboard.on_item)
        # Functional coverage (tb/coverage/functional.py), sampled per transaction: vectors in and out,
        # ERROR reads, resets (the state on the debug port when reset is applied).
        self.fcov = functional.model().use_core(self.pulse_bits)
        self._error_addr = self.regmap["ERROR"].addr
        self.csr.read_callbacks.append(self._on_csr_read)

    # ---- set-up --------------------------------------------------------------------------
    async def start(self, weights=None, macro=None):
        """Start the clock, reset, load weights by backdoor (unless a macro is loaded) and start every agent."""
        Clock(self.dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
        if self.responder is None:
            self.load_weights(weights, macro)
        if self.prog_responder is None:
            self.load_device()
        self.responder.start()
        self.contract.start()
        self.prog_responder.start()
        self.prog_contract.start()
        self.prog_monitor.start()
        self.sink.start()
        self.in_monitor.start()
        self.out_monitor.start()
        cocotb.start_soon(self._watch_done())
        await self.reset()

    async def reset(self, cycles=3, *, now=False):
        """Hold ``rst`` for ``cycles`` clock cycles.

        ``rst`` rises at the next falling edge, or at once with ``now`` (after waking on a change of the
        debug state: the reset then lands in that state). The controller and sequencer state on the
        ``debug`` port at that moment, the state the reset is applied in, is sampled for coverage.
        """
        if not now:
            await FallingEdge(self.dut.clk)
        self.fcov.sample_reset(_value(self.dut.debug__state), _value(self.dut.debug__prog_state))
        self.dut.rst.value = 1
        for _ in range(cycles):
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0

    def random_weights(self, high=64):
        return self.rng.integers(0, high, size=(self.rows, self.cols))

    def load_weights(self, weights=None, macro=None):
        """Backdoor-load conductance codes into the macro and the reference model."""
        if weights is None:
            weights = self.random_weights()
        if macro is None:
            macro = MacroParams(delta=64)
        self.weights = np.asarray(weights)
        self.macro_params = macro
        self.reference = ExactCore(self.weights, macro)
        state = MacroState(self.weights, macro)
        if self.responder is None:
            self.responder = MacroResponder(self.dut, state)
        else:
            self.responder.load_weights(state)

    def load_physical(self, g_uS, params, *, seed, core_seed=0):
        """Backdoor-load a physical macro (noise on): the responder and the reference share it.

        Both run a :class:`PhysicalMacroState` of one :class:`PhysicalCore` with one noise
        seed; the reference steps its copy through the contract's sequence for every vector
        the input monitor completes, so each transaction draws the same noise on both sides
        and the scoreboard compares exactly.
        """
        core = PhysicalCore(g_uS, params, seed=core_seed)
        self.weights = core.g
        self.macro_params = params
        self.reference = _SequenceReference(PhysicalMacroState(core, seed=seed))
        state = PhysicalMacroState(core, seed=seed)
        if self.responder is None:
            self.responder = MacroResponder(self.dut, state)
        else:
            self.responder.load_weights(state)
        return core

    def load_device(self, device=None):
        """The device model behind the programming port (default: realistic cells, seeded by the test's seed)."""
        if device is None:
            device = ArrayDevice((self.rows, self.cols), DeviceParams(), seed=self.seed)
        self.prog_device = device
        if self.prog_responder is None:
            self.prog_responder = ProgramResponder(self.dut, device)
        else:
            self.prog_responder.load_device(device)

    def config(self, **overrides):
        """A legal CoreConfig for this geometry with the given fields changed."""
        return default_config(self.rows, self.cols, **({"pulse_bits": self.pulse_bits} | overrides))

    async def configure(self, cfg, *, timing=None, batch=1, watchdog=100_000):
        """Write every configuration register for ``cfg`` (a legal CoreConfig)."""
        self.cfg = cfg
        self.timing = dict(FAST_TIMING if timing is None else timing)
        await self.write_config(
            backward=int(cfg.backward),
            signed=int(cfg.signed),
            in_bits=cfg.in_bits,
            out_bits=cfg.out_bits,
            pulse_mult=cfg.pulse_mult,
            max_count=cfg.max_count,
            noise_pulses=cfg.noise_pulses,
            line_modes=[int(v) for v in cfg.line_modes],
            out_mask=[int(v) for v in cfg.out_mask],
            timing=self.timing,
            batch=batch,
            watchdog=watchdog,
        )
        self.contract.clock_period_steps = int(convert(CLOCK_NS, "ns", to="step"))
        self.contract.hold_cycles = {
            MacroOp.INIT: self.timing["T_INIT"],
            MacroOp.SAMPLE: self.timing["T_SAMPLE"],
            MacroOp.INTEGRATE: self.timing["T_INTEG"],
            MacroOp.COMPARE: self.timing["T_COMPARE"],
            MacroOp.DECREMENT: self.timing["T_DECR"],
            MacroOp.NOISE: self.timing["T_NOISE"],
        }

    async def write_config(self, *, timing=None, **fields):
        """Write raw configuration values (``config_writes`` fields; may be illegal: the refusal
        tests use that)."""
        writes = config_writes(
            self.regmap, lines=self.lines, timing=FAST_TIMING if timing is None else timing, **fields
        )
        for name, value in writes:
            await self.csr.write(name, value)

    # ---- stimulus ------------------------------------------------------------------------
    def random_inputs(self, n, cfg=None):
        cfg = cfg or self.cfg
        lo, hi = cfg.in_range
        return self.rng.integers(lo, hi + 1, size=(n, cfg.n_in))

    def beats(self, x, *, last_at=None):
        """Input beats of one vector; ``last_at`` moves the ``last`` flag (negative tests)."""
        n_beats = -(-len(x) // self.lanes)
        final = n_beats - 1 if last_at is None else last_at
        beats = []
        for b in range(max(n_beats, final + 1)):
            elems = [int(x[b * self.lanes + k]) if b * self.lanes + k < len(x) else 0 for k in range(self.lanes)]
            beats.append({"elems": elems, "last": int(b == final)})
        return beats

    async def pulse_start(self):
        await FallingEdge(self.dut.clk)
        self.dut.start.value = 1
        await FallingEdge(self.dut.clk)
        self.dut.start.value = 0

    async def run(self, xs, *, use_port=False, timeout_us=None):
        """Run the vectors ``xs`` as one batch (BATCH must equal len(xs)); wait for done.

        Returns the ERROR register value at the end of the run.
        """
        self._done.clear()
        if use_port:
            await self.pulse_start()
        else:
            await self.csr.write_fields("CTRL", start=1)
        beats = [beat for x in xs for beat in self.beats(x)]
        await self.source.send(beats, timeout_ns=(10 * self.max_cycles_per_vector() + 1000) * CLOCK_NS)
        await self.wait_done(timeout_us or self.timeout_us(len(xs)))
        error = await self.csr.read("ERROR")
        if not error and self.expected:
            steps = await self.csr.read("LAST_STEPS")
            if steps != self.expected[-1].steps:
                self.scoreboard.mismatches.append(f"core: LAST_STEPS {steps}, model expects {self.expected[-1].steps}")
        return error

    def max_cycles_per_vector(self):
        cfg, t = self.cfg, self.timing
        pulses = sum(cfg.pulse_mult << b for b in range(cfg.nmag)) * 2
        return (
            2 * (-(-self.lines // self.lanes))
            + t["T_INIT"]
            + pulses * (t["T_SAMPLE"] + t["T_INTEG"])
            + cfg.noise_pulses * (t["T_NOISE"] + 1)
            + (cfg.max_count + 1) * (t["T_DECR"] + t["T_COMPARE"])
            + 50
        )

    def timeout_us(self, vectors):
        return (4 * vectors * self.max_cycles_per_vector() + 2000) * CLOCK_NS / 1000

    async def wait_done(self, timeout_us):
        await with_timeout(self._done.wait(), int(timeout_us * 1000) + 1, "ns")
        await FallingEdge(self.dut.clk)

    async def _watch_done(self):
        while True:
            await RisingEdge(self.dut.done)
            self._done.set()

    # ---- write-verify programming ----------------------------------------------------
    async def unlock(self, key=PROG_KEY):
        """Write ``PROG_KEY`` (the key unlocks programming; any other value locks it)."""
        await self.csr.write("PROG_KEY", key)

    async def prog_configure(self, timing=None):
        """Write ``T_PULSE``/``T_READ`` and give the contract checker the same hold times."""
        self.prog_timing = dict(FAST_PROG_TIMING if timing is None else timing)
        for name, value in self.prog_timing.items():
            await self.csr.write(name, value)
        self.prog_contract.clock_period_steps = int(convert(CLOCK_NS, "ns", to="step"))
        self.prog_contract.hold_cycles = {
            ProgOp.SET: self.prog_timing["T_PULSE"],
            ProgOp.RESET: self.prog_timing["T_PULSE"],
            ProgOp.READ: self.prog_timing["T_READ"],
        }

    async def write_prog_settings(self, settings, *, row=None, col=None):
        """Write the PROG_* setting registers from a WriteVerifySettings (and PROG_CELL if given)."""
        for reg, value in prog_settings_writes(self.regmap, settings, row=row, col=col):
            await self.csr.write(reg, value)

    async def start_program(self, row, col, settings):
        """Write the settings and PROG_CTRL.start, and tell the scoreboard what to expect."""
        await self.write_prog_settings(settings, row=row, col=col)
        self.prog_scoreboard.expect(row, col, settings)
        self._done.clear()
        await self.csr.write_fields("PROG_CTRL", start=1)

    async def program_cell(self, row, col, settings):
        """Program one cell; wait for done; check the result registers against the reference.

        Returns the result registers as a dict (``outcome`` an :class:`Outcome`).
        """
        await self.start_program(row, col, settings)
        try:
            await self.wait_done(self.prog_timeout_us(settings))
        except SimTimeoutError:
            error = await self.csr.read("ERROR")
            raise AssertionError(
                f"programming ({row}, {col}) did not finish; ERROR {error_names(error)}, "
                f"PROG_STATUS 0x{await self.csr.read('PROG_STATUS'):x}"
            ) from None
        result = await self.read_prog_result()
        self.prog_scoreboard.check_result(result)
        return result

    async def read_prog_result(self):
        """PROG_RESULT and PROG_PULSES as a dict."""
        r = await self.csr.read("PROG_RESULT")
        p = await self.csr.read("PROG_PULSES")
        return decode_prog_result(self.regmap, r, p)

    def prog_timeout_us(self, settings):
        """A generous bound on one command's duration (its operation bound x the longest operation)."""
        s = settings
        ramp_s = -(-(max(s.set_end - s.set_start, 0)) // max(s.set_step, 1))
        ramp_r = -(-(max(s.reset_end - s.reset_start, 0)) // max(s.reset_step, 1))
        per_iteration = 2 * (ramp_r + s.pulse_limit) + 2 * (ramp_s + s.pulse_limit) + 1
        ops = min(max(s.max_ops, 1), (s.iter_limit + 1) * per_iteration + 1)
        cycles = ops * (max(self.prog_timing.values()) + 7) + 100
        return 2 * cycles * CLOCK_NS / 1000

    # ---- monitors -> model -> scoreboard ------------------------------------------------
    def _on_input_beat(self, beat):
        self._in_elems.extend(beat["elems"])
        if not beat["last"]:
            return
        framed = len(self._in_elems) == self.lanes * -(-self.cfg.n_in // self.lanes)
        x = np.array(self._in_elems[: self.cfg.n_in], dtype=np.int64)
        self._in_elems = []
        lo, hi = self.cfg.in_range
        if not framed or x.min() < lo or x.max() > hi:
            self.refused_vectors += 1
            return
        expected = self.reference.mvm(self.cfg, x)
        self.expected.append(expected)
        self.scoreboard.add_expected(expected)
        self.fcov.sample_input(self.cfg, x)

    def _on_output_beat(self, beat):
        for e in beat["elems"]:
            self._out_elems.append((e["count"], e["sign"], e["sat"]))
        if not beat["last"]:
            return
        elems = np.array(self._out_elems, dtype=np.int64).reshape(-1, 3)
        self._out_elems = []
        n_out = self.cfg.n_out
        padding = elems[n_out:]
        result = CoreOutput(sign=elems[:n_out, 1], count=elems[:n_out, 0], sat=elems[:n_out, 2])
        if padding.any():
            self.scoreboard.mismatches.append(
                f"core: non-zero padding elements past neuron {n_out}: {padding.tolist()}"
            )
        self.results.append(result)
        self.scoreboard.add_actual(result)
        self.fcov.sample_output(self.cfg, result.sign, result.count, result.sat)

    def _on_csr_read(self, addr, value):
        if addr == self._error_addr:
            self.fcov.sample_error_register(value)

    def check(self):
        """End-of-test checks: scoreboards drained, no macro- or programming-port contract violation."""
        if self.contract.violations:
            shown = "\n  ".join(self.contract.violations[:10])
            raise AssertionError(
                f"analog-boundary contract violated {len(self.contract.violations)} time(s):\n  {shown}"
            )
        problems = self.prog_contract.violations + (self.prog_responder.errors if self.prog_responder else [])
        if problems:
            shown = "\n  ".join(problems[:10])
            raise AssertionError(f"programming-port contract violated {len(problems)} time(s):\n  {shown}")
        self.prog_scoreboard.check()
        return self.scoreboard.check()

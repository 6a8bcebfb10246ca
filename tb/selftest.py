"""Self-test of the simulation flow (:mod:`cimdv.tb.sim`): a stand-in component and its cocotb tests.

``tests/unit/test_sim_flow.py`` builds :func:`make_counter` through :mod:`cimdv.rtl.cli` and runs this
module by dotted name (``cimdv.tb.selftest``) on both simulators. Nothing here is part of the chip.

Environment read by the cocotb tests:

``CIMDV_PARAMS``
    the elaborated parameters (``width``), as for every bench.
``SELFTEST_INTERNALS_VISIBLE``
    ``1`` if the internal signal ``shadow`` must be reachable through VPI, ``0`` if it must not.
``SELFTEST_FAIL``
    ``1`` makes :func:`test_failure_path` fail, to prove failures reach pytest with their seed.
"""

import os
import sys
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, Timer

from cimdv.tb.sim import params_from_env

DEFAULTS = {"width": 8}


def make_counter(*, width: int = 8):
    """Stand-in DUT: ``count`` increments while ``en`` is high; ``wrap`` is combinational.

    Ports: ``clk``, ``rst``, ``en`` (in), ``count`` (out, ``width`` bits), ``wrap`` (out, ``count`` all ones).
    The internal register ``shadow`` (a copy of ``count``) is visible through VPI only in a debug build.
    Amaranth is imported here, not at module level, so the cocotb side never loads it.
    """
    return _counter(width, with_states=False)


def make_counter_with_states(*, width: int = 8):
    """:func:`make_counter`'s counter (same ports) plus two state machines, for the code-coverage self-test.

    ``mode`` is an Amaranth ``m.FSM()`` (STOPPED, COUNTING, WRAPPED) and ``phase`` a register of the enum
    ``CounterState`` (IDLE, RUN, WRAP): the two kinds of state register :mod:`cimdv.tb.coverage.code` covers.
    WRAPPED and WRAP are entered only when the count wraps, which none of this module's tests does (in
    ``width=8``, 255 enabled cycles), so they must show up as coverage holes.
    """
    return _counter(width, with_states=True)


def _counter(width: int, *, with_states: bool):
    from amaranth.hdl import Module, Signal
    from amaranth.lib import enum, wiring
    from amaranth.lib.wiring import In, Out

    class CounterState(enum.Enum, shape=2):
        IDLE = 0
        RUN = 1
        WRAP = 2

    class Counter(wiring.Component):
        def __init__(self):
            super().__init__({"en": In(1), "count": Out(width), "wrap": Out(1)})

        def elaborate(self, platform):
            m = Module()
            shadow = Signal(width, name="shadow")
            with m.If(self.en):
                m.d.sync += shadow.eq(shadow + 1)
            m.d.comb += [
                self.count.eq(shadow),
                self.wrap.eq(shadow == (1 << width) - 1),
            ]
            if with_states:
                wrapping = self.en & self.wrap
                with m.FSM(name="mode"):
                    with m.State("STOPPED"):
                        with m.If(self.en):
                            m.next = "COUNTING"
                    with m.State("COUNTING"):
                        with m.If(wrapping):
                            m.next = "WRAPPED"
                        with m.Elif(~self.en):
                            m.next = "STOPPED"
                    with m.State("WRAPPED"):
                        m.next = "STOPPED"
                phase = Signal(CounterState, name="phase")
                with m.If(wrapping):
                    m.d.sync += phase.eq(CounterState.WRAP)
                with m.Elif(self.en):
                    m.d.sync += phase.eq(CounterState.RUN)
                with m.Else():
                    m.d.sync += phase.eq(CounterState.IDLE)
            return m

    return Counter()


async def _reset(dut) -> None:
    dut.en.value = 0
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await ClockCycles(dut.clk, 2)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def test_comb_output_defined_at_time_zero(dut):
    """Pitfall 5: Amaranth's combinational outputs must not be X before any input changes."""
    await Timer(1, unit="ns")
    assert dut.wrap.value.is_resolvable, f"wrap is {dut.wrap.value} at t=1ns"


@cocotb.test()
async def test_environment(dut):
    """The bench found cimdv through the installed package (no PYTHONPATH) and warnings are errors."""
    assert "PYTHONPATH" not in os.environ, f"PYTHONPATH={os.environ['PYTHONPATH']!r} leaked into the simulator"
    assert sys.warnoptions == ["error"], f"warning options {sys.warnoptions}, expected ['error']"


@cocotb.test()
async def test_counts(dut):
    """Ports are readable and writable through VPI; the count follows ``en``; params reach the bench."""
    params = params_from_env(DEFAULTS)
    width = params["width"]
    assert len(dut.count) == width, f"CIMDV_PARAMS says width={width}, DUT has {len(dut.count)} bits"

    await _reset(dut)
    await ReadOnly()
    assert dut.count.value == 0
    await FallingEdge(dut.clk)
    dut.en.value = 1
    await ClockCycles(dut.clk, 5, rising=False)  # five rising edges with en high
    dut.en.value = 0
    await ReadOnly()
    assert dut.count.value == 5, f"count={int(dut.count.value)} after 5 enabled cycles"

    await ClockCycles(dut.clk, 3, rising=False)
    await ReadOnly()
    assert dut.count.value == 5, "count moved while en was low"
    assert dut.wrap.value == 0


@cocotb.test()
async def test_internal_visibility(dut):
    """Without ``--public-flat-rw`` only ports are reachable; a debug build also exposes internals."""
    expected = os.environ.get("SELFTEST_INTERNALS_VISIBLE")
    visible = hasattr(dut, "shadow")
    dut._log.info("internal signal 'shadow' visible through VPI: %s", visible)
    if expected is not None:
        assert visible == (expected == "1"), f"shadow visible={visible}, expected {expected}"


@cocotb.test()
async def test_clock_speed(dut):
    """Clock speed through cocotb without Python per cycle; uses only ``clk`` and ``rst``, so it runs on any top.

    ``SELFTEST_SPEED_CYCLES`` sets the cycle count (default 1000); the rate is logged.
    """
    cycles = int(os.environ.get("SELFTEST_SPEED_CYCLES", "1000"))
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    started = time.perf_counter()
    await ClockCycles(dut.clk, cycles)
    elapsed = time.perf_counter() - started
    dut._log.info("clock speed: %d cycles in %.3f s = %.0f cycles/s", cycles, elapsed, cycles / elapsed)


@cocotb.test()
async def test_failure_path(dut):
    """Fails on request, so the flow's failure report (seed, reproduce line) can be tested."""
    await Timer(1, unit="ns")
    assert os.environ.get("SELFTEST_FAIL") != "1", "deliberate failure requested by SELFTEST_FAIL=1"

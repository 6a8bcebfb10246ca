"""Speed ceiling of any cocotb test: the same build with only the clock running.

The clock is cocotb's C (GPI) clock and the test awaits one ``Timer`` for the whole span,
so no Python runs while the measured cycles elapse. The DUT sits idle after reset (no
stimulus). Writes ``{"cycles", "wall_s", "cycles_per_s"}`` to ``CIMDV_WORKLOAD_OUT``.
"""

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Timer

__all__ = ["clock_only"]

CLOCK_NS = 10


@cocotb.test()
async def clock_only(dut):
    """Run N cycles with no Python per cycle and report cycles per wall-clock second."""
    cycles = int(os.environ.get("CIMDV_CLOCK_ONLY_CYCLES", "200000"))
    Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    wall0 = time.perf_counter()
    await Timer(cycles * CLOCK_NS, "ns")
    wall = time.perf_counter() - wall0
    report = {"cycles": cycles, "wall_s": wall, "cycles_per_s": cycles / wall}
    out = os.environ.get("CIMDV_WORKLOAD_OUT")
    if out:
        with open(out, "w") as f:
            json.dump(report, f, indent=2)
    dut._log.info("clock only: %s", report)
    assert wall > 0

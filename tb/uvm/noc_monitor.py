"""Passive monitor of the chip's NoC and health status ports (rtl/chip/chip.py ``Chip`` members).

One watcher per port sleeps on a change of its value (``ValueChange``), settles in ``ReadOnly`` and
publishes a :class:`~cimdv.tb.uvm.items.NocEvent` when the settled value differs from the last one, so
nothing runs while the ports are quiet. The scoreboard expects no drop and no error, and exactly the
timeouts and stale packets the predictor derived from the commands.
"""

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, ValueChange
from cocotb.types import Logic
from pyuvm import ConfigDB, uvm_analysis_port, uvm_monitor

from .items import NocEvent

__all__ = ["NOC_PORTS", "NocMonitor"]

#: The watched ports: ``noc_drops`` (packets the meshes dropped), ``noc_dropped`` (any), ``stale`` (late
#: responses drained by the bridge), ``timeouts`` (bridge watchdog expiries), per-core ``error`` and ``busy``.
NOC_PORTS = ("noc_drops", "noc_dropped", "stale", "timeouts", "error", "busy")


def _read(handle):
    value = handle.value
    try:
        return int(value) if isinstance(value, Logic) else value.to_unsigned()
    except ValueError:
        return None  # X or Z


class NocMonitor(uvm_monitor):
    """Publishes every settled change of :data:`NOC_PORTS` on ``ap``; ``values`` holds the latest."""

    def build_phase(self):
        super().build_phase()
        self.ap = uvm_analysis_port("ap", self)
        self.harness = ConfigDB().get(self, "", "harness")
        self.values = {}

    async def run_phase(self):
        await self.harness.ready.wait()
        await ReadOnly()
        dut = self.harness.tb.dut
        for name in NOC_PORTS:
            handle = getattr(dut, name)
            self.values[name] = value = _read(handle)
            self.ap.write(NocEvent(name, value, None, get_sim_time("ns")))
            cocotb.start_soon(self._watch(name, handle))

    async def _watch(self, name, handle):
        last = self.values[name]
        while True:
            await ValueChange(handle)
            await ReadOnly()
            value = _read(handle)
            if value != last:
                self.values[name] = value
                self.ap.write(NocEvent(name, value, last, get_sim_time("ns")))
                last = value

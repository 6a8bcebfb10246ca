"""Mesh-level cocotb environment: a source, a sink and two monitors per endpoint, reference routing, scoreboard.

Wiring: inject monitors -> :class:`~cimdv.tb.noc.scoreboard.PacketScoreboard` (which asks
:class:`~cimdv.tb.noc.model.MeshModel` where each header goes) <- eject monitors. Drivers
never check anything; the scoreboard compares transactions only. Every random choice (traffic,
gaps, eject backpressure) comes from one ``random.Random`` seeded with ``cocotb.RANDOM_SEED``.

``CIMDV_NOC_TRACE``: if set, :meth:`MeshTb.finish` writes a JSON summary there, with the
SHA-256 of the delivered-flit trace (cycle, endpoint, data, last of every ejected flit), and the
trace itself next to it (``<file>.trace``): same seed and DUT must give the same trace on every
simulator.
"""

import hashlib
import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, FallingEdge, ReadOnly, SimTimeoutError, Timer, with_timeout

from cimdv.rtl.noc.mesh import parse_edge_ports
from cimdv.tb.coverage import functional
from cimdv.tb.noc.model import MeshModel
from cimdv.tb.noc.scoreboard import PacketScoreboard
from cimdv.tb.noc.traffic import TrafficGenerator
from cimdv.tb.noc.vip import CLOCK_NS, FlitMonitor, PacketSource, endpoint_buses, random_pause
from cimdv.tb.vip.stream import StreamSink

__all__ = ["MeshTb", "TRACE_ENV"]

TRACE_ENV = "CIMDV_NOC_TRACE"


class MeshTb:
    """Testbench around one ``Mesh``.

    Parameters
    ----------
    dut : cocotb handle
    params : dict
        Elaborated mesh parameters (``cols``, ``rows``, ``order``, ``depth``, ``edge_ports``).
    seed : int
    p_stall : float
        Probability that an eject / edge-output sink holds ``ready`` low in a cycle.
    latency : LatencyBound or None
        Passed to the scoreboard (uncontended tests only).
    """

    def __init__(self, dut, params, seed, *, p_stall=0.0, latency=None):
        self.dut = dut
        self.params = params
        self.seed = seed
        self.rng = random.Random(seed)
        edges = parse_edge_ports(params["edge_ports"], cols=params["cols"], rows=params["rows"])
        self.model = MeshModel(params["cols"], params["rows"], params["order"], edges)
        self.traffic = TrafficGenerator(self.model, self.rng)
        self.scoreboard = PacketScoreboard(self.model, latency=latency, coverage=functional.model())
        self.scoreboard.on_idle(self._on_idle)
        self._idle = Event()
        self._trace = []  # (cycle, endpoint, data, last) of every delivered flit
        self.flits_delivered = 0
        self.sources, self.sinks, self.monitors = {}, {}, []
        for ep in self.model.endpoints:
            into, out = endpoint_buses(dut, ep)
            self.sources[ep] = PacketSource(into, dut.clk)
            pause = random_pause(random.Random(self.rng.getrandbits(32)), p_stall) if p_stall else None
            self.sinks[ep] = StreamSink(out, dut.clk, pause)
            self.monitors.append(FlitMonitor(into, dut.clk, ep, self.scoreboard.injected))
            self.monitors.append(FlitMonitor(out, dut.clk, ep, self._on_eject))
        self.eject_taps = []  # callables (endpoint, flit, cycle) -> list of flits to report (fault injection)

    # ---- set-up --------------------------------------------------------------------------

    async def start(self):
        """Start the clock, reset, start every sink and monitor."""
        Clock(self.dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
        for sink in self.sinks.values():
            sink.start()
        for monitor in self.monitors:
            monitor.start()
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 1
        for _ in range(3):
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0
        self.dut._log.info(
            "seed %d, mesh %dx%d %s depth %d, edge ports %s",
            self.seed,
            self.model.cols,
            self.model.rows,
            self.model.order,
            self.params["depth"],
            list(self.model.edge_ports),
        )
        return self

    @property
    def cycle(self):
        return int(get_sim_time("ns")) // CLOCK_NS

    # ---- stimulus ------------------------------------------------------------------------

    async def run(self, traffic, *, gaps=True, drain_cycles=None):
        """Send ``traffic`` (endpoint -> packets) from every source at once, then wait until delivered."""
        tasks = []
        for src, packets in traffic.items():
            g = self.traffic.gaps(len(packets)) if gaps else None
            tasks.append(cocotb.start_soon(self.sources[src].send(packets, g)))
        for task in tasks:
            await task
        await self.drain(drain_cycles)

    async def send_one(self, packet):
        """Send one packet and wait until every copy is delivered."""
        await self.sources[packet.src].send([packet])
        await self.drain()

    async def drain(self, cycles=None):
        """Wait until every expected copy is delivered and the drop counters reach the reference.

        Gives up after ``cycles`` (default: scaled to the outstanding load); :meth:`finish` then
        reports what is missing. Sleeps on the scoreboard's idle event and on timers, never per cycle.
        """
        limit = cycles or 500 + 20 * self.scoreboard.outstanding
        deadline = self.cycle + limit
        if self.scoreboard.outstanding:
            self._idle.clear()
            try:
                await with_timeout(self._idle.wait(), limit * CLOCK_NS, "ns")
            except SimTimeoutError:
                self.dut._log.warning(
                    "drain: %d copies still outstanding after %d cycles", self.scoreboard.outstanding, limit
                )
        expected = (self.scoreboard.expected_misroutes, self.scoreboard.expected_errors)
        while self.cycle < deadline and await self.counters() != expected:
            await Timer(20 * CLOCK_NS, "ns")  # a dropped packet may still be on its way to the dropping router

    def _on_idle(self):
        self._idle.set()

    def _on_eject(self, endpoint, flit, cycle):
        flits = [flit]
        for tap in self.eject_taps:
            flits = [g for f in flits for g in tap(endpoint, f, cycle)]
        for f in flits:
            self.flits_delivered += 1
            self._trace.append((cycle, str(endpoint), f["data"], f["last"]))
            self.scoreboard.ejected(endpoint, f, cycle)

    # ---- checks --------------------------------------------------------------------------

    async def counters(self):
        """The DUT's (misroutes, errors) counters, read in the read-only phase after the next falling edge."""
        await FallingEdge(self.dut.clk)
        await ReadOnly()
        return int(self.dut.misroutes.value), int(self.dut.errors.value)

    async def finish(self):
        """Check the scoreboard and the DUT's drop counters; write the trace summary if asked to."""
        misroutes, errors = await self.counters()
        # Canonical order: by cycle, then endpoint (simulators call same-cycle monitors in different orders).
        trace = "".join(f"{c} {ep} {d} {last}\n" for c, ep, d, last in sorted(self._trace))
        summary = {
            "seed": self.seed,
            "cycles": self.cycle,
            "packets": self.scoreboard.injected_packets,
            "copies": self.scoreboard.delivered,
            "flits": self.flits_delivered,
            "misroutes": misroutes,
            "errors": errors,
            "trace_sha256": hashlib.sha256(trace.encode()).hexdigest(),
        }
        self.dut._log.info("summary %s", summary)
        out = os.environ.get(TRACE_ENV)
        if out:
            with open(out, "w") as f:
                json.dump(summary, f, sort_keys=True)
            with open(f"{out}.trace", "w") as f:
                f.write(trace)
        self.scoreboard.check(misroutes=misroutes, errors=errors)
        return summary

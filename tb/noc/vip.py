"""Flit-level verification IP for the mesh's ports: packet source and time-stamping flit monitor.

Built on the generic stream VIP (:mod:`cimdv.tb.vip.stream`): beats are ``flit_layout()``
payloads packed and unpacked by a :class:`~cimdv.tb.vip.codec.LayoutCodec` compiled from
the RTL's layout. Same timing discipline: drive after a falling edge, sample in ``ReadOnly``;
nothing wakes on a clock edge while its port is idle or stalled.
"""

from cocotb.simtime import get_sim_time
from cocotb.triggers import Timer

from cimdv.rtl.noc.layouts import flit_layout
from cimdv.rtl.noc.mesh import edge_member
from cimdv.tb.vip.stream import StreamBus, StreamMonitor, StreamSource

__all__ = ["CLOCK_NS", "endpoint_buses", "PacketSource", "FlitMonitor", "random_pause"]

#: Clock period of the NoC benches.
CLOCK_NS = 10


def endpoint_buses(dut, endpoint):
    """(into-network bus, out-of-network bus) of an endpoint: a tile's inject/eject or an edge port."""
    layout = flit_layout()
    if endpoint[0] == "tile":
        _, x, y = endpoint
        return StreamBus(dut, f"inject__{x}__{y}", layout), StreamBus(dut, f"eject__{x}__{y}", layout)
    side, index = endpoint
    return (
        StreamBus(dut, edge_member(side, index, "in"), layout),
        StreamBus(dut, edge_member(side, index, "out"), layout),
    )


def random_pause(rng, p_stall):
    """Pause generator: True (stall) with probability ``p_stall`` each cycle, from ``rng``."""
    if not 0.0 <= p_stall < 1.0:
        raise ValueError(f"p_stall must be in [0, 1), not {p_stall}")
    while True:
        yield rng.random() < p_stall


class PacketSource:
    """Injects packets at one endpoint, back to back unless a gap is asked for.

    Parameters
    ----------
    bus : StreamBus
        The endpoint's into-network stream.
    clock : cocotb handle
    timeout_ns : int
        A flit refused for this long raises ``TimeoutError`` (a hung network never hangs the bench).
    """

    def __init__(self, bus, clock, *, timeout_ns=200_000):
        self.source = StreamSource(bus, clock)
        self.timeout_ns = timeout_ns
        self.packets_sent = 0

    async def send(self, packets, gaps=None):
        """Send ``packets`` (objects with ``flits()``) in order; ``gaps[i]`` idle cycles before packet ``i``.

        Packets without a gap between them go out as one burst (no idle cycle between them).
        """
        gaps = [0] * len(packets) if gaps is None else list(gaps)
        if len(gaps) != len(packets):
            raise ValueError(f"gaps has {len(gaps)} entries for {len(packets)} packets")
        burst = []
        for packet, gap in zip(packets, gaps, strict=True):
            if gap and burst:
                await self._burst(burst)
                burst = []
            if gap:
                await Timer(gap * CLOCK_NS, "ns")  # sleeps, no per-cycle wake-up
            burst.append(packet)
        if burst:
            await self._burst(burst)

    async def _burst(self, packets):
        await self.source.send([f for p in packets for f in p.flits()], timeout_ns=self.timeout_ns)
        self.packets_sent += len(packets)


class FlitMonitor:
    """Passive: reports every flit transferred on one endpoint stream with its clock cycle.

    ``callback(endpoint, flit, cycle)`` gets the unpacked flit (``{"data": ..., "last": ...}``)
    and the cycle number (simulation time / clock period) of the transfer.
    """

    def __init__(self, bus, clock, endpoint, callback):
        self.endpoint = endpoint
        self.monitor = StreamMonitor(bus, clock)
        self.monitor.add_callback(self._on_beat)
        self.callbacks = [callback]

    def _on_beat(self, beat):
        cycle = int(get_sim_time("ns")) // CLOCK_NS
        for callback in self.callbacks:
            callback(self.endpoint, beat, cycle)

    def start(self):
        self.monitor.start()
        return self

    def stop(self):
        self.monitor.stop()

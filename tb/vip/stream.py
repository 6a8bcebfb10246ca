"""Verification IP for Amaranth ``stream.Signature`` ports (``<prefix>__payload/valid/ready``).

Timing discipline (toolchain.md pitfall 9): everything is driven right after a falling
edge and sampled in ``ReadOnly`` of that falling edge, so Icarus and Verilator, which
disagree about values seen at a rising edge, behave the same. Nothing here wakes on
every clock edge while its stream is idle.
"""

import itertools

from cocotb.triggers import Event, FallingEdge, First, ReadOnly, RisingEdge, Timer

from cimdv.tb.vip.agent import Agent
from cimdv.tb.vip.codec import LayoutCodec

__all__ = ["StreamBus", "StreamSource", "StreamSink", "StreamMonitor", "cycle_pause"]


def cycle_pause(pattern=(1, 1, 0)):
    """A pause generator: an endless iterator of booleans, True = stall this cycle."""
    return itertools.cycle(bool(p) for p in pattern)


class StreamBus:
    """The three handles of one stream port and its payload layout.

    Parameters
    ----------
    dut : cocotb handle
        Top-level handle.
    prefix : str
        Amaranth member name (``inputs`` gives ``inputs__payload`` etc.).
    layout : amaranth.lib.data.Layout
        Payload layout from ``rtl/``: beats are packed and unpacked with it (through a
        :class:`~cimdv.tb.vip.codec.LayoutCodec` compiled from it).
    """

    def __init__(self, dut, prefix, layout):
        self.payload = getattr(dut, f"{prefix}__payload")
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.layout = layout
        self.codec = LayoutCodec(layout)
        self.name = prefix

    def pack(self, beat):
        """Integer value of a beat given as nested dicts/lists matching the layout."""
        return self.codec.encode(beat)

    def unpack(self, value):
        """Nested dicts/lists of an integer payload value."""
        return self.codec.decode(value)


class StreamSource:
    """Active producer: drives ``payload`` and ``valid``, honours ``ready``.

    Parameters
    ----------
    bus : StreamBus
    clock : cocotb handle
    pause : iterator of bool or None
        Idle cycles to insert between beats (True = keep ``valid`` low this cycle).
    """

    def __init__(self, bus, clock, pause=None):
        self.bus = bus
        self.clock = clock
        self.pause = pause
        self.bus.valid.value = 0
        self.beats_sent = 0

    async def send(self, beats, *, timeout_ns=10_000_000):
        """Send beats (dicts or ints) in order; returns when the last one is accepted.

        While the consumer is not ready the source sleeps until ``ready`` rises (it does not
        poll every cycle). Raises ``TimeoutError`` naming the stream if ``ready`` stays low
        for ``timeout_ns`` (the bench never hangs on a stuck DUT).
        """
        await FallingEdge(self.clock)
        ready = self.bus.ready
        for beat in beats:
            value = beat if isinstance(beat, int) else self.bus.pack(beat)
            while self.pause is not None and next(self.pause):
                self.bus.valid.value = 0
                await FallingEdge(self.clock)
            self.bus.payload.value = value
            self.bus.valid.value = 1
            while True:
                await ReadOnly()
                if int(ready.value):
                    await FallingEdge(self.clock)  # the rising edge in between took the beat
                    break
                fired = await First(RisingEdge(ready), Timer(timeout_ns, "ns"))
                if isinstance(fired, Timer):
                    await FallingEdge(self.clock)
                    self.bus.valid.value = 0
                    raise TimeoutError(f"{self.bus.name}: ready stayed low for {timeout_ns} ns")
                # Ready rose after a rising edge (driven by the design): look again at the next falling
                # edge. Ready driven by another bench coroutine rises at a falling edge, in the low phase:
                # the coming rising edge takes the beat, so look again now (waiting for the next falling
                # edge would hold the beat for one more cycle and send it twice).
                if int(self.clock.value):
                    await FallingEdge(self.clock)
            self.beats_sent += 1
        self.bus.valid.value = 0


class StreamMonitor(Agent):
    """Passive observer of transfers (``valid & ready`` at a rising edge).

    Callbacks receive the unpacked payload view of every transfer. The monitor sleeps on
    a change of ``valid`` while the stream is idle.
    """

    def __init__(self, bus, clock):
        self.bus = bus
        self.clock = clock
        self.callbacks = []
        self.transfers = 0

    def add_callback(self, callback):
        self.callbacks.append(callback)

    async def _run(self):
        # Transfers are decided at the rising edge; the monitor samples valid, ready and the
        # payload in ReadOnly of the low clock phase before it, when all three are stable.
        valid, clock = self.bus.valid, self.clock
        while True:
            await ReadOnly()
            if not valid.value.is_resolvable or not int(valid.value):
                await RisingEdge(valid)
                await ReadOnly()
            if int(clock.value):
                await FallingEdge(clock)
                await ReadOnly()
            if int(valid.value) and int(self.bus.ready.value):
                beat = self.bus.unpack(self.bus.payload.value.to_unsigned())
                self.transfers += 1
                for callback in self.callbacks:
                    callback(beat)
            elif int(valid.value):
                # Valid but not ready: sleep until either changes instead of every cycle.
                await First(RisingEdge(self.bus.ready), FallingEdge(valid))
                continue
            await RisingEdge(clock)


class StreamSink(Agent):
    """Active consumer: drives ``ready`` (with optional stalls) while the DUT is valid.

    Parameters
    ----------
    bus : StreamBus
    clock : cocotb handle
    pause : iterator of bool or None
        True = hold ``ready`` low this cycle (backpressure).
    """

    def __init__(self, bus, clock, pause=None):
        self.bus = bus
        self.clock = clock
        self.pause = pause
        self.bus.ready.value = 0
        self.idle = Event()

    def stop(self):
        super().stop()
        self.bus.ready.value = 0

    async def _run(self):
        while True:
            await ReadOnly()
            if not self.bus.valid.value.is_resolvable or not int(self.bus.valid.value):
                await FallingEdge(self.clock)
                self.bus.ready.value = 0
                await RisingEdge(self.bus.valid)
            await FallingEdge(self.clock)
            stall = self.pause is not None and next(self.pause)
            self.bus.ready.value = 0 if stall else 1
            await RisingEdge(self.clock)

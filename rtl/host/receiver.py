"""The host bridge's first stage: receive a whole command, check its framing and CRC.

Ref: docs/host-protocol.md.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .crc import Crc32
from .protocol import CommandHeader, Status

__all__ = ["CommandReceiver"]


class CommandReceiver(wiring.Component):
    """Receives ``[header] [args] [crc]`` into a buffer and reports the framing verdict.

    A command whose ``length`` exceeds ``capacity`` is still consumed word by word (to stay
    in frame) and reported ``BAD_LENGTH``; a wrong CRC word is ``BAD_CRC``; a pause of more
    than ``watchdog`` cycles inside a command drops it as ``STALLED``. The verdict and the
    header wait on ``cmd`` until the next stage takes them; meanwhile no new word is taken.

    Parameters
    ----------
    capacity : int
        Argument words the buffer holds (>= 4).
    watchdog : int
        Cycles the host may pause inside a command (>= 1).

    Members
    -------
    words : :py:`In(stream.Signature(32))`
        The host's words.
    cmd : :py:`Out(stream.Signature(...))`
        ``{header: CommandHeader, status: Status}``; ``status`` is OK, BAD_LENGTH, BAD_CRC or
        STALLED. Its ``ready`` releases the buffer.
    arg_addr : :py:`In(range(capacity))`, arg_data : :py:`Out(32)`
        Read port of the argument buffer: ``arg_data`` is the word at ``arg_addr`` of the
        previous cycle.

    Timing
    ------
    One word per cycle; ``cmd.valid`` rises the cycle after the CRC word is taken.
    """

    def __init__(self, *, capacity=256, watchdog=1 << 20):
        for name, value, lo in (("capacity", capacity, 4), ("watchdog", watchdog, 1)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < lo:
                raise ValueError(f"{name} must be >= {lo}, not {value}")
        self.capacity, self.watchdog = capacity, watchdog
        super().__init__(
            {
                "words": In(stream.Signature(32)),
                "cmd": Out(stream.Signature(data.StructLayout({"header": CommandHeader, "status": Status}))),
                "arg_addr": In(range(capacity)),
                "arg_data": Out(32),
            }
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = Crc32()
        m.submodules.buffer = buffer = Memory(shape=32, depth=self.capacity, init=[])
        wr = buffer.write_port()
        rd = buffer.read_port()
        m.d.comb += [rd.addr.eq(self.arg_addr), self.arg_data.eq(rd.data)]

        words, cmd = self.words, self.cmd
        header = Signal(CommandHeader)
        count = Signal(16)
        wd = Signal(range(self.watchdog + 1))
        status = Signal(Status)
        m.d.comb += [cmd.payload.header.eq(header), cmd.payload.status.eq(status), crc.word.eq(words.payload)]

        with m.FSM():
            with m.State("HEADER"):
                m.d.comb += words.ready.eq(1)
                with m.If(words.valid):  # the CRC state is clear here (reset, or DONE)
                    m.d.comb += crc.en.eq(1)
                    m.d.sync += [header.eq(words.payload), count.eq(0), wd.eq(0)]
                    m.next = "ARGS"
            with m.State("ARGS"):
                m.d.comb += words.ready.eq(1)
                with m.If(words.valid):
                    m.d.sync += wd.eq(0)
                    with m.If(count == header.length):  # this word is the CRC
                        m.d.sync += status.eq(Status.OK)
                        with m.If(header.length > self.capacity):
                            m.d.sync += status.eq(Status.BAD_LENGTH)
                        with m.Elif(words.payload != crc.crc):
                            m.d.sync += status.eq(Status.BAD_CRC)
                        m.next = "DONE"
                    with m.Else():
                        m.d.comb += crc.en.eq(1)
                        m.d.sync += count.eq(count + 1)
                        with m.If(count < self.capacity):
                            m.d.comb += [wr.addr.eq(count), wr.data.eq(words.payload), wr.en.eq(1)]
                with m.Else():
                    m.d.sync += wd.eq(wd + 1)
                    with m.If(wd == self.watchdog - 1):
                        m.d.sync += status.eq(Status.STALLED)
                        m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [cmd.valid.eq(1), crc.clear.eq(1)]
                with m.If(cmd.ready):
                    m.next = "HEADER"
        return m

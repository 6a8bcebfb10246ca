"""The host bridge's first stage: receive a whole command, check its framing and CRC.

Ref: docs/host-protocol.md.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..noc.compare import gt_const, lt_const
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
    crc_step_bits : int
        Bits its CRC folds per cycle (:class:`Crc32`'s ``step_bits``): below 32 a word is
        taken every ``32 / crc_step_bits`` cycles.
    shared_crc : bool
        No CRC of its own: it drives the ``crc_*`` ports of a CRC the host bridge shares with
        its responses, never clears it (the bridge does, before its response and after it)
        and takes no word while ``hold`` is high.

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
    crc_en, crc_word : :py:`Out(1)`, :py:`Out(32)`; crc_value, crc_busy : :py:`In(32)`, :py:`In(1)`
        Only with ``shared_crc``: the shared :class:`Crc32`'s ``en``, ``word``, ``crc`` and ``busy``.
    hold : :py:`In(1)`
        Only with ``shared_crc``: no new command starts while it is high (the bridge is
        answering the previous one).

    Timing
    ------
    One word per cycle (every ``32 / crc_step_bits`` cycles); ``cmd.valid`` rises the cycle
    after the CRC word is taken.
    """

    def __init__(self, *, capacity=256, watchdog=1 << 20, crc_step_bits=32, shared_crc=False):
        for name, value, lo in (("capacity", capacity, 4), ("watchdog", watchdog, 1)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < lo:
                raise ValueError(f"{name} must be >= {lo}, not {value}")
        if not isinstance(shared_crc, bool):
            raise TypeError(f"shared_crc must be a bool, not {shared_crc!r}")
        self.capacity, self.watchdog = capacity, watchdog
        self.shared_crc = shared_crc
        self._crc = None if shared_crc else Crc32(step_bits=crc_step_bits)
        members = {
            "words": In(stream.Signature(32)),
            "cmd": Out(stream.Signature(data.StructLayout({"header": CommandHeader, "status": Status}))),
            "arg_addr": In(range(capacity)),
            "arg_data": Out(32),
        }
        if shared_crc:
            members |= {
                "crc_en": Out(1),
                "crc_word": Out(32),
                "crc_value": In(32),
                "crc_busy": In(1),
                "hold": In(1),
            }
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        if self.shared_crc:
            crc_en, crc_clear, crc_value, crc_busy = self.crc_en, Signal(), self.crc_value, self.crc_busy
            crc_word, hold = self.crc_word, self.hold
        else:
            m.submodules.crc = crc = self._crc
            crc_en, crc_clear, crc_value, crc_busy, crc_word = crc.en, crc.clear, crc.crc, crc.busy, crc.word
            hold = 0
        # The buffer is written only while a command comes in and read only while the bridge
        # holds the command (``cmd.valid``), so a read never meets a write that matters: no
        # read-write collision logic (`no_rw_check`).
        m.submodules.buffer = buffer = Memory(shape=32, depth=self.capacity, init=[], attrs={"no_rw_check": 1})
        wr = buffer.write_port()
        rd = buffer.read_port()
        m.d.comb += [rd.addr.eq(self.arg_addr), self.arg_data.eq(rd.data)]

        words, cmd = self.words, self.cmd
        header = Signal(CommandHeader)
        count = Signal(16)
        wd = Signal(range(self.watchdog + 1))
        status = Signal(Status)
        m.d.comb += [cmd.payload.header.eq(header), cmd.payload.status.eq(status), crc_word.eq(words.payload)]

        with m.FSM():
            with m.State("HEADER"):
                m.d.comb += words.ready.eq(~crc_busy & ~hold)
                with m.If(words.valid & words.ready):  # the CRC state is clear here (reset, or DONE)
                    m.d.comb += crc_en.eq(1)
                    m.d.sync += [header.eq(words.payload), count.eq(0), wd.eq(0)]
                    m.next = "ARGS"
            with m.State("ARGS"):
                m.d.comb += words.ready.eq(~crc_busy)
                with m.If(words.valid & ~crc_busy):
                    m.d.sync += wd.eq(0)
                    with m.If(count == header.length):  # this word is the CRC
                        m.d.sync += status.eq(Status.OK)
                        with m.If(gt_const(header.length, self.capacity)):
                            m.d.sync += status.eq(Status.BAD_LENGTH)
                        with m.Elif(words.payload != crc_value):
                            m.d.sync += status.eq(Status.BAD_CRC)
                        m.next = "DONE"
                    with m.Else():
                        m.d.comb += crc_en.eq(1)
                        m.d.sync += count.eq(count + 1)
                        with m.If(lt_const(count, self.capacity)):
                            m.d.comb += [wr.addr.eq(count), wr.data.eq(words.payload), wr.en.eq(1)]
                with m.Elif(~words.valid):
                    m.d.sync += wd.eq(wd + 1)
                    with m.If(wd == self.watchdog - 1):
                        m.d.sync += status.eq(Status.STALLED)
                        m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [cmd.valid.eq(1), crc_clear.eq(1)]
                with m.If(cmd.ready):
                    m.next = "HEADER"
        return m

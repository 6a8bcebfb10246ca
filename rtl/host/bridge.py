"""The host bridge: host commands in, NoC packets out, responses back (docs/host-protocol.md).

Status: PING, CSR_WRITE and CSR_READ are served; MVM is answered BAD_OPCODE until its
sender/collector pair lands (issue 4).
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..noc.layouts import EDGE, Header, PacketKind, flit_layout
from .crc import Crc32
from .protocol import CommandHeader, Opcode, Rect, Status
from .receiver import CommandReceiver

__all__ = ["HostBridge", "BRIDGE_ID"]

#: PING's first payload word.
BRIDGE_ID = 0xC1A0_0001


class HostBridge(wiring.Component):
    """Serves host commands one at a time over the request and response networks.

    Parameters
    ----------
    cols, rows : int
        The grid of tiles (1..15 each).
    core_rows, core_cols : int
        Every core's geometry (reported by PING).
    capacity : int
        Argument words of the command buffer.
    watchdog : int
        Cycles any wait may last: the host inside a command, a packet into the request
        network, a response from a tile.

    Members
    -------
    host_in : :py:`In(stream.Signature(32))`, host_out : :py:`Out(stream.Signature(32))`
        The host port.
    req : :py:`Out(stream.Signature(flit_layout()))`
        Into the request network (its west edge port of row 0).
    rsp : :py:`In(stream.Signature(flit_layout()))`
        From the response network (its west edge port of row 0).
    timeouts : :py:`Out(16)`
        Watchdog expiries since reset (saturating).

    Timing
    ------
    One word or flit per cycle on every port; a command is acted on once its CRC word is in.
    """

    def __init__(self, *, cols, rows, core_rows, core_cols, capacity=256, watchdog=1 << 20):
        for name, value, lo, hi in (
            ("cols", cols, 1, EDGE),
            ("rows", rows, 1, EDGE),
            ("core_rows", core_rows, 1, 1024),
            ("core_cols", core_cols, 1, 1024),
            ("watchdog", watchdog, 1, 1 << 31),
        ):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be {lo}..{hi}, not {value}")
        self.cols, self.rows = cols, rows
        self.core_rows, self.core_cols = core_rows, core_cols
        self.watchdog = watchdog
        self.receiver = CommandReceiver(capacity=capacity, watchdog=watchdog)
        super().__init__(
            {
                "host_in": In(stream.Signature(32)),
                "host_out": Out(stream.Signature(32)),
                "req": Out(stream.Signature(flit_layout())),
                "rsp": In(stream.Signature(flit_layout())),
                "timeouts": Out(16),
            }
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = rx = self.receiver
        m.submodules.crc = crc = Crc32()
        wiring.connect(m, wiring.flipped(self.host_in), rx.words)

        out, req, rsp = self.host_out, self.req, self.rsp
        hdr = Signal(CommandHeader)
        status = Signal(Status)
        args = [Signal(32, name=f"arg{i}") for i in range(3)]
        arg_i = Signal(2)
        rect = Rect(args[0])
        acks = Signal(16)
        status_or = Signal(32)
        expected = Signal(16)
        wd = Signal(range(self.watchdog + 1))
        resp_len = Signal(16)
        payload = [Signal(32, name=f"payload{i}") for i in range(3)]
        sent = Signal(2)
        rsp_kind = Signal(PacketKind)
        timeouts = Signal(16)
        m.d.comb += self.timeouts.eq(timeouts)

        def time_out():
            return [status.eq(Status.TIMEOUT), timeouts.eq(timeouts + (timeouts != 0xFFFF))]

        # Output words go through the response CRC.
        out_word = Signal(32)
        m.d.comb += [out.payload.eq(out_word), crc.word.eq(out_word), crc.en.eq(out.valid & out.ready)]

        def emit(word, then):
            m.d.comb += [out.valid.eq(1), out_word.eq(word)]
            with m.If(out.ready):
                m.next = then

        in_grid = (rect.x0 <= rect.x1) & (rect.y0 <= rect.y1) & (rect.x1 < self.cols) & (rect.y1 < self.rows)
        core_x, core_y = args[0][0:4], args[0][4:8]
        # The request header: combinational from registered destination and kind.
        dst = [Signal(4, name=n) for n in ("dst_x0", "dst_y0", "dst_x1", "dst_y1")]
        req_kind = Signal(PacketKind)
        req_head = Signal(Header)
        m.d.comb += [
            req_head.x0.eq(dst[0]),
            req_head.y0.eq(dst[1]),
            req_head.x1.eq(dst[2]),
            req_head.y1.eq(dst[3]),
            req_head.src_x.eq(EDGE),
            req_head.src_y.eq(0),
            req_head.kind.eq(req_kind),
            req_head.tag.eq(hdr.tag),
        ]
        rsp_head = Header(rsp.payload.data)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += crc.clear.eq(1)
                with m.If(rx.cmd.valid):  # released in CHECK, once the arguments are latched
                    m.d.sync += [hdr.eq(rx.cmd.payload.header), status.eq(rx.cmd.payload.status), arg_i.eq(0)]
                    m.d.sync += [acks.eq(0), status_or.eq(0), resp_len.eq(0), wd.eq(0), sent.eq(0)]
                    m.d.sync += [p.eq(0) for p in payload]
                    m.next = "ARGS"

            with m.State("ARGS"):
                # Latch the first three argument words (read port: one cycle of latency).
                m.d.comb += rx.arg_addr.eq(arg_i)
                with m.If(arg_i != 0):
                    with m.Switch(arg_i):
                        for i in range(1, 3):
                            with m.Case(i):
                                m.d.sync += args[i - 1].eq(rx.arg_data)
                m.d.sync += arg_i.eq(arg_i + 1)
                with m.If(arg_i == 3):
                    m.d.sync += args[2].eq(rx.arg_data)
                    m.next = "CHECK"

            with m.State("CHECK"):
                m.d.comb += rx.cmd.ready.eq(1)
                with m.If(status != Status.OK):
                    m.next = "HEADER"
                with m.Else():
                    with m.Switch(hdr.opcode):
                        with m.Case(Opcode.PING):
                            with m.If(hdr.length != 0):
                                m.d.sync += status.eq(Status.BAD_LENGTH)
                            with m.Else():
                                m.d.sync += [
                                    resp_len.eq(3),
                                    payload[0].eq(BRIDGE_ID),
                                    payload[1].eq(self.cols | self.rows << 8),
                                    payload[2].eq(self.core_rows | self.core_cols << 16),
                                ]
                            m.next = "HEADER"
                        with m.Case(Opcode.CSR_WRITE):
                            with m.If(hdr.length != 3):
                                m.d.sync += status.eq(Status.BAD_LENGTH)
                                m.next = "HEADER"
                            with m.Elif(~in_grid):
                                m.d.sync += status.eq(Status.BAD_CORE)
                                m.next = "HEADER"
                            with m.Else():
                                m.d.sync += [
                                    dst[0].eq(rect.x0),
                                    dst[1].eq(rect.y0),
                                    dst[2].eq(rect.x1),
                                    dst[3].eq(rect.y1),
                                    req_kind.eq(PacketKind.CSR_WRITE),
                                    expected.eq((rect.x1 - rect.x0 + 1) * (rect.y1 - rect.y0 + 1)),
                                    resp_len.eq(2),
                                ]
                                m.next = "SEND"
                        with m.Case(Opcode.CSR_READ):
                            with m.If(hdr.length != 2):
                                m.d.sync += status.eq(Status.BAD_LENGTH)
                                m.next = "HEADER"
                            with m.Elif((core_x >= self.cols) | (core_y >= self.rows) | (args[0][8:] != 0)):
                                m.d.sync += status.eq(Status.BAD_CORE)
                                m.next = "HEADER"
                            with m.Else():
                                m.d.sync += [
                                    dst[0].eq(core_x),
                                    dst[1].eq(core_y),
                                    dst[2].eq(core_x),
                                    dst[3].eq(core_y),
                                    req_kind.eq(PacketKind.CSR_READ),
                                    expected.eq(1),
                                    resp_len.eq(1),
                                ]
                                m.next = "SEND"
                        with m.Default():
                            m.d.sync += status.eq(Status.BAD_OPCODE)
                            m.next = "HEADER"

            with m.State("SEND"):
                # [header] [addr] [data]: CSR_WRITE sends all three, CSR_READ ([core, addr])
                # the first two.
                is_read = req_kind == PacketKind.CSR_READ
                words = [req_head.as_value(), args[1], args[2]]
                with m.Switch(sent):
                    for i, w in enumerate(words):
                        with m.Case(i):
                            m.d.comb += req.payload.data.eq(w)
                m.d.comb += [req.valid.eq(1), req.payload.last.eq(Mux(is_read, sent == 1, sent == 2))]
                with m.If(req.ready):
                    m.d.sync += [sent.eq(sent + 1), wd.eq(0)]
                    with m.If(req.payload.last):
                        m.next = "COLLECT_HEAD"
                with m.Else():
                    m.d.sync += wd.eq(wd + 1)
                    with m.If(wd == self.watchdog - 1):
                        m.d.sync += time_out()
                        m.next = "HEADER"

            with m.State("COLLECT_HEAD"):
                m.d.comb += rsp.ready.eq(1)
                with m.If(acks == expected):
                    m.d.sync += status.eq(Mux(status_or != 0, Status.CORE_ERROR, Status.OK))
                    m.next = "HEADER"
                with m.Elif(rsp.valid):
                    m.d.sync += [rsp_kind.eq(rsp_head.kind), wd.eq(0)]
                    m.next = "COLLECT_WORD"
                with m.Else():
                    m.d.sync += wd.eq(wd + 1)
                    with m.If(wd == self.watchdog - 1):
                        m.d.sync += time_out()
                        m.next = "HEADER"

            with m.State("COLLECT_WORD"):
                m.d.comb += rsp.ready.eq(1)
                with m.If(rsp.valid):
                    m.d.sync += acks.eq(acks + 1)
                    with m.Switch(rsp_kind):
                        with m.Case(PacketKind.ACK):
                            m.d.sync += status_or.eq(status_or | rsp.payload.data)
                        with m.Case(PacketKind.READ_DATA):
                            m.d.sync += payload[0].eq(rsp.payload.data)
                        with m.Default():  # a tile's ERROR packet
                            m.d.sync += status_or.eq(status_or | (1 << 31))
                    with m.If(rsp.payload.last):
                        m.next = "COLLECT_HEAD"
                    with m.Else():
                        m.next = "DRAIN"

            with m.State("DRAIN"):
                m.d.comb += rsp.ready.eq(1)
                with m.If(rsp.valid & rsp.payload.last):
                    m.d.sync += status_or.eq(status_or | (1 << 31))
                    m.next = "COLLECT_HEAD"

            # -- the response: header, payload, status, CRC -----------------------------------
            with m.State("HEADER"):
                with m.If(hdr.opcode == Opcode.CSR_WRITE):
                    m.d.sync += [payload[0].eq(acks), payload[1].eq(status_or)]
                head = Cat(hdr.opcode, hdr.tag, resp_len)  # ResponseHeader
                m.d.sync += sent.eq(0)
                emit(head, "PAYLOAD")

            with m.State("PAYLOAD"):
                with m.If(sent == resp_len):
                    m.next = "STATUS"
                with m.Else():
                    with m.Switch(sent):
                        for i in range(3):
                            with m.Case(i):
                                m.d.comb += [out.valid.eq(1), out_word.eq(payload[i])]
                    with m.If(out.ready):
                        m.d.sync += sent.eq(sent + 1)

            with m.State("STATUS"):
                emit(status.as_value(), "CRC")

            with m.State("CRC"):
                emit(crc.crc, "IDLE")

        return m

"""One tile of the chip: a CIM core and its network interface (NI).

Ref: docs/noc.md (packets), docs/chip.md (the tile's behaviour and its errors).
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..core.core import CimCore
from ..noc.layouts import COORD_BITS, EDGE, Header, PacketKind, flit_layout, pack_header
from .layouts import TILE_LANES, InputFlit, OutputFlit, TileError

__all__ = ["Tile"]


class Tile(wiring.Component):
    """A :class:`CimCore` (three lanes) behind a network interface on two networks.

    The NI serves the request network's packets (docs/noc.md): CSR_WRITE (answered by ACK
    carrying the core's ERROR register after the write), CSR_READ (READ_DATA), START
    (no answer when the core starts; ERROR ``START_REFUSED`` when it refuses) and INPUT
    (flits go to the core's input stream one beat each). The core's output vectors leave
    as OUTPUT packets to the host bridge, tagged with the tag of the START that began the
    run. A malformed packet is drained whole and answered with ERROR; an INPUT flit that
    an idle core (no run in progress) leaves waiting for ``watchdog`` cycles ends the
    packet the same way, so no packet can hold the request network forever. While the core
    runs, it either takes the next vector or ends, within its own watchdogs.

    Parameters
    ----------
    x, y : int or None
        The tile's coordinates (0..14); ``None`` makes them input ports (``x``, ``y``), so one
        Verilog module serves every tile of a chip (:class:`~cimdv.rtl.chip.chip.Chip`).
    rows, cols, pulse_bits : int
        The core's geometry and pulse counter (:class:`CimCore`).
    watchdog : int
        Cycles an INPUT flit may wait for an idle core (>= 1).

    Members
    -------
    req : :py:`In(stream.Signature(flit_layout()))`
        Request packets from the request network.
    rsp : :py:`Out(stream.Signature(flit_layout()))`
        Response packets to the response network (destination: the host bridge).
    macro : :py:`Out(MacroSignature)`
        The core's analog boundary, passed through.
    prog : :py:`Out(ProgramSignature)`
        The core's programming port, passed through (when the core has one).
    busy, error : :py:`Out(1)`
        The core's ``busy`` and ``error``.
    nack : :py:`Out(1)`
        One-cycle pulse when the NI sends an ERROR packet.
    x, y : :py:`In(4)`
        Only when the coordinates are ports: the tile's coordinates (tie them to constants).

    Timing
    ------
    One flit per cycle on each network when the other side is ready. A CSR access costs
    four cycles plus the response's two flits; START is seen by the core the cycle after
    its header is accepted.
    """

    def __init__(self, *, x, y, rows=256, cols=256, pulse_bits=8, watchdog=1 << 16):
        if (x is None) != (y is None):
            raise ValueError(f"x and y must both be integers or both None, not x={x!r}, y={y!r}")
        checks = [("watchdog", watchdog, 1, 1 << 31)]
        if x is not None:
            checks += [("x", x, 0, EDGE - 1), ("y", y, 0, EDGE - 1)]
        for name, value, lo, hi in checks:
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be {lo}..{hi}, not {value}")
        self.watchdog = watchdog
        self.core = CimCore(rows=rows, cols=cols, lanes=TILE_LANES, pulse_bits=pulse_bits)
        core_members = self.core.signature.members
        members = {
            "req": In(stream.Signature(flit_layout())),
            "rsp": Out(stream.Signature(flit_layout())),
            "macro": Out(core_members["macro"].signature),
            "busy": Out(1),
            "error": Out(1),
            "nack": Out(1),
        }
        if "prog" in core_members:
            members["prog"] = Out(core_members["prog"].signature)
        if x is None:
            members["x"] = In(COORD_BITS)
            members["y"] = In(COORD_BITS)
        super().__init__(members)
        if x is not None:  # else the ports of the same names
            self.x, self.y = x, y

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        wiring.connect(m, core.macro, wiring.flipped(self.macro))
        if "prog" in self.signature.members:
            wiring.connect(m, core.prog, wiring.flipped(self.prog))
        m.d.comb += [self.busy.eq(core.busy), self.error.eq(core.error)]
        error_addr = core.regmap["ERROR"].addr

        req, rsp = self.req, self.rsp
        head = Header(req.payload.data)
        kind = Signal(PacketKind)
        tag = Signal(4)
        start_tag = Signal(4)
        addr = Signal(8)
        wdata = Signal(32)
        wd = Signal(range(self.watchdog + 1))
        was_busy = Signal()

        # A one-word response (ACK, READ_DATA or ERROR) waiting for the response FSM.
        resp_pending = Signal()
        resp_kind = Signal(PacketKind)
        resp_word = Signal(32)
        resp_tag = Signal(4)
        fail = Signal(TileError, init=TileError.BAD_KIND)

        def respond(kind_, word):
            return [resp_pending.eq(1), resp_kind.eq(kind_), resp_word.eq(word), resp_tag.eq(tag)]

        def error_word(code, detail=None):
            code = Const(code.value, 8) if isinstance(code, TileError) else code.as_value()
            return Cat(code, Const(0, 24) if detail is None else detail)

        with m.FSM(name="req_fsm"):
            with m.State("IDLE"):
                m.d.comb += req.ready.eq(1)
                with m.If(req.valid):
                    m.d.sync += [kind.eq(head.kind), tag.eq(head.tag)]
                    with m.If(req.payload.last):
                        with m.If(head.kind == PacketKind.START):
                            m.d.comb += core.start.eq(1)
                            m.d.sync += was_busy.eq(core.busy)
                            m.next = "START_CHECK"
                        with m.Else():
                            m.d.sync += fail.eq(TileError.BAD_FORMAT)
                            with m.If(
                                (head.kind != PacketKind.CSR_WRITE)
                                & (head.kind != PacketKind.CSR_READ)
                                & (head.kind != PacketKind.INPUT)
                            ):
                                m.d.sync += fail.eq(TileError.BAD_KIND)
                            m.next = "FAIL"
                    with m.Else():
                        with m.Switch(head.kind):
                            with m.Case(PacketKind.CSR_WRITE, PacketKind.CSR_READ):
                                m.next = "ADDR"
                            with m.Case(PacketKind.INPUT):
                                m.d.sync += wd.eq(0)
                                m.next = "INPUT"
                            with m.Case(PacketKind.START):
                                m.d.sync += fail.eq(TileError.BAD_FORMAT)
                                m.next = "DRAIN"
                            with m.Default():
                                m.d.sync += fail.eq(TileError.BAD_KIND)
                                m.next = "DRAIN"

            with m.State("ADDR"):
                m.d.comb += req.ready.eq(1)
                with m.If(req.valid):
                    m.d.sync += addr.eq(req.payload.data[:8])
                    with m.If(kind == PacketKind.CSR_READ):
                        with m.If(req.payload.last):
                            m.next = "READ"
                        with m.Else():
                            m.d.sync += fail.eq(TileError.BAD_FORMAT)
                            m.next = "DRAIN"
                    with m.Elif(req.payload.last):
                        m.d.sync += fail.eq(TileError.BAD_FORMAT)
                        m.next = "FAIL"
                    with m.Else():
                        m.next = "DATA"

            with m.State("DATA"):
                m.d.comb += req.ready.eq(1)
                with m.If(req.valid):
                    m.d.sync += wdata.eq(req.payload.data)
                    with m.If(req.payload.last):
                        m.next = "WRITE"
                    with m.Else():
                        m.d.sync += fail.eq(TileError.BAD_FORMAT)
                        m.next = "DRAIN"

            with m.State("WRITE"):
                m.d.comb += [core.csr.addr.eq(addr), core.csr.w_data.eq(wdata), core.csr.w_stb.eq(1)]
                m.d.sync += addr.eq(error_addr)
                m.next = "READ"

            with m.State("READ"):
                m.d.comb += [core.csr.addr.eq(addr), core.csr.r_stb.eq(1)]
                m.next = "READ_WAIT"

            with m.State("READ_WAIT"):
                with m.If(kind == PacketKind.CSR_WRITE):
                    m.d.sync += respond(PacketKind.ACK, core.csr.r_data)
                with m.Else():
                    m.d.sync += respond(PacketKind.READ_DATA, core.csr.r_data)
                m.next = "RESPOND"

            with m.State("START_CHECK"):
                # The core raises busy the cycle after it accepts a start (a start during a
                # run is refused with ERROR.start_busy: busy was already high).
                with m.If(core.busy & ~was_busy):
                    m.d.sync += start_tag.eq(tag)  # the run's OUTPUT packets carry it
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [core.csr.addr.eq(error_addr), core.csr.r_stb.eq(1)]
                    m.next = "START_REFUSED"

            with m.State("START_REFUSED"):
                m.d.comb += self.nack.eq(1)
                m.d.sync += respond(PacketKind.ERROR, error_word(TileError.START_REFUSED, core.csr.r_data[:24]))
                m.next = "RESPOND"

            with m.State("INPUT"):
                flit = InputFlit(req.payload.data)
                m.d.comb += [
                    core.inputs.valid.eq(req.valid),
                    core.inputs.payload.elems.eq(flit.elems),
                    core.inputs.payload.last.eq(req.payload.last),
                    req.ready.eq(core.inputs.ready),
                ]
                with m.If(req.valid & core.inputs.ready):
                    m.d.sync += wd.eq(0)
                    with m.If(req.payload.last):
                        m.next = "IDLE"
                with m.Elif(core.busy):
                    # A running core takes its next vector or ends (its own watchdogs bound
                    # both), so only an idle core's refusal counts.
                    m.d.sync += wd.eq(0)
                with m.Elif(req.valid):
                    m.d.sync += wd.eq(wd + 1)
                    with m.If(wd == self.watchdog - 1):
                        m.d.sync += fail.eq(TileError.INPUT_TIMEOUT)
                        m.next = "DRAIN"

            with m.State("DRAIN"):
                m.d.comb += req.ready.eq(1)
                with m.If(req.valid & req.payload.last):
                    m.next = "FAIL"

            with m.State("FAIL"):
                m.d.comb += self.nack.eq(1)
                m.d.sync += respond(PacketKind.ERROR, error_word(fail))
                m.next = "RESPOND"

            with m.State("RESPOND"):
                with m.If(~resp_pending):
                    m.next = "IDLE"

        # ---- response side: one-word responses first, then the core's output vectors ------
        head_kind = Signal(PacketKind)
        head_tag = Signal(4)
        out_head = pack_header(x0=EDGE, y0=0, x1=EDGE, y1=0, src_x=self.x, src_y=self.y, kind=head_kind, tag=head_tag)
        with m.FSM(name="rsp_fsm"):
            with m.State("IDLE"):
                with m.If(resp_pending):
                    m.next = "RESP_HEAD"
                with m.Elif(core.outputs.valid):
                    m.next = "OUT_HEAD"

            with m.State("RESP_HEAD"):
                m.d.comb += [
                    head_kind.eq(resp_kind),
                    head_tag.eq(resp_tag),
                    rsp.valid.eq(1),
                    rsp.payload.data.eq(out_head),
                ]
                with m.If(rsp.ready):
                    m.next = "RESP_WORD"

            with m.State("RESP_WORD"):
                m.d.comb += [rsp.valid.eq(1), rsp.payload.data.eq(resp_word), rsp.payload.last.eq(1)]
                with m.If(rsp.ready):
                    m.d.sync += resp_pending.eq(0)
                    m.next = "IDLE"

            with m.State("OUT_HEAD"):
                m.d.comb += [
                    head_kind.eq(PacketKind.OUTPUT),
                    head_tag.eq(start_tag),
                    rsp.valid.eq(1),
                    rsp.payload.data.eq(out_head),
                ]
                with m.If(rsp.ready):
                    m.next = "OUT_BODY"

            with m.State("OUT_BODY"):
                flit = OutputFlit(rsp.payload.data)
                m.d.comb += [
                    rsp.valid.eq(core.outputs.valid),
                    flit.elems.eq(core.outputs.payload.elems),
                    rsp.payload.last.eq(core.outputs.payload.last),
                    core.outputs.ready.eq(rsp.ready),
                ]
                with m.If(core.outputs.valid & rsp.ready & core.outputs.payload.last):
                    m.next = "IDLE"
        return m

"""The host bridge: host commands in, NoC packets out, responses back (docs/host-protocol.md)."""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..chip.layouts import TILE_LANES, ErrorPayload, OutputFlit, TileError
from ..core.layouts import COUNT_BITS
from ..noc.compare import ge_const, gt_const, lt_const
from ..noc.layouts import EDGE, Header, PacketKind, flit_layout, pack_header
from .crc import CRC_STEP_BITS, Crc32
from .protocol import CommandHeader, MvmFlags, Opcode, Rect, ReducedSum, Status
from .receiver import CommandReceiver

__all__ = ["HostBridge", "BRIDGE_ID", "MVM_FIXED_ARGS"]

#: PING's first payload word.
BRIDGE_ID = 0xC1A0_0001
#: MVM's arguments before its input words: rect, flags, out_elems.
MVM_FIXED_ARGS = 3
#: Largest ``vectors`` of an MVM (an 8-bit field).
MAX_VECTORS = 255


def _ceil_div(a, b):
    return -(-a // b)


def _low(value, bits):
    """The ``bits`` low bits of ``value`` (a 1-bit zero when ``bits`` is 0: a one-wide axis)."""
    return value[:bits] if bits else Const(0, 1)


def _within(value, lo, hi, bits):
    """``lo <= value <= hi`` for a coordinate whose axis needs ``bits`` bits (``value == 0`` when 0)."""
    return (value == 0) if bits == 0 else (value >= lo) & (value <= hi)


def _count_bits(bound):
    """Width of a word count that is at most ``bound``: 17 bits (a sticky flag catches a count
    above 0xFFFF) unless ``bound`` fits 16 bits."""
    return min(17, max(1, bound.bit_length()))


class HostBridge(wiring.Component):
    """Serves host commands one at a time over the request and response networks.

    A command is received whole and checked (:class:`CommandReceiver`, then opcode, length,
    coordinates and arguments) before any packet enters the chip, so a refused command
    changes no state. PING is answered by the bridge; CSR_WRITE is multicast to a rectangle
    and every tile's ACK is counted; CSR_READ is one request and one answer.

    MVM runs a **sender** and a **collector** side by side, because the response network
    must drain while input vectors are still going out (a core that finished a vector waits
    to hand its output over before it takes the next one). The sender multicasts START to
    the rectangle, then streams the input vectors from the command buffer: one multicast
    INPUT packet per vector, or with ``per_core`` one unicast packet per core (raster order).
    The collector first sends the response header (its length is known from the arguments),
    then either streams each OUTPUT packet to the host as a block (a :class:`BlockWord` and
    ``ceil(out_elems / 3)`` words) or, with ``reduce``, adds the cores' signed counts into
    three accumulator banks (one per flit lane: one read-modify-write per bank and flit,
    so a flit is taken every cycle) and sends the sums at the end.

    Waits: the host inside a command (the receiver's watchdog), every request flit, every
    expected response. An MVM ends with ``TIMEOUT`` when nothing moved for ``watchdog``
    cycles (a host that does not read the response is not counted: the host paces its own
    port); the sender then finishes the packet it is in (or abandons it after another
    ``watchdog`` cycles) and the collector zero-fills the payload. A tile's START_REFUSED
    shortens the wait by the outputs that core will not send; any tile ERROR, an OUTPUT of
    the wrong length or from outside the rectangle gives ``CORE_ERROR``. Responses whose tag
    is not the current command's (late answers to a command that timed out) are drained
    and counted in ``stale``, so they can never be taken for current results.

    Parameters
    ----------
    cols, rows : int
        The grid of tiles (1..15 each).
    core_rows, core_cols : int
        Every core's geometry (reported by PING; bounds MVM's ``elems`` and ``out_elems``).
    capacity : int
        Argument words of the command buffer (an MVM's inputs must fit).
    watchdog : int
        Cycles any wait may last.
    crc_step_bits : int
        Bits the CRC units fold per cycle (:class:`Crc32`, one of 1, 2, 4, 8, 16, 32). Below
        32 (an area option for the FPGA, whose host words arrive thousands of cycles apart)
        the host port takes and gives one word every ``32 / crc_step_bits`` cycles.
    shared_crc : bool
        One CRC unit for the commands and the responses instead of two (an area option).
        The receiver then takes no word of the next command until this command's response
        has left (its CRC word included): correct for a host that waits for every response
        before it sends the next command, as docs/host-protocol.md requires.

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
    stale : :py:`Out(16)`
        Response packets drained because their tag was not the current command's (saturating).

    Timing
    ------
    One word or flit per cycle on every port (a host word every ``32 / crc_step_bits``
    cycles); a command is acted on once its CRC word is in. MVM spends
    ``ceil(elems/3) + ceil(out_elems/3) + rect size + vectors + 4`` cycles
    checking its length (adders only, no multiplier) before the first packet.
    """

    def __init__(
        self, *, cols, rows, core_rows, core_cols, capacity=256, watchdog=1 << 20, crc_step_bits=32, shared_crc=False
    ):
        for name, value, lo, hi in (
            ("cols", cols, 1, EDGE),
            ("rows", rows, 1, EDGE),
            ("core_rows", core_rows, 1, 1024),
            ("core_cols", core_cols, 1, 1024),
            ("capacity", capacity, 4, 1 << 16),
            ("watchdog", watchdog, 1, 1 << 31),
        ):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be {lo}..{hi}, not {value}")
        self.cols, self.rows = cols, rows
        self.core_rows, self.core_cols = core_rows, core_cols
        self.lines = max(core_rows, core_cols)
        # Bounds of the MVM counts for this chip: every counter is only as wide as they need.
        cores = cols * rows
        w_max = _ceil_div(self.lines, TILE_LANES)
        self._pkts_max = MAX_VECTORS * cores  # packets one command can expect
        self._step_in_max = cores * w_max  # input words per batch step
        self._step_rsp_max = cores * (1 + w_max)  # response words per batch step
        self._sum_bits = (cores * ((1 << COUNT_BITS) - 1)).bit_length() + 1  # a reduced sum, signed
        self.capacity = capacity
        self.watchdog = watchdog
        if crc_step_bits not in CRC_STEP_BITS:
            choices = ", ".join(map(str, CRC_STEP_BITS))
            raise ValueError(f"crc_step_bits must be one of {choices}, not {crc_step_bits!r}")
        if not isinstance(shared_crc, bool):
            raise TypeError(f"shared_crc must be a bool, not {shared_crc!r}")
        self.crc_step_bits, self.shared_crc = crc_step_bits, shared_crc
        self.receiver = CommandReceiver(
            capacity=capacity, watchdog=watchdog, crc_step_bits=crc_step_bits, shared_crc=shared_crc
        )
        super().__init__(
            {
                "host_in": In(stream.Signature(32)),
                "host_out": Out(stream.Signature(32)),
                "req": Out(stream.Signature(flit_layout())),
                "rsp": In(stream.Signature(flit_layout())),
                "timeouts": Out(16),
                "stale": Out(16),
            }
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = rx = self.receiver
        m.submodules.crc = crc = Crc32(step_bits=self.crc_step_bits)
        wiring.connect(m, wiring.flipped(self.host_in), rx.words)

        # `out` is the response stream as the FSMs see it; a serial CRC holds each word back
        # from the host port until the previous one is folded.
        req, rsp = self.req, self.rsp
        out = stream.Signature(32).create(path=("out",))
        m.d.comb += [
            self.host_out.payload.eq(out.payload),
            self.host_out.valid.eq(out.valid & ~crc.busy),
            out.ready.eq(self.host_out.ready & ~crc.busy),
        ]
        # A shared CRC holds the receiver until this command's response has left, so its header
        # register stays valid; otherwise the bridge keeps its own copy.
        hdr = rx.cmd.payload.header if self.shared_crc else Signal(CommandHeader)
        status = Signal(Status)
        # What the checks and the MVM need of the first three argument words (CSR_WRITE's and
        # CSR_READ's addr and data are sent from the command buffer): the low half of the first
        # (rect or core) and whether its high half is zero; MVM's flags and out_elems as wide as
        # a valid one, and whether they are valid.
        arg0 = Signal(16)
        arg0_hi = Signal()
        arg_i = Signal(2)
        rect = Rect(Cat(arg0, Const(0, 16)))
        elem_bits = self.lines.bit_length()
        flags = Signal(data.StructLayout({"reduce": 1, "per_core": 1, "vectors": 8, "elems": elem_bits}))
        flags_bad = Signal()
        out_elems = Signal(elem_bits)
        out_elems_bad = Signal()

        def load_arg(k, word):
            """Latch argument word ``k`` (0..2) as the checks and the MVM need it."""
            if k == 0:
                return [arg0.eq(word[:16]), arg0_hi.eq(word[16:] != 0)]
            if k == 1:
                f = MvmFlags(word)
                bad = (f["_pad0"] != 0) | (f.vectors == 0) | (f.elems == 0) | gt_const(f.elems, self.lines)
                fields = [flags.reduce.eq(f.reduce), flags.per_core.eq(f.per_core), flags.vectors.eq(f.vectors)]
                return [*fields, flags.elems.eq(f.elems), flags_bad.eq(bad)]
            return [out_elems.eq(word), out_elems_bad.eq((word == 0) | gt_const(word, self.lines))]

        acks = Signal(range(self._pkts_max + 1))
        # CSR_WRITE: the OR of the ACKs' words (bit 31: a tile ERROR or a malformed answer);
        # CSR_READ: the READ_DATA word, with `read_err` for anything else that came back.
        collected = Signal(32)
        read_err = Signal()
        is_read = hdr.opcode == Opcode.CSR_READ

        def fail_answer():
            """A tile ERROR, an unexpected kind or a malformed answer to a CSR command."""
            with m.If(is_read):
                m.d.sync += read_err.eq(1)
            with m.Else():
                m.d.sync += collected.eq(collected | (1 << 31))

        expected = Signal(range(self._pkts_max + 1))
        wd = Signal(range(self.watchdog + 1))
        resp_len = Signal(range(max(3, self.lines, min(0xFFFF, MAX_VECTORS * self._step_rsp_max)) + 1))
        sent = Signal(2)
        rsp_kind = Signal(PacketKind)
        timeouts = Signal(16)
        stale = Signal(16)
        m.d.comb += [self.timeouts.eq(timeouts), self.stale.eq(stale)]

        def saturating_inc(counter):
            return counter.eq(counter + (counter != 0xFFFF))

        def time_out():
            return [status.eq(Status.TIMEOUT), saturating_inc(timeouts)]

        # Output words go through the response CRC; a shared CRC folds the command's words while
        # the bridge is idle (the receiver is held otherwise) and is cleared before and after
        # each response.
        out_word = Signal(32)
        bridge_idle = Signal()
        crc_clear = Signal()
        m.d.comb += out.payload.eq(out_word)
        if self.shared_crc:
            m.d.comb += [
                rx.hold.eq(~bridge_idle),
                rx.crc_value.eq(crc.crc),
                rx.crc_busy.eq(crc.busy),
                crc.en.eq(rx.crc_en | (out.valid & out.ready)),
                crc.word.eq(Mux(bridge_idle, rx.crc_word, out_word)),
                crc.clear.eq(crc_clear),
            ]
        else:
            m.d.comb += [crc.word.eq(out_word), crc.en.eq(out.valid & out.ready), crc.clear.eq(crc_clear | bridge_idle)]
        resp_head = Cat(hdr.opcode, hdr.tag, resp_len.as_unsigned(), Const(0, 16 - len(resp_len)))  # ResponseHeader

        def emit(word, then):
            m.d.comb += [out.valid.eq(1), out_word.eq(word)]
            with m.If(out.ready):
                m.next = then

        # Response packets: `rsp_mid` is set inside a packet, so only a first flit is read as a
        # header; a packet whose tag is not the command's is stale and drained.
        rsp_fire = rsp.valid & rsp.ready
        rsp_mid = Signal()
        with m.If(rsp_fire):
            m.d.sync += rsp_mid.eq(~rsp.payload.last)
        rsp_head = Header(rsp.payload.data)
        rsp_is_head = rsp.valid & ~rsp_mid
        rsp_current = rsp_head.tag == hdr.tag[:4]

        def drain_stale():
            """In a state waiting for a response header: take the rest of a packet, or a stale
            header (its body follows with ``rsp_mid`` set)."""
            m.d.comb += rsp.ready.eq(1)
            with m.If(~rsp_mid):
                m.d.sync += saturating_inc(stale)

        in_grid = (
            (rect.x0 <= rect.x1) & (rect.y0 <= rect.y1) & lt_const(rect.x1, self.cols) & lt_const(rect.y1, self.rows)
        )
        core_x, core_y = arg0[0:4], arg0[4:8]
        # Once checked, coordinates lie in the grid: only the grid's bits of them are used.
        xb, yb = (self.cols - 1).bit_length(), (self.rows - 1).bit_length()
        rect = SimpleNamespace(
            x0=_low(rect.x0, xb), y0=_low(rect.y0, yb), x1=_low(rect.x1, xb), y1=_low(rect.y1, yb), xb=xb, yb=yb
        )
        rect_w = Signal(max(1, xb))
        rect_h = Signal(max(1, yb))
        m.d.comb += [rect_w.eq(rect.x1 - rect.x0), rect_h.eq(rect.y1 - rect.y0)]
        # The request header: combinational from the registered destination and kind (the MVM
        # sender overrides the destination of per-core packets).
        dst = [Signal(4, name=n) for n in ("dst_x0", "dst_y0", "dst_x1", "dst_y1")]
        head_dst = [Signal(4, name=f"head_{d.name}") for d in dst]
        m.d.comb += [h.eq(d) for h, d in zip(head_dst, dst, strict=True)]
        req_kind = Signal(PacketKind)
        req_head = pack_header(
            x0=head_dst[0],
            y0=head_dst[1],
            x1=head_dst[2],
            y1=head_dst[3],
            src_x=EDGE,
            src_y=0,
            kind=req_kind,
            tag=hdr.tag,
        )

        # ---- MVM: sizes (measured with adders), the sender and the collector -----------------
        w_in = Signal(range(self.lines + 1))  # ceil(elems / 3): flits per input vector
        w_in3 = Signal(range(self.lines + 4))
        w_out = Signal(range(self.lines + 1))  # ceil(out_elems / 3): flits per output vector
        w_out3 = Signal(range(self.lines + 4))
        n_cores = Signal(range(self.cols * self.rows + 1))
        # Word counts: any count above 0xFFFF cannot match a 16-bit length, so the sums are 17
        # bits wide with a sticky "too big" flag (cores x (1 + 342) < 2**17 for the step) when
        # this chip can reach such counts; else they are as wide as their largest value.
        step_in = Signal(_count_bits(self._step_in_max))  # input words per batch step
        step_rsp = Signal(_count_bits(self._step_rsp_max))  # response words per batch step (non-reduced)
        total_in = Signal(_count_bits(MAX_VECTORS * self._step_in_max))
        total_rsp = Signal(_count_bits(MAX_VECTORS * self._step_rsp_max))
        big_in = Signal()
        big_rsp = Signal()
        total_pkts = Signal(range(self._pkts_max + 1))
        loop = Signal(8)
        mvm_go = Signal()
        mvm_abort = Signal()  # sticky: the MVM timed out
        mvm_core_err = Signal()
        snd_done = Signal()
        col_done = Signal()
        mvm_finish = Signal()
        progress = Signal()
        m.d.comb += progress.eq((req.valid & req.ready) | rsp_fire | (out.valid & out.ready))

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += bridge_idle.eq(1)
                # Between commands every response is late: drain it.
                with m.If(~rx.cmd.valid):
                    m.d.comb += rsp.ready.eq(1)
                    with m.If(rsp_fire & ~rsp_mid):
                        m.d.sync += saturating_inc(stale)
                with m.Else():  # released in CHECK, once the arguments are latched
                    m.d.sync += [status.eq(rx.cmd.payload.status), arg_i.eq(0)]
                    if not self.shared_crc:
                        m.d.sync += hdr.eq(rx.cmd.payload.header)
                    m.d.sync += [acks.eq(0), collected.eq(0), read_err.eq(0), resp_len.eq(0), wd.eq(0), sent.eq(0)]
                    m.next = "ARGS"

            with m.State("ARGS"):
                # Latch the first three argument words (read port: one cycle of latency).
                m.d.comb += [rx.arg_addr.eq(arg_i), crc_clear.eq(1)]
                with m.Switch(arg_i):
                    for i in range(1, 4):
                        with m.Case(i):
                            m.d.sync += load_arg(i - 1, rx.arg_data)
                m.d.sync += arg_i.eq(arg_i + 1)
                with m.If(arg_i == 3):
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
                                m.d.sync += resp_len.eq(3)
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
                                    expected.eq((rect_w + 1) * (rect_h + 1)),
                                    resp_len.eq(2),
                                ]
                                m.d.comb += rx.cmd.ready.eq(0)  # SEND takes addr and data from the buffer
                                m.next = "SEND"
                        with m.Case(Opcode.CSR_READ):
                            with m.If(hdr.length != 2):
                                m.d.sync += status.eq(Status.BAD_LENGTH)
                                m.next = "HEADER"
                            with m.Elif(
                                ge_const(core_x, self.cols) | ge_const(core_y, self.rows) | (arg0[8:] != 0) | arg0_hi
                            ):
                                m.d.sync += status.eq(Status.BAD_CORE)
                                m.next = "HEADER"
                            with m.Else():
                                m.d.sync += [
                                    dst[0].eq(_low(core_x, xb)),
                                    dst[1].eq(_low(core_y, yb)),
                                    dst[2].eq(_low(core_x, xb)),
                                    dst[3].eq(_low(core_y, yb)),
                                    req_kind.eq(PacketKind.CSR_READ),
                                    expected.eq(1),
                                    resp_len.eq(1),
                                ]
                                m.d.comb += rx.cmd.ready.eq(0)  # SEND takes addr from the buffer
                                m.next = "SEND"
                        with m.Case(Opcode.MVM):
                            bad_arg = flags_bad | out_elems_bad | (flags.reduce & (flags.vectors != 1))
                            with m.If(lt_const(hdr.length, MVM_FIXED_ARGS)):
                                m.d.sync += status.eq(Status.BAD_LENGTH)
                                m.next = "HEADER"
                            with m.Elif(~in_grid | arg0_hi):
                                m.d.sync += status.eq(Status.BAD_CORE)
                                m.next = "HEADER"
                            with m.Elif(bad_arg):
                                m.d.sync += status.eq(Status.BAD_ARG)
                                m.next = "HEADER"
                            with m.Else():
                                m.d.comb += rx.cmd.ready.eq(0)  # the inputs stay in the buffer
                                m.d.sync += [
                                    w_in.eq(0),
                                    w_in3.eq(0),
                                    w_out.eq(0),
                                    w_out3.eq(0),
                                    n_cores.eq((rect_w + 1) * (rect_h + 1)),
                                ]
                                m.next = "MEASURE_W"
                        with m.Default():
                            m.d.sync += status.eq(Status.BAD_OPCODE)
                            m.next = "HEADER"

            # MVM length check, with adders: w = ceil(elems / 3) by counting in threes, then
            # the words of one batch step by adding over the cores, then over the vectors.
            with m.State("MEASURE_W"):
                more_in = w_in3 < flags.elems
                more_out = w_out3 < out_elems
                with m.If(more_in):
                    m.d.sync += [w_in.eq(w_in + 1), w_in3.eq(w_in3 + TILE_LANES)]
                with m.If(more_out):
                    m.d.sync += [w_out.eq(w_out + 1), w_out3.eq(w_out3 + TILE_LANES)]
                with m.If(~more_in & ~more_out):
                    m.d.sync += [
                        step_in.eq(Mux(flags.per_core, 0, w_in)),
                        step_rsp.eq(0),
                        loop.eq(0),
                    ]
                    m.next = "MEASURE_STEP"

            with m.State("MEASURE_STEP"):
                m.d.sync += [step_rsp.eq(step_rsp + 1 + w_out), loop.eq(loop + 1)]
                with m.If(flags.per_core):
                    m.d.sync += step_in.eq(step_in + w_in)
                with m.If(loop + 1 == n_cores):
                    m.d.sync += [
                        total_in.eq(0),
                        total_rsp.eq(0),
                        total_pkts.eq(0),
                        loop.eq(0),
                        big_in.eq(0),
                        big_rsp.eq(0),
                    ]
                    m.next = "MEASURE_TOTAL"

            with m.State("MEASURE_TOTAL"):
                sum_in = total_in + step_in
                sum_rsp = total_rsp + step_rsp
                m.d.sync += [
                    total_in.eq(sum_in),
                    total_rsp.eq(sum_rsp),
                    total_pkts.eq(total_pkts + n_cores),
                    loop.eq(loop + 1),
                ]
                # Only a chip whose counts can pass 0xFFFF needs the flags (else they stay 0).
                for big, count, value in ((big_in, total_in, sum_in), (big_rsp, total_rsp, sum_rsp)):
                    if len(count) > 16:
                        m.d.sync += big.eq(big | (value > 0xFFFF))
                with m.If(loop + 1 == flags.vectors):
                    m.next = "MEASURE_CHECK"

            with m.State("MEASURE_CHECK"):
                m.d.comb += rx.cmd.ready.eq(1)
                with m.If(big_in | (total_in + MVM_FIXED_ARGS != hdr.length)):
                    m.d.sync += status.eq(Status.BAD_LENGTH)
                    m.next = "HEADER"
                with m.Elif(~flags.reduce & big_rsp):
                    m.d.sync += status.eq(Status.BAD_ARG)  # the response would not fit its length field
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += rx.cmd.ready.eq(0)  # the inputs stay in the buffer
                    m.d.comb += mvm_go.eq(1)
                    m.d.sync += [
                        resp_len.eq(Mux(flags.reduce, out_elems, total_rsp)),
                        expected.eq(total_pkts),
                        mvm_abort.eq(0),
                        mvm_core_err.eq(0),
                        wd.eq(0),
                    ]
                    m.next = "MVM"

            with m.State("MVM"):
                with m.If(progress | (out.valid & ~out.ready)):
                    m.d.sync += wd.eq(0)
                with m.Elif(~mvm_abort):
                    m.d.sync += wd.eq(wd + 1)
                    with m.If(wd == self.watchdog - 1):
                        m.d.sync += [*time_out(), mvm_abort.eq(1)]
                with m.If(snd_done & col_done):
                    m.d.comb += [mvm_finish.eq(1), rx.cmd.ready.eq(1)]
                    with m.If(status == Status.OK):
                        m.d.sync += status.eq(Mux(mvm_core_err, Status.CORE_ERROR, Status.OK))
                    m.next = "STATUS"

            with m.State("SEND"):
                # [header] [addr] [data]: CSR_WRITE sends all three, CSR_READ ([core, addr])
                # the first two, addr and data straight from the command buffer (still held):
                # the next word's address is presented as the current word goes.
                read_req = req_kind == PacketKind.CSR_READ
                m.d.comb += [
                    rx.arg_addr.eq(Mux(req.ready, sent + 1, sent)),
                    req.valid.eq(1),
                    req.payload.data.eq(Mux(sent == 0, req_head, rx.arg_data)),
                    req.payload.last.eq(Mux(read_req, sent == 1, sent == 2)),
                ]
                with m.If(req.ready):
                    m.d.sync += [sent.eq(sent + 1), wd.eq(0)]
                    with m.If(req.payload.last):
                        m.d.comb += rx.cmd.ready.eq(1)
                        m.next = "COLLECT_HEAD"
                with m.Else():
                    m.d.sync += wd.eq(wd + 1)
                    with m.If(wd == self.watchdog - 1):
                        m.d.comb += rx.cmd.ready.eq(1)
                        m.d.sync += time_out()
                        m.next = "HEADER"

            with m.State("COLLECT_HEAD"):
                with m.If(acks == expected):
                    failed = Mux(is_read, read_err, collected != 0)
                    m.d.sync += status.eq(Mux(failed, Status.CORE_ERROR, Status.OK))
                    m.next = "HEADER"
                with m.Elif(rsp.valid & (rsp_mid | ~rsp_current)):
                    drain_stale()
                with m.Elif(rsp_is_head & rsp.payload.last):
                    # A header-only answer has no data word: malformed, and complete by itself.
                    m.d.comb += rsp.ready.eq(1)
                    m.d.sync += [acks.eq(acks + 1), wd.eq(0)]
                    fail_answer()
                with m.Elif(rsp_is_head):
                    m.d.comb += rsp.ready.eq(1)
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
                            with m.If(is_read):
                                m.d.sync += read_err.eq(read_err | (rsp.payload.data != 0))
                            with m.Else():
                                m.d.sync += collected.eq(collected | rsp.payload.data)
                        with m.Case(PacketKind.READ_DATA):
                            with m.If(is_read):
                                m.d.sync += collected.eq(rsp.payload.data)
                        with m.Default():  # a tile's ERROR packet, or an OUTPUT with this tag
                            fail_answer()
                    with m.If(rsp.payload.last):
                        m.next = "COLLECT_HEAD"
                    with m.Else():
                        m.next = "DRAIN"

            with m.State("DRAIN"):
                m.d.comb += rsp.ready.eq(1)
                with m.If(rsp.valid & rsp.payload.last):
                    fail_answer()
                    m.next = "COLLECT_HEAD"

            # -- the response: header, payload, status, CRC (MVM's collector sends its own
            # header and payload) ------------------------------------------------------------
            with m.State("HEADER"):
                m.d.sync += sent.eq(0)
                emit(resp_head, "PAYLOAD")

            with m.State("PAYLOAD"):
                with m.If(sent == resp_len):
                    m.next = "STATUS"
                with m.Else():
                    # The payload: PING's constants, CSR_WRITE's [acks, status_or], CSR_READ's
                    # [data] (zero after a timeout); other commands have none here.
                    ping = hdr.opcode == Opcode.PING
                    is_write = hdr.opcode == Opcode.CSR_WRITE
                    geometry = [self.cols | self.rows << 8, self.core_rows | self.core_cols << 16]
                    words = [
                        Mux(ping, BRIDGE_ID, Mux(is_write, acks, collected)),
                        Mux(ping, geometry[0], collected),
                        geometry[1],
                    ]
                    with m.Switch(sent):
                        for i in range(3):
                            with m.Case(i):
                                m.d.comb += [out.valid.eq(1), out_word.eq(words[i])]
                    with m.If(out.ready):
                        m.d.sync += sent.eq(sent + 1)

            with m.State("STATUS"):
                emit(status.as_value(), "CRC")

            with m.State("CRC"):
                m.d.comb += crc_clear.eq(out.ready)  # the shared CRC starts clear for the next command
                emit(crc.crc, "IDLE")

        # What the MVM sender and collector share with the command FSM.
        mvm = SimpleNamespace(
            rx=rx,
            req=req,
            req_head=req_head,
            dst=dst,
            head_dst=head_dst,
            req_kind=req_kind,
            out=out,
            out_word=out_word,
            rsp=rsp,
            rsp_head=rsp_head,
            rsp_is_head=rsp_is_head,
            rsp_mid=rsp_mid,
            rsp_current=rsp_current,
            drain_stale=drain_stale,
            resp_head=resp_head,
            resp_len=resp_len,
            rect=rect,
            flags=flags,
            w_in=w_in,
            w_out=w_out,
            expected=expected,
            go=mvm_go,
            abort=mvm_abort,
            core_err=mvm_core_err,
            finish=mvm_finish,
            snd_done=snd_done,
            col_done=col_done,
        )
        self._sender(m, mvm)
        self._collector(m, mvm)
        return m

    def _sender(self, m, mvm):
        """START to the rectangle, then the input vectors from the command buffer."""
        rx, req, req_head, dst, head_dst, req_kind = mvm.rx, mvm.req, mvm.req_head, mvm.dst, mvm.head_dst, mvm.req_kind
        rect, flags, w_in = mvm.rect, mvm.flags, mvm.w_in
        go, abort, finish, done = mvm.go, mvm.abort, mvm.finish, mvm.snd_done
        ptr = Signal(range(self.capacity + 1))
        word = Signal(range(self.lines + 1))
        cx, cy = Signal(max(1, rect.xb)), Signal(max(1, rect.yb))
        vec = Signal(8)
        wd = Signal(range(self.watchdog + 1))
        fire = req.valid & req.ready

        def next_packet():
            """Advance to the next core (per_core, raster order) or the next vector."""
            last_vec = vec + 1 == flags.vectors
            with m.If(flags.per_core & (cx != rect.x1)):
                m.d.sync += cx.eq(cx + 1)
                m.next = "HEAD"
            with m.Elif(flags.per_core & (cy != rect.y1)):
                m.d.sync += [cx.eq(rect.x0), cy.eq(cy + 1)]
                m.next = "HEAD"
            with m.Else():
                m.d.sync += [cx.eq(rect.x0), cy.eq(rect.y0), vec.eq(vec + 1)]
                with m.If(last_vec):
                    m.next = "DONE"
                with m.Else():
                    m.next = "HEAD"

        with m.FSM(name="sender"):
            with m.State("IDLE"):
                with m.If(go):
                    m.d.sync += [
                        dst[0].eq(rect.x0),
                        dst[1].eq(rect.y0),
                        dst[2].eq(rect.x1),
                        dst[3].eq(rect.y1),
                        req_kind.eq(PacketKind.START),
                        cx.eq(rect.x0),
                        cy.eq(rect.y0),
                        vec.eq(0),
                        ptr.eq(MVM_FIXED_ARGS),
                    ]
                    m.next = "START"

            with m.State("START"):
                m.d.comb += [req.valid.eq(~abort), req.payload.data.eq(req_head), req.payload.last.eq(1)]
                with m.If(abort):
                    m.next = "DONE"
                with m.Elif(req.ready):
                    m.d.sync += req_kind.eq(PacketKind.INPUT)
                    m.next = "HEAD"

            with m.State("HEAD"):
                # Present the first input word's address: its data is there when the body starts.
                # A per-core packet goes to the current core, a multicast one to the rectangle.
                m.d.comb += rx.arg_addr.eq(ptr)
                with m.If(flags.per_core):
                    m.d.comb += [h.eq(c) for h, c in zip(head_dst, (cx, cy, cx, cy), strict=True)]
                m.d.comb += [req.valid.eq(~abort), req.payload.data.eq(req_head)]
                with m.If(abort):
                    m.next = "DONE"
                with m.Elif(req.ready):
                    m.d.sync += [word.eq(0), wd.eq(0)]
                    m.next = "BODY"

            with m.State("BODY"):
                last = word + 1 == w_in
                m.d.comb += [
                    rx.arg_addr.eq(Mux(fire, ptr + 1, ptr)),
                    req.valid.eq(1),
                    req.payload.data.eq(rx.arg_data),
                    req.payload.last.eq(last),
                ]
                with m.If(fire):
                    m.d.sync += [ptr.eq(ptr + 1), word.eq(word + 1), wd.eq(0)]
                    with m.If(last):
                        with m.If(abort):
                            m.next = "DONE"
                        with m.Else():
                            next_packet()
                with m.Elif(abort):
                    # Finishing the packet keeps the wormhole path sound; if even that stalls
                    # for a whole watchdog, the packet is abandoned.
                    m.d.sync += wd.eq(wd + 1)
                    with m.If(wd == self.watchdog - 1):
                        m.next = "DONE"

            with m.State("DONE"):
                m.d.comb += done.eq(1)
                with m.If(finish):
                    m.next = "IDLE"

    def _collector(self, m, mvm):
        """The MVM response: header, OUTPUT blocks (or reduced sums), zero fill."""
        out, out_word, rsp, rsp_head = mvm.out, mvm.out_word, mvm.rsp, mvm.rsp_head
        rsp_is_head, rsp_mid, rsp_current, drain_stale = mvm.rsp_is_head, mvm.rsp_mid, mvm.rsp_current, mvm.drain_stale
        resp_head, resp_len, rect, flags = mvm.resp_head, mvm.resp_len, mvm.rect, mvm.flags
        w_out, expected = mvm.w_out, mvm.expected
        go, abort, core_err, finish, snd_done, done = (
            mvm.go,
            mvm.abort,
            mvm.core_err,
            mvm.finish,
            mvm.snd_done,
            mvm.col_done,
        )
        depth = _ceil_div(self.lines, TILE_LANES)
        banks = []
        for k in range(TILE_LANES):
            # Only as wide as this chip's sums can be (the payload word sign-extends them); in
            # block RAM where the toolchain has it. A read of the address being written is never
            # used (ACC reads a flit's address one cycle before its write-back, and the next
            # flit's after it), so no read-write collision logic is needed (`no_rw_check`).
            acc_layout = data.StructLayout({"sum": signed(self._sum_bits), "sat": 1})
            mem = Memory(shape=acc_layout, depth=depth, init=[], attrs={"ram_style": "block", "no_rw_check": 1})
            m.submodules[f"acc{k}"] = mem
            banks.append((mem.read_port(), mem.write_port()))
        rd_addr = Signal(range(depth))
        for rd, _ in banks:
            m.d.comb += rd.addr.eq(rd_addr)

        received = Signal.like(expected)
        emitted = Signal.like(resp_len)
        flit_i = Signal(range(depth + 2))
        lane = Signal(range(TILE_LANES))
        # Accumulate pipeline: the flit read in the previous cycle is written back now.
        acc_en = Signal()
        acc_addr = Signal(range(depth))
        acc_flit = Signal(OutputFlit)
        m.d.sync += acc_en.eq(0)
        for k, (rd, wr) in enumerate(banks):
            elem = acc_flit.elems[k]
            count = Cat(elem.count, Const(0, 1)).as_signed()
            m.d.comb += [
                wr.en.eq(acc_en),
                wr.addr.eq(acc_addr),
                wr.data.sum.eq(rd.data.sum + Mux(elem.sign, -count, count)),
                wr.data.sat.eq(rd.data.sat | elem.sat),
            ]

        src_in_rect = _within(rsp_head.src_x, rect.x0, rect.x1, rect.xb) & _within(
            rsp_head.src_y, rect.y0, rect.y1, rect.yb
        )
        err = ErrorPayload(rsp.payload.data)
        all_in = snd_done & (received == expected)
        out_fire = out.valid & out.ready

        def word_out(word):
            m.d.comb += [out.valid.eq(1), out_word.eq(word)]
            with m.If(out.ready):
                m.d.sync += emitted.eq(emitted + 1)

        with m.FSM(name="collector"):
            with m.State("IDLE"):
                with m.If(go):
                    m.d.sync += [received.eq(0), emitted.eq(0), flit_i.eq(0)]
                    m.next = "RESP_HEAD"

            with m.State("RESP_HEAD"):
                m.d.comb += [out.valid.eq(1), out_word.eq(resp_head)]
                with m.If(out.ready):
                    m.next = "WAIT"
                    with m.If(flags.reduce):
                        m.next = "CLEAR"

            with m.State("CLEAR"):
                m.d.comb += rd_addr.eq(0)
                for _, wr in banks:
                    m.d.comb += [wr.en.eq(1), wr.addr.eq(flit_i), wr.data.eq(0)]
                m.d.sync += flit_i.eq(flit_i + 1)
                with m.If(flit_i == depth - 1):
                    m.next = "WAIT"

            with m.State("WAIT"):
                with m.If(all_in | abort):
                    m.d.sync += [flit_i.eq(0), lane.eq(0)]
                    m.next = "FILL"
                    with m.If(flags.reduce):
                        m.next = "SUMS_PRIME"
                with m.Elif(rsp.valid & (rsp_mid | ~rsp_current)):
                    drain_stale()
                with m.Elif(rsp_is_head & rsp.payload.last):
                    # Every answer has a body; a header-only packet is malformed and complete by itself.
                    m.d.comb += rsp.ready.eq(1)
                    m.d.sync += core_err.eq(1)
                with m.Elif(rsp_is_head):
                    with m.Switch(rsp_head.kind):
                        with m.Case(PacketKind.OUTPUT):
                            with m.If(~src_in_rect):
                                m.d.comb += rsp.ready.eq(1)
                                m.d.sync += core_err.eq(1)
                                m.next = "DRAIN"
                            with m.Elif(flags.reduce):
                                m.d.comb += rsp.ready.eq(1)
                                m.d.sync += flit_i.eq(0)
                                m.next = "ACC"
                            with m.Else():
                                m.next = "BLOCK"
                        with m.Case(PacketKind.ERROR):
                            m.d.comb += rsp.ready.eq(1)
                            m.d.sync += core_err.eq(1)
                            m.next = "ERROR"
                        with m.Default():
                            m.d.comb += rsp.ready.eq(1)
                            m.d.sync += core_err.eq(1)
                            m.next = "DRAIN"

            with m.State("ERROR"):
                # A core that refused START sends no output for this MVM: stop waiting for it.
                m.d.comb += rsp.ready.eq(1)
                with m.If(rsp.valid):
                    with m.If((err.code == TileError.START_REFUSED) & (expected >= flags.vectors)):
                        m.d.sync += expected.eq(expected - flags.vectors)
                    m.next = "WAIT"
                    with m.If(~rsp.payload.last):
                        m.next = "DRAIN"
                with m.Elif(abort):
                    m.next = "WAIT"

            with m.State("DRAIN"):
                m.d.comb += rsp.ready.eq(1)
                with m.If((rsp.valid & rsp.payload.last) | abort):
                    m.next = "WAIT"

            with m.State("BLOCK"):
                m.d.comb += rsp.ready.eq(out.ready)
                word_out(Cat(rsp_head.src_x, rsp_head.src_y))  # BlockWord
                with m.If(out.ready):
                    m.d.sync += flit_i.eq(0)
                    m.next = "BODY"

            with m.State("BODY"):
                m.d.comb += [out.valid.eq(rsp.valid), out_word.eq(rsp.payload.data), rsp.ready.eq(out.ready)]
                with m.If(out_fire):
                    m.d.sync += [emitted.eq(emitted + 1), flit_i.eq(flit_i + 1)]
                    with m.If(rsp.payload.last):
                        m.d.sync += received.eq(received + 1)
                        with m.If(flit_i + 1 != w_out):
                            m.d.sync += core_err.eq(1)  # short: pad it to the announced size
                            m.next = "PAD"
                        with m.Else():
                            m.next = "WAIT"
                    with m.Elif(flit_i + 1 == w_out):
                        m.d.sync += [core_err.eq(1), received.eq(received + 1)]  # long: drop the rest
                        m.next = "DRAIN"
                with m.Elif(abort & ~out.valid):
                    m.next = "WAIT"  # abandoned mid-packet: FILL completes the block with zeros

            with m.State("PAD"):
                word_out(0)
                with m.If(out.ready):
                    m.d.sync += flit_i.eq(flit_i + 1)
                    with m.If(flit_i + 1 == w_out):
                        m.next = "WAIT"

            with m.State("ACC"):
                m.d.comb += [rsp.ready.eq(1), rd_addr.eq(flit_i)]
                with m.If(rsp.valid):
                    in_range = flit_i < w_out
                    m.d.sync += [
                        acc_en.eq(in_range),
                        acc_addr.eq(flit_i),
                        acc_flit.eq(rsp.payload.data),
                        flit_i.eq(flit_i + in_range),
                    ]
                    with m.If(rsp.payload.last):
                        m.d.sync += received.eq(received + 1)
                        with m.If(~in_range | (flit_i + 1 != w_out)):
                            m.d.sync += core_err.eq(1)
                        m.next = "WAIT"
                    with m.Elif(~in_range):
                        m.d.sync += core_err.eq(1)
                with m.Elif(abort):
                    m.next = "WAIT"

            # Reduced sums: neuron i is lane i % 3 of bank address i // 3; read one ahead.
            with m.State("SUMS_PRIME"):
                m.d.comb += rd_addr.eq(0)
                m.next = "SUMS"

            with m.State("SUMS"):
                step = out_fire & (lane == TILE_LANES - 1)
                m.d.comb += rd_addr.eq(Mux(step, flit_i + 1, flit_i))
                with m.Switch(lane):
                    for k, (rd, _) in enumerate(banks):
                        with m.Case(k):
                            total = Value.cast(rd.data.sum)  # a ReducedSum word: sign-extended, sat, pad
                            sign = total[-1].replicate(ReducedSum.as_shape()["sum"].shape.width - len(total))
                            word_out(Cat(total, sign, rd.data.sat, Const(0, 7)))
                with m.If(out_fire):
                    m.d.sync += lane.eq(Mux(lane == TILE_LANES - 1, 0, lane + 1))
                    with m.If(step):
                        m.d.sync += flit_i.eq(flit_i + 1)
                    with m.If(emitted + 1 == resp_len):
                        m.next = "DONE"

            with m.State("FILL"):
                with m.If(emitted == resp_len):
                    m.next = "DONE"
                with m.Else():
                    word_out(0)

            with m.State("DONE"):
                m.d.comb += done.eq(1)
                with m.If(finish):
                    m.next = "IDLE"

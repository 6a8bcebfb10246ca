"""cocotb tests of the host bridge facing a rogue tile (the ``bridge`` top, docs/host-protocol.md).

The chip's real tiles never break the network protocol, so the bridge's defensive paths (a
multi-flit answer to a CSR command, an OUTPUT from outside the MVM's rectangle, longer or
shorter than announced, a response of an unexpected kind) are only reachable with a stand-in:
:class:`RogueTiles` replaces both meshes and every tile on the bridge's ``req`` / ``rsp`` ports.
It answers like a well-behaved tile (ACK, READ_DATA from a register file, one OUTPUT of random
elements per INPUT vector and core) unless a one-shot fault is armed, which rewrites the next
answer. Every answer the stand-in sends is recorded, so each test predicts the bridge's
response word by word: status, payload (blocks cut or zero-padded to the announced size), and
the next command working. The host speaks through :class:`~cimdv.tb.chip.host.HostClient` over
the chip bench's :class:`~cimdv.tb.chip.env.StreamHostPort`.
"""

from collections import deque

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import Event, FallingEdge

from cimdv.rtl.chip.layouts import TILE_LANES, ErrorPayload, OutputFlit, TileError
from cimdv.rtl.host.bridge import BRIDGE_ID
from cimdv.rtl.host.protocol import Opcode, Status
from cimdv.rtl.noc.layouts import PacketKind, flit_layout
from cimdv.tb.chip import host, packets
from cimdv.tb.chip.env import CLOCK_NS, StreamHostPort
from cimdv.tb.sim import params_from_env
from cimdv.tb.vip.agent import Agent
from cimdv.tb.vip.codec import LayoutCodec
from cimdv.tb.vip.stream import StreamBus, StreamMonitor, StreamSink, StreamSource

__all__ = ["RogueTiles", "BridgeTb", "DEFAULTS"]

#: Parameters of the bridge when the runner passes none (``cimdv.rtl.host.standalone.bridge_top``'s).
DEFAULTS = {"cols": 2, "rows": 2, "core_rows": 32, "core_cols": 32, "capacity": 256, "watchdog": 2000}
#: The word a fault appends to a packet.
EXTRA = 0x5A5A_A5A5
_OUTPUT = LayoutCodec(OutputFlit)
_ERROR = LayoutCodec(ErrorPayload)


def _flits(words, last=True):
    """``(data, last)`` flits of ``words``; ``last`` on the final one unless ``last`` is False."""
    return [(int(w) & 0xFFFF_FFFF, last and i == len(words) - 1) for i, w in enumerate(words)]


class RogueTiles(Agent):
    """Every tile, and both meshes, on the bridge's ``req`` and ``rsp`` ports.

    Event-driven: a :class:`StreamMonitor` on ``req`` calls back on every request flit and the
    answer is built when a packet's last flit arrives; one task sends queued answers on ``rsp``
    through a :class:`StreamSource` and sleeps on an event while there are none.

    Parameters
    ----------
    dut : cocotb handle
        The ``bridge`` top.
    rng : numpy.random.Generator
        Draws the OUTPUT elements.
    out_elems : int
        Neurons per OUTPUT vector (a real tile's configuration; the bridge cannot see it).

    Attributes
    ----------
    sent : list of (Packet, list of flits)
        Every answer sent, with the request it answers.
    outputs : list of ((x, y), list of int)
        The payload words of every well-formed OUTPUT packet sent, in order.
    """

    def __init__(self, dut, rng, *, out_elems=3):
        req = StreamBus(dut, "req", flit_layout())
        self.sink = StreamSink(req, dut.clk)
        self.monitor = StreamMonitor(req, dut.clk)
        self.monitor.add_callback(self._on_flit)
        self.source = StreamSource(StreamBus(dut, "rsp", flit_layout()), dut.clk)
        self.rng = rng
        self.out_elems = out_elems
        self.regs = {}
        self.requests = []
        self.sent = []
        self.outputs = []
        self._flits = []
        self._fault = None
        self._queue = deque()
        self._wake = Event()

    def start(self):
        self.sink.start()
        self.monitor.start()
        return super().start()

    def stop(self):
        self.sink.stop()
        self.monitor.stop()
        super().stop()

    def arm(self, fault):
        """Rewrite the next answer: ``fault(request, (x, y), answer_flits)`` returns the packets to send."""
        self._fault = fault

    @property
    def armed(self):
        """A fault is waiting for its answer."""
        return self._fault is not None

    def output_words(self):
        """Payload words of one random OUTPUT vector (``ceil(out_elems / 3)`` flits)."""
        words = []
        for _ in range(-(-self.out_elems // TILE_LANES)):
            elems = [
                {"count": int(c), "sign": int(s), "sat": int(t)}
                for c, s, t in zip(
                    self.rng.integers(0, 128, TILE_LANES),
                    self.rng.integers(0, 2, TILE_LANES),
                    self.rng.integers(0, 2, TILE_LANES),
                    strict=True,
                )
            ]
            words.append(_OUTPUT.encode({"elems": elems}))
        return words

    def _answer(self, p, xy):
        """The flits a well-behaved tile ``xy`` sends for request ``p`` (None: no answer)."""
        if p.kind == PacketKind.CSR_WRITE:
            self.regs[(*xy, p.payload[0])] = p.payload[1]
            return packets.request(PacketKind.ACK, packets.HOST, [0], tag=p.tag, src=xy)
        if p.kind == PacketKind.CSR_READ:
            value = self.regs.get((*xy, p.payload[0]), 0)
            return packets.request(PacketKind.READ_DATA, packets.HOST, [value], tag=p.tag, src=xy)
        if p.kind == PacketKind.INPUT:
            return packets.request(PacketKind.OUTPUT, packets.HOST, self.output_words(), tag=p.tag, src=xy)
        return None  # START: a tile answers it only when its core refuses

    def _on_flit(self, beat):
        self._flits.append((int(beat["data"]), bool(beat["last"])))
        if not beat["last"]:
            return
        p = packets.parse(self._flits)
        self._flits = []
        self.requests.append(p)
        x0, y0, x1, y1 = p.dst
        for y in range(y0, y1 + 1):
            for x in range(x0, x1 + 1):
                answer = self._answer(p, (x, y))
                if answer is None:
                    continue
                fault, self._fault = self._fault, None
                for packet in [answer] if fault is None else fault(p, (x, y), answer):
                    if packet is answer and p.kind == PacketKind.INPUT:  # a well-formed OUTPUT
                        self.outputs.append(((x, y), [d for d, _ in answer[1:]]))
                    self._queue.append((p, packet))
        self._wake.set()

    async def _run(self):
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            p, flits = self._queue.popleft()
            self.sent.append((p, flits))
            await self.source.send([{"data": d, "last": int(last)} for d, last in flits])


class BridgeTb:
    """The ``bridge`` top with :class:`RogueTiles` and the host client."""

    def __init__(self, dut):
        self.dut = dut
        self.params = params_from_env(DEFAULTS)
        self.seed = cocotb.RANDOM_SEED
        self.rng = np.random.default_rng(self.seed)
        self.cols, self.rows = self.params["cols"], self.params["rows"]
        self.all = (0, 0, self.cols - 1, self.rows - 1)
        self.tiles = RogueTiles(dut, self.rng)
        self.port = StreamHostPort(dut, dut.clk, timeout_ns=2_000_000)
        self.client = host.HostClient(self.port, grid=(self.cols, self.rows))

    async def start(self):
        Clock(self.dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
        self.port.start()
        self.tiles.start()
        self.dut.rst.value = 1
        for _ in range(3):
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await FallingEdge(self.dut.clk)
        return self

    async def mvm(self, area, vectors, out_elems, *, per_core=False, reduce=False, expect=Status.OK):
        """Run an MVM with random inputs; returns the :class:`~cimdv.tb.chip.host.Response`."""
        self.tiles.out_elems = out_elems
        x0, y0, x1, y1 = area
        cores = (x1 - x0 + 1) * (y1 - y0 + 1)
        elems = int(self.rng.integers(1, self.params["core_rows"] + 1))
        shape = (vectors, cores, elems) if per_core else (vectors, elems)
        xs = self.rng.integers(0, 16, shape)
        args = host.mvm_args(area, xs, out_elems=out_elems, per_core=per_core, reduce=reduce)
        self.tiles.outputs = []
        return await self.client.command(Opcode.MVM, args, expect=expect)

    def blocks(self, out_elems, *, pad=None):
        """The payload of a non-reduced MVM that took every recorded OUTPUT as a block: block word and
        ``ceil(out_elems / 3)`` words each; ``pad`` maps an output's index to its words as the bridge
        must pass them on (cut or zero-padded)."""
        words = []
        for i, ((x, y), payload) in enumerate(self.tiles.outputs):
            words += [x | y << 4, *(payload if pad is None or i not in pad else pad[i])]
        return words

    async def check_recovered(self):
        """The next commands work: PING, a CSR write and read back, a clean MVM; nothing stale or timed out."""
        assert await self.client.ping() == (self.cols, self.rows, self.params["core_rows"], self.params["core_cols"])
        value = int(self.rng.integers(1, 1 << 16))
        assert await self.client.csr_write(self.all, 0x05, value) == (self.cols * self.rows, 0)
        assert await self.client.csr_read(self.cols - 1, self.rows - 1, 0x05) == value
        r = await self.mvm(self.all, 1, 5)
        assert list(r.payload) == self.blocks(5), "a clean MVM after the fault differs"
        assert int(self.dut.stale.value) == 0 and int(self.dut.timeouts.value) == 0
        assert not self.tiles.armed


def extra_flit(p, xy, answer):
    """The answer with one more flit: a multi-flit ACK / READ_DATA, or an OUTPUT one flit too long."""
    return [[*answer[:-1], (answer[-1][0], False), (EXTRA, True)]]


def short_output(p, xy, answer):
    """An OUTPUT one flit short of the announced size."""
    return [[*answer[:-2], (answer[-2][0], True)]]


def stray_then(src):
    """A well-formed OUTPUT of the current tag from core ``src`` (outside the rectangle), then the answer."""

    def fault(p, xy, answer):
        stray = packets.request(PacketKind.OUTPUT, packets.HOST, [d for d, _ in answer[1:]], tag=p.tag, src=src)
        return [stray, answer]

    return fault


def unexpected_then(kind, words):
    """A packet of ``kind`` with the current tag and ``words`` of payload, then the answer."""

    def fault(p, xy, answer):
        return [packets.request(kind, packets.HOST, words, tag=p.tag, src=xy), answer]

    return fault


@cocotb.test()
async def rogue_bench_normal_traffic(dut):
    """Testpoint host_bridge_rogue_bench: with no fault armed the stand-in behaves like the tiles, and
    PING, multicast CSR writes, CSR reads, multicast and per-core MVMs (blocks, reduced sums) are exact."""
    tb = await BridgeTb(dut).start()
    r = await tb.client.command(Opcode.PING)
    assert r.payload == (BRIDGE_ID, tb.cols | tb.rows << 8, 32 | 32 << 16)
    await tb.check_recovered()
    for per_core in (False, True):
        out_elems = int(tb.rng.integers(1, 33))
        r = await tb.mvm(tb.all, 2, out_elems, per_core=per_core)
        assert len(tb.tiles.outputs) == 2 * tb.cols * tb.rows
        assert list(r.payload) == tb.blocks(out_elems)
    r = await tb.mvm((0, 0, 1, 0), 1, 7, per_core=True, reduce=True)
    sums, sat = np.zeros(7, dtype=np.int64), np.zeros(7, dtype=bool)
    for _, words in tb.tiles.outputs:
        count, sign, s = packets.output_elements(words, 7)
        sums += np.where(sign.astype(bool), -count, count)
        sat |= s
    got_sums, got_sat = host.reduced_sums(r.payload)
    assert np.array_equal(got_sums, sums) and np.array_equal(got_sat, sat), f"{got_sums} {got_sat} != {sums} {sat}"


@cocotb.test()
async def csr_answer_with_extra_flits(dut):
    """Testpoint host_bridge_rogue_csr: an ACK and a READ_DATA of three flits instead of two are drained
    whole; CSR_WRITE answers CORE_ERROR with every ACK counted and bit 31 of status_or set, CSR_READ
    CORE_ERROR with the first data word; the framing holds and the next commands work."""
    tb = await BridgeTb(dut).start()
    tb.tiles.arm(extra_flit)
    r = await tb.client.command(Opcode.CSR_WRITE, [host.rect(*tb.all), 0x05, 0x1234], expect=Status.CORE_ERROR)
    assert r.payload == (tb.cols * tb.rows, 1 << 31), f"payload {r.payload}"
    tb.tiles.arm(extra_flit)
    r = await tb.client.command(Opcode.CSR_READ, [host.core(1, 1), 0x05], expect=Status.CORE_ERROR)
    assert r.payload == (0x1234,), f"payload {r.payload}"
    await tb.check_recovered()


@cocotb.test()
async def mvm_output_from_outside_the_rectangle(dut):
    """Testpoint host_bridge_rogue_mvm: an OUTPUT with the MVM's tag from a core outside its rectangle
    is drained, never a block; the status is CORE_ERROR and the blocks of the rectangle are exact."""
    tb = await BridgeTb(dut).start()
    tb.tiles.arm(stray_then((1, 1)))
    r = await tb.mvm((0, 0, 1, 0), 2, 6, expect=Status.CORE_ERROR)
    assert len(tb.tiles.outputs) == 4
    assert list(r.payload) == tb.blocks(6)
    await tb.check_recovered()


@cocotb.test()
async def mvm_output_longer_than_announced(dut):
    """Testpoint host_bridge_rogue_mvm: an OUTPUT one flit longer than ceil(out_elems / 3) is cut to the
    announced size and the rest drained; CORE_ERROR; every other block exact."""
    tb = await BridgeTb(dut).start()
    tb.tiles.arm(extra_flit)
    r = await tb.mvm(tb.all, 1, 8, expect=Status.CORE_ERROR)
    (long,) = [flits for p, flits in tb.tiles.sent[-4:] if len(flits) == 5]
    cut = [d for d, _ in long[1:4]]
    xy = packets.parse([(long[0][0], True)]).src
    tb.tiles.outputs.insert(0, (xy, cut))  # the long one went first
    assert list(r.payload) == tb.blocks(8)
    await tb.check_recovered()


@cocotb.test()
async def mvm_output_shorter_than_announced(dut):
    """Testpoint host_bridge_rogue_mvm: an OUTPUT one flit short is padded with zero words to the announced
    size (state PAD), so the response keeps its length; CORE_ERROR; every other block exact."""
    tb = await BridgeTb(dut).start()
    tb.tiles.arm(short_output)
    r = await tb.mvm(tb.all, 2, 9, per_core=True, expect=Status.CORE_ERROR)
    p, short = tb.tiles.sent[0]  # START has no answer: the first answer is the first OUTPUT
    assert p.kind == PacketKind.INPUT and len(short) == 3
    xy = packets.parse([(short[0][0], True)]).src
    tb.tiles.outputs.insert(0, (xy, [short[1][0], short[2][0], 0]))
    assert len(r.payload) == 2 * 4 * (1 + 3)
    assert list(r.payload) == tb.blocks(9)
    await tb.check_recovered()


@cocotb.test()
async def mvm_unexpected_packets(dut):
    """Testpoint host_bridge_rogue_mvm: during an MVM, an ACK with its tag (a kind the collector does not
    expect) and an ERROR of three flits (not the single payload flit) are drained whole; each gives
    CORE_ERROR and the blocks are exact."""
    tb = await BridgeTb(dut).start()
    tb.tiles.arm(unexpected_then(PacketKind.ACK, [0]))
    r = await tb.mvm(tb.all, 1, 4, expect=Status.CORE_ERROR)
    assert list(r.payload) == tb.blocks(4)
    error = _ERROR.encode({"code": TileError.BAD_FORMAT.value, "detail": 0})
    tb.tiles.arm(unexpected_then(PacketKind.ERROR, [error, EXTRA]))
    r = await tb.mvm(tb.all, 2, 4, expect=Status.CORE_ERROR)
    assert list(r.payload) == tb.blocks(4)
    await tb.check_recovered()


def header_only(p, xy, answer):
    """The answer's header alone, ``last`` on it: an answer without its body."""
    return [[(answer[0][0], True)]]


def header_only_then(kind):
    """A header-only packet of ``kind`` with the current tag, then the answer."""

    def fault(p, xy, answer):
        return [packets.request(kind, packets.HOST, tag=p.tag, src=xy), answer]

    return fault


@cocotb.test()
async def header_only_answers(dut):
    """Testpoint host_bridge_rogue_header_only: a packet that ends on its header is malformed and complete by
    itself. A header-only ACK is counted and gives CORE_ERROR with bit 31 of status_or; a header-only
    READ_DATA gives CORE_ERROR; during an MVM, header-only ACK and OUTPUT packets give CORE_ERROR with every
    block exact. None of them swallows the next tile's packet (which ended in TIMEOUT before the fix)."""
    tb = await BridgeTb(dut).start()
    tb.tiles.arm(header_only)
    r = await tb.client.command(Opcode.CSR_WRITE, [host.rect(*tb.all), 0x05, 0x4321], expect=Status.CORE_ERROR)
    assert r.payload == (tb.cols * tb.rows, 1 << 31), f"payload {r.payload}"
    tb.tiles.arm(header_only)
    r = await tb.client.command(Opcode.CSR_READ, [host.core(0, 1), 0x05], expect=Status.CORE_ERROR)
    assert len(r.payload) == 1, f"payload {r.payload}"
    for kind in (PacketKind.ACK, PacketKind.OUTPUT):
        tb.tiles.arm(header_only_then(kind))
        r = await tb.mvm(tb.all, 1, 5, expect=Status.CORE_ERROR)
        assert list(r.payload) == tb.blocks(5), f"header-only {kind.name}: blocks differ"
    await tb.check_recovered()

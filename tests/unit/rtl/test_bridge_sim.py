# amaranth: UnusedElaboratable=no
"""The host bridge in Amaranth's simulator, with a Python stand-in for the tiles.

The stand-in answers CSR packets like a tile (ACK with status 0, READ_DATA from a register
file); cores listed as ``silent`` never answer, to exercise the watchdog.
"""

import pytest
from amaranth.sim import Simulator

from cimdv.rtl.host.bridge import BRIDGE_ID, HostBridge
from cimdv.rtl.host.protocol import Opcode, Status
from cimdv.rtl.noc.layouts import PacketKind
from cimdv.tb.chip import host, packets

COLS, ROWS = 3, 2
#: The bridge's area options: the default (a word per cycle, two CRC units), the FPGA's (one
#: shared CRC folding 4 bits a cycle) and two byte-serial units.
OPTIONS = {
    "word_crc": {},
    "shared_nibble_crc": {"crc_step_bits": 4, "shared_crc": True},
    "byte_serial_crc": {"crc_step_bits": 8},
}
options = pytest.mark.parametrize("opts", OPTIONS.values(), ids=OPTIONS.keys())


def run(commands, *, silent=(), watchdog=60, cycles=3000, opts=None):
    opts = opts or {}
    cycles *= 32 // opts.get("crc_step_bits", 32)  # a host word every 32 / crc_step_bits cycles
    dut = HostBridge(cols=COLS, rows=ROWS, core_rows=8, core_cols=6, capacity=8, watchdog=watchdog, **opts)
    regs = {}
    sent = []
    responses = []

    async def bench(ctx):
        pending = [w for c in commands for w in c]
        inbound, outbound, words = [], [], []
        ctx.set(dut.host_out.ready, 1)
        ctx.set(dut.req.ready, 1)
        for _ in range(cycles):
            ctx.set(dut.host_in.valid, bool(pending))
            if pending:
                ctx.set(dut.host_in.payload, pending[0])
            ctx.set(dut.rsp.valid, bool(outbound))
            if outbound:
                ctx.set(dut.rsp.payload, {"data": outbound[0][0], "last": int(outbound[0][1])})
            took_in = bool(pending) and bool(ctx.get(dut.host_in.ready))
            took_rsp = bool(outbound) and bool(ctx.get(dut.rsp.ready))
            if ctx.get(dut.req.valid):
                flit = ctx.get(dut.req.payload)
                inbound.append((int(flit.data), bool(flit.last)))
                if flit.last:
                    p = packets.parse(inbound)
                    inbound = []
                    sent.append(p)
                    x0, y0, x1, y1 = p.dst
                    for y in range(y0, y1 + 1):
                        for x in range(x0, x1 + 1):
                            if (x, y) in silent:
                                continue
                            if p.kind == PacketKind.CSR_WRITE:
                                regs[(x, y, p.payload[0])] = p.payload[1]
                                reply = packets.request(PacketKind.ACK, packets.HOST, [0], tag=p.tag, src=(x, y))
                            else:
                                value = regs.get((x, y, p.payload[0]), 0)
                                reply = packets.request(
                                    PacketKind.READ_DATA, packets.HOST, [value], tag=p.tag, src=(x, y)
                                )
                            outbound.extend(reply)
            if ctx.get(dut.host_out.valid):
                words.append(ctx.get(dut.host_out.payload))
            await ctx.tick()
            if took_in:
                pending.pop(0)
            if took_rsp:
                outbound.pop(0)
        # Split the response stream: header length + 3 words each.
        while words:
            n = words[0] >> 16
            responses.append(host.parse_response(words[: n + 3]))
            words = words[n + 3 :]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return responses, sent


@options
def test_ping_reports_the_geometry(opts):
    (r,), sent = run([host.command(Opcode.PING, tag=3)], opts=opts)
    assert r.status == Status.OK and r.tag == 3 and r.opcode == Opcode.PING.value
    assert r.payload == (BRIDGE_ID, COLS | ROWS << 8, 8 | 6 << 16) and not sent


@options
def test_multicast_csr_write_collects_every_ack_and_reads_back(opts):
    cmds = [
        host.command(Opcode.CSR_WRITE, [host.rect(0, 0, 2, 1), 0x05, 77], tag=1),
        host.command(Opcode.CSR_READ, [host.core(2, 1), 0x05], tag=2),
        host.command(Opcode.CSR_READ, [host.core(1, 0), 0x06], tag=3),
    ]
    (w, r1, r2), sent = run(cmds, opts=opts)
    assert w.status == Status.OK and w.payload == (6, 0)
    assert r1.status == Status.OK and r1.payload == (77,) and r2.payload == (0,)
    assert [p.kind for p in sent] == [PacketKind.CSR_WRITE, PacketKind.CSR_READ, PacketKind.CSR_READ]
    assert sent[0].dst == (0, 0, 2, 1)


@options
def test_bad_commands_are_refused_without_sending_anything(opts):
    good = host.command(Opcode.PING)
    bad_crc = [*good[:-1], good[-1] ^ 1]
    cmds = [
        bad_crc,
        host.command(0x7E),
        host.command(Opcode.CSR_WRITE, [host.rect(0, 0), 1]),  # length 2, needs 3
        host.command(Opcode.CSR_WRITE, [host.rect(0, 0, 3, 0), 1, 2]),  # x1 = 3 outside 3 columns
        host.command(Opcode.CSR_READ, [host.core(0, 2), 1]),  # y = 2 outside 2 rows
        host.command(Opcode.CSR_WRITE, [host.rect(1, 0, 0, 0), 1, 2]),  # empty rectangle
        host.command(Opcode.PING, list(range(12))),  # longer than the buffer
    ]
    out, sent = run(cmds, opts=opts)
    assert [r.status for r in out] == [
        Status.BAD_CRC,
        Status.BAD_OPCODE,
        Status.BAD_LENGTH,
        Status.BAD_CORE,
        Status.BAD_CORE,
        Status.BAD_CORE,
        Status.BAD_LENGTH,
    ]
    assert all(r.payload == () for r in out) and not sent


@options
def test_a_core_that_never_answers_times_out_and_the_bridge_recovers(opts):
    cmds = [
        host.command(Opcode.CSR_WRITE, [host.rect(0, 0, 1, 0), 0x05, 1], tag=1),
        host.command(Opcode.CSR_READ, [host.core(1, 0), 0x05], tag=2),
        host.command(Opcode.PING, tag=3),
    ]
    (w, r, p), _ = run(cmds, silent={(1, 0)}, watchdog=50, opts=opts)
    assert w.status == Status.TIMEOUT and w.payload == (1, 0)
    assert r.status == Status.TIMEOUT and r.payload == (0,)
    assert p.status == Status.OK


def test_bad_area_options_are_refused():
    with pytest.raises(ValueError, match="crc_step_bits"):
        HostBridge(cols=1, rows=1, core_rows=8, core_cols=8, crc_step_bits=3)
    with pytest.raises(TypeError, match="shared_crc"):
        HostBridge(cols=1, rows=1, core_rows=8, core_cols=8, shared_crc=1)

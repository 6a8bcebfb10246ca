# amaranth: UnusedElaboratable=no
"""The tile's network interface in Amaranth's simulator: every request kind, every refusal.

Flits are packed and parsed with the RTL's layouts (``cimdv.tb.chip.packets``); the exact
golden model's cycle-level macro answers the core, and OUTPUT packets are compared with the
transaction-level model.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from cimdv.model.exact import CoreConfig, ExactCore, MacroParams, MacroState
from cimdv.rtl.chip.layouts import TileError
from cimdv.rtl.chip.tile import Tile
from cimdv.rtl.core.regs import ErrorBit
from cimdv.rtl.noc.layouts import PacketKind
from cimdv.tb.chip import packets
from cimdv.tb.vip.sim_macro import SimMacro

ROWS, COLS, X, Y = 7, 5, 2, 1


class TileBench:
    """Drives request packets into a tile and collects its response packets."""

    def __init__(self, *, weights=None, watchdog=64):
        self.dut = Tile(x=X, y=Y, rows=ROWS, cols=COLS, watchdog=watchdog)
        self.regmap = self.dut.core.regmap
        rng = np.random.default_rng(0)
        self.weights = rng.integers(0, 30, (ROWS, COLS)) if weights is None else weights
        self.macro = MacroState(self.weights, MacroParams(delta=40))

    def run(self, script, *, cycles=6000):
        """``script``: packets (lists of flits) sent in order; returns the response packets."""
        dut, macro = self.dut, self.macro
        responses = []

        async def bench(ctx):
            pending = [f for packet in script for f in packet]
            current = []
            responder = SimMacro(dut.macro, macro)
            ctx.set(dut.rsp.ready, 1)
            for _ in range(cycles):
                if pending:
                    data, last = pending[0]
                    ctx.set(dut.req.payload, {"data": data, "last": int(last)})
                ctx.set(dut.req.valid, int(bool(pending)))
                responder.step(ctx)
                if pending and ctx.get(dut.req.ready):
                    pending.pop(0)
                if ctx.get(dut.rsp.valid):
                    flit = ctx.get(dut.rsp.payload)
                    current.append((int(flit.data), bool(flit.last)))
                    if flit.last:
                        responses.append(packets.parse(current))
                        current = []
                await ctx.tick()
            assert not pending, f"{len(pending)} request flits never accepted"

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()
        return responses

    def write(self, name, value, tag=0):
        return packets.request(PacketKind.CSR_WRITE, (X, Y), [self.regmap[name].addr, value], tag=tag)

    def read(self, name, tag=0):
        return packets.request(PacketKind.CSR_READ, (X, Y), [self.regmap[name].addr], tag=tag)

    def configure(self, cfg, batch=1):
        mode = self.regmap["MODE"]
        value = 0
        for name in ("backward", "signed", "in_bits", "out_bits", "pulse_mult"):
            value |= int(getattr(cfg, name)) << mode.field(name).offset
        script = [self.write("MODE", value), self.write("MAX_COUNT", cfg.max_count), self.write("BATCH", batch)]
        script += [self.write(t, 1) for t in ("T_INIT", "T_SAMPLE", "T_INTEG", "T_COMPARE", "T_DECR", "T_NOISE")]
        script.append(self.write("LINE_MODE0", sum(1 << (2 * i) for i in range(max(ROWS, COLS)))))
        return script


def test_csr_write_is_acked_and_read_back():
    tb = TileBench()
    out = tb.run([tb.write("MAX_COUNT", 9, tag=5), tb.read("MAX_COUNT", tag=6), tb.write("ERROR", 0, tag=7)])
    assert [p.kind for p in out] == [PacketKind.ACK, PacketKind.READ_DATA, PacketKind.ACK]
    assert [p.tag for p in out] == [5, 6, 7]
    assert all(p.src == (X, Y) and p.dst == (15, 0, 15, 0) for p in out)
    assert out[0].payload == (0,) and out[1].payload == (9,)


def test_bad_csr_address_is_reported_in_the_ack():
    tb = TileBench()
    bad = packets.request(PacketKind.CSR_WRITE, (X, Y), [0x3F, 1])
    (ack,) = tb.run([bad])
    assert ack.kind == PacketKind.ACK and ack.payload[0] & (1 << ErrorBit.BAD_ADDR)


@pytest.mark.parametrize("seed", [3, 4])
def test_mvm_through_the_tile_matches_the_model(seed):
    rng = np.random.default_rng(seed)
    tb = TileBench()
    cfg = CoreConfig(
        rows=ROWS, cols=COLS, backward=False, signed=True, in_bits=4, out_bits=6, pulse_mult=1, max_count=20
    )
    xs = rng.integers(-7, 8, (2, ROWS))
    script = [*tb.configure(cfg, batch=2), packets.request(PacketKind.START, (X, Y), tag=9)]
    script += [packets.input_packet((X, Y), x) for x in xs]
    out = tb.run(script, cycles=8000)
    acks = [p for p in out if p.kind == PacketKind.ACK]
    outputs = [p for p in out if p.kind == PacketKind.OUTPUT]
    assert len(acks) == len(script) - 3 and all(a.payload == (0,) for a in acks)
    assert len(outputs) == 2 and all(p.tag == 9 and p.src == (X, Y) for p in outputs)
    model = ExactCore(tb.weights, MacroParams(delta=40))
    for p, x in zip(outputs, xs, strict=True):
        count, sign, sat = packets.output_elements(p.payload, COLS)
        want = model.mvm(cfg, x)
        assert count.tolist() == want.count.tolist() and sign.tolist() == want.sign.tolist()
        assert sat.tolist() == want.sat.tolist()


def test_refusals_are_answered_and_the_tile_keeps_working():
    tb = TileBench(watchdog=20)
    script = [
        packets.request(PacketKind.OUTPUT, (X, Y), [1, 2], tag=1),  # not a request kind
        packets.request(PacketKind.CSR_WRITE, (X, Y), tag=2),  # header only
        packets.request(PacketKind.CSR_READ, (X, Y), [0, 0, 0], tag=3),  # too long
        packets.input_packet((X, Y), [1, 2, 3, 4], tag=4),  # no run waits for it
        tb.write("BATCH", 0, tag=0),
        packets.request(PacketKind.START, (X, Y), tag=5),  # refused: BATCH = 0
        tb.read("MAX_COUNT", tag=6),
    ]
    out = tb.run(script)
    assert [p.tag for p in out] == [1, 2, 3, 4, 0, 5, 6]
    out.pop(4)  # the ACK of the BATCH write
    errors = [packets.error_of(p.payload) for p in out[:5]]
    assert [e[0] for e in errors[:4]] == [
        TileError.BAD_KIND,
        TileError.BAD_FORMAT,
        TileError.BAD_FORMAT,
        TileError.INPUT_TIMEOUT,
    ]
    assert all(p.kind == PacketKind.ERROR for p in out[:5])
    assert out[5].kind == PacketKind.READ_DATA


def test_start_refused_by_the_core_reports_its_error_bits():
    tb = TileBench()
    ack, refused = tb.run([tb.write("BATCH", 0), packets.request(PacketKind.START, (X, Y), tag=3)])
    code, detail = packets.error_of(refused.payload)
    assert ack.payload == (0,) and code == TileError.START_REFUSED and refused.tag == 3
    assert detail == 1 << ErrorBit.BATCH


def test_start_during_a_run_is_refused():
    tb = TileBench()
    cfg = CoreConfig(
        rows=ROWS, cols=COLS, backward=False, signed=False, in_bits=2, out_bits=4, pulse_mult=1, max_count=7
    )
    start = packets.request(PacketKind.START, (X, Y), tag=1)
    again = packets.request(PacketKind.START, (X, Y), tag=2)
    out = tb.run([*tb.configure(cfg), start, again, packets.input_packet((X, Y), [1] * ROWS)], cycles=4000)
    refused = [p for p in out if p.kind == PacketKind.ERROR]
    assert len(refused) == 1 and refused[0].tag == 2
    code, detail = packets.error_of(refused[0].payload)
    assert code == TileError.START_REFUSED and detail & (1 << ErrorBit.START_BUSY)
    assert [p.tag for p in out if p.kind == PacketKind.OUTPUT] == [1]

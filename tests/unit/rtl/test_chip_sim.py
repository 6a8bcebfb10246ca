# amaranth: UnusedElaboratable=no
"""The whole chip in Amaranth's simulator: host commands through the bridge, both meshes and
real tiles; the exact golden model's macro answers every core.

The host side is :class:`~cimdv.tb.chip.host.HostClient`, the same client the cocotb chip
tests use, over a port that drives the chip's host stream from an Amaranth testbench.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from cimdv.model.exact import CoreConfig, ExactCore, MacroParams, MacroState
from cimdv.rtl.chip.chip import Chip, tile_member
from cimdv.rtl.core.regs import ErrorBit
from cimdv.rtl.host.protocol import Opcode, Status
from cimdv.tb.chip import host
from cimdv.tb.vip.config import core_config_writes
from cimdv.tb.vip.sim_macro import SimMacro

COLS, ROWS, CORE_ROWS, CORE_COLS = 2, 2, 7, 5
FAST = {"T_INIT": 1, "T_SAMPLE": 1, "T_INTEG": 1, "T_COMPARE": 1, "T_DECR": 1, "T_NOISE": 1}
PARAMS = MacroParams(delta=40)
ALL = (0, 0, COLS - 1, ROWS - 1)
CORES = [(x, y) for y in range(ROWS) for x in range(COLS)]


class SimPort:
    """``transact`` over the chip's host stream, one word per cycle each way."""

    def __init__(self, ctx, dut, *, budget=40_000):
        self.ctx, self.dut, self.budget = ctx, dut, budget

    async def transact(self, words):
        ctx, dut = self.ctx, self.dut
        pending, got = list(words), []
        ctx.set(dut.host_out.ready, 1)
        for _ in range(self.budget):
            ctx.set(dut.host_in.valid, bool(pending))
            if pending:
                ctx.set(dut.host_in.payload, pending[0])
            took = bool(pending) and bool(ctx.get(dut.host_in.ready))
            if ctx.get(dut.host_out.valid):
                got.append(ctx.get(dut.host_out.payload))
            await ctx.tick()
            if took:
                pending.pop(0)
            if len(got) >= 3 and len(got) == (got[0] >> 16) + 3:
                ctx.set(dut.host_in.valid, 0)
                return got
        raise AssertionError(f"no complete response within {self.budget} cycles ({len(got)} words)")


class ChipBench:
    def __init__(self, seed=0, *, watchdog=3000, tile_watchdog=500, **options):
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.dut = Chip(
            cols=COLS,
            rows=ROWS,
            core_rows=CORE_ROWS,
            core_cols=CORE_COLS,
            capacity=128,
            watchdog=watchdog,
            tile_watchdog=tile_watchdog,
            tile_module=None,
            **options,
        )
        self.regmap = self.dut.tiles[0, 0].core.regmap
        self.weights = {xy: rng.integers(0, 30, (CORE_ROWS, CORE_COLS)) for xy in CORES}
        self.models = {xy: ExactCore(w, PARAMS) for xy, w in self.weights.items()}

    def run(self, script):
        """``script(client, ctx)``: an async function driving the chip; returns its result."""
        dut = self.dut
        result = {}

        async def macros(ctx):
            responders = [
                SimMacro(getattr(dut, tile_member("macro", *xy)), MacroState(self.weights[xy], PARAMS)) for xy in CORES
            ]
            while True:
                for responder in responders:
                    responder.step(ctx)
                await ctx.tick()

        async def bench(ctx):
            result["value"] = await script(host.HostClient(SimPort(ctx, dut)), ctx)

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(macros, background=True)
        sim.add_testbench(bench)
        sim.run()
        return result["value"]

    def cfg(self, **overrides):
        fields = dict(rows=CORE_ROWS, cols=CORE_COLS, backward=False, signed=True, in_bits=4, out_bits=6, pulse_mult=1)
        fields |= {"max_count": 20, **overrides}
        return CoreConfig(**fields)

    async def configure(self, client, cfg, *, batch=1, area=ALL, watchdog=100_000):
        await client.write_all(
            area, self.regmap, core_config_writes(self.regmap, cfg, timing=FAST, batch=batch, watchdog=watchdog)
        )


def test_ping_and_multicast_mvm_match_the_model():
    tb = ChipBench(seed=1)
    cfg = tb.cfg()
    xs = tb.rng.integers(-7, 8, (2, CORE_ROWS))

    async def script(client, ctx):
        geometry = await client.ping()
        await tb.configure(client, cfg, batch=2)
        blocks = await client.mvm(ALL, xs, out_elems=CORE_COLS)
        return geometry, blocks

    geometry, blocks = tb.run(script)
    assert geometry == (COLS, ROWS, CORE_ROWS, CORE_COLS)
    assert sorted((b.x, b.y) for b in blocks) == sorted(CORES * 2)
    seen = dict.fromkeys(CORES, 0)
    for b in blocks:  # per core, the vectors arrive in order
        want = tb.models[b.x, b.y].mvm(cfg, xs[seen[b.x, b.y]])
        seen[b.x, b.y] += 1
        assert b.count.tolist() == want.count.tolist() and b.sign.tolist() == want.sign.tolist()
        assert b.sat.tolist() == want.sat.tolist()


def test_split_layer_per_core_inputs_reduced_in_the_bridge():
    tb = ChipBench(seed=2)
    cfg = tb.cfg()
    xs = tb.rng.integers(-7, 8, (1, len(CORES), CORE_ROWS))

    async def script(client, ctx):
        await tb.configure(client, cfg)
        return await client.mvm(ALL, xs, out_elems=CORE_COLS, per_core=True, reduce=True)

    sums, sat = tb.run(script)
    want = sum(tb.models[xy].mvm(cfg, xs[0, i]).signed for i, xy in enumerate(CORES))
    want_sat = np.any([tb.models[xy].mvm(cfg, xs[0, i]).sat for i, xy in enumerate(CORES)], axis=0)
    assert sums.tolist() == want.tolist() and sat.tolist() == want_sat.tolist()


def test_fpga_area_options_serve_ping_mvm_and_reduction():
    """The FPGA's bridge (one CRC shared by commands and responses, 4 bits a cycle): same answers."""
    tb = ChipBench(seed=5, crc_step_bits=4, shared_crc=True)
    cfg = tb.cfg()
    xs = tb.rng.integers(-7, 8, (1, CORE_ROWS))
    xr = tb.rng.integers(-7, 8, (1, len(CORES), CORE_ROWS))

    async def script(client, ctx):
        geometry = await client.ping()
        await tb.configure(client, cfg)
        blocks = await client.mvm(ALL, xs, out_elems=CORE_COLS)
        reduced = await client.mvm(ALL, xr, out_elems=CORE_COLS, per_core=True, reduce=True)
        return geometry, blocks, reduced

    geometry, blocks, (sums, sat) = tb.run(script)
    want_sat = np.any([tb.models[xy].mvm(cfg, xr[0, i]).sat for i, xy in enumerate(CORES)], axis=0)
    assert geometry == (COLS, ROWS, CORE_ROWS, CORE_COLS)
    assert sorted((b.x, b.y) for b in blocks) == sorted(CORES)
    for b in blocks:
        assert b.signed.tolist() == tb.models[b.x, b.y].mvm(cfg, xs[0]).signed.tolist()
    want = sum(tb.models[xy].mvm(cfg, xr[0, i]).signed for i, xy in enumerate(CORES))
    assert sums.tolist() == want.tolist() and sat.tolist() == want_sat.tolist()


def test_per_core_inputs_on_a_sub_rectangle():
    tb = ChipBench(seed=3)
    cfg = tb.cfg(signed=False, in_bits=3)
    area = (1, 0, 1, 1)
    xs = tb.rng.integers(0, 8, (2, 2, CORE_ROWS))

    async def script(client, ctx):
        await tb.configure(client, cfg, batch=2, area=area)
        return await client.mvm(area, xs, out_elems=CORE_COLS, per_core=True)

    blocks = tb.run(script)
    order = [(1, 0), (1, 1)]
    seen = dict.fromkeys(order, 0)
    assert len(blocks) == 4
    for b in blocks:
        i = order.index((b.x, b.y))
        want = tb.models[b.x, b.y].mvm(cfg, xs[seen[b.x, b.y], i])
        seen[b.x, b.y] += 1
        assert b.signed.tolist() == want.signed.tolist()


def test_illegal_mvms_are_refused_and_change_nothing():
    tb = ChipBench(seed=4)
    x = np.ones((1, CORE_ROWS), dtype=int)
    good = host.mvm_args(ALL, x, out_elems=CORE_COLS)

    def flags(**f):
        fields = {"reduce": 0, "per_core": 0, "vectors": 1, "elems": CORE_ROWS} | f
        return host._FLAGS.encode(fields)

    cases = {
        "short": (good[:2], Status.BAD_LENGTH),
        "missing input word": (good[:-1], Status.BAD_LENGTH),
        "extra input word": ([*good, 0], Status.BAD_LENGTH),
        "outside the grid": ([host.rect(0, 0, COLS, 0), *good[1:]], Status.BAD_CORE),
        "empty rectangle": ([host.rect(1, 0, 0, 0), *good[1:]], Status.BAD_CORE),
        "zero vectors": ([good[0], flags(vectors=0), *good[2:]], Status.BAD_ARG),
        "too many elements": ([good[0], flags(elems=CORE_ROWS + 1), *good[2:]], Status.BAD_ARG),
        "no out_elems": ([*good[:2], 0, *good[3:]], Status.BAD_ARG),
        "reduce of two vectors": ([good[0], flags(vectors=2, reduce=1), *good[2:], *good[3:]], Status.BAD_ARG),
    }

    async def script(client, ctx):
        statuses = {}
        for name, (args, _) in cases.items():
            r = await client.command(Opcode.MVM, args, expect=None)
            statuses[name] = (r.status, r.payload)
        # Nothing reached a core: no run was started, no vector counted.
        vectors = [await client.csr_read(x, y, tb.regmap["VECTORS"].addr) for x, y in CORES]
        return statuses, vectors

    statuses, vectors = tb.run(script)
    assert {k: v[0] for k, v in statuses.items()} == {k: v[1] for k, v in cases.items()}
    assert all(p == () for _, p in statuses.values()) and vectors == [0] * len(CORES)


def test_refused_start_ends_promptly_with_core_error():
    tb = ChipBench(seed=5)
    cfg = tb.cfg()
    x = tb.rng.integers(-7, 8, (1, CORE_ROWS))

    async def script(client, ctx):
        await tb.configure(client, cfg)
        await client.csr_write((1, 1, 1, 1), tb.regmap["BATCH"].addr, 0)  # core (1, 1) will refuse START
        start = ctx.get(tb.dut.timeouts)
        r = await client.command(Opcode.MVM, host.mvm_args(ALL, x, out_elems=CORE_COLS), expect=None)
        err = await client.csr_read(1, 1, tb.regmap["ERROR"].addr)
        return r, ctx.get(tb.dut.timeouts) - start, err

    r, timeouts, err = tb.run(script)
    assert r.status == Status.CORE_ERROR and timeouts == 0 and err & (1 << ErrorBit.BATCH)
    blocks = host.mvm_blocks(r.payload, CORE_COLS)
    answered = [(b.x, b.y) for b in blocks[:3]]
    assert sorted(answered) == [(0, 0), (0, 1), (1, 0)]
    assert (blocks[3].x, blocks[3].y) == (0, 0) and not blocks[3].count.any()  # zero fill


@pytest.mark.parametrize("reduce", [False, True])
def test_core_that_never_answers_times_out_and_its_late_output_is_stale(reduce):
    tb = ChipBench(seed=6, watchdog=1500, tile_watchdog=400)
    cfg = tb.cfg(in_bits=2)
    xs = tb.rng.integers(-1, 2, (1, len(CORES), CORE_ROWS))
    slow = (0, 1, 0, 1)
    args = host.mvm_args(ALL, xs, out_elems=CORE_COLS, per_core=True, reduce=reduce)

    async def script(client, ctx):
        await tb.configure(client, cfg)
        # Core (0, 1) samples for 1200 cycles a phase: it answers long after the bridge gave up.
        await client.csr_write(slow, tb.regmap["T_SAMPLE"].addr, 1200)
        first = await client.command(Opcode.MVM, args, expect=None)
        counters = [ctx.get(tb.dut.timeouts), ctx.get(tb.dut.stale)]
        for _ in range(3000):  # its output arrives between commands: drained as stale
            await ctx.tick()
        await client.csr_write(slow, tb.regmap["T_SAMPLE"].addr, 1)
        counters += [ctx.get(tb.dut.timeouts), ctx.get(tb.dut.stale)]
        second = await client.command(Opcode.MVM, args, expect=None)
        return first, counters, second

    first, counters, second = tb.run(script)
    assert first.status == Status.TIMEOUT and counters == [1, 0, 1, 1]
    assert second.status == Status.OK
    others = [(i, xy) for i, xy in enumerate(CORES) if xy != (0, 1)]
    if reduce:
        sums, _ = host.reduced_sums(second.payload)
        assert sums.tolist() == sum(tb.models[xy].mvm(cfg, xs[0, i]).signed for i, xy in enumerate(CORES)).tolist()
        partial, _ = host.reduced_sums(first.payload)  # the cores that answered
        assert partial.tolist() == sum(tb.models[xy].mvm(cfg, xs[0, i]).signed for i, xy in others).tolist()
    else:
        blocks = host.mvm_blocks(first.payload, CORE_COLS)
        assert sorted((b.x, b.y) for b in blocks[:3]) == sorted(xy for _, xy in others)
        for b, (i, xy) in zip(sorted(blocks[:3], key=lambda b: CORES.index((b.x, b.y))), others, strict=True):
            assert b.signed.tolist() == tb.models[xy].mvm(cfg, xs[0, i]).signed.tolist()
        assert (blocks[3].x, blocks[3].y) == (0, 0) and not blocks[3].count.any()  # zero fill
        assert len(host.mvm_blocks(second.payload, CORE_COLS)) == 4

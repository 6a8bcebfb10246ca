"""cocotb tests of the chip: host commands in, golden-model checks out (docs/testplan.md).

Every test talks to the chip only through :class:`~cimdv.tb.chip.host.HostClient`; the
seed is ``cocotb.RANDOM_SEED`` (pytest passes the regression's seed).
"""

import cocotb
import numpy as np
from cocotb.triggers import Timer

from cimdv.model.exact import MacroState
from cimdv.model.writeverify import Outcome, WriteVerifyCodes
from cimdv.rtl.core.regs import PROG_KEY, PROG_TIMING, ErrorBit
from cimdv.rtl.host.protocol import Opcode, Status
from cimdv.tb.chip import host
from cimdv.tb.chip.env import CLOCK_NS, make_chip_tb
from cimdv.tb.vip.config import decode_field, decode_prog_result, prog_settings_writes
from cimdv.tb.vip.program import ProgramMonitor, ProgramScoreboard


def random_area(tb):
    x0, x1 = sorted(int(v) for v in tb.rng.integers(0, tb.cols, 2))
    y0, y1 = sorted(int(v) for v in tb.rng.integers(0, tb.rows, 2))
    return x0, y0, x1, y1


def area_cores(area):
    x0, y0, x1, y1 = area
    return (x1 - x0 + 1) * (y1 - y0 + 1)


def random_inputs(tb, cfg, shape):
    lo, hi = cfg.in_range
    return tb.rng.integers(lo, hi + 1, size=(*shape, cfg.n_in))


async def configured_mvm_checked(tb, cfg, area, batch, *, per_core, reduce):
    """Configure the cores of ``area``, run one MVM of ``batch`` random vectors in the given mode and check
    every block (or the reduced sums) against the exact model."""
    await tb.configure(cfg, area=area, batch=batch)
    shape = (batch, area_cores(area)) if per_core else (batch,)
    xs = random_inputs(tb, cfg, shape)
    got = await tb.client.mvm(area, xs, out_elems=cfg.n_out, per_core=per_core, reduce=reduce)
    if reduce:
        full = xs if per_core else np.repeat(xs[:, None, :], area_cores(area), axis=1)
        tb.check_reduced(got, cfg, area, full)
    else:
        tb.check_blocks(got, cfg, area, xs, per_core=per_core)


@cocotb.test()
async def ping_reports_the_geometry(dut):
    """Testpoint chip_host_ping: PING answers the bridge id and the chip's geometry."""
    tb = await make_chip_tb(dut)
    r = await tb.client.command(Opcode.PING)
    assert r.payload[0] == 0xC1A0_0001, f"bridge id {r.payload[0]:#x}"
    assert await tb.client.ping() == (tb.cols, tb.rows, tb.core_rows, tb.core_cols)


@cocotb.test()
async def multicast_mvm_every_core(dut):
    """Testpoint chip_multicast: one vector multicast to every core (data-parallel), batches of 1-3."""
    tb = await make_chip_tb(dut)
    for batch in (1, 3):
        cfg = tb.config(signed=bool(batch % 2), in_bits=4, max_count=63, out_bits=7)
        await tb.configure(cfg, batch=batch)
        xs = random_inputs(tb, cfg, (batch,))
        blocks = await tb.client.mvm(tb.all, xs, out_elems=cfg.n_out)
        tb.check_blocks(blocks, cfg, tb.all, xs)


@cocotb.test()
async def per_core_inputs_model_parallel(dut):
    """Testpoint chip_per_core: every core of random rectangles gets its own vectors."""
    tb = await make_chip_tb(dut)
    for _ in range(3):
        area = random_area(tb)
        batch = int(tb.rng.integers(1, 3))
        cfg = tb.config(in_bits=int(tb.rng.integers(2, 5)))
        await tb.configure(cfg, area=area, batch=batch)
        xs = random_inputs(tb, cfg, (batch, area_cores(area)))
        blocks = await tb.client.mvm(area, xs, out_elems=cfg.n_out, per_core=True)
        tb.check_blocks(blocks, cfg, area, xs, per_core=True)


@cocotb.test()
async def split_layer_reduction(dut):
    """Testpoint chip_reduction: a layer split across cores, its partial sums reduced in the bridge."""
    tb = await make_chip_tb(dut)
    cfg = tb.config(max_count=127)
    await tb.configure(cfg)
    for area in (tb.all, (0, 0, tb.cols - 1, 0), random_area(tb)):
        xs = random_inputs(tb, cfg, (1, area_cores(area)))
        got = await tb.client.mvm(area, xs, out_elems=cfg.n_out, per_core=True, reduce=True)
        tb.check_reduced(got, cfg, area, xs)
    # One vector multicast, summed: every core's contribution of the same input.
    xs = random_inputs(tb, cfg, (1,))
    got = await tb.client.mvm(tb.all, xs, out_elems=cfg.n_out, reduce=True)
    tb.check_reduced(got, cfg, tb.all, np.repeat(xs[:, None, :], len(tb.cores), axis=1))


@cocotb.test()
async def saturated_outputs_reduce_with_their_flag(dut):
    """Testpoint chip_reduction: saturated neurons of either sign are summed at MAX_COUNT and flagged."""
    tb = await make_chip_tb(dut)
    cfg = tb.config(max_count=3, out_bits=3)
    await tb.configure(cfg)
    lo, hi = cfg.in_range
    xs = np.stack([np.full((len(tb.cores), cfg.n_in), 0)])
    xs[0, 0::2], xs[0, 1::2] = hi, lo  # alternate cores saturate positive and negative
    blocks = await tb.client.mvm(tb.all, xs, out_elems=cfg.n_out, per_core=True)
    tb.check_blocks(blocks, cfg, tb.all, xs, per_core=True)
    signs = {int(b.sign[b.sat].max(initial=0)) for b in blocks} | {int(b.sign[b.sat].min(initial=1)) for b in blocks}
    assert signs == {0, 1}, "the stimulus does not saturate both signs"
    got = await tb.client.mvm(tb.all, xs, out_elems=cfg.n_out, per_core=True, reduce=True)
    tb.check_reduced(got, cfg, tb.all, xs)
    assert got[1].all(), "the reduced sat flag is not the OR of the cores' flags"


@cocotb.test()
async def random_host_traffic(dut):
    """Testpoint chip_random: random MVMs (modes, rectangles, batches) interleaved with CSR traffic."""
    tb = await make_chip_tb(dut)
    for i in range(6):
        area = random_area(tb)
        per_core, reduce = bool(tb.rng.integers(2)), bool(tb.rng.integers(2))
        batch = 1 if reduce else int(tb.rng.integers(1, 3))
        signed = bool(tb.rng.integers(2))
        cfg = tb.config(signed=signed, in_bits=int(tb.rng.integers(1 + signed, 5)))
        await configured_mvm_checked(tb, cfg, area, batch, per_core=per_core, reduce=reduce)
        xy = tb.cores[i % len(tb.cores)]
        if area[0] <= xy[0] <= area[2] and area[1] <= xy[1] <= area[3]:
            assert await tb.csr(xy, "BATCH") == batch
    assert int(dut.noc_drops.value) == 0 and int(dut.stale.value) == 0 and int(dut.timeouts.value) == 0


@cocotb.test()
async def mvm_every_shape_and_mode(dut):
    """Testpoint chip_mvm_modes: every rectangle shape of the grid (at a random place) in every MVM mode
    (multicast or per-core inputs, reduced or not), every result equal to the exact model."""
    tb = await make_chip_tb(dut)
    for w in range(1, tb.cols + 1):
        for h in range(1, tb.rows + 1):
            x0, y0 = int(tb.rng.integers(0, tb.cols - w + 1)), int(tb.rng.integers(0, tb.rows - h + 1))
            area = (x0, y0, x0 + w - 1, y0 + h - 1)
            for per_core in (False, True):
                for reduce in (False, True):
                    batch = 1 if reduce else 2
                    cfg = tb.config(in_bits=int(tb.rng.integers(2, 5)))
                    await configured_mvm_checked(tb, cfg, area, batch, per_core=per_core, reduce=reduce)
    assert int(dut.noc_drops.value) == 0 and int(dut.timeouts.value) == 0


@cocotb.test()
async def illegal_commands_change_nothing(dut):
    """Testpoint chip_host_errors: every illegal command gets its status, no payload, and no effect."""
    tb = await make_chip_tb(dut)
    cfg = tb.config()
    await tb.configure(cfg)
    mark = await tb.csr((0, 0), "MAX_COUNT")
    x = random_inputs(tb, cfg, (1,))
    mvm = host.mvm_args(tb.all, x, out_elems=cfg.n_out)
    flags = host._FLAGS
    max_count = tb.regmap["MAX_COUNT"].addr

    def with_flags(**f):
        fields = {"reduce": 0, "per_core": 0, "vectors": 1, "elems": cfg.n_in} | f
        return [mvm[0], flags.encode(fields), *mvm[2:]]

    good = host.command(Opcode.CSR_WRITE, [host.rect(*tb.all), max_count, 5], tag=1)
    cases = [
        ("bad CRC", [*good[:-1], good[-1] ^ 0x100], Status.BAD_CRC),
        ("unknown opcode 0", host.command(0, tag=2), Status.BAD_OPCODE),
        ("unknown opcode 0x7F", host.command(0x7F, [1, 2], tag=3), Status.BAD_OPCODE),
        ("PING with arguments", host.command(Opcode.PING, [0], tag=4), Status.BAD_LENGTH),
        ("CSR_WRITE short", host.command(Opcode.CSR_WRITE, [host.rect(0, 0), max_count], tag=5), Status.BAD_LENGTH),
        ("CSR_READ long", host.command(Opcode.CSR_READ, [0, max_count, 0], tag=6), Status.BAD_LENGTH),
        (
            "CSR_WRITE outside the grid",
            host.command(Opcode.CSR_WRITE, [host.rect(0, 0, tb.cols, 0), max_count, 5], tag=7),
            Status.BAD_CORE,
        ),
        (
            "CSR_WRITE empty rectangle",
            host.command(Opcode.CSR_WRITE, [host.rect(1, 0, 0, 0), max_count, 5], tag=8),  # x0 > x1
            Status.BAD_CORE,
        ),
        ("CSR_READ outside", host.command(Opcode.CSR_READ, [host.core(0, tb.rows), max_count], tag=9), Status.BAD_CORE),
        ("MVM too short", host.command(Opcode.MVM, mvm[:2], tag=10), Status.BAD_LENGTH),
        ("MVM missing input", host.command(Opcode.MVM, mvm[:-1], tag=11), Status.BAD_LENGTH),
        ("MVM extra input", host.command(Opcode.MVM, [*mvm, 0], tag=12), Status.BAD_LENGTH),
        ("MVM zero vectors", host.command(Opcode.MVM, with_flags(vectors=0), tag=13), Status.BAD_ARG),
        ("MVM zero elements", host.command(Opcode.MVM, with_flags(elems=0), tag=14), Status.BAD_ARG),
        (
            "MVM too many elements",
            host.command(Opcode.MVM, with_flags(elems=max(tb.core_rows, tb.core_cols) + 1), tag=15),
            Status.BAD_ARG,
        ),
        ("MVM reserved flags", host.command(Opcode.MVM, [mvm[0], mvm[1] | 0x4, *mvm[2:]], tag=16), Status.BAD_ARG),
        ("MVM no outputs", host.command(Opcode.MVM, [*mvm[:2], 0, *mvm[3:]], tag=17), Status.BAD_ARG),
        (
            "MVM reduce of two vectors",
            host.command(Opcode.MVM, [*with_flags(vectors=2, reduce=1), *mvm[3:]], tag=18),
            Status.BAD_ARG,
        ),
        (
            "MVM outside the grid",
            host.command(Opcode.MVM, [host.rect(0, 0, 0, tb.rows), *mvm[1:]], tag=19),
            Status.BAD_CORE,
        ),
        (
            "longer than the buffer",
            host.command(Opcode.CSR_WRITE, [0] * (tb.params.get("capacity", 512) + 1), tag=20),
            Status.BAD_LENGTH,
        ),
    ]
    for name, words, status in cases:
        r = await tb.client.send(words, check=False)
        assert r.status == status, f"{name}: status {r.status.name}, expected {status.name}"
        assert r.payload == (), f"{name}: payload {r.payload}"
    # A command cut short (the host stops after two words): after the watchdog the bridge drops it, answers
    # STALLED, and the framing holds for the next command.
    r = await tb.client.send(good[:2], check=False)
    assert r.status == Status.STALLED and r.payload == (), f"stalled command: {r.status.name}, payload {r.payload}"
    # Nothing changed: no core ran, no register was written, and the chip still works.
    for xy in tb.cores:
        assert await tb.csr(xy, "VECTORS") == 0, f"core {xy} ran a vector"
        assert await tb.csr(xy, "MAX_COUNT") == mark, f"core {xy}: MAX_COUNT changed"
    blocks = await tb.client.mvm(tb.all, x, out_elems=cfg.n_out)
    tb.check_blocks(blocks, cfg, tb.all, x)


@cocotb.test()
async def refused_start_reports_core_error(dut):
    """Testpoint chip_core_errors: a core that refuses START gives CORE_ERROR at once, zero-filled."""
    tb = await make_chip_tb(dut)
    cfg = tb.config()
    await tb.configure(cfg)
    bad = tb.cores[-1]
    acks, status_or = await tb.client.csr_write((*bad, *bad), tb.regmap["BATCH"].addr, 0)  # START will be refused
    assert acks == 1 and status_or == 0
    x = random_inputs(tb, cfg, (1,))
    r = await tb.client.command(Opcode.MVM, host.mvm_args(tb.all, x, out_elems=cfg.n_out), expect=Status.CORE_ERROR)
    assert int(dut.timeouts.value) == 0, "the refusal waited for the watchdog"
    blocks = host.mvm_blocks(r.payload, cfg.n_out)
    answered = blocks[: len(tb.cores) - 1]
    assert sorted((b.x, b.y) for b in answered) == sorted(xy for xy in tb.cores if xy != bad)
    for b in blocks[len(tb.cores) - 1 :]:
        assert (b.x, b.y) == (0, 0) and not b.count.any(), "the missing block is not zero-filled"
    error = await tb.csr(bad, "ERROR")
    assert error & (1 << ErrorBit.BATCH), f"core {bad} ERROR {error:#x}"


@cocotb.test()
async def core_that_never_answers_times_out(dut):
    """Testpoint chip_timeout: a core far slower than the watchdog ends in TIMEOUT, never a hang;
    its late output is drained as stale, and the chip recovers."""
    tb = await make_chip_tb(dut)
    cfg = tb.config(in_bits=2)
    await tb.configure(cfg)
    slow = tb.cores[0]
    t_sample = tb.params["watchdog"] + 1000  # one SAMPLE outlasts the bridge's watchdog
    await tb.client.csr_write((*slow, *slow), tb.regmap["T_SAMPLE"].addr, t_sample)
    xs = random_inputs(tb, cfg, (1, len(tb.cores)))
    args = host.mvm_args(tb.all, xs, out_elems=cfg.n_out, per_core=True, reduce=True)
    r = await tb.client.command(Opcode.MVM, args, expect=Status.TIMEOUT)
    assert int(dut.timeouts.value) == 1
    others = [i for i, xy in enumerate(tb.cores) if xy != slow]
    partial = sum(tb.models[tb.cores[i]].mvm(cfg, xs[0, i]).signed for i in others)
    sums, _ = host.reduced_sums(r.payload)
    assert sums[: cfg.n_out].tolist() == partial.tolist(), "the cores that answered are not in the sums"
    # The slow core finishes long after; its output is stale and must not reach a later response.
    for _ in range(16):
        await Timer(t_sample * CLOCK_NS, "ns")
        if int(dut.stale.value):
            break
    assert int(dut.stale.value) == 1, f"stale counter {int(dut.stale.value)}"
    assert int(dut.busy.value) == 0
    await tb.client.csr_write((*slow, *slow), tb.regmap["T_SAMPLE"].addr, 1)
    got = await tb.client.mvm(tb.all, xs, out_elems=cfg.n_out, per_core=True, reduce=True)
    tb.check_reduced(got, cfg, tb.all, xs)


@cocotb.test()
async def reset_during_traffic(dut):
    """Testpoint chip_reset: reset in the middle of an MVM (random moment) leaves a working chip."""
    tb = await make_chip_tb(dut)
    cfg = tb.config()
    for _ in range(2):
        await tb.configure(cfg, batch=2)
        xs = random_inputs(tb, cfg, (2, len(tb.cores)))
        args = host.mvm_args(tb.all, xs, out_elems=cfg.n_out, per_core=True)
        task = cocotb.start_soon(tb.client.command(Opcode.MVM, args))
        await Timer(int(tb.rng.integers(20, 400)) * CLOCK_NS, "ns")
        task.cancel()
        tb.port.source.bus.valid.value = 0
        await tb.reset()
        tb.port.flush()
        assert int(dut.busy.value) == 0 and int(dut.timeouts.value) == 0
        assert await tb.client.ping() == (tb.cols, tb.rows, tb.core_rows, tb.core_cols)
        assert await tb.csr(tb.cores[0], "BATCH") == 1, "a register kept its value through reset"
        await tb.configure(cfg, batch=2)
        blocks = await tb.client.mvm(tb.all, xs, out_elems=cfg.n_out, per_core=True)
        tb.check_blocks(blocks, cfg, tb.all, xs, per_core=True)


@cocotb.test()
async def write_verify_through_the_host(dut):
    """Testpoint chip_programming: cells programmed by host CSR writes, every pulse and read
    predicted by the reference; locked cores refuse."""
    tb = await make_chip_tb(dut)
    xy = tb.cores[-1]
    area = (*xy, *xy)
    monitor = ProgramMonitor(dut, prefix=f"prog_{xy[0]}_{xy[1]}")
    scoreboard = ProgramScoreboard()
    monitor.add_callback(scoreboard.on_item)
    monitor.start()
    codes = WriteVerifyCodes.from_params()
    settings = codes.settings(20.0)
    regs = tb.regmap
    # Locked: PROG_CTRL.start is refused with PROG_LOCKED and no pulse reaches the array.
    _, status_or = await tb.client.csr_write(area, regs["PROG_CTRL"].addr, 1, expect=Status.CORE_ERROR)
    assert status_or & (1 << ErrorBit.PROG_LOCKED), f"ERROR {status_or:#x} after a locked start"
    await tb.client.csr_write(area, regs["ERROR"].addr, 0xFFFF_FFFF)
    await tb.client.csr_write(area, regs["PROG_KEY"].addr, PROG_KEY)
    for name in PROG_TIMING:
        await tb.client.csr_write(area, regs[name].addr, {"T_PULSE": 2, "T_READ": 3}[name])
    results = []
    for row, col in ((0, 0), (1, 2), (tb.core_rows - 1, tb.core_cols - 1)):
        tb.devices[xy].cell(row, col).reads_averaged = codes.reads_for(20.0)
        await tb.client.write_all(area, regs, prog_settings_writes(regs, settings, row=row, col=col))
        scoreboard.expect(row, col, settings)
        await tb.client.csr_write(area, regs["PROG_CTRL"].addr, 1)
        for _ in range(2000):
            status = await tb.csr(xy, "PROG_STATUS")
            if not decode_field(regs, "PROG_STATUS", status, "busy"):
                break
        else:
            raise AssertionError(f"programming ({row}, {col}) still busy")
        result = decode_prog_result(regs, await tb.csr(xy, "PROG_RESULT"), await tb.csr(xy, "PROG_PULSES"))
        scoreboard.check_result(result)
        results.append(result)
    await tb.client.csr_write(area, regs["PROG_KEY"].addr, 0)  # lock again
    scoreboard.check()
    assert scoreboard.matched > 10 and all(r["outcome"] == Outcome.PASS for r in results), results
    # The other tiles saw no programming operation.
    for other, responder in tb.prog_responders.items():
        if other != xy:
            assert not responder.ops, f"tile {other} received programming operations {responder.ops}"


@cocotb.test(expect_fail=True)
async def checker_catches_wrong_weight(dut):
    """Testpoint chip_checker_negative: one wrong weight in one tile's macro fails the block check."""
    tb = await make_chip_tb(dut)
    cfg = tb.config(max_count=127)
    await tb.configure(cfg)
    xy = tb.cores[-1]
    faulty = tb.weights[xy].copy()
    # Off by enough codes that input 7 moves neuron 0 by more than 2 Δ: at least 2 counts.
    faulty[0, 0] += 2 * tb.macro_params.delta // cfg.in_range[1] + 1
    tb.responders[xy].load_weights(MacroState(faulty, tb.macro_params))
    x = np.zeros((1, cfg.n_in), dtype=int)
    x[0, 0] = cfg.in_range[1]
    blocks = await tb.client.mvm(tb.all, x, out_elems=cfg.n_out)
    tb.check_blocks(blocks, cfg, tb.all, x)


@cocotb.test(expect_fail=True)
async def checker_catches_wrong_sum(dut):
    """Testpoint chip_checker_negative: a reduction missing one core's contribution fails the check."""
    tb = await make_chip_tb(dut)
    cfg = tb.config(max_count=127)
    await tb.configure(cfg)
    area = (0, 0, tb.cols - 1, 0)
    xs = random_inputs(tb, cfg, (1, area_cores(area)))
    sums, sat = await tb.client.mvm(area, xs, out_elems=cfg.n_out, per_core=True, reduce=True)
    dropped = tb.models[area[:2]].mvm(cfg, xs[0, 0]).signed
    assert dropped.any(), "the dropped core contributes nothing: the negative test proves nothing"
    tb.check_reduced((sums[: cfg.n_out] - dropped, sat), cfg, area, xs)

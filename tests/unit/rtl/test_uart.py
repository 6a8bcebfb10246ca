# amaranth: UnusedElaboratable=no
"""The UART and the byte <-> word bridge in Amaranth's simulator.

The serial line is driven and decoded bit by bit by the testbench (8N1, LSB first), so the
RTL is checked against the frame format itself, not against another copy of the RTL.
"""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from cimdv.rtl.fpga.uart import BytesToWords, UartBridge, UartRx, UartTx, WordsToBytes, baud_divisor


def frame_bits(byte, *, stop=1):
    return [0, *((byte >> k) & 1 for k in range(8)), stop]


async def send_bytes(ctx, line, data, *, bit_cycles, stop=1, gap=0):
    """Drive 8N1 frames on ``line``; ``bit_cycles`` may be fractional (a rate error)."""
    t = 0.0
    now = 0
    for byte in data:
        for bit in frame_bits(byte, stop=stop):
            ctx.set(line, bit)
            t += bit_cycles
            await ctx.tick().repeat(round(t) - now)
            now = round(t)
        if gap:
            ctx.set(line, 1)
            await ctx.tick().repeat(gap)
            t += gap
            now += gap
    ctx.set(line, 1)


def run(dut, *benches):
    """Simulate until every bench has returned (none runs in the background: each one ends by itself)."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()


async def push(ctx, port, items, *, pause=lambda: False):
    """Offer ``items`` on a stream; one is transferred on a cycle where ``ready`` is high before the edge."""
    for item in items:
        while pause():
            ctx.set(port.valid, 0)
            await ctx.tick()
        ctx.set(port.payload, item)
        ctx.set(port.valid, 1)
        while True:
            # Handshakes are sampled at the edge itself: other testbenches may still change
            # `ready` (combinationally) during the cycle.
            _, _, ready = await ctx.tick().sample(port.ready)
            if ready:
                break
    ctx.set(port.valid, 0)


async def collect(ctx, port, n, *, ready=lambda: True, limit=100_000):
    """Take ``n`` payloads from a stream, with ``ready`` chosen per cycle."""
    got = []
    for _ in range(limit):
        ctx.set(port.ready, ready())
        _, _, r, valid, payload = await ctx.tick().sample(port.ready, port.valid, port.payload)
        if r and valid:
            got.append(payload)
        if len(got) == n:
            ctx.set(port.ready, 0)
            return got
    raise AssertionError(f"only {len(got)} of {n} items arrived: {got}")


# ---------------------------------------------------------------------------------------------
# Receiver


@pytest.mark.parametrize(
    ("divisor", "rate"),
    [(4, 1.0), (16, 1.0), (16, 0.98), (16, 1.02), (217, 1.0)],
    ids=["div4", "div16", "div16-fast2pct", "div16-slow2pct", "div217"],
)
def test_rx_back_to_back_bytes(divisor, rate):
    """Back-to-back frames, also from a sender 2 % off the receiver's rate: every byte, in order, no flag."""
    rng = random.Random(divisor)
    data = [rng.randrange(256) for _ in range(6 if divisor > 100 else 24)] + [0x00, 0xFF, 0x55, 0xAA]
    dut = UartRx(divisor=divisor, fifo_depth=4)
    got = []

    async def receiver(ctx):
        got.extend(await collect(ctx, dut.bytes, len(data)))
        assert not ctx.get(dut.framing_error)
        assert not ctx.get(dut.overrun)

    async def sender(ctx):
        await ctx.tick().repeat(3)
        await send_bytes(ctx, dut.rx, data, bit_cycles=divisor * rate)

    run(dut, receiver, sender)
    assert got == data


def test_rx_framing_error_discards_the_frame_and_waits_for_idle():
    divisor = 8
    dut = UartRx(divisor=divisor)
    got = []
    flags = {}

    async def bench(ctx):
        await ctx.tick().repeat(3)
        await send_bytes(ctx, dut.rx, [0x12], bit_cycles=divisor)
        await send_bytes(ctx, dut.rx, [0x34], bit_cycles=divisor, stop=0)  # bad stop bit
        ctx.set(dut.rx, 0)  # the line stays low (a break) for several frame times
        await ctx.tick().repeat(40 * divisor)
        flags["during_break"] = (ctx.get(dut.framing_error), ctx.get(dut.bytes.valid))
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * divisor)
        await send_bytes(ctx, dut.rx, [0x56, 0x78], bit_cycles=divisor)
        got.extend(await collect(ctx, dut.bytes, 3))
        flags["after"] = (ctx.get(dut.framing_error), ctx.get(dut.overrun))
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        flags["cleared"] = ctx.get(dut.framing_error)

    run(dut, bench)
    assert got == [0x12, 0x56, 0x78]  # 0x34 discarded, the break produced no frames
    assert flags["during_break"][0] == 1
    assert flags["after"] == (1, 0)
    assert flags["cleared"] == 0


def test_rx_ignores_a_glitch_shorter_than_half_a_bit():
    divisor = 16
    dut = UartRx(divisor=divisor)
    got = []

    async def bench(ctx):
        await ctx.tick().repeat(3)
        ctx.set(dut.rx, 0)
        await ctx.tick().repeat(divisor // 2 - 3)  # low for less than half a bit after synchronisation
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * divisor)
        assert not ctx.get(dut.busy)
        assert not ctx.get(dut.bytes.valid)
        await send_bytes(ctx, dut.rx, [0xA5], bit_cycles=divisor)
        got.extend(await collect(ctx, dut.bytes, 1))
        assert not ctx.get(dut.framing_error)

    run(dut, bench)
    assert got == [0xA5]


def test_rx_backpressure_keeps_every_byte_the_fifo_holds_and_flags_overrun():
    """A stalled consumer: the FIFO keeps ``fifo_depth`` bytes; the next one sets ``overrun`` (never silent)."""
    divisor, depth = 4, 5
    dut = UartRx(divisor=divisor, fifo_depth=depth)
    data = list(range(0x40, 0x40 + depth))
    got = []
    seen = {}

    async def bench(ctx):
        ctx.set(dut.bytes.ready, 0)
        await ctx.tick().repeat(3)
        await send_bytes(ctx, dut.rx, data, bit_cycles=divisor)
        await ctx.tick().repeat(3 * divisor)
        seen["full_no_overrun"] = ctx.get(dut.overrun)
        await send_bytes(ctx, dut.rx, [0x99], bit_cycles=divisor)
        await ctx.tick().repeat(3 * divisor)
        seen["overrun"] = ctx.get(dut.overrun)
        # Random backpressure while draining: every stored byte comes out once, in order.
        rng = random.Random(1)
        got.extend(await collect(ctx, dut.bytes, depth, ready=lambda: rng.random() < 0.4))
        await ctx.tick().repeat(4)
        seen["empty"] = not ctx.get(dut.bytes.valid)

    run(dut, bench)
    assert seen == {"full_no_overrun": 0, "overrun": 1, "empty": True}
    assert got == data


# ---------------------------------------------------------------------------------------------
# Transmitter


async def decode_line(ctx, line, n, divisor, *, limit=200_000):
    """Decode ``n`` frames from ``line``, checking that every bit lasts exactly ``divisor`` cycles.

    Returns the bytes and the idle cycles seen between consecutive frames.
    """
    out, gaps = [], []
    idle = 0
    for _ in range(limit):
        if ctx.get(line) == 0:
            bits = []
            for _k in range(10):
                level = ctx.get(line)
                for _c in range(divisor):
                    assert ctx.get(line) == level, "a bit changed within its period"
                    await ctx.tick()
                bits.append(level)
            assert bits[0] == 0 and bits[9] == 1, f"bad frame {bits}"
            out.append(sum(b << k for k, b in enumerate(bits[1:9])))
            if len(out) > 1:
                gaps.append(idle)
            idle = 0
            if len(out) == n:
                return out, gaps
            continue
        idle += 1
        await ctx.tick()
    raise AssertionError(f"only {len(out)} of {n} frames")


@pytest.mark.parametrize("divisor", [4, 9])
def test_tx_back_to_back_frames_have_exact_timing_and_no_gap(divisor):
    rng = random.Random(divisor)
    data = [rng.randrange(256) for _ in range(12)]
    dut = UartTx(divisor=divisor)
    result = {}

    async def monitor(ctx):
        result["frames"] = await decode_line(ctx, dut.tx, len(data), divisor)

    async def source(ctx):
        await push(ctx, dut.bytes, data)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(monitor)
    sim.add_testbench(source)
    sim.run()
    got, gaps = result["frames"]
    assert got == data
    assert gaps == [0] * (len(data) - 1)


# ---------------------------------------------------------------------------------------------
# Packing


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
def test_bytes_to_words_and_back_under_random_stalls(buffered):
    """bytes -> words -> bytes with random valid/ready on every side: LE order, nothing lost or repeated."""
    m = Module()
    m.submodules.pack = pack = BytesToWords()
    m.submodules.unpack = unpack = WordsToBytes(buffered=buffered)
    rng = random.Random(7)
    data = [rng.randrange(256) for _ in range(64)]
    words_seen = []
    got = []

    async def source(ctx):
        await push(ctx, pack.bytes, data, pause=lambda: rng.random() < 0.3)

    async def middle(ctx):
        # Words are taken with random stalls and forwarded with random delays.
        while len(words_seen) < len(data) // 4:
            ctx.set(pack.words.ready, rng.random() < 0.5)
            _, _, ready, valid, word = await ctx.tick().sample(pack.words.ready, pack.words.valid, pack.words.payload)
            if ready and valid:
                words_seen.append(word)
                ctx.set(pack.words.ready, 0)
                await push(ctx, unpack.words, [word])

    async def sink(ctx):
        got.extend(await collect(ctx, unpack.bytes, len(data), ready=lambda: rng.random() < 0.6))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(sink)
    sim.add_testbench(source)
    sim.add_testbench(middle)
    sim.run()
    expected_words = [int.from_bytes(bytes(data[i : i + 4]), "little") for i in range(0, len(data), 4)]
    assert words_seen == expected_words
    assert got == data


# ---------------------------------------------------------------------------------------------
# The bridge


def test_bridge_round_trip_and_idle_resynchronisation():
    """Words in over ``rx`` and out over ``tx``; a partial word is dropped after an idle gap, and flagged."""
    divisor, flush_bits = 4, 30
    dut = UartBridge(divisor=divisor, fifo_depth=8, flush_bits=flush_bits)
    words_in = [0x03020100, 0xDEADBEEF, 0x80000001]
    words_out = [0x44332211, 0x0000FFFF]
    result = {}

    async def host(ctx):
        await ctx.tick().repeat(3)
        await send_bytes(ctx, dut.rx, [0xEE, 0xEE], bit_cycles=divisor)  # a stray partial word
        await ctx.tick().repeat((flush_bits + 12) * divisor)
        result["dropped"] = ctx.get(dut.word_dropped)
        stream = b"".join(w.to_bytes(4, "little") for w in words_in)
        await send_bytes(ctx, dut.rx, list(stream), bit_cycles=divisor)

    async def fabric(ctx):
        result["rx_words"] = await collect(ctx, dut.rx_words, len(words_in))
        result["flags"] = (ctx.get(dut.framing_error), ctx.get(dut.overrun))

    async def sender(ctx):
        await push(ctx, dut.tx_words, words_out)

    async def line_monitor(ctx):
        result["tx_bytes"], _ = await decode_line(ctx, dut.tx, 4 * len(words_out), divisor)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(fabric)
    sim.add_testbench(line_monitor)
    sim.add_testbench(host)
    sim.add_testbench(sender)
    sim.run()
    assert result["dropped"] == 1
    assert result["rx_words"] == words_in
    assert result["flags"] == (0, 0)
    assert result["tx_bytes"] == list(b"".join(w.to_bytes(4, "little") for w in words_out))


# ---------------------------------------------------------------------------------------------
# Parameters


@pytest.mark.parametrize(
    ("factory", "error", "message"),
    [
        (lambda: UartRx(divisor=3), ValueError, "divisor must be >= 4, not 3"),
        (lambda: UartTx(divisor=4.5), TypeError, "divisor must be an integer"),
        (lambda: UartRx(divisor=8, fifo_depth=0), ValueError, r"fifo_depth must be 1\.\.4096, not 0"),
        (lambda: UartBridge(divisor=8, flush_bits=-1), ValueError, "flush_bits must be"),
        (lambda: baud_divisor(1e6, 1e6), ValueError, "too slow"),
        (lambda: baud_divisor(1_000_000, 115_200), ValueError, r"off by 3\.5%"),
    ],
)
def test_bad_parameters_are_named(factory, error, message):
    with pytest.raises(error, match=message):
        factory()


def test_baud_divisor_of_the_board_clock():
    assert baud_divisor(50_250_000, 115_200) == 436
    assert baud_divisor(12_000_000, 115_200) == 104

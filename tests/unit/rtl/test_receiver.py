"""The host bridge's command receiver: framing, CRC, over-long and stalled commands."""

from amaranth.sim import Simulator

from cimdv.rtl.host.protocol import Status
from cimdv.rtl.host.receiver import CommandReceiver
from cimdv.tb.chip import host


def command(opcode, args, *, crc_fix=0):
    words = host.command(opcode, args)
    return [*words[:-1], words[-1] ^ crc_fix]


def run(stream_words, *, gaps=(), capacity=8, watchdog=30, cycles=400):
    """Feed words (None = the host pauses one cycle); returns [(header, status, args)]."""
    dut = CommandReceiver(capacity=capacity, watchdog=watchdog)
    verdicts = []

    async def bench(ctx):
        pending = list(stream_words)
        for _ in range(cycles):
            word = pending[0] if pending else None
            ctx.set(dut.words.valid, word is not None)
            if word is not None:
                ctx.set(dut.words.payload, word)
            if ctx.get(dut.cmd.valid):
                cmd = ctx.get(dut.cmd.payload)
                n = min(int(cmd.header.length), capacity)
                args = []
                for a in range(n):
                    ctx.set(dut.arg_addr, a)
                    await ctx.tick()
                    args.append(ctx.get(dut.arg_data))
                verdicts.append((int(cmd.header.opcode), Status(cmd.status), args))
                ctx.set(dut.cmd.ready, 1)
                await ctx.tick()
                ctx.set(dut.cmd.ready, 0)
                continue
            taken = word is not None and ctx.get(dut.words.ready)
            await ctx.tick()
            if pending and (taken or pending[0] is None):
                pending.pop(0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return verdicts


def test_good_commands_are_buffered_whole():
    words = command(4, [1, 2, 3]) + command(1, []) + [None] * 5 + command(2, [0xDEADBEEF])
    assert run(words) == [(4, Status.OK, [1, 2, 3]), (1, Status.OK, []), (2, Status.OK, [0xDEADBEEF])]


def test_bad_crc_and_over_long_commands_keep_the_framing():
    words = command(3, [5, 6], crc_fix=1) + command(2, list(range(12))) + command(1, [7])
    out = run(words, capacity=8)
    assert [(o, s) for o, s, _ in out] == [(3, Status.BAD_CRC), (2, Status.BAD_LENGTH), (1, Status.OK)]
    assert out[2][2] == [7]


def test_a_host_that_stalls_mid_command_is_dropped_and_the_next_command_works():
    partial = command(4, [1, 2, 3])[:2]
    out = run(partial + [None] * 40 + command(1, [8]), watchdog=30)
    assert [(o, s) for o, s, _ in out] == [(4, Status.STALLED), (1, Status.OK)]

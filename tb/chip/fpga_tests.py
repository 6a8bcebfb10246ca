"""cocotb tests of ``fpga_top`` through its UART pins, with the same host API as the chip tests.

The twins hold the weights: every non-zero weight is written by the cores' write-verify
sequencers through host commands (there is no back door), then MVMs are checked against the
exact golden model with the twins' Δ and θ.
"""

import cocotb
import numpy as np

from cimdv.model.exact import MacroParams
from cimdv.model.writeverify import Outcome
from cimdv.rtl.core.regs import PROG_KEY
from cimdv.rtl.fpga.twin import g_code_of
from cimdv.rtl.fpga.uart import baud_divisor
from cimdv.rtl.host.protocol import Opcode, Status
from cimdv.tb.chip import host
from cimdv.tb.chip.env import CLOCK_NS, FAST_TIMING, ChipTb
from cimdv.tb.chip.uart import UartHostPort
from cimdv.tb.sim import params_from_env
from cimdv.tb.vip.config import decode_field, decode_prog_result, encode_fields

#: The simulation configuration: FpgaTop's chip (one tile of an 8 x 8 core, docs/fpga.md), no
#: PLL, a 100 MHz clock (CLOCK_NS), 8 clocks per bit.
DEFAULTS = {
    "cols": 1,
    "rows": 1,
    "core_rows": 8,
    "core_cols": 8,
    "g_bits": 4,
    "twin_delta": 4,
    "twin_threshold": 0,
    "pll": False,
    "clk_mhz": 1000 / CLOCK_NS,
    "baud": 12_500_000,
}
#: Non-zero weights programmed per core (the rest stay at the twin's reset code 0).
NONZERO = 6


async def make_fpga_tb(dut):
    params = params_from_env(DEFAULTS)
    divisor = baud_divisor(params["clk_mhz"] * 1e6, params["baud"])
    port = UartHostPort(dut.uart_rx, dut.uart_tx, bit_ns=divisor * CLOCK_NS)
    macro = MacroParams(delta=params["twin_delta"], threshold=params["twin_threshold"])
    tb = ChipTb(dut, params, cocotb.RANDOM_SEED, macro=macro, responders=False, port=port)
    await tb.start()
    dut._log.info(
        "seed %d, fpga_top %dx%d of %dx%d cores, %d clocks per bit",
        tb.seed,
        tb.cols,
        tb.rows,
        tb.core_rows,
        tb.core_cols,
        divisor,
    )
    return tb


async def program_weights(tb):
    """Random sparse weights, written cell by cell through the write-verify sequencers."""
    regs = tb.regmap
    gmax = (1 << tb.params["g_bits"]) - 1
    await tb.client.csr_write(tb.all, regs["PROG_KEY"].addr, PROG_KEY)
    await tb.client.csr_write(tb.all, regs["T_PULSE"].addr, 1)
    await tb.client.csr_write(tb.all, regs["T_READ"].addr, 2)
    for xy in tb.cores:
        w = np.zeros((tb.core_rows, tb.core_cols), dtype=np.int64)
        cells = tb.rng.choice(w.size, NONZERO, replace=False)
        w.flat[cells] = tb.rng.integers(1, gmax + 1, NONZERO)
        area = (*xy, *xy)
        for cell in cells:
            row, col = divmod(int(cell), tb.core_cols)
            code = int(w[row, col])
            await tb.client.csr_write(
                area, regs["PROG_TARGET"].addr, encode_fields(regs, "PROG_TARGET", target=g_code_of(code), tol=1)
            )
            await tb.client.csr_write(area, regs["PROG_CELL"].addr, encode_fields(regs, "PROG_CELL", row=row, col=col))
            await tb.client.csr_write(area, regs["PROG_CTRL"].addr, encode_fields(regs, "PROG_CTRL", start=1))
            for _ in range(50):
                if not decode_field(regs, "PROG_STATUS", await tb.csr(xy, "PROG_STATUS"), "busy"):
                    break
            else:
                raise AssertionError(f"core {xy}: programming ({row}, {col}) never finished")
            result = decode_prog_result(regs, await tb.csr(xy, "PROG_RESULT"), await tb.csr(xy, "PROG_PULSES"))
            assert result["outcome"] == Outcome.PASS and result["reading"] == g_code_of(code), (
                f"core {xy} cell ({row}, {col}) for code {code}: {result}"
            )
        tb.set_weights(xy, w)
    await tb.client.csr_write(tb.all, regs["PROG_KEY"].addr, 0)


def twin_timing(tb):
    """The shortest timing the twins follow exactly: T_SAMPLE + T_INTEG = core_rows + 3."""
    return FAST_TIMING | {"T_INTEG": tb.core_rows + 2}


@cocotb.test()
async def uart_host_programs_and_runs_mvms(dut):
    """Testpoint fpga_uart: weights programmed and MVMs (multicast, per-core, reduced) run over the
    UART pins with the chip's host API, checked against the exact model."""
    tb = await make_fpga_tb(dut)
    assert await tb.client.ping() == (tb.cols, tb.rows, tb.core_rows, tb.core_cols)
    await program_weights(tb)
    cfg = tb.config(max_count=15, out_bits=5)
    await tb.configure(cfg, batch=2, timing=twin_timing(tb))
    lo, hi = cfg.in_range
    xs = tb.rng.integers(lo, hi + 1, (2, cfg.n_in))
    blocks = await tb.client.mvm(tb.all, xs, out_elems=cfg.n_out)
    tb.check_blocks(blocks, cfg, tb.all, xs)
    assert any(b.count.any() for b in blocks), "every output is zero: the weights did not reach the twins"
    await tb.configure(cfg, batch=1, timing=twin_timing(tb))
    xs = tb.rng.integers(lo, hi + 1, (1, len(tb.cores), cfg.n_in))
    got = await tb.client.mvm(tb.all, xs, out_elems=cfg.n_out, per_core=True, reduce=True)
    tb.check_reduced(got, cfg, tb.all, xs)
    flags = int(dut.led.value)
    assert not flags & 0b1111_1000, f"error LEDs lit: {flags:08b}"


@cocotb.test()
async def uart_host_errors_keep_framing(dut):
    """Testpoint fpga_uart: a corrupted command over the UART gets BAD_CRC and the next one works."""
    tb = await make_fpga_tb(dut)
    words = host.command(Opcode.PING, tag=7)
    r = await tb.client.send([*words[:-1], words[-1] ^ 1], check=False)
    assert r.status == Status.BAD_CRC and r.payload == ()
    assert await tb.client.ping() == (tb.cols, tb.rows, tb.core_rows, tb.core_cols)


@cocotb.test()
async def uart_break_then_commands_work(dut):
    """Testpoint fpga_uart_break: the rx line held low for 2.5 frame times (a break: the receiver's
    stop bit is low, it waits in BREAK until the line rises) delivers no byte and lights the framing-error
    LED; the next commands get exact answers (PING, a CSR write read back) and the framing holds; a second
    break between two commands changes nothing either."""
    tb = await make_fpga_tb(dut)
    assert await tb.client.ping() == (tb.cols, tb.rows, tb.core_rows, tb.core_cols)
    framing_led = 1 << 5
    assert not int(dut.led.value) & framing_led, "framing-error LED lit before the break"
    await tb.port.send_break(2.5)
    assert int(dut.led.value) & framing_led, "a break did not light the framing-error LED"
    assert await tb.client.ping() == (tb.cols, tb.rows, tb.core_rows, tb.core_cols)
    addr = tb.regmap["BATCH"].addr
    assert await tb.client.csr_write(tb.all, addr, 3) == (len(tb.cores), 0)
    await tb.port.send_break(3)
    assert await tb.csr(tb.cores[-1], "BATCH") == 3
    r = await tb.client.command(Opcode.PING)
    assert r.status == Status.OK and r.payload[0] == 0xC1A0_0001
    assert not int(dut.led.value) & (1 << 6), "a break dropped a byte or a word (overrun/word-dropped LED)"

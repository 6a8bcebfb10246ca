# amaranth: UnusedElaboratable=no
"""Fast checks of the core in Amaranth's own simulator, before any Verilog is generated.

The golden model's cycle-level macro answers the controller, and every result is compared
with the transaction-level model: the same check as the cocotb benches, in seconds.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from cimdv.model.encoding import config_errors
from cimdv.model.exact import CoreConfig, ExactCore, MacroParams, MacroState
from cimdv.rtl.core.core import CimCore
from cimdv.rtl.core.layouts import input_beat_layout
from cimdv.rtl.core.regs import ErrorBit
from cimdv.tb.vip.sim_macro import SimMacro

ROWS, COLS, LANES = 8, 6, 4


def run_core(cfg, xs, weights, params, *, timing=1):
    dut = CimCore(rows=ROWS, cols=COLS, lanes=LANES)
    regmap = dut.regmap
    in_layout = input_beat_layout(LANES)
    macro = MacroState(weights, params)
    results = []
    status = {}

    async def bench(ctx):
        async def write(name, value):
            ctx.set(dut.csr.addr, regmap[name].addr)
            ctx.set(dut.csr.w_data, value)
            ctx.set(dut.csr.w_stb, 1)
            await ctx.tick()
            ctx.set(dut.csr.w_stb, 0)

        async def read(name):
            ctx.set(dut.csr.addr, regmap[name].addr)
            ctx.set(dut.csr.r_stb, 1)
            await ctx.tick()
            ctx.set(dut.csr.r_stb, 0)
            return ctx.get(dut.csr.r_data)

        mode = regmap["MODE"]
        value = 0
        for name, v in (
            ("backward", cfg.backward),
            ("signed", cfg.signed),
            ("in_bits", cfg.in_bits),
            ("out_bits", cfg.out_bits),
            ("pulse_mult", cfg.pulse_mult),
        ):
            value |= int(v) << mode.field(name).offset
        await write("MODE", value)
        await write("MAX_COUNT", cfg.max_count)
        await write("BATCH", len(xs))
        await write("NOISE_PULSES", cfg.noise_pulses)
        for name in ("T_INIT", "T_SAMPLE", "T_INTEG", "T_COMPARE", "T_DECR", "T_NOISE"):
            await write(name, timing)
        await write("OUT_MASK0", sum(int(b) << j for j, b in enumerate(cfg.out_mask)))
        await write("LINE_MODE0", sum(int(m) << (2 * i) for i, m in enumerate(cfg.line_modes)))
        await write("CTRL", 1)

        pending = [beat for x in xs for beat in beats(x)]
        ctx.set(dut.outputs.ready, 1)
        out_elems = []
        responder = SimMacro(dut.macro, macro)
        for _ in range(20000):
            if pending:
                ctx.set(dut.inputs.payload, in_layout.const(pending[0]))
                ctx.set(dut.inputs.valid, 1)
            else:
                ctx.set(dut.inputs.valid, 0)
            responder.step(ctx)
            if pending and ctx.get(dut.inputs.ready):
                pending.pop(0)
            if ctx.get(dut.outputs.valid):
                payload = ctx.get(dut.outputs.payload)
                for e in payload.elems:
                    out_elems.append((int(e.count), int(e.sign), int(e.sat)))
                if payload.last:
                    results.append(np.array(out_elems[: cfg.n_out]))
                    out_elems.clear()
            await ctx.tick()
            if ctx.get(dut.done):
                break
        status["error"] = await read("ERROR")
        status["steps"] = await read("LAST_STEPS")

    def beats(x):
        n = -(-len(x) // LANES)
        return [
            {
                "elems": [int(x[b * LANES + k]) if b * LANES + k < len(x) else 0 for k in range(LANES)],
                "last": int(b == n - 1),
            }
            for b in range(n)
        ]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results, status


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("seed", [1, 2])
def test_core_matches_model(backward, seed):
    rng = np.random.default_rng(seed)
    weights = rng.integers(0, 32, size=(ROWS, COLS))
    params = MacroParams(
        delta=int(rng.integers(20, 60)), threshold=int(rng.integers(-5, 6)), noise_q=7, noise_seed=seed
    )
    cfg = CoreConfig(
        rows=ROWS,
        cols=COLS,
        backward=backward,
        signed=True,
        in_bits=4,
        out_bits=6,
        pulse_mult=2,
        max_count=31,
        noise_pulses=2,
        line_modes=tuple(int(v) for v in rng.choice([0, 1, 2], size=ROWS)),
        out_mask=tuple(bool(v) for v in rng.integers(0, 4, size=ROWS) > 0),
    )
    lo, hi = cfg.in_range
    xs = rng.integers(lo, hi + 1, size=(3, cfg.n_in))
    results, status = run_core(cfg, xs, weights, params)
    assert status["error"] == 0
    reference = ExactCore(weights, params)
    expected = [reference.mvm(cfg, x) for x in xs]
    assert len(results) == len(xs)
    for got, want in zip(results, expected, strict=True):
        assert got[:, 0].tolist() == want.count.tolist()
        assert got[:, 1].tolist() == want.sign.tolist()
        assert got[:, 2].tolist() == want.sat.astype(int).tolist()
    assert status["steps"] == expected[-1].steps


def test_illegal_configuration_is_refused():
    cfg = CoreConfig(
        rows=ROWS, cols=COLS, backward=False, signed=False, in_bits=3, out_bits=3, pulse_mult=1, max_count=3
    )
    # MAX_COUNT 3 is legal for 3-bit outputs; the bench writes 4 to make it illegal.
    illegal = cfg.replace(max_count=3)
    object.__setattr__(illegal, "max_count", 4)
    results, status = run_core(
        illegal, [np.zeros(ROWS, dtype=int)], np.zeros((ROWS, COLS), dtype=int), MacroParams(delta=1)
    )
    assert results == []
    assert status["error"] == 1 << ErrorBit.MAX_COUNT


def start_errors(pulse_bits, modes):
    """ERROR after a port START for each ``(signed, in_bits, out_bits, pulse_mult, max_count)``.

    Each START comes on the cycle right after the last configuration write; an accepted one
    is aborted at once, a refused one is cleared.
    """
    dut = CimCore(rows=4, cols=4, lanes=2, pulse_bits=pulse_bits)
    regmap = dut.regmap
    errors = []

    async def bench(ctx):
        async def write(name, value):
            ctx.set(dut.csr.addr, regmap[name].addr)
            ctx.set(dut.csr.w_data, value)
            ctx.set(dut.csr.w_stb, 1)
            await ctx.tick()
            ctx.set(dut.csr.w_stb, 0)

        mode = regmap["MODE"]
        for signed, in_bits, out_bits, pulse_mult, max_count in modes:
            value = 0
            fields = {"signed": signed, "in_bits": in_bits, "out_bits": out_bits, "pulse_mult": pulse_mult}
            for name, v in fields.items():
                value |= v << mode.field(name).offset
            await write("MAX_COUNT", max_count)
            await write("MODE", value)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            if ctx.get(dut.busy):
                await write("CTRL", 0b10)  # abort
                await ctx.tick().until(~dut.busy)
            await ctx.tick()
            ctx.set(dut.csr.addr, regmap["ERROR"].addr)
            ctx.set(dut.csr.r_stb, 1)
            await ctx.tick()
            ctx.set(dut.csr.r_stb, 0)
            error = ctx.get(dut.csr.r_data)
            errors.append(error)
            await write("ERROR", error)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return errors


@pytest.mark.parametrize("pulse_bits", [8, 5])
def test_start_checks_match_the_model(pulse_bits):
    """IN_BITS, PULSE_OVF, OUT_BITS, MAX_COUNT at START equal ``config_errors`` over a sweep."""
    modes = [(s, i, 8, p, 127) for s in (0, 1) for i in range(16) for p in (0, 1, 2, 3, 5, 16, 31, 32, 127, 128, 255)]
    modes += [(1, 4, o, 1, c) for o in range(16) for c in (0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 127)]
    want_names = ("IN_BITS", "OUT_BITS", "PULSE_MULT", "PULSE_OVF", "MAX_COUNT")
    for mode, error in zip(modes, start_errors(pulse_bits, modes), strict=True):
        signed, in_bits, out_bits, pulse_mult, max_count = mode
        want = config_errors(
            rows=4,
            cols=4,
            signed=signed,
            in_bits=in_bits,
            out_bits=out_bits,
            pulse_mult=pulse_mult,
            max_count=max_count,
            pulse_bits=pulse_bits,
        )
        got = {name for name in want_names if error >> getattr(ErrorBit, name) & 1}
        assert error & ~sum(1 << getattr(ErrorBit, name) for name in want_names) == 0, f"{mode}: ERROR 0x{error:x}"
        assert got == set(want), f"{mode}: ERROR {sorted(got)}, model {sorted(want)}"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rows": 0}, ValueError, "rows must be 1..1024, not 0"),
        ({"cols": 2000}, ValueError, "cols must be 1..1024, not 2000"),
        ({"lanes": "4"}, TypeError, "lanes must be an integer"),
        ({"pulse_bits": 17}, ValueError, "pulse_bits must be 1..16"),
    ],
)
def test_bad_parameters_name_the_parameter(kwargs, error, message):
    with pytest.raises(error, match=message):
        CimCore(**kwargs)

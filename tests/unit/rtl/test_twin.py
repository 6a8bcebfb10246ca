# amaranth: UnusedElaboratable=no
"""The analog macro's digital twin in Amaranth's simulator, against the exact golden model.

Weights reach the twin only through its programming port: the twin-only tests program them
with a testbench write-verify loop (READ, then ramps of RESET or SET pulses, each followed by a
READ); the core + twin tests with the core's own ``WriteVerify`` sequencer (target ``2w + 1``,
tolerance 1, the chip's default ramps), each cell checked PASS. Then:

* the twin alone, driven op by op on the macro bus, must keep every integrator equal to the
  cycle-level model (``MacroState``) and answer every COMPARE as it does;
* a ``CimCore`` + ``MacroTwin`` pair must produce, for random configurations and inputs, the
  outputs of the transaction-level model (``ExactCore``): forward and backward, signed and
  unsigned, several widths, noise, masks, line modes and saturated neurons;
* the timing limits are exact: at ``T_SAMPLE + T_INTEG = rows + 3`` the twin is exact and
  silent, one cycle less raises ``busy_overrun``.
"""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from cimdv.model.exact import CoreConfig, ExactCore, MacroParams, MacroState, drive_to_bits
from cimdv.model.exact import MacroOp as ModelOp
from cimdv.rtl.core.core import CimCore
from cimdv.rtl.core.layouts import MacroOp, ProgOp, input_beat_layout
from cimdv.rtl.core.regs import PROG_KEY
from cimdv.rtl.fpga.twin import MIN_T_READ, MacroTwin, g_code_of, program_step

# The write-verify ramp of the chip's software (model/programming.py defaults), in amplitude
# codes of 20 mV: 1.2 V start, +0.1 V per pulse, 3.3 V end.
RAMP_START, RAMP_STEP, RAMP_END = 60, 5, 165


# ---------------------------------------------------------------------------------------------
# The programming port, driven as the write-verify sequencer will drive it.


class Programmer:
    """Drives a :class:`ProgramSignature` port: one operation, then one IDLE cycle."""

    def __init__(self, port, *, t_pulse=1, t_read=MIN_T_READ):
        self.port, self.t_pulse, self.t_read = port, t_pulse, t_read
        self.pulses = 0

    async def op(self, ctx, op, row, col, amp=0, cycles=1):
        port = self.port
        ctx.set(port.row, row)
        ctx.set(port.col, col)
        ctx.set(port.amp, amp)
        ctx.set(port.op, op)
        if cycles > 1:
            await ctx.tick().repeat(cycles - 1)
        g = ctx.get(port.g_code)  # the last cycle of the operation, where the controller samples
        await ctx.tick()
        ctx.set(port.op, ProgOp.IDLE)
        await ctx.tick()
        return g

    async def read(self, ctx, row, col):
        """The cell's code, from its reading ``g_code = 2·code + 1`` (always odd)."""
        g = await self.op(ctx, ProgOp.READ, row, col, cycles=self.t_read)
        assert g % 2 == 1, f"reading {g} is not 2·code + 1"
        return (g - 1) // 2

    async def pulse(self, ctx, op, row, col, amp):
        self.pulses += 1
        await self.op(ctx, op, row, col, amp, cycles=self.t_pulse)

    async def write_verify(self, ctx, row, col, target, *, max_iterations=3):
        """The chip's incremental write-verify with an exact window: RESET ramp, SET ramp, repeat."""
        g = await self.read(ctx, row, col)
        for _ in range(max_iterations):
            if g == target:
                return g
            for op, more in ((ProgOp.RESET, lambda v: v > target), (ProgOp.SET, lambda v: v < target)):
                amp = RAMP_START
                while more(g):
                    await self.pulse(ctx, op, row, col, amp)
                    g = await self.read(ctx, row, col)
                    amp = min(amp + RAMP_STEP, RAMP_END)
        raise AssertionError(f"cell ({row}, {col}) did not converge to {target}: reads {g}")

    async def program(self, ctx, weights):
        for (i, j), target in np.ndenumerate(weights):
            assert await self.write_verify(ctx, i, j, int(target)) == target


# ---------------------------------------------------------------------------------------------
# The programming semantics


def test_write_verify_converges_in_two_ramps_from_any_code():
    """The documented convergence claim, on the step function itself: any start, any target, 8-bit codes."""
    gmax = 255
    worst = 0
    for start in range(gmax + 1):
        for target in range(0, gmax + 1, 3):
            g, ramps = start, 0
            while g != target:
                ramps += 1
                assert ramps <= 2, (start, target)
                up = g < target
                amp = RAMP_START
                while (g < target) if up else (g > target):
                    step = program_step(amp)
                    g = min(g + step, gmax) if up else max(g - step, 0)
                    amp = min(amp + RAMP_STEP, RAMP_END)
            worst = max(worst, ramps)
    assert worst == 2


def test_program_step_function():
    assert [program_step(a) for a in (0, 79, 80, 111, 112, 143, 144, 165, 255)] == [0, 0, 1, 1, 2, 2, 3, 3, 6]
    with pytest.raises(ValueError, match=r"amp must be an integer 0\.\.255"):
        program_step(256)


def test_set_reset_read_follow_program_step_for_every_amplitude():
    """Every amplitude: SET from 0, READ, SET again, RESET, READ; codes saturate at 0 and 2**g_bits - 1."""
    dut = MacroTwin(rows=2, cols=3, g_bits=3)
    seen = []

    async def bench(ctx):
        prog = Programmer(dut.prog)
        for amp in range(256):
            await prog.pulse(ctx, ProgOp.SET, 1, 2, amp)
            a = await prog.read(ctx, 1, 2)
            await prog.pulse(ctx, ProgOp.SET, 1, 2, amp)
            b = await prog.read(ctx, 1, 2)
            await prog.pulse(ctx, ProgOp.RESET, 1, 2, amp)
            c = await prog.read(ctx, 1, 2)
            other = await prog.read(ctx, 1, 1)  # a neighbour in the same RAM word is untouched
            for _ in range(3):
                await prog.pulse(ctx, ProgOp.RESET, 1, 2, 255)
            seen.append((amp, a, b, c, other))
        assert ctx.get(dut.busy_overrun) == 0

    run(dut, bench)
    for amp, a, b, c, other in seen:
        step = program_step(amp)
        assert a == min(step, 7), amp
        assert b == min(2 * step, 7), amp
        assert c == max(min(2 * step, 7) - step, 0), amp
        assert other == 0


def test_read_shorter_than_two_cycles_is_an_overrun():
    dut = MacroTwin(rows=2, cols=2)
    flags = []

    async def bench(ctx):
        prog = Programmer(dut.prog, t_read=MIN_T_READ)
        await prog.read(ctx, 0, 0)
        flags.append(ctx.get(dut.busy_overrun))
        prog.t_read = 1
        await prog.read(ctx, 0, 0)
        flags.append(ctx.get(dut.busy_overrun))

    run(dut, bench)
    assert flags == [0, 1]


# ---------------------------------------------------------------------------------------------
# The twin alone on the macro bus, op by op, against the cycle-level model


def run(dut, *benches):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()


class Bus:
    """Drives the macro bus as the contract says: every operation starts with a change of op."""

    def __init__(self, twin):
        self.twin = twin
        self.bus = twin.macro

    async def op(self, ctx, op, cycles=1, *, drive=0, dec_up=0, backward=None):
        bus = self.bus
        if backward is not None:
            ctx.set(bus.backward, backward)
        ctx.set(bus.drive, drive)
        ctx.set(bus.dec_up, dec_up)
        ctx.set(bus.op, op)
        if cycles > 1:
            await ctx.tick().repeat(cycles - 1)
        cmp = ctx.get(bus.cmp)  # the last cycle, where the controller samples it
        await ctx.tick()
        ctx.set(bus.drive, 0)
        return cmp

    def integrators(self, ctx, threshold):
        return [ctx.get(u) + threshold for u in self.twin.u]


@pytest.mark.parametrize(("rows", "cols", "seed"), [(5, 7, 1), (7, 3, 2), (4, 4, 3)])
def test_twin_follows_the_cycle_level_model_op_by_op(rows, cols, seed):
    rng = np.random.default_rng(seed)
    g_bits = 4
    weights = rng.integers(0, 1 << g_bits, size=(rows, cols))
    params = MacroParams(
        delta=int(rng.integers(1, 40)),
        threshold=int(rng.integers(-50, 50)),
        noise_q=int(rng.integers(0, 30)),
        noise_seed=int(rng.integers(0, 1 << 16)),
    )
    dut = MacroTwin(rows=rows, cols=cols, g_bits=g_bits, noise_seed=params.noise_seed)
    model = MacroState(weights, params)
    lines = max(rows, cols)
    window = dut.min_sample_integ
    checked = {"ops": 0, "compares": 0}

    async def bench(ctx):
        ctx.set(dut.delta, params.delta)
        ctx.set(dut.threshold, params.threshold)
        ctx.set(dut.noise_q, params.noise_q)
        await Programmer(dut.prog).program(ctx, weights)
        bus = Bus(dut)
        for vector in range(6):
            backward = bool(rng.integers(0, 2))
            n_in = cols if backward else rows
            await bus.op(ctx, MacroOp.INIT, int(rng.integers(1, 3)), backward=backward)
            model.apply(ModelOp.INIT, backward=backward)
            ops = []
            for _ in range(int(rng.integers(2, 6))):
                codes = np.zeros(lines, dtype=np.int64)
                codes[:n_in] = rng.integers(-1, 2, size=n_in)
                ops += [(MacroOp.SAMPLE, codes)] * int(rng.integers(1, 4))
            ops += [(MacroOp.NOISE, None)] * int(rng.integers(0, 3))
            ops += [(MacroOp.COMPARE, None)]
            ops += [(MacroOp.DECREMENT, None), (MacroOp.COMPARE, None)] * int(rng.integers(1, 5))
            for op, codes in ops:
                if op == MacroOp.SAMPLE:
                    t_sample = int(rng.integers(1, window))
                    bits = drive_to_bits(codes)
                    await bus.op(ctx, MacroOp.SAMPLE, t_sample, drive=bits)
                    await bus.op(ctx, MacroOp.INTEGRATE, window - t_sample + int(rng.integers(0, 3)))
                    model.apply(ModelOp.SAMPLE, drive_bits=bits)
                    model.apply(ModelOp.INTEGRATE)
                elif op == MacroOp.COMPARE:
                    got = await bus.op(ctx, MacroOp.COMPARE, int(rng.integers(1, 3)))
                    assert got == model.apply(ModelOp.COMPARE), f"vector {vector}: cmp"
                    checked["compares"] += 1
                elif op == MacroOp.DECREMENT:
                    dec_up = int(rng.integers(0, 1 << lines))
                    await bus.op(ctx, MacroOp.DECREMENT, dec_up=dec_up)
                    model.apply(ModelOp.DECREMENT, dec_up_bits=dec_up)
                else:
                    await bus.op(ctx, MacroOp.NOISE)
                    await bus.op(ctx, MacroOp.IDLE)
                    model.apply(ModelOp.NOISE)
                assert bus.integrators(ctx, params.threshold) == model.integrator.tolist(), f"after {op.name}"
                checked["ops"] += 1
            await bus.op(ctx, MacroOp.IDLE, 2)
        assert (ctx.get(dut.busy_overrun), ctx.get(dut.drive_error), ctx.get(dut.overflow)) == (0, 0, 0)

    run(dut, bench)
    assert checked["ops"] > 30 and checked["compares"] > 6


def test_drive_errors_and_overflow_are_flagged():
    dut = MacroTwin(rows=3, cols=2, integ_bits=17)
    flags = {}

    async def bench(ctx):
        bus = Bus(dut)
        ctx.set(dut.delta, (1 << 15) - 1)
        await bus.op(ctx, MacroOp.INIT, backward=0)
        await bus.op(ctx, MacroOp.SAMPLE, drive=0b10_10_10)  # three rows forward: legal
        await bus.op(ctx, MacroOp.INTEGRATE, dut.min_sample_integ)
        flags["legal"] = ctx.get(dut.drive_error)
        await bus.op(ctx, MacroOp.INIT, backward=1)
        await bus.op(ctx, MacroOp.SAMPLE, drive=0b10_00_00)  # line 2 does not exist backward (2 columns)
        await bus.op(ctx, MacroOp.INTEGRATE, dut.min_sample_integ)
        flags["missing_line"] = ctx.get(dut.drive_error)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        await bus.op(ctx, MacroOp.SAMPLE, drive=0b11)  # the code that is never driven
        await bus.op(ctx, MacroOp.INTEGRATE, dut.min_sample_integ)
        flags["code_11"] = ctx.get(dut.drive_error)
        for k in range(3):
            await bus.op(ctx, MacroOp.DECREMENT, dec_up=0)
            await bus.op(ctx, MacroOp.IDLE)  # each operation starts with a change of op
            flags[f"overflow_{k}"] = ctx.get(dut.overflow)

    run(dut, bench)
    # 17-bit integrators: -3 * 32767 < -65536 overflows on the third decrement.
    assert flags == {
        "legal": 0,
        "missing_line": 1,
        "code_11": 1,
        "overflow_0": 0,
        "overflow_1": 0,
        "overflow_2": 1,
    }


@pytest.mark.parametrize("short", [False, True], ids=["at-minimum", "one-cycle-short"])
def test_minimum_sample_integrate_window_is_exact(short):
    """At ``T_SAMPLE + T_INTEG = rows + 3`` the twin is exact and silent; one cycle less raises busy_overrun."""
    rows, cols = 6, 5
    rng = np.random.default_rng(11)
    weights = rng.integers(0, 16, size=(rows, cols))
    dut = MacroTwin(rows=rows, cols=cols)
    model = MacroState(weights, MacroParams(delta=1))
    window = dut.min_sample_integ - int(short)
    assert dut.min_sample_integ == rows + 3
    result = {}

    async def bench(ctx):
        await Programmer(dut.prog).program(ctx, weights)
        bus = Bus(dut)
        ctx.set(dut.delta, 1)
        await bus.op(ctx, MacroOp.INIT, backward=0)
        model.apply(ModelOp.INIT, backward=False)
        for t_sample in (1, 2, window - 1):
            bits = drive_to_bits(rng.integers(-1, 2, size=rows))
            await bus.op(ctx, MacroOp.SAMPLE, t_sample, drive=bits)
            await bus.op(ctx, MacroOp.INTEGRATE, window - t_sample)
            model.apply(ModelOp.SAMPLE, drive_bits=bits)
            model.apply(ModelOp.INTEGRATE)
        await bus.op(ctx, MacroOp.COMPARE)
        result["overrun"] = ctx.get(dut.busy_overrun)
        result["exact"] = bus.integrators(ctx, 0) == model.integrator.tolist()

    run(dut, bench)
    if short:
        assert result["overrun"] == 1  # whatever the integrators say, the run is marked unreliable
    else:
        assert result == {"overrun": 0, "exact": True}


# ---------------------------------------------------------------------------------------------
# CimCore + MacroTwin against the transaction-level model


def run_core_with_twin(cfg, xs, weights, params, *, lanes=2, g_bits=4):
    """Program ``weights`` with the core's write-verify sequencer, then run ``xs`` through the pair."""
    rows, cols = cfg.rows, cfg.cols
    core = CimCore(rows=rows, cols=cols, lanes=lanes)
    twin = MacroTwin(rows=rows, cols=cols, g_bits=g_bits, noise_seed=params.noise_seed)
    m = Module()
    m.submodules.core = core
    m.submodules.twin = twin
    wiring.connect(m, core.macro, twin.macro)
    wiring.connect(m, core.prog, twin.prog)
    regmap = core.regmap
    in_layout = input_beat_layout(lanes)
    window = twin.min_sample_integ
    out = {"results": [], "programmed": []}

    async def bench(ctx):
        ctx.set(twin.delta, params.delta)
        ctx.set(twin.threshold, params.threshold)
        ctx.set(twin.noise_q, params.noise_q)

        async def write(name, value):
            ctx.set(core.csr.addr, regmap[name].addr)
            ctx.set(core.csr.w_data, value)
            ctx.set(core.csr.w_stb, 1)
            await ctx.tick()
            ctx.set(core.csr.w_stb, 0)

        async def read(name):
            ctx.set(core.csr.addr, regmap[name].addr)
            ctx.set(core.csr.r_stb, 1)
            await ctx.tick()
            ctx.set(core.csr.r_stb, 0)
            return ctx.get(core.csr.r_data)

        # Weights: the core's write-verify, target 2w + 1 and tolerance 1 (the twin's exact window),
        # the chip's default ramps (1.2 V -> 3.3 V by 0.1 V), the twin's shortest pulse and read.
        await write("PROG_KEY", PROG_KEY)
        await write("T_PULSE", 1)
        await write("T_READ", MIN_T_READ)
        for (i, j), w in np.ndenumerate(weights):
            await write("PROG_CELL", i | (j << 16))
            await write("PROG_TARGET", g_code_of(int(w)) | (1 << 8))
            await write("PROG_CTRL", 1)
            for _ in range(5_000):
                _, _, done = await ctx.tick().sample(core.done)
                if done:
                    break
            else:
                raise AssertionError(f"write-verify of cell ({i}, {j}) did not end; ERROR = {await read('ERROR'):#x}")
            result = await read("PROG_RESULT")
            out["programmed"].append((result & 7, (result >> 8) & 0xFF, g_code_of(int(w))))

        mode = regmap["MODE"]
        value = 0
        for name in ("backward", "signed", "in_bits", "out_bits", "pulse_mult"):
            value |= int(getattr(cfg, name)) << mode.field(name).offset
        await write("MODE", value)
        await write("MAX_COUNT", cfg.max_count)
        await write("BATCH", len(xs))
        await write("NOISE_PULSES", cfg.noise_pulses)
        timing = {"T_INIT": 1, "T_SAMPLE": 1, "T_INTEG": window - 1, "T_COMPARE": 1, "T_DECR": 1, "T_NOISE": 1}
        for name, cycles in timing.items():
            await write(name, cycles)
        await write("OUT_MASK0", sum(int(b) << j for j, b in enumerate(cfg.out_mask)))
        await write("LINE_MODE0", sum(int(mode_) << (2 * i) for i, mode_ in enumerate(cfg.line_modes)))
        await write("CTRL", 1)

        n_beats = -(-cfg.n_in // lanes)
        pending = [
            {
                "elems": [int(x[b * lanes + k]) if b * lanes + k < len(x) else 0 for k in range(lanes)],
                "last": int(b == n_beats - 1),
            }
            for x in xs
            for b in range(n_beats)
        ]
        elems = []
        ctx.set(core.outputs.ready, 1)
        for _ in range(200_000):
            if pending:
                ctx.set(core.inputs.payload, in_layout.const(pending[0]))
            ctx.set(core.inputs.valid, bool(pending))
            _, _, in_ready, out_valid, payload, done = await ctx.tick().sample(
                core.inputs.ready, core.outputs.valid, core.outputs.payload, core.done
            )
            if pending and in_ready:
                pending.pop(0)
            if out_valid:
                elems += [(int(e.count), int(e.sign), int(e.sat)) for e in payload.elems]
                if payload.last:
                    out["results"].append(np.array(elems[: cfg.n_out]))
                    elems.clear()
            if done:
                break
        out["error"] = await read("ERROR")
        out["twin"] = (ctx.get(twin.busy_overrun), ctx.get(twin.drive_error), ctx.get(twin.overflow))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


# Random configurations: (seed, rows, cols, backward, signed, in_bits, out_bits, pulse_mult, max_count, noise).
CONFIGS = [
    pytest.param(1, 8, 6, False, True, 4, 6, 2, 31, 0, id="fwd-signed4-8x6"),
    pytest.param(2, 8, 6, True, True, 4, 6, 1, 31, 2, id="bwd-signed4-noise-8x6"),
    pytest.param(3, 8, 6, False, False, 3, 8, 3, 127, 0, id="fwd-unsigned3-8x6"),
    pytest.param(4, 5, 8, True, False, 5, 7, 1, 63, 1, id="bwd-unsigned5-noise-5x8"),
    pytest.param(5, 8, 6, False, True, 8, 8, 1, 127, 0, id="fwd-signed8-8x6"),
    pytest.param(6, 8, 6, True, True, 2, 4, 4, 2, 0, id="bwd-signed2-saturating-8x6"),
]


@pytest.mark.parametrize(
    ("seed", "rows", "cols", "backward", "signed", "in_bits", "out_bits", "pulse_mult", "max_count", "noise"),
    CONFIGS,
)
def test_core_with_twin_matches_exact_model(
    seed, rows, cols, backward, signed, in_bits, out_bits, pulse_mult, max_count, noise
):
    rng = np.random.default_rng(seed)
    weights = rng.integers(0, 16, size=(rows, cols))
    saturating = max_count < 4
    params = MacroParams(
        delta=int(rng.integers(1, 4)) if saturating else int(rng.integers(2, 40)),
        threshold=int(rng.integers(-20, 21)),
        noise_q=int(rng.integers(1, 25)),
        noise_seed=int(rng.integers(0, 1 << 16)),
    )
    lines = max(rows, cols)
    cfg = CoreConfig(
        rows=rows,
        cols=cols,
        backward=backward,
        signed=signed,
        in_bits=in_bits,
        out_bits=out_bits,
        pulse_mult=pulse_mult,
        max_count=max_count,
        noise_pulses=noise,
        line_modes=tuple(int(v) for v in rng.choice([0, 1, 1, 2], size=lines)),
        out_mask=tuple(bool(v) for v in rng.integers(0, 5, size=lines) > 0),
    )
    lo, hi = cfg.in_range
    xs = rng.integers(lo, hi + 1, size=(2, cfg.n_in))
    out = run_core_with_twin(cfg, xs, weights, params)
    assert out["programmed"] == [(0, g, g) for _, _, g in out["programmed"]], "write-verify: outcome PASS, reading"
    assert out["error"] == 0
    assert out["twin"] == (0, 0, 0), "busy_overrun, drive_error, overflow"
    reference = ExactCore(weights, params)
    expected = [reference.mvm(cfg, x) for x in xs]
    assert len(out["results"]) == len(xs)
    for k, (got, want) in enumerate(zip(out["results"], expected, strict=True)):
        assert got[:, 0].tolist() == want.count.tolist(), f"vector {k}: count"
        assert got[:, 1].tolist() == want.sign.tolist(), f"vector {k}: sign"
        assert got[:, 2].tolist() == want.sat.astype(int).tolist(), f"vector {k}: sat"
    if saturating:
        assert any(r.sat.any() for r in expected), "the saturating configuration saturated nothing"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rows": 0, "cols": 4}, ValueError, r"rows must be 1\.\.256, not 0"),
        ({"rows": 4, "cols": 65}, ValueError, r"cols must be 1\.\.64, not 65"),
        ({"rows": 4, "cols": 4, "g_bits": 8}, ValueError, r"g_bits must be 1\.\.7, not 8"),
        ({"rows": 4, "cols": 4, "noise_seed": -1}, ValueError, "noise_seed must be"),
        ({"rows": 4, "cols": 4, "integ_bits": 12}, ValueError, "integ_bits must be at least 17"),
        ({"rows": "4", "cols": 4}, TypeError, "rows must be an integer"),
    ],
)
def test_bad_parameters_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        MacroTwin(**kwargs)

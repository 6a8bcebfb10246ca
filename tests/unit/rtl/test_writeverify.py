# amaranth: UnusedElaboratable=no
"""The write-verify sequencer in Amaranth's simulator, with a device model in the loop.

Every operation the sequencer puts on the programming port is checked against the golden
model's ``WriteVerifyRef`` fed with the same readings, and so are the result members at
``done``. Also: the refusals (cell, settings), abort, the core-level key lock and busy
interlock, and that the model restates the RTL's constants.
"""

import numpy as np
import pytest
from amaranth.hdl import Shape
from amaranth.sim import Simulator

from cimdv.model import writeverify as mwv
from cimdv.model.programming import DeviceParams
from cimdv.model.writeverify import (
    BISTABLE_DEVICE,
    ArrayDevice,
    Outcome,
    WriteVerifyCodes,
    WriteVerifyRef,
    WriteVerifySettings,
)
from cimdv.rtl.core import layouts
from cimdv.rtl.core.core import CimCore
from cimdv.rtl.core.layouts import CoreState, ProgOp, ProgOutcome, ProgState
from cimdv.rtl.core.regs import PROG_KEY, ErrorBit, register_map
from cimdv.rtl.core.writeverify import WriteVerify

ROWS, COLS = 4, 3
SETTING_FIELDS = list(WriteVerifySettings.__dataclass_fields__)


def settings_value(settings, t_pulse, t_read):
    value = {name: getattr(settings, name) for name in SETTING_FIELDS}
    return dict(value, t_pulse=t_pulse, t_read=t_read)


def run_sequencer(commands, device, *, t_pulse=1, t_read=2, abort_after=None, max_cycles=200_000):
    """Run (row, col, settings) commands on a WriteVerify with ``device`` answering the port.

    Returns, per command, the operations seen on the port (op, row, col, amp, reading) and the
    result members at ``done``; plus a list of protocol problems (an op not preceded by IDLE,
    a wrong hold time, row/col/amp changing during an operation).
    """
    dut = WriteVerify(rows=ROWS, cols=COLS)
    out = []
    problems = []

    async def bench(ctx):
        for row, col, settings in commands:
            ctx.set(dut.row, row)
            ctx.set(dut.col, col)
            ctx.set(dut.settings, settings_value(settings, t_pulse, t_read))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ops = []
            prev = ProgOp.IDLE
            held = 0
            current = None
            for cycle in range(max_cycles):
                if abort_after is not None and cycle == abort_after:
                    ctx.set(dut.abort, 1)
                elif abort_after is not None and cycle == abort_after + 1:
                    ctx.set(dut.abort, 0)
                op = ProgOp(ctx.get(dut.prog.op))
                sel = (ctx.get(dut.prog.row), ctx.get(dut.prog.col), ctx.get(dut.prog.amp))
                if op != prev:
                    if prev != ProgOp.IDLE:
                        want = t_read if prev == ProgOp.READ else t_pulse
                        if held != want and abort_after is None:
                            problems.append(f"{prev.name} held {held} cycles, want {want}")
                    if op != ProgOp.IDLE:
                        if prev != ProgOp.IDLE:
                            problems.append(f"{op.name} right after {prev.name}, no IDLE between")
                        reading = None
                        if op == ProgOp.READ:
                            reading = device.apply(op.value, sel[0], sel[1])
                            ctx.set(dut.prog.g_code, reading)
                        else:
                            device.apply(op.value, sel[0], sel[1], sel[2])
                        current = sel
                        ops.append((op, sel[0], sel[1], sel[2] if op != ProgOp.READ else 0, reading))
                    held = 0
                elif op != ProgOp.IDLE and sel != current:
                    problems.append(f"row/col/amp changed during {op.name}")
                prev = op
                held += 1
                done = ctx.get(dut.done)
                await ctx.tick()
                if done:
                    break
            else:
                problems.append("no done within max_cycles")
            result = ctx.get(dut.result)
            out.append(
                (
                    ops,
                    {
                        "outcome": Outcome(ctx.get(dut.result.outcome).value),
                        "reading": int(result.reading),
                        "iterations": int(result.iterations),
                        "set_pulses": int(result.set_pulses),
                        "reset_pulses": int(result.reset_pulses),
                    },
                )
            )
            assert not ctx.get(dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out, problems


def predict(settings, ops):
    """Feed the port's readings to the reference; the operations it predicts and its result."""
    ref = WriteVerifyRef(settings)
    predicted = []
    for op, _row, _col, _amp, reading in ops:
        action = ref.action
        if action.done:
            break
        predicted.append((ProgOp(int(action.op)), action.amp if action.op != mwv.ProgOp.READ else 0))
        ref.feed(reading if op == ProgOp.READ else None)
    return predicted, ref


def check_against_reference(row, col, settings, ops, result):
    predicted, ref = predict(settings, ops)
    seen = [(op, amp) for op, _r, _c, amp, _rd in ops]
    assert seen == predicted, f"port operations {seen[:12]}... differ from the reference {predicted[:12]}..."
    assert all((r, c) == (row, col) for _op, r, c, _a, _rd in ops)
    assert ref.done, f"the sequencer stopped but the reference expects {ref.action}"
    want = ref.result
    got = (result["outcome"], result["set_pulses"], result["reset_pulses"], result["iterations"], result["reading"])
    assert got == tuple(want[:5]), f"result {got}, reference {tuple(want[:5])}"
    return want


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sequencer_matches_reference_on_a_device(seed):
    """Random targets (normal and off) on a realistic device: every operation as the reference predicts."""
    rng = np.random.default_rng(seed)
    codes = WriteVerifyCodes.from_params()
    device = ArrayDevice((ROWS, COLS), DeviceParams(stuck_fraction=0.05), seed=seed)
    commands = []
    for row in range(ROWS):
        for col in range(COLS):
            target = float(rng.choice([0.0, 0.5, rng.uniform(1, 40)]))
            device.cell(row, col).reads_averaged = codes.reads_for(target)
            commands.append((row, col, codes.settings(target)))
    results, problems = run_sequencer(commands, device)
    assert not problems, problems[:5]
    outcomes = []
    for (row, col, settings), (ops, result) in zip(commands, results, strict=True):
        outcomes.append(check_against_reference(row, col, settings, ops, result).outcome)
    assert outcomes.count(Outcome.PASS) >= len(commands) // 2, outcomes


@pytest.mark.parametrize("seed", [4, 5, 6, 7])
def test_sequencer_matches_reference_with_random_settings(seed):
    """Random legal settings (short ramps, small limits and budgets): pulse/iteration limits and TIMEOUT."""
    rng = np.random.default_rng(seed)
    device = ArrayDevice((ROWS, COLS), DeviceParams(c2c_sigma=0.8, jump_prob=0.1), seed=seed)
    commands = []
    for _ in range(8):
        s0, s1 = sorted(int(v) for v in rng.integers(40, 200, 2))
        r0, r1 = sorted(int(v) for v in rng.integers(40, 200, 2))
        settings = WriteVerifySettings(
            target=int(rng.integers(0, 200)),
            tol=int(rng.integers(1, 8)),
            set_start=s0,
            set_end=s1,
            set_step=int(rng.integers(1, 40)),
            reset_start=r0,
            reset_end=r1,
            reset_step=int(rng.integers(1, 40)),
            pulse_limit=int(rng.integers(1, 4)),
            iter_limit=int(rng.integers(0, 4)),
            max_ops=int(rng.choice([3, 10, 40, 0xFFFF])),
        )
        commands.append((int(rng.integers(0, ROWS)), int(rng.integers(0, COLS)), settings))
    results, problems = run_sequencer(commands, device, t_pulse=int(rng.integers(1, 4)), t_read=1)
    assert not problems, problems[:5]
    seen = set()
    for (row, col, settings), (ops, result) in zip(commands, results, strict=True):
        seen.add(check_against_reference(row, col, settings, ops, result).outcome)
    assert seen - {Outcome.PASS}, "expected some failures with these limits"


def test_iteration_limit_on_a_bistable_cell():
    """A cell that jumps across the window on every pulse fails after iter_limit + 1 iterations."""
    device = ArrayDevice((ROWS, COLS), BISTABLE_DEVICE, seed=0)
    device.force((0, 0), g_uS=5.0)
    settings = WriteVerifySettings(target=80, iter_limit=2)
    [(ops, result)], problems = run_sequencer([(0, 0, settings)], device)
    assert not problems
    check_against_reference(0, 0, settings, ops, result)
    assert result == {
        "outcome": Outcome.FAIL_HIGH,
        "reading": 240,
        "iterations": 3,
        "set_pulses": 3,
        "reset_pulses": 2,
    }


def test_refusals_and_abort():
    dut = WriteVerify(rows=ROWS, cols=COLS)
    good = settings_value(WriteVerifySettings(target=40), 1, 1)
    bad_settings = [
        dict(good, set_step=0),
        dict(good, reset_step=0),
        dict(good, set_start=100, set_end=99),
        dict(good, reset_start=100, reset_end=99),
        dict(good, tol=0),
        dict(good, pulse_limit=0),
        dict(good, max_ops=0),
        dict(good, t_pulse=0),
        dict(good, t_read=0),
    ]
    seen = {}

    async def bench(ctx):
        for i, s in enumerate(bad_settings):
            ctx.set(dut.settings, s)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            seen[f"setting {i}"] = (ctx.get(dut.setting_error), ctx.get(dut.cell_error), ctx.get(dut.busy))
        ctx.set(dut.settings, good)
        for row, col in ((ROWS, 0), (0, COLS)):
            ctx.set(dut.row, row)
            ctx.set(dut.col, col)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            seen[f"cell {row},{col}"] = (ctx.get(dut.setting_error), ctx.get(dut.cell_error), ctx.get(dut.busy))
        ctx.set(dut.row, 1)
        ctx.set(dut.col, 2)
        ctx.set(dut.settings, dict(good, t_read=50))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await ctx.tick().repeat(10)
        seen["running"] = (ctx.get(dut.prog.op), ctx.get(dut.state), ctx.get(dut.prog.row), ctx.get(dut.prog.col))
        ctx.set(dut.abort, 1)
        await ctx.tick()
        ctx.set(dut.abort, 0)
        seen["aborted"] = (ctx.get(dut.prog.op), ctx.get(dut.done), ctx.get(dut.result.outcome))
        await ctx.tick()
        seen["after"] = (ctx.get(dut.busy), ctx.get(dut.state))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for i in range(len(bad_settings)):
        assert seen[f"setting {i}"] == (1, 0, 0), (i, seen[f"setting {i}"])
    assert seen[f"cell {ROWS},0"] == (0, 1, 0) and seen[f"cell 0,{COLS}"] == (0, 1, 0)
    assert seen["running"] == (ProgOp.READ, ProgState.READ, 1, 2)
    assert seen["aborted"] == (ProgOp.IDLE, 1, ProgOutcome.ABORTED)
    assert seen["after"] == (0, ProgState.IDLE)


def test_settings_errors_agree_with_the_rtl():
    """``WriteVerifySettings.errors()`` is non-empty exactly when the RTL raises ``setting_error``."""
    rng = np.random.default_rng(11)
    dut = WriteVerify(rows=ROWS, cols=COLS)
    cases = []
    for _ in range(200):
        values = {
            name: int(rng.choice([0, 1, int(rng.integers(0, 256)), 255]))
            for name in SETTING_FIELDS
            if name != "max_ops"
        }
        values["max_ops"] = int(rng.choice([0, 1, 0xFFFF]))
        cases.append(WriteVerifySettings(**values))
    got = []

    async def bench(ctx):
        for s in cases:
            ctx.set(dut.settings, settings_value(s, 1, 1))
            await ctx.delay(1e-9)
            got.append(bool(ctx.get(dut.setting_error)))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert got == [bool(s.errors()) for s in cases]
    assert any(got) and not all(got)


def test_model_restates_the_rtl_constants():
    assert {m.name: m.value for m in ProgOp} == {m.name: int(m.value) for m in mwv.ProgOp}
    assert {m.name: m.value for m in ProgOutcome} == {m.name: int(m.value) for m in mwv.Outcome}
    assert (layouts.G_CODE_BITS, layouts.AMP_BITS) == (mwv.G_CODE_BITS, mwv.AMP_BITS)
    layout = layouts.ProgSettings.as_shape()
    for name in SETTING_FIELDS:
        assert Shape.cast(layout[name].shape).width == mwv._FIELD_BITS[name], name


def test_register_resets_are_the_default_settings():
    """The PROG_* reset values are WriteVerifyParams()'s normal procedure in codes."""
    regmap = register_map(rows=ROWS, cols=COLS)
    want = WriteVerifyCodes.from_params().settings_for_code(0)
    fields = {
        "target": ("PROG_TARGET", "target"),
        "tol": ("PROG_TARGET", "tol"),
        "set_start": ("PROG_SET", "start"),
        "set_end": ("PROG_SET", "end"),
        "set_step": ("PROG_SET", "step"),
        "reset_start": ("PROG_RESET", "start"),
        "reset_end": ("PROG_RESET", "end"),
        "reset_step": ("PROG_RESET", "step"),
        "pulse_limit": ("PROG_LIMITS", "pulse_limit"),
        "iter_limit": ("PROG_LIMITS", "iter_limit"),
        "max_ops": ("PROG_LIMITS", "max_ops"),
    }
    layout = layouts.ProgSettings.as_shape()
    for name, (reg, field) in fields.items():
        f = regmap[reg].field(field)
        assert f.reset == getattr(want, name), name
        assert f.width == Shape.cast(layout[name].shape).width, name
    assert regmap["PROG_RESULT"].field("outcome").reset == ProgOutcome.NONE.value


# ---- the core: key lock, interlock with MVM runs ---------------------------------------------


def test_core_key_lock_and_interlock():
    """In CimCore: locked start refused (no op), key unlocks, other values lock, busy interlocks, abort."""
    dut = CimCore(rows=ROWS, cols=COLS, lanes=2)
    regmap = dut.regmap
    log = {}

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

        ops = set()

        async def wait_idle(limit=5000):
            for _ in range(limit):
                ops.add(ctx.get(dut.prog.op))
                if not ctx.get(dut.busy):
                    return
                await ctx.tick()
            raise AssertionError("core still busy")

        await write("T_PULSE", 1)
        await write("T_READ", 1)
        await write("PROG_TARGET", 40 | 4 << 8)
        await write("PROG_CTRL", 1)
        log["locked"] = (await read("ERROR"), ctx.get(dut.busy), await read("PROG_STATUS"))
        await write("ERROR", 0xFFFFFFFF)
        await write("PROG_KEY", PROG_KEY)
        log["unlocked"] = await read("PROG_STATUS")
        await write("PROG_CTRL", 1)
        log["state"] = await read("STATUS")
        await write("CTRL", 1)  # MVM start while programming: refused
        await wait_idle()
        log["interlock"] = await read("ERROR")
        log["result"] = (await read("PROG_RESULT"), await read("PROG_PULSES"), await read("PROG_STATUS"))
        await write("ERROR", 0xFFFFFFFF)
        # An MVM run waiting for input: a programming start is refused.
        await write("CTRL", 1)
        await write("PROG_CTRL", 1)
        log["mvm_busy"] = (await read("ERROR"), ctx.get(dut.prog.op))
        await write("CTRL", 2)  # abort the run
        await wait_idle()
        await write("ERROR", 0xFFFFFFFF)
        # Abort a command.
        await write("T_READ", 100)
        await write("PROG_CTRL", 1)
        await ctx.tick().repeat(20)
        await write("CTRL", 2)
        await wait_idle()
        log["abort"] = (await read("PROG_RESULT"), await read("STATUS"), ctx.get(dut.prog.op))
        await write("PROG_KEY", PROG_KEY ^ 1)
        log["relocked"] = await read("PROG_STATUS")
        log["ops"] = ops

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    error, busy, status = log["locked"]
    assert error == 1 << ErrorBit.PROG_LOCKED and not busy and status == 0
    assert log["unlocked"] == 0b100
    assert log["state"] >> 8 & 0xF == CoreState.PROGRAM.value and log["state"] & 1
    assert log["interlock"] == 1 << ErrorBit.START_BUSY
    result, _pulses, status = log["result"]
    assert result & 7 in (ProgOutcome.PASS.value, ProgOutcome.FAIL_LOW.value, ProgOutcome.FAIL_HIGH.value)
    assert status & 0b111 == 0b110  # not busy, done, unlocked
    assert log["mvm_busy"] == (1 << ErrorBit.START_BUSY, ProgOp.IDLE)
    result, status, op = log["abort"]
    assert result & 7 == ProgOutcome.ABORTED.value and status & 0b1000 and op == ProgOp.IDLE
    assert log["relocked"] & 0b100 == 0

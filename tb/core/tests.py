"""cocotb tests of one CIM core (run through tests/dv/test_core.py on both simulators).

Every test builds a :class:`CoreTb`, picks stimulus and knobs, and leaves checking to the
scoreboard (exact comparison with the transaction-level golden model) and to the macro
responder's contract checks. Each docstring names the testpoint it serves.
"""

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, SimTimeoutError, Timer, ValueChange, with_timeout

from cimdv.model.exact import LineMode, MacroParams
from cimdv.model.physical import PhysicalParams
from cimdv.model.programming import DeviceParams
from cimdv.model.writeverify import BISTABLE_DEVICE, ArrayDevice, Outcome, ProgOp, WriteVerifyCodes, WriteVerifySettings
from cimdv.rtl.core.layouts import CoreState, DriveCode, MacroOp, ProgState
from cimdv.rtl.core.regs import NEURRAM_TIMING, PROG_KEY
from cimdv.tb.core.env import CLOCK_NS, FAST_TIMING, CoreTb, error_names
from cimdv.tb.sim import params_from_env
from cimdv.tb.vip.stream import cycle_pause

DEFAULTS = {"rows": 16, "cols": 12, "lanes": 4, "pulse_bits": 8}


async def make_tb(dut, *, weights=None, macro=None, **knobs):
    tb = CoreTb(dut, params_from_env(DEFAULTS), cocotb.RANDOM_SEED, **knobs)
    await tb.start(weights, macro)
    dut._log.info("seed %d, geometry %dx%d, lanes %d", tb.seed, tb.rows, tb.cols, tb.lanes)
    return tb


async def run_and_check(tb, cfg, xs, **kwargs):
    """Configure, run ``xs`` as one batch, require no error and an exact scoreboard."""
    await tb.configure(cfg, batch=len(xs), **kwargs)
    error = await tb.run(xs)
    assert error == 0, f"unexpected ERROR {error_names(error)}"
    assert len(tb.results) >= len(xs), f"{len(tb.results)} output vectors for {len(xs)} inputs"
    tb.check()


def gain_delta(tb, cfg, weights=None, target=None):
    """A decrement quantum that spreads counts over the output range for random data."""
    w = tb.weights if weights is None else weights
    typical = 2 * cfg.pulse_mult * (2**cfg.nmag) * np.sqrt(cfg.n_in) * max(float(np.std(w)), 1.0)
    return max(1, int(typical / (target or max(cfg.max_count, 1) / 2)))


# ---- directed corners ---------------------------------------------------------------------


@cocotb.test()
async def csr_reset_values(dut):
    """Testpoint csr_map: every register reads its reset value from the shared map."""
    tb = await make_tb(dut)
    for reg in tb.regmap:
        if reg.access == "wo":
            continue
        got = await tb.csr.read(reg.name)
        assert got == reg.reset, f"{reg.name}: read 0x{got:08x}, map says 0x{reg.reset:08x}"


@cocotb.test()
async def csr_write_readback(dut):
    """Testpoint csr_map: every rw register keeps exactly its field bits of a written value, whatever the others hold.

    Walking ones and zeros, all ones, all zeros and random words go to every rw register before any is read back
    (so a write that lands in the wrong register shows); writes to ro registers change nothing; ERROR's w1c
    bits clear only where written; read data holds between reads (docs/register-map.md, rtl/common/csr.py).
    """
    tb = await make_tb(dut)
    rw = [reg for reg in tb.regmap if reg.access == "rw"]
    masks = {reg.name: sum(f.mask for f in reg.fields) for reg in rw}
    # (word per register, check that read data holds): walking ones and zeros, all ones, all zeros, random.
    patterns = [(lambda reg, bit=bit: 1 << ((bit + reg.addr) % 32), False) for bit in range(32)]
    patterns += [(lambda reg, bit=bit: ~(1 << ((bit + reg.addr) % 32)) & 0xFFFFFFFF, False) for bit in range(0, 32, 5)]
    patterns += [(lambda reg: 0xFFFFFFFF, False), (lambda reg: 0, False)]
    patterns += [(lambda reg: int(tb.rng.integers(0, 1 << 32)), True) for _ in range(3)]
    for pattern, check_hold in patterns:
        written = {reg.name: pattern(reg) for reg in rw}
        for reg in rw:
            await tb.csr.write(reg.name, written[reg.name])
        for i, reg in enumerate(rw):
            got, want = await tb.csr.read(reg.name), written[reg.name] & masks[reg.name]
            assert got == want, f"{reg.name}: wrote 0x{written[reg.name]:08x}, read 0x{got:08x}, expected 0x{want:08x}"
            if check_hold:
                # Read data is registered and held: a write elsewhere and idle cycles leave it alone.
                other = rw[(i + 1) % len(rw)]
                await tb.csr.write(other.name, written[other.name])
                await ClockCycles(dut.clk, 2)
                held = dut.csr__r_data.value.to_unsigned()
                assert held == got, f"{reg.name}: read data changed from 0x{got:08x} to 0x{held:08x} without a read"
    for reg in tb.regmap:
        if reg.access == "ro" and reg.name in ("ID", "GEOMETRY", "PARAMS"):
            await tb.csr.write(reg.name, ~reg.reset & 0xFFFFFFFF)
            assert await tb.csr.read(reg.name) == reg.reset, f"{reg.name}: a write changed a read-only register"
    # ERROR (w1c): set two flags (an unmapped read, a START with BATCH 0), clear one, then the other.
    for reg in rw:
        await tb.csr.write(reg.name, reg.reset)
    await tb.csr.write("BATCH", 0)
    await tb.csr.write_fields("CTRL", start=1)
    await tb.csr.read(0xFF)
    flags = error_names(await tb.csr.read("ERROR"))
    assert flags == ["BAD_ADDR", "BATCH"], f"ERROR {flags}"
    await tb.csr.write("ERROR", tb.regmap["ERROR"].field("bad_addr").mask)
    assert error_names(await tb.csr.read("ERROR")) == ["BATCH"], "w1c cleared the wrong bits"
    await tb.csr.write("ERROR", 0xFFFFFFFF)
    assert await tb.csr.read("ERROR") == 0


@cocotb.test()
async def zero_input(dut):
    """Testpoint input_extremes: an all-zero vector gives sign negative, count 1 (u = 0 tie)."""
    tb = await make_tb(dut)
    cfg = tb.config()
    await run_and_check(tb, cfg, np.zeros((2, cfg.n_in), dtype=int))
    assert all(r.count.tolist() == [1] * cfg.n_out and r.sign.all() for r in tb.results)


@cocotb.test()
async def all_max_unsigned(dut):
    """Testpoint input_extremes: every line at 2**n - 1 (unsigned), counts saturate positive."""
    tb = await make_tb(dut, macro=MacroParams(delta=16))
    cfg = tb.config(signed=False, in_bits=4)
    await run_and_check(tb, cfg, np.full((1, cfg.n_in), 15))
    assert tb.results[0].sat.any(), "expected some positive saturation with a small quantum"


@cocotb.test()
async def all_min_signed(dut):
    """Testpoint input_extremes: every line at -(2**(n-1) - 1), counts saturate negative."""
    tb = await make_tb(dut, macro=MacroParams(delta=16))
    cfg = tb.config(signed=True, in_bits=4)
    await run_and_check(tb, cfg, np.full((1, cfg.n_in), -7))
    assert tb.results[0].sign.all() and tb.results[0].sat.any()


@cocotb.test()
async def alternating_signs(dut):
    """Testpoint input_extremes: +max, -max, +max, ... on consecutive lines."""
    tb = await make_tb(dut)
    cfg = tb.config(in_bits=5)
    x = np.array([15 if i % 2 == 0 else -15 for i in range(cfg.n_in)])
    tb.load_weights(macro=MacroParams(delta=gain_delta(tb, cfg)))
    await run_and_check(tb, cfg, np.stack([x, -x]))


@cocotb.test()
async def saturation_both_signs(dut):
    """Testpoint saturation: positive and negative neurons that never flip report MAX_COUNT + sat."""
    rows, cols = params_from_env(DEFAULTS)["rows"], params_from_env(DEFAULTS)["cols"]
    weights = np.zeros((rows, cols), dtype=int)
    weights[0, : cols // 2] = 60
    weights[1, cols // 2 :] = 60
    tb = await make_tb(dut, weights=weights, macro=MacroParams(delta=1))
    cfg = tb.config(in_bits=4, out_bits=4, max_count=7)
    x = np.zeros(cfg.n_in, dtype=int)
    x[0], x[1] = 7, -7
    await run_and_check(tb, cfg, np.stack([x, np.zeros_like(x), x]))
    first = tb.results[0]
    assert first.sat[: cols // 2].all() and not first.sign[: cols // 2].any()
    assert first.sat[cols // 2 :].all() and first.sign[cols // 2 :].all()
    # The all-zero vector right after must not keep the stale saturated counts.
    assert not tb.results[1].sat.any() and (tb.results[1].count == 1).all()


@cocotb.test()
async def masked_neurons(dut):
    """Testpoint output_mask: masked-out neurons read zero and do not hold up the early stop."""
    tb = await make_tb(dut)
    lines = tb.lines
    mask = [bool(tb.rng.integers(0, 2)) for _ in range(lines)]
    cfg = tb.config(out_mask=tuple(mask))
    tb.load_weights(macro=MacroParams(delta=gain_delta(tb, cfg)))
    await run_and_check(tb, cfg, tb.random_inputs(3, cfg))
    off = [j for j in range(cfg.n_out) if not mask[j]]
    for r in tb.results:
        assert not r.count[off].any() and not r.sign[off].any() and not r.sat[off].any()
    # All-zero mask: conversion ends right after the sign compare.
    cfg0 = tb.config(out_mask=(False,) * lines)
    await run_and_check(tb, cfg0, tb.random_inputs(1, cfg0))
    assert await tb.csr.read("LAST_STEPS") == 0


@cocotb.test()
async def one_bit_inputs_and_outputs(dut):
    """Testpoint widths: 1-bit unsigned inputs, 1-bit (sign-only) outputs."""
    tb = await make_tb(dut)
    cfg = tb.config(signed=False, in_bits=1, out_bits=1, max_count=0)
    await run_and_check(tb, cfg, tb.random_inputs(4, cfg))
    assert all(not r.count.any() and not r.sat.any() for r in tb.results)


@cocotb.test()
async def eight_bit_inputs_and_outputs(dut):
    """Testpoint widths: 8-bit unsigned and signed inputs with 8-bit outputs."""
    tb = await make_tb(dut)
    for signed in (False, True):
        cfg = tb.config(signed=signed, in_bits=8, out_bits=8, max_count=127)
        tb.load_weights(tb.weights, MacroParams(delta=gain_delta(tb, cfg)))
        await run_and_check(tb, cfg, tb.random_inputs(2, cfg))


@cocotb.test()
async def backward_mvm(dut):
    """Testpoint direction: backward (transposed) MVM drives columns and senses rows."""
    tb = await make_tb(dut)
    for backward in (True, False, True):
        cfg = tb.config(backward=backward)
        tb.load_weights(tb.weights, MacroParams(delta=gain_delta(tb, cfg)))
        await run_and_check(tb, cfg, tb.random_inputs(2, cfg))


@cocotb.test()
async def line_modes_pairs_and_padding(dut):
    """Testpoint line_modes: differential pairs (POS/NEG) and padding lines in both directions."""
    tb = await make_tb(dut)
    for backward in (False, True):
        modes = [LineMode.POS if i % 4 == 0 else LineMode.NEG if i % 4 == 1 else LineMode.OFF for i in range(tb.lines)]
        cfg = tb.config(backward=backward, line_modes=tuple(modes))
        tb.load_weights(tb.weights, MacroParams(delta=gain_delta(tb, cfg)))
        await run_and_check(tb, cfg, tb.random_inputs(3, cfg))


@cocotb.test()
async def padding_drive_codes(dut):
    """Testpoint line_modes: the drive code of every OFF line in every SAMPLE. Forward: ZERO. Backward: padding,
    one polarity on even lines and the other on odd lines, swapped between the phases; the two phases cancel in
    the integrated result, so only the drive port shows it. Lines beyond the driven ones are ZERO.
    """
    tb = await make_tb(dut)
    pos, neg, zero = DriveCode.POS.value, DriveCode.NEG.value, DriveCode.ZERO.value
    for backward in (False, True):
        cfg = tb.config(backward=backward, line_modes=(LineMode.POS, LineMode.NEG) + (LineMode.OFF,) * (tb.lines - 2))
        tb.load_weights(tb.weights, MacroParams(delta=gain_delta(tb, cfg)))
        samples = []

        async def watch(samples=samples):
            while True:
                await FallingEdge(dut.clk)
                if dut.macro__op.value.to_unsigned() == MacroOp.SAMPLE.value:
                    drive = dut.macro__drive.value.to_unsigned()
                    samples.append([drive >> 2 * i & 3 for i in range(tb.lines)])

        watcher = cocotb.start_soon(watch())
        await run_and_check(tb, cfg, tb.random_inputs(2, cfg))
        watcher.cancel()
        assert samples, "no SAMPLE seen"
        off, rest = range(2, cfg.n_in), range(cfg.n_in, tb.lines)
        for codes in samples:
            assert all(codes[i] == zero for i in rest), f"backward={backward}: undriven line not ZERO: {codes}"
            if not backward:
                assert all(codes[i] == zero for i in off), f"forward OFF line not ZERO: {codes}"
                continue
            even, odd = {codes[i] for i in off if i % 2 == 0}, {codes[i] for i in off if i % 2 == 1}
            assert len(even) == len(odd) == 1 and even | odd == {pos, neg}, f"backward padding {codes}"
        if backward:
            assert {codes[2] for codes in samples} == {pos, neg}, "padding polarity never swapped between phases"


@cocotb.test()
async def pulse_multiplier(dut):
    """Testpoint pulse_mult: M = 1..31 with 4-bit signed inputs (M * 4 <= 255 pulses)."""
    tb = await make_tb(dut)
    for mult in (1, 3, 31):
        cfg = tb.config(pulse_mult=mult)
        tb.load_weights(tb.weights, MacroParams(delta=gain_delta(tb, cfg)))
        await run_and_check(tb, cfg, tb.random_inputs(1, cfg))


@cocotb.test()
async def noise_injection(dut):
    """Testpoint noise: NOISE pulses add the macro's LFSR charge before the sign compare."""
    tb = await make_tb(dut, macro=MacroParams(delta=32, noise_q=40, noise_seed=0x1D))
    cfg = tb.config(noise_pulses=3)
    await run_and_check(tb, cfg, tb.random_inputs(3, cfg))


@cocotb.test()
async def back_to_back_with_backpressure(dut):
    """Testpoint batch: a batch of vectors with idle input cycles and output backpressure."""
    tb = await make_tb(dut, in_pause=cycle_pause((0, 1, 0, 0, 1)), out_pause=cycle_pause((1, 0, 1, 1, 0)))
    cfg = tb.config()
    tb.load_weights(tb.weights, MacroParams(delta=gain_delta(tb, cfg)))
    await run_and_check(tb, cfg, tb.random_inputs(6, cfg))
    assert await tb.csr.read("VECTORS") == 6


@cocotb.test()
async def start_port_handshake(dut):
    """Testpoint handshake: start pulse on the port; busy rises next cycle, done pulses once."""
    tb = await make_tb(dut)
    cfg = tb.config()
    await tb.configure(cfg, batch=1)
    await FallingEdge(dut.clk)
    assert not int(dut.busy.value)
    error = await tb.run(tb.random_inputs(1, cfg), use_port=True)
    assert error == 0 and not int(dut.busy.value)
    status = await tb.csr.read("STATUS")
    assert status & 0b10, f"STATUS.done not set: 0x{status:x}"
    tb.check()


@cocotb.test()
async def neurram_timing(dut):
    """Testpoint timing: NeuRRAM's phase timings; the responder checks every hold time."""
    tb = await make_tb(dut)
    cfg = tb.config(in_bits=3, max_count=15, out_bits=5)
    tb.load_weights(tb.weights, MacroParams(delta=gain_delta(tb, cfg)))
    timing = dict(NEURRAM_TIMING, T_INTEG=37)  # full 505-cycle integrations run in the benchmark
    await run_and_check(tb, cfg, tb.random_inputs(1, cfg), timing=timing)
    cycles = await tb.csr.read("LAST_CYCLES")
    assert cycles >= timing["T_INIT"] + 2 * 3 * (timing["T_SAMPLE"] + timing["T_INTEG"])


@cocotb.test()
async def wide_timing_and_counters(dut):
    """Testpoint timing: every T_* register and NOISE_PULSES above 255, so that the high bits of every phase timer
    and counter matter; the responders check every hold time. VECTORS counts exactly; LAST_CYCLES lies between
    the phases' sum and the bench's bound and grows by exactly the added cycles when T_INIT grows.
    """
    tb = await make_prog_tb(dut)
    cfg = tb.config(signed=False, in_bits=2, out_bits=3, max_count=3, noise_pulses=200)
    delta = gain_delta(tb, cfg)
    # NOISE charge of the order of Δ per pulse: a wrong number of pulses changes counts.
    tb.load_weights(tb.weights, MacroParams(delta=delta, noise_q=delta, noise_seed=77))
    # T - 1 (what the timers load) sets every bit 0..8 in at least two of the registers.
    timing = {"T_INIT": 300, "T_SAMPLE": 512, "T_INTEG": 342, "T_COMPARE": 427, "T_DECR": 384, "T_NOISE": 1}
    cycles = []
    for t_init in (300, 300 + 1000, 300 + 1000 + 512):
        await run_and_check(tb, cfg, tb.random_inputs(1, cfg), timing=dict(timing, T_INIT=t_init))
        cycles.append(await tb.csr.read("LAST_CYCLES"))
        await ClockCycles(dut.clk, 1)  # read again at the other parity: the register holds
        assert await tb.csr.read("LAST_CYCLES") == cycles[-1], "LAST_CYCLES changed between runs"
        low = t_init + 2 * 3 * (timing["T_SAMPLE"] + timing["T_INTEG"]) + timing["T_COMPARE"]
        assert low <= cycles[-1] <= tb.max_cycles_per_vector(), f"LAST_CYCLES {cycles[-1]} outside {low}.."
    dut._log.info("LAST_CYCLES %s", cycles)
    steps = [cycles[1] - cycles[0], cycles[2] - cycles[1]]
    assert steps == [1000, 512], f"LAST_CYCLES {cycles} for T_INIT + 1000, + 512"
    # The NOISE pulse timer above 255, with few pulses.
    cfg = cfg.replace(noise_pulses=2)
    await run_and_check(tb, cfg, tb.random_inputs(2, cfg), timing=dict(timing, T_NOISE=767))
    assert await tb.csr.read("VECTORS") == 5, "VECTORS must count every completed vector since reset"
    # Programming: T_PULSE and T_READ above 255.
    await tb.prog_configure({"T_PULSE": 300, "T_READ": 512})
    await tb.program_cell(0, 0, WriteVerifySettings(target=80))
    tb.check()


@cocotb.test()
async def noisy_physical_macro(dut):
    """Testpoint physical_macro: RTL against the physical model with every noise term on, compared exactly."""
    tb = CoreTb(dut, params_from_env(DEFAULTS), cocotb.RANDOM_SEED)
    g = tb.rng.uniform(0.0, 40.0, size=(tb.rows, tb.cols))
    params = PhysicalParams(
        voltage_mode=True,
        g_par_uS=1.0,
        v_read_V=0.2,
        read_noise_uS=0.4,
        ktc_noise_V=2e-4,
        vneg_error=0.05,
        droop=0.01,
        column_gain_sigma=0.05,
        comparator_offset_V=1e-3,
        cds_residual_V=5e-4,
        decrement_asymmetry=0.05,
        decrement_mismatch=0.01,
        delta_V=4e-3,
        noise_q_V=2e-3,
    )
    tb.load_physical(g, params, seed=int(tb.rng.integers(1 << 30)))
    await tb.start()
    for backward in (False, True):
        cfg = tb.config(backward=backward, noise_pulses=2)
        await run_and_check(tb, cfg, tb.random_inputs(3, cfg))
    counts = np.concatenate([r.count for r in tb.results])
    assert counts.std() > 1, "the quantum should spread the counts"


# ---- refusals and errors ------------------------------------------------------------------


ILLEGAL = [
    ("in_bits 0", {"in_bits": 0}, "IN_BITS"),
    ("in_bits 9", {"in_bits": 9}, "IN_BITS"),
    ("signed 1-bit", {"in_bits": 1, "signed": 1}, "IN_BITS"),
    ("out_bits 0", {"out_bits": 0}, "OUT_BITS"),
    ("out_bits 9", {"out_bits": 9}, "OUT_BITS"),
    ("pulse_mult 0", {"pulse_mult": 0}, "PULSE_MULT"),
    ("pulse overflow", {"in_bits": 8, "signed": 0, "pulse_mult": 2}, "PULSE_OVF"),
    ("max_count too big", {"out_bits": 4, "max_count": 8}, "MAX_COUNT"),
    ("timing 0", {"timing": dict(FAST_TIMING, T_COMPARE=0)}, "TIMING"),
    ("watchdog 0", {"watchdog": 0}, "TIMING"),
    ("batch 0", {"batch": 0}, "BATCH"),
    ("reserved line mode", {"line_modes": [3] + [1] * 1023}, "LINE_MODE"),
]


@cocotb.test()
async def illegal_configs_refused(dut):
    """Testpoint config_errors: every illegal configuration sets its flag and never starts."""
    tb = await make_tb(dut)
    base = dict(backward=0, signed=1, in_bits=4, out_bits=8, pulse_mult=1, max_count=127)
    for label, change, flag in ILLEGAL:
        raw = dict(base, **change)
        if "line_modes" in raw:
            raw["line_modes"] = raw["line_modes"][: tb.lines]
        await tb.write_config(**raw)
        await tb.csr.write_fields("CTRL", start=1)
        await ClockCycles(dut.clk, 3)
        assert not int(dut.busy.value), f"{label}: the core started"
        error = await tb.csr.read("ERROR")
        assert error_names(error) == [flag], f"{label}: ERROR {error_names(error)}, expected [{flag}]"
        assert tb.responder.ops.total() == 0, f"{label}: the macro saw operations"
        await tb.csr.write("ERROR", error)
        assert await tb.csr.read("ERROR") == 0
    # After all the refusals a legal run still works.
    cfg = tb.config()
    await run_and_check(tb, cfg, tb.random_inputs(1, cfg))


@cocotb.test()
async def start_refused_while_error_pending(dut):
    """Testpoint config_errors: START is refused until ERROR is cleared."""
    tb = await make_tb(dut)
    await tb.csr.write(0xFF, 0)  # unmapped: BAD_ADDR
    assert error_names(await tb.csr.read("ERROR")) == ["BAD_ADDR"]
    await tb.csr.write_fields("CTRL", start=1)
    await ClockCycles(dut.clk, 2)
    assert not int(dut.busy.value)
    assert error_names(await tb.csr.read("ERROR")) == ["BAD_ADDR", "START_BUSY"]


@cocotb.test()
async def input_range_refused(dut):
    """Testpoint input_errors: an element outside the configured range refuses the vector."""
    tb = await make_tb(dut)
    cfg = tb.config(signed=True, in_bits=4)
    await tb.configure(cfg, batch=2)
    good = tb.random_inputs(1, cfg)[0]
    bad = good.copy()
    bad[-1] = -8  # -2**(n-1) is not representable in sign-magnitude
    error = await tb.run([good, bad])
    assert error_names(error) == ["INPUT_RANGE"], error_names(error)
    assert len(tb.results) == 1 and tb.refused_vectors == 1
    tb.check()


@cocotb.test()
async def input_range_every_lane(dut):
    """Testpoint input_errors: the range check covers every lane of every beat, below and above the range.

    One element out of range (one below the low end, one above the high end; unsigned and signed) in each lane
    position of the first and the final beat refuses its vector; a vector at both ends of the range is accepted.
    """
    tb = await make_tb(dut)
    for cfg in (tb.config(signed=False, in_bits=3), tb.config(signed=True, in_bits=4)):
        lo, hi = cfg.in_range
        positions = sorted({*range(min(tb.lanes, cfg.n_in)), *range(max(cfg.n_in - tb.lanes, 0), cfg.n_in)})
        refused = tb.refused_vectors
        await tb.configure(cfg, batch=1)
        for pos in positions:
            for value in (lo - 1, hi + 1):
                x = tb.random_inputs(1, cfg)[0]
                x[pos] = value
                error = await tb.run([x])
                assert error_names(error) == ["INPUT_RANGE"], f"element {pos} = {value}: ERROR {error_names(error)}"
                await tb.csr.write("ERROR", 0xFFFFFFFF)
        assert tb.refused_vectors - refused == 2 * len(positions)
        edges = np.where(np.arange(cfg.n_in) % 2 == 0, lo, hi)
        await run_and_check(tb, cfg, [edges])


@cocotb.test()
async def input_length_errors(dut):
    """Testpoint input_errors: ``last`` too early, or missing (the core drains to the next last)."""
    tb = await make_tb(dut)
    cfg = tb.config()
    await tb.configure(cfg, batch=1)
    n_beats = -(-cfg.n_in // tb.lanes)
    x = tb.random_inputs(1, cfg)[0]
    if n_beats > 1:
        await tb.csr.write_fields("CTRL", start=1)
        await tb.source.send(tb.beats(x, last_at=0)[:1])
        await tb.wait_done(100)
        assert error_names(await tb.csr.read("ERROR")) == ["INPUT_LENGTH"]
        await tb.csr.write("ERROR", 0xFFFFFFFF)
    # last missing on the final beat: the core flags it and discards up to the next last.
    await tb.csr.write_fields("CTRL", start=1)
    await tb.source.send(tb.beats(x, last_at=n_beats + 1))
    await tb.wait_done(100)
    assert error_names(await tb.csr.read("ERROR")) == ["INPUT_LENGTH"]
    assert await tb.csr.read_field("STATUS", "state") == CoreState.IDLE.value
    await tb.csr.write("ERROR", 0xFFFFFFFF)
    assert not tb.results and tb.refused_vectors == (2 if n_beats > 1 else 1)
    await run_and_check(tb, cfg, tb.random_inputs(1, cfg))


@cocotb.test()
async def watchdog_input_timeout(dut):
    """Testpoint watchdog: a run whose input never arrives ends with TIMEOUT_IN, not a hang."""
    tb = await make_tb(dut)
    await tb.configure(tb.config(), batch=1, watchdog=50)
    await tb.csr.write_fields("CTRL", start=1)
    await tb.wait_done(10)
    assert error_names(await tb.csr.read("ERROR")) == ["TIMEOUT_IN"]


@cocotb.test()
async def watchdog_output_timeout(dut):
    """Testpoint watchdog: an output stream that never accepts ends with TIMEOUT_OUT."""
    tb = await make_tb(dut, out_pause=cycle_pause((1,)))
    cfg = tb.config()
    await tb.configure(cfg, batch=1, watchdog=40)
    await tb.csr.write_fields("CTRL", start=1)
    await tb.source.send(tb.beats(tb.random_inputs(1, cfg)[0]))
    await tb.wait_done(100)
    assert error_names(await tb.csr.read("ERROR")) == ["TIMEOUT_OUT"]
    assert not tb.results


@cocotb.test()
async def busy_refusals(dut):
    """Testpoint busy_protection: START and configuration writes while busy are refused."""
    tb = await make_tb(dut)
    cfg = tb.config()
    await tb.configure(cfg, batch=1)
    mode_before = await tb.csr.read("MODE")
    await tb.csr.write_fields("CTRL", start=1)
    await ClockCycles(dut.clk, 2)
    assert int(dut.busy.value)
    await tb.csr.write_fields("MODE", in_bits=2)
    await tb.pulse_start()
    assert await tb.csr.read("MODE") == mode_before, "a configuration write landed while busy"
    assert error_names(await tb.csr.read("ERROR")) == ["CONFIG_BUSY", "START_BUSY"]
    await tb.source.send(tb.beats(tb.random_inputs(1, cfg)[0]))
    await tb.wait_done(200)
    tb.check()


@cocotb.test()
async def status_sticky_bits(dut):
    """Testpoint handshake: STATUS.done and STATUS.aborted are sticky; a refused START (ERROR pending, or an
    illegal configuration) changes neither; an accepted START clears both; done/aborted set again at the end.
    """
    tb = await make_tb(dut)
    cfg = tb.config()
    tb.load_weights(tb.weights, MacroParams(delta=gain_delta(tb, cfg)))

    async def status(label, *, done, aborted, busy=0):
        value = await tb.csr.read("STATUS")
        got = (value >> 1 & 1, value >> 3 & 1, value & 1)
        assert got == (done, aborted, busy), f"{label}: STATUS 0x{value:x} (done, aborted, busy) = {got}"

    await status("after reset", done=0, aborted=0)
    await run_and_check(tb, cfg, tb.random_inputs(1, cfg))
    await status("after a run", done=1, aborted=0)
    for label, setup in (("ERROR pending", lambda: tb.csr.read(0xFF)), ("BATCH 0", lambda: tb.csr.write("BATCH", 0))):
        await setup()
        await tb.csr.write_fields("CTRL", start=1)
        await ClockCycles(dut.clk, 3)
        await status(f"START refused ({label})", done=1, aborted=0)
        await tb.csr.write("ERROR", 0xFFFFFFFF)
    # Abort a run: aborted and done set; the next START clears both while it runs.
    await tb.configure(cfg, batch=1, timing=dict(FAST_TIMING, T_INTEG=40))
    await tb.csr.write_fields("CTRL", start=1)
    await tb.source.send(tb.beats(tb.random_inputs(1, cfg)[0]))
    await ClockCycles(dut.clk, 30)
    await status("running", done=0, aborted=0, busy=1)
    await tb.csr.write_fields("CTRL", abort=1)
    await tb.wait_done(10)
    await status("aborted", done=1, aborted=1)
    tb.contract.violations.clear()  # the aborted operation's hold time (see abort_run)
    tb.scoreboard.expected.clear()
    for label, setup in (("ERROR pending", lambda: tb.csr.read(0xFF)), ("BATCH 0", lambda: tb.csr.write("BATCH", 0))):
        await setup()
        await tb.csr.write_fields("CTRL", start=1)
        await ClockCycles(dut.clk, 3)
        await status(f"START refused after abort ({label})", done=1, aborted=1)
        await tb.csr.write("ERROR", 0xFFFFFFFF)
    await tb.configure(cfg, batch=1, timing=dict(FAST_TIMING, T_INTEG=40))
    run = cocotb.start_soon(tb.run(tb.random_inputs(1, cfg)))
    await RisingEdge(dut.busy)
    await status("running again", done=0, aborted=0, busy=1)
    assert await run == 0
    await status("after the second run", done=1, aborted=0)
    tb.check()


@cocotb.test()
async def abort_run(dut):
    """Testpoint abort: CTRL.abort ends a run mid-integration; the macro goes IDLE; next run works."""
    tb = await make_tb(dut)
    cfg = tb.config()
    await tb.configure(cfg, batch=1, timing=dict(FAST_TIMING, T_INTEG=40))
    await tb.csr.write_fields("CTRL", start=1)
    await tb.source.send(tb.beats(tb.random_inputs(1, cfg)[0]))
    await ClockCycles(dut.clk, 60)
    await tb.csr.write_fields("CTRL", abort=1)
    await tb.wait_done(10)
    status = await tb.csr.read("STATUS")
    assert status & 0b1000 and not status & 0b1, f"STATUS 0x{status:x}"
    assert int(dut.macro__op.value) == 0 and int(dut.macro__drive.value) == 0
    # Abort truncates the operation in progress (docs/analog-boundary.md §2): exactly one
    # hold-time report, for the aborted operation, and nothing else.
    assert len(tb.contract.violations) == 1 and "held" in tb.contract.violations[0], tb.contract.violations
    tb.contract.violations.clear()
    tb.scoreboard.expected.clear()
    await run_and_check(tb, cfg, tb.random_inputs(1, cfg))


# ---- random -------------------------------------------------------------------------------


@cocotb.test()
async def random_configs_and_vectors(dut):
    """Testpoint random: seeded random legal configurations, weights and vectors."""
    tb = await make_tb(dut)
    for _ in range(6):
        r = tb.rng
        signed = bool(r.integers(0, 2))
        in_bits = int(r.integers(2 if signed else 1, 9))
        nmag = in_bits - signed
        out_bits = int(r.integers(1, 9))
        cfg = tb.config(
            backward=bool(r.integers(0, 2)),
            signed=signed,
            in_bits=in_bits,
            out_bits=out_bits,
            pulse_mult=int(r.integers(1, max(2, 256 >> nmag))),
            max_count=int(r.integers(0, 2 ** (out_bits - 1))),
            noise_pulses=int(r.integers(0, 3)),
            line_modes=tuple(int(v) for v in r.choice([0, 1, 1, 2], size=tb.lines)),
            out_mask=tuple(bool(v) for v in r.integers(0, 4, size=tb.lines) > 0),
        )
        macro = MacroParams(
            delta=gain_delta(tb, cfg, target=max(cfg.max_count, 2) / 2),
            threshold=int(r.integers(-20, 21)),
            noise_q=int(r.integers(0, 50)),
            noise_seed=int(r.integers(1, 1 << 16)),
        )
        tb.load_weights(tb.random_weights(int(r.integers(2, 64))), macro)
        dut._log.info("random config %s, macro %s", cfg, macro)
        await run_and_check(tb, cfg, tb.random_inputs(int(r.integers(1, 4)), cfg))


# ---- negative tests of the checkers -------------------------------------------------------


@cocotb.test(expect_fail=True)
async def scoreboard_catches_weight_fault(dut):
    """Testpoint checker_negative: a macro whose weights differ by one code must fail the scoreboard."""
    tb = await make_tb(dut, macro=MacroParams(delta=14))  # one weight code = one count for x = 7
    cfg = tb.config()
    faulty = tb.weights.copy()
    faulty[0, 0] += 1
    from cimdv.model.exact import MacroState

    tb.responder.load_weights(MacroState(faulty, tb.macro_params))
    x = np.zeros((1, cfg.n_in), dtype=int)
    x[0, 0] = 7
    await run_and_check(tb, cfg, x)


@cocotb.test(expect_fail=True)
async def contract_checker_catches_hold_violation(dut):
    """Testpoint checker_negative: the responder flags an operation held for the wrong time."""
    tb = await make_tb(dut)
    cfg = tb.config()
    await tb.configure(cfg, batch=1)
    tb.contract.hold_cycles[next(iter(tb.contract.hold_cycles))] += 1  # INIT: claims 2, RTL holds 1
    await tb.run(tb.random_inputs(1, cfg))
    tb.check()


# ---- write-verify programming -------------------------------------------------------------


def block_cells(tb, rows=4, cols=4):
    """A small block of cells in the corner of the array (fits every geometry)."""
    return [(r, c) for r in range(min(rows, tb.rows)) for c in range(min(cols, tb.cols))]


async def make_prog_tb(dut, device=None):
    """A core testbench with programming unlocked and the fast write-verify timing."""
    tb = await make_tb(dut)
    if device is not None:
        tb.load_device(device)
    await tb.unlock()
    await tb.prog_configure()
    return tb


@cocotb.test()
async def program_converges(dut):
    """Testpoint prog_convergence: write-verify of a block of realistic cells, every operation predicted."""
    tb = CoreTb(dut, params_from_env(DEFAULTS), cocotb.RANDOM_SEED)
    tb.load_device(ArrayDevice((tb.rows, tb.cols), DeviceParams(stuck_fraction=0.0), seed=tb.seed))
    await tb.start()
    await tb.unlock()
    await tb.prog_configure()
    codes = WriteVerifyCodes.from_params()
    cells = block_cells(tb)
    # Differential-pair style targets: about half the cells "off" (< 1 µS), the rest 1-40 µS.
    targets = [float(tb.rng.choice([0.0, tb.rng.uniform(0.0, 1.0), tb.rng.uniform(1.0, 40.0)])) for _ in cells]
    results = []
    for (row, col), target in zip(cells, targets, strict=True):
        tb.prog_device.cell(row, col).reads_averaged = codes.reads_for(target)
        results.append(await tb.program_cell(row, col, codes.settings(target)))
    tb.check()
    passed = [r["outcome"] == Outcome.PASS for r in results]
    pulses = [r["set_pulses"] + r["reset_pulses"] for r in results]
    dut._log.info(
        "%d cells: %d passed, %.1f pulses per cell, %d operations checked",
        len(cells),
        sum(passed),
        np.mean(pulses),
        tb.prog_scoreboard.matched,
    )
    assert sum(passed) >= 0.8 * len(cells), f"only {sum(passed)} of {len(cells)} cells converged"
    g = tb.prog_device.g_uS
    for (row, col), target, ok in zip(cells, targets, passed, strict=True):
        if not ok:
            continue
        if codes.is_off(target):
            assert g[row, col] < 1.0 + 0.5, f"off cell ({row}, {col}) at {g[row, col]:.2f} µS"
        else:
            want = codes.settings(target).target * 0.25
            assert abs(g[row, col] - want) < 1.0 + 0.5, f"({row}, {col}) at {g[row, col]:.2f} µS for {want} µS"


@cocotb.test()
async def program_failing_cells(dut):
    """Testpoint prog_failures: stuck and unreachable cells fail with the right outcome."""
    tb = CoreTb(dut, params_from_env(DEFAULTS), cocotb.RANDOM_SEED)
    device = ArrayDevice((tb.rows, tb.cols), DeviceParams(stuck_fraction=0.0), seed=tb.seed)
    tb.load_device(device)
    await tb.start()
    await tb.unlock()
    await tb.prog_configure()
    # Short ramps (1.2 -> 2.0 V by 0.2 V) and small limits keep the failing cells fast.
    base = WriteVerifySettings(
        set_start=60,
        set_end=100,
        set_step=10,
        reset_start=60,
        reset_end=100,
        reset_step=10,
        pulse_limit=3,
        iter_limit=1,
    )
    cases = [
        # (cell, forced G, stuck, target code, expected outcome)
        ((0, 0), 30.0, True, 40, Outcome.FAIL_HIGH),  # stuck high above a 10 µS target
        ((0, 1), 2.0, True, 80, Outcome.FAIL_LOW),  # stuck low below a 20 µS target
        ((1, 0), 10.0, False, 252, Outcome.FAIL_LOW),  # 63 µS: above the device's 60 µS ceiling
        ((1, 1), 5.0, True, 0, Outcome.FAIL_HIGH),  # an off cell stuck at 5 µS
    ]
    for (row, col), g, stuck, target, outcome in cases:
        device.force((row, col), g_uS=g, stuck=stuck)
        settings = base.replace(target=target)
        result = await tb.program_cell(row, col, settings)
        assert result["outcome"] == outcome, f"cell ({row}, {col}): {result}, expected {outcome.name}"
    tb.check()


@cocotb.test()
async def program_limits(dut):
    """Testpoint prog_limits: pulse limit at the end amplitude (SET and RESET), iteration limit, budget."""
    tb = CoreTb(dut, params_from_env(DEFAULTS), cocotb.RANDOM_SEED)
    device = ArrayDevice((tb.rows, tb.cols), BISTABLE_DEVICE, seed=tb.seed)
    tb.load_device(device)
    await tb.start()
    await tb.unlock()
    await tb.prog_configure()
    # Target 20 µS (window codes 76..83); ramps 60, 70, then 80 = the end amplitude.
    ramp = WriteVerifySettings(
        target=80, set_start=60, set_end=80, set_step=10, reset_start=60, reset_end=80, reset_step=10, pulse_limit=3
    )
    cases = [
        # (cell, forced G, stuck, settings, expected result registers)
        ((0, 0), 2.0, True, ramp.replace(iter_limit=0), (Outcome.FAIL_LOW, 8, 1, 5, 0)),  # 2 + 3 SET pulses
        ((0, 1), 40.0, True, ramp.replace(iter_limit=0), (Outcome.FAIL_HIGH, 160, 1, 0, 5)),  # 2 + 3 RESET pulses
        ((1, 0), 5.0, False, ramp.replace(iter_limit=2, pulse_limit=30), (Outcome.FAIL_HIGH, 240, 3, 3, 2)),
        ((1, 1), 2.0, True, ramp.replace(max_ops=4), (Outcome.TIMEOUT, 8, 0, 2, 0)),  # READ SET READ SET
        # The budget runs out in the third iteration, between the first iteration and the limit.
        ((2, 0), 5.0, False, ramp.replace(iter_limit=5, pulse_limit=30, max_ops=9), (Outcome.TIMEOUT, 0, 2, 2, 2)),
    ]
    for (row, col), g, stuck, settings, want in cases:
        device.force((row, col), g_uS=g, stuck=stuck)
        result = await tb.program_cell(row, col, settings)
        got = (result["outcome"], result["reading"], result["iterations"], result["set_pulses"], result["reset_pulses"])
        assert got == want, f"cell ({row}, {col}): (outcome, reading, iterations, SET, RESET) = {got}, expected {want}"
    tb.check()


@cocotb.test()
async def program_locked_refused(dut):
    """Testpoint prog_lock: PROG_CTRL.start is refused while locked; no operation reaches the macro."""
    tb = await make_tb(dut)
    await tb.prog_configure()
    settings = WriteVerifySettings(target=80)
    before = tb.prog_device.g_uS

    async def refused(label):
        await tb.write_prog_settings(settings, row=0, col=0)
        await tb.csr.write_fields("PROG_CTRL", start=1)
        await ClockCycles(dut.clk, 5)
        assert not int(dut.busy.value), f"{label}: the core started"
        assert error_names(await tb.csr.read("ERROR")) == ["PROG_LOCKED"], label
        assert await tb.csr.read_field("PROG_STATUS", "unlocked") == 0, label
        assert tb.prog_responder.ops.total() == ops_before, f"{label}: the macro saw programming operations"
        await tb.csr.write("ERROR", 0xFFFFFFFF)

    ops_before = 0
    await refused("after reset")
    for key in (PROG_KEY ^ 1, PROG_KEY ^ 0x8000_0000, 0):
        await tb.unlock(key)
        await refused(f"key 0x{key:08x}")
    assert np.array_equal(tb.prog_device.g_uS, before), "a refused command changed a cell"
    await tb.unlock()
    assert await tb.csr.read_field("PROG_STATUS", "unlocked") == 1
    result = await tb.program_cell(0, 0, settings)
    assert result["outcome"] in (Outcome.PASS, Outcome.FAIL_LOW, Outcome.FAIL_HIGH)
    ops_before = tb.prog_responder.ops.total()
    assert ops_before > 0
    await tb.unlock(0xFFFF_FFFF)  # any other value locks again
    await refused("locked again")
    tb.check()


@cocotb.test()
async def program_no_pulse_without_key(dut):
    """Testpoint prog_lock: random inference and random CSR writes (never the key) never pulse or change a cell."""
    tb = await make_tb(dut)
    cfg = tb.config()
    tb.load_weights(tb.weights, MacroParams(delta=gain_delta(tb, cfg)))
    before = tb.prog_device.g_uS
    hot = [tb.regmap[name].addr for name in ("PROG_KEY", "PROG_CTRL", "CTRL", "PROG_CELL", "PROG_TARGET")]
    key_addr = tb.regmap["PROG_KEY"].addr
    writes = 0
    for _ in range(3):
        for _ in range(30):
            addr = int(tb.rng.choice(hot)) if tb.rng.random() < 0.4 else int(tb.rng.integers(0, 0x100))
            value = int(tb.rng.integers(0, 1 << 32))
            if addr == key_addr and value == PROG_KEY:
                value ^= 1
            await tb.csr.write(addr, value)
            writes += 1
        # End whatever a random CTRL write started, clear the errors, run inference.
        await tb.csr.write_fields("CTRL", abort=1)
        await ClockCycles(dut.clk, 3)
        await tb.csr.write("ERROR", 0xFFFFFFFF)
        await run_and_check(tb, cfg, tb.random_inputs(2, cfg))
    assert tb.prog_responder.ops.total() == 0 and tb.prog_monitor.items == 0, "a programming operation happened"
    assert np.array_equal(tb.prog_device.g_uS, before), "a cell changed"
    assert await tb.csr.read_field("PROG_STATUS", "unlocked") == 0
    dut._log.info("%d random CSR writes, %d vectors: no programming operation", writes, len(tb.results))
    tb.check()


@cocotb.test()
async def program_illegal_settings_refused(dut):
    """Testpoint prog_settings: every illegal setting or cell sets its flag; nothing reaches the macro."""
    tb = await make_prog_tb(dut)
    good = WriteVerifySettings(target=80)
    cases = [
        ("SET step 0", good.replace(set_step=0), None, (0, 0), ["PROG_SETTING"]),
        ("RESET step 0", good.replace(reset_step=0), None, (0, 0), ["PROG_SETTING"]),
        ("SET start > end", good.replace(set_start=100, set_end=99), None, (0, 0), ["PROG_SETTING"]),
        ("RESET start > end", good.replace(reset_start=100, reset_end=99), None, (0, 0), ["PROG_SETTING"]),
        ("tolerance 0", good.replace(tol=0), None, (0, 0), ["PROG_SETTING"]),
        ("pulse limit 0", good.replace(pulse_limit=0), None, (0, 0), ["PROG_SETTING"]),
        ("budget 0", good.replace(max_ops=0), None, (0, 0), ["PROG_SETTING"]),
        ("T_PULSE 0", good, {"T_PULSE": 0, "T_READ": 3}, (0, 0), ["PROG_SETTING"]),
        ("T_READ 0", good, {"T_PULSE": 2, "T_READ": 0}, (0, 0), ["PROG_SETTING"]),
        ("row outside", good, None, (tb.rows, 0), ["PROG_CELL"]),
        ("column outside", good, None, (0, tb.cols), ["PROG_CELL"]),
        ("both", good.replace(set_step=0), None, (0xFFFF, 0), ["PROG_CELL", "PROG_SETTING"]),
    ]
    for label, settings, timing, (row, col), flags in cases:
        await tb.prog_configure(timing)
        await tb.write_prog_settings(settings, row=row, col=col)
        await tb.csr.write_fields("PROG_CTRL", start=1)
        await ClockCycles(dut.clk, 3)
        assert not int(dut.busy.value), f"{label}: the core started"
        error = await tb.csr.read("ERROR")
        assert error_names(error) == flags, f"{label}: ERROR {error_names(error)}, expected {flags}"
        assert tb.prog_responder.ops.total() == 0, f"{label}: the macro saw programming operations"
        await tb.csr.write("ERROR", error)
    # After the refusals a legal command runs.
    await tb.prog_configure()
    await tb.program_cell(tb.rows - 1, tb.cols - 1, good)
    tb.check()


@cocotb.test()
async def program_busy_interlock_and_abort(dut):
    """Testpoint prog_interlock: programming and MVM refuse each other; abort ends a command at once."""
    tb = await make_prog_tb(dut)
    cfg = tb.config()
    tb.load_weights(tb.weights, MacroParams(delta=gain_delta(tb, cfg)))
    settings = WriteVerifySettings(target=80)
    # 1. A programming start while an MVM run is in progress: refused, no operation, the run completes.
    await tb.write_prog_settings(settings, row=0, col=0)
    await tb.configure(cfg, batch=1, timing=dict(FAST_TIMING, T_INTEG=40))
    run = cocotb.start_soon(tb.run(tb.random_inputs(1, cfg)))
    await RisingEdge(dut.busy)
    await tb.csr.write_fields("PROG_CTRL", start=1)
    assert error_names(await run) == ["START_BUSY"]
    assert tb.prog_responder.ops.total() == 0 and len(tb.results) == 1
    await tb.csr.write("ERROR", 0xFFFFFFFF)
    # 2. While a command runs: MVM start, configuration writes and a second command are refused.
    await tb.prog_configure({"T_PULSE": 2, "T_READ": 20})
    macro_ops = tb.responder.ops.total()
    target_before = await tb.csr.read("PROG_TARGET")
    await tb.start_program(0, 0, settings)
    await ClockCycles(dut.clk, 4)
    assert int(dut.busy.value) and await tb.csr.read_field("STATUS", "state") == CoreState.PROGRAM.value
    assert await tb.csr.read_field("PROG_STATUS", "busy") == 1
    await tb.csr.write_fields("CTRL", start=1)
    await tb.csr.write_fields("PROG_TARGET", target=1, tol=1)
    await tb.csr.write_fields("PROG_CTRL", start=1)
    await tb.wait_done(tb.prog_timeout_us(settings))
    tb.prog_scoreboard.check_result(await tb.read_prog_result())
    assert error_names(await tb.csr.read("ERROR")) == ["CONFIG_BUSY", "START_BUSY"]
    assert await tb.csr.read("PROG_TARGET") == target_before, "a configuration write landed while programming"
    assert tb.responder.ops.total() == macro_ops, "the macro saw MVM operations while programming"
    status = await tb.csr.read("PROG_STATUS")
    assert status & 0b11 == 0b10, f"PROG_STATUS 0x{status:x}: expected done, not busy"
    await tb.csr.write("ERROR", 0xFFFFFFFF)
    # 3. Abort in the middle of the first READ: the port goes IDLE at once, outcome ABORTED.
    await tb.prog_configure({"T_PULSE": 2, "T_READ": 40})
    await tb.start_program(0, 1, settings)
    await ClockCycles(dut.clk, 20)
    await tb.csr.write_fields("CTRL", abort=1)
    await tb.wait_done(10)
    assert int(dut.prog__op.value) == 0
    aborted = await tb.read_prog_result()
    tb.prog_scoreboard.abandon(aborted)
    assert aborted["outcome"] == Outcome.ABORTED
    assert await tb.csr.read_field("STATUS", "aborted") == 1
    # Abort truncates the operation in progress: exactly one hold-time report, for it.
    violations = tb.prog_contract.violations
    assert len(violations) == 1 and "READ held" in violations[0], violations
    violations.clear()
    # 4. Both still work.
    await run_and_check(tb, cfg, tb.random_inputs(1, cfg))
    await tb.prog_configure()
    await tb.program_cell(0, 1, settings)
    tb.check()


# ---- reset in every state ---------------------------------------------------------------


async def _wait_port(handle, value, cycles):
    """Wait until the port ``handle`` reads ``value`` (wakes on its changes only); False after ``cycles``."""

    async def changes():
        await Timer(1, "step")  # out of a ReadOnly phase: the reset may be written in this very cycle
        while _port(handle) != value:
            await ValueChange(handle)

    try:
        await with_timeout(changes(), cycles * CLOCK_NS, "ns")
    except SimTimeoutError:
        return False
    return True


def _port(handle):
    try:
        return handle.value.to_unsigned()
    except ValueError:
        return None


async def _reset_in(tb, port, state, label, cycles=5000):
    """Wait for ``state`` on the debug ``port``, apply reset in that very cycle, and clean the bench up."""
    reached = await _wait_port(port, state.value, cycles)
    assert reached, f"{label}: the core never reached {state.name} (state {_port(tb.dut.debug__state)})"
    await tb.reset(now=True)
    tb.in_bus.valid.value = 0
    tb.sink.pause = None
    await ClockCycles(tb.dut.clk, 2)
    # Bench state of the interrupted transaction: partial vectors, predictions, truncated operations.
    tb._in_elems.clear()
    tb._out_elems.clear()
    tb.scoreboard.expected.clear()
    tb.expected.clear()
    tb.prog_scoreboard.abandon()
    for checker in (tb.contract, tb.prog_contract):
        others = [v for v in checker.violations if "held" not in v]
        assert not others, f"{label}: contract violations besides the truncated operation: {others}"
        checker.violations.clear()
    assert int(tb.dut.macro__op.value) == 0 and int(tb.dut.prog__op.value) == 0, f"{label}: ports not IDLE"
    for reg in tb.regmap:
        if reg.access != "wo":
            got = await tb.csr.read(reg.name)
            assert got == reg.reset, f"{label}: {reg.name} reads 0x{got:08x} after reset, reset value 0x{reg.reset:08x}"


async def _mvm_after_reset(tb, label):
    """The next MVM after a reset runs exactly (fresh macro state in the responder and the model)."""
    cfg = tb.config()
    tb.load_weights(tb.weights, MacroParams(delta=gain_delta(tb, cfg)))
    before = len(tb.results)
    await tb.configure(cfg, batch=1)
    error = await tb.run(tb.random_inputs(1, cfg))
    assert error == 0, f"{label}: ERROR {error_names(error)} on the MVM after reset"
    assert len(tb.results) == before + 1, f"{label}: no output vector after reset"
    tb.check()


@cocotb.test()
async def reset_in_every_state(dut):
    """Testpoint reset_states: reset applied in every controller state (CoreState) and every write-verify
    sequencer state (ProgState), seen on the core's debug port; every register reads its reset value and
    the next MVM is exact. Samples reset_state_cg, which must be complete at the end."""
    tb = await make_tb(dut)
    slow = {"T_INIT": 4, "T_SAMPLE": 3, "T_INTEG": 3, "T_COMPARE": 3, "T_DECR": 2, "T_NOISE": 2}
    state = dut.debug__state
    for target in CoreState:
        label = f"reset in {target.name}"
        tasks = []
        if target == CoreState.PROGRAM:
            await tb.unlock()
            await tb.prog_configure()
            await tb.start_program(0, 0, WriteVerifySettings(target=80))
        elif target != CoreState.IDLE:
            cfg = tb.config(noise_pulses=2)
            tb.load_weights(tb.weights, MacroParams(delta=max(1, gain_delta(tb, cfg) // 4)))
            await tb.configure(cfg, batch=1, timing=slow)
            x = tb.random_inputs(1, cfg)[0]
            beats = tb.beats(x)
            if target == CoreState.LOAD:
                beats = []
            elif target == CoreState.DRAIN:
                beats = tb.beats(x, last_at=len(beats))[: len(beats)]  # the final beat without last
            elif target == CoreState.OUTPUT:
                tb.sink.pause = cycle_pause((1,))
            await tb.csr.write_fields("CTRL", start=1)
            tasks.append(cocotb.start_soon(tb.source.send(beats)))
        await _reset_in(tb, state, target, label)
        for task in tasks:
            task.cancel()
        await _mvm_after_reset(tb, label)
    # The sequencer: a stuck-low cell (SET loop to the pulse limit, failed iterations) passes every state
    # but CONFIRM; a cell already in the window passes CONFIRM.
    device = ArrayDevice((tb.rows, tb.cols), DeviceParams(stuck_fraction=0.0), seed=tb.seed)
    tb.load_device(device)
    failing = WriteVerifySettings(target=80, set_start=60, set_end=80, set_step=10, pulse_limit=2, iter_limit=2)
    for target in ProgState:
        label = f"reset in write-verify {target.name}"
        if target != ProgState.IDLE:
            in_window = target == ProgState.CONFIRM
            device.force((0, 0), g_uS=20.0 if in_window else 2.0, stuck=not in_window)
            await tb.unlock()
            await tb.prog_configure()
            await tb.start_program(0, 0, failing)
        await _reset_in(tb, dut.debug__prog_state, target, label)
        await _mvm_after_reset(tb, label)
    holes = tb.fcov.holes(["reset_state_cg"])["reset_state_cg"]
    assert not holes, f"reset states never sampled: {holes}"


@cocotb.test(expect_fail=True)
async def program_scoreboard_catches_wrong_decision(dut):
    """Testpoint prog_checker_negative: readings mutated on their way to the scoreboard make it fail."""
    tb = await make_prog_tb(dut)
    settings = WriteVerifySettings(target=80)
    # The opposite extreme of every reading: the reference decides otherwise (SET <-> RESET, or a pulse
    # instead of the confirming READ) whatever the device reads.
    tb.prog_monitor.reading_fault = lambda r: 0 if r >= settings.target else 255
    await tb.program_cell(0, 0, settings)
    if not any("the reference expects" in m for m in tb.prog_scoreboard.mismatches):
        raise RuntimeError(f"the scoreboard missed the wrong decision: {tb.prog_scoreboard.mismatches}")
    tb.check()


@cocotb.test(expect_fail=True)
async def program_contract_catches_hold_violation(dut):
    """Testpoint prog_checker_negative: the programming-port checker flags a READ held for the wrong time."""
    tb = await make_prog_tb(dut)
    tb.prog_contract.hold_cycles[ProgOp.READ] += 1
    await tb.program_cell(0, 0, WriteVerifySettings(target=80))
    if not any("READ held" in v for v in tb.prog_contract.violations):
        raise RuntimeError(f"the checker missed the hold-time violation: {tb.prog_contract.violations}")
    tb.check()

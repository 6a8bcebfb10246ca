"""Sequences of the chip environment: host (directed, random, stress), macro behaviours, virtual.

Host sequences run on the host sequencer and only build commands (they never compare: the scoreboard
does); they find the geometry, the register map and the seeded random generator in
``self.sequencer.chip`` (:class:`~cimdv.tb.uvm.env.ChipInfo`). Macro sequences run on one tile's macro
sequencer. Virtual sequences run on the virtual sequencer and start the others on ``.host`` and
``.macro[(x, y)]``.

Writing a new one (docs/architecture.md, "pyuvm chip environment"): subclass :class:`HostSequence` and
write ``body`` with its helpers (``configure``, ``csr_write``, ``csr_read``, ``mvm``), or subclass
:class:`ChipVirtualSequence` and combine sequences with ``host``/``macro``; keep the traffic legal and
let the predictor work out the expected results.
"""

import dataclasses

from cocotb.triggers import Timer
from pyuvm import uvm_sequence

from cimdv.model.encoding import LineMode
from cimdv.tb.chip.env import CLOCK_NS
from cimdv.tb.vip.config import core_config_writes, decode_field

from .items import HostItem, MacroItem, area_cores

__all__ = [
    "HostSequence",
    "ConfigureSeq",
    "PingSeq",
    "CsrWriteSeq",
    "CsrAccessSeq",
    "MvmSeq",
    "RandomTrafficSeq",
    "StressSeq",
    "WaitIdleSeq",
    "MacroBehaviourSeq",
    "ChipVirtualSequence",
    "DirectedVseq",
    "RandomVseq",
    "StressVseq",
    "LayerSplitVseq",
    "SlowAndSilentCoreVseq",
    "NoisyLayerVseq",
    "BiasedLayerVseq",
    "WeightFaultVseq",
    "MulticastOnceVseq",
    "NOISE",
]

#: Read and kT/C noise of the noisy-macro layers: σ ≈ 61 integrator units ≈ 1.5 LSB (Δ = 40) for a 32-row
#: core with 4-bit signed inputs (14 samples of 32 connected lines: 14·(32·2.5² + 8²) = 61²).
NOISE = {"read_noise": 2.5, "ktc_noise": 8.0}
#: Registers the random traffic writes (legal values that keep every core's configuration legal).
_TIMING = ("T_INIT", "T_SAMPLE", "T_INTEG", "T_COMPARE", "T_DECR", "T_NOISE")
_READABLE = (
    "ID",
    "GEOMETRY",
    "PARAMS",
    "ERROR",
    "VECTORS",
    "STATUS",
    "MODE",
    "MAX_COUNT",
    "BATCH",
    "WATCHDOG",
    "NOISE_PULSES",
    "OUT_MASK0",
    "LINE_MODE0",
    *_TIMING,
)


class HostSequence(uvm_sequence):
    """Base of host sequences: one :class:`HostItem` per command, helpers for legal commands."""

    @property
    def chip(self):
        return self.sequencer.chip

    async def send(self, item):
        """Run one item; returns it with its response."""
        await self.start_item(item)
        await self.finish_item(item)
        return item

    async def csr_write(self, area, name, value, **knobs):
        return await self.send(HostItem.csr_write(area, self.chip.regmap[name].addr, value, **knobs))

    async def csr_read(self, xy, name, **knobs):
        """The register's value (None when the command got no OK response)."""
        item = await self.send(HostItem.csr_read(xy, self.chip.regmap[name].addr, **knobs))
        r = item.response
        return r.payload[0] if r is not None and r.payload else None

    async def configure(self, cfg, *, area=None, batch=1, timing=None, watchdog=1 << 20):
        """Every configuration register of the cores of ``area`` (default: all), multicast."""
        timing = self.chip.timing if timing is None else timing
        for name, value in core_config_writes(self.chip.regmap, cfg, timing=timing, batch=batch, watchdog=watchdog):
            await self.csr_write(area or self.chip.all, name, value)

    async def mvm(self, area, inputs, *, out_elems, per_core=False, reduce=False, **knobs):
        return await self.send(
            HostItem.mvm(area, inputs, out_elems=out_elems, per_core=per_core, reduce=reduce, **knobs)
        )

    def random_inputs(self, cfg, shape):
        lo, hi = cfg.in_range
        return self.chip.rng.integers(lo, hi + 1, size=(*shape, cfg.n_in))

    def random_area(self):
        return self.chip.random_area()


class ConfigureSeq(HostSequence):
    """Write a configuration (``cfg``, ``batch``, ``timing``) to every core of ``area`` (default all)."""

    def __init__(self, name="configure", *, cfg, area=None, batch=1, timing=None):
        super().__init__(name)
        self.cfg, self.area, self.batch, self.timing = cfg, area, batch, timing

    async def body(self):
        await self.configure(self.cfg, area=self.area, batch=self.batch, timing=self.timing)


class PingSeq(HostSequence):
    """One PING."""

    async def body(self):
        await self.send(HostItem.ping())


class CsrWriteSeq(HostSequence):
    """One CSR write of register ``reg`` to every core of ``area``."""

    def __init__(self, name="csr_write", *, area, reg, value):
        super().__init__(name)
        self.area, self.reg, self.value = area, reg, value

    async def body(self):
        await self.csr_write(self.area, self.reg, self.value)


class CsrAccessSeq(HostSequence):
    """Directed CSR traffic: multicast writes of timing and watchdog registers, read back from random
    cores, and reads of the identification registers."""

    async def body(self):
        chip, rng = self.chip, self.chip.rng
        for name in ("WATCHDOG", "T_SAMPLE", "T_INTEG"):
            value = int(rng.integers(1 << 16, 1 << 20)) if name == "WATCHDOG" else int(rng.integers(1, 4))
            await self.csr_write(chip.all, name, value)
            for k in rng.choice(len(chip.cores), 2, replace=False):
                await self.csr_read(chip.cores[int(k)], name)
        for name in ("ID", "GEOMETRY", "PARAMS", "ERROR"):
            await self.csr_read(chip.cores[int(rng.integers(len(chip.cores)))], name)


class MvmSeq(HostSequence):
    """One MVM with random inputs: multicast, ``per_core`` or ``reduce``d over ``area`` (default all),
    optionally (``configure``) writing ``cfg`` and BATCH first."""

    def __init__(
        self,
        name="mvm",
        *,
        cfg,
        area=None,
        batch=1,
        per_core=False,
        reduce=False,
        configure=True,
        in_pause=None,
        out_pause=None,
    ):
        super().__init__(name)
        self.cfg, self.area, self.batch = cfg, area, batch
        self.per_core, self.reduce, self.do_configure = per_core, reduce, configure
        self.knobs = {"in_pause": in_pause, "out_pause": out_pause}

    async def body(self):
        area = self.area or self.chip.all
        if self.do_configure:
            await self.configure(self.cfg, area=area, batch=self.batch)
        shape = (self.batch, len(area_cores(area))) if self.per_core else (self.batch,)
        inputs = self.random_inputs(self.cfg, shape)
        await self.mvm(area, inputs, out_elems=self.cfg.n_out, per_core=self.per_core, reduce=self.reduce, **self.knobs)


class RandomTrafficSeq(HostSequence):
    """Random legal host traffic: PING, CSR writes that keep every configuration legal, CSR reads, and
    MVMs of random modes, rectangles, batches and configurations (a rectangle is reconfigured when its
    cores disagree). ``commands`` is the number of PING/CSR/MVM steps."""

    def __init__(self, name="random_traffic", *, commands=12):
        super().__init__(name)
        self.commands = commands

    def random_config(self):
        rng, chip = self.chip.rng, self.chip
        signed = bool(rng.integers(2))
        out_bits = int(rng.integers(3, 9))
        lines = max(chip.core_rows, chip.core_cols)
        modes = rng.choice([LineMode.POS, LineMode.POS, LineMode.NEG, LineMode.OFF], lines)
        return chip.config(
            backward=bool(rng.integers(2)),
            signed=signed,
            in_bits=int(rng.integers(1 + signed, 5)),
            out_bits=out_bits,
            max_count=int(rng.integers(1, 1 << (out_bits - 1))),
            pulse_mult=int(rng.integers(1, 3)),
            line_modes=[LineMode(int(m)) for m in modes],
        )

    async def body(self):
        chip, rng = self.chip, self.chip.rng
        self.known = dict.fromkeys(chip.cores)  # core -> (cfg, batch) as last written
        for _ in range(self.commands):
            pick = rng.random()
            if pick < 0.1:
                await self.send(HostItem.ping())
            elif pick < 0.3:
                await self.random_write()
            elif pick < 0.45:
                xy = chip.cores[int(rng.integers(len(chip.cores)))]
                await self.csr_read(xy, _READABLE[int(rng.integers(len(_READABLE)))])
            else:
                await self.random_mvm()

    async def random_write(self):
        chip, rng = self.chip, self.chip.rng
        area = self.random_area()
        cores = area_cores(area)
        known = [self.known[xy] for xy in cores]
        choice = int(rng.integers(4))
        if choice == 0 or any(k is None for k in known):
            name = _TIMING[int(rng.integers(len(_TIMING)))]
            await self.csr_write(area, name, int(rng.integers(1, 4)))
        elif choice == 1:
            await self.csr_write(area, "WATCHDOG", int(rng.integers(1 << 16, 1 << 20)))
        elif choice == 2:
            limit = min((1 << (cfg.out_bits - 1)) - 1 for cfg, _ in known)
            value = int(rng.integers(1, limit + 1))
            await self.csr_write(area, "MAX_COUNT", value)
            for xy, (cfg, batch) in zip(cores, known, strict=True):
                self.known[xy] = (dataclasses.replace(cfg, max_count=value), batch)
        else:
            lines = max(chip.core_rows, chip.core_cols)
            mask = [bool(b) for b in rng.integers(0, 2, lines)]
            await self.csr_write(area, "OUT_MASK0", sum(int(b) << k for k, b in enumerate(mask[:32])))
            for xy, (cfg, batch) in zip(cores, known, strict=True):
                self.known[xy] = (dataclasses.replace(cfg, out_mask=mask[:32] + list(cfg.out_mask[32:])), batch)

    async def random_mvm(self):
        rng = self.chip.rng
        area = self.random_area()
        cores = area_cores(area)
        reduce, per_core = rng.random() < 0.3, rng.random() < 0.5
        batch = 1 if reduce else int(rng.integers(1, 3))
        known = {self.known[xy] for xy in cores}
        if len(known) != 1 or None in known or rng.random() < 0.3 or next(iter(known))[1] != batch:
            cfg = self.random_config()
            await self.configure(cfg, area=area, batch=batch)
            for xy in cores:
                self.known[xy] = (cfg, batch)
        cfg = self.known[cores[0]][0]
        shape = (batch, len(cores)) if per_core else (batch,)
        await self.mvm(area, self.random_inputs(cfg, shape), out_elems=cfg.n_out, per_core=per_core, reduce=reduce)


class StressSeq(HostSequence):
    """Back-to-back MVMs (batches of ``batch``) under input idles and output backpressure, with CSR writes
    and reads interleaved between them; ``mvms`` MVMs."""

    PAUSES = ((1, 0), (1, 1, 0), (1, 1, 1, 0), (0, 1), (1, 0, 0))

    def __init__(self, name="stress", *, mvms=6, batch=2):
        super().__init__(name)
        self.mvms, self.batch = mvms, batch

    async def body(self):
        chip, rng = self.chip, self.chip.rng
        cfg = chip.config(max_count=31, out_bits=6)
        await self.configure(cfg, batch=self.batch)
        for k in range(self.mvms):
            per_core = bool(k % 2)
            shape = (self.batch, len(chip.cores)) if per_core else (self.batch,)
            knobs = {
                "in_pause": self.PAUSES[int(rng.integers(len(self.PAUSES)))],
                "out_pause": self.PAUSES[int(rng.integers(len(self.PAUSES)))],
            }
            await self.mvm(chip.all, self.random_inputs(cfg, shape), out_elems=cfg.n_out, per_core=per_core, **knobs)
            name = _TIMING[int(rng.integers(len(_TIMING)))]
            await self.csr_write(chip.all, name, int(rng.integers(1, 4)), **knobs)
            await self.csr_read(chip.cores[int(rng.integers(len(chip.cores)))], name, out_pause=knobs["out_pause"])


class WaitIdleSeq(HostSequence):
    """Poll ``STATUS.busy`` of core ``xy`` (every ``period`` cycles, no Python in between) until it is idle."""

    def __init__(self, name="wait_idle", *, xy, period=2000, polls=100):
        super().__init__(name)
        self.xy, self.period, self.polls = xy, period, polls

    async def body(self):
        for _ in range(self.polls):
            status = await self.csr_read(self.xy, "STATUS")
            if status is not None and not decode_field(self.chip.regmap, "STATUS", status, "busy"):
                return
            await Timer(self.period * CLOCK_NS, "ns")
        raise TimeoutError(f"core {self.xy} still busy after {self.polls} polls of {self.period} cycles")


class MacroBehaviourSeq(uvm_sequence):
    """Give one tile's macro a new behaviour (one :class:`MacroItem`)."""

    def __init__(self, name="macro_behaviour", *, item):
        super().__init__(name)
        self.item = item

    async def body(self):
        await self.start_item(self.item)
        await self.finish_item(self.item)


# ---- virtual sequences ----------------------------------------------------------------------


class ChipVirtualSequence(uvm_sequence):
    """Base of virtual sequences (run on :class:`~cimdv.tb.uvm.env.ChipVirtualSequencer`)."""

    @property
    def chip(self):
        return self.sequencer.chip

    async def host(self, seq):
        """Run a host sequence on the host sequencer; returns it."""
        await seq.start(self.sequencer.host)
        return seq

    async def macro(self, xy, kind="exact", **fields):
        """Give tile ``xy``'s macro a behaviour (:class:`MacroItem` fields)."""
        await MacroBehaviourSeq(item=MacroItem(f"macro_{kind}", kind, **fields)).start(self.sequencer.macro[xy])

    async def all_macros(self, kind="exact", **fields):
        for xy in self.chip.cores:
            await self.macro(xy, kind, **fields)


class DirectedVseq(ChipVirtualSequence):
    """PING, CSR writes and reads, a multicast MVM (batches 1 and 3), a per-core MVM on a random
    rectangle, reduced MVMs (per-core and multicast)."""

    async def body(self):
        chip = self.chip
        await self.host(PingSeq("ping"))
        await self.host(CsrAccessSeq("csr"))
        for batch in (1, 3):
            cfg = chip.config(signed=bool(batch % 2), max_count=63, out_bits=7)
            await self.host(MvmSeq(cfg=cfg, batch=batch))
        await self.host(MvmSeq(cfg=chip.config(in_bits=3), area=chip.random_area(), batch=2, per_core=True))
        cfg = chip.config(max_count=127)
        await self.host(MvmSeq(cfg=cfg, per_core=True, reduce=True))
        await self.host(MvmSeq(cfg=cfg, reduce=True, configure=False))


class RandomVseq(ChipVirtualSequence):
    """Random legal host traffic on exact macros."""

    async def body(self):
        await self.host(RandomTrafficSeq(commands=14))


class StressVseq(ChipVirtualSequence):
    """Back-to-back MVMs under backpressure with CSR traffic in between."""

    async def body(self):
        await self.host(StressSeq(mvms=6, batch=2))


class LayerSplitVseq(ChipVirtualSequence):
    """Configure every core (exact macros), then a layer split over the cores with the partial sums reduced
    in the bridge: over all cores, over row 0, over a random rectangle, and one multicast input summed."""

    async def body(self):
        chip = self.chip
        await self.all_macros("exact")
        cfg = chip.config(max_count=127)
        await self.host(ConfigureSeq(cfg=cfg))
        for area in (chip.all, (0, 0, chip.cols - 1, 0), chip.random_area()):
            await self.host(MvmSeq(cfg=cfg, area=area, per_core=True, reduce=True, configure=False))
        await self.host(MvmSeq(cfg=cfg, reduce=True, configure=False))


class SlowAndSilentCoreVseq(ChipVirtualSequence):
    """A core slower than the bridge's watchdog (its INIT outlasts it) while the host runs a reduced MVM
    over every core: TIMEOUT, the others' sums delivered; wait until the slow core is idle (its late output
    is drained as stale), restore it, run again. Then a silent macro on another tile: its outputs saturate
    negative, the others are exact; the macro is restored and the MVM repeated."""

    async def body(self):
        chip = self.chip
        cfg = chip.config(in_bits=2)
        await self.host(ConfigureSeq(cfg=cfg))
        slow = chip.random_core()
        await self.host(CsrWriteSeq(area=(*slow, *slow), reg="T_INIT", value=chip.watchdog + 5000))
        await self.host(MvmSeq(cfg=cfg, per_core=True, reduce=True, configure=False))
        await self.host(WaitIdleSeq(xy=slow, period=4000))
        await self.host(CsrWriteSeq(area=(*slow, *slow), reg="T_INIT", value=chip.timing["T_INIT"]))
        await self.host(MvmSeq(cfg=cfg, per_core=True, reduce=True, configure=False))
        silent = next(xy for xy in chip.cores if xy != slow)
        await self.macro(silent, "silent")
        cfg = chip.config(in_bits=2, max_count=15, out_bits=5)
        await self.host(MvmSeq(cfg=cfg))
        await self.host(MvmSeq(cfg=cfg, per_core=True, reduce=True, configure=False))
        await self.macro(silent, "exact")
        await self.host(MvmSeq(cfg=cfg, configure=False))


class NoisyLayerVseq(ChipVirtualSequence):
    """A layer on noisy physical macros (read and kT/C noise, every tile its own seed): two multicast MVMs
    of four vectors (256 neurons per core for the statistical check) and a reduced MVM (exact against the
    macros' own decisions)."""

    vectors = 4
    mvms = 2

    async def faults(self):
        """Macro faults of a subclass (none here)."""

    async def body(self):
        chip = self.chip
        for xy in chip.cores:
            await self.macro(xy, "physical", seed=int(chip.rng.integers(1 << 30)), **NOISE)
        await self.faults()
        cfg = chip.config(max_count=127)
        await self.host(ConfigureSeq(cfg=cfg, batch=self.vectors))
        for _ in range(self.mvms):
            await self.host(MvmSeq(cfg=cfg, batch=self.vectors, configure=False))
        await self.host(CsrWriteSeq(area=chip.all, reg="BATCH", value=1))
        await self.host(MvmSeq(cfg=cfg, per_core=True, reduce=True, configure=False))


class BiasedLayerVseq(NoisyLayerVseq):
    """:class:`NoisyLayerVseq` (one MVM) with tile (1, 0)'s macro biased by +2 LSB (negative test)."""

    mvms = 1
    biased = (1, 0)

    async def faults(self):
        await self.macro(self.biased, "biased", seed=int(self.chip.rng.integers(1 << 30)), bias_lsb=2.0, **NOISE)


class WeightFaultVseq(ChipVirtualSequence):
    """A weight fault (+12 codes at row 0, column 0) in tile (1, 1)'s macro, then a multicast MVM whose
    input 0 is the largest: neuron 0 of that core moves by 2·7·12 = 168 > 4 Δ (negative test)."""

    faulty = (1, 1)

    async def body(self):
        chip = self.chip
        cfg = chip.config(max_count=127)
        await self.host(ConfigureSeq(cfg=cfg))
        await self.macro(self.faulty, "weight_fault", fault=(0, 0, 2 * chip.delta // cfg.in_range[1] + 1))
        await self.host(_FixedMvmSeq(cfg=cfg, first=cfg.in_range[1]))


class MulticastOnceVseq(ChipVirtualSequence):
    """One configuration and one multicast MVM (the predictor-fault negative test)."""

    async def body(self):
        await self.host(MvmSeq(cfg=self.chip.config(max_count=127)))


class _FixedMvmSeq(HostSequence):
    """A multicast MVM of random inputs with element 0 set to ``first``."""

    def __init__(self, name="fixed_mvm", *, cfg, first):
        super().__init__(name)
        self.cfg, self.first = cfg, first

    async def body(self):
        x = self.random_inputs(self.cfg, (1,))
        x[0, 0] = self.first
        await self.mvm(self.chip.all, x, out_elems=self.cfg.n_out)

"""Physical model of one core: voltage-mode crossbar, 2-phase bit-serial sampling, IF-ADC.

Every non-ideality is one documented term of :class:`PhysicalParams`, and every term at 0
(or None) is ideal. With all terms ideal, integer conductance codes as ``g_uS``,
``v_read_V = 1`` and an integer quantum, :class:`PhysicalCore` is bit-identical to
:class:`cimdv.model.exact.ExactCore` (a test proves it on random inputs).

Units: conductances in µS, voltages in V. The integrator is kept in "sampled volts": one
sample of a line settled at ``ΔV`` adds ``sample_gain · ΔV`` (``C_s/C_int`` folded into
``sample_gain``), and one decrement removes ``delta_V``. Without voltage-mode
normalisation a line "voltage" is the current sum ``V_r · Σ p·G`` in V·µS; the units
then follow the ideal exact model (integer codes, integer quantum).

Equations (cim-golden-model.md §3.2-3.4; neurram-chip.md §3):

* phase (b, φ) of a vector drives line i with p_i ∈ {-1, 0, +1} (docs/analog-boundary.md §3.1);
  positive lines sit at +v_read, negative at -v_neg = -v_read·(1 - vneg_error);
* voltage mode: ΔV_j = (v_read Σ_{p=+1} G_ij - v_neg Σ_{p=-1} G_ij) / (Σ_{connected} G_ij + g_par);
  forward, OFF lines are disconnected; backward every line is connected;
* bit b is sampled N_b = M·2^b times per phase; with droop α the k-th re-sample of a phase
  carries (1-α)^k of the voltage;
* read noise: independent N(0, σ_r²) on every connected cell, drawn once per array
  activation (one per phase: the word lines pulse once per phase) and shared by that
  phase's samples; summed output-referred, exactly, as N(0, n_connected·σ_r²) per column;
* kT/C: N(0, σ_kTC²) per sample, independent;
* CDS residual: static per-neuron offset added at INIT; comparator offset: static
  per-neuron threshold; per-column gain: static multiplicative spread;
* conversion (count mode): sign = (u ≤ 0) with u = integ - θ_j; count k = ceil(u/q⁺_j) for
  u > 0, floor(-u/q⁻_j) + 1 otherwise, saturating at max_count (exact model rules) with
  q^± = delta_V·(1 ∓ asym)(1 + ε_j) (decrement asymmetry and per-neuron mismatch).

Static terms are drawn once at construction from ``seed``; per-activation terms are drawn
from the ``rng`` given to each call (a numpy Generator, a :class:`~.gauss.NormalStream`
for block-drawn noise, or a generator seeded per transaction), so a seed reproduces a run
exactly. Closed-form noise is float32 (:func:`~.gauss.standard_normal32`).
"""

import dataclasses
import os
import queue
import threading
from dataclasses import dataclass

import numpy as np

from .encoding import (
    CoreConfig,
    LineMode,
    check_input,
    encode_phases,
    pulses_per_phase,
)
from .exact import MacroBus, _LfsrBank
from .gauss import generator_of, standard_normal32
from .params import Serialisable

__all__ = ["ConversionMode", "PhysicalParams", "PhysicalCore", "PhysicalResult", "CoreStack", "PhysicalMacroState"]


class ConversionMode:
    """Conversion modes of the neuron (neurram-chip.md §3.3-3.7)."""

    #: Integrate-and-fire with charge decrement, counting steps to the sign flip (default).
    COUNT = "count"
    #: Two thresholds (MINUS then PLUS): ternary output -1 / 0 / +1.
    TERNARY = "ternary"
    #: Binary search (SAR-like, non-restoring): decrements halve every step.
    SAR = "sar"
    ALL = (COUNT, TERNARY, SAR)


@dataclass(frozen=True)
class PhysicalParams(Serialisable):
    """Every non-ideality of the physical core; 0 or None means ideal.

    Parameters
    ----------
    voltage_mode : bool
        Normalise each line voltage by the sum of connected conductances (+ ``g_par_uS``).
        False: ideal current summation (the exact model's arithmetic).
    g_par_uS : float
        Parasitic conductance added to every normalisation denominator (µS).
    v_read_V : float
        Drive step of a positive line above VREF (vpos).
    vneg_error : float
        Relative shortfall of the negative drive: v_neg = v_read·(1 - vneg_error). NeuRRAM
        calibrates vpos/vneg ratios of 1.05-1.15 (neurram-chip.md §7.2).
    sample_gain : float
        Charge-transfer gain C_s/C_int·A/(A+1+C_s/C_int) of one sample.
    delta_V : float
        Decrement quantum q in integrator volts (the ADC's LSB).
    read_noise_uS : float
        σ of per-activation read noise of every connected cell (µS); ~1 % of G_max.
    ktc_noise_V : float
        σ of kT/C noise per sample (integrator volts); 0.14-0.29 mV for 200-50 fF.
    droop : float
        Fraction of the held line voltage lost per re-sample within a phase (multi-sampling).
    column_gain_sigma : float
        Relative σ of a static per-column gain (Gaussian around 1).
    comparator_offset_V : float
        σ of a static per-neuron comparator offset (integrator volts).
    cds_residual_V : float
        σ of a static per-neuron CDS residual added at INIT (integrator volts).
    decrement_asymmetry : float
        q⁺ = q·(1 - a), q⁻ = q·(1 + a): positive and negative quanta differ (~5 %).
    decrement_mismatch : float
        Relative σ of a static per-neuron quantum mismatch ε (~1 %).
    integrator_sat_V : float or None
        Integrator rails ±V_sat, applied after every sample (clips are counted).
    mode : str
        Conversion mode (:class:`ConversionMode`).
    ternary_threshold_V : float
        Ternary mode: |integrator| must exceed this for a ±1 output.
    noise_q_V : float
        Charge of one LFSR NOISE pulse (stochastic neurons), as the exact model's ``noise_q``.
    ir_drop_ohm : float
        Series resistance of every driven line's driver and wire (Ω); 0 = ideal. With it the
        line voltages sag under the current they source, so the result is no longer a plain
        conductance-weighted average: KCL at the driven and (floating) sensed lines is one
        linear system, solved once per set of connected lines (see :meth:`PhysicalCore.transfer`).
    multi_sampling : bool
        NeuRRAM's multi-sampling (its software default): the word lines pulse once per phase
        and later samples re-sample the held line, so one read-noise draw is shared by the
        phase's samples and droop applies. False: every sample is its own array activation
        (independent read noise, no droop). The cycle-level macro treats a SAMPLE whose
        drive equals the previous SAMPLE's (since INIT) as a re-sample.
    """

    voltage_mode: bool = False
    g_par_uS: float = 0.0
    v_read_V: float = 1.0
    vneg_error: float = 0.0
    sample_gain: float = 1.0
    delta_V: float = 1.0
    read_noise_uS: float = 0.0
    ktc_noise_V: float = 0.0
    droop: float = 0.0
    column_gain_sigma: float = 0.0
    comparator_offset_V: float = 0.0
    cds_residual_V: float = 0.0
    decrement_asymmetry: float = 0.0
    decrement_mismatch: float = 0.0
    integrator_sat_V: float | None = None
    mode: str = ConversionMode.COUNT
    ternary_threshold_V: float = 0.0
    noise_q_V: float = 0.0
    ir_drop_ohm: float = 0.0
    multi_sampling: bool = True

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("voltage_mode", "multi_sampling"):
                if not isinstance(value, bool):
                    raise TypeError(f"{f.name} must be a bool, not {value!r}")
                continue
            if f.name == "mode":
                if value not in ConversionMode.ALL:
                    raise ValueError(f"mode must be one of {ConversionMode.ALL}, not {value!r}")
                continue
            if value is None and f.name == "integrator_sat_V":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{f.name} must be a number, not {value!r}")
            if not np.isfinite(value):
                raise ValueError(f"{f.name} must be finite, not {value!r}")
            if value < 0:
                raise ValueError(f"{f.name} must be >= 0, not {value!r}")
        for name in ("v_read_V", "sample_gain", "delta_V"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, not {getattr(self, name)!r}")
        if self.integrator_sat_V is not None and self.integrator_sat_V <= 0:
            raise ValueError(f"integrator_sat_V must be > 0 or None, not {self.integrator_sat_V!r}")
        for name in ("vneg_error", "droop", "decrement_asymmetry"):
            if getattr(self, name) >= 1:
                raise ValueError(f"{name} must be < 1, not {getattr(self, name)!r}")

    # -- serialisation -------------------------------------------------------------------------

    @property
    def ideal(self):
        """True when every non-ideality is off (scales, the quantum, the mode and the LFSR noise
        charge of stochastic neurons are settings, not non-idealities)."""
        settings = ("v_read_V", "sample_gain", "delta_V", "mode", "ternary_threshold_V", "noise_q_V", "multi_sampling")
        return self == PhysicalParams(**{name: getattr(self, name) for name in settings})


@dataclass(eq=False, slots=True)
class PhysicalResult:
    """One vector's conversion and diagnostics (``n_out`` neurons).

    A plain record (not frozen: a frozen dataclass costs ~1 µs more to build, 5 % of an MVM).
    """

    sign: np.ndarray
    count: np.ndarray
    sat: np.ndarray
    integ: np.ndarray
    #: Ternary mode: -1 / 0 / +1 per neuron (None otherwise).
    ternary: np.ndarray | None = None
    #: Samples clipped at the integrator rails (summed over neurons).
    rail_clips: int = 0
    #: Conversion steps when they are not the largest count (SAR: its bit count).
    steps_override: int | None = None

    @property
    def steps(self):
        """DECREMENT/COMPARE iterations of the early-stopping loop (``LAST_STEPS``).

        Count mode: the largest count (masked-out neurons count 0, sign-only conversion
        counts 0), computed on first use.
        """
        if self.steps_override is not None:
            return self.steps_override
        return int(self.count.max()) if self.count.size else 0

    @property
    def values(self):
        """Host decode (1 - 2·sign)·(count - 0.5); 0 where count is 0."""
        count = self.count.astype(np.float64)
        return np.where(count == 0, 0.0, (1.0 - 2.0 * self.sign) * (count - 0.5))


def _check_g(g_uS):
    g = np.asarray(g_uS)
    if g.ndim != 2 or g.size == 0:
        raise ValueError(f"g_uS must be a non-empty 2-D (rows, cols) array, not shape {g.shape}")
    if not np.issubdtype(g.dtype, np.number) or np.issubdtype(g.dtype, np.complexfloating):
        raise TypeError(f"g_uS must be real numbers, not dtype {g.dtype}")
    g = g.astype(np.float64)
    if not np.isfinite(g).all():
        raise ValueError("g_uS must be finite (NaN or infinite conductance found)")
    if (g < 0).any():
        raise ValueError(f"g_uS must be >= 0 (negative conductance {g.min()!r} found)")
    return g


def _count(u, q_pos, q_neg, max_count, mask, all_active):
    """Sign, count and saturation of residues ``u`` (any shape ending in n_out), exact-model rules.

    ``q_pos``/``q_neg`` are the quanta *negated* (``-q⁺``, ``-q⁻``): with ``a = u / -q`` and
    ``f = floor(a)``, a positive residue needs ``ceil(u/q⁺) = -f`` decrements and a
    non-positive one ``floor(-u/q⁻) + 1 = f + 1``. Division (not multiplication by
    reciprocals) keeps the ideal limit bit-exact: a quotient of integers that is an integer
    is computed exactly, so ``floor`` never steps across it.
    """
    negative = u <= 0
    if max_count == 0:
        k = np.zeros(u.shape, dtype=np.int64)
        sat = np.zeros(u.shape, dtype=bool)
    else:
        f = np.floor(u / np.where(negative, q_neg, q_pos))
        k = np.where(negative, f + 1, -f)
        sat = k > max_count
        np.minimum(k, max_count, out=k)
        k = k.astype(np.int64)
    if all_active:
        return negative.view(np.uint8), k, sat
    return (negative & mask).view(np.uint8), np.where(mask, k, 0), sat & mask


def _count32(u, r_pos, r_neg, max_count, scratch):
    """:func:`_count` for the float32 (non-ideal) path, in fewer and cheaper numpy calls.

    ``r_pos``/``r_neg`` are the *negated reciprocals* of the quanta, so ``a = u·r`` is
    ``-u/q`` and ``f = floor(a)``; a positive residue needs ``-f`` decrements and a
    non-positive one ``f + 1``, which is ``|f + ½| + ½`` in both cases. The quantum is
    chosen by the sign of ``u`` without ``np.where`` (slow on broadcast operands): since
    ``q⁺ <= q⁻`` (asymmetry >= 0), ``|r_pos| >= |r_neg|`` and ``min(u·r_pos, u·r_neg)`` is
    ``u·r_pos`` for ``u > 0`` and ``u·r_neg`` otherwise. ``u`` is overwritten and
    ``scratch`` (float32, the shape of ``u``) is working space. Returns (sign, count, sat)
    for every neuron (masking is the caller's).
    """
    negative = u <= 0
    a = np.multiply(u, r_pos, out=scratch)
    np.multiply(u, r_neg, out=u)
    np.minimum(a, u, out=a)
    np.floor(a, out=a)
    a += 0.5
    np.abs(a, out=a)
    a += 0.5
    sat = a > max_count
    np.minimum(a, max_count, out=a)
    return negative.view(np.uint8), a.astype(np.int64), sat


def _workspace(owner, shape):
    """Two float32 arrays of ``shape``, kept by ``owner`` (a dict) for its last shape.

    Batches reuse them instead of allocating afresh: on the project's VM fresh arrays of a
    few hundred KiB come back from the kernel page by page, which cost a 256-vector batch
    more than its matrix product.
    """
    ws = owner.get("workspace")
    if ws is None or ws[0].shape != shape:
        ws = (np.empty(shape, dtype=np.float32), np.empty(shape, dtype=np.float32))
        owner["workspace"] = ws
    return ws


class PhysicalCore:
    """Physical model of one core with programmed conductances ``g_uS`` (rows x cols).

    Parameters
    ----------
    g_uS : array_like
        Conductance of every cell (after programming and relaxation), µS.
    params : PhysicalParams
    seed : int
        Seed of the static draws (column gains, comparator offsets, CDS residuals,
        decrement mismatch); the same seed gives the same core.
    noise_seed : int
        Seed of the per-neuron LFSRs of the NOISE pulses (stochastic neurons), with the
        exact model's polynomial and seeding; each vector with ``noise_pulses = P``
        advances them P steps and adds ±``noise_q_V`` per pulse.
    """

    def __init__(self, g_uS, params=None, *, seed=0, noise_seed=1):
        self.g = _check_g(g_uS)
        if params is None:
            params = PhysicalParams()
        if not isinstance(params, PhysicalParams):
            raise TypeError(f"params must be a PhysicalParams, not {type(params).__name__}")
        self.params = p = params
        self.rows, self.cols = self.g.shape
        self.lines = max(self.rows, self.cols)
        rng = np.random.default_rng(seed)
        n = self.lines
        # Static draws, always in the same order so a seed means one core whatever is enabled.
        draws = rng.standard_normal((4, n))
        self.column_gain = 1.0 + p.column_gain_sigma * draws[0]
        self.threshold_V = p.comparator_offset_V * draws[1]
        self.cds_V = p.cds_residual_V * draws[2]
        mismatch = 1.0 + p.decrement_mismatch * draws[3]
        self.q_pos = p.delta_V * (1.0 - p.decrement_asymmetry) * mismatch
        self.q_neg = p.delta_V * (1.0 + p.decrement_asymmetry) * mismatch
        self._lfsr = _LfsrBank(noise_seed, n)
        self._cache = {}
        self._transfer_cache = {}
        self._last_plan = None
        #: Samples clipped at the integrator rails over every vector so far (physics, counted).
        self.rail_clips = 0

    def _noise_pulses(self, cfg, n_out):
        """LFSR noise of one vector: P pulses of ±noise_q_V per neuron (advances the LFSRs)."""
        ones = np.zeros(self.lines, dtype=np.int64)
        for _ in range(cfg.noise_pulses):
            ones += self._lfsr.pulse()
        return ((2 * ones - cfg.noise_pulses) * self.params.noise_q_V)[:n_out]

    def transfer(self, backward, connected):
        """Effective transfer of drive to sensed voltage: ΔV = drive @ T, shape (n_in, n_out).

        Without IR drop, T = G / (Σ_connected G + g_par) in voltage mode and T = G otherwise.
        With series resistance R per driven line (g_s = 1/R), KCL at driven line i,
        ``g_s (V_i − V'_i) = Σ_j G_ij (V'_i − V_j)``, and at the floating sensed line j,
        ``Σ_i G_ij (V'_i − V_j) = g_par V_j``, eliminate V' (diagonal) and leave an
        n_out x n_out system: ``[diag(D + g_par) − Gᵀ diag(1/(g_s + R_i)) G] V = Gᵀ diag(g_s/(g_s + R_i)) V_drive``.
        In current mode (virtual-ground sensing) T = diag(g_s/(g_s + R_i)) G. Disconnected
        lines neither drive nor load. Cached per (direction, connected lines).
        """
        p = self.params
        connected = np.asarray(connected, dtype=bool)
        key = (bool(backward), connected.tobytes())
        cache = self._transfer_cache
        if key in cache:
            return cache[key]
        g = (self.g.T if backward else self.g) * connected[:, None]
        if p.ir_drop_ohm:
            g_s = 1e6 / p.ir_drop_ohm  # µS
            row = g.sum(axis=1)
            through = np.where(connected, g_s / (g_s + row), 0.0)
            if p.voltage_mode:
                a = np.diag(g.sum(axis=0) + p.g_par_uS) - g.T @ (g / (g_s + row)[:, None])
                t = np.linalg.solve(a, g.T * through[None, :]).T
            else:
                t = through[:, None] * g
        elif p.voltage_mode:
            denom = g.sum(axis=0) + p.g_par_uS
            if (denom <= 0).any():
                raise ValueError("voltage-mode normalisation: a sensed line has no connected conductance")
            t = g / denom
        else:
            t = g
        cache[key] = t
        return t

    # -- per-configuration constants ------------------------------------------------------------

    def _plan(self, cfg):
        last = self._last_plan
        if last is not None and last[0] is cfg:  # the hot path: the same configuration object
            return last[1]
        plan = self._cache.get(cfg)
        if plan is not None:
            self._last_plan = (cfg, plan)
            return plan
        if not isinstance(cfg, CoreConfig):
            raise TypeError(f"cfg must be a CoreConfig, not {type(cfg).__name__}")
        if (cfg.rows, cfg.cols) != (self.rows, self.cols):
            raise ValueError(f"cfg is for a {cfg.rows}x{cfg.cols} core, but g_uS is {self.rows}x{self.cols}")
        p = self.params
        g = self.g.T if cfg.backward else self.g  # (n_in, n_out)
        n_in, n_out = g.shape
        modes = np.array([int(m) for m in cfg.line_modes[:n_in]])
        connected = np.ones(n_in, bool) if cfg.backward else modes != LineMode.OFF
        # Read noise is referred through the unloaded normalisation (first order under IR drop).
        noise_denom = (connected.astype(np.float64) @ g) + p.g_par_uS if p.voltage_mode else np.ones(n_out)
        if p.voltage_mode and (noise_denom <= 0).any():
            raise ValueError("voltage-mode normalisation: a sensed line has no connected conductance")
        if p.ir_drop_ohm:
            g = self.transfer(cfg.backward, connected)  # the solve includes the normalisation
            denom = np.ones(n_out)
        else:
            denom = noise_denom
        pulses = np.array(pulses_per_phase(cfg), dtype=np.float64)
        if p.droop and p.multi_sampling:
            k = np.arange(int(pulses.max()))
            decay = (1.0 - p.droop) ** k
            n_eff = np.array([decay[: int(n)].sum() for n in pulses])
            n_eff2 = np.array([(decay[: int(n)] ** 2).sum() for n in pulses])
        else:
            n_eff, n_eff2 = pulses, pulses
        # Read noise: multi-sampling shares one draw per phase (2 per bit) among the phase's
        # samples; otherwise every sample draws its own.
        shared = (n_eff**2).sum() if p.multi_sampling else pulses.sum()
        read_var = 2.0 * shared * connected.sum() * p.read_noise_uS**2
        ktc_var = 2.0 * n_eff2.sum() * p.ktc_noise_V**2
        plan = {
            "g": g,
            "n_in": n_in,
            "n_out": n_out,
            "scale": p.sample_gain * p.v_read_V * self.column_gain[:n_out] / denom,
            "n_eff": n_eff,
            "read_sd": np.sqrt(read_var) * p.sample_gain * p.v_read_V * self.column_gain[:n_out] / noise_denom,
            "noise_scale": p.sample_gain * p.v_read_V * self.column_gain[:n_out] / noise_denom,
            "ktc_sd": np.sqrt(ktc_var) * p.sample_gain * self.column_gain[:n_out],
            "mask": np.asarray(cfg.mask[:n_out], dtype=bool),
        }
        plan["max_count"] = cfg.max_count
        plan["all_active"] = bool(plan["mask"].all())
        plan["any_active"] = bool(plan["mask"].any())
        plan["noise_sd"] = np.hypot(plan["read_sd"], plan["ktc_sd"])
        plan["noisy"] = bool(p.read_noise_uS or p.ktc_noise_V)
        plan["threshold"] = self.threshold_V[:n_out]
        plan["q_pos"], plan["q_neg"] = -self.q_pos[:n_out], -self.q_neg[:n_out]  # negated: see _count
        plan["cds"] = self.cds_V[:n_out]
        plan["drive_gain"] = (2.0 * cfg.pulse_mult) * cfg.polarity[:n_in].astype(np.float64)
        # Ideal parameters keep float64 (bit-identity with the exact model); with any
        # non-ideality on, float32 products and noise are far below the modelled noise.
        plan["fast32"] = not p.ideal
        if plan["fast32"]:
            # The per-column scale folded into the conductances: one product instead of two.
            plan["g32"] = (g * plan["scale"]).astype(np.float32)
            plan["noise_sd32"] = plan["noise_sd"].astype(np.float32)
            plan["drive_gain32"] = plan["drive_gain"].astype(np.float32)
            plan["cds32"] = plan["cds"].astype(np.float32)
            plan["threshold"] = plan["threshold"].astype(np.float32)
            plan["q_pos"] = plan["q_pos"].astype(np.float32)
            plan["q_neg"] = plan["q_neg"].astype(np.float32)
            plan["r_pos"], plan["r_neg"] = 1.0 / plan["q_pos"], 1.0 / plan["q_neg"]  # negated reciprocals
            plan["offset32"] = plan["cds32"] - plan["threshold"]  # integ + offset = the residue u
        # The fused float32 path of mvm/mvm_batch: linear closed form, count mode, one call each.
        plan["fused"] = bool(
            plan["fast32"]
            and p.mode == ConversionMode.COUNT
            and p.integrator_sat_V is None
            and not p.vneg_error
            and not p.droop
            and not cfg.noise_pulses
            and cfg.max_count > 0
        )
        lo, hi = cfg.in_range
        plan["in_lo"], plan["in_hi"] = lo, hi
        self._cache[cfg] = plan
        self._last_plan = (cfg, plan)
        return plan

    def effective_inputs(self, cfg, x):
        """Per-line drive, bits and phases folded: (Σ_b n_eff_b (p_A + p_B), Σ_b n_eff_b [p = -1]).

        The first is the line's linear drive (2·M·x for an ideal single-sample pulse
        train); the second counts negatively driven samples, which the vneg error scales.
        """
        plan = self._plan(cfg)
        codes = encode_phases(cfg, x).astype(np.float64)[:, :, : plan["n_in"]]  # (nmag, 2, n_in)
        weights = plan["n_eff"][:, None, None]
        drive = (weights * codes).sum(axis=(0, 1))
        negative = (weights * (codes < 0)).sum(axis=(0, 1))
        return drive, negative

    # -- transaction-level MVM -----------------------------------------------------------------

    def _input(self, plan, cfg, x, name="x"):
        """``x`` validated: the full check once per shape/dtype, then a range check only."""
        if (
            type(x) is np.ndarray
            and x.dtype.kind in "iu"
            and x.shape[-1:] == (plan["n_in"],)
            and x.ndim <= 2
            and x.size
            and plan["in_lo"] <= x.min()
            and x.max() <= plan["in_hi"]
        ):
            return x
        return check_input(cfg, x, name=name)

    def integrate(self, cfg, x, rng=None):
        """Integrator of every sensed neuron after one vector (before conversion), volts.

        Closed form: one product per linear term plus output-referred Gaussian noise (exact
        for Gaussian cell and sample noise). With integrator rails configured the phases
        are stepped one by one instead (:meth:`integrate_phases`), since clipping is not linear.
        """
        plan = self._plan(cfg)
        x = self._input(plan, cfg, x)
        if self.params.integrator_sat_V is not None:
            return self.integrate_phases(cfg, x, rng)[0]
        p = self.params
        if p.vneg_error == 0 and not p.droop:
            # Padding lines backward drive ±1 in opposite phases: they cancel exactly.
            if plan["fast32"]:
                integ = np.multiply(x, plan["drive_gain32"], dtype=np.float32) @ plan["g32"]
                integ += plan["cds32"]
            else:
                integ = ((x * plan["drive_gain"]) @ plan["g"]) * plan["scale"] + plan["cds"]
        else:
            drive, negative = self.effective_inputs(cfg, x)
            linear = drive @ plan["g"] + p.vneg_error * (negative @ plan["g"])
            integ = linear * plan["scale"] + plan["cds"]
        if plan["noisy"]:
            if rng is None:
                raise ValueError("rng is required when read or kT/C noise is on (per-activation draws)")
            noise = standard_normal32(rng, (plan["n_out"],))
            noise *= plan["noise_sd32"]
            integ += noise
        if cfg.noise_pulses:
            integ = integ + self._noise_pulses(cfg, plan["n_out"])
        return integ

    def integrate_phases(self, cfg, x, rng=None):
        """Step bit by bit, phase by phase, sample by sample (rails, droop, per-sample noise).

        Returns ``(integ, rail_clips)``. Slower; it is the reference the closed form is
        checked against and the only path that models integrator saturation.
        """
        x = check_input(cfg, x)
        plan = self._plan(cfg)
        p = self.params
        rng = generator_of(rng)
        n_in, n_out = plan["n_in"], plan["n_out"]
        g = plan["g"]
        codes = encode_phases(cfg, x)[:, :, :n_in].astype(np.float64)
        integ = self.cds_V[:n_out].copy()
        rail = p.integrator_sat_V
        clips = 0
        connected = int(np.count_nonzero(codes[0, 0]) if not cfg.backward else n_in)
        for b, n in enumerate(pulses_per_phase(cfg)):
            for phase in range(2):
                drv = codes[b, phase]
                clean = np.where(drv < 0, drv * (1.0 - p.vneg_error), drv) @ g
                v = clean
                if p.read_noise_uS and rng is None:
                    raise ValueError("rng is required when read noise is on")
                v = clean * plan["scale"]
                for k in range(n):
                    if p.read_noise_uS and (k == 0 or not p.multi_sampling):
                        noise = rng.standard_normal(n_out) * p.read_noise_uS * np.sqrt(connected)
                        v = clean * plan["scale"] + noise * plan["noise_scale"]
                    s = v * ((1.0 - p.droop) ** k if p.multi_sampling else 1.0)
                    if p.ktc_noise_V:
                        if rng is None:
                            raise ValueError("rng is required when kT/C noise is on")
                        s = s + rng.standard_normal(n_out) * p.ktc_noise_V * p.sample_gain * self.column_gain[:n_out]
                    integ = integ + s
                    if rail is not None:
                        over = np.abs(integ) > rail
                        if over.any():
                            clips += int(over.sum())
                            integ = np.clip(integ, -rail, rail)
        if cfg.noise_pulses:
            integ = integ + self._noise_pulses(cfg, n_out)
        self.rail_clips += clips
        return integ, clips

    def convert(self, cfg, integ):
        """Conversion of integrator values ``integ`` (n_out) in the configured mode."""
        p = self.params
        plan = self._plan(cfg)
        n_out = plan["n_out"]
        mask = plan["mask"]
        u = integ - plan["threshold"]
        q_pos, q_neg = plan["q_pos"], plan["q_neg"]
        if p.mode == ConversionMode.TERNARY:
            ternary = np.where(u > p.ternary_threshold_V, 1, np.where(u < -p.ternary_threshold_V, -1, 0))
            ternary = np.where(mask, ternary, 0).astype(np.int8)
            zeros = np.zeros(n_out, dtype=np.int64)
            return PhysicalResult(
                sign=(ternary < 0).astype(np.uint8),
                count=zeros,
                sat=zeros.astype(bool),
                integ=integ,
                steps_override=0,
                ternary=ternary,
            )
        if p.mode == ConversionMode.SAR:
            return self._convert_sar(cfg, u, mask)
        sign, count, sat = _count(u, q_pos, q_neg, cfg.max_count, mask, plan["all_active"])
        return PhysicalResult(sign=sign, count=count, sat=sat, integ=integ)

    def _convert_sar(self, cfg, u, mask):
        """Non-restoring binary search (neurram-chip.md §3.5): the quantum halves each step.

        Step 0 takes the sign; step s >= 1 moves the residue by Δ_0/2^(s-1) towards zero
        according to its current sign and records bit = (residue still has the initial
        sign). ``out_bits - 1`` magnitude bits, MSB first, are returned in ``count``.
        """
        n_out = u.shape[0]
        nbits = max(0, cfg.out_bits - 1)
        negative = u <= 0
        residue = u.copy()
        code = np.zeros(n_out, dtype=np.int64)
        q0 = np.where(negative, self.q_neg[:n_out], self.q_pos[:n_out]) * (1 << max(0, nbits - 1))
        for s in range(nbits):
            step = q0 / (1 << s)
            residue = residue - np.where(residue > 0, step, -step)
            bit = (residue > 0) != negative
            code = (code << 1) | bit.astype(np.int64)
        sign = np.where(mask, negative, False).astype(np.uint8)
        code = np.where(mask, code, 0)
        return PhysicalResult(sign=sign, count=code, sat=np.zeros(n_out, dtype=bool), integ=u, steps_override=nbits)

    def _fused(self, plan, xs, rng, *, integ_out=False):
        """(sign, count, sat) of inputs ``xs`` (..., n_in) on the fused path, and the
        integrator values if ``integ_out`` (else None)."""
        u, scratch = _workspace(plan, (*xs.shape[:-1], plan["n_out"]))
        np.matmul(np.multiply(xs, plan["drive_gain32"], dtype=np.float32), plan["g32"], out=u)
        if plan["noisy"]:
            if rng is None:
                raise ValueError("rng is required when read or kT/C noise is on (per-activation draws)")
            noise = standard_normal32(rng, u.shape)
            noise *= plan["noise_sd32"]
            u += noise
        integ = None
        if integ_out:
            integ = u + plan["cds32"]
            np.subtract(integ, plan["threshold"], out=u)
        else:
            u += plan["offset32"]
        sign, count, sat = _count32(u, plan["r_pos"], plan["r_neg"], plan["max_count"], scratch)
        if not plan["all_active"]:
            mask = plan["mask"]
            sign, count, sat = (sign & mask).view(np.uint8), np.where(mask, count, 0), sat & mask
        return sign, count, sat, integ

    def mvm(self, cfg, x, rng=None):
        """One vector: integrate (closed form, or stepped when rails are on) and convert.

        Rail clips of the vector are reported in ``PhysicalResult.rail_clips`` and added to
        :attr:`rail_clips`.
        """
        plan = self._plan(cfg)
        if plan["fused"]:
            sign, count, sat, integ = self._fused(plan, self._input(plan, cfg, x), rng, integ_out=True)
            return PhysicalResult(sign=sign, count=count, sat=sat, integ=integ)
        if self.params.integrator_sat_V is None:
            return self.convert(cfg, self.integrate(cfg, x, rng))
        integ, clips = self.integrate_phases(cfg, self._input(self._plan(cfg), cfg, x), rng)
        return dataclasses.replace(self.convert(cfg, integ), rail_clips=clips)

    def mvm_batch(self, cfg, xs, rng=None):
        """A batch of vectors (rows of ``xs``): one matrix product; returns (sign, count, sat) arrays.

        Count mode only (the speed path); other modes loop over :meth:`mvm`.
        """
        xs = np.asarray(xs)
        if xs.ndim != 2:
            raise ValueError(f"xs must be 2-D (vectors, n_in), not shape {xs.shape}")
        p = self.params
        if (
            p.mode != ConversionMode.COUNT
            or p.integrator_sat_V is not None
            or p.vneg_error
            or p.droop
            or cfg.noise_pulses
        ):
            results = [self.mvm(cfg, x, rng) for x in xs]
            return (
                np.stack([r.sign for r in results]),
                np.stack([r.count for r in results]),
                np.stack([r.sat for r in results]),
            )
        plan = self._plan(cfg)
        xs = self._input(plan, cfg, xs, name="xs")
        if plan["fused"]:
            return self._fused(plan, xs, rng)[:3]
        drive = xs * plan["drive_gain"]
        integ = (drive @ plan["g"]) * plan["scale"] + plan["cds"]
        if plan["noisy"]:
            if rng is None:
                raise ValueError("rng is required when read or kT/C noise is on (per-activation draws)")
            integ += standard_normal32(rng, integ.shape) * plan["noise_sd"]
        sign, count, sat = _count(
            integ - plan["threshold"], plan["q_pos"], plan["q_neg"], cfg.max_count, plan["mask"], plan["all_active"]
        )
        return sign, count, sat


class _Helper:
    """One daemon thread that runs a job while the calling thread runs another.

    numpy releases the GIL inside BLAS products and large ufunc loops, so a 48-core chip
    step split in two halves runs on both cores of the machine. One caller at a time: a
    concurrent caller (or a forked child, whose copy has no thread) runs both jobs itself.
    """

    _instance = None

    def __init__(self):
        self.pid = os.getpid()
        self._jobs = queue.SimpleQueue()
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, name="cimdv-model-helper", daemon=True).start()

    @classmethod
    def get(cls):
        if cls._instance is None or cls._instance.pid != os.getpid():
            cls._instance = cls()
        return cls._instance

    def _serve(self):
        while True:
            job, reply = self._jobs.get()
            try:
                job()
            except Exception as exc:  # handed back and re-raised in the caller
                reply.put(exc)
            else:
                reply.put(None)

    def run_both(self, here, there):
        """Run ``there`` on the helper and ``here`` on the caller; return when both are done."""
        if not self._lock.acquire(blocking=False):
            there()
            here()
            return
        try:
            reply = queue.SimpleQueue()
            self._jobs.put((there, reply))
            try:
                here()
            finally:
                failure = reply.get()
            if failure is not None:
                raise failure
        finally:
            self._lock.release()


#: Stacks at least this large (float32 weight bytes) split their product over two threads by
#: default; below it the hand-off (~20 µs) costs more than the second core saves.
THREAD_MIN_BYTES = 4 << 20


class CoreStack:
    """Several physical cores stepped together: one batched product for all of them.

    The chip-level speed path (a 48-core chip step is one call). Every core keeps its own
    conductances and static draws; they share one configuration. Count mode without
    rails, droop or vneg error (the linear closed form), like :meth:`PhysicalCore.mvm_batch`.

    Parameters
    ----------
    cores : sequence of PhysicalCore
        Cores of one geometry.
    threads : int or None
        1: every product on the calling thread. 2: the cores' products split in two halves,
        one on a helper thread (results are identical: each core's product is the same
        single-threaded BLAS call). None (default): 2 when the machine has two or more CPUs
        and the stack holds at least :data:`THREAD_MIN_BYTES` of weights, else 1.
    """

    def __init__(self, cores, *, threads=None):
        cores = list(cores)
        if not cores or not all(isinstance(c, PhysicalCore) for c in cores):
            raise TypeError("cores must be a non-empty sequence of PhysicalCore")
        shapes = {c.g.shape for c in cores}
        if len(shapes) != 1:
            raise ValueError(f"cores must share one geometry, not {sorted(shapes)}")
        params = {c.params for c in cores}
        if len(params) != 1:
            raise ValueError("cores must share one PhysicalParams")
        p = cores[0].params
        if p.mode != ConversionMode.COUNT or p.integrator_sat_V is not None or p.vneg_error or p.droop:
            raise ValueError("CoreStack supports count mode without rails, droop or vneg error")
        if threads is None:
            big = 4 * len(cores) * cores[0].g.size >= THREAD_MIN_BYTES
            threads = 2 if big and len(cores) > 1 and (os.cpu_count() or 1) >= 2 else 1
        if isinstance(threads, bool) or threads not in (1, 2):
            raise ValueError(f"threads must be 1, 2 or None, not {threads!r}")
        self.cores = cores
        self.threads = threads
        self._cfg = None

    def _stack(self, cfg):
        if self._cfg is cfg:
            return self._stacked
        plans = [c._plan(cfg) for c in self.cores]
        keys = ("noise_sd", "threshold", "q_pos", "q_neg", "cds")
        stacked = {k: np.stack([np.asarray(pl[k], dtype=np.float32) for pl in plans])[:, None, :] for k in keys}
        # Non-ideal: multiply by reciprocal quanta (_count32); ideal: divide (_count, exact limit).
        stacked["fast"] = plans[0]["fast32"] and cfg.max_count > 0
        stacked["r_pos"], stacked["r_neg"] = 1.0 / stacked["q_pos"], 1.0 / stacked["q_neg"]
        stacked["offset"] = stacked["cds"] - stacked["threshold"]
        self._stacked = {
            **stacked,
            "g": np.stack([pl["g"] * pl["scale"] for pl in plans]).astype(np.float32),
            "drive_gain": plans[0]["drive_gain"].astype(np.float32),
            "mask": plans[0]["mask"],
            "all_active": plans[0]["all_active"],
            "noisy": plans[0]["noisy"],
            "n_in": plans[0]["n_in"],
            "in_lo": plans[0]["in_lo"],
            "in_hi": plans[0]["in_hi"],
        }
        self._cfg = cfg
        return self._stacked

    def mvm(self, cfg, xs, rng=None):
        """``xs``: (cores, n_in) or (cores, batch, n_in) inputs; returns (sign, count, sat)."""
        s = self._stack(cfg)
        xs = np.asarray(xs)
        squeeze = xs.ndim == 2
        if squeeze:
            xs = xs[:, None, :]
        if xs.ndim != 3 or xs.shape[0] != len(self.cores) or xs.shape[2] != s["n_in"]:
            raise ValueError(f"xs must be (cores={len(self.cores)}, [batch,] {s['n_in']}), not shape {xs.shape}")
        if not (xs.dtype.kind in "iu" and xs.size and s["in_lo"] <= xs.min() and xs.max() <= s["in_hi"]):
            check_input(cfg, xs.reshape(-1, s["n_in"]), name="xs")
        if s["noisy"] and rng is None:
            raise ValueError("rng is required when read or kT/C noise is on (per-activation draws)")
        drive = np.multiply(xs, s["drive_gain"], dtype=np.float32)
        g = s["g"]
        integ, scratch = _workspace(s, (len(self.cores), xs.shape[1], g.shape[2]))
        noise = []

        def draw():  # one piece, in both modes: the realisation does not depend on ``threads``
            if s["noisy"]:
                noise.append(standard_normal32(rng, integ.shape))

        if self.threads == 2:
            # Only the products run in parallel: numpy's small element-wise calls would pass
            # the GIL back and forth and cost more than they gain.
            half = len(self.cores) // 2

            def here():
                np.matmul(drive[:half], g[:half], out=integ[:half])
                draw()

            _Helper.get().run_both(here, lambda: np.matmul(drive[half:], g[half:], out=integ[half:]))
        else:
            np.matmul(drive, g, out=integ)
            draw()
        if noise:
            noise[0] *= s["noise_sd"]
            integ += noise[0]
        if s["fast"]:
            integ += s["offset"]
            sign, count, sat = _count32(integ, s["r_pos"], s["r_neg"], cfg.max_count, scratch)
        else:
            u = (integ + s["cds"]) - s["threshold"]  # the ideal limit's order of rounding
            sign, count, sat = _count(u, s["q_pos"], s["q_neg"], cfg.max_count, s["mask"], True)
        if not s["all_active"]:
            mask = s["mask"]
            sign, count, sat = (sign & mask).view(np.uint8), np.where(mask, count, 0), sat & mask
        if squeeze:
            return sign[:, 0], count[:, 0], sat[:, 0]
        return sign, count, sat


class PhysicalMacroState(MacroBus):
    """Cycle-level macro on the physical model: what the cocotb responder runs with noise on.

    It answers the operations of docs/analog-boundary.md like
    :class:`cimdv.model.exact.MacroState` (same ``apply`` API), with the physics of a
    :class:`PhysicalCore`: voltage-mode sensing of the lines each SAMPLE connects, vneg
    error, read noise per SAMPLE (the contract re-drives the lines, i.e. activates the array,
    on every SAMPLE), kT/C noise per INTEGRATE, CDS residual at INIT, comparator offsets,
    asymmetric mismatched decrements, integrator rails after every INTEGRATE, LFSR NOISE.
    (Droop belongs to multi-sampling a held line, which this contract does not do.)

    Determinism: every INIT starts a new transaction whose noise comes from a generator
    seeded with ``(seed, transaction index)``. Two states built from one core and one seed,
    driven through the same operations, are bit-identical — which is how a noisy RTL run
    keeps an exact scoreboard: the reference steps its own copy with :func:`run_sequence`.

    Parameters
    ----------
    core : PhysicalCore
        Conductances, parameters and static draws (shared, read only).
    seed : int
        Seed of the per-transaction noise.
    """

    def __init__(self, core, *, seed=0):
        if not isinstance(core, PhysicalCore):
            raise TypeError(f"core must be a PhysicalCore, not {type(core).__name__}")
        self.core = core
        self.seed = int(seed)
        self.transactions = 0
        self.rows, self.cols, self.lines = core.rows, core.cols, core.lines
        self._integ = np.zeros(self.lines)
        self._sampled = np.zeros(self.lines)
        self._backward = False
        self._rng = np.random.default_rng([self.seed, 0])
        self._lfsr = _LfsrBank(core._lfsr.seed, self.lines)
        self._held = None  # (drive bits, held line voltage, re-samples so far) under multi-sampling
        self.rail_clips = 0

    @property
    def integrator(self):
        """numpy.ndarray: Copy of the integrators (``lines`` entries, integrator volts)."""
        return self._integ.copy()

    def _n_out(self):
        return self.rows if self._backward else self.cols

    def init(self, backward=None):
        if backward is not None:
            self._backward = bool(backward)
        self._rng = np.random.default_rng([self.seed, self.transactions])
        self.transactions += 1
        # Every neuron gets its residual, whatever the direction: INIT must not depend on state
        # left over from the previous vector.
        self._integ = self.core.cds_V.copy()
        self._sampled[:] = 0.0
        self._held = None

    def sample(self, codes, backward):
        """SAMPLE with drive ``codes`` (one of -1/0/+1 per line): latch every sensed line."""
        self._backward = bool(backward)
        core, p = self.core, self.core.params
        g = core.g.T if self._backward else core.g  # (driven lines, sensed lines)
        n_in, n_out = g.shape
        codes = np.asarray(codes)
        if codes[n_in:].any():
            raise ValueError("codes drive a line that does not exist in this direction")
        drive = codes[:n_in].astype(np.float64)
        connected = np.ones(n_in) if self._backward else (drive != 0).astype(np.float64)
        levels = np.where(drive < 0, drive * (1.0 - p.vneg_error), drive)
        if p.ir_drop_ohm:
            t = core.transfer(self._backward, connected.astype(bool))
            v = levels @ t
            if p.read_noise_uS:  # referred through the unloaded normalisation (a first-order term)
                denom = connected @ g + p.g_par_uS if p.voltage_mode else 1.0
                v = v + self._rng.standard_normal(n_out) * p.read_noise_uS * np.sqrt(connected.sum()) / denom
            self._sampled[:] = 0.0
            self._sampled[:n_out] = v * (p.sample_gain * p.v_read_V * core.column_gain[:n_out])
            return
        v = levels @ g
        if p.read_noise_uS:
            v = v + self._rng.standard_normal(n_out) * p.read_noise_uS * np.sqrt(connected.sum())
        if p.voltage_mode:
            denom = connected @ g + p.g_par_uS
            if (denom <= 0).any():
                raise ValueError("voltage-mode SAMPLE: a sensed line has no connected conductance")
            v = v / denom
        self._sampled[:] = 0.0
        self._sampled[:n_out] = v * (p.sample_gain * p.v_read_V * core.column_gain[:n_out])

    def integrate(self):
        p = self.core.params
        n_out = self._n_out()
        self._integ[:n_out] += self._sampled[:n_out]
        if p.ktc_noise_V:
            self._integ[:n_out] += (
                self._rng.standard_normal(n_out) * p.ktc_noise_V * p.sample_gain * self.core.column_gain[:n_out]
            )
        rail = p.integrator_sat_V
        if rail is not None:
            over = np.abs(self._integ) > rail
            if over.any():
                self.rail_clips += int(over.sum())
                np.clip(self._integ, -rail, rail, out=self._integ)

    def noise(self):
        self._integ += (2.0 * self._lfsr.pulse() - 1.0) * self.core.params.noise_q_V

    def compare(self):
        out = self._integ > self.core.threshold_V
        out[self._n_out() :] = False
        return out

    def decrement(self, dec_up):
        up = np.asarray(dec_up, dtype=bool)
        self._integ += np.where(up, self.core.q_neg, -self.core.q_pos)

    def _sample_bits(self, drive_bits):
        """SAMPLE from the raw ``drive`` value; under multi-sampling an unchanged drive re-samples."""
        p = self.core.params
        held = self._held
        if p.multi_sampling and held is not None and held[0] == drive_bits:
            # Re-sample of the held line: no new activation, the voltage droops.
            self._held = (drive_bits, held[1], held[2] + 1)
            self._sampled[:] = held[1] * (1.0 - p.droop) ** (held[2] + 1)
            return
        self.sample(self._codes(drive_bits), self._backward)
        self._held = (drive_bits, self._sampled.copy(), 0)

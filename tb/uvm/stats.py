"""The statistical check of a noisy macro: count errors against the ideal model, with stated tolerances.

A noisy physical macro (:class:`~cimdv.model.physical.PhysicalMacroState` with read and kT/C noise) draws
its own noise; the predictor cannot share that realisation, so its counts are compared with the ideal
(noise-free) model statistically. This module is pure numpy (no simulator) so its tolerances can be
tested by Monte Carlo (``tests/unit/test_uvm_stats.py``).

The noise model (model/physical.py, current mode, ``multi_sampling=False``)
-------------------------------------------------------------------------
Every SAMPLE is one array activation: each connected line's cell adds independent read noise
N(0, σ_r²) (µS, times ``v_read``), so a neuron's sample gets N(0, n_connected·σ_r²); every INTEGRATE adds
kT/C noise N(0, σ_k²) (times ``sample_gain``). A vector runs ``2·Σ_b N_b`` SAMPLE+INTEGRATE pairs
(``N_b = pulses_per_phase``), so the integrator at the sign compare is the ideal value ``u`` plus
N(0, σ²) with

    σ² = σ_r²·v_read²·sample_gain²·Σ_samples n_connected + σ_k²·sample_gain²·2·Σ_b N_b,

independent across neurons (different cells, different draws) and vectors (fresh draws).

The count of a residue v = u + noise (exact-model rules, quantum q, saturation at M = MAX_COUNT) is the
signed level c(v) = +k for (k-1)q < v <= kq (k < M), -k for -kq < v <= -(k-1)q, ±M beyond. So the
distribution of every neuron's signed count is known exactly: P(level) from the normal CDF at the
2M-1 edges j·q, j = -(M-1)..M-1 (:func:`count_distribution`).

The check (:class:`CountErrorCheck`)
-----------------------------------
For N neurons (one core, all its noisy vectors) with DUT counts c_i, ideal counts c*_i (the exact model)
and the exact per-neuron moments of c_i - c*_i: the mean error ē and the mean squared error S must lie
within ``z_limit`` standard errors of their expectations:

    |ē - E[ē]| <= z·sqrt(Σ Var e_i)/N,      |S - E[S]| <= z·sqrt(Σ Var e_i²)/N,   z = 5.

Both are means of N independent bounded terms, so by the central limit theorem they are normal to a
good approximation at N >= 100 (the checker refuses fewer): a correct macro fails one of them with
probability about 2·5.7e-7 per core (the unit test runs the check on hundreds of seeded realisations and
sees none). For orientation, with s = σ/q >= 0.5 and no saturation, E[ē] ~ 0 and RMS = sqrt(S) ~
sqrt(s² + 1/6): the noise itself plus two uniform quantisation errors (the DUT's and the ideal
model's, 1/12 each). A bias of b LSB (an offset of b·q at INIT) moves ē by ~b; with s = 1.5 and N = 128
the mean tolerance is 5·1.55/sqrt(128) ~ 0.7 LSB, so a bias of 2 LSB fails it.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from cimdv.model.encoding import encode_phases, pulses_per_phase

__all__ = ["MIN_SAMPLES", "Z_LIMIT", "integrator_sigma", "count_distribution", "CountErrorCheck", "CountErrorStats"]

#: Standard errors a statistic may lie from its expectation (two-sided false-alarm ~5.7e-7 each).
Z_LIMIT = 5.0
#: Fewest neurons a verdict is given on (the normal approximation of the two means).
MIN_SAMPLES = 100

_erf = np.frompyfunc(math.erf, 1, 1)


def integrator_sigma(cfg, x, *, read_noise, ktc_noise, v_read=1.0, sample_gain=1.0):
    """σ of the noise on every neuron's integrator at the sign compare, for one vector ``x``.

    Parameters
    ----------
    cfg : CoreConfig
    x : array_like of int
        The vector (``cfg.n_in`` elements).
    read_noise : float
        σ_r of every connected cell per activation (µS, ``PhysicalParams.read_noise_uS``).
    ktc_noise : float
        σ_k per sample (integrator volts, ``PhysicalParams.ktc_noise_V``).
    v_read, sample_gain : float
        ``PhysicalParams.v_read_V`` and ``sample_gain``.
    """
    for name, value in (("read_noise", read_noise), ("ktc_noise", ktc_noise)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, not {value!r}")
    codes = encode_phases(cfg, x)[:, :, : cfg.n_in]
    pulses = pulses_per_phase(cfg)
    # Backward every line is connected whatever its drive (model/physical.py PhysicalMacroState.sample).
    per_phase = [cfg.n_in, cfg.n_in] if cfg.backward else None
    connected = 0
    for b, n in enumerate(pulses):
        counts = per_phase or [int(np.count_nonzero(codes[b, phase])) for phase in (0, 1)]
        connected += n * sum(counts)
    var = (read_noise * v_read * sample_gain) ** 2 * connected + (ktc_noise * sample_gain) ** 2 * 2 * sum(pulses)
    return math.sqrt(var)


def count_distribution(u, sigma, q, max_count):
    """Levels and probabilities of the signed count of residues ``u + N(0, sigma²)``.

    Parameters
    ----------
    u : array_like of float
        Ideal residues (integrator minus threshold), one per neuron.
    sigma : float or array_like
        Noise σ (same units as ``u``), > 0.
    q : float
        The decrement quantum, > 0.
    max_count : int
        MAX_COUNT (>= 1: a sign-only conversion has no count to check).

    Returns
    -------
    levels : numpy.ndarray, shape (2M,)
        ``-M .. -1, 1 .. M``.
    prob : numpy.ndarray, shape (len(u), 2M)
        P(signed count = level) per neuron.
    """
    if not isinstance(max_count, int | np.integer) or max_count < 1:
        raise ValueError(f"max_count must be an int >= 1, not {max_count!r}")
    if not q > 0:
        raise ValueError(f"q must be > 0, not {q!r}")
    u = np.asarray(u, dtype=np.float64).reshape(-1)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), u.shape)
    if not (sigma > 0).all():
        raise ValueError("sigma must be > 0")
    m = int(max_count)
    levels = np.concatenate([np.arange(-m, 0), np.arange(1, m + 1)])
    edges = q * np.arange(-(m - 1), m, dtype=np.float64)
    z = (edges[None, :] - u[:, None]) / (sigma[:, None] * math.sqrt(2.0))
    cdf = 0.5 * (1.0 + _erf(z).astype(np.float64))
    cdf = np.concatenate([np.zeros((u.size, 1)), cdf, np.ones((u.size, 1))], axis=1)
    return levels, np.clip(np.diff(cdf, axis=1), 0.0, 1.0)


@dataclass(frozen=True)
class CountErrorStats:
    """The verdict of one :class:`CountErrorCheck` (count errors in LSB, i.e. counts)."""

    n: int
    sigma_lsb: float
    mean: float
    mean_expected: float
    mean_tol: float
    rms: float
    rms_lo: float
    rms_hi: float
    passed: bool

    def describe(self):
        return (
            f"N={self.n}, noise {self.sigma_lsb:.2f} LSB: count error mean {self.mean:+.3f} "
            f"(expected {self.mean_expected:+.3f} ± {self.mean_tol:.3f}), RMS {self.rms:.3f} "
            f"(expected {self.rms_lo:.3f}..{self.rms_hi:.3f})"
        )


@dataclass
class CountErrorCheck:
    """Accumulates noisy counts against the ideal model and decides mean and RMS of the error.

    Parameters
    ----------
    z_limit : float
        Tolerance in standard errors of each statistic (default :data:`Z_LIMIT`).
    """

    z_limit: float = Z_LIMIT
    _err: list = field(default_factory=list)
    _mean: list = field(default_factory=list)
    _var: list = field(default_factory=list)
    _m2: list = field(default_factory=list)
    _var2: list = field(default_factory=list)
    _sigma_lsb: list = field(default_factory=list)

    def add(self, got, ideal, u, sigma, q, max_count):
        """One vector: DUT signed counts ``got``, ideal signed counts ``ideal``, ideal residues ``u``,
        noise ``sigma`` (scalar), quantum ``q``, ``max_count`` (the neurons must all be active)."""
        got = np.asarray(got, dtype=np.float64).reshape(-1)
        ideal = np.asarray(ideal, dtype=np.float64).reshape(-1)
        if got.shape != ideal.shape or got.size != np.size(u):
            raise ValueError(
                f"got, ideal and u must have one entry per neuron, not {got.size}, {ideal.size}, {np.size(u)}"
            )
        levels, prob = count_distribution(u, sigma, q, max_count)
        d = levels[None, :] - ideal[:, None]  # error of each level against the ideal count
        e1 = (prob * d).sum(axis=1)
        e2 = (prob * d**2).sum(axis=1)
        e4 = (prob * d**4).sum(axis=1)
        self._err.append(got - ideal)
        self._mean.append(e1)
        self._var.append(np.maximum(e2 - e1**2, 0.0))
        self._m2.append(e2)
        self._var2.append(np.maximum(e4 - e2**2, 0.0))
        self._sigma_lsb.append(np.full(got.size, sigma / q))

    @property
    def n(self):
        return int(sum(e.size for e in self._err))

    def result(self):
        """The :class:`CountErrorStats` of everything added (ValueError if nothing was)."""
        if not self._err:
            raise ValueError("no samples were added")
        err = np.concatenate(self._err)
        n = err.size
        mean_exp = float(np.concatenate(self._mean).mean())
        mean_tol = self.z_limit * math.sqrt(float(np.concatenate(self._var).sum())) / n
        m2 = float((err**2).mean())
        m2_exp = float(np.concatenate(self._m2).mean())
        m2_tol = self.z_limit * math.sqrt(float(np.concatenate(self._var2).sum())) / n
        mean = float(err.mean())
        passed = abs(mean - mean_exp) <= mean_tol and abs(m2 - m2_exp) <= m2_tol
        return CountErrorStats(
            n=n,
            sigma_lsb=float(np.concatenate(self._sigma_lsb).mean()),
            mean=mean,
            mean_expected=mean_exp,
            mean_tol=mean_tol,
            rms=math.sqrt(m2),
            rms_lo=math.sqrt(max(m2_exp - m2_tol, 0.0)),
            rms_hi=math.sqrt(m2_exp + m2_tol),
            passed=passed,
        )

"""Static conductance errors of a programmed array: verify window, relaxation, defects.

These are drawn once, when an array is "programmed", from an explicit seed (per-activation
noise lives in :mod:`cimdv.model.physical`). Every term at 0 / None is ideal: the
conductances then equal their targets.

Terms (cim-golden-model.md §3.1, §3.6-3.7; neurram-chip.md §4.3-4.4, §7.2):

* write-verify acceptance window: an accepted cell lies uniformly within ±g_tol of its
  target (g_tol = 1 µS on NeuRRAM); "off" targets (below g_min) end uniformly in
  [0, g_min) — the RESET-only procedure stops anywhere below the threshold;
* relaxation: Gaussian N(0, σ_r(G, t)²) with σ_r from the fits at 1 s, 1 day and 2 days
  (:func:`cimdv.model.conductance.relaxation_sigma_uS`);
* defects: stuck-on cells (at ``g_stuck_on_uS``), unformed cells (stuck near 0), and leaky
  rows (every cell of the row at ``g_leaky_uS``); unformed and leaky rows are what the
  chip's software maps out (bad rows), so :func:`bad_rows` lists them for the mapper.

Physics does not allow a negative conductance, so relaxation draws below 0 are floored at
0 — counted in :attr:`ArrayRealisation.floored`, never silent.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np

from .conductance import relaxation_sigma_uS
from .params import Serialisable

__all__ = ["ArrayParams", "ArrayRealisation", "realise", "bad_rows"]


@dataclass(frozen=True)
class ArrayParams(Serialisable):
    """Static non-idealities of a programmed array; 0 or None means ideal.

    Parameters
    ----------
    g_tol_uS : float
        Half-width of the write-verify acceptance window (µS). NeuRRAM: 1.0.
    g_min_uS : float
        Targets below this are "off" cells, RESET-only, ending in [0, g_min) (µS).
    relax_time_s : float or None
        Time since programming for the relaxation fit (s); None: no relaxation.
    stuck_on_fraction : float
        Fraction of cells stuck at ``g_stuck_on_uS`` (never programmable).
    g_stuck_on_uS : float
        Conductance of a stuck-on cell (µS).
    unformed_fraction : float
        Fraction of rows that never formed (all cells ~0 µS, a bad row).
    leaky_rows : int
        Number of rows whose cells leak at ``g_leaky_uS`` (a bad row).
    g_leaky_uS : float
        Conductance of a cell of a leaky row (µS).
    """

    g_tol_uS: float = 0.0
    g_min_uS: float = 1.0
    relax_time_s: float | None = None
    stuck_on_fraction: float = 0.0
    g_stuck_on_uS: float = 40.0
    unformed_fraction: float = 0.0
    leaky_rows: int = 0
    g_leaky_uS: float = 10.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "relax_time_s":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{f.name} must be a number, not {value!r}")
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{f.name} must be finite and >= 0, not {value!r}")
        for name in ("stuck_on_fraction", "unformed_fraction"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name} must be <= 1, not {getattr(self, name)!r}")
        if not isinstance(self.leaky_rows, int):
            raise TypeError(f"leaky_rows must be an integer, not {self.leaky_rows!r}")


@dataclass(frozen=True, eq=False)
class ArrayRealisation:
    """Conductances of one programmed array and what happened to them."""

    g_uS: np.ndarray
    #: Relaxation draws that fell below 0 µS and were floored at 0.
    floored: int
    #: Cells stuck on.
    stuck_on: np.ndarray
    #: Rows that never formed, and rows that leak (bad rows the mapper must avoid).
    unformed_rows: np.ndarray
    leaky_rows: np.ndarray


def _check_targets(targets_uS):
    t = np.asarray(targets_uS)
    if t.ndim != 2 or t.size == 0:
        raise ValueError(f"targets_uS must be a non-empty 2-D array, not shape {t.shape}")
    if not np.issubdtype(t.dtype, np.number):
        raise TypeError(f"targets_uS must be numbers, not dtype {t.dtype}")
    t = t.astype(np.float64)
    if not np.isfinite(t).all():
        raise ValueError("targets_uS must be finite (NaN or infinite target found)")
    if (t < 0).any():
        raise ValueError(f"targets_uS must be >= 0 (negative target {t.min()!r} found)")
    return t


def realise(targets_uS, params=None, *, seed=0):
    """Draw the programmed (and relaxed) conductances of an array with ``targets_uS``.

    Parameters
    ----------
    targets_uS : array_like
        (rows, cols) target conductances, µS.
    params : ArrayParams
    seed : int
        The same seed gives the same array.

    Returns
    -------
    ArrayRealisation
    """
    t = _check_targets(targets_uS)
    p = ArrayParams() if params is None else params
    if not isinstance(p, ArrayParams):
        raise TypeError(f"params must be an ArrayParams, not {type(p).__name__}")
    rng = np.random.default_rng(seed)
    rows = t.shape[0]
    # Draws in a fixed order and shape whatever is enabled, so one seed means one array.
    u_window = rng.random(t.shape)
    z_relax = rng.standard_normal(t.shape)
    u_stuck = rng.random(t.shape)
    u_unformed = rng.random(rows)
    leaky_order = rng.permutation(rows)

    g = t.copy()
    if p.g_tol_uS:
        off = t < p.g_min_uS
        on_err = (2.0 * u_window - 1.0) * p.g_tol_uS
        g = np.where(off, u_window * p.g_min_uS, t + on_err)
    if p.relax_time_s is not None and p.relax_time_s > 0:
        g = g + z_relax * relaxation_sigma_uS(g, p.relax_time_s)
    # A window wider than g_min or a relaxation draw can reach below 0 µS: floored, and counted.
    below = g < 0
    floored = int(below.sum())
    g = np.where(below, 0.0, g)
    stuck = u_stuck < p.stuck_on_fraction
    g = np.where(stuck, p.g_stuck_on_uS, g)
    unformed = np.flatnonzero(u_unformed < p.unformed_fraction)
    if p.leaky_rows > rows:
        raise ValueError(f"leaky_rows ({p.leaky_rows}) exceeds the array's {rows} rows")
    leaky = np.sort(np.setdiff1d(leaky_order[: p.leaky_rows], unformed))
    g[unformed, :] = 0.0
    g[leaky, :] = p.g_leaky_uS
    return ArrayRealisation(g_uS=g, floored=floored, stuck_on=stuck, unformed_rows=unformed, leaky_rows=leaky)


def bad_rows(realisation):
    """Rows the mapper must skip (unformed and leaky), as a sorted tuple."""
    return tuple(int(r) for r in np.union1d(realisation.unformed_rows, realisation.leaky_rows))

"""Weights to RRAM conductances, conductance relaxation, and the layout of a layer on cores.

Pure Python + numpy. Four parts:

* **Relaxation** (:func:`relaxation_sigma_uS`): the spread of the relaxed conductance around its
  target, as a function of the target ``G`` and the time ``t`` since programming, from the
  published fits of NeuRRAM's Extended Data Fig. 3 (cim-golden-model.md §3.6-3.7).
* **Mapping** (:func:`map_weights` -> :class:`WeightMapping`): a weight matrix ``W`` (fan-in ``K``
  x outputs ``N``) and a bias to the target conductances of ``K + bias_rows`` differential row
  pairs, under NeuRRAM's ``"sign"`` or ``"offset"`` scheme (neurram-chip.md §1.6, §4.4).
* **Placement** (:func:`place`): a mapping padded into the driven lines of one core, skipping bad
  lines (neurram-chip.md §1.6, §2.2; docs/analog-boundary.md §3.1).
* **Splitting** (:func:`split_layer`): a layer whose fan-in does not fit one core cut into the
  fewest equal segments, bias shared across them (neurram-chip.md §6).

Conventions used throughout (all conductances in uS):

* Weight ``k`` of a mapping occupies rows ``2k`` (G+, :attr:`LineMode.POS`) and ``2k + 1`` (G-,
  :attr:`LineMode.NEG`); the ``bias_rows`` bias pairs follow the ``K`` weight pairs in the same
  layout. Both rows of a pair receive the same input code; the NEG line mode negates the second
  row's phase codes in hardware, so column ``j`` integrates ``sum_k x_k (G+_kj - G-_kj)``.
* The bias is in the units of ``x @ W`` with ``x`` the integer input codes: the ideal output is
  ``x @ W + b``. The bias rows are driven with the input code ``x_max`` (NeuRRAM: "the bias acts as
  the max input code"), so each of the ``bias_rows`` pairs carries the weight
  ``b / (bias_rows * x_max)``; driving all of them with ``x_max`` adds exactly ``b``.
* Nothing is clipped. Targets above ``g_max`` are kept (as NeuRRAM's software does) and counted
  (:attr:`WeightMapping.above_g_max`); non-zero targets below ``g_min`` are counted
  (:attr:`WeightMapping.below_g_min`); a mapping that would need a negative conductance raises.

The module imports nothing from ``cimdv.rtl`` or ``cimdv.tb``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .encoding import LineMode, _as_bool, _as_int

__all__ = [
    "RELAXATION_G_US",
    "RELAXATION_TIMES_S",
    "RELAXATION_FITS",
    "RELAXATION_COEFFS",
    "RELAXATION_FIT_MAX_ERROR_US",
    "RELAXATION_G_HI_US",
    "RELAXATION_ZERO_CROSSING_US",
    "SCHEMES",
    "OFF_TARGET_US",
    "WeightMapping",
    "relaxation_sigma_uS",
    "relaxation_poly_uS",
    "map_weights",
    "place",
    "split_layer",
]

# ---------------------------------------------------------------------------------------------
# Relaxation.

#: Conductances (uS) at which the published fits are tabulated.
RELAXATION_G_US = (0.0, 1.0, 5.0, 10.0, 20.0, 30.0, 40.0)

#: Times (s) of the published fits: 1 s, 1 day, 2 days after programming.
RELAXATION_TIMES_S = (1.0, 86400.0, 172800.0)

#: Relaxed-conductance sigma (uS) at :data:`RELAXATION_G_US`, per time (s).
#: Source: /work/shared/reference/cim-golden-model.md §3.7, "aihwkit Wan2022" columns: the 4th-order
#: polynomial fits of IBM aihwkit's ``ReRamWan2022NoiseModel`` (src/aihwkit/inference/noise/reram.py,
#: MIT licence) to Wan et al., Nature 608, 504-512 (2022), Extended Data Fig. 3, evaluated at these G.
RELAXATION_FITS = {
    1.0: (0.35, 0.72, 1.75, 2.26, 2.02, 1.53, 1.10),
    86400.0: (0.70, 1.22, 2.76, 3.72, 3.91, 3.37, 2.65),
    172800.0: (0.78, 1.26, 2.71, 3.66, 3.93, 3.37, 2.68),
}

#: Top of the tabulated range (uS) and the normalisation of the polynomial variable x = G / 40 uS.
RELAXATION_G_HI_US = 40.0

_FIT_ORDER = 4


def _fit_relaxation():
    """Least-squares 4th-order fits in ``x = G / 40 uS`` of each column of :data:`RELAXATION_FITS`."""
    x = np.asarray(RELAXATION_G_US) / RELAXATION_G_HI_US
    vander = np.vander(x, _FIT_ORDER + 1, increasing=True)
    coeffs, errors = {}, {}
    for t, sigma in RELAXATION_FITS.items():
        c, *_ = np.linalg.lstsq(vander, np.asarray(sigma), rcond=None)
        coeffs[t] = tuple(float(v) for v in c)
        errors[t] = float(np.max(np.abs(vander @ c - np.asarray(sigma))))
    return coeffs, errors


def _zero_crossings(coeffs):
    """Smallest real root above 0 uS of each polynomial (where it would turn negative)."""
    out = {}
    for t, c in coeffs.items():
        roots = np.polynomial.polynomial.polyroots(c)
        real = sorted(float(r.real) * RELAXATION_G_HI_US for r in roots if abs(r.imag) < 1e-9 and r.real > 0)
        out[t] = real[0] if real else math.inf
    return out


#: Own least-squares fit, per time (s): coefficients ``(c0, c1, c2, c3, c4)`` in uS of
#: ``sigma(G) = sum_i c_i (G / 40 uS)**i``, computed at import from :data:`RELAXATION_FITS`.
#: Max deviation from the table: :data:`RELAXATION_FIT_MAX_ERROR_US`.
RELAXATION_COEFFS, RELAXATION_FIT_MAX_ERROR_US = _fit_relaxation()

#: Per time (s), the conductance (uS) where the fitted polynomial first crosses zero. Every one is
#: above :data:`RELAXATION_G_HI_US` (about 48.0, 52.0 and 55.5 uS), so the polynomials are positive on
#: the whole tabulated range; the floor at 0 can only act when extrapolating (``above_fit="poly"``).
RELAXATION_ZERO_CROSSING_US = _zero_crossings(RELAXATION_COEFFS)

_LOG_T = np.log10(np.asarray(RELAXATION_TIMES_S))
_ABOVE_FIT = ("hold", "poly", "raise")


def _real_scalar(name, value):
    """Return ``value`` as a float; TypeError naming ``name`` unless it is a real (non-bool) number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__} ({value!r})")
    return float(value)


def _finite_scalar(name, value):
    v = _real_scalar(name, value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, not {v}")
    return v


def _float_array(name, value):
    """Return ``value`` as a float64 array; TypeError naming ``name`` unless real numeric."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real numeric array, not dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.size and not np.all(np.isfinite(arr)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name} must be finite; {name}{list(bad)} = {arr[bad]}")
    return arr


def relaxation_poly_uS(g_uS, t_fit_s):
    """Raw fitted polynomial of one fit time, without floor or range handling.

    Parameters
    ----------
    g_uS : array_like of float
        Conductances in uS (any value; this is the bare polynomial).
    t_fit_s : float
        One of :data:`RELAXATION_TIMES_S`.

    Returns
    -------
    numpy.ndarray
        ``sum_i c_i (g / 40)**i`` with the coefficients :data:`RELAXATION_COEFFS` ``[t_fit_s]``.

    Raises
    ------
    ValueError
        ``t_fit_s`` is not a fit time.
    """
    t = _real_scalar("t_fit_s", t_fit_s)
    if t not in RELAXATION_COEFFS:
        raise ValueError(f"t_fit_s must be one of {RELAXATION_TIMES_S}, not {t}")
    g = _float_array("g_uS", g_uS)
    return np.polynomial.polynomial.polyval(g / RELAXATION_G_HI_US, RELAXATION_COEFFS[t])


def relaxation_sigma_uS(g_uS, t_s, *, above_fit="hold"):
    """Standard deviation (uS) of the relaxed conductance around its target ``g_uS``, ``t_s`` after programming.

    Parameters
    ----------
    g_uS : array_like of float
        Target conductances in uS, finite and >= 0 (vectorised; any shape).
    t_s : float or None
        Time since programming in seconds, finite and >= 0. ``None`` or ``0`` means "ideal, no
        relaxation" and gives 0 everywhere.
    above_fit : {"hold", "poly", "raise"}, default "hold"
        What to do for ``g_uS`` above :data:`RELAXATION_G_HI_US` (40 uS), outside the published
        fit (targets of weights above ``w_max`` land there). ``"hold"``: the sigma at 40 uS;
        ``"poly"``: the extrapolated polynomial, floored at 0; ``"raise"``: ValueError.

    Returns
    -------
    numpy.ndarray or numpy.float64
        Sigma in uS, the shape of ``g_uS`` (a numpy scalar for a scalar ``g_uS``).

    Raises
    ------
    TypeError
        ``g_uS`` not numeric, ``t_s`` not a real number or None, ``above_fit`` not a str.
    ValueError
        ``g_uS`` negative or not finite, ``t_s`` negative or not finite, unknown ``above_fit``,
        or (``above_fit="raise"``) a conductance above 40 uS.

    Notes
    -----
    The sigma at each fit time (1 s, 1 day, 2 days) is the 4th-order least-squares polynomial
    :data:`RELAXATION_COEFFS` in ``x = G / 40 uS``. In between, sigma is interpolated linearly in
    ``log10(t)`` between the two neighbouring fit times. Outside the fitted times:

    * ``0 < t < 1 s``: the 1 s fit. Relaxation is fast and the chip's first read is about 1 s
      after programming, so the 1 s spread is taken as already present;
    * ``t > 2 days``: the 2-day fit (the published data stop there; the 1-day and 2-day fits
      are nearly equal, so the spread is taken as settled).

    The interpolation is monotone in ``t`` between fit times but not across them at every G: the
    published 2-day fit sits slightly *below* the 1-day fit for G in about 2.2-16.9 uS and
    30.1-38.2 uS (by at most about 0.07 uS, within the fits' precision). Elsewhere on 0..40 uS,
    in particular for mid-range G of 17-30 uS, sigma does not decrease with t.

    Floor at 0: on 0..40 uS no fitted polynomial is negative (each is smallest at G = 0, where it
    equals c0 > 0), so no floor acts there, nor for ``above_fit="hold"``. Extrapolated above 40 uS
    they cross zero at :data:`RELAXATION_ZERO_CROSSING_US` (about 48.0, 52.0 and 55.5 uS for 1 s,
    1 day, 2 days); with ``above_fit="poly"`` each fit is floored at 0 before interpolation.
    """
    g = _float_array("g_uS", g_uS)
    if g.size and float(g.min()) < 0:
        raise ValueError(f"g_uS must be >= 0 (a conductance), not {float(g.min())}")
    if not isinstance(above_fit, str):
        raise TypeError(f"above_fit must be a str, not {type(above_fit).__name__}")
    if above_fit not in _ABOVE_FIT:
        raise ValueError(f"above_fit must be one of {_ABOVE_FIT}, not {above_fit!r}")
    if t_s is None:
        return np.zeros_like(g)[()]
    t = _real_scalar("t_s", t_s)
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"t_s must be finite and >= 0 seconds (or None), not {t}")
    if t == 0:
        return np.zeros_like(g)[()]
    hi = RELAXATION_G_HI_US
    if g.size and float(g.max()) > hi:
        if above_fit == "raise":
            n = int(np.count_nonzero(g > hi))
            raise ValueError(f"g_uS has {n} value(s) above the fitted range 0..{hi} uS (max {float(g.max())})")
        if above_fit == "hold":
            g = np.minimum(g, hi)  # documented: sigma held at its 40 uS value above the fit
    lt = min(max(math.log10(t), _LOG_T[0]), _LOG_T[-1])
    i = min(int(np.searchsorted(_LOG_T, lt, side="right")) - 1, len(_LOG_T) - 2)
    w = (lt - _LOG_T[i]) / (_LOG_T[i + 1] - _LOG_T[i])
    lo_fit = np.maximum(relaxation_poly_uS(g, RELAXATION_TIMES_S[i]), 0.0)
    hi_fit = np.maximum(relaxation_poly_uS(g, RELAXATION_TIMES_S[i + 1]), 0.0)
    return ((1.0 - w) * lo_fit + w * hi_fit)[()]


# ---------------------------------------------------------------------------------------------
# Weight mapping.

#: Mapping schemes of NeuRRAM's ``nn_layers.weight_mapping`` (neurram-chip.md §4.4).
SCHEMES = ("sign", "offset")

#: Target (uS) of a device that is "off": the unused device of a sign-scheme pair and every padding
#: or bad line. NeuRRAM targets such cells "< g_min" and programs them with the RESET-only procedure
#: (no write-verify to a level); 0 uS stands for "as low as RESET leaves it".
OFF_TARGET_US = 0.0


def _readonly(arr):
    arr = np.array(arr, dtype=np.float64)
    arr.setflags(write=False)
    return arr


def _weights(name, value):
    w = _float_array(name, value)
    if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty 2-D (fan_in, cols) array, not shape {w.shape}")
    return w


def _w_max_of(w, percentile):
    wm = float(np.percentile(np.abs(w), percentile))
    if wm <= 0:
        raise ValueError(f"W: the {percentile}th percentile of |W| is 0, so no scale can be set; pass w_max explicitly")
    return wm


def _int_codes(name, value, k):
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array (input codes), not dtype {arr.dtype}")
    if arr.ndim not in (1, 2) or arr.shape[-1] != k:
        raise ValueError(f"{name} must have {k} elements per vector (the fan-in), not shape {arr.shape}")
    return arr.astype(np.int64)


@dataclass(frozen=True, eq=False)
class WeightMapping:
    """Target conductances of one weight matrix (one core segment). Build it with :func:`map_weights`.

    Attributes
    ----------
    g_target_uS : numpy.ndarray
        Read-only ``(2*K + 2*bias_rows, N)`` targets in uS: weight ``k`` on rows ``2k`` (G+) and
        ``2k+1`` (G-), bias pair ``r`` on rows ``2K + 2r`` and ``2K + 2r + 1``.
    line_modes : tuple of LineMode
        One per row: POS on even rows, NEG on odd rows.
    w_max : float
        Weight mapped to ``g_max_uS`` (sign scheme) / to the ``(g_max, 0)`` pair (offset scheme).
    scale_uS : float
        ``g_max_uS / w_max``: uS of differential conductance per unit weight.
    scheme : str
        ``"sign"`` or ``"offset"``.
    above_g_max : int
        Number of cells (weight and bias rows) whose target exceeds ``g_max_uS``; they are kept,
        not clipped (NeuRRAM programs them as high as write-verify reaches).
    below_g_min : int
        Number of cells with a target strictly between ``off_target_uS`` and ``g_min_uS``: small
        weights that write-verify cannot place distinctly from "off".
    off_target_uS : float
        Target of an "off" device (:data:`OFF_TARGET_US`): the idle device of a sign-scheme pair,
        and every padding or bad line in :func:`place`.
    g_max_uS, g_min_uS : float
        The conductance window.
    weights : numpy.ndarray
        Read-only ``(K, N)`` copy of the weights mapped.
    bias : numpy.ndarray
        Read-only ``(N,)`` bias (zeros when none was given), in units of ``x @ W``.
    bias_rows : int
        Number of bias pairs.
    x_max : int or None
        Input code the bias rows are driven with (None when no bias was given).
    fan_in_start : int
        Index of the layer's fan-in element this mapping's weight 0 corresponds to (0 unless the
        mapping is a segment from :func:`split_layer`).
    """

    g_target_uS: np.ndarray
    line_modes: tuple
    w_max: float
    scale_uS: float
    scheme: str
    above_g_max: int
    below_g_min: int
    off_target_uS: float
    g_max_uS: float
    g_min_uS: float
    weights: np.ndarray
    bias: np.ndarray
    bias_rows: int
    x_max: int | None
    fan_in_start: int = 0

    @property
    def fan_in(self):
        """int: ``K``, the number of weights (input elements) per column."""
        return self.weights.shape[0]

    @property
    def n_rows(self):
        """int: ``2*K + 2*bias_rows``, the physical rows the mapping occupies."""
        return self.g_target_uS.shape[0]

    @property
    def n_cols(self):
        """int: ``N``, the number of outputs."""
        return self.g_target_uS.shape[1]

    @property
    def bias_row_weight(self):
        """numpy.ndarray: ``(N,)`` weight carried by each bias pair, ``bias / (bias_rows * x_max)``."""
        if self.bias_rows == 0 or self.x_max is None:
            return np.zeros(self.n_cols)
        return self.bias / (self.bias_rows * self.x_max)

    def _codes(self, x, x_max=None):
        xs = _int_codes("x", x, self.fan_in)
        if x_max is not None:
            x_max = _as_int("x_max", x_max)
            if x_max < 1:
                raise ValueError(f"x_max must be >= 1, not {x_max}")
            if self.x_max is not None and x_max != self.x_max:
                raise ValueError(f"x_max={x_max} differs from the x_max={self.x_max} the bias rows were mapped for")
        xm = self.x_max if x_max is None else x_max
        if xm is not None and xs.size and int(np.abs(xs).max()) > xm:
            raise ValueError(f"x has |x| = {int(np.abs(xs).max())} above x_max = {xm} (the maximum input code)")
        return xs, xm

    def inputs(self, x, x_max=None):
        """Expand input codes to the per-row input codes of the core.

        Parameters
        ----------
        x : array_like of int
            ``K`` input codes (or a batch of shape ``(B, K)``), each with ``|x| <= x_max``.
        x_max : int, optional
            Maximum input code, driven on every bias row. Defaults to the mapping's
            :attr:`x_max`; required when the mapping has none and ``bias_rows > 0``; must equal
            :attr:`x_max` when the mapping has one.

        Returns
        -------
        numpy.ndarray
            int64, ``(..., 2*K + 2*bias_rows)``: ``x_k`` on both rows ``2k`` and ``2k+1`` (the NEG
            line mode negates the second one in hardware), ``x_max`` on every bias row.

        Raises
        ------
        TypeError
            ``x`` not an integer array, ``x_max`` not an integer.
        ValueError
            Wrong length, ``|x| > x_max``, ``x_max`` missing, < 1 or inconsistent with the mapping.
        """
        xs, xm = self._codes(x, x_max)
        if xm is None and self.bias_rows > 0:
            raise ValueError("x_max is required: the mapping has bias rows but was built without x_max")
        rows = np.repeat(xs, 2, axis=-1)
        fill = np.full((*xs.shape[:-1], 2 * self.bias_rows), 0 if xm is None else xm, dtype=np.int64)
        return np.concatenate([rows, fill], axis=-1)

    def ideal(self, x):
        """Ideal output ``x @ W + b`` in weight units (what the differential sum over rows / ``scale_uS`` gives).

        Parameters
        ----------
        x : array_like of int
            ``K`` input codes (or ``(B, K)``), with ``|x| <= x_max`` when the mapping has an ``x_max``.

        Returns
        -------
        numpy.ndarray
            float64 ``(N,)`` (or ``(B, N)``).
        """
        xs, _ = self._codes(x)
        return xs.astype(np.float64) @ self.weights + self.bias


def map_weights(
    W,
    *,
    scheme="sign",
    g_max_uS=40.0,
    g_min_uS=1.0,
    percentile=95.0,
    bias=None,
    bias_rows=2,
    w_max=None,
    x_max=None,
):
    """Map a weight matrix (and bias) to the target conductances of differential row pairs.

    Parameters
    ----------
    W : array_like of float
        ``(K, N)`` weights (fan-in x outputs), finite.
    scheme : {"sign", "offset"}, default "sign"
        ``"sign"``: ``G+ = max(W, 0) * s``, ``G- = max(-W, 0) * s`` (the device not used is at
        :data:`OFF_TARGET_US`). ``"offset"``: ``G± = (w_max ± W) * s / 2``. ``s = g_max_uS / w_max``.
    g_max_uS, g_min_uS : float, default 40.0, 1.0
        Conductance window in uS, ``0 <= g_min_uS < g_max_uS``.
    percentile : float, default 95.0
        ``w_max`` is this percentile of ``|W|`` (numpy's linear interpolation), ``0 < percentile <= 100``.
        Ignored (but checked) when ``w_max`` is given. The bias does not enter it.
    bias : array_like of float, optional
        ``(N,)`` bias in units of ``x @ W`` (ideal output ``x @ W + b``); requires ``x_max`` and
        ``bias_rows >= 1``. None means zero bias (the ``bias_rows`` pairs are still allocated).
    bias_rows : int, default 2
        Number of bias row pairs (0 allocates none).
    w_max : float, optional
        Explicit scale (> 0), e.g. a common one for all segments of a layer.
    x_max : int, optional
        The input code the bias rows are driven with (>= 1), e.g. ``2**(in_bits-1) - 1`` for
        signed inputs. Each bias pair carries ``b / (bias_rows * x_max)``.

    Returns
    -------
    WeightMapping

    Raises
    ------
    TypeError
        A parameter of the wrong type (non-numeric ``W``/``bias``, non-str ``scheme``, non-int
        ``bias_rows``/``x_max``).
    ValueError
        ``W`` not 2-D, empty or not finite; ``bias`` of the wrong shape or not finite; unknown
        ``scheme``; ``g_min_uS``/``g_max_uS`` negative, not finite or not ordered; ``percentile``
        outside (0, 100]; ``w_max`` <= 0 or the percentile of ``|W|`` is 0; ``bias`` given
        without ``x_max`` or with ``bias_rows=0``; under ``"offset"`` a weight or bias-row weight
        with magnitude above ``w_max`` (it would need a negative conductance: NeuRRAM does not
        clip, so neither does this; use ``percentile=100`` or a larger ``w_max``).

    Notes
    -----
    Targets above ``g_max_uS`` (sign scheme: ``|W| > w_max``, about 5 % of the weights at the
    default percentile; also a bias row larger than ``w_max``) are kept and counted in
    :attr:`WeightMapping.above_g_max`, as NeuRRAM's software does.
    """
    w = _weights("W", W)
    k, n = w.shape
    if not isinstance(scheme, str):
        raise TypeError(f"scheme must be a str, not {type(scheme).__name__}")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, not {scheme!r}")
    g_max = _finite_scalar("g_max_uS", g_max_uS)
    g_min = _finite_scalar("g_min_uS", g_min_uS)
    if g_max <= 0:
        raise ValueError(f"g_max_uS must be > 0 (a conductance), not {g_max}")
    if g_min < 0:
        raise ValueError(f"g_min_uS must be >= 0 (a conductance), not {g_min}")
    if g_min >= g_max:
        raise ValueError(f"g_min_uS ({g_min}) must be below g_max_uS ({g_max})")
    pct = _finite_scalar("percentile", percentile)
    if not 0 < pct <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {pct}")
    nb = _as_int("bias_rows", bias_rows)
    if nb < 0:
        raise ValueError(f"bias_rows must be >= 0, not {nb}")
    if x_max is not None:
        x_max = _as_int("x_max", x_max)
        if x_max < 1:
            raise ValueError(f"x_max must be >= 1, not {x_max}")
    if bias is None:
        b = np.zeros(n)
    else:
        b = _float_array("bias", bias)
        if b.shape != (n,):
            raise ValueError(f"bias must have shape ({n},) (one per column of W), not {b.shape}")
        if nb == 0:
            raise ValueError("bias_rows must be >= 1 when a bias is given (bias_rows=0)")
        if x_max is None:
            raise ValueError("x_max is required with a bias: the bias rows are driven with x_max")
    if w_max is None:
        wm = _w_max_of(w, pct)
    else:
        wm = _finite_scalar("w_max", w_max)
        if wm <= 0:
            raise ValueError(f"w_max must be > 0, not {wm}")
    s = g_max / wm

    row_b = np.zeros(n) if (bias is None or nb == 0) else b / (nb * x_max)
    wr = np.concatenate([w, np.tile(row_b, (nb, 1))], axis=0)
    if scheme == "sign":
        gp = np.where(wr > 0, wr * s, OFF_TARGET_US)
        gn = np.where(wr < 0, -wr * s, OFF_TARGET_US)
    else:
        for name, part in (("W", w), ("bias", wr[k:])):
            over = int(np.count_nonzero(np.abs(part) > wm))
            if over:
                raise ValueError(
                    f"{name}: {over} value(s) with magnitude above w_max={wm:g} (max {float(np.abs(part).max()):g}"
                    f"{' per bias row' if name == 'bias' else ''}); scheme='offset' would need a negative "
                    "conductance and nothing is clipped: pass percentile=100 or a larger w_max"
                )
        gp = (wm + wr) * s / 2
        gn = (wm - wr) * s / 2
    g = np.empty((2 * (k + nb), n))
    g[0::2] = gp
    g[1::2] = gn
    modes = (LineMode.POS, LineMode.NEG) * (k + nb)
    return WeightMapping(
        g_target_uS=_readonly(g),
        line_modes=modes,
        w_max=wm,
        scale_uS=s,
        scheme=scheme,
        above_g_max=int(np.count_nonzero(g > g_max)),
        below_g_min=int(np.count_nonzero((g > OFF_TARGET_US) & (g < g_min))),
        off_target_uS=OFF_TARGET_US,
        g_max_uS=g_max,
        g_min_uS=g_min,
        weights=_readonly(w),
        bias=_readonly(b),
        bias_rows=nb,
        x_max=x_max,
    )


# ---------------------------------------------------------------------------------------------
# Placement into a core.


def place(mapping, core_rows, *, backward=False, bad_rows=None):
    """Pad a mapping into the driven lines of one core, skipping bad lines.

    Parameters
    ----------
    mapping : WeightMapping
        The rows to place.
    core_rows : int
        Driven lines of the core in the chosen direction (rows forward, columns backward).
    backward : bool, default False
        Placement for a backward (transposed) MVM; see Notes.
    bad_rows : iterable of int, optional
        Physical lines (``0 <= r < core_rows``) that must not be used (unformed or leaky rows).

    Returns
    -------
    g_core_uS : numpy.ndarray
        ``(core_rows, N)`` targets: the mapping's rows on their physical lines, every other
        line (unused or bad) at ``mapping.off_target_uS``.
    line_modes : tuple of LineMode
        ``core_rows`` entries: the mapping's modes on its lines, OFF elsewhere. Logical row ``r``
        is on the ``r``-th non-OFF line (the order is preserved).

    Raises
    ------
    TypeError
        ``mapping`` not a WeightMapping; ``core_rows`` or a bad row not an integer.
    ValueError
        ``core_rows`` < 1, a bad row outside ``0..core_rows-1``, or the mapping does not fit the
        usable lines (message names ``core_rows``).

    Notes
    -----
    Forward, an OFF line is disconnected (word line off), so the rows are packed into the good
    lines in ascending order, as NeuRRAM's mapping tables list them: a pair may straddle a bad
    line. Backward, OFF lines stay connected and are driven +1 (even line) / -1 (odd line) in
    phase A and the opposite in phase B (docs/analog-boundary.md §3.1). Each pair is then put on
    an aligned line pair ``(2p, 2p+1)`` whose two lines are both good, so that every unused
    aligned pair, both at the off value, also cancels within each phase, not only over A + B.
    A bad line is still driven backward (OFF does not disconnect it); its real conductance
    loads the column but nets to zero over the two phases.
    """
    if not isinstance(mapping, WeightMapping):
        raise TypeError(f"mapping must be a WeightMapping, not {type(mapping).__name__}")
    lines = _as_int("core_rows", core_rows)
    if lines < 1:
        raise ValueError(f"core_rows must be >= 1, not {lines}")
    backward = _as_bool("backward", backward)
    bad = set()
    if bad_rows is not None:
        if isinstance(bad_rows, (str, bytes)) or not isinstance(bad_rows, Iterable):
            raise TypeError(f"bad_rows must be an iterable of line indices, not {type(bad_rows).__name__}")
        for item in bad_rows:
            r = _as_int("bad_rows", item)
            if not 0 <= r < lines:
                raise ValueError(f"bad_rows has line {r}, outside 0..{lines - 1} (core_rows={lines})")
            bad.add(r)
    need = mapping.n_rows
    if backward:
        slots = [p for p in range(lines // 2) if 2 * p not in bad and 2 * p + 1 not in bad]
        have = 2 * len(slots)
        phys = [2 * p + i for p in slots[: need // 2] for i in (0, 1)]
        how = "lines in aligned good pairs (2p, 2p+1)"
    else:
        good = [r for r in range(lines) if r not in bad]
        have = len(good)
        phys = good[:need]
        how = "good lines"
    if have < need:
        raise ValueError(
            f"core_rows={lines}: the mapping needs {need} lines (2*({mapping.fan_in} weights + {mapping.bias_rows} "
            f"bias rows)) but only {have} {how} are available ({len(bad)} bad)"
        )
    g = np.full((lines, mapping.n_cols), mapping.off_target_uS)
    g[phys] = mapping.g_target_uS
    modes = [LineMode.OFF] * lines
    for r, m in zip(phys, mapping.line_modes, strict=True):
        modes[r] = m
    return g, tuple(modes)


# ---------------------------------------------------------------------------------------------
# Splitting a layer over cores.


def split_layer(W, bias=None, *, core_rows=256, bias_rows=2, **map_kwargs):
    """Split a layer's fan-in into the fewest equal segments that each fit one core.

    Parameters
    ----------
    W : array_like of float
        ``(K, N)`` layer weights.
    bias : array_like of float, optional
        ``(N,)`` layer bias (units of ``x @ W``); each segment carries ``bias / n_segments``,
        spread over its ``bias_rows`` pairs (so ``map_kwargs`` needs ``x_max``).
    core_rows : int, default 256
        Usable driven lines per core (subtract the bad lines when known).
    bias_rows : int, default 2
        Bias pairs per segment.
    **map_kwargs
        Passed to :func:`map_weights` (``scheme``, ``g_max_uS``, ``g_min_uS``, ``percentile``,
        ``w_max``, ``x_max``).

    Returns
    -------
    list of WeightMapping
        One per segment, in fan-in order; segment ``i`` covers
        ``x[m.fan_in_start : m.fan_in_start + m.fan_in]``, and the layer output is the sum of the
        segments' outputs.

    Raises
    ------
    TypeError, ValueError
        As :func:`map_weights`; ValueError naming ``core_rows`` when not even one weight plus
        the bias rows fits (``2 * (1 + bias_rows) > core_rows``).

    Notes
    -----
    The number of segments is the smallest ``n`` with ``2 * (ceil(K / n) + bias_rows) <= core_rows``;
    the segments' fan-ins differ by at most one (the larger ones first).

    All segments share one ``w_max``: the given one, or the percentile of ``|W|`` over the whole
    layer. The partial sums of the segments are added digitally; they can only be added as they
    come out of the cores if every segment converts weight to conductance (and so output code
    to weight units) with the same scale. NeuRRAM itself takes the percentile per segment and
    rescales each partial sum in its per-segment calibration; one common scale makes that
    rescaling unnecessary.
    """
    w = _weights("W", W)
    k = w.shape[0]
    lines = _as_int("core_rows", core_rows)
    nb = _as_int("bias_rows", bias_rows)
    if nb < 0:
        raise ValueError(f"bias_rows must be >= 0, not {nb}")
    per_seg = lines // 2 - nb
    if per_seg < 1:
        raise ValueError(f"core_rows={lines} cannot hold one weight pair plus {nb} bias pairs")
    n_seg = -(-k // per_seg)
    pct = _finite_scalar("percentile", map_kwargs.get("percentile", 95.0))
    if not 0 < pct <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {pct}")
    if map_kwargs.get("w_max") is None:
        map_kwargs["w_max"] = _w_max_of(w, pct)
    b = None if bias is None else _float_array("bias", bias)
    seg_b = None if b is None else b / n_seg
    out = []
    for idx in np.array_split(np.arange(k), n_seg):
        start = int(idx[0])
        seg = map_weights(w[start : start + idx.size], bias=seg_b, bias_rows=nb, **map_kwargs)
        out.append(dataclasses.replace(seg, fan_in_start=start))
    return out

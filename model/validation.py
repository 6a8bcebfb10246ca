"""Validation measurements of the physical model against published NeuRRAM figures.

The headline metric follows cim-golden-model.md §3.7: 128 Gaussian weights per column
mapped to differential pairs with the sign scheme (w_max at the 95th percentile of |W|,
window 1-40 µS), 4-bit signed inputs, the voltage-mode core; the relative MVM error is
``std(y - ŷ) / std(y_ideal)`` where ``ŷ`` is the per-column least-squares linear fit of the
measured output to the ideal ``x @ W`` (the per-column calibration the chip's software
does). Published reference points: 0.042 with only the ±1 µS verify window, ~0.10 after
1 s of relaxation and ~0.17 after one day (±25 % accepted).
"""

import numpy as np

from .array import ArrayParams, realise
from .conductance import map_weights
from .encoding import CoreConfig
from .physical import PhysicalCore, PhysicalParams

__all__ = [
    "column_fit_error",
    "column_fit_residuals",
    "relative_mvm_error",
    "adc_transfer_curve",
    "NEURRAM_ARRAY",
    "REFERENCE_POINTS",
]

#: NeuRRAM's programming: ±1 µS verify window, off cells below 1 µS (neurram-chip.md §4.3-4.4).
NEURRAM_ARRAY = ArrayParams(g_tol_uS=1.0, g_min_uS=1.0)

#: (key, array parameters, published value) of the validation report.
REFERENCE_POINTS = (
    ("rel_error_verify_only", NEURRAM_ARRAY, 0.04),
    ("rel_error_relax_1s", ArrayParams(g_tol_uS=1.0, g_min_uS=1.0, relax_time_s=1.0), 0.10),
    ("rel_error_relax_1d", ArrayParams(g_tol_uS=1.0, g_min_uS=1.0, relax_time_s=86400.0), 0.17),
)


def column_fit_residuals(y, y_ideal):
    """Residuals of per-column linear fits of ``y`` on ``y_ideal``, in units of std(y_ideal).

    Each column's residual is divided by its fitted slope, i.e. expressed in units of the
    ideal output, then by the ideal output's standard deviation.

    Parameters
    ----------
    y, y_ideal : numpy.ndarray
        (vectors, columns) measured and ideal outputs.
    """
    y = np.asarray(y, dtype=np.float64)
    y_ideal = np.asarray(y_ideal, dtype=np.float64)
    if y.shape != y_ideal.shape or y.ndim != 2:
        raise ValueError(f"y and y_ideal must be 2-D arrays of one shape, not {y.shape} and {y_ideal.shape}")
    xm = y_ideal - y_ideal.mean(axis=0)
    ym = y - y.mean(axis=0)
    slope = (xm * ym).sum(axis=0) / (xm * xm).sum(axis=0)
    residual = ym - slope * xm
    return residual / slope / y_ideal.std()


def column_fit_error(y, y_ideal):
    """Pooled residual std of per-column linear fits of ``y`` on ``y_ideal``, over std(y_ideal)."""
    return float(np.sqrt((column_fit_residuals(y, y_ideal) ** 2).mean()))


def relative_mvm_error(
    array_params, *, fan_in=128, cols=256, vectors=256, in_bits=4, seed=0, core_params=None, keep_residuals=False
):
    """Relative MVM error of an array programmed with ``array_params`` (see the module doc).

    Returns
    -------
    dict
        ``rel_error`` (the metric), ``floored`` cells, and the inputs of the measurement.
    """
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((fan_in, cols))
    mapping = map_weights(w, scheme="sign", g_max_uS=40.0, g_min_uS=1.0, percentile=95.0, bias_rows=0)
    realised = realise(mapping.g_target_uS, array_params, seed=seed + 1)
    rows = mapping.g_target_uS.shape[0]
    cfg = CoreConfig(
        rows=rows,
        cols=cols,
        backward=False,
        signed=True,
        in_bits=in_bits,
        out_bits=8,
        pulse_mult=1,
        max_count=127,
        line_modes=tuple(int(m) for m in mapping.line_modes) + (0,) * max(0, cols - rows),
    )
    params = core_params or PhysicalParams(voltage_mode=True, v_read_V=0.1, delta_V=1e-3)
    core = PhysicalCore(realised.g_uS, params, seed=seed + 2)
    hi = 2 ** (in_bits - 1) - 1
    xs = rng.integers(-hi, hi + 1, size=(vectors, fan_in))
    noise_rng = np.random.default_rng(seed + 3)
    y = np.stack([core.integrate(cfg, mapping.inputs(x), noise_rng) for x in xs])
    y_ideal = xs @ w
    residuals = column_fit_residuals(y, y_ideal)
    return {
        "rel_error": float(np.sqrt((residuals**2).mean())),
        "residuals": residuals.ravel() if keep_residuals else None,
        "floored": realised.floored,
        "fan_in": fan_in,
        "cols": cols,
        "vectors": vectors,
        "in_bits": in_bits,
        "seed": seed,
    }


def adc_transfer_curve(core_params=None, *, out_bits=8, points=401, span=None):
    """Counts of the IF-ADC versus integrator voltage (the transfer curve), one neuron.

    Returns ``(v, decoded)``: the integrator voltages and the host-decoded outputs
    ``(1 - 2·sign)·(count - 0.5)``.
    """
    params = core_params or PhysicalParams(delta_V=1e-3)
    max_count = 2 ** (out_bits - 1) - 1
    span = span or 1.2 * max_count * params.delta_V
    core = PhysicalCore(np.ones((1, 1)), params)
    cfg = CoreConfig(
        rows=1, cols=1, backward=False, signed=False, in_bits=1, out_bits=out_bits, pulse_mult=1, max_count=max_count
    )
    v = np.linspace(-span, span, points)
    decoded = np.array([core.convert(cfg, np.array([value])).values[0] for value in v])
    return v, decoded

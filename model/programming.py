"""Weight programming: a behavioural RRAM pulse-response model and the chip's write-verify.

What the chip does (neurram-chip.md §4.3, the host functions ``program_increment`` and
``program_array`` of the NeuRRAM test software) is reproduced step by step by :func:`program`,
vectorised over every cell of an array:

* every target ``T`` at or above ``g_min`` (1 µS) gets the **normal** procedure, window
  ``T - g_tol < G_read < T + g_tol`` (strict, as the resistance comparisons of the code are);
  a target below ``g_min`` gets the RESET-only **off** procedure, window ``G_read < g_min``
  (R > 1 MΩ);
* one read before the first decision; then per outer iteration: the RESET loop (while
  ``G_read > T + g_tol``, pulse at the ramp voltage, re-read), the SET loop (while
  ``G_read < T - g_tol``), and, when the reading is in the window (and the optional
  ``final_pulse`` polarity holds), one re-read that must also be in the window: success;
* both ramps restart at their start voltages at every outer iteration, step by +0.1 V per
  pulse up to the end voltage, and pulses at the end voltage are counted; a loop stops after
  ``max_pulses_at_end_voltage`` of them;
* the cell fails when, after an iteration that did not succeed, the iteration count exceeds
  ``max_iterations`` or either loop ran out of pulses at the end voltage.

What a pulse does to a cell is :class:`DeviceParams`: a behavioural model, not a physical
one, whose terms are each documented with their source or stated as an assumption, and
whose defaults are calibrated so that the algorithm above reproduces the chip's measured
outcome (accepted error ≈ U(−g_tol, g_tol), 0.2-0.8 % failures, about ten pulses per cell).

Not modelled: the 10 s per-cell timeout of the chip's software, the ``g_max`` branch of
``program_array`` (targets above ``g_max`` get a single iteration; its default ``g_max`` is
infinite), relaxation after programming, and further programming epochs over the same
cells (every call of :func:`program` forms a fresh array).

Randomness: every draw comes from one ``numpy.random.Generator`` (given, or built from an
explicit seed), in a fixed order, so the same seed gives identical results. Conductances are
in µS, voltages in V. The module imports nothing but numpy and the standard library.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from dataclasses import dataclass, field

import numpy as np

from .params import Serialisable

__all__ = [
    "OUTCOME_PASS",
    "OUTCOME_FAIL_LOW",
    "OUTCOME_FAIL_HIGH",
    "OUTCOME_STUCK",
    "OUTCOME_NAMES",
    "DeviceParams",
    "WriteVerifyParams",
    "ProgramResult",
    "program",
]

#: Outcome code of a cell whose reading was in the window twice in a row.
OUTCOME_PASS = 0
#: Failed with its last verify reading below the target.
OUTCOME_FAIL_LOW = 1
#: Failed with its last verify reading at or above the target (every failed off-cell).
OUTCOME_FAIL_HIGH = 2
#: Failed and is a stuck cell of the device model (its conductance never moved).
OUTCOME_STUCK = 3
#: Names of the outcome codes, indexed by code.
OUTCOME_NAMES = ("pass", "fail_too_low", "fail_too_high", "stuck")

# Tolerance when deciding whether a ramp voltage has reached its end value (V).
_V_EPS = 1e-9


# ---------------------------------------------------------------------------------------------
# Small checkers: every message names the parameter.


def _real(name, value):
    """Return ``value`` as a finite float; TypeError if not a real number, ValueError if not finite."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__} ({value!r})")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, not {v!r}")
    return v


def _integer(name, value):
    """Return ``value`` as a Python int; TypeError if it is not an integer (bools refused)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, not a bool ({value!r})")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(value).__name__} ({value!r})") from None


def _ramp_len(start, end, step):
    """Pulses of a ramp before it reaches ``end``: ``ceil((end - start) / step)`` (0 if start >= end)."""
    if end <= start + _V_EPS:
        return 0
    return math.ceil((end - start) / step - _V_EPS)


# ---------------------------------------------------------------------------------------------
# The device model.


@dataclass(frozen=True)
class DeviceParams(Serialisable):
    """Behavioural pulse response of one 1T1R RRAM cell (µS, V).

    The model is behavioural: each term below is chosen to reproduce a documented behaviour
    of the NeuRRAM cells under the chip's write-verify, not derived from device physics.
    "[chip]" marks a number taken from neurram-chip.md / cim-golden-model.md, "[assumption]"
    a modelling choice, "[calibrated]" a value tuned so that :func:`program` with the
    default :class:`WriteVerifyParams` reproduces the measured outcome (see Notes).

    Parameters
    ----------
    g_lo_uS : float, default 0.1
        Lowest conductance a cell can reach (deep HRS, 10 MΩ) [assumption; the chip reads an
        unformed cell at about 130 MΩ and targets "off" cells at R > 1 MΩ]. A RESET that
        would go below it stops at it, and the hit is counted in ``ProgramResult.clipped``.
    g_hi_uS : float, default 60.0
        Highest conductance (the SET compliance of the 2.5 V word line) [assumption: above
        the 40 µS top of the weight window, so that targets up to 40 µS are reachable with
        margin]. A SET that would exceed it stops at it and is counted.
    g_init_lo_uS, g_init_hi_uS : float, default 1.25, 20.0
        Initial conductance, drawn log-uniformly in ``[g_init_lo_uS, g_init_hi_uS]`` for every
        cell at "forming". The lower end is the forming criterion R <= 800 kΩ [chip §4.3];
        the spread above it (forming overshoot, partial RESET, a previous weight set) is an
        [assumption].
    vth_set_V : float, default 1.6
        Mean SET threshold of the bit-line pulse (word line at 2.5 V): no conductance change
        below it [assumption; the chip's SET ramp starts at 1.2 V, so the first few pulses of
        every ramp do nothing, as the ramp is meant to].
    vth_set_sigma_V : float, default 0.1
        Device-to-device (per-cell, drawn at forming) Gaussian spread of the SET threshold
        [assumption].
    a_set_uS_per_V : float, default 10.0
        SET gain: conductance gained per volt of overdrive on a fully "empty" cell
        [calibrated: +1 µS per 0.1 V ramp step, so the step that crosses a target window is
        comparable to the 2 µS window, which makes the accepted error roughly uniform].
    gain_set_sigma : float, default 0.7
        Device-to-device lognormal spread (σ of ln) of the SET gain, drawn at forming
        [calibrated: its weak tail holds the hard-to-SET cells, which cannot reach a high
        target within the pulse limit and fail too low].
    p_set : float, default 2.0
        Saturation exponent: the SET increment is scaled by ``((g_hi - G) / (g_hi - g_lo))**p_set``
        and so shrinks as G approaches ``g_hi`` [soft-bound form: assumption; the exponent 2
        is calibrated so that the top of the 1-40 µS window is slow to reach and weak cells
        fail there rather than anywhere].
    vth_reset_V, vth_reset_sigma_V : float, default 1.5, 0.1
        Mean and device-to-device spread of the RESET threshold of the source-line pulse
        (word line at 5 V) [assumption; the RESET ramp starts at 1.2 V].
    a_reset_uS_per_V : float, default 10.0
        RESET gain, the mirror image of the SET gain [assumption: symmetric SET/RESET].
    gain_reset_sigma : float, default 0.7
        Device-to-device lognormal spread of the RESET gain [calibrated: its weak tail holds
        the hard-to-RESET cells; among the "off" cells (half the array) they stay above
        1 µS and are most of the failures, fail too high].
    p_reset : float, default 1.0
        The RESET decrement is scaled by ``((G - g_lo) / (g_hi - g_lo))**p_reset``: with 1 it
        is proportional to the distance from the floor, so RESET is gradual and a cell
        approaches ``g_lo`` geometrically [assumption].
    c2c_sigma : float, default 0.4
        Cycle-to-cycle stochasticity: every increment is multiplied by a lognormal factor
        ``exp(c2c_sigma * z)`` (median 1) drawn per pulse [assumption, brief: 0.3-0.5].
    jump_prob : float, default 0.01
        Probability that a SET pulse is abrupt (a filament jump): its increment is multiplied
        by ``jump_factor`` [assumption; RESET is modelled gradual].
    jump_factor : float, default 5.0
        Size of an abrupt SET relative to a normal one [assumption].
    read_noise_rel : float, default 0.01
        Standard deviation of one verify read, relative to G [assumption, brief: 1-2 %].
        The chip averages ``reads_per_verify - reads_discarded`` reads (5 of 8), so one
        verify reading has σ = sqrt((read_noise_rel·G)² + read_noise_uS²) / sqrt(5).
    read_noise_uS : float, default 0.02
        Absolute read-noise floor of one read (ADC and auto-ranging resolution)
        [assumption].
    stuck_fraction : float, default 0.0005
        Probability that a cell is stuck: pulses never change its conductance (it keeps its
        initial value) [assumption; unformed and leaky rows are mapped out on the chip, so the
        stuck cells left in a used row are rare].

    Raises
    ------
    TypeError
        A field that is not a real number (bools refused).
    ValueError
        A non-finite field or one out of its range, named in the message.

    Notes
    -----
    **One SET pulse** at bit-line voltage V on a cell at G (per-cell ``vth_s``, ``k_s``
    drawn at forming: ``vth_s ~ N(vth_set_V, vth_set_sigma_V²)``,
    ``k_s = exp(gain_set_sigma · z)``)::

        dG = a_set · k_s · max(V - vth_s, 0) · ((g_hi - G)/(g_hi - g_lo))**p_set
             · exp(c2c_sigma · z') · (jump_factor if u < jump_prob else 1)
        G  = min(G + dG, g_hi)                      (a hit of g_hi is counted)

    **One RESET pulse** at source-line voltage V (``vth_r``, ``k_r`` likewise)::

        dG = a_reset · k_r · max(V - vth_r, 0) · ((G - g_lo)/(g_hi - g_lo))**p_reset · exp(c2c_sigma · z')
        G  = max(G - dG, g_lo)                      (a hit of g_lo is counted)

    A stuck cell ignores both. The model knows no pulse width: it is calibrated for the
    chip's 1 µs pulses with the word line at 2.5 V (SET) and 5 V (RESET).

    **Calibration** (a 256x256 core of differential-pair targets: Gaussian weights, w_max at
    the 95th percentile of |W|, sign mapping, |W| clipped at w_max; 52 % of the cells target
    < 1 µS and get the off procedure, the rest spread over 1-40 µS; programmed with the
    default :class:`WriteVerifyParams`, seed 0):

    * failure fraction 0.44 % (seeds 0-5: 0.37-0.45 %; chip: 0.18 % MNIST, 0.77 % one CIFAR
      core). Most failures are weak-RESET off-cells left above 1 µS (fail too high), then
      stuck cells, then a few weak-SET cells at the top of the window (fail too low): the
      ramps restarting at 1.2 V make the algorithm robust against strong cells;
    * accepted error (true G − target, passing normal cells): std 0.60 µS, mean +0.13 µS
      (U(−1, 1) µS: 0.577 µS, 0). The spread is not exactly uniform: cells that come down
      with fine RESET steps collect near the top of the window, cells that come up with the
      coarser SET steps spread over it. Read noise moves 2.8 % of them beyond ±1 µS (at most
      by 0.3 µS); the confirming verify reading is always inside;
    * 10.4 pulses per cell (13 for normal cells, 8 for off-cells; 95th percentile 24),
      1.2 outer iterations on average, at most 12.
    """

    g_lo_uS: float = 0.1
    g_hi_uS: float = 60.0
    g_init_lo_uS: float = 1.25
    g_init_hi_uS: float = 20.0
    vth_set_V: float = 1.6
    vth_set_sigma_V: float = 0.1
    a_set_uS_per_V: float = 10.0
    gain_set_sigma: float = 0.7
    p_set: float = 2.0
    vth_reset_V: float = 1.5
    vth_reset_sigma_V: float = 0.1
    a_reset_uS_per_V: float = 10.0
    gain_reset_sigma: float = 0.7
    p_reset: float = 1.0
    c2c_sigma: float = 0.4
    jump_prob: float = 0.01
    jump_factor: float = 5.0
    read_noise_rel: float = 0.01
    read_noise_uS: float = 0.02
    stuck_fraction: float = 0.0005

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _real(f.name, getattr(self, f.name)))
        positive = ("g_lo_uS", "a_set_uS_per_V", "a_reset_uS_per_V")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, not {getattr(self, name)!r}")
        non_negative = (
            "vth_set_sigma_V",
            "gain_set_sigma",
            "p_set",
            "vth_reset_sigma_V",
            "gain_reset_sigma",
            "p_reset",
            "c2c_sigma",
            "read_noise_rel",
            "read_noise_uS",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)!r}")
        if self.g_hi_uS <= self.g_lo_uS:
            raise ValueError(f"g_hi_uS must be > g_lo_uS ({self.g_lo_uS}), not {self.g_hi_uS!r}")
        if not self.g_lo_uS <= self.g_init_lo_uS <= self.g_hi_uS:
            raise ValueError(
                f"g_init_lo_uS must be within [g_lo_uS, g_hi_uS] = [{self.g_lo_uS}, {self.g_hi_uS}], "
                f"not {self.g_init_lo_uS!r}"
            )
        if not self.g_init_lo_uS <= self.g_init_hi_uS <= self.g_hi_uS:
            raise ValueError(
                f"g_init_hi_uS must be within [g_init_lo_uS, g_hi_uS] = [{self.g_init_lo_uS}, {self.g_hi_uS}], "
                f"not {self.g_init_hi_uS!r}"
            )
        for name in ("jump_prob", "stuck_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], not {getattr(self, name)!r}")
        if self.jump_factor < 1:
            raise ValueError(f"jump_factor must be >= 1, not {self.jump_factor!r}")

    def replace(self, **changes):
        """Return a copy with ``changes`` applied (validated like the constructor).

        Unknown field names raise TypeError naming them.
        """
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------------
# The write-verify settings.


_FINAL_PULSES = (None, "set", "reset")


@dataclass(frozen=True)
class WriteVerifyParams(Serialisable):
    """Settings of the incremental-pulse write-verify (neurram-chip.md §4.3, ``program_array``).

    Parameters
    ----------
    g_tol_uS : float, default 1.0
        Acceptance half-window: a normal cell passes at ``T - g_tol < G_read < T + g_tol``
        [chip: g_tol = 1 µS for every task].
    g_min_uS : float, default 1.0
        Targets below it get the RESET-only off procedure into ``G_read < g_min_uS``
        (R > 1 MΩ) [chip: g_min = 1 µS].
    set_v_start_V, set_v_end_V, set_v_step_V : float, default 1.2, 3.3, 0.1
        SET bit-line ramp: the first pulse of every SET loop is at the start voltage, each
        next one ``step`` higher, up to the end voltage [chip: 1.2 V, ``end_voltage`` = 3.3 V
        (``program_array`` default), +0.1 V]. The ramp voltage is computed as
        ``min(start + k·step, end)``, so a step that does not divide ``end - start`` stops at
        ``end`` (the chip's code would overshoot it).
    reset_v_start_V, reset_v_end_V, reset_v_step_V : float, default 1.2, 3.3, 0.1
        RESET source-line ramp, same rule [chip: 1.2 V → 3.3 V, +0.1 V; word line 5 V].
    max_iterations : int, default 20
        ``iteration_limit`` of ``program_increment``: a cell fails when an unsuccessful outer
        iteration leaves the iteration count **above** it, i.e. at most
        ``max_iterations + 1`` outer iterations run (the code's check is ``iter_count >
        iteration_limit``) [chip: 20; 50 in some notebooks].
    max_pulses_at_end_voltage : int, default 30
        ``max_pulse_limit``: a SET or RESET loop stops after this many pulses at its end
        voltage, and the cell then fails unless its reading is confirmed in the window
        [chip: 30].
    reads_per_verify, reads_discarded : int, default 8, 3
        One verify reading is the mean of ``reads_per_verify - reads_discarded`` reads
        [chip: 8 reads, the first 3 discarded].
    off_reset_v_start_V, off_reset_v_end_V : float, default 2.5, 3.3
        RESET ramp of the off procedure [chip: 2.5 V → ``end_voltage`` 3.3 V (4.0 V in some
        notebooks)]; its step is ``reset_v_step_V``.
    off_max_pulses_at_end_voltage : int, default 30
        Pulse limit at the end voltage of the off procedure [chip: 30].
    off_max_iterations : int, default 1
        ``iteration_limit`` of the off procedure (same rule as ``max_iterations``) [chip: 1].
    off_reads_per_verify, off_reads_discarded : int, default 3, 1
        Reads of one verify of the off procedure [chip: 3 reads, 1 discarded].
    final_pulse : {None, "set", "reset"}, default None
        ``final_pulse`` of ``program_increment``: when given, a reading in the window is
        confirmed only if the last pulse had this polarity (a cell that has had no pulse
        yet qualifies). As in the chip's code, a cell in the window with the wrong last
        polarity is not pulsed again: it spends its remaining iterations and fails.

    Raises
    ------
    TypeError
        A field of the wrong type (bools refused for numbers).
    ValueError
        A field out of range (named), e.g. an end voltage below its start voltage.
    """

    g_tol_uS: float = 1.0
    g_min_uS: float = 1.0
    set_v_start_V: float = 1.2
    set_v_end_V: float = 3.3
    set_v_step_V: float = 0.1
    reset_v_start_V: float = 1.2
    reset_v_end_V: float = 3.3
    reset_v_step_V: float = 0.1
    max_iterations: int = 20
    max_pulses_at_end_voltage: int = 30
    reads_per_verify: int = 8
    reads_discarded: int = 3
    off_reset_v_start_V: float = 2.5
    off_reset_v_end_V: float = 3.3
    off_max_pulses_at_end_voltage: int = 30
    off_max_iterations: int = 1
    off_reads_per_verify: int = 3
    off_reads_discarded: int = 1
    final_pulse: str | None = None

    def __post_init__(self):
        ints = {
            "max_iterations",
            "max_pulses_at_end_voltage",
            "reads_per_verify",
            "reads_discarded",
            "off_max_pulses_at_end_voltage",
            "off_max_iterations",
            "off_reads_per_verify",
            "off_reads_discarded",
        }
        for f in dataclasses.fields(self):
            if f.name == "final_pulse":
                continue
            conv = _integer if f.name in ints else _real
            object.__setattr__(self, f.name, conv(f.name, getattr(self, f.name)))
        if self.final_pulse not in _FINAL_PULSES:
            raise ValueError(f"final_pulse must be one of {_FINAL_PULSES}, not {self.final_pulse!r}")
        if self.g_tol_uS <= 0:
            raise ValueError(f"g_tol_uS must be > 0, not {self.g_tol_uS!r}")
        if self.g_min_uS < 0:
            raise ValueError(f"g_min_uS must be >= 0, not {self.g_min_uS!r}")
        for name in ("set_v_step_V", "reset_v_step_V"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, not {getattr(self, name)!r}")
        for start, end in (
            ("set_v_start_V", "set_v_end_V"),
            ("reset_v_start_V", "reset_v_end_V"),
            ("off_reset_v_start_V", "off_reset_v_end_V"),
        ):
            if getattr(self, start) < 0:
                raise ValueError(f"{start} must be >= 0, not {getattr(self, start)!r}")
            if getattr(self, end) < getattr(self, start):
                raise ValueError(f"{end} must be >= {start} ({getattr(self, start)}), not {getattr(self, end)!r}")
        for name in ("max_iterations", "off_max_iterations"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")
        for name in ("max_pulses_at_end_voltage", "off_max_pulses_at_end_voltage"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        for reads, discard in (
            ("reads_per_verify", "reads_discarded"),
            ("off_reads_per_verify", "off_reads_discarded"),
        ):
            if getattr(self, discard) < 0:
                raise ValueError(f"{discard} must be >= 0, not {getattr(self, discard)}")
            if getattr(self, reads) <= getattr(self, discard):
                raise ValueError(
                    f"{reads} must be > {discard} ({getattr(self, discard)}) so that a read is kept, "
                    f"not {getattr(self, reads)}"
                )

    @property
    def reads_averaged(self):
        """int: Reads averaged into one verify reading of the normal procedure."""
        return self.reads_per_verify - self.reads_discarded

    @property
    def off_reads_averaged(self):
        """int: Reads averaged into one verify reading of the off procedure."""
        return self.off_reads_per_verify - self.off_reads_discarded

    def max_pulses_per_loop(self, polarity, off=False):
        """Most pulses one SET or RESET loop can apply (ramp below the end voltage + the end limit).

        Parameters
        ----------
        polarity : {"set", "reset"}
        off : bool
            The off procedure (RESET only).

        Returns
        -------
        int
        """
        if polarity not in ("set", "reset"):
            raise ValueError(f"polarity must be 'set' or 'reset', not {polarity!r}")
        if off:
            if polarity == "set":
                return 0
            ramp = _ramp_len(self.off_reset_v_start_V, self.off_reset_v_end_V, self.reset_v_step_V)
            return ramp + self.off_max_pulses_at_end_voltage
        if polarity == "set":
            ramp = _ramp_len(self.set_v_start_V, self.set_v_end_V, self.set_v_step_V)
        else:
            ramp = _ramp_len(self.reset_v_start_V, self.reset_v_end_V, self.reset_v_step_V)
        return ramp + self.max_pulses_at_end_voltage

    def replace(self, **changes):
        """Return a copy with ``changes`` applied (validated like the constructor)."""
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------------
# The result.


@dataclass(frozen=True, eq=False)
class ProgramResult:
    """Outcome of programming an array (every array has the shape of the targets).

    Parameters
    ----------
    targets_uS : numpy.ndarray of float64
        The targets, as given.
    g_uS : numpy.ndarray of float64
        Final true conductance of every cell.
    g_read_uS : numpy.ndarray of float64
        Last verify reading of every cell (the value the chip's ``program_array`` returns;
        for a passing cell, the confirming re-read, strictly inside the window).
    ok : numpy.ndarray of bool
        The cell passed (outcome 0).
    outcome : numpy.ndarray of int8
        0 pass; 1 failed, last reading below the target; 2 failed, last reading at or above
        the target (every failed off-cell); 3 failed and stuck (see :data:`OUTCOME_NAMES`).
    off : numpy.ndarray of bool
        The cell got the off procedure (target < ``g_min_uS``).
    stuck : numpy.ndarray of bool
        The device model made the cell stuck (ground truth; a stuck cell whose initial
        conductance was already in its window passes).
    set_pulses, reset_pulses : numpy.ndarray of int32
        Pulses applied, per polarity.
    iterations : numpy.ndarray of int32
        Outer iterations run (at most ``max_iterations + 1``; ``off_max_iterations + 1``
        for off-cells).
    clip_hits : numpy.ndarray of int32
        Pulses after which the conductance hit ``g_lo_uS`` or ``g_hi_uS`` (physical bound,
        not an error; counted so nothing is clipped silently).
    wv : WriteVerifyParams
        The settings used.
    device : DeviceParams
        The device model used.
    trace : dict of numpy.ndarray or None
        With ``program(..., trace=True)``, one entry per pulse, in the order applied within
        each cell: ``cell`` (flat index), ``iteration`` (0-based), ``polarity`` (+1 SET,
        −1 RESET), ``voltage_V``, ``at_end`` (the pulse counted against the end-voltage
        limit), ``g_uS`` (true conductance after the pulse) and ``read_uS`` (the verify
        reading after it). None otherwise.
    """

    targets_uS: np.ndarray
    g_uS: np.ndarray
    g_read_uS: np.ndarray
    ok: np.ndarray
    outcome: np.ndarray
    off: np.ndarray
    stuck: np.ndarray
    set_pulses: np.ndarray
    reset_pulses: np.ndarray
    iterations: np.ndarray
    clip_hits: np.ndarray
    wv: WriteVerifyParams
    device: DeviceParams
    trace: dict | None = field(default=None, repr=False)

    @property
    def pulses(self):
        """numpy.ndarray of int32: SET + RESET pulses per cell."""
        return self.set_pulses + self.reset_pulses

    @property
    def fail_fraction(self):
        """float: Fraction of cells that did not pass."""
        return float(1.0 - self.ok.mean())

    @property
    def clipped(self):
        """int: Total number of pulses that hit a conductance bound of the device."""
        return int(self.clip_hits.sum())

    @property
    def error_uS(self):
        """numpy.ndarray of float64: ``g_uS - targets_uS`` (true programming error, every cell)."""
        return self.g_uS - self.targets_uS

    def summary(self):
        """Statistics of the run as a JSON-serialisable dict.

        Returns
        -------
        dict
            ``cells``, ``off_cells``, ``passed``, ``failed``, ``fail_fraction``, one count per
            outcome name (``fail_too_low``, ``fail_too_high``, ``stuck``), ``stuck_cells``
            (ground truth), ``clipped``; pulses per cell (``mean_pulses``,
            ``mean_set_pulses``, ``mean_reset_pulses``, ``max_pulses``, and
            ``mean_pulses_normal`` / ``mean_pulses_off`` per procedure), ``mean_iterations``,
            ``max_iterations_run``; and over the passing normal (non-off) cells:
            ``accepted_read_error_mean_uS`` / ``_std_uS`` (verify reading − target, inside
            ±g_tol by construction), ``accepted_error_mean_uS`` / ``_std_uS`` /
            ``_max_abs_uS`` (true conductance − target) and ``accepted_outside_tol_fraction``
            (true error beyond ±g_tol, caused by read noise); ``off_pass_max_g_uS`` (largest
            true conductance of a passing off-cell). Statistics over an empty set are None.
        """
        n = int(self.ok.size)
        counts = np.bincount(self.outcome.ravel().astype(np.int64), minlength=len(OUTCOME_NAMES))
        pulses = self.pulses
        acc = self.ok & ~self.off
        err = (self.g_uS - self.targets_uS)[acc]
        rerr = (self.g_read_uS - self.targets_uS)[acc]
        off_ok = self.ok & self.off

        def stat(fn, values):
            return float(fn(values)) if values.size else None

        out = {
            "cells": n,
            "off_cells": int(self.off.sum()),
            "passed": int(counts[OUTCOME_PASS]),
            "failed": n - int(counts[OUTCOME_PASS]),
            "fail_fraction": self.fail_fraction,
        }
        for code in (OUTCOME_FAIL_LOW, OUTCOME_FAIL_HIGH, OUTCOME_STUCK):
            out[OUTCOME_NAMES[code]] = int(counts[code])
        out.update(
            {
                "stuck_cells": int(self.stuck.sum()),
                "clipped": self.clipped,
                "mean_pulses": float(pulses.mean()),
                "mean_set_pulses": float(self.set_pulses.mean()),
                "mean_reset_pulses": float(self.reset_pulses.mean()),
                "max_pulses": int(pulses.max()),
                "mean_pulses_normal": stat(np.mean, pulses[~self.off]),
                "mean_pulses_off": stat(np.mean, pulses[self.off]),
                "mean_iterations": float(self.iterations.mean()),
                "max_iterations_run": int(self.iterations.max()),
                "accepted_read_error_mean_uS": stat(np.mean, rerr),
                "accepted_read_error_std_uS": stat(np.std, rerr),
                "accepted_error_mean_uS": stat(np.mean, err),
                "accepted_error_std_uS": stat(np.std, err),
                "accepted_error_max_abs_uS": stat(np.max, np.abs(err)),
                "accepted_outside_tol_fraction": stat(np.mean, np.abs(err) >= self.wv.g_tol_uS),
                "off_pass_max_g_uS": stat(np.max, self.g_uS[off_ok]),
            }
        )
        return out


# ---------------------------------------------------------------------------------------------
# The simulation.


def _check_targets(targets_uS):
    arr = np.asarray(targets_uS)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise TypeError(f"targets_uS must be an array of real numbers (µS), not dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.size == 0:
        raise ValueError(f"targets_uS must hold at least one cell, not shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"targets_uS{list(bad)} = {arr[bad]!r} is not finite")
    if (arr < 0).any():
        bad = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise ValueError(f"targets_uS{list(bad)} = {arr[bad]!r} is negative (conductances are >= 0)")
    return arr


def _make_rng(rng, seed):
    if rng is not None and seed is not None:
        raise TypeError("program() takes rng or seed, not both")
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, not {type(rng).__name__}")
        return rng
    if seed is None:
        raise TypeError("program() needs rng (a numpy.random.Generator) or seed (an int): no implicit entropy")
    seed = _integer("seed", seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, not {seed}")
    return np.random.default_rng(seed)


class _Cells:
    """Per-cell state of the cells still being programmed (compacted as cells finish)."""

    FIELDS = (
        "idx",  # flat index into the array
        "lo",  # window lower bound (-inf: none)
        "hi",  # window upper bound
        "off",  # off procedure
        "g",  # true conductance
        "rd",  # last verify reading
        "state",  # 0 RESET loop, 1 SET loop, 2 end of iteration
        "k",  # ramp index of the current loop
        "cnt_r",  # RESET pulses at the end voltage, this iteration
        "cnt_s",  # SET pulses at the end voltage, this iteration
        "iters",
        "n_set",
        "n_reset",
        "last_pol",  # +1 SET, -1 RESET, 0 none yet
        "clips",
        "vth_s",
        "k_s",
        "vth_r",
        "k_r",
        "stuck",
        "read_div",  # sqrt of the reads averaged per verify
    )

    def compact(self, keep):
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name)[keep])


def program(targets_uS, *, device=None, wv=None, rng=None, seed=None, trace=False):
    """Program an array of cells to their target conductances with the chip's write-verify.

    Parameters
    ----------
    targets_uS : array_like of float
        Target conductance of every cell (µS), any shape (e.g. one 256x256 core). Targets
        below ``wv.g_min_uS`` get the RESET-only off procedure. Targets above the device's
        ``g_hi_uS`` are accepted (the chip's software does not clip) and fail.
    device : DeviceParams, optional
        Pulse-response model; default ``DeviceParams()``.
    wv : WriteVerifyParams, optional
        Write-verify settings; default ``WriteVerifyParams()``.
    rng : numpy.random.Generator, optional
        Source of every random draw (forming, pulses, reads). Exactly one of ``rng`` and
        ``seed`` must be given.
    seed : int, optional
        Seed of a fresh ``numpy.random.default_rng(seed)``.
    trace : bool, default False
        Record every pulse in ``ProgramResult.trace`` (memory grows with the pulse count;
        meant for small arrays).

    Returns
    -------
    ProgramResult

    Raises
    ------
    TypeError
        ``targets_uS`` not real-valued, ``device``/``wv``/``rng`` of the wrong type, both or
        neither of ``rng`` and ``seed``, a non-integer ``seed``.
    ValueError
        ``targets_uS`` empty, with a NaN/inf or a negative element; a negative ``seed``.

    Notes
    -----
    Random draws, in order: at forming, the initial conductances, then per cell the SET
    threshold, SET gain, RESET threshold, RESET gain and the stuck flag (one array each, in
    C order of the flattened targets); then, at every step of the vectorised loop, the
    read noise of the re-reads, the SET pulses (c2c, jump), the RESET pulses (c2c) and the
    reads after the pulses. The cells advance in lock step, one action (a pulse + read, or
    a re-read) per loop step each; a cell's draws therefore depend on which other cells are
    still active, but the whole run is a deterministic function of the seed.

    A verify reading is one Gaussian draw with the σ of the average of the kept reads
    (identical in distribution to averaging independent Gaussian reads).

    With the defaults, seed 0, on the realistic 256x256 core of :class:`DeviceParams`
    (Notes: 0.44 % failures, accepted-error std 0.60 µS, 10.4 pulses per cell), one call
    takes about 0.12 s on the project's 2-core machine (single-threaded numpy).
    """
    device = DeviceParams() if device is None else device
    wv = WriteVerifyParams() if wv is None else wv
    if not isinstance(device, DeviceParams):
        raise TypeError(f"device must be a DeviceParams, not {type(device).__name__}")
    if not isinstance(wv, WriteVerifyParams):
        raise TypeError(f"wv must be a WriteVerifyParams, not {type(wv).__name__}")
    if not isinstance(trace, (bool, np.bool_)):
        raise TypeError(f"trace must be a bool, not {type(trace).__name__}")
    targets = _check_targets(targets_uS)
    gen = _make_rng(rng, seed)
    shape = targets.shape
    t = targets.ravel()
    n = t.size
    d = device

    # -- forming: initial state and per-cell device parameters ------------------------------
    g0 = np.exp(gen.uniform(math.log(d.g_init_lo_uS), math.log(d.g_init_hi_uS), n))
    vth_s = d.vth_set_V + d.vth_set_sigma_V * gen.standard_normal(n)
    k_s = np.exp(d.gain_set_sigma * gen.standard_normal(n))
    vth_r = d.vth_reset_V + d.vth_reset_sigma_V * gen.standard_normal(n)
    k_r = np.exp(d.gain_reset_sigma * gen.standard_normal(n))
    stuck = gen.random(n) < d.stuck_fraction

    # -- windows and per-procedure settings -------------------------------------------------
    off = t < wv.g_min_uS
    lo = np.where(off, -np.inf, t - wv.g_tol_uS)
    lo[lo <= 0] = -np.inf  # the code's r_high = inf when T - g_tol <= 0: no SET loop
    hi = np.where(off, wv.g_min_uS, t + wv.g_tol_uS)
    read_div = np.where(off, math.sqrt(wv.off_reads_averaged), math.sqrt(wv.reads_averaged))
    # Per procedure (index 0 normal, 1 off): RESET ramp start, its length below the end, end
    # voltage, pulse limit at the end, iteration limit. The SET ramp is the normal one (the
    # off procedure never SETs: its window has no lower bound).
    r_start = np.array([wv.reset_v_start_V, wv.off_reset_v_start_V])
    r_end = np.array([wv.reset_v_end_V, wv.off_reset_v_end_V])
    r_len = np.array(
        [
            _ramp_len(wv.reset_v_start_V, wv.reset_v_end_V, wv.reset_v_step_V),
            _ramp_len(wv.off_reset_v_start_V, wv.off_reset_v_end_V, wv.reset_v_step_V),
        ]
    )
    lim_end = np.array([wv.max_pulses_at_end_voltage, wv.off_max_pulses_at_end_voltage])
    lim_it = np.array([wv.max_iterations, wv.off_max_iterations])
    s_len = _ramp_len(wv.set_v_start_V, wv.set_v_end_V, wv.set_v_step_V)
    final_pol = {None: 0, "set": 1, "reset": -1}[wv.final_pulse]

    span = d.g_hi_uS - d.g_lo_uS
    sig_rel, sig_abs = d.read_noise_rel, d.read_noise_uS

    def read(g, div):
        sigma = np.sqrt((sig_rel * g) ** 2 + sig_abs**2) / div
        return g + sigma * gen.standard_normal(g.size)

    # -- output arrays ------------------------------------------------------------------------
    out_g = g0.copy()
    out_rd = np.empty(n)
    out_outcome = np.zeros(n, dtype=np.int8)
    out_set = np.zeros(n, dtype=np.int32)
    out_reset = np.zeros(n, dtype=np.int32)
    out_iters = np.zeros(n, dtype=np.int32)
    out_clips = np.zeros(n, dtype=np.int32)
    log = [] if trace else None

    c = _Cells()
    c.idx = np.arange(n)
    c.lo, c.hi, c.off = lo, hi, off
    c.g = g0.copy()
    c.rd = read(c.g, read_div)  # the read before the first decision
    c.state = np.zeros(n, dtype=np.int8)
    c.k = np.zeros(n, dtype=np.int64)
    c.cnt_r = np.zeros(n, dtype=np.int64)
    c.cnt_s = np.zeros(n, dtype=np.int64)
    c.iters = np.zeros(n, dtype=np.int64)
    c.n_set = np.zeros(n, dtype=np.int64)
    c.n_reset = np.zeros(n, dtype=np.int64)
    c.last_pol = np.zeros(n, dtype=np.int8)
    c.clips = np.zeros(n, dtype=np.int64)
    c.vth_s, c.k_s, c.vth_r, c.k_r, c.stuck = vth_s, k_s, vth_r, k_r, stuck
    c.read_div = read_div

    # Every loop is bounded (ramp + end-voltage limit, iteration limit); the guard only turns a
    # bug into an error instead of a hang. A tick is one pulse or re-read, or a restart.
    loop_r = max(wv.max_pulses_per_loop("reset"), wv.max_pulses_per_loop("reset", off=True))
    max_ticks = (int(lim_it.max()) + 1) * (loop_r + wv.max_pulses_per_loop("set") + 3) + 2
    ticks = 0
    while c.idx.size:
        ticks += 1
        if ticks > max_ticks:
            raise RuntimeError(f"write-verify did not terminate within {max_ticks} steps ({c.idx.size} cells left)")
        proc = c.off.astype(np.int64)
        lim = lim_end[proc]
        # 1. RESET loop: cells that no longer need a RESET pulse move on to the SET loop.
        in_r = c.state == 0
        leave_r = in_r & ~((c.rd > c.hi) & (c.cnt_r < lim))
        c.state[leave_r] = 1
        c.k[leave_r] = 0
        c.cnt_s[leave_r] = 0
        need_r = in_r & ~leave_r
        # 2. SET loop: cells that no longer need a SET pulse reach the end of the iteration.
        in_s = c.state == 1
        need_s = in_s & (c.rd < c.lo) & (c.cnt_s < lim)
        end = in_s & ~need_s
        # 3. End of an outer iteration: confirm a reading in the window, or fail, or restart.
        done = np.zeros(c.idx.size, dtype=bool)
        success = np.zeros(c.idx.size, dtype=bool)
        if end.any():
            c.iters[end] += 1
            pol_ok = (final_pol == 0) | (c.last_pol * final_pol >= 0)
            confirm = np.flatnonzero(end & (c.rd > c.lo) & (c.rd < c.hi) & pol_ok)
            if confirm.size:
                c.rd[confirm] = read(c.g[confirm], c.read_div[confirm])
                success[confirm] = (c.rd[confirm] > c.lo[confirm]) & (c.rd[confirm] < c.hi[confirm])
            fail = end & ~success & ((c.iters > lim_it[proc]) | (c.cnt_r >= lim) | (c.cnt_s >= lim))
            done = success | fail
            restart = end & ~done
            c.state[restart] = 0
            c.k[restart] = 0
            c.cnt_r[restart] = 0
        # 4. Pulses (each followed by a verify read).
        for pol, need in ((1, need_s), (-1, need_r)):
            sel = np.flatnonzero(need)
            if not sel.size:
                continue
            k = c.k[sel]
            if pol == 1:
                ramp, v0, vend, step = s_len, wv.set_v_start_V, wv.set_v_end_V, wv.set_v_step_V
                at_end = k >= ramp
            else:
                p = proc[sel]
                ramp, v0, vend, step = r_len[p], r_start[p], r_end[p], wv.reset_v_step_V
                at_end = k >= ramp
            v = np.where(at_end, vend, v0 + k * step)
            g = c.g[sel]
            lnf = np.exp(d.c2c_sigma * gen.standard_normal(sel.size))
            if pol == 1:
                jump = gen.random(sel.size) < d.jump_prob
                drive = np.maximum(v - c.vth_s[sel], 0.0) * c.k_s[sel]
                dg = d.a_set_uS_per_V * drive * ((d.g_hi_uS - g) / span) ** d.p_set * lnf
                dg = np.where(jump, dg * d.jump_factor, dg)
                g_new = g + dg
                hit = g_new > d.g_hi_uS
                g_new[hit] = d.g_hi_uS
            else:
                drive = np.maximum(v - c.vth_r[sel], 0.0) * c.k_r[sel]
                dg = d.a_reset_uS_per_V * drive * ((g - d.g_lo_uS) / span) ** d.p_reset * lnf
                g_new = g - dg
                hit = g_new < d.g_lo_uS
                g_new[hit] = d.g_lo_uS
            moving = ~c.stuck[sel]
            g_new = np.where(moving, g_new, g)
            hit &= moving
            c.g[sel] = g_new
            c.clips[sel] += hit
            c.k[sel] = k + 1
            if pol == 1:
                c.cnt_s[sel] += at_end
                c.n_set[sel] += 1
            else:
                c.cnt_r[sel] += at_end
                c.n_reset[sel] += 1
            c.last_pol[sel] = pol
            c.rd[sel] = read(g_new, c.read_div[sel])
            if log is not None:
                log.append(
                    (c.idx[sel], c.iters[sel].copy(), np.full(sel.size, pol), v, at_end, g_new, c.rd[sel].copy())
                )
        # 5. Retire the finished cells.
        if done.any():
            ids = c.idx[done]
            out_g[ids] = c.g[done]
            out_rd[ids] = c.rd[done]
            out_set[ids] = c.n_set[done]
            out_reset[ids] = c.n_reset[done]
            out_iters[ids] = c.iters[done]
            out_clips[ids] = c.clips[done]
            fails = done & ~success
            fid = c.idx[fails]
            code = np.where(c.rd[fails] < t[fid], OUTCOME_FAIL_LOW, OUTCOME_FAIL_HIGH)
            code = np.where(c.stuck[fails], OUTCOME_STUCK, code)
            out_outcome[fid] = code
            c.compact(~done)

    trace_out = None
    if log is not None:
        names = ("cell", "iteration", "polarity", "voltage_V", "at_end", "g_uS", "read_uS")
        dtypes = (np.int64, np.int32, np.int8, np.float64, np.bool_, np.float64, np.float64)
        cols = list(zip(*log, strict=True)) if log else [[] for _ in names]
        trace_out = {}
        for name, dt, parts in zip(names, dtypes, cols, strict=True):
            trace_out[name] = np.concatenate(parts).astype(dt) if len(parts) else np.empty(0, dtype=dt)
        order = np.argsort(trace_out["cell"], kind="stable")
        trace_out = {name: arr[order] for name, arr in trace_out.items()}

    def shaped(a):
        a = a.reshape(shape)
        a.setflags(write=False)
        return a

    return ProgramResult(
        targets_uS=shaped(t.copy()),
        g_uS=shaped(out_g),
        g_read_uS=shaped(out_rd),
        ok=shaped(out_outcome == OUTCOME_PASS),
        outcome=shaped(out_outcome),
        off=shaped(off.copy()),
        stuck=shaped(stuck.copy()),
        set_pulses=shaped(out_set),
        reset_pulses=shaped(out_reset),
        iterations=shaped(out_iters),
        clip_hits=shaped(out_clips),
        wv=wv,
        device=device,
        trace=trace_out,
    )

"""Write-verify as the RTL sees it: integer codes, a step-by-step reference, per-cell devices.

:func:`~cimdv.model.programming.program` runs NeuRRAM's incremental write-verify
(neurram-chip.md §4.3) vectorised over an array, in volts and µS. The core's sequencer
(``rtl/core/writeverify.py``) runs the same algorithm on one cell at a time, in the codes of
its programming port (docs/analog-boundary.md §6). This module is the model of that view:

* **codes**: a verify reading is a G code, ``floor(G / 0.25 µS)`` saturated to 0..255
  (:func:`g_to_code`); a pulse amplitude is a 20 mV code, 0..255 (:func:`volts_to_amp`).
  :class:`WriteVerifyCodes` converts :class:`~cimdv.model.programming.WriteVerifyParams`
  to and from codes and refuses a setting that does not fit; :meth:`WriteVerifyCodes.settings`
  gives the register settings (:class:`WriteVerifySettings`) of one target, for the normal
  or the RESET-only "off" procedure.
* :class:`WriteVerifyRef`: the scalar reference, a state machine that consumes readings and
  yields the next :class:`Action` (SET amp / RESET amp / READ / DONE outcome). It takes the
  same decisions as the RTL given the same readings, so the testbench predicts every
  operation on the port.
* :class:`CellDevice` / :class:`ArrayDevice`: stateful cells with the pulse response of
  :class:`~cimdv.model.programming.DeviceParams` (SET/RESET steps, cycle-to-cycle noise,
  jumps, stuck cells, noise of the averaged read), deterministic given the seed and the
  sequence of operations, answering a port operation (:meth:`ArrayDevice.apply`).
* :func:`write_verify_array`: the reference against an :class:`ArrayDevice`, cell by cell.

The window in codes. With the floor quantisation, a window ``T - tol <= code < T + tol``
with ``T`` and ``tol`` in 0.25 µS steps is exactly ``program()``'s ``T - g_tol < G < T +
g_tol`` (up to readings on a boundary, a null set). Off targets (below ``g_min``) use
``T = 0``, ``tol = g_min``: the window is ``code < g_min``, no SET loop, and a failure is
always FAIL_HIGH, as in ``program()``. Targets are rounded to the nearest code.

What the RTL adds that ``program()`` lacks: an operation budget (``max_ops``, outcome
TIMEOUT, the counterpart of the chip software's per-cell timeout) and ABORTED. What it lacks:
``final_pulse`` (refused by :meth:`WriteVerifyCodes.from_params`). The number of reads averaged
per verify is the macro's business: the device model takes it per cell.

Pure Python + numpy; restates the RTL's constants (``ProgOp``, ``ProgOutcome``, code widths),
which ``tests/unit/rtl/test_writeverify.py`` checks against ``rtl/core/layouts.py``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .params import Serialisable
from .programming import DeviceParams, WriteVerifyParams, _integer, _real

__all__ = [
    "G_CODE_BITS",
    "AMP_BITS",
    "G_CODE_MAX",
    "AMP_MAX",
    "G_STEP_uS",
    "AMP_STEP_V",
    "ProgOp",
    "Outcome",
    "g_to_code",
    "code_to_g",
    "volts_to_amp",
    "amp_to_volts",
    "uS_to_code",
    "target_code",
    "WriteVerifySettings",
    "WriteVerifyCodes",
    "Action",
    "WriteVerifyResult",
    "WriteVerifyRef",
    "CellDevice",
    "ArrayDevice",
    "ArrayWriteVerifyResult",
    "write_verify_array",
    "BISTABLE_DEVICE",
]

#: Width of a verify reading (restates ``G_CODE_BITS`` of rtl/core/layouts.py).
G_CODE_BITS = 8
#: Width of a pulse amplitude code (restates ``AMP_BITS``).
AMP_BITS = 8
G_CODE_MAX = (1 << G_CODE_BITS) - 1
AMP_MAX = (1 << AMP_BITS) - 1
#: Conductance of one G code step (µS).
G_STEP_uS = 0.25
#: Voltage of one amplitude code step (V).
AMP_STEP_V = 0.02
#: Widths of the count fields (limits, budget, counters; restates the register map).
_FIELD_BITS = {
    "target": G_CODE_BITS,
    "tol": G_CODE_BITS,
    "set_start": AMP_BITS,
    "set_end": AMP_BITS,
    "set_step": AMP_BITS,
    "reset_start": AMP_BITS,
    "reset_end": AMP_BITS,
    "reset_step": AMP_BITS,
    "pulse_limit": 8,
    "iter_limit": 8,
    "max_ops": 16,
}
# Relative tolerance when deciding that a value is a whole number of code steps.
_EXACT = 1e-9


class ProgOp(enum.IntEnum):
    """Operation on the programming port (restates ``ProgOp`` of rtl/core/layouts.py)."""

    IDLE = 0
    SET = 1
    RESET = 2
    READ = 3


class Outcome(enum.IntEnum):
    """Outcome of one write-verify command (restates ``ProgOutcome``; 0..2 equal programming.py's)."""

    PASS = 0
    FAIL_LOW = 1
    FAIL_HIGH = 2
    TIMEOUT = 3
    ABORTED = 4
    NONE = 5


# ---------------------------------------------------------------------------------------------
# Codes.


def g_to_code(g_uS):
    """Verify reading code of a conductance: ``floor(g / 0.25 µS)``, saturated to 0..255.

    Scalar in, int out; array in, int64 array out. NaN raises ValueError.
    """
    if isinstance(g_uS, float):  # the responder's and the reference's hot path
        if g_uS != g_uS:
            raise ValueError("g_uS must not be NaN")
        if g_uS <= 0.0:
            return 0
        if g_uS >= (G_CODE_MAX + 1) * G_STEP_uS:
            return G_CODE_MAX
        return int(g_uS / G_STEP_uS)
    arr = np.asarray(g_uS, dtype=np.float64)
    if np.isnan(arr).any():
        raise ValueError("g_uS must not be NaN")
    code = np.clip(np.floor(arr / G_STEP_uS), 0, G_CODE_MAX).astype(np.int64)
    return int(code) if code.ndim == 0 else code


def code_to_g(code):
    """Conductance (µS) at the bottom of a G code's step: ``code * 0.25``."""
    return np.asarray(code, dtype=np.float64) * G_STEP_uS if np.ndim(code) else float(code) * G_STEP_uS


def _exact_code(name, value, unit, step, top):
    v = _real(name, value)
    code = round(v / step)
    if abs(code * step - v) > _EXACT * max(1.0, abs(v)):
        raise ValueError(f"{name} = {v!r} {unit} is not a whole number of {step:g} {unit} code steps")
    if not 0 <= code <= top:
        raise ValueError(f"{name} = {v!r} {unit} does not fit {top.bit_length()} bits (0 .. {top * step:g} {unit})")
    return int(code)


def volts_to_amp(volts, name="volts"):
    """Amplitude code (20 mV steps) of a voltage; ValueError, naming ``name``, unless exact and in 0..5.1 V."""
    return _exact_code(name, volts, "V", AMP_STEP_V, AMP_MAX)


def amp_to_volts(code):
    """Voltage of an amplitude code (V)."""
    return _integer("code", code) * AMP_STEP_V


def uS_to_code(value_uS, name="value_uS"):
    """G code (0.25 µS steps) of a conductance setting; ValueError, naming ``name``, unless exact and in range."""
    return _exact_code(name, value_uS, "µS", G_STEP_uS, G_CODE_MAX)


def target_code(target_uS, name="target_uS"):
    """Target code of a conductance target: the nearest 0.25 µS step (ValueError if negative or above 63.75 µS)."""
    v = _real(name, target_uS)
    code = round(v / G_STEP_uS)
    if v < 0 or code > G_CODE_MAX:
        raise ValueError(f"{name} = {v!r} µS does not fit the target code (0 .. {G_CODE_MAX * G_STEP_uS} µS)")
    return int(code)


# ---------------------------------------------------------------------------------------------
# Settings of one command (the register view) and of a whole procedure.


@dataclass(frozen=True)
class WriteVerifySettings(Serialisable):
    """The write-verify settings of one command, in codes: the ``PROG_*`` register fields.

    Defaults are the registers' reset values (= ``WriteVerifyParams()`` for a target of 0).

    Parameters
    ----------
    target : int
        Target G code (0.25 µS steps), 0..255.
    tol : int
        Window half-width: pass when ``target - tol <= reading < target + tol``.
    set_start, set_end, set_step, reset_start, reset_end, reset_step : int
        Amplitude ramps (20 mV codes): pulse ``k`` of a loop is at ``min(start + k*step, end)``.
    pulse_limit : int
        Pulses at the end amplitude after which a loop stops.
    iter_limit : int
        A cell fails when an unsuccessful outer iteration leaves the count above it.
    max_ops : int
        Operation budget (pulses + reads) of the command; then TIMEOUT.

    Raises
    ------
    TypeError
        A field that is not an integer (bools refused).
    ValueError
        A field that does not fit its register field (named). Values the RTL refuses at
        start but that fit (a zero step, start above end, ...) are allowed here and listed
        by :meth:`errors`.
    """

    target: int = 0
    tol: int = 4
    set_start: int = 60
    set_end: int = 165
    set_step: int = 5
    reset_start: int = 60
    reset_end: int = 165
    reset_step: int = 5
    pulse_limit: int = 30
    iter_limit: int = 20
    max_ops: int = 0xFFFF

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = _integer(f.name, getattr(self, f.name))
            bits = _FIELD_BITS[f.name]
            if not 0 <= value < 1 << bits:
                raise ValueError(f"{f.name} must fit {bits} bits (0..{(1 << bits) - 1}), not {value}")
            object.__setattr__(self, f.name, value)

    @property
    def lo(self):
        """int: Lowest reading in the window (may be <= 0: then no SET loop)."""
        return self.target - self.tol

    @property
    def hi(self):
        """int: First reading above the window (may exceed 255: then no RESET loop)."""
        return self.target + self.tol

    def errors(self):
        """Why the RTL refuses these settings at start (``ERROR.PROG_SETTING``): a tuple of reasons, empty if legal."""
        out = []
        for ramp in ("set", "reset"):
            if getattr(self, f"{ramp}_step") == 0:
                out.append(f"{ramp}_step is 0")
            if getattr(self, f"{ramp}_start") > getattr(self, f"{ramp}_end"):
                out.append(f"{ramp}_start > {ramp}_end")
        for name in ("tol", "pulse_limit", "max_ops"):
            if getattr(self, name) == 0:
                out.append(f"{name} is 0")
        return tuple(out)

    def replace(self, **changes):
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class WriteVerifyCodes(Serialisable):
    """:class:`~cimdv.model.programming.WriteVerifyParams` in codes: both procedures, for any target.

    Build it with :meth:`from_params`; :meth:`settings` gives one target's register settings;
    :meth:`to_params` converts back. Field meanings are those of ``WriteVerifyParams`` (the
    ``off_*`` fields belong to the RESET-only procedure of targets below ``g_min``).

    Parameters
    ----------
    tol, g_min : int
        ``g_tol_uS`` and ``g_min_uS`` in G codes.
    set_start, set_end, set_step, reset_start, reset_end, reset_step : int
        Ramps of the normal procedure (amplitude codes).
    pulse_limit, iter_limit : int
        ``max_pulses_at_end_voltage`` and ``max_iterations``.
    off_reset_start, off_reset_end, off_pulse_limit, off_iter_limit : int
        The off procedure's RESET ramp (its step is ``reset_step``) and limits.
    reads_averaged, off_reads_averaged : int
        Reads the macro averages into one verify reading (a device matter: not a register).
    max_ops : int
        Operation budget of every command.
    """

    tol: int = 4
    g_min: int = 4
    set_start: int = 60
    set_end: int = 165
    set_step: int = 5
    reset_start: int = 60
    reset_end: int = 165
    reset_step: int = 5
    pulse_limit: int = 30
    iter_limit: int = 20
    off_reset_start: int = 125
    off_reset_end: int = 165
    off_pulse_limit: int = 30
    off_iter_limit: int = 1
    reads_averaged: int = 5
    off_reads_averaged: int = 2
    max_ops: int = 0xFFFF

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _integer(f.name, getattr(self, f.name)))
        for name in ("reads_averaged", "off_reads_averaged"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if not 0 <= self.g_min <= G_CODE_MAX:
            raise ValueError(f"g_min must fit {G_CODE_BITS} bits (0..{G_CODE_MAX}), not {self.g_min}")
        # Both procedures' settings must fit the registers (raises naming the field).
        self.settings_for_code(0, off=False)
        self.settings_for_code(0, off=True)

    @classmethod
    def from_params(cls, wv=None, *, max_ops=0xFFFF):
        """Codes of ``wv`` (default ``WriteVerifyParams()``).

        Raises
        ------
        TypeError
            ``wv`` is not a WriteVerifyParams.
        ValueError
            A voltage not a whole number of 20 mV or above 5.1 V, ``g_tol``/``g_min`` not a whole
            number of 0.25 µS or above 63.75 µS, a limit above 255, ``final_pulse`` given (the
            RTL has none); the message names the parameter.
        """
        wv = WriteVerifyParams() if wv is None else wv
        if not isinstance(wv, WriteVerifyParams):
            raise TypeError(f"wv must be a WriteVerifyParams, not {type(wv).__name__}")
        if wv.final_pulse is not None:
            raise ValueError(f"final_pulse = {wv.final_pulse!r} is not supported by the RTL sequencer (use None)")
        for name in (
            "max_pulses_at_end_voltage",
            "max_iterations",
            "off_max_pulses_at_end_voltage",
            "off_max_iterations",
        ):
            if getattr(wv, name) > 255:
                raise ValueError(f"{name} = {getattr(wv, name)} does not fit its 8-bit register field (0..255)")
        return cls(
            tol=uS_to_code(wv.g_tol_uS, "g_tol_uS"),
            g_min=uS_to_code(wv.g_min_uS, "g_min_uS"),
            set_start=volts_to_amp(wv.set_v_start_V, "set_v_start_V"),
            set_end=volts_to_amp(wv.set_v_end_V, "set_v_end_V"),
            set_step=volts_to_amp(wv.set_v_step_V, "set_v_step_V"),
            reset_start=volts_to_amp(wv.reset_v_start_V, "reset_v_start_V"),
            reset_end=volts_to_amp(wv.reset_v_end_V, "reset_v_end_V"),
            reset_step=volts_to_amp(wv.reset_v_step_V, "reset_v_step_V"),
            pulse_limit=wv.max_pulses_at_end_voltage,
            iter_limit=wv.max_iterations,
            off_reset_start=volts_to_amp(wv.off_reset_v_start_V, "off_reset_v_start_V"),
            off_reset_end=volts_to_amp(wv.off_reset_v_end_V, "off_reset_v_end_V"),
            off_pulse_limit=wv.off_max_pulses_at_end_voltage,
            off_iter_limit=wv.off_max_iterations,
            reads_averaged=wv.reads_averaged,
            off_reads_averaged=wv.off_reads_averaged,
            max_ops=max_ops,
        )

    def to_params(self, base=None):
        """The :class:`WriteVerifyParams` these codes stand for.

        Fields without a code (reads per verify and discarded, ``final_pulse``) come from
        ``base`` (default ``WriteVerifyParams()``); the kept reads must equal ``reads_averaged``.
        """
        base = WriteVerifyParams() if base is None else base
        if not isinstance(base, WriteVerifyParams):
            raise TypeError(f"base must be a WriteVerifyParams, not {type(base).__name__}")
        for name in ("reads_averaged", "off_reads_averaged"):
            if getattr(base, name) != getattr(self, name):
                raise ValueError(f"base.{name} = {getattr(base, name)} differs from {name} = {getattr(self, name)}")
        return base.replace(
            g_tol_uS=self.tol * G_STEP_uS,
            g_min_uS=self.g_min * G_STEP_uS,
            set_v_start_V=self.set_start * AMP_STEP_V,
            set_v_end_V=self.set_end * AMP_STEP_V,
            set_v_step_V=self.set_step * AMP_STEP_V,
            reset_v_start_V=self.reset_start * AMP_STEP_V,
            reset_v_end_V=self.reset_end * AMP_STEP_V,
            reset_v_step_V=self.reset_step * AMP_STEP_V,
            max_iterations=self.iter_limit,
            max_pulses_at_end_voltage=self.pulse_limit,
            off_reset_v_start_V=self.off_reset_start * AMP_STEP_V,
            off_reset_v_end_V=self.off_reset_end * AMP_STEP_V,
            off_max_pulses_at_end_voltage=self.off_pulse_limit,
            off_max_iterations=self.off_iter_limit,
            final_pulse=None,
        )

    def is_off(self, target_uS):
        """True when ``target_uS`` gets the RESET-only off procedure (below ``g_min``)."""
        return _real("target_uS", target_uS) < self.g_min * G_STEP_uS

    def settings_for_code(self, target, *, off=False):
        """Register settings of a target given as a code (normal) or of an off cell (``off=True``)."""
        if off:
            return WriteVerifySettings(
                target=0,
                tol=self.g_min,
                set_start=self.set_start,
                set_end=self.set_end,
                set_step=self.set_step,
                reset_start=self.off_reset_start,
                reset_end=self.off_reset_end,
                reset_step=self.reset_step,
                pulse_limit=self.off_pulse_limit,
                iter_limit=self.off_iter_limit,
                max_ops=self.max_ops,
            )
        return WriteVerifySettings(
            target=target,
            tol=self.tol,
            set_start=self.set_start,
            set_end=self.set_end,
            set_step=self.set_step,
            reset_start=self.reset_start,
            reset_end=self.reset_end,
            reset_step=self.reset_step,
            pulse_limit=self.pulse_limit,
            iter_limit=self.iter_limit,
            max_ops=self.max_ops,
        )

    def settings(self, target_uS):
        """Register settings for a target conductance (µS): the off procedure below ``g_min``."""
        if self.is_off(target_uS):
            target_code(target_uS)  # range check only
            return self.settings_for_code(0, off=True)
        return self.settings_for_code(target_code(target_uS))

    def reads_for(self, target_uS):
        """Reads averaged per verify for a target (off or normal procedure)."""
        return self.off_reads_averaged if self.is_off(target_uS) else self.reads_averaged


# ---------------------------------------------------------------------------------------------
# The reference.


class Action(NamedTuple):
    """What the sequencer does next: a pulse (``amp``), a READ, or DONE (``op`` IDLE, ``outcome``)."""

    op: ProgOp
    amp: int = 0
    outcome: Outcome | None = None

    @property
    def done(self):
        return self.op == ProgOp.IDLE

    def __str__(self):
        if self.done:
            return f"DONE {self.outcome.name}"
        if self.op == ProgOp.READ:
            return "READ"
        return f"{self.op.name} amp {self.amp}"


class WriteVerifyResult(NamedTuple):
    """The result registers of one command (``PROG_RESULT``, ``PROG_PULSES``), and the operation count."""

    outcome: Outcome
    set_pulses: int
    reset_pulses: int
    iterations: int
    reading: int
    ops: int


_R, _S, _CONFIRM, _FAIL = "reset", "set", "confirm", "fail"


class WriteVerifyRef:
    """Step-by-step reference of the RTL sequencer's write-verify on one cell.

    The current :attr:`action` is what the sequencer does next. Advance with :meth:`feed`:
    the reading (G code) after a READ, nothing after a pulse. The decisions are those of
    ``rtl/core/writeverify.py`` (its docstring states the algorithm); given the same
    readings, the two issue the same operations with the same amplitudes and end with the
    same result registers.

    Parameters
    ----------
    settings : WriteVerifySettings
        Must be legal (``settings.errors()`` empty).

    Raises
    ------
    TypeError
        ``settings`` is not a WriteVerifySettings.
    ValueError
        Illegal settings (the RTL would refuse them), naming the reasons.

    Examples
    --------
    >>> ref = WriteVerifyRef(WriteVerifySettings(target=40))
    >>> str(ref.action)
    'READ'
    >>> str(ref.feed(10))          # below the window [36, 44): SET ramp from its start
    'SET amp 60'
    """

    def __init__(self, settings):
        if not isinstance(settings, WriteVerifySettings):
            raise TypeError(f"settings must be a WriteVerifySettings, not {type(settings).__name__}")
        errors = settings.errors()
        if errors:
            raise ValueError(f"illegal write-verify settings: {', '.join(errors)}")
        self.settings = settings
        self.loop = _R
        self.amp = settings.reset_start
        self.cnt_r = 0
        self.cnt_s = 0
        self.iterations = 0
        self.set_pulses = 0
        self.reset_pulses = 0
        self.ops = 0
        self.reading = 0
        self.outcome = Outcome.NONE
        self.actions = 0
        self.action = self._read()

    @property
    def done(self):
        return self.action.done

    @property
    def result(self):
        """WriteVerifyResult: the result registers now (final once :attr:`done`)."""
        return WriteVerifyResult(
            self.outcome, self.set_pulses, self.reset_pulses, self.iterations, self.reading, self.ops
        )

    def feed(self, reading=None):
        """Advance past the current action; returns the next one.

        Parameters
        ----------
        reading : int, optional
            The G code the READ returned (required after a READ, refused after a pulse).

        Raises
        ------
        TypeError
            ``reading`` not an integer.
        ValueError
            Fed after DONE, a reading missing after a READ or given after a pulse, a reading
            outside 0..255.
        """
        action = self.action
        if action.done:
            raise ValueError(f"the write-verify is done ({action.outcome.name}): nothing to feed")
        if action.op == ProgOp.READ:
            if reading is None:
                raise ValueError("reading is required after a READ")
            value = _integer("reading", reading)
            if not 0 <= value <= G_CODE_MAX:
                raise ValueError(f"reading must be a G code 0..{G_CODE_MAX}, not {value}")
            self.reading = value
            self.action = self._decide({_R: _R, _S: _S, _CONFIRM: _CONFIRM}[self.loop])
        else:
            if reading is not None:
                raise ValueError(f"a {action.op.name} pulse takes no reading, got {reading!r}")
            self.action = self._read()
        self.actions += 1
        return self.action

    # -- the algorithm -----------------------------------------------------------------------
    def _read(self):
        if self.ops == self.settings.max_ops:
            return self._finish(Outcome.TIMEOUT)
        self.ops += 1
        return Action(ProgOp.READ)

    def _pulse(self, op):
        s = self.settings
        if self.ops == s.max_ops:
            return self._finish(Outcome.TIMEOUT)
        self.ops += 1
        amp = self.amp
        if op == ProgOp.SET:
            end, step = s.set_end, s.set_step
            self.set_pulses += 1
            self.cnt_s += amp == end
        else:
            end, step = s.reset_end, s.reset_step
            self.reset_pulses += 1
            self.cnt_r += amp == end
        self.amp = min(amp + step, end)
        return Action(op, amp)

    def _finish(self, outcome):
        self.outcome = outcome
        return Action(ProgOp.IDLE, 0, outcome)

    def _decide(self, where):
        s = self.settings
        r = self.reading
        in_window = s.lo <= r < s.hi
        # At most RESET -> SET -> end -> fail check -> RESET -> SET: then a pulse is certain
        # (a restart follows a reading outside the window, and pulse_limit >= 1).
        for _ in range(8):
            if where == _R:
                if r >= s.hi and self.cnt_r < s.pulse_limit:
                    return self._pulse(ProgOp.RESET)
                self.loop, self.amp, self.cnt_s, where = _S, s.set_start, 0, _S
            elif where == _S:
                if r < s.lo and self.cnt_s < s.pulse_limit:
                    return self._pulse(ProgOp.SET)
                self.iterations += 1
                if in_window:
                    self.loop = _CONFIRM
                    return self._read()
                where = _FAIL
            elif where == _CONFIRM:
                if in_window:
                    return self._finish(Outcome.PASS)
                where = _FAIL
            else:
                limits = self.cnt_r >= s.pulse_limit or self.cnt_s >= s.pulse_limit
                if self.iterations > s.iter_limit or limits:
                    return self._finish(Outcome.FAIL_LOW if r < s.target else Outcome.FAIL_HIGH)
                self.loop, self.amp, self.cnt_r, where = _R, s.reset_start, 0, _R
        raise RuntimeError(f"write-verify decision did not converge (state {where}, reading {r})")


# ---------------------------------------------------------------------------------------------
# Devices.


def _make_seed(name, seed):
    seed = _integer(name, seed)
    if seed < 0:
        raise ValueError(f"{name} must be >= 0, not {seed}")
    return seed


class CellDevice:
    """One RRAM cell with the pulse response of :class:`DeviceParams` and its own random stream.

    Parameters
    ----------
    device : DeviceParams
    g_uS : float
        Present conductance (µS).
    vth_set_V, gain_set, vth_reset_V, gain_reset : float
        The cell's SET/RESET thresholds and gain factors (drawn at forming).
    stuck : bool
        Pulses never change a stuck cell.
    reads_averaged : int
        Reads averaged into one verify reading (its σ shrinks by the square root).
    rng : numpy.random.Generator
        Source of the cell's pulse and read noise.

    Notes
    -----
    The equations are :class:`DeviceParams`'s (its Notes). Per SET pulse the cell draws one
    normal (c2c) and one uniform (jump), per RESET pulse one normal, per read one normal, in
    the order of the operations: the cell is a deterministic function of its seed and of its
    own sequence of operations.
    """

    def __init__(self, device, *, g_uS, vth_set_V, gain_set, vth_reset_V, gain_reset, stuck, reads_averaged, rng):
        if not isinstance(device, DeviceParams):
            raise TypeError(f"device must be a DeviceParams, not {type(device).__name__}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, not {type(rng).__name__}")
        self.device = device
        self.g_uS = _real("g_uS", g_uS)
        self.vth_set_V = _real("vth_set_V", vth_set_V)
        self.gain_set = _real("gain_set", gain_set)
        self.vth_reset_V = _real("vth_reset_V", vth_reset_V)
        self.gain_reset = _real("gain_reset", gain_reset)
        self.stuck = bool(stuck)
        self.reads_averaged = reads_averaged
        self.rng = rng
        self.set_pulses = 0
        self.reset_pulses = 0
        self.reads = 0
        self.clip_hits = 0

    @classmethod
    def formed(cls, device=None, *, seed, reads_averaged=5):
        """A freshly formed cell: initial state and parameters drawn like ``program()``'s forming."""
        device = DeviceParams() if device is None else device
        arr = ArrayDevice((1,), device, seed=seed, reads_averaged=reads_averaged)
        return arr.cell(0)

    @property
    def reads_averaged(self):
        return self._reads

    @reads_averaged.setter
    def reads_averaged(self, value):
        value = _integer("reads_averaged", value)
        if value < 1:
            raise ValueError(f"reads_averaged must be >= 1, not {value}")
        self._reads = value

    def set(self, volts):
        """One SET pulse at ``volts`` on the bit line; returns the new conductance (µS)."""
        v = _real("volts", volts)
        d = self.device
        self.set_pulses += 1
        lnf = math.exp(d.c2c_sigma * self.rng.standard_normal())
        jump = self.rng.random() < d.jump_prob
        if self.stuck:
            return self.g_uS
        g = self.g_uS
        drive = max(v - self.vth_set_V, 0.0) * self.gain_set
        dg = d.a_set_uS_per_V * drive * ((d.g_hi_uS - g) / (d.g_hi_uS - d.g_lo_uS)) ** d.p_set * lnf
        if jump:
            dg *= d.jump_factor
        g += dg
        if g > d.g_hi_uS:
            g = d.g_hi_uS
            self.clip_hits += 1
        self.g_uS = g
        return g

    def reset(self, volts):
        """One RESET pulse at ``volts`` on the source line; returns the new conductance (µS)."""
        v = _real("volts", volts)
        d = self.device
        self.reset_pulses += 1
        lnf = math.exp(d.c2c_sigma * self.rng.standard_normal())
        if self.stuck:
            return self.g_uS
        g = self.g_uS
        drive = max(v - self.vth_reset_V, 0.0) * self.gain_reset
        dg = d.a_reset_uS_per_V * drive * ((g - d.g_lo_uS) / (d.g_hi_uS - d.g_lo_uS)) ** d.p_reset * lnf
        g -= dg
        if g < d.g_lo_uS:
            g = d.g_lo_uS
            self.clip_hits += 1
        self.g_uS = g
        return g

    def read(self):
        """One verify reading (µS): the average of ``reads_averaged`` noisy reads."""
        d = self.device
        self.reads += 1
        g = self.g_uS
        sigma = math.sqrt((d.read_noise_rel * g) ** 2 + d.read_noise_uS**2) / math.sqrt(self._reads)
        return g + sigma * self.rng.standard_normal()

    def read_code(self):
        """One verify reading as the port's G code."""
        return g_to_code(self.read())

    def apply(self, op, amp=0):
        """One port operation: SET/RESET at amplitude code ``amp`` (returns None), READ (returns the G code)."""
        op = ProgOp(_integer("op", op))
        amp = _integer("amp", amp)
        if not 0 <= amp <= AMP_MAX:
            raise ValueError(f"amp must be an amplitude code 0..{AMP_MAX}, not {amp}")
        if op == ProgOp.SET:
            self.set(amp * AMP_STEP_V)
        elif op == ProgOp.RESET:
            self.reset(amp * AMP_STEP_V)
        elif op == ProgOp.READ:
            return self.read_code()
        return None


class ArrayDevice:
    """An array of :class:`CellDevice` answering the programming port's operations.

    Parameters
    ----------
    shape : tuple of int
        Array shape, e.g. ``(rows, cols)``.
    device : DeviceParams, optional
        Pulse response (default ``DeviceParams()``).
    seed : int
        Forming draws come from ``numpy.random.default_rng(seed)`` in ``program()``'s order
        (initial conductance, SET threshold, SET gain, RESET threshold, RESET gain, stuck flag;
        one array each, C order), so an ``ArrayDevice`` and ``program(targets, seed=seed)`` of
        the same shape start from identical cells. Cell ``i`` (flat index) then draws its
        pulse and read noise from its own stream ``SeedSequence(seed, spawn_key=(i,))``:
        a cell's behaviour depends only on the seed and its own operations, not on the order
        in which the cells are programmed.
    reads_averaged : int or array_like of int
        Reads averaged per verify, per cell or for all (default 5, the chip's 8 - 3).

    Raises
    ------
    TypeError, ValueError
        A bad argument, named.
    """

    def __init__(self, shape, device=None, *, seed, reads_averaged=5):
        if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
            shape = (int(shape),)
        if not isinstance(shape, tuple) or not shape:
            raise TypeError(f"shape must be a non-empty tuple of ints, not {shape!r}")
        shape = tuple(_integer("shape", n) for n in shape)
        if any(n < 1 for n in shape):
            raise ValueError(f"shape must have positive dimensions, not {shape}")
        device = DeviceParams() if device is None else device
        if not isinstance(device, DeviceParams):
            raise TypeError(f"device must be a DeviceParams, not {type(device).__name__}")
        self.seed = _make_seed("seed", seed)
        self.shape = shape
        self.device = device
        n = math.prod(shape)
        gen = np.random.default_rng(self.seed)
        d = device
        self._g0 = np.exp(gen.uniform(math.log(d.g_init_lo_uS), math.log(d.g_init_hi_uS), n))
        self._vth_s = d.vth_set_V + d.vth_set_sigma_V * gen.standard_normal(n)
        self._k_s = np.exp(d.gain_set_sigma * gen.standard_normal(n))
        self._vth_r = d.vth_reset_V + d.vth_reset_sigma_V * gen.standard_normal(n)
        self._k_r = np.exp(d.gain_reset_sigma * gen.standard_normal(n))
        self._stuck = gen.random(n) < d.stuck_fraction
        self._cells = {}
        self._reads = np.empty(n, dtype=np.int64)
        self.set_reads_averaged(reads_averaged)

    def _flat(self, index):
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool) and len(self.shape) == 1:
            index = (index,)
        if not isinstance(index, tuple) or len(index) != len(self.shape):
            raise TypeError(f"index must be a tuple of {len(self.shape)} ints, not {index!r}")
        idx = []
        for axis, (i, n) in enumerate(zip(index, self.shape, strict=True)):
            i = _integer(f"index[{axis}]", i)
            if not 0 <= i < n:
                raise ValueError(f"index[{axis}] = {i} is outside 0..{n - 1}")
            idx.append(i)
        return int(np.ravel_multi_index(tuple(idx), self.shape))

    def set_reads_averaged(self, reads):
        """Reads averaged per verify: an int for every cell, or an array of the array's shape."""
        arr = np.asarray(reads)
        if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
            raise TypeError(f"reads_averaged must be integer(s), not dtype {arr.dtype}")
        if arr.ndim and arr.shape != self.shape:
            raise ValueError(f"reads_averaged must be an int or of shape {self.shape}, not {arr.shape}")
        if (arr < 1).any():
            raise ValueError("reads_averaged must be >= 1")
        self._reads[:] = np.broadcast_to(arr, self.shape).ravel()
        for i, cell in self._cells.items():
            cell.reads_averaged = int(self._reads[i])

    def cell(self, *index):
        """The :class:`CellDevice` at ``index`` (created on first use)."""
        if len(index) == 1 and isinstance(index[0], tuple):
            index = index[0]
        i = self._flat(tuple(index))
        cell = self._cells.get(i)
        if cell is None:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(i,)))
            cell = CellDevice(
                self.device,
                g_uS=float(self._g0[i]),
                vth_set_V=float(self._vth_s[i]),
                gain_set=float(self._k_s[i]),
                vth_reset_V=float(self._vth_r[i]),
                gain_reset=float(self._k_r[i]),
                stuck=bool(self._stuck[i]),
                reads_averaged=int(self._reads[i]),
                rng=rng,
            )
            self._cells[i] = cell
        return cell

    @property
    def g_uS(self):
        """numpy.ndarray: Present conductance of every cell (a copy)."""
        g = self._g0.copy()
        for i, cell in self._cells.items():
            g[i] = cell.g_uS
        return g.reshape(self.shape)

    @property
    def stuck(self):
        """numpy.ndarray of bool: Stuck cells (a copy)."""
        s = self._stuck.copy()
        for i, cell in self._cells.items():
            s[i] = cell.stuck
        return s.reshape(self.shape)

    @property
    def operations(self):
        """int: Pulses and reads applied so far, over every cell."""
        return sum(c.set_pulses + c.reset_pulses + c.reads for c in self._cells.values())

    def force(self, index, *, g_uS=None, stuck=None):
        """Backdoor for directed tests: set a cell's conductance and/or its stuck flag."""
        cell = self.cell(index)
        if g_uS is not None:
            cell.g_uS = _real("g_uS", g_uS)
        if stuck is not None:
            if not isinstance(stuck, (bool, np.bool_)):
                raise TypeError(f"stuck must be a bool, not {type(stuck).__name__}")
            cell.stuck = bool(stuck)
        return cell

    def apply(self, op, row, col, amp=0):
        """One programming-port operation on cell (``row``, ``col``): the G code for READ, else None."""
        return self.cell(row, col).apply(op, amp)


# ---------------------------------------------------------------------------------------------
# The reference against a device, over an array.


@dataclass(frozen=True, eq=False)
class ArrayWriteVerifyResult:
    """Outcome of :func:`write_verify_array` (every array has the targets' shape)."""

    targets_uS: np.ndarray
    g_uS: np.ndarray
    outcome: np.ndarray
    off: np.ndarray
    set_pulses: np.ndarray
    reset_pulses: np.ndarray
    iterations: np.ndarray
    reading: np.ndarray

    @property
    def ok(self):
        return self.outcome == Outcome.PASS

    @property
    def fail_fraction(self):
        return float(np.mean(~self.ok))

    @property
    def pulses_per_cell(self):
        return float(np.mean(self.set_pulses + self.reset_pulses))


def write_verify_array(device, targets_uS, codes=None):
    """Program every cell of ``device`` to ``targets_uS`` with the reference, cell by cell (C order).

    Each cell gets :meth:`WriteVerifyCodes.settings` of its target and the averaging of its
    procedure (``reads_averaged`` / ``off_reads_averaged``).

    Parameters
    ----------
    device : ArrayDevice
    targets_uS : array_like of float
        Of ``device.shape``; each must fit a target code (0 .. 63.75 µS).
    codes : WriteVerifyCodes, optional
        Default ``WriteVerifyCodes.from_params()``.

    Returns
    -------
    ArrayWriteVerifyResult
    """
    if not isinstance(device, ArrayDevice):
        raise TypeError(f"device must be an ArrayDevice, not {type(device).__name__}")
    codes = WriteVerifyCodes.from_params() if codes is None else codes
    if not isinstance(codes, WriteVerifyCodes):
        raise TypeError(f"codes must be a WriteVerifyCodes, not {type(codes).__name__}")
    targets = np.asarray(targets_uS, dtype=np.float64)
    if targets.shape != device.shape:
        raise ValueError(f"targets_uS must have the device's shape {device.shape}, not {targets.shape}")
    n = targets.size
    out = {name: np.zeros(n, dtype=np.int64) for name in ("outcome", "set", "reset", "iterations", "reading")}
    off = np.array([codes.is_off(t) for t in targets.ravel()], dtype=bool)
    device.set_reads_averaged(np.where(off, codes.off_reads_averaged, codes.reads_averaged).reshape(device.shape))
    normal_settings = {}
    off_settings = codes.settings_for_code(0, off=True)
    for i, t in enumerate(targets.ravel()):
        index = np.unravel_index(i, device.shape)
        cell = device.cell(*(int(k) for k in index))
        code = target_code(t)
        if off[i]:
            settings = off_settings
        else:
            settings = normal_settings.get(code)
            if settings is None:
                settings = normal_settings[code] = codes.settings_for_code(code)
        ref = WriteVerifyRef(settings)
        action = ref.action
        while not action.done:
            if action.op == ProgOp.READ:
                action = ref.feed(cell.read_code())
            else:
                (cell.set if action.op == ProgOp.SET else cell.reset)(action.amp * AMP_STEP_V)
                action = ref.feed()
        res = ref.result
        out["outcome"][i] = res.outcome
        out["set"][i] = res.set_pulses
        out["reset"][i] = res.reset_pulses
        out["iterations"][i] = res.iterations
        out["reading"][i] = res.reading
    shape = device.shape
    return ArrayWriteVerifyResult(
        targets_uS=targets.copy(),
        g_uS=device.g_uS,
        outcome=out["outcome"].reshape(shape),
        off=off.reshape(shape),
        set_pulses=out["set"].reshape(shape),
        reset_pulses=out["reset"].reshape(shape),
        iterations=out["iterations"].reshape(shape),
        reading=out["reading"].reshape(shape),
    )


#: A noise-free device whose every pulse slams the cell to a rail: SET to ``g_hi_uS``
#: (60 µS, code 240), RESET to ``g_lo_uS`` (0.1 µS, code 0). It makes the write-verify
#: limits (pulse and iteration limits, the operation budget) exactly countable in tests.
BISTABLE_DEVICE = DeviceParams(
    vth_set_V=0.0,
    vth_set_sigma_V=0.0,
    vth_reset_V=0.0,
    vth_reset_sigma_V=0.0,
    a_set_uS_per_V=1e4,
    a_reset_uS_per_V=1e4,
    gain_set_sigma=0.0,
    gain_reset_sigma=0.0,
    p_set=0.0,
    p_reset=0.0,
    c2c_sigma=0.0,
    jump_prob=0.0,
    read_noise_rel=0.0,
    read_noise_uS=0.0,
    stuck_fraction=0.0,
)

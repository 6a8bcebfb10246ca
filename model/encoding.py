"""Configuration, legality rules and input encoding of one core (pure Python + numpy).

This module is the golden model's view of what the controller is *asked* to do: the
configuration a START accepts (:class:`CoreConfig`, :func:`config_errors`), the phase codes the
controller drives for an input vector (:func:`encode_phases`, :func:`pulses_per_phase`) and the
bit layout of the macro buses (:func:`drive_to_bits` and friends).

Ref: docs/analog-boundary.md §1 (buses), §3 (sequence and phase codes); rtl/core/regs.py
(``ErrorBit`` and the register fields); rtl/core/layouts.py (enumerations).

The model imports nothing from ``cimdv.rtl`` or ``cimdv.tb``; the enumerations below restate
the RTL's, and a test elsewhere checks that the two agree.
"""

from __future__ import annotations

import dataclasses
import enum
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "COUNT_BITS",
    "ERROR_NAMES",
    "MAX_IN_BITS",
    "MAX_OUT_BITS",
    "TIMING_FIELDS",
    "CoreConfig",
    "DriveCode",
    "LineMode",
    "MacroOp",
    "bits_to_bool",
    "bits_to_drive",
    "check_input",
    "cmp_to_bits",
    "config_errors",
    "drive_to_bits",
    "encode_phases",
    "pulses_per_phase",
]

#: Widest input (magnitude bits of an unsigned input); rtl/core/layouts.py MAX_IN_BITS.
MAX_IN_BITS = 8
#: Widest output (sign + magnitude); rtl/core/layouts.py MAX_OUT_BITS.
MAX_OUT_BITS = 8
#: Width of the count field and of the MAX_COUNT register; rtl/core/layouts.py COUNT_BITS.
COUNT_BITS = MAX_OUT_BITS - 1

#: Timing registers checked by ``ERROR.TIMING`` (rtl/core/regs.py), with their reset values.
TIMING_FIELDS = {"T_INIT": 25, "T_SAMPLE": 3, "T_INTEG": 505, "T_COMPARE": 17, "T_DECR": 1, "T_NOISE": 1}

#: The ``ErrorBit`` names a START checks (rtl/core/regs.py ``ErrorBit.CONFIG``), in bit order.
ERROR_NAMES = ("IN_BITS", "OUT_BITS", "PULSE_MULT", "PULSE_OVF", "MAX_COUNT", "TIMING", "BATCH", "LINE_MODE")


class LineMode(enum.IntEnum):
    """Per-input-line configuration (restates ``LineMode`` of rtl/core/layouts.py)."""

    #: Unused line: disconnected forward, alternating +1/-1 backward.
    OFF = 0
    #: Drive the encoded input.
    POS = 1
    #: Drive the negated phase codes of the encoded input.
    NEG = 2
    #: Reserved; a START with it on a driven line raises ``ERROR.LINE_MODE``.
    RESERVED = 3


class MacroOp(enum.IntEnum):
    """Operation the controller asks of the macro (restates ``MacroOp`` of rtl/core/layouts.py)."""

    IDLE = 0
    INIT = 1
    SAMPLE = 2
    INTEGRATE = 3
    COMPARE = 4
    DECREMENT = 5
    NOISE = 6


class DriveCode(enum.IntEnum):
    """2-bit drive code of one line (restates ``DriveCode`` of rtl/core/layouts.py).

    The model works with the signed drive ``p`` in {-1, 0, +1}: ZERO is 0, NEG is -1, POS is +1.
    The code ``0b11`` is never driven.
    """

    ZERO = 0b00
    NEG = 0b01
    POS = 0b10


# Register field widths of the values config_errors() accepts (rtl/core/regs.py).
_FIELD_BITS = {
    "rows": 16,
    "cols": 16,
    "backward": 1,
    "signed": 1,
    "in_bits": 4,
    "out_bits": 4,
    "pulse_mult": 8,
    "max_count": COUNT_BITS,
    "noise_pulses": 8,
    "pulse_bits": 8,
    "batch": 16,
    "watchdog": 32,
}
_TIMING_BITS = 16

# Register reset values: what config_errors() assumes for a field it is not given.
_RESET = {
    "backward": False,
    "signed": True,
    "in_bits": 4,
    "out_bits": 8,
    "pulse_mult": 1,
    "max_count": 127,
    "noise_pulses": 0,
    "pulse_bits": 8,
    "batch": 1,
    "watchdog": 1 << 20,
}


# ---------------------------------------------------------------------------------------------
# Small checkers shared by the model: every message names the parameter.


def _as_int(name, value):
    """Return ``value`` as a Python int; TypeError naming ``name`` if it is not an integer."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, not a bool ({value!r})")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(value).__name__} ({value!r})") from None


def _as_bool(name, value):
    """Return ``value`` as a bool; accepts bools and the integers 0 and 1."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be a bool (or 0/1), not {type(value).__name__} ({value!r})") from None
    if v not in (0, 1):
        raise ValueError(f"{name} must be a bool (or 0/1), not {v}")
    return bool(v)


def _as_enum(cls, name, value):
    """Return ``value`` as a member of the IntEnum ``cls``; errors name ``name``."""
    if isinstance(value, cls):
        return value
    v = _as_int(name, value)
    try:
        return cls(v)
    except ValueError:
        legal = ", ".join(f"{m.name}={m.value}" for m in cls)
        raise ValueError(f"{name} must be one of {legal}, not {v}") from None


def _int_array(name, value, *, ndim=None):
    """Return ``value`` as an int64 numpy array; integer dtypes only (no bool, float, object)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, not dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), not {arr.ndim} (shape {arr.shape})")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} has an element above the int64 range ({int(arr.max())})")
    return arr.astype(np.int64, copy=False)


def _bool_sequence(name, value, length):
    """Return ``value`` (a sequence of bools or 0/1) as a tuple of bools of ``length``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of {length} bools, not {type(value).__name__}")
    if len(value) != length:
        raise ValueError(f"{name} must have {length} entries (one per line), not {len(value)}")
    return tuple(_as_bool(f"{name}[{i}]", v) for i, v in enumerate(value))


def _mode_sequence(name, value, length):
    """Return ``value`` as a tuple of :class:`LineMode` of ``length``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of {length} LineMode values, not {type(value).__name__}")
    if len(value) != length:
        raise ValueError(f"{name} must have {length} entries (one per line), not {len(value)}")
    return tuple(_as_enum(LineMode, f"{name}[{i}]", v) for i, v in enumerate(value))


# ---------------------------------------------------------------------------------------------
# The legality rules of a START, written once for CoreConfig and config_errors().


def _nmag(in_bits, signed):
    return in_bits - 1 if signed else in_bits


def _rule_violations(*, rows, cols, backward, signed, in_bits, out_bits, pulse_mult, max_count, pulse_bits, line_modes):
    """Violations of the START rules of rtl/core/regs.py ``ErrorBit`` (except TIMING and BATCH).

    Returns a list of ``(error_name, parameter, message)``. Dependent checks follow the rule
    documented in :func:`config_errors`: PULSE_OVF only when IN_BITS passes, MAX_COUNT only
    when OUT_BITS passes.
    """
    found = []
    lo_in = 2 if signed else 1
    in_ok = lo_in <= in_bits <= MAX_IN_BITS
    if not in_ok:
        if signed:
            msg = f"in_bits must be 2..{MAX_IN_BITS} when signed (one bit is the sign), not {in_bits}"
        else:
            msg = f"in_bits must be 1..{MAX_IN_BITS}, not {in_bits}"
        found.append(("IN_BITS", "in_bits", msg))
    out_ok = 1 <= out_bits <= MAX_OUT_BITS
    if not out_ok:
        found.append(("OUT_BITS", "out_bits", f"out_bits must be 1..{MAX_OUT_BITS}, not {out_bits}"))
    if pulse_mult < 1:
        found.append(("PULSE_MULT", "pulse_mult", f"pulse_mult must be >= 1, not {pulse_mult}"))
    if in_ok:
        nmag = _nmag(in_bits, signed)
        most = pulse_mult << (nmag - 1) if pulse_mult > 0 else 0
        if most > (1 << pulse_bits) - 1:
            found.append(
                (
                    "PULSE_OVF",
                    "pulse_mult",
                    (
                        f"pulse_mult * 2**(nmag-1) = {pulse_mult} * 2**{nmag - 1} = {most} exceeds the "
                        f"{pulse_bits}-bit pulse counter (max {(1 << pulse_bits) - 1})"
                    ),
                )
            )
    if out_ok:
        hi = (1 << (out_bits - 1)) - 1
        if not 0 <= max_count <= hi:
            found.append(
                ("MAX_COUNT", "max_count", f"max_count must be 0..{hi} for out_bits={out_bits}, not {max_count}")
            )
    n_in = cols if backward else rows
    bad = [i for i in range(n_in) if line_modes[i] == LineMode.RESERVED]
    if bad:
        found.append(
            (
                "LINE_MODE",
                "line_modes",
                (
                    f"line_modes{bad} is RESERVED on a driven line (driven lines: 0..{n_in - 1} "
                    f"{'backward' if backward else 'forward'})"
                ),
            )
        )
    return found


def config_errors(**raw):
    """The ``ERROR`` bits a START raises for raw register values.

    Parameters
    ----------
    **raw
        Register-level values, possibly illegal. ``rows`` and ``cols`` (the elaboration
        geometry) are required. Optional, defaulting to the register reset values:
        ``backward`` (0/1), ``signed`` (0/1, reset 1), ``in_bits`` (reset 4), ``out_bits``
        (reset 8), ``pulse_mult`` (reset 1), ``max_count`` (reset 127), ``noise_pulses``
        (reset 0), ``line_modes`` (``lines`` values 0..3, reset all POS), ``out_mask``
        (``lines`` bools, reset all 1), ``pulse_bits`` (elaboration parameter, default 8),
        ``timing`` (a mapping from ``T_INIT``, ``T_SAMPLE``, ``T_INTEG``, ``T_COMPARE``,
        ``T_DECR``, ``T_NOISE`` to cycles; missing entries take their reset values),
        ``batch`` (reset 1) and ``watchdog`` (reset 2**20).

    Returns
    -------
    frozenset of str
        The names (``ErrorBit`` names of rtl/core/regs.py, upper case) among ``IN_BITS``,
        ``OUT_BITS``, ``PULSE_MULT``, ``PULSE_OVF``, ``MAX_COUNT``, ``TIMING``, ``BATCH``,
        ``LINE_MODE``. Empty when the START is accepted.

    Raises
    ------
    TypeError
        A value of the wrong type, or an unknown parameter name.
    ValueError
        A value that its register field cannot hold (e.g. ``in_bits=16`` in the 4-bit
        ``MODE.in_bits`` field, a negative value), a missing ``rows``/``cols``, or a
        ``line_modes``/``out_mask`` of the wrong length. Such a value cannot reach the RTL,
        so it has no error bit.

    Notes
    -----
    Every check is evaluated independently and all failing bits are reported, except two
    checks that depend on another field, which are evaluated **only when that field is
    legal**:

    * ``PULSE_OVF`` (``pulse_mult * 2**(nmag - 1) > 2**pulse_bits - 1``) is evaluated only
      when ``IN_BITS`` is not raised, because ``nmag`` is undefined otherwise;
    * ``MAX_COUNT`` (``max_count > 2**(out_bits - 1) - 1``) is evaluated only when
      ``OUT_BITS`` is not raised.

    ``PULSE_MULT = 0`` never raises ``PULSE_OVF`` (the product is 0). ``LINE_MODE`` looks at
    the driven lines only (the first ``rows`` lines forward, the first ``cols`` backward).
    ``TIMING`` is raised when any ``T_*`` or ``watchdog`` is 0, ``BATCH`` when ``batch`` is 0.
    ``noise_pulses`` and ``out_mask`` have no error bit.
    """
    allowed = set(_FIELD_BITS) | {"line_modes", "out_mask", "timing"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise TypeError(f"config_errors() got unknown parameter(s) {unknown}; known: {sorted(allowed)}")
    for name in ("rows", "cols"):
        if name not in raw:
            raise ValueError(f"config_errors() needs {name} (the core geometry)")
    vals = {}
    for name, bits in _FIELD_BITS.items():
        value = raw.get(name, _RESET.get(name))
        if name in ("backward", "signed"):
            vals[name] = _as_bool(name, value)
            continue
        v = _as_int(name, value)
        lo = 1 if name in ("rows", "cols", "pulse_bits") else 0
        if not lo <= v <= (1 << bits) - 1:
            raise ValueError(f"{name} must fit its {bits}-bit register field ({lo}..{(1 << bits) - 1}), not {v}")
        vals[name] = v
    lines = max(vals["rows"], vals["cols"])
    modes = raw.get("line_modes")
    modes = (LineMode.POS,) * lines if modes is None else _mode_sequence("line_modes", modes, lines)
    if raw.get("out_mask") is not None:
        _bool_sequence("out_mask", raw["out_mask"], lines)
    timing = dict(TIMING_FIELDS)
    given = raw.get("timing")
    if given is not None:
        if not isinstance(given, Mapping):
            raise TypeError(f"timing must be a mapping of T_* register names to cycles, not {type(given).__name__}")
        for key, value in given.items():
            if key not in TIMING_FIELDS:
                raise ValueError(f"timing has unknown register {key!r}; known: {sorted(TIMING_FIELDS)}")
            v = _as_int(f"timing[{key!r}]", value)
            if not 0 <= v <= (1 << _TIMING_BITS) - 1:
                raise ValueError(
                    f"timing[{key!r}] must fit its {_TIMING_BITS}-bit register (0..{(1 << _TIMING_BITS) - 1}), not {v}"
                )
            timing[key] = v
    names = {
        err
        for err, _, _ in _rule_violations(
            rows=vals["rows"],
            cols=vals["cols"],
            backward=vals["backward"],
            signed=vals["signed"],
            in_bits=vals["in_bits"],
            out_bits=vals["out_bits"],
            pulse_mult=vals["pulse_mult"],
            max_count=vals["max_count"],
            pulse_bits=vals["pulse_bits"],
            line_modes=modes,
        )
    }
    if 0 in timing.values() or vals["watchdog"] == 0:
        names.add("TIMING")
    if vals["batch"] == 0:
        names.add("BATCH")
    return frozenset(names)


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoreConfig:
    """A legal configuration of one core for one vector (what a START accepts).

    Parameters
    ----------
    rows, cols : int
        Geometry of the crossbar (1..65535 each); ``lines = max(rows, cols)``.
    backward : bool
        False: forward MVM (rows driven, columns sensed); True: transposed.
    signed : bool
        Sign-magnitude inputs (True) or unsigned inputs (False).
    in_bits : int
        Input width 1..8; 2..8 when ``signed`` (one of them is the sign).
    out_bits : int
        Output width (sign + magnitude) 1..8.
    pulse_mult : int
        Pulse multiplier M >= 1: bit ``b`` is sampled ``M * 2**b`` times per phase;
        ``M * 2**(nmag - 1)`` must fit the ``pulse_bits``-bit pulse counter.
    max_count : int
        Decrement steps before saturation, 0..2**(out_bits-1)-1 (0 = sign only).
    noise_pulses : int, default 0
        NOISE pulses between integration and the sign compare (0..255).
    line_modes : sequence of LineMode or int, optional
        Mode of each of the ``lines`` lines (default all POS). RESERVED is illegal on the
        driven lines (the first ``rows`` forward, the first ``cols`` backward).
    out_mask : sequence of bool, optional
        Per neuron (``lines`` entries, default all True): convert it (True) or report zeros.
    pulse_bits : int, default 8
        Width of the RTL's per-phase pulse counter (elaboration parameter, 1..255).

    Raises
    ------
    TypeError
        A field of the wrong type.
    ValueError
        A configuration the RTL refuses at START (see :func:`config_errors`) or a value its
        register cannot hold; the message names every offending parameter.

    Notes
    -----
    ``line_modes`` and ``out_mask`` are normalised to tuples of :class:`LineMode` and bool.
    """

    rows: int
    cols: int
    backward: bool
    signed: bool
    in_bits: int
    out_bits: int
    pulse_mult: int
    max_count: int
    noise_pulses: int = 0
    line_modes: tuple | None = None
    out_mask: tuple | None = None
    pulse_bits: int = 8
    _polarity: np.ndarray = field(init=False, repr=False, compare=False)
    _mask: np.ndarray = field(init=False, repr=False, compare=False)
    _off_alt: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        for name in ("rows", "cols", "in_bits", "out_bits", "pulse_mult", "max_count", "noise_pulses", "pulse_bits"):
            put(name, _as_int(name, getattr(self, name)))
        for name in ("backward", "signed"):
            put(name, _as_bool(name, getattr(self, name)))
        problems = {}
        for name, hi in (("rows", 0xFFFF), ("cols", 0xFFFF), ("pulse_bits", 255)):
            if not 1 <= getattr(self, name) <= hi:
                problems[name] = f"{name} must be 1..{hi}, not {getattr(self, name)}"
        if problems:
            raise ValueError("; ".join(problems.values()))
        lines = max(self.rows, self.cols)
        modes = (
            (LineMode.POS,) * lines if self.line_modes is None else _mode_sequence("line_modes", self.line_modes, lines)
        )
        mask = (True,) * lines if self.out_mask is None else _bool_sequence("out_mask", self.out_mask, lines)
        put("line_modes", modes)
        put("out_mask", mask)
        for _, name, msg in _rule_violations(
            rows=self.rows,
            cols=self.cols,
            backward=self.backward,
            signed=self.signed,
            in_bits=self.in_bits,
            out_bits=self.out_bits,
            pulse_mult=self.pulse_mult,
            max_count=self.max_count,
            pulse_bits=self.pulse_bits,
            line_modes=modes,
        ):
            problems.setdefault(name, msg)
        for name, lo, hi in (
            ("pulse_mult", 1, 255),
            ("max_count", 0, (1 << COUNT_BITS) - 1),
            ("noise_pulses", 0, 255),
        ):
            v = getattr(self, name)
            if not lo <= v <= hi:
                problems.setdefault(name, f"{name} must be {lo}..{hi}, not {v}")
        if problems:
            raise ValueError("illegal CoreConfig: " + "; ".join(problems.values()))
        # Derived per-line arrays (read-only), used by the encoder and the exact core.
        codes = np.array([int(m) for m in modes], dtype=np.int64)
        pol = np.zeros(lines, dtype=np.int64)
        pol[codes == LineMode.POS] = 1
        pol[codes == LineMode.NEG] = -1
        pol[self.n_in :] = 0
        alt = np.zeros(lines, dtype=np.int64)
        if self.backward:
            off = np.flatnonzero(codes[: self.n_in] == LineMode.OFF)
            alt[off] = np.where(off % 2 == 0, 1, -1)
        m = np.array(mask, dtype=bool)
        for arr in (pol, alt, m):
            arr.setflags(write=False)
        put("_polarity", pol)
        put("_mask", m)
        put("_off_alt", alt)

    @property
    def lines(self):
        """int: ``max(rows, cols)``, the width of every per-line bus and register array."""
        return max(self.rows, self.cols)

    @property
    def n_in(self):
        """int: Driven lines (input elements): ``rows`` forward, ``cols`` backward."""
        return self.cols if self.backward else self.rows

    @property
    def n_out(self):
        """int: Neurons (output elements): ``cols`` forward, ``rows`` backward."""
        return self.rows if self.backward else self.cols

    @property
    def nmag(self):
        """int: Magnitude bits, i.e. bit planes: ``in_bits``, or ``in_bits - 1`` when signed."""
        return _nmag(self.in_bits, self.signed)

    @property
    def in_range(self):
        """tuple of int: ``(lo, hi)`` of a legal input element (inclusive).

        Unsigned: ``0 .. 2**in_bits - 1``; signed (sign-magnitude):
        ``-(2**(in_bits-1) - 1) .. 2**(in_bits-1) - 1``.
        """
        hi = (1 << self.nmag) - 1
        return (-hi if self.signed else 0, hi)

    @property
    def polarity(self):
        """numpy.ndarray: Per line, +1 (POS), -1 (NEG) or 0 (OFF, or not driven); read-only."""
        return self._polarity

    @property
    def mask(self):
        """numpy.ndarray: ``out_mask`` as a read-only bool array of ``lines`` entries."""
        return self._mask

    def replace(self, **changes):
        """Return a copy with ``changes`` applied (validated like the constructor).

        Parameters
        ----------
        **changes
            Field names and new values.

        Returns
        -------
        CoreConfig
        """
        return dataclasses.replace(self, **changes)


def _check_cfg(cfg):
    if not isinstance(cfg, CoreConfig):
        raise TypeError(f"cfg must be a CoreConfig, not {type(cfg).__name__}")
    return cfg


def check_input(cfg, x, name="x"):
    """Validate one input vector (or a batch, one vector per row) against ``cfg``.

    Parameters
    ----------
    cfg : CoreConfig
        The configuration.
    x : array_like of int
        ``n_in`` elements (or shape ``(batch, n_in)``), each within ``cfg.in_range``.
    name : str
        Parameter name used in error messages.

    Returns
    -------
    numpy.ndarray
        ``x`` as int64.

    Raises
    ------
    TypeError
        ``x`` is not an integer array.
    ValueError
        Wrong length, or an element outside the legal range (``-2**(in_bits-1)`` is illegal
        for signed inputs: sign-magnitude has no such value).
    """
    arr = _int_array(name, x)
    if arr.ndim not in (1, 2) or arr.shape[-1] != cfg.n_in:
        raise ValueError(f"{name} must have {cfg.n_in} elements per vector (n_in), not shape {arr.shape}")
    lo, hi = cfg.in_range
    if arr.size:
        amin, amax = int(arr.min()), int(arr.max())
        if amin < lo or amax > hi:
            bad = np.argwhere((arr < lo) | (arr > hi))[0]
            idx = tuple(int(i) for i in bad)
            kind = "signed" if cfg.signed else "unsigned"
            raise ValueError(
                f"{name}{list(idx)} = {int(arr[idx])} is outside the {kind} {cfg.in_bits}-bit input range {lo}..{hi}"
            )
    return arr


def encode_phases(cfg, x):
    """Phase codes of every line for one input vector (docs/analog-boundary.md §3.1).

    Parameters
    ----------
    cfg : CoreConfig
        The configuration (direction, signedness, widths, line modes).
    x : array_like of int
        ``cfg.n_in`` input elements within ``cfg.in_range``.

    Returns
    -------
    numpy.ndarray
        int8 array of shape ``(nmag, 2, lines)`` with values in {-1, 0, +1}: the drive of
        line ``i`` for bit ``b`` (LSB first) in phase A (index 0) and B (index 1).
        Unsigned: A = 2β−1, B = +1; signed: A = +1 if d > 0 else −1, B = +1 if d ≥ 0 else −1
        (``d = sign(x)·β``); NEG lines negated; OFF lines 0 forward and +1/−1 (even/odd line)
        in A, the opposite in B, backward; lines at or beyond ``n_in`` drive 0.

    Raises
    ------
    TypeError, ValueError
        ``cfg`` is not a CoreConfig, or ``x`` is not a legal input vector (see
        :func:`check_input`).
    """
    _check_cfg(cfg)
    x = check_input(cfg, x)
    if x.ndim != 1:
        raise ValueError(f"x must be one vector of {cfg.n_in} elements, not shape {x.shape}")
    n, nmag = cfg.n_in, cfg.nmag
    beta = (np.abs(x)[None, :] >> np.arange(nmag)[:, None]) & 1
    if cfg.signed:
        d = np.sign(x)[None, :] * beta
        a = np.where(d > 0, 1, -1)
        b = np.where(d >= 0, 1, -1)
    else:
        a = 2 * beta - 1
        b = np.ones_like(beta)
    pol = cfg.polarity[:n]
    out = np.zeros((nmag, 2, cfg.lines), dtype=np.int8)
    out[:, 0, :n] = a * pol
    out[:, 1, :n] = b * pol
    if cfg.backward:
        alt = cfg._off_alt[:n]
        off = alt != 0
        out[:, 0, :n][:, off] = alt[off]
        out[:, 1, :n][:, off] = -alt[off]
    return out


def pulses_per_phase(cfg):
    """SAMPLE+INTEGRATE pairs per phase of each bit: ``M * 2**b`` for ``b`` in ``range(nmag)``.

    Parameters
    ----------
    cfg : CoreConfig
        The configuration.

    Returns
    -------
    list of int
    """
    _check_cfg(cfg)
    return [cfg.pulse_mult << b for b in range(cfg.nmag)]


# ---------------------------------------------------------------------------------------------
# Bus codecs (docs/analog-boundary.md §1): line / neuron i at the low end.


def _bits_of(value, nbits, name):
    v = _as_int(name, value)
    if not 0 <= v < (1 << nbits):
        raise ValueError(f"{name} must be 0..2**{nbits}-1, not {v:#x}")
    nbytes = max(1, (nbits + 7) // 8)
    raw = np.frombuffer(v.to_bytes(nbytes, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:nbits]


def _int_of(bits):
    packed = np.packbits(np.asarray(bits, dtype=np.uint8), bitorder="little")
    return int.from_bytes(packed.tobytes(), "little")


def drive_to_bits(codes):
    """Pack per-line drives into the ``drive`` bus value.

    Parameters
    ----------
    codes : array_like of int
        One signed drive per line, each in {-1, 0, +1}.

    Returns
    -------
    int
        Line ``i`` in bits ``2i+1:2i``: +1 → POS (``0b10``), −1 → NEG (``0b01``), 0 → ZERO.

    Raises
    ------
    TypeError, ValueError
        ``codes`` is not a 1-D integer array of values in {-1, 0, +1}.
    """
    c = _int_array("codes", codes, ndim=1)
    if c.size and (int(c.min()) < -1 or int(c.max()) > 1):
        raise ValueError("codes must hold only -1, 0 and +1")
    bits = np.zeros((c.size, 2), dtype=np.uint8)
    bits[:, 1] = c == 1
    bits[:, 0] = c == -1
    return _int_of(bits.reshape(-1))


def bits_to_drive(value, lines):
    """Unpack a ``drive`` bus value into per-line signed drives.

    Parameters
    ----------
    value : int
        The bus value (``2 * lines`` bits).
    lines : int
        Number of lines.

    Returns
    -------
    numpy.ndarray
        int8 array of ``lines`` values in {-1, 0, +1}.

    Raises
    ------
    ValueError
        ``value`` does not fit ``2 * lines`` bits, or a line carries the illegal code ``0b11``.
    """
    lines = _as_int("lines", lines)
    if lines < 1:
        raise ValueError(f"lines must be >= 1, not {lines}")
    bits = _bits_of(value, 2 * lines, "value").reshape(lines, 2)
    both = bits[:, 0] & bits[:, 1]
    if both.any():
        bad = np.flatnonzero(both).tolist()
        raise ValueError(f"value {value:#x} drives the illegal code 0b11 on line(s) {bad}")
    return (bits[:, 1].astype(np.int8) - bits[:, 0].astype(np.int8)).astype(np.int8)


def cmp_to_bits(cmp):
    """Pack per-neuron bools (``cmp`` or ``dec_up``) into a bus value, neuron ``j`` at bit ``j``.

    Parameters
    ----------
    cmp : array_like of bool
        One flag per neuron.

    Returns
    -------
    int
    """
    arr = np.asarray(cmp)
    if arr.dtype != np.bool_ or arr.ndim != 1:
        raise TypeError(f"cmp must be a 1-D bool array, not dtype {arr.dtype} with shape {arr.shape}")
    return _int_of(arr)


def bits_to_bool(value, n):
    """Unpack a per-neuron bus value (``cmp`` or ``dec_up``) into ``n`` bools.

    Parameters
    ----------
    value : int
        The bus value, ``0 <= value < 2**n``.
    n : int
        Number of neurons.

    Returns
    -------
    numpy.ndarray
        bool array of ``n`` entries; entry ``j`` is bit ``j``.
    """
    n = _as_int("n", n)
    if n < 1:
        raise ValueError(f"n must be >= 1, not {n}")
    return _bits_of(value, n, "value").astype(bool)

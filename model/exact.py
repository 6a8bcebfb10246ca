"""Exact (bit-exact, integer) golden model of one core.

Two views of the same macro (docs/analog-boundary.md §4):

(a) :class:`ExactCore` — transaction level: one input vector in, one :class:`MvmResult` out,
    computed in closed form (one exact matrix product, the LFSR noise, closed-form conversion).
(b) :class:`MacroState` — cycle level: the macro state that reacts to each ``MacroOp`` the
    controller drives (the testbench's macro responder wraps it), and :func:`run_sequence`, a
    reference sequencer that drives it through exactly the operation sequence of §3.

Property tests prove (a) == (b). Both share the LFSR (:func:`lfsr_step`) and the exact matrix
product (:class:`Crossbar`).

Exactness of the matrix products: integer operands go through float32 BLAS when every partial
sum is provably below 2**24, float64 BLAS below 2**53, and numpy's int64 matmul otherwise.
The bound used is ``max|x| * max_j sum_i g[i, j]`` (forward; row sums backward): any partial
sum, in any summation order a BLAS kernel picks, is a sum of a subset of the non-negative
terms ``|x_i| g[i, j]`` and so is bounded by it, and an IEEE sum of integers whose exact result
is representable is exact (FMA included). Integrators are int64; every operation that could
leave the range ``|v| <= 2**62`` is refused (ValueError at configuration, OverflowError at run
time), so no value ever wraps.

The model imports neither amaranth nor cocotb nor anything of ``cimdv.rtl``/``cimdv.tb``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .encoding import (
    COUNT_BITS,
    ERROR_NAMES,
    MAX_IN_BITS,
    MAX_OUT_BITS,
    TIMING_FIELDS,
    CoreConfig,
    DriveCode,
    LineMode,
    MacroOp,
    _as_bool,
    _as_enum,
    _as_int,
    _check_cfg,
    _int_array,
    bits_to_bool,
    bits_to_drive,
    check_input,
    cmp_to_bits,
    config_errors,
    drive_to_bits,
    encode_phases,
    pulses_per_phase,
)

__all__ = [
    "MacroBus",
    "COUNT_BITS",
    "ERROR_NAMES",
    "LFSR_MASK",
    "LFSR_SEED_STRIDE",
    "MAX_IN_BITS",
    "MAX_OUT_BITS",
    "TIMING_FIELDS",
    "VALUE_LIMIT",
    "CoreConfig",
    "Crossbar",
    "DriveCode",
    "ExactCore",
    "LineMode",
    "MacroOp",
    "MacroParams",
    "MacroState",
    "MvmResult",
    "bits_to_bool",
    "bits_to_drive",
    "check_input",
    "cmp_to_bits",
    "config_errors",
    "convert",
    "decode",
    "drive_to_bits",
    "encode_phases",
    "lfsr_seeds",
    "lfsr_step",
    "pulses_per_phase",
    "run_sequence",
]

#: Galois mask of x^16 + x^14 + x^13 + x^11 + 1 (docs/analog-boundary.md §4).
LFSR_MASK = 0xB400
#: Seed of neuron ``j``: ``(noise_seed + LFSR_SEED_STRIDE * (j + 1)) mod 2**16`` (0 -> 1).
LFSR_SEED_STRIDE = 0x9E37
#: Largest magnitude any integrator, threshold, quantum or noise charge may take (int64 headroom).
VALUE_LIMIT = 1 << 62

_F32_EXACT = 1 << 24
_F64_EXACT = 1 << 53


@dataclass(frozen=True)
class MacroParams:
    """Analog parameters of the exact macro (identical for every neuron).

    Parameters
    ----------
    delta : int
        Decrement quantum Δ >= 1 (charge moved by one DECREMENT).
    threshold : int, default 0
        Comparator threshold θ: COMPARE answers ``integrator > θ``.
    noise_q : int, default 0
        Charge ``q >= 0`` one NOISE pulse adds (+q) or removes (−q).
    noise_seed : int, default 1
        16-bit seed (0..65535) from which the per-neuron LFSR seeds derive.

    Raises
    ------
    TypeError
        A non-integer field.
    ValueError
        A field out of range (``delta``, ``|threshold|`` and ``noise_q`` are also limited to
        ``VALUE_LIMIT`` = 2**62 so that the int64 integrators cannot wrap).
    """

    delta: int
    threshold: int = 0
    noise_q: int = 0
    noise_seed: int = 1

    def __post_init__(self):
        for name in ("delta", "threshold", "noise_q", "noise_seed"):
            object.__setattr__(self, name, _as_int(name, getattr(self, name)))
        if not 1 <= self.delta <= VALUE_LIMIT:
            raise ValueError(f"delta must be 1..2**62, not {self.delta}")
        if not -VALUE_LIMIT <= self.threshold <= VALUE_LIMIT:
            raise ValueError(f"threshold must be within ±2**62, not {self.threshold}")
        if not 0 <= self.noise_q <= VALUE_LIMIT:
            raise ValueError(f"noise_q must be 0..2**62, not {self.noise_q}")
        if not 0 <= self.noise_seed <= 0xFFFF:
            raise ValueError(f"noise_seed must be 0..65535, not {self.noise_seed}")


def _check_params(params):
    if not isinstance(params, MacroParams):
        raise TypeError(f"params must be a MacroParams, not {type(params).__name__}")
    return params


# ---------------------------------------------------------------------------------------------
# LFSR: the one implementation both views use.


def lfsr_seeds(noise_seed, n):
    """Initial LFSR states of ``n`` neurons.

    Parameters
    ----------
    noise_seed : int
        16-bit seed (0..65535).
    n : int
        Number of neurons (the macro has ``lines`` of them).

    Returns
    -------
    numpy.ndarray
        uint32 array: state of neuron ``j`` = ``(noise_seed + 0x9E37 * (j + 1)) mod 2**16``,
        replaced by 1 if 0 (the all-zero state would lock the LFSR).
    """
    noise_seed = _as_int("noise_seed", noise_seed)
    if not 0 <= noise_seed <= 0xFFFF:
        raise ValueError(f"noise_seed must be 0..65535, not {noise_seed}")
    n = _as_int("n", n)
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    s = (noise_seed + LFSR_SEED_STRIDE * (np.arange(n, dtype=np.int64) + 1)) % (1 << 16)
    s[s == 0] = 1
    return s.astype(np.uint32)


def lfsr_step(state):
    """One step of the 16-bit Galois LFSR (mask ``0xB400``).

    Parameters
    ----------
    state : int or numpy.ndarray of unsigned int
        Current state(s), 1..65535.

    Returns
    -------
    bit : int or numpy.ndarray
        Output: the LSB of ``state`` *before* the step. A NOISE pulse adds ``+q`` for 1 and
        ``−q`` for 0.
    next_state : int or numpy.ndarray
        ``(state >> 1) ^ (0xB400 if bit else 0)``.
    """
    bit = state & 1
    return bit, (state >> 1) ^ (bit * LFSR_MASK)


# ---------------------------------------------------------------------------------------------


def _check_weights(weights):
    g = np.asarray(weights)
    if g.dtype.kind not in "iu":
        raise TypeError(f"weights must be an integer array of conductance codes, not dtype {g.dtype}")
    if g.ndim != 2:
        raise ValueError(f"weights must be 2-D (rows, cols), not {g.ndim}-D with shape {g.shape}")
    if g.shape[0] < 1 or g.shape[1] < 1:
        raise ValueError(f"weights must have at least one row and one column, not shape {g.shape}")
    if g.dtype.kind == "i" and int(g.min()) < 0:
        i, j = (int(v) for v in np.argwhere(g < 0)[0])
        raise ValueError(f"weights must be >= 0 (conductance codes), but weights[{i}, {j}] = {int(g[i, j])}")
    top = int(g.max())
    if top * max(g.shape) < VALUE_LIMIT:
        g = g.astype(np.int64)
        colsum, rowsum = int(g.sum(axis=0).max()), int(g.sum(axis=1).max())
    else:
        big = g.astype(object)
        colsum, rowsum = int(big.sum(axis=0).max()), int(big.sum(axis=1).max())
        if max(colsum, rowsum) > VALUE_LIMIT:
            raise ValueError(
                f"weights are too large: a line sum of {max(colsum, rowsum)} exceeds 2**62, "
                "so one SAMPLE could overflow the int64 integrator"
            )
        g = g.astype(np.int64)
    g = np.array(g, dtype=np.int64, copy=True)
    g.setflags(write=False)
    return g, colsum, rowsum


class Crossbar:
    """Integer conductance codes and the exact matrix products of both directions.

    Parameters
    ----------
    weights : array_like of int
        ``(rows, cols)`` conductance codes ``g[i, j] >= 0`` (integer dtype).

    Raises
    ------
    TypeError
        ``weights`` has a non-integer dtype (float, bool, object; NaN included).
    ValueError
        ``weights`` is not 2-D, is empty, has a negative code, or has a line sum above 2**62.
    """

    def __init__(self, weights):
        self._g, self._colsum, self._rowsum = _check_weights(weights)
        self._f32 = None
        self._f64 = None

    @property
    def g(self):
        """numpy.ndarray: The codes, int64 ``(rows, cols)``, read-only."""
        return self._g

    @property
    def rows(self):
        """int: Rows of the array."""
        return self._g.shape[0]

    @property
    def cols(self):
        """int: Columns of the array."""
        return self._g.shape[1]

    @property
    def lines(self):
        """int: ``max(rows, cols)``."""
        return max(self._g.shape)

    def line_sum(self, backward):
        """Largest sum of codes a neuron sees.

        Parameters
        ----------
        backward : bool
            Direction.

        Returns
        -------
        int
            ``max_j sum_i g[i, j]`` forward, ``max_i sum_j g[i, j]`` backward.
        """
        return self._rowsum if backward else self._colsum

    def dot(self, xe, backward, xmax):
        """Exact product of integer drive(s) with the array.

        Parameters
        ----------
        xe : numpy.ndarray of int64
            ``(n_in,)`` or ``(batch, n_in)``: signed effective inputs of the driven lines.
        backward : bool
            False: ``y_j = sum_i xe_i g[i, j]``; True: ``y_i = sum_j xe_j g[i, j]``.
        xmax : int
            A bound on ``|xe|`` (selects the exact arithmetic, see the module docstring).

        Returns
        -------
        numpy.ndarray of int64
            ``(n_out,)`` or ``(batch, n_out)``.
        """
        bound = xmax * self.line_sum(backward)
        if bound < _F32_EXACT:
            if self._f32 is None:
                self._f32 = self._g.astype(np.float32)
            g, xf = self._f32, xe.astype(np.float32)
        elif bound < _F64_EXACT:
            if self._f64 is None:
                self._f64 = self._g.astype(np.float64)
            g, xf = self._f64, xe.astype(np.float64)
        else:
            g, xf = self._g, xe
        y = xf @ g.T if backward else xf @ g
        return y.astype(np.int64, copy=False)


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MvmResult:
    """Result of one vector.

    Parameters
    ----------
    sign : numpy.ndarray of uint8
        Per neuron (``n_out``): 1 = negative (integrator not above θ at the sign compare).
    count : numpy.ndarray of int64
        Decrements until the comparator flipped (1..max_count), ``max_count`` when saturated,
        0 for sign-only conversion and masked-out neurons.
    sat : numpy.ndarray of bool
        The comparator never flipped within ``max_count`` decrements.
    integ : numpy.ndarray of int64
        Integrator after integration and noise, before conversion (every neuron, masked-out
        ones included: it is a diagnostic, not an output of the RTL).
    steps : int
        DECREMENT/COMPARE iterations of the early-stopping loop (``LAST_STEPS``):
        ``min(max_count, max k_j over masked-in neurons)``, 0 when none is masked in or
        ``max_count`` is 0.

    Notes
    -----
    ``==`` compares every field exactly; :meth:`mismatches` says which fields differ.
    """

    sign: np.ndarray
    count: np.ndarray
    sat: np.ndarray
    integ: np.ndarray
    steps: int

    def mismatches(self, other):
        """Names of the fields that differ from ``other``.

        Parameters
        ----------
        other : MvmResult

        Returns
        -------
        list of str
        """
        if not isinstance(other, MvmResult):
            raise TypeError(f"other must be an MvmResult, not {type(other).__name__}")
        bad = [n for n in ("sign", "count", "sat", "integ") if not np.array_equal(getattr(self, n), getattr(other, n))]
        if self.steps != other.steps:
            bad.append("steps")
        return bad

    def __eq__(self, other):
        if not isinstance(other, MvmResult):
            return NotImplemented
        return not self.mismatches(other)

    @property
    def signed(self):
        """numpy.ndarray of int64: ``(1 - 2*sign) * count``, what the chip's reduction sums."""
        return np.where(self.sign.astype(bool), -self.count, self.count).astype(np.int64)

    @property
    def values(self):
        """numpy.ndarray: Host decode of every neuron, see :func:`decode`."""
        return decode(self.sign, self.count)


def decode(sign, count):
    """Mid-rise decode of the host: ``(1 - 2*sign) * (count - 0.5)``, and 0.0 for count 0.

    Parameters
    ----------
    sign : array_like of int
        Sign bits (0 or 1).
    count : array_like of int
        Counts (>= 0), same shape as ``sign``.

    Returns
    -------
    numpy.ndarray of float64
    """
    s = _int_array("sign", sign)
    c = _int_array("count", count)
    if s.shape != c.shape:
        raise ValueError(f"sign and count must have the same shape, not {s.shape} and {c.shape}")
    if s.size and (int(s.min()) < 0 or int(s.max()) > 1):
        raise ValueError("sign must hold only 0 and 1")
    if c.size and int(c.min()) < 0:
        raise ValueError("count must be >= 0")
    return np.where(c == 0, 0.0, (1 - 2 * s) * (c - 0.5))


def convert(cfg, params, integ):
    """Closed-form conversion of docs/analog-boundary.md §4.1 over the last axis of ``integ``.

    Returns ``(sign, count, sat, steps)``: int64 integrators of any leading shape in, the
    controller's outputs per neuron out (``steps`` per vector: the DECREMENTs it ran).
    ``params`` needs ``threshold`` and ``delta``; they may be per-neuron arrays (``n_out``
    entries), which broadcast over the neurons.
    """
    n_out = cfg.n_out
    mask = cfg.mask[:n_out]
    u = integ - params.threshold
    pos = u > 0
    q = (-u) // params.delta
    k = np.where(pos, -q, q + 1)  # ceil(u/Δ) for u > 0; floor(-u/Δ) + 1 otherwise
    sign = (~pos & mask).astype(np.uint8)
    mc = cfg.max_count
    if mc == 0:
        count = np.zeros(integ.shape, dtype=np.int64)
        sat = np.zeros(integ.shape, dtype=bool)
        steps = np.zeros(integ.shape[:-1], dtype=np.int64)
    else:
        sat = (k > mc) & mask
        count = np.where(mask, np.minimum(k, mc), 0)
        steps = np.minimum(np.where(mask, k, 0).max(axis=-1), mc)
    return sign, count, sat, steps


class _LfsrBank:
    """Per-neuron LFSR states of one macro (``lines`` neurons)."""

    def __init__(self, seed, n):
        self.seed = seed
        self.state = lfsr_seeds(seed, n)

    def pulse(self):
        """One NOISE pulse of every neuron: returns the output bits, advances the states."""
        bit, self.state = lfsr_step(self.state)
        return bit


class _CoreBase:
    """What both views of the core own: the crossbar, the macro parameters and the LFSRs."""

    def __init__(self, weights, params):
        self._xbar = Crossbar(weights)
        self._params = _check_params(params)
        self._lfsr = _LfsrBank(params.noise_seed, self._xbar.lines)

    @property
    def weights(self):
        """numpy.ndarray: The conductance codes (int64, read-only)."""
        return self._xbar.g

    @property
    def params(self):
        """MacroParams: The analog parameters."""
        return self._params

    @property
    def rows(self):
        """int: Rows of the array."""
        return self._xbar.rows

    @property
    def cols(self):
        """int: Columns of the array."""
        return self._xbar.cols

    @property
    def lines(self):
        """int: ``max(rows, cols)``: width of the buses, number of neurons (each with an LFSR)."""
        return self._xbar.lines

    @property
    def lfsr_state(self):
        """numpy.ndarray: Copy of the per-neuron LFSR states (uint32, ``lines`` entries)."""
        return self._lfsr.state.copy()

    def reset_lfsr(self):
        """Reload every LFSR from ``params.noise_seed`` (as after construction)."""
        self._lfsr = _LfsrBank(self._params.noise_seed, self.lines)


class ExactCore(_CoreBase):
    """Transaction-level exact core: ``mvm(cfg, x)`` in closed form.

    Parameters
    ----------
    weights : array_like of int
        ``(rows, cols)`` conductance codes ``>= 0`` (integer dtype).
    params : MacroParams
        Δ, θ and the noise parameters.

    Raises
    ------
    TypeError, ValueError
        Bad ``weights`` (see :class:`Crossbar`) or ``params`` not a MacroParams.

    Notes
    -----
    The core owns the ``lines`` per-neuron LFSRs; each ``mvm`` with ``noise_pulses = P``
    advances every one of them ``P`` steps, exactly as ``P`` NOISE operations do on a
    :class:`MacroState`, so a sequence of vectors stays equal between the two views.
    """

    def _check(self, cfg):
        _check_cfg(cfg)
        if (cfg.rows, cfg.cols) != (self.rows, self.cols):
            raise ValueError(f"cfg is for a {cfg.rows}x{cfg.cols} core, but the weights are {self.rows}x{self.cols}")
        p = self._params
        hi = cfg.in_range[1]
        bound = 2 * cfg.pulse_mult * hi * self._xbar.line_sum(cfg.backward) + cfg.noise_pulses * p.noise_q
        if bound > VALUE_LIMIT:
            raise ValueError(
                f"weights, cfg and params allow an integrator of {bound} > 2**62 "
                "(int64 headroom): use smaller weights, pulse_mult or noise_q"
            )
        return hi

    def _noise(self, cfg, n_vectors):
        """Noise charge of ``n_vectors`` consecutive vectors: shape (n_vectors, lines)."""
        p = cfg.noise_pulses
        ones = np.zeros((n_vectors, self.lines), dtype=np.int64)
        for v in range(n_vectors):
            for _ in range(p):
                ones[v] += self._lfsr.pulse()
        return (2 * ones - p) * self._params.noise_q

    def mvm(self, cfg, x):
        """One vector through the core, in closed form.

        Parameters
        ----------
        cfg : CoreConfig
            The configuration; its geometry must match the weights.
        x : array_like of int
            ``cfg.n_in`` input elements within ``cfg.in_range``.

        Returns
        -------
        MvmResult
            ``integ = 2 * M * (x_eff @ G)`` (forward; ``G @ x_eff`` backward) plus the NOISE
            charges, with ``x_eff = x * polarity`` (0 on OFF lines), converted per §4.1.

        Raises
        ------
        TypeError, ValueError
            Bad ``cfg`` or ``x`` (messages name them), or weights too large for int64.
        """
        hi = self._check(cfg)
        x = check_input(cfg, x)
        if x.ndim != 1:
            raise ValueError(f"x must be one vector of {cfg.n_in} elements, not shape {x.shape}; use mvm_batch")
        xe = x * cfg.polarity[: cfg.n_in]
        integ = self._xbar.dot(xe, cfg.backward, hi)
        integ *= 2 * cfg.pulse_mult
        if cfg.noise_pulses:
            integ += self._noise(cfg, 1)[0, : cfg.n_out]
        sign, count, sat, steps = convert(cfg, self._params, integ)
        return MvmResult(sign, count, sat, integ, int(steps))

    def mvm_batch(self, cfg, xs):
        """Several vectors in sequence (one matrix product for all of them).

        Parameters
        ----------
        cfg : CoreConfig
            The configuration, the same for every vector.
        xs : array_like of int
            Shape ``(batch, n_in)``.

        Returns
        -------
        list of MvmResult
            Equal to ``[self.mvm(cfg, x) for x in xs]`` (the LFSRs advance vector by vector).
        """
        hi = self._check(cfg)
        xs = check_input(cfg, xs, "xs")
        if xs.ndim != 2:
            raise ValueError(f"xs must be 2-D (batch, n_in), not shape {xs.shape}")
        xe = xs * cfg.polarity[: cfg.n_in]
        integ = self._xbar.dot(xe, cfg.backward, hi)
        integ *= 2 * cfg.pulse_mult
        if cfg.noise_pulses:
            integ += self._noise(cfg, xs.shape[0])[:, : cfg.n_out]
        sign, count, sat, steps = convert(cfg, self._params, integ)
        return [MvmResult(sign[v], count[v], sat[v], integ[v], int(steps[v])) for v in range(xs.shape[0])]


# ---------------------------------------------------------------------------------------------


class MacroBus:
    """The bus side shared by every macro state: one operation from raw bus values.

    A state provides ``init``, ``integrate``, ``compare``, ``decrement``, ``noise``, a
    ``_sample_bits(drive_bits)`` for SAMPLE, ``lines`` and a ``_backward`` direction;
    ``_drive_key``/``_drive_codes`` cache the last decoded drive.
    """

    _drive_key = None
    _drive_codes = None

    def _codes(self, drive_bits):
        """Per-line drive codes of a ``drive`` bus value (decoded once per distinct value)."""
        if drive_bits != self._drive_key:
            self._drive_codes = bits_to_drive(drive_bits, self.lines)
            self._drive_key = drive_bits
        return self._drive_codes

    def apply(self, op, *, drive_bits=None, dec_up_bits=None, backward=None):
        """Perform one operation from raw bus values, as a responder reads them from the RTL.

        Parameters
        ----------
        op : MacroOp or int
            The operation (``macro__op``).
        drive_bits : int, optional
            ``macro__drive`` (2 bits per line); required for SAMPLE, not read otherwise (the
            "drive all ZERO" guarantees of the other operations are the protocol monitor's
            to check).
        dec_up_bits : int, optional
            ``macro__dec_up`` (1 bit per neuron); required for DECREMENT, not read otherwise.
        backward : bool or int, optional
            ``macro__backward``; when given, it sets the direction before the operation.

        Returns
        -------
        int or None
            The new ``macro__cmp`` value after COMPARE (neuron ``j`` at bit ``j``), else None.

        Raises
        ------
        ValueError
            Unknown ``op``; missing or malformed ``drive_bits``/``dec_up_bits``.
        """
        op = _as_enum(MacroOp, "op", op)
        if backward is not None:
            self._backward = _as_bool("backward", backward)
        if op == MacroOp.IDLE:
            return None
        if op == MacroOp.INIT:
            self.init()
        elif op == MacroOp.SAMPLE:
            if drive_bits is None:
                raise ValueError("drive_bits is required for SAMPLE")
            self._sample_bits(drive_bits)
        elif op == MacroOp.INTEGRATE:
            self.integrate()
        elif op == MacroOp.COMPARE:
            return cmp_to_bits(self.compare())
        elif op == MacroOp.DECREMENT:
            if dec_up_bits is None:
                raise ValueError("dec_up_bits is required for DECREMENT")
            self.decrement(bits_to_bool(dec_up_bits, self.lines))
        elif op == MacroOp.NOISE:
            self.noise()
        return None


class MacroState(MacroBus, _CoreBase):
    """Cycle-level exact macro: reacts to one ``MacroOp`` at a time.

    Parameters
    ----------
    weights : array_like of int
        ``(rows, cols)`` conductance codes ``>= 0`` (integer dtype).
    params : MacroParams
        Δ, θ and the noise parameters.

    Notes
    -----
    State: one int64 integrator and one sample latch per neuron (``lines`` of each), the
    direction (``backward``, latched by INIT or SAMPLE or given to :meth:`apply`), and the
    per-neuron LFSRs, which INIT does not touch. INIT clears integrators and sample latches.
    Neurons that do not exist in the current direction never receive charge from SAMPLE and
    answer False to COMPARE (NOISE and DECREMENT still act on them; nobody reads them).
    """

    def __init__(self, weights, params):
        super().__init__(weights, params)
        n = self._xbar.lines
        self._integ = np.zeros(n, dtype=np.int64)
        self._sampled = np.zeros(n, dtype=np.int64)
        self._backward = False
        self._bound = 0  # upper bound of max|integrator|, exact values checked when it grows large
        self._sample_key = None
        self._drive_key = None
        self._drive_codes = None

    # -- read-only views ---------------------------------------------------------------------

    @property
    def backward(self):
        """bool: Current direction."""
        return self._backward

    @property
    def integrator(self):
        """numpy.ndarray: Copy of the integrators (int64, ``lines`` entries)."""
        return self._integ.copy()

    def _n_out(self):
        return self.rows if self._backward else self.cols

    def _grow(self, inc):
        """Account for an add of magnitude <= inc to the integrators; refuse to wrap int64."""
        self._bound += inc
        if self._bound > VALUE_LIMIT:
            self._bound = int(np.abs(self._integ).max()) + inc
            if self._bound > VALUE_LIMIT:
                raise OverflowError(
                    f"integrator would exceed 2**62 (int64 headroom): max |integrator| + {inc} = {self._bound}"
                )

    # -- operations ----------------------------------------------------------------------------

    def init(self, backward=None):
        """INIT: integrators and sample latches := 0 (CDS); LFSRs untouched.

        Parameters
        ----------
        backward : bool, optional
            Direction of the coming vector; unchanged when None.
        """
        if backward is not None:
            self._backward = _as_bool("backward", backward)
        self._integ[:] = 0
        self._sampled[:] = 0
        self._bound = 0
        self._sample_key = None

    def sample(self, codes, backward):
        """SAMPLE: latch ``s = sum_i p_i g[i, :]`` (forward) or ``sum_j p_j g[:, j]`` (backward).

        Parameters
        ----------
        codes : array_like of int
            Signed drive of each of the ``lines`` lines, in {-1, 0, +1}.
        backward : bool
            Direction.

        Raises
        ------
        ValueError
            Wrong length, a value outside {-1, 0, +1}, or a non-zero drive on a line that does
            not exist in this direction (``i >= rows`` forward, ``i >= cols`` backward).
        """
        backward = _as_bool("backward", backward)
        c = _int_array("codes", codes, ndim=1)
        if c.size != self.lines:
            raise ValueError(f"codes must have {self.lines} entries (lines), not {c.size}")
        self._backward = backward
        key = (backward, c.tobytes())
        if key == self._sample_key:
            return
        if int(c.min()) < -1 or int(c.max()) > 1:
            raise ValueError("codes must hold only -1, 0 and +1")
        n_in = self.cols if backward else self.rows
        if c[n_in:].any():
            bad = (np.flatnonzero(c[n_in:]) + n_in).tolist()
            raise ValueError(
                f"codes drive line(s) {bad}, which do not exist "
                f"{'backward' if backward else 'forward'} (only {n_in} driven lines)"
            )
        s = self._xbar.dot(c[:n_in], backward, 1)
        self._sampled[:] = 0
        self._sampled[: s.size] = s
        self._sample_key = key

    def integrate(self):
        """INTEGRATE: add the latched sample to every integrator."""
        self._grow(self._xbar.line_sum(self._backward))
        self._integ += self._sampled

    def noise(self):
        """NOISE: add ``+q`` (LFSR output 1) or ``−q`` (0) to every integrator; step every LFSR."""
        q = self._params.noise_q
        bit = self._lfsr.pulse()
        self._grow(q)
        self._integ += (2 * bit.astype(np.int64) - 1) * q

    def compare(self):
        """COMPARE: ``integrator > θ`` per neuron.

        Returns
        -------
        numpy.ndarray of bool
            ``lines`` entries; False for neurons that do not exist in the current direction.
        """
        out = self._integ > self._params.threshold
        out[self._n_out() :] = False
        return out

    def decrement(self, dec_up):
        """DECREMENT: integrator += Δ where ``dec_up`` else −Δ.

        Parameters
        ----------
        dec_up : array_like of bool
            ``lines`` flags.
        """
        up = np.asarray(dec_up)
        if up.dtype != np.bool_ or up.shape != (self.lines,):
            raise TypeError(
                f"dec_up must be a bool array of {self.lines} entries, not dtype {up.dtype} shape {up.shape}"
            )
        d = self._params.delta
        self._grow(d)
        self._integ += np.where(up, d, -d)

    def _sample_bits(self, drive_bits):
        """SAMPLE from the raw ``drive`` bus value (see :class:`MacroBus`)."""
        self.sample(self._codes(drive_bits), self._backward)


def run_sequence(cfg, x, state):
    """Reference sequencer: drive ``state`` through the op sequence of docs/analog-boundary.md §3.

    Parameters
    ----------
    cfg : CoreConfig
        The configuration; its geometry must match ``state``.
    x : array_like of int
        ``cfg.n_in`` input elements within ``cfg.in_range``.
    state : MacroState or PhysicalMacroState
        The macro; it is driven through its ``apply`` with raw bus values, so the bus codecs
        are part of what this exercises. Any object with ``apply``, ``rows``, ``cols`` and
        ``integrator`` works (the physical macro of :mod:`cimdv.model.physical` does).

    Returns
    -------
    MvmResult
        What the controller would report, found by stepping: INIT; for each bit (LSB first)
        and phase A, B: ``M * 2**b`` times SAMPLE + INTEGRATE; ``noise_pulses`` NOISE (IDLE in
        between); sign COMPARE (``sign = not cmp``, ``dec_up = sign``); up to ``max_count``
        times DECREMENT + COMPARE, stopping early once every masked-in neuron has flipped
        (count = the iteration of its first flip; never flipped: count = max_count, sat);
        masked-out neurons report zeros; IDLE.
    """
    _check_cfg(cfg)
    if not all(hasattr(state, name) for name in ("apply", "rows", "cols", "integrator")):
        raise TypeError(f"state must be a macro state (MacroState or PhysicalMacroState), not {type(state).__name__}")
    if (cfg.rows, cfg.cols) != (state.rows, state.cols):
        raise ValueError(f"cfg is for a {cfg.rows}x{cfg.cols} core, but state is {state.rows}x{state.cols}")
    codes = encode_phases(cfg, x)
    lines, n_out = cfg.lines, cfg.n_out
    state.apply(MacroOp.INIT, backward=cfg.backward)
    for b, pulses in enumerate(pulses_per_phase(cfg)):
        for phase in (0, 1):
            bits = drive_to_bits(codes[b, phase])
            for _ in range(pulses):
                state.apply(MacroOp.SAMPLE, drive_bits=bits)
                state.apply(MacroOp.INTEGRATE)
    for i in range(cfg.noise_pulses):
        if i:
            state.apply(MacroOp.IDLE)
        state.apply(MacroOp.NOISE)
    integ = state.integrator[:n_out]
    first = bits_to_bool(state.apply(MacroOp.COMPARE), lines)
    sign = ~first
    dec_up = cmp_to_bits(sign)
    active = cfg.mask[:n_out]
    flipped = np.zeros(n_out, dtype=bool)
    count = np.zeros(n_out, dtype=np.int64)
    steps = 0
    for k in range(1, cfg.max_count + 1):
        if not (active & ~flipped).any():
            break
        state.apply(MacroOp.DECREMENT, dec_up_bits=dec_up)
        cmp = bits_to_bool(state.apply(MacroOp.COMPARE), lines)[:n_out]
        new = (cmp != first[:n_out]) & ~flipped
        count[new] = k
        flipped |= new
        steps = k
    state.apply(MacroOp.IDLE)
    sat = active & ~flipped if cfg.max_count else np.zeros(n_out, dtype=bool)
    count = np.where(sat, cfg.max_count, count)
    count = np.where(active, count, 0)
    sign_out = (sign[:n_out] & active).astype(np.uint8)
    return MvmResult(sign_out, count, sat, integ, steps)

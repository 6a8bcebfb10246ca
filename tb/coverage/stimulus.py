"""Constrained-random stimulus of one core with bias knobs, and its coverage-guided use.

:class:`CoreStimulus` draws transactions (a legal :class:`~cimdv.model.encoding.CoreConfig`, one input
vector and the macro's Δ/θ) for a core of given geometry and weights. Without knobs it follows its
default distribution (the "unguided" constrained random of the closure measurement: every legal field
value reachable, with some weight on corners); :class:`Knobs` pins or narrows fields. Targeting a hole:

* :func:`knobs_for` turns a functional-coverage hole (``item/label`` of a group in
  :data:`~cimdv.tb.coverage.functional.CLOSURE_GROUPS`) into knobs: an input width, a signedness, a
  pulse-multiplier range, an output width, a mask kind, a vector kind, MAX_COUNT at its top;
* :meth:`CoreStimulus.guided` draws candidates biased at randomly chosen holes (two compatible holes of
  different groups at a time), predicts with the exact golden model which bins each would hit
  (:func:`~cimdv.tb.coverage.functional.input_values` / ``output_values``, the very classification the
  monitors' sampling uses) and returns the candidate that closes the most holes.

Outputs depend on the data (saturation, count buckets), so the generator sets Δ from the predicted
integrator values: ``Δ = max|integ - θ| / c`` for a target count ``c`` drawn log-uniformly over the
output range and beyond it (saturation). The RTL run of the chosen transaction is still checked
against the golden model by the scoreboard, and coverage is sampled from what the monitors saw.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from cimdv.model.encoding import CoreConfig, LineMode, config_errors
from cimdv.model.exact import ExactCore, MacroParams
from cimdv.tb.coverage import functional as fc

__all__ = ["Knobs", "Transaction", "CoreStimulus", "knobs_for", "merge_knobs"]


@dataclasses.dataclass(frozen=True)
class Knobs:
    """Bias of :class:`CoreStimulus`: None leaves a field to the default distribution.

    ``pulse`` is an inclusive range of pulse multipliers; ``mask`` a :data:`~functional.MASK_KINDS` entry;
    ``vector`` a :data:`~functional.VECTOR_KINDS` entry or ``"random"``; ``max_count_top`` sets MAX_COUNT
    to the output width's largest count; ``target`` names the output bins sought (``sat_positive``,
    ``count_high``, ...), used only to steer Δ.
    """

    in_bits: int | None = None
    signed: bool | None = None
    backward: bool | None = None
    pulse: tuple[int, int] | None = None
    out_bits: int | None = None
    mask: str | None = None
    vector: str | None = None
    max_count_top: bool | None = None
    target: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Transaction:
    """One core transaction: configuration, input vector, macro parameters."""

    cfg: CoreConfig
    x: np.ndarray
    macro: MacroParams


def merge_knobs(a: Knobs, b: Knobs, pulse_bits: int = 8) -> Knobs | None:
    """The knobs asking for both ``a`` and ``b``, or None when they contradict each other (or the legality
    rules: a signed 1-bit input, a pulse multiplier the input width's PULSE_OVF rule refuses)."""
    merged = {}
    for f in dataclasses.fields(Knobs):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if f.name == "target":
            merged[f.name] = tuple(dict.fromkeys(va + vb))
        elif f.name == "pulse" and va is not None and vb is not None:
            lo, hi = max(va[0], vb[0]), min(va[1], vb[1])
            if lo > hi:
                return None
            merged[f.name] = (lo, hi)
        elif va is not None and vb is not None and va != vb:
            return None
        else:
            merged[f.name] = va if va is not None else vb
    knobs = Knobs(**merged)
    if knobs.in_bits is not None and knobs.signed is not None and _in_illegal(knobs.in_bits, knobs.signed):
        return None
    if knobs.pulse is not None and knobs.in_bits is not None:
        signs = [knobs.signed] if knobs.signed is not None else [False, True]
        if not any(
            not _in_illegal(knobs.in_bits, s)
            and ((1 << pulse_bits) - 1) >> (knobs.in_bits - s - 1) >= knobs.pulse[0]
            for s in signs
        ):
            return None
    return knobs


def _count_range(target, top):
    """Range of the largest neuron's count that the output targets ask for."""
    top = max(top, 1)
    ranges = {
        "sat_positive": (top, 4.0 * top), "sat_negative": (top, 4.0 * top), "count_max": (top, 4.0 * top),
        "count_high": (0.75 * top, top), "count_mid": (0.25 * top, 0.75 * top), "count_low": (2.0, 0.25 * top),
        "count_0_1": (0.3, 1.5), "sat_none": (0.5, 0.9 * top),
    }
    picked = [ranges[t.rstrip("+-")] for t in target if t.rstrip("+-") in ranges]
    if not picked:
        return 0.5, 4.0 * top
    lo, hi = picked[0]
    return lo, max(hi, lo * 1.01)


@functools.cache
def _in_illegal(in_bits, signed):
    return "IN_BITS" in config_errors(rows=1, cols=1, in_bits=in_bits, signed=signed)


def knobs_for(group: str, hole: str, pulse_bits: int = 8) -> Knobs:
    """Knobs that make a transaction hit ``hole`` (``item/label`` of ``group``), as far as inputs decide it."""
    if group not in fc.CLOSURE_GROUPS:
        raise ValueError(f"group must be one of {fc.CLOSURE_GROUPS}, not {group!r}")
    item, sep, label = hole.partition("/")
    if not sep:
        raise ValueError(f"hole must be 'item/label', not {hole!r}")
    k: dict = {}
    target = []
    buckets = {b[0]: (b[1], b[2]) for b in fc.pulse_buckets(pulse_bits)}
    for token in label.split(fc.CROSS_SEP):
        if token.startswith("in_bits="):
            k["in_bits"] = int(token.split("=")[1])
        elif token.startswith("out_bits="):
            k["out_bits"] = int(token.split("=")[1])
        elif token in ("signed", "unsigned"):
            k["signed"] = token == "signed"
        elif token in ("forward", "backward"):
            k["backward"] = token == "backward"
        elif token in buckets:
            k["pulse"] = buckets[token]
        elif token in fc.MASK_KINDS:
            k["mask"] = token
        elif token in fc.VECTOR_KINDS:
            k["vector"] = token
            if token == "all_min" and "signed" not in k:
                k["signed"] = True  # unsigned inputs have their minimum at 0: all-min is the zero vector
        elif token in fc.SATURATION_KINDS:
            target.append(token)
            if token != "sat_none" and "mask" not in k:
                k.setdefault("mask", "mask_all")
        elif token in fc.COUNT_BUCKETS:
            sign = {"count_positive": "+", "count_negative": "-"}.get(item, "")
            target.append(token + sign)
            if token == "count_max":
                k["max_count_top"] = True
            elif token != "count_0_1":
                k.setdefault("out_bits", 8)  # room for the low, mid and high quarters
            k.setdefault("mask", "mask_all")
        else:
            raise ValueError(f"hole {hole!r}: no knob for {token!r}")
    return Knobs(**k, target=tuple(target))


class CoreStimulus:
    """Random transactions for a ``rows`` x ``cols`` core with the conductance codes ``weights``.

    Parameters
    ----------
    rows, cols, pulse_bits : int
        The core's parameters.
    weights : numpy.ndarray
        ``(rows, cols)`` conductance codes of the macro (the bench loads the same).
    rng : numpy.random.Generator
    """

    def __init__(self, rows: int, cols: int, pulse_bits: int, weights: np.ndarray, rng: np.random.Generator):
        self.rows, self.cols, self.pulse_bits = rows, cols, pulse_bits
        self.lines = max(rows, cols)
        self.weights = np.asarray(weights)
        if self.weights.shape != (rows, cols):
            raise ValueError(f"weights must have shape ({rows}, {cols}), not {self.weights.shape}")
        self.rng = rng
        self.specs = {name: spec for name, spec in fc.group_specs(pulse_bits=pulse_bits).items()
                      if name in fc.CLOSURE_GROUPS}
        self._unit = ExactCore(self.weights, MacroParams(delta=1))

    # ---- drawing -------------------------------------------------------------------------
    def _choice(self, values, p=None):
        return values[int(self.rng.choice(len(values), p=p))]

    def _pulse_top(self, nmag):
        return ((1 << self.pulse_bits) - 1) >> (nmag - 1)

    def draw(self, knobs: Knobs = Knobs()) -> Transaction:
        """One transaction following ``knobs`` (default distribution for every field left free)."""
        r = self.rng

        def fits(width, sign):
            if _in_illegal(width, sign):
                return False
            return knobs.pulse is None or self._pulse_top(width - sign) >= knobs.pulse[0]

        widths_of = {
            sign: [w for w in ([knobs.in_bits] if knobs.in_bits is not None else range(1, 9)) if fits(w, sign)]
            for sign in ([knobs.signed] if knobs.signed is not None else [False, True])
        }
        signs = [sign for sign, widths in widths_of.items() if widths]
        if not signs:
            raise ValueError(f"knobs: no legal input width and signedness for {knobs}")
        signed = self._choice(signs)
        in_bits = self._choice(widths_of[signed])
        nmag = in_bits - signed
        top_m = self._pulse_top(nmag)
        if knobs.pulse is not None:
            lo, hi = knobs.pulse[0], min(knobs.pulse[1], top_m)
            pulse_mult = int(r.integers(lo, hi + 1))
        else:
            u = r.random()
            pulse_mult = 1 if u < 0.15 else top_m if u < 0.25 else int(r.integers(1, top_m + 1))
        out_bits = knobs.out_bits if knobs.out_bits is not None else int(r.integers(1, 9))
        top_c = (1 << (out_bits - 1)) - 1
        if knobs.max_count_top or (knobs.max_count_top is None and r.random() < 0.3):
            max_count = top_c
        else:
            max_count = int(r.integers(0, top_c + 1))
        backward = bool(r.integers(2)) if knobs.backward is None else knobs.backward
        n_in, n_out = (self.cols, self.rows) if backward else (self.rows, self.cols)
        if r.random() < 0.7:
            modes = (LineMode.POS,) * self.lines
        else:
            codes = r.choice([LineMode.OFF, LineMode.POS, LineMode.POS, LineMode.NEG], size=self.lines)
            modes = tuple(int(c) for c in codes)
        mask_kind = knobs.mask or self._choice(fc.MASK_KINDS, p=[0.6, 0.3, 0.1])
        if mask_kind == "mask_partial" and n_out < 2:
            mask_kind = "mask_all"
        mask = np.ones(self.lines, dtype=bool)
        if mask_kind == "mask_none":
            mask[:n_out] = False
        elif mask_kind == "mask_partial":
            mask[:n_out] = r.random(n_out) < 0.5
            on = int(r.integers(n_out))
            mask[on] = True
            mask[(on + 1 + int(r.integers(n_out - 1))) % n_out] = False
        cfg = CoreConfig(
            rows=self.rows, cols=self.cols, backward=backward, signed=signed, in_bits=in_bits, out_bits=out_bits,
            pulse_mult=pulse_mult, max_count=max_count, noise_pulses=int(r.integers(0, 3)), line_modes=modes,
            out_mask=tuple(bool(v) for v in mask), pulse_bits=self.pulse_bits,
        )
        lo, hi = cfg.in_range
        kind = knobs.vector or self._choice(["zero", "all_max", "all_min", "random"], p=[0.05, 0.05, 0.05, 0.85])
        x = {"zero": np.zeros(n_in, dtype=np.int64), "all_max": np.full(n_in, hi), "all_min": np.full(n_in, lo)}.get(
            kind, r.integers(lo, hi + 1, size=n_in)
        )
        raw = self._unit.mvm(cfg, x).integ[:n_out]
        negative = any(t.endswith("-") or t == "sat_negative" for t in knobs.target)
        if negative and r.random() < 0.7:
            threshold = int(np.median(raw)) if raw.size else 0  # about half the neurons negative
        else:
            threshold = 0 if r.random() < 0.7 else int(r.integers(-20, 21))
        integ = raw - threshold
        scale = max(1.0, float(np.abs(integ).max(initial=0)))
        # Target count c of the largest neuron: log-uniform over the range the knobs' target asks for
        # (default 0.5 .. 4 * top: beyond the top is saturation).
        lo_c, hi_c = _count_range(knobs.target, top_c)
        c = math.exp(r.uniform(math.log(lo_c), math.log(hi_c)))
        delta = max(1, round(scale / c))
        return Transaction(cfg, np.asarray(x, dtype=np.int64), MacroParams(delta=delta, threshold=threshold))

    # ---- prediction and guidance ---------------------------------------------------------
    def predict(self, txn: Transaction) -> dict[str, set[str]]:
        """``{group: bins}`` the transaction hits, by the exact golden model."""
        result = ExactCore(self.weights, txn.macro).mvm(txn.cfg, txn.x)
        values = fc.input_values(txn.cfg, txn.x, self.pulse_bits)
        values |= fc.output_values(txn.cfg, result.sign, result.count, result.sat)
        return {name: fc.bins_hit(spec, values[name]) for name, spec in self.specs.items()}

    def guided(self, holes: dict[str, set[str]], *, candidates: int = 16) -> Transaction:
        """The best of ``candidates`` transactions biased at random holes (most holes hit by prediction)."""
        open_groups = [g for g in self.specs if holes.get(g)]
        if not open_groups:
            return self.draw()
        best, best_score = None, -1
        for _ in range(candidates):
            first = self._choice(open_groups)
            knobs = knobs_for(first, self._choice(sorted(holes[first])), self.pulse_bits)
            others = [g for g in open_groups if g != first]
            if others and self.rng.random() < 0.8:
                second = self._choice(others)
                other = knobs_for(second, self._choice(sorted(holes[second])), self.pulse_bits)
                both = merge_knobs(knobs, other, self.pulse_bits)
                knobs = both or knobs
            txn = self.draw(knobs)
            hit = self.predict(txn)
            score = sum(len(hit[g] & holes.get(g, set())) for g in hit)
            if score > best_score:
                best, best_score = txn, score
        return best

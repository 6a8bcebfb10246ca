"""Functional coverage of the environment: covergroups, their sampling, export and merge.

The covergroups are built with cocotb-coverage (``CoverPoint`` / ``CoverCross``) under one prefix of
its coverage database (``cimdv.<group>.<item>``). Every bin is **derived from a design parameter**:
register-map field widths and the model's legality rules (core), the enumerations of
``rtl/core/layouts.py`` and ``rtl/host/protocol.py``, the mesh's reference routing (NoC), the chip's
grid. Crosses that the design forbids are ignore bins computed from the same legality rules, never
typed by hand. Bin labels are strings (toolchain pitfall 11: enum objects become YAML tags).

Sampling is transaction level, from the scoreboards and monitors that already see each transaction
(never per clock edge): the core environment (input and output vectors, ERROR reads, resets), the
programming scoreboard (one result per write-verify command), the NoC packet scoreboard (every
header injected and every copy delivered) and the chip's :class:`~cimdv.tb.chip.host.HostClient`
(every response). They all talk to one :class:`FunctionalCoverage` per process (:func:`model`).

Export: when ``CIMDV_FCOV_FILE`` is set in the simulator's environment, the process writes its
database there when cocotb shuts down (after the last test, whether it passed or failed), in
cocotb-coverage's YAML layout, every planned bin included with its hits (0 for a hole).
:func:`merge_functional` merges such files from a whole regression, applies the waivers of
``docs/coverage_waivers.toml`` (``[[functional]]``) and computes the gate's figure.

Public API: :func:`covergroup_names`, :func:`model`, :class:`FunctionalCoverage`, :func:`export`,
:func:`read_database`, :func:`merge_functional`, :func:`load_waivers`, and the classification
helpers the closure flow shares with the sampling (:func:`pulse_bucket`, :func:`count_bucket`, ...).
"""

from __future__ import annotations

import atexit
import dataclasses
import fnmatch
import functools
import itertools
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml
from cocotb_coverage.coverage import CoverCross, CoverPoint, coverage_db, coverage_section

from cimdv.model.encoding import CoreConfig, config_errors
from cimdv.rtl.core.layouts import CoreState, ProgOutcome, ProgState
from cimdv.rtl.core.regs import ErrorBit, register_map
from cimdv.rtl.host.protocol import Opcode, Status

__all__ = [
    "FCOV_ENV",
    "PREFIX",
    "WAIVERS_PATH",
    "CORE_GROUPS",
    "CLOSURE_GROUPS",
    "Point",
    "Cross",
    "GroupSpec",
    "FunctionalCoverage",
    "covergroup_names",
    "model",
    "export",
    "read_database",
    "merge_functional",
    "load_waivers",
    "group_specs",
    "input_values",
    "output_values",
    "bins_hit",
    "planned_bins",
    "in_bits_label",
    "pulse_buckets",
    "pulse_bucket",
    "count_bucket",
    "vector_kind",
    "mask_kind",
    "saturation_kinds",
    "iteration_bucket",
    "endpoint_label",
]

#: The project's waiver file (``[[functional]]`` entries are this module's; ``[[code]]`` code coverage's).
WAIVERS_PATH = Path(__file__).resolve().parents[2] / "docs" / "coverage_waivers.toml"
#: Environment variable naming the file a simulation process exports its coverage to.
FCOV_ENV = "CIMDV_FCOV_FILE"
#: Root of this model's items in cocotb-coverage's database.
PREFIX = "cimdv"
#: Groups sampled by the core environment.
CORE_GROUPS = (
    "core_input_cg",
    "core_output_cg",
    "pulse_mult_cg",
    "input_extremes_cg",
    "count_buckets_cg",
    "core_errors_cg",
    "reset_state_cg",
)
#: The core groups that random MVM stimulus reaches: the goal of the coverage-driven closure
#: (errors and resets are closed by directed tests).
CLOSURE_GROUPS = ("core_input_cg", "core_output_cg", "pulse_mult_cg", "input_extremes_cg", "count_buckets_cg")
_NOC_GROUPS = ("noc_traffic_cg", "noc_multicast_cg", "noc_drops_cg")
_CHIP_GROUPS = ("chip_mvm_cg", "host_status_cg")
_PROG_GROUPS = ("prog_outcome_cg",)
_ALL_GROUPS = CORE_GROUPS + _PROG_GROUPS + _NOC_GROUPS + _CHIP_GROUPS
#: Label joining the coordinates of a cross bin.
CROSS_SEP = " x "
#: Hole reported for a covergroup no run instantiated (its bins depend on parameters never seen).
NOT_SAMPLED = "(no run instantiated this covergroup)"


def covergroup_names() -> list[str]:
    """Every covergroup the model defines (no simulator needed)."""
    return list(_ALL_GROUPS)


# ---------------------------------------------------------------------------------------------
# Specification of a covergroup: points, crosses, planned bins.


@dataclasses.dataclass(frozen=True)
class Point:
    """A coverpoint: its name and planned bins (string labels).

    ``multi``: one sample may hit several bins (the sampled value is a collection of labels).
    """

    name: str
    bins: tuple[str, ...]
    multi: bool = False


@dataclasses.dataclass(frozen=True)
class Cross:
    """A cross of coverpoints; ``ignore`` lists the label tuples the design makes impossible."""

    name: str
    items: tuple[str, ...]
    ignore: frozenset = frozenset()


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """A covergroup: name, coverpoints and crosses."""

    name: str
    points: tuple[Point, ...]
    crosses: tuple[Cross, ...] = ()

    def planned(self) -> dict[str, list[str]]:
        """``{item: [bin label, ...]}`` of every coverpoint and cross (crosses without their ignore bins)."""
        points = {p.name: p for p in self.points}
        out = {p.name: list(p.bins) for p in self.points}
        for c in self.crosses:
            combos = itertools.product(*(points[i].bins for i in c.items))
            out[c.name] = [CROSS_SEP.join(t) for t in combos if t not in c.ignore]
        return out


def _cross(name, points, legal: Callable[..., bool] | None = None) -> Cross:
    """A cross of ``points`` whose combinations failing ``legal(*labels)`` are ignore bins."""
    combos = itertools.product(*(p.bins for p in points))
    ignore = frozenset(t for t in combos if legal is not None and not legal(*t))
    return Cross(name, tuple(p.name for p in points), ignore)


# ---------------------------------------------------------------------------------------------
# Bin derivation and classification (shared by the sampling and the closure's generator).


@functools.cache
def _core_regmap(pulse_bits=8):
    return register_map(rows=1, cols=1, pulse_bits=pulse_bits)


def _field_values(reg: str, name: str, pulse_bits=8) -> range:
    """Every value the register field can hold (its width from the register map)."""
    return range(1 << _core_regmap(pulse_bits)[reg].field(name).width)


def _errors(**fields) -> frozenset:
    return config_errors(rows=1, cols=1, **fields)


def in_bits_label(value: int) -> str:
    """Label of an input width."""
    return f"in_bits={value}"


@functools.cache
def _legal_in_bits() -> dict[int, tuple[bool, ...]]:
    """``{in_bits: [signedness legal with it]}`` over the MODE.in_bits field (model's IN_BITS rule)."""
    legal = {}
    for v in _field_values("MODE", "in_bits"):
        ok = tuple(s for s in (False, True) if "IN_BITS" not in _errors(in_bits=v, signed=s))
        if ok:
            legal[v] = ok
    return legal


@functools.cache
def _legal_out_bits() -> dict[int, int]:
    """``{out_bits: largest legal MAX_COUNT}`` over the MODE.out_bits field (OUT_BITS and MAX_COUNT rules)."""
    legal = {}
    for v in _field_values("MODE", "out_bits"):
        if "OUT_BITS" in _errors(out_bits=v, max_count=0):
            continue
        counts = _field_values("MAX_COUNT", "max_count")
        legal[v] = max(m for m in counts if "MAX_COUNT" not in _errors(out_bits=v, max_count=m))
    return legal


@functools.cache
def pulse_buckets(pulse_bits: int = 8) -> tuple[tuple[str, int, int], ...]:
    """``[(label, lo, hi)]`` covering the legal pulse multipliers 1 .. 2**pulse_bits - 1.

    The top is the largest value of the MODE.pulse_mult field that some legal input width accepts
    (the PULSE_OVF rule at one magnitude bit); buckets are 1, then powers of two, then the maximum.
    """
    top = max(
        m for m in _field_values("MODE", "pulse_mult", pulse_bits)
        if not {"PULSE_MULT", "PULSE_OVF"} & _errors(pulse_mult=m, in_bits=1, signed=False, pulse_bits=pulse_bits)
    )
    buckets = [("pulse_mult=1", 1, 1)]
    lo = 2
    while lo < top:
        hi = min(2 * lo - 1, top - 1)
        buckets.append((f"pulse_mult={lo}..{hi}" if hi > lo else f"pulse_mult={lo}", lo, hi))
        lo = hi + 1
    if top > 1:
        buckets.append((f"pulse_mult={top}", top, top))
    return tuple(buckets)


def pulse_bucket(value: int, pulse_bits: int = 8) -> str | None:
    """The bucket label of a pulse multiplier (None outside the legal range)."""
    for label, lo, hi in pulse_buckets(pulse_bits):
        if lo <= value <= hi:
            return label
    return None


#: Count buckets, relative to the largest count of the output width (2**(out_bits-1) - 1).
COUNT_BUCKETS = ("count_0_1", "count_low", "count_mid", "count_high", "count_max")


def count_bucket(count: int, out_bits: int) -> str:
    """Bucket of one neuron's count: ``<= 1``; low, mid, high quarters; the output width's maximum."""
    top = (1 << (out_bits - 1)) - 1
    if count <= 1:
        return "count_0_1"
    if count >= top:
        return "count_max"
    if 4 * count <= top:
        return "count_low"
    if 4 * count <= 3 * top:
        return "count_mid"
    return "count_high"


def _count_buckets(counts: np.ndarray, out_bits: int) -> set[str]:
    """Distinct buckets of an array of counts (vectorised :func:`count_bucket`)."""
    c = np.asarray(counts, dtype=np.int64)
    if not c.size:
        return set()
    top = (1 << (out_bits - 1)) - 1
    low = c <= 1
    top_hit = ~low & (c >= top)
    rest = ~low & ~top_hit
    found = set()
    if low.any():
        found.add("count_0_1")
    if top_hit.any():
        found.add("count_max")
    if (rest & (4 * c <= top)).any():
        found.add("count_low")
    if (rest & (4 * c > top) & (4 * c <= 3 * top)).any():
        found.add("count_mid")
    if (rest & (4 * c > 3 * top)).any():
        found.add("count_high")
    return found


VECTOR_KINDS = ("zero", "all_max", "all_min")


def vector_kind(x: Sequence[int], in_range: tuple[int, int]) -> str | None:
    """``zero``, ``all_max``, ``all_min`` (every element at one extreme of ``in_range``) or None."""
    a = np.asarray(x)
    lo, hi = in_range
    if not a.size:
        return None
    if not a.any():
        return "zero"
    if (a == hi).all():
        return "all_max"
    if (a == lo).all():
        return "all_min"
    return None


MASK_KINDS = ("mask_all", "mask_partial", "mask_none")


def mask_kind(mask: Sequence[bool]) -> str:
    """Output mask over the neurons that exist: all on, partial, none."""
    m = np.asarray(mask, dtype=bool)
    if m.all():
        return "mask_all"
    return "mask_partial" if m.any() else "mask_none"


SATURATION_KINDS = ("sat_positive", "sat_negative", "sat_none")


def saturation_kinds(sign: np.ndarray, sat: np.ndarray) -> set[str]:
    """Saturation seen in one output vector: positive and/or negative neurons saturated, or none."""
    sat = np.asarray(sat, dtype=bool)
    neg = np.asarray(sign, dtype=bool)
    found = set()
    if (sat & ~neg).any():
        found.add("sat_positive")
    if (sat & neg).any():
        found.add("sat_negative")
    return found or {"sat_none"}


ITERATION_BUCKETS = ("iterations=0", "iterations=1", "iterations=2..limit-1", "iterations=limit", "iterations>limit")


def iteration_bucket(iterations: int, iter_limit: int) -> str:
    """Outer iterations of a write-verify command relative to its configured ``iter_limit``."""
    if iterations == 0:
        return "iterations=0"
    if iterations > iter_limit:
        return "iterations>limit"
    if iterations == iter_limit:
        return "iterations=limit"
    if iterations == 1:
        return "iterations=1"
    return "iterations=2..limit-1"


def endpoint_label(endpoint) -> str:
    """``t(x,y)`` for a tile endpoint, ``W0`` / ``S1`` for an edge port (tb/noc/model.py endpoints)."""
    if endpoint[0] == "tile":
        return f"t({endpoint[1]},{endpoint[2]})"
    return f"{endpoint[0]}{endpoint[1]}"


@functools.cache
def _outcomes() -> tuple[str, ...]:
    """ProgOutcome members a command can end with: all but PROG_RESULT.outcome's reset value (none yet)."""
    none = _core_regmap()["PROG_RESULT"].field("outcome").reset
    return tuple(o.name for o in ProgOutcome if o.value != none)


@functools.cache
def _error_bits() -> tuple[str, ...]:
    return tuple(name for name, _ in sorted(ErrorBit.names().items(), key=lambda kv: kv[1]) if name != "CONFIG")


_MODES = {(False, False): "multicast", (True, False): "per_core", (False, True): "multicast_reduce",
          (True, True): "per_core_reduce"}


def _rect_sizes(cols: int, rows: int) -> list[int]:
    return sorted({w * h for w in range(1, cols + 1) for h in range(1, rows + 1)})


# ---------------------------------------------------------------------------------------------
# The covergroups.


def group_specs(*, pulse_bits: int = 8, mesh=None, grid: tuple[int, int] | None = None) -> dict[str, GroupSpec]:
    """The specifications of the covergroups the parameters allow.

    Core, programming, error and host-status groups need no parameter but ``pulse_bits``; the NoC groups
    need ``mesh`` (a :class:`~cimdv.tb.noc.model.MeshModel`), the chip's MVM group ``grid`` ``(cols, rows)``.
    """
    specs = {}
    in_legal = _legal_in_bits()
    p_in = Point("in_bits", tuple(in_bits_label(v) for v in in_legal))
    p_signed = Point("signedness", ("unsigned", "signed"))
    p_dir = Point("direction", ("forward", "backward"))

    def in_ok(in_bits, signedness, _direction):
        return (signedness == "signed") in in_legal[int(in_bits.split("=")[1])]

    x_in = _cross("in_x_signedness_x_direction", (p_in, p_signed, p_dir), in_ok)
    specs["core_input_cg"] = GroupSpec("core_input_cg", (p_in, p_signed, p_dir), (x_in,))

    out_legal = _legal_out_bits()
    p_out = Point("out_bits", tuple(f"out_bits={v}" for v in out_legal))
    p_sat = Point("saturation", SATURATION_KINDS, multi=True)
    p_mask = Point("mask", MASK_KINDS)

    def out_ok(out_bits, sat, mask):
        if sat == "sat_none":
            return True
        # A neuron saturates after MAX_COUNT >= 1 steps; a masked-out neuron reads all zeros.
        return out_legal[int(out_bits.split("=")[1])] >= 1 and mask != "mask_none"

    specs["core_output_cg"] = GroupSpec(
        "core_output_cg", (p_out, p_sat, p_mask), (_cross("out_x_saturation_x_mask", (p_out, p_sat, p_mask), out_ok),)
    )

    specs["pulse_mult_cg"] = GroupSpec(
        "pulse_mult_cg", (Point("pulse_mult", tuple(label for label, _, _ in pulse_buckets(pulse_bits))),)
    )

    p_kind = Point("vector", VECTOR_KINDS)
    lo_unsigned = CoreConfig(rows=1, cols=1, backward=False, signed=False, in_bits=1, out_bits=1, pulse_mult=1,
                             max_count=0).in_range[0]

    def extreme_ok(kind, signedness):
        # Unsigned inputs have their minimum at 0: the all-min vector is the zero vector.
        return not (kind == "all_min" and signedness == "unsigned" and lo_unsigned == 0)

    specs["input_extremes_cg"] = GroupSpec(
        "input_extremes_cg", (p_kind, p_signed), (_cross("vector_x_signedness", (p_kind, p_signed), extreme_ok),)
    )

    p_bucket = Point("count", COUNT_BUCKETS, multi=True)
    p_bucket_pos = Point("count_positive", COUNT_BUCKETS, multi=True)
    p_bucket_neg = Point("count_negative", COUNT_BUCKETS, multi=True)
    specs["count_buckets_cg"] = GroupSpec("count_buckets_cg", (p_bucket, p_bucket_pos, p_bucket_neg))

    specs["core_errors_cg"] = GroupSpec("core_errors_cg", (Point("error", _error_bits(), multi=True),))
    specs["reset_state_cg"] = GroupSpec(
        "reset_state_cg",
        (Point("core_state", tuple(s.name for s in CoreState)), Point("prog_state", tuple(s.name for s in ProgState))),
    )
    outcomes = _outcomes()
    specs["prog_outcome_cg"] = GroupSpec(
        "prog_outcome_cg", (Point("outcome", outcomes), Point("iterations", ITERATION_BUCKETS))
    )
    specs["host_status_cg"] = GroupSpec("host_status_cg", (Point("status", tuple(s.name for s in Status)),))

    if mesh is not None:
        labels = tuple(endpoint_label(ep) for ep in mesh.endpoints)
        by_label = dict(zip(labels, mesh.endpoints, strict=True))
        p_src, p_dst = Point("source", labels), Point("destination", labels)
        p_cont = Point("contention", ("uncontended", "contended"))

        def pair_ok(src, dst, _contention):
            return mesh.reachable(by_label[src], by_label[dst])

        specs["noc_traffic_cg"] = GroupSpec(
            "noc_traffic_cg", (p_src, p_dst, p_cont), (_cross("source_x_destination_x_contention",
                                                              (p_src, p_dst, p_cont), pair_ok),)
        )
        shapes = []
        for w in range(1, mesh.cols + 1):
            for h in range(1, mesh.rows + 1):
                route = mesh.route(mesh.tiles[0], 0, 0, w - 1, h - 1)
                if not route.dropped:  # the routing rules deliver this shape (yx: 1 x 1 only)
                    shapes.append(f"{w}x{h}")
        p_shape = Point("rectangle", tuple(shapes))
        p_from = Point("from", ("edge", "tile") if len(mesh.endpoints) > len(mesh.tiles) else ("tile",))
        specs["noc_multicast_cg"] = GroupSpec(
            "noc_multicast_cg", (p_shape, p_from), (_cross("rectangle_x_from", (p_shape, p_from)),)
        )
        p_drop = Point("drop", ("misroute", "refused"))
        specs["noc_drops_cg"] = GroupSpec("noc_drops_cg", (p_drop, p_from), (_cross("drop_x_from", (p_drop, p_from)),))

    if grid is not None:
        cols, rows = grid
        p_cores = Point("cores", tuple(f"cores={n}" for n in _rect_sizes(cols, rows)))
        p_mode = Point("mode", tuple(_MODES.values()))
        specs["chip_mvm_cg"] = GroupSpec("chip_mvm_cg", (p_cores, p_mode), (_cross("cores_x_mode", (p_cores, p_mode)),))
    return specs


#: Groups whose bins need no run-time parameter (pulse_bits at its default when no core was seen).
_PARAMETER_FREE = ("core_errors_cg", "reset_state_cg", "prog_outcome_cg", "host_status_cg", "core_input_cg",
                   "core_output_cg", "input_extremes_cg", "count_buckets_cg")


# ---------------------------------------------------------------------------------------------
# What one core transaction samples, as point values; and the bins such values hit.


def input_values(cfg: CoreConfig, x: Sequence[int], pulse_bits: int = 8) -> dict[str, dict]:
    """``{group: {point: label(s)}}`` one input vector accepted under ``cfg`` samples."""
    signedness = "signed" if cfg.signed else "unsigned"
    return {
        "core_input_cg": {
            "in_bits": in_bits_label(cfg.in_bits),
            "signedness": signedness,
            "direction": "backward" if cfg.backward else "forward",
        },
        "pulse_mult_cg": {"pulse_mult": pulse_bucket(cfg.pulse_mult, pulse_bits)},
        "input_extremes_cg": {"vector": vector_kind(x, cfg.in_range), "signedness": signedness},
    }


def output_values(cfg: CoreConfig, sign, count, sat) -> dict[str, dict]:
    """``{group: {point: label(s)}}`` one output vector (``n_out`` neurons) under ``cfg`` samples."""
    mask = np.asarray(cfg.out_mask[: cfg.n_out], dtype=bool)
    sign = np.asarray(sign, dtype=bool)
    count = np.asarray(count)
    return {
        "core_output_cg": {
            "out_bits": f"out_bits={cfg.out_bits}",
            "saturation": saturation_kinds(sign[mask], np.asarray(sat, dtype=bool)[mask]),
            "mask": mask_kind(mask),
        },
        "count_buckets_cg": {
            "count": _count_buckets(count[mask], cfg.out_bits),
            "count_positive": _count_buckets(count[mask & ~sign], cfg.out_bits),
            "count_negative": _count_buckets(count[mask & sign], cfg.out_bits),
        },
    }


def bins_hit(spec: GroupSpec, values: Mapping[str, object]) -> set[str]:
    """The ``item/label`` bins of ``spec`` that one sample of ``values`` hits (what cocotb-coverage counts)."""
    labels = {}
    for p in spec.points:
        v = values.get(p.name)
        if v is None:
            found = set()
        elif p.multi:
            found = set(v) & set(p.bins)
        else:
            found = {v} & set(p.bins)
        labels[p.name] = found
    hit = {f"{name}/{label}" for name, found in labels.items() for label in found}
    for c in spec.crosses:
        for combo in itertools.product(*(sorted(labels[i]) for i in c.items)):
            if combo not in c.ignore:
                hit.add(f"{c.name}/{CROSS_SEP.join(combo)}")
    return hit


def planned_bins(spec: GroupSpec) -> set[str]:
    """Every ``item/label`` bin of ``spec``."""
    return {f"{item}/{label}" for item, labels in spec.planned().items() for label in labels}


# ---------------------------------------------------------------------------------------------
# Instances: the cocotb-coverage items of one prefix.


def _getter(name):
    return lambda values: values.get(name)


def _member(value, label):
    return value is not None and label in value


class _Group:
    """The cocotb-coverage items of one :class:`GroupSpec` and its sampling function."""

    def __init__(self, prefix: str, spec: GroupSpec):
        self.spec = spec
        self.base = f"{prefix}.{spec.name}"
        items = []
        for p in spec.points:
            items.append(
                CoverPoint(
                    f"{self.base}.{p.name}",
                    xf=_getter(p.name),
                    bins=list(p.bins),
                    rel=_member if p.multi else None,
                    inj=not p.multi,
                )
            )
        for c in spec.crosses:
            items.append(
                CoverCross(
                    f"{self.base}.{c.name}",
                    items=[f"{self.base}.{i}" for i in c.items],
                    ign_bins=sorted(c.ignore),
                )
            )
        self._sample = coverage_section(*items)(lambda values: None)

    def sample(self, **values):
        """One sample: ``values`` maps point names to a label (a collection of labels for a multi point)."""
        self._sample(values)

    def hits(self) -> dict[str, dict[str, int]]:
        """``{item: {bin label: hits}}``, every planned bin included."""
        out = {}
        for item in self.spec.planned():
            detailed = coverage_db[f"{self.base}.{item}"].detailed_coverage
            out[item] = {(CROSS_SEP.join(k) if isinstance(k, tuple) else str(k)): int(v) for k, v in detailed.items()}
        return out


class FunctionalCoverage:
    """The covergroups of one process (one DUT) under ``prefix`` of cocotb-coverage's database.

    Groups are created on first use with the DUT's parameters: :meth:`use_core` (core geometry's
    ``pulse_bits``), :meth:`use_mesh` (the NoC's reference routing), :meth:`use_grid` (the chip's
    grid). A second instance with another prefix (the closure bench's from-empty measurements, the
    unit tests) shares nothing with the first.
    """

    def __init__(self, prefix: str = PREFIX):
        if not prefix or "." in prefix:
            raise ValueError(f"prefix must be a non-empty name without dots, not {prefix!r}")
        self.prefix = prefix
        self.groups: dict[str, _Group] = {}
        self._params: dict[str, object] = {}
        self.grid: tuple[int, int] | None = None

    # ---- instantiation -------------------------------------------------------------------
    def _ensure(self, specs: Mapping[str, GroupSpec], names: Iterable[str], key: str, value) -> None:
        if key in self._params and self._params[key] != value:
            raise ValueError(f"{key}: this process's coverage was created for {self._params[key]!r}, not {value!r}")
        self._params[key] = value
        for name in names:
            if name not in self.groups and name in specs:
                self.groups[name] = _Group(self.prefix, specs[name])

    def use_core(self, pulse_bits: int = 8) -> FunctionalCoverage:
        """Create the core and programming groups for a core with ``pulse_bits``."""
        self._ensure(group_specs(pulse_bits=pulse_bits), CORE_GROUPS + _PROG_GROUPS, "pulse_bits", pulse_bits)
        return self

    def use_mesh(self, mesh) -> FunctionalCoverage:
        """Create the NoC groups for ``mesh`` (a MeshModel)."""
        key = (mesh.cols, mesh.rows, mesh.order, tuple(mesh.edge_ports))
        self._ensure(group_specs(mesh=mesh), _NOC_GROUPS, "mesh", key)
        return self

    def use_grid(self, cols: int, rows: int) -> FunctionalCoverage:
        """Create the chip groups for a grid of ``cols`` x ``rows`` tiles."""
        for name, v in (("cols", cols), ("rows", rows)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self._ensure(group_specs(grid=(cols, rows)), _CHIP_GROUPS + _PROG_GROUPS, "grid", (cols, rows))
        self.grid = (cols, rows)
        return self

    def use_parameter_free(self) -> FunctionalCoverage:
        """Create every group whose bins need no run-time parameter (so its holes are always exported)."""
        specs = group_specs()
        for name in _PARAMETER_FREE:
            if name not in self.groups:
                self.groups[name] = _Group(self.prefix, specs[name])
        return self

    def _group(self, name: str) -> _Group:
        group = self.groups.get(name)
        if group is None:
            specs = group_specs(pulse_bits=self._params.get("pulse_bits", 8))
            if name not in _PARAMETER_FREE:
                raise ValueError(f"covergroup {name} needs its parameters first (use_core/use_mesh/use_grid)")
            group = self.groups[name] = _Group(self.prefix, specs[name])
        return group

    # ---- sampling: core ------------------------------------------------------------------
    def sample_input(self, cfg: CoreConfig, x: Sequence[int]) -> None:
        """One input vector accepted by the core under ``cfg`` (from the input monitor)."""
        for name, values in input_values(cfg, x, self._params.get("pulse_bits", 8)).items():
            self._group(name).sample(**values)

    def sample_output(self, cfg: CoreConfig, sign, count, sat) -> None:
        """One output vector (``n_out`` neurons) under ``cfg`` (from the output monitor)."""
        for name, values in output_values(cfg, sign, count, sat).items():
            self._group(name).sample(**values)

    def sample_error_register(self, value: int) -> None:
        """A read of the ERROR register: every bit set."""
        names = {name for name, bit in ErrorBit.names().items() if name != "CONFIG" and value >> bit & 1}
        if names:
            self._group("core_errors_cg").sample(error=names)

    def sample_reset(self, core_state: int | None, prog_state: int | None) -> None:
        """A reset applied while the controller is in ``core_state`` and the sequencer in ``prog_state``."""
        self._group("reset_state_cg").sample(
            core_state=None if core_state is None else CoreState(core_state).name,
            prog_state=None if prog_state is None else ProgState(prog_state).name,
        )

    # ---- sampling: programming -----------------------------------------------------------
    def sample_prog_result(self, outcome: int, iterations: int | None = None, iter_limit: int | None = None) -> None:
        """One write-verify command's end: its outcome and (when known) its iterations against its limit."""
        bucket = None if iterations is None or iter_limit is None else iteration_bucket(iterations, iter_limit)
        self._group("prog_outcome_cg").sample(outcome=ProgOutcome(int(outcome)).name, iterations=bucket)

    # ---- sampling: NoC -------------------------------------------------------------------
    def sample_noc_delivery(self, src, dst, contended: bool) -> None:
        """One packet copy delivered from endpoint ``src`` to ``dst``, contended or not."""
        group = self.groups.get("noc_traffic_cg")
        if group is None:
            raise ValueError("noc_traffic_cg needs use_mesh() first")
        group.sample(source=endpoint_label(src), destination=endpoint_label(dst),
                     contention="contended" if contended else "uncontended")

    def sample_noc_header(self, mesh, src, rect, route) -> None:
        """One header injected at ``src`` towards ``rect`` = (x0, y0, x1, y1), with its reference ``route``."""
        kind = "tile" if src[0] == "tile" else "edge"
        if route.dropped:
            drops = ({"misroute"} if route.misroutes else set()) | ({"refused"} if route.errors else set())
            for drop in sorted(drops):
                self.groups["noc_drops_cg"].sample(drop=drop, **{"from": kind})
            return
        x0, y0, x1, y1 = rect
        if 0 <= x0 <= x1 < mesh.cols and 0 <= y0 <= y1 < mesh.rows:
            self.groups["noc_multicast_cg"].sample(rectangle=f"{x1 - x0 + 1}x{y1 - y0 + 1}", **{"from": kind})

    # ---- sampling: chip host -------------------------------------------------------------
    def sample_host(self, opcode: int, status: Status, *, rect=None, per_core=False, reduce=False) -> None:
        """One host response: its status; for an MVM that ran (``rect`` given), its size and mode."""
        self._group("host_status_cg").sample(status=Status(status).name)
        if rect is None or opcode != Opcode.MVM.value or self.grid is None:
            return
        x0, y0, x1, y1 = rect
        cores = (x1 - x0 + 1) * (y1 - y0 + 1)
        self.groups["chip_mvm_cg"].sample(cores=f"cores={cores}", mode=_MODES[bool(per_core), bool(reduce)])

    # ---- reading -------------------------------------------------------------------------
    def database(self) -> dict:
        """This instance's items in cocotb-coverage's YAML layout (see :func:`export`), keyed under
        :data:`PREFIX` whatever the instance's own prefix."""
        out = {}
        for name, group in self.groups.items():
            total = hit = 0
            for item, bins in group.hits().items():
                covered = sum(1 for h in bins.values() if h > 0)
                kind = type(coverage_db[f"{self.prefix}.{name}.{item}"]).__name__
                out[f"{PREFIX}.{name}.{item}"] = _item_entry(kind, bins, covered)
                total += len(bins)
                hit += covered
            out[f"{PREFIX}.{name}"] = _group_entry(total, hit)
        return out

    def holes(self, names: Iterable[str] | None = None) -> dict[str, list[str]]:
        """``{group: [item/bin, ...]}`` of the bins not hit yet (``names``: these groups only)."""
        out = {}
        for name in names or self.groups:
            group = self._group(name)
            out[name] = [f"{item}/{label}" for item, bins in group.hits().items() for label, h in bins.items() if not h]
        return out


def _item_entry(kind: str, bins: Mapping[str, int], covered: int) -> dict:
    size = len(bins)
    return {
        "type": f"<class 'cocotb_coverage.coverage.{kind}'>",
        "size": size,
        "coverage": covered,
        "cover_percentage": round(100.0 * covered / size, 2) if size else 100.0,
        "weight": 1,
        "at_least": 1,
        "bins:_hits": dict(bins),
    }


def _group_entry(size: int, covered: int) -> dict:
    return {
        "type": "<class 'cocotb_coverage.coverage.CoverItem'>",
        "size": size,
        "coverage": covered,
        "cover_percentage": round(100.0 * covered / size, 2) if size else 100.0,
    }


# ---------------------------------------------------------------------------------------------
# The process-wide instance and its export.

_MODEL: FunctionalCoverage | None = None
_EXPORT_REGISTERED = False


def model() -> FunctionalCoverage:
    """The process-wide :class:`FunctionalCoverage` (prefix ``cimdv``), exported at shutdown if asked to."""
    global _MODEL
    if _MODEL is None:
        _MODEL = FunctionalCoverage(PREFIX)
        _register_export()
    return _MODEL


def export(path: Path | str, cov: FunctionalCoverage | None = None) -> Path:
    """Write ``cov`` (default: :func:`model`) to ``path`` as YAML; every planned bin is included.

    The parameter-free groups are created first, so a process that never sampled them still exports
    their holes.
    """
    cov = model() if cov is None else cov
    cov.use_parameter_free()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(cov.database(), sort_keys=True))
    tmp.replace(path)
    return path


def _export_at_exit() -> None:
    target = os.environ.get(FCOV_ENV)
    if target and _MODEL is not None:
        export(target, _MODEL)


def _register_export() -> None:
    """Export when the simulation ends: cocotb's shutdown hook (after the last test, passed or failed, and
    when the simulator stops early) with ``atexit`` as a fallback; the export is idempotent."""
    global _EXPORT_REGISTERED
    if _EXPORT_REGISTERED or not os.environ.get(FCOV_ENV):
        return
    _EXPORT_REGISTERED = True
    atexit.register(_export_at_exit)


# ---------------------------------------------------------------------------------------------
# Reading, merging and waiving.


def read_database(path: Path | str) -> dict[str, dict[str, dict[str, int]]]:
    """``{group: {item: {bin: hits}}}`` of one exported or merged file; ValueError naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"files: {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"files: {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"files: {path} is not a coverage database (top level is {type(data).__name__})")
    out: dict[str, dict[str, dict[str, int]]] = {}
    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise ValueError(f"files: {path}: entry {key!r} is not a mapping")
        parts = str(key).split(".")
        if parts[0] != PREFIX:
            raise ValueError(f"files: {path}: entry {key!r} is not under {PREFIX!r}")
        if len(parts) == 2:
            out.setdefault(parts[1], {})
            continue
        if len(parts) != 3:
            raise ValueError(f"files: {path}: entry {key!r} is not <prefix>.<group>.<item>")
        bins = entry.get("bins:_hits")
        if not isinstance(bins, dict):
            raise ValueError(f"files: {path}: item {key!r} has no 'bins:_hits' mapping")
        for label, hits in bins.items():
            if not isinstance(hits, int) or isinstance(hits, bool) or hits < 0:
                raise ValueError(f"files: {path}: item {key!r} bin {label!r} has hits {hits!r} (not a count >= 0)")
        out.setdefault(parts[1], {})[parts[2]] = {str(k): v for k, v in bins.items()}
    return out


@dataclasses.dataclass(frozen=True)
class Waiver:
    """One ``[[functional]]`` entry of the waiver file."""

    covergroup: str
    bin: str
    reason: str

    def matches(self, group: str, label: str) -> bool:
        return group == self.covergroup and fnmatch.fnmatchcase(label, self.bin)


def load_waivers(path: Path | str | None) -> list[Waiver]:
    """The ``[[functional]]`` waivers of ``path`` (None: no waivers); ValueError naming a malformed entry."""
    if path is None:
        return []
    path = Path(path)
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"waivers: {path} is not valid TOML: {exc}") from None
    entries = data.get("functional", [])
    if not isinstance(entries, list):
        raise ValueError(f"waivers: {path}: 'functional' must be an array of tables ([[functional]])")
    known = set(covergroup_names())
    waivers = []
    for i, entry in enumerate(entries):
        where = f"waivers: {path}: [[functional]] #{i + 1}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} is not a table")
        extra = set(entry) - {"covergroup", "bin", "reason"}
        if extra:
            raise ValueError(f"{where} has unknown field(s) {sorted(extra)}; valid: bin, covergroup, reason")
        for name in ("covergroup", "bin", "reason"):
            value = entry.get(name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where} needs a non-empty string {name!r}")
        if entry["covergroup"] not in known:
            raise ValueError(f"{where}: covergroup {entry['covergroup']!r} is not one of {sorted(known)}")
        waivers.append(Waiver(entry["covergroup"], entry["bin"], entry["reason"].strip()))
    return waivers


def merge_functional(files: list[Path], out: Path, waivers: Path | None) -> dict:
    """Merge exported databases, write the merged one to ``out`` and return the gate's figures.

    Bins are united over the files (a bin planned by any run, e.g. a mesh or chip geometry only some
    runs elaborate, must be hit by some run) and hits are summed. A covergroup of
    :func:`covergroup_names` absent from every file counts as one hole. Waived bins
    (``[[functional]]`` of ``waivers``) are left out of the figures.

    Returns ``{"pct", "bins", "hit", "waived", "files", "groups": {name: {"pct", "bins", "hit", "holes",
    "waived"}}, "unused_waivers": [...]}``; ``pct`` is ``100 * hit / bins`` over the planned bins outside
    waivers.

    cocotb-coverage's own ``merge_coverage`` is not used: it requires every file to plan the same bins
    (a bin missing from the first file raises ``KeyError``), which geometry-derived bins do not satisfy.
    """
    if isinstance(files, (str, Path)) or not isinstance(files, Sequence):
        raise ValueError(f"files must be a list of paths, not {type(files).__name__}")
    if not files:
        raise ValueError("files: nothing to merge (empty list)")
    rules = load_waivers(waivers)
    merged: dict[str, dict[str, dict[str, int]]] = {}
    for path in files:
        for group, items in read_database(path).items():
            if group not in _ALL_GROUPS:
                raise ValueError(f"files: {path}: unknown covergroup {group!r}")
            g = merged.setdefault(group, {})
            for item, bins in items.items():
                m = g.setdefault(item, {})
                for label, hits in bins.items():
                    m[label] = m.get(label, 0) + hits
    # The merged database, in the same layout (so it can be merged again and read by the closure flow).
    db = {}
    for group, items in merged.items():
        total = covered = 0
        for item, bins in items.items():
            n = sum(1 for h in bins.values() if h)
            db[f"{PREFIX}.{group}.{item}"] = _item_entry("CoverItem", bins, n)
            total += len(bins)
            covered += n
        db[f"{PREFIX}.{group}"] = _group_entry(total, covered)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(db, sort_keys=True))

    used = set()
    groups = {}
    all_bins = all_hit = all_waived = 0
    for group in _ALL_GROUPS:
        items = merged.get(group)
        if not items:
            groups[group] = {"pct": 0.0, "bins": 1, "hit": 0, "waived": 0, "holes": [NOT_SAMPLED]}
            all_bins += 1
            continue
        bins = hit = waived = 0
        holes = []
        for item, item_bins in sorted(items.items()):
            for label, hits in item_bins.items():
                full = f"{item}/{label}"
                rule = next((w for w in rules if w.matches(group, full)), None)
                if rule is not None:
                    used.add(rule)
                    waived += 1
                    continue
                bins += 1
                if hits:
                    hit += 1
                else:
                    holes.append(full)
        groups[group] = {
            "pct": 100.0 * hit / bins if bins else 100.0,
            "bins": bins,
            "hit": hit,
            "waived": waived,
            "holes": holes,
        }
        all_bins += bins
        all_hit += hit
        all_waived += waived
    return {
        "pct": 100.0 * all_hit / all_bins if all_bins else 100.0,
        "bins": all_bins,
        "hit": all_hit,
        "waived": all_waived,
        "files": len(files),
        "groups": groups,
        "unused_waivers": [f"{w.covergroup}: {w.bin}" for w in rules if w not in used],
    }

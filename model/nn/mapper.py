"""Layers onto cores: the mapping table, its validation, and the per-core conductance targets.

A layer of fan-in ``K`` and fan-out ``N`` occupies, on each core it uses, one rectangle
(a *block*) of ``2 * (k + bias_pairs)`` rows by ``N`` columns:

* **differential pairs**: input ``i`` of the segment drives rows ``2i`` (POS, ``G+``) and
  ``2i + 1`` (NEG, ``G-``; the line mode negates its drive), so a column integrates
  ``x * (G+ - G-)``. A weight level ``w`` is ``G+ = w g``, ``G- = 0`` for ``w > 0`` and the
  reverse for ``w < 0`` (``g`` = codes per level; the idle device is RESET "off");
* **bias rows**: ``bias_pairs`` more pairs, driven with the top input code; a neuron's bias
  level is spread over them (each pair carries -7..7) and, for a layer split over several
  cores, **over its segments**, so no pair exceeds the weight range;
* **split layers**: a fan-in that does not fit one core (``2 * (K + bias_pairs) > rows``) is cut
  into the fewest equal segments, one per core, on a horizontal run of cores; every segment sits
  at the same rows and columns of its core, and the host's reduced MVM adds the cores' signed
  counts over the NoC (the partial sums);
* **shared cores**: blocks are placed first-fit in layer order on the rectangle corners left by
  earlier blocks, so a later layer goes onto a core an earlier one uses whenever the cells are
  free. Blocks on one core may share rows (not at the same time: each MVM drives only its block's
  rows and converts only its block's columns) but never cells.

:class:`MappingTable` is the result, like NeuRRAM's mapping tables: one :class:`Block` row per
(layer, segment) with its core, rows and columns. :meth:`MappingTable.validate` checks it
(geometry, overlaps, fan-in coverage, layer chaining) and is run on every table built or loaded;
every failure is a ``ValueError`` that names the block and the reason.
"""

import json
from dataclasses import asdict, dataclass

import numpy as np

from ..encoding import CoreConfig, LineMode
from .data import IN_BITS, X_MAX
from .network import W_LEVELS, QuantizedNet

__all__ = ["BIAS_PAIRS", "Block", "MappingTable", "segments_needed", "map_network"]

#: Bias row pairs of every block.
BIAS_PAIRS = 4


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, not {value}")
    return int(value)


def segments_needed(fan_in, core_rows, bias_pairs=BIAS_PAIRS):
    """Fewest equal segments of a fan-in ``fan_in`` that each fit ``core_rows`` rows."""
    fan_in, core_rows = _positive("fan_in", fan_in), _positive("core_rows", core_rows)
    per = core_rows // 2 - bias_pairs
    if per < 1:
        raise ValueError(f"core_rows={core_rows} cannot hold one differential pair plus {bias_pairs} bias pairs")
    return -(-fan_in // per)


@dataclass(frozen=True)
class Block:
    """One row of the mapping table: segment ``segment`` of layer ``layer`` on core ``(x, y)``.

    ``row0``/``rows`` and ``col0``/``cols`` are the block's rectangle on the core; the segment
    covers the layer's inputs ``fan_in_start .. fan_in_start + fan_in - 1``. ``segments`` is the
    layer's segment count (the reduced MVM runs on the cores ``(x - segment, y)`` ..
    ``(x - segment + segments - 1, y)``).
    """

    layer: int
    segment: int
    segments: int
    x: int
    y: int
    row0: int
    rows: int
    col0: int
    cols: int
    fan_in_start: int
    fan_in: int
    bias_pairs: int
    pulse_mult: int
    out_bits: int

    @property
    def name(self):
        return f"L{self.layer}.s{self.segment}@({self.x},{self.y})"

    @property
    def max_count(self):
        """The ADC's saturation count for ``out_bits`` (sign + magnitude)."""
        return (1 << (self.out_bits - 1)) - 1

    def intersects(self, xy, row0, rows, col0, cols):
        """Whether ``rows`` x ``cols`` cells at ``(row0, col0)`` of core ``xy`` share a cell with this block."""
        return (
            (self.x, self.y) == tuple(xy)
            and self.row0 < row0 + rows
            and row0 < self.row0 + self.rows
            and self.col0 < col0 + cols
            and col0 < self.col0 + self.cols
        )

    def overlaps(self, other):
        return self.intersects((other.x, other.y), other.row0, other.rows, other.col0, other.cols)


@dataclass(frozen=True)
class MappingTable:
    """Every block of a network on a ``grid`` of ``core_rows`` x ``core_cols`` cores."""

    grid: tuple
    core_rows: int
    core_cols: int
    layer_sizes: tuple  # (fan_in of layer 0, fan_out of layer 0, fan_out of layer 1, ...)
    blocks: tuple

    # -- queries ----------------------------------------------------------------------------------

    def layer_blocks(self, layer):
        """The blocks of ``layer``, in segment order."""
        return sorted((b for b in self.blocks if b.layer == layer), key=lambda b: b.segment)

    @property
    def layers(self):
        return len(self.layer_sizes) - 1

    @property
    def cores_used(self):
        return sorted({(b.x, b.y) for b in self.blocks}, key=lambda xy: (xy[1], xy[0]))

    def area(self, layer):
        """``(x0, y0, x1, y1)``: the cores the MVM of ``layer`` runs on."""
        bl = self.layer_blocks(layer)
        return (bl[0].x, bl[0].y, bl[-1].x, bl[-1].y)

    def config(self, block):
        """The :class:`CoreConfig` that runs ``block`` alone: its rows' line modes, its columns' mask."""
        modes = [LineMode.OFF] * max(self.core_rows, self.core_cols)
        for r in range(block.rows):
            modes[block.row0 + r] = LineMode.NEG if r % 2 else LineMode.POS
        mask = [block.col0 <= c < block.col0 + block.cols for c in range(max(self.core_rows, self.core_cols))]
        return CoreConfig(
            rows=self.core_rows,
            cols=self.core_cols,
            backward=False,
            signed=False,
            in_bits=IN_BITS,
            out_bits=block.out_bits,
            pulse_mult=block.pulse_mult,
            max_count=block.max_count,
            line_modes=modes,
            out_mask=mask,
        )

    def block_inputs(self, block, x):
        """The ``core_rows`` input elements of an MVM of ``block`` for the layer inputs ``x`` (``(n, fan_in)``):
        each input on its pair, ``X_MAX`` on the bias rows, 0 on every other line (a core takes a
        whole vector: as many elements as it has rows, docs/host-protocol.md)."""
        x = np.asarray(x)
        seg = x[:, block.fan_in_start : block.fan_in_start + block.fan_in]
        out = np.zeros((x.shape[0], self.core_rows), dtype=np.int64)
        out[:, block.row0 : block.row0 + 2 * block.fan_in] = np.repeat(seg, 2, axis=1)
        out[:, block.row0 + 2 * block.fan_in : block.row0 + block.rows] = X_MAX
        return out

    # -- validation ----------------------------------------------------------------------------

    def validate(self):
        """Check the table; returns it. Raises ValueError naming the offending block."""
        gx, gy = self.grid
        if not self.blocks:
            raise ValueError("mapping table has no blocks")
        for b in self.blocks:
            if not (0 <= b.x < gx and 0 <= b.y < gy):
                raise ValueError(f"block {b.name}: core ({b.x}, {b.y}) is outside the {gx} x {gy} grid")
            if b.row0 < 0 or b.row0 + b.rows > self.core_rows:
                raise ValueError(
                    f"block {b.name}: rows {b.row0}..{b.row0 + b.rows - 1} exceed core_rows={self.core_rows}"
                )
            if b.col0 < 0 or b.col0 + b.cols > self.core_cols:
                raise ValueError(
                    f"block {b.name}: cols {b.col0}..{b.col0 + b.cols - 1} exceed core_cols={self.core_cols}"
                )
            if b.rows != 2 * (b.fan_in + b.bias_pairs):
                raise ValueError(
                    f"block {b.name}: {b.rows} rows, but {b.fan_in} inputs + {b.bias_pairs} bias pairs need "
                    f"{2 * (b.fan_in + b.bias_pairs)}"
                )
        for i, a in enumerate(self.blocks):
            for b in self.blocks[i + 1 :]:
                if a.overlaps(b):
                    raise ValueError(f"blocks {a.name} and {b.name} overlap on core ({a.x}, {a.y})")
        for layer in range(self.layers):
            bl = self.layer_blocks(layer)
            if not bl:
                raise ValueError(f"layer {layer} has no block")
            fan_in, fan_out = self.layer_sizes[layer], self.layer_sizes[layer + 1]
            n = len(bl)
            start = 0
            for s, b in enumerate(bl):
                if b.segment != s or b.segments != n:
                    raise ValueError(f"block {b.name}: segment {b.segment} of {b.segments}, expected {s} of {n}")
                if b.fan_in_start != start:
                    raise ValueError(
                        f"block {b.name}: starts at input {b.fan_in_start}, expected {start} (gap or overlap)"
                    )
                start += b.fan_in
                if b.cols != fan_out:
                    raise ValueError(f"block {b.name}: {b.cols} columns, but layer {layer} has {fan_out} outputs")
                if (b.x, b.y, b.row0, b.col0) != (bl[0].x + s, bl[0].y, bl[0].row0, bl[0].col0):
                    raise ValueError(
                        f"block {b.name}: segments of a layer must sit at the same rows and columns of "
                        f"consecutive cores of one grid row (the reduced MVM adds element-wise)"
                    )
                if (b.pulse_mult, b.out_bits) != (bl[0].pulse_mult, bl[0].out_bits):
                    raise ValueError(f"block {b.name}: segments of layer {layer} differ in pulse_mult or out_bits")
            if start != fan_in:
                raise ValueError(f"layer {layer}: segments cover {start} inputs, not its fan-in {fan_in}")
            self.config(bl[0])  # the configuration must be legal (CoreConfig raises naming the field)
        return self

    # -- persistence ------------------------------------------------------------------------------

    def to_dict(self):
        return {
            "grid": list(self.grid),
            "core_rows": self.core_rows,
            "core_cols": self.core_cols,
            "layer_sizes": list(self.layer_sizes),
            "blocks": [asdict(b) for b in self.blocks],
        }

    @classmethod
    def from_dict(cls, d):
        try:
            table = cls(
                grid=tuple(d["grid"]),
                core_rows=int(d["core_rows"]),
                core_cols=int(d["core_cols"]),
                layer_sizes=tuple(d["layer_sizes"]),
                blocks=tuple(Block(**b) for b in d["blocks"]),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"mapping table: malformed ({e})") from None
        return table.validate()

    def save(self, path):
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    def markdown(self):
        """The table as Markdown rows (what ``make sim`` prints and saves)."""
        lines = [
            "| layer | segment | core | rows | cols | inputs | bias pairs | M | ADC bits |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for b in sorted(self.blocks, key=lambda b: (b.layer, b.segment)):
            lines.append(
                f"| {b.layer} | {b.segment + 1}/{b.segments} | ({b.x},{b.y}) | {b.row0}-{b.row0 + b.rows - 1} | "
                f"{b.col0}-{b.col0 + b.cols - 1} | {b.fan_in_start}-{b.fan_in_start + b.fan_in - 1} | {b.bias_pairs} | "
                f"{b.pulse_mult} | {b.out_bits} |"
            )
        return "\n".join(lines)

    # -- conductance targets --------------------------------------------------------------------

    def targets(self, net):
        """``{(x, y): (core_rows, core_cols) int64 target codes}`` of ``net`` on every core used.

        Cells outside every block are off (code 0). The bias level of each neuron is spread over
        all pairs of all segments of its layer, as evenly as possible (each pair -7..7).
        """
        if not isinstance(net, QuantizedNet):
            raise TypeError(f"net must be a QuantizedNet, not {type(net).__name__}")
        g = net.analog.g_step
        out = {xy: np.zeros((self.core_rows, self.core_cols), dtype=np.int64) for xy in self.cores_used}
        for layer, ql in enumerate(net.layers):
            bl = self.layer_blocks(layer)
            pairs = sum(b.bias_pairs for b in bl)
            bias = _spread(ql.bias_levels, pairs)  # (pairs, N)
            p = 0
            for b in bl:
                w = np.concatenate([ql.levels[b.fan_in_start : b.fan_in_start + b.fan_in], bias[p : p + b.bias_pairs]])
                p += b.bias_pairs
                cells = np.zeros((b.rows, b.cols), dtype=np.int64)
                cells[0::2] = np.maximum(w, 0) * g
                cells[1::2] = np.maximum(-w, 0) * g
                out[b.x, b.y][b.row0 : b.row0 + b.rows, b.col0 : b.col0 + b.cols] = cells
        return out


def _spread(levels, pairs):
    """``(pairs, N)`` pair levels in -7..7 summing to ``levels`` (N,), as even as possible."""
    levels = np.asarray(levels, dtype=np.int64)
    if np.abs(levels).max(initial=0) > W_LEVELS * pairs:
        raise ValueError(
            f"a bias level of {int(np.abs(levels).max())} needs more than the {pairs} bias pairs available"
        )
    mag, sign = np.abs(levels), np.sign(levels)
    base, extra = mag // pairs, mag % pairs
    rows = base[None, :] + (np.arange(pairs)[:, None] < extra[None, :])
    return rows * sign[None, :]


def map_network(net, *, grid=(2, 1), core_rows=256, core_cols=256, bias_pairs=BIAS_PAIRS):
    """Place ``net`` on a ``grid`` of cores; returns the validated :class:`MappingTable`.

    Raises
    ------
    ValueError
        A layer has more outputs than a core has columns, or the network does not fit the grid
        (the message names the layer and what it needed).
    """
    if not isinstance(net, QuantizedNet):
        raise TypeError(f"net must be a QuantizedNet, not {type(net).__name__}")
    gx, gy = (_positive("grid", v) for v in grid)
    core_rows, core_cols = _positive("core_rows", core_rows), _positive("core_cols", core_cols)
    blocks = []
    for layer, ql in enumerate(net.layers):
        if ql.fan_out > core_cols:
            raise ValueError(f"layer {layer} has {ql.fan_out} outputs, more than core_cols={core_cols}")
        n = segments_needed(ql.fan_in, core_rows, bias_pairs)
        if n > gx:
            raise ValueError(f"layer {layer} needs {n} cores in a row (fan-in {ql.fan_in}), but the grid is {gx} wide")
        fan_ins = [len(a) for a in np.array_split(np.arange(ql.fan_in), n)]
        rows = 2 * (max(fan_ins) + bias_pairs)
        spot = _first_fit(blocks, n, rows, ql.fan_out, grid=(gx, gy), core_rows=core_rows, core_cols=core_cols)
        if spot is None:
            raise ValueError(
                f"layer {layer} ({n} segment(s) of {rows} rows x {ql.fan_out} columns) does not fit the free cells of "
                f"the {gx} x {gy} grid of {core_rows} x {core_cols} cores"
            )
        x0, y0, row0, col0 = spot
        start = 0
        for s, k in enumerate(fan_ins):
            blocks.append(
                Block(
                    layer=layer,
                    segment=s,
                    segments=n,
                    x=x0 + s,
                    y=y0,
                    row0=row0,
                    rows=2 * (k + bias_pairs),
                    col0=col0,
                    cols=ql.fan_out,
                    fan_in_start=start,
                    fan_in=k,
                    bias_pairs=bias_pairs,
                    pulse_mult=ql.pulse_mult,
                    out_bits=ql.out_bits,
                )
            )
            start += k
    sizes = (net.layers[0].fan_in, *(ql.fan_out for ql in net.layers))
    table = MappingTable(
        grid=(gx, gy), core_rows=core_rows, core_cols=core_cols, layer_sizes=sizes, blocks=tuple(blocks)
    )
    return table.validate()


def _first_fit(blocks, n, rows, cols, *, grid, core_rows, core_cols):
    """``(x0, y0, row0, col0)`` of the first free spot for ``n`` segments, raster order, or None."""
    gx, gy = grid
    corners_r = sorted({0, *(b.row0 + b.rows for b in blocks)})
    corners_c = sorted({0, *(b.col0 + b.cols for b in blocks)})
    for y0 in range(gy):
        for x0 in range(gx - n + 1):
            for col0 in corners_c:
                for row0 in corners_r:
                    if row0 + rows > core_rows or col0 + cols > core_cols:
                        continue
                    cells = (row0, rows, col0, cols)
                    if not any(b.intersects((x0 + s, y0), *cells) for s in range(n) for b in blocks):
                        return x0, y0, row0, col0
    return None

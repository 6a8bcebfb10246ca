"""A ``cols`` x ``rows`` mesh of :class:`~cimdv.rtl.noc.router.Router` with its edge ports.

Ref: docs/noc.md.
"""

import re

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..common.arith import tree_sum
from .compare import gt_const
from .layouts import MAX_GRID, flit_layout
from .router import ORDERS, Port, Router

__all__ = ["Mesh", "EDGE_SIDES", "parse_edge_ports", "edge_member"]

#: Sides of the mesh that can have edge ports: ``"W"`` (west of column 0, one per row) and
#: ``"S"`` (south of row 0, one per column). The other two sides have no coordinates.
EDGE_SIDES = ("W", "S")

#: Width of the drop counters.
COUNTER_BITS = 16

_EDGE_TEXT = re.compile(r"^\s*([WSws])\s*(\d+)\s*$")


def _check_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be {lo}..{hi}, not {value}")


def parse_edge_ports(edge_ports, *, cols, rows):
    """The edge ports named by ``edge_ports`` as a sorted tuple of ``(side, index)`` pairs.

    ``edge_ports`` is an iterable of ``(side, index)`` pairs (``("W", 0)``: west of row 0;
    ``("S", 2)``: south of column 2) or of strings ``"W0"``, ``"S2"``; a single string may
    list several, comma-separated (``"W0,S2"``). Raises :class:`ValueError` (or
    :class:`TypeError`) naming ``edge_ports`` on anything else.
    """
    items = edge_ports.split(",") if isinstance(edge_ports, str) else edge_ports
    try:
        items = [item for item in items if not (isinstance(item, str) and not item.strip())]
    except TypeError:
        raise TypeError(f"edge_ports must be an iterable of (side, index) pairs, not {edge_ports!r}") from None
    result = set()
    for item in items:
        if isinstance(item, str):
            match = _EDGE_TEXT.match(item)
            if match is None:
                raise ValueError(f"edge_ports: {item!r} is not an edge port like 'W0' or 'S2'")
            side, index = match[1].upper(), int(match[2])
        else:
            try:
                side, index = item
            except (TypeError, ValueError):
                raise TypeError(f"edge_ports: {item!r} is not a (side, index) pair") from None
        if side not in EDGE_SIDES:
            raise ValueError(f"edge_ports: side {side!r} is not one of {', '.join(map(repr, EDGE_SIDES))}")
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"edge_ports: index {index!r} of side {side!r} must be an integer")
        limit = rows if side == "W" else cols
        if not 0 <= index < limit:
            what = "row" if side == "W" else "column"
            raise ValueError(f"edge_ports: ({side!r}, {index}) names {what} {index}, the mesh has 0..{limit - 1}")
        result.add((side, index))
    return tuple(sorted(result))


def edge_member(side, index, direction):
    """Member name of an edge port: ``edge_w0_in`` (flits into the mesh) or ``edge_w0_out``."""
    return f"edge_{side.lower()}{index}_{direction}"


class Mesh(wiring.Component):
    """A 2D mesh network-on-chip: ``cols`` x ``rows`` routers, their tile ports and edge ports.

    Router ``(x, y)`` connects its ``E`` port to the ``W`` port of router ``(x + 1, y)`` and
    its ``N`` port to the ``S`` port of router ``(x, y + 1)``; its ``L`` port is tile
    ``(x, y)``'s ``inject`` / ``eject`` pair. Ports on the border lead off the mesh: the ones
    named in ``edge_ports`` become edge ports of the mesh, the others are tied off (a route
    that would use one is a misroute, see :class:`~cimdv.rtl.noc.router.Router`).

    Parameters
    ----------
    cols, rows : int
        Mesh size, 1..15 each.
    order : str
        Dimension order of every router: ``"xy"`` (multicast) or ``"yx"`` (unicast).
    depth : int
        Flits per router input FIFO, 2..64.
    edge_ports : iterable
        Edge ports to expose, as accepted by :func:`parse_edge_ports`: ``("W", r)`` is the
        port west of router ``(0, r)`` (coordinates ``(-1, r)``), ``("S", c)`` the port south
        of router ``(c, 0)`` (coordinates ``(c, -1)``). Default: ``("W", 0)``, where the host
        bridge attaches.

    Members
    -------
    inject : :py:`In(stream.Signature(flit_layout())).array(cols, rows)`
        ``inject[x][y]``: packets from tile ``(x, y)`` into the network.
    eject : :py:`Out(stream.Signature(flit_layout())).array(cols, rows)`
        ``eject[x][y]``: packets for tile ``(x, y)``.
    edge_<side><index>_in : :py:`In(stream.Signature(flit_layout()))`
        For each edge port (e.g. ``edge_w0_in``): packets into the network.
    edge_<side><index>_out : :py:`Out(stream.Signature(flit_layout()))`
        For each edge port: packets leaving the network there.
    misroutes : :py:`Out(16)`
        Packets dropped because their route left the mesh where no matching edge port
        exists (a multicast counts once per router that drops a branch); saturating, cleared
        only by reset.
    errors : :py:`Out(16)`
        Packets dropped because a router could not route their header; saturating.

    Timing
    ------
    Without contention a header takes 2 cycles per router it passes, the source and
    destination routers included: from the clock edge at which ``inject`` takes it to the
    edge at which ``eject`` (or an edge output) can give it, ``2 * (hops + 1)`` cycles for
    ``hops`` links between routers; each further flit follows one cycle later. The
    counters change one cycle after the drop.
    """

    def __init__(self, *, cols=4, rows=4, order="xy", depth=2, edge_ports=(("W", 0),)):
        _check_int("cols", cols, 1, MAX_GRID)
        _check_int("rows", rows, 1, MAX_GRID)
        _check_int("depth", depth, 2, 64)
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(map(repr, ORDERS))}, not {order!r}")
        self.cols, self.rows, self.order, self.depth = cols, rows, order, depth
        self.edge_ports = parse_edge_ports(edge_ports, cols=cols, rows=rows)
        flit = stream.Signature(flit_layout())
        members = {
            "inject": In(flit).array(cols, rows),
            "eject": Out(flit).array(cols, rows),
            "misroutes": Out(COUNTER_BITS),
            "errors": Out(COUNTER_BITS),
        }
        for side, index in self.edge_ports:
            members[edge_member(side, index, "in")] = In(flit)
            members[edge_member(side, index, "out")] = Out(flit)
        super().__init__(members)

    def router_edges(self, x, y):
        """Names of the edge ports of router ``(x, y)`` (for its ``edge_ports`` parameter)."""
        names = []
        if x == 0 and ("W", y) in self.edge_ports:
            names.append("W")
        if y == 0 and ("S", x) in self.edge_ports:
            names.append("S")
        return tuple(names)

    def elaborate(self, platform):
        m = Module()
        cols, rows = self.cols, self.rows
        routers = {}
        for x in range(cols):
            for y in range(rows):
                r = Router(
                    x=x,
                    y=y,
                    cols=cols,
                    rows=rows,
                    order=self.order,
                    depth=self.depth,
                    edge_ports=self.router_edges(x, y),
                )
                m.submodules[f"router_{x}_{y}"] = routers[x, y] = r
                wiring.connect(m, wiring.flipped(self.inject[x][y]), r.i_flit[Port.L.value])
                wiring.connect(m, r.o_flit[Port.L.value], wiring.flipped(self.eject[x][y]))
        for (x, y), r in routers.items():
            if x + 1 < cols:
                east = routers[x + 1, y]
                wiring.connect(m, r.o_flit[Port.E.value], east.i_flit[Port.W.value])
                wiring.connect(m, east.o_flit[Port.W.value], r.i_flit[Port.E.value])
            if y + 1 < rows:
                north = routers[x, y + 1]
                wiring.connect(m, r.o_flit[Port.N.value], north.i_flit[Port.S.value])
                wiring.connect(m, north.o_flit[Port.S.value], r.i_flit[Port.N.value])
        for side, index in self.edge_ports:
            r, port = (routers[0, index], Port.W) if side == "W" else (routers[index, 0], Port.S)
            wiring.connect(m, wiring.flipped(getattr(self, edge_member(side, index, "in"))), r.i_flit[port.value])
            wiring.connect(m, r.o_flit[port.value], wiring.flipped(getattr(self, edge_member(side, index, "out"))))
        # Unconnected border ports: their inputs stay idle (valid = 0) and their outputs are never
        # taken (ready = 0); a route onto one is a misroute, so no flit is ever offered there.

        for name, pulses in (
            ("misroutes", [r.misroute for r in routers.values()]),
            ("errors", [r.error for r in routers.values()]),
        ):
            counter = getattr(self, name)
            events = Signal(range(len(Port) * len(routers) + 1), name=f"{name}_now")
            m.d.comb += events.eq(tree_sum([bit for v in pulses for bit in v]))
            total = counter + events
            limit = (1 << COUNTER_BITS) - 1
            m.d.sync += counter.eq(_saturate(total, limit))
        return m


def _saturate(value, limit):
    return Mux(gt_const(value, limit), limit, value)

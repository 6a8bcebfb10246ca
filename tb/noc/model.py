"""Reference routing of the mesh, written from docs/noc.md (not from the RTL): who gets a packet.

An *endpoint* is where packets enter or leave the network: ``("tile", x, y)`` for a tile's
``inject``/``eject`` pair, ``("W", r)`` for the edge port west of row ``r`` (coordinates
``(-1, r)``) and ``("S", c)`` for the edge port south of column ``c`` (coordinates ``(c, -1)``).
:meth:`MeshModel.route` walks the routing tree of one header from its source endpoint and
returns every endpoint that receives the packet, how many routers the header passes to get
there, and the drops (misroutes, refused headers) the routers report.
"""

from dataclasses import dataclass, field

from cimdv.rtl.noc.layouts import EDGE, MAX_GRID

__all__ = ["MeshModel", "Route", "decode_coord", "encode_coord", "tile", "edge"]

_STEP = {"N": (0, 1), "E": (1, 0), "S": (0, -1), "W": (-1, 0)}
_OPPOSITE = {"N": "S", "S": "N", "E": "W", "W": "E"}


def tile(x, y):
    """The endpoint of tile ``(x, y)``."""
    return ("tile", x, y)


def edge(side, index):
    """The endpoint of an edge port: ``edge("W", 0)`` is west of row 0."""
    return (side, index)


def encode_coord(value):
    """Header field value of a coordinate (-1 is ``EDGE``)."""
    if not -1 <= value < MAX_GRID:
        raise ValueError(f"coordinate {value} is outside -1..{MAX_GRID - 1}")
    return EDGE if value == -1 else value


def decode_coord(field_value):
    """Coordinate of a header field value (``EDGE`` reads as -1)."""
    return -1 if field_value == EDGE else field_value


@dataclass
class Route:
    """Where one packet goes.

    ``deliveries`` maps each receiving endpoint to the number of routers the header passes
    on its way there (source and destination routers included). ``misroutes`` and
    ``errors`` count the routers that drop the packet (or a branch of it).
    """

    deliveries: dict = field(default_factory=dict)
    misroutes: int = 0
    errors: int = 0

    @property
    def dropped(self):
        return self.misroutes + self.errors


class MeshModel:
    """The routing rules of docs/noc.md for one mesh configuration.

    Parameters
    ----------
    cols, rows : int
    order : str
        ``"xy"`` or ``"yx"``.
    edge_ports : iterable of (side, index)
        The exposed edge ports, e.g. ``[("W", 0)]``.
    """

    def __init__(self, cols, rows, order, edge_ports):
        if order not in ("xy", "yx"):
            raise ValueError(f"order must be 'xy' or 'yx', not {order!r}")
        self.cols, self.rows, self.order = cols, rows, order
        self.edge_ports = tuple(sorted((str(side), int(index)) for side, index in edge_ports))

    # ---- endpoints -----------------------------------------------------------------------------

    @property
    def tiles(self):
        return [tile(x, y) for y in range(self.rows) for x in range(self.cols)]

    @property
    def endpoints(self):
        """Every tile, then every exposed edge port."""
        return self.tiles + [edge(side, index) for side, index in self.edge_ports]

    @staticmethod
    def coords(endpoint):
        """(x, y) of an endpoint, -1 across an edge."""
        if endpoint[0] == "tile":
            return endpoint[1], endpoint[2]
        side, index = endpoint
        return (-1, index) if side == "W" else (index, -1)

    def endpoint_at(self, x, y):
        """The endpoint with coordinates ``(x, y)``, or None."""
        if 0 <= x < self.cols and 0 <= y < self.rows:
            return tile(x, y)
        for side, index in self.edge_ports:
            if self.coords((side, index)) == (x, y):
                return (side, index)
        return None

    # ---- routing -------------------------------------------------------------------------------

    def route(self, src, x0, y0, x1=None, y1=None):
        """The :class:`Route` of a packet from endpoint ``src`` to the rectangle ``x0..x1`` x ``y0..y1``.

        Coordinates are plain integers (-1 across an edge); ``x1``/``y1`` default to ``x0``/``y0``.
        """
        x1 = x0 if x1 is None else x1
        y1 = y0 if y1 is None else y1
        rect = (x0, y0, x1, y1)
        if src[0] == "tile":
            start, entry = (src[1], src[2]), None  # None: the local port
        elif src[0] == "W":
            start, entry = (0, src[1]), "W"
        else:
            start, entry = (src[1], 0), "S"
        result = Route()
        self._visit(start, entry, rect, 1, result, injected=True)
        return result

    def _inside(self, x, y, rect):
        x0, y0, x1, y1 = rect
        return x0 <= x <= x1 and y0 <= y <= y1

    def _requests(self, x, y, came_from, injected, rect):
        """Output ports a router asks for (``"L"`` for the local tile)."""
        x0, y0, x1, y1 = rect
        wanted = set()
        if self.order == "yx":
            if y0 > y:
                wanted.add("N")
            elif y0 < y:
                wanted.add("S")
            elif x0 > x:
                wanted.add("E")
            elif x0 < x:
                wanted.add("W")
            else:
                wanted.add("L")
            return wanted
        in_columns = x0 <= x <= x1
        if injected or came_from in ("E", "W"):
            # X phase: onward along the row; both ways where the packet entered the network.
            if x0 < x and (injected or came_from == "E"):
                wanted.add("W")
            if x1 > x and (injected or came_from == "W"):
                wanted.add("E")
            if in_columns:
                if y1 > y:
                    wanted.add("N")
                if y0 < y:
                    wanted.add("S")
                if y0 <= y <= y1:
                    wanted.add("L")
        else:
            # Y phase (arrived from the south travels north and vice versa).
            onward = "N" if came_from == "S" else "S"
            if in_columns:
                if onward == "N" and y1 > y:
                    wanted.add("N")
                if onward == "S" and y0 < y:
                    wanted.add("S")
                if y0 <= y <= y1:
                    wanted.add("L")
        return wanted

    def decision(self, x, y, came_from, rect, *, injected=False):
        """What router ``(x, y)`` does with a header that arrived from ``came_from``.

        ``came_from`` is the port the header arrived on (``"N"``, ``"E"``, ``"S"``, ``"W"``, or
        None for the local port); ``injected`` marks a route that starts here (local port or an
        edge input). Returns ``(outcome, ports)``: ``("forward", {"L", "E", ...})``,
        ``("misroute", ports)`` or ``("error", ports)`` (the packet is dropped).
        """
        x0, y0, x1, y1 = rect
        refused = x0 > x1 or y0 > y1 or (self.order == "yx" and (x0 != x1 or y0 != y1))
        wanted = set() if refused else self._requests(x, y, came_from, injected, rect)
        if not wanted:
            return "error", wanted
        for port in wanted - {"L"}:
            nx, ny = x + _STEP[port][0], y + _STEP[port][1]
            if 0 <= nx < self.cols and 0 <= ny < self.rows:
                continue
            leaf = self.endpoint_at(nx, ny)
            if leaf is None or leaf[0] != port or not self._inside(nx, ny, rect):
                return "misroute", wanted
        return "forward", wanted

    def _visit(self, pos, came_from, rect, routers, result, *, injected=False):
        x, y = pos
        outcome, wanted = self.decision(x, y, came_from, rect, injected=injected)
        if outcome == "error":
            result.errors += 1
            return
        if outcome == "misroute":
            result.misroutes += 1  # the whole packet is dropped at this router
            return
        for port in sorted(wanted):
            if port == "L":
                result.deliveries[tile(x, y)] = routers
                continue
            nx, ny = x + _STEP[port][0], y + _STEP[port][1]
            if 0 <= nx < self.cols and 0 <= ny < self.rows:
                self._visit((nx, ny), _OPPOSITE[port], rect, routers + 1, result)
            else:
                result.deliveries[self.endpoint_at(nx, ny)] = routers

    def reachable(self, src, dst):
        """Whether a unicast packet from ``src`` reaches exactly ``dst`` (no drop)."""
        r = self.route(src, *self.coords(dst))
        return r.dropped == 0 and set(r.deliveries) == {dst}

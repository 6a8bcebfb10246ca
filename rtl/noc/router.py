"""One router of the 2D mesh: five ports, wormhole switching, XY-tree multicast, YX unicast.

Ref: docs/noc.md (topology, routing, deadlock freedom, arbitration, latency) and
``layouts.py`` (flit and header layouts).
"""

import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import EDGE, MAX_GRID, Header, flit_layout

__all__ = ["Port", "ORDERS", "Router", "coord_value"]

#: Dimension orders: ``"xy"`` (request network, multicast) and ``"yx"`` (response network, unicast).
ORDERS = ("xy", "yx")


class Port(enum.Enum, shape=3):
    """Router ports, in the index order of :class:`Router`'s port arrays."""

    #: The tile's own port (inject into / eject from the network).
    L = 0
    #: Towards y + 1.
    N = 1
    #: Towards x + 1.
    E = 2
    #: Towards y - 1.
    S = 3
    #: Towards x - 1.
    W = 4


_STEP = {Port.N: (0, 1), Port.E: (1, 0), Port.S: (0, -1), Port.W: (-1, 0)}


def coord_value(field):
    """The signed value of a 4-bit coordinate field: ``EDGE`` (15) reads as -1, anything else as itself."""
    return Cat(field, field == EDGE).as_signed()


class _Coord:
    """A header coordinate field for the routing function's comparisons. Against a constant
    (this router's position, a leaf cell) the test is a function of the field's four bits, so
    it is built as one (a single LUT) rather than a signed comparison (a carry chain);
    against another field it is the signed comparison of :func:`coord_value`."""

    def __init__(self, field):
        self.field = field
        self.value = coord_value(field)

    def _test(self, pred):
        codes = range(1 << len(self.field))
        ok = [k for k in codes if pred(-1 if k == EDGE else k)]
        if len(ok) == len(codes):
            return Const(1, 1)
        if not ok:
            return Const(0, 1)
        if len(ok) <= len(codes) // 2:
            return Cat(self.field == k for k in ok).any()
        return ~Cat(self.field == k for k in codes if k not in ok).any()

    def _cmp(self, other, op):
        if isinstance(other, _Coord):
            return op(self.value, other.value)
        return self._test(lambda v: op(v, other))

    def __lt__(self, other):
        return self._cmp(other, operator.lt)

    def __le__(self, other):
        return self._cmp(other, operator.le)

    def __gt__(self, other):
        return self._cmp(other, operator.gt)

    def __ge__(self, other):
        return self._cmp(other, operator.ge)


def _check_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be {lo}..{hi}, not {value}")


class Router(wiring.Component):
    """A five-port wormhole router of the mesh at column ``x``, row ``y``.

    Every input has a FIFO of ``depth`` flits. The header flit of a packet (the first flit
    after a ``last``) selects a set of outputs; the input is granted that whole set at once
    (or nothing), keeps it while the packet's flits pass, and releases it with the flit
    that has ``last``. A flit leaves the input FIFO only when every granted output has
    taken it (synchronous replication); an output that took it early keeps ``valid`` low
    until the others have, so no output gets more than one flit ahead and ``valid`` never
    waits for ``ready``.

    Routing (``order``):

    * ``"xy"``: the destination rectangle ``x0..x1`` x ``y0..y1`` is covered by an XY tree:
      along X on the source row (both ways from a packet's entry, onward only after),
      branching into Y at every column inside ``x0..x1``, ejecting at every tile inside
      the rectangle. A unicast packet is the one-tile rectangle.
    * ``"yx"``: unicast only, Y first to row ``y0``, then X to column ``x0``.

    Coordinate fields read ``EDGE`` (15) as -1. A hop off the mesh is legal only onto a
    connected edge port (``edge_ports``) whose leaf cell (the coordinates across that
    edge) lies inside the rectangle; a packet whose route takes any other hop off the
    mesh is dropped whole at this router and ``misroute`` pulses. A header this router
    cannot route (an empty rectangle ``x0 > x1`` or ``y0 > y1``, a multicast on a ``"yx"``
    router, a route with no output) is dropped the same way and ``error`` pulses. A port
    that leads off the mesh and is not an edge port is unused: it has no FIFO, its input
    never takes a flit and its output never offers one.

    Arbitration: one round-robin pointer per router over the five inputs, shared by all
    outputs. The input it points at (the top input) is served first; if it is blocked,
    it keeps the pointer and reserves every output it asked for, so lower inputs can take
    only outputs it does not need. Lower inputs are granted in pointer order when their
    whole set is free. The pointer moves on when the top input is granted or asks for
    nothing. An output whose packet ends this cycle counts as free.

    Parameters
    ----------
    x, y : int
        Position in the mesh, ``0 <= x < cols``, ``0 <= y < rows``.
    cols, rows : int
        Mesh size, 1..15 each (coordinate 15 is the edge at -1).
    order : str
        ``"xy"`` or ``"yx"``.
    depth : int
        Flits per input FIFO, 2..64.
    edge_ports : iterable of str
        Ports of this router that lead off the mesh and are connected to an edge port:
        ``"W"`` (only at ``x = 0``: the leaf cell ``(-1, y)``) and ``"S"`` (only at
        ``y = 0``: the leaf cell ``(x, -1)``). Default none.

    Members
    -------
    i_flit : :py:`In(stream.Signature(flit_layout())).array(5)`
        Input links, indexed by :class:`Port` (``i_flit[Port.E]`` comes from the router at
        ``x + 1``).
    o_flit : :py:`Out(stream.Signature(flit_layout())).array(5)`
        Output links, indexed by :class:`Port`.
    misroute : :py:`Out(5)`
        Bit ``p`` pulses for one cycle when a packet arriving on input ``p`` is dropped
        because its route leaves the mesh where no matching edge port exists.
    error : :py:`Out(5)`
        Bit ``p`` pulses for one cycle when a header arriving on input ``p`` cannot be
        routed (see above) and its packet is dropped.

    Timing
    ------
    An input accepts a flit whenever its FIFO is not full (``ready`` is the FIFO's
    registered not-full flag, never a function of ``valid``). A header written into the
    FIFO at clock edge *t* is routed and arbitrated in the next cycle (its route is computed
    on the way in and stored with it, so only allocation follows the FIFO); the grant is
    registered at edge *t* + 1 and the header is offered on its outputs from then on, so
    it can be taken at edge *t* + 2: **2 cycles per router** without contention. The
    following flits of the packet pass one per cycle. A dropped packet is consumed at one
    flit per cycle from the cycle its header reaches the FIFO head. On one input,
    consecutive packets are separated by one idle cycle (the next header is arbitrated
    after the previous tail leaves); on one output, packets from different inputs follow
    back to back.
    """

    def __init__(self, *, x, y, cols, rows, order="xy", depth=2, edge_ports=()):
        _check_int("cols", cols, 1, MAX_GRID)
        _check_int("rows", rows, 1, MAX_GRID)
        _check_int("x", x, 0, cols - 1)
        _check_int("y", y, 0, rows - 1)
        _check_int("depth", depth, 2, 64)
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(map(repr, ORDERS))}, not {order!r}")
        if isinstance(edge_ports, str):
            raise TypeError(f"edge_ports must be an iterable of port names, not the string {edge_ports!r}")
        try:
            edges = {Port[p] if isinstance(p, str) else Port(p) for p in edge_ports}
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"edge_ports must name ports 'W' or 'S', not {edge_ports!r}") from exc
        allowed = {p for p, ok in ((Port.W, x == 0), (Port.S, y == 0)) if ok}
        if not edges <= allowed:
            bad = ", ".join(sorted(p.name for p in edges - allowed))
            raise ValueError(
                f"edge_ports {bad} not possible at ({x}, {y}): only 'W' at x = 0 and 'S' at y = 0 lead to an edge"
            )
        self.x, self.y, self.cols, self.rows = x, y, cols, rows
        self.order = order
        self.depth = depth
        self.edge_ports = frozenset(edges)
        flit = stream.Signature(flit_layout())
        super().__init__(
            {
                "i_flit": In(flit).array(len(Port)),
                "o_flit": Out(flit).array(len(Port)),
                "misroute": Out(len(Port)),
                "error": Out(len(Port)),
            }
        )

    def off_mesh(self, port):
        """Whether ``port`` leads off the mesh (connected to an edge port or to nothing)."""
        if port is Port.L:
            return False
        dx, dy = _STEP[port]
        return not (0 <= self.x + dx < self.cols and 0 <= self.y + dy < self.rows)

    # ---- routing function --------------------------------------------------------------

    def _route(self, m, port, hdr):
        """(request mask, misroute, error) of a header arriving on input ``port``, as comb signals."""
        x, y = self.x, self.y
        x0, x1 = _Coord(hdr.x0), _Coord(hdr.x1)
        y0, y1 = _Coord(hdr.y0), _Coord(hdr.y1)
        in_x = (x0 <= x) & (x <= x1)
        in_y = (y0 <= y) & (y <= y1)
        req = {p: Signal(name=f"req_{port.name}_{p.name}") for p in Port}
        malformed = (x0 > x1) | (y0 > y1)

        if self.order == "xy":
            # Inputs that start a route: the local port and any link from off the mesh (edge inputs).
            start = port is Port.L or self.off_mesh(port)
            if start or port in (Port.E, Port.W):
                # X phase: onward along the row (both ways only where the packet entered), and a
                # branch into Y at every column inside x0..x1.
                m.d.comb += [
                    req[Port.W].eq((x0 < x) & (start or port is Port.E)),
                    req[Port.E].eq((x1 > x) & (start or port is Port.W)),
                    req[Port.N].eq(in_x & (y1 > y)),
                    req[Port.S].eq(in_x & (y0 < y)),
                    req[Port.L].eq(in_x & in_y),
                ]
            else:
                # Y phase: onward in the direction of travel only.
                onward = Port.N if port is Port.S else Port.S
                m.d.comb += [
                    req[onward].eq(in_x & ((y1 > y) if onward is Port.N else (y0 < y))),
                    req[Port.L].eq(in_x & in_y),
                ]
            refused = malformed
        else:
            # Y first to row y0, then X to column x0; the same function on every input.
            with m.If(y0 > y):
                m.d.comb += req[Port.N].eq(1)
            with m.Elif(y0 < y):
                m.d.comb += req[Port.S].eq(1)
            with m.Elif(x0 > x):
                m.d.comb += req[Port.E].eq(1)
            with m.Elif(x0 < x):
                m.d.comb += req[Port.W].eq(1)
            with m.Else():
                m.d.comb += req[Port.L].eq(1)
            refused = malformed | (hdr.x0 != hdr.x1) | (hdr.y0 != hdr.y1)

        mask = Signal(len(Port), name=f"route_{port.name}")
        m.d.comb += mask.eq(Cat(req[p] for p in Port))

        # A hop off the mesh is legal only onto an edge port whose leaf cell is in the rectangle.
        illegal = []
        for p in (Port.N, Port.E, Port.S, Port.W):
            if not self.off_mesh(p):
                continue
            if p in self.edge_ports:
                lx, ly = x + _STEP[p][0], y + _STEP[p][1]
                leaf_in = (x0 <= lx) & (lx <= x1) & (y0 <= ly) & (ly <= y1)
                illegal.append(req[p] & ~leaf_in)
            else:
                illegal.append(req[p])
        misroute = Signal(name=f"misroute_{port.name}")
        error = Signal(name=f"error_{port.name}")
        m.d.comb += [
            error.eq(refused | (mask == 0)),
            misroute.eq(~error & (Cat(*illegal).any() if illegal else 0)),
        ]
        return mask, misroute, error

    # ---- structure -----------------------------------------------------------------------

    def linked(self, port):
        """Whether ``port`` is used: the local port, a link to a neighbour, or a connected edge port.

        An unused port (off the mesh, no edge port) has no input FIFO and no output logic: its
        input never takes a flit (``ready`` = 0) and no route can ask for its output (that is a
        misroute).
        """
        return not self.off_mesh(port) or port in self.edge_ports

    def elaborate(self, platform):
        m = Module()
        ports = list(Port)
        n = len(ports)
        layout = flit_layout()
        live = [p for p in ports if self.linked(p)]

        head = {}  # per live input: flit view of the FIFO head
        head_valid = {}
        pop = {}
        hold = {}  # per live input: outputs held for the current packet
        sent = {}  # per live input: outputs that already took the head flit
        want = [Signal(name=f"want_{p.name}") for p in ports]  # a routable header waits for its outputs
        req = [Signal(n, name=f"req_{p.name}") for p in ports]
        grant = [Signal(name=f"grant_{p.name}") for p in ports]
        for i in live:
            # The routing function is evaluated as a flit enters the FIFO and its verdict (the
            # requested live outputs, misroute, error) is stored with it: at the FIFO head only
            # allocation remains. It is used for headers only.
            link = self.i_flit[i.value]
            in_flit = data.View(layout, link.payload)
            mask_in, misroute_in, error_in = self._route(m, i, data.View(Header, in_flit.data))
            verdict_in = Cat(*(mask_in[p.value] for p in live), misroute_in, error_in)
            q = fifo.SyncFIFO(width=layout.size + len(verdict_in), depth=self.depth)
            m.submodules[f"fifo_{i.name}"] = q
            m.d.comb += [q.w_data.eq(Cat(link.payload, verdict_in)), q.w_en.eq(link.valid), link.ready.eq(q.w_rdy)]
            flit = data.View(layout, q.r_data[: layout.size])
            verdict = q.r_data[layout.size :]
            misroute, error = verdict[len(live)], verdict[len(live) + 1]

            dropping = Signal(name=f"dropping_{i.name}")
            h = Signal(n, name=f"hold_{i.name}")
            s = Signal(n, name=f"sent_{i.name}")

            # A request for an unused port is a misroute: only the live outputs are requested.
            for k, p in enumerate(live):
                m.d.comb += req[i.value][p.value].eq(verdict[k])
            # An idle input (holding no outputs, not dropping) always has a header at its head: the flit
            # after a packet's last one.
            idle = (h == 0) & ~dropping
            header_waits = idle & q.r_rdy
            drop_now = header_waits & (misroute | error)
            m.d.comb += [
                want[i.value].eq(header_waits & ~misroute & ~error),
                self.misroute[i.value].eq(drop_now & misroute),
                self.error[i.value].eq(drop_now & error),
            ]

            # Forwarding: every held output must have taken the head flit before it leaves.
            taken = Cat(~h[o.value] | s[o.value] | self.o_flit[o.value].ready for o in live)
            forward_pop = Signal(name=f"pop_{i.name}")
            m.d.comb += [
                forward_pop.eq((h != 0) & q.r_rdy & taken.all()),
                q.r_en.eq(forward_pop | drop_now | (dropping & q.r_rdy)),
            ]
            # Dropping: a dropped header without `last` keeps consuming until the tail.
            with m.If(drop_now & ~flit.last):
                m.d.sync += dropping.eq(1)
            with m.If(dropping & q.r_rdy & flit.last):
                m.d.sync += dropping.eq(0)
            # Outputs that took the head flit while others did not yet.
            with m.If(forward_pop):
                m.d.sync += s.eq(0)
            with m.Else():
                for o in live:
                    with m.If(h[o.value] & q.r_rdy & self.o_flit[o.value].ready):
                        m.d.sync += s[o.value].eq(1)
            with m.If(forward_pop & flit.last):
                m.d.sync += h.eq(0)
            with m.If(grant[i.value]):
                m.d.sync += h.eq(req[i.value])

            head[i], head_valid[i], pop[i], hold[i], sent[i] = flit, q.r_rdy, forward_pop, h, s

        # ---- output multiplexers (the owner of an output is the input holding it) ----------
        for o in live:
            out = self.o_flit[o.value]
            m.d.comb += [
                out.valid.eq(Cat(hold[i][o.value] & head_valid[i] & ~sent[i][o.value] for i in live).any()),
                out.payload.eq(_or_all([head[i].as_value() & hold[i][o.value].replicate(layout.size) for i in live])),
            ]

        # ---- allocation: atomic, round-robin with a blocked top input keeping its claim ----
        held = Signal(n)
        releasing = Signal(n)
        m.d.comb += [
            held.eq(_or_all([hold[i] for i in live])),
            releasing.eq(_or_all([hold[i] & (pop[i] & head[i].last).replicate(n) for i in live])),
        ]
        free = Signal(n)
        m.d.comb += free.eq(~held | releasing)
        # The requests rotated so that the top input comes first, one priority chain over them, and
        # the grants rotated back.
        top = Signal(range(n))
        rot_req = [Signal(n, name=f"rot_req_{k}") for k in range(n)]
        rot_want = [Signal(name=f"rot_want_{k}") for k in range(n)]
        rot_grant = [Signal(name=f"rot_grant_{k}") for k in range(n)]
        with m.Switch(top):
            for t in range(n):
                with m.Case(t):
                    for k in range(n):
                        m.d.comb += [rot_req[k].eq(req[(t + k) % n]), rot_want[k].eq(want[(t + k) % n])]
                        m.d.comb += grant[(t + k) % n].eq(rot_grant[k])
        avail = free
        for k in range(n):
            m.d.comb += rot_grant[k].eq(rot_want[k] & ((rot_req[k] & ~avail) == 0))
            # The top input (k = 0) reserves its outputs whether or not it is granted.
            claimed = rot_want[k] if k == 0 else rot_grant[k]
            left = Signal(n, name=f"avail_{k}")
            m.d.comb += left.eq(avail & ~(rot_req[k] & claimed.replicate(n)))
            avail = left
        # The pointer stays on a blocked top input, and moves on otherwise.
        with m.If(~rot_want[0] | rot_grant[0]):
            m.d.sync += top.eq(Mux(top == n - 1, 0, top + 1))
        return m


def _or_all(values):
    result = values[0]
    for v in values[1:]:
        result = result | v
    return result

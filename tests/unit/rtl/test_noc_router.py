# amaranth: UnusedElaboratable=no
"""Fast checks of one NoC router in Amaranth's simulator: routing decisions, multicast sets, atomic
allocation, round robin, starvation freedom, synchronous replication, drops, edge ports, latency.

The expected routing decisions come from the bench's reference routing (``cimdv.tb.noc.model``,
written from docs/noc.md) and, for unicast, from a closed form written here.
"""

import random

import pytest
from amaranth.sim import Simulator

from cimdv.rtl.noc.layouts import flit_layout
from cimdv.rtl.noc.router import Port, Router
from cimdv.tb.noc.model import MeshModel
from cimdv.tb.noc.traffic import header_word

LAYOUT = flit_layout()
PORT_NAMES = {None: Port.L, "N": Port.N, "E": Port.E, "S": Port.S, "W": Port.W}


def packet(rect, length=1, *, src=(0, 0), tag=0, ident=0):
    """Words of a packet: the header for ``rect`` and ``length - 1`` payload words tagged with ``ident``."""
    x0, y0, x1, y1 = rect
    return [header_word(x0, y0, x1, y1, *src, tag=tag)] + [(ident << 8) | k for k in range(1, length)]


def simulate(router, sends, *, ready=None, cycles=400, until_idle=True):
    """Drive ``router``: ``sends`` maps an input Port to a list of (start cycle, words).

    ``ready(cycle, port)`` gives each output's ready (default always 1). Returns
    ``(outputs, drops, inputs)``: per output Port the list of (cycle, data, last) transfers; the list
    of (cycle, kind, input Port) drop pulses; per input the cycles its flits were taken.
    """
    ready = ready or (lambda cycle, port: True)
    outputs = {p: [] for p in Port}
    drops = []
    taken = {p: [] for p in Port}
    queues = {p: [] for p in Port}
    pending = {p: sorted(v, key=lambda s: s[0]) for p, v in sends.items()}

    async def bench(ctx):
        idle_for = 0
        for cycle in range(cycles):
            for p in Port:
                while pending.get(p) and pending[p][0][0] <= cycle:
                    words = pending[p].pop(0)[1]
                    queues[p].extend((w, int(i == len(words) - 1)) for i, w in enumerate(words))
                link = router.i_flit[p.value]
                if queues[p]:
                    data, last = queues[p][0]
                    ctx.set(link.payload, LAYOUT.const({"data": data, "last": last}))
                    ctx.set(link.valid, 1)
                else:
                    ctx.set(link.valid, 0)
                ctx.set(router.o_flit[p.value].ready, int(ready(cycle, p)))
            busy = False
            for p in Port:
                out = router.o_flit[p.value]
                if ctx.get(out.valid):
                    busy = True
                    if ctx.get(out.ready):
                        payload = ctx.get(out.payload)
                        outputs[p].append((cycle, int(payload.data), int(payload.last)))
                link = router.i_flit[p.value]
                if queues[p] and ctx.get(link.ready):
                    queues[p].pop(0)
                    taken[p].append(cycle)
                for kind in ("misroute", "error"):
                    if ctx.get(getattr(router, kind)) >> p.value & 1:
                        drops.append((cycle, kind, p))
            await ctx.tick()
            quiet = not busy and not any(queues.values()) and not any(pending.values())
            idle_for = idle_for + 1 if quiet else 0
            if until_idle and idle_for > 6:
                break

    sim = Simulator(router)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return outputs, drops, taken


def packets_of(transfers):
    """Split an output's transfers into packets (lists of data words)."""
    result, current = [], []
    for _, data, last in transfers:
        current.append(data)
        if last:
            result.append(current)
            current = []
    assert not current, f"packet cut short: {current}"
    return result


# ---- parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(x=0, y=0, cols=0, rows=3), ValueError, "cols must be 1..15, not 0"),
        (dict(x=0, y=0, cols=16, rows=3), ValueError, "cols must be 1..15, not 16"),
        (dict(x=0, y=0, cols=3, rows=3.0), TypeError, "rows must be an integer"),
        (dict(x=3, y=0, cols=3, rows=3), ValueError, "x must be 0..2, not 3"),
        (dict(x=0, y=-1, cols=3, rows=3), ValueError, "y must be 0..2, not -1"),
        (dict(x=True, y=0, cols=3, rows=3), TypeError, "x must be an integer"),
        (dict(x=0, y=0, cols=3, rows=3, depth=1), ValueError, "depth must be 2..64, not 1"),
        (dict(x=0, y=0, cols=3, rows=3, order="zx"), ValueError, "order must be one of 'xy', 'yx', not 'zx'"),
        (dict(x=1, y=0, cols=3, rows=3, edge_ports=["W"]), ValueError, "edge_ports W not possible at"),
        (dict(x=0, y=1, cols=3, rows=3, edge_ports=["S"]), ValueError, "edge_ports S not possible at"),
        (dict(x=0, y=0, cols=3, rows=3, edge_ports=["Q"]), ValueError, "edge_ports must name ports"),
        (dict(x=0, y=0, cols=3, rows=3, edge_ports="W"), TypeError, "edge_ports must be an iterable"),
    ],
)
def test_router_rejects_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        Router(**kwargs)


def test_router_accepts_edge_ports_at_the_corner():
    r = Router(x=0, y=0, cols=2, rows=2, edge_ports=("W", "S"))
    assert r.edge_ports == {Port.W, Port.S}
    assert r.off_mesh(Port.W) and r.off_mesh(Port.S) and not r.off_mesh(Port.E) and not r.off_mesh(Port.L)
    assert all(r.linked(p) for p in Port)
    corner = Router(x=1, y=1, cols=2, rows=2)
    assert [p for p in Port if not corner.linked(p)] == [Port.N, Port.E]


def test_unused_ports_take_nothing():
    """A border port without an edge port has no FIFO: its input never takes a flit, its output never offers one."""
    router = Router(x=1, y=1, cols=2, rows=2)
    outputs, drops, taken = simulate(router, {Port.N: [(0, packet((0, 0, 0, 0)))]}, cycles=20, until_idle=False)
    assert taken[Port.N] == [] and drops == [] and all(v == [] for v in outputs.values())


# ---- routing decisions -----------------------------------------------------------------------


def closed_form_unicast(order, x, y, dx, dy):
    if order == "xy":
        if dx != x:
            return Port.E if dx > x else Port.W
        return Port.L if dy == y else (Port.N if dy > y else Port.S)
    if dy != y:
        return Port.N if dy > y else Port.S
    return Port.L if dx == x else (Port.E if dx > x else Port.W)


@pytest.mark.parametrize("order", ["xy", "yx"])
def test_unicast_takes_the_dimension_ordered_port(order):
    """From the centre of a 3 x 3 mesh every destination (edges included) leaves by one port."""
    router = Router(x=1, y=1, cols=3, rows=3, order=order)
    dests = [(dx, dy) for dx in range(-1, 4) for dy in range(-1, 4)]
    sends = {Port.L: [(3 * i, packet((dx, dy, dx, dy), ident=i)) for i, (dx, dy) in enumerate(dests)]}
    outputs, drops, _ = simulate(router, sends)
    assert drops == []
    got = {words[0]: p for p in Port for words in packets_of(outputs[p])}
    for dx, dy in dests:
        assert got[header_word(dx, dy, dx, dy, 0, 0)] == closed_form_unicast(order, 1, 1, dx, dy), (dx, dy)


def rectangles_around(cols, rows):
    """Every rectangle with coordinates -1..cols x -1..rows (empty ones included)."""
    span_x, span_y = range(-1, cols + 1), range(-1, rows + 1)
    return [(x0, y0, x1, y1) for x0 in span_x for x1 in span_x for y0 in span_y for y1 in span_y]


@pytest.mark.parametrize(
    ("order", "pos", "edges"),
    [
        ("xy", (1, 1), ()),
        ("xy", (0, 0), ("W", "S")),
        ("xy", (0, 1), ("W",)),
        ("xy", (1, 0), ()),
        ("yx", (0, 0), ("W",)),
        ("yx", (1, 0), ("S",)),
    ],
)
def test_decisions_match_the_reference_routing(order, pos, edges):
    """Output set, misroute or error for every input and many rectangles equals the reference's decision.

    The mesh is 2 x 2 so coordinates -1..2 cover the edge, every tile and beyond the far side;
    a random sample of rectangles (seeded) keeps the run short.
    """
    x, y = pos
    router = Router(x=x, y=y, cols=2, rows=2, order=order, edge_ports=edges)
    edge_ports = [("W", y) for e in edges if e == "W"] + [("S", x) for e in edges if e == "S"]
    model = MeshModel(2, 2, order, edge_ports)
    rng = random.Random(f"{order}{pos}{edges}")
    rects = rng.sample(rectangles_around(2, 2), 120)
    expected, sends = [], {}
    for inp in ("L", "N", "E", "S", "W"):
        port = Port[inp]
        if not router.linked(port):
            continue  # no FIFO: an unused border port never takes a flit (test_unused_ports_take_nothing)
        came_from = None if inp == "L" else inp
        injected = inp == "L" or router.off_mesh(port)
        for i, rect in enumerate(rects):
            outcome, ports = model.decision(x, y, came_from, rect, injected=injected)
            ident = len(expected)
            expected.append((port, rect, outcome, {Port[p] for p in ports}))
            sends.setdefault(port, []).append((4 * i, packet(rect, length=2, ident=ident)))
    outputs, drops, _ = simulate(router, sends, cycles=4000)
    delivered = {}
    for p in Port:
        for words in packets_of(outputs[p]):
            delivered.setdefault(words[1] >> 8, set()).add(p)
    dropped = {}
    for _, kind, port in drops:
        dropped.setdefault(port, []).append(kind)
    kinds = {p: iter(v) for p, v in dropped.items()}
    for ident, (port, rect, outcome, ports) in enumerate(expected):
        if outcome == "forward":
            assert delivered.get(ident) == ports, (port.name, rect, ports, delivered.get(ident))
        else:
            assert ident not in delivered, (port.name, rect, outcome)
            assert next(kinds[port]) == outcome, (port.name, rect)
    assert all(next(k, None) is None for k in kinds.values()), "more drops than the reference expects"


# ---- allocation --------------------------------------------------------------------------------


#: Five inputs of router (1, 1) whose multicast sets overlap in a ring: {N, L}, {L, E}, {E, W}... .
OVERLAPPING = {
    Port.S: ((1, 1, 1, 2), {Port.N, Port.L}),  # travelling north
    Port.L: ((1, 1, 2, 1), {Port.L, Port.E}),
    Port.W: ((2, 0, 2, 1), {Port.E}),  # travelling east, beyond this column
    Port.E: ((0, 1, 1, 1), {Port.W, Port.L}),  # travelling west
    Port.N: ((1, 0, 1, 1), {Port.S, Port.L}),  # travelling south
}


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_multicast_allocation_is_atomic(seed):
    """Inputs ask for overlapping output sets under random stalls. Every output gets exactly its packets,
    whole and never interleaved, and any two packets sharing outputs pass them in the same order
    (each grant is all-or-nothing, so no packet can hold part of another's set)."""
    router = Router(x=1, y=1, cols=3, rows=3, depth=2)
    rng = random.Random(seed)
    sends, wanted = {}, {p: [] for p in Port}
    for k, (port, (rect, outs)) in enumerate(OVERLAPPING.items()):
        for j in range(3):
            words = packet(rect, length=rng.randint(2, 7), ident=10 * k + j)
            sends.setdefault(port, []).append((rng.randint(0, 20), words))
            for o in outs:
                wanted[o].append(words)
    stalls = {(c, p): rng.random() < 0.4 for c in range(600) for p in Port}
    outputs, drops, _ = simulate(router, sends, ready=lambda c, p: not stalls[c, p], cycles=600)
    assert drops == []
    got = {p: packets_of(outputs[p]) for p in Port}
    for p in Port:
        assert sorted(got[p]) == sorted(wanted[p]), p
    position = {p: {tuple(w): i for i, w in enumerate(got[p])} for p in Port}
    for p in Port:
        for q in Port:
            shared = [w for w in position[p] if w in position[q]]
            assert sorted(shared, key=position[p].get) == sorted(shared, key=position[q].get), (p, q)


def test_round_robin_serves_every_input_in_turn():
    """Five inputs flood one output with one-flit packets: they are served in strict rotation and the
    output carries a packet every cycle (a released output is granted again in the same cycle)."""
    router = Router(x=1, y=1, cols=3, rows=3, depth=2)
    rect = (1, 1, 1, 1)
    n = 8
    sends = {port: [(0, packet(rect, ident=port.value)) for _ in range(n)] for port in Port}
    outputs, _, _ = simulate(router, sends)
    cycles = [c for c, _, _ in outputs[Port.L]]
    assert len(cycles) == 5 * n
    steady = cycles[5 : 5 * n - 5]
    assert steady == list(range(steady[0], steady[0] + len(steady))), "bubbles on a contended output"


def test_round_robin_order_by_input():
    """Same flood with two-flit packets that name their input: each window of five packets has every input once."""
    router = Router(x=1, y=1, cols=3, rows=3, depth=2)
    n = 6
    sends = {port: [(0, packet((1, 1, 1, 1), length=2, ident=port.value)) for _ in range(n)] for port in Port}
    outputs, _, _ = simulate(router, sends)
    sources = [words[1] >> 8 for words in packets_of(outputs[Port.L])]
    assert len(sources) == 5 * n
    for k in range(n):
        assert sorted(sources[5 * k : 5 * k + 5]) == [p.value for p in Port], sources


def test_blocked_top_input_is_not_starved():
    """A multicast wanting {E, N} competes with two unicast streams that keep E and N busy in turns
    (never both free at once): the blocked top input reserves both and gets them within a bound."""
    router = Router(x=1, y=1, cols=3, rows=3, depth=2)
    length = 6
    east = [(0, packet((2, 1, 2, 1), length=length, ident=1)) for _ in range(12)]  # W input -> E
    north = [(3, packet((1, 2, 1, 2), length=length, ident=2)) for _ in range(12)]  # S input -> N
    multicast = [(8, packet((1, 1, 2, 2), length=3, ident=3))]  # from L at (1, 1): E, N and L
    outputs, _, _ = simulate(router, {Port.W: east, Port.S: north, Port.L: multicast})
    mc = multicast[0][1]
    first_e = next(c for c, d, _ in outputs[Port.E] if d == mc[0])
    assert first_e < 8 + 3 * (length + 2), f"multicast waited until cycle {first_e}"
    for p in (Port.E, Port.N, Port.L):
        assert mc in packets_of(outputs[p]), p
    assert len(packets_of(outputs[Port.E])) == len(packets_of(outputs[Port.N])) == 13


def test_synchronous_replication_under_backpressure():
    """A whole-mesh multicast from the centre goes out on all five ports under random stalls:
    every port gets the packet exactly once, and no port is ever more than one flit ahead of another."""
    router = Router(x=1, y=1, cols=3, rows=3, depth=2)
    words = packet((0, 0, 2, 2), length=10, ident=7)
    rng = random.Random(11)
    stalls = {(c, p): rng.random() < 0.5 for c in range(600) for p in Port}
    outputs, drops, _ = simulate(router, {Port.L: [(0, words)]}, ready=lambda c, p: not stalls[c, p])
    assert drops == []
    for p in Port:
        assert packets_of(outputs[p]) == [words], p
    last_cycle = max(c for p in Port for c, _, _ in outputs[p])
    for cycle in range(last_cycle + 1):
        counts = [sum(1 for c, _, _ in outputs[p] if c <= cycle) for p in Port]
        assert max(counts) - min(counts) <= 1, (cycle, counts)


# ---- drops and edges ----------------------------------------------------------------------------


def test_misroute_drops_the_whole_packet_and_the_next_one_flows():
    """At (0, 0) without edge ports a packet for (-1, 0) is consumed whole (input keeps accepting),
    nothing leaves, `misroute` pulses once on the input's bit; the next packet is routed normally."""
    router = Router(x=0, y=0, cols=3, rows=3)
    bad = packet((-1, 0, -1, 0), length=12, ident=1)
    good = packet((1, 0, 1, 0), length=3, ident=2)
    outputs, drops, taken = simulate(router, {Port.L: [(0, bad), (0, good)]})
    assert drops == [(1, "misroute", Port.L)]
    assert packets_of(outputs[Port.E]) == [good]
    assert sum(len(v) for p, v in outputs.items() if p != Port.E) == 0
    assert len(taken[Port.L]) == len(bad) + len(good)


def test_edge_port_delivers_only_its_own_leaf():
    """With the W edge at (0, 0): (-1, 0) leaves by W; (-1, 1) would leave by the same edge but is
    not its leaf cell: misroute. North and east of the mesh have no edge: misroute."""
    router = Router(x=0, y=0, cols=1, rows=1, edge_ports=["W"])
    sends = [packet((-1, 0, -1, 0), length=2, ident=1), packet((-1, 1, -1, 1), ident=2)]
    sends += [packet((1, 0, 1, 0), ident=3), packet((0, 1, 0, 1), ident=4), packet((0, -1, 0, -1), ident=5)]
    outputs, drops, _ = simulate(router, {Port.L: [(0, w) for w in sends]})
    assert packets_of(outputs[Port.W]) == [sends[0]]
    assert [k for _, k, _ in drops] == ["misroute"] * 4


@pytest.mark.parametrize(
    ("order", "rect"),
    [("yx", (0, 0, 1, 0)), ("yx", (0, 0, 0, 1)), ("xy", (1, 0, 0, 0)), ("xy", (0, 1, 0, 0)), ("yx", (1, 0, 0, 0))],
)
def test_refused_headers_pulse_error(order, rect):
    """Multicast on a yx router and empty rectangles are refused: `error` pulses, the packet is dropped."""
    router = Router(x=0, y=0, cols=2, rows=2, order=order)
    outputs, drops, _ = simulate(router, {Port.E: [(0, packet(rect, length=4))], Port.L: [(2, packet((0, 0, 0, 0)))]})
    assert [(k, p) for _, k, p in drops] == [("error", Port.E)]
    assert packets_of(outputs[Port.L]) == [packet((0, 0, 0, 0))]
    assert sum(len(v) for p, v in outputs.items() if p != Port.L) == 0


# ---- timing --------------------------------------------------------------------------------------


def test_two_cycles_per_router_and_one_flit_per_cycle():
    """A header taken at cycle t is offered at t + 1 and taken at t + 2; the body follows back to back."""
    router = Router(x=1, y=1, cols=3, rows=3, depth=4)
    words = packet((2, 1, 2, 1), length=6)
    outputs, _, taken = simulate(router, {Port.L: [(0, words)]})
    cycles = [c for c, _, _ in outputs[Port.E]]
    assert cycles[0] == taken[Port.L][0] + 2
    assert cycles == list(range(cycles[0], cycles[0] + len(words)))

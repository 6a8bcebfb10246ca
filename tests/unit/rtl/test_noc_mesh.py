# amaranth: UnusedElaboratable=no
"""The mesh in Amaranth's simulator against the reference routing, its parameters, and its Verilog top.

Traffic goes through the same packet scoreboard the cocotb benches use (reference routing, no
loss, no duplication, in order per pair, drop counters), so a mesh bug shows here in seconds.
"""

import random

import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from cimdv.rtl import cli
from cimdv.rtl.noc.layouts import flit_layout
from cimdv.rtl.noc.mesh import Mesh, edge_member, parse_edge_ports
from cimdv.rtl.noc.router import Router
from cimdv.tb.noc.model import MeshModel
from cimdv.tb.noc.scoreboard import LatencyBound, PacketScoreboard
from cimdv.tb.noc.traffic import TrafficGenerator

LAYOUT = flit_layout()


def ports_of(mesh, endpoint):
    if endpoint[0] == "tile":
        return mesh.inject[endpoint[1]][endpoint[2]], mesh.eject[endpoint[1]][endpoint[2]]
    side, index = endpoint
    return getattr(mesh, edge_member(side, index, "in")), getattr(mesh, edge_member(side, index, "out"))


def run_mesh(mesh, model, traffic, *, p_stall=0.0, seed=0, cycles=3000, latency=None):
    """Inject ``traffic`` (endpoint -> packets, all sources at once) and feed the packet scoreboard."""
    board = PacketScoreboard(model, latency=latency)
    rng = random.Random(seed)
    queues = {ep: [f for p in packets for f in p.flits()] for ep, packets in traffic.items()}
    counters = {}

    async def bench(ctx):
        quiet = 0
        for cycle in range(cycles):
            for ep in model.endpoints:
                into, out = ports_of(mesh, ep)
                q = queues.get(ep)
                ctx.set(into.valid, int(bool(q)))
                if q:
                    ctx.set(into.payload, LAYOUT.from_bits(q[0]))
                ctx.set(out.ready, int(rng.random() >= p_stall))
            for ep in model.endpoints:
                into, out = ports_of(mesh, ep)
                q = queues.get(ep)
                if q and ctx.get(into.ready):
                    flit = LAYOUT.from_bits(q.pop(0))
                    board.injected(ep, {"data": int(flit.data), "last": int(flit.last)}, cycle)
                if ctx.get(out.valid) and ctx.get(out.ready):
                    flit = ctx.get(out.payload)
                    board.ejected(ep, {"data": int(flit.data), "last": int(flit.last)}, cycle)
            await ctx.tick()
            idle = not any(queues.values()) and board.outstanding == 0
            quiet = quiet + 1 if idle else 0
            if quiet > 30:
                break
        counters["misroutes"] = ctx.get(mesh.misroutes)
        counters["errors"] = ctx.get(mesh.errors)

    sim = Simulator(mesh)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    board.check(**counters)
    return board


CONFIGS = {
    "xy-2x2": dict(cols=2, rows=2, order="xy", depth=2, edge_ports=[("W", 0), ("S", 1)]),
    "xy-3x1": dict(cols=3, rows=1, order="xy", depth=3, edge_ports="W0,S2"),
    "yx-2x2": dict(cols=2, rows=2, order="yx", depth=2, edge_ports=[("W", 0), ("W", 1)]),
    "yx-1x3": dict(cols=1, rows=3, order="yx", depth=2, edge_ports=["W2", "S0"]),
}


def model_of(params):
    edges = parse_edge_ports(params["edge_ports"], cols=params["cols"], rows=params["rows"])
    return MeshModel(params["cols"], params["rows"], params["order"], edges)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_mesh_matches_reference_routing(name):
    """Every reachable pair, unreachable pairs (misroutes), one multicast source: all as the reference says."""
    params = CONFIGS[name]
    model = model_of(params)
    gen = TrafficGenerator(model, random.Random(name), max_payload=3, long_payload=6)
    traffic = gen.every_pair()
    host = model.endpoints[-1]
    cols, rows = params["cols"], params["rows"]
    traffic[host] += [gen.packet(host, r) for r in gen.rectangles()]  # multicast (refused on yx)
    for src in model.endpoints:
        traffic[src] += [gen.unicast(src, d) for d in model.endpoints if not model.reachable(src, d)]
        traffic[src] += [gen.packet(src, (cols, 0, cols, 0)), gen.packet(src, (0, rows, 0, rows))]
    board = run_mesh(Mesh(**params), model, traffic, p_stall=0.3, seed=len(name))
    assert board.delivered > 0 and board.expected_misroutes > 0


def test_uncontended_latency_is_two_cycles_per_router():
    """Three packets on disjoint paths (1, 2 and 3 routers): header 2 cycles per router, body 1 flit per cycle."""
    params = CONFIGS["xy-2x2"]
    model = model_of(params)
    gen = TrafficGenerator(model, random.Random(3))
    pairs = [(("W", 0), ("tile", 1, 1)), (("tile", 1, 1), ("S", 1)), (("tile", 0, 1), ("tile", 0, 1))]
    traffic = {src: [gen.unicast(src, dst, length=3)] for src, dst in pairs}
    board = run_mesh(Mesh(**params), model, traffic, latency=LatencyBound(2))
    assert sorted(r for _, _, r, _, _, _ in board.latencies) == [1, 2, 3]
    for _, _, routers, header, tail, flits in board.latencies:
        assert header == 2 * routers and tail == header + flits - 1


# ---- parameters and the Verilog top ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(cols=0), ValueError, "cols must be 1..15, not 0"),
        (dict(rows=16), ValueError, "rows must be 1..15, not 16"),
        (dict(depth=1), ValueError, "depth must be 2..64, not 1"),
        (dict(order="xx"), ValueError, "order must be one of"),
        (dict(edge_ports=[("N", 0)]), ValueError, "edge_ports: side 'N' is not one of 'W', 'S'"),
        (dict(edge_ports=[("W", 4)]), ValueError, r"edge_ports: \('W', 4\) names row 4, the mesh has 0..3"),
        (dict(edge_ports=[("S", "0")]), TypeError, "edge_ports: index '0' of side 'S' must be an integer"),
        (dict(edge_ports="W0,X1"), ValueError, "edge_ports: 'X1' is not an edge port"),
        (dict(edge_ports=[7]), TypeError, r"edge_ports: 7 is not a \(side, index\) pair"),
        (dict(edge_ports=5), TypeError, "edge_ports must be an iterable"),
    ],
)
def test_mesh_rejects_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        Mesh(**kwargs)


def test_edge_ports_forms_agree():
    want = (("S", 2), ("W", 0))
    assert parse_edge_ports("W0, s2", cols=3, rows=3) == want
    assert parse_edge_ports([("W", 0), ["S", 2], "S2"], cols=3, rows=3) == want
    assert parse_edge_ports((), cols=3, rows=3) == ()
    mesh = Mesh(cols=3, rows=2, edge_ports="W0,S2")
    assert mesh.router_edges(0, 0) == ("W",) and mesh.router_edges(2, 0) == ("S",) and mesh.router_edges(0, 1) == ()
    members = set(mesh.signature.members)
    assert {"edge_w0_in", "edge_w0_out", "edge_s2_in", "edge_s2_out", "inject", "eject"} <= members


def test_largest_mesh_has_every_port_and_its_corner_router_elaborates():
    mesh = Mesh(cols=15, rows=15, edge_ports=[("W", r) for r in range(15)] + [("S", c) for c in range(15)])
    assert len(mesh.inject) == 15 and len(mesh.eject[14]) == 15
    Fragment.get(Router(x=14, y=14, cols=15, rows=15, depth=4), None)


def test_mesh_is_a_registered_top_with_json_defaults():
    params = cli.elaborate_params("mesh")
    assert params == {"cols": 4, "rows": 4, "order": "xy", "depth": 2, "edge_ports": (("W", 0),)}
    text = cli.to_verilog("mesh", {"cols": 2, "rows": 1, "order": "yx", "edge_ports": "W0"})
    assert "module mesh(" in text and "edge_w0_out__valid" in text and "eject__1__0__payload" in text

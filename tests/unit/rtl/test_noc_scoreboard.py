"""The NoC bench's own parts, without a simulator: header codec vs. Amaranth, reference routing, scoreboard.

The scoreboard is fed by hand with flits as its monitors would, and must fail on every kind of
fault (loss, duplication, reordering, corruption, misdelivery, truncation, latency, drop counts).
"""

import random

import pytest

from cimdv.rtl.noc.layouts import EDGE, Header, PacketKind, flit_layout
from cimdv.tb.noc.model import MeshModel, decode_coord, edge, encode_coord, tile
from cimdv.tb.noc.scoreboard import LatencyBound, PacketScoreboard
from cimdv.tb.noc.traffic import FLIT_CODEC, TrafficGenerator, header_word, parse_header

MODEL = MeshModel(3, 3, "xy", [("W", 0), ("S", 1)])


# ---- codec and coordinates -------------------------------------------------------------------


def test_header_word_equals_amaranths_own_layout():
    rng = random.Random(1)
    for _ in range(200):
        fields = {name: rng.randrange(16) for name in ("x0", "y0", "x1", "y1", "src_x", "src_y", "tag")}
        kind = rng.choice(list(PacketKind))
        want = Header.const({**fields, "kind": kind}).as_value().value
        coords = [decode_coord(fields[n]) for n in ("x0", "y0", "x1", "y1", "src_x", "src_y")]
        assert header_word(*coords, kind, fields["tag"]) == want
        parsed = parse_header(want)
        assert [parsed[n] for n in ("x0", "y0", "x1", "y1", "src_x", "src_y")] == coords
    flit = FLIT_CODEC.encode({"data": 0xDEADBEEF, "last": 1})
    assert flit == flit_layout().const({"data": 0xDEADBEEF, "last": 1}).as_value().value


def test_coordinates():
    assert encode_coord(-1) == EDGE and decode_coord(EDGE) == -1 and encode_coord(14) == 14
    with pytest.raises(ValueError, match=r"coordinate 15 is outside -1\.\.14"):
        encode_coord(15)
    with pytest.raises(ValueError, match="coordinate -2"):
        encode_coord(-2)


# ---- reference routing -------------------------------------------------------------------------


def test_whole_mesh_multicast_reaches_every_tile_once_along_shortest_paths():
    for src in MODEL.endpoints:
        route = MODEL.route(src, 0, 0, 2, 2)
        assert set(route.deliveries) == set(MODEL.tiles) and route.dropped == 0
        sx, sy = MODEL.coords(src)
        sx, sy = max(sx, 0), max(sy, 0)  # an edge input enters at its border router
        for (_, x, y), routers in route.deliveries.items():
            assert routers == abs(x - sx) + abs(y - sy) + 1


def test_reference_edges_misroutes_and_refusals():
    assert MODEL.route(tile(2, 2), -1, 0).misroutes == 1  # X first ends at (-1, 2): no edge there
    assert MODEL.route(tile(2, 0), -1, 0).deliveries == {edge("W", 0): 3}
    assert MODEL.route(tile(2, 2), 1, -1).deliveries == {edge("S", 1): 4}
    assert MODEL.route(tile(0, 0), 3, 0).misroutes == 1
    partial = MODEL.route(tile(0, 0), 0, 0, 3, 0)  # the branch past the east side is dropped at (2, 0)
    assert set(partial.deliveries) == {tile(0, 0), tile(1, 0)} and partial.misroutes == 1
    assert MODEL.route(tile(0, 0), 1, 0, 0, 0).errors == 1
    yx = MeshModel(3, 3, "yx", [("W", 0)])
    assert yx.route(tile(2, 2), 0, 0, 1, 0).errors == 1
    assert yx.route(tile(2, 2), -1, 0).deliveries == {edge("W", 0): 5}
    pairs = TrafficGenerator(MODEL, random.Random(0)).reachable_pairs()
    assert len(pairs) == 121 - 6  # tiles of rows 1 and 2 cannot reach the W0 edge going X first
    with pytest.raises(ValueError, match="order must be"):
        MeshModel(2, 2, "zz", [])


# ---- scoreboard ----------------------------------------------------------------------------------


def feed(board, events):
    """events: (kind, endpoint, packet, cycle): every flit of the packet, one per cycle from ``cycle``."""
    for kind, ep, pkt, cycle in events:
        for k, f in enumerate(pkt.flits()):
            flit = FLIT_CODEC.decode(f)
            (board.injected if kind == "in" else board.ejected)(ep, flit, cycle + k)


@pytest.fixture
def gen():
    return TrafficGenerator(MODEL, random.Random(7))


def test_clean_traffic_passes_with_fan_out(gen):
    board = PacketScoreboard(MODEL, latency=LatencyBound(2))
    a = gen.unicast(tile(0, 0), tile(2, 1), length=3)
    m = gen.packet(edge("W", 0), (1, 0, 2, 1), length=2)
    feed(board, [("in", a.src, a, 0), ("in", m.src, m, 10), ("out", tile(2, 1), a, 8)])
    copies = MODEL.route(m.src, 1, 0, 2, 1).deliveries
    feed(board, [("out", t, m, 10 + 2 * routers) for t, routers in copies.items()])
    assert board.check(misroutes=0, errors=0) == 5


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("lose", "packet never arrived"),
        ("duplicate", "unexpected packet (duplicate or misdelivered)"),
        ("reorder", "out of order"),
        ("corrupt", "content differs"),
        ("misdeliver", "unexpected packet (duplicate or misdelivered)"),
        ("truncate", "packet cut short"),
        ("late", "header latency 9 cycles over 2 router(s) exceeds the bound 4"),
        ("counter", "misroute counter 1, reference 0"),
    ],
)
def test_scoreboard_catches(gen, fault, message):
    board = PacketScoreboard(MODEL, latency=LatencyBound(2))
    src, dst = tile(0, 0), tile(1, 0)
    first, second = gen.unicast(src, dst, length=2), gen.unicast(src, dst, length=2)
    feed(board, [("in", src, first, 0), ("in", src, second, 2)])
    out = [first, second]
    at = dst
    if fault == "lose":
        out = [first]
    elif fault == "duplicate":
        out = [first, first, second]
    elif fault == "reorder":
        out = [second, first]
    elif fault == "corrupt":
        second.payload[-1] ^= 1
    elif fault == "misdeliver":
        at = tile(2, 0)
    base = 9 if fault == "late" else 4
    feed(board, [("out", at, p, base + 2 * k) for k, p in enumerate(out)])
    if fault == "truncate":
        board.ejected(dst, {"data": first.header, "last": 0}, 20)
    with pytest.raises(AssertionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        board.check(misroutes=1 if fault == "counter" else 0, errors=0)


def test_scoreboard_names_an_unknown_source():
    board = PacketScoreboard(MODEL)
    board.ejected(tile(0, 0), {"data": header_word(0, 0, 0, 0, 7, 7), "last": 1}, 3)
    with pytest.raises(AssertionError, match="unknown source"):
        board.check()

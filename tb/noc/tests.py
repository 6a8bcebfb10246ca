"""cocotb tests of the mesh (run through tests/dv/test_noc.py on both simulators, xy and yx meshes).

Every test builds a :class:`MeshTb`, picks traffic and knobs, and leaves checking to the
packet scoreboard (reference routing, no loss, no duplication, in order per pair, exact
fan-out) and to the DUT's drop counters compared with the reference. Each docstring names
its testpoint (docs/testplan.md). Only one endpoint at a time injects multicast packets: the
condition of docs/noc.md's deadlock-freedom argument.
"""

import cocotb

from cimdv.tb.noc.env import MeshTb
from cimdv.tb.noc.model import tile
from cimdv.tb.noc.scoreboard import UNCONTENDED
from cimdv.tb.sim import params_from_env

DEFAULTS = {"cols": 3, "rows": 3, "order": "xy", "depth": 2, "edge_ports": [["W", 0], ["S", 1]]}

#: Uncontended header latency: 2 cycles per router passed (docs/noc.md, "Latency").
LATENCY = UNCONTENDED


async def make_tb(dut, **knobs):
    tb = MeshTb(dut, params_from_env(DEFAULTS), cocotb.RANDOM_SEED, **knobs)
    return await tb.start()


def host(tb):
    """Where the host bridge attaches: the first edge port (W0 by default), else tile (0, 0)."""
    edges = [ep for ep in tb.model.endpoints if ep[0] != "tile"]
    return edges[0] if edges else tile(0, 0)


def centre(tb):
    return tile(tb.model.cols // 2, tb.model.rows // 2)


# ---- unicast ------------------------------------------------------------------------------


@cocotb.test()
async def unicast_every_pair(dut):
    """Testpoint noc_all_pairs: two packets over every reachable (source, destination) pair, all sources at once."""
    tb = await make_tb(dut)
    traffic = tb.traffic.every_pair(repeats=2)
    pairs = len(tb.traffic.reachable_pairs())
    dut._log.info("%d reachable pairs of %d endpoints", pairs, len(tb.model.endpoints))
    await tb.run(traffic)
    await tb.finish()
    assert tb.scoreboard.delivered == 2 * pairs


@cocotb.test()
async def hotspot_all_to_one(dut):
    """Testpoint noc_contention: every endpoint sends back to back to one endpoint (the centre tile, then the host)."""
    tb = await make_tb(dut)
    for dst in (centre(tb), host(tb)):
        traffic = tb.traffic.hotspot(dst, per_source=8)
        dut._log.info("hotspot %s: %d sources", dst, len(traffic))
        await tb.run(traffic, gaps=False)
    await tb.finish()


@cocotb.test()
async def hotspot_every_destination(dut):
    """Testpoint noc_contention: each endpoint in turn is the hotspot of every source that reaches it (three
    packets each, back to back), so every reachable pair has packets that wait behind others (contended)."""
    tb = await make_tb(dut)
    pairs = tb.traffic.reachable_pairs()
    for dst in tb.model.endpoints:
        traffic = {s: [tb.traffic.unicast(s, dst, length=2) for _ in range(3)] for s, d in pairs if d == dst}
        await tb.run(traffic, gaps=False)
    await tb.finish()
    waited = {(s, d) for s, d, routers, header, *_ in tb.scoreboard.latencies if header > LATENCY(routers)}
    assert len(waited) == len(pairs), f"pairs never contended: {sorted(set(pairs) - waited)[:8]}"


@cocotb.test()
async def all_to_all_with_backpressure(dut):
    """Testpoint noc_backpressure: uniform random traffic from every endpoint, long packets, random eject ready."""
    tb = await make_tb(dut, p_stall=0.5)
    await tb.run(tb.traffic.uniform(per_source=12))
    await tb.finish()


# ---- multicast ------------------------------------------------------------------------------


@cocotb.test()
async def multicast_every_rectangle(dut):
    """Testpoint noc_multicast: every rectangle (1 x 1 to the whole mesh), from the host and then from each tile.

    One source at a time sends all rectangles back to back. On a yx mesh every multicast
    header is refused (``errors``) and every 1 x 1 rectangle is delivered.
    """
    tb = await make_tb(dut)
    rects = tb.traffic.rectangles()
    for src in [host(tb), *tb.model.tiles]:
        packets = [tb.traffic.packet(src, r) for r in rects]
        tb.rng.shuffle(packets)
        await tb.run({src: packets}, gaps=False)
    await tb.finish()
    whole = tb.model.cols * tb.model.rows
    area = sum((x1 - x0 + 1) * (y1 - y0 + 1) for x0, y0, x1, y1 in rects)
    if tb.model.order == "xy":
        assert tb.scoreboard.delivered == (1 + whole) * area, tb.scoreboard.delivered
    else:
        assert tb.scoreboard.expected_errors == (len(rects) - whole) * (1 + whole)
        assert tb.scoreboard.delivered == whole * (1 + whole)


@cocotb.test()
async def multicast_under_unicast_load(dut):
    """Testpoint noc_multicast: the host multicasts to random rectangles amid unicast from everywhere, random ready."""
    tb = await make_tb(dut, p_stall=0.3)
    traffic = tb.traffic.uniform(per_source=8)
    src = host(tb)
    rects = tb.traffic.rectangles()
    traffic.setdefault(src, []).extend(tb.traffic.packet(src, tb.rng.choice(rects)) for _ in range(24))
    tb.rng.shuffle(traffic[src])
    await tb.run(traffic)
    await tb.finish()


# ---- latency --------------------------------------------------------------------------------


@cocotb.test()
async def latency_uncontended(dut):
    """Testpoint noc_latency: one packet at a time over every reachable pair (and a whole-mesh multicast).

    The header takes exactly 2 cycles per router passed, and the rest of the packet follows
    one flit per cycle; the scoreboard's bound (2 * routers) is checked on every copy.
    """
    tb = await make_tb(dut, latency=LATENCY)
    for s, d in tb.traffic.reachable_pairs():
        await tb.send_one(tb.traffic.unicast(s, d, length=tb.rng.randint(0, 3)))
    if tb.model.order == "xy":
        cols, rows = tb.model.cols, tb.model.rows
        await tb.send_one(tb.traffic.packet(host(tb), (0, 0, cols - 1, rows - 1), length=2))
    await tb.finish()
    by_routers = {}
    for src, dst, routers, header, tail, flits in tb.scoreboard.latencies:
        assert header == LATENCY(routers), f"{src} -> {dst}: {header} cycles over {routers} routers"
        assert tail - header == flits - 1, f"{src} -> {dst}: {flits} flits took {tail - header + 1} cycles"
        by_routers.setdefault(routers, set()).add(header)
    dut._log.info("header latency by routers passed: %s", dict(sorted(by_routers.items())))


# ---- errors ---------------------------------------------------------------------------------


@cocotb.test()
async def misroutes_and_refused_headers_dropped(dut):
    """Testpoint noc_misroute: packets that would leave the mesh with no edge port, empty rectangles, multicast
    off the mesh (xy) or any multicast (yx) are dropped whole with the counters counting, amid good traffic."""
    tb = await make_tb(dut)
    model, gen = tb.model, tb.traffic
    cols, rows = model.cols, model.rows
    traffic = gen.uniform(per_source=6)
    for src in model.endpoints:
        bad = [
            gen.packet(src, (cols, 0, cols, 0)),  # east of the mesh: no edge there
            gen.packet(src, (0, rows, 0, rows)),  # north of the mesh
            gen.packet(src, (1, 0, 0, 0)),  # empty rectangle (x0 > x1)
            gen.packet(src, (0, 0, cols, rows - 1)),  # multicast reaching past the east side
            gen.packet(src, (0, 0, 0, 0), length=gen.long_payload),  # good, long
        ]
        bad += [gen.unicast(src, d, length=gen.long_payload) for d in model.endpoints if not model.reachable(src, d)]
        bad += [gen.packet(src, (-1, r, -1, r)) for r in range(rows) if ("W", r) not in model.edge_ports][:2]
        bad += [gen.packet(src, (c, -1, c, -1)) for c in range(cols) if ("S", c) not in model.edge_ports][:2]
        traffic.setdefault(src, []).extend(bad)
        tb.rng.shuffle(traffic[src])
    # Multicast from one source only (the deadlock-freedom condition); everything else unicast.
    for src in model.endpoints:
        if src != host(tb):
            traffic[src] = [p for p in traffic[src] if not p.multicast or p.rect[0] > p.rect[2]]
    await tb.run(traffic)
    summary = await tb.finish()
    assert summary["misroutes"] > 0 and summary["errors"] > 0, summary


# ---- negative tests of the checker -----------------------------------------------------------


def _fault_tap(kind, at, victim):
    """An eject tap that loses (``kind="lose"``) or doubles (``"duplicate"``) packet number ``at`` seen at ``victim``.

    Flits seen at ``victim`` are held back until their packet's last flit, then passed on whole.
    """
    state = {"packets": 0, "held": []}

    def tap(endpoint, flit, cycle):
        if endpoint != victim:
            return [flit]
        state["held"].append(flit)
        if not flit["last"]:
            return []
        packet, state["held"] = state["held"], []
        index, state["packets"] = state["packets"], state["packets"] + 1
        if index != at:
            return packet
        return [] if kind == "lose" else packet + packet

    return tap


async def _faulty_run(dut, kind, expected_text):
    tb = await make_tb(dut)
    victim = centre(tb)
    tb.eject_taps.append(_fault_tap(kind, 2, victim))
    await tb.run(tb.traffic.hotspot(victim, per_source=2), drain_cycles=400)
    try:
        await tb.finish()
    except AssertionError as exc:
        if expected_text not in str(exc):
            raise RuntimeError(f"the scoreboard failed, but not with {expected_text!r}: {exc}") from None
        dut._log.info("scoreboard failed as it must:\n%s", exc)
        raise


@cocotb.test(expect_fail=True)
async def scoreboard_catches_lost_packet(dut):
    """Testpoint noc_checker_negative: a packet removed between the eject port and the scoreboard must fail it."""
    await _faulty_run(dut, "lose", "never arrived")


@cocotb.test(expect_fail=True)
async def scoreboard_catches_duplicate_packet(dut):
    """Testpoint noc_checker_negative: a packet reported twice at its eject port must fail the scoreboard."""
    await _faulty_run(dut, "duplicate", "unexpected packet (duplicate")

"""Packet scoreboard of the mesh: no loss, no duplication, in order per (source, destination), fan-out.

Both sides come from passive monitors: every flit taken by an ``inject``/edge input
(:meth:`PacketScoreboard.injected`) and every flit given by an ``eject``/edge output
(:meth:`PacketScoreboard.ejected`). When a header is injected, the reference routing
(:class:`~cimdv.tb.noc.model.MeshModel`) says which endpoints must receive the packet; one
copy is queued per (source, destination) pair. A delivered packet must equal the head of its
pair's queue flit for flit; anything else is recorded. Like :class:`~cimdv.tb.scoreboard.InOrderScoreboard`
it never raises inside a monitor callback: :meth:`check` fails at the end with every problem.
"""

from collections import deque
from dataclasses import dataclass, field

from cimdv.tb.noc.traffic import parse_header

__all__ = ["PacketScoreboard", "LatencyBound", "UNCONTENDED"]


@dataclass(frozen=True)
class LatencyBound:
    """Uncontended header latency bound: ``per_router * routers + constant`` cycles."""

    per_router: int
    constant: int = 0

    def __call__(self, routers):
        return self.per_router * routers + self.constant


#: Header latency of a packet that waits for nothing: 2 cycles per router passed (docs/noc.md, "Latency").
#: A delivered copy above it waited behind another packet (or for its eject port): it was contended.
UNCONTENDED = LatencyBound(per_router=2, constant=0)


@dataclass
class _Expected:
    src: tuple
    flits: list
    cycle: int  # cycle the header was injected
    route: object
    complete: bool = False


@dataclass
class _Arriving:
    dst: tuple
    cycle: int
    flits: list = field(default_factory=list)


def _describe(flits):
    if not flits:
        return "(no flits)"
    try:
        h = parse_header(flits[0][0])
        rect = f"({h['x0']},{h['y0']})"
        if (h["x0"], h["y0"]) != (h["x1"], h["y1"]):
            rect += f"..({h['x1']},{h['y1']})"
        head = f"header src ({h['src_x']},{h['src_y']}) dst {rect} tag {h['tag']}"
    except (KeyError, ValueError):
        head = f"header 0x{flits[0][0]:08x}"
    uid = f", id 0x{flits[1][0]:08x}" if len(flits) > 1 else ""
    return f"{head}{uid}, {len(flits)} flit(s)"


class PacketScoreboard:
    """Keyed in-order packet checker with reference routing.

    Parameters
    ----------
    model : cimdv.tb.noc.model.MeshModel
    name : str
        Used in messages.
    latency : LatencyBound or None
        If set, every delivered copy's header latency (cycles from injection to delivery) must
        be at most ``latency(routers)``; only meaningful without contention.
    max_reported : int
        Problems listed in full by :meth:`check`.
    coverage : cimdv.tb.coverage.functional.FunctionalCoverage or None
        If set, every injected header (multicast rectangle or drop) and every delivered copy (source,
        destination, contended: header latency above :data:`UNCONTENDED`) is sampled into it.
    """

    def __init__(self, model, *, name="noc", latency=None, max_reported=8, coverage=None):
        self.model = model
        self.coverage = None if coverage is None else coverage.use_mesh(model)
        self.name = name
        self.latency = latency
        self.max_reported = max_reported
        self.queues = {}  # (src, dst) -> deque of _Expected
        self._in = {}  # src -> _Expected being injected
        self._out = {}  # dst -> _Arriving being delivered
        self.problems = []
        self.injected_packets = 0
        self.delivered = 0
        self.outstanding = 0  # copies expected and not delivered yet
        self.expected_misroutes = 0
        self.expected_errors = 0
        self.latencies = []  # (src, dst, routers, header latency, tail latency, flits)
        self._idle_callbacks = []

    def on_idle(self, callback):
        """Call ``callback()`` whenever the last outstanding copy is delivered."""
        self._idle_callbacks.append(callback)

    # ---- monitor side ---------------------------------------------------------------------

    def injected(self, src, flit, cycle):
        """A flit taken by the network at endpoint ``src`` (``flit``: dict with data and last)."""
        data, last = flit["data"], flit["last"]
        pkt = self._in.get(src)
        if pkt is None:
            h = parse_header(data)
            route = self.model.route(src, h["x0"], h["y0"], h["x1"], h["y1"])
            pkt = _Expected(src=src, flits=[], cycle=cycle, route=route)
            self._in[src] = pkt
            self.injected_packets += 1
            self.expected_misroutes += route.misroutes
            self.expected_errors += route.errors
            if self.coverage is not None:
                self.coverage.sample_noc_header(self.model, src, (h["x0"], h["y0"], h["x1"], h["y1"]), route)
            for dst in route.deliveries:
                self.queues.setdefault((src, dst), deque()).append(pkt)
                self.outstanding += 1
        pkt.flits.append((data, last))
        if last:
            pkt.complete = True
            del self._in[src]

    def ejected(self, dst, flit, cycle):
        """A flit given by the network at endpoint ``dst``."""
        arriving = self._out.get(dst)
        if arriving is None:
            arriving = self._out[dst] = _Arriving(dst=dst, cycle=cycle)
        arriving.flits.append((flit["data"], flit["last"]))
        if flit["last"]:
            del self._out[dst]
            self._delivered(arriving, cycle)

    def _delivered(self, arriving, cycle):
        dst, flits = arriving.dst, arriving.flits
        try:
            h = parse_header(flits[0][0])
            src = self.model.endpoint_at(h["src_x"], h["src_y"])
        except ValueError:
            src = None
        if src is None:
            self.problems.append(f"{dst}: packet with an unknown source: {_describe(flits)}")
            return
        queue = self.queues.get((src, dst))
        if not queue:
            self.problems.append(
                f"{src} -> {dst}: unexpected packet (duplicate or misdelivered) at cycle {cycle}: {_describe(flits)}"
            )
            return
        want = queue.popleft()
        self.outstanding -= 1
        self.delivered += 1
        if want.flits != flits or not want.complete:
            later = [i for i, p in enumerate(queue) if p.flits == flits]
            why = f"it is #{later[0] + 1} further in this pair's queue: out of order" if later else "content differs"
            self.problems.append(
                f"{src} -> {dst}: delivered {_describe(flits)}, expected {_describe(want.flits)} ({why})"
            )
        routers = want.route.deliveries[dst]
        latency = arriving.cycle - want.cycle
        self.latencies.append((src, dst, routers, latency, cycle - want.cycle, len(flits)))
        if self.coverage is not None:
            self.coverage.sample_noc_delivery(src, dst, latency > UNCONTENDED(routers))
        if self.latency is not None and latency > self.latency(routers):
            self.problems.append(
                f"{src} -> {dst}: header latency {latency} cycles over {routers} router(s) exceeds the bound "
                f"{self.latency(routers)} ({self.latency.per_router} * routers + {self.latency.constant})"
            )
        if self.outstanding == 0:
            for callback in self._idle_callbacks:
                callback()

    # ---- end of test ----------------------------------------------------------------------

    def missing(self):
        """Every (source, destination, packet) still expected."""
        return [(s, d, p) for (s, d), q in self.queues.items() for p in q]

    def check(self, *, misroutes=None, errors=None):
        """Raise AssertionError listing every problem, missing packet and drop-count mismatch.

        ``misroutes`` / ``errors``: the DUT's drop counters, compared with the reference when given.
        """
        problems = list(self.problems[: self.max_reported])
        if len(self.problems) > self.max_reported:
            problems.append(f"... and {len(self.problems) - self.max_reported} more")
        missing = self.missing()
        for s, d, p in missing[: self.max_reported]:
            problems.append(f"{s} -> {d}: packet never arrived: {_describe(p.flits)}")
        if len(missing) > self.max_reported:
            problems.append(f"... {len(missing)} packet copies never arrived in all")
        for dst, arriving in self._out.items():
            problems.append(f"{dst}: packet cut short (no last flit): {_describe(arriving.flits)}")
        if misroutes is not None and misroutes != self.expected_misroutes:
            problems.append(f"misroute counter {misroutes}, reference {self.expected_misroutes}")
        if errors is not None and errors != self.expected_errors:
            problems.append(f"error counter {errors}, reference {self.expected_errors}")
        if problems:
            raise AssertionError(
                f"{self.name} scoreboard: {self.injected_packets} packets injected, {self.delivered} copies "
                f"delivered, {len(missing)} missing, {len(self.problems)} problem(s)\n  " + "\n  ".join(problems)
            )
        return self.delivered

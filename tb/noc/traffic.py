"""Packets and seeded traffic patterns for the mesh.

A :class:`Packet` is built from the RTL's own layouts: its header word is packed with
``Header`` and its flits with ``flit_layout()`` (through :class:`~cimdv.tb.vip.codec.LayoutCodec`),
never with hand-written offsets. :class:`TrafficGenerator` draws every random choice from
one ``random.Random``, so a seed fixes the traffic.
"""

import itertools
from dataclasses import dataclass, field

from cimdv.rtl.noc.layouts import FLIT_BITS, Header, PacketKind, flit_layout
from cimdv.tb.noc.model import decode_coord, encode_coord
from cimdv.tb.vip.codec import LayoutCodec

__all__ = ["HEADER_CODEC", "FLIT_CODEC", "Packet", "TrafficGenerator", "header_word", "parse_header"]

HEADER_CODEC = LayoutCodec(Header)
FLIT_CODEC = LayoutCodec(flit_layout())
_WORD = (1 << FLIT_BITS) - 1


def header_word(x0, y0, x1, y1, src_x, src_y, kind=PacketKind.CSR_WRITE, tag=0):
    """The header flit's data for plain coordinates (-1 across an edge)."""
    return HEADER_CODEC.encode(
        {
            "x0": encode_coord(x0),
            "y0": encode_coord(y0),
            "x1": encode_coord(x1),
            "y1": encode_coord(y1),
            "src_x": encode_coord(src_x),
            "src_y": encode_coord(src_y),
            "kind": PacketKind(kind).value,
            "tag": tag,
        }
    )


def parse_header(word):
    """Header fields of a header flit's data, coordinates decoded (-1 across an edge)."""
    fields = HEADER_CODEC.decode(word)
    for name in ("x0", "y0", "x1", "y1", "src_x", "src_y"):
        fields[name] = decode_coord(fields[name])
    return fields


_uid = itertools.count(1)


@dataclass
class Packet:
    """One packet: source endpoint, destination rectangle, kind, tag and payload words.

    ``src_coords`` is the source's ``(x, y)`` written into the header. The first payload
    word, when there is one, is a unique id (easier failure messages).
    """

    src: tuple
    src_coords: tuple
    rect: tuple  # (x0, y0, x1, y1)
    kind: PacketKind = PacketKind.CSR_WRITE
    tag: int = 0
    payload: list = field(default_factory=list)

    @property
    def header(self):
        return header_word(*self.rect, *self.src_coords, self.kind, self.tag)

    @property
    def words(self):
        return [self.header, *self.payload]

    def flits(self):
        """The flits as integer payloads of ``flit_layout()``, ``last`` on the final one."""
        words = self.words
        return [FLIT_CODEC.encode({"data": w, "last": int(i == len(words) - 1)}) for i, w in enumerate(words)]

    @property
    def multicast(self):
        x0, y0, x1, y1 = self.rect
        return (x0, y0) != (x1, y1)

    def __str__(self):
        x0, y0, x1, y1 = self.rect
        dst = f"({x0},{y0})" if not self.multicast else f"({x0}..{x1},{y0}..{y1})"
        return f"{self.src}->{dst} {len(self.words)} flit(s)"


class TrafficGenerator:
    """Seeded packet factory for one mesh.

    Parameters
    ----------
    model : cimdv.tb.noc.model.MeshModel
    rng : random.Random
    max_payload : int
        Payload flits of an ordinary packet: 0..max_payload (0 = header only).
    long_payload : int
        Payload flits of a long packet (longer than any input FIFO: it spans routers).
    p_long : float
        Probability that a packet is long.
    """

    def __init__(self, model, rng, *, max_payload=4, long_payload=12, p_long=0.1):
        if max_payload < 0 or long_payload < 0:
            raise ValueError("max_payload and long_payload must be >= 0")
        if not 0.0 <= p_long <= 1.0:
            raise ValueError(f"p_long must be 0..1, not {p_long}")
        self.model = model
        self.rng = rng
        self.max_payload = max_payload
        self.long_payload = long_payload
        self.p_long = p_long

    def payload(self, length=None):
        if length is None:
            length = self.long_payload if self.rng.random() < self.p_long else self.rng.randint(0, self.max_payload)
        if length == 0:
            return []
        return [next(_uid) & _WORD] + [self.rng.getrandbits(FLIT_BITS) for _ in range(length - 1)]

    def packet(self, src, rect, *, length=None):
        """A packet from endpoint ``src`` to rectangle ``rect`` = (x0, y0, x1, y1)."""
        return Packet(
            src=src,
            src_coords=self.model.coords(src),
            rect=tuple(rect),
            kind=self.rng.choice(list(PacketKind)),
            tag=self.rng.randrange(16),
            payload=self.payload(length),
        )

    def unicast(self, src, dst, *, length=None):
        x, y = self.model.coords(dst)
        return self.packet(src, (x, y, x, y), length=length)

    def reachable_pairs(self):
        """Every (source, destination) endpoint pair a unicast packet can travel (misroute-free)."""
        eps = self.model.endpoints
        return [(s, d) for s in eps for d in eps if self.model.reachable(s, d)]

    def every_pair(self, repeats=1):
        """Per source: ``repeats`` packets to every destination it can reach, in random order."""
        traffic = {}
        for s, d in self.reachable_pairs():
            traffic.setdefault(s, []).extend(self.unicast(s, d) for _ in range(repeats))
        for packets in traffic.values():
            self.rng.shuffle(packets)
        return traffic

    def uniform(self, per_source):
        """Per source: ``per_source`` packets to random reachable destinations."""
        targets = {}
        for s, d in self.reachable_pairs():
            targets.setdefault(s, []).append(d)
        return {s: [self.unicast(s, self.rng.choice(ds)) for _ in range(per_source)] for s, ds in targets.items()}

    def hotspot(self, dst, per_source):
        """Per source that can reach ``dst``: ``per_source`` packets to it."""
        return {
            s: [self.unicast(s, dst) for _ in range(per_source)]
            for s in self.model.endpoints
            if self.model.reachable(s, dst)
        }

    def rectangles(self):
        """Every rectangle of tiles inside the mesh (all sizes, 1 x 1 to the whole mesh)."""
        cols, rows = self.model.cols, self.model.rows
        return [
            (x0, y0, x1, y1)
            for x0 in range(cols)
            for x1 in range(x0, cols)
            for y0 in range(rows)
            for y1 in range(y0, rows)
        ]

    def gaps(self, n, p_idle=0.3, longest=6):
        """Idle cycles before each of ``n`` packets (0 most of the time)."""
        return [self.rng.randint(1, longest) if self.rng.random() < p_idle else 0 for _ in range(n)]

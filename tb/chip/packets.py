"""NoC packets as Python values, packed and parsed with the RTL's own layouts.

A packet is a list of flits; a flit is ``(data, last)`` with ``data`` a 32-bit int. Words
are packed by :class:`~cimdv.tb.vip.codec.LayoutCodec` (the header's is the NoC bench's
``HEADER_CODEC``); coordinates are raw header fields here (``EDGE`` = 15 for the host).
"""

from dataclasses import dataclass

import numpy as np

from cimdv.rtl.chip.layouts import TILE_LANES, ErrorPayload, InputFlit, OutputFlit, TileError
from cimdv.rtl.noc.layouts import EDGE, PacketKind
from cimdv.tb.noc.traffic import HEADER_CODEC
from cimdv.tb.vip.codec import LayoutCodec

__all__ = [
    "HOST",
    "Packet",
    "header_word",
    "request",
    "input_words",
    "input_packet",
    "parse",
    "output_elements",
    "error_of",
]

#: Coordinates of the host bridge (the west edge port of row 0).
HOST = (EDGE, 0)


_INPUT = LayoutCodec(InputFlit)
_OUTPUT = LayoutCodec(OutputFlit)
_ERROR = LayoutCodec(ErrorPayload)


def header_word(kind, dst, *, src=HOST, tag=0):
    """The header flit's data: ``dst`` is ``(x, y)`` or a rectangle ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = dst if len(dst) == 4 else (*dst, *dst)
    return HEADER_CODEC.encode(
        {
            "x0": x0,
            "y0": y0,
            "x1": x1,
            "y1": y1,
            "src_x": src[0],
            "src_y": src[1],
            "kind": PacketKind(kind).value,
            "tag": tag,
        }
    )


def request(kind, dst, words=(), *, tag=0, src=HOST):
    """A packet: the header and ``words`` of payload, ``last`` on the final flit."""
    data = [header_word(kind, dst, src=src, tag=tag), *(int(w) & 0xFFFF_FFFF for w in words)]
    return [(d, i == len(data) - 1) for i, d in enumerate(data)]


def input_words(x):
    """The payload words of one input vector ``x``: three elements per word (``InputFlit``)."""
    x = [int(v) for v in x]
    words = []
    for k in range(0, len(x), TILE_LANES):
        chunk = x[k : k + TILE_LANES] + [0] * (TILE_LANES - len(x[k : k + TILE_LANES]))
        words.append(_INPUT.encode({"elems": chunk}))
    return words


def input_packet(dst, x, *, tag=0):
    """An INPUT packet carrying vector ``x`` (three elements per flit)."""
    return request(PacketKind.INPUT, dst, input_words(x), tag=tag)


@dataclass(frozen=True)
class Packet:
    kind: PacketKind
    src: tuple
    dst: tuple
    tag: int
    payload: tuple


def parse(flits):
    """A :class:`Packet` from its flits; checks that only the final flit has ``last``."""
    if not flits:
        raise ValueError("flits must hold at least the header")
    for i, (_, last) in enumerate(flits):
        if bool(last) != (i == len(flits) - 1):
            raise ValueError(f"flit {i} of {len(flits)} has last={bool(last)}")
    h = HEADER_CODEC.decode(flits[0][0])
    return Packet(
        kind=PacketKind(h["kind"]),
        src=(h["src_x"], h["src_y"]),
        dst=(h["x0"], h["y0"], h["x1"], h["y1"]),
        tag=h["tag"],
        payload=tuple(int(d) for d, _ in flits[1:]),
    )


def output_elements(payload, n_out):
    """(count, sign, sat) arrays of the first ``n_out`` neurons of an OUTPUT payload."""
    elems = [e for word in payload for e in _OUTPUT.decode(word)["elems"]]
    if len(elems) < n_out:
        raise ValueError(f"payload holds {len(elems)} elements, fewer than n_out={n_out}")
    elems = elems[:n_out]
    return (
        np.array([e["count"] for e in elems]),
        np.array([e["sign"] for e in elems]),
        np.array([e["sat"] for e in elems], dtype=bool),
    )


def error_of(payload):
    """(TileError, detail) of an ERROR packet's payload."""
    (word,) = payload
    e = _ERROR.decode(word)
    return TileError(e["code"]), e["detail"]

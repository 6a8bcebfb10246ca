"""Flit and packet-header layouts of the network-on-chip, defined once.

Every link of the NoC is an Amaranth ``stream`` of :func:`flit_layout` beats. A packet is
one header flit (:data:`HEADER`) followed by zero or more payload flits; the flit with
``last`` set ends it (a header-only packet has ``last`` on its header). The testbench
packs and parses flits with these very layouts.

Coordinates are 4-bit fields, so a mesh has at most 15 x 15 routers: the field value 15
means -1, the edge port west of column 0 (or south of row 0), where the host bridge
attaches. Ref: docs/noc.md.
"""

from amaranth.hdl import Cat, Const, Value
from amaranth.lib import data, enum

__all__ = ["COORD_BITS", "EDGE", "FLIT_BITS", "MAX_GRID", "PacketKind", "Header", "flit_layout", "pack_header"]

#: Width of one coordinate field.
COORD_BITS = 4
#: Coordinate value of the edge port at -1 (west of x = 0, or south of y = 0).
EDGE = (1 << COORD_BITS) - 1
#: Largest number of routers along one axis (coordinates 0 .. MAX_GRID - 1).
MAX_GRID = EDGE
#: Payload bits of one flit.
FLIT_BITS = 32


class PacketKind(enum.Enum, shape=4):
    """What a packet carries (header field ``kind``). Payload formats: docs/noc.md."""

    # Request network: host bridge -> tiles.
    #: ``[hdr][addr][data]``: write a CSR of the tile's core.
    CSR_WRITE = 0
    #: ``[hdr][addr]``: read a CSR; answered by READ_DATA.
    CSR_READ = 1
    #: ``[hdr][elements...]``: one input vector, three 9-bit elements per flit.
    INPUT = 2
    #: ``[hdr]``: start a run of the tile's core; answered by OUTPUT packets, one per vector.
    START = 3

    # Response network: tiles -> host bridge.
    #: ``[hdr][status]``: a CSR write done (status 0) or refused (the core's error bits).
    ACK = 8
    #: ``[hdr][data]``: the value of a CSR_READ.
    READ_DATA = 9
    #: ``[hdr][elements...]``: one output vector, three 9-bit :class:`OutputElem` per flit.
    OUTPUT = 10
    #: ``[hdr][error]``: the tile refused a request (docs/noc.md lists the codes).
    ERROR = 15


class Header(data.Struct):
    """The first flit of every packet.

    The destination is the rectangle ``x0..x1`` x ``y0..y1`` (inclusive): a unicast packet
    has ``x1 == x0`` and ``y1 == y0``; a multicast one (request network only) is copied to
    every tile of the rectangle along an XY tree. ``tag`` is returned unchanged in the
    response to a request, so the host bridge can match them.
    """

    x0: COORD_BITS
    y0: COORD_BITS
    x1: COORD_BITS
    y1: COORD_BITS
    src_x: COORD_BITS
    src_y: COORD_BITS
    kind: PacketKind
    tag: 4


assert Header.as_shape().size == FLIT_BITS


def pack_header(**fields):
    """A whole :class:`Header` as one value, from every field (integers, enum members or values).

    One assignment of the whole flit, rather than one per field, keeps constant fields out of
    Yosys' ``always @*`` blocks (which read nothing and so would never run).
    """
    layout = Header.as_shape()
    names = [name for name, _ in layout]
    if sorted(fields) != sorted(names):
        raise ValueError(f"pack_header needs exactly the fields {', '.join(names)}, not {', '.join(fields)}")
    parts = []
    for name, field in sorted(layout, key=lambda item: item[1].offset):
        value, width = fields[name], field.width
        parts.append(Const(value, width) if isinstance(value, int) else Value.cast(value)[:width])
    return Cat(*parts)


def flit_layout(width=FLIT_BITS):
    """One flit on a NoC link: ``width`` payload bits and the end-of-packet flag."""
    return data.StructLayout({"data": width, "last": 1})

"""Payload formats of the tiles' packets, defined once (docs/noc.md, docs/host-protocol.md).

Input and output vectors travel three elements per 32-bit flit: the chip's cores stream
three lanes per beat (:data:`TILE_LANES`), so one flit is one beat.
"""

from amaranth.lib import data, enum

from ..core.layouts import INPUT_ELEM, OutputElem

__all__ = ["TILE_LANES", "TileError", "InputFlit", "OutputFlit", "ErrorPayload"]

#: Elements per flit, and the stream lanes of a tile's core.
TILE_LANES = 3


class TileError(enum.Enum, shape=8):
    """Why a tile refused a request (``code`` of an ERROR packet's payload)."""

    #: The request's kind is not one a tile serves.
    BAD_KIND = 1
    #: The packet has the wrong number of flits for its kind (it was drained whole).
    BAD_FORMAT = 2
    #: An INPUT flit waited longer than the tile's watchdog for its core (no run waiting
    #: for a vector); the rest of the packet was drained.
    INPUT_TIMEOUT = 3
    #: The core refused a START (its ERROR bits are in ``detail``).
    START_REFUSED = 4


class ErrorPayload(data.Struct):
    """The payload flit of an ERROR packet."""

    code: TileError
    #: START_REFUSED: the low 24 bits of the core's ERROR register; otherwise 0.
    detail: 24


class InputFlit(data.Struct):
    """One payload flit of an INPUT packet: elements ``3k .. 3k+2`` of the vector."""

    elems: data.ArrayLayout(INPUT_ELEM, TILE_LANES)
    _pad: 32 - TILE_LANES * INPUT_ELEM.width


class OutputFlit(data.Struct):
    """One payload flit of an OUTPUT packet: neurons ``3k .. 3k+2``."""

    elems: data.ArrayLayout(OutputElem, TILE_LANES)
    _pad: 32 - TILE_LANES * OutputElem.as_shape().size

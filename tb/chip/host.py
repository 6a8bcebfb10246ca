"""Host commands and responses as Python values (docs/host-protocol.md), with the RTL's layouts."""

import zlib
from dataclasses import dataclass

from cimdv.rtl.host.protocol import CommandHeader, Opcode, Rect, ResponseHeader, Status
from cimdv.tb.vip.codec import LayoutCodec

__all__ = ["crc32", "command", "rect", "core", "Response", "parse_response"]

_COMMAND = LayoutCodec(CommandHeader)
_RESPONSE = LayoutCodec(ResponseHeader)
_RECT = LayoutCodec(Rect)


def crc32(words):
    """zlib's CRC-32 over the little-endian bytes of ``words``."""
    return zlib.crc32(b"".join(int(w).to_bytes(4, "little") for w in words))


def command(opcode, args=(), *, tag=0, length=None):
    """The words of one command; ``length`` overrides the header's (to build bad commands)."""
    args = [int(a) & 0xFFFF_FFFF for a in args]
    n = len(args) if length is None else length
    opcode = opcode.value if isinstance(opcode, Opcode) else opcode
    header = _COMMAND.encode({"opcode": opcode, "tag": tag, "length": n})
    words = [header, *args]
    return [*words, crc32(words)]


def rect(x0, y0, x1=None, y1=None):
    """A ``Rect`` argument word (a single core when ``x1``/``y1`` are omitted)."""
    x1 = x0 if x1 is None else x1
    y1 = y0 if y1 is None else y1
    return _RECT.encode({"x0": x0, "y0": y0, "x1": x1, "y1": y1})


def core(x, y):
    """A single-core argument word (``x | y << 4``)."""
    return x | y << 4


@dataclass(frozen=True)
class Response:
    opcode: int
    tag: int
    payload: tuple
    status: Status


def parse_response(words):
    """A :class:`Response` from its words; checks the length and the CRC."""
    if len(words) < 3:
        raise ValueError(f"a response has at least 3 words, not {len(words)}")
    h = _RESPONSE.decode(words[0])
    n = h["length"]
    if len(words) != n + 3:
        raise ValueError(f"response announces {n} payload words but has {len(words) - 3}")
    if crc32(words[:-1]) != words[-1]:
        raise ValueError(f"response CRC {words[-1]:#010x} != {crc32(words[:-1]):#010x}")
    return Response(opcode=h["opcode"], tag=h["tag"], payload=tuple(words[1 : 1 + n]), status=Status(words[1 + n]))

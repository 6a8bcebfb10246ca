"""The host command/response protocol, defined once (docs/host-protocol.md).

The host port carries 32-bit words. A **command** is

    [header] [argument] * length [crc]

and every command gets exactly one **response**

    [header] [payload] * length [status] [crc]

``crc`` is the CRC-32 of zlib/Ethernet (``zlib.crc32``) over the little-endian bytes of
every earlier word of the packet. A response's ``length`` is fixed before its payload
streams out; when a wait runs out (a core that never answers) the rest of the payload is
zero-filled and ``status`` says why, so the host never loses framing. A command that
fails a check (CRC, opcode, length, core index, argument) changes no state: it is
checked whole before anything is sent into the chip.
"""

from amaranth.hdl import signed
from amaranth.lib import data, enum

__all__ = [
    "Opcode",
    "Status",
    "CommandHeader",
    "ResponseHeader",
    "Rect",
    "MvmFlags",
    "ReducedSum",
    "BlockWord",
    "CRC_POLY_REFLECTED",
]

#: zlib's CRC-32 polynomial, bit-reflected (init and final XOR 0xFFFFFFFF).
CRC_POLY_REFLECTED = 0xEDB88320


class Opcode(enum.Enum, shape=8):
    """Command opcodes. Arguments and payloads: docs/host-protocol.md."""

    #: ``[]`` -> ``[id, geometry]``: liveness and the chip's geometry.
    PING = 0x01
    #: ``[rect, addr, data]`` -> ``[acks, status_or]``: write one CSR of every core of ``rect``.
    CSR_WRITE = 0x02
    #: ``[core, addr]`` -> ``[data]``: read one CSR of one core.
    CSR_READ = 0x03
    #: ``[rect, flags, elems...]`` -> outputs: run vectors on the cores of ``rect``.
    MVM = 0x04


class Status(enum.Enum, shape=8):
    """Response status (the word after the payload)."""

    OK = 0x00
    #: The command's CRC word does not match.
    BAD_CRC = 0x01
    #: Unknown opcode.
    BAD_OPCODE = 0x02
    #: ``length`` wrong for the opcode, or larger than the bridge's command buffer.
    BAD_LENGTH = 0x03
    #: A core coordinate outside the grid, or an empty rectangle.
    BAD_CORE = 0x04
    #: An argument out of range (flags, vector count, element count).
    BAD_ARG = 0x05
    #: A core or route did not answer within the bridge's watchdog.
    TIMEOUT = 0x06
    #: A core refused a request (its ERROR bits are in the payload).
    CORE_ERROR = 0x07
    #: The host paused mid-command for longer than the watchdog; the command was dropped.
    STALLED = 0x08


class Rect(data.Struct):
    """A rectangle of cores, inclusive: one core has ``x1 == x0`` and ``y1 == y0``."""

    x0: 4
    y0: 4
    x1: 4
    y1: 4
    _pad: 16


class MvmFlags(data.Struct):
    """Second argument of MVM."""

    #: Sum the cores' signed counts element-wise (a layer split across cores).
    reduce: 1
    #: Every core gets its own input vector (else one vector is multicast to all of them).
    per_core: 1
    _pad0: 6
    #: Vectors per core (1..255); the cores' ``BATCH`` must be set to it beforehand.
    vectors: 8
    #: Elements per input vector (1..1024).
    elems: 16


class CommandHeader(data.Struct):
    opcode: 8
    tag: 8
    #: Argument words (excluding the header and the CRC word).
    length: 16


class ResponseHeader(data.Struct):
    #: The command's opcode (0 when it was not recognised).
    opcode: 8
    #: The command's tag, echoed.
    tag: 8
    #: Payload words (excluding the header, the status word and the CRC word).
    length: 16


class BlockWord(data.Struct):
    """The word before each OUTPUT block of a non-reduced MVM response: which core sent it."""

    x: 4
    y: 4
    _pad: 24


class ReducedSum(data.Struct):
    """One payload word of a reduced MVM response: one neuron summed over the cores."""

    #: Sum over the cores of the neuron's signed count ``(1 - 2 sign) count``.
    sum: signed(24)
    #: OR of the cores' ``sat`` flags for this neuron.
    sat: 1
    _pad: 7

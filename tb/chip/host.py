"""Host commands and responses as Python values (docs/host-protocol.md), with the RTL's layouts,
and :class:`HostClient`, the host API every chip bench uses over its own port driver."""

import json
import os
import zlib
from dataclasses import dataclass

import numpy as np

from cimdv.rtl.chip.layouts import TILE_LANES
from cimdv.rtl.host.protocol import CommandHeader, MvmFlags, Opcode, Rect, ReducedSum, ResponseHeader, Status
from cimdv.tb.coverage import functional
from cimdv.tb.sim import PARAMS_ENV
from cimdv.tb.vip.codec import LayoutCodec

from .packets import input_words, output_elements

__all__ = [
    "crc32",
    "command",
    "rect",
    "core",
    "mvm_args",
    "Response",
    "parse_response",
    "Block",
    "mvm_blocks",
    "reduced_sums",
    "HostClient",
    "HostError",
]

_COMMAND = LayoutCodec(CommandHeader)
_RESPONSE = LayoutCodec(ResponseHeader)
_RECT = LayoutCodec(Rect)
_FLAGS = LayoutCodec(MvmFlags)
_SUM = LayoutCodec(ReducedSum)


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


def _cores(area):
    x0, y0, x1, y1 = area
    return [(x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]


def mvm_args(area, inputs, *, out_elems, per_core=False, reduce=False):
    """MVM's arguments: ``area`` is ``(x0, y0, x1, y1)``; ``inputs`` is ``(vectors, elems)``,
    or with ``per_core`` ``(vectors, cores, elems)`` with the cores in raster order."""
    inputs = np.asarray(inputs)
    ncores = len(_cores(area))
    if inputs.ndim != (3 if per_core else 2) or (per_core and inputs.shape[1] != ncores):
        want = f"(vectors, {ncores}, elems)" if per_core else "(vectors, elems)"
        raise ValueError(f"inputs must have shape {want}, not {inputs.shape}")
    vectors, elems = inputs.shape[0], inputs.shape[-1]
    flags = _FLAGS.encode({"reduce": int(reduce), "per_core": int(per_core), "vectors": vectors, "elems": elems})
    words = [w for vec in inputs.reshape(-1, elems) for w in input_words(vec)]
    return [rect(*area), flags, out_elems, *words]


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


@dataclass(frozen=True)
class Block:
    """One OUTPUT vector of a non-reduced MVM response."""

    x: int
    y: int
    count: np.ndarray
    sign: np.ndarray
    sat: np.ndarray

    @property
    def signed(self):
        """The signed counts ``(1 - 2 sign) count``."""
        return np.where(self.sign.astype(bool), -self.count, self.count)


def mvm_blocks(payload, out_elems):
    """The :class:`Block` list of a non-reduced MVM payload, in arrival order."""
    per = 1 + -(-out_elems // TILE_LANES)
    if len(payload) % per:
        raise ValueError(f"payload of {len(payload)} words is not whole blocks of {per}")
    blocks = []
    for k in range(0, len(payload), per):
        head = payload[k]
        count, sign, sat = output_elements(payload[k + 1 : k + per], out_elems)
        blocks.append(Block(x=head & 0xF, y=head >> 4 & 0xF, count=count, sign=sign, sat=sat))
    return blocks


def reduced_sums(payload):
    """``(sums, sat)`` arrays of a reduced MVM payload."""
    decoded = [_SUM.decode(w) for w in payload]
    return np.array([d["sum"] for d in decoded], dtype=np.int64), np.array([d["sat"] for d in decoded], dtype=bool)


def _grid_from_env():
    """``(cols, rows)`` of the simulated chip from ``CIMDV_PARAMS`` (None outside a chip simulation)."""
    try:
        params = json.loads(os.environ.get(PARAMS_ENV, ""))
    except ValueError:
        return None
    if not isinstance(params, dict) or not {"core_rows", "core_cols"} & set(params):
        return None  # not a chip
    cols, rows = params.get("cols"), params.get("rows")
    return (cols, rows) if isinstance(cols, int) and isinstance(rows, int) else None


class HostError(RuntimeError):
    """A response whose status was not the one expected."""


class HostClient:
    """The host API (docs/host-protocol.md) over a port driver.

    ``port`` has one coroutine, ``transact(words) -> list[int]``: send one command's words and
    return the words of its response (header, payload, status, CRC). The Amaranth bench, the
    cocotb stream driver and the cocotb UART driver each provide one, so every chip test
    speaks to the chip through this same client. Tags count up, so a late answer to an
    earlier command can never be taken for the current one.

    Every response is sampled into functional coverage (``host_status_cg``; and, for an MVM that ran,
    ``chip_mvm_cg``: the rectangle's cores and the mode), so every bench built on the client samples
    without doing anything. ``grid`` (``(cols, rows)``, from which the MVM bins derive) defaults to the
    simulated chip's parameters (``CIMDV_PARAMS``); without either only the status is sampled.
    ``coverage`` defaults to the process's model.
    """

    def __init__(self, port, *, grid=None, coverage=None):
        self.port = port
        self._tag = 0
        self.coverage = functional.model() if coverage is None else coverage
        grid = _grid_from_env() if grid is None else grid
        if grid is not None:
            self.coverage.use_grid(*grid)

    def next_tag(self):
        self._tag = (self._tag + 1) & 0xFF
        return self._tag

    async def send(self, words, *, check=True):
        """Send raw command words; returns the parsed :class:`Response` (checks its tag)."""
        tag = _COMMAND.decode(words[0])["tag"]
        response = parse_response(await self.port.transact(list(words)))
        self._sample(words, response)
        if check and response.tag != tag:
            raise HostError(f"response tag {response.tag} does not match the command's {tag}")
        return response

    def _sample(self, words, response):
        """Coverage of one response: its status, and the size and mode of an MVM that ran."""
        opcode = _COMMAND.decode(words[0])["opcode"]
        ran = response.status in (Status.OK, Status.CORE_ERROR, Status.TIMEOUT)
        if opcode == Opcode.MVM.value and ran and len(words) > 3:
            r, f = _RECT.decode(words[1]), _FLAGS.decode(words[2])
            area = (r["x0"], r["y0"], r["x1"], r["y1"])
            self.coverage.sample_host(opcode, response.status, rect=area, per_core=f["per_core"], reduce=f["reduce"])
        else:
            self.coverage.sample_host(opcode, response.status)

    async def command(self, opcode, args=(), *, expect=Status.OK, tag=None):
        """One command; raises :class:`HostError` unless the status is ``expect`` (None: any)."""
        tag = self.next_tag() if tag is None else tag
        response = await self.send(command(opcode, args, tag=tag))
        if expect is not None and response.status != expect:
            raise HostError(f"{Opcode(opcode).name} tag {tag}: status {response.status.name}, expected {expect.name}")
        return response

    async def ping(self):
        """``(cols, rows, core_rows, core_cols)`` of the chip."""
        r = await self.command(Opcode.PING)
        return r.payload[1] & 0xFF, r.payload[1] >> 8 & 0xFF, r.payload[2] & 0xFFFF, r.payload[2] >> 16

    async def csr_write(self, area, addr, value, *, expect=Status.OK):
        """Write one CSR of every core of ``area`` ``(x0, y0, x1, y1)``; returns ``(acks, status_or)``."""
        r = await self.command(Opcode.CSR_WRITE, [rect(*area), addr, value], expect=expect)
        return r.payload

    async def csr_read(self, x, y, addr, *, expect=Status.OK):
        r = await self.command(Opcode.CSR_READ, [core(x, y), addr], expect=expect)
        return r.payload[0]

    async def write_all(self, area, regmap, writes):
        """``[(register, value)]`` (e.g. from :func:`~cimdv.tb.vip.config.core_config_writes`) to ``area``."""
        for name, value in writes:
            await self.csr_write(area, regmap[name].addr, value)

    async def mvm(self, area, inputs, *, out_elems, per_core=False, reduce=False, expect=Status.OK):
        """Run an MVM; returns the :class:`Block` list, or ``(sums, sat)`` with ``reduce``."""
        args = mvm_args(area, inputs, out_elems=out_elems, per_core=per_core, reduce=reduce)
        r = await self.command(Opcode.MVM, args, expect=expect)
        return reduced_sums(r.payload) if reduce else mvm_blocks(r.payload, out_elems)

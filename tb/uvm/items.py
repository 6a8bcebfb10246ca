"""Sequence items (stimulus) and monitor transactions (observations) of the chip environment.

Stimulus is a :class:`HostItem` (one host command for the host driver) or a :class:`MacroItem` (a new
behaviour of one tile's analog macro). Observations are frozen records written on analysis ports:
:class:`HostTxn` (one command and its response, decoded), :class:`MacroTxn` (what one tile's macro computed
for one vector), :class:`NocEvent` (a change of a chip status port).
"""

from dataclasses import dataclass

import numpy as np
from pyuvm import uvm_sequence_item

from cimdv.rtl.host.protocol import Opcode, Status
from cimdv.tb.chip import host

__all__ = ["HostItem", "MacroItem", "MACRO_KINDS", "MvmRequest", "HostTxn", "MacroTxn", "NocEvent", "area_cores"]

#: Behaviours of the analog macro agent (docs/architecture.md, "pyuvm chip environment").
MACRO_KINDS = ("exact", "physical", "biased", "silent", "weight_fault")


def area_cores(area):
    """Cores of a rectangle ``(x0, y0, x1, y1)`` in raster order (x fastest), as the bridge serves them."""
    x0, y0, x1, y1 = area
    return [(x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]


def _pattern(name, value):
    if value is None:
        return None
    pattern = tuple(int(bool(v)) for v in value)
    if not pattern or all(pattern):
        raise ValueError(f"{name} must be a non-empty pattern of stall flags with at least one 0, not {value!r}")
    return pattern


class HostItem(uvm_sequence_item):
    """One host command for the host driver, and (after ``finish_item``) its response.

    Build one with the class methods (:meth:`ping`, :meth:`csr_write`, :meth:`csr_read`, :meth:`mvm`).

    Parameters
    ----------
    name : str
    opcode : Opcode
    args : sequence of int
        The command's argument words (docs/host-protocol.md).
    in_pause, out_pause : sequence of bool, optional
        Stall patterns (repeated) of the host's input stream and of its output ``ready``
        (backpressure) while this command runs; None: no stall.

    Attributes
    ----------
    response : cimdv.tb.chip.host.Response or None
        Set by the driver.
    error : Exception or None
        What the port raised instead of a response (a timeout, a malformed response).
    """

    def __init__(self, name="host_item", opcode=Opcode.PING, args=(), *, in_pause=None, out_pause=None):
        super().__init__(name)
        if not isinstance(opcode, Opcode):
            raise TypeError(f"opcode must be an Opcode, not {opcode!r}")
        self.opcode = opcode
        self.args = [int(a) & 0xFFFF_FFFF for a in args]
        self.in_pause = _pattern("in_pause", in_pause)
        self.out_pause = _pattern("out_pause", out_pause)
        self.response = None
        self.error = None

    @classmethod
    def ping(cls, **knobs):
        return cls("ping", Opcode.PING, (), **knobs)

    @classmethod
    def csr_write(cls, area, addr, value, **knobs):
        return cls("csr_write", Opcode.CSR_WRITE, (host.rect(*area), addr, value), **knobs)

    @classmethod
    def csr_read(cls, xy, addr, **knobs):
        return cls("csr_read", Opcode.CSR_READ, (host.core(*xy), addr), **knobs)

    @classmethod
    def mvm(cls, area, inputs, *, out_elems, per_core=False, reduce=False, **knobs):
        args = host.mvm_args(area, inputs, out_elems=out_elems, per_core=per_core, reduce=reduce)
        return cls("mvm", Opcode.MVM, args, **knobs)

    def __str__(self):
        status = "-" if self.response is None else self.response.status.name
        return f"{self.opcode.name} ({len(self.args)} args) -> {status}"


class MacroItem(uvm_sequence_item):
    """A new behaviour of one tile's analog macro (applied by the macro driver between MVMs).

    Parameters
    ----------
    name : str
    kind : str
        ``exact``: the exact macro with the environment's weights. ``physical``: the physical model with
        read noise ``read_noise`` (µS) and kT/C noise ``ktc_noise`` on the same conductances, noise seeded
        by ``seed``. ``biased``: ``physical`` plus an offset of ``bias_lsb`` quanta added to every
        integrator at INIT (a fault the statistical check must catch). ``silent``: a comparator that never
        answers (always low). ``weight_fault``: the exact macro with ``fault = (row, col, delta)`` added to
        one weight (a fault the exact check must catch).
    """

    def __init__(
        self, name="macro_item", kind="exact", *, read_noise=0.0, ktc_noise=0.0, seed=0, bias_lsb=0.0, fault=None
    ):
        super().__init__(name)
        if kind not in MACRO_KINDS:
            raise ValueError(f"kind must be one of {MACRO_KINDS}, not {kind!r}")
        if kind == "weight_fault" and (fault is None or len(fault) != 3):
            raise ValueError(f"fault must be (row, col, delta) for a weight fault, not {fault!r}")
        for label, value in (("read_noise", read_noise), ("ktc_noise", ktc_noise)):
            if not value >= 0:
                raise ValueError(f"{label} must be >= 0, not {value!r}")
        self.kind = kind
        self.read_noise = float(read_noise)
        self.ktc_noise = float(ktc_noise)
        self.seed = int(seed)
        self.bias_lsb = float(bias_lsb)
        self.fault = None if fault is None else tuple(int(v) for v in fault)

    def __str__(self):
        return f"macro {self.kind}"


@dataclass(frozen=True)
class MvmRequest:
    """The decoded arguments of an MVM command."""

    area: tuple
    reduce: bool
    per_core: bool
    vectors: int
    elems: int
    out_elems: int
    #: ``(vectors, elems)``, or ``(vectors, cores, elems)`` with ``per_core``.
    inputs: np.ndarray

    def vector(self, v, i):
        """Input vector ``v`` of the ``i``-th core of the area (raster order)."""
        return self.inputs[v, i] if self.per_core else self.inputs[v]


@dataclass(frozen=True)
class HostTxn:
    """One command seen on ``host_in`` and its response seen on ``host_out`` (the host monitor's item).

    ``problem`` names what could not be decoded (a malformed command or response); the scoreboard
    reports it. Times are simulation ns of the command's first word and the response's last word.
    """

    index: int
    #: An :class:`Opcode` (the raw value when it is none).
    opcode: Opcode | int
    tag: int
    args: tuple
    t_cmd_ns: float
    t_rsp_ns: float
    rsp_tag: int | None = None
    status: Status | None = None
    payload: tuple = ()
    #: CSR_WRITE/MVM: the rectangle; CSR_READ: the core as ``(x, y, x, y)``.
    area: tuple | None = None
    addr: int | None = None
    data: int | None = None
    mvm: MvmRequest | None = None
    #: Non-reduced MVM: the output blocks (:class:`~cimdv.tb.chip.host.Block`) in arrival order.
    blocks: tuple | None = None
    #: Reduced MVM: ``(sums, sat)`` arrays.
    sums: tuple | None = None
    problem: str | None = None

    @property
    def name(self):
        op = self.opcode.name if isinstance(self.opcode, Opcode) else f"opcode {self.opcode:#x}"
        return f"#{self.index} {op} tag {self.tag}"


@dataclass(frozen=True)
class MacroTxn:
    """What one tile's macro computed for one vector (INIT to the IDLE after its last COMPARE).

    ``kind`` and ``noise`` say which analog model answered (the bench's own model, not the DUT):
    ``exact``/``physical``/``silent``, with ``noise = (read_noise, ktc_noise, q)`` for ``physical``.
    ``integ`` is the integrator of every line at the sign compare; ``compares`` the ``cmp`` bus value of
    every COMPARE (the sign compare first).
    """

    xy: tuple
    index: int
    kind: str
    noise: tuple | None
    backward: bool
    integ: np.ndarray
    compares: tuple
    samples: int
    integrates: int
    decrements: int
    noise_ops: int
    t_start_ns: float
    t_end_ns: float


@dataclass(frozen=True)
class NocEvent:
    """A change of one of the chip's status ports (``previous`` None: the value when watching began)."""

    name: str
    value: int | None
    previous: int | None
    t_ns: float

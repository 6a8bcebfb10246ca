"""The chip: tiles on a request and a response mesh, and the host bridge (docs/architecture.md)."""

from amaranth.hdl import Cat, ClockSignal, Instance, Module, Mux, ResetSignal, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..host.bridge import HostBridge
from ..noc.mesh import Mesh
from .tile import Tile

__all__ = ["Chip", "tile_member"]

#: Width of the chip's drop counters.
COUNTER_BITS = 16


def tile_member(kind, x, y):
    """Member name of tile ``(x, y)``'s analog boundary (``"macro"``) or programming port (``"prog"``)."""
    return f"{kind}_{x}_{y}"


def _check_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be {lo}..{hi}, not {value}")


class Chip(wiring.Component):
    """A ``cols`` x ``rows`` grid of tiles (:class:`Tile`: a :class:`CimCore` and its network
    interface), a request mesh (XY routing, multicast), a response mesh (YX routing) and the
    :class:`HostBridge` on the west edge port of row 0 of both.

    The host is the only source of requests and the only sink of responses, so multicast
    and responses are deadlock-free (docs/noc.md §6). Every tile's analog boundary and
    programming port are ports of the chip: the testbench's analog responder, or the FPGA
    prototype's digital twins, sit behind them.

    Parameters
    ----------
    cols, rows : int
        The grid (1..15 each); default 8 x 6 = 48 cores as NeuRRAM.
    core_rows, core_cols : int
        Every core's crossbar (1..1024 each); default 256 x 256.
    pulse_bits : int
        The cores' pulse-multiplier counter (:class:`CimCore`).
    capacity : int
        Words of the host bridge's command buffer; an MVM's inputs must fit in it.
    watchdog : int
        The host bridge's watchdog (cycles).
    tile_watchdog : int
        The tiles' input watchdog (cycles); below ``watchdog``, so a tile that drains a
        refused packet does so before the bridge gives up.
    depth : int
        Flits per router input FIFO.
    crc_step_bits, shared_crc : int, bool
        The host bridge's CRC area options (:class:`HostBridge`): default a word per cycle
        and two CRC units.
    tile_module : str or None
        With a name (default ``"chip_tile"``), the tiles are instances of one Verilog module
        of that name, emitted once by :meth:`verilog_modules`, so a 48-tile chip's Verilog
        holds one tile, not 48 copies; with ``None`` the tiles are ordinary submodules
        (:attr:`tiles`), as Amaranth's simulator needs.

    Members
    -------
    host_in : :py:`In(stream.Signature(32))`, host_out : :py:`Out(stream.Signature(32))`
        The host port (docs/host-protocol.md).
    macro_<x>_<y> : :py:`Out(MacroSignature)`
        Tile ``(x, y)``'s analog boundary (docs/analog-boundary.md).
    prog_<x>_<y> : :py:`Out(ProgramSignature)`
        Tile ``(x, y)``'s programming port.
    busy, error : :py:`Out(cols * rows)`
        Every core's ``busy`` and ``error``, bit ``y * cols + x``.
    timeouts, stale : :py:`Out(16)`
        The host bridge's counters: watchdog expiries, late responses drained.
    noc_drops : :py:`Out(16)`
        Packets the two meshes dropped (misroutes and unroutable headers; saturating). The
        chip's own traffic never causes one: a non-zero value is a design error.
    noc_dropped : :py:`Out(1)`
        ``noc_drops != 0``, without the adder (for an LED).

    Timing
    ------
    One word per cycle on the host port. A request header takes 2 cycles per router from
    the bridge to a tile, a response the same back (docs/noc.md).
    """

    def __init__(
        self,
        *,
        cols=8,
        rows=6,
        core_rows=256,
        core_cols=256,
        pulse_bits=8,
        capacity=8192,
        watchdog=1 << 20,
        tile_watchdog=1 << 16,
        depth=2,
        crc_step_bits=32,
        shared_crc=False,
        tile_module="chip_tile",
    ):
        _check_int("cols", cols, 1, 15)
        _check_int("rows", rows, 1, 15)
        _check_int("tile_watchdog", tile_watchdog, 1, 1 << 30)
        _check_int("watchdog", watchdog, tile_watchdog + 1, 1 << 31)
        if tile_module is not None and (not isinstance(tile_module, str) or not tile_module.isidentifier()):
            raise ValueError(f"tile_module must be None or a Verilog identifier, not {tile_module!r}")
        self.cols, self.rows = cols, rows
        self.tile_module = tile_module
        self.tile_params = dict(rows=core_rows, cols=core_cols, pulse_bits=pulse_bits, watchdog=tile_watchdog)
        self.bridge = HostBridge(
            cols=cols,
            rows=rows,
            core_rows=core_rows,
            core_cols=core_cols,
            capacity=capacity,
            watchdog=watchdog,
            crc_step_bits=crc_step_bits,
            shared_crc=shared_crc,
        )
        self.req_net = Mesh(cols=cols, rows=rows, order="xy", depth=depth, edge_ports=(("W", 0),))
        self.rsp_net = Mesh(cols=cols, rows=rows, order="yx", depth=depth, edge_ports=(("W", 0),))
        if tile_module is None:
            self.tiles = {(x, y): Tile(x=x, y=y, **self.tile_params) for y in range(rows) for x in range(cols)}
            self._tile_signature = self.tiles[0, 0].signature
        else:  # one coordinate-port tile, emitted once
            self._template = Tile(x=None, y=None, **self.tile_params)
            self._tile_signature = self._template.signature
        tile_members = self._tile_signature.members
        members = {
            "host_in": In(stream.Signature(32)),
            "host_out": Out(stream.Signature(32)),
        }
        for y in range(rows):
            for x in range(cols):
                members[tile_member("macro", x, y)] = Out(tile_members["macro"].signature)
                if "prog" in tile_members:
                    members[tile_member("prog", x, y)] = Out(tile_members["prog"].signature)
        n = cols * rows
        members |= {
            "busy": Out(n),
            "error": Out(n),
            "timeouts": Out(16),
            "stale": Out(16),
            "noc_drops": Out(16),
            "noc_dropped": Out(1),
        }
        super().__init__(members)

    def verilog_modules(self):
        """Modules to emit before the chip's own Verilog: ``{name: component}``."""
        return {} if self.tile_module is None else {self.tile_module: self._template}

    def _tile(self, m, x, y):
        """Tile ``(x, y)``: a submodule, or an instance of ``tile_module`` behind a stub interface."""
        if self.tile_module is None:
            m.submodules[f"tile_{x}_{y}"] = tile = self.tiles[x, y]
            return tile
        signature = self._tile_signature
        stub = signature.create(path=(f"tile_{x}_{y}",))
        ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
        for path, member, value in signature.flatten(stub):
            name = "__".join(str(p) for p in path)
            if name in ("x", "y"):
                continue
            ports[("o_" if member.flow == Out else "i_") + name] = Value.cast(value)
        ports |= {"i_x": x, "i_y": y}
        m.submodules[f"tile_{x}_{y}"] = Instance(self.tile_module, **ports)
        return stub

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        m.submodules.req_net = req_net = self.req_net
        m.submodules.rsp_net = rsp_net = self.rsp_net
        wiring.connect(m, wiring.flipped(self.host_in), bridge.host_in)
        wiring.connect(m, bridge.host_out, wiring.flipped(self.host_out))
        wiring.connect(m, bridge.req, req_net.edge_w0_in)
        wiring.connect(m, rsp_net.edge_w0_out, bridge.rsp)
        # Nothing on the request network is addressed to the edge, and nothing enters the
        # response network there; a stray packet would be drained (and is impossible by
        # construction: the bridge addresses tiles only).
        m.d.comb += req_net.edge_w0_out.ready.eq(1)

        busy, error = [], []
        for y in range(self.rows):
            for x in range(self.cols):
                tile = self._tile(m, x, y)
                wiring.connect(m, req_net.eject[x][y], tile.req)
                wiring.connect(m, tile.rsp, rsp_net.inject[x][y])
                wiring.connect(m, tile.macro, wiring.flipped(getattr(self, tile_member("macro", x, y))))
                if "prog" in self._tile_signature.members:
                    wiring.connect(m, tile.prog, wiring.flipped(getattr(self, tile_member("prog", x, y))))
                busy.append(tile.busy)
                error.append(tile.error)
        m.d.comb += [self.busy.eq(Cat(*busy)), self.error.eq(Cat(*error))]
        m.d.comb += [self.timeouts.eq(bridge.timeouts), self.stale.eq(bridge.stale)]

        drops = Signal(COUNTER_BITS + 2)
        m.d.comb += drops.eq(req_net.misroutes + req_net.errors + rsp_net.misroutes + rsp_net.errors)
        limit = (1 << COUNTER_BITS) - 1
        m.d.comb += self.noc_drops.eq(Mux(drops > limit, limit, drops))
        counters = (req_net.misroutes, req_net.errors, rsp_net.misroutes, rsp_net.errors)
        m.d.comb += self.noc_dropped.eq(Cat(*counters).any())
        return m

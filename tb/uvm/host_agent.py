"""The host agent: sequencer, driver (through :class:`~cimdv.tb.chip.host.HostClient`) and a passive monitor.

The driver sends each :class:`~cimdv.tb.uvm.items.HostItem` with the chip bench's own host API
(``HostClient`` over ``StreamHostPort``), so the protocol exists once. The monitor watches the host
streams by itself: its own passive stream monitor on ``host_in`` and a callback on the port's monitor of
``host_out`` (both wake only on transfers), and publishes one :class:`~cimdv.tb.uvm.items.HostTxn` per
command and response.
"""

import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge
from pyuvm import ConfigDB, uvm_agent, uvm_analysis_port, uvm_driver, uvm_monitor, uvm_sequencer

from cimdv.rtl.chip.layouts import InputFlit
from cimdv.rtl.host.protocol import CommandHeader, MvmFlags, Opcode, Rect, Status
from cimdv.tb.chip import host
from cimdv.tb.chip.env import HOST_WORD
from cimdv.tb.vip.codec import LayoutCodec
from cimdv.tb.vip.stream import StreamBus, StreamMonitor, cycle_pause

from .items import HostTxn, MvmRequest, area_cores

__all__ = ["HostSequencer", "HostDriver", "HostMonitor", "HostAgent", "decode_txn"]

_HEADER = LayoutCodec(CommandHeader)
_RECT = LayoutCodec(Rect)
_FLAGS = LayoutCodec(MvmFlags)
_INPUT = LayoutCodec(InputFlit)
_LANES = 3
#: Statuses whose MVM response carries a payload (zero-filled where outputs are missing).
_MVM_PAYLOAD = (Status.OK, Status.TIMEOUT, Status.CORE_ERROR)


class HostSequencer(uvm_sequencer):
    """Sequencer of host commands; ``chip`` (a :class:`~cimdv.tb.uvm.env.ChipInfo`) is what sequences
    build legal commands from."""

    def build_phase(self):
        super().build_phase()
        self.chip = ConfigDB().get(self, "", "chip")


class HostDriver(uvm_driver):
    """Sends every :class:`HostItem` through ``HostClient.command`` and stores the response in the item.

    The driver never checks: a response with any status is the scoreboard's to judge; an exception of
    the port (no response within its timeout, a malformed response) is stored in ``item.error``.
    Pause patterns of the item are applied to the port's source (input idles) and sink (backpressure)
    for the duration of the command.
    """

    def build_phase(self):
        super().build_phase()
        self.harness = ConfigDB().get(self, "", "harness")

    async def run_phase(self):
        await self.harness.ready.wait()
        tb = self.harness.tb
        clk = tb.dut.clk
        while True:
            item = await self.seq_item_port.get_next_item()
            await FallingEdge(clk)  # get_next_item returns in any phase: write only after an edge
            port = tb.port
            port.source.pause = cycle_pause(item.in_pause) if item.in_pause else None
            port.sink.pause = cycle_pause(item.out_pause) if item.out_pause else None
            try:
                item.response = await tb.client.command(item.opcode, item.args, expect=None)
            except (TimeoutError, ValueError, host.HostError) as exc:
                item.error = exc
                self.logger.error(f"{item}: {exc}")
            finally:
                port.source.pause = None
                port.sink.pause = None
            self.seq_item_port.item_done()


def _decode_mvm(args, grid):
    """An :class:`MvmRequest` from MVM argument words (ValueError when they do not add up)."""
    if len(args) < 3:
        raise ValueError(f"MVM with {len(args)} argument words")
    r = _RECT.decode(args[0])
    area = (r["x0"], r["y0"], r["x1"], r["y1"])
    f = _FLAGS.decode(args[1])
    vectors, elems = f["vectors"], f["elems"]
    if not area[0] <= area[2] < grid[0] or not area[1] <= area[3] < grid[1] or not vectors or not elems:
        raise ValueError(f"MVM over {area} with {vectors} vectors of {elems} elements")
    ncores = len(area_cores(area))
    per_vector = -(-elems // _LANES)
    nvec = vectors * (ncores if f["per_core"] else 1)
    words = args[3:]
    if len(words) != nvec * per_vector:
        raise ValueError(f"MVM carries {len(words)} input words, {nvec * per_vector} expected")
    flat = np.array(
        [
            [e for w in words[k * per_vector : (k + 1) * per_vector] for e in _INPUT.decode(w)["elems"]][:elems]
            for k in range(nvec)
        ],
        dtype=np.int64,
    )
    shape = (vectors, ncores, elems) if f["per_core"] else (vectors, elems)
    return MvmRequest(
        area=area,
        reduce=bool(f["reduce"]),
        per_core=bool(f["per_core"]),
        vectors=vectors,
        elems=elems,
        out_elems=args[2],
        inputs=flat.reshape(shape),
    )


def decode_txn(index, command, response, t_cmd, t_rsp, grid):
    """A :class:`HostTxn` from the words of a command and of its response.

    ``grid`` is ``(cols, rows)``. Decoding problems are recorded in ``problem``, never raised.
    """
    h = _HEADER.decode(command[0])
    opcode, tag, args = h["opcode"], h["tag"], tuple(command[1:-1])
    if opcode in {op.value for op in Opcode}:
        opcode = Opcode(opcode)
    fields = {"index": index, "opcode": opcode, "tag": tag, "args": args, "t_cmd_ns": t_cmd, "t_rsp_ns": t_rsp}
    problems = []
    if host.crc32(command[:-1]) != command[-1]:
        problems.append("command CRC wrong")
    try:
        rsp = host.parse_response(response)
    except ValueError as exc:
        return HostTxn(**fields, problem=f"response: {exc}")
    fields.update(rsp_tag=rsp.tag, status=rsp.status, payload=rsp.payload)
    try:
        if opcode == Opcode.CSR_WRITE and len(args) == 3:
            r = _RECT.decode(args[0])
            fields.update(area=(r["x0"], r["y0"], r["x1"], r["y1"]), addr=args[1], data=args[2])
        elif opcode == Opcode.CSR_READ and len(args) == 2:
            x, y = args[0] & 0xF, args[0] >> 4 & 0xF
            fields.update(area=(x, y, x, y), addr=args[1])
        elif opcode == Opcode.MVM:
            req = _decode_mvm(args, grid)
            fields.update(area=req.area, mvm=req)
            if rsp.status in _MVM_PAYLOAD:
                if req.reduce:
                    fields["sums"] = host.reduced_sums(rsp.payload)
                else:
                    fields["blocks"] = tuple(host.mvm_blocks(rsp.payload, req.out_elems))
    except ValueError as exc:
        problems.append(str(exc))
    return HostTxn(**fields, problem="; ".join(problems) or None)


class HostMonitor(uvm_monitor):
    """Passive: one :class:`HostTxn` per command and response on the analysis port ``ap``.

    Commands are collected from ``host_in`` (header, ``length`` arguments, CRC) and responses from
    ``host_out`` (header, ``length`` payload words, status, CRC); the protocol's one-command-at-a-time
    rule pairs them in order. A command still waiting for its response at the end is in ``pending``.
    """

    def build_phase(self):
        super().build_phase()
        self.ap = uvm_analysis_port("ap", self)
        self.harness = ConfigDB().get(self, "", "harness")
        self.pending = []
        self.count = 0
        self._cmd, self._rsp = [], []
        self._t_cmd = 0.0

    async def run_phase(self):
        await self.harness.ready.wait()
        tb = self.harness.tb
        self._grid = (tb.cols, tb.rows)
        self._in = StreamMonitor(StreamBus(tb.dut, "host_in", HOST_WORD), tb.dut.clk)
        self._in.add_callback(self._on_command_word)
        self._in.start()
        tb.port.monitor.add_callback(self._on_response_word)

    def _on_command_word(self, beat):
        if not self._cmd:
            self._t_cmd = get_sim_time("ns")
        self._cmd.append(int(beat["word"]))
        if len(self._cmd) == (self._cmd[0] >> 16) + 2:
            self.pending.append((self._cmd, self._t_cmd))
            self._cmd = []

    def _on_response_word(self, beat):
        words = self._rsp
        words.append(int(beat["word"]))
        if len(words) < 3 or len(words) != (words[0] >> 16) + 3:
            return
        self._rsp = []
        now = get_sim_time("ns")
        if not self.pending:
            txn = HostTxn(self.count, 0, 0, (), now, now, problem="a response with no command")
        else:
            command, t_cmd = self.pending.pop(0)
            txn = decode_txn(self.count, command, words, t_cmd, now, self._grid)
        self.count += 1
        self.ap.write(txn)


class HostAgent(uvm_agent):
    """Sequencer + driver (active) and monitor (always) of the host port."""

    def build_phase(self):
        super().build_phase()
        self.monitor = HostMonitor.create("monitor", self)
        if self.active():
            self.sequencer = HostSequencer.create("sequencer", self)
            self.driver = HostDriver.create("driver", self)

    def connect_phase(self):
        super().connect_phase()
        if self.active():
            self.driver.seq_item_port.connect(self.sequencer.seq_item_export)

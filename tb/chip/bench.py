"""cocotb side of the chip's raw-speed baseline: a commands file replayed through the host client.

The same records as the C++ harness of ``tb/flows/raw_chip.py`` (``tb/chip/workload.py``),
on the same ``twin_chip`` build, with the same reset, poll rule and reports: every command
goes through :class:`~cimdv.tb.chip.host.HostClient` over
:class:`~cimdv.tb.chip.env.StreamHostPort` (event-driven: no Python on idle clock edges),
the clock is cocotb's C clock. ``CIMDV_CHIP_BENCH`` holds a JSON object with the paths
``commands`` (read), ``responses`` and ``report`` (written). The responses are checked by the
caller, as the raw harness's are.
"""

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge

from cimdv.tb.chip.env import CLOCK_NS, StreamHostPort
from cimdv.tb.chip.host import HostClient
from cimdv.tb.chip.workload import FLAGS, poll_again, read_commands, write_responses

ENV = "CIMDV_CHIP_BENCH"


class _Recording:
    """A port that keeps the words of the last response (the client returns them parsed)."""

    def __init__(self, port):
        self.port = port
        self.last = []

    async def transact(self, words):
        self.last = await self.port.transact(words)
        return self.last


@cocotb.test()
async def chip_workload(dut):
    """Replay the commands file; write the responses and the per-phase cycles and wall time."""
    spec = json.loads(os.environ[ENV])
    records = read_commands(spec["commands"])
    Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
    port = StreamHostPort(dut, dut.clk)
    recording = _Recording(port)
    client = HostClient(recording)
    port.start()
    # The raw harness's reset: 3 cycles high, then one low before the first command.
    dut.rst.value = 1
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)

    phases, responses = {}, []
    phase, t0, c0 = None, 0.0, 0

    def close():
        if phase is not None:
            p = phases.setdefault(phase, {"name": phase, "cycles": 0, "wall_s": 0.0, "commands": 0, "sends": 0})
            p["cycles"] += int(get_sim_time("ns")) // CLOCK_NS - c0
            p["wall_s"] += time.perf_counter() - t0

    counts = {}
    for record in records:
        if record.phase != phase:
            close()
            phase, c0, t0 = record.phase, int(get_sim_time("ns")) // CLOCK_NS, time.perf_counter()
        tries = 0
        while True:
            tries += 1
            await client.send(record.words)
            if not poll_again(record, recording.last) or tries >= record.max_tries:
                break
        responses.append((tries, recording.last))
        n = counts.setdefault(record.phase, [0, 0])
        n[0] += 1
        n[1] += tries
    close()
    for name, (commands, sends) in counts.items():
        phases[name]["commands"], phases[name]["sends"] = commands, sends
    write_responses(spec["responses"], responses)
    report = {
        "cycles": sum(p["cycles"] for p in phases.values()),
        "phases": list(phases.values()),
        "flags": {name: int(getattr(dut, name).value) for name in FLAGS},
    }
    with open(spec["report"], "w") as f:
        json.dump(report, f)

"""Inference of the mapped network through the chip RTL (cocotb side of ``make sim``).

The job (``$CIMDV_NN_JOB``, JSON written by :mod:`cimdv.tb.flows.nn`) holds the quantised network,
the mapping table, the chip's noise parameters and seed, the input codes of the test images to
run, and optionally a fault to inject into one responder (the comparison's negative test).
Every tile's analog macro is answered by the physical chip model's
:class:`~cimdv.model.nn.chip.NoisyMacroState` of that core (realised conductances, read noise),
sought to the noise stream of each block and image before its MVM, so the RTL's outputs can be
compared exactly with :meth:`~cimdv.model.nn.chip.ChipModel.run` for the same seed.

Per layer, the host configures the layer's cores (line modes and output mask of its block), then:
a single-core layer runs its images in batched MVMs; a layer split over cores runs one reduced
MVM per image, the cores' partial counts added over the NoC. Hidden activations (ReLU, 4-bit clip
of the reduced sums) are the host's digital step between layers. The outputs, with the simulated
time, go to the job's ``out`` file; the flow compares them with the model.
"""

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time

from cimdv.model.nn.chip import ChipModel, ChipNoise, noise_tag
from cimdv.model.nn.data import X_MAX
from cimdv.model.nn.mapper import MappingTable
from cimdv.model.nn.network import QuantizedNet
from cimdv.rtl.core.regs import NEURRAM_TIMING
from cimdv.tb.chip.env import FAST_TIMING, ChipTb, make_chip_tb

__all__ = ["NN_JOB_ENV", "TIMINGS", "BATCH", "nn_inference"]

#: Path of the job JSON.
NN_JOB_ENV = "CIMDV_NN_JOB"
#: Phase timings by name: NeuRRAM's at 100 MHz, or the shortest the contract allows.
TIMINGS = {"neurram": dict(NEURRAM_TIMING), "fast": dict(FAST_TIMING)}
#: Most images per batched MVM command of a single-core layer (the job's ``batch``, which the flow
#: lowers to fit the bridge's response buffer).
BATCH = 25


@dataclass
class _Run:
    """What every layer of the run needs: the bench, the model, each core's macro, the job."""

    tb: ChipTb
    model: ChipModel
    states: dict
    timing: dict
    batch: int
    progress: str

    def tick(self, n):
        """Append ``n`` lines to the job's progress file (the flow's progress bar counts them)."""
        with open(self.progress, "a") as f:
            f.write("image\n" * n)


def _faulty(model, job, xy):
    """The job's fault, if it hits core ``xy``: ``{"core": [x, y], "row", "col", "add"}`` adds ``add``
    codes to one cell of the responder's conductances (never the model's)."""
    fault = job.get("fault")
    if not fault or tuple(fault["core"]) != xy:
        return None
    codes = model.codes[xy].copy()
    codes[fault["row"], fault["col"]] = max(0, codes[fault["row"], fault["col"]] + fault["add"])
    return codes


def load_job(path):
    job = json.loads(Path(path).read_text())
    net = QuantizedNet.from_dict(job["net"])
    table = MappingTable.from_dict(job["table"])
    model = ChipModel(net, table, ChipNoise.from_dict(job["noise"]), seed=job["seed"])
    return job, model


async def _single_core_layer(run, index, x, images):
    tb, model, batch = run.tb, run.model, run.batch
    b = model.table.blocks[index]
    area = (b.x, b.y, b.x, b.y)
    cols = slice(b.col0, b.col0 + b.cols)
    xs = model.table.block_inputs(b, x)
    out, sat = np.zeros((len(x), b.cols), np.int64), np.zeros((len(x), b.cols), bool)
    for k in range(0, len(x), batch):
        n = min(batch, len(x) - k)
        await tb.configure(model.table.config(b), area=area, batch=n, timing=run.timing)
        run.states[b.x, b.y].seek(noise_tag(index, int(images[k])))
        blocks = await tb.client.mvm(area, xs[k : k + n], out_elems=model.table.core_cols)
        assert len(blocks) == n, f"block {b.name}: {len(blocks)} output vectors for {n} inputs"
        for v, blk in enumerate(blocks):
            out[k + v], sat[k + v] = blk.signed[cols], blk.sat[cols]
        run.tick(n)
    return out, sat


async def _reduced_layer(run, layer, x, images):
    tb, model = run.tb, run.model
    bl = model.table.layer_blocks(layer)
    area = model.table.area(layer)
    indices = [model.table.blocks.index(b) for b in bl]
    for b in bl:
        await tb.configure(model.table.config(b), area=(b.x, b.y, b.x, b.y), batch=1, timing=run.timing)
    per_core = np.stack([model.table.block_inputs(b, x) for b in bl], axis=1)
    cols = slice(bl[0].col0, bl[0].col0 + bl[0].cols)
    out, sat = np.zeros((len(x), bl[0].cols), np.int64), np.zeros((len(x), bl[0].cols), bool)
    for v in range(len(x)):
        for i, b in zip(indices, bl, strict=True):
            run.states[b.x, b.y].seek(noise_tag(i, int(images[v])))
        sums, flags = await tb.client.mvm(
            area, per_core[v : v + 1], out_elems=model.table.core_cols, per_core=True, reduce=True
        )
        out[v], sat[v] = sums[cols], flags[cols]
        run.tick(1)
    return out, sat


@cocotb.test()
async def nn_inference(dut):
    """The job's test images through every layer of the mapped network on the chip RTL."""
    job, model = load_job(os.environ[NN_JOB_ENV])
    tb = await make_chip_tb(dut)
    states = {xy: model.macro_state(xy, _faulty(model, job, xy)) for xy in model.cores}
    for xy, state in states.items():
        tb.responders[xy].load_weights(state)
    run = _Run(tb, model, states, TIMINGS[job["timing"]], job["batch"], job["progress"])
    x = np.asarray(job["codes"], dtype=np.int64)
    images = np.asarray(job["images"], dtype=np.int64)
    wall0, ns0 = time.perf_counter(), get_sim_time("ns")
    outputs, saturated = [], []
    for layer in range(model.table.layers):
        bl = model.table.layer_blocks(layer)
        if len(bl) == 1:
            out, sat = await _single_core_layer(run, model.table.blocks.index(bl[0]), x, images)
        else:
            out, sat = await _reduced_layer(run, layer, x, images)
        outputs.append(out.tolist())
        saturated.append(sat.tolist())
        if model.net.layers[layer].hidden:
            x = np.clip(out, 0, X_MAX)
        dut._log.info("layer %d: %d images done", layer, len(x))
    Path(job["out"]).write_text(
        json.dumps(
            {
                "outputs": outputs,
                "saturated": saturated,
                "sim_ns": get_sim_time("ns") - ns0,
                "wall_s": time.perf_counter() - wall0,
                "host_responses": tb.port.responses,
            }
        )
    )

"""The inference flow's steps, shared by ``make sim``, ``make bench`` and the regression's small version.

:func:`prepare` loads the fixed split, trains and quantises the network and maps it;
:func:`run_rtl` runs test images through the chip RTL (cocotb module :mod:`cimdv.tb.chip.nn`) with
the physical model as every tile's analog macro; :func:`compare` checks the RTL's outputs, layer by
layer and image by image, against :meth:`~cimdv.model.nn.chip.ChipModel.run` for the same seed.
"""

import json
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cimdv.model.nn.data import Digits, input_codes, load_split
from cimdv.model.nn.mapper import MappingTable, map_network
from cimdv.model.nn.network import FloatNet, QuantizedNet, TrainParams, quantize, train_float
from cimdv.tb import sim as simflow
from cimdv.tb.chip.nn import BATCH, NN_JOB_ENV, TIMINGS

__all__ = ["GRID", "CORE", "Prepared", "prepare", "chip_params", "run_rtl", "compare", "RtlRun"]

#: The chip the demo maps onto: 2 x 1 cores of NeuRRAM's 256 x 256.
GRID = (2, 1)
CORE = (256, 256)


@dataclass(frozen=True, eq=False)
class Prepared:
    digits: Digits
    train_codes: np.ndarray
    test_codes: np.ndarray
    float_net: FloatNet
    net: QuantizedNet
    table: MappingTable


def prepare(train=None, *, grid=GRID, core=CORE):
    """Split, train (float, then quantised fine-tuning) and map; deterministic for one ``train``."""
    train = train or TrainParams()
    digits = load_split()
    tr, te = input_codes(digits.x_train), input_codes(digits.x_test)
    float_net = train_float(tr, digits.y_train, train)
    net = quantize(float_net, tr, digits.y_train, train)
    table = map_network(net, grid=grid, core_rows=core[0], core_cols=core[1])
    return Prepared(digits=digits, train_codes=tr, test_codes=te, float_net=float_net, net=net, table=table)


def chip_params(table):
    """Elaboration parameters of the chip the table maps onto."""
    return {"cols": table.grid[0], "rows": table.grid[1], "core_rows": table.core_rows, "core_cols": table.core_cols}


@dataclass(frozen=True, eq=False)
class RtlRun:
    """What :func:`run_rtl` returns: per layer outputs ``(n, fan_out)`` and saturation flags, the
    simulated time, the simulation's wall time, and the command that reproduces it."""

    outputs: tuple
    saturated: tuple
    sim_ns: int
    wall_s: float
    build_s: float
    reproduce: str

    @property
    def predictions(self):
        return self.outputs[-1].argmax(axis=1)


def run_rtl(
    net, table, noise, seed, codes, images, *, sim="verilator", timing="neurram", progress=None, fault=None, params=None
):
    """Run ``codes`` (test images ``images``) through the chip RTL; ``progress(done)`` is called with the
    number of layer-images finished while it runs (polled, from this thread). ``fault`` (see
    :mod:`cimdv.tb.chip.nn`) corrupts one cell of one responder, to prove :func:`compare` fails.
    ``params`` overrides chip parameters (e.g. a smaller command buffer, as the regression's
    full-size chip has; the batch of an MVM command shrinks to fit it)."""
    if sim not in simflow.SIMULATORS:
        raise ValueError(f"sim must be one of {list(simflow.SIMULATORS)}, not {sim!r}")
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {sorted(TIMINGS)}, not {timing!r}")
    codes = np.asarray(codes)
    params = chip_params(table) | (params or {})
    t0 = time.perf_counter()
    build = simflow.build("chip", params, sim)
    build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="cimdv-nn-") as tmp:
        job_path, out, log = Path(tmp) / "job.json", Path(tmp) / "out.json", Path(tmp) / "progress.log"
        job = {
            "net": net.to_dict(),
            "table": table.to_dict(),
            "noise": noise.to_dict(),
            "seed": seed,
            "codes": codes.tolist(),
            "images": [int(i) for i in images],
            "timing": timing,
            "out": str(out),
            "progress": str(log),
            "fault": fault,
            # The command buffer holds an MVM's arguments: 3 words and ceil(rows / 3) per vector.
            "batch": max(1, min(BATCH, (build.params["capacity"] - 3) // -(-table.core_rows // 3))),
        }
        job_path.write_text(json.dumps(job))
        result = {}

        def target():
            try:
                result["run"] = simflow.run(
                    "chip", build.params, sim, "cimdv.tb.chip.nn", seed=seed, extra_env={NN_JOB_ENV: str(job_path)}
                )
            except BaseException as e:  # re-raised on the calling thread
                result["error"] = e

        t1 = time.perf_counter()
        worker = threading.Thread(target=target, name="cimdv-nn-rtl")
        worker.start()
        while worker.is_alive():
            worker.join(0.5)
            if progress is not None and log.exists():
                progress(len(log.read_text().splitlines()))
        wall = time.perf_counter() - t1
        if "error" in result:
            raise result["error"]
        data = json.loads(out.read_text())
    return RtlRun(
        outputs=tuple(np.asarray(o, dtype=np.int64).reshape(len(codes), -1) for o in data["outputs"]),
        saturated=tuple(np.asarray(s, dtype=bool).reshape(len(codes), -1) for s in data["saturated"]),
        sim_ns=int(data["sim_ns"]),
        wall_s=wall,
        build_s=build_s,
        reproduce=result["run"].reproduce,
    )


def compare(rtl, inference):
    """``(agree, first_difference)``: per image, whether every layer's outputs and saturation flags of
    the RTL equal the model's; a sentence locating the first difference (None when all agree)."""
    n = len(rtl.outputs[0])
    agree = np.ones(n, dtype=bool)
    first = None
    for layer, (ro, rs, mo, ms) in enumerate(
        zip(rtl.outputs, rtl.saturated, inference.outputs, inference.saturated, strict=True)
    ):
        mo, ms = mo[:n], ms[:n]
        bad = (ro != mo).any(axis=1) | (rs != ms).any(axis=1)
        if bad.any() and first is None:
            i = int(np.flatnonzero(bad)[0])
            j = int(np.flatnonzero((ro[i] != mo[i]) | (rs[i] != ms[i]))[0])
            first = (
                f"image {i}, layer {layer}, output {j}: RTL {int(ro[i, j])} (sat {bool(rs[i, j])}), "
                f"model {int(mo[i, j])} (sat {bool(ms[i, j])})"
            )
        agree &= ~bad
    return agree, first

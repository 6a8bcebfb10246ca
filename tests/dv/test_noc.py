"""DV regression of the network-on-chip: every cocotb test of tb/noc/tests.py on both simulators.

Each cocotb test is its own pytest item, parametrised over simulator and mesh: a 3 x 3 XY mesh
(request network: multicast, W and S edge ports) and a 4 x 2 YX mesh (response network:
unicast to the host); the checker's negative tests run on the 3 x 3 mesh only. The seed
comes from the ``seed`` fixture; a failure prints it with the command that reproduces it.
``test_simulators_agree`` runs one workload on Icarus and Verilator with one seed and
requires the identical delivered-flit trace."""

import json

import pytest

from cimdv.tb import sim as simflow
from cimdv.tb.noc.env import TRACE_ENV

MODULE = "cimdv.tb.noc.tests"

#: Mesh instances: square and not, both dimension orders, FIFO depths 2 and 3.
MESHES = {
    "xy3x3": {"cols": 3, "rows": 3, "order": "xy", "depth": 2, "edge_ports": [["S", 1], ["W", 0]]},
    "yx4x2": {"cols": 4, "rows": 2, "order": "yx", "depth": 3, "edge_ports": [["S", 3], ["W", 0]]},
}

TESTS = simflow.cocotb_test_names(MODULE)
#: The negative tests prove the checker, not the mesh: one mesh is enough for them.
CHECKER_TESTS = {name for name in TESTS if name.startswith("scoreboard_catches_")}
CASES = [(t, m) for t in TESTS for m in sorted(MESHES) if m == "xy3x3" or t not in CHECKER_TESTS]


@pytest.mark.parametrize(("testcase", "mesh"), CASES)
def test_noc(sim, seed, testcase, mesh):
    result = simflow.run("mesh", MESHES[mesh], sim, MODULE, testcase=testcase, seed=seed)
    assert result.passed == (f"{MODULE}.{testcase}",)


def test_plan_lists_every_cocotb_test():
    """The AST scan finds the tests (guards against a silently empty parametrisation)."""
    assert len(TESTS) >= 9
    assert {"scoreboard_catches_lost_packet", "scoreboard_catches_duplicate_packet"} <= set(TESTS)


def test_simulators_agree(seed, tmp_path):
    """Same seed, same traffic with random backpressure: Icarus and Verilator deliver identical flit traces."""
    summaries = {}
    for sim in simflow.SIMULATORS:
        out = tmp_path / f"{sim}.json"
        simflow.run(
            "mesh",
            MESHES["xy3x3"],
            sim,
            MODULE,
            testcase="multicast_under_unicast_load",
            seed=seed,
            extra_env={TRACE_ENV: str(out)},
        )
        summaries[sim] = json.loads(out.read_text())
    icarus, verilator = summaries["icarus"], summaries["verilator"]
    assert icarus["flits"] > 0
    assert icarus == verilator

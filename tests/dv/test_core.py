"""DV regression of one CIM core: every cocotb test of tb/core/tests.py on both simulators.

Each cocotb test is its own pytest item (so pytest-xdist spreads them and the JUnit report
lists them one by one), parametrised over simulator and core geometry. The cocotb seed
comes from the ``seed`` fixture; a failure prints it with the command that reproduces it.
"""

import json

import pytest

from cimdv.tb import sim as simflow

MODULE = "cimdv.tb.core.tests"

#: Geometries: rows > cols with 4 lanes; cols > rows with lanes that do not divide the lines.
GEOMETRIES = {
    "16x12": {"rows": 16, "cols": 12, "lanes": 4, "pulse_bits": 8},
    "6x20": {"rows": 6, "cols": 20, "lanes": 8, "pulse_bits": 8},
}
#: The full NeuRRAM-size core (256 x 256, 16 lanes) runs these tests too.
FULL = {"rows": 256, "cols": 256, "lanes": 16, "pulse_bits": 8}
FULL_TESTS = ("random_configs_and_vectors", "saturation_both_signs", "backward_mvm", "illegal_configs_refused")


TESTS = simflow.cocotb_test_names(MODULE)


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
@pytest.mark.parametrize("testcase", TESTS)
def test_core(sim, seed, testcase, geometry):
    result = simflow.run("core", GEOMETRIES[geometry], sim, MODULE, testcase=testcase, seed=seed)
    assert result.passed == (f"{MODULE}.{testcase}",)


@pytest.mark.parametrize("testcase", FULL_TESTS)
def test_core_full_size(sim, seed, testcase):
    result = simflow.run("core", FULL, sim, MODULE, testcase=testcase, seed=seed)
    assert result.passed == (f"{MODULE}.{testcase}",)


def test_core_workload_full_size(sim, seed, tmp_path):
    """The make-sim workload at 256 x 256, NeuRRAM timing shortened, checked exactly."""
    out = tmp_path / "workload.json"
    knobs = {
        "vectors": 2,
        "check_contract": True,
        "timing": {"T_INIT": 2, "T_SAMPLE": 1, "T_INTEG": 3, "T_COMPARE": 2, "T_DECR": 1, "T_NOISE": 1},
    }
    simflow.run(
        "core",
        FULL,
        sim,
        "cimdv.tb.core.workload",
        seed=seed,
        extra_env={"CIMDV_WORKLOAD": json.dumps(knobs), "CIMDV_WORKLOAD_OUT": str(out)},
    )
    report = json.loads(out.read_text())
    assert report["vectors"] == report["outputs"] == report["matches"] == 2
    assert report["mismatches"] == 0 and report["contract_checked"]


def test_plan_lists_every_cocotb_test():
    """The AST scan finds the tests (guards against a silently empty parametrisation)."""
    assert len(TESTS) >= 25
    assert "scoreboard_catches_weight_fault" in TESTS


def test_simulators_agree(seed, tmp_path):
    """Same seed, same workload: Icarus and Verilator give identical outputs in identical cycles."""
    knobs = {
        "vectors": 3,
        "timing": {"T_INIT": 3, "T_SAMPLE": 2, "T_INTEG": 4, "T_COMPARE": 2, "T_DECR": 1, "T_NOISE": 1},
    }
    reports = {}
    for sim in simflow.SIMULATORS:
        out = tmp_path / f"{sim}.json"
        simflow.run(
            "core",
            GEOMETRIES["16x12"],
            sim,
            "cimdv.tb.core.workload",
            seed=seed,
            extra_env={"CIMDV_WORKLOAD": json.dumps(knobs), "CIMDV_WORKLOAD_OUT": str(out)},
        )
        reports[sim] = json.loads(out.read_text())
    icarus, verilator = reports["icarus"], reports["verilator"]
    assert icarus["matches"] == verilator["matches"] == 3
    assert icarus["outputs_sha256"] == verilator["outputs_sha256"]
    assert icarus["sim_cycles"] == verilator["sim_cycles"]

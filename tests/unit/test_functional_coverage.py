"""Functional coverage model (cimdv.tb.coverage.functional): bin derivation, sampling, export, merge, waivers.

Every test samples into its own :class:`FunctionalCoverage` prefix of cocotb-coverage's global database, so
tests do not see each other's hits; exports are keyed under ``cimdv`` whatever the prefix.
"""

import itertools
import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

from cimdv.model.encoding import CoreConfig, config_errors
from cimdv.rtl.core.layouts import CoreState, ProgOutcome, ProgState
from cimdv.rtl.host.protocol import Opcode, Status
from cimdv.tb.coverage import functional as fc
from cimdv.tb.noc.model import MeshModel, tile
from cimdv.tb.noc.scoreboard import UNCONTENDED, PacketScoreboard
from cimdv.tb.noc.traffic import TrafficGenerator
from cimdv.tb.testplan import load_testplan

_ids = itertools.count()


def fresh(**kw):
    """A coverage instance of its own (unique prefix) with the core groups."""
    return fc.FunctionalCoverage(f"t{next(_ids)}").use_core(**kw)


def cfg(**kw):
    base = dict(rows=4, cols=6, backward=False, signed=True, in_bits=4, out_bits=8, pulse_mult=1, max_count=127)
    return CoreConfig(**(base | kw))


def hits(cov, group, item):
    return cov.groups[group].hits()[item]


# ---- bin derivation ---------------------------------------------------------------------------


def test_input_bins_follow_the_field_and_the_in_bits_rule():
    spec = fc.group_specs()["core_input_cg"]
    planned = spec.planned()
    assert planned["in_bits"] == [f"in_bits={v}" for v in range(1, 9)]
    cross = set(planned["in_x_signedness_x_direction"])
    # Exactly the combinations config_errors() accepts: signed needs a sign bit and one magnitude bit.
    want = {
        f"in_bits={v} x {'signed' if s else 'unsigned'} x {d}"
        for v in range(16)
        for s in (False, True)
        for d in ("forward", "backward")
        if "IN_BITS" not in config_errors(rows=1, cols=1, in_bits=v, signed=s)
    }
    assert cross == want
    assert len(cross) == 30 and "in_bits=1 x signed x forward" not in cross


def test_output_cross_ignores_what_the_rules_forbid():
    planned = fc.group_specs()["core_output_cg"].planned()
    cross = set(planned["out_x_saturation_x_mask"])
    assert planned["out_bits"] == [f"out_bits={v}" for v in range(1, 9)]
    # 1-bit outputs allow MAX_COUNT 0 only: no saturation; no neuron converted: no saturation.
    assert "out_bits=1 x sat_positive x mask_all" not in cross
    assert "out_bits=5 x sat_negative x mask_none" not in cross
    assert {"out_bits=1 x sat_none x mask_none", "out_bits=2 x sat_negative x mask_partial"} <= cross
    assert len(cross) == 8 * 3 * 3 - (3 * 2 + 7 * 2)


@pytest.mark.parametrize(
    ("pulse_bits", "labels"),
    [
        (8, ["1", "2..3", "4..7", "8..15", "16..31", "32..63", "64..127", "128..254", "255"]),
        (4, ["1", "2..3", "4..7", "8..14", "15"]),
        (2, ["1", "2", "3"]),
    ],
)
def test_pulse_buckets_span_one_to_the_counter_max(pulse_bits, labels):
    buckets = fc.pulse_buckets(pulse_bits)
    assert [b[0] for b in buckets] == [f"pulse_mult={x}" for x in labels]
    covered = [v for _, lo, hi in buckets for v in range(lo, hi + 1)]
    assert covered == list(range(1, 2**pulse_bits))
    assert fc.pulse_bucket(0, pulse_bits) is None and fc.pulse_bucket(2**pulse_bits, pulse_bits) is None


@pytest.mark.parametrize(
    ("count", "out_bits", "bucket"),
    [
        (0, 8, "count_0_1"),
        (1, 8, "count_0_1"),
        (2, 8, "count_low"),
        (31, 8, "count_low"),
        (32, 8, "count_mid"),
        (95, 8, "count_mid"),
        (96, 8, "count_high"),
        (126, 8, "count_high"),
        (127, 8, "count_max"),
        (7, 4, "count_max"),
        (6, 4, "count_high"),
        (1, 2, "count_0_1"),
    ],
)
def test_count_buckets_are_relative_to_the_output_width(count, out_bits, bucket):
    assert fc.count_bucket(count, out_bits) == bucket
    assert fc._count_buckets(np.array([count]), out_bits) == {bucket}


def test_classifiers():
    assert fc.vector_kind([0, 0], (-7, 7)) == "zero"
    assert fc.vector_kind([7, 7], (-7, 7)) == "all_max"
    assert fc.vector_kind([-7, -7], (-7, 7)) == "all_min"
    assert fc.vector_kind([0, 7], (-7, 7)) is None
    assert fc.mask_kind([True, True]) == "mask_all"
    assert fc.mask_kind([True, False]) == "mask_partial"
    assert fc.mask_kind([False, False]) == "mask_none"
    assert fc.saturation_kinds(np.array([0, 1]), np.array([1, 1])) == {"sat_positive", "sat_negative"}
    assert fc.saturation_kinds(np.array([0, 1]), np.array([0, 0])) == {"sat_none"}
    assert [fc.iteration_bucket(i, 3) for i in range(5)] == [
        "iterations=0",
        "iterations=1",
        "iterations=2..limit-1",
        "iterations=limit",
        "iterations>limit",
    ]
    assert fc.iteration_bucket(1, 0) == "iterations>limit"
    assert fc.endpoint_label(tile(2, 1)) == "t(2,1)" and fc.endpoint_label(("W", 0)) == "W0"


def test_enum_groups_take_every_member():
    specs = fc.group_specs()
    reset = specs["reset_state_cg"].planned()
    assert reset["core_state"] == [s.name for s in CoreState]
    assert reset["prog_state"] == [s.name for s in ProgState]
    # NONE is PROG_RESULT.outcome's reset value ("no command yet"), never the end of a command.
    assert specs["prog_outcome_cg"].planned()["outcome"] == [o.name for o in ProgOutcome if o != ProgOutcome.NONE]
    assert specs["host_status_cg"].planned()["status"] == [s.name for s in Status]
    assert "CONFIG" not in specs["core_errors_cg"].planned()["error"]
    assert len(specs["core_errors_cg"].planned()["error"]) == 18


def test_noc_bins_follow_the_reference_routing():
    mesh = MeshModel(3, 3, "xy", [("W", 0), ("S", 1)])
    specs = fc.group_specs(mesh=mesh)
    cross = specs["noc_traffic_cg"].planned()["source_x_destination_x_contention"]
    reachable = [(s, d) for s in mesh.endpoints for d in mesh.endpoints if mesh.reachable(s, d)]
    assert len(cross) == 2 * len(reachable) < 2 * len(mesh.endpoints) ** 2
    assert len(specs["noc_multicast_cg"].planned()["rectangle"]) == 9
    yx = fc.group_specs(mesh=MeshModel(4, 2, "yx", [("S", 3), ("W", 0)]))
    assert yx["noc_multicast_cg"].planned()["rectangle"] == ["1x1"]  # yx refuses every multicast


def test_chip_sizes_come_from_the_grid():
    planned = fc.group_specs(grid=(2, 2))["chip_mvm_cg"].planned()
    assert planned["cores"] == ["cores=1", "cores=2", "cores=4"]
    assert len(planned["cores_x_mode"]) == 12
    assert fc.group_specs(grid=(3, 2))["chip_mvm_cg"].planned()["cores"] == [f"cores={n}" for n in (1, 2, 3, 4, 6)]


def test_covergroup_names_match_the_specs_and_the_plan():
    specs = fc.group_specs(mesh=MeshModel(2, 2, "xy", [("W", 0)]), grid=(2, 2))
    assert set(specs) == set(fc.covergroup_names())
    assert set(fc.covergroup_names()) == set(load_testplan().covergroup_names())
    assert all(name.endswith("_cg") for name in fc.covergroup_names())


# ---- sampling ------------------------------------------------------------------------------------


def test_sampling_puts_hits_in_the_right_bins():
    cov = fresh()
    c = cfg(backward=True, in_bits=3, out_bits=4, max_count=7, out_mask=(True, True, False, True, True, True))
    cov.sample_input(c, np.zeros(c.n_in, dtype=int))
    assert hits(cov, "core_input_cg", "in_x_signedness_x_direction")["in_bits=3 x signed x backward"] == 1
    assert sum(hits(cov, "core_input_cg", "in_x_signedness_x_direction").values()) == 1
    assert hits(cov, "input_extremes_cg", "vector_x_signedness")["zero x signed"] == 1
    assert hits(cov, "pulse_mult_cg", "pulse_mult")["pulse_mult=1"] == 1
    # One output vector: neuron 0 saturated positive, 1 saturated negative, 2 masked out, 3 count 4 negative.
    sign = np.array([0, 1, 1, 1])
    count = np.array([7, 7, 7, 4])
    sat = np.array([1, 1, 1, 0])
    cov.sample_output(c, sign, count, sat)
    cross = hits(cov, "core_output_cg", "out_x_saturation_x_mask")
    assert cross["out_bits=4 x sat_positive x mask_partial"] == 1
    assert cross["out_bits=4 x sat_negative x mask_partial"] == 1
    assert sum(cross.values()) == 2
    counts = hits(cov, "count_buckets_cg", "count_negative")
    assert counts["count_max"] == 1 and counts["count_mid"] == 1 and sum(counts.values()) == 2
    assert hits(cov, "count_buckets_cg", "count_positive") == dict.fromkeys(fc.COUNT_BUCKETS, 0) | {"count_max": 1}


def test_errors_resets_outcomes_and_host_statuses_are_sampled():
    cov = fresh()
    cov.sample_error_register((1 << 3) | (1 << 15))
    assert {k for k, v in hits(cov, "core_errors_cg", "error").items() if v} == {"PULSE_OVF", "PROG_LOCKED"}
    cov.sample_reset(CoreState.DECREMENT.value, ProgState.IDLE.value)
    assert hits(cov, "reset_state_cg", "core_state")["DECREMENT"] == 1
    cov.sample_prog_result(ProgOutcome.FAIL_HIGH.value, 3, 2)
    cov.sample_prog_result(ProgOutcome.ABORTED.value)
    assert hits(cov, "prog_outcome_cg", "iterations")["iterations>limit"] == 1
    assert hits(cov, "prog_outcome_cg", "outcome")["ABORTED"] == 1
    cov.use_grid(2, 2)
    cov.sample_host(Opcode.MVM.value, Status.OK, rect=(0, 0, 1, 0), per_core=True, reduce=True)
    cov.sample_host(Opcode.PING.value, Status.BAD_CRC)
    assert hits(cov, "chip_mvm_cg", "cores_x_mode")["cores=2 x per_core_reduce"] == 1
    assert hits(cov, "host_status_cg", "status")["BAD_CRC"] == 1


def test_noc_scoreboard_samples_pairs_contention_shapes_and_drops():
    mesh = MeshModel(2, 2, "xy", [("W", 0)])
    cov = fc.FunctionalCoverage(f"t{next(_ids)}")
    board = PacketScoreboard(mesh, coverage=cov)
    gen = TrafficGenerator(mesh, random.Random(1))
    words = gen.unicast(tile(0, 0), tile(1, 1), length=1).words
    for i, data in enumerate(words):
        board.injected(tile(0, 0), {"data": data, "last": int(i == len(words) - 1)}, 10)
    routers = mesh.route(tile(0, 0), 1, 1).deliveries[tile(1, 1)]
    for i, data in enumerate(words):
        board.ejected(tile(1, 1), {"data": data, "last": int(i == len(words) - 1)}, 10 + UNCONTENDED(routers) + 1 + i)
    cross = hits(cov, "noc_traffic_cg", "source_x_destination_x_contention")
    assert cross["t(0,0) x t(1,1) x contended"] == 1 and sum(cross.values()) == 1
    assert hits(cov, "noc_multicast_cg", "rectangle_x_from")["1x1 x tile"] == 1
    words = gen.packet(tile(0, 0), (1, 0, 0, 0)).words  # empty rectangle: refused
    for i, data in enumerate(words):
        board.injected(tile(0, 0), {"data": data, "last": int(i == len(words) - 1)}, 50)
    assert hits(cov, "noc_drops_cg", "drop_x_from")["refused x tile"] == 1


# ---- export, merge, waivers ------------------------------------------------------------------------


def test_merge_adds_hits_and_a_missing_bin_is_a_hole(tmp_path):
    a, b = fresh(), fresh()
    zero = cfg(signed=False, in_bits=2)
    a.sample_input(zero, np.zeros(4, dtype=int))
    b.sample_input(zero, np.zeros(4, dtype=int))
    b.sample_input(cfg(), np.full(4, 7))
    fa, fb = fc.export(tmp_path / "a.yml", a), fc.export(tmp_path / "b.yml", b)
    out = tmp_path / "merged.yml"
    result = fc.merge_functional([fa, fb], out, None)
    merged = fc.read_database(out)
    assert merged["input_extremes_cg"]["vector_x_signedness"]["zero x unsigned"] == 2
    assert merged["input_extremes_cg"]["vector_x_signedness"]["all_max x signed"] == 1
    group = result["groups"]["input_extremes_cg"]
    assert group["bins"] == 10 and group["hit"] == 6  # zero, all_max, both signednesses, two cross bins
    assert "vector_x_signedness/all_min x signed" in group["holes"]
    assert result["pct"] < 100.0 and result["hit"] < result["bins"]
    # Every planned bin is in the export, hit or not, so holes are visible.
    exported = yaml.safe_load(fa.read_text())
    assert len(exported["cimdv.core_input_cg.in_x_signedness_x_direction"]["bins:_hits"]) == 30
    # Groups no run instantiated (NoC, chip) are holes too: the gate can fail.
    assert result["groups"]["noc_traffic_cg"]["holes"] == [fc.NOT_SAMPLED]
    # The merged file merges again (idempotent layout).
    again = fc.merge_functional([out], tmp_path / "again.yml", None)
    assert again["hit"] == result["hit"] and again["bins"] == result["bins"]


def test_bins_unite_over_geometries(tmp_path):
    small, big = fc.FunctionalCoverage(f"t{next(_ids)}"), fc.FunctionalCoverage(f"t{next(_ids)}")
    small.use_grid(1, 1).sample_host(Opcode.MVM.value, Status.OK, rect=(0, 0, 0, 0))
    big.use_grid(2, 2)
    files = [fc.export(tmp_path / "s.yml", small), fc.export(tmp_path / "b.yml", big)]
    result = fc.merge_functional(files, tmp_path / "m.yml", None)
    chip = result["groups"]["chip_mvm_cg"]
    assert chip["bins"] == 3 + 4 + 12 and "cores_x_mode/cores=1 x multicast" not in chip["holes"]


def test_waivers_remove_bins_from_the_figures(tmp_path):
    cov = fresh()
    path = fc.export(tmp_path / "a.yml", cov)
    waivers = tmp_path / "w.toml"
    waivers.write_text(
        textwrap.dedent(
            """
            [[code]]
            file = "whatever"

            [[functional]]
            covergroup = "input_extremes_cg"
            bin = "vector_x_signedness/all_m* x signed"
            reason = "test: waive the two all-max/all-min signed bins"

            [[functional]]
            covergroup = "host_status_cg"
            bin = "status/NO_SUCH_STATUS"
            reason = "test: matches nothing"
            """
        )
    )
    plain = fc.merge_functional([path], tmp_path / "m1.yml", None)
    waived = fc.merge_functional([path], tmp_path / "m2.yml", waivers)
    g0, g1 = plain["groups"]["input_extremes_cg"], waived["groups"]["input_extremes_cg"]
    assert g1["bins"] == g0["bins"] - 2 and g1["waived"] == 2 and waived["waived"] == 2
    assert not any("all_m" in h and "x signed" in h for h in g1["holes"])
    assert waived["unused_waivers"] == ["host_status_cg: status/NO_SUCH_STATUS"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[functional]]\ncovergroup = "core_input_cg"\nbin = "in_bits/*"\n', "non-empty string 'reason'"),
        ('[[functional]]\ncovergroup = "core_input_cg"\nbin = "in_bits/*"\nreason = "  "\n', "'reason'"),
        ('[[functional]]\ncovergroup = "nope_cg"\nbin = "x"\nreason = "r"\n', "covergroup 'nope_cg'"),
        ('[[functional]]\ncovergroup = "core_input_cg"\nbin = ""\nreason = "r"\n', "'bin'"),
        ('[[functional]]\ncovergroup = "core_input_cg"\nbin = "x"\nreason = "r"\nowner = "me"\n', "unknown field"),
        ('functional = "all"\n', "array of tables"),
        ("[[functional]\n", "not valid TOML"),
    ],
)
def test_malformed_waivers_are_refused(tmp_path, body, message):
    path = tmp_path / "w.toml"
    path.write_text(body)
    with pytest.raises(ValueError, match="waivers") as info:
        fc.load_waivers(path)
    assert message in str(info.value)


def test_the_project_waiver_file_loads():
    for waiver in fc.load_waivers(fc.WAIVERS_PATH):
        assert waiver.reason and waiver.covergroup in fc.covergroup_names()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("a: [unclosed", "not valid YAML"),
        ("- 1\n- 2\n", "top level is list"),
        ("other.core_input_cg.x:\n  bins:_hits: {a: 1}\n", "not under 'cimdv'"),
        ("cimdv.core_input_cg.x:\n  size: 1\n", "no 'bins:_hits'"),
        ("cimdv.core_input_cg.x:\n  bins:_hits: {a: -1}\n", "not a count"),
        ("cimdv.nope_cg.x:\n  bins:_hits: {a: 1}\n", "unknown covergroup 'nope_cg'"),
    ],
)
def test_bad_databases_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.yml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match="files") as info:
        fc.merge_functional([path], tmp_path / "out.yml", None)
    assert message in str(info.value)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="files"):
        fc.merge_functional([], tmp_path / "out.yml", None)
    with pytest.raises(ValueError, match="files"):
        fc.merge_functional(tmp_path / "a.yml", tmp_path / "out.yml", None)
    with pytest.raises(ValueError, match="prefix"):
        fc.FunctionalCoverage("a.b")
    with pytest.raises(ValueError, match="cols"):
        fc.FunctionalCoverage(f"t{next(_ids)}").use_grid(0, 2)
    cov = fresh()
    with pytest.raises(ValueError, match="pulse_bits"):
        cov.use_core(pulse_bits=4)


def test_a_process_exports_at_exit(tmp_path):
    """The export hook (atexit; the cocotb runs rely on the same) writes every planned bin at exit."""
    out = tmp_path / "run.yml"
    code = textwrap.dedent(
        """
        import numpy as np
        from cimdv.model.encoding import CoreConfig
        from cimdv.tb.coverage import functional
        cov = functional.model().use_core()
        cfg = CoreConfig(rows=2, cols=2, backward=False, signed=True, in_bits=4, out_bits=8, pulse_mult=1,
                         max_count=127)
        cov.sample_input(cfg, np.zeros(2, dtype=int))
        raise SystemExit(3)  # a failing run exports too
        """
    )
    env = dict(os.environ, CIMDV_FCOV_FILE=str(out))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 3, done.stderr
    db = fc.read_database(out)
    assert db["input_extremes_cg"]["vector_x_signedness"]["zero x signed"] == 1
    assert set(db) >= {"core_errors_cg", "reset_state_cg", "host_status_cg", "prog_outcome_cg"}

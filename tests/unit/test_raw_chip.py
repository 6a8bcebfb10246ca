"""The chip's raw-speed baseline (tb/flows/raw_chip.py) on a small twin chip: the C++ harness runs the
workload with no Python in the loop and its responses match the golden model; cocotb's run of the
same commands file gives the same responses word for word; the checker catches a wrong response.

How fast either run is belongs to ``make bench`` (``chip_mvm``), never to a test.
"""

import dataclasses

import pytest

from cimdv.tb.chip.host import crc32
from cimdv.tb.chip.workload import FLAGS, ChipWorkload, poll_again, read_commands, read_responses
from cimdv.tb.flows import raw_chip


@pytest.fixture(scope="module")
def workload():
    return ChipWorkload(raw_chip.SMALL_CHIP, seed=3, **raw_chip.SMALL_SIZES)


@pytest.fixture(scope="module")
def runs(workload, tmp_path_factory):
    """The raw and the cocotb run of one commands file: ``{name: (responses, report)}``."""
    tmp = tmp_path_factory.mktemp("raw_chip")
    commands = workload.write_commands(tmp / "commands.txt")
    out = {}
    for name, run in (("raw", raw_chip.run_raw), ("cocotb", raw_chip.run_cocotb)):
        path = tmp / f"responses-{name}.txt"
        report = run(commands, path, raw_chip.SMALL_CHIP)
        out[name] = (read_responses(path), report)
    return out


def test_commands_file_round_trips(workload, tmp_path):
    records = read_commands(workload.write_commands(tmp_path / "c.txt"))
    assert len(records) == len(workload.records)
    for got, want in zip(records, workload.records, strict=True):
        assert dataclasses.replace(got, expect=want.expect) == want
    assert workload.phases == ["program", "mvm"]
    # Every cell of every core is programmed and read back with a poll.
    polled = [r for r in workload.records if r.poll_word >= 0]
    assert len(polled) == len(workload.cores) * workload.core_rows * workload.core_cols


def test_malformed_commands_file_is_refused(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("something else\n")
    with pytest.raises(ValueError, match="not a 'cimdv-chip-workload 1' file"):
        read_commands(path)
    path.write_text("cimdv-chip-workload 1\nphase p\ncmd -1 0 0 1 3 1 2\n")
    with pytest.raises(ValueError, match="malformed line"):
        read_commands(path)


def test_poll_rule():
    record = ChipWorkload(raw_chip.SMALL_CHIP, rounds=1, reductions=1).records[-1]
    assert not poll_again(record, [0, 5, 0, 0])  # no poll on an MVM
    prog = next(r for r in ChipWorkload(raw_chip.SMALL_CHIP, rounds=1, reductions=1).records if r.poll_word >= 0)
    assert poll_again(prog, [0, 5, 0, 0])  # outcome NONE: read again
    assert not poll_again(prog, [0, 0x1300, 0, 0])  # PASS, reading 0x13


def test_raw_run_matches_the_model(workload, runs):
    responses, report = runs["raw"]
    check = workload.check(responses, report["flags"])
    assert check.mismatches == 0, check.details
    assert check.responses == len(workload.records)
    assert check.cells == len(workload.cores) * workload.core_rows * workload.core_cols
    n_mvm = 2 * workload.rounds * workload.batch * len(workload.cores) + workload.reductions
    assert check.outputs == n_mvm * workload.cfg.n_out
    assert set(report["flags"]) == set(FLAGS)
    for phase in ("program", "mvm"):
        p = report["phases"][phase]
        assert p["cycles"] > 0 and p["wall_s"] > 0 and p["commands"] <= p["sends"]
    # Polls happened (a write-verify outlasts a CSR round trip), and each one was counted.
    assert report["phases"]["program"]["sends"] > report["phases"]["program"]["commands"]


def test_cocotb_run_gives_the_same_responses(workload, runs):
    (raw, _), (cocotb, report) = runs["raw"], runs["cocotb"]
    assert workload.check(cocotb, report["flags"]).mismatches == 0
    assert [words for _, words in cocotb] == [words for _, words in raw]


def _corrupt(responses, index, word, value):
    """``responses`` with one word changed and the CRC recomputed (the content is wrong, the framing is not)."""
    out = [(tries, list(words)) for tries, words in responses]
    words = out[index][1]
    words[word] = value
    words[-1] = crc32(words[:-1])
    return out


def test_checker_catches_a_wrong_response(workload, runs):
    responses, report = runs["raw"]
    kinds = [r.expect[0] for r in workload.records]
    # One output element of one core's block: count field of the first element (bits 7:0) off by one.
    k = kinds.index("blocks")
    word = responses[k][1][2]
    bad = workload.check(_corrupt(responses, k, 2, word & ~0xFF | ((word & 0xFF) + 1) & 0xFF), report["flags"])
    assert bad.mismatches == 1 and "differs at neurons [0]" in bad.details[0], bad.details
    # One reduced sum.
    k = kinds.index("reduced")
    bad = workload.check(_corrupt(responses, k, 1, responses[k][1][1] ^ 1), report["flags"])
    assert bad.mismatches == 1 and "reduced sums differ" in bad.details[0], bad.details
    # One programmed cell whose verify reading is not its weight's.
    k = kinds.index("prog")
    bad = workload.check(_corrupt(responses, k, 1, responses[k][1][1] ^ 0x200), report["flags"])
    assert bad.mismatches == 1 and "reading" in bad.details[0], bad.details
    # A broken CRC, a missing response, a raised flag.
    words = list(responses[0][1])
    words[-1] ^= 1
    assert workload.check([(1, words), *responses[1:]], report["flags"]).mismatches == 1
    assert workload.check(responses[:-1], report["flags"]).mismatches == 1
    assert workload.check(responses, {**report["flags"], "twin_overrun": 1}).mismatches == 1


def test_checker_catches_a_wrong_weight(runs):
    """The model with one weight changed disagrees with the chip."""
    responses, report = runs["raw"]
    other = ChipWorkload(raw_chip.SMALL_CHIP, seed=3, **raw_chip.SMALL_SIZES)
    xy = other.cores[0]
    other.weights[xy][0, 0] = (other.weights[xy][0, 0] + 1) % 16
    other.models[xy] = type(other.models[xy])(other.weights[xy], other.macro)
    bad = other.check(responses, report["flags"])
    assert bad.mismatches >= 1 and any("cell (0, 0)" in d for d in bad.details), bad.details


def test_bench_case_reports_both_speeds_side_by_side(tmp_path):
    r = raw_chip.bench(repeats=2, params=raw_chip.SMALL_CHIP, sizes=raw_chip.SMALL_SIZES, scale=0.5, out_dir=tmp_path)
    assert r["mismatches"] == 0, r["mismatch_details"]
    assert r["workload"]["rounds"] == 1 and r["workload"]["reductions"] == 1
    assert r["chip_mvm_raw_cycles_per_s"] > 0 and r["chip_mvm_cocotb_cycles_per_s"] > 0
    assert r["ratio_to_raw"] == pytest.approx(r["chip_mvm_cocotb_cycles_per_s"] / r["chip_mvm_raw_cycles_per_s"])
    assert len(r["ratio_samples"]) == 2 and len(r["samples"]["raw"]["mvm"]) == 2
    # The same commands take the same cycles from either harness (up to a cycle of alignment per command).
    for phase, cycles in r["cycles_per_workload"].items():
        assert abs(cycles - r["cocotb_cycles_per_workload"][phase]) <= r["workload"]["commands"], phase
    assert sorted(p.name for p in tmp_path.iterdir()) == ["commands.txt", "responses-cocotb.txt", "responses-raw.txt"]

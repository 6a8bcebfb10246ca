"""The clock-only harness (no Python in the loop) on the stand-in counter, on both simulators."""

import pytest

from cimdv.tb import sim as simflow
from cimdv.tb.flows import clock_only
from cimdv.tb.selftest import make_counter


@pytest.fixture(scope="module")
def counter_verilog():
    path, _ = simflow.generate_verilog("counter", {"width": 8}, tops={"counter": make_counter})
    return path


def test_port_declarations(counter_verilog):
    ports = clock_only.top_port_decls(counter_verilog.read_text(), "counter")
    assert sorted(ports) == [
        ("input", "clk", 1),
        ("input", "en", 1),
        ("input", "rst", 1),
        ("output", "count", 8),
        ("output", "wrap", 1),
    ]


def test_cycles_per_second(counter_verilog, sim):
    result = clock_only.measure(counter_verilog, "counter", sim, 20_000)
    # A well-formed measurement; how fast it is belongs to make bench, not to a test.
    assert result.cycles == 20_000
    assert result.wall_s > 0 and result.cycles_per_s == pytest.approx(20_000 / result.wall_s)
    assert result.build_dir.is_relative_to(simflow.BUILD_ROOT / "clock_only" / sim)
    assert clock_only.clock_only_cycles_per_s(counter_verilog, "counter", sim, 10_000) > 0


def test_harness_needs_a_clock():
    with pytest.raises(ValueError, match="no clk port"):
        clock_only.harness_text([("input", "a", 1)], "comb")

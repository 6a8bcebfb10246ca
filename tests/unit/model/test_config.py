"""One serialisable model configuration: round trips, unknown keys, the pipeline it drives."""

import dataclasses

import numpy as np
import pytest

from cimdv.model.array import ArrayParams
from cimdv.model.config import MappingParams, ModelConfig, build_core
from cimdv.model.encoding import CoreConfig
from cimdv.model.physical import PhysicalParams

FULL = ModelConfig(
    mapping=MappingParams(scheme="offset", percentile=100.0, bias_rows=1),
    array=ArrayParams(g_tol_uS=1.0, relax_time_s=86400.0, stuck_on_fraction=0.001, leaky_rows=1),
    core=PhysicalParams(voltage_mode=True, read_noise_uS=0.4, integrator_sat_V=0.5, mode="ternary"),
    program_mode="write_verify",
    seed=7,
)


@pytest.mark.parametrize("config", [ModelConfig(), FULL], ids=["ideal", "full"])
def test_round_trips_through_json_and_toml(config):
    assert ModelConfig.from_json(config.to_json()) == config
    assert ModelConfig.from_toml(config.to_toml()) == config
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_unknown_sections_and_keys_are_named():
    with pytest.raises(ValueError, match=r"unknown ModelConfig section\(s\) \['cores'\]"):
        ModelConfig.from_dict({"cores": {}})
    with pytest.raises(ValueError, match=r"unknown PhysicalParams key\(s\) \['read_noise'\]"):
        ModelConfig.from_dict({"core": {"read_noise": 0.1}})
    with pytest.raises(ValueError, match=r"unknown ArrayParams key\(s\) \['gtol'\]"):
        ModelConfig.from_toml("[array]\ngtol = 1.0\n")
    with pytest.raises(ValueError, match="program_mode must be one of"):
        ModelConfig(program_mode="magic")
    with pytest.raises(ValueError, match="scheme must be one of"):
        MappingParams(scheme="twos")
    with pytest.raises(TypeError, match="core must be a PhysicalParams"):
        ModelConfig(core=ArrayParams())


def test_ideal_pipeline_reproduces_the_targets_and_the_ideal_product():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((20, 8))
    built = build_core(w, ModelConfig(core=PhysicalParams(delta_V=1.0)))
    assert np.array_equal(built.g_uS, built.targets_uS) and built.report["floored"] == 0
    rows = built.targets_uS.shape[0]
    cfg = CoreConfig(
        rows=rows,
        cols=8,
        backward=False,
        signed=True,
        in_bits=4,
        out_bits=8,
        pulse_mult=1,
        max_count=127,
        line_modes=tuple(int(m) for m in built.mapping.line_modes),
    )
    x = rng.integers(-7, 8, 20)
    integ = built.core.integrate(cfg, built.mapping.inputs(x))
    np.testing.assert_allclose(integ, 2 * built.mapping.scale_uS * (x @ w), rtol=1e-12, atol=1e-9)


def test_pipeline_is_deterministic_and_write_verify_reports_programming():
    w = np.random.default_rng(1).standard_normal((32, 16))
    config = dataclasses.replace(FULL, mapping=MappingParams(), core=PhysicalParams(voltage_mode=True))
    a, b = build_core(w, config), build_core(w, config)
    assert np.array_equal(a.g_uS, b.g_uS)
    assert "fail_fraction" in a.report["programming"] and len(a.report["bad_rows"]) == 1
    c = build_core(w, dataclasses.replace(config, seed=8))
    assert not np.array_equal(a.g_uS, c.g_uS)

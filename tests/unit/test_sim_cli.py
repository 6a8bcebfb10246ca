"""``make sim``'s command line (cimdv-sim): bad options are named with the valid ones; a model-only run
writes the summary with every key the issue lists, the mapping table and the plots."""

import json

import pytest

from cimdv.tb.flows import sim


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--bogus"], "unrecognized arguments: --bogus", id="unknown"),
        pytest.param(["--sim", "xcelium"], "invalid choice: 'xcelium' (choose from 'icarus', 'verilator')", id="sim"),
        pytest.param(["--timing", "slow"], "invalid choice: 'slow'", id="timing"),
        pytest.param(["--seeds", "0"], "expected a positive integer, not 0", id="seeds"),
    ],
)
def test_bad_options_list_the_valid_ones(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        sim.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "valid options: --help --out-dir --rtl-images --seed --seeds --sim --sweep-seeds --timing" in err


def test_model_only_run_writes_everything(tmp_path, capsys):
    assert sim.main(["--rtl-images", "0", "--seeds", "2", "--sweep-seeds", "1", "--out-dir", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    for key in (
        "accuracy_float",
        "accuracy_quantized",
        "accuracy_chip_mean",
        "accuracy_chip_std",
        "rtl_images",
        "rtl_agreement",
        "rtl_accuracy",
        "wall_s",
    ):
        assert key in s
    assert s["rtl_images"] == 0 and s["rtl_agreement"] is None
    assert 0.9 < s["accuracy_quantized"] <= 1 and 0.9 < s["accuracy_chip_mean"] <= 1
    assert len(s["weight_noise_sweep"]) == len(sim.WEIGHT_NOISE)
    assert len(s["without_noise_training"]["weight_noise_sweep"]) == len(sim.WEIGHT_NOISE)
    for name in (
        "mapping.json",
        "mapping.md",
        "network.json",
        "confusion_matrix.png",
        "accuracy_vs_weight_noise.png",
        "adc_counts.png",
    ):
        assert (tmp_path / name).stat().st_size > 0
    assert "(b) quantised, ideal" in capsys.readouterr().out

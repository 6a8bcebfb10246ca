"""make model-report: the report has the keys the issue names, within their published bands."""

import json

from cimdv.tb.flows.model_report import build_report


def test_report_keys_and_ranges(tmp_path):
    report = build_report(seeds=(1,), plots=True, out_dir=tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    for key, published in (("rel_error_verify_only", 0.04), ("rel_error_relax_1s", 0.10), ("rel_error_relax_1d", 0.17)):
        assert 0.75 * published <= saved[key] <= 1.25 * published, (key, saved[key])
        assert saved[f"{key}_within_tolerance"]
    assert 0.002 <= saved["program_fail_fraction"] <= 0.008
    for name in ("adc_transfer", "mvm_error_histogram", "error_vs_relaxation"):
        path = tmp_path / f"{name}.png"
        assert path.exists() and path.stat().st_size > 10_000, name
    assert report["plots"]["adc_transfer"] == str(tmp_path / "adc_transfer.png")

"""The full-size demo exactly as ``make demo`` runs it (slow: minutes on 2 cores)."""

from __future__ import annotations

import json

import pytest

from cryonet.demo import STEPS, run_demo


@pytest.mark.slow
def test_full_demo_default_configuration(tmp_path):
    res = run_demo(tmp_path / "demo-output", progress=False)
    assert list(res.ran) == [s.name for s in STEPS]
    text = res.report.read_text()
    assert "## Transfer to Mont Blanc" in text and "## Permutation channel importance" in text
    ev = res.records["evaluate"]
    # a useful model, not a fixed number: far better than the majority class on every run
    assert ev["miou"] > 0.5, ev
    assert ev["overall_accuracy"] > 0.8, ev
    tr = res.records["transfer"]
    assert tr["miou_after"] >= tr["miou_before"] - 0.02, tr
    rec = json.loads((tmp_path / "demo-output" / "steps" / "report.json").read_text())
    assert rec["step"] == "report"
    # a second call reuses every step
    again = run_demo(tmp_path / "demo-output", progress=False)
    assert again.ran == ()

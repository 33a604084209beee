"""Report figures and Markdown/HTML output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryonet.plots import false_colour_composite, plot_class_map, plot_confusion_matrix
from cryonet.report import Figure, Section, write_report
from cryonet.tables import markdown_table

PNG = b"\x89PNG\r\n\x1a\n"


def test_false_colour_composite_matches_percentile_stretch():
    rng = np.random.default_rng(0)
    bands = rng.uniform(0, 0.6, (3, 20, 30))
    bands[1, 0, 0] = np.nan
    rgb = false_colour_composite(bands, percentiles=(5, 95))
    assert rgb.shape == (20, 30, 3)
    for i in range(3):
        v = bands[i]
        lo, hi = np.nanpercentile(v, [5, 95])
        ref = np.clip((v - lo) / (hi - lo), 0, 1)
        ok = np.isfinite(v)
        np.testing.assert_allclose(rgb[..., i][ok], ref[ok])
    assert rgb[0, 0, 1] == 0.0
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        false_colour_composite(bands[:2])


def test_markdown_table_hand_written():
    df = pd.DataFrame(
        {"IoU": [0.5, np.nan], "n": [3, 4]}, index=pd.Index(["clean|ice", "debris"], name="class")
    )
    expected = "| class | IoU | n |\n|---|---|---|\n| clean\\|ice | 0.50 | 3 |\n| debris | – | 4 |"
    assert markdown_table(df, floatfmt=".2f") == expected
    assert markdown_table(df, index=False).startswith("| IoU | n |")


def test_plots_write_images(tmp_path):
    rng = np.random.default_rng(1)
    cmap = rng.integers(0, 5, (24, 32)).astype(np.uint8)
    cmap[:3] = 255
    comp = false_colour_composite(rng.uniform(0, 1, (3, 24, 32)))
    p = plot_class_map(cmap, comp, tmp_path / "map.png", reference=cmap, extent=(0, 320, 0, 240))
    assert p.read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="differ"):
        plot_class_map(cmap[:10], comp, tmp_path / "bad.png")
    cm = np.array([[50, 2, 0, 0, 1], [3, 40, 5, 0, 0], [0, 4, 30, 0, 0], [0, 0, 0, 9, 0], [0] * 5])
    q = plot_confusion_matrix(cm, tmp_path / "cm.png")
    assert q.read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="5 classes"):
        plot_confusion_matrix(np.eye(3), tmp_path / "cm2.png")


def test_write_report_markdown_and_html(tmp_path):
    figs = tmp_path / "figures"
    figs.mkdir()
    img = plot_confusion_matrix(np.eye(5, dtype=int) * 10, figs / "cm.png")
    df = pd.DataFrame({"mIoU": [0.91, 0.88]}, index=pd.Index(["before", "after"], name="stage"))
    sections = [
        Section("Evaluation", text="Test set of 4 patches.", tables=(("Metrics", df),)),
        Section("Figures", figures=(Figure(img, "Confusion matrix"),), notes=("a note",)),
    ]
    out = write_report(tmp_path / "report.md", "Demo report", sections, html=True)
    text = out.read_text()
    assert text.startswith("# Demo report\n")
    assert "## Evaluation" in text and "| before | 0.9100 |" in text
    assert "![Confusion matrix](figures/cm.png)" in text
    assert "- a note" in text
    html = (tmp_path / "report.html").read_text()
    assert "<table>" in html and 'src="figures/cm.png"' in html
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        write_report(
            tmp_path / "r2.md", "x", [Section("s", figures=(Figure(tmp_path / "missing.png"),))]
        )
    assert not (tmp_path / "r2.md").exists()

"""The documentation site builds with warnings as errors (broken links, nav, API references)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "_hooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed")
def test_mkdocs_build_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    site = tmp_path / "site"
    # the generated pages hold what the hooks and mkdocstrings put there
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for command in ("glacierstack cube", "glacierstack synth", "cryonet train", "cryonet predict"):
        assert command in cli, f"CLI reference lacks {command!r}"
    api = (site / "reference" / "cryonet" / "index.html").read_text(encoding="utf-8")
    assert "cryonet.infer.predict" in api
    api = (site / "reference" / "glacierstack" / "index.html").read_text(encoding="utf-8")
    assert "glacierstack.pipeline.build_cube" in api


def test_cli_reference_covers_every_command():
    import typer.main

    from cryonet.cli import app as cryonet_app
    from glacierstack.cli import app as glacierstack_app

    text = _hooks().cli_reference()
    for prog, app in (("glacierstack", glacierstack_app), ("cryonet", cryonet_app)):
        group = typer.main.get_command(app)
        ctx = group.context_class(group, info_name=prog)
        names = group.list_commands(ctx)
        assert names, f"{prog} has no commands"
        for name in names:
            assert f"## `{prog} {name}`" in text, f"{prog} {name} missing from the CLI reference"
    # plain text, not rich boxes printed to the terminal
    assert "╭" not in text


def test_benchmark_results_included(tmp_path):
    hooks = _hooks()
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "b.md").write_text(
        "# B\n\nsee [script](../bench_b.py)\n\n```\n# not a heading\n```\n"
    )
    (results / "a.md").write_text("# A\n\n## Machine\n")
    text = hooks.benchmark_results(tmp_path)
    assert text.index("## A") < text.index("## B")  # sorted, headings demoted one level
    assert "### Machine" in text
    assert "# not a heading" in text and "## not a heading" not in text
    assert "[script]" not in text and "script (`../bench_b.py`)" in text
    (tmp_path / "benchmarks" / "RESULTS.md").write_text("# Merged\n")
    assert hooks.benchmark_results(tmp_path).strip().endswith("## Merged")

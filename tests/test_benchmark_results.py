"""benchmarks/RESULTS.md is the merge of benchmarks/results/*.md, so no edit gets lost."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _check(bench: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(bench / "merge_results.py"), "--check"]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def test_results_md_is_the_merge_of_the_topic_files():
    res = _check(BENCH)
    assert res.returncode == 0, res.stderr


def test_an_edit_made_only_in_results_md_is_caught(tmp_path):
    copy = tmp_path / "benchmarks"
    copy.mkdir()
    shutil.copy(BENCH / "merge_results.py", copy)
    shutil.copytree(BENCH / "results", copy / "results")
    shutil.copy(BENCH / "RESULTS.md", copy)
    assert _check(copy).returncode == 0
    with (copy / "RESULTS.md").open("a") as f:
        f.write("\nA number typed into RESULTS.md only.\n")
    res = _check(copy)
    assert res.returncode != 0 and "benchmarks/results/*.md" in res.stderr

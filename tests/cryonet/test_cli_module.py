"""``python -m cryonet.cli`` works, so ``torchrun ... -m cryonet.cli train`` does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_python_dash_m_runs_the_cli() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "cryonet.cli", "train", "--help"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--cube" in proc.stdout and "torchrun" in proc.stdout


def test_demo_help_states_the_presets_epochs() -> None:
    from typer.testing import CliRunner

    from cryonet.cli import app
    from cryonet.training import load_config

    out = CliRunner().invoke(app, ["demo", "--help"]).output
    text = re.sub(r"[\s\u2502]+", " ", out)  # rich box borders and line wraps -> one space
    assert f"CPU preset: {load_config('cpu').epochs})" in text

"""Worker of the race test: run ``cryonet predict`` for each trial right after a barrier."""

from __future__ import annotations

import sys
from pathlib import Path


def race(barrier, ckpt: str, cube: str, outs: list[str], results) -> None:  # noqa: ANN001
    """For each output: wait at the barrier with the other writer, then predict into it."""
    import torch

    torch.set_num_threads(1)
    from typer.testing import CliRunner

    from cryonet.cli import app

    runner = CliRunner()
    for out in outs:
        barrier.wait(timeout=120)
        res = runner.invoke(
            app,
            ["predict", "--checkpoint", ckpt, "--cube", cube, "--out", out, "--tile-size", "32",
             "--overlap", "8", "--chunk-size", "16", "--device", "cpu", "--torch-threads", "1",
             "--no-progress"],
        )  # fmt: skip
        results.put((Path(ckpt).name, out, res.exit_code, res.output.strip()[-300:]))


if __name__ == "__main__":  # pragma: no cover
    sys.exit("import this module")

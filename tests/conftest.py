"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO / "tests" / "data"
SHARED = Path(os.environ.get("GLACIERSTACK_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Real reference data shipped with the repository (``tests/data``, see its README.md).

    Recorded STAC JSON under ``stac/``, small DEMs, outlines and velocity crops under
    ``oggm/``; always present, so no test skips for missing data in a plain clone.
    """
    return TESTDATA


@pytest.fixture(scope="session")
def shared_realdata() -> Path:
    """Optional extras in ``$GLACIERSTACK_SHARED/realdata`` (files not copied to tests/data)."""
    path = SHARED / "realdata"
    if not path.is_dir():
        pytest.skip(f"optional extra data not found at {path} (set GLACIERSTACK_SHARED)")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests cleanly when no CUDA device is present."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch missing or broken
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

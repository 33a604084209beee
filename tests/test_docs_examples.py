"""Every shell and Python block of README.md and docs/**/*.md runs, so a documented command
can never silently break.

Blocks of one file run in order in one fresh working directory (Python blocks share one
namespace; shell blocks run with ``bash -euo pipefail`` and this interpreter's ``bin`` first on
``PATH``). An HTML comment on the line before a block changes that:

* ``<!-- test: skip REASON -->``: not run (a reason is required: network, a GPU, a cluster...);
* ``<!-- test: slow -->``: run only by the ``slow`` test of the file (``make test-slow``),
  together with everything before it;
* ``<!-- test: fresh -->`` (also ``slow fresh``): run in a new empty working directory, for a
  block that is an alternative to the ones before it (the quickstart's Python after its CLI).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LANGS = {"bash": "shell", "sh": "shell", "shell": "shell", "console": "shell", "python": "python"}
_FENCE = re.compile(r"^```\s*([A-Za-z]+)?\s*$")
_MARK = re.compile(r"^<!--\s*test:\s*(skip|slow|fresh)\b\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a markdown file."""

    path: Path
    line: int
    kind: str
    code: str
    mark: str = ""
    reason: str = ""

    @property
    def fresh(self) -> bool:
        """Run in a new empty working directory."""
        return self.mark == "fresh" or (self.mark == "slow" and self.reason == "fresh")

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The shell and Python blocks of ``path``, with their marks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        kind = LANGS.get((m.group(1) or "").lower())
        if kind:
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            mark = _MARK.match(lines[k]) if k >= 0 else None
            out.append(
                Block(
                    path=path,
                    line=i + 1,
                    kind=kind,
                    code="\n".join(lines[i + 1 : j]) + "\n",
                    mark=mark.group(1) if mark else "",
                    reason=mark.group(2) if mark else "",
                )
            )
        i = j + 1
    return out


ALL = {p: blocks(p) for p in FILES if blocks(p)}


def _ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["MPLBACKEND"] = "Agg"
    return env


def _run_shell(block: Block, cwd: Path) -> None:
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, (
        f"{block.where} failed ({proc.returncode}):\n{block.code}\n"
        f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    )


def _close_clients(ns: dict) -> None:
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover
        return
    for v in list(ns.values()):
        if isinstance(v, Client):
            cluster = v.cluster
            v.close()
            if cluster is not None:
                cluster.close()


def _todo(path: Path, include_slow: bool) -> list[Block]:
    todo = [b for b in ALL[path] if b.mark != "skip"]
    if not include_slow:
        first_slow = next((i for i, b in enumerate(todo) if b.mark == "slow"), len(todo))
        todo = todo[:first_slow]
    return todo


def _run_file(path: Path, cwd: Path, monkeypatch, include_slow: bool) -> int:
    todo = _todo(path, include_slow)
    monkeypatch.chdir(cwd)
    for k, v in _env().items():
        monkeypatch.setenv(k, v)
    ns: dict = {"__name__": "__docs__"}
    try:
        for i, b in enumerate(todo):
            if b.fresh:
                cwd = cwd / f"fresh-{i}"
                cwd.mkdir()
                monkeypatch.chdir(cwd)
            if b.kind == "shell":
                _run_shell(b, cwd)
            else:
                exec(compile(b.code, b.where, "exec"), ns)  # noqa: S102 - our own docs
    finally:
        _close_clients(ns)
    return len(todo)


def test_every_skip_has_a_reason():
    for bs in ALL.values():
        for b in bs:
            assert b.mark != "skip" or len(b.reason) > 5, f"{b.where}: skip without a reason"


def test_the_harness_finds_the_quickstart():
    qs = ALL[ROOT / "docs" / "quickstart.md"]
    kinds = [b.kind for b in qs if b.mark != "skip"]
    assert "shell" in kinds and "python" in kinds
    assert any(
        "glacierstack synth --preset poiqu --size-km 4 --out data/poiqu" in b.code for b in qs
    )


DEFAULT = [p for p in ALL if _todo(p, include_slow=False)]


@pytest.mark.parametrize("path", DEFAULT, ids=_ids(DEFAULT))
def test_docs_blocks_run(path, tmp_path, monkeypatch):
    assert _run_file(path, tmp_path, monkeypatch, include_slow=False) > 0


SLOW = [p for p, bs in ALL.items() if any(b.mark == "slow" for b in bs)]


@pytest.mark.slow
@pytest.mark.parametrize("path", SLOW, ids=_ids(SLOW))
def test_docs_blocks_run_slow(path, tmp_path, monkeypatch):
    _run_file(path, tmp_path, monkeypatch, include_slow=True)

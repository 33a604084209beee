"""The end-to-end demo: two synthetic regions to one report, offline, re-runnable.

``run_demo(out)`` runs the whole pipeline of the toolkit on the embedded synthetic data:

==============  ===================================================================
step            what it does (output under ``out``)
==============  ===================================================================
synth_poiqu     synthetic Poiqu-like region: COGs + static STAC catalog (``regions/poiqu``)
synth_montblanc the same for the Mont Blanc-like region (``regions/montblanc``)
cube_poiqu      catalog -> lazy 30-layer stack -> Zarr cube with labels (``cubes/poiqu.zarr``)
cube_montblanc  the same for Mont Blanc (``cubes/montblanc.zarr``)
train           CryoNet, CPU preset, on Poiqu patches (``train/``: split, checkpoints, curves)
evaluate        paper-style tables + confusion matrix on the test patches (``evaluate/``)
predict         the whole Poiqu region in Hann-blended tiles (``predict/poiqu.zarr``)
outlines        class-map COG + glacier/debris/lake polygons (``outlines/``)
importance      permutation channel importance (``importance/``: CSV + Fig.-10-style chart)
transfer        Mont Blanc before / after a short fine-tuning (``transfer/``)
synth_poiqu_later, cube_poiqu_later, predict_later
                the Poiqu region again in ``later_year`` (retreated glaciers), mapped
areas           per-glacier area change between the years (``areas/``: CSV, GPKG, plot)
report          ``report.md`` (+ ``report.html``; figures in ``report_files/``)
==============  ===================================================================

Every step writes a record ``steps/<step>.json`` when it has finished. A step whose record
exists, whose own parameters are unchanged and whose inputs (the records of the steps it
depends on) are unchanged is skipped, so an interrupted demo continues where it stopped and a
finished one returns at once. ``redo=True`` reruns everything; ``redo=["train"]`` reruns that
step and, because their inputs change, every step after it that depends on it. Steps that were
interrupted half-way resume where their underlying function can (cube writes, training,
prediction) when their parameters are unchanged; a step being redone, or an interrupted step
whose parameters have changed since, starts from an empty folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryonet.demo_config import STEP_DIR, DemoConfig, DemoContext, DemoResult, Step
from cryonet.demo_steps import STEPS
from glacierstack import storage

__all__ = ["STEPS", "DemoConfig", "DemoResult", "Step", "run_demo"]


# --------------------------------------------------------------------------- driver
def _key(step: Step, cfg: DemoConfig, records: Mapping[str, Mapping[str, Any]]) -> str:
    doc = {
        "step": step.name,
        "params": step.params(cfg),
        "deps": {d: records[d]["key"] + "@" + records[d]["finished"] for d in step.deps},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_record(path: Path, record: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    storage.publish(tmp, path)


def _clear(out: Path, folder: str) -> None:
    """Remove a step's output: a cube only if it is one, anything else only inside ``out``."""
    if folder.endswith(".zarr"):
        storage.remove_store(out / folder, "cube")
    else:  # out holds the demo's own STEP_DIR: a folder it was not pointed at by mistake
        storage.remove_owned(out / folder, root=out, marker=STEP_DIR)


def run_demo(
    out: str | Path,
    config: DemoConfig | None = None,
    *,
    redo: bool | Sequence[str] = False,
    until: str | None = None,
    progress: bool = True,
) -> DemoResult:
    """Run the end-to-end demo (see the module docstring), reusing finished steps.

    Parameters
    ----------
    out
        Output folder (created).
    config
        All options (default :class:`DemoConfig`: the README's demo), e.g.
        ``DemoConfig(size_km=4, train_overrides={"epochs": 2})``.
    redo
        ``True`` reruns every step; a list of step names reruns those (and the steps that
        depend on them); ``False`` reuses every finished, up-to-date step.
    until
        Stop after this step (its dependencies run as needed; later steps do not).
    progress
        Print each step as it starts/finishes and show the steps' progress bars.

    Returns
    -------
    DemoResult

    Raises
    ------
    ValueError
        For unknown step names in ``redo`` or ``until``.
    """
    from rich.console import Console

    console = Console(stderr=True, quiet=not progress, highlight=False)
    t_start = time.perf_counter()
    cfg = config or DemoConfig()
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in STEPS]
    redo_set = set(names) if redo is True else set(redo or ())
    bad = sorted(redo_set - set(names)) + ([until] if until and until not in names else [])
    if bad:
        raise ValueError(f"unknown demo step(s) {bad}; steps are {names}")
    wanted = set(names)
    if until is not None:
        wanted, todo = set(), [until]
        by_name = {s.name: s for s in STEPS}
        while todo:
            n = todo.pop()
            if n not in wanted:
                wanted.add(n)
                todo.extend(by_name[n].deps)
    _write_record(out / STEP_DIR / "config.json", asdict(cfg))
    import torch

    threads_before = torch.get_num_threads()
    threads = cfg.torch_threads or (1 if (os.cpu_count() or 1) <= 2 else threads_before)
    torch.set_num_threads(threads)
    try:
        return _run_steps(out, cfg, redo_set, wanted, console, t_start, progress)
    finally:
        torch.set_num_threads(threads_before)


def _run_steps(
    out: Path,
    cfg: DemoConfig,
    redo_set: set[str],
    wanted: set[str],
    console: Any,
    t_start: float,
    progress: bool,
) -> DemoResult:
    records: dict[str, dict[str, Any]] = {}
    ran: list[str] = []
    steps = [s for s in STEPS if s.name in wanted]
    for i, step in enumerate(steps, 1):
        rec_path = out / STEP_DIR / f"{step.name}.json"
        key = _key(step, cfg, records)
        old = _read_record(rec_path)
        head = f"[bold][{i}/{len(steps)}] {step.title}[/bold]"
        if old and old.get("key") == key and step.name not in redo_set:
            records[step.name] = old
            console.print(f"{head} [green]done already[/green] ({old['seconds']:.0f} s, skipped)")
            continue
        started = rec_path.with_suffix(".started")
        unfinished_other = started.exists() and started.read_text().strip() != key
        if old is not None or step.name in redo_set or unfinished_other:
            # stale, redone, or an interrupted run with other parameters: start afresh
            storage.discard(rec_path)
            _clear(out, step.folder)
        elif started.exists():
            console.print(f"{head} resuming an interrupted run")
        started.parent.mkdir(parents=True, exist_ok=True)
        started.write_text(key)
        console.print(f"{head} ...")
        t0, c0 = time.perf_counter(), time.process_time()
        ctx = DemoContext(out, cfg, records, progress)
        result = step.run(ctx)
        seconds = time.perf_counter() - t0
        record = {
            "step": step.name,
            "key": key,
            "finished": datetime.now(UTC).isoformat(timespec="microseconds"),
            "seconds": seconds,
            "cpu_seconds": time.process_time() - c0,
            **result,
        }
        _write_record(rec_path, record)
        storage.discard(started)
        records[step.name] = record
        ran.append(step.name)
        console.print(f"{head} [green]finished in {seconds:.1f} s[/green]")
    total = time.perf_counter() - t_start
    report = out / records["report"]["outputs"]["markdown"] if "report" in records else out
    console.print(f"[bold]demo finished in {total:.0f} s[/bold] -> {report}")
    return DemoResult(out=out, report=report, records=records, ran=tuple(ran), seconds=total)

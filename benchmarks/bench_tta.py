"""Does test-time augmentation / ensembling help, and what does it cost? (test patches)

Usage::

    python benchmarks/bench_tta.py CUBE SPLIT_JSON OUT CKPT_A [CKPT_B]

Evaluates ``CKPT_A`` on the split's test patches plainly, with the 8 dihedral transforms
(``tta="all"``), with the two flips only (``0,4``), and (when ``CKPT_B`` is given) as an
ensemble ``A + B`` (without TTA). Prints a Markdown table: mIoU, IoU per class, ECE
of the calibrated probabilities (15 bins), and time relative to the plain variant: of the
model alone on the test patches held in memory ("model time", what TTA/ensembles multiply)
and of the whole ``evaluate`` call (reading patches included); medians of ``REPEATS`` runs,
one torch thread. ``BENCH_TIMING_ONLY=1`` measures only the model times, interleaving the
variants round by round so that a changing machine load hits them alike.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from cryonet.evaluation import evaluate

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
"""Timed runs per variant (median); ``BENCH_REPEATS=1`` on a busy machine."""


def _forward_seconds(a: str, cube: str, split: str, ens: tuple, tta: str | None) -> float:
    """Median wall time of the model alone on the test patches held in memory."""
    from cryonet.data import CubeSource, PatchDataset, PatchSplit
    from cryonet.infer.ensemble import model_source

    source = CubeSource(cube)
    sp = PatchSplit.from_json(split)
    ds = PatchDataset(source, sp.subset("test"), sp.patch_size)
    x = torch.stack([torch.as_tensor(ds[i][0]) for i in range(len(ds))])
    module = model_source(a, ens, tta).load(torch.device("cpu")).module
    times = []
    with torch.inference_mode():
        for _ in range(REPEATS + 1):  # the first run warms up
            t0 = time.perf_counter()
            for k in range(0, len(x), 16):
                module(x[k : k + 16])
            times.append(time.perf_counter() - t0)
    return sorted(times[1:])[len(times[1:]) // 2]


def main(cube: str, split: str, out: str, a: str, b: str | None = None) -> None:
    """Run the variants and print the table (see the module docstring)."""
    torch.set_num_threads(1)
    variants = [("plain", (), None), ("TTA x8", (), "all"), ("TTA flips (0,4)", (), "0,4")]
    if b:
        variants += [("ensemble A+B", (b,), None)]
    rows = []
    for name, ens, tta in variants:
        times = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            m = evaluate(a, cube, split, device="cpu", ensemble=ens, tta=tta)
            times.append(time.perf_counter() - t0)
        folder = Path(out) / name.replace(" ", "_").replace(",", "").replace("+", "")
        evaluate(a, cube, split, device="cpu", ensemble=ens, tta=tta, out=folder)
        cal = json.loads((folder / "calibration.json").read_text())
        fwd = _forward_seconds(a, cube, split, ens, tta)
        rows.append((name, m, sorted(times)[len(times) // 2], cal["ece_calibrated"], fwd))
    base, fbase = rows[0][2], rows[0][4]
    names = rows[0][1].class_names
    head = " | ".join(names)
    print(f"| variant | mIoU | {head} | ECE (%) | model time ratio | evaluate time ratio |")
    print("|---|---|" + "---|" * len(names) + "---|---|---|")
    for name, m, t, ece, f in rows:
        ious = " | ".join(f"{100 * v:.2f}" for v in m.iou)
        print(
            f"| {name} | {100 * m.miou:.2f} | {ious} | {100 * ece:.2f} | {f / fbase:.1f} "
            f"| {t / base:.1f} |"
        )
    print(
        f"\nplain: model {fbase:.2f} s, whole evaluate {base:.2f} s, "
        f"{rows[0][1].total_pixels:,} pixels"
    )


def timing_only(cube: str, split: str, a: str, b: str | None = None) -> None:
    """Model-time ratios only, with the variants interleaved (robust to a changing load)."""
    from cryonet.data import CubeSource, PatchDataset, PatchSplit
    from cryonet.infer.ensemble import model_source

    torch.set_num_threads(1)
    sp = PatchSplit.from_json(split)
    ds = PatchDataset(CubeSource(cube), sp.subset("test"), sp.patch_size)
    x = torch.stack([torch.as_tensor(ds[i][0]) for i in range(len(ds))])
    variants = {"plain": ((), None), "TTA x8": ((), "all"), "TTA flips (0,4)": ((), "0,4")}
    if b:
        variants["ensemble A+B"] = ((b,), None)
    mods = {
        k: model_source(a, e, t).load(torch.device("cpu")).module for k, (e, t) in variants.items()
    }
    times: dict[str, list[float]] = {k: [] for k in mods}
    with torch.inference_mode():
        for r in range(REPEATS + 1):
            for k, m in mods.items():
                t0 = time.perf_counter()
                for i in range(0, len(x), 16):
                    m(x[i : i + 16])
                if r:  # the first round warms up
                    times[k].append(time.perf_counter() - t0)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}  # the least disturbed run
    for k, v in med.items():
        runs = [round(t, 2) for t in times[k]]
        print(
            f"{k}: median {v:.2f} s (ratio {v / med['plain']:.2f}), fastest "
            f"{best[k]:.2f} s (ratio {best[k] / best['plain']:.2f})  runs: {runs}"
        )


if __name__ == "__main__":
    if os.environ.get("BENCH_TIMING_ONLY"):
        timing_only(sys.argv[1], sys.argv[2], *sys.argv[4:6])
    else:
        main(*sys.argv[1:6])

"""How much of the test IoU is reachable by a spatially smooth model? (label-noise ceiling)

Usage::

    python benchmarks/label_noise.py CUBE SPLIT_JSON

Reads the cube's reference labels and the split's test windows and prints, per class:
the number of 8-connected components and the share of the class's pixels in components
smaller than 4 and 9 pixels (speckle), and the IoU that two *perfect but smooth* predictors
reach against the labels on the test windows:

* ``mmu4`` / ``mmu9``: the labels with every component smaller than 4 / 9 pixels replaced by
  the most frequent label of its 1-pixel ring (a minimum mapping unit);
* ``mode3``: a 3 x 3 majority filter of the labels.

A CNN that down-samples 32x cannot be expected to reproduce single-pixel label speckle, so
these are ceilings for what label noise leaves attainable; no model is involved.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import ndimage

from cryonet.data import PatchSplit
from cryonet.metrics import SegmentationMetrics, confusion_matrix
from glacierstack.classes import CLASS_NAMES
from glacierstack.store import open_cube


def _mmu(labels: np.ndarray, k: int) -> np.ndarray:
    out = labels.copy()
    for c in range(len(CLASS_NAMES)):
        comp, n = ndimage.label(labels == c, structure=np.ones((3, 3), bool))
        if not n:
            continue
        sizes = np.bincount(comp.ravel())
        small = np.flatnonzero((sizes < k) & (np.arange(n + 1) > 0))
        for i in small:
            m = comp == i
            ring = ndimage.binary_dilation(m, np.ones((3, 3), bool)) & ~m
            vals = labels[ring]
            vals = vals[(vals != c) & (vals != 255)]
            if vals.size:
                out[m] = np.bincount(vals).argmax()
    return out


def _mode3(labels: np.ndarray) -> np.ndarray:
    k = len(CLASS_NAMES)
    counts = np.stack(
        [ndimage.uniform_filter((labels == c).astype(np.float32), 3) for c in range(k)]
    )
    out = counts.argmax(0).astype(labels.dtype)
    out[labels == 255] = 255
    return out


def main(cube: str, split_json: str) -> None:
    """Print the speckle statistics and the smooth-oracle IoUs (see the module docstring)."""
    lab = open_cube(cube)["labels"].values
    lab = np.where(np.isfinite(lab), lab, 255).astype(np.int64)
    split = PatchSplit.from_json(split_json)
    mask = np.zeros(lab.shape, bool)
    for y0, x0 in split.subset("test"):
        mask[y0 : y0 + split.patch_size, x0 : x0 + split.patch_size] = True
    print("class        pixels  components  <4px share  <9px share")
    for c, name in enumerate(CLASS_NAMES):
        comp, n = ndimage.label(lab == c, structure=np.ones((3, 3), bool))
        sizes = np.bincount(comp.ravel())[1:]
        tot = sizes.sum()
        s4 = sizes[sizes < 4].sum() / tot if tot else float("nan")
        s9 = sizes[sizes < 9].sum() / tot if tot else float("nan")
        print(f"{name:12s} {tot:8d} {n:10d} {100 * s4:10.1f}% {100 * s9:10.1f}%")
    ref = np.where(mask, lab, 255)
    print("\noracle  " + "  ".join(f"{n[:10]:>10s}" for n in CLASS_NAMES) + "        mIoU")
    for name, pred in (("mmu4", _mmu(lab, 4)), ("mmu9", _mmu(lab, 9)), ("mode3", _mode3(lab))):
        pred = np.where(pred == 255, 0, pred)
        m = SegmentationMetrics.from_confusion(
            confusion_matrix(ref, pred, len(CLASS_NAMES)), CLASS_NAMES
        )
        ious = "  ".join(f"{100 * v:10.2f}" for v in m.iou)
        print(f"{name:6s}  {ious}  {100 * m.miou:10.2f}")


if __name__ == "__main__":
    main(*sys.argv[1:3])

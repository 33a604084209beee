"""Whole-area evaluation: every labelled pixel inside an area scored once, per class and grouped.

Unlike :mod:`cryonet.evaluation` (test *patches*, edge strips skipped), this scores a class map
of the whole cube (a mosaic from ``cryonet predict``, a checkpoint predicted on the fly, or a
class GeoTIFF such as the ``cryonet baseline`` forest's) against the cube's labels inside an
*area*:

* ``west``, ``east``, ``north``, ``south``: a half of the cube (the western half is columns
  ``0 .. W//2 - 1``, the eastern ``W//2 .. W - 1``; north/south likewise by rows);
* ``bbox:xmin,ymin,xmax,ymax``: a box in the cube's CRS;
* a vector file (any format/CRS): its polygons; ``FILE:VALUE`` keeps the rows whose ``split``
  column equals ``VALUE`` (``areas.gpkg:test``).

Pixels labelled 255 (nodata) are skipped. The report holds, per map: overall accuracy, mean
IoU, per-class IoU/precision/recall/F1, the groups of the cube's class scheme (glacier = clean
+ debris) and the confusion matrix (rows = label, columns = prediction).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from glacierstack import storage
from glacierstack.classes import NODATA_LABEL
from glacierstack.grid import Grid

__all__ = ["area_mask", "class_map", "default_tiling", "score_map", "score_table"]

HALVES = ("west", "east", "north", "south")


def default_tiling(checkpoint: str | Path) -> tuple[int, int]:
    """Prediction tile and overlap following training: the patch size and a quarter of it.

    Falls back to ``(256, 64)`` for checkpoints that do not record their patch size.
    """
    from cryonet.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    patch = (ckpt.get("extra") or {}).get("config", {}).get("patch_size")
    if not patch:
        return 256, 64
    return int(patch), int(patch) // 4


def area_mask(area: str, grid: Grid) -> np.ndarray:
    """Boolean ``(y, x)`` mask of ``area`` on ``grid`` (see the module docstring)."""
    h, w = grid.shape
    mask = np.zeros((h, w), bool)
    if area in HALVES:
        sl = {
            "west": np.s_[:, : w // 2],
            "east": np.s_[:, w // 2 :],
            "north": np.s_[: h // 2, :],
            "south": np.s_[h // 2 :, :],
        }[area]
        mask[sl] = True
        return mask
    if area.startswith("bbox:"):
        try:
            x0, y0, x1, y1 = (float(v) for v in area[5:].split(","))
        except ValueError as e:
            raise ValueError(f"area {area!r}: expected bbox:xmin,ymin,xmax,ymax") from e
        xx, yy = np.meshgrid(grid.x, grid.y)
        return (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)
    return _vector_mask(area, grid)


def _vector_mask(area: str, grid: Grid) -> np.ndarray:
    import geopandas as gpd
    from rasterio.features import rasterize

    path, value = _file_and_value(area)
    if not storage.is_url(path) and not Path(path).exists():
        raise FileNotFoundError(
            f"area {area!r} is neither {HALVES}, bbox:..., nor an existing vector file"
        )
    gdf = gpd.read_file(path)  # a URL is read by GDAL (its own AWS_*/GS_* settings)
    if value:
        if "split" not in gdf.columns:
            raise ValueError(f"{path}: selecting {value!r} needs a 'split' column")
        gdf = gdf[gdf["split"].astype(str) == value]
    if gdf.empty:
        raise ValueError(f"area {area!r}: no polygons")
    geoms = list(gdf.to_crs(grid.crs).geometry)
    return rasterize(
        [(g, 1) for g in geoms], out_shape=grid.shape, transform=grid.transform, dtype="uint8"
    ).astype(bool)


def _file_and_value(area: str) -> tuple[str, str]:
    """Split ``FILE[:VALUE]`` (``FILE`` a path or a URL such as ``s3://b/areas.gpkg``)."""
    if not storage.is_url(area) and Path(area).exists():
        return area, ""
    head, sep, tail = area.rpartition(":")
    if not sep or "/" in tail or (storage.is_url(area) and "://" not in head):
        return area, ""
    return head, tail


def class_map(source: str | Path, cube: str | Path, workdir: Path) -> np.ndarray:
    """Return the class map ``(y, x)`` uint8 of a mosaic (.zarr), class GeoTIFF or checkpoint (.pt).

    A checkpoint is predicted on the fly into ``workdir`` with the tiling of
    :func:`default_tiling`.
    """
    src = str(source) if storage.is_url(source) else Path(source)
    name = PurePosixPath(str(src)).name
    if name.endswith(".pt"):
        from cryonet.infer import predict

        tile, overlap = default_tiling(src)
        out = workdir / f"{name.removesuffix('.pt')}-mosaic.zarr"
        predict(src, cube, out, tile_size=tile, overlap=overlap, device="cpu",
                progress=False, overwrite=True)  # fmt: skip
        src, name = out, out.name
    if name.endswith((".tif", ".tiff")):
        import rasterio

        # our own outputs on a URL (cryonet baseline --out s3://...): read with the storage options
        with storage.open_input(src) as f, rasterio.open(f) as ds:
            return np.asarray(ds.read(1))
    from cryonet.infer import open_mosaic

    return np.asarray(open_mosaic(src)["classes"].values)


def score_map(
    pred: np.ndarray,
    labels: np.ndarray,
    mask: np.ndarray,
    classes: Sequence[Mapping[str, Any]],
    groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Scores of a class map against labels inside ``mask`` (every labelled pixel once)."""
    if pred.shape != labels.shape or mask.shape != labels.shape:
        raise ValueError(f"map {pred.shape}, labels {labels.shape}, area {mask.shape} differ")
    names = [str(c["name"]) for c in classes]
    k = len(names)
    sel = mask & (labels != NODATA_LABEL) & (pred < k)
    cm = np.bincount(labels[sel].astype(np.int64) * k + pred[sel], minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (cm.sum(0) + cm.sum(1) - tp)
        prec = tp / cm.sum(0)
        rec = tp / cm.sum(1)
        f1 = 2 * prec * rec / (prec + rec)
    out: dict[str, Any] = {
        "pixels": int(sel.sum()),
        "overall_accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "miou": float(np.nanmean(iou)),
        "classes": {
            n: {
                "iou": float(iou[i]),
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
            }
            for i, n in enumerate(names)
        },  # fmt: skip
        "confusion_matrix": cm.tolist(),
        "groups": {},
    }
    for g, members in (groups or {}).items():
        ids = [names.index(m) for m in members if m in names]
        lab, prd = np.isin(labels[sel], ids), np.isin(pred[sel], ids)
        inter, union = float((lab & prd).sum()), float((lab | prd).sum())
        out["groups"][g] = {"iou": inter / union if union else float("nan")}
    return out


def score_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table: one row per map; OA, mIoU, per-class and group IoU."""
    first = next(iter(results.values()))
    cls, grp = list(first["classes"]), list(first["groups"])
    head = ["map", "pixels", "OA", "mIoU", *[f"IoU {c}" for c in cls], *[f"IoU {g}" for g in grp]]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        vals = [r["overall_accuracy"], r["miou"], *[r["classes"][c]["iou"] for c in cls],
                *[r["groups"][g]["iou"] for g in grp]]  # fmt: skip
        rows.append(f"| {name} | {r['pixels']} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    return "\n".join(rows)


def evaluate_area(
    cube: str | Path, maps: Mapping[str, str | Path], area: str, workdir: Path
) -> dict[str, Any]:
    """Score several class maps of ``cube`` inside ``area``; see :func:`score_map`."""
    from glacierstack.schemes import scheme_from_attrs
    from glacierstack.store import open_cube

    ds = open_cube(cube)
    grid = Grid.from_attrs(ds.attrs["grid"])
    classes = ds.attrs["classes"]
    classes = json.loads(classes) if isinstance(classes, str) else classes
    scheme = scheme_from_attrs(ds.attrs)
    groups = scheme.get("groups") or (
        {"glacier": ["clean_ice", "debris"]} if "debris" in [c["name"] for c in classes] else {}
    )
    labels = np.asarray(ds["labels"].values)
    mask = area_mask(area, grid)
    results = {
        name: score_map(class_map(src, cube, workdir), labels, mask, classes, groups)
        for name, src in maps.items()
    }
    return {"area": area, "cube": str(cube), "scheme": scheme.get("name", "cryonet5"),
            "results": results}  # fmt: skip

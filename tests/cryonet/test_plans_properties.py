"""Properties of the plans (tiles, chunks, input windows, splits) over generated inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cryonet.data import make_split
from cryonet.infer.tiling import chunk_plan, chunk_tiles, input_window, tile_starts
from cryonet.testing.strategies import (
    chunk_sizes,
    grids,
    label_grids,
    region_shapes,
    split_configs,
    tilings,
)
from glacierstack.classes import NODATA_LABEL

FAST = settings(max_examples=60, deadline=None)


@FAST
@given(n=st.integers(1, 400), tiling=tilings())
def test_tiles_cover_the_axis_with_the_stride(n, tiling):
    starts = tile_starts(n, tiling.tile_size, tiling.overlap)
    assert starts[0] == 0 and np.all(np.diff(starts) > 0)
    assert starts[-1] == max(n - tiling.tile_size, 0)  # the last tile ends at the edge
    assert np.all(np.diff(starts) <= tiling.stride)  # consecutive tiles leave no gap
    covered = np.zeros(max(n, tiling.tile_size), bool)
    for s in starts:
        covered[s : s + tiling.tile_size] = True
    assert covered[:n].all()


@FAST
@given(shape=region_shapes(), cs=chunk_sizes())
def test_chunks_partition_the_region(shape, cs):
    count = np.zeros(shape, np.int64)
    for _, _, rows, cols in chunk_plan(shape, cs):
        count[rows, cols] += 1
    assert (count == 1).all()


@FAST
@given(shape=region_shapes(max_side=200), tiling=tilings(), data=st.data())
def test_input_window_holds_every_tile_touching_the_target(shape, tiling, data):
    h, w = shape
    y0 = data.draw(st.integers(0, h - 1))
    x0 = data.draw(st.integers(0, w - 1))
    target = (
        slice(y0, data.draw(st.integers(y0 + 1, h))),
        slice(x0, data.draw(st.integers(x0 + 1, w))),
    )
    wy, wx = input_window(shape, target, tiling)
    t = tiling.tile_size
    for n, sl, win in ((h, target[0], wy), (w, target[1], wx)):
        touching = [
            s for s in tile_starts(n, t, tiling.overlap) if s < sl.stop and s + t > sl.start
        ]
        assert touching and win.start == min(touching)
        assert win.stop == min(n, max(touching) + t)  # the input ends at the region edge
        assert win.start <= sl.start and win.stop >= sl.stop


@FAST
@given(shape=region_shapes(max_side=200), tiling=tilings(), cs=chunk_sizes())
def test_chunk_cost_counts_the_tiles_that_overlap_the_chunk(shape, tiling, cs):
    t = tiling.tile_size
    ys = tile_starts(shape[0], t, tiling.overlap)
    xs = tile_starts(shape[1], t, tiling.overlap)
    for _, _, rows, cols in chunk_plan(shape, cs):
        brute = sum(  # every global tile, 2-D rectangle overlap
            1 for y in ys for x in xs
            if y < rows.stop and y + t > rows.start and x < cols.stop and x + t > cols.start
        )  # fmt: skip
        assert chunk_tiles(shape, (rows, cols), tiling) == brute


@FAST
@given(grid=grids())
def test_grid_shape_matches_its_bbox(grid):
    xmin, ymin, xmax, ymax = grid.bounds
    assert grid.shape == (
        round((ymax - ymin) / grid.resolution),
        round((xmax - xmin) / grid.resolution),
    )


@dataclass
class _Labels:
    """What make_split reads from a cube: its labels, shape and path (for messages)."""

    labels: np.ndarray
    path: Path = Path("generated")

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.labels.shape[0]), int(self.labels.shape[1]))


@settings(max_examples=40, deadline=None)
@given(labels=label_grids(), config=split_configs())
def test_split_subsets_share_no_pixel(labels, config):
    src = _Labels(labels)
    try:
        sp = make_split(src, config)  # type: ignore[arg-type]
    except ValueError as err:  # too few labelled patches for this region: said so
        assert "patch" in str(err)
        return
    subsets = {k: set(map(tuple, sp.subset(k).tolist())) for k in ("train", "val", "test")}
    assert len(sp.train) > 0
    owner = np.full(src.shape, -1)
    for i, k in enumerate(("train", "val", "test")):
        for y0, x0 in sp.subset(k):
            patch = owner[y0 : y0 + sp.patch_size, x0 : x0 + sp.patch_size]
            assert np.all((patch == -1) | (patch == i)), (
                f"{k} window ({y0}, {x0}) overlaps another subset"
            )
            patch[...] = i
            valid = (
                labels[y0 : y0 + sp.patch_size, x0 : x0 + sp.patch_size] != NODATA_LABEL
            ).mean()
            assert valid >= config.min_valid_fraction
    assert sum(len(v) for v in subsets.values()) <= len(sp.windows)


def test_split_is_seeded():
    from cryonet.data import SplitConfig

    labels = np.zeros((64, 64), np.uint8)
    split = {s: make_split(_Labels(labels), SplitConfig(patch_size=8, seed=s)) for s in (0, 0, 1)}  # type: ignore[arg-type]
    again = make_split(_Labels(labels), SplitConfig(patch_size=8, seed=0))  # type: ignore[arg-type]
    assert np.array_equal(split[0].test, again.test) and np.array_equal(split[0].train, again.train)
    assert not np.array_equal(split[0].test, split[1].test)

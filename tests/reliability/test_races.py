"""Races: two ``cryonet predict`` with different checkpoints on the same new ``--out``.

Both writers start behind a barrier; whatever the interleaving, the store that ends complete
records the checkpoint whose map it holds, and the other writer is refused. The default suite
races two threads through the Python API a few times; the slow suite races two processes
through the real command line 24 times.
"""

from __future__ import annotations

import multiprocessing as mp
import threading

import numpy as np
import pytest
import zarr

from cryonet.checkpoint import save_checkpoint
from cryonet.infer import CheckpointModel, open_mosaic, predict
from cryonet.models import create_model
from glacierstack.classes import class_table
from glacierstack.storage import StoreError, StoreMismatchError, claim, store_info

from . import _race_worker
from .conftest import BANDS, make_cube

KW = dict(tile_size=32, overlap=8, chunk_size=16, device="cpu", progress=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch

    tmp = tmp_path_factory.mktemp("race")
    cube = make_cube(tmp / "cube.zarr", chunk_size=32)
    ckpts, refs = [], {}
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = create_model("unet-tiny", in_channels=len(BANDS), num_classes=5)
        ck = save_checkpoint(tmp / f"m{seed}.pt", model, bands=BANDS, mean=np.zeros(6),
                             std=np.ones(6), classes=class_table(), epoch=1)  # fmt: skip
        ds = open_mosaic(predict(ck, cube, tmp / f"ref{seed}.zarr", **KW))
        refs[CheckpointModel(ck).sha256()] = (ds.classes.values, ds.probabilities.values)
        ckpts.append(ck)
    a, b = (v[0] for v in refs.values())
    assert (a != b).mean() > 0.05, "the two checkpoints must give different maps"
    return tmp, cube, ckpts, refs


def _check(outs, got, refs) -> None:
    """Every store is complete and holds the map of the model it records; one writer won."""
    for out in outs:
        ds = open_mosaic(out)
        want_classes, want_probs = refs[ds.attrs["run"]["model"]]
        np.testing.assert_array_equal(ds.classes.values, want_classes)
        np.testing.assert_array_equal(ds.probabilities.values, want_probs)
        codes = sorted(code for o, code, _ in got if o == out)
        assert codes == [0, 1], [g for g in got if g[0] == out]
        loser = next(msg for o, code, msg in got if o == out and code == 1)
        assert "different run" in loser, loser


def race_threads(cube, ckpts, outs, join_timeout: float) -> list[tuple[str, int, str]]:
    """Two threads, one per checkpoint, start ``predict`` on each of ``outs`` behind a barrier."""
    barrier, got, lock = threading.Barrier(2), [], threading.Lock()

    def writer(ck) -> None:
        for out in outs:
            barrier.wait(timeout=120)
            try:
                predict(ck, cube, out, torch_threads=1, **KW)
                row = (out, 0, "")
            except StoreError as exc:
                row = (out, 1, str(exc))
            with lock:
                got.append(row)

    threads = [threading.Thread(target=writer, args=(ck,)) for ck in ckpts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=join_timeout)
    return got


def test_two_checkpoints_race_for_one_store(setup):
    tmp, cube, ckpts, refs = setup
    outs = [str(tmp / f"thread-race-{k}.zarr") for k in range(3)]
    _check(outs, race_threads(cube, ckpts, outs, join_timeout=300), refs)


@pytest.mark.slow
def test_two_cli_processes_race_many_trials(setup):
    tmp, cube, ckpts, refs = setup
    trials = 24
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    outs = [str(tmp / f"cli-race-{k}.zarr") for k in range(trials)]
    procs = [
        ctx.Process(target=_race_worker.race, args=(barrier, str(ck), str(cube), outs, results))
        for ck in ckpts
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=900)[1:] for _ in range(2 * trials)]
    for p in procs:
        p.join(timeout=60)
    _check(outs, got, refs)


def test_rerun_with_other_checkpoint_never_returns_foreign_map(setup):
    tmp, cube, ckpts, _ = setup
    out = tmp / "rerun.zarr"
    predict(ckpts[0], cube, out, **KW)
    with pytest.raises(ValueError, match="different run"):
        predict(ckpts[1], cube, out, **KW)


def test_interrupted_creation_is_repaired(setup):
    """A claim whose metadata never got written (disk full while creating) is started over."""
    tmp, cube, ckpts, _ = setup
    first = predict(ckpts[0], cube, tmp / "whole.zarr", **KW)
    sig = zarr.open_group(first, mode="r").attrs["run"]
    other = tmp / "crashed.zarr"
    claim(other, "mosaic", sig)  # claimed, then "crashed" before any metadata
    (other / "classes").mkdir()  # a half-written array folder
    assert not store_info(other).created
    done = predict(ckpts[0], cube, other, **KW)
    want = open_mosaic(first).classes.values
    np.testing.assert_array_equal(open_mosaic(done).classes.values, want)


def test_store_taken_over_is_not_written_by_the_old_run(tmp_path):
    from glacierstack.storage import check_owner

    c1 = claim(tmp_path / "s.zarr", "mosaic", {"model": "a"})
    claim(tmp_path / "s.zarr", "mosaic", {"model": "b"}, overwrite=True)
    with pytest.raises(StoreMismatchError, match="replaced by another run"):
        check_owner(c1.store, c1.run_id)

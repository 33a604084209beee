"""The race of ``test_races`` on s3://: two checkpoints, one new store, exclusive creation.

On object storage the claim is a conditional put (``If-None-Match: *``, fsspec mode ``"xb"``),
served here by a real S3-compatible server on 127.0.0.1 (moto in server mode).
"""

from __future__ import annotations

from .test_races import _check, race_threads, setup  # noqa: F401  (the module's fixture, reused)


def test_two_checkpoints_race_for_one_s3_store(setup, s3):  # noqa: F811
    _, cube, ckpts, refs = setup
    outs = [f"{s3['root']}/race-{k}.zarr" for k in range(2)]
    _check(outs, race_threads(cube, ckpts, outs, join_timeout=600), refs)

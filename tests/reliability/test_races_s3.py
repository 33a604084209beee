"""The race of ``test_races`` on s3://: two checkpoints, one new store, exclusive creation.

On object storage the claim is a conditional put (``If-None-Match: *``, fsspec mode ``"xb"``),
served here by a real S3-compatible server on 127.0.0.1 (moto in server mode).
"""

from __future__ import annotations

import threading

from cryonet.infer import predict
from glacierstack.storage import StoreError

from .test_races import KW, _check, setup  # noqa: F401  (the module's fixture, reused)


def test_two_checkpoints_race_for_one_s3_store(setup, s3):  # noqa: F811
    _, cube, ckpts, refs = setup
    outs = [f"{s3['root']}/race-{k}.zarr" for k in range(2)]
    barrier, got, lock = threading.Barrier(2), [], threading.Lock()

    def writer(ck) -> None:  # noqa: ANN001
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
        t.join(timeout=600)
    _check(outs, got, refs)

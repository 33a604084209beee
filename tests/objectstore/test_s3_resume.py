"""A cube writer SIGKILLed mid-run on s3:// resumes to the store an uninterrupted run writes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import fsspec
import pytest

from glacierstack.store import IncompleteCubeError, cube_status, open_cube

SCRIPT = textwrap.dedent("""
    import json, sys, time
    import dask, dask.array as da, numpy as np, xarray as xr
    from glacierstack import storage
    from glacierstack.grid import Grid
    from glacierstack.store import write_cube
    url, options, slow = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
    storage.configure({"s3": options})  # what --storage-option does
    g = Grid("EPSG:32645", (400000, 3100000, 400960, 3100640), 10)  # 64 x 96 px: 6 tiles
    def fn(b, block_info=None):
        time.sleep(slow)
        i, j = block_info[0]["chunk-location"][1:]
        return b * (1 + i) + j
    h, w = g.shape
    d = da.ones((2, h, w), dtype="f4", chunks=(2, 32, 32)).map_blocks(fn, dtype="f4")
    f = xr.DataArray(d, dims=("band", "y", "x"), coords={"band": ["a", "b"], **g.coords()})
    lab = xr.DataArray(np.arange(h * w, dtype="u1").reshape(h, w) % 5, dims=("y", "x"),
                       coords=g.coords())
    with dask.config.set(scheduler="synchronous"):
        write_cube(f, lab, url, grid=g, chunk_size=32, progress=False)
""")


def _chunks(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, bytes]:
    """Every Zarr chunk file of the data variables (metadata holds timestamps, so not compared)."""
    out = {}
    for var in ("features", "labels", "band_mean", "band_std"):
        for path in fs.find(f"{root}/{var}"):
            name = path.rsplit("/", 1)[-1]
            if not name.startswith("."):
                out[f"{var}/{name}"] = fs.cat_file(path)
    return out


def test_sigkilled_s3_writer_resumes_to_the_identical_store(s3, tmp_path):
    script = tmp_path / "write.py"
    script.write_text(SCRIPT)
    opts = json.dumps(s3["options"])
    url = f"{s3['root']}/k.zarr"
    ref = tmp_path / "ref.zarr"  # the same build, uninterrupted, on local disk
    subprocess.run([sys.executable, str(script), str(ref), "{}", "0"], check=True, timeout=300)
    fs = fsspec.filesystem("s3")
    marks = f"{url.removeprefix('s3://')}/.glacierstack/progress/features"
    proc = subprocess.Popen([sys.executable, str(script), url, opts, "0.5"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if fs.exists(marks) and len(fs.ls(marks, refresh=True)) >= 2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert cube_status(url) == "incomplete"
    with pytest.raises(IncompleteCubeError):
        open_cube(url)
    assert 2 <= len(fs.ls(marks, refresh=True)) < 6
    subprocess.run([sys.executable, str(script), url, opts, "0"], check=True, timeout=300)
    a, b = _chunks(fsspec.filesystem("file"), str(ref)), _chunks(fs, url.removeprefix("s3://"))
    assert a.keys() == b.keys() and len(a) == 2 * 6 + 2
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]]
    ds = open_cube(url)
    assert ds.rio.crs.to_epsg() == 32645 and float(ds.features.max()) == 2 + 2

"""Raster writing: windowed writes to a tiled scratch GeoTIFF, then a Cloud-Optimized copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from glacierstack import storage
from glacierstack.grid import Grid
from glacierstack.synthetic.sensors import Encoding


class CogWriter:
    """Write a single-band raster block by block, finished as a COG.

    Blocks go to ``<path>.scratch.tif`` (tiled, deflate); :meth:`finish` copies it with the
    GDAL ``COG`` driver (internal overviews, 512-pixel tiles) to ``path`` and deletes the
    scratch file. Memory use is one block, whatever the raster size.
    """

    def __init__(
        self, path: Path, grid: Grid, encoding: Encoding, resampling: str = "AVERAGE"
    ) -> None:
        self.path = Path(path)
        self.grid = grid
        self.encoding = encoding
        self.resampling = resampling
        self.scratch = self.path.with_suffix(".scratch.tif")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        h, w = grid.shape
        profile = {
            "driver": "GTiff",
            "width": w,
            "height": h,
            "count": 1,
            "dtype": encoding.dtype,
            "crs": grid.crs,
            "transform": grid.transform,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
        }
        if encoding.nodata is not None:
            profile["nodata"] = encoding.nodata
        self._ds = rasterio.open(self.scratch, "w", **profile)

    def write(self, stored: np.ndarray, row: int = 0, col: int = 0) -> None:
        """Write already-encoded values at ``(row, col)`` of the raster."""
        h, w = stored.shape
        self._ds.write(stored, 1, window=Window(col, row, w, h))

    def finish(self) -> Path:
        """Close the scratch file and convert it to a COG at :attr:`path`."""
        self._ds.close()
        predictor = "2" if np.issubdtype(np.dtype(self.encoding.dtype), np.integer) else "NO"
        if np.dtype(self.encoding.dtype).kind == "f":
            predictor = "3"
        rasterio.shutil.copy(
            self.scratch,
            self.path,
            driver="COG",
            COMPRESS="DEFLATE",
            PREDICTOR=predictor,
            BLOCKSIZE=512,
            OVERVIEW_RESAMPLING=self.resampling,
        )
        storage.discard(self.scratch)
        return self.path

    def abort(self) -> None:
        """Close and delete the scratch file (after an error)."""
        try:
            self._ds.close()
        finally:
            storage.discard(self.scratch)


def write_cog(
    path: Path, grid: Grid, encoding: Encoding, stored: np.ndarray, resampling: str = "AVERAGE"
) -> Path:
    """Write a whole (small, e.g. 30/120 m) array as a COG."""
    w = CogWriter(path, grid, encoding, resampling)
    try:
        w.write(stored)
    except BaseException:
        w.abort()
        raise
    return w.finish()

"""Sensor models: what each provider delivers, at its native grid and encoding.

Every product is made from the 10 m surface state of a block (:mod:`surfaces`) and the coarse
fields of the scene; encodings follow ``docs/developer/contracts.md`` (Synthetic STAC catalog).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glacierstack.synthetic.noise import white_noise
from glacierstack.synthetic.sample import block_mean
from glacierstack.synthetic.spectra import S2_BANDS


@dataclass(frozen=True)
class Encoding:
    """Provider encoding of one asset (written to ``raster:bands``)."""

    dtype: str
    nodata: float | None
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Convert physical values to stored values (rounded and clipped for integer types)."""
        stored = (values - self.offset) / self.scale
        if np.issubdtype(np.dtype(self.dtype), np.integer):
            info = np.iinfo(self.dtype)
            lo = info.min if self.nodata is None or self.nodata != info.min else info.min + 1
            if self.nodata == 0:
                lo = 1
            return np.clip(np.rint(stored), lo, info.max).astype(self.dtype)
        return stored.astype(self.dtype)

    def decode(self, stored: np.ndarray) -> np.ndarray:
        """Convert stored values to physical values (nodata -> NaN)."""
        out = stored.astype(np.float64) * self.scale + self.offset
        if self.nodata is not None:
            out[stored == self.nodata] = np.nan
        return out


S2_ENCODING = Encoding("uint16", 0, 0.0001, -0.1)
"""Sentinel-2 L2A, processing baseline >= 04.00 (BOA_ADD_OFFSET = -1000)."""
DEM_ENCODING = Encoding("float32", -32767.0, unit="meter")
LST_ENCODING = Encoding("uint16", 0, 0.00341802, 149.0, unit="kelvin")
VELOCITY_ENCODING = Encoding("float32", -32767.0, unit="m/yr")
SLC_ENCODING = Encoding("complex64", None)
LABEL_ENCODING = Encoding("uint8", 255)

S2_NOISE_RELATIVE = 0.012
"""Relative (multiplicative) radiometric noise of S2 L2A reflectance."""
S2_NOISE_ABSOLUTE = 0.001
"""Additive reflectance noise (1 sigma)."""


def s2_band_values(
    reflectance: np.ndarray, window: tuple[int, int, int, int], seed: int
) -> dict[str, np.ndarray]:
    """Aggregate a 10 m reflectance block to each band's native grid and add sensor noise.

    Parameters
    ----------
    reflectance
        ``(12, h, w)`` 10 m reflectance of the block (``h``, ``w`` multiples of 6).
    window
        The block's ``(row0, col0, height, width)`` on the 10 m grid (multiples of 6).
    seed
        Region seed.

    Returns
    -------
    dict
        Band name -> reflectance at the band's native resolution (float64).
    """
    r0, c0, h, w = window
    out = {}
    for k, band in enumerate(S2_BANDS):
        f = band.resolution // 10
        vals = block_mean(reflectance[k].astype(np.float64), f) if f > 1 else reflectance[k]
        win = (r0 // f, c0 // f, h // f, w // f)
        n1 = white_noise(seed, f"s2/{band.name}/rel", win)
        n2 = white_noise(seed, f"s2/{band.name}/abs", win)
        out[band.name] = vals * (1.0 + S2_NOISE_RELATIVE * n1) + S2_NOISE_ABSOLUTE * n2
    return out

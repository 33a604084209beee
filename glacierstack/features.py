"""The 30 CryoNet input layers, computed lazily from a raw modality dataset.

:data:`FEATURES` is the registry: layer name -> function of a :class:`FeatureContext` returning
a 2-D ``(y, x)`` DataArray. :func:`compute_features` evaluates any subset of the 30 layers of
:data:`glacierstack.layers.ALL_LAYERS` (in canonical order) and stacks them into the feature
cube of the internal contract: float32 ``(band, y, x)``, lazy Dask, NaN where inputs are missing.

Windowed layers (slope/aspect, GLCM, InSAR coherence/phase) run Numba kernels from
:mod:`glacierstack.kernels` through :func:`glacierstack.dispatch.apply_kernel`. The PCA
is fitted eagerly by :func:`fit_pca` (one pass of Dask reductions over the region's S2
bands) unless a fit is passed in; everything else stays lazy until written.
See ``docs/layers.md`` for formulas, parameters and sources.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from pyproj import CRS

from glacierstack.dispatch import Boundary, apply_kernel
from glacierstack.kernels import (
    GLCM_PROPERTIES,
    boxcar_coherence,
    glcm_dissimilarity,
    glcm_properties,
    horn_slope_aspect,
    normalized_difference,
)
from glacierstack.layers import ALL_LAYERS, S2_BANDS, resolve_layers

__all__ = [
    "FEATURES",
    "TASSELED_CAP_S2",
    "FeatureContext",
    "FeatureOptions",
    "GLCMParams",
    "PCAFit",
    "PCASample",
    "compute_features",
    "feature_halo",
    "feature_params",
    "fit_pca",
    "glcm_texture",
    "tasseled_cap_coefficients",
    "tasseled_cap_inputs",
]

# ---------------------------------------------------------------------------------- options


def _dataclass_token(obj: Any) -> tuple[Any, ...]:
    """Deterministic Dask token of a frozen options dataclass: its type and field values."""
    from dask.base import normalize_token

    return (type(obj).__qualname__, *(normalize_token(getattr(obj, f.name)) for f in fields(obj)))


@dataclass(frozen=True)
class GLCMParams:
    """Parameters of the GLCM dissimilarity layer.

    Attributes
    ----------
    source
        Layer the texture is computed on: an S2 band (default ``"B08"``, NIR reflectance) or
        any other layer name of the registry (e.g. ``"PC1"``).
    window
        Odd side of the square moving window, in pixels.
    levels
        Number of grey levels after quantisation.
    value_range
        ``(vmin, vmax)`` of the equal-width quantisation bins, in the source's units. Values
        outside are clipped into the end bins. A fixed range (reflectance 0..1 by default)
        keeps the texture comparable between scenes and regions.
    offsets
        ``(dy, dx)`` pixel offsets (rows down, columns right); the layer is the mean of the
        per-offset dissimilarities. ``((0, 1),)`` is scikit-image's distance 1, angle 0.
    """

    source: str = "B08"
    window: int = 7
    levels: int = 32
    value_range: tuple[float, float] = (0.0, 1.0)
    offsets: tuple[tuple[int, int], ...] = ((0, 1),)

    def __post_init__(self) -> None:
        if self.window < 3 or self.window % 2 != 1:
            raise ValueError(f"GLCMParams.window must be odd and >= 3, got {self.window}")
        if not 2 <= self.levels <= 32767:
            raise ValueError(f"GLCMParams.levels must be in 2..32767, got {self.levels}")
        vmin, vmax = self.value_range
        if not (np.isfinite(vmin) and np.isfinite(vmax) and vmax > vmin):
            raise ValueError(
                f"GLCMParams.value_range must be finite with vmax > vmin, got {self.value_range}"
            )
        offsets = tuple((int(dy), int(dx)) for dy, dx in self.offsets)
        if not offsets:
            raise ValueError("GLCMParams.offsets is empty")
        for dy, dx in offsets:
            if (dy, dx) == (0, 0) or abs(dy) >= self.window or abs(dx) >= self.window:
                raise ValueError(
                    f"GLCMParams offset {(dy, dx)} must be non-zero and shorter than the "
                    f"window ({self.window})"
                )
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "value_range", (float(vmin), float(vmax)))

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        """Token from the field values (used in resume fingerprints), never the object id."""
        return _dataclass_token(self)


@dataclass(frozen=True)
class FeatureOptions:
    """Parameters of :func:`compute_features` other than the layer list.

    Attributes
    ----------
    glcm
        GLCM texture parameters.
    coherence_window
        ``(rows, cols)`` of the boxcar window for InSAR coherence/phase (odd).
    edges
        How windowed layers treat the region's outer edge (see
        :data:`glacierstack.dispatch.Boundary`): ``"reflect"`` (default) mirrors the image so
        edge pixels get values from a mirrored window; ``"nan"`` leaves them NaN.
    flat_aspect
        Aspect (degrees) given to exactly flat pixels, where aspect is undefined.
    pca
        A precomputed :class:`PCAFit`; ``None`` fits one on the region when PCA is needed.
    """

    glcm: GLCMParams = field(default_factory=GLCMParams)
    coherence_window: tuple[int, int] = (5, 5)
    edges: Boundary = "reflect"
    flat_aspect: float = -1.0
    pca: PCAFit | None = None

    def __post_init__(self) -> None:
        wy, wx = (int(v) for v in self.coherence_window)
        if wy < 1 or wx < 1 or wy % 2 == 0 or wx % 2 == 0:
            raise ValueError(f"coherence_window must be two odd sizes, got {self.coherence_window}")
        object.__setattr__(self, "coherence_window", (wy, wx))
        if self.edges not in ("nan", "nearest", "reflect"):
            raise ValueError(f"edges must be 'nan', 'nearest' or 'reflect', got {self.edges!r}")

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        """Token from the field values (used in resume fingerprints), never the object id."""
        return _dataclass_token(self)


# ---------------------------------------------------------------------------------- PCA


@dataclass(frozen=True, eq=False)
class PCAFit:
    """Principal components of a set of bands.

    Attributes
    ----------
    bands
        Input band names, in the order of the columns of ``components``.
    mean
        Per-band mean of the valid pixels, shape ``(n_bands,)``.
    components
        Unit eigenvectors of the band covariance as rows, shape ``(n_components, n_bands)``,
        by decreasing eigenvalue. **Sign convention**: the loading of largest absolute value
        in each row is positive (the convention of scikit-learn's ``svd_flip`` with
        ``u_based_decision=False``).
    explained_variance
        Eigenvalues (covariance with ``n - 1`` denominator), shape ``(n_components,)``.
    total_variance
        Trace of the covariance (sum of all eigenvalues).
    n_samples
        Number of valid pixels (all bands finite) used.
    sample
        Which pixels were used: ``"all pixels"`` or a :class:`PCASample` description.
    """

    bands: tuple[str, ...]
    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    total_variance: float
    n_samples: int
    sample: str = "all pixels"

    def transform(self, stack: xr.DataArray) -> xr.DataArray:
        """Project a ``(band, y, x)`` stack: ``score_k = sum_b (x_b - mean_b) * components[k, b]``.

        Returns a lazy ``(component, y, x)`` float32 DataArray, NaN where any band is NaN.
        """
        scores = []
        for comp in self.components:
            terms = [
                (stack.sel(band=band, drop=True).astype(np.float64) - m) * c
                for band, m, c in zip(self.bands, self.mean, comp, strict=True)
            ]
            scores.append(sum(terms[1:], terms[0]).astype(np.float32))
        # an explicit per-band sum (not xr.dot/einsum) keeps the input's spatial chunks
        return xr.concat(scores, dim="component").assign_coords(
            component=np.arange(1, len(self.components) + 1)
        )

    def to_attrs(self) -> dict[str, Any]:
        """JSON-serialisable description (stored in the cube's attrs)."""
        return {
            "bands": list(self.bands),
            "mean": self.mean.tolist(),
            "components": self.components.tolist(),
            "explained_variance": self.explained_variance.tolist(),
            "total_variance": float(self.total_variance),
            "n_samples": int(self.n_samples),
            "sample": self.sample,
        }


@dataclass(frozen=True)
class PCASample:
    """A fixed-size, spatially stratified pixel sample for the PCA fit (memory flat in area).

    The grid is cut into at most ``cells`` x ``cells`` equal cells; the fit uses the central
    ``window`` x ``window`` pixels of each (whole cells when they are smaller, so a small
    region is fitted on all of its pixels). At most ``cells² · window²`` pixels are read
    (65,536 by default) whatever the region size.

    Attributes
    ----------
    cells
        Cells per axis.
    window
        Side in pixels of the window read in each cell.
    """

    cells: int = 4
    window: int = 64

    def __post_init__(self) -> None:
        if self.cells < 1 or self.window < 1:
            raise ValueError(f"PCASample needs cells >= 1 and window >= 1, got {self}")

    def windows(self, shape: tuple[int, int]) -> list[tuple[slice, slice]]:
        """Row-major ``(rows, cols)`` slices of the sample windows on a grid of ``shape``."""
        axes = []
        for size in shape:
            n = max(1, min(self.cells, -(-size // self.window)))
            edges = [k * size // n for k in range(n + 1)]
            spans = []
            for a, b in zip(edges[:-1], edges[1:], strict=True):
                w = min(self.window, b - a)
                start = a + (b - a - w) // 2
                spans.append(slice(start, start + w))
            axes.append(spans)
        return [(ys, xs) for ys in axes[0] for xs in axes[1]]

    def describe(self) -> str:
        """One line for the cube attrs."""
        w, c = self.window, self.cells
        return f"stratified: central {w}x{w} px of each of up to {c}x{c} cells"


def _block_moments(block: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Count, mean and centred cross-product matrix of the valid pixels of a (band, y, x) block."""
    x = block.reshape(block.shape[0], -1).astype(np.float64)
    x = x[:, np.isfinite(x).all(axis=0)]
    n = x.shape[1]
    if n == 0:
        k = block.shape[0]
        return 0, np.zeros(k), np.zeros((k, k))
    mean = x.mean(axis=1)
    xc = x - mean[:, None]
    return n, mean, xc @ xc.T


def _merge_moments(
    a: tuple[int, np.ndarray, np.ndarray], b: tuple[int, np.ndarray, np.ndarray]
) -> tuple[int, np.ndarray, np.ndarray]:
    """Chan et al. (1979) pairwise merge of (count, mean, centred cross-products)."""
    na, ma, ca = a
    nb, mb, cb = b
    if na == 0:
        return b
    if nb == 0:
        return a
    n = na + nb
    delta = mb - ma
    return n, ma + delta * (nb / n), ca + cb + np.outer(delta, delta) * (na * nb / n)


def fit_pca(
    data: xr.Dataset | xr.DataArray,
    bands: tuple[str, ...] = S2_BANDS,
    n_components: int = 3,
    *,
    sample: PCASample | None = None,
) -> PCAFit:
    """Fit a PCA of ``bands`` over a region (or a stratified sample of it) in one pass.

    Each chunk contributes its count, mean and centred cross-product matrix over the pixels
    where **all** bands are finite; these are merged pairwise (Chan et al. 1979), which is
    numerically stable and never holds more than one chunk per worker. The covariance
    (``n - 1`` denominator) is diagonalised with :func:`numpy.linalg.eigh`.

    Parameters
    ----------
    data
        Raw modality dataset with the band variables, or a ``(band, y, x)`` DataArray.
    bands
        Band names to use.
    n_components
        Number of components kept.
    sample
        Fit on this stratified sample of windows instead of every pixel (what
        :func:`compute_features` and the cube builder do: a fixed cost whatever the area).

    Returns
    -------
    PCAFit
        The fit; see its sign convention.

    Raises
    ------
    ValueError
        If a band is missing or fewer than ``len(bands) + 1`` pixels are valid in all bands.
    """
    stack = _stack_bands(data, bands)
    arr = stack.data
    if sample is not None:
        wins = sample.windows(arr.shape[1:])
        blocks = [arr[:, ys, xs] for ys, xs in wins]
        if isinstance(arr, da.Array):
            moments = dask.compute(*[dask.delayed(_block_moments)(b) for b in blocks])
        else:
            moments = tuple(_block_moments(np.asarray(b)) for b in blocks)
    elif isinstance(arr, da.Array):
        arr = arr.rechunk({0: -1})
        parts = [dask.delayed(_block_moments)(blk) for blk in arr.to_delayed().ravel()]
        moments = dask.compute(*parts)
    else:
        moments = (_block_moments(np.asarray(arr)),)
    desc = sample.describe() if sample is not None else "all pixels"
    return pca_from_moments(moments, tuple(bands), n_components, desc)


def pca_from_moments(
    moments: Sequence[tuple[int, np.ndarray, np.ndarray]],
    bands: tuple[str, ...],
    n_components: int,
    sample: str,
) -> PCAFit:
    """Merge per-block ``(count, mean, centred cross-products)`` in order and diagonalise.

    Raises
    ------
    ValueError
        If fewer than ``len(bands) + 1`` pixels are valid in all bands.
    """
    total = (0, np.zeros(len(bands)), np.zeros((len(bands), len(bands))))
    for m in moments:
        total = _merge_moments(total, m)
    n, mean, m2 = total
    if n <= len(bands):
        raise ValueError(
            f"PCA of {list(bands)}: only {n} pixels are valid in all bands "
            f"(need more than {len(bands)}); is the scene covered by nodata?"
        )
    cov = m2 / (n - 1)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1][:n_components]
    comps = evecs[:, order].T.copy()
    signs = np.sign(comps[np.arange(len(comps)), np.argmax(np.abs(comps), axis=1)])
    comps *= signs[:, None]
    return PCAFit(
        bands=tuple(bands),
        mean=mean,
        components=comps,
        explained_variance=evals[order],
        total_variance=float(np.trace(cov)),
        n_samples=int(n),
        sample=sample,
    )


def _stack_bands(data: xr.Dataset | xr.DataArray, bands: tuple[str, ...]) -> xr.DataArray:
    if isinstance(data, xr.DataArray):
        missing = [b for b in bands if b not in data.coords["band"].values]
        if missing:
            raise ValueError(f"band stack lacks bands {missing}; has {list(data.band.values)}")
        return data.sel(band=list(bands))
    missing = [b for b in bands if b not in data.data_vars]
    if missing:
        raise ValueError(
            f"raw dataset lacks bands {missing} (has {sorted(map(str, data.data_vars))})"
        )
    return xr.concat([data[b].reset_coords(drop=True) for b in bands], dim="band").assign_coords(
        band=list(bands)
    )


# ------------------------------------------------------------------------ tasseled cap

TASSELED_CAP_S2: dict[str, dict[str, float]] = {
    "tc_brightness": dict(zip(S2_BANDS, (
        0.2381, 0.2569, 0.2934, 0.3020, 0.3099, 0.3740, 0.4180, 0.3580, 0.3834, 0.0103,
        0.0896, 0.0780,
    ), strict=True)),
    "tc_greenness": dict(zip(S2_BANDS, (
        -0.2266, -0.2818, -0.3020, -0.4283, -0.2959, 0.1602, 0.3127, 0.3138, 0.4261, 0.1454,
        -0.1341, -0.2538,
    ), strict=True)),
    "tc_wetness": dict(zip(S2_BANDS, (
        0.1825, 0.1763, 0.1615, 0.0486, 0.0170, 0.0223, 0.0219, -0.0755, -0.0910, -0.1369,
        -0.7701, -0.5293,
    ), strict=True)),
}  # fmt: skip
"""Sentinel-2 tasseled-cap coefficients of Shi & Xu (2019), IEEE JSTARS 12(10):4038-4048,
doi:10.1109/JSTARS.2019.2938388, derived for MSI **top-of-atmosphere** reflectance with all 13
bands. The B10 (cirrus) terms (0.0020, -0.0017, 0.0003) are dropped because L2A products have
no B10; for reflectance <= 1 this changes a component by at most 0.002."""

TASSELED_CAP_SOURCE = (
    "Shi & Xu 2019, IEEE JSTARS 12(10):4038-4048, doi:10.1109/JSTARS.2019.2938388 "
    "(TOA coefficients; B10 term dropped)"
)

# ---------------------------------------------------------------------------------- context


class FeatureContext:
    """The raw dataset and options, with a cache of intermediates shared between layers.

    Feature functions receive this object. Multi-layer intermediates (slope+aspect,
    coherence+phase, the three PCA scores) are built once and indexed.
    """

    def __init__(self, raw: xr.Dataset, options: FeatureOptions) -> None:
        self.raw = raw
        self.options = options
        self._cache: dict[str, Any] = {}

    def var(self, name: str) -> xr.DataArray:
        """Return a raw variable as a DataArray with only ``y``/``x`` coords (error if missing)."""
        if name not in self.raw.data_vars:
            raise KeyError(
                f"raw modality dataset has no variable {name!r} "
                f"(has {sorted(map(str, self.raw.data_vars))})"
            )
        v = self.raw[name]
        if v.dims != ("y", "x"):
            raise ValueError(f"raw variable {name!r} has dims {v.dims}, expected ('y', 'x')")
        return v.reset_coords(drop=True)

    def layer(self, name: str) -> xr.DataArray:
        """Any registry layer by name (cached)."""
        key = f"layer:{name}"
        if key not in self._cache:
            if name not in FEATURES:
                raise ValueError(f"unknown layer {name!r}; expected one of {list(ALL_LAYERS)}")
            arr = FEATURES[name](self).astype(np.float32).rename(name)
            arr.attrs = {}  # inherited attrs (e.g. the DEM's units on slope) would mislead
            self._cache[key] = arr
        return self._cache[key]

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        """Return ``self._cache[key]``, building it with ``build()`` on first use."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @property
    def pca(self) -> PCAFit:
        """The PCA fit (given in the options, or fitted on the region's S2 bands once)."""
        return self.cached(
            "pca",
            lambda: (
                self.options.pca
                or fit_pca(self.raw, _optical_bands(self.raw), 3, sample=PCASample())
            ),
        )

    def pixel_size(self) -> tuple[float, float]:
        """``(dx, dy)`` in metres from the ``x``/``y`` coordinates; the CRS must be metric."""
        crs = self._crs()
        if crs is not None:
            units = {ax.unit_name for ax in crs.axis_info}
            if crs.is_geographic or not units <= {"metre", "meter", "m"}:
                raise ValueError(
                    f"slope/aspect need a projected grid in metres; the raw dataset's CRS "
                    f"{crs.to_string()} has axis units {sorted(units)}"
                )
        x = self.raw["x"].values
        y = self.raw["y"].values
        if len(x) < 2 or len(y) < 2:
            raise ValueError(f"grid too small for slope/aspect: {len(y)} x {len(x)} pixels")
        return float(abs(x[1] - x[0])), float(abs(y[1] - y[0]))

    def _crs(self) -> CRS | None:
        grid = self.raw.attrs.get("grid")
        if isinstance(grid, Mapping) and "crs" in grid:
            return CRS.from_user_input(grid["crs"])
        try:
            import rioxarray  # noqa: F401  (registers the .rio accessor)

            crs = self.raw.rio.crs
        except Exception:  # rioxarray missing, or no CRS recorded
            crs = None
        return CRS.from_user_input(crs) if crs is not None else None


# ------------------------------------------------------------------------ feature functions


def _band(name: str) -> Callable[[FeatureContext], xr.DataArray]:
    def f(ctx: FeatureContext) -> xr.DataArray:
        return ctx.var(name)

    f.__doc__ = f"Sentinel-2 {name} surface reflectance (passthrough)."
    return f


def _index(a: str, b: str) -> Callable[[FeatureContext], xr.DataArray]:
    def f(ctx: FeatureContext) -> xr.DataArray:
        return apply_kernel(normalized_difference, ctx.var(a), ctx.var(b))

    f.__doc__ = f"({a} - {b}) / ({a} + {b}); NaN where the sum is 0."
    return f


def _terrain(ctx: FeatureContext) -> xr.DataArray:
    def build() -> xr.DataArray:
        dx, dy = ctx.pixel_size()
        return apply_kernel(
            horn_slope_aspect,
            ctx.var("elevation").astype(np.float32),
            depth=1,
            boundary=ctx.options.edges,
            args=(dx, dy, float(ctx.options.flat_aspect)),
            outputs=("slope", "aspect"),
        )

    return ctx.cached("terrain", build)


def _glcm(ctx: FeatureContext) -> xr.DataArray:
    p = ctx.options.glcm
    src = ctx.layer(p.source) if p.source in FEATURES else ctx.var(p.source)
    return apply_kernel(
        glcm_dissimilarity,
        src.astype(np.float32),
        depth=p.window // 2,
        boundary=ctx.options.edges,
        args=(p.window, p.levels, *p.value_range, np.asarray(p.offsets, dtype=np.int64)),
    )


def glcm_texture(
    image: xr.DataArray,
    props: tuple[str, ...] = ("dissimilarity",),
    params: GLCMParams | None = None,
    *,
    symmetric: bool = False,
    edges: Boundary = "reflect",
) -> xr.DataArray:
    """Sliding-window GLCM texture properties of a 2-D image (NumPy- or Dask-backed).

    Parameters
    ----------
    image
        2-D ``(y, x)`` DataArray.
    props
        Names from :data:`glacierstack.kernels.GLCM_PROPERTIES` (scikit-image's
        ``graycoprops`` definitions). Dissimilarity alone uses the O(1)-per-pixel running-sum
        path; any other property uses the per-window co-occurrence matrix path
        (O(window^2) per pixel, 30-50x slower).
    params
        Window, levels, quantisation range and offsets (``params.source`` is ignored).
    symmetric
        ``graycomatrix(symmetric=...)``; irrelevant for contrast, dissimilarity, homogeneity.
    edges
        Edge rule, see :data:`glacierstack.dispatch.Boundary`.

    Returns
    -------
    xarray.DataArray
        float32 ``(property, y, x)``.
    """
    p = params or GLCMParams()
    unknown = [n for n in props if n not in GLCM_PROPERTIES]
    if unknown or not props:
        raise ValueError(f"unknown GLCM properties {unknown}; expected some of {GLCM_PROPERTIES}")
    off = np.asarray(p.offsets, dtype=np.int64)
    if tuple(props) == ("dissimilarity",):
        args: tuple[Any, ...] = (p.window, p.levels, *p.value_range, off)
        kernel = _dissimilarity_stack
    else:
        codes = np.array([GLCM_PROPERTIES.index(n) for n in props], dtype=np.int64)
        args = (p.window, p.levels, *p.value_range, off, codes, bool(symmetric))
        kernel = glcm_properties
    out = apply_kernel(
        kernel,
        image.astype(np.float32),
        depth=p.window // 2,
        boundary=edges,
        args=args,
        outputs=tuple(props),
    )
    return out.rename({"output": "property"})


def _dissimilarity_stack(*a: Any) -> np.ndarray:
    """GLCM dissimilarity with a leading property axis (module level: shipped by reference)."""
    return glcm_dissimilarity(*a)[None]


def _velocity(ctx: FeatureContext) -> xr.DataArray:
    if "velocity" in ctx.raw.data_vars:
        return ctx.var("velocity")
    if "vx" in ctx.raw.data_vars and "vy" in ctx.raw.data_vars:
        speed: xr.DataArray = xr.apply_ufunc(np.hypot, ctx.var("vx"), ctx.var("vy"), dask="allowed")
        return speed
    raise KeyError(
        "velocity layer needs 'velocity' or both 'vx' and 'vy' in the raw dataset "
        f"(has {sorted(map(str, ctx.raw.data_vars))})"
    )


def _insar(ctx: FeatureContext) -> xr.DataArray:
    def build() -> xr.DataArray:
        wy, wx = ctx.options.coherence_window
        return apply_kernel(
            boxcar_coherence,
            ctx.var("s1_ref"),
            ctx.var("s1_sec"),
            depth=(wy // 2, wx // 2),
            boundary=ctx.options.edges,
            args=(wy, wx),
            outputs=("coherence", "phase"),
        )

    return ctx.cached("insar", build)


def _has_pair(ctx: FeatureContext) -> bool:
    return "s1_ref" in ctx.raw.data_vars and "s1_sec" in ctx.raw.data_vars


def _coherence(ctx: FeatureContext) -> xr.DataArray:
    if _has_pair(ctx):
        return _insar(ctx).sel(output="coherence", drop=True)
    if "coherence" in ctx.raw.data_vars:
        return ctx.var("coherence")
    raise KeyError(
        "coherence layer needs 's1_ref' and 's1_sec' (complex pair) or a 'coherence' product "
        f"in the raw dataset (has {sorted(map(str, ctx.raw.data_vars))})"
    )


def _phase(ctx: FeatureContext) -> xr.DataArray:
    if _has_pair(ctx):
        return _insar(ctx).sel(output="phase", drop=True)
    if "phase" in ctx.raw.data_vars:
        return ctx.var("phase")
    raise KeyError(
        "phase layer needs 's1_ref' and 's1_sec' (complex pair) or a 'phase' product in the "
        f"raw dataset (has {sorted(map(str, ctx.raw.data_vars))})"
    )


def _pc(k: int) -> Callable[[FeatureContext], xr.DataArray]:
    def f(ctx: FeatureContext) -> xr.DataArray:
        scores = ctx.cached(
            "pca_scores", lambda: ctx.pca.transform(_stack_bands(ctx.raw, ctx.pca.bands))
        )
        return scores.sel(component=k, drop=True)

    f.__doc__ = f"Score on principal component {k} of the 12 S2 bands."
    return f


def tasseled_cap_coefficients(sensor: str | None) -> tuple[dict[str, dict[str, float]], str]:
    """Tasseled-cap coefficients ``{component: {slot: c}}`` of a sensor, and their source.

    ``None`` or a Sentinel-2 sensor: :data:`TASSELED_CAP_S2`; Landsat sensors: the published
    coefficients of :mod:`glacierstack.sensors`; others: ``({}, "")`` (not computable).
    """
    from glacierstack.sensors import COMMON_TO_SLOT, get_sensor

    if sensor is None or sensor.startswith("sentinel-2"):
        return TASSELED_CAP_S2, TASSELED_CAP_SOURCE
    spec = get_sensor(sensor)
    coefs = {
        comp: {COMMON_TO_SLOT[c]: v for c, v in row.items()}
        for comp, row in spec.tasseled_cap.items()
    }
    return coefs, spec.tasseled_cap_source


def tasseled_cap_inputs(sensor: str | None) -> tuple[str, ...]:
    """Optical slots the tasseled cap of ``sensor`` reads (empty: not defined)."""
    coefs, _ = tasseled_cap_coefficients(sensor)
    return tuple(next(iter(coefs.values()))) if coefs else ()


def _sensor(ctx: FeatureContext) -> str | None:
    sensor = ctx.raw.attrs.get("sensor")
    return str(sensor) if sensor else None


def _optical_bands(raw: xr.Dataset) -> tuple[str, ...]:
    return tuple(b for b in S2_BANDS if b in raw.data_vars)


def _tasseled_cap(name: str) -> Callable[[FeatureContext], xr.DataArray]:
    def f(ctx: FeatureContext) -> xr.DataArray:
        table, _ = tasseled_cap_coefficients(_sensor(ctx))
        if name not in table:
            raise KeyError(f"no tasseled-cap coefficients for sensor {_sensor(ctx)!r}")
        coefs = table[name]
        total: xr.DataArray | None = None
        for band, c in coefs.items():
            term = ctx.var(band).astype(np.float64) * c
            total = term if total is None else total + term
        assert total is not None
        return total

    f.__doc__ = f"Tasseled cap {name} (Shi & Xu 2019 coefficients, B10 dropped)."
    return f


FEATURES: dict[str, Callable[[FeatureContext], xr.DataArray]] = {
    **{b: _band(b) for b in S2_BANDS},
    "NDVI": _index("B08", "B04"),
    "NDSI": _index("B03", "B11"),
    "NDWI": _index("B03", "B08"),
    "NDGI": _index("B03", "B04"),
    "elevation": lambda ctx: ctx.var("elevation"),
    "slope": lambda ctx: _terrain(ctx).sel(output="slope", drop=True),
    "aspect": lambda ctx: _terrain(ctx).sel(output="aspect", drop=True),
    "lst": lambda ctx: ctx.var("lst"),
    "glcm_dissimilarity": _glcm,
    "velocity": _velocity,
    "coherence": _coherence,
    "phase": _phase,
    "PC1": _pc(1),
    "PC2": _pc(2),
    "PC3": _pc(3),
    **{name: _tasseled_cap(name) for name in TASSELED_CAP_S2},
}
"""Layer name -> feature function; one entry per name of :data:`ALL_LAYERS`."""

assert set(FEATURES) == set(ALL_LAYERS), set(FEATURES) ^ set(ALL_LAYERS)


# ---------------------------------------------------------------------------------- entry


def feature_params(options: FeatureOptions, pca: PCAFit | None, sensor: str | None) -> str:
    """JSON string of every parameter the layers used (the cube's ``feature_params`` attr)."""
    params: dict[str, Any] = {
        "glcm": asdict(options.glcm),
        "coherence_window": list(options.coherence_window),
        "edges": options.edges,
        "flat_aspect": options.flat_aspect,
        "tasseled_cap": tasseled_cap_coefficients(sensor)[1],
        "sensor": sensor,
        "indices": {"NDVI": "B08,B04", "NDSI": "B03,B11", "NDWI": "B03,B08", "NDGI": "B03,B04"},
    }
    if pca is not None:
        params["pca"] = pca.to_attrs()
    return json.dumps(params)


def feature_halo(options: FeatureOptions) -> int:
    """Pixels of context every layer needs around a tile (sum of all window radii).

    The sum, not the maximum, so that a windowed layer computed on another windowed layer
    (e.g. a texture of a PC layer built on a future windowed source) is still exact.
    """
    wy, wx = options.coherence_window
    return options.glcm.window // 2 + max(wy, wx) // 2 + 1  # texture + coherence + terrain


def compute_features(
    raw: xr.Dataset,
    layers: str | list[str] | tuple[str, ...] | None = None,
    options: FeatureOptions | None = None,
) -> xr.DataArray:
    """Compute the feature cube from a raw modality dataset.

    Parameters
    ----------
    raw
        Raw modality dataset (see ``docs/developer/contracts.md``): ``(y, x)`` variables in
        physical units with NaN for nodata, on a projected metric grid.
    layers
        Layer names and/or group names (:func:`glacierstack.layers.resolve_layers`);
        ``None`` for all 30. The output follows the canonical order.
    options
        Every other parameter, as one frozen :class:`FeatureOptions` (default
        ``FeatureOptions()``: GLCM on B08 7x7 with 32 levels, 5x5 coherence window,
        ``edges="reflect"``). Its ``pca`` may carry a PCA fitted elsewhere (e.g. on the
        training region) to project another region consistently; if it is ``None`` and a PCA
        layer (or a GLCM on a PC) is requested, the PCA is fitted on ``raw`` now, on a
        fixed-size spatial sample.

    Returns
    -------
    xarray.DataArray
        float32 ``(band, y, x)``, lazy when ``raw`` is; ``band`` = layer names. Attrs carry
        over ``grid``, ``stac_items`` and ``datetime`` from ``raw`` and add ``bands`` and
        ``feature_params`` (a JSON string with every parameter used, the tasseled-cap source
        and the PCA fit).

    Raises
    ------
    KeyError
        If a variable needed by a requested layer is missing (the message names it).
    ValueError
        For unknown layer names or invalid parameters.
    """
    names = resolve_layers(layers)
    options = options or FeatureOptions()
    ctx = FeatureContext(raw, options)
    arrays = []
    for name in names:
        try:
            arrays.append(ctx.layer(name))
        except KeyError as err:
            raise KeyError(f"cannot compute layer {name!r}: {err.args[0]}") from None
    cube = xr.concat(arrays, dim="band", coords="minimal", compat="override", join="override")
    cube = cube.assign_coords(band=list(names)).astype(np.float32)
    if "spatial_ref" in raw.coords:
        cube = cube.assign_coords(spatial_ref=raw.coords["spatial_ref"])
    pca_used = ctx.pca if "pca" in ctx._cache else None
    keep = {k: raw.attrs[k] for k in ("grid", "stac_items", "datetime") if k in raw.attrs}
    params = feature_params(options, pca_used, _sensor(ctx))
    cube.attrs = {**keep, "bands": list(names), "feature_params": params}
    cube.name = "features"
    return cube

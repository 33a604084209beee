"""Generate a synthetic region in memory or as a STAC catalog of COGs."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import rasterio
from tqdm.auto import tqdm

from glacierstack import storage
from glacierstack.grid import Grid
from glacierstack.synthetic.noise import fractal_noise, white_noise
from glacierstack.synthetic.outlines import debris_outlines, glacier_outlines, write_gpkg
from glacierstack.synthetic.presets import RegionPreset, get_preset
from glacierstack.synthetic.sample import block_mean, upsample
from glacierstack.synthetic.sar import backscatter, slc_pair, true_coherence
from glacierstack.synthetic.scene import Scene, build_scene
from glacierstack.synthetic.sensors import (
    DEM_ENCODING,
    LABEL_ENCODING,
    LST_ENCODING,
    S2_ENCODING,
    S2_NOISE_ABSOLUTE,
    S2_NOISE_RELATIVE,
    SLC_ENCODING,
    VELOCITY_ENCODING,
    s2_band_values,
)
from glacierstack.synthetic.spectra import S2_BANDS
from glacierstack.synthetic.stac import COG, GPKG, AssetSpec, ItemSpec, write_catalog
from glacierstack.synthetic.surfaces import render_surface
from glacierstack.synthetic.thermal import sensor_smooth, surface_temperature
from glacierstack.synthetic.writer import CogWriter, write_cog

BLOCK = 480
"""Side of a processing block in 10 m pixels (a multiple of 12 so all grids nest)."""
S1_REPEAT_DAYS = 24
ITS_LIVE_GAP_FRACTION = 0.03
"""Approximate share of ITS_LIVE cells without a velocity (nodata)."""
ITS_LIVE_NOISE = 2.0
"""Velocity noise per component (m/yr, 1 sigma)."""
LST_NOISE = 0.3
"""Landsat ST noise (K, 1 sigma) per 30 m pixel."""
DEM_NOISE = 1.5
"""DEM noise (m, 1 sigma)."""
GDAL_CACHE_MB = 96
"""GDAL block cache while writing (MB)."""


@dataclass(frozen=True)
class SyntheticRegion:
    """A generated region on disk."""

    catalog_path: Path
    """The root ``catalog.json`` of the static STAC catalog."""
    grid: Grid
    """The 10 m UTM grid of the region."""
    datetime: str
    """A STAC search window ``"start/end"`` (dates) around all acquisitions."""
    preset: str
    """Preset name."""
    truth_labels: Path
    """The exact 5-class label COG (uint8, nodata 255)."""
    glacier_outlines: Path
    """RGI-like glacier outlines (GeoPackage, EPSG:4326)."""
    debris_outlines: Path
    """Debris outlines (GeoPackage, EPSG:4326)."""


@dataclass(frozen=True)
class SyntheticArrays:
    """The true fields of a region on its 10 m grid, in memory (for tests and examples)."""

    grid: Grid
    labels: np.ndarray
    """uint8 5-class truth."""
    elevation: np.ndarray
    """Elevation (m; bilinear from the 30 m DEM)."""
    slope: np.ndarray
    """Slope (degrees)."""
    reflectance: np.ndarray
    """``(12, h, w)`` float32 S2 L2A reflectance of all 12 bands at 10 m, with sensor noise."""
    band_names: tuple[str, ...]
    """Names of the reflectance bands (``B01`` .. ``B12``)."""
    lst: np.ndarray
    """Surface temperature (K) at 10 m (before the ~100 m TIRS blur)."""
    coherence: np.ndarray
    """True 24-day interferometric coherence."""
    velocity: np.ndarray
    """Ice surface speed (m/yr; 0 off-glacier, no noise)."""
    vx: np.ndarray
    vy: np.ndarray
    illumination: np.ndarray
    """Irradiance factor (1 on flat sunlit ground, ~0.15 in cast shadow)."""
    snow_fraction: np.ndarray
    """Seasonal snow cover of background pixels (0..1)."""


def generate_arrays(
    preset: str | RegionPreset = "poiqu",
    size_km: float = 2.0,
    seed: int = 0,
    year: int | None = None,
) -> SyntheticArrays:
    """Generate the true 10 m fields of a (small) region in memory, without writing files.

    Uses the same scene and rendering code as :func:`generate_region`, so the arrays equal the
    decoded 10 m products up to quantisation (and, for bands coarser than 10 m, aggregation).
    Memory grows with the region: about 100 bytes per 10 m pixel (keep ``size_km`` below ~5).

    Parameters
    ----------
    preset
        ``"poiqu"`` or ``"montblanc"`` (or a :class:`RegionPreset`).
    size_km
        Side of the square region (km).
    seed
        Random seed.
    year
        Observation year (default: the preset's); later years have retreated glaciers on the
        same terrain (see :func:`~glacierstack.synthetic.scene.build_scene`).
    """
    scene = build_scene(preset, size_km, seed, year)
    h, w = scene.grid.shape
    window = (0, 0, h, w)
    surf = render_surface(scene, window)
    lst = surface_temperature(surf, scene.preset.lst_reference_elevation, seed, window)
    coh = true_coherence(surf, seed, window)
    # the sensor noise of the 10 m bands (same streams as the written product), at 10 m for all
    noisy = np.empty_like(surf.reflectance)
    for k, band in enumerate(S2_BANDS):
        n1 = white_noise(seed, f"s2/{band.name}/rel", window)
        n2 = white_noise(seed, f"s2/{band.name}/abs", window)
        noisy[k] = surf.reflectance[k] * (1 + S2_NOISE_RELATIVE * n1) + S2_NOISE_ABSOLUTE * n2
    return SyntheticArrays(
        grid=scene.grid,
        labels=surf.labels,
        elevation=surf.elevation,
        slope=np.degrees(surf.slope).astype(np.float32),
        reflectance=noisy,
        band_names=tuple(b.name for b in S2_BANDS),
        lst=lst,
        coherence=coh,
        velocity=surf.speed,
        vx=surf.vx,
        vy=surf.vy,
        illumination=surf.illumination,
        snow_fraction=surf.snow_fraction,
    )


# ---------------------------------------------------------------------------------- dates
def _dates(p: RegionPreset) -> dict[str, dt.datetime]:
    t0 = dt.datetime.combine(p.date, p.utc_time, tzinfo=dt.UTC)
    half = dt.timedelta(days=S1_REPEAT_DAYS / 2)
    return {
        "s2": t0,
        "s1_ref": t0 - half + dt.timedelta(minutes=7),
        "s1_sec": t0 + half + dt.timedelta(minutes=7),
        "landsat_w": t0 - dt.timedelta(days=3) + dt.timedelta(minutes=20),
        "landsat_e": t0 + dt.timedelta(days=4) + dt.timedelta(minutes=20),
    }


def search_window(preset: str | RegionPreset) -> str:
    """STAC ``datetime`` window (``"YYYY-MM-DD/YYYY-MM-DD"``) holding every acquisition."""
    p = get_preset(preset)
    return f"{p.date - dt.timedelta(days=25):%Y-%m-%d}/{p.date + dt.timedelta(days=26):%Y-%m-%d}"


# ---------------------------------------------------------------------------------- writer
def _blocks(shape: tuple[int, int], block: int) -> list[tuple[int, int, int, int]]:
    h, w = shape
    return [
        (r, c, min(block, h - r), min(block, w - c))
        for r in range(0, h, block)
        for c in range(0, w, block)
    ]


def _sub_grid(grid: Grid, col0: int, col1: int) -> Grid:
    r = grid.resolution
    x0 = grid.bounds[0] + col0 * r
    return Grid(grid.crs, (x0, grid.bounds[1], grid.bounds[0] + col1 * r, grid.bounds[3]), r)


def is_synthetic_region(path: Path) -> bool:
    """Whether ``path`` is a folder written by :func:`generate_region` (safe to replace)."""
    cat = path / "catalog.json"
    try:
        return str(json.loads(cat.read_text()).get("id", "")).startswith("synthetic-")
    except (OSError, ValueError, AttributeError):
        return False


def generate_region(
    preset: str,
    out: str | Path,
    size_km: float = 20.0,
    seed: int = 0,
    resolution: float = 10.0,
    overwrite: bool = False,
    progress: bool = True,
    year: int | None = None,
) -> SyntheticRegion:
    """Generate a synthetic multi-modal glacier region as COGs plus a static STAC catalog.

    The region is built in a scratch folder next to ``out`` and moved into place only when
    complete, so a failed run never leaves a catalog that looks finished.

    Parameters
    ----------
    preset
        ``"poiqu"`` (central Himalaya) or ``"montblanc"`` (Alps); see
        :data:`glacierstack.synthetic.PRESETS`.
    out
        Output folder (``out/catalog.json`` and one sub-folder per collection).
    size_km
        Side of the square region (km), snapped to a multiple of 120 m.
    seed
        Random seed: the same ``(preset, size_km, seed)`` gives byte-identical files.
    resolution
        Grid resolution of the region (m); Sentinel-2's 10 m is the only supported value.
    overwrite
        Replace an existing ``out`` folder.
    progress
        Show a progress bar.
    year
        Observation year (default: the preset's, 2018). Another year gives the same terrain,
        vegetation, snow and noise with the glaciers of an ELA raised by
        ``ela_rise_per_year`` (6 m/yr by default) per year: retreated termini, smaller
        accumulation areas. Acquisition dates move to that year.

    Returns
    -------
    SyntheticRegion
        Paths, grid and search window of the generated region.
    """
    if resolution != 10.0:
        raise ValueError(
            f"synthetic regions are generated on the 10 m Sentinel-2 grid; resolution={resolution}"
            " is not supported"
        )
    p = get_preset(preset)
    if year is not None:
        p = p.at_year(year)
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"output folder {out} exists; pass overwrite=True to replace it")
    if out.exists() and not is_synthetic_region(out):
        raise storage.ForeignStoreError(
            f"{out} exists and is not a synthetic region (no catalog.json with a 'synthetic-' "
            "id); refusing to replace it, choose another folder"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    for debris in storage.scratch_debris(out, "partial"):  # left by a killed run
        storage.remove_scratch(debris)
    stage = out.resolve().parent / f".{out.name}.partial-{os.getpid()}"
    storage.remove_scratch(stage)
    stage.mkdir()
    try:
        # a bounded GDAL block cache: windowed writes must not pile up in memory
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            items, truth_paths, grid = _write_products(p, stage, size_km, seed, progress)
        write_catalog(
            stage,
            f"synthetic-{p.name}",
            f"Synthetic multi-modal glacier region '{p.name}' ({p.description}); "
            f"size {grid.shape[1] * grid.resolution / 1000:g} km, seed {seed}.",
            items,
        )
        storage.replace_folder(stage, out, owned=is_synthetic_region, what="a synthetic region")
    except BaseException:
        storage.remove_scratch(stage)
        raise
    return SyntheticRegion(
        catalog_path=out / "catalog.json",
        grid=grid,
        datetime=search_window(p),
        preset=p.name,
        truth_labels=out / truth_paths[0].relative_to(stage),
        glacier_outlines=out / truth_paths[1].relative_to(stage),
        debris_outlines=out / truth_paths[2].relative_to(stage),
    )


def _write_products(
    p: RegionPreset, root: Path, size_km: float, seed: int, progress: bool
) -> tuple[list[ItemSpec], tuple[Path, Path, Path], Grid]:
    scene = build_scene(p, size_km, seed)
    grid = scene.grid
    dates = _dates(p)
    tag = f"{p.date:%Y%m%d}"
    zone = int(p.crs[-2:])
    lat_band = "CDEFGHJKLMNPQRSTUVWXX"[int((p.lat + 80) // 8)]
    ids = {
        "s2": f"S2B_{zone}{lat_band}SYN_{tag}_0_L2A",
        "dem": f"Copernicus_DSM_COG_10_N{int(p.lat):02d}_00_E{int(p.lon):03d}_00_DEM_SYN",
        "lw": f"LC08_L2SP_SYNW{zone:02d}_{dates['landsat_w']:%Y%m%d}_02_T1",
        "le": f"LC08_L2SP_SYNE{zone:02d}_{dates['landsat_e']:%Y%m%d}_02_T1",
        "vel": f"ITS_LIVE_velocity_120m_{p.name}_{p.date.year}_SYN",
        "s1r": f"S1B_IW_SLC__1SDV_{dates['s1_ref']:%Y%m%dT%H%M%S}_SYN",
        "s1s": f"S1B_IW_SLC__1SDV_{dates['s1_sec']:%Y%m%dT%H%M%S}_SYN",
        "truth": f"{p.name}-truth-{grid.shape[1] * grid.resolution / 1000:g}km-seed{seed}",
    }

    def item_dir(collection: str, key: str) -> Path:
        d = root / collection / ids[key]
        d.mkdir(parents=True, exist_ok=True)
        return d

    s2_dir = item_dir("sentinel-2-l2a", "s2")
    s2_grids = {r: grid.with_resolution(r) for r in (10, 20, 60)}
    writers: dict[str, CogWriter] = {}
    for b in S2_BANDS:
        writers[b.name] = CogWriter(s2_dir / f"{b.name}.tif", s2_grids[b.resolution], S2_ENCODING)
    label_path = item_dir("synthetic-truth", "truth") / "labels.tif"
    writers["labels"] = CogWriter(label_path, grid, LABEL_ENCODING, "MODE")
    s1_paths = {
        "s1r": item_dir("sentinel-1-slc", "s1r") / "vv.tif",
        "s1s": item_dir("sentinel-1-slc", "s1s") / "vv.tif",
    }
    for k, path in s1_paths.items():
        writers[k] = CogWriter(path, grid, SLC_ENCODING, "NEAREST")
    coarse = scene.coarse
    t30 = np.zeros(coarse.shape, np.float64)
    try:
        blocks = _blocks(grid.shape, BLOCK)
        for window in tqdm(blocks, desc=f"synth {p.name}", disable=not progress, unit="block"):
            _render_block(scene, window, writers, t30)
        for wr in tqdm(
            list(writers.values()), desc="COGs", disable=not progress, unit="file", leave=False
        ):
            wr.finish()
    except BaseException:
        for wr in writers.values():
            wr.abort()
        raise

    rng = np.random.default_rng(np.random.SeedSequence([seed, 30]))
    # Copernicus DEM
    dem = scene.z + DEM_NOISE * rng.standard_normal(scene.z.shape)
    dem_path = item_dir("cop-dem-glo-30", "dem") / "data.tif"
    write_cog(dem_path, coarse, DEM_ENCODING, DEM_ENCODING.encode(dem))
    # Landsat ST_B10: two adjacent overlapping scenes, blurred to the TIRS footprint
    t_sensor = sensor_smooth(t30)
    h30, w30 = coarse.shape
    split = {"lw": (0, math.ceil(0.6 * w30)), "le": (math.floor(0.4 * w30), w30)}
    landsat = {}
    for key, bias in (("lw", 0.4), ("le", -0.3)):
        c0, c1 = split[key]
        sub = t_sensor[:, c0:c1] + bias + LST_NOISE * rng.standard_normal((h30, c1 - c0))
        g = _sub_grid(coarse, c0, c1)
        path = item_dir("landsat-c2-l2", key) / "lwir11.tif"
        write_cog(path, g, LST_ENCODING, LST_ENCODING.encode(sub))
        landsat[key] = (path, g)
    # ITS_LIVE 120 m velocity with noise and gaps
    vel_grid = grid.with_resolution(120)
    vx = block_mean(scene.glaciers.vx, 4) + ITS_LIVE_NOISE * rng.standard_normal(vel_grid.shape)
    vy = block_mean(scene.glaciers.vy, 4) + ITS_LIVE_NOISE * rng.standard_normal(vel_grid.shape)
    # blobs of a standardised Gaussian field above its (1 - gap fraction) quantile
    gaps = fractal_noise(rng, vel_grid.shape, 3.0) > NormalDist().inv_cdf(1 - ITS_LIVE_GAP_FRACTION)
    vel_dir = item_dir("its-live-velocity", "vel")
    vel_paths = {}
    for key, arr in (("v", np.hypot(vx, vy)), ("vx", vx), ("vy", vy)):
        stored = VELOCITY_ENCODING.encode(arr)
        stored[gaps] = VELOCITY_ENCODING.nodata
        vel_paths[key] = write_cog(vel_dir / f"{key}.tif", vel_grid, VELOCITY_ENCODING, stored)
    # truth outlines
    with rasterio.open(label_path) as ds:
        labels = ds.read(1)
    truth_dir = label_path.parent
    go_path = truth_dir / "glacier_outlines.gpkg"
    do_path = truth_dir / "debris_outlines.gpkg"
    write_gpkg(
        glacier_outlines(labels, grid, scene.downvalley_azimuth, p.name, scene.vertical_scale),
        go_path,
        "glaciers",
    )
    write_gpkg(debris_outlines(labels, grid, p.name), do_path, "debris")
    del labels

    items = _item_specs(
        p,
        scene,
        ids,
        dates,
        s2_dir,
        s2_grids,
        dem_path,
        landsat,
        vel_paths,
        vel_grid,
        s1_paths,
        (label_path, go_path, do_path),
    )
    return items, (label_path, go_path, do_path), grid


def _item_specs(
    p,
    scene: Scene,
    ids,
    dates,
    s2_dir,
    s2_grids,
    dem_path,
    landsat,
    vel_paths,
    vel_grid,
    s1_paths,
    truth,
) -> list[ItemSpec]:  # noqa: ANN001
    grid, coarse = scene.grid, scene.coarse
    s2_assets = tuple(
        AssetSpec(
            key=b.asset,
            path=s2_dir / f"{b.name}.tif",
            media_type=COG,
            title=f"{b.name} ({b.asset}) - {b.resolution}m",
            roles=("data", "reflectance"),
            grid=s2_grids[b.resolution],
            encoding=S2_ENCODING,
            eo_band={
                "name": b.name,
                "common_name": b.common_name,
                "center_wavelength": b.center_wavelength,
                "full_width_half_max": b.full_width_half_max,
            },
        )
        for b in S2_BANDS
    )
    common = {"synthetic:preset": p.name, "synthetic:seed": scene.seed}
    items = [
        ItemSpec(
            "sentinel-2-l2a",
            ids["s2"],
            dates["s2"],
            s2_assets,
            {
                **common,
                "platform": "sentinel-2b",
                "constellation": "sentinel-2",
                "instruments": ["msi"],
                "eo:cloud_cover": 0.0,
                "s2:processing_baseline": "05.00",
                "view:sun_elevation": 90.0 - p.sun_zenith,
                "view:sun_azimuth": p.sun_azimuth,
                "gsd": 10,
            },
        ),
        ItemSpec(
            "cop-dem-glo-30",
            ids["dem"],
            dt.datetime(2021, 4, 22, tzinfo=dt.UTC),
            (AssetSpec("data", dem_path, COG, "Elevation (m)", ("data",), coarse, DEM_ENCODING),),
            {
                **common,
                "start_datetime": "2011-01-01T00:00:00Z",
                "end_datetime": "2015-01-07T00:00:00Z",
                "platform": "tandem-x",
                "gsd": 30,
            },
        ),
    ]
    for key in ("lw", "le"):
        path, g = landsat[key]
        items.append(
            ItemSpec(
                "landsat-c2-l2",
                ids[key],
                dates["landsat_w" if key == "lw" else "landsat_e"],
                (
                    AssetSpec(
                        "lwir11",
                        path,
                        COG,
                        "Surface temperature band (ST_B10)",
                        ("data", "temperature"),
                        g,
                        LST_ENCODING,
                    ),
                ),
                {
                    **common,
                    "platform": "landsat-8",
                    "instruments": ["oli", "tirs"],
                    "eo:cloud_cover": 0.0,
                    "landsat:collection_category": "T1",
                },
            )
        )
    items.append(
        ItemSpec(
            "its-live-velocity",
            ids["vel"],
            dt.datetime(2018, 7, 2, 12, tzinfo=dt.UTC),
            tuple(
                AssetSpec(
                    k, vel_paths[k], COG, f"{k} (m/yr)", ("data",), vel_grid, VELOCITY_ENCODING
                )
                for k in ("v", "vx", "vy")
            ),
            {
                **common,
                "start_datetime": "2018-01-01T00:00:00Z",
                "end_datetime": "2018-12-31T23:59:59Z",
            },
        )
    )
    for key, dkey in (("s1r", "s1_ref"), ("s1s", "s1_sec")):
        items.append(
            ItemSpec(
                "sentinel-1-slc",
                ids[key],
                dates[dkey],
                (
                    AssetSpec(
                        "vv",
                        s1_paths[key],
                        COG,
                        "VV single-look complex (co-registered)",
                        ("data",),
                        grid,
                        SLC_ENCODING,
                    ),
                ),
                {
                    **common,
                    "platform": "sentinel-1b",
                    "constellation": "sentinel-1",
                    "sar:instrument_mode": "IW",
                    "sar:frequency_band": "C",
                    "sar:polarizations": ["VV"],
                    "sar:product_type": "SLC",
                    "sat:relative_orbit": 85,
                },
            )
        )
    label_path, go_path, do_path = truth
    items.append(
        ItemSpec(
            "synthetic-truth",
            ids["truth"],
            dates["s2"],
            (
                AssetSpec(
                    "labels",
                    label_path,
                    COG,
                    "Class labels (0 background, 1 clean ice, 2 debris, 3 water, 4 vegetation)",
                    ("data", "labels"),
                    grid,
                    LABEL_ENCODING,
                ),
                AssetSpec(
                    "glacier_outlines",
                    go_path,
                    GPKG,
                    "RGI-like glacier outlines (EPSG:4326)",
                    ("data", "labels"),
                ),
                AssetSpec(
                    "debris_outlines",
                    do_path,
                    GPKG,
                    "Debris outlines (EPSG:4326)",
                    ("data", "labels"),
                ),
            ),
            {**common, "synthetic:downvalley_azimuth": scene.downvalley_azimuth},
            footprint=grid,
        )
    )
    return items


def _render_block(
    scene: Scene,
    window: tuple[int, int, int, int],
    writers: dict[str, CogWriter],
    t30: np.ndarray,
) -> None:
    seed = scene.seed
    r0, c0, h, w = window
    surf = render_surface(scene, window)
    writers["labels"].write(surf.labels, r0, c0)
    vals = s2_band_values(surf.reflectance, window, seed)
    for band in S2_BANDS:
        f = band.resolution // 10
        writers[band.name].write(S2_ENCODING.encode(vals[band.name]), r0 // f, c0 // f)
    lst = surface_temperature(surf, scene.preset.lst_reference_elevation, seed, window)
    t30[r0 // 3 : (r0 + h) // 3, c0 // 3 : (c0 + w) // 3] = block_mean(lst.astype(np.float64), 3)
    gamma = true_coherence(surf, seed, window)
    sigma0 = backscatter(surf, seed, window)
    phase = upsample(scene.phase, window, 3)
    s1, s2 = slc_pair(gamma, sigma0, phase, seed, window)
    writers["s1r"].write(s1, r0, c0)
    writers["s1s"].write(s2, r0, c0)

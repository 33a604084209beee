"""Glaciers on the coarse grid: mass balance, ice-flux routing, outlines, debris, velocity, lakes.

Physical rules (steady-state "balance flux" glaciers):

* Surface mass balance ``b(z) = gradient * (z - ELA)`` (m ice eq./yr), capped at
  ``max_accumulation`` above the ELA and at -8 m/yr below it.
* Ice flux is routed downslope along the D8 flow network of the filled DEM. Each cell adds
  ``b * cell_area`` (above the ELA, including avalanche input from steep headwalls); below the
  ELA an ice-bearing flow line loses ``b * cell_area * n`` where ``n`` is the tongue width in
  cells, so the tongue ends where the cumulative balance of its catchment reaches zero (the
  terminus of a glacier in balance with its climate).
* Tongue half-width grows with the square root of the flux (``w = c_w * sqrt(Q)``); the ice
  surface is smoothed (ice fills the trough), so glacier surfaces are gentler than rock walls.
* Balance velocity ``u = Q / (2 w H)`` with thickness ``H = 40 m + 0.1 * 2w``, decreasing
  towards the margins as ``1 - (d / w)^4``; near-stagnant at termini where ``Q -> 0``.
* Debris covers the lower ablation zone where the remaining flux fraction ``Q / Q_peak`` is
  below ``debris_fraction`` (debris melts out and accumulates towards the terminus; thickness
  grows down-glacier), plus medial moraines downstream of confluences of two comparable ice
  streams, at the lateral position that splits the flux in the tributaries' proportion.
* Proglacial lakes fill flat depressions just beyond large termini (moraine-dammed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage

from glacierstack.synthetic.presets import RegionPreset

MIN_GLACIER_AREA = 0.05e6
"""Smallest glacier kept (m², scaled by the vertical compression squared for small regions);
smaller ice bodies are treated as snow patches."""
DEBRIS_MELT_FACTOR = 0.35
"""Melt under debris relative to clean ice (thick debris insulates; Ostrem 1959)."""


@dataclass(frozen=True)
class GlacierFields:
    """Coarse-grid glacier fields (all float64 arrays on the coarse grid)."""

    glacier: np.ndarray
    """Signed distance-like glacier field (m): > 0 inside the glacier."""
    debris: np.ndarray
    """Debris indicator (dimensionless, roughly -1..1): > 0 debris-covered (inside the glacier)."""
    moraine: np.ndarray
    """Medial-moraine field (m): > 0 on a moraine stripe."""
    thickness: np.ndarray
    """Relative debris thickness 0..1 (thin near the upper debris limit)."""
    vx: np.ndarray
    """Eastward ice velocity (m/yr)."""
    vy: np.ndarray
    """Northward ice velocity (m/yr)."""
    lake: np.ndarray
    """Signed lake field (m): > 0 in a lake."""
    z: np.ndarray
    """DEM after ice-surface smoothing and lake flattening (m)."""
    termini: int
    """Number of glacier termini inside the region."""
    lakes: int
    """Number of lakes made."""


@numba.njit(cache=True)
def _route_flux(
    order, rec, b, cell_area, dx, c_w, ncols, debris_frac, debris_melt
):  # pragma: no cover - numba
    n = b.size
    qin = np.zeros(n)
    q = np.zeros(n)
    qpeak = np.zeros(n)
    # two largest donors to each cell and on which side they arrive
    left = np.zeros(n)
    right = np.zeros(n)
    straight = np.zeros(n)
    mflag = np.zeros(n, np.bool_)
    mfrac = np.zeros(n)
    for c in order:
        qi = qin[c]
        if b[c] >= 0.0:
            qc = qi + b[c] * cell_area
        elif qi > 0.0:
            ncell = max(1.0, 2.0 * c_w * math.sqrt(qi) / dx)
            melt = b[c]
            if qi < debris_frac * qpeak[c]:
                melt *= debris_melt  # insulating debris cover (Ostrem curve)
            qc = qi + melt * cell_area * ncell
        else:
            qc = 0.0
        q[c] = qc
        if qc > qpeak[c]:
            qpeak[c] = qc
        # is this cell a confluence of two comparable streams?
        tot = left[c] + right[c] + straight[c]
        if tot > 0.0:
            lft = left[c] + 0.5 * straight[c]
            fl = lft / tot
            if min(left[c], right[c]) > 0.2 * tot:
                mflag[c] = True
                mfrac[c] = fl
        r = rec[c]
        if r < 0 or qc <= 0.0:
            continue
        qin[r] += qc
        if qpeak[c] > qpeak[r]:
            qpeak[r] = qpeak[c]
        # side of c relative to the flow direction at r (r -> rec[r])
        rr = rec[r]
        if rr >= 0:
            fx = (rr % ncols) - (r % ncols)
            fy = -((rr // ncols) - (r // ncols))
            px = (c % ncols) - (r % ncols)
            py = -((c // ncols) - (r // ncols))
            cross = fx * py - fy * px
            if cross > 0:
                left[r] += qc
            elif cross < 0:
                right[r] += qc
            else:
                straight[r] += qc
        else:
            straight[r] += qc
        # a moraine travels on with the main stream
        if mflag[c] and not mflag[r] and qc > 0.5 * qin[r]:
            mflag[r] = True
            mfrac[r] = mfrac[c]
    return q, qpeak, mflag, mfrac


def make_glaciers(
    preset: RegionPreset,
    z: np.ndarray,
    filled: np.ndarray,
    rec: np.ndarray,
    order: np.ndarray,
    dx: float,
    size_km: float,
    rng: np.random.Generator,
) -> GlacierFields:
    """Compute glacier, debris, velocity and lake fields on the coarse grid.

    Parameters
    ----------
    preset
        Region preset (ELA, mass-balance gradient, debris fraction, lake probability).
    z, filled, rec, order
        Coarse DEM (m), its depression-filled copy, D8 receivers and high-to-low order
        (:func:`glacierstack.synthetic.routing.route`).
    dx
        Coarse cell size (m).
    size_km
        Region size (elevations are compressed around the ELA for small regions).
    rng
        Seeded generator (lake placement and shapes).
    """
    h, w = z.shape
    s = preset.vertical_scale(size_km)
    # a later year (RegionPreset.at_year) raises the ELA; compressed like every elevation
    ela = preset.ela + preset.ela_offset * s
    from glacierstack.synthetic.terrain import slope_aspect

    slope, _ = slope_aspect(z, dx)
    # the same climate in a vertically compressed region: steeper gradient
    b = np.clip(preset.mass_balance_gradient / s * (z - ela), -8.0, preset.max_accumulation)
    c_w = 0.2  # m per sqrt(m^3/yr): Q = 2.5e6 m^3/yr -> w ~ 320 m half-width
    q, qpeak, mflag, mfrac = _route_flux(
        order, rec, b.ravel(), dx * dx, dx, c_w, w, preset.debris_fraction, DEBRIS_MELT_FACTOR
    )
    q = q.reshape(h, w)
    qpeak = qpeak.reshape(h, w)
    mflag = mflag.reshape(h, w)
    mfrac = mfrac.reshape(h, w)

    # accumulation area: above the ELA and not a steep headwall
    # accumulation area: above the ELA, in hollows or on gentle slopes; convex ridges and steep
    # headwalls stay rock (wind and avalanches remove the snow, which still feeds the flux)
    upstream_cells = q / (dx * dx * preset.max_accumulation)
    gentle = (slope < math.radians(32.0)) & ((upstream_cells > 12.0) | (slope < math.radians(12.0)))
    acc = (b >= 0) & (gentle | ((slope < math.radians(42.0)) & (upstream_cells > 60.0)))
    acc = ndimage.gaussian_filter(acc.astype(np.float64), 1.5) > 0.5
    acc = ndimage.binary_opening(acc, iterations=2)
    acc = ndimage.binary_closing(acc, iterations=2) & (b >= 0)
    sd_acc = (ndimage.distance_transform_edt(acc) - ndimage.distance_transform_edt(~acc)) * dx
    # flow lines that carry ice: half-width from the flux
    q_min = 0.3 * dx * dx * 20  # ~20 cells of accumulation
    centre = q > q_min
    if not centre.any():
        centre[np.unravel_index(np.argmax(q), q.shape)] = True
    half_w = np.clip(c_w * np.sqrt(np.maximum(q, 0.0)), dx, 60 * dx)
    dist, (ir, ic) = ndimage.distance_transform_edt(~centre, return_indices=True)
    dist = dist * dx
    wn = half_w[ir, ic]
    zc = z[ir, ic]
    # tongue: within the flux-dependent half-width, and not climbing the trough walls
    g_tongue = np.minimum(wn - dist, 40.0 + 0.6 * dist - (z - zc))
    # above the ELA only the main flow lines (not every gully) carry ice beyond the basins
    main = q[ir, ic] > 5.0 * q_min
    g_tongue = np.where((b < 0) | ((slope < math.radians(40.0)) & main), g_tongue, -dx)
    glacier = np.maximum(sd_acc, g_tongue)
    glacier = ndimage.gaussian_filter(glacier, 1.0)
    # drop glacierets smaller than ~0.05 km2 (snow patches, not glaciers)
    comp, n_comp = ndimage.label(glacier > 0)
    if n_comp:
        sizes = np.bincount(comp.ravel())
        small = (sizes * dx * dx < MIN_GLACIER_AREA * s**2) & (np.arange(n_comp + 1) > 0)
        glacier = np.where(small[comp], np.minimum(glacier, -dx), glacier)
    inside = glacier > 0

    # ice surface: smoother than the rock it fills
    wgt = ndimage.gaussian_filter(np.clip(glacier / (2 * dx), 0.0, 1.0), 1.0)
    z_smooth = ndimage.gaussian_filter(z, 3.0)
    z_ice = z * (1 - wgt) + np.maximum(z_smooth, z - 30.0) * wgt

    # flow direction from the smoothed ice surface
    zs = ndimage.gaussian_filter(z_ice, 4.0)
    dzdy, dzdx = np.gradient(zs, dx)
    gx, gy = -dzdx, dzdy  # downslope (east, north)
    norm = np.hypot(gx, gy) + 1e-9
    ux, uy = gx / norm, gy / norm

    # balance velocity along the centre lines, plug-flow-like lateral profile
    qn = np.maximum(q[ir, ic], 0.0)
    width = 2.0 * wn
    thick = 40.0 + 0.1 * width
    u_c = np.minimum(qn / (width * thick), 180.0)
    # debris-covered tongues are thinning, out of balance and near-stagnant towards the terminus
    ratio = qn / np.maximum(qpeak[ir, ic], 1e-9)
    df = preset.debris_fraction
    u_c = u_c * np.clip(ratio / max(df, 1e-3), 0.0, 1.0) ** 2.5
    prof = np.clip(1.0 - (dist / np.maximum(wn, dx)) ** 4, 0.0, 1.0)
    speed = np.where(inside, u_c * prof + 1.5, 0.0)
    speed = ndimage.gaussian_filter(speed, 1.0) * inside

    # debris: lower ablation zone (remaining flux fraction below debris_fraction)
    ablation = (ela - z_ice) / (300.0 * s)
    debris = np.minimum((df - ratio) / max(df, 0.05), ablation)
    debris = np.where(inside & (b < 0), debris, -1.0)
    thickness = np.clip((df - ratio) / max(df, 0.05) * 2.0, 0.0, 1.0)

    # medial moraines: lateral offset of the seam between two merged streams
    fx = np.where(centre, ux, 0.0)[ir, ic]
    fy = np.where(centre, uy, 0.0)[ir, ic]
    px = (np.arange(w)[None, :] - ic) * dx
    py = -(np.arange(h)[:, None] - ir) * dx
    lateral = fx * py - fy * px  # + to the left of the flow
    seam = wn * (1.0 - 2.0 * mfrac[ir, ic])
    mor_half = np.clip(0.08 * wn, 12.0, 40.0)
    moraine = np.where(mflag[ir, ic] & inside & (b < 0), mor_half - np.abs(lateral - seam), -50.0)

    # lakes beyond large termini
    z_out = z_ice.copy()
    lake = np.full((h, w), -1e3)
    term = centre & (b < 0)
    rr = rec.reshape(h, w)
    recv_q = np.where(rr >= 0, q.ravel()[np.maximum(rr, 0)], 0.0)
    term &= recv_q <= q_min
    margin = 6
    ti, tj = np.nonzero(term)
    keep = (ti >= margin) & (tj >= margin) & (ti < h - margin) & (tj < w - margin)
    ti, tj = ti[keep], tj[keep]
    n_lakes = 0
    if ti.size:
        qp = qpeak[ti, tj]
        idx = np.argsort(-qp)
        big = qp[idx] >= 0.15 * qp[idx[0]]
        for k in idx[big][:8]:
            if n_lakes and rng.random() > preset.lake_probability:
                continue
            if not n_lakes and preset.lake_probability <= 0:
                break
            made = _make_lake(
                z_out, lake, glacier, rr, ti[k], tj[k], c_w * math.sqrt(qp[k]), dx, rng
            )
            n_lakes += int(made)
    return GlacierFields(
        glacier=glacier,
        debris=debris,
        moraine=moraine,
        thickness=thickness,
        vx=speed * ux,
        vy=speed * uy,
        lake=lake,
        z=z_out,
        termini=int(ti.size),
        lakes=n_lakes,
    )


def _make_lake(
    z: np.ndarray,
    lake: np.ndarray,
    glacier: np.ndarray,
    rec: np.ndarray,
    i0: int,
    j0: int,
    w_peak: float,
    dx: float,
    rng: np.random.Generator,
) -> bool:
    """Carve one flat proglacial lake downstream of terminus ``(i0, j0)`` (in place)."""
    h, w = z.shape
    a = float(np.clip(0.9 * w_peak, 2.5 * dx, 500.0))  # semi-major axis (m)
    bax = a * rng.uniform(0.45, 0.7)
    # walk down the flow path to the lake centre
    path = [(i0, j0)]
    c = i0 * w + j0
    dist = 0.0
    while dist < a + 1.5 * dx:
        r = rec[c // w, c % w]
        if r < 0:
            return False
        ri, rj = divmod(int(r), w)
        dist += dx * math.hypot(ri - c // w, rj - c % w)
        c = int(r)
        path.append((ri, rj))
    ci, cj = path[-1]
    if min(ci, cj) < 3 or ci > h - 4 or cj > w - 4:
        return False
    dy, dxx = -(ci - i0), cj - j0
    theta = math.atan2(dy, dxx)
    yy, xx = np.mgrid[0:h, 0:w]
    ex = (xx - cj) * dx
    ny = -(yy - ci) * dx
    u = ex * math.cos(theta) + ny * math.sin(theta)
    v = -ex * math.sin(theta) + ny * math.cos(theta)
    ang = np.arctan2(v / bax, u / a)
    wobble = (
        1.0
        + 0.12 * np.sin(2 * ang + rng.uniform(0, 6.3))
        + 0.08 * np.sin(3 * ang + rng.uniform(0, 6.3))
    )
    r_ell = np.hypot(u / a, v / bax) / wobble
    field = (1.0 - r_ell) * bax
    # stay clear of the ice (the lake never overlaps the glacier, even after fine noise)
    field = np.minimum(field, -glacier - 2.0 * dx)
    core = field > 0
    if core.sum() < 4:
        return False
    level = float(np.percentile(z[core], 10))
    near = field > -3 * dx
    # flat water surface; a shallow bowl rising to the surrounding terrain
    blend = np.clip(-field / (3 * dx), 0.0, 1.0)
    z[near] = np.where(
        field[near] > 0,
        level,
        level * (1 - blend[near]) + np.maximum(z[near], level + 3.0) * blend[near],
    )
    np.maximum(lake, field, out=lake)
    return True

"""Benchmark: sliding-window GLCM dissimilarity (issue 7, item 1).

7x7 window, 32 grey levels, offset (0, 1), on a 1024x1024 float32 image (``--full``: 4096x4096).

Compared, single-threaded, in one run:

* **ours**: ``apply_kernel(glcm_dissimilarity, ...)`` (pad + quantise + running box sums), and
  the kernel alone on a pre-padded image;
* **scikit-image**: ``graycomatrix`` + ``graycoprops`` per window, timed on a crop and
  extrapolated linearly to the image (it is O(pixels));
* **fast_glcm (NumPy)**: our own implementation of the per-level-pair box-filter approach
  (as in the popular ``fast_glcm`` script): for every grey-level pair ``(i, j)`` the indicator
  of pairs with values ``(i, j)`` is box-filtered and weighted by ``|i - j|`` (pairs with
  ``i == j`` are skipped since they add 0). Timed on a crop when the image is large;
* **floor**: ``scipy.ndimage.uniform_filter`` of the float32 ``|g(p) - g(p + d)|`` image
  (the same box sum with a general separable filter and no quantisation), and one plain
  read-input/write-output pass (``np.multiply(img, 1, out=...)``), the memory-bandwidth bound.

Exactness: max |ours - scikit-image| over every window of the crop (interior windows).
Memory: peak RSS growth of a fresh process running ``ours`` once, relative to input + output.

Usage::

    python benchmarks/bench_glcm.py            # 1024 x 1024, ~1 min
    python benchmarks/bench_glcm.py --full     # 4096 x 4096
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage

WINDOW, LEVELS, VMIN, VMAX = 7, 32, 0.0, 1.0
OFFSET = (0, 1)


def make_image(n: int, seed: int = 0) -> np.ndarray:
    """Reflectance-like float32 image: smooth structure plus speckle, some values off-range."""
    rng = np.random.default_rng(seed)
    small = ndimage.gaussian_filter(rng.random((n // 8 + 1, n // 8 + 1)), 2)
    base = ndimage.zoom(small, 8, order=1)[:n, :n]
    base = (base - base.min()) / (np.ptp(base) + 1e-12)
    return (0.9 * base + 0.2 * rng.random((n, n)) - 0.05).astype(np.float32)


def timeit(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall time and median CPU time of this thread over ``repeats`` calls (after a warm-up).

    All contenders run single-threaded in this thread, so the CPU time is the time a core
    actually spent on the work: on a machine shared with other jobs it is the fairer
    "per core" figure, while the wall time includes waiting for a core.
    """
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.thread_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


# ---------------------------------------------------------------------------- contenders


def ours(img: np.ndarray) -> np.ndarray:
    from glacierstack.dispatch import apply_kernel
    from glacierstack.kernels import glcm_dissimilarity

    off = np.array([OFFSET], np.int64)
    return apply_kernel(
        glcm_dissimilarity,
        img,
        depth=WINDOW // 2,
        boundary="reflect",
        args=(WINDOW, LEVELS, VMIN, VMAX, off),
    )


def ours_general(img: np.ndarray) -> np.ndarray:
    """The general co-occurrence-matrix path, asked for dissimilarity only."""
    from glacierstack.dispatch import apply_kernel
    from glacierstack.kernels import GLCM_PROPERTIES, glcm_properties

    off = np.array([OFFSET], np.int64)
    props = np.array([GLCM_PROPERTIES.index("dissimilarity")], np.int64)
    return apply_kernel(
        glcm_properties,
        img,
        depth=WINDOW // 2,
        boundary="reflect",
        args=(WINDOW, LEVELS, VMIN, VMAX, off, props, False),
    )[0]


def skimage_windows(q: np.ndarray) -> np.ndarray:
    """graycomatrix + graycoprops on every full window of a quantised crop (valid windows)."""
    from skimage.feature import graycomatrix, graycoprops

    r = WINDOW // 2
    dist, ang = float(np.hypot(*OFFSET)), float(np.arctan2(*OFFSET))
    h, w = q.shape
    out = np.empty((h - 2 * r, w - 2 * r))
    q8 = q.astype(np.uint8)
    for i in range(h - 2 * r):
        for j in range(w - 2 * r):
            p = graycomatrix(
                q8[i : i + WINDOW, j : j + WINDOW], [dist], [ang], levels=LEVELS, normed=True
            )
            out[i, j] = graycoprops(p, "dissimilarity")[0, 0]
    return out


def fast_glcm_numpy(q: np.ndarray) -> np.ndarray:
    """Per-level-pair box filtering ("fast_glcm"), valid windows only, float64 accumulation."""
    dy, dx = OFFSET
    hy, hx = WINDOW - abs(dy), WINDOW - abs(dx)
    h, w = q.shape
    # pair origins p (array a) and partners p + d (array b), both inside the image
    y0, y1 = max(0, -dy), h - max(0, dy)
    x0, x1 = max(0, -dx), w - max(0, dx)
    a = q[y0:y1, x0:x1]
    b = q[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
    acc = np.zeros(a.shape, np.float64)
    for i in range(LEVELS):
        ai = a == i
        for j in range(LEVELS):
            if i == j:
                continue
            mask = (ai & (b == j)).astype(np.float32)
            acc += abs(i - j) * ndimage.uniform_filter(mask, size=(hy, hx), mode="constant")
    # uniform_filter centres the (hy, hx) box; keep the boxes fully inside, i.e. valid windows
    oy, ox = hy // 2, hx // 2
    ey, ex = hy - 1 - oy, hx - 1 - ox
    return acc[oy : acc.shape[0] - ey, ox : acc.shape[1] - ex]


def floor_uniform(img: np.ndarray) -> np.ndarray:
    """Near-memory-bound reference: box mean of the float32 difference image."""
    diff = np.abs(img[:, 1:] - img[:, :-1])
    return ndimage.uniform_filter(diff, size=(WINDOW, WINDOW - 1), mode="reflect")


# ---------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _memory_child(n: int) -> None:
    """Child process: peak RSS growth of one ``ours`` call vs input + output bytes.

    Linux only: the peak-RSS mark (VmHWM) is reset through ``/proc/self/clear_refs`` just
    before the call, so that import-time peaks do not hide the call's own peak.
    """
    ours(make_image(64))  # JIT load/compile outside the measurement
    img = np.random.default_rng(0).random((n, n), dtype=np.float32)  # no large temporaries
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    rss0 = _status_kib("VmRSS") * 1024
    out = ours(img)
    peak = _status_kib("VmHWM") * 1024
    extra = max(peak - rss0, 0)  # growth above the state holding the input
    result = {
        "input_bytes": img.nbytes,
        "io_bytes": img.nbytes + out.nbytes,
        "extra_peak": extra,
        "total": img.nbytes + extra,
    }
    print(json.dumps(result))


def measure_memory(n: int) -> dict[str, float]:
    res = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--full", action="store_true", help="4096 x 4096 instead of 1024 x 1024")
    ap.add_argument("--size", type=int, default=None, help="override the image side")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--crop", type=int, default=134, help="side of the scikit-image crop")
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        _memory_child(args.memory_child)
        return

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from glacierstack.kernels import glcm_dissimilarity, quantize

    n = args.size or (4096 if args.full else 1024)
    img = make_image(n)
    npx = img.size
    r = WINDOW // 2
    rows: list[tuple[str, float, float, str]] = []

    t_ours = timeit(lambda: ours(img), args.repeats)
    rows.append(("ours: apply_kernel (pad + quantise + running sums)", *t_ours, "measured"))
    padded = np.pad(img, r, mode="symmetric")
    off = np.array([OFFSET], np.int64)
    t_kernel = timeit(
        lambda: glcm_dissimilarity(padded, WINDOW, LEVELS, VMIN, VMAX, off), args.repeats
    )
    rows.append(("ours: kernel only (pre-padded input)", *t_kernel, "measured"))

    gen_n = min(n, 256)
    gen_img = img[:gen_n, :gen_n]
    t_gen = [t / gen_img.size * npx for t in timeit(lambda: ours_general(gen_img), 1)]
    name = f"ours: general per-window histogram path ({gen_n}x{gen_n})"
    rows.append((name, *t_gen, "extrapolated"))
    gen_maxdiff = float(np.nanmax(np.abs(ours_general(gen_img) - ours(gen_img))))

    t_floor = timeit(lambda: floor_uniform(img), args.repeats)
    rows.append(("floor: scipy uniform_filter of |diff| (float32)", *t_floor, "measured"))
    buf = np.empty_like(img)
    t_copy = timeit(lambda: np.multiply(img, 1.0, out=buf), args.repeats)
    rows.append(("memory pass: read input + write output once (np.multiply)", *t_copy, "measured"))

    # scikit-image on a crop, extrapolated per output pixel
    c = args.crop
    crop = img[:c, :c]
    q_crop = quantize(crop, LEVELS, VMIN, VMAX)
    c0, t0 = time.thread_time(), time.perf_counter()
    ref = skimage_windows(q_crop)
    scale = npx / ref.size
    t_sk = [(time.perf_counter() - t0) * scale, (time.thread_time() - c0) * scale]
    name = f"scikit-image graycomatrix/graycoprops per window ({c}x{c} crop)"
    rows.append((name, *t_sk, "extrapolated"))
    mine = ours(crop)[r:-r, r:-r]
    maxdiff = float(np.max(np.abs(mine.astype(np.float64) - ref)))

    # fast_glcm: whole image at the default size, a 1024 crop extrapolated for larger ones
    fg_n = min(n, 1024)
    q_fg = quantize(np.pad(img[:fg_n, :fg_n], r, mode="symmetric"), LEVELS, VMIN, VMAX)
    c0, t0 = time.thread_time(), time.perf_counter()
    fg = fast_glcm_numpy(q_fg)
    scale = npx / (fg_n * fg_n)
    t_fg = [(time.perf_counter() - t0) * scale, (time.thread_time() - c0) * scale]
    rows.append(
        (
            f"fast_glcm (NumPy, per level pair, {fg_n}x{fg_n})",
            *t_fg,
            "measured" if fg_n == n else "extrapolated",
        )
    )
    fg_maxdiff = float(np.max(np.abs(fg - ours(img[:fg_n, :fg_n]))))  # uniform_filter gives means

    mem = measure_memory(n)

    print(
        f"# GLCM dissimilarity: {n}x{n} float32, window {WINDOW}, {LEVELS} levels, offset {OFFSET}"
    )
    print(f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} logical CPUs, python {platform.python_version()}")
    print(f"load average at end: {os.getloadavg()}")
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print()
    print("| method | wall (s) | CPU (s) | M pixels/s per core (CPU) | CPU ratio to ours | how |")
    print("|---|---|---|---|---|---|")
    for name, wall, cpu, how in rows:
        rate, ratio = npx / cpu / 1e6, cpu / t_ours[1]
        print(f"| {name} | {wall:.4g} | {cpu:.4g} | {rate:.3g} | {ratio:.3g} | {how} |")
    print()
    print(f"max |ours - scikit-image| over {ref.size} windows: {maxdiff:.3g} (target <= 1e-6)")
    print(f"max |ours - fast_glcm| over {fg_n}x{fg_n}: {fg_maxdiff:.3g}")
    print(f"max |ours - ours general path| over {gen_n}x{gen_n}: {gen_maxdiff:.3g}")
    mib = 2**20
    print(
        f"memory: peak RSS growth {mem['extra_peak'] / mib:.1f} MiB on top of the "
        f"{mem['input_bytes'] / mib:.1f} MiB input; total {mem['total'] / mib:.1f} MiB = "
        f"{mem['total'] / mem['io_bytes']:.2f} x (input + output)"
    )


if __name__ == "__main__":
    main()

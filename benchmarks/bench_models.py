"""Forward / forward+backward throughput of the cryonet model zoo.

Self-contained: needs only torch and the cryonet package. Prints a Markdown table and writes
JSON (``--out``). Examples::

    # GPU, paper configuration: 256x256 patches, batch 16, bf16 autocast, channels-last
    python benchmarks/bench_models.py --device cuda --out bench_models_cuda.json
    # fp16 autocast (with a GradScaler in the training step)
    python benchmarks/bench_models.py --device cuda --amp fp16 --out bench_fp16.json
    # CPU, small presets, batch 2 at 128x128 (about a minute); --full: 256x256 + paper presets
    python benchmarks/bench_models.py --device cpu --out bench_models_cpu.json

Timing: ``--warmup`` untimed iterations, then ``--iters`` timed iterations (each synchronised
on CUDA); img/s = batch / median iteration time. "train" = forward + cross-entropy +
backward (no optimizer step); "infer" = ``eval()`` forward under ``torch.inference_mode``.
GFLOP/img is counted once per model with ``torch.utils.flop_counter.FlopCounterMode`` on the
meta device (forward pass, multiply-add = 2 FLOP).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cryonet.models import create_model

GPU_PRESETS = [
    "cryonet-paper", "unet-paper", "deeplabv3plus-paper", "segformer-b2",
    "cryonet-small", "segformer-b0",
]  # fmt: skip
CPU_PRESETS = ["cryonet-tiny", "cryonet-small", "unet-tiny", "deeplabv3plus-tiny", "segformer-b0"]
AMP = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def count(preset: str, in_channels: int, num_classes: int, size: int) -> tuple[int, float]:
    with torch.device("meta"):
        model = create_model(preset, in_channels, num_classes).eval()
        with FlopCounterMode(display=False) as fc:
            model(torch.empty(1, in_channels, size, size))
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return params, fc.get_total_flops() / 1e9


def timed(step: Any, n: int, device: torch.device) -> list[float]:
    times = []
    for _ in range(n):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def bench_one(preset: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = create_model(preset, args.in_channels, args.num_classes).to(device, memory_format=fmt)
    net = torch.compile(model) if args.compile else model
    x = torch.randn(args.batch, args.in_channels, args.size, args.size, device=device)
    x = x.contiguous(memory_format=fmt)
    y = torch.randint(0, args.num_classes, (args.batch, args.size, args.size), device=device)
    dtype = AMP[args.amp]
    autocast = (
        (lambda: torch.autocast(device.type, dtype=dtype))
        if dtype is not None
        else contextlib.nullcontext
    )
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")

    def train_step() -> None:
        with autocast():
            loss = F.cross_entropy(net(x), y)
        scaler.scale(loss).backward()
        for p in model.parameters():
            p.grad = None

    def infer_step() -> None:
        with torch.inference_mode(), autocast():
            net(x)

    out: dict[str, Any] = {"model": preset, "config": model.config}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        model.train()
        timed(train_step, args.warmup, device)
        t_train = timed(train_step, args.iters, device)
        if device.type == "cuda":
            out["train_peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        model.eval()
        timed(infer_step, args.warmup, device)
        t_infer = timed(infer_step, args.iters, device)
    except torch.OutOfMemoryError:
        out["error"] = "out of memory"
        return out
    for name, times in (("train", t_train), ("infer", t_infer)):
        med = statistics.median(times)
        out[f"{name}_median_s"] = med
        out[f"{name}_img_per_s"] = args.batch / med
        out[f"{name}_times_s"] = times
    return out


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    base = next((r for r in rows if "error" not in r), None)
    lines = [
        f"{meta['device_name']} | torch {meta['torch']} | batch {meta['batch']} x "
        f"{meta['in_channels']} x {meta['size']} x {meta['size']} | AMP {meta['amp']} | "
        f"channels_last {meta['channels_last']} | compile {meta['compile']} | "
        f"median of {meta['iters']} iterations after {meta['warmup']} warm-up",
        "",
        "| model | encoder | params (M) | GFLOP/img (fwd) | train img/s | infer img/s | "
        f"train speed vs {base['model'] if base else '-'} | peak train mem (GiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        enc = r["config"]["encoder"]
        head = f"| {r['model']} | {enc} | {r['params'] / 1e6:.2f} | {r['gflop_per_img']:.1f} |"
        if "error" in r:
            lines.append(f"{head} {r['error']} | | | |")
            continue
        rel = r["train_img_per_s"] / base["train_img_per_s"] if base else float("nan")
        mem = f"{r['train_peak_mem_gib']:.1f}" if "train_peak_mem_gib" in r else "-"
        lines.append(
            f"{head} {r['train_img_per_s']:.1f} | {r['infer_img_per_s']:.1f} | {rel:.2f} | {mem} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", nargs="+", help="presets or architectures (default: by device)")
    p.add_argument("--batch", type=int, help="default 16 on CUDA, 2 on CPU")
    p.add_argument("--size", type=int, help="patch side; default 256 on CUDA, 128 on CPU")
    p.add_argument("--amp", choices=sorted(AMP), help="default bf16 on CUDA, none on CPU")
    p.add_argument("--in-channels", type=int, default=30)
    p.add_argument("--num-classes", type=int, default=5)
    p.add_argument("--warmup", type=int, default=None, help="default 5 on CUDA, 2 on CPU")
    p.add_argument("--iters", type=int, default=None, help="default 20 on CUDA, 5 on CPU")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--compile", action="store_true", help="torch.compile each model")
    p.add_argument("--threads", type=int, help="torch.set_num_threads on CPU")
    p.add_argument("--full", action="store_true", help="CPU: 256x256 and the paper presets too")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        p.error("--device cuda but torch.cuda.is_available() is False")
    args.batch = args.batch or (16 if cuda else 2)
    args.size = args.size or (256 if cuda or args.full else 128)
    args.amp = args.amp or ("bf16" if cuda else "none")
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 2)
    args.iters = args.iters or (20 if cuda else 5)
    args.channels_last = cuda if args.channels_last is None else args.channels_last
    if args.models is None:
        args.models = GPU_PRESETS if cuda else CPU_PRESETS + (GPU_PRESETS[:4] if args.full else [])
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_name(),
        "cpu": cpu_name(),
        "nproc": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        **{k: getattr(args, k) for k in ("batch", "size", "amp", "in_channels", "num_classes")},
        **{k: getattr(args, k) for k in ("warmup", "iters", "channels_last", "compile")},
    }
    rows = []
    for preset in args.models:
        params, gflop = count(preset, args.in_channels, args.num_classes, args.size)
        print(
            f"[bench] {preset}: {params / 1e6:.2f} M params, {gflop:.1f} GFLOP/img", file=sys.stderr
        )
        row = bench_one(preset, args, device)
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        row.update(params=params, gflop_per_img=gflop)
        rows.append(row)
        if "error" not in row:
            print(
                f"[bench] {preset}: train {row['train_img_per_s']:.1f} img/s, "
                f"infer {row['infer_img_per_s']:.1f} img/s",
                file=sys.stderr,
            )
    print(markdown(rows, meta))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

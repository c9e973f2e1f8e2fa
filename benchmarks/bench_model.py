"""Time the paper-size CTHNet: one 8 x 256 x 256 cube, and a whole 512 x 512 x 60 scan
(run by hand; the whole-scan case needs ../shared).

Each measurement runs in a process of its own, so its peak memory (max RSS) is its own and the
allocator setting (see `thinct.inference.runtime`) can differ between runs:

- ``cube``: forward passes of one 8 x 256 x 256 cube of real CT (from the real 5 mm scan in
  ../shared, or random values without it), after one warm-up pass; best and median of
  ``--repeats``; for bf16/fp16 also the largest and mean difference from fp32, in HU;
- ``scan``: `thinct.upsample_volume` with the model on LIDC-IDRI-0002 slab-averaged to 5 mm
  and cut to 60 slices (512 x 512 x 60 -> 512 x 512 x 300 at 1 mm), default engine options.

Weights are random (seeded): speed and memory do not depend on them; the bf16 error of
trained weights is measured again where they are trained.

    python benchmarks/bench_model.py [--threads 2] [--repeats 3] [--device cpu]
                                     [--precisions fp32 bf16] [--no-scan]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct"
REAL_THICK = SHARED / "pyradiomics_lung1_5mm.nii.gz"
THIN_SOURCE = SHARED / "lidc0002_c2c_1.25mm.nii.gz"
HU_RANGE = 3072.0  # the model's [0, 1] spans [-1024, 2048] HU


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _cube() -> torch.Tensor:
    """8 x 256 x 256 of the real 5 mm chest scan (its middle), in [0, 1]."""
    if not REAL_THICK.exists():
        return torch.rand(1, 1, 8, 256, 256, generator=torch.Generator().manual_seed(0))
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(sitk.ReadImage(str(REAL_THICK))).astype(np.float32)
    z = array.shape[0] // 2 - 4
    crop = array[z : z + 8, 128:384, 128:384]
    return torch.from_numpy((np.clip(crop, -1024, 2048) + 1024) / HU_RANGE)[None, None]


def measure_cube(device_name: str, precision: str, repeats: int) -> dict:
    from thinct.inference.engine import precision_context, resolve_device
    from thinct.models import create_model

    torch.manual_seed(0)
    device = resolve_device(device_name)
    model = create_model("cthnet").eval().to(device)
    cube = _cube().to(device)

    def forward(precision: str) -> tuple[float, torch.Tensor]:
        context = precision_context(device, precision)
        _synchronize(device)
        start = time.perf_counter()
        with torch.inference_mode(), context:
            out = model(cube).float()
        _synchronize(device)
        return time.perf_counter() - start, out

    forward(precision)  # warm-up: first-call set-up is not the steady speed
    times = []
    for _ in range(repeats):
        seconds, out = forward(precision)
        times.append(seconds)
    record = {
        "best_s": min(times),
        "median_s": float(np.median(times)),
        "peak_rss_mb": _peak_rss_mb(),
    }
    if device.type == "cuda":
        record["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if precision != "fp32":
        _, reference = forward("fp32")
        error = (out - reference).abs() * HU_RANGE
        record["max_error_hu"] = float(error.max())
        record["mean_error_hu"] = float(error.mean())
    return record


def measure_scan(device_name: str, precision: str) -> dict:
    import thinct
    from thinct.inference.engine import InferenceOptions
    from thinct.models import create_model

    torch.manual_seed(0)
    thin = thinct.read_volume(THIN_SOURCE)
    thick = thinct.simulate_thick(thin, thickness=5.0)
    del thin
    import SimpleITK as sitk

    thick = thick.with_image(thick.image[:, :, :60], slice_thickness=5.0)
    model = create_model("cthnet")
    options = InferenceOptions(device=device_name, precision=precision)
    start = time.perf_counter()
    result = thinct.upsample_volume(thick, spacing=1.0, model=model, options=options)
    seconds = time.perf_counter() - start
    return {
        "input": "x".join(map(str, thick.image.GetSize())),
        "output": "x".join(map(str, result.image.GetSize())),
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "finite": bool(np.isfinite(sitk.GetArrayViewFromImage(result.image)).all()),
    }


def _in_subprocess(args: list[str], environment: dict[str, str]) -> dict:
    command = [sys.executable, __file__, *args]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=environment)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--no-scan", action="store_true")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        kind, precision = args.one
        if kind == "cube":
            from thinct.inference.runtime import tune_allocator

            if args.device == "cpu":
                tune_allocator()
            record = measure_cube(args.device, precision, args.repeats)
        else:
            record = measure_scan(args.device, precision)
        print(json.dumps(record))
        return

    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}")
    print(
        "| case | precision | allocator | best (s) | median (s) | peak RSS (MB) | error vs fp32 |"
    )
    print("|---|---|---|---|---|---|---|")
    common = ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    common += ["--device", args.device]
    for precision in args.precisions:
        allocators = ["tuned", "glibc default"] if args.device == "cpu" else ["n/a"]
        for allocator in allocators:
            environment = dict(os.environ)
            if allocator == "glibc default":
                environment["THINCT_KEEP_MALLOC"] = "1"
            record = _in_subprocess([*common, "--one", "cube", precision], environment)
            error = (
                f"max {record['max_error_hu']:.1f} HU, mean {record['mean_error_hu']:.2f} HU"
                if "max_error_hu" in record
                else "-"
            )
            print(
                f"| cube 8x256x256 | {precision} | {allocator} | {record['best_s']:.1f} | "
                f"{record['median_s']:.1f} | {record['peak_rss_mb']:.0f} | {error} |",
                flush=True,
            )
    if args.no_scan:
        return
    if not THIN_SOURCE.exists():
        sys.exit(f"{THIN_SOURCE} not found: the whole-scan case needs ../shared")
    record = _in_subprocess([*common, "--one", "scan", "fp32"], dict(os.environ))
    print(
        f"\nwhole scan {record['input']} -> {record['output']}: {record['seconds']:.0f} s, "
        f"peak RSS {record['peak_rss_mb']:.0f} MB, finite: {record['finite']}"
    )


if __name__ == "__main__":
    main()

"""The default model's two targets, measured by hand (needs ../shared):

- speed: ``thinct upsample`` with no options on a whole 512 x 512 chest scan at 5 mm
  (LIDC-IDRI-0002 slab-averaged to 5 mm by ``thinct simulate``: 512 x 512 x 65 ->
  512 x 512 x 325 at 1 mm), as a user runs it: a fresh process, reading and writing
  ``.nii.gz``. Wall time and peak memory (max RSS) of the whole command, and the engine's own
  time from a second, in-process run;
- quality: ``thinct evaluate`` of the default model against B-spline (and linear) on the
  held-out last quarter of the same scan (5 mm simulated from its 1 mm resampling), the part
  `configs/default.yaml` keeps out of training.

    python benchmarks/bench_default.py [--threads 2] [--out benchmark-default]
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

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct"
CHEST = SHARED / "lidc0002_c2c_1.25mm.nii.gz"


def _run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmark-default"))
    parser.add_argument("--no-quality", action="store_true", help="time the scan only")
    args = parser.parse_args()
    if not CHEST.exists():
        sys.exit(f"{CHEST} is needed (../shared)")
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    thinct = [sys.executable, "-m", "thinct"]
    thick = args.out / "lidc0002_5mm.nii.gz"
    if not thick.exists():
        subprocess.run(
            [*thinct, "simulate", str(CHEST), str(thick), "--thickness", "5", "-q"],
            check=True,
            env=env,
        )
    thin = args.out / "lidc0002_thin.nii.gz"
    seconds, peak = _run([*thinct, "upsample", str(thick), str(thin), "--overwrite", "-q"], env)
    results = {
        "threads": args.threads,
        "command_seconds": round(seconds, 1),
        "command_peak_rss_mb": round(peak),
    }

    import torch

    torch.set_num_threads(args.threads)
    from thinct.geometry import Grid, thin_grid
    from thinct.inference.engine import upsample_with_model
    from thinct.io import read_volume
    from thinct.models import DEFAULT_MODEL, load_model

    volume = read_volume(thick)
    model = load_model()
    grid = thin_grid(Grid.of(volume.image), spacing=1.0)
    start = time.perf_counter()
    upsample_with_model(volume, grid, model)
    results["engine_seconds"] = round(time.perf_counter() - start, 1)
    results["scan"] = f"{volume.image.GetSize()} -> {grid.grid.size}"
    print(json.dumps(results, indent=2), flush=True)

    if not args.no_quality:
        report = args.out / "heldout"
        subprocess.run(
            [
                *thinct,
                "evaluate",
                str(CHEST),
                "--out",
                str(report),
                "--slices",
                "0.75:1.0",
                "--method",
                "bspline",
                "--method",
                "linear",
                "--model",
                DEFAULT_MODEL,
                "--overwrite",
                "-q",
            ],
            check=True,
            env=env,
        )
        print((report / "summary.md").read_text())


if __name__ == "__main__":
    main()

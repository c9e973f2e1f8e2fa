"""Time the interpolation baselines on full 512 x 512 chest scans (run by hand; needs ../shared).

Cases:
- ``lidc0002 5 mm (simulated)``: LIDC-IDRI-0002 (1.25 mm) slab-averaged to 5 mm, upsampled
  back onto the 1.25 mm grid, so quality against the real thin scan can be measured too;
- ``lung1 5 mm (real)``: the real 5 mm pyradiomics scan, upsampled to 1 mm.

Each method runs in its own process so its peak memory (max RSS) is its own. Reading and
writing are not timed. Results are printed as a markdown table for docs/benchmarks.md.

    python benchmarks/bench_baselines.py [--repeats 3] [--methods bspline linear]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct"
CASES = {
    "lidc0002 5 mm (simulated)": ("lidc0002_c2c_1.25mm.nii.gz", True),
    "lung1 5 mm (real)": ("pyradiomics_lung1_5mm.nii.gz", False),
}


def psnr(output: np.ndarray, reference: np.ndarray, margin: int = 5) -> float:
    """PSNR in the CTHNet convention: HU window [-1024, 2048] mapped to [0, 1], peak 1,
    ``margin`` slices left out at each end of the volume."""

    def scale(a: np.ndarray) -> np.ndarray:
        return (np.clip(a, -1024, 2048) + 1024) / 3072

    diff = scale(output[margin:-margin]) - scale(reference[margin:-margin])
    return float(10 * np.log10(1.0 / np.mean(diff**2)))


def run_one(case: str, method: str, repeats: int) -> dict:
    import thinct

    name, simulated = CASES[case]
    scan = thinct.read_volume(SHARED / name)
    if simulated:
        thick = thinct.simulate_thick(scan, thickness=5.0)
        spacing = scan.image.GetSpacing()[2]
    else:
        thick, spacing = scan, 1.0
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = thinct.upsample_volume(thick, method=method, spacing=spacing)
        times.append(time.perf_counter() - start)
    record = {
        "case": case,
        "method": method,
        "input": "x".join(map(str, thick.image.GetSize())),
        "output": "x".join(map(str, result.image.GetSize())),
        "seconds": min(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(),
    }
    if simulated:
        # edges alignment of 65 x 5 mm slabs gives 260 slices on the thin grid: the first 260
        # thin slices of the reference (the 261st is outside the simulated slabs).
        out = sitk.GetArrayViewFromImage(result.image)
        ref = sitk.GetArrayViewFromImage(scan.image)[: out.shape[0]]
        record["psnr_db"] = psnr(np.rint(out), ref)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["nearest", "linear", "bspline", "lanczos"])
    parser.add_argument("--one", nargs=2, metavar=("CASE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], args.repeats)))
        return
    if not SHARED.exists():
        sys.exit(f"{SHARED} not found: the benchmark needs the full scans of ../shared")
    print("| case | method | input | output | time (s) | peak RSS (MB) | PSNR (dB) |")
    print("|---|---|---|---|---|---|---|")
    for case in CASES:
        for method in args.methods:
            command = [
                sys.executable,
                __file__,
                "--repeats",
                str(args.repeats),
                "--one",
                case,
                method,
            ]
            record = json.loads(
                subprocess.run(command, check=True, capture_output=True, text=True).stdout
            )
            quality = f"{record['psnr_db']:.2f}" if "psnr_db" in record else "n/a"
            print(
                f"| {case} | {method} | {record['input']} | {record['output']} | "
                f"{record['seconds']:.1f} | {record['peak_rss_mb']:.0f} | {quality} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""Time the interpolation baselines on full 512 x 512 chest scans (run by hand; needs ../shared).

Cases:
- ``lidc0002 5 mm (simulated)``: LIDC-IDRI-0002 (1.25 mm) slab-averaged to 5 mm with
  `thinct simulate` and upsampled back onto the 1.25 mm grid, so quality against the real thin
  scan is measured too;
- ``lung1 5 mm (real)``: the real 5 mm pyradiomics scan, upsampled to 1 mm.

For each method: the interpolation alone (best of ``--repeats``, reading and writing excluded),
the peak memory of a process that read the thick scan and interpolated it (max RSS, measured
in a process of its own before anything else is loaded), and the wall time of the whole
`thinct upsample` command (start-up, read, interpolate, write). Prints a markdown table.

    python benchmarks/bench_baselines.py [--repeats 3] [--methods bspline linear]
                                         [--cases simulated real]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct"
SIMULATED = "lidc0002 5 mm (simulated)"
REAL = "lung1 5 mm (real)"
REFERENCE = SHARED / "lidc0002_c2c_1.25mm.nii.gz"


def psnr(output: np.ndarray, reference: np.ndarray, margin: int = 5) -> float:
    """PSNR in the CTHNet convention: HU window [-1024, 2048] mapped to [0, 1], peak 1,
    ``margin`` slices left out at each end of the volume."""

    def scale(a: np.ndarray) -> np.ndarray:
        return (np.clip(a, -1024, 2048) + 1024) / 3072

    diff = scale(output[margin:-margin]) - scale(reference[margin:-margin])
    return float(10 * np.log10(1.0 / np.mean(diff**2)))


def run_one(thick_path: Path, spacing: float, method: str, repeats: int, simulated: bool) -> dict:
    """Interpolate one scan in this process; report time, peak RSS and (simulated) PSNR."""
    import thinct

    thick = thinct.read_volume(thick_path)
    times = []
    result = None
    for _ in range(repeats):
        result = None  # free the previous result: peak memory is that of one run
        start = time.perf_counter()
        result = thinct.upsample_volume(thick, method=method, spacing=spacing)
        times.append(time.perf_counter() - start)
    record = {
        "input": "x".join(map(str, thick.image.GetSize())),
        "output": "x".join(map(str, result.image.GetSize())),
        "seconds": min(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if simulated:
        # 65 slabs of 5 mm cover the first 260 of the 261 thin slices: compare those.
        out = sitk.GetArrayFromImage(result.image)
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(REFERENCE)))[: out.shape[0]]
        record["psnr_db"] = psnr(np.rint(out), ref)
    return record


def cli_seconds(thick_path: Path, spacing: float, method: str, folder: Path) -> float:
    """Wall time of the whole `thinct upsample` command (written as NIfTI, gzip)."""
    output = folder / f"{method}.nii.gz"
    command = ["thinct", "upsample", str(thick_path), str(output), "--quiet", "--overwrite"]
    start = time.perf_counter()
    subprocess.run([*command, "--method", method, "--spacing", str(spacing)], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["nearest", "linear", "bspline", "lanczos"])
    parser.add_argument("--cases", nargs="+", default=["simulated", "real"])
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        path, spacing, method, simulated = args.one
        record = run_one(Path(path), float(spacing), method, args.repeats, simulated == "1")
        print(json.dumps(record))
        return
    if not SHARED.exists():
        sys.exit(f"{SHARED} not found: the benchmark needs the full scans of ../shared")
    print(f"SimpleITK threads: {sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}")
    print(
        "| case | method | input | output | interpolation (s) | peak RSS (MB) "
        "| `thinct upsample` (s) | PSNR (dB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        simulated_path = folder / "lidc0002_5mm.nii.gz"
        subprocess.run(
            ["thinct", "simulate", str(REFERENCE), str(simulated_path), "--thickness", "5", "-q"],
            check=True,
        )
        cases = {
            "simulated": (SIMULATED, simulated_path, 1.25, True),
            "real": (REAL, SHARED / "pyradiomics_lung1_5mm.nii.gz", 1.0, False),
        }
        for case, path, spacing, simulated in (cases[name] for name in args.cases):
            for method in args.methods:
                one = [str(path), str(spacing), method, "1" if simulated else "0"]
                command = [sys.executable, __file__, "--repeats", str(args.repeats), "--one", *one]
                done = subprocess.run(command, check=True, capture_output=True, text=True)
                record = json.loads(done.stdout)
                wall = cli_seconds(path, spacing, method, folder)
                quality = f"{record['psnr_db']:.2f}" if "psnr_db" in record else "n/a"
                print(
                    f"| {case} | {method} | {record['input']} | {record['output']} | "
                    f"{record['seconds']:.1f} | {record['peak_rss_mb']:.0f} | {wall:.1f} | "
                    f"{quality} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""Put a trained run's best weights into the package as the default model, with its card.

The card's numbers are measured here, on the held-out part of the validation scan the run's
config names (B-spline and linear interpolation on the same thick slices, for comparison), so
the shipped card never repeats a number that was not measured on the shipped weights.

    python tools/ship_default_model.py runs/thickgrid --config configs/thickgrid.yaml \
        --name thickgrid --test-report reports/test_5mm --test-report reports/test_3mm

writes src/thinct/weights/thickgrid. ``--test-report`` embeds the per-method means of a
`thinct evaluate` report folder (its summary.md) measured on a scan that neither training
nor model selection saw.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from thinct.evaluate import metrics
from thinct.inference.engine import upsample_with_model
from thinct.models import DEFAULT_MODEL, list_models, load_model_folder, registry_entry, save_model
from thinct.models.storage import WEIGHTS_FILE
from thinct.resample.interpolation import interpolate
from thinct.train.config import load_train_config
from thinct.train.sources import validation_cases

PACKAGE_WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "thinct" / "weights"
MAX_MB = 20

INTENDED_USE = """
Research and development: making synthetic 1 mm slices from 5 mm chest CT for reading
studies, for algorithms that need thin input, and as a baseline to train better models
from. **Not a medical device**: synthetic slices can hide, blur or invent structures and must
not be used for diagnosis or treatment decisions.
"""

LIMITATIONS = """
- Trained on a CPU from very little data: four scans (one chest scan's first 70 %, a head
  scan and two 1.5 mm chest crops), each resampled to 1 mm with thick slices simulated from
  them. It has not seen real thick reconstructions, kernels, contrast phases, children, or
  pathology beyond what those scans hold.
- Selected on one held-out region of one scan and tested on one other scan, both with
  simulated thick slices: real thick scans (other slice profiles, noise, reconstruction
  kernels) will gain less.
- Thin slices of 1.25-1.5 mm resampled to 1 mm were the targets, so it cannot produce detail
  finer than those scans had.
- Made for {thickness:g} mm slices: the engine runs it on any slice spacing (its {ratio} slots
  per thick slice, interpolated to the target spacing), but on other thicknesses it gains
  much less over B-spline (see the held-out tables).
- The network, {architecture}, is sized to run a whole scan in well under a minute on two CPU
  cores; the paper-size CTHNet (10.6 M parameters) was not trained here.
"""
SUMMARY_TABLE = "## Means per method"


def _test_table(report: Path) -> str:
    """The per-method means table of a `thinct evaluate` report folder, with its first line
    (what was evaluated) above it."""
    lines = (report / "summary.md").read_text(encoding="utf-8").splitlines()
    what = next(line for line in lines[1:] if line.strip())
    start = lines.index(SUMMARY_TABLE) + 1
    table = []
    for line in lines[start:]:
        if table and not line.startswith("|"):
            break
        if line.startswith("|"):
            table.append(line)
    return f"{what}\n\n" + "\n".join(table)


def _training_minutes(run: Path) -> float:
    """Wall time of the run from its log: each resumed part restarts its clock, so the parts'
    last times are summed."""
    with open(run / "log.csv", newline="") as stream:
        seconds = [float(row["seconds"]) for row in csv.DictReader(stream)]
    pairs = zip(seconds, seconds[1:], strict=False)
    total = sum(earlier for earlier, later in pairs if later < earlier)
    return (total + (seconds[-1] if seconds else 0.0)) / 60


def names() -> set[str]:
    return {entry.name for entry in list_models()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the training run folder (with best/)")
    parser.add_argument("--config", type=Path, default=Path("configs/default.yaml"))
    parser.add_argument("--name", default=DEFAULT_MODEL)
    parser.add_argument("--test-report", type=Path, action="append", default=[])
    args = parser.parse_args()

    config = load_train_config(args.config)
    model = load_model_folder(args.run / "best")
    torch.manual_seed(0)
    rows = []
    for case in validation_cases(config.data, model.config.ratio):
        reference = case.reference_array()
        outputs = {}
        for method in ("linear", "bspline"):
            outputs[method] = case.slices_first(interpolate(case.thick, case.grid, method))
        start = time.perf_counter()
        outputs[args.name] = case.slices_first(upsample_with_model(case.thick, case.grid, model))
        seconds = time.perf_counter() - start
        for method, output in outputs.items():
            rows.append(
                f"| {case.name} | {method} | {metrics.psnr(output, reference):.2f} | "
                f"{metrics.ssim(output, reference):.4f} |"
            )
        print(f"{case.name}: model {seconds:.1f} s")
    table = "| held-out scan | method | PSNR (dB) | SSIM |\n|---|---|---|---|\n" + "\n".join(rows)
    print(table)

    recipe = (
        f"`thinct train --config {args.config.as_posix()}` of the thinct repository (the "
        f"scans listed above, read from the config's `data.root`): {config.optim.steps} steps of "
        f"{config.optim.batch_size} random {config.crop.tile} x {config.crop.tile} crops, "
        f"AdamW (lr {config.optim.lr:g}, weight decay {config.optim.weight_decay:g}), "
        f"{config.optim.schedule} schedule, {config.loss.kind} loss; "
        f"{_training_minutes(args.run):.0f} min on CPU."
    )
    profiles = ", ".join(
        d.profile if d.fwhm is None else f"{d.profile} (FWHM {d.fwhm:g} mm)"
        for d in config.data.degradations
    )
    thickness = model.config.ratio * config.data.spacing
    data = "\n".join(
        f"- `{source.path}`"
        + (f", slices {source.slices[0]:g}-{source.slices[1]:g}" if source.slices != (0, 1) else "")
        + f" ({', '.join(source.axes)})"
        for source in config.data.train
    )
    sections = {
        "Training data": (
            "Thin CT from the shared collection (LIDC-IDRI, InVesalius, TotalSegmentator "
            f"sources), resampled to {config.data.spacing:g} mm along z; thick slices of "
            f"{thickness:g} mm simulated with the slice profiles {profiles}, "
            f"{config.data.phases} slab phase(s) (`thinct.resample.simulate`):\n\n{data}"
        ),
        "Training recipe": recipe,
        f"Validation (held out, {thickness:g} mm simulated)": (
            "Whole-volume inference through thinct's sliding-window engine; PSNR over "
            "[-1024, 2048] HU mapped to [0, 1], SSIM on axial slices (window 11, sigma "
            "1.5), 5 slices left out at each end.\n\n" + table
        ),
    }
    for number, report in enumerate(args.test_report, start=1):
        title = "Held-out test scan" + (f" ({number})" if len(args.test_report) > 1 else "")
        sections[title] = (
            "`thinct evaluate` on a scan used neither for training nor for choosing the "
            "weights (`best` is this model).\n\n" + _test_table(report)
        )
    sections["Intended use"] = INTENDED_USE
    architecture = registry_entry(args.name).description if args.name in names() else args.name
    sections["Limitations"] = LIMITATIONS.format(
        architecture=architecture, thickness=thickness, ratio=model.config.ratio
    )
    title = f"{args.name}: thinct's default model" if args.name == DEFAULT_MODEL else args.name
    folder = save_model(
        model,
        PACKAGE_WEIGHTS / args.name,
        details={"title": title, "license": "apache-2.0"},
        sections=sections,
    )
    size_mb = (folder / WEIGHTS_FILE).stat().st_size / 2**20
    if size_mb > MAX_MB:
        raise SystemExit(f"{folder / WEIGHTS_FILE} is {size_mb:.1f} MB, over {MAX_MB} MB")
    print(f"wrote {folder} ({size_mb:.2f} MB of weights)")


if __name__ == "__main__":
    main()

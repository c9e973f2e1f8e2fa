"""Draw the architecture comparison of docs/benchmarks.md (run by hand).

Each RUN is a training run's ``log.csv`` (``thinct train``); its validation rows are drawn as
held-out PSNR against CPU-minutes (the ``seconds`` column times the threads the run used), so
runs compare at equal CPU budget. A horizontal line marks B-spline's PSNR on the same
validation scan, from a ``thinct evaluate`` report's ``results.csv``.

python docs/make_learning_curves.py NAME=LOG.csv [NAME=LOG.csv ...] --threads 2 \
    --bspline REPORT/results.csv --out docs/images/learning_curves.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from thinct.io.atomic import replacing  # noqa: E402


def validations(log: Path) -> tuple[list[float], list[float]]:
    """(seconds, validation PSNR) of a run's validation rows."""
    with open(log, newline="", encoding="utf-8") as stream:
        rows = [row for row in csv.DictReader(stream) if row["val_psnr"]]
    return [float(r["seconds"]) for r in rows], [float(r["val_psnr"]) for r in rows]


def bspline_psnr(results: Path) -> float:
    with open(results, newline="", encoding="utf-8") as stream:
        rows = [row for row in csv.DictReader(stream) if row["method"] == "bspline"]
    return sum(float(r["psnr"]) for r in rows) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=LOG.csv")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bspline", type=Path, help="a thinct evaluate results.csv")
    parser.add_argument("--out", type=Path, default=Path("docs/images/learning_curves.png"))
    args = parser.parse_args()
    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for run in args.runs:
        name, _, log = run.partition("=")
        seconds, psnr = validations(Path(log))
        axes.plot([s * args.threads / 60 for s in seconds], psnr, marker="o", label=name)
    if args.bspline is not None:
        axes.axhline(bspline_psnr(args.bspline), color="grey", linestyle="--", label="bspline")
    axes.set_xlabel(f"training CPU-minutes ({args.threads} threads x wall time)")
    axes.set_ylabel("held-out PSNR (dB)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    with replacing(args.out) as staged:
        figure.savefig(staged, format="png")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""`thinct train`: a model trained on the recipe of a YAML file; the best weights go to
OUTPUT/best."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from thinct.cli.boundary import error_boundary
from thinct.cli.options import Quiet
from thinct.reporting import Reporter


def train(
    config: Annotated[
        str, typer.Option("--config", "-c", metavar="FILE.yaml", help="The training recipe.")
    ],
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in the config's output folder.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Train a model on the recipe in a YAML file; the best weights go to OUTPUT/best.

    Example: thinct train --config configs/default.yaml
    Several processes: torchrun --nproc_per_node 2 -m thinct train --config FILE.yaml
    """
    with Reporter(quiet=quiet) as reporter:
        with error_boundary(reporter):
            from thinct.train.config import load_train_config
            from thinct.train.loop import train as run_training

            result = run_training(load_train_config(config), resume=resume, report=reporter.info)
        if os.environ.get("RANK", "0") != "0":
            return  # under torchrun, the first process speaks for all
        scores = (
            f"validation PSNR {result.best_psnr:.2f} dB, SSIM {result.best_ssim:.4f}"
            if result.best_psnr == result.best_psnr  # not NaN: there was validation data
            else "no validation data: the last weights"
        )
        reporter.info(
            f"trained {result.steps} steps in {result.seconds / 60:.1f} min; best step "
            f"{result.best_step} ({scores}) in {result.folder / 'best'}"
        )

"""`thinct convert`: an official CTHNet or TVSRN checkpoint into a thinct model folder.

The checkpoint is read without running any of its code (`thinct.models.safe_unpickle`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from thinct.cli.boundary import error_boundary
from thinct.cli.options import Quiet
from thinct.errors import UsageError
from thinct.reporting import Reporter


def convert(
    checkpoint: Annotated[
        str,
        typer.Argument(
            metavar="OFFICIAL", help="An official CTHNet or TVSRN checkpoint (.pkl, .pth, ...)."
        ),
    ],
    folder: Annotated[
        str, typer.Argument(metavar="FOLDER", help="The thinct model folder to write.")
    ],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing FOLDER.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Convert an official checkpoint into a thinct model folder, running none of its code.

    Example: thinct convert CTHNet_best.pkl models/cthnet-official
    """
    with Reporter(quiet=quiet) as reporter:
        with error_boundary(reporter):
            _convert_checkpoint(Path(checkpoint), Path(folder), overwrite)
        reporter.info(f"wrote {folder}")


def _convert_checkpoint(source: Path, folder: Path, overwrite: bool) -> None:
    """Check both paths before reading anything, then write the folder with a card saying
    where its weights come from (the source's sha256 ties the folder to that exact file)."""

    if not source.exists():
        raise UsageError(f"{source}: no such file")
    if not source.is_file():
        raise UsageError(f"{source} is not a file; give an official checkpoint file")
    if folder.exists() and not overwrite:
        raise UsageError(f"{folder} exists; give --overwrite to replace it")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} exists and is not a folder")
    from thinct.models import save_model
    from thinct.models.official import official_model
    from thinct.models.safe_unpickle import read_official_checkpoint
    from thinct.models.storage import sha256_of

    checkpoint = read_official_checkpoint(source)
    model = official_model(checkpoint, source)
    details = {
        "source": source.name,
        "source_sha256": sha256_of(source),
        "conversion": "converted from the official checkpoint",
        "architecture": model.config.architecture,
        "layout": "official",
    }
    if checkpoint.config:
        details["official_config_dict"] = json.dumps(checkpoint.config)
    save_model(model, folder, details=details)

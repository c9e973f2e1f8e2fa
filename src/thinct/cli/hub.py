"""`thinct models` and `thinct push`: what models there are, and sharing one on the Hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from thinct.cli.boundary import error_boundary
from thinct.cli.options import Quiet
from thinct.errors import UsageError
from thinct.reporting import Reporter


def _model_rows() -> list[dict[str, str]]:
    """Registered models (shipped weights or untrained configurations), then thinct models
    in the Hub cache; each row names the spec to give ``--model``."""
    from thinct.models import DEFAULT_MODEL, list_models
    from thinct.models.hub import cached_models

    rows = []
    for entry in list_models():
        if entry.weights is not None:
            source = "shipped (default)" if entry.name == DEFAULT_MODEL else "shipped"
        else:
            source = "untrained: a configuration for thinct train"
        rows.append(
            {
                "model": entry.name,
                "source": source,
                "architecture": entry.config.architecture,
                "description": entry.description,
            }
        )
    for cached in cached_models():
        refs = f" ({', '.join(cached.refs)})" if cached.refs else ""
        rows.append(
            {
                "model": cached.spec,
                "source": f"Hub cache{refs}",
                "architecture": cached.architecture,
                "description": f"{cached.size_bytes / 1e6:.1f} MB in the Hub cache",
            }
        )
    return rows


def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """List the models --model accepts by name: shipped, registered, and in the Hub cache.

    Any model folder, official checkpoint or hf://owner/repo[@revision] works as well.
    """
    with Reporter(quiet=True) as reporter, error_boundary(reporter):
        rows = _model_rows()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    width = max(len(row["model"]) for row in rows)
    for row in rows:
        typer.echo(f"{row['model']:<{width}}  {row['source']}")
        typer.echo(f"{'':<{width}}  {row['architecture']}: {row['description']}")


def push(
    folder: Annotated[
        str, typer.Argument(metavar="FOLDER", help="A thinct model folder (config, weights, card).")
    ],
    repo_id: Annotated[
        str, typer.Argument(metavar="OWNER/REPO", help="The Hub repository (created if needed).")
    ],
    private: Annotated[
        bool, typer.Option("--private", help="Create the repository as private.")
    ] = False,
    branch: Annotated[
        str | None,
        typer.Option("--branch", metavar="NAME", help="Push to this branch (default: main)."),
    ] = None,
    message: Annotated[
        str | None, typer.Option("--message", "-m", metavar="TEXT", help="The commit message.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="TOKEN",
            help="A Hub token with write access (default: HF_TOKEN or `hf auth login`).",
        ),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Upload a trained model folder with its card to the Hugging Face Hub.

    Example: thinct push runs/mine/best my-lab/thinct-chest
    """
    with Reporter(quiet=quiet) as reporter:
        with error_boundary(reporter):
            from thinct.models.hub import push_model

            if not Path(folder).exists():
                raise UsageError(f"{folder}: no such folder")
            spec = push_model(
                folder, repo_id, private=private, branch=branch, message=message, token=token
            )
        reporter.info(f"pushed {folder}; load it with --model {spec}")

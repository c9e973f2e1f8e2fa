"""The `thinct` Typer app: its commands, in the order `--help` lists them, and the
console-script entry point.

Exit codes: 0 success, 1 a failure while processing (in a batch: at least one file failed),
2 a usage error, 130 stopped by Ctrl-C or SIGTERM. User mistakes are reported as one line on
stderr, never as a traceback.

torch, and the modules that use it, load inside the commands that run a model (upsample
without --method, convert, evaluate with a model, train): every other command, and --help,
starts in a fraction of a second.
"""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from thinct._version import __version__
from thinct.cli.boundary import stop_signals_caught
from thinct.cli.convert import convert
from thinct.cli.evaluate import evaluate
from thinct.cli.hub import models, push
from thinct.cli.info import info
from thinct.cli.nnunet import app as nnunet_app
from thinct.cli.options import command_group
from thinct.cli.serve import app as serve_app
from thinct.cli.simulate import simulate
from thinct.cli.train import train
from thinct.cli.upsample import upsample
from thinct.errors import arguments_as_options
from thinct.reporting import os_failure, out_of_memory

app = command_group(
    "thinct", "Turn thick-slice CT into synthetic thin-slice CT, with exact geometry."
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"thinct {__version__}")
        raise typer.Exit()


# Library arguments whose option is not ``--`` and the argument's name with dashes.
_RENAMED_OPTIONS = {"series_uid": "--series"}


@app.callback()
def root(
    context: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Turn thick-slice CT into synthetic thin-slice CT, with exact geometry."""
    context.with_resource(arguments_as_options(_RENAMED_OPTIONS))


for command in (upsample, simulate, info, convert, evaluate, train, models, push):
    app.command()(command)
app.add_typer(nnunet_app, name="nnunet")
app.add_typer(serve_app, name="serve")


def _exit_with_error(message: str, code: int) -> NoReturn:
    """The last resort of `main`, after the reporter has closed: still one ``error:`` line."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def main(args: list[str] | None = None) -> None:
    """Console-script entry point.

    Runs the app outside click's standalone mode so that command-line mistakes caught by the
    parser (an unknown option, a bad choice, a missing argument) are reported like every other
    usage error: one ``error:`` line naming the help command, and exit code 2.

    A scan too large for the memory, or a path the system refuses (a folder the user may not
    enter, a name too long), is no bug in thinct either: one line and exit code 1. Ctrl-C or
    SIGTERM, at any point from here on (while torch and a model load too), ends the run as
    `stop_signals_caught` says: ``error: interrupted`` and exit code 130.
    """
    with stop_signals_caught() as stop:
        try:
            code = app(args=args, standalone_mode=False)
        except KeyboardInterrupt:  # outside typer's reach (its parsing, its return)
            stop.received = True
        except MemoryError as error:
            _exit_with_error(out_of_memory(error), 1)
        except OSError as error:
            _exit_with_error(os_failure(error), 1)
        except Exception as error:
            # typer vendors click, so its parser errors are recognised by their interface.
            if not (hasattr(error, "format_message") and hasattr(error, "exit_code")):
                raise
            context = getattr(error, "ctx", None)
            command = context.command_path if context is not None else "thinct"
            if type(error).__name__ != "NoArgsIsHelpError":  # that one has shown the help
                print(f"error: {error.format_message()} (see '{command} --help')", file=sys.stderr)
            sys.exit(error.exit_code)
    if stop.received:
        _exit_with_error("interrupted", 130)
    sys.exit(code if isinstance(code, int) else 0)

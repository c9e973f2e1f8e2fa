"""`thinct serve`: run thinct as a DICOM node beside a PACS; `thinct serve status`: what its
queue holds; `thinct serve forget`: drop a series so that it is made again. The options
override the values of ``--config FILE.yaml`` (same names, with underscores); see
docs/dicom-node.md."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from thinct.cli.boundary import error_boundary
from thinct.cli.options import Consistency, Device, Method, Precision, command_group
from thinct.errors import UsageError
from thinct.inference.options import InferenceOptions
from thinct.reporting import Reporter

if TYPE_CHECKING:  # the node's modules import pynetdicom, an optional dependency
    from thinct.node.service import StopRequest

ENGINE = InferenceOptions()  # the engine's defaults, for the help
app = command_group("serve", "Run thinct as a DICOM node: receive thick CT, send thin CT on.")
app.info.no_args_is_help = False
app.info.invoke_without_command = True

SpoolOption = Annotated[
    Path | None,
    typer.Option(
        "--spool",
        metavar="DIR",
        help="Where the node keeps received instances, results and its queue.",
        show_default=False,
    ),
]


def _optional_node_packages() -> None:
    try:
        import pynetdicom  # noqa: F401
    except ImportError:
        raise UsageError("the DICOM node needs pynetdicom: pip install 'thinct[node]'") from None


@app.callback()
def serve(
    context: typer.Context,
    spool: SpoolOption = None,
    destination: Annotated[
        list[str] | None,
        typer.Option(
            "--destination",
            metavar="AE@HOST:PORT|URL",
            help="Where results go by C-STORE, or a DICOMweb URL for STOW-RS; repeatable.",
            show_default=False,
        ),
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow",
            metavar="AE[@HOST]",
            help="A calling AE title that may send (from HOST only, if given); repeatable; "
            "'*@HOST' allows every AE title of HOST, '*' every caller.",
            show_default=False,
        ),
    ] = None,
    ae_title: Annotated[
        str | None,
        typer.Option("--ae-title", metavar="AE", help="This node's AE title (default: THINCT)."),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option("--host", metavar="ADDRESS", help="Address to listen on (default: 0.0.0.0)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", metavar="PORT", help="Port to listen on (default: 11112)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", metavar="SPEC", help="The model (default: the shipped default model)."
        ),
    ] = None,
    method: Annotated[
        Method | None, typer.Option("--method", "-m", help="Interpolate instead of a model.")
    ] = None,
    spacing: Annotated[
        float | None,
        typer.Option("--spacing", metavar="MM", help="Thin slice spacing (default: 1.0)."),
    ] = None,
    consistency: Annotated[
        Consistency | None,
        typer.Option(
            "--consistency",
            help="Correct the thin slices to average back to the thick ones for this slice "
            "profile (default: none).",
            show_default=False,
        ),
    ] = None,
    # The engine's options, declared here rather than taken from thinct.cli.options: there
    # they default to the engine's values, here None lets the settings file fill them.
    device: Annotated[Device | None, typer.Option("--device", help="Where the model runs.")] = None,
    precision: Annotated[
        Precision | None, typer.Option("--precision", help="Model arithmetic.")
    ] = None,
    tile: Annotated[
        int | None,
        typer.Option(
            "--tile", metavar="PX", help=f"In-plane tile size for a model (default: {ENGINE.tile})."
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            metavar="N",
            help=f"Tiles per model forward pass (default: {ENGINE.batch_size}).",
        ),
    ] = None,
    z_overlap: Annotated[
        int | None,
        typer.Option(
            "--z-overlap",
            metavar="N",
            help=f"Thick slices shared by consecutive model windows (default: {ENGINE.z_overlap}).",
        ),
    ] = None,
    min_spacing: Annotated[
        float | None,
        typer.Option(
            "--min-spacing",
            metavar="MM",
            help="Process only series whose slices are at least this far apart (default: 2.0).",
        ),
    ] = None,
    quiet_period: Annotated[
        float | None,
        typer.Option(
            "--quiet-period",
            metavar="S",
            help="Seconds without a new instance after which a series is complete (default: 10).",
        ),
    ] = None,
    retention_hours: Annotated[
        float | None,
        typer.Option(
            "--retention-hours",
            metavar="H",
            help="Delete a finished series' spool data this long after (default: 24).",
        ),
    ] = None,
    tls_cert: Annotated[
        str | None, typer.Option("--tls-cert", metavar="PEM", help="TLS certificate.")
    ] = None,
    tls_key: Annotated[
        str | None, typer.Option("--tls-key", metavar="PEM", help="TLS key.")
    ] = None,
    tls_ca: Annotated[
        str | None,
        typer.Option("--tls-ca", metavar="PEM", help="Require client certificates from this CA."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", metavar="FILE.yaml", help="Settings file; options override it."),
    ] = None,
) -> None:
    """Run thinct as a DICOM node: receive thick CT series (C-STORE), make thin ones and send
    them to the destinations. Stop it with SIGTERM or Ctrl-C.

    Example: thinct serve --spool /var/spool/thinct --allow ORTHANC --destination ORTHANC@pacs:4242
    """
    if context.invoked_subcommand is not None:
        return
    given = dict(
        spool=None if spool is None else str(spool),
        destinations=tuple(destination or ()),
        allow=tuple(allow or ()),
        ae_title=ae_title,
        host=host,
        port=port,
        model=model,
        method=None if method is None else method.value,
        spacing=spacing,
        consistency=None if consistency is None else consistency.value,
        device=None if device is None else device.value,
        precision=None if precision is None else precision.value,
        tile=tile,
        batch_size=batch_size,
        z_overlap=z_overlap,
        min_spacing=min_spacing,
        quiet_period=quiet_period,
        retention_hours=retention_hours,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca=tls_ca,
    )
    with Reporter(quiet=True) as reporter, error_boundary(reporter):
        from thinct.node.settings import load_settings

        settings = load_settings(config, given)
        _optional_node_packages()
        from thinct.node.service import Node, StopRequest

        logging.basicConfig(
            stream=sys.stderr,
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(message)s",
        )
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        # Warnings of the libraries the node uses (pydicom's about odd headers, say) go to the
        # same log; thinct's own warnings reach it through the node (`Maker.make`).
        logging.captureWarnings(True)
        stop = StopRequest()
        _stop_on_signals(stop)
        Node(settings, stop).run()


def _stop_on_signals(stop: StopRequest) -> None:
    """SIGTERM (systemd, docker stop) and Ctrl-C end the loop instead of the process."""

    def request_stop(number: int, frame: FrameType | None) -> None:
        stop.request(signal.Signals(number).name)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


@app.command()
def status(spool: SpoolOption = None) -> None:
    """Show a node's queue: series per state and the latest problems."""
    with Reporter(quiet=True) as reporter, error_boundary(reporter):
        if spool is None:
            raise UsageError("give --spool DIR, the node's spool folder")
        from thinct.node.status import status_report

        typer.echo(status_report(spool))


@app.command()
def forget(
    series_uid: Annotated[
        str, typer.Argument(metavar="SERIES_UID", help="The Series Instance UID to forget.")
    ],
    spool: SpoolOption = None,
) -> None:
    """Forget a series, so that it is made again when it is sent again.

    Removes its rows from the node's queue and its data from the spool; refused while the
    node processes it."""
    with Reporter(quiet=True) as reporter, error_boundary(reporter):
        if spool is None:
            raise UsageError("give --spool DIR, the node's spool folder")
        from thinct.node.status import forget_series

        forget_series(spool, series_uid)
        typer.echo(f"forgot series {series_uid}: sent again, it will be made again", err=True)

"""What a DICOM node is told: who it is, whom it trusts, where it sends, which series it
processes and how. Values come from a YAML file (`load_settings`) and the command line, which
wins; every value is checked before the node opens its port."""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from thinct.errors import UsageError
from thinct.inference.options import DEVICES, PRECISIONS, InferenceOptions
from thinct.resample.consistency import check_consistency
from thinct.resample.interpolation import METHODS
from thinct.validation import at_least, build, positive

# An AE title: 1-16 characters of the default repertoire, no backslash, not only spaces.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
ALLOW_ANY = "*"
# The settings that say how a model runs (`InferenceOptions`); None leaves the engine's default.
ENGINE_SETTINGS = ("device", "precision", "tile", "batch_size", "z_overlap")


def check_ae_title(title: str, what: str) -> str:
    """An AE title as DICOM allows it (leading and trailing spaces are not significant)."""
    if not _AE_TITLE.match(title) or not title.strip():
        raise UsageError(f"{what} {title!r} is not an AE title (1 to 16 characters, no backslash)")
    return title.strip()


@dataclass(frozen=True)
class Destination:
    """Where results go: a DICOM node (``AE@HOST:PORT``, C-STORE) or a DICOMweb service
    (``http(s)://...``, STOW-RS)."""

    text: str
    ae_title: str = ""
    host: str = ""
    port: int = 0
    url: str = ""

    @classmethod
    def parse(cls, text: str) -> Destination:
        if text.startswith(("http://", "https://")):
            return cls(text, url=text.rstrip("/"))
        match = re.match(r"^(?P<ae>[^@]+)@(?P<host>[^:@]+|\[[0-9a-fA-F:]+\]):(?P<port>\d+)$", text)
        if not match:
            raise UsageError(
                f"destination {text!r} is neither AE@HOST:PORT nor an http(s) DICOMweb URL"
            )
        port = int(match["port"])
        if not 1 <= port <= 65535:
            raise UsageError(f"destination {text!r}: port {port} is not 1 to 65535")
        title = check_ae_title(match["ae"], f"destination {text!r}: AE title")
        return cls(text, ae_title=title, host=match["host"].strip("[]"), port=port)

    @property
    def is_dicomweb(self) -> bool:
        return bool(self.url)


@dataclass(frozen=True)
class Caller:
    """A calling AE the node accepts (``AE``), optionally only from one host (``AE@HOST``).
    The title ``*`` stands for any title: ``*@HOST`` accepts every AE of that host, and ``*``
    alone every caller."""

    ae_title: str
    addresses: frozenset[str] = frozenset()  # empty: any host

    @classmethod
    def parse(cls, text: str) -> Caller:
        title, at, host = text.partition("@")
        if at and not host:
            raise UsageError(f"--allow {text!r}: no host after '@'")
        if title != ALLOW_ANY:
            title = check_ae_title(title, f"--allow {text!r}: AE title")
        return cls(title, _addresses(host, text) if host else frozenset())

    @property
    def any_title(self) -> bool:
        return self.ae_title == ALLOW_ANY

    def admits(self, ae_title: str, address: str) -> bool:
        title_fits = self.any_title or ae_title.strip() == self.ae_title
        return title_fits and (not self.addresses or address in self.addresses)


def _addresses(host: str, text: str) -> frozenset[str]:
    """The IP addresses a host name stands for, resolved once when the node starts."""
    try:
        return frozenset({str(ipaddress.ip_address(host))})
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as error:
        raise UsageError(f"--allow {text!r}: host {host!r} is unknown ({error})") from None
    return frozenset(str(info[4][0]) for info in infos)


@dataclass(frozen=True)
class NodeSettings:
    """One node's settings; field names are the YAML keys, and the options with dashes."""

    spool: str
    destinations: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    ae_title: str = "THINCT"
    host: str = "0.0.0.0"
    port: int = positive(11112)
    # What makes the thin slices: a model spec (None: the default model) or an interpolation,
    # and how a model runs (None: the engine's default, as for `thinct upsample`).
    model: str | None = None
    method: str | None = None
    spacing: float = positive(1.0)
    consistency: str = "none"
    device: str | None = None
    precision: str | None = None
    tile: int | None = positive(None)
    batch_size: int | None = positive(None)
    z_overlap: int | None = positive(None)
    # Which series are processed.
    min_spacing: float = positive(2.0)
    min_slices: int = positive(3)
    max_tilt: float = at_least(0.0, 30.0)  # degrees between the slice normal and the body axis
    descriptions: tuple[str, ...] = ()  # SeriesDescription patterns (fnmatch); empty: any
    # Timing and robustness.
    quiet_period: float = positive(10.0)  # seconds without a new instance: the series is complete
    retry_delay: float = positive(5.0)  # first wait before sending again, doubled each time
    retry_max_delay: float = positive(600.0)
    max_attempts: int = positive(3)  # processing attempts (a crash counts) before "failed"
    retention_hours: float = at_least(0.0, 24.0)
    min_free_mb: float = at_least(0.0, 1024.0)  # below this, new instances are refused
    # TLS for incoming associations: certificate and key, and a CA to require client ones.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None

    def __post_init__(self) -> None:
        check_ae_title(self.ae_title, "--ae-title")
        if not self.port <= 65535:
            raise UsageError(f"--port {self.port} is not 1 to 65535")
        if not self.destinations:
            raise UsageError("give at least one --destination AE@HOST:PORT (or a DICOMweb URL)")
        if not self.allow:
            raise UsageError(
                "give --allow AE[@HOST] for each node that may send (or --allow '*' for any)"
            )
        for text in self.destinations:
            Destination.parse(text)
        for text in self.allow:
            Caller.parse(text)
        if self.model is not None and self.method is not None:
            raise UsageError("give --model or --method, not both")
        if self.method is not None and self.method not in METHODS:
            raise UsageError(f"method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.method is not None and any(getattr(self, n) is not None for n in ENGINE_SETTINGS):
            raise UsageError(
                "--device, --precision, --tile, --batch-size and --z-overlap apply to models, "
                "not to --method"
            )
        if self.device is not None and self.device not in DEVICES:
            raise UsageError(f"device {self.device!r} is not one of {', '.join(DEVICES)}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise UsageError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        check_consistency(self.consistency)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UsageError("TLS needs both --tls-cert and --tls-key")
        if self.tls_ca is not None and self.tls_cert is None:
            raise UsageError("--tls-ca needs --tls-cert and --tls-key")
        for path in (self.tls_cert, self.tls_key, self.tls_ca):
            if path is not None and not Path(path).is_file():
                raise UsageError(f"{path}: no such file")

    @property
    def spool_path(self) -> Path:
        return Path(self.spool)

    def parsed_destinations(self) -> list[Destination]:
        return [Destination.parse(text) for text in self.destinations]

    def callers(self) -> list[Caller]:
        return [Caller.parse(text) for text in self.allow]

    def inference_options(self) -> InferenceOptions:
        """How the model runs: the engine's defaults where nothing is set."""
        given = {name: getattr(self, name) for name in ENGINE_SETTINGS}
        return InferenceOptions(**{k: v for k, v in given.items() if v is not None})


def load_settings(config: Path | None, given: dict[str, Any]) -> NodeSettings:
    """The settings of a YAML file (if any) with the values given on the command line on top
    (``None`` and empty lists mean not given)."""
    values: dict[str, Any] = {}
    if config is not None:
        if not config.is_file():
            raise UsageError(f"{config}: no such config file")
        try:
            values = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            reason = " ".join(str(error).split())
            raise UsageError(f"{config} is not valid YAML: {reason}") from None
        if not isinstance(values, dict):
            raise UsageError(f"{config} must hold a mapping of settings")
        values = {str(key).replace("-", "_"): value for key, value in values.items()}
    values.update({k: v for k, v in given.items() if v is not None and v != [] and v != ()})
    if "spool" not in values:
        raise UsageError("give --spool DIR: the folder where the node keeps what it receives")
    return build(NodeSettings, values)

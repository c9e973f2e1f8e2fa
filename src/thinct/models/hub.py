"""Models on the Hugging Face Hub: ``hf://owner/repo[@revision][/subfolder]`` model specs.

A model repository holds a thinct model folder (``config.json`` + ``model.safetensors`` +
``README.md``, the layout of huggingface_hub's ``PyTorchModelHubMixin``), at its root or in a
subfolder. Downloads go through huggingface_hub's cache, so everything it documents applies:
``HF_HOME``/``HF_HUB_CACHE`` choose the cache, ``HF_HUB_OFFLINE=1`` uses only what is cached,
``HF_TOKEN`` (or ``hf auth login``) opens private repositories, and a revision pinned to a
commit sha always loads the same bytes. Only the three model files are fetched, whatever else
the repository holds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx2
from huggingface_hub import HfApi, constants, scan_cache_dir, snapshot_download
from huggingface_hub.errors import (
    CacheNotFound,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    LocalTokenNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from thinct._version import __version__
from thinct.errors import InputError, OutputError, ThinctError, UsageError
from thinct.models.config import CONFIG_CLASSES
from thinct.models.storage import (
    CARD_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_model_folder,
    recorded_sha256,
    sha256_of,
)

if TYPE_CHECKING:
    from torch import nn

HUB_PREFIX = "hf://"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class HubModel:
    """Where a model lives on the Hub: a repository, a revision (branch, tag or commit sha;
    ``None`` is the default branch) and a subfolder ("" for the root)."""

    repo_id: str
    revision: str | None = None
    subfolder: str = ""

    def __str__(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        subfolder = f"/{self.subfolder}" if self.subfolder else ""
        return f"{HUB_PREFIX}{self.repo_id}{revision}{subfolder}"


def is_hub_spec(spec: object) -> bool:
    return isinstance(spec, str) and spec.startswith(HUB_PREFIX)


def parse_hub_spec(spec: str) -> HubModel:
    """``hf://owner/repo[@revision][/subfolder]`` as a `HubModel`; a malformed one is a usage
    error naming the expected form."""
    rest = spec[len(HUB_PREFIX) :] if spec.startswith(HUB_PREFIX) else ""
    parts = rest.split("/")
    if len(parts) < 2 or not all(parts):
        raise UsageError(f"{spec!r} is not a Hub model; write hf://owner/repo[@revision]")
    owner, name_and_revision, *subfolder = parts
    name, _, revision = name_and_revision.partition("@")
    repo_id = f"{owner}/{name}"
    check_repo_id(repo_id)
    if "@" in name_and_revision and not revision:
        raise UsageError(f"{spec!r}: nothing follows '@'; give a branch, tag or commit sha")
    return HubModel(repo_id, revision or None, "/".join(subfolder))


def check_repo_id(repo_id: str) -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise UsageError(
            f"{repo_id!r} is not a Hub repository name (owner/name: letters, digits, '-', '_' "
            "and '.')"
        ) from None
    if repo_id.count("/") != 1:
        raise UsageError(f"{repo_id!r} is not a Hub repository name; write owner/name")


def fetch_model(model: HubModel) -> Path:
    """The local folder of a Hub model, downloaded into the Hub cache unless already there.

    Besides the sha256 that the model card records (checked when the model loads), the
    weights are checked against the sha256 the Hub names their blob by, so a corrupt cache is
    caught even for a card without one.
    """
    prefix = f"{model.subfolder}/" if model.subfolder else ""
    try:
        snapshot = snapshot_download(
            model.repo_id,
            revision=model.revision,
            allow_patterns=[prefix + name for name in MODEL_FILES],
            library_name="thinct",
            library_version=__version__,
        )
    except (RepositoryNotFoundError, GatedRepoError):
        raise InputError(
            f"{model}: no such model on the Hub, or it is private or gated (log in with "
            "`hf auth login` or set HF_TOKEN)"
        ) from None
    except RevisionNotFoundError:
        raise InputError(f"{model}: the repository has no revision {model.revision!r}") from None
    except LocalEntryNotFoundError:
        raise InputError(_not_cached(model)) from None
    except (HfHubHTTPError, httpx2.HTTPError) as error:
        raise InputError(f"{model}: the Hub could not be reached ({_first_line(error)})") from None
    folder = Path(snapshot) / model.subfolder
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise InputError(f"{model} is not a thinct model: it has no {' or '.join(missing)}")
    _check_blob(folder / WEIGHTS_FILE, model)
    return folder


def _not_cached(model: HubModel) -> str:
    where = f"the Hub cache ({constants.HF_HUB_CACHE})"
    if constants.is_offline_mode():
        return f"{model} is not in {where} and HF_HUB_OFFLINE is set; download it once online"
    return f"{model} is not in {where} and the Hub could not be reached"


def _check_blob(weights: Path, model: HubModel) -> None:
    """Large files are stored in the cache under their sha256 (Git LFS or Xet), which the Hub
    computed from the uploaded bytes; weights that no longer match were damaged on disk."""
    blob = weights.resolve().name
    if _SHA256.fullmatch(blob) and sha256_of(weights) != blob:
        raise InputError(
            f"{model}: the cached {WEIGHTS_FILE} does not match the sha256 the Hub recorded "
            f"(corrupt cache: delete {weights.resolve()} and load again)"
        )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclass(frozen=True)
class CachedModel:
    """A thinct model found in the Hub cache: its pinned spec, the branches or tags that
    point at it, its architecture and the size of its files."""

    spec: str
    refs: tuple[str, ...]
    architecture: str
    size_bytes: int


def cached_models() -> list[CachedModel]:
    """Every thinct model in the Hub cache (``HF_HUB_CACHE``), one per cached revision and
    folder, newest repositories first. Other models in the cache are left out."""
    try:
        cache = scan_cache_dir(constants.HF_HUB_CACHE)
    except CacheNotFound:
        return []
    found = []
    for repo in sorted(cache.repos, key=lambda r: r.last_modified, reverse=True):
        if repo.repo_type != "model":
            continue
        for revision in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            for config in (f for f in revision.files if f.file_name == CONFIG_FILE):
                architecture = _thinct_architecture(config.file_path)
                if architecture is None:
                    continue
                folder = config.file_path.parent
                subfolder = folder.relative_to(revision.snapshot_path).as_posix()
                model = HubModel(
                    repo.repo_id, revision.commit_hash, "" if subfolder == "." else subfolder
                )
                size = sum(f.size_on_disk for f in revision.files if f.file_path.parent == folder)
                found.append(
                    CachedModel(str(model), tuple(sorted(revision.refs)), architecture, size)
                )
    return found


def _thinct_architecture(config_path: Path) -> str | None:
    """The architecture a ``config.json`` names when it is a thinct config, else ``None``."""
    try:
        values = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(values, dict) and values.get("architecture") in CONFIG_CLASSES:
        return values["architecture"]
    return None


def push_model(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    branch: str | None = None,
    message: str | None = None,
    token: str | None = None,
) -> str:
    """Upload a model folder (config, weights, card) to a Hub repository, creating it if
    needed; returns the ``hf://`` spec pinned to the new commit.

    The folder is loaded first, so what is pushed is a model thinct can load: a folder whose
    weights do not match its card, or without a card, is refused before anything is sent.
    """
    folder = Path(folder)
    check_repo_id(repo_id)
    if not (folder / CONFIG_FILE).is_file():
        raise UsageError(f"{folder} is not a model folder: it has no {CONFIG_FILE}")
    if not (folder / CARD_FILE).is_file() or recorded_sha256(folder) is None:
        raise UsageError(
            f"{folder} has no model card recording its weights' sha256; save it with "
            "thinct.save_model (or thinct train) first"
        )
    load_model_folder(folder)
    api = HfApi(token=token, library_name="thinct", library_version=__version__)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if branch is not None:
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        commit = api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            revision=branch,
            allow_patterns=list(MODEL_FILES),
            commit_message=message or f"Upload {folder.name} with thinct {__version__}",
        )
    except (OfflineModeIsEnabled, LocalEntryNotFoundError):
        raise OutputError(f"cannot push to {repo_id}: HF_HUB_OFFLINE is set") from None
    except LocalTokenNotFoundError:
        raise OutputError(
            f"cannot push to {repo_id}: not logged in (run `hf auth login` or set HF_TOKEN)"
        ) from None
    except HfHubHTTPError as error:
        raise OutputError(f"cannot push to {repo_id}: {_first_line(error)}") from None
    except httpx2.HTTPError as error:
        raise OutputError(
            f"cannot push to {repo_id}: the Hub could not be reached ({_first_line(error)})"
        ) from None
    return str(HubModel(repo_id, commit.oid))


def load_hub_model(spec: str) -> nn.Module:
    """The model behind an ``hf://`` spec, in eval mode. Errors name the spec, not the
    snapshot folder deep inside the cache."""
    model = parse_hub_spec(spec)
    folder = fetch_model(model)
    try:
        return load_model_folder(folder)
    except ThinctError as error:
        raise type(error)(str(error).replace(str(folder), str(model))) from None


__all__ = [
    "HUB_PREFIX",
    "CachedModel",
    "HubModel",
    "cached_models",
    "fetch_model",
    "is_hub_spec",
    "load_hub_model",
    "parse_hub_spec",
    "push_model",
]

"""A Hugging Face Hub cache filled by hand, the way huggingface_hub lays it out after a
download: ``models--owner--repo/{blobs,refs,snapshots}``, snapshot files linking to blobs
named by their git sha1 (small files) or sha256 (large files, as Git LFS and Xet store them).

Tests load models from it with ``HF_HUB_OFFLINE=1``, which is how thinct's Hub code is tested
without a network.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# Files at least this large are stored by the Hub as LFS/Xet objects, named by their sha256.
LFS_THRESHOLD = 10_000


def _blob_name(content: bytes) -> str:
    if len(content) >= LFS_THRESHOLD:
        return hashlib.sha256(content).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def fill_cache(
    cache: Path,
    repo_id: str,
    files: dict[str, bytes],
    commit: str,
    refs: tuple[str, ...] = ("main",),
) -> Path:
    """Put one commit of a model repository into the cache; returns its snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for name, content in files.items():
        blob = repo / "blobs" / _blob_name(content)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit, encoding="utf-8")
    return snapshot


def model_files(folder: Path, prefix: str = "") -> dict[str, bytes]:
    """The files of a model folder, keyed by their path in a repository."""
    return {
        prefix + name: (folder / name).read_bytes()
        for name in ("config.json", "model.safetensors", "README.md")
        if (folder / name).is_file()
    }

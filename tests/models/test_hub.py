"""Models on the Hub, offline: a Hub cache filled by the test and loaded through
``hf://owner/repo@sha`` with ``HF_HUB_OFFLINE=1``, `thinct models`, and `thinct push` against a
local stand-in for the Hub's upload API (real huggingface_hub client calls throughout)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from helpers.cli import thinct_in_process
from helpers.fake_hub import FakeHubServer
from helpers.hub_cache import fill_cache, model_files
from helpers.paths import EXAMPLES, ROOT

from thinct.errors import InputError, UsageError
from thinct.models import (
    WEIGHTS_PACKAGE,
    create_model,
    load_model,
    save_model,
)
from thinct.models.hub import HubModel, cached_models, parse_hub_spec, push_model

SHIPPED = WEIGHTS_PACKAGE / "cthnet-small"
THICK = EXAMPLES / "lidc0002_crop_5mm.nii.gz"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache, offline: the environment for subprocesses, and huggingface_hub's
    constants for this process (it reads the environment once, when it is imported)."""
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def _same_weights(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    a, b = first.state_dict(), second.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_parse_hub_spec():
    assert parse_hub_spec("hf://lab/model") == HubModel("lab/model")
    assert parse_hub_spec(f"hf://lab/model@{COMMIT}") == HubModel("lab/model", COMMIT)
    assert parse_hub_spec("hf://lab/model@v1.0/small") == HubModel("lab/model", "v1.0", "small")
    assert str(HubModel("lab/model", "main", "a/b")) == "hf://lab/model@main/a/b"
    for bad in ("hf://model", "hf://lab/", "hf://lab/model@", "hf://lab/bad name", "hf:///x"):
        with pytest.raises(UsageError):
            parse_hub_spec(bad)


def test_load_pinned_commit_offline(hub_cache):
    fill_cache(hub_cache, "lab/thin", model_files(SHIPPED), COMMIT)
    model = load_model(f"hf://lab/thin@{COMMIT}")
    assert _same_weights(model, load_model("cthnet-small"))
    assert not model.training


def test_weights_sha256_of_a_hub_model_is_its_cards(hub_cache):
    """Provenance (nnU-Net conversions) records the weights' sha256 for Hub models too."""
    fill_cache(hub_cache, "lab/thin", model_files(SHIPPED), COMMIT)
    expected = load_model("cthnet-small").weights_sha256
    assert expected is not None and load_model(f"hf://lab/thin@{COMMIT}").weights_sha256 == expected


def test_load_branch_default_and_subfolder_offline(hub_cache):
    """A branch resolves through refs/, no revision means main, and a model may sit in a
    subfolder of its repository; each revision loads its own weights."""
    fill_cache(hub_cache, "lab/thin", model_files(SHIPPED), COMMIT, refs=("main",))
    other = create_model("cthnet-small")
    folder = save_model(other, hub_cache.parent / "other")
    fill_cache(hub_cache, "lab/thin", model_files(folder, "v2/"), OTHER_COMMIT, refs=("v2",))
    shipped = load_model("cthnet-small")
    assert _same_weights(load_model("hf://lab/thin"), shipped)
    assert _same_weights(load_model("hf://lab/thin@main"), shipped)
    assert _same_weights(load_model("hf://lab/thin@v2/v2"), other)


def test_offline_and_not_cached_is_one_clear_error(hub_cache):
    with pytest.raises(InputError, match="not in the Hub cache.*HF_HUB_OFFLINE"):
        load_model("hf://lab/absent@main")
    fill_cache(hub_cache, "lab/thin", model_files(SHIPPED), COMMIT)
    with pytest.raises(InputError, match="not in the Hub cache"):
        load_model(f"hf://lab/thin@{OTHER_COMMIT}")


def test_corrupt_weights_are_refused(hub_cache):
    """Damaged weights fail the card's sha256 (small files) and the blob name's sha256 (LFS
    files, even when the card records none)."""
    files = model_files(SHIPPED)
    snapshot = fill_cache(hub_cache, "lab/thin", files, COMMIT)
    blob = (snapshot / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256"):
        load_model(f"hf://lab/thin@{COMMIT}")
    del files["README.md"]  # no card, no recorded sha256: the blob's name still tells
    snapshot = fill_cache(hub_cache, "lab/nocard", files, COMMIT)
    blob = (snapshot / "model.safetensors").resolve()
    blob.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt cache"):
        load_model(f"hf://lab/nocard@{COMMIT}")


def test_a_config_from_a_newer_thinct_is_refused(hub_cache):
    files = model_files(SHIPPED)
    config = json.loads(files["config.json"])
    config["format"] = 99
    files["config.json"] = json.dumps(config).encode()
    fill_cache(hub_cache, "lab/future", files, COMMIT)
    with pytest.raises(InputError, match="newer than this thinct.*upgrade") as error:
        load_model(f"hf://lab/future@{COMMIT}")
    assert str(error.value).startswith(f"hf://lab/future@{COMMIT}/config.json: ")


def test_a_repository_without_a_model_is_refused(hub_cache):
    fill_cache(hub_cache, "lab/notes", {"README.md": b"# notes\n"}, COMMIT)
    with pytest.raises(InputError, match="not a thinct model: it has no config.json"):
        load_model(f"hf://lab/notes@{COMMIT}")


def test_unknown_name_lists_what_is_accepted():
    with pytest.raises(UsageError, match=r"not a registered model \(cthnet, cthnet-small"):
        load_model("cthnet-large")


def test_cached_models_lists_thinct_models_only(hub_cache):
    fill_cache(hub_cache, "lab/thin", model_files(SHIPPED), COMMIT, refs=("main", "v1"))
    fill_cache(hub_cache, "other/bert", {"config.json": b'{"model_type": "bert"}'}, COMMIT)
    (found,) = cached_models()
    assert found.spec == f"hf://lab/thin@{COMMIT}"
    assert found.refs == ("main", "v1")
    assert found.architecture == "cthnet"
    assert found.size_bytes >= (SHIPPED / "model.safetensors").stat().st_size


def test_models_command_lists_shipped_registered_and_cached(hub_cache, capfd):
    fill_cache(hub_cache, "lab/thin", model_files(SHIPPED), COMMIT)
    result = thinct_in_process(capfd, "models", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    assert rows["thickgrid"]["source"] == "shipped (default)"
    assert rows["cthnet-small"]["source"] == "shipped"
    assert rows["cthnet"]["source"].startswith("untrained")
    assert rows[f"hf://lab/thin@{COMMIT}"]["source"] == "Hub cache (main)"
    text = thinct_in_process(capfd, "models").stdout
    assert f"hf://lab/thin@{COMMIT}" in text and "cthnet-small" in text


def _offline_env(cache: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}


def test_upsample_with_a_hub_model_in_a_fresh_process(hub_cache, tmp_path):
    """The whole path a user takes: environment variables, the CLI, the engine; the output
    equals the shipped model's."""
    fill_cache(hub_cache, "lab/thin", model_files(SHIPPED), COMMIT)
    out = tmp_path / "hub.nii.gz"
    run = subprocess.run(
        [sys.executable, "-m", "thinct", "upsample", str(THICK), str(out), "-q",
         "--model", f"hf://lab/thin@{COMMIT}"],
        capture_output=True, text=True, encoding="utf-8", env=_offline_env(hub_cache),
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    reference = tmp_path / "shipped.nii.gz"
    from thinct.cli.app import main

    with pytest.raises(SystemExit) as exit_info:
        main(["upsample", str(THICK), str(reference), "-q", "--model", SHIPPED.name])
    assert exit_info.value.code == 0
    hub_image, shipped_image = sitk.ReadImage(str(out)), sitk.ReadImage(str(reference))
    assert np.array_equal(sitk.GetArrayViewFromImage(hub_image),
                          sitk.GetArrayViewFromImage(shipped_image))  # fmt: skip
    assert hub_image.GetSpacing() == shipped_image.GetSpacing()


def test_cli_hub_errors_are_one_line(hub_cache, tmp_path, capfd):
    out = tmp_path / "out.nii.gz"
    result = thinct_in_process(capfd, "upsample", THICK, out, "--model", "hf://lab/absent")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: hf://lab/absent") and "HF_HUB_OFFLINE" in line
    assert not out.exists()
    result = thinct_in_process(capfd, "upsample", THICK, out, "--model", "hf://x")
    assert result.returncode == 2 and "hf://owner/repo" in result.stderr


# --- push ---------------------------------------------------------------------------------


def test_push_uploads_the_model_files_and_returns_a_pinned_spec(tmp_path):
    folder = tmp_path / "mine"
    (folder / "notes.txt").parent.mkdir()
    for name, content in model_files(SHIPPED).items():
        (folder / name).write_bytes(content)
    (folder / "notes.txt").write_text("not part of the model", encoding="utf-8")
    with FakeHubServer() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": "hf_test_token",
               "HF_HUB_OFFLINE": "0", "NO_COLOR": "1"}  # fmt: skip
        run = subprocess.run(
            [sys.executable, "-m", "thinct", "push", str(folder), "lab/thin", "--private",
             "--branch", "v1", "-m", "first weights"],
            capture_output=True, text=True, encoding="utf-8", env=env, timeout=300,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert hub.repos == {"lab/thin": True}
    assert hub.branches == [("lab/thin", "v1")]
    (commit,) = hub.commits
    assert commit.revision == "v1" and commit.message == "first weights"
    assert commit.files == model_files(SHIPPED)  # byte for byte, and nothing else
    assert all(token == "Bearer hf_test_token" for token in hub.tokens)
    assert any("weights_sha256" in card for card in hub.validated)  # the card's metadata
    assert f"--model hf://lab/thin@{commit.oid}" in run.stderr


def test_push_refuses_what_thinct_could_not_load(tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_bytes((SHIPPED / "config.json").read_bytes())
    (bare / "model.safetensors").write_bytes((SHIPPED / "model.safetensors").read_bytes())
    with pytest.raises(UsageError, match="no model card"):
        push_model(bare, "lab/thin")
    (bare / "README.md").write_bytes((SHIPPED / "README.md").read_bytes())
    (bare / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(InputError, match="sha256"):
        push_model(bare, "lab/thin")
    with pytest.raises(UsageError, match="not a Hub repository name"):
        push_model(SHIPPED, "lab/thin/extra")
    with pytest.raises(UsageError, match="not a model folder"):
        push_model(tmp_path, "lab/thin")


def test_push_offline_is_one_line(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    result = thinct_in_process(capfd, "push", SHIPPED, "lab/thin")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line == "error: cannot push to lab/thin: HF_HUB_OFFLINE is set"
    result = thinct_in_process(capfd, "push", tmp_path / "missing", "lab/thin")
    assert result.returncode == 2 and "no such folder" in result.stderr


# --- docs/hub.md ----------------------------------------------------------------------------

DOCS_COMMIT = "6f1c2a9e8d7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a"


def _page_blocks(language: str) -> list[str]:
    text = (ROOT / "docs" / "hub.md").read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def _run_line(line: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """One documented command line: leading VAR=value words set the environment, `thinct`
    runs as `python -m thinct` and `hf` as the huggingface_hub CLI of this environment."""
    words = shlex.split(line)
    env = dict(env)
    while "=" in words[0]:
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    program = {
        "thinct": [sys.executable, "-m", "thinct"],
        "hf": [str(Path(sys.executable).parent / "hf")],
    }
    return subprocess.run(
        program[words[0]] + words[1:], capture_output=True, text=True, encoding="utf-8",
        env=env, cwd=cwd, timeout=300,
    )  # fmt: skip


def test_hub_page_examples_run(hub_cache, tmp_path, monkeypatch):
    """Every block of docs/hub.md, as written: the commands offline against a cache holding
    the page's model at its commit, push against the local stand-in for the Hub, and the
    Python example."""
    fill_cache(hub_cache, "my-lab/thinct-chest", model_files(SHIPPED), DOCS_COMMIT)
    work = tmp_path / "work"
    (work / "runs" / "chest").mkdir(parents=True)
    shutil.copytree(SHIPPED, work / "runs" / "chest" / "best")
    image = sitk.ReadImage(str(THICK))[64:128, 64:128, :]  # a small scan keeps the runs short
    sitk.WriteImage(image, str(work / "scan_5mm.nii.gz"))
    (work / "examples").symlink_to(ROOT / "examples")
    env = {**_offline_env(hub_cache), "COLUMNS": "200"}
    ran = []
    with FakeHubServer() as hub:
        online = {**env, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": "hf_x"}
        for block in _page_blocks("bash"):
            for line in block.strip().splitlines():
                run = _run_line(line, online if " push " in line else env, work)
                assert run.returncode == 0, f"{line}\n{run.stderr}"
                ran.append((line, run))
    assert (work / "scan_1mm.nii.gz").is_file() and (work / "scan_1mm_again.nii.gz").is_file()
    listing = next(run.stdout for line, run in ran if line == "thinct models")
    assert f"hf://my-lab/thinct-chest@{DOCS_COMMIT}" in listing
    (commit,) = hub.commits
    assert commit.files == model_files(SHIPPED) and hub.repos == {"my-lab/thinct-chest": True}
    monkeypatch.chdir(work)
    namespace: dict = {}
    for block in _page_blocks("python"):
        exec(compile(block, "docs/hub.md", "exec"), namespace)
    assert namespace["thin"].image.GetSize() == (192, 192, 80)

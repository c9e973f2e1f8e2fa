"""The README's promises: its test command is what CI runs, and its Python example works;
the Python examples of the model and engine pages run too, and the pages name the default
model."""

from __future__ import annotations

import re

import SimpleITK as sitk
from helpers.paths import ROOT


def _fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


VIRTUAL_ENVIRONMENT = "python3 -m venv .venv && . .venv/bin/activate"


def _quick_start_commands() -> list[str]:
    """The Quick start's commands after its virtual environment (CI makes its own)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    venv, *commands = [block.strip() for block in _fenced_blocks(section, "bash")]
    assert venv == VIRTUAL_ENVIRONMENT
    return commands


def test_quick_start_has_two_commands_install_and_run_then_test():
    run, test = _quick_start_commands()
    assert run.startswith("pip install") and "thinct upsample examples/" in run
    assert test.startswith("pip install") and "pytest" in test


def test_ci_runs_the_readme_quick_start_verbatim():
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    for command in _quick_start_commands():
        assert command in ci_lines


def test_readme_quick_start_uses_the_shipped_example():
    run = _quick_start_commands()[0]
    example = re.search(r"thinct upsample (\S+)", run).group(1)
    assert (ROOT / example).is_file()


def test_readme_python_example_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    (block,) = _fenced_blocks(readme, "python")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    written = sitk.ReadImage(str(tmp_path / "out_1mm.nii.gz"))
    assert written.GetSpacing()[2] == 1.0
    assert written.GetSize() == (192, 192, 80)
    assert namespace["simulated"].image.GetSize() == (192, 192, 16)


def _run_python_blocks(page: str, tmp_path, monkeypatch) -> dict:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in _fenced_blocks((ROOT / page).read_text(), "python"):
        exec(compile(block, page, "exec"), namespace)
    return namespace


def test_models_page_examples_run(tmp_path, monkeypatch):
    namespace = _run_python_blocks("docs/models.md", tmp_path, monkeypatch)
    assert tuple(namespace["slots"].shape) == (1, 1, 36, 64, 64)
    assert (tmp_path / "models" / "my-cthnet" / "model.safetensors").is_file()


def test_engine_page_example_runs(tmp_path, monkeypatch, capsys):
    _run_python_blocks("docs/engine.md", tmp_path, monkeypatch)
    written = sitk.ReadImage(str(tmp_path / "out_1mm.nii.gz"))
    assert written.GetSize() == (192, 192, 80) and written.GetSpacing()[2] == 1.0
    assert capsys.readouterr().out.splitlines()[-1] == "100%"


def test_the_pages_name_the_default_model():
    """README, the command-line page and the engine page say which model runs by default."""
    from thinct.models import DEFAULT_MODEL

    for page in ("README.md", "docs/cli.md", "docs/engine.md"):
        assert f"`{DEFAULT_MODEL}`" in (ROOT / page).read_text(), page

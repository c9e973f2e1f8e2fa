"""The README's promises: its test command is what CI runs, and its Python example works."""

from __future__ import annotations

import re

import SimpleITK as sitk
from conftest import ROOT


def _fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = [block.strip() for block in _fenced_blocks(readme, "bash") if "pytest" in block]
    assert len(commands) == 1, "the Quick start should have exactly one test command"
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert commands[0] in ci_lines


def test_readme_quick_start_uses_the_shipped_example():
    readme = (ROOT / "README.md").read_text()
    run = next(b for b in _fenced_blocks(readme, "bash") if "thinct upsample examples/" in b)
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

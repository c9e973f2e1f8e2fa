"""The TorchIO and MONAI pages (docs/torchio.md, docs/monai.md): every fenced block runs, or
names what exists, and does what the page says."""

from __future__ import annotations

import re
import shlex
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from helpers.paths import ROOT


def _blocks(page: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block of a page."""
    text = (ROOT / page).read_text(encoding="utf-8")
    return re.findall(r"```(\w+)\n(.*?)```", text, flags=re.DOTALL)


def _run_python_blocks(page: str, tmp_path, monkeypatch) -> dict:
    """Run the page's Python blocks in order, in one namespace, from a folder that has the
    examples (as a reader who cloned the repository would)."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for language, code in _blocks(page):
        if language == "python":
            exec(compile(code, page, "exec"), namespace)
    return namespace


def test_pages_have_only_python_and_bash_blocks():
    for page in ("docs/torchio.md", "docs/monai.md"):
        assert {language for language, _ in _blocks(page)} == {"python", "bash"}, page


def test_torchio_page_examples_run(tmp_path, monkeypatch):
    ns = _run_python_blocks("docs/torchio.md", tmp_path, monkeypatch)
    assert ns["thin"].ct.shape == (1, 192, 192, 80)
    assert ns["thin"].ct.spacing == pytest.approx((0.681641, 0.681641, 1.0), abs=1e-6)
    assert ns["by_model"].ct.shape == (1, 64, 64, 80)
    assert ns["only_ct"].ct.shape[-1] == 80 and ns["only_ct"].mask.shape[-1] == 16
    assert ns["name"] == "ThinSlices"
    assert ns["arguments"]["source_grids"]["ct"]["size"] == [192, 192, 16]
    assert torch.equal(ns["replayed"].ct.data, ns["thin"].ct.data)
    assert ns["back"].ct.shape == (1, 192, 192, 16)
    assert torch.equal(ns["back"].mask.data, ns["subject"].mask.data)
    assert ns["on_thick"].prediction.shape == (1, 192, 192, 16)
    assert tuple(ns["images"].shape) == tuple(ns["labels"].shape) == (4, 1, 64, 64, 32)
    assert 0.0 <= float(ns["images"].median()) <= 1.0  # rescaled from the HU window
    assert ns["thick_subject"].ct.shape == (1, 192, 192, 16)
    assert np.allclose(ns["thick_subject"].ct.affine, ns["subject"].ct.affine)


def test_torchio_page_example_commands_are_the_scripts_options():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from train_segmentation_torchio import parse_arguments
    finally:
        sys.path.remove(str(ROOT / "examples"))
    ((_, code),) = [block for block in _blocks("docs/torchio.md") if block[0] == "bash"]
    for line in code.strip().splitlines():
        python, script, *options = shlex.split(line)
        assert python == "python" and (ROOT / script).is_file()
        parse_arguments(options)  # argparse exits on an option the script does not have


def test_monai_page_install_command_names_the_extra():
    ((_, code),) = [block for block in _blocks("docs/monai.md") if block[0] == "bash"]
    assert code.strip() == 'pip install "thinct[monai]"'
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    extras = pyproject.split("[project.optional-dependencies]\n", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^monai = \["monai>=[\d.]+"\]$', extras, flags=re.MULTILINE)


@pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader")
@pytest.mark.filterwarnings("ignore:builtin type .* has no __module__:DeprecationWarning")
def test_monai_page_examples_run(tmp_path, monkeypatch):
    pytest.importorskip("monai")
    ns = _run_python_blocks("docs/monai.md", tmp_path, monkeypatch)
    assert tuple(ns["thin"]["ct"].shape) == (1, 192, 192, 80)
    assert ns["thin"]["ct"].pixdim.tolist() == pytest.approx([0.681641, 0.681641, 1.0], abs=1e-6)
    assert ns["thin"]["mask"].dtype == torch.int16
    written = sitk.ReadImage(str(tmp_path / "thin" / "lidc0002_crop_5mm_1mm.nii.gz"))
    assert written.GetSize() == (192, 192, 80) and written.GetSpacing()[2] == pytest.approx(1.0)
    assert (tmp_path / "labels" / "lidc0002_crop_5mm_lungs.nii.gz").is_file()
    assert tuple(ns["batch"]["ct"].shape) == (1, 1, 192, 192, 80)
    assert ns["thick"]["ct"].shape == ns["thick"]["mask"].shape == (1, 192, 192, 16)
    assert torch.equal(ns["thick"]["mask"].as_tensor(), ns["data"]["mask"].float().as_tensor())
    assert ns["item"]["pred"].shape == (1, 192, 192, 16)
    assert set(torch.unique(ns["item"]["pred"]).tolist()) == {0.0, 1.0}

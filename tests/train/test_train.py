"""Training: the YAML recipe, the losses, whole (tiny) training runs on the shipped real CT
crop, resuming, the `thinct train` command, and two processes under torchrun.

The runs train a tiny CTHNet for a few steps on the first 60 % of the crop's slices and
validate on the last 35 % through the real sliding-window engine; nothing of thinct is
mocked. Torch runs single-threaded in these tests, like each torchrun process, so that a
single-process run and rank 0 of a distributed run compute alike.
"""

from __future__ import annotations

import csv
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers.cli import assert_ok, assert_one_error, show, thinct, thinct_in_process
from helpers.paths import EXAMPLES, ROOT
from helpers.training import CROP, TINY_MODEL, tiny_config, tiny_recipe, write_recipe
from safetensors.torch import load_file

from thinct.data.crops import CropOptions, CropSampler
from thinct.data.pairs import normalise, simulated_pair
from thinct.errors import UsageError
from thinct.inference.options import InferenceOptions
from thinct.io import read_volume
from thinct.models import create_model, load_model
from thinct.train.config import TrainConfig, config_to_dict, load_train_config
from thinct.train.loop import LOG_FIELDS, train, validate
from thinct.train.losses import gradient_l1, ssim_2d, training_loss
from thinct.train.sources import validation_cases


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def read_log(folder: Path) -> list[dict[str, str]]:
    with open(folder / "log.csv", newline="") as stream:
        rows = list(csv.reader(stream))
    assert tuple(rows[0]) == LOG_FIELDS
    return [dict(zip(LOG_FIELDS, row, strict=True)) for row in rows[1:]]


def loss_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [row for row in rows if row["loss"]]


def scheduled_lr(step: int, steps: int, lr=3.0e-4, min_lr=1.0e-6, warmup=2) -> float:
    """The cosine schedule written out: the rate after ``step`` optimiser steps (the one the
    next step uses): a linear warm-up over ``warmup`` steps, then a half cosine from ``lr``
    down to ``min_lr`` at the last step."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def checkpoint(folder: Path) -> dict:
    return torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)


def tiny_model(state: dict | None = None) -> torch.nn.Module:
    """The tiny CTHNet, freshly initialised or with the given weights, in eval mode."""
    model = create_model(
        "cthnet", **{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_MODEL.items()}
    )
    if state is not None:
        model.load_state_dict(state)
    return model.eval()


# --- the recipe ----------------------------------------------------------------------------


RECIPES = sorted((ROOT / "configs").rglob("*.yaml"))
# The scan every recipe leaves out of training and model selection: the held-out test scan.
TEST_SCAN = "itkelastix_4dct00_2.0mm.nii.gz"


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.stem)
def test_shipped_recipes_load_and_hold_out_their_validation_parts(path):
    config = load_train_config(path)
    prefix = "compare-" if path.parent.name == "compare" else ""
    assert config.output == f"runs/{prefix}{path.stem}"
    assert config.data.train and config.data.validation
    sources = [*config.data.train, *config.data.validation]
    assert all(TEST_SCAN not in source.path for source in sources)
    assert config.optim.steps > config.optim.warmup_steps
    # A scan split into a training and a held-out part: the parts never overlap.
    for held_out in config.data.validation:
        for source in config.data.train:
            if source.path == held_out.path:
                start, stop = held_out.slices
                assert source.slices[1] <= start or stop <= source.slices[0]


def test_recipe_round_trips_through_yaml(tmp_path):
    recipe = tiny_recipe(
        tmp_path / "run",
        data={
            "train": [{"path": CROP, "axes": ["z", "x"], "slices": [0, 0.6]}],
            "degradations": [{"profile": "boxcar"}, {"profile": "gaussian", "fwhm": 6}],
        },
        loss={"kind": "l1+ssim", "weight": 0.2},
    )
    config = load_train_config(write_recipe(tmp_path / "a.yaml", recipe))
    assert config.data.train[0].axes == ("z", "x")
    assert config.data.train[0].slices == (0.0, 0.6)
    assert config.data.degradations[1].fwhm == 6.0
    assert config.model.config["encoder_depths"] == (1,)
    assert config.loss.weight == 0.2
    plain = config_to_dict(config)
    assert plain["data"]["train"][0]["axes"] == ["z", "x"]
    again = load_train_config(write_recipe(tmp_path / "b.yaml", plain))
    assert again == config
    assert config_to_dict(again) == plain


BAD_RECIPES = [
    ({"bogus": 1}, "unknown key bogus"),
    ({"optim": {"lrr": 1}}, "unknown key optim.lrr"),
    ({"optim": {"lr": "fast"}}, "optim.lr = 'fast' is not valid"),
    ({"optim": {"lr": -1.0}}, "optim.lr = -1.0 is not valid (expected a positive number)"),
    ({"optim": {"lr": float("nan")}}, "optim.lr = nan"),
    ({"optim": {"steps": 1.5}}, "optim.steps = 1.5"),
    ({"optim": {"steps": 0}}, "optim.steps = 0 is not valid (expected a whole number, 1 or"),
    ({"optim": {"batch_size": True}}, "optim.batch_size = True"),
    ({"optim": {"schedule": "linear"}}, "optim.schedule must be one of cosine, plateau"),
    ({"validate_every": 0}, "validate_every = 0"),
    ({"seed": -1}, "seed = -1"),
    ({"crop": {"flip": 1.5}}, "crop.flip = 1.5 is not valid (expected a fraction from 0 to 1)"),
    ({"crop": {"tile": 0}}, "crop.tile = 0"),
    ({"crop": {"noise": -2.0}}, "crop.noise = -2.0 is not valid (expected a number, 0 or more)"),
    ({"data": {"phases": 0}}, "data.phases = 0 is not valid (expected a whole number, 1 or"),
    ({"loss": {"kind": "l2"}}, "loss.kind must be one of l1, l1+ssim, l1+gradient"),
    ({"amp": "fp8"}, "amp must be one of off, bf16, fp16"),
    ({"device": 0}, "device = 0 is not valid (expected a text like 'auto')"),
    ({"output": None}, "output = None is not valid"),
    ({"model": {"config": [1]}}, "model.config must be a mapping"),
    ({"model": "cthnet"}, "model must be a mapping"),
    ({"data": {"train": []}}, "data.train lists no scans to train on"),
    ({"data": {"train": CROP}}, "data.train must be a list"),
    ({"data": {"train": [CROP]}}, "data.train[0] must be a mapping"),
    ({"data": {"train": [{"slices": [0, 1]}]}}, "the config needs data.train[0].path"),
    ({"data": {"train": [{"path": None}]}}, "data.train[0].path = None is not valid"),
    ({"data": {"train": [{"path": CROP, "axes": "z"}]}}, "data.train[0].axes must be a list"),
    ({"data": {"train": [{"path": CROP, "axes": ["w"]}]}}, "axes must be some of x, y, z"),
    ({"data": {"train": [{"path": CROP, "slices": [0.5]}]}}, "data.train[0].slices must be a"),
    ({"data": {"train": [{"path": CROP, "slices": [0.5, 0.2]}]}}, "slices must be [start, stop]"),
    ({"data": {"train": [{"path": CROP, "layout": "x"}]}}, "layout must be one of rplhr, cthnet"),
    ({"data": {"spacing": 0}}, "data.spacing = 0"),
    ({"data": {"degradations": [{"profile": "tri"}]}}, "profile must be one of boxcar, gaussian"),
    ({"data": {"degradations": [{"fwhm": 6}]}}, "fwhm only applies to profile gaussian"),
    (
        {"data": {"degradations": [{"profile": "gaussian", "fwhm": 0}]}},
        "data.degradations[0].fwhm = 0",
    ),
]


@pytest.mark.parametrize(("changes", "fragment"), BAD_RECIPES)
def test_bad_recipes_are_one_line_errors_naming_the_key(tmp_path, changes, fragment):
    path = write_recipe(tmp_path / "bad.yaml", tiny_recipe(tmp_path / "run", **changes))
    with pytest.raises(UsageError) as error:
        load_train_config(path)
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the config needs output"),
        ("seed: 1\n", "the config needs output"),
        ("output: run\n", "the config needs data"),
        ("- output: run\n", "the config must be a mapping"),
        ("optim: {lr: [\n", "is not valid YAML"),
    ],
)
def test_incomplete_or_broken_files(tmp_path, text, fragment):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=fragment.replace("[", r"\[")) as error:
        load_train_config(path)
    assert "\n" not in str(error.value)
    with pytest.raises(UsageError, match="no such config file"):
        load_train_config(tmp_path / "missing.yaml")


# --- losses --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_crops() -> tuple[torch.Tensor, torch.Tensor]:
    """Two real thin crops (B = 2, 36 slots of 32 x 32) on the [0, 1] scale."""
    pair = simulated_pair(read_volume(EXAMPLES / CROP), ratio=5, spacing=1.25)
    sampler = CropSampler([pair], CropOptions(slices=8, ratio=5, tile=32))
    rng = np.random.default_rng(0)
    return torch.cat([sampler.draw(rng)[1][None] for _ in range(2)])


def _blurred(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool3d(x, 3, stride=1, padding=1, count_include_pad=False)


def test_l1_loss_is_the_mean_absolute_error(real_crops):
    output = _blurred(real_crops)
    expected = float((output - real_crops).abs().double().mean())
    assert float(training_loss(output, real_crops, "l1")) == pytest.approx(expected, rel=1e-5)
    assert torch.equal(training_loss(output, real_crops), F.l1_loss(output, real_crops))


def test_ssim_term(real_crops):
    assert float(ssim_2d(real_crops, real_crops)) == pytest.approx(1.0, abs=1e-5)
    blurred = _blurred(real_crops)
    similarity = float(ssim_2d(blurred, real_crops))
    assert 0.3 < similarity < 0.999
    loss = training_loss(blurred, real_crops, "l1+ssim", weight=0.5)
    expected = F.l1_loss(blurred, real_crops) + 0.5 * (1 - similarity)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert float(training_loss(real_crops, real_crops, "l1+ssim")) == pytest.approx(0, abs=1e-5)


def test_gradient_term(real_crops):
    assert float(gradient_l1(real_crops, real_crops)) == 0
    # Finite differences ignore a constant shift, which L1 does not.
    shifted = real_crops + 0.1
    assert float(gradient_l1(shifted, real_crops)) == pytest.approx(0, abs=1e-6)
    blurred = _blurred(real_crops)
    a, b = blurred.double().numpy(), real_crops.double().numpy()
    by_hand = np.mean([np.abs(np.diff(a, axis=d) - np.diff(b, axis=d)).mean() for d in (2, 3, 4)])
    assert float(gradient_l1(blurred, real_crops)) == pytest.approx(by_hand, rel=1e-4)
    loss = training_loss(blurred, real_crops, "l1+gradient", weight=2.0)
    expected = float(F.l1_loss(blurred, real_crops)) + 2.0 * by_hand
    assert float(loss) == pytest.approx(expected, rel=1e-4)


def test_unknown_loss_is_refused(real_crops):
    with pytest.raises(UsageError, match="loss must be one of l1, l1[+]ssim, l1[+]gradient"):
        training_loss(real_crops, real_crops, "l2")


# --- whole runs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run4(tmp_path_factory) -> tuple[TrainConfig, object, Path]:
    """4 steps, validated once at the end (so the best weights are the last ones)."""
    root = tmp_path_factory.mktemp("run4")
    config = tiny_config(root, root / "run")
    messages: list[str] = []
    result = train(config, report=messages.append)
    assert messages[0] == "1 training pairs, 1 validation scans"
    assert messages[1].startswith("step 4: validation PSNR") and messages[1].endswith("(best)")
    return config, result, root / "run"


def test_run_writes_its_folder(run4):
    config, result, folder = run4
    assert sorted(p.name for p in folder.iterdir()) == [
        "best",
        "checkpoint.pt",
        "config.yaml",
        "log.csv",
    ]
    assert (result.steps, result.best_step, result.folder) == (4, 4, folder)
    assert 20 < result.best_psnr < 60 and 0.5 < result.best_ssim <= 1
    assert load_train_config(folder / "config.yaml") == config
    state = checkpoint(folder)
    assert state["step"] == 4
    assert state["config"] == config_to_dict(config)
    assert state["best"] == {"step": 4, "psnr": result.best_psnr, "ssim": result.best_ssim}


def test_run_log_has_every_step_and_the_validation(run4):
    _, result, folder = run4
    rows = read_log(folder)
    assert [(row["step"], bool(row["loss"]), bool(row["val_psnr"])) for row in rows] == [
        ("1", True, False),
        ("2", True, False),
        ("3", True, False),
        ("4", True, False),
        ("4", False, True),
    ]
    losses = [float(row["loss"]) for row in loss_rows(rows)]
    assert all(0 < loss < 0.2 for loss in losses)
    for row in loss_rows(rows):
        assert float(row["lr"]) == pytest.approx(scheduled_lr(int(row["step"]), 4), rel=1e-3)
    assert float(rows[-1]["val_psnr"]) == pytest.approx(result.best_psnr, abs=1e-4)
    assert float(rows[-1]["val_ssim"]) == pytest.approx(result.best_ssim, abs=1e-5)


def test_best_folder_is_the_trained_model_and_scores_the_logged_psnr(run4):
    config, result, folder = run4
    best = load_model(folder / "best")
    trained = tiny_model(checkpoint(folder)["model"])
    assert best.config == trained.config
    pair = simulated_pair(read_volume(EXAMPLES / CROP), spacing=1.0)
    thick = torch.from_numpy(normalise(pair.thick[:8, 64:128, 64:128]))[None, None]
    with torch.inference_mode():
        assert torch.equal(best(thick), trained(thick))
        assert not torch.allclose(best(thick), tiny_model()(thick), atol=1e-6)
    # What users get from best/ through the engine is the number that picked it.
    scores = validate(best, validation_cases(config.data, 5), InferenceOptions(device="cpu"))
    assert scores["psnr"] == pytest.approx(result.best_psnr, abs=1e-9)
    assert scores["ssim"] == pytest.approx(result.best_ssim, abs=1e-9)
    card = (folder / "best" / "README.md").read_text(encoding="utf-8")
    assert "step 4 of 4" in card and f"PSNR {result.best_psnr:.2f} dB" in card


def test_existing_run_needs_resume(run4):
    config, _, folder = run4
    before = (folder / "checkpoint.pt").stat().st_mtime_ns
    with pytest.raises(UsageError, match="already holds a run; give resume=True"):
        train(config)
    assert (folder / "checkpoint.pt").stat().st_mtime_ns == before


def test_resume_needs_a_checkpoint(tmp_path):
    config = tiny_config(tmp_path, tmp_path / "run")
    with pytest.raises(UsageError, match="has no checkpoint.pt to resume from"):
        train(config, resume=True)
    assert not (tmp_path / "run").exists()


def test_output_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    config = tiny_config(tmp_path, tmp_path / "run")
    with pytest.raises(UsageError, match="exists and is not a folder"):
        train(config)
    assert (tmp_path / "run").read_text(encoding="utf-8") == "not a folder"


def test_resume_refuses_another_recipe(run4, tmp_path):
    _, _, folder = run4
    before = (folder / "checkpoint.pt").stat().st_mtime_ns
    changed = tiny_config(tmp_path, folder, optim={"lr": 1.0e-3})
    with pytest.raises(UsageError, match="was trained with a different optim.lr;"):
        train(changed, resume=True)
    changed = tiny_config(tmp_path, folder, crop={"flip": 0.0})
    with pytest.raises(UsageError, match="different crop.flip"):
        train(changed, resume=True)
    shorter = tiny_config(tmp_path, folder, optim={"steps": 3})
    with pytest.raises(UsageError, match="is at step 4, beyond optim.steps 3"):
        train(shorter, resume=True)
    assert (folder / "checkpoint.pt").stat().st_mtime_ns == before


def test_resume_trains_longer_and_continues_the_optimiser(tmp_path):
    """2 steps, then resumed to 5 (a longer schedule); no validation: best/ is the last."""
    no_validation = {"data": {"validation": []}, "checkpoint_every": 1}
    first = tiny_config(tmp_path, tmp_path / "run", optim={"steps": 2}, **no_validation)
    assert train(first).best_step == 2
    assert checkpoint(tmp_path / "run")["step"] == 2
    longer = tiny_config(tmp_path, tmp_path / "run", optim={"steps": 5}, **no_validation)
    messages: list[str] = []
    result = train(longer, resume=True, report=messages.append)
    assert messages[0] == f"resuming {tmp_path / 'run'} at step 2"
    assert result.steps == 5 and result.best_step == 5 and math.isnan(result.best_psnr)
    state = checkpoint(tmp_path / "run")
    assert state["step"] == 5
    # The optimiser's moments and step counts came back from the checkpoint: a fresh AdamW
    # would count 3 steps. The schedule counts all 5 as well.
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {5}
    assert state["schedule"]["last_epoch"] == 5
    assert state["config"]["optim"]["steps"] == 5
    rows = loss_rows(read_log(tmp_path / "run"))
    assert [int(row["step"]) for row in rows] == [1, 2, 3, 4, 5]
    lengths = {1: 2, 2: 2, 3: 5, 4: 5, 5: 5}  # the first two steps ran under a 2-step plan
    for row in rows:
        step = int(row["step"])
        assert float(row["lr"]) == pytest.approx(scheduled_lr(step, lengths[step]), rel=1e-3)
    best = load_file(tmp_path / "run" / "best" / "model.safetensors")
    assert best.keys() == state["model"].keys()
    assert all(torch.equal(best[k], state["model"][k]) for k in best)


def test_a_run_saved_before_a_config_section_existed_resumes(tmp_path):
    """A checkpoint written before the diffusion section existed trained with its defaults, so
    it resumes; a saved value that differs from today's default still refuses."""
    no_validation = {"data": {"validation": []}, "checkpoint_every": 1}
    first = tiny_config(tmp_path, tmp_path / "run", optim={"steps": 1}, **no_validation)
    train(first)
    path = tmp_path / "run" / "checkpoint.pt"
    state = checkpoint(tmp_path / "run")
    del state["config"]["diffusion"]
    torch.save(state, path)
    longer = tiny_config(tmp_path, tmp_path / "run", optim={"steps": 2}, **no_validation)
    assert train(longer, resume=True).steps == 2
    state = checkpoint(tmp_path / "run")
    del state["config"]["diffusion"]
    state["config"]["crop"]["flip"] = 0.25
    torch.save(state, path)
    with pytest.raises(UsageError, match="different crop.flip"):
        train(
            tiny_config(tmp_path, tmp_path / "run", optim={"steps": 3}, **no_validation),
            resume=True,
        )


class Interrupt(KeyboardInterrupt):
    pass


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path):
    """Ctrl-C during the validation of step 2 loses step 2: the run resumes at step 1, and the
    log keeps no row of the lost step."""
    config = tiny_config(
        tmp_path, tmp_path / "run", validate_every=2, checkpoint_every=1, optim={"steps": 2}
    )

    def interrupt_at_validation(message: str) -> None:
        if message.startswith("step 2: validation"):
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, report=interrupt_at_validation)
    folder = tmp_path / "run"
    assert checkpoint(folder)["step"] == 1
    # Step 2 was trained, logged and validated, but its checkpoint was never written.
    assert [(row["step"], bool(row["val_psnr"])) for row in read_log(folder)] == [
        ("1", False),
        ("2", False),
        ("2", True),
    ]
    assert not (folder / "best").exists()
    assert not list(folder.glob(".*partial"))

    result = train(config, resume=True)
    assert (result.steps, result.best_step) == (2, 2)
    rows = read_log(folder)
    assert [(row["step"], bool(row["val_psnr"])) for row in rows] == [
        ("1", False),
        ("2", False),
        ("2", True),
    ]
    assert float(rows[2]["val_psnr"]) == pytest.approx(result.best_psnr, abs=1e-4)
    state = checkpoint(folder)
    assert state["step"] == 2
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {2}
    assert float(rows[1]["lr"]) == pytest.approx(scheduled_lr(2, 2), rel=1e-3)
    assert load_model(folder / "best").config.encoder_dim == 8


def test_validation_part_too_short_is_refused_before_training(tmp_path):
    # round(0.85 * 64) = 54: 10 slices of 1.25 mm, 12 of 1 mm, 2 slabs, 10 reference slices.
    config = tiny_config(
        tmp_path, tmp_path / "run", data={"validation": [{"path": CROP, "slices": [0.85, 1.0]}]}
    )
    with pytest.raises(UsageError, match=r"\[0.85:1\]: its 10 thin slices leave nothing to score"):
        train(config)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


# --- the command ---------------------------------------------------------------------------


def test_cli_missing_config_is_one_error_line(capfd, tmp_path):
    result = thinct_in_process(capfd, "train", "--config", tmp_path / "missing.yaml")
    assert_one_error(result, 2, "missing.yaml: no such config file")


def test_cli_bad_config_is_one_error_line(capfd, tmp_path):
    path = write_recipe(tmp_path / "bad.yaml", tiny_recipe(tmp_path / "run", optim={"lr": "x"}))
    result = thinct_in_process(capfd, "train", "--config", path)
    assert_one_error(result, 2, "optim.lr = 'x' is not valid")


def test_cli_existing_run_is_one_error_line(capfd, run4, tmp_path):
    _, _, folder = run4
    path = write_recipe(tmp_path / "again.yaml", tiny_recipe(folder))
    result = thinct_in_process(capfd, "train", "--config", path)
    assert_one_error(result, 2, "already holds a run; give --resume")


def test_cli_trains_a_tiny_model(tmp_path):
    recipe = tiny_recipe(tmp_path / "run", validate_every=2, optim={"steps": 2})
    result = thinct("train", "--config", write_recipe(tmp_path / "tiny.yaml", recipe))
    assert_ok(result)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("trained 2 steps in "), show(result)
    assert "best step 2 (validation PSNR " in last and str(tmp_path / "run" / "best") in last
    assert load_model(tmp_path / "run" / "best").config.encoder_dim == 8


# --- several processes ---------------------------------------------------------------------


def torchrun(recipe: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`torchrun --standalone --nproc_per_node 2 -m thinct train --config RECIPE` on the CPU."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "thinct",
            "train",
            "--config",
            str(recipe),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1", "COLUMNS": "200"},
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.slow
def test_two_processes_under_torchrun_average_their_gradients(run4, tmp_path):
    """torchrun starts two CPU processes (gloo); they train one model on different crops.

    Rank 0 draws exactly the crops of the single-process run with the same seed, so if the
    gradients were not averaged with rank 1's, its weights would equal that run's.
    """
    config, single_result, single = run4
    recipe = tiny_recipe(tmp_path / "run")
    assert recipe["output"] != config.output
    result = torchrun(write_recipe(tmp_path / "ddp.yaml", recipe), tmp_path)
    assert result.returncode == 0, show(result)
    assert "Traceback" not in result.stderr and "error" not in result.stderr, show(result)
    # Only rank 0 reports progress; every process returns rank 0's result.
    assert result.stderr.count("1 training pairs, 1 validation scans") == 1, show(result)
    summaries = [line for line in result.stderr.splitlines() if line.startswith("trained 4 ")]
    assert summaries and all("best step 4 (validation PSNR" in line for line in summaries)
    folder = tmp_path / "run"
    assert sorted(p.name for p in folder.iterdir()) == [
        "best",
        "checkpoint.pt",
        "config.yaml",
        "log.csv",
    ]
    rows = read_log(folder)  # one header and one row per step: rank 0 writes alone
    assert [(row["step"], bool(row["val_psnr"])) for row in rows] == [
        ("1", False),
        ("2", False),
        ("3", False),
        ("4", False),
        ("4", True),
    ]
    distributed = checkpoint(folder)["model"]
    alone = checkpoint(single)["model"]
    floating = [k for k in alone if alone[k].dtype.is_floating_point]
    differing = [k for k in floating if not torch.allclose(alone[k], distributed[k], atol=1e-6)]
    assert len(differing) > len(floating) // 2
    best = load_model(folder / "best").state_dict()
    assert all(torch.equal(best[k], v) for k, v in tiny_model(distributed).state_dict().items())
    # The logged loss of a step is the mean over both processes, not rank 0's alone.
    assert rows[0]["loss"] != read_log(single)[0]["loss"]
    assert math.isfinite(single_result.best_psnr)


@pytest.mark.slow
def test_a_setup_error_on_one_rank_stops_both(tmp_path):
    """Only rank 0 reads the validation scans: when it cannot, rank 1 must not wait for it."""
    recipe = tiny_recipe(tmp_path / "run", data={"validation": [{"path": "missing.nii.gz"}]})
    result = torchrun(write_recipe(tmp_path / "ddp.yaml", recipe), tmp_path)
    assert result.returncode != 0, show(result)
    assert "missing.nii.gz: no such file or folder" in result.stderr, show(result)
    assert "another training process failed to set up" in result.stderr, show(result)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


# --- the training page ---------------------------------------------------------------------


def test_training_page_recipe_and_key_table_match_the_code(tmp_path):
    page = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    recipe = page.split("## The recipe", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = load_train_config(write_recipe(tmp_path / "page.yaml", yaml.safe_load(recipe)))
    assert config.data.train[0].slices == (0.0, 0.7)
    # Every key of the reference table is a field of the recipe, and every field is listed.
    table = page.split("### Every key", 1)[1].split("A source", 1)[0]
    documented = {
        key
        for line in table.splitlines()
        if line.startswith("| `")
        for key in re.findall(r"`([a-z0-9_.]+)`", line.split("|")[1])
    }
    plain = config_to_dict(config)
    fields = {name for name, value in plain.items() if not isinstance(value, dict)}
    fields |= {f"{n}.{k}" for n, v in plain.items() if isinstance(v, dict) for k in v}
    assert documented == fields

"""Train a small lung segmentation network on thin slices made by thinct, with TorchIO.

Thick (5 mm) chest CT with lung masks -> `thinct.ThinSlices` (1 mm) -> intensity scaling and
augmentation -> a queue of patches -> a tiny 3D network, trained for a few steps on the CPU.
The network then segments a held-out thick scan on its thin grid, and the subject's inverse
transform brings the prediction back to the thick grid, where it is scored (Dice) against the
thick mask: the path a detector trained on thin CT takes to report on a thick archive.

The data: the shipped 5 mm crop (examples/data) cut in two along x. The first half trains,
together with a second 5 mm scan that `thinct.simulate_thick` makes from the 1.25 mm crop
with its slabs shifted by half a slab; the second half is held out. Lung masks are the
voxels below -400 HU. It is a demonstration of the plumbing, not a segmentation model.

Run from the project root (about a minute on two CPU cores, 20 s with `--method linear`):

    python examples/train_segmentation_torchio.py --out runs/lungs
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path

import SimpleITK as sitk
import torch
import torchio as tio
from torch import nn

import thinct

DATA = Path(__file__).resolve().parent / "data"
LUNG_HU = -400.0
PATCH = (64, 64, 32)  # thin voxels; the held-out scan is segmented whole
BATCH = 4
# Channels-last memory makes the backward pass of 3D convolutions many times faster on a CPU.
MEMORY = torch.channels_last_3d


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps (default 40)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model", default=None, help="thinct model spec for the thin slices (default: thinct's)"
    )
    source.add_argument(
        "--method", choices=thinct.METHODS, help="an interpolation instead of a model"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/lungs"), help="output folder (default runs/lungs)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser.parse_args(argv)


def lung_subject(image: sitk.Image) -> tio.Subject:
    """A thick scan with its lung mask (below -400 HU) drawn on the same thick grid."""
    ct = tio.ScalarImage.from_sitk(image)
    mask = tio.LabelMap(tensor=(ct.data < LUNG_HU).to(torch.int16), affine=ct.affine)
    return tio.Subject(ct=ct, mask=mask)


def thick_scans() -> tuple[list[tio.Subject], tio.Subject]:
    """Two thick training scans and one held-out scan (see the module docstring)."""
    shipped = thinct.read_volume(DATA / "lidc0002_crop_5mm.nii.gz").image
    thin = thinct.read_volume(DATA / "lidc0002_crop_1.25mm.nii.gz")
    shifted = thinct.simulate_thick(thin.with_image(thin.image[:, :, 2:62]), thickness=5.0)
    half = shipped.GetSize()[0] // 2
    training = [lung_subject(shipped[:half]), lung_subject(shifted.image[:half])]
    return training, lung_subject(shipped[half:])


class TinySegNet(nn.Module):
    """Three 3D convolutions with growing dilation (15 voxels of context) and a two-class head.

    Without pooling any volume size goes through, so the held-out scan is segmented whole.
    """

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for dilation in (1, 2, 4):
            layers += [nn.Conv3d(channels, width, 3, padding=dilation, dilation=dilation)]
            layers += [nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.Conv3d(width, 2, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def train(net: nn.Module, dataset: tio.SubjectsDataset, steps: int) -> float:
    """``steps`` Adam steps on random patches; returns the last loss.

    The queue holds every patch of the run, drawn in one pass over the subjects, so each
    subject is made thin once (ThinSlices runs when the queue loads a subject).
    """
    per_subject = math.ceil(steps * BATCH / len(dataset))
    queue = tio.Queue(
        dataset,
        max_length=per_subject * len(dataset),
        samples_per_volume=per_subject,
        sampler=tio.UniformSampler(PATCH),
        num_workers=0,
    )
    loader = tio.SubjectsLoader(queue, batch_size=BATCH)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    loss = torch.tensor(float("nan"))
    net.train()
    for step, batch in enumerate(itertools.islice(loader, steps), start=1):
        logits = net(batch["ct"][tio.DATA].to(memory_format=MEMORY))
        target = batch["mask"][tio.DATA][:, 0].long()
        loss = nn.functional.cross_entropy(logits, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 10 == 0 or step == steps:
            print(f"step {step}/{steps}  loss {loss.item():.3f}", flush=True)
    return loss.item()


def segment_on_thin_back_on_thick(
    net: nn.Module, held_out: tio.Subject, preprocess: tio.Compose
) -> tio.Subject:
    """Segment the held-out scan on its thin grid; return it on its thick grid, with the
    prediction added as the image ``prediction``.

    ``history_collate`` keeps each subject's history in the batch; the prediction lies on the
    thin grid of the scan, so ``apply_inverse_transform`` brings it back with ThinSlices'
    inverse (each thick voxel takes the label covering most of its slab). RescaleIntensity has
    no inverse and is skipped.
    """
    loader = tio.SubjectsLoader(
        tio.SubjectsDataset([held_out], transform=preprocess),
        batch_size=1,
        collate_fn=tio.utils.history_collate,
    )
    net.eval()
    (batch,) = list(loader)
    with torch.no_grad():
        logits = net(batch["ct"][tio.DATA].to(memory_format=MEMORY))
        prediction = logits.argmax(dim=1, keepdim=True)
    (subject,) = tio.utils.get_subjects_from_batch(batch)
    labels = tio.LabelMap(tensor=prediction[0].to(torch.int16), affine=subject.ct.affine)
    subject.add_image(labels, "prediction")
    return subject.apply_inverse_transform(warn=False)


def dice(prediction: torch.Tensor, reference: torch.Tensor) -> float:
    overlap = torch.logical_and(prediction > 0, reference > 0).sum().item()
    total = (prediction > 0).sum().item() + (reference > 0).sum().item()
    return 2.0 * overlap / total if total else 1.0


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    thin_slices = thinct.ThinSlices(model=args.model, method=args.method, spacing=1.0)
    preprocess = tio.Compose(
        [thin_slices, tio.RescaleIntensity((0, 1), in_min_max=(-1000.0, 400.0))]
    )
    augment = tio.Compose([tio.RandomFlip(axes=(0, 1)), tio.RandomNoise(std=(0, 0.02))])
    training, held_out = thick_scans()
    dataset = tio.SubjectsDataset(training, transform=tio.Compose([preprocess, augment]))
    net = TinySegNet().to(memory_format=MEMORY)
    loss = train(net, dataset, args.steps)
    thick = segment_on_thin_back_on_thick(net, held_out, preprocess)
    score = dice(thick.prediction.data, held_out.mask.data)
    print(f"Dice on the thick grid (held-out half): {score:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    prediction = thinct.Volume(thick.prediction.as_sitk())
    thinct.write_volume(prediction, args.out / "prediction_5mm.nii.gz", overwrite=True)
    metrics = {
        "dice_thick": score,
        "final_loss": loss,
        "steps": args.steps,
        "thin_slices": args.method or args.model or "default model",
        "seconds": round(time.perf_counter() - started, 1),
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

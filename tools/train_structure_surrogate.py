"""Train the structure operator's surrogate (thinct.structure.StructureSurrogate) and write
its weights as safetensors.

Data: random 64 x 64 crops of axial and coronal planes of the thin scans of the shared CT
collection, on the lung window's [0, 1] scale; a third of them blurred and a third given
noise, so that the surrogate also follows the operator on the soft or grainy images a model
makes while it trains. The target of each crop is the operator's map of that same crop.
The held-out test scan (itkelastix_4dct00_2.0mm) is not read. Of the LIDC-IDRI chest scan only
slices 0-20 % and 50-70 % are used: the shipped example crop (slices 56-120, 21-46 %) and the
last 25 % (the training recipes' validation part) stay unseen, and the latter measures the
fidelity printed at the end.

    python tools/train_structure_surrogate.py ../shared/data/ct --steps 4000 --seed 0 \
        --output src/thinct/structure/surrogate.safetensors

Loss: L1 to the operator's map, after a first half of squared error (L1 alone stalls at the
all-zero map, the median of a map that is zero almost everywhere); Adam, cosine-decayed rate;
random flips and transposes (the operator commutes with them). One thread by default, a few
minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from scipy import ndimage

from thinct.io import read_volume
from thinct.structure import StructureSurrogate, lung_window
from thinct.structure.operator import enhance_planes
from thinct.structure.surrogate import fidelity

# Scan -> the parts of its slices to train on (fractions of its slice axis).
TRAIN_SCANS = {
    "lidc0002_c2c_1.25mm.nii.gz": ((0.0, 0.2), (0.5, 0.7)),
    "invesalius_cranium_1.5mm.nii.gz": ((0.0, 1.0),),
    "totalseg_aorta_crop_1.5iso.nii.gz": ((0.0, 1.0),),
    "totalseg_pulm_crop_1.5iso.nii.gz": ((0.0, 1.0),),
}
CHEST_SHARE = 0.6  # of the crops come from the chest scan, the rest from the others
VALIDATION = ("lidc0002_c2c_1.25mm.nii.gz", (0.75, 1.0))
CROP = 64
POOL = 4096
BATCH = 16
SQUARED_SHARE = 0.5  # of the steps


def read_parts(path: Path, parts: tuple[tuple[float, float], ...]) -> list[np.ndarray]:
    """The scan's chosen slice ranges on the lung window's scale, (z, y, x) each."""
    image = lung_window(read_volume(path).array)
    count = image.shape[0]
    return [image[round(a * count) : round(b * count)] for a, b in parts]


def draw_crop(stack: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random CROP x CROP window of a random axial (2/3) or coronal (1/3) plane."""
    planes = stack if rng.random() < 2 / 3 or stack.shape[0] < CROP else stack.transpose(1, 0, 2)
    plane = planes[rng.integers(planes.shape[0])]
    r = rng.integers(plane.shape[0] - CROP + 1)
    c = rng.integers(plane.shape[1] - CROP + 1)
    return plane[r : r + CROP, c : c + CROP]


def degrade(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A third blurred, a third with noise, a third as it is."""
    choice = rng.integers(3)
    if choice == 0:
        return ndimage.gaussian_filter(crop, rng.uniform(0.5, 1.5), mode="mirror")
    if choice == 1:
        return (crop + rng.normal(0, rng.uniform(0.005, 0.03), crop.shape)).clip(0, 1)
    return crop


def build_pool(root: Path, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    chest_name = next(iter(TRAIN_SCANS))
    stacks = {name: read_parts(root / name, parts) for name, parts in TRAIN_SCANS.items()}
    others = [s for name, parts in stacks.items() if name != chest_name for s in parts]
    crops = []
    for _ in range(POOL):
        source = stacks[chest_name] if rng.random() < CHEST_SHARE else others
        crops.append(degrade(draw_crop(source[rng.integers(len(source))], rng), rng))
    images = torch.from_numpy(np.stack(crops).astype(np.float32))
    with torch.no_grad():
        targets = torch.cat([enhance_planes(part) for part in images.split(256)])
    return images, targets


def dihedral(images: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator):
    if rng.random() < 0.5:
        images, targets = images.flip(-1), targets.flip(-1)
    if rng.random() < 0.5:
        images, targets = images.flip(-2), targets.flip(-2)
    if rng.random() < 0.5:
        images, targets = images.transpose(-1, -2), targets.transpose(-1, -2)
    return images, targets


def measure(model: StructureSurrogate, root: Path) -> tuple[float, float]:
    """Fidelity on 8 whole axial planes of the chest scan's held-out last quarter."""
    name, part = VALIDATION
    stack = read_parts(root / name, (part,))[0]
    planes = torch.from_numpy(np.ascontiguousarray(stack[:: max(1, len(stack) // 8)][:8]))
    with torch.no_grad():
        return fidelity(model(planes), enhance_planes(planes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the shared CT folder (../shared/data/ct)")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, required=True, help="a .safetensors file")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    began = time.perf_counter()
    images, targets = build_pool(args.root, rng)
    print(f"{POOL} crops and their maps in {time.perf_counter() - began:.0f} s")
    model = StructureSurrogate()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps, eta_min=1e-5)
    running = 0.0
    for step in range(1, args.steps + 1):
        pick = torch.from_numpy(rng.integers(POOL, size=BATCH))
        x, y = dihedral(images[pick], targets[pick], rng)
        squared = step <= SQUARED_SHARE * args.steps
        loss = F.mse_loss(model(x), y) if squared else F.l1_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        running += loss.item()
        if step % 250 == 0:
            name = "squared error" if squared else "L1"
            print(f"step {step}: {name} {running / 250:.4f} ({time.perf_counter() - began:.0f} s)")
            running = 0.0
    correlation, relative_l1 = measure(model, args.root)
    seconds = time.perf_counter() - began
    print(f"held-out chest planes: correlation {correlation:.3f}, relative L1 {relative_l1:.3f}")
    metadata = {
        "steps": str(args.steps),
        "seed": str(args.seed),
        "seconds": f"{seconds:.0f}",
        "heldout_correlation": f"{correlation:.4f}",
        "heldout_relative_l1": f"{relative_l1:.4f}",
    }
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(args.output), metadata=metadata)
    digest = hashlib.sha256(args.output.read_bytes()).hexdigest()
    print(f"{args.output}: {seconds:.0f} s in all, sha256 {digest}")


if __name__ == "__main__":
    main()

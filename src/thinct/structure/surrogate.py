"""O_Fc, the operator's convolutional surrogate: a few light layers that reproduce `enhance`
on lung-window images, smooth everywhere, for training losses.

The operator itself is differentiable, but its gradients pass through eigenvalue ratios,
clamps and a maximum over scales; a network that imitates it gives smooth gradients and costs
a few convolutions. Its shape follows the operator's (see `StructureSurrogate`): five linear
3x3 convolutions, dilated 1, 2, 4, 8 and 4 (8 channels each), reach 19 pixels to each side,
about as far as the operator's kernels carry weight, and a per-pixel network of 1x1
convolutions turns those 40 filtered images into the map: 4,273 parameters.

The weights ship in the package (``surrogate.safetensors``, read with safetensors only, its
sha256 checked). They are made by ``tools/train_structure_surrogate.py`` of the repository
from a folder of thin CT scans (the project's shared collection); docs/structure.md gives the
exact command.

The shipped weights: 4,000 steps (2,000 of squared error, then L1), 675 s on one thread of a
busy 2-core machine. Their maps against the operator's (`fidelity`: correlation, L1 relative to
the operator map's mass), on planes never trained on: the chest scan's last quarter, 8 axial
planes, 0.972 and 0.32; the shipped example crop, 8 axial planes 0.961 and 0.32, 8 coronal
planes 0.959 and 0.32; another patient's chest scan (pyradiomics lung1, axial), 0.943 and
0.42; the held-out test scan (itkelastix), 0.978 and 0.26. tests/structure holds the first
two to 0.93 and 0.40, the third to 0.92 and 0.50.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import torch
from safetensors.torch import load
from torch import Tensor, nn

from thinct.errors import InputError
from thinct.structure.hessian import reflect_indices

WEIGHTS_FILE = "surrogate.safetensors"
WEIGHTS_SHA256 = "5eceaf1f4677cec124e883fd4fb1b64e56d9a74a7c894376a33016f6ecf6dc1c"
CHANNELS = 8
DILATIONS = (1, 2, 4, 8, 4)
HIDDEN = (32, 16)


class StructureSurrogate(nn.Module):
    """Lung-window planes (..., H, W) to their approximate structure maps, same shape.

    The operator is a pointwise function of linear filters of the image (the Hessian and
    the gradient at each scale), and so is this network: a chain of linear dilated 3x3
    convolutions whose outputs, together, are a bank of filters of growing reach, then a
    small per-pixel network (1x1 convolutions, SiLU) that maps them to the structure value.
    """

    def __init__(self) -> None:
        super().__init__()
        widths = [1, *[CHANNELS] * len(DILATIONS)]
        self.filters = nn.ModuleList(
            nn.Conv2d(w_in, w_out, 3, dilation=d)
            for w_in, w_out, d in zip(widths[:-1], widths[1:], DILATIONS, strict=True)
        )
        sizes = [CHANNELS * len(DILATIONS), *HIDDEN]
        layers: list[nn.Module] = []
        for w_in, w_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Conv2d(w_in, w_out, 1), nn.SiLU()]
        self.pointwise = nn.Sequential(*layers, nn.Conv2d(sizes[-1], 1, 1))

    def forward(self, planes: Tensor) -> Tensor:
        shape = planes.shape
        x = planes.reshape(-1, 1, *shape[-2:]) - 0.5
        bank = []
        for conv, dilation in zip(self.filters, DILATIONS, strict=True):
            rows = reflect_indices(x.shape[-2], dilation, x.device)
            columns = reflect_indices(x.shape[-1], dilation, x.device)
            x = conv(x.index_select(-2, rows).index_select(-1, columns))
            bank.append(x)
        return self.pointwise(torch.cat(bank, 1)).reshape(shape)


def fidelity(approximation: Tensor, reference: Tensor) -> tuple[float, float]:
    """How well a map follows the operator's: (Pearson correlation, L1 distance relative to
    the reference's mean magnitude), over all pixels."""
    x, y = approximation.double().flatten(), reference.double().flatten()
    correlation = torch.corrcoef(torch.stack([x, y]))[0, 1]
    relative_l1 = (x - y).abs().sum() / y.abs().sum().clamp_min(1e-12)
    return float(correlation), float(relative_l1)


def load_surrogate(device: str | torch.device = "cpu") -> StructureSurrogate:
    """The shipped surrogate, frozen (no gradients to its weights; gradients still flow to
    its input) and in eval mode, on ``device``."""
    data = resources.files("thinct.structure").joinpath(WEIGHTS_FILE).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise InputError(
            f"thinct/structure/{WEIGHTS_FILE} is damaged (sha256 {digest[:12]}..., expected"
            f" {WEIGHTS_SHA256[:12]}...): reinstall thinct"
        )
    model = StructureSurrogate()
    model.load_state_dict(load(data))
    return model.requires_grad_(False).eval().to(device)

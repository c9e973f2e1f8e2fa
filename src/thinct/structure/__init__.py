"""Vessels and nodules as a map: the imaging enhancement operator of Chu et al. (MICCAI 2023)
on 2D slices (`enhance`), on every plane of a volume (`enhance_volume`), and its small
convolutional surrogate for training losses (`load_surrogate`).

Parts: `intensity` (HU to the lung window's [0, 1] scale, the operator's input), `hessian`
(scale-normalised derivatives and eigenvalues), `operator` (the structure kernel, its guards,
the multi-scale map), `planes` (volumes, plane by plane), `surrogate` (the network and its
shipped weights). docs/structure.md describes the operator and its defaults.

Everything but `lung_window` imports torch, so it is loaded on first use: `import
thinct.structure` stays fast for the commands that never need it.
"""

from importlib import import_module
from typing import Any

from thinct.structure.intensity import lung_window

__all__ = [
    "DEFAULT_SCALES",
    "StructureSurrogate",
    "enhance",
    "enhance_volume",
    "load_surrogate",
    "lung_window",
]

_LAZY = {
    "DEFAULT_SCALES": "thinct.structure.operator",
    "enhance": "thinct.structure.operator",
    "enhance_volume": "thinct.structure.planes",
    "StructureSurrogate": "thinct.structure.surrogate",
    "load_surrogate": "thinct.structure.surrogate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'thinct.structure' has no attribute {name!r}")

"""thinct: synthetic thin-slice CT from thick-slice CT, with exact geometry."""

from importlib import import_module
from typing import Any

from thinct._version import __version__
from thinct.errors import ThinctError, ThinctWarning
from thinct.geometry import Grid, ThinGrid, slice_axis, thin_grid
from thinct.inference.options import InferenceOptions
from thinct.io import read_volume, write_volume
from thinct.pipeline import upsample_volume
from thinct.resample.interpolation import METHODS, interpolate
from thinct.resample.simulate import simulate_thick
from thinct.volume import Volume

__all__ = [
    "METHODS",
    "Grid",
    "InferenceOptions",
    "ThinSlices",
    "ThinGrid",
    "ThinctError",
    "ThinctWarning",
    "Volume",
    "__version__",
    "create_model",
    "interpolate",
    "list_models",
    "load_model",
    "read_volume",
    "save_model",
    "simulate_thick",
    "slice_axis",
    "thin_grid",
    "upsample_volume",
    "write_volume",
]

# The model functions and the TorchIO transform import torch: loaded on first use, so that
# `import thinct` (and every command that runs no model) stays fast.
_FROM_MODELS = ("create_model", "list_models", "load_model", "save_model")


def __getattr__(name: str) -> Any:
    if name in _FROM_MODELS:
        return getattr(import_module("thinct.models"), name)
    if name == "ThinSlices":
        return import_module("thinct.integrations.torchio").ThinSlices
    raise AttributeError(f"module 'thinct' has no attribute {name!r}")

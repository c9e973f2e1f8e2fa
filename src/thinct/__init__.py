"""thinct: synthetic thin-slice CT from thick-slice CT, with exact geometry."""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("thinct")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from thinct.errors import ThinctError, ThinctWarning  # noqa: E402
from thinct.geometry import Grid, ThinGrid, slice_axis, thin_grid  # noqa: E402
from thinct.inference_options import InferenceOptions  # noqa: E402
from thinct.interpolate import METHODS, interpolate  # noqa: E402
from thinct.io import read_volume, write_volume  # noqa: E402
from thinct.pipeline import upsample_volume  # noqa: E402
from thinct.simulate import simulate_thick  # noqa: E402
from thinct.volume import Volume  # noqa: E402

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
        return import_module("thinct.transforms").ThinSlices
    raise AttributeError(f"module 'thinct' has no attribute {name!r}")

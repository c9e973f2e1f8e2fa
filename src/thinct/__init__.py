"""thinct: synthetic thin-slice CT from thick-slice CT, with exact geometry."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("thinct")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from thinct.errors import ThinctError, ThinctWarning  # noqa: E402
from thinct.geometry import Grid, ThinGrid, slice_axis, thin_grid  # noqa: E402
from thinct.inference import InferenceOptions  # noqa: E402
from thinct.interpolate import METHODS, interpolate  # noqa: E402
from thinct.io import read_volume, write_volume  # noqa: E402
from thinct.models import create_model, list_models, load_model, save_model  # noqa: E402
from thinct.pipeline import upsample_volume  # noqa: E402
from thinct.simulate import simulate_thick  # noqa: E402
from thinct.volume import Volume  # noqa: E402

__all__ = [
    "METHODS",
    "Grid",
    "InferenceOptions",
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

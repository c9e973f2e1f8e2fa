"""The choices both panels share: what makes the thin slices (a model or an interpolation),
the thin grid and its in-plane refinement, and the engine's options, with the same names and
defaults as ``thinct upsample``; `EngineSettings.snapshot` freezes them for a run in a
background thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    ComboBox,
    FileEdit,
    FloatSpinBox,
    LineEdit,
    RadioButtons,
    SpinBox,
)

from thinct.errors import UsageError
from thinct.geometry import ALIGNMENTS, MAX_IN_PLANE, MAX_RATIO, check_target_options
from thinct.inference.options import DEVICES, PRECISIONS, InferenceOptions
from thinct.resample.interpolation import METHODS

if TYPE_CHECKING:  # torch loads with the first model
    from torch import nn

# Choices of the "thin slices by" list that are not a model name or a method.
FOLDER = "folder"
HUB = "hub"
_METHOD = "method:"


def _engine_choices() -> list[tuple[str, str]]:
    """Shipped models first (the default on top), then a model folder, a Hub model, the Hub
    models already in the cache, and the classical interpolations."""
    from thinct.models import DEFAULT_MODEL, list_models
    from thinct.models.hub import cached_models

    shipped = sorted(
        (entry.name for entry in list_models() if entry.weights is not None),
        key=lambda name: name != DEFAULT_MODEL,
    )
    choices = [(f"model {name} (shipped)", name) for name in shipped]
    choices += [("model folder...", FOLDER), ("Hugging Face Hub model...", HUB)]
    choices += [(f"{cached.spec} (Hub cache)", cached.spec) for cached in cached_models()]
    choices += [(f"{method} interpolation", _METHOD + method) for method in METHODS]
    return choices


@dataclass(frozen=True)
class Settings:
    """One run's settings, read from the widgets on the main thread."""

    model_spec: str | None  # None: interpolate with ``method``
    method: str
    spacing: float | None
    factor: int | None
    align: str
    options: InferenceOptions
    in_plane: int | None = None  # None: the input's pixels

    @property
    def made_by(self) -> str:
        """How layer names and status lines name the method: the model spec or the method."""
        from thinct.models import model_display_name

        if self.model_spec is None:
            return self.method
        return model_display_name(self.model_spec)

    @property
    def grid(self) -> str:
        """The thin grid asked for, as a layer name says it: "1 mm" or "x5", and "x2
        in-plane" when the pixels are refined."""
        slices = f"{self.spacing:g} mm" if self.spacing is not None else f"x{self.factor}"
        return slices if self.in_plane is None else f"{slices} x{self.in_plane} in-plane"

    def file_options(self) -> dict[str, Any]:
        """Keyword arguments of `thinct.pipeline.upsample_file` (and `upsample_volume`)."""
        return {
            "method": self.method,
            "spacing": self.spacing,
            "factor": self.factor,
            "align": self.align,
            "options": self.options if self.model_spec is not None else None,
            "in_plane": self.in_plane,
        }


class ModelCache:
    """Loaded models by spec and device, so a second run does not load (or fetch) again.

    Used from one background run at a time (the Run button is disabled while one runs).
    """

    def __init__(self) -> None:
        self._models: dict[tuple[str, str], nn.Module] = {}

    def get(self, settings: Settings) -> nn.Module | None:
        if settings.model_spec is None:
            return None
        key = (settings.model_spec, settings.options.device)
        if key not in self._models:
            from thinct.inference.engine import load_checked_model

            self._models[key] = load_checked_model(settings.model_spec, settings.options)
        return self._models[key]


class EngineSettings:
    """Model or interpolation, thin grid, alignment, in-plane factor and engine options:
    ``widgets`` go into a panel's own form, so that all its labels line up in one column."""

    def __init__(self) -> None:
        self.engine = ComboBox(label="thin slices by", choices=_engine_choices())
        self.folder = FileEdit(label="model folder", mode="d")
        self.hub = LineEdit(label="Hub model", value="hf://")
        self.target = RadioButtons(
            label="target", choices=("spacing", "factor"), value="spacing", orientation="horizontal"
        )
        self.spacing = FloatSpinBox(label="spacing (mm)", value=1.0, min=0.05, max=50.0, step=0.25)
        self.factor = SpinBox(label="factor", value=5, min=1, max=MAX_RATIO)
        self.align = ComboBox(label="alignment", choices=ALIGNMENTS, value="edges")
        self.in_plane = SpinBox(label="in-plane factor", value=1, min=1, max=MAX_IN_PLANE)
        self.device = ComboBox(label="device", choices=DEVICES, value=InferenceOptions.device)
        self.tile = SpinBox(
            label="tile (pixels)", value=InferenceOptions.tile, min=8, max=4096, step=8
        )
        self.precision = ComboBox(
            label="precision", choices=PRECISIONS, value=InferenceOptions.precision
        )
        self.widgets = [
            self.engine,
            self.folder,
            self.hub,
            self.target,
            self.spacing,
            self.factor,
            self.align,
            self.in_plane,
            self.device,
            self.tile,
            self.precision,
        ]
        self.engine.changed.connect(self._show_relevant)
        self.target.changed.connect(self._show_relevant)
        self._show_relevant()

    def _show_relevant(self) -> None:
        """Only the fields the current choice uses: the engine's options mean nothing to an
        interpolation (the CLI refuses them beside --method)."""
        engine = self.engine.value
        self.folder.visible = engine == FOLDER
        self.hub.visible = engine == HUB
        for widget in (self.device, self.tile, self.precision):
            widget.visible = not engine.startswith(_METHOD)
        self.spacing.visible = self.target.value == "spacing"
        self.factor.visible = self.target.value == "factor"

    def choose(self, engine: str) -> None:
        """Select a model spec (a shipped name, a folder, ``hf://...``) or ``method:NAME``,
        as a user would by picking it or typing it into the matching field."""
        if engine in self.engine.choices:
            self.engine.value = engine
        elif engine.startswith("hf://"):
            self.engine.value, self.hub.value = HUB, engine
        else:
            self.engine.value, self.folder.value = FOLDER, engine

    def snapshot(self) -> Settings:
        """The current settings; a choice that cannot work is a one-line `UsageError`."""
        engine = self.engine.value
        spacing = self.spacing.value if self.target.value == "spacing" else None
        factor = self.factor.value if self.target.value == "factor" else None
        in_plane = self.in_plane.value if self.in_plane.value > 1 else None
        check_target_options(spacing, factor, in_plane)
        if engine.startswith(_METHOD):
            spec, method = None, engine.removeprefix(_METHOD)
        elif engine == FOLDER:
            if str(self.folder.value) in {"", "."}:
                raise UsageError("choose a model folder (config.json + model.safetensors)")
            spec, method = str(self.folder.value), "bspline"
        elif engine == HUB:
            spec, method = self.hub.value.strip(), "bspline"
            if spec in {"", "hf://"}:
                raise UsageError("enter a Hub model as hf://owner/repo[@revision]")
        else:
            spec, method = engine, "bspline"
        tile = self.tile.value
        options = InferenceOptions(
            tile=tile,
            # No overlap field here: the default, or half of a tile smaller than twice it.
            tile_overlap=min(InferenceOptions.tile_overlap, tile // 2),
            device=self.device.value,
            precision=self.precision.value,
        )
        if spec is not None:
            from thinct.inference.engine import check_options

            check_options(options)  # an unavailable device fails now, not in the thread
        return Settings(spec, method, spacing, factor, self.align.value, options, in_plane)

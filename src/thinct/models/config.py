"""Model configurations: every size of CTHNet and TVSRN is a field, saved as ``config.json``
beside the weights so that a model folder rebuilds exactly the network that made it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from thinct.errors import UsageError
from thinct.inference.options import SAMPLERS
from thinct.resample.interpolation import METHODS
from thinct.validation import at_least, check_fields, is_whole, positive, unknown_keys

LAYOUTS = ("clean", "official")
# Bumped when a config field changes meaning; a folder written by a newer thinct is refused.
CONFIG_FORMAT = 1


@dataclass(frozen=True)
class ModelConfig:
    """What every thin-slice model shares: it maps ``slices`` thick slices to
    ``(slices - 1) * ratio + 1`` thin slots, thick slice z sitting at slot ``ratio * z``
    (a diffusion model, `DSDMConfig`, denoises planes of any size instead: for it these are
    the shape of its training crops).

    ``interpolation_residual`` (not in the papers) makes the network predict a correction to
    the thick slices' linear interpolation; its head starts at zero, so an untrained model is
    linear interpolation. Small models trained briefly converge much faster this way.
    """

    architecture: ClassVar[str] = ""
    # A diffusion model (`DSDMConfig`) runs as 2D planes through `thinct.inference.planes`;
    # the others run as windows of thick slices through the sliding-window engine.
    diffusion: ClassVar[bool] = False

    slices: int = positive(8)
    ratio: int = positive(5)
    interpolation_residual: bool = False

    @property
    def out_slots(self) -> int:
        return (self.slices - 1) * self.ratio + 1

    @property
    def tile_multiple(self) -> int:
        """In-plane sizes must be a multiple of this."""
        raise NotImplementedError

    @property
    def window_grid(self) -> int:
        """The in-plane period, in pixels, of the model's folds and attention windows.

        A tile that starts on this grid is cut into the same windows as the whole image; one
        off the grid is cut differently everywhere, which changes the output across the whole
        tile, not only near its borders. The engine places tiles on it.
        """
        raise NotImplementedError

    def __post_init__(self) -> None:
        # Every field as its type and bound say (JSON lists become tuples): a config from a
        # file would otherwise fail deep inside the network.
        check_fields(self, f"{self.architecture} config field")
        if self.slices < 2 or self.ratio < 2:
            raise UsageError("a model needs at least 2 thick slices and a ratio of at least 2")

    def check_input(self, shape: Sequence[int]) -> None:
        """Refuse input the network cannot map: CTHNet would silently stretch a cube of the
        wrong depth onto its slots, and other errors would surface deep inside the network."""
        multiple = self.tile_multiple
        if len(shape) != 5 or shape[1] != 1 or shape[2] != self.slices:
            raise UsageError(
                f"{self.architecture} takes input of shape (batch, 1, {self.slices}, H, W), "
                f"got {tuple(shape)}"
            )
        if shape[3] % multiple or shape[4] % multiple:
            raise UsageError(
                f"{self.architecture} needs in-plane sizes that are multiples of {multiple}, "
                f"got {shape[3]} x {shape[4]}"
            )

    def check_heads(self, dim: int, heads: int, where: str) -> None:
        if dim % heads:
            raise UsageError(f"{where}: {dim} channels do not split into {heads} heads")

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        return {"architecture": self.architecture, "format": CONFIG_FORMAT, **values}


@dataclass(frozen=True)
class SwinDecoderConfig(ModelConfig):
    """The Swin decoders and head that CTHNet and TVSRN share.

    ``layout`` chooses the memory order inside the through-plane decoder: ``official``
    reproduces the published code's reinterpretation of memory so that its weights run
    unchanged; ``clean`` is the plain order, for models trained with thinct.
    """

    layout: str = "clean"
    mlp_ratio: float = at_least(0, 4.0)
    drop_path_rate: float = at_least(0, 0.1)
    latent_channels: int = positive(8)
    head_channels: int = positive(16)
    fold: int = positive(8)
    through_depths: tuple[int, ...] = positive((4,))
    through_heads: int = positive(8)
    through_window: int = positive(4)
    in_plane_depths: tuple[int, ...] = positive((4, 4))
    in_plane_heads: int = positive(8)
    in_plane_window: int = positive(8)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layout not in LAYOUTS:
            raise UsageError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.latent_channels % 2:
            raise UsageError("latent_channels must be even (sine and cosine pairs)")
        if self.mlp_ratio == 0 or self.drop_path_rate >= 1:
            raise UsageError("mlp_ratio must be positive and drop_path_rate below 1")
        self.check_heads(self.latent_channels * self.fold, self.through_heads, "through-plane")
        self.check_heads(
            self.latent_channels * self.out_slots, self.in_plane_heads, "in-plane decoder"
        )


@dataclass(frozen=True)
class CTHNetConfig(SwinDecoderConfig):
    """CTHNet (Yu et al. 2024); the defaults are the paper's model (10,606,217 parameters)."""

    architecture: ClassVar[str] = "cthnet"

    encoder_dim: int = positive(32)
    encoder_depths: tuple[int, ...] = positive((4,))
    encoder_heads: int = positive(8)
    encoder_window: tuple[int, int, int] = positive((2, 2, 2))

    @property
    def tile_multiple(self) -> int:
        return self.fold

    @property
    def window_grid(self) -> int:
        height, width = self.encoder_window[1:]
        return math.lcm(self.fold, height, width, self.through_window, self.in_plane_window)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_heads(self.encoder_dim, self.encoder_heads, "encoder")


@dataclass(frozen=True)
class TVSRNConfig(SwinDecoderConfig):
    """TVSRN (RPLHR-CT, MICCAI 2022); the defaults are the published model (2,387,489
    parameters). The encoder works on ``slices * latent_channels`` channels."""

    architecture: ClassVar[str] = "tvsrn"

    slices: int = positive(4)
    patch: int = positive(8)
    encoder_depths: tuple[int, ...] = positive((4,))
    encoder_heads: int = positive(8)
    encoder_window: int = positive(8)

    @property
    def tile_multiple(self) -> int:
        return math.lcm(self.patch, self.fold)

    @property
    def window_grid(self) -> int:
        windows = (self.encoder_window, self.through_window, self.in_plane_window)
        return math.lcm(self.tile_multiple, *windows)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_heads(self.slices * self.latent_channels, self.encoder_heads, "encoder")


@dataclass(frozen=True)
class ConvolutionConfig(ModelConfig):
    """A network of convolutions only: any in-plane size, no windows to align tiles with."""

    @property
    def tile_multiple(self) -> int:
        return 1

    @property
    def window_grid(self) -> int:
        return 1


@dataclass(frozen=True)
class ThickGridConfig(ConvolutionConfig):
    """ThickGridNet (thinct's own, not from a paper): a (2+1)D residual convolution network
    that works on the thick slices' grid and unfolds ``ratio`` output channels per thick slice
    into thin slots, a correction to linear interpolation.

    ``channels`` wide, ``blocks`` residual blocks of an in-plane 3 x 3 and a 3-slice
    through-plane convolution. The cost per thin voxel is about
    ``blocks * 12 * channels**2 / ratio`` multiply-adds, so it scales with the square of the
    width; there are no attention windows, so any in-plane size works.
    """

    architecture: ClassVar[str] = "thickgrid"

    interpolation_residual: bool = True
    channels: int = positive(32)
    blocks: int = positive(8)


@dataclass(frozen=True)
class DSDMConfig(ConvolutionConfig):
    """The dual-stream structure-preserving diffusion model (Chu et al., MICCAI 2023): a 2D
    denoiser of planes and its noise schedule. The defaults are the size of the public code
    (two RED-CNN streams, 4.4 M parameters); see `thinct.models.dsdm` and docs/dsdm.md.

    Each stream is ``len(widths)`` valid ``kernel_size`` convolutions of those widths and as
    many transposed ones back, so a plane comes out the size it went in. The image stream
    ends in ``fusion_channels`` features for the fusion module; the noise level is embedded
    in ``embedding_dim`` channels. The cost per output pixel and denoiser call is about
    ``kernel_size**2`` times the sum of in x out channels over the image stream's layers
    (2.0 M multiply-adds for ``dsdm``, 12 k for ``dsdm-small``): the square of the width.

    Noise: ``train_steps`` levels from betas rising linearly from ``beta_start`` to
    ``beta_end`` (SR3's training schedule); sampling takes ``sampling_steps`` of them with
    ``sampler`` (one of `thinct.inference.options.SAMPLERS`) unless the run says otherwise.
    The low-resolution condition is the thick scan interpolated onto the target grid by
    ``condition_method`` (one of `thinct.resample.interpolation.METHODS`), at inference and
    in training alike. ``ratio`` is the slice spacing ratio it was trained for and ``slices``
    the thick slices of a training crop (its planes are ``out_slots`` rows tall); inference
    takes planes of any size.
    """

    architecture: ClassVar[str] = "dsdm"
    diffusion: ClassVar[bool] = True

    widths: tuple[int, ...] = positive((32, 64, 128, 128, 128))
    kernel_size: int = positive(5)
    fusion_channels: int = positive(8)
    embedding_dim: int = positive(64)
    train_steps: int = positive(2000)
    beta_start: float = positive(1e-6)
    beta_end: float = positive(1e-2)
    sampling_steps: int = positive(100)
    sampler: str = "ancestral"
    condition_method: str = "bspline"

    @property
    def smallest_plane(self) -> int:
        """The fewest rows and columns the valid convolutions need; smaller planes are
        padded (by replication) inside the network and cropped back."""
        return len(self.widths) * (self.kernel_size - 1) + 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.interpolation_residual:
            raise UsageError("dsdm predicts noise: interpolation_residual does not apply")
        if self.embedding_dim % 2:
            raise UsageError("embedding_dim must be even (sine and cosine pairs)")
        if not self.beta_start < self.beta_end < 1:
            raise UsageError(
                f"the noise schedule needs beta_start < beta_end < 1, got {self.beta_start:g} "
                f"and {self.beta_end:g}"
            )
        if self.sampling_steps > self.train_steps:
            raise UsageError(
                f"sampling_steps ({self.sampling_steps}) cannot exceed train_steps "
                f"({self.train_steps})"
            )
        if self.sampler not in SAMPLERS:
            raise UsageError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.condition_method not in METHODS:
            raise UsageError(
                f"condition_method must be one of {', '.join(METHODS)}, got "
                f"{self.condition_method!r}"
            )

    def check_input(self, shape: Sequence[int]) -> None:
        if len(shape) != 4 or shape[1] != 1:
            raise UsageError(f"dsdm takes planes of shape (batch, 1, H, W), got {tuple(shape)}")


CONFIG_CLASSES: dict[str, type[ModelConfig]] = {
    cls.architecture: cls for cls in (CTHNetConfig, TVSRNConfig, ThickGridConfig, DSDMConfig)
}


def config_from_dict(values: dict[str, Any]) -> ModelConfig:
    """Rebuild a config from ``config.json``; unknown or newer content is a clear error."""
    values = dict(values)
    architecture = values.pop("architecture", None)
    version = values.pop("format", CONFIG_FORMAT)
    if not is_whole(version) or version < 1:
        raise UsageError(f"the model config's format must be a positive integer, got {version!r}")
    if version > CONFIG_FORMAT:
        raise UsageError(
            f"the model config has format {version}, newer than this thinct understands "
            f"({CONFIG_FORMAT}); upgrade thinct"
        )
    if architecture not in CONFIG_CLASSES:
        known = ", ".join(CONFIG_CLASSES)
        raise UsageError(f"unknown model architecture {architecture!r}; known: {known}")
    cls = CONFIG_CLASSES[architecture]
    unknown = unknown_keys(cls, values)
    if unknown:
        raise UsageError(f"unknown {architecture} config fields: {', '.join(unknown)}")
    try:
        return cls(**values)
    except TypeError as error:
        raise UsageError(f"invalid {architecture} config: {error}") from None


__all__ = [
    "CTHNetConfig",
    "DSDMConfig",
    "ModelConfig",
    "SwinDecoderConfig",
    "TVSRNConfig",
    "ThickGridConfig",
    "config_from_dict",
]

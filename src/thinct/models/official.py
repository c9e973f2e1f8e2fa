"""Official CTHNet and TVSRN weights: their state-dict names, checked against the layout the
published code produces, and mapped onto thinct's modules.

The published networks keep their tensors under names such as ``Decoder_I1.layers.0.
residual_group.blocks.0.attn.qkv.weight``; thinct's modules say what they are
(``in_plane.stages.0.layers.0.attn.qkv.weight``). The mapping is a short list of renames, and
a checkpoint is accepted only when every tensor maps onto the model with the right shape.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

from thinct.errors import InputError
from thinct.models.config import CTHNetConfig, ModelConfig, TVSRNConfig
from thinct.models.registry import build_model
from thinct.models.safe_unpickle import OfficialCheckpoint, read_official_checkpoint

# Applied in order, each to the result of the one before.
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^Encoder\.conv_first\.", "encoder.stem."),
    (r"^Encoder\.norm_first\.", "encoder.norm_in."),
    (r"^Encoder\.norm_last\.", "encoder.norm_out."),
    (r"^Encoder\.conv_after_body\.", "encoder.conv_out."),
    (r"^Encoder\.layers\.(\d+)\.blocks\.", r"encoder.stages.\1.layers."),
    (r"^Encoder\.layers\.(\d+)\.layer_conv\.", r"encoder.stages.\1.conv."),
    (r"^Encoder\.layers\.(\d+)\.layer_norm\.", r"encoder.stages.\1.norm."),
    (r"^Encoder\.", "encoder."),
    (r"^Decoder_T1\.", "through_plane.backbone."),
    (r"^Decoder_I1\.", "in_plane."),
    (r"\.patch_embed\.norm\.", ".norm_in."),
    (r"\.layers\.(\d+)\.residual_group\.blocks\.", r".stages.\1.layers."),
    (r"\.layers\.(\d+)\.conv\.", r".stages.\1.conv."),
    (r"^(encoder|through_plane\.backbone|in_plane)\.norm\.", r"\1.norm_out."),
    (r"^conv_after_E\.", "to_latent."),
    (r"^conv_after_body\.", "in_plane_conv."),
    (r"^conv_before_upsample\.0\.", "head.0."),
    (r"^conv_last\.", "head.2."),
    (r"^LP\.", "lift."),
)
# Buffers the official modules save that thinct computes: checked, then dropped.
_INDEX_SUFFIX = "relative_position_index"
# TVSRN's shifted-window masks depend on the tile size it was saved with: recomputed.
_MASK_SUFFIX = "attn_mask"


def thinct_name(official: str) -> str:
    """The thinct state-dict name of an official tensor name."""
    for pattern, replacement in _RENAMES:
        official = re.sub(pattern, replacement, official)
    return official


def official_config(tensors: dict[str, Tensor]) -> ModelConfig:
    """The published configuration that an official state dict belongs to."""
    if "Encoder.conv_first.weight" in tensors:
        return CTHNetConfig(layout="official")
    if "LP.weight" in tensors:
        return TVSRNConfig(layout="official")
    raise InputError(
        "not an official CTHNet or TVSRN checkpoint: it has neither Encoder.conv_first "
        "(CTHNet) nor LP (TVSRN) weights"
    )


def expected_layout(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """thinct name -> shape of every tensor an official checkpoint of ``model`` holds."""
    layout = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    for name, buffer in model.named_buffers():
        if name.endswith(_INDEX_SUFFIX):
            layout[name] = tuple(buffer.shape)
    return layout


def model_from_official_state_dict(tensors: dict[str, Tensor]) -> nn.Module:
    """Build the published network in the official layout and load official tensors into it.

    Every tensor must map onto the model with its shape, and every model tensor must be
    present; the saved relative position indices must equal the ones thinct computes.
    """
    config = official_config(tensors)
    model = build_model(config)
    layout = expected_layout(model)
    buffers = dict(model.named_buffers())
    mapped: dict[str, Tensor] = {}
    for official, tensor in tensors.items():
        if official.endswith(_MASK_SUFFIX):
            continue
        name = thinct_name(official)
        if name not in layout:
            raise InputError(f"unexpected tensor {official} for an official {config.architecture}")
        if tuple(tensor.shape) != layout[name]:
            raise InputError(
                f"{official} has shape {tuple(tensor.shape)}, expected {layout[name]} for the "
                f"published {config.architecture}"
            )
        mapped[name] = tensor
    missing = sorted(set(layout) - set(mapped))
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise InputError(f"the checkpoint lacks {missing[0]}{more}")
    weights = {}
    for name, tensor in mapped.items():
        if name.endswith(_INDEX_SUFFIX):
            if not torch.equal(tensor.long(), buffers[name]):
                raise InputError(f"{name}: relative position index differs from Swin's")
            continue
        if not tensor.is_floating_point():
            raise InputError(f"{name} holds {tensor.dtype} values, not weights")
        weights[name] = tensor.float()
    model.load_state_dict(weights, strict=True)
    return model.eval()


def official_model(checkpoint: OfficialCheckpoint, path: str | Path) -> nn.Module:
    """The model of a checkpoint already read from ``path`` (errors name that file)."""
    try:
        return model_from_official_state_dict(checkpoint.tensors)
    except InputError as error:
        raise InputError(f"{path}: {error}") from None


def load_official_checkpoint(path: str | Path) -> nn.Module:
    """The model in an official checkpoint (a pickled module), read without running its code."""
    return official_model(read_official_checkpoint(Path(path)), path)

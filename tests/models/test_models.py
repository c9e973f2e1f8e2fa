"""CTHNet and TVSRN: sizes, shapes, exact window attention against a per-window reference,
Swin's index and mask layouts, training, configs, the registry, model folders, and the
official golden outputs (when ../shared/reference is present).

Small configs keep the file fast; the paper-size models are built only to count parameters
and to run the 64 x 64 golden cubes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers.errors import assert_clean_error
from helpers.paths import ROOT
from safetensors.torch import load_file

from thinct.errors import InputError, OutputError, ThinctError, UsageError
from thinct.models import (
    CTHNetConfig,
    TVSRNConfig,
    config_from_dict,
    create_model,
    list_models,
    load_model,
    official,
    save_model,
)
from thinct.models.blocks import (
    SHIFT_MASK_VALUE,
    SwinLayer,
    WindowAttention,
    _block_diagonal,
    _pack_size,
    relative_position_index,
    shifted_window_mask,
    sinusoidal_encoding,
    window_merge,
    window_partition,
)
from thinct.models.storage import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, recorded_sha256

REFERENCE = ROOT.parent / "shared" / "reference"

# Small variants of both networks: every kind of stage, shifted layers and several decoder
# stages are kept, with few channels. Heads divide channels for any slices and ratio.
SMALL = {
    "cthnet": dict(
        encoder_dim=8,
        encoder_heads=2,
        encoder_depths=(2,),
        latent_channels=4,
        through_depths=(2,),
        through_heads=4,
        in_plane_depths=(2, 2),
        in_plane_heads=2,
    ),
    "tvsrn": dict(
        latent_channels=4,
        encoder_heads=2,
        encoder_depths=(2,),
        through_depths=(2,),
        through_heads=4,
        in_plane_depths=(2, 2),
        in_plane_heads=2,
    ),
}
ARCHITECTURES = ["cthnet", "tvsrn"]
LAYOUTS = ["clean", "official"]


def small_model(architecture: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(architecture, **{**SMALL[architecture], **overrides})


def thick_input(model: torch.nn.Module, batch: int, height: int, width: int, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, model.config.slices, height, width, generator=generator)


# --- sizes and shapes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("architecture", "parameters"), [("cthnet", 10_606_217), ("tvsrn", 2_387_489)]
)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_paper_models_have_the_published_parameter_counts(architecture, parameters, layout):
    model = create_model(architecture, layout=layout)
    assert sum(p.numel() for p in model.parameters()) == parameters


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    ("slices", "ratio", "batch", "height", "width"),
    [(2, 2, 1, 24, 24), (3, 5, 2, 16, 40), (4, 3, 1, 40, 16)],
)
def test_output_has_a_thin_slot_per_ratio_step(
    architecture, layout, slices, ratio, batch, height, width
):
    model = small_model(architecture, layout=layout, slices=slices, ratio=ratio).eval()
    with torch.no_grad():
        out = model(thick_input(model, batch, height, width))
    assert out.shape == (batch, 1, (slices - 1) * ratio + 1, height, width)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize(
    "shape",
    [(1, 1, 3, 16, 16), (1, 2, 4, 16, 16), (1, 4, 16, 16), (1, 1, 4, 12, 16), (1, 1, 4, 16, 20)],
)
def test_input_the_network_cannot_map_is_refused(architecture, shape):
    # CTHNet would otherwise stretch a 3-slice cube onto the slots of a 4-slice model.
    model = small_model(architecture, slices=4)
    with pytest.raises(UsageError) as error:
        model(torch.zeros(shape))
    assert "\n" not in str(error.value)


def test_tvsrn_tiles_are_multiples_of_both_patch_and_fold():
    assert TVSRNConfig().tile_multiple == 8
    assert TVSRNConfig(patch=4, fold=8).tile_multiple == 8
    assert TVSRNConfig(patch=6, fold=8).tile_multiple == 24
    assert CTHNetConfig(fold=4).tile_multiple == 4


# --- determinism, batches, memory layout ----------------------------------------------------


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_eval_is_deterministic_and_batches_equal_single_forwards(architecture, layout):
    # TVSRN's shifted-window masks are per window: a batch must repeat them per element.
    model = small_model(architecture, layout=layout).eval()
    x = thick_input(model, 3, 16, 24)
    with torch.no_grad():
        batched = model(x)
        again = model(x)
        singles = torch.cat([model(x[i : i + 1]) for i in range(3)])
    assert torch.equal(batched, again)
    assert (batched - singles).abs().max() < 1e-5


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_non_contiguous_input_gives_the_same_output(architecture):
    model = small_model(architecture).eval()
    x = thick_input(model, 2, 16, 24)
    transposed = x.transpose(3, 4).contiguous().transpose(3, 4)
    assert not transposed.is_contiguous()
    with torch.no_grad():
        assert (model(transposed) - model(x)).abs().max() < 1e-6


# --- window attention: packing against a per-window reference --------------------------------


def reference_attention(attn: WindowAttention, x: torch.Tensor, mask: torch.Tensor | None):
    """softmax(q k^T * scale + bias + mask) v, one window and one head at a time."""
    batch, windows, tokens, channels = x.shape
    head_dim = channels // attn.heads
    bias = attn.relative_position_bias_table[attn.relative_position_index]  # (t, t, heads)
    out = torch.empty_like(x)
    for b in range(batch):
        for w in range(windows):
            qkv = attn.qkv(x[b, w]).reshape(tokens, 3, attn.heads, head_dim)
            heads = []
            for h in range(attn.heads):
                q, k, v = qkv[:, 0, h], qkv[:, 1, h], qkv[:, 2, h]
                logits = q @ k.T * head_dim**-0.5 + bias[:, :, h]
                if mask is not None:
                    logits = logits + mask[w]
                heads.append(torch.softmax(logits, dim=-1) @ v)
            out[b, w] = attn.proj(torch.cat(heads, dim=-1))
    return out


def random_attention(window: tuple[int, ...], dim: int = 8, heads: int = 2) -> WindowAttention:
    torch.manual_seed(0)
    attn = WindowAttention(dim, heads, window).double()
    with torch.no_grad():  # a bias large enough to matter
        attn.relative_position_bias_table.normal_(0, 1)
    return attn


@pytest.mark.parametrize(
    ("window", "spatial", "shift"),
    [
        ((2, 2, 2), (2, 2, 2), None),  # one window
        ((2, 2, 2), (2, 2, 6), None),  # 3 windows: pack 3 instead of 4
        ((2, 2, 2), (2, 4, 4), None),  # 4 windows: pack 4
        ((2, 2, 2), (2, 2, 10), None),  # 5 windows: no packing
        ((2, 2, 2), (4, 4, 6), (1, 1, 1)),  # 12 windows, shifted in 3D
        ((4, 4), (4, 12), None),  # 3 windows: no packing
        ((4, 4), (8, 12), None),  # 6 windows: pack 2
        ((4, 4), (8, 12), (2, 2)),  # ... with the shift mask
        ((4, 4), (4, 12), (2, 2)),
        ((4, 4), (8, 8), (0, 2)),  # shifted along one axis only
        ((2, 2), (4, 6), (1, 1)),  # 6 windows of 4 tokens: pack 6
        ((8, 8), (16, 24), (4, 4)),  # 64 tokens: never packed
    ],
)
def test_packed_window_attention_equals_attention_per_window(window, spatial, shift):
    attn = random_attention(window)
    windows = math.prod(s // w for s, w in zip(spatial, window, strict=True))
    mask = None if shift is None else shifted_window_mask(spatial, window, shift).double()
    x = torch.randn(2, windows, math.prod(window), 8, dtype=torch.float64)
    with torch.no_grad():
        expected = reference_attention(attn, x, mask)
        assert (attn(x, mask) - expected).abs().max() < 1e-12


def test_packed_attention_with_an_arbitrary_mask_keeps_each_window_to_its_own():
    attn = random_attention((2, 2))
    x = torch.randn(3, 12, 4, 8, dtype=torch.float64)
    generator = torch.Generator().manual_seed(3)
    mask = torch.where(torch.rand(12, 4, 4, generator=generator) < 0.3, -100.0, 0.0).double()
    assert _pack_size(12, 4) == 6
    with torch.no_grad():
        assert (attn(x, mask) - reference_attention(attn, x, mask)).abs().max() < 1e-12


@pytest.mark.parametrize(
    ("windows", "tokens", "pack"),
    [(1, 8, 1), (3, 8, 3), (4, 8, 4), (8, 8, 4), (10, 8, 2), (5, 8, 1), (6, 16, 2), (3, 16, 1)]
    + [(7, 64, 1), (12, 4, 6), (16, 4, 8), (9, 40, 1)],
)
def test_pack_size_is_a_divisor_within_the_packed_length(windows, tokens, pack):
    assert _pack_size(windows, tokens) == pack


def test_block_diagonal_puts_blocks_on_the_diagonal_and_minus_infinity_elsewhere():
    blocks = torch.randn(2, 3, 4, 4)
    expected = torch.full((2, 12, 12), float("-inf"))
    for i in range(3):
        expected[:, 4 * i : 4 * i + 4, 4 * i : 4 * i + 4] = blocks[:, i]
    assert torch.equal(_block_diagonal(blocks), expected)


# --- Swin layouts ----------------------------------------------------------------------------


def test_relative_position_index_is_swins_layout_in_2d():
    # Swin's index for a 2 x 2 window, tokens in row-major order (0,0), (0,1), (1,0), (1,1):
    # (dy + 1) * 3 + (dx + 1) with d = position of the query minus that of the key.
    expected = torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    assert torch.equal(relative_position_index((2, 2)), expected)
    index = relative_position_index((4, 4))
    assert index.shape == (16, 16)
    assert index.min() == 0 and index.max() == 48 and index.unique().numel() == 49
    assert index[0, 15] == 0 and index[15, 0] == 48 and index[5, 5] == 24
    assert index[1, 4] == (-1 + 3) * 7 + (1 + 3)  # query (0, 1), key (1, 0)


def test_relative_position_index_is_video_swins_layout_in_3d():
    # (dz + 1) * 9 + (dy + 1) * 3 + (dx + 1) over the 27 offsets of a 2 x 2 x 2 window.
    index = relative_position_index((2, 2, 2))
    assert index.shape == (8, 8)
    assert torch.equal(index.diagonal(), torch.full((8,), 13))
    assert index[0, 7] == 0 and index[7, 0] == 26
    assert index[1, 2] == 1 * 9 + 0 * 3 + 2  # query (0, 0, 1), key (0, 1, 0)
    assert index[4, 1] == 2 * 9 + 1 * 3 + 0  # query (1, 0, 0), key (0, 0, 1)
    assert index.unique().numel() == 27


def neighbour_mask(spatial, window, shift) -> torch.Tensor:
    """0 where two tokens of a shifted window sit at the same offset from each other in the
    unshifted grid (true neighbours), the Swin mask value where the shift wrapped one."""
    dims = len(spatial)
    grids = torch.meshgrid(*[torch.arange(size) for size in spatial], indexing="ij")
    here = torch.stack(grids, dim=-1)[None].double()
    origin = torch.roll(here, [-s for s in shift], dims=tuple(range(1, dims + 1)))
    here, origin = window_partition(here, window)[0], window_partition(origin, window)[0]
    same = (origin[:, :, None] - origin[:, None] == here[:, :, None] - here[:, None]).all(-1)
    return torch.where(same, 0.0, SHIFT_MASK_VALUE)


@pytest.mark.parametrize(
    ("spatial", "window", "shift"),
    [((8, 12), (4, 4), (2, 2)), ((16, 16), (8, 8), (4, 4)), ((8, 8), (4, 4), (0, 2))]
    + [((4, 4, 6), (2, 2, 2), (1, 1, 1)), ((4, 8), (4, 4), (2, 2))],
)
def test_shifted_window_mask_separates_exactly_the_tokens_the_shift_brought_together(
    spatial, window, shift
):
    mask = shifted_window_mask(spatial, window, shift)
    assert torch.equal(mask, neighbour_mask(spatial, window, shift))
    assert (mask != 0).any()  # the last window of a shifted axis always mixes regions


def test_window_partition_and_merge_are_inverse():
    x = torch.randn(2, 4, 6, 8, 3)
    windows = window_partition(x, (2, 3, 4))
    assert windows.shape == (2, 2 * 2 * 2, 24, 3)
    assert torch.equal(windows[:, 0], x[:, :2, :3, :4].reshape(2, 24, 3))
    assert torch.equal(windows[:, 1], x[:, :2, :3, 4:].reshape(2, 24, 3))
    assert torch.equal(window_merge(windows, (2, 3, 4), (4, 6, 8)), x)


# --- Swin layers: shift, padding, the windowing cache -----------------------------------------


def reference_layer(layer: SwinLayer, x: torch.Tensor) -> torch.Tensor:
    """Video Swin's order: norm, zero-pad to whole windows, roll, attend in windows (with the
    mask of the padded grid), roll back, crop; then the MLP branch."""
    batch, *spatial, channels = x.shape
    axes = tuple(range(1, len(spatial) + 1))
    y = layer.norm1(x)
    pads = [(-size) % win for size, win in zip(spatial, layer.window, strict=True)]
    y = F.pad(y, [0, 0] + [p for pad in reversed(pads) for p in (0, pad)])
    padded = y.shape[1:-1]
    y = torch.roll(y, [-s for s in layer.shift], axes)
    mask = shifted_window_mask(padded, layer.window, layer.shift) if layer.masked else None
    windows = window_partition(y, layer.window)
    y = window_merge(reference_attention(layer.attn, windows, mask), layer.window, padded)
    y = torch.roll(y, list(layer.shift), axes)[(slice(None), *map(slice, spatial))]
    x = x + y
    return x + layer.mlp(layer.norm2(x))


def random_layer(window, shift, masked) -> SwinLayer:
    torch.manual_seed(0)
    layer = SwinLayer(8, 2, window, shift, masked).double().eval()
    with torch.no_grad():
        for name, parameter in layer.named_parameters():
            if name != "norm1.bias":  # kept 0: see the padding test
                parameter.normal_(0, 0.5)
    return layer


@pytest.mark.parametrize(
    ("window", "shift", "masked", "sizes"),
    [
        ((4, 4), (2, 2), True, [(8, 12), (10, 13), (8, 12), (3, 4)]),
        ((4, 4), (2, 2), False, [(10, 13), (8, 8)]),
        ((4, 4), (0, 0), False, [(6, 9)]),
        ((2, 2, 2), (1, 1, 1), False, [(3, 5, 6), (4, 4, 4)]),
        ((2, 2, 2), (1, 1, 1), True, [(3, 5, 6)]),
    ],
)
def test_swin_layer_equals_pad_roll_partition_attend(window, shift, masked, sizes):
    # Sizes come in a sequence so that the cached windowing of one size is reused after
    # another size was seen.
    layer = random_layer(window, shift, masked)
    for size in sizes:
        x = torch.randn(2, *size, 8, dtype=torch.float64)
        with torch.no_grad():
            out = layer(x)
            assert out.shape == x.shape
            assert (out - reference_layer(layer, x)).abs().max() < 1e-12


@pytest.mark.parametrize(("window", "shift"), [((4, 4), (2, 2)), ((2, 2, 2), (1, 1, 1))])
def test_padding_inside_a_layer_is_zero_padding_of_the_normalised_tokens(window, shift):
    # LayerNorm maps zero tokens to its bias, 0 here, so padding the input by hand to whole
    # windows and cropping gives the layer's own padded result: the padded tokens take part
    # in attention (as in Video Swin), and the crop returns exactly the input's positions.
    layer = random_layer(window, shift, masked=True)
    size = (5, 6) if len(window) == 2 else (3, 2, 5)
    x = torch.randn(1, *size, 8, dtype=torch.float64)
    pads = [(-s) % w for s, w in zip(size, window, strict=True)]
    padded = F.pad(x, [0, 0] + [p for pad in reversed(pads) for p in (0, pad)])
    with torch.no_grad():
        cropped = layer(padded)[(slice(None), *map(slice, size))]
        assert (layer(x) - cropped).abs().max() < 1e-12


def test_padding_touches_only_the_windows_it_falls_in():
    layer = random_layer((4, 4), (0, 0), masked=False)
    x = torch.randn(1, 8, 11, 8, dtype=torch.float64)
    with torch.no_grad():
        whole, part = layer(x), layer(x[:, :, :8])
    assert (whole[:, :, :8] - part).abs().max() < 1e-12


# --- training ------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_backward_gives_finite_gradients_for_every_parameter(architecture):
    model = small_model(architecture, slices=3, ratio=2).train()
    x = thick_input(model, 2, 16, 16)
    loss = (model(x) - 0.5).abs().mean()
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_training_works_on_a_size_first_seen_in_inference_mode(architecture):
    # Layers cache their windowing per size; validation under inference_mode must not leave
    # inference tensors there for the next training step.
    model = small_model(architecture)
    x = thick_input(model, 1, 16, 16)
    with torch.inference_mode():
        model.eval()(x)
    model.train()(x).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_bfloat16_autocast_stays_close_with_masks_and_packing(architecture):
    model = small_model(architecture).eval()
    x = thick_input(model, 2, 16, 16)
    with torch.no_grad():
        full = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16
    assert torch.isfinite(low).all()
    assert (low.float() - full).abs().max() < 0.1


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_drop_path_acts_only_while_training(architecture):
    model = small_model(architecture, drop_path_rate=0.5)
    x = thick_input(model, 2, 16, 16)
    with torch.no_grad():
        model.train()
        torch.manual_seed(1)
        first = model(x)
        second = model(x)
        model.eval()
        evaluated = model(x)
        assert torch.equal(evaluated, model(x))
    assert not torch.equal(first, second)
    assert not torch.equal(first, evaluated)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_without_drop_path_training_mode_changes_nothing(architecture):
    model = small_model(architecture, drop_path_rate=0.0)
    x = thick_input(model, 1, 16, 16)
    with torch.no_grad():
        trained = model.train()(x)
        evaluated = model.eval()(x)
    assert torch.equal(trained, evaluated)


def test_drop_path_rates_rise_linearly_over_the_decoder_layers_only():
    model = create_model("cthnet", **SMALL["cthnet"], drop_path_rate=0.3)
    rates = {name: m.rate for name, m in model.named_modules() if type(m).__name__ == "DropPath"}
    assert all(rate == 0 for name, rate in rates.items() if name.startswith("encoder."))
    in_plane = [rate for name, rate in rates.items() if name.startswith("in_plane.")]
    assert in_plane == pytest.approx([0.0, 0.1, 0.2, 0.3])
    through = [rate for name, rate in rates.items() if name.startswith("through_plane.")]
    assert through == pytest.approx([0.0, 0.3])


# --- the slot encoding ------------------------------------------------------------------------


def test_sinusoidal_encoding_matches_the_formula():
    encoding = sinusoidal_encoding(36, 8)
    assert encoding.shape == (36, 8) and encoding.dtype == torch.float32
    for z in range(36):
        for i in range(4):
            angle = z / 10000 ** (2 * i / 8)
            assert encoding[z, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-7)
            assert encoding[z, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-7)


def test_models_add_the_encoding_of_their_slots():
    cthnet, tvsrn = create_model("cthnet"), create_model("tvsrn")
    assert torch.equal(cthnet.slot_encoding, sinusoidal_encoding(36, 8).T)
    assert torch.equal(tvsrn.slot_encoding, sinusoidal_encoding(16, 8))
    assert "slot_encoding" not in cthnet.state_dict()


# --- configs and the registry --------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        CTHNetConfig(),
        TVSRNConfig(layout="official"),
        CTHNetConfig(slices=4, ratio=3, encoder_depths=(2, 2), in_plane_window=4),
        TVSRNConfig(slices=2, drop_path_rate=0.0, mlp_ratio=2),
    ],
)
def test_config_round_trips_through_json(config):
    values = json.loads(json.dumps(config.to_dict()))
    assert values["architecture"] == config.architecture and values["format"] == 1
    assert config_from_dict(values) == config


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"architecture": "cthnet", "colour": 3}, "colour"),
        ({"architecture": "unet"}, "unet"),
        ({"slices": 8}, "architecture"),
        ({"architecture": "cthnet", "format": 99}, "upgrade"),
        ({"architecture": "cthnet", "format": "1"}, "format"),
        ({"architecture": "cthnet", "encoder_heads": 5}, "heads"),
        ({"architecture": "tvsrn", "through_heads": 3}, "heads"),
        ({"architecture": "cthnet", "in_plane_heads": 7}, "heads"),
        ({"architecture": "cthnet", "layout": "fancy"}, "layout"),
        ({"architecture": "cthnet", "slices": 1}, "slices"),
        ({"architecture": "cthnet", "slices": "8"}, "slices"),
        ({"architecture": "cthnet", "encoder_window": [2, 2]}, "encoder_window"),
        ({"architecture": "tvsrn", "encoder_depths": 4}, "encoder_depths"),
        ({"architecture": "tvsrn", "fold": 0}, "fold"),
        ({"architecture": "tvsrn", "drop_path_rate": 1.0}, "drop_path_rate"),
        ({"architecture": "tvsrn", "latent_channels": 7}, "latent_channels"),
    ],
)
def test_bad_configs_are_usage_errors_that_say_what_is_wrong(values, words):
    with pytest.raises(UsageError) as error:
        config_from_dict(values)
    message = str(error.value)
    assert words in message and "\n" not in message


def test_registry_lists_the_published_models():
    names = ["cthnet", "cthnet-small", "dsdm", "dsdm-small", "thickgrid", "tvsrn"]
    assert [entry.name for entry in list_models()] == names
    shipped = {entry.name: entry.weights for entry in list_models()}
    assert shipped == {
        "cthnet": None,
        "cthnet-small": "cthnet-small",
        "dsdm": None,
        "dsdm-small": None,
        "thickgrid": "thickgrid",
        "tvsrn": None,
    }


def test_create_model_applies_overrides():
    model = create_model("tvsrn", slices=3, ratio=2, encoder_heads=4, in_plane_depths=[2])
    assert model.config == TVSRNConfig(slices=3, ratio=2, encoder_heads=4, in_plane_depths=(2,))
    assert len(model.in_plane.stages) == 1
    assert model.training  # fresh weights, ready to train


@pytest.mark.parametrize(
    ("name", "overrides", "words"),
    [
        ("unet", {}, "cthnet, cthnet-small, dsdm, dsdm-small, thickgrid, tvsrn"),
        ("cthnet", {"depth": 3}, "depth"),
    ],
)
def test_create_model_refuses_unknown_names(name, overrides, words):
    with pytest.raises(UsageError, match=words):
        create_model(name, **overrides)


# --- model folders -------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path) -> tuple[torch.nn.Module, Path]:
    model = small_model("tvsrn").eval()
    return model, save_model(model, tmp_path / "model", {"title": "A test model"})


def test_saved_model_loads_with_identical_outputs(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == [CARD_FILE, CONFIG_FILE, WEIGHTS_FILE]
    loaded = load_model(folder)
    assert not loaded.training and loaded.config == model.config
    x = thick_input(model, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert load_model(str(folder)).config == model.config


def test_model_card_records_the_weights_sha256(saved):
    _, folder = saved
    sha256 = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
    assert recorded_sha256(folder) == sha256
    card = (folder / CARD_FILE).read_text()
    assert sha256 in card and "A test model" in card


def test_saved_folder_and_files_have_the_usual_permissions(saved):
    _, folder = saved
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


def test_save_model_replaces_a_model_folder_but_nothing_else(saved, tmp_path):
    model, folder = saved
    other = small_model("cthnet")
    save_model(other, folder)
    assert load_model(folder).config == other.config
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging left behind
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    (tmp_path / "file").write_text("keep me")
    for target in (tmp_path / "notes", tmp_path / "file"):
        with pytest.raises(OutputError) as error:
            save_model(model, target)
        assert_clean_error(error, target)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_modified_weights_are_refused(saved):
    _, folder = saved
    weights = folder / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # a valid file whose values changed
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256") as error:
        load_model(folder)
    assert_clean_error(error, weights)


def break_missing_weights(folder: Path) -> Path:
    (folder / WEIGHTS_FILE).unlink()
    return folder


def break_json(folder: Path) -> Path:
    (folder / CONFIG_FILE).write_text('{"architecture": "tvsrn",')
    return folder / CONFIG_FILE


def break_config(folder: Path) -> Path:
    (folder / CONFIG_FILE).write_text(json.dumps({"architecture": "tvsrn", "slices": 0}))
    return folder / CONFIG_FILE


def break_card(folder: Path) -> Path:
    (folder / CARD_FILE).write_text("---\nweights_sha256: [unclosed\n---\n")
    return folder / CARD_FILE


def break_truncated(folder: Path) -> Path:
    # Without a card the weights are not checksummed: the safetensors reader must refuse.
    (folder / CARD_FILE).unlink()
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return weights


def break_truncated_with_card(folder: Path) -> Path:
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    return weights


def break_shapes(folder: Path) -> Path:
    # Weights of another size, with their own (matching) card: only the config disagrees.
    other = save_model(small_model("tvsrn", latent_channels=8), folder.parent / "other")
    shutil.copy(other / WEIGHTS_FILE, folder / WEIGHTS_FILE)
    shutil.copy(other / CARD_FILE, folder / CARD_FILE)
    return folder / WEIGHTS_FILE


def break_missing_tensors(folder: Path) -> Path:
    other = save_model(small_model("tvsrn", in_plane_depths=(2,)), folder.parent / "other")
    shutil.copy(other / WEIGHTS_FILE, folder / WEIGHTS_FILE)
    shutil.copy(other / CARD_FILE, folder / CARD_FILE)
    return folder / WEIGHTS_FILE


@pytest.mark.parametrize(
    "damage",
    [
        break_missing_weights,
        break_json,
        break_config,
        break_card,
        break_truncated,
        break_truncated_with_card,
        break_shapes,
        break_missing_tensors,
    ],
)
def test_damaged_model_folders_are_one_line_input_errors(saved, damage):
    _, folder = saved
    named = damage(folder)
    with pytest.raises(InputError) as error:
        load_model(folder)
    assert_clean_error(error, named)


def test_load_model_without_weights_explains_why(tmp_path):
    assert load_model(None).config == create_model("thickgrid").config
    with pytest.raises(UsageError, match="no trained weights") as error:
        load_model("cthnet")
    assert "create_model" in str(error.value)
    with pytest.raises(UsageError, match="not a registered model"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)
    with pytest.raises(InputError, match="not a model"):
        load_model(tmp_path / "weights.bin")
    with pytest.raises(ThinctError, match="no config.json"):
        load_model(tmp_path)


# --- official weights and golden outputs (../shared/reference) -----------------------------


def reference_file(name: str) -> Path:
    path = REFERENCE / name
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is only on developer machines and CI)")
    return path


def official_model(architecture: str) -> torch.nn.Module:
    tensors = load_file(reference_file(f"{architecture}_official_random_fp16.safetensors"))
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    return official.model_from_official_state_dict(tensors)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_official_weights_reproduce_the_golden_output(architecture):
    model = official_model(architecture)
    assert model.config.layout == "official" and not model.training
    golden = load_file(reference_file(f"{architecture}_official_io_64.safetensors"))
    with torch.no_grad():
        out = model(golden["input"])
    assert (out[:, :, 3:-3] - golden["output"]).abs().max() < 1e-4


@pytest.mark.parametrize(("architecture", "count"), [("cthnet", 258), ("tvsrn", 242)])
def test_every_official_tensor_maps_onto_the_model(architecture, count):
    lines = reference_file(f"{architecture}_official_state_dict.tsv").read_text().splitlines()
    rows = [line.split("\t") for line in lines if line and not line.startswith("#")]
    assert len(rows) == count
    mapped = {official.thinct_name(name): ast.literal_eval(shape) for name, shape, _ in rows}
    layout = official.expected_layout(create_model(architecture, layout="official"))
    assert len(layout) == count
    assert mapped == layout


def test_official_relative_position_indices_are_swins():
    tensors = load_file(reference_file("tvsrn_official_random_fp16.safetensors"))
    by_size = {t.shape[0]: t for k, t in tensors.items() if k.endswith("relative_position_index")}
    assert torch.equal(by_size[64].long(), relative_position_index((8, 8)))
    assert torch.equal(by_size[16].long(), relative_position_index((4, 4)))
    tensors = load_file(reference_file("cthnet_official_random_fp16.safetensors"))
    index = tensors["Encoder.layers.0.blocks.0.attn.relative_position_index"]
    assert torch.equal(index.long(), relative_position_index((2, 2, 2)))

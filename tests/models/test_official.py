"""Official CTHNet and TVSRN checkpoints: read without running their code, checked, converted.

The published code saves whole modules (``torch.save({'net': module, 'config_dict': ...})``).
These tests make such files the same way (``helpers/official.py``): stand-in classes registered
for one ``torch.save`` under the published module names (``net.model_TransSR``,
``net.swin_utils``, ``net.swin_utils_3d``, timm's DropPath), holding real torch layers, with
exactly the official state-dict layout (``tests/models/data/*_official_state_dict.tsv``). The
stand-ins are gone again when thinct reads the files, so nothing could be imported from them.

Crafted checkpoints whose pickle would run code (``os.system``, ``eval``, ``subprocess``...)
must be refused before anything runs: each payload touches a canary file, which must never
appear. With ../shared, the reference weights and the official code's golden outputs check the
whole path from checkpoint to thin slices.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import json
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import types
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.cli import assert_ok, assert_one_error, thinct, thinct_in_process
from helpers.errors import assert_clean_error
from helpers.official import (
    PUBLISHED_MODULES,
    Saved,
    official_layout,
    random_official_tensors,
    save_official,
)
from helpers.paths import ROOT
from safetensors.torch import load_file
from torch import Tensor, nn

from thinct.errors import InputError
from thinct.models import load_model
from thinct.models.official import model_from_official_state_dict
from thinct.models.safe_unpickle import read_official_checkpoint
from thinct.models.storage import recorded_sha256, sha256_of

REFERENCE = ROOT.parent / "shared" / "reference"
# What survives of CONFIG_DICT: only plain values.
PLAIN_CONFIG = {
    "net_idx": "CTHNet",
    "ratio": 5,
    "lr": 3e-4,
    "use_amp": False,
    "resume": None,
    "tile": [8, 256, 256],
    "mode": {"train": True},
}
INPUT_SHAPES = {"cthnet": (1, 1, 8, 16, 16), "tvsrn": (1, 1, 4, 16, 16)}


@pytest.fixture(scope="module", params=["cthnet", "tvsrn"])
def saved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Saved:
    architecture = request.param
    path = tmp_path_factory.mktemp(architecture) / f"{architecture}_best.pkl"
    return save_official(path, architecture, random_official_tensors(architecture))


def forward(model: nn.Module, shape: tuple[int, ...]) -> Tensor:
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        return model(torch.rand(shape, generator=generator))


# --- reading -------------------------------------------------------------------------------


def test_the_official_state_dict_comes_out_whole(saved: Saved):
    architecture = saved.architecture
    checkpoint = read_official_checkpoint(saved.path)
    layout = official_layout(architecture)
    masks = [name for name in saved.tensors if name.endswith("attn_mask")]
    assert len(layout) == {"cthnet": 258, "tvsrn": 242}[architecture]
    assert (len(masks) > 0) == (architecture == "tvsrn")
    assert list(checkpoint.tensors) == saved.names  # state_dict() order, nothing else
    assert set(checkpoint.tensors) == set(layout) | set(masks)
    for name, tensor in checkpoint.tensors.items():
        assert tensor.dtype == saved.tensors[name].dtype, name
        assert torch.equal(tensor, saved.tensors[name]), name
    assert checkpoint.config == PLAIN_CONFIG
    # Nothing of the published code was imported to read it.
    assert not set(PUBLISHED_MODULES) & set(sys.modules)


def test_the_model_in_a_checkpoint_runs_like_its_state_dict(saved: Saved):
    architecture = saved.architecture
    model = load_model(saved.path)
    assert model.config.architecture == architecture and model.config.layout == "official"
    reference = model_from_official_state_dict(saved.tensors)
    shape = INPUT_SHAPES[architecture]
    assert torch.equal(forward(model, shape), forward(reference, shape))


def test_a_net_entry_that_is_a_state_dict_is_accepted(tmp_path):
    tensors = random_official_tensors("tvsrn")
    torch.save({"net": tensors}, tmp_path / "plain.pth")
    checkpoint = read_official_checkpoint(tmp_path / "plain.pth")
    assert list(checkpoint.tensors) == list(tensors) and checkpoint.config == {}
    assert all(torch.equal(checkpoint.tensors[n], t) for n, t in tensors.items())


def test_an_object_of_an_unknown_class_in_the_config_stays_inert(tmp_path):
    """A training script may keep its options object in config_dict: pickle restores it
    without calling its class, so it can be read as an inert stand-in (and is dropped)."""

    class Options:
        def __init__(self) -> None:
            self.lr = 3e-4

    module = types.ModuleType("training_options")
    module.Options = Options
    Options.__module__, Options.__qualname__ = module.__name__, "Options"
    sys.modules[module.__name__] = module
    try:
        config = {"epochs": 10, "options": Options()}
        torch.save(
            {"net": random_official_tensors("tvsrn"), "config_dict": config}, tmp_path / "o.pth"
        )
    finally:
        del sys.modules[module.__name__]
    checkpoint = read_official_checkpoint(tmp_path / "o.pth")
    assert checkpoint.config == {"epochs": 10}
    assert len(checkpoint.tensors) == len(random_official_tensors("tvsrn"))


def test_calling_a_name_from_an_unknown_module_is_refused(tmp_path):
    """Stand-ins of unknown names may be restored, never called: a call is how a pickle runs
    code (here a made-up ``myproject.tools.run``)."""
    data = b"cmyproject.tools\nrun\n(Vrm -rf /\ntR."
    _read_error(evil_checkpoint(tmp_path / "evil.pkl", data), "refused to call myproject.tools.run")


def test_half_precision_and_shared_storages_are_rebuilt_exactly(tmp_path):
    base = torch.randn(6, 4)
    tensors = {"a": base.half(), "b": base[1:3].t(), "c": base, "d": torch.tensor([True, False])}
    torch.save({"net": tensors}, tmp_path / "views.pt")
    read = read_official_checkpoint(tmp_path / "views.pt").tensors
    for name, tensor in tensors.items():
        assert read[name].dtype == tensor.dtype and torch.equal(read[name], tensor), name


def _rewrite(source: Path, target: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """A copy of a checkpoint archive with entries changed (or left out, for None)."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for info in original.infolist():
            data = change(info.filename, original.read(info))
            if data is not None:
                copy.writestr(info.filename, data)
    return target


def test_a_big_endian_checkpoint_is_read_in_its_byte_order(tmp_path):
    tensors = {"w": torch.randn(3, 5), "i": torch.arange(4), "h": torch.randn(7).half()}
    torch.save({"net": tensors}, tmp_path / "little.pt")

    def to_big_endian(name: str, data: bytes) -> bytes:
        if name.endswith("/byteorder"):
            return b"big"
        if "/data/" in name and not name.endswith("serialization_id"):
            dtype = {"0": torch.float32, "1": torch.int64, "2": torch.float16}[name.split("/")[-1]]
            size = dtype.itemsize
            swapped = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(-1, size).flip(1)
            return swapped.numpy().tobytes()
        return data

    big = _rewrite(tmp_path / "little.pt", tmp_path / "big.pt", to_big_endian)
    read = read_official_checkpoint(big).tensors
    assert all(torch.equal(read[name], tensor) for name, tensor in tensors.items())


# --- checks of the layout ------------------------------------------------------------------


def _layout_error(tmp_path: Path, tensors: dict[str, Tensor]) -> str:
    path = save_official(tmp_path / "changed.pkl", "cthnet", tensors).path
    with pytest.raises(InputError) as error:
        load_model(path)
    assert_clean_error(error, path)
    return str(error.value)


@pytest.fixture(scope="module")
def cthnet_tensors() -> dict[str, Tensor]:
    return random_official_tensors("cthnet")


def test_a_tensor_of_the_wrong_shape_is_refused(tmp_path, cthnet_tensors):
    name = "Decoder_I1.layers.1.conv.weight"
    message = _layout_error(tmp_path, {**cthnet_tensors, name: torch.zeros(288, 288, 1, 1)})
    assert name in message and "(288, 288, 1, 1)" in message and "(288, 288, 3, 3)" in message


def test_a_missing_tensor_is_refused(tmp_path, cthnet_tensors):
    name = "Encoder.layers.0.blocks.2.mlp.fc1.bias"
    tensors = {n: t for n, t in cthnet_tensors.items() if n != name}
    assert "lacks encoder.stages.0.layers.2.mlp.fc1.bias" in _layout_error(tmp_path, tensors)


def test_an_extra_tensor_is_refused(tmp_path, cthnet_tensors):
    message = _layout_error(tmp_path, {**cthnet_tensors, "Encoder.scale": torch.ones(1)})
    assert "unexpected tensor Encoder.scale" in message


def test_a_wrong_position_index_is_refused(tmp_path, cthnet_tensors):
    name = "Decoder_T1.layers.0.residual_group.blocks.1.attn.relative_position_index"
    tensors = {**cthnet_tensors, name: cthnet_tensors[name].flip(0)}
    assert "relative position index" in _layout_error(tmp_path, tensors)


# --- files that are not (whole) checkpoints ------------------------------------------------


def _read_error(path: Path, *fragments: str) -> None:
    with pytest.raises(InputError) as error:
        read_official_checkpoint(path)
    assert_clean_error(error, path)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_a_file_that_is_no_checkpoint_is_refused(tmp_path):
    (tmp_path / "notes.pkl").write_text("these are not weights\n")
    _read_error(tmp_path / "notes.pkl", "not a torch checkpoint")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"net": {}}))
    _read_error(tmp_path / "plain.pkl", "not a torch checkpoint")
    _read_error(tmp_path / "absent.pkl", "no such file")


def test_the_legacy_format_is_refused_with_how_to_resave_it(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"net": {"w": torch.ones(2)}}, path, _use_new_zipfile_serialization=False)
    _read_error(path, "legacy", "not supported", "torch 1.6 or later")


def test_a_truncated_checkpoint_is_refused(tmp_path, saved: Saved):
    data = saved.path.read_bytes()
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    _read_error(tmp_path / "cut.pkl", "truncated or corrupt")


def test_damaged_storage_bytes_are_refused(tmp_path, saved: Saved):
    """A flipped byte in a storage (torch stores them uncompressed) fails its zip checksum."""
    with zipfile.ZipFile(saved.path) as archive:
        (info,) = [i for i in archive.infolist() if i.filename.endswith("/data/0")]
    raw = bytearray(saved.path.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", raw, info.header_offset + 26)
    raw[info.header_offset + 30 + name_length + extra_length] ^= 0xFF
    (tmp_path / "flipped.pkl").write_bytes(raw)
    _read_error(tmp_path / "flipped.pkl", "corrupt checkpoint", "CRC")


def test_a_checkpoint_without_net_is_refused(tmp_path):
    torch.save({"model": {"w": torch.ones(2)}}, tmp_path / "other.pt")
    _read_error(tmp_path / "other.pt", "no 'net' entry")


def test_a_missing_storage_is_refused(tmp_path, saved: Saved):
    path = _rewrite(
        saved.path,
        tmp_path / "holes.pkl",
        lambda name, data: None if name.endswith("/data/3") else data,
    )
    _read_error(path, "storage 3 is missing")


# --- malicious pickles ---------------------------------------------------------------------


class Call:
    """Pickles as ``function(*args)``: what a malicious checkpoint hides in its pickle."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.function, self.args

    def __call__(self) -> None:
        """Pickle only pickles callables as functions; a Call stands for its result."""


def payloads(canary: Path) -> dict[str, tuple[bytes, str]]:
    """data.pkl contents that would create ``canary``, with the global thinct must name."""
    touch = f"touch {canary}"
    return {
        "os.system": (b"cos\nsystem\n(V" + touch.encode() + b"\ntR.", "os.system"),
        "posix.system": (pickle.dumps({"net": Call(os.system, touch)}, 2), "posix.system"),
        "eval": (
            pickle.dumps(Call(builtins.eval, f"open({str(canary)!r}, 'w').close()"), 4),
            "builtins.eval",
        ),
        "subprocess": (
            pickle.dumps({"net": {}, "x": Call(subprocess.call, ["touch", str(canary)])}, 2),
            "subprocess.call",
        ),
        "getattr chain": (
            pickle.dumps(Call(Call(getattr, Call(builtins.__import__, "os"), "system"), touch), 2),
            "builtins.getattr",
        ),
        "torch.load": (b"ctorch\nload\n(V" + str(canary).encode() + b"\ntR.", "torch.load"),
    }


def evil_checkpoint(path: Path, data_pkl: bytes) -> Path:
    """A zip laid out like torch's, around a crafted data.pkl."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", data_pkl)
        archive.writestr("evil/byteorder", "little")
        archive.writestr("evil/version", "3\n")
    return path


PAYLOADS = list(payloads(Path("x")))


@pytest.mark.parametrize("kind", PAYLOADS)
def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path, kind):
    canary = tmp_path / "CANARY"
    data_pkl, refused = payloads(canary)[kind]
    path = evil_checkpoint(tmp_path / "evil.pkl", data_pkl)
    with pytest.raises(InputError) as error:
        load_model(path)
    assert_clean_error(error, path)
    assert f"refused to load {refused}" in str(error.value)
    assert not canary.exists()


def _called_globals(data_pkl: bytes) -> set[str]:
    """The globals a pickle looks up, with Python 2 names mapped as pickle maps them."""
    opcodes = list(pickletools.genops(data_pkl))
    found = set()
    for i, (opcode, arg, _) in enumerate(opcodes):
        if opcode.name == "GLOBAL":
            module, name = arg.split(" ")
        elif opcode.name == "STACK_GLOBAL":
            module, name = [a for _, a, _ in opcodes[:i] if isinstance(a, str)][-2:]
        else:
            continue
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        found.add(f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}")
    return found


@pytest.mark.parametrize("kind", PAYLOADS)
def test_the_payloads_would_call_what_they_name(kind):
    """The control, read from the opcodes without running anything: each payload looks up the
    global that thinct must refuse and calls something (REDUCE), so a refusal is no accident
    of a broken payload."""
    data_pkl, refused = payloads(Path("CANARY"))[kind]
    assert refused in _called_globals(data_pkl)
    assert any(opcode.name == "REDUCE" for opcode, _, _ in pickletools.genops(data_pkl))


def test_a_payload_inside_a_real_module_is_refused(tmp_path):
    canary = tmp_path / "CANARY"

    def hide(network: nn.Module) -> None:
        network.Decoder_T1.hook = Call(os.system, f"touch {canary}")

    tensors = random_official_tensors("tvsrn")
    path = save_official(tmp_path / "trojan.pkl", "tvsrn", tensors, extra=hide).path
    _read_error(path, "refused to load posix.system")
    assert not canary.exists()


def test_reconstructing_a_foreign_class_is_refused(tmp_path):
    data = b"ccopy_reg\n_reconstructor\n(ccollections\nOrderedDict\nc__builtin__\nobject\nNtR."
    _read_error(evil_checkpoint(tmp_path / "evil.pkl", data), "not a model class")


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path):
    torch.save({"net": {"w": torch.arange(6.0)}}, tmp_path / "ok.pt")

    def widen(name: str, data: bytes) -> bytes:
        if not name.endswith("data.pkl"):
            return data
        assert data.count(b"K\x06\x85") == 1  # the size (6,): BININT1 6, TUPLE1
        return data.replace(b"K\x06\x85", b"K\x07\x85")

    path = _rewrite(tmp_path / "ok.pt", tmp_path / "wide.pt", widen)
    _read_error(path, "past the end of its storage")


def test_setting_state_on_a_tensor_is_refused(tmp_path):
    """Torch's Tensor.__setstate__ would re-point the tensor at a resized storage."""
    torch.save({"net": {"w": torch.arange(4.0)}}, tmp_path / "ok.pt")

    def resize(name: str, data: bytes) -> bytes:
        if not name.endswith("data.pkl"):
            return data
        ops = list(pickletools.genops(data))
        last = max(i for i, (op, _, _) in enumerate(ops) if op.name == "REDUCE")
        assert ops[last + 1][0].name == "BINPUT"
        memo, end = ops[last + 1][1], ops[last + 2][2]  # the tensor's memo slot, where it ends
        state = b"(h" + bytes([memo]) + b"K\x00M\xe8\x03\x85K\x01\x85t"  # (t, 0, (1000,), (1,))
        return data[:end] + state + b"b" + data[end:]  # ... BUILD

    path = _rewrite(tmp_path / "ok.pt", tmp_path / "resized.pt", resize)
    _read_error(path, "sets state on a tensor")


def test_structures_that_contain_themselves_end_promptly(tmp_path):
    """A list inside itself twice would expand without end when written to the model card."""
    loop: list[Any] = []
    loop += [loop, loop, 1]
    torch.save({"net": {"w": torch.ones(1)}, "config_dict": {"b": 2, "a": loop}}, tmp_path / "c.pt")
    config = read_official_checkpoint(tmp_path / "c.pt").config
    assert config["b"] == 2 and len(json.dumps(config)) < 1_000_000
    module = nn.Linear(1, 1)
    module._modules["again"] = module
    torch.save({"net": module}, tmp_path / "cycle.pt")
    _read_error(tmp_path / "cycle.pt", "not a published network")


# --- thinct convert ------------------------------------------------------------------------


def test_convert_help_documents_its_arguments(capfd):
    result = thinct_in_process(capfd, "convert", "--help")
    assert result.returncode == 0 and result.stderr == ""
    for word in ("OFFICIAL", "FOLDER", "--overwrite", "--quiet"):
        assert word in result.stdout


def test_convert_writes_a_folder_that_runs_like_the_checkpoint(tmp_path, capfd, saved: Saved):
    folder = tmp_path / "converted"
    result = thinct_in_process(capfd, "convert", saved.path, folder)
    assert_ok(result)
    assert result.stderr.strip() == f"wrote {folder}"
    converted, original = load_model(folder), load_model(saved.path)
    shape = INPUT_SHAPES[saved.architecture]
    assert torch.equal(forward(converted, shape), forward(original, shape))
    card = (folder / "README.md").read_text()
    assert recorded_sha256(folder) == sha256_of(folder / "model.safetensors")
    assert f"**source_sha256**: {sha256_of(saved.path)}" in card
    assert f"**source**: {saved.path.name}" in card
    assert "converted from the official checkpoint" in card
    assert f"**official_config_dict**: {json.dumps(PLAIN_CONFIG)}" in card


def test_convert_refuses_an_existing_folder_without_overwrite(tmp_path, capfd, saved: Saved):
    folder = tmp_path / "taken"
    folder.mkdir()
    result = thinct_in_process(capfd, "convert", saved.path, folder)
    assert_one_error(result, 2, str(folder), "--overwrite")
    assert list(folder.iterdir()) == []
    assert_ok(thinct_in_process(capfd, "convert", saved.path, folder, "--overwrite"))
    assert (folder / "model.safetensors").is_file()


def test_convert_reports_a_missing_checkpoint_as_a_usage_error(tmp_path, capfd):
    result = thinct_in_process(capfd, "convert", tmp_path / "absent.pkl", tmp_path / "out")
    assert_one_error(result, 2, "absent.pkl", "no such file")
    assert not (tmp_path / "out").exists()


def test_convert_reports_a_bad_checkpoint_in_one_line(tmp_path, capfd, cthnet_tensors):
    tensors = {n: t for n, t in cthnet_tensors.items() if not n.startswith("conv_last.")}
    path = save_official(tmp_path / "partial.pkl", "cthnet", tensors).path
    result = thinct_in_process(capfd, "convert", path, tmp_path / "out")
    assert_one_error(result, 1, str(path), "lacks head.2.")
    assert not (tmp_path / "out").exists()


def test_convert_of_a_malicious_checkpoint_fails_cleanly_in_a_real_process(tmp_path):
    canary = tmp_path / "CANARY"
    data_pkl, refused = payloads(canary)["posix.system"]
    evil_checkpoint(tmp_path / "evil.pkl", data_pkl)
    result = thinct("convert", "evil.pkl", "out", cwd=tmp_path)
    assert_one_error(result, 1, "evil.pkl", f"refused to load {refused}")
    assert not canary.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pkl"]


# --- the reference weights and the official code's outputs (../shared) ----------------------


def reference(name: str) -> Path:
    """A file of ../shared/reference, skipping the test when ../shared is absent."""
    path = REFERENCE / name
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is only on developer machines and CI)")
    return path


@pytest.mark.parametrize("architecture", ["cthnet", "tvsrn"])
def test_converted_reference_weights_reproduce_the_official_output(tmp_path, capfd, architecture):
    weights = load_file(reference(f"{architecture}_official_random_fp16.safetensors"))
    golden = load_file(reference(f"{architecture}_official_io_64.safetensors"))
    tensors = {n: t.float() if t.is_floating_point() else t for n, t in weights.items()}
    path = save_official(tmp_path / f"{architecture}.pkl", architecture, tensors).path
    assert_ok(thinct_in_process(capfd, "convert", path, tmp_path / "model"))
    model = load_model(tmp_path / "model")
    with torch.no_grad():
        output = model(golden["input"])
    assert output.shape[2] == golden["output"].shape[2] + 6  # every slot; the official drop 3+3
    assert (output[:, :, 3:-3] - golden["output"]).abs().max().item() < 1e-4

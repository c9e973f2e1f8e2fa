"""The one config checker: values converted to their fields' types, bounds read from the
fields' declarations, and every refusal one line naming the value's place."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from thinct.errors import UsageError
from thinct.validation import (
    at_least,
    build,
    check_fields,
    fraction,
    positive,
    unknown_keys,
)


@dataclass(frozen=True)
class Scan:
    path: str
    slices: tuple[float, float] = (0.0, 1.0)
    layout: str | None = None


@dataclass(frozen=True)
class Data:
    scans: tuple[Scan, ...] = ()
    spacing: float = positive(1.0)


@dataclass(frozen=True)
class Recipe:
    output: str
    data: Data = Data()
    steps: int = positive(10)
    seed: int = at_least(0, 0)
    flip: float = fraction(0.5)
    noise: float = at_least(0, 0.0)
    shuffle: bool = True
    device: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sizes:
    depths: tuple[int, ...] = positive((4,))
    window: tuple[int, int, int] = positive((2, 2, 2))
    ratio: float = at_least(0, 4.0)

    def __post_init__(self) -> None:
        check_fields(self, "toy config field")


def refusal(values: Any) -> str:
    with pytest.raises(UsageError) as error:
        build(Recipe, values)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_valid_mapping_is_converted_to_the_declared_types():
    recipe = build(
        Recipe,
        {
            "output": "run",
            "data": {"scans": [{"path": "a.nii", "slices": [0, 0.5]}], "spacing": 2},
            "flip": 1,
            "extra": {"depths": [1, [2, 3]], "name": "x"},
        },
    )
    assert recipe.data.scans == (Scan("a.nii", (0.0, 0.5)),)
    assert type(recipe.data.spacing) is float and type(recipe.flip) is float
    assert recipe.extra == {"depths": (1, (2, 3)), "name": "x"}  # lists frozen to tuples
    assert recipe.steps == 10 and recipe.shuffle is True  # defaults kept


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"output": "run", "data": {"scans": [{"path": "a", "slices": [0, "b"]}]}},
            "data.scans[0].slices[1] = 'b' is not valid (expected a number)",
        ),
        (
            {"output": "run", "data": {"scans": [{"path": "a"}, {"path": 3}]}},
            "data.scans[1].path = 3 is not valid (expected a text)",
        ),
        (
            {"output": "run", "data": {"scans": [{"path": "a"}, {}]}},
            "the config needs data.scans[1].path",
        ),
        (
            {"output": "run", "data": {"scans": [{"path": "a", "colour": 1}]}},
            "unknown key data.scans[0].colour in the config",
        ),
        ({"output": "run", "data": {"scans": ["a"]}}, "data.scans[0] must be a mapping, got 'a'"),
        ({"output": "run", "data": {"scans": "a"}}, "data.scans must be a list"),
        ({"output": "run", "data": 3}, "data must be a mapping, got 3"),
        ({"output": "run", "extra": {1: 2}}, "a key of extra = 1 is not valid (expected a text)"),
    ],
)
def test_nested_places_are_named(values, message):
    assert refusal(values) == message


def test_unknown_and_missing_keys_are_refused():
    assert refusal({"output": "run", "zeta": 1, "alpha": 2}) == "unknown key alpha in the config"
    assert refusal({"seed": 1}) == "the config needs output"
    assert refusal([]) == "the config must be a mapping, got []"
    assert unknown_keys(Recipe, {"zeta": 1, "output": "run", 3: 0}) == [3, "zeta"]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("flip", 1.5, "a fraction from 0 to 1"),
        ("flip", -0.1, "a fraction from 0 to 1"),
        ("steps", 0, "a whole number, 1 or more"),
        ("steps", 2.0, "a whole number, 1 or more"),
        ("steps", True, "a whole number, 1 or more"),
        ("seed", -1, "a whole number, 0 or more"),
        ("noise", -0.5, "a number, 0 or more"),
        ("noise", float("inf"), "a number, 0 or more"),
        ("noise", float("nan"), "a number, 0 or more"),
        ("noise", False, "a number, 0 or more"),
        ("shuffle", 1, "true or false"),
        ("device", 0, "a text like 'auto'"),
    ],
)
def test_values_outside_their_declared_bounds_are_refused(key, value, expected):
    message = refusal({"output": "run", key: value})
    assert message == f"{key} = {value!r} is not valid (expected {expected})"


def test_the_ends_of_a_bound_are_kept_or_refused_as_declared():
    recipe = build(Recipe, {"output": "run", "flip": 0, "noise": 0, "seed": 0, "steps": 1})
    assert (recipe.flip, recipe.noise, recipe.seed, recipe.steps) == (0.0, 0.0, 0, 1)
    assert build(Recipe, {"output": "run", "flip": 1}).flip == 1.0
    assert "expected a positive number" in refusal({"output": "run", "data": {"spacing": 0}})


def test_a_tuple_of_fixed_length_refuses_other_lengths():
    scan = {"path": "a"}
    for slices in ([0.5], [0.1, 0.2, 0.3], 0.5):
        message = refusal({"output": "run", "data": {"scans": [{**scan, "slices": slices}]}})
        assert message == "data.scans[0].slices must be a list of 2 values"


def test_none_is_allowed_only_where_the_type_is_optional():
    values = {"output": "run", "data": {"scans": [{"path": "a", "layout": None}]}}
    assert build(Recipe, values).data.scans[0].layout is None
    assert refusal({"output": None}) == "output = None is not valid (expected a text)"
    assert refusal({"output": "run", "seed": None}).startswith("seed = None is not valid")


def test_check_fields_freezes_lists_and_names_the_field_beside_its_default():
    sizes = Sizes(depths=[1, 2], window=[2, 4, 4], ratio=2)
    assert sizes == Sizes(depths=(1, 2), window=(2, 4, 4), ratio=2.0)
    assert type(sizes.ratio) is float
    for changes, shown in [
        ({"window": [2, 2]}, "window = (2, 2) is not valid (expected a value like (2, 2, 2))"),
        ({"depths": (0,)}, "depths = (0,) is not valid (expected a value like (4,))"),
        ({"depths": 4}, "depths = 4 is not valid (expected a value like (4,))"),
        ({"ratio": -1}, "ratio = -1 is not valid (expected a value like 4.0)"),
    ]:
        with pytest.raises(UsageError) as error:
            Sizes(**changes)
        assert str(error.value) == f"toy config field {shown}"


def test_an_undeclared_type_is_a_programming_error():
    @dataclass(frozen=True)
    class Odd:
        when: complex = 0j

    with pytest.raises(TypeError, match="cannot check a field of type"):
        build(Odd, {"when": 1j})


def test_the_checker_loads_without_torch():
    code = "import sys, thinct.validation; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)

"""Configs checked against their own declarations: values read from a file (a training recipe,
a model's ``config.json``) are converted to what each dataclass field's type hint says and
checked against the bound declared with the field.

A bad value must be one line naming its place (``optim.lr``, ``data.train[0].slices``) before
anything runs, not a traceback from deep inside a network or a training loop. Declaring the
bound where the field is declared (``steps: int = positive(10000)``) keeps the rule beside
the field it governs: no list of field names elsewhere to keep in step, and one checker for
every config. The choices among named options and the rules that tie fields together stay
in each dataclass's ``__post_init__``, which runs after the values are converted.

Type hints understood: ``bool``, ``int``, ``float``, ``str``, ``X | None``, ``tuple[X, ...]``
and fixed-length tuples (lists in the file), ``dict[str, X]``, ``Any`` (kept as read, lists
frozen to tuples) and nested dataclasses, alone or in tuples.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from functools import cache
from typing import Any, TypeVar

from thinct.errors import UsageError

T = TypeVar("T")

# The key of a field's `Bound` in its metadata.
_BOUND = "thinct.validation.bound"


@dataclass(frozen=True)
class Bound:
    """Where a field's numbers must lie: the field's own, or each one in a tuple of them.

    Made by `positive`, `at_least` and `fraction`, whose wording `words` knows.
    """

    low: float
    high: float = math.inf
    strict: bool = False  # the low end itself is refused

    def admits(self, number: float) -> bool:
        above = number > self.low if self.strict else number >= self.low
        return above and number <= self.high

    def words(self, whole: bool) -> str:
        """What the field expects, as an error message says it."""
        if whole:
            return f"a whole number, {self.low + 1 if self.strict else self.low:g} or more"
        if self.high < math.inf:
            return f"a fraction from {self.low:g} to {self.high:g}"
        return "a positive number" if self.strict else f"a number, {self.low:g} or more"


def positive(default: Any = MISSING) -> Any:
    """A field of numbers above 0: a count of at least 1, a size, a rate."""
    return _bounded(Bound(0, strict=True), default)


def at_least(low: float, default: Any = MISSING) -> Any:
    """A field of numbers of at least ``low``."""
    return _bounded(Bound(low), default)


def fraction(default: Any = MISSING) -> Any:
    """A field of numbers from 0 to 1: a probability, a share."""
    return _bounded(Bound(0, 1), default)


def _bounded(bound: Bound, default: Any) -> Any:
    return dataclasses.field(default=default, metadata={_BOUND: bound})


def is_whole(value: Any) -> bool:
    """An integer and not a bool (which Python counts as one): ``true`` is no count."""
    return isinstance(value, int) and not isinstance(value, bool)


def build(cls: type[T], values: Any, place: str = "") -> T:
    """A ``cls`` from a mapping read from a file, every value converted and checked; ``place``
    is where the mapping sits in the file (empty: the whole file, "the config")."""
    values = _mapping(values, place)
    unknown = unknown_keys(cls, values)
    if unknown:
        raise UsageError(f"unknown key {_join(place, unknown[0])} in the config")
    specs = {spec.name: spec for spec in dataclasses.fields(cls)}
    missing = [name for name, spec in specs.items() if _required(spec) and name not in values]
    if missing:
        raise UsageError(f"the config needs {_join(place, missing[0])}")
    hints = _hints(cls)
    return cls(
        **{
            name: _convert(value, hints[name], specs[name], _join(place, name))
            for name, value in values.items()
        }
    )


def check_fields(instance: Any, label: str) -> None:
    """Convert and check, in place, the fields of a frozen dataclass just made from keyword
    arguments: call it first in ``__post_init__``, so that a value from a file or a caller
    that does not fit is refused before the instance is used.

    A field that does not fit is reported whole, beside its default: "``label`` NAME =
    VALUE is not valid (expected a value like DEFAULT)", for readers who know the fields by
    their defaults rather than by a place in a file; VALUE shows lists as the tuples the
    field holds.
    """
    hints = _hints(type(instance))
    for spec in dataclasses.fields(instance):
        value = getattr(instance, spec.name)
        try:
            converted = _convert(value, hints[spec.name], spec, spec.name)
        except UsageError:
            raise UsageError(
                f"{label} {spec.name} = {_frozen(value)!r} is not valid "
                f"(expected a value like {spec.default!r})"
            ) from None
        object.__setattr__(instance, spec.name, converted)


def unknown_keys(cls: type, values: Mapping[Any, Any]) -> list[Any]:
    """The keys of ``values`` that name no field of ``cls``, sorted."""
    names = {spec.name for spec in dataclasses.fields(cls)}
    return sorted((key for key in values if key not in names), key=str)


def _required(spec: dataclasses.Field) -> bool:
    return spec.default is MISSING and spec.default_factory is MISSING


@cache
def _hints(cls: type) -> dict[str, Any]:
    """The field types of ``cls``, resolved once (the modules write them as strings)."""
    return typing.get_type_hints(cls)


def _join(place: str, key: Any) -> str:
    return f"{place}.{key}" if place else str(key)


def _convert(value: Any, hint: Any, spec: dataclasses.Field, place: str) -> Any:
    """``value`` as a field of type ``hint`` holds it, or a `UsageError` naming ``place``;
    ``spec`` is the field, whose bound and default the checks of its parts read."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        (hint,) = (arg for arg in args if arg is not type(None))
        return _convert(value, hint, spec, place)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, place)
    if origin is tuple:
        return _tuple(value, args, spec, place)
    if origin is dict:
        return _dict(value, args, spec, place)
    if hint is Any:
        return _frozen(value)
    return _scalar(value, hint, spec, place)


def _mapping(value: Any, place: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise UsageError(f"{place or 'the config'} must be a mapping, got {value!r}")
    return value


def _tuple(value: Any, args: tuple[Any, ...], spec: dataclasses.Field, place: str) -> tuple:
    """A list (or tuple) as a tuple of ``args``: ``(X, ...)`` any length, else one each."""
    fixed = args[-1] is not Ellipsis
    if not isinstance(value, (list, tuple)) or (fixed and len(value) != len(args)):
        raise UsageError(f"{place} must be a list" + (f" of {len(args)} values" if fixed else ""))
    hints = args if fixed else args[:1] * len(value)
    return tuple(
        _convert(item, hint, spec, f"{place}[{index}]")
        for index, (item, hint) in enumerate(zip(value, hints, strict=True))
    )


def _dict(value: Any, args: tuple[Any, ...], spec: dataclasses.Field, place: str) -> dict:
    key_hint, value_hint = args
    converted = {}
    for key, item in _mapping(value, place).items():
        key = _convert(key, key_hint, spec, f"a key of {place}")
        converted[key] = _convert(item, value_hint, spec, _join(place, key))
    return converted


def _frozen(value: Any) -> Any:
    """A value of no declared type, its lists as tuples: a frozen config holds no lists."""
    return tuple(map(_frozen, value)) if isinstance(value, list) else value


def _scalar(value: Any, hint: Any, spec: dataclasses.Field, place: str) -> Any:
    if hint is bool:
        return _checked(value, isinstance(value, bool), "true or false", place)
    if hint is str:
        like = f" like {spec.default!r}" if isinstance(spec.default, str) else ""
        return _checked(value, isinstance(value, str), "a text" + like, place)
    if hint in (int, float):
        return _number(value, hint, spec.metadata.get(_BOUND), place)
    raise TypeError(f"thinct.validation cannot check a field of type {hint!r} ({place})")


def _number(value: Any, kind: type, bound: Bound | None, place: str) -> int | float:
    """A whole number for ``int``, any finite number for ``float`` (made a float)."""
    whole = kind is int
    fits = is_whole(value) or (not whole and isinstance(value, float) and math.isfinite(value))
    fits = fits and (bound is None or bound.admits(value))
    if bound is not None:
        words = bound.words(whole)
    else:
        words = "a whole number" if whole else "a number"
    return kind(_checked(value, fits, words, place))


def _checked(value: Any, fits: bool, words: str, place: str) -> Any:
    if not fits:
        raise UsageError(f"{place} = {value!r} is not valid (expected {words})")
    return value

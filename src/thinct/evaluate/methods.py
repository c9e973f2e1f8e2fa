"""The methods an evaluation compares: each turns a case's thick scan into a thin one on the
case's grid.

A method is either a classical interpolation (`thinct.resample.interpolation`) or a model run
by the sliding-window engine; either may be followed by the data consistency projection. The
rest of the evaluation only calls ``run`` and reads the name, so every kind is scored and
reported the same way. torch loads only when a model is loaded or run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from thinct.data.cases import Case
from thinct.errors import UsageError
from thinct.inference.options import InferenceOptions
from thinct.resample.consistency import enforce_consistency
from thinct.resample.interpolation import METHODS, interpolate
from thinct.volume import Volume

# The method every other one is compared to in the summary.
BASELINE = "bspline"


@dataclass(frozen=True)
class EvaluatedMethod:
    """A way to make a case's thin scan: ``run`` returns it on ``case.grid``."""

    name: str
    run: Callable[[Case], Volume]
    is_model: bool = False


def baseline(name: str) -> EvaluatedMethod:
    """A classical interpolation (nearest, linear, bspline, lanczos) as a method."""
    if name not in METHODS:
        raise UsageError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return EvaluatedMethod(name, lambda case: interpolate(case.thick, case.grid, method=name))


def model_method(model: Any, name: str, options: InferenceOptions | None = None) -> EvaluatedMethod:
    """A model run by the sliding-window engine as a method."""

    def run(case: Case) -> Volume:
        from thinct.inference.engine import upsample_with_model

        return upsample_with_model(case.thick, case.grid, model, options)

    return EvaluatedMethod(name, run, is_model=True)


def with_consistency(
    method: EvaluatedMethod, profile: str
) -> tuple[EvaluatedMethod, EvaluatedMethod]:
    """``method`` and, to run right after it on the same case, its output made consistent
    for ``profile`` (named ``METHOD+PROFILE``): what `thinct upsample --consistency PROFILE`
    makes. The second takes the first's output instead of running it again, so its seconds
    are those the projection adds."""
    kept: dict[str, Volume] = {}  # the last case's output, until the projection takes it

    def run_and_keep(case: Case) -> Volume:
        kept.clear()
        kept[case.name] = volume = method.run(case)
        return volume

    def project(case: Case) -> Volume:
        return enforce_consistency(kept.pop(case.name), case.thick, case.grid, profile=profile)

    return (
        EvaluatedMethod(method.name, run_and_keep, method.is_model),
        EvaluatedMethod(f"{method.name}+{profile}", project, method.is_model),
    )


def load_models(specs: Sequence[str | None], options: InferenceOptions) -> list[tuple[str, Any]]:
    """(name, model) for each spec, checked against the engine options."""
    from thinct.inference.engine import load_checked_model
    from thinct.models import model_display_name

    return [(model_display_name(spec), load_checked_model(spec, options)) for spec in specs]

"""Cheap argument checks shared by the distributions and samplers (one-line user-facing errors)."""

from __future__ import annotations

import math

import torch
from torch.distributions import constraints

from spikelatent._checks import check_int
from spikelatent.errors import SpikelatentError


class _OpenInterval(constraints.Constraint):
    """Constrain to the open interval ``(lower, upper)`` (torch ships only closed/half-open ones)."""

    def __init__(self, lower_bound: float, upper_bound: float) -> None:
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return (self.lower_bound < value) & (value < self.upper_bound)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__[1:]}(lower_bound={self.lower_bound}, upper_bound={self.upper_bound})"


open_unit_interval = _OpenInterval(0.0, 1.0)


def _summary(values: torch.Tensor, bad: torch.Tensor) -> str:
    """Describe the offending entries briefly (min/max of the finite ones, or the non-finite value)."""
    offending = values.detach()[bad]
    non_finite = offending[~torch.isfinite(offending)]
    if non_finite.numel():
        return f"got non-finite value {non_finite[0].item()}"
    return f"got min {offending.min().item():.6g}, max {offending.max().item():.6g} among {int(bad.sum())} bad entries"


def check_positive(owner: str, name: str, values: torch.Tensor) -> None:
    bad = ~(torch.isfinite(values) & (values > 0))
    if bad.any():
        raise SpikelatentError(f"{owner}: {name} must be > 0 and finite; {_summary(values, bad)}")


def check_nonnegative(owner: str, name: str, values: torch.Tensor) -> None:
    bad = ~(torch.isfinite(values) & (values >= 0))
    if bad.any():
        raise SpikelatentError(f"{owner}: {name} must be >= 0 and finite; {_summary(values, bad)}")


def check_open_unit(owner: str, name: str, values: torch.Tensor) -> None:
    bad = ~((values > 0) & (values < 1))
    if bad.any():
        raise SpikelatentError(
            f"{owner}: {name} must lie strictly inside (0, 1); {_summary(values, bad)} "
            "(pass logits= instead of probs= to keep p away from 0 and 1)"
        )


def check_finite(owner: str, name: str, values: torch.Tensor) -> None:
    bad = ~torch.isfinite(values)
    if bad.any():
        raise SpikelatentError(f"{owner}: {name} must be finite; {_summary(values, bad)}")


def check_choice(owner: str, name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a one-line error listing them."""
    if value not in choices:
        raise SpikelatentError(
            f"{owner}: {name} must be one of {', '.join(map(repr, choices))}; got {value!r}"
        )
    return value


def _as_float(owner: str, name: str, value: object, expected: str) -> float:
    """``float(value)``, or a one-line error saying a number ``expected`` is needed."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SpikelatentError(f"{owner}: {name} must be a number {expected}; got {value!r}") from None


def check_temperature(owner: str, temperature: float) -> float:
    """Temperature is a Python number, so this check costs nothing and is always on."""
    value = _as_float(owner, "temperature", temperature, "> 0")
    if not (math.isfinite(value) and value > 0):
        raise SpikelatentError(f"{owner}: temperature must be > 0 and finite; got {value}")
    return value


def check_tolerance(owner: str, tolerance: float) -> float:
    value = _as_float(owner, "tolerance", tolerance, "in (0, 1)")
    if not (0.0 < value < 1.0):
        raise SpikelatentError(f"{owner}: tolerance must lie in (0, 1), e.g. 1e-4; got {value}")
    return value


def check_max_support(owner: str, max_support: int, minimum: int = 1) -> int:
    return check_int(max_support, "max_support", minimum, owner=owner)

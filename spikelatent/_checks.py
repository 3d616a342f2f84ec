"""Checks shared across layers, each written once: integer options and pixel ranges
(one-line :class:`~spikelatent.errors.SpikelatentError` messages)."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

from spikelatent.errors import SpikelatentError


def check_int(value: Any, name: str, minimum: int | None = None, owner: str | None = None) -> int:
    """``value`` as an ``int`` when it is an integer (Python, numpy or a 0-d integer tensor) of at
    least ``minimum``; otherwise a one-line :class:`~spikelatent.errors.SpikelatentError`,
    ``"[owner: ]name must be an integer >= minimum; got value"``. Bools and floats are refused,
    even integral ones (``2.0``): an option that takes a count says so."""
    prefix = f"{owner}: " if owner else ""
    bound = f" >= {minimum}" if minimum is not None else ""
    try:
        if isinstance(value, bool):
            raise TypeError
        integer = operator.index(value)
    except TypeError:
        raise SpikelatentError(f"{prefix}{name} must be an integer{bound}; got {value!r}") from None
    if minimum is not None and integer < minimum:
        raise SpikelatentError(f"{prefix}{name} must be an integer{bound}; got {value!r}")
    return integer


def check_data_range(data_range: Sequence[float]) -> tuple[float, float]:
    """A ``(low, high)`` pixel range as floats, finite with ``low < high``, or a one-line error."""
    try:
        low, high = (float(value) for value in data_range)
    except (TypeError, ValueError):
        raise SpikelatentError(
            f"data_range must be two numbers (low, high) such as (0, 1) or (-1, 1); got {data_range!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise SpikelatentError(
            f"data_range must be finite with low < high, such as (0, 1) or (-1, 1); got {data_range!r}"
        )
    return low, high

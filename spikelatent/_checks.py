"""The one integer check behind every user-facing integer option (one-line errors)."""

from __future__ import annotations

import operator
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

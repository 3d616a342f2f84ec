"""Sparsity of latent activity: Treves–Rolls / Vinje–Gallant index, zero fraction, active units.

Sparsity over m non-negative entries z_1..z_m (Vinje & Gallant 2000):

    S = [1 − (Σz)² / (m Σz²)] / (1 − 1/m)

S = 0 for a constant (dense) vector, S = 1 for a one-hot vector. It is undefined (0/0) when every
entry is zero: those results are NaN (reason in the result's ``nan_reason`` attribute). m = 1 is an error.

* lifetime sparsity: over stimuli, one value per unit (how selective a unit is);
* population sparsity: over units, one value per stimulus (how few units respond to a stimulus).

By default the activity is first averaged over trials (``average="trial"``: the mean response); in the
recorded layout ``(trial, unit)`` with a ``stimulus`` coordinate along ``trial`` the average is taken
within each stimulus, so both layouts give per-stimulus responses. Pass ``average=None`` to compute the
index on every single trial instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import xarray as xr

from spikelatent.analysis._layout import (
    as_dataarray,
    average_trials,
    require_dims,
    require_nonnegative,
    resolve_reduction_dims,
)
from spikelatent.errors import SpikelatentError

__all__ = [
    "treves_rolls_sparsity",
    "lifetime_sparsity",
    "population_sparsity",
    "fraction_zero",
    "active_units",
]

ALL_ZERO_REASON = (
    "NaN where every entry is zero: sparsity 0/0 is undefined for a silent unit/stimulus"
)


def treves_rolls_sparsity(x: xr.DataArray, over: str) -> xr.DataArray:
    """Sparsity index over dim ``over`` (see module docstring); other dims are kept.

    ``x`` must be non-negative; NaN entries are not allowed (mask them out first).
    """
    x = as_dataarray(x, "activity")
    require_dims(x, [over], "sparsity")
    require_nonnegative(x, "activity")
    if np.isnan(np.asarray(x.values, dtype=np.float64)).any():
        raise SpikelatentError(
            "sparsity input contains NaN; drop or fill the missing entries first"
        )
    m = x.sizes[over]
    if m < 2:
        raise SpikelatentError(f"sparsity needs at least 2 entries along {over!r}, got {m}")
    z = x.astype(np.float64)
    total = z.sum(over)
    total_squares = (z**2).sum(over)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = total**2 / (m * total_squares)
    sparsity = ((1.0 - ratio) / (1.0 - 1.0 / m)).where(total_squares > 0)
    # Rounding can push a one-hot/constant vector a hair outside [0, 1].
    sparsity = sparsity.clip(0.0, 1.0)
    return sparsity.rename("sparsity").assign_attrs(over=over, m=m, nan_reason=ALL_ZERO_REASON)


def lifetime_sparsity(
    x: xr.DataArray,
    over: str = "stimulus",
    average: str | None = "trial",
    group_by: str = "stimulus",
) -> xr.DataArray:
    """Lifetime (selectivity) sparsity of each unit over stimuli.

    Args:
        x: counts ``(trial, stimulus, unit)``, rates ``(stimulus, unit)``, or recorded ``(trial, unit)``
            with a ``stimulus`` coordinate along ``trial``; non-negative.
        over: the stimulus dim.
        average: dim to average over first (ignored if absent); ``None`` keeps single trials.
        group_by: coordinate along ``average`` that names the stimulus in the recorded layout.

    Returns:
        DataArray ``lifetime_sparsity`` over the remaining dims (usually ``(unit,)``), in [0, 1] or NaN.
    """
    x = as_dataarray(x, "counts")
    x = average_trials(x, average, group_by)
    return treves_rolls_sparsity(x, over).rename("lifetime_sparsity")


def population_sparsity(
    x: xr.DataArray, over: str = "unit", average: str | None = "trial", group_by: str = "stimulus"
) -> xr.DataArray:
    """Population sparsity of each stimulus's response over units (arguments as :func:`lifetime_sparsity`).

    Returns:
        DataArray ``population_sparsity`` over the remaining dims (usually ``(stimulus,)``).
    """
    x = as_dataarray(x, "counts")
    x = average_trials(x, average, group_by)
    return treves_rolls_sparsity(x, over).rename("population_sparsity")


def fraction_zero(
    counts: xr.DataArray, over: str | Iterable[str] = ("trial", "stimulus")
) -> xr.DataArray:
    """Fraction of entries equal to zero over the dims ``over`` (default: all trials and stimuli, per unit).

    A name in ``over`` that is only a coordinate along another reduced dim (``stimulus`` in the
    recorded layout) is covered by that dim.
    """
    counts = as_dataarray(counts, "counts")
    require_nonnegative(counts, "counts")
    dims = resolve_reduction_dims(counts, over, "fraction_zero")
    return (counts == 0).mean(dims).rename("fraction_zero").assign_attrs(over=list(dims))


def active_units(
    x: xr.DataArray,
    threshold: float = 0.0,
    over: str | Iterable[str] = ("trial", "stimulus"),
) -> xr.Dataset:
    """Which units carry activity.

    Definitions (per unit, over the dims ``over``):

    * ``dead``: mean activity ≤ ``threshold`` (with the default 0: never fires);
    * ``constant``: not dead, but the activity never varies (same value in every entry), so it
      carries no information about the stimulus;
    * ``active``: neither dead nor constant.

    Returns:
        Dataset with ``active``, ``dead``, ``constant`` (bool) and ``mean_activity`` per unit, and
        scalars ``n_active``, ``n_dead``, ``n_constant``, ``fraction_active``.
    """
    x = as_dataarray(x, "counts")
    require_nonnegative(x, "activity")
    if not np.isfinite(threshold) or threshold < 0:
        raise SpikelatentError(f"threshold must be a non-negative number, got {threshold}")
    dims = resolve_reduction_dims(x, over, "active_units")
    values = x.astype(np.float64)
    mean_activity = values.mean(dims)
    dead = mean_activity <= threshold
    constant = (~dead) & (values.max(dims) == values.min(dims))
    active = (~dead) & (~constant)
    n_units = int(active.size)
    return xr.Dataset(
        {
            "active": active.rename("active"),
            "dead": dead.rename("dead"),
            "constant": constant.rename("constant"),
            "mean_activity": mean_activity.rename("mean_activity"),
            "n_active": xr.DataArray(int(active.sum())),
            "n_dead": xr.DataArray(int(dead.sum())),
            "n_constant": xr.DataArray(int(constant.sum())),
            "fraction_active": xr.DataArray(float(active.sum()) / n_units if n_units else np.nan),
        },
        attrs={"threshold": threshold, "over": list(dims)},
    )

"""Pairwise spike-count correlations: noise correlations (with a shuffle control) and signal correlations.

A *condition* is one entry of every dim other than ``over`` (trials) and ``unit``, e.g. a
stimulus, or a (stimulus, time bin) pair; in the recorded layout the trials are first grouped by
the ``group_by`` coordinate. Noise correlations are the Pearson correlations of the trial-to-trial
fluctuations around each condition's mean; signal correlations those of the condition means.
Results are ``(unit, other_unit)`` matrices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from spikelatent._checks import check_int
from spikelatent.analysis._layout import (
    as_dataarray,
    group_along,
    is_grouping_coord,
    require_dims,
    require_nonnegative,
)
from spikelatent.analysis.overdispersion import _check_probability
from spikelatent.errors import SpikelatentError

__all__ = ["noise_correlations", "signal_correlations", "trial_condition_unit"]


def trial_condition_unit(
    counts: Any, over: str = "trial", group_by: str | None = "stimulus"
) -> tuple[np.ndarray, xr.DataArray]:
    """Counts as a float ``(trial, condition, unit)`` array (NaN where a condition lacks a trial).

    Returns the array and the ``unit`` coordinate.
    """
    counts = as_dataarray(counts, "counts")
    require_dims(counts, [over, "unit"], "correlations")
    require_nonnegative(counts, "counts")
    if is_grouping_coord(counts, group_by, over):
        counts = group_along(counts, over, group_by)
    conditions = [d for d in counts.dims if d not in (over, "unit")]
    moved = counts.transpose(over, *conditions, "unit")
    values = np.asarray(moved.values, dtype=np.float64)
    return values.reshape(values.shape[0], -1, values.shape[-1]), moved["unit"]


def _correlation(samples: np.ndarray) -> np.ndarray:
    """Pearson correlation matrix of the columns of ``samples`` (sample, unit); NaN for constant units."""
    centred = samples - samples.mean(axis=0)
    norm = np.sqrt(np.einsum("ij,ij->j", centred, centred))
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = centred / norm
    correlation = scaled.T @ scaled
    np.fill_diagonal(correlation, np.where(norm > 0, 1.0, np.nan))
    return correlation


def _residuals(values: np.ndarray, zscore: bool) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        residual = values - np.nanmean(values, axis=0, keepdims=True)
        if zscore:
            spread = np.nanstd(values, axis=0, ddof=1, keepdims=True)
            residual = np.where(spread > 0, residual / spread, 0.0)
    return residual


def _pairs(unit: xr.DataArray, matrix: np.ndarray, name: str, attrs: dict) -> xr.DataArray:
    return xr.DataArray(
        matrix,
        dims=("unit", "other_unit"),
        coords={"unit": unit.values, "other_unit": unit.values},
        name=name,
        attrs=attrs,
    )


def _linear_quantile(
    extremes: np.ndarray, n_finite: np.ndarray, tail: float, defined: np.ndarray
) -> np.ndarray:
    """numpy's linear quantile at ``tail`` (of the smallest) from the k extreme values per pair.

    ``extremes`` (k, unit, unit): the smallest values in ascending order, or the largest in
    descending order (their quantile at ``1 - tail``); ``n_finite`` values per pair in all.
    The quantile's virtual index from that end is ``(n − 1)·tail``, and interpolation uses the
    values at its floor and the next one, both among the k kept.
    """
    position = np.maximum(n_finite - 1, 0) * tail
    below = np.floor(position).astype(np.int64)
    fraction = position - below
    k = extremes.shape[0]
    first = np.take_along_axis(extremes, np.minimum(below, k - 1)[None], axis=0)[0].astype(np.float64)
    second = np.take_along_axis(extremes, np.minimum(below + 1, k - 1)[None], axis=0)[0].astype(
        np.float64
    )
    second = np.where(below + 1 < n_finite, second, first)
    with np.errstate(invalid="ignore"):
        value = first + fraction * (second - first)
    return np.where(defined, value, np.nan)


def _upper_mean(matrix: np.ndarray) -> float:
    upper = matrix[np.triu_indices_from(matrix, k=1)]
    upper = upper[np.isfinite(upper)]
    return float(upper.mean()) if upper.size else float("nan")


def noise_correlations(
    counts: xr.DataArray,
    over: str = "trial",
    group_by: str | None = "stimulus",
    *,
    zscore: bool = True,
    n_shuffles: int = 100,
    confidence: float = 0.95,
    seed: int = 0,
) -> xr.Dataset:
    """Noise correlations: correlations of spike counts after removing each condition's mean.

    Within every condition each unit's counts are centred on their trial mean (and, with
    ``zscore``, divided by their trial standard deviation, so that high-rate conditions do not
    dominate); the fluctuations of all conditions are pooled and correlated pair by pair.
    The shuffle control permutes the trials of every unit independently within each condition,
    which keeps every unit's condition means and variability and destroys only the trial-by-trial
    co-fluctuation: its distribution is the null of "no noise correlation".

    Args:
        counts: spike counts with dims ``over`` and ``unit``, e.g. ``(trial, stimulus, unit)``,
            ``(trial, time, unit)`` or recorded ``(trial, unit)`` with a ``stimulus`` coordinate.
        over: dim of repeated trials.
        group_by: coordinate along ``over`` grouping trials into conditions (recorded layout).
        zscore: z-score within each condition (default) rather than only centring.
        n_shuffles: shuffles of the control (0: none).
        confidence: coverage of the shuffle intervals.
        seed: seed of the shuffles.

    Returns:
        Dataset with ``noise_correlation`` (unit, other_unit); ``shuffle_ci_low``/``shuffle_ci_high``
        (unit, other_unit: central interval of the shuffled correlations) and ``p_value``
        (two-sided shuffle p-value); scalars ``mean_noise_correlation`` (over pairs i < j) and
        ``shuffle_mean_ci_low``/``shuffle_mean_ci_high``; ``n_samples`` (trial × condition rows).
        Pairs with a unit whose counts never vary (a silent unit) are NaN throughout, without a
        warning (attrs ``undefined_pairs``).
    """
    _check_probability(confidence, "confidence")
    n_shuffles = check_int(n_shuffles, "n_shuffles", minimum=0)
    values, unit = trial_condition_unit(counts, over, group_by)
    if values.shape[0] < 2:
        raise SpikelatentError(f"noise correlations need at least 2 entries along {over!r}")
    if values.shape[-1] < 2:
        raise SpikelatentError("noise correlations need at least 2 units")
    residual = _residuals(values, zscore)
    valid = np.isfinite(values).all(axis=-1)  # (trial, condition): padded trials are dropped
    observed = _correlation(residual[valid])
    data = {
        "noise_correlation": _pairs(
            unit, observed, "noise_correlation", {"long_name": "noise correlation (Pearson)"}
        ),
        "mean_noise_correlation": xr.DataArray(_upper_mean(observed)),
        "n_samples": xr.DataArray(int(valid.sum())),
    }
    if n_shuffles:
        rng = np.random.default_rng(seed)
        n_unit = values.shape[-1]
        tail = (1 - confidence) / 2
        # The null is never held whole (50 shuffles of 3,000 units would be 1.8 GB): per pair,
        # only the k smallest and k largest shuffled correlations that numpy's linear quantile
        # at `tail` and `1 - tail` can use, the exceedance count and the per-shuffle means.
        k = min(int(n_shuffles), int(np.floor((int(n_shuffles) - 1) * tail)) + 2)
        lowest = np.full((k, n_unit, n_unit), np.inf, dtype=np.float32)
        highest = np.full((k, n_unit, n_unit), -np.inf, dtype=np.float32)
        n_finite = np.zeros((n_unit, n_unit), dtype=np.int64)
        exceed = np.zeros((n_unit, n_unit), dtype=np.int64)
        null_means = np.empty(int(n_shuffles))
        threshold = np.abs(observed)
        # Rows with a missing value (padded trials, or time a unit was not observed) sort last for
        # every unit, so a shuffle only moves complete rows among themselves; the first
        # n_valid rows of each condition are then the complete ones.
        padding = np.where(valid, 0.0, 2.0)[..., None]
        first = np.arange(values.shape[0])[:, None] < valid.sum(axis=0)[None, :]
        for s in range(int(n_shuffles)):
            order = np.argsort(rng.random(values.shape) + padding, axis=0)
            shuffled = np.take_along_axis(residual, order, axis=0)
            null = _correlation(shuffled[first]).astype(np.float32)
            finite = np.isfinite(null)
            n_finite += finite
            exceed += np.abs(null.astype(np.float64)) >= threshold
            null_means[s] = _upper_mean(null.astype(np.float64))
            lowest = np.sort(np.concatenate([lowest, np.where(finite, null, np.inf)[None]]), axis=0)[:k]
            highest = -np.sort(
                np.concatenate([-highest, np.where(finite, -null, np.inf)[None]]), axis=0
            )[:k]
        # A pair with a unit whose residuals never vary (e.g. a unit that never fires) has no
        # correlation in any shuffle: its interval and p-value are NaN by design (attrs say so).
        defined = (n_finite > 0) & np.isfinite(observed)
        low = _linear_quantile(lowest, n_finite, tail, defined)
        high = _linear_quantile(highest, n_finite, tail, defined)
        p_value = np.where(defined, (1 + exceed) / (1 + int(n_shuffles)), np.nan)
        data["shuffle_ci_low"] = _pairs(unit, low, "shuffle_ci_low", {})
        data["shuffle_ci_high"] = _pairs(unit, high, "shuffle_ci_high", {})
        data["p_value"] = _pairs(unit, p_value, "p_value", {"test": "shuffle, two-sided"})
        data["shuffle_mean_ci_low"] = xr.DataArray(float(np.quantile(null_means, tail)))
        data["shuffle_mean_ci_high"] = xr.DataArray(float(np.quantile(null_means, 1 - tail)))
    return xr.Dataset(
        data,
        attrs={
            "over": over,
            "zscore": bool(zscore),
            "n_shuffles": int(n_shuffles),
            "confidence": confidence,
            "control": "trials permuted independently per unit within each condition",
            "undefined_pairs": "NaN correlation, shuffle interval and p-value for a pair with a "
                               "unit whose counts never vary around its condition means "
                               "(e.g. a unit that never fires)",
        },
    )


def signal_correlations(
    counts: xr.DataArray, over: str = "trial", group_by: str | None = "stimulus"
) -> xr.Dataset:
    """Signal correlations: correlations across conditions of every unit's trial-mean count.

    Returns:
        Dataset with ``signal_correlation`` (unit, other_unit), ``mean_signal_correlation`` (over
        pairs i < j) and ``n_conditions``.
    """
    values, unit = trial_condition_unit(counts, over, group_by)
    if values.shape[1] < 2:
        raise SpikelatentError(
            "signal correlations need at least 2 conditions (stimuli or time bins)"
        )
    with np.errstate(invalid="ignore"):
        tuning = np.nanmean(values, axis=0)  # (condition, unit)
    matrix = _correlation(tuning)
    return xr.Dataset(
        {
            "signal_correlation": _pairs(
                unit, matrix, "signal_correlation", {"long_name": "signal correlation (Pearson)"}
            ),
            "mean_signal_correlation": xr.DataArray(_upper_mean(matrix)),
            "n_conditions": xr.DataArray(int(values.shape[1])),
        },
        attrs={"over": over},
    )

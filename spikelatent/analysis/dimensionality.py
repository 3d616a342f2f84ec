"""Linear dimensionality of a population: the participation ratio of the count covariance.

``PR = (Σ λ_i)² / Σ λ_i² = tr(C)² / tr(C²)`` for the eigenvalues λ of the unit-by-unit covariance
C: 1 when one direction holds all the variance, the number of units when all directions hold
equal variance (Gao et al. 2017). It complements the shattering dimensionality
(:func:`spikelatent.analysis.shattering_dimensionality`), which counts linearly separable class
dichotomies instead.

**Why not the plug-in ratio and a bootstrap.** Sampling noise spreads the eigenvalues of a sample
covariance S, so ``tr(S²)`` overestimates ``tr(C²)`` (by about ``tr(C)²/m`` for m degrees of
freedom) and the plug-in ``tr(S)²/tr(S²)`` is biased low, by a tenth with 256 units and 2,000
samples. A bootstrap resample repeats rows, which lowers the dimensionality again: the
resampled ratios sit below the estimate, and their percentile interval excluded its own estimate
(and the truth) every time (issue 36). Here instead:

* the estimate is the ratio of the unbiased estimates of ``tr(C)²`` and ``tr(C²)`` for normal
  samples (Srivastava 2005; from ``E tr(S²) = (1 + 1/m) tr(C²) + tr(C)²/m`` and
  ``E tr(S)² = tr(C)² + 2 tr(C²)/m``); for counts the remaining (fourth-cumulant) bias is of order
  1/units of the correction;
* its interval is the delete-a-group jackknife (Efron & Tibshirani 1993, ch. 11): the estimate
  recomputed with each of G groups of trials left out (for ``kind="signal"``, groups of
  conditions), standard error ``sqrt((G−1)/G Σ (θ₋g − θ̄)²)`` and a t interval with G−1 degrees of
  freedom. Leaving data out never duplicates a row, so the replicates are not biased against the
  estimate; every leave-out estimate comes from the same scatter matrices updated in O(units²)
  per group, so the interval costs about as much as the estimate.

Coverage is checked by simulation in ``benchmarks/participation_ratio_coverage.py``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import stats

from spikelatent._checks import check_int
from spikelatent.analysis.correlations import trial_condition_unit
from spikelatent.analysis.overdispersion import _check_probability
from spikelatent.errors import SpikelatentError

__all__ = ["participation_ratio", "participation_ratio_estimates"]

_KINDS = ("total", "noise", "signal")


def participation_ratio_estimates(scatter: np.ndarray, dof: float) -> tuple[float, float]:
    """``(bias-corrected, plug-in)`` participation ratios of a scatter matrix.

    Args:
        scatter: ``(unit, unit)`` sum of outer products of the centred samples.
        dof: its degrees of freedom m (samples minus estimated means); ``S = scatter / m``.

    Returns:
        The ratio of the normal-theory unbiased estimates of ``tr(C)²`` and ``tr(C²)``, and the
        plug-in ``tr(S)² / tr(S²)``; NaN when undefined (no variance, or m < 2).
    """
    if dof < 2:
        return float("nan"), float("nan")
    covariance = scatter / dof
    squares = float(np.sum(covariance * covariance))  # tr(S²) of a symmetric S
    total_squared = float(np.trace(covariance)) ** 2
    if not squares > 0:
        return float("nan"), float("nan")
    trace_of_square = dof * (dof * squares - total_squared) / ((dof + 2) * (dof - 1))
    square_of_trace = total_squared - 2 * trace_of_square / dof
    corrected = square_of_trace / trace_of_square if trace_of_square > 0 else float("nan")
    return corrected, total_squared / squares


class _Scatter:
    """Scatter matrices around per-condition means, with any group of rows left out.

    ``rows`` (n, unit) float64, ``condition`` (n,) ints (one mean is estimated per condition),
    ``group`` (n,) ints in 0..G−1. Sums are kept per condition and overall, so leaving a group
    out costs one (rows of the group) and one (conditions × unit²) product.
    """

    def __init__(self, rows: np.ndarray, condition: np.ndarray, group: np.ndarray) -> None:
        self.rows, self.condition, self.group = rows, condition, group
        self.n_conditions = int(condition.max()) + 1
        self.outer = rows.T @ rows
        self.sums = np.zeros((self.n_conditions, rows.shape[1]))
        np.add.at(self.sums, condition, rows)
        self.sizes = np.bincount(condition, minlength=self.n_conditions).astype(np.float64)

    @staticmethod
    def _between(sums: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        kept = sizes > 0
        scaled = sums[kept] / np.sqrt(sizes[kept])[:, None]
        return scaled.T @ scaled

    def whole(self) -> tuple[np.ndarray, float]:
        """Scatter of every row and its degrees of freedom (rows − conditions)."""
        scatter = self.outer - self._between(self.sums, self.sizes)
        return scatter, float(self.sizes.sum() - np.count_nonzero(self.sizes))

    def without(self, g: int) -> tuple[np.ndarray, float]:
        """Scatter and degrees of freedom with the rows of group ``g`` left out."""
        members = self.group == g
        rows, condition = self.rows[members], self.condition[members]
        sums = self.sums.copy()
        np.subtract.at(sums, condition, rows)
        sizes = self.sizes - np.bincount(condition, minlength=self.n_conditions)
        scatter = self.outer - rows.T @ rows - self._between(sums, sizes)
        return scatter, float(sizes.sum() - np.count_nonzero(sizes))


def _blocks(n: int, n_groups: int) -> np.ndarray:
    """Group index of each of ``n`` positions: ``n_groups`` contiguous blocks of equal size ±1."""
    return np.repeat(np.arange(n_groups), [len(b) for b in np.array_split(np.arange(n), n_groups)])


def participation_ratio(
    counts: xr.DataArray,
    over: str = "trial",
    group_by: str | None = "stimulus",
    *,
    kind: str = "total",
    n_groups: int = 20,
    confidence: float = 0.95,
    n_boot: int | None = None,
) -> xr.Dataset:
    """Participation ratio of the unit-by-unit covariance of spike counts, with a jackknife interval.

    Args:
        counts: spike counts with dims ``over`` and ``unit``; every other dim (or the ``group_by``
            coordinate along ``over``) indexes conditions, e.g. ``(trial, stimulus, unit)``,
            ``(time, unit)`` or ``(trial, time, unit)``.
        over: dim of repeated trials (or time bins).
        group_by: coordinate along ``over`` grouping trials into conditions (recorded layout).
        kind: ``"total"``: covariance over all (trial, condition) samples; ``"noise"``: of the
            fluctuations around each condition's mean (one mean per condition estimated, so
            ``samples − conditions`` degrees of freedom); ``"signal"``: of the condition means.
        n_groups: jackknife groups G (contiguous blocks of ``over``; of conditions for
            ``"signal"``), at most the number of trials (conditions); 0: no interval.
        confidence: coverage of the interval.
        n_boot: removed (the bootstrap interval missed its own estimate); only ``0``, meaning no
            interval, is still accepted.

    Returns:
        Dataset with scalars ``participation_ratio`` (the bias-corrected estimate, clipped to
        [1, units]), ``participation_ratio_plugin`` (``tr(S)²/tr(S²)``, biased low),
        ``ci_low``/``ci_high`` (jackknife t interval, clipped to [1, units]), ``standard_error``,
        ``n_samples``, ``n_units``, ``dof`` and ``n_groups``. Rows with a missing value (time a
        unit was not observed) are left out.
    """
    _check_probability(confidence, "confidence")
    if kind not in _KINDS:
        raise SpikelatentError(f"unknown kind {kind!r}; use one of {', '.join(_KINDS)}")
    if n_boot is not None:
        if n_boot != 0:
            raise SpikelatentError(
                "participation_ratio's interval is a jackknife now (a bootstrap interval missed "
                "its own estimate); pass n_groups=G instead of n_boot"
            )
        n_groups = 0
    n_groups = check_int(n_groups, "n_groups", minimum=0)
    values, _ = trial_condition_unit(counts, over, group_by)  # (trial, condition, unit)
    n_trial, n_condition, n_unit = values.shape
    if kind == "signal":
        with np.errstate(invalid="ignore"):
            means = np.nanmean(values, axis=0)
        keep = np.isfinite(means).all(axis=-1)
        rows = means[keep]
        condition = np.zeros(len(rows), dtype=np.int64)
        position = np.arange(len(rows))  # groups of conditions
    else:
        valid = np.isfinite(values).all(axis=-1)  # (trial, condition)
        trial_index, condition_index = np.nonzero(valid)
        rows = values[trial_index, condition_index]
        condition = condition_index if kind == "noise" else np.zeros(len(rows), dtype=np.int64)
        position = trial_index  # groups of trials
    if rows.shape[0] < 2 or n_unit < 1:
        raise SpikelatentError(
            f"participation ratio needs at least 2 samples and 1 unit; got {rows.shape}"
        )
    n_positions = int(position.max()) + 1
    n_groups = min(n_groups, n_positions)
    group = _blocks(n_positions, max(n_groups, 1))[position]
    scatter = _Scatter(rows.astype(np.float64), condition, group)
    whole, dof = scatter.whole()
    if dof < 2:
        raise SpikelatentError(
            f"participation ratio ({kind}) needs at least 2 degrees of freedom (samples minus "
            f"conditions); got {dof:g}"
        )
    corrected, plugin = participation_ratio_estimates(whole, dof)
    low = high = error = float("nan")
    if n_groups >= 2:
        left_out = np.array(
            [participation_ratio_estimates(*scatter.without(g))[0] for g in range(n_groups)]
        )
        if np.all(np.isfinite(left_out)):
            error = float(np.sqrt((n_groups - 1) / n_groups * np.sum((left_out - left_out.mean()) ** 2)))
            half = float(stats.t.ppf(0.5 + confidence / 2, n_groups - 1)) * error
            low, high = corrected - half, corrected + half
    clip = (lambda v: float(np.clip(v, 1.0, n_unit)) if np.isfinite(v) else v)  # noqa: E731
    return xr.Dataset(
        {
            "participation_ratio": xr.DataArray(clip(corrected)),
            "participation_ratio_plugin": xr.DataArray(plugin),
            "ci_low": xr.DataArray(clip(low)),
            "ci_high": xr.DataArray(clip(high)),
            "standard_error": xr.DataArray(error),
            "n_samples": xr.DataArray(int(rows.shape[0])),
            "n_units": xr.DataArray(int(n_unit)),
            "dof": xr.DataArray(dof),
            "n_groups": xr.DataArray(int(n_groups)),
        },
        attrs={
            "kind": kind,
            "over": over,
            "confidence": confidence,
            "estimate": "ratio of the normal-theory unbiased estimates of tr(C)^2 and tr(C^2) "
            "(Srivastava 2005), clipped to [1, units]",
            "interval": f"delete-a-group jackknife over {n_groups} contiguous groups of "
            + ("conditions" if kind == "signal" else over)
            + ", t interval with G-1 degrees of freedom",
        },
    )

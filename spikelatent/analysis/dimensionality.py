"""Linear dimensionality of a population: the participation ratio of the count covariance.

``PR = (Σ λ_i)² / Σ λ_i² = tr(C)² / tr(C²)`` for the eigenvalues λ of the unit-by-unit covariance
C: 1 when one direction holds all the variance, the number of units when all directions hold
equal variance (Gao et al. 2017). It complements the shattering dimensionality
(:func:`spikelatent.analysis.shattering_dimensionality`), which counts linearly separable class
dichotomies instead.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from spikelatent._checks import check_int
from spikelatent.analysis.correlations import _residuals, trial_condition_unit
from spikelatent.analysis.overdispersion import _check_probability
from spikelatent.errors import SpikelatentError

__all__ = ["participation_ratio"]

_KINDS = ("total", "noise", "signal")


def _ratio(samples: np.ndarray) -> float:
    covariance = np.cov(samples, rowvar=False)
    total = float(np.trace(covariance))
    squares = float(np.sum(covariance * covariance))  # tr(C²) of a symmetric C
    return total**2 / squares if squares > 0 else float("nan")


def participation_ratio(
    counts: xr.DataArray,
    over: str = "trial",
    group_by: str | None = "stimulus",
    *,
    kind: str = "total",
    n_boot: int = 100,
    confidence: float = 0.95,
    seed: int = 0,
) -> xr.Dataset:
    """Participation ratio of the unit-by-unit covariance of spike counts, with a bootstrap interval.

    Args:
        counts: spike counts with dims ``over`` and ``unit``; every other dim (or the ``group_by``
            coordinate along ``over``) indexes conditions, e.g. ``(trial, stimulus, unit)``,
            ``(time, unit)`` or ``(trial, time, unit)``.
        over: dim of repeated trials (or time bins).
        group_by: coordinate along ``over`` grouping trials into conditions (recorded layout).
        kind: ``"total"``: covariance over all (trial, condition) samples; ``"noise"``: of the
            fluctuations around each condition's mean; ``"signal"``: of the condition means.
        n_boot: bootstrap resamples of the samples (rows) for the interval (0: none).
        confidence: coverage of the percentile interval.
        seed: seed of the bootstrap.

    Returns:
        Dataset with scalars ``participation_ratio``, ``ci_low``, ``ci_high``, ``n_samples`` and
        ``n_units``.
    """
    _check_probability(confidence, "confidence")
    if kind not in _KINDS:
        raise SpikelatentError(f"unknown kind {kind!r}; use one of {', '.join(_KINDS)}")
    n_boot = check_int(n_boot, "n_boot", minimum=0)
    values, _ = trial_condition_unit(counts, over, group_by)
    if kind == "signal":
        with np.errstate(invalid="ignore"):
            samples = np.nanmean(values, axis=0)
    else:
        valid = np.isfinite(values).all(axis=-1)
        source = _residuals(values, zscore=False) if kind == "noise" else values
        samples = source[valid]
    if samples.shape[0] < 2 or samples.shape[1] < 1:
        raise SpikelatentError(
            f"participation ratio needs at least 2 samples and 1 unit; got {samples.shape}"
        )
    value = _ratio(samples)
    low = high = float("nan")
    if n_boot:
        rng = np.random.default_rng(seed)
        boot = np.array(
            [
                _ratio(samples[rng.integers(0, samples.shape[0], samples.shape[0])])
                for _ in range(int(n_boot))
            ]
        )
        tail = (1 - confidence) / 2
        low, high = (float(q) for q in np.nanquantile(boot, [tail, 1 - tail]))
    return xr.Dataset(
        {
            "participation_ratio": xr.DataArray(value),
            "ci_low": xr.DataArray(low),
            "ci_high": xr.DataArray(high),
            "n_samples": xr.DataArray(int(samples.shape[0])),
            "n_units": xr.DataArray(int(samples.shape[1])),
        },
        attrs={"kind": kind, "over": over, "n_boot": int(n_boot), "confidence": confidence},
    )

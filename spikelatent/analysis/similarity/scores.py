"""Noise-corrected scores of predictions of recorded units.

* :func:`r2_er`: the unbiased estimator of the fraction of explainable variance explained,
  r²_ER, of Pospisil & Bair (2021): the squared correlation between a prediction and the unit's
  noise-free tuning, estimated without the downward bias of trial noise in the trial means.
* :func:`ceiled_score`: Brain-Score's ceiled neural predictivity, ``(median r / median
  reliability)²`` over the reliable units (with the sign of the median r: an anti-correlated
  prediction scores below 0, where Brain-Score's square would make it positive) (Yamins et al. 2014's correction, as Brain-Score's
  ``explained_variance``), with its raw score, ceiling and a bootstrap interval over units.

Values above 1 (estimator noise, or a ceiling estimated too low) are kept and counted, never
clipped.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ceiled_score", "r2_er"]


def r2_er(prediction: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """Unbiased fraction of explainable variance explained (Pospisil & Bair 2021), per unit.

    With m stimuli, prediction x (centred x̃), trial means Ȳ (centred Ỹ) and v_i the noise
    variance of stimulus i's trial mean (its trials' sample variance / their number)::

        r²_ER = [(Σ x̃ Ỹ)² − Σ x̃² v] / [Σ x̃² · (Σ Ỹ² − (m − 1)/m · Σ v)]

    Numerator and denominator are unbiased for (Σ x̃ μ̃)² and Σ x̃² Σ μ̃² (μ: the true tuning), so
    the ratio estimates corr(x, μ)² without the attenuation of trial noise. Where Σ x̃ Ỹ < 0 the
    value is made non-positive (−|r²_ER|): a prediction anti-correlated with the unit (as
    out-of-fold predictions from features unrelated to the stimuli tend to be) is never counted
    as explained variance. With equal trial
    counts and one noise variance σ² for every stimulus this is Pospisil & Bair's estimator
    (v = σ̂²/n); the per-stimulus v also holds for Poisson-like noise that grows with the rate.

    Args:
        prediction: ``(stimulus, unit)``, e.g. out-of-fold predictions (independent of the trial
            noise of the stimulus they predict).
        trials: ``(trial, stimulus, unit)``; NaN marks missing trials; >= 2 trials per stimulus.

    Returns:
        ``(unit,)`` signed r²_ER (NaN where the prediction or the trial means are constant).
    """
    trials = np.asarray(trials, dtype=np.float64)
    count = np.isfinite(trials).sum(axis=0)
    mean = np.nanmean(trials, axis=0)
    noise = np.nanvar(trials, axis=0, ddof=1) / count  # (stimulus, unit)
    m = trials.shape[1]
    x = prediction - prediction.mean(axis=0)
    y = mean - mean.mean(axis=0)
    sxx = (x * x).sum(axis=0)
    covariance = (x * y).sum(axis=0)
    numerator = covariance**2 - (x * x * noise).sum(axis=0)
    denominator = sxx * ((y * y).sum(axis=0) - (m - 1) / m * noise.sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = np.where(denominator != 0, numerator / denominator, np.nan)
    # Anti-correlated: never counted as explained variance (where the noise term already made the
    # estimate negative it is left as it is).
    return np.where(covariance > 0, estimate, -np.abs(estimate))


def ceiled_score(
    r: np.ndarray,
    reliability: np.ndarray,
    *,
    n_boot: int = 200,
    confidence: float = 0.95,
    rng: np.random.Generator | None = None,
) -> dict[str, float]:
    """Brain-Score's ceiled score ``(median r / median reliability)²`` over reliable units.

    Args:
        r: per unit Pearson r of cross-validated predictions.
        reliability: per unit Spearman–Brown corrected split-half reliability of the trial means
            (Brain-Score's internal-consistency ceiling); units with reliability <= 0 are left out
            (the reliability filter).
        n_boot: bootstrap resamples of the units (paired r and reliability) for the interval.
        confidence: coverage of the interval.
        rng: generator of the bootstrap.

    Returns:
        ``{"ceiled", "raw", "ceiling", "ci_low", "ci_high"}``.
    """
    keep = (reliability > 0) & np.isfinite(r) & np.isfinite(reliability)
    r, reliability = r[keep], reliability[keep]
    if not r.size:
        return dict.fromkeys(("ceiled", "raw", "ceiling", "ci_low", "ci_high"), float("nan"))
    raw, ceiling = float(np.median(r)), float(np.median(reliability))
    low = high = float("nan")
    if n_boot:
        rng = rng or np.random.default_rng(0)
        index = rng.integers(0, r.size, (int(n_boot), r.size))
        raw_boot = np.median(r[index], axis=1)
        boot = np.sign(raw_boot) * (raw_boot / np.median(reliability[index], axis=1)) ** 2
        tail = (1 - confidence) / 2
        low, high = (float(q) for q in np.quantile(boot, [tail, 1 - tail]))
    return {
        # Signed, as r²_ER: an anti-correlated median r is not explained variance.
        "ceiled": float(np.sign(raw)) * (raw / ceiling) ** 2,
        "raw": raw,
        "ceiling": ceiling,
        "ci_low": low,
        "ci_high": high,
    }

"""Models ordered by their similarity to one recording, where the intervals resolve the order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr


def paired_median_difference(
    a: np.ndarray,
    b: np.ndarray,
    *,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """``median(a) - median(b)`` over the units where both are finite, with a paired bootstrap
    interval over those units (the same resampled units for both).

    Args:
        a, b: ``(unit,)`` per-unit scores of two representations of the same recorded units
            (e.g. ``predictivity_r2_er``).
        confidence: coverage of the interval; n_boot: resamples; seed: their seed.

    Returns:
        ``{"difference", "ci_low", "ci_high", "separated" (the interval excludes 0, either
        side), "n_units"}``; NaN (and not separated) without a finite unit.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    finite = np.isfinite(a) & np.isfinite(b)
    a, b = a[finite], b[finite]
    if not a.size:
        nan = float("nan")
        return {"difference": nan, "ci_low": nan, "ci_high": nan, "separated": False, "n_units": 0}
    index = np.random.default_rng(seed).integers(0, a.size, (int(n_boot), a.size))
    samples = np.median(a[index], axis=1) - np.median(b[index], axis=1)
    tail = (1 - confidence) / 2
    low, high = (float(q) for q in np.quantile(samples, [tail, 1 - tail]))
    return {
        "difference": float(np.median(a) - np.median(b)),
        "ci_low": low,
        "ci_high": high,
        "separated": bool(low > 0 or high < 0),
        "n_units": int(a.size),
    }


def rank_models(
    results: dict[str, xr.Dataset], *, confidence: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Order models by their similarity to one recording, stating an order only where it is resolved.

    ``results`` are :func:`compare_populations` outputs of several models against the same recording
    with the same seed, so their RSA bootstrap samples resample the same stimuli (paired). For the
    RSA score the paired differences of those samples, and for the noise-corrected predictivity
    (median over units of r²_ER, the column the reports show) a paired bootstrap over the
    recorded units, give an
    interval for each difference; ``A > B`` is stated only when that interval excludes 0,
    otherwise ``A ≈ B``.

    Returns:
        ``{"order": {metric: [names, best first]}, "pairs": [...], "statements": {metric: text}}``.
    """
    names = list(results)
    tail = (1 - confidence) / 2
    out: dict[str, Any] = {"order": {}, "pairs": [], "statements": {}}
    if len(names) < 2:
        return out
    # metric -> (point value per name, interval of the paired difference of two names)
    metrics: dict[str, tuple[dict[str, float], Callable[[str, str], tuple[float, float]]]] = {}
    if all("rsa_similarity" in r for r in results.values()):
        point = {n: float(results[n]["rsa_similarity"]) for n in names}
        boot = {n: results[n]["rsa_bootstrap"].values for n in names}
        paired = len({len(v) for v in boot.values()}) == 1 and len(boot[names[0]])

        def rsa_interval(better: str, worse: str) -> tuple[float, float]:
            if not paired:
                return float("nan"), float("nan")
            low, high = np.quantile(boot[better] - boot[worse], [tail, 1 - tail])
            return float(low), float(high)

        metrics["rsa"] = (point, rsa_interval)
    key = "predictivity_r2_er"
    if all(key in r for r in results.values()):
        per_unit = {n: results[n][key].values for n in names}
        finite = np.all([np.isfinite(v) for v in per_unit.values()], axis=0)
        per_unit = {n: v[finite] for n, v in per_unit.items()}  # one set of units for the order

        def predictivity_interval(better: str, worse: str) -> tuple[float, float]:
            pair = paired_median_difference(per_unit[better], per_unit[worse],
                                            confidence=confidence, n_boot=n_boot, seed=seed)
            return pair["ci_low"], pair["ci_high"]

        if finite.sum():
            metrics["predictivity"] = ({n: float(np.median(v)) for n, v in per_unit.items()},
                                       predictivity_interval)
    for metric, (point, interval) in metrics.items():
        order = sorted(names, key=lambda n: -point[n] if np.isfinite(point[n]) else np.inf)
        out["order"][metric] = order
        pieces = [order[0]]
        for better, worse in zip(order[:-1], order[1:], strict=True):
            low, high = interval(better, worse)
            separated = bool(low > 0)
            out["pairs"].append(
                {
                    "metric": metric,
                    "better": better,
                    "worse": worse,
                    "difference": point[better] - point[worse],
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "separated": separated,
                }
            )
            pieces.append((" > " if separated else " ≈ ") + worse)
        out["statements"][metric] = (
            "".join(pieces)
            + f" ('>': the {int(round(100 * confidence))} % interval of the paired difference excludes 0;"
            " '≈': not resolved)"
        )
    return out

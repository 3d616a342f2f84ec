"""Models ordered by their similarity to one recording, where the intervals resolve the order."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr


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
    metrics: dict[str, tuple[dict[str, float], dict[str, np.ndarray] | None]] = {}
    if all("rsa_similarity" in r for r in results.values()):
        point = {n: float(results[n]["rsa_similarity"]) for n in names}
        samples = {n: results[n]["rsa_bootstrap"].values for n in names}
        if len({len(v) for v in samples.values()}) != 1 or not len(samples[names[0]]):
            samples = None
        metrics["rsa"] = (point, samples)
    key = "predictivity_r2_er"
    if all(key in r for r in results.values()):
        per_unit = {n: results[n][key].values for n in names}
        finite = np.all([np.isfinite(v) for v in per_unit.values()], axis=0)
        rng = np.random.default_rng(seed)
        index = rng.integers(0, int(finite.sum()), (int(n_boot), int(finite.sum())))
        point = {n: float(np.median(v[finite])) for n, v in per_unit.items()}
        samples = {n: np.median(v[finite][index], axis=1) for n, v in per_unit.items()}
        if finite.sum():
            metrics["predictivity"] = (point, samples)
    for metric, (point, samples) in metrics.items():
        order = sorted(names, key=lambda n: -point[n] if np.isfinite(point[n]) else np.inf)
        out["order"][metric] = order
        pieces = [order[0]]
        for better, worse in zip(order[:-1], order[1:], strict=True):
            if samples is None:
                low = high = float("nan")
            else:
                low, high = np.quantile(samples[better] - samples[worse], [tail, 1 - tail])
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

"""Cross-validated linear predictivity of recorded units from model features."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from spikelatent.analysis.similarity.inputs import mean_response, responses_array, shared_stimuli
from spikelatent.analysis.similarity.recording import prepare_recording
from spikelatent.errors import SpikelatentError


def linear_predictivity(
    features: Any,
    responses: Any,
    folds: int = 5,
    *,
    alphas: Any = None,
    split_repeats: int = 10,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> xr.Dataset:
    """Cross-validated linear predictivity of each recorded unit from model features (Brain-Score style).

    Folds run over stimuli (``sklearn.model_selection.KFold``, shuffled): for each fold a ridge
    regression (``RidgeCV`` on standardised features, its penalty chosen per unit by efficient
    leave-one-out on the training stimuli) maps features to the trial-averaged responses of the
    held-out stimuli. Per unit, Pearson r and R² of the out-of-fold predictions over all stimuli.
    When ``responses`` has trials, each unit's reliability is the Spearman–Brown corrected
    split-half correlation of its trial means (random halves per stimulus, averaged over
    ``split_repeats``), and the noise-corrected scores are ``r / sqrt(reliability)`` (Spearman's
    correction for attenuation) and ``R² / reliability`` (noise-corrected explained variance): a
    model equal to the true tuning scores 1 on both whatever the trial noise.

    Args:
        features: ``(stimulus, feature)`` model features (posterior rates, or any features); a
            population Dataset gives its ``rate``.
        responses: recorded ``(trial, stimulus, unit)`` or ``(stimulus, unit)``, or a
            :class:`RecordingSummary` (its reliabilities are computed once).
        folds: number of stimulus folds (>= 2).
        alphas: ridge penalties searched (default ``numpy.logspace(-3, 5, 17)``).
        split_repeats: random split halves averaged for the reliability.
        n_boot: bootstrap resamples of the units for the interval of the medians (0: none).
        confidence: coverage of that interval.
        seed: seed of the folds, the splits and the bootstrap.

    Returns:
        Dataset with per-unit ``r``, ``r2``, ``alpha`` and (with trials) ``reliability``,
        ``r_corrected``, ``r2_corrected``; scalars ``median_r``, ``median_r2`` and (with trials)
        ``median_r_corrected``, ``median_r2_corrected`` (medians over units with reliability > 0)
        with ``*_ci_low``/``*_ci_high``, ``n_units_reliable``.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if int(folds) != folds or folds < 2:
        raise SpikelatentError(f"folds must be an integer >= 2; got {folds}")
    features = responses_array(features, "features")
    recording = prepare_recording(responses, "responses")
    shared = shared_stimuli(features, recording.responses, names=("features", "responses"))
    recording = recording.restricted(shared)
    features = mean_response(features.sel(stimulus=shared))
    x = features.values
    target = recording.mean
    y = target.values
    n_stimuli = x.shape[0]
    if n_stimuli < 2 * folds:
        raise SpikelatentError(
            f"linear predictivity with {folds} folds needs at least {2 * folds} shared stimuli; "
            f"got {n_stimuli}"
        )
    alphas = np.logspace(-3, 5, 17) if alphas is None else np.asarray(alphas, dtype=np.float64)
    prediction = np.empty_like(y)
    chosen = np.zeros((folds, y.shape[1]))
    splitter = KFold(n_splits=int(folds), shuffle=True, random_state=seed)
    for k, (train, test) in enumerate(splitter.split(x)):
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas, alpha_per_target=True))
        model.fit(x[train], y[train])
        prediction[test] = model.predict(x[test])
        chosen[k] = np.broadcast_to(model[-1].alpha_, (y.shape[1],))
    centred_p = prediction - prediction.mean(axis=0)
    centred_y = y - y.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (centred_p * centred_y).sum(axis=0) / np.sqrt(
            (centred_p**2).sum(axis=0) * (centred_y**2).sum(axis=0)
        )
        r2 = 1 - ((y - prediction) ** 2).sum(axis=0) / (centred_y**2).sum(axis=0)
    unit = target["unit"].values
    data: dict[str, Any] = {
        "r": ("unit", r, {"long_name": "Pearson r of out-of-fold predictions"}),
        "r2": ("unit", r2, {"long_name": "out-of-fold coefficient of determination"}),
        "alpha": (
            "unit",
            np.exp(np.log(chosen).mean(axis=0)),
            {"long_name": "ridge penalty (geometric mean over folds)"},
        ),
    }
    rng = np.random.default_rng(seed)
    medians = {"median_r": r, "median_r2": r2}
    if recording.has_repeats:
        # The generator continues from the split draws, as without a summary.
        reliability, rng = recording.reliability(int(split_repeats), seed)
        reliable = reliability > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            r_corrected = np.where(reliable, r / np.sqrt(reliability), np.nan)
            r2_corrected = np.where(reliable, r2 / reliability, np.nan)
        data["reliability"] = (
            "unit",
            reliability,
            {"long_name": "Spearman-Brown corrected split-half r"},
        )
        data["r_corrected"] = ("unit", r_corrected, {"long_name": "r / sqrt(reliability)"})
        data["r2_corrected"] = ("unit", r2_corrected, {"long_name": "R^2 / reliability"})
        data["n_units_reliable"] = xr.DataArray(int(reliable.sum()))
        medians.update(median_r_corrected=r_corrected, median_r2_corrected=r2_corrected)
    tail = (1 - confidence) / 2
    for name, per_unit in medians.items():
        finite = per_unit[np.isfinite(per_unit)]
        data[name] = xr.DataArray(float(np.median(finite)) if finite.size else np.nan)
        low = high = np.nan
        if n_boot and finite.size:
            boot = np.median(
                finite[rng.integers(0, finite.size, (int(n_boot), finite.size))], axis=1
            )
            low, high = np.quantile(boot, [tail, 1 - tail])
        data[f"{name}_ci_low"] = xr.DataArray(float(low))
        data[f"{name}_ci_high"] = xr.DataArray(float(high))
    return xr.Dataset(
        data,
        coords={"unit": unit},
        attrs={
            "folds": int(folds),
            "n_stimuli": n_stimuli,
            "n_features": int(x.shape[1]),
            "regression": "RidgeCV on standardised features, penalty per unit",
            "interval": "percentile bootstrap over units",
            "confidence": confidence,
            "seed": int(seed),
        },
    )

"""Cross-validated predictivity of recorded units from a representation, noise-corrected."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from spikelatent.analysis.similarity.inputs import features_array, shared_stimuli
from spikelatent.analysis.similarity.readouts import (
    READOUTS,
    FactorizedOptions,
    fit_predict,
    fold_splits,
)
from spikelatent.analysis.similarity.recording import RecordingSummary, prepare_recording
from spikelatent.analysis.similarity.scores import ceiled_score, r2_er
from spikelatent.errors import SpikelatentError

_REGRESSION = {
    "ridge": "RidgeCV on standardised features, penalty per unit",
    "pca-ridge": "RidgeCV on the principal components of the standardised features (PCA fitted "
    "inside each fold), penalty per unit",
    "factorized": "factorised spatial readout (spatial mask x feature weights, Klindt et al. "
    "2017), L1 + Laplacian penalties, strength per unit chosen on a validation split",
}


def linear_predictivity(
    features: Any,
    responses: Any,
    folds: Any = 5,
    *,
    readout: str = "ridge",
    alphas: Any = None,
    n_components: int = 100,
    factorized: FactorizedOptions | None = None,
    split_repeats: int = 10,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> xr.Dataset:
    """Cross-validated linear predictivity of each recorded unit from model features (Brain-Score style).

    Folds run over stimuli (``sklearn.model_selection.KFold``, shuffled): for each fold a readout
    (:mod:`~spikelatent.analysis.similarity.readouts`; by default a ridge regression, ``RidgeCV``
    on standardised features with its penalty chosen per unit by efficient leave-one-out on the
    training stimuli) maps features to the trial-averaged responses of the held-out stimuli. Per
    unit, Pearson r and R² of the out-of-fold predictions over all stimuli. When ``responses``
    has trials, each unit's reliability is the Spearman–Brown corrected split-half correlation of
    its trial means (random halves per stimulus, averaged over ``split_repeats``), and the
    noise-corrected scores are ``r / sqrt(reliability)`` (Spearman's correction for attenuation),
    ``R² / reliability`` (noise-corrected explained variance), the unbiased r²_ER of Pospisil &
    Bair (2021) (:func:`~spikelatent.analysis.similarity.scores.r2_er`) and Brain-Score's ceiled
    score ``(median r / median reliability)²``: a model equal to the true tuning scores about 1
    on all of them whatever the trial noise. Values above 1 are kept and counted, never clipped.

    Args:
        features: ``(stimulus, feature)`` model features (posterior rates, or any features), or
            ``(stimulus, channel, y, x)`` maps (see
            :func:`~spikelatent.analysis.similarity.inputs.features_array`); a population Dataset
            gives its ``rate``.
        responses: recorded ``(trial, stimulus, unit)`` or ``(stimulus, unit)``, or a
            :class:`RecordingSummary` (its reliabilities are computed once).
        folds: number of stimulus folds (>= 2), or one fold label per shared stimulus.
        readout: ``"ridge"``, ``"pca-ridge"`` or ``"factorized"``.
        alphas: ridge penalties searched (default ``numpy.logspace(-3, 5, 17)``).
        n_components: principal components of ``"pca-ridge"``.
        factorized: options of the factorised readout.
        split_repeats: random split halves averaged for the reliability.
        n_boot: bootstrap resamples of the units for the interval of the medians (0: none).
        confidence: coverage of that interval.
        seed: seed of the folds, the splits and the bootstrap.

    Returns:
        Dataset with ``prediction`` (stimulus, unit) out of fold, ``held_out_in`` (stimulus: its fold),
        ``training_score`` (fold, unit: R² on the fold's training stimuli only), per-unit ``r``,
        ``r2``, ``alpha`` (the penalty chosen, geometric mean over folds) and (with trials) ``reliability``, ``r_corrected``, ``r2_corrected``, ``r2_er``;
        scalars ``median_r``, ``median_r2`` and (with trials) ``median_r_corrected``,
        ``median_r2_corrected``, ``median_r2_er`` (medians over units with reliability > 0) with
        ``*_ci_low``/``*_ci_high``, ``n_units_reliable``, ``ceiled_score`` (with
        ``ceiled_raw``, ``ceiled_ceiling``, ``ceiled_score_ci_low/high``) and the number of units
        above 1 of each corrected score (``n_above_1_r_corrected``, ...).
    """
    features = features_array(features, "features")
    recording = prepare_recording(responses, "responses")
    shared = shared_stimuli(features, recording.responses, names=("features", "responses"))
    recording = recording.restricted(shared)
    x = features.sel(stimulus=shared).values
    n_stimuli = x.shape[0]
    splits = fold_splits(n_stimuli, folds, seed)
    n_folds = len(splits)
    if n_stimuli < 2 * n_folds:
        raise SpikelatentError(
            f"linear predictivity with {n_folds} folds needs at least {2 * n_folds} shared "
            f"stimuli; got {n_stimuli}"
        )
    if readout not in READOUTS:
        raise SpikelatentError(f"unknown readout {readout!r}; use one of {', '.join(READOUTS)}")
    y = recording.mean.values
    prediction = np.empty_like(y)
    chosen = np.zeros((n_folds, y.shape[1]))
    training_score = np.zeros((n_folds, y.shape[1]))
    fold = np.empty(n_stimuli, dtype=np.int64)
    for k, (train, test) in enumerate(splits):
        fold[test] = k
        prediction[test], chosen[k], training_score[k] = fit_predict(
            readout,
            x[train],
            y[train],
            x[test],
            alphas=alphas,
            n_components=n_components,
            factorized=factorized,
            seed=seed,
        )
    result = prediction_scores(
        prediction,
        recording,
        split_repeats=split_repeats,
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
    )
    result["alpha"] = (
        "unit",
        np.exp(np.log(chosen).mean(axis=0)),
        {"long_name": "readout penalty (geometric mean over folds)"},
    )
    result["prediction"] = (
        ("stimulus", "unit"),
        prediction,
        {"long_name": "out-of-fold prediction of the trial-averaged response"},
    )
    result["held_out_in"] = (
        "stimulus",
        fold,
        {"long_name": "the fold that held the stimulus out"},
    )
    result["training_score"] = (
        ("fold", "unit"),
        training_score,
        {"long_name": "R^2 on the fold's training stimuli only (leave-one-out or validation)"},
    )
    result = result.assign_coords(stimulus=shared)
    result.attrs.update(
        {
            "folds": n_folds,
            "n_features": int(np.prod(x.shape[1:])),
            "readout": readout,
            "regression": _REGRESSION[readout],
        }
    )
    return result


def prediction_scores(
    prediction: np.ndarray,
    recording: RecordingSummary,
    *,
    split_repeats: int = 10,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> xr.Dataset:
    """Per-unit and median scores of out-of-fold ``prediction`` (stimulus, unit) of a recording
    (see :func:`linear_predictivity` for the outputs)."""
    y = recording.mean.values
    centred_p = prediction - prediction.mean(axis=0)
    centred_y = y - y.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (centred_p * centred_y).sum(axis=0) / np.sqrt(
            (centred_p**2).sum(axis=0) * (centred_y**2).sum(axis=0)
        )
        r2 = 1 - ((y - prediction) ** 2).sum(axis=0) / (centred_y**2).sum(axis=0)
    data: dict[str, Any] = {
        "r": ("unit", r, {"long_name": "Pearson r of out-of-fold predictions"}),
        "r2": ("unit", r2, {"long_name": "out-of-fold coefficient of determination"}),
    }
    rng = np.random.default_rng(seed)
    medians = {"median_r": r, "median_r2": r2}
    ceiled = None
    if recording.has_repeats:
        # The generator continues from the split draws, as without a summary.
        reliability, rng = recording.reliability(int(split_repeats), seed)
        reliable = reliability > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            r_corrected = np.where(reliable, r / np.sqrt(reliability), np.nan)
            r2_corrected = np.where(reliable, r2 / reliability, np.nan)
        explainable = np.where(reliable, r2_er(prediction, recording.responses.values), np.nan)
        data["reliability"] = (
            "unit",
            reliability,
            {"long_name": "Spearman-Brown corrected split-half r"},
        )
        data["r_corrected"] = ("unit", r_corrected, {"long_name": "r / sqrt(reliability)"})
        data["r2_corrected"] = ("unit", r2_corrected, {"long_name": "R^2 / reliability"})
        data["r2_er"] = (
            "unit",
            explainable,
            {"long_name": "unbiased fraction of explainable variance explained (Pospisil & Bair)"},
        )
        data["n_units_reliable"] = xr.DataArray(int(reliable.sum()))
        medians.update(
            median_r_corrected=r_corrected,
            median_r2_corrected=r2_corrected,
            median_r2_er=explainable,
        )
        for name, values in (
            ("r_corrected", r_corrected),
            ("r2_corrected", r2_corrected),
            ("r2_er", explainable),
        ):
            data[f"n_above_1_{name}"] = xr.DataArray(
                int(np.sum(values > 1)),
                attrs={"long_name": f"units whose {name} exceeds 1 (kept, not clipped)"},
            )
        ceiled = (r, reliability)
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
    if ceiled is not None:
        score = ceiled_score(*ceiled, n_boot=int(n_boot), confidence=confidence, rng=rng)
        data["ceiled_score"] = xr.DataArray(
            score["ceiled"],
            attrs={"long_name": "Brain-Score ceiled score (median r / median reliability)^2"},
        )
        data["ceiled_raw"] = xr.DataArray(score["raw"])
        data["ceiled_ceiling"] = xr.DataArray(score["ceiling"])
        data["ceiled_score_ci_low"] = xr.DataArray(score["ci_low"])
        data["ceiled_score_ci_high"] = xr.DataArray(score["ci_high"])
    return xr.Dataset(
        data,
        coords={"unit": recording.mean["unit"].values},
        attrs={
            "n_stimuli": int(len(y)),
            "interval": "percentile bootstrap over units",
            "confidence": confidence,
            "seed": int(seed),
        },
    )

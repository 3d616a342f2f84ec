"""Many representations against one recording: a table, baselines, a null, and layer commitment.

* :func:`compare_representations`: every named representation (a model's latent rates, sampled
  counts, encoder stages, hierarchical levels; the baselines of
  :mod:`~spikelatent.analysis.similarity.baselines`; user features) scored against one recording
  by :func:`compare_populations` with the same folds, resamples and readout, plus a
  stimulus-shuffled null row scored by every metric, in one Dataset along ``representation``.
* :func:`map_representations`: Brain-Score's layer commitment, cross-validated: for each outer
  fold the representation with the best score on that fold's training stimuli is chosen, and the
  chosen one predicts the held-out stimuli; the held-out predictions of all folds are scored
  together. The choice never sees the data it is scored on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from spikelatent.analysis.similarity.inputs import features_array, shared_stimuli
from spikelatent.analysis.similarity.predictivity import linear_predictivity, prediction_scores
from spikelatent.analysis.similarity.rdm import TRIAL_METRICS
from spikelatent.analysis.similarity.readouts import FactorizedOptions
from spikelatent.analysis.similarity.recording import prepare_recording
from spikelatent.analysis.similarity.side_by_side import compare_populations
from spikelatent.errors import SpikelatentError

__all__ = ["SHUFFLED", "compare_representations", "map_representations"]

SHUFFLED = "shuffled"
# Per-row variables too large for a table of many rows (kept by compare_populations).
_DROPPED = ("rdm_model", "rdm_recorded", "rsa_null")


def _has_trials(value: Any) -> bool:
    if isinstance(value, xr.Dataset):
        return "counts" in value.data_vars
    if isinstance(value, xr.DataArray):
        return "trial" in value.dims
    return np.ndim(value) == 3


def _shuffled(value: Any, seed: int) -> Any:
    """``value`` with its responses reassigned to random other stimuli (ids kept)."""
    rng = np.random.default_rng(seed)
    if isinstance(value, xr.Dataset | xr.DataArray):
        n = value.sizes["stimulus"]
        order = rng.permutation(n)
        ids = value["stimulus"].values if "stimulus" in value.coords else np.arange(n)
        return value.isel(stimulus=order).assign_coords(stimulus=ids)
    array = np.asarray(value)
    axis = 1 if array.ndim == 3 else 0
    return np.take(array, rng.permutation(array.shape[axis]), axis=axis)


def compare_representations(
    representations: Mapping[str, Any],
    recorded: Any,
    *,
    kinds: Mapping[str, str] | None = None,
    metric: str = "correlation",
    compare: str = "spearman",
    readout: str = "ridge",
    folds: Any = 5,
    n_components: int = 100,
    factorized: FactorizedOptions | None = None,
    n_boot: int = 200,
    n_permutations: int = 100,
    confidence: float = 0.95,
    n_splits: int | None = 2,
    shuffled_null: str | None = "auto",
    precomputed: Mapping[str, xr.Dataset] | None = None,
    seed: int = 0,
) -> xr.Dataset:
    """Score every named representation against one recording, side by side.

    Each representation is scored by :func:`compare_populations` (no statistics) on the stimuli
    all of them share with the recording, with the same seed: the same folds, the same bootstrap
    resamples of the stimuli (so :func:`rank_models` can pair them) and the recording-side work
    done once. A representation without the trials that ``metric`` needs (e.g. ``crossnobis``
    on pixels) gets no RSA (NaN), the other columns as usual.

    Args:
        representations: ``{name: responses}``: a population Dataset, ``(stimulus, feature)`` or
            ``(trial, stimulus, unit)`` responses, ``(stimulus, channel, y, x)`` maps (arrays
            or DataArrays). A model's ``representations(x)`` dict (torch tensors ``(batch,
            features)``, detached) can be passed after ``.numpy()`` with its stimulus ids.
        recorded: recorded responses or a :class:`RecordingSummary`.
        kinds: a label per name (e.g. ``"model"``, ``"baseline"``), stored as the ``kind``
            coordinate (default ``"representation"``; the shuffled row is ``"null"``).
        metric, compare, n_boot, n_permutations, confidence, n_splits: as in :func:`rsa`.
        readout, folds, n_components, factorized: as in :func:`linear_predictivity`.
        shuffled_null: the name of the representation whose stimuli are shuffled (relabelled at
            random) to give the ``"shuffled"`` row, the chance level of every metric; ``"auto"``:
            ``pixels`` if present, else the first; ``None``: no such row.
        precomputed: :func:`compare_populations` results already computed for some names with
            the same settings (reused, not recomputed).
        seed: seed of every resampling and of the shuffle.

    Returns:
        Dataset along ``representation`` (coordinate ``kind``): the scalar columns of
        :func:`compare_populations` (``rsa_similarity``, ``rsa_ci_low/high``,
        ``rsa_similarity_split``, ``rsa_null_high``, ``cka``, ``cka_debiased``,
        ``predictivity_median_*`` with intervals, ``predictivity_ceiled_score``, ...), per unit
        along ``recorded_unit`` (``predictivity_r_corrected``, ``predictivity_r2_er``, ...),
        ``rsa_bootstrap`` (representation, sample), ``predictivity_prediction`` (representation,
        stimulus, recorded_unit) and ``predictivity_training_score`` (representation, fold,
        recorded_unit) for :func:`map_representations`; the recording's noise ceiling as
        ``rsa_noise_ceiling_low/high``.
    """
    if not representations:
        raise SpikelatentError("give at least one representation to compare")
    recording = prepare_recording(recorded, "recorded responses")
    rows = dict(representations)
    kinds = dict(kinds or {})
    if shuffled_null is not None:
        source = shuffled_null
        if source == "auto":
            latents = [name for name in rows if name.endswith("/latent")]
            source = ("pixels" if "pixels" in rows else latents[0] if latents
                      else next(iter(rows)))
        if source not in rows:
            raise SpikelatentError(f"shuffled_null {source!r} is not one of the representations")
        if SHUFFLED in rows:
            raise SpikelatentError(f"the name {SHUFFLED!r} is kept for the shuffled-stimulus null")
        rows[SHUFFLED] = _shuffled(rows[source], seed + 1)
        kinds[SHUFFLED] = "null"
    features = {
        name: features_array(value, f"representation {name!r}") for name, value in rows.items()
    }
    shared = shared_stimuli(
        *features.values(),
        recording.responses,
        names=(*(f"representation {n!r}" for n in features), "the recording"),
    )
    recording = recording.restricted(shared)
    results = []
    rsa_skipped: dict[str, str] = {}
    for name, value in rows.items():
        if precomputed and name in precomputed:
            result = precomputed[name]
        else:
            if isinstance(value, xr.Dataset | xr.DataArray):
                value = value.sel(stimulus=shared)
            else:
                value = features[name].sel(stimulus=shared)
            settings = dict(
                metric=metric,
                compare=compare,
                folds=folds,
                readout=readout,
                n_components=n_components,
                factorized=factorized,
                n_boot=n_boot,
                n_permutations=n_permutations,
                confidence=confidence,
                n_splits=n_splits,
                statistics=False,
                seed=seed,
            )
            with_rsa = metric not in TRIAL_METRICS or _has_trials(value)
            try:
                result = compare_populations(value, recording, with_rsa=with_rsa, **settings)
            except SpikelatentError as error:
                if not with_rsa:
                    raise
                # One degenerate representation (e.g. a constant stimulus row under the
                # correlation distance) loses its RSA cells, not the whole table.
                rsa_skipped[name] = str(error)
                result = compare_populations(value, recording, with_rsa=False, **settings)
        keep = [v for v in result.data_vars if v not in _DROPPED and not v.startswith("stat_")]
        results.append(result[keep].drop_vars(["stimulus_"], errors="ignore"))
    table = xr.concat(
        results,
        dim="representation",
        data_vars="all",
        coords="minimal",
        join="outer",
        compat="override",
        fill_value=np.nan,
    )
    names = list(rows)
    table = table.assign_coords(
        representation=names,
        kind=("representation", [kinds.get(n, "representation") for n in names]),
    )
    for bound in ("rsa_noise_ceiling_low", "rsa_noise_ceiling_high"):
        if bound in table:
            table[bound] = table[bound].max("representation")  # the recording's: one value
    if "predictivity_held_out_in" in table:
        table["predictivity_held_out_in"] = table["predictivity_held_out_in"].max("representation")
    table.attrs = {
        "metric": metric,
        "compare": compare,
        "readout": readout,
        "shared_stimuli": len(shared),
        "seed": int(seed),
        "confidence": confidence,
        "shuffled_null": "" if shuffled_null is None else str(source),
        # netCDF attributes hold strings, not dicts: one "name: reason" per line.
        "rsa_skipped": "\n".join(f"{k}: {v}" for k, v in rsa_skipped.items()),
    }
    return table


def map_representations(
    representations: Mapping[str, Any],
    recorded: Any,
    *,
    readout: str = "ridge",
    folds: Any = 5,
    n_components: int = 100,
    factorized: FactorizedOptions | None = None,
    split_repeats: int = 10,
    n_boot: int = 200,
    confidence: float = 0.95,
    scored: xr.Dataset | None = None,
    seed: int = 0,
) -> xr.Dataset:
    """Layer commitment: the representation chosen on training folds, scored on held-out folds.

    The stimuli are split into folds (as :func:`linear_predictivity`). For each fold every
    representation's readout is fitted on the other folds' stimuli, and its criterion is the
    median over units of its R² on those training stimuli only (the ridges' leave-one-out, the
    factorised readout's validation split). The representation with the best criterion (the
    first, in the given order, on a tie) is chosen for that fold and its predictions of the
    fold's held-out stimuli are kept. The held-out predictions of all folds are scored together
    (noise-corrected r, EV, r²_ER, ceiled score, with bootstrap intervals over units), so the
    choice is never made on the data it is scored on. The committed representation is the one
    chosen in most folds.

    Args:
        representations: ``{name: responses}`` of one run, in depth order (e.g. a model's
            ``representations(x)``, arrays with the stimulus ids of the recording).
        recorded: recorded responses (with trials for the noise-corrected scores) or a
            :class:`RecordingSummary`.
        readout, folds, n_components, factorized, split_repeats, n_boot, confidence: as in
            :func:`linear_predictivity`.
        scored: a :func:`compare_representations` result holding these representations, scored
            with the same folds and readout: its predictions are reused instead of refitted.
        seed: seed of the folds and of the bootstrap.

    Returns:
        Dataset: ``chosen`` (fold) the representation chosen per fold, ``criterion`` (fold,
        representation), the held-out scores of :func:`linear_predictivity` (``median_r``,
        ``median_r_corrected``, ``median_r2_er``, ``ceiled_score``, ... and per unit along
        ``unit``); ``attrs["committed"]``.
    """
    names = list(representations)
    if not names:
        raise SpikelatentError("give at least one representation to map")
    recording = prepare_recording(recorded, "recorded responses")
    if scored is not None:
        missing = [n for n in names if n not in scored["representation"].values]
        if missing:
            raise SpikelatentError(f"scored holds no results for {missing}")
        shared = scored["stimulus"].values
        table = scored.sel(representation=names)
        predictions = table["predictivity_prediction"].values
        training = table["predictivity_training_score"].values
        fold = table["predictivity_held_out_in"].values.astype(np.int64)
    else:
        features = {
            n: features_array(v, f"representation {n!r}") for n, v in representations.items()
        }
        shared = shared_stimuli(*features.values(), recording.responses)
        runs = [
            linear_predictivity(
                features[n].sel(stimulus=shared),
                recording,
                folds,
                readout=readout,
                n_components=n_components,
                factorized=factorized,
                split_repeats=split_repeats,
                n_boot=0,
                seed=seed,
            )
            for n in names
        ]
        predictions = np.stack([r["prediction"].values for r in runs])
        training = np.stack([r["training_score"].values for r in runs])
        fold = runs[0]["held_out_in"].values
    recording = recording.restricted(shared)
    with np.errstate(all="ignore"):
        criterion = np.nanmedian(training, axis=-1).T  # (fold, representation)
    chosen_index = np.argmax(np.where(np.isfinite(criterion), criterion, -np.inf), axis=1)
    prediction = np.empty(predictions.shape[1:])
    for k, index in enumerate(chosen_index):
        held_out = fold == k
        prediction[held_out] = predictions[index][held_out]
    result = prediction_scores(
        prediction,
        recording,
        split_repeats=split_repeats,
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
    )
    counts = np.bincount(chosen_index, minlength=len(names))
    committed = names[int(np.argmax(counts))]
    result["chosen"] = ("fold", np.asarray([names[i] for i in chosen_index]))
    result["criterion"] = (
        ("fold", "representation"),
        criterion,
        {"long_name": "median over units of the training-fold R^2"},
    )
    result = result.assign_coords(representation=names, fold=np.arange(len(chosen_index)))
    result.attrs.update(
        {
            "committed": committed,
            "readout": readout,
            "rule": "per fold, the best median training-fold R^2; scored on the held-out folds",
        }
    )
    return result

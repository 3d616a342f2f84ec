"""A model population and a recording side by side: every comparison in one Dataset."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from spikelatent.analysis.similarity.cka import linear_cka
from spikelatent.analysis.similarity.inputs import (
    features_array,
    flat_features,
    responses_array,
    shared_stimuli,
)
from spikelatent.analysis.similarity.predictivity import linear_predictivity
from spikelatent.analysis.similarity.readouts import FactorizedOptions
from spikelatent.analysis.similarity.recording import prepare_recording
from spikelatent.analysis.similarity.rsa import rsa
from spikelatent.analysis.similarity.statistics import _statistics_dataset, population_statistics
from spikelatent.errors import SpikelatentError


def compare_populations(
    model_population: Any,
    recorded: Any,
    *,
    metric: str = "correlation",
    compare: str = "spearman",
    folds: Any = 5,
    readout: str = "ridge",
    n_components: int = 100,
    factorized: FactorizedOptions | None = None,
    n_boot: int = 200,
    n_permutations: int = 100,
    confidence: float = 0.95,
    n_splits: int | None = 2,
    statistics: bool = True,
    with_rsa: bool = True,
    seed: int = 0,
) -> xr.Dataset:
    """A model population and recorded responses side by side.

    On shared stimuli (the ``stimulus`` coordinate): :func:`rsa` (``rsa_*``, ``rdm_model``,
    ``rdm_recorded``), :func:`linear_cka` and its debiased form (``cka``, ``cka_debiased``), and
    :func:`linear_predictivity` from the model's responses to the recorded units (``predictivity_*``,
    per unit along ``recorded_unit``). With ``statistics``, :func:`population_statistics` of both
    populations (``stat_*`` along ``population = ["model", "recorded"]``): the model's from its
    ``counts`` (trial samples) and the recording's from its trials, wherever both are non-negative
    with >= 2 trials. Without shared stimuli only the statistics are returned
    (``attrs["shared_stimuli"] = 0``).

    Args:
        model_population: a :func:`spikelatent.population` Dataset (``rate`` is the representation,
            ``counts`` feed the statistics and the metrics computed on single trials), responses
            as in :func:`responses_array`, or ``(stimulus, channel, y, x)`` maps (flattened for
            RSA and CKA; the factorised readout uses their layout).
        recorded: recorded responses, e.g. (trial, stimulus, unit) counts, or a
            :class:`RecordingSummary` (:func:`prepare_recording`) shared by several calls, so the
            recording's RDM, ceiling, reliabilities and statistics are computed once.
        metric, compare, n_boot, n_permutations, confidence, n_splits: as in :func:`rsa`.
        folds, readout, n_components, factorized: as in :func:`linear_predictivity`.
        statistics: also compute the side-by-side statistics.
        with_rsa: compute the RSA (off for a representation without the trials ``metric`` needs).
        seed: seed of every resampling.

    Returns:
        Dataset; ``attrs`` hold the metric, comparison, readout and the number of shared stimuli.
    """
    features = features_array(model_population, "model population")
    model_counts = None
    if isinstance(model_population, xr.Dataset):
        representation = features
        model_counts = model_population["counts"] if "counts" in model_population else None
    elif features.ndim == 2 and not (
        isinstance(model_population, xr.DataArray) and "channel" in model_population.dims
    ):
        representation = responses_array(model_population, "model population")
        model_counts = representation if "trial" in representation.dims else None
    else:
        representation = flat_features(features)
    recording = prepare_recording(recorded, "recorded responses")
    try:
        shared = shared_stimuli(
            features, recording.responses, names=("the model population", "the recording")
        )
    except SpikelatentError:
        if not statistics:
            raise
        shared = np.empty(0)
    result = xr.Dataset(
        attrs={
            "metric": metric,
            "compare": compare,
            "readout": readout,
            "shared_stimuli": len(shared),
            "seed": int(seed),
        }
    )
    if len(shared):
        if with_rsa:
            similarity = rsa(
                # The Dataset itself: its counts feed the metrics computed on single trials.
                model_population if isinstance(model_population, xr.Dataset) else representation,
                recording,
                metric,
                compare,
                n_boot=n_boot,
                n_permutations=n_permutations,
                confidence=confidence,
                n_splits=n_splits,
                seed=seed,
                names=("the model population", "the recording"),
            )
            for name, value in similarity.data_vars.items():
                if name == "rdm_a":
                    result["rdm_model"] = value
                elif name == "rdm_b":
                    result["rdm_recorded"] = value
                else:
                    result[f"rsa_{name}"] = value
            result.attrs.update(
                {f"rsa_{k}": v for k, v in similarity.attrs.items() if isinstance(v, str)}
            )
        result["cka"] = linear_cka(representation, recording)
        result["cka_debiased"] = linear_cka(representation, recording, debiased=True)
        predictivity = linear_predictivity(
            features,
            recording,
            folds=folds,
            readout=readout,
            n_components=n_components,
            factorized=factorized,
            n_boot=n_boot,
            confidence=confidence,
            seed=seed,
        ).rename({"unit": "recorded_unit"})
        for name, value in predictivity.data_vars.items():
            result[f"predictivity_{name}"] = value
    if statistics:

        def stats_or_none(x: Any) -> xr.Dataset | None:
            if x is None:
                return None
            x = responses_array(x)
            if "trial" not in x.dims or x.sizes["trial"] < 2 or np.nanmin(x.values) < 0:
                return None
            return population_statistics(x)

        result = result.merge(
            _statistics_dataset(
                {"model": stats_or_none(model_counts), "recorded": recording.statistics()}
            )
        )
    return result

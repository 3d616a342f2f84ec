"""Representational dissimilarity matrices (RDMs) of a population's responses."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr

from spikelatent.analysis.similarity.inputs import mean_response, responses_array
from spikelatent.errors import SpikelatentError

METRICS = ("correlation", "euclidean", "crossnobis", "poisson", "poisson_cv")
# Metrics computed on single trials, not on trial means.
TRIAL_METRICS = frozenset({"crossnobis", "poisson_cv"})
# Metrics of counts (rsatoolbox's Poisson KL divergences): the responses must be >= 0.
COUNT_METRICS = frozenset({"poisson", "poisson_cv"})
_METRIC_DESCRIPTION = {
    "correlation": "1 - Pearson correlation of the two stimuli's response patterns across units",
    "euclidean": "squared Euclidean distance of the mean response patterns, divided by the number "
    "of units (rsatoolbox's convention)",
    "crossnobis": "cross-validated squared Euclidean distance (leave one trial out, identity noise "
    "precision), divided by the number of units: unbiased by trial noise",
    "poisson": "symmetrised KL divergence of Poisson rates (rsatoolbox's 'poisson': mean counts "
    "shrunk towards 1 by a prior weight 0.1), divided by the number of units",
    "poisson_cv": "cross-validated symmetrised Poisson KL divergence (rsatoolbox's 'poisson_cv'), "
    "averaged over leave-one-trial-out folds, divided by the number of units",
}


def trial_source(x: Any, metric: str) -> Any:
    """What ``metric`` is computed on: a population Dataset's ``counts`` (its trials) when the
    metric needs single trials (:data:`TRIAL_METRICS`), else ``x`` itself (whose ``rate`` is then
    the representation)."""
    if metric in TRIAL_METRICS and isinstance(x, xr.Dataset) and "counts" in x.data_vars:
        return x["counts"]
    return x


def _rdm_values(responses: xr.DataArray, metric: str, what: str = "the responses") -> np.ndarray:
    """The (stimulus, stimulus) RDM of responses (crossnobis through rsatoolbox).

    ``what`` names the population in the errors (e.g. "the model population").
    """
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    if metric not in METRICS:
        raise SpikelatentError(f"unknown RDM metric {metric!r}; use one of {', '.join(METRICS)}")
    if metric in COUNT_METRICS and np.nanmin(responses.values) < 0:
        raise SpikelatentError(
            f"metric={metric!r} needs non-negative responses (counts or rates) of {what}; use "
            "metric='correlation' or 'euclidean' for signed responses"
        )
    if metric in TRIAL_METRICS:
        if "trial" not in responses.dims or responses.sizes["trial"] < 2:
            raise SpikelatentError(
                f"metric={metric!r} needs trials of {what}, (trial, stimulus, unit) with >= 2 "
                f"trials, but it has dims {tuple(responses.dims)}; pass its trials (a "
                "spikelatent.population Dataset gives its counts) or use metric='correlation'"
            )
        values = responses.values
        if np.isnan(values).any():
            raise SpikelatentError(
                f"metric={metric!r} needs the same number of trials for every stimulus of {what}"
            )
        if metric == "poisson_cv":
            return _poisson_cv(values)
        n_trial, n_stimulus, n_unit = values.shape
        dataset = Dataset(
            values.reshape(-1, n_unit),
            obs_descriptors={
                "stimulus": np.tile(np.arange(n_stimulus), n_trial),
                "fold": np.repeat(np.arange(n_trial), n_stimulus),
            },
        )
        with warnings.catch_warnings():
            # rsatoolbox fills its integer descriptors' averages with NaN first (harmless cast).
            warnings.filterwarnings("ignore", "invalid value encountered in cast", RuntimeWarning)
            rdm = calc_rdm(
                dataset, method="crossnobis", descriptor="stimulus", cv_descriptor="fold"
            )
    else:
        mean = mean_response(responses).values
        if metric == "correlation":
            flat = np.ptp(mean, axis=1) == 0
            if flat.any():
                raise SpikelatentError(
                    f"{int(flat.sum())} stimuli have the same response in every unit, so their "
                    "correlation distance is undefined; use metric='euclidean' or drop them"
                )
        return _rdm_of_means(mean, metric)
    return rdm.get_matrices()[0]


def _poisson_cv(values: np.ndarray) -> np.ndarray:
    """rsatoolbox's 'poisson_cv' RDM of (trial, stimulus, unit) counts, averaged over the
    leave-one-trial-out folds.

    rsatoolbox 0.3.2's ``calc_rdm_poisson_cv`` returns the RDM of its last fold only (its loop
    overwrites the result), so each fold is one rsatoolbox call (the training trials' mean and the
    held-out trial, the held-out one as its last fold) and the folds are averaged here.
    """
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    n_trial, n_stimulus, n_unit = values.shape
    total = values.sum(axis=0)
    stimulus = np.tile(np.arange(n_stimulus), 2)
    fold = np.repeat([0, 1], n_stimulus)  # 1 (held out) is rsatoolbox's last fold
    matrix = np.zeros((n_stimulus, n_stimulus))
    for k in range(n_trial):
        train = (total - values[k]) / (n_trial - 1)
        dataset = Dataset(
            np.concatenate([train, values[k]]),
            obs_descriptors={"stimulus": stimulus, "fold": fold},
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "invalid value encountered in cast", RuntimeWarning)
            rdm = calc_rdm(
                dataset, method="poisson_cv", descriptor="stimulus", cv_descriptor="fold"
            )
        matrix += rdm.get_matrices()[0]
    return matrix / n_trial


def _rdm_of_means(mean: np.ndarray, metric: str) -> np.ndarray:
    """rsatoolbox's correlation / euclidean RDM of (stimulus, unit) means, as one BLAS product.

    rsatoolbox computes the same numbers through a non-BLAS einsum, ~10x slower at 2,000 stimuli
    (tests check the two agree). ``poisson`` goes through rsatoolbox itself.
    """
    if metric == "poisson":
        from rsatoolbox.data import Dataset
        from rsatoolbox.rdm import calc_rdm

        return calc_rdm(Dataset(mean), method="poisson").get_matrices()[0]
    if metric == "correlation":
        centred = mean - mean.mean(axis=1, keepdims=True)
        centred /= np.sqrt(np.einsum("ij,ij->i", centred, centred))[:, None]
        matrix = 1.0 - centred @ centred.T
    else:
        squares = np.einsum("ij,ij->i", mean, mean)
        matrix = (squares[:, None] + squares[None, :] - 2.0 * (mean @ mean.T)) / mean.shape[1]
    matrix = (matrix + matrix.T) / 2  # exactly symmetric, so (i, j) and (j, i) tie
    np.fill_diagonal(matrix, 0.0)
    return matrix


def _rdm_array(matrix: np.ndarray, stimulus: np.ndarray, metric: str, name: str) -> xr.DataArray:
    return xr.DataArray(
        matrix,
        dims=("stimulus", "stimulus_"),
        coords={"stimulus": stimulus, "stimulus_": stimulus},
        name=name,
        attrs={"metric": metric, "description": _METRIC_DESCRIPTION[metric]},
    )


def dissimilarity_matrix(responses: Any, metric: str = "correlation") -> xr.DataArray:
    """Representational dissimilarity matrix of a population's responses.

    Args:
        responses: ``(stimulus, unit)`` or ``(trial, stimulus, unit)`` (see :func:`responses_array`).
            ``"correlation"`` and ``"euclidean"`` use the trial-averaged responses (a population
            Dataset's ``rate``), ``"crossnobis"`` the single trials (its ``counts``).
        metric: ``"correlation"`` (1 − Pearson r across units), ``"euclidean"`` (squared Euclidean
            distance / n_units, as rsatoolbox) or ``"crossnobis"`` (its leave-one-trial-out
            cross-validated, unbiased version; needs equal trial counts).

    Returns:
        DataArray ``rdm`` ``(stimulus, stimulus_)``, symmetric with a zero diagonal; coordinates
        are the stimulus ids; ``attrs["metric"]``, ``attrs["description"]``.
    """
    responses = responses_array(trial_source(responses, metric))
    if responses.sizes["stimulus"] < 2:
        raise SpikelatentError("an RDM needs at least 2 stimuli")
    matrix = _rdm_values(responses, metric)
    return _rdm_array(matrix, responses["stimulus"].values, metric, "rdm")

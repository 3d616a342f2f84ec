"""Representational dissimilarity matrices (RDMs) of a population's responses."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr

from spikelatent.analysis.similarity.inputs import mean_response, responses_array
from spikelatent.errors import SpikelatentError

METRICS = ("correlation", "euclidean", "crossnobis")
# Metrics computed on single trials, not on trial means.
TRIAL_METRICS = frozenset({"crossnobis"})
_METRIC_DESCRIPTION = {
    "correlation": "1 - Pearson correlation of the two stimuli's response patterns across units",
    "euclidean": "squared Euclidean distance of the mean response patterns, divided by the number "
    "of units (rsatoolbox's convention)",
    "crossnobis": "cross-validated squared Euclidean distance (leave one trial out, identity noise "
    "precision), divided by the number of units: unbiased by trial noise",
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
    if metric == "crossnobis":
        if "trial" not in responses.dims or responses.sizes["trial"] < 2:
            raise SpikelatentError(
                f"metric='crossnobis' needs trials of {what}, (trial, stimulus, unit) with >= 2 "
                f"trials, but it has dims {tuple(responses.dims)}; pass its trials (a "
                "spikelatent.population Dataset gives its counts) or use metric='correlation'"
            )
        values = responses.values
        if np.isnan(values).any():
            raise SpikelatentError(
                f"metric='crossnobis' needs the same number of trials for every stimulus of {what}"
            )
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


def _rdm_of_means(mean: np.ndarray, metric: str) -> np.ndarray:
    """rsatoolbox's correlation / euclidean RDM of (stimulus, unit) means, as one BLAS product.

    rsatoolbox computes the same numbers through a non-BLAS einsum, ~10x slower at 2,000 stimuli
    (tests check the two agree).
    """
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

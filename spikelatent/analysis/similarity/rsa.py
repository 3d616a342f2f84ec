"""Representational similarity analysis of two populations."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from spikelatent.analysis.similarity.compare import (
    COMPARISONS,
    _bootstrap,
    _compare_vectors,
    _permutation_null,
)
from spikelatent.analysis.similarity.inputs import responses_array, shared_stimuli
from spikelatent.analysis.similarity.rdm import _rdm_array, _rdm_values, trial_source
from spikelatent.analysis.similarity.recording import prepare_recording
from spikelatent.errors import SpikelatentError


def rsa(
    a: Any,
    b: Any,
    metric: str = "correlation",
    compare: str = "spearman",
    *,
    n_boot: int = 200,
    confidence: float = 0.95,
    n_splits: int | None = 2,
    split_repeats: int = 4,
    n_permutations: int = 100,
    seed: int = 0,
    names: tuple[str, str] = ("a", "b"),
) -> xr.Dataset:
    """Representational similarity of two populations on their shared stimuli.

    The RDMs of both (:func:`dissimilarity_matrix`) are compared on their upper triangles with
    rsatoolbox's ``compare``. The interval resamples stimuli with replacement (pairs of a stimulus
    with its own copy left out). When ``b`` has at least two trials per stimulus, its trials are split
    into disjoint groups and the noise ceiling of Nili et al. (2014) is computed from the group RDMs
    (rsatoolbox's ``boot_noise_ceiling``): the lower bound compares each group's RDM with the mean of
    the others (leave one group out), the upper bound with the mean of all. The true RDM's expected
    score against a group RDM lies between them; ``similarity_split`` is ``a``'s score on that scale
    (mean over groups), to be read against the band.

    Args:
        a: first population (typically the model), responses as in :func:`responses_array`; a
            population Dataset gives its ``rate``, or its ``counts`` for metrics computed on
            single trials (``"crossnobis"``).
        b: second population (typically the recording); its trials define the noise ceiling. A
            :class:`RecordingSummary` keeps its RDM and ceiling for the next call.
        metric: RDM metric, see :func:`dissimilarity_matrix`.
        compare: ``"spearman"``, ``"kendall_tau_a"`` (Kendall's τ_A: no tie correction, fair to
            RDMs with ties) or ``"pearson"``.
        n_boot: bootstrap resamples of the stimuli (0: no interval; ~0.1 s each at 2,000 stimuli).
        confidence: coverage of the percentile interval.
        n_splits: trial groups of the noise ceiling: 2 = split halves (default); ``None`` = one
            group per trial (leave one trial out).
        split_repeats: random split-half partitions averaged (ignored with ``n_splits=None``).
        n_permutations: random relabellings of ``a``'s stimuli for the shuffled-stimulus null
            (0: none). A score means something only above this null and below the ceiling.
        seed: seed of the bootstrap and of the splits (equal seeds give the same resamples for
            different ``a`` on the same stimuli, so bootstrap samples of two models are paired).
        names: what ``a`` and ``b`` are called in error messages.

    Returns:
        Dataset: scalars ``similarity``, ``ci_low``, ``ci_high``, (with trials in ``b``)
        ``noise_ceiling_low``, ``noise_ceiling_high``, ``similarity_split``; ``bootstrap``
        (sample) of the resampled similarities; ``rdm_a``, ``rdm_b`` (stimulus, stimulus_);
        with ``n_permutations``: ``null`` (permutation), its ``confidence`` quantile ``null_high``
        and the one-sided permutation p-value ``p_permutation``.
    """
    if compare not in COMPARISONS:
        raise SpikelatentError(
            f"unknown comparison {compare!r}; use one of {', '.join(COMPARISONS)}"
        )
    if int(n_boot) != n_boot or n_boot < 0:
        raise SpikelatentError(f"n_boot must be an integer >= 0; got {n_boot}")
    if int(n_permutations) != n_permutations or n_permutations < 0:
        raise SpikelatentError(f"n_permutations must be an integer >= 0; got {n_permutations}")
    if not 0 < confidence < 1:
        raise SpikelatentError(f"confidence must lie in (0, 1); got {confidence}")
    if n_splits is not None and (int(n_splits) != n_splits or n_splits < 2):
        raise SpikelatentError(f"n_splits must be an integer >= 2 or None; got {n_splits}")
    a = responses_array(trial_source(a, metric), names[0])
    recording = prepare_recording(b, names[1])
    shared = shared_stimuli(a, recording.responses, names=names)
    a, recording = a.sel(stimulus=shared), recording.restricted(shared)
    stimulus = a["stimulus"].values
    n = len(stimulus)
    rdm_a, rdm_b = _rdm_values(a, metric, names[0]), recording.rdm(metric)
    rows, cols = recording.pairs()
    x, y = rdm_a[rows, cols], recording.rdm_vector(metric)
    value = _compare_vectors(x, y, compare)
    samples = (
        _bootstrap(
            x,
            y,
            rows,
            cols,
            n,
            compare,
            int(n_boot),
            seed,
            sorted_y=recording.sorted_pairs(metric) if compare == "spearman" else None,
        )
        if n_boot
        else np.empty(0)
    )
    tail = (1 - confidence) / 2
    low, high = (
        (float(q) for q in np.nanquantile(samples, [tail, 1 - tail]))
        if n_boot
        else (np.nan, np.nan)
    )
    data: dict[str, Any] = {
        "similarity": xr.DataArray(value, attrs={"long_name": f"RDM {compare} correlation"}),
        "ci_low": xr.DataArray(low),
        "ci_high": xr.DataArray(high),
        "bootstrap": xr.DataArray(samples, dims="sample"),
        "rdm_a": _rdm_array(rdm_a, stimulus, metric, "rdm_a"),
        "rdm_b": _rdm_array(rdm_b, stimulus, metric, "rdm_b"),
    }
    if n_permutations:
        null = _permutation_null(
            rdm_a,
            y,
            rows,
            cols,
            compare,
            int(n_permutations),
            seed,
            target=recording.rdm_ranks(metric) if compare == "spearman" else None,
        )
        data["null"] = xr.DataArray(null, dims="permutation")
        data["null_high"] = xr.DataArray(
            float(np.quantile(null, confidence)),
            attrs={"long_name": f"{confidence:g} quantile of the shuffled-stimulus null"},
        )
        data["p_permutation"] = xr.DataArray(
            float((1 + np.sum(null >= value)) / (1 + len(null))),
            attrs={"long_name": "one-sided permutation p-value (stimuli of a relabelled)"},
        )
    attrs: dict[str, Any] = {
        "metric": metric,
        "compare": compare,
        "n_stimuli": n,
        "n_boot": int(n_boot),
        "confidence": confidence,
        "interval": "percentile bootstrap over stimuli",
        "seed": int(seed),
    }
    if recording.has_repeats_for(metric):
        ceiling = recording.noise_ceiling(metric, compare, n_splits, int(split_repeats), seed)
        data["noise_ceiling_low"] = xr.DataArray(ceiling.low)
        data["noise_ceiling_high"] = xr.DataArray(ceiling.high)
        data["similarity_split"] = xr.DataArray(ceiling.split_score(x))
        n_groups = ceiling.n_groups
        attrs["noise_ceiling"] = (
            f"Nili et al. 2014 over {n_groups} disjoint trial groups of b "
            + (
                "(leave one trial out)"
                if n_splits is None
                else f"(random split, {split_repeats} repeats)"
            )
            + "; lower: each group vs the mean of the others, upper: each group vs the mean of all"
        )
    return xr.Dataset(data, attrs=attrs)

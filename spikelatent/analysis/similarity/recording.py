"""Everything about a recording that does not depend on the model, computed once per recording.

A :class:`RecordingSummary` wraps recorded responses and keeps, as they are first asked for, its
RDMs, the sorted pairs its bootstrap needs, its noise ceilings, its units' split-half
reliabilities, its CKA Gram terms and its population statistics. Every comparison function takes
it wherever it takes the recording, so scoring N models (or N representations of one model)
against one recording does the recording-side work once. Results are keyed by every parameter
they depend on (metric, comparison, splits, seed), so a summary gives the same numbers as the
recording passed as an array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from spikelatent.analysis.similarity.ceiling import (
    NoiseCeiling,
    _noise_ceiling,
    _split_half_reliability,
)
from spikelatent.analysis.similarity.compare import _ranks, _SortedPairs
from spikelatent.analysis.similarity.inputs import mean_response, responses_array
from spikelatent.analysis.similarity.rdm import TRIAL_METRICS, _rdm_values

__all__ = ["RecordingSummary", "prepare_recording"]


class RecordingSummary:
    """A recording's responses and the model-independent quantities derived from them (cached).

    Args:
        recorded: recorded responses, ``(trial, stimulus, unit)`` or ``(stimulus, unit)`` (see
            :func:`~spikelatent.analysis.similarity.inputs.responses_array`), or a population
            Dataset (its ``rate`` is the representation, its ``counts`` the trials).
        what: the name used in error messages.

    Attributes:
        responses: the checked float64 responses DataArray (the representation).
        trials: the single trials, ``(trial, stimulus, unit)``, for metrics that need them: a
            Dataset's ``counts``, else ``responses`` when it has trials, else None.
        stimulus: the stimulus ids, in the recording's order.
    """

    def __init__(self, recorded: Any, what: str = "recorded responses", *, _trials: Any = None):
        self.responses = responses_array(recorded, what)
        if _trials is None and isinstance(recorded, xr.Dataset) and "counts" in recorded:
            _trials = recorded["counts"]
        if _trials is not None:
            self.trials = responses_array(_trials, what).sel(stimulus=self.responses["stimulus"])
        else:
            self.trials = self.responses if "trial" in self.responses.dims else None
        self.stimulus = np.asarray(self.responses["stimulus"].values)
        self.what = what
        self._cache: dict[tuple, Any] = {}
        self._subsets: dict[tuple, RecordingSummary] = {}

    def _memo(self, key: tuple, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def n_stimuli(self) -> int:
        """Number of stimuli."""
        return int(self.responses.sizes["stimulus"])

    @property
    def has_repeats(self) -> bool:
        """Whether every stimulus has at least two (non-padded) trials: ceilings and
        reliabilities need them."""
        return self._memo(
            ("has_repeats",),
            lambda: (
                "trial" in self.responses.dims
                and bool((np.isfinite(self.responses.values).all(axis=-1).sum(axis=0) >= 2).all())
            ),
        )

    @property
    def mean(self) -> xr.DataArray:
        """Trial-averaged ``(stimulus, unit)`` responses."""
        return self._memo(("mean",), lambda: mean_response(self.responses))

    def restricted(self, stimulus: np.ndarray) -> RecordingSummary:
        """The summary of the recording on ``stimulus`` (ids, in that order): ``self`` when they
        are the recording's own stimuli in its order, else a (cached) summary of the selection."""
        stimulus = np.asarray(stimulus)
        if len(stimulus) == len(self.stimulus) and np.array_equal(stimulus, self.stimulus):
            return self
        key = tuple(stimulus.tolist())
        if key not in self._subsets:
            separate = self.trials is not None and self.trials is not self.responses
            self._subsets[key] = RecordingSummary(
                self.responses.sel(stimulus=stimulus),
                self.what,
                _trials=self.trials.sel(stimulus=stimulus) if separate else None,
            )
        return self._subsets[key]

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column indices of the RDM's upper triangle (``numpy.triu_indices(n, 1)``)."""
        return self._memo(("pairs",), lambda: np.triu_indices(self.n_stimuli, k=1))

    def source(self, metric: str) -> xr.DataArray:
        """What ``metric`` is computed on: the single trials for :data:`TRIAL_METRICS` (a
        one-line error naming the recording when it has none), else the responses."""
        if metric not in TRIAL_METRICS:
            return self.responses
        if self.trials is None:
            # _rdm_values words the error (no trial dimension).
            _rdm_values(self.responses, metric, self.what)
        return self.trials

    def rdm(self, metric: str) -> np.ndarray:
        """The ``(stimulus, stimulus)`` RDM (see :func:`dissimilarity_matrix`)."""
        return self._memo(
            ("rdm", metric), lambda: _rdm_values(self.source(metric), metric, self.what)
        )

    def rdm_vector(self, metric: str) -> np.ndarray:
        """The RDM's upper triangle, in :meth:`pairs` order."""
        rows, cols = self.pairs()
        return self._memo(("rdm_vector", metric), lambda: self.rdm(metric)[rows, cols])

    def rdm_ranks(self, metric: str) -> np.ndarray:
        """Mid-ranks of :meth:`rdm_vector` (the target of the Spearman permutation null)."""
        return self._memo(("rdm_ranks", metric), lambda: _ranks(self.rdm_vector(metric)))

    def sorted_pairs(self, metric: str) -> _SortedPairs:
        """The RDM's pairs in order of dissimilarity, for the Spearman stimulus bootstrap."""
        rows, cols = self.pairs()
        return self._memo(
            ("sorted_pairs", metric),
            lambda: _SortedPairs(
                self.rdm_vector(metric), rows.astype(np.int32), cols.astype(np.int32)
            ),
        )

    def has_repeats_for(self, metric: str) -> bool:
        """Whether the noise ceiling of ``metric`` can be computed (>= 2 trials per stimulus in
        what the metric is computed on)."""
        if metric not in TRIAL_METRICS or self.trials is self.responses:
            return self.has_repeats
        return self.trials is not None and bool(
            (np.isfinite(self.trials.values).all(axis=-1).sum(axis=0) >= 2).all()
        )

    def noise_ceiling(
        self, metric: str, compare: str, n_splits: int | None, split_repeats: int, seed: int
    ) -> NoiseCeiling:
        """Nili et al. (2014) bounds over disjoint trial groups (needs :meth:`has_repeats_for`)."""
        key = ("ceiling", metric, compare, n_splits, int(split_repeats), int(seed))
        return self._memo(
            key,
            lambda: _noise_ceiling(
                self.source(metric), metric, compare, n_splits, int(split_repeats), int(seed)
            ),
        )

    def reliability(self, split_repeats: int, seed: int) -> tuple[np.ndarray, np.random.Generator]:
        """Per unit: Spearman–Brown corrected split-half reliability of the trial means, and a
        generator in the state the split draws left ``numpy.random.default_rng(seed)`` in (so the
        predictivity's bootstrap that follows draws what it would draw without the summary)."""

        def compute():
            rng = np.random.default_rng(seed)
            values = _split_half_reliability(self.responses, int(split_repeats), rng)
            return values, rng.bit_generator.state

        values, state = self._memo(("reliability", int(split_repeats), int(seed)), compute)
        rng = np.random.default_rng()
        rng.bit_generator.state = state
        return values, rng

    def cka_terms(self, debiased: bool) -> tuple[np.ndarray, float]:
        """The recording's side of linear CKA: the centred means and ``‖YᵀY‖_F`` (plain), or the
        Gram matrix ``YYᵀ`` and its unbiased self-HSIC (debiased)."""
        from spikelatent.analysis.similarity.cka import _unbiased_hsic

        def compute():
            y = self.mean.values
            if debiased:
                gram = y @ y.T
                return gram, _unbiased_hsic(gram, gram)
            y = y - y.mean(axis=0)
            return y, float(np.linalg.norm(y.T @ y))

        return self._memo(("cka", bool(debiased)), compute)

    def centred_gram(self) -> np.ndarray:
        """``YYᵀ`` of the column-centred trial means (stimulus, stimulus), for wide CKA."""

        def compute():
            y, _ = self.cka_terms(debiased=False)
            return y @ y.T

        return self._memo(("centred_gram",), compute)

    def statistics(self) -> xr.Dataset | None:
        """:func:`population_statistics` of the recording, or None without >= 2 trials or with
        negative responses."""
        from spikelatent.analysis.similarity.statistics import population_statistics

        def compute():
            x = self.responses
            if "trial" not in x.dims or x.sizes["trial"] < 2 or np.nanmin(x.values) < 0:
                return None
            return population_statistics(x)

        return self._memo(("statistics",), compute)


def prepare_recording(recorded: Any, what: str = "recorded responses") -> RecordingSummary:
    """Wrap recorded responses once to compare many populations (or representations) with them.

    Example::

        recording = prepare_recording(read_responses("session.nwb"))
        for name, pop in populations.items():
            results[name] = compare_populations(pop, recording)   # recording side done once

    A :class:`RecordingSummary` passed again is returned as it is.
    """
    if isinstance(recorded, RecordingSummary):
        return recorded
    return RecordingSummary(recorded, what)

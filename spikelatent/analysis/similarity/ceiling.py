"""What a recording's trial noise allows: Nili et al. (2014) RDM noise ceilings and split-half
reliabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from spikelatent.analysis.similarity.compare import _compare_vectors, _pearson, _ranks
from spikelatent.analysis.similarity.rdm import TRIAL_METRICS, _rdm_of_means, _rdm_values
from spikelatent.errors import SpikelatentError


def _trial_groups(
    valid: np.ndarray, n_splits: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Assign each valid (trial, stimulus) to one of ``n_splits`` groups, balanced per stimulus.

    Returns the group index (trial, stimulus) (−1 for padded trials) and the number of groups.
    """
    n_valid = valid.sum(axis=0)
    if n_splits is None:  # leave one trial out: one group per trial
        n_groups = int(n_valid.min())
        rank = np.cumsum(valid, axis=0) - 1
        group = np.where(valid & (rank < n_groups), rank, -1)
        return group, n_groups
    keys = np.where(valid, rng.random(valid.shape), np.inf)
    rank = np.argsort(np.argsort(keys, axis=0), axis=0)
    group = np.where(valid, rank % n_splits, -1)
    return group, n_splits


def _group_means(values: np.ndarray, group: np.ndarray, n_groups: int) -> list[np.ndarray]:
    means = []
    for g in range(n_groups):
        mask = (group == g)[..., None]
        count = mask.sum(axis=0)
        means.append(np.where(mask, np.nan_to_num(values), 0.0).sum(axis=0) / count)
    return means


def _nili_bounds(
    vectors: np.ndarray, compare: str, scaled: np.ndarray | None = None
) -> tuple[float, float]:
    """Nili et al. (2014) noise ceiling of k RDM vectors, as rsatoolbox's ``boot_noise_ceiling``.

    Lower: mean over g of compare(RDM g, pool of the others); upper: of compare(RDM g, pool of all).
    The pool follows rsatoolbox's ``pool_rdm``: mean of ranks for rank comparisons, of z-scores for
    Pearson. Written out because rsatoolbox re-ranks every RDM in every comparison (a minute at
    2,000 stimuli); a test checks the two agree. ``scaled``: the vectors' ranks (or z-scores) if
    already computed.
    """
    k = len(vectors)
    if scaled is None:
        scaled = _scaled(vectors, compare)
    total = scaled.sum(axis=0)

    def score(g: int, pooled: np.ndarray, pooled_are_ranks: bool = False) -> float:
        if compare == "pearson":
            return _pearson(vectors[g], pooled)
        if compare == "spearman":
            return _pearson(scaled[g], pooled if pooled_are_ranks else _ranks(pooled))
        return _compare_vectors(vectors[g], pooled, compare)

    # With two groups the pool of "the others" is one group's ranks: no re-ranking needed.
    lower = np.mean(
        [score(g, (total - scaled[g]) / (k - 1), pooled_are_ranks=k == 2) for g in range(k)]
    )
    pooled_all = total / k
    if compare == "spearman":
        pooled_all = _ranks(pooled_all)
    upper = np.mean([score(g, pooled_all, pooled_are_ranks=True) for g in range(k)])
    return float(lower), float(upper)


def _scaled(vectors: np.ndarray, compare: str) -> np.ndarray:
    """What rsatoolbox's pool_rdm averages: z-scores for Pearson, ranks otherwise."""
    if compare == "pearson":
        return (vectors - vectors.mean(axis=1, keepdims=True)) / vectors.std(axis=1, keepdims=True)
    return np.asarray([_ranks(v) for v in vectors])


def _split_half_reliability(
    responses: xr.DataArray, split_repeats: int, rng: np.random.Generator
) -> np.ndarray:
    """Per unit: Spearman–Brown corrected split-half correlation across stimuli (trial mean)."""
    values = responses.values
    valid = np.isfinite(values).all(axis=-1)
    correlations = []
    for _ in range(split_repeats):
        group, _ = _trial_groups(valid, 2, rng)
        first, second = _group_means(values, group, 2)
        first = first - first.mean(axis=0)
        second = second - second.mean(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            correlations.append(
                (first * second).sum(axis=0)
                / np.sqrt((first**2).sum(axis=0) * (second**2).sum(axis=0))
            )
    half = np.nanmean(np.asarray(correlations), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 2 * half / (1 + half)


@dataclass(frozen=True)
class NoiseCeiling:
    """Nili et al. (2014) bounds of one recording's RDM, and its trial-group RDMs to score models.

    ``targets`` holds, per random partition of the trials, the group RDM vectors (their ranks for
    Spearman) against which a model's RDM is scored on the ceiling's scale.
    """

    low: float
    high: float
    n_groups: int
    compare: str
    targets: tuple[np.ndarray, ...]

    def split_score(self, rdm_a_vector: np.ndarray) -> float:
        """A model RDM (upper-triangle vector) against every group RDM: mean over groups, then
        over partitions (``similarity_split``)."""
        if self.compare == "spearman":
            rank_a = _ranks(rdm_a_vector)
            scores = [np.mean([_pearson(rank_a, ranks) for ranks in t]) for t in self.targets]
        else:
            scores = [
                np.mean([_compare_vectors(rdm_a_vector, v, self.compare) for v in t])
                for t in self.targets
            ]
        return float(np.mean(scores))


def _noise_ceiling(
    b: xr.DataArray,
    metric: str,
    compare: str,
    n_splits: int | None,
    split_repeats: int,
    seed: int,
) -> NoiseCeiling:
    """Nili et al. (2014) bounds over disjoint trial groups of ``b`` (depends on ``b`` only)."""
    values = b.values
    valid = np.isfinite(values).all(axis=-1)
    rng = np.random.default_rng(seed)
    low, high, targets = [], [], []
    repeats = 1 if n_splits is None else split_repeats
    for _ in range(repeats):
        group, n_groups = _trial_groups(valid, n_splits, rng)
        members = (group[..., None] == np.arange(n_groups)).sum(axis=0)  # (stimulus, group)
        if n_groups < 2 or (members < 1).any():
            raise SpikelatentError(
                f"the noise ceiling needs every stimulus in each of the {max(n_groups, 2)} trial "
                "groups; some stimuli have too few trials"
            )
        single_trials = metric in TRIAL_METRICS
        if single_trials and (members.min() < 2 or members.max() != members.min()):
            raise SpikelatentError(
                f"the {metric} noise ceiling needs >= 2 and equal trials per stimulus in every "
                "split; use n_splits=2 with an even number (>= 4) of trials per stimulus"
            )
        means = None if single_trials else _group_means(values, group, n_groups)
        vectors = []
        for g in range(n_groups):
            if single_trials:
                keep = group == g
                order = np.argsort(~keep, axis=0, kind="stable")[: members[0, g]]
                part = xr.DataArray(
                    np.take_along_axis(values, order[..., None], axis=0),
                    dims=("trial", "stimulus", "unit"),
                )
                matrix = _rdm_values(part, metric)
            else:
                matrix = _rdm_of_means(means[g], metric)
            vectors.append(matrix[np.triu_indices_from(matrix, k=1)])
        vectors = np.asarray(vectors)
        if not np.isfinite(vectors).all():
            raise SpikelatentError(
                "within a trial group some stimuli get the same response in every unit (e.g. no "
                "spikes), so their correlation distance is undefined; use metric='euclidean'"
            )
        scaled = _scaled(vectors, compare)
        lower, upper = _nili_bounds(vectors, compare, scaled)
        low.append(lower)
        high.append(upper)
        targets.append(scaled if compare == "spearman" else vectors)
    return NoiseCeiling(
        low=float(np.mean(low)),
        high=float(np.mean(high)),
        n_groups=int(n_groups),
        compare=compare,
        targets=tuple(targets),
    )

"""Comparisons of RDM vectors: rank helpers, the stimulus bootstrap and the shuffled-stimulus null."""

from __future__ import annotations

import os

import numpy as np

COMPARISONS = {"spearman": "spearman", "kendall_tau_a": "tau-a", "pearson": "corr"}


def _compare_vectors(x: np.ndarray, y: np.ndarray, compare: str) -> float:
    from rsatoolbox.rdm import compare as rsa_compare

    return float(np.asarray(rsa_compare(x[None], y[None], method=COMPARISONS[compare])).ravel()[0])


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    # Elementwise sums, not BLAS dot products: on a shared machine the threaded 1-D dot is ~10x slower.
    total = w.sum()
    dx = x - (w * x).sum() / total
    dy = y - (w * y).sum() / total
    wdx = w * dx
    sxy, sxx, syy = (wdx * dy).sum(), (wdx * dx).sum(), (w * dy * dy).sum()
    return float(sxy / np.sqrt(sxx * syy)) if sxx > 0 and syy > 0 else float("nan")


class _SortedPairs:
    """The pairs of an RDM vector in increasing order of dissimilarity, for weighted mid-ranks.

    The stimulus bootstrap repeats pair (i, j) of the RDM w_i·w_j times (w: how often each stimulus
    was drawn); the Spearman correlation of the resampled RDMs is the weighted Pearson correlation of
    weighted mid-ranks (exact, ties included), so no resampled RDM is ever built.
    """

    def __init__(self, values: np.ndarray, rows: np.ndarray, cols: np.ndarray):
        self.order = np.argsort(values, kind="stable")
        self.rows, self.cols = rows[self.order], cols[self.order]
        ordered = values[self.order]
        new_value = ordered[1:] != ordered[:-1]
        self.group = None if new_value.all() else np.concatenate([[0], np.cumsum(new_value)])

    def weights_and_ranks(self, multiplicity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer pair weights and mid-ranks, both in this vector's sorted order."""
        weights = np.take(multiplicity, self.rows) * np.take(multiplicity, self.cols)
        if self.group is None:
            # The total weight is at most n_stimuli² / 2: int32 holds it below 65,000 stimuli.
            accumulator = np.int32 if len(multiplicity) < 65_000 else np.int64
            return weights, np.cumsum(weights, dtype=accumulator) - (weights - 1) * 0.5
        group_weight = np.bincount(self.group, weights)
        before = np.cumsum(group_weight) - group_weight
        return weights, (before + (group_weight + 1) / 2)[self.group]


def _weighted_rank_correlation(
    weights_x: np.ndarray,
    ranks_x: np.ndarray,
    weights_y: np.ndarray,
    ranks_y: np.ndarray,
    y_in_x_order: np.ndarray,
) -> float:
    """Weighted Pearson correlation of weighted mid-ranks.

    With total weight W both rank vectors have weighted mean (W + 1) / 2 (true of mid-ranks, ties
    or not), so only three weighted sums of products remain.
    """
    total = float(weights_x.sum())
    centre = total * ((total + 1) / 2) ** 2
    sxx = np.einsum("i,i,i->", weights_x, ranks_x, ranks_x) - centre
    syy = np.einsum("i,i,i->", weights_y, ranks_y, ranks_y) - centre
    # The gather is the costliest step (random access); float32 ranks halve its memory traffic
    # (exact for mid-ranks below 2^23, i.e. up to ~4,000 stimuli; 1e-7 relative beyond).
    aligned_y = np.take(ranks_y.astype(np.float32), y_in_x_order)
    sxy = np.einsum("i,i,i->", weights_x, ranks_x, aligned_y, dtype=np.float64) - centre
    return float(sxy / np.sqrt(sxx * syy)) if sxx > 0 and syy > 0 else float("nan")


def _bootstrap(
    x: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    n_stimuli: int,
    compare: str,
    n_boot: int,
    seed: int,
    progress: bool | None = None,
    sorted_y: _SortedPairs | None = None,
) -> np.ndarray:
    """``n_boot`` comparisons of the RDM vectors x, y under resampling of the stimuli.

    Pairs of a stimulus with its own copy (distance 0 by construction) are left out, as rsatoolbox's
    pattern bootstrap does. ``sorted_y``: y's sorted pairs if already computed (Spearman).
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    # All resamples drawn first, in order: the result does not depend on the threads below.
    multiplicities = [
        np.bincount(rng.integers(0, n_stimuli, n_stimuli), minlength=n_stimuli).astype(np.int32)
        for _ in range(n_boot)
    ]
    rows, cols = rows.astype(np.int32), cols.astype(np.int32)
    if compare == "spearman":
        sorted_x = _SortedPairs(x, rows, cols)
        if sorted_y is None:
            sorted_y = _SortedPairs(y, rows, cols)
        # Position in y's sorted order of each pair of x's sorted order.
        inverse_y = np.empty_like(sorted_y.order)
        inverse_y[sorted_y.order] = np.arange(len(y))
        y_in_x_order = inverse_y[sorted_x.order]

    def one(multiplicity: np.ndarray) -> float:
        if compare == "pearson":
            weights = (np.take(multiplicity, rows) * np.take(multiplicity, cols)).astype(float)
            return _weighted_pearson(x, y, weights)
        if compare == "spearman":
            weights_x, rank_x = sorted_x.weights_and_ranks(multiplicity)
            weights_y, rank_y = sorted_y.weights_and_ranks(multiplicity)
            return _weighted_rank_correlation(weights_x, rank_x, weights_y, rank_y, y_in_x_order)
        # Kendall's tau-a has no cheap weighted form: expand the resampled pairs.
        counts = (multiplicity[rows] * multiplicity[cols]).astype(np.int64)
        return _compare_vectors(np.repeat(x, counts), np.repeat(y, counts), compare)

    # numpy releases the GIL in these loops: two threads use two cores.
    workers = min(2, os.cpu_count() or 1) if compare != "kendall_tau_a" else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        values = tqdm(
            pool.map(one, multiplicities),
            total=n_boot,
            desc="bootstrap",
            leave=False,
            disable=None if progress is None else not progress,
        )
        return np.fromiter(values, dtype=np.float64, count=n_boot)


def _ranks(vector: np.ndarray) -> np.ndarray:
    """Mid-ranks (1-based) as scipy.stats.rankdata, by one quicksort when there are no ties."""
    order = np.argsort(vector)
    ordered = vector[order]
    if not (ordered[1:] != ordered[:-1]).all():
        from scipy.stats import rankdata

        return rankdata(vector)
    ranks = np.empty(len(vector))
    ranks[order] = np.arange(1, len(vector) + 1)
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    dx, dy = x - x.mean(), y - y.mean()
    return float((dx * dy).sum() / np.sqrt((dx * dx).sum() * (dy * dy).sum()))


def _permutation_null(
    rdm_a: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    compare: str,
    n_permutations: int,
    seed: int,
    target: np.ndarray | None = None,
) -> np.ndarray:
    """RDM comparisons with ``a``'s stimuli relabelled at random (the shuffled-stimulus null).

    Relabelling stimuli only rearranges the entries of an RDM's upper triangle, so for Spearman the
    ranks are computed once and each permutation is one Pearson correlation of rearranged ranks.
    ``target``: the ranks of ``y`` (Spearman) if already computed.
    """
    rng = np.random.default_rng(seed)
    n = rdm_a.shape[0]
    if compare == "kendall_tau_a":
        values, target = rdm_a, y
    else:
        x = rdm_a[rows, cols]
        ranked = compare == "spearman"
        values = np.zeros_like(rdm_a, dtype=float)
        values[rows, cols] = _ranks(x) if ranked else x
        values[cols, rows] = values[rows, cols]
        if target is None:
            target = _ranks(y) if ranked else y
    null = np.empty(n_permutations)
    for index in range(n_permutations):
        order = rng.permutation(n)
        shuffled = values[order[rows], order[cols]]
        null[index] = (
            _compare_vectors(shuffled, target, compare)
            if compare == "kendall_tau_a"
            else _pearson(shuffled, target)
        )
    return null

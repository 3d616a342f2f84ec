"""Model populations held against recordings: RDMs, RSA with noise ceilings, CKA, linear predictivity.

Responses of either kind are ``(stimulus, unit)`` or ``(trial, stimulus, unit)`` DataArrays (numpy
arrays are accepted and get ``stimulus = 0..N-1``): spike counts, posterior rates, ΔF/F, firing
rates. The recorded layout ``(trial, unit)`` with a ``stimulus`` coordinate along ``trial`` (what
:func:`spikelatent.nwb.read_counts` gives) is grouped by stimulus first. Two populations are
compared only on the stimuli they share: every function joins on the ``stimulus`` coordinate (a
stable stimulus id) and refuses when fewer than three are shared.

* :func:`dissimilarity_matrix`: the representational dissimilarity matrix (RDM), via rsatoolbox.
* :func:`rsa`: RDM correlation (rsatoolbox's ``compare``) with a bootstrap-over-stimuli interval
  and, when the second population has trials, the noise ceiling of Nili et al. (2014).
* :func:`linear_cka`: linear centred kernel alignment (Kornblith et al. 2019), optionally debiased.
* :func:`linear_predictivity`: cross-validated ridge regression from features to each unit
  (scikit-learn), Pearson r and R² per unit, corrected for the unit's split-half reliability.
* :func:`compare_populations`: all of the above on shared stimuli, and the population statistics
  of both side by side (also when no stimulus is shared).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import xarray as xr

from spikelatent.errors import SpikelatentError

__all__ = [
    "COMPARISONS",
    "METRICS",
    "compare_populations",
    "dissimilarity_matrix",
    "linear_cka",
    "linear_predictivity",
    "population_statistics",
    "rank_models",
    "responses_array",
    "rsa",
    "shared_stimuli",
]

METRICS = ("correlation", "euclidean", "crossnobis")
# Our names -> rsatoolbox.rdm.compare's method names.
COMPARISONS = {"spearman": "spearman", "kendall_tau_a": "tau-a", "pearson": "corr"}
_METRIC_DESCRIPTION = {
    "correlation": "1 - Pearson correlation of the two stimuli's response patterns across units",
    "euclidean": "squared Euclidean distance of the mean response patterns, divided by the number "
    "of units (rsatoolbox's convention)",
    "crossnobis": "cross-validated squared Euclidean distance (leave one trial out, identity noise "
    "precision), divided by the number of units: unbiased by trial noise",
}
_MIN_STIMULI = 3


# --------------------------------------------------------------------------- inputs


def responses_array(x: Any, what: str = "responses") -> xr.DataArray:
    """``x`` as a float64 DataArray with dims ``(stimulus, unit)`` or ``(trial, stimulus, unit)``.

    Accepts a DataArray, a Dataset (its ``rate``, else ``counts``, else ``responses`` variable), a
    numpy array of rank 2 (stimulus, unit) or 3 (trial, stimulus, unit), or the recorded layout
    ``(trial, unit)`` with a ``stimulus`` coordinate along ``trial`` (grouped by stimulus; stimuli
    with fewer trials are padded with NaN trials). NaN is allowed only as whole padded trials.
    """
    if isinstance(x, xr.Dataset):
        for name in ("rate", "counts", "responses"):
            if name in x.data_vars:
                x = x[name]
                break
        else:
            raise SpikelatentError(
                f"{what}: a Dataset needs a 'rate', 'counts' or 'responses' variable; "
                f"it has {sorted(map(str, x.data_vars))}"
            )
    elif not isinstance(x, xr.DataArray):
        array = np.asarray(x)
        if array.ndim == 2:
            x = xr.DataArray(array, dims=("stimulus", "unit"))
        elif array.ndim == 3:
            x = xr.DataArray(array, dims=("trial", "stimulus", "unit"))
        else:
            raise SpikelatentError(
                f"{what}: expected a (stimulus, unit) or (trial, stimulus, unit) array, got shape "
                f"{array.shape}"
            )
    if (
        "stimulus" not in x.dims
        and "trial" in x.dims
        and "stimulus" in x.coords
        and x["stimulus"].dims == ("trial",)
    ):
        from spikelatent.analysis._layout import group_along

        x = group_along(x, "trial", "stimulus")
    extra = [d for d in x.dims if d not in ("trial", "stimulus", "unit")]
    if "stimulus" not in x.dims or "unit" not in x.dims or extra:
        raise SpikelatentError(
            f"{what}: expected dims (stimulus, unit) or (trial, stimulus, unit), got {tuple(x.dims)}; "
            "average or select the other dims first (e.g. .mean('time'))"
        )
    dims = ("trial", "stimulus", "unit") if "trial" in x.dims else ("stimulus", "unit")
    x = x.transpose(*dims)
    if x.dtype.kind not in "uif":
        raise SpikelatentError(f"{what}: responses must be numeric, got dtype {x.dtype}")
    values = np.asarray(x.values, dtype=np.float64)
    if np.isinf(values).any():
        raise SpikelatentError(f"{what}: responses contain infinite values; remove them first")
    if "stimulus" not in x.coords:
        x = x.assign_coords(stimulus=np.arange(x.sizes["stimulus"]))
    if "unit" not in x.coords:
        x = x.assign_coords(unit=np.arange(x.sizes["unit"]))
    ids = np.asarray(x["stimulus"].values)
    if len(np.unique(ids)) != len(ids):
        raise SpikelatentError(f"{what}: stimulus ids are not unique; each stimulus needs one id")
    nan = np.isnan(values)
    if nan.any():
        rows = nan.any(axis=-1)
        partial = rows & ~nan.all(axis=-1)
        if values.ndim == 2 or partial.any():
            raise SpikelatentError(
                f"{what}: {int(rows.sum())} response rows contain NaN; drop those stimuli/trials "
                "or the units that were not observed before comparing"
            )
        empty = rows.all(axis=0)
        if empty.any():
            raise SpikelatentError(
                f"{what}: {int(empty.sum())} stimuli have no trial (all NaN); drop them first"
            )
    return x.copy(data=values)


def _mean_response(x: xr.DataArray) -> xr.DataArray:
    """Trial-averaged ``(stimulus, unit)`` responses (NaN-padded trials skipped)."""
    if "trial" not in x.dims:
        return x
    with np.errstate(invalid="ignore"):
        return x.mean("trial", skipna=True)


def shared_stimuli(*populations: xr.DataArray, names: tuple[str, ...] | None = None) -> np.ndarray:
    """The stimulus ids present in every population, in the first one's order.

    Raises a one-line error when fewer than three stimuli are shared (nothing to compare).
    """
    names = names or tuple(f"population {i + 1}" for i in range(len(populations)))
    ids = np.asarray(populations[0]["stimulus"].values)
    keep = np.ones(len(ids), dtype=bool)
    for other in populations[1:]:
        other_ids = np.asarray(other["stimulus"].values)
        if ids.dtype.kind != other_ids.dtype.kind and {ids.dtype.kind, other_ids.dtype.kind} - {
            "i",
            "u",
        }:
            keep[:] = False
            break
        keep &= np.isin(ids, other_ids)
    shared = ids[keep]
    if len(shared) < _MIN_STIMULI:
        raise SpikelatentError(
            f"{' and '.join(names)} share {len(shared)} stimulus ids (need at least {_MIN_STIMULI}); "
            "they must carry the same 'stimulus' coordinate (image index or file name)"
        )
    return shared


def _aligned(a: Any, b: Any, names: tuple[str, str]) -> tuple[xr.DataArray, xr.DataArray]:
    a = responses_array(a, names[0])
    b = responses_array(b, names[1])
    shared = shared_stimuli(a, b, names=names)
    return a.sel(stimulus=shared), b.sel(stimulus=shared)


# --------------------------------------------------------------------------- RDMs


def _rdm_values(responses: xr.DataArray, metric: str) -> np.ndarray:
    """The (stimulus, stimulus) RDM of responses (crossnobis through rsatoolbox)."""
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    if metric not in METRICS:
        raise SpikelatentError(f"unknown RDM metric {metric!r}; use one of {', '.join(METRICS)}")
    if metric == "crossnobis":
        if "trial" not in responses.dims or responses.sizes["trial"] < 2:
            raise SpikelatentError(
                "metric='crossnobis' needs trials: responses (trial, stimulus, unit) with >= 2 trials"
            )
        values = responses.values
        if np.isnan(values).any():
            raise SpikelatentError(
                "metric='crossnobis' needs the same number of trials for every stimulus"
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
        mean = _mean_response(responses).values
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
            ``"correlation"`` and ``"euclidean"`` use the trial-averaged responses.
        metric: ``"correlation"`` (1 − Pearson r across units), ``"euclidean"`` (squared Euclidean
            distance / n_units, as rsatoolbox) or ``"crossnobis"`` (its leave-one-trial-out
            cross-validated, unbiased version; needs equal trial counts).

    Returns:
        DataArray ``rdm`` ``(stimulus, stimulus_)``, symmetric with a zero diagonal; coordinates
        are the stimulus ids; ``attrs["metric"]``, ``attrs["description"]``.
    """
    responses = responses_array(responses)
    if responses.sizes["stimulus"] < 2:
        raise SpikelatentError("an RDM needs at least 2 stimuli")
    matrix = _rdm_values(responses, metric)
    return _rdm_array(matrix, responses["stimulus"].values, metric, "rdm")


# --------------------------------------------------------------------------- RDM comparison


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
) -> np.ndarray:
    """``n_boot`` comparisons of the RDM vectors x, y under resampling of the stimuli.

    Pairs of a stimulus with its own copy (distance 0 by construction) are left out, as rsatoolbox's
    pattern bootstrap does.
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
        sorted_x, sorted_y = _SortedPairs(x, rows, cols), _SortedPairs(y, rows, cols)
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
) -> np.ndarray:
    """RDM comparisons with ``a``'s stimuli relabelled at random (the shuffled-stimulus null).

    Relabelling stimuli only rearranges the entries of an RDM's upper triangle, so for Spearman the
    ranks are computed once and each permutation is one Pearson correlation of rearranged ranks.
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


def _noise_ceiling(
    b: xr.DataArray,
    rdm_a_vector: np.ndarray,
    metric: str,
    compare: str,
    n_splits: int | None,
    split_repeats: int,
    seed: int,
) -> dict[str, float]:
    """Nili et al. (2014) bounds over disjoint trial groups of ``b`` and the score on their scale."""
    values = b.values
    valid = np.isfinite(values).all(axis=-1)
    rng = np.random.default_rng(seed)
    rank_a = _ranks(rdm_a_vector) if compare == "spearman" else None
    low, high, split_score = [], [], []
    repeats = 1 if n_splits is None else split_repeats
    for _ in range(repeats):
        group, n_groups = _trial_groups(valid, n_splits, rng)
        members = (group[..., None] == np.arange(n_groups)).sum(axis=0)  # (stimulus, group)
        if n_groups < 2 or (members < 1).any():
            raise SpikelatentError(
                f"the noise ceiling needs every stimulus in each of the {max(n_groups, 2)} trial "
                "groups; some stimuli have too few trials"
            )
        if metric == "crossnobis" and (members.min() < 2 or members.max() != members.min()):
            raise SpikelatentError(
                "crossnobis noise ceiling needs >= 2 and equal trials per stimulus in every "
                "split; use n_splits=2 with an even number (>= 4) of trials per stimulus"
            )
        means = _group_means(values, group, n_groups) if metric != "crossnobis" else None
        vectors = []
        for g in range(n_groups):
            if metric == "crossnobis":
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
        if compare == "spearman":
            split_score.append(np.mean([_pearson(rank_a, ranks) for ranks in scaled]))
        else:
            split_score.append(
                np.mean([_compare_vectors(rdm_a_vector, v, compare) for v in vectors])
            )
    return {
        "noise_ceiling_low": float(np.mean(low)),
        "noise_ceiling_high": float(np.mean(high)),
        "similarity_split": float(np.mean(split_score)),
        "n_groups": int(n_groups),
    }


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
        a: first population (typically the model), responses as in :func:`responses_array`.
        b: second population (typically the recording); its trials define the noise ceiling.
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
    a, b = _aligned(a, b, ("a", "b"))
    stimulus = a["stimulus"].values
    n = len(stimulus)
    rdm_a, rdm_b = _rdm_values(a, metric), _rdm_values(b, metric)
    rows, cols = np.triu_indices(n, k=1)
    x, y = rdm_a[rows, cols], rdm_b[rows, cols]
    value = _compare_vectors(x, y, compare)
    samples = _bootstrap(x, y, rows, cols, n, compare, int(n_boot), seed) if n_boot else np.empty(0)
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
        null = _permutation_null(rdm_a, y, rows, cols, compare, int(n_permutations), seed)
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
    if "trial" in b.dims and (np.isfinite(b.values).all(axis=-1).sum(axis=0) >= 2).all():
        ceiling = _noise_ceiling(b, x, metric, compare, n_splits, int(split_repeats), seed)
        n_groups = ceiling.pop("n_groups")
        for key, val in ceiling.items():
            data[key] = xr.DataArray(val)
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


# --------------------------------------------------------------------------- CKA


def linear_cka(a: Any, b: Any, debiased: bool = False) -> xr.DataArray:
    """Linear centred kernel alignment of two populations on their shared stimuli.

    ``CKA = ||YᵀX||²_F / (||XᵀX||_F ||YᵀY||_F)`` for column-centred, trial-averaged responses
    X (stimulus, unit_a) and Y (stimulus, unit_b) (Kornblith et al. 2019): invariant to rotations
    and isotropic scaling of either population, 1 for identical representations. With
    ``debiased=True`` each HSIC is the unbiased estimator of Song et al. (2012) on the Gram
    matrices (the debiased CKA of Murphy et al. 2024), which removes the upward bias of few stimuli
    against many units.

    Returns:
        Scalar DataArray ``cka`` with ``attrs["n_stimuli"]`` and ``attrs["debiased"]``.
    """
    a, b = _aligned(a, b, ("a", "b"))
    x = _mean_response(a).values
    y = _mean_response(b).values
    n = x.shape[0]
    if debiased:
        if n < 4:
            raise SpikelatentError("debiased CKA needs at least 4 shared stimuli")

        def hsic(k: np.ndarray, m: np.ndarray) -> float:
            k, m = k.copy(), m.copy()
            np.fill_diagonal(k, 0.0)
            np.fill_diagonal(m, 0.0)
            k_sum, m_sum = k.sum(axis=0), m.sum(axis=0)
            value = (
                np.sum(k * m)
                + k_sum.sum() * m_sum.sum() / ((n - 1) * (n - 2))
                - 2.0 * (k_sum @ m_sum) / (n - 2)
            )
            return value / (n * (n - 3))

        gram_x, gram_y = x @ x.T, y @ y.T
        denominator = np.sqrt(hsic(gram_x, gram_x) * hsic(gram_y, gram_y))
        value = hsic(gram_x, gram_y) / denominator if denominator > 0 else np.nan
    else:
        x = x - x.mean(axis=0)
        y = y - y.mean(axis=0)
        cross = np.linalg.norm(y.T @ x) ** 2
        denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
        value = cross / denominator if denominator > 0 else np.nan
    return xr.DataArray(
        float(value),
        name="cka",
        attrs={"n_stimuli": n, "debiased": bool(debiased), "kernel": "linear"},
    )


# --------------------------------------------------------------------------- predictivity


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
        responses: recorded ``(trial, stimulus, unit)`` or ``(stimulus, unit)``.
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
    features, responses = _aligned(features, responses, ("features", "responses"))
    features = _mean_response(features)
    x = features.values
    target = _mean_response(responses)
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
    if (
        "trial" in responses.dims
        and (np.isfinite(responses.values).all(axis=-1).sum(axis=0) >= 2).all()
    ):
        reliability = _split_half_reliability(responses, int(split_repeats), rng)
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


# --------------------------------------------------------------------------- side by side

_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _distribution(values: np.ndarray) -> np.ndarray:
    finite = np.asarray(values, dtype=np.float64).ravel()
    finite = finite[np.isfinite(finite)]
    return np.quantile(finite, _QUANTILES) if finite.size else np.full(len(_QUANTILES), np.nan)


def population_statistics(counts: Any) -> xr.Dataset:
    """Summary distributions of a ``(trial, stimulus, unit)`` population of non-negative responses.

    Returns:
        Dataset with quantiles (``quantile`` = 0.05, 0.25, 0.5, 0.75, 0.95) of ``fano_factor``
        (per (stimulus, unit) cell), ``mean_variance_slope`` (per unit, log-log),
        ``lifetime_sparsity`` (per unit), ``population_sparsity`` (per stimulus) and
        ``noise_correlation`` (pairs i < j); scalars ``participation_ratio_signal`` (of the trial
        means) and ``participation_ratio_noise`` (of the trial fluctuations), ``n_units``,
        ``n_stimuli``.
    """
    from spikelatent import analysis

    counts = responses_array(counts, "counts")
    if "trial" not in counts.dims or counts.sizes["trial"] < 2:
        raise SpikelatentError("population statistics need >= 2 trials per stimulus")
    fano = analysis.empirical_fano_factor(counts, over="trial")
    slope = analysis.mean_variance_relation(counts, over="trial", across="stimulus")["slope"]
    noise = analysis.noise_correlations(counts, n_shuffles=0)["noise_correlation"].values
    mean = _mean_response(counts)
    distributions = {
        "fano_factor": fano["fano_factor"].values,
        "mean_variance_slope": slope.values,
        "lifetime_sparsity": analysis.lifetime_sparsity(mean, average=None).values,
        "population_sparsity": analysis.population_sparsity(mean, average=None).values,
        "noise_correlation": noise[np.triu_indices_from(noise, k=1)],
    }
    data: dict[str, Any] = {
        name: ("quantile", _distribution(values)) for name, values in distributions.items()
    }
    for kind in ("signal", "noise"):
        ratio = analysis.participation_ratio(counts, kind=kind, n_boot=0)["participation_ratio"]
        data[f"participation_ratio_{kind}"] = float(ratio)
    data["n_units"] = counts.sizes["unit"]
    data["n_stimuli"] = counts.sizes["stimulus"]
    return xr.Dataset(data, coords={"quantile": list(_QUANTILES)})


def _statistics_dataset(stats: dict[str, xr.Dataset | None]) -> xr.Dataset:
    """Statistics of several populations along ``population`` (NaN where one has none), prefixed
    ``stat_``."""
    template = next((s for s in stats.values() if s is not None), None)
    if template is None:
        return xr.Dataset()
    filled = [
        (s if s is not None else xr.full_like(template.astype(np.float64), np.nan))
        for s in stats.values()
    ]
    combined = xr.concat(filled, dim="population").assign_coords(population=list(stats))
    return combined.rename({name: f"stat_{name}" for name in combined.data_vars})


def compare_populations(
    model_population: Any,
    recorded: Any,
    *,
    metric: str = "correlation",
    compare: str = "spearman",
    folds: int = 5,
    n_boot: int = 200,
    confidence: float = 0.95,
    n_splits: int | None = 2,
    statistics: bool = True,
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
            ``counts`` feed the statistics) or responses as in :func:`responses_array`.
        recorded: recorded responses, e.g. (trial, stimulus, unit) counts.
        metric, compare, n_boot, confidence, n_splits: as in :func:`rsa`.
        folds: as in :func:`linear_predictivity`.
        statistics: also compute the side-by-side statistics.
        seed: seed of every resampling.

    Returns:
        Dataset; ``attrs`` hold the metric, comparison and the number of shared stimuli.
    """
    if isinstance(model_population, xr.Dataset):
        representation = responses_array(model_population, "model population")
        model_counts = model_population["counts"] if "counts" in model_population else None
    else:
        representation = responses_array(model_population, "model population")
        model_counts = representation if "trial" in representation.dims else None
    recorded = responses_array(recorded, "recorded responses")
    try:
        shared = shared_stimuli(
            representation, recorded, names=("the model population", "the recording")
        )
    except SpikelatentError:
        if not statistics:
            raise
        shared = np.empty(0)
    result = xr.Dataset(
        attrs={
            "metric": metric,
            "compare": compare,
            "shared_stimuli": len(shared),
            "seed": int(seed),
        }
    )
    if len(shared):
        similarity = rsa(
            representation,
            recorded,
            metric,
            compare,
            n_boot=n_boot,
            confidence=confidence,
            n_splits=n_splits,
            seed=seed,
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
        result["cka"] = linear_cka(representation, recorded)
        result["cka_debiased"] = linear_cka(representation, recorded, debiased=True)
        predictivity = linear_predictivity(
            representation, recorded, folds=folds, n_boot=n_boot, confidence=confidence, seed=seed
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
                {"model": stats_or_none(model_counts), "recorded": stats_or_none(recorded)}
            )
        )
    return result


def rank_models(
    results: dict[str, xr.Dataset], *, confidence: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Order models by their similarity to one recording, stating an order only where it is resolved.

    ``results`` are :func:`compare_populations` outputs of several models against the same recording
    with the same seed, so their RSA bootstrap samples resample the same stimuli (paired). For the
    RSA score the paired differences of those samples, and for the noise-corrected predictivity
    (median over units of R² / reliability) a paired bootstrap over the recorded units, give an
    interval for each difference; ``A > B`` is stated only when that interval excludes 0,
    otherwise ``A ≈ B``.

    Returns:
        ``{"order": {metric: [names, best first]}, "pairs": [...], "statements": {metric: text}}``.
    """
    names = list(results)
    tail = (1 - confidence) / 2
    out: dict[str, Any] = {"order": {}, "pairs": [], "statements": {}}
    if len(names) < 2:
        return out
    metrics: dict[str, tuple[dict[str, float], dict[str, np.ndarray] | None]] = {}
    if all("rsa_similarity" in r for r in results.values()):
        point = {n: float(results[n]["rsa_similarity"]) for n in names}
        samples = {n: results[n]["rsa_bootstrap"].values for n in names}
        if len({len(v) for v in samples.values()}) != 1 or not len(samples[names[0]]):
            samples = None
        metrics["rsa"] = (point, samples)
    key = "predictivity_r2_corrected"
    if all(key in r for r in results.values()):
        per_unit = {n: results[n][key].values for n in names}
        finite = np.all([np.isfinite(v) for v in per_unit.values()], axis=0)
        rng = np.random.default_rng(seed)
        index = rng.integers(0, int(finite.sum()), (int(n_boot), int(finite.sum())))
        point = {n: float(np.median(v[finite])) for n, v in per_unit.items()}
        samples = {n: np.median(v[finite][index], axis=1) for n, v in per_unit.items()}
        if finite.sum():
            metrics["predictivity"] = (point, samples)
    for metric, (point, samples) in metrics.items():
        order = sorted(names, key=lambda n: -point[n] if np.isfinite(point[n]) else np.inf)
        out["order"][metric] = order
        pieces = [order[0]]
        for better, worse in zip(order[:-1], order[1:], strict=True):
            if samples is None:
                low = high = float("nan")
            else:
                low, high = np.quantile(samples[better] - samples[worse], [tail, 1 - tail])
            separated = bool(low > 0)
            out["pairs"].append(
                {
                    "metric": metric,
                    "better": better,
                    "worse": worse,
                    "difference": point[better] - point[worse],
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "separated": separated,
                }
            )
            pieces.append((" > " if separated else " ≈ ") + worse)
        out["statements"][metric] = (
            "".join(pieces)
            + f" ('>': the {int(round(100 * confidence))} % interval of the paired difference excludes 0;"
            " '≈': not resolved)"
        )
    return out

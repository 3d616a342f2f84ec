"""Fano factor across counting windows, and the mean-matched Fano factor (Churchland et al. 2010).

Both take binned counts with a ``time`` dim (from :func:`spikelatent.nwb.read_counts` with
``bin_size``, :func:`spikelatent.pynapple_bridge.from_pynapple` or
:func:`spikelatent.populations.binned_counts`) or, for :func:`fano_factor_by_window`, raw spike
times (one array per unit). Results are ``xarray.Dataset`` objects.

Known curves (the tests' oracles): a Poisson process has F(T) = 1 at every window length T; a
stationary renewal process has F(T) → 1 as T → 0 and F(T) → CV² of its inter-spike intervals as
T → ∞ (1/shape for gamma intervals).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

from spikelatent.analysis._layout import Cells, as_dims, group_along, is_grouping_coord
from spikelatent.analysis._streaming import is_chunked, streamed_window_moments
from spikelatent.analysis.overdispersion import (
    _check_probability,
    empirical_fano_factor,
    fano_from_moments,
)
from spikelatent.errors import SpikelatentError
from spikelatent.spikes import count_spikes, recording_span, sorted_times

__all__ = ["fano_factor_by_window", "mean_matched_fano_factor"]


def _bin_size_of(counts: xr.DataArray) -> float:
    if "bin_size" in counts.attrs:
        return float(counts.attrs["bin_size"])
    if "time_start" in counts.coords and "time_stop" in counts.coords:
        widths = np.asarray(counts["time_stop"] - counts["time_start"], dtype=np.float64)
        if widths.size and np.allclose(widths, widths[0], rtol=1e-9, atol=0):
            return float(widths[0])
    raise SpikelatentError(
        "counts carry no bin width: give counts from read_counts(..., bin_size=S) (attrs "
        "'bin_size') or pass bin_size=S"
    )


def _as_binned_counts(
    data: Any, windows: np.ndarray, bin_size: float | None, span: tuple[float, float] | None
) -> tuple[xr.DataArray, float]:
    """Binned counts with a ``time`` dim and their bin width, from counts or spike times."""
    if isinstance(data, xr.Dataset) and "counts" in data:
        data = data["counts"]
    if isinstance(data, xr.DataArray):
        if "time" not in data.dims:
            raise SpikelatentError(
                f"fano_factor_by_window needs binned counts with a 'time' dim, got dims "
                f"{tuple(data.dims)}; bin with read_counts(..., bin_size=S) or pass spike times"
            )
        return data, float(bin_size) if bin_size is not None else _bin_size_of(data)
    if isinstance(data, dict):
        unit_ids, trains = list(data), [sorted_times(v) for v in data.values()]
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        unit_ids, trains = None, [sorted_times(v) for v in data]
    else:
        raise SpikelatentError(
            "fano_factor_by_window takes binned counts (xarray with a 'time' dim) or spike times "
            f"(a list or dict of arrays, one per unit); got {type(data).__name__}"
        )
    # Bin once at the greatest common divisor of the windows (in microseconds), then add bins up.
    micro = np.round(windows * 1e6).astype(np.int64)
    step = float(np.gcd.reduce(micro)) / 1e6 if bin_size is None else float(bin_size)
    start, stop = span if span is not None else recording_span(trains)
    return count_spikes(trains, [start], [stop], bin_size=step, unit_ids=unit_ids, window_dim=None), step


def _window_sums(counts: xr.DataArray, n_bins: int) -> xr.DataArray:
    """Counts in consecutive non-overlapping windows of ``n_bins`` bins along ``time`` (tail dropped)."""
    n_windows = counts.sizes["time"] // n_bins
    if n_bins == 1:
        return counts.drop_vars([c for c in counts.coords if "time" in counts[c].dims])
    others = [d for d in counts.dims if d != "time"]
    if is_chunked(counts):  # lazily, chunk by chunk (a NaN bin makes its window NaN, as below)
        moved = counts.transpose(*others, "time").isel(time=slice(0, n_windows * n_bins))
        data = moved.data
        per_chunk = max(1, max(data.chunks[-1]) // n_bins) * n_bins  # whole windows per chunk
        data = data.rechunk({data.ndim - 1: per_chunk})
        summed = data.reshape(*data.shape[:-1], n_windows, n_bins).sum(axis=-1)
        coords = {name: c for name, c in moved.coords.items() if "time" not in c.dims}
        return xr.DataArray(summed, dims=(*others, "time"), coords=coords)
    moved = counts.transpose(*others, "time")
    values = np.asarray(moved.values)[..., : n_windows * n_bins]
    if values.dtype.kind == "f":
        dtype = np.float64
    else:
        # The smallest unsigned type that holds a window's largest possible sum: 1,000 units x 1 h
        # at 10 ms in 20 ms windows is 180 MB as uint8... uint16, not 720 MB as uint32.
        bound = int(values.max(initial=0)) * n_bins
        dtype = next(d for d in (np.uint16, np.uint32, np.uint64) if bound <= np.iinfo(d).max)
    summed = values.reshape(*values.shape[:-1], n_windows, n_bins).sum(-1, dtype=dtype)
    coords = {name: c for name, c in moved.coords.items() if "time" not in c.dims}
    return xr.DataArray(summed, dims=(*others, "time"), coords=coords)


def fano_factor_by_window(
    spike_times_or_counts: Any,
    windows: Sequence[float],
    *,
    over: str | Sequence[str] = ("trial", "time"),
    group_by: str | None = "stimulus",
    bin_size: float | None = None,
    span: tuple[float, float] | None = None,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> xr.Dataset:
    """Fano factor of every unit as a function of the counting-window length.

    For a window length ``T`` the counts are summed over consecutive, non-overlapping windows of
    ``T`` seconds along ``time`` (each trial's tail shorter than ``T`` is dropped); the Fano factor
    is the variance / mean of those window counts over every dim in ``over`` that the counts have
    (default: trials and window positions), with the delta-method interval of
    :func:`spikelatent.analysis.empirical_fano_factor`. Windows are treated as independent
    samples, exact for a Poisson process; for a renewal process the interval is approximate.

    Args:
        spike_times_or_counts: binned counts with a ``time`` dim, e.g. ``(time, unit)``,
            ``(trial, time, unit)`` or ``(trial, stimulus, time, unit)``; or spike times in
            seconds, a list (or dict unit → array) of one array per unit.
        windows: counting-window lengths in seconds; for counts each must be a whole number of
            bins.
        over: dims pooled as samples (those the counts lack are ignored).
        group_by: coordinate along ``trial`` whose values are separate conditions (recorded
            layout); each condition gets its own Fano factor.
        bin_size: bin width of the counts in seconds (default from ``attrs["bin_size"]`` or the
            ``time_start``/``time_stop`` coords); for spike times, the binning step (default: the
            greatest common divisor of the windows).
        span: ``(start, stop)`` in seconds over which spike times are counted (default: the
            whole session, :func:`spikelatent.spikes.recording_span`).
        confidence: coverage of the intervals, in (0, 1).
        n_boot: bootstrap resamples of the cells for the population interval.
        seed: seed of that bootstrap.

    Returns:
        Dataset with dim ``window`` (seconds) plus the kept dims (``unit``, and ``stimulus`` etc.):
        ``fano_factor``, ``ci_low``, ``ci_high``, ``mean`` (spikes per window), ``variance``,
        ``n_samples``; and per window ``population_fano_factor`` (mean over finite cells) with
        ``population_ci_low``/``population_ci_high`` (percentile bootstrap over cells: inside the
        range of the cells' Fano factors, so never below 0), ``n_cells``. Counts may hold NaN
        (unobserved time, see :func:`spikelatent.spikes.count_spikes`): a window containing a NaN
        bin is left out of that cell's samples.
    """
    _check_probability(confidence, "confidence")
    if int(n_boot) != n_boot or n_boot < 0:
        raise SpikelatentError(f"n_boot must be an integer >= 0; got {n_boot}")
    lengths = np.asarray(windows, dtype=np.float64).reshape(-1)
    if lengths.size == 0 or not np.all(np.isfinite(lengths)) or np.any(lengths <= 0):
        raise SpikelatentError(
            f"windows must be a non-empty list of positive lengths in seconds; got {windows!r}"
        )
    counts, step = _as_binned_counts(spike_times_or_counts, lengths, bin_size, span)
    window_bins = []
    for length in lengths:
        n_bins = int(round(length / step))
        if n_bins < 1 or abs(n_bins * step - length) > 1e-6 * max(length, step):
            raise SpikelatentError(
                f"window {length:g} s is not a whole number of {step:g} s bins; choose windows "
                "that are multiples of the bin size"
            )
        window_bins.append(n_bins)
    if is_chunked(counts):
        if set(counts.dims) <= {"trial", "time", "unit"} and set(as_dims(over)) >= (
            set(counts.dims) - {"unit"}
        ):
            results = _streamed_fano_by_window(counts, lengths, window_bins, group_by, confidence)
            return _population_summary(results, lengths, confidence, n_boot, seed, step,
                                       [d for d in ("trial", "time") if d in counts.dims])
        counts = counts.compute()  # another layout: in memory
    if is_grouping_coord(counts, group_by, "trial"):
        counts = group_along(counts, "trial", group_by)
    sample_dims = [d for d in as_dims(over) if d in counts.dims]
    if "time" not in sample_dims:
        raise SpikelatentError("over must include 'time' (the window positions)")
    results = []
    for length, n_bins in zip(lengths, window_bins, strict=True):
        summed = _window_sums(counts, n_bins)
        if len(sample_dims) == 1:
            samples = summed.rename(time="sample")
        else:
            samples = summed.stack(sample=sample_dims, create_index=False)
        if samples.sizes["sample"] < 2:
            raise SpikelatentError(
                f"window {length:g} s leaves fewer than 2 windows to compare; use shorter windows"
            )
        fano = empirical_fano_factor(samples, over="sample", confidence=confidence, group_by=None)
        results.append(fano.rename(n_trials="n_samples"))
    return _population_summary(results, lengths, confidence, n_boot, seed, step, sample_dims)


def _streamed_fano_by_window(
    counts: xr.DataArray,
    lengths: np.ndarray,
    window_bins: list[int],
    group_by: str | None,
    confidence: float,
) -> list[xr.Dataset]:
    """Per window length, the Fano Dataset of chunked counts, from sums of moments per chunk."""
    for length, n_bins in zip(lengths, window_bins, strict=True):
        # Checked before any chunk is binned: a window longer than a trial has no position.
        if counts.sizes["time"] // n_bins * (counts.sizes.get("trial", 1)) < 2:
            raise SpikelatentError(
                f"window {length:g} s leaves fewer than 2 windows to compare; use shorter windows"
            )
    moments, template = streamed_window_moments(counts, window_bins, group_by)
    results = []
    for n_bins in window_bins:
        cells = Cells(matrix=None, template=template, over="sample")
        fano = fano_from_moments(cells, moments[n_bins], "sample", confidence, "delta")
        results.append(fano.rename(n_trials="n_samples"))
    return results


def _population_summary(
    results: list[xr.Dataset],
    lengths: np.ndarray,
    confidence: float,
    n_boot: int,
    seed: int,
    step: float,
    sample_dims: list[str],
) -> xr.Dataset:
    result = xr.concat(results, dim=xr.DataArray(lengths, dims="window", name="window"))
    cells = [d for d in result["fano_factor"].dims if d != "window"]
    values = result["fano_factor"]
    n_cells = values.notnull().sum(cells)
    mean = values.mean(cells, skipna=True)
    per_window = values.transpose("window", *cells).values.reshape(lengths.size, -1)
    bounds = np.array(
        [_bootstrap_mean_interval(v[np.isfinite(v)], confidence, n_boot, seed) for v in per_window]
    )
    result["population_fano_factor"] = mean.assign_attrs(long_name="mean Fano factor over cells")
    result["population_ci_low"] = ("window", bounds[:, 0])
    result["population_ci_high"] = ("window", bounds[:, 1])
    result["n_cells"] = n_cells
    result["window"].attrs["units"] = "s"
    result["mean"].attrs["units"] = "spikes per window"
    result.attrs.update(
        confidence=confidence,
        bin_size=step,
        pooled_over=sample_dims,
        population_ci="percentile bootstrap over cells of the mean Fano factor "
        f"({int(n_boot)} resamples, seed {int(seed)})",
        note="counts in consecutive non-overlapping windows; tails shorter than a window dropped",
    )
    return result


# Cells x resamples drawn at once in the population bootstrap (bounds its memory to ~160 MB).
_BOOTSTRAP_BLOCK = 20_000_000


def _bootstrap_mean_interval(
    values: np.ndarray, confidence: float, n_boot: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (finite, one per cell)."""
    if values.size < 2 or n_boot < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    per_block = max(1, _BOOTSTRAP_BLOCK // values.size)
    means = np.concatenate([
        values[rng.integers(0, values.size, (min(per_block, n_boot - done), values.size))].mean(axis=1)
        for done in range(0, n_boot, per_block)
    ])
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def _weighted_slope(
    mean: np.ndarray, variance: np.ndarray, n: np.ndarray, confidence: float
) -> tuple[float, float, float]:
    """Slope of variance on mean through the origin, weighted by 1 / Var(sample variance).

    Var(s²) of Poisson counts is μ/n + 2μ²/(n − 1); its inverse weights the points (Churchland et
    al. 2010 weight by the sampling error of the variance). Returns slope and its t interval.
    """
    weight = 1.0 / (mean / n + 2.0 * mean**2 / (n - 1))
    sxx = np.sum(weight * mean**2)
    slope = float(np.sum(weight * mean * variance) / sxx)
    if mean.size < 2:
        return slope, np.nan, np.nan
    residual = np.sum(weight * (variance - slope * mean) ** 2) / (mean.size - 1)
    half = stats.t.ppf(0.5 + confidence / 2, mean.size - 1) * np.sqrt(residual / sxx)
    return slope, slope - half, slope + half


def mean_matched_fano_factor(
    counts: xr.DataArray,
    across: str,
    *,
    over: str = "trial",
    group_by: str | None = "stimulus",
    n_bins: int = 10,
    n_resamples: int = 10,
    confidence: float = 0.95,
    seed: int = 0,
) -> xr.Dataset:
    """Fano factor per entry of ``across`` after matching the distributions of mean counts.

    Every cell (e.g. one (unit, stimulus) pair) contributes a point (mean, variance) over ``over``.
    The Fano factor of an entry of ``across`` (a condition, a time bin, a window) is the slope of
    variance on mean through the origin. Because the Fano factor of real neurons depends on their
    rate, entries are first made comparable (Churchland et al. 2010): the means are histogrammed
    into ``n_bins`` common bins, the *greatest common distribution* (the bin-wise minimum over
    entries) is found, and in every entry points are discarded at random so that its histogram is
    that common one. The slope is averaged over ``n_resamples`` random discards.

    Args:
        counts: spike counts with dims ``over`` and ``across``, e.g. ``(trial, condition, unit)``
            or binned ``(trial, time, unit)`` with ``across="time"``.
        across: dim whose entries are compared.
        over: dim of repeated trials.
        group_by: coordinate along ``over`` grouping trials into conditions (recorded layout).
        n_bins: histogram bins of the means (common edges over all entries).
        n_resamples: random discards averaged.
        confidence: coverage of the slope's interval (t interval of the weighted regression,
            averaged over resamples).
        seed: seed of the discards.

    Returns:
        Dataset over ``across``: ``fano_factor`` (mean-matched), ``ci_low``, ``ci_high``,
        ``raw_fano_factor`` with ``raw_ci_low``/``raw_ci_high`` (all points, no matching),
        ``n_points`` (cells with mean > 0) and ``n_matched`` (points kept per resample).
    """
    _check_probability(confidence, "confidence")
    if int(n_bins) != n_bins or n_bins < 1 or int(n_resamples) != n_resamples or n_resamples < 1:
        raise SpikelatentError("n_bins and n_resamples must be positive integers")
    statistics = empirical_fano_factor(counts, over=over, group_by=group_by)
    if across not in statistics.dims:
        raise SpikelatentError(
            f"mean_matched_fano_factor: after reducing over {over!r} the counts have dims "
            f"{tuple(statistics.dims)}; there is no {across!r} dim to compare across"
        )
    others = [d for d in statistics["mean"].dims if d != across]
    mean = statistics["mean"].transpose(across, *others).values.reshape(statistics.sizes[across], -1)
    variance = statistics["variance"].transpose(across, *others).values.reshape(mean.shape)
    n = statistics["n_trials"].transpose(across, *others).values.reshape(mean.shape)
    usable = np.isfinite(mean) & np.isfinite(variance) & (mean > 0) & (n >= 2)
    if not usable.any(axis=1).all():
        raise SpikelatentError(
            f"some entries of {across!r} have no cell with spikes; drop them before matching"
        )
    edges = np.histogram_bin_edges(mean[usable], bins=int(n_bins))
    which_bin = np.clip(np.searchsorted(edges, mean, side="right") - 1, 0, int(n_bins) - 1)
    histograms = np.stack(
        [np.bincount(which_bin[a][usable[a]], minlength=int(n_bins)) for a in range(len(mean))]
    )
    common = histograms.min(axis=0)
    if common.sum() < 2:
        raise SpikelatentError(
            f"the mean counts of the entries of {across!r} barely overlap (fewer than 2 points "
            "in their common distribution); mean matching is not possible, use fewer n_bins"
        )
    rng = np.random.default_rng(seed)
    matched = np.empty((len(mean), int(n_resamples), 3))
    raw = np.empty((len(mean), 3))
    for a in range(len(mean)):
        points = np.flatnonzero(usable[a])
        raw[a] = _weighted_slope(mean[a, points], variance[a, points], n[a, points], confidence)
        by_bin = [points[which_bin[a, points] == b] for b in range(int(n_bins))]
        for r in range(int(n_resamples)):
            kept = np.concatenate(
                [rng.choice(members, size=k, replace=False) for members, k in zip(by_bin, common, strict=True) if k]
            )
            matched[a, r] = _weighted_slope(mean[a, kept], variance[a, kept], n[a, kept], confidence)
    average = matched.mean(axis=1)
    coords = {across: statistics[across]} if across in statistics.coords else {}

    def along(values: np.ndarray, **attrs: Any) -> xr.DataArray:
        return xr.DataArray(values, dims=(across,), coords=coords, attrs=attrs)

    return xr.Dataset(
        {
            "fano_factor": along(average[:, 0], long_name="mean-matched Fano factor"),
            "ci_low": along(average[:, 1]),
            "ci_high": along(average[:, 2]),
            "raw_fano_factor": along(raw[:, 0], long_name="Fano factor (slope), all points"),
            "raw_ci_low": along(raw[:, 1]),
            "raw_ci_high": along(raw[:, 2]),
            "n_points": along(usable.sum(axis=1)),
            "n_matched": int(common.sum()),
        },
        attrs={
            "method": "Churchland et al. 2010 mean matching; weighted regression of variance on "
            "mean through the origin, weights 1/(mu/n + 2 mu^2/(n-1))",
            "n_bins": int(n_bins),
            "n_resamples": int(n_resamples),
            "confidence": confidence,
            "over": over,
            "across": across,
            "mean_bin_edges": edges.tolist(),
        },
    )

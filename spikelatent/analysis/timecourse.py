"""Time-resolved views of a population: event-aligned counts, firing rates / PSTHs in spikes/s, and
the Fano factor in a window sliding over time (Churchland et al. 2010).

They take binned counts ``(…, time, unit)`` of either kind: a recording aligned to events
(:func:`aligned_counts`, or :func:`spikelatent.nwb.read_counts` with ``bin_size`` and ``bin_start``
< 0 for the rows of an intervals table) or a model population's ``binned_counts``
(``spikelatent.population(..., bin_size=S)``). The counting is spikelatent's exact one
(:func:`spikelatent.spikes.count_spikes`, half-open bins on integer ticks); pynapple objects
(``TsGroup``, ``Ts``/``Tsd``) are accepted as inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from spikelatent.analysis._layout import as_dataarray, group_along, is_grouping_coord
from spikelatent.analysis._streaming import is_chunked, streamed_cell_moments
from spikelatent.analysis.counting_windows import mean_matched_fano_factor
from spikelatent.errors import SpikelatentError
from spikelatent.spikes import count_spikes

__all__ = ["aligned_counts", "firing_rate", "sliding_fano_factor"]


def _unit_trains(spike_times: Any) -> tuple[list[np.ndarray], np.ndarray | None]:
    """One float64 array per unit, from a list of arrays or a pynapple ``TsGroup``."""
    if hasattr(spike_times, "keys") and hasattr(spike_times, "index"):  # pynapple TsGroup
        keys = list(spike_times.keys())
        return [np.asarray(spike_times[k].t, dtype=np.float64) for k in keys], np.asarray(keys)
    trains = [np.asarray(getattr(t, "t", t), dtype=np.float64).ravel() for t in spike_times]
    return trains, None


def aligned_counts(
    spike_times: Any,
    events: Any,
    window: tuple[float, float] = (-0.5, 1.0),
    bin_size: float = 0.01,
    *,
    unit_ids: Any = None,
    event_coords: dict[str, Any] | None = None,
) -> xr.DataArray:
    """Every unit's spike counts in bins around every event.

    Args:
        spike_times: one array of spike times (s) per unit, or a pynapple ``TsGroup``.
        events: event times (s), shape ``(event,)``, or a pynapple ``Ts``/``Tsd``.
        window: ``(start, stop)`` of the window relative to each event, seconds.
        bin_size: bin width, seconds; the window must hold a whole number of bins.
        unit_ids: coordinate of ``unit`` (default: the TsGroup's keys or ``0..n-1``).
        event_coords: extra coordinates along ``trial`` (e.g. ``{"stimulus": ids}`` so that
            :func:`firing_rate` averages per stimulus).

    Returns:
        ``counts`` ``(trial, time, unit)``, one trial per event, ``time`` = bin centre relative to
        the event (``time_start``/``time_stop`` the edges); half-open bins ``[edge, edge + S)``.
    """

    trains, keys = _unit_trains(spike_times)
    event_times = np.asarray(getattr(events, "t", events), dtype=np.float64).ravel()
    start, stop = (float(v) for v in window)
    if not stop > start:
        raise SpikelatentError(f"window must be (start, stop) with stop > start; got {window}")
    if event_times.size == 0 or not np.isfinite(event_times).all():
        raise SpikelatentError("events must be a non-empty array of finite times in seconds")
    n_bins = (stop - start) / bin_size
    if abs(n_bins - round(n_bins)) > 1e-6 * max(1.0, n_bins):
        raise SpikelatentError(f"the window {window} must hold a whole number of {bin_size} s bins")
    counts = count_spikes(
        trains,
        event_times + start,
        event_times + stop,
        bin_size=bin_size,
        unit_ids=unit_ids if unit_ids is not None else keys,
        window_dim="trial",
        window_coords={"event_time": event_times, **(event_coords or {})},
    )
    shift = {name: counts[name].values + start for name in ("time", "time_start", "time_stop")}
    counts = counts.assign_coords(
        time=shift["time"],
        time_start=("time", shift["time_start"]),
        time_stop=("time", shift["time_stop"]),
    )
    counts.attrs.update(window=[start, stop], aligned_to="event times (time 0 = the event)")
    return counts


def _bin_size(counts: xr.DataArray) -> float:
    if "bin_size" in counts.attrs:
        return float(counts.attrs["bin_size"])
    if "time_start" in counts.coords and "time_stop" in counts.coords:
        widths = np.asarray(counts["time_stop"].values - counts["time_start"].values, dtype=float)
        if widths.size and np.allclose(widths, widths.flat[0]):
            return float(widths.flat[0])
    raise SpikelatentError(
        "counts carry no bin size (attrs['bin_size'] or time_start/time_stop coordinates); "
        "bin them with read_counts(..., bin_size=S), aligned_counts or population(..., bin_size=S)"
    )


def firing_rate(counts: Any, over: str = "trial", group_by: str | None = "stimulus") -> xr.Dataset:
    """Firing rates in spikes/s and their trial average, the PSTH, with its standard error.

    Args:
        counts: binned counts with dims ``over`` and ``time``, e.g. ``(trial, time, unit)`` or a
            model's ``(trial, stimulus, time, unit)``; in the recorded layout a ``group_by``
            coordinate along ``over`` (e.g. the stimulus of each event) splits the average.
        over: dim of repeated trials.
        group_by: coordinate along ``over`` naming the condition of each trial.

    Returns:
        Dataset: ``psth`` (spikes/s, mean over ``over``), ``sem`` (standard error of that mean,
        ddof 1), ``n_trials``, over the remaining dims (``(time, unit)``, with ``stimulus`` when
        grouped or present).
    """
    counts = as_dataarray(counts, "counts")
    if over not in counts.dims or "time" not in counts.dims:
        raise SpikelatentError(
            f"firing_rate needs binned counts with dims {over!r} and 'time'; got {tuple(counts.dims)}"
        )
    bin_size = _bin_size(counts)
    if is_chunked(counts):  # chunk by chunk: sums of moments over trials
        return _streamed_firing_rate(counts, over, group_by, bin_size)
    if is_grouping_coord(counts, group_by, over):
        counts = group_along(counts, over, group_by)
    rate = counts.astype(np.float64) / bin_size
    n = rate.notnull().sum(over)
    psth = rate.mean(over, skipna=True)
    sem = rate.std(over, ddof=1, skipna=True) / np.sqrt(n)
    keep = [name for name in ("time_start", "time_stop") if name in counts.coords]
    return xr.Dataset(
        {
            "psth": psth.assign_attrs(units="spikes/s", long_name=f"mean rate over {over}"),
            "sem": sem.assign_attrs(units="spikes/s", long_name="standard error of the mean"),
            "n_trials": n,
        },
        coords={name: counts[name] for name in keep},
        attrs={"bin_size": bin_size, "over": over},
    )


def _streamed_firing_rate(
    counts: xr.DataArray, over: str, group_by: str | None, bin_size: float
) -> xr.Dataset:
    moments, template = streamed_cell_moments(
        counts, over, group_by if is_grouping_coord(counts, group_by, over) else None
    )
    n = moments["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        psth = moments["mean"] / bin_size
        sem = np.sqrt(moments["m2"] * n / (n - 1)) / np.sqrt(n) / bin_size
    wrap = lambda values: template.copy(data=np.asarray(values).reshape(template.shape))  # noqa: E731
    return xr.Dataset(
        {
            "psth": wrap(psth).assign_attrs(units="spikes/s", long_name=f"mean rate over {over}"),
            "sem": wrap(sem).assign_attrs(units="spikes/s", long_name="standard error of the mean"),
            "n_trials": wrap(n.astype(np.int64)),
        },
        attrs={"bin_size": bin_size, "over": over},
    )


def sliding_fano_factor(
    counts: Any,
    window: float = 0.1,
    step: float | None = None,
    *,
    over: str = "trial",
    group_by: str | None = "stimulus",
    n_bins: int = 10,
    n_resamples: int = 10,
    confidence: float = 0.95,
    seed: int = 0,
) -> xr.Dataset:
    """Fano factor over trials in a window sliding along time, raw and mean-matched.

    Counts in ``[t, t + window)`` are the sums of ``window / bin_size`` consecutive bins, taken
    every ``step`` seconds; at every window position each cell (a unit in a condition) gives a
    (mean, variance) point over trials, and :func:`spikelatent.analysis.mean_matched_fano_factor`
    takes the slope of variance on mean, raw and after matching the mean-count distributions across
    positions, as Churchland et al. (2010) did to show the stimulus-onset drop of variability.

    Args:
        counts: binned counts with dims ``over`` and ``time`` (see :func:`firing_rate`).
        window: counting window in seconds, a whole number of bins.
        step: shift between windows in seconds, a whole number of bins (default: one bin).
        over, group_by: trial dim and condition coordinate (recorded layout).
        n_bins, n_resamples, confidence, seed: as :func:`mean_matched_fano_factor`.

    Returns:
        Dataset along ``time`` (window centre, s): ``fano_factor`` (mean-matched), ``ci_low``,
        ``ci_high``, ``raw_fano_factor`` (with ``raw_ci_low``/``raw_ci_high``), ``n_points``,
        ``n_matched``; attrs ``window``, ``step``.
    """

    counts = as_dataarray(counts, "counts")
    if over not in counts.dims or "time" not in counts.dims:
        raise SpikelatentError(
            f"sliding_fano_factor needs binned counts with dims {over!r} and 'time'; "
            f"got {tuple(counts.dims)}"
        )
    bin_size = _bin_size(counts)
    step = bin_size if step is None else step

    def whole(value: float, name: str) -> int:
        n = value / bin_size
        if value <= 0 or abs(n - round(n)) > 1e-6 * max(1.0, n):
            raise SpikelatentError(
                f"{name} ({value} s) must be a positive multiple of the {bin_size} s bins"
            )
        return int(round(n))

    k, s = whole(window, "window"), whole(step, "step")
    if k > counts.sizes["time"]:
        raise SpikelatentError(
            f"window {window} s is longer than the {counts.sizes['time'] * bin_size:g} s of counts"
        )
    centres = np.asarray(counts["time"].values, dtype=np.float64)
    summed = counts.astype(np.float64).rolling(time=k).sum().isel(time=slice(k - 1, None, s))
    positions = np.arange(k - 1, counts.sizes["time"], s)
    window_centre = (centres[positions] + centres[positions - k + 1]) / 2
    summed = summed.drop_vars(
        [c for c in summed.coords if "time" in summed[c].dims], errors="ignore"
    ).assign_coords(time=window_centre)
    result = mean_matched_fano_factor(
        summed,
        across="time",
        over=over,
        group_by=group_by,
        n_bins=n_bins,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
    )
    result.attrs.update(window=float(window), step=float(step), bin_size=bin_size)
    result["time"].attrs.update(units="s", long_name="window centre")
    return result

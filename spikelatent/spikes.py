"""Spike times and spike counts: the one home of counting in bins and of spike-time generation.

Recordings (:func:`spikelatent.nwb.read_counts`), pynapple objects
(:mod:`spikelatent.pynapple_bridge`) and model populations
(:func:`spikelatent.populations.binned_counts`) all count through :func:`count_spikes`, and the
NWB export, the pynapple bridge and the populations all draw spike times here, so every path gets
the same bins, coordinates, attributes and spike times. Nothing here imports pynwb or hdmf.

Counting conventions (seconds throughout):

* times, window edges and the bin size are rounded to integer ticks of :data:`TICK` (1 ns) and
  compared as integers, so a bin edge is exact: ``edge_k = window_start + k * bin_size`` holds to
  the tick, and a spike exactly on an edge goes to the bin that starts there (half-open
  ``[edge_k, edge_k + bin_size)``);
* a window yields its whole number of bins; a partial last bin is dropped (``attrs
  ["longest_unbinned_tail"]`` says how much was left out). A window shorter than a whole number of
  bins by at most :func:`length_tolerance` (10 µs, or a tenth of a bin for bins under 100 µs)
  still counts that many bins: pynapple shortens back-to-back intervals by 1 µs, and those keep
  every bin. Every window of one call gets the bins of the *shortest* window, so the result is a
  rectangular ``(trial, time, unit)`` array;
* time a unit was not observed (outside its ``observed`` intervals, e.g. the NWB units table's
  ``obs_intervals``) is missing: bins not wholly inside a unit's observation intervals are NaN,
  never zero. Counts are ``int64`` when every bin is observed, ``float64`` with NaN otherwise, so
  they are safe for arithmetic (``counts - 1`` is −1 where the count is 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from spikelatent.errors import SpikelatentError

__all__ = [
    "TICK",
    "SPIKE_PROCESSES",
    "check_bin_size",
    "count_array",
    "count_spikes",
    "length_tolerance",
    "presentation_windows",
    "recording_span",
    "sorted_times",
    "spike_times",
    "to_ticks",
    "uniform_spike_times",
]

# Seconds per integer tick. float64 seconds keep sub-tick precision up to ~4.5e6 s (52 days).
TICK = 1e-9
# Slack on a window's length when counting its whole bins (see length_tolerance).
_LENGTH_TOLERANCE = 1e-5

SPIKE_PROCESSES = ("uniform", "counting")


def to_ticks(seconds: Any) -> np.ndarray:
    """Seconds as int64 ticks of :data:`TICK` (nearest tick)."""
    return np.rint(np.asarray(seconds, dtype=np.float64) / TICK).astype(np.int64)


def check_bin_size(bin_size: Any) -> float:
    """``bin_size`` as a positive finite float in seconds (a whole number of ticks), or a one-line error."""
    try:
        value = float(bin_size)
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise SpikelatentError(
            f"bin_size must be a positive number of seconds, e.g. 0.01; got {bin_size!r}"
        )
    ticks = int(to_ticks(value))
    if ticks < 1:
        raise SpikelatentError(f"bin_size must be at least {TICK:g} s; got {bin_size!r}")
    return ticks * TICK


def length_tolerance(bin_size: float) -> float:
    """How much shorter than a whole number of bins a window may be and still count them (s)."""
    return min(_LENGTH_TOLERANCE, bin_size / 10)


def sorted_times(times: Any) -> np.ndarray:
    """One unit's spike times as a sorted 1-D float64 array (seconds)."""
    values = np.asarray(times, dtype=np.float64).reshape(-1)
    if values.size > 1 and np.any(values[1:] < values[:-1]):
        values = np.sort(values)
    return values


def recording_span(
    spike_times: Iterable[np.ndarray],
    observed: Sequence[Any] | None = None,
    end: float | None = None,
) -> tuple[float, float]:
    """``(start, stop)`` in seconds of the data: the span whole-session bins are cut from.

    With observation intervals (one ``(n, 2)`` array of ``[start, stop]`` per unit), the span is
    from the earliest start to the latest stop. Without, it is from ``min(0, first spike)`` to the
    recording's ``end`` when known (e.g. the last ``stop_time`` of the file's epochs), and never
    before one tick after the last spike, so a count over the span holds every spike and no bin
    runs past the data.
    """
    if observed is not None:
        pairs = [np.asarray(o, dtype=np.float64).reshape(-1, 2) for o in observed]
        pairs = [p for p in pairs if p.size]
        if pairs:
            stacked = np.concatenate(pairs)
            return float(stacked[:, 0].min()), float(stacked[:, 1].max())
    first, last = np.inf, -np.inf
    for times in spike_times:
        if len(times):
            first, last = min(first, float(np.min(times))), max(last, float(np.max(times)))
    if not np.isfinite(last):
        raise SpikelatentError("no unit has any spike; there is nothing to bin over the session")
    stop = float(to_ticks(last) + 1) * TICK
    if end is not None and np.isfinite(end):
        stop = max(stop, float(end))
    return min(0.0, first), stop


def _n_whole_bins(length_ticks: np.ndarray, bin_ticks: int, bin_size: float) -> int:
    slack = int(to_ticks(length_tolerance(bin_size)))
    n_bins = int((int(np.min(length_ticks)) + slack) // bin_ticks)
    if n_bins < 1:
        raise SpikelatentError(
            f"bin_size={bin_size} s is longer than the shortest window "
            f"({float(np.min(length_ticks)) * TICK:.6g} s); use a smaller --bin-size"
        )
    return n_bins


def _bin_unit(ticks: np.ndarray, edges: np.ndarray, n_bins: int) -> np.ndarray:
    """Counts (window, bin) of one unit's sorted spike ``ticks`` in ``edges`` (window, n_bins + 1)."""
    flat = edges.reshape(-1)
    if flat.size < 2 or np.all(flat[1:] >= flat[:-1]):
        # Disjoint, ordered windows: locate each spike among the edges (cost ~ spikes, not bins).
        position = np.searchsorted(flat, ticks, side="right") - 1
        window, k = np.divmod(position, n_bins + 1)
        inside = (position >= 0) & (k < n_bins)
        return np.bincount(
            window[inside] * n_bins + k[inside], minlength=edges.shape[0] * n_bins
        ).reshape(edges.shape[0], n_bins)
    # Overlapping windows: count between every pair of consecutive edges instead.
    cumulative = np.searchsorted(ticks, edges, side="left")
    return np.diff(cumulative, axis=1)


def _observed_bins(intervals: Any, edges: np.ndarray) -> np.ndarray:
    """True for every bin ``[edges[..., k], edges[..., k + 1])`` wholly inside the union of ``intervals``."""
    pairs = to_ticks(np.asarray(intervals, dtype=np.float64).reshape(-1, 2))
    if pairs.size == 0:
        return np.zeros(edges[..., :-1].shape, dtype=bool)
    pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    # Merge overlapping or touching intervals, so a bin across their junction counts as observed.
    stops = np.maximum.accumulate(pairs[:, 1])
    new = np.ones(len(pairs), dtype=bool)
    new[1:] = pairs[1:, 0] > stops[:-1]
    merged_start = pairs[new, 0]
    merged_stop = np.maximum.reduceat(pairs[:, 1], np.flatnonzero(new))
    left, right = edges[..., :-1], edges[..., 1:]
    which = np.searchsorted(merged_start, left, side="right") - 1
    return (which >= 0) & (merged_stop[np.maximum(which, 0)] >= right)


def count_spikes(
    spike_times: Sequence[Any],
    window_start: Any,
    window_stop: Any,
    *,
    bin_size: float | None = None,
    unit_ids: Any = None,
    window_dim: str | None = "trial",
    window_coords: Mapping[str, Any] | None = None,
    unit_coords: Mapping[str, Any] | None = None,
    observed: Sequence[Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Count every unit's spikes per window, or in consecutive bins inside every window.

    Args:
        spike_times: one array of spike times (seconds) per unit; need not be sorted.
        window_start, window_stop: window edges in seconds, shape ``(window,)``; each window must
            have ``stop > start``.
        bin_size: bin width in seconds; ``None`` counts each whole window ``[start, stop)``.
        unit_ids: coordinate values of ``unit`` (default ``0..n_unit-1``).
        window_dim: name of the window dim (``"trial"``); ``None`` for a single window, which is
            then dropped (the session layout ``(time, unit)``).
        window_coords: extra coordinates along the window dim (e.g. the intervals table's columns).
        unit_coords: extra coordinates along ``unit``.
        observed: per unit, its observation intervals, an ``(n, 2)`` array of ``[start, stop]``
            seconds (``None`` for a unit, or for all: observed throughout). A bin (or window) not
            wholly inside them is NaN.
        attrs: attributes to add to the result.

    Returns:
        ``counts`` DataArray, ``int64`` (``float64`` with NaN where a unit was not observed).
        Without ``bin_size``: dims ``(trial, unit)``. With ``bin_size``: dims
        ``(trial, time, unit)`` (``(time, unit)`` when ``window_dim`` is None); coords ``time``
        (bin centre), ``time_start`` and ``time_stop`` (bin edges) in seconds relative to each
        window's start (absolute session time in the session layout), and
        ``window_start``/``window_stop`` along the window dim. ``attrs``: ``bin_size``,
        ``n_spikes_binned`` (spikes counted in observed bins), ``n_unobserved`` (NaN entries).
    """
    starts = np.atleast_1d(np.asarray(window_start, dtype=np.float64))
    stops = np.atleast_1d(np.asarray(window_stop, dtype=np.float64))
    if starts.shape != stops.shape or starts.ndim != 1 or starts.size == 0:
        raise SpikelatentError(
            f"window_start and window_stop must be 1-D and of equal length; got shapes "
            f"{starts.shape} and {stops.shape}"
        )
    if not (np.all(np.isfinite(starts)) and np.all(np.isfinite(stops))):
        raise SpikelatentError("window edges must be finite numbers of seconds")
    start_ticks, stop_ticks = to_ticks(starts), to_ticks(stops)
    if np.any(stop_ticks <= start_ticks):
        raise SpikelatentError(
            f"{int(np.sum(stop_ticks <= start_ticks))} window(s) end before they start; every "
            "window needs stop > start"
        )
    if window_dim is None and starts.size != 1:
        raise SpikelatentError("the session layout (no window dim) takes exactly one window")
    n_unit, n_window = len(spike_times), starts.size
    if n_unit == 0:
        raise SpikelatentError("there are no units to count spikes of")
    units = np.arange(n_unit) if unit_ids is None else np.asarray(unit_ids)
    if units.shape != (n_unit,):
        raise SpikelatentError(f"unit_ids must have one entry per unit ({n_unit}); got {units.shape}")
    if observed is not None and len(observed) != n_unit:
        raise SpikelatentError(
            f"observed must give one set of intervals per unit ({n_unit}); got {len(observed)}"
        )
    all_attrs = dict(attrs or {})
    coords: dict[str, Any] = {"unit": units}
    coords.update({name: ("unit", np.asarray(values)) for name, values in (unit_coords or {}).items()})
    window_values = {"window_start": starts, "window_stop": stops, **(window_coords or {})}
    if window_dim is not None:
        coords.update({name: (window_dim, np.asarray(v)) for name, v in window_values.items()})

    if bin_size is None:
        edges = np.stack([start_ticks, stop_ticks], axis=1)  # one "bin" per window
        n_bins = 1
    else:
        bin_size = check_bin_size(bin_size)
        bin_ticks = int(to_ticks(bin_size))
        n_bins = _n_whole_bins(stop_ticks - start_ticks, bin_ticks, bin_size)
        edges = start_ticks[:, None] + bin_ticks * np.arange(n_bins + 1, dtype=np.int64)[None, :]
    counts = np.empty((n_unit, n_window, n_bins), dtype=np.int64)
    for unit, times in enumerate(spike_times):
        ticks = to_ticks(sorted_times(times))
        if bin_size is None:
            counts[unit, :, 0] = np.searchsorted(ticks, stop_ticks, "left") - np.searchsorted(
                ticks, start_ticks, "left"
            )
        else:
            counts[unit] = _bin_unit(ticks, edges, n_bins)
    n_spikes, n_unobserved = int(counts.sum()), 0
    unobserved = {}  # unit -> (window, bin) mask, only for units with missing time
    for unit, intervals in enumerate(observed or ()):
        if intervals is not None:
            mask = ~_observed_bins(intervals, edges)
            if mask.any():
                unobserved[unit] = mask
    if unobserved:
        counts = counts.astype(np.float64)
        for unit, mask in unobserved.items():
            n_spikes -= int(counts[unit][mask].sum())
            n_unobserved += int(mask.sum())
            counts[unit][mask] = np.nan
    all_attrs["n_unobserved"] = n_unobserved
    if bin_size is None:
        data = counts[:, :, 0].T
        dims: tuple[str, ...] = (window_dim or "trial", "unit")
        if window_dim is None:
            coords.update({name: ("trial", np.asarray(v)) for name, v in window_values.items()})
    else:
        # Written unit by unit (contiguous rows); the result is a transposed view, no copy.
        data = np.moveaxis(counts, 0, -1)
        offsets = (bin_ticks * np.arange(n_bins + 1)) * TICK
        origin = float(start_ticks[0]) * TICK if window_dim is None else 0.0
        coords["time"] = origin + offsets[:-1] + bin_size / 2
        coords["time_start"] = ("time", origin + offsets[:-1])
        coords["time_stop"] = ("time", origin + offsets[1:])
        if window_dim is None:
            data = data[0]
            dims = ("time", "unit")
            all_attrs["binned_span"] = [origin, origin + float(offsets[-1])]
        else:
            dims = (window_dim, "time", "unit")
        all_attrs["bin_size"] = bin_size
        all_attrs["n_bins_per_window"] = n_bins
        all_attrs["binned_length"] = n_bins * bin_size
        dropped = int(np.max(stop_ticks - start_ticks)) - n_bins * bin_ticks
        all_attrs["longest_unbinned_tail"] = max(0, dropped) * TICK
        all_attrs["bin_rule"] = (
            "half-open bins [edge, edge + bin_size) on integer 1 ns ticks; whole bins only "
            "(partial last bin dropped)"
        )
    all_attrs["n_spikes_binned"] = n_spikes
    result = xr.DataArray(data, dims=dims, coords=coords, name="counts", attrs=all_attrs)
    for name in ("time", "time_start", "time_stop", "window_start", "window_stop"):
        if name in result.coords:
            result[name].attrs["units"] = "s"
    result.attrs.setdefault("units", "spikes")
    return result


# --------------------------------------------------------------------------- spike times


def uniform_spike_times(
    counts: Any, starts: np.ndarray, stops: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Sorted spike times of one unit: ``counts[i]`` i.i.d. uniform times in ``[starts[i], stops[i])``.

    Given its count, the spikes of a Poisson (or Gamma–Poisson) process are i.i.d. uniform in the
    window. Windows must be disjoint and ordered (presentations, or the bins of binned counts).
    Every time stays at least one :data:`TICK` before its window's stop, so counting it again
    (:func:`count_spikes`) puts it back in its window.
    """
    counts = np.asarray(counts).reshape(-1).astype(np.int64)
    window = np.repeat(np.arange(counts.size), counts)
    left = starts[window]
    times = left + rng.random(window.size) * (stops[window] - left)
    np.minimum(times, stops[window] - TICK, out=times)
    times.sort()  # disjoint, ordered windows: a global sort keeps each spike in its window
    return times


def presentation_windows(
    n_presentation: int, trial_duration: float, inter_trial_interval: float
) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop times (seconds) of each presentation, shape (presentation,).

    Presentation ``k`` starts at ``k * (trial_duration + inter_trial_interval)``.
    """
    period = trial_duration + inter_trial_interval
    starts = np.arange(n_presentation, dtype=np.float64) * period
    stops = starts + trial_duration
    # With no gap, rounding could let a window end an ulp after the next one starts.
    stops[:-1] = np.minimum(stops[:-1], starts[1:])
    return starts, stops


def count_array(population: Any) -> np.ndarray:
    """A population's validated counts ``(trial, stimulus, unit)`` as a numpy integer array."""
    if not isinstance(population, xr.Dataset) or "counts" not in population:
        raise SpikelatentError(
            "population must be an xarray.Dataset with a 'counts' variable (trial, stimulus, unit)"
        )
    counts = population["counts"]
    if set(counts.dims) != {"trial", "stimulus", "unit"}:
        raise SpikelatentError(
            f"population counts must have dims (trial, stimulus, unit), got {tuple(counts.dims)}"
        )
    values = np.asarray(counts.transpose("trial", "stimulus", "unit").values)
    if values.size == 0:
        raise SpikelatentError(
            f"population counts are empty (shape {values.shape}); nothing to export"
        )
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise SpikelatentError(
                "population counts must be whole numbers (found NaN, inf or fractions)"
            )
    elif values.dtype.kind not in "iu":
        raise SpikelatentError(f"population counts must be integers, got dtype {values.dtype}")
    if values.dtype.kind != "u" and np.any(values < 0):
        raise SpikelatentError("population counts must be non-negative")
    if values.dtype.kind == "f" or values.dtype == np.uint64:
        return values.astype(np.int64)  # numpy cannot index or repeat with uint64 safely
    return values


def _arrival_times(
    rng: np.random.Generator, n: int, beta: np.ndarray | None, window: float
) -> np.ndarray:
    """``n`` i.i.d. times in [0, window): uniform, or with density ∝ exp(beta t / window)."""
    u = rng.random(n)
    if beta is not None:
        # Inverse CDF of exp(beta x) on [0, 1); beta -> 0 is the uniform limit.
        small = np.abs(beta) < 1e-8
        safe = np.where(small, 1.0, beta)
        u = np.where(small, u, np.log1p(u * np.expm1(safe)) / safe)
    # A tick inside the window, so counting on ticks keeps every time in its own window.
    return np.minimum(u * window, window - TICK)


def spike_times(
    pop: xr.Dataset, *, process: str = "uniform", window: float = 1.0, seed: int | None = 0
) -> xr.Dataset:
    """Spike times of every count of a population, inside its counting window ``[0, window)``.

    Args:
        pop: a population with ``counts (trial, stimulus, unit)``; ``process="counting"`` also
            needs ``prob (stimulus, unit)``.
        process: ``"uniform"``: given its count, a cell's spikes are i.i.d. uniform in the window,
            the arrival times of a Poisson process, and also of the Gamma–Poisson (mixed Poisson)
            process that draws the counts. ``"counting"``: the arrival times of the NB counting
            process of docs/architecture.md (pure birth at rate β(r + k), β = −log p), which, given its count,
            are i.i.d. with density ∝ exp(β t) on the window (the rate grows with each spike).
        window: length of the counting window in seconds (the population's unit window).
        seed: seed of the times.

    Returns:
        Dataset along dim ``spike`` (ordered by trial, stimulus, unit, then time): ``time``
        (seconds from the window's start), ``trial``, ``stimulus``, ``unit`` (positions along the
        population's dims); attrs ``process``, ``window``, ``seed``.
    """
    if process not in SPIKE_PROCESSES:
        raise SpikelatentError(f"process must be one of {', '.join(SPIKE_PROCESSES)}; got {process!r}")
    if not (np.isfinite(window) and window > 0):
        raise SpikelatentError(f"window must be a positive number of seconds; got {window!r}")
    if not isinstance(pop, xr.Dataset) or "counts" not in pop:
        raise SpikelatentError(
            "spike times need a population with counts: population(model, images, n_trials=N) "
            "with N >= 1"
        )
    counts = pop["counts"].transpose("trial", "stimulus", "unit")
    values = np.asarray(counts.values).astype(np.int64)
    cell = np.repeat(np.arange(values.size), values.reshape(-1))
    trial, stimulus, unit = np.unravel_index(cell, values.shape)
    beta = None
    if process == "counting":
        if "prob" not in pop:
            raise SpikelatentError("process='counting' needs the population's prob (stimulus, unit)")
        prob = np.asarray(pop["prob"].transpose("stimulus", "unit").values, dtype=np.float64)
        beta = -np.log(np.clip(prob, 1e-300, 1.0))[stimulus, unit]
    times = _arrival_times(np.random.default_rng(seed), cell.size, beta, float(window))
    # Sort within each cell: cells are already in order, so a lexsort on (time, cell) suffices.
    order = np.lexsort((times, cell))
    return xr.Dataset(
        {
            "time": ("spike", times[order], {"units": "s", "long_name": "time in the window"}),
            "trial": ("spike", trial[order]),
            "stimulus": ("spike", stimulus[order]),
            "unit": ("spike", unit[order]),
        },
        attrs={"process": process, "window": float(window), "seed": -1 if seed is None else int(seed)},
    )

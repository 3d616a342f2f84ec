"""Spike times → spike counts: one count per window, or consecutive bins inside each window.

The reading side of :mod:`spikelatent.nwb` (NWB files), :func:`spikelatent.pynapple.from_pynapple`
and the model populations (:func:`spikelatent.populations.binned_counts`) all count through
:func:`count_spikes`, so a recording and a model population get the same bins, coordinates and
attributes.

Conventions (seconds throughout):

* a bin is half-open, ``[edge_k, edge_k + bin_size)``, with ``edge_k = window_start + k * bin_size``;
* a window yields ``floor(length / bin_size)`` full bins (a partial last bin is not counted), and
  every window of one call gets the number of full bins of the *shortest* window, so the result
  is a rectangular ``(trial, time, unit)`` array; the spikes counted are exactly those inside the
  binned span ``[window_start, window_start + n_bins * bin_size)`` of each window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from spikelatent.errors import SpikelatentError

__all__ = ["count_spikes", "session_window", "check_bin_size"]

# Smallest unsigned dtype first: 1,000 units x 1 h at 10 ms bins is 3.6e8 counts (360 MB as uint8).
_BIN_DTYPES = (np.uint8, np.uint16, np.uint32, np.uint64)
# Relative slack when dividing a window by bin_size, so 1.0 / 0.1 gives 10 bins, not 9.
_BIN_SLACK = 1e-9


def check_bin_size(bin_size: Any) -> float:
    """``bin_size`` as a positive finite float in seconds, or a one-line error."""
    try:
        value = float(bin_size)
    except (TypeError, ValueError):
        raise SpikelatentError(
            f"bin_size must be a positive number of seconds, e.g. 0.01; got {bin_size!r}"
        ) from None
    if not (np.isfinite(value) and value > 0):
        raise SpikelatentError(
            f"bin_size must be a positive number of seconds, e.g. 0.01; got {bin_size!r}"
        )
    return value


def sorted_times(times: Any) -> np.ndarray:
    """One unit's spike times as a sorted 1-D float64 array (seconds)."""
    values = np.asarray(times, dtype=np.float64).reshape(-1)
    if values.size > 1 and np.any(values[1:] < values[:-1]):
        values = np.sort(values)
    return values


def session_window(spike_times: Iterable[np.ndarray], bin_size: float) -> tuple[float, float]:
    """``(start, stop)`` of whole-session bins: from ``min(0, first spike)`` to past the last spike.

    ``stop`` is a whole number of bins after ``start`` and strictly after the last spike, so every
    spike of the session is counted.
    """
    first, last = np.inf, -np.inf
    for times in spike_times:
        if len(times):
            first, last = min(first, float(np.min(times))), max(last, float(np.max(times)))
    if not np.isfinite(last):
        raise SpikelatentError("no unit has any spike; there is nothing to bin over the session")
    start = min(0.0, first)
    n_bins = int(np.floor((last - start) / bin_size)) + 1
    return start, start + n_bins * bin_size


def _n_full_bins(lengths: np.ndarray, bin_size: float) -> int:
    n_bins = int(np.floor(float(np.min(lengths)) / bin_size * (1 + _BIN_SLACK)))
    if n_bins < 1:
        raise SpikelatentError(
            f"bin_size={bin_size} s is longer than the shortest window "
            f"({float(np.min(lengths)):.6g} s); use a smaller --bin-size"
        )
    return n_bins


def _bin_unit(times: np.ndarray, edges: np.ndarray, n_bins: int) -> np.ndarray:
    """Counts (window, time) of one unit's sorted ``times`` in ``edges`` (window, n_bins + 1)."""
    flat = edges.reshape(-1)
    if flat.size < 2 or np.all(flat[1:] >= flat[:-1]):
        # Disjoint, ordered windows: locate each spike among the edges (cost ~ spikes, not bins).
        position = np.searchsorted(flat, times, side="right") - 1
        window, k = np.divmod(position, n_bins + 1)
        inside = (position >= 0) & (k < n_bins)
        return np.bincount(
            window[inside] * n_bins + k[inside], minlength=edges.shape[0] * n_bins
        ).reshape(edges.shape[0], n_bins)
    # Overlapping windows: count between every pair of consecutive edges instead.
    cumulative = np.searchsorted(times, edges, side="left")
    return np.diff(cumulative, axis=1)


def _store(counts: np.ndarray, unit: int, values: np.ndarray) -> np.ndarray:
    """Write one unit's counts, widening the compact dtype only when a count needs it."""
    high = int(values.max(initial=0))
    if high > np.iinfo(counts.dtype).max:
        dtype = next(d for d in _BIN_DTYPES if high <= np.iinfo(d).max)
        counts = counts.astype(dtype)
    counts[unit] = values
    return counts


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
        attrs: attributes to add to the result.

    Returns:
        ``counts`` DataArray. Without ``bin_size``: dims ``(trial, unit)``, int64. With
        ``bin_size``: dims ``(trial, time, unit)`` (``(time, unit)`` when ``window_dim`` is None),
        the smallest unsigned integer dtype that holds the largest count; coords ``time`` (bin
        centre), ``time_start`` and ``time_stop`` (bin edges) in seconds relative to each window's
        start (absolute session time in the session layout), and ``window_start``/``window_stop``
        along the window dim. ``attrs["bin_size"]`` is the bin width, ``attrs["n_spikes_binned"]``
        the number of spikes counted.
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
    if np.any(stops <= starts):
        raise SpikelatentError(
            f"{int(np.sum(stops <= starts))} window(s) end before they start; every window needs "
            "stop > start"
        )
    if window_dim is None and starts.size != 1:
        raise SpikelatentError("the session layout (no window dim) takes exactly one window")
    n_unit, n_window = len(spike_times), starts.size
    if n_unit == 0:
        raise SpikelatentError("there are no units to count spikes of")
    units = np.arange(n_unit) if unit_ids is None else np.asarray(unit_ids)
    if units.shape != (n_unit,):
        raise SpikelatentError(f"unit_ids must have one entry per unit ({n_unit}); got {units.shape}")
    all_attrs = dict(attrs or {})
    coords: dict[str, Any] = {"unit": units}
    coords.update({name: ("unit", np.asarray(values)) for name, values in (unit_coords or {}).items()})
    window_values = {"window_start": starts, "window_stop": stops, **(window_coords or {})}
    if window_dim is not None:
        coords.update({name: (window_dim, np.asarray(v)) for name, v in window_values.items()})

    if bin_size is None:
        counts = np.empty((n_unit, n_window), dtype=np.int64)
        for unit, times in enumerate(spike_times):
            times = sorted_times(times)
            counts[unit] = np.searchsorted(times, stops, "left") - np.searchsorted(
                times, starts, "left"
            )
        dims: tuple[str, ...] = (window_dim or "trial", "unit")
        data = counts.T
        if window_dim is None:
            coords.update({name: ("trial", np.asarray(v)) for name, v in window_values.items()})
    else:
        bin_size = check_bin_size(bin_size)
        n_bins = _n_full_bins(stops - starts, bin_size)
        offsets = bin_size * np.arange(n_bins + 1)
        edges = starts[:, None] + offsets[None, :]
        counts = np.zeros((n_unit, n_window, n_bins), dtype=_BIN_DTYPES[0])
        for unit, times in enumerate(spike_times):
            counts = _store(counts, unit, _bin_unit(sorted_times(times), edges, n_bins))
        # Written unit by unit (contiguous rows); the result is a transposed view, no copy.
        data = np.moveaxis(counts, 0, -1)
        origin = starts[0] if window_dim is None else 0.0
        coords["time"] = origin + offsets[:-1] + bin_size / 2
        coords["time_start"] = ("time", origin + offsets[:-1])
        coords["time_stop"] = ("time", origin + offsets[1:])
        if window_dim is None:
            data = data[0]
            dims = ("time", "unit")
            binned_span = (float(starts[0]), float(edges[0, -1]))
            all_attrs["binned_span"] = list(binned_span)
        else:
            dims = (window_dim, "time", "unit")
        all_attrs["bin_size"] = bin_size
        all_attrs["n_bins_per_window"] = n_bins
        all_attrs["binned_length"] = n_bins * bin_size
        dropped = float(np.max(stops - starts) - n_bins * bin_size)
        all_attrs["longest_unbinned_tail"] = max(0.0, dropped)
    all_attrs["n_spikes_binned"] = int(counts.sum(dtype=np.int64))
    result = xr.DataArray(data, dims=dims, coords=coords, name="counts", attrs=all_attrs)
    for name in ("time", "time_start", "time_stop", "window_start", "window_stop"):
        if name in result.coords:
            result[name].attrs["units"] = "s"
    result.attrs.setdefault("units", "spikes")
    return result

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
  never zero;
* counts are stored in the smallest unsigned integer type that holds the largest count of the
  array (:func:`smallest_count_dtype`: ``uint8`` up to 255, then ``uint16``, ``uint32``,
  ``uint64``; checked, never wrapping), and in ``float64`` with NaN when a unit has unobserved
  bins. Unsigned counts wrap under subtraction (``counts - 1`` is 255 where a ``uint8`` count is
  0): cast first (``counts.astype("int64")``) for arithmetic of your own; the analyses of
  :mod:`spikelatent.analysis` compute their statistics in float64;
* with ``chunks=`` (or over a ``memory_limit``) the counts are lazy: a dask-backed DataArray
  binned chunk by chunk (along time for one window, along the windows otherwise) when computed,
  with the same values, bit for bit, as in memory. The spike times of a lazily read NWB file
  (:class:`H5SpikeTimes`) are then read per chunk, never all at once.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from spikelatent.errors import SpikelatentError

__all__ = [
    "TICK",
    "SPIKE_PROCESSES",
    "H5SpikeTimes",
    "as_smallest_counts",
    "check_bin_size",
    "count_array",
    "count_spikes",
    "length_tolerance",
    "presentation_windows",
    "recording_span",
    "smallest_count_dtype",
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
# Bytes of one chunk of lazily binned counts when the chunk size is not given.
CHUNK_BYTES = 8 * 2**20
_COUNT_DTYPES = (np.uint8, np.uint16, np.uint32, np.uint64)


def smallest_count_dtype(max_count: Any) -> np.dtype:
    """The smallest unsigned integer dtype that holds counts up to ``max_count``.

    ``uint8`` up to 255, ``uint16`` up to 65,535, ``uint32`` up to 4,294,967,295, else ``uint64``;
    a negative, non-integer or larger ``max_count`` is a one-line error.
    """
    try:
        value = int(max_count)
    except (TypeError, ValueError, OverflowError):
        raise SpikelatentError(f"max_count must be a whole number >= 0; got {max_count!r}") from None
    if value != max_count or value < 0:
        raise SpikelatentError(f"max_count must be a whole number >= 0; got {max_count!r}")
    for dtype in _COUNT_DTYPES:
        if value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise SpikelatentError(f"a count of {value} does not fit in 64 bits")


def as_smallest_counts(array: Any) -> np.ndarray:
    """Non-negative whole-number counts in :func:`smallest_count_dtype` of their largest value.

    Integer or whole-valued float input; NaN, infinities, fractions or negative values are a
    one-line error (checked before the cast, so nothing wraps). The array is returned without a
    copy when it already has that dtype.
    """
    values = np.asarray(array)
    if values.dtype.kind == "b" or values.dtype.kind not in "iuf":
        raise SpikelatentError(f"counts must be whole numbers; got dtype {values.dtype}")
    if values.size == 0:
        return values.astype(np.uint8)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise SpikelatentError("counts must be whole numbers (found NaN, inf or fractions)")
    if values.dtype.kind != "u" and values.min() < 0:
        raise SpikelatentError("counts must be non-negative")
    return values.astype(smallest_count_dtype(values.max()), copy=False)


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


class H5SpikeTimes(Sequence):
    """Every unit's spike times in an HDF5 ragged column, read lazily (one unit, or one slice).

    The NWB ``Units`` table keeps all spike times in one dataset (``spike_times``) and each unit's
    end position in another (``spike_times_index``); ``times[u]`` reads unit ``u`` only, and
    :func:`count_spikes` with ``chunks`` reads the slice of every unit that falls in a chunk of
    time. Holds file and dataset names, not an open file, so it can be pickled (to a
    ``dask.distributed`` worker).

    Args:
        path: the HDF5 (NWB) file.
        data: name of the flat dataset of spike times (seconds), e.g. ``/units/spike_times``.
        ends: each unit's end position in ``data`` (the ragged column's index), shape (unit,).
    """

    def __init__(self, path: str, data: str, ends: Any) -> None:
        self.path, self.data = str(path), str(data)
        self.ends = np.asarray(ends, dtype=np.int64).reshape(-1)
        self.begins = np.concatenate([[0], self.ends[:-1]]).astype(np.int64)
        self._token = uuid.uuid4().hex

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, unit: Any) -> np.ndarray:  # type: ignore[override]
        unit = int(unit)
        return self.read(unit, 0, int(self.ends[unit] - self.begins[unit]))

    def read(self, unit: int, lo: int, hi: int) -> np.ndarray:
        """Positions ``lo:hi`` of unit ``unit``'s times as stored (float64 seconds)."""
        if hi <= lo:
            return np.empty(0, dtype=np.float64)
        begin = int(self.begins[unit])
        with _H5_LOCK:
            return np.asarray(_h5_dataset(self.path, self.data)[begin + lo : begin + hi],
                              dtype=np.float64)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "data": self.data, "ends": self.ends, "_token": self._token}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["data"], state["ends"])
        self._token = state["_token"]

    def __dask_tokenize__(self) -> str:
        return self._token


_H5_LOCK = threading.Lock()
_H5_FILES: dict[tuple[str, str], Any] = {}


# HDF5's chunk cache for the spike times: a chunk of time reads every unit's slice in unit order,
# so a few of the file's HDF5 chunks at a time are enough; with HDF5's 1 MiB default, a file
# written in 8 MB chunks was read whole-chunk for every slice (4 ms each instead of ~50 µs).
_H5_CACHE_BYTES = 64 * 2**20


def _h5_dataset(path: str, name: str) -> Any:
    """A dataset of a read-only h5py file, both opened once per process (the chunk cache belongs
    to the open dataset; h5py serialises access anyway)."""
    import h5py

    dataset = _H5_FILES.get((path, name))
    if dataset is None or not dataset.id.valid:
        handle = h5py.File(path, "r", rdcc_nbytes=_H5_CACHE_BYTES, rdcc_nslots=10_007)
        dataset = _H5_FILES[(path, name)] = handle[name]
    return dataset


class _Ticks:
    """Sorted spike ticks of every unit, each for any range of positions: from memory, or read
    from an :class:`H5SpikeTimes` (units stored sorted are sliced on disk; others are held)."""

    def __init__(self, source: Sequence[Any], held: dict[int, np.ndarray]) -> None:
        self.source = source if isinstance(source, H5SpikeTimes) else None
        self.held = held
        self._token = uuid.uuid4().hex

    def get(self, unit: int, lo: int, hi: int) -> np.ndarray:
        if unit in self.held:
            return self.held[unit][lo:hi]
        return to_ticks(self.source.read(unit, lo, hi))

    def __dask_tokenize__(self) -> str:
        return self._token


def _count_block(
    ticks: _Ticks,
    positions: np.ndarray,
    edges: np.ndarray,
    n_bins: int,
    observed: Sequence[Any] | None,
    dtype: np.dtype,
    whole_windows: bool,
) -> np.ndarray:
    """One chunk of counts, ``(window, [bin,] unit)`` in ``dtype`` (NaN where unobserved).

    ``positions`` (unit, 2): each unit's range of sorted spikes inside the chunk's edges.
    """
    n_unit = positions.shape[0]
    out = np.empty((edges.shape[0], n_bins, n_unit), dtype=dtype)
    for unit in range(n_unit):
        unit_ticks = ticks.get(unit, int(positions[unit, 0]), int(positions[unit, 1]))
        out[:, :, unit] = _bin_unit(unit_ticks, edges, n_bins)
        intervals = observed[unit] if observed is not None else None
        if intervals is not None and dtype.kind == "f":
            out[:, :, unit][~_observed_bins(intervals, edges)] = np.nan
    return out[:, 0, :] if whole_windows else out


def _memory_budget(value: Any) -> int | None:
    if value is None:
        return None
    try:
        budget = int(value)
    except (TypeError, ValueError):
        budget = -1
    if budget <= 0:
        raise SpikelatentError(f"memory_limit must be a positive number of bytes; got {value!r}")
    return budget


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
    chunks: int | str | None = None,
    memory_limit: int | None = None,
) -> xr.DataArray:
    """Count every unit's spikes per window, or in consecutive bins inside every window.

    Args:
        spike_times: one array of spike times (seconds) per unit; need not be sorted. An
            :class:`H5SpikeTimes` is read one unit at a time (and, chunked, one slice at a time).
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
        chunks: lazy, chunked counts (a dask-backed DataArray): the number of bins (one window)
            or of windows (several) per chunk, or ``"auto"`` (about :data:`CHUNK_BYTES` a
            chunk). ``None``: in memory, unless ``memory_limit`` is exceeded.
        memory_limit: bytes; counts larger than this are returned chunked (``chunks="auto"``).

    Returns:
        ``counts`` DataArray in the smallest unsigned integer dtype that holds its largest count
        (:func:`smallest_count_dtype`), ``float64`` with NaN where a unit was not observed.
        Without ``bin_size``: dims ``(trial, unit)``. With ``bin_size``: dims
        ``(trial, time, unit)`` (``(time, unit)`` when ``window_dim`` is None); coords ``time``
        (bin centre), ``time_start`` and ``time_stop`` (bin edges) in seconds relative to each
        window's start (absolute session time in the session layout), and
        ``window_start``/``window_stop`` along the window dim. ``attrs``: ``bin_size``,
        ``n_spikes_binned`` (spikes counted in observed bins), ``n_unobserved`` (NaN entries),
        ``max_count``; ``chunked`` (True for lazy counts).
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
    n_unit = len(spike_times)
    if n_unit == 0:
        raise SpikelatentError("there are no units to count spikes of")
    units = np.arange(n_unit) if unit_ids is None else np.asarray(unit_ids)
    if units.shape != (n_unit,):
        raise SpikelatentError(f"unit_ids must have one entry per unit ({n_unit}); got {units.shape}")
    if observed is not None and len(observed) != n_unit:
        raise SpikelatentError(
            f"observed must give one set of intervals per unit ({n_unit}); got {len(observed)}"
        )
    if chunks is not None and chunks != "auto":
        if isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks < 1:
            raise SpikelatentError(f"chunks must be a positive number or 'auto'; got {chunks!r}")
    memory_limit = _memory_budget(memory_limit)
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

    if chunks is None and memory_limit is None:
        data, n_spikes, n_unobserved, max_count = _count_in_memory(
            spike_times, edges, n_bins, observed, bin_size is None
        )
    else:
        data, n_spikes, n_unobserved, max_count = _count_lazily(
            spike_times, edges, n_bins, observed, bin_size is None, chunks, memory_limit
        )
    all_attrs["chunked"] = not isinstance(data, np.ndarray)
    all_attrs["n_unobserved"] = n_unobserved
    all_attrs["max_count"] = max_count
    if bin_size is None:
        dims: tuple[str, ...] = (window_dim or "trial", "unit")
        if window_dim is None:
            coords.update({name: ("trial", np.asarray(v)) for name, v in window_values.items()})
    else:
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


def _count_in_memory(
    spike_times: Sequence[Any],
    edges: np.ndarray,
    n_bins: int,
    observed: Sequence[Any] | None,
    whole_windows: bool,
) -> tuple[np.ndarray, int, int, int]:
    """Counts ``(window, bin, unit)`` (``(window, unit)`` for whole windows) in memory, written
    unit by unit in the smallest dtype so far (widened, never wrapped, when a count needs it)."""
    n_unit, n_window = len(spike_times), edges.shape[0]
    counts = np.zeros((n_unit, n_window, n_bins), dtype=np.uint8)
    for unit in range(n_unit):
        unit_counts = _bin_unit(to_ticks(sorted_times(spike_times[unit])), edges, n_bins)
        largest = int(unit_counts.max(initial=0))
        if largest > np.iinfo(counts.dtype).max:
            counts = counts.astype(smallest_count_dtype(largest))
        counts[unit] = unit_counts
    max_count = int(counts.max(initial=0))
    n_spikes, n_unobserved = int(counts.sum(dtype=np.int64)), 0
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
    # Written unit by unit (contiguous rows); the result is a transposed view, no copy.
    data = np.moveaxis(counts, 0, -1)
    return (data[:, 0, :] if whole_windows else data), n_spikes, n_unobserved, max_count


def _count_lazily(
    spike_times: Sequence[Any],
    edges: np.ndarray,
    n_bins: int,
    observed: Sequence[Any] | None,
    whole_windows: bool,
    chunks: int | str | None,
    memory_limit: int | None,
) -> tuple[Any, int, int, int]:
    """A first pass over the units (one at a time) for the dtype, the totals and each unit's
    spikes per chunk; then in memory when the counts fit ``memory_limit``, else a dask array
    binned chunk by chunk when computed."""
    n_unit, n_window = len(spike_times), edges.shape[0]
    max_count, n_spikes, n_unobserved = 0, 0, 0
    held: dict[int, np.ndarray] = {}
    along_bins = n_window == 1 and not whole_windows  # one window (a session): chunk its time
    n_rows = n_bins if along_bins else n_window
    # Chunk rows are fixed before the pass (their size assumes one byte a count; the dtype may
    # be wider); each unit's spikes are located against every chunk's edges during the pass.
    if chunks is None or chunks == "auto":
        row_values = n_unit * (1 if along_bins else n_bins)
        target = CHUNK_BYTES if memory_limit is None else min(CHUNK_BYTES, memory_limit // 8)
        rows_per_chunk = max(1, target // row_values)
    else:
        rows_per_chunk = int(chunks)
    bounds = np.arange(0, n_rows, rows_per_chunk)
    if along_bins:
        chunk_lo, chunk_hi = edges[0, bounds], edges[0, np.minimum(bounds + rows_per_chunk, n_rows)]
    else:
        chunk_lo = np.minimum.reduceat(edges[:, 0], bounds)
        chunk_hi = np.maximum.reduceat(edges[:, -1], bounds)
    positions = np.empty((n_unit, len(bounds), 2), dtype=np.int64)
    lengths = np.empty(n_unit, dtype=np.int64)
    any_unobserved = False
    for unit in range(n_unit):
        raw = np.asarray(spike_times[unit], dtype=np.float64).reshape(-1)
        is_sorted = raw.size < 2 or not np.any(raw[1:] < raw[:-1])
        ticks = to_ticks(raw if is_sorted else np.sort(raw))
        if not (is_sorted and isinstance(spike_times, H5SpikeTimes)):
            held[unit] = ticks  # in memory already, or stored unsorted: keep the sorted ticks
        unit_counts = _bin_unit(ticks, edges, n_bins)
        max_count = max(max_count, int(unit_counts.max(initial=0)))
        n_spikes += int(unit_counts.sum(dtype=np.int64))
        intervals = observed[unit] if observed is not None else None
        if intervals is not None:
            mask = ~_observed_bins(intervals, edges)
            if mask.any():
                any_unobserved = True
                n_spikes -= int(unit_counts[mask].sum(dtype=np.int64))
                n_unobserved += int(mask.sum())
        lengths[unit] = ticks.size
        positions[unit, :, 0] = np.searchsorted(ticks, chunk_lo, side="left")
        positions[unit, :, 1] = np.searchsorted(ticks, chunk_hi, side="left")
    dtype = np.dtype(np.float64) if any_unobserved else smallest_count_dtype(max_count)
    size = n_unit * n_window * n_bins * dtype.itemsize
    ticks_source = _Ticks(spike_times, held)
    if chunks is None and size <= memory_limit:
        everything = np.stack([np.zeros(n_unit, np.int64), lengths], axis=1)
        block = _count_block(ticks_source, everything, edges, n_bins, observed, dtype, whole_windows)
        return block, n_spikes, n_unobserved, max_count

    import dask
    import dask.array as da

    source = dask.delayed(ticks_source, traverse=False)
    blocks = []
    for index, first in enumerate(bounds):
        last = min(first + rows_per_chunk, n_rows)
        if along_bins:  # (1, bins of the chunk, unit)
            block_edges, shape = edges[:, first : last + 1], (1, last - first, n_unit)
        else:  # (windows of the chunk, [bin,] unit)
            block_edges = edges[first:last]
            shape = (last - first, n_unit) if whole_windows else (last - first, n_bins, n_unit)
        task = dask.delayed(_count_block, pure=True)(
            source, positions[:, index], block_edges, block_edges.shape[1] - 1, observed, dtype,
            whole_windows,
        )
        blocks.append(da.from_delayed(task, shape=shape, dtype=dtype))
    data = da.concatenate(blocks, axis=1 if along_bins else 0)
    return data, n_spikes, n_unobserved, max_count


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

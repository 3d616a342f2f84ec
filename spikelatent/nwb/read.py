"""Spike counts from any NWB file's ``Units`` table (recorded or simulated): :func:`read_counts`.

One count per unit and interval of a ``TimeIntervals`` table, or (with ``bin_size``) counts in
consecutive bins over the whole session or inside every interval, as an xarray ``counts`` with
the intervals' columns and the units' columns as coordinates. Counting is
:func:`spikelatent.spikes.count_spikes` (exact bin edges on integer ticks, whole bins only, NaN
where a unit was not observed); :func:`population_counts` turns the counts of a spikelatent export
back into the model layout ``(trial, stimulus, unit)``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from spikelatent.errors import SpikelatentError
from spikelatent.nwb.stimuli import find_stimulus_column
from spikelatent.spikes import H5SpikeTimes, check_bin_size, count_spikes, recording_span

__all__ = ["read_counts", "population_counts", "SESSION"]

# The name read_counts uses (and accepts) for "no intervals table: the whole session".
SESSION = "session"


def read_counts(
    path: str | os.PathLike,
    bin_start: float = 0.0,
    bin_stop: float | None = None,
    intervals: str | None = None,
    *,
    bin_size: float | None = None,
    stimulus_column: str | None = None,
    chunks: int | str | None = None,
    memory_limit: int | None = None,
) -> xr.DataArray:
    """Spike counts of every unit per interval of an NWB file, or in time bins.

    Without ``bin_size``, for interval row ``i`` and unit ``u`` the count is the number of spike
    times ``t`` with ``start_time[i] + bin_start <= t < (start_time[i] + bin_stop if bin_stop else
    stop_time[i])``. With ``bin_size`` that window is cut into consecutive bins
    ``[window_start + k * bin_size, window_start + (k + 1) * bin_size)`` (edges exact to the
    nanosecond, so a spike on an edge goes to the bin starting there); every interval gets the
    number of whole bins of the shortest window (see :mod:`spikelatent.spikes`). Time outside a
    unit's ``obs_intervals`` (when the units table has them) is missing: NaN, not zero.

    Args:
        path: any NWB file with a ``Units`` table (with ``spike_times``).
        bin_start: window start relative to each interval's ``start_time``, seconds.
        bin_stop: window end relative to ``start_time``, seconds; ``None`` = the interval's
            ``stop_time``.
        intervals: ``"trials"``, ``"epochs"``, the name of another ``TimeIntervals`` table, or
            ``"session"`` (one window over the recording: the units' observation intervals, from
            the earliest start to the latest stop, or without them from ``min(0, first spike)``
            to the latest ``stop_time`` of the file's intervals tables or the last spike, whichever
            is later; whole bins only, so no bin runs past the data). ``None`` (default): ``"trials"`` if the file has a trials table,
            otherwise ``"session"``. ``attrs["intervals"]`` says which was used.
        bin_size: bin width in seconds (``None``: one count per window).
        stimulus_column: the intervals-table column naming each row's stimulus (``None``: the
            first of :data:`spikelatent.nwb.stimuli.STIMULUS_COLUMNS` present, as
            ``spikelatent similarity`` does: ``stimulus_index``, ``image_id``, ...). Its values
            become the ``stimulus`` coordinate along ``trial``, which every analysis groups trials
            by (a table column that is itself called ``stimulus`` but not used is renamed
            ``trial_stimulus``). ``attrs["stimulus_column"]`` names the column used (``None``:
            none); ``attrs["stimulus_note"]`` says, in one line, when columns look like stimulus
            ids but none is used (also issued as a warning).
        chunks: lazy, chunked counts (a dask-backed DataArray, binned chunk by chunk when
            computed): bins (session) or intervals per chunk, or ``"auto"``; see
            :func:`spikelatent.spikes.count_spikes`. ``None``: in memory unless the counts
            exceed ``memory_limit`` (bytes).
        memory_limit: bytes the counts may take in memory; larger counts come back chunked.

    Returns:
        ``counts`` DataArray, int64 (float64 with NaN where a unit was not observed). Without
        ``bin_size``: dims ``(trial, unit)``. With ``bin_size``: dims ``(trial, time, unit)``, or
        ``(time, unit)`` for the session; coords ``time`` (bin centres), ``time_start``/``time_stop``
        (bin edges), in seconds relative to each window's start (absolute session time for
        ``"session"``). Coords along ``trial``: interval ids, ``window_start``/``window_stop``
        (absolute seconds), ``stimulus`` (see ``stimulus_column``) and every scalar column of the
        intervals table (e.g. ``start_time``, ``stop_time``, ``stimulus_index``, ``label``); along
        ``unit``: units-table ids and every scalar column of the units table (prefixed ``unit_``
        if the name clashes).
    """
    from pynwb import NWBHDF5IO

    source = Path(path)
    if not source.is_file():
        raise SpikelatentError(f"NWB file {source} not found")
    if bin_size is not None:
        bin_size = check_bin_size(bin_size)
    if bin_stop is not None and not bin_stop > bin_start:
        raise SpikelatentError(
            f"bin_stop ({bin_stop}) must be greater than bin_start ({bin_start})"
        )
    io = None
    try:
        io = NWBHDF5IO(str(source), "r")
        nwbfile = io.read()
    except Exception as error:  # h5py/hdmf raise many types for a non-NWB file
        if io is not None:
            io.close()
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SpikelatentError(f"cannot read {source} as NWB: {first_line}") from None
    try:
        units = nwbfile.units
        if units is None or len(units) == 0:
            raise SpikelatentError(f"{source} has no units (no Units table); nothing to count")
        if "spike_times" not in units.colnames:
            raise SpikelatentError(f"{source}: the Units table has no spike_times column")
        if intervals is None:
            intervals = "trials" if nwbfile.trials is not None else SESSION
            note = (
                "the file's trials table"
                if intervals == "trials"
                else "whole session: the file has no trials table"
            )
        else:
            note = f"requested intervals={intervals!r}"
        spike_times = _spike_times(units)
        observed = (
            list(_ragged_rows(units, "obs_intervals")) if "obs_intervals" in units.colnames else None
        )
        unit_coords = _scalar_columns(units, len(units))
        attrs: dict[str, Any] = {
            "source": str(source),
            "intervals": intervals,
            "intervals_note": note,
            "session_description": str(nwbfile.session_description),
            "identifier": str(nwbfile.identifier),
        }
        attrs["stimulus_column"] = None
        if intervals == SESSION:
            if stimulus_column is not None:
                raise SpikelatentError(
                    f"stimulus_column={stimulus_column!r} needs an intervals table, but "
                    f"{source} is counted over the whole session; pass intervals='trials' "
                    "(CLI: --intervals trials)"
                )
            start, stop = recording_span(spike_times, observed, end=_last_interval_stop(nwbfile))
            attrs["recording_span"] = [start, stop]
            attrs["description"] = "spike counts over the whole session"
            result = count_spikes(
                spike_times,
                [start],
                [stop],
                bin_size=bin_size,
                unit_ids=np.asarray(units.id.data[:]),
                window_dim=None if bin_size is not None else "trial",
                unit_coords=_unclashed(unit_coords, set()),
                observed=observed,
                attrs=attrs,
                chunks=chunks,
                memory_limit=memory_limit,
            )
        else:
            table = _intervals_table(nwbfile, intervals, source)
            if len(table) == 0:
                raise SpikelatentError(f"{source}: intervals table '{intervals}' has no rows")
            starts = np.asarray(table["start_time"].data[:], dtype=np.float64)
            stops = np.asarray(table["stop_time"].data[:], dtype=np.float64)
            window_start = starts + bin_start
            window_stop = stops if bin_stop is None else starts + bin_stop
            if np.any(window_stop <= window_start):
                raise SpikelatentError(
                    f"bin_start={bin_start} leaves {int(np.sum(window_stop <= window_start))} "
                    "interval(s) with an empty window; use a smaller bin_start or set bin_stop"
                )
            columns = _scalar_columns(table, len(table))
            chosen, stimulus_ids, stimulus_note = find_stimulus_column(columns, stimulus_column)
            trial_coords = {
                (f"trial_{name}" if name in _RESERVED else name): values
                for name, values in columns.items()
            }
            if chosen is not None:
                if chosen != "stimulus" and "stimulus" in trial_coords:
                    trial_coords["trial_stimulus"] = trial_coords.pop("stimulus")
                trial_coords["stimulus"] = stimulus_ids
            attrs["stimulus_column"] = chosen
            if stimulus_note is not None:
                attrs["stimulus_note"] = stimulus_note
                warnings.warn(stimulus_note, UserWarning, stacklevel=2)
            attrs["bin_start"] = float(bin_start)
            attrs["bin_stop"] = "stop_time" if bin_stop is None else float(bin_stop)
            attrs["description"] = (
                "spike counts per interval and unit, window [start_time + bin_start, "
                + ("stop_time)" if bin_stop is None else "start_time + bin_stop)")
                + ("" if bin_size is None else f", in bins of {bin_size} s")
            )
            result = count_spikes(
                spike_times,
                window_start,
                window_stop,
                bin_size=bin_size,
                unit_ids=np.asarray(units.id.data[:]),
                window_dim="trial",
                window_coords=trial_coords,
                unit_coords=_unclashed(unit_coords, set(trial_coords)),
                observed=observed,
                attrs=attrs,
                chunks=chunks,
                memory_limit=memory_limit,
            )
            result = result.assign_coords(trial=np.asarray(table.id.data[:]))
    finally:
        io.close()
    return result


# Coordinate names read_counts defines itself; table columns of these names get a prefix.
_RESERVED = ("trial", "unit", "time", "time_start", "time_stop", "window_start", "window_stop")


def _unclashed(unit_coords: dict[str, np.ndarray], taken: set[str]) -> dict[str, np.ndarray]:
    return {
        (f"unit_{name}" if name in taken or name in _RESERVED else name): values
        for name, values in unit_coords.items()
    }


def _spike_times(units) -> Sequence[np.ndarray]:
    """Every unit's spike times, read lazily from the file one unit (or one slice) at a time
    (:class:`spikelatent.spikes.H5SpikeTimes`); in memory for a table not backed by HDF5."""
    import h5py

    index = units["spike_times"]
    data = index.target.data
    if isinstance(data, h5py.Dataset) and isinstance(index.data, h5py.Dataset):
        return H5SpikeTimes(data.file.filename, data.name, index.data[:])
    return list(_ragged_rows(units, "spike_times"))


def _ragged_rows(units, column: str) -> Iterator[np.ndarray]:
    """Each unit's rows of a ragged column (``spike_times``: float64 seconds; ``obs_intervals``:
    ``(n, 2)`` seconds), read one unit at a time."""
    ends = np.asarray(units[column].data[:], dtype=np.int64)  # VectorIndex: cumulative ends
    all_times = units[column].target.data
    begin = 0
    for end in ends:
        yield np.asarray(all_times[begin:end], dtype=np.float64)
        begin = end


def _last_interval_stop(nwbfile) -> float | None:
    """The latest ``stop_time`` of the file's intervals tables (epochs, trials, ...): where the
    recording is known to last until, beyond its last spike; ``None`` without any."""
    stops = [
        float(np.max(table["stop_time"].data[:]))
        for table in (nwbfile.intervals or {}).values()
        if len(table) and "stop_time" in table.colnames
    ]
    return max(stops) if stops else None


def _intervals_table(nwbfile, name: str, source: Path):
    if name == "trials":
        table = nwbfile.trials
    elif name == "epochs":
        table = nwbfile.epochs
    else:
        table = nwbfile.intervals.get(name) if nwbfile.intervals is not None else None
    if table is None:
        available = sorted(nwbfile.intervals) if nwbfile.intervals else []
        raise SpikelatentError(
            f"{source} has no '{name}' intervals table (available: "
            f"{', '.join([*available, SESSION])}); pass intervals=NAME (CLI: --intervals NAME)"
        )
    return table


def _scalar_columns(table, n_rows: int) -> dict[str, np.ndarray]:
    """The table's one-value-per-row columns as numpy arrays (ragged and region columns skipped)."""
    from hdmf.common import DynamicTableRegion, VectorIndex

    columns = {}
    for name in table.colnames:
        column = table[name]
        if isinstance(column, (VectorIndex, DynamicTableRegion)):
            continue
        values = np.asarray(column.data[:])
        if values.ndim != 1 or len(values) != n_rows:
            continue
        if values.dtype.kind == "O" or values.dtype.kind == "S":
            values = np.array([v.decode() if isinstance(v, bytes) else v for v in values])
            if values.dtype.kind == "O":
                continue  # references or mixed objects: not a coordinate
        columns[name] = values
    return columns


def population_counts(counts: xr.DataArray) -> xr.DataArray:
    """Reshape :func:`read_counts` of a spikelatent export back to (trial, stimulus, unit).

    Uses the export's ``stimulus`` column (the stimulus's position; ``trial_stimulus`` when
    :func:`read_counts` took the stimulus ids from its ``stimulus_id`` column) and ``trial_repeat``
    along the ``trial`` dimension; every (trial_repeat, stimulus) pair must occur exactly once. The result's ``trial`` is the repeat
    number, and ``label`` (if present) becomes a coordinate along ``stimulus``.

    Args:
        counts: DataArray with dims (trial, unit) as returned by :func:`read_counts`.

    Returns:
        DataArray (trial, stimulus, unit) of the same dtype, named ``counts``.
    """
    position = "trial_stimulus" if "trial_stimulus" in counts.coords else "stimulus"
    for name in (position, "trial_repeat"):
        if name not in counts.coords or counts[name].dims != ("trial",):
            raise SpikelatentError(
                f"counts have no '{name}' coordinate along 'trial'; population_counts needs a spikelatent export"
            )
    stimulus = np.asarray(counts[position].values, dtype=np.int64)
    repeat = np.asarray(counts["trial_repeat"].values, dtype=np.int64)
    if stimulus.min() < 0 or repeat.min() < 0:
        raise SpikelatentError("stimulus and trial_repeat indices must be non-negative")
    n_stimulus, n_repeat = int(stimulus.max()) + 1, int(repeat.max()) + 1
    seen = np.zeros((n_repeat, n_stimulus), dtype=np.int64)
    np.add.at(seen, (repeat, stimulus), 1)
    if np.any(seen != 1):
        raise SpikelatentError(
            f"each (trial_repeat, stimulus) pair must occur exactly once; {int(np.sum(seen != 1))} pairs do not"
        )
    data = counts.transpose("trial", "unit").values
    reshaped = np.empty((n_repeat, n_stimulus, data.shape[1]), dtype=data.dtype)
    reshaped[repeat, stimulus] = data
    coords: dict[str, Any] = {
        "trial": np.arange(n_repeat),
        "stimulus": np.arange(n_stimulus),
        "unit": counts["unit"].values,
    }
    if "label" in counts.coords and counts["label"].dims == ("trial",):
        labels = np.empty(n_stimulus, dtype=counts["label"].dtype)
        labels[stimulus] = counts["label"].values
        coords["label"] = ("stimulus", labels)
    return xr.DataArray(
        reshaped,
        dims=("trial", "stimulus", "unit"),
        coords=coords,
        name="counts",
        attrs=dict(counts.attrs),
    )

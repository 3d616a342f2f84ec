"""Bridges to pynapple (and, through it, to neo/elephant users): spike trains in, counts out.

Optional extra: ``pip install "spikelatent[neuro]"``.

* :func:`to_pynapple` turns a model population (``counts (trial, stimulus, unit)``) or binned counts
  (from :func:`spikelatent.nwb.read_counts` / :func:`from_pynapple`) into a ``pynapple.TsGroup``
  of spike times plus the ``pynapple.IntervalSet`` of the presentations (windows).
* :func:`from_pynapple` counts a ``TsGroup`` in an ``IntervalSet`` (or over the session), in the
  layout of :func:`spikelatent.nwb.read_counts`, through the same counting code.

A population's spike times are those :func:`spikelatent.nwb.to_nwb` writes with the same
``seed``, ``trial_duration`` and ``inter_trial_interval``; binned counts get their spikes placed
uniformly inside their bins, so counting them again in the same bins gives back every count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from spikelatent.errors import SpikelatentError
from spikelatent.spikes import (
    check_bin_size,
    count_array,
    count_spikes,
    presentation_windows,
    recording_span,
    uniform_spike_times,
)

__all__ = ["to_pynapple", "from_pynapple"]


def _pynapple() -> Any:
    try:
        import pynapple
    except ImportError:
        raise SpikelatentError(
            'the pynapple bridge needs pynapple: pip install "spikelatent[neuro]"'
        ) from None
    return pynapple


def _unit_keys(unit: xr.DataArray) -> tuple[list[int], dict[str, Any]]:
    """Integer TsGroup keys for the units (their ids when integer), plus metadata to keep."""
    values = np.asarray(unit.values)
    if values.dtype.kind in "iu" and len(np.unique(values)) == values.size:
        return [int(v) for v in values], {}
    return list(range(values.size)), {"unit_name": values.astype(str)}


def _population_trains(
    pop: xr.Dataset, trial_duration: float, inter_trial_interval: float, seed: int
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, dict[str, Any]]:
    counts = count_array(pop)
    n_trial, n_stimulus, n_unit = counts.shape
    starts, stops = presentation_windows(n_trial * n_stimulus, trial_duration, inter_trial_interval)
    by_unit = counts.reshape(-1, n_unit).T  # trial-major presentations, as to_nwb
    rng = np.random.default_rng(seed)  # one stream over the units in order, as to_nwb draws them
    trains = [uniform_spike_times(by_unit[u], starts, stops, rng) for u in range(n_unit)]
    metadata: dict[str, Any] = {
        "stimulus": np.tile(np.arange(n_stimulus), n_trial),
        "trial_repeat": np.repeat(np.arange(n_trial), n_stimulus),
    }
    if "label" in pop.coords and pop["label"].dims == ("stimulus",):
        metadata["label"] = np.tile(np.asarray(pop["label"].values), n_trial)
    return trains, starts, stops, metadata


def _binned_trains(counts: xr.DataArray, seed: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, dict[str, Any]]:
    for name in ("time_start", "time_stop"):
        if name not in counts.coords:
            raise SpikelatentError(
                "binned counts need time_start/time_stop coords (from read_counts(..., bin_size=S) "
                "or from_pynapple); for a model population pass the population Dataset itself"
            )
    if counts.dtype.kind == "f" and bool(counts.isnull().any()):
        raise SpikelatentError(
            "these counts have unobserved (NaN) bins, which pynapple cannot hold per unit; load "
            "the NWB file with pynapple directly (exact spike times), or drop those units or bins"
        )
    rng = np.random.default_rng(seed)
    left = np.asarray(counts["time_start"].values, dtype=np.float64)
    right = np.asarray(counts["time_stop"].values, dtype=np.float64)
    metadata: dict[str, Any] = {}
    if counts.dims == ("time", "unit"):
        offsets = np.zeros(1)
        values = np.asarray(counts.values)[None]
        starts, stops = left[:1], right[-1:]
    elif counts.dims == ("trial", "time", "unit"):
        if "window_start" not in counts.coords:
            raise SpikelatentError("binned (trial, time, unit) counts need a window_start coord")
        offsets = np.asarray(counts["window_start"].values, dtype=np.float64)
        values = np.asarray(counts.values)
        starts = offsets + left[0]
        stops = offsets + right[-1]
        for name, coord in counts.coords.items():
            if coord.dims == ("trial",) and name not in ("trial", "window_start", "window_stop"):
                if np.asarray(coord.values).dtype.kind in "iufbU":
                    metadata[name] = np.asarray(coord.values)
    else:
        raise SpikelatentError(
            f"binned counts must have dims (time, unit) or (trial, time, unit); got {counts.dims}"
        )
    bin_left = (offsets[:, None] + left[None, :]).reshape(-1)  # (trial, time) absolute seconds
    bin_right = (offsets[:, None] + right[None, :]).reshape(-1)
    trains = [
        uniform_spike_times(np.asarray(values[..., u]).reshape(-1), bin_left, bin_right, rng)
        for u in range(values.shape[-1])
    ]
    return trains, starts, stops, metadata


def to_pynapple(
    population_or_counts: xr.Dataset | xr.DataArray,
    *,
    trial_duration: float = 1.0,
    inter_trial_interval: float = 0.5,
    seed: int = 0,
) -> tuple[Any, Any]:
    """Spike trains of a population or of binned counts as a pynapple ``TsGroup`` and ``IntervalSet``.

    Args:
        population_or_counts: a population Dataset with ``counts (trial, stimulus, unit)``
            (presentations trial-major, as :func:`spikelatent.nwb.to_nwb` lays them out), or binned
            counts ``(time, unit)`` / ``(trial, time, unit)`` with ``time_start``/``time_stop`` (and
            ``window_start``) coords.
        trial_duration: presentation window in seconds (populations only).
        inter_trial_interval: gap between presentations in seconds (populations only).
        seed: seed of the spike times.

    Returns:
        ``(TsGroup, IntervalSet)``: one ``Ts`` per unit (key = unit id when the ids are integers),
        and one interval per presentation/window with metadata ``stimulus``, ``trial_repeat``,
        ``label`` (populations) or the trial coordinates (binned counts).
    """
    nap = _pynapple()
    if isinstance(population_or_counts, xr.Dataset):
        if not (np.isfinite(trial_duration) and trial_duration > 0 and inter_trial_interval >= 0):
            raise SpikelatentError("trial_duration must be > 0 s and inter_trial_interval >= 0 s")
        pop = population_or_counts
        trains, starts, stops, metadata = _population_trains(
            pop, float(trial_duration), float(inter_trial_interval), int(seed)
        )
        unit = pop["unit"] if "unit" in pop.coords else xr.DataArray(np.arange(len(trains)))
    elif isinstance(population_or_counts, xr.DataArray):
        trains, starts, stops, metadata = _binned_trains(population_or_counts, int(seed))
        unit = population_or_counts["unit"]
    else:
        raise SpikelatentError(
            "to_pynapple takes a population Dataset or a binned counts DataArray; got "
            f"{type(population_or_counts).__name__}"
        )
    keys, unit_metadata = _unit_keys(unit)
    support = nap.IntervalSet(start=float(starts.min()), end=float(stops.max()))
    group = nap.TsGroup(
        {key: nap.Ts(t=times) for key, times in zip(keys, trains, strict=True)},
        time_support=support,
        metadata=unit_metadata or None,
    )
    intervals = nap.IntervalSet(start=starts, end=stops, metadata=metadata or None)
    return group, intervals


def from_pynapple(tsgroup: Any, epochs: Any = None, bin_size: float | None = None) -> xr.DataArray:
    """Count a pynapple ``TsGroup`` per interval of ``epochs``, or in bins, as spikelatent counts.

    Args:
        tsgroup: ``pynapple.TsGroup`` (spike times in seconds).
        epochs: ``pynapple.IntervalSet`` of windows; ``None``: the whole session (the
            TsGroup's time support, from its first start to its last end; a partial last bin is
            dropped).
        bin_size: bin width in seconds; ``None``: one count per window.

    Returns:
        The layout of :func:`spikelatent.nwb.read_counts`: ``(trial, unit)``, ``(trial, time, unit)``
        or ``(time, unit)``; ``unit`` = the TsGroup keys, its metadata columns as ``unit`` coords,
        the IntervalSet's metadata columns as ``trial`` coords.
    """
    nap = _pynapple()
    if not isinstance(tsgroup, nap.TsGroup):
        raise SpikelatentError(f"from_pynapple takes a pynapple.TsGroup; got {type(tsgroup).__name__}")
    keys = list(tsgroup.keys())
    trains = [np.asarray(tsgroup[key].t, dtype=np.float64) for key in keys]
    unit_coords = {}
    for name in tsgroup.metadata_columns:
        if name != "rate":  # pynapple's own mean rate over the time support, not a unit property
            unit_coords[name] = np.asarray(tsgroup[name].values)
    if bin_size is not None:
        bin_size = check_bin_size(bin_size)
    attrs = {"source": "pynapple.TsGroup"}
    if epochs is None:
        support = tsgroup.time_support
        if len(support):  # the span the TsGroup says it covers: no bin past the data
            start, stop = float(support.start[0]), float(support.end[-1])
        else:
            start, stop = recording_span(trains)
        attrs.update(intervals="session", intervals_note="whole session (time support): no epochs given")
        return count_spikes(
            trains, [start], [stop], bin_size=bin_size, unit_ids=keys,
            window_dim=None if bin_size is not None else "trial", unit_coords=unit_coords, attrs=attrs,
        )
    if not isinstance(epochs, nap.IntervalSet):
        raise SpikelatentError(f"epochs must be a pynapple.IntervalSet; got {type(epochs).__name__}")
    if len(epochs) == 0:
        raise SpikelatentError("epochs is empty; give at least one interval")
    window_coords = {
        name: np.asarray(epochs[name].values) for name in getattr(epochs, "metadata_columns", [])
    }
    attrs.update(intervals="IntervalSet", intervals_note="the IntervalSet given")
    return count_spikes(
        trains,
        np.asarray(epochs.start, dtype=np.float64),
        np.asarray(epochs.end, dtype=np.float64),
        bin_size=bin_size,
        unit_ids=keys,
        window_coords=window_coords,
        unit_coords=unit_coords,
        attrs=attrs,
    )

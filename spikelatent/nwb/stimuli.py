"""Which stimulus each trial showed: recorded responses ``(trial, stimulus, unit)`` from an NWB file.

:func:`read_responses` counts every unit's spikes in each row of the trials table (through
:func:`spikelatent.nwb.read_counts`) and groups the rows by the trials table's stimulus column
(``stimulus_index``, ``image_id``, ... or one you name), so that a recording joins a model
population on the ``stimulus`` coordinate (see :mod:`spikelatent.analysis.similarity`).
:func:`write_synthetic_recording` writes a stand-in recording of any images (for trying the
comparison without data, tests and docs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from spikelatent.errors import SpikelatentError

__all__ = [
    "STIMULUS_COLUMNS",
    "find_stimulus_column",
    "read_responses",
    "responses_by_stimulus",
    "write_synthetic_recording",
]

# Trials-table columns that name the stimulus, tried in this order when none is given
# (spikelatent's own export writes "stimulus"; Allen Brain Observatory files "image_index"/"frame").
STIMULUS_COLUMNS = ("stimulus_index", "image_id", "image_index", "stimulus_id", "stimulus", "frame")
# Other column names that look like stimulus ids: reported, never used unless named.
_LOOKS_LIKE_STIMULUS = re.compile(r"stim|image|img|frame|scene|picture|movie|condition", re.I)


def _stimulus_ids(values: Any) -> np.ndarray | None:
    """``values`` as stimulus ids (int64 or strings), or None when they cannot be ids."""
    values = np.asarray(values)
    if values.ndim != 1:
        return None
    if values.dtype.kind == "f":
        if not (np.all(np.isfinite(values)) and np.all(values == np.round(values))):
            return None
        return values.astype(np.int64)
    if values.dtype.kind in "iuUS":
        return values
    return None


def find_stimulus_column(
    columns: Mapping[str, Any], stimulus_column: str | None = None
) -> tuple[str | None, np.ndarray | None, str | None]:
    """Which trials-table column names each trial's stimulus: the one reader of stimulus identity.

    Every command uses it (``read_counts``, ``analyze FILE.nwb``, ``similarity``), so a recording
    has the same stimuli everywhere.

    Args:
        columns: the trials table's one-value-per-row columns, name → values ``(trial,)``.
        stimulus_column: the column to use; ``None``: the first of :data:`STIMULUS_COLUMNS`
            present whose values are stimulus ids (integers or names).

    Returns:
        ``(name, ids, note)``: the column used (``None``: none), its values as ids (int64 or
        strings), and a one-line note when no column is used although some look like stimulus ids
        (``None`` otherwise).

    Raises:
        SpikelatentError: a named column that is missing or does not hold ids.
    """
    if stimulus_column is not None:
        if stimulus_column not in columns:
            raise SpikelatentError(
                f"the trials table has no column {stimulus_column!r} "
                f"(columns: {', '.join(columns) or 'none'})"
            )
        ids = _stimulus_ids(columns[stimulus_column])
        if ids is None:
            raise SpikelatentError(
                f"trials column {stimulus_column!r} must hold stimulus ids (integers or names); "
                "found non-integer or missing values"
            )
        return stimulus_column, ids, None
    unusable = []
    for name in STIMULUS_COLUMNS:
        if name in columns:
            ids = _stimulus_ids(columns[name])
            if ids is not None:
                return name, ids, None
            unusable.append(name)
    candidates = [
        name
        for name, values in columns.items()
        if name not in unusable
        and _LOOKS_LIKE_STIMULUS.search(name)
        and _stimulus_ids(values) is not None
    ]
    if not candidates and not unusable:
        return None, None, None
    parts = []
    if candidates:
        parts.append(
            f"trials column(s) {', '.join(map(repr, candidates))} look like stimulus ids but "
            f"none is used (known names: {', '.join(STIMULUS_COLUMNS)})"
        )
    if unusable:
        parts.append(
            f"column(s) {', '.join(map(repr, unusable))} hold no integer or name ids"
        )
    example = candidates[0] if candidates else "NAME"
    note = (
        "; ".join(parts)
        + f"; trials are not grouped by stimulus: name the column with "
        f"stimulus_column={example!r} (CLI: --stimulus-column {example})"
    )
    return None, None, note


def responses_by_stimulus(counts: xr.DataArray, stimulus_column: str | None = None) -> xr.DataArray:
    """Group ``(trial, unit)`` counts by a stimulus coordinate along ``trial``.

    Args:
        counts: ``(trial, unit)`` counts with one coordinate per trials-table column.
        stimulus_column: the coordinate naming each trial's stimulus; ``None``: the first of
            :data:`STIMULUS_COLUMNS` present.

    Returns:
        DataArray ``responses`` ``(trial, stimulus, unit)``: ``trial`` is the repeat number of the
        stimulus (0, 1, ... in time order), ``stimulus`` holds the column's values (sorted). Integer
        counts when every stimulus was shown equally often; otherwise float64 with NaN for the
        missing repeats. Coordinates along ``unit`` are kept; ``attrs["stimulus_column"]`` names
        the column and ``attrs["repeats_per_stimulus"]`` gives the minimum and maximum repeat count.
    """
    if set(counts.dims) != {"trial", "unit"}:
        raise SpikelatentError(
            f"responses_by_stimulus needs (trial, unit) counts, got dims {tuple(counts.dims)}"
        )
    along_trial = {
        name: c.values for name, c in counts.coords.items() if c.dims == ("trial",) and name != "trial"
    }
    chosen = counts.attrs.get("stimulus_column")
    if stimulus_column is None and chosen and "stimulus" in along_trial:
        # read_counts already found the column (find_stimulus_column) and made it `stimulus`.
        stimulus_column, keys = chosen, np.asarray(along_trial["stimulus"])
    else:
        stimulus_column, keys, note = find_stimulus_column(along_trial, stimulus_column)
        if stimulus_column is None:
            raise SpikelatentError(
                note
                or "the trials table has no stimulus column (looked for "
                f"{', '.join(STIMULUS_COLUMNS)}; columns: {', '.join(along_trial) or 'none'}); "
                "name it with stimulus_column=NAME (CLI: --stimulus-column NAME)"
            )
    counts = counts.transpose("trial", "unit")
    if "start_time" in counts.coords and counts["start_time"].dims == ("trial",):
        order = np.argsort(np.asarray(counts["start_time"].values), kind="stable")
    else:
        order = np.arange(counts.sizes["trial"])
    keys = keys[order]
    data = np.asarray(counts.values)[order]
    stimulus, index = np.unique(keys, return_inverse=True)
    sizes = np.bincount(index, minlength=len(stimulus))
    # Repeat number of each trial within its stimulus, in time order.
    by_stimulus = np.argsort(index, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    repeat = np.empty(len(index), dtype=np.int64)
    repeat[by_stimulus] = np.arange(len(index)) - np.repeat(starts, sizes)
    n_repeat = int(sizes.max())
    ragged = sizes.min() != n_repeat
    out = np.full(
        (n_repeat, len(stimulus), data.shape[1]),
        np.nan if ragged else 0,
        dtype=np.float64 if ragged or data.dtype.kind == "f" else data.dtype,
    )
    out[repeat, index] = data
    coords: dict[str, Any] = {
        "trial": np.arange(n_repeat),
        "stimulus": stimulus,
        **{name: c for name, c in counts.coords.items() if c.dims == ("unit",)},
    }
    attrs = dict(counts.attrs)
    attrs.update(
        stimulus_column=stimulus_column,
        repeats_per_stimulus=[int(sizes.min()), n_repeat],
        description="spike counts per stimulus repeat and unit"
        + (" (NaN: stimulus shown fewer times)" if ragged else ""),
    )
    return xr.DataArray(
        out, dims=("trial", "stimulus", "unit"), coords=coords, name="responses", attrs=attrs
    )


def read_responses(
    path: str | os.PathLike,
    stimulus_column: str | None = None,
    *,
    intervals: str = "trials",
    bin_start: float = 0.0,
    bin_stop: float | None = None,
) -> xr.DataArray:
    """Recorded responses ``(trial, stimulus, unit)`` of an NWB file's units to its stimuli.

    Each row of the ``intervals`` table is one presentation; the count of a unit is the number of
    its spikes in ``[start_time + bin_start, stop_time)`` (or ``start_time + bin_stop``), as in
    :func:`spikelatent.nwb.read_counts`; rows are grouped by the stimulus column
    (:func:`responses_by_stimulus`).

    Args:
        path: NWB file with a Units table and a trials (or other intervals) table.
        stimulus_column: the column holding each row's stimulus id (``None``: the first of
            :data:`STIMULUS_COLUMNS` present).
        intervals: the intervals table (``"trials"`` by default).
        bin_start, bin_stop: counting window relative to each row's ``start_time``, seconds.

    Returns:
        DataArray ``responses`` as :func:`responses_by_stimulus`, with ``attrs["source"]``.
    """
    from spikelatent.nwb import read_counts

    counts = read_counts(
        path, bin_start=bin_start, bin_stop=bin_stop, intervals=intervals,
        stimulus_column=stimulus_column,
    )
    return responses_by_stimulus(counts)


def write_synthetic_recording(
    path: str | os.PathLike,
    images: Any,
    *,
    n_units: int = 60,
    n_trials: int = 20,
    mean_count: float = 4.0,
    dispersion: float = 3.0,
    trial_duration: float = 0.5,
    inter_trial_interval: float = 0.25,
    seed: int = 0,
) -> xr.DataArray:
    """Write an NWB file of a synthetic recording of ``images`` and return its true tuning.

    Each unit responds to a random projection of the standardised pixels through a saturating
    nonlinearity: ``rate = mean_count · exp(tanh(w·x)) / E[exp(tanh(w·x))]`` spikes per trial; the
    counts of each presentation are negative binomial with that mean and dispersion ``dispersion``
    (Fano factor ``1 + rate / dispersion``); spike times are uniform in the presentation window.
    Presentations of every image ``n_trials`` times run in a random order; the trials table has
    ``start_time``, ``stop_time`` and ``stimulus_index`` (the image's position in ``images``).

    Args:
        path: the ``.nwb`` file to write (through a temporary name, then renamed).
        images: ``(stimulus, ...)`` array of the stimulus images.
        n_units, n_trials: recorded units and repeats per image.
        mean_count: average spike count per presentation.
        dispersion: NB dispersion r of the trial-to-trial noise (``inf``: Poisson).
        trial_duration, inter_trial_interval: seconds.
        seed: seed of the tuning, the counts and the spike times.

    Returns:
        The true mean counts ``(stimulus, unit)`` as a DataArray ``rate``.
    """
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile

    from spikelatent.io import atomic_path

    pixels = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    if pixels.shape[0] < 2 or not np.isfinite(pixels).all():
        raise SpikelatentError("images must hold at least 2 finite stimuli")
    rng = np.random.default_rng(seed)
    spread = pixels.std(axis=0)
    standard = (pixels - pixels.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    weights = rng.normal(size=(pixels.shape[1], n_units)) * (
        2.0 / np.sqrt(max(1, (spread > 0).sum()))
    )
    drive = np.exp(np.tanh(standard @ weights))
    rate = mean_count * drive / drive.mean()
    n_stimulus = len(pixels)
    stimulus = np.tile(np.arange(n_stimulus), n_trials)
    rng.shuffle(stimulus)
    mean = rate[stimulus]  # (presentation, unit)
    if np.isinf(dispersion):
        counts = rng.poisson(mean)
    else:
        counts = rng.poisson(rng.gamma(dispersion, mean / dispersion))
    period = trial_duration + inter_trial_interval
    starts = np.arange(len(stimulus)) * period
    nwbfile = NWBFile(
        session_description=f"synthetic recording of {n_stimulus} images x {n_trials} repeats "
        f"(spikelatent.nwb.stimuli.write_synthetic_recording, seed {seed})",
        identifier=f"spikelatent-synthetic-{seed}",
        session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    nwbfile.add_trial_column("stimulus_index", "position of the image in the stimulus array")
    for start, index in zip(starts, stimulus, strict=True):
        nwbfile.add_trial(
            start_time=float(start),
            stop_time=float(start + trial_duration),
            stimulus_index=int(index),
        )
    for unit in range(n_units):
        n = counts[:, unit]
        times = np.repeat(starts, n) + rng.uniform(0, trial_duration, n.sum())
        nwbfile.add_unit(spike_times=np.sort(times))
    with atomic_path(path, suffix=".nwb") as temporary, NWBHDF5IO(str(temporary), "w") as io:
        io.write(nwbfile)
    return xr.DataArray(
        rate,
        dims=("stimulus", "unit"),
        coords={"stimulus": np.arange(n_stimulus), "unit": np.arange(n_units)},
        name="rate",
        attrs={"units": "spikes per presentation", "dispersion": float(dispersion)},
    )

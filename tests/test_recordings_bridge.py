"""Model-population spike times and the pynapple bridge: exact round trips, pynwb read-back and
known arrival-time distributions as oracles."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from pynwb import NWBHDF5IO
from scipy import stats

from spikelatent.nwb import read_counts, to_nwb
from spikelatent.populations import binned_counts
from spikelatent.spikes import spike_times

nap = pytest.importorskip("pynapple")

from spikelatent.pynapple_bridge import from_pynapple, to_pynapple  # noqa: E402


def small_population(seed=0, n_trial=4, n_stimulus=3, n_unit=5):
    rng = np.random.default_rng(seed)
    prob = rng.uniform(0.2, 0.9, (n_stimulus, n_unit))
    counts = rng.negative_binomial(3.0, prob, (n_trial, n_stimulus, n_unit)).astype(np.uint16)
    counts[..., -1] = 0  # a silent unit
    return xr.Dataset(
        {
            "counts": (("trial", "stimulus", "unit"), counts),
            "prob": (("stimulus", "unit"), prob),
        },
        coords={"label": ("stimulus", [7, 8, 9]), "unit": np.arange(n_unit)},
        attrs={"model": "negbinomial", "variant": "DS-C", "dataset": "synthetic"},
    )


@pytest.mark.parametrize("process", ["uniform", "counting"])
def test_spike_times_keep_every_count_and_bin_back_to_it(process):
    pop = small_population()
    times = spike_times(pop, process=process, seed=1)
    assert times.sizes["spike"] == int(pop["counts"].sum())
    assert float(times["time"].min()) >= 0 and float(times["time"].max()) < 1
    per_cell = np.zeros(pop["counts"].shape, dtype=np.int64)
    np.add.at(per_cell, (times["trial"].values, times["stimulus"].values, times["unit"].values), 1)
    np.testing.assert_array_equal(per_cell, pop["counts"].values)
    binned = binned_counts(pop, 0.1, process=process, seed=1)
    assert binned.dims == ("trial", "stimulus", "time", "unit") and binned.sizes["time"] == 10
    np.testing.assert_array_equal(binned.sum("time").values, pop["counts"].values)
    # Bins are numpy.histogram of the spike times of each cell.
    cell = (times["trial"] == 2) & (times["stimulus"] == 1) & (times["unit"] == 0)
    expected = np.histogram(times["time"].values[cell.values], np.linspace(0, 1, 11))[0]
    np.testing.assert_array_equal(binned.values[2, 1, :, 0], expected)


def test_arrival_time_distributions_match_their_processes():
    n = 4000
    pop = xr.Dataset(
        {
            "counts": (("trial", "stimulus", "unit"), np.full((1, 1, 2), n, dtype=np.uint32)),
            "prob": (("stimulus", "unit"), [[0.2, 1.0]]),
        }
    )
    times = spike_times(pop, process="counting", seed=3)
    beta = -np.log(0.2)  # NB counting process: density of a spike time ∝ exp(beta t) on [0, 1)
    first = times["time"].values[times["unit"].values == 0]
    cdf = lambda t: np.expm1(beta * t) / np.expm1(beta)  # noqa: E731
    assert stats.kstest(first, cdf).pvalue > 1e-3
    assert stats.kstest(first, "uniform").pvalue < 1e-6  # and it is not uniform
    second = times["time"].values[times["unit"].values == 1]  # p = 1 (Poisson): uniform
    assert stats.kstest(second, "uniform").pvalue > 1e-3


def test_population_to_pynapple_has_the_nwb_export_spike_times(tmp_path):
    pop = small_population(seed=2)
    group, intervals = to_pynapple(pop, trial_duration=0.8, inter_trial_interval=0.3, seed=5)
    path = to_nwb(pop, tmp_path / "p.nwb", trial_duration=0.8, inter_trial_interval=0.3, seed=5)
    with NWBHDF5IO(str(path), "r") as io:
        units = io.read().units
        exported = [np.asarray(units["spike_times"][i]) for i in range(len(units))]
    assert list(group.keys()) == [0, 1, 2, 3, 4]
    for key, times in zip(group.keys(), exported, strict=True):
        np.testing.assert_array_equal(group[key].t, times)
    assert len(intervals) == 12
    np.testing.assert_allclose(intervals.start, np.arange(12) * 1.1)
    counts = from_pynapple(group, intervals)
    assert counts.dims == ("trial", "unit")
    np.testing.assert_array_equal(counts["stimulus"].values, np.tile(np.arange(3), 4))
    # Trial-major presentations: row k = (repeat k // 3, stimulus k % 3).
    np.testing.assert_array_equal(counts.values, pop["counts"].values.reshape(12, 5))
    assert int(counts.sum()) == sum(len(t) for t in exported)


def test_binned_counts_round_trip_through_pynapple_exactly(tmp_path):
    from pynwb.testing.mock.file import mock_NWBFile

    rng = np.random.default_rng(4)
    nwbfile = mock_NWBFile()
    for rate in (5.0, 40.0, 0.0):
        nwbfile.add_unit(spike_times=np.sort(rng.uniform(0, 20, rng.poisson(rate * 20))))
    for start in np.arange(0, 18, 2.5):
        nwbfile.add_trial(start_time=start, stop_time=start + 1.2)
    with NWBHDF5IO(str(tmp_path / "r.nwb"), "w") as io:
        io.write(nwbfile)
    original = read_counts(tmp_path / "r.nwb", bin_size=0.02)
    group, intervals = to_pynapple(original, seed=0)
    again = from_pynapple(group, intervals, bin_size=0.02)
    assert again.dims == original.dims
    np.testing.assert_array_equal(again.values, original.values)
    # pynapple's own binning of the same spikes agrees on the totals per window.
    windows = [intervals[[i]] for i in range(len(intervals))]
    per_window = [int(group.restrict(window).count().values.sum()) for window in windows]
    np.testing.assert_array_equal(per_window, original.sum(("time", "unit")).values)

    session = read_counts(tmp_path / "r.nwb", intervals="session", bin_size=0.5)
    group, _ = to_pynapple(session)
    np.testing.assert_array_equal(from_pynapple(group, bin_size=0.5).values, session.values)


def test_from_pynapple_bins_equal_numpy_histogram():
    rng = np.random.default_rng(5)
    trains = {3: np.sort(rng.uniform(0, 10, 300)), 8: np.sort(rng.uniform(0, 10, 50))}
    group = nap.TsGroup({k: nap.Ts(t=v) for k, v in trains.items()})
    epochs = nap.IntervalSet(start=[0.5, 4.0], end=[2.5, 6.1], metadata={"stimulus": [0, 1]})
    counts = from_pynapple(group, epochs, bin_size=0.25)
    assert list(counts["unit"].values) == [3, 8] and counts.sizes["time"] == 8
    for u, times in enumerate(trains.values()):
        for trial, start in enumerate((0.5, 4.0)):
            expected = np.histogram(times, start + 0.25 * np.arange(9))[0]
            np.testing.assert_array_equal(counts.values[trial, :, u], expected)
    np.testing.assert_array_equal(counts["stimulus"].values, [0, 1])

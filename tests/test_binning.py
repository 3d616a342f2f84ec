"""Time-binned counts from NWB files, checked against numpy.histogram of pynwb's own spike times."""

from __future__ import annotations

import numpy as np
import pytest
from pynwb import NWBHDF5IO

from spikelatent.errors import SpikelatentError
from spikelatent.nwb import read_counts
from spikelatent.spikes import count_spikes


def spikes_of(path):
    with NWBHDF5IO(str(path), "r") as io:
        units = io.read().units
        return [np.asarray(units["spike_times"][i], dtype=np.float64) for i in range(len(units))]


def write_trials_file(path, rng, overlapping=False):
    from pynwb.testing.mock.file import mock_NWBFile

    nwbfile = mock_NWBFile()
    for rate in (3.0, 20.0, 0.0, 45.0):
        times = np.sort(rng.uniform(0, 30, rng.poisson(rate * 30)))
        nwbfile.add_unit(spike_times=rng.permutation(times))  # unsorted on disk on purpose
    starts = np.arange(10) * 2.7 + 0.3
    lengths = rng.uniform(1.0, 1.6, 10) + (1.5 if overlapping else 0.0)
    nwbfile.add_trial_column(name="stimulus", description="condition")
    for index, (start, length) in enumerate(zip(starts, lengths, strict=True)):
        nwbfile.add_trial(start_time=start, stop_time=start + length, stimulus=index % 2)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return starts, lengths


@pytest.mark.parametrize("overlapping", [False, True])
def test_binned_trials_equal_numpy_histogram(tmp_path, overlapping):
    rng = np.random.default_rng(1)
    starts, lengths = write_trials_file(tmp_path / "t.nwb", rng, overlapping)
    spikes = spikes_of(tmp_path / "t.nwb")
    bin_size = 0.05
    counts = read_counts(tmp_path / "t.nwb", bin_size=bin_size)

    n_bins = int(np.floor(lengths.min() / bin_size + 1e-9))
    assert counts.dims == ("trial", "time", "unit")
    assert counts.sizes == {"trial": 10, "time": n_bins, "unit": 4}
    assert counts.dtype == np.uint8 and counts.attrs["intervals"] == "trials"
    np.testing.assert_allclose(counts["time_start"], bin_size * np.arange(n_bins), atol=1e-12)
    np.testing.assert_allclose(counts["time_stop"] - counts["time_start"], bin_size, atol=1e-12)
    np.testing.assert_array_equal(counts["stimulus"], np.arange(10) % 2)
    inside_total = 0
    for unit, times in enumerate(spikes):
        for trial, start in enumerate(starts):
            edges = start + bin_size * np.arange(n_bins + 1)
            expected, _ = np.histogram(times, bins=edges)
            np.testing.assert_array_equal(counts.values[trial, :, unit], expected)
            inside_total += np.sum((times >= edges[0]) & (times < edges[-1]))
    assert int(counts.sum()) == inside_total == counts.attrs["n_spikes_binned"]


def test_units_and_epochs_without_trials_bin_the_whole_session(tmp_path):
    from pynwb.testing.mock.ecephys import mock_Units
    from pynwb.testing.mock.file import mock_NWBFile

    nwbfile = mock_NWBFile()
    mock_Units(num_units=5, max_spikes_per_unit=60, seed=3, nwbfile=nwbfile)
    nwbfile.add_epoch(start_time=0.0, stop_time=4.0, tags=["baseline"])
    nwbfile.add_epoch(start_time=5.0, stop_time=7.5, tags=["task"])
    with NWBHDF5IO(str(tmp_path / "e.nwb"), "w") as io:
        io.write(nwbfile)
    spikes = spikes_of(tmp_path / "e.nwb")

    session = read_counts(tmp_path / "e.nwb", bin_size=0.25)
    assert session.dims == ("time", "unit")
    assert session.attrs["intervals"] == "session"
    assert "no trials table" in session.attrs["intervals_note"]
    edges = np.append(session["time_start"].values, session["time_stop"].values[-1])
    np.testing.assert_allclose(np.diff(edges), 0.25, atol=1e-12)
    # Whole bins from min(0, first spike) up to the last spike: no bin past the data, only the
    # partial last bin is left out.
    last = max(t.max() for t in spikes)
    assert edges[0] <= min(t.min() for t in spikes) and last - 0.25 < edges[-1] <= last
    for unit, times in enumerate(spikes):
        np.testing.assert_array_equal(session.values[:, unit], np.histogram(times, edges)[0])
    in_whole_bins = sum(int(np.sum(t < edges[-1])) for t in spikes)
    assert int(session.sum()) == in_whole_bins == session.attrs["n_spikes_binned"]

    whole = read_counts(tmp_path / "e.nwb")  # no bin_size: one count per unit for the session
    np.testing.assert_array_equal(whole.values[0], [len(t) for t in spikes])

    epochs = read_counts(tmp_path / "e.nwb", intervals="epochs", bin_size=0.5)
    assert epochs.sizes == {"trial": 2, "time": 5, "unit": 5}  # shortest epoch: 2.5 s = 5 bins
    for unit, times in enumerate(spikes):
        for trial, start in enumerate((0.0, 5.0)):
            expected = np.histogram(times, start + 0.5 * np.arange(6))[0]
            np.testing.assert_array_equal(epochs.values[trial, :, unit], expected)


def test_bad_binning_input_is_a_one_line_error(tmp_path):
    rng = np.random.default_rng(0)
    write_trials_file(tmp_path / "t.nwb", rng)
    for bad in (0, -0.1, float("nan"), "x"):
        with pytest.raises(SpikelatentError, match="bin_size must be a positive") as info:
            read_counts(tmp_path / "t.nwb", bin_size=bad)
        assert "\n" not in str(info.value)
    with pytest.raises(SpikelatentError, match="no 'flashes' intervals table"):
        read_counts(tmp_path / "t.nwb", intervals="flashes", bin_size=0.1)
    with pytest.raises(SpikelatentError, match="longer than the shortest window"):
        read_counts(tmp_path / "t.nwb", bin_size=5.0)
    with pytest.raises(SpikelatentError, match="equal length"):
        count_spikes([np.zeros(1)], [0.0, 1.0], [1.0], bin_size=0.1)


def test_count_spikes_on_shared_edges_puts_each_spike_in_one_bin():
    # Back-to-back windows share an edge: a spike on it belongs to the later window only.
    counts = count_spikes(
        [np.array([0.0, 0.5, 1.0, 1.5, 1.999])], [0.0, 1.0], [1.0, 2.0], bin_size=0.5
    )
    np.testing.assert_array_equal(counts.values[:, :, 0], [[1, 1], [1, 2]])

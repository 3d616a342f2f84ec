"""Chunked (dask-backed) counts of long recordings: the same counts as in memory, to the bit, and
the same statistics, to 1e-12.

Oracles: ``numpy.histogram`` of integer nanosecond ticks (half-open bins), pynwb's and h5py's own
read-back of the spike times, and the in-memory path for the statistics. A real public file
(pynapple's test recording ``tests/data/A8604-211122.nwb``, MIT) is binned both ways too.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from pynwb import NWBHDF5IO

from spikelatent import analysis
from spikelatent.analysis.summaries import counting_summary
from spikelatent.cli import main
from spikelatent.nwb import read_counts
from spikelatent.spikes import H5SpikeTimes, count_spikes

DATA = Path(__file__).parent / "data"
REAL = DATA / "A8604-211122.nwb"


def ticks_histogram(times, edges_ticks: np.ndarray) -> np.ndarray:
    """Counts in half-open bins [e_k, e_k+1) of integer ticks: numpy.histogram closes its last
    bin, so its last edge is one tick earlier (integers: [e, e' - 1] = [e, e'))."""
    ticks = np.rint(np.asarray(times, dtype=np.float64) / 1e-9).astype(np.int64)
    edges = np.asarray(edges_ticks, dtype=np.int64).copy()
    edges[-1] -= 1
    return np.histogram(ticks, edges)[0]


def adversarial_trains() -> list[np.ndarray]:
    """Spikes exactly on every bin (and so chunk) edge, an empty unit, 10^6 spikes in one bin,
    spikes at the first tick and one tick before the end, an unsorted unit."""
    rng = np.random.default_rng(0)
    on_edges = np.array([float(Decimal("0.01") * k) for k in range(1000)])
    burst = np.concatenate([np.full(1_000_000, 5.005), [0.07, 0.64, 9.99]])
    ends = np.array([0.0, 1e-9, 9.999999999, 10.0, 10.5])
    poisson = np.sort(rng.uniform(0, 10, 5000))
    return [on_edges, np.array([]), burst, ends, poisson, rng.permutation(poisson[:300])]


def session_oracle(trains, start=0.0, bin_size=0.01, n_bins=1000) -> np.ndarray:
    edges = round(start / 1e-9) + round(bin_size / 1e-9) * np.arange(n_bins + 1, dtype=np.int64)
    return np.stack([ticks_histogram(t, edges) for t in trains], axis=1)


@pytest.mark.parametrize("chunks", [7, 64, "auto"])
def test_chunked_session_counts_equal_the_histogram_and_the_in_memory_counts(chunks):
    trains = adversarial_trains()
    expected = session_oracle(trains)
    assert expected[500, 2] == 1_000_000 and expected[:, 1].sum() == 0
    in_memory = count_spikes(trains, [0.0], [10.0], bin_size=0.01, window_dim=None)
    chunked = count_spikes(trains, [0.0], [10.0], bin_size=0.01, window_dim=None, chunks=chunks)
    assert chunked.attrs["chunked"] and not in_memory.attrs["chunked"]
    assert chunked.dtype == in_memory.dtype == np.uint32  # 10^6 needs 32 bits, never wraps
    np.testing.assert_array_equal(chunked.values, expected)
    np.testing.assert_array_equal(in_memory.values, expected)
    assert chunked.attrs["n_spikes_binned"] == in_memory.attrs["n_spikes_binned"] == expected.sum()
    xr.testing.assert_identical(chunked.drop_attrs().compute(), in_memory.drop_attrs())


def test_chunked_trial_and_window_counts_equal_the_histogram():
    trains = adversarial_trains()
    starts = np.array([0.0, 0.07, 0.64, 4.0, 4.5, 9.0])  # on spikes; 4.0 and 4.5 overlap
    for bin_size, n_bins in ((0.01, 100), (None, 1)):
        stops = starts + 1.0
        in_memory = count_spikes(trains, starts, stops, bin_size=bin_size)
        chunked = count_spikes(trains, starts, stops, bin_size=bin_size, chunks=2)
        width = round((bin_size or 1.0) / 1e-9)
        for window, start in enumerate(starts):
            edges = round(start / 1e-9) + width * np.arange(n_bins + 1, dtype=np.int64)
            expected = np.stack([ticks_histogram(t, edges) for t in trains], axis=1)
            got = chunked.values[window] if bin_size else chunked.values[window][None]
            np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(chunked.values, in_memory.values)
        assert chunked.dtype == in_memory.dtype and chunked.dims == in_memory.dims


def write_units(path, trains, observed=None):
    from pynwb.testing.mock.file import mock_NWBFile

    nwbfile = mock_NWBFile()
    for unit, times in enumerate(trains):
        extra = {} if observed is None else {"obs_intervals": observed[unit]}
        nwbfile.add_unit(spike_times=times, **extra)
    nwbfile.add_epoch(start_time=0.0, stop_time=10.0, tags=["all"])
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)


def test_nwb_spike_times_are_read_per_unit_and_per_chunk(tmp_path, monkeypatch):
    trains = adversarial_trains()
    observed = [np.array([[0.0, 10.0]])] * 4 + [np.array([[0.0, 3.0], [6.0, 10.0]])] * 2
    write_units(tmp_path / "units.nwb", trains, observed)
    with NWBHDF5IO(str(tmp_path / "units.nwb"), "r") as io:  # pynwb's own read-back
        units = io.read().units
        on_disk = [np.asarray(units["spike_times"][u]) for u in range(len(trains))]
    expected = session_oracle(on_disk).astype(np.float64)
    expected[300:600, 4:] = np.nan  # [3, 6) s not observed for the last two units
    reads = []
    original = H5SpikeTimes.read

    def recording_read(self, unit, lo, hi):
        reads.append((unit, hi - lo))
        return original(self, unit, lo, hi)

    monkeypatch.setattr(H5SpikeTimes, "read", recording_read)
    chunked = read_counts(tmp_path / "units.nwb", bin_size=0.01, chunks=100)
    in_memory = read_counts(tmp_path / "units.nwb", bin_size=0.01)
    reads.clear()
    values = chunked.values
    np.testing.assert_array_equal(values, expected)
    np.testing.assert_array_equal(in_memory.values, expected)
    assert chunked.dtype == np.float64 and chunked.attrs["n_unobserved"] == 600
    assert chunked.attrs["n_spikes_binned"] == in_memory.attrs["n_spikes_binned"]
    # Computing read each sorted unit one chunk at a time: 10 slices of ~500 for the Poisson unit
    # (the unsorted unit, 5, is held sorted in memory instead).
    poisson = [size for unit, size in reads if unit == 4]
    assert len(poisson) == 10 and max(poisson) < 700 and sum(poisson) == trains[4].size
    assert not [unit for unit, _ in reads if unit == 5]


@pytest.mark.skipif(not REAL.exists(), reason="tests/data/A8604-211122.nwb is not there")
@pytest.mark.parametrize("bin_size", [0.01, 0.001])
def test_a_real_recording_binned_chunked_equals_the_histogram(bin_size):
    with h5py.File(REAL, "r") as file:
        flat, ends = file["units/spike_times"][:], file["units/spike_times_index"][:]
    trains = np.split(flat, ends[:-1])
    chunked = read_counts(REAL, bin_size=bin_size, chunks=20_000)
    in_memory = read_counts(REAL, bin_size=bin_size)
    n_bins = chunked.sizes["time"]
    assert n_bins == int(round(1087.5289 // bin_size))  # the epoch's end, whole bins only
    expected = session_oracle(trains, 0.0, bin_size, n_bins)
    np.testing.assert_array_equal(chunked.values, expected)
    np.testing.assert_array_equal(in_memory.values, expected)
    assert chunked.dtype == in_memory.dtype == np.uint8


def assert_close(chunked: xr.Dataset, in_memory: xr.Dataset, loose=("ci_low", "ci_high")):
    """Every variable equal to 1e-12 (the delta-method interval bounds to 1e-11: their variance
    term cancels in cells with a handful of spikes, and the in-memory sums are themselves
    rounded to ~1e-13)."""
    for name, expected in in_memory.data_vars.items():
        got = chunked[name]
        assert got.dims == expected.dims, name
        rtol = 1e-11 if name in loose else 1e-12
        np.testing.assert_allclose(got.values, expected.values, rtol=rtol, atol=0, err_msg=name)


@pytest.mark.skipif(not REAL.exists(), reason="tests/data/A8604-211122.nwb is not there")
def test_session_statistics_of_chunked_counts_equal_the_in_memory_ones():
    chunked = read_counts(REAL, bin_size=0.01, chunks=3_333)  # windows cut by chunk edges
    in_memory = read_counts(REAL, bin_size=0.01)
    windows = [0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 10.0, 50.0, 100.0]
    assert_close(analysis.fano_factor_by_window(chunked, windows),
                 analysis.fano_factor_by_window(in_memory, windows),
                 loose=("ci_low", "ci_high", "population_ci_low", "population_ci_high"))
    lazy, eager = counting_summary(chunked, seed=1), counting_summary(in_memory, seed=1)
    assert json.dumps(lazy.numbers, sort_keys=True) == json.dumps(eager.numbers, sort_keys=True) or (
        _numbers_close(lazy.numbers, eager.numbers)
    )


def _numbers_close(a, b, path="") -> bool:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        return all(_numbers_close(a[k], b[k], f"{path}/{k}") for k in a)
    if isinstance(a, list):
        return all(_numbers_close(x, y, path) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        assert b == pytest.approx(a, rel=1e-11, abs=0), path
        return True
    assert a == b, path
    return True


@pytest.fixture(scope="module")
def trials_recording(tmp_path_factory):
    from spikelatent.nwb.stimuli import write_synthetic_recording

    path = tmp_path_factory.mktemp("chunked") / "trials.nwb"
    images = np.random.default_rng(1).random((5, 4, 4))
    write_synthetic_recording(path, images, n_units=12, n_trials=16, seed=3)
    return path


def test_trial_statistics_of_chunked_counts_equal_the_in_memory_ones(trials_recording):
    chunked = read_counts(trials_recording, bin_size=0.01, chunks=7)
    in_memory = read_counts(trials_recording, bin_size=0.01)
    assert len(chunked.chunks[0]) == 12  # 80 trials in chunks of 7
    np.testing.assert_array_equal(chunked.values, in_memory.values)
    per_trial = (chunked.sum("time"), in_memory.sum("time"))
    assert_close(analysis.empirical_fano_factor(per_trial[0]),
                 analysis.empirical_fano_factor(per_trial[1]))
    assert_close(analysis.fano_factor_by_window(chunked, [0.01, 0.05, 0.1, 0.5]),
                 analysis.fano_factor_by_window(in_memory, [0.01, 0.05, 0.1, 0.5]),
                 loose=("ci_low", "ci_high"))
    assert_close(analysis.firing_rate(chunked), analysis.firing_rate(in_memory))
    assert_close(analysis.sliding_fano_factor(chunked, window=0.1),
                 analysis.sliding_fano_factor(in_memory, window=0.1))
    assert_close(analysis.mean_matched_fano_factor(chunked, across="time", n_bins=4),
                 analysis.mean_matched_fano_factor(in_memory, across="time", n_bins=4))


def test_a_window_longer_than_a_trial_is_the_same_one_line_error_chunked(trials_recording):
    from spikelatent.errors import SpikelatentError

    chunked = read_counts(trials_recording, bin_size=0.01, chunks=7)
    too_long = [0.01, 10.0 * chunked.sizes["time"] * 0.01]
    for counts in (chunked, chunked.compute()):
        with pytest.raises(SpikelatentError, match="fewer than 2 windows"):
            analysis.fano_factor_by_window(counts, too_long)


def test_analyze_over_the_memory_limit_gives_the_in_memory_numbers(trials_recording, tmp_path, capsys):
    common = ["analyze", str(trials_recording), "--bin-size", "0.05", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "eager")]) == 0
    assert main([*common, "--memory-limit", "8kB", "--out", str(tmp_path / "lazy")]) == 0
    printed = capsys.readouterr().out
    assert "chunks along trial, analysed chunk by chunk" in printed
    eager = json.loads((tmp_path / "eager" / "analysis.json").read_text())
    lazy = json.loads((tmp_path / "lazy" / "analysis.json").read_text())
    assert lazy["counts"]["chunked"] and not eager["counts"]["chunked"]
    assert lazy["counts"]["dtype"] == eager["counts"]["dtype"] == "uint8"
    _numbers_close(lazy["recording"], eager["recording"])
    pytest.importorskip("distributed")
    assert main([*common, "--memory-limit", "8kB", "--scheduler", "local",
                 "--out", str(tmp_path / "cluster")]) == 0
    cluster = json.loads((tmp_path / "cluster" / "analysis.json").read_text())
    assert cluster["counts"]["scheduler"] == "local"
    _numbers_close(cluster["recording"], eager["recording"])


def test_bad_memory_limits_are_one_line_errors(trials_recording, tmp_path, capsys):
    for bad in ("lots", "-5MB", "0"):
        assert main(["analyze", str(trials_recording), f"--memory-limit={bad}",
                     "--out", str(tmp_path / "x")]) == 2
        error = capsys.readouterr().err.strip()
        assert "--memory-limit must be a positive size" in error and "\n" not in error
    with pytest.raises(Exception, match="chunks must be a positive number"):
        count_spikes([np.array([0.5])], [0.0], [1.0], bin_size=0.1, chunks=0)

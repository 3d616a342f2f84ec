"""spikelatent.spikes: exact bin edges, whole bins, observation intervals and arithmetic-safe counts,
checked against numpy.histogram on integer ticks, hand counts and scipy's bootstrap."""

from __future__ import annotations

import sys
from decimal import Decimal

import numpy as np
import pytest
import xarray as xr
from pynwb import NWBHDF5IO
from scipy import stats

from spikelatent.analysis import fano_factor_by_window
from spikelatent.errors import SpikelatentError
from spikelatent.nwb import read_counts
from spikelatent.spikes import (
    as_smallest_counts,
    count_spikes,
    recording_span,
    smallest_count_dtype,
)


def edge_spikes(start: str, bin_size: str, n_bins: int) -> np.ndarray:
    """Spike times exactly on every bin edge, as the floats nearest the decimal values (what a file
    holds for "251.64"), plus one spike in the middle of every bin."""
    edges = [Decimal(start) + k * Decimal(bin_size) for k in range(n_bins)]
    middles = [edge + Decimal(bin_size) / 2 for edge in edges]
    return np.array(sorted(float(v) for v in edges + middles))


def histogram_on_ticks(times: np.ndarray, start: str, bin_size: str, n_bins: int, tick="1e-6"):
    """The oracle: numpy.histogram of integer microsecond ticks (edges exact integers)."""
    scale = Decimal(1) / Decimal(tick)
    start_tick = int(Decimal(start) * scale)
    step = int(Decimal(bin_size) * scale)
    edges = start_tick + step * np.arange(n_bins + 1, dtype=np.int64)
    ticks = np.rint(times * float(scale)).astype(np.int64)
    return np.histogram(ticks, edges)[0]


@pytest.mark.parametrize(("bin_size", "n_bins"), [("0.01", 30000), ("0.001", 100000)])
def test_spikes_on_edges_land_in_the_bin_they_start(bin_size, n_bins):
    # Floating-point edges start + k * S (e.g. 251.64000000000001) put thousands of these a bin early.
    start = "3.7"
    times = edge_spikes(start, bin_size, n_bins)
    expected = histogram_on_ticks(times, start, bin_size, n_bins)
    assert np.all(expected == 2)  # one spike on the left edge and one in the middle of every bin
    length = float(Decimal(bin_size) * n_bins)
    session = count_spikes([times], [float(start)], [float(start) + length], bin_size=float(bin_size),
                           window_dim=None)
    np.testing.assert_array_equal(session.values[:, 0], expected)
    # The same spikes in trial windows: the two halves of the span.
    half = n_bins // 2
    starts = [float(start), float(Decimal(start) + half * Decimal(bin_size))]
    trials = count_spikes([times], starts, [s + length / 2 for s in starts], bin_size=float(bin_size))
    np.testing.assert_array_equal(trials.values[:, :, 0].reshape(-1), expected)


def test_touching_intervals_from_pynapple_keep_every_bin():
    # pynapple shortens back-to-back intervals by 1 us: [0, 9.999999], [10, 19.999999], ...
    starts = np.arange(10) * 10.0
    stops = starts + 10.0 - 1e-6
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0, 100, 2000))
    counts = count_spikes([times], starts, stops, bin_size=1.0)
    assert counts.sizes == {"trial": 10, "time": 10, "unit": 1}
    expected = np.histogram(times, np.arange(101.0))[0].reshape(10, 10)
    np.testing.assert_array_equal(counts.values[:, :, 0], expected)
    assert int(counts.sum()) == times.size  # 100 % of the data, nothing dropped

    nap = pytest.importorskip("pynapple")
    from spikelatent.pynapple_bridge import from_pynapple

    with pytest.warns(UserWarning):  # pynapple's own "Removing 1 microsecond"
        epochs = nap.IntervalSet(start=starts, end=starts + 10.0)
    group = nap.TsGroup({0: nap.Ts(t=times)})
    binned = from_pynapple(group, epochs, bin_size=1.0)
    assert binned.sizes["time"] == 10
    np.testing.assert_array_equal(binned.values[:, :, 0], expected)


def test_from_pynapple_over_the_time_support_equals_pynapple_count():
    nap = pytest.importorskip("pynapple")
    from spikelatent.pynapple_bridge import from_pynapple

    rng = np.random.default_rng(6)
    group = nap.TsGroup({k: nap.Ts(t=np.sort(rng.uniform(0.3, 87.7, 900))) for k in (1, 4, 9)})
    for bin_size in (0.01, 1.0):
        ours = from_pynapple(group, bin_size=bin_size)  # no epochs: the group's time support
        theirs = group.count(bin_size)
        assert ours.sizes["time"] <= len(theirs) <= ours.sizes["time"] + 1  # pynapple keeps a partial bin
        np.testing.assert_allclose(ours["time"].values, theirs.t[: ours.sizes["time"]], atol=1e-9)
        np.testing.assert_array_equal(ours.values, np.asarray(theirs.values)[: ours.sizes["time"]])


def test_whole_session_bins_stop_at_the_recording_end():
    times = [np.array([0.2, 5.5, 1087.0, 1087.35])]
    start, stop = recording_span(times)
    assert start == 0.0 and 1087.35 < stop < 1087.35 + 1e-8
    counts = count_spikes(times, [start], [stop], bin_size=1.0, window_dim=None)
    assert counts.sizes["time"] == 1087 and float(counts["time_stop"][-1]) == 1087.0
    assert int(counts.sum()) == 2  # 1087.0 and 1087.35 lie in the dropped partial bin
    assert counts.attrs["longest_unbinned_tail"] == pytest.approx(0.35, abs=1e-6)
    # A known recording end (the file's last epoch stop) extends the span past the last spike.
    start, stop = recording_span(times, end=1087.5289)
    assert (start, stop) == (0.0, 1087.5289)
    fine = count_spikes(times, [start], [stop], bin_size=0.01, window_dim=None)
    assert fine.sizes["time"] == 108752 and float(fine["time_stop"][-1]) == pytest.approx(1087.52)
    assert int(fine.sum()) == 4
    # Observation intervals, when given, define the span instead.
    assert recording_span(times, [np.array([[0.0, 600.0], [700.0, 1087.53]])]) == (0.0, 1087.53)


def test_counts_take_the_smallest_unsigned_dtype_and_never_wrap():
    counts = count_spikes([np.array([0.05, 0.15, 0.16]), np.array([])], [0.0], [0.3], bin_size=0.1)
    assert counts.dtype == np.uint8 and counts.attrs["max_count"] == 2
    wide = counts.astype(np.int64)  # the documented cast before arithmetic of one's own
    np.testing.assert_array_equal((wide - 1).values[0, :, 0], [0, 1, -1])
    np.testing.assert_array_equal(wide.diff("time").values[0, :, 0], [1, -2])
    # 255 fits uint8, 256 needs uint16, 70,000 uint32: the counts are exact, never wrapped.
    for n_spikes, dtype in ((255, np.uint8), (256, np.uint16), (65_535, np.uint16), (70_000, np.uint32)):
        burst = [np.full(n_spikes, 0.25), np.array([0.05])]
        for chunks in (None, 1):
            binned = count_spikes(burst, [0.0], [0.3], bin_size=0.1, window_dim=None, chunks=chunks)
            assert binned.dtype == dtype
            np.testing.assert_array_equal(np.asarray(binned.values)[:, 0], [0, 0, n_spikes])
            assert float(binned.astype(np.float64).sum()) == n_spikes + 1
    assert smallest_count_dtype(0) == np.uint8 and smallest_count_dtype(2**32) == np.uint64
    np.testing.assert_array_equal(as_smallest_counts([3.0, 70_000.0]), [3, 70_000])
    assert as_smallest_counts(np.array([3, 70_000], dtype=np.int64)).dtype == np.uint32
    for bad in ([-1, 2], [0.5], [np.nan]):
        with pytest.raises(SpikelatentError):
            as_smallest_counts(bad)
    with pytest.raises(SpikelatentError):
        smallest_count_dtype(-3)


def test_unobserved_time_is_nan_not_zero():
    times = [np.arange(0.05, 3.0, 0.1), np.arange(0.05, 3.0, 0.1)]  # one spike per 0.1 s bin
    observed = [np.array([[0.0, 1.0], [2.0, 3.0]]), None]  # unit 0 not recorded in [1, 2)
    counts = count_spikes(times, [0.0], [3.0], bin_size=0.5, window_dim=None, observed=observed)
    assert counts.dtype == np.float64 and counts.attrs["n_unobserved"] == 2
    np.testing.assert_array_equal(counts.values[:, 0], [5, 5, np.nan, np.nan, 5, 5])
    np.testing.assert_array_equal(counts.values[:, 1], [5] * 6)
    assert counts.attrs["n_spikes_binned"] == 50  # 30 spikes of unit 1, 20 observed of unit 0
    # A bin that straddles the start of the gap is not wholly observed: NaN.
    coarse = count_spikes(times, [0.0], [3.0], bin_size=0.75, window_dim=None, observed=observed)
    np.testing.assert_array_equal(np.isnan(coarse.values[:, 0]), [False, True, True, False])
    # Whole-window counts: a trial overlapping the gap is NaN for that unit only.
    per_trial = count_spikes(times, [0.0, 1.5, 2.0], [1.0, 2.5, 3.0], observed=observed)
    np.testing.assert_array_equal(per_trial.values[:, 0], [10, np.nan, 10])
    np.testing.assert_array_equal(per_trial.values[:, 1], [10, 10, 10])


def test_read_counts_honours_the_units_observation_intervals(tmp_path):
    from pynwb.testing.mock.file import mock_NWBFile

    nwbfile = mock_NWBFile()
    spikes = np.arange(0.005, 30.0, 0.25)
    nwbfile.add_unit(spike_times=spikes, obs_intervals=[[0.0, 10.0], [20.0, 30.0]])
    nwbfile.add_unit(spike_times=spikes, obs_intervals=[[0.0, 30.0]])
    with NWBHDF5IO(str(tmp_path / "gap.nwb"), "w") as io:
        io.write(nwbfile)
    counts = read_counts(tmp_path / "gap.nwb", bin_size=1.0)
    assert counts.dims == ("time", "unit") and counts.sizes["time"] == 30
    gap = (counts["time_start"].values >= 10.0) & (counts["time_start"].values < 20.0)
    assert np.all(np.isnan(counts.values[gap, 0])) and not np.any(np.isnan(counts.values[~gap, 0]))
    np.testing.assert_array_equal(counts.values[~gap, 0], np.histogram(spikes, np.arange(31.0))[0][~gap])
    np.testing.assert_array_equal(counts.values[:, 1], np.histogram(spikes, np.arange(31.0))[0])
    # Every statistic downstream skips the missing time (never counts it as zero spikes).
    fano = fano_factor_by_window(counts, [1.0])
    assert np.all(np.isfinite(fano["fano_factor"].values))
    assert int(fano["n_samples"].sel(unit=counts["unit"][0]).squeeze()) == 20
    assert int(fano["n_samples"].sel(unit=counts["unit"][1]).squeeze()) == 30


def test_correlations_skip_unobserved_time_in_the_data_and_the_shuffle_control():
    from spikelatent.analysis import noise_correlations

    rng = np.random.default_rng(4)
    shared = rng.poisson(3.0, (400, 1))
    counts = (rng.poisson(2.0, (400, 3)) + shared).astype(np.float64)
    gappy = counts.copy()
    gappy[100:180, 0] = np.nan  # unit 0 not observed there
    data = xr.DataArray(gappy, dims=("trial", "unit"))
    result = noise_correlations(data, n_shuffles=50, seed=0)
    keep = np.isfinite(gappy).all(axis=1)
    np.testing.assert_allclose(result["noise_correlation"].values, np.corrcoef(counts[keep].T), atol=1e-12)
    assert int(result["n_samples"]) == 320
    assert np.all(np.isfinite(result["shuffle_ci_low"].values))  # every pair has a null
    assert float(result["shuffle_mean_ci_low"]) < 0.15 < float(result["mean_noise_correlation"])


def test_population_fano_ci_is_a_bootstrap_inside_the_range():
    # Few cells with a heavy tail: a t interval across cells goes below zero here.
    rng = np.random.default_rng(3)
    rates = np.array([0.2, 0.3, 0.2, 40.0, 0.25])
    gains = rng.gamma(np.array([50.0, 50.0, 50.0, 0.05, 50.0])[None, :], 1.0 / np.array([50.0, 50.0, 50.0, 0.05, 50.0]), (600, 5))
    counts = xr.DataArray(rng.poisson(rates * gains), dims=("time", "unit"), attrs={"bin_size": 0.1})
    result = fano_factor_by_window(counts, [0.1], seed=0)
    cells = result["fano_factor"].values.reshape(-1)
    mean, spread = cells.mean(), cells.std(ddof=1) / np.sqrt(cells.size)
    assert mean - stats.t.ppf(0.975, cells.size - 1) * spread < 0  # what the t interval did
    low = float(result["population_ci_low"].squeeze())
    high = float(result["population_ci_high"].squeeze())
    assert 0 <= cells.min() <= low <= mean <= high <= cells.max()
    oracle = stats.bootstrap((cells,), np.mean, method="percentile", n_resamples=20000,
                             random_state=np.random.default_rng(1)).confidence_interval
    assert low == pytest.approx(oracle.low, rel=0.15) and high == pytest.approx(oracle.high, rel=0.15)


def test_spikes_module_does_not_import_pynwb():
    import subprocess

    code = "import sys, spikelatent.spikes, spikelatent.populations; print('hdmf' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "False"

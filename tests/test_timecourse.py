"""Event-aligned counts, PSTHs in spikes/s and the sliding-window Fano factor (analysis.timecourse)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from spikelatent.analysis import aligned_counts, firing_rate, sliding_fano_factor
from spikelatent.errors import SpikelatentError


@pytest.fixture
def trains():
    rng = np.random.default_rng(0)
    events = np.sort(rng.uniform(1, 150, 30))
    return [np.sort(rng.uniform(0, 152, n)) for n in (3000, 500, 8000)], events


def test_aligned_counts_equal_numpy_histogram(trains):
    spikes, events = trains
    counts = aligned_counts(spikes, events, (-0.5, 1.0), 0.01)
    assert counts.dims == ("trial", "time", "unit") and counts.sizes["time"] == 150
    np.testing.assert_allclose(counts["time"].values[[0, -1]], [-0.495, 0.995])
    edges = np.linspace(-0.5, 1.0, 151)
    for unit, train in enumerate(spikes):
        expected = np.stack([np.histogram(train - e, bins=edges)[0] for e in events])
        np.testing.assert_array_equal(counts.isel(unit=unit).values, expected)


def test_aligned_counts_equal_pynapple_perievent(trains):
    nap = pytest.importorskip("pynapple")
    spikes, events = trains
    group = nap.TsGroup({i: nap.Ts(t) for i, t in enumerate(spikes)})
    counts = aligned_counts(group, nap.Ts(events), (-0.5, 1.0), 0.01)
    for unit, train in enumerate(spikes):
        peth = nap.compute_perievent(nap.Ts(train), nap.Ts(events), window=(-0.5, 1.0))
        expected = np.asarray(peth.count(0.01, ep=nap.IntervalSet(-0.5, 1.0)))  # (time, trial)
        np.testing.assert_array_equal(counts.isel(unit=unit).values.T, expected)


def test_firing_rate_is_mean_count_over_bin_size_with_sem(trains):
    spikes, events = trains
    stimulus = np.arange(len(events)) % 3
    counts = aligned_counts(spikes, events, (0.0, 0.5), 0.05, event_coords={"stimulus": stimulus})
    result = firing_rate(counts)
    assert result["psth"].attrs["units"] == "spikes/s"
    for s in range(3):
        chosen = counts.values[stimulus == s] / 0.05  # (trial, time, unit)
        np.testing.assert_allclose(result["psth"].sel(stimulus=s).values, chosen.mean(axis=0))
        np.testing.assert_allclose(result["sem"].sel(stimulus=s).values, stats.sem(chosen, axis=0))


def _nb_then_poisson(seed: int = 1, n_trial: int = 40) -> xr.DataArray:
    """(trial, stimulus, time, unit) counts in 10 ms bins: negative binomial (Fano 1 + mean / 0.5,
    a shared gain per trial) before time 0, Poisson after, as in the variability drop at stimulus
    onset (Churchland et al. 2010). ``attrs["rate"]``: the true mean per bin (stimulus, unit)."""
    rng = np.random.default_rng(seed)
    n_stim, n_time, n_unit = 4, 60, 30
    per_bin = rng.uniform(0.05, 0.4, size=(n_stim, n_unit))
    rate = per_bin[None, :, None, :] * np.ones((1, 1, n_time, 1))
    gain = rng.gamma(0.5, 1 / 0.5, size=(n_trial, n_stim, 1, n_unit))  # constant within a trial
    before = np.arange(n_time) < 30
    mean = np.where(before[None, None, :, None], rate * gain, rate)
    counts = rng.poisson(mean)
    time = (np.arange(n_time) - 30 + 0.5) * 0.01
    return xr.DataArray(
        counts,
        dims=("trial", "stimulus", "time", "unit"),
        coords={"time": time},
        attrs={"bin_size": 0.01, "rate": per_bin},
    )


def test_sliding_fano_factor_falls_at_onset():
    counts = _nb_then_poisson()
    result = sliding_fano_factor(counts, window=0.1, step=0.05)
    np.testing.assert_allclose(
        result["time"].values, [-0.25, -0.2, -0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2, 0.25]
    )
    early = result["raw_fano_factor"].sel(time=slice(None, -0.05))  # windows wholly before 0
    late = result["fano_factor"].sel(time=slice(0.05, None))  # windows wholly after 0
    mu = 10 * counts.attrs["rate"].ravel()  # the closed form of the next test, 40 trials
    weight = 1.0 / (mu / 40 + 2.0 * mu**2 / 39)
    np.testing.assert_allclose(
        early.values, 1 + 2 * np.sum(weight * mu**3) / np.sum(weight * mu**2), rtol=0.10
    )
    np.testing.assert_allclose(late.values, 1.0, atol=0.15)


def _weighted_slope(mean, variance, n):
    """Churchland et al.'s slope of variance on mean through 0, weights 1/(mu/n + 2 mu^2/(n-1))."""
    weight = 1.0 / (mean / n + 2.0 * mean**2 / (n - 1))
    return np.sum(weight * mean * variance) / np.sum(weight * mean**2)


def test_overlapping_windows_equal_explicit_sums_and_the_closed_form():
    """Default step (one bin): every position's raw Fano factor is the weighted slope of the
    explicit numpy sums of its 10 bins; before onset it is the closed form of the gamma-Poisson
    counts (a window-ignoring implementation gives ~1.5 there instead of ~5.6)."""
    counts = _nb_then_poisson(seed=4, n_trial=200)
    k, n_trial = 10, counts.sizes["trial"]
    result = sliding_fano_factor(counts, window=0.1)  # step: one bin, windows overlap by 9
    values = counts.transpose("trial", "stimulus", "time", "unit").values.astype(np.float64)
    n_time = values.shape[2]
    assert result.sizes["time"] == n_time - k + 1
    centres = counts["time"].values
    np.testing.assert_allclose(result["time"].values, (centres[: n_time - k + 1] + centres[k - 1 :]) / 2)
    for position in range(n_time - k + 1):
        window = values[:, :, position : position + k, :].sum(axis=2)  # (trial, stimulus, unit)
        mean, variance = window.mean(axis=0).ravel(), window.var(axis=0, ddof=1).ravel()
        keep = mean > 0
        expected = _weighted_slope(mean[keep], variance[keep], n_trial)
        assert float(result["raw_fano_factor"][position]) == pytest.approx(expected, rel=1e-10)
        assert int(result["n_points"][position]) == keep.sum()
    # Before onset a window's count is Poisson(mu * g), g ~ Gamma(0.5, 2): variance mu + 2 mu^2,
    # so the weighted slope of the true moments is 1 + 2 sum(w mu^3) / sum(w mu^2).
    mu = k * counts.attrs["rate"].ravel()
    weight = 1.0 / (mu / n_trial + 2.0 * mu**2 / (n_trial - 1))
    closed_form = 1 + 2 * np.sum(weight * mu**3) / np.sum(weight * mu**2)
    assert 5.0 < closed_form < 6.5
    early = result["raw_fano_factor"].sel(time=slice(None, -0.05))  # windows wholly before 0
    np.testing.assert_allclose(early.values, closed_form, rtol=0.10)
    late = result["raw_fano_factor"].sel(time=slice(0.05, None))  # windows wholly after 0
    np.testing.assert_allclose(late.values, 1.0, rtol=0.10)


def test_sliding_window_counts_are_sums_of_bins():
    """With one bin per window, sliding_fano_factor's raw slope equals mean_matched on the bins."""
    from spikelatent.analysis import mean_matched_fano_factor

    counts = _nb_then_poisson(seed=2)
    one_bin = sliding_fano_factor(counts, window=0.01)
    direct = mean_matched_fano_factor(counts, across="time")
    np.testing.assert_allclose(one_bin["raw_fano_factor"].values, direct["raw_fano_factor"].values)
    # Two-bin windows: the raw slope of explicit two-bin sums.
    two = sliding_fano_factor(counts, window=0.02, step=0.02)
    summed = counts.coarsen(time=2).sum()
    expected = mean_matched_fano_factor(summed, across="time")
    np.testing.assert_allclose(two["raw_fano_factor"].values, expected["raw_fano_factor"].values)


def test_bad_windows_are_refused(trains):
    spikes, events = trains
    with pytest.raises(SpikelatentError, match="whole number"):
        aligned_counts(spikes, events, (0.0, 0.105), 0.01)
    counts = _nb_then_poisson()
    with pytest.raises(SpikelatentError, match="multiple"):
        sliding_fano_factor(counts, window=0.015)
    with pytest.raises(SpikelatentError, match="no bin size"):
        firing_rate(counts.drop_attrs())

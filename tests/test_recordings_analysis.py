"""Counting-window Fano factors, mean-matched Fano, noise/signal correlations and participation
ratio, checked against known curves (Poisson, gamma renewal), planted structure and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from spikelatent.analysis import (
    fano_factor_by_window,
    mean_matched_fano_factor,
    noise_correlations,
    participation_ratio,
    signal_correlations,
)
from spikelatent.errors import SpikelatentError

WINDOWS = [0.01, 0.05, 0.2, 1.0, 4.0]


def poisson_trains(rng, n_unit=40, duration=400.0):
    rates = rng.uniform(5, 30, n_unit)
    return [np.sort(rng.uniform(0, duration, rng.poisson(r * duration))) for r in rates]


def gamma_trains(rng, shape, rate=20.0, n_unit=30, duration=400.0, burn_in=20.0):
    trains = []
    for _ in range(n_unit):
        intervals = rng.gamma(shape, 1.0 / (shape * rate), int(rate * (duration + burn_in) * 1.3))
        times = np.cumsum(intervals) - burn_in  # drop the start: an equilibrium renewal process
        trains.append(times[(times >= 0) & (times < duration)])
    return trains


def test_fano_by_window_of_poisson_trains_is_one_within_its_ci():
    rng = np.random.default_rng(0)
    result = fano_factor_by_window(poisson_trains(rng), WINDOWS, span=(0.0, 400.0))
    assert result["fano_factor"].dims == ("window", "unit")
    np.testing.assert_allclose(result["window"], WINDOWS)
    covered = (result["ci_low"] <= 1) & (result["ci_high"] >= 1)
    # 95% intervals of independent units: most contain 1 at every window.
    assert np.all(covered.mean("unit") >= 0.85), covered.mean("unit").values
    # The population mean at 99% (Bonferroni over the 5 windows) holds 1 at every window.
    joint = fano_factor_by_window(poisson_trains(rng), WINDOWS, span=(0, 400), confidence=0.99)
    assert np.all(joint["population_ci_low"] <= 1) and np.all(joint["population_ci_high"] >= 1)
    # Window counts add up: mean count = rate x window length for every unit.
    np.testing.assert_allclose(
        result["mean"].sel(window=1.0), result["mean"].sel(window=0.01) * 100, rtol=1e-6
    )


def test_fano_by_window_of_gamma_renewal_trains_goes_from_one_to_one_over_shape():
    rng = np.random.default_rng(1)
    shape = 4.0
    result = fano_factor_by_window(gamma_trains(rng, shape), [0.002, 0.05, 0.5, 5.0], span=(0, 400))
    population = result["population_fano_factor"].values
    assert abs(population[0] - 1.0) < 0.06  # T -> 0: F -> 1 (at most one spike per window)
    assert abs(population[-1] - 1 / shape) < 0.04  # T >> ISI: F -> CV^2 = 1/shape
    assert np.all(np.diff(population) < 0)  # monotone approach for a regular (CV < 1) process
    low, high = result["population_ci_low"].values[-1], result["population_ci_high"].values[-1]
    assert low < 1 / shape + 0.03 and high > 1 / shape - 0.03


def test_fano_by_window_on_binned_counts_with_trials_and_conditions():
    rng = np.random.default_rng(2)
    n_trial, n_time, n_unit = 60, 100, 8
    # Recorded layout: (trial, time, unit) with a stimulus coordinate along trial; rates differ
    # by stimulus but are constant in time, so each condition's counts are Poisson: F = 1.
    stimulus = np.arange(n_trial) % 3
    rates = rng.uniform(0.05, 0.5, (3, n_unit))
    counts = rng.poisson(rates[stimulus][:, None, :], (n_trial, n_time, n_unit)).astype(np.uint8)
    array = xr.DataArray(
        counts,
        dims=("trial", "time", "unit"),
        coords={"stimulus": ("trial", stimulus)},
        attrs={"bin_size": 0.01},
    )
    result = fano_factor_by_window(array, [0.01, 0.1, 0.5])
    assert set(result["fano_factor"].dims) == {"window", "stimulus", "unit"}
    assert np.all(result["n_samples"].sel(window=0.5) == 20 * 2)  # 20 trials x 2 windows
    assert np.all(np.abs(result["population_fano_factor"] - 1) < 0.1)
    with pytest.raises(SpikelatentError, match="whole number"):
        fano_factor_by_window(array, [0.015])
    with pytest.raises(SpikelatentError, match="positive"):
        fano_factor_by_window(array, [0.0])


def nb_condition(rng, means, fano, n_trial=40):
    """NB counts (trial, unit) with the given means and Fano factor (var = fano * mean)."""
    p = 1.0 / fano  # numpy convention: mean r(1-p)/p, var = mean / p
    r = means * p / (1 - p)
    return rng.negative_binomial(r, p, size=(n_trial, means.size))


def two_conditions(rng, fano_a, fano_b, n_unit=400):
    low = rng.uniform(1, 6, n_unit)
    high = rng.uniform(3, 12, n_unit)
    counts = np.stack([nb_condition(rng, low, fano_a), nb_condition(rng, high, fano_b)], axis=1)
    return xr.DataArray(
        counts, dims=("trial", "condition", "unit"), coords={"condition": ["a", "b"]}
    )


def test_mean_matched_fano_equal_for_equal_fano_different_rates():
    rng = np.random.default_rng(3)
    result = mean_matched_fano_factor(two_conditions(rng, 2.0, 2.0), across="condition")
    a, b = result.sel(condition="a"), result.sel(condition="b")
    for entry in (a, b):
        assert entry["ci_low"] < 2.0 < entry["ci_high"]
    assert a["ci_low"] < b["fano_factor"] < a["ci_high"]
    assert 0 < int(result["n_matched"]) < int(result["n_points"].min())


def test_mean_matched_fano_differs_when_the_fano_factors_differ():
    rng = np.random.default_rng(4)
    result = mean_matched_fano_factor(two_conditions(rng, 1.5, 3.0), across="condition")
    a, b = result.sel(condition="a"), result.sel(condition="b")
    assert a["ci_high"] < b["ci_low"]
    assert a["ci_low"] < 1.5 < a["ci_high"] and b["ci_low"] < 3.0 < b["ci_high"]


def test_mean_matching_removes_a_rate_dependent_fano_difference():
    # var = mu + 0.5 mu^2: the Fano factor grows with the rate, so the high-rate condition's raw
    # slope is larger although both conditions follow the same mean-variance law.
    rng = np.random.default_rng(5)
    n_unit, n_trial = 600, 60
    counts = []
    for means in (rng.uniform(0.5, 4, n_unit), rng.uniform(1.5, 8, n_unit)):
        r = np.full(n_unit, 2.0)  # NB with r = 2: var = mu + mu^2 / 2
        counts.append(rng.negative_binomial(r, r / (r + means), size=(n_trial, n_unit)))
    array = xr.DataArray(np.stack(counts, 1), dims=("trial", "condition", "unit"))
    result = mean_matched_fano_factor(array, across="condition", n_bins=16, n_resamples=20)
    raw = result["raw_fano_factor"].values
    assert raw[1] > result["raw_ci_high"].values[0]  # raw: significantly different
    low, high = result["ci_low"].values, result["ci_high"].values
    assert low[0] < high[1] and low[1] < high[0]  # matched: equal within their intervals


def correlated_counts(rng, n_trial=300, n_stimulus=6, n_unit=6, shared=2.0, private=3.0):
    """Units 0 and 1 share a Poisson term: their noise correlation is shared/(shared+private)."""
    offsets = rng.integers(0, 20, (n_stimulus, n_unit))  # condition means, no trial variability
    counts = rng.poisson(private, (n_trial, n_stimulus, n_unit)) + offsets
    common = rng.poisson(shared, (n_trial, n_stimulus))
    counts[..., 0] += common
    counts[..., 1] += common
    return xr.DataArray(counts, dims=("trial", "stimulus", "unit"))


def test_noise_correlations_recover_a_planted_pair_and_zero_elsewhere():
    rng = np.random.default_rng(6)
    result = noise_correlations(correlated_counts(rng), n_shuffles=200)
    matrix = result["noise_correlation"].values
    assert result["noise_correlation"].dims == ("unit", "other_unit")
    assert abs(matrix[0, 1] - 2.0 / 5.0) < 0.05
    assert result["p_value"].values[0, 1] < 0.01
    assert result["shuffle_ci_high"].values[0, 1] < matrix[0, 1]
    independent = np.triu_indices(6, 1)
    outside = []
    for i, j in zip(*independent, strict=True):
        if (i, j) == (0, 1):
            continue
        low, high = result["shuffle_ci_low"].values[i, j], result["shuffle_ci_high"].values[i, j]
        outside.append(not (low <= matrix[i, j] <= high))
    assert np.mean(outside) <= 0.25  # 14 independent pairs at 95%: a few outside by chance


def test_noise_correlations_of_independent_units_are_zero_within_the_shuffle_ci():
    rng = np.random.default_rng(7)
    counts = xr.DataArray(
        rng.poisson(rng.uniform(1, 10, (5, 20)), (200, 5, 20)), dims=("trial", "stimulus", "unit")
    )
    result = noise_correlations(counts, n_shuffles=200)
    mean = float(result["mean_noise_correlation"])
    assert float(result["shuffle_mean_ci_low"]) <= mean <= float(result["shuffle_mean_ci_high"])
    assert float(result["shuffle_mean_ci_low"]) < 0 < float(result["shuffle_mean_ci_high"])


def test_signal_correlations_of_shared_tuning():
    tuning = np.array([1.0, 4.0, 2.0, 8.0, 5.0])
    counts = np.stack([tuning, 2 * tuning + 1, 10 - tuning], axis=-1)  # (stimulus, unit)
    counts = np.broadcast_to(counts, (4, 5, 3)).astype(np.int64)  # identical trials
    result = signal_correlations(xr.DataArray(counts, dims=("trial", "stimulus", "unit")))
    np.testing.assert_allclose(
        result["signal_correlation"].values,
        np.corrcoef(np.stack([tuning, 2 * tuning + 1, 10 - tuning])),
        atol=1e-12,
    )


def test_participation_ratio_of_a_known_spectrum():
    rng = np.random.default_rng(8)
    eigenvalues = np.array([5.0, 3.0, 1.0, 1.0, 0.5, 0.2, 0.1, 0.1])
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    samples = rng.normal(size=(6000, 8)) * np.sqrt(eigenvalues) @ rotation.T
    counts = xr.DataArray(samples + 50, dims=("trial", "unit"))
    result = participation_ratio(counts)
    expected = eigenvalues.sum() ** 2 / np.sum(eigenvalues**2)
    assert abs(float(result["participation_ratio"]) - expected) < 0.05 * expected
    assert float(result["ci_low"]) < expected < float(result["ci_high"])
    one_direction = xr.DataArray(np.outer(rng.poisson(5, 300), np.arange(1, 5)), dims=("trial", "unit"))
    assert float(participation_ratio(one_direction, n_groups=0)["participation_ratio"]) == pytest.approx(1.0)


def _srivastava_ratio(scatter, dof):
    """The normal-theory unbiased tr(C)^2 / tr(C^2) (Srivastava 2005), written out again."""
    s = scatter / dof
    a2 = dof**2 / ((dof - 1) * (dof + 2)) * (np.trace(s @ s) - np.trace(s) ** 2 / dof)
    return (np.trace(s) ** 2 - 2 * a2 / dof) / a2


def test_participation_ratio_is_unbiased_where_the_plug_in_is_low():
    """Independent Poisson units (issue 36: 234.9 with [216.9, 218.6]): the estimate is within
    1 % of the truth, its interval covers both, and the plug-in equals np.cov's ratio."""
    rng = np.random.default_rng(0)
    rates = rng.uniform(0.5, 5, 256)
    counts = xr.DataArray(rng.poisson(rates, size=(20, 100, 256)), dims=("trial", "stimulus", "unit"))
    truth = rates.sum() ** 2 / np.sum(rates**2)
    for kind in ("total", "noise"):
        result = participation_ratio(counts, kind=kind)
        estimate, low, high = (float(result[k]) for k in ("participation_ratio", "ci_low", "ci_high"))
        assert estimate == pytest.approx(truth, rel=0.01)
        assert low <= estimate <= high and low <= truth <= high
    covariance = np.cov(counts.values.reshape(-1, 256), rowvar=False)
    plug_in = np.trace(covariance) ** 2 / np.trace(covariance @ covariance)
    total = participation_ratio(counts, kind="total")
    assert float(total["participation_ratio_plugin"]) == pytest.approx(plug_in, rel=1e-10)
    assert plug_in < 0.92 * truth  # what the bias correction is for


@pytest.mark.parametrize("kind", ["total", "noise", "signal"])
def test_participation_ratio_jackknife_equals_an_explicit_leave_one_out_loop(kind):
    rng = np.random.default_rng(5)
    n_trial, n_stimulus, n_unit = 7, 9, 5
    mixing = rng.normal(size=(n_unit, n_unit))
    tuning = rng.uniform(2, 9, (n_stimulus, n_unit))
    values = tuning + rng.normal(size=(n_trial, n_stimulus, n_unit)) @ mixing
    counts = xr.DataArray(values + 20, dims=("trial", "stimulus", "unit"))
    groups = n_stimulus if kind == "signal" else n_trial
    result = participation_ratio(counts, kind=kind, n_groups=groups, confidence=0.9)

    def estimate(x):  # x: (trial, stimulus, unit) with nothing missing
        if kind == "signal":
            rows = x.mean(axis=0)
            return _srivastava_ratio(np.cov(rows, rowvar=False) * (len(rows) - 1), len(rows) - 1)
        if kind == "total":
            rows = x.reshape(-1, n_unit)
            return _srivastava_ratio(np.cov(rows, rowvar=False) * (len(rows) - 1), len(rows) - 1)
        scatter = sum(np.cov(x[:, c], rowvar=False) * (x.shape[0] - 1) for c in range(x.shape[1]))
        return _srivastava_ratio(scatter, x.shape[0] * x.shape[1] - x.shape[1])

    data = counts.values
    axis = 1 if kind == "signal" else 0
    left_out = np.array([estimate(np.delete(data, i, axis=axis)) for i in range(groups)])
    error = np.sqrt((groups - 1) / groups * np.sum((left_out - left_out.mean()) ** 2))
    half = stats.t.ppf(0.95, groups - 1) * error
    whole = estimate(data)
    assert float(result["participation_ratio"]) == pytest.approx(whole, rel=1e-10)
    assert float(result["standard_error"]) == pytest.approx(error, rel=1e-8)
    assert float(result["ci_low"]) == pytest.approx(max(1.0, whole - half), rel=1e-8)
    assert float(result["ci_high"]) == pytest.approx(min(n_unit, whole + half), rel=1e-8)
    assert float(result["ci_low"]) <= float(result["participation_ratio"]) <= float(result["ci_high"])


def test_participation_ratio_options_are_checked():
    counts = xr.DataArray(np.random.default_rng(0).poisson(3, (30, 4)), dims=("trial", "unit"))
    assert np.isnan(float(participation_ratio(counts, n_boot=0)["ci_low"]))
    with pytest.raises(SpikelatentError, match="n_groups=G instead of n_boot"):
        participation_ratio(counts, n_boot=100)
    with pytest.raises(SpikelatentError, match="unknown kind"):
        participation_ratio(counts, kind="shared")


def test_shuffle_interval_equals_numpy_quantiles_of_every_shuffle(monkeypatch):
    """The null is not held whole; its interval, p-values and mean interval still equal numpy's
    on all the shuffled correlation matrices (recorded here as they are computed)."""
    import spikelatent.analysis.correlations as correlations

    rng = np.random.default_rng(2)
    counts = xr.DataArray(rng.poisson(3, (25, 4, 9)).astype(float), dims=("trial", "stimulus", "unit"))
    counts[:, :, 5] = 2.0  # a unit that never varies: its pairs are NaN
    counts[3, 2, 1] = np.nan  # an unobserved entry
    matrices = []
    original = correlations._correlation

    def recording(samples):
        matrices.append(original(samples))
        return matrices[-1]

    monkeypatch.setattr(correlations, "_correlation", recording)
    result = noise_correlations(counts, n_shuffles=40, confidence=0.9, seed=4)
    observed, null = matrices[0], np.stack(matrices[1:]).astype(np.float32)
    assert null.shape[0] == 40
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        low, high = np.nanquantile(null.astype(np.float64), [0.05, 0.95], axis=0)
    np.testing.assert_allclose(result["shuffle_ci_low"].values, low, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(result["shuffle_ci_high"].values, high, rtol=1e-12, equal_nan=True)
    assert np.isnan(result["shuffle_ci_low"].values[5]).all()
    exceed = (np.abs(null) >= np.abs(observed)).sum(axis=0)
    expected_p = np.where(np.isfinite(observed), (1 + exceed) / 41, np.nan)
    np.testing.assert_allclose(result["p_value"].values, expected_p, equal_nan=True)
    upper = np.triu_indices(9, 1)
    means = [np.nanmean(m[upper]) for m in null.astype(np.float64)]
    assert float(result["shuffle_mean_ci_low"]) == pytest.approx(np.quantile(means, 0.05), rel=1e-12)
    assert float(result["shuffle_mean_ci_high"]) == pytest.approx(np.quantile(means, 0.95), rel=1e-12)

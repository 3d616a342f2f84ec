"""Overdispersion analyses checked against numpy/scipy computations done here, not our own code."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import optimize, stats

import spikelatent.analysis.overdispersion as overdispersion
from spikelatent.analysis import (
    empirical_fano_factor,
    mean_variance_relation,
    model_fano_summary,
    nb_vs_poisson_lrt,
    overdispersion_test,
)
from spikelatent.errors import SpikelatentError


def _counts(values: np.ndarray) -> xr.DataArray:
    return xr.DataArray(
        values.astype(np.uint32),
        dims=("trial", "stimulus", "unit"),
        coords={"stimulus": np.arange(values.shape[1]), "unit": np.arange(values.shape[2])},
    )


def _poisson_and_nb(n_trials: int, n_stimuli: int, seed: int) -> tuple[xr.DataArray, xr.DataArray]:
    """Unit 0..9 Poisson (rate 0.5..8), unit 10..19 NB with Fano 1/p = 2.5..5."""
    rng = np.random.default_rng(seed)
    rates = np.linspace(0.5, 8.0, 10)
    poisson = rng.poisson(rates, size=(n_trials, n_stimuli, 10))
    r = np.linspace(1.0, 4.0, 10)
    p = np.linspace(0.2, 0.4, 10)
    nb = stats.nbinom(r, p).rvs(size=(n_trials, n_stimuli, 10), random_state=rng)
    return _counts(poisson), _counts(nb)


# ---------------------------------------------------------------- Fano factor


def test_fano_point_estimates_match_numpy_and_zero_mean_is_nan():
    values = np.array(
        [
            [[0, 3], [2, 5]],
            [[0, 1], [4, 5]],
            [[0, 2], [0, 5]],
        ]
    )  # (trial=3, stimulus=2, unit=2); cell (0, 0) never fires; cell (1, 1) is constant
    result = empirical_fano_factor(_counts(values))
    assert result["fano_factor"].dims == ("stimulus", "unit")
    # hand-computed: cell (0,1) = [3,1,2]: mean 2, var 1 -> F 0.5; cell (1,0) = [2,4,0]: mean 2, var 4 -> F 2
    assert result["fano_factor"].sel(stimulus=0, unit=1) == pytest.approx(0.5)
    assert result["fano_factor"].sel(stimulus=1, unit=0) == pytest.approx(2.0)
    assert result["fano_factor"].sel(stimulus=1, unit=1) == 0.0
    assert np.isnan(result["fano_factor"].sel(stimulus=0, unit=0))
    assert np.isnan(result["ci_low"].sel(stimulus=0, unit=0))
    assert "no spikes" in result["fano_factor"].attrs["nan_reason"]
    np.testing.assert_allclose(result["variance"].values, values.var(axis=0, ddof=1))
    np.testing.assert_allclose(result["mean"].values, values.mean(axis=0))
    assert (result["n_trials"] == 3).all()


@pytest.mark.parametrize("order", [("unit", "trial", "stimulus"), ("stimulus", "unit", "trial")])
def test_named_dims_in_any_order_give_the_same_result(order):
    counts, _ = _poisson_and_nb(20, 4, seed=1)
    reference = empirical_fano_factor(counts)
    transposed = empirical_fano_factor(counts.transpose(*order))
    xr.testing.assert_allclose(
        transposed["fano_factor"].transpose("stimulus", "unit"), reference["fano_factor"]
    )
    lrt = nb_vs_poisson_lrt(counts.transpose(*order))
    np.testing.assert_allclose(
        lrt["statistic"].transpose("stimulus", "unit").values,
        nb_vs_poisson_lrt(counts)["statistic"].values,
    )


def test_recorded_layout_groups_trials_by_stimulus_coordinate():
    rng = np.random.default_rng(2)
    n_units = 3
    trial_stimulus = np.array([5, 7, 5, 9, 7, 5, 9, 9, 7, 5, 5])  # ragged: 5 x5, 3 x7, 3 x9
    label_of = {5: 1, 7: 0, 9: 1}
    values = rng.poisson(4.0, size=(len(trial_stimulus), n_units))
    counts = xr.DataArray(
        values.astype(np.uint16),
        dims=("trial", "unit"),
        coords={
            "stimulus": ("trial", trial_stimulus),
            "label": ("trial", [label_of[s] for s in trial_stimulus]),
        },
    )
    result = empirical_fano_factor(counts, over="trial")
    assert set(result["fano_factor"].dims) == {"stimulus", "unit"}
    assert list(result["stimulus"].values) == [5, 7, 9]
    assert list(result["label"].values) == [1, 0, 1]
    for stimulus in (5, 7, 9):
        subset = values[trial_stimulus == stimulus]
        expected = subset.var(axis=0, ddof=1) / subset.mean(axis=0)
        np.testing.assert_allclose(result["fano_factor"].sel(stimulus=stimulus).values, expected)
        assert (result["n_trials"].sel(stimulus=stimulus) == len(subset)).all()


@pytest.mark.parametrize("method", ["delta", "chi2"])
def test_fano_interval_covers_true_value_of_poisson_cells(method):
    rng = np.random.default_rng(3)
    counts = _counts(rng.poisson(3.0, size=(300, 200, 1)))
    result = empirical_fano_factor(counts, method=method)
    covered = (result["ci_low"] <= 1.0) & (1.0 <= result["ci_high"])
    assert 0.88 <= float(covered.mean()) <= 0.995


def test_fano_interval_of_2000_nb_trials_covers_one_over_p():
    rng = np.random.default_rng(4)
    r = np.linspace(0.7, 6.0, 200)
    p = np.linspace(0.15, 0.7, 200)[::-1]
    samples = stats.nbinom(r, p).rvs(size=(2000, 200), random_state=rng)
    counts = xr.DataArray(samples.astype(np.uint32), dims=("trial", "unit"))
    result = empirical_fano_factor(counts)  # delta method, 95 %
    covered = (result["ci_low"] <= 1 / p) & (1 / p <= result["ci_high"])
    assert float(covered.mean()) >= 0.88
    # the interval is informative: its width is a small fraction of F at n = 2000
    assert float(((result["ci_high"] - result["ci_low"]) / (1 / p)).median()) < 0.3


def test_fano_interval_width_matches_monte_carlo_spread():
    # 300 replicate cells of one skewed NB (r=1, p=0.2), 1500 trials each: the spread of log F-hat
    # across replicates is the truth the interval's standard error must reproduce.
    rng = np.random.default_rng(11)
    samples = stats.nbinom(1.0, 0.2).rvs(size=(1500, 300), random_state=rng)
    result = empirical_fano_factor(xr.DataArray(samples.astype(np.uint32), dims=("trial", "unit")))
    monte_carlo_sd = np.log(samples.var(axis=0, ddof=1) / samples.mean(axis=0)).std()
    z = stats.norm.ppf(0.975)
    reported_sd = np.median(np.log(result["ci_high"] / result["ci_low"]) / (2 * z))
    assert reported_sd == pytest.approx(monte_carlo_sd, rel=0.15)


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("test_function", [overdispersion_test, nb_vs_poisson_lrt])
def test_poisson_not_flagged_and_nb_flagged(test_function):
    poisson, nb = _poisson_and_nb(50, 40, seed=5)  # 400 cells each
    raw_poisson = test_function(poisson, alpha=0.05, correction=None)
    assert float(raw_poisson["overall_fraction_significant"]) <= 0.10
    corrected_poisson = test_function(poisson, alpha=0.05, correction="bh")
    assert float(corrected_poisson["overall_fraction_significant"]) <= 0.02
    flagged_nb = test_function(nb, alpha=0.05, correction="bh")
    assert float(flagged_nb["overall_fraction_significant"]) >= 0.95
    assert flagged_nb["fraction_significant"].dims == ("unit",)
    assert (flagged_nb["n_tested"] == 40).all()


def test_dispersion_test_matches_scipy_chi2_per_cell():
    poisson, nb = _poisson_and_nb(12, 3, seed=6)
    result = overdispersion_test(nb, correction=None)
    values = nb.values.astype(float)
    for stimulus in range(3):
        for unit in range(10):
            x = values[:, stimulus, unit]
            statistic = ((x - x.mean()) ** 2).sum() / x.mean()
            expected = stats.chi2.sf(statistic, len(x) - 1)
            cell = result.isel(stimulus=stimulus, unit=unit)
            assert float(cell["statistic"]) == pytest.approx(statistic)
            assert float(cell["p_value"]) == pytest.approx(expected)


def test_benjamini_hochberg_matches_hand_step_up():
    _, nb = _poisson_and_nb(8, 30, seed=7)  # short: a mix of significant and not
    result = overdispersion_test(nb, alpha=0.05, correction="bh")
    p = result["p_value"].values.ravel()
    p = p[np.isfinite(p)]
    order = np.sort(p)
    passing = np.nonzero(order <= 0.05 * np.arange(1, p.size + 1) / p.size)[0]
    expected = (
        0 if passing.size == 0 else passing[-1] + 1
    )  # step-up: all up to the largest passing rank
    assert 0 < expected < p.size
    assert int(result["significant"].sum()) == expected


def _oracle_lr(x: np.ndarray) -> float:
    """2 (max NB loglik - Poisson loglik) by a free 2-D fit of (log r, logit p) with scipy.stats."""

    def negative_loglik(theta):
        r, p = np.exp(theta[0]), 1 / (1 + np.exp(-theta[1]))
        return -stats.nbinom.logpmf(x, r, p).sum()

    mean, var = x.mean(), x.var()
    r0 = mean**2 / max(var - mean, 1e-3)
    start = np.array([np.log(r0), np.log(r0 / mean)])
    fit = optimize.minimize(
        negative_loglik,
        start,
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 5000},
    )
    poisson_loglik = stats.poisson.logpmf(x, mean).sum()
    return 2 * (-fit.fun - poisson_loglik)


@pytest.mark.parametrize("survival_limit", [overdispersion.SURVIVAL_TABLE_LIMIT, 0])
def test_lrt_statistic_matches_scipy_likelihood_fit(monkeypatch, survival_limit):
    monkeypatch.setattr(overdispersion, "SURVIVAL_TABLE_LIMIT", survival_limit)  # both code paths
    rng = np.random.default_rng(8)
    samples = np.stack(
        [
            stats.nbinom(2.0, 0.3).rvs(60, random_state=rng),
            stats.nbinom(0.8, 0.1).rvs(60, random_state=rng),
            stats.nbinom(10.0, 0.6).rvs(60, random_state=rng),
            stats.nbinom(0.5, 0.02).rvs(60, random_state=rng),  # large counts
        ],
        axis=1,
    )
    counts = xr.DataArray(samples.astype(np.uint32), dims=("trial", "unit"))
    result = nb_vs_poisson_lrt(counts, correction=None)
    for unit in range(samples.shape[1]):
        x = samples[:, unit]
        assert x.var() > x.mean()
        expected = _oracle_lr(x)
        assert float(result["statistic"][unit]) == pytest.approx(expected, rel=1e-5, abs=1e-6)
        assert float(result["p_value"][unit]) == pytest.approx(
            0.5 * stats.chi2.sf(expected, 1), rel=1e-4
        )
        # at the MLE the fitted NB mean equals the sample mean
        r, p = float(result["dispersion"][unit]), float(result["prob"][unit])
        assert r * (1 - p) / p == pytest.approx(x.mean(), rel=1e-9)


def test_lrt_boundary_and_silent_cells():
    # underdispersed cell (variance < mean): Poisson is the NB MLE -> LR 0, p 1; silent cell untested
    samples = np.array([[3, 0], [4, 0], [3, 0], [4, 0], [3, 0]], dtype=np.uint8)
    result = nb_vs_poisson_lrt(xr.DataArray(samples, dims=("trial", "unit")))
    assert float(result["statistic"][0]) == 0.0
    assert float(result["p_value"][0]) == 1.0
    assert np.isinf(float(result["dispersion"][0]))
    assert float(result["prob"][0]) == 1.0
    assert np.isnan(float(result["p_value"][1]))
    assert not bool(result["significant"][1])
    assert not bool(result["tested"][1])
    assert int(result.attrs["n_tested"]) == 1


# ---------------------------------------------------------------- mean-variance, summaries


def test_mean_variance_relation_recovers_gain_variance_and_slope():
    rng = np.random.default_rng(9)
    gain_variance = 0.5
    means = np.geomspace(1.0, 30.0, 25)  # (stimulus,)
    n_trials, n_units = 600, 4
    gain = rng.gamma(1 / gain_variance, gain_variance, size=(n_trials, 25, n_units))
    samples = rng.poisson(gain * means[None, :, None])
    result = mean_variance_relation(_counts(samples).transpose("unit", "stimulus", "trial"))
    assert result["gain_variance"].dims == ("unit",)
    np.testing.assert_allclose(result["gain_variance"].values, gain_variance, atol=0.1)
    for unit in range(n_units):
        x = samples[:, :, unit]
        slope, intercept = np.polyfit(np.log(x.mean(0)), np.log(x.var(0, ddof=1)), 1)
        assert float(result["slope"].sel(unit=unit)) == pytest.approx(slope, rel=1e-9)
        assert float(result["intercept"].sel(unit=unit)) == pytest.approx(intercept, rel=1e-9)
    # Poisson units: slope ~1 and no gain variance
    poisson = _counts(rng.poisson(means[None, :, None], size=(600, 25, 2)))
    poisson_result = mean_variance_relation(poisson)
    np.testing.assert_allclose(poisson_result["slope"].values, 1.0, atol=0.05)
    np.testing.assert_allclose(poisson_result["gain_variance"].values, 0.0, atol=0.01)


def test_model_fano_summary_matches_numpy():
    rng = np.random.default_rng(10)
    fano = 1 / rng.uniform(0.2, 0.9, size=(30, 5))
    pop = xr.Dataset(
        {
            "fano_factor": (("stimulus", "unit"), fano),
            "prior_fano_factor": ("unit", np.full(5, 2.0)),
        }
    )
    summary = model_fano_summary(pop, quantiles=(0.1, 0.9))
    np.testing.assert_allclose(summary["unit_mean"].values, fano.mean(axis=0))
    np.testing.assert_allclose(summary["unit_median"].values, np.median(fano, axis=0))
    np.testing.assert_allclose(
        summary["unit_quantiles"].transpose("quantile", "unit").values,
        np.quantile(fano, [0.1, 0.9], axis=0),
    )
    assert float(summary["overall_mean"]) == pytest.approx(fano.mean())
    np.testing.assert_allclose(summary["overall_quantiles"].values, np.quantile(fano, [0.1, 0.9]))
    assert "prior_fano_factor" in summary


# ---------------------------------------------------------------- errors


def test_bad_inputs_raise_one_line_errors():
    counts = _counts(np.ones((3, 2, 2)))
    with pytest.raises(SpikelatentError, match="needs dims \\('trial',\\)"):
        empirical_fano_factor(counts.rename(trial="repeat"))
    with pytest.raises(SpikelatentError, match="DataArray"):
        empirical_fano_factor(np.ones((3, 2, 2)))
    with pytest.raises(SpikelatentError, match="non-negative"):
        overdispersion_test(xr.DataArray(-np.ones((3, 2)), dims=("trial", "unit")))
    with pytest.raises(SpikelatentError, match="at least 2"):
        nb_vs_poisson_lrt(counts.isel(trial=[0]))
    with pytest.raises(SpikelatentError, match="confidence"):
        empirical_fano_factor(counts, confidence=1.5)
    with pytest.raises(SpikelatentError, match="integer"):
        nb_vs_poisson_lrt(xr.DataArray(np.full((3, 2), 0.5), dims=("trial", "unit")))
    with pytest.raises(SpikelatentError, match="correction"):
        overdispersion_test(counts, correction="holm")
    with pytest.raises(SpikelatentError, match="no 'stimulus' dim"):
        mean_variance_relation(xr.DataArray(np.ones((3, 2)), dims=("trial", "unit")))
    with pytest.raises(SpikelatentError) as error:
        model_fano_summary(xr.Dataset({"rate": (("stimulus", "unit"), np.ones((2, 2)))}))
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------- figures


def test_fano_mean_variance_and_raster_figures_are_written_atomically(tmp_path):
    import matplotlib.image

    from spikelatent.plotting import plot_fano_histogram, plot_mean_variance, plot_raster

    poisson, nb = _poisson_and_nb(20, 6, seed=12)
    counts = nb.assign_coords(label=("stimulus", np.arange(6) % 3))
    pop = xr.Dataset(
        {"counts": counts, "fano_factor": (("stimulus", "unit"), np.full((6, 10), 3.0))}
    )
    paths = [
        plot_fano_histogram(pop, path=tmp_path / "fano.png"),
        plot_mean_variance(counts, tmp_path / "sub" / "mean_variance.png"),
        plot_raster(counts, tmp_path / "raster.png", stimuli=[0, 5], units=range(8)),
    ]
    for path in paths:
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 100
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "fano.png",
        "mean_variance.png",
        "raster.png",
    ]  # no temporary files left behind
    with pytest.raises(SpikelatentError, match="stimulus positions"):
        plot_raster(counts, tmp_path / "bad.png", stimuli=[6])


def test_lrt_on_ragged_recorded_layout_matches_scipy_fit_per_stimulus():
    rng = np.random.default_rng(13)
    stimulus = rng.integers(0, 4, size=160)  # unequal numbers of trials per stimulus
    values = stats.nbinom(1.5, 0.25).rvs(size=(160, 2), random_state=rng)
    counts = xr.DataArray(
        values.astype(np.uint16), dims=("trial", "unit"), coords={"stimulus": ("trial", stimulus)}
    )
    result = nb_vs_poisson_lrt(counts, correction=None)
    assert set(result["statistic"].dims) == {"stimulus", "unit"}
    for s in range(4):
        for unit in range(2):
            x = values[stimulus == s, unit]
            expected = _oracle_lr(x) if x.var() > x.mean() else 0.0
            got = float(result["statistic"].sel(stimulus=s, unit=unit))
            assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)

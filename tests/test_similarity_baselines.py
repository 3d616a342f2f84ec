"""Baselines, readouts, noise-corrected scores, count RDMs, layer commitment and stimulus placement
of the comparison layer, against independent oracles (scipy, numpy, rsatoolbox, closed forms)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from scipy import signal

from spikelatent.analysis.similarity import (
    FactorizedOptions,
    GaborBank,
    baseline_representations,
    compare_representations,
    dissimilarity_matrix,
    gabor_energy,
    linear_predictivity,
    map_representations,
    place_stimuli,
    prepare_recording,
    r2_er,
)
from spikelatent.errors import SpikelatentError

# --------------------------------------------------------------------------- Gabor bank


def _gabor(frequency: float, theta: float, phase: float, bandwidth: float) -> np.ndarray:
    """The documented kernel, written out: Gaussian envelope x carrier, zero-mean, unit norm."""
    sigma = bandwidth / frequency
    half = int(np.ceil(3 * sigma))
    kernel = np.empty((2 * half + 1, 2 * half + 1))
    for row in range(2 * half + 1):
        for col in range(2 * half + 1):
            y, x = row - half, col - half
            along = x * np.cos(theta) + y * np.sin(theta)
            envelope = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
            kernel[row, col] = envelope * np.cos(2 * np.pi * frequency * along + phase)
    kernel -= kernel.mean()
    return kernel / np.sqrt((kernel**2).sum())


def test_gabor_bank_responses_equal_direct_scipy_correlation():
    rng = np.random.default_rng(0)
    images = rng.random((3, 3, 20, 24))  # RGB, not square
    bank = GaborBank(frequencies=(0.3, 0.1), orientations=4, bandwidth=0.5, grid=5)
    out = gabor_energy(images, bank)
    assert out.shape == (3, 2 * 4 * 5, 5, 5)
    luma = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    rows = np.round((np.arange(5) + 0.5) * 20 / 5 - 0.5).astype(int)
    cols = np.round((np.arange(5) + 0.5) * 24 / 5 - 0.5).astype(int)
    channel = 0
    for frequency in (0.3, 0.1):
        for k in range(4):
            theta = k * np.pi / 4
            even_k, odd_k = (_gabor(frequency, theta, p, 0.5) for p in (0.0, np.pi / 2))
            for n in range(3):
                grey = luma[n] - luma[n].mean()
                even = signal.correlate2d(grey, even_k, mode="same")[np.ix_(rows, cols)]
                odd = signal.correlate2d(grey, odd_k, mode="same")[np.ix_(rows, cols)]
                expected = [
                    np.maximum(even, 0),
                    np.maximum(odd, 0),
                    np.maximum(-even, 0),
                    np.maximum(-odd, 0),
                    even**2 + odd**2,
                ]
                for j, value in enumerate(expected):
                    np.testing.assert_allclose(out[n, channel + j], value, atol=2e-5, rtol=1e-4)
            channel += 5
    labels = [c for _, _, c in bank.channels()[:5]]
    assert labels == ["simple_0", "simple_90", "simple_180", "simple_270", "complex"]


def test_baselines_hold_the_pixels_and_user_features_row_by_stimulus():
    rng = np.random.default_rng(1)
    images = rng.random((6, 1, 8, 8))
    ids = np.arange(10, 16)
    user = rng.normal(size=(6, 5))
    out = baseline_representations(images, ids, features={"mine": user})
    assert list(out) == ["pixels", "gabor-energy", "mine"]
    np.testing.assert_array_equal(out["pixels"].values, images)
    np.testing.assert_array_equal(out["mine"].sel(stimulus=12).values, user[2])
    with pytest.raises(SpikelatentError, match="one row per stimulus"):
        baseline_representations(images, ids, which=(), features={"bad": user[:4]})


# --------------------------------------------------------------------------- scores


def test_r2_er_is_unbiased_for_the_squared_correlation_with_the_true_tuning():
    """Known tuning mu and a fixed imperfect prediction x: r2_ER averages to corr(x, mu)^2 (the
    closed form on these stimuli) within 3 standard errors under trial noise, while the plain r^2
    with the noisy trial means is far lower. (200 stimuli: the estimator is a ratio of unbiased
    terms, whose O(1/stimuli) ratio bias is below the standard error here; ~0.005 at 40.)"""
    rng = np.random.default_rng(2)
    n_stim, n_trial, n_units = 200, 4, 4000
    mu = rng.normal(size=n_stim)
    x = mu + 0.8 * rng.normal(size=n_stim)
    truth = np.corrcoef(x, mu)[0, 1] ** 2
    # Heteroscedastic (Poisson-like) noise: its variance grows with the tuning.
    sd = 0.6 + 0.4 * np.abs(mu)
    trials = mu[None, :, None] + sd[None, :, None] * rng.normal(size=(n_trial, n_stim, n_units))
    estimates = r2_er(np.repeat(x[:, None], n_units, axis=1), trials)
    means = trials.mean(axis=0)
    xc, mc = x - x.mean(), means - means.mean(axis=0)
    naive = (xc @ mc) ** 2 / ((xc @ xc) * (mc * mc).sum(axis=0))
    standard_error = estimates.std(ddof=1) / np.sqrt(n_units)
    assert abs(estimates.mean() - truth) < 3 * standard_error
    assert naive.mean() < truth - 10 * standard_error  # the bias r2_ER removes


def test_r2_er_equals_pospisil_bair_with_equal_trials_and_one_noise_variance():
    rng = np.random.default_rng(3)
    trials = rng.normal(size=(5, 30, 2)) + rng.normal(size=(1, 30, 2))
    x = rng.normal(size=(30, 2))
    m, n = 30, 5
    for u in range(2):
        y = trials[:, :, u].mean(axis=0)
        sigma2 = trials[:, :, u].var(axis=0, ddof=1).mean()  # pooled over stimuli
        xc, yc = x[:, u] - x[:, u].mean(), y - y.mean()
        numerator = (xc @ yc) ** 2 - sigma2 / n * (xc @ xc)
        denominator = (xc @ xc) * (yc @ yc - (m - 1) * sigma2 / n)
        # Per-stimulus noise variances average to the pooled one only in expectation; with the
        # pooled variance written into every stimulus the two estimators agree exactly.
        pooled = trials[:, :, u] - trials[:, :, u].mean(axis=0)
        pooled = pooled / pooled.std(axis=0, ddof=1) * np.sqrt(sigma2) + y
        value = r2_er(x[:, u : u + 1], pooled[:, :, None])[0]
        estimate = numerator / denominator
        # Pospisil & Bair's estimator; an anti-correlated prediction made non-positive.
        expected = estimate if xc @ yc > 0 else -abs(estimate)
        assert value == pytest.approx(expected, rel=1e-10)


def test_an_anti_correlated_prediction_scores_below_zero():
    """P&B's estimator squares the covariance, so -x would score as x; r2_ER does not."""
    rng = np.random.default_rng(4)
    mu = rng.normal(size=40)
    trials = mu[None, :, None] + 0.5 * rng.normal(size=(6, 40, 1))
    x = (mu + 0.3 * rng.normal(size=40))[:, None]
    good = r2_er(x, trials)[0]
    assert good > 0.5
    assert r2_er(-x, trials)[0] == pytest.approx(-good, rel=1e-12)


def _planted_maps(
    seed: int = 4, n_stim: int = 300, n_units: int = 12, noise: float = 2.0, n_trial: int = 16
):
    """Maps (stimulus, channel, y, x) and counts-like trials of a factorised linear map."""
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(n_stim, 5, 7, 7))
    yy, xx = np.mgrid[0:7, 0:7]
    masks = np.stack(
        [
            np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0)
            for cy, cx in rng.integers(1, 6, (n_units, 2))
        ]
    )
    weights = rng.normal(size=(n_units, 5))
    signal_ = np.einsum("nchw,uhw,uc->nu", maps, masks, weights)
    signal_ /= signal_.std(axis=0)
    trials = signal_ + noise * rng.normal(size=(n_trial, n_stim, n_units))
    return maps, trials


@pytest.mark.parametrize("readout", ["pca-ridge", "factorized"])
def test_readouts_recover_a_planted_map_and_score_zero_on_shuffled_stimuli(readout):
    maps, trials = _planted_maps(n_stim=400, n_units=8)
    if readout == "pca-ridge":
        # A low-dimensional representation behind 245 features: 60 components hold it.
        rng = np.random.default_rng(5)
        latent = rng.normal(size=(300, 12))
        maps = (latent @ rng.normal(size=(12, 245))).reshape(300, 5, 7, 7)
        trials = latent @ rng.normal(size=(12, 8)) / np.sqrt(12)
        trials = trials / trials.std(axis=0) + 2.0 * rng.normal(size=(16, 300, 8))
    # Fewer, larger Adam steps than the default (300 x 0.05) keep the test to seconds; the fit
    # is the same to ~0.01 in the scores.
    options = FactorizedOptions(iterations=100, learning_rate=0.15)
    settings = dict(readout=readout, n_components=60, factorized=options, n_boot=0)
    result = linear_predictivity(maps, trials, 3, **settings)
    assert result.attrs["readout"] == readout
    assert float(result["median_r2"]) < 0.85  # the trial noise caps the raw score
    assert float(result["median_r2_corrected"]) == pytest.approx(1.0, abs=0.1)
    assert float(result["median_r2_er"]) == pytest.approx(1.0, abs=0.1)
    shuffled = np.random.default_rng(6).permutation(maps)
    null = linear_predictivity(shuffled, trials, 3, **settings)
    assert abs(float(null["median_r2_er"])) < 0.1
    assert float(null["median_r2_corrected"]) < 0.1


def test_ceiled_score_and_values_above_one_are_kept_and_counted():
    rng = np.random.default_rng(7)
    features = rng.normal(size=(80, 4))
    # Very noisy units: noise-corrected scores scatter around 1, some above.
    trials = features @ rng.normal(size=(4, 30)) + 4.0 * rng.normal(size=(4, 80, 30))
    result = linear_predictivity(features, trials, n_boot=50)
    reliability = result["reliability"].values
    r = result["r"].values
    keep = reliability > 0
    assert float(result["ceiled_raw"]) == pytest.approx(np.median(r[keep]), abs=1e-12)
    assert float(result["ceiled_ceiling"]) == pytest.approx(np.median(reliability[keep]), abs=1e-12)
    assert float(result["ceiled_score"]) == pytest.approx(
        (np.median(r[keep]) / np.median(reliability[keep])) ** 2, abs=1e-12
    )
    from spikelatent.analysis.similarity.scores import ceiled_score

    # Anti-correlated predictions: Brain-Score's square would be positive; ours keeps the sign.
    flipped = ceiled_score(-r, reliability, n_boot=50)
    assert flipped["ceiled"] == pytest.approx(-float(result["ceiled_score"]), abs=1e-12)
    assert flipped["ci_high"] < 0
    corrected = result["r2_corrected"].values
    assert int(result["n_above_1_r2_corrected"]) == int(np.sum(corrected > 1)) > 0
    assert np.nanmax(corrected) > 1  # kept as estimated, not clipped


# --------------------------------------------------------------------------- count RDMs


def _counts(seed: int = 8):
    rng = np.random.default_rng(seed)
    rates = rng.gamma(2.0, 2.0, size=(12, 7))
    return rng.poisson(rates, size=(5, 12, 7)).astype(float)


def test_poisson_rdm_equals_rsatoolbox():
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    counts = _counts()
    n_trial, n_stim, n_unit = counts.shape
    dataset = Dataset(
        counts.reshape(-1, n_unit), obs_descriptors={"image": np.tile(np.arange(n_stim), n_trial)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = calc_rdm(dataset, method="poisson", descriptor="image").get_matrices()[0]
    np.testing.assert_allclose(dissimilarity_matrix(counts, "poisson").values, expected, atol=1e-12)


def test_poisson_cv_rdm_equals_rsatoolbox_folds_averaged():
    """Each leave-one-trial-out fold through rsatoolbox on all the trials (the held-out trial as
    its last fold), averaged; and the documented formula of one fold written out."""
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    counts = _counts()
    n_trial, n_stim, n_unit = counts.shape
    ours = dissimilarity_matrix(counts, "poisson_cv").values
    folds = []
    for k in range(n_trial):
        held_out = np.repeat((np.arange(n_trial) == k).astype(int), n_stim)
        dataset = Dataset(
            counts.reshape(-1, n_unit),
            obs_descriptors={"image": np.tile(np.arange(n_stim), n_trial), "held": held_out},
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rdm = calc_rdm(dataset, method="poisson_cv", descriptor="image", cv_descriptor="held")
        folds.append(rdm.get_matrices()[0])
        # One fold by hand: sum_u (a_i - a_j)(log b_i - log b_j) / units, a = training mean and
        # b = held-out trial, both shrunk towards 1 with weight 0.1.
        a = (np.delete(counts, k, axis=0).mean(axis=0) + 0.1) / 1.1
        b = (counts[k] + 0.1) / 1.1
        by_hand = ((a[:, None] - a[None]) * (np.log(b)[:, None] - np.log(b)[None])).sum(-1)
        np.testing.assert_allclose(folds[-1], by_hand / n_unit, atol=1e-10)
    np.testing.assert_allclose(ours, np.mean(folds, axis=0), atol=1e-12)
    with pytest.raises(SpikelatentError, match="non-negative"):
        dissimilarity_matrix(counts - 3.0, "poisson")


# --------------------------------------------------------------------------- mapping


def test_mapping_never_chooses_on_the_held_out_fold():
    """'exact on fold 2' equals the tuning's features on fold 2's stimuli and is a very noisy copy
    elsewhere; 'everywhere' is a moderately noisy copy on all stimuli. When fold 2 is held out,
    its training stimuli show 'exact on fold 2' as the noisier one, so 'everywhere' must be chosen
    there; a mapping that looked at the held-out fold would take 'exact on fold 2' (held-out r
    0.98 against 0.90)."""
    rng = np.random.default_rng(9)
    n_stim, n_feat, n_units = 200, 6, 15
    labels = np.arange(n_stim) % 5
    tuning_features = rng.normal(size=(n_stim, n_feat))
    tuning = tuning_features @ rng.normal(size=(n_feat, n_units))
    trials = tuning + 0.3 * rng.normal(size=(6, n_stim, n_units))
    everywhere = tuning_features + 0.5 * rng.normal(size=(n_stim, n_feat))
    exact = tuning_features + 1.0 * rng.normal(size=(n_stim, n_feat))
    exact[labels == 2] = tuning_features[labels == 2]
    representations = {"exact on fold 2": exact, "everywhere": everywhere}
    result = map_representations(representations, trials, folds=labels, n_boot=0)
    assert str(result["chosen"].sel(fold=2).values) == "everywhere"
    assert result.attrs["committed"] == "everywhere"
    # On fold 2's held-out stimuli the planted representation is the better one (what a mapping
    # choosing on held-out data would see), by Pearson r of the same out-of-fold predictions.
    held_out = {
        name: linear_predictivity(values, trials, folds=labels, n_boot=0)
        for name, values in representations.items()
    }
    fold2 = labels == 2
    mean = trials.mean(axis=0)[fold2]

    def held_out_r(name: str) -> float:
        p = held_out[name]["prediction"].values[fold2]
        p, y = p - p.mean(axis=0), mean - mean.mean(axis=0)
        return float(np.median((p * y).sum(0) / np.sqrt((p * p).sum(0) * (y * y).sum(0))))

    assert held_out_r("exact on fold 2") > held_out_r("everywhere") + 0.05
    # Held-out scores are those of the chosen representations' out-of-fold predictions.
    if set(result["chosen"].values) == {"everywhere"}:
        alone = held_out["everywhere"]
        assert float(result["median_r"]) == pytest.approx(float(alone["median_r"]), abs=1e-12)


def test_compare_representations_ranks_baselines_and_a_shuffled_null():
    rng = np.random.default_rng(10)
    n_stim = 90
    blocks = rng.random((n_stim, 16))  # 4 x 4 blocks of 3 x 3 pixels: 16 pixel dimensions
    images = np.kron(blocks.reshape(n_stim, 1, 4, 4), np.ones((3, 3)))
    ids = np.arange(n_stim)
    reps = baseline_representations(images, ids)
    tuning = np.exp(blocks @ rng.normal(size=(16, 10)) / 2 + 0.5)
    recorded = xr.DataArray(
        rng.poisson(tuning, size=(6, n_stim, 10)),
        dims=("trial", "stimulus", "unit"),
        coords={"stimulus": ids},
    )
    table = compare_representations(
        reps, prepare_recording(recorded), kinds={n: "baseline" for n in reps}, n_boot=20
    )
    assert list(table["representation"].values) == ["pixels", "gabor-energy", "shuffled"]
    assert list(table["kind"].values) == ["baseline", "baseline", "null"]
    pixels_row, null_row = table.sel(representation="pixels"), table.sel(representation="shuffled")
    assert float(pixels_row["predictivity_median_r_corrected"]) > 0.5
    assert abs(float(null_row["predictivity_median_r_corrected"])) < 0.2
    assert abs(float(null_row["rsa_similarity"])) < 0.1
    assert float(pixels_row["rsa_similarity"]) > float(pixels_row["rsa_null_high"])
    # The mapping reuses the table's predictions: the same held-out numbers as refitting.
    reused = map_representations(dict(reps), recorded, scored=table, n_boot=0)
    refit = map_representations(dict(reps), recorded, n_boot=0)
    assert list(reused["chosen"].values) == list(refit["chosen"].values)
    assert float(reused["median_r"]) == pytest.approx(float(refit["median_r"]), abs=1e-12)


def test_a_degenerate_representation_loses_its_rsa_not_the_table():
    """A representation with a constant stimulus row has no correlation-distance RDM: its RSA is
    NaN with the reason recorded, its predictivity and every other row are scored as usual."""
    rng = np.random.default_rng(11)
    n_stim = 40
    tuning = rng.random((n_stim, 6))
    recorded = xr.DataArray(
        rng.poisson(5 * tuning, size=(5, n_stim, 6)),
        dims=("trial", "stimulus", "unit"),
        coords={"stimulus": np.arange(n_stim)},
    )
    degenerate = rng.random((n_stim, 6))
    degenerate[3] = 0.5  # one stimulus row constant across features
    reps = {"good": tuning + 0.1 * rng.random((n_stim, 6)), "flat-row": degenerate}
    with pytest.raises(SpikelatentError):  # the whole-population comparison refuses it
        dissimilarity_matrix(xr.DataArray(degenerate, dims=("stimulus", "unit")), "correlation")
    table = compare_representations(reps, prepare_recording(recorded), n_boot=10, shuffled_null=None)
    assert np.isnan(float(table["rsa_similarity"].sel(representation="flat-row")))
    assert np.isfinite(float(table["rsa_similarity"].sel(representation="good")))
    assert np.isfinite(float(table["predictivity_median_r"].sel(representation="flat-row")))
    assert table.attrs["rsa_skipped"].startswith("flat-row: ")


def test_paired_median_difference_of_a_shifted_copy_is_exact_and_separated():
    from spikelatent.analysis.similarity import paired_median_difference

    rng = np.random.default_rng(12)
    b = rng.normal(size=30)
    b[4] = np.nan  # left out of both
    shifted = paired_median_difference(b + 0.25, b, n_boot=200)
    # Every paired resample shifts every unit by 0.25: so does each median (up to rounding).
    assert shifted["difference"] == pytest.approx(0.25, abs=1e-12)
    assert shifted["ci_low"] == pytest.approx(0.25, abs=1e-12)
    assert shifted["separated"] and shifted["n_units"] == 29
    same = paired_median_difference(b, b.copy(), n_boot=200)
    assert same["difference"] == 0 and not same["separated"]
    noise = paired_median_difference(rng.normal(size=200), rng.normal(size=200), n_boot=500)
    assert noise["ci_low"] < 0 < noise["ci_high"]


# --------------------------------------------------------------------------- placement


def test_stimulus_placement_pads_with_grey_or_crops_the_centre():
    images = np.arange(2 * 1 * 4 * 6, dtype=float).reshape(2, 1, 4, 6)
    padded, info = place_stimuli(images, model_degrees=8, stimulus_degrees=4, background=0.5)
    assert padded.shape == (2, 1, 8, 12) and info["ratio"] == 2.0
    expected = np.full((2, 1, 8, 12), 0.5)
    expected[:, :, 2:6, 3:9] = images
    np.testing.assert_array_equal(padded, expected)
    cropped, info = place_stimuli(images, model_degrees=2, stimulus_degrees=4)
    assert "cropped" in info["rule"]
    np.testing.assert_array_equal(cropped, images[:, :, 1:3, 2:5])
    same, _ = place_stimuli(images, 3, 3)
    np.testing.assert_array_equal(same, images)
    with pytest.raises(SpikelatentError, match="> 0"):
        place_stimuli(images, 0, 3)

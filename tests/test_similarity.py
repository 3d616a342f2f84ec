"""Model populations vs recordings (spikelatent.analysis.similarity) against independent oracles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from scipy import stats
from scipy.spatial.distance import pdist, squareform

from spikelatent.analysis import (
    compare_populations,
    dissimilarity_matrix,
    linear_cka,
    linear_predictivity,
    rsa,
)
from spikelatent.errors import SpikelatentError


def _upper(matrix: np.ndarray) -> np.ndarray:
    return matrix[np.triu_indices_from(matrix, k=1)]


def _tau_a(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-a written out: (concordant - discordant) / (n (n - 1) / 2), ties count 0."""
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    n = len(x)
    return float(np.sum(np.triu(sx * sy, k=1)) / (n * (n - 1) / 2))


@pytest.fixture
def tuned():
    """A (stimulus, unit) tuning and a noisy second population of the same stimuli."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(25, 8))
    y = x @ rng.normal(size=(8, 30)) + rng.normal(size=(25, 30))
    return x, y


def test_rdms_equal_numpy_and_scipy(tuned):
    x, _ = tuned
    rdm = dissimilarity_matrix(x)
    assert rdm.dims == ("stimulus", "stimulus_")
    np.testing.assert_allclose(rdm.values, 1 - np.corrcoef(x), atol=1e-12)
    euclidean = dissimilarity_matrix(x, metric="euclidean")
    np.testing.assert_allclose(
        euclidean.values, squareform(pdist(x, "sqeuclidean")) / x.shape[1], atol=1e-12
    )


@pytest.mark.parametrize("metric", ["correlation", "euclidean"])
def test_rdms_equal_rsatoolbox(tuned, metric):
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    _, y = tuned
    expected = calc_rdm(Dataset(y), method=metric).get_matrices()[0]
    np.testing.assert_allclose(dissimilarity_matrix(y, metric).values, expected, atol=1e-12)


@pytest.mark.parametrize("compare", ["spearman", "pearson", "kendall_tau_a"])
def test_nili_bounds_equal_rsatoolbox(compare):
    import warnings

    from rsatoolbox.inference import boot_noise_ceiling
    from rsatoolbox.rdm import RDMs

    from spikelatent.analysis.similarity import COMPARISONS, _nili_bounds

    rng = np.random.default_rng(12)
    truth = rng.gamma(2.0, size=45)
    vectors = truth + rng.normal(scale=0.8, size=(4, 45))
    rdms = RDMs(vectors, rdm_descriptors={"index": np.arange(4)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rsatoolbox warns that tau ceilings pool ranks
        expected = boot_noise_ceiling(rdms, method=COMPARISONS[compare], rdm_descriptor="index")
    np.testing.assert_allclose(_nili_bounds(vectors, compare), expected, atol=1e-12)


def test_crossnobis_equals_leave_one_trial_out_formula():
    rng = np.random.default_rng(1)
    trials = rng.normal(size=(4, 6, 5)) + rng.normal(size=(1, 6, 5))
    rdm = dissimilarity_matrix(trials, metric="crossnobis").values
    n_trial, n_stim, n_unit = trials.shape
    expected = np.zeros((n_stim, n_stim))
    for k in range(n_trial):
        train = np.delete(trials, k, axis=0).mean(axis=0)
        test = trials[k]
        for i in range(n_stim):
            for j in range(n_stim):
                expected[i, j] += (train[i] - train[j]) @ (test[i] - test[j]) / n_unit
    expected /= n_trial
    np.testing.assert_allclose(rdm, expected, atol=1e-10)


def test_rsa_equals_scipy_on_upper_triangles(tuned):
    x, y = tuned
    rx, ry = _upper(1 - np.corrcoef(x)), _upper(1 - np.corrcoef(y))
    spearman = float(rsa(x, y, compare="spearman", n_boot=0)["similarity"])
    assert spearman == pytest.approx(stats.spearmanr(rx, ry).statistic, abs=1e-12)
    pearson = float(rsa(x, y, compare="pearson", n_boot=0)["similarity"])
    assert pearson == pytest.approx(stats.pearsonr(rx, ry).statistic, abs=1e-12)
    tau = rsa(x, y, compare="kendall_tau_a", n_boot=0)
    assert float(tau["similarity"]) == pytest.approx(_tau_a(rx, ry), abs=1e-12)


def test_tau_a_differs_from_tau_b_under_ties():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 3, size=(12, 4)).astype(float) + np.arange(12)[:, None] % 2
    y = x + rng.normal(scale=0.5, size=x.shape)
    rx = _upper(squareform(pdist(x, "sqeuclidean")) / 4)
    ry = _upper(squareform(pdist(y, "sqeuclidean")) / 4)
    tau = float(rsa(x, y, metric="euclidean", compare="kendall_tau_a", n_boot=0)["similarity"])
    assert tau == pytest.approx(_tau_a(rx, ry), abs=1e-12)
    assert tau != pytest.approx(stats.kendalltau(rx, ry).statistic, abs=1e-6)


@pytest.mark.parametrize("compare", ["spearman", "pearson", "kendall_tau_a"])
def test_bootstrap_equals_explicit_resampling(tuned, compare):
    """Each bootstrap value equals the comparison of the RDMs of the resampled stimuli, with the
    pairs of a stimulus and its own copy left out (entries taken from the full RDMs, so that copies
    tie exactly)."""
    x, y = tuned
    n, n_boot, seed = x.shape[0], 5, 3
    result = rsa(x, y, compare=compare, n_boot=n_boot, seed=seed)
    rng = np.random.default_rng(seed)
    oracle = {"spearman": stats.spearmanr, "pearson": stats.pearsonr}
    # Symmetrised so that (i, j) and (j, i) tie exactly, as copies do in the resampled RDM.
    full_x, full_y = (1 - np.corrcoef(m) for m in (x, y))
    full_x, full_y = (full_x + full_x.T) / 2, (full_y + full_y.T) / 2
    rows, cols = np.triu_indices(n, k=1)
    for b in range(n_boot):
        index = rng.integers(0, n, n)
        distinct = index[rows] != index[cols]
        i, j = index[rows][distinct], index[cols][distinct]
        rx, ry = full_x[i, j], full_y[i, j]
        if compare == "kendall_tau_a":
            expected = _tau_a(rx, ry)
        else:
            expected = oracle[compare](rx, ry).statistic
        assert float(result["bootstrap"][b]) == pytest.approx(expected, abs=1e-9)
    assert float(result["ci_low"]) <= float(result["similarity"]) <= float(result["ci_high"])


def _ceiling_deviations(seeds) -> np.ndarray:
    """Per seed: (lower bound, upper bound, similarity_split) minus their closed forms.

    Gaussian trial noise of known variance on a known tuning: the split-half RDMs' squared
    Euclidean distances have signal variance D across pairs and noise variance V, so the Nili
    bounds are D / (D + V) (one half vs the other) and sqrt((D + V/2) / (D + V)) (a half vs the
    mean of both), and the true tuning scores sqrt(D / (D + V)) against a half.
    """
    n_stim, n_unit, n_trial, sigma = 150, 50, 8, 1.5
    deviations = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        tuning = rng.normal(size=(n_stim, n_unit))
        trials = tuning + sigma * rng.normal(size=(n_trial, n_stim, n_unit))
        squared = pdist(tuning, "sqeuclidean")
        signal = np.var(squared / n_unit)
        s2 = sigma**2 / (n_trial / 2)  # noise variance of a half's trial mean
        noise = np.mean(8 * s2 * squared + 8 * n_unit * s2**2) / n_unit**2
        result = rsa(
            tuning,
            trials,
            metric="euclidean",
            compare="pearson",
            n_boot=0,
            n_permutations=0,
            split_repeats=20,
        )
        deviations.append(
            [
                float(result["noise_ceiling_low"]) - signal / (signal + noise),
                float(result["noise_ceiling_high"])
                - np.sqrt((signal + noise / 2) / (signal + noise)),
                float(result["similarity_split"]) - np.sqrt(signal / (signal + noise)),
            ]
        )
    return np.asarray(deviations)


# Standard deviations of one seed's deviation from the closed form (lower, upper, split), measured
# over seeds 1-100: the finite stimulus set, not the estimator, makes the scatter.
_CEILING_SCATTER = np.array([0.0245, 0.0073, 0.0157])


def test_noise_ceiling_matches_closed_form(seed_base: int = 0):
    """The mean deviation over 16 seeds is within 3 standard deviations of such a mean.

    ``seed_base`` picks another set of 16 seeds (a loop over 20 sets is run outside CI)."""
    n_seeds = 16
    seeds = range(16 * seed_base + 1, 16 * seed_base + 1 + n_seeds)
    mean = _ceiling_deviations(seeds).mean(axis=0)
    tolerance = 3 * _CEILING_SCATTER / np.sqrt(n_seeds)  # 0.018, 0.0055, 0.012
    assert np.all(np.abs(mean) < tolerance), (mean, tolerance)


def test_leave_one_trial_out_ceiling_brackets_the_truth():
    rng = np.random.default_rng(4)
    tuning = rng.gamma(2.0, 2.0, size=(40, 30))
    trials = rng.poisson(tuning, size=(6, 40, 30))
    result = rsa(tuning, trials, n_boot=0, n_splits=None)
    assert "leave one trial out" in result.attrs["noise_ceiling"]
    low, high = float(result["noise_ceiling_low"]), float(result["noise_ceiling_high"])
    assert low < float(result["similarity_split"]) < high


def _hsic(k: np.ndarray, m: np.ndarray) -> float:
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ m @ h)) / (n - 1) ** 2


def test_linear_cka_equals_hsic_formula(tuned):
    x, y = tuned
    k, m = x @ x.T, y @ y.T
    expected = _hsic(k, m) / np.sqrt(_hsic(k, k) * _hsic(m, m))
    assert float(linear_cka(x, y)) == pytest.approx(expected, abs=1e-12)


def test_linear_cka_equals_hsic_formula_for_wide_features():
    """More features than stimuli (pixels, filter banks) go through the Gram matrices."""
    rng = np.random.default_rng(17)
    x = rng.normal(size=(30, 80))
    y = x[:, :5] + rng.normal(size=(30, 5))
    k, m = x @ x.T, y @ y.T
    expected = _hsic(k, m) / np.sqrt(_hsic(k, k) * _hsic(m, m))
    assert float(linear_cka(x, y)) == pytest.approx(expected, abs=1e-12)


def test_linear_cka_invariant_to_rotation_and_scale():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 20))
    rotation, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    copy = 3.7 * x @ rotation
    assert float(linear_cka(x, copy)) == pytest.approx(1.0, abs=1e-12)
    assert float(linear_cka(x, copy, debiased=True)) == pytest.approx(1.0, abs=1e-12)


def test_linear_cka_near_zero_for_independent_noise():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(2000, 10)), rng.normal(size=(2000, 10))
    assert float(linear_cka(x, y)) < 0.02
    assert abs(float(linear_cka(x, y, debiased=True))) < 0.005


def _brute_force_unbiased_hsic(k: np.ndarray, m: np.ndarray) -> float:
    """Song et al. (2012) unbiased HSIC as its defining U-statistic: the mean over all ordered
    quadruples of distinct indices (i, j, q, r) of k_ij m_ij + k_ij m_qr - 2 k_ij m_iq."""
    from itertools import permutations

    quadruples = np.array(list(permutations(range(k.shape[0]), 4)))
    i, j, q, r = quadruples.T
    return float(np.mean(k[i, j] * m[i, j] + k[i, j] * m[q, r] - 2 * k[i, j] * m[i, q]))


def test_debiased_cka_equals_brute_force_hsic_over_quadruples():
    rng = np.random.default_rng(14)
    x = rng.normal(size=(9, 3))
    y = x @ rng.normal(size=(3, 5)) + 0.8 * rng.normal(size=(9, 5)) + 2.0  # uncentred on purpose
    k, m = x @ x.T, y @ y.T
    expected = _brute_force_unbiased_hsic(k, m) / np.sqrt(
        _brute_force_unbiased_hsic(k, k) * _brute_force_unbiased_hsic(m, m)
    )
    assert float(linear_cka(x, y, debiased=True)) == pytest.approx(expected, abs=1e-12)
    # The biased estimator differs by far more than that at n = 9.
    assert abs(float(linear_cka(x, y)) - expected) > 0.01


def _planted(seed: int = 7, n_stim: int = 300, n_trial: int = 10):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n_stim, 20))
    signal = features @ rng.normal(size=(20, 40)) / np.sqrt(20)
    trials = signal + rng.normal(scale=1.5, size=(n_trial, n_stim, 40))
    return features, trials


def test_linear_predictivity_recovers_a_planted_map():
    features, trials = _planted()
    result = linear_predictivity(features, trials, n_boot=200)
    # Raw scores are capped by the trial noise; corrected ones reach ~1 for the true map.
    assert float(result["median_r2"]) < 0.9
    assert float(result["median_r2_corrected"]) == pytest.approx(1.0, abs=0.08)
    assert float(result["median_r_corrected"]) == pytest.approx(1.0, abs=0.04)
    assert (
        float(result["median_r2_corrected_ci_low"])
        <= float(result["median_r2_corrected"])
        <= float(result["median_r2_corrected_ci_high"])
    )


def test_linear_predictivity_zero_for_shuffled_stimuli():
    features, trials = _planted()
    shuffled = np.random.default_rng(8).permutation(features)
    result = linear_predictivity(shuffled, trials, n_boot=0)
    assert abs(float(result["median_r"])) < 0.1
    assert abs(float(result["median_r2_corrected"])) < 0.1


def test_reliability_is_spearman_brown_of_split_halves():
    """With signal variance 1 across stimuli and noise variance s^2 per trial, the reliability of
    a unit's mean over n trials is 1 / (1 + s^2 / n) (the median unit's signal variance is ~1)."""
    features, trials = _planted(n_stim=2000, n_trial=10)
    result = linear_predictivity(features, trials, n_boot=0, split_repeats=4)
    expected = 1 / (1 + 1.5**2 / 10)
    assert float(result["reliability"].median()) == pytest.approx(expected, abs=0.05)


def _ranked_pair(seed: int = 15):
    """A recording, a model with its true tuning (good) and one of unrelated features (poor)."""
    rng = np.random.default_rng(seed)
    stimulus = np.arange(60)
    tuning = rng.gamma(2.0, 1.0, size=(60, 8)) @ rng.gamma(1.0, 0.5, size=(8, 25))
    recorded = xr.DataArray(
        rng.poisson(tuning, size=(6, 60, 25)),
        dims=("trial", "stimulus", "unit"),
        coords={"stimulus": stimulus},
    )
    good = xr.DataArray(tuning, dims=("stimulus", "unit"), coords={"stimulus": stimulus})
    poor = xr.DataArray(
        rng.gamma(2.0, size=(60, 25)), dims=("stimulus", "unit"), coords={"stimulus": stimulus}
    )
    return recorded, good, poor


def test_ranking_states_a_resolved_order_for_clearly_different_models():
    from spikelatent.analysis import prepare_recording, rank_models

    recorded, good, poor = _ranked_pair()
    recording = prepare_recording(recorded)
    results = {
        name: compare_populations(model, recording, n_boot=100, statistics=False)
        for name, model in (("poor", poor), ("good", good))
    }
    ranking = rank_models(results, n_boot=500)
    assert ranking["order"] == {"rsa": ["good", "poor"], "predictivity": ["good", "poor"]}
    assert ranking["statements"]["rsa"].startswith("good > poor ('>': the 95 % interval")
    assert ranking["statements"]["predictivity"].startswith("good > poor")
    for pair in ranking["pairs"]:
        assert pair["separated"] and pair["ci_low"] > 0 and (pair["better"], pair["worse"]) == (
            "good",
            "poor",
        )
    # The RSA interval is the quantile interval of the paired bootstrap differences (same stimuli).
    rsa_pair = next(p for p in ranking["pairs"] if p["metric"] == "rsa")
    differences = results["good"]["rsa_bootstrap"].values - results["poor"]["rsa_bootstrap"].values
    assert rsa_pair["ci_low"] == pytest.approx(np.quantile(differences, 0.025), abs=1e-12)
    # The same model twice: nothing resolved, "≈" stated.
    same = rank_models({"a": results["good"], "b": results["good"]}, n_boot=100)
    assert same["statements"]["rsa"].startswith("a ≈ b")
    assert not any(p["separated"] for p in same["pairs"])


def test_join_on_stimulus_ids():
    rng = np.random.default_rng(9)
    model = xr.DataArray(
        rng.normal(size=(10, 4)), dims=("stimulus", "unit"), coords={"stimulus": np.arange(10)}
    )
    recorded = xr.DataArray(
        rng.normal(size=(3, 6, 5)),
        dims=("trial", "stimulus", "unit"),
        coords={"stimulus": np.arange(4, 10)[::-1]},
    )
    result = rsa(model, recorded, n_boot=0)
    assert result.attrs["n_stimuli"] == 6
    np.testing.assert_array_equal(result["stimulus"].values, np.arange(4, 10))
    expected = 1 - np.corrcoef(recorded.mean("trial").sel(stimulus=np.arange(4, 10)).values)
    np.testing.assert_allclose(result["rdm_b"].values, expected, atol=1e-12)
    disjoint = recorded.assign_coords(stimulus=np.arange(100, 106))
    with pytest.raises(SpikelatentError, match="share 0 stimulus ids"):
        rsa(model, disjoint)


def test_recorded_layout_is_grouped_by_stimulus():
    rng = np.random.default_rng(10)
    counts = rng.poisson(3.0, size=(12, 5))
    recorded = xr.DataArray(
        counts, dims=("trial", "unit"), coords={"stimulus": ("trial", np.tile(np.arange(4), 3))}
    )
    rdm = dissimilarity_matrix(recorded)
    means = np.stack([counts[np.tile(np.arange(4), 3) == s].mean(axis=0) for s in range(4)])
    np.testing.assert_allclose(rdm.values, 1 - np.corrcoef(means), atol=1e-12)


def test_nan_rows_are_refused():
    x = np.ones((5, 3)) * np.arange(3)
    x[2] = np.nan
    with pytest.raises(SpikelatentError, match="NaN"):
        dissimilarity_matrix(x)


def test_compare_populations_side_by_side():
    rng = np.random.default_rng(11)
    rates = rng.gamma(2.0, 1.5, size=(60, 12))
    pop = xr.Dataset(
        {
            "rate": (("stimulus", "unit"), rates),
            "counts": (("trial", "stimulus", "unit"), rng.poisson(rates, size=(5, 60, 12))),
        },
        coords={"stimulus": np.arange(60)},
    )
    tuning = rates @ rng.gamma(1.0, 0.2, size=(12, 20))
    recorded = xr.DataArray(
        rng.negative_binomial(5, 5 / (5 + tuning), size=(8, 60, 20)),
        dims=("trial", "stimulus", "unit"),
        coords={"stimulus": np.arange(60)},
    )
    result = compare_populations(pop, recorded, n_boot=50)
    assert result.attrs["shared_stimuli"] == 60
    names = ("rsa_similarity", "rsa_noise_ceiling_low", "cka", "predictivity_median_r2_corrected")
    for name in names:
        assert np.isfinite(float(result[name])), name
    assert list(result["population"].values) == ["model", "recorded"]
    fano = result["stat_fano_factor"].sel(quantile=0.5)
    assert float(fano.sel(population="model")) == pytest.approx(1.0, abs=0.2)  # Poisson trials
    assert float(fano.sel(population="recorded")) > 1.2  # negative binomial trials
    unrelated = recorded.assign_coords(stimulus=np.arange(1000, 1060))
    alone = compare_populations(pop, unrelated, n_boot=0)
    assert alone.attrs["shared_stimuli"] == 0
    assert "rsa_similarity" not in alone and "stat_fano_factor" in alone


# --------------------------------------------------------------------------- NWB plumbing and CLI


def test_responses_by_stimulus_groups_trials_in_time_order():
    from spikelatent.nwb.stimuli import responses_by_stimulus

    counts = xr.DataArray(
        np.arange(10).reshape(5, 2),
        dims=("trial", "unit"),
        coords={
            "image_id": ("trial", ["b", "a", "b", "a", "b"]),
            "start_time": ("trial", [0.0, 1.0, 2.0, 3.0, 4.0]),
        },
    )
    responses = responses_by_stimulus(counts)
    assert responses.dims == ("trial", "stimulus", "unit")
    assert list(responses["stimulus"].values) == ["a", "b"]
    # 'a' was shown twice (rows 1, 3), 'b' three times (rows 0, 2, 4): NaN pads a's third repeat.
    np.testing.assert_array_equal(responses.sel(stimulus="b").values, [[0, 1], [4, 5], [8, 9]])
    np.testing.assert_array_equal(responses.sel(stimulus="a").values[:2], [[2, 3], [6, 7]])
    assert np.isnan(responses.sel(stimulus="a").values[2]).all()
    with pytest.raises(SpikelatentError, match="no column 'frame_id'"):
        responses_by_stimulus(counts, "frame_id")
    with pytest.raises(SpikelatentError, match="no stimulus column"):
        responses_by_stimulus(counts.drop_vars("image_id"))


def test_synthetic_recording_round_trip(tmp_path):
    """Counts read back from the NWB file sum to the spikes written, grouped per stimulus."""
    from spikelatent.nwb.stimuli import read_responses, write_synthetic_recording

    images = np.random.default_rng(0).random((6, 4, 4))
    rate = write_synthetic_recording(tmp_path / "rec.nwb", images, n_units=5, n_trials=30)
    responses = read_responses(tmp_path / "rec.nwb")
    assert responses.shape == (30, 6, 5) and responses.attrs["stimulus_column"] == "stimulus_index"
    np.testing.assert_array_equal(responses["stimulus"].values, np.arange(6))
    mean = responses.mean("trial").values
    # Means of 30 NB draws (r = 3): within 5 standard errors of the true rates.
    standard_error = np.sqrt((rate.values + rate.values**2 / 3) / 30)
    assert np.all(np.abs(mean - rate.values) < 5 * standard_error)


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.random((n, size // 4, size // 4))
    return np.kron(base, np.ones((4, 4))).astype(np.float32)  # blocky, smooth enough to resize


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> dict:
    from spikelatent.cli import main
    from spikelatent.nwb.stimuli import write_synthetic_recording

    root = tmp_path_factory.mktemp("similarity")
    run = root / "nb"
    code = main(
        [
            "fit",
            "--data",
            "digits",
            "--epochs",
            "1",
            "--limit",
            "200",
            "--latent-dim",
            "8",
            "--out",
            str(run),
        ]
    )
    assert code == 0
    images = _images(24, 28)
    np.save(root / "images.npy", images)
    write_synthetic_recording(root / "rec.nwb", images, n_units=12, n_trials=6)
    return {"root": root, "run": run, "images": images}


def test_similarity_cli_writes_json_table_and_figures(digits_run, capsys):
    import json

    from spikelatent.cli import main

    root = digits_run["root"]
    out = root / "out"
    arguments = [
        "similarity",
        str(digits_run["run"]),
        str(digits_run["run"]),
        "--responses",
        str(root / "rec.nwb"),
        "--images",
        str(root / "images.npy"),
        "--out",
        str(out),
        "--n-boot",
        "20",
        "--trials",
        "4",
        "--no-progress",
    ]
    assert main(arguments) == 0
    report = json.loads((out / "similarity.json").read_text())
    assert report["recorded"] == {
        "n_stimuli": 24,
        "n_units": 12,
        "n_trials": 6,
        "stimulus_column": "stimulus_index",
    }
    first = report["runs"]["nb"]
    assert -1 <= first["rsa"]["similarity"] <= 1
    assert first["rsa"]["noise_ceiling_low"] <= first["rsa"]["noise_ceiling_high"]
    assert first["stimulus_transform"].startswith("none")
    # The same run twice: identical scores, so no order is claimed.
    assert report["ranking"]["pairs"] and not any(
        p["separated"] for p in report["ranking"]["pairs"]
    )
    table = (out / "similarity.md").read_text()
    assert "| nb |" in table and "**" in table and "Noise ceiling" in table
    assert len(report["files"]["figures"]) == 2
    for figure in report["files"]["figures"]:
        assert Path(figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The numbers, recomputed from the saved model population and the recording.
    from spikelatent.nwb.stimuli import read_responses

    with xr.open_dataset(out / "population_nb.nc") as saved:
        pop = saved.load()
    recorded = read_responses(root / "rec.nwb")
    assert list(pop["stimulus"].values) == list(recorded["stimulus"].values)
    rate, mean = pop["rate"].values.astype(np.float64), recorded.mean("trial").values
    rdm_model, rdm_recorded = _upper(1 - np.corrcoef(rate)), _upper(1 - np.corrcoef(mean))
    assert first["rsa"]["similarity"] == pytest.approx(
        stats.spearmanr(rdm_model, rdm_recorded).statistic, abs=1e-9
    )
    k, m = rate @ rate.T, mean @ mean.T
    assert first["cka"] == pytest.approx(_hsic(k, m) / np.sqrt(_hsic(k, k) * _hsic(m, m)), abs=1e-9)
    again = rsa(pop, recorded, n_boot=20, seed=0)
    for key in ("ci_low", "ci_high", "noise_ceiling_low", "noise_ceiling_high", "similarity_split"):
        assert first["rsa"][key] == pytest.approx(float(again[key]), abs=1e-12), key
    predictivity = linear_predictivity(pop, recorded, n_boot=20, seed=0)
    for key in ("median_r", "median_r2_corrected", "median_r2_corrected_ci_low"):
        assert first["predictivity"][key] == pytest.approx(float(predictivity[key]), abs=1e-12)
    # The pixel baseline: the images themselves (already the model's size), RDM by numpy.
    images = digits_run["images"].reshape(24, -1).astype(np.float64)
    pixels = report["representations"]["pixels"]
    assert pixels["kind"] == "baseline" and report["representations"]["shuffled"]["kind"] == "null"
    assert pixels["rsa"]["similarity"] == pytest.approx(
        stats.spearmanr(_upper(1 - np.corrcoef(images)), rdm_recorded).statistic, abs=1e-9
    )
    assert report["representations"]["nb/latent"]["rsa"]["similarity"] == first["rsa"]["similarity"]
    stages = ["nb/encoder.conv1", "nb/encoder.conv2", "nb/encoder.output"]
    assert [key for key in report["representations"] if key.startswith("nb/")] == [
        *stages, "nb/latent", "nb/counts (trial mean)"]
    assert report["runs"]["nb"]["mapping"]["committed"] in (
        *stages, "nb/latent", "nb/counts (trial mean)")
    assert len(report["runs"]["nb"]["mapping"]["chosen_per_fold"]) == 5
    assert "## Representations, baselines and the shuffled null" in table
    assert Path(report["files"]["summary_figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_similarity_cli_baseline_features_placement_and_readout_options(digits_run, tmp_path):
    import json

    from spikelatent.cli import main

    root = digits_run["root"]
    features = np.random.default_rng(0).normal(size=(24, 5))
    np.save(tmp_path / "mine.npy", features)
    out = tmp_path / "options"
    arguments = ["similarity", str(digits_run["run"]), "--responses", str(root / "rec.nwb")]
    arguments += ["--images", str(root / "images.npy"), "--out", str(out), "--n-boot", "0"]
    arguments += ["--trials", "3", "--no-progress", "--baselines", "none"]
    arguments += ["--features", f"mine={tmp_path / 'mine.npy'}", "--readout", "pca-ridge"]
    arguments += ["--n-components", "4", "--visual-degrees", "8", "--stimulus-degrees", "4"]
    assert main(arguments) == 0
    report = json.loads((out / "similarity.json").read_text())
    assert report["readout"] == "pca-ridge"
    assert report["stimulus_placement"]["ratio"] == 2.0
    assert "grey padding" in report["stimulus_placement"]["rule"]
    # 28 x 28 images centred on a 56 x 56 grey canvas, then resized to the model's 28 x 28.
    assert "resized" in report["runs"]["nb"]["stimulus_transform"]
    assert list(report["representations"]) == [
        "nb/encoder.conv1",
        "nb/encoder.conv2",
        "nb/encoder.output",
        "nb/latent",
        "nb/counts (trial mean)",
        "mine",
        "shuffled",
    ]
    assert report["shuffled_null_of"] == "nb/latent"
    # User features: their RSA is the numpy RDM of the rows against the recording's.
    from spikelatent.nwb.stimuli import read_responses

    recorded = read_responses(root / "rec.nwb").mean("trial").values
    expected = stats.spearmanr(
        _upper(1 - np.corrcoef(features)), _upper(1 - np.corrcoef(recorded))
    ).statistic
    assert report["representations"]["mine"]["rsa"]["similarity"] == pytest.approx(
        expected, abs=1e-9
    )


def test_similarity_cli_refuses_features_with_the_wrong_rows(digits_run, capsys, tmp_path):
    from spikelatent.cli import main

    root = digits_run["root"]
    np.save(tmp_path / "short.npy", np.zeros((5, 3)))
    code = main(
        [
            "similarity",
            str(digits_run["run"]),
            "--responses",
            str(root / "rec.nwb"),
            "--images",
            str(root / "images.npy"),
            "--out",
            str(tmp_path / "never"),
            "--features",
            f"short={tmp_path / 'short.npy'}",
        ]
    )
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and "one row per image (24 rows)" in error
    assert not (tmp_path / "never").exists()


def test_similarity_cli_crossnobis_uses_the_model_counts(digits_run):
    import json

    from rsatoolbox.rdm import RDMs
    from rsatoolbox.rdm import compare as rsatoolbox_compare

    from spikelatent.cli import main
    from spikelatent.nwb.stimuli import read_responses

    root = digits_run["root"]
    out = root / "crossnobis"
    arguments = ["similarity", str(digits_run["run"]), "--responses", str(root / "rec.nwb")]
    arguments += ["--images", str(root / "images.npy"), "--out", str(out), "--n-boot", "0"]
    arguments += ["--trials", "4", "--metric", "crossnobis", "--no-progress"]
    assert main(arguments) == 0
    report = json.loads((out / "similarity.json").read_text())
    with xr.open_dataset(out / "population_nb.nc") as saved:
        counts = saved["counts"].transpose("trial", "stimulus", "unit").values
    recorded = read_responses(root / "rec.nwb").values
    expected = rsatoolbox_compare(
        RDMs(_rsatoolbox_crossnobis(counts)[None]),
        RDMs(_rsatoolbox_crossnobis(recorded)[None]),
        method="spearman",
    )[0, 0]
    assert report["runs"]["nb"]["rsa"]["similarity"] == pytest.approx(expected, abs=1e-9)
    # Pixels have no trials: no crossnobis RSA for them (None), the other columns as usual.
    pixels = report["representations"]["pixels"]
    assert pixels["rsa"].get("similarity") is None
    assert pixels["predictivity"]["median_r"] is not None


def test_similarity_cli_resizes_other_image_sizes(digits_run):
    import json

    from spikelatent.cli import main

    root = digits_run["root"]
    np.save(root / "large.npy", _images(24, 56))
    out = root / "resized"
    assert (
        main(
            [
                "similarity",
                str(digits_run["run"]),
                "--responses",
                str(root / "rec.nwb"),
                "--images",
                str(root / "large.npy"),
                "--out",
                str(out),
                "--n-boot",
                "0",
                "--trials",
                "3",
                "--no-progress",
            ]
        )
        == 0
    )
    transform = json.loads((out / "similarity.json").read_text())["runs"]["nb"][
        "stimulus_transform"
    ]
    assert "resized" in transform and "28x28" in transform


def _bad(digits_run, capsys, tmp_path, responses, images) -> str:
    from spikelatent.cli import main

    out = tmp_path / "never"
    code = main(
        [
            "similarity",
            str(digits_run["run"]),
            "--responses",
            str(responses),
            "--images",
            str(images),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert len(error.splitlines()) == 1
    assert not out.exists()
    return error


def test_similarity_cli_refuses_stimuli_that_do_not_match(digits_run, capsys, tmp_path):
    images = tmp_path / "fewer.npy"
    np.save(images, digits_run["images"][:20])  # the recording shows 24
    error = _bad(digits_run, capsys, tmp_path, digits_run["root"] / "rec.nwb", images)
    assert "stimuli do not match: 4 of 24" in error


def test_similarity_cli_refuses_nan_inside_a_trial(digits_run, capsys, tmp_path):
    """A whole NaN trial is padding (a stimulus shown fewer times) and is read; a NaN for one
    unit inside a trial is refused."""
    from spikelatent.workflows.similarity import read_recorded_responses

    responses = np.random.default_rng(0).poisson(3.0, size=(4, 24, 6)).astype(float)
    responses[3, 5] = np.nan  # stimulus 5 shown 3 times
    np.save(tmp_path / "padded.npy", responses)
    padded = read_recorded_responses(tmp_path / "padded.npy")
    assert int(np.isnan(padded.values).sum()) == 6
    np.testing.assert_array_equal(padded.values[:3], responses[:3])
    responses[1, 7, 2] = np.nan
    np.save(tmp_path / "responses.npy", responses)
    error = _bad(
        digits_run, capsys, tmp_path, tmp_path / "responses.npy", digits_run["root"] / "images.npy"
    )
    assert "NaN" in error


def test_similarity_cli_refuses_no_shared_stimulus(digits_run, capsys, tmp_path):
    images = tmp_path / "other.npz"
    np.savez(images, images=digits_run["images"], stimulus=np.arange(1000, 1024))
    error = _bad(digits_run, capsys, tmp_path, digits_run["root"] / "rec.nwb", images)
    assert "share no stimulus" in error


def test_stimulus_images_from_a_folder_match_by_name_or_position(tmp_path):
    from PIL import Image

    from spikelatent.workflows.similarity import match_stimuli, read_stimulus_images

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 6, 6), dtype=np.uint8)
    for name, image in zip(("cat", "apple", "bird"), pixels, strict=True):
        Image.fromarray(image).save(tmp_path / f"{name}.png")
    images, ids, note = read_stimulus_images(tmp_path)
    assert list(ids) == ["apple", "bird", "cat"] and note == "image files (uint8)"
    np.testing.assert_array_equal(images[0].numpy()[0], pixels[1])  # apple, raw (PIL decode)
    positions, how = match_stimuli(np.array(["cat", "apple"]), ids, tmp_path)
    assert list(positions) == [2, 0] and how == "stimulus ids = image ids"
    positions, how = match_stimuli(np.array([2, 1]), ids, tmp_path)
    assert list(positions) == [2, 1] and "positions" in how


def _model(image_shape):
    """A plain model (images on [0, 1], no fitted preprocessing) of this input shape."""
    from spikelatent.model import VAE

    return VAE({"latent_dim": 4, "arch": "linear"}, image_shape, (0.0, 1.0))


def test_images_are_fitted_to_the_model_input_and_the_transform_is_named():
    import torch

    from spikelatent.workflows.similarity import prepare_images

    rgb = [torch.rand(3, 16, 32), torch.rand(3, 16, 32)]
    stacked, transform = prepare_images(rgb, _model((1, 8, 8)))
    assert stacked.shape == (2, 1, 8, 8)
    assert "grayscale" in transform and "centre-cropped to 8x8" in transform
    same, transform = prepare_images([torch.rand(1, 8, 8)], _model((1, 8, 8)))
    assert same.shape == (1, 1, 8, 8) and transform.startswith("none")


def test_image_preparation_values_equal_pil_and_numpy_slicing():
    """Grey: PIL's convert("L") (ITU-R 601-2 luma on uint8) within 1/255; crop: numpy slicing;
    resize: PIL's antialiased bilinear resize within 2/255 (both use a triangle filter widened by
    the scale)."""
    import torch
    from PIL import Image

    from spikelatent.workflows.similarity import prepare_images

    rng = np.random.default_rng(16)
    rgb = rng.integers(0, 256, size=(8, 12, 3), dtype=np.uint8)
    image = torch.from_numpy(np.moveaxis(rgb, -1, 0).astype(np.float32) / 255)
    grey, _ = prepare_images([image], _model((1, 8, 12)))
    expected = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float64) / 255
    np.testing.assert_allclose(grey[0, 0].numpy(), expected, atol=1 / 255 + 1e-6)
    # 8 x 12 -> 8 x 8: no resize needed, the centre columns 2..9 are kept.
    cropped, transform = prepare_images([image], _model((3, 8, 8)))
    np.testing.assert_array_equal(cropped[0].numpy(), image.numpy()[:, :, 2:10])
    assert "centre-cropped to 8x8" in transform
    # 16 x 16 -> 8 x 8: halved.
    pixels = rng.integers(0, 256, size=(16, 16), dtype=np.uint8)
    halved, _ = prepare_images([torch.from_numpy(pixels[None].astype(np.float32) / 255)],
                               _model((1, 8, 8)))
    # The raw uint8 image itself gives the same (uint8 / 255 first).
    raw, note = prepare_images([torch.from_numpy(pixels[None])], _model((1, 8, 8)))
    np.testing.assert_allclose(raw.numpy(), halved.numpy(), atol=1e-6)
    assert note.startswith("uint8 scaled to [0, 1]")
    reference = Image.fromarray(pixels).resize((8, 8), Image.Resampling.BILINEAR)
    np.testing.assert_allclose(
        halved[0, 0].numpy(), np.asarray(reference, dtype=np.float64) / 255, atol=2 / 255
    )


@pytest.mark.parametrize("compare", ["spearman", "pearson", "kendall_tau_a"])
def test_shuffled_stimulus_null_equals_explicit_relabelling(tuned, compare):
    x, y = tuned
    result = rsa(x, y, compare=compare, n_boot=0, n_permutations=15, seed=3)
    rdm_x, ry = 1 - np.corrcoef(x), _upper(1 - np.corrcoef(y))
    oracle = {"spearman": lambda a, b: stats.spearmanr(a, b).statistic,
              "pearson": lambda a, b: stats.pearsonr(a, b).statistic, "kendall_tau_a": _tau_a}[compare]
    rng = np.random.default_rng(3)
    expected = []
    for _ in range(15):
        order = rng.permutation(len(x))
        expected.append(oracle(_upper(rdm_x[np.ix_(order, order)]), ry))
    np.testing.assert_allclose(result["null"].values, expected, atol=1e-12)
    value = float(result["similarity"])
    assert float(result["p_permutation"]) == pytest.approx(
        (1 + np.sum(np.asarray(expected) >= value)) / 16)
    assert float(result["null_high"]) == pytest.approx(np.quantile(expected, 0.95))
    # The planted shared structure sits far above its null.
    assert value > float(result["null_high"])


# --------------------------------------------------------------------------- crossnobis on trials


def _rsatoolbox_crossnobis(trials: np.ndarray) -> np.ndarray:
    """rsatoolbox's crossnobis RDM of (trial, stimulus, unit) trials, folds = trials."""
    import warnings

    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    n_trial, n_stimulus, n_unit = trials.shape
    observations = trials.reshape(-1, n_unit).astype(float)  # trial-major rows
    dataset = Dataset(
        observations,
        obs_descriptors={
            "image": np.tile(np.arange(n_stimulus), n_trial),
            "run": np.repeat(np.arange(n_trial), n_stimulus),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rsatoolbox's NaN-filled integer averages
        rdm = calc_rdm(dataset, method="crossnobis", descriptor="image", cv_descriptor="run")
    return rdm.dissimilarities[0]


def _population_and_recording(seed: int = 13):
    rng = np.random.default_rng(seed)
    rates = rng.gamma(2.0, 1.5, size=(15, 9))
    stimulus = np.arange(15) * 3 + 5
    pop = xr.Dataset(
        {
            "rate": (("stimulus", "unit"), rates),
            "counts": (("trial", "stimulus", "unit"), rng.poisson(rates, size=(6, 15, 9))),
        },
        coords={"stimulus": stimulus},
    )
    tuning = rates @ rng.gamma(1.0, 0.3, size=(9, 11))
    recorded = xr.DataArray(
        rng.poisson(tuning, size=(4, 15, 11)),
        dims=("trial", "stimulus", "unit"),
        coords={"stimulus": stimulus},
    )
    return pop, recorded


def test_crossnobis_of_a_population_uses_its_counts_and_equals_rsatoolbox():
    from rsatoolbox.rdm import RDMs
    from rsatoolbox.rdm import compare as rsatoolbox_compare

    pop, recorded = _population_and_recording()
    model_rdm = _rsatoolbox_crossnobis(pop["counts"].values)
    recorded_rdm = _rsatoolbox_crossnobis(recorded.values)
    np.testing.assert_allclose(
        _upper(dissimilarity_matrix(pop, metric="crossnobis").values), model_rdm, atol=1e-12
    )
    expected = float(
        rsatoolbox_compare(RDMs(model_rdm[None]), RDMs(recorded_rdm[None]), method="tau-a")[0, 0]
    )
    result = rsa(pop, recorded, metric="crossnobis", compare="kendall_tau_a", n_boot=0)
    assert float(result["similarity"]) == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(_upper(result["rdm_a"].values), model_rdm, atol=1e-12)
    both = compare_populations(pop, recorded, metric="crossnobis", compare="kendall_tau_a", n_boot=0)
    assert float(both["rsa_similarity"]) == pytest.approx(expected, abs=1e-12)
    assert np.isfinite(float(both["rsa_noise_ceiling_low"]))


def test_crossnobis_names_the_side_without_trials():
    pop, recorded = _population_and_recording()
    with pytest.raises(SpikelatentError, match="needs trials of the model population") as error:
        compare_populations(pop["rate"], recorded, metric="crossnobis", n_boot=0)
    assert len(str(error.value).splitlines()) == 1
    with pytest.raises(SpikelatentError, match="needs trials of recorded responses"):
        compare_populations(pop, recorded.mean("trial"), metric="crossnobis", n_boot=0)
    with pytest.raises(SpikelatentError, match="needs trials of b,"):
        rsa(pop, recorded.mean("trial"), metric="crossnobis", n_boot=0)

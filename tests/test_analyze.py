"""``spikelatent analyze`` and ``analyses/latent_tables.py`` on tiny runs trained through ``fit``.

The summary numbers in analysis.json are checked against values recomputed here from the saved
counts with numpy/scipy (the dispersion test, Benjamini–Hochberg, Treves–Rolls sparsity, least
squares), and the shattering score against scikit-learn fits written out in the test.
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import spikelatent
from spikelatent.cli import main
from spikelatent.config import FitConfig
from spikelatent.populations import population
from spikelatent.workflows.fit import fit

REPO = Path(__file__).resolve().parents[1]
N_IMAGES, TEST_FRACTION = 200, 0.15  # synthetic data: 30 test images, 10 classes
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny_run(root: Path, model: str) -> Path:
    config = FitConfig(
        model=model,
        data="synthetic",
        data_options={"n": N_IMAGES},
        latent_dim=16,
        arch="mlp",
        epochs=1,
        batch_size=50,
        out=str(root / model),
    )
    return fit(config, progress=False)


def set_realistic_rates(run_dir: Path) -> np.ndarray:
    """One epoch leaves the prior almost silent; give each unit a prior mean of 0.5..5 spikes (by
    hand, in both checkpoints) so the counts have something to test. Returns those means."""
    means = np.geomspace(0.5, 5.0, 16)
    for name in ("best.ckpt", "last.ckpt"):
        path = run_dir / "checkpoints" / name
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = checkpoint["state_dict"]
        # mean = r (1 - p) / p = r exp(-logit p)  =>  logit p = log r - log mean
        state["family.latent.prior_logit_prob"] = state["family.latent.prior_log_dispersion"] - torch.log(
            torch.tensor(means, dtype=torch.float32)
        )
        torch.save(checkpoint, path)
    return means


def sklearn_shattering(model, data) -> float:
    """Oracle: mean held-out accuracy over all 252 5-vs-5 splits, one sklearn fit per split."""
    (train_images, train_labels), (test_images, test_labels) = (
        data.split_tensors("train"),
        data.split_tensors("test"),
    )
    with torch.no_grad():
        train_x = model.features(train_images).double().numpy()
        test_x = model.features(test_images).double().numpy()
    scaler = StandardScaler().fit(train_x)
    train_x, test_x = scaler.transform(train_x), scaler.transform(test_x)
    accuracies = []
    # One BLAS thread: these tiny fits run many times slower with oversubscribed BLAS threads.
    with threadpool_limits(limits=1):
        for group in itertools.combinations(range(10), 5):
            classifier = LogisticRegression(max_iter=1000).fit(
                train_x, np.isin(train_labels.numpy(), group)
            )
            predicted = classifier.predict(test_x)
            accuracies.append(np.mean(predicted == np.isin(test_labels.numpy(), group)))
    return float(np.mean(accuracies))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    negbio = tiny_run(root, "negbio")
    set_realistic_rates(negbio)
    return {"negbio": negbio, "gaussian": tiny_run(root, "gaussian")}


@pytest.fixture(scope="module")
def analyzed(runs) -> dict:
    exit_code = main(
        [
            "analyze",
            str(runs["negbio"]),
            "--n-stimuli",
            "40",
            "--trials",
            "10",
            "--n-jobs",
            "1",
            "--no-progress",
        ]
    )
    return {
        "exit_code": exit_code,
        "report": json.loads((runs["negbio"] / "analysis.json").read_text()),
    }


def test_analyze_exits_zero_and_writes_every_file(runs, analyzed):
    assert analyzed["exit_code"] == 0
    run_dir = runs["negbio"]
    for name in (
        "population.nc",
        "analysis.json",
        "fano_histogram.png",
        "mean_variance.png",
        "sparsity.png",
        "shattering.png",
        "raster.png",
    ):
        assert (run_dir / name).is_file(), name
    for name in (
        "fano_histogram.png",
        "mean_variance.png",
        "sparsity.png",
        "shattering.png",
        "raster.png",
    ):
        data = (run_dir / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR", name
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width > 100 and height > 100, name
    assert not [
        p.name for p in run_dir.iterdir() if p.name.startswith(".")
    ]  # no temporary files left
    assert analyzed["report"]["figures_skipped"] == {}


def test_population_file_equals_population_for_the_same_seed(runs, analyzed):
    run_dir = runs["negbio"]
    model = spikelatent.load(run_dir)
    data = spikelatent.make_datamodule("synthetic", n=N_IMAGES, seed=0)
    images, labels = data.split_tensors("test")
    assert images.shape[0] == round(TEST_FRACTION * N_IMAGES) == 30  # fewer than the 40 asked for
    expected = population(
        model, images[:40], labels=labels[:40], n_trials=10, seed=0, progress=False
    )
    with xr.open_dataset(run_dir / "population.nc") as saved:
        assert dict(saved.sizes) == {"trial": 10, "stimulus": 30, "unit": 16}
        assert saved["counts"].dims == ("trial", "stimulus", "unit")
        assert saved["counts"].dtype == np.min_scalar_type(int(saved["counts"].max()))  # smallest unsigned
        np.testing.assert_array_equal(saved["counts"].values, expected["counts"].values)
        np.testing.assert_array_equal(saved["label"].values, labels.numpy())
        for name in ("rate", "dispersion", "prob", "fano_factor", "prior_rate"):
            np.testing.assert_allclose(saved[name].values, expected[name].values, rtol=1e-6)
        assert saved.attrs["variant"] == "NegBio-VAE DS-C"
    report = analyzed["report"]
    assert (
        report["n_stimuli"],
        report["n_stimuli_requested"],
        report["n_trials"],
        report["n_units"],
    ) == (30, 40, 10, 16)


def _treves_rolls(values: np.ndarray, axis: int) -> np.ndarray:
    m = values.shape[axis]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = values.sum(axis) ** 2 / (m * (values**2).sum(axis))
    return (1 - ratio) / (1 - 1 / m)


def test_analysis_numbers_match_independent_computations(runs, analyzed):
    report = analyzed["report"]
    with xr.open_dataset(runs["negbio"] / "population.nc") as saved:
        counts = saved["counts"].values.astype(np.float64)  # (trial, stimulus, unit)
        model_fano = saved["fano_factor"].values
    n_trials = counts.shape[0]
    mean, variance = counts.mean(0), counts.var(0, ddof=1)
    fired = mean > 0
    pop = report["population"]

    fano = pop["fano_factor"]
    assert fano["n_cells"] == mean.size and fano["n_cells_defined"] == int(fired.sum())
    assert fano["empirical_mean"] == pytest.approx(np.mean(variance[fired] / mean[fired]), rel=1e-9)
    assert fano["empirical_median"] == pytest.approx(
        np.median(variance[fired] / mean[fired]), rel=1e-9
    )
    assert fano["model_mean"] == pytest.approx(model_fano.mean(), rel=1e-6)
    assert fano["model_median"] == pytest.approx(np.median(model_fano), rel=1e-6)
    # Prior means 0.5..5 spikes with r ~ 1: clearly overdispersed counts (Fano 1 + mean / r).
    assert fano["model_median"] > 1.3

    # Poisson dispersion test: D = sum (x - mean)^2 / mean ~ chi2(n - 1), one-sided, then BH.
    statistic = (n_trials - 1) * variance[fired] / mean[fired]
    p_values = stats.chi2.sf(statistic, n_trials - 1)
    adjusted = stats.false_discovery_control(p_values, method="bh")
    test = pop["overdispersion_test"]
    assert test["n_tested"] == int(fired.sum())
    assert test["fraction_overdispersed"] == pytest.approx(np.mean(adjusted <= 0.05), abs=1e-12)
    assert test["fraction_overdispersed"] > 0.1

    lrt = pop["nb_vs_poisson_lrt"]
    assert lrt["n_tested"] == int(fired.sum())
    assert 0 <= lrt["fraction_significant"] <= 1 and 0 <= lrt["fraction_at_poisson_boundary"] <= 1
    assert lrt["dispersion_median"] > 0

    # Pooled mean-variance relation: least squares of log var on log mean over all cells.
    usable = fired & (variance > 0)
    slope, _ = np.polyfit(np.log(mean[usable]), np.log(variance[usable]), 1)
    assert pop["mean_variance"]["slope_pooled"] == pytest.approx(slope, rel=1e-6)
    gain = np.sum((variance - mean) * mean**2) / np.sum(mean**4)
    assert pop["mean_variance"]["gain_variance_pooled"] == pytest.approx(max(gain, 0.0), rel=1e-6)

    sparsity = pop["sparsity"]
    assert sparsity["fraction_zero"] == pytest.approx(np.mean(counts == 0), abs=1e-12)
    assert sparsity["lifetime_sparsity_mean"] == pytest.approx(
        np.nanmean(_treves_rolls(mean, 0)), rel=1e-9
    )
    assert sparsity["population_sparsity_mean"] == pytest.approx(
        np.nanmean(_treves_rolls(mean, 1)), rel=1e-9
    )
    dead = counts.sum((0, 1)) == 0
    assert sparsity["n_dead"] == int(dead.sum())
    assert sparsity["n_active"] + sparsity["n_dead"] + sparsity["n_constant"] == 16
    assert sparsity["fraction_active"] == pytest.approx(sparsity["n_active"] / 16)


def test_shattering_matches_sklearn_fits(runs, analyzed):
    shattering = analyzed["report"]["shattering"]
    data = spikelatent.make_datamodule("synthetic", n=N_IMAGES, seed=0)
    expected = sklearn_shattering(spikelatent.load(runs["negbio"]), data)
    n_train = data.split_tensors("train")[0].shape[0]
    assert shattering["n_splits"] == 252 and shattering["n_classes"] == 10
    assert shattering["n_fit"] == n_train and shattering["n_held_out"] == 30
    assert shattering["mean"] == pytest.approx(expected, abs=1e-9)
    assert 0 <= shattering["ci_low"] <= shattering["mean"] <= shattering["ci_high"] <= 1


def test_train_split_keeps_fitting_images_apart_from_the_stimuli(runs, tmp_path):
    from spikelatent.workflows.analyze import analyze_run

    report = analyze_run(
        runs["negbio"], split="train", n_stimuli=20, n_trials=2, n_jobs=1, progress=False
    ).report
    n_train = (
        spikelatent.make_datamodule("synthetic", n=N_IMAGES, seed=0)
        .split_tensors("train")[0]
        .shape[0]
    )
    assert report["n_stimuli"] == 20
    assert report["shattering"]["n_fit"] == n_train - 20


def test_non_count_model_gets_shattering_and_a_note(runs, capsys):
    run_dir = runs["gaussian"]
    assert (
        main(
            [
                "analyze",
                str(run_dir),
                "--n-stimuli",
                "30",
                "--trials",
                "5",
                "--n-jobs",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    report = json.loads((run_dir / "analysis.json").read_text())
    assert report["population"] is None
    assert (
        "poisson or negbio" in report["population_note"] and "gaussian" in report["population_note"]
    )
    assert 0.5 <= report["shattering"]["mean"] <= 1
    assert not (run_dir / "population.nc").exists()
    assert (run_dir / "shattering.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "poisson or negbio" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["/no/such/run"], "does not exist"),
        (["RUN", "--n-stimuli", "0"], "--n-stimuli must be an integer >= 1"),
        (["RUN", "--trials", "1"], "--trials must be an integer >= 2"),
    ],
)
def test_bad_input_exits_2_with_one_line(runs, capsys, arguments, expected):
    arguments = [str(runs["negbio"]) if a == "RUN" else a for a in arguments]
    assert main(["analyze", *arguments]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("spikelatent analyze: error:")
    assert expected in error


def test_empty_run_directory_is_a_one_line_error(tmp_path, capsys):
    assert main(["analyze", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "checkpoint" in error


def _three(value):
    return "n/a" if value is None else f"{value:.3f}"


def _two(value):
    return "n/a" if value is None else f"{value:.2f}"


def test_the_printout_shows_the_numbers_of_analysis_json(runs, capsys):
    """Every number printed is the one in analysis.json (formatted here by hand), so a change to
    the report's layout cannot silently break or falsify the printout."""
    run_dir = runs["negbio"]
    assert main(["analyze", str(run_dir), "--n-stimuli", "20", "--trials", "4", "--n-jobs", "1",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out.splitlines()
    report = json.loads((run_dir / "analysis.json").read_text())
    pop, info, shattering = report["population"], report["information"], report["shattering"]
    fano, sparsity = pop["fano_factor"], pop["sparsity"]
    fields = report["receptive_fields"]
    assert sparsity["gabor_fraction"] == fields["gabor_fraction"]
    expected = [
        "NegBio-VAE DS-C on synthetic (test): 20 stimuli x 16 units x 4 trials",
        f"information: KL {_three(info['kl_per_image_mean'])} nats/image (mean); informative "
        f"units {info['n_informative']}/16 (mean KL > 0.01 nats)",
        f"Fano factor: model median {_three(fano['model_median'])}, empirical median "
        f"{_three(fano['empirical_median'])}; overdispersed cells "
        f"{_three(pop['overdispersion_test']['fraction_overdispersed'])}; NB>Poisson (LRT) "
        f"{_three(pop['nb_vs_poisson_lrt']['fraction_significant'])}",
        f"sparsity: zeros {_three(sparsity['fraction_zero'])}, lifetime "
        f"{_three(sparsity['lifetime_sparsity_mean'])}, population "
        f"{_three(sparsity['population_sparsity_mean'])}; active units "
        f"{sparsity['n_active']}/16 (dead {sparsity['n_dead']})",
        f"receptive fields: Gabor-like {fields['gabor_fraction']:.2f} of all units, "
        f"{fields['gabor_fraction_active']:.2f} of active units (R² >= 0.5 and n_x >= 0.25 "
        f"cycles; {fields['good_fit_fraction']:.2f} fit with R² >= 0.5, median n_x of those "
        f"{_two(fields['good_fit_nx_median'])})",
        f"shattering dimensionality: {_three(shattering['mean'])} "
        f"[{_three(shattering['ci_low'])}, {_three(shattering['ci_high'])}]",
        "written: " + ", ".join(str(run_dir / name) for name in report["files"]),
    ]
    assert printed == expected
    assert report["files"][0] == "population.nc" and report["files"][-1] == "analysis.json"


def test_counting_summary_lines_show_its_numbers():
    from spikelatent.analysis.summaries import counting_summary

    rng = np.random.default_rng(3)
    binned = xr.DataArray(rng.poisson(2.0, size=(12, 20, 5)), dims=("trial", "time", "unit"),
                          attrs={"bin_size": 0.05})
    summary = counting_summary(binned, seed=0, n_shuffles=5)
    fano = summary.numbers["fano_by_window"]
    # the 0.05 s window: each unit's Fano factor over its 12 x 20 bins, averaged over units
    by_unit = binned.values.reshape(-1, 5)
    by_hand = np.mean(by_unit.var(0, ddof=1) / by_unit.mean(0))
    assert fano["window"][0] == 0.05 and fano["population_mean"][0] == pytest.approx(by_hand)
    noise = summary.numbers["total_correlation"]  # trials but no stimuli: total, not noise
    assert summary.lines() == [
        "Fano factor by window (mean over units): " + ", ".join(
            f"{w:g} s: {_three(f)}" for w, f in zip(fano["window"], fano["population_mean"],
                                                   strict=True)),
        f"spontaneous (total) correlation: mean {_three(noise['mean'])} (shuffle control "
        f"[{_three(noise['shuffle_mean_ci'][0])}, {_three(noise['shuffle_mean_ci'][1])}]); "
        f"participation ratio "
        f"{_three(summary.numbers['dimensionality']['participation_ratio_total'])}",
    ]


@pytest.mark.parametrize("option", [["--bin-size", "-1"], ["--bin-size", "0.02"],
                                    ["--intervals", "trials"], ["--out", "elsewhere"]])
def test_a_recording_option_on_a_run_is_refused(runs, capsys, option, tmp_path):
    before = sorted(p.name for p in runs["gaussian"].iterdir())
    assert main(["analyze", str(runs["gaussian"]), *option]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{option[0]} is an option for NWB files only" in error
    assert sorted(p.name for p in runs["gaussian"].iterdir()) == before  # nothing written


# --------------------------------------------------------------------------- latent_tables.py


def load_latent_tables():
    spec = importlib.util.spec_from_file_location(
        "latent_tables", REPO / "analyses" / "latent_tables.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rank_marks_by_hand():
    tables = load_latent_tables()
    assert tables.rank_marks([0.5, 0.7, 0.7004, 0.6, None]) == ["", "best", "best", "second", ""]


def test_latent_tables_on_tiny_runs(runs, tmp_path):
    tables = load_latent_tables()
    out = tmp_path / "tables"
    code = tables.main(
        [
            str(runs["gaussian"]),
            str(runs["negbio"]),
            "--out",
            str(out),
            "--n-train",
            "5",
            "10",
            "40",
            "--repeats",
            "2",
            "--shots",
            "1",
            "5",
            "--n-jobs",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    with (out / "fragmentation.csv").open() as stream:
        fragmentation = list(csv.DictReader(stream))
    with (out / "few_shot.csv").open() as stream:
        few_shot = list(csv.DictReader(stream))
    # Rows in the paper's order: G-VAE before NegBio-VAE.
    assert [row["model"] for row in fragmentation] == ["G-VAE", "NegBio-VAE DS-C"]
    assert [row["model"] for row in few_shot] == ["G-VAE", "NegBio-VAE DS-C"]
    # N = 40 exceeds half of the 30 test images: left out, with a note.
    assert "acc_n40_mean" not in fragmentation[0]
    markdown = (out / "fragmentation.md").read_text()
    assert "N > 15 (half the test split) left out" in markdown and "| – |" in markdown

    # Oracle for the shattering column: sklearn fits on the gaussian run's features.
    data = spikelatent.make_datamodule("synthetic", n=N_IMAGES, seed=0)
    expected = sklearn_shattering(spikelatent.load(runs["gaussian"]), data)
    assert float(fragmentation[0]["shattering"]) == pytest.approx(expected, abs=1e-9)

    # Every accuracy is a probability.
    for row in few_shot:
        for key in (
            "logistic_1shot_mean",
            "logistic_5shot_mean",
            "knn_1shot_mean",
            "knn_5shot_mean",
        ):
            assert 0 <= float(row[key]) <= 1
    for row in fragmentation:
        for key in ("acc_n5_mean", "acc_n10_mean", "shattering"):
            assert 0 <= float(row[key]) <= 1

    # Best of a column is bold: check against the CSV values.
    lines = (out / "few_shot.md").read_text().splitlines()
    table = [line for line in lines if line.startswith("| synthetic")]
    values = [float(row["knn_5shot_mean"]) for row in few_shot]
    best_row = int(np.argmax(np.round(values, 3)))
    # cells: "", Dataset, Latent dim, Model, LR 1-shot, LR 5-shot, kNN 1-shot, kNN 5-shot, ""
    assert table[best_row].split("|")[7].strip().startswith("**")


def test_latent_tables_bad_run_is_one_line(tmp_path, capsys):
    tables = load_latent_tables()
    assert tables.main([str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("latent_tables: error:")

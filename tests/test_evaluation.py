"""``evaluate_run`` / ``compare_runs`` and their CLI commands.

The table logic is checked on hand-made ``metrics.json`` files; the end-to-end part trains two tiny
runs on the embedded digits set and checks the written numbers against numpy / skimage
recomputations from the same model."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from spikelatent.cli import main
from spikelatent.errors import SpikelatentError
from spikelatent.workflows.evaluate import (
    COMPARISON_CSV,
    COMPARISON_FIGURE,
    COMPARISON_MARKDOWN,
    compare_runs,
    comparison_table,
    display_name,
    evaluate_run,
    rank_marks,
)

# --------------------------------------------------------------------------- table logic


@pytest.mark.parametrize(
    "config, name",
    [
        ({"model": "gaussian"}, "G-VAE"),
        ({"model": "laplace"}, "L-VAE"),
        ({"model": "categorical"}, "C-VAE"),
        ({"model": "poisson"}, "P-VAE"),
        ({"model": "negbio", "kl": "mc", "relax": "gumbel"}, "NegBio-VAE MC-G"),
        ({"model": "negbio", "kl": "mc", "relax": "ct"}, "NegBio-VAE MC-C"),
        ({"model": "negbinomial", "kl": "ds", "relax": "gumbel"}, "NegBio-VAE DS-G"),
        ({"model": "negbio", "kl": "ds", "relax": "ct"}, "NegBio-VAE DS-C"),
    ],
)
def test_display_names_follow_the_paper(config, name):
    assert display_name(config) == name


def test_rank_marks_best_and_second_with_ties_and_gaps():
    assert rank_marks([0.3, 0.1, 0.2, None], lower_is_better=True) == ["", "best", "second", ""]
    assert rank_marks([0.3, 0.1, 0.2], lower_is_better=False) == ["best", "", "second"]
    assert rank_marks([0.1, 0.1, 0.2], lower_is_better=True) == ["best", "best", "second"]
    assert rank_marks([0.5], lower_is_better=True) == ["best"]


def _metrics(dataset="digits", **values):
    base = {
        "dataset": dataset,
        "split": "test",
        "features": "classifier (digits, test acc 0.980)",
        "mse": 0.02,
        "ssim": 0.8,
        "fid_5k": 50.0,
        "fid_10k": 49.0,
        "kid_mean": 0.1,
        "kid_std": 0.01,
        "n_generated_5k": 5000,
        "n_generated_10k": 10000,
    }
    base.update(values)
    return base


def test_comparison_table_marks_best_bold_and_second_underlined():
    table = comparison_table(
        [
            (
                "G-VAE",
                _metrics(
                    mse=0.0377,
                    ssim=0.679,
                    fid_5k=152.5,
                    fid_10k=152.8,
                    kid_mean=0.1788,
                    kid_std=0.0115,
                ),
            ),
            (
                "P-VAE",
                _metrics(
                    mse=0.0125,
                    ssim=0.8581,
                    fid_5k=105.4,
                    fid_10k=104.1,
                    kid_mean=0.1250,
                    kid_std=0.0019,
                ),
            ),
            (
                "NegBio-VAE MC-G",
                _metrics(
                    mse=0.0156,
                    ssim=0.8487,
                    fid_5k=79.67,
                    fid_10k=78.38,
                    kid_mean=0.0892,
                    kid_std=0.0106,
                ),
            ),
        ]
    )
    lines = table.strip().splitlines()
    assert lines[0] == "| Model | MSE ↓ | SSIM ↑ | FID@5k ↓ | FID@10k ↓ | KID ↓ |"
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in lines[2:]}
    assert rows["P-VAE"][0] == "**0.0125**" and rows["NegBio-VAE MC-G"][0] == "<u>0.0156</u>"
    assert rows["G-VAE"][0] == "0.0377"
    assert rows["P-VAE"][1] == "**0.8581**" and rows["NegBio-VAE MC-G"][1] == "<u>0.8487</u>"
    assert rows["NegBio-VAE MC-G"][2] == "**79.6700**" and rows["P-VAE"][2] == "<u>105.4000</u>"
    assert rows["NegBio-VAE MC-G"][4].rstrip(" |") == "**0.0892 ± 0.0106**"
    assert rows["G-VAE"][4].rstrip(" |") == "0.1788 ± 0.0115"


def _fake_run(root: Path, name: str, **values) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(_metrics(**values)))
    return run


def test_compare_refuses_runs_from_different_datasets(tmp_path, capsys):
    first = _fake_run(tmp_path, "a", model_name="G-VAE")
    second = _fake_run(tmp_path, "b", dataset="fashion-mnist", model_name="P-VAE")
    with pytest.raises(SpikelatentError, match="different datasets"):
        compare_runs([first, second], tmp_path / "out")
    assert main(["compare", str(first), str(second), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "different datasets" in err and "\n" not in err
    assert not (tmp_path / "out" / COMPARISON_MARKDOWN).exists()


def test_compare_refuses_mixed_feature_extractors_and_unevaluated_runs(tmp_path):
    first = _fake_run(tmp_path, "a")
    second = _fake_run(
        tmp_path, "b", features="inception (torch-fidelity InceptionV3 pool3, 2048-d)"
    )
    with pytest.raises(SpikelatentError, match="feature extractors"):
        compare_runs([first, second], tmp_path / "out")
    (tmp_path / "c").mkdir()
    with pytest.raises(SpikelatentError, match="spikelatent evaluate"):
        compare_runs([first, tmp_path / "c"], tmp_path / "out")


def test_evaluate_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SpikelatentError, match="--split"):
        evaluate_run(tmp_path, split="holdout")
    with pytest.raises(SpikelatentError, match="--n-samples"):
        evaluate_run(tmp_path, n_samples=1)
    assert main(["evaluate", str(tmp_path / "missing"), "--features", "classifier"]) == 2
    assert "no run directory" in capsys.readouterr().err


# --------------------------------------------------------------------------- end to end


#: The figures each run's fit wrote, before evaluate ran (filled by the fixture).
FIT_FIGURES: dict[str, dict[str, bytes]] = {}


@pytest.fixture(scope="module")
def evaluated_runs(tmp_path_factory):
    """Two tiny digits runs (G-VAE and NegBio-VAE DS-C), trained and evaluated through the CLI."""
    FIT_FIGURES.clear()
    pytest.importorskip("spikelatent.model", reason="needs the lead's model (spikelatent.model)")
    from spikelatent.data import make_datamodule
    from spikelatent.metrics import load_or_train_classifier

    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPIKELATENT_CACHE", str(root / "cache"))
        # A quickly trained classifier in the cache (one epoch) keeps the test fast.
        load_or_train_classifier(make_datamodule("digits"), epochs=1, progress=False)
        runs = {}
        for name, flags in (
            ("negbio", ["--model", "negbio", "--kl", "ds", "--relax", "ct"]),
            ("gaussian", ["--model", "gaussian"]),
        ):
            out = root / name
            common = ["--data", "digits", "--latent-dim", "8", "--arch", "linear", "--epochs", "1"]
            assert (
                main(["fit", *common, "--limit", "200", *flags, "--out", str(out), "--no-progress"])
                == 0
            )
            FIT_FIGURES[name] = {figure: (out / figure).read_bytes()
                                 for figure in ("reconstructions.png", "samples.png")}
            evaluate = ["evaluate", str(out), "--features", "classifier", "--n-samples", "300"]
            assert main([*evaluate, "--kid-subsets", "10", "--no-progress"]) == 0
            runs[name] = out
        yield runs, root


def test_evaluate_writes_metrics_that_match_independent_recomputation(evaluated_runs):
    import spikelatent
    from spikelatent.data import make_datamodule

    runs, _ = evaluated_runs
    run = runs["negbio"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model_name"] == "NegBio-VAE DS-C" and metrics["dataset"] == "digits"
    assert metrics["features"].startswith("classifier (digits, test acc ")
    assert metrics["features_kind"] == "classifier"
    assert metrics["n_generated_5k"] == metrics["n_generated_10k"] == 300
    assert metrics["fid_5k"] == metrics["fid_10k"] > 0
    assert np.isfinite([metrics[key] for key in ("kid_mean", "kid_std", "ssim", "mse")]).all()

    model = spikelatent.load(run)
    images, _ = make_datamodule("digits").split_tensors("test")
    assert metrics["n_real"] == metrics["n_images"] == len(images)
    with torch.no_grad():
        recon_map = model.reconstruct(images, mode="mean")
        torch.manual_seed(0)  # evaluate seeds the sampled reconstructions with --seed (0)
        recon_sample = model.reconstruct(images, mode="sample")
    x, mean_recon, sample_recon = (t.double().numpy() for t in (images, recon_map, recon_sample))
    assert metrics["mse_map"] == pytest.approx(np.mean((x - mean_recon) ** 2), rel=1e-4)
    assert metrics["mse"] == pytest.approx(np.mean((x - sample_recon) ** 2), rel=1e-4)
    expected_ssim = np.mean(
        [
            structural_similarity(
                a[0],
                b[0],
                data_range=1.0,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
            for a, b in zip(x, mean_recon, strict=True)
        ]
    )
    assert metrics["ssim_map"] == pytest.approx(expected_ssim, abs=1e-3)

    import matplotlib.image

    for figure in ("evaluate_reconstructions.png", "evaluate_samples.png"):
        assert matplotlib.image.imread(run / figure).ndim == 3
    # evaluate writes beside fit's figures, never over them.
    for name, figures in FIT_FIGURES.items():
        for figure, data in figures.items():
            assert (runs[name] / figure).read_bytes() == data, (name, figure)


def test_evaluations_csv_gains_a_row_per_evaluation(evaluated_runs):
    runs, _ = evaluated_runs
    run = runs["gaussian"]
    before = list(csv.DictReader((run / "evaluations.csv").open()))
    assert len(before) == 1 and before[0]["model_name"] == "G-VAE"
    assert (
        evaluate_run(run, features="classifier", n_samples=50, kid_subsets=2, progress=False)[
            "n_generated"
        ]
        == 50
    )
    after = list(csv.DictReader((run / "evaluations.csv").open()))
    assert len(after) == 2 and after[1]["n_generated_5k"] == "50"
    assert float(after[0]["mse"]) == pytest.approx(float(after[1]["mse"]))  # seeded: same recon
    # restore the 300-sample evaluation for the comparison test
    evaluate_run(run, features="classifier", n_samples=300, kid_subsets=10, progress=False)


def test_compare_writes_the_table_csv_and_one_figure(evaluated_runs, capsys):
    runs, root = evaluated_runs
    out = root / "table"
    assert main(["compare", str(runs["negbio"]), str(runs["gaussian"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    markdown = (out / COMPARISON_MARKDOWN).read_text()
    assert markdown in printed
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "Model" not in line]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == [
        "G-VAE",
        "NegBio-VAE DS-C",
    ]  # paper order

    values = {
        name: json.loads((runs[key] / "metrics.json").read_text())
        for key, name in (("gaussian", "G-VAE"), ("negbio", "NegBio-VAE DS-C"))
    }
    best_mse = min(values, key=lambda name: values[name]["mse"])
    best_row = next(row for row in rows if row.startswith(f"| {best_mse} |"))
    assert f"**{values[best_mse]['mse']:.4f}**" in best_row
    other = next(name for name in values if name != best_mse)
    if values[other]["mse"] != values[best_mse]["mse"]:
        assert f"<u>{values[other]['mse']:.4f}</u>" in next(
            row for row in rows if row.startswith(f"| {other} |")
        )

    table = list(csv.DictReader((out / COMPARISON_CSV).open()))
    assert [row["model"] for row in table] == ["G-VAE", "NegBio-VAE DS-C"]
    # Each row's --preset, from the run's config.yaml (these runs used none).
    assert [row["preset"] for row in table] == ["none", "none"]
    assert "Training preset (`spikelatent fit --preset`): none (every row)" in markdown
    assert float(table[1]["fid_10k"]) == pytest.approx(values["NegBio-VAE DS-C"]["fid_10k"])
    import matplotlib.image

    assert matplotlib.image.imread(out / COMPARISON_FIGURE).ndim == 3


def test_compare_refuses_a_run_from_another_dataset(evaluated_runs, tmp_path):
    runs, _ = evaluated_runs
    other = tmp_path / "other"
    shutil.copytree(runs["gaussian"], other)
    metrics = json.loads((other / "metrics.json").read_text())
    metrics["dataset"] = "mnist"
    (other / "metrics.json").write_text(json.dumps(metrics))
    assert main(["compare", str(runs["negbio"]), str(other), "--out", str(tmp_path / "out")]) == 2

"""Every command on every model kind: the nine models (the eight of the paper and
``negbio-hierarchical``) each trained for one tiny epoch, then ``evaluate``, ``analyze``,
``export-nwb``, ``similarity``, ``transform``, ``population`` and ``representations`` on it, and
each installed experiment logger. The motivating failures: ``analyze`` and ``--logger
tensorboard`` died with an AttributeError on the hierarchical model after the work was done.

Numbers are checked against what the files and the interface promise, independently: the NWB
spike trains read back with pynwb sum to the population's counts, the representation named
``latent`` equals the transform's posterior mean, the tracked validation Fano factor equals the
population's median Fano factor computed by numpy on the same images.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import spikelatent
from spikelatent.cli import main
from spikelatent.config import FitConfig
from spikelatent.data import make_datamodule
from spikelatent.workflows.fit import fit

SYNTHETIC = {"n": 120, "image_shape": (1, 16, 16)}  # 18 test images
KINDS = {
    "G": {"model": "gaussian"},
    "L": {"model": "laplace"},
    "C": {"model": "categorical", "categories": 4},
    "P": {"model": "poisson"},
    "DS-C": {"model": "negbio", "kl": "ds", "relax": "ct"},
    "DS-G": {"model": "negbio", "kl": "ds", "relax": "gumbel"},
    "MC-C": {"model": "negbio", "kl": "mc", "relax": "ct"},
    "MC-G": {"model": "negbio", "kl": "mc", "relax": "gumbel"},
    "HNB": {"model": "negbio-hierarchical", "scales": 2, "groups": [1],
            "hierarchy_channels": [8], "latent_channels": [1]},
}
COUNT_KINDS = ("P", "DS-C", "DS-G", "MC-C", "MC-G", "HNB")


def _config(kind: str, out: Path, **extra) -> FitConfig:
    options = dict(KINDS[kind])
    if options["model"] != "negbio-hierarchical":
        options.update(latent_dim=8, arch="mlp")
    return FitConfig(data="synthetic", data_options=SYNTHETIC, epochs=1, batch_size=40,
                     seed=1, out=str(out), **options, **extra)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kinds")
    return {kind: fit(_config(kind, root / kind), progress=False) for kind in KINDS}


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> tuple[Path, Path]:
    from spikelatent.nwb.stimuli import write_synthetic_recording

    root = tmp_path_factory.mktemp("recording")
    data = make_datamodule("synthetic", **SYNTHETIC)
    images, _ = data.split_tensors("test")
    np.save(root / "images.npy", images.numpy())
    write_synthetic_recording(root / "rec.nwb", images.numpy(), n_units=10, n_trials=4, seed=2)
    return root / "rec.nwb", root / "images.npy"


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_command_runs(kind, runs, recording, tmp_path):
    run = runs[kind]
    assert main(["evaluate", str(run), "--features", "none", "--n-samples", "20",
                 "--no-progress"]) == 0
    assert (run / "metrics.json").exists()
    assert main(["analyze", str(run), "--n-stimuli", "18", "--trials", "3",
                 "--shattering-images", "60", "--no-progress"]) == 0
    report = json.loads((run / "analysis.json").read_text())
    model = spikelatent.load(run)
    assert report["n_units"] == model.family.latent_dim
    if kind in COUNT_KINDS:
        assert report["population"] is not None
    else:  # says in one line why the population analyses do not apply
        assert "need a count model" in report["population_note"] or "need a poisson" in \
            report["population_note"]
    if kind == "HNB":  # the per-level table
        assert len(report["levels"]) >= 1
    responses, images = recording
    assert main(["similarity", str(run), "--responses", str(responses), "--images", str(images),
                 "--trials", "3", "--n-boot", "10", "--folds", "3", "--out",
                 str(tmp_path / "sim"), "--no-progress"]) == 0
    assert (tmp_path / "sim" / "similarity.json").exists()
    if kind in COUNT_KINDS:
        out = tmp_path / "latent.nwb"
        assert main(["export-nwb", str(run), "--out", str(out), "--stimuli", "test:0:5",
                     "--trials", "2"]) == 0
        _check_nwb_counts(out, n_units=model.family.latent_dim)


def _check_nwb_counts(path: Path, n_units: int) -> None:
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        assert len(nwb.units) == n_units
        assert len(nwb.trials) == 10  # 5 stimuli x 2 trials


@pytest.mark.parametrize("kind", list(KINDS))
def test_interface_answers_for_every_kind(kind, runs):
    model = spikelatent.load(runs[kind])
    data = make_datamodule("synthetic", **SYNTHETIC)
    images, labels = data.split_tensors("test")
    with torch.no_grad():
        representations = model.representations(images)
        posterior = model.posterior(images)
    names = list(representations)
    assert names[-1] == "latent" and any(name.startswith("encoder.") for name in names)
    transform = model.transform(images, kind="rate")
    np.testing.assert_allclose(representations["latent"].reshape(len(images), -1).numpy(),
                               transform.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(posterior.mean.reshape(len(images), -1).numpy(), transform.values,
                               rtol=1e-5, atol=1e-6)
    generated = model.generate(3)
    assert generated.shape == (3, *model.image_shape) and torch.isfinite(generated).all()
    assert model.family.kl_per_unit(images).shape[0] == len(images)
    coords = model.family.unit_coords()
    assert all(len(v) == model.family.latent_dim for v in coords.values())
    assert ("level" in coords) == (kind == "HNB")
    if kind in COUNT_KINDS:
        pop = spikelatent.population(model, images, labels=labels, n_trials=4, progress=False)
        counts = pop["counts"].values
        assert counts.shape == (4, len(images), model.family.latent_dim)
        assert np.issubdtype(counts.dtype, np.integer) and (counts >= 0).all()


@pytest.mark.parametrize("kind", ["DS-C", "HNB"])
def test_tracked_fano_equals_the_population_median(kind, tmp_path):
    """``val_fano_median`` in metrics.csv is the median over (stimulus, unit) of the posterior's
    variance / mean on the validation split: recomputed with numpy from the saved model."""
    import csv

    run = fit(_config(kind, tmp_path / kind), progress=False)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    tracked = float(rows[-1]["val_fano_median"])
    model = spikelatent.load(run, which="last")
    data = make_datamodule("synthetic", **SYNTHETIC, seed=1)
    val, _ = data.split_tensors("val")
    with torch.no_grad():
        posterior = model.posterior(val)
        mean = posterior.mean.double().numpy()
        variance = posterior.variance.double().numpy()
    fano = np.where(mean > 0, variance / np.maximum(mean, 1e-30), 1.0)
    assert tracked == pytest.approx(float(np.median(fano)), rel=1e-4)
    pop = spikelatent.population(model, val, progress=False)
    assert tracked == pytest.approx(float(np.median(pop["fano_factor"].values)), rel=1e-4)


LOGGERS = ["tensorboard"] + [name for name in ("mlflow", "wandb")
                             if importlib.util.find_spec(name) is not None]


@pytest.mark.parametrize("logger", LOGGERS)
@pytest.mark.parametrize("kind", ["DS-C", "HNB", "G"])
def test_each_logger_on_each_kind(kind, logger, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = fit(_config(kind, tmp_path / "run", logger=[logger]), progress=False)
    assert (run / "metrics.csv").exists() and (run / "checkpoints" / "last.ckpt").exists()


def test_collapse_warning_is_taken_back_when_the_levels_recover():
    from types import SimpleNamespace

    from spikelatent.callbacks import CollapseGuard, CollapseWarning

    guard = CollapseGuard()
    module = SimpleNamespace(beta=lambda: 1.0, final_beta=1.0)

    def validate(epoch, **metrics):
        trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, current_epoch=epoch,
                                  callback_metrics={k: torch.tensor(v) for k, v in metrics.items()})
        guard.on_validation_epoch_end(trainer, module)

    with pytest.warns(CollapseWarning, match=r"level\(s\) 0, 1 of 2"):
        validate(0, **{"val/kl": 3.0, "val/kl_level0": 0.01, "val/kl_level1": 0.02})
    with pytest.warns(CollapseWarning, match="recovered at epoch 1.*every level above 0.1"):
        validate(1, **{"val/kl": 9.0, "val/kl_level0": 4.0, "val/kl_level1": 5.0})
    import warnings

    with warnings.catch_warnings():  # said once: a healthy epoch after the recovery is silent
        warnings.simplefilter("error")
        validate(2, **{"val/kl": 9.0, "val/kl_level0": 4.0, "val/kl_level1": 5.0})

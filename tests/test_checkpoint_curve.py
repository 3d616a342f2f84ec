"""``benchmarks/checkpoint_curve.py`` on a tiny run with kept checkpoints: one row per checkpoint,
in step order, its minutes and β from ``metrics.csv``, and the posterior-mean MSE against a
direct numpy computation on the same test images."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spikelatent.checkpoints import load
from spikelatent.cli import main as cli_main
from spikelatent.data import datamodule_from_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def curve():
    sys.path.insert(0, str(REPO / "benchmarks"))  # the script imports its neighbour run_summary
    spec = importlib.util.spec_from_file_location("checkpoint_curve_under_test",
                                                  REPO / "benchmarks" / "checkpoint_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(REPO / "benchmarks"))


def test_curve_of_kept_checkpoints(curve, tmp_path):
    run_dir = tmp_path / "run"
    assert cli_main(["fit", "--data", "synthetic", "--data-option", "n=96", "--latent-dim", "8",
                     "--arch", "mlp", "--batch-size", "32", "--epochs", "4",
                     "--keep-every-epochs", "2", "--no-progress", "--out", str(run_dir)]) == 0
    out = tmp_path / "curve"
    assert curve.main([str(run_dir), "--out", str(out), "--test-images", "16"]) == 0
    rows = list(csv.DictReader((out / "curve.csv").open()))
    metrics = list(csv.DictReader((run_dir / "metrics.csv").open()))
    # kept epochs 1 and 3, then last.ckpt (also epoch 3): in step order, minutes from metrics.csv
    assert [int(r["step"]) for r in rows] == [int(metrics[1]["step"]), int(metrics[3]["step"]),
                                               int(metrics[3]["step"])]
    assert float(rows[0]["minutes"]) == pytest.approx(float(metrics[1]["elapsed_s"]) / 60)
    assert float(rows[0]["beta"]) == pytest.approx(float(metrics[1]["beta"]))
    assert (out / "curve.png").stat().st_size > 0

    model = load(run_dir / "checkpoints" / "last.ckpt")
    images, _ = datamodule_from_config(dict(model.config)).split_tensors("test", 16)
    with torch.no_grad():
        decoded = model.decode(model.family.latent.mean(model.posterior(images))).numpy()
    oracle = float(np.mean((images.numpy() - decoded) ** 2))
    assert float(rows[-1]["mse_mean"]) == pytest.approx(oracle, rel=1e-5)

"""``benchmarks/checkpoint_curve.py`` on a tiny run with kept checkpoints: one row per checkpoint,
in step order, its minutes and β from ``metrics.csv``, and every row's posterior-mean MSE against
that checkpoint's own weights (read with ``torch.load(weights_only=True)`` into a fresh model,
the error computed in numpy on the same test images)."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spikelatent.cli import main as cli_main
from spikelatent.config import FitConfig
from spikelatent.data import datamodule_from_config
from spikelatent.model import VAE

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
    kept = sorted((run_dir / "checkpoints" / "kept").glob("*.ckpt"))
    assert len(kept) == 2
    assert [r["checkpoint"] for r in rows] == [kept[0].name, kept[1].name, "last.ckpt"]
    assert [int(r["step"]) for r in rows] == [int(metrics[1]["step"]), int(metrics[3]["step"]),
                                               int(metrics[3]["step"])]
    for row, epoch in zip(rows, (1, 3, 3), strict=True):
        assert float(row["minutes"]) == pytest.approx(float(metrics[epoch]["elapsed_s"]) / 60)
        assert float(row["beta"]) == pytest.approx(float(metrics[epoch]["beta"]))
        assert float(row["temperature"]) == pytest.approx(float(metrics[epoch]["temperature"]))
    assert (out / "curve.png").stat().st_size > 0

    # Each row's oracle: its own checkpoint's weights, decoded from the posterior mean.
    config = FitConfig.from_yaml(run_dir / "config.yaml")
    images, _ = datamodule_from_config(config).split_tensors("test", 16)
    oracles = []
    for path in [*kept, run_dir / "checkpoints" / "last.ckpt"]:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        hparams = checkpoint["hyper_parameters"]
        model = VAE(hparams["config"], tuple(hparams["image_shape"]), tuple(hparams["data_range"]),
                    hparams.get("preprocessing"))
        model.load_state_dict(checkpoint["state_dict"])
        model.eval()
        with torch.no_grad():
            decoded = model.decode(model.posterior(images).mean.reshape(len(images), -1))
        oracles.append((checkpoint["global_step"],
                        float(np.mean((images.double().numpy() - decoded.double().numpy()) ** 2))))
    for row, (step, mse) in zip(rows, oracles, strict=True):
        assert int(row["step"]) == step
        assert float(row["mse_mean"]) == pytest.approx(mse, rel=1e-5)
    # the kept checkpoints were trained further apart than the tolerance: a wrong row would show
    assert abs(oracles[0][1] - oracles[1][1]) > 1e-3 * oracles[1][1]

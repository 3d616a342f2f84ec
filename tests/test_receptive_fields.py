"""Receptive fields, Gabor fits and ``VAE.transform`` against closed forms (weights, numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikelatent.analysis.receptive_fields import (
    encoder_fields,
    fit_gabor,
    gabor_fraction,
    generative_fields,
    receptive_fields,
    save_receptive_field_grid,
)
from spikelatent.model import VAE

SHAPE = (1, 8, 8)


def _model(model="poisson", data_range=(-2.0, 3.0), latent_dim=6, seed=0):
    torch.manual_seed(seed)
    return VAE({"data": "digits", "model": model, "arch": "linear", "latent_dim": latent_dim},
               SHAPE, data_range).eval()


def test_generative_field_of_a_linear_decoder_is_its_weight_column():
    model = _model()  # data range (-2, 3): identity output, decoder(z) = W z + b
    weight = model.family.decoder.projection.weight.detach().double().numpy()  # (pixels, unit)
    fields = generative_fields(model, delta=2.0)
    assert fields.dims == ("unit", "channel", "row", "col")
    for unit in range(6):
        np.testing.assert_allclose(fields.sel(unit=unit).values.ravel(), 2.0 * weight[:, unit],
                                   rtol=1e-5, atol=1e-6)


def test_generative_field_with_sigmoid_output_matches_the_closed_form():
    model = _model(data_range=(0.0, 1.0))
    weight = model.family.decoder.projection.weight.detach().double().numpy()
    bias = model.family.decoder.projection.bias.detach().double().numpy()
    base = model.family.latent.mean(model.prior()).detach().double().numpy()  # the prior rates

    def sigmoid(value):
        return 1 / (1 + np.exp(-value))

    fields = generative_fields(model)
    for unit in range(6):
        raised = base.copy()
        raised[unit] += 1
        expected = sigmoid(weight @ raised + bias) - sigmoid(weight @ base + bias)
        np.testing.assert_allclose(fields.sel(unit=unit).values.ravel(), expected, atol=1e-6)


def test_encoder_gradient_field_of_a_linear_gaussian_encoder_is_its_weight_row():
    model = _model("gaussian")  # posterior mean = the first latent_dim encoder outputs (loc)
    weight = model.family.encoder.projection.weight.detach().double().numpy()[:6]
    images = torch.rand(10, *SHAPE)
    fields = encoder_fields(model, images, batch_size=4)
    for unit in range(6):
        np.testing.assert_allclose(fields.sel(unit=unit).values.ravel(), weight[unit], atol=1e-6)


def test_spike_triggered_average_points_along_the_encoder_weights():
    model = _model("poisson")
    fields = encoder_fields(model, method="sta", n_probes=20000, batch_size=2000)
    weight = model.family.encoder.projection.weight.detach().double().numpy()
    for unit in range(6):
        correlation = np.corrcoef(fields.sel(unit=unit).values.ravel(), weight[unit])[0, 1]
        assert correlation > 0.8


def test_gabor_fit_recovers_a_synthetic_gabor():
    rows, cols = np.mgrid[0:16, 0:16].astype(float)
    row0, col0, theta, frequency, phase, along, across = 7.3, 8.1, 0.6, 0.15, 1.0, 2.5, 3.5
    dx, dy = cols - col0, rows - row0
    x_along = dx * np.cos(theta) + dy * np.sin(theta)
    x_across = -dx * np.sin(theta) + dy * np.cos(theta)
    patch = 2.0 * np.exp(-x_along**2 / (2 * along**2) - x_across**2 / (2 * across**2)) * np.cos(
        2 * np.pi * frequency * x_along + phase)
    noisy = patch + 0.05 * np.random.default_rng(0).standard_normal(patch.shape)
    fit = fit_gabor(noisy)
    assert fit["r2"] > 0.95
    assert fit["orientation"] == pytest.approx(theta, abs=0.05)
    assert fit["frequency"] == pytest.approx(frequency, abs=0.01)
    assert fit["sigma_along"] == pytest.approx(along, rel=0.1)
    assert fit["sigma_across"] == pytest.approx(across, rel=0.1)
    assert (fit["center_row"], fit["center_col"]) == pytest.approx((row0, col0), abs=0.2)
    # pure noise is not Gabor-like
    assert fit_gabor(np.random.default_rng(1).standard_normal((16, 16)))["r2"] < 0.5


def test_transform_returns_posterior_rates_with_coordinates():
    model = _model("negbio", data_range=(0.0, 1.0))
    images = torch.rand(7, *SHAPE)
    rates = model.transform(images, batch_size=3, stimulus=[f"s{i}" for i in range(7)],
                            labels=torch.arange(7) % 2)
    expected = model.family.latent.mean(model.posterior(images)).detach().numpy()
    assert rates.dims == ("stimulus", "unit") and rates.name == "rate"
    np.testing.assert_allclose(rates.values, expected, rtol=1e-5)
    assert list(rates["stimulus"].values[:2]) == ["s0", "s1"]
    assert rates["label"].values.tolist() == [0, 1, 0, 1, 0, 1, 0]
    features = _model("gaussian").transform(images[:, 0])  # (N, H, W) accepted for one channel
    assert features.name == "features" and features.shape == (7, 6)


def test_receptive_fields_dataset_and_grid(tmp_path):
    model = _model()
    images = torch.rand(20, *SHAPE) * 5 - 2
    fields = receptive_fields(model, images, batch_size=8)
    assert set(fields.data_vars) >= {"generative_field", "encoder_field", "activity",
                                      "activity_rank", "gabor_r2", "gabor_orientation"}
    assert fields["activity_rank"].values[np.argmax(fields["activity"].values)] == 0
    assert fields.attrs["gabor_fraction"] == gabor_fraction(fields)
    path = save_receptive_field_grid(fields, tmp_path / "fields.png")
    assert path.stat().st_size > 1000


def test_analyze_writes_receptive_fields_and_the_gabor_fraction(tmp_path):
    import json

    from spikelatent.cli import main

    out = tmp_path / "run"
    np.save(tmp_path / "patches.npy", np.random.default_rng(0).random((40, 12, 12)).astype(np.float32))
    assert main(["fit", "--data", str(tmp_path / "patches.npy"), "--arch", "linear",
                 "--model", "poisson", "--latent-dim", "4", "--epochs", "1", "--no-progress",
                 "--out", str(out)]) == 0
    assert main(["analyze", str(out), "--n-stimuli", "6", "--trials", "2"]) == 0
    report = json.loads((out / "analysis.json").read_text())
    fraction = report["receptive_fields"]["gabor_fraction"]
    assert 0 <= fraction <= 1
    assert report["population"]["sparsity"]["gabor_fraction"] == fraction
    import xarray as xr

    with xr.open_dataset(out / "receptive_fields.nc") as fields:
        assert fields.sizes["unit"] == 4 and "gabor_r2" in fields
    assert (out / "receptive_fields.png").is_file()

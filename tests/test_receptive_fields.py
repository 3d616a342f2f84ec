"""Receptive fields, Gabor fits and ``VAE.transform`` against closed forms (weights, numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from spikelatent.analysis.receptive_fields import (
    encoder_fields,
    fit_gabor,
    gabor,
    gabor_fits,
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


# The latent families' soft clamps in numpy (spikelatent.latents: sharpness 5, rate cap e^5,
# encoder outputs bounded by 5, log dispersion by 10): the oracle of the posterior rates below.
def _softplus(x, beta=5.0):
    return np.logaddexp(0.0, beta * x) / beta


def _upper(x, bound):
    return bound - _softplus(bound - x)


def _lower(x, bound):
    return bound + _softplus(x - bound)


def _symmetric(x, bound):
    return _lower(_upper(x, bound), -bound)


def _numpy_rates(model, images):
    """Posterior mean rates (N, unit) of a linear-encoder Poisson or NegBio (ds, absolute logits)
    model, from its weights in numpy."""
    weight = model.family.encoder.projection.weight.detach().double().numpy()
    bias = model.family.encoder.projection.bias.detach().double().numpy()
    h = images.reshape(len(images), -1).double().numpy() @ weight.T + bias
    latent = model.family.latent
    if latent.name == "poisson":
        log_prior = latent.prior_log_rate.detach().double().numpy()
        return np.exp(_upper(log_prior + _symmetric(h, 5.0), 5.0))
    assert latent.name == "negbio" and latent.kl_estimator == "ds"
    log_r = _symmetric(latent.prior_log_dispersion.detach().double().numpy(), 10.0)
    logit_q = _lower(_symmetric(h, 5.0), log_r - 5.0)
    return np.exp(log_r) * np.exp(-logit_q)  # NB mean r (1 - q) / q, q the success probability


def _numpy_prior_rates(model):
    return np.exp(_upper(model.family.latent.prior_log_rate.detach().double().numpy(), 5.0))


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
    base = _numpy_prior_rates(model)  # the Poisson prior rates

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


def test_gabor_jacobian_equals_central_differences():
    from spikelatent.analysis.receptive_fields import gabor_jacobian

    rng = np.random.default_rng(2)
    rows, cols = np.mgrid[0:9, 0:11].astype(float)
    for _ in range(4):
        params = np.array([rng.normal(), 4.3, 5.1, rng.uniform(0, 2 * np.pi), 0.13,
                           rng.uniform(0, 2 * np.pi), 2.2, 3.1, 0.3])
        steps = np.eye(9) * 1e-6
        numeric = np.stack([(gabor(params + h, rows, cols) - gabor(params - h, rows, cols)).ravel()
                            / 2e-6 for h in steps], axis=1)
        np.testing.assert_allclose(gabor_jacobian(params, rows, cols), numeric, atol=1e-7)


def test_transform_returns_posterior_rates_with_coordinates():
    model = _model("negbio", data_range=(0.0, 1.0))
    images = torch.rand(7, *SHAPE) * 4 - 1  # some encoder outputs near the clamps
    rates = model.transform(images, batch_size=3, stimulus=[f"s{i}" for i in range(7)],
                            labels=torch.arange(7) % 2)
    assert rates.dims == ("stimulus", "unit") and rates.name == "rate"
    np.testing.assert_allclose(rates.values, _numpy_rates(model, images), rtol=1e-5)
    assert list(rates["stimulus"].values[:2]) == ["s0", "s1"]
    assert rates["label"].values.tolist() == [0, 1, 0, 1, 0, 1, 0]
    gaussian = _model("gaussian")
    features = gaussian.transform(images[:, 0])  # (N, H, W) accepted for one channel
    weight = gaussian.family.encoder.projection.weight.detach().double().numpy()[:6]  # the locs
    bias = gaussian.family.encoder.projection.bias.detach().double().numpy()[:6]
    assert features.name == "features" and features.shape == (7, 6)
    np.testing.assert_allclose(features.values, images.reshape(7, -1).double().numpy() @ weight.T
                               + bias, rtol=1e-5, atol=1e-6)


def _gabor_field(side, n_x, frequency, phase, rng):
    """A Gabor with envelope n_x = σ_along · f cycles (Ringach 2002) at a random orientation."""
    rows, cols = np.mgrid[0:side, 0:side].astype(float)
    sigma = n_x / frequency
    centre = rng.uniform(side / 2 - 1.5, side / 2 + 1.5, 2)
    return gabor(np.array([rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 2.0), *centre,
                           rng.uniform(0, np.pi), frequency, phase, sigma,
                           sigma * rng.uniform(0.8, 1.6), 0.0]), rows, cols)


def _blob_field(side, rng):
    """An elongated Gaussian blob of either sign at a random position and orientation."""
    rows, cols = np.mgrid[0:side, 0:side].astype(float)
    row0, col0 = rng.uniform(side / 4, 3 * side / 4, 2)
    theta = rng.uniform(0, np.pi)
    along = (cols - col0) * np.cos(theta) + (rows - row0) * np.sin(theta)
    across = -(cols - col0) * np.sin(theta) + (rows - row0) * np.cos(theta)
    sigmas = rng.uniform(1.5, side / 5, 2)
    return rng.choice([-1.0, 1.0]) * np.exp(-along**2 / (2 * sigmas[0]**2)
                                            - across**2 / (2 * sigmas[1]**2))


def _as_fields(fields, rng, noise=0.05):
    fields = np.stack(fields)
    fields = fields + noise * np.abs(fields).max(axis=(1, 2), keepdims=True) * rng.standard_normal(
        fields.shape)
    return xr.DataArray(fields[:, None], dims=("unit", "channel", "row", "col"),
                        coords={"unit": np.arange(len(fields))})


def test_gabor_like_counts_gabors_of_one_to_two_periods_and_no_blob_or_noise():
    """Ground truth by construction: Gabors with 1.2 to 2 periods of the carrier within the
    envelope's ±2σ (n_x = 0.3 .. 0.5; even, odd and mixed phases) all count; Gaussian blobs —
    which a Gabor fits well with f ≈ 0, so R² alone counted them — and white noise do not; nor
    does a Gabor with under half a period in ±2σ (n_x = 0.1)."""
    rng = np.random.default_rng(3)
    side = 24
    gabors = [(n_x, phase) for n_x in (0.3, 0.4, 0.5) for phase in (0.0, np.pi / 2)] + [(0.4, 1.2)]
    fields = [_gabor_field(side, n_x, rng.uniform(0.1, 0.2), phase, rng) for n_x, phase in gabors]
    fields += [_blob_field(side, rng) for _ in range(5)]
    fields += [rng.standard_normal((side, side)) for _ in range(3)]
    fields += [_gabor_field(side, 0.1, 0.05, 0.0, rng)]
    truth = np.array([True] * len(gabors) + [False] * 9)
    fits = gabor_fits(_as_fields(fields, rng))
    np.testing.assert_array_equal(fits["gabor_like"].values, truth)
    assert gabor_fraction(fits) == pytest.approx(truth.mean())
    # Ringach's n_x = σ_along · f recovered from the fits, 10 % (5 % noise on the fields)
    np.testing.assert_allclose(fits["gabor_nx"].values[:len(gabors)],
                               [n_x for n_x, _ in gabors], rtol=0.1)
    # the blobs are good fits: R² is not what rejects them, the envelope's cycles are
    blobs = slice(len(gabors), len(gabors) + 5)
    assert (fits["gabor_r2"].values[blobs] >= 0.8).all()
    assert (fits["gabor_nx"].values[blobs] < 0.15).all()
    assert gabor_fraction(fits, min_nx=-np.inf) == pytest.approx((len(gabors) + 6) / len(fields))


def test_receptive_fields_of_a_decoder_drawn_from_gabors_blobs_and_noise(tmp_path):
    """A linear decoder whose weight columns are 3 Gabors, 2 blobs and 1 noise field (identity
    output, so each generative field is its column): the Gabor fraction is 3/6 by construction,
    the activity the numpy mean of the posterior rates."""
    rng = np.random.default_rng(5)
    side = 16
    torch.manual_seed(0)
    model = VAE({"data": "digits", "model": "poisson", "arch": "linear", "latent_dim": 6},
                (1, side, side), (-2.0, 3.0)).eval()
    columns = [_gabor_field(side, n_x, 0.18, phase, rng)
               for n_x, phase in ((0.35, 0.0), (0.45, np.pi / 2), (0.5, 1.0))]
    columns += [_blob_field(side, rng) for _ in range(2)] + [rng.standard_normal((side, side))]
    with torch.no_grad():
        model.family.decoder.projection.weight.copy_(torch.tensor(
            np.stack([column.ravel() for column in columns], axis=1), dtype=torch.float32))
    images = torch.rand(20, 1, side, side) * 5 - 2
    fields = receptive_fields(model, images, batch_size=8)
    assert set(fields.data_vars) >= {"generative_field", "encoder_field", "activity",
                                      "activity_rank", "gabor_r2", "gabor_orientation",
                                      "gabor_nx", "gabor_ny", "gabor_like"}
    np.testing.assert_allclose(fields["activity"].values, _numpy_rates(model, images).mean(0),
                               rtol=1e-5)
    assert fields["activity_rank"].values[np.argmax(fields["activity"].values)] == 0
    np.testing.assert_array_equal(fields["gabor_like"].values, [1, 1, 1, 0, 0, 0])
    assert fields.attrs["gabor_fraction"] == pytest.approx(0.5)
    assert fields.attrs["good_fit_fraction"] == pytest.approx(5 / 6)
    activity = _numpy_rates(model, images).mean(0)
    active = activity >= 0.01 * activity.max()
    assert fields.attrs["gabor_fraction_active"] == pytest.approx(
        np.array([1, 1, 1, 0, 0, 0])[active].mean())
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
    numbers = report["receptive_fields"]
    with xr.open_dataset(out / "receptive_fields.nc") as fields:
        assert fields.sizes["unit"] == 4
        r2 = fields["gabor_r2"].values
        n_x = fields["gabor_sigma_along"].values * fields["gabor_frequency"].values
    # the reported shares are those of the saved per-unit fits, recomputed here in numpy
    assert numbers["gabor_fraction"] == pytest.approx(np.mean((r2 >= 0.5) & (n_x >= 0.25)))
    assert numbers["good_fit_fraction"] == pytest.approx(np.mean(r2 >= 0.5))
    assert numbers["gabor_r2_median"] == pytest.approx(np.median(r2))
    assert report["population"]["sparsity"]["gabor_fraction"] == numbers["gabor_fraction"]
    assert (out / "receptive_fields.png").is_file()

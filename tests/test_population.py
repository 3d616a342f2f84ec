"""Latent populations: exact NB/Poisson statistics for a model whose parameters are set by hand."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st
import torch
import xarray as xr

from spikelatent.config import FitConfig
from spikelatent.errors import SpikelatentError
from spikelatent.model import VAE
from spikelatent.populations import population

UNITS = 6


def hand_set_model(model: str, kl: str = "ds") -> tuple[VAE, dict[str, np.ndarray]]:
    """A linear-encoder model whose encoder ignores the image and emits fixed values u.

    For NB: prior r_k, p_k chosen; posterior q_k = sigmoid(logit p_k + u_k) (docs/architecture.md, "The mathematics"), with
    every value far from the soft clamps (|u| < 10, posterior mean < e^5).
    """
    # The relative parameterization, bound 10 (as in the reference Poisson VAE), set explicitly.
    config = FitConfig(model=model, kl=kl, latent_dim=UNITS, arch="linear",
                       posterior_logits="relative" if model == "negbio" else "absolute",
                       modulation_bound=10.0).resolved()
    vae = VAE(config.to_dict(), (1, 28, 28), (0.0, 1.0))
    linear = [m for m in vae.family.encoder.modules() if isinstance(m, torch.nn.Linear)][0]
    u = torch.linspace(-3.0, 1.0, UNITS, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        linear.bias[:UNITS] = u.float()
    expected: dict[str, np.ndarray] = {}
    if model == "negbio":
        r = np.array([0.1, 1.0, 2.0, 4.0, 8.0, 0.25])  # logit q stays > 2 units from its clamp
        p = np.array([0.3, 0.5, 0.6, 0.7, 0.8, 0.9])
        with torch.no_grad():
            vae.family.latent.prior_log_dispersion.copy_(torch.log(torch.tensor(r)))
            vae.family.latent.prior_logit_prob.copy_(torch.logit(torch.tensor(p)))
        logit_q = np.log(p / (1 - p)) + u.numpy()
        q = 1 / (1 + np.exp(-logit_q))
        expected = {"r": r, "q": q, "prior_p": p}
    else:
        log_rate = np.log(np.array([0.5, 1.0, 2.0, 3.0, 4.0, 6.0]))
        with torch.no_grad():
            vae.family.latent.prior_log_rate.copy_(torch.tensor(log_rate))
        expected = {"rate": np.exp(log_rate + u.numpy()),
                    "prior_rate": np.exp(log_rate)}
    return vae.eval(), expected


def test_negbio_population_matches_the_nb_formulas():
    vae, expected = hand_set_model("negbio")
    images = torch.rand(5, 1, 28, 28)
    pop = population(vae, images, labels=[0, 1, 2, 1, 0], n_trials=2000, progress=False)
    r, q = expected["r"], expected["q"]
    # Oracle: scipy's nbinom has the same (n=r, p) convention.
    np.testing.assert_allclose(pop.rate.values, np.broadcast_to(st.nbinom.mean(r, q), (5, UNITS)), rtol=1e-5)
    np.testing.assert_allclose(pop.variance.values, np.broadcast_to(st.nbinom.var(r, q), (5, UNITS)), rtol=1e-4)
    np.testing.assert_allclose(pop.fano_factor.values, np.broadcast_to(1 / q, (5, UNITS)), rtol=1e-5)
    np.testing.assert_allclose(pop.dispersion.values[0], r, rtol=1e-5)
    np.testing.assert_allclose(pop.prob.values[0], q, rtol=1e-5)
    np.testing.assert_allclose(pop.prior_fano_factor.values, 1 / expected["prior_p"], rtol=1e-5)
    np.testing.assert_allclose(pop.prior_rate.values, st.nbinom.mean(r, expected["prior_p"]), rtol=1e-5)
    assert pop.counts.dims == ("trial", "stimulus", "unit")
    # The smallest unsigned type holding the largest count (numpy's own choice as the oracle).
    assert pop.counts.dtype == np.min_scalar_type(int(pop.counts.max()))
    # Unsigned: arithmetic below zero needs a wider signed type first (docs/analysis.md).
    zero = pop.counts.values == 0
    assert zero.any() and np.all((pop.counts.astype(np.int64) - 1).values[zero] == -1)
    assert list(pop.label.values) == [0, 1, 2, 1, 0]

    # Empirical Fano factor over 2000 trials lies within its 99.9% CI of 1/q. The CI of the sample
    # variance comes from the exact NB moments (delta method on var/mean), computed here by hand.
    counts = pop.counts.values.astype(float)  # (trial, stimulus, unit)
    n = counts.shape[0]
    fano = counts.var(0, ddof=1) / counts.mean(0)
    mean, var = st.nbinom.mean(r, q), st.nbinom.var(r, q)
    m3 = st.nbinom.stats(r, q, moments="s") * var**1.5
    m4 = (st.nbinom.stats(r, q, moments="k") + 3) * var**2
    # Var of (s^2/xbar) by the delta method with the joint moments of (xbar, s^2).
    var_s2 = (m4 - var**2) / n
    cov = m3 / n
    var_xbar = var / n
    se = np.sqrt(var_s2 / mean**2 + var**2 * var_xbar / mean**4 - 2 * var * cov / mean**3)
    z = np.abs(fano - 1 / q) / se
    assert np.all(z < 3.3), z


def test_poisson_population_has_unit_fano_factor():
    vae, expected = hand_set_model("poisson")
    pop = population(vae, torch.rand(3, 1, 28, 28), n_trials=4000, progress=False, seed=7)
    np.testing.assert_allclose(pop.rate.values[0], expected["rate"], rtol=1e-5)
    np.testing.assert_allclose(pop.fano_factor.values, 1.0)
    np.testing.assert_allclose(pop.prior_rate.values, expected["prior_rate"], rtol=1e-5)
    assert np.isinf(pop.dispersion.values).all()
    counts = pop.counts.values.astype(float)
    # Mean of 4000 Poisson draws within 4 standard errors of the rate.
    se = np.sqrt(expected["rate"] / 4000)
    assert np.all(np.abs(counts.mean(0) - expected["rate"]) < 4 * se)


def test_netcdf_round_trip_is_exact(tmp_path):
    vae, _ = hand_set_model("negbio")
    pop = population(vae, torch.rand(4, 1, 28, 28), labels=np.arange(4), n_trials=3, progress=False)
    path = tmp_path / "population.nc"
    pop.to_netcdf(path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf") as loaded:
        xr.testing.assert_identical(loaded.load(), pop)


def test_population_is_seeded_and_batched():
    vae, _ = hand_set_model("negbio")
    images = torch.rand(7, 1, 28, 28)
    a = population(vae, images, n_trials=5, seed=3, batch_size=2, progress=False)
    b = population(vae, images, n_trials=5, seed=3, batch_size=7, progress=False)
    assert a.counts.shape == (5, 7, UNITS)
    np.testing.assert_array_equal(a.rate.values, b.rate.values)
    c = population(vae, images, n_trials=5, seed=3, batch_size=2, progress=False)
    np.testing.assert_array_equal(a.counts.values, c.counts.values)


def test_population_errors_are_clear():
    gaussian = VAE(FitConfig(model="gaussian", latent_dim=4, arch="linear").resolved().to_dict(),
                   (1, 28, 28))
    with pytest.raises(SpikelatentError, match="populations exist for count models"):
        population(gaussian, torch.rand(2, 1, 28, 28))
    vae, _ = hand_set_model("negbio")
    with pytest.raises(SpikelatentError, match=r"shape \(stimulus, 1, 28, 28\)"):
        population(vae, torch.rand(2, 3, 16, 16))
    with pytest.raises(SpikelatentError, match="labels has 3 entries"):
        population(vae, torch.rand(2, 1, 28, 28), labels=[1, 2, 3])
    with pytest.raises(SpikelatentError, match="n_trials"):
        population(vae, torch.rand(2, 1, 28, 28), n_trials=-1)
    with pytest.raises(SpikelatentError, match="NaN"):
        population(vae, torch.full((1, 1, 28, 28), float("nan")))

"""The fit hookup of issue 13: ``--nb-sampler`` and ``--kl series`` in the NegBio latent family."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st
import torch

from spikelatent.config import FitConfig
from spikelatent.errors import SpikelatentError
from spikelatent.latents import make_latent_family


def test_series_kl_of_the_latent_equals_the_scipy_series_per_unit():
    torch.manual_seed(0)
    latent = make_latent_family("negbio", 4, kl="series", relax="ct", nb_sampler="counting")
    assert latent.encoder_outputs == 8  # u_p and u_r, as for MC
    h = 0.5 * torch.randn(3, 8)
    posterior, prior = latent.posterior(h), latent.prior()
    kl = latent.kl_per_unit(posterior, temperature=0.5)
    assert kl.shape == (3, 4)
    for b in range(3):
        for u in range(4):
            r_q, q = float(posterior.total_count[b, u]), float(posterior.probs[b, u])
            r_p, p = float(prior.total_count[u]), float(prior.probs[u])
            z = np.arange(int(st.nbinom.ppf(1 - 1e-15, r_q, q)) + 50)
            log_q, log_p = st.nbinom.logpmf(z, r_q, q), st.nbinom.logpmf(z, r_p, p)
            assert float(kl[b, u]) == pytest.approx(np.sum(np.exp(log_q) * (log_q - log_p)), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("relax", ["ct", "gumbel"])
def test_counting_sampler_in_the_latent_gives_gradients_to_encoder_and_prior(relax):
    torch.manual_seed(0)
    latent = make_latent_family("negbio", 5, kl="mc", relax=relax, mc_samples=2, nb_sampler="counting")
    h = torch.randn(4, 10, requires_grad=True)
    sample, kl = latent.rsample_with_kl(latent.posterior(h), temperature=0.5)
    assert sample.shape == (4, 5) and kl.shape == (4,)
    (sample.sum() + kl.sum()).backward()
    assert torch.isfinite(h.grad).all() and h.grad.abs().sum() > 0
    assert latent.prior_log_dispersion.grad is not None


def test_bad_sampler_and_kl_values_are_one_line_errors():
    with pytest.raises(SpikelatentError, match="nb_sampler"):
        make_latent_family("negbio", 4, nb_sampler="poisson-gamma")
    with pytest.raises(SpikelatentError, match="--nb-sampler must be one of"):
        FitConfig(data="synthetic", model="negbio", nb_sampler="gamma").resolved()
    with pytest.raises(SpikelatentError, match="--kl must be one of"):
        FitConfig(data="synthetic", model="negbio", kl="exact").resolved()


def test_config_keeps_the_sampler_and_the_series_kl():
    config = FitConfig(data="synthetic", model="negbio", kl="series", nb_sampler="counting").resolved()
    values = config.to_dict()
    assert values["nb_sampler"] == "counting" and values["kl"] == "series"
    assert FitConfig().nb_sampler == "gamma-poisson"

"""NegBio-VAE: negative-binomial latents (``--model negbio``, paper Eq. 3 and App. A)."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, kl_divergence

from spikelatent import options
from spikelatent.distributions import (
    NegativeBinomial,
    kl_from_samples,
    kl_monte_carlo,
    kl_series,
    relaxed_poisson_gumbel_fixed_support,
)
from spikelatent.errors import SpikelatentError
from spikelatent.families.single_layer import (
    MAX_ABS_LOG_MODULATION,
    MAX_LOG_RATE,
    TRAINING_SERIES_TOLERANCE,
    LatentFamily,
    _check_modulation_bound,
    initial_prior_log_mean,
    register_single_layer,
    soft_lower_clamp,
    soft_symmetric_clamp,
)
from spikelatent.options import display_name


class NegativeBinomialLatent(LatentFamily):
    """NegBio-VAE: prior NB(r, p) per unit, posterior NB(r * delta_r(x), p * delta_p(x)).

    Parameters are kept unconstrained (log r, logit p). The encoder emits ``u_p`` (and ``u_r``
    for ``kl="mc"``); the posterior success probability is ``q = sigmoid(logit p + u_p)`` so it
    stays in (0, 1) by construction, and ``r_post = r * exp(u_r)``. With ``kl="ds"`` the
    dispersion is shared (delta_r = 1) and the KL is the closed form of paper Eq. 3.
    The posterior mean ``r_post (1 - q) / q`` is soft-clamped at e^5 through a lower bound
    on ``logit q``.
    """

    name = "negbio"
    is_count = True

    def __init__(
        self,
        latent_dim: int,
        kl: str = options.KL.default,
        relax: str = options.RELAX.default,
        mc_samples: int = options.MC_SAMPLES.default,
        prior_init: str = options.PRIOR_INIT.default,
        posterior_logits: str = options.POSTERIOR_LOGITS.default,
        modulation_bound: float = options.MODULATION_BOUND.default,
        mc_kl: str = options.MC_KL.default,
        gumbel_support: int | None = options.GUMBEL_SUPPORT.default,
        nb_sampler: str = options.NB_SAMPLER.default,
    ) -> None:
        super().__init__(latent_dim)
        nb_sampler = options.NB_SAMPLER.check(nb_sampler)
        if nb_sampler == "counting" and gumbel_support is not None:
            raise SpikelatentError(
                "gumbel_support fixes the support of the Gamma-Poisson Gumbel step; drop it or use "
                "nb_sampler='gamma-poisson'"
            )
        self.nb_sampler = nb_sampler
        self.mc_kl = options.MC_KL.check(mc_kl)
        self.posterior_logits = options.POSTERIOR_LOGITS.check(posterior_logits)
        self.modulation_bound = _check_modulation_bound(modulation_bound)
        self.gumbel_support = gumbel_support
        kl = options.KL.check(kl)
        relax = options.RELAX.check(relax)
        if int(mc_samples) != mc_samples or mc_samples < 1:
            raise SpikelatentError(f"mc_samples must be a positive integer; got {mc_samples}")
        self.kl_estimator = kl
        self.relax = relax
        self.mc_samples = int(mc_samples)
        # Prior: r = 1 and the mean r(1-p)/p of initial_prior_log_mean (unit: p = 0.5).
        prior_log_mean = initial_prior_log_mean(latent_dim, prior_init)
        self.prior_log_dispersion = nn.Parameter(torch.zeros(latent_dim))
        # logit p = log r - log mean, since (1 - p) / p = mean / r.
        self.prior_logit_prob = nn.Parameter(self.prior_log_dispersion.detach() - prior_log_mean)

    @property
    def own_dispersion(self) -> bool:
        """Whether the posterior has its own dispersion r_post = r · exp(u_r) (``mc`` and ``series``)."""
        return self.kl_estimator in ("mc", "series")

    @property
    def encoder_outputs(self) -> int:
        return self.latent_dim * (2 if self.own_dispersion else 1)

    @property
    def variant(self) -> str:
        return display_name(self.name, self.kl_estimator, self.relax)

    def prior_log_r(self) -> torch.Tensor:
        return soft_symmetric_clamp(self.prior_log_dispersion, MAX_ABS_LOG_MODULATION)

    def prior_logits(self) -> torch.Tensor:
        return soft_lower_clamp(self.prior_logit_prob, self.prior_log_r() - MAX_LOG_RATE)

    def posterior_parameters(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior (log r_post, logit q), each (batch, unit)."""
        log_r = self.prior_log_r()
        if self.own_dispersion:
            u_p, u_r = h.chunk(2, dim=-1)
            log_r = log_r + soft_symmetric_clamp(u_r, self.modulation_bound)
        else:
            u_p = h
            log_r = log_r.expand_as(u_p)
        logit_q = soft_symmetric_clamp(u_p, self.modulation_bound)
        if self.posterior_logits == "relative":
            logit_q = self.prior_logits() + logit_q
        return log_r, soft_lower_clamp(logit_q, log_r - MAX_LOG_RATE)

    def posterior(self, h: torch.Tensor) -> Distribution:
        log_r, logit_q = self.posterior_parameters(h)
        if self.kl_estimator == "ds":
            # Share the very tensor of the prior's r so the DS KL's equality check is exact.
            r = self.prior_log_r().exp().expand_as(logit_q)
        else:
            r = log_r.exp()
        return NegativeBinomial(r, logits=logit_q, validate_args=False)

    def prior(self) -> Distribution:
        return NegativeBinomial(
            self.prior_log_r().exp(), logits=self.prior_logits(), validate_args=False
        )

    def rsample(self, posterior: Distribution, temperature: float) -> torch.Tensor:
        if temperature <= 0:
            return self.sample(posterior)
        return self._relaxed(posterior, (), temperature)

    def _relaxed(
        self, posterior: Distribution, sample_shape: tuple[int, ...], temperature: float
    ) -> torch.Tensor:
        if self.relax == "gumbel" and self.gumbel_support is not None:
            rate = posterior.rsample_rate(sample_shape)
            return relaxed_poisson_gumbel_fixed_support(rate, temperature, self.gumbel_support)
        return posterior.rsample(
            sample_shape, relaxation=self.relax, temperature=temperature, sampler=self.nb_sampler
        )

    def rsample_with_kl(
        self, posterior: Distribution, temperature: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """With ``kl="mc"`` the decoder gets the first of the S relaxed samples of the KL estimate.

        Both terms of the ELBO stay unbiased (each uses samples of q), and a step draws S relaxed
        samples instead of S + 1.
        """
        if self.kl_estimator != "mc" or self.mc_kl == "gamma" or temperature <= 0:
            return super().rsample_with_kl(posterior, temperature)
        samples = self._relaxed(posterior, (self.mc_samples,), temperature)
        return samples[0], kl_from_samples(posterior, self.prior(), samples).sum(-1)

    def kl_per_unit(self, posterior: Distribution, temperature: float) -> torch.Tensor:
        prior = self.prior()
        if self.kl_estimator == "ds":
            return kl_divergence(posterior, prior)
        if self.kl_estimator == "series":
            # No sampling noise. Truncated at 1e-5 posterior mass and summed in float32: ~4e-5
            # nats per image of error on (128, 256) posteriors, 16-31 % cheaper than at 1e-6
            # (benchmarks/series_tolerance.py); kl_series' own default stays 1e-6.
            return kl_series(posterior, prior, tolerance=TRAINING_SERIES_TOLERANCE, accurate=False)
        if self.mc_kl == "gamma":
            # The published code's MC KL: between the Gamma mixing distributions of the rates,
            # KL(q_λ || p_λ) >= KL(q_z || p_z) by the data-processing inequality.
            return kl_divergence(posterior.rate_distribution(), prior.rate_distribution())
        return kl_monte_carlo(
            posterior,
            prior,
            n_samples=self.mc_samples,
            relaxation=self.relax if temperature > 0 else None,
            temperature=temperature if temperature > 0 else 1.0,
        )


register_single_layer(
    "negbio",
    lambda config: NegativeBinomialLatent(
        config.latent_dim, kl=config.kl, relax=config.relax, mc_samples=config.mc_samples,
        prior_init=config.prior_init, posterior_logits=config.posterior_logits,
        modulation_bound=config.modulation_bound, mc_kl=config.mc_kl,
        gumbel_support=config.gumbel_support, nb_sampler=config.nb_sampler),
)

"""P-VAE: Poisson latents with a learnable prior rate (``--model poisson``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution

from spikelatent import options
from spikelatent.distributions import Poisson, relaxed_poisson_gumbel_fixed_support
from spikelatent.families.single_layer import (
    MAX_LOG_RATE,
    LatentFamily,
    _check_modulation_bound,
    initial_prior_log_mean,
    register_single_layer,
    soft_symmetric_clamp,
    soft_upper_clamp,
)


class PoissonLatent(LatentFamily):
    """P-VAE: prior Poisson(r) with learnable log r; posterior Poisson(r * delta_r(x)).

    The encoder emits log delta_r (soft-clamped); the posterior rate is soft-clamped at e^5.
    """

    name = "poisson"
    is_count = True

    def __init__(
        self,
        latent_dim: int,
        relax: str = options.RELAX.default,
        prior_init: str = options.PRIOR_INIT.default,
        modulation_bound: float = options.MODULATION_BOUND.default,
        gumbel_support: int | None = options.GUMBEL_SUPPORT.default,
    ) -> None:
        super().__init__(latent_dim)
        self.relax = options.RELAX.check(relax)
        self.modulation_bound = _check_modulation_bound(modulation_bound)
        self.gumbel_support = gumbel_support
        # "unit": rate 1 (the NegBio-VAE code); "sparse": log r ~ U(-6, -2) (reference P-VAE).
        self.prior_log_rate = nn.Parameter(initial_prior_log_mean(latent_dim, prior_init))

    def prior_rate(self) -> torch.Tensor:
        return torch.exp(soft_upper_clamp(self.prior_log_rate, MAX_LOG_RATE))

    def posterior_log_rate(self, h: torch.Tensor) -> torch.Tensor:
        log_delta = soft_symmetric_clamp(h, self.modulation_bound)
        return soft_upper_clamp(self.prior_log_rate + log_delta, MAX_LOG_RATE)

    def posterior(self, h: torch.Tensor) -> Distribution:
        return Poisson(torch.exp(self.posterior_log_rate(h)), validate_args=False)

    def prior(self) -> Distribution:
        return Poisson(self.prior_rate(), validate_args=False)

    def rsample(self, posterior: Distribution, temperature: float) -> torch.Tensor:
        if temperature <= 0:
            return self.sample(posterior)
        if self.relax == "gumbel" and self.gumbel_support is not None:
            return relaxed_poisson_gumbel_fixed_support(
                posterior.rate, temperature, self.gumbel_support
            )
        return posterior.rsample(relaxation=self.relax, temperature=temperature)


register_single_layer(
    "poisson",
    lambda config: PoissonLatent(
        config.latent_dim, relax=config.relax, prior_init=config.prior_init,
        modulation_bound=config.modulation_bound, gumbel_support=config.gumbel_support),
)

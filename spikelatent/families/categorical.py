"""C-VAE: groups of one-hot categorical latents, uniform prior (``--model categorical``)."""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, OneHotCategorical, RelaxedOneHotCategorical

from spikelatent.errors import SpikelatentError
from spikelatent.families.single_layer import (
    LatentFamily,
    register_single_layer,
)


class CategoricalLatent(LatentFamily):
    """C-VAE: ``groups`` independent one-hot codes of ``categories`` each, uniform prior.

    The latent code fed to the decoder is the concatenation of the (relaxed) one-hot vectors,
    (batch, groups * categories) = (batch, latent_dim).
    """

    name = "categorical"

    def __init__(self, latent_dim: int, categories: int = 8) -> None:
        super().__init__(latent_dim)
        if categories < 2 or latent_dim % categories:
            raise SpikelatentError(
                f"categorical latents need latent_dim divisible by categories >= 2; got "
                f"latent_dim={latent_dim}, categories={categories} (set --categories)"
            )
        self.categories = int(categories)
        self.groups = latent_dim // categories
        self.register_buffer("_device_anchor", torch.zeros(()), persistent=False)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return h.reshape(*h.shape[:-1], self.groups, self.categories)

    def posterior(self, h: torch.Tensor) -> Distribution:
        return OneHotCategorical(logits=self._logits(h), validate_args=False)

    def prior(self) -> Distribution:
        logits = torch.zeros(self.groups, self.categories, device=self._device_anchor.device)
        return OneHotCategorical(logits=logits, validate_args=False)

    def flat(self, z: torch.Tensor) -> torch.Tensor:
        return z.reshape(*z.shape[:-2], self.latent_dim)

    def rsample(self, posterior: Distribution, temperature: float) -> torch.Tensor:
        if temperature <= 0:
            return self.sample(posterior)
        relaxed = RelaxedOneHotCategorical(
            torch.tensor(temperature, device=posterior.logits.device),
            logits=posterior.logits,
            validate_args=False,
        )
        return self.flat(relaxed.rsample())

    def sample(self, posterior: Distribution) -> torch.Tensor:
        with torch.no_grad():
            return self.flat(posterior.sample())

    def mean(self, posterior: Distribution) -> torch.Tensor:
        return self.flat(posterior.probs)

    def kl_per_unit(self, posterior: Distribution, temperature: float) -> torch.Tensor:
        # KL(q || uniform) = sum_k q_k log q_k + log C, per group, (batch, group).
        log_q = torch.log_softmax(posterior.logits, dim=-1)
        return (log_q.exp() * log_q).sum(-1) + math.log(self.categories)

    def sample_prior(self, n: int) -> torch.Tensor:
        with torch.no_grad():
            return self.flat(self.prior().sample((n,)))


register_single_layer(
    "categorical",
    lambda config: CategoricalLatent(config.latent_dim, categories=config.categories),
)

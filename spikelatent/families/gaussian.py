"""G-VAE: Normal posterior, standard-normal prior (``--model gaussian``)."""

from __future__ import annotations

import torch
from torch.distributions import Distribution, Normal

from spikelatent.families.single_layer import (
    MAX_ABS_LOG_MODULATION,
    LatentFamily,
    register_single_layer,
    soft_symmetric_clamp,
)


class GaussianLatent(LatentFamily):
    """G-VAE: Normal posterior, standard-normal prior."""

    name = "gaussian"
    uses_temperature = False
    distribution_class: type[Distribution] = Normal

    @property
    def encoder_outputs(self) -> int:
        return 2 * self.latent_dim

    def posterior(self, h: torch.Tensor) -> Distribution:
        loc, log_scale = h.chunk(2, dim=-1)
        scale = torch.exp(soft_symmetric_clamp(log_scale, MAX_ABS_LOG_MODULATION))
        return self.distribution_class(loc, scale, validate_args=False)

    def prior(self) -> Distribution:
        zeros = torch.zeros(self.latent_dim, device=self._device())
        return self.distribution_class(zeros, torch.ones_like(zeros), validate_args=False)

    def _device(self) -> torch.device:
        # Parameter-free family: take the device from a registered buffer.
        return self._device_anchor.device

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.register_buffer("_device_anchor", torch.zeros(()), persistent=False)

    def rsample(self, posterior: Distribution, temperature: float) -> torch.Tensor:
        return posterior.rsample()

    def features(self, h: torch.Tensor) -> torch.Tensor:
        return h.chunk(2, dim=-1)[0]


register_single_layer("gaussian", lambda config: GaussianLatent(config.latent_dim))

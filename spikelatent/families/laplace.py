"""L-VAE: Laplace posterior, standard Laplace prior (``--model laplace``)."""

from __future__ import annotations

from torch.distributions import Laplace

from spikelatent.families.gaussian import GaussianLatent
from spikelatent.families.single_layer import (
    register_single_layer,
)


class LaplaceLatent(GaussianLatent):
    """L-VAE: Laplace posterior, standard Laplace(0, 1) prior."""

    name = "laplace"
    distribution_class = Laplace


register_single_layer("laplace", lambda config: LaplaceLatent(config.latent_dim))

"""Count distributions for spiking latents: negative binomial and Poisson, relaxed samplers and KL divergences.

Paper convention: ``NegativeBinomial(total_count=r, probs=p)`` with p the *success* probability
(mean r(1 − p)/p). torch's own ``NegativeBinomial`` uses ``probs = 1 − p``: do not mix the two.
Importing this package registers the closed-form KLs with ``torch.distributions.kl_divergence``.
"""

from spikelatent.distributions import kl
from spikelatent.distributions.counting import (
    NB_SAMPLERS,
    nb_support_size,
    relaxed_negative_binomial_continuous_time,
    relaxed_negative_binomial_gumbel,
)
from spikelatent.distributions.gamma import standard_gamma
from spikelatent.distributions.kl import *  # noqa: F403  (its __all__: the KL functions)
from spikelatent.distributions.negative_binomial import NegativeBinomial
from spikelatent.distributions.poisson import Poisson
from spikelatent.distributions.relaxed import (
    DEFAULT_CAP,
    RELAXATIONS,
    poisson_support_size,
    relaxed_poisson,
    relaxed_poisson_continuous_time,
    relaxed_poisson_gumbel,
    relaxed_poisson_gumbel_fixed_support,
)

__all__ = [
    "DEFAULT_CAP",
    "RELAXATIONS",
    "NegativeBinomial",
    "Poisson",
    *kl.__all__,
    "NB_SAMPLERS",
    "nb_support_size",
    "relaxed_negative_binomial_continuous_time",
    "relaxed_negative_binomial_gumbel",
    "poisson_support_size",
    "relaxed_poisson",
    "relaxed_poisson_continuous_time",
    "relaxed_poisson_gumbel",
    "relaxed_poisson_gumbel_fixed_support",
    "standard_gamma",
]

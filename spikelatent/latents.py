"""The distribution layers of the single-layer model kinds, importable by their old names.

Each lives in its own module of :mod:`spikelatent.families`; a :class:`LatentFamily` turns the encoder's output ``h`` (batch, encoder_outputs) into a
posterior distribution over the latent code, holds the prior (with its learnable parameters),
draws relaxed (training) or hard (evaluation) samples and computes the KL term per image.

| family        | paper name          | posterior                                 | KL                   |
|---------------|---------------------|-------------------------------------------|----------------------|
| `gaussian`    | G-VAE               | Normal(loc, scale)                        | closed form          |
| `laplace`     | L-VAE               | Laplace(loc, scale)                       | closed form          |
| `categorical` | C-VAE               | groups x categories, Gumbel-softmax       | closed form, uniform |
| `poisson`     | P-VAE               | Poisson(r * delta_r)                      | closed form          |
| `negbio`      | NegBio-VAE MC/DS-G/C | NB(r * delta_r, p * delta_p)             | `ds` closed / `mc`   |

The family names are ``spikelatent fit --model``'s; every option's values and defaults come from
:mod:`spikelatent.options`, so ``make_latent_family(name, K)`` builds what ``spikelatent fit``
builds with the same options.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from spikelatent import options
from spikelatent.errors import SpikelatentError
from spikelatent.families.categorical import CategoricalLatent
from spikelatent.families.gaussian import GaussianLatent
from spikelatent.families.laplace import LaplaceLatent
from spikelatent.families.negbio import NegativeBinomialLatent
from spikelatent.families.poisson import PoissonLatent
from spikelatent.families.single_layer import (
    CLAMP_SHARPNESS,
    LATENT_FAMILIES,
    MAX_ABS_LOG_MODULATION,
    MAX_LOG_RATE,
    PAPER_MODEL_ORDER,
    TRAINING_SERIES_TOLERANCE,
    LatentFamily,
    initial_prior_log_mean,
    soft_lower_clamp,
    soft_symmetric_clamp,
    soft_upper_clamp,
)
from spikelatent.options import PAPER_MODELS

__all__ = [
    "CLAMP_SHARPNESS",
    "MAX_ABS_LOG_MODULATION",
    "MAX_LOG_RATE",
    "PAPER_MODELS",
    "PAPER_MODEL_ORDER",
    "TRAINING_SERIES_TOLERANCE",
    "CategoricalLatent",
    "GaussianLatent",
    "LaplaceLatent",
    "LatentFamily",
    "NegativeBinomialLatent",
    "PoissonLatent",
    "initial_prior_log_mean",
    "make_latent_family",
    "soft_lower_clamp",
    "soft_symmetric_clamp",
    "soft_upper_clamp",
]


def make_latent_family(name: str, latent_dim: int = options.LATENT_DIM.default,
                       **settings: Any) -> LatentFamily:
    """Build a latent family by ``spikelatent fit --model`` name (``negbinomial`` and ``nb`` are
    accepted for ``negbio``), with the same defaults as ``spikelatent fit``
    (:mod:`spikelatent.options`): the family each kind registers, given those options.

    ``settings`` are the family's options by field name (``kl``, ``relax``, ``mc_samples``,
    ``categories``, ``prior_init``, ``posterior_logits``, ``modulation_bound``, ``mc_kl``,
    ``gumbel_support``, ``nb_sampler``; docs/training.md).
    """
    name = options.MODEL.canonical(name)
    if name not in LATENT_FAMILIES:
        raise SpikelatentError(f"unknown model {name!r}; choose one of {', '.join(options.MODELS)}")
    defaults = {option.name: option.default for option in vars(options).values()
                if isinstance(option, options.Option)}
    unknown = set(settings) - set(defaults)
    if unknown:
        raise SpikelatentError(f"unknown latent family options: {', '.join(sorted(unknown))}")
    return LATENT_FAMILIES[name](SimpleNamespace(**{**defaults, **settings,
                                                    "latent_dim": latent_dim}))

"""Single-layer models: encoder -> one latent vector of ``latent_dim`` units -> decoder.

A :class:`LatentFamily` is the distribution layer of one such model kind: it turns the encoder's
output ``h`` (batch, encoder_outputs) into the posterior, holds the prior (with its learnable
parameters), draws relaxed (training) or hard (evaluation) samples and computes the KL per image.
:class:`SingleLayerModel` wraps a family with its encoder and decoder behind the
:class:`~spikelatent.families.base.LatentModel` interface. Each family lives in its own module
(``gaussian``, ``laplace``, ``categorical``, ``poisson``, ``negbio``) and registers itself with
:func:`register_single_layer`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, kl_divergence

from spikelatent import options
from spikelatent.errors import SpikelatentError
from spikelatent.families.base import LatentModel, LossTerms, register_family
from spikelatent.networks import make_decoder, make_encoder
from spikelatent.options import PAPER_MODELS, display_name

#: The eight models of the paper, in the row order of its tables (display names, = ``VAE.variant``);
#: :data:`PAPER_MODELS` maps each to ``spikelatent fit``'s (``--model``, ``--kl``, ``--relax``).
PAPER_MODEL_ORDER = tuple(PAPER_MODELS)
#: Posterior mass the series KL leaves out in training (``--kl series``).
TRAINING_SERIES_TOLERANCE = 1e-5

# Soft limits (reference Poisson-VAE conventions): the posterior mean count is kept below
# e^5 ~ 148 spikes per window, and log-modulations stay in a range where exp() is tame.
MAX_LOG_RATE = 5.0
MAX_ABS_LOG_MODULATION = 10.0


# Sharpness of the soft clamps: within 2 units of the bound they deviate from min/max by < 1e-4,
# so the parameterization is exact in practice while gradients stay alive at the bound.
CLAMP_SHARPNESS = 5.0


def soft_upper_clamp(x: torch.Tensor, upper: float | torch.Tensor) -> torch.Tensor:
    """Smooth ``min(x, upper)``: identity below ``upper`` (to < 1e-4 two units away), saturating at it."""
    return upper - F.softplus(upper - x, beta=CLAMP_SHARPNESS)


def soft_lower_clamp(x: torch.Tensor, lower: float | torch.Tensor) -> torch.Tensor:
    """Smooth ``max(x, lower)``."""
    return lower + F.softplus(x - lower, beta=CLAMP_SHARPNESS)


def soft_symmetric_clamp(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Smooth clamp to (-bound, bound): identity inside, gradients alive at the bounds."""
    return soft_lower_clamp(soft_upper_clamp(x, bound), -bound)


class LatentFamily(nn.Module):
    """Base class. Subclasses define the posterior, prior, samples and KL.

    Shapes: ``h`` is (batch, encoder_outputs); latent samples ``z`` are (batch, latent_dim).
    """

    name: str = ""
    is_count: bool = False
    uses_temperature: bool = True

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        if int(latent_dim) != latent_dim or latent_dim <= 0:
            raise SpikelatentError(f"latent_dim must be a positive integer; got {latent_dim}")
        self.latent_dim = int(latent_dim)

    @property
    def encoder_outputs(self) -> int:
        """Number of values the encoder must emit per image."""
        return self.latent_dim

    @property
    def variant(self) -> str:
        """Display name in the paper's notation, e.g. ``NegBio-VAE DS-C``."""
        return display_name(self.name)

    def posterior(self, h: torch.Tensor) -> Distribution:
        """The posterior distribution from the encoder output ``h``, batch shape (batch, unit)."""
        raise NotImplementedError

    def prior(self) -> Distribution:
        """The prior distribution, batch shape (unit,)."""
        raise NotImplementedError

    def rsample(self, posterior: Distribution, temperature: float) -> torch.Tensor:
        """Reparameterized (relaxed) sample for training, (batch, latent_dim)."""
        raise NotImplementedError

    def sample(self, posterior: Distribution) -> torch.Tensor:
        """Hard sample (exact counts for count families), (batch, latent_dim)."""
        with torch.no_grad():
            return posterior.sample()

    def mean(self, posterior: Distribution) -> torch.Tensor:
        """Posterior mean ("MAP" reconstructions decode this), (batch, latent_dim)."""
        return posterior.mean

    def kl(self, posterior: Distribution, temperature: float) -> torch.Tensor:
        """KL(q(z|x) || p(z)) summed over units, (batch,). ``temperature`` 0 = hard samples."""
        return self.kl_per_unit(posterior, temperature).sum(-1)

    def kl_per_unit(self, posterior: Distribution, temperature: float) -> torch.Tensor:
        """KL per image and unit (nats), (batch, unit); categorical: per group (batch, group)."""
        return kl_divergence(posterior, self.prior())

    def rsample_with_kl(
        self, posterior: Distribution, temperature: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A training sample (batch, latent_dim) and the KL (batch,) in one call.

        One call so that a family whose KL is estimated from samples can decode one of them.
        """
        return self.rsample(posterior, temperature), self.kl(posterior, temperature)

    def sample_prior(self, n: int) -> torch.Tensor:
        """Hard samples from the prior, (n, latent_dim)."""
        with torch.no_grad():
            return self.prior().sample((n,))

    def flat(self, z: torch.Tensor) -> torch.Tensor:
        """Samples or means with event dimensions folded into ``unit``, ``(..., latent_dim)``."""
        return z

    def features(self, h: torch.Tensor) -> torch.Tensor:
        """Features for linear read-outs: the encoder's output (docs/architecture.md), (batch, features)."""
        return h



def initial_prior_log_mean(latent_dim: int, prior_init: str) -> torch.Tensor:
    """Starting log mean count of the prior per unit, (unit,).

    ``unit``: 0 (mean 1; the NegBio-VAE code's r = 1, p = 0.5 and Poisson rate 1);
    ``sparse``: U(-6, -2) (the reference Poisson VAE; measured to leave NB units silent).
    """
    if options.PRIOR_INIT.check(prior_init) == "sparse":
        return torch.empty(latent_dim).uniform_(-6.0, -2.0)
    return torch.zeros(latent_dim)


def _check_modulation_bound(bound: float) -> float:
    if not (isinstance(bound, (int, float)) and math.isfinite(bound) and bound > 0):
        raise SpikelatentError(f"modulation_bound must be a finite number > 0; got {bound!r}")
    return float(bound)



class SingleLayerModel(LatentModel):
    """Encoder + latent family + decoder (the eight models of the paper).

    Args:
        latent: the distribution layer (:class:`LatentFamily`).
        config: the resolved :class:`~spikelatent.config.FitConfig` (architectures, widths).
        image_shape: ``(C, H, W)`` of the model's input.
        output_activation: the decoder's last layer (``sigmoid``, ``tanh`` or ``identity``).
    """

    def __init__(self, latent: LatentFamily, config: Any, image_shape: tuple[int, int, int],
                 output_activation: str = "sigmoid") -> None:
        super().__init__()
        self.latent = latent
        self.name = latent.name
        self.is_count = latent.is_count
        self.uses_temperature = latent.uses_temperature
        self.encoder = make_encoder(config.encoder, image_shape, latent.encoder_outputs,
                                    **network_options(config, "encoder"))
        self.decoder = make_decoder(config.decoder, config.latent_dim, image_shape,
                                    output_activation=output_activation,
                                    **network_options(config, "decoder"))

    @property
    def variant(self) -> str:
        return self.latent.variant

    @property
    def latent_dim(self) -> int:
        return self.latent.latent_dim

    def auto_beta(self, config: Any, image_shape: tuple[int, int, int]) -> float:
        """The published NegBio-VAE weighting: beta = 1 on its objective, i.e. C * H / K on the
        sum objective (docs/training.md "Objective scale")."""
        if config.objective == "published":
            return 1.0
        channels, height, _ = image_shape
        return channels * height / self.latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's raw output ``(batch, encoder_outputs)``."""
        return self.encoder(x)

    def posterior(self, x: torch.Tensor) -> Distribution:
        return self.latent.posterior(self.encoder(x))

    def prior(self) -> Distribution:
        return self.latent.prior()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def flat(self, z: torch.Tensor) -> torch.Tensor:
        return self.latent.flat(z)

    def loss_terms(self, x: torch.Tensor, temperature: float, training: bool) -> LossTerms:
        posterior = self.posterior(x)
        if training:
            z, kl = self.latent.rsample_with_kl(posterior, temperature)
        else:
            z = self.latent.sample(posterior)  # hard counts / one-hot / a sample
            kl = self.latent.kl(posterior, temperature)
        return LossTerms(reconstruction=self.decode(z), kl=kl, kl_penalty=kl, codes=z,
                         posterior=posterior)

    def kl_per_unit(self, x: torch.Tensor) -> torch.Tensor:
        return self.latent.kl_per_unit(self.posterior(x), 0.0)

    def reconstruct(self, x: torch.Tensor, mode: str = "sample") -> torch.Tensor:
        posterior = self.posterior(x)
        if mode == "sample":
            z = self.latent.sample(posterior)
        elif mode == "mean":
            z = self.latent.mean(posterior)
        else:
            raise SpikelatentError(f"mode must be 'sample' or 'mean'; got {mode!r}")
        return self.decode(z)

    def generate(self, n: int) -> torch.Tensor:
        return self.decode(self.latent.sample_prior(int(n)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.latent.features(self.encoder(x))

    def representations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``encoder.<stage>`` for every encoder stage (conv maps keep their (C, h, w) shape),
        then ``latent``: the posterior mean (spikes per window for count models)."""
        stages = self.encoder.stages(x)
        out = {f"encoder.{name}": value for name, value in stages.items()}
        out["latent"] = self.latent.mean(self.latent.posterior(stages["output"]))
        return out


def network_options(config: Any, role: str) -> dict[str, Any]:
    """The conv network options set in the configuration (the other architectures take none)."""
    if getattr(config, role) != "conv":
        return {}
    if role == "encoder":
        return {"channels": config.encoder_channels, "layer_norm": config.encoder_layer_norm}
    return {"channels": config.decoder_channels, "unit_norm": config.decoder_unit_norm}


#: The distribution layer of each single-layer kind by name: ``make_latent(config)``.
LATENT_FAMILIES: dict[str, Callable[[Any], LatentFamily]] = {}


def register_single_layer(name: str, make_latent: Callable[[Any], LatentFamily]) -> None:
    """Register a single-layer model kind: ``make_latent(config)`` builds its family."""
    LATENT_FAMILIES[name] = make_latent

    @register_family(name)
    def build(config: Any, image_shape: tuple[int, int, int],
              output_activation: str = "sigmoid") -> SingleLayerModel:
        return SingleLayerModel(make_latent(config), config, image_shape, output_activation)

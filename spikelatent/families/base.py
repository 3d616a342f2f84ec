"""The one interface every model kind answers, and the registry of model kinds by name.

A :class:`LatentModel` holds everything of a model kind between the preprocessed image and the
reconstruction: encoder, latent distribution(s) and decoder. The training plan
(:class:`~spikelatent.model.VAE`), the populations, the analyses, the NWB export and the loggers
speak only to this interface, so a new model kind is one file with one :func:`register_family`
(the scvi-tools pattern: every module answers ``inference`` / ``generative`` / ``loss``).

Shapes: images ``(batch, C, H, W)`` on the model's input range (after its
:class:`~spikelatent.data.preprocessing.Preprocessor`); latent codes ``(batch, unit)``; distributions
with batch shape ``(batch, unit)`` (categorical: ``(batch, group)`` with a one-hot event).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import Distribution

from spikelatent.errors import SpikelatentError

__all__ = ["FAMILIES", "LatentModel", "LossTerms", "make_family", "register_family"]


@dataclass
class LossTerms:
    """What one pass of a model gives the training plan.

    Attributes:
        reconstruction: decoded images ``(batch, C, H, W)``.
        kl: KL(q || p) per image ``(batch,)`` in nats (the estimate the model trains with).
        kl_penalty: what the objective weighs by beta ``(batch,)``: ``kl`` after the model's own
            free bits and balancing (equal to ``kl`` for models without them).
        codes: the latent codes decoded ``(batch, unit)`` (exact counts at evaluation).
        posterior: q(z | x) with batch shape ``(batch, unit)`` (what population statistics read).
        metrics: extra scalars to log under ``{stage}/{name}`` (e.g. ``kl_level0``).
        evaluation_metrics: extra scalars logged only outside training (e.g. per-level activity).
    """

    reconstruction: torch.Tensor
    kl: torch.Tensor
    kl_penalty: torch.Tensor
    codes: torch.Tensor
    posterior: Distribution | None = None
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    evaluation_metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class LatentModel(nn.Module):
    """Base class of every model kind (``spikelatent fit --model``).

    Class attributes: ``name`` (the ``--model`` name), ``is_count`` (latents are spike counts),
    ``uses_temperature`` (training relaxes its samples with a temperature).
    """

    name: str = ""
    is_count: bool = False
    uses_temperature: bool = True

    # ---------------------------------------------------------------- identity and sizes
    @property
    def variant(self) -> str:
        """Display name in the paper's notation, e.g. ``NegBio-VAE DS-C``."""
        raise NotImplementedError

    @property
    def latent_dim(self) -> int:
        """Number of latent units (all levels together)."""
        raise NotImplementedError

    def auto_beta(self, config: Any, image_shape: tuple[int, int, int]) -> float:
        """The KL weight ``--beta auto`` resolves to for this model on ``image_shape``."""
        raise NotImplementedError

    # ---------------------------------------------------------------- inference and generation
    def posterior(self, x: torch.Tensor) -> Distribution:
        """q(z | x), batch shape ``(batch, unit)`` (categorical: ``(batch, group)``)."""
        raise NotImplementedError

    def prior(self) -> Distribution:
        """p(z), batch shape ``(unit,)``."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(batch, C, H, W)`` from latent codes ``(batch, unit)``."""
        raise NotImplementedError

    def loss_terms(self, x: torch.Tensor, temperature: float, training: bool) -> LossTerms:
        """One pass: relaxed samples at ``temperature`` when ``training``, else hard samples."""
        raise NotImplementedError

    def kl_per_unit(self, x: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per image and unit ``(batch, unit)`` in nats, from hard samples or
        closed forms (categorical: per group)."""
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor, mode: str = "sample") -> torch.Tensor:
        """``sample``: decode a hard posterior sample; ``mean``: decode the posterior mean."""
        posterior = self.posterior(x)
        if mode == "sample":
            z = self.flat(posterior.sample())
        elif mode == "mean":
            z = self.flat(posterior.mean)
        else:
            raise SpikelatentError(f"mode must be 'sample' or 'mean'; got {mode!r}")
        return self.decode(z)

    def generate(self, n: int) -> torch.Tensor:
        """``n`` images decoded from hard samples of the prior, ``(n, C, H, W)``."""
        return self.decode(self.flat(self.prior().sample((int(n),))))

    def sample_counts(self, x: torch.Tensor, n_trials: int) -> torch.Tensor:
        """``n_trials`` exact posterior draws per image, ``(n_trials, batch, unit)``."""
        return self.flat(self.posterior(x).sample((int(n_trials),)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Linear read-out features ``(batch, features)`` (docs/architecture.md)."""
        raise NotImplementedError

    def unit_coords(self) -> dict[str, np.ndarray]:
        """Per-unit coordinates beyond ``unit`` (e.g. a hierarchy's ``level``), each
        ``(latent_dim,)``; empty for single-layer models."""
        return {}

    def representations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named internal populations ``{name: (batch, ...)}`` in depth order (input side
        first): each encoder stage, then the latent rates (and, for a hierarchy, each level)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- helpers
    def flat(self, z: torch.Tensor) -> torch.Tensor:
        """Codes with any event dimensions folded into ``unit``: ``(..., batch, unit)``."""
        return z


#: Model kinds by ``--model`` name: each a builder ``(config, image_shape, output_activation)``.
FAMILIES: dict[str, Callable[..., LatentModel]] = {}


def register_family(name: str) -> Callable[[Callable[..., LatentModel]], Callable[..., LatentModel]]:
    """Register a builder ``(config, image_shape, output_activation) -> LatentModel`` by name."""

    def decorator(builder: Callable[..., LatentModel]) -> Callable[..., LatentModel]:
        FAMILIES[name] = builder
        return builder

    return decorator


def make_family(config: Any, image_shape: tuple[int, int, int],
                output_activation: str = "sigmoid") -> LatentModel:
    """The model kind a resolved :class:`~spikelatent.config.FitConfig` names."""
    try:
        builder = FAMILIES[config.model]
    except KeyError:
        raise SpikelatentError(
            f"unknown model {config.model!r}; choose one of {', '.join(sorted(FAMILIES))}"
        ) from None
    return builder(config, tuple(int(s) for s in image_shape), output_activation)

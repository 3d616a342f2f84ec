"""Latent families: one abstraction for the eight models of the paper.

A :class:`LatentFamily` turns the encoder's output ``h`` (batch, encoder_outputs) into a
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

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import (
    Distribution,
    Laplace,
    Normal,
    OneHotCategorical,
    RelaxedOneHotCategorical,
    kl_divergence,
)

from spikelatent import options
from spikelatent.distributions import (
    NegativeBinomial,
    Poisson,
    kl_from_samples,
    kl_monte_carlo,
    kl_series,
    relaxed_poisson_gumbel_fixed_support,
)
from spikelatent.errors import SpikelatentError
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

    def features(self, h: torch.Tensor) -> torch.Tensor:
        """Features for linear read-outs: the encoder's output (docs/architecture.md), (batch, features)."""
        return h


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


class LaplaceLatent(GaussianLatent):
    """L-VAE: Laplace posterior, standard Laplace(0, 1) prior."""

    name = "laplace"
    distribution_class = Laplace


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

    def _flatten(self, z: torch.Tensor) -> torch.Tensor:
        return z.reshape(*z.shape[:-2], self.latent_dim)

    def rsample(self, posterior: Distribution, temperature: float) -> torch.Tensor:
        if temperature <= 0:
            return self.sample(posterior)
        relaxed = RelaxedOneHotCategorical(
            torch.tensor(temperature, device=posterior.logits.device),
            logits=posterior.logits,
            validate_args=False,
        )
        return self._flatten(relaxed.rsample())

    def sample(self, posterior: Distribution) -> torch.Tensor:
        with torch.no_grad():
            return self._flatten(posterior.sample())

    def mean(self, posterior: Distribution) -> torch.Tensor:
        return self._flatten(posterior.probs)

    def kl_per_unit(self, posterior: Distribution, temperature: float) -> torch.Tensor:
        # KL(q || uniform) = sum_k q_k log q_k + log C, per group, (batch, group).
        log_q = torch.log_softmax(posterior.logits, dim=-1)
        return (log_q.exp() * log_q).sum(-1) + math.log(self.categories)

    def sample_prior(self, n: int) -> torch.Tensor:
        with torch.no_grad():
            return self._flatten(self.prior().sample((n,)))


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


def make_latent_family(
    name: str,
    latent_dim: int = options.LATENT_DIM.default,
    *,
    kl: str = options.KL.default,
    relax: str = options.RELAX.default,
    mc_samples: int = options.MC_SAMPLES.default,
    categories: int = options.CATEGORIES.default,
    prior_init: str = options.PRIOR_INIT.default,
    posterior_logits: str = options.POSTERIOR_LOGITS.default,
    modulation_bound: float = options.MODULATION_BOUND.default,
    mc_kl: str = options.MC_KL.default,
    gumbel_support: int | None = options.GUMBEL_SUPPORT.default,
    nb_sampler: str = options.NB_SAMPLER.default,
) -> LatentFamily:
    """Build a latent family by ``spikelatent fit --model`` name (``negbinomial`` and ``nb`` are
    accepted for ``negbio``), with the same defaults as ``spikelatent fit`` (:mod:`spikelatent.options`).

    The count options (``prior_init``, ``modulation_bound``, ``gumbel_support``; for NB also
    ``posterior_logits`` and ``mc_kl``) are described in docs/training.md.
    """
    name = options.MODEL.canonical(name)
    if name == "gaussian":
        return GaussianLatent(latent_dim)
    if name == "laplace":
        return LaplaceLatent(latent_dim)
    if name == "categorical":
        return CategoricalLatent(latent_dim, categories=categories)
    if name == "poisson":
        return PoissonLatent(latent_dim, relax=relax, prior_init=prior_init,
                             modulation_bound=modulation_bound, gumbel_support=gumbel_support)
    if name == "negbio":
        return NegativeBinomialLatent(
            latent_dim, kl=kl, relax=relax, mc_samples=mc_samples, prior_init=prior_init,
            posterior_logits=posterior_logits, modulation_bound=modulation_bound, mc_kl=mc_kl,
            gumbel_support=gumbel_support, nb_sampler=nb_sampler,
        )
    raise SpikelatentError(f"unknown model {name!r}; choose one of {', '.join(options.MODELS)}")

"""A hierarchical NegBio-VAE: spatial negative-binomial latent groups with top-down NB priors.

The model (``--model negbio-hierarchical``, docs/hierarchical.md) follows the NVAE layout that the
NegBio-VAE authors' code later added:

* a **bottom-up** residual encoder (BatchNorm, SiLU, 3×3 convolutions, squeeze-excite) that leaves
  one feature map ``e_g`` per latent group, at the group's scale;
* a **top-down** path that starts from a learned tensor at the coarsest scale. At every group
  ``g`` (coarse to fine, ``groups[s]`` groups at scale ``s``) the state ``d`` gives

  - the prior ``p_g = NB(r_p, p)`` per latent channel and position (the first group's prior is
    learned and unconditional: one ``(log r, logit p)`` per channel),
  - the posterior ``q_g = NB(r_p · exp(m_r), sigmoid(logit p + m_p))``: positive modulations
    ``exp(m)`` of the prior's dispersion and of its Gamma rate ``p / (1 − p)`` computed from the
    concatenated ``[e_g, d]``; the last convolution starts at zero, so ``q_g = p_g`` exactly at
    initialisation (KL exactly 0),
  - a relaxed NB sample ``z_g`` (same relaxations and samplers as the single-layer model), which
    is injected back into the state: ``d ← d + inject(log1p(z_g))``;

* a decoder from the finest top-down state to the image.

Each group is a spatial population of ``latent_channels × height × width`` count units; a group is
a **level** (level 0 = the coarsest, first group). The KL of a group is either the exact series
(``kl="series"``: :func:`~spikelatent.distributions.kl_series`, no sampling noise) or the
Monte Carlo estimate of the published code (``kl="mc"``, ``mc_samples`` relaxed samples, the first
of which is injected). Both dispersions change at every group, so the dispersion-sharing closed
form does not apply.

Shapes: images ``(batch, C, H, W)``; a group's counts ``(batch, latent_channels, h, w)``; all
counts flattened in level order ``(batch, unit)`` (:meth:`HierarchicalNB.flatten`), with
:meth:`HierarchicalNB.unit_coordinates` naming each unit's level, channel, y and x.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spikelatent import options
from spikelatent.distributions import (
    NB_SAMPLERS,
    NegativeBinomial,
    kl_from_samples,
    kl_monte_carlo,
    kl_series,
)
from spikelatent.errors import SpikelatentError
from spikelatent.families.base import LatentModel, LossTerms, register_family
from spikelatent.families.single_layer import MAX_LOG_RATE, soft_lower_clamp

__all__ = [
    "HIERARCHICAL_KL",
    "KL_BALANCES",
    "HierarchicalNB",
    "TopDownPass",
    "default_spatial_sizes",
]

#: KL estimators of a group: exact truncated series, or the published Monte Carlo estimate.
HIERARCHICAL_KL = options.HIERARCHICAL_KL_ESTIMATORS
#: ``uniform``: every group's KL weighs 1; ``scale``: 1 / (groups at its scale) (published option).
KL_BALANCES = options.KL_BALANCE.values
#: Top-down modes: relaxed samples (training), exact counts (evaluation), posterior/prior means.
PASS_MODES = ("relaxed", "hard", "mean")
#: The decoder's last layer for each data range (``networks.output_activation_for``).
OUTPUT_LAYERS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "identity": nn.Identity}
#: Channels of the decoder's convolution at the image's size.
OUTPUT_CHANNELS = 16
#: Posterior mass the series KL leaves out in training, as in the single-layer model.
SERIES_TOLERANCE = 1e-5


def default_spatial_sizes(image_size: tuple[int, int], n_scales: int) -> list[tuple[int, int]]:
    """Grid sizes coarse → fine: the finest is half the image, each coarser one half again.

    28×28 with 2 scales: [(7, 7), (14, 14)].
    """
    height, width = image_size
    sizes = [(height // 2 ** (n_scales - s), width // 2 ** (n_scales - s)) for s in range(n_scales)]
    if min(min(size) for size in sizes) < 1:
        raise SpikelatentError(
            f"{n_scales} scales halve a {height}x{width} image below one pixel; use fewer --scales"
        )
    return sizes


def _per_scale(name: str, value: int | Sequence[int], n_scales: int) -> list[int]:
    values = [value] * n_scales if isinstance(value, int) else list(value)
    if len(values) == 1:  # one value for every scale
        values = values * n_scales
    if len(values) != n_scales or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise SpikelatentError(
            f"{name} needs one positive integer per scale ({n_scales}) or a single one; got {value!r}"
        )
    return values


def _bounded(u: torch.Tensor, bound: float) -> torch.Tensor:
    """Smooth clamp to (−bound, bound) that is exactly 0 at 0 (so q = p exactly at initialisation)."""
    return bound * torch.tanh(u / bound)


class SqueezeExcite(nn.Module):
    """Channel gating by a squeeze (global average) and an excitation (2-layer 1×1 MLP)."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.SiLU(),
            nn.Conv2d(hidden, channels, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class ResidualCell(nn.Module):
    """x + SE(conv3×3(SiLU(BN(conv3×3(SiLU(BN(x))))))), shape preserved."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            SqueezeExcite(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LatentGroup(nn.Module):
    """One spatial NB latent group: prior from the top-down state, posterior as its modulation."""

    def __init__(self, channels: int, latent_channels: int, unconditional: bool,
                 modulation_bound: float) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        self.modulation_bound = modulation_bound
        if unconditional:
            # (log r, logit p) per channel; zeros: r = 1, p = 0.5 (mean 1), the NegBio-VAE start.
            self.prior_raw = nn.Parameter(torch.zeros(2 * latent_channels, 1, 1))
            self.prior_net = None
        else:
            self.prior_raw = None
            self.prior_net = nn.Sequential(nn.SiLU(), nn.Conv2d(channels, 2 * latent_channels, 1))
        self.posterior_body = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 3, padding=1), nn.SiLU(),
        )
        self.posterior_out = nn.Conv2d(channels, 2 * latent_channels, 1)
        # q = p at initialisation: both modulations exp(0) = 1 exactly.
        nn.init.zeros_(self.posterior_out.weight)
        nn.init.zeros_(self.posterior_out.bias)
        self.inject = nn.Sequential(
            nn.Conv2d(latent_channels, channels, 1), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def prior_parameters(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log r, logit p) of p(z_g | z_<g), each (batch, latent_channels, h, w)."""
        if self.prior_raw is None:
            raw = self.prior_net(state)
        else:
            raw = self.prior_raw.expand(state.shape[0], -1, *state.shape[2:])
        raw_log_r, raw_logit = raw.chunk(2, dim=1)
        log_r = _bounded(raw_log_r, self.modulation_bound)
        # Mean r (1 − p) / p ≤ e^MAX_LOG_RATE, as in the single-layer model.
        return log_r, soft_lower_clamp(raw_logit, log_r - MAX_LOG_RATE)

    def posterior_parameters(self, log_r: torch.Tensor, logit_p: torch.Tensor,
                             bottom_up: torch.Tensor, state: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log r_q, logit q) of q(z_g | x, z_<g): the prior's r and Gamma rate p / (1 − p)
        times positive factors exp(m_r), exp(m_p) from ``[bottom_up, state]``."""
        u = self.posterior_out(self.posterior_body(torch.cat([bottom_up, state], dim=1)))
        u_r, u_p = u.chunk(2, dim=1)
        log_r_q = log_r + _bounded(u_r, self.modulation_bound)
        logit_q = logit_p + _bounded(u_p, self.modulation_bound)
        # A hard floor is the identity while the mean stays below e^MAX_LOG_RATE (the prior
        # satisfies it), so q = p stays exact at initialisation.
        return log_r_q, torch.maximum(logit_q, log_r_q - MAX_LOG_RATE)


def negative_binomial(log_r: torch.Tensor, logits: torch.Tensor) -> NegativeBinomial:
    """NB(r = exp(log_r), p = sigmoid(logits)) in the paper's convention."""
    return NegativeBinomial(log_r.exp(), logits=logits, validate_args=False)


class ConditionalNegativeBinomial(NegativeBinomial):
    """A flattened NB posterior (batch, unit) that carries its conditional priors (``.prior``)."""

    prior: NegativeBinomial


def _flat_pair(posteriors: Sequence[NegativeBinomial], priors: Sequence[NegativeBinomial]
               ) -> ConditionalNegativeBinomial:
    flat = ConditionalNegativeBinomial(
        HierarchicalNB.flatten([q.total_count for q in posteriors]),
        logits=HierarchicalNB.flatten([q.logits for q in posteriors]), validate_args=False)
    flat.prior = NegativeBinomial(
        HierarchicalNB.flatten([p.total_count for p in priors]),
        logits=HierarchicalNB.flatten([p.logits for p in priors]), validate_args=False)
    return flat


@dataclass
class TopDownPass:
    """What one top-down pass leaves: the final state and, per group (level), its tensors.

    ``counts[g]``, ``priors[g]`` and ``posteriors[g]`` have shape (batch, latent_channels, h, w)
    (``posteriors`` is empty for a pass from the prior); ``kl`` is (batch, group) in nats.
    """

    state: torch.Tensor
    counts: list[torch.Tensor] = field(default_factory=list)
    priors: list[NegativeBinomial] = field(default_factory=list)
    posteriors: list[NegativeBinomial] = field(default_factory=list)
    kl: torch.Tensor | None = None


class HierarchicalNB(LatentModel):
    """Multi-scale hierarchical NB-VAE (encoder, latent groups and decoder in one module).

    Args:
        image_shape: (C, H, W) of the images.
        scales: number of scales (grids coarse → fine, :func:`default_spatial_sizes`).
        groups: latent groups per scale (one value, or one per scale, coarse → fine).
        channels: feature channels per scale.
        latent_channels: NB count channels per group, per scale.
        kl: ``series`` (exact, default) or ``mc`` (published Monte Carlo, ``mc_samples``).
        relax: relaxed Poisson/NB step, ``ct`` or ``gumbel``.
        nb_sampler: ``gamma-poisson`` or ``counting`` (see ``NegativeBinomial.rsample``).
        free_bits: nats per group and image below which a group's KL is not penalised.
        kl_balance: ``uniform`` or ``scale`` (weights 1 / groups at the scale).
        modulation_bound: bound on |log r| of the priors and on the posterior's log-modulations.
        output_activation: ``sigmoid`` (data on [0, 1]), ``tanh`` ([-1, 1]) or ``identity``.

    It answers the :class:`~spikelatent.families.base.LatentModel` interface, so the training
    plan, populations, analyses and exports treat it like every other model kind.
    """

    name = "negbio-hierarchical"
    is_count = True
    uses_temperature = True

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        scales: int = 2,
        groups: int | Sequence[int] = 2,
        channels: int | Sequence[int] = 32,
        latent_channels: int | Sequence[int] = 4,
        *,
        kl: str = "series",
        relax: str = "ct",
        nb_sampler: str = "gamma-poisson",
        mc_samples: int = 5,
        free_bits: float = 0.0,
        kl_balance: str = "uniform",
        modulation_bound: float = 5.0,
        output_activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        if not isinstance(scales, int) or isinstance(scales, bool) or scales < 1:
            raise SpikelatentError(f"--scales must be a positive integer; got {scales!r}")
        for name, value, allowed in (("kl", kl, HIERARCHICAL_KL), ("relax", relax, options.RELAX.values),
                                     ("nb-sampler", nb_sampler, NB_SAMPLERS),
                                     ("kl-balance", kl_balance, KL_BALANCES),
                                     ("output activation", output_activation, tuple(OUTPUT_LAYERS))):
            if value not in allowed:
                raise SpikelatentError(
                    f"--{name} of negbio-hierarchical must be one of {', '.join(allowed)}; got {value!r}"
                )
        if int(mc_samples) != mc_samples or mc_samples < 1:
            raise SpikelatentError(f"--mc-samples must be a positive integer; got {mc_samples!r}")
        if not (float(free_bits) >= 0 and np.isfinite(free_bits)):
            raise SpikelatentError(f"--free-bits must be a finite number >= 0; got {free_bits!r}")
        in_channels, height, width = (int(s) for s in image_shape)
        self.image_shape = (in_channels, height, width)
        self.n_scales = scales
        self.groups = _per_scale("--groups", groups, scales)
        self.channels = _per_scale("--hierarchy-channels", channels, scales)
        self.latent_channels = _per_scale("--latent-channels", latent_channels, scales)
        self.spatial_sizes = default_spatial_sizes((height, width), scales)
        self.kl_estimator, self.relax, self.nb_sampler = kl, relax, nb_sampler
        self.mc_samples = int(mc_samples)
        self.free_bits = float(free_bits)
        self.kl_balance = kl_balance
        #: Scale of each group (level), coarse → fine.
        self.group_scales = [s for s, n in enumerate(self.groups) for _ in range(n)]

        fine = self.channels[-1]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, fine, 3, padding=1), nn.SiLU())
        # bottom_up_cells[s][i]: the cell whose output feeds group i of scale s.
        self.bottom_up_cells = nn.ModuleList(
            nn.ModuleList(ResidualCell(self.channels[s]) for _ in range(self.groups[s]))
            for s in range(scales)
        )
        # Bottom-up from scale s + 1 (finer) to s; top-down from s to s + 1.
        self.bottom_up_transitions = nn.ModuleList(
            nn.Sequential(nn.Conv2d(self.channels[s + 1], self.channels[s], 3, padding=1), nn.SiLU())
            for s in range(scales - 1)
        )
        self.top_down_transitions = nn.ModuleList(
            nn.Sequential(nn.Conv2d(self.channels[s], self.channels[s + 1], 1), nn.SiLU())
            for s in range(scales - 1)
        )
        self.latent_groups = nn.ModuleList(
            LatentGroup(self.channels[s], self.latent_channels[s], unconditional=(g == 0),
                        modulation_bound=float(modulation_bound))
            for g, s in enumerate(self.group_scales)
        )
        top_h, top_w = self.spatial_sizes[0]
        self.top_state = nn.Parameter(torch.zeros(1, self.channels[0], top_h, top_w))
        # The residual cell runs on the finest grid, only two thin convolutions at the image's
        # size: a cell at 28x28 was half of a training step's cost.
        self.decoder = nn.Sequential(ResidualCell(fine), nn.BatchNorm2d(fine), nn.SiLU())
        self.output = nn.Sequential(
            nn.Conv2d(fine, OUTPUT_CHANNELS, 3, padding=1), nn.SiLU(),
            nn.Conv2d(OUTPUT_CHANNELS, in_channels, 3, padding=1),
            OUTPUT_LAYERS[output_activation](),
        )
        weights = [1.0 if kl_balance == "uniform" else 1.0 / self.groups[s] for s in self.group_scales]
        self.register_buffer("group_weights", torch.tensor(weights), persistent=False)

    @classmethod
    def from_config(cls, config: Any, image_shape: tuple[int, int, int],
                    output_activation: str = "sigmoid") -> HierarchicalNB:
        """The model a resolved :class:`~spikelatent.config.FitConfig` describes."""
        return cls(
            image_shape, scales=config.scales, groups=config.groups,
            channels=config.hierarchy_channels, latent_channels=config.latent_channels,
            kl=config.kl, relax=config.relax, nb_sampler=config.nb_sampler,
            mc_samples=config.mc_samples, free_bits=config.free_bits,
            kl_balance=config.kl_balance, modulation_bound=config.modulation_bound,
            output_activation=output_activation,
        )

    # ------------------------------------------------------------------ sizes and coordinates
    @property
    def n_groups(self) -> int:
        """Number of latent groups (levels), all scales together."""
        return len(self.group_scales)

    def group_shape(self, group: int) -> tuple[int, int, int]:
        """(latent_channels, h, w) of a group."""
        scale = self.group_scales[group]
        return (self.latent_channels[scale], *self.spatial_sizes[scale])

    @property
    def group_sizes(self) -> list[int]:
        """Units per group, in level order."""
        return [int(np.prod(self.group_shape(g))) for g in range(self.n_groups)]

    @property
    def latent_dim(self) -> int:
        """All count units of all groups."""
        return sum(self.group_sizes)

    def unit_coords(self) -> dict[str, np.ndarray]:
        """Per unit (flattened level order): ``level``, ``scale``, ``group`` (within the scale),
        ``channel``, ``y``, ``x`` as integer arrays of length ``latent_dim``."""
        columns: dict[str, list[np.ndarray]] = {k: [] for k in
                                                ("level", "scale", "group", "channel", "y", "x")}
        within = [sum(1 for s in self.group_scales[:g] if s == self.group_scales[g])
                  for g in range(self.n_groups)]
        for g in range(self.n_groups):
            c, h, w = self.group_shape(g)
            channel, y, x = (a.ravel() for a in np.meshgrid(np.arange(c), np.arange(h), np.arange(w),
                                                            indexing="ij"))
            n = channel.size
            columns["level"].append(np.full(n, g))
            columns["scale"].append(np.full(n, self.group_scales[g]))
            columns["group"].append(np.full(n, within[g]))
            columns["channel"].append(channel)
            columns["y"].append(y)
            columns["x"].append(x)
        return {name: np.concatenate(parts).astype(np.int64) for name, parts in columns.items()}

    @property
    def variant(self) -> str:
        """Display name, e.g. ``HNB-VAE SERIES-C`` (KL estimator, relaxation as in the paper)."""
        return f"HNB-VAE {self.kl_estimator.upper()}-{'C' if self.relax == 'ct' else 'G'}"

    @staticmethod
    def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-group (batch, c, h, w) tensors → (batch, unit) in level, channel, y, x order."""
        return torch.cat([t.flatten(1) for t in tensors], dim=1)

    # ------------------------------------------------------------------ passes
    def bottom_up(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Bottom-up features, one (batch, channels[s], h_s, w_s) map per group, level order."""
        e = self.stem(images)
        features: list[torch.Tensor | None] = [None] * self.n_groups
        offsets = np.cumsum([0, *self.groups])
        for s in reversed(range(self.n_scales)):
            e = F.adaptive_avg_pool2d(e, self.spatial_sizes[s])
            if s < self.n_scales - 1:
                e = self.bottom_up_transitions[s](e)
            for i in reversed(range(self.groups[s])):
                e = self.bottom_up_cells[s][i](e)
                features[offsets[s] + i] = e
        return features  # type: ignore[return-value]

    def top_down(self, features: Sequence[torch.Tensor] | None, mode: str = "hard",
                 temperature: float = 1.0, n: int | None = None) -> TopDownPass:
        """One top-down pass.

        ``features`` from :meth:`bottom_up` samples the posteriors (the KL per group is computed);
        ``None`` samples the priors (ancestral generation, ``n`` images). ``mode``: ``relaxed``
        (training, ``temperature`` > 0), ``hard`` (exact integer counts) or ``mean`` (each group
        injects its distribution's mean).
        """
        if mode not in PASS_MODES:
            raise SpikelatentError(f"mode must be one of {', '.join(PASS_MODES)}; got {mode!r}")
        batch = features[0].shape[0] if features is not None else int(n)
        state = self.top_state.expand(batch, -1, -1, -1)
        result = TopDownPass(state=state)
        kls = []
        for g, scale in enumerate(self.group_scales):
            if g > 0 and scale != self.group_scales[g - 1]:
                state = F.interpolate(state, size=self.spatial_sizes[scale], mode="nearest")
                state = self.top_down_transitions[scale - 1](state)
            group = self.latent_groups[g]
            log_r, logit_p = group.prior_parameters(state)
            prior = negative_binomial(log_r, logit_p)
            result.priors.append(prior)
            if features is None:
                z = self._draw(prior, mode, temperature)
            else:
                posterior = negative_binomial(
                    *group.posterior_parameters(log_r, logit_p, features[g], state))
                result.posteriors.append(posterior)
                z, kl = self.sample_with_kl(posterior, prior, mode, temperature)
                kls.append(kl.flatten(1).sum(-1))
            result.counts.append(z)
            state = state + group.inject(torch.log1p(z))
        result.state = state
        if kls:
            result.kl = torch.stack(kls, dim=1)
        return result

    def _draw(self, distribution: NegativeBinomial, mode: str, temperature: float,
              sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        if mode == "mean":
            return distribution.mean
        if mode == "hard":
            return distribution.sample(sample_shape)
        return distribution.rsample(sample_shape, relaxation=self.relax, temperature=temperature,
                                    sampler=self.nb_sampler)

    def sample_with_kl(self, q: NegativeBinomial, p: NegativeBinomial, mode: str,
                      temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
        """A sample of q to inject and the KL(q || p) per unit (batch, c, h, w)."""
        if self.kl_estimator == "series":
            kl = kl_series(q, p, tolerance=SERIES_TOLERANCE, accurate=False)
            return self._draw(q, mode, temperature), kl
        if mode == "relaxed":
            # As published: S relaxed samples estimate the KL and the first one is injected.
            samples = self._draw(q, mode, temperature, (self.mc_samples,))
            return samples[0], kl_from_samples(q, p, samples)
        # Evaluation: exact counts make the estimate unbiased for the discrete KL.
        return self._draw(q, mode, temperature), kl_monte_carlo(
            q, p, n_samples=self.mc_samples, relaxation=None)

    def decode_state(self, state: torch.Tensor) -> torch.Tensor:
        """Images (batch, C, H, W) from the finest top-down state."""
        state = F.interpolate(self.decoder(state), size=self.image_shape[1:], mode="nearest")
        return self.output(state)

    def forward(self, images: torch.Tensor, mode: str = "relaxed",
                temperature: float = 1.0) -> tuple[torch.Tensor, TopDownPass]:
        """(reconstruction (batch, C, H, W), the posterior top-down pass with its KL per group)."""
        result = self.top_down(self.bottom_up(images), mode=mode, temperature=temperature)
        return self.decode_state(result.state), result

    def training_kl(self, kl_per_group: torch.Tensor) -> torch.Tensor:
        """KL the loss penalises per image (batch,): free bits per group, balancing weights."""
        if self.free_bits > 0:
            kl_per_group = kl_per_group.clamp_min(self.free_bits)
        return (kl_per_group * self.group_weights.to(kl_per_group)).sum(-1)

    @torch.no_grad()
    def sample_prior(self, n: int, mode: str = "hard") -> tuple[torch.Tensor, TopDownPass]:
        """Ancestral sampling from the top-down priors: (images (n, C, H, W), the pass)."""
        if int(n) != n or n < 1:
            raise SpikelatentError(f"n must be a positive integer; got {n!r}")
        result = self.top_down(None, mode=mode, n=int(n))
        return self.decode_state(result.state), result

    # ------------------------------------------------------------------ the LatentModel interface
    def auto_beta(self, config: Any, image_shape: tuple[int, int, int]) -> float:
        """The published hierarchical code's beta = 1 on the sum objective."""
        return 1.0

    def posterior(self, x: torch.Tensor) -> ConditionalNegativeBinomial:
        return self.flat_posterior(x)

    def prior(self) -> NegativeBinomial:
        return self.flat_prior()

    def loss_terms(self, x: torch.Tensor, temperature: float, training: bool) -> LossTerms:
        """Relaxed posterior pass in training, exact counts otherwise; the penalised KL has the
        free bits and balancing of :meth:`training_kl`; KL and (at evaluation) the fraction of
        units that fire are reported per level (``kl_level{g}``, ``active_fraction_level{g}``)."""
        reconstruction, result = self(x, mode="relaxed" if training else "hard",
                                      temperature=temperature)
        metrics = {f"kl_level{level}": level_kl for level, level_kl in enumerate(result.kl.mean(0))}
        evaluation = {} if training else {
            f"active_fraction_level{level}": (counts > 0).flatten(1).any(0).float().mean()
            for level, counts in enumerate(result.counts)}
        return LossTerms(
            reconstruction=reconstruction, kl=result.kl.sum(-1),
            kl_penalty=self.training_kl(result.kl), codes=self.flatten(result.counts),
            # The population's posterior (along the mean pass), so val/fano_median is its Fano.
            posterior=None if training else self.flat_posterior(x),
            metrics=metrics, evaluation_metrics=evaluation)

    def reconstruct(self, x: torch.Tensor, mode: str = "sample") -> torch.Tensor:
        if mode not in ("sample", "mean"):
            raise SpikelatentError(f"mode must be 'sample' or 'mean'; got {mode!r}")
        return self(x, mode="hard" if mode == "sample" else "mean")[0]

    def generate(self, n: int) -> torch.Tensor:
        return self.sample_prior(n)[0]

    def representations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``encoder.level{g}``: the bottom-up feature map feeding each group (finest first, as
        the encoder computes them); ``latent.level{g}``: each level's posterior mean counts
        (batch, latent_channels, h, w) along the mean pass (finest first); ``latent``: all
        levels' posterior means flattened (batch, unit)."""
        features = self.bottom_up(x)
        result = self.top_down(features, mode="mean")
        order = range(self.n_groups - 1, -1, -1)
        out = {f"encoder.level{g}": features[g] for g in order}
        out.update({f"latent.level{g}": result.posteriors[g].mean for g in order})
        out["latent"] = self.flatten([q.mean for q in result.posteriors])
        return out

    # ------------------------------------------------------------------ flat (batch, unit) views
    def flat_posterior(self, images: torch.Tensor) -> ConditionalNegativeBinomial:
        """Every unit's posterior along the mean pass, flattened: batch shape (batch, unit).

        Group g's posterior is conditional on the groups above it; here they inject their
        posterior means (deterministic). ``.prior`` holds the matching conditional priors.
        """
        result = self.top_down(self.bottom_up(images), mode="mean")
        return _flat_pair(result.posteriors, result.priors)

    def flat_prior(self) -> NegativeBinomial:
        """Every unit's prior along the prior-mean pass (each group injects its prior mean),
        batch shape (unit,): the first group's prior exactly, the others at a typical state."""
        result = self.top_down(None, mode="mean", n=1)
        prior = _flat_pair(result.priors, result.priors).prior
        return NegativeBinomial(prior.total_count[0], logits=prior.logits[0], validate_args=False)

    def kl_per_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Exact KL per unit (batch, unit) of :meth:`flat_posterior` against its priors."""
        posterior = self.flat_posterior(x)
        return kl_series(posterior, posterior.prior)

    @torch.no_grad()
    def sample_counts(self, images: torch.Tensor, n: int) -> torch.Tensor:
        """``n`` exact ancestral draws from the joint posterior, (n, batch, unit) integer counts."""
        features = self.bottom_up(images)
        return torch.stack([self.flatten(self.top_down(features, mode="hard").counts)
                            for _ in range(int(n))])

    def decode(self, counts: torch.Tensor) -> torch.Tensor:
        """Images (batch, C, H, W) from all groups' counts (batch, unit): the top-down state is
        a deterministic function of the counts it is given."""
        if counts.ndim != 2 or counts.shape[1] != self.latent_dim:
            raise SpikelatentError(
                f"counts must have shape (batch, {self.latent_dim}); got {tuple(counts.shape)}")
        parts = counts.split(self.group_sizes, dim=1)
        state = self.top_state.expand(counts.shape[0], -1, -1, -1)
        for g, scale in enumerate(self.group_scales):
            if g > 0 and scale != self.group_scales[g - 1]:
                state = F.interpolate(state, size=self.spatial_sizes[scale], mode="nearest")
                state = self.top_down_transitions[scale - 1](state)
            z = parts[g].reshape(-1, *self.group_shape(g))
            state = state + self.latent_groups[g].inject(torch.log1p(z))
        return self.decode_state(state)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Read-out features (batch, unit): log of the posterior mean counts along the mean pass."""
        result = self.top_down(self.bottom_up(images), mode="mean")
        return self.flatten([q.mean.clamp_min(1e-6).log() for q in result.posteriors])


@register_family("negbio-hierarchical")
def _build(config: Any, image_shape: tuple[int, int, int],
           output_activation: str = "sigmoid") -> HierarchicalNB:
    return HierarchicalNB.from_config(config, image_shape, output_activation)

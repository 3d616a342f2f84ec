"""The VAE: encoder + latent family + decoder, one LightningModule for all eight models."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Timer
from torch.distributions import Distribution

from spikelatent.config import FitConfig
from spikelatent.errors import SpikelatentError
from spikelatent.hierarchical import HierarchicalNB
from spikelatent.latents import LatentFamily, make_latent_family
from spikelatent.networks import make_decoder, make_encoder, output_activation_for
from spikelatent.options import HIERARCHICAL_MODEL

#: Devices with a fused Adam kernel in every torch we support (>= 2.9); elsewhere the default loop.
FUSED_ADAM_DEVICES = ("cpu", "cuda")


class TrainingDivergedError(SpikelatentError):
    """The loss became NaN or infinite."""


def linear_ramp(step: int, start: int, stop: int, low: float, high: float) -> float:
    """``low`` before ``start``, ``high`` after ``stop``, linear in between."""
    if step <= start:
        return low
    if step >= stop:
        return high
    return low + (high - low) * (step - start) / (stop - start)


class VAE(pl.LightningModule):
    """A VAE whose latent family is set by the configuration.

    Images are (batch, C, H, W) on the dataset's data range; latent codes are (batch, unit).
    Loss per image: sum of squared error over pixels + beta * KL summed over units,
    averaged over the batch (docs/architecture.md, "Training conventions").

    ``config`` is a :class:`~spikelatent.config.FitConfig` (resolved here if it is not yet) or
    an option mapping such as a run's ``config.yaml`` or a checkpoint's hyper-parameters;
    ``VAE(FitConfig(), ...)`` builds the model ``spikelatent fit`` builds by default.
    ``model.config`` is the resolved, typed configuration.
    """

    def __init__(
        self,
        config: FitConfig | Mapping[str, Any],
        image_shape: tuple[int, int, int],
        data_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        resolved = FitConfig.coerce(config)
        self.config: FitConfig = resolved
        self.image_shape = tuple(int(s) for s in image_shape)
        self.data_range = (float(data_range[0]), float(data_range[1]))
        # A plain dict in the checkpoint, so it loads with torch.load(weights_only=True).
        self.save_hyperparameters(
            {"config": resolved.to_dict(), "image_shape": list(self.image_shape),
             "data_range": list(self.data_range)}
        )
        # The decoder's output follows the data range: sigmoid on [0, 1], tanh on [-1, 1], linear
        # for whitened patches and other data whose range is only their observed span.
        activation = output_activation_for(self.data_range)
        #: negbio-hierarchical: one module holds the bottom-up encoder, the latent groups and the
        #: decoder (their passes interleave), in ``latent``; it answers the latent family's
        #: questions (docs/hierarchical.md).
        self.hierarchical = resolved.model == HIERARCHICAL_MODEL
        if self.hierarchical:
            self.latent: LatentFamily | HierarchicalNB = HierarchicalNB.from_config(
                resolved, self.image_shape, activation)
            self.encoder = self.decoder = None
        else:
            self.latent = make_latent_family(
                resolved.model,
                resolved.latent_dim,
                kl=resolved.kl,
                relax=resolved.relax,
                nb_sampler=resolved.nb_sampler,
                mc_samples=resolved.mc_samples,
                categories=resolved.categories,
                prior_init=resolved.prior_init,
                posterior_logits=resolved.posterior_logits,
                modulation_bound=resolved.modulation_bound,
                mc_kl=resolved.mc_kl,
                gumbel_support=resolved.gumbel_support,
            )
            self.encoder = make_encoder(
                resolved.encoder, self.image_shape, self.latent.encoder_outputs,
                **_network_options(resolved, "encoder"),
            )
            self.decoder = make_decoder(
                resolved.decoder, resolved.latent_dim, self.image_shape,
                output_activation=activation, **_network_options(resolved, "decoder"),
            )
        # --objective published: the NegBio-VAE code's ((y - x)**2).sum(-1).mean() + beta *
        # kl.mean() sums the squared error over the last image axis only, i.e. SSE / (C * H)
        # per image for image-shaped outputs (a flattened output for linear/mlp: SSE / 1),
        # and averages the KL over units.
        channels, height, _ = self.image_shape
        self.published_sse_divisor = channels * height if resolved.decoder == "conv" else 1
        #: The KL weight after the warm-up. ``--beta auto``: the published NegBio-VAE weighting,
        #: beta = 1 on its objective, i.e. C * H / K on the sum objective; the published
        #: hierarchical code's beta = 1 is on the sum objective.
        if resolved.beta != "auto":
            self.final_beta = float(resolved.beta)
        elif resolved.objective == "published" or self.hierarchical:
            self.final_beta = 1.0
        else:
            self.final_beta = channels * height / resolved.latent_dim
        self._total_steps: int | None = None

    # ----------------------------------------------------------------- public API
    @property
    def variant(self) -> str:
        """Display name in the paper's notation, e.g. ``NegBio-VAE DS-C``."""
        return self.latent.variant

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Raw encoder output, (batch, encoder_outputs); negbio-hierarchical: the read-out
        features (its encoder output is one feature map per group)."""
        if self.hierarchical:
            return self.latent.features(x)
        return self.encoder(x)

    def posterior(self, x: torch.Tensor) -> Distribution:
        """q(z | x) with batch shape (batch, unit) (for categorical: (batch, group, category)).

        negbio-hierarchical: every unit's posterior given the groups above it at their posterior
        means, with those conditional priors as ``.prior`` (``HierarchicalNB.flat_posterior``).
        """
        if self.hierarchical:
            return self.latent.flat_posterior(x)
        return self.latent.posterior(self.encode(x))

    def prior(self) -> Distribution:
        """p(z), batch shape (unit,); negbio-hierarchical: along the prior-mean pass."""
        if self.hierarchical:
            return self.latent.flat_prior()
        return self.latent.prior()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (batch, C, H, W) from latent codes (batch, unit)."""
        if self.hierarchical:
            return self.latent.decode_counts(z)
        return self.decoder(z)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mode: str = "sample") -> torch.Tensor:
        """Reconstructions: ``sample`` = hard counts (count families) / a posterior sample,
        ``mean`` = decode the posterior mean ("MAP" in the paper's tables)."""
        if self.hierarchical and mode in ("sample", "mean"):
            return self.latent(x, mode="hard" if mode == "sample" else "mean")[0]
        posterior = self.posterior(x)
        if mode == "sample":
            z = self.latent.sample(posterior)
        elif mode == "mean":
            z = self.latent.mean(posterior)
        else:
            raise SpikelatentError(f"mode must be 'sample' or 'mean'; got {mode!r}")
        return self.decode(z)

    @torch.no_grad()
    def generate(self, n: int) -> torch.Tensor:
        """``n`` images decoded from hard samples of the prior, (n, C, H, W) (hierarchical:
        ancestral sampling from the top-down priors)."""
        if self.hierarchical:
            return self.latent.sample_prior(n)[0]
        return self.decode(self.latent.sample_prior(n))

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Linear read-out features (docs/architecture.md): the encoder's output, (batch, features)."""
        if self.hierarchical:
            return self.latent.features(x)
        return self.latent.features(self.encode(x))

    @torch.no_grad()
    def transform(
        self,
        images: Any,
        batch_size: int = 256,
        kind: str = "auto",
        stimulus: Any = None,
        labels: Any = None,
    ) -> Any:
        """The population's response to ``images`` as an ``xarray.DataArray`` ``(stimulus, unit)``.

        The scikit-learn / CEBRA ``transform`` habit (scvi-tools' ``get_latent_representation``).

        Args:
            images: ``(N, C, H, W)`` (or ``(N, H, W)`` for one channel) tensor or array on the
                model's data range (what its data module yields).
            batch_size: images per encoder pass (memory only; the result does not depend on it).
            kind: ``rate`` = posterior mean (spikes per window for the count families),
                ``features`` = the encoder's output (log rates, logits, means), ``auto`` =
                ``rate`` for count families and ``features`` for Gaussian, Laplace, categorical.
            stimulus: stimulus ids for the ``stimulus`` coordinate (default ``0 .. N-1``), e.g. a
                data module's ``stimulus_names(split)``.
            labels: optional ``(N,)`` labels, added as the ``label`` coordinate.
        """
        import xarray as xr

        if kind == "auto":
            kind = "rate" if self.latent.is_count else "features"
        if kind not in ("rate", "features"):
            raise SpikelatentError(f"kind must be 'auto', 'rate' or 'features'; got {kind!r}")
        x = torch.as_tensor(images)
        if x.ndim == 3 and self.image_shape[0] == 1:
            x = x.unsqueeze(1)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise SpikelatentError(
                f"images have shape {tuple(x.shape)}; this model takes (N, {', '.join(map(str, self.image_shape))})"
            )
        x = x.to(torch.float32)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        chunks = []
        for start in range(0, len(x), int(batch_size)):
            batch = x[start:start + int(batch_size)].to(device)
            if self.hierarchical:
                values = self.posterior(batch).mean if kind == "rate" else self.features(batch)
            else:
                hidden = self.encode(batch)
                values = (self.latent.mean(self.latent.posterior(hidden)) if kind == "rate"
                          else self.latent.features(hidden))
            chunks.append(values.reshape(len(batch), -1).cpu())
        self.train(was_training)
        values = torch.cat(chunks) if chunks else torch.empty((0, self.latent.latent_dim))
        coords: dict[str, Any] = {
            "stimulus": np.arange(len(x)) if stimulus is None else np.asarray(stimulus),
            "unit": np.arange(values.shape[1]),
        }
        if labels is not None:
            coords["label"] = ("stimulus", np.asarray(torch.as_tensor(labels).cpu()))
        if self.hierarchical:  # level, scale, group, channel, y, x per unit
            coords.update({name: ("unit", values)
                           for name, values in self.latent.unit_coordinates().items()})
        return xr.DataArray(
            values.numpy(), dims=("stimulus", "unit"), coords=coords,
            name="rate" if kind == "rate" else "features",
            attrs={"model": self.variant, "quantity": "posterior mean" if kind == "rate"
                   else "encoder output (linear read-out features)",
                   "units": "spikes per window" if kind == "rate" and self.latent.is_count else "",
                   "data_range": list(self.data_range)},
        )

    # ----------------------------------------------------------------- schedules
    @property
    def total_steps(self) -> int:
        if self._total_steps is None:
            trainer = self._trainer
            self._total_steps = max(1, int(trainer.estimated_stepping_batches)) if trainer else 1
        return self._total_steps

    def schedule_step(self) -> int:
        """The step the schedules are at: the optimizer step or, with ``max_minutes``, the same
        fraction of ``total_steps`` as of the wall-clock budget if that is further on.

        So a run the clock stops early still ends with τ annealed, β warmed up and the learning
        rate decayed (the step cost grows as the latent counts rise, so a step budget set from
        the first steps' cost overshoots). Lightning's Timer keeps the elapsed time across
        resumes.
        """
        return max(self.global_step, self._budget_step())

    def _budget_step(self) -> int:
        """``total_steps`` times the fraction of the ``max_minutes`` budget used; 0 without one."""
        minutes = self.config.max_minutes
        if self._trainer is None or not minutes:
            return 0
        timer = next((callback for callback in self._trainer.callbacks if isinstance(callback, Timer)), None)
        if timer is None:
            return 0
        return int(min(1.0, timer.time_elapsed("train") / (60.0 * minutes)) * self.total_steps)

    def temperature(self, step: int | None = None) -> float:
        """Linear anneal from temperature_start to temperature_end over the first fraction."""
        step = self.schedule_step() if step is None else step
        c = self.config
        stop = int(c.temperature_anneal_fraction * self.total_steps)
        return linear_ramp(step, 0, stop, c.temperature_start, c.temperature_end)

    def beta(self, step: int | None = None) -> float:
        """beta_start for the first hold fraction, then linear up to beta over the warm-up."""
        step = self.schedule_step() if step is None else step
        c = self.config
        hold = int(c.beta_hold_fraction * self.total_steps)
        stop = hold + int(c.beta_warmup_fraction * self.total_steps)
        final = self.final_beta
        return linear_ramp(step, hold, stop, min(c.beta_start, final), final)

    def _scheduled_learning_rate_factor(self, step: int) -> float:
        # LambdaLR counts its own steps; a run on a wall-clock budget may be further on.
        return self.learning_rate_factor(max(step, self._budget_step()))

    def learning_rate_factor(self, step: int) -> float:
        """Linear warm-up then cosine decay from lr to lr_min, or constant (a factor of lr)."""
        c = self.config
        warmup = max(1, int(c.warmup_fraction * self.total_steps))
        if step < warmup:
            return (step + 1) / warmup
        if c.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, self.total_steps - warmup))
        floor = c.lr_min / c.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    # ----------------------------------------------------------------- training
    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        if self.hierarchical:
            return self._hierarchical_step(x, stage)
        posterior = self.posterior(x)
        temperature = self.temperature() if (stage == "train" and self.latent.uses_temperature) else 0.0
        if stage == "train":
            z, kl = self.latent.rsample_with_kl(posterior, temperature)
        else:
            z = self.latent.sample(posterior)  # hard counts / one-hot / a sample at validation
            kl = self.latent.kl(posterior, temperature)
        reconstruction = self.decode(z)
        sse = (reconstruction - x).pow(2).flatten(1).sum(-1)
        beta = self.beta() if stage == "train" else self.final_beta
        loss = self.objective(sse, kl, beta)
        if stage == "train" and not torch.isfinite(loss):
            raise TrainingDivergedError(self._divergence_message(sse, kl))
        batch_size = x.shape[0]
        # sync_dist: epoch averages over all DDP processes (a no-op on one device).
        log = {"on_step": stage == "train", "on_epoch": True, "batch_size": batch_size,
               "sync_dist": True}
        self.log(f"{stage}/loss", loss, prog_bar=True, **log)
        self.log(f"{stage}/sse", sse.mean(), prog_bar=True, **log)
        self.log(f"{stage}/kl", kl.mean(), prog_bar=True, **log)
        self.log(f"{stage}/mse", sse.mean() / x[0].numel(), **log)
        if self.latent.is_count and stage != "train":
            # Count statistics from the hard counts of validation; drawing extra hard samples in
            # every training step would cost a Gamma + Poisson draw in the hot path.
            with torch.no_grad():
                self.log(f"{stage}/zero_fraction", (z == 0).float().mean(), **log)
                self.log(f"{stage}/active_fraction", (z > 0).any(0).float().mean(), **log)
        if stage == "train":
            # For metrics.csv; loggers get them from its rows (spikelatent.loggers.log_epoch_row).
            self.log("temperature", temperature, on_step=False, on_epoch=True, sync_dist=True,
                     logger=False)
            self.log("beta", beta, on_step=False, on_epoch=True, sync_dist=True, logger=False)
        return loss

    def _hierarchical_step(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        """negbio-hierarchical: relaxed posterior pass in training, exact counts otherwise; the
        loss is SSE + beta * (free-bits, balanced) KL summed over groups; KL and the fraction
        of units that fire are logged per level (``{stage}/kl_level{g}``)."""
        train = stage == "train"
        temperature = self.temperature() if train else 0.0
        reconstruction, result = self.latent(x, mode="relaxed" if train else "hard",
                                             temperature=temperature)
        sse = (reconstruction - x).pow(2).flatten(1).sum(-1)
        kl = result.kl.sum(-1)
        beta = self.beta() if train else self.final_beta
        loss = (sse + beta * self.latent.training_kl(result.kl)).mean()
        if train and not torch.isfinite(loss):
            raise TrainingDivergedError(self._divergence_message(sse, kl))
        log = {"on_step": train, "on_epoch": True, "batch_size": x.shape[0], "sync_dist": True}
        self.log(f"{stage}/loss", loss, prog_bar=True, **log)
        self.log(f"{stage}/sse", sse.mean(), prog_bar=True, **log)
        self.log(f"{stage}/kl", kl.mean(), prog_bar=True, **log)
        self.log(f"{stage}/mse", sse.mean() / x[0].numel(), **log)
        for level, level_kl in enumerate(result.kl.mean(0)):
            self.log(f"{stage}/kl_level{level}", level_kl, **log)
        if not train:
            with torch.no_grad():
                z = self.latent.flatten(result.counts)
                self.log(f"{stage}/zero_fraction", (z == 0).float().mean(), **log)
                self.log(f"{stage}/active_fraction", (z > 0).any(0).float().mean(), **log)
                for level, counts in enumerate(result.counts):
                    self.log(f"{stage}/active_fraction_level{level}",
                             (counts > 0).any(0).float().mean(), **log)
        else:
            # For metrics.csv; loggers get them from its rows (spikelatent.loggers.log_epoch_row).
            self.log("temperature", temperature, on_step=False, on_epoch=True, sync_dist=True,
                     logger=False)
            self.log("beta", beta, on_step=False, on_epoch=True, sync_dist=True, logger=False)
        return loss

    def objective(self, sse: torch.Tensor, kl: torch.Tensor, beta: float) -> torch.Tensor:
        """The loss from the per-image SSE (batch,) and KL summed over units (batch,).

        ``sum``: mean over the batch of SSE + beta * KL. ``published``: mean over the batch of
        SSE / (C * H) + beta * KL / K (the NegBio-VAE code; docs/training.md "Objective scale").
        """
        if self.config.objective == "published":
            return (sse / self.published_sse_divisor + beta * kl / self.latent.latent_dim).mean()
        return (sse + beta * kl).mean()

    def _divergence_message(self, sse: torch.Tensor, kl: torch.Tensor) -> str:
        last = None
        if self._trainer is not None:
            candidate = Path(self.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
            last = candidate if candidate.exists() else None
        where = f"last good checkpoint: {last}" if last else "no checkpoint was written yet"
        return (
            f"non-finite loss at step {self.global_step} (epoch {self.current_epoch}; "
            f"SSE finite: {bool(torch.isfinite(sse).all())}, KL finite: "
            f"{bool(torch.isfinite(kl).all())}); {where}; try a lower --lr or --grad-clip"
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")

    def configure_optimizers(self) -> Any:
        c = self.config
        if c.optimizer == "adam":
            # The fused kernel does the whole update in one pass: on the CPU 6.5x faster than the
            # per-tensor loop torch picks by default there (benchmarks/optimizer_step.py).
            fused = all(p.device.type in FUSED_ADAM_DEVICES for p in self.parameters()) or None
            optimizer = torch.optim.Adam(self.parameters(), lr=c.lr, betas=(0.9, 0.999), fused=fused)
        else:
            optimizer = torch.optim.Adamax(self.parameters(), lr=c.lr, betas=(0.9, 0.999))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._scheduled_learning_rate_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # Resuming must give the same result as a straight run: keep the RNG state with the weights.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["spikelatent_rng"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["spikelatent_rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("spikelatent_rng")
        if state:
            torch.set_rng_state(state["torch"])
            if "cuda" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda"])


def _network_options(config: FitConfig, role: str) -> dict[str, Any]:
    """The conv network options set in the configuration (the other architectures take none)."""
    if getattr(config, role) != "conv":
        return {}
    if role == "encoder":
        return {"channels": config.encoder_channels, "layer_norm": config.encoder_layer_norm}
    return {"channels": config.decoder_channels, "unit_norm": config.decoder_unit_norm}

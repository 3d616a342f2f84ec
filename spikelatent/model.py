"""The VAE: one LightningModule (the training plan) for every model kind."""

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
from spikelatent.data.preprocessing import Preprocessor
from spikelatent.errors import SpikelatentError
from spikelatent.families import LatentModel, make_family
from spikelatent.networks import output_activation_for

#: A unit counts as overdispersed in ``val/overdispersed_fraction`` above this Fano factor.
OVERDISPERSED_FANO = 1.2
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
    """The training plan of every model kind: preprocessor + model kind + objective + schedules.

    The model kind (:class:`~spikelatent.families.base.LatentModel`, ``model.family``) holds the
    encoder, latents and decoder; this class adds the fitted input pipeline
    (``model.preprocessor``), the loss, the temperature / beta / learning-rate schedules and
    logging, with no branch on the kind. Images are (batch, C, H, W) on the model's input range;
    latent codes are (batch, unit). Loss per image: sum of squared error over pixels + beta * KL
    summed over units, averaged over the batch (docs/architecture.md, "Training conventions").

    ``config`` is a :class:`~spikelatent.config.FitConfig` (resolved here if it is not yet) or
    an option mapping such as a run's ``config.yaml`` or a checkpoint's hyper-parameters;
    ``VAE(FitConfig(), ...)`` builds the model ``spikelatent fit`` builds by default.
    ``preprocessing`` is a :class:`~spikelatent.data.preprocessing.Preprocessor`'s settings (its
    fitted constants travel in the state dict). ``model.config`` is the resolved configuration.
    """

    def __init__(
        self,
        config: FitConfig | Mapping[str, Any],
        image_shape: tuple[int, int, int],
        data_range: tuple[float, float] = (0.0, 1.0),
        preprocessing: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        resolved = FitConfig.coerce(config)
        self.config: FitConfig = resolved
        self.image_shape = tuple(int(s) for s in image_shape)
        self.data_range = (float(data_range[0]), float(data_range[1]))
        self.preprocessor = Preprocessor.from_settings(preprocessing, self.image_shape,
                                                       self.data_range)
        # Plain dicts in the checkpoint, so it loads with torch.load(weights_only=True).
        self.save_hyperparameters(
            {"config": resolved.to_dict(), "image_shape": list(self.image_shape),
             "data_range": list(self.data_range),
             "preprocessing": self.preprocessor.settings()}
        )
        # The decoder's output follows the data range: sigmoid on [0, 1], tanh on [-1, 1], linear
        # for whitened patches and other data whose range is only their observed span.
        self.family: LatentModel = make_family(resolved, self.image_shape,
                                               output_activation_for(self.data_range))
        # --objective published: the NegBio-VAE code's ((y - x)**2).sum(-1).mean() + beta *
        # kl.mean() sums the squared error over the last image axis only, i.e. SSE / (C * H)
        # per image for image-shaped outputs (a flattened output for linear/mlp: SSE / 1),
        # and averages the KL over units.
        channels, height, _ = self.image_shape
        self.published_sse_divisor = channels * height if resolved.decoder == "conv" else 1
        #: The KL weight after the warm-up (``--beta auto``: the model kind's own rule).
        self.final_beta = (float(resolved.beta) if resolved.beta != "auto"
                           else float(self.family.auto_beta(resolved, self.image_shape)))
        self._total_steps: int | None = None
        self._validation_fano: list[torch.Tensor] = []

    # ----------------------------------------------------------------- public API
    @property
    def variant(self) -> str:
        """Display name in the paper's notation, e.g. ``NegBio-VAE DS-C``."""
        return self.family.variant

    def preprocess(self, images: Any, positions: Any = None) -> torch.Tensor:
        """Raw images (as on disk: uint8/uint16/float, any size and channels, a list, an array,
        a tensor or file paths) -> this model's input ``(N, C, H, W)``, by the preprocessing
        fitted with it (:class:`~spikelatent.data.preprocessing.Preprocessor`, docs/preprocessing.md).
        ``positions``: for a model trained on patches, the ``(row, col)`` top-left corner of the
        window taken from each prepared image (default: the centre)."""
        return self.preprocessor(images, positions=positions)

    def posterior(self, x: torch.Tensor) -> Distribution:
        """q(z | x) with batch shape (batch, unit) (for categorical: (batch, group, category)).

        negbio-hierarchical: every unit's posterior given the groups above it at their posterior
        means, with those conditional priors as ``.prior``.
        """
        return self.family.posterior(x)

    def prior(self) -> Distribution:
        """p(z), batch shape (unit,); negbio-hierarchical: along the prior-mean pass."""
        return self.family.prior()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (batch, C, H, W) from latent codes (batch, unit)."""
        return self.family.decode(z)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mode: str = "sample") -> torch.Tensor:
        """Reconstructions: ``sample`` = hard counts (count families) / a posterior sample,
        ``mean`` = decode the posterior mean ("MAP" in the paper's tables)."""
        return self.family.reconstruct(x, mode)

    @torch.no_grad()
    def generate(self, n: int) -> torch.Tensor:
        """``n`` images decoded from hard samples of the prior, (n, C, H, W)."""
        return self.family.generate(n)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Linear read-out features (docs/architecture.md), (batch, features)."""
        return self.family.features(x)

    @torch.no_grad()
    def representations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named internal populations ``{name: (batch, ...)}`` in depth order: each encoder
        stage, then the latent rates (and each level of a hierarchy)."""
        return self.family.representations(x)

    @torch.no_grad()
    def transform(
        self,
        images: Any,
        batch_size: int = 256,
        kind: str = "auto",
        stimulus: Any = None,
        labels: Any = None,
        raw: bool = False,
    ) -> Any:
        """The population's response to ``images`` as an ``xarray.DataArray`` ``(stimulus, unit)``.

        The scikit-learn / CEBRA ``transform`` habit (scvi-tools' ``get_latent_representation``).

        Args:
            images: ``(N, C, H, W)`` (or ``(N, H, W)`` for one channel) tensor or array on the
                model's input range (what its data module yields), or with ``raw=True`` images
                as on disk, which :meth:`preprocess` prepares first.
            batch_size: images per encoder pass (memory only; the result does not depend on it).
            kind: ``rate`` = posterior mean (spikes per window for the count families),
                ``features`` = the encoder's output (log rates, logits, means), ``auto`` =
                ``rate`` for count families and ``features`` for Gaussian, Laplace, categorical.
            stimulus: stimulus ids for the ``stimulus`` coordinate (default ``0 .. N-1``), e.g. a
                data module's ``stimulus_names(split)``.
            labels: optional ``(N,)`` labels, added as the ``label`` coordinate.
            raw: ``images`` are raw (see :meth:`preprocess`).
        """
        import xarray as xr

        if kind == "auto":
            kind = "rate" if self.family.is_count else "features"
        if kind not in ("rate", "features"):
            raise SpikelatentError(f"kind must be 'auto', 'rate' or 'features'; got {kind!r}")
        x = self.preprocess(images) if raw else self.check_input(images)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        chunks = []
        for start in range(0, len(x), int(batch_size)):
            batch = x[start:start + int(batch_size)].to(device)
            values = (self.posterior(batch).mean if kind == "rate" else self.features(batch))
            chunks.append(values.reshape(len(batch), -1).cpu())
        self.train(was_training)
        values = torch.cat(chunks) if chunks else torch.empty((0, self.family.latent_dim))
        coords: dict[str, Any] = {
            "stimulus": np.arange(len(x)) if stimulus is None else np.asarray(stimulus),
            "unit": np.arange(values.shape[1]),
        }
        if labels is not None:
            coords["label"] = ("stimulus", np.asarray(torch.as_tensor(labels).cpu()))
        if kind == "rate":  # e.g. a hierarchy's level, scale, group, channel, y, x per unit
            coords.update({name: ("unit", column)
                           for name, column in self.family.unit_coords().items()})
        return xr.DataArray(
            values.numpy(), dims=("stimulus", "unit"), coords=coords,
            name="rate" if kind == "rate" else "features",
            attrs={"model": self.variant, "quantity": "posterior mean" if kind == "rate"
                   else "encoder output (linear read-out features)",
                   "units": "spikes per window" if kind == "rate" and self.family.is_count else "",
                   "data_range": list(self.data_range)},
        )

    def check_input(self, images: Any) -> torch.Tensor:
        """``images`` as a float32 ``(N, C, H, W)`` tensor of this model's input shape ((N, H, W)
        accepted for one channel); a one-line error otherwise."""
        x = torch.as_tensor(images)
        if x.ndim == 3 and self.image_shape[0] == 1:
            x = x.unsqueeze(1)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise SpikelatentError(
                f"images have shape {tuple(x.shape)}; this model takes (N, "
                f"{', '.join(map(str, self.image_shape))}) on its input range, or raw images "
                "with raw=True"
            )
        return x.to(torch.float32)

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
        train = stage == "train"
        temperature = self.temperature() if (train and self.family.uses_temperature) else 0.0
        terms = self.family.loss_terms(x, temperature, training=train)
        sse = (terms.reconstruction - x).pow(2).flatten(1).sum(-1)
        beta = self.beta() if train else self.final_beta
        loss = self.objective(sse, terms.kl_penalty, beta)
        if train and not torch.isfinite(loss):
            raise TrainingDivergedError(self._divergence_message(sse, terms.kl))
        # sync_dist: epoch averages over all DDP processes (a no-op on one device).
        log = {"on_step": train, "on_epoch": True, "batch_size": x.shape[0], "sync_dist": True}
        self.log(f"{stage}/loss", loss, prog_bar=True, **log)
        self.log(f"{stage}/sse", sse.mean(), prog_bar=True, **log)
        self.log(f"{stage}/kl", terms.kl.mean(), prog_bar=True, **log)
        self.log(f"{stage}/mse", sse.mean() / x[0].numel(), **log)
        extra = terms.metrics if train else {**terms.metrics, **terms.evaluation_metrics}
        for name, value in extra.items():
            self.log(f"{stage}/{name}", value, **log)
        if self.family.is_count and not train:
            # Count statistics from the hard counts of validation; drawing extra hard samples in
            # every training step would cost a Gamma + Poisson draw in the hot path.
            with torch.no_grad():
                z = terms.codes
                self.log(f"{stage}/zero_fraction", (z == 0).float().mean(), **log)
                self.log(f"{stage}/active_fraction", (z > 0).any(0).float().mean(), **log)
                if stage == "val" and terms.posterior is not None:
                    self._validation_fano.append(fano_factor_of(terms.posterior).cpu())
        if train:
            # For metrics.csv; loggers get them from its rows (spikelatent.loggers.log_epoch_row).
            self.log("temperature", temperature, on_step=False, on_epoch=True, sync_dist=True,
                     logger=False)
            self.log("beta", beta, on_step=False, on_epoch=True, sync_dist=True, logger=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._validation_fano = []

    def on_validation_epoch_end(self) -> None:
        """The posterior's overdispersion on the whole validation split: ``val/fano_median``
        (median Fano factor over stimuli and units, = the population's ``fano_factor`` median)
        and ``val/overdispersed_fraction`` (units whose mean Fano factor over stimuli > 1.2)."""
        if not self._validation_fano:
            return
        fano = torch.cat(self._validation_fano).double()  # (stimulus, unit)
        self._validation_fano = []
        self.log("val/fano_median", float(np.median(fano.numpy())), sync_dist=True)
        self.log("val/overdispersed_fraction",
                 float((fano.mean(0) > OVERDISPERSED_FANO).double().mean()), sync_dist=True)

    def objective(self, sse: torch.Tensor, kl: torch.Tensor, beta: float) -> torch.Tensor:
        """The loss from the per-image SSE (batch,) and KL summed over units (batch,).

        ``sum``: mean over the batch of SSE + beta * KL. ``published``: mean over the batch of
        SSE / (C * H) + beta * KL / K (the NegBio-VAE code; docs/training.md "Objective scale").
        """
        if self.config.objective == "published":
            return (sse / self.published_sse_divisor + beta * kl / self.family.latent_dim).mean()
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
        checkpoint["state_dict"] = upgrade_state_dict(self, checkpoint["state_dict"])[0]
        state = checkpoint.get("spikelatent_rng")
        if state:
            torch.set_rng_state(state["torch"])
            if "cuda" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda"])


def fano_factor_of(distribution: Distribution) -> torch.Tensor:
    """Fano factor (variance / mean) per stimulus and unit of a count distribution, (batch, unit);
    1 where the mean is 0 (the Poisson and NB limit)."""
    mean = distribution.mean
    return torch.where(mean > 0, distribution.variance / mean.clamp_min(1e-30), 1.0).detach()


def upgrade_state_dict(model: torch.nn.Module, state_dict: dict[str, Any]
                       ) -> tuple[dict[str, Any], str | None]:
    """A checkpoint's weights in the layout of ``model``, and a note when something of it could
    not be rebuilt.

    Checkpoints written before every model kind sat behind one interface hold ``encoder.*``,
    ``latent.*`` and ``decoder.*`` (hierarchical: ``latent.*``); they now live under
    ``family.``. Checkpoints written before models carried their preprocessing have no
    ``preprocessor.*``: the model's own (unfitted) constants are kept, and the note says so when
    the run's preprocessing had fitted constants.
    """
    expected = model.state_dict()
    upgraded: dict[str, Any] = {}
    for key, value in state_dict.items():
        if key in expected:
            upgraded[key] = value
        elif f"family.{key}" in expected:
            upgraded[f"family.{key}"] = value
        elif key.startswith("latent.") and f"family.{key[len('latent.'):]}" in expected:
            upgraded[f"family.{key[len('latent.'):]}"] = value
        else:
            upgraded[key] = value  # reported as unexpected by the mismatch check
    note = None
    missing = [key for key in expected if key.startswith("preprocessor.") and key not in upgraded]
    if missing and not any(key.startswith("preprocessor.") for key in upgraded):
        upgraded.update({key: expected[key] for key in missing})
        preprocessor = getattr(model, "preprocessor", None)
        if preprocessor is not None and preprocessor.needs_fit:
            note = ("written before models carried their preprocessing; its fitted whitening / "
                    "scale constants cannot be rebuilt from it, so raw images cannot be shown to "
                    "it (images on its input range still work)")
    return upgraded, note

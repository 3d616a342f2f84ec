"""The Lightning callbacks of ``spikelatent fit``, in one place.

* :class:`EpochMetricsCSV`: one row per epoch in ``metrics.csv`` (and the same numbers to every
  ``--logger``); :class:`CollapseGuard`: the one-line posterior-collapse warning;
* :class:`LastEpochCheckpoint` and :class:`AtomicCheckpointIO`: ``last.ckpt`` after every epoch,
  written to a temporary name and renamed;
* :class:`EpochProgressBar` on a terminal, :class:`EpochLines` (one line per epoch) in a pipe;
* :class:`ImageGrids` and :class:`FinalSummary`: reconstructions, samples and the population
  summary in the experiment loggers.
"""

from __future__ import annotations

import csv
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint, TQDMProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO

from spikelatent.io import atomic_path, write_csv_atomic
from spikelatent.loggers import GRID_IMAGES, GRID_SAMPLES, log_epoch_row, log_images, log_numbers

EPOCH_COLUMNS = (
    "epoch", "step", "train_loss", "val_loss", "train_sse", "val_sse", "train_kl", "val_kl",
    "train_mse", "val_mse", "val_zero_fraction", "val_active_fraction",
    "val_fano_median", "val_overdispersed_fraction",
    "temperature", "beta", "lr", "elapsed_s", "collapse_warning",
)
# Columns read from "<stage>/<name>" metrics; the last five are filled separately. A model
# kind's own metrics (e.g. a hierarchy's val_kl_level0) follow as extra columns.
STAGE_COLUMNS = EPOCH_COLUMNS[2:-5]
#: Collapse guard: below this KL per image (nats) the posterior barely depends on the image...
COLLAPSE_KL_NATS = 1.0
#: ...or fewer than this fraction of the count units fire at all in a validation pass...
COLLAPSE_ACTIVE_FRACTION = 0.1
#: ...or (negbio-hierarchical) a level's KL per image is below this (nats).
COLLAPSE_LEVEL_KL_NATS = 0.1


class CollapseGuard(Callback):
    """Warn once, in one line, when a validation shows posterior collapse or dead units.

    Collapse: the KL per image below ``COLLAPSE_KL_NATS`` (the code carries almost no
    information about the image: every reconstruction is the mean image) or, for count
    families, fewer than ``COLLAPSE_ACTIVE_FRACTION`` of units with any spike. Checked once the
    beta warm-up is over: before it, a small KL only means the encoder has not learned yet. The
    state of each validation is written to ``metrics.csv`` (``collapse_warning``: 1 or 0).
    """

    def __init__(self) -> None:
        self.warned = False
        self.collapsed = False
        #: The state of the last validation checked (a recovery is said once, after a warning).
        self.collapsed_before = False

    # "Warned" travels in the checkpoint: a resumed run that had already warned stays silent.
    def state_dict(self) -> dict[str, Any]:
        return {"warned": self.warned}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.warned = bool(state_dict.get("warned", False))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.collapsed = False
        if trainer.sanity_checking or pl_module.beta() < pl_module.final_beta:
            return
        metrics = trainer.callback_metrics
        kl = metrics.get("val/kl")
        active = metrics.get("val/active_fraction")
        low_kl = kl is not None and float(kl) < COLLAPSE_KL_NATS
        dead = active is not None and float(active) < COLLAPSE_ACTIVE_FRACTION
        # negbio-hierarchical logs val/kl_level{g}: a level whose KL is ~0 carries no information
        # (the usual failure of hierarchical VAEs), even when the other levels do.
        level_kl = {int(key.removeprefix("val/kl_level")): float(value)
                    for key, value in metrics.items() if key.startswith("val/kl_level")}
        dead_levels = sorted(level for level, value in level_kl.items()
                             if value < COLLAPSE_LEVEL_KL_NATS)
        was_collapsed = self.collapsed_before
        self.collapsed = low_kl or dead or bool(dead_levels)
        self.collapsed_before = self.collapsed
        if was_collapsed and not self.collapsed and self.warned and trainer.is_global_zero:
            warnings.warn(
                f"recovered at epoch {trainer.current_epoch}: the latent code carries "
                f"information again ("
                + (f"KL {float(kl):.3g} nats/image" if kl is not None else "KL above the limit")
                + (f", every level above {COLLAPSE_LEVEL_KL_NATS:g} nats" if level_kl else "")
                + "); the earlier collapse warning no longer holds",
                CollapseWarning, stacklevel=1)
        if self.collapsed and not self.warned and trainer.is_global_zero:
            self.warned = True
            if low_kl:
                found = f"KL {float(kl):.3g} nats/image"
            elif dead:
                found = f"only {float(active):.0%} of units active"
            else:
                found = (f"level(s) {', '.join(map(str, dead_levels))} of {len(level_kl)} carry "
                         f"under {COLLAPSE_LEVEL_KL_NATS:g} nats/image")
            warnings.warn(collapse_message(found, trainer.current_epoch, bool(level_kl)),
                          CollapseWarning, stacklevel=1)


class CollapseWarning(UserWarning):
    """The model's latent code stopped carrying information (see :class:`CollapseGuard`)."""

    one_line = True  # the CLI prints it as one line of advice


def collapse_message(found: str, epoch: int, hierarchical: bool = False) -> str:
    remedy = ("--free-bits (e.g. --free-bits 0.5)" if hierarchical else "--prior-init unit")
    return (
        f"posterior collapse at epoch {epoch}: {found} — the decoder ignores the latent code "
        f"(reconstructions become the mean image); try a smaller --beta (e.g. --beta 0.1), "
        f"{remedy}, or a longer --beta-warmup-fraction"
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file and rename it: a crash never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with atomic_path(path) as temporary:
            super().save_checkpoint(checkpoint, temporary, storage_options)


class EpochMetricsCSV(Callback):
    """One row per epoch in ``metrics.csv`` (rewritten atomically after each validation)."""

    def __init__(self, path: Path, guard: CollapseGuard | None = None) -> None:
        self.path = path
        self.guard = guard
        self.rows: list[dict[str, Any]] = []
        self.started = time.time()
        self.restored = False

    # The rows travel in the checkpoint: a resumed run continues from exactly the rows of the
    # epochs its last.ckpt completed, and elapsed_s keeps counting from the last row.
    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(row) for row in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(row) for row in state_dict.get("rows", [])]
        self.restored = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.restored and self.path.exists() and trainer.current_epoch > 0:
            # resuming from a checkpoint written before the rows were kept in it
            with self.path.open() as stream:
                self.rows = list(csv.DictReader(stream))
        self.rows = [row for row in self.rows if int(row["epoch"]) < trainer.current_epoch]
        done = float(self.rows[-1]["elapsed_s"] or 0) if self.rows else 0.0
        self.started = time.time() - done

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        row: dict[str, Any] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for column in STAGE_COLUMNS:
            stage, _, name = column.partition("_")
            key = f"{stage}/{name}" + ("_epoch" if stage == "train" else "")
            row[column] = metrics.get(key, metrics.get(f"{stage}/{name}", ""))
        row["temperature"] = metrics.get("temperature", "")
        row["beta"] = metrics.get("beta", "")
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else ""
        row["elapsed_s"] = round(time.time() - self.started, 2)
        row["collapse_warning"] = int(self.guard.collapsed) if self.guard else ""
        # The model kind's own metrics (e.g. val/kl_level0 -> val_kl_level0), after the fixed ones.
        known = {f"{c.partition('_')[0]}/{c.partition('_')[2]}" for c in STAGE_COLUMNS}
        for key, value in sorted(metrics.items()):
            stage, _, name = key.partition("/")
            if stage == "val" and key not in known:
                row[f"val_{name}"] = value
            elif stage == "train" and name.endswith("_epoch") and key[:-6] not in known:
                row[f"train_{name[:-6]}"] = value
        self.rows.append(row)
        extra = sorted({column for r in self.rows for column in r} - set(EPOCH_COLUMNS))
        write_csv_atomic(self.path, self.rows, [*EPOCH_COLUMNS, *extra])
        log_epoch_row(trainer, row)  # --logger: the same numbers, under the same names


class LastEpochCheckpoint(Checkpoint):
    """``checkpoints/last.ckpt`` after every completed epoch (Lightning's ``save_last`` only
    rewrites it when the best checkpoint changes, so a resume would redo every epoch after
    the best one). A ``Checkpoint`` subclass, so Lightning runs it after the other callbacks'
    epoch-end hooks: the metrics row of the epoch is already in the state it saves."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            trainer.save_checkpoint(self.path, weights_only=False)  # full training state


class EpochProgressBar(TQDMProgressBar):
    """Lightning's progress bar, with the epoch out of the total (``Epoch 3/30``)."""

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(
            f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")


class EpochLines(Callback):
    """One line per epoch on stdout, for logs and pipes (no progress bar redraws)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self.epoch_started = time.time()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epoch_started = time.time()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        for label, key in (("train_loss", "train/loss_epoch"), ("val_loss", "val/loss"),
                           ("val_kl", "val/kl"), ("val_mse", "val/mse"),
                           ("val_fano", "val/fano_median")):
            if key in metrics:
                parts.append(f"{label} {float(metrics[key]):.4g}")
        parts.append(f"{time.time() - self.epoch_started:.1f} s")
        print("  ".join(parts), file=self.stream or sys.stdout, flush=True)


def _rng_devices() -> list[int]:
    return [torch.cuda.current_device()] if torch.cuda.is_available() else []


class ImageGrids(Callback):
    """After each validation: validation inputs over their posterior-mean reconstructions, and
    decoded hard-count samples from the prior, as images in the loggers."""

    def __init__(self, images: torch.Tensor, data_range: Sequence[float]) -> None:
        self.images = images[:GRID_IMAGES]
        self.data_range = tuple(float(v) for v in data_range)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.loggers or not trainer.is_global_zero:
            return
        from spikelatent.plotting import image_grid

        images = self.images.to(pl_module.device)
        # Drawing the samples must not move the training's random stream (same run with or
        # without a logger, and resumes stay exact).
        with torch.no_grad(), torch.random.fork_rng(devices=_rng_devices()):
            reconstructions = pl_module.reconstruct(images, mode="mean")
            samples = pl_module.generate(GRID_SAMPLES)
        pair = torch.cat([images, reconstructions]).cpu()
        step = trainer.global_step
        log_images(trainer, "reconstructions", image_grid(pair, nrow=len(images),
                                                          data_range=self.data_range), step)
        log_images(trainer, "samples", image_grid(samples.cpu(), nrow=10,
                                                  data_range=self.data_range), step)


@torch.no_grad()
def population_summary(model: Any, images: torch.Tensor) -> dict[str, float]:
    """For a count model on ``images`` (stimulus, C, H, W): ``active_units`` (units with any
    spike in one hard-count sample per stimulus), ``median_fano_factor`` (posterior variance /
    mean over stimulus x unit entries with a nonzero mean) and ``kl_per_image`` (nats); {} for
    other models."""
    if not model.family.is_count:
        return {}
    model.eval()
    images = images.to(model.device)
    posterior = model.posterior(images)
    counts = model.family.sample_counts(images, 1)[0]
    mean, variance = posterior.mean, posterior.variance
    fano = (variance / mean)[mean > 0]
    return {
        "active_units": float((counts > 0).any(0).sum()),
        "median_fano_factor": float(fano.median()) if fano.numel() else float("nan"),
        "kl_per_image": float(model.family.kl_per_unit(images).sum(-1).mean()),
    }


class FinalSummary(Callback):
    """At the end of training: for a count model :func:`population_summary` of the validation
    images as ``summary/active_units``, ``summary/median_fano_factor``, ``summary/kl_per_image``;
    and in TensorBoard the resolved configuration as an hparams session whose metrics are the
    last ``val_loss``, ``val_mse`` and the summary (TensorBoard's HPARAMS tab compares runs)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.loggers or not trainer.is_global_zero:
            return
        was_training = pl_module.training
        with torch.random.fork_rng(devices=_rng_devices()):
            summary = population_summary(pl_module, self.images)
        pl_module.train(was_training)
        numbers = {f"summary/{key}": value for key, value in summary.items()}
        log_numbers(trainer, numbers, step=trainer.global_step)
        metrics = {"val_loss": trainer.callback_metrics.get("val/loss"),
                   "val_mse": trainer.callback_metrics.get("val/mse"), **numbers}
        metrics = {key: float(value) for key, value in metrics.items() if value is not None}
        for logger in trainer.loggers:
            if type(logger).__name__ == "TensorBoardLogger":
                _write_hparams_session(logger, dict(pl_module.hparams), metrics)


def _write_hparams_session(logger: Any, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
    """The run's hyper-parameters (flattened: ``config/lr``, ``image_shape``, ...) and the names
    of its final metrics into TensorBoard's hparams plugin, without adding metric points."""
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    flat: dict[str, Any] = {}
    for key, value in hparams.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for name, item in items:
            label = key if name is None else f"{key}/{name}"
            flat[label] = item if isinstance(item, (bool, int, float, str)) else str(item)
    writer = logger.experiment
    for summary in hparams_summary(flat, metrics):
        writer.file_writer.add_summary(summary)
    writer.flush()

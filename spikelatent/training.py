"""Training: ``fit(config) -> run directory`` through a Lightning Trainer.

Scale-out is Lightning's: ``devices``, ``strategy`` (e.g. ``ddp``), ``num_nodes`` and
``precision`` go straight to :class:`lightning.pytorch.Trainer`; SLURM and torchrun
environments are detected by Lightning itself.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO

from spikelatent._io import atomic_path, write_text_atomic
from spikelatent.config import FitConfig
from spikelatent.data import datamodule_from_config
from spikelatent.errors import SpikelatentError
from spikelatent.model import VAE, load

CHECKPOINT_DIR = "checkpoints"


class _DropAdvertisements(logging.Filter):
    """Lightning logs a cloud-logger advertisement on every fit; users asked for training output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdvertisements())
# A Lightning-internal deprecation notice (torch pytree API), not actionable by users.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
EPOCH_COLUMNS = (
    "epoch", "step", "train_loss", "val_loss", "train_sse", "val_sse", "train_kl", "val_kl",
    "train_mse", "val_mse", "val_zero_fraction", "val_active_fraction",
    "temperature", "beta", "lr", "elapsed_s",
)
# Columns read from "<stage>/<name>" metrics; the last four are filled separately.
STAGE_COLUMNS = EPOCH_COLUMNS[2:-4]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file and rename it: a crash never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with atomic_path(path) as temporary:
            super().save_checkpoint(checkpoint, temporary, storage_options)


class EpochMetricsCSV(Callback):
    """One row per epoch in ``metrics.csv`` (rewritten atomically after each validation)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.started = time.time()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.path.exists():  # resuming: keep the rows of the epochs already done
            with self.path.open() as stream:
                self.rows = [row for row in csv.DictReader(stream)
                             if int(row["epoch"]) < trainer.current_epoch]

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
        self.rows.append(row)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EPOCH_COLUMNS)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.path, buffer.getvalue())


def default_run_dir(config: FitConfig) -> Path:
    variant = config.model if config.model != "negbio" else f"negbio-{config.kl}-{config.relax}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.data}-{variant}-{stamp}"


def fit(config: FitConfig | dict[str, Any], resume: bool = False, progress: bool = True) -> Path:
    """Train a model and return its run directory.

    ``config.out`` is the run directory (default ``runs/<data>-<model>-<time>``). With
    ``resume=True`` training continues from ``<out>/checkpoints/last.ckpt``.
    The run directory receives ``config.yaml``, ``splits.json``, ``metrics.csv``,
    ``checkpoints/{last,best}.ckpt`` and the figures ``reconstructions.png``,
    ``samples.png`` and ``loss_curves.png``.
    """
    if isinstance(config, dict):
        config = FitConfig.from_dict(config)
    config = config.resolved()
    run_dir = Path(config.out) if config.out else default_run_dir(config)
    config.out = str(run_dir)
    last_checkpoint = run_dir / CHECKPOINT_DIR / "last.ckpt"
    if resume and not last_checkpoint.is_file():
        raise SpikelatentError(f"cannot resume: no checkpoint at {last_checkpoint}")
    if not resume and last_checkpoint.exists():
        raise SpikelatentError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose another --out"
        )
    pl.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = datamodule_from_config(config.to_dict())
    datamodule.setup("fit")
    model = VAE(config.to_dict(), datamodule.image_shape, datamodule.data_range)

    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / "config.yaml")
    write_text_atomic(run_dir / "splits.json", json.dumps(datamodule.describe_splits(), indent=1))

    checkpoint_callback = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINT_DIR,
        filename="best",
        monitor="val/loss",
        mode="min",
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
    )
    callbacks: list[Callback] = [checkpoint_callback, EpochMetricsCSV(run_dir / "metrics.csv")]
    if progress:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, _steps_per_epoch(datamodule) // 20)))
    trainer = pl.Trainer(
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        num_nodes=config.num_nodes,
        precision=config.precision,
        gradient_clip_val=config.grad_clip or None,
        default_root_dir=run_dir,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        logger=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=False,
    )
    trainer.fit(model, datamodule=datamodule,
                ckpt_path=str(last_checkpoint) if resume else None, weights_only=True)
    if trainer.is_global_zero:
        write_figures(run_dir, datamodule)
    return run_dir


def _steps_per_epoch(datamodule: Any) -> int:
    try:
        return len(datamodule.train_dataloader())
    except Exception:  # noqa: BLE001 - only used to pick a refresh rate
        return 100


def write_figures(run_dir: Path, datamodule: Any, n: int = 10) -> None:
    """Reconstructions (inputs, a posterior sample, the posterior mean), prior samples (hard
    counts) and loss curves, as PNG in the run directory."""
    from spikelatent import plotting

    model = load(run_dir)
    images, _ = datamodule.split_tensors("val")
    inputs = images[:n]
    with torch.no_grad():
        rows = {"posterior sample": model.reconstruct(inputs, mode="sample"),
                "posterior mean": model.reconstruct(inputs, mode="mean")}
        samples = model.generate(100)
    # Both rows: a hard-count sample shows the latent noise, the posterior mean the code's content.
    plotting.save_model_comparison(rows, inputs, run_dir / "reconstructions.png",
                                   data_range=datamodule.data_range, n=n,
                                   title=f"{model.variant}: validation reconstructions")
    plotting.save_image_grid(samples, run_dir / "samples.png", nrow=10,
                             data_range=datamodule.data_range,
                             title=f"{model.variant}: samples from the prior")
    if (run_dir / "metrics.csv").exists():
        plotting.save_loss_curves(run_dir / "metrics.csv", run_dir / "loss_curves.png")


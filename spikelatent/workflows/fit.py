"""Training: ``fit(config) -> run directory`` through a Lightning Trainer.

Scale-out is Lightning's: ``devices``, ``strategy`` (e.g. ``ddp``), ``num_nodes`` and
``precision`` go straight to :class:`lightning.pytorch.Trainer`; SLURM and torchrun
environments are detected by Lightning itself.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

from spikelatent import plotting
from spikelatent.callbacks import (
    AtomicCheckpointIO,
    CollapseGuard,
    EpochLines,
    EpochMetricsCSV,
    EpochProgressBar,
    FinalSummary,
    ImageGrids,
    LastEpochCheckpoint,
)
from spikelatent.checkpoints import (
    CHECKPOINT_DIR,
    KEPT_DIR,
    load,
    load_state_dict_checked,
    read_resumable_checkpoint,
)
from spikelatent.config import FitConfig
from spikelatent.data import DATASETS, datamodule_from_config
from spikelatent.data.paths import path_label
from spikelatent.errors import CheckpointError, SpikelatentError
from spikelatent.io import write_text_atomic
from spikelatent.loggers import check_logger_extras, finish_loggers, make_loggers
from spikelatent.model import VAE, upgrade_state_dict

#: Lightning's info lines on every fit that users cannot act on: the devices it found, the
#: dataloader it peeked at, why its loop stopped, the checkpoint it resumed from (our start line
#: and epoch lines say all that), and its cloud-service tips.
LIGHTNING_CHATTER = ("GPU available:", "TPU available:", "HPU available:", "LOCAL_RANK:",
                     "Loading `train_dataloader` to estimate", "`Trainer.fit` stopped:",
                     "Restoring states from the checkpoint", "Restored all states from the checkpoint",
                     "💡 Tip:")
#: The Lightning loggers these lines are written to (rank_zero_info, the CUDA accelerator).
LIGHTNING_CHATTER_LOGGERS = ("lightning.pytorch.utilities.rank_zero",
                             "lightning.fabric.utilities.rank_zero",
                             "lightning.pytorch.accelerators.cuda")


class _HideLightningChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(LIGHTNING_CHATTER)


@contextmanager
def lightning_chatter_hidden() -> Iterator[None]:
    """Drop :data:`LIGHTNING_CHATTER` and a Lightning-internal deprecation notice while a Trainer
    is built and runs (every other warning and log line passes); the loggers and warning filters
    are left as they were afterwards."""
    chatter = _HideLightningChatter()
    loggers = [logging.getLogger(name) for name in LIGHTNING_CHATTER_LOGGERS]
    for logger in loggers:
        logger.addFilter(chatter)
    try:
        with warnings.catch_warnings():  # Lightning-internal use of a deprecated torch pytree API
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(chatter)


def default_run_dir(config: FitConfig) -> Path:
    variant = config.model if config.model != "negbio" else f"negbio-{config.kl}-{config.relax}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{data_label(config.data)}-{variant}-{stamp}"


@lightning_chatter_hidden()  # Lightning's device and loop lines (see LIGHTNING_CHATTER)
def fit(config: FitConfig | Mapping[str, Any], resume: bool = False, progress: bool = True) -> Path:
    """Train a model and return its run directory.

    ``config.out`` is the run directory (default ``runs/<data>-<model>-<time>``). With
    ``resume=True`` training continues from ``<out>/checkpoints/last.ckpt``.
    The run directory receives ``config.yaml``, ``splits.json``, ``metrics.csv``,
    ``checkpoints/{last,best}.ckpt`` and the figures ``reconstructions.png``,
    ``samples.png`` and ``loss_curves.png``.
    """
    config = FitConfig.coerce(config)
    run_dir = Path(config.out) if config.out else default_run_dir(config)
    config.out = str(run_dir)
    last_checkpoint = run_dir / CHECKPOINT_DIR / "last.ckpt"
    if resume and not last_checkpoint.is_file():
        raise SpikelatentError(f"cannot resume: no checkpoint at {last_checkpoint}")
    if not resume and last_checkpoint.exists():
        raise SpikelatentError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose another --out"
        )
    if not resume and run_dir.exists() and not run_dir.is_dir():
        raise SpikelatentError(f"--out {run_dir} is a file; choose a folder for the run")
    # Everything is checked before anything is written (a failed resume leaves the run as it was).
    check_logger_extras(config.logger)
    checkpoint = read_resumable_checkpoint(last_checkpoint, config.epochs) if resume else None
    pl.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = datamodule_from_config(config)
    datamodule.setup("fit")
    _record_data(config, datamodule, resume)
    model = VAE(config, datamodule.image_shape, datamodule.data_range,
                preprocessing=datamodule.preprocessor())
    if checkpoint is not None:
        _load_weights(model, checkpoint, last_checkpoint)
        del checkpoint
    # Whichever limit comes first stops the run: name them all.
    limits = [f"{config.epochs} epochs"]
    if config.max_steps is not None:
        limits.append(f"{config.max_steps} optimizer steps")
    if config.max_minutes is not None:
        limits.append(f"{config.max_minutes:g} minutes")
    rank_zero_info(
        f"{'resuming' if resume else 'training'} {model.variant} on {config.data} for "
        f"{' or '.join(limits)}{', whichever comes first' if len(limits) > 1 else ''}; run "
        f"directory: {run_dir} (metrics.csv and checkpoints/ are "
        f"updated every epoch, figures at the end)"
    )

    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / "config.yaml")
    write_text_atomic(run_dir / "splits.json", json.dumps(datamodule.describe_splits(), indent=1))
    loggers = make_loggers(config.logger, run_dir)  # inside the run directory (docs/training.md)

    checkpoint_callback = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINT_DIR,
        filename="best",
        monitor="val/loss",
        mode="min",
        save_top_k=1,
        enable_version_counter=False,
    )
    guard = CollapseGuard()
    callbacks: list[Callback] = [checkpoint_callback, guard,
                                 EpochMetricsCSV(run_dir / "metrics.csv", guard),
                                 LastEpochCheckpoint(last_checkpoint)]
    if config.keep_every_epochs:
        # Lightning's own periodic checkpoints (no monitor, all kept), beside best and last.
        callbacks.append(ModelCheckpoint(
            dirpath=run_dir / CHECKPOINT_DIR / KEPT_DIR, filename="epoch{epoch:03d}-step{step}",
            auto_insert_metric_name=False, every_n_epochs=config.keep_every_epochs, save_top_k=-1,
            save_on_train_epoch_end=True, enable_version_counter=False))
    interactive = progress and sys.stdout.isatty()
    if interactive:
        callbacks.append(EpochProgressBar(refresh_rate=max(1, _steps_per_epoch(datamodule) // 20)))
    elif progress:
        callbacks.append(EpochLines())
    if loggers:
        validation_images, _ = datamodule.split_tensors("val", count=256)
        callbacks += [ImageGrids(validation_images, datamodule.data_range),
                      FinalSummary(validation_images)]
    steps_per_epoch = _steps_per_epoch(datamodule)
    trainer = pl.Trainer(
        max_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        max_time=datetime.timedelta(minutes=config.max_minutes) if config.max_minutes else None,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        num_nodes=config.num_nodes,
        precision=config.precision,
        gradient_clip_val=config.grad_clip or None,
        default_root_dir=run_dir,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        logger=loggers or False,
        # Lightning's step-level logs at most every 50 steps, and at least once per epoch.
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        enable_progress_bar=interactive,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=False,
    )
    with warnings.catch_warnings():
        # resuming: the checkpoint folder is not empty by design; Lightning warns regardless
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        trainer.fit(model, datamodule=datamodule,
                    ckpt_path=str(last_checkpoint) if resume else None, weights_only=True)
    finish_loggers(loggers)
    if trainer.is_global_zero:
        write_figures(run_dir, datamodule)
    return run_dir


def _record_data(config: FitConfig, datamodule: Any, resume: bool) -> None:
    """Write the data's range and, for your own images, their source (path, file count,
    SHA-256) into the configuration; a resumed run whose data no longer hash the same stops."""
    record = getattr(datamodule, "source_record", None) or None
    if record is not None:
        record = {key: record[key] for key in ("kind", "path", "files", "dataset", "sha256")
                  if record.get(key) is not None}
    recorded = config.data_source or {}
    if resume and recorded.get("sha256") and record and record.get("sha256") != recorded["sha256"]:
        raise SpikelatentError(
            f"cannot resume: the data at {record.get('path')} changed since the run started "
            f"(SHA-256 {record['sha256'][:12]}..., the run's {recorded['sha256'][:12]}...); "
            f"resume with the original data, or start a new run with --out NEW_DIR"
        )
    config.data_source = record
    config.data_range = [float(value) for value in datamodule.data_range]


def fit_model(config: FitConfig | Mapping[str, Any] | None = None, *, resume: bool = False,
              progress: bool = True, **options: Any) -> VAE:
    """Train and return the trained model (best checkpoint, eval mode): ``spikelatent.fit``.

    For notebooks: ``model = spikelatent.fit(data="stimuli/", epochs=20, out="runs/mine")``;
    keywords are ``spikelatent fit``'s options (:class:`~spikelatent.config.FitConfig` fields)
    and override those of ``config``. ``model.run_dir`` is the run directory (see :func:`fit`).
    """
    values = FitConfig.coerce(config).to_dict() if config is not None else {}
    run_dir = fit(FitConfig.from_sources(**{**values, **options}), resume=resume,
                  progress=progress)
    model = load(run_dir)
    model.run_dir = run_dir
    return model


def data_label(data: str) -> str:
    """A short name of ``--data`` for run directories: the name, or a path's last part."""
    key = str(data).strip().lower().replace("_", "-")
    return key if key in DATASETS else path_label(data)


def _load_weights(model: VAE, checkpoint: dict[str, Any], path: Path) -> None:
    """The checkpoint's weights into ``model``, or a one-line error naming the first key that
    does not match the configured model (missing, unexpected or of another shape)."""
    problem = load_state_dict_checked(model, upgrade_state_dict(model, checkpoint["state_dict"])[0])
    if problem is not None:
        raise CheckpointError(
            f"cannot resume from {path}: it does not match the run's configuration "
            f"({problem}); resume with the run's own config.yaml"
        )


def _steps_per_epoch(datamodule: Any) -> int:
    try:
        return len(datamodule.train_dataloader())
    except Exception:  # noqa: BLE001 - only used to pick a refresh rate
        return 100


def write_figures(run_dir: Path, datamodule: Any, n: int = 10) -> None:
    """Reconstructions (inputs, a posterior sample, the posterior mean), prior samples (hard
    counts) and loss curves, as PNG in the run directory."""
    model = load(run_dir)
    inputs, _ = datamodule.split_tensors("val", count=n)  # a streamed split reads only these
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

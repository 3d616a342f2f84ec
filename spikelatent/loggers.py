"""Experiment loggers of ``spikelatent fit --logger``: Lightning's own, writing inside the run.

``csv`` is ``metrics.csv`` (always written). ``tensorboard``, ``wandb`` and ``mlflow`` are
Lightning's :class:`~lightning.pytorch.loggers.TensorBoardLogger`,
:class:`~lightning.pytorch.loggers.WandbLogger` and :class:`~lightning.pytorch.loggers.MLFlowLogger`,
saving to ``RUN/tensorboard/``, ``RUN/wandb/`` and ``RUN/mlruns/`` (so ``tensorboard --logdir runs/``
compares every run). Each receives the resolved configuration as hyper-parameters, every column of
``metrics.csv`` once per epoch under the same name (:func:`log_epoch_row`, at the epoch's last
optimizer step), Lightning's own step-level training values (``train/loss_step``, ...), the reconstruction and prior-sample grids after every validation
(:class:`ImageGrids`) and, at the end, the population summary of a count model. A resumed run
continues the same logger run (the W&B and MLflow run ids are kept in the run directory).
"""

from __future__ import annotations

import importlib.util
import math
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger

from spikelatent.errors import SpikelatentError
from spikelatent.io import write_text_atomic

#: Logger name -> (the module it needs, the pip extra that installs it).
LOGGER_EXTRAS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}
#: Where each logger writes, inside the run directory.
LOGGER_DIRS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlruns"}
#: A file in the logger's folder holding the W&B / MLflow run id, so a resume continues that run.
RUN_ID_FILE = "spikelatent-run-id"
#: Validation images shown in the reconstruction grid, prior samples in the sample grid.
GRID_IMAGES = 10
GRID_SAMPLES = 20


def check_logger_extras(names: Sequence[str]) -> None:
    """A one-line error naming the extra to install for the first logger whose library is missing."""
    for name in names:
        if name not in LOGGER_EXTRAS:
            continue
        module, extra = LOGGER_EXTRAS[name]
        if importlib.util.find_spec(module) is None:
            raise SpikelatentError(
                f"--logger {name} needs the {module} package; install it with "
                f"pip install 'spikelatent[{extra}]'"
            )


def make_loggers(names: Sequence[str], run_dir: Path, experiment: str = "spikelatent") -> list[Logger]:
    """Lightning loggers for ``names`` (``csv`` is metrics.csv: no Lightning logger), writing in
    ``run_dir``. Call :func:`check_logger_extras` first for a one-line error on a missing extra."""
    loggers: list[Logger] = []
    for name in names:
        if name == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger

            # version "": the events go straight into RUN/tensorboard/ (a resume appends there)
            loggers.append(TensorBoardLogger(save_dir=str(run_dir), name=LOGGER_DIRS[name],
                                             version="", default_hp_metric=False))
        elif name == "wandb":
            from lightning.pytorch.loggers import WandbLogger

            folder = run_dir / LOGGER_DIRS[name]
            folder.mkdir(parents=True, exist_ok=True)
            run_id = _kept_run_id(folder) or uuid.uuid4().hex[:16]
            write_text_atomic(folder / RUN_ID_FILE, run_id)
            logger = WandbLogger(name=run_dir.name, save_dir=str(run_dir), id=run_id,
                                 project=experiment, resume="allow")
            # Lightning always passes anonymous=None, which wandb >= 0.2x answers with "WARNING
            # The anonymous setting has no effect" on every run; leave the setting out.
            init_arguments = getattr(logger, "_wandb_init", None)
            if isinstance(init_arguments, dict) and init_arguments.get("anonymous") is None:
                init_arguments.pop("anonymous", None)
            loggers.append(logger)
        elif name == "mlflow":

            folder = run_dir / LOGGER_DIRS[name]
            folder.mkdir(parents=True, exist_ok=True)
            # A SQLite store in the run: mlflow >= 3 refuses a bare file store.
            logger = ResumableMLFlowLogger(experiment_name=experiment, run_name=run_dir.name,
                                           tracking_uri=f"sqlite:///{(folder / 'mlflow.db').resolve()}",
                                           run_id=_kept_run_id(folder))
            write_text_atomic(folder / RUN_ID_FILE, str(logger.run_id))
            loggers.append(logger)
    return loggers


def _flat_parameters(params: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``a/b`` keys (Lightning's delimiter for logged hyper-parameters)."""
    out: dict[str, Any] = {}
    for key, value in dict(params).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat_parameters(value, f"{name}/"))
        else:
            out[name] = value
    return out


def _mlflow_logger_class() -> type:
    from lightning.pytorch.loggers import MLFlowLogger

    class _Resumable(MLFlowLogger):
        """Lightning's MLflow logger, except that a resumed run logs only the parameters its
        MLflow run does not hold yet: MLflow refuses to change a logged value (a resume with a
        new --epochs), and the run keeps the configuration it started with (config.yaml holds
        the new one)."""

        def log_hyperparams(self, params: Any) -> None:
            held = self.experiment.get_run(self.run_id).data.params
            new = {key: value for key, value in _flat_parameters(params).items()
                   if key not in held}
            if new:
                super().log_hyperparams(new)

    return _Resumable


def ResumableMLFlowLogger(**kwargs: Any) -> Any:  # noqa: N802 - a class made on first use
    """An MLflow logger whose resumed runs keep their first parameters (see ``_Resumable``)."""
    return _mlflow_logger_class()(**kwargs)


def finish_loggers(loggers: Sequence[Logger]) -> None:
    """End the W&B run of a finished fit (Lightning leaves it open, and the next fit in the same
    process would write into it); the others are closed by Lightning itself."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            logger.experiment.finish()


def _kept_run_id(folder: Path) -> str | None:
    path = folder / RUN_ID_FILE
    return path.read_text().strip() or None if path.is_file() else None


def log_images(trainer: pl.Trainer, key: str, grid: np.ndarray, step: int) -> None:
    """One ``(height, width, 3)`` image on [0, 1] to every logger that takes images."""
    for logger in trainer.loggers:
        kind = type(logger).__name__
        if kind == "TensorBoardLogger":
            logger.experiment.add_image(key, grid, step, dataformats="HWC")
        elif kind == "WandbLogger":
            logger.log_image(key=key, images=[grid], step=step)
        elif kind == "MLFlowLogger":
            logger.experiment.log_image(logger.run_id, grid, f"{key}/step_{step:07d}.png")


def log_numbers(trainer: pl.Trainer, values: dict[str, Any], step: int) -> None:
    """Finite numbers of ``values`` to every logger at optimizer step ``step``."""
    numbers = {key: float(value) for key, value in values.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)
               and math.isfinite(float(value))}
    if numbers:
        for logger in trainer.loggers:
            logger.log_metrics(numbers, step=step)


def log_epoch_row(trainer: pl.Trainer, row: dict[str, Any]) -> None:
    """Every number of a ``metrics.csv`` row, under its column name, at the row's optimizer step
    (called once the row is written, so the loggers hold exactly the numbers of the file)."""
    if trainer.loggers and trainer.is_global_zero:
        values = {key: value for key, value in row.items() if key not in ("epoch", "step")}
        log_numbers(trainer, values, step=int(row["step"]))


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

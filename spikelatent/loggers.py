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

"""Run configuration: every option of ``spikelatent fit``, validated, saved as ``config.yaml``.

A run directory's ``config.yaml`` holds the *resolved* configuration (defaults filled in),
so ``spikelatent fit --config RUN_DIR/config.yaml`` repeats a run exactly.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spikelatent._io import write_text_atomic
from spikelatent.errors import SpikelatentError

MODELS = ("gaussian", "laplace", "categorical", "poisson", "negbio")
ARCHITECTURES = ("linear", "mlp", "conv")

# Epochs and batch size when none is given: the embedded digits set is tiny (1374 training
# images), so it gets smaller batches (more optimizer steps) and more passes.
DEFAULT_EPOCHS = {"digits": 100, "synthetic": 5}
DEFAULT_EPOCHS_OTHER = 50
DEFAULT_BATCH_SIZE = {"digits": 32}
DEFAULT_BATCH_SIZE_OTHER = 128


@dataclass
class FitConfig:
    """Every setting of a training run. Units: learning rates per step, fractions of all steps."""

    # data
    data: str = "digits"
    data_dir: str | None = None
    download: bool = False
    val_fraction: float = 0.1
    limit: int | None = None
    num_workers: int = 0
    # model
    model: str = "negbio"
    kl: str = "ds"
    relax: str = "ct"
    mc_samples: int = 5
    categories: int = 8
    arch: str = "conv"
    encoder: str | None = None
    decoder: str | None = None
    latent_dim: int = 256
    # objective and schedules (DESIGN.md "Training conventions")
    beta: float = 1.0
    beta_start: float = 1e-4
    beta_hold_fraction: float = 0.01
    beta_warmup_fraction: float = 0.5
    temperature_start: float = 1.0
    temperature_end: float | None = None  # None: 0.05, or 0.1 for categorical
    temperature_anneal_fraction: float = 0.5
    # optimisation
    epochs: int | None = None
    batch_size: int | None = None  # None: 32 on digits, 128 otherwise
    lr: float = 2e-3
    lr_min: float = 1e-5
    warmup_fraction: float = 0.01
    grad_clip: float = 1000.0
    seed: int = 0
    # output and hardware (passed to Lightning)
    out: str | None = None
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    data_options: dict = field(default_factory=dict)  # dataset-specific, e.g. {hflip: true}

    def resolved(self) -> FitConfig:
        """A validated copy with every default filled in."""
        config = dataclasses.replace(self)
        if config.model == "negbinomial":
            config.model = "negbio"
        config.encoder = config.encoder or config.arch
        config.decoder = config.decoder or config.arch
        if config.epochs is None:
            config.epochs = DEFAULT_EPOCHS.get(config.data, DEFAULT_EPOCHS_OTHER)
        if config.batch_size is None:
            config.batch_size = DEFAULT_BATCH_SIZE.get(config.data, DEFAULT_BATCH_SIZE_OTHER)
        if config.temperature_end is None:
            config.temperature_end = 0.1 if config.model == "categorical" else 0.05
        config.validate()
        return config

    def validate(self) -> None:
        """Raise a one-line :class:`SpikelatentError` for the first invalid option."""
        choice = {
            "model": MODELS,
            "kl": ("ds", "mc"),
            "relax": ("ct", "gumbel"),
            "arch": ARCHITECTURES,
        }
        for name, allowed in choice.items():
            if getattr(self, name) not in allowed:
                raise SpikelatentError(
                    f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}; "
                    f"got {getattr(self, name)!r}"
                )
        for name in ("encoder", "decoder"):
            value = getattr(self, name)
            if value is not None and value not in ARCHITECTURES:
                raise SpikelatentError(
                    f"--{name} must be one of {', '.join(ARCHITECTURES)}; got {value!r}"
                )
        positive_ints = ("latent_dim", "batch_size", "mc_samples", "num_nodes", "epochs")
        for name in positive_ints:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise SpikelatentError(
                    f"--{name.replace('_', '-')} must be a positive integer; got {value!r}"
                )
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise SpikelatentError(f"--limit must be a positive integer; got {self.limit!r}")
        nonnegative = ("beta", "beta_start", "grad_clip", "num_workers", "seed")
        for name in nonnegative:
            value = getattr(self, name)
            if not _finite_number(value) or value < 0:
                raise SpikelatentError(
                    f"--{name.replace('_', '-')} must be a finite number >= 0; got {value!r}"
                )
        for name in ("lr", "lr_min", "temperature_start"):
            value = getattr(self, name)
            if not _finite_number(value) or value <= 0:
                raise SpikelatentError(
                    f"--{name.replace('_', '-')} must be a finite number > 0; got {value!r}"
                )
        if self.temperature_end is not None and (
            not _finite_number(self.temperature_end) or self.temperature_end <= 0
        ):
            raise SpikelatentError(
                f"--temperature-end must be > 0 (tau -> 0 is used only for hard samples); "
                f"got {self.temperature_end!r}"
            )
        fractions = (
            "val_fraction",
            "beta_hold_fraction",
            "beta_warmup_fraction",
            "temperature_anneal_fraction",
            "warmup_fraction",
        )
        for name in fractions:
            value = getattr(self, name)
            if not _finite_number(value) or not 0 <= value < 1:
                raise SpikelatentError(
                    f"--{name.replace('_', '-')} must be in [0, 1); got {value!r}"
                )
        if self.model == "categorical" and self.latent_dim % self.categories:
            raise SpikelatentError(
                f"categorical model: --latent-dim ({self.latent_dim}) must be divisible by "
                f"--categories ({self.categories})"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FitConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SpikelatentError(
                f"unknown configuration option(s): {', '.join(unknown)}; "
                f"see `spikelatent fit --help` for the options"
            )
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> FitConfig:
        path = Path(path)
        if path.is_dir():
            path = path / "config.yaml"
        if not path.is_file():
            raise SpikelatentError(f"config file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            first_line = str(error).splitlines()[0]
            raise SpikelatentError(f"cannot parse {path} as YAML: {first_line}") from None
        if not isinstance(values, dict):
            raise SpikelatentError(f"{path} must hold a mapping of option: value")
        return cls.from_dict(values)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the configuration as YAML, atomically."""
        return write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def _finite_number(value: Any) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return number == number and abs(number) != float("inf")

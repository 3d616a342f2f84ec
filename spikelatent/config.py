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
    nb_sampler: str = "gamma-poisson"
    mc_samples: int = 5
    categories: int = 8
    arch: str = "conv"
    encoder: str | None = None
    decoder: str | None = None
    latent_dim: int = 256
    # network options (conv only; None = the architecture's defaults, see docs/networks.md)
    encoder_channels: list[int] | None = None
    decoder_channels: list[int] | None = None
    encoder_layer_norm: bool = True
    decoder_unit_norm: bool = True
    # latent parameterization (count families)
    prior_init: str = "unit"
    posterior_logits: str = "absolute"
    modulation_bound: float = 5.0
    mc_kl: str = "samples"
    gumbel_support: int | None = None
    # objective and schedules (docs/training.md)
    preset: str | None = None
    objective: str = "sum"
    beta: float | str = "auto"  # "auto": C * H / K (docs/training.md "Objective scale")
    beta_start: float = 0.0
    beta_hold_fraction: float = 0.0
    beta_warmup_fraction: float = 0.25
    temperature_start: float = 1.0
    temperature_end: float | None = None  # None: 0.24, or 0.1 for categorical
    temperature_anneal_fraction: float = 1.0
    # optimisation
    epochs: int | None = None
    max_steps: int | None = None  # None: epochs alone set the length
    max_minutes: float | None = None  # wall-clock limit; the schedules follow it (VAE.schedule_step)
    batch_size: int | None = None  # None: 32 on digits, 128 otherwise
    optimizer: str = "adam"
    lr: float = 1e-3
    lr_schedule: str = "constant"
    lr_min: float = 1e-5
    warmup_fraction: float = 0.0
    grad_clip: float = 1.0
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
        if config.preset is not None and not getattr(self, "_preset_applied", False):
            # Built directly (FitConfig(preset=...)): the preset fills the options left at
            # their defaults. from_dict and the CLI apply it under the options given instead.
            defaults = FitConfig()
            for name, value in load_preset(config.preset).items():
                if getattr(config, name) == getattr(defaults, name):
                    setattr(config, name, value)
        config._preset_applied = True
        if config.model == "negbinomial":
            config.model = "negbio"
        config.encoder = config.encoder or config.arch
        config.decoder = config.decoder or config.arch
        if config.epochs is None:
            config.epochs = DEFAULT_EPOCHS.get(config.data, DEFAULT_EPOCHS_OTHER)
        if config.batch_size is None:
            config.batch_size = DEFAULT_BATCH_SIZE.get(config.data, DEFAULT_BATCH_SIZE_OTHER)
        if config.temperature_end is None:
            config.temperature_end = default_temperature_end(config.model)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise a one-line :class:`SpikelatentError` for the first invalid option."""
        choice = {
            "model": MODELS,
            "kl": ("ds", "mc", "series"),
            "relax": ("ct", "gumbel"),
            "arch": ARCHITECTURES,
            **OPTION_CHOICES,
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
        positive_ints = ("latent_dim", "batch_size", "mc_samples", "num_nodes", "epochs", "max_steps")
        for name in positive_ints:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise SpikelatentError(
                    f"--{name.replace('_', '-')} must be a positive integer; got {value!r}"
                )
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise SpikelatentError(f"--limit must be a positive integer; got {self.limit!r}")
        if self.beta != "auto" and (not _finite_number(self.beta) or self.beta < 0
                                    or isinstance(self.beta, (bool, str))):
            raise SpikelatentError(
                f"--beta must be 'auto' or a finite number >= 0; got {self.beta!r}"
            )
        nonnegative = ("beta_start", "grad_clip", "num_workers", "seed")
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
            "warmup_fraction",
        )
        for name in fractions:
            value = getattr(self, name)
            if not _finite_number(value) or not 0 <= value < 1:
                raise SpikelatentError(
                    f"--{name.replace('_', '-')} must be in [0, 1); got {value!r}"
                )
        # The published temperature schedule anneals over the whole run.
        value = self.temperature_anneal_fraction
        if not _finite_number(value) or not 0 <= value <= 1:
            raise SpikelatentError(f"--temperature-anneal-fraction must be in [0, 1]; got {value!r}")
        if self.preset is not None and self.preset not in available_presets():
            raise SpikelatentError(
                f"--preset must be one of {', '.join(available_presets())}; got {self.preset!r}"
            )
        if self.max_minutes is not None and (
            not _finite_number(self.max_minutes) or self.max_minutes <= 0
        ):
            raise SpikelatentError(f"--max-minutes must be a number > 0; got {self.max_minutes!r}")
        if not _finite_number(self.modulation_bound) or self.modulation_bound <= 0:
            raise SpikelatentError(
                f"--modulation-bound must be a finite number > 0; got {self.modulation_bound!r}"
            )
        if self.gumbel_support is not None and (
            not isinstance(self.gumbel_support, int) or isinstance(self.gumbel_support, bool)
            or self.gumbel_support < 1
        ):
            raise SpikelatentError(
                f"--gumbel-support must be a positive integer (largest count kept); "
                f"got {self.gumbel_support!r}"
            )
        for name in ("encoder_channels", "decoder_channels"):
            widths = getattr(self, name)
            if widths is not None and (
                not isinstance(widths, (list, tuple)) or not widths
                or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths)
            ):
                raise SpikelatentError(
                    f"--{name.replace('_', '-')} takes positive integer widths, one per stride-2 "
                    f"stage, e.g. 32,64; got {widths!r}"
                )
        for name in ("encoder_layer_norm", "decoder_unit_norm", "download"):
            if not isinstance(getattr(self, name), bool):
                raise SpikelatentError(
                    f"{name} must be true or false; got {getattr(self, name)!r}"
                )
        if self.model == "categorical" and self.latent_dim % self.categories:
            raise SpikelatentError(
                f"categorical model: --latent-dim ({self.latent_dim}) must be divisible by "
                f"--categories ({self.categories})"
            )
        self.check_options_apply()

    def check_options_apply(self) -> None:
        """A one-line error for an option set (away from its default) that the chosen model
        does not use, e.g. ``--kl mc --model poisson``; see :data:`MODEL_SPECIFIC_OPTIONS`."""
        for name, (models, needs) in MODEL_SPECIFIC_OPTIONS.items():
            value = getattr(self, name)
            if value == self._default_value(name):
                continue
            flag = f"--{name.replace('_', '-')}" + (
                "" if isinstance(value, bool) else f" {_flag_value(value)}")
            if self.model not in models:
                raise SpikelatentError(
                    f"{flag} does not apply to --model {self.model} (only to "
                    f"{', '.join(models)}); drop it or choose --model {models[0]}"
                )
            for other, wanted in needs.items():
                if getattr(self, other) != wanted:
                    raise SpikelatentError(
                        f"{flag} applies only with --{other.replace('_', '-')} {wanted} "
                        f"(got {getattr(self, other)}); drop it or pass "
                        f"--{other.replace('_', '-')} {wanted}"
                    )

    def _default_value(self, name: str) -> Any:
        """An option's value when not given: the preset's, else the built-in default (as
        resolved for this model)."""
        preset = load_preset(self.preset) if self.preset in available_presets() else {}
        if name in preset:
            return preset[name]
        value = next(f for f in dataclasses.fields(FitConfig) if f.name == name).default
        if name == "temperature_end" and value is None and self.temperature_end is not None:
            return default_temperature_end(self.model)
        return value

    def to_dict(self) -> dict[str, Any]:
        """Every option as a plain dict (what ``config.yaml`` holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FitConfig:
        """A configuration from option: value pairs; a ``preset`` fills the options not given.

        Precedence: built-in defaults < the preset's values < the values given here.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SpikelatentError(
                f"unknown configuration option(s): {', '.join(unknown)}; "
                f"see `spikelatent fit --help` for the options"
            )
        preset = values.get("preset")
        merged = {**(load_preset(preset) if preset else {}), **values}
        config = cls(**merged)
        config._preset_applied = True
        return config

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> FitConfig:
        """The configuration in a YAML file (or ``RUN_DIR/config.yaml``), its preset applied."""
        return cls.from_dict(read_yaml_options(path))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the configuration as YAML, atomically."""
        return write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def read_yaml_options(path: str | os.PathLike) -> dict[str, Any]:
    """The option: value mapping of a YAML file (or ``RUN_DIR/config.yaml``), not yet validated."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.yaml"
    if not path.is_file():
        raise SpikelatentError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SpikelatentError(
            f"{path} is not valid YAML ({where}{problem}); write one `option: value` per line"
        ) from None
    except UnicodeDecodeError:
        raise SpikelatentError(f"{path} is not a text file; give a YAML file of option: value") from None
    if not isinstance(values, dict):
        raise SpikelatentError(f"{path} must hold a mapping of option: value")
    return values


def default_temperature_end(model: str) -> float:
    """The temperature after the anneal when none is given: 0.24 (the NegBio-VAE code's value at
    the end of its 200 epochs, measured best in analyses/ablation.py), 0.1 for categorical."""
    return 0.1 if model == "categorical" else 0.24


#: Options with a fixed set of values (besides model, kl, relax and arch).
OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "prior_init": ("unit", "sparse"),
    "posterior_logits": ("relative", "absolute"),
    "mc_kl": ("samples", "gamma"),
    "nb_sampler": ("gamma-poisson", "counting"),
    "objective": ("sum", "published"),
    "optimizer": ("adamax", "adam"),
    "lr_schedule": ("cosine", "constant"),
}
PRESET_DIR = Path(__file__).parent / "presets"

COUNT_MODELS = ("poisson", "negbio")
#: Models whose training uses a relaxation temperature (Gaussian and Laplace do not).
TEMPERATURE_MODELS = ("categorical", "poisson", "negbio")
#: Options that only some models use: option -> (the models it applies to, the values of other
#: options it needs). :meth:`FitConfig.validate` rejects such an option set away from its
#: default for any other model, in one line. A new model-specific option is one more row.
MODEL_SPECIFIC_OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "kl": (("negbio",), {}),
    "relax": (COUNT_MODELS, {}),
    "mc_samples": (("negbio",), {"kl": "mc"}),
    "mc_kl": (("negbio",), {"kl": "mc"}),
    "nb_sampler": (("negbio",), {}),
    "categories": (("categorical",), {}),
    "temperature_start": (TEMPERATURE_MODELS, {}),
    "temperature_end": (TEMPERATURE_MODELS, {}),
    "temperature_anneal_fraction": (TEMPERATURE_MODELS, {}),
    "prior_init": (COUNT_MODELS, {}),
    "posterior_logits": (("negbio",), {}),
    "modulation_bound": (COUNT_MODELS, {}),
    "gumbel_support": (COUNT_MODELS, {"relax": "gumbel"}),
    "encoder_channels": (MODELS, {"encoder": "conv"}),
    "encoder_layer_norm": (MODELS, {"encoder": "conv"}),
    "decoder_channels": (MODELS, {"decoder": "conv"}),
    "decoder_unit_norm": (MODELS, {"decoder": "conv"}),
}


def _flag_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def available_presets() -> tuple[str, ...]:
    """Names of the presets shipped with the package (``spikelatent/presets/*.yaml``)."""
    return tuple(sorted(path.stem for path in PRESET_DIR.glob("*.yaml")))


def load_preset(name: str) -> dict[str, Any]:
    """The option: value pairs of a shipped preset (``paper``, ``poisson-vae``, ...)."""
    if name not in available_presets():
        raise SpikelatentError(
            f"--preset must be one of {', '.join(available_presets())}; got {name!r}"
        )
    values = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text()) or {}
    known = {f.name for f in dataclasses.fields(FitConfig)}
    unknown = sorted(set(values) - known)
    if unknown:  # a packaging error, not a user error
        raise SpikelatentError(f"preset {name!r} holds unknown options: {', '.join(unknown)}")
    return {**values, "preset": name}


def _finite_number(value: Any) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return number == number and abs(number) != float("inf")

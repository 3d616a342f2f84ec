"""Run configuration: every option of ``spikelatent fit``, typed, validated, saved as ``config.yaml``.

:class:`FitConfig` is the one home of the options: each field is declared with its default, its
help text and the models it applies to (through :mod:`spikelatent.options`), and the command
line, YAML files and the Python API all read it. :meth:`FitConfig.from_sources` merges the
sources with their precedence (built-in defaults < a preset < a YAML file < explicit values);
:meth:`FitConfig.resolved` fills the defaults that depend on other options and validates.

A run directory's ``config.yaml`` holds the *resolved* configuration (defaults filled in),
so ``spikelatent fit --config RUN_DIR/config.yaml`` repeats a run exactly.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from spikelatent import options as opt
from spikelatent.errors import SpikelatentError
from spikelatent.io import write_text_atomic
from spikelatent.options import (
    ARCHITECTURES,
    COUNT_MODELS,
    MODELS,
    TEMPERATURE_MODELS,
    Architecture,
    Choice,
    KLEstimator,
    LoggerName,
    LRSchedule,
    MCKLEstimator,
    ModelName,
    NBSampler,
    Objective,
    OptimizerName,
    Option,
    PosteriorLogits,
    PriorInit,
    Relaxation,
    option,
)

__all__ = [
    "ARCHITECTURES",
    "COUNT_MODELS",
    "MODELS",
    "MODEL_SPECIFIC_OPTIONS",
    "OPTION_CHOICES",
    "TEMPERATURE_MODELS",
    "FitConfig",
    "available_presets",
    "load_preset",
    "read_yaml_options",
]

PRESET_DIR = Path(__file__).parent / "presets"


def available_presets() -> tuple[str, ...]:
    """Names of the presets shipped with the package (``spikelatent/presets/*.yaml``)."""
    return tuple(sorted(path.stem for path in PRESET_DIR.glob("*.yaml")))


# Epochs and batch size when none is given: the embedded digits set is tiny (1374 training
# images), so it gets smaller batches (more optimizer steps) and more passes.
DEFAULT_EPOCHS = {"digits": 100, "synthetic": 5}
DEFAULT_EPOCHS_OTHER = 50
DEFAULT_BATCH_SIZE = {"digits": 32}
DEFAULT_BATCH_SIZE_OTHER = 128
#: The temperature after the anneal when none is given: 0.24 (the NegBio-VAE code's value at the
#: end of its 200 epochs, measured best in analyses/ablation.py), 0.1 for categorical latents.
DEFAULT_TEMPERATURE_END = 0.24
DEFAULT_TEMPERATURE_END_CATEGORICAL = 0.1


def _per_dataset(values: dict[str, int], other: int) -> str:
    return ", ".join(f"{value} on {name}" for name, value in values.items()) + f", {other} otherwise"


def _beta(text: str) -> float | str:
    """``auto`` or a number (the flag type of --beta)."""
    import argparse

    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number; got {text!r}") from None


def parse_devices(value: Any) -> Any:
    """Lightning's ``devices`` from text: ``"2"`` -> 2, ``"0,1"`` -> [0, 1]; others unchanged."""
    if isinstance(value, str) and value not in ("auto", "-1"):
        if "," in value:
            return [int(part) for part in value.split(",") if part.strip()]
        if value.isdigit():
            return int(value)
    return value


def _size(text: str) -> int | str:
    """``32`` -> 32, ``32x48`` kept as text (the flag type of --image-size and --crop)."""
    return int(text) if text.strip().isdigit() else text.strip()


#: ``--whiten``: the whitening of natural-image data (docs/data.md "Natural-image patches").
WHITEN = Choice(name="whiten", values=("none", "fourier", "zca"), default=None,
                help="whitening of the images or patches", unset="none; natural-patches fourier",
                meanings={"none": "none", "fourier": "per image, the inverse 1/f amplitude with "
                          "a low-pass roll-off", "zca": "ZCA of the training patches"})

#: ``--encoder`` / ``--decoder``: an architecture for one side (default: ``--arch``'s).
ENCODER = Choice(name="encoder", values=ARCHITECTURES, default=None,
                 help="encoder architecture (overrides --arch)", unset="--arch")
DECODER = Choice(name="decoder", values=ARCHITECTURES, default=None,
                 help="decoder architecture (overrides --arch)", unset="--arch")
PRESET = Choice(name="preset", values=available_presets(), default=None,
                help="a published set of options; flags override it", unset="none")
_TEMPERATURE = {"applies_to": TEMPERATURE_MODELS}


@dataclass
class FitConfig:
    """Every setting of a training run. Units: learning rates per step, fractions of all steps.

    ``FitConfig(preset=NAME, ...)`` fills the options left at their built-in defaults from the
    preset; :meth:`from_sources` / :meth:`from_dict` apply it under the values given instead.
    ``config[name]`` reads an option by name, as from ``config.yaml``'s mapping.
    """

    # data
    data: str = option("digits", "dataset: digits (embedded), mnist, fashion-mnist, cifar16, "
                                 "celeba64, synthetic, natural-patches (embedded), or a PATH: a "
                                 "folder of images, .npy, .npz, .h5:DATASET (docs/data.md)")
    data_dir: str | None = option(None, "folder holding the dataset files",
                                  unset="$SPIKELATENT_DATA, then the cache")
    download: bool = option(False, "download the dataset with torchvision when it is not found "
                                   "(needs internet)")
    val_fraction: float = option(0.1, "fraction of the training set held out for validation")
    limit: int | None = option(None, "use at most this many training images (quick runs)",
                               unset="all")
    num_workers: int = option(0, "DataLoader worker processes")
    # your own images and natural-image patches (docs/data.md); None = the data set's default
    image_size: int | str | None = option(
        None, "resize to S x S or HxW (scale to cover, center-crop); folders, arrays, digits",
        unset="the images' own size", parse=_size)
    crop: int | str | None = option(None, "center-crop S x S or HxW before resizing (folders, "
                                    "arrays)", unset="none", parse=_size)
    grayscale: bool | None = option(None, "one luma channel (folders, arrays)",
                                    unset="off; natural-patches on")
    test_fraction: float | None = option(
        None, "share of the images carved as the test split when the data have none",
        unset="0.15; natural-patches 0.2")
    patches: int | None = option(None, "random S x S patches from every image (folders, arrays, "
                                 "natural-patches)", unset="whole images; natural-patches 16")
    patches_per_image: int | None = option(None, "patches per image with --patches",
                                           unset="100; natural-patches 2000")
    log_intensity: bool | None = option(None, "log(x + 0.01) of the intensities first",
                                        unset="off; natural-patches on")
    whiten: Literal["none", "fourier", "zca"] | None = WHITEN.field()
    whiten_cutoff: float | None = option(None, "roll-off of --whiten fourier as a fraction of "
                                         "Nyquist, 0 = none", unset="0.8")
    contrast_normalize: bool | None = option(None, "each image or patch minus its mean, divided "
                                             "by its s.d.", unset="off")
    # recorded by `spikelatent fit` (not options): where the data came from, and their range
    data_source: dict | None = option(None, "recorded: path, file count and SHA-256 of the "
                                      "data; --resume refuses other data", flag=False)
    data_range: list[float] | None = option(None, "recorded: the (low, high) range of the data",
                                            flag=False)
    # model
    model: ModelName = opt.MODEL.field()
    kl: KLEstimator = opt.KL.field()
    relax: Relaxation = opt.RELAX.field()
    nb_sampler: NBSampler = opt.NB_SAMPLER.field()
    mc_samples: int = opt.MC_SAMPLES.field()
    categories: int = opt.CATEGORIES.field()
    arch: Architecture = opt.ARCH.field()
    encoder: Architecture | None = ENCODER.field()
    decoder: Architecture | None = DECODER.field()
    latent_dim: int = opt.LATENT_DIM.field()
    # network options (conv only; None = the architecture's defaults, see docs/networks.md)
    encoder_channels: list[int] | None = opt.ENCODER_CHANNELS.field()
    decoder_channels: list[int] | None = opt.DECODER_CHANNELS.field()
    encoder_layer_norm: bool = opt.ENCODER_LAYER_NORM.field()
    decoder_unit_norm: bool = opt.DECODER_UNIT_NORM.field()
    # latent parameterization (count families)
    prior_init: PriorInit = opt.PRIOR_INIT.field()
    posterior_logits: PosteriorLogits = opt.POSTERIOR_LOGITS.field()
    modulation_bound: float = opt.MODULATION_BOUND.field()
    mc_kl: MCKLEstimator = opt.MC_KL.field()
    gumbel_support: int | None = opt.GUMBEL_SUPPORT.field()
    # hierarchical model (negbio-hierarchical, docs/hierarchical.md)
    scales: int = opt.SCALES.field()
    groups: list[int] = opt.GROUPS.field()
    hierarchy_channels: list[int] = opt.HIERARCHY_CHANNELS.field()
    latent_channels: list[int] = opt.LATENT_CHANNELS.field()
    free_bits: float = opt.FREE_BITS.field()
    kl_balance: opt.KLBalance = opt.KL_BALANCE.field()
    # objective and schedules (docs/training.md)
    preset: str | None = PRESET.field()
    objective: Objective = opt.OBJECTIVE.field()
    beta: float | Literal["auto"] = option(
        "auto", "KL weight; with --objective sum the weight on sum KL against SSE (beta = 2 "
        "sigma^2); auto = C*H/K, the published code's weighting, e.g. 0.109 for 28x28 and 256 "
        "units (docs/training.md 'Objective scale')", parse=_beta)
    beta_start: float = option(0.0, "beta held during the first --beta-hold-fraction of steps")
    beta_hold_fraction: float = option(0.0, "fraction of steps beta is held at --beta-start")
    beta_warmup_fraction: float = option(0.25, "fraction of steps beta rises linearly to --beta")
    temperature_start: float = option(1.0, "relaxation temperature at step 0", **_TEMPERATURE)
    temperature_end: float | None = option(
        None, "temperature after the anneal", **_TEMPERATURE,
        unset=f"{DEFAULT_TEMPERATURE_END:g}; categorical {DEFAULT_TEMPERATURE_END_CATEGORICAL:g}")
    temperature_anneal_fraction: float = option(
        1.0, "fraction of steps over which the temperature anneals", **_TEMPERATURE)
    # optimisation
    epochs: int | None = option(None, "training epochs",
                                unset=_per_dataset(DEFAULT_EPOCHS, DEFAULT_EPOCHS_OTHER))
    max_steps: int | None = option(
        None, "stop after this many optimizer steps, whichever comes first with --epochs; the "
        "schedules follow the shorter length", unset="no step limit")
    max_minutes: float | None = option(
        None, "stop after this many minutes of training; the schedules then follow the minutes "
        "used when they are further on than the steps done (VAE.schedule_step)",
        unset="no time limit")
    keep_every_epochs: int | None = option(
        None, "also keep the checkpoint of every Nth epoch, as checkpoints/kept/epochNNN-stepS.ckpt "
        "(for a metric against training time: benchmarks/checkpoint_curve.py)",
        unset="keep only best and last")
    batch_size: int | None = option(
        None, "images per optimizer step and device",
        unset=_per_dataset(DEFAULT_BATCH_SIZE, DEFAULT_BATCH_SIZE_OTHER))
    optimizer: OptimizerName = opt.OPTIMIZER.field()
    lr: float = option(1e-3, "peak learning rate")
    lr_schedule: LRSchedule = opt.LR_SCHEDULE.field()
    lr_min: float = option(1e-5, "learning rate at the end of the cosine decay")
    warmup_fraction: float = option(0.0, "fraction of steps of linear learning-rate warm-up")
    grad_clip: float = option(1.0, "gradient-norm clip, 0 = off")
    seed: int = option(0, "random seed for weights, splits and sampling")
    # output and hardware (passed to Lightning)
    out: str | None = option(None, "run directory", unset="runs/<data>-<model>-<time>")
    accelerator: str = option("auto", "Lightning accelerator: auto, cpu, gpu, ...")
    devices: int | str | list[int] = option(
        "auto", "Lightning devices: auto, N, or a list such as 0,1", parse=parse_devices)
    strategy: str = option("auto", "Lightning strategy: auto, ddp, ddp_spawn, fsdp, ...")
    num_nodes: int = option(1, "number of nodes for multi-node DDP")
    precision: str = option("32-true", "Lightning precision: 32-true, 16-mixed, bf16-mixed, ...")
    logger: list[LoggerName] = opt.LOGGER.field()
    data_options: dict = option({}, "dataset-specific options, e.g. {hflip: true}", flag=False)

    def __post_init__(self) -> None:
        self._canonicalize()
        if self.preset is not None and self.preset in available_presets():
            # Built directly (FitConfig(preset=...)): the preset fills the options left at their
            # built-in defaults. from_dict / from_sources apply it under the values given instead.
            for name, value in load_preset(self.preset).items():
                if getattr(self, name) == _FIELD_DEFAULTS[name]:
                    setattr(self, name, value)

    def _canonicalize(self) -> None:
        """Aliases (e.g. ``model: negbinomial`` of older files) replaced by the canonical value."""
        for name, choice in _CHOICE_FIELDS.items():
            setattr(self, name, choice.canonical(getattr(self, name)))

    # ------------------------------------------------------------------ building
    @classmethod
    def from_sources(
        cls,
        *,
        preset: str | None = None,
        config_file: str | os.PathLike | None = None,
        **overrides: Any,
    ) -> FitConfig:
        """The resolved configuration from a preset, a YAML file and explicit values.

        Precedence: built-in defaults < the preset's values < the file's < ``overrides``. A
        run's own ``config.yaml`` given as ``config_file`` repeats the run in a new directory
        (its ``out`` is dropped unless ``out`` is given). ``data_options`` given here add to
        the file's. This is what ``spikelatent fit`` does with ``--preset``, ``--config`` and
        its flags::

            config = FitConfig.from_sources(preset="paper", data="digits", epochs=3)
        """
        values: dict[str, Any] = {}
        if config_file is not None:
            values = read_yaml_options(config_file)
            path = Path(config_file)
            path = path / "config.yaml" if path.is_dir() else path
            saved_out = values.get("out")
            if saved_out and "out" not in overrides and (
                    Path(saved_out).resolve() == path.parent.resolve()):
                values.pop("out")  # a run's own config.yaml: not on top of that run
        if preset is not None:
            values["preset"] = preset
        for name, value in overrides.items():
            if name == "data_options":
                value = {**(values.get("data_options") or {}), **(value or {})}
            values[name] = value
        if values.get("model") == opt.HIERARCHICAL_MODEL and values.get("kl") == "ds":
            # resolved() maps the unset --kl (ds) to the hierarchical default; one asked for
            # by name is a mistake to report, not to replace.
            raise SpikelatentError(
                f"--kl ds does not apply to --model {opt.HIERARCHICAL_MODEL} (both NB parameters "
                f"change at every group); choose --kl {' or --kl '.join(opt.HIERARCHICAL_KL_ESTIMATORS)}"
                " or leave --kl out")
        return cls.from_dict(values).resolved()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FitConfig:
        """A configuration from option: value pairs; a ``preset`` fills the options not given.

        Precedence: built-in defaults < the preset's values < the values given here.
        """
        unknown = sorted(set(values) - set(_FIELD_DEFAULTS))
        if unknown:
            raise SpikelatentError(
                f"unknown configuration option(s): {', '.join(unknown)}; "
                f"see `spikelatent fit --help` for the options"
            )
        preset = values.get("preset")
        merged = {**(load_preset(preset) if preset else {}), **values}
        merged.pop("preset", None)
        config = cls(**merged)
        config.preset = preset  # after __init__: the preset sits under the values given
        return config

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> FitConfig:
        """The configuration in a YAML file (or ``RUN_DIR/config.yaml``), its preset applied."""
        return cls.from_dict(read_yaml_options(path))

    @classmethod
    def coerce(cls, config: FitConfig | Mapping[str, Any]) -> FitConfig:
        """A resolved, validated configuration from a :class:`FitConfig` (resolved only if it
        is not yet) or an option mapping (``config.yaml``, a checkpoint's hyper-parameters)."""
        if not isinstance(config, FitConfig):
            return cls.from_dict(dict(config)).resolved()
        if not config.is_resolved:
            return config.resolved()
        config.validate()
        return copy.copy(config)  # a copy, as resolved() gives: the caller's object stays theirs

    # ------------------------------------------------------------------ resolving
    @property
    def is_resolved(self) -> bool:
        """Whether the defaults that depend on other options are filled in (see :meth:`resolved`)."""
        return None not in (self.encoder, self.decoder, self.epochs, self.batch_size,
                            self.temperature_end)

    def resolved(self) -> FitConfig:
        """A validated copy with every default filled in (resolving twice changes nothing)."""
        # copy.copy, not dataclasses.replace: __init__ would apply the preset a second time.
        config = copy.copy(self)
        config._canonicalize()
        config.devices = parse_devices(config.devices)
        config.encoder = config.encoder or config.arch
        config.decoder = config.decoder or config.arch
        config.logger = ["csv", *(name for name in config.logger if name != "csv")]
        if config.epochs is None:
            config.epochs = DEFAULT_EPOCHS.get(config.data, DEFAULT_EPOCHS_OTHER)
        if config.batch_size is None:
            config.batch_size = DEFAULT_BATCH_SIZE.get(config.data, DEFAULT_BATCH_SIZE_OTHER)
        if config.temperature_end is None:
            config.temperature_end = default_temperature_end(config.model)
        if config.model == opt.HIERARCHICAL_MODEL and config.kl == "ds":
            # Both NB parameters change at every group: no dispersion sharing; the unset
            # --kl means the hierarchical default (docs/hierarchical.md "The KL").
            config.kl = opt.HIERARCHICAL_KL_ESTIMATORS[0]
        config.validate()
        return config

    def validate(self) -> None:
        """Raise a one-line :class:`SpikelatentError` for the first invalid option."""
        for name, choice in _CHOICE_FIELDS.items():
            value = getattr(self, name)
            if not (value is None and choice.default is None):
                choice.check(value, flag=True)
        positive_ints = ("latent_dim", "batch_size", "mc_samples", "num_nodes", "epochs", "max_steps",
                         "keep_every_epochs")
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
        self._validate_hierarchical()
        if self.model == "categorical" and self.latent_dim % self.categories:
            raise SpikelatentError(
                f"categorical model: --latent-dim ({self.latent_dim}) must be divisible by "
                f"--categories ({self.categories})"
            )
        self.check_options_apply()

    def _validate_hierarchical(self) -> None:
        """The hierarchical model's own options (one-line errors); on another model they are
        refused by :meth:`check_options_apply` when set."""
        if self.model != opt.HIERARCHICAL_MODEL:
            return
        if self.latent_dim != self._default_value("latent_dim"):
            raise SpikelatentError(
                f"--latent-dim does not apply to --model {self.model} (its units follow from "
                f"--scales, --groups and --latent-channels); drop it")
        if not isinstance(self.scales, int) or isinstance(self.scales, bool) or self.scales < 1:
            raise SpikelatentError(f"--scales must be a positive integer; got {self.scales!r}")
        for name in ("groups", "hierarchy_channels", "latent_channels"):
            values = getattr(self, name)
            if (not isinstance(values, (list, tuple)) or len(values) not in (1, self.scales)
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                               for v in values)):
                raise SpikelatentError(
                    f"--{name.replace('_', '-')} takes one positive integer or one per scale "
                    f"(--scales {self.scales}), e.g. 4,4; got {values!r}")
        if not _finite_number(self.free_bits) or self.free_bits < 0:
            raise SpikelatentError(f"--free-bits must be a finite number >= 0; got {self.free_bits!r}")
        if self.kl not in opt.HIERARCHICAL_KL_ESTIMATORS:
            raise SpikelatentError(
                f"--kl {self.kl} does not apply to --model {self.model} (both NB parameters change "
                f"at every group); choose --kl {' or --kl '.join(opt.HIERARCHICAL_KL_ESTIMATORS)}")
        if self.objective != "sum":
            raise SpikelatentError(
                f"--objective {self.objective} does not apply to --model {self.model}; drop it "
                f"(its loss is SSE + beta * KL summed over groups)")

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
        value = _FIELD_DEFAULTS[name]
        if name == "temperature_end" and value is None and self.temperature_end is not None:
            return default_temperature_end(self.model)
        return value

    # ------------------------------------------------------------------ reading and writing
    def to_dict(self) -> dict[str, Any]:
        """Every option as a plain dict (what ``config.yaml`` and checkpoints hold)."""
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the configuration as YAML, atomically."""
        return write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    # Read access by name, as from config.yaml's mapping: config["lr"], dict(config). Code that
    # read a run's configuration as a dict (model.config before it was typed) keeps working.
    def __getitem__(self, name: str) -> Any:
        if name not in _FIELD_DEFAULTS:
            raise KeyError(name)
        return getattr(self, name)

    def keys(self) -> Iterator[str]:
        """The option names, in ``config.yaml``'s order (so ``dict(config)`` works)."""
        return iter(_FIELD_DEFAULTS)

    def get(self, name: str, default: Any = None) -> Any:
        """An option's value by name, ``default`` for a name that is not an option."""
        return getattr(self, name) if name in _FIELD_DEFAULTS else default


def _flag_value(value: Any) -> str:
    """A value as the user typed it (``2.0``, ``32,64``) for error messages."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _field_default(spec: dataclasses.Field) -> Any:
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return spec.default


#: Each field's declared :class:`~spikelatent.options.Option` (help, choices, where it applies).
FIELD_OPTIONS: dict[str, Option] = {
    spec.name: spec.metadata["option"] for spec in dataclasses.fields(FitConfig)
}
for _name, _declared in FIELD_OPTIONS.items():  # the field's name is the option's name
    if _declared.name != _name:
        FIELD_OPTIONS[_name] = dataclasses.replace(_declared, name=_name)
_FIELD_DEFAULTS: dict[str, Any] = {
    spec.name: _field_default(spec) for spec in dataclasses.fields(FitConfig)
}
_CHOICE_FIELDS: dict[str, Choice] = {
    name: declared for name, declared in FIELD_OPTIONS.items() if isinstance(declared, Choice)
}
#: Options with a fixed set of values, name -> the values (argparse choices; validation).
OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    name: choice.values for name, choice in _CHOICE_FIELDS.items()
}
#: Options that only some models use: option -> (the models it applies to, the values of other
#: options it needs). :meth:`FitConfig.validate` rejects such an option set away from its
#: default for any other model, in one line. Built from the fields' declarations
#: (``applies_to``, ``needs`` in :mod:`spikelatent.options`): a new one is declared there.
MODEL_SPECIFIC_OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    name: (declared.applies_to or MODELS, dict(declared.needs))
    for name, declared in FIELD_OPTIONS.items()
    if declared.applies_to is not None or declared.needs
}


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
    """The temperature after the anneal when none is given (see :data:`DEFAULT_TEMPERATURE_END`)."""
    if model == "categorical":
        return DEFAULT_TEMPERATURE_END_CATEGORICAL
    return DEFAULT_TEMPERATURE_END


def load_preset(name: str) -> dict[str, Any]:
    """The option: value pairs of a shipped preset (``paper``, ``poisson-vae``, ...)."""
    if name not in available_presets():
        raise SpikelatentError(
            f"--preset must be one of {', '.join(available_presets())}; got {name!r}"
        )
    values = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text()) or {}
    unknown = sorted(set(values) - set(_FIELD_DEFAULTS))
    if unknown:  # a packaging error, not a user error
        raise SpikelatentError(f"preset {name!r} holds unknown options: {', '.join(unknown)}")
    return {**values, "preset": name}


def _finite_number(value: Any) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return number == number and abs(number) != float("inf")

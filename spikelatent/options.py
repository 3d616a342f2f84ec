"""Every choice of a fit, defined once: its values, default, aliases and paper names.

:class:`~spikelatent.config.FitConfig` declares its fields from the objects here, ``spikelatent
fit`` builds its flags, choices and help text from ``FitConfig``'s fields, and the library
factories (:func:`~spikelatent.latents.make_latent_family`, :func:`~spikelatent.networks.make_encoder`,
:func:`~spikelatent.networks.make_decoder`) take their keyword defaults from here, so the Python
API and the command line build the same model from "the defaults".

Adding an option is a one-place change:

- a setting with a fixed set of values: a ``Literal`` type and a :class:`Choice` below (values,
  default, what each value means, aliases, models it applies to), then one line in ``FitConfig``,
  ``name: TheLiteral = THE_CHOICE.field()``;
- any other setting: one line in ``FitConfig``, ``name: type = option(default, "help", ...)``,
  or, when a library factory takes it too, an :class:`Option` below used as ``THE_OPTION.field()``
  in ``FitConfig`` and ``THE_OPTION.default`` in the factory.

The flag (``--name-with-dashes``), its argparse choices and type, the help text with the default,
validation of the value and the check that the chosen model uses the option (``applies_to`` and
``needs``) all follow from that declaration. This module imports nothing heavy (no torch), so the
distributions package reads its tuples from here too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, get_args

from spikelatent.errors import SpikelatentError

__all__ = [
    "CHOICES",
    "PAPER_MODELS",
    "Choice",
    "Option",
    "display_name",
    "format_value",
    "option",
    "parse_widths",
]

ModelName = Literal["gaussian", "laplace", "categorical", "poisson", "negbio", "negbio-hierarchical"]
KLEstimator = Literal["ds", "mc", "series"]
Relaxation = Literal["ct", "gumbel"]
NBSampler = Literal["gamma-poisson", "counting"]
Architecture = Literal["linear", "mlp", "conv"]
PriorInit = Literal["unit", "sparse"]
PosteriorLogits = Literal["relative", "absolute"]
MCKLEstimator = Literal["samples", "gamma"]
Objective = Literal["sum", "published"]
OptimizerName = Literal["adamax", "adam"]
LRSchedule = Literal["cosine", "constant"]
LoggerName = Literal["csv", "tensorboard", "wandb", "mlflow"]
KLBalance = Literal["uniform", "scale"]

#: ``spikelatent analyze``'s defaults, once: :func:`~spikelatent.workflows.analyze.analyze_run`
#: (a run directory) and :func:`~spikelatent.workflows.recording.analyze_recording` (an NWB file)
#: take their keyword defaults from here, and the command's help text shows them.
ANALYZE_RUN_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "split": "test", "n_stimuli": 1000, "n_trials": 50, "data_dir": None,
    "shattering_images": 5000, "n_jobs": -1,
})
ANALYZE_RECORDING_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "bin_size": 0.01, "intervals": None, "out": None, "stimulus_column": None,
    "memory_limit": None, "scheduler": None,
})

#: The hierarchical NB-VAE (spatial NB groups with top-down priors, docs/hierarchical.md).
HIERARCHICAL_MODEL = "negbio-hierarchical"
#: Models with count latents (Poisson and negative binomial).
COUNT_MODELS: tuple[str, ...] = ("poisson", "negbio", HIERARCHICAL_MODEL)
#: Single-layer count models (one latent vector of ``latent_dim`` units).
SINGLE_LAYER_COUNT_MODELS: tuple[str, ...] = ("poisson", "negbio")
#: Models with negative-binomial latents.
NB_MODELS: tuple[str, ...] = ("negbio", HIERARCHICAL_MODEL)
#: Models whose training uses a relaxation temperature (Gaussian and Laplace do not).
TEMPERATURE_MODELS: tuple[str, ...] = ("categorical", "poisson", "negbio", HIERARCHICAL_MODEL)
ALL_MODELS: tuple[str, ...] = get_args(ModelName)


def _frozen(mapping: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, kw_only=True)
class Option:
    """One setting of a fit: its default, its help text and where it applies.

    ``applies_to``: the models that use it (None: every model); ``needs``: values of other
    options it needs (e.g. ``{"kl": "mc"}``). Set away from its default on any other model or
    without those values, ``FitConfig.validate`` rejects it in one line. ``unset`` says what a
    ``None`` default means (for ``--help``); ``parse`` turns the flag's text into a value;
    ``multiple``: the value is a list, the flag repeatable (``--logger a --logger b``).
    """

    name: str = ""
    default: Any = None
    help: str = ""
    applies_to: tuple[str, ...] | None = None
    needs: Mapping[str, str] = field(default_factory=_frozen)
    unset: str | None = None
    parse: Callable[[str], Any] | None = None
    flag: bool = True  # False: only in config.yaml / Python (no command-line flag)
    multiple: bool = False

    @property
    def flag_name(self) -> str:
        return "--" + self.name.replace("_", "-")

    def field(self) -> Any:
        """The ``FitConfig`` field declaring this option (default and this object as metadata)."""
        if isinstance(self.default, (list, dict)):
            default = self.default
            return dataclasses.field(default_factory=lambda: type(default)(default),
                                     metadata={"option": self})
        return dataclasses.field(default=self.default, metadata={"option": self})

    def help_text(self) -> str:
        """The help with the default, e.g. ``peak learning rate (default 0.001)``."""
        if self.default is None:
            return f"{self.help} (default: {self.unset})" if self.unset else self.help
        if isinstance(self.default, bool):
            return f"{self.help} (default {'on' if self.default else 'off'})"
        return f"{self.help} (default {format_value(self.default)})"


@dataclass(frozen=True, kw_only=True)
class Choice(Option):
    """An option with a fixed set of values.

    ``meanings``: one phrase per value (help text); ``aliases``: other accepted spellings (old
    files, shorthands) → value; ``paper``: each value's name in the paper's notation.
    """

    values: tuple[str, ...] = ()
    meanings: Mapping[str, str] = field(default_factory=_frozen)
    aliases: Mapping[str, str] = field(default_factory=_frozen)
    paper: Mapping[str, str] = field(default_factory=_frozen)

    def canonical(self, value: Any) -> Any:
        """``value`` with an alias replaced by the value it stands for (``multiple``: a list of
        canonical values, each once; a single string becomes a one-item list)."""
        if self.multiple and isinstance(value, (str, list, tuple)):
            items = [value] if isinstance(value, str) else list(value)
            return list(dict.fromkeys(self.aliases.get(v, v) if isinstance(v, str) else v
                                      for v in items))
        return self.aliases.get(value, value) if isinstance(value, str) else value

    def check(self, value: Any, flag: bool = False) -> Any:
        """The canonical value, or a one-line error naming the option (``--flag`` if ``flag``)."""
        value = self.canonical(value)
        for item in value if self.multiple and isinstance(value, list) else [value]:
            if not isinstance(item, str) or item not in self.values:
                name = self.flag_name if flag else self.name
                raise SpikelatentError(
                    f"{name} must be one of {', '.join(self.values)}; got {item!r}")
        return value

    def help_text(self) -> str:
        described = "; ".join(f"{value} = {self.meanings[value]}" for value in self.values
                              if value in self.meanings)
        text = f"{self.help}: {described}" if described else self.help
        if self.default is None:
            return f"{text} (default: {self.unset})" if self.unset else text
        return f"{text} (default {format_value(self.default)})"


def option(default: Any, help: str, **settings: Any) -> Any:
    """A ``FitConfig`` field for a setting no library factory reads (see the module docstring)."""
    return Option(default=default, help=help, **settings).field()


def format_value(value: Any) -> str:
    """A value as written on the command line: ``0.001``, ``1e-05``, ``32,64``, ``on``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    return str(value)


def parse_widths(text: str) -> list[int]:
    """``32,64`` -> [32, 64]: the command-line form of the conv channel widths."""
    import argparse

    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, e.g. 32,64; got {text!r}") from None


# ----------------------------------------------------------------------------- model choices
MODEL = Choice(
    name="model", values=get_args(ModelName), default="negbio", help="latent family",
    aliases={"negbinomial": "negbio", "nb": "negbio"},
    paper={"gaussian": "G-VAE", "laplace": "L-VAE", "categorical": "C-VAE", "poisson": "P-VAE",
           "negbio": "NegBio-VAE", HIERARCHICAL_MODEL: "HNB-VAE"},
    meanings={HIERARCHICAL_MODEL: "spatial NB latent groups with top-down priors "
                                  "(docs/hierarchical.md)"},
)
KL = Choice(
    name="kl", values=get_args(KLEstimator), default="ds", applies_to=NB_MODELS,
    help="NegBio KL estimator (negbio-hierarchical: mc or series, default series)",
    meanings={"ds": "dispersion sharing (closed form)", "mc": "Monte Carlo",
              "series": "exact truncated series (own posterior dispersion, as mc, no samples)"},
    paper={"ds": "DS", "mc": "MC", "series": "SERIES"},
)
RELAX = Choice(
    name="relax", values=get_args(Relaxation), default="ct", applies_to=COUNT_MODELS,
    help="relaxed Poisson step",
    meanings={"ct": "continuous-time", "gumbel": "Gumbel-softmax"},
    paper={"ct": "C", "gumbel": "G"},
)
NB_SAMPLER = Choice(
    name="nb_sampler", values=get_args(NBSampler), default="gamma-poisson", applies_to=NB_MODELS,
    help="NegBio relaxed sampler",
    meanings={"gamma-poisson": "Gamma draw then relaxed Poisson (the paper)",
              "counting": "NB counting process / Gumbel over the NB pmf, no Gamma"},
)
ARCH = Choice(
    name="arch", values=get_args(Architecture), default="conv",
    help="encoder and decoder architecture",
)
PRIOR_INIT = Choice(
    name="prior_init", values=get_args(PriorInit), default="unit",
    applies_to=SINGLE_LAYER_COUNT_MODELS,
    help="count prior start",
    meanings={"unit": "NB r 1, p 0.5 (mean 1, Fano 2), Poisson rate 1",
              "sparse": "mean e^U(-6,-2)"},
)
POSTERIOR_LOGITS = Choice(
    name="posterior_logits", values=get_args(PosteriorLogits), default="absolute",
    applies_to=("negbio",), help="NB posterior logit q",
    meanings={"relative": "logit p + clamp(u)", "absolute": "clamp(u)"},
)
MC_KL = Choice(
    name="mc_kl", values=get_args(MCKLEstimator), default="samples", applies_to=("negbio",),
    needs={"kl": "mc"}, help="--kl mc estimator",
    meanings={"samples": "MC over relaxed NB samples",
              "gamma": "closed-form KL between the Gamma mixing distributions (an upper bound)"},
)
OBJECTIVE = Choice(
    name="objective", values=get_args(Objective), default="sum", help="loss scale",
    meanings={"sum": "SSE + beta * sum KL per image",
              "published": "the NegBio-VAE code's SSE/(C*H) + beta * mean KL per unit"},
)
OPTIMIZER = Choice(
    name="optimizer", values=get_args(OptimizerName), default="adam",
    help="optimizer, betas 0.9, 0.999",
)
LR_SCHEDULE = Choice(
    name="lr_schedule", values=get_args(LRSchedule), default="constant",
    help="learning-rate schedule",
    meanings={"cosine": "warm-up then cosine decay to --lr-min",
              "constant": "warm-up then constant"},
)

LOGGER = Choice(
    name="logger", values=get_args(LoggerName), default=["csv"], multiple=True,
    help="experiment logger, repeatable; the logs live in the run directory",
    meanings={"csv": "metrics.csv (always written)",
              "tensorboard": "RUN/tensorboard/ (extra: tensorboard)",
              "wandb": "Weights & Biases, RUN/wandb/ (extra: wandb; WANDB_MODE=offline works)",
              "mlflow": "MLflow, RUN/mlruns/ (extra: mlflow)"},
)

# ----------------------------------------------------------------------------- model sizes
LATENT_DIM = Option(name="latent_dim", default=256, help="number of latent units K")
MC_SAMPLES = Option(name="mc_samples", default=5, applies_to=NB_MODELS, needs={"kl": "mc"},
                    help="Monte Carlo samples S for --kl mc")
CATEGORIES = Option(name="categories", default=8, applies_to=("categorical",),
                    help="categories per group for --model categorical")
MODULATION_BOUND = Option(name="modulation_bound", default=5.0, applies_to=COUNT_MODELS,
                          help="soft bound on the encoder's outputs |u|")
GUMBEL_SUPPORT = Option(name="gumbel_support", default=None, applies_to=SINGLE_LAYER_COUNT_MODELS,
                        needs={"relax": "gumbel"}, help="fixed Gumbel support 0..N",
                        unset="adaptive, from a Poisson quantile")
ENCODER_CHANNELS = Option(name="encoder_channels", default=None, needs={"encoder": "conv"},
                          help="conv encoder widths, one per stride-2 stage, e.g. 32,64",
                          unset="docs/networks.md", parse=parse_widths)
DECODER_CHANNELS = Option(name="decoder_channels", default=None, needs={"decoder": "conv"},
                          help="conv decoder widths in encoder order, e.g. 64,128",
                          unset="twice the encoder's", parse=parse_widths)
ENCODER_LAYER_NORM = Option(name="encoder_layer_norm", default=True, needs={"encoder": "conv"},
                            help="LayerNorm on the conv encoder's output")
DECODER_UNIT_NORM = Option(name="decoder_unit_norm", default=True, needs={"decoder": "conv"},
                           help="conv decoder's first layer with unit-L2-norm columns per latent "
                                "unit and no nonlinearity after it")

# ----------------------------------------------------------------------------- hierarchical model
_HIERARCHICAL = {"applies_to": (HIERARCHICAL_MODEL,)}
SCALES = Option(name="scales", default=2, help="negbio-hierarchical: grids, each half the next "
                "finer one, the finest half the image", **_HIERARCHICAL)
GROUPS = Option(name="groups", default=[2], parse=parse_widths, **_HIERARCHICAL,
                help="negbio-hierarchical: latent groups per scale, one value or one per scale "
                     "coarse to fine, e.g. 4,4")
HIERARCHY_CHANNELS = Option(name="hierarchy_channels", default=[32], parse=parse_widths,
                            help="negbio-hierarchical: feature channels per scale",
                            **_HIERARCHICAL)
LATENT_CHANNELS = Option(name="latent_channels", default=[4], parse=parse_widths,
                         help="negbio-hierarchical: NB count channels per group, per scale",
                         **_HIERARCHICAL)
FREE_BITS = Option(name="free_bits", default=0.0, **_HIERARCHICAL,
                   help="negbio-hierarchical: nats per group and image the KL term leaves free")
KL_BALANCE = Choice(
    name="kl_balance", values=get_args(KLBalance), default="uniform", **_HIERARCHICAL,
    help="negbio-hierarchical KL weights",
    meanings={"uniform": "every group 1", "scale": "1 / (groups at its scale)"},
)
#: KL estimators of the hierarchical model; its unset ``--kl`` (``ds``) means the first.
HIERARCHICAL_KL_ESTIMATORS: tuple[str, ...] = ("series", "mc")

#: Every option with a fixed set of values, by name.
CHOICES: Mapping[str, Choice] = _frozen({choice.name: choice for choice in (
    MODEL, KL, RELAX, NB_SAMPLER, ARCH, PRIOR_INIT, POSTERIOR_LOGITS, MC_KL, OBJECTIVE,
    OPTIMIZER, LR_SCHEDULE, LOGGER, KL_BALANCE)})

# Plain tuples for the layers below the configuration (distributions, networks, latents).
MODELS: tuple[str, ...] = MODEL.values
KL_ESTIMATORS: tuple[str, ...] = KL.values
RELAXATIONS: tuple[str, ...] = RELAX.values
NB_SAMPLERS: tuple[str, ...] = NB_SAMPLER.values
ARCHITECTURES: tuple[str, ...] = ARCH.values
PRIOR_INITS: tuple[str, ...] = PRIOR_INIT.values
POSTERIOR_LOGIT_MODES: tuple[str, ...] = POSTERIOR_LOGITS.values
MC_KL_ESTIMATORS: tuple[str, ...] = MC_KL.values


def display_name(model: str, kl: str = KL.default, relax: str = RELAX.default) -> str:
    """The paper's name of a model, e.g. ``P-VAE`` or ``NegBio-VAE DS-C`` (``kl`` and ``relax``
    matter only for ``negbio``); aliases such as ``negbinomial`` are accepted."""
    model = MODEL.canonical(str(model).lower())
    if model not in MODEL.paper:
        return model or "unknown model"
    if model not in NB_MODELS:
        return MODEL.paper[model]
    if model == HIERARCHICAL_MODEL and KL.canonical(kl) == "ds":
        kl = HIERARCHICAL_KL_ESTIMATORS[0]
    kl_name = KL.paper.get(KL.canonical(kl), str(kl).upper())
    relax_name = RELAX.paper.get(RELAX.canonical(relax), str(relax).upper())
    return f"{MODEL.paper[model]} {kl_name}-{relax_name}"


#: The eight models of the paper, in the row order of its tables: display name → (``--model``,
#: ``--kl``, ``--relax``) of ``spikelatent fit``. kl and relax only matter for negbio.
PAPER_MODELS: dict[str, tuple[str, str, str]] = {
    display_name(*spec): spec
    for spec in (
        ("gaussian", "ds", "ct"), ("laplace", "ds", "ct"), ("categorical", "ds", "ct"),
        ("poisson", "ds", "ct"), ("negbio", "mc", "gumbel"), ("negbio", "mc", "ct"),
        ("negbio", "ds", "gumbel"), ("negbio", "ds", "ct"),
    )
}

#: The data splits every data module offers, in this order (``--split`` of evaluate and
#: analyze, ``--stimuli SPLIT:START:STOP`` of export-nwb).
SPLITS: tuple[str, ...] = ("train", "val", "test")

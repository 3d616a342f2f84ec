"""``spikelatent fit``: train one of the eight models.

Precedence: built-in defaults < ``--config FILE.yaml`` < flags on the command line.
``--resume RUN_DIR`` continues the run from its last checkpoint with its saved configuration
(flags such as ``--epochs`` may extend it).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from spikelatent.config import (
    ARCHITECTURES,
    MODELS,
    OPTION_CHOICES,
    FitConfig,
    available_presets,
    read_yaml_options,
)
from spikelatent.errors import SpikelatentError

HELP = {
    "data": "dataset: digits (embedded, default), mnist, fashion-mnist, cifar16, celeba64, synthetic",
    "data_dir": "folder holding the dataset files (else $SPIKELATENT_DATA, then the cache)",
    "download": "download the dataset with torchvision when it is not found (needs internet)",
    "val_fraction": "fraction of the training set held out for validation (default 0.1)",
    "limit": "use at most this many training images (quick runs)",
    "num_workers": "DataLoader worker processes (default 0)",
    "model": "latent family (default negbio)",
    "kl": "NegBio KL estimator: ds = dispersion sharing (closed form), mc = Monte Carlo, series = "
          "exact truncated series (own posterior dispersion, as mc, no samples) (default ds)",
    "relax": "relaxed Poisson step: ct = continuous-time, gumbel = Gumbel-softmax (default ct)",
    "nb_sampler": "NegBio relaxed sampler: gamma-poisson = Gamma draw then relaxed Poisson (the "
                  "paper), counting = NB counting process / Gumbel over the NB pmf, no Gamma "
                  "(default gamma-poisson)",
    "mc_samples": "Monte Carlo samples S for --kl mc (default 5)",
    "categories": "categories per group for --model categorical (default 8)",
    "arch": "encoder and decoder architecture (default conv)",
    "encoder": "encoder architecture (overrides --arch)",
    "decoder": "decoder architecture (overrides --arch)",
    "latent_dim": "number of latent units K (default 256)",
    "encoder_channels": "conv encoder widths, one per stride-2 stage, e.g. 32,64 (default: docs/networks.md)",
    "decoder_channels": "conv decoder widths in encoder order, e.g. 64,128 (default: the encoder's)",
    "encoder_layer_norm": "LayerNorm on the encoder's output (conv; default on, --no-encoder-layer-norm: off)",
    "decoder_unit_norm": "decoder's first layer with unit-L2-norm columns per latent unit and no "
                         "nonlinearity after it (conv; default on, --no-decoder-unit-norm: off)",
    "prior_init": "count prior start: unit = NB r 1, p 0.5 (mean 1, Fano 2), Poisson rate 1; "
                  "sparse = mean e^U(-6,-2) (default unit)",
    "posterior_logits": "NB posterior logit q: relative = logit p + clamp(u), absolute = "
                        "clamp(u) (default absolute)",
    "modulation_bound": "soft bound on the encoder's outputs |u| (default 5)",
    "mc_kl": "--kl mc estimator: samples = MC over relaxed NB samples, gamma = closed-form KL "
             "between the Gamma mixing distributions (an upper bound) (default samples)",
    "gumbel_support": "fixed Gumbel support 0..N (default: adaptive, from a Poisson quantile)",
    "preset": f"a published set of options: {', '.join(available_presets())}; flags override it",
    "objective": "loss scale: sum = SSE + beta * sum KL per image; published = the NegBio-VAE "
                 "code's SSE/(C*H) + beta * mean KL per unit (default sum)",
    "beta": "KL weight; with --objective sum the weight on sum KL against SSE (beta = 2 sigma^2); "
            "auto = C*H/K, the published code's weighting, e.g. 0.109 for 28x28 and 256 units "
            "(default auto)",
    "beta_start": "beta held during the first --beta-hold-fraction of steps (default 0)",
    "beta_hold_fraction": "fraction of steps beta is held at --beta-start (default 0)",
    "beta_warmup_fraction": "fraction of steps beta rises linearly to --beta (default 0.25)",
    "temperature_start": "relaxation temperature at step 0 (default 1.0)",
    "temperature_end": "temperature after the anneal (default 0.24; categorical 0.1)",
    "temperature_anneal_fraction": "fraction of steps over which the temperature anneals (default 1)",
    "epochs": "training epochs (default 100 on digits, 50 otherwise)",
    "max_steps": "stop after this many optimizer steps, whichever comes first with --epochs; "
                 "the schedules follow the shorter length (default: no step limit)",
    "max_minutes": "stop after this many minutes of training; the schedules then follow the "
                   "minutes used when they are further on than the steps done",
    "batch_size": "images per optimizer step and device (default 32 on digits, 128 otherwise)",
    "optimizer": "adam or adamax, betas 0.9, 0.999 (default adam)",
    "lr": "peak learning rate (default 1e-3)",
    "lr_schedule": "cosine = warm-up then cosine decay to --lr-min; constant = warm-up then "
                   "constant (default constant)",
    "lr_min": "learning rate at the end of the cosine decay (default 1e-5)",
    "warmup_fraction": "fraction of steps of linear learning-rate warm-up (default 0)",
    "grad_clip": "gradient-norm clip, 0 = off (default 1)",
    "seed": "random seed for weights, splits and sampling (default 0)",
    "out": "run directory (default runs/<data>-<model>-<time>)",
    "accelerator": "Lightning accelerator: auto, cpu, gpu, ... (default auto)",
    "devices": "Lightning devices: auto, N, or a list such as 0,1 (default auto)",
    "strategy": "Lightning strategy: auto, ddp, ddp_spawn, fsdp, ... (default auto)",
    "num_nodes": "number of nodes for multi-node DDP (default 1)",
    "precision": "Lightning precision: 32-true, 16-mixed, bf16-mixed, ... (default 32-true)",
}
CHOICES = {"model": MODELS + ("negbinomial",), "kl": ("ds", "mc", "series"), "relax": ("ct", "gumbel"),
           "arch": ARCHITECTURES, "encoder": ARCHITECTURES, "decoder": ARCHITECTURES,
           "preset": available_presets(), **OPTION_CHOICES}
BOOLEAN_FLAGS = ("encoder_layer_norm", "decoder_unit_norm")


def _widths(text: str) -> list[int]:
    """``32,64`` -> [32, 64] (argparse type of the channel-width flags)."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 32,64; got {text!r}") from None

def _beta(text: str) -> float | str:
    """``auto`` or a number (argparse type of --beta)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number; got {text!r}") from None


TYPES = {"val_fraction": float, "limit": int, "num_workers": int, "mc_samples": int,
         "categories": int, "latent_dim": int, "beta": _beta, "beta_start": float,
         "beta_hold_fraction": float, "beta_warmup_fraction": float,
         "temperature_start": float, "temperature_end": float,
         "temperature_anneal_fraction": float, "epochs": int, "max_steps": int, "max_minutes": float, "batch_size": int, "lr": float,
         "lr_min": float, "warmup_fraction": float, "grad_clip": float, "seed": int,
         "num_nodes": int, "modulation_bound": float, "gumbel_support": int,
         "encoder_channels": _widths, "decoder_channels": _widths}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fit",
        help="train a NegBio-VAE or a baseline",
        description="Train a VAE. Example: spikelatent fit --data digits",
    )
    for name, help_text in HELP.items():
        flag = "--" + name.replace("_", "-")
        if name == "download":
            parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=help_text)
            continue
        if name in BOOLEAN_FLAGS:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
            continue
        parser.add_argument(flag, type=TYPES.get(name, str), choices=CHOICES.get(name),
                            default=argparse.SUPPRESS, help=help_text,
                            metavar=None if name in CHOICES else name.upper())
    parser.add_argument("--data-option", action="append", metavar="KEY=VALUE", default=[],
                        help="dataset-specific option, e.g. hflip=true for cifar16 (repeatable)")
    parser.add_argument("--config", metavar="FILE.yaml", help="read options from a YAML file")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue a run from RUN_DIR/checkpoints/last.ckpt")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def _parse_devices(value: Any) -> Any:
    if isinstance(value, str) and value not in ("auto", "-1"):
        if "," in value:
            return [int(part) for part in value.split(",") if part.strip()]
        if value.isdigit():
            return int(value)
    return value


def config_from_args(args: argparse.Namespace) -> tuple[FitConfig, bool]:
    """The run configuration from defaults, ``--config``/``--resume`` and explicit flags."""
    resume = bool(getattr(args, "resume", None))
    # Explicit values (the YAML file's, then the flags'); a preset fills only what they leave.
    if resume:
        _check_run_dir(Path(args.resume))
        if getattr(args, "config", None):
            raise SpikelatentError(
                f"--resume continues with the run's own {Path(args.resume) / 'config.yaml'}; "
                f"drop --config (flags such as --epochs still apply)"
            )
        values = read_yaml_options(args.resume)
    elif getattr(args, "config", None):
        values = read_yaml_options(args.config)
        config_file = Path(args.config)
        config_file = config_file / "config.yaml" if config_file.is_dir() else config_file
        saved_out = values.get("out")
        if saved_out and not hasattr(args, "out") and (
                Path(saved_out).resolve() == config_file.parent.resolve()):
            # A run's own config.yaml: repeat the run in a new directory, not on top of it.
            values.pop("out")
    else:
        values = {}
    for name in HELP:
        if hasattr(args, name):
            values[name] = getattr(args, name)
    for item in getattr(args, "data_option", []) or []:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise SpikelatentError(f"--data-option takes KEY=VALUE; got {item!r}")
        values["data_options"] = {**values.get("data_options", {}), key: yaml.safe_load(value)}
    config = FitConfig.from_dict(values)
    config.devices = _parse_devices(config.devices)
    if resume:
        config.out = args.resume
    return config.resolved(), resume


def _check_run_dir(path: Path) -> None:
    """``--resume RUN_DIR`` must name a run directory that ``spikelatent fit`` wrote."""
    if not path.exists():
        raise SpikelatentError(
            f"cannot resume: there is no run directory {path}; give the folder that "
            f"`spikelatent fit --out` wrote (it holds config.yaml and checkpoints/)"
        )
    if not path.is_dir() or not (path / "config.yaml").is_file():
        raise SpikelatentError(
            f"cannot resume: {path} is not a run directory (no config.yaml); give the folder "
            f"that `spikelatent fit --out` wrote"
        )


def run(args: argparse.Namespace) -> int:
    from spikelatent.workflows.fit import fit

    config, resume = config_from_args(args)
    from lightning.pytorch.utilities import rank_zero_info

    run_dir = fit(config, resume=resume, progress=not args.no_progress)
    rank_zero_info(f"run written to {run_dir}")
    return 0

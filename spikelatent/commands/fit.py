"""``spikelatent fit``: train one of the eight models.

Precedence: built-in defaults < ``--config FILE.yaml`` < flags on the command line.
``--resume RUN_DIR`` continues the run from its last checkpoint with its saved configuration
(flags such as ``--epochs`` may extend it).
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from spikelatent.config import ARCHITECTURES, MODELS, FitConfig
from spikelatent.errors import SpikelatentError

HELP = {
    "data": "dataset: digits (embedded, default), mnist, fashion-mnist, cifar16, celeba64, synthetic",
    "data_dir": "folder holding the dataset files (else $SPIKELATENT_DATA, then the cache)",
    "download": "download the dataset with torchvision when it is not found (needs internet)",
    "val_fraction": "fraction of the training set held out for validation (default 0.1)",
    "limit": "use at most this many training images (quick runs)",
    "num_workers": "DataLoader worker processes (default 0)",
    "model": "latent family (default negbio)",
    "kl": "NegBio KL estimator: ds = dispersion sharing (closed form), mc = Monte Carlo (default ds)",
    "relax": "relaxed Poisson step: ct = continuous-time, gumbel = Gumbel-softmax (default ct)",
    "mc_samples": "Monte Carlo samples S for --kl mc (default 5)",
    "categories": "categories per group for --model categorical (default 8)",
    "arch": "encoder and decoder architecture (default conv)",
    "encoder": "encoder architecture (overrides --arch)",
    "decoder": "decoder architecture (overrides --arch)",
    "latent_dim": "number of latent units K (default 256)",
    "beta": "KL weight beta = 2 sigma^2 (default 1)",
    "beta_start": "beta held during the first --beta-hold-fraction of steps (default 1e-4)",
    "beta_hold_fraction": "fraction of steps beta is held at --beta-start (default 0.01)",
    "beta_warmup_fraction": "fraction of steps beta rises linearly to --beta (default 0.5)",
    "temperature_start": "relaxation temperature at step 0 (default 1.0)",
    "temperature_end": "temperature after the anneal (default 0.05; categorical 0.1)",
    "temperature_anneal_fraction": "fraction of steps over which the temperature anneals (default 0.5)",
    "epochs": "training epochs (default 100 on digits, 50 otherwise)",
    "batch_size": "images per optimizer step and device (default 32 on digits, 128 otherwise)",
    "lr": "peak learning rate of Adamax (default 2e-3)",
    "lr_min": "learning rate at the end of the cosine decay (default 1e-5)",
    "warmup_fraction": "fraction of steps of linear learning-rate warm-up (default 0.01)",
    "grad_clip": "gradient-norm clip, 0 = off (default 1000)",
    "seed": "random seed for weights, splits and sampling (default 0)",
    "out": "run directory (default runs/<data>-<model>-<time>)",
    "accelerator": "Lightning accelerator: auto, cpu, gpu, ... (default auto)",
    "devices": "Lightning devices: auto, N, or a list such as 0,1 (default auto)",
    "strategy": "Lightning strategy: auto, ddp, ddp_spawn, fsdp, ... (default auto)",
    "num_nodes": "number of nodes for multi-node DDP (default 1)",
    "precision": "Lightning precision: 32-true, 16-mixed, bf16-mixed, ... (default 32-true)",
}
CHOICES = {"model": MODELS + ("negbinomial",), "kl": ("ds", "mc"), "relax": ("ct", "gumbel"),
           "arch": ARCHITECTURES, "encoder": ARCHITECTURES, "decoder": ARCHITECTURES}
TYPES = {"val_fraction": float, "limit": int, "num_workers": int, "mc_samples": int,
         "categories": int, "latent_dim": int, "beta": float, "beta_start": float,
         "beta_hold_fraction": float, "beta_warmup_fraction": float,
         "temperature_start": float, "temperature_end": float,
         "temperature_anneal_fraction": float, "epochs": int, "batch_size": int, "lr": float,
         "lr_min": float, "warmup_fraction": float, "grad_clip": float, "seed": int,
         "num_nodes": int}


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
    if resume:
        config = FitConfig.from_yaml(args.resume)
        config.out = args.resume
    elif getattr(args, "config", None):
        config = FitConfig.from_yaml(args.config)
    else:
        config = FitConfig()
    for name in HELP:
        if hasattr(args, name):
            setattr(config, name, getattr(args, name))
    for item in getattr(args, "data_option", []) or []:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise SpikelatentError(f"--data-option takes KEY=VALUE; got {item!r}")
        config.data_options = {**config.data_options, key: yaml.safe_load(value)}
    config.devices = _parse_devices(config.devices)
    if resume:
        config.out = args.resume
    return config.resolved(), resume


def run(args: argparse.Namespace) -> int:
    from spikelatent.training import fit

    config, resume = config_from_args(args)
    from lightning.pytorch.utilities import rank_zero_info

    run_dir = fit(config, resume=resume, progress=not args.no_progress)
    rank_zero_info(f"run written to {run_dir}")
    return 0

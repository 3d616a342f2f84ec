"""``spikelatent fit``: train one of the eight models.

Every flag, its choices and its help text (with the default) come from
:class:`~spikelatent.config.FitConfig`'s field declarations (see :mod:`spikelatent.options`);
precedence lives in :meth:`FitConfig.from_sources`: built-in defaults < ``--preset`` <
``--config FILE.yaml`` < flags on the command line. ``--resume RUN_DIR`` continues the run from
its last checkpoint with its saved configuration (flags such as ``--epochs`` may extend it).
"""

from __future__ import annotations

import argparse
import typing
from pathlib import Path
from typing import Any

import yaml

from spikelatent.config import FIELD_OPTIONS, FitConfig
from spikelatent.errors import SpikelatentError
from spikelatent.options import Choice

_SCALAR_TYPES = (bool, int, float, str)


def _flag_type(name: str) -> Any:
    """The argparse ``type`` of a field: its option's ``parse``, else its scalar annotation."""
    declared = FIELD_OPTIONS[name]
    if declared.parse is not None:
        return declared.parse
    if isinstance(declared, Choice):  # an alias (e.g. --model negbinomial) becomes its value
        return lambda text: declared.aliases.get(text, text)
    hint = typing.get_type_hints(FitConfig)[name]
    scalars = [t for t in typing.get_args(hint) or (hint,) if t in _SCALAR_TYPES]
    return scalars[0] if scalars else str


#: Flag name (field name) -> argparse choices, for every option with a fixed set of values.
CHOICES: dict[str, tuple[str, ...]] = {
    name: declared.values for name, declared in FIELD_OPTIONS.items()
    if isinstance(declared, Choice)
}
#: The fields that have a command-line flag.
FLAG_FIELDS: tuple[str, ...] = tuple(name for name, declared in FIELD_OPTIONS.items()
                                     if declared.flag)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fit",
        help="train a NegBio-VAE or a baseline",
        description="Train a VAE. Example: spikelatent fit --data digits",
    )
    for name in FLAG_FIELDS:
        declared = FIELD_OPTIONS[name]
        flag, help_text = declared.flag_name, declared.help_text().replace("%", "%%")
        if _flag_type(name) is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
            continue
        parser.add_argument(flag, type=_flag_type(name), choices=CHOICES.get(name),
                            action="append" if declared.multiple else "store",
                            default=argparse.SUPPRESS, help=help_text,
                            metavar=None if name in CHOICES else name.upper())
    parser.add_argument("--data-option", action="append", metavar="KEY=VALUE", default=[],
                        help="dataset-specific option, e.g. hflip=true for cifar16 (repeatable)")
    parser.add_argument("--config", metavar="FILE.yaml", help="read options from a YAML file")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue a run from RUN_DIR/checkpoints/last.ckpt")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> tuple[FitConfig, bool]:
    """The resolved run configuration from ``--config``/``--resume`` and explicit flags."""
    resume = bool(getattr(args, "resume", None))
    flags = {name: getattr(args, name) for name in FLAG_FIELDS if hasattr(args, name)}
    data_options: dict[str, Any] = {}
    for item in getattr(args, "data_option", []) or []:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise SpikelatentError(f"--data-option takes KEY=VALUE; got {item!r}")
        data_options[key] = yaml.safe_load(value)
    if data_options:
        flags["data_options"] = data_options
    config_file = getattr(args, "config", None)
    if resume:
        _check_run_dir(Path(args.resume))
        if config_file:
            raise SpikelatentError(
                f"--resume continues with the run's own {Path(args.resume) / 'config.yaml'}; "
                f"drop --config (flags such as --epochs still apply)"
            )
        config_file, flags["out"] = args.resume, args.resume
    return FitConfig.from_sources(config_file=config_file, **flags), resume


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
    from lightning.pytorch.utilities import rank_zero_info

    from spikelatent.workflows.fit import fit

    config, resume = config_from_args(args)
    run_dir = fit(config, resume=resume, progress=not args.no_progress)
    rank_zero_info(f"run written to {run_dir}")
    return 0



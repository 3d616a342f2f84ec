"""Command-line entry point: ``spikelatent <command> ...``.

Each sub-command lives in ``spikelatent.commands.<name>`` and exposes
``register(subparsers)`` which adds its parser and sets ``func`` to a
callable taking the parsed ``argparse.Namespace`` and returning an exit code.
User errors (:class:`~spikelatent.errors.SpikelatentError`) become one line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from spikelatent import __version__
from spikelatent.errors import SpikelatentError

# Sub-command modules, in the order they appear in --help.
COMMAND_MODULES = ("fit", "evaluate", "compare", "analyze", "similarity", "export_nwb")


class _Parser(argparse.ArgumentParser):
    """argparse already exits with status 2 on a usage error; keep its one-line message."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="spikelatent",
        description="Negative-Binomial VAEs and their latent spike-count populations.",
    )
    parser.add_argument("--version", action="version", version=f"spikelatent {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"spikelatent.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"spikelatent.commands.{name}":
                continue  # command not built yet
            raise
        module.register(subparsers)
    return parser


def _capped_rates(match: re.Match) -> str:
    return (f"relaxed spike counts drawn at rates above {float(match['rate']):.4g} (rare draws "
            f"from the tail of the count distributions) were capped there in training, the "
            f"sampler's support being {match['cap']} counts; those samples come out a little low "
            f"— no action needed")


def _capped_supports(match: re.Match) -> str:
    return (f"relaxed spike counts that needed more than {match['cap']} counts of support (rare "
            f"draws from the tail of the count distributions) were truncated there; those samples "
            f"come out a little low — no action needed")


#: Our own warnings that users cannot act on through an option, as one line saying what they
#: mean (shown once per command, however often and with whatever numbers they recur).
TRANSLATED_WARNINGS = (
    (re.compile(r"\w+: rates above (?P<rate>\S+) need more than max_support (?P<cap>\d+) counts"),
     _capped_rates),
    (re.compile(r"\w+: \d+ elements need a support above max_support=(?P<cap>\d+)"),
     _capped_supports),
)


def _show_advice_in_one_line(show):
    """Warnings that carry advice (``one_line = True``) print as one line, without a source line;
    those of :data:`TRANSLATED_WARNINGS` as one ``spikelatent: note:`` line, once."""
    shown: set[str] = set()

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if getattr(category, "one_line", False):
            print(f"spikelatent: warning: {message}", file=file or sys.stderr, flush=True)
            return
        for pattern, meaning in TRANSLATED_WARNINGS:
            match = pattern.match(str(message))
            if match:
                if pattern.pattern not in shown:
                    shown.add(pattern.pattern)
                    print(f"spikelatent: note: {meaning(match)}", file=file or sys.stderr,
                          flush=True)
                return
        show(message, category, filename, lineno, file, line)

    showwarning.wrapped = show
    return showwarning


@contextmanager
def library_notices_hidden() -> Iterator[None]:
    """While a command runs, hide a Lightning-internal deprecation notice (torch pytree API) that
    users cannot act on. (Lightning's device and loop lines are hidden by ``fit`` itself.) Only
    here, at the command layer, and undone afterwards: importing the library leaves logging and
    warnings alone."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
        yield


def torch_pair_problem(error: BaseException) -> str | None:
    """One line saying how to fix a torch / torchvision pair that cannot run together (torch's
    C++ side does not know torchvision's operators: ``operator torchvision::nms does not
    exist``), or None for any other error."""
    if not isinstance(error, RuntimeError) or "torchvision::" not in str(error):
        return None
    from importlib import metadata

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "(not installed)"

    try:  # the pins of this install, so the advice never goes stale
        pins = {re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0]: requirement.split(";")[0]
                for requirement in metadata.requires("spikelatent") or ()}
    except metadata.PackageNotFoundError:
        pins = {}
    pair = " ".join(f'"{pins.get(name, name).replace(" ", "")}"' for name in ("torch", "torchvision"))
    return (f"torch {installed('torch')} and torchvision {installed('torchvision')} do not belong "
            f"together ({str(error).strip().splitlines()[0]}); reinstall them as a pair: "
            f"pip install --force-reinstall {pair} (CPU-only: add --index-url "
            f"https://download.pytorch.org/whl/cpu)")


def main(argv: Sequence[str] | None = None) -> int:
    if not hasattr(warnings.showwarning, "wrapped"):
        warnings.showwarning = _show_advice_in_one_line(warnings.showwarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        with library_notices_hidden():
            return int(args.func(args) or 0)
    except SpikelatentError as error:
        print(f"spikelatent {args.command}: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        problem = torch_pair_problem(error)
        if problem is None:
            raise
        print(f"spikelatent {args.command}: error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spikelatent {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

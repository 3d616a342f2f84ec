"""Checkpoints: find a run's checkpoint, read it safely, load the model, check a state dict.

Every checkpoint is read with ``torch.load(..., weights_only=True)``: nothing in the file is ever
executed, and a corrupt, truncated, foreign or unsafe file gives a one-line
:class:`~spikelatent.errors.CheckpointError` saying what to do instead.

>>> model = spikelatent.load("runs/digits-negbio")          # doctest: +SKIP
>>> checkpoint_path("runs/digits-negbio", which="last")     # doctest: +SKIP
PosixPath('runs/digits-negbio/checkpoints/last.ckpt')
"""

from __future__ import annotations

import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import torch

from spikelatent.errors import CheckpointError, SpikelatentError
from spikelatent.model import VAE, upgrade_state_dict

#: The run directory's sub-folder holding ``best.ckpt`` and ``last.ckpt``.
CHECKPOINT_DIR = "checkpoints"
#: Its sub-folder for the checkpoints ``--keep-every-epochs`` keeps.
KEPT_DIR = "kept"


def checkpoint_path(run_dir_or_checkpoint: str | os.PathLike, which: str = "best") -> Path:
    """The checkpoint file for a run directory (``which``, then ``last``) or a checkpoint path."""
    path = Path(run_dir_or_checkpoint)
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"no run directory or checkpoint at {path}")
    folder = path / CHECKPOINT_DIR
    for candidate in (folder / f"{which}.ckpt", folder / "last.ckpt"):
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"{path} is not a run directory: no checkpoint in {folder}; give the folder that "
        f"`spikelatent fit --out` wrote, or train one with `spikelatent fit --out {path}`"
    )


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``), with a one-line error if it is
    corrupt, truncated, foreign or unsafe. Nothing in the file is ever executed."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt, truncated, foreign or hostile file
        raise CheckpointError(_unreadable_checkpoint_message(path, error)) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path} is not a spikelatent checkpoint (no state_dict); {_other_checkpoint_advice(path)}"
        )
    return checkpoint


def read_resumable_checkpoint(path: str | os.PathLike, epochs: int) -> dict[str, Any]:
    """``last.ckpt`` read safely for resuming to ``epochs`` epochs in all, or a one-line error:
    corrupt, foreign or unsafe file, a file without training state, or a run that already
    trained ``epochs`` epochs. Check its weights with :func:`load_state_dict_checked` once the
    configured model is built."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    if "loops" not in checkpoint or "optimizer_states" not in checkpoint or "epoch" not in checkpoint:
        raise CheckpointError(
            f"cannot resume from {path}: it holds weights but no training state; "
            f"start a new run with --config {path.parent.parent / 'config.yaml'} --out NEW_DIR"
        )
    done = int(checkpoint["epoch"]) + 1
    if epochs <= done:
        raise SpikelatentError(
            f"{path.parent.parent} has already trained {done} epoch{'s' * (done != 1)} "
            f"(--epochs {epochs}); pass --epochs N with N > {done} to train further"
        )
    return checkpoint


def state_dict_mismatch(expected: dict[str, Any], found: dict[str, Any]) -> str | None:
    """Where the checkpoint's state dict ``found`` differs from the model's ``expected``, in
    words: the first missing or reshaped key in the model's order, else the first unexpected
    key, and how many more keys differ; None when every key and shape matches."""
    differences: list[str] = []
    for key, tensor in expected.items():
        if key not in found:
            differences.append(f"missing key {key!r}")
            continue
        shape = getattr(found[key], "shape", None)
        if shape is not None and tuple(shape) != tuple(tensor.shape):
            differences.append(f"key {key!r} has shape {tuple(shape)}, the model's "
                               f"{tuple(tensor.shape)}")
    differences += [f"unexpected key {key!r}" for key in found if key not in expected]
    if not differences:
        return None
    more = len(differences) - 1
    if not more:
        return differences[0]
    return differences[0] + (", and 1 more key differs" if more == 1
                             else f", and {more} more keys differ")


def _note(message: str) -> None:
    """One line on stderr (a note, not an error)."""
    print(f"note: {message}", file=sys.stderr)


def load_state_dict_checked(model: torch.nn.Module, state_dict: dict[str, Any]) -> str | None:
    """Load ``state_dict`` into ``model``; return why it does not fit (one phrase), else None.

    The model is unchanged when a key is missing, unexpected or reshaped (checked first, so the
    phrase names the first such key rather than torch's multi-line report)."""
    problem = state_dict_mismatch(model.state_dict(), state_dict)
    if problem is not None:
        return problem
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        return str(error).splitlines()[0][:120]
    return None


def load(run_dir_or_checkpoint: str | os.PathLike, which: str = "best",
         map_location: str | torch.device = "cpu") -> VAE:
    """Load a trained model from a run directory (``which`` checkpoint: ``best`` or ``last``)
    or a checkpoint file.

    Returns the :class:`~spikelatent.model.VAE` in eval mode on ``map_location``;
    ``model.config`` is the run's resolved configuration and ``model.checkpoint_path`` the file.
    """
    path = checkpoint_path(run_dir_or_checkpoint, which)
    checkpoint = read_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters") or {}
    if "config" not in hparams or "image_shape" not in hparams:
        raise CheckpointError(f"{path} lacks the spikelatent configuration; retrain the model")
    model = VAE(hparams["config"], tuple(hparams["image_shape"]),
                tuple(hparams.get("data_range", (0, 1))), hparams.get("preprocessing"))
    state_dict, note = upgrade_state_dict(model, checkpoint["state_dict"])
    if note:
        _note(f"{path}: {note}")
    problem = load_state_dict_checked(model, state_dict)
    if problem is not None:
        raise CheckpointError(f"{path} does not match its configuration: {problem}")
    model.checkpoint_path = str(path)
    model.eval()
    return model.to(map_location)


def _unreadable_checkpoint_message(path: Path, error: BaseException) -> str:
    """One line for a checkpoint ``torch.load(weights_only=True)`` refused. torch's own text
    advises turning the safe loader off; that is never the advice here."""
    text = str(error)
    # torch >= 2.4 says "unsupported GLOBAL x", torch 2.2-2.3 "Unsupported class x"
    unsafe = re.search(r"unsupported GLOBAL (\S+)|Unsupported global: GLOBAL (\S+)|"
                       r"Unsupported class (\S+)", text)
    if isinstance(error, pickle.UnpicklingError) and unsafe:
        name = next(group for group in unsafe.groups() if group).rstrip(".,:;")
        return (
            f"{path} is not a spikelatent checkpoint or is unsafe: it asks to run Python code "
            f"({name}), which a spikelatent checkpoint never holds, so it was not loaded; "
            f"{_other_checkpoint_advice(path)}"
        )
    if isinstance(error, pickle.UnpicklingError):
        reason = "not a checkpoint file"
    elif isinstance(error, EOFError) or not text.strip():
        reason = "empty or cut short" if isinstance(error, EOFError) else type(error).__name__
    else:
        reason = text.strip().splitlines()[0].split(". ")[0][:160]
    return (
        f"cannot read checkpoint {path}: it is corrupt or truncated ({reason}); "
        f"{_other_checkpoint_advice(path)}"
    )


def _other_checkpoint_advice(path: Path) -> str:
    """What to do instead: the run's other checkpoint when there is one, else retraining."""
    other = {"best.ckpt": "last.ckpt", "last.ckpt": "best.ckpt"}.get(path.name)
    if other and (path.parent / other).is_file():
        which = other.removesuffix(".ckpt")
        return (f"the run's {other} may still load (spikelatent.load(RUN_DIR, which={which!r})); "
                f"otherwise retrain with `spikelatent fit`")
    return "use a checkpoint written by `spikelatent fit`, or retrain"

"""Argument checking and small building blocks shared by the encoders and decoders."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from spikelatent._checks import check_int
from spikelatent.errors import SpikelatentError
from spikelatent.options import ARCHITECTURES

OUTPUT_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "identity")

# Hidden nonlinearities that the MLP networks accept by name ("swish" is SiLU).
HIDDEN_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
}


def check_arch(arch: Any) -> str:
    """Return ``arch`` lower-cased, or raise a one-line error listing the choices."""
    if not isinstance(arch, str) or arch.strip().lower() not in ARCHITECTURES:
        raise SpikelatentError(
            f"unknown network architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}"
        )
    return arch.strip().lower()


def check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` as an int if it is a positive integer (bools and floats are refused)."""
    return check_int(value, name, minimum=1)


def check_image_shape(image_shape: Any) -> tuple[int, int, int]:
    """Return ``(channels, height, width)`` as ints, or raise a one-line error."""
    try:
        dims = tuple(image_shape)
    except TypeError:
        dims = ()
    if len(dims) != 3:
        raise SpikelatentError(
            f"image_shape must be (channels, height, width), e.g. (1, 28, 28); got {image_shape!r}"
        )
    try:
        channels, height, width = (check_positive_int(d, "image_shape entry") for d in dims)
    except SpikelatentError:
        raise SpikelatentError(
            f"image_shape must be three positive integers (channels, height, width); got {image_shape!r}"
        ) from None
    return channels, height, width


def check_output_activation(name: Any) -> str:
    """Return the output activation name lower-cased, or raise listing the choices."""
    if not isinstance(name, str) or name.strip().lower() not in OUTPUT_ACTIVATIONS:
        raise SpikelatentError(
            f"unknown output_activation {name!r}; choose one of {', '.join(OUTPUT_ACTIVATIONS)} "
            "(sigmoid for images on [0, 1], tanh for images on [-1, 1], identity for unbounded "
            "data such as whitened patches)"
        )
    return name.strip().lower()


def make_output_activation(name: str) -> nn.Module:
    """``nn.Sigmoid``, ``nn.Tanh`` or ``nn.Identity`` for a checked name."""
    return {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "identity": nn.Identity}[
        check_output_activation(name)]()


def output_activation_for(data_range: Sequence[float]) -> str:
    """The decoder's output nonlinearity for data on ``data_range``: ``sigmoid`` for (0, 1),
    ``tanh`` for (-1, 1), else ``identity`` (whitened or rescaled data: their range is only the
    observed span, so squashing the output into it would clip the reconstructions)."""
    low, high = (float(value) for value in data_range)
    if (low, high) == (0.0, 1.0):
        return "sigmoid"
    if (low, high) == (-1.0, 1.0):
        return "tanh"
    return "identity"


def make_hidden_activation(name: Any) -> nn.Module:
    """A fresh hidden nonlinearity module by name (see ``HIDDEN_ACTIVATIONS``)."""
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in HIDDEN_ACTIVATIONS:
        raise SpikelatentError(
            f"unknown activation {name!r}; choose one of {', '.join(HIDDEN_ACTIVATIONS)}"
        )
    return HIDDEN_ACTIVATIONS[key]()


def resolve_options(
    role: str, arch: str, options: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """Merge ``options`` into ``defaults``, refusing names the architecture does not know."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        allowed = ", ".join(sorted(defaults)) or "none"
        raise SpikelatentError(
            f"unknown option(s) {', '.join(unknown)} for the {arch} {role}; allowed: {allowed}"
        )
    return {**defaults, **options}


def check_input(tensor: torch.Tensor, accepted: Sequence[tuple[int, ...]], what: str) -> None:
    """Raise a one-line error unless ``tensor.shape[1:]`` is one of the ``accepted`` shapes."""
    if not isinstance(tensor, torch.Tensor):
        raise SpikelatentError(f"{what} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() >= 2 and tuple(tensor.shape[1:]) in accepted:
        return
    expected = " or ".join(str(("batch", *shape)) for shape in accepted).replace("'", "")
    raise SpikelatentError(
        f"{what} has shape {tuple(tensor.shape)}, expected {expected}; "
        "build the network for this data's image shape / latent size"
    )


def num_pixels(image_shape: tuple[int, int, int]) -> int:
    """Number of values in one image, ``C * H * W``."""
    return math.prod(image_shape)


class ResidualDense(nn.Module):
    """``h + act(W h + b)``: a dense layer with a skip connection, width preserved.

    Shapes: ``(batch, width)`` → ``(batch, width)``.
    """

    def __init__(self, width: int, activation: str) -> None:
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.activation = make_hidden_activation(activation)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.activation(self.dense(hidden))

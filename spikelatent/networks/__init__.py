"""Encoders and decoders: linear, MLP and convolutional (paper App. B.2.2).

``make_encoder(arch, image_shape, out_features)`` maps images ``(batch, C, H, W)`` to
``(batch, out_features)``; ``make_decoder(arch, latent_dim, image_shape, output_activation)``
maps latent samples ``(batch, latent_dim)`` to images ``(batch, C, H, W)`` on [0, 1] (sigmoid)
or [-1, 1] (tanh). See docs/networks.md for the layer shapes and parameter counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from spikelatent.networks._common import (
    ARCHITECTURES,
    HIDDEN_ACTIVATIONS,
    OUTPUT_ACTIVATIONS,
    check_arch,
    check_image_shape,
    check_output_activation,
    check_positive_int,
    output_activation_for,
    resolve_options,
)
from spikelatent.networks.conv import ConvDecoder, ConvEncoder, conv_plan, default_channels
from spikelatent.networks.linear import LinearDecoder, LinearEncoder
from spikelatent.networks.mlp import MLPDecoder, MLPEncoder
from spikelatent.options import (
    DECODER_CHANNELS,
    DECODER_UNIT_NORM,
    ENCODER_CHANNELS,
    ENCODER_LAYER_NORM,
)

__all__ = [
    "ARCHITECTURES",
    "HIDDEN_ACTIVATIONS",
    "OUTPUT_ACTIVATIONS",
    "ConvDecoder",
    "ConvEncoder",
    "LinearDecoder",
    "LinearEncoder",
    "MLPDecoder",
    "MLPEncoder",
    "count_parameters",
    "default_channels",
    "make_decoder",
    "make_encoder",
    "output_activation_for",
]

# Options each architecture accepts, with their defaults; the conv ones are spikelatent fit's
# (spikelatent.options), so make_encoder/make_decoder build what the command line builds.
ENCODER_OPTIONS: dict[str, dict[str, Any]] = {
    "linear": {"weight_norm": False},
    "mlp": {"hidden": 512, "activation": "silu"},
    "conv": {"channels": ENCODER_CHANNELS.default,
             "layer_norm": ENCODER_LAYER_NORM.default},
}
DECODER_OPTIONS: dict[str, dict[str, Any]] = {
    "linear": {},
    "mlp": {"hidden": 512, "activation": "silu"},
    "conv": {"channels": DECODER_CHANNELS.default,
             "unit_norm": DECODER_UNIT_NORM.default},
}
_ENCODERS = {"linear": LinearEncoder, "mlp": MLPEncoder, "conv": ConvEncoder}
_DECODERS = {"linear": LinearDecoder, "mlp": MLPDecoder, "conv": ConvDecoder}


def _checked_options(role: str, arch: str, options: dict[str, Any], defaults: dict[str, Any]):
    resolved = resolve_options(role, arch, options, defaults)
    if "hidden" in resolved:
        resolved["hidden"] = check_positive_int(resolved["hidden"], "hidden")
    return resolved


def make_encoder(
    arch: str, image_shape: Sequence[int], out_features: int, **options: Any
) -> nn.Module:
    """Build an encoder mapping ``(batch, C, H, W)`` images to ``(batch, out_features)``.

    Args:
        arch: ``"linear"``, ``"mlp"`` or ``"conv"``.
        image_shape: ``(C, H, W)``; conv needs a square side that halves down to 4 .. 7
            (28, 16, 32, 64, ...).
        out_features: numbers per image (the latent family's ``encoder_outputs``).
        **options: linear: ``weight_norm=False``; mlp: ``hidden=512, activation="silu"``;
            conv: ``channels=None`` (one width per stride-2 stage), ``layer_norm=True``
            (see :data:`ENCODER_OPTIONS`).

    Raises:
        SpikelatentError: unknown arch or option, bad shape or size.
    """
    arch = check_arch(arch)
    image_shape = check_image_shape(image_shape)
    out_features = check_positive_int(out_features, "out_features")
    if arch == "conv":
        conv_plan(image_shape)  # fail early, with the conv message
    resolved = _checked_options("encoder", arch, options, ENCODER_OPTIONS[arch])
    return _ENCODERS[arch](image_shape, out_features, **resolved)


def make_decoder(
    arch: str,
    latent_dim: int,
    image_shape: Sequence[int],
    output_activation: str = "sigmoid",
    **options: Any,
) -> nn.Module:
    """Build a decoder mapping latent samples ``(batch, latent_dim)`` to ``(batch, C, H, W)``.

    The input is the latent sample itself (counts may be large, e.g. 0..200: no normalisation
    is applied here).

    Args:
        arch: ``"linear"``, ``"mlp"`` or ``"conv"``.
        latent_dim: number of latent units.
        image_shape: ``(C, H, W)`` of the output.
        output_activation: ``"sigmoid"`` (data on [0, 1]), ``"tanh"`` (data on [-1, 1]) or
            ``"identity"`` (whitened data); :func:`output_activation_for` picks it from a range.
        **options: mlp: ``hidden=512, activation="silu"``; conv: ``channels=None``,
            ``unit_norm=True`` (unit-L2-norm columns in the first layer, no ReLU after it;
            see :data:`DECODER_OPTIONS`).

    Raises:
        SpikelatentError: unknown arch, activation or option, bad shape or size.
    """
    arch = check_arch(arch)
    latent_dim = check_positive_int(latent_dim, "latent_dim")
    image_shape = check_image_shape(image_shape)
    output_activation = check_output_activation(output_activation)
    if arch == "conv":
        conv_plan(image_shape)
    resolved = _checked_options("decoder", arch, options, DECODER_OPTIONS[arch])
    return _DECODERS[arch](latent_dim, image_shape, output_activation, **resolved)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)

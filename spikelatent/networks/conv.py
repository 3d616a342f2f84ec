"""Convolutional encoder and decoder (paper App. B.2.2).

Every stage is a 4×4 convolution with stride 2 and padding 1, which halves the side exactly
(the transposed convolution doubles it). The number of stages follows from the resolution:
the side is halved until it reaches 7 or less, e.g. 7 (28×28 → 14 → 7), 4 (16×16 → 8 → 4,
64×64 → 32 → 16 → 8 → 4), 6 (12×12 → 6, 24×24 → 12 → 6) or 5 (20×20 → 10 → 5). The decoder
starts from that low-resolution map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.utils.parametrize
from torch import nn

from spikelatent.errors import SpikelatentError
from spikelatent.networks._common import check_input, check_positive_int, make_output_activation
from spikelatent.options import DECODER_UNIT_NORM, ENCODER_LAYER_NORM

KERNEL_SIZE, STRIDE, PADDING = 4, 2, 1
#: Sides the halving may end at (every even side above 7 halves exactly, so 4 .. 7).
LOW_RESOLUTION_SIDES = (4, 5, 6, 7)
BASE_WIDTH, MAX_WIDTH = 32, 64
#: The decoder's stages are this many times wider than the encoder's (the NegBio-VAE code's
#: 128 → 64 → 1 decoder against a 32 → 64 encoder; measured better in analyses/ablation.py).
DECODER_WIDTH_FACTOR = 2


def conv_plan(image_shape: tuple[int, int, int]) -> tuple[int, int]:
    """``(stages, low_resolution_side)`` for a square image whose side halves down to 4 .. 7.

    Raises SpikelatentError for shapes the conv networks cannot handle.
    """
    channels, height, width = image_shape
    side, stages = height, 0
    while side > max(LOW_RESOLUTION_SIDES) and side % 2 == 0:
        side //= 2
        stages += 1
    if height != width or stages == 0 or side not in LOW_RESOLUTION_SIDES:
        raise SpikelatentError(
            f"the conv networks need a square image whose side halves down to 4 .. 7 "
            f"(e.g. 28, 16, 12, 24, 32, 64); got image shape {tuple(image_shape)}; use arch 'mlp' or 'linear'"
        )
    return stages, side


def default_channels(image_shape: tuple[int, int, int], role: str = "encoder") -> tuple[int, ...]:
    """Stage widths in encoder order: 32, then 64 for every later stage; the decoder's are
    ``DECODER_WIDTH_FACTOR`` times wider.

    Encoder: (1, 28, 28) → (32, 64); (3, 16, 16) → (32, 64); (3, 64, 64) → (32, 64, 64, 64);
    (1, 8, 8) → (32,). Decoder: (1, 28, 28) → (64, 128), i.e. Linear(K → 128·7·7), 128 → 64 → 1.
    """
    stages, _ = conv_plan(image_shape)
    widths = [min(BASE_WIDTH * 2**stage, MAX_WIDTH) for stage in range(stages)]
    factor = DECODER_WIDTH_FACTOR if role == "decoder" else 1
    return tuple(factor * width for width in widths)


def resolve_channels(
    image_shape: tuple[int, int, int], channels: Sequence[int] | None, role: str = "encoder"
) -> tuple[int, ...]:
    """The user's stage widths checked against the number of stages, or the defaults."""
    if channels is None:
        return default_channels(image_shape, role)
    stages, _ = conv_plan(image_shape)
    try:
        widths = tuple(check_positive_int(width, "conv channel width") for width in channels)
    except TypeError:
        widths = ()
    if len(widths) != stages:
        raise SpikelatentError(
            f"channels must list {stages} positive widths (one per stride-2 stage) for image shape "
            f"{tuple(image_shape)}; got {channels!r}"
        )
    return widths


class ConvEncoder(nn.Module):
    """Strided convolutions with ReLU, flatten, fully connected projection (optional LayerNorm).

    Shapes: ``(batch, C, H, W)`` → ``(batch, out_features)``.

    Args:
        image_shape: ``(C, H, W)``; C is the input channel count (1 grey, 3 RGB).
        out_features: numbers emitted per image.
        channels: width of each stride-2 stage (default from :func:`default_channels`).
        layer_norm: apply LayerNorm to the output (on by default, as in ``spikelatent fit``).
    """

    arch = "conv"

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        out_features: int,
        channels: Sequence[int] | None = None,
        layer_norm: bool = ENCODER_LAYER_NORM.default,
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.out_features = out_features
        self.channels = resolve_channels(self.image_shape, channels)
        _, side = conv_plan(self.image_shape)
        layers: list[nn.Module] = []
        in_channels = self.image_shape[0]
        for width in self.channels:
            layers += [nn.Conv2d(in_channels, width, KERNEL_SIZE, STRIDE, PADDING), nn.ReLU()]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.projection = nn.Linear(in_channels * side * side, out_features)
        self.norm = nn.LayerNorm(out_features) if layer_norm else nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_input(images, [self.image_shape], "encoder input")
        return self.norm(self.projection(self.flatten(self.features(images))))

    def stages(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every stage's output in depth order: ``conv1`` .. ``convN`` (batch, channels, h, w)
        after their ReLU, then ``output`` (batch, out_features), equal to ``forward``."""
        check_input(images, [self.image_shape], "encoder input")
        out: dict[str, torch.Tensor] = {}
        hidden = images
        for layer in self.features:
            hidden = layer(hidden)
            if isinstance(layer, nn.ReLU):
                out[f"conv{len(out) + 1}"] = hidden
        out["output"] = self.norm(self.projection(self.flatten(hidden)))
        return out


class UnitNormColumns(nn.Module):
    """Parametrization ``W → W / ||W[:, j]||``: each latent unit's column has unit L2 norm.

    With it the first decoder layer cannot scale a unit up to make up for a small count: a unit
    matters through its count, which keeps the latent units comparable (the NegBio-VAE code).
    """

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / weight.norm(dim=0, keepdim=True).clamp_min(1e-12)


class ConvDecoder(nn.Module):
    """Fully connected layer to a low-resolution map, transposed convolutions up to the image.

    ``z → ReLU(W z)`` (or ``W z`` with unit-norm columns, ``unit_norm=True``) reshaped to ``(channels[-1], s, s)`` (s = 7 for 28×28, 4 for 16×16 and
    64×64), then stride-2 transposed convolutions with ReLU through ``channels`` reversed, the
    last one to the image's channels followed by sigmoid or tanh.
    Shapes: ``(batch, latent_dim)`` → ``(batch, C, H, W)``.

    Args:
        channels: stage widths in encoder order (the first layer maps to ``channels[-1]`` maps).
        unit_norm: first layer with unit-L2-norm columns and no nonlinearity after it.
    """

    arch = "conv"

    def __init__(
        self,
        latent_dim: int,
        image_shape: tuple[int, int, int],
        output_activation: str,
        channels: Sequence[int] | None = None,
        unit_norm: bool = DECODER_UNIT_NORM.default,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape)
        self.channels = resolve_channels(self.image_shape, channels, "decoder")
        _, side = conv_plan(self.image_shape)
        first = nn.Linear(latent_dim, self.channels[-1] * side * side)
        if unit_norm:
            torch.nn.utils.parametrize.register_parametrization(first, "weight", UnitNormColumns())
        self.expand = nn.Sequential(
            first,
            nn.Identity() if unit_norm else nn.ReLU(),
            nn.Unflatten(1, (self.channels[-1], side, side)),
        )
        widths = list(reversed(self.channels)) + [self.image_shape[0]]
        layers: list[nn.Module] = []
        for index, (in_width, out_width) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.ConvTranspose2d(in_width, out_width, KERNEL_SIZE, STRIDE, PADDING))
            if index < len(widths) - 2:  # no ReLU before the output activation
                layers.append(nn.ReLU())
        self.upsample = nn.Sequential(*layers)
        self.output_activation = make_output_activation(output_activation)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        check_input(latents, [(self.latent_dim,)], "decoder input")
        return self.output_activation(self.upsample(self.expand(latents)))

"""MLP encoder and decoder with residual dense layers (paper App. B.2.2)."""

from __future__ import annotations

import torch
from torch import nn

from spikelatent.networks._common import (
    ResidualDense,
    check_input,
    make_hidden_activation,
    make_output_activation,
    num_pixels,
)


class MLPEncoder(nn.Module):
    """Dense layer → residual dense layer → linear projection.

    ``h = act(W1 x)``, ``h = h + act(W2 h)``, ``out = W3 h``.
    Shapes: ``(batch, C, H, W)`` (or flat ``(batch, C*H*W)``) → ``(batch, out_features)``.

    Args:
        image_shape: ``(C, H, W)``.
        out_features: numbers emitted per image.
        hidden: width of the hidden layers.
        activation: hidden nonlinearity name (default SiLU, a.k.a. Swish).
    """

    arch = "mlp"

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        out_features: int,
        hidden: int = 512,
        activation: str = "silu",
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.out_features = out_features
        self.flatten = nn.Flatten()
        self.input_layer = nn.Linear(num_pixels(self.image_shape), hidden)
        self.activation = make_hidden_activation(activation)
        self.residual = ResidualDense(hidden, activation)
        self.projection = nn.Linear(hidden, out_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_input(images, [self.image_shape, (num_pixels(self.image_shape),)], "encoder input")
        hidden = self.activation(self.input_layer(self.flatten(images)))
        return self.projection(self.residual(hidden))

    def stages(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``hidden1`` (batch, hidden), ``hidden2`` (after the residual layer) and ``output``."""
        check_input(images, [self.image_shape, (num_pixels(self.image_shape),)], "encoder input")
        first = self.activation(self.input_layer(self.flatten(images)))
        second = self.residual(first)
        return {"hidden1": first, "hidden2": second, "output": self.projection(second)}


class MLPDecoder(nn.Module):
    """Three dense layers, the middle one residual, then sigmoid or tanh.

    ``h = act(W1 z)``, ``h = h + act(W2 h)``, ``x = out_act(W3 h)``.
    Shapes: ``(batch, latent_dim)`` → ``(batch, C, H, W)``.
    """

    arch = "mlp"

    def __init__(
        self,
        latent_dim: int,
        image_shape: tuple[int, int, int],
        output_activation: str,
        hidden: int = 512,
        activation: str = "silu",
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape)
        self.input_layer = nn.Linear(latent_dim, hidden)
        self.activation = make_hidden_activation(activation)
        self.residual = ResidualDense(hidden, activation)
        self.output_layer = nn.Linear(hidden, num_pixels(self.image_shape))
        self.unflatten = nn.Unflatten(1, self.image_shape)
        self.output_activation = make_output_activation(output_activation)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        check_input(latents, [(self.latent_dim,)], "decoder input")
        hidden = self.residual(self.activation(self.input_layer(latents)))
        return self.output_activation(self.unflatten(self.output_layer(hidden)))

"""Linear encoder and decoder: one fully connected layer each (paper App. B.2.2)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as apply_weight_norm

from spikelatent.networks._common import check_input, make_output_activation, num_pixels


class LinearEncoder(nn.Module):
    """Flatten the image and apply one fully connected layer.

    Shapes: ``(batch, C, H, W)`` (or already flat ``(batch, C*H*W)``) → ``(batch, out_features)``.

    Args:
        image_shape: ``(C, H, W)``.
        out_features: numbers emitted per image (the latent family's ``encoder_outputs``).
        weight_norm: reparameterise the weight as direction × norm (Salimans & Kingma 2016).
    """

    arch = "linear"

    def __init__(
        self, image_shape: tuple[int, int, int], out_features: int, weight_norm: bool = False
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.out_features = out_features
        self.flatten = nn.Flatten()
        projection = nn.Linear(num_pixels(self.image_shape), out_features)
        self.projection = apply_weight_norm(projection) if weight_norm else projection

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_input(images, [self.image_shape, (num_pixels(self.image_shape),)], "encoder input")
        return self.projection(self.flatten(images))

    def stages(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The one stage: ``output`` (batch, out_features)."""
        return {"output": self.forward(images)}


class LinearDecoder(nn.Module):
    """One fully connected layer from the latent sample to the pixels, then sigmoid or tanh.

    Shapes: ``(batch, latent_dim)`` → ``(batch, C, H, W)``.
    """

    arch = "linear"

    def __init__(
        self, latent_dim: int, image_shape: tuple[int, int, int], output_activation: str
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape)
        self.projection = nn.Linear(latent_dim, num_pixels(self.image_shape))
        self.unflatten = nn.Unflatten(1, self.image_shape)
        self.output_activation = make_output_activation(output_activation)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        check_input(latents, [(self.latent_dim,)], "decoder input")
        return self.output_activation(self.unflatten(self.projection(latents)))

"""Reparameterized standard Gamma draws, on every CPU thread for large tensors (the NB sampler's Gamma step).

On the CPU ``torch._standard_gamma`` and its gradient ``torch._standard_gamma_grad`` run one element
at a time on one thread (about 55 ns per element each on the 2-core development machine).
``standard_gamma`` runs torch's own kernels, on chunks from a thread pool for tensors of
``_parallel.MIN_ELEMENTS_TO_SPLIT`` (1,048,576) elements or more, e.g. population building; a training
step's draws are smaller and gain nothing there (see ``_parallel``). The law and the gradient (implicit
reparameterization, dx/dα = −(∂F/∂α)(x; α) / f(x; α)) are exactly torch's, and draws follow
``torch.manual_seed`` whatever the number of threads.
"""

from __future__ import annotations

import torch

from spikelatent.distributions._parallel import (
    CHUNKS,
    chunk_generators,
    in_serial_pieces,
    map_chunks,
    splits,
)

__all__ = ["standard_gamma"]


def standard_gamma(concentration: torch.Tensor) -> torch.Tensor:
    """Gamma(α, 1) draws of the shape of ``concentration`` (α > 0), differentiable in α.

    Same law and gradient as ``torch._standard_gamma`` (values floored at the smallest normal number,
    as torch's are); CPU tensors of 1,048,576 elements or more are drawn on several threads.
    """
    if not splits(concentration):
        return torch._standard_gamma(concentration)
    return _ChunkedStandardGamma.apply(concentration)


def _draw_chunk(alpha: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return in_serial_pieces(lambda piece: torch._standard_gamma(piece, generator=generator), alpha)


def _slope_chunk(alpha: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """dx/dα at (α, x), torch's implicit-reparameterization gradient."""
    return in_serial_pieces(torch._standard_gamma_grad, alpha, sample)


class _ChunkedStandardGamma(torch.autograd.Function):
    @staticmethod
    def forward(ctx, concentration: torch.Tensor) -> torch.Tensor:
        alpha = concentration.detach().contiguous().view(-1)

        parts = map_chunks(_draw_chunk, alpha.tensor_split(CHUNKS), chunk_generators(alpha.device))
        sample = torch.cat(parts)
        ctx.save_for_backward(alpha, sample)  # flat and contiguous: the backward splits them as is
        return sample.view_as(concentration)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        alpha, sample = ctx.saved_tensors
        slopes = map_chunks(_slope_chunk, alpha.tensor_split(CHUNKS), sample.tensor_split(CHUNKS))
        return grad_output * torch.cat(slopes).view_as(grad_output)

"""A trained model run over many images in batches: seeded reconstructions, read-out features and
the KL of each unit. Shared by evaluation, analysis and the benchmarks, so each batches the same way.

Images are ``(image, C, H, W)`` on the model's data range; the model is any
:class:`~spikelatent.model.VAE` (or an object with the same ``reconstruct``, ``features``,
``posterior`` and ``family`` members). Nothing here needs gradients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def reconstruct_images(
    model: Any, images: torch.Tensor, mode: str = "sample", batch_size: int = 500, seed: int = 0
) -> torch.Tensor:
    """Reconstructions ``(image, C, H, W)`` on the CPU, ``batch_size`` images at a time.

    ``mode`` is :meth:`~spikelatent.model.VAE.reconstruct`'s: ``"sample"`` (hard counts for count
    families, a posterior sample otherwise) or ``"mean"`` (the posterior mean). The sampling is
    seeded with ``seed`` and the global RNG state is restored afterwards.
    """
    device = _device(model)
    cuda_devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        parts = [
            model.reconstruct(images[start : start + batch_size].to(device), mode=mode).cpu()
            for start in range(0, images.shape[0], batch_size)
        ]
    return torch.cat(parts) if parts else images[:0].clone()


@torch.no_grad()
def model_features(
    model: Any,
    images: torch.Tensor,
    batch_size: int = 500,
    progress: bool | None = None,
    desc: str = "features",
) -> np.ndarray:
    """Read-out features ``model.features(x)`` of ``images``, float64 ``(image, feature)``.

    ``progress``: a progress bar (``None``: only on a terminal), labelled ``desc``.
    """
    device = _device(model)
    parts = []
    for start in tqdm(
        range(0, images.shape[0], batch_size),
        desc=desc,
        unit="batch",
        disable=None if progress is None else not progress,
        leave=False,
    ):
        batch = images[start : start + batch_size].to(device)
        parts.append(model.features(batch).flatten(1).double().cpu().numpy())
    return np.concatenate(parts) if parts else np.empty((0, 0))


@torch.no_grad()
def kl_per_unit(model: Any, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """KL(q(z|x) || p(z)) of every unit for every image, float64 ``(image, unit)`` in nats.

    The model kind's own KL from hard samples or closed forms (the count families' closed form,
    for ``--kl mc`` an MC estimate from hard samples; a hierarchy: the exact series against each
    unit's conditional prior).
    """
    device = _device(model)
    parts = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(device)
        parts.append(model.family.kl_per_unit(batch).flatten(1).double().cpu())
    return torch.cat(parts)

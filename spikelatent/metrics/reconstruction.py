"""Reconstruction metrics (paper Table 1, App. B.2.4): per-pixel MSE and SSIM through torchmetrics."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics.aggregation import MeanMetric
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.regression import MeanSquaredError

from spikelatent._checks import check_data_range
from spikelatent.errors import SpikelatentError

# SSIM settings of Wang et al. (2004), the convention of skimage and torchmetrics alike:
# an 11 x 11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03.
SSIM_KERNEL_SIZE = 11
SSIM_SIGMA = 1.5
# skimage (and Wang et al.'s reference code) average the SSIM map over the pixels whose whole
# window lies inside the image; torchmetrics averages over the reflect-padded full image, which on
# 28 x 28 images lets padding artefacts weigh in on 59% of the pixels. We take torchmetrics' map and
# average it over skimage's valid region.
SSIM_BORDER = (SSIM_KERNEL_SIZE - 1) // 2


def to_unit_range(images: torch.Tensor, data_range: Sequence[float]) -> torch.Tensor:
    """Map images from ``data_range`` to [0, 1] (an affine rescale, no clamping)."""
    low, high = check_data_range(data_range)
    return (images - low) / (high - low)


def _check_images(inputs: torch.Tensor, recons: torch.Tensor) -> None:
    for name, images in (("inputs", inputs), ("reconstructions", recons)):
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise SpikelatentError(f"{name} must be a tensor of shape (batch, C, H, W)")
        if images.shape[0] == 0:
            raise SpikelatentError(f"{name} is empty: need at least one image")
        if not torch.isfinite(images).all():
            raise SpikelatentError(f"{name} contain NaN or infinite values")
    if inputs.shape != recons.shape:
        raise SpikelatentError(
            f"inputs {tuple(inputs.shape)} and reconstructions {tuple(recons.shape)} differ in shape"
        )
    if min(inputs.shape[-2:]) <= SSIM_KERNEL_SIZE:
        raise SpikelatentError(
            f"images of {inputs.shape[-2]}x{inputs.shape[-1]} pixels are smaller than the "
            f"{SSIM_KERNEL_SIZE}x{SSIM_KERNEL_SIZE} SSIM window"
        )


@torch.no_grad()
def reconstruction_metrics(
    inputs: torch.Tensor,
    recons: torch.Tensor,
    data_range: Sequence[float] = (0.0, 1.0),
    batch_size: int = 1000,
) -> dict[str, float]:
    """MSE and SSIM between images and their reconstructions.

    Args:
        inputs: original images ``(N, C, H, W)`` on ``data_range`` (the scale the model was trained on).
        recons: reconstructions, same shape and scale.
        data_range: ``(low, high)`` pixel range, ``(0, 1)`` or ``(-1, 1)``.
        batch_size: images per torchmetrics update (memory only; the result does not depend on it).

    Returns:
        ``mse``: mean squared error per pixel on the trained scale (averaged over pixels, channels
        and images); ``mse_01``: the same after mapping both to [0, 1] (equals ``mse`` for [0, 1]
        data; a quarter of it for [-1, 1] data); ``ssim``: mean SSIM per image (Gaussian window 11,
        sigma 1.5, data range ``high - low``, averaged over the pixels whose window lies inside the image as in
        skimage; SSIM is unchanged by the rescale); ``n_images``.
    """
    _check_images(inputs, recons)
    low, high = check_data_range(data_range)
    device = inputs.device
    mse = MeanSquaredError().to(device)
    mse_unit = MeanSquaredError().to(device)
    ssim = MeanMetric().to(device)
    for start in range(0, inputs.shape[0], batch_size):
        target = inputs[start : start + batch_size].float()
        preds = recons[start : start + batch_size].to(device).float()
        mse.update(preds, target)
        mse_unit.update(to_unit_range(preds, (low, high)), to_unit_range(target, (low, high)))
        # a float data_range (not a tuple), so torchmetrics does not silently clamp the images
        _, ssim_map = structural_similarity_index_measure(
            preds,
            target,
            gaussian_kernel=True,
            sigma=SSIM_SIGMA,
            kernel_size=SSIM_KERNEL_SIZE,
            data_range=high - low,
            reduction="none",
            return_full_image=True,
        )
        valid = ssim_map[..., SSIM_BORDER:-SSIM_BORDER, SSIM_BORDER:-SSIM_BORDER]
        ssim.update(valid.flatten(1).mean(dim=1))
    return {
        "mse": float(mse.compute()),
        "mse_01": float(mse_unit.compute()),
        "ssim": float(ssim.compute()),
        "n_images": int(inputs.shape[0]),
    }

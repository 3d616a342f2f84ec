"""Natural-image preprocessing of the sparse-coding tradition (Olshausen & Field 1996/1997; the
Poisson VAE's vH16 patches): log intensity, whitening, random patches, contrast normalisation.

* :func:`fourier_whiten`: multiply each image's spectrum by ``R(f) = f · exp(-(f / f0)^4)``,
  the inverse of natural images' ~1/f amplitude spectrum with Olshausen & Field's low-pass
  roll-off (``f0`` = ``cutoff`` × Nyquist; ``cutoff=None`` gives the pure ramp ``f``, which makes
  a 1/f image exactly white).
* :func:`zca_whitening`: the symmetric whitening matrix ``U diag(1 / sqrt(s + eps)) U^T`` of the
  patch covariance (``scipy.linalg.eigh``), fitted on training patches only.
* :func:`random_patches`: seeded uniform patch positions per image (:func:`patch_corners`).
* :func:`contrast_normalise`: subtract each patch's mean, divide by its standard deviation.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from spikelatent.errors import SpikelatentError

#: Roll-off of the whitening filter as a fraction of the Nyquist frequency (Olshausen & Field's
#: f0 = 200 cycles/picture on 512-pixel images is 0.78 of Nyquist).
DEFAULT_WHITEN_CUTOFF = 0.8
#: Added to intensities on [0, 1] before the logarithm, so black pixels stay finite.
LOG_OFFSET = 0.01


def log_intensity(image: torch.Tensor, offset: float = LOG_OFFSET) -> torch.Tensor:
    """``log(image + offset)``: natural images' intensities are roughly log-normal, and the
    retina's response is closer to the logarithm of luminance than to luminance itself."""
    return torch.log(image.clamp_min(0) + offset)


def whitening_filter(height: int, width: int, cutoff: float | None = DEFAULT_WHITEN_CUTOFF) -> np.ndarray:
    """``R(f) = f · exp(-(f / f0)^4)`` on the ``numpy.fft.fft2`` grid, ``(height, width)``.

    ``f`` is the radial frequency in cycles per pixel (Nyquist 0.5); ``f0 = cutoff · 0.5``.
    ``R(0) = 0``: the mean is removed.
    """
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    radius = np.sqrt(fy**2 + fx**2)
    if cutoff is None:
        return radius
    if not 0 < cutoff:
        raise SpikelatentError(f"whiten_cutoff must be > 0 (a fraction of Nyquist); got {cutoff!r}")
    return radius * np.exp(-((radius / (cutoff * 0.5)) ** 4))


def fourier_whiten(image: torch.Tensor, cutoff: float | None = DEFAULT_WHITEN_CUTOFF) -> torch.Tensor:
    """An image ``(C, H, W)`` filtered channel by channel with :func:`whitening_filter`."""
    array = image.double().numpy()
    spectrum = np.fft.fft2(array, axes=(-2, -1))
    filtered = np.fft.ifft2(spectrum * whitening_filter(*array.shape[-2:], cutoff), axes=(-2, -1))
    return torch.from_numpy(filtered.real.astype(np.float32))


def random_patches(
    image: torch.Tensor, size: int, count: int, rng: np.random.Generator
) -> tuple[torch.Tensor, np.ndarray]:
    """``count`` patches ``(count, C, size, size)`` at uniform random positions of ``image``
    ``(C, H, W)``, and their top-left corners ``(count, 2)`` as (row, column)."""
    _, height, width = image.shape
    corners = patch_corners(height, width, size, count, rng)
    rows, cols = corners[:, 0], corners[:, 1]
    windows = image.unfold(1, size, 1).unfold(2, size, 1)  # (C, H-s+1, W-s+1, s, s), a view
    patches = windows[:, torch.as_tensor(rows), torch.as_tensor(cols)].permute(1, 0, 2, 3)
    return patches.contiguous(), corners


def patch_corners(height: int, width: int, size: int, count: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Top-left corners ``(count, 2)`` (row, column) of ``count`` uniform random ``size`` x
    ``size`` windows of a ``height`` x ``width`` image: all rows drawn first, then all columns."""
    rows = rng.integers(0, height - size + 1, size=count)
    cols = rng.integers(0, width - size + 1, size=count)
    return np.stack([rows, cols], axis=1)


def zca_whitening(patches: torch.Tensor, epsilon: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """ZCA whitening fitted on ``patches`` ``(N, ...)``: ``(mean (D,), matrix (D, D))`` with
    ``whitened = (x - mean) @ matrix`` for flattened ``x``.

    ``epsilon`` regularises the small eigenvalues, relative to their mean (0.01: directions
    with less than 1 % of the average variance are not amplified to unit variance).
    """
    flat = patches.flatten(1).double().numpy()
    if flat.shape[1] > 4096:
        raise SpikelatentError(
            f"ZCA whitening of {flat.shape[1]}-dimensional images needs a {flat.shape[1]}^2 "
            f"covariance; use --patches (e.g. 16) or --whiten fourier"
        )
    mean = flat.mean(axis=0)
    covariance = np.cov(flat - mean, rowvar=False)
    eigenvalues, eigenvectors = scipy.linalg.eigh(covariance)
    eigenvalues = np.clip(eigenvalues, 0, None)
    regulariser = epsilon * eigenvalues.mean()
    matrix = (eigenvectors / np.sqrt(eigenvalues + regulariser)) @ eigenvectors.T
    return torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(matrix.astype(np.float32))


def apply_zca(images: torch.Tensor, mean: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``(images - mean) @ matrix`` in the flattened image space, shape kept."""
    return ((images.flatten(1) - mean) @ matrix).reshape(images.shape)


def contrast_normalise(images: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Each image ``(N, ...)`` minus its mean, divided by ``sqrt(variance + epsilon)``."""
    flat = images.flatten(1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    return (centred / torch.sqrt(centred.pow(2).mean(dim=1, keepdim=True) + epsilon)).reshape(images.shape)


def radial_power_spectrum(images: torch.Tensor, bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Average power spectrum of square images ``(N, C, S, S)`` (mean removed per image),
    averaged over orientations in integer rings of radius ``1 .. S // 2`` (cycles per image).

    Returns ``(radius, power)``; used to check that whitening flattens the spectrum.
    """
    array = images.double().numpy()
    array = array - array.mean(axis=(-2, -1), keepdims=True)
    power = (np.abs(np.fft.fft2(array, axes=(-2, -1))) ** 2).mean(axis=(0, 1))
    size = array.shape[-1]
    fy = np.fft.fftfreq(size, d=1 / size)[:, None]
    fx = np.fft.fftfreq(size, d=1 / size)[None, :]
    ring = np.rint(np.sqrt(fy**2 + fx**2)).astype(int)
    top = bins or size // 2
    radius = np.arange(1, top + 1)
    return radius, np.array([power[ring == r].mean() for r in radius])

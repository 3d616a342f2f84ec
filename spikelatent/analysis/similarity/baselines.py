"""Reference representations of the stimuli themselves: every score is read beside them.

* ``pixels``: the stimuli as shown to the model, ``(stimulus, channel, y, x)``.
* ``gabor-energy``: the classic V1 model, a bank of Gabor filters in quadrature pairs
  (:class:`GaborBank`: orientations x spatial frequencies x {even, odd} phase, positions on a
  grid), with simple-cell outputs (the four half-wave rectified phases 0°, 90°, 180°, 270°:
  ``max(0, ±even)``, ``max(0, ±odd)``) and complex-cell outputs (the energy ``even² + odd²``;
  Adelson & Bergen 1985), ``(stimulus, channel, y, x)`` with ``channel`` = frequency x
  orientation x output.
* user features: any ``(stimulus, feature)`` array (:func:`baseline_representations`'s
  ``features``), ranked the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from spikelatent.errors import SpikelatentError

__all__ = ["BASELINES", "GaborBank", "baseline_representations", "gabor_energy", "grey_images"]

BASELINES = ("pixels", "gabor-energy")
_OUTPUTS = ("simple_0", "simple_90", "simple_180", "simple_270", "complex")
# ITU-R 601-2 luma, as PIL's convert("L") and torchvision's rgb_to_grayscale.
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class GaborBank:
    """A documented Gabor filter bank (the V1 energy model's front end).

    Kernel of frequency f (cycles/pixel), orientation θ and phase φ at pixel offset (x, y) from
    its centre: ``exp(-(x² + y²) / (2σ²)) · cos(2π f x' + φ)`` with ``x' = x cos θ + y sin θ`` and
    ``σ = bandwidth / f`` (the envelope's width in cycles, Ringach 2002's n_x = σ f), on a square
    support of ``2 ceil(3σ) + 1`` pixels; every kernel is made zero-mean and unit-norm. The even
    (φ = 0) and odd (φ = 90°) kernels form a quadrature pair. Responses are the
    cross-correlation of the grey, mean-subtracted image with each kernel (zero padding, same
    size), read at ``grid x grid`` positions (pixel ``round((k + 1/2) · size / grid - 1/2)``).

    Attributes:
        frequencies: spatial frequencies in cycles per pixel.
        orientations: number of orientations, θ = k·180°/orientations.
        bandwidth: σ·f, the envelope's standard deviation in cycles.
        grid: positions per side.
    """

    frequencies: Sequence[float] = (0.25, 0.125, 0.0625)
    orientations: int = 8
    bandwidth: float = 0.5
    grid: int = 8

    def kernel(self, frequency: float, theta: float, phase: float) -> np.ndarray:
        """One zero-mean, unit-norm kernel (square, odd side)."""
        sigma = self.bandwidth / frequency
        half = int(np.ceil(3 * sigma))
        y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
        rotated = x * np.cos(theta) + y * np.sin(theta)
        kernel = np.exp(-(x**2 + y**2) / (2 * sigma**2)) * np.cos(
            2 * np.pi * frequency * rotated + phase
        )
        kernel -= kernel.mean()
        return kernel / np.linalg.norm(kernel)

    def thetas(self) -> np.ndarray:
        """Orientations in radians."""
        return np.arange(self.orientations) * np.pi / self.orientations

    def positions(self, size: int) -> np.ndarray:
        """Pixel indices of the grid along an axis of ``size`` pixels."""
        return np.round((np.arange(self.grid) + 0.5) * size / self.grid - 0.5).astype(int)

    def channels(self) -> list[tuple[float, float, str]]:
        """(frequency, orientation in degrees, output) of every output channel, in order."""
        return [
            (float(f), float(np.degrees(t)), output)
            for f in self.frequencies
            for t in self.thetas()
            for output in _OUTPUTS
        ]


def grey_images(images: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` images as ``(N, H, W)`` grey (luma for RGB(A), the channel otherwise)."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4:
        raise SpikelatentError(f"images must be (N, C, H, W); got shape {images.shape}")
    if images.shape[1] >= 3:
        return np.einsum("nchw,c->nhw", images[:, :3], _LUMA)
    return images[:, 0]


def gabor_energy(images: np.ndarray, bank: GaborBank | None = None, batch: int = 256) -> np.ndarray:
    """Simple- and complex-cell responses of a Gabor bank, ``(N, channel, grid, grid)``.

    Args:
        images: ``(N, C, H, W)`` stimuli as shown to the model.
        bank: the filter bank (default :class:`GaborBank` ()).
        batch: images filtered at once (memory).

    Returns:
        float32 responses; ``channel`` follows :meth:`GaborBank.channels`.
    """
    bank = bank or GaborBank()
    grey = grey_images(images)
    grey = grey - grey.mean(axis=(1, 2), keepdims=True)
    n, height, width = grey.shape
    rows, cols = bank.positions(height), bank.positions(width)
    out = np.empty((n, len(bank.channels()), bank.grid, bank.grid), dtype=np.float32)
    channel = 0
    for frequency in bank.frequencies:
        kernels = np.stack(
            [
                bank.kernel(frequency, theta, phase)
                for theta in bank.thetas()
                for phase in (0.0, np.pi / 2)
            ]
        )  # (orientation x phase, size, size)
        # The correlation (zero padding) is needed at the grid positions only: each kernel
        # placed at each position on an image-sized canvas is one column of a matrix, and the
        # responses of a batch of images are one matrix product with it.
        placed = _placed_kernels(kernels, rows, cols, height, width)  # (h·w, g·g·kernel)
        flat = grey.reshape(n, -1).astype(np.float32)
        for start in range(0, n, batch):
            response = (flat[start : start + batch] @ placed).reshape(
                -1, bank.grid, bank.grid, len(kernels)
            )
            response = response.transpose(0, 3, 1, 2)  # (n, orientation x phase, grid, grid)
            even, odd = response[:, 0::2], response[:, 1::2]
            outputs = np.stack(
                [
                    np.maximum(even, 0),
                    np.maximum(odd, 0),
                    np.maximum(-even, 0),
                    np.maximum(-odd, 0),
                    even**2 + odd**2,
                ],
                axis=2,
            )  # (n, orientation, output, grid, grid)
            out[start : start + batch, channel : channel + outputs.shape[1] * 5] = outputs.reshape(
                len(response), -1, bank.grid, bank.grid
            )
        channel += bank.orientations * 5
    return out


def _placed_kernels(
    kernels: np.ndarray, rows: np.ndarray, cols: np.ndarray, height: int, width: int
) -> np.ndarray:
    """``(height·width, rows·cols·kernels)``: column (g, k) is kernel k centred on grid position g
    and cut to the image (what zero padding gives)."""
    count, size = kernels.shape[0], kernels.shape[-1]
    half = size // 2
    placed = np.zeros((height, width, len(rows), len(cols), count), dtype=np.float32)
    for i, r in enumerate(rows):
        top, bottom = max(0, r - half), min(height, r + half + 1)
        for j, c in enumerate(cols):
            left, right = max(0, c - half), min(width, c + half + 1)
            window = kernels[
                :, top - r + half : bottom - r + half, left - c + half : right - c + half
            ]
            placed[top:bottom, left:right, i, j] = np.moveaxis(window, 0, -1)
    return placed.reshape(height * width, -1)


def baseline_representations(
    images: np.ndarray,
    stimulus: np.ndarray,
    which: Sequence[str] = BASELINES,
    *,
    features: dict[str, np.ndarray] | None = None,
    bank: GaborBank | None = None,
) -> dict[str, xr.DataArray]:
    """Baseline representations of the stimuli, as ``(stimulus, channel, y, x)`` DataArrays.

    Args:
        images: ``(N, C, H, W)`` stimuli at the size shown to the model.
        stimulus: their ``N`` stimulus ids.
        which: names among :data:`BASELINES`.
        features: user feature arrays by name, rows = the same N stimuli (``(N, ...)``).
        bank: the Gabor bank of ``gabor-energy``.

    Returns:
        ``{name: DataArray}`` in the order pixels, gabor-energy, user features.
    """
    unknown = [name for name in which if name not in BASELINES]
    if unknown:
        raise SpikelatentError(
            f"unknown baseline(s) {unknown}; use {', '.join(BASELINES)} or 'none'"
        )
    images = np.asarray(images)
    stimulus = np.asarray(stimulus)
    dims = ("stimulus", "channel", "y", "x")
    out: dict[str, xr.DataArray] = {}
    if "pixels" in which:
        out["pixels"] = xr.DataArray(
            images.astype(np.float64), dims=dims, coords={"stimulus": stimulus}
        )
    if "gabor-energy" in which:
        bank = bank or GaborBank()
        energy = gabor_energy(images, bank)
        labels = [f"{f:g} c/px {o:g} deg {kind}" for f, o, kind in bank.channels()]
        out["gabor-energy"] = xr.DataArray(
            energy,
            dims=dims,
            coords={"stimulus": stimulus, "channel": labels},
            attrs={"bank": repr(bank)},
        )
    for name, values in (features or {}).items():
        values = np.asarray(values, dtype=np.float64)
        if values.ndim < 2 or len(values) != len(stimulus):
            raise SpikelatentError(
                f"features {name!r}: expected one row per stimulus ({len(stimulus)} rows), got "
                f"shape {values.shape}"
            )
        if name in out:
            raise SpikelatentError(f"features {name!r}: the name is taken by a baseline")
        if values.ndim == 4:
            out[name] = xr.DataArray(values, dims=dims, coords={"stimulus": stimulus})
        else:
            flat = values.reshape(len(values), -1)
            out[name] = xr.DataArray(flat, dims=("stimulus", "unit"), coords={"stimulus": stimulus})
    return out

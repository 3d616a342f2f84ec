"""Image figures: grids of images, reconstructions under their inputs, models side by side.

Image figures keep an exact pixel layout: every image pixel becomes a ``pixel_scale`` ×
``pixel_scale`` block of the PNG, with an optional title band on top and a row-label band on
the left.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.utils
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spikelatent._checks import check_data_range
from spikelatent.errors import SpikelatentError
from spikelatent.plotting.save import DPI, save_figure

__all__ = [
    "image_grid",
    "save_image_grid",
    "save_model_comparison",
    "save_reconstructions",
]

GRID_PADDING = 2  # pixels between images, in image pixels
PAD_VALUE = 1.0  # white separators (grid values are on [0, 1])
TITLE_BAND_PX = 32
LABEL_FONT_SIZE = 9
TITLE_FONT_SIZE = 11
TARGET_IMAGE_WIDTH_PX = 800  # default pixel_scale aims the image part near this width


# --------------------------------------------------------------------------- helpers


def _to_unit_images(images: Any, data_range: Sequence[float], what: str = "images") -> torch.Tensor:
    """``(N, C, H, W)`` float tensor on [0, 1]: values clamped to ``data_range`` and rescaled.

    Accepts a torch tensor or numpy array of shape ``(N, C, H, W)`` with C in {1, 3}, or
    ``(N, H, W)`` for grey images.
    """
    low, high = check_data_range(data_range)
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.asarray(images))
    if not isinstance(images, torch.Tensor):
        raise SpikelatentError(
            f"{what} must be a torch tensor or numpy array, got {type(images).__name__}"
        )
    images = images.detach().to("cpu", torch.float32)
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise SpikelatentError(
            f"{what} must have shape (N, C, H, W) with C = 1 or 3 and N >= 1 (or (N, H, W)); "
            f"got {tuple(images.shape)}"
        )
    if not torch.isfinite(images).all():
        raise SpikelatentError(f"{what} contain NaN or infinite values; nothing was plotted")
    return (images.clamp(low, high) - low) / (high - low)


def _grid(unit_images: torch.Tensor, nrow: int) -> np.ndarray:
    """Lay out ``[0, 1]`` images with torchvision's ``make_grid``; ``(height, width, 3)`` array."""
    nrow = int(nrow)
    if nrow < 1:
        raise SpikelatentError(f"nrow must be a positive integer, got {nrow}")
    grid = torchvision.utils.make_grid(
        unit_images, nrow=nrow, padding=GRID_PADDING, pad_value=PAD_VALUE
    )
    if unit_images.shape[0] == 1:  # make_grid returns a lone image unpadded; keep one layout
        grid = torch.nn.functional.pad(grid, [GRID_PADDING] * 4, value=PAD_VALUE)
        if grid.shape[0] == 1:
            grid = grid.expand(3, -1, -1)
    return grid.permute(1, 2, 0).numpy().astype(np.float32, copy=True)


def _blank_like(images: torch.Tensor, count: int) -> torch.Tensor:
    return torch.full((count, *images.shape[1:]), PAD_VALUE, dtype=images.dtype)


def _default_pixel_scale(grid_width: int) -> int:
    return max(1, min(8, TARGET_IMAGE_WIDTH_PX // max(grid_width, 1)))


def _save_grid_figure(
    grid: np.ndarray,
    path: str | os.PathLike,
    title: str | None,
    row_labels: Sequence[tuple[str, float]] = (),
    pixel_scale: int | None = None,
) -> Path:
    """Draw ``grid`` pixel-exactly, with an optional title band and labels at row centres.

    ``row_labels`` holds ``(text, y)`` with y the label's centre in grid pixels from the top.
    """
    grid_height, grid_width = grid.shape[:2]
    scale = _default_pixel_scale(grid_width) if pixel_scale is None else int(pixel_scale)
    if scale < 1:
        raise SpikelatentError(f"pixel_scale must be a positive integer, got {pixel_scale}")
    image_width, image_height = grid_width * scale, grid_height * scale
    longest_label = max((len(text) for text, _ in row_labels), default=0)
    # ~0.62 em per character at LABEL_FONT_SIZE points, plus a margin.
    label_px = (
        math.ceil(longest_label * 0.62 * LABEL_FONT_SIZE * DPI / 72) + 12 if row_labels else 0
    )
    title_px = TITLE_BAND_PX if title else 0
    total_width, total_height = label_px + image_width, title_px + image_height

    figure = Figure(figsize=(total_width / DPI, total_height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes(
        (label_px / total_width, 0.0, image_width / total_width, image_height / total_height)
    )
    axes.imshow(grid, interpolation="nearest", aspect="auto", vmin=0.0, vmax=1.0)
    axes.set_axis_off()
    for text, y_grid in row_labels:
        y_figure = (image_height - y_grid * scale) / total_height
        figure.text(
            (label_px - 6) / total_width,
            y_figure,
            text,
            ha="right",
            va="center",
            fontsize=LABEL_FONT_SIZE,
        )
    if title:
        figure.text(
            0.5,
            1.0 - (title_px / 2) / total_height,
            title,
            ha="center",
            va="center",
            fontsize=TITLE_FONT_SIZE,
        )
    return save_figure(figure, path)


def _row_centre(row: int, image_height: int) -> float:
    """Centre of grid row ``row`` in grid pixels from the top (make_grid layout)."""
    return GRID_PADDING + row * (image_height + GRID_PADDING) + image_height / 2


# --------------------------------------------------------------------------- image grids


def image_grid(
    images: torch.Tensor | np.ndarray,
    nrow: int = 10,
    data_range: Sequence[float] = (0, 1),
) -> np.ndarray:
    """Tile images into one array with ``torchvision.utils.make_grid``.

    Args:
        images: ``(N, C, H, W)`` (C = 1 or 3) or ``(N, H, W)``, values on ``data_range``.
        nrow: images per grid row.
        data_range: ``(low, high)`` of the images; values are clamped to it and mapped to [0, 1].

    Returns:
        ``(rows * (H + 2) + 2, min(N, nrow) * (W + 2) + 2, 3)`` float32 on [0, 1]: image ``k``
        starts at pixel ``(2 + (k // nrow) * (H + 2), 2 + (k % nrow) * (W + 2))``; separators
        and empty cells are white (1.0); grey images are repeated into the three channels.
    """
    return _grid(_to_unit_images(images, data_range), nrow)


def save_image_grid(
    images: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    nrow: int = 10,
    data_range: Sequence[float] = (0, 1),
    title: str | None = None,
    pixel_scale: int | None = None,
) -> Path:
    """Write a grid of images (e.g. samples from the prior) to ``path``; returns the path.

    Without a title the PNG is exactly the grid of :func:`image_grid` upscaled by
    ``pixel_scale`` (default: about 800 pixels wide, at most ×8).
    """
    return _save_grid_figure(image_grid(images, nrow, data_range), path, title, (), pixel_scale)


def save_reconstructions(
    inputs: torch.Tensor | np.ndarray,
    reconstructions: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    data_range: Sequence[float] = (0, 1),
    n: int = 10,
    nrow: int = 10,
    title: str | None = None,
    pixel_scale: int | None = None,
) -> Path:
    """Inputs above their reconstructions: row pairs of up to ``nrow`` images; returns the path.

    The first ``n`` images of each are shown; row labels "input" / "recon.".
    """
    inputs = _to_unit_images(inputs, data_range, "inputs")
    reconstructions = _to_unit_images(reconstructions, data_range, "reconstructions")
    count = min(int(n), inputs.shape[0])
    if count < 1:
        raise SpikelatentError(f"n must be a positive integer, got {n}")
    if reconstructions.shape[0] < count or reconstructions.shape[1:] != inputs.shape[1:]:
        raise SpikelatentError(
            f"reconstructions {tuple(reconstructions.shape)} do not match inputs "
            f"{tuple(inputs.shape)}: need at least {count} images of the same (C, H, W)"
        )
    columns = min(int(nrow), count)
    if columns < 1:
        raise SpikelatentError(f"nrow must be a positive integer, got {nrow}")
    cells, labels = [], []
    for row_pair, start in enumerate(range(0, count, columns)):
        stop = min(start + columns, count)
        missing = columns - (stop - start)
        for offset, (source, label) in enumerate(((inputs, "input"), (reconstructions, "recon."))):
            cells += [source[start:stop], _blank_like(source, missing)]
            labels.append((label, _row_centre(2 * row_pair + offset, inputs.shape[2])))
    grid = _grid(torch.cat(cells), columns)
    return _save_grid_figure(grid, path, title, labels, pixel_scale)


def save_model_comparison(
    rows: Mapping[str, torch.Tensor | np.ndarray],
    inputs: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    data_range: Sequence[float] = (0, 1),
    n: int = 10,
    title: str | None = None,
    pixel_scale: int | None = None,
) -> Path:
    """One row per model of its reconstructions of the same test images; returns the path.

    The first row shows the first ``n`` ``inputs`` (label "input"); each following row is
    labelled with the model's name (the ``rows`` key) and shows its first ``n`` reconstructions.
    """
    if not isinstance(rows, Mapping) or not rows:
        raise SpikelatentError("rows must be a non-empty mapping {model name: reconstructions}")
    inputs = _to_unit_images(inputs, data_range, "inputs")
    count = min(int(n), inputs.shape[0])
    if count < 1:
        raise SpikelatentError(f"n must be a positive integer, got {n}")
    cells, labels = [inputs[:count]], [("input", _row_centre(0, inputs.shape[2]))]
    for index, (name, reconstructions) in enumerate(rows.items(), start=1):
        reconstructions = _to_unit_images(
            reconstructions, data_range, f"reconstructions of {name!r}"
        )
        if reconstructions.shape[0] < count or reconstructions.shape[1:] != inputs.shape[1:]:
            raise SpikelatentError(
                f"reconstructions of {name!r} {tuple(reconstructions.shape)} do not match inputs "
                f"{tuple(inputs.shape)}: need at least {count} images of the same (C, H, W)"
            )
        cells.append(reconstructions[:count])
        labels.append((str(name), _row_centre(index, inputs.shape[2])))
    grid = _grid(torch.cat(cells), count)
    return _save_grid_figure(grid, path, title, labels, pixel_scale)

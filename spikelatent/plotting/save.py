"""One way to make and save a figure: Agg canvas, one dpi, checked suffix, atomic write.

Every figure is drawn on a :class:`matplotlib.figure.Figure` bound to the Agg canvas, so nothing
needs a display and the global pyplot state (and a notebook's backend) is left alone.
:func:`save_figure` writes to a temporary file beside the target and ``os.replace`` s it into
place, so a reader never sees a half-written figure.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spikelatent.errors import SpikelatentError
from spikelatent.io import atomic_path

#: Dots per inch of every figure written (pixel-exact image grids size themselves with it).
DPI = 120


def new_figure(width: float = 6.0, height: float = 4.0, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    """A ``width`` × ``height`` inch figure on the Agg canvas with ``ncols`` axes in one row."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, list(figure.subplots(1, ncols, squeeze=False)[0])


def save_figure(figure: Figure, path: str | os.PathLike) -> Path:
    """Save ``figure`` to ``path`` (format from the suffix: .png, .pdf, .svg, ...) through a
    temporary file and ``os.replace``; return the path. An unsupported or missing suffix is a
    one-line :class:`~spikelatent.errors.SpikelatentError`, before anything is written."""
    path = Path(path)
    file_format = path.suffix.lstrip(".").lower()
    supported = FigureCanvasAgg(figure).get_supported_filetypes()
    if file_format not in supported:
        figure.clear()
        raise SpikelatentError(
            f"cannot write a figure to {str(path)!r}: give it one of the suffixes "
            f"{', '.join('.' + s for s in sorted(supported))}"
        )
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format=file_format, dpi=DPI, facecolor="white")
    finally:
        figure.clear()  # free the artists now (no pyplot registry holds this figure)
    return path

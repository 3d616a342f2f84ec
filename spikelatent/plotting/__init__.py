"""Figures: image grids and reconstructions, training curves, population analyses.

Every figure is drawn on a :class:`matplotlib.figure.Figure` bound to the Agg canvas (no display,
no pyplot state) and written by one helper, :func:`spikelatent.plotting.save.save_figure`: one
dpi (:data:`~spikelatent.plotting.save.DPI`), the format from a checked suffix, through a
temporary file renamed into place. Every writer returns the path it wrote.

* :mod:`spikelatent.plotting.images`: :func:`image_grid`, :func:`save_image_grid`,
  :func:`save_reconstructions`, :func:`save_model_comparison`;
* :mod:`spikelatent.plotting.training`: :func:`save_loss_curves`;
* :mod:`spikelatent.plotting.populations`: :func:`plot_fano_histogram`,
  :func:`plot_mean_variance`, :func:`plot_sparsity`, :func:`plot_shattering`,
  :func:`plot_raster`, :func:`plot_fano_by_window`, :func:`plot_noise_correlations`;
* :mod:`spikelatent.plotting.levels`: :func:`plot_levels` (a hierarchical model's levels).
"""

from spikelatent._lazy import lazy_names
from spikelatent.plotting.levels import plot_levels
from spikelatent.plotting.populations import (
    plot_fano_by_window,
    plot_fano_histogram,
    plot_mean_variance,
    plot_noise_correlations,
    plot_raster,
    plot_shattering,
    plot_sparsity,
)
from spikelatent.plotting.save import DPI, new_figure, save_figure
from spikelatent.plotting.training import save_loss_curves

__all__ = [
    "DPI",
    "image_grid",
    "new_figure",
    "plot_fano_by_window",
    "plot_fano_histogram",
    "plot_levels",
    "plot_mean_variance",
    "plot_noise_correlations",
    "plot_raster",
    "plot_shattering",
    "plot_sparsity",
    "save_figure",
    "save_image_grid",
    "save_loss_curves",
    "save_model_comparison",
    "save_reconstructions",
]

# Image grids need torch and torchvision: imported on first use, so that the figures of a
# recording's analyses (spikelatent analyze FILE.nwb) do not load them.
_IMAGE_NAMES = ("image_grid", "save_image_grid", "save_model_comparison", "save_reconstructions")


__getattr__ = lazy_names(__name__, "spikelatent.plotting.images", _IMAGE_NAMES)

"""The levels of a hierarchical population side by side (``spikelatent analyze``'s ``levels.png``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from spikelatent.errors import SpikelatentError
from spikelatent.plotting.save import new_figure, save_figure

#: (variable of :func:`spikelatent.analysis.levels.level_summary`, axis title) per panel.
LEVEL_PANELS = (
    ("fano_empirical_median", "median Fano factor\n(counts over trials)"),
    ("zero_fraction", "fraction of zero counts"),
    ("lifetime_sparsity", "lifetime sparsity\n(mean over units)"),
    ("kl_per_image", "KL per image (nats)"),
    ("shattering", "shattering dimensionality"),
)


def plot_levels(summary: xr.Dataset, path: str | os.PathLike = "levels.png") -> Path:
    """Bar charts of the per-level numbers, level 0 (coarsest) first.

    ``summary`` is :func:`~spikelatent.analysis.levels.level_summary`'s Dataset along ``level``
    (optionally merged with :func:`~spikelatent.analysis.levels.level_shattering`'s); panels whose
    variable is absent are left out. A dashed line marks the Poisson Fano factor 1.
    """
    if "level" not in summary.dims:
        raise SpikelatentError("plot_levels needs a Dataset along 'level' (level_summary's)")
    panels = [(name, title) for name, title in LEVEL_PANELS if name in summary]
    if not panels:
        raise SpikelatentError("nothing to plot: the summary has none of the per-level numbers")
    levels = summary["level"].values
    figure, axes = new_figure(width=2.6 * len(panels), height=3.0, ncols=len(panels))
    for axis, (name, title) in zip(axes, panels, strict=True):
        values = np.asarray(summary[name].values, dtype=float)
        axis.bar(np.arange(levels.size), values, color="tab:blue")
        if "ci_low" in summary and name == "shattering":
            low, high = summary["ci_low"].values, summary["ci_high"].values
            axis.errorbar(np.arange(levels.size), values, yerr=[values - low, high - values],
                          fmt="none", color="black", capsize=3)
        if name == "fano_empirical_median":
            axis.axhline(1.0, color="black", linestyle="--", linewidth=1)
        axis.set_xticks(np.arange(levels.size), [str(level) for level in levels])
        axis.set_xlabel("level (0 = coarsest)")
        axis.set_title(title, fontsize=9)
    return save_figure(figure, path)

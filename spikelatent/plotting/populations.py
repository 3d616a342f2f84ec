"""Figures of the population analyses: Fano factors, mean–variance, sparsity, shattering,
rasters, Fano factor by counting window, noise correlations.

Every function writes one image to ``path`` (format from the suffix: .png, .pdf, .svg) with
:func:`spikelatent.plotting.save.save_figure` (atomic) and returns the path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spikelatent.analysis import empirical_fano_factor, trials_by_stimulus
from spikelatent.errors import SpikelatentError
from spikelatent.plotting.save import new_figure, save_figure

__all__ = [
    "plot_fano_histogram",
    "plot_mean_variance",
    "plot_sparsity",
    "plot_shattering",
    "plot_raster",
    "plot_fano_by_window",
    "plot_noise_correlations",
]


# The Poisson reference of the Fano-factor plots (F = 1).
_POISSON_FANO_LINE = {"color": "black", "linestyle": "--", "linewidth": 1, "label": "Poisson (F = 1)"}


def _save_labelled(figure: Figure, axis: Axes, path: str | os.PathLike, xlabel: str, ylabel: str) -> Path:
    """Label ``axis``, draw its legend without a frame, and save ``figure`` to ``path``."""
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.legend(frameon=False)
    return save_figure(figure, path)


def _finite_values(values: object, what: str) -> np.ndarray:
    if isinstance(values, xr.Dataset):
        for name in ("fano_factor", what):
            if name in values:
                values = values[name]
                break
        else:
            raise SpikelatentError(f"cannot find {what!r} in the Dataset given for the {what} plot")
    array = np.asarray(
        values.values if isinstance(values, xr.DataArray) else values, dtype=np.float64
    )
    return array[np.isfinite(array)].ravel()


def plot_fano_histogram(
    model_fano: xr.Dataset | xr.DataArray | np.ndarray,
    empirical_fano: xr.Dataset | xr.DataArray | np.ndarray | None = None,
    path: str | os.PathLike = "fano_factor.png",
    bins: int = 50,
) -> Path:
    """Histograms of the model Fano factor (1/p) and the empirical one (trial variance / mean).

    ``model_fano`` is a population Dataset (its ``fano_factor``; when ``empirical_fano`` is None the
    empirical one is computed from its ``counts``) or any array of Fano factors; ``empirical_fano`` is
    the result of :func:`empirical_fano_factor` or an array.
    """
    if empirical_fano is None and isinstance(model_fano, xr.Dataset) and "counts" in model_fano:
        empirical_fano = empirical_fano_factor(model_fano["counts"])
    model = _finite_values(model_fano, "fano_factor")
    series = [("model (1/p)", model)]
    if empirical_fano is not None:
        series.append(("empirical (var/mean)", _finite_values(empirical_fano, "fano_factor")))
    pooled = np.concatenate([values for _, values in series])
    if pooled.size == 0:
        raise SpikelatentError("no finite Fano factors to plot")
    upper = max(float(np.quantile(pooled, 0.995)), 1.05)
    edges = np.linspace(min(float(pooled.min()), 0.9), upper, bins + 1)
    figure, (axis,) = new_figure()
    for label, values in series:
        axis.hist(
            np.clip(values, None, upper),
            bins=edges,
            alpha=0.55,
            label=f"{label}, median {np.median(values):.2f}",
        )
    axis.axvline(1.0, **_POISSON_FANO_LINE)
    return _save_labelled(figure, axis, path, "Fano factor", "(stimulus, unit) cells")


def plot_mean_variance(
    counts: xr.DataArray,
    path: str | os.PathLike = "mean_variance.png",
    over: str = "trial",
    max_points: int = 20_000,
    seed: int = 0,
) -> Path:
    """Log–log scatter of trial variance against trial mean per (stimulus, unit) cell, with var = mean.

    ``counts`` may also be a Dataset that already holds ``mean`` and ``variance`` (e.g. the result
    of :func:`spikelatent.analysis.fano_factor_by_window`: one point per (window, unit)).
    At most ``max_points`` cells (a seeded random subset) are drawn.
    """
    if isinstance(counts, xr.Dataset) and "mean" in counts and "variance" in counts:
        statistics = counts
    else:
        statistics = empirical_fano_factor(counts, over=over)
    mean = statistics["mean"].values.ravel()
    variance = statistics["variance"].values.ravel()
    keep = np.isfinite(mean) & np.isfinite(variance) & (mean > 0) & (variance > 0)
    mean, variance = mean[keep], variance[keep]
    if mean.size == 0:
        raise SpikelatentError("no cells with positive mean and variance to plot")
    if mean.size > max_points:
        chosen = np.random.default_rng(seed).choice(mean.size, max_points, replace=False)
        mean, variance = mean[chosen], variance[chosen]
    figure, (axis,) = new_figure(5, 5)
    axis.scatter(mean, variance, s=4, alpha=0.6 if mean.size < 2000 else 0.25, linewidths=0)
    line = np.array([min(mean.min(), variance.min()), max(mean.max(), variance.max())])
    axis.plot(line, line, color="black", linestyle="--", linewidth=1, label="Poisson: var = mean")
    axis.set_xscale("log")
    axis.set_yscale("log")
    if "pooled_over" in statistics.attrs:  # fano_factor_by_window: one point per window × cell
        axis.set_title("one point per " + " × ".join(statistics["mean"].dims), fontsize="small")
        labels = ("mean count per counting window", "variance per counting window")
    else:
        labels = (f"mean count over {over}", f"variance over {over}")
    return _save_labelled(figure, axis, path, *labels)


def plot_sparsity(
    path: str | os.PathLike,
    lifetime: xr.DataArray | np.ndarray | None = None,
    population: xr.DataArray | np.ndarray | None = None,
    bins: int = 30,
) -> Path:
    """Histograms of lifetime sparsity (per unit) and population sparsity (per stimulus)."""
    panels = [
        (name, values)
        for name, values in (("lifetime", lifetime), ("population", population))
        if values is not None
    ]
    if not panels:
        raise SpikelatentError("plot_sparsity needs lifetime and/or population sparsity values")
    figure, axes = new_figure(4.5 * len(panels), 3.5, ncols=len(panels))
    for axis, (name, values) in zip(axes, panels, strict=True):
        finite = _finite_values(values, f"{name}_sparsity")
        axis.hist(finite, bins=np.linspace(0, 1, bins + 1))
        unit = "units" if name == "lifetime" else "stimuli"
        axis.set_xlabel(f"{name} sparsity")
        axis.set_ylabel(unit)
        if finite.size:
            axis.set_title(f"mean {finite.mean():.3f} ({finite.size} {unit})")
    return save_figure(figure, path)


def plot_shattering(result: xr.Dataset, path: str | os.PathLike = "shattering.png") -> Path:
    """Held-out accuracy of every split (sorted) with the mean and its bootstrap interval."""
    if not isinstance(result, xr.Dataset) or "accuracy" not in result:
        raise SpikelatentError(
            "plot_shattering needs the Dataset returned by shattering_dimensionality"
        )
    accuracy = np.sort(result["accuracy"].values)
    figure, (axis,) = new_figure()
    axis.plot(np.arange(accuracy.size), accuracy, marker=".", linestyle="none", label="split")
    mean = float(result["mean"])
    axis.axhline(mean, color="C3", label=f"mean {mean:.3f}")
    if "ci_low" in result and "ci_high" in result:
        axis.axhspan(float(result["ci_low"]), float(result["ci_high"]), color="C3", alpha=0.2)
    axis.axhline(0.5, color="grey", linestyle=":", label="chance")
    axis.set_ylim(min(0.4, accuracy.min() - 0.02), 1.01)
    return _save_labelled(figure, axis, path, "split (sorted by accuracy)", "held-out accuracy")


def plot_raster(
    counts: xr.DataArray,
    path: str | os.PathLike = "raster.png",
    stimuli: Sequence[int] | None = None,
    units: Sequence[int] | None = None,
    over: str = "trial",
) -> Path:
    """Spike-count heatmaps (trial × unit), one panel per stimulus.

    ``stimuli`` and ``units`` are positions along those dims (default: the first 4 stimuli and the
    first 64 units). Recorded ``(trial, unit)`` counts are grouped by their ``stimulus`` coordinate.
    """
    counts = trials_by_stimulus(counts, over=over, what="plot_raster")
    stimulus_positions = (
        list(range(min(4, counts.sizes["stimulus"]))) if stimuli is None else list(stimuli)
    )
    unit_positions = list(range(min(64, counts.sizes["unit"]))) if units is None else list(units)
    for name, positions in (("stimulus", stimulus_positions), ("unit", unit_positions)):
        if not positions or min(positions) < 0 or max(positions) >= counts.sizes[name]:
            raise SpikelatentError(
                f"{name} positions must lie in 0..{counts.sizes[name] - 1}, got {positions}"
            )
    selection = counts.isel(stimulus=stimulus_positions, unit=unit_positions).transpose(
        "stimulus", over, "unit"
    )
    values = np.asarray(selection.values, dtype=np.float64)
    top = max(float(np.nanmax(values)), 1.0)
    figure, axes = new_figure(3.2 * len(stimulus_positions), 3.2, ncols=len(stimulus_positions))
    stimulus_names = selection["stimulus"].values
    labels = selection.coords["label"].values if "label" in selection.coords else None
    for index, (axis, panel) in enumerate(zip(axes, values, strict=True)):
        image = axis.imshow(
            panel, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=top
        )
        title = f"stimulus {stimulus_names[index]}"
        if labels is not None and selection.coords["label"].dims == ("stimulus",):
            title += f" (label {labels[index]})"
        axis.set_title(title)
        axis.set_xlabel("unit")
        axis.set_ylabel(over)
    figure.colorbar(image, ax=axes, label="spike count")
    return save_figure(figure, path)


def plot_fano_by_window(result: xr.Dataset, path: str | os.PathLike = "fano_by_window.png") -> Path:
    """Fano factor against counting-window length: population mean with its interval, the
    per-unit median and quartiles, and the Poisson line F = 1 (result of ``fano_factor_by_window``)."""
    if not isinstance(result, xr.Dataset) or "population_fano_factor" not in result:
        raise SpikelatentError("plot_fano_by_window needs the Dataset of fano_factor_by_window")
    window = result["window"].values
    fano = result["fano_factor"]
    cells = [d for d in fano.dims if d != "window"]
    if not np.isfinite(result["population_fano_factor"].values).any():
        raise SpikelatentError("no finite Fano factors to plot")
    quartiles = fano.quantile([0.25, 0.5, 0.75], dim=cells, skipna=True).values
    figure, (axis,) = new_figure()
    axis.fill_between(window, quartiles[0], quartiles[2], color="C0", alpha=0.15, label="cells, IQR")
    axis.plot(window, quartiles[1], color="C0", linestyle=":", label="cells, median")
    axis.plot(window, result["population_fano_factor"].values, color="C0", marker="o", label="mean")
    axis.fill_between(
        window,
        result["population_ci_low"].values,
        result["population_ci_high"].values,
        color="C0",
        alpha=0.35,
        label=f"mean, {100 * result.attrs.get('confidence', 0.95):.0f}% CI",
    )
    axis.axhline(1.0, **_POISSON_FANO_LINE)
    axis.set_xscale("log")
    return _save_labelled(figure, axis, path, "counting window (s)", "Fano factor")


def plot_noise_correlations(
    result: xr.Dataset,
    path: str | os.PathLike = "noise_correlations.png",
    bins: int = 40,
    kind: str = "noise",
) -> Path:
    """Histogram of the pairwise noise correlations (pairs i < j) with the shuffle control's
    interval of the mean (result of ``noise_correlations``). ``kind="total"`` labels them as
    spontaneous (total) correlations: counts without stimuli, of which only the mean was removed."""
    if not isinstance(result, xr.Dataset) or "noise_correlation" not in result:
        raise SpikelatentError("plot_noise_correlations needs the Dataset of noise_correlations")
    matrix = result["noise_correlation"].values
    pairs = matrix[np.triu_indices_from(matrix, k=1)]
    pairs = pairs[np.isfinite(pairs)]
    if pairs.size == 0:
        raise SpikelatentError("no finite noise correlations to plot (fewer than 2 active units)")
    figure, (axis,) = new_figure()
    axis.hist(pairs, bins=bins, color="C0", alpha=0.7, label=f"{pairs.size} pairs")
    mean = float(result["mean_noise_correlation"])
    axis.axvline(mean, color="C3", label=f"mean {mean:.3f}")
    if "shuffle_mean_ci_low" in result:
        axis.axvspan(
            float(result["shuffle_mean_ci_low"]),
            float(result["shuffle_mean_ci_high"]),
            color="grey",
            alpha=0.3,
            label="shuffle control, mean CI",
        )
    axis.axvline(0.0, color="black", linestyle="--", linewidth=1)
    if kind == "noise":
        xlabel = "noise correlation (Pearson)"
    else:
        xlabel = "spontaneous (total) correlation (Pearson)"
        axis.set_title("no stimuli: window × unit counts, slow drift included", fontsize="small")
    return _save_labelled(figure, axis, path, xlabel, "unit pairs")

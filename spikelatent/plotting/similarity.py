"""The figure page of a model population held against a recording (:func:`plot_similarity`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import rankdata

from spikelatent.plotting.save import DPI, save_figure

__all__ = ["plot_representations", "plot_similarity"]

_STATISTICS = (
    ("fano_factor", "Fano factor (per cell)"),
    ("mean_variance_slope", "mean–variance slope (per unit)"),
    ("lifetime_sparsity", "lifetime sparsity (per unit)"),
    ("population_sparsity", "population sparsity (per stimulus)"),
    ("noise_correlation", "noise correlation (per pair)"),
)


def _percentile_rdm(rdm: np.ndarray) -> np.ndarray:
    """The RDM as percentiles of its upper triangle (the usual display: comparable colour scales)."""
    upper = np.triu_indices_from(rdm, k=1)
    ranks = rankdata(rdm[upper]) / len(upper[0]) * 100
    out = np.zeros_like(rdm)
    out[upper] = ranks
    return out + out.T


def plot_similarity(result: xr.Dataset, path: str | os.PathLike, title: str = "") -> Path:
    """One page: RDMs side by side, the model-vs-recording RDM scatter, the RSA score against the
    noise-ceiling band, the per-unit predictivity histogram and the population statistics of both.

    ``result`` is a :func:`spikelatent.analysis.compare_populations` Dataset. Panels whose numbers
    are absent (no shared stimuli, no trials) say so instead.
    """
    figure = Figure(figsize=(15, 9), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(2, 5)
    axes_rdm_model, axes_rdm_recorded, axes_scatter, axes_score, axes_predictivity = grid[0]
    metric = result.attrs.get("metric", "")
    if "rdm_model" in result:
        model_rdm, recorded_rdm = result["rdm_model"].values, result["rdm_recorded"].values
        for axes, rdm, name in (
            (axes_rdm_model, model_rdm, "model"),
            (axes_rdm_recorded, recorded_rdm, "recording"),
        ):
            axes.imshow(_percentile_rdm(rdm), cmap="viridis", interpolation="nearest")
            axes.set_title(f"{name} RDM (percentiles)", fontsize="medium")
            axes.set_xticks([])
            axes.set_yticks([])
        upper = np.triu_indices_from(model_rdm, k=1)
        x, y = model_rdm[upper], recorded_rdm[upper]
        if len(x) > 20_000:  # a readable scatter; the score uses every pair
            keep = np.random.default_rng(0).choice(len(x), 20_000, replace=False)
            x, y = x[keep], y[keep]
        axes_scatter.scatter(x, y, s=2, alpha=0.3, color="0.2", rasterized=True)
        axes_scatter.set_xlabel("model dissimilarity")
        axes_scatter.set_ylabel("recorded dissimilarity")
        axes_scatter.set_title(
            f"RDM entries ({result.attrs.get('compare', '')} "
            f"{float(result['rsa_similarity']):.3f})",
            fontsize="medium",
        )
        _score_panel(axes_score, result)
        _predictivity_panel(axes_predictivity, result)
    else:
        for axes in grid[0]:
            axes.axis("off")
        axes_rdm_model.text(
            0, 0.5, "no shared stimuli: statistics only", transform=axes_rdm_model.transAxes
        )
    _statistics_panels(grid[1], result)
    compare = result.attrs.get("compare", "")
    figure.suptitle(
        f"{title + ': ' if title else ''}{result.attrs.get('shared_stimuli', 0)} shared stimuli, "
        f"RDM metric {metric}, compared by {compare}"
    )
    return save_figure(figure, path)


def _score_panel(axes, result: xr.Dataset) -> None:
    value = float(result["rsa_similarity"])
    low, high = float(result["rsa_ci_low"]), float(result["rsa_ci_high"])
    labels, values, errors = ["full data"], [value], [[value - low], [high - value]]
    if "rsa_noise_ceiling_low" in result:
        ceiling = float(result["rsa_noise_ceiling_low"]), float(result["rsa_noise_ceiling_high"])
        axes.axhspan(*ceiling, color="0.85", label="noise ceiling (Nili 2014)")
        labels.append("vs split halves")
        values.append(float(result["rsa_similarity_split"]))
        errors[0].append(0.0)
        errors[1].append(0.0)
        axes.legend(loc="lower right", fontsize="small")
    finite = np.isfinite(errors).all()
    axes.errorbar(
        range(len(values)),
        values,
        yerr=np.asarray(errors) if finite else None,
        fmt="o",
        color="C0",
        capsize=4,
    )
    axes.set_xticks(range(len(values)), labels)
    axes.set_xlim(-0.5, len(values) - 0.5)
    axes.set_ylim(min(0.0, min(values) - 0.05), 1.0)
    axes.set_ylabel(f"RDM {result.attrs.get('compare', '')} correlation")
    axes.set_title("RSA score, bootstrap interval", fontsize="medium")


def _predictivity_panel(axes, result: xr.Dataset) -> None:
    name = (
        "predictivity_r2_corrected" if "predictivity_r2_corrected" in result else "predictivity_r2"
    )
    values = result[name].values
    values = values[np.isfinite(values)]
    axes.hist(np.clip(values, -0.5, 1.5), bins=30, color="C1", alpha=0.8)
    median = float(np.median(values)) if values.size else float("nan")
    axes.axvline(median, color="k", linestyle="--", label=f"median {median:.2f}")
    axes.set_xlabel("noise-corrected R²" if name.endswith("corrected") else "cross-validated R²")
    axes.set_ylabel("recorded units")
    axes.set_title("linear predictivity per unit", fontsize="medium")
    axes.legend(fontsize="small")


def _statistics_panels(axes_row, result: xr.Dataset) -> None:
    populations = list(result["population"].values) if "population" in result.coords else []
    for axes, (key, label) in zip(axes_row, _STATISTICS, strict=True):
        name = f"stat_{key}"
        if name not in result:
            axes.axis("off")
            continue
        for position, population in enumerate(populations):
            quantiles = result[name].sel(population=population).values
            if not np.isfinite(quantiles).any():
                axes.text(position, 0.5, "n/a", ha="center", transform=axes.get_xaxis_transform())
                continue
            q05, q25, q50, q75, q95 = quantiles
            axes.vlines(position, q05, q95, color=f"C{position}")
            axes.vlines(position, q25, q75, color=f"C{position}", linewidth=8, alpha=0.6)
            axes.plot(position, q50, "o", color="k")
        axes.set_xticks(range(len(populations)), populations)
        axes.set_xlim(-0.6, len(populations) - 0.4)
        axes.set_title(label, fontsize="medium")
    if populations:
        axes_row[0].set_ylabel("5–25–50–75–95 % quantiles")


def _interval_keys(key: str) -> tuple[str, str]:
    if key == "rsa_similarity":
        return "rsa_ci_low", "rsa_ci_high"
    return f"{key}_ci_low", f"{key}_ci_high"


def _interval_points(axes, positions, table, names, key, color, marker="o", label=None):
    values = np.array([float(table[key].sel(representation=n)) for n in names])
    low_key, high_key = _interval_keys(key)
    if low_key in table and high_key in table:
        low = np.array([float(table[low_key].sel(representation=n)) for n in names])
        high = np.array([float(table[high_key].sel(representation=n)) for n in names])
        errors = np.vstack([values - low, high - values])
        if not np.isfinite(errors).all():
            errors = None
    else:
        errors = None
    axes.errorbar(
        positions, values, yerr=errors, fmt=marker + "-", color=color, capsize=3, label=label
    )


def plot_representations(
    table: xr.Dataset,
    path: str | os.PathLike,
    by_run: dict[str, list[str]] | None = None,
    title: str = "",
) -> Path:
    """Scores of every representation against one recording, with baselines and the null.

    ``table`` is a :func:`spikelatent.analysis.compare_representations` Dataset; ``by_run``
    groups the model representations of each run in depth order (drawn as a line: score against
    depth). Baselines are horizontal lines with their interval as a band, the shuffled null a grey
    line. Left: RSA (full data) with its bootstrap interval; right: the noise-corrected
    predictivity r²_ER (Pospisil & Bair 2021; 1 = the explainable variance) with its interval over
    units.
    """
    figure = Figure(figsize=(12, 4.5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(1, 2)
    names = [str(n) for n in table["representation"].values]
    kinds = dict(zip(names, (str(k) for k in table["kind"].values), strict=True))
    by_run = by_run or {"model": [n for n in names if kinds[n] not in ("baseline", "null")]}
    metrics = (
        ("rsa_similarity", f"RSA ({table.attrs.get('compare', '')}, full data)"),
        ("predictivity_median_r2_er", f"r²_ER ({table.attrs.get('readout', '')} readout)"),
    )
    depth = max((len(v) for v in by_run.values()), default=1)
    for axes, (key, label) in zip(panels, metrics, strict=True):
        if key not in table:
            axes.text(0.5, 0.5, f"{label}: n/a", ha="center", transform=axes.transAxes)
            axes.axis("off")
            continue
        for index, (run, keys) in enumerate(by_run.items()):
            keys = [k for k in keys if k in names]
            if keys:
                _interval_points(axes, range(len(keys)), table, keys, key, f"C{index}", label=run)
        for index, name in enumerate(n for n in names if kinds[n] == "baseline"):
            value = float(table[key].sel(representation=name))
            color = f"C{len(by_run) + index}"
            axes.axhline(value, color=color, linestyle="--", label=name)
            low, high = _interval_keys(key)
            if low in table and np.isfinite(float(table[low].sel(representation=name))):
                axes.axhspan(
                    float(table[low].sel(representation=name)),
                    float(table[high].sel(representation=name)),
                    color=color,
                    alpha=0.12,
                )
        for name in (n for n in names if kinds[n] == "null"):
            axes.axhline(
                float(table[key].sel(representation=name)), color="0.5", label="shuffled stimuli"
            )
        if key.startswith("predictivity"):
            axes.axhline(1.0, color="k", linewidth=0.8)
        axes.axhline(0.0, color="k", linewidth=0.5)
        axes.set_xticks(range(depth), [f"depth {i}" for i in range(depth)])
        axes.set_xlabel("representation depth (order given by the run)")
        axes.set_xlim(-0.5, depth - 0.5)
        axes.set_ylabel(label)
        axes.legend(fontsize="small")
    if by_run:
        labels = "; ".join(
            f"{run}: " + ", ".join(k.split("/", 1)[-1] for k in keys)
            for run, keys in by_run.items()
        )
    else:
        labels = ""
    figure.suptitle(
        (title or "representations, baselines and the shuffled null vs the recording")
        + (f"\n{labels}" if labels else ""),
        fontsize="medium",
    )
    return save_figure(figure, path)

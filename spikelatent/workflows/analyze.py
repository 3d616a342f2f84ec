"""``analyze_run``: a trained run's latent population and its analyses, written into the run.

For a Poisson or NegBio model the first ``n_stimuli`` images of a data split are turned into a
simulated population (:func:`spikelatent.populations.population`), saved as ``population.nc``, and
analysed as one would analyse recorded neurons: empirical vs model Fano factor, the Poisson
dispersion test, the NB-vs-Poisson likelihood-ratio test, the mean–variance relation, sparsity and
active units. For every model (count or not) the shattering dimensionality of the read-out features
is measured (fitted on training images, scored on the chosen split). The summary numbers go to
``analysis.json``; figures to ``fano_histogram.png``, ``mean_variance.png``, ``sparsity.png``,
``shattering.png`` and ``raster.png``. The counting-window analyses (:func:`counting_summary`: Fano
factor by window, mean-matched Fano factor, noise and signal correlations, participation ratio)
run on the population's spike times binned in its 1 s window (``fano_by_window.png``,
``noise_correlations.png``).

A recording (an NWB file's units) goes through :func:`analyze_recording`: the same counting-window
analyses and figures on :func:`spikelatent.nwb.read_counts` with ``bin_size``.

Models with non-count latents (gaussian, laplace, categorical) have no spike counts: their
``analysis.json`` holds the shattering result, ``"population": null`` and a note saying that the
population analyses need a poisson or negbio model. This keeps ``analyze`` usable on all eight models
of the paper (shattering is one of its comparisons) instead of failing on five of them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from spikelatent._io import atomic_path, write_json_atomic
from spikelatent.errors import SpikelatentError

SPLITS = ("train", "val", "test")
FIGURES = (
    "fano_histogram.png",
    "mean_variance.png",
    "sparsity.png",
    "shattering.png",
    "raster.png",
    "fano_by_window.png",
    "noise_correlations.png",
)
ALPHA = 0.05  # significance level of the dispersion test and the LRT (Benjamini–Hochberg)


# --------------------------------------------------------------------------- small helpers


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise SpikelatentError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _number(value: Any) -> float | None:
    """A JSON-safe float: NaN and infinities become None (JSON has no NaN)."""
    number = float(value)
    return number if math.isfinite(number) else None


def write_population(dataset: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a population Dataset to netCDF-4 (h5netcdf) through a temporary file and a rename.

    ``counts`` is stored gzip-compressed (level 1): spike counts are small integers and shrink
    several-fold, at a modest cost in writing time.
    """
    encoding = {}
    if "counts" in dataset:
        encoding["counts"] = {"zlib": True, "complevel": 1}
    with atomic_path(path) as temporary:
        dataset.to_netcdf(temporary, engine="h5netcdf", encoding=encoding)
    return Path(path)


def split_head(
    datamodule: Any, split: str, n: int, skip: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(n, C, H, W)`` and labels ``(n,)`` at positions ``skip .. skip + n`` of ``split``
    (fewer if the split is shorter). Decodes only those images for datasets read from disk."""
    from spikelatent.data import ImageTensorDataset

    dataset = datamodule.dataset(split)
    stop = min(skip + n, len(dataset))
    if isinstance(dataset, ImageTensorDataset):
        return dataset.images[skip:stop], dataset.labels[skip:stop]
    from spikelatent.data.base import BatchCollate

    subset = torch.utils.data.Subset(dataset, range(skip, max(skip, stop)))
    loader = torch.utils.data.DataLoader(
        subset, batch_size=256, num_workers=datamodule.num_workers, collate_fn=BatchCollate()
    )
    batches = list(tqdm(loader, desc=f"{datamodule.name} {split}", disable=None, leave=False))
    if not batches:
        return torch.empty((0, *datamodule.image_shape)), torch.empty((0,), dtype=torch.int64)
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


@torch.no_grad()
def model_features(
    model: Any,
    images: torch.Tensor,
    batch_size: int = 500,
    progress: bool | None = None,
    desc: str = "features",
) -> np.ndarray:
    """Read-out features ``model.features(x)`` of ``images``, as float64 ``(sample, feature)``."""
    device = next(model.parameters()).device
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


# --------------------------------------------------------------------------- analyses


def population_summary(pop: xr.Dataset) -> dict[str, Any]:
    """Summary numbers of a population's counts: Fano factors, tests, mean–variance, sparsity.

    ``pop`` holds ``counts (trial, stimulus, unit)`` with at least 2 trials and the model's
    ``fano_factor (stimulus, unit)``. Returns nested plain-Python dicts (NaN → None) and, under the
    private key ``"_results"``, the xarray results the figures are drawn from.
    """
    from spikelatent import analysis

    counts = pop["counts"]
    empirical = analysis.empirical_fano_factor(counts, over="trial")
    model_fano = analysis.model_fano_summary(pop)
    defined = np.isfinite(empirical["fano_factor"].values)
    ratio = empirical["fano_factor"].values[defined] / pop["fano_factor"].values[defined]
    dispersion_test = analysis.overdispersion_test(counts, alpha=ALPHA)
    lrt = analysis.nb_vs_poisson_lrt(counts, alpha=ALPHA)
    mean_variance = analysis.mean_variance_relation(counts, over="trial", across="stimulus")
    # All cells pooled: one slope / sigma_G^2 for the population (a reshaped view, no copy).
    cells = xr.DataArray(
        counts.transpose("trial", "stimulus", "unit").values.reshape(counts.sizes["trial"], -1),
        dims=("trial", "cell"),
    )
    pooled = analysis.mean_variance_relation(cells, over="trial", across="cell")
    lifetime = analysis.lifetime_sparsity(counts)
    population_sparsity = analysis.population_sparsity(counts)
    active = analysis.active_units(counts)
    finite_r = lrt["dispersion"].values[np.isfinite(lrt["dispersion"].values)]
    quantiles = model_fano["overall_quantiles"]
    summary = {
        "fano_factor": {
            "model_mean": _number(model_fano["overall_mean"]),
            "model_median": _number(model_fano["overall_median"]),
            "model_quantiles": {
                f"{float(q):g}": _number(v)
                for q, v in zip(quantiles["quantile"].values, quantiles.values, strict=True)
            },
            "prior_mean": _number(pop["prior_fano_factor"].mean())
            if "prior_fano_factor" in pop
            else None,
            "empirical_mean": _number(np.nanmean(empirical["fano_factor"].values))
            if defined.any()
            else None,
            "empirical_median": _number(np.nanmedian(empirical["fano_factor"].values))
            if defined.any()
            else None,
            "empirical_over_model_median": _number(np.median(ratio)) if ratio.size else None,
            "n_cells_defined": int(defined.sum()),
            "n_cells": int(defined.size),
            "note": "empirical = trial variance (ddof 1) / trial mean per (stimulus, unit) cell; "
            "undefined for cells that never fired",
        },
        "overdispersion_test": {
            "fraction_overdispersed": _number(dispersion_test["overall_fraction_significant"]),
            "unit_fraction_median": _number(
                dispersion_test["fraction_significant"].median(skipna=True)
            ),
            "n_tested": int(dispersion_test.attrs["n_tested"]),
            "alpha": ALPHA,
            "correction": "bh",
        },
        "nb_vs_poisson_lrt": {
            "fraction_significant": _number(lrt["overall_fraction_significant"]),
            "n_tested": int(lrt.attrs["n_tested"]),
            "dispersion_median": _number(np.median(finite_r)) if finite_r.size else None,
            "fraction_at_poisson_boundary": _number(
                np.isinf(lrt["dispersion"].values).sum() / max(1, int(lrt.attrs["n_tested"]))
            ),
            "alpha": ALPHA,
            "correction": "bh",
        },
        "mean_variance": {
            "slope_pooled": _number(pooled["slope"]),
            "gain_variance_pooled": _number(pooled["gain_variance"]),
            "slope_unit_median": _number(mean_variance["slope"].median(skipna=True)),
            "gain_variance_unit_median": _number(
                mean_variance["gain_variance"].median(skipna=True)
            ),
            "n_units_fitted": int(np.isfinite(mean_variance["slope"].values).sum()),
        },
        "sparsity": {
            "fraction_zero": _number(analysis.fraction_zero(counts).mean()),
            "lifetime_sparsity_mean": _number(lifetime.mean(skipna=True)),
            "population_sparsity_mean": _number(population_sparsity.mean(skipna=True)),
            "n_active": int(active["n_active"]),
            "n_dead": int(active["n_dead"]),
            "n_constant": int(active["n_constant"]),
            "fraction_active": _number(active["fraction_active"]),
        },
        "_results": {
            "empirical": empirical,
            "lifetime": lifetime,
            "population": population_sparsity,
        },
    }
    return summary


#: A unit whose posterior differs from the prior by less than this (mean KL, nats per image)
#: carries no information about the image, however often it fires.
INFORMATIVE_KL_NATS = 0.01


def information_summary(model: Any, images: torch.Tensor, batch_size: int = 500) -> dict[str, Any]:
    """How much the latent code says about the images: the KL term of the ELBO.

    ``images`` (stimulus, C, H, W). The KL per image is KL(q(z|x) || p(z)) summed over units
    (nats; the count families' closed form or, for ``--kl mc``, an MC estimate from hard
    samples); a unit is *informative* when its KL averaged over the images exceeds
    ``INFORMATIVE_KL_NATS`` (a unit at its prior for every image is dead in the VAE sense even
    when it fires). Returns plain numbers: ``kl_per_image_mean``/``_median``,
    ``n_informative``, ``fraction_informative`` and ``n_units``.
    """
    per_unit = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            posterior = model.posterior(images[start:start + batch_size])
            per_unit.append(model.latent.kl_per_unit(posterior, 0.0).flatten(1).double())
    kl = torch.cat(per_unit)
    per_image = kl.sum(-1)
    unit_mean = kl.mean(0)
    informative = int((unit_mean > INFORMATIVE_KL_NATS).sum())
    return {
        "kl_per_image_mean": _number(per_image.mean()),
        "kl_per_image_median": _number(per_image.median()),
        "n_informative": informative,
        "fraction_informative": informative / unit_mean.numel(),
        "n_units": int(unit_mean.numel()),
        "informative_threshold_nats": INFORMATIVE_KL_NATS,
    }


# Counting-window analyses of model populations use at most this many stimuli: the binned counts
# (trial, stimulus, time, unit) grow with every factor, and 100 stimuli give ample cells.
COUNTING_STIMULI = 100
COUNTING_BIN = 0.05  # seconds of the model's 1 s unit window
N_SHUFFLES = 50


def default_windows(bin_size: float, binned_length: float, session: bool) -> list[float]:
    """Counting windows: 1, 2, 5, 10, ... bins, up to the binned length (a third of it for a
    session, so each window length has at least 3 samples)."""
    limit = binned_length / 3 if session else binned_length
    windows = []
    for decade in range(12):
        for factor in (1, 2, 5):
            n_bins = factor * 10**decade
            if n_bins * bin_size <= limit * (1 + 1e-9):
                windows.append(round(n_bins * bin_size, 12))
    return windows or [bin_size]


def _pooled_slope(mean: np.ndarray, variance: np.ndarray) -> float | None:
    keep = np.isfinite(mean) & np.isfinite(variance) & (mean > 0) & (variance > 0)
    if keep.sum() < 2 or np.ptp(np.log(mean[keep])) == 0:
        return None
    return _number(np.polyfit(np.log(mean[keep]), np.log(variance[keep]), 1)[0])


def counting_summary(
    binned: xr.DataArray,
    *,
    windows: list[float] | None = None,
    seed: int = 0,
    n_shuffles: int = N_SHUFFLES,
) -> dict[str, Any]:
    """Counting-window analyses of binned counts ``(…, time, unit)``, for recordings and runs alike.

    Fano factor by window, the mean-matched Fano factor across time bins (trials needed), noise
    and signal correlations of the counts per trial (per window of about 1 s for a session),
    participation ratios and the pooled mean–variance slope. Returns plain-Python numbers and,
    under ``"_results"``, the xarray results the figures are drawn from.
    """
    from spikelatent import analysis
    from spikelatent.analysis.counting_windows import _window_sums

    bin_size = float(binned.attrs["bin_size"])
    session = "trial" not in binned.dims
    length = binned.sizes["time"] * bin_size
    windows = windows or default_windows(bin_size, length, session)
    fano = analysis.fano_factor_by_window(binned, windows)
    cells = [d for d in fano["fano_factor"].dims if d != "window"]
    summary: dict[str, Any] = {
        "bin_size": bin_size,
        "fano_by_window": {
            "window": [float(w) for w in fano["window"].values],
            "population_mean": [_number(v) for v in fano["population_fano_factor"].values],
            "ci_low": [_number(v) for v in fano["population_ci_low"].values],
            "ci_high": [_number(v) for v in fano["population_ci_high"].values],
            "cell_median": [
                _number(v) for v in fano["fano_factor"].median(cells, skipna=True).values
            ],
            "n_cells": [int(v) for v in fano["n_cells"].values],
            "pooled_over": list(fano.attrs["pooled_over"]),
        },
        "mean_variance_by_window": {
            "slope_pooled": _pooled_slope(
                fano["mean"].values.ravel(), fano["variance"].values.ravel()
            ),
            "note": "log-log slope of variance on mean over every (window, cell) point",
        },
    }
    if session:
        n_bins = max(1, min(int(round(1.0 / bin_size)), binned.sizes["time"] // 20))
        per_trial = _window_sums(binned, n_bins).rename(time="trial")
        summary["correlation_window"] = n_bins * bin_size
        summary["mean_matched_fano"] = {"skipped": "needs trials (an intervals table)"}
    else:
        per_trial = binned.sum("time")
        summary["correlation_window"] = length
        n_bins = max(1, binned.sizes["time"] // 5)
        try:
            matched = analysis.mean_matched_fano_factor(
                _window_sums(binned, n_bins), across="time", seed=seed
            )
            summary["mean_matched_fano"] = {
                "window": n_bins * bin_size,
                "fano_factor": [_number(v) for v in matched["fano_factor"].values],
                "ci_low": [_number(v) for v in matched["ci_low"].values],
                "ci_high": [_number(v) for v in matched["ci_high"].values],
                "raw_fano_factor": [_number(v) for v in matched["raw_fano_factor"].values],
                "n_matched": int(matched["n_matched"]),
                "across": "consecutive windows of the trial",
            }
        except SpikelatentError as error:
            summary["mean_matched_fano"] = {"skipped": str(error)}
    noise = analysis.noise_correlations(per_trial, n_shuffles=n_shuffles, seed=seed)
    n_pairs = int(np.isfinite(noise["noise_correlation"].values[np.triu_indices(per_trial.sizes["unit"], 1)]).sum())
    summary["noise_correlation"] = {
        "mean": _number(noise["mean_noise_correlation"]),
        "shuffle_mean_ci": [
            _number(noise["shuffle_mean_ci_low"]),
            _number(noise["shuffle_mean_ci_high"]),
        ],
        "n_pairs": n_pairs,
        "n_samples": int(noise["n_samples"]),
        "n_shuffles": n_shuffles,
    }
    try:
        signal = analysis.signal_correlations(per_trial)
        summary["signal_correlation"] = {"mean": _number(signal["mean_signal_correlation"])}
    except SpikelatentError as error:
        summary["signal_correlation"] = {"skipped": str(error)}
    dimensionality = {}
    for kind in ("total", "noise"):
        ratio = analysis.participation_ratio(per_trial, kind=kind, n_boot=50, seed=seed)
        dimensionality[f"participation_ratio_{kind}"] = _number(ratio["participation_ratio"])
        dimensionality[f"participation_ratio_{kind}_ci"] = [
            _number(ratio["ci_low"]),
            _number(ratio["ci_high"]),
        ]
    dimensionality["n_units"] = int(per_trial.sizes["unit"])
    summary["dimensionality"] = dimensionality
    summary["_results"] = {"fano_by_window": fano, "noise": noise}
    return summary


def _draw_counting_figures(summary: dict[str, Any], draw: Any) -> None:
    from spikelatent.analysis import figures

    results = summary["_results"]
    draw("fano_by_window.png", figures.plot_fano_by_window, results["fano_by_window"])
    draw("noise_correlations.png", figures.plot_noise_correlations, results["noise"])


def analyze_recording(
    path: str | os.PathLike,
    *,
    bin_size: float = 0.01,
    intervals: str | None = None,
    out: str | os.PathLike | None = None,
    windows: list[float] | None = None,
    seed: int = 0,
    n_shuffles: int = N_SHUFFLES,
) -> dict[str, Any]:
    """Analyse the units of an NWB file as a run's population is analysed; write the results.

    Args:
        path: NWB file with a ``Units`` table.
        bin_size: bin width in seconds.
        intervals: intervals table (``"trials"``, ``"epochs"``, a name, or ``"session"``); default
            trials if present, else the whole session (:func:`spikelatent.nwb.read_counts`).
        out: output folder (default: ``FILE.analysis/`` beside the file).
        windows: counting windows in seconds (default 1, 2, 5, 10, ... bins).
        seed: seed of the shuffles, the mean matching and the bootstrap.
        n_shuffles: shuffles of the noise-correlation control.

    Returns:
        The content of ``analysis.json``: the source, the intervals used, ``recording`` (the
        counting-window analyses, :func:`counting_summary`) and ``files``. Writes ``analysis.json``,
        ``fano_by_window.png``, ``mean_variance.png`` and ``noise_correlations.png`` atomically.
    """
    import spikelatent
    from spikelatent.analysis import figures
    from spikelatent.nwb import read_counts

    source = Path(path)
    binned = read_counts(source, intervals=intervals, bin_size=bin_size)
    out_dir = Path(out) if out is not None else source.with_name(source.name + ".analysis")
    if out_dir.exists() and not out_dir.is_dir():
        raise SpikelatentError(f"--out {out_dir} is a file; give a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = counting_summary(binned, windows=windows, seed=seed, n_shuffles=n_shuffles)
    results = summary.pop("_results")
    files: list[str] = []
    figures_skipped: dict[str, str] = {}

    def draw(name: str, plot: Any, *args: Any, **kwargs: Any) -> None:
        try:
            plot(*args, path=out_dir / name, **kwargs)
            files.append(name)
        except SpikelatentError as error:
            figures_skipped[name] = str(error)

    _draw_counting_figures({"_results": results}, draw)
    draw("mean_variance.png", figures.plot_mean_variance, results["fano_by_window"])
    report = {
        "source": str(source),
        "intervals": binned.attrs["intervals"],
        "intervals_note": binned.attrs["intervals_note"],
        "bin_size": float(bin_size),
        "n_units": int(binned.sizes["unit"]),
        "n_trials": int(binned.sizes.get("trial", 0)),
        "n_bins": int(binned.sizes["time"]),
        "n_spikes_binned": int(binned.attrs["n_spikes_binned"]),
        "spikelatent_version": spikelatent.__version__,
        "recording": summary,
        "figures_skipped": figures_skipped,
        "files": [*files, "analysis.json"],
        "out_dir": str(out_dir),
    }
    write_json_atomic(out_dir / "analysis.json", report)
    return report


def trained_model_summary(
    run_dir: str | os.PathLike, test_images: int = 5000, data_dir: str | os.PathLike | None = None
) -> dict[str, float]:
    """What a trained count model does, in the numbers of the training ablation and benchmarks.

    The run's last weights on the first ``test_images`` test images: per-pixel MSE of hard-count
    (``mse_hard``) and posterior-mean (``mse_mean``) reconstructions, SSIM of the hard counts,
    KL per image (nats) and informative units (:func:`information_summary`); the population of the
    first 1000 of them (20 trials, seed 0): fraction of zero counts, fraction of units that fire
    and vary, median model Fano factor, median prior r; ``steps`` and ``collapse_warning`` (1 if
    the collapse guard fired at any validation) from ``metrics.csv``.
    """
    import csv

    import spikelatent
    from spikelatent import analysis
    from spikelatent.data import datamodule_from_config
    from spikelatent.metrics.reconstruction import reconstruction_metrics
    from spikelatent.workflows.evaluate import _reconstruct

    run_dir = Path(run_dir)
    model = spikelatent.load(run_dir, which="last")
    datamodule = datamodule_from_config(dict(model.config), data_dir)
    images, labels = datamodule.split_tensors("test")
    images, labels = images[:test_images], labels[:test_images]
    hard = reconstruction_metrics(images, _reconstruct(model, images, "sample", 500, 0),
                                  datamodule.data_range)
    mean = reconstruction_metrics(images, _reconstruct(model, images, "mean", 500, 0),
                                  datamodule.data_range)
    information = information_summary(model, images)
    pop = spikelatent.population(model, images[:1000], labels=labels[:1000], n_trials=20,
                                 seed=0, progress=False)
    counts = pop["counts"]
    with (run_dir / "metrics.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    return {
        "steps": int(rows[-1]["step"]) if rows else 0,
        "mse_hard": hard["mse"],
        "mse_mean": mean["mse"],
        "ssim_hard": hard["ssim"],
        "kl_per_image": information["kl_per_image_mean"],
        "fraction_informative": information["fraction_informative"],
        "fraction_zero": float((counts == 0).mean()),
        "fraction_firing": float(analysis.active_units(counts)["fraction_active"]),
        "fano_median": float(pop["fano_factor"].median()),
        "prior_r_median": float(pop["prior_dispersion"].median()),
        "collapse_warning": max((int(row["collapse_warning"] or 0) for row in rows), default=0),
    }


def shattering_summary(
    model: Any,
    fit_images: torch.Tensor,
    fit_labels: torch.Tensor,
    held_out_images: torch.Tensor,
    held_out_labels: torch.Tensor,
    seed: int = 0,
    n_jobs: int = -1,
    progress: bool | None = None,
) -> tuple[dict[str, Any], xr.Dataset | None]:
    """Shattering dimensionality of ``model.features``; skipped (with the reason) when the classes
    do not allow balanced dichotomies (odd count, fewer than 2, or held-out classes unseen in fit)."""
    from spikelatent.analysis import shattering_dimensionality

    fit_classes = np.unique(fit_labels.numpy())
    unseen = np.setdiff1d(np.unique(held_out_labels.numpy()), fit_classes)
    reason = None
    if fit_classes.size < 2 or fit_classes.size % 2:
        reason = f"needs an even number (>= 2) of classes in the fitting images; found {fit_classes.size}"
    elif unseen.size:
        reason = f"held-out labels {unseen.tolist()[:5]} do not occur in the fitting images"
    if reason:
        return {"skipped": reason}, None
    fit_x = model_features(model, fit_images, progress=progress, desc="features (fit)")
    held_x = model_features(model, held_out_images, progress=progress, desc="features (held-out)")
    result = shattering_dimensionality(
        fit_x, fit_labels.numpy(), held_x, held_out_labels.numpy(), n_jobs=n_jobs, seed=seed
    )
    return {
        "mean": _number(result["mean"]),
        "ci_low": _number(result["ci_low"]),
        "ci_high": _number(result["ci_high"]),
        "n_splits": int(result.attrs["n_splits"]),
        "n_classes": int(result.attrs["n_classes"]),
        "n_fit": int(result.attrs["n_train"]),
        "n_held_out": int(result.attrs["n_test"]),
        "n_features": int(result.attrs["n_features"]),
        "all_converged": bool(result.attrs["all_converged"]),
    }, result


# --------------------------------------------------------------------------- the run


def analyze_run(
    run_dir: str | os.PathLike,
    *,
    split: str = "test",
    n_stimuli: int = 1000,
    n_trials: int = 50,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool | None = None,
    shattering_images: int = 5000,
    n_jobs: int = -1,
) -> dict[str, Any]:
    """Build and analyse the latent population of a trained run; write the results into the run.

    Args:
        run_dir: run directory written by ``spikelatent fit``.
        split: data split whose first ``n_stimuli`` images are the stimuli (``train``, ``val``,
            ``test``); it is also the held-out set of the shattering read-outs.
        n_stimuli: stimuli at most (fewer if the split is shorter).
        n_trials: spike-count samples per stimulus and unit (at least 2: trial variances).
        data_dir: folder holding the dataset files (default: the run's ``data_dir``, then the usual
            places).
        seed: seed of the count sampling and of the shattering bootstrap.
        progress: progress bars (``None``: only on a terminal).
        shattering_images: training images (the first ones of the train split) the shattering
            read-outs are fitted on. With ``split="train"`` they follow the stimuli, so the two
            sets do not overlap.
        n_jobs: joblib workers for the shattering fits (-1: all cores).

    Returns:
        The content of ``analysis.json``: run and population description, ``population`` (a dict of
        ``fano_factor``, ``overdispersion_test``, ``nb_vs_poisson_lrt``, ``mean_variance``,
        ``sparsity``; None for non-count models, with ``population_note`` saying why),
        ``shattering`` and ``files`` (what was written, relative to ``run_dir``).

    Writes ``population.nc`` (count models), ``analysis.json`` and the figures, each atomically.
    """
    import spikelatent
    from spikelatent.analysis import figures

    if split not in SPLITS:
        raise SpikelatentError(f"--split must be one of {', '.join(SPLITS)}; got {split!r}")
    n_stimuli = _check_int("--n-stimuli", n_stimuli, 1)
    n_trials = _check_int("--trials", n_trials, 2)
    seed = _check_int("--seed", seed, 0)
    shattering_images = _check_int("shattering_images", shattering_images, 2)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SpikelatentError(
            f"run directory {run_dir} does not exist; train one with `spikelatent fit --out {run_dir}`"
        )

    from spikelatent.data import datamodule_from_config

    model = spikelatent.load(run_dir)
    config = dict(model.config)
    datamodule = datamodule_from_config(config, data_dir)
    images, labels = split_head(datamodule, split, n_stimuli)
    if images.shape[0] == 0:
        raise SpikelatentError(
            f"the {split} split of {config['data']} is empty for this run; choose another --split"
        )
    skip = images.shape[0] if split == "train" else 0
    fit_images, fit_labels = split_head(datamodule, "train", shattering_images, skip=skip)

    report: dict[str, Any] = {
        "run_dir": str(run_dir),
        "model": model.latent.name,
        "variant": model.variant,
        "dataset": str(config["data"]),
        "checkpoint": str(getattr(model, "checkpoint_path", "")),
        "split": split,
        "n_stimuli": int(images.shape[0]),
        "n_stimuli_requested": n_stimuli,
        "n_trials": n_trials,
        "n_units": int(model.latent.latent_dim),
        "seed": seed,
        "spikelatent_version": spikelatent.__version__,
    }
    report["information"] = information_summary(model, images)
    files: list[str] = []
    figures_skipped: dict[str, str] = {}

    def draw(name: str, plot: Any, *args: Any, **kwargs: Any) -> None:
        # A degenerate population (e.g. no unit ever fires) has nothing to plot; say so in the
        # report rather than failing the whole analysis.
        try:
            plot(*args, path=run_dir / name, **kwargs)
            files.append(name)
        except SpikelatentError as error:
            figures_skipped[name] = str(error)

    if model.latent.is_count:
        from spikelatent.populations import population

        pop = population(
            model, images, labels=labels, n_trials=n_trials, seed=seed, progress=progress
        )
        write_population(pop, run_dir / "population.nc")
        files.append("population.nc")
        steps = tqdm(
            total=3, desc="population analyses", disable=None if progress is None else not progress
        )
        summary = population_summary(pop)
        steps.update(1)
        results = summary.pop("_results")
        report["population"] = summary
        report["population_note"] = None
        draw(
            "fano_histogram.png",
            figures.plot_fano_histogram,
            pop["fano_factor"],
            results["empirical"],
        )
        draw("mean_variance.png", figures.plot_mean_variance, pop["counts"])
        draw(
            "sparsity.png",
            figures.plot_sparsity,
            lifetime=results["lifetime"],
            population=results["population"],
        )
        draw("raster.png", figures.plot_raster, pop["counts"])
        from spikelatent.populations import binned_counts

        subset = pop.isel(stimulus=slice(0, COUNTING_STIMULI))
        counting = counting_summary(binned_counts(subset, COUNTING_BIN, seed=seed), seed=seed)
        counting["n_stimuli"] = int(subset.sizes["stimulus"])
        counting["spike_times"] = "uniform in the 1 s unit window given the counts"
        _draw_counting_figures(counting, draw)
        counting.pop("_results")
        report["population"]["counting"] = counting
        steps.update(1)
    else:
        steps = tqdm(total=1, desc="analyses", disable=None if progress is None else not progress)
        report["population"] = None
        report["population_note"] = (
            f"population analyses (Fano factors, overdispersion, sparsity) need a poisson or negbio "
            f"model; this run's latents are {model.latent.name}"
        )

    shattering, shattering_result = shattering_summary(
        model, fit_images, fit_labels, images, labels, seed=seed, n_jobs=n_jobs, progress=progress
    )
    shattering["fit_split"] = "train"
    shattering["held_out_split"] = split
    report["shattering"] = shattering
    if shattering_result is not None:
        draw("shattering.png", figures.plot_shattering, shattering_result)
    steps.update(1)
    steps.close()
    report["figures_skipped"] = figures_skipped
    report["files"] = [*files, "analysis.json"]
    write_json_atomic(run_dir / "analysis.json", report)
    return report

"""``analyze_run``: a trained run's latent population and its analyses, written into the run.

For a Poisson or NegBio model the first ``n_stimuli`` images of a data split are turned into a
simulated population (:func:`spikelatent.populations.population`), saved as ``population.nc``, and
analysed as one would analyse recorded neurons: empirical vs model Fano factor, the Poisson
dispersion test, the NB-vs-Poisson likelihood-ratio test, the mean–variance relation, sparsity and
active units. For every model (count or not) the shattering dimensionality of the read-out features
is measured (fitted on training images, scored on the chosen split). The summary numbers go to
``analysis.json``; figures to ``fano_histogram.png``, ``mean_variance.png``, ``sparsity.png``,
``shattering.png`` and ``raster.png``. The counting-window analyses
(:func:`spikelatent.analysis.summaries.counting_summary`: Fano factor by window, mean-matched Fano
factor, noise and signal correlations, participation ratio) run on the population's spike times
binned in its 1 s window (``fano_by_window.png``, ``noise_correlations.png``). Every unit's
generative and encoder receptive fields and their Gabor fits
(:func:`spikelatent.analysis.receptive_fields.receptive_fields`) go to ``receptive_fields.nc`` and
``receptive_fields.png``, the fraction of Gabor-like units to ``analysis.json``.

A recording (an NWB file's units) goes through :func:`analyze_recording`: the same counting-window
analyses and figures on :func:`spikelatent.nwb.read_counts` with ``bin_size``.

Models with non-count latents (gaussian, laplace, categorical) have no spike counts: their
``analysis.json`` holds the shattering result, ``"population": null`` and a note saying that the
population analyses need a poisson or negbio model. This keeps ``analyze`` usable on all eight models
of the paper (shattering is one of its comparisons) instead of failing on five of them.

This module only orchestrates: the numbers come from :mod:`spikelatent.analysis.summaries`, the
figures from :mod:`spikelatent.plotting`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from spikelatent import __version__, plotting
from spikelatent._checks import check_int
from spikelatent.analysis import level_shattering, level_summary, shattering_dimensionality
from spikelatent.analysis.receptive_fields import (
    ANALYZE_STIMULI,
    receptive_field_lines,
    receptive_field_numbers,
    receptive_fields,
    save_receptive_field_grid,
)
from spikelatent.analysis.summaries import (
    counting_summary,
    information_lines,
    information_summary,
    population_summary,
    shattering_lines,
    shattering_numbers,
)
from spikelatent.checkpoints import load
from spikelatent.data import SPLITS, datamodule_from_config
from spikelatent.errors import SpikelatentError
from spikelatent.inference import kl_per_unit, model_features
from spikelatent.io import json_number, write_json_atomic, write_netcdf_atomic
from spikelatent.populations import binned_counts, population
from spikelatent.workflows.recording import Analysis, _Figures, analyze_recording  # noqa: F401

# Counting-window analyses of model populations use at most this many stimuli: the binned counts
# (trial, stimulus, time, unit) grow with every factor, and 100 stimuli give ample cells.
COUNTING_STIMULI = 100
#: ...and at most this many units, the most active ones (the pairwise noise correlations and
#: their shuffles grow with the square of the units: a hierarchy has thousands).
COUNTING_UNITS = 256
#: Receptive fields and Gabor fits of at most this many units, the most active ones.
FIELD_UNITS = 256
COUNTING_BIN = 0.05  # seconds of the model's 1 s unit window


# --------------------------------------------------------------------------- a run


def _shattering(
    model: Any,
    fit_images: torch.Tensor,
    fit_labels: torch.Tensor,
    held_out_images: torch.Tensor,
    held_out_labels: torch.Tensor,
    seed: int,
    n_jobs: int,
    progress: bool | None,
) -> tuple[dict[str, Any], xr.Dataset | None]:
    """Shattering dimensionality of ``model.features``; skipped (with the reason) when the classes
    do not allow balanced dichotomies (odd count, fewer than 2, or held-out classes unseen in fit)."""
    fit_classes = np.unique(fit_labels.numpy())
    unseen = np.setdiff1d(np.unique(held_out_labels.numpy()), fit_classes)
    if fit_classes.size < 2 or fit_classes.size % 2:
        return {"skipped": "needs an even number (>= 2) of classes in the fitting images; "
                           f"found {fit_classes.size}"}, None
    if unseen.size:
        return {"skipped": f"held-out labels {unseen.tolist()[:5]} do not occur in the fitting "
                           "images"}, None
    fit_x = model_features(model, fit_images, progress=progress, desc="features (fit)")
    held_x = model_features(model, held_out_images, progress=progress, desc="features (held-out)")
    result = shattering_dimensionality(
        fit_x, fit_labels.numpy(), held_x, held_out_labels.numpy(), n_jobs=n_jobs, seed=seed
    )
    return shattering_numbers(result), result


class _LevelReport(NamedTuple):
    dataset: xr.Dataset
    numbers: dict[str, Any]
    lines: list[str]


def _levels(model: Any, pop: xr.Dataset, images: torch.Tensor, fit_images: torch.Tensor,
            fit_labels: torch.Tensor, labels: torch.Tensor, seed: int, n_jobs: int) -> _LevelReport:
    """A hierarchical population's analyses per level (``analysis.level_summary``), with the
    shattering dimensionality of each level's read-out features when the labels allow it."""
    summary = level_summary(pop, kl=kl_per_unit(model, images).numpy())
    classes = np.unique(fit_labels.numpy())
    if classes.size >= 2 and classes.size % 2 == 0 and np.isin(labels.numpy(), classes).all():
        shattering = level_shattering(model_features(model, fit_images), fit_labels.numpy(),
                                      model_features(model, images), labels.numpy(),
                                      pop["level"].values, n_jobs=n_jobs, seed=seed)
        summary = summary.assign(shattering=shattering["shattering"],
                                 ci_low=shattering["ci_low"], ci_high=shattering["ci_high"])
    numbers = {str(int(level)): {name: json_number(summary[name].sel(level=level))
                                 for name in summary.data_vars}
               for level in summary["level"].values}
    columns = [name for name in ("n_units", "fano_empirical_median", "fano_model_median",
                                 "zero_fraction", "lifetime_sparsity", "population_sparsity",
                                 "fraction_active", "kl_per_image", "shattering")
               if name in summary]
    lines = ["per level (0 = coarsest): " + ", ".join(columns)]
    for level, row in numbers.items():
        lines.append(f"  level {level}: " + "  ".join(
            f"{row[name]:.4g}" if row[name] is not None else "nan" for name in columns))
    return _LevelReport(summary, numbers, lines)


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
) -> Analysis:
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
        The :class:`Analysis`; its ``report`` is the content of ``analysis.json``: run and
        population description, ``information``, ``population`` (``fano_factor``,
        ``overdispersion_test``, ``nb_vs_poisson_lrt``, ``mean_variance``, ``sparsity``,
        ``counting``; None for non-count models, with ``population_note`` saying why),
        ``shattering``, ``levels`` (negbio-hierarchical only: per-level numbers, also drawn in
        ``levels.png``) and ``files`` (what was written, relative to ``run_dir``).

    Writes ``population.nc`` (count models), ``analysis.json`` and the figures, each atomically.
    """
    if split not in SPLITS:
        raise SpikelatentError(f"--split must be one of {', '.join(SPLITS)}; got {split!r}")
    n_stimuli = check_int(n_stimuli, "--n-stimuli", 1)
    n_trials = check_int(n_trials, "--trials", 2)
    seed = check_int(seed, "--seed", 0)
    shattering_images = check_int(shattering_images, "shattering_images", 2)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SpikelatentError(
            f"run directory {run_dir} does not exist; train one with `spikelatent fit --out {run_dir}`"
        )

    model = load(run_dir)
    config = dict(model.config)
    datamodule = datamodule_from_config(config, data_dir)
    images, labels = datamodule.split_tensors(split, n_stimuli)
    if images.shape[0] == 0:
        raise SpikelatentError(
            f"the {split} split of {config['data']} is empty for this run; choose another --split"
        )
    skip = images.shape[0] if split == "train" else 0
    fit_images, fit_labels = datamodule.split_tensors("train", shattering_images, skip=skip)

    report: dict[str, Any] = {
        "run_dir": str(run_dir),
        "model": model.family.name,
        "variant": model.variant,
        "dataset": str(config["data"]),
        "checkpoint": str(getattr(model, "checkpoint_path", "")),
        "split": split,
        "n_stimuli": int(images.shape[0]),
        "n_stimuli_requested": n_stimuli,
        "n_trials": n_trials,
        "n_units": int(model.family.latent_dim),
        "seed": seed,
        "spikelatent_version": __version__,
    }
    report["information"] = information_summary(model, images)
    lines = [
        f"{report['variant']} on {report['dataset']} ({split}): {report['n_stimuli']} stimuli x "
        f"{report['n_units']} units" + (f" x {n_trials} trials" if model.family.is_count else ""),
        *information_lines(report["information"]),
    ]
    figures = _Figures(run_dir)
    files: list[str] = []
    hide = None if progress is None else not progress
    if model.family.is_count:
        steps = tqdm(total=3, desc="population analyses", disable=hide)
        pop = population(model, images, labels=labels, n_trials=n_trials, seed=seed,
                         progress=progress)
        write_netcdf_atomic(pop, run_dir / "population.nc")
        files.append("population.nc")
        summary = population_summary(pop)
        steps.update(1)
        figures.draw("fano_histogram.png", plotting.plot_fano_histogram, pop["fano_factor"],
                     summary.empirical_fano)
        figures.draw("mean_variance.png", plotting.plot_mean_variance, pop["counts"])
        figures.draw("sparsity.png", plotting.plot_sparsity, lifetime=summary.lifetime_sparsity,
                     population=summary.population_sparsity)
        figures.draw("raster.png", plotting.plot_raster, pop["counts"])
        subset = pop.isel(stimulus=slice(0, COUNTING_STIMULI))
        if subset.sizes["unit"] > COUNTING_UNITS:
            active = np.argsort(-subset["rate"].mean("stimulus").values, kind="stable")
            subset = subset.isel(unit=np.sort(active[:COUNTING_UNITS]))
        counting = counting_summary(binned_counts(subset, COUNTING_BIN, seed=seed), seed=seed)
        figures.counting(counting)
        report["population"] = {
            **summary.numbers,
            "counting": {
                **counting.numbers,
                "n_stimuli": int(subset.sizes["stimulus"]),
                "n_units": int(subset.sizes["unit"]),
                "units": (f"the {COUNTING_UNITS} most active (highest mean rate)"
                          if subset.sizes["unit"] < pop.sizes["unit"] else "all"),
                "spike_times": "uniform in the 1 s unit window given the counts",
            },
        }
        report["population_note"] = None
        lines += summary.lines()
        if "level" in pop.coords:  # negbio-hierarchical: every level as its own area
            levels = _levels(model, pop, images, fit_images, fit_labels, labels, seed, n_jobs)
            report["levels"] = levels.numbers
            lines += levels.lines
            figures.draw("levels.png", plotting.plot_levels, levels.dataset)
        steps.update(1)
    else:
        steps = tqdm(total=1, desc="analyses", disable=hide)
        report["population"] = None
        report["population_note"] = (
            f"population analyses (Fano factors, overdispersion, sparsity) need a poisson or negbio "
            f"model; this run's latents are {model.family.name}"
        )
        lines.append(report["population_note"])

    try:  # per unit: generative and encoder fields, Gabor fits (docs/receptive-fields.md)
        fields = receptive_fields(model, images[:ANALYZE_STIMULI], max_units=FIELD_UNITS)
    except (SpikelatentError, NotImplementedError) as error:  # a family without a prior mean
        report["receptive_fields"] = {"skipped": str(error)}
    else:
        write_netcdf_atomic(fields, run_dir / "receptive_fields.nc")
        files.append("receptive_fields.nc")
        figures.draw("receptive_fields.png", save_receptive_field_grid, fields)
        report["receptive_fields"] = receptive_field_numbers(fields)
        if report["population"] is not None:  # "how V1-like" next to the sparsity
            report["population"]["sparsity"]["gabor_fraction"] = (
                report["receptive_fields"]["gabor_fraction"])
        lines += receptive_field_lines(report["receptive_fields"])
    shattering, shattering_result = _shattering(
        model, fit_images, fit_labels, images, labels, seed=seed, n_jobs=n_jobs, progress=progress
    )
    shattering["fit_split"] = "train"
    shattering["held_out_split"] = split
    report["shattering"] = shattering
    lines += shattering_lines(shattering)
    if shattering_result is not None:
        figures.draw("shattering.png", plotting.plot_shattering, shattering_result)
    steps.update(1)
    steps.close()
    report["figures_skipped"] = figures.skipped
    report["files"] = [*files, *figures.written, "analysis.json"]
    write_json_atomic(run_dir / "analysis.json", report)
    return Analysis(report, [*lines, *figures.lines()], run_dir)

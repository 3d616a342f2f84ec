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

This module only orchestrates: each analysis is a step of
:data:`spikelatent.workflows.run_analyses.STEPS` (one module each), whose numbers come from
:mod:`spikelatent.analysis` and figures from :mod:`spikelatent.plotting`.
"""

from __future__ import annotations

import os
from pathlib import Path

from tqdm.auto import tqdm

from spikelatent import __version__
from spikelatent._checks import check_int
from spikelatent.checkpoints import load
from spikelatent.data import SPLITS, datamodule_from_config
from spikelatent.errors import SpikelatentError
from spikelatent.io import write_json_atomic
from spikelatent.options import ANALYZE_RUN_DEFAULTS as _RUN
from spikelatent.workflows.recording import Analysis, _Figures, analyze_recording  # noqa: F401
from spikelatent.workflows.run_analyses import STEPS, RunContext


def analyze_run(
    run_dir: str | os.PathLike,
    *,
    split: str = _RUN["split"],
    n_stimuli: int = _RUN["n_stimuli"],
    n_trials: int = _RUN["n_trials"],
    data_dir: str | os.PathLike | None = _RUN["data_dir"],
    seed: int = 0,
    progress: bool | None = None,
    shattering_images: int = _RUN["shattering_images"],
    n_jobs: int = _RUN["n_jobs"],
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

    context = RunContext(
        run_dir=run_dir, model=model, images=images, labels=labels, fit_images=fit_images,
        fit_labels=fit_labels, split=split, n_trials=n_trials, seed=seed, n_jobs=n_jobs,
        progress=progress, figures=_Figures(run_dir),
    )
    context.report.update({
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
    })
    context.lines.append(
        f"{model.variant} on {config['data']} ({split}): {int(images.shape[0])} stimuli x "
        f"{int(model.family.latent_dim)} units"
        + (f" x {n_trials} trials" if model.family.is_count else "")
    )
    steps = tqdm(STEPS, desc="analyses", disable=None if progress is None else not progress)
    for step in steps:
        steps.set_postfix_str(step.name)
        step.run(context)
    figures = context.figures
    context.report["figures_skipped"] = figures.skipped
    context.report["files"] = [*context.files, *figures.written, "analysis.json"]
    write_json_atomic(run_dir / "analysis.json", context.report)
    return Analysis(context.report, [*context.lines, *figures.lines()], run_dir)

"""What a trained count model does, in the numbers of the training ablation and the benchmarks.

Shared by ``benchmarks/fit_fmnist.py``, ``benchmarks/sampler_quality.py`` and
``analyses/ablation.py``; not part of the package: it only combines public API calls.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import spikelatent
from spikelatent.analysis import active_units
from spikelatent.analysis.summaries import information_summary
from spikelatent.data import datamodule_from_config
from spikelatent.inference import reconstruct_images
from spikelatent.metrics import reconstruction_metrics


def test_reconstruction(model, datamodule, test_images: int = 5000, seed: int = 0,
                        hows: tuple[str, ...] = ("sample", "mean")) -> tuple[dict, ...]:
    """:func:`spikelatent.metrics.reconstruction_metrics` (MSE, SSIM) of the first
    ``test_images`` test images, one per reconstruction in ``hows``: hard counts (``sample``,
    drawn with ``seed``) and the posterior mean (``mean``)."""
    images, _ = datamodule.split_tensors("test", test_images)
    return tuple(
        reconstruction_metrics(images, reconstruct_images(model, images, how, 500, seed),
                               datamodule.data_range)
        for how in hows
    )


def trained_model_summary(
    run_dir: str | os.PathLike, test_images: int = 5000, data_dir: str | os.PathLike | None = None
) -> dict[str, float]:
    """The run's last weights on the first ``test_images`` test images.

    Per-pixel MSE of hard-count (``mse_hard``) and posterior-mean (``mse_mean``)
    reconstructions, SSIM of the hard counts, KL per image (nats) and informative units
    (:func:`spikelatent.analysis.summaries.information_summary`); the population of the first
    1000 of them (20 trials, seed 0): fraction of zero counts, fraction of units that fire and
    vary, median model Fano factor, median prior r; ``steps`` and ``collapse_warning`` (1 if the
    collapse guard fired at any validation) from ``metrics.csv``.
    """
    run_dir = Path(run_dir)
    model = spikelatent.load(run_dir, which="last")
    datamodule = datamodule_from_config(dict(model.config), data_dir)
    images, labels = datamodule.split_tensors("test", test_images)
    hard, mean = test_reconstruction(model, datamodule, test_images)
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
        "fraction_firing": float(active_units(counts)["fraction_active"]),
        "fano_median": float(pop["fano_factor"].median()),
        "prior_r_median": float(pop["prior_dispersion"].median()),
        "collapse_warning": max((int(row["collapse_warning"] or 0) for row in rows), default=0),
    }

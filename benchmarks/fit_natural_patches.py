"""NB-VAE (the defaults) and P-VAE on whitened 16x16 natural-image patches with a linear decoder,
each for a wall-clock budget: how sparse and how V1-like (Gabor-like) do their units become?

The data are ``--data natural-patches`` (offline: photographs inside scikit-image and
scikit-learn, grey, log intensity, Fourier whitening, 16x16 patches; datasets/natural-patches.md),
the Poisson VAE's vH16 setting. For each model the script trains for ``--minutes`` on
``--threads`` threads, then on the first ``--stimuli`` test patches prints

* active units (fire and vary across ``--trials`` count samples per patch),
* the median model Fano factor,
* the mean lifetime sparsity (Treves-Rolls over patches, per unit),
* the fraction of units whose generative field has Gabor R² >= 0.5 (all units, and active ones),
* the path of the receptive-field grid (generative fields, most active unit first).

    python benchmarks/fit_natural_patches.py [--minutes 10] [--threads 2] [--models negbio poisson]
        [--out runs/bench-natural-patches] [-- extra spikelatent fit flags]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

import spikelatent
from spikelatent.analysis import active_units, lifetime_sparsity
from spikelatent.analysis.receptive_fields import receptive_fields, save_receptive_field_grid
from spikelatent.cli import main as cli_main
from spikelatent.data import datamodule_from_config

MODELS = {"negbio": ["--model", "negbio"], "poisson": ["--model", "poisson"]}
DATA = ["--data", "natural-patches", "--arch", "linear"]


def train(model: str, minutes: float, out: Path, extra: list[str]) -> float:
    if out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    status = cli_main(["fit", *DATA, *MODELS[model], "--max-minutes", str(minutes),
                       "--epochs", "100000", "--out", str(out), "--no-progress", *extra])
    if status:
        raise SystemExit(status)
    return time.perf_counter() - start


def measure(run_dir: Path, n_stimuli: int, n_trials: int) -> dict[str, object]:
    model = spikelatent.load(run_dir)
    data = datamodule_from_config(model.config)  # the run's own patches and split
    images, _ = data.split_tensors("test", n_stimuli)
    pop = spikelatent.population(model, images, n_trials=n_trials, seed=0)
    active = active_units(pop["counts"])
    fields = receptive_fields(model, images)
    grid = save_receptive_field_grid(
        fields, run_dir / "receptive_fields.png",
        title=f"{model.variant} on natural patches: generative fields, most active first")
    metrics = list(csv_rows(run_dir / "metrics.csv"))
    return {
        "model": model.variant,
        "steps": int(metrics[-1]["step"]) if metrics else 0,
        "val_mse": float(metrics[-1]["val_mse"]) if metrics and metrics[-1]["val_mse"] else None,
        "active_units": f"{int(active['n_active'])}/{model.family.latent.latent_dim}",
        "median_fano": float(np.nanmedian(pop["fano_factor"].values)),
        "lifetime_sparsity": float(lifetime_sparsity(pop["counts"]).mean(skipna=True)),
        "gabor_fraction": fields.attrs["gabor_fraction"],
        "gabor_fraction_active": fields.attrs["gabor_fraction_active"],
        "grid": str(grid),
    }


def csv_rows(path: Path):
    import csv

    if path.exists():
        with path.open() as stream:
            yield from csv.DictReader(stream)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per model")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS))
    parser.add_argument("--stimuli", type=int, default=1000, help="test patches analysed")
    parser.add_argument("--trials", type=int, default=20, help="count samples per patch")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-natural-patches"))
    args, extra = parser.parse_known_args(argv)
    extra = [flag for flag in extra if flag != "--"]
    torch.set_num_threads(args.threads)
    results = {}
    for model in args.models:
        run_dir = args.out / model
        seconds = train(model, args.minutes, run_dir, extra)
        results[model] = {**measure(run_dir, args.stimuli, args.trials), "train_s": round(seconds)}
        print(json.dumps(results[model]), flush=True)
    keys = ("model", "steps", "train_s", "val_mse", "active_units", "median_fano",
            "lifetime_sparsity", "gabor_fraction", "gabor_fraction_active", "grid")
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for result in results.values():
        print("| " + " | ".join(_cell(result[key]) for key in keys) + " |")
    return 0


def _cell(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    sys.exit(main())

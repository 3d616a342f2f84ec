"""The hierarchical NB-VAE against the single-layer default on Fashion-MNIST, same wall-clock budget.

Trains ``spikelatent fit --data fashion-mnist`` twice, each for ``--minutes`` (default 20, the
``--max-minutes`` stop; the schedules follow the clock), with the same seed:

* ``hierarchical``: ``--model negbio-hierarchical`` (its defaults, docs/hierarchical.md);
* ``single``: the single-layer default (NegBio-VAE DS-C, ``--model negbio``).

Then prints, per model, on the test split: per-pixel MSE of hard-count reconstructions (all test
images), SSIM, FID and KID of prior samples with classifier features (``spikelatent evaluate
--features classifier``, ``--n-samples`` generated images), and per level (the single-layer model
is one level): KL per image (nats), active units (fire and vary over 10 trials of the first 500
test images), the median model Fano factor and the fraction of zero counts. Target (issue 23): hierarchical hard-count
MSE at most half the single-layer's, with FID no worse.

    nice -n 10 python benchmarks/fit_hierarchical.py --minutes 20 [--seed 0] [--out runs/bench-hnb]

Extra arguments go to ``spikelatent fit`` for both models (e.g. ``--batch-size 64``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

MODELS = {"hierarchical": ["--model", "negbio-hierarchical"], "single": ["--model", "negbio"]}


def per_level(run_dir: Path, n_images: int = 500, n_trials: int = 10) -> dict[int, dict[str, float]]:
    """KL per image, active units and median Fano factor per level on the first test images."""
    import spikelatent
    from spikelatent import analysis
    from spikelatent.data import datamodule_from_config

    model = spikelatent.load(run_dir, which="last")
    images, labels = datamodule_from_config(model.config).split_tensors("test")
    images, labels = images[:n_images], labels[:n_images]
    pop = spikelatent.population(model, images, labels=labels, n_trials=n_trials, seed=0,
                                 progress=False)
    with torch.no_grad():
        kl = torch.cat([model.family.kl_per_unit(images[i:i + 250])
                        for i in range(0, len(images), 250)]).double().numpy()
    levels = pop["level"].values if "level" in pop.coords else np.zeros(pop.sizes["unit"], int)
    result = {}
    for level in np.unique(levels):
        units = levels == level
        sub = pop.isel(unit=units)
        active = analysis.active_units(sub["counts"])
        result[int(level)] = {
            "units": int(units.sum()),
            "kl_per_image": float(kl[:, units].sum(1).mean()),
            "active_units": int(active["n_active"]),
            "fano_median": float(sub["fano_factor"].median()),
            "zero_fraction": float((sub["counts"] == 0).mean()),
        }
    return result


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-samples", type=int, default=1000, help="generated images for FID/KID")
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-hnb"))
    args, extra = parser.parse_known_args(argv)

    from spikelatent.cli import main as cli_main
    from spikelatent.workflows.evaluate import evaluate_run

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"budget {args.minutes} min per model, seed {args.seed}", flush=True)
    table, levels = {}, {}
    for name in args.models:
        run_dir = args.out / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        start = time.perf_counter()
        status = cli_main(["fit", "--data", "fashion-mnist", *MODELS[name], *extra,
                           "--seed", str(args.seed), "--epochs", "100000",
                           "--max-minutes", str(args.minutes), "--out", str(run_dir), "--no-progress"])
        if status:
            return status
        minutes = (time.perf_counter() - start) / 60
        metrics = evaluate_run(run_dir, features="classifier", n_samples=args.n_samples,
                               kid_subset_size=min(1000, args.n_samples // 2), progress=False)
        table[name] = {"minutes": minutes, "mse_hard": metrics["mse"], "ssim": metrics["ssim"],
                       "fid": metrics["fid_5k"], "kid": metrics["kid_mean"]}
        levels[name] = per_level(run_dir)
        print(name, table[name], levels[name], flush=True)

    print("\n| model | train min | hard-count MSE | SSIM | FID | KID |\n|---|---|---|---|---|---|")
    for name, m in table.items():
        print(f"| {name} | {m['minutes']:.1f} | {m['mse_hard']:.4f} | {m['ssim']:.3f} | "
              f"{m['fid']:.2f} | {m['kid']:.4f} |")
    print("\n| model | level | units | KL / image | active units | median Fano | zero fraction |")
    print("|---|---|---|---|---|---|---|")
    for name, by_level in levels.items():
        for level, m in by_level.items():
            print(f"| {name} | {level} | {m['units']} | {m['kl_per_image']:.2f} | "
                  f"{m['active_units']} | {m['fano_median']:.3f} | {m['zero_fraction']:.3f} |")
    if {"hierarchical", "single"} <= table.keys():
        h, s = table["hierarchical"], table["single"]
        met = h["mse_hard"] <= 0.5 * s["mse_hard"] and h["fid"] <= s["fid"]
        print(f"\ntarget (hierarchical MSE <= half the single-layer's, FID no worse) at "
              f"{args.minutes:g} min, seed {args.seed}: {'met' if met else 'not met'} "
              f"(MSE {h['mse_hard']:.4f} vs {s['mse_hard']:.4f}, FID {h['fid']:.2f} vs {s['fid']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(run())

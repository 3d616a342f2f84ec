"""``spikelatent evaluate RUN_DIR``: Table 1 metrics of a trained run (MSE, SSIM, FID@5k/10k, KID)."""

from __future__ import annotations

import argparse
from typing import Any

from spikelatent.commands._flags import flag_keywords
from spikelatent.options import SPLITS

#: The flags passed on to evaluate_run, each under its own name.
EVALUATE_FLAGS = ("split", "n_samples", "features", "batch_size", "data_dir", "kid_subsets",
                  "kid_subset_size", "seed", "device")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="reconstruction (MSE, SSIM) and generation (FID@5k, FID@10k, KID) metrics of a run",
        description=(
            "Evaluate a trained run: writes metrics.json, a row of evaluations.csv, "
            "evaluate_reconstructions.png and evaluate_samples.png into RUN_DIR "
            "(fit's own figures are left as they are). "
            "Example: spikelatent evaluate runs/digits-negbio --features classifier"
        ),
    )
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="run directory written by `spikelatent fit`"
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=SPLITS,
        help="real images (default test)",
    )
    parser.add_argument(
        "--n-samples",
        type=int,
        default=10000,
        metavar="N",
        help="generated images at most; FID@5k/@10k use min(5000, N)/min(10000, N) (default 10000)",
    )
    parser.add_argument(
        "--features",
        default="auto",
        choices=("auto", "inception", "classifier", "none"),
        help=(
            "FID/KID features: inception (standard FID network; its weights file must be in the "
            "torch hub cache), classifier (a small CNN trained on the dataset, offline), "
            "none (reconstruction metrics only, e.g. for unlabelled images or patches), "
            "auto = inception if its weights are present, else an error (default auto)"
        ),
    )
    parser.add_argument("--data-dir", metavar="DIR", help="folder holding the dataset files")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=500,
        metavar="N",
        help="images per forward pass (default 500)",
    )
    parser.add_argument(
        "--kid-subsets", type=int, default=100, metavar="N", help="KID subsets (default 100)"
    )
    parser.add_argument(
        "--kid-subset-size",
        type=int,
        default=1000,
        metavar="N",
        help="images per KID subset, capped by the set sizes (default 1000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling (default 0)")
    parser.add_argument(
        "--device",
        default=None,
        help="torch device, e.g. cpu or cuda:0 (default: cuda if available)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: building the CLI parser must not load torch
    # (`spikelatent --version` stays fast)
    from spikelatent.workflows.evaluate import evaluate_run

    metrics = evaluate_run(
        args.run_dir,
        progress=False if args.no_progress else None,
        **flag_keywords(args, EVALUATE_FLAGS),
    )
    line = (
        f"{metrics['model_name']} on {metrics['dataset']} ({metrics['split']}): "
        f"MSE {metrics['mse']:.4f}  SSIM {metrics['ssim']:.4f}"
    )
    if metrics["fid_5k"] is not None:
        line += (
            f"  FID@5k {metrics['fid_5k']:.2f} (n={metrics['n_generated_5k']})  "
            f"FID@10k {metrics['fid_10k']:.2f} (n={metrics['n_generated_10k']})  "
            f"KID {metrics['kid_mean']:.4f} ± {metrics['kid_std']:.4f}"
        )
    print(line)
    print(f"features: {metrics['features']}")
    print(f"written: {args.run_dir}/metrics.json")
    return 0

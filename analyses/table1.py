"""Reproduce the layout of the paper's Table 1 on one dataset: train the eight models, evaluate
them (MSE, SSIM, FID@5k, FID@10k, KID) and write the comparison.

Everything goes through the public command line (``spikelatent fit | evaluate | compare`` via
``spikelatent.cli.main``), so this script keeps working as the library's internals change.

Examples (see analyses/README.md)::

    # quick offline check on the embedded digits set (minutes on a laptop CPU)
    python analyses/table1.py --data digits --epochs 20 --features classifier --n-samples 2000

    # Fashion-MNIST from Debian's dataset-fashion-mnist package, a short budget
    python analyses/table1.py --data fashion-mnist --epochs 5 --limit 20000 --features classifier

    # the published code's conventions (spikelatent fit --preset paper), 12 epochs of batch 128
    python analyses/table1.py --data fashion-mnist --preset paper --epochs 12 --batch-size 128 \
        --features classifier

Arguments not listed below are passed on to ``spikelatent fit`` (e.g. ``--latent-dim 256
--arch conv --beta 1``). A model whose run directory already holds ``checkpoints/last.ckpt`` is not
retrained (delete the folder, or use ``--retrain``); every run is re-evaluated.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from spikelatent.cli import main as spikelatent
from spikelatent.io import write_text_atomic
from spikelatent.latents import PAPER_MODELS


def _run_name(model: str, kl: str, relax: str) -> str:
    """Run-folder name of a model, e.g. ``poisson`` or ``negbio-mc-g``."""
    if model != "negbio":
        return model
    return f"negbio-{kl}-{'g' if relax == 'gumbel' else 'c'}"


#: The eight models of Table 1: run-folder name → ``spikelatent fit`` flags.
MODELS = {
    _run_name(model, kl, relax): ["--model", model]
    + (["--kl", kl, "--relax", relax] if model == "negbio" else [])
    for model, kl, relax in PAPER_MODELS.values()
}


#: The paper's Table 1 (arXiv 2508.05423): dataset -> model -> (MSE, SSIM, FID@5k, FID@10k, KID).
PAPER_TABLE1 = {
    "mnist": {
        "G-VAE": (0.0377, 0.6790, 152.5109, 152.8226, 0.1788),
        "L-VAE": (0.0377, 0.7124, 132.7655, 131.7514, 0.1484),
        "C-VAE": (0.0222, 0.7712, 135.4452, 133.4826, 0.1140),
        "P-VAE": (0.0125, 0.8581, 105.3678, 104.1416, 0.1250),
        "NegBio-VAE MC-G": (0.0156, 0.8487, 79.6727, 78.3802, 0.0892),
        "NegBio-VAE MC-C": (0.0123, 0.8661, 84.3853, 83.0010, 0.0906),
        "NegBio-VAE DS-G": (0.0168, 0.7960, 87.6456, 87.4101, 0.1000),
        "NegBio-VAE DS-C": (0.0125, 0.8554, 106.4104, 105.4089, 0.1167),
    },
    "fashion-mnist": {
        "G-VAE": (0.1417, 0.1731, 179.8126, 179.2981, 0.1828),
        "L-VAE": (0.1274, 0.2085, 181.4542, 179.5956, 0.1847),
        "C-VAE": (0.0238, 0.6390, 195.3205, 193.0972, 0.1835),
        "P-VAE": (0.0145, 0.7387, 145.9776, 146.0128, 0.1667),
        "NegBio-VAE MC-G": (0.0180, 0.7132, 127.5248, 125.9497, 0.1468),
        "NegBio-VAE MC-C": (0.0152, 0.7331, 148.9795, 147.7799, 0.1688),
        "NegBio-VAE DS-G": (0.0186, 0.6773, 133.0601, 132.8822, 0.1517),
        "NegBio-VAE DS-C": (0.0144, 0.7406, 155.5468, 154.1402, 0.1763),
    },
}
METRIC_COLUMNS = ("mse", "ssim", "fid_5k", "fid_10k", "kid_mean")


def side_by_side(comparison_csv: Path, data: str) -> str:
    """Markdown: each of our rows next to the paper's row for the same model and dataset.

    Our FID/KID come from the feature extractor named in ``comparison.md`` (the paper's from
    Inception): compare their ranking, not their values, unless both used Inception.
    """
    import csv

    paper = PAPER_TABLE1.get(data, {})
    lines = ["| model | preset | MSE ours / paper | SSIM ours / paper | FID@5k ours / paper | "
             "FID@10k ours / paper | KID ours / paper |", "|---|---|---|---|---|---|---|"]
    with comparison_csv.open() as stream:
        for row in csv.DictReader(stream):
            theirs = paper.get(row["model"].split(" (")[0])
            cells = []
            for index, key in enumerate(METRIC_COLUMNS):
                ours = f"{float(row[key]):.4f}" if row.get(key) not in (None, "") else "–"
                cells.append(f"{ours} / {theirs[index]:.4f}" if theirs else ours)
            lines.append(f"| {row['model']} | {row.get('preset', '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description="Train, evaluate and compare the eight models of the paper's Table 1 on one dataset.",
        epilog="Other arguments are passed to `spikelatent fit`.",
    )
    parser.add_argument("--data", default="fashion-mnist", help="dataset (default fashion-mnist)")
    parser.add_argument("--data-dir", help="folder holding the dataset files")
    parser.add_argument(
        "--epochs", type=int, help="training epochs per model (fit's default if omitted)"
    )
    parser.add_argument("--limit", type=int, help="use at most this many training images")
    parser.add_argument(
        "--preset", help="`spikelatent fit --preset` for every model (e.g. paper, poisson-vae); "
        "the comparison records it per row (default: fit's defaults)"
    )
    parser.add_argument(
        "--features",
        default="auto",
        choices=("auto", "inception", "classifier"),
        help="FID/KID features (default auto = inception if its weights are present, else an error)",
    )
    parser.add_argument(
        "--n-samples",
        type=int,
        default=10000,
        help="generated images for FID@10k/KID (default 10000)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=tuple(MODELS),
        default=list(MODELS),
        help="subset of the eight models (default: all)",
    )
    parser.add_argument("--out", type=Path, help="root folder (default runs/table1-<data>)")
    parser.add_argument(
        "--retrain", action="store_true", help="retrain models that already have a run"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser.parse_known_args(argv)


def run(argv: list[str] | None = None) -> int:
    args, fit_extra = parse_args(argv)
    root = args.out or Path("runs") / f"table1-{args.data}-{args.preset or 'defaults'}"
    quiet = ["--no-progress"] if args.no_progress else []
    data_dir = ["--data-dir", args.data_dir] if args.data_dir else []
    run_dirs = []
    for name in args.models:
        run_dir = root / name
        if args.retrain and run_dir.exists():
            shutil.rmtree(run_dir)
        if not (run_dir / "checkpoints" / "last.ckpt").is_file():
            fit = ["fit", "--data", args.data, *data_dir, *MODELS[name], "--out", str(run_dir)]
            fit += ["--epochs", str(args.epochs)] if args.epochs else []
            fit += ["--limit", str(args.limit)] if args.limit else []
            fit += ["--preset", args.preset] if args.preset else []
            print(f"== training {name} -> {run_dir}", flush=True)
            status = spikelatent([*fit, *fit_extra, *quiet])
            if status:
                return status
        print(f"== evaluating {name}", flush=True)
        evaluate = ["evaluate", str(run_dir), "--features", args.features]
        status = spikelatent([*evaluate, "--n-samples", str(args.n_samples), *data_dir, *quiet])
        if status:
            return status
        run_dirs.append(str(run_dir))
    print("== comparison", flush=True)
    status = spikelatent(["compare", *run_dirs, "--out", str(root / "comparison"), *data_dir])
    if status == 0 and args.data in PAPER_TABLE1:
        table = side_by_side(root / "comparison" / "comparison.csv", args.data)
        write_text_atomic(root / "comparison" / "vs_paper.md", table)
        print(table)
    return status


if __name__ == "__main__":
    sys.exit(run())

"""Quality of the NegBio-VAE relaxed samplers at an equal wall-clock budget (issue 13).

For each row (DS-C, MC-C and the series-KL model, each with ``--nb-sampler gamma-poisson`` and
``counting``) the script trains on Fashion-MNIST for ``--minutes`` of wall clock (the step budget
is calibrated per row, so a faster sampler gets more steps: ``benchmarks/fit_fmnist.budgeted_fit``),
then measures the last weights:

* test per-pixel MSE of hard-count and posterior-mean reconstructions and SSIM (first 5,000 test
  images, ``benchmarks/run_summary.py``), KL per image, median Fano;
* KID (and FID@5k) of ``--n-samples`` prior samples with the offline classifier features
  (``spikelatent evaluate --features classifier``);
* the steps done in the budget, next to the step budget the schedules were set for: a row that
  stops on ``--max-minutes`` short of it ended with its temperature and beta still ramping.

    python benchmarks/sampler_quality.py [--minutes 4] [--limit 12000] [--rows ds-gp ds-cnt ...]

Extra arguments go to ``spikelatent fit`` for every row (e.g. ``--batch-size 64``). Writes
``<out>/sampler_quality.md``. Every row runs under the same conditions only on an otherwise idle
machine (or one whose load does not change): the wall-clock budget is the point of the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from fit_fmnist import budgeted_fit
from run_summary import trained_model_summary

from spikelatent.cli import main as cli_main
from spikelatent.io import write_text_atomic
from spikelatent.workflows.evaluate import read_metrics

#: Row name -> spikelatent fit flags.
ROWS = {
    f"{kl}-{short}": ["--model", "negbio", "--kl", kl, "--relax", "ct", "--nb-sampler", sampler]
    for kl in ("ds", "mc", "series")
    for short, sampler in (("gp", "gamma-poisson"), ("cnt", "counting"))
}
COLUMNS = ("steps", "step_budget", "mse_hard", "mse_mean", "ssim_hard", "kid_mean", "fid_5k", "kl_per_image",
           "fano_median", "seconds_per_step")


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget per row")
    parser.add_argument("--limit", type=int, default=12000, help="training images (0 = all)")
    parser.add_argument("--rows", nargs="+", choices=tuple(ROWS), default=list(ROWS))
    parser.add_argument("--n-samples", type=int, default=2000, help="prior samples for KID/FID")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/sampler-quality"))
    args, extra = parser.parse_known_args(argv)
    limit = ["--limit", str(args.limit)] if args.limit else []
    header = (f"Fashion-MNIST, {args.minutes:g} min per row, "
              f"{args.limit or 'all'} training images, seed {args.seed}, "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(header, flush=True)
    results: dict[str, dict[str, float]] = {}
    for name in args.rows:
        run_dir = args.out / name
        flags = ["--data", "fashion-mnist", *ROWS[name], *limit, "--seed", str(args.seed), *extra]
        timing = budgeted_fit(flags, args.minutes, run_dir)
        status = cli_main(["evaluate", str(run_dir), "--features", "classifier", "--n-samples",
                           str(args.n_samples), "--no-progress"])
        if status:
            return status
        metrics = read_metrics(run_dir)
        summary = trained_model_summary(run_dir)
        results[name] = {**summary, **timing, "kid_mean": metrics["kid_mean"],
                         "fid_5k": metrics["fid_5k"]}
        print(name, {key: results[name][key] for key in COLUMNS}, flush=True)
    lines = [header, "", "| row | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, values in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{values[key]:.4g}" for key in COLUMNS) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    write_text_atomic(args.out / "sampler_quality.md", table)
    return 0


if __name__ == "__main__":
    sys.exit(run())

"""Ablation of the training conventions on one model at one step budget (issue: NB latents that
behave like neurons). Each convention of the published NegBio-VAE code is switched on alone on
top of the reference Poisson-VAE conventions (``--preset poisson-vae``), then in combinations,
for several seeds; every run is measured the same way:

* test reconstruction (first ``--test-images`` test images): per-pixel MSE with hard counts and
  with the posterior mean, SSIM (hard counts);
* the code's information: KL per image and the fraction of informative units (mean KL > 0.01
  nats, ``spikelatent.analysis.summaries.information_summary``);
* the population (``spikelatent.population``, first 1000 test images, 20 trials): fraction of
  zero counts, fraction of units that fire and vary, median model Fano factor, median prior r.

Everything goes through the public API (``spikelatent fit`` through ``spikelatent.cli.main``,
``spikelatent.load``, ``spikelatent.population``). Example (the table in docs/training.md)::

    python analyses/ablation.py --data fashion-mnist --epochs 2 --seeds 0 1 \\
        --out runs/ablation-fmnist

Writes ``<out>/ablation.csv`` and ``<out>/ablation.md`` (mean ± half-range over seeds).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np

# The run summary is a benchmark helper shared with benchmarks/fit_fmnist.py (not package API).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from run_summary import trained_model_summary  # noqa: E402

from spikelatent.cli import main as spikelatent_cli
from spikelatent.io import write_text_atomic

#: The published code's conventions, one flag set each, on top of --preset poisson-vae.
CONVENTIONS = {
    "objective": ["--objective", "published"],
    "prior": ["--prior-init", "unit"],
    "networks": ["--encoder-channels", "32,64", "--decoder-channels", "64,128",
                 "--encoder-layer-norm", "--decoder-unit-norm"],
    "optimizer": ["--optimizer", "adam", "--lr", "1e-3", "--lr-schedule", "constant",
                  "--warmup-fraction", "0", "--grad-clip", "1"],
    "schedules": ["--beta-start", "0", "--beta-hold-fraction", "0", "--beta-warmup-fraction",
                  "0.25", "--temperature-end", "0.24", "--temperature-anneal-fraction", "1"],
    "posterior": ["--posterior-logits", "absolute", "--modulation-bound", "5"],
    # the networks' two parameter-free changes alone (no new widths)
    "norms": ["--encoder-layer-norm", "--decoder-unit-norm"],
}
#: Rows of the ablation: name -> conventions switched on (all others: the poisson-vae preset).
ROWS = {
    "poisson-vae (reference)": [],
    **{f"+ {name}": [name] for name in CONVENTIONS if name != "norms"},
    "+ objective + prior": ["objective", "prior"],
    "+ objective + prior + norms": ["objective", "prior", "norms"],
    "+ objective + prior + networks": ["objective", "prior", "networks"],
    "all (= paper preset)": [name for name in CONVENTIONS if name != "norms"],
}
COLUMNS = ("row", "seed", "steps", "mse_hard", "mse_mean", "ssim_hard", "kl_per_image",
           "fraction_informative", "fraction_zero", "fraction_firing", "fano_median",
           "prior_r_median", "collapse_warning")


def markdown(results: list[dict], budget: str) -> str:
    names = list(dict.fromkeys(row["row"] for row in results))
    shown = COLUMNS[3:]
    lines = [f"Budget: {budget}. Cells: mean ± half-range over seeds "
             f"{sorted({r['seed'] for r in results})}.", "",
             "| row | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
    for name in names:
        rows = [r for r in results if r["row"] == name]
        cells = []
        for column in shown:
            values = np.array([float(r[column]) for r in rows])
            mid, half = values.mean(), (values.max() - values.min()) / 2
            cells.append(f"{mid:.4g} ± {half:.2g}" if len(values) > 1 else f"{mid:.4g}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Other arguments are passed to `spikelatent fit`.")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--data-dir")
    parser.add_argument("--model-flags", default="--model negbio --kl ds --relax ct",
                        help="the model (default DS-C)")
    parser.add_argument("--epochs", type=int, default=2,
                        help="epochs per run (the step budget; validation ends each epoch)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rows", nargs="+", choices=tuple(ROWS), default=list(ROWS))
    parser.add_argument("--test-images", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    args, extra = parser.parse_known_args(argv)
    data_dir = ["--data-dir", args.data_dir] if args.data_dir else []
    results = []
    for name in args.rows:
        flags = [flag for convention in ROWS[name] for flag in CONVENTIONS[convention]]
        for seed in args.seeds:
            slug = name.replace(" ", "").replace("+", "_").replace("(", "").replace(")", "")
            run_dir = args.out / f"{slug.strip('_')}-seed{seed}"
            if not (run_dir / "checkpoints" / "last.ckpt").is_file():
                print(f"== {name}, seed {seed} -> {run_dir}", flush=True)
                status = spikelatent_cli([
                    "fit", "--data", args.data, *data_dir, *args.model_flags.split(),
                    "--preset", "poisson-vae", *flags, "--batch-size", str(args.batch_size),
                    "--epochs", str(args.epochs), "--seed", str(seed),
                    "--out", str(run_dir), "--no-progress", *extra,
                ])
                if status:
                    return status
            row = {"row": name, "seed": seed,
                   **trained_model_summary(run_dir, args.test_images, args.data_dir)}
            print(row, flush=True)
            results.append(row)
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(results)
            write_text_atomic(args.out / "ablation.csv", buffer.getvalue())
    steps = sorted({r["steps"] for r in results})
    budget = (f"{args.data}, {args.model_flags}, {args.epochs} epochs = {steps} steps of batch "
              f"{args.batch_size}, test metrics on the first {args.test_images} test images")
    write_text_atomic(args.out / "ablation.md", markdown(results, budget))
    print(markdown(results, budget))
    return 0


if __name__ == "__main__":
    sys.exit(run())

"""Test MSE against training time: every checkpoint of one long run, read out on the same test images.

For the Fashion-MNIST DS-C target (hard-count MSE <= 0.0144, paper Table 1): train one long run
with ``spikelatent fit --keep-every-epochs N`` (or copy its ``last.ckpt`` now and then: a copy
keeps the optimizer step it was taken at) and give the run (and the copies) to this script. For
each checkpoint it prints and writes the optimizer step, the run's wall-clock minutes at that step (``metrics.csv``'s ``elapsed_s``), the relaxation temperature
it was trained at, and the per-pixel test MSE of hard-count (sample) and posterior-mean
reconstructions of the first ``--test-images`` test images (as ``fit_fmnist.py``).

    spikelatent fit --data fashion-mnist --max-steps 48000 --epochs 100000 --keep-every-epochs 10 \\
        --out runs/fmnist-48k
    python benchmarks/checkpoint_curve.py runs/fmnist-48k [SNAPSHOT.ckpt ...] --out runs/curve \\
        [--test-images 5000] [--target 0.0144] [--point LABEL STEPS MINUTES MSE ...]

``--point`` adds a finished run measured elsewhere (e.g. a budgeted ``fit_fmnist.py`` run) to the
figure. Writes ``curve.csv`` and ``curve.png`` (MSE against steps, minutes on the top axis).
An intermediate checkpoint is not a shorter run: it was trained at a higher temperature, with
beta and temperature still on their way; the run's own last checkpoint is the budget's result.
Before beta reaches its final value (the first ``--beta-warmup-fraction`` of the steps) the KL is
cheap and the reconstructions are better than the objective's, so those checkpoints (hollow
markers) do not count towards the target.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from run_summary import test_reconstruction

import spikelatent
from spikelatent.checkpoints import CHECKPOINT_DIR, KEPT_DIR, read_checkpoint
from spikelatent.data import datamodule_from_config
from spikelatent.io import write_text_atomic
from spikelatent.plotting import new_figure, save_figure

COLUMNS = ("checkpoint", "step", "minutes", "temperature", "beta", "mse_hard", "mse_mean", "ssim_hard")


def _metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as stream:
        return list(csv.DictReader(stream))


def checkpoint_row(path: Path, rows: list[dict[str, str]], datamodule, test_images: int) -> dict:
    """One checkpoint's step, minutes, temperature and test reconstruction errors."""
    step = int(read_checkpoint(path).get("global_step", -1))
    at_step = [row for row in rows if int(row["step"]) <= step]
    row = at_step[-1] if at_step else {}
    model = spikelatent.load(path)
    hard, mean = test_reconstruction(model, datamodule, test_images)
    return {"checkpoint": path.name, "step": step,
            "minutes": float(row.get("elapsed_s") or "nan") / 60,
            "temperature": float(row.get("temperature") or "nan"),
            "beta": float(row.get("beta") or "nan"),
            "mse_hard": hard["mse"], "mse_mean": mean["mse"], "ssim_hard": hard["ssim"]}


def curve_figure(table: list[dict], points: list[tuple[str, int, float, float]], target: float,
                 final_beta: float, path: Path) -> Path:
    figure, (axis,) = new_figure(width=6.5, height=4.0)
    steps = np.array([row["step"] for row in table])
    warm = np.array([row["beta"] for row in table]) >= final_beta
    for key, style, label in (("mse_hard", "o-", "hard counts"), ("mse_mean", "s--", "posterior mean")):
        values = np.array([row[key] for row in table])
        line, = axis.plot(steps, values, style, mfc="none", label=f"{label} (this run)")
        axis.plot(steps[warm], values[warm], style[0], color=line.get_color())
    for label, point_steps, _, mse in points:
        axis.plot([point_steps], [mse], "D", label=label)
    axis.axhline(target, color="k", lw=0.8, ls=":", label=f"paper DS-C {target}")
    axis.set_xlabel("optimizer steps")
    axis.set_ylabel("test MSE per pixel")
    minutes = np.array([row["minutes"] for row in table])
    if len(table) > 1 and np.all(np.isfinite(minutes)):
        top = axis.secondary_xaxis(
            "top", functions=(lambda s: np.interp(s, steps, minutes),
                              lambda m: np.interp(m, minutes, steps)))
        top.set_xlabel("minutes of this run (wall clock)")
    axis.legend(fontsize=8)
    return save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the run the checkpoints come from")
    parser.add_argument("checkpoints", nargs="*", type=Path,
                        help="checkpoint copies, any order (default: the run's checkpoints/kept/, "
                        "from fit --keep-every-epochs, and its last.ckpt)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--test-images", type=int, default=5000)
    parser.add_argument("--target", type=float, default=0.0144)
    parser.add_argument("--point", nargs=4, action="append", default=[],
                        metavar=("LABEL", "STEPS", "MINUTES", "MSE"))
    parser.add_argument("--data-dir", help="folder holding the dataset files")
    args = parser.parse_args(argv)
    if not args.checkpoints:
        folder = args.run_dir / CHECKPOINT_DIR
        args.checkpoints = [*sorted((folder / KEPT_DIR).glob("*.ckpt")), folder / "last.ckpt"]
    try:
        rows = _metrics_rows(args.run_dir)
        model = spikelatent.load(args.checkpoints[0])
        datamodule = datamodule_from_config(dict(model.config), args.data_dir)
        table = sorted((checkpoint_row(path, rows, datamodule, args.test_images)
                        for path in args.checkpoints), key=lambda row: row["step"])
    except (spikelatent.SpikelatentError, OSError) as error:
        print(f"checkpoint_curve: error: {error}", file=sys.stderr)
        return 2
    lines = ["| step | minutes | temperature | beta | MSE hard | MSE mean | SSIM hard |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['step']} | {r['minutes']:.1f} | {r['temperature']:.3f} | {r['beta']:.4g} "
              f"| {r['mse_hard']:.4f} "
              f"| {r['mse_mean']:.4f} | {r['ssim_hard']:.3f} |" for r in table]
    print("\n".join(lines))
    # Before beta has warmed up the KL is cheap and reconstructions are better than the
    # objective's: only checkpoints at the final beta count towards the target.
    final_beta = max(float(row.get("beta") or 0) for row in rows)
    reached = [r for r in table if r["mse_hard"] <= args.target and r["beta"] >= final_beta]
    print(f"hard-count MSE <= {args.target}: " + (
        f"first at step {reached[0]['step']} ({reached[0]['minutes']:.1f} min)" if reached
        else f"not reached (best {min(r['mse_hard'] for r in table):.4f})"))
    args.out.mkdir(parents=True, exist_ok=True)
    text = ",".join(COLUMNS) + "\n" + "".join(
        ",".join(str(row[c]) for c in COLUMNS) + "\n" for row in table)
    write_text_atomic(args.out / "curve.csv", text)
    points = [(label, int(steps), float(minutes), float(mse))
              for label, steps, minutes, mse in args.point]
    figure = curve_figure(table, points, args.target, final_beta, args.out / "curve.png")
    print(f"written: {args.out / 'curve.csv'}, {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

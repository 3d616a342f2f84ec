"""The course of overdispersion while an NB-VAE trains: median model Fano factor against steps.

Trains the default NegBio-VAE (DS-C) and single changes of it (issue 34: the posterior's
dispersion parametrisation, β, the temperature's end value, the KL estimator, the latent size),
each for the same budget and seeds, and reads each run's ``metrics.csv``: since the training
tracks the posterior's median Fano factor and the fraction of units with Fano > 1.2 on the
validation set every epoch (``val_fano_median``, ``val_overdispersed_fraction``), the course is
there without extra passes. Writes

* ``overdispersion_course.md`` / ``.csv``: per setting, the median Fano factor, overdispersed
  fraction, validation MSE and KL at the end (mean ± s.d. over seeds) and the Fano factor at
  each quarter of the budget;
* ``overdispersion_course.png``: median Fano factor and validation MSE against optimizer steps,
  one line per setting and seed.

Resumable: a finished run (``loss_curves.png`` written at the end of a fit) is reused; an
unfinished one is trained again. Only ``spikelatent fit`` is used.

Example (digits, 3 minutes per run, one seed)::

    python analyses/overdispersion_course.py --data digits --minutes 3 --seeds 0 \\
        --out runs/overdispersion-course
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

import numpy as np

from spikelatent.cli import main as spikelatent_main
from spikelatent.io import write_csv_atomic, write_text_atomic
from spikelatent.plotting import new_figure, save_figure

#: Setting name -> the fit flags it changes from the default DS-C.
SETTINGS: dict[str, list[str]] = {
    "default": [],
    "posterior-logits relative": ["--posterior-logits", "relative"],
    "beta 0.5x auto": ["--beta", "half-auto"],
    "beta 2x auto": ["--beta", "double-auto"],
    "temperature-end 0.5": ["--temperature-end", "0.5"],
    "kl series": ["--kl", "series"],
    "latent-dim 64": ["--latent-dim", "64"],
}


def _auto_beta(args: argparse.Namespace) -> float | None:
    """The default run's β at its end (``--beta auto`` resolved, warm-up over): the last
    ``beta`` of its metrics.csv."""
    metrics = args.out / "runs" / f"default-s{args.seeds[0]}" / "metrics.csv"
    if not metrics.is_file():
        return None
    with metrics.open() as stream:
        rows = list(csv.DictReader(stream))
    return float(rows[-1]["beta"]) if rows and rows[-1].get("beta") else None


def setting_flags(name: str, args: argparse.Namespace) -> list[str]:
    """The fit flags of a setting, β as a multiple of the default run's resolved auto value."""
    flags = list(SETTINGS[name])
    if "--beta" in flags:
        auto = _auto_beta(args)
        if auto is None:
            raise SystemExit("train the default setting first: its resolved beta is the reference")
        index = flags.index("--beta") + 1
        flags[index] = f"{auto * (0.5 if flags[index] == 'half-auto' else 2.0):.6g}"
    return flags


def train(name: str, seed: int, args: argparse.Namespace) -> Path:
    run_dir = args.out / "runs" / f"{name.replace(' ', '-')}-s{seed}"
    if (run_dir / "loss_curves.png").is_file():
        return run_dir
    if run_dir.exists():
        shutil.rmtree(run_dir)
    flags = setting_flags(name, args)
    command = ["fit", "--data", args.data, "--model", "negbio", "--max-minutes",
               str(args.minutes), "--epochs", "100000", "--seed", str(seed), "--out",
               str(run_dir), "--no-progress", *flags]
    print("spikelatent " + " ".join(command), flush=True)
    if spikelatent_main(command) != 0:
        raise SystemExit(f"{name}, seed {seed}: spikelatent fit failed (see above)")
    return run_dir


def read_course(run_dir: Path) -> dict[str, np.ndarray]:
    with (run_dir / "metrics.csv").open() as stream:
        rows = [row for row in csv.DictReader(stream) if row.get("val_fano_median")]
    columns = ("step", "val_fano_median", "val_overdispersed_fraction", "val_mse", "val_kl")
    return {c: np.array([float(row[c]) if row.get(c) else np.nan for row in rows])
            for c in columns}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--out", type=Path, default=Path("runs/overdispersion-course"))
    args = parser.parse_args(argv)
    settings = ["default", *[s for s in args.settings if s != "default"]]
    courses = {(name, seed): read_course(train(name, seed, args))
               for name in settings for seed in args.seeds}
    rows = []
    for name in settings:
        finals = {key: np.array([courses[(name, seed)][key][-1] for seed in args.seeds])
                  for key in ("val_fano_median", "val_overdispersed_fraction", "val_mse", "val_kl")}
        quarters = np.nanmean([
            [course["val_fano_median"][min(len(course["step"]) - 1,
                                           int(q * (len(course["step"]) - 1)))]
             for q in (0.25, 0.5, 0.75)]
            for course in (courses[(name, seed)] for seed in args.seeds)], axis=0)
        row = {"setting": name, "flags": " ".join(setting_flags(name, args)) or "(defaults)",
               "steps": int(np.mean([courses[(name, s)]["step"][-1] for s in args.seeds]))}
        row.update({f"fano at {q}": f"{v:.3f}" for q, v in zip(("25%", "50%", "75%"), quarters,
                                                             strict=True)})
        for key, values in finals.items():
            row[f"{key} (end)"] = (f"{values.mean():.4g} ± {values.std(ddof=1):.2g}"
                                   if len(values) > 1 else f"{values[0]:.4g}")
        rows.append(row)
    columns = list(rows[0])
    lines = [f"# Overdispersion course: NegBio-VAE DS-C on {args.data}, {args.minutes:g} min per "
             f"run, seeds {', '.join(map(str, args.seeds))}", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
             *("| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows), "",
             "Fano: the posterior's median model Fano factor on the validation set "
             "(metrics.csv's val_fano_median); overdispersed: the fraction of units with Fano > 1.2."]
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "overdispersion_course.md", "\n".join(lines) + "\n")
    write_csv_atomic(args.out / "overdispersion_course.csv", rows, columns)
    figure, (fano_axis, mse_axis) = new_figure(11.0, 4.0, ncols=2)
    for index, name in enumerate(settings):
        for seed in args.seeds:
            course = courses[(name, seed)]
            label = name if seed == args.seeds[0] else None
            fano_axis.plot(course["step"], course["val_fano_median"], color=f"C{index}", label=label)
            mse_axis.plot(course["step"], course["val_mse"], color=f"C{index}", label=label)
    fano_axis.axhline(1.0, color="0.5", linestyle=":", label="Poisson")
    fano_axis.set(xlabel="optimizer step", ylabel="median model Fano factor (validation)")
    mse_axis.set(xlabel="optimizer step", ylabel="validation MSE", yscale="log")
    fano_axis.legend(fontsize=7)
    save_figure(figure, args.out / "overdispersion_course.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

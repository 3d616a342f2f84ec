"""Rebuild the paper's Tables 2–4 (latent representations) from a set of trained runs.

For every run directory the read-out features (``model.features``: the encoder's output) of the
train and test splits are computed, then

* fragmentation prediction (Tables 2 and 4): logistic regression trained on N = 200, 1000, 5000
  samples of one random half of the **test** split, scored on the other half, 10 repeats;
* shattering dimensionality (Tables 2 and 4): all balanced class dichotomies, logistic regression
  fitted on the first 5000 training images, scored on the test split;
* few-shot learning (Table 3): k = 1, 5, 10, 20 labelled training samples per class, logistic
  regression and k-NN, scored on the whole test split, 10 repeats.

Runs are grouped by (dataset, latent dim); within a group the best value of each column is **bold**
and the second best underlined, as in the paper. Only the public interface is used
(``spikelatent.load``, ``spikelatent.data.datamodule_from_config``, ``spikelatent.analysis``).

Examples (see analyses/README.md)::

    python analyses/latent_tables.py runs/table1-mnist/* --out runs/latent-tables
    python analyses/latent_tables.py runs/a runs/b --out /tmp/t --n-train 20 40 --repeats 2 --shots 1 5

Writes ``fragmentation.md``/``.csv`` (Tables 2 and 4: accuracy at each N and shattering
dimensionality) and ``few_shot.md``/``.csv`` (Table 3) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

import spikelatent
from spikelatent import analysis
from spikelatent.checkpoints import read_checkpoint
from spikelatent.cli import library_notices_hidden
from spikelatent.data import datamodule_from_config
from spikelatent.errors import SpikelatentError
from spikelatent.io import write_text_atomic
from spikelatent.latents import PAPER_MODEL_ORDER
from spikelatent.plotting import new_figure, save_figure

#: Row order of the paper's tables (unknown variants go last, in the order given).
MODEL_ORDER = PAPER_MODEL_ORDER
CLASSIFIER_TITLES = {"logistic": "LR", "knn": "kNN"}


# --------------------------------------------------------------------------- features


@torch.no_grad()
def features_of(model: Any, images: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    """``model.features`` of ``images`` (N, C, H, W) in batches, as float64 (N, features)."""
    parts = [
        model.features(images[start : start + batch_size]).flatten(1).double().numpy()
        for start in range(0, images.shape[0], batch_size)
    ]
    return np.concatenate(parts)


def run_datamodule(config: dict[str, Any], data_dir: str | None) -> Any:
    """The data module with the run's own split settings (seed, fractions, limit, options)."""
    return datamodule_from_config(config, data_dir)


# --------------------------------------------------------------------------- one run


def _accuracy_lists(result: Any, keys: Sequence[Any], select: Any) -> dict:
    """``{key: [accuracy per repeat]}`` from an analysis result, ``select(key)`` its coordinates."""
    return {key: [float(v) for v in result["accuracy"].sel(select(key)).values] for key in keys}


def table_entry(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """All table entries of one feature set (``(sample, feature)`` arrays and their labels).

    Returns ``{"fragmentation": {N: [accuracy per repeat]}, "shattering": [mean] or [],
    "shattering_ci": (low, high) or None, "few_shot": {(classifier, k): [accuracy per repeat]},
    "notes": [...]}``. Sizes the data cannot support (N above half the test split, more shots
    than the smallest class has training samples, an odd number of classes for shattering) are
    left out with a note. ``args`` carries ``n_train``, ``repeats``, ``shots``,
    ``shattering_images``, ``seed`` and ``n_jobs``.
    """
    notes: list[str] = []
    entry: dict[str, Any] = {"notes": notes, "fragmentation": {}, "shattering": [],
                             "shattering_ci": None, "few_shot": {}}

    half = test_x.shape[0] // 2
    sizes = [n for n in args.n_train if n <= half]
    if len(sizes) < len(args.n_train):
        notes.append(f"N > {half} (half the test split) left out")
    if sizes:
        result = analysis.fragmentation_prediction(
            test_x, test_y, n_train=sizes, n_repeats=args.repeats, seed=args.seed,
            n_jobs=args.n_jobs,
        )
        entry["fragmentation"] = _accuracy_lists(
            result, [int(n) for n in sizes], lambda n: {"n_train": n}
        )

    fit = slice(0, args.shattering_images)
    classes = np.unique(train_y[fit])
    if classes.size < 2 or classes.size % 2:
        notes.append(f"shattering needs an even number of classes; {classes.size} found")
    elif np.setdiff1d(test_y, classes).size:
        notes.append("shattering left out: a test class is missing from the fitting images")
    else:
        result = analysis.shattering_dimensionality(
            train_x[fit], train_y[fit], test_x, test_y, n_jobs=args.n_jobs, seed=args.seed
        )
        entry["shattering"] = [float(result["mean"])]
        entry["shattering_ci"] = (float(result["ci_low"]), float(result["ci_high"]))

    smallest_class = int(np.unique(train_y, return_counts=True)[1].min())
    shots = [k for k in args.shots if k <= smallest_class]
    if len(shots) < len(args.shots):
        notes.append(f"shots > {smallest_class} (smallest class) left out")
    if shots:
        result = analysis.few_shot(
            train_x, train_y, test_x, test_y, shots=shots, n_repeats=args.repeats,
            seed=args.seed, n_jobs=args.n_jobs,
        )
        keys = [(str(c), int(k)) for c in result["classifier"].values for k in shots]
        entry["few_shot"] = _accuracy_lists(
            result, keys, lambda key: {"classifier": key[0], "shot": key[1]}
        )
    return entry


def evaluate_run(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`table_entry` of one run's read-out features, with its model, dataset, latent dim
    and seed."""
    model = spikelatent.load(run_dir)
    config = dict(model.config)
    data = run_datamodule(config, args.data_dir)
    train_images, train_labels = data.split_tensors("train")
    test_images, test_labels = data.split_tensors("test")
    entry = table_entry(
        features_of(model, train_images), train_labels.numpy(),
        features_of(model, test_images), test_labels.numpy(), args,
    )
    entry.update(run_dir=str(run_dir), model=model.variant, dataset=str(config["data"]),
                 latent_dim=int(config["latent_dim"]), seed=int(config["seed"]))
    return entry


# --------------------------------------------------------------------------- tables


def rank_marks(values: Sequence[float | None]) -> list[str]:
    """``"best"``/``"second"``/``""`` per value, higher is better; compared at the printed
    precision (3 decimals), so values that print the same share a mark."""
    rounded = [None if v is None or not np.isfinite(v) else round(v, 3) for v in values]
    distinct = sorted({v for v in rounded if v is not None}, reverse=True)
    best = distinct[0] if distinct else None
    second = distinct[1] if len(distinct) > 1 else None
    return [
        "best" if v is not None and v == best else "second" if v is not None and v == second else ""
        for v in rounded
    ]


def _cell(mean: float | None, spread: str, mark: str) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    text = f"{mean:.3f}{spread}"
    return f"**{text}**" if mark == "best" else f"<u>{text}</u>" if mark == "second" else text


def _order(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(entry: dict[str, Any]) -> tuple:
        rank = (
            MODEL_ORDER.index(entry["model"]) if entry["model"] in MODEL_ORDER else len(MODEL_ORDER)
        )
        return (entry["dataset"], entry["latent_dim"], rank)

    return sorted(entries, key=key)  # stable: same key keeps the order given


def _row_names(entries: list[dict[str, Any]]) -> list[str]:
    """Model names, with the run folder added where a name repeats within a table group."""
    names = []
    for entry in entries:
        twins = [
            e
            for e in entries
            if e["model"] == entry["model"]
            and (e["dataset"], e["latent_dim"]) == (entry["dataset"], entry["latent_dim"])
        ]
        names.append(
            entry["model"]
            if len(twins) == 1
            else f"{entry['model']} ({Path(entry['run_dir']).name})"
        )
    return names


def build_tables(
    entries: list[dict[str, Any]], columns: list[tuple[str, Any]], getter: Any
) -> tuple[str, list[dict[str, Any]]]:
    """Markdown table and CSV rows. ``columns`` is ``(title, key)``; ``getter(entry, key)`` gives
    ``(mean, spread_text, csv_fields)`` or None when the entry has no value for that column."""
    entries = _order(entries)
    names = _row_names(entries)
    header = "| Dataset | Latent dim | Model | " + " | ".join(f"{t} ↑" for t, _ in columns) + " |"
    lines = [header, "|---|---:|---|" + "---:|" * len(columns)]
    cells = [
        [e["dataset"], str(e["latent_dim"]), name] for e, name in zip(entries, names, strict=True)
    ]
    csv_rows = [
        {
            "dataset": e["dataset"],
            "latent_dim": e["latent_dim"],
            "model": name,
            "run_dir": e["run_dir"],
        }
        for e, name in zip(entries, names, strict=True)
    ]
    groups: dict[tuple, list[int]] = {}
    for index, entry in enumerate(entries):
        groups.setdefault((entry["dataset"], entry["latent_dim"]), []).append(index)
    for _, key in columns:
        values = [getter(entry, key) for entry in entries]
        marks = [""] * len(entries)
        for members in groups.values():  # best/second within one dataset and latent dim
            group_marks = rank_marks([values[i][0] if values[i] else None for i in members])
            for i, mark in zip(members, group_marks, strict=True):
                marks[i] = mark
        for index, value in enumerate(values):
            if value is None:
                cells[index].append("–")
                continue
            mean, spread, fields = value
            cells[index].append(_cell(mean, spread, marks[index]))
            csv_rows[index].update(fields)
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n", csv_rows


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for a single value)."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else float("nan")


def _spread(std: float) -> str:
    return f" ± {std:.3f}" if np.isfinite(std) else ""


def fragmentation_table(
    entries: list[dict[str, Any]], n_train: Sequence[int]
) -> tuple[str, list[dict]]:
    columns = [(f"Acc (N={n})", n) for n in n_train] + [("Shat. Dim.", "shattering")]

    def getter(entry: dict[str, Any], key: Any):
        if key == "shattering":
            if not entry["shattering"]:
                return None
            mean, std = mean_std(entry["shattering"])
            fields = {"shattering": mean}
            if len(entry["shattering"]) > 1:  # several seeds: their spread
                fields["shattering_std"] = std
            elif entry.get("shattering_ci"):  # one run: its bootstrap interval (CSV only)
                low, high = entry["shattering_ci"]
                fields.update(shattering_ci_low=low, shattering_ci_high=high)
            return mean, _spread(std), fields
        if key not in entry["fragmentation"]:
            return None
        mean, std = mean_std(entry["fragmentation"][key])
        return mean, _spread(std), {f"acc_n{key}_mean": mean, f"acc_n{key}_std": std}

    return build_tables(entries, columns, getter)


def few_shot_table(entries: list[dict[str, Any]], shots: Sequence[int]) -> tuple[str, list[dict]]:
    columns = [
        (f"{CLASSIFIER_TITLES[c]} {k}-shot", (c, k)) for c in ("logistic", "knn") for k in shots
    ]

    def getter(entry: dict[str, Any], key: Any):
        if key not in entry["few_shot"]:
            return None
        mean, std = mean_std(entry["few_shot"][key])
        name = f"{key[0]}_{key[1]}shot"
        return mean, _spread(std), {f"{name}_mean": mean, f"{name}_std": std}

    return build_tables(entries, columns, getter)


#: The paper's MNIST numbers (means): Table 4 (Table 2 is its latent dim 100 rows) as
#: ``{latent dim: {model: (N=200, N=1000, N=5000, shattering)}}``, and Table 3's MNIST half as
#: ``{model: (LR 1, 5, 10, 20-shot, kNN 1, 5, 10, 20-shot)}`` (latent dim 100, the setup of Sec. 5.4).
PAPER_FRAGMENTATION: dict[int, dict[str, tuple[float, ...]]] = {
    10: {"G-VAE": (0.726, 0.798, 0.844, 0.851), "L-VAE": (0.647, 0.733, 0.781, 0.811),
         "C-VAE": (0.728, 0.812, 0.855, 0.856), "P-VAE": (0.747, 0.836, 0.883, 0.865),
         "NegBio-VAE DS-C": (0.749, 0.830, 0.878, 0.862)},
    50: {"G-VAE": (0.819, 0.922, 0.960, 0.903), "L-VAE": (0.822, 0.921, 0.960, 0.903),
         "C-VAE": (0.784, 0.888, 0.936, 0.887), "P-VAE": (0.760, 0.897, 0.951, 0.872),
         "NegBio-VAE DS-C": (0.826, 0.914, 0.952, 0.904)},
    100: {"G-VAE": (0.790, 0.914, 0.958, 0.890), "L-VAE": (0.798, 0.912, 0.958, 0.892),
          "C-VAE": (0.783, 0.896, 0.941, 0.886), "P-VAE": (0.736, 0.888, 0.947, 0.862),
          "NegBio-VAE DS-C": (0.811, 0.912, 0.955, 0.898)},
}
PAPER_FEW_SHOT: dict[str, tuple[float, ...]] = {
    "G-VAE": (0.409, 0.664, 0.736, 0.788, 0.228, 0.527, 0.653, 0.756),
    "L-VAE": (0.411, 0.666, 0.742, 0.794, 0.230, 0.534, 0.654, 0.760),
    "C-VAE": (0.443, 0.683, 0.755, 0.807, 0.283, 0.593, 0.714, 0.791),
    "P-VAE": (0.403, 0.685, 0.760, 0.838, 0.224, 0.498, 0.629, 0.720),
    "NegBio-VAE DS-C": (0.447, 0.715, 0.790, 0.865, 0.273, 0.591, 0.710, 0.786),
}
PAPER_N_TRAIN = (200, 1000, 5000)
PAPER_SHOTS = (1, 5, 10, 20)


def _ranks(values: dict[str, float]) -> dict[str, int]:
    """1 = highest, per model."""
    return {m: 1 + sum(other > v for other in values.values()) for m, v in values.items()}


def vs_paper_tables(entries: list[dict[str, Any]], dataset: str) -> str:
    """Our means beside the paper's MNIST means, cell ``ours (rank) / paper (rank)``; ranks among
    the five models within a latent dim. Only the columns and models the paper has."""
    pooled = {(e["latent_dim"], e["model"]): e for e in entries}
    dims = sorted({dim for dim, _ in pooled if dim in PAPER_FRAGMENTATION})
    caption = ("" if dataset == "mnist" else
               f" **Ours on {dataset}, the paper's on MNIST**: compare ranks, not values.")
    lines = [f"Cells: ours (rank) / paper (rank), means; rank 1 = highest of the five models.{caption}",
             "", "Fragmentation prediction and shattering dimensionality (paper Tables 2 and 4):", "",
             "| Latent dim | Model | Acc (N=200) | Acc (N=1000) | Acc (N=5000) | Shat. Dim. |",
             "|---:|---|---:|---:|---:|---:|"]

    def ours_fragmentation(entry: dict[str, Any], column: int) -> float | None:
        if column == 3:
            return float(np.mean(entry["shattering"])) if entry["shattering"] else None
        n = PAPER_N_TRAIN[column]
        return float(np.mean(entry["fragmentation"][n])) if n in entry["fragmentation"] else None

    def ours_few_shot(entry: dict[str, Any], column: int) -> float | None:
        key = ("logistic" if column < 4 else "knn", PAPER_SHOTS[column % 4])
        return float(np.mean(entry["few_shot"][key])) if key in entry["few_shot"] else None

    def rows(dim: int, paper: dict[str, tuple[float, ...]], ours_of: Any, width: int) -> list[str]:
        models = [m for m in paper if (dim, m) in pooled]
        cells = {m: [] for m in models}
        for column in range(width):
            ours = {m: ours_of(pooled[(dim, m)], column) for m in models}
            ours_rank = _ranks({m: v for m, v in ours.items() if v is not None})
            paper_rank = _ranks({m: paper[m][column] for m in models})
            for m in models:
                mine = "–" if ours[m] is None else f"{ours[m]:.3f} ({ours_rank[m]})"
                cells[m].append(f"{mine} / {paper[m][column]:.3f} ({paper_rank[m]})")
        return [f"| {dim} | {m} | " + " | ".join(cells[m]) + " |" for m in models]

    for dim in dims:
        lines += rows(dim, PAPER_FRAGMENTATION[dim], ours_fragmentation, 4)
    if 100 in {dim for dim, _ in pooled}:
        lines += ["", "Few-shot accuracy, latent dim 100 (paper Table 3, MNIST):", "",
                  "| Latent dim | Model | " + " | ".join(
                      f"{c} {k}-shot" for c in ("LR", "kNN") for k in PAPER_SHOTS) + " |",
                  "|---:|---|" + "---:|" * 8]
        lines += rows(100, PAPER_FEW_SHOT, ours_few_shot, 8)
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, Any]]) -> str:
    fieldnames: list[str] = []
    for row in rows:
        fieldnames += [key for key in row if key not in fieldnames]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# --------------------------------------------------------------------------- figure


def latent_tables_figure(entries: list[dict[str, Any]], path: Path) -> Path:
    """Fragmentation accuracy against N per model (one panel per latent dim, error bars: s.d.)
    and, in the last panel, shattering dimensionality per model against latent dim."""
    entries = _order(entries)
    dims = sorted({e["latent_dim"] for e in entries})
    figure, axes = new_figure(width=3.2 * (len(dims) + 1), height=3.2, ncols=len(dims) + 1)
    models = list(dict.fromkeys(e["model"] for e in entries))
    colors = {m: f"C{i}" for i, m in enumerate(models)}
    for ax, dim in zip(axes, dims, strict=False):
        for entry in (e for e in entries if e["latent_dim"] == dim):
            sizes = sorted(entry["fragmentation"])
            if not sizes:
                continue
            stats_ = [mean_std(entry["fragmentation"][n]) for n in sizes]
            ax.errorbar(sizes, [m for m, _ in stats_],
                        yerr=[0 if not np.isfinite(s) else s for _, s in stats_],
                        marker="o", capsize=3, color=colors[entry["model"]], label=entry["model"])
        sizes = sorted({n for e in entries if e["latent_dim"] == dim for n in e["fragmentation"]})
        ax.set(xscale="log", xlabel="training samples N", ylabel="accuracy",
               title=f"fragmentation, latent dim {dim}")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
    shattering_ax = axes[-1]
    offsets = np.linspace(-0.2, 0.2, len(models)) if len(models) > 1 else [0.0]
    for offset, model in zip(offsets, models, strict=True):
        points = [(dims.index(e["latent_dim"]) + offset, *mean_std(e["shattering"]))
                  for e in entries if e["model"] == model and e["shattering"]]
        if points:
            x, mean, std = zip(*points, strict=True)
            shattering_ax.errorbar(x, mean, yerr=[0 if not np.isfinite(s) else s for s in std],
                                   fmt="o", capsize=3, color=colors[model], label=model)
    shattering_ax.set(xticks=range(len(dims)), xticklabels=[str(d) for d in dims],
                      xlabel="latent dim", ylabel="mean dichotomy accuracy",
                      title="shattering dimensionality")
    axes[0].legend(fontsize="small")
    datasets = ", ".join(dict.fromkeys(str(e["dataset"]) for e in entries))
    figure.suptitle(f"{datasets}: linear read-outs of the latent features")
    return save_figure(figure, path)


# --------------------------------------------------------------------------- training (--train)

#: --models choices: the paper's letters (or the latent family names) → ``spikelatent fit`` options.
#: NegBio is trained as DS-C (distribution-specific KL, continuous-time relaxation: fit's defaults).
#: The C-VAE uses 5 categories per group: the paper's latent dims 10, 50 and 100 are multiples of 5
#: (2, 10 and 20 one-hot groups), and fit's default of 8 divides none of them.
TRAIN_MODELS: dict[str, dict[str, Any]] = {
    "G": {"model": "gaussian"},
    "L": {"model": "laplace"},
    "C": {"model": "categorical", "categories": 5},
    "P": {"model": "poisson"},
    "negbio": {"model": "negbio", "kl": "ds", "relax": "ct"},
}
_MODEL_ALIASES = {"gaussian": "G", "laplace": "L", "categorical": "C", "poisson": "P", "nb": "negbio"}
#: Written into a run folder once its training has finished (what makes a run "done").
DONE_FILE = "latent_tables_done.json"
#: The run's table entry, cached beside its checkpoints (recomputed when the settings change).
ENTRY_FILE = "latent_tables_entry.json"


def model_key(text: str) -> str:
    """A ``--models`` value as a key of :data:`TRAIN_MODELS` (letters or family names, any case)."""
    lowered = text.strip().lower()
    for key in TRAIN_MODELS:
        if lowered == key.lower():
            return key
    if lowered in _MODEL_ALIASES:
        return _MODEL_ALIASES[lowered]
    raise argparse.ArgumentTypeError(
        f"unknown model {text!r}; choose from {', '.join(TRAIN_MODELS)} (or gaussian, laplace, "
        "categorical, poisson)"
    )


def planned_runs(args: argparse.Namespace) -> list[tuple[str, int, int, Path]]:
    """``(model key, latent dim, seed, run folder)`` for every run of the grid, in training order."""
    return [
        (key, dim, seed, args.out / "runs" / f"{args.data}-{key}-d{dim}-s{seed}")
        for dim in args.latent_dims
        for key in args.models
        for seed in args.seeds
    ]


def train_run(key: str, latent_dim: int, seed: int, run_dir: Path, args: argparse.Namespace) -> dict:
    """Train one run with the shared budget, unless it has finished before (its done file).

    A folder without the done file is an interrupted run: it is removed and trained again from
    the start, so every run in the tables had the same budget. Returns the done file's contents
    (budget, minutes trained, optimizer steps).
    """
    done = run_dir / DONE_FILE
    if done.is_file():
        return json.loads(done.read_text())
    if run_dir.exists():
        shutil.rmtree(run_dir)
    options = {
        **TRAIN_MODELS[key],
        "data": args.data,
        "data_dir": args.data_dir,
        "latent_dim": latent_dim,
        "seed": seed,
        "epochs": args.epochs,
        "max_minutes": args.budget_minutes,
        "max_steps": args.budget_steps,
        "limit": args.limit,
        "out": str(run_dir),
    }
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    config = spikelatent.FitConfig.from_sources(preset=args.preset, **options)
    start = time.perf_counter()
    with library_notices_hidden():  # Lightning's advertisements, as under `spikelatent fit`
        model = spikelatent.fit(config, progress=False)
    record = {
        "model": model.variant,
        "budget_minutes": args.budget_minutes,
        "budget_steps": args.budget_steps,
        "train_minutes": (time.perf_counter() - start) / 60,
        "steps": int(read_checkpoint(run_dir / "checkpoints" / "last.ckpt").get("global_step", -1)),
    }
    write_text_atomic(done, json.dumps(record, indent=1))
    return record


def _evaluation_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in
            ("n_train", "repeats", "shots", "shattering_images", "seed")}


def cached_entry(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`evaluate_run`, cached in the run folder for the same evaluation settings."""
    path = run_dir / ENTRY_FILE
    settings = _evaluation_settings(args)
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("settings") == settings:
            return _entry_from_json(saved["entry"])
    entry = evaluate_run(run_dir, args)
    write_text_atomic(path, json.dumps({"settings": settings, "entry": _entry_to_json(entry)}))
    return entry


def _entry_to_json(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry,
            "fragmentation": {str(n): v for n, v in entry["fragmentation"].items()},
            "few_shot": {f"{c}/{k}": v for (c, k), v in entry["few_shot"].items()}}


def _entry_from_json(saved: dict[str, Any]) -> dict[str, Any]:
    few_shot = {}
    for key, values in saved["few_shot"].items():
        classifier, shot = key.split("/")
        few_shot[(classifier, int(shot))] = values
    return {**saved, "fragmentation": {int(n): v for n, v in saved["fragmentation"].items()},
            "few_shot": few_shot}


def _together(members: list[dict[str, Any]], part: str) -> dict:
    """The values of ``part`` of every member, concatenated per key (keys all members have)."""
    keys = set.intersection(*(set(m[part]) for m in members))
    return {k: [v for m in members for v in m[part][k]] for k in sorted(keys)}


def pool_seeds(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (dataset, latent dim, model): the accuracies of every seed and repeat
    together (so the tables show mean ± s.d. across seeds and repeats), shattering one value per
    seed (mean ± s.d. across seeds)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for entry in entries:
        groups.setdefault((entry["dataset"], entry["latent_dim"], entry["model"]), []).append(entry)
    pooled = []
    for (dataset, latent_dim, model), members in groups.items():
        pooled.append({
            "dataset": dataset, "latent_dim": latent_dim, "model": model,
            "run_dir": f"{len(members)} seeds",
            "seeds": sorted(m["seed"] for m in members),
            "fragmentation": _together(members, "fragmentation"),
            "few_shot": _together(members, "few_shot"),
            "shattering": [v for m in members for v in m["shattering"]],
            "shattering_ci": None,
            "notes": sorted({note for m in members for note in m["notes"]}),
        })
    return pooled


# --------------------------------------------------------------------------- claims


def per_seed(entries: list[dict[str, Any]], latent_dim: int, metric: Any) -> dict[str, dict]:
    """``{model: {seed: value}}`` at one latent dim; ``metric(entry)`` is the run's value (the
    mean over its repeats) or None."""
    values: dict[str, dict[int, float]] = {}
    for entry in entries:
        if entry["latent_dim"] == latent_dim:
            value = metric(entry)
            if value is not None:
                values.setdefault(entry["model"], {})[entry["seed"]] = value
    return values


def paired_test(first: dict[int, float], second: dict[int, float]) -> dict[str, float]:
    """Paired comparison over the seeds both have: mean difference (first − second), two-sided
    p-values of ``scipy.stats.ttest_rel`` and ``scipy.stats.wilcoxon`` (NaN where undefined:
    fewer than 2 seeds, or no differences at all)."""
    seeds = sorted(set(first) & set(second))
    a = np.array([first[s] for s in seeds])
    b = np.array([second[s] for s in seeds])
    result = {"n_seeds": len(seeds), "difference": float(np.mean(a - b)) if seeds else np.nan,
              "t_p": np.nan, "wilcoxon_p": np.nan}
    if len(seeds) >= 2 and np.any(a != b):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tiny samples: scipy warns, the p-value stands
            result["t_p"] = float(stats.ttest_rel(a, b).pvalue)
            result["wilcoxon_p"] = float(stats.wilcoxon(a, b).pvalue)
    return result


def claim_verdict(reference: str, values: dict[str, dict], allowed_rank: int,
                  against: Sequence[str] | None = None) -> tuple[str, list[str]]:
    """Whether ``reference`` ranks within the first ``allowed_rank`` (by the mean over seeds)
    among the models in ``values`` (or only against the models in ``against``), with a paired test
    against each model; returns the verdict and one table row per comparison."""
    others = [m for m in (against or values) if m != reference and m in values]
    if reference not in values or not others:
        return "not testable (models missing at this latent dim)", []
    if min(len(v) for v in values.values()) < 2:
        return "not testable (fewer than 2 seeds)", []
    means = {m: float(np.mean(list(values[m].values()))) for m in [reference, *others]}
    rank = 1 + sum(means[m] > means[reference] for m in others)
    tests = {m: paired_test(values[reference], values[m]) for m in others}
    rows = [f"| {reference} − {m} | {t['difference']:+.4f} | {t['n_seeds']} | {t['t_p']:.3g} | "
            f"{t['wilcoxon_p']:.3g} |" for m, t in tests.items()]
    beaten = [m for m in others if means[m] > means[reference]]
    significant = [m for m in beaten if tests[m]["t_p"] < 0.05]
    if rank <= allowed_rank:
        # Ahead on the means is not ahead: say which leads the paired test tells from chance.
        behind = [m for m in others if means[m] < means[reference]]
        clear = [m for m in behind if tests[m]["t_p"] < 0.05]
        margin = (f"; significantly ahead of {', '.join(clear)}" if clear
                  else "; ahead of none significantly" if behind else "")
        if clear and len(clear) < len(behind):
            margin += f", not of {', '.join(m for m in behind if m not in clear)}"
        verdict = f"reproduced on the means (rank {rank}{margin})"
    else:
        verdict = (f"not reproduced (rank {rank}; ahead: {', '.join(beaten)}"
                   + (f"; significantly by the paired t-test: {', '.join(significant)})"
                      if significant else "; none significantly by the paired t-test)"))
    return verdict, rows


def claims_report(entries: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The paper's representation claims, each with a verdict and paired tests across seeds."""
    negbio, gaussian, poisson = "NegBio-VAE DS-C", "G-VAE", "P-VAE"

    def fragmentation_at(n: int):
        return lambda e: (float(np.mean(e["fragmentation"][n])) if n in e["fragmentation"]
                          else None)

    def few_shot_at(classifier: str, k: int):
        return lambda e: (float(np.mean(e["few_shot"][(classifier, k)]))
                          if (classifier, k) in e["few_shot"] else None)

    def shattering(e):
        return e["shattering"][0] if e["shattering"] else None

    claims: list[tuple[str, int, Any, str, int, Sequence[str] | None]] = []
    n_first = 200 if 200 in args.n_train else min(args.n_train)
    dims = sorted({e["latent_dim"] for e in entries})
    for dim in dims:
        claims.append((f"NegBio best or second in fragmentation at N = {n_first}", dim,
                       fragmentation_at(n_first), negbio, 2, None))
    # Table 3 is at the setup of Sec. 5.4 (latent dim 100); the largest dim stands in for it.
    few_shot_dim = 100 if 100 in dims else max(dims)
    for k in args.shots:
        claims.append((f"NegBio best in few-shot (logistic regression, {k}-shot)", few_shot_dim,
                       few_shot_at("logistic", k), negbio, 1, None))
    for dim in [d for d in dims if d in (50, 100)]:
        claims.append(("shattering dimensionality of NegBio ≥ the Gaussian's", dim, shattering,
                       negbio, 1, [gaussian]))
    if 10 in dims:
        # Table 4 at latent dim 10: the P-VAE leads at N = 1000 and 5000 and in shattering
        # (NegBio leads at N = 200 by 0.002).
        for n in [n for n in args.n_train if n > n_first]:
            claims.append((f"P-VAE best (fragmentation, N = {n})", 10,
                           fragmentation_at(n), poisson, 1, None))
        claims.append(("P-VAE best (shattering)", 10, shattering, poisson, 1,
                       None))
    lines = ["Claims, each against the paper's; values per seed are a run's mean over its "
             "repeats, p-values two-sided and paired across seeds (scipy.stats.ttest_rel, "
             "scipy.stats.wilcoxon).\n"]
    for title, dim, metric, reference, allowed_rank, against in claims:
        verdict, rows = claim_verdict(reference, per_seed(entries, dim, metric), allowed_rank,
                                      against)
        lines.append(f"### {title}, latent dim {dim}: {verdict}\n")
        if rows:
            lines += ["| comparison | mean difference | seeds | t-test p | Wilcoxon p |",
                      "|---|---:|---:|---:|---:|", *rows, ""]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command line


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Rebuild the paper's Tables 2-4 (fragmentation, shattering, few-shot) from "
        "runs, or train the runs first (--train)."
    )
    parser.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", type=Path,
                        help="run directories (without --train)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the tables")
    parser.add_argument("--data-dir", help="folder holding the dataset files")
    parser.add_argument(
        "--n-train",
        nargs="+",
        type=_positive,
        default=[200, 1000, 5000],
        metavar="N",
        help="fragmentation training sizes (default 200 1000 5000)",
    )
    parser.add_argument(
        "--repeats",
        type=_positive,
        default=10,
        help="repeats of fragmentation and few-shot (default 10)",
    )
    parser.add_argument(
        "--shots",
        nargs="+",
        type=_positive,
        default=[1, 5, 10, 20],
        metavar="K",
        help="few-shot samples per class (default 1 5 10 20)",
    )
    parser.add_argument(
        "--shattering-images",
        type=_positive,
        default=5000,
        metavar="N",
        help="training images the shattering read-outs are fitted on (default 5000)",
    )
    parser.add_argument("--n-jobs", type=int, default=-1, help="parallel fits (-1: all cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of splits and draws (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train = parser.add_argument_group(
        "training (--train): every (model, latent dim, seed) with the same budget, into "
        "OUT/runs/; a finished run is not trained again"
    )
    train.add_argument("--train", action="store_true", help="train the runs, then build the tables")
    train.add_argument("--data", default="mnist", help="dataset to train on (default mnist)")
    train.add_argument("--latent-dims", nargs="+", type=_positive, default=[10, 50, 100],
                       metavar="K", help="latent dims (default 10 50 100)")
    train.add_argument("--models", nargs="+", type=model_key, default=list(TRAIN_MODELS),
                       metavar="M", help="models: G L C P negbio (default all five)")
    train.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="S",
                       help="training seeds (default 0 1 2)")
    train.add_argument("--budget-minutes", type=_positive_float, metavar="MIN",
                       help="wall-clock training budget per run (spikelatent fit --max-minutes)")
    train.add_argument("--budget-steps", type=_positive, metavar="STEPS",
                       help="optimizer-step budget per run (spikelatent fit --max-steps)")
    train.add_argument("--epochs", type=_positive, default=1000,
                       help="epoch cap (default 1000: the budget is what stops a run)")
    train.add_argument("--batch-size", type=_positive, help="batch size (default: fit's)")
    train.add_argument("--limit", type=_positive, help="training images (default: all)")
    train.add_argument("--preset", help="spikelatent fit preset under the options above")
    args = parser.parse_args(argv)
    if args.train and args.run_dirs:
        parser.error("give run directories or --train, not both")
    if not args.train and not args.run_dirs:
        parser.error("give run directories, or --train to train them")
    if args.train and args.budget_minutes is None and args.budget_steps is None:
        parser.error("--train needs a budget: --budget-minutes and/or --budget-steps")
    args.models = list(dict.fromkeys(args.models))
    return args


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def claim_run(run_dir: Path) -> bool:
    """Take ``run_dir`` for this process (its lock file holds our pid); False while another live
    process holds it. A lock whose process has ended (a crash, Ctrl-C) is taken over, so two
    invocations of the same command (one per core) share the grid and neither trains a run twice."""
    lock = run_dir.parent / f"{run_dir.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(lock.read_text() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder == os.getpid():
                return True
            if holder and _process_alive(holder):
                return False
            lock.unlink(missing_ok=True)  # its process has ended
            continue
        with os.fdopen(handle, "w") as file:
            file.write(str(os.getpid()))
        return True
    return False


def release_run(run_dir: Path) -> None:
    (run_dir.parent / f"{run_dir.name}.lock").unlink(missing_ok=True)


def train_all(args: argparse.Namespace, poll_seconds: float = 30.0) -> tuple[list[Path], list[dict[str, Any]]]:
    """Train (or find finished) every run of the grid, reading each run out as soon as it is
    trained; their folders and done records.

    Runs another process is training (the same command started again, e.g. once per core) are
    skipped and waited for at the end, so the tables are built from the whole grid.
    """
    runs = planned_runs(args)
    records: dict[Path, dict[str, Any]] = {}
    bar = tqdm(total=len(runs), desc="runs", disable=True if args.no_progress else None)
    while len(records) < len(runs):
        progressed = False
        for key, dim, seed, run_dir in runs:
            if run_dir in records:
                continue
            if not (run_dir / DONE_FILE).is_file() and not claim_run(run_dir):
                continue  # another process is training it
            bar.set_postfix_str(f"{key} d{dim} s{seed}")
            try:
                record = train_run(key, dim, seed, run_dir, args)
                cached_entry(run_dir, args)  # read out now: the final tables only collect
            finally:
                release_run(run_dir)
            records[run_dir] = {**record, "latent_dim": dim, "seed": seed, "run_dir": str(run_dir)}
            bar.update()
            progressed = True
        if not progressed and len(records) < len(runs):
            bar.set_postfix_str("waiting for runs other processes train")
            time.sleep(poll_seconds)
    bar.close()
    return [run[3] for run in runs], [records[run[3]] for run in runs]


def budget_text(records: list[dict[str, Any]]) -> str:
    """One line per model: the budget, minutes and steps its runs trained."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in records):
        mine = [r for r in records if r["model"] == model]
        minutes = [r["train_minutes"] for r in mine]
        steps = [r["steps"] for r in mine]
        lines.append(f"- {model}: {len(mine)} runs, {min(minutes):.2f}-{max(minutes):.2f} min "
                     f"(wall clock incl. validation), {min(steps)}-{max(steps)} optimizer steps")
    first = records[0]
    limits = [f"{first['budget_minutes']} min" if first["budget_minutes"] else "",
              f"{first['budget_steps']} optimizer steps" if first["budget_steps"] else ""]
    head = "Budget per run: " + " and ".join(limit for limit in limits if limit)
    return head + "\n" + "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.n_train = sorted(set(args.n_train))
    args.shots = sorted(set(args.shots))
    records: list[dict[str, Any]] = []
    try:
        run_dirs = args.run_dirs
        if args.train:
            run_dirs, records = train_all(args)
        entries = [
            cached_entry(run_dir, args) if args.train else evaluate_run(run_dir, args)
            for run_dir in tqdm(run_dirs, desc="read-outs",
                                disable=True if args.no_progress else None)
        ]
        table_entries = pool_seeds(entries) if args.train else entries
        fragmentation_md, fragmentation_rows = fragmentation_table(table_entries, args.n_train)
        few_shot_md, few_shot_rows = few_shot_table(table_entries, args.shots)
    except SpikelatentError as error:
        print(f"latent_tables: error: {error}", file=sys.stderr)
        return 2
    notes = [
        f"- {e['model']} ({e['run_dir']}): {'; '.join(e['notes'])}"
        for e in table_entries if e["notes"]
    ]
    footer = ("\n" + "\n".join(notes) + "\n") if notes else ""
    spread = (f"mean ± s.d. over {len(args.seeds)} seed(s) × {args.repeats} repeats"
              if args.train else f"mean ± s.d. over {args.repeats} repeats")
    shattering_spread = (f"; mean ± s.d. over {len(args.seeds)} seed(s)" if args.train else "")
    dataset = f"Dataset: {args.data}. " if args.train else ""
    budget = ("\n" + budget_text(records) + "\n") if records else ""
    intro_fragmentation = (
        f"{dataset}Fragmentation prediction (logistic regression on N samples of one half of the "
        f"test split, accuracy on the other half; {spread}) and shattering dimensionality (mean "
        f"accuracy over balanced dichotomies{shattering_spread}). Paper Tables 2 and 4.\n{budget}\n"
    )
    intro_few_shot = (
        f"{dataset}Few-shot accuracy on the test split (k training samples per class; {spread}). "
        f"Paper Table 3.\n{budget}\n"
    )
    written = {
        "fragmentation.md": intro_fragmentation + fragmentation_md + footer,
        "fragmentation.csv": csv_text(fragmentation_rows),
        "few_shot.md": intro_few_shot + few_shot_md + footer,
        "few_shot.csv": csv_text(few_shot_rows),
    }
    if args.train:
        written["claims.md"] = claims_report(entries, args)
        written["vs_paper.md"] = vs_paper_tables(table_entries, args.data)
    for name, text in written.items():
        write_text_atomic(args.out / name, text)
    written["latent_tables.png"] = latent_tables_figure(table_entries, args.out / "latent_tables.png")
    print(fragmentation_md)
    print(few_shot_md)
    if args.train:
        print(budget_text(records))
        print(written["claims.md"])
    print(f"written: {', '.join(str(args.out / name) for name in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

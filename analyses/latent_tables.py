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
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import spikelatent
from spikelatent import analysis
from spikelatent.data import datamodule_from_config
from spikelatent.errors import SpikelatentError
from spikelatent.latents import PAPER_MODEL_ORDER

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


def evaluate_run(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """All table entries of one run: ``{"info": ..., "fragmentation": {N: (mean, std)}, ...}``.

    Sizes the data cannot support (N above half the test split, more shots than the smallest
    class has training samples, an odd number of classes for shattering) are left out with a note.
    """
    model = spikelatent.load(run_dir)
    config = dict(model.config)
    data = run_datamodule(config, args.data_dir)
    train_images, train_labels = data.split_tensors("train")
    test_images, test_labels = data.split_tensors("test")
    train_x, train_y = features_of(model, train_images), train_labels.numpy()
    test_x, test_y = features_of(model, test_images), test_labels.numpy()
    notes: list[str] = []
    entry: dict[str, Any] = {
        "run_dir": str(run_dir),
        "model": model.variant,
        "dataset": str(config["data"]),
        "latent_dim": int(config["latent_dim"]),
        "notes": notes,
    }

    half = test_x.shape[0] // 2
    sizes = [n for n in args.n_train if n <= half]
    if len(sizes) < len(args.n_train):
        notes.append(f"N > {half} (half the test split) left out")
    entry["fragmentation"] = {}
    if sizes:
        result = analysis.fragmentation_prediction(
            test_x,
            test_y,
            n_train=sizes,
            n_repeats=args.repeats,
            seed=args.seed,
            n_jobs=args.n_jobs,
        )
        entry["fragmentation"] = {
            int(n): (float(result["mean"].sel(n_train=n)), float(result["std"].sel(n_train=n)))
            for n in sizes
        }

    fit = slice(0, args.shattering_images)
    classes = np.unique(train_y[fit])
    entry["shattering"] = None
    if classes.size < 2 or classes.size % 2:
        notes.append(f"shattering needs an even number of classes; {classes.size} found")
    elif np.setdiff1d(test_y, classes).size:
        notes.append("shattering left out: a test class is missing from the fitting images")
    else:
        result = analysis.shattering_dimensionality(
            train_x[fit], train_y[fit], test_x, test_y, n_jobs=args.n_jobs, seed=args.seed
        )
        entry["shattering"] = (
            float(result["mean"]),
            float(result["ci_low"]),
            float(result["ci_high"]),
        )

    smallest_class = int(np.unique(train_y, return_counts=True)[1].min())
    shots = [k for k in args.shots if k <= smallest_class]
    if len(shots) < len(args.shots):
        notes.append(f"shots > {smallest_class} (smallest class) left out")
    entry["few_shot"] = {}
    if shots:
        result = analysis.few_shot(
            train_x,
            train_y,
            test_x,
            test_y,
            shots=shots,
            n_repeats=args.repeats,
            seed=args.seed,
            n_jobs=args.n_jobs,
        )
        entry["few_shot"] = {
            (str(c), int(k)): (
                float(result["mean"].sel(classifier=c, shot=k)),
                float(result["std"].sel(classifier=c, shot=k)),
            )
            for c in result["classifier"].values
            for k in shots
        }
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


def _spread(std: float) -> str:
    return f" ± {std:.3f}" if np.isfinite(std) else ""


def fragmentation_table(
    entries: list[dict[str, Any]], n_train: Sequence[int]
) -> tuple[str, list[dict]]:
    columns = [(f"Acc (N={n})", n) for n in n_train] + [("Shat. Dim.", "shattering")]

    def getter(entry: dict[str, Any], key: Any):
        if key == "shattering":
            value = entry["shattering"]
            if value is None:
                return None
            mean, low, high = value
            return (
                mean,
                "",
                {"shattering": mean, "shattering_ci_low": low, "shattering_ci_high": high},
            )
        if key not in entry["fragmentation"]:
            return None
        mean, std = entry["fragmentation"][key]
        return mean, _spread(std), {f"acc_n{key}_mean": mean, f"acc_n{key}_std": std}

    return build_tables(entries, columns, getter)


def few_shot_table(entries: list[dict[str, Any]], shots: Sequence[int]) -> tuple[str, list[dict]]:
    columns = [
        (f"{CLASSIFIER_TITLES[c]} {k}-shot", (c, k)) for c in ("logistic", "knn") for k in shots
    ]

    def getter(entry: dict[str, Any], key: Any):
        if key not in entry["few_shot"]:
            return None
        mean, std = entry["few_shot"][key]
        name = f"{key[0]}_{key[1]}shot"
        return mean, _spread(std), {f"{name}_mean": mean, f"{name}_std": std}

    return build_tables(entries, columns, getter)


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", newline="") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def csv_text(rows: list[dict[str, Any]]) -> str:
    fieldnames: list[str] = []
    for row in rows:
        fieldnames += [key for key in row if key not in fieldnames]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# --------------------------------------------------------------------------- command line


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Rebuild the paper's Tables 2-4 (fragmentation, shattering, few-shot) from runs."
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", type=Path, help="run directories")
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
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.n_train = sorted(set(args.n_train))
    args.shots = sorted(set(args.shots))
    try:
        entries = []
        for run_dir in tqdm(args.run_dirs, desc="runs", disable=True if args.no_progress else None):
            entries.append(evaluate_run(run_dir, args))
        fragmentation_md, fragmentation_rows = fragmentation_table(entries, args.n_train)
        few_shot_md, few_shot_rows = few_shot_table(entries, args.shots)
    except SpikelatentError as error:
        print(f"latent_tables: error: {error}", file=sys.stderr)
        return 2
    notes = [
        f"- {e['model']} ({e['run_dir']}): {'; '.join(e['notes'])}" for e in entries if e["notes"]
    ]
    footer = ("\n" + "\n".join(notes) + "\n") if notes else ""
    intro_fragmentation = (
        f"Fragmentation prediction (logistic regression on N samples of one half of the test split, "
        f"accuracy on the other half; mean ± s.d. over {args.repeats} repeats) and shattering "
        f"dimensionality (mean accuracy over balanced dichotomies). Paper Tables 2 and 4.\n\n"
    )
    intro_few_shot = (
        f"Few-shot accuracy on the test split (k training samples per class; mean ± s.d. over "
        f"{args.repeats} repeats). Paper Table 3.\n\n"
    )
    write_text_atomic(
        args.out / "fragmentation.md", intro_fragmentation + fragmentation_md + footer
    )
    write_text_atomic(args.out / "fragmentation.csv", csv_text(fragmentation_rows))
    write_text_atomic(args.out / "few_shot.md", intro_few_shot + few_shot_md + footer)
    write_text_atomic(args.out / "few_shot.csv", csv_text(few_shot_rows))
    print(fragmentation_md)
    print(few_shot_md)
    print(
        f"written: {', '.join(str(args.out / n) for n in ('fragmentation.md', 'fragmentation.csv', 'few_shot.md', 'few_shot.csv'))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

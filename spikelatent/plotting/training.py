"""Training figures: per-epoch loss, reconstruction and KL curves of a run."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from spikelatent.errors import SpikelatentError
from spikelatent.plotting.save import new_figure, save_figure

__all__ = ["save_loss_curves"]

LossInput = str | os.PathLike | Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]] | Any

# Panels and the metric names (after the train_/val_ prefix) each one draws, first match wins.
LOSS_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("loss", ("loss",)),
    ("reconstruction (SSE)", ("sse", "recon", "reconstruction")),
    ("KL", ("kl",)),
)
#: Column prefix of each split in metrics.csv and its legend label.
CURVE_LABELS = (("train", "train"), ("val", "validation"))


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan  # empty CSV cells (Lightning writes train and val rows apart)


def _read_metric_columns(metrics: LossInput) -> dict[str, list[float]]:
    """Columns of floats from a CSV path, a column mapping, a row list or a DataFrame."""
    if isinstance(metrics, (str, os.PathLike)):
        path = Path(metrics)
        if not path.is_file():
            raise SpikelatentError(f"metrics file not found: {str(path)!r}")
        with path.open(newline="") as handle:
            metrics = list(csv.DictReader(handle))
    elif hasattr(metrics, "to_dict") and hasattr(metrics, "columns"):  # a pandas DataFrame
        metrics = metrics.to_dict(orient="list")
    if isinstance(metrics, Mapping):
        columns = {str(k): [_as_float(v) for v in values] for k, values in metrics.items()}
        lengths = {len(values) for values in columns.values()}
        if len(lengths) > 1:
            raise SpikelatentError("metric columns have different lengths; give one value per row")
        return columns
    if isinstance(metrics, Iterable):
        rows = list(metrics)
        if not all(isinstance(row, Mapping) for row in rows):
            raise SpikelatentError(
                "metrics must be a CSV path, a column mapping or a list of row dicts"
            )
        names = list(dict.fromkeys(str(k) for row in rows for k in row))
        return {name: [_as_float(row.get(name)) for row in rows] for name in names}
    raise SpikelatentError(
        f"metrics must be a CSV path, a column mapping or a list of row dicts, got {type(metrics).__name__}"
    )


def _canonical_columns(columns: dict[str, list[float]]) -> dict[str, list[float]]:
    """``train/loss`` → ``train_loss``; Lightning's ``*_epoch`` kept, ``*_step`` dropped."""
    canonical: dict[str, list[float]] = {}
    for name, values in columns.items():
        key = name.strip().lower().replace("/", "_").replace("-", "_")
        if key.endswith("_step"):
            continue
        if key.endswith("_epoch") and key != "epoch":
            key = key[: -len("_epoch")]
            if key in canonical:
                continue
        canonical.setdefault(key, values)
    return canonical


def _per_epoch(epochs: list[float], values: list[float]) -> tuple[list[float], list[float]]:
    """The last finite value of each epoch, in epoch order."""
    last: dict[float, float] = {}
    for epoch, value in zip(epochs, values, strict=True):
        if math.isfinite(epoch) and math.isfinite(value):
            last[epoch] = value
    ordered = sorted(last)
    return ordered, [last[epoch] for epoch in ordered]


def save_loss_curves(metrics: LossInput, path: str | os.PathLike, title: str | None = None) -> Path:
    """Plot per-epoch train/validation curves: loss, reconstruction (SSE) and KL panels.

    Args:
        metrics: a CSV path (e.g. the run's ``metrics.csv``), a mapping column → values, a list of
            row dicts, or a pandas DataFrame. Columns used: ``epoch`` and any of ``train_loss``,
            ``val_loss``, ``train_sse``/``val_sse`` (or ``*_recon``), ``train_kl``/``val_kl``;
            ``train/loss`` and Lightning's ``*_epoch`` names are accepted, ``*_step`` ignored.
            Missing columns just drop their curve (or panel); empty cells and non-finite values
            are skipped; with several rows per epoch the last value counts. Without ``epoch`` the
            row number is used.
        path: figure file (``.png``, ``.pdf``, ``.svg``, ...).

    Raises:
        SpikelatentError: no usable column, or unreadable input.
    """
    columns = _canonical_columns(_read_metric_columns(metrics))
    row_count = max((len(v) for v in columns.values()), default=0)
    if "epoch" in columns:
        x_values, x_label = columns["epoch"], "epoch"
    else:
        x_values, x_label = [float(i) for i in range(1, row_count + 1)], "row"

    panels: list[tuple[str, list[tuple[str, list[float], list[float]]]]] = []
    for panel_title, names in LOSS_PANELS:
        curves = []
        for prefix, split_label in CURVE_LABELS:
            column = next((f"{prefix}_{n}" for n in names if f"{prefix}_{n}" in columns), None)
            if column is None:
                continue
            xs, ys = _per_epoch(x_values, columns[column])
            if xs:
                curves.append((split_label, xs, ys))
        if curves:
            panels.append((panel_title, curves))
    if not panels:
        raise SpikelatentError(
            "no loss columns to plot: expected some of train_loss, val_loss, train_sse, val_sse, "
            f"train_kl, val_kl; found {', '.join(columns) or 'none'}"
        )

    figure, all_axes = new_figure(4.0 * len(panels), 3.4, ncols=len(panels))
    for axes, (panel_title, curves) in zip(all_axes, panels, strict=True):
        for split_label, xs, ys in curves:
            axes.plot(
                xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, label=split_label
            )
        axes.set_title(panel_title)
        axes.set_xlabel(x_label)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend(frameon=False)
    if title:
        figure.suptitle(title)
    return save_figure(figure, path)

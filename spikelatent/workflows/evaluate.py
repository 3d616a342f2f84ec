"""Evaluate trained runs (paper Table 1) and compare several runs in the paper's layout.

``evaluate_run(run_dir)`` loads the run's model and dataset split, computes reconstruction metrics
(MSE, SSIM; sample and "MAP" = posterior-mean reconstructions) and generation metrics (FID@5k,
FID@10k, KID against the split), and writes ``metrics.json``, a row of ``evaluations.csv``,
``evaluate_reconstructions.png`` and ``evaluate_samples.png`` in the run directory (beside, not over,
the figures ``spikelatent fit`` wrote).

``compare_runs(run_dirs, out_dir)`` reads their ``metrics.json`` and writes ``comparison.md`` and
``comparison.csv`` (rows: models, columns: MSE, SSIM, FID@5k, FID@10k, KID; best in bold, second
underlined) and ``comparison_reconstructions.png`` (each model's reconstructions of the same
test images).
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from spikelatent import __version__, options, plotting
from spikelatent._checks import check_int
from spikelatent.checkpoints import checkpoint_path, load
from spikelatent.config import read_yaml_options
from spikelatent.data import SPLITS, datamodule_from_config
from spikelatent.errors import CheckpointError, SpikelatentError
from spikelatent.inference import reconstruct_images
from spikelatent.io import json_number, read_parsed, write_csv_atomic, write_text_atomic
from spikelatent.latents import PAPER_MODEL_ORDER
from spikelatent.metrics import generation_metrics, make_feature_extractor, reconstruction_metrics
from spikelatent.metrics.features import resolve_feature_kind

METRICS_FILE = "metrics.json"
EVALUATIONS_FILE = "evaluations.csv"
COMPARISON_MARKDOWN = "comparison.md"
COMPARISON_CSV = "comparison.csv"
COMPARISON_FIGURE = "comparison_reconstructions.png"
#: evaluate's figures: names of their own, so fit's reconstructions.png and samples.png stay.
RECONSTRUCTIONS_FIGURE = "evaluate_reconstructions.png"
SAMPLES_FIGURE = "evaluate_samples.png"

#: What ``--features none`` leaves out (written as null).
GENERATION_KEYS = ("fid_5k", "fid_10k", "n_generated_5k", "n_generated_10k", "kid_mean", "kid_std")

#: Nominal numbers of generated images for FID (the paper's FID@5k and FID@10k).
FID_SAMPLE_COUNTS = (5000, 10000)

#: The paper's row order; other names follow in the order given.
MODEL_ORDER = PAPER_MODEL_ORDER

#: Table columns: (header, metrics.json key, lower is better). KID also shows ``kid_std``.
TABLE_COLUMNS = (
    ("MSE", "mse", True),
    ("SSIM", "ssim", False),
    ("FID@5k", "fid_5k", True),
    ("FID@10k", "fid_10k", True),
    ("KID", "kid_mean", True),
)


# --------------------------------------------------------------------------- small helpers


def display_name(config: Mapping[str, Any]) -> str:
    """The paper's name of a run's model from its configuration (or ``metrics.json``), e.g.
    ``NegBio-VAE MC-G``; built by :func:`spikelatent.options.display_name`."""
    return options.display_name(str(config.get("model", "")),
                                str(config.get("kl", options.KL.default)),
                                str(config.get("relax", options.RELAX.default)))


def _append_csv_row(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to a CSV, widening the header if new columns appear (rewritten atomically)."""
    rows: list[dict[str, Any]] = []
    fieldnames: list[str] = []
    if path.is_file():
        with path.open(newline="") as stream:
            reader = csv.DictReader(stream)
            fieldnames = list(reader.fieldnames or [])
            rows = list(reader)
    fieldnames += [key for key in row if key not in fieldnames]
    write_csv_atomic(path, [*rows, row], fieldnames)


def _resolve_device(device: str | torch.device | None) -> torch.device:
    try:
        resolved = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except (RuntimeError, TypeError):
        raise SpikelatentError(
            f"--device must be a torch device such as cpu or cuda:0; got {device!r}"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SpikelatentError(f"--device {device}: CUDA is not available here; use --device cpu")
    return resolved


# --------------------------------------------------------------------------- evaluate


def evaluate_run(
    run_dir: str | os.PathLike,
    split: str = "test",
    n_samples: int = 10000,
    features: str = "auto",
    batch_size: int = 500,
    data_dir: str | os.PathLike | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    progress: bool | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Compute a run's Table 1 metrics and write them into the run directory.

    Args:
        run_dir: a directory written by ``spikelatent fit``.
        split: the real images: ``test`` (Table 1), ``val`` or ``train``.
        n_samples: generated images at most; FID@5k and FID@10k use ``min(5000, n_samples)`` and
            ``min(10000, n_samples)`` (the numbers used are recorded as ``n_generated_5k`` ...).
        features: FID/KID feature extractor: ``inception`` (needs its weights file), ``classifier``
            (trained on the run's dataset and cached), or ``auto`` = ``inception`` if its weights
            are present, else an error (never a silent switch).
        batch_size: images per forward pass.
        data_dir: where the dataset files are (default: the run's ``data_dir``, then the usual places).
        kid_subsets, kid_subset_size: KID subsets (mean ± std over subsets).
        seed: seeds reconstruction sampling, generation and KID subsets.
        progress: progress bars (``None``: only on a terminal).
        device: where the model and the extractor run (default: CUDA if available, else CPU).

    Returns:
        The flat dict written to ``metrics.json``: ``mse``, ``mse_01``, ``ssim`` (sample
        reconstructions: hard counts for count families, a posterior sample otherwise),
        ``mse_map``, ``mse_01_map``, ``ssim_map`` (posterior mean), ``fid_5k``, ``fid_10k``,
        ``kid_mean``, ``kid_std``, ``features`` (which extractor produced FID/KID) and
        provenance (model name, dataset, split, sample counts, checkpoint, version, time).
    """
    run_dir = Path(run_dir)
    if split not in SPLITS:
        raise SpikelatentError(f"--split must be one of {', '.join(SPLITS)}; got {split!r}")
    check_int(n_samples, "--n-samples", 2)
    check_int(batch_size, "--batch-size", 1)
    if not run_dir.is_dir():
        raise CheckpointError(
            f"no run directory at {run_dir}; train one with `spikelatent fit --out {run_dir}`"
        )
    checkpoint_path(run_dir)  # a folder that is not a run is named as such, before anything else
    # The extractor choice is checked before the (slow) model and data loading.
    # "none": reconstruction metrics only (unlabelled data such as natural patches have no
    # classifier features, and no Inception weights may be at hand).
    feature_kind = "none" if features == "none" else resolve_feature_kind(features)
    extractor = make_feature_extractor("inception") if feature_kind == "inception" else None

    device = _resolve_device(device)
    model = load(run_dir).to(device)
    config = dict(model.config)
    datamodule = datamodule_from_config(config, data_dir)
    images, _ = datamodule.split_tensors(split)
    if images.shape[0] < 2:
        raise SpikelatentError(f"the {split} split of {config['data']} has fewer than 2 images")
    data_range = tuple(float(v) for v in datamodule.data_range)
    model_name = getattr(model, "variant", None) or display_name(config)

    metrics: dict[str, Any] = {
        "model_name": model_name,
        "dataset": str(config["data"]),
        "split": split,
    }
    recon_sample = reconstruct_images(model, images, "sample", batch_size, seed)
    recon_map = reconstruct_images(model, images, "mean", batch_size, seed)
    sample_metrics = reconstruction_metrics(images, recon_sample, data_range, batch_size=batch_size)
    map_metrics = reconstruction_metrics(images, recon_map, data_range, batch_size=batch_size)
    metrics.update(
        mse=sample_metrics["mse"], mse_01=sample_metrics["mse_01"], ssim=sample_metrics["ssim"]
    )
    metrics.update(
        mse_map=map_metrics["mse"], mse_01_map=map_metrics["mse_01"], ssim_map=map_metrics["ssim"]
    )
    metrics["n_images"] = sample_metrics["n_images"]

    if feature_kind == "none":
        metrics.update({key: None for key in GENERATION_KEYS}, features="none")
    else:
        if extractor is None:
            extractor = make_feature_extractor(
                "classifier", datamodule=datamodule, progress=progress
            )
        extractor = extractor.to(device)
        metrics.update(
            generation_metrics(
                images,
                model.generate,
                extractor,
                n_samples=FID_SAMPLE_COUNTS,
                max_generated=n_samples,
                kid_subsets=kid_subsets,
                kid_subset_size=kid_subset_size,
                data_range=data_range,
                batch_size=batch_size,
                seed=seed,
                progress=progress,
            )
        )
    metrics.update(
        features_kind=feature_kind,
        reconstruction_mode="sample (hard counts for count families, posterior sample otherwise); *_map: posterior mean",
        data_range=list(data_range),
        model=config.get("model"),
        kl=config.get("kl"),
        relax=config.get("relax"),
        latent_dim=config.get("latent_dim"),
        arch=config.get("arch"),
        checkpoint=str(getattr(model, "checkpoint_path", "")),
        run_dir=str(run_dir),
        seed=seed,
        device=str(device),
        spikelatent_version=__version__,
        evaluated_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )

    write_text_atomic(run_dir / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    _append_csv_row(
        run_dir / EVALUATIONS_FILE, {k: v for k, v in metrics.items() if k != "data_range"}
    )

    n_show = min(10, images.shape[0])
    plotting.save_reconstructions(
        images[:n_show],
        recon_sample[:n_show],
        run_dir / RECONSTRUCTIONS_FIGURE,
        data_range=data_range,
        n=n_show,
    )
    cuda_devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.no_grad(), torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        samples = model.generate(100).cpu()
    plotting.save_image_grid(
        samples,
        run_dir / SAMPLES_FIGURE,
        nrow=10,
        data_range=data_range,
        title=f"{model_name}: samples from the prior",
    )
    return metrics


# --------------------------------------------------------------------------- compare


def read_metrics(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A run's ``metrics.json`` (written by :func:`evaluate_run`)."""
    path = Path(run_dir) / METRICS_FILE
    metrics = read_parsed(
        path,
        json.loads,
        json.JSONDecodeError,
        not_found=f"{path} not found; run `spikelatent evaluate {run_dir}` first",
        invalid=lambda error: f"{path} is not valid JSON ({error.msg}); evaluate the run again",
    )
    missing = [key for _, key, _ in TABLE_COLUMNS if key not in metrics] + [
        key for key in ("dataset", "split", "features") if key not in metrics
    ]
    if missing:
        raise SpikelatentError(f"{path} lacks {', '.join(missing)}; evaluate the run again")
    return metrics


def rank_marks(values: Sequence[float | None], lower_is_better: bool) -> list[str]:
    """``"best"``, ``"second"`` or ``""`` per value (ties share a rank; missing values get none)."""
    distinct = sorted({v for v in values if v is not None}, reverse=not lower_is_better)
    best = distinct[0] if distinct else None
    second = distinct[1] if len(distinct) > 1 else None
    return [
        "best" if v is not None and v == best else "second" if v is not None and v == second else ""
        for v in values
    ]


def _format_cell(text: str, mark: str) -> str:
    return f"**{text}**" if mark == "best" else f"<u>{text}</u>" if mark == "second" else text


def comparison_table(entries: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """Markdown table in the paper's layout from ``(model name, metrics)`` pairs (already ordered)."""
    header = (
        "| Model | "
        + " | ".join(f"{title} {'↓' if lower else '↑'}" for title, _, lower in TABLE_COLUMNS)
        + " |"
    )
    lines = [header, "|---|" + "---:|" * len(TABLE_COLUMNS)]
    cells: list[list[str]] = [[name] for name, _ in entries]
    for _, key, lower in TABLE_COLUMNS:
        values = [json_number(metrics.get(key)) for _, metrics in entries]
        for index, (value, mark) in enumerate(zip(values, rank_marks(values, lower), strict=True)):
            if value is None:
                cells[index].append("–")
                continue
            text = f"{value:.4f}"
            if key == "kid_mean":
                std = json_number(entries[index][1].get("kid_std"))
                text += f" ± {std:.4f}" if std is not None else ""
            cells[index].append(_format_cell(text, mark))
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def _ordered_entries(
    run_dirs: Sequence[Path], all_metrics: Sequence[dict[str, Any]]
) -> list[tuple[str, Path, dict[str, Any]]]:
    names = [str(m.get("model_name") or display_name(m)) for m in all_metrics]
    entries = []
    for name, run_dir, metrics in zip(names, run_dirs, all_metrics, strict=True):
        unique = name if names.count(name) == 1 else f"{name} ({run_dir.name})"
        entries.append((unique, run_dir, metrics))

    def order(entry: tuple[str, Path, dict[str, Any]]) -> int:
        base = entry[0].split(" (")[0]
        return MODEL_ORDER.index(base) if base in MODEL_ORDER else len(MODEL_ORDER)

    return sorted(entries, key=order)  # stable: unknown names keep the order given


def _run_preset(run_dir: Path) -> str:
    """The ``--preset`` a run was trained with (``none``: the defaults and flags alone)."""
    try:
        return str(read_yaml_options(run_dir).get("preset") or "none")
    except SpikelatentError:
        return "unknown (no config.yaml)"


def _presets_line(entries: Sequence[tuple[str, Path, dict[str, Any]]]) -> str:
    presets = {metrics["preset"] for _, _, metrics in entries}
    if len(presets) == 1:
        return f"{presets.pop()} (every row)"
    return "; ".join(f"{name}: {metrics['preset']}" for name, _, metrics in entries)


def compare_runs(
    run_dirs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    n_images: int = 10,
    seed: int = 0,
) -> Path:
    """Write the comparison of evaluated runs (paper Table 1 layout) into ``out_dir``.

    All runs must be evaluated on the same dataset, split and feature extractor. Writes
    ``comparison.md`` (Markdown: best value per column in ``**bold**``, second ``<u>underlined</u>``),
    ``comparison.csv`` (full precision) and ``comparison_reconstructions.png`` (the first
    ``n_images`` images of the split and each model's sample reconstructions of them).
    Returns the path of ``comparison.md``.
    """
    if not run_dirs:
        raise SpikelatentError("compare needs at least one run directory")
    check_int(n_images, "n_images", 1)
    paths = [Path(run_dir) for run_dir in run_dirs]
    all_metrics = [read_metrics(path) for path in paths]
    for key, what in (
        ("dataset", "datasets"),
        ("split", "splits"),
        ("features", "feature extractors"),
    ):
        values = sorted({str(m[key]) for m in all_metrics})
        if len(values) > 1:
            raise SpikelatentError(
                f"cannot compare runs evaluated on different {what} ({'; '.join(values)}); "
                f"compare runs of one dataset, evaluated with the same --split and --features"
            )
    for path, metrics in zip(paths, all_metrics, strict=True):
        metrics["preset"] = _run_preset(path)
    entries = _ordered_entries(paths, all_metrics)
    first = all_metrics[0]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    counts = ", ".join(
        f"FID@{label} with {first.get(f'n_generated_{label}', '?')} generated images"
        for label in ("5k", "10k")
    )
    markdown = (
        f"# Reconstruction and generation: {first['dataset']} ({first['split']} split)\n\n"
        f"FID/KID features: {first['features']}. Real images: {first.get('n_real', '?')}; {counts}; "
        f"KID over {first.get('kid_subsets', '?')} subsets of {first.get('kid_subset_size', '?')}.\n"
        f"MSE per pixel on the trained scale and SSIM of sample reconstructions. "
        f"Best in **bold**, second <u>underlined</u>.\n"
        f"Training preset (`spikelatent fit --preset`): {_presets_line(entries)}.\n\n"
        + comparison_table([(name, metrics) for name, _, metrics in entries])
    )
    markdown_path = write_text_atomic(out_dir / COMPARISON_MARKDOWN, markdown)

    columns = [
        "model",
        "run_dir",
        "preset",
        "dataset",
        "split",
        "features",
        "mse",
        "ssim",
        "fid_5k",
        "fid_10k",
        "kid_mean",
        "kid_std",
        "mse_01",
        "mse_map",
        "ssim_map",
        "n_real",
        "n_generated_5k",
        "n_generated_10k",
    ]
    write_csv_atomic(out_dir / COMPARISON_CSV,
                     [{**metrics, "model": name, "run_dir": str(run_dir)}
                      for name, run_dir, metrics in entries], columns, extrasaction="ignore")

    # One figure: the same test images reconstructed by every model.
    models = [(name, load(run_dir)) for name, run_dir, _ in entries]
    datamodule = datamodule_from_config(dict(models[0][1].config), data_dir)
    images, _ = datamodule.split_tensors(str(first["split"]))
    inputs = images[:n_images]
    rows = {name: reconstruct_images(model, inputs, "sample", n_images, seed) for name, model in models}
    plotting.save_model_comparison(
        rows,
        inputs,
        out_dir / COMPARISON_FIGURE,
        data_range=tuple(datamodule.data_range),
        n=n_images,
        title=f"{first['dataset']}: reconstructions of the same {first['split']} images",
    )
    return markdown_path

"""``similarity``: trained runs held against a recording of the same stimuli (docs/similarity.md).

Reads the recorded responses (an NWB file whose trials table names each trial's stimulus, or an
``.npy``/``.npz``/netCDF array), the stimulus images (``.npy``/``.npz`` or a folder of image
files), and each run; shows the images the recording saw to every model (resized/cropped to the
model's input when needed, the transform named in the output); compares each model population
with the recording (:func:`spikelatent.analysis.compare_populations`) and writes
``similarity.json``, ``similarity.md`` (a ranking table when several runs are given), one figure
page per run and each run's model responses (``population_<run>.nc``). Every input is checked
before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from spikelatent.data.images import (
    IMG_EXTENSIONS,
    decode_image_file,
    harmonise_channels,
    preprocess,
    to_float_image,
)
from spikelatent.data.preprocessing import as_image_list
from spikelatent.errors import SpikelatentError
from spikelatent.io import write_json_atomic, write_netcdf_atomic, write_text_atomic

IMAGE_SUFFIXES = IMG_EXTENSIONS
RESPONSE_SUFFIXES = (".nwb", ".npy", ".npz", ".nc")


# --------------------------------------------------------------------------- inputs


def read_stimulus_images(path: str | os.PathLike) -> tuple[list[Any], np.ndarray, str]:
    """Stimulus images from ``.npy``/``.npz`` or a folder, raw, with their stable ids.

    Returns a list of ``(C, H, W)`` tensors as stored (uint8, uint16 or float; each model's own
    preprocessing prepares them: :meth:`~spikelatent.model.VAE.preprocess`), the ids (array
    positions for arrays, or the ``stimulus``/``stimulus_ids`` array of an ``.npz``; file stems
    for a folder, sorted by name), and a note on the values. Folders are decoded with PIL
    (:func:`~spikelatent.data.images.decode_image_file`: PNG, JPEG, BMP, TIFF, 16-bit too).
    """
    source = Path(path)
    if source.is_dir():
        files = sorted(p for p in source.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SpikelatentError(
                f"{source} holds no image files ({', '.join(IMAGE_SUFFIXES)}); pass the folder "
                "of stimulus images or an .npy/.npz array"
            )
        images = [decode_image_file(file) for file in files]
        dtypes = sorted({str(image.dtype).removeprefix("torch.") for image in images})
        return images, np.array([f.stem for f in files]), f"image files ({', '.join(dtypes)})"
    if not source.is_file():
        raise SpikelatentError(f"images {source} not found (an .npy/.npz file or a folder)")
    ids = None
    try:
        if source.suffix == ".npz":
            with np.load(source, allow_pickle=False) as archive:
                keys = list(archive.keys())
                key = "images" if "images" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise SpikelatentError(
                        f"{source} has arrays {keys}; name the images array 'images'"
                    )
                array = archive[key]
                for id_key in ("stimulus", "stimulus_ids"):
                    if id_key in keys:
                        ids = archive[id_key]
        elif source.suffix == ".npy":
            array = np.load(source, allow_pickle=False)
        else:
            raise SpikelatentError(
                f"images {source}: use an .npy or .npz array or a folder of image files"
            )
    except (ValueError, OSError) as error:
        raise SpikelatentError(f"cannot read images {source}: {error}") from None
    if array.ndim not in (3, 4) or array.shape[0] == 0:
        raise SpikelatentError(
            f"images {source} have shape {array.shape}; expected (N, H, W), (N, C, H, W) or "
            "(N, H, W, C) with C in 1, 3, 4"
        )
    if array.dtype.kind not in "fiu":
        raise SpikelatentError(f"images {source} must be numeric, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise SpikelatentError(f"images {source} contain NaN or infinite values")
    images = as_image_list(array[:, None] if array.ndim == 3 else array)
    ids = np.arange(len(images)) if ids is None else np.asarray(ids)
    if ids.shape != (len(images),) or len(np.unique(ids)) != len(ids):
        raise SpikelatentError(
            f"{source}: the stimulus ids must be {len(images)} unique values, one per image"
        )
    return images, ids, f"as stored ({array.dtype})"


def read_recorded_responses(
    path: str | os.PathLike, stimulus_column: str | None = None
) -> xr.DataArray:
    """Recorded responses ``(trial, stimulus, unit)`` or ``(stimulus, unit)`` from a file.

    ``.nwb``: :func:`spikelatent.nwb.stimuli.read_responses` (spike counts per trial). ``.npy``:
    rank 3 (trial, stimulus, unit) or 2 (stimulus, unit), stimulus ids 0..N-1. ``.npz``: array
    ``responses`` (or the only one) and optional ``stimulus`` ids. ``.nc``: a netCDF DataArray (or
    a Dataset with ``responses``/``counts``) with named dims. Stimuli with fewer trials than others
    are padded with whole NaN trials (checked by ``responses_array``); any other NaN is refused.
    """
    source = Path(path)
    if not source.is_file():
        raise SpikelatentError(f"responses {source} not found")
    suffix = source.suffix.lower()
    if suffix not in RESPONSE_SUFFIXES:
        raise SpikelatentError(
            f"responses {source}: use an NWB file or an {', '.join(RESPONSE_SUFFIXES[1:])} array"
        )
    if suffix == ".nwb":
        from spikelatent.nwb.stimuli import read_responses

        responses = read_responses(source, stimulus_column)
    else:
        try:
            if suffix == ".nc":
                with xr.open_dataset(source) as dataset:
                    dataset = dataset.load()
                names = [n for n in ("responses", "counts") if n in dataset.data_vars]
                if not names and len(dataset.data_vars) != 1:
                    raise SpikelatentError(
                        f"{source}: name the responses variable 'responses' or 'counts'"
                    )
                responses = dataset[names[0] if names else next(iter(dataset.data_vars))]
            else:
                ids = None
                if suffix == ".npz":
                    with np.load(source, allow_pickle=False) as archive:
                        keys = list(archive.keys())
                        key = (
                            "responses"
                            if "responses" in keys
                            else (keys[0] if len(keys) == 1 else None)
                        )
                        if key is None:
                            raise SpikelatentError(
                                f"{source} has arrays {keys}; name the responses array 'responses'"
                            )
                        array = archive[key]
                        ids = archive["stimulus"] if "stimulus" in keys else None
                else:
                    array = np.load(source, allow_pickle=False)
                if array.ndim not in (2, 3):
                    raise SpikelatentError(
                        f"responses {source} have shape {array.shape}; expected (stimulus, unit) "
                        "or (trial, stimulus, unit)"
                    )
                dims = ("stimulus", "unit") if array.ndim == 2 else ("trial", "stimulus", "unit")
                responses = xr.DataArray(array, dims=dims, name="responses")
                if ids is not None:
                    responses = responses.assign_coords(stimulus=np.asarray(ids))
        except (ValueError, OSError) as error:
            if isinstance(error, SpikelatentError):
                raise
            raise SpikelatentError(f"cannot read responses {source}: {error}") from None
    from spikelatent.analysis.similarity import responses_array

    return responses_array(responses, f"responses {source.name}")


def match_stimuli(
    recorded_ids: np.ndarray, image_ids: np.ndarray, images_path: Any
) -> tuple[np.ndarray, str]:
    """Positions in the image list of every recorded stimulus id; refuses ids without an image.

    Returns the positions and how ids were matched. Integer recorded ids against a folder whose
    file names are not integers are read as positions in the sorted file list.
    """
    recorded_ids = np.asarray(recorded_ids)
    image_ids = np.asarray(image_ids)
    how = "stimulus ids = image ids"
    if recorded_ids.dtype.kind in "iu" and image_ids.dtype.kind in "US":
        if all(str(i).lstrip("-").isdigit() for i in image_ids):
            image_ids = image_ids.astype(np.int64)
        else:
            image_ids = np.arange(len(image_ids))
            how = "integer stimulus ids = positions in the name-sorted image files"
    elif recorded_ids.dtype.kind in "US" and image_ids.dtype.kind in "iu":
        recorded_ids = np.asarray([str(i) for i in recorded_ids])
        image_ids = np.asarray([str(i) for i in image_ids])
    lookup = {value: position for position, value in enumerate(image_ids.tolist())}
    missing = [i for i in recorded_ids.tolist() if i not in lookup]
    if len(missing) == len(recorded_ids):
        raise SpikelatentError(
            f"the recording and the images share no stimulus: recorded ids "
            f"{_sample(recorded_ids)} vs image ids {_sample(image_ids)} ({images_path})"
        )
    if missing:
        raise SpikelatentError(
            f"stimuli do not match: {len(missing)} of {len(recorded_ids)} recorded stimulus ids "
            f"have no image in {images_path} (e.g. {_sample(np.asarray(missing))}); pass the "
            "images the recording showed, or select those trials first"
        )
    return np.asarray([lookup[i] for i in recorded_ids.tolist()]), how


def _sample(values: np.ndarray, n: int = 3) -> str:
    items = [str(v) for v in np.asarray(values).tolist()[:n]]
    return "[" + ", ".join(items) + (", ...]" if len(values) > n else "]")


#: Longer side, in pixels, of the stimuli as the baselines (pixels, Gabor energy) see them.
BASELINE_SIZE = 64


def baseline_stimuli(shown: list[Any], size: int = BASELINE_SIZE) -> np.ndarray:
    """The stimuli as shown, for the baselines: ``(N, C, H, W)`` float on [0, 1].

    One channel count for all (grey repeated to RGB when any image is in colour); the first
    stimulus's shape scaled so its longer side is at most ``size`` pixels (never enlarged), and
    every stimulus resized to cover that shape (antialiased bilinear) and centre-cropped to it,
    by the image reader's own :func:`spikelatent.data.images.preprocess`.
    """
    import torch

    floats = harmonise_channels([to_float_image(image) for image in shown], grayscale=False)
    height, width = (int(v) for v in floats[0].shape[-2:])
    scale = min(1.0, size / max(height, width))
    target = (max(1, round(height * scale)), max(1, round(width * scale)))
    return torch.stack(
        [preprocess(image, None, target, "stimulus") for image in floats]
    ).numpy().astype(np.float64)


def prepare_images(images: list[Any], model: Any) -> tuple[Any, str]:
    """The raw stimuli as ``model`` sees them: its own preprocessing (the one it was trained
    with, carried in its checkpoint: size, grey, log, whitening, scale), ``(N, C, H, W)``.
    Returns the tensor and a description of the steps that changed the images."""
    channels, height, width = (int(v) for v in model.image_shape)
    settings = model.preprocessor.describe()
    steps: list[str] = []
    dtypes = sorted({str(image.dtype).removeprefix("torch.") for image in images
                     if not image.is_floating_point()})
    if dtypes:
        steps.append(f"{', '.join(dtypes)} scaled to [0, 1]")
    if any(image.shape[0] not in (channels, 4 if channels == 3 else channels) for image in images):
        steps.append("RGB to grayscale (luma)" if channels == 1
                     else f"grayscale repeated to {channels} channels")
    if any(tuple(image.shape[-2:]) != (height, width) for image in images):
        steps.append(
            f"a {height}x{width} window of each prepared image (patch model)" if settings["patches"]
            else f"resized (bilinear, antialiased) to cover {height}x{width} keeping the aspect "
                 f"ratio, centre-cropped to {height}x{width}")
    if settings["log_intensity"]:
        steps.append("log(x + 0.01)")
    if settings["whiten"] != "none":
        steps.append(f"{settings['whiten']} whitening (fitted on the training images)")
    if settings["contrast_normalize"]:
        steps.append("contrast normalised")
    if settings["offset"] != 0.0 or settings["scale"] != 1.0:
        steps.append(f"(x - {settings['offset']:.4g}) / {settings['scale']:.4g}")
    return model.preprocess(images), ("; ".join(steps) or
                                      "none (images already match the model's input)")


# --------------------------------------------------------------------------- the workflow


def _representation(model: Any, images: Any, ids: np.ndarray, n_trials: int, seed: int, progress):
    """The model population (count models, with trials) or the posterior-mean responses."""
    import spikelatent

    if model.family.is_count:
        return spikelatent.population(
            model, images, n_trials=n_trials, stimulus_ids=ids, seed=seed, progress=progress
        )
    transform = getattr(model, "transform", None)
    if transform is not None:
        return transform(images, stimulus=ids)
    import torch

    with torch.no_grad():
        values = model.posterior(images).mean.reshape(len(images), -1).numpy()
    return xr.DataArray(values, dims=("stimulus", "unit"), coords={"stimulus": ids})


def run_representations(
    model: Any, images: Any, ids: np.ndarray, population: Any
) -> dict[str, Any]:
    """The named representations of one run, in depth order: every population the model holds
    (:meth:`~spikelatent.model.VAE.representations`: encoder stages, each level of a hierarchy),
    with ``latent`` as the run's population (posterior rates, and the trials of count models,
    which trial-aware metrics use), then ``counts (trial mean)`` for count models."""
    import torch

    with torch.no_grad():
        named = model.representations(images)
    out: dict[str, Any] = {}
    for name, value in named.items():
        if name == "latent":
            out[name] = population
            continue
        out[str(name)] = xr.DataArray(
            value.detach().reshape(len(images), -1).cpu().numpy().astype(np.float64),
            dims=("stimulus", "unit"), coords={"stimulus": ids})
    if isinstance(population, xr.Dataset) and "counts" in population:
        out["counts (trial mean)"] = population["counts"].mean("trial")
    return out


def read_features(
    specs: dict[str, str | os.PathLike] | None, n_images: int
) -> dict[str, np.ndarray]:
    """User feature arrays ``NAME -> FILE.npy``: one row per image of the images file, in its
    order (positions, or the sorted file names of a folder)."""
    out = {}
    for name, path in (specs or {}).items():
        source = Path(path)
        if not source.is_file() or source.suffix != ".npy":
            raise SpikelatentError(f"--features {name}={source}: give an existing .npy file")
        try:
            values = np.load(source, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise SpikelatentError(f"cannot read features {source}: {error}") from None
        if values.ndim < 2 or len(values) != n_images or values.dtype.kind not in "fiu":
            raise SpikelatentError(
                f"--features {name}={source}: expected a numeric array with one row per image "
                f"({n_images} rows), got shape {values.shape}"
            )
        if not np.isfinite(values).all():
            raise SpikelatentError(f"--features {name}={source}: contains NaN or infinite values")
        out[name] = values
    return out


def _number(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None


_RSA_KEYS = (
    "similarity",
    "ci_low",
    "ci_high",
    "noise_ceiling_low",
    "noise_ceiling_high",
    "similarity_split",
    "null_high",
    "p_permutation",
)
_PREDICTIVITY_KEYS = (
    "median_r",
    "median_r_ci_low",
    "median_r_ci_high",
    "median_r2",
    "median_r_corrected",
    "median_r2_corrected",
    "median_r2_corrected_ci_low",
    "median_r2_corrected_ci_high",
    "n_units_reliable",
)


def _summary(result: xr.Dataset) -> dict[str, Any]:
    """The JSON numbers of one compare_populations result (medians of the statistics)."""
    summary: dict[str, Any] = {
        "rsa": {k: _number(result[f"rsa_{k}"]) for k in _RSA_KEYS if f"rsa_{k}" in result},
        "cka": _number(result["cka"]),
        "cka_debiased": _number(result["cka_debiased"]),
        "predictivity": {
            k: _number(result[f"predictivity_{k}"])
            for k in _PREDICTIVITY_KEYS
            if f"predictivity_{k}" in result
        },
    }
    statistics = {}
    for name in result.data_vars:
        if not name.startswith("stat_"):
            continue
        values = result[name]
        for population in values["population"].values:
            entry = values.sel(population=population)
            statistics.setdefault(str(population), {})[name[5:]] = (
                _number(entry.sel(quantile=0.5)) if "quantile" in entry.dims else _number(entry)
            )
    summary["statistics_median"] = statistics
    return summary


_ROW_KEYS = {
    "rsa": ("rsa_similarity", "rsa_ci_low", "rsa_ci_high", "rsa_similarity_split", "rsa_null_high"),
    "cka": ("cka", "cka_debiased"),
    "predictivity": (
        "predictivity_median_r",
        "predictivity_median_r_corrected",
        "predictivity_median_r_corrected_ci_low",
        "predictivity_median_r_corrected_ci_high",
        "predictivity_median_r2_corrected",
        "predictivity_median_r2_corrected_ci_low",
        "predictivity_median_r2_corrected_ci_high",
        "predictivity_median_r2_er",
        "predictivity_median_r2_er_ci_low",
        "predictivity_median_r2_er_ci_high",
        "predictivity_ceiled_score",
        "predictivity_ceiled_score_ci_low",
        "predictivity_ceiled_score_ci_high",
        "predictivity_n_above_1_r_corrected",
        "predictivity_n_above_1_r2_corrected",
        "predictivity_n_above_1_r2_er",
    ),
}


def _row_summary(row: xr.Dataset) -> dict[str, Any]:
    """The JSON numbers of one compare_representations row."""
    out: dict[str, Any] = {"kind": str(row["kind"].values)}
    for group, keys in _ROW_KEYS.items():
        prefix = f"{group}_" if group != "cka" else ""
        out[group] = {key[len(prefix) :]: _number(row[key]) for key in keys if key in row.data_vars}
    return out


def _mapping_summary(mapping: xr.Dataset) -> dict[str, Any]:
    keys = ("median_r_corrected", "median_r2_corrected", "median_r2_er", "ceiled_score")
    out: dict[str, Any] = {
        "committed": mapping.attrs["committed"],
        "chosen_per_fold": [str(v) for v in mapping["chosen"].values],
        "rule": mapping.attrs["rule"],
    }
    for key in keys:
        if key in mapping:
            out[key] = _number(mapping[key])
            for tail in ("_ci_low", "_ci_high"):
                if key + tail in mapping:
                    out[key + tail] = _number(mapping[key + tail])
    return out


def similarity(
    run_dirs: list[str | os.PathLike],
    responses: str | os.PathLike,
    images: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    stimulus_column: str | None = None,
    metric: str = "correlation",
    compare: str = "spearman",
    n_trials: int = 20,
    n_boot: int = 200,
    folds: int = 5,
    confidence: float = 0.95,
    readout: str = "ridge",
    n_components: int = 100,
    baselines: tuple[str, ...] | None = ("pixels", "gabor-energy"),
    baseline_size: int = BASELINE_SIZE,
    features: dict[str, str | os.PathLike] | None = None,
    visual_degrees: tuple[float, float] | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Compare every run's population with a recording; write json, markdown and figures.

    Besides each run's population (as :func:`~spikelatent.analysis.compare_populations`), every
    representation of every run, the baselines (``pixels``, ``gabor-energy``; ``None`` or ``()``
    for none) and the user ``features`` (``{name: .npy path}``, one row per image) are scored
    side by side (:func:`~spikelatent.analysis.compare_representations`, with a shuffled-stimulus
    null row), each run's representation is committed on training folds
    (:func:`~spikelatent.analysis.map_representations`), and ``visual_degrees = (model degrees,
    stimulus degrees)`` places the stimuli in the model's field of view first
    (:func:`~spikelatent.analysis.similarity.place_stimuli`).

    Returns the report written to ``similarity.json`` (paths under ``"files"``).
    """
    from spikelatent.analysis.similarity import (
        BASELINES,
        COMPARISONS,
        METRICS,
        READOUTS,
        baseline_representations,
        compare_populations,
        compare_representations,
        map_representations,
        paired_median_difference,
        place_stimuli,
        prepare_recording,
        rank_models,
    )
    from spikelatent.checkpoints import load

    if not run_dirs:
        raise SpikelatentError("give at least one run directory")
    if metric not in METRICS:
        raise SpikelatentError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    if compare not in COMPARISONS:
        raise SpikelatentError(
            f"unknown comparison {compare!r}; use one of {', '.join(COMPARISONS)}"
        )
    if isinstance(n_trials, bool) or int(n_trials) != n_trials or n_trials < 2:
        raise SpikelatentError(f"trials must be an integer >= 2; got {n_trials}")
    if readout not in READOUTS:
        raise SpikelatentError(f"unknown readout {readout!r}; use one of {', '.join(READOUTS)}")
    baselines = tuple(baselines or ())
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise SpikelatentError(
            f"unknown baseline(s) {', '.join(unknown)}; use {', '.join(BASELINES)} or none"
        )
    # Read and check everything first: nothing is written on bad input.
    recorded = read_recorded_responses(responses, stimulus_column)
    image_list, image_ids, value_note = read_stimulus_images(images)
    positions, matching = match_stimuli(recorded["stimulus"].values, image_ids, images)
    user_features = {
        name: values[positions] for name, values in read_features(features, len(image_list)).items()
    }
    shown = [image_list[p] for p in positions]
    placement = None
    if visual_degrees is not None:
        import torch

        placed = []
        for image in shown:  # on [0, 1] floats, so the grey padding is mid-grey for any dtype
            array, placement = place_stimuli(to_float_image(image).numpy()[None], *visual_degrees)
            placed.append(torch.from_numpy(array[0]))
        shown = placed
    ids = recorded["stimulus"].values
    models = {}
    for run in run_dirs:
        name = Path(run).resolve().name
        if name in models:
            name = f"{name}-{len(models)}"
        models[name] = (Path(run), load(run))
    out_dir = Path(out) if out is not None else Path(f"{responses}.similarity")
    if out_dir.exists() and not out_dir.is_dir():
        raise SpikelatentError(f"--out {out_dir} is a file; give a folder")

    results: dict[str, xr.Dataset] = {}
    populations: dict[str, xr.Dataset] = {}
    report: dict[str, Any] = {
        "responses": str(responses),
        "images": str(images),
        "stimulus_matching": matching,
        "image_values": value_note,
        "recorded": {
            "n_stimuli": int(recorded.sizes["stimulus"]),
            "n_units": int(recorded.sizes["unit"]),
            "n_trials": int(recorded.sizes.get("trial", 1)),
            "stimulus_column": recorded.attrs.get("stimulus_column"),
        },
        "metric": metric,
        "compare": compare,
        "readout": readout,
        "n_boot": int(n_boot),
        "confidence": confidence,
        "seed": int(seed),
        "stimulus_placement": placement,
        "runs": {},
    }
    representations: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    precomputed: dict[str, xr.Dataset] = {}
    by_run: dict[str, list[str]] = {}
    recording = prepare_recording(recorded)  # the recording-side work, done once for every run
    for name, (run, model) in models.items():
        model_images, transform = prepare_images(shown, model)
        population = _representation(model, model_images, ids, int(n_trials), seed, progress)
        result = compare_populations(
            population,
            recording,
            metric=metric,
            compare=compare,
            folds=folds,
            readout=readout,
            n_components=n_components,
            n_boot=n_boot,
            confidence=confidence,
            seed=seed,
        )
        results[name] = result
        by_run[name] = []
        for rep_name, value in run_representations(model, model_images, ids, population).items():
            key = f"{name}/{rep_name}"
            representations[key], kinds[key] = value, "model"
            by_run[name].append(key)
        precomputed[f"{name}/latent"] = result  # the run's population, scored above
        populations[name] = (
            population
            if isinstance(population, xr.Dataset)
            else population.to_dataset(name=population.name or "responses")
        )
        report["runs"][name] = {
            "run_dir": str(run),
            "model": str(getattr(model, "variant", "")),
            "stimulus_transform": transform,
            "representation": "posterior mean rate"
            if isinstance(population, xr.Dataset)
            else str(population.attrs.get("quantity", "posterior mean")),
            **_summary(result),
        }
    ranking = rank_models(results, confidence=confidence, seed=seed)
    report["ranking"] = ranking
    if baselines or user_features:
        # The stimuli as shown, not any model's input: a patch model's crop or a whitened copy
        # would hand the baselines that model's limits.
        baseline_images = baseline_stimuli(shown, baseline_size)
        for key, value in baseline_representations(
            baseline_images, ids, baselines, features=user_features
        ).items():
            representations[key], kinds[key] = value, "baseline"
        report["baseline_image_shape"] = list(baseline_images.shape[1:])
    scored = compare_representations(
        representations,
        recording,
        kinds=kinds,
        metric=metric,
        compare=compare,
        readout=readout,
        folds=folds,
        n_components=n_components,
        n_boot=n_boot,
        confidence=confidence,
        precomputed=precomputed,
        seed=seed,
    )
    report["representations"] = {
        str(key): _row_summary(scored.sel(representation=key))
        for key in scored["representation"].values
    }
    report["shuffled_null_of"] = scored.attrs["shuffled_null"]
    report["rsa_skipped"] = dict(
        line.split(": ", 1) for line in scored.attrs["rsa_skipped"].splitlines()
    )
    for name, keys in by_run.items():
        mapping = map_representations(
            {key: representations[key] for key in keys},
            recording,
            readout=readout,
            folds=folds,
            n_boot=n_boot,
            confidence=confidence,
            scored=scored,
            seed=seed,
        )
        report["runs"][name]["mapping"] = _mapping_summary(mapping)
        # "Does any of it beat the baselines?": the committed representation's held-out r²_ER
        # against each baseline's, paired over the recorded units.
        report["runs"][name]["mapping"]["vs_baselines"] = {
            str(key): paired_median_difference(
                mapping["r2_er"].values,
                scored["predictivity_r2_er"].sel(representation=key).values,
                confidence=confidence,
                seed=seed,
            )
            for key in scored["representation"].values
            if kinds.get(str(key)) == "baseline" and "r2_er" in mapping
        }
    report["ranking_with_baselines"] = rank_models(
        {str(key): scored.sel(representation=key) for key in scored["representation"].values},
        confidence=confidence,
        seed=seed,
    )

    from spikelatent.plotting.similarity import plot_representations, plot_similarity

    out_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    for name, result in results.items():
        figures.append(str(plot_similarity(result, out_dir / f"similarity_{name}.png", title=name)))
    summary_figure = str(
        plot_representations(scored, out_dir / "similarity_representations.png", by_run=by_run)
    )
    saved = []
    for name, population in populations.items():
        # The model responses every number was computed from, so that they can be recomputed.
        saved.append(str(write_netcdf_atomic(population, out_dir / f"population_{name}.nc")))
    table = markdown_table(report)
    files = {
        "json": str(out_dir / "similarity.json"),
        "markdown": str(out_dir / "similarity.md"),
        "figures": figures,
        "summary_figure": summary_figure,
        "populations": saved,
    }
    report["files"] = files
    report = _finite(report)
    write_text_atomic(files["markdown"], table)
    write_json_atomic(files["json"], report)
    return report


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinite floats as None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating):
        return _number(value)
    return value


def _interval(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return "n/a"
    if low is None or high is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def markdown_table(report: dict[str, Any]) -> str:
    """The runs side by side (best of each column in bold) and the ranking statements."""
    runs = report["runs"]
    ranking = report["ranking"]
    columns = {
        "rsa": ("RSA (full data)", lambda r: r["rsa"].get("similarity")),
        "rsa_split": ("RSA vs split halves", lambda r: r["rsa"].get("similarity_split")),
        "cka": ("linear CKA", lambda r: r["cka"]),
        "predictivity": (
            "predictivity (noise-corr. EV)",
            lambda r: r["predictivity"].get("median_r2_corrected"),
        ),
    }
    best = {}
    for key, (_, get) in columns.items():
        values = {n: get(r) for n, r in runs.items() if get(r) is not None}
        best[key] = max(values, key=values.get) if len(values) > 1 else None
    conf = int(round(100 * report["confidence"]))
    lines = [
        f"# Model populations vs {Path(report['responses']).name}",
        "",
        f"{report['recorded']['n_stimuli']} shared stimuli, {report['recorded']['n_units']} recorded "
        f"units, {report['recorded']['n_trials']} trials; RDM metric {report['metric']}, "
        f"compared by {report['compare']}; [{conf} % bootstrap intervals].",
        "",
        "| run | model | " + " | ".join(label for label, _ in columns.values()) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    ceiling = None
    for name, run in runs.items():
        cells = []
        rsa = run["rsa"]
        pred = run["predictivity"]
        texts = {
            "rsa": _interval(rsa.get("similarity"), rsa.get("ci_low"), rsa.get("ci_high")),
            "rsa_split": _interval(rsa.get("similarity_split"), None, None),
            "cka": _interval(run["cka"], None, None),
            "predictivity": _interval(
                pred.get("median_r2_corrected"),
                pred.get("median_r2_corrected_ci_low"),
                pred.get("median_r2_corrected_ci_high"),
            ),
        }
        for key in columns:
            cells.append(f"**{texts[key]}**" if best[key] == name else texts[key])
        lines.append(f"| {name} | {run['model']} | " + " | ".join(cells) + " |")
        if rsa.get("noise_ceiling_low") is not None:
            ceiling = (rsa["noise_ceiling_low"], rsa["noise_ceiling_high"])
    lines.append("")
    if ceiling is not None:
        lines.append(
            f"Noise ceiling of the RDM comparison (Nili et al. 2014, split halves of the trials): "
            f"[{ceiling[0]:.3f}, {ceiling[1]:.3f}]; read it against 'RSA vs split halves'."
        )
    nulls = {n: r["rsa"].get("null_high") for n, r in runs.items()}
    if any(v is not None for v in nulls.values()):
        lines.append(
            f"Shuffled-stimulus null of the RSA ({conf} % quantile over relabellings of the model's "
            "stimuli): "
            + ", ".join(f"{n} {v:.3f}" for n, v in nulls.items() if v is not None)
            + "."
        )
    for key, statement in ranking.get("statements", {}).items():
        lines.append(f"- {key}: {statement}")
    lines.append("")
    if report.get("representations"):
        lines.extend(_representations_table(report))
    return "\n".join(lines)


def _representations_table(report: dict[str, Any]) -> list[str]:
    """Every representation, baseline and the shuffled null in one table, then the mapping."""
    rows = report["representations"]
    columns = {
        "RSA": ("rsa", "similarity", "ci_low", "ci_high"),
        "RSA vs split halves": ("rsa", "similarity_split", None, None),
        "CKA (debiased)": ("cka", "cka_debiased", None, None),
        "noise-corr. r": (
            "predictivity",
            "median_r_corrected",
            "median_r_corrected_ci_low",
            "median_r_corrected_ci_high",
        ),
        "r²_ER": ("predictivity", "median_r2_er", "median_r2_er_ci_low", "median_r2_er_ci_high"),
        "ceiled score": (
            "predictivity",
            "ceiled_score",
            "ceiled_score_ci_low",
            "ceiled_score_ci_high",
        ),
    }
    lines = [
        f"## Representations, baselines and the shuffled null ({report['readout']} readout)",
        "",
        "| representation | kind | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    above = []
    for name, row in rows.items():
        cells = []
        for group, key, low, high in columns.values():
            numbers = row[group]
            cells.append(
                _interval(
                    numbers.get(key),
                    numbers.get(low) if low else None,
                    numbers.get(high) if high else None,
                )
            )
        lines.append(f"| {name} | {row['kind']} | " + " | ".join(cells) + " |")
        flags = {
            k[len("n_above_1_") :]: v
            for k, v in row["predictivity"].items()
            if k.startswith("n_above_1_") and v
        }
        if flags:
            above.append(
                f"{name} (" + ", ".join(f"{k}: {int(v)} units" for k, v in flags.items()) + ")"
            )
    lines.append("")
    null = report.get("shuffled_null_of")
    if null:
        lines.append(
            f"'shuffled': {null} with its stimuli relabelled at random, scored like every row: "
            "the chance level of each column."
        )
    if above:
        lines.append(
            "Noise-corrected values above 1 (kept as estimated, not clipped): " + "; ".join(above)
        )
    for name, reason in report.get("rsa_skipped", {}).items():
        lines.append(f"- {name}: no RSA ({reason}); its other columns are scored as usual.")
    for name, run in report["runs"].items():
        mapping = run.get("mapping")
        if not mapping:
            continue
        chosen = mapping["chosen_per_fold"]
        committed = mapping["committed"]
        lines.append(
            f"- {name}: committed representation {committed} (chosen on the training folds in "
            f"{chosen.count(committed)} of {len(chosen)} folds); held-out r²_ER "
            + _interval(
                mapping.get("median_r2_er"),
                mapping.get("median_r2_er_ci_low"),
                mapping.get("median_r2_er_ci_high"),
            )
        )
        for baseline, pair in mapping.get("vs_baselines", {}).items():
            verdict = ("above" if pair["ci_low"] > 0 else "below") if pair["separated"] else "not resolved from"
            lines.append(
                f"  - vs {baseline}: median r²_ER difference {_interval(pair['difference'], pair['ci_low'], pair['ci_high'])}"
                f" (paired over {pair['n_units']} units): {verdict} {baseline}"
            )
    for key, statement in report.get("ranking_with_baselines", {}).get("statements", {}).items():
        lines.append(f"- {key}, all rows: {statement}")
    lines.append("")
    return lines

"""A trained count VAE's latents as a simulated neuron population, in xarray.

``population(model, images, labels, n_trials)`` encodes each stimulus (image), reads the
posterior's per-unit parameters (rate, dispersion, success probability, variance, Fano factor)
and draws ``n_trials`` exact integer spike counts per stimulus and unit (Gamma then Poisson).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from spikelatent import __version__
from spikelatent._checks import check_int
from spikelatent.errors import SpikelatentError
from spikelatent.spikes import as_smallest_counts, check_bin_size, count_spikes, spike_times


def _as_images(images: Any, image_shape: tuple[int, ...]) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
    if tensor.ndim == len(image_shape):  # a single image
        tensor = tensor.unsqueeze(0)
    if tuple(tensor.shape[1:]) != tuple(image_shape):
        raise SpikelatentError(
            f"images must have shape (stimulus, {', '.join(map(str, image_shape))}) for this model; "
            f"got {tuple(tensor.shape)}"
        )
    if tensor.shape[0] == 0:
        raise SpikelatentError("images is empty: pass at least one stimulus")
    tensor = tensor.float()
    if not torch.isfinite(tensor).all():
        raise SpikelatentError("images contain NaN or infinite values")
    return tensor


def _parameters(distribution: Any) -> dict[str, torch.Tensor]:
    """Per-unit statistics of a count distribution (batch shape (stimulus, unit)), read from the
    distribution: its mean, variance, Fano factor and NB dispersion r (inf for the Poisson
    limit); the NB success probability p = 1 / Fano factor."""
    mean = distribution.mean
    fano = distribution.fano_factor.expand_as(mean)
    return {"rate": mean, "dispersion": distribution.dispersion.expand_as(mean),
            "prob": 1.0 / fano, "variance": distribution.variance.expand_as(mean),
            "fano_factor": fano}


def population(
    model: Any,
    images: Any,
    labels: Any = None,
    n_trials: int = 0,
    *,
    batch_size: int = 500,
    seed: int | None = 0,
    progress: bool | None = None,
    stimulus_ids: Any = None,
    bin_size: float | None = None,
    spike_process: str = "uniform",
    raw: bool = False,
) -> xr.Dataset:
    """Build the latent population of a Poisson or NegBio model for a set of stimuli.

    Args:
        model: a trained :class:`spikelatent.model.VAE` (``spikelatent.load(run_dir)``) of a
            count model kind (``poisson``, ``negbio``, ``negbio-hierarchical``).
        images: stimuli, (stimulus, C, H, W) on the model's input range, or raw with ``raw``.
        labels: optional class label per stimulus, (stimulus,).
        n_trials: exact spike-count samples per stimulus and unit (0: no ``counts``).
        batch_size: stimuli encoded at once (bounds memory).
        seed: seed of the count sampling (``None``: the global torch RNG).
        progress: show a progress bar (``None``: only on a terminal).
        stimulus_ids: optional coordinate values for ``stimulus`` (default 0..N-1).
        bin_size: also add ``binned_counts (trial, stimulus, time, unit)``: the counts' spike
            times (:func:`spike_times`, unit window of 1 s) in bins of ``bin_size`` seconds.
        spike_process: ``"uniform"`` or ``"counting"`` arrival times (see :func:`spike_times`).
        raw: ``images`` are raw (as on disk: any size, dtype and channels); the model's own
            preprocessing (:meth:`~spikelatent.model.VAE.preprocess`) prepares them first.

    Returns:
        ``xarray.Dataset`` with dims ``stimulus``, ``unit`` (and ``trial``):
        ``rate``, ``dispersion``, ``prob``, ``variance``, ``fano_factor`` (stimulus, unit; spikes
        per unit window), ``counts`` (trial, stimulus, unit; the smallest unsigned integer type that holds them),
        ``prior_rate``, ``prior_dispersion``, ``prior_fano_factor`` (unit); coords ``label``
        (stimulus) and ``unit``; attrs naming model, variant, dataset and checkpoint.
    """
    family = model.family
    if not family.is_count:
        raise SpikelatentError(
            f"populations exist for count models (poisson, negbio, negbio-hierarchical); this "
            f"model's latents are {family.name}"
        )
    n_trials = check_int(n_trials, "n_trials", minimum=0)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if raw:
        images = model.preprocess(images)
    images = _as_images(images, tuple(model.image_shape))
    n_stimuli, n_units = images.shape[0], family.latent_dim
    if labels is not None:
        labels = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels).reshape(-1)
        if labels.shape[0] != n_stimuli:
            raise SpikelatentError(
                f"labels has {labels.shape[0]} entries but there are {n_stimuli} stimuli"
            )

    device = next(model.parameters()).device
    statistics = {name: np.empty((n_stimuli, n_units), np.float32)
                  for name in ("rate", "dispersion", "prob", "variance", "fano_factor")}
    # The smallest unsigned type that holds the largest count so far (widened when a batch needs
    # it, never wrapping); statistics on counts are computed in float64.
    counts = np.zeros((n_trials, n_stimuli, n_units), np.uint8) if n_trials else None
    was_training = model.training
    model.eval()
    bar = tqdm(total=n_stimuli, desc="population", unit="stim",
               disable=None if progress is None else not progress)
    # Seeded sampling without disturbing the caller's global RNG stream.
    forked = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
    try:
        with forked, torch.no_grad():
            if seed is not None:
                torch.manual_seed(int(seed))
            for start in range(0, n_stimuli, batch_size):
                stop = min(start + batch_size, n_stimuli)
                posterior = model.posterior(images[start:stop].to(device))
                for name, value in _parameters(posterior).items():
                    statistics[name][start:stop] = value.float().cpu().numpy()
                if counts is not None:
                    # Exact draws (Gamma then Poisson; a hierarchy: ancestral draws of every level).
                    batch_counts = family.sample_counts(images[start:stop].to(device), n_trials)
                    batch_counts = as_smallest_counts(batch_counts.cpu().numpy())
                    if batch_counts.dtype.itemsize > counts.dtype.itemsize:
                        counts = counts.astype(batch_counts.dtype)
                    counts[:, start:stop] = batch_counts
                bar.update(stop - start)
    finally:
        bar.close()
        model.train(was_training)

    with torch.no_grad():
        prior = _parameters(model.prior())
    stimulus = np.arange(n_stimuli) if stimulus_ids is None else np.asarray(stimulus_ids)
    coords: dict[str, Any] = {"stimulus": stimulus, "unit": np.arange(n_units)}
    if labels is not None:
        coords["label"] = ("stimulus", labels)
    # e.g. a hierarchy's level, scale, group, channel, y, x of each unit, for groupby("level").
    coords.update({name: ("unit", values) for name, values in family.unit_coords().items()})
    data_vars: dict[str, Any] = {
        name: (("stimulus", "unit"), value) for name, value in statistics.items()
    }
    data_vars["prior_rate"] = ("unit", prior["rate"].cpu().numpy().astype(np.float32))
    data_vars["prior_dispersion"] = ("unit", prior["dispersion"].cpu().numpy().astype(np.float32))
    data_vars["prior_fano_factor"] = ("unit", prior["fano_factor"].cpu().numpy().astype(np.float32))
    if counts is not None:
        coords["trial"] = np.arange(n_trials)
        data_vars["counts"] = (("trial", "stimulus", "unit"), counts)
    dataset = xr.Dataset(data_vars, coords=coords)
    config = getattr(model, "config", {}) or {}
    dataset.attrs = {
        "model": family.name,
        "variant": model.variant,
        "dataset": str(config.get("data", "unknown")),
        "checkpoint": str(getattr(model, "checkpoint_path", "") or "not saved"),
        "spikelatent_version": __version__,
        "count_window": "spike counts per unit window [0, 1)",
        "seed": -1 if seed is None else int(seed),
    }
    units = {"rate": "spikes per window", "variance": "spikes^2 per window",
             "fano_factor": "dimensionless", "prob": "NB success probability p",
             "dispersion": "NB total count r (inf for Poisson)", "counts": "spikes"}
    for name, unit in units.items():
        if name in dataset:
            dataset[name].attrs["units"] = unit
    if bin_size is not None:
        binned = binned_counts(dataset, bin_size, process=spike_process, seed=seed)
        dataset["binned_counts"] = binned.drop_vars(["trial", "stimulus", "unit", "label"], errors="ignore")
        dataset["binned_counts"].attrs = dict(binned.attrs)
    return dataset


def binned_counts(
    pop: xr.Dataset,
    bin_size: float,
    *,
    process: str = "uniform",
    window: float = 1.0,
    seed: int | None = 0,
) -> xr.DataArray:
    """The population's counts in consecutive bins of its counting window, from :func:`spike_times`.

    Returns:
        ``counts`` DataArray ``(trial, stimulus, time, unit)`` with the coordinates and attributes
        of :func:`spikelatent.nwb.read_counts` with ``bin_size`` (``time``, ``time_start``,
        ``time_stop`` in seconds from the window's start, ``attrs["bin_size"]``); summed over
        ``time`` it equals ``pop["counts"]`` whenever the window is a whole number of bins.
    """
    bin_size = check_bin_size(bin_size)
    times = spike_times(pop, process=process, window=window, seed=seed)
    counts = pop["counts"].transpose("trial", "stimulus", "unit")
    n_trial, n_stimulus, n_unit = counts.shape
    # Each (trial, stimulus) presentation is one window; shift it to its own time slot.
    window_index = times["trial"].values * n_stimulus + times["stimulus"].values
    absolute = window_index * float(window) + times["time"].values
    unit = times["unit"].values
    order = np.argsort(unit, kind="stable")
    split = np.searchsorted(unit[order], np.arange(1, n_unit))
    trains = np.split(absolute[order], split)
    starts = np.arange(n_trial * n_stimulus, dtype=np.float64) * float(window)
    flat = count_spikes(
        trains, starts, starts + float(window), bin_size=bin_size, unit_ids=counts["unit"].values
    )
    data = np.asarray(flat.values).reshape(n_trial, n_stimulus, flat.sizes["time"], n_unit)
    coords: dict[str, Any] = {
        "trial": counts["trial"].values if "trial" in counts.coords else np.arange(n_trial),
        "stimulus": counts["stimulus"].values,
        "unit": counts["unit"].values,
        "time": flat["time"].values,
        "time_start": ("time", flat["time_start"].values),
        "time_stop": ("time", flat["time_stop"].values),
    }
    if "label" in pop.coords and pop["label"].dims == ("stimulus",):
        coords["label"] = ("stimulus", pop["label"].values)
    attrs = {
        key: flat.attrs[key]
        for key in ("bin_size", "n_bins_per_window", "binned_length", "n_spikes_binned")
    }
    attrs.update(process=process, window=float(window), seed=times.attrs["seed"], units="spikes")
    return xr.DataArray(
        data, dims=("trial", "stimulus", "time", "unit"), coords=coords, name="counts", attrs=attrs
    )

"""Receptive fields of every latent unit, and how Gabor-like (V1-like) they are.

* **Generative field** of unit k: ``decoder(z0 + delta · e_k) − decoder(z0)`` with ``z0`` the prior
  mean — what one extra spike of unit k adds to the image (for a linear decoder without output
  nonlinearity: exactly ``delta`` times the decoder's weight column k).
* **Encoder receptive field** of unit k: the gradient of its posterior rate (posterior mean) with
  respect to the image, averaged over stimuli (``method="gradient"``), or the spike-triggered
  average of white-noise probes weighted by the unit's rate (``method="sta"``).
* **Gabor fit** per field (``scipy.optimize.least_squares``, four starts):
  ``A · exp(−x'²/2σx² − y'²/2σy²) · cos(2π f x' + φ) + c`` with ``x'``, ``y'`` the coordinates
  rotated by the orientation θ around the centre; R² = 1 − SSE / SST.

``receptive_fields(model, images)`` returns all of it as one ``xarray.Dataset`` over ``unit``;
``gabor_fraction(fields)`` is the share of units with R² ≥ 0.5 (a number to put next to the
population's sparsity); ``save_receptive_field_grid`` draws the fields ordered by activity.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.optimize
import torch
import xarray as xr
from tqdm.auto import tqdm

from spikelatent.errors import SpikelatentError

#: Gabor R² at or above which a unit counts as Gabor-like.
GABOR_R2_THRESHOLD = 0.5
GABOR_PARAMETERS = ("amplitude", "center_row", "center_col", "orientation", "frequency",
                    "phase", "sigma_along", "sigma_across", "offset")


def _prior_mean(model: Any) -> torch.Tensor:
    """The prior mean as one latent code ``(1, latent_dim)``."""
    return model.prior().mean.reshape(1, -1).detach()


def _field_array(values: np.ndarray, name: str, attrs: dict[str, Any]) -> xr.DataArray:
    return xr.DataArray(
        values, dims=("unit", "channel", "row", "col"), name=name,
        coords={"unit": np.arange(values.shape[0])}, attrs=attrs,
    )


@torch.no_grad()
def generative_fields(model: Any, delta: float = 1.0, units: Any = None) -> xr.DataArray:
    """``decoder(z0 + delta e_k) − decoder(z0)`` for every unit k, ``(unit, channel, row, col)``.

    Args:
        model: a trained :class:`~spikelatent.model.VAE` (any latent family).
        delta: how far unit k is raised from the prior mean ``z0`` (1 = one more spike).
        units: the units to compute (default all), e.g. the most active of a large hierarchy.
    """
    if not math.isfinite(delta) or delta == 0:
        raise SpikelatentError(f"delta must be a finite non-zero number; got {delta!r}")
    model.eval()
    base = _prior_mean(model)
    latent_dim = base.shape[1]
    raised = base + delta * torch.eye(latent_dim, device=base.device, dtype=base.dtype)
    if units is not None:
        raised = raised[torch.as_tensor(np.asarray(units, dtype=np.int64))]
    fields = model.decode(raised) - model.decode(base)
    return _field_array(fields.cpu().double().numpy(), "generative_field",
                        {"delta": float(delta), "base": "prior mean",
                         "definition": "decoder(z0 + delta e_k) - decoder(z0)"})


def encoder_fields(
    model: Any,
    images: torch.Tensor | None = None,
    method: str = "gradient",
    batch_size: int = 256,
    n_probes: int = 5000,
    seed: int = 0,
    units: Any = None,
) -> xr.DataArray:
    """Encoder receptive fields ``(unit, channel, row, col)`` (``units``: a subset, default all).

    Args:
        model: a trained VAE.
        images: stimuli ``(N, C, H, W)`` on the model's data range (``gradient``: required).
        method: ``gradient`` = mean over stimuli of d(posterior rate of k)/d(image);
            ``sta`` = Σ_n r_nk (x_n − x̄) / Σ_n r_nk over ``n_probes`` Gaussian white-noise probes
            (mean the middle of the data range, s.d. a sixth of its width).
    """
    model.eval()
    if method == "gradient":
        if images is None or len(images) == 0:
            raise SpikelatentError("encoder fields by gradient need stimuli: pass images (N, C, H, W)")
        total = None
        for start in tqdm(range(0, len(images), batch_size), desc="encoder fields",
                          disable=None, leave=False):
            x = images[start:start + batch_size].detach().clone().requires_grad_(True)
            rates = model.posterior(x).mean.reshape(len(x), -1)
            if units is not None:
                rates = rates[:, np.asarray(units, dtype=np.int64)]
            grads = _summed_gradients(rates, x)
            total = grads if total is None else total + grads
        fields = (total / len(images)).detach().cpu().double().numpy()
        attrs = {"method": "gradient", "n_stimuli": len(images),
                 "definition": "mean over stimuli of d rate_k / d image"}
    elif method == "sta":
        low, high = model.data_range
        generator = torch.Generator().manual_seed(seed)
        weighted, weights, probe_sum = None, None, None
        with torch.no_grad():
            for start in range(0, n_probes, batch_size):
                count = min(batch_size, n_probes - start)
                probes = ((low + high) / 2 + (high - low) / 6 *
                          torch.randn((count, *model.image_shape), generator=generator))
                rates = model.posterior(probes).mean.reshape(count, -1)
                if units is not None:
                    rates = rates[:, np.asarray(units, dtype=np.int64)]
                flat = probes.flatten(1).double()
                w = (rates.double().T @ flat)
                weighted = w if weighted is None else weighted + w
                s = rates.double().sum(0)
                weights = s if weights is None else weights + s
                p = flat.sum(0)
                probe_sum = p if probe_sum is None else probe_sum + p
        mean_probe = probe_sum / n_probes
        sta = weighted / weights.clamp_min(1e-12)[:, None] - mean_probe[None]
        fields = sta.reshape(-1, *model.image_shape).numpy()
        attrs = {"method": "sta", "n_probes": n_probes, "seed": seed,
                 "definition": "rate-weighted average of white-noise probes minus their mean"}
    else:
        raise SpikelatentError(f"method must be 'gradient' or 'sta'; got {method!r}")
    return _field_array(fields, "encoder_field", attrs)


def _summed_gradients(rates: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``d rates[:, k].sum() / d x`` for every unit k, summed over the batch: ``(unit, C, H, W)``.

    Rates of different stimuli do not interact, so the gradient of the batch sum is the sum of
    each stimulus' own gradient: one backward pass per unit for the whole batch. (A vectorised
    backward, ``is_grads_batched``, measured 30x slower on a conv encoder on the CPU.)
    """
    return torch.stack([
        torch.autograd.grad(rates[:, k].sum(), x, retain_graph=k < rates.shape[1] - 1)[0].sum(0)
        for k in range(rates.shape[1])
    ])


# ------------------------------------------------------------------------------------- Gabor
def gabor(params: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The 2-D Gabor of :data:`GABOR_PARAMETERS` on pixel grids ``rows``, ``cols``.

    ``orientation`` θ is the direction of the carrier's wave vector (radians, from the column
    axis towards the row axis); ``frequency`` in cycles per pixel; ``sigma_along`` is the
    envelope's s.d. along the wave vector, ``sigma_across`` along the stripes (pixels).
    """
    amplitude, row0, col0, theta, frequency, phase, sigma_along, sigma_across, offset = params
    dx, dy = cols - col0, rows - row0
    along = dx * np.cos(theta) + dy * np.sin(theta)
    across = -dx * np.sin(theta) + dy * np.cos(theta)
    envelope = np.exp(-along**2 / (2 * sigma_along**2) - across**2 / (2 * sigma_across**2))
    return amplitude * envelope * np.cos(2 * np.pi * frequency * along + phase) + offset


def fit_gabor(field: np.ndarray) -> dict[str, float]:
    """Least-squares Gabor fit of a 2-D field ``(H, W)``: the :data:`GABOR_PARAMETERS` and ``r2``.

    Starts: the spectrum's peak gives frequency and orientation, the local energy's peak the
    centre; two phases (a negative amplitude covers the other two) × two envelope widths are
    tried and the best fit kept.
    """
    field = np.asarray(field, dtype=np.float64)
    if field.ndim != 2:
        raise SpikelatentError(f"fit_gabor takes one 2-D field (H, W); got shape {field.shape}")
    height, width = field.shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    total = float(((field - field.mean()) ** 2).sum())
    if total <= 0 or not np.isfinite(total):
        return {**dict.fromkeys(GABOR_PARAMETERS, float("nan")), "r2": float("nan")}
    scale = float(np.abs(field).max())
    target = field / scale
    spectrum = np.abs(np.fft.fft2(target - target.mean()))
    fy = np.fft.fftfreq(height)[:, None] * np.ones((1, width))
    fx = np.ones((height, 1)) * np.fft.fftfreq(width)[None, :]
    peak = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    frequency0 = max(float(np.hypot(fy[peak], fx[peak])), 1.0 / max(height, width))
    theta0 = float(np.arctan2(fy[peak], fx[peak])) % np.pi
    energy = scipy_gaussian(target**2, sigma=max(1.0, 0.5 / frequency0))
    center = np.unravel_index(np.argmax(energy), energy.shape)
    side = max(height, width)
    lower = [-np.inf, -0.5, -0.5, -np.inf, 0.0, -np.inf, 0.5, 0.5, -np.inf]
    upper = [np.inf, height - 0.5, width - 0.5, np.inf, 0.5, np.inf, side, side, np.inf]
    best, best_cost = None, np.inf
    for phase in (0.0, np.pi / 2):
        for sigma in (0.5 / frequency0, side / 6):
            sigma = float(np.clip(sigma, 0.6, side - 0.1))
            start = np.array([1.0, center[0], center[1], theta0, min(frequency0, 0.49), phase,
                              sigma, sigma, 0.0])
            try:
                result = scipy.optimize.least_squares(
                    lambda p: (gabor(p, rows, cols) - target).ravel(), start,
                    bounds=(lower, upper), max_nfev=200,
                )
            except ValueError:
                continue
            if result.cost < best_cost:
                best, best_cost = result.x, result.cost
    if best is None:
        return {**dict.fromkeys(GABOR_PARAMETERS, float("nan")), "r2": float("nan")}
    fitted = dict(zip(GABOR_PARAMETERS, (float(v) for v in best), strict=True))
    residual = float(((gabor(best, rows, cols) * scale - field) ** 2).sum())
    # Canonical form: positive amplitude, orientation in [0, pi), phase in [0, 2 pi).
    if fitted["amplitude"] < 0:
        fitted["amplitude"] = -fitted["amplitude"]
        fitted["phase"] += np.pi
    if not 0 <= fitted["orientation"] < np.pi:
        turns = math.floor(fitted["orientation"] / np.pi)
        fitted["orientation"] -= turns * np.pi
        if turns % 2:  # theta + pi flips the carrier: x' -> -x'
            fitted["phase"] = -fitted["phase"]
    fitted["phase"] %= 2 * np.pi
    fitted["amplitude"] *= scale
    fitted["offset"] *= scale
    fitted["r2"] = 1.0 - residual / total
    return fitted


def scipy_gaussian(array: np.ndarray, sigma: float) -> np.ndarray:
    import scipy.ndimage

    return scipy.ndimage.gaussian_filter(array, sigma=sigma, mode="constant")


def gabor_fits(fields: xr.DataArray) -> xr.Dataset:
    """Gabor fit of every unit's field (channels averaged), an ``xarray.Dataset`` over ``unit``
    with one variable per parameter of :data:`GABOR_PARAMETERS` and ``r2``."""
    grey = fields.mean("channel") if "channel" in fields.dims else fields
    results = [fit_gabor(grey.sel(unit=unit).values) for unit in
               tqdm(grey["unit"].values, desc="Gabor fits", disable=None, leave=False)]
    keys = (*GABOR_PARAMETERS, "r2")
    units = {"center_row": "pixel", "center_col": "pixel", "orientation": "radian",
             "frequency": "cycles per pixel", "phase": "radian", "sigma_along": "pixel",
             "sigma_across": "pixel", "r2": "1"}
    return xr.Dataset(
        {f"gabor_{key}": ("unit", np.array([result[key] for result in results]),
                          {"units": units.get(key, "image units")}) for key in keys},
        coords={"unit": grey["unit"].values},
    )


def gabor_fraction(fits: xr.Dataset, threshold: float = GABOR_R2_THRESHOLD,
                   units: np.ndarray | None = None) -> float:
    """Share of units (all, or ``units``) whose Gabor R² is at least ``threshold``."""
    r2 = fits["gabor_r2"] if units is None else fits["gabor_r2"].sel(unit=units)
    if r2.size == 0:
        return float("nan")
    return float((r2.fillna(-np.inf) >= threshold).mean())


def receptive_fields(
    model: Any,
    images: torch.Tensor,
    method: str = "gradient",
    delta: float = 1.0,
    batch_size: int = 256,
    fit: bool = True,
    max_units: int | None = None,
) -> xr.Dataset:
    """Generative and encoder fields of every unit, their activity and Gabor fits.

    ``max_units``: fields of only the most active units when there are more (one backward pass
    and one Gabor fit per unit: a hierarchy has thousands); ``attrs["units"]`` says which.

    Returns an ``xarray.Dataset`` with ``generative_field`` and ``encoder_field``
    ``(unit, channel, row, col)``, ``activity`` ``(unit)`` (the mean posterior rate over
    ``images``), ``activity_rank`` (0 = most active), and ``gabor_*`` variables fitted to the
    generative field (``fit=True``). ``attrs`` carry the model variant and
    ``gabor_fraction`` (R² ≥ 0.5 among all units) and ``gabor_fraction_active``.
    """
    model.eval()
    with torch.no_grad():
        activity = torch.cat([
            model.posterior(images[start:start + batch_size]).mean
            .reshape(len(images[start:start + batch_size]), -1)
            for start in range(0, len(images), batch_size)
        ]).mean(0).cpu().double().numpy()
    order = np.argsort(-activity, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    units = None
    if max_units is not None and len(activity) > max_units:
        units = np.sort(order[:max_units])
    generative = generative_fields(model, delta, units=units)
    encoder = encoder_fields(model, images, method=method, batch_size=batch_size, units=units)
    if units is not None:
        generative = generative.assign_coords(unit=units)
        encoder = encoder.assign_coords(unit=units)
        activity, rank = activity[units], rank[units]
    dataset = xr.Dataset(
        {"generative_field": generative, "encoder_field": encoder,
         "activity": ("unit", activity, {"units": "mean posterior rate (spikes per window)"}),
         "activity_rank": ("unit", rank)},
        attrs={"model": getattr(model, "variant", ""), "n_stimuli": len(images),
               "encoder_method": method, "delta": float(delta),
               "units": "all" if units is None else f"the {len(units)} most active"},
    )
    if fit:
        dataset = dataset.merge(gabor_fits(generative))
        dataset.attrs["gabor_r2_threshold"] = GABOR_R2_THRESHOLD
        dataset.attrs["gabor_fraction"] = gabor_fraction(dataset)
        active = dataset["unit"].values[activity > 0.01 * activity.max()] if activity.max() > 0 else []
        dataset.attrs["gabor_fraction_active"] = gabor_fraction(dataset, units=active)
    return dataset


def save_receptive_field_grid(
    fields: xr.Dataset,
    path: str | os.PathLike,
    variable: str = "generative_field",
    max_units: int = 256,
    title: str | None = None,
) -> Path:
    """PNG grid of ``variable`` per unit, most active unit first, each field scaled to its own
    maximum absolute value (grey = 0); a unit's Gabor R² is printed under it when fitted."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from spikelatent._io import atomic_path

    order = np.argsort(-fields["activity"].values, kind="stable")[:max_units]
    count = len(order)
    columns = int(math.ceil(math.sqrt(count)))
    rows = int(math.ceil(count / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 1.0 + 0.6),
                                squeeze=False)
    has_r2 = "gabor_r2" in fields
    for axis in axes.ravel():
        axis.axis("off")
    for axis, unit in zip(axes.ravel(), order, strict=False):
        field = fields[variable].sel(unit=fields["unit"].values[unit]).values
        image = field.mean(0) if field.shape[0] != 3 else np.moveaxis(field, 0, -1)
        bound = float(np.abs(image).max()) or 1.0
        if image.ndim == 2:
            axis.imshow(image, cmap="gray", vmin=-bound, vmax=bound, interpolation="nearest")
        else:
            axis.imshow(np.clip(0.5 + image / (2 * bound), 0, 1), interpolation="nearest")
        if has_r2:
            r2 = float(fields["gabor_r2"].values[unit])
            axis.set_title(f"{r2:.2f}", fontsize=6, pad=1,
                           color="black" if r2 >= GABOR_R2_THRESHOLD else "grey")
    figure.suptitle(title or f"{variable.replace('_', ' ')}s, most active first"
                    + (" (Gabor R² above each)" if has_r2 else ""), fontsize=9)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=120, format="png")
    plt.close(figure)
    return path


#: Stimuli the encoder fields of ``spikelatent analyze`` average over (one backward pass per unit
#: and batch: more stimuli cost time and barely change a mean gradient).
ANALYZE_STIMULI = 200


def receptive_field_numbers(fields: xr.Dataset) -> dict[str, Any]:
    """The numbers of ``analysis.json``'s ``receptive_fields`` entry (JSON-ready)."""
    r2 = fields["gabor_r2"].values if "gabor_r2" in fields else np.array([])
    finite = r2[np.isfinite(r2)]

    def number(value: float) -> float | None:
        return float(value) if np.isfinite(value) else None

    return {
        "gabor_fraction": number(fields.attrs.get("gabor_fraction", float("nan"))),
        "gabor_fraction_active": number(fields.attrs.get("gabor_fraction_active", float("nan"))),
        "gabor_r2_threshold": GABOR_R2_THRESHOLD,
        "gabor_r2_median": number(np.median(finite)) if finite.size else None,
        "n_units": int(fields.sizes["unit"]),
        "n_stimuli": int(fields.attrs.get("n_stimuli", 0)),
        "encoder_method": fields.attrs.get("encoder_method"),
        "note": "Gabor fits of the generative fields decoder(prior mean + 1 e_k) - "
                "decoder(prior mean); active = at least 1 % of the top mean rate",
    }


def receptive_field_lines(numbers: dict[str, Any]) -> list[str]:
    """One printed line for ``spikelatent analyze``."""
    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    return [f"receptive fields: Gabor-like (R² >= {numbers['gabor_r2_threshold']}) "
            f"{share(numbers['gabor_fraction'])} of all units, "
            f"{share(numbers['gabor_fraction_active'])} of active units "
            f"(median R² {share(numbers['gabor_r2_median'])})"]

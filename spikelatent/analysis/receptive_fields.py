"""Receptive fields of every latent unit, and how Gabor-like (V1-like) they are.

* **Generative field** of unit k: ``decoder(z0 + delta · e_k) − decoder(z0)`` with ``z0`` the prior
  mean — what one extra spike of unit k adds to the image (for a linear decoder without output
  nonlinearity: exactly ``delta`` times the decoder's weight column k).
* **Encoder receptive field** of unit k: the gradient of its posterior rate (posterior mean) with
  respect to the image, averaged over stimuli (``method="gradient"``), or the spike-triggered
  average of white-noise probes weighted by the unit's rate (``method="sta"``).
* **Gabor fit** per field (``scipy.optimize.least_squares``, four starts):
  ``A · exp(−x'²/2σx² − y'²/2σy²) · cos(2π f x' + φ) + c`` with ``x'``, ``y'`` the coordinates
  rotated by the orientation θ around the centre; R² = 1 − SSE / SST; and the envelope in
  cycles of the carrier (Ringach 2002): ``n_x = σx · f`` along the carrier, ``n_y = σy · f``
  across it.
* **Gabor-like** = a good fit (R² ≥ 0.5) that shows an oriented, modulated field: at least one
  full period of the carrier — an ON and an OFF subregion side by side, the defining trait of a
  simple cell (Hubel & Wiesel 1962; Jones & Palmer 1987) — inside the envelope's central ±2σx
  (95 % of it): ``4 n_x ≥ 1``, i.e. ``n_x ≥ 0.25``. A Gaussian blob (one subregion) fits with
  ``f ≈ 0`` and a high R², so R² alone counts blobs.

``receptive_fields(model, images)`` returns all of it as one ``xarray.Dataset`` over ``unit``;
``gabor_fraction(fields)`` is the share of Gabor-like units (a number to put next to the
population's sparsity); ``save_receptive_field_grid`` draws the fields ordered by activity.

References: D. L. Ringach (2002), Spatial structure and symmetry of simple-cell receptive fields
in macaque primary visual cortex, J. Neurophysiol. 88:455–463. J. P. Jones and L. A. Palmer
(1987), An evaluation of the two-dimensional Gabor filter model of simple receptive fields in cat
striate cortex, J. Neurophysiol. 58:1233–1258. D. H. Hubel and T. N. Wiesel (1962), Receptive
fields, binocular interaction and functional architecture in the cat's visual cortex, J. Physiol.
160:106–154.
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

#: Gabor R² at or above which a fit is good (one of the two conditions of "Gabor-like").
GABOR_R2_THRESHOLD = 0.5
#: n_x = σx · f (Ringach 2002) at or above which a good fit counts as Gabor-like: one full period
#: of the carrier (an ON and an OFF subregion) inside the envelope's ±2σx, 4 n_x ≥ 1.
GABOR_MIN_NX = 0.25
GABOR_PARAMETERS = ("amplitude", "center_row", "center_col", "orientation", "frequency",
                    "phase", "sigma_along", "sigma_across", "offset")


def _prior_mean(model: Any) -> torch.Tensor:
    """The prior mean as one latent code ``(1, latent_dim)``."""
    return model.prior().mean.reshape(1, -1).detach()


def _posterior_rates(model: Any, x: torch.Tensor, units: Any = None) -> torch.Tensor:
    """Posterior mean of every unit (or of ``units``), ``(batch, unit)`` (every model kind)."""
    rates = model.posterior(x).mean.reshape(len(x), -1)
    return rates if units is None else rates[:, np.asarray(units, dtype=np.int64)]


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
            rates = _posterior_rates(model, x, units)
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
                rates = _posterior_rates(model, probes, units)
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


def gabor_jacobian(params: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """d :func:`gabor` / d params, ``(pixels, 9)`` in the order of :data:`GABOR_PARAMETERS` (the
    chain rule through the rotated coordinates; one pass instead of nine finite differences)."""
    amplitude, row0, col0, theta, frequency, phase, sigma_along, sigma_across, _ = params
    dx, dy = (cols - col0).ravel(), (rows - row0).ravel()
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    along = dx * cos_t + dy * sin_t
    across = -dx * sin_t + dy * cos_t
    envelope = np.exp(-along**2 / (2 * sigma_along**2) - across**2 / (2 * sigma_across**2))
    carrier_angle = 2 * np.pi * frequency * along + phase
    carrier, quadrature = np.cos(carrier_angle), np.sin(carrier_angle)
    ec = envelope * carrier
    d_along = amplitude * envelope * (-along / sigma_along**2 * carrier
                                      - 2 * np.pi * frequency * quadrature)
    d_across = amplitude * ec * (-across / sigma_across**2)
    return np.stack([
        ec,                                                    # amplitude
        -d_along * sin_t - d_across * cos_t,                   # center_row
        -d_along * cos_t + d_across * sin_t,                   # center_col
        d_along * across - d_across * along,                   # orientation
        -amplitude * envelope * quadrature * 2 * np.pi * along,  # frequency
        -amplitude * envelope * quadrature,                    # phase
        amplitude * ec * along**2 / sigma_along**3,            # sigma_along
        amplitude * ec * across**2 / sigma_across**3,          # sigma_across
        np.ones_like(ec),                                      # offset
    ], axis=1)


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
                    jac=lambda p: gabor_jacobian(p, rows, cols),
                    # 1e-6: R² as with the 1e-8 defaults to 1e-4 on digits fields, 3x faster
                    bounds=(lower, upper), max_nfev=200, ftol=1e-6, xtol=1e-6,
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
    with one variable per parameter of :data:`GABOR_PARAMETERS`, ``r2``, the envelope in
    cycles ``nx = sigma_along · frequency`` and ``ny = sigma_across · frequency`` (Ringach
    2002) and ``like`` (True = Gabor-like, :func:`is_gabor_like`)."""
    grey = fields.mean("channel") if "channel" in fields.dims else fields
    results = [fit_gabor(grey.sel(unit=unit).values) for unit in
               tqdm(grey["unit"].values, desc="Gabor fits", disable=None, leave=False)]
    keys = (*GABOR_PARAMETERS, "r2")
    units = {"center_row": "pixel", "center_col": "pixel", "orientation": "radian",
             "frequency": "cycles per pixel", "phase": "radian", "sigma_along": "pixel",
             "sigma_across": "pixel", "r2": "1"}
    fits = xr.Dataset(
        {f"gabor_{key}": ("unit", np.array([result[key] for result in results]),
                          {"units": units.get(key, "image units")}) for key in keys},
        coords={"unit": grey["unit"].values},
    )
    frequency = fits["gabor_frequency"]
    fits["gabor_nx"] = (fits["gabor_sigma_along"] * frequency).assign_attrs(
        units="cycles", long_name="envelope s.d. along the carrier in cycles (Ringach 2002)")
    fits["gabor_ny"] = (fits["gabor_sigma_across"] * frequency).assign_attrs(
        units="cycles", long_name="envelope s.d. across the carrier in cycles (Ringach 2002)")
    fits["gabor_like"] = ("unit", is_gabor_like(fits["gabor_r2"].values, fits["gabor_nx"].values),
                          {"definition": f"r2 >= {GABOR_R2_THRESHOLD} and nx >= {GABOR_MIN_NX}"})
    return fits


def is_gabor_like(r2: np.ndarray, nx: np.ndarray, threshold: float = GABOR_R2_THRESHOLD,
                  min_nx: float = GABOR_MIN_NX) -> np.ndarray:
    """True where a Gabor fit is good (``r2 ≥ threshold``) and its envelope holds at least
    ``4 · min_nx`` periods of the carrier within ±2σ along it (``nx ≥ min_nx``, default one full
    period: an ON and an OFF subregion). NaN fits are False."""
    r2, nx = np.asarray(r2, dtype=np.float64), np.asarray(nx, dtype=np.float64)
    return (r2 >= threshold) & (nx >= min_nx)  # NaN compares False


def gabor_fraction(fits: xr.Dataset, threshold: float = GABOR_R2_THRESHOLD,
                   units: np.ndarray | None = None, min_nx: float = GABOR_MIN_NX) -> float:
    """Share of units (all, or ``units``) that are Gabor-like: Gabor R² at least ``threshold``
    and ``n_x = σx · f`` at least ``min_nx`` (:func:`is_gabor_like`; ``min_nx=0`` gives the
    share of good fits, blobs included)."""
    selected = fits if units is None else fits.sel(unit=units)
    if selected.sizes["unit"] == 0:
        return float("nan")
    nx = selected["gabor_sigma_along"].values * selected["gabor_frequency"].values
    return float(is_gabor_like(selected["gabor_r2"].values, nx, threshold, min_nx).mean())


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
    generative field (``fit=True``: :func:`gabor_fits`, with ``gabor_nx``, ``gabor_ny`` and
    ``gabor_like``). ``attrs`` carry the model variant, ``gabor_fraction`` (the share of
    Gabor-like units, :func:`is_gabor_like`), ``gabor_fraction_active`` (among the units with at
    least 1 % of the top activity) and ``good_fit_fraction`` (R² ≥ 0.5, blobs included).
    """
    model.eval()
    with torch.no_grad():
        activity = torch.cat([
            _posterior_rates(model, images[start:start + batch_size])
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
        dataset.attrs["gabor_min_nx"] = GABOR_MIN_NX
        dataset.attrs["gabor_fraction"] = gabor_fraction(dataset)
        dataset.attrs["good_fit_fraction"] = gabor_fraction(dataset, min_nx=-np.inf)
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
    maximum absolute value (grey = 0); when fitted, a unit's Gabor R² and n_x are printed above
    it (black: Gabor-like, grey: not)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from spikelatent.io import atomic_path

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
            nx = float(fields["gabor_sigma_along"].values[unit]
                       * fields["gabor_frequency"].values[unit])
            axis.set_title(f"{r2:.2f} {nx:.2f}", fontsize=5, pad=1,
                           color="black" if is_gabor_like(r2, nx) else "grey")
    figure.suptitle(title or f"{variable.replace('_', ' ')}s, most active first"
                    + (" (Gabor R² and n_x above each; black: Gabor-like)" if has_r2 else ""),
                    fontsize=9)
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
    nx = (fields["gabor_sigma_along"].values * fields["gabor_frequency"].values
          if "gabor_r2" in fields else np.array([]))
    good_nx = nx[r2 >= GABOR_R2_THRESHOLD]

    def number(value: float) -> float | None:
        return float(value) if np.isfinite(value) else None

    return {
        "gabor_fraction": number(fields.attrs.get("gabor_fraction", float("nan"))),
        "gabor_fraction_active": number(fields.attrs.get("gabor_fraction_active", float("nan"))),
        "gabor_r2_threshold": GABOR_R2_THRESHOLD,
        "gabor_min_nx": GABOR_MIN_NX,
        "good_fit_fraction": number(fields.attrs.get("good_fit_fraction", float("nan"))),
        "gabor_r2_median": number(np.median(finite)) if finite.size else None,
        "good_fit_nx_median": number(np.median(good_nx)) if good_nx.size else None,
        "n_units": int(fields.sizes["unit"]),
        "n_stimuli": int(fields.attrs.get("n_stimuli", 0)),
        "encoder_method": fields.attrs.get("encoder_method"),
        "note": "Gabor fits of the generative fields decoder(prior mean + 1 e_k) - "
                "decoder(prior mean); Gabor-like = R² >= gabor_r2_threshold and n_x = sigma_x * f "
                ">= gabor_min_nx (one full period within the envelope's +-2 sigma; Ringach 2002); "
                "good fits = R² alone (blobs included); active = at least 1 % of the top mean rate",
    }


def receptive_field_lines(numbers: dict[str, Any]) -> list[str]:
    """One printed line for ``spikelatent analyze``."""
    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    return [f"receptive fields: Gabor-like {share(numbers['gabor_fraction'])} of all units, "
            f"{share(numbers['gabor_fraction_active'])} of active units "
            f"(R² >= {numbers['gabor_r2_threshold']} and n_x >= {numbers['gabor_min_nx']} cycles; "
            f"{share(numbers['good_fit_fraction'])} fit with R² >= "
            f"{numbers['gabor_r2_threshold']}, median n_x of those "
            f"{share(numbers['good_fit_nx_median'])})"]

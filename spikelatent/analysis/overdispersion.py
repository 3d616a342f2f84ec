"""Trial-to-trial variability of spike counts: Fano factors, mean–variance relation, overdispersion tests.

All functions take an ``xarray.DataArray`` of counts and reduce over a *named* dimension (``over``,
by default ``"trial"``). They work on the model layout ``(trial, stimulus, unit)`` (dims in any order)
and on the recorded layout ``(trial, unit)`` with a ``stimulus`` coordinate along ``trial``: there the
trials are grouped by ``group_by`` (default ``"stimulus"``) first, so the results have a ``stimulus``
dimension in both cases. Results are ``xarray.Dataset`` objects with the remaining dims.

A *cell* below is one (stimulus, unit) pair: ``n`` trials ``x_1..x_n`` of one unit's count for one stimulus.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from scipy import special, stats
from scipy.optimize import elementwise

from spikelatent.analysis._layout import Cells, as_dataarray, cells_over
from spikelatent.analysis._streaming import is_chunked, streamed_cell_moments
from spikelatent.errors import SpikelatentError

__all__ = [
    "empirical_fano_factor",
    "model_fano_summary",
    "mean_variance_relation",
    "overdispersion_test",
    "nb_vs_poisson_lrt",
]

ZERO_MEAN_REASON = (
    "NaN where a cell has no spikes in any trial (mean 0, so variance/mean is undefined) "
    "or fewer than 2 trials (recorded data)"
)


def _require_integer_counts(counts: xr.DataArray) -> None:
    values = np.asarray(counts.values)
    if values.dtype.kind == "f" and not np.all(np.isnan(values) | (values == np.round(values))):
        raise SpikelatentError(
            "the NB-vs-Poisson likelihood-ratio test needs integer spike counts, got non-integer values"
        )


def _check_probability(value: float, name: str) -> None:
    if not (0.0 < float(value) < 1.0):
        raise SpikelatentError(f"{name} must lie strictly between 0 and 1, got {value}")


def _moments(block: np.ndarray) -> dict[str, np.ndarray]:
    """Per-column sample size, mean and central moments m2..m4 (divided by n) of a NaN-padded block."""
    finite = np.isfinite(block)
    n = finite.sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(block, axis=0) / n
        deviation = block - mean
        squared = deviation**2
        m2 = np.nansum(squared, axis=0) / n
        m3 = np.nansum(squared * deviation, axis=0) / n
        m4 = np.nansum(squared * squared, axis=0) / n
    return {"n": n, "mean": mean, "m2": m2, "m3": m3, "m4": m4}


def _moments_of(
    counts: xr.DataArray, over: str, group_by: str | None
) -> tuple[Cells, dict[str, np.ndarray]]:
    """Cells and their moments over ``over``; chunked (dask) counts chunk by chunk."""
    if is_chunked(counts):
        moments, template = streamed_cell_moments(counts, over, group_by)
        return Cells(matrix=None, template=template, over=over), moments
    cells = cells_over(counts, over, group_by)
    return cells, _cell_moments(cells)


def _cell_moments(cells: Cells) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    for _, block in cells.blocks():
        for key, value in _moments(block).items():
            parts.setdefault(key, []).append(value)
    return {key: np.concatenate(values) for key, values in parts.items()}


def empirical_fano_factor(
    counts: xr.DataArray,
    over: str = "trial",
    confidence: float = 0.95,
    method: str = "delta",
    group_by: str | None = "stimulus",
) -> xr.Dataset:
    """Fano factor (variance / mean over ``over``) per cell, with a confidence interval.

    Args:
        counts: spike counts, e.g. ``(trial, stimulus, unit)`` or recorded ``(trial, unit)`` with a
            ``stimulus`` coordinate along ``trial``; non-negative.
        over: the dim holding repeated trials.
        confidence: coverage of the interval, in (0, 1).
        method: ``"delta"`` (default): normal interval on log F from the influence-function (delta
            method) standard error built from the sample 2nd–4th central moments; valid for any count
            distribution as n grows (NB, Poisson, ...). ``"chi2"``: treats (n−1)·F̂/F as χ²_{n−1}, exact
            for the Poisson dispersion statistic but too narrow for strongly overdispersed counts
            (it ignores excess kurtosis).
        group_by: coordinate along ``over`` whose values group the trials (recorded layout).

    Returns:
        Dataset over the remaining dims with ``fano_factor``, ``ci_low``, ``ci_high``, ``mean``,
        ``variance`` (unbiased, ddof=1) and ``n_trials``. Cells with zero mean (or < 2 trials) are NaN;
        the reason is in ``fano_factor.attrs["nan_reason"]``.
    """
    _check_probability(confidence, "confidence")
    if method not in ("delta", "chi2"):
        raise SpikelatentError(
            f"unknown Fano-factor interval method {method!r}; use 'delta' or 'chi2'"
        )
    counts = as_dataarray(counts, "counts")
    cells, m = _moments_of(counts, over, group_by)
    return fano_from_moments(cells, m, over, confidence, method)


def fano_from_moments(
    cells: Cells, m: dict[str, np.ndarray], over: str, confidence: float, method: str
) -> xr.Dataset:
    """:func:`empirical_fano_factor`'s Dataset from per-cell moments (``n``, ``mean``, central
    ``m2``..``m4`` divided by n), in memory or summed over chunks."""
    n, mean = m["n"], m["mean"]
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = np.where(n >= 2, m["m2"] * n / (n - 1), np.nan)
        fano = np.where(mean > 0, variance / mean, np.nan)
        if method == "chi2":
            tail = (1.0 - confidence) / 2
            dof = np.where(n >= 2, n - 1, np.nan)
            ci_low = dof * fano / stats.chi2.ppf(1 - tail, dof)
            ci_high = dof * fano / stats.chi2.ppf(tail, dof)
        else:
            # Influence function of log(s²/x̄): ((x-x̄)² - m2)/m2 - (x-x̄)/x̄, whose variance is
            # (m4/m2² - 1) - 2 m3/(m2 x̄) + m2/x̄²; divided by (n - 1) for the standard error.
            influence_variance = (
                m["m4"] / m["m2"] ** 2 - 1.0 - 2.0 * m["m3"] / (m["m2"] * mean) + m["m2"] / mean**2
            )
            standard_error = np.sqrt(np.clip(influence_variance, 0.0, None) / (n - 1))
            z = stats.norm.ppf(0.5 + confidence / 2)
            ci_low = fano * np.exp(-z * standard_error)
            ci_high = fano * np.exp(z * standard_error)
            # A cell with identical counts in every trial has F = 0 and a degenerate [0, 0] interval.
            ci_low = np.where(fano == 0, 0.0, ci_low)
            ci_high = np.where(fano == 0, 0.0, ci_high)
    nan_attrs = {"nan_reason": ZERO_MEAN_REASON}
    dataset = xr.Dataset(
        {
            "fano_factor": cells.wrap(
                fano, "fano_factor", {"long_name": "variance / mean", **nan_attrs}
            ),
            "ci_low": cells.wrap(ci_low, "ci_low"),
            "ci_high": cells.wrap(ci_high, "ci_high"),
            "mean": cells.wrap(mean, "mean", {"long_name": f"mean count over {over}"}),
            "variance": cells.wrap(
                variance, "variance", {"long_name": f"variance over {over} (ddof=1)"}
            ),
            "n_trials": cells.wrap(n.astype(np.int64), "n_trials"),
        },
        attrs={
            "confidence": confidence,
            "method": method,
            "over": over,
            "nan_reason": ZERO_MEAN_REASON,
        },
    )
    return dataset


def model_fano_summary(
    pop: xr.Dataset | xr.DataArray,
    over: str | Sequence[str] = "stimulus",
    quantiles: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
) -> xr.Dataset:
    """Summaries of the model's Fano factor (1/p for NB latents) per unit and overall.

    Args:
        pop: a population Dataset with ``fano_factor`` ``(stimulus, unit)`` or that DataArray.
        over: dim(s) summarised per unit (the others are kept).
        quantiles: probabilities in [0, 1].

    Returns:
        Dataset with ``unit_mean``, ``unit_median``, ``unit_quantiles`` (kept dims, quantile) and
        ``overall_mean``, ``overall_median``, ``overall_quantiles`` (quantile), NaN-skipping.
        ``prior_fano_factor`` is copied when ``pop`` has it.
    """
    fano = as_dataarray(pop, "fano_factor")
    over_dims = (over,) if isinstance(over, str) else tuple(over)
    missing = [d for d in over_dims if d not in fano.dims]
    if missing:
        raise SpikelatentError(
            f"model_fano_summary needs dims {over_dims} in fano_factor, which has dims {tuple(fano.dims)}"
        )
    q = np.asarray(quantiles, dtype=np.float64)
    if q.ndim != 1 or q.size == 0 or np.any((q < 0) | (q > 1)):
        raise SpikelatentError(
            f"quantiles must be a non-empty list of numbers in [0, 1], got {quantiles}"
        )
    fano = fano.astype(np.float64)
    summary = xr.Dataset(
        {
            "unit_mean": fano.mean(over_dims, skipna=True),
            "unit_median": fano.median(over_dims, skipna=True),
            "unit_quantiles": fano.quantile(q, dim=over_dims, skipna=True),
            "overall_mean": fano.mean(skipna=True),
            "overall_median": fano.median(skipna=True),
            "overall_quantiles": fano.quantile(q, skipna=True),
        },
        attrs={"summarised_over": list(over_dims)},
    )
    if isinstance(pop, xr.Dataset) and "prior_fano_factor" in pop:
        summary["prior_fano_factor"] = pop["prior_fano_factor"]
    return summary


def mean_variance_relation(
    counts: xr.DataArray,
    over: str = "trial",
    across: str = "stimulus",
    group_by: str | None = "stimulus",
) -> xr.Dataset:
    """Per unit: how the trial variance grows with the trial mean across stimuli.

    Two fits per unit (every dim except ``over`` and ``across`` is kept, usually ``unit``):

    * ``slope``/``intercept`` of ``log variance = intercept + slope · log mean`` by ordinary least
      squares over stimuli with mean > 0 and variance > 0 (Poisson: slope 1, intercept 0);
    * ``gain_variance`` σ_G² of the modulated-Poisson model ``var = μ + σ_G² μ²`` (Goris et al. 2014):
      least squares of ``(var − μ)`` on ``μ²`` through the origin, ``Σ(var−μ)μ² / Σμ⁴``, clipped at 0
      (the constrained least-squares solution for one coefficient). For NB counts with a fixed
      dispersion r, σ_G² = 1/r.

    Returns:
        Dataset with ``slope``, ``intercept``, ``gain_variance``, ``n_points`` per unit and the per-cell
        ``mean``/``variance`` (across, unit) used. Units with fewer than 2 usable stimuli get NaN.
    """
    counts = as_dataarray(counts, "counts")
    fano = empirical_fano_factor(counts, over=over, group_by=group_by)
    if across not in fano.dims:
        raise SpikelatentError(
            f"mean_variance_relation: after reducing over {over!r} the counts have dims "
            f"{tuple(fano.dims)}; there is no {across!r} dim to fit across"
        )
    mean, variance = fano["mean"], fano["variance"]
    usable = (mean > 0) & (variance > 0) & np.isfinite(variance)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_mean = np.log(mean.where(usable))
        log_variance = np.log(variance.where(usable))
    n_points = usable.sum(across)
    centred_x = log_mean - log_mean.mean(across, skipna=True)
    centred_y = log_variance - log_variance.mean(across, skipna=True)
    sxx = (centred_x**2).sum(across, skipna=True)
    slope = ((centred_x * centred_y).sum(across, skipna=True) / sxx).where(
        (n_points >= 2) & (sxx > 0)
    )
    intercept = log_variance.mean(across, skipna=True) - slope * log_mean.mean(across, skipna=True)

    finite = np.isfinite(mean) & np.isfinite(variance)
    mu = mean.where(finite)
    numerator = ((variance.where(finite) - mu) * mu**2).sum(across, skipna=True)
    denominator = (mu**4).sum(across, skipna=True)
    gain_variance = (
        (numerator / denominator).clip(min=0.0).where((finite.sum(across) >= 2) & (denominator > 0))
    )
    return xr.Dataset(
        {
            "slope": slope.assign_attrs(long_name="log-log slope of variance on mean"),
            "intercept": intercept.assign_attrs(long_name="log-log intercept"),
            "gain_variance": gain_variance.assign_attrs(
                long_name="sigma_G^2 in var = mu + sigma_G^2 mu^2"
            ),
            "n_points": n_points,
            "mean": mean,
            "variance": variance,
        },
        attrs={"over": over, "across": across},
    )


def _significance(
    p_value: np.ndarray, alpha: float, correction: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Adjusted p-values (NaN stays NaN, i.e. untested) and the boolean decision."""
    tested = np.isfinite(p_value)
    adjusted = np.full_like(p_value, np.nan)
    if correction is None:
        adjusted[tested] = p_value[tested]
    elif correction in ("bh", "by"):
        if tested.any():
            adjusted[tested] = stats.false_discovery_control(p_value[tested], method=correction)
    else:
        raise SpikelatentError(f"unknown correction {correction!r}; use None, 'bh' or 'by'")
    return adjusted, tested & (np.nan_to_num(adjusted, nan=1.0) <= alpha)


def _test_dataset(
    cells: Cells,
    variables: dict[str, tuple[np.ndarray, dict]],
    p_value: np.ndarray,
    alpha: float,
    correction: str | None,
    per: str | None,
    attrs: dict,
) -> xr.Dataset:
    adjusted, significant = _significance(p_value, alpha, correction)
    data = {
        name: cells.wrap(values, name, var_attrs) for name, (values, var_attrs) in variables.items()
    }
    data["p_value"] = cells.wrap(
        p_value, "p_value", {"nan_reason": "untested: no spikes or < 2 trials"}
    )
    data["p_adjusted"] = cells.wrap(adjusted, "p_adjusted", {"correction": str(correction)})
    data["significant"] = cells.wrap(significant, "significant")
    tested = cells.wrap(np.isfinite(p_value), "tested")
    data["tested"] = tested
    if per is not None and per in tested.dims and len(tested.dims) > 1:
        others = [d for d in tested.dims if d != per]
        data["fraction_significant"] = data["significant"].sum(others) / tested.sum(others)
        data["n_tested"] = tested.sum(others)
    n_tested = int(np.isfinite(p_value).sum())
    data["overall_fraction_significant"] = xr.DataArray(
        float(significant.sum()) / n_tested if n_tested else np.nan
    )
    return xr.Dataset(
        data, attrs={**attrs, "alpha": alpha, "correction": str(correction), "n_tested": n_tested}
    )


def overdispersion_test(
    counts: xr.DataArray,
    over: str = "trial",
    alpha: float = 0.05,
    correction: str | None = "bh",
    per: str | None = "unit",
    group_by: str | None = "stimulus",
) -> xr.Dataset:
    """Dispersion test of each cell against Poisson sampling (one-sided: overdispersion).

    Statistic ``D = Σ(x − x̄)² / x̄ = (n−1)·s²/x̄``, which is χ²_{n−1} under the Poisson null; the p-value
    is ``P(χ²_{n−1} ≥ D)``.

    Args:
        correction: ``"bh"`` (Benjamini–Hochberg, default), ``"by"`` (Benjamini–Yekutieli) across all
            tested cells, via ``scipy.stats.false_discovery_control``; or ``None``.
        per: dim to report ``fraction_significant`` for (over all other dims), e.g. ``"unit"``.

    Returns:
        Dataset per cell with ``statistic``, ``dof``, ``p_value``, ``p_adjusted``, ``significant``,
        ``tested`` (cells with no spikes or < 2 trials are untested: NaN p-value, not significant),
        ``fraction_significant`` and ``n_tested`` per ``per``, and ``overall_fraction_significant``.
    """
    _check_probability(alpha, "alpha")
    counts = as_dataarray(counts, "counts")
    cells, m = _moments_of(counts, over, group_by)
    n, mean = m["n"], m["mean"]
    with np.errstate(invalid="ignore", divide="ignore"):
        testable = (mean > 0) & (n >= 2)
        statistic = np.where(testable, n * m["m2"] / mean, np.nan)
        dof = np.where(testable, n - 1, np.nan)
        p_value = stats.chi2.sf(statistic, dof)
    return _test_dataset(
        cells,
        {"statistic": (statistic, {"long_name": "sum (x - mean)^2 / mean"}), "dof": (dof, {})},
        p_value,
        alpha,
        correction,
        per,
        {"test": "Poisson dispersion test, one-sided", "over": over},
    )


# Search range for the NB dispersion r (in log space); beyond the upper end the NB is a Poisson.
_LOG_R_MIN, _LOG_R_MAX = np.log(1e-8), np.log(1e10)


# The NB fit works on chunks of this many cells, sorted by their largest count so that each chunk's
# survival table (cell, max count) stays narrow. A chunk uses the survival form when its table has
# at most SURVIVAL_TABLE_LIMIT entries and its max count is at most SURVIVAL_COST_RATIO x the number
# of trials (beyond that, digamma on the raw trials is cheaper); otherwise special functions.
LRT_CHUNK_CELLS = 8192
SURVIVAL_TABLE_LIMIT = 8_000_000
SURVIVAL_COST_RATIO = 16


class _NBSums:
    """The two sums over trials the profile NB likelihood needs, for one block of cells.

    ``Σ_i [ψ(x_i + r) − ψ(r)]`` and ``Σ_i [lnΓ(x_i + r) − lnΓ(r)]``. For integer counts they equal
    ``Σ_j K_j / (r + j)`` and ``Σ_j K_j log(r + j)`` with ``K_j = #{i : x_i > j}`` (the survival
    counts), which avoids special functions and is much faster when counts are small; large counts
    fall back to the special functions on the raw trials.
    """

    def __init__(self, samples: np.ndarray):
        # samples: (cell, trial), NaN-padded, integer-valued.
        max_count = int(np.nanmax(samples)) if samples.size else 0
        self.use_survival = (
            samples.shape[0] * max(max_count, 1) <= SURVIVAL_TABLE_LIMIT
            and max_count <= SURVIVAL_COST_RATIO * samples.shape[1]
        )
        if self.use_survival:
            n_cells = samples.shape[0]
            valid = np.isfinite(samples)
            cell_index = np.broadcast_to(np.arange(n_cells)[:, None], samples.shape)[valid]
            values = samples[valid].astype(np.int64)
            histogram = np.bincount(
                cell_index * (max_count + 1) + values, minlength=n_cells * (max_count + 1)
            ).reshape(n_cells, max_count + 1)
            # K_j = number of trials with count > j, for j = 0 .. max_count - 1.
            self.survival = (valid.sum(axis=1)[:, None] - np.cumsum(histogram, axis=1))[
                :, :max_count
            ]
            self.offsets = np.arange(max_count, dtype=np.float64)
        else:
            self.samples = samples

    def digamma_gap(self, r: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if self.use_survival:
            return (self.survival[rows] / (r[..., None] + self.offsets)).sum(axis=-1)
        x = self.samples[rows]
        return np.nansum(special.digamma(x + r[..., None]) - special.digamma(r)[..., None], axis=-1)

    def log_gamma_gap(self, r: np.ndarray) -> np.ndarray:
        if self.use_survival:
            return (self.survival * np.log(r[:, None] + self.offsets)).sum(axis=-1)
        return np.nansum(
            special.gammaln(self.samples + r[:, None]) - special.gammaln(r)[:, None], axis=-1
        )


def _fit_nb_dispersion(
    sums: _NBSums, n: np.ndarray, mean: np.ndarray, m2: np.ndarray
) -> np.ndarray:
    """Maximum-likelihood NB dispersion r per cell.

    With p profiled out (p̂ = r/(r + x̄)) the score in r is
    ``Σ ψ(x_i + r) − n ψ(r) + n log(r / (r + x̄))``; its root is found in log r by scipy's vectorized
    bracketing solver (``scipy.optimize.elementwise``), started at the method-of-moments estimate.
    Cells must be overdispersed (m2 > mean), where the root exists and is unique.
    """

    def profile_score(log_r: np.ndarray, row: np.ndarray) -> np.ndarray:
        r = np.exp(log_r)
        return sums.digamma_gap(r, row) - n[row] * np.log1p(mean[row] / r)

    rows = np.arange(len(n))
    log_r_moments = np.clip(np.log(mean**2 / (m2 - mean)), _LOG_R_MIN + 1, _LOG_R_MAX - 1)
    bracket = elementwise.bracket_root(
        profile_score,
        log_r_moments - 0.5,
        log_r_moments + 0.5,
        xmin=_LOG_R_MIN,
        xmax=_LOG_R_MAX,
        args=(rows,),
    )
    # 1e-7 in log r is far below the sampling error of r̂.
    root = elementwise.find_root(
        profile_score, bracket.bracket, args=(rows,), tolerances={"xatol": 1e-7, "xrtol": 1e-9}
    )
    log_r = np.where(
        bracket.success & root.success, root.x, np.inf
    )  # no root in range: Poisson limit
    return np.exp(log_r)


def _nb_likelihood_ratio(
    samples: np.ndarray, n: np.ndarray, mean: np.ndarray, m2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """LR statistic and fitted r for overdispersed cells ``samples`` (cell, trial), chunk by chunk."""
    lr = np.empty(len(n))
    r = np.empty(len(n))
    order = np.argsort(np.nanmax(samples, axis=1), kind="stable")  # narrow survival tables
    for start in range(0, len(order), LRT_CHUNK_CELLS):
        chunk = order[start : start + LRT_CHUNK_CELLS]
        sums = _NBSums(samples[chunk])
        n_c, mean_c = n[chunk], mean[chunk]
        r_c = _fit_nb_dispersion(sums, n_c, mean_c, m2[chunk])
        finite_r = np.isfinite(r_c)
        r_safe = np.where(finite_r, r_c, 1.0)
        log_likelihood_gain = (
            sums.log_gamma_gap(r_safe)
            - n_c * r_safe * np.log1p(mean_c / r_safe)
            - n_c * mean_c * np.log(r_safe + mean_c)
            + n_c * mean_c
        )
        lr[chunk] = np.where(finite_r, np.clip(2.0 * log_likelihood_gain, 0.0, None), 0.0)
        r[chunk] = r_c
    return lr, r


def nb_vs_poisson_lrt(
    counts: xr.DataArray,
    over: str = "trial",
    alpha: float = 0.05,
    correction: str | None = "bh",
    per: str | None = "unit",
    group_by: str | None = "stimulus",
) -> xr.Dataset:
    """Likelihood-ratio test of a negative binomial against a Poisson, per cell (trials of one stimulus).

    The NB is fitted by maximum likelihood with p profiled out (p̂ = r/(r + x̄)), r by a vectorized
    root search of the profile score in log r (all cells at once, in blocks). The Poisson MLE is
    λ̂ = x̄. ``LR = 2(ℓ_NB − ℓ_Poi) ≥ 0``. Poisson is the boundary r → ∞ of the NB, so under the null LR
    follows the mixture ½χ²₀ + ½χ²₁ (Self & Liang 1987): ``p = ½ P(χ²₁ ≥ LR)`` for LR > 0 and 1 at LR = 0.
    Cells whose biased sample variance does not exceed the mean have r̂ = ∞ (the NB MLE is the Poisson),
    LR = 0 and p = 1.

    Returns:
        Dataset per cell with ``statistic`` (LR), ``dispersion`` (r̂, inf at the Poisson boundary),
        ``prob`` (p̂ in the paper's convention; 1 at the boundary), ``p_value``, ``p_adjusted``,
        ``significant``, ``tested``, and ``fraction_significant``/``n_tested`` per ``per`` plus
        ``overall_fraction_significant`` (see :func:`overdispersion_test`).
    """
    _check_probability(alpha, "alpha")
    counts = as_dataarray(counts, "counts")
    cells = cells_over(counts, over, group_by)
    _require_integer_counts(counts)
    statistic = np.full(cells.n_cells, np.nan)
    dispersion = np.full(cells.n_cells, np.nan)
    cell_mean = np.full(cells.n_cells, np.nan)
    for cell_slice, block in cells.blocks():
        m = _moments(block)
        n, mean, m2 = m["n"], m["mean"], m["m2"]
        testable = (mean > 0) & (n >= 2)
        overdispersed = testable & (m2 > mean)
        block_statistic = np.where(testable, 0.0, np.nan)
        block_dispersion = np.where(testable, np.inf, np.nan)
        if overdispersed.any():
            samples = block[:, overdispersed].T  # (cell, trial)
            lr, r = _nb_likelihood_ratio(
                samples, n[overdispersed], mean[overdispersed], m2[overdispersed]
            )
            block_statistic[overdispersed] = lr
            block_dispersion[overdispersed] = r
        statistic[cell_slice] = block_statistic
        dispersion[cell_slice] = block_dispersion
        cell_mean[cell_slice] = mean
    with np.errstate(invalid="ignore", divide="ignore"):
        p_value = np.where(statistic > 0, 0.5 * stats.chi2.sf(statistic, 1), 1.0)
        p_value = np.where(np.isnan(statistic), np.nan, p_value)
        prob = np.where(np.isinf(dispersion), 1.0, dispersion / (dispersion + cell_mean))
        prob = np.where(np.isnan(dispersion), np.nan, prob)
    return _test_dataset(
        cells,
        {
            "statistic": (statistic, {"long_name": "2 (loglik NB - loglik Poisson)"}),
            "dispersion": (dispersion, {"long_name": "NB dispersion r (MLE); inf = Poisson"}),
            "prob": (
                prob,
                {"long_name": "NB success probability p = r/(r + mean) (paper convention)"},
            ),
        },
        p_value,
        alpha,
        correction,
        per,
        {"test": "NB vs Poisson likelihood ratio, boundary-corrected 0.5 chi2_1", "over": over},
    )

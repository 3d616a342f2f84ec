"""Gamma-free relaxed negative-binomial samplers: the NB counting process and Gumbel over the NB pmf.

Counting process. A pure-birth process that starts at 0 and jumps from k to k + 1 at rate β(r + k),
β = −log p, has N(1) ~ NB(r, p) (mean r(1 − p)/p). With E_j ~ Exponential(1) the arrival times are
T_k = Σ_{j<k} E_j / (β(r + j)), k = 1..M, the exact count is #{k : T_k < 1}, and the continuous-time
relaxation z̃ = Σ_k σ((1 − T_k)/τ) is pathwise differentiable in r and p: no Gamma draw at all
(``relaxed_negative_binomial_continuous_time``).

Gumbel over the pmf. logits_k = log NB(k; r, p) up to a constant, built by the recursion
log NB(k + 1) − log NB(k) = log((k + r)/(k + 1)) + log(1 − p) (a cumulative sum, no lgamma per element),
z̃ = Σ_k k · softmax((logits + g)/τ) over {0..Z_max} (``relaxed_negative_binomial_gumbel``).

Support. M (continuous time: P(N ≥ M) < tolerance) and Z_max + 1 (Gumbel: P(N > Z_max) < tolerance) are the
same number, ``nb_support_size``. Per element it is read from a table of exact NB quantiles on a geometric
grid of (r, β), each element rounded UP to the next grid point in both coordinates: the NB is stochastically
increasing in r (fixed p) and in β (fixed r), so the table value is conservative. As for the Poisson
samplers, elements are split into buckets of similar support (powers of two) and each bucket gets the
largest support of its members; elements beyond ``max_support`` are truncated at it with a RuntimeWarning.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from spikelatent.distributions._validation import (
    check_max_support,
    check_temperature,
    check_tolerance,
)
from spikelatent.distributions.relaxed import DEFAULT_CAP
from spikelatent.distributions.support import (
    SMALLEST_EXPONENT,
    apply_in_buckets,
    capped_support,
    cumulate_rows,
)
from spikelatent.errors import SpikelatentError
from spikelatent.options import NB_SAMPLERS

__all__ = [
    "NB_SAMPLERS",
    "nb_support_size",
    "negative_binomial_support",
    "relaxed_negative_binomial_continuous_time",
    "relaxed_negative_binomial_gumbel",
]


# The support table: log r and log β on grids of ratio 2^(1/4) (a value is rounded up by < 19 %).
_GRID_LOG_STEP = math.log(2.0) / 4.0
_LOG_R_MIN, _LOG_R_MAX = math.log(1e-3), math.log(1e6)
_LOG_BETA_MIN, _LOG_BETA_MAX = math.log(1e-9), math.log(20.0)
_N_R = int(math.ceil((_LOG_R_MAX - _LOG_R_MIN) / _GRID_LOG_STEP)) + 1
_N_BETA = int(math.ceil((_LOG_BETA_MAX - _LOG_BETA_MIN) / _GRID_LOG_STEP)) + 1
# Floors inside divisions and logs: r = 0 or β = 0 give zero counts and finite gradients (1e-12 squared
# is still a normal float32).
_MIN_PARAMETER = 1e-12


def _grid_values(log_min: float, count: int) -> np.ndarray:
    return np.exp(log_min + _GRID_LOG_STEP * np.arange(count, dtype=np.float64))


def _exact_support(r: np.ndarray, beta: np.ndarray, tolerance: float, ceiling: int) -> np.ndarray:
    """1 + min{k : P(N > k) < tolerance} for N ~ NB(r, e^−β), elementwise, capped at ceiling + 1.

    The pmf by the recursion in log space: log NB(0) = −rβ, log NB(k + 1) = log NB(k) + log((k + r)/(k + 1))
    + log(1 − e^−β); the CDF is accumulated in float64. numpy, not torch: a one-off computation that
    should not start OpenMP teams (on a loaded machine each small torch op then costs milliseconds).
    """
    r, beta = (np.asarray(x, dtype=np.float64) for x in np.broadcast_arrays(r, beta))
    shape = r.shape
    r, beta = r.ravel(), beta.ravel()
    log_q = np.log(-np.expm1(-beta))
    log_pmf = -r * beta
    # exp is floored at e^-700 (a normal float64; subnormal results are slow): at most 1e-304 per step.
    cdf = np.exp(np.maximum(log_pmf, -700.0))
    support = np.full(r.shape, ceiling + 1, dtype=np.int64)
    active = np.arange(r.size)  # elements still searching; compressed as they finish
    for k in range(1, ceiling + 2):
        done = (1.0 - cdf) < tolerance
        if done.any():
            support[active[done]] = k
            keep = ~done
            active, r, log_q, log_pmf, cdf = active[keep], r[keep], log_q[keep], log_pmf[keep], cdf[keep]
        if active.size == 0 or k > ceiling:
            break
        log_pmf = log_pmf + np.log((k - 1 + r) / k) + log_q
        cdf = cdf + np.exp(np.maximum(log_pmf, -700.0))
    return support.reshape(shape)


@functools.lru_cache(maxsize=16)
def _support_table(tolerance: float, ceiling: int) -> torch.Tensor:
    """int64 table (N_R + 1, N_BETA + 1) of the support at each grid point; the last row/column = overflow."""
    grid_r, grid_beta = np.meshgrid(_grid_values(_LOG_R_MIN, _N_R), _grid_values(_LOG_BETA_MIN, _N_BETA),
                                    indexing="ij")
    table = np.full((_N_R + 1, _N_BETA + 1), ceiling + 1, dtype=np.int64)
    table[:_N_R, :_N_BETA] = _exact_support(grid_r, grid_beta, tolerance, ceiling)
    return torch.from_numpy(table)


def nb_support_size(total_count: float, probs: float, tolerance: float = 1e-4) -> int:
    """Exact M = 1 + min{k : P(N > k) < tolerance} for N ~ NB(total_count, probs) (no grid rounding)."""
    tolerance = check_tolerance("nb_support_size", tolerance)
    beta = -math.log(float(probs))
    return int(_exact_support(np.array([float(total_count)]), np.array([beta]), tolerance, 1 << 20)[0])


def _grid_index(values: torch.Tensor, log_min: float, count: int) -> torch.Tensor:
    """Index of the grid point at or above each value (values below the grid → 0, above → ``count``)."""
    scaled = values.log().sub_(log_min).div_(_GRID_LOG_STEP).sub_(1e-6).ceil_()
    return scaled.clamp_(0, count).to(torch.int64)


def negative_binomial_support(
    total_count: torch.Tensor, beta: torch.Tensor, tolerance: float, ceiling: int
) -> torch.Tensor:
    """Conservative per-element support M (int64, shape of the inputs): P(N ≥ M) < tolerance, N ~ NB(r, e^−β).

    Read from the exact table at the grid point above (r, β); ``ceiling + 1`` flags "more than ceiling".
    """
    table = _support_table(float(tolerance), int(ceiling))
    detached_r, detached_beta = total_count.detach().float(), beta.detach().float()
    index = _grid_index(detached_r, _LOG_R_MIN, _N_R).mul_(_N_BETA + 1)
    index += _grid_index(detached_beta, _LOG_BETA_MIN, _N_BETA)
    return table.view(-1).to(total_count.device)[index.view(-1)].view(total_count.shape)


def _prepare(owner: str, total_count: torch.Tensor, beta: torch.Tensor, temperature: float,
             tolerance: float, max_support: int | None) -> tuple[float, float, int]:
    temperature = check_temperature(owner, temperature)
    tolerance = check_tolerance(owner, tolerance)
    cap = check_max_support(owner, DEFAULT_CAP if max_support is None else max_support, minimum=1)
    for name, tensor in (("total_count (dispersion r)", total_count), ("beta = -log p", beta)):
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise SpikelatentError(f"{owner}: {name} must be a floating-point torch.Tensor")
    return temperature, tolerance, cap


def relaxed_negative_binomial_continuous_time(
    total_count: torch.Tensor,
    beta: torch.Tensor,
    temperature: float,
    tolerance: float = 1e-4,
    max_support: int | None = DEFAULT_CAP,
    return_times: bool = False,
    adaptive_support: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Continuous-time relaxed NB(r, p) sample through the NB counting process, shape of the inputs.

    T_k = Σ_{j<k} E_j / (β(r + j)) with E_j ~ Exponential(1), k = 1..M; z̃ = Σ_k σ((1 − T_k)/τ).
    Memory O(M · numel), no Gamma draw.

    Args:
        total_count: dispersion r > 0, e.g. ``(batch, unit)``; gradients flow to it.
        beta: β = −log p > 0 (p the success probability), broadcastable to r; gradients flow to it.
        temperature: τ > 0; τ → 0 gives exact NB counts.
        tolerance: P(N ≥ M) allowed for each element (the support of its bucket covers it).
        max_support: cap on M (None → DEFAULT_CAP); counts of elements that need more are truncated at
            it, with a RuntimeWarning.
        return_times: also return the arrival times T, shape ``(M, *shape)``, sorted along dim 0; those
            below 1 are the spike times in the window [0, 1). Uses one M for every element.
        adaptive_support: bucket the elements by support (default); False uses the largest M for all.
    """
    owner = "relaxed_negative_binomial_continuous_time"
    temperature, tolerance, cap = _prepare(owner, total_count, beta, temperature, tolerance, max_support)
    total_count, beta = torch.broadcast_tensors(total_count, beta)
    shape = total_count.shape
    if total_count.numel() == 0:
        empty = total_count * 0.0
        return (empty, total_count.new_zeros((0, *shape))) if return_times else empty
    r = total_count.clamp_min(_MIN_PARAMETER).reshape(-1)
    b = beta.clamp_min(_MIN_PARAMETER).reshape(-1)
    support, largest = capped_support(owner, negative_binomial_support(r, b, tolerance, cap), cap)
    if return_times:
        arrivals = torch.arange(largest, dtype=r.dtype, device=r.device).unsqueeze(1)
        exponentials = _unit_exponentials(largest, r.numel(), r)
        times = (exponentials / (arrivals + r)).cumsum(dim=0) / b
        soft = torch.sigmoid(((1.0 - times) / temperature).clamp_min(SMALLEST_EXPONENT)).sum(dim=0)
        return soft.view(shape), times.view(largest, *shape)

    def compute(size: int, bucket_r: torch.Tensor, bucket_beta: torch.Tensor) -> torch.Tensor:
        return _CountingSoftCount.apply(bucket_r, bucket_beta, size, temperature)

    # Within a call, elements also leave the simulation once their arrivals are past the window (see
    # _CountingSoftCount): at low τ the work follows the realized counts; the buckets bound it at high τ.
    if adaptive_support and temperature > _BUCKET_ABOVE_TEMPERATURE:
        return apply_in_buckets(support.view(-1), (r, b), compute, largest).view(shape)
    return compute(largest, r, b).view(shape)


def _unit_exponentials(rows: int, columns: int, like: torch.Tensor) -> torch.Tensor:
    """(rows, columns) Exponential(1) draws as −log U, U floored at the smallest normal number."""
    draws = torch.rand((rows, columns), dtype=like.dtype, device=like.device)
    return draws.clamp_min_(torch.finfo(draws.dtype).tiny).log_().neg_()


# Arrivals later than 1 + _WINDOW_MARGIN · τ add < σ(−20) ≈ 2e-9 each to z̃ (and as little to its
# gradient): an element whose last arrival is past that is finished and leaves the active set.
_WINDOW_MARGIN = 20.0
# At or below this temperature the early exit of finished elements does what the support buckets would
# (and their gathers cost more than they save); above it most elements run to their support.
_BUCKET_ABOVE_TEMPERATURE = 0.1
# Arrivals are simulated this many at a time for the elements still active.
_BLOCK_ARRIVALS = 4


class _CountingSoftCount(torch.autograd.Function):
    """z̃ = Σ_k σ((1 − A_k/β)/τ), A_k = Σ_{j<k} E_j/(r + j), fused by hand (flat r, β of one length).

    With s_k = σ_k(1 − σ_k): dz̃/dβ = Σ_k s_k A_k / (τβ²) and dz̃/dr = Σ_k s_k B_k / (τβ), where
    B_k = Σ_{j<k} E_j/(r + j)² (= −dA_k/dr). Both sums are reduced in the forward and the backward is
    elementwise.

    Arrivals are simulated in blocks of ``_BLOCK_ARRIVALS`` for the elements still active; an element
    leaves once its latest arrival is past 1 + 20τ (the later ones are later still and add < 2e-9 each),
    or after ``n_arrivals`` (its support, P(N ≥ M) < tolerance). So the work follows the realized counts
    (about N(1 + 20τ) + a block per element) rather than the support of the upper tail, and no (M, n)
    buffer is ever made.
    """

    @staticmethod
    def forward(ctx, r: torch.Tensor, beta: torch.Tensor, n_arrivals: int, temperature: float):
        need_r, need_beta = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n = r.numel()
        soft_count = torch.zeros_like(r)
        slope_beta = torch.zeros_like(r) if need_beta else None
        slope_r = torch.zeros_like(r) if need_r else None
        outputs = [x for x in (soft_count, slope_beta, slope_r) if x is not None]
        index = torch.arange(n, device=r.device)
        active_r = r
        negative_slope = (beta * temperature).reciprocal_().neg_()  # −1/(βτ)
        finish_line = beta * (1.0 + _WINDOW_MARGIN * temperature)  # A beyond this: past 1 + 20τ
        previous_a = torch.zeros_like(r)
        previous_b = torch.zeros_like(r) if need_r else None
        sums = [torch.zeros_like(r) for _ in outputs]
        offset = torch.full((), 1.0 / temperature, dtype=r.dtype, device=r.device)
        first = 0
        while first < n_arrivals:
            rows = min(_BLOCK_ARRIVALS, n_arrivals - first)
            arrivals = torch.arange(first, first + rows, dtype=r.dtype, device=r.device).unsqueeze(1)
            inverse_rate = (arrivals + active_r).reciprocal_()  # 1/(r + j), (rows, active)
            cumulative = _unit_exponentials(rows, active_r.numel(), r).mul_(inverse_rate)
            second = inverse_rate.mul_(cumulative) if need_r else None  # E_j/(r + j)²
            cumulative[0].add_(previous_a)
            for row in range(1, rows):
                cumulative[row].add_(cumulative[row - 1])
            sigma = torch.addcmul(offset, cumulative, negative_slope).clamp_min_(SMALLEST_EXPONENT).sigmoid_()
            sums[0].add_(sigma.sum(dim=0))
            if need_r or need_beta:
                spread = sigma.addcmul_(sigma, sigma, value=-1.0)  # σ(1 − σ)
                position = 1
                if need_beta:
                    sums[position].add_((spread * cumulative).sum(dim=0))
                    position += 1
                if need_r:
                    second[0].add_(previous_b)
                    for row in range(1, rows):
                        second[row].add_(second[row - 1])
                    sums[position].add_(spread.mul_(second).sum(dim=0))
                    previous_b = second[-1]
            previous_a = cumulative[-1]
            first += rows
            if first >= n_arrivals:
                break
            done = previous_a > finish_line
            finished = int(done.sum())
            # Compact only when it pays: each compaction gathers every per-element state vector.
            if finished * 8 < index.numel():
                continue
            done_at = done.nonzero().squeeze(1)
            done_index = index.index_select(0, done_at)
            for output, total in zip(outputs, sums, strict=True):
                output.index_copy_(0, done_index, total.index_select(0, done_at))
            if finished == index.numel():
                sums = []
                break
            kept = (~done).nonzero().squeeze(1)
            index, active_r, finish_line, negative_slope, previous_a = (
                x.index_select(0, kept) for x in (index, active_r, finish_line, negative_slope, previous_a))
            previous_b = previous_b.index_select(0, kept) if need_r else None
            sums = [total.index_select(0, kept) for total in sums]
        if sums:
            for output, total in zip(outputs, sums, strict=True):
                output.index_copy_(0, index, total)
        ctx.save_for_backward(beta, slope_beta, slope_r)
        ctx.temperature = temperature
        return soft_count

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        beta, slope_beta, slope_r = ctx.saved_tensors
        scale = grad_output / (ctx.temperature * beta)
        grad_r = scale * slope_r if slope_r is not None else None
        grad_beta = scale * slope_beta / beta if slope_beta is not None else None
        return grad_r, grad_beta, None, None


def relaxed_negative_binomial_gumbel(
    total_count: torch.Tensor,
    log_failure: torch.Tensor,
    temperature: float,
    tolerance: float = 1e-4,
    max_support: int | None = DEFAULT_CAP,
    adaptive_support: bool = True,
    beta: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gumbel-softmax relaxed NB(r, p) sample directly over the NB pmf on {0..Z_max}, shape of the inputs.

    logits_k = Σ_{j<k} log((j + r)/(j + 1)) + k log(1 − p) (log NB(k) up to a constant);
    z̃ = Σ_k k · softmax((logits + g)/τ), g ~ Gumbel(0, 1). Memory O(Z_max · numel), no Gamma draw.

    Args:
        total_count: dispersion r > 0, e.g. ``(batch, unit)``; gradients flow to it.
        log_failure: log(1 − p) < 0, broadcastable to r; gradients flow to it.
        temperature: τ > 0; τ → 0 gives exact NB counts.
        tolerance: P(N > Z_max) allowed for each element (the support of its bucket covers it).
        max_support: cap on Z_max + 1 (None → DEFAULT_CAP); larger needs are truncated with a RuntimeWarning.
        adaptive_support: bucket the elements by support (default); False uses the largest Z_max for all.
        beta: −log p if already at hand (only used to choose the support); computed from log_failure if None.
    """
    owner = "relaxed_negative_binomial_gumbel"
    temperature, tolerance, cap = _prepare(owner, total_count, log_failure, temperature, tolerance,
                                           max_support)
    total_count, log_failure = torch.broadcast_tensors(total_count, log_failure)
    shape = total_count.shape
    if total_count.numel() == 0:
        return total_count * 0.0
    r = total_count.clamp_min(_MIN_PARAMETER).reshape(-1)
    log_q = log_failure.reshape(-1)
    if beta is None:
        beta = -torch.log1p(-torch.exp(log_failure.detach()))
    b = beta.detach().expand(shape).reshape(-1).clamp_min(_MIN_PARAMETER)
    support, largest = capped_support(owner, negative_binomial_support(r, b, tolerance, cap), cap)

    def compute(size: int, bucket_r: torch.Tensor, bucket_log_q: torch.Tensor) -> torch.Tensor:
        return _PmfGumbelSoftCount.apply(bucket_r, bucket_log_q, size, temperature)

    if adaptive_support:
        return apply_in_buckets(support.view(-1), (r, log_q), compute, largest).view(shape)
    return compute(largest, r, log_q).view(shape)


@functools.lru_cache(maxsize=64)
def _point_table(size: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(k for k = 0..size−1, log k for k = 1..size−1), built once per size/dtype/device."""
    counts = torch.arange(size, dtype=dtype, device=device)
    return counts, counts[1:].log()


class _PmfGumbelSoftCount(torch.autograd.Function):
    """z̃ = Σ_k k w_k, w = softmax((ℓ_k + g_k)/τ), ℓ_k = Σ_{j<k} log((j + r)/(j + 1)) + k log(1 − p).

    Fused by hand: dz̃/dlog(1 − p) = Var_w(k)/τ and dz̃/dr = Cov_w(k, H_k)/τ with H_k = Σ_{j<k} 1/(j + r)
    (= dℓ_k/dr); both are reduced in the forward. Support along dim 0, (Z_max + 1, n), as in relaxed.py.
    """

    @staticmethod
    def forward(ctx, r: torch.Tensor, log_q: torch.Tensor, n_points: int, temperature: float):
        counts, log_counts = _point_table(n_points, r.dtype, r.device)
        n = r.numel()
        logits = torch.rand((n_points, n), dtype=r.dtype, device=r.device)
        logits.clamp_min_(torch.finfo(r.dtype).tiny).log_().neg_().log_().neg_()  # Gumbel noise
        need_r = ctx.needs_input_grad[0]
        harmonic = None
        if n_points > 1:
            shifted = counts[:-1].unsqueeze(1) + r  # j + r for j = 0..Z_max − 1
            if need_r:
                harmonic = torch.zeros((n_points, n), dtype=r.dtype, device=r.device)
                torch.reciprocal(shifted, out=harmonic[1:])
                cumulate_rows(harmonic)  # H_k
            increments = shifted.log_().add_(log_q.unsqueeze(0) - log_counts.unsqueeze(1))
            log_pmf = cumulate_rows(increments)  # ℓ_k for k = 1..Z_max
            logits[1:].add_(log_pmf)
            del increments, log_pmf, shifted
        logits.div_(temperature)
        weights = logits.sub_(logits.amax(dim=0)).clamp_min_(SMALLEST_EXPONENT).exp_()
        total, first = (torch.stack([torch.ones_like(counts), counts]) @ weights).unbind(0)
        soft_count = first.div_(total)
        centred = counts.unsqueeze(1) - soft_count  # k − z̃, (K, n)
        centred_weights = centred.mul_(weights).div_(total)  # w_k (k − z̃) normalised
        variance = (centred_weights * counts.unsqueeze(1)).sum(dim=0)  # Σ w (k − z̃) k = Var_w(k)
        covariance = (centred_weights.mul_(harmonic).sum(dim=0) if harmonic is not None else None)
        ctx.save_for_backward(variance, covariance)
        ctx.temperature = temperature
        ctx.need_r = harmonic is not None
        return soft_count

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        variance, covariance = ctx.saved_tensors
        scale = grad_output / ctx.temperature
        grad_r = scale * covariance if ctx.need_r else None
        return grad_r, scale * variance, None, None

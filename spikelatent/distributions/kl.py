"""KL divergences between our count distributions, registered with ``torch.distributions.kl``.

* ``kl_divergence(NegativeBinomial(r, q), NegativeBinomial(r, p))``: dispersion-sharing closed form
  r · [log(q/p) + (1 − q)/q · log((1 − q)/(1 − p))], elementwise over the batch shape.
* ``kl_divergence(Poisson(a), Poisson(b))`` = a log(a/b) − a + b.
* ``kl_series(q, p, tolerance=...)``: exact (to the tolerance) KL between any two NegativeBinomials,
  the truncated series Σ_z q(z) log(q(z)/p(z)) with both pmfs by the recursion
  log NB(z + 1) − log NB(z) = log((z + r)/(z + 1)) + log(1 − p); deterministic, differentiable in all four
  parameters.
* ``kl_monte_carlo(q, p, ...)`` for anything else.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution
from torch.distributions.kl import register_kl

from spikelatent.distributions._validation import check_max_support, check_tolerance
from spikelatent.distributions.counting import negative_binomial_support
from spikelatent.distributions.negative_binomial import NegativeBinomial, accurate_dtype
from spikelatent.distributions.poisson import Poisson
from spikelatent.distributions.support import apply_in_buckets, capped_support, cumulate_rows
from spikelatent.errors import SpikelatentError

__all__ = [
    "kl_from_samples",
    "kl_monte_carlo",
    "kl_negative_binomial_shared_dispersion",
    "kl_poisson",
    "kl_series",
    "log_density_ratio",
]

#: Default truncation of ``kl_series``: the posterior mass left out of the sum.
SERIES_TOLERANCE = 1e-6
#: Default cap on the number of series terms per element.
SERIES_MAX_TERMS = 1024


def _same_dispersion(q: NegativeBinomial, p: NegativeBinomial) -> bool:
    if q.total_count is p.total_count:  # identity shortcut: no device sync
        return True
    try:
        left, right = torch.broadcast_tensors(q.total_count, p.total_count)
    except RuntimeError:
        return False
    return bool(torch.equal(left, right))


@register_kl(NegativeBinomial, NegativeBinomial)
def kl_negative_binomial_shared_dispersion(
    q: NegativeBinomial, p: NegativeBinomial
) -> torch.Tensor:
    """KL(NB(r, q) || NB(r, p)) = r · [log(q/p) + (1 − q)/q · log((1 − q)/(1 − p))], batch shape.

    Differentiable in r, p and q. Raises SpikelatentError when the dispersions differ: use
    ``kl_monte_carlo`` then.
    """
    if not _same_dispersion(q, p):
        raise SpikelatentError(
            "kl_divergence(NegativeBinomial, NegativeBinomial) has a closed form only when both share the "
            "dispersion total_count; use kl_monte_carlo(q, p, n_samples=..., relaxation=...) instead"
        )
    # The two bracketed terms cancel to O(ε²) near the prior (q = p(1 + ε)); in float32 that would leave a
    # relative error ~1e-7/ε², so evaluate in float64 and cast back (cheap: one value per unit).
    result_dtype = torch.promote_types(q._param.dtype, p._param.dtype)
    work_dtype = accurate_dtype(result_dtype, q._param.device)
    log_q, log_1m_q = q._log_p_and_log_1m_p(work_dtype)
    log_p, log_1m_p = p._log_p_and_log_1m_p(work_dtype)
    failure_odds_q = q._odds_failure(work_dtype)  # (1 − q) / q
    kl = q.total_count.to(work_dtype) * ((log_q - log_p) + failure_odds_q * (log_1m_q - log_1m_p))
    return kl.to(result_dtype)


@register_kl(Poisson, Poisson)
def kl_poisson(q: Poisson, p: Poisson) -> torch.Tensor:
    """KL(Poi(a) || Poi(b)) = a log(a/b) − a + b, batch shape (0 · log 0 = 0)."""
    a, b = q.rate, p.rate
    return torch.xlogy(a, a) - torch.xlogy(a, b) - a + b


def kl_monte_carlo(
    q: Distribution,
    p: Distribution,
    n_samples: int = 5,
    relaxation: str | None = "ct",
    temperature: float = 1.0,
    tolerance: float = 1e-4,
    max_support: int | None = None,
) -> torch.Tensor:
    """Monte Carlo KL(q || p) ≈ (1/S) Σ_s [log q(z_s) − log p(z_s)], shape = q's batch shape.

    z_s = q.rsample(relaxation=..., temperature=...) (relaxed counts, gradients through the sample), or
    exact hard counts from q.sample when ``relaxation=None`` (unbiased, no gradient through the sample).
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise SpikelatentError(
            f"kl_monte_carlo: n_samples must be an integer >= 1; got {n_samples!r}"
        )
    if relaxation is None:
        samples = q.sample((n_samples,))
    else:
        samples = q.rsample(
            (n_samples,),
            relaxation=relaxation,
            temperature=temperature,
            tolerance=tolerance,
            max_support=max_support,
        )
    return kl_from_samples(q, p, samples)


def kl_from_samples(q: Distribution, p: Distribution, samples: torch.Tensor) -> torch.Tensor:
    """(1/S) Σ_s [log q(z_s) − log p(z_s)] over the leading dim of ``samples`` (S, *batch_shape)."""
    return log_density_ratio(q, p, samples).mean(dim=0)


def log_density_ratio(q: Distribution, p: Distribution, value: torch.Tensor) -> torch.Tensor:
    """log q(value) − log p(value), shape of ``value`` broadcast with the batch shapes.

    For two NegativeBinomials the lgamma(z + 1) terms cancel exactly and the terms free of z are
    computed once per batch element (in float64) instead of once per sample, leaving 2 lgamma
    evaluations per sampled count instead of 6. Those run in the samples' dtype: in float32 the error
    is below ~3e-4 nats per count for counts up to 500, far under the Monte Carlo noise of the
    estimate (float64 lgamma costs ~4x more on the CPU); pass float64 samples for float64 accuracy.
    """
    if not (isinstance(q, NegativeBinomial) and isinstance(p, NegativeBinomial)):
        return q.log_prob(value) - p.log_prob(value)
    result_dtype = torch.promote_types(value.dtype, torch.promote_types(q._param.dtype, p._param.dtype))
    accurate = accurate_dtype(result_dtype, value.device)
    log_q, log_1m_q = q._log_p_and_log_1m_p(accurate)
    log_p, log_1m_p = p._log_p_and_log_1m_p(accurate)
    r_q, r_p = q.total_count.to(accurate), p.total_count.to(accurate)
    free_of_count = (r_q * log_q - torch.lgamma(r_q)) - (r_p * log_p - torch.lgamma(r_p))
    z = value.to(result_dtype)
    slope = (log_1m_q - log_1m_p).to(result_dtype)
    per_count = torch.lgamma(z + r_q.to(result_dtype)) - torch.lgamma(z + r_p.to(result_dtype))
    return per_count.addcmul_(z, slope).add_(free_of_count.to(result_dtype))


def kl_series(
    q: NegativeBinomial,
    p: NegativeBinomial,
    tolerance: float = SERIES_TOLERANCE,
    max_terms: int = SERIES_MAX_TERMS,
    accurate: bool = True,
) -> torch.Tensor:
    """KL(NB(r_q, q) || NB(r_p, p)) for any dispersions, by the truncated series; shape = broadcast batch shape.

    KL = Σ_{z<K} q(z) [log q(z) − log p(z)], with log q(z) − log p(z) = (r_q log q − r_p log p)
    + z (log(1 − q) − log(1 − p)) + Σ_{j<z} log((j + r_q)/(j + r_p)) and q(z) by the pmf recursion (no
    lgamma per term). K per element is the smallest size with posterior tail P(N ≥ K) < ``tolerance``
    (conservative table, see ``counting.negative_binomial_support``); elements are bucketed by K. With
    ``accurate=True`` (default) the sum runs in float64 (it cancels to O(ε²) near the prior) and is cast
    back; ``accurate=False`` keeps the inputs' dtype (float32 in training: about 3x cheaper, absolute
    error ~1e-6 nats per element, see docs/distributions.md). Deterministic (no Monte Carlo
    noise); the gradient is the exact gradient of the truncated sum, in all four parameters, computed in
    the forward (fused).

    Args:
        q: the posterior, batch shape e.g. ``(batch, unit)``.
        p: the prior, broadcastable to q's batch shape (e.g. ``(unit,)``).
        tolerance: posterior mass left out of the sum, in (0, 1) (default 1e-6).
        max_terms: cap on K; elements that need more are truncated there with a RuntimeWarning.
        accurate: sum in float64 (True) or in the inputs' dtype (False).
    """
    owner = "kl_series"
    if not (isinstance(q, NegativeBinomial) and isinstance(p, NegativeBinomial)):
        raise SpikelatentError(f"{owner}: q and p must both be NegativeBinomial distributions")
    tolerance = check_tolerance(owner, tolerance)
    cap = check_max_support(owner, max_terms, minimum=1)
    result_dtype = torch.promote_types(q._param.dtype, p._param.dtype)
    work = accurate_dtype(result_dtype, q._param.device) if accurate else result_dtype
    log_q, log_1m_q = q._log_p_and_log_1m_p(work)
    log_p, log_1m_p = p._log_p_and_log_1m_p(work)
    parameters = torch.broadcast_tensors(
        q.total_count.to(work), log_q, log_1m_q, p.total_count.to(work), log_p, log_1m_p
    )
    shape = parameters[0].shape
    if parameters[0].numel() == 0:
        return parameters[0].to(result_dtype) * 0.0
    flat = tuple(x.reshape(-1) for x in parameters)
    beta_q = (-flat[1]).detach().clamp_min(1e-12)
    support, largest = capped_support(
        owner, negative_binomial_support(flat[0].clamp_min(1e-12), beta_q, tolerance, cap), cap, stacklevel=3
    )

    def compute(size: int, *bucket: torch.Tensor) -> torch.Tensor:
        return _SeriesKL.apply(size, *bucket)

    kl = apply_in_buckets(support.view(-1), flat, compute, largest)
    return kl.view(shape).to(result_dtype)


class _SeriesKL(torch.autograd.Function):
    """Σ_{z<K} w_z d_z over flat parameters (r_q, log q, log(1 − q), r_p, log p, log(1 − p)), fused.

    With w = q(z), d = log q(z) − log p(z), H_z(r) = Σ_{j<z} 1/(j + r):
    ∂/∂r_q = Σ w (log q + H_z(r_q))(d + 1), ∂/∂log q = r_q Σ w (d + 1), ∂/∂log(1 − q) = Σ w z (d + 1),
    ∂/∂r_p = −Σ w (log p + H_z(r_p)), ∂/∂log p = −r_p Σ w, ∂/∂log(1 − p) = −Σ w z.
    The terms run along dim 0, (K, n), so every pass is vectorized over the elements; the sums over z
    are reduced in the forward and the backward is elementwise.
    """

    @staticmethod
    def forward(ctx, n_terms, r_q, log_q, log_1m_q, r_p, log_p, log_1m_p):
        n = r_q.numel()
        need = ctx.needs_input_grad
        z = torch.arange(n_terms, dtype=r_q.dtype, device=r_q.device)
        log_pmf_q = torch.empty((n_terms, n), dtype=r_q.dtype, device=r_q.device)  # log q(z)
        ratio = torch.empty_like(log_pmf_q)  # d_z
        log_pmf_q[0] = r_q * log_q
        ratio[0] = log_pmf_q[0] - r_p * log_p
        harmonic_q = harmonic_p = None
        if n_terms > 1:
            j = z[:-1].unsqueeze(1)
            shifted_q, shifted_p = j + r_q, j + r_p  # j + r, j = 0..K − 2
            if need[1]:
                harmonic_q = torch.zeros_like(log_pmf_q)
                torch.reciprocal(shifted_q, out=harmonic_q[1:])
                cumulate_rows(harmonic_q)
            if need[4]:
                harmonic_p = torch.zeros_like(log_pmf_q)
                torch.reciprocal(shifted_p, out=harmonic_p[1:])
                cumulate_rows(harmonic_p)
            log_shifted_q = shifted_q.log_()
            torch.sub(log_shifted_q, shifted_p.log_(), out=ratio[1:])
            ratio[1:].add_(log_1m_q - log_1m_p)
            cumulate_rows(ratio)
            log_pmf_q[1:] = log_shifted_q.add_(log_1m_q).sub_(z[1:].log().unsqueeze(1))
            cumulate_rows(log_pmf_q)
            del shifted_q, shifted_p, log_shifted_q
        weights = log_pmf_q.exp_()
        kl = (weights * ratio).sum(dim=0)
        grads = [None] * 6
        if any(need[1:]):
            total, mass_z = (torch.stack([torch.ones_like(z), z]) @ weights).unbind(0)
            weighted_d1 = ratio.add_(1.0).mul_(weights)  # w (d + 1)
            mass_d1 = kl + total  # Σ w (d + 1)
            if need[1]:
                grads[0] = log_q * mass_d1
                if harmonic_q is not None:
                    grads[0] = grads[0] + (weighted_d1 * harmonic_q).sum(dim=0)
            if need[2]:
                grads[1] = r_q * mass_d1
            if need[3]:
                grads[2] = z @ weighted_d1
            if need[4]:
                grads[3] = -(log_p * total)
                if harmonic_p is not None:
                    grads[3] = grads[3] - (weights * harmonic_p).sum(dim=0)
            if need[5]:
                grads[4] = -r_p * total
            if need[6]:
                grads[5] = -mass_z
        ctx.save_for_backward(*grads)
        return kl

    @staticmethod
    def backward(ctx, grad_output):
        return (None, *(None if g is None else grad_output * g for g in ctx.saved_tensors))

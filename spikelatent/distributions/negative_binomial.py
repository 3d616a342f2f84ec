"""Negative binomial distribution in the paper's convention (p = success probability).

NB(z; r, p) = Γ(z + r) / (Γ(r) z!) · (1 − p)^z · p^r, z = 0, 1, 2, …

WARNING: ``torch.distributions.NegativeBinomial(total_count=r, probs=1 - p)`` is the same distribution:
torch's ``probs`` is the *other* probability. Never pass our ``probs`` to torch's class or vice versa.
"""

from __future__ import annotations

from numbers import Number

import torch
import torch.nn.functional as F
from torch.distributions import Gamma, constraints
from torch.distributions.distribution import Distribution
from torch.distributions.utils import broadcast_all, lazy_property

from spikelatent.distributions._validation import (
    check_choice,
    check_finite,
    check_nonnegative,
    check_open_unit,
    check_positive,
    open_unit_interval,
)
from spikelatent.distributions.counting import (
    NB_SAMPLERS,
    relaxed_negative_binomial_continuous_time,
    relaxed_negative_binomial_gumbel,
)
from spikelatent.distributions.gamma import standard_gamma
from spikelatent.distributions.relaxed import (
    DEFAULT_CAP,
    relaxed_poisson,
    relaxed_poisson_continuous_time,
)
from spikelatent.errors import SpikelatentError
from spikelatent.options import RELAXATIONS

__all__ = ["NegativeBinomial"]

_OWNER = "NegativeBinomial"


def _resolve_validate_args(validate_args: bool | None) -> bool:
    # Same rule as torch.distributions: an explicit flag wins, else the class-wide default
    # (switched by Distribution.set_default_validate_args).
    return Distribution._validate_args if validate_args is None else bool(validate_args)


def validate_count_value(owner: str, value: torch.Tensor, batch_shape: torch.Size) -> None:
    """log_prob accepts relaxed (non-integer) counts: only check value >= 0, finite and broadcastable."""
    if not isinstance(value, torch.Tensor):
        raise SpikelatentError(
            f"{owner}.log_prob: value must be a torch.Tensor; got {type(value).__name__}"
        )
    try:
        torch.broadcast_shapes(value.shape, batch_shape)
    except RuntimeError:
        raise SpikelatentError(
            f"{owner}.log_prob: value of shape {tuple(value.shape)} does not broadcast with batch shape "
            f"{tuple(batch_shape)}"
        ) from None
    check_nonnegative(f"{owner}.log_prob", "value (count)", value)


def accurate_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """float64 for the cancellation-prone log-pmf sums, except where the device has no float64 (MPS)."""
    if device.type == "mps" or dtype == torch.float64:
        return dtype
    return torch.float64


class NegativeBinomial(Distribution):
    """Negative binomial NB(r, p) with dispersion r = ``total_count`` and success probability p = ``probs``.

    mean r(1 − p)/p, variance r(1 − p)/p², Fano factor 1/p. Exactly one of ``probs`` and ``logits``
    (logit p) must be given; prefer ``logits`` when p may come close to 0 or 1 — all log-terms then use
    log-sigmoid forms. ``batch_shape`` is the broadcast of r and p, e.g. ``(batch, unit)``.

    ``log_prob`` is defined for any real value ≥ 0 through lgamma (relaxed samples); ``sample`` gives exact
    integer counts (Gamma then Poisson); ``rsample`` gives relaxed counts with gradients to r and p.
    """

    arg_constraints = {
        "total_count": constraints.positive,
        "probs": open_unit_interval,
        "logits": constraints.real,
    }
    support = constraints.nonnegative_integer
    has_rsample = True

    def __init__(
        self,
        total_count: torch.Tensor | Number,
        probs: torch.Tensor | Number | None = None,
        logits: torch.Tensor | Number | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if (probs is None) == (logits is None):
            raise SpikelatentError(
                f"{_OWNER}: pass exactly one of probs= (p in (0, 1)) or logits= (logit p)"
            )
        if probs is not None:
            self.total_count, self.probs = broadcast_all(total_count, probs)
            self.total_count = self.total_count.type_as(self.probs)
        else:
            self.total_count, self.logits = broadcast_all(total_count, logits)
            self.total_count = self.total_count.type_as(self.logits)
        self._given_logits = logits is not None  # decides which (more accurate) log forms to use
        self._param = self.logits if self._given_logits else self.probs
        validate = _resolve_validate_args(validate_args)
        if validate:
            check_positive(_OWNER, "total_count (dispersion r)", self.total_count)
            if probs is not None:
                check_open_unit(_OWNER, "probs (success probability p)", self.probs)
            else:
                check_finite(_OWNER, "logits (logit of the success probability p)", self.logits)
        # Our own checks replace torch's generic ones (one-line messages); keep the flag for log_prob.
        super().__init__(self._param.size(), validate_args=False)
        self._validate_args = validate

    def expand(self, batch_shape, _instance=None) -> NegativeBinomial:
        new = self._get_checked_instance(NegativeBinomial, _instance)
        batch_shape = torch.Size(batch_shape)
        new.total_count = self.total_count.expand(batch_shape)
        if "probs" in self.__dict__:
            new.probs = self.probs.expand(batch_shape)
        if "logits" in self.__dict__:
            new.logits = self.logits.expand(batch_shape)
        new._given_logits = self._given_logits
        new._param = new.logits if new._given_logits else new.probs
        super(NegativeBinomial, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _new(self, *args, **kwargs):
        return self._param.new(*args, **kwargs)

    # ----- parameters -------------------------------------------------------------------------------
    @lazy_property
    def logits(self) -> torch.Tensor:
        """logit p = log p − log(1 − p)."""
        return torch.log(self.probs) - torch.log1p(-self.probs)

    @lazy_property
    def probs(self) -> torch.Tensor:
        """Success probability p (paper convention; torch's NegativeBinomial uses 1 − p)."""
        return torch.sigmoid(self.logits)

    @property
    def dispersion(self) -> torch.Tensor:
        """Alias of ``total_count`` (r)."""
        return self.total_count

    @property
    def param_shape(self) -> torch.Size:
        return self._param.size()

    def _log_p_and_log_1m_p(
        self, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p, log(1 − p)) in the most accurate form available for how p was given (optionally upcast)."""
        if self._given_logits:
            logits = self.logits if dtype is None else self.logits.to(dtype)
            return F.logsigmoid(logits), F.logsigmoid(-logits)
        probs = self.probs if dtype is None else self.probs.to(dtype)
        return torch.log(probs), torch.log1p(-probs)

    def _odds_failure(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """(1 − p) / p."""
        if self._given_logits:
            return torch.exp(-(self.logits if dtype is None else self.logits.to(dtype)))
        probs = self.probs if dtype is None else self.probs.to(dtype)
        return (1.0 - probs) / probs

    # ----- moments ----------------------------------------------------------------------------------
    @property
    def mean(self) -> torch.Tensor:
        """r (1 − p) / p."""
        return self.total_count * self._odds_failure()

    @property
    def variance(self) -> torch.Tensor:
        """r (1 − p) / p² = mean / p."""
        return self.mean * self.fano_factor

    @property
    def fano_factor(self) -> torch.Tensor:
        """variance / mean = 1 / p (≥ 1: overdispersed)."""
        return 1.0 + self._odds_failure()

    @property
    def mode(self) -> torch.Tensor:
        return ((self.total_count - 1.0) * self._odds_failure()).floor().clamp(min=0.0)

    # ----- densities and sampling ---------------------------------------------------------------------
    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log NB(value; r, p) for real value ≥ 0 (non-integer relaxed counts allowed), shape broadcast."""
        if self._validate_args:
            validate_count_value(_OWNER, value, self.batch_shape)
        # The lgamma terms and the two linear terms are large and cancel for large counts or dispersions;
        # in float32 that loses whole digits (e.g. 40% error at z ~ 1e7), so combine them in float64.
        result_dtype = torch.promote_types(value.dtype, self._param.dtype)
        work_dtype = accurate_dtype(result_dtype, value.device)
        log_p, log_1m_p = self._log_p_and_log_1m_p(work_dtype)
        r = self.total_count.to(work_dtype)
        z = value.to(work_dtype)
        log_binomial = torch.lgamma(z + r) - torch.lgamma(r) - torch.lgamma(z + 1.0)
        return (log_binomial + z * log_1m_p + r * log_p).to(result_dtype)

    def rate_distribution(self) -> Gamma:
        """The Gamma mixing distribution of the Poisson rate: Gamma(concentration=r, rate=p / (1 − p))."""
        return Gamma(self.total_count, self._rate_parameter(), validate_args=False)

    def _rate_parameter(self) -> torch.Tensor:
        if self._given_logits:
            return torch.exp(self.logits)
        return self.probs / (1.0 - self.probs)

    def rsample_rate(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """Reparameterized Poisson rate λ ~ Gamma(r, p/(1 − p)), shape ``sample_shape + batch_shape``."""
        shape = self._extended_shape(torch.Size(sample_shape))
        standard = standard_gamma(self.total_count.expand(shape))  # implicit reparameterization
        return (standard * self._odds_failure().expand(shape)).clamp_min(
            torch.finfo(standard.dtype).tiny
        )

    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """Exact integer counts (float dtype), shape ``sample_shape + batch_shape``; no gradient."""
        with torch.no_grad():
            return torch.poisson(self.rsample_rate(sample_shape))

    def rsample(
        self,
        sample_shape: torch.Size | tuple = (),
        relaxation: str = "ct",
        temperature: float = 1.0,
        tolerance: float = 1e-4,
        max_support: int | None = None,
        sampler: str = "gamma-poisson",
        return_times: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Relaxed counts of shape ``sample_shape + batch_shape`` with gradients to r and p.

        ``sampler="gamma-poisson"`` (the paper's method): λ = Gamma.rsample, then a relaxed Poisson step
        (``relaxation`` "ct" or "gumbel"). ``sampler="counting"`` draws no Gamma: "ct" simulates the NB
        counting process (jump rate β(r + k) at count k, β = −log p) and relaxes its arrival times, and
        "gumbel" is Gumbel-softmax directly over the NB pmf (``spikelatent.distributions.counting``).
        ``tolerance`` and ``max_support`` bound the truncation (see the samplers). ``return_times=True``
        (relaxation "ct" only) also returns the arrival times, shape ``(M, *sample_shape, *batch_shape)``,
        sorted along dim 0; those below 1 are the spike times in the unit window.
        """
        check_choice(f"{_OWNER}.rsample", "relaxation", relaxation, RELAXATIONS)
        check_choice(f"{_OWNER}.rsample", "sampler", sampler, NB_SAMPLERS)
        if return_times and relaxation != "ct":
            raise SpikelatentError(
                f"{_OWNER}.rsample: return_times=True needs relaxation='ct' (Gumbel has no arrival times)"
            )
        cap = DEFAULT_CAP if max_support is None else max_support
        if sampler == "gamma-poisson":
            rate = self.rsample_rate(sample_shape)
            if return_times:
                return relaxed_poisson_continuous_time(
                    rate, temperature, tolerance, cap, return_times=True
                )
            return relaxed_poisson(rate, relaxation, temperature, tolerance, max_support)
        shape = self._extended_shape(torch.Size(sample_shape))
        log_p, log_1m_p = self._log_p_and_log_1m_p()
        r = self.total_count.expand(shape)
        if relaxation == "ct":
            return relaxed_negative_binomial_continuous_time(
                r, (-log_p).expand(shape), temperature, tolerance, cap, return_times=return_times
            )
        return relaxed_negative_binomial_gumbel(
            r, log_1m_p.expand(shape), temperature, tolerance, cap, beta=(-log_p).expand(shape)
        )

    def __repr__(self) -> str:
        param = "logits" if self._given_logits else "probs"
        return f"{_OWNER}(total_count: {tuple(self.total_count.shape)}, {param}: {tuple(self._param.shape)})"

"""Poisson distribution with relaxed (reparameterized) sampling, for the Poisson-VAE baseline."""

from __future__ import annotations

from numbers import Number

import torch
from torch.distributions import Poisson as TorchPoisson

from spikelatent.distributions._validation import check_choice, check_nonnegative
from spikelatent.distributions.negative_binomial import (
    _resolve_validate_args,
    accurate_dtype,
    validate_count_value,
)
from spikelatent.distributions.relaxed import RELAXATIONS, relaxed_poisson

__all__ = ["Poisson"]

_OWNER = "Poisson"


class Poisson(TorchPoisson):
    """``torch.distributions.Poisson`` plus ``rsample`` (relaxed counts) and ``fano_factor``.

    ``rate`` λ ≥ 0 is the expected count per unit window, batch shape e.g. ``(batch, unit)``.
    ``log_prob`` accepts non-integer values ≥ 0 (relaxed samples); ``sample`` gives exact integer counts.
    """

    has_rsample = True

    def __init__(self, rate: torch.Tensor | Number, validate_args: bool | None = None) -> None:
        validate = _resolve_validate_args(validate_args)
        rate_tensor = (
            rate
            if isinstance(rate, torch.Tensor)
            else torch.as_tensor(rate, dtype=torch.get_default_dtype())
        )
        if validate:
            check_nonnegative(_OWNER, "rate (expected count λ)", rate_tensor)
        super().__init__(rate_tensor, validate_args=False)
        self._validate_args = validate

    def expand(self, batch_shape, _instance=None) -> Poisson:
        new = self._get_checked_instance(Poisson, _instance)
        return super().expand(batch_shape, _instance=new)

    @property
    def fano_factor(self) -> torch.Tensor:
        """variance / mean = 1 for every unit."""
        return torch.ones_like(self.rate)

    @property
    def dispersion(self) -> torch.Tensor:
        """The NB dispersion r of the Poisson limit (r -> infinity, p -> 1): inf for every unit."""
        return torch.full_like(self.rate, float("inf"))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """value log λ − λ − lgamma(value + 1) for real value ≥ 0 (relaxed counts allowed)."""
        if self._validate_args:
            validate_count_value(_OWNER, value, self.batch_shape)
        # Large counts make the terms cancel; combine them in float64 (see NegativeBinomial.log_prob).
        result_dtype = torch.promote_types(value.dtype, self.rate.dtype)
        work_dtype = accurate_dtype(result_dtype, value.device)
        rate, value = torch.broadcast_tensors(self.rate.to(work_dtype), value.to(work_dtype))
        return (value.xlogy(rate) - rate - (value + 1.0).lgamma()).to(result_dtype)

    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """Exact integer counts (float dtype), shape ``sample_shape + batch_shape``; no gradient."""
        shape = self._extended_shape(torch.Size(sample_shape))
        with torch.no_grad():
            return torch.poisson(self.rate.expand(shape))

    def rsample(
        self,
        sample_shape: torch.Size | tuple = (),
        relaxation: str = "ct",
        temperature: float = 1.0,
        tolerance: float = 1e-4,
        max_support: int | None = None,
    ) -> torch.Tensor:
        """Relaxed counts of shape ``sample_shape + batch_shape`` with gradients to ``rate``."""
        check_choice(f"{_OWNER}.rsample", "relaxation", relaxation, RELAXATIONS)
        shape = self._extended_shape(torch.Size(sample_shape))
        return relaxed_poisson(
            self.rate.expand(shape), relaxation, temperature, tolerance, max_support
        )

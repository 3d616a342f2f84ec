"""Which support sizes the relaxed samplers used: shared by ``samplers.py`` and ``train_step.py``.

Wraps the samplers' private per-bucket cores (``_cumulative_unit_exponentials`` for continuous
time, ``_gumbel_soft_count`` for Gumbel, and the counting samplers' ``_CountingSoftCount`` /
``_PmfGumbelSoftCount``), so with the adaptive support every bucket is seen.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

import spikelatent.distributions.counting as counting
import spikelatent.distributions.relaxed as relaxed


@contextlib.contextmanager
def recorded_supports() -> Iterator[list[tuple[int, int]]]:
    """Inside the block, each bucket a sampler processes appends (support, rates) to the list.

    Support is M arrivals (continuous time) or Z_max + 1 points (Gumbel).
    """
    calls: list[tuple[int, int]] = []
    continuous_time, gumbel = relaxed._cumulative_unit_exponentials, relaxed._gumbel_soft_count

    def recording_continuous_time(n_arrivals: int, rate: torch.Tensor):
        calls.append((n_arrivals, rate.numel()))
        return continuous_time(n_arrivals, rate)

    def recording_gumbel(rate: torch.Tensor, z_max: int, temperature: float):
        calls.append((z_max + 1, rate.numel()))
        return gumbel(rate, z_max, temperature)

    class RecordingFunction:
        """Stands in for an autograd Function whose apply(r, parameter, size, τ) gets the support third."""

        def __init__(self, function) -> None:
            self.function = function

        def apply(self, r, parameter, size, temperature):
            calls.append((size, r.numel()))
            return self.function.apply(r, parameter, size, temperature)

    counting_ct, counting_gumbel = counting._CountingSoftCount, counting._PmfGumbelSoftCount
    relaxed._cumulative_unit_exponentials = recording_continuous_time
    relaxed._gumbel_soft_count = recording_gumbel
    counting._CountingSoftCount = RecordingFunction(counting_ct)
    counting._PmfGumbelSoftCount = RecordingFunction(counting_gumbel)
    try:
        yield calls
    finally:
        relaxed._cumulative_unit_exponentials = continuous_time
        relaxed._gumbel_soft_count = gumbel
        counting._CountingSoftCount, counting._PmfGumbelSoftCount = counting_ct, counting_gumbel


def support_summary(calls: list[tuple[int, int]]) -> tuple[int, float, int]:
    """(largest support, mean support per rate, Σ support · rates) over the recorded buckets."""
    work = sum(size * count for size, count in calls)
    return max(size for size, _ in calls), work / sum(count for _, count in calls), work

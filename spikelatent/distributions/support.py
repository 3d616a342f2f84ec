"""Per-element support sizes in practice: the bucketing kernel, the support cap and row cumsums.

Shared by the relaxed Poisson samplers (:mod:`spikelatent.distributions.relaxed`), the NB counting
samplers (:mod:`spikelatent.distributions.counting`) and the series KL
(:mod:`spikelatent.distributions.kl`): one copy of each, so the three stay in step.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

__all__ = [
    "BUCKET_SIZES",
    "MIN_ELEMENTS_TO_BUCKET",
    "SMALLEST_EXPONENT",
    "apply_in_buckets",
    "bucket_index",
    "capped_support",
    "cumulate_rows",
    "run_in_buckets",
]

# Exponents are floored here before exp / sigmoid: e^-80 ~ 2e-35 is still a normal float32 (subnormal
# arithmetic is ~10-100x slower on x86) and far below anything that changes a count.
SMALLEST_EXPONENT = -80.0
# Nominal bucket sizes for the adaptive support: powers of two, so an element pays at most 2x its own
# support while a typical tensor spans only a handful of buckets (each costs ~10 small kernels; at
# (128, 256) rates, ratio-1.5 sizes measured 25% slower than powers of two).
BUCKET_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Below this many elements the bucketing's fixed cost (a few small kernels per bucket) is not worth it.
MIN_ELEMENTS_TO_BUCKET = 4096


def bucket_index(values: torch.Tensor, thresholds: Sequence[float]) -> torch.Tensor:
    """Bucket of each element: the number of ``thresholds`` (ascending) it exceeds, uint8.

    A few compare-and-add passes over uint8 beat torch.bucketize's per-element binary search (0.8 vs
    1.5 ms for 164k rates), and sorting uint8 keys beats int64 ones (0.5 vs 1.5 ms).
    """
    bucket = torch.zeros(values.shape, dtype=torch.uint8, device=values.device)
    for threshold in thresholds:
        bucket += values > threshold
    return bucket


def run_in_buckets(
    bucket: torch.Tensor,
    n_buckets: int,
    compute_all: Callable[[], torch.Tensor],
    compute_part: Callable[[int, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Flat result of ``compute_part(index, members)`` per non-empty bucket, scattered back in place.

    ``bucket`` (flat uint8, from :func:`bucket_index`) assigns each element to one of ``n_buckets``;
    ``members`` are the flat indices of a bucket's elements. When the top bucket holds everything,
    ``compute_all()`` runs instead (no gather or scatter). Buckets run in ascending order, so random
    draws are consumed in a fixed order. Gradients flow through the gathers and the scatter.
    """
    counts = torch.bincount(bucket, minlength=n_buckets).tolist()  # one host sync
    if counts[-1] == bucket.numel():
        return compute_all()
    order = torch.sort(bucket, stable=True).indices
    parts, start = [], 0
    for index, count in enumerate(counts):
        if count == 0:
            continue
        members = order[start:start + count]
        start += count
        parts.append(compute_part(index, members))
    result = torch.cat(parts)
    # ``order`` is a permutation, so index_copy overwrites every element of the empty buffer.
    return result.new_empty(bucket.numel()).index_copy(0, order, result)


def apply_in_buckets(
    support: torch.Tensor,
    inputs: tuple[torch.Tensor, ...],
    compute: Callable[..., torch.Tensor],
    largest: int,
) -> torch.Tensor:
    """compute(size, *bucket_inputs) per bucket of elements with similar support; flat result.

    ``support`` (flat int64) is each element's required size; ``inputs`` are flat tensors of the same
    length. Buckets are the powers of two; a bucket gets the largest support of its members, so every
    element keeps its own guarantee. Gradients flow through the gathers and the scatter.
    """
    sizes = [size for size in BUCKET_SIZES if size < largest]
    if not sizes or support.numel() < MIN_ELEMENTS_TO_BUCKET:
        return compute(largest, *inputs)
    bucket = bucket_index(support, sizes)
    n_buckets = len(sizes) + 1
    tops: list[int] = []

    def part(index: int, members: torch.Tensor) -> torch.Tensor:
        if not tops:  # each bucket's largest support, read once
            tops.extend(torch.zeros(n_buckets, dtype=torch.int64, device=support.device).scatter_reduce_(
                0, bucket.long(), support, reduce="amax", include_self=True).tolist())
        return compute(max(1, tops[index]), *(x.index_select(0, members) for x in inputs))

    return run_in_buckets(bucket, n_buckets, lambda: compute(largest, *inputs), part)


def capped_support(owner: str, support: torch.Tensor, cap: int, stacklevel: int = 4) -> tuple[torch.Tensor, int]:
    """(support clamped at cap, largest support) with a RuntimeWarning when something needed more."""
    largest = int(support.max())
    if largest > cap:
        warnings.warn(
            f"{owner}: {int((support > cap).sum())} elements need a support above max_support={cap} "
            f"for this tolerance; their counts are truncated at {cap} (raise max_support to avoid this)",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
        support = support.clamp(max=cap)
        largest = cap
    return support, max(1, largest)


def cumulate_rows(buffer: torch.Tensor) -> torch.Tensor:
    """In-place cumulative sum along dim 0 of a (rows, n) buffer (row additions beat cumsum on CPU)."""
    if buffer.device.type != "cpu" or buffer.shape[1] < 6000:
        return buffer.cumsum_(dim=0)
    for row in range(1, buffer.shape[0]):
        buffer[row].add_(buffer[row - 1])
    return buffer

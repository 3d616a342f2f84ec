"""Seeded train/validation/test index splits.

A split is a seeded permutation (``numpy.random.default_rng(seed).permutation``): the first
``round(fraction * n)`` permuted positions are carved off, the rest kept. Index lists are
returned sorted so the subsets keep the dataset's own order.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from spikelatent.options import SPLITS

__all__ = ["SPLITS", "TEST_SPLIT_SEED", "carve", "indices_digest"]

#: Seed of the fixed test split for datasets without an official one (digits, synthetic), so runs
#: with different ``seed`` values are evaluated on the same test images.
TEST_SPLIT_SEED = 0


def carve(
    pool: np.ndarray, fraction: float, seed: int, keep_limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split index array ``pool`` into ``(kept, carved)`` with a seeded permutation.

    ``carved`` holds ``round(fraction * len(pool))`` indices; ``kept`` the rest, truncated to the
    first ``keep_limit`` of the permuted order when given. Both are sorted int64 arrays.
    """
    pool = np.asarray(pool, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(pool))
    n_carved = int(round(fraction * len(pool)))
    carved = pool[order[:n_carved]]
    kept = pool[order[n_carved:]]
    if keep_limit is not None:
        kept = kept[:keep_limit]
    return np.sort(kept), np.sort(carved)


def indices_digest(indices: list[int]) -> str:
    """SHA-256 of the JSON list of indices: identifies a split without listing it."""
    return hashlib.sha256(json.dumps(list(indices)).encode()).hexdigest()

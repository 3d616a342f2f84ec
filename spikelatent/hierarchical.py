"""The hierarchical NB-VAE, importable by its old path: it lives in
:mod:`spikelatent.families.hierarchical` (docs/hierarchical.md)."""

from spikelatent.families.hierarchical import (  # noqa: F401
    HIERARCHICAL_KL,
    KL_BALANCES,
    HierarchicalNB,
    TopDownPass,
    default_spatial_sizes,
)

__all__ = ["HIERARCHICAL_KL", "KL_BALANCES", "HierarchicalNB", "TopDownPass", "default_spatial_sizes"]

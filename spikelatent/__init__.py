"""spikelatent: Negative-Binomial VAEs and their latent spike-count populations.

Heavy modules (torch, Lightning, xarray) are imported on first use, so ``spikelatent --version``
stays fast. Public entry points: :func:`load`, :func:`population`, :func:`fit`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load": ("spikelatent.checkpoints", "load"),
    "VAE": ("spikelatent.model", "VAE"),
    "fit": ("spikelatent.workflows.fit", "fit_model"),  # returns the trained model
    "FitConfig": ("spikelatent.config", "FitConfig"),
    "population": ("spikelatent.populations", "population"),
    "make_datamodule": ("spikelatent.data", "make_datamodule"),
    "SpikelatentError": ("spikelatent.errors", "SpikelatentError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spikelatent' has no attribute {name!r}")

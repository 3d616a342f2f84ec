"""Every model kind behind one interface (:class:`LatentModel`), registered by ``--model`` name.

Adding a model kind = one module here that defines it and calls
:func:`~spikelatent.families.base.register_family` (or, for an encoder + latent vector + decoder
model, :func:`~spikelatent.families.single_layer.register_single_layer`), plus its import below.
"""

from spikelatent.families import (  # noqa: F401  (importing a module registers its family)
    categorical,
    gaussian,
    hierarchical,
    laplace,
    negbio,
    poisson,
)
from spikelatent.families.base import FAMILIES, LatentModel, LossTerms, make_family, register_family
from spikelatent.families.single_layer import LatentFamily, SingleLayerModel, register_single_layer

__all__ = [
    "FAMILIES",
    "LatentFamily",
    "LatentModel",
    "LossTerms",
    "SingleLayerModel",
    "make_family",
    "register_family",
    "register_single_layer",
]

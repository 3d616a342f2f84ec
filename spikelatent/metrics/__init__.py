"""Reconstruction (MSE, SSIM) and generation (FID, KID) metrics through torchmetrics, and the
feature extractors FID/KID use (``inception``, ``classifier``). See docs/evaluation.md."""

from spikelatent.metrics.features import (
    FEATURE_KINDS,
    ClassifierFeatures,
    InceptionFeatures,
    ensure_inception_weights,
    inception_weights_available,
    inception_weights_path,
    load_or_train_classifier,
    make_feature_extractor,
    resolve_feature_kind,
    train_classifier,
)
from spikelatent.metrics.generation import generation_metrics
from spikelatent.metrics.reconstruction import reconstruction_metrics, to_unit_range

__all__ = [
    "FEATURE_KINDS",
    "ClassifierFeatures",
    "InceptionFeatures",
    "ensure_inception_weights",
    "generation_metrics",
    "inception_weights_available",
    "inception_weights_path",
    "load_or_train_classifier",
    "make_feature_extractor",
    "reconstruction_metrics",
    "resolve_feature_kind",
    "to_unit_range",
    "train_classifier",
]

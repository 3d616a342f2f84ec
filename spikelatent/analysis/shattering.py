"""Shattering dimensionality: mean accuracy of linear read-outs over all balanced class dichotomies.

For k classes (k even) every subset A of k/2 classes defines a binary task "A vs the rest"
(``itertools.combinations``: C(k, k/2) ordered splits, 252 for ten classes). Each dichotomy appears
twice, as A vs B and as B vs A. Logistic regression with an L2 penalty is symmetric under flipping
the binary labels (the fit becomes w → −w, b → −b, and the predictions flip), so the held-out
accuracy of the mirror split is identical; each distinct dichotomy is fitted once (126 fits for ten
classes) and its accuracy reported for both orders. The score is the mean accuracy over splits
(Bernardi et al. 2020; NegBio-VAE paper §5.4.1).
"""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr
from joblib import Parallel, delayed, parallel_config
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from spikelatent.analysis._features import features_and_labels
from spikelatent.errors import SpikelatentError

__all__ = ["shattering_dimensionality", "balanced_splits"]


def balanced_splits(n_classes: int) -> list[tuple[int, ...]]:
    """All ``C(k, k/2)`` class-index subsets of size k/2, in ``itertools.combinations`` order.

    In this order split ``i`` and split ``C − 1 − i`` are complements (mirror images).
    """
    if n_classes < 2:
        raise SpikelatentError(f"shattering needs at least 2 classes, got {n_classes}")
    if n_classes % 2:
        raise SpikelatentError(
            f"shattering needs an even number of classes for balanced splits, got {n_classes}; drop one class"
        )
    return list(itertools.combinations(range(n_classes), n_classes // 2))


def _dichotomy_accuracy(
    train_x: np.ndarray,
    train_class: np.ndarray,
    test_x: np.ndarray,
    test_class: np.ndarray,
    group_a: tuple[int, ...],
    n_classes: int,
    max_iter: int,
    regularization: float,
) -> tuple[float, bool]:
    members = np.zeros(n_classes, dtype=bool)  # class index -> in group A
    members[list(group_a)] = True
    classifier = LogisticRegression(C=regularization, solver="lbfgs", max_iter=max_iter)
    classifier.fit(train_x, members[train_class])
    accuracy = float(np.mean(classifier.predict(test_x) == members[test_class]))
    converged = bool(np.all(classifier.n_iter_ < max_iter))
    return accuracy, converged


def shattering_dimensionality(
    train_features: object,
    train_labels: object = None,
    test_features: object = None,
    test_labels: object = None,
    n_jobs: int | None = -1,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    max_iter: int = 1000,
    regularization: float = 1.0,
    sample_dim: str = "sample",
    prefer: str = "threads",
) -> xr.Dataset:
    """Shattering dimensionality of features with respect to their class labels.

    Args:
        train_features, test_features: ``(sample, feature)`` DataArray (labels may be a ``label``
            coordinate along ``sample``) or 2-D numpy arrays. ``test_features=None`` is an error:
            accuracy must be measured on held-out samples.
        train_labels, test_labels: one class label per sample (any hashable values); every test
            label must occur in training.
        n_jobs: joblib workers for the per-dichotomy fits (-1: all cores).
        n_boot: bootstrap resamples of the distinct dichotomies for the confidence interval.
        seed: bootstrap seed (the fits themselves are deterministic).
        confidence: interval coverage.
        max_iter: L-BFGS iterations per fit; ``regularization``: sklearn's ``C``.
        sample_dim: name of the sample dim in DataArray inputs.
        prefer: joblib backend preference, ``"threads"`` (default: no worker start-up, the solver's
            linear algebra releases the GIL) or ``"processes"``.

    Features are standardised with the training mean and standard deviation.

    Returns:
        Dataset with dim ``split`` (C(k, k/2)): ``accuracy``, coords ``group_a``/``group_b``
        (comma-joined class labels), ``dichotomy`` (index of the distinct dichotomy, shared by a split
        and its mirror), and scalars ``mean``, ``ci_low``, ``ci_high`` (percentile bootstrap over the
        distinct dichotomies; a split and its mirror are one observation).
    """
    if test_features is None:
        raise SpikelatentError(
            "shattering needs held-out test features (test_features) as well as training ones"
        )
    if not 0 < confidence < 1:
        raise SpikelatentError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if n_boot < 1:
        raise SpikelatentError(f"n_boot must be at least 1, got {n_boot}")
    train_x, train_y = features_and_labels(train_features, train_labels, "training", sample_dim)
    test_x, test_y = features_and_labels(test_features, test_labels, "test", sample_dim)
    if train_x.shape[1] != test_x.shape[1]:
        raise SpikelatentError(
            f"training features have {train_x.shape[1]} columns but test features {test_x.shape[1]}"
        )
    classes, train_class = np.unique(train_y, return_inverse=True)
    unknown = np.setdiff1d(np.unique(test_y), classes)
    if unknown.size:
        raise SpikelatentError(
            f"test labels {unknown.tolist()[:5]} never occur in the training labels"
        )
    test_class = np.searchsorted(classes, test_y)
    splits = balanced_splits(len(classes))

    scaler = StandardScaler().fit(train_x)
    train_x, test_x = scaler.transform(train_x), scaler.transform(test_x)

    # Split i and split n-1-i are complements; the first half holds one of each pair.
    n_splits = len(splits)
    n_distinct = n_splits // 2
    # One BLAS thread per fit: the parallelism is across fits, and oversubscribed BLAS threads on
    # a busy machine slow these small problems down many times over.
    with threadpool_limits(limits=1, user_api="blas"), parallel_config(prefer=prefer):
        results = Parallel(n_jobs=n_jobs)(
            delayed(_dichotomy_accuracy)(
                train_x,
                train_class,
                test_x,
                test_class,
                splits[i],
                len(classes),
                max_iter,
                regularization,
            )
            for i in range(n_distinct)
        )
    distinct_accuracy = np.array([accuracy for accuracy, _ in results])
    all_converged = all(converged for _, converged in results)
    dichotomy = np.array([min(i, n_splits - 1 - i) for i in range(n_splits)])
    accuracy = distinct_accuracy[dichotomy]

    rng = np.random.default_rng(seed)
    resampled = rng.integers(0, n_distinct, size=(n_boot, n_distinct))
    boot_means = distinct_accuracy[resampled].mean(axis=1)
    tail = (1 - confidence) / 2
    ci_low, ci_high = np.quantile(boot_means, [tail, 1 - tail])

    def names(indices: tuple[int, ...]) -> str:
        return ",".join(str(classes[i]) for i in indices)

    group_a = [names(split) for split in splits]
    group_b = [names(tuple(sorted(set(range(len(classes))) - set(split)))) for split in splits]
    return xr.Dataset(
        {
            "accuracy": (
                "split",
                accuracy,
                {"long_name": "held-out accuracy of group_a vs group_b"},
            ),
            "mean": ((), float(accuracy.mean()), {"long_name": "shattering dimensionality"}),
            "ci_low": ((), float(ci_low)),
            "ci_high": ((), float(ci_high)),
        },
        coords={
            "split": np.arange(n_splits),
            "group_a": ("split", group_a),
            "group_b": ("split", group_b),
            "dichotomy": ("split", dichotomy),
        },
        attrs={
            "n_classes": len(classes),
            "n_splits": n_splits,
            "n_distinct_dichotomies": n_distinct,
            "n_train": train_x.shape[0],
            "n_test": test_x.shape[0],
            "n_features": train_x.shape[1],
            "classifier": f"StandardScaler + LogisticRegression(lbfgs, C={regularization}, max_iter={max_iter})",
            "all_converged": int(all_converged),
            "confidence": confidence,
            "n_boot": n_boot,
            "seed": seed,
        },
    )

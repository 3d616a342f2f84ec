"""Linear and nearest-neighbour read-outs of latent features (NegBio-VAE paper §5.4.1–5.4.2).

* :func:`fragmentation_prediction`: split a labelled set at random into two halves, train logistic
  regression on N samples of one half, measure accuracy on the other half; repeated with new splits.
* :func:`few_shot`: train on k labelled samples per class, test on a separate set, for logistic
  regression and k-nearest neighbours.

Features are standardised (``StandardScaler``) before every fit unless ``standardize=False``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from joblib import Parallel, delayed, parallel_config
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from spikelatent.analysis._features import features_and_labels
from spikelatent.errors import SpikelatentError

__all__ = ["fragmentation_prediction", "few_shot"]

CLASSIFIERS = ("logistic", "knn")


def _positive_ints(values: int | Sequence[int], name: str) -> list[int]:
    items = [values] if isinstance(values, (int, np.integer)) else list(values)
    if not items or any(not isinstance(v, (int, np.integer)) or v < 1 for v in items):
        raise SpikelatentError(f"{name} must be positive integers, got {values!r}")
    return [int(v) for v in items]


def _logistic(standardize: bool, max_iter: int, regularization: float):
    model = LogisticRegression(C=regularization, solver="lbfgs", max_iter=max_iter)
    return make_pipeline(StandardScaler(), model) if standardize else model


def _fit_accuracy(classifier, train_x, train_y, test_x, test_y) -> float:
    classifier.fit(train_x, train_y)
    return float(np.mean(classifier.predict(test_x) == test_y))


def _accuracies(jobs: list[tuple], n_jobs: int | None) -> list[float]:
    """Test accuracy of each ``(classifier, train_x, train_y, test_x, test_y)`` job, in job order."""
    # threads share the data; one BLAS thread each so n_jobs workers do not oversubscribe the cores
    with threadpool_limits(limits=1, user_api="blas"), parallel_config(prefer="threads"):
        return Parallel(n_jobs=n_jobs)(delayed(_fit_accuracy)(*job) for job in jobs)


def _with_summary(accuracy: xr.DataArray, attrs: dict) -> xr.Dataset:
    """``accuracy`` with its ``mean`` and sample ``std`` over ``repeat`` (NaN for a single repeat)."""
    ddof = 1 if accuracy.sizes["repeat"] > 1 else 0
    std = accuracy.std("repeat", ddof=ddof)
    if ddof == 0:
        std = std * np.nan  # one repeat: no spread to report
    return xr.Dataset({"accuracy": accuracy, "mean": accuracy.mean("repeat"), "std": std}, attrs=attrs)


def fragmentation_prediction(
    features: object,
    labels: object = None,
    n_train: int | Sequence[int] = (200, 1000, 5000),
    n_repeats: int = 10,
    seed: int = 0,
    standardize: bool = True,
    max_iter: int = 1000,
    regularization: float = 1.0,
    n_jobs: int | None = 1,
    sample_dim: str = "sample",
) -> xr.Dataset:
    """Accuracy of logistic regression trained on N samples of one random half, tested on the other.

    Args:
        features: ``(sample, feature)`` DataArray (labels may be its ``label`` coordinate) or 2-D array,
            e.g. the 10 000 MNIST test images' features.
        labels: one class label per sample.
        n_train: training-set sizes N; each must fit in one half (``n_samples // 2``).
        n_repeats: random half-splits; each repeat draws a new split, and its N-sample training sets
            are nested prefixes of one shuffled half.
        seed: seed of the random splits.
        n_jobs: joblib workers (threads) for the fits.

    Returns:
        Dataset with ``accuracy`` (n_train, repeat), ``mean`` and ``std`` (n_train; sample standard
        deviation over repeats, NaN for a single repeat).
    """
    x, y = features_and_labels(features, labels, "fragmentation", sample_dim)
    sizes = _positive_ints(n_train, "n_train")
    if n_repeats < 1:
        raise SpikelatentError(f"n_repeats must be at least 1, got {n_repeats}")
    half = x.shape[0] // 2
    too_big = [n for n in sizes if n > half]
    if too_big:
        raise SpikelatentError(
            f"n_train {too_big} exceeds one half of the {x.shape[0]} samples ({half}); "
            f"use smaller n_train or more samples"
        )
    rng = np.random.default_rng(seed)
    jobs = []
    for _ in range(n_repeats):
        order = rng.permutation(x.shape[0])
        train_half, test_half = order[:half], order[half : 2 * half]
        for n in sizes:
            train = train_half[:n]
            if np.unique(y[train]).size < 2:
                raise SpikelatentError(
                    f"a training set of {n} samples holds a single class; use a larger n_train"
                )
            classifier = _logistic(standardize, max_iter, regularization)
            jobs.append((classifier, x[train], y[train], x[test_half], y[test_half]))
    accuracy = xr.DataArray(
        np.array(_accuracies(jobs, n_jobs)).reshape(n_repeats, len(sizes)).T,
        dims=("n_train", "repeat"),
        coords={"n_train": sizes, "repeat": np.arange(n_repeats)},
        name="accuracy",
    )
    return _with_summary(
        accuracy,
        {
            "task": "fragmentation prediction (random half split)",
            "n_samples": x.shape[0],
            "classifier": f"LogisticRegression(lbfgs, C={regularization}, max_iter={max_iter})",
            "standardize": int(standardize),
            "seed": seed,
        },
    )


def few_shot(
    train_features: object,
    train_labels: object = None,
    test_features: object = None,
    test_labels: object = None,
    shots: int | Sequence[int] = (1, 5, 10, 20),
    n_repeats: int = 10,
    classifiers: Sequence[str] = CLASSIFIERS,
    seed: int = 0,
    knn_neighbors: int = 5,
    standardize: bool = True,
    max_iter: int = 1000,
    regularization: float = 1.0,
    n_jobs: int | None = 1,
    sample_dim: str = "sample",
) -> xr.Dataset:
    """k-shot classification accuracy: k labelled training samples per class, tested on a held-out set.

    Args:
        train_features, test_features: ``(sample, feature)`` DataArray or 2-D arrays.
        train_labels, test_labels: one label per sample; every class needs at least ``max(shots)``
            training samples, and every test label must occur in training.
        shots: samples per class.
        n_repeats: independent draws of the k-shot training set (seeded by ``seed``).
        classifiers: any of ``"logistic"`` (L2 logistic regression) and ``"knn"`` (k-nearest neighbours
            with ``min(knn_neighbors, shot)`` neighbours, so 1-shot is 1-NN).
        standardize: scale features by the mean/std of *all* training features (no labels used),
            since a handful of shots gives a poor estimate of the spread.

    Returns:
        Dataset with ``accuracy`` (classifier, shot, repeat), ``mean`` and ``std`` (classifier, shot).
    """
    if test_features is None:
        raise SpikelatentError("few_shot needs held-out test features as well as training ones")
    train_x, train_y = features_and_labels(train_features, train_labels, "training", sample_dim)
    test_x, test_y = features_and_labels(test_features, test_labels, "test", sample_dim)
    if train_x.shape[1] != test_x.shape[1]:
        raise SpikelatentError(
            f"training features have {train_x.shape[1]} columns but test features {test_x.shape[1]}"
        )
    shot_list = _positive_ints(shots, "shots")
    names = [classifiers] if isinstance(classifiers, str) else list(classifiers)
    unknown = [c for c in names if c not in CLASSIFIERS]
    if not names or unknown:
        raise SpikelatentError(f"unknown classifiers {unknown or names}; choose from {CLASSIFIERS}")
    if n_repeats < 1 or knn_neighbors < 1:
        raise SpikelatentError("n_repeats and knn_neighbors must be at least 1")
    classes, class_sizes = np.unique(train_y, return_counts=True)
    if classes.size < 2:
        raise SpikelatentError(f"few_shot needs at least 2 classes, got {classes.size}")
    missing = np.setdiff1d(np.unique(test_y), classes)
    if missing.size:
        raise SpikelatentError(
            f"test labels {missing.tolist()[:5]} never occur in the training labels"
        )
    if class_sizes.min() < max(shot_list):
        smallest = classes[np.argmin(class_sizes)]
        raise SpikelatentError(
            f"class {smallest!r} has {class_sizes.min()} training samples, fewer than {max(shot_list)} shots"
        )
    if standardize:
        scaler = StandardScaler().fit(train_x)
        train_x, test_x = scaler.transform(train_x), scaler.transform(test_x)

    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(train_y == c) for c in classes]
    jobs = []
    for _ in range(n_repeats):
        shuffled = [rng.permutation(index) for index in members]
        for shot in shot_list:
            chosen = np.concatenate([index[:shot] for index in shuffled])
            for name in names:
                if name == "logistic":
                    classifier = _logistic(False, max_iter, regularization)
                else:
                    classifier = KNeighborsClassifier(n_neighbors=min(knn_neighbors, shot))
                jobs.append((classifier, train_x[chosen], train_y[chosen], test_x, test_y))
    accuracy = xr.DataArray(
        np.array(_accuracies(jobs, n_jobs))
        .reshape(n_repeats, len(shot_list), len(names))
        .transpose(2, 1, 0),
        dims=("classifier", "shot", "repeat"),
        coords={"classifier": names, "shot": shot_list, "repeat": np.arange(n_repeats)},
        name="accuracy",
    )
    return _with_summary(
        accuracy,
        {
            "task": "few-shot classification",
            "n_train_pool": train_x.shape[0],
            "n_test": test_x.shape[0],
            "knn_neighbors": knn_neighbors,
            "standardize": int(standardize),
            "seed": seed,
        },
    )

"""Fragmentation prediction and few-shot read-outs on features with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from spikelatent.analysis import few_shot, fragmentation_prediction
from spikelatent.errors import SpikelatentError


def _one_hot_features(
    n: int, n_classes: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    features = np.eye(n_classes)[labels] + noise * rng.normal(size=(n, n_classes))
    return features, labels


def test_fragmentation_separable_and_shapes():
    features, labels = _one_hot_features(1200, 10, 0.05, seed=0)
    data = xr.DataArray(features, dims=("sample", "feature"), coords={"label": ("sample", labels)})
    result = fragmentation_prediction(data, n_train=(100, 600), n_repeats=3, seed=1)
    assert result["accuracy"].dims == ("n_train", "repeat")
    assert result["accuracy"].shape == (2, 3)
    assert result["n_train"].values.tolist() == [100, 600]
    assert result["mean"].dims == ("n_train",) and result["std"].dims == ("n_train",)
    assert float(result["accuracy"].min()) >= 0.98
    np.testing.assert_allclose(result["mean"].values, result["accuracy"].values.mean(axis=1))
    np.testing.assert_allclose(result["std"].values, result["accuracy"].values.std(axis=1, ddof=1))
    # seeded: the same call gives the same numbers
    again = fragmentation_prediction(data, n_train=(100, 600), n_repeats=3, seed=1)
    np.testing.assert_array_equal(again["accuracy"].values, result["accuracy"].values)


def test_fragmentation_shuffled_labels_is_chance():
    rng = np.random.default_rng(2)
    features, labels = rng.normal(size=(1000, 10)), rng.integers(0, 5, 1000)
    result = fragmentation_prediction(features, labels, n_train=(400,), n_repeats=4)
    assert float(result["mean"].item()) == pytest.approx(0.2, abs=0.05)


def test_fragmentation_errors():
    features, labels = _one_hot_features(100, 2, 0.1, seed=3)
    with pytest.raises(SpikelatentError, match="exceeds one half of the 100 samples \\(50\\)"):
        fragmentation_prediction(features, labels, n_train=(10, 51))
    with pytest.raises(SpikelatentError, match="positive integers"):
        fragmentation_prediction(features, labels, n_train=(0,))
    with pytest.raises(SpikelatentError, match="labels are missing"):
        fragmentation_prediction(features)


def test_few_shot_separable_and_shapes():
    train_x, train_y = _one_hot_features(400, 10, 0.05, seed=4)
    test_x, test_y = _one_hot_features(300, 10, 0.05, seed=5)
    result = few_shot(train_x, train_y, test_x, test_y, shots=(1, 5), n_repeats=2, seed=0)
    assert result["accuracy"].dims == ("classifier", "shot", "repeat")
    assert result["accuracy"].shape == (2, 2, 2)
    assert result["classifier"].values.tolist() == ["logistic", "knn"]
    assert result["mean"].dims == ("classifier", "shot")
    assert float(result["accuracy"].min()) >= 0.98


def test_few_shot_one_nearest_neighbour_matches_numpy():
    # The training pool holds exactly one sample per class, so the 1-shot set is forced and the
    # 1-NN accuracy can be computed by hand (features standardised with the pool's mean/std).
    rng = np.random.default_rng(6)
    pool = rng.normal(size=(4, 3))
    pool_labels = np.array([0, 1, 2, 3])
    test_x = rng.normal(size=(50, 3))
    test_y = rng.integers(0, 4, 50)
    result = few_shot(
        pool, pool_labels, test_x, test_y, shots=(1,), n_repeats=2, classifiers=("knn",)
    )
    mean, std = pool.mean(axis=0), pool.std(axis=0)
    z_pool, z_test = (pool - mean) / std, (test_x - mean) / std
    nearest = np.argmin(((z_test[:, None, :] - z_pool[None]) ** 2).sum(-1), axis=1)
    expected = np.mean(pool_labels[nearest] == test_y)
    np.testing.assert_allclose(result["accuracy"].sel(classifier="knn", shot=1).values, expected)


def test_few_shot_errors():
    train_x, train_y = _one_hot_features(40, 4, 0.05, seed=7)
    with pytest.raises(SpikelatentError, match="fewer than 20 shots"):
        few_shot(train_x, train_y, train_x, train_y, shots=(1, 20))
    with pytest.raises(SpikelatentError, match="unknown classifiers"):
        few_shot(train_x, train_y, train_x, train_y, classifiers=("svm",))
    with pytest.raises(SpikelatentError, match="never occur"):
        few_shot(train_x, train_y, train_x, train_y + 1, shots=(1,))
    with pytest.raises(SpikelatentError, match="columns"):
        few_shot(train_x, train_y, train_x[:, :2], train_y, shots=(1,))
    with pytest.raises(SpikelatentError, match="held-out"):
        few_shot(train_x, train_y)

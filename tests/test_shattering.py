"""Shattering dimensionality on features whose answer is known (separable / shuffled)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import xarray as xr
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from spikelatent.analysis import shattering_dimensionality
from spikelatent.errors import SpikelatentError


def _one_hot_features(
    n: int, n_classes: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    features = np.eye(n_classes)[labels] + noise * rng.normal(size=(n, n_classes))
    return features, labels


def test_separable_classes_shatter_perfectly():
    train_x, train_y = _one_hot_features(300, 10, 0.05, seed=0)
    test_x, test_y = _one_hot_features(300, 10, 0.05, seed=1)
    result = shattering_dimensionality(train_x, train_y, test_x, test_y, n_jobs=2, n_boot=200)
    assert result.sizes["split"] == 252  # C(10, 5)
    assert float(result["mean"]) >= 0.99
    assert float(result["accuracy"].min()) >= 0.97
    assert result.attrs["n_distinct_dichotomies"] == 126


def test_shuffled_labels_give_chance():
    rng = np.random.default_rng(2)
    train_x, test_x = rng.normal(size=(400, 20)), rng.normal(size=(400, 20))
    train_y, test_y = rng.integers(0, 10, 400), rng.integers(0, 10, 400)
    result = shattering_dimensionality(train_x, train_y, test_x, test_y, n_jobs=1, n_boot=300)
    assert float(result["mean"]) == pytest.approx(0.5, abs=0.04)
    assert float(result["ci_low"]) <= float(result["mean"]) <= float(result["ci_high"])


def test_splits_are_all_balanced_dichotomies_each_twice_and_accuracy_matches_sklearn():
    rng = np.random.default_rng(3)
    n_classes = 6
    centres = rng.normal(size=(n_classes, 8))
    train_y, test_y = rng.integers(0, n_classes, 240), rng.integers(0, n_classes, 240)
    train_x = centres[train_y] + 1.5 * rng.normal(size=(240, 8))  # overlapping: accuracies differ
    test_x = centres[test_y] + 1.5 * rng.normal(size=(240, 8))
    result = shattering_dimensionality(train_x, train_y, test_x, test_y, n_jobs=1, n_boot=50)

    expected_groups = [",".join(map(str, c)) for c in itertools.combinations(range(n_classes), 3)]
    assert list(result["group_a"].values) == expected_groups  # all C(6, 3) = 20, in order
    dichotomies = {
        frozenset([a, b])
        for a, b in zip(result["group_a"].values, result["group_b"].values, strict=True)
    }
    assert len(dichotomies) == 10  # each dichotomy exactly twice

    scaler = StandardScaler().fit(train_x)
    for split in (0, 7, 13, 19):
        group_a = [int(c) for c in str(result["group_a"].values[split]).split(",")]
        model = LogisticRegression(max_iter=1000).fit(
            scaler.transform(train_x), np.isin(train_y, group_a)
        )
        expected = np.mean(model.predict(scaler.transform(test_x)) == np.isin(test_y, group_a))
        assert float(result["accuracy"][split]) == pytest.approx(expected)
    assert float(result["mean"]) == pytest.approx(float(result["accuracy"].mean()))
    assert 0.55 < float(result["mean"]) < 0.98


def test_dataarray_input_with_label_coordinate_and_string_labels():
    train_x, train_y = _one_hot_features(120, 4, 0.05, seed=4)
    test_x, test_y = _one_hot_features(120, 4, 0.05, seed=5)
    names = np.array(["cat", "dog", "eel", "fox"])

    def as_array(x, y):
        return xr.DataArray(x.T, dims=("feature", "sample"), coords={"label": ("sample", names[y])})

    result = shattering_dimensionality(
        as_array(train_x, train_y), None, as_array(test_x, test_y), None, n_jobs=1
    )
    assert result.sizes["split"] == 6  # C(4, 2)
    assert result["group_a"].values[0] == "cat,dog"
    assert result["group_b"].values[0] == "eel,fox"
    assert float(result["mean"]) >= 0.99


def test_errors():
    x = np.zeros((10, 3))
    with pytest.raises(SpikelatentError, match="even number"):
        shattering_dimensionality(x, np.arange(10) % 3, x, np.arange(10) % 3)
    with pytest.raises(SpikelatentError, match="at least 2 classes"):
        shattering_dimensionality(x, np.zeros(10), x, np.zeros(10))
    with pytest.raises(SpikelatentError, match="held-out"):
        shattering_dimensionality(x, np.arange(10) % 2)
    with pytest.raises(SpikelatentError, match="never occur"):
        shattering_dimensionality(x, np.arange(10) % 2, x, np.arange(10) % 4)
    with pytest.raises(SpikelatentError, match="one label per sample"):
        shattering_dimensionality(x, np.arange(9) % 2, x, np.arange(10) % 2)
    with pytest.raises(SpikelatentError, match="sample"):
        shattering_dimensionality(
            xr.DataArray(x, dims=("image", "unit")), np.arange(10) % 2, x, np.arange(10) % 2
        )


def test_shattering_figure(tmp_path):

    from spikelatent.plotting import plot_shattering

    train_x, train_y = _one_hot_features(80, 4, 0.3, seed=6)
    test_x, test_y = _one_hot_features(80, 4, 0.3, seed=7)
    result = shattering_dimensionality(train_x, train_y, test_x, test_y, n_jobs=1, n_boot=20)
    path = plot_shattering(result, tmp_path / "shattering.svg")
    assert path.read_text().lstrip().startswith("<?xml")

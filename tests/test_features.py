"""FID/KID feature extractors: the offline ``classifier`` (accuracy, cache) and the ``inception``
weights lookup (a missing file is a one-line error naming it, never a silent fallback)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score

from spikelatent.cli import main
from spikelatent.errors import SpikelatentError
from spikelatent.metrics import features
from spikelatent.metrics.features import (
    INCEPTION_WEIGHTS_FILENAME,
    ClassifierFeatures,
    InceptionFeatures,
    load_or_train_classifier,
    make_feature_extractor,
    resolve_feature_kind,
)


class TinyDataModule:
    """The bits of the data-module contract the classifier uses; 16 x 16 images on [-1, 1]."""

    name = "tiny"
    image_shape = (1, 16, 16)
    data_range = (-1.0, 1.0)
    num_classes = 2

    def split_tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        labels = torch.arange(64) % 2
        images = torch.rand(64, 1, 16, 16, generator=generator) * 0.5 - 1
        images[labels == 1, :, :8] += 1.0  # class 1: bright top half
        return images, labels


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache and no network for the Inception weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case something called set_dir()
    attempts = []

    def no_network(path):
        attempts.append(path)
        raise URLError("no network in the test")

    monkeypatch.setattr(features, "_download_inception_weights", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints", attempts


# --------------------------------------------------------------------------- classifier


def test_classifier_reaches_95_percent_on_digits_and_is_cached(tmp_path, monkeypatch):
    from spikelatent.data import make_datamodule

    datamodule = make_datamodule("digits")
    model = load_or_train_classifier(datamodule, directory=tmp_path, progress=False)
    weights = tmp_path / "digits-classifier.pt"
    sidecar = json.loads(weights.with_suffix(".json").read_text())

    # Independent check: a fresh network loaded from the file, scored with scikit-learn.
    fresh = ClassifierFeatures(1, 10)
    fresh.load_state_dict(torch.load(weights, weights_only=True))
    fresh.eval()
    images, labels = datamodule.split_tensors("test")
    with torch.no_grad():
        predictions = fresh.logits(images).argmax(1).numpy()
    accuracy = accuracy_score(labels.numpy(), predictions)
    assert accuracy > 0.95
    assert sidecar["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert sidecar["n_test"] == len(labels) and sidecar["dataset"] == "digits"
    assert model.description == f"classifier (digits, test acc {accuracy:.3f})"
    assert not list(tmp_path.glob(".*.partial*"))  # written atomically, no leftovers

    # Features are the 128-d penultimate layer, scaled to RMS 1 on the training images.
    train_images, _ = datamodule.split_tensors("train")
    with torch.no_grad():
        train_features = model(train_images)
    assert (
        train_features.shape == (len(train_images), model.num_features) == (len(train_images), 128)
    )
    assert float(train_features.pow(2).mean().sqrt()) == pytest.approx(1.0, rel=1e-4)

    # A second call loads the cache instead of training.
    def no_training(*args, **kwargs):
        raise AssertionError("should have loaded the cached classifier")

    monkeypatch.setattr(features, "train_classifier", no_training)
    cached = load_or_train_classifier(datamodule, directory=tmp_path)
    assert cached.description == model.description
    with torch.no_grad():
        assert torch.allclose(cached(images), model(images))


def test_classifier_cache_location_follows_spikelatent_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKELATENT_CACHE", str(tmp_path))
    model = make_feature_extractor(
        "classifier", datamodule=TinyDataModule(), progress=False, epochs=2
    )
    assert (tmp_path / "features" / "tiny-classifier.pt").is_file()
    assert (tmp_path / "features" / "tiny-classifier.json").is_file()
    assert model.description.startswith("classifier (tiny, test acc ")
    # [-1, 1] data were mapped to [0, 1] for training: the two classes are separable
    assert (
        json.loads((tmp_path / "features" / "tiny-classifier.json").read_text())["test_accuracy"]
        > 0.9
    )


def test_corrupt_or_mismatched_cache_is_rebuilt(tmp_path):
    weights = tmp_path / "tiny-classifier.pt"
    weights.write_bytes(b"not a checkpoint")
    weights.with_suffix(".json").write_text("{}")
    model = load_or_train_classifier(TinyDataModule(), directory=tmp_path, epochs=1, progress=False)
    assert isinstance(model, ClassifierFeatures)
    info = json.loads(weights.with_suffix(".json").read_text())
    assert info["image_shape"] == [1, 16, 16]
    torch.load(weights, weights_only=True)  # now a real state dict

    class Wider(TinyDataModule):
        num_classes = 3

    rebuilt = load_or_train_classifier(Wider(), directory=tmp_path, epochs=1, progress=False)
    assert rebuilt.head.out_features == 3


def test_classifier_needs_labels_and_a_datamodule():
    class Unlabelled(TinyDataModule):
        num_classes = 1

    with pytest.raises(SpikelatentError, match="2 classes"):
        load_or_train_classifier(Unlabelled(), directory=None, epochs=1)
    with pytest.raises(SpikelatentError, match="needs the dataset"):
        make_feature_extractor("classifier")
    with pytest.raises(SpikelatentError, match="--features must be one of"):
        resolve_feature_kind("vgg")


# --------------------------------------------------------------------------- inception


def test_missing_inception_weights_is_a_one_line_error_naming_the_file(empty_torch_home):
    checkpoints, attempts = empty_torch_home
    with pytest.raises(SpikelatentError) as error:
        InceptionFeatures()
    message = str(error.value)
    assert "\n" not in message
    assert INCEPTION_WEIGHTS_FILENAME in message and str(checkpoints) in message
    assert "--features classifier" in message
    assert attempts == [checkpoints / INCEPTION_WEIGHTS_FILENAME]  # download was tried once

    with pytest.raises(SpikelatentError) as error:
        resolve_feature_kind("auto")
    assert INCEPTION_WEIGHTS_FILENAME in str(error.value) and str(checkpoints) in str(error.value)


@pytest.mark.parametrize("choice", ["inception", "auto"])
def test_cli_evaluate_exits_2_when_inception_weights_are_missing(
    empty_torch_home, tmp_path, capsys, choice
):
    # A folder that looks like a run (it has a checkpoint), so the missing weights are what fails.
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    status = main(["evaluate", str(run_dir), "--features", choice])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spikelatent evaluate: error:") and "\n" not in err
    assert INCEPTION_WEIGHTS_FILENAME in err


def _write_random_inception_weights(path: Path, monkeypatch) -> None:
    """A randomly initialised network saved where the real weights go (same keys and shapes)."""
    from torch_fidelity import feature_extractor_inceptionv3 as fidelity

    with monkeypatch.context() as patch:
        patch.setattr(fidelity, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patch.setattr(
            fidelity.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None
        )
        torch.manual_seed(0)
        network = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)


def test_inception_extractor_with_weights_in_the_hub_cache(empty_torch_home, monkeypatch):
    pytest.importorskip("torch_fidelity")
    checkpoints, attempts = empty_torch_home
    _write_random_inception_weights(checkpoints / INCEPTION_WEIGHTS_FILENAME, monkeypatch)
    assert resolve_feature_kind("auto") == "inception"

    extractor = make_feature_extractor("auto")
    assert attempts == []  # found in the cache, nothing downloaded
    assert extractor.num_features == 2048 and not extractor.train().training

    grey = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = extractor(grey)
    # Independent path: torchmetrics' network fed uint8 RGB built by hand.
    from torchmetrics.image.fid import NoTrainInceptionV3

    reference = NoTrainInceptionV3(
        name="inception-v3-compat",
        features_list=["2048"],
        feature_extractor_weights_path=str(checkpoints / INCEPTION_WEIGHTS_FILENAME),
    )
    rgb = np.repeat(np.round(grey.numpy() * 255).astype(np.uint8), 3, axis=1)
    with torch.no_grad():
        expected = reference(torch.from_numpy(rgb))
    assert ours.shape == (3, 2048)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_corrupt_inception_weights_are_reported(empty_torch_home):
    checkpoints, _ = empty_torch_home
    checkpoints.mkdir(parents=True)
    (checkpoints / INCEPTION_WEIGHTS_FILENAME).write_bytes(b"truncated")
    with pytest.raises(SpikelatentError, match="cannot load the Inception weights"):
        InceptionFeatures()

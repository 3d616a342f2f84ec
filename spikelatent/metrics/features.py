"""Feature extractors for FID and KID, pluggable into torchmetrics as ``feature=`` modules.

Both extractors take float images ``(batch, C, H, W)`` on [0, 1] and return ``(batch, num_features)``;
they expose ``num_features`` (what torchmetrics reads instead of probing with a 299 x 299 image) and
``description`` (recorded next to every FID/KID number in ``metrics.json``).

- ``inception``: the standard FID network, torch-fidelity's InceptionV3 (TF-2015 weights, 2048-d
  pool3 features) as wrapped by torchmetrics. Its weights file must be in the torch hub cache
  (``$TORCH_HOME/hub/checkpoints``); without network access it has to be placed there by hand.
- ``classifier``: a small CNN trained on the dataset's training split (fully offline), features =
  its 128-d penultimate layer. Cached per dataset under ``$SPIKELATENT_CACHE/features`` (default
  ``platformdirs.user_cache_dir("spikelatent")``), test accuracy in a JSON sidecar.

Numbers from different extractors are not comparable; the Inception numbers are comparable with
the paper's Table 1 only in kind (the paper's preprocessing is not specified).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import platformdirs
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.functional.classification import multiclass_accuracy
from tqdm.auto import tqdm

from spikelatent import __version__
from spikelatent.errors import SpikelatentError
from spikelatent.io import atomic_path, write_json_atomic
from spikelatent.metrics.reconstruction import to_unit_range

FEATURE_KINDS = ("inception", "classifier")

INCEPTION_WEIGHTS_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    + INCEPTION_WEIGHTS_FILENAME
)
INCEPTION_NUM_FEATURES = 2048

CLASSIFIER_NUM_FEATURES = 128
CLASSIFIER_MAX_EPOCHS = 10
CLASSIFIER_TARGET_STEPS_IMAGES = 15000  # about this many training images seen, 2 to 10 epochs
CLASSIFIER_FORMAT_VERSION = 3


# --------------------------------------------------------------------------- cache locations


def cache_dir() -> Path:
    """spikelatent's cache: ``$SPIKELATENT_CACHE`` if set, else the platform's user cache dir."""
    override = os.environ.get("SPIKELATENT_CACHE")
    return Path(override) if override else Path(platformdirs.user_cache_dir("spikelatent"))


def classifier_path(dataset: str, directory: str | os.PathLike | None = None) -> Path:
    """Where the ``classifier`` extractor of ``dataset`` is cached (weights; sidecar ``.json``)."""
    base = Path(directory) if directory is not None else cache_dir() / "features"
    return base / f"{dataset}-classifier.pt"


def inception_weights_path() -> Path:
    """Where torch-fidelity / torchmetrics look for the FID Inception weights (torch hub cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILENAME


def inception_weights_available() -> bool:
    return inception_weights_path().is_file()


def _download_inception_weights(path: Path) -> None:
    """Fetch the weights into ``path`` (the file appears only once complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(INCEPTION_WEIGHTS_URL, str(path), progress=False)


def ensure_inception_weights(download: bool = True) -> Path:
    """Return the path of the Inception weights, downloading them once if allowed and absent.

    Raises a one-line :class:`SpikelatentError` naming the file and the folder to put it in when
    the file is absent and cannot be downloaded. There is no fallback to another extractor.
    """
    path = inception_weights_path()
    if path.is_file():
        return path
    reason = "downloading is disabled"
    if download:
        try:
            _download_inception_weights(path)
        except Exception as error:  # no network, proxy, HTTP error: all mean "not available"
            reason = f"download failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        else:
            if path.is_file():
                return path
            reason = "download produced no file"
    raise SpikelatentError(
        f"FID Inception weights {INCEPTION_WEIGHTS_FILENAME} not found in {path.parent} ({reason}); "
        f"copy the file (from {INCEPTION_WEIGHTS_URL}) into that directory, "
        f"or use --features classifier"
    )


# --------------------------------------------------------------------------- image preparation


def _check_unit_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise SpikelatentError("feature extractors take images of shape (batch, C, H, W)")
    if not images.is_floating_point():
        raise SpikelatentError(
            f"feature extractors take float images on [0, 1]; got dtype {images.dtype}"
        )


def _three_channels(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 3:
        return images
    if images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    raise SpikelatentError(f"images must have 1 or 3 channels; got {images.shape[1]}")


# --------------------------------------------------------------------------- Inception


class InceptionFeatures(nn.Module):
    """torch-fidelity's FID InceptionV3 (pool3, 2048-d) through torchmetrics' ``NoTrainInceptionV3``.

    Input: float images ``(batch, 1 or 3, H, W)`` on [0, 1]; grayscale is repeated to RGB and the
    images are quantised to uint8 (what the network expects); the network itself resizes to
    299 x 299 (bilinear, antialiased) and normalises. Output ``(batch, 2048)``.
    """

    num_features = INCEPTION_NUM_FEATURES

    def __init__(self, download: bool = True) -> None:
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
            from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE
        except ImportError:  # pragma: no cover - torchmetrics is a hard dependency
            _TORCH_FIDELITY_AVAILABLE = False
        if not _TORCH_FIDELITY_AVAILABLE:
            raise SpikelatentError(
                "--features inception needs torch-fidelity: pip install torch-fidelity "
                "(or torchmetrics[image]), or use --features classifier"
            )
        weights = ensure_inception_weights(download=download)
        try:
            self.inception = NoTrainInceptionV3(
                name="inception-v3-compat",
                features_list=[str(INCEPTION_NUM_FEATURES)],
                feature_extractor_weights_path=str(weights),
            )
        except Exception as error:
            raise SpikelatentError(
                f"cannot load the Inception weights {weights} ({type(error).__name__}); "
                f"delete the file and copy a good one from {INCEPTION_WEIGHTS_URL}"
            ) from None
        self.description = "inception (torch-fidelity InceptionV3 pool3, 2048-d)"

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)  # a fixed, pretrained network: never in training mode

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_unit_images(images)
        quantised = (_three_channels(images).clamp(0, 1) * 255).round().to(torch.uint8)
        return self.inception(quantised)


# --------------------------------------------------------------------------- classifier


class ClassifierFeatures(nn.Module):
    """A small CNN classifier whose penultimate layer is the feature space for FID/KID.

    ``forward(images)`` → ``(batch, 128)`` features (post-ReLU, times ``feature_scale``); ``logits(images)`` →
    ``(batch, num_classes)``. Images: float ``(batch, C, H, W)`` on [0, 1], any H, W >= 4.
    """

    num_features = CLASSIFIER_NUM_FEATURES

    def __init__(self, in_channels: int, num_classes: int, description: str = "classifier") -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        # Strided convolutions keep it cheap on a CPU (seconds per epoch for the digits set).
        self.trunk = nn.Sequential(
            nn.Conv2d(in_channels, 16, kernel_size=5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            # a fixed 4 x 4 grid so one network serves 16, 28, 32 and 64 pixel images
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, CLASSIFIER_NUM_FEATURES),
            nn.ReLU(),
        )
        self.head = nn.Linear(CLASSIFIER_NUM_FEATURES, num_classes)
        # Set after training so the features' RMS over the training images is 1: keeps FID and
        # KID (whose cubic kernel is sensitive to scale) in a readable range. The head sees the
        # unscaled features.
        self.register_buffer("feature_scale", torch.tensor(1.0))
        self.description = description

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_unit_images(images)
        if images.shape[1] != self.in_channels:
            raise SpikelatentError(
                f"the classifier extractor was trained on {self.in_channels}-channel images; "
                f"got {images.shape[1]} channels"
            )
        return self.trunk(images) * self.feature_scale

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward(images) / self.feature_scale)

    @torch.no_grad()
    def calibrate_scale(self, images: torch.Tensor, batch_size: int = 1000) -> None:
        """Set ``feature_scale`` so the features of ``images`` (on [0, 1]) have RMS 1."""
        self.feature_scale.fill_(1.0)
        device = self.feature_scale.device
        squares = torch.cat(
            [
                self.trunk(images[start : start + batch_size].to(device)).pow(2).flatten()
                for start in range(0, len(images), batch_size)
            ]
        )
        rms = float(squares.mean().sqrt())
        if rms > 0:
            self.feature_scale.fill_(1.0 / rms)


@torch.no_grad()
def classifier_accuracy(
    model: ClassifierFeatures, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> float:
    """Top-1 accuracy on images ``(N, C, H, W)`` on [0, 1] with labels ``(N,)``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    predictions = torch.cat(
        [
            model.logits(images[start : start + batch_size].to(device)).argmax(dim=1).cpu()
            for start in range(0, len(images), batch_size)
        ]
    )
    model.train(was_training)
    return float(
        multiclass_accuracy(
            predictions, labels.cpu(), num_classes=model.num_classes, average="micro"
        )
    )


def default_classifier_epochs(n_train: int) -> int:
    """2 to 10 epochs, about 15,000 training images seen (10 for the digits set, 2 for MNIST)."""
    return max(2, min(CLASSIFIER_MAX_EPOCHS, -(-CLASSIFIER_TARGET_STEPS_IMAGES // max(n_train, 1))))


def train_classifier(
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    epochs: int | None = None,
    batch_size: int = 32,
    lr: float = 5e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
) -> tuple[ClassifierFeatures, float]:
    """Train the feature classifier with Adam and cross-entropy; return it (eval mode) and its test accuracy.

    Images are float ``(N, C, H, W)`` on [0, 1], labels int64 ``(N,)`` in ``[0, num_classes)``.
    ``epochs=None`` picks 2-10 epochs (about 15,000 images seen); the learning rate follows a
    one-cycle schedule peaking at ``lr``. ``progress=None`` shows a bar only on a terminal.
    """
    if num_classes < 2:
        raise SpikelatentError(
            f"the classifier extractor needs a labelled dataset with >= 2 classes; got {num_classes} "
            "(pass --features none to evaluate the reconstructions only)"
        )
    if len(train_images) == 0 or len(test_images) == 0:
        raise SpikelatentError("the classifier extractor needs non-empty train and test splits")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ClassifierFeatures(train_images.shape[1], num_classes).to(device)
    if epochs is None:
        epochs = default_classifier_epochs(len(train_images))
    loader = DataLoader(
        TensorDataset(train_images, train_labels),
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    # one-cycle: fast, and the final epochs at a low rate make the accuracy stable from seed to seed
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * len(loader)
    )
    model.train()
    disable = None if progress is None else not progress
    for _ in tqdm(range(epochs), desc="training feature classifier", unit="epoch", disable=disable):
        for images, labels in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model.logits(images.to(device)), labels.to(device))
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    model.calibrate_scale(train_images)
    return model, classifier_accuracy(model, test_images, test_labels)


def _save_torch_atomic(obj: Any, path: Path) -> None:
    with atomic_path(path) as temporary:
        torch.save(obj, temporary)


def _describe_classifier(dataset: str, accuracy: float) -> str:
    return f"classifier ({dataset}, test acc {accuracy:.3f})"


def _load_cached_classifier(
    weights_path: Path, image_shape: tuple[int, ...], num_classes: int
) -> ClassifierFeatures | None:
    """The cached classifier if it exists and matches the data; None means: train a new one."""
    sidecar = weights_path.with_suffix(".json")
    if not (weights_path.is_file() and sidecar.is_file()):
        return None
    try:
        info = json.loads(sidecar.read_text())
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception:
        return None  # a corrupt cache entry is rebuilt, not trusted
    if (
        info.get("format_version") != CLASSIFIER_FORMAT_VERSION
        or tuple(info.get("image_shape", ())) != tuple(image_shape)
        or info.get("num_classes") != num_classes
    ):
        return None
    model = ClassifierFeatures(image_shape[0], num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        return None
    model.description = _describe_classifier(info["dataset"], float(info["test_accuracy"]))
    model.test_accuracy = float(info["test_accuracy"])
    return model.eval()


def load_or_train_classifier(
    datamodule: Any,
    directory: str | os.PathLike | None = None,
    retrain: bool = False,
    epochs: int | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> ClassifierFeatures:
    """The ``classifier`` extractor for a data module: from the cache, else trained and cached.

    ``datamodule`` follows the ``spikelatent.data`` contract (``name``, ``image_shape``,
    ``data_range``, ``num_classes``, ``split_tensors(split)``). Training uses the ``train`` split
    and the recorded accuracy the ``test`` split. The weights are written atomically to
    ``<cache>/features/<dataset>-classifier.pt`` with a sidecar ``.json`` (accuracy, shapes).
    """
    name = str(datamodule.name)
    image_shape = tuple(int(size) for size in datamodule.image_shape)
    num_classes = int(datamodule.num_classes)
    weights_path = classifier_path(name, directory)
    if not retrain:
        cached = _load_cached_classifier(weights_path, image_shape, num_classes)
        if cached is not None:
            return cached
    train_images, train_labels = datamodule.split_tensors("train")
    test_images, test_labels = datamodule.split_tensors("test")
    data_range = tuple(datamodule.data_range)
    model, accuracy = train_classifier(
        to_unit_range(train_images, data_range),
        train_labels,
        to_unit_range(test_images, data_range),
        test_labels,
        num_classes=num_classes,
        epochs=epochs,
        seed=seed,
        progress=progress,
    )
    _save_torch_atomic(model.state_dict(), weights_path)
    write_json_atomic(
        weights_path.with_suffix(".json"),
        {
            "format_version": CLASSIFIER_FORMAT_VERSION,
            "dataset": name,
            "image_shape": list(image_shape),
            "num_classes": num_classes,
            "num_features": CLASSIFIER_NUM_FEATURES,
            "test_accuracy": accuracy,
            "n_train": len(train_images),
            "n_test": len(test_images),
            "epochs": epochs
            if epochs is not None
            else default_classifier_epochs(len(train_images)),
            "seed": seed,
            "optimizer": "Adam",
            "spikelatent_version": __version__,
            "torch_version": torch.__version__,
        },
    )
    model.description = _describe_classifier(name, accuracy)
    model.test_accuracy = accuracy
    return model


# --------------------------------------------------------------------------- selection


def resolve_feature_kind(kind: str) -> str:
    """Turn ``auto`` into ``inception`` when its weights are present; otherwise an error, never a fallback."""
    if kind == "auto":
        if inception_weights_available():
            return "inception"
        raise SpikelatentError(
            f"--features auto: the FID Inception weights {INCEPTION_WEIGHTS_FILENAME} are not in "
            f"{inception_weights_path().parent}; copy them there or pass --features classifier"
        )
    if kind not in FEATURE_KINDS:
        raise SpikelatentError(
            f"--features must be one of auto, {', '.join(FEATURE_KINDS)}; got {kind!r}"
        )
    return kind


def make_feature_extractor(
    kind: str, datamodule: Any = None, progress: bool | None = None, **options: Any
) -> nn.Module:
    """Build the extractor ``kind`` (``auto``, ``inception`` or ``classifier``) in eval mode.

    ``classifier`` needs the ``datamodule`` (trained or loaded from the cache); ``options`` go to
    :func:`load_or_train_classifier` or :class:`InceptionFeatures`.
    """
    kind = resolve_feature_kind(kind)
    if kind == "inception":
        return InceptionFeatures(**options).eval()
    if datamodule is None:
        raise SpikelatentError("--features classifier needs the dataset to train the classifier on")
    return load_or_train_classifier(datamodule, progress=progress, **options).eval()

"""The built-in datasets with the paper's preprocessing (App. B.2.1).

==============  ===========  =========  ===============================================
name            image_shape  range      source
==============  ===========  =========  ===============================================
mnist           (1, 28, 28)  [0, 1]     torchvision.datasets.MNIST, ToTensor
fashion-mnist   (1, 28, 28)  [0, 1]     torchvision.datasets.FashionMNIST, ToTensor
cifar16         (3, 16, 16)  [-1, 1]    torchvision.datasets.CIFAR10 resized to 16x16
celeba64        (3, 64, 64)  [-1, 1]    torchvision.datasets.CelebA, resize + crop 64
digits          (1, 28, 28)  [0, 1]     sklearn.datasets.load_digits, 8x8 -> 28x28
synthetic       (1, 28, 28)  [0, 1]     class-dependent Gaussian blobs (tests)
==============  ===========  =========  ===============================================
"""

from __future__ import annotations

import gzip
import math
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import Dataset
from torchvision.transforms import v2

from spikelatent.data.base import ImageDataModule, ImageTensorDataset, _positive_int
from spikelatent.data.locate import FILE_LAYOUTS, one_line
from spikelatent.errors import SpikelatentError

# Errors torchvision / gzip / pickle raise on truncated or malformed files.
_READ_ERRORS = (OSError, RuntimeError, ValueError, TypeError, EOFError, KeyError, IndexError)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        target.symlink_to(source.resolve())
    except OSError:  # file systems without symlinks
        shutil.copyfile(source, target)


def _unreadable(name: str, folder: Path, error: BaseException) -> SpikelatentError:
    return SpikelatentError(
        one_line(
            f"{name}: could not read the files in {folder} ({type(error).__name__}: {error}); "
            "replace them with intact copies (e.g. delete them and run with --download)"
        )
    )


# ============================================================================ MNIST-like
class _IdxDataModule(ImageDataModule):
    """MNIST-format (IDX) datasets, read by torchvision's own MNIST code and converted once.

    The four IDX files may be gzipped (as distributed, or as Debian ships them) or not: they are
    staged, decompressed where needed, in a temporary torchvision-layout folder and read by the
    torchvision class there; the result is one float32 tensor in [0, 1] (``ToTensor``'s scaling).
    """

    image_shape = (1, 28, 28)
    data_range = (0.0, 1.0)
    num_classes = 10
    torchvision_class: type[torchvision.datasets.MNIST] = torchvision.datasets.MNIST

    def _load_pools(self, folder: Path | None) -> tuple[Dataset, Dataset | None]:
        assert folder is not None
        try:
            with tempfile.TemporaryDirectory(prefix="spikelatent-idx-") as staging:
                raw = Path(staging) / self.torchvision_class.__name__ / "raw"
                raw.mkdir(parents=True)
                for file_name in FILE_LAYOUTS[self.name].required:
                    plain = folder / file_name
                    if plain.exists():
                        _link_or_copy(plain, raw / file_name)
                    else:
                        with gzip.open(folder / f"{file_name}.gz", "rb") as source:
                            with open(raw / file_name, "wb") as target:
                                shutil.copyfileobj(source, target)
                pools = []
                for train in (True, False):
                    dataset = self.torchvision_class(root=staging, train=train, download=False)
                    images = dataset.data.unsqueeze(1).to(torch.float32).div_(255.0)
                    pools.append(ImageTensorDataset(images, dataset.targets))
        except _READ_ERRORS as error:
            raise _unreadable(self.name, folder, error) from error
        for pool in pools:
            if tuple(pool.images.shape[1:]) != self.image_shape:
                raise SpikelatentError(
                    f"{self.name}: images in {folder} are {tuple(pool.images.shape[2:])}, "
                    f"expected 28x28; these are not {self.name} files"
                )
        return pools[0], pools[1]

    def _download(self, root: Path) -> None:
        self.torchvision_class(root=str(root), train=True, download=True)


class MNISTDataModule(_IdxDataModule):
    """MNIST handwritten digits: 60,000 train / 10,000 test, 28x28 grey in [0, 1]."""

    name = "mnist"
    class_names = [str(digit) for digit in range(10)]
    source = "MNIST (LeCun, Cortes & Burges) via torchvision.datasets.MNIST"
    torchvision_class = torchvision.datasets.MNIST


class FashionMNISTDataModule(_IdxDataModule):
    """Fashion-MNIST (Zalando): 60,000 train / 10,000 test, 28x28 grey in [0, 1]."""

    name = "fashion-mnist"
    class_names = list(torchvision.datasets.FashionMNIST.classes)
    source = "Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) via torchvision.datasets.FashionMNIST"
    torchvision_class = torchvision.datasets.FashionMNIST


# ============================================================================ CIFAR 16x16
def cifar16_transform(hflip: bool = False) -> v2.Compose:
    """CIFAR-10 → 16x16 preprocessing: resize (antialiased bilinear), scale to [0, 1], then
    normalise with mean = std = 0.5 per channel to [-1, 1]; ``hflip`` adds a random flip.

    Accepts a PIL image, a uint8 tensor ``(3, H, W)`` or a batch ``(N, 3, H, W)``; returns float32.
    """
    steps: list[Any] = [
        v2.ToImage(),
        v2.Resize((16, 16), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.ToPureTensor())
    return v2.Compose(steps)


class CIFAR16DataModule(ImageDataModule):
    """CIFAR-10 downsampled to 16x16 RGB in [-1, 1]; 50,000 train / 10,000 test.

    Every image is resized once at load (:func:`cifar16_transform` on uint8 batches) and kept
    as one float32 tensor; ``hflip=True`` mirrors a random half of each training batch.
    """

    name = "cifar16"
    image_shape = (3, 16, 16)
    data_range = (-1.0, 1.0)
    num_classes = 10
    class_names = [
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ]  # fmt: skip
    source = "CIFAR-10 (Krizhevsky 2009) via torchvision.datasets.CIFAR10, resized to 16x16"
    # Raw stimuli are resized as float images (training resized uint8 batches: <= 1/255 apart).
    PREPROCESSING = {"image_size": [16, 16]}
    OPTIONS = {"hflip": "randomly mirror training images left-right (default False)"}

    def __init__(self, *, hflip: bool = False, **common: Any) -> None:
        super().__init__(**common)
        self.hflip = bool(hflip)

    def _load_pools(self, folder: Path | None) -> tuple[Dataset, Dataset | None]:
        assert folder is not None
        base = torchvision.datasets.CIFAR10.base_folder
        transform = cifar16_transform(hflip=False)
        try:
            with tempfile.TemporaryDirectory(prefix="spikelatent-cifar-") as staging:
                root = folder.parent
                if folder.name != base:  # stage <tmp>/cifar-10-batches-py -> folder
                    root = Path(staging)
                    (root / base).symlink_to(folder.resolve(), target_is_directory=True)
                pools = []
                for train in (True, False):
                    dataset = torchvision.datasets.CIFAR10(root=str(root), train=train)
                    uint8_images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2)
                    images = torch.cat([transform(chunk) for chunk in uint8_images.split(5000)])
                    pools.append(ImageTensorDataset(images, torch.as_tensor(dataset.targets)))
        except _READ_ERRORS as error:
            raise _unreadable(self.name, folder, error) from error
        return pools[0], pools[1]

    def _download(self, root: Path) -> None:
        torchvision.datasets.CIFAR10(root=str(root), train=True, download=True)


# ============================================================================ CelebA 64x64
def celeba64_transform() -> v2.Compose:
    """CelebA → 64x64 preprocessing: resize the short side to 64, center-crop 64x64, scale to
    [0, 1], normalise (mean = std = 0.5) to [-1, 1]. PIL image or uint8 tensor in, float32 out."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(64, antialias=True),
            v2.CenterCrop(64),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
            v2.ToPureTensor(),
        ]
    )


class _AttributeLabel:
    """CelebA target transform: the 40-attribute 0/1 row → one attribute as an int64 label."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __call__(self, attributes: torch.Tensor) -> torch.Tensor:
        return attributes[self.index].to(torch.int64)


class CelebA64DataModule(ImageDataModule):
    """CelebA aligned faces at 64x64 RGB in [-1, 1]; official train (162,770) / test (19,962).

    Images are decoded lazily per item (the full set would need ~10 GB as float32). The label
    is one binary attribute (``label_attribute``, default ``"Male"``). Validation is carved from
    the official training split like every other dataset; the official "valid" split is unused.
    """

    name = "celeba64"
    image_shape = (3, 64, 64)
    data_range = (-1.0, 1.0)
    num_classes = 2
    class_names = ["not Male", "Male"]
    source = "CelebA (Liu et al. 2015) via torchvision.datasets.CelebA, resize 64 + center crop"
    PREPROCESSING = {"image_size": [64, 64]}
    OPTIONS = {"label_attribute": "CelebA attribute used as the 0/1 label (default 'Male')"}

    def __init__(self, *, label_attribute: str = "Male", **common: Any) -> None:
        super().__init__(**common)
        self.label_attribute = str(label_attribute)
        self.class_names = [f"not {self.label_attribute}", self.label_attribute]

    def _load_pools(self, folder: Path | None) -> tuple[Dataset, Dataset | None]:
        assert folder is not None
        base = torchvision.datasets.CelebA.base_folder
        root = folder.parent
        if folder.name != base:  # images are read lazily: keep the staging folder alive
            staging = Path(tempfile.mkdtemp(prefix="spikelatent-celeba-"))
            weakref.finalize(self, shutil.rmtree, staging, True)
            (staging / base).symlink_to(folder.resolve(), target_is_directory=True)
            root = staging
        try:
            pools = [
                torchvision.datasets.CelebA(
                    root=str(root), split=split, target_type="attr", transform=celeba64_transform()
                )
                for split in ("train", "test")
            ]
        except _READ_ERRORS as error:
            raise _unreadable(self.name, folder, error) from error
        names = [str(name) for name in pools[0].attr_names if str(name)]
        if self.label_attribute not in names:
            raise SpikelatentError(
                f"celeba64: unknown label_attribute {self.label_attribute!r}; "
                f"choose one of {', '.join(names)}"
            )
        for pool in pools:
            pool.target_transform = _AttributeLabel(names.index(self.label_attribute))
        return pools[0], pools[1]

    def _download(self, root: Path) -> None:
        torchvision.datasets.CelebA(root=str(root), split="all", download=True)


# ============================================================================ sklearn digits
class DigitsDataModule(ImageDataModule):
    """scikit-learn's embedded 8x8 handwritten digits (1,797 images, values 0..16).

    Pixels are divided by 16 to [0, 1] and upsampled to ``image_size`` x ``image_size``
    (default 28, so every 28x28 network runs on it) with bilinear interpolation
    (``F.interpolate``, ``align_corners=False``). No files, no network: the default for a
    first run. There is no official test split: ``test_fraction`` (default 0.15 → 270 images)
    is carved with a fixed seed, then ``val_fraction`` of the rest with ``seed``
    (defaults: 1,374 train / 153 val / 270 test).
    """

    name = "digits"
    image_shape = (1, 28, 28)
    data_range = (0.0, 1.0)
    num_classes = 10
    class_names = [str(digit) for digit in range(10)]
    source = "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits)"
    has_official_test = False
    OPTIONS = {
        "image_size": "side of the square output images in pixels (default 28; 8 = original)",
        "test_fraction": "fraction carved as the fixed test split (default 0.15)",
    }

    def __init__(self, *, image_size: int = 28, **common: Any) -> None:
        super().__init__(**common)
        self.image_size = _positive_int(self.name, "image_size", image_size)
        self.image_shape = (1, self.image_size, self.image_size)
        # Raw digits are intensities on [0, 1] (sklearn's 0..16 divided by 16), upsampled.
        self.PREPROCESSING = {"image_size": None if self.image_size == 8
                              else [self.image_size, self.image_size]}

    def _load_pools(self, folder: Path | None) -> tuple[Dataset, Dataset | None]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        if self.image_size != 8:
            images = F.interpolate(
                images, size=(self.image_size, self.image_size), mode="bilinear",
                align_corners=False,
            )  # fmt: skip
        return ImageTensorDataset(images, torch.as_tensor(digits.target)), None


# ============================================================================ synthetic
class SyntheticDataModule(ImageDataModule):
    """Small deterministic images for tests: one Gaussian blob per image, in [0, 1].

    Class ``k`` of ``num_classes`` puts its blob at angle ``2 pi k / num_classes`` on a circle
    around the image centre (radius 0.3 of the side), with a class-specific colour across
    channels; each image jitters the centre (s.d. 0.04 of the side) and amplitude (0.7..1) and
    adds Gaussian pixel noise (``noise``), then clips to [0, 1]. Labels are balanced. Generated
    from ``data_seed`` (default 0); the fixed test split and ``val_fraction`` work as for digits.
    """

    name = "synthetic"
    image_shape = (1, 28, 28)
    data_range = (0.0, 1.0)
    num_classes = 10
    class_names = [f"class {k}" for k in range(10)]
    source = "spikelatent synthetic class-dependent Gaussian blobs"
    has_official_test = False
    OPTIONS = {
        "n": "number of images (default 512)",
        "image_shape": "(C, H, W) of the images (default (1, 28, 28))",
        "num_classes": "number of classes (default 10)",
        "data_seed": "seed of the generated images (default 0)",
        "noise": "standard deviation of the pixel noise (default 0.05)",
        "test_fraction": "fraction carved as the fixed test split (default 0.15)",
    }

    def __init__(
        self,
        *,
        n: int = 512,
        image_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        data_seed: int = 0,
        noise: float = 0.05,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.n = _positive_int(self.name, "n", n)
        try:
            shape = tuple(int(size) for size in image_shape)
        except (TypeError, ValueError):
            shape = ()
        if len(shape) != 3 or min(shape) < 1:
            raise SpikelatentError(
                f"synthetic: image_shape must be three positive integers (C, H, W), got {image_shape!r}"
            )
        self.image_shape = shape  # type: ignore[assignment]
        self.num_classes = _positive_int(self.name, "num_classes", num_classes)
        if self.num_classes > self.n:
            raise SpikelatentError(f"synthetic: num_classes ({num_classes}) exceeds n ({n})")
        self.class_names = [f"class {k}" for k in range(self.num_classes)]
        self.data_seed = int(data_seed)
        self.noise = float(noise)
        if not math.isfinite(self.noise) or self.noise < 0:
            raise SpikelatentError(f"synthetic: noise must be a finite number >= 0, got {noise!r}")

    def _load_pools(self, folder: Path | None) -> tuple[Dataset, Dataset | None]:
        return ImageTensorDataset(*self.generate()), None

    def generate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All ``n`` images ``(n, C, H, W)`` float32 in [0, 1] and labels ``(n,)`` int64."""
        generator = torch.Generator().manual_seed(self.data_seed)
        channels, height, width = self.image_shape
        n, k = self.n, self.num_classes
        labels = (torch.arange(n) % k)[torch.randperm(n, generator=generator)]
        angle = 2 * math.pi * labels.to(torch.float64) / k
        side = min(height, width)
        centre_y = (height - 1) / 2 + 0.3 * height * torch.sin(angle)
        centre_x = (width - 1) / 2 + 0.3 * width * torch.cos(angle)
        centre_y = centre_y + 0.04 * side * torch.randn(n, generator=generator, dtype=torch.float64)
        centre_x = centre_x + 0.04 * side * torch.randn(n, generator=generator, dtype=torch.float64)
        amplitude = 0.7 + 0.3 * torch.rand(n, generator=generator, dtype=torch.float64)
        sigma = max(0.12 * side, 0.5)
        rows = torch.arange(height, dtype=torch.float64)[None, :, None]
        cols = torch.arange(width, dtype=torch.float64)[None, None, :]
        squared = (rows - centre_y[:, None, None]) ** 2 + (cols - centre_x[:, None, None]) ** 2
        blob = amplitude[:, None, None] * torch.exp(-squared / (2 * sigma**2))  # (n, H, W)
        # Colour: channel c weighted by 0.55 + 0.45 cos(2 pi (k/K + c/C)); grey images weight 1.
        if channels == 1:
            colour = torch.ones(n, 1, dtype=torch.float64)
        else:
            phase = labels[:, None].to(torch.float64) / k + torch.arange(channels) / channels
            colour = 0.55 + 0.45 * torch.cos(2 * math.pi * phase)
        images = colour[:, :, None, None] * blob[:, None]
        noise = torch.randn(images.shape, generator=generator, dtype=torch.float64)
        images = (images + self.noise * noise).clamp_(0.0, 1.0)
        return images.to(torch.float32), labels.to(torch.int64)

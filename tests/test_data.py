"""Tests for spikelatent.data: built-in sets (digits, synthetic), the file lookup order, the
one-line errors and the preprocessing transforms. No real dataset is needed: MNIST-format files
are faked with numpy in tmp_path."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from spikelatent.data import (
    DATASETS,
    SYSTEM_DIRS,
    MNISTDataModule,
    celeba64_transform,
    cifar16_transform,
    find_dataset_root,
    make_datamodule,
)
from spikelatent.data.base import BatchCollate
from spikelatent.errors import DatasetNotFoundError, SpikelatentError

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


# ----------------------------------------------------------------------------- helpers
def write_fake_idx(folder: Path, pixel: int, n_train: int = 20, n_test: int = 4, gz: bool = True,
                   files: tuple[str, ...] = IDX_FILES) -> dict[str, np.ndarray]:  # fmt: skip
    """Write MNIST-format IDX files (big-endian magic 2051/2049, dims, uint8 bytes) whose images
    are all ``pixel`` and whose labels are ``arange(n) % 10``; return the labels written."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = {"train": np.arange(n_train) % 10, "t10k": (np.arange(n_test) + 3) % 10}
    sizes = {"train": n_train, "t10k": n_test}
    for name in files:
        split = name.split("-")[0]
        n = sizes[split]
        if "images" in name:
            payload = (
                struct.pack(">iiii", 2051, n, 28, 28)
                + np.full((n, 28, 28), pixel, np.uint8).tobytes()
            )
        else:
            payload = struct.pack(">ii", 2049, n) + labels[split].astype(np.uint8).tobytes()
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as handle:
                handle.write(payload)
        else:
            (folder / name).write_bytes(payload)
    return labels


@pytest.fixture
def isolated_roots(tmp_path, monkeypatch):
    """Point $SPIKELATENT_DATA, the platform cache and the Debian folder into tmp_path."""
    cache_home = tmp_path / "cache-home"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    monkeypatch.delenv("SPIKELATENT_DATA", raising=False)
    monkeypatch.setitem(SYSTEM_DIRS, "fashion-mnist", [tmp_path / "debian" / "fashion-mnist"])
    return {
        "cache": cache_home / "spikelatent" / "data",  # platformdirs' Linux layout
        "debian": tmp_path / "debian" / "fashion-mnist",
    }


def bilinear_upsample_oracle(image: np.ndarray, size: int) -> np.ndarray:
    """Separable linear interpolation with half-pixel centres (align_corners=False), in numpy:
    output pixel i samples the source at (i + 0.5) * n / size - 0.5, clamped to the edges."""
    n = image.shape[0]
    coords = (np.arange(size) + 0.5) * n / size - 0.5
    rows = np.stack([np.interp(coords, np.arange(n), image[:, j]) for j in range(n)], axis=1)
    return np.stack([np.interp(coords, np.arange(n), rows[i]) for i in range(size)], axis=0)


# ----------------------------------------------------------------------------- digits
def test_digits_shapes_range_and_documented_split_sizes():
    data = make_datamodule("digits", batch_size=64)
    sizes = {}
    for split in ("train", "val", "test"):
        images, labels = data.split_tensors(split)
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        assert images.shape[1:] == (1, 28, 28) == data.image_shape
        assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
        assert set(labels.tolist()) <= set(range(10))
        sizes[split] = len(labels)
    # 1797 images: test round(0.15 * 1797) = 270, val round(0.1 * 1527) = 153, train 1374.
    assert sizes == {"train": 1374, "val": 153, "test": 270}
    assert data.data_range == (0.0, 1.0) and data.num_classes == 10


def test_digits_splits_are_disjoint_complete_and_seeded():
    first = make_datamodule("digits", seed=3)
    first.setup()
    again = make_datamodule("digits", seed=3)
    again.setup()
    other = make_datamodule("digits", seed=4)
    other.setup()
    train, val, test = (set(first.split_indices[s]) for s in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(range(1797))
    assert first.split_indices == again.split_indices
    assert first.split_indices["val"] != other.split_indices["val"]  # val follows the seed
    assert first.split_indices["test"] == other.split_indices["test"]  # test split is fixed


def test_digits_pixels_match_sklearn_digits_rescaled_and_upsampled():
    data = make_datamodule("digits")
    data.setup()
    images, labels = data.split_tensors("test")
    sklearn_digits = load_digits()
    for position in (0, 17, 269):
        index = data.split_indices["test"][position]
        expected = bilinear_upsample_oracle(sklearn_digits.images[index] / 16.0, 28)
        np.testing.assert_allclose(images[position, 0].numpy(), expected, atol=1e-5)
        assert labels[position] == sklearn_digits.target[index]
    native = make_datamodule("digits", image_size=8)
    native_images, _ = native.split_tensors("train")
    first = native.split_indices["train"][0]
    np.testing.assert_allclose(native_images[0, 0].numpy(), sklearn_digits.images[first] / 16.0)


def test_limit_keeps_a_seeded_subset_of_the_training_split():
    full = make_datamodule("digits", seed=1)
    full.setup()
    limited = make_datamodule("digits", seed=1, limit=100)
    limited.setup()
    assert len(limited.split_indices["train"]) == 100
    assert set(limited.split_indices["train"]) <= set(full.split_indices["train"])
    assert limited.split_indices["val"] == full.split_indices["val"]


def test_dataloaders_train_seeded_shuffle_eval_in_order():
    def first_labels(seed):
        data = make_datamodule("digits", batch_size=32, seed=seed)
        return next(iter(data.train_dataloader()))[1]

    assert torch.equal(first_labels(5), first_labels(5))
    data = make_datamodule("digits", batch_size=32, seed=5)
    train_images, _ = data.split_tensors("train")
    batches = list(data.train_dataloader())
    assert all(images.shape[1:] == (1, 28, 28) and labels.dtype == torch.int64
               for images, labels in batches)  # fmt: skip
    epoch = torch.cat([images for images, _ in batches])
    assert len(epoch) == len(train_images)
    # Every training image exactly once: compare sorted per-image sums.
    assert torch.allclose(
        epoch.sum((1, 2, 3)).sort().values, train_images.sum((1, 2, 3)).sort().values
    )
    assert not torch.equal(epoch, train_images)  # shuffled
    val_images, val_labels = data.split_tensors("val")
    val_batches = list(data.val_dataloader())
    assert torch.equal(torch.cat([b[0] for b in val_batches]), val_images)
    assert torch.equal(torch.cat([b[1] for b in val_batches]), val_labels)


def test_describe_splits_is_json_and_matches_indices():
    data = make_datamodule("digits", seed=2)
    summary = json.loads(json.dumps(data.describe_splits()))
    assert summary["dataset"] == "digits" and summary["seed"] == 2
    assert summary["sizes"] == {"train": 1374, "val": 153, "test": 270}
    for split in ("train", "val", "test"):
        assert summary["indices"][split] == data.split_indices[split]
        digest = hashlib.sha256(json.dumps(data.split_indices[split]).encode()).hexdigest()
        assert summary["sha256"][split] == digest


# ----------------------------------------------------------------------------- synthetic
def test_synthetic_is_deterministic_balanced_and_learnable():
    options = {"n": 400, "image_shape": (3, 12, 12), "num_classes": 4}
    data = make_datamodule("synthetic", **options)
    train_x, train_y = data.split_tensors("train")
    test_x, test_y = data.split_tensors("test")
    assert train_x.shape[1:] == (3, 12, 12) and data.image_shape == (3, 12, 12)
    assert float(train_x.min()) >= 0.0 and float(train_x.max()) <= 1.0
    assert data.num_classes == 4 and len(data.class_names) == 4
    all_labels = torch.cat([train_y, data.split_tensors("val")[1], test_y])
    assert torch.bincount(all_labels).tolist() == [100, 100, 100, 100]
    same = make_datamodule("synthetic", **options)
    assert torch.equal(same.split_tensors("train")[0], train_x)
    different = make_datamodule("synthetic", data_seed=1, **options)
    assert not torch.equal(different.split_tensors("train")[0], train_x)
    # Nearest class mean (numpy) separates the classes on held-out images.
    x, y = train_x.flatten(1).numpy(), train_y.numpy()
    means = np.stack([x[y == k].mean(0) for k in range(4)])
    distances = ((test_x.flatten(1).numpy()[:, None, :] - means[None]) ** 2).sum(-1)
    assert (distances.argmin(1) == test_y.numpy()).mean() > 0.9


# ----------------------------------------------------------------------------- lookup order
def test_lookup_order_data_dir_then_env_then_cache(tmp_path, isolated_roots, monkeypatch):
    data_dir, env_root = tmp_path / "given", tmp_path / "env"
    written = write_fake_idx(data_dir, pixel=10)  # files directly in --data-dir
    write_fake_idx(env_root / "mnist", pixel=20)  # data root layout
    write_fake_idx(isolated_roots["cache"] / "MNIST" / "raw", pixel=30, gz=False)  # torchvision's
    monkeypatch.setenv("SPIKELATENT_DATA", str(env_root))

    def first_pixel(**kwargs):
        data = make_datamodule("mnist", **kwargs)
        return float(data.split_tensors("train")[0][0, 0, 0, 0]), data

    pixel, data = first_pixel(data_dir=data_dir)
    assert pixel == pytest.approx(10 / 255) and data.data_source == str(data_dir)
    assert data.split_tensors("test")[0].shape == (4, 1, 28, 28)
    assert data.split_tensors("test")[1].tolist() == written["t10k"].tolist()
    train_labels = data.split_tensors("train")[1].tolist()
    assert train_labels == [int(written["train"][i]) for i in data.split_indices["train"]]
    assert len(data.split_indices["train"]) == 18 and len(data.split_indices["val"]) == 2

    pixel, _ = first_pixel()
    assert pixel == pytest.approx(20 / 255)
    assert find_dataset_root("mnist") == env_root / "mnist"
    monkeypatch.delenv("SPIKELATENT_DATA")
    pixel, _ = first_pixel()
    assert pixel == pytest.approx(30 / 255)
    assert find_dataset_root("mnist") == isolated_roots["cache"] / "MNIST" / "raw"


def test_fashion_mnist_debian_folder_is_tried_last(isolated_roots):
    write_fake_idx(isolated_roots["debian"], pixel=40)
    assert find_dataset_root("fashion-mnist") == isolated_roots["debian"]
    data = make_datamodule("fashion_mnist")  # "_" accepted for "-"
    assert float(data.split_tensors("test")[0].max()) == pytest.approx(40 / 255)
    write_fake_idx(isolated_roots["cache"] / "fashion-mnist", pixel=50)
    assert find_dataset_root("fashion-mnist") == isolated_roots["cache"] / "fashion-mnist"


def test_missing_files_error_is_one_line_and_names_every_path(
    tmp_path, isolated_roots, monkeypatch
):
    env_a, env_b, given = tmp_path / "env-a", tmp_path / "env-b", tmp_path / "given"
    monkeypatch.setenv("SPIKELATENT_DATA", f"{env_a}{os.pathsep}{env_b}")
    write_fake_idx(given / "fashion-mnist", pixel=1, files=IDX_FILES[:2])  # incomplete
    data = make_datamodule("fashion-mnist", data_dir=given)  # nothing is read yet
    with pytest.raises(DatasetNotFoundError) as caught:
        data.setup()
    message = str(caught.value)
    assert isinstance(caught.value, SpikelatentError) and "\n" not in message
    assert message.startswith("fashion-mnist:")
    cache = isolated_roots["cache"]
    expected = [given, given / "fashion-mnist", given / "FashionMNIST" / "raw",
                env_a / "fashion-mnist", env_a / "FashionMNIST" / "raw",
                env_b / "fashion-mnist", env_b / "FashionMNIST" / "raw",
                cache / "fashion-mnist", cache / "FashionMNIST" / "raw",
                isolated_roots["debian"]]  # fmt: skip
    positions = [message.index(f"{path},") if f"{path}," in message else message.index(f"{path};")
                 for path in expected]  # fmt: skip
    assert positions == sorted(positions)  # listed in search order
    assert "lacks t10k-images-idx3-ubyte" in message
    for hint in ("train-images-idx3-ubyte.gz", "--data-dir", "--download", "SPIKELATENT_DATA"):
        assert hint in message


def test_failed_download_falls_through_to_the_not_found_error(
    tmp_path, isolated_roots, monkeypatch
):
    def offline(self, root):  # as torchvision does: the folders first, then the network fails
        (root / "MNIST" / "raw").mkdir(parents=True)
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(MNISTDataModule, "_download", offline)
    data = make_datamodule("mnist", data_dir=tmp_path / "given", download=True)
    with pytest.raises(
        DatasetNotFoundError, match=r"^mnist: no data found in .*download into .* failed"
    ) as caught:
        data.prepare_data()
    message = str(caught.value)
    # --download was given and failed: the advice is the network or the files, not --download.
    assert "--download" not in message and "check the network connection" in message
    assert "\n" not in message
    assert not (tmp_path / "given").exists()  # no empty folder left behind


def test_unreadable_files_give_a_one_line_error(tmp_path, isolated_roots):
    folder = tmp_path / "broken"
    write_fake_idx(folder, pixel=1)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(SpikelatentError, match="could not read") as caught:
        make_datamodule("mnist", data_dir=folder).setup()
    assert "\n" not in str(caught.value)


# ----------------------------------------------------------------------------- names/options
def test_unknown_name_option_and_bad_values_are_user_errors():
    with pytest.raises(SpikelatentError) as caught:
        make_datamodule("imagenet")
    for name in ("mnist", "fashion-mnist", "cifar16", "celeba64", "digits", "synthetic"):
        assert name in str(caught.value)
    with pytest.raises(SpikelatentError, match="hflip"):
        make_datamodule("digits", hflip=True)
    with pytest.raises(SpikelatentError, match="val_fraction"):
        make_datamodule("digits", val_fraction=1.5)
    with pytest.raises(SpikelatentError, match="batch_size"):
        make_datamodule("digits", batch_size=0)
    with pytest.raises(SpikelatentError, match="image_shape"):
        make_datamodule("synthetic", image_shape=(28, 28))
    with pytest.raises(SpikelatentError, match="split"):
        make_datamodule("synthetic", n=40).split_tensors("training")
    assert find_dataset_root("digits") is None


def test_static_attributes_are_known_before_any_file_is_read():
    expected = {
        "mnist": ((1, 28, 28), (0.0, 1.0), 10),
        "fashion-mnist": ((1, 28, 28), (0.0, 1.0), 10),
        "cifar16": ((3, 16, 16), (-1.0, 1.0), 10),
        "celeba64": ((3, 64, 64), (-1.0, 1.0), 2),
        "digits": ((1, 28, 28), (0.0, 1.0), 10),
        "synthetic": ((1, 28, 28), (0.0, 1.0), 10),
    }
    # natural-patches' data range is the observed span of its whitened patches (set by setup)
    assert set(DATASETS) == set(expected) | {"natural-patches"}
    patches = make_datamodule("natural-patches")
    assert (patches.image_shape, patches.num_classes, patches.class_names) == (
        (1, 16, 16), 1, ["unlabelled"])
    for name, (shape, data_range, classes) in expected.items():
        data = make_datamodule(name, data_dir="/nonexistent")
        assert (data.name, data.image_shape, data.data_range, data.num_classes) == (
            name, shape, data_range, classes)  # fmt: skip
        assert len(data.class_names) == classes


# ----------------------------------------------------------------------------- transforms
def test_cifar16_transform_gives_16x16_in_minus1_1():
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    out = cifar16_transform()(Image.fromarray(array))
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32 and type(out) is torch.Tensor
    # Oracle: PIL's own bilinear (antialiased) downsampling, then x / 255 * 2 - 1.
    reference = np.asarray(Image.fromarray(array).resize((16, 16), Image.BILINEAR)) / 255 * 2 - 1
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), reference, atol=1e-6)
    batch = torch.from_numpy(array).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)  # uint8 tensors
    np.testing.assert_allclose(cifar16_transform()(batch)[1].permute(1, 2, 0).numpy(), reference,
                               atol=2 * 2 / 255)  # fmt: skip
    constant = Image.new("RGB", (32, 32), (0, 255, 51))
    value = cifar16_transform()(constant)[:, 5, 7]
    np.testing.assert_allclose(value.numpy(), [-1.0, 1.0, 51 / 255 * 2 - 1], atol=1e-6)
    torch.manual_seed(0)
    flipped = [cifar16_transform(hflip=True)(Image.fromarray(array)) for _ in range(8)]
    assert any(torch.equal(f, out) for f in flipped) and any(
        torch.equal(f, out.flip(-1)) for f in flipped
    )


def test_training_hflip_mirrors_about_half_of_a_batch():
    images = torch.rand(64, 3, 16, 16)
    labels = torch.arange(64)
    torch.manual_seed(0)
    out, out_labels = BatchCollate(hflip=True)([(images[i], labels[i]) for i in range(64)])
    mirrored = [torch.equal(out[i], images[i].flip(-1)) for i in range(64)]
    unchanged = [torch.equal(out[i], images[i]) for i in range(64)]
    assert all(m or u for m, u in zip(mirrored, unchanged, strict=True)) and torch.equal(
        out_labels, labels
    )
    assert 16 <= sum(mirrored) <= 48


def test_celeba64_transform_resizes_crops_and_normalises():
    face = Image.new("RGB", (178, 218), (255, 0, 128))  # CelebA aligned size, portrait
    out = celeba64_transform()(face)
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32
    np.testing.assert_allclose(out[:, 30, 30].numpy(), [1.0, -1.0, 128 / 255 * 2 - 1], atol=1e-6)


# ----------------------------------------------------------------------------- cifar16 / celeba64
# The real files are checksummed by torchvision and cannot be faked, so torchvision's dataset
# classes are replaced by stand-ins serving a few random images; the lookup and our
# preprocessing run for real.
class FakeCIFAR10:
    base_folder = "cifar-10-batches-py"

    def __init__(self, root, train=True, download=False):
        assert (Path(root) / self.base_folder / "data_batch_1").exists()  # staged layout
        rng = np.random.default_rng(0 if train else 1)
        n = 30 if train else 6
        self.data = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)  # like torchvision
        self.targets = list(rng.integers(0, 10, size=n))


def test_cifar16_module_resizes_every_image_like_the_pil_pipeline(tmp_path, monkeypatch):
    import torchvision

    folder = tmp_path / "my-cifar"  # files directly in --data-dir, under another folder name
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch", "batches.meta"):  # fmt: skip
        (folder / name).touch()
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    data = make_datamodule("cifar16", data_dir=folder, hflip=True, val_fraction=0.2)
    images, labels = data.split_tensors("test")
    assert images.shape == (6, 3, 16, 16) and labels.dtype == torch.int64
    raw = np.random.default_rng(1).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    for i in range(6):
        reference = np.asarray(Image.fromarray(raw[i]).resize((16, 16), Image.BILINEAR))
        np.testing.assert_allclose(
            images[i].permute(1, 2, 0).numpy(), reference / 255 * 2 - 1, atol=2 * 2 / 255
        )
    assert data.hflip and data.split_tensors("train")[0].shape == (24, 3, 16, 16)
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0


class FakeCelebA:
    base_folder = "celeba"
    attr_names = ["Smiling", "Male", ""]  # torchvision may append an empty header field

    def __init__(self, root, split="train", target_type="attr", transform=None):
        assert (Path(root) / self.base_folder / "img_align_celeba").is_dir()
        self.n = 5 if split == "train" else 3
        self.transform, self.target_transform = transform, None
        self.attr = torch.tensor([[i % 2, (i + 1) % 2] for i in range(self.n)])

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        image = Image.new("RGB", (178, 218), (10 * index, 0, 0))
        return self.transform(image), self.target_transform(self.attr[index])


def test_celeba64_module_labels_one_attribute(tmp_path, monkeypatch):
    import torchvision

    folder = tmp_path / "CelebA"
    (folder / "img_align_celeba").mkdir(parents=True)
    for name in ("list_attr_celeba.txt", "identity_CelebA.txt", "list_bbox_celeba.txt",
                 "list_landmarks_align_celeba.txt", "list_eval_partition.txt"):  # fmt: skip
        (folder / name).touch()
    monkeypatch.setattr(torchvision.datasets, "CelebA", FakeCelebA)
    data = make_datamodule("celeba64", data_dir=folder, val_fraction=0.2, label_attribute="Male")
    images, labels = data.split_tensors("test")
    assert images.shape == (3, 3, 64, 64) and labels.tolist() == [1, 0, 1]  # column "Male"
    assert data.class_names == ["not Male", "Male"]
    np.testing.assert_allclose(images[2, 0, 0, 0].item(), 20 / 255 * 2 - 1, atol=1e-6)
    with pytest.raises(SpikelatentError, match="Smiling"):
        make_datamodule("celeba64", data_dir=folder, label_attribute="Bald").setup()

"""Image arrays in files as a data module (``make_datamodule("images.npz")``, ``--data x.h5:images``).

* ``.npy``: the images (unlabelled);
* ``.npz``: key ``images``, optional ``labels``, ``test_images``, ``test_labels``;
* ``.h5`` / ``.hdf5``: ``FILE:DATASET`` names the images (read with h5py); the option
  ``labels_key`` names a labels dataset in the same file.

Shapes ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with C = 1, 3 or 4 (alpha dropped):
channels-first when the second axis is 1, 3 or 4, else channels-last. uint8 / uint16 are scaled to
[0, 1]; floats are kept (range ``(0, 1)``, ``(-1, 1)`` or, otherwise, the observed one). Labels
are integers (any values: they are mapped to ``0..K-1`` in sorted order, the names kept).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikelatent.data.images import sha256_of_array
from spikelatent.data.sources import SOURCE_OPTIONS, RawImages, RawSource, SourceDataModule
from spikelatent.errors import SpikelatentError

ARRAY_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")
NPZ_KEYS = ("images", "labels", "test_images", "test_labels")


def split_array_path(path: str) -> tuple[Path, str | None]:
    """``"file.h5:images"`` → ``(Path("file.h5"), "images")``; other paths → ``(path, None)``."""
    text = str(path)
    for suffix in (".h5", ".hdf5"):
        marker = text.lower().rfind(suffix + ":")
        if marker >= 0:
            return Path(text[: marker + len(suffix)]).expanduser(), text[marker + len(suffix) + 1:]
    return Path(text).expanduser(), None


def is_array_path(path: str) -> bool:
    """Whether ``path`` names an array file (by its ending, ``:DATASET`` allowed for HDF5)."""
    file, _ = split_array_path(path)
    return file.suffix.lower() in ARRAY_SUFFIXES


def _check_images(array: Any, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim not in (3, 4):
        raise SpikelatentError(
            f"{what} has shape {array.shape} (rank {array.ndim}); expected (N, H, W), "
            f"(N, H, W, C) or (N, C, H, W)"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise SpikelatentError(f"{what} has dtype {array.dtype}; expected uint8, uint16 or float")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise SpikelatentError(f"{what} is complex; give real images")
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise SpikelatentError(
                f"{what} holds {int(bad.sum())} NaN or infinite value(s), the first at index "
                f"{first}; remove or replace them"
            )
    if array.ndim == 3:
        return array[:, None]
    if array.shape[1] in (1, 3, 4):
        channels_first = array
    elif array.shape[-1] in (1, 3, 4):
        channels_first = np.moveaxis(array, -1, 1)
    else:
        raise SpikelatentError(
            f"{what} has shape {array.shape}: no channel axis of size 1, 3 or 4 second or last; "
            f"give (N, H, W), (N, H, W, C) or (N, C, H, W)"
        )
    return channels_first[:, :3] if channels_first.shape[1] == 4 else channels_first


def _check_labels(labels: Any, count: int, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != count:
        raise SpikelatentError(
            f"{what} has shape {labels.shape}, but there are {count} images; give one label per image"
        )
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.str_)
            or labels.dtype == np.bool_):
        if np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) and \
                np.all(labels == np.round(labels)):
            return labels.astype(np.int64)
        raise SpikelatentError(f"{what} has dtype {labels.dtype}; give integer (or string) labels")
    return labels


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    if array.dtype == np.uint16:
        return torch.from_numpy(array.astype(np.int32)).to(torch.uint16)
    if array.dtype == np.uint8 or array.dtype == np.bool_:
        return torch.from_numpy(np.ascontiguousarray(array))
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


class ArrayDataModule(SourceDataModule):
    """Images from a ``.npy``, ``.npz`` or HDF5 file (see the module doc)."""

    name = "array"
    OPTIONS = {**SOURCE_OPTIONS, "labels_key": "HDF5 only: the dataset holding the labels"}

    def __init__(self, *, path: str | os.PathLike[str], labels_key: str | None = None,
                 **options: Any) -> None:
        self.name = str(path)
        self.source = f"array file {path}"
        super().__init__(**options)
        self.file, self.dataset_key = split_array_path(str(path))
        self.labels_key = labels_key

    def _load_arrays(self) -> dict[str, np.ndarray]:
        file, suffix = self.file, self.file.suffix.lower()
        if not file.is_file():
            raise SpikelatentError(f"no such file: {file}; give a .npy, .npz or .h5 file of images")
        try:
            if suffix == ".npy":
                return {"images": np.load(file, allow_pickle=False)}
            if suffix == ".npz":
                with np.load(file, allow_pickle=False) as archive:
                    if "images" not in archive.files:
                        raise SpikelatentError(
                            f"{file} has no 'images' array (it holds {', '.join(archive.files) or 'none'}); "
                            f"save it with np.savez(FILE, images=..., labels=...)"
                        )
                    return {key: archive[key] for key in NPZ_KEYS if key in archive.files}
            return self._load_hdf5()
        except SpikelatentError:
            raise
        except (OSError, ValueError, EOFError) as error:
            reason = " ".join(str(error).split())[:160]
            raise SpikelatentError(f"cannot read {file} ({type(error).__name__}: {reason})") from None

    def _load_hdf5(self) -> dict[str, np.ndarray]:
        import h5py

        with h5py.File(self.file, "r") as handle:
            names: list[str] = []
            handle.visititems(lambda name, item: names.append(name)
                              if isinstance(item, h5py.Dataset) else None)
            listing = ", ".join(names[:10]) or "none"
            if not self.dataset_key:
                raise SpikelatentError(
                    f"{self.file}: name the HDF5 dataset of images as {self.file}:DATASET "
                    f"(datasets in the file: {listing})"
                )
            arrays = {}
            for role, key in (("images", self.dataset_key), ("labels", self.labels_key)):
                if key is None:
                    continue
                if key not in handle or not isinstance(handle[key], h5py.Dataset):
                    raise SpikelatentError(
                        f"{self.file} has no dataset {key!r} (datasets in the file: {listing})"
                    )
                arrays[role] = handle[key][()]
            return arrays

    def _read(self) -> RawSource:
        arrays = self._load_arrays()
        label_sets = [arrays[k] for k in ("labels", "test_labels") if k in arrays]
        if "test_images" in arrays and ("labels" in arrays) != ("test_labels" in arrays):
            raise SpikelatentError(
                f"{self.file}: give labels for both images and test_images, or for neither"
            )
        classes = None
        if label_sets:
            for key, images_key in (("labels", "images"), ("test_labels", "test_images")):
                if key in arrays:
                    count = len(np.asarray(arrays.get(images_key, [])))
                    arrays[key] = _check_labels(arrays[key], count, f"{self.file} {key}")
            values = np.unique(np.concatenate([np.asarray(arrays[k]) for k in ("labels", "test_labels")
                                               if k in arrays]))
            classes = [str(value) for value in values]
            index = {value: i for i, value in enumerate(values.tolist())}
        pools = []
        digest_parts = []
        for images_key, labels_key in (("images", "labels"), ("test_images", "test_labels")):
            if images_key not in arrays:
                pools.append(None)
                continue
            where = f"{self.file}:{self.dataset_key}" if self.dataset_key else f"{self.file} {images_key}"
            images = _check_images(arrays[images_key], where)
            digest_parts.append(sha256_of_array(images))
            tensor = _to_tensor(images)
            labels = None
            if labels_key in arrays:
                labels = [index[value] for value in np.asarray(arrays[labels_key]).tolist()]
                digest_parts.append(sha256_of_array(np.asarray(arrays[labels_key])))
            names = [f"{images_key}[{i}]" for i in range(len(images))]
            pools.append(RawImages(images=list(tensor), names=names, labels=labels))
        if pools[1] is not None and pools[0].images and pools[1].images and \
                pools[0].images[0].shape[0] != pools[1].images[0].shape[0]:
            raise SpikelatentError(f"{self.file}: images and test_images have different channel counts")
        import hashlib

        record = {"kind": self.file.suffix.lower().lstrip("."), "path": str(self.file.resolve()),
                  "dataset": self.dataset_key,
                  "arrays": {k: list(np.shape(v)) for k, v in arrays.items()},
                  "sha256": hashlib.sha256("".join(digest_parts).encode()).hexdigest()}
        return RawSource(train=pools[0], test=pools[1], class_names=classes, record=record)

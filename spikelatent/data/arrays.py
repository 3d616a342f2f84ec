"""Image arrays in files as a data module (``make_datamodule("images.npz")``, ``--data x.h5:images``).

* ``.npy``: the images (unlabelled);
* ``.npz``: key ``images``, optional ``labels``, ``test_images``, ``test_labels``;
* ``.h5`` / ``.hdf5``: ``FILE:DATASET`` names the images (read with h5py); the option
  ``labels_key`` names a labels dataset in the same file.

Shapes ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with C = 1, 3 or 4 (alpha dropped):
channels-first when the second axis is 1, 3 or 4, else channels-last. uint8 / uint16 are scaled to
[0, 1]; floats are kept (range ``(0, 1)``, ``(-1, 1)`` or, otherwise, the observed one). Labels
are integers (any values: they are mapped to ``0..K-1`` in sorted order, the names kept).

Streamed (:mod:`spikelatent.data.streaming`): a ``.npy`` is memory-mapped and an HDF5 dataset
opened in each worker process, one image read per item; only the labels are loaded. The SHA-256
then covers the file's size, its first and last MiB and the array's dtype and shape (reading
every byte would take longer than training should take to start). ``.npz`` archives are read
whole and cannot stream.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikelatent.data.images import sha256_of_array
from spikelatent.data.sources import (
    SOURCE_OPTIONS,
    LazyPool,
    LazySource,
    RawImages,
    RawSource,
    SourceDataModule,
)
from spikelatent.data.streaming import ImageReader
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


def _check_shape_and_dtype(shape: tuple[int, ...], dtype: np.dtype, what: str) -> str:
    """The layout of an image stack: ``"grey"`` (N, H, W), ``"first"`` (N, C, H, W) or
    ``"last"`` (N, H, W, C); a one-line error for another rank, dtype or channel axis."""
    if len(shape) not in (3, 4):
        raise SpikelatentError(
            f"{what} has shape {shape} (rank {len(shape)}); expected (N, H, W), "
            f"(N, H, W, C) or (N, C, H, W)"
        )
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise SpikelatentError(f"{what} has dtype {dtype}; expected uint8, uint16 or float")
    if np.issubdtype(dtype, np.complexfloating):
        raise SpikelatentError(f"{what} is complex; give real images")
    if len(shape) == 3:
        return "grey"
    if shape[1] in (1, 3, 4):
        return "first"
    if shape[-1] in (1, 3, 4):
        return "last"
    return "none"


def _no_channel_axis(shape: tuple[int, ...], what: str) -> SpikelatentError:
    return SpikelatentError(
        f"{what} has shape {shape}: no channel axis of size 1, 3 or 4 second or last; "
        f"give (N, H, W), (N, H, W, C) or (N, C, H, W)"
    )


def _one_image(image: np.ndarray, layout: str) -> np.ndarray:
    """One image of a stack of ``layout`` as ``(C, H, W)``, C = 1 or 3."""
    if layout == "grey":
        return image[None]
    if layout == "last":
        image = np.moveaxis(image, -1, 0)
    return image[:3]


def _check_images(array: Any, what: str) -> np.ndarray:
    array = np.asarray(array)
    layout = _check_shape_and_dtype(array.shape, array.dtype, what)
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise SpikelatentError(
                f"{what} holds {int(bad.sum())} NaN or infinite value(s), the first at index "
                f"{first}; remove or replace them"
            )
    if layout == "grey":
        return array[:, None]
    if layout == "first":
        channels_first = array
    elif layout == "last":
        channels_first = np.moveaxis(array, -1, 1)
    else:
        raise _no_channel_axis(array.shape, what)
    return channels_first[:, :3] if channels_first.shape[1] == 4 else channels_first


def _labels_to_classes(label_sets: list[np.ndarray]) -> tuple[list[str], dict[Any, int]]:
    """Class names (the label values in sorted order) and value → index."""
    values = np.unique(np.concatenate([np.asarray(labels) for labels in label_sets]))
    return [str(value) for value in values], {value: i for i, value in enumerate(values.tolist())}


def _file_fingerprint(file: Path, *parts: Any) -> str:
    """SHA-256 of the file's size, its first and last MiB and ``parts`` (dtype, shape, key)."""
    digest = hashlib.sha256(repr((file.stat().st_size, *parts)).encode())
    with open(file, "rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, file.stat().st_size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()


class MappedImages(ImageReader):
    """Images of a memory-mapped ``.npy`` (read one by one; the OS pages them in and out). Each
    process maps the file itself: a pickled memory map would carry the whole array along."""

    def __init__(self, file: Path, layout: str, key: str) -> None:
        self.file, self.layout, self.key = file, layout, key
        self._array: np.ndarray | None = None
        super().__init__()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.file, mmap_mode="r", allow_pickle=False)
        return self._array

    def _total(self) -> int:
        return len(self.array)

    def _name(self, j: int) -> str:
        return f"{self.key}[{j}]"

    def _read(self, j: int) -> torch.Tensor:
        return _to_tensor(np.array(_one_image(self.array[j], self.layout)))

    def _header(self, j: int) -> tuple[int, int, int]:
        return _one_image(self.array[j], self.layout).shape  # a view: nothing is read


class HDF5Images(ImageReader):
    """Images of an HDF5 dataset, which each process opens for itself (h5py file handles do
    not survive a fork)."""

    def __init__(self, file: Path, key: str, shape: tuple[int, ...], layout: str) -> None:
        self.file, self.key, self.shape, self.layout = file, key, tuple(shape), layout
        self._opened: tuple[int, Any, Any] | None = None
        super().__init__()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_opened": None}

    def _dataset(self) -> Any:
        if self._opened is None or self._opened[0] != os.getpid():
            import h5py

            handle = h5py.File(self.file, "r")
            self._opened = (os.getpid(), handle, handle[self.key])
        return self._opened[2]

    def _total(self) -> int:
        return self.shape[0]

    def _name(self, j: int) -> str:
        return f"{self.key}[{j}]"

    def _read(self, j: int) -> torch.Tensor:
        try:
            image = self._dataset()[j]
        except (OSError, ValueError) as error:
            raise SpikelatentError(f"cannot read {self.file}:{self.key}[{j}] ({error})") from None
        return _to_tensor(np.asarray(_one_image(image, self.layout)))

    def _header(self, j: int) -> tuple[int, int, int]:
        shape = _one_image(np.empty(self.shape[1:], dtype=np.bool_), self.layout).shape
        return shape  # type: ignore[return-value]


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
            self._check_hdf5_keys(handle)
            return {role: handle[key][()] for role, key in
                    (("images", self.dataset_key), ("labels", self.labels_key)) if key is not None}

    def _scan(self) -> LazySource | None:
        """``.npy`` memory-mapped or an HDF5 dataset, not read (``.npz``: None, read whole)."""
        file, suffix = self.file, self.file.suffix.lower()
        if suffix == ".npz":
            return None
        if not file.is_file():
            raise SpikelatentError(f"no such file: {file}; give a .npy, .npz or .h5 file of images")
        labels, classes = None, None
        if suffix == ".npy":
            try:
                array = np.load(file, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError, EOFError) as error:
                reason = " ".join(str(error).split())[:160]
                raise SpikelatentError(f"cannot read {file} ({type(error).__name__}: {reason})"
                                       ) from None
            what = f"{file} images"
            layout = _check_shape_and_dtype(array.shape, array.dtype, what)
            if layout == "none":
                raise _no_channel_axis(array.shape, what)
            reader: ImageReader = MappedImages(file, layout, "images")
            shape, dtype = array.shape, array.dtype
        else:
            import h5py

            try:
                with h5py.File(file, "r") as handle:
                    self._check_hdf5_keys(handle)
                    dataset = handle[self.dataset_key]
                    shape, dtype = tuple(dataset.shape), dataset.dtype
                    if self.labels_key is not None:
                        labels = handle[self.labels_key][()]
            except OSError as error:
                reason = " ".join(str(error).split())[:160]
                raise SpikelatentError(f"cannot read {file} ({type(error).__name__}: {reason})"
                                       ) from None
            what = f"{file}:{self.dataset_key}"
            layout = _check_shape_and_dtype(shape, dtype, what)
            if layout == "none":
                raise _no_channel_axis(shape, what)
            reader = HDF5Images(file, str(self.dataset_key), shape, layout)
            if labels is not None:
                labels = _check_labels(labels, shape[0], f"{file} labels")
                classes, index = _labels_to_classes([labels])
                labels = np.asarray([index[value] for value in labels.tolist()], dtype=np.int64)
        channels, height, width = reader.header(0) if len(reader) else (0, 0, 0)
        record = {"kind": suffix.lstrip("."), "path": str(file.resolve()),
                  "dataset": self.dataset_key, "arrays": {"images": list(shape)},
                  "sha256": _file_fingerprint(file, str(dtype), tuple(shape), self.dataset_key),
                  "sha256_of": "file size, first and last MiB, dtype, shape"}
        return LazySource(train=LazyPool(reader, labels), test=None, class_names=classes,
                          record=record,
                          pixel_bytes=len(reader) * channels * height * width * dtype.itemsize)

    def _check_hdf5_keys(self, handle: Any) -> None:
        import h5py

        names: list[str] = []
        handle.visititems(lambda name, item: names.append(name)
                          if isinstance(item, h5py.Dataset) else None)
        listing = ", ".join(names[:10]) or "none"
        if not self.dataset_key:
            raise SpikelatentError(
                f"{self.file}: name the HDF5 dataset of images as {self.file}:DATASET "
                f"(datasets in the file: {listing})"
            )
        for key in (self.dataset_key, self.labels_key):
            if key is not None and (key not in handle or not isinstance(handle[key], h5py.Dataset)):
                raise SpikelatentError(
                    f"{self.file} has no dataset {key!r} (datasets in the file: {listing})"
                )

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
            classes, index = _labels_to_classes([arrays[k] for k in ("labels", "test_labels")
                                                 if k in arrays])
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
        record = {"kind": self.file.suffix.lower().lstrip("."), "path": str(self.file.resolve()),
                  "dataset": self.dataset_key,
                  "arrays": {k: list(np.shape(v)) for k, v in arrays.items()},
                  "sha256": hashlib.sha256("".join(digest_parts).encode()).hexdigest()}
        return RawSource(train=pools[0], test=pools[1], class_names=classes, record=record)

"""Collections of any size, streamed: images decoded and prepared in DataLoader workers.

A streamed :class:`~spikelatent.data.sources.SourceDataModule` (``stream=True``, or ``"auto"``
above :data:`STREAM_AUTO_IMAGES` images or :data:`STREAM_AUTO_BYTES` of raw pixels) keeps only
what names the images in memory: an :class:`ImageReader` (relative file paths as one numpy
byte-string array, a memory-mapped ``.npy``, an HDF5 dataset opened per process) and the labels
as an int64 array. Each item is read, decoded, cropped, resized, patched and preprocessed when a
DataLoader worker asks for it, through the same
:class:`~spikelatent.data.preprocessing.Preprocessor` stages as the in-memory route
(:class:`StreamedImages`); the fitted constants come from a seeded sample of the training pool
(:func:`fit_sample_positions`).

**Patch positions.** Every split has a fixed draw, the in-memory route's rule:
``numpy.random.default_rng([data_seed, pool, position])`` with pool 0 (training pool) or 1
(test pool) and ``position`` the image's place in its pool; validation, test and
``split_tensors`` use it. Training batches draw new positions every epoch from
``default_rng([data_seed, 2, position, epoch])``: the sampler hands the epoch with each index
(:class:`~spikelatent.data.base.EpochSeededSampler` ``with_epoch``), so the draw depends only on
the seeds and the epoch, in any worker, after a resume, and on every DDP rank.

**Unreadable images** (a corrupt file, a NaN image, an image of another size or too small for a
patch) are skipped with one :class:`UnreadableImageWarning` line naming the file: the next
readable image of the split takes its place, so batches keep their size and the stream stays
reproducible. More than :data:`MAX_CONSECUTIVE_UNREADABLE` in a row, or more than
:data:`MAX_UNREADABLE_FRACTION` of the fit sample, stop with a one-line
:class:`~spikelatent.errors.SpikelatentError` (exit 2): that is a wrong folder, not a bad file.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as TF

from spikelatent.data import whitening
from spikelatent.data.base import TensorBatch
from spikelatent.data.images import to_float_image
from spikelatent.data.preprocessing import Preprocessor
from spikelatent.errors import SpikelatentError

__all__ = [
    "DEFAULT_FIT_SAMPLE",
    "STREAM_AUTO_BYTES",
    "STREAM_AUTO_IMAGES",
    "ImageReader",
    "ItemPipeline",
    "ListImages",
    "StreamedImages",
    "UnreadableImageWarning",
    "fit_sample_positions",
    "prepare_sample",
]

#: ``stream="auto"`` streams collections of at least this many images...
STREAM_AUTO_IMAGES = 10_000
#: ... or whose raw pixels (image count x the first image's decoded bytes) reach this size.
STREAM_AUTO_BYTES = 1 << 30
#: Images of the training pool the fitted constants are estimated from (``fit_sample``).
DEFAULT_FIT_SAMPLE = 1_000
#: Patches cut from an image per visit when ``patches_per_image`` is not given (capped by the
#: largest power of two that divides the batch size).
STREAM_PATCHES_PER_IMAGE = 8
#: More unreadable images than this share of the fit sample stop the run at setup.
MAX_UNREADABLE_FRACTION = 0.05
#: More unreadable images than this in a row stop the run.
MAX_CONSECUTIVE_UNREADABLE = 50
#: Codes of the patch draws (the second seed word): fixed draws of the training / test pool
#: (the in-memory route's), per-epoch training draws, the fit sample.
TRAIN_POOL, TEST_POOL, EPOCH_DRAW, FIT_SAMPLE_DRAW = 0, 1, 2, 3


class UnreadableImageWarning(UserWarning):
    """An image of a streamed collection was skipped (it is named; a neighbour took its place)."""

    one_line = True  # the CLI prints it as one line


_WARNED: set[str] = set()  # per process: each skipped file is named once


def _warn_unreadable(error: SpikelatentError, name: str) -> None:
    if name not in _WARNED:  # by name: PIL's reasons hold object addresses that differ per read
        _WARNED.add(name)
        warnings.warn(f"skipped: {error}; the next readable image of the split takes its place",
                      UnreadableImageWarning, stacklevel=3)


# ============================================================================ readers
class ImageReader:
    """Raw images read on demand: ``read(i)`` → ``(C, H, W)`` tensor of the file's dtype.

    Subclasses keep only what names the images (paths, a memory map, a dataset key) and
    implement ``_total``, ``_read``, ``_name`` and ``_header``; :meth:`subset` is a view that
    shares that storage through a numpy index array.
    """

    def __init__(self) -> None:
        self._index = np.arange(self._total(), dtype=np.int64)

    def _total(self) -> int:
        raise NotImplementedError

    def _read(self, j: int) -> torch.Tensor:
        raise NotImplementedError

    def _name(self, j: int) -> str:
        raise NotImplementedError

    def _header(self, j: int) -> tuple[int, int, int]:
        """``(channels, height, width)`` as decoded, read cheaply (a file's header)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._index)

    def subset(self, indices: np.ndarray) -> ImageReader:
        view = copy.copy(self)
        view._index = self._index[np.asarray(indices, dtype=np.int64)]
        return view

    def read(self, i: int) -> torch.Tensor:
        """Image ``i`` ``(C, H, W)``; a one-line :class:`SpikelatentError` when it cannot be read."""
        return self._read(int(self._index[i]))

    def name(self, i: int) -> str:
        return self._name(int(self._index[i]))

    def header(self, i: int) -> tuple[int, int, int]:
        return self._header(int(self._index[i]))


class ListImages(ImageReader):
    """Images already in memory (an embedded set such as ``natural-patches``)."""

    def __init__(self, images: Sequence[torch.Tensor], names: Sequence[str]) -> None:
        self._images, self._names = list(images), list(names)
        super().__init__()

    def _total(self) -> int:
        return len(self._images)

    def _read(self, j: int) -> torch.Tensor:
        return self._images[j]

    def _name(self, j: int) -> str:
        return self._names[j]

    def _header(self, j: int) -> tuple[int, int, int]:
        return tuple(int(s) for s in self._images[j].shape)  # type: ignore[return-value]


# ============================================================================ one item
class ItemPipeline:
    """One raw image → model inputs, by a :class:`Preprocessor`'s stages (picklable).

    ``prepare``: float → the image stage (crop, size, grey, log, Fourier whitening) → the
    collection's channel count (grey repeated, colour to luma) → size checks. ``cut``: patches
    at seeded positions. ``finish``: the fitted pool stage (ZCA, contrast, offset and scale).
    """

    def __init__(self, preprocessor: Preprocessor, channels: int,
                 size: tuple[int, int] | None, patch_size: int | None,
                 patches_per_image: int, data_seed: int) -> None:
        self.preprocessor = preprocessor
        self.channels = int(channels)
        self.size = size
        self.patch_size = patch_size
        self.patches_per_image = int(patches_per_image) if patch_size else 1
        self.data_seed = int(data_seed)

    def prepare(self, raw: torch.Tensor, where: str) -> torch.Tensor:
        image = self.preprocessor.image_stage(to_float_image(raw), where)
        if image.shape[0] == 1 and self.channels == 3:
            image = image.expand(3, -1, -1)
        elif image.shape[0] == 3 and self.channels == 1:
            image = TF.rgb_to_grayscale(image)
        height, width = image.shape[-2:]
        if self.size is not None and (height, width) != self.size:
            raise SpikelatentError(
                f"image {where} is {height}x{width}, the collection's are {self.size[0]}x"
                f"{self.size[1]} (its fit sample's); pass --image-size S"
            )
        if self.patch_size is not None and self.patch_size > min(height, width):
            raise SpikelatentError(
                f"--patches {self.patch_size} is larger than image {where} ({height}x{width})"
            )
        if not bool(torch.isfinite(image).all()):
            raise SpikelatentError(f"image {where} holds NaN or infinite values")
        return image.to(torch.float32)

    def rng(self, pool: int, position: int, epoch: int | None) -> np.random.Generator:
        """The patch draw of the image at ``position`` of ``pool``: fixed, or of ``epoch``."""
        if epoch is None:
            return np.random.default_rng([self.data_seed, pool, position])
        return np.random.default_rng([self.data_seed, EPOCH_DRAW, position, epoch])

    def cut(self, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """``(k, C, H, W)``: the whole image (k = 1) or ``patches_per_image`` patches."""
        if self.patch_size is None:
            return image[None]
        return whitening.random_patches(image, self.patch_size, self.patches_per_image, rng)[0]

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.preprocessor.pool_stage(x.to(torch.float32))


# ============================================================================ the dataset
class StreamedImages(Dataset):
    """Images (or groups of patches) read and prepared per item, in DataLoader workers.

    Args:
        reader: the raw images.
        labels: ``(N,)`` int64.
        positions: ``(N,)`` each image's place in its pool (seeds its patch draws).
        pool: :data:`TRAIN_POOL` or :data:`TEST_POOL`.
        pipeline: the fitted :class:`ItemPipeline`.

    An index ``i`` gives the fixed draw; a pair ``(i, epoch)`` (what the training sampler
    yields when :attr:`epoch_draws`) the draw of that epoch. With patches an item is the
    ``entry_size`` patches of one image ``(k, C, S, S)`` and their labels ``(k,)``; whole
    images are ``(C, H, W)`` and a label, as :class:`~spikelatent.data.base.ImageTensorDataset`.
    """

    def __init__(self, reader: ImageReader, labels: np.ndarray, positions: np.ndarray,
                 pool: int, pipeline: ItemPipeline) -> None:
        if not (len(reader) == len(labels) == len(positions)):
            raise ValueError("reader, labels and positions differ in length")
        self.reader = reader
        self.labels = np.asarray(labels, dtype=np.int64)
        self.positions = np.asarray(positions, dtype=np.int64)
        self.pool = pool
        self.pipeline = pipeline

    @property
    def entry_size(self) -> int:
        """Model inputs per item: ``patches_per_image`` with patches, else 1."""
        return self.pipeline.patches_per_image

    @property
    def epoch_draws(self) -> bool:
        """Whether training items should carry the epoch (patches of the training pool)."""
        return self.pipeline.patch_size is not None and self.pool == TRAIN_POOL

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, indices: np.ndarray | list[int]) -> StreamedImages:
        index = np.asarray(indices, dtype=np.int64)
        return StreamedImages(self.reader.subset(index), self.labels[index],
                              self.positions[index], self.pool, self.pipeline)

    def with_pipeline(self, pipeline: ItemPipeline) -> StreamedImages:
        return StreamedImages(self.reader, self.labels, self.positions, self.pool, pipeline)

    # ------------------------------------------------------------------ items
    def prepared(self, i: int) -> torch.Tensor:
        """Image ``i`` read and prepared, up to the pool stage (errors are raised)."""
        return self.pipeline.prepare(self.reader.read(i), self.reader.name(i))

    def _readable(self, i: int) -> tuple[torch.Tensor, int]:
        """Image ``i``, or the next readable one (named in a warning), and its label."""
        for step in range(MAX_CONSECUTIVE_UNREADABLE):
            j = (i + step) % len(self)
            try:
                return self.prepared(j), int(self.labels[j])
            except SpikelatentError as error:
                _warn_unreadable(error, self.reader.name(j))
        raise SpikelatentError(
            f"{MAX_CONSECUTIVE_UNREADABLE} images in a row from {self.reader.name(i)} on cannot "
            "be read; check the collection (a wrong folder, or a broken copy?)"
        )

    def entry(self, key: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs (k, C, H, W), labels (k,))`` of index ``i`` or pair ``(i, epoch)``."""
        i, epoch = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (int(key), None)
        image, label = self._readable(i)
        x = self.pipeline.cut(image, self.pipeline.rng(self.pool, int(self.positions[i]), epoch))
        return self.pipeline.finish(x), torch.full((len(x),), label, dtype=torch.int64)

    def __getitem__(self, key: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.entry(key)
        return (x, y) if self.pipeline.patch_size is not None else (x[0], y[0])

    def __getitems__(self, keys: list[Any]) -> TensorBatch:
        entries = [self.entry(key) for key in keys]
        if not entries:
            return TensorBatch(torch.empty(0), torch.empty(0, dtype=torch.int64))
        return TensorBatch(torch.cat([x for x, _ in entries]), torch.cat([y for _, y in entries]))

    # ------------------------------------------------------------------ names
    def names(self) -> list[str]:
        """A name per model input of the fixed draw: the image's, ``NAME@row,col`` for patches
        (positions from each image's header: the file is opened, not decoded)."""
        if self.pipeline.patch_size is None:
            return [self.reader.name(i) for i in range(len(self))]
        out = []
        size, count = self.pipeline.patch_size, self.pipeline.patches_per_image
        for i in range(len(self)):
            height, width = self._prepared_size(i)
            rng = self.pipeline.rng(self.pool, int(self.positions[i]), None)
            corners = whitening.patch_corners(height, width, size, count, rng)
            out += [f"{self.reader.name(i)}@{row},{col}" for row, col in corners]
        return out

    def _prepared_size(self, i: int) -> tuple[int, int]:
        settings = self.pipeline.preprocessor.settings()
        if settings["image_size"]:
            return tuple(settings["image_size"])  # type: ignore[return-value]
        if settings["crop"]:
            return tuple(settings["crop"])  # type: ignore[return-value]
        _, height, width = self.reader.header(i)
        return height, width


# ============================================================================ the fit sample
def fit_sample_positions(pool_size: int, sample: int, data_seed: int) -> np.ndarray:
    """Sorted positions of the training pool the constants are fitted on: all of them when the
    pool holds at most ``sample`` images, else ``sample`` drawn without replacement by
    ``numpy.random.default_rng([data_seed, 3])``."""
    if pool_size <= sample:
        return np.arange(pool_size, dtype=np.int64)
    rng = np.random.default_rng([data_seed, FIT_SAMPLE_DRAW])
    return np.sort(rng.choice(pool_size, size=sample, replace=False)).astype(np.int64)


class _Prepared(Dataset):
    """The fit sample's items up to the pool stage, errors returned instead of raised."""

    def __init__(self, dataset: StreamedImages) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            image = self.dataset.prepared(i)
        except SpikelatentError as error:
            return i, None, str(error)
        rng = self.dataset.pipeline.rng(self.dataset.pool, int(self.dataset.positions[i]), None)
        return i, self.dataset.pipeline.cut(image, rng), None


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


def prepare_sample(dataset: StreamedImages, num_workers: int
                   ) -> tuple[list[tuple[int, torch.Tensor]], list[tuple[int, str]]]:
    """Read and prepare every image of ``dataset`` (the fit sample) in ``num_workers`` worker
    processes, in order: ``([(i, inputs (k, C, H, W))], [(i, error message)])``."""
    loader = DataLoader(_Prepared(dataset), batch_size=16, num_workers=num_workers,
                        collate_fn=_as_list)
    good, bad = [], []
    for batch in loader:
        for i, x, error in batch:
            if x is None:
                bad.append((i, error))
            else:
                good.append((i, x))
    return good, bad

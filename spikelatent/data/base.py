"""The shared LightningDataModule: splits, dataloaders, split tensors and their summary."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, default_collate
from tqdm.auto import tqdm

from spikelatent._checks import check_int
from spikelatent.data.locate import data_roots, one_line, search_dataset_folder
from spikelatent.data.preprocessing import Preprocessor
from spikelatent.data.splits import SPLITS, TEST_SPLIT_SEED, carve, indices_digest
from spikelatent.errors import DatasetNotFoundError, SpikelatentError

#: Splits longer than this are summarised by size and digest only in :meth:`describe_splits`.
MAX_LISTED_INDICES = 20_000


class TensorBatch(NamedTuple):
    """A whole batch fetched at once by :meth:`ImageTensorDataset.__getitems__`."""

    images: torch.Tensor
    labels: torch.Tensor


class ImageTensorDataset(Dataset):
    """Images ``(N, C, H, W)`` float32 and labels ``(N,)`` int64 held in memory.

    ``__getitems__`` lets the DataLoader fetch a batch with one gather instead of
    ``batch_size`` item look-ups and a stack (about 5x faster on a 2-core CPU).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"expected images (N, C, H, W) and labels (N,), got {tuple(images.shape)} "
                f"and {tuple(labels.shape)}"
            )
        self.images = images.to(torch.float32).contiguous()
        self.labels = labels.to(torch.int64).contiguous()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> TensorBatch:
        # numpy's single-threaded gather: torch's multi-threaded index is slow on busy small CPUs.
        index = np.asarray(indices, dtype=np.int64)
        return TensorBatch(
            torch.from_numpy(self.images.numpy()[index]),
            torch.from_numpy(self.labels.numpy()[index]),
        )

    def select(self, indices: np.ndarray | list[int]) -> ImageTensorDataset:
        """A new dataset holding copies of the rows ``indices``."""
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return ImageTensorDataset(self.images[index], self.labels[index])


class BatchCollate:
    """Collate function: accepts a pre-fetched :class:`TensorBatch` or a list of samples.

    With ``hflip`` it mirrors a random half of the images left-right (training augmentation,
    drawn from torch's global generator, which Lightning's ``seed_everything`` seeds).
    """

    def __init__(self, hflip: bool = False) -> None:
        self.hflip = hflip

    def __call__(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(batch, TensorBatch):
            images, labels = batch.images, batch.labels
        else:
            images, labels = default_collate(batch)
        if self.hflip and len(images):
            flip = (torch.rand(len(images)) < 0.5).numpy()
            array = images.numpy()  # a fresh batch (gathered or stacked): safe to edit in place
            array[flip] = array[flip][..., ::-1]
        return images, labels


class EpochSeededSampler(torch.utils.data.Sampler[int]):
    """Random order that depends only on (seed, epoch), so a resumed run sees the same batches.

    Lightning calls ``set_epoch`` at the start of each epoch (as for ``DistributedSampler``);
    under DDP Lightning wraps it in a ``DistributedSamplerWrapper``, which gives each rank its
    shard of this order and forwards ``set_epoch``.

    With ``with_epoch`` it yields ``(index, epoch)`` pairs: a streamed dataset draws that epoch's
    patch positions from them (:class:`~spikelatent.data.streaming.StreamedImages`), in any
    worker process and on any rank.
    """

    def __init__(self, size: int, seed: int, with_epoch: bool = False) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.with_epoch = with_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        if self.with_epoch:
            return iter([(index, self.epoch) for index in order])
        return iter(order)

    def __len__(self) -> int:
        return self.size


def _select(pool: Dataset, indices: np.ndarray) -> Dataset:
    if hasattr(pool, "select"):  # ImageTensorDataset, StreamedImages: no per-index Python list
        return pool.select(indices)
    return Subset(pool, indices.tolist())


class ImageDataModule(pl.LightningDataModule):
    """An image dataset with seeded train/val/test splits (the ``spikelatent.data`` contract).

    Subclasses set the class attributes and implement :meth:`_load_pools` (and
    :meth:`_download` for datasets read from disk).

    Attributes:
        name: registry name, e.g. ``"mnist"``.
        image_shape: ``(C, H, W)`` of every image.
        data_range: ``(low, high)`` pixel range: ``(0.0, 1.0)`` or ``(-1.0, 1.0)``.
        num_classes, class_names: label set; labels are ``0 .. num_classes - 1``.
        split_indices: after :meth:`setup`, ``{"train", "val", "test"}`` → sorted index lists.
            ``train``/``val`` index the official training set and ``test`` the official test set,
            or, for datasets without one, all three index the whole dataset.
        data_source: after :meth:`setup`, where the data came from (folder or generator).
    """

    name: str = ""
    image_shape: tuple[int, int, int] = (1, 28, 28)
    data_range: tuple[float, float] = (0.0, 1.0)
    num_classes: int = 10
    class_names: list[str] = []
    #: One-line provenance for docs and ``describe_splits``.
    source: str = ""
    #: Whether the dataset ships a test split; if not, ``test_fraction`` is carved with a fixed seed.
    has_official_test: bool = True
    #: Dataset-specific keyword options accepted by ``make_datamodule`` (name → description).
    OPTIONS: dict[str, str] = {}
    #: Settings of the :class:`~spikelatent.data.preprocessing.Preprocessor` that takes this
    #: dataset's raw images (as its files hold them) to its tensors; the map onto
    #: ``data_range`` is added by :meth:`preprocessor`.
    PREPROCESSING: dict[str, Any] = {}

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        batch_size: int = 128,
        seed: int = 0,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        download: bool = False,
        limit: int | None = None,
        test_fraction: float | None = None,
    ) -> None:
        super().__init__()
        self.data_dir = None if data_dir in (None, "") else Path(data_dir).expanduser()
        self.batch_size = _positive_int(self.name, "batch_size", batch_size)
        self.seed = _int(self.name, "seed", seed)
        self.val_fraction = _fraction(self.name, "val_fraction", val_fraction)
        self.num_workers = _int(self.name, "num_workers", num_workers, minimum=0)
        self.download = bool(download)
        self.limit = None if limit is None else _positive_int(self.name, "limit", limit)
        if self.has_official_test:
            self.test_fraction = None
        else:
            default = 0.15 if test_fraction is None else test_fraction
            self.test_fraction = _fraction(self.name, "test_fraction", default)
        self.hflip = False
        self.split_indices: dict[str, list[int]] = {}
        self.data_source: str | None = None
        self._datasets: dict[str, Dataset] | None = None
        self._folder: Path | None = None
        self._preprocessor: Preprocessor | None = None

    # ----------------------------------------------------------------- for subclasses
    def _load_pools(self, folder: Path | None) -> tuple[Dataset, Dataset | None]:
        """Return ``(training pool, official test set or None)``; ``folder`` holds the files."""
        raise NotImplementedError

    def _download(self, root: Path) -> None:
        """Download the dataset into data root ``root`` with torchvision (datasets on disk only)."""
        raise NotImplementedError

    @property
    def needs_files(self) -> bool:
        """Whether the dataset is read from files on disk (not embedded or generated)."""
        return type(self)._download is not ImageDataModule._download

    # ----------------------------------------------------------------- locating files
    def locate(self) -> Path | None:
        """The folder holding this dataset's files (downloading first when ``download=True``).

        Raises :class:`~spikelatent.errors.DatasetNotFoundError` when nothing is found.
        """
        if self._folder is not None or not self.needs_files:
            return self._folder
        try:
            self._folder = search_dataset_folder(self.name, self.data_dir)
            return self._folder
        except DatasetNotFoundError:
            if not self.download:
                raise
        target = data_roots(self.data_dir)[0]
        folders_before = _folders_under(target)
        try:
            self._download(target)
        except Exception as error:  # no network, HTTP errors, checksum mismatch, read-only disk
            _remove_new_empty_folders(target, folders_before)
            note = f"download into {target} failed ({_download_failure(error)})"
            self._folder = search_dataset_folder(self.name, self.data_dir, note=note,
                                                 download_failed=True)
            return self._folder
        self._folder = search_dataset_folder(self.name, self.data_dir)
        return self._folder

    # ----------------------------------------------------------------- Lightning hooks
    def prepare_data(self) -> None:
        """Runs on one process: find the files, downloading them if asked."""
        self.locate()

    def setup(self, stage: str | None = None) -> None:
        """Load the data and build the seeded splits (once; later calls do nothing)."""
        if self._datasets is not None:
            return
        folder = self.locate()
        train_pool, test_pool = self._load_pools(folder)
        self.data_source = str(folder) if folder is not None else self.source
        if test_pool is None:  # no official test split: carve one with a fixed seed
            rest, test_idx = carve(np.arange(len(train_pool)), self.test_fraction, TEST_SPLIT_SEED)
            test_dataset = _select(train_pool, test_idx)
        else:
            rest, test_idx = np.arange(len(train_pool)), np.arange(len(test_pool))
            test_dataset = test_pool
        train_idx, val_idx = carve(rest, self.val_fraction, self.seed, keep_limit=self.limit)
        if len(train_idx) == 0:
            raise SpikelatentError(
                f"{self.name}: no training examples left ({len(rest)} before validation, "
                f"val_fraction={self.val_fraction}); lower val_fraction or use more data"
            )
        self.split_indices = {
            "train": train_idx.tolist(),
            "val": val_idx.tolist(),
            "test": test_idx.tolist(),
        }
        self._datasets = {
            "train": _select(train_pool, train_idx),
            "val": _select(train_pool, val_idx),
            "test": test_dataset,
        }

    def dataset(self, split: str) -> Dataset:
        """The torch Dataset of ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
        _check_split(split)
        self.setup()
        assert self._datasets is not None
        return self._datasets[split]

    def _dataloader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(split)
        # A streamed patch dataset's item is the patches of one image: batch_size inputs.
        per_item = getattr(dataset, "entry_size", 1)
        return DataLoader(
            dataset,
            batch_size=max(1, self.batch_size // per_item),
            sampler=EpochSeededSampler(len(dataset), self.seed,
                                       with_epoch=getattr(dataset, "epoch_draws", False))
            if shuffle else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=BatchCollate(hflip=self.hflip and split == "train"),
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        """Training batches ``(images (B, C, H, W) float32, labels (B,) int64)``, seeded shuffle."""
        return self._dataloader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in index order (empty when ``val_fraction=0``)."""
        return self._dataloader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches in index order."""
        return self._dataloader("test", shuffle=False)

    def preprocessor(self) -> Preprocessor:
        """The input pipeline from this dataset's raw images to its tensors, fitted on the
        training pool (after :meth:`setup`); a trained model carries a copy."""
        self.setup()
        if self._preprocessor is None:
            low, high = self.data_range
            self._preprocessor = Preprocessor(self.image_shape, self.PREPROCESSING,
                                              offset=-low / (high - low), scale=1.0 / (high - low))
        return self._preprocessor

    # ----------------------------------------------------------------- whole splits
    def split_tensors(
        self, split: str, count: int | None = None, skip: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``split`` as ``(images (N, C, H, W) float32 on data_range, labels (N,) int64)``.

        All of it by default; with ``count``, the images at positions ``skip .. skip + count``
        (fewer if the split is shorter). In-memory datasets return their own tensors (views:
        do not modify them in place); datasets read lazily from disk (CelebA, streamed
        collections) decode only the images asked for, once, through a DataLoader (a streamed
        patch split: the fixed draw, ``patches_per_image`` per image).
        """
        dataset = self.dataset(split)
        per_item = getattr(dataset, "entry_size", 1)
        total = len(dataset) * per_item
        stop = total if count is None else min(skip + count, total)
        if isinstance(dataset, ImageTensorDataset):
            if count is None and skip == 0:
                return dataset.images, dataset.labels
            return dataset.images[skip:stop], dataset.labels[skip:stop]
        first = skip // per_item  # items holding inputs skip .. stop
        if count is not None or skip:
            # Subset keeps the split's indices: a streamed split's unreadable image is replaced
            # by the split's next one, as in training.
            dataset = Subset(dataset, range(first, max(first, -(-stop // per_item))))
        loader = DataLoader(
            dataset, batch_size=max(1, 256 // per_item), num_workers=self.num_workers,
            collate_fn=BatchCollate()
        )
        images, labels = [], []
        for batch_images, batch_labels in tqdm(
            loader, desc=f"{self.name} {split}", disable=None, leave=False
        ):
            images.append(batch_images)
            labels.append(batch_labels)
        if not images:
            return torch.empty((0, *self.image_shape)), torch.empty((0,), dtype=torch.int64)
        start = skip - first * per_item
        return (torch.cat(images)[start:start + max(0, stop - skip)],
                torch.cat(labels)[start:start + max(0, stop - skip)])

    def describe_splits(self) -> dict[str, Any]:
        """JSON-serialisable summary of the splits (written to ``splits.json`` by a run).

        Holds the settings that regenerate them (seed, fractions, limit), their sizes, what the
        indices refer to, a SHA-256 digest of each index list, and the index lists themselves
        for splits of at most :data:`MAX_LISTED_INDICES` examples.
        """
        self.setup()
        if self.has_official_test:
            index_space = {
                "train": "official training set",
                "val": "official training set",
                "test": "official test set",
            }
            test_split = "official"
        else:
            index_space = dict.fromkeys(SPLITS, "whole dataset")
            test_split = f"carved: test_fraction={self.test_fraction}, fixed seed {TEST_SPLIT_SEED}"
        return {
            "dataset": self.name,
            "data_source": self.data_source,
            "image_shape": list(self.image_shape),
            "data_range": list(self.data_range),
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "limit": self.limit,
            "test_split": test_split,
            "method": "numpy.random.default_rng(seed).permutation; first round(fraction*n) carved",
            "index_space": index_space,
            "sizes": {split: len(self.split_indices[split]) for split in SPLITS},
            "sha256": {split: indices_digest(self.split_indices[split]) for split in SPLITS},
            "indices": {
                split: self.split_indices[split]
                for split in SPLITS
                if len(self.split_indices[split]) <= MAX_LISTED_INDICES
            },
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, image_shape={self.image_shape}, "
            f"data_range={self.data_range}, batch_size={self.batch_size}, seed={self.seed})"
        )


def _folders_under(root: Path) -> set[Path]:
    """``root`` and every folder below it that exists now."""
    if not root.is_dir():
        return set()
    return {root, *(path for path in root.rglob("*") if path.is_dir())}


def _remove_new_empty_folders(root: Path, before: set[Path]) -> None:
    """After a failed download: remove the folders it created that stayed empty (deepest first),
    so no empty cache folder is left to look like a dataset."""
    for folder in sorted(_folders_under(root) - before, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()  # only succeeds on an empty folder
        except OSError:
            pass


def _download_failure(error: BaseException) -> str:
    """A short reason for a failed download (torchvision's messages span several mirrors)."""
    message = one_line(error)
    unreachable = re.search(r"<urlopen error ([^>]*)>", message)
    if unreachable:
        return f"no network? urlopen error {unreachable.group(1)}"
    if len(message) > 160:
        message = message[:157] + "..."
    return f"{type(error).__name__}: {message}"


# --------------------------------------------------------------------- validation helpers
def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise SpikelatentError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")


def _int(dataset: str, option: str, value: Any, minimum: int | None = None) -> int:
    return check_int(value, option, minimum, owner=dataset)


def _positive_int(dataset: str, option: str, value: Any) -> int:
    return _int(dataset, option, value, minimum=1)


def _fraction(dataset: str, option: str, value: Any) -> float:
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        raise SpikelatentError(f"{dataset}: {option} must be a number, got {value!r}") from None
    if not 0.0 <= fraction < 1.0:
        raise SpikelatentError(f"{dataset}: {option} must be in [0, 1), got {value!r}")
    return fraction

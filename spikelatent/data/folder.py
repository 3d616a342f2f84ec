"""A folder of image files as a data module (``make_datamodule("photos/")``, ``--data photos/``).

Layouts (recursive; PNG, JPEG, TIFF, BMP and the rest of torchvision's ``IMG_EXTENSIONS``):

* ``DIR/<class>/**/image.png``: labelled, one class per first-level sub-folder, classes sorted by
  name (torchvision's ``ImageFolder`` rule, through ``torchvision.datasets.folder.make_dataset``);
* ``DIR/image.png`` (image files directly in ``DIR``): unlabelled, every image below ``DIR``;
* ``DIR/train/...`` + ``DIR/test/...``: each is read by the rules above and the split is kept;
  otherwise ``test_fraction`` of the images is carved as the test split (fixed seed 0).

Hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``) are skipped. Every image file
must decode (one line names the one that does not). The images are listed in a fixed random
order (seed 0), so the first N images of a split cover every class; ``stimulus_names`` gives each
one's file.

Streamed (:mod:`spikelatent.data.streaming`), only the relative paths (one numpy byte-string
array) and labels stay in memory, and the SHA-256 covers every file's relative path and size
(hashing the bytes of a million files would take longer than training should take to start).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from torchvision.datasets.folder import make_dataset
from tqdm.auto import tqdm

from spikelatent.data.images import IMG_EXTENSIONS, decode_image_file
from spikelatent.data.sources import (
    LazyPool,
    LazySource,
    RawImages,
    RawSource,
    SourceDataModule,
    files_digest,
)
from spikelatent.data.streaming import ImageReader
from spikelatent.errors import SpikelatentError

_READABLE = "PNG, JPEG, TIFF, BMP, PPM/PGM, WebP"
#: Seed of the fixed order in which a folder's images are listed (see ``_read``).
ORDER_SEED = 0


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMG_EXTENSIONS and _visible(path)


def _walk_images(folder: Path, prefix: str = "") -> list[str]:
    """Every visible image file below ``folder`` (hidden folders skipped) as a path relative to
    it, in ``sorted(Path)`` order: each folder's entries by name, descending into sub-folders
    in place (plain strings: a million ``Path`` objects would hold hundreds of MB)."""
    found: list[str] = []
    with os.scandir(folder) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():  # follows symbolic links, as os.walk(followlinks=True)
            found += _walk_images(Path(entry.path), f"{prefix}{entry.name}/")
        elif entry.is_file() and PurePath(entry.name).suffix.lower() in IMG_EXTENSIONS:
            found.append(prefix + entry.name)
    return found


def list_image_folder(folder: Path) -> tuple[list[str], list[int] | None, list[str] | None]:
    """``(paths relative to folder, labels or None, class names or None)`` of one folder (see
    the module doc), in :func:`scan_image_folder`'s order."""
    if not folder.is_dir():
        raise SpikelatentError(f"{folder} is not a folder; give a folder of images or an array file")
    entries = sorted(entry for entry in folder.iterdir() if _visible(entry))
    if not entries:
        raise SpikelatentError(
            f"{folder} is empty; put image files ({_READABLE}) in it, or one sub-folder per class"
        )
    if any(_is_image(entry) for entry in entries):
        return _walk_images(folder), None, None
    classes = [entry.name for entry in entries if entry.is_dir()]
    class_to_idx = {name: index for index, name in enumerate(classes)}
    root = os.path.join(os.path.expanduser(str(folder)), "")  # make_dataset's paths start so
    samples = []
    for name, index in class_to_idx.items():  # one class at a time: fewer full paths held
        samples += [(path[len(root):], label) for path, label in
                    make_dataset(str(folder), {name: index}, extensions=IMG_EXTENSIONS,
                                 allow_empty=True)
                    if not any(part.startswith(".") for part in path[len(root):].split(os.sep))]
    if not samples:
        others = [entry for entry in folder.rglob("*") if entry.is_file() and _visible(entry)]
        example = f" ({len(others)} other files, e.g. {others[0].name})" if others else ""
        raise SpikelatentError(
            f"no image files ({_READABLE}) in {folder}{example}; put the images in it, or one "
            f"sub-folder per class"
        )
    used = {label for _, label in samples}
    empty = [name for name, index in class_to_idx.items() if index not in used]
    if empty:
        raise SpikelatentError(
            f"class folder {folder / empty[0]} holds no image file ({_READABLE}); add images or "
            f"remove it (every first-level sub-folder of {folder} is a class)"
        )
    return [path for path, _ in samples], [label for _, label in samples], classes


def scan_image_folder(folder: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    """``(files, labels or None, class names or None)`` of one folder (see the module doc)."""
    relative, labels, classes = list_image_folder(folder)
    return [folder / path for path in relative], labels, classes


class ImageFiles(ImageReader):
    """Image files below ``root``, decoded on demand; the relative paths are kept as one numpy
    byte-string array (no Python object per file: DataLoader workers share its pages)."""

    def __init__(self, root: Path, relative: list[str], order: np.ndarray | None = None) -> None:
        self.root = root
        self.relative = np.array([os.fsencode(path) for path in relative], dtype=bytes)
        if order is not None:  # listed in this order (positions into ``relative``)
            self.relative = self.relative[order]
        super().__init__()

    def _total(self) -> int:
        return len(self.relative)

    def _name(self, j: int) -> str:
        return os.fsdecode(self.relative[j])

    def _read(self, j: int) -> torch.Tensor:
        return decode_image_file(self.root / self._name(j))

    def _header(self, j: int) -> tuple[int, int, int]:
        from PIL import Image

        try:
            with Image.open(self.root / self._name(j)) as image:  # the header only
                width, height = image.size
                grey = image.mode in ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F")
                return (1 if grey else 3), height, width
        except (OSError, ValueError, SyntaxError) as error:
            raise SpikelatentError(f"cannot read image {self.root / self._name(j)} ({error})"
                                   ) from None


class ImageFolderDataModule(SourceDataModule):
    """Images read from a folder (see the module doc); every ``SourceDataModule`` option applies."""

    name = "folder"
    source = "a folder of image files"

    def __init__(self, *, path: str | os.PathLike[str], **options: Any) -> None:
        self.name = str(path)
        super().__init__(**options)
        self.path = Path(path).expanduser()

    def _split_folders(self) -> tuple[Path, Path] | None:
        """``(train/, test/)`` when the folder holds both (names case-insensitive)."""
        subfolders = {entry.name.lower(): entry for entry in self.path.iterdir() if entry.is_dir()}
        if "train" in subfolders and "test" in subfolders:
            return subfolders["train"], subfolders["test"]
        return None

    def _listed(self) -> tuple[Path, list[tuple[list[str], list[int] | None]], list[str] | None,
                               bool]:
        """``(root, [(paths relative to root, labels) per pool], class names, split kept)``:
        each pool in the fixed random order (seed 0)."""
        if not self.path.exists():
            raise SpikelatentError(f"no such folder: {self.path}; give a folder of images or an array file")
        split = self._split_folders() if self.path.is_dir() else None
        roots = split if split is not None else (self.path,)
        scanned = [list_image_folder(root) for root in roots]
        classes = scanned[0][2]
        if split is not None:
            _, test_labels, test_classes = scanned[1]
            if (classes is None) != (test_classes is None):
                raise SpikelatentError(
                    f"{self.path}: train/ and test/ must both hold class sub-folders or both hold "
                    f"images directly"
                )
            if classes is not None and test_classes != classes:
                extra = sorted(set(test_classes or []) ^ set(classes))
                raise SpikelatentError(
                    f"{self.path}: train/ and test/ have different class folders ({', '.join(extra)}); "
                    f"give both the same classes"
                )
        pools = []
        for (files, labels, _), root in zip(scanned, roots, strict=True):
            prefix = "" if root == self.path else f"{root.name}/"
            pools.append(([prefix + path for path in files], labels))
        return self.path, pools, classes, split is not None

    @staticmethod
    def _ordered(files: list[str], labels: list[int] | None) -> tuple[list[str], list[int] | None]:
        # A fixed random order (seed 0), not the class-sorted file order: analyses take the
        # first N images of a split, which must cover every class.
        order = np.random.default_rng(ORDER_SEED).permutation(len(files))
        return [files[i] for i in order], None if labels is None else [labels[i] for i in order]

    def _read(self) -> RawSource:
        root, listed, classes, split = self._listed()
        all_files = [root / path for files, _ in listed for path in files]
        digest = files_digest(all_files, root)
        pools = []
        for files, labels in listed:
            files, labels = self._ordered(files, labels)
            images = [decode_image_file(root / path, digest) for path in
                      tqdm(files, desc=f"reading {root}", disable=None, leave=False)]
            pools.append(RawImages(images=images, names=files, labels=labels))
        record = {"kind": "folder", "path": str(self.path.resolve()), "files": len(all_files),
                  "sha256": digest.hexdigest()}
        return RawSource(train=pools[0], test=pools[1] if split else None, class_names=classes,
                         record=record)

    def _scan(self) -> LazySource:
        root, listed, classes, split = self._listed()
        digest, base = hashlib.sha256(), os.fspath(root)
        for files, _ in listed:  # the relative path and size of every file, in listed order
            for path in files:
                size = os.stat(os.path.join(base, path)).st_size
                digest.update(f"{path}\0{size}\0".encode(errors="surrogateescape"))
        pools = []
        for files, labels in listed:  # the order of _ordered, applied to numpy arrays
            order = np.random.default_rng(ORDER_SEED).permutation(len(files))
            pools.append(LazyPool(ImageFiles(root, files, order), None if labels is None
                                  else np.asarray(labels, dtype=np.int64)[order]))
        del listed
        count = sum(len(pool) for pool in pools)
        first = pools[0].reader
        try:
            channels, height, width = first.header(0) if len(first) else (0, 0, 0)
        except SpikelatentError:
            channels = height = width = 0
        record = {"kind": "folder", "path": str(self.path.resolve()), "files": count,
                  "sha256": digest.hexdigest(), "sha256_of": "relative paths and sizes"}
        return LazySource(train=pools[0], test=pools[1] if split else None, class_names=classes,
                          record=record, pixel_bytes=count * channels * height * width)

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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets.folder import make_dataset
from tqdm.auto import tqdm

from spikelatent.data.images import IMG_EXTENSIONS, decode_image_file
from spikelatent.data.sources import RawImages, RawSource, SourceDataModule, files_digest
from spikelatent.errors import SpikelatentError

_READABLE = "PNG, JPEG, TIFF, BMP, PPM/PGM, WebP"
#: Seed of the fixed order in which a folder's images are listed (see ``_read``).
ORDER_SEED = 0


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMG_EXTENSIONS and _visible(path)


def _walk_images(folder: Path) -> list[Path]:
    """Every visible image file below ``folder`` (hidden folders skipped), sorted."""
    found = []
    for directory, subfolders, files in os.walk(folder, followlinks=True):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        found += [Path(directory) / name for name in files if _is_image(Path(directory) / name)]
    return sorted(found)


def scan_image_folder(folder: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    """``(files, labels or None, class names or None)`` of one folder (see the module doc)."""
    if not folder.is_dir():
        raise SpikelatentError(f"{folder} is not a folder; give a folder of images or an array file")
    entries = sorted(entry for entry in folder.iterdir() if _visible(entry))
    if not entries:
        raise SpikelatentError(
            f"{folder} is empty; put image files ({_READABLE}) in it, or one sub-folder per class"
        )
    if any(_is_image(entry) for entry in entries):
        files = _walk_images(folder)
        return files, None, None
    classes = [entry.name for entry in entries if entry.is_dir()]
    class_to_idx = {name: index for index, name in enumerate(classes)}
    samples = [(Path(path), label) for path, label in
               (make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
                if classes else [])
               if not any(part.startswith(".") for part in Path(path).relative_to(folder).parts)]
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

    def _read(self) -> RawSource:
        if not self.path.exists():
            raise SpikelatentError(f"no such folder: {self.path}; give a folder of images or an array file")
        split = self._split_folders() if self.path.is_dir() else None
        roots = split if split is not None else (self.path,)
        scanned = [scan_image_folder(root) for root in roots]
        train_files, train_labels, classes = scanned[0]
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
        all_files = [path for files, _, _ in scanned for path in files]
        digest = files_digest(all_files, self.path)
        pools = []
        for (files, labels, _), root in zip(scanned, roots, strict=True):
            # A fixed random order (seed 0), not the class-sorted file order: analyses take the
            # first N images of a split, which must cover every class.
            order = np.random.default_rng(ORDER_SEED).permutation(len(files))
            files = [files[i] for i in order]
            labels = None if labels is None else [labels[i] for i in order]
            images = [decode_image_file(path, digest) for path in
                      tqdm(files, desc=f"reading {root}", disable=None, leave=False)]
            names = [str(path.relative_to(self.path)) for path in files]
            pools.append(RawImages(images=images, names=names, labels=labels))
        record = {"kind": "folder", "path": str(self.path.resolve()), "files": len(all_files),
                  "sha256": digest.hexdigest()}
        return RawSource(train=pools[0], test=pools[1] if split else None, class_names=classes,
                         record=record)

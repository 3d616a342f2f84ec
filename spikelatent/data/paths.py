"""Which ``--data`` values are paths (a folder of images or an array file) and their module."""

from __future__ import annotations

import os
from pathlib import Path

from spikelatent.data.arrays import ArrayDataModule, is_array_path, split_array_path
from spikelatent.data.folder import ImageFolderDataModule
from spikelatent.data.sources import SourceDataModule


def is_data_path(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` names a path rather than a built-in dataset: it exists, has an array
    ending (``.npy``, ``.npz``, ``.h5[:DATASET]``), or is written as a path (``/``, ``~``, ``.``).

    Built-in names win (``make_datamodule`` asks this only for names it does not know): write
    ``./digits`` for a folder called ``digits``.
    """
    text = str(name)
    return (
        isinstance(name, os.PathLike)
        or is_array_path(text)
        or split_array_path(text)[0].exists()
        or any(mark in text for mark in ("/", os.sep))
        or text.startswith(("~", "."))
    )


def path_datamodule_class(name: str | os.PathLike[str]) -> type[SourceDataModule]:
    """:class:`ArrayDataModule` for array files, else :class:`ImageFolderDataModule`."""
    return ArrayDataModule if is_array_path(str(name)) else ImageFolderDataModule


def path_label(name: str | os.PathLike[str]) -> str:
    """A short name for run directories: the folder's or file's name without ending."""
    file, _ = split_array_path(str(name))
    return Path(str(file).rstrip("/\\")).stem or "data"

"""Name → data module class, and :func:`make_datamodule`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spikelatent.config import FitConfig
from spikelatent.data.base import ImageDataModule
from spikelatent.data.builtin import (
    CelebA64DataModule,
    CIFAR16DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    SyntheticDataModule,
)
from spikelatent.data.locate import FILE_LAYOUTS, search_dataset_folder
from spikelatent.data.natural import NaturalPatchesDataModule
from spikelatent.data.paths import is_data_path, path_datamodule_class
from spikelatent.errors import SpikelatentError

#: Configuration fields that are data-module options (docs/data.md "Your own images").
SOURCE_OPTION_FIELDS = ("image_size", "crop", "grayscale", "test_fraction", "patches",
                        "patches_per_image", "log_intensity", "whiten", "whiten_cutoff",
                        "contrast_normalize")

#: Registry of the built-in datasets, name → ``ImageDataModule`` subclass.
DATASETS: dict[str, type[ImageDataModule]] = {
    module.name: module
    for module in (
        MNISTDataModule,
        FashionMNISTDataModule,
        CIFAR16DataModule,
        CelebA64DataModule,
        DigitsDataModule,
        SyntheticDataModule,
        NaturalPatchesDataModule,
    )
}


def resolve_name(name: str) -> str:
    """Canonical dataset name (case and ``_``/``-`` insensitive); unknown names raise
    :class:`~spikelatent.errors.SpikelatentError` listing the known ones."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise SpikelatentError(
            f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}, or give a path to a "
            f"folder of images or an array file (.npy, .npz, .h5:DATASET)"
        )
    return key


def find_dataset_root(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, note: str | None = None,
    download_failed: bool = False,
) -> Path | None:
    """The folder holding dataset ``name``'s files, searched in the documented order.

    Returns ``None`` for datasets that need no files (``digits``, ``synthetic``). Raises
    :class:`~spikelatent.errors.SpikelatentError` listing the known names for an unknown one,
    and :class:`~spikelatent.errors.DatasetNotFoundError` (one line, every path tried) when no
    complete folder exists; ``note`` (e.g. why a download failed) is added to that message.
    """
    name = resolve_name(name)
    if name not in FILE_LAYOUTS:
        return None
    return search_dataset_folder(name, data_dir, note=note, download_failed=download_failed)


#: Settings every data module takes (:class:`~spikelatent.data.base.ImageDataModule`'s arguments;
#: their defaults live there only).
COMMON_SETTINGS = ("batch_size", "seed", "val_fraction", "num_workers", "download", "limit")


def make_datamodule(
    name: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> ImageDataModule:
    """Build the data module for dataset ``name`` (see :data:`DATASETS`).

    Args:
        name: ``mnist``, ``fashion-mnist``, ``cifar16``, ``celeba64``, ``digits``,
            ``synthetic``, ``natural-patches``, or a path: a folder of images or an array file
            (``.npy``, ``.npz``, ``.h5:DATASET``; see docs/data.md "Your own images").
        data_dir: folder holding the files (or a data root); searched before ``$SPIKELATENT_DATA``
            and the platform cache.
        **options: the settings every data module takes, with their defaults —
            ``batch_size`` (images per batch, 128), ``seed`` (seeds the validation split and the
            training shuffle, 0), ``val_fraction`` (fraction of the training set held out for
            validation, in [0, 1), 0.1), ``num_workers`` (DataLoader worker processes, 0 = load in
            the main process), ``download`` (try torchvision's download when the files are not
            found, False), ``limit`` (keep at most this many training examples, None = all) — and
            dataset-specific options (``hflip`` for cifar16; ``image_size``, ``test_fraction`` for
            digits; ``n``, ``image_shape``, ``num_classes``, ``data_seed``, ``noise``,
            ``test_fraction`` for synthetic; ``label_attribute`` for celeba64).

    Nothing is read until ``setup()`` (or ``split_tensors``); missing files then raise
    :class:`~spikelatent.errors.DatasetNotFoundError`.
    """
    key = str(name).strip().lower().replace("_", "-")
    if key not in DATASETS and is_data_path(name):  # a folder of images or an array file
        module_class: type[ImageDataModule] = path_datamodule_class(name)
        options = {"path": name, **options}
    else:
        module_class = DATASETS[resolve_name(name)]
    unknown = sorted(set(options) - set(module_class.OPTIONS) - set(COMMON_SETTINGS) - {"path"})
    if unknown:
        accepted = ", ".join(module_class.OPTIONS) or "none"
        raise SpikelatentError(
            f"{module_class.name}: unknown option(s) {', '.join(unknown)}; accepted: {accepted}"
        )
    return module_class(data_dir=data_dir, **options)


def datamodule_from_config(
    config: FitConfig | Mapping[str, Any], data_dir: str | os.PathLike[str] | None = None
) -> ImageDataModule:
    """The data module of a run, built exactly as training built it (same split, limit, options).

    ``config`` is a run's configuration (``model.config``, a :class:`~spikelatent.config.FitConfig`
    or the mapping in ``config.yaml``; defaults are filled in as ``spikelatent fit`` fills them);
    ``data_dir`` overrides where the files are looked for (the split does not depend on it).
    """
    config = FitConfig.coerce(config)
    # The image-source options (--image-size, --patches, ...) set in the run; None = the
    # data set's own default, so they reach only the data modules that were given them.
    source_options = {name: config[name] for name in SOURCE_OPTION_FIELDS if config[name] is not None}
    return make_datamodule(
        config.data,
        data_dir=data_dir if data_dir is not None else config.data_dir,
        batch_size=config.batch_size,
        seed=config.seed,
        val_fraction=config.val_fraction,
        num_workers=config.num_workers,
        download=config.download,
        limit=config.limit,
        **{**source_options, **config.data_options},
    )

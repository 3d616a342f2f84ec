"""Your own images: the shared data module of image folders, array files and natural patches.

A :class:`SourceDataModule` reads raw images (subclasses: :mod:`~spikelatent.data.folder`,
:mod:`~spikelatent.data.arrays`, :mod:`~spikelatent.data.natural`), then, in this order:

1. splits them into a training and a test pool **by image** (a ``train/`` + ``test/`` folder or
   ``test_images`` array is honoured, else ``test_fraction`` is carved with the fixed seed 0), so
   patches of one photograph never sit on both sides;
2. converts to float on [0, 1] (uint8 / uint16) and applies ``crop``, ``image_size``,
   ``grayscale`` (:mod:`spikelatent.data.images`);
3. optionally ``log_intensity``, Fourier whitening (``whiten="fourier"``, per image), random
   ``patches`` (``patches_per_image``, seeded by ``data_seed``), ZCA (``whiten="zca"``, fitted
   on the training pool), ``contrast_normalise`` per patch (:mod:`spikelatent.data.whitening`).
   Whitened data are then scaled to unit variance over the training pool;
4. records the data range: ``(0, 1)`` / ``(-1, 1)`` for pixel data on those ranges, else the
   observed ``(min, max)`` of the training pool, which makes the decoder's output linear
   (:func:`spikelatent.networks.output_activation_for`).

Validation is then carved from the training pool by ``ImageDataModule.setup`` (seeded by ``seed``).
``source_record`` (after ``setup``) names where the data came from with a SHA-256 of every file's
bytes, so a resumed run can refuse a changed data set.

**Streamed** (``stream=True``, or ``"auto"`` for large collections): the same steps, per item in
DataLoader workers, with the constants fitted on a seeded sample of the training pool
(:mod:`spikelatent.data.streaming`; docs/data.md "Streamed collections").
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from spikelatent.data import whitening
from spikelatent.data.base import ImageDataModule, ImageTensorDataset, _fraction, _positive_int
from spikelatent.data.images import harmonise_channels, parse_size, to_float_image
from spikelatent.data.preprocessing import Preprocessor
from spikelatent.data.splits import TEST_SPLIT_SEED, carve
from spikelatent.data.streaming import (
    DEFAULT_FIT_SAMPLE,
    MAX_UNREADABLE_FRACTION,
    STREAM_AUTO_BYTES,
    STREAM_AUTO_IMAGES,
    STREAM_PATCHES_PER_IMAGE,
    TEST_POOL,
    TRAIN_POOL,
    ImageReader,
    ItemPipeline,
    StreamedImages,
    UnreadableImageWarning,
    fit_sample_positions,
    prepare_sample,
)
from spikelatent.errors import SpikelatentError

WHITEN_CHOICES = ("none", "fourier", "zca")
#: Label of every image of an unlabelled source (``num_classes`` 1).
UNLABELLED = "unlabelled"

#: The options every image source accepts (name → description); ``make_datamodule`` checks them.
SOURCE_OPTIONS: dict[str, str] = {
    "image_size": "resize to S x S (or HxW): scale to cover, then center-crop (default: keep)",
    "crop": "center-crop S x S (or HxW) before resizing (default: none)",
    "grayscale": "convert colour images to one luma channel (default False)",
    "test_fraction": "share of images carved as the fixed test split when the source has none (0.15)",
    "patches": "cut random S x S patches from every image instead of using whole images",
    "patches_per_image": "patches per image with `patches` (default 100)",
    "data_seed": "seed of the patch positions (default 0)",
    "log_intensity": "take log(x + 0.01) of intensities on [0, 1] first (default False)",
    "whiten": "none, fourier (1/f ramp with low-pass roll-off, per image) or zca (default none)",
    "whiten_cutoff": "roll-off frequency of --whiten fourier as a fraction of Nyquist (0.8; "
                     "0 = no roll-off)",
    "zca_epsilon": "ZCA regulariser relative to the mean eigenvalue (default 0.01)",
    "contrast_normalize": "per image/patch: subtract its mean, divide by its s.d. (default False)",
    "stream": "read images on demand in DataLoader workers: true, false or auto (default auto: "
              f"from {STREAM_AUTO_IMAGES:,} images or {STREAM_AUTO_BYTES >> 30} GiB of pixels)",
    "fit_sample": "streamed: training-pool images the fitted constants are estimated from "
                  f"(default {DEFAULT_FIT_SAMPLE:,})",
}


@dataclass
class RawImages:
    """What a source reads: images ``(C, H, W)`` of any size and dtype, their labels and names."""

    images: list[torch.Tensor]
    names: list[str]
    labels: list[int] | None = None

    def subset(self, indices: np.ndarray) -> RawImages:
        return RawImages(
            images=[self.images[i] for i in indices],
            names=[self.names[i] for i in indices],
            labels=None if self.labels is None else [self.labels[i] for i in indices],
        )


@dataclass
class LazyPool:
    """A pool of a streamed source: its reader and labels ``(N,)`` (None: unlabelled)."""

    reader: ImageReader
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.reader)

    def subset(self, indices: np.ndarray) -> LazyPool:
        return LazyPool(self.reader.subset(indices),
                        None if self.labels is None else self.labels[indices])


@dataclass
class LazySource:
    """A source's pools, not read yet (see :meth:`SourceDataModule._scan`).

    ``pixel_bytes``: the raw pixels' size as decoded (for ``stream="auto"``).
    """

    train: LazyPool
    test: LazyPool | None
    class_names: list[str] | None
    record: dict[str, Any] = field(default_factory=dict)
    pixel_bytes: int = 0


@dataclass
class RawSource:
    """A source's pools before preprocessing, and its provenance."""

    train: RawImages
    test: RawImages | None
    class_names: list[str] | None
    record: dict[str, Any] = field(default_factory=dict)


class SourceDataModule(ImageDataModule):
    """Base class of the data modules built from image files or arrays (see the module doc).

    Attributes (after ``setup``): ``image_shape``, ``data_range``, ``num_classes``,
    ``class_names``, ``labelled``, ``source_record`` (path, kind, file count, SHA-256),
    ``preprocessing`` (every option and fitted constant), and :meth:`stimulus_names`.
    """

    # The test split is made here, by image, so the base class sees an "official" test pool.
    has_official_test = True
    num_classes = 1
    class_names = [UNLABELLED]
    OPTIONS = SOURCE_OPTIONS
    #: Defaults a subclass may change (natural patches: grey, log, whitened 16x16 patches).
    DEFAULTS: dict[str, Any] = {}

    def __init__(
        self,
        *,
        image_size: Any = None,
        crop: Any = None,
        grayscale: bool | None = None,
        test_fraction: float | None = None,
        patches: int | None = None,
        patches_per_image: int | None = None,
        data_seed: int = 0,
        log_intensity: bool | None = None,
        whiten: str | None = None,
        whiten_cutoff: float | None = None,
        zca_epsilon: float = 0.01,
        contrast_normalize: bool | None = None,
        stream: bool | str = "auto",
        fit_sample: int = DEFAULT_FIT_SAMPLE,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.stream: bool | str = (
            "auto" if isinstance(stream, str) and stream.strip().lower() == "auto"
            else _bool(self.name, "stream", stream))
        self.fit_sample = _positive_int(self.name, "fit_sample", fit_sample)
        # Streamed patches: a given patches_per_image is the patches per visit of an image.
        self._patches_per_image_given = patches_per_image is not None
        self.streamed = False
        given = {
            "grayscale": grayscale, "patches": patches, "patches_per_image": patches_per_image,
            "log_intensity": log_intensity, "whiten": whiten, "whiten_cutoff": whiten_cutoff,
            "contrast_normalize": contrast_normalize,
        }
        options = {**{"grayscale": False, "patches": None, "patches_per_image": 100,
                      "log_intensity": False, "whiten": "none",
                      "whiten_cutoff": whitening.DEFAULT_WHITEN_CUTOFF,
                      "contrast_normalize": False},
                   **self.DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
        self.image_size = parse_size(image_size, "image_size")
        self.crop = parse_size(crop, "crop")
        self.grayscale = _bool(self.name, "grayscale", options["grayscale"])
        self.test_fraction = _fraction(self.name, "test_fraction",
                                       0.15 if test_fraction is None else test_fraction)
        self.patch_size = (None if options["patches"] in (None, 0)
                           else _positive_int(self.name, "patches", options["patches"]))
        self.patches_per_image = _positive_int(self.name, "patches_per_image",
                                               options["patches_per_image"])
        self.data_seed = int(data_seed)
        self.log_intensity = _bool(self.name, "log_intensity", options["log_intensity"])
        self.whiten = str(options["whiten"]).lower()
        if self.whiten not in WHITEN_CHOICES:
            raise SpikelatentError(
                f"{self.name}: whiten must be one of {', '.join(WHITEN_CHOICES)}; got {whiten!r}"
            )
        cutoff = options["whiten_cutoff"]
        self.whiten_cutoff = None if cutoff in (None, 0) else float(cutoff)
        if self.whiten_cutoff is not None and not (math.isfinite(self.whiten_cutoff)
                                                   and self.whiten_cutoff > 0):
            raise SpikelatentError(f"{self.name}: whiten_cutoff must be a number > 0; got {cutoff!r}")
        self.zca_epsilon = float(zca_epsilon)
        if not (math.isfinite(self.zca_epsilon) and self.zca_epsilon > 0):
            raise SpikelatentError(f"{self.name}: zca_epsilon must be > 0; got {zca_epsilon!r}")
        self.contrast_normalize = _bool(self.name, "contrast_normalize",
                                        options["contrast_normalize"])
        self.labelled = True
        self.source_record: dict[str, Any] = {}
        self.preprocessing: dict[str, Any] = {}
        self._pool_names: dict[str, list[str]] = {}

    # ----------------------------------------------------------------- for subclasses
    def _read(self) -> RawSource:
        """Read the raw images (and the source's own test pool, if it has one)."""
        raise NotImplementedError

    def _scan(self) -> LazySource | None:
        """List the images without reading them, for streaming; None: this source cannot
        stream (its images come whole, e.g. an ``.npz`` archive)."""
        return None

    # ----------------------------------------------------------------- pipeline
    @property
    def rescales(self) -> bool:
        """Whether the preprocessing leaves the pixel scale (log, whitening, normalisation)."""
        return self.log_intensity or self.whiten != "none" or self.contrast_normalize

    def _test_pool(self, train: Any, test: Any, n_train: int) -> tuple[Any, Any, str]:
        """(train, test, how the test split was made): the source's own test pool, or else
        ``test_fraction`` of the ``n_train`` training images carved off with the fixed seed
        (``train``/``test`` are in-memory or streamed pools, both with ``subset``)."""
        if test is not None:
            return train, test, "the source's own test images"
        rest, carved = carve(np.arange(n_train), self.test_fraction, TEST_SPLIT_SEED)
        if len(rest) == 0:
            raise SpikelatentError(
                f"{self.name}: only {n_train} image(s); with test_fraction "
                f"{self.test_fraction} none is left to train on; add images or lower it"
            )
        test_split = (f"{len(carved)} images carved with test_fraction={self.test_fraction}, "
                      f"fixed seed {TEST_SPLIT_SEED}")
        return train.subset(rest), train.subset(carved), test_split

    def _load_pools(self, folder: Path | None) -> tuple[Dataset, Dataset | None]:
        if self.stream is not False:
            lazy = self._scan()
            if lazy is None and self.stream is True:
                raise SpikelatentError(
                    f"{self.name} cannot be streamed (its images are read whole); save them as "
                    f".npy (np.save), .h5 or a folder of image files, or drop stream=true"
                )
            if lazy is not None and (self.stream is True or len(lazy.train) + len(
                    lazy.test or ()) >= STREAM_AUTO_IMAGES or lazy.pixel_bytes >= STREAM_AUTO_BYTES):
                return self._stream_pools(lazy)
        source = self._read()
        if not source.train.images:
            raise SpikelatentError(f"{self.name}: no images to train on")
        n_train = len(source.train.images)
        train, test, test_split = self._test_pool(source.train, source.test, n_train)
        self.labelled = source.class_names is not None
        self.class_names = list(source.class_names) if self.labelled else [UNLABELLED]
        self.num_classes = len(self.class_names)
        pools = {"train": train, "test": test}
        images = {split: self._image_stage(pool, split) for split, pool in pools.items()}
        channels = harmonise_channels(images["train"] + images["test"], self.grayscale)
        images = {"train": channels[: len(images["train"])], "test": channels[len(images["train"]):]}
        tensors, names, labels = {}, {}, {}
        for split, pool in pools.items():  # train first: an empty test pool takes its shape
            pool_labels = pool.labels if pool.labels is not None else [0] * len(pool.images)
            if not images[split]:
                tensors[split], names[split], labels[split] = (
                    torch.empty((0, *tensors["train"].shape[1:])), [], [])
                continue
            tensors[split], names[split], labels[split] = self._to_tensor(
                images[split], pool.names, pool_labels, split)
        tensors = self._pool_stage(tensors)
        self._set_range(tensors["train"])
        self.image_shape = tuple(int(s) for s in tensors["train"].shape[1:])  # type: ignore[assignment]
        self._pool_names = names
        self.source_record = {**source.record, "test_split": test_split,
                              "images": {split: len(pool.images) for split, pool in pools.items()}}
        return (ImageTensorDataset(tensors["train"], torch.as_tensor(labels["train"])),
                ImageTensorDataset(tensors["test"], torch.as_tensor(labels["test"])))

    def _preprocessing_settings(self) -> dict[str, Any]:
        """The :class:`~spikelatent.data.preprocessing.Preprocessor` settings of these options."""
        return {
            "crop": list(self.crop) if self.crop else None,
            "image_size": list(self.image_size) if self.image_size else None,
            "grayscale": self.grayscale, "log_intensity": self.log_intensity,
            "whiten": self.whiten,
            "whiten_cutoff": self.whiten_cutoff if self.whiten == "fourier" else None,
            "patches": self.patch_size,
            "zca": self.zca_epsilon if self.whiten == "zca" else False,
            "contrast_normalize": self.contrast_normalize,
            # One offset and scale for all splits, from the training pool: data of unit variance
            # keep the SSE loss (and so --beta) on a familiar scale.
            "standardise": self.whiten != "none" or self.log_intensity,
        }

    def _image_stage(self, pool: RawImages, split: str) -> list[torch.Tensor]:
        """Per image: float, crop, resize, grey, log intensity, Fourier whitening (the
        preprocessor's image stage, so a trained model repeats it on new images)."""
        steps = Preprocessor((1, 1, 1), self._preprocessing_settings())
        return [steps.image_stage(to_float_image(image), f"{name}")
                for image, name in tqdm(list(zip(pool.images, pool.names, strict=True)),
                                        desc=f"{self.name} {split} images", disable=None,
                                        leave=False)]

    def _to_tensor(
        self, images: list[torch.Tensor], names: list[str], labels: list[int], split: str
    ) -> tuple[torch.Tensor, list[str], list[int]]:
        """Stack whole images (one size required) or cut the random patches."""
        if self.patch_size is None:
            sizes = {tuple(image.shape[-2:]) for image in images}
            if len(sizes) > 1:
                first = tuple(images[0].shape[-2:])
                other = next(i for i, image in enumerate(images) if tuple(image.shape[-2:]) != first)
                raise SpikelatentError(
                    f"{self.name}: images differ in size ({names[0]} is {first[0]}x{first[1]}, "
                    f"{names[other]} is {images[other].shape[-2]}x{images[other].shape[-1]}); "
                    f"pass --image-size S (or --crop S, or --patches S)"
                )
            return torch.stack(images).to(torch.float32), list(names), list(labels)
        size = self.patch_size
        pool_index = {"train": 0, "test": 1}[split]
        patches, patch_names, patch_labels = [], [], []
        for index, (image, name, label) in enumerate(zip(images, names, labels, strict=True)):
            height, width = image.shape[-2:]
            if size > min(height, width):
                raise SpikelatentError(
                    f"{self.name}: --patches {size} is larger than image {name} "
                    f"({height}x{width}); choose a smaller patch size"
                )
            rng = np.random.default_rng([self.data_seed, pool_index, index])
            cut, corners = whitening.random_patches(image, size, self.patches_per_image, rng)
            patches.append(cut)
            patch_names += [f"{name}@{row},{col}" for row, col in corners]
            patch_labels += [label] * len(cut)
        return torch.cat(patches).to(torch.float32), patch_names, patch_labels

    def _pool_stage(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """ZCA (fitted on the training pool), contrast normalisation, unit variance: the
        preprocessor's pool stage, fitted here and carried by the model trained on these data."""
        preprocessor = Preprocessor(tuple(tensors["train"].shape[1:]),
                                    self._preprocessing_settings())
        fitted = {"train": preprocessor.fit(tensors["train"])}
        fitted.update({k: preprocessor.pool_stage(v) for k, v in tensors.items() if k != "train"})
        self._preprocessor = preprocessor
        self.preprocessing = self._preprocessing_record(preprocessor)
        return fitted

    def _preprocessing_record(self, preprocessor: Preprocessor) -> dict[str, Any]:
        """Every option and fitted scalar constant, for ``splits.json``."""
        record: dict[str, Any] = {
            "order": "float [0,1] -> crop -> image_size -> grayscale -> log_intensity -> "
                     "whiten fourier -> patches -> whiten zca -> contrast_normalize -> scale",
            "image_size": list(self.image_size) if self.image_size else None,
            "crop": list(self.crop) if self.crop else None,
            "grayscale": self.grayscale, "log_intensity": self.log_intensity,
            "log_offset": whitening.LOG_OFFSET if self.log_intensity else None,
            "whiten": self.whiten,
            "whiten_cutoff": self.whiten_cutoff if self.whiten == "fourier" else None,
            "patches": self.patch_size, "patches_per_image": self.patches_per_image
            if self.patch_size else None, "data_seed": self.data_seed,
            "contrast_normalize": self.contrast_normalize,
        }
        if self.whiten == "zca":
            record["zca_epsilon"] = self.zca_epsilon
        if self.contrast_normalize:
            record["contrast_epsilon"] = float(preprocessor.contrast_epsilon)
        if preprocessor.settings()["standardise"]:
            record["standardise"] = {"offset": float(preprocessor.offset),
                                     "scale": float(preprocessor.scale)}
        if preprocessor.settings()["fit_sample"] is not None:
            record["fit_sample"] = preprocessor.settings()["fit_sample"]
        return record

    # ----------------------------------------------------------------- streamed
    def _streamed_patches_per_image(self) -> int:
        """Patches per visit of an image: the given ``patches_per_image``, else 8 (or the largest
        power of two below it that divides the batch size); a batch holds whole visits."""
        if not self._patches_per_image_given:
            return math.gcd(self.batch_size, STREAM_PATCHES_PER_IMAGE)
        if self.batch_size % self.patches_per_image:
            raise SpikelatentError(
                f"{self.name}: streamed, a batch holds all patches_per_image patches of each "
                f"image it reads; make --batch-size ({self.batch_size}) a multiple of "
                f"--patches-per-image ({self.patches_per_image}), e.g. --patches-per-image 8"
            )
        return self.patches_per_image

    def _stream_channels(self, pools: dict[str, LazyPool], sample: np.ndarray) -> int:
        """1 with ``grayscale``, else 3 when an image of the fit sample or a test sample of the
        same size is in colour (their headers are read), as the in-memory route decides on all."""
        if self.grayscale:
            return 1
        probes = {"train": sample,
                  "test": fit_sample_positions(len(pools["test"]), self.fit_sample,
                                               self.data_seed)}
        for split, positions in probes.items():
            reader = pools[split].reader
            for i in positions:
                try:
                    if reader.header(int(i))[0] == 3:
                        return 3
                except SpikelatentError:
                    continue  # unreadable: named when it is read
        return 1

    def _stream_pools(self, source: LazySource) -> tuple[Dataset, Dataset]:
        """The streamed route: split by image, fit the constants on a seeded sample of the
        training pool, and return datasets that read every item on demand."""
        train, test, test_split = self._test_pool(source.train, source.test, len(source.train))
        if len(train) == 0:
            raise SpikelatentError(f"{self.name}: no images to train on")
        self.labelled = source.class_names is not None
        self.class_names = list(source.class_names) if self.labelled else [UNLABELLED]
        self.num_classes = len(self.class_names)
        pools = {"train": train, "test": test}
        per_visit = self._streamed_patches_per_image() if self.patch_size else 1
        if self.patch_size:
            self.patches_per_image = per_visit
        sample = fit_sample_positions(len(train), self.fit_sample, self.data_seed)
        channels = self._stream_channels(pools, sample)
        settings = self._preprocessing_settings()
        unfitted = ItemPipeline(Preprocessor((channels, 1, 1), settings), channels, None,
                                self.patch_size, per_visit, self.data_seed)
        datasets = {
            split: StreamedImages(pool.reader, pool.labels if pool.labels is not None
                                  else np.zeros(len(pool), dtype=np.int64),
                                  np.arange(len(pool)), code, unfitted)
            for (split, pool), code in zip(pools.items(), (TRAIN_POOL, TEST_POOL), strict=True)
        }
        good, bad = prepare_sample(datasets["train"].select(sample), self.num_workers)
        for _, message in bad:
            warnings.warn(f"skipped in the fit sample: {message}", UnreadableImageWarning,
                          stacklevel=2)
        if not good or len(bad) > MAX_UNREADABLE_FRACTION * len(sample):
            first = bad[0][1] if bad else "no image"
            raise SpikelatentError(
                f"{self.name}: {len(bad)} of the {len(sample)} images sampled to fit the "
                f"preprocessing cannot be read (e.g. {first}); check the collection"
            )
        size = None
        if self.patch_size is None:
            size = tuple(good[0][1].shape[-2:])
            other = next(((i, x) for i, x in good if tuple(x.shape[-2:]) != size), None)
            if other is not None:
                reader = datasets["train"].reader
                raise SpikelatentError(
                    f"{self.name}: images differ in size ({reader.name(int(sample[good[0][0]]))} "
                    f"is {size[0]}x{size[1]}, {reader.name(int(sample[other[0]]))} is "
                    f"{other[1].shape[-2]}x{other[1].shape[-1]}); pass --image-size S (or "
                    f"--crop S, or --patches S)"
                )
        fit_record = {"images": len(good), "pool": len(train), "seed": self.data_seed,
                      "rule": "all" if len(sample) == len(train)
                      else "numpy.random.default_rng([data_seed, 3]).choice(pool, images, "
                           "replace=False)"}
        if bad:
            fit_record["unreadable"] = [datasets["train"].reader.name(int(sample[i]))
                                        for i, _ in bad[:10]]
        tensor = torch.cat([x for _, x in good]).to(torch.float32)
        del good  # one copy of the sample at a time (1,000 64x64 RGB images: 47 MiB)
        self.image_shape = tuple(int(s) for s in tensor.shape[1:])  # type: ignore[assignment]
        preprocessor = Preprocessor(self.image_shape, {**settings, "fit_sample": fit_record})
        tensor = preprocessor.fit(tensor)
        self._set_range(tensor)
        del tensor
        pipeline = ItemPipeline(preprocessor, channels, size, self.patch_size, per_visit,
                                self.data_seed)
        datasets = {split: dataset.with_pipeline(pipeline) for split, dataset in datasets.items()}
        self._preprocessor = preprocessor
        self.preprocessing = self._preprocessing_record(preprocessor)
        self.preprocessing["streamed"] = {
            "patch_positions": None if self.patch_size is None else
            "fixed (val, test, split_tensors): default_rng([data_seed, pool, position]); "
            "training batches: default_rng([data_seed, 2, position, epoch])",
            "patches_per_visit": per_visit if self.patch_size else None,
        }
        self.streamed = True
        self.source_record = {**source.record, "test_split": test_split, "streamed": True,
                              "images": {split: len(pool) for split, pool in pools.items()}}
        return datasets["train"], datasets["test"]

    def _set_range(self, train: torch.Tensor) -> None:
        if len(train) == 0:
            return
        low, high = float(train.min()), float(train.max())
        if not (math.isfinite(low) and math.isfinite(high)):
            raise SpikelatentError(f"{self.name}: the images hold NaN or infinite values")
        if not self.rescales and low >= 0.0 and high <= 1.0:
            self.data_range = (0.0, 1.0)
        elif not self.rescales and low >= -1.0 and high <= 1.0:
            self.data_range = (-1.0, 1.0)
        else:
            if high <= low:
                high = low + 1.0
            # Observed span, rounded outward: the decoder is then linear (not squashed), and
            # metrics and figures use this span.
            self.data_range = (math.floor(low * 1000) / 1000, math.ceil(high * 1000) / 1000)

    # ----------------------------------------------------------------- results
    def stimulus_names(self, split: str) -> list[str]:
        """A stable name per image of ``split``: the file's path relative to the source
        (``photos/cat/1.png``), ``images[12]`` for arrays, ``NAME@row,col`` for patches."""
        self.setup()
        if self.streamed:  # train, val and test hold their own items
            dataset = self.dataset(split)
            assert isinstance(dataset, StreamedImages)
            return dataset.names()
        pool = "test" if split == "test" else "train"
        return [self._pool_names[pool][i] for i in self.split_indices[split]]

    def describe_splits(self) -> dict[str, Any]:
        """The base summary plus ``source`` (path, kind, SHA-256) and ``preprocessing``."""
        summary = super().describe_splits()
        summary["index_space"] = {"train": "training pool", "val": "training pool",
                                  "test": "test pool"}
        summary["streamed"] = self.streamed
        summary["test_split"] = self.source_record.get("test_split")
        summary["test_fraction"] = self.test_fraction
        summary["source"] = self.source_record
        summary["preprocessing"] = self.preprocessing
        summary["class_names"] = self.class_names
        return summary


def _bool(dataset: str, option: str, value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise SpikelatentError(f"{dataset}: {option} must be true or false; got {value!r}")


def files_digest(paths: list[Path], root: Path) -> hashlib._Hash:
    """A SHA-256 object primed with the sorted relative paths (contents are added on reading)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
    return digest

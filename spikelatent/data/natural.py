"""``natural-patches``: whitened 16x16 patches of natural photographs that ship with installed
packages (scikit-image's data images and scikit-learn's sample images), offline.

The preprocessing follows the sparse-coding tradition of the Poisson VAE's vH16 set: grey, log
intensity, Fourier whitening with a low-pass roll-off, random 16x16 patches, unit variance
(see :mod:`spikelatent.data.whitening`). Every option of the image sources can be changed
(``whiten="zca"``, ``contrast_normalize=True``, ``patches=8``, ...). The card with every image
and its licence: ``datasets/natural-patches.md``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from spikelatent.data.sources import LazyPool, LazySource, RawImages, RawSource, SourceDataModule
from spikelatent.data.streaming import ListImages
from spikelatent.errors import SpikelatentError

#: The photographs used: (package, name, licence). scikit-image's are read by ``skimage.data``
#: from the files inside the package (no download); scikit-learn's by ``load_sample_images``.
NATURAL_IMAGES: tuple[tuple[str, str, str], ...] = (
    ("scikit-image", "astronaut", "public domain (NASA)"),
    ("scikit-image", "camera", "CC0 (Lav Varshney)"),
    ("scikit-image", "coffee", "CC0 (Rachel Michetti)"),
    ("scikit-image", "chelsea", "CC0 (Stefan van der Walt)"),
    ("scikit-image", "rocket", "public domain (SpaceX)"),
    ("scikit-image", "grass", "CC0 (linolafett, DeviantArt)"),
    ("scikit-image", "gravel", "CC0 (CC0Textures)"),
    ("scikit-image", "brick", "CC0 (CC0Textures)"),
    ("scikit-learn", "china.jpg", "CC BY 2.0 (danielbuechele, Flickr)"),
    ("scikit-learn", "flower.jpg", "CC BY 2.0 (vultilion, Flickr)"),
)


def natural_images() -> list[tuple[str, np.ndarray]]:
    """``(name, uint8 array (H, W) or (H, W, 3))`` for every image of :data:`NATURAL_IMAGES`."""
    try:
        import skimage.data
    except ImportError:
        raise SpikelatentError(
            "natural-patches needs scikit-image (its photographs are part of the set): "
            "pip install 'spikelatent[natural]' or pip install scikit-image"
        ) from None
    from sklearn.datasets import load_sample_images

    samples = load_sample_images()
    by_file = {path.rsplit("/", 1)[-1]: image for path, image in
               zip(samples.filenames, samples.images, strict=True)}
    images = []
    for package, name, _ in NATURAL_IMAGES:
        if package == "scikit-image":
            images.append((f"skimage/{name}", np.asarray(getattr(skimage.data, name)())))
        else:
            images.append((f"sklearn/{name}", np.asarray(by_file[name])))
    return images


class NaturalPatchesDataModule(SourceDataModule):
    """Natural-image patches from photographs inside scikit-image and scikit-learn (offline).

    Defaults: grey, ``log_intensity``, ``whiten="fourier"`` (cutoff 0.8 of Nyquist), 16x16
    ``patches``, 2,000 per image (16,000 training + validation patches from 8 photographs, 4,000
    test patches from the 2 photographs carved as the test split with ``test_fraction`` 0.2).
    """

    name = "natural-patches"
    image_shape = (1, 16, 16)
    source = "photographs shipped in scikit-image and scikit-learn (datasets/natural-patches.md)"
    DEFAULTS = {"grayscale": True, "patches": 16, "patches_per_image": 2000,
                "log_intensity": True, "whiten": "fourier"}

    def __init__(self, *, test_fraction: float | None = None, **options: Any) -> None:
        super().__init__(test_fraction=0.2 if test_fraction is None else test_fraction, **options)

    def _read(self) -> RawSource:
        images, names, parts = [], [], []
        for name, array in natural_images():
            tensor = torch.from_numpy(np.array(array, copy=True))
            tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)
            images.append(tensor)
            names.append(name)
            parts.append(hashlib.sha256(array.tobytes()).hexdigest())
        record = {"kind": "embedded", "path": self.name, "files": len(images),
                  "sha256": hashlib.sha256("".join(parts).encode()).hexdigest()}
        return RawSource(train=RawImages(images=images, names=names), test=None,
                         class_names=None, record=record)

    def _scan(self) -> LazySource | None:
        """With ``stream=True``: the photographs (in memory) prepared per item, so every epoch
        draws new patch positions (``auto`` never streams ten photographs)."""
        if self.stream is not True:
            return None
        source = self._read()
        return LazySource(train=LazyPool(ListImages(source.train.images, source.train.names)),
                          test=None, class_names=None, record=source.record)

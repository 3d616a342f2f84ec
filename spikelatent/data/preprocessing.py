"""A trained model's own input pipeline: raw images as on disk -> the model's input.

:class:`Preprocessor` is an ``nn.Module`` whose fitted constants (ZCA mean and matrix,
contrast-normalisation epsilon, offset and scale) are registered buffers, so they travel in the
checkpoint's ``state_dict`` and load with ``torch.load(weights_only=True)``; its settings (crop,
size, grey, log intensity, whitening, patches) are plain values saved in the checkpoint's
hyper-parameters. The data module fits it on the training pool and uses the very same code to
prepare every split, so ``model.preprocess(raw_test_images)`` gives the data module's test
tensors (docs/preprocessing.md).

The order (as in ``spikelatent.data.sources``):

1. raw -> float on [0, 1] (uint8 / 255, uint16 / 65535; floats are taken as intensities on
   [0, 1] as they are);
2. per image, at its own size: ``crop`` -> ``image_size`` (scale to cover, centre crop) ->
   grey -> ``log(x + 0.01)`` -> Fourier whitening;
3. to the model's input size: a model trained on whole images resizes (before step 2's
   whitening, as its training images were); a model trained on ``patches`` takes a window of the
   prepared image (default: its centre), as its training patches were cut from whitened images;
4. per pool of model inputs: ZCA -> contrast normalisation -> ``(x - offset) / scale``.

**Fourier whitening of a stimulus whose size differs from the training photographs.** The
filter ``R(f) = f exp(-(f / f0)^4)`` is defined in cycles per pixel, so it is the same filter at
any size; a stimulus is whitened at the size it has after step 2's resize (for a patch model:
before its window is taken). A stimulus of a patch model smaller than the patch is first
resized to cover the patch; whitening a small image sees fewer low frequencies than a
photograph, so such stimuli are whitened approximately (documented, not exact).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spikelatent.data import whitening
from spikelatent.data.images import (
    decode_image_file,
    harmonise_channels,
    preprocess,
    to_float_image,
)
from spikelatent.errors import SpikelatentError

__all__ = ["Preprocessor", "as_image_list"]

#: The settings a preprocessor is built from (JSON values), with their defaults.
DEFAULT_SETTINGS: dict[str, Any] = {
    "crop": None,
    "image_size": None,
    "grayscale": False,
    "log_intensity": False,
    "whiten": "none",
    "whiten_cutoff": None,
    "patches": None,
    "zca": False,  # False, or the ZCA regulariser epsilon (relative to the mean eigenvalue)
    "contrast_normalize": False,
    "standardise": False,
    # None: fitted on the whole training pool; a streamed collection records its sample here
    # ({"images", "pool", "seed", "rule"}), so describe() and the model carry it.
    "fit_sample": None,
    "carried": True,
}


class Preprocessor(nn.Module):
    """Raw images -> model input ``(N, C, H, W)``; see the module docstring for the steps.

    Args:
        input_shape: the model's input ``(C, H, W)``.
        settings: the steps' settings (keys of :data:`DEFAULT_SETTINGS`; missing keys take the
            defaults).
        offset, scale: the final affine map ``(x - offset) / scale`` (fitted when
            ``settings["standardise"]``; e.g. 0.5, 0.5 for data on [-1, 1]).
    """

    def __init__(self, input_shape: Sequence[int], settings: Mapping[str, Any] | None = None,
                 offset: float = 0.0, scale: float = 1.0) -> None:
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        unknown = set(settings or {}) - set(DEFAULT_SETTINGS) - {"input_shape"}
        if unknown:
            raise SpikelatentError(f"unknown preprocessing settings: {', '.join(sorted(unknown))}")
        self._settings = {**DEFAULT_SETTINGS, **{k: v for k, v in (settings or {}).items()
                                                 if k != "input_shape"}}
        size = int(np.prod(self.input_shape))
        if self._settings["zca"]:
            self.register_buffer("zca_mean", torch.zeros(size))
            self.register_buffer("zca_matrix", torch.eye(size))
        self.register_buffer("contrast_epsilon", torch.tensor(1e-8))
        self.register_buffer("offset", torch.tensor(float(offset)))
        self.register_buffer("scale", torch.tensor(float(scale)))
        #: Whether the fitted constants are real (False: a checkpoint written before the model
        #: carried its preprocessing, with constants that cannot be rebuilt from it).
        self.register_buffer("fitted", torch.tensor(not self.needs_fit))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_settings(cls, settings: Preprocessor | Mapping[str, Any] | None,
                      input_shape: Sequence[int], data_range: Sequence[float]) -> Preprocessor:
        """A preprocessor from saved settings, an existing one (copied), or ``None`` (a checkpoint
        that predates carried preprocessing: images on [0, 1] mapped onto ``data_range``)."""
        if isinstance(settings, Preprocessor):
            copy = cls(input_shape, settings.settings())
            copy.load_state_dict(settings.state_dict())
            return copy
        if settings is None:
            low, high = (float(v) for v in data_range)
            if (low, high) in ((0.0, 1.0), (-1.0, 1.0)):
                return cls(input_shape, {"carried": False}, offset=-low / (high - low),
                           scale=1.0 / (high - low))
            return cls(input_shape, {"standardise": True, "carried": False})
        return cls(input_shape, settings)

    def settings(self) -> dict[str, Any]:
        """The settings as plain JSON values (saved in the checkpoint's hyper-parameters)."""
        return {key: (list(value) if isinstance(value, tuple) else value)
                for key, value in self._settings.items()}

    @property
    def needs_fit(self) -> bool:
        """Whether constants are fitted on training data (ZCA, contrast epsilon, standardise)."""
        s = self._settings
        return bool(s["zca"] or s["contrast_normalize"] or s["standardise"])

    def fit(self, train: torch.Tensor) -> torch.Tensor:
        """Fit the pool constants on the training inputs ``(N, C, H, W)`` (after steps 1-3) and
        return them transformed."""
        s = self._settings
        x = train
        if s["zca"]:
            mean, matrix = whitening.zca_whitening(x, s["zca"])
            self.zca_mean.copy_(mean)
            self.zca_matrix.copy_(matrix)
            x = whitening.apply_zca(x, mean, matrix)
        if s["contrast_normalize"]:
            variance = float(x.flatten(1).var(dim=1).mean()) if len(x) else 0.0
            self.contrast_epsilon.fill_(0.01 * variance if variance > 0 else 1e-8)
            x = whitening.contrast_normalise(x, float(self.contrast_epsilon))
        if s["standardise"]:
            self.offset.fill_(float(x.mean()))
            self.scale.fill_(float(x.std()) or 1.0)
        self.fitted.fill_(True)
        return (x - self.offset) / self.scale

    def describe(self) -> dict[str, Any]:
        """Settings and the scalar constants, for ``splits.json`` and reports."""
        out = self.settings()
        out.update(offset=float(self.offset), scale=float(self.scale), fitted=bool(self.fitted))
        if self._settings["contrast_normalize"]:
            out["contrast_epsilon"] = float(self.contrast_epsilon)
        return out

    # ------------------------------------------------------------------ the steps
    def to_float(self, image: torch.Tensor) -> torch.Tensor:
        """Step 1 for one image ``(C, H, W)``."""
        return to_float_image(image)

    def image_stage(self, image: torch.Tensor, where: str = "image",
                    fit_to_input: bool = False) -> torch.Tensor:
        """Step 2 on one float image ``(C, H, W)`` (with ``fit_to_input``, step 3's resize for
        stimuli shown to a trained model first)."""
        s = self._settings
        crop = tuple(s["crop"]) if s["crop"] else None
        size = tuple(s["image_size"]) if s["image_size"] else None
        image = preprocess(image, crop, size, where)
        if fit_to_input:
            image = self._resize_to_input(image, where)
        if s["grayscale"] and image.shape[0] == 3:
            image = harmonise_channels([image], True)[0]
        if s["log_intensity"]:
            image = whitening.log_intensity(image)
        if s["whiten"] == "fourier":
            image = whitening.fourier_whiten(image, s["whiten_cutoff"])
        return image

    def _resize_to_input(self, image: torch.Tensor, where: str) -> torch.Tensor:
        height, width = self.input_shape[1:]
        h, w = image.shape[-2:]
        if self._settings["patches"]:
            if h >= height and w >= width:
                return image  # the window is taken after whitening
            return preprocess(image, None, (max(h, height), max(w, width)), where)
        if (h, w) != (height, width):
            return preprocess(image, None, (height, width), where)
        return image

    def window(self, image: torch.Tensor, position: Sequence[int] | None = None) -> torch.Tensor:
        """Step 3 for a patch model: the input-sized window at ``position`` (top-left (row, col);
        default the centre) of a prepared image."""
        height, width = self.input_shape[1:]
        h, w = image.shape[-2:]
        if position is None:
            row, col = (h - height) // 2, (w - width) // 2
        else:
            row, col = (int(v) for v in position)
        if not (0 <= row <= h - height and 0 <= col <= w - width):
            raise SpikelatentError(
                f"window at ({row}, {col}) of size {height}x{width} leaves the {h}x{w} image; "
                "give positions inside it"
            )
        return image[:, row:row + height, col:col + width]

    def pool_stage(self, x: torch.Tensor) -> torch.Tensor:
        """Step 4 on model inputs ``(N, C, H, W)`` with the fitted constants."""
        s = self._settings
        if s["zca"] and len(x):
            x = whitening.apply_zca(x, self.zca_mean, self.zca_matrix)
        if s["contrast_normalize"]:
            x = whitening.contrast_normalise(x, float(self.contrast_epsilon))
        return (x - self.offset) / self.scale

    def forward(self, images: Any, positions: Any = None) -> torch.Tensor:
        """Raw images (see :func:`as_image_list`) -> ``(N, C, H, W)`` float32 model inputs.

        ``positions``: for a patch model, one ``(row, col)`` per image (top-left corner of the
        window in the prepared image); default the centre.
        """
        if self.needs_fit and not bool(self.fitted):
            raise SpikelatentError(
                "this checkpoint was written before models carried their preprocessing, and its "
                "fitted constants (whitening, scale) cannot be rebuilt from it; retrain it, or "
                "pass images already on the model's input range"
            )
        raw = as_image_list(images)
        if positions is not None and len(positions) != len(raw):
            raise SpikelatentError(f"positions has {len(positions)} entries for {len(raw)} images")
        channels = self.input_shape[0]
        prepared = []
        for index, image in enumerate(raw):
            image = self.image_stage(self.to_float(image), f"image {index}", fit_to_input=True)
            if image.shape[0] == 1 and channels == 3:
                image = image.expand(3, -1, -1)
            elif image.shape[0] == 3 and channels == 1:
                image = harmonise_channels([image], True)[0]
            if self._settings["patches"]:
                image = self.window(image, None if positions is None else positions[index])
            prepared.append(image)
        if not prepared:
            return torch.empty((0, *self.input_shape))
        batch = torch.stack(prepared).to(torch.float32)
        if tuple(batch.shape[1:]) != self.input_shape:
            raise SpikelatentError(
                f"prepared images are {tuple(batch.shape[1:])}, the model takes {self.input_shape}"
            )
        return self.pool_stage(batch.to(self.offset.device))


def as_image_list(images: Any) -> list[torch.Tensor]:
    """Raw images as a list of ``(C, H, W)`` tensors of their own dtype.

    Accepts file paths (one or a list; decoded with PIL), a list of arrays / tensors of any sizes,
    or one array / tensor: ``(H, W)`` one grey image; ``(H, W, 3|4)`` or ``(1|3, H, W)`` one
    image; ``(N, H, W)`` grey images; ``(N, C, H, W)`` when the second axis is 1, 3 or 4, else
    ``(N, H, W, C)``. A fourth (alpha) channel is dropped.
    """
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    if isinstance(images, (list, tuple)):
        out = []
        for item in images:
            if isinstance(item, (str, os.PathLike)):
                out.append(decode_image_file(Path(item)))
            else:
                out.extend(_one_or_stack(_tensor(item), single=True))
        return out
    return _one_or_stack(_tensor(images), single=False)


def _tensor(value: Any) -> torch.Tensor:
    if torch.is_tensor(value):
        return value.detach().cpu()
    array = np.asarray(value)
    if array.dtype == np.uint16:
        return torch.from_numpy(array.astype(np.int32)).to(torch.uint16)
    if array.dtype.kind not in "biuf":
        raise SpikelatentError(f"images must be numeric arrays; got dtype {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(array))


def _one_or_stack(x: torch.Tensor, single: bool) -> list[torch.Tensor]:
    if x.ndim == 2:
        return [x[None]]
    if x.ndim == 3:
        if x.shape[-1] in (3, 4) and x.shape[0] not in (1, 3):
            return [x.permute(2, 0, 1)[:3]]
        if single or x.shape[0] in (1, 3):
            return [x[:3]] if x.shape[0] in (1, 3, 4) else [x[:1]]
        return [image[None] for image in x]  # (N, H, W) grey stack
    if x.ndim == 4 and not single:
        stack = x if x.shape[1] in (1, 3, 4) else x.permute(0, 3, 1, 2)
        return [image[:3] for image in stack]
    raise SpikelatentError(
        f"images of shape {tuple(x.shape)} are not (H, W), (H, W, C), (C, H, W), (N, H, W), "
        "(N, C, H, W) or (N, H, W, C)"
    )

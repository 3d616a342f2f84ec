"""Image decoding and the per-image preprocessing shared by folders, arrays and patches.

Every source becomes a list of float32 images ``(C, H, W)`` on [0, 1] (uint8 / uint16 scaled by
torchvision's ``v2.ToDtype(scale=True)``; float arrays kept as they are), then the options
``crop`` → ``image_size`` → ``grayscale`` apply, all through ``torchvision.transforms.v2``.

Files are decoded with PIL (the decoder torchvision's ``ImageFolder`` uses by default):
torchvision's own ``decode_image`` reads neither TIFF nor BMP and is deprecated since 0.29.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms.v2 import functional as TF

from spikelatent.data.locate import one_line
from spikelatent.errors import SpikelatentError

__all__ = [
    "IMG_EXTENSIONS",
    "decode_image_file",
    "harmonise_channels",
    "parse_size",
    "preprocess",
    "to_float_image",
]


def decode_image_file(path: Path, digest: Any | None = None) -> torch.Tensor:
    """One image file (any of torchvision's ``IMG_EXTENSIONS``) as a tensor ``(C, H, W)``, C = 1 or 3, uint8 (uint16 for 16-bit files).

    Alpha is dropped, palette and CMYK images become RGB. ``digest`` (a ``hashlib`` object) is
    updated with the file's bytes, so a folder is hashed while it is read. Raises a one-line
    :class:`SpikelatentError` naming the file and PIL's reason when it cannot be decoded.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        data = path.read_bytes()
        if digest is not None:
            digest.update(data)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode = image.mode
            if mode in ("I;16", "I;16B", "I;16L"):
                array = np.asarray(image, dtype=np.uint16)
                return torch.from_numpy(array.astype(np.int32)).to(torch.uint16)[None]
            if mode in ("I", "F"):
                raise SpikelatentError(
                    f"{path}: {mode}-mode (32-bit) images are not supported; save it as 8- or "
                    f"16-bit, or put the values in an .npy array"
                )
            if mode in ("1", "L", "LA"):
                image = image.convert("L")
            elif mode != "RGB":
                image = image.convert("RGB")
            return TF.pil_to_tensor(image)
    except SpikelatentError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        reason = one_line(f"{type(error).__name__}: {error}")[:160]
        raise SpikelatentError(
            f"cannot read image {path} ({reason}); remove or replace the file"
        ) from None


def to_float_image(image: torch.Tensor) -> torch.Tensor:
    """uint8 / uint16 → float32 on [0, 1] (``v2.ToDtype(scale=True)``); floats pass through."""
    if image.dtype == torch.uint16:  # ToDtype scales uint16 only on recent torch: do it exactly
        return image.to(torch.float32) / 65535.0
    if image.dtype == torch.bool:
        return image.to(torch.float32)
    return TF.to_dtype(image, torch.float32, scale=not image.is_floating_point())


def parse_size(value: Any, option: str) -> tuple[int, int] | None:
    """``None``, an int ``S`` (square) or a pair / ``"HxW"`` string → ``(H, W)``."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        parts = [value, value]
    elif isinstance(value, Sequence):
        parts = list(value)
    else:
        parts = []
    try:
        sizes = [int(str(part).strip()) for part in parts]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise SpikelatentError(
            f"{option} must be a positive integer side S or HxW (e.g. 32 or 32x48); got {value!r}"
        )
    return sizes[0], sizes[1]


def harmonise_channels(images: list[torch.Tensor], grayscale: bool) -> list[torch.Tensor]:
    """Give every image the same channel count: 1 with ``grayscale`` (ITU-R 601-2 luma, as PIL's
    ``L``), else 3 as soon as one image is in colour (grey images repeated)."""
    if grayscale:
        return [image if image.shape[0] == 1 else TF.rgb_to_grayscale(image) for image in images]
    if any(image.shape[0] == 3 for image in images):
        return [image.expand(3, -1, -1) if image.shape[0] == 1 else image for image in images]
    return images


def preprocess(
    image: torch.Tensor,
    crop: tuple[int, int] | None,
    image_size: tuple[int, int] | None,
    where: str,
) -> torch.Tensor:
    """Center-crop to ``crop`` (first), then resize to cover ``image_size`` keeping the aspect
    ratio (antialiased bilinear) and center-crop to it. ``image`` is float ``(C, H, W)``."""
    height, width = image.shape[-2:]
    if crop is not None:
        if crop[0] > height or crop[1] > width:
            raise SpikelatentError(
                f"{where}: --crop {crop[0]}x{crop[1]} is larger than the image "
                f"({height}x{width}); choose a smaller crop"
            )
        image = TF.center_crop(image, list(crop))
        height, width = crop
    if image_size is not None and (height, width) != image_size:
        scale = max(image_size[0] / height, image_size[1] / width)
        covering = [max(image_size[0], round(height * scale)), max(image_size[1], round(width * scale))]
        image = TF.resize(image, covering, antialias=True)
        image = TF.center_crop(image, list(image_size))
    return image


def sha256_of_array(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (C order)."""
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()

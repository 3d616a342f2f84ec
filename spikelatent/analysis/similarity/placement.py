"""Stimuli placed in a model's field of view by visual degrees (Brain-Score's ``place_on_screen``)."""

from __future__ import annotations

import numpy as np

from spikelatent.errors import SpikelatentError

__all__ = ["place_stimuli"]


def place_stimuli(
    images: np.ndarray,
    model_degrees: float,
    stimulus_degrees: float,
    background: float = 0.5,
) -> tuple[np.ndarray, dict]:
    """Place stimuli that spanned ``stimulus_degrees`` in a field of view of ``model_degrees``.

    The image keeps its pixels; the canvas around it changes. With ``ratio = model_degrees /
    stimulus_degrees`` the output is ``round(ratio · H) x round(ratio · W)`` pixels: when the
    stimulus is smaller than the model's field (ratio > 1) the image sits in the centre of a
    canvas filled with ``background`` (grey padding); when it is larger (ratio < 1) its centre is
    cropped. The model's own resizing to its input then follows, so a stimulus of half the
    model's field fills half of its input, as on the screen.

    Args:
        images: ``(N, C, H, W)`` float images.
        model_degrees: visual angle spanned by the model's input.
        stimulus_degrees: visual angle the stimuli spanned in the experiment.
        background: value of the padding (0.5: mid-grey of images on [0, 1]).

    Returns:
        ``(placed images, description)``; the description (ratio, sizes, rule) goes into the
        report.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise SpikelatentError(f"images must be (N, C, H, W); got shape {images.shape}")
    for name, value in (("model", model_degrees), ("stimulus", stimulus_degrees)):
        if not np.isfinite(value) or value <= 0:
            raise SpikelatentError(f"{name} visual degrees must be > 0; got {value}")
    ratio = float(model_degrees) / float(stimulus_degrees)
    n, channels, height, width = images.shape
    size = np.round(ratio * np.array([height, width])).astype(int)
    if (size < 1).any():
        raise SpikelatentError(
            f"a {stimulus_degrees} deg stimulus in a {model_degrees} deg field leaves less than "
            "one pixel; check the degrees"
        )
    if ratio == 1:
        placed, rule = images.copy(), "none (same visual angle)"
    elif ratio > 1:
        top, left = np.round((size - [height, width]) / 2).astype(int)
        placed = np.full((n, channels, *size), background, dtype=images.dtype)
        placed[:, :, top : top + height, left : left + width] = images
        rule = f"centred on a {size[0]}x{size[1]} canvas of {background:g} (grey padding)"
    else:
        top, left = np.round(([height, width] - size) / 2).astype(int)
        placed = images[:, :, top : top + size[0], left : left + size[1]].copy()
        rule = f"centre {size[0]}x{size[1]} cropped"
    return placed, {
        "model_degrees": float(model_degrees),
        "stimulus_degrees": float(stimulus_degrees),
        "ratio": ratio,
        "background": float(background),
        "rule": rule,
    }

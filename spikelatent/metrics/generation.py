"""Generation metrics (paper Table 1, App. B.2.5-B.2.6): FID@5k, FID@10k and KID through torchmetrics.

The real set is a whole data split (the test set for Table 1); FID is reported at several numbers of
generated images (5k and 10k by default) and KID (polynomial-kernel MMD², mean ± std over random
subsets) on all generated images. Features come from a pluggable extractor (see
:mod:`spikelatent.metrics.features`), each image passing through it once although both FID and KID
use it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from tqdm.auto import tqdm

from spikelatent.errors import SpikelatentError
from spikelatent.metrics.reconstruction import check_data_range, to_unit_range

DEFAULT_N_SAMPLES = (5000, 10000)
DEFAULT_KID_SUBSETS = 100
DEFAULT_KID_SUBSET_SIZE = 1000


def sample_count_label(n: int) -> str:
    """``5000`` → ``"5k"``, ``2500`` → ``"2500"``: the suffix of ``fid_<label>`` keys."""
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


class _FeaturesOnce(nn.Module):
    """Shares one extractor between FID and KID: a batch passed twice in a row is computed once."""

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        number = getattr(extractor, "num_features", None)
        if not isinstance(number, int) or number < 1:
            raise SpikelatentError(
                "a feature extractor must expose an integer attribute num_features (its output size)"
            )
        self.extractor = extractor
        self.num_features = number
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self._last is not None and self._last[0] is images:
            return self._last[1]
        features = self.extractor(images)
        if features.dim() != 2 or features.shape != (images.shape[0], self.num_features):
            raise SpikelatentError(
                f"feature extractor returned shape {tuple(features.shape)}; expected "
                f"({images.shape[0]}, {self.num_features})"
            )
        if not torch.isfinite(features).all():
            raise SpikelatentError("feature extractor returned NaN or infinite features")
        self._last = (images, features)
        return features

    def forget(self) -> None:
        self._last = None


def _real_batches(real: torch.Tensor | Iterable[Any], batch_size: int) -> Iterable[torch.Tensor]:
    """Batches of real images from a tensor ``(N, C, H, W)`` or a loader of images / (images, labels)."""
    if isinstance(real, torch.Tensor):
        for start in range(0, real.shape[0], batch_size):
            yield real[start : start + batch_size]
        return
    for batch in real:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def _check_batch(images: Any, what: str, image_shape: tuple[int, ...] | None) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise SpikelatentError(f"{what} must be tensors of shape (batch, C, H, W)")
    if image_shape is not None and tuple(images.shape[1:]) != image_shape:
        raise SpikelatentError(
            f"{what} have shape {tuple(images.shape[1:])}; the real images have {image_shape}"
        )
    if not torch.isfinite(images).all():
        raise SpikelatentError(f"{what} contain NaN or infinite values")
    return images


@torch.no_grad()
def generation_metrics(
    real: torch.Tensor | Iterable[Any],
    generate_fn: Callable[[int], torch.Tensor],
    extractor: nn.Module,
    n_samples: int | Sequence[int] = DEFAULT_N_SAMPLES,
    max_generated: int | None = None,
    kid_subsets: int = DEFAULT_KID_SUBSETS,
    kid_subset_size: int = DEFAULT_KID_SUBSET_SIZE,
    data_range: Sequence[float] = (0.0, 1.0),
    batch_size: int = 500,
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """FID at each number of generated images in ``n_samples`` and KID on all generated images.

    Args:
        real: the real images ``(N, C, H, W)`` on ``data_range``, or an iterable (e.g. a
            DataLoader) of such batches or of ``(images, labels)``.
        generate_fn: ``generate_fn(n)`` returns ``n`` new images ``(n, C, H, W)`` on ``data_range``
            (e.g. ``model.generate``); called with at most ``batch_size`` at a time.
        extractor: an ``nn.Module`` mapping images on [0, 1] to ``(batch, num_features)`` with an
            integer ``num_features`` attribute (see :mod:`spikelatent.metrics.features`).
        n_samples: nominal numbers of generated images for FID; each gives keys ``fid_<label>``
            and ``n_generated_<label>`` (label ``5k`` for 5000).
        max_generated: cap on generated images; a nominal count above it is computed with the cap,
            and ``n_generated_<label>`` records the number actually used.
        kid_subsets, kid_subset_size: KID subsets (mean ± std over them); the size is reduced to
            the smaller of the real and generated sets if needed (recorded as ``kid_subset_size``).
        data_range: pixel range of ``real`` and of the generated images; both are mapped to [0, 1].
        batch_size: images per extractor call.
        seed: seeds the generation and KID's subset draws (the caller's RNG state is restored).
        progress: tqdm bar; ``None`` = only on a terminal.

    Returns:
        ``fid_<label>`` per nominal count, ``n_generated_<label>``, ``kid_mean``, ``kid_std``,
        ``kid_subsets``, ``kid_subset_size``, ``n_real``, ``n_generated``, ``features`` (the
        extractor's ``description``).
    """
    counts = sorted({int(n) for n in ([n_samples] if isinstance(n_samples, int) else n_samples)})
    if not counts or counts[0] < 2:
        raise SpikelatentError(f"n_samples must be integers >= 2; got {n_samples!r}")
    if max_generated is not None and (int(max_generated) < 2):
        raise SpikelatentError(
            f"the number of generated images must be >= 2; got {max_generated!r}"
        )
    if batch_size < 1 or kid_subsets < 1 or kid_subset_size < 2:
        raise SpikelatentError(
            "batch_size and kid_subsets must be >= 1 and kid_subset_size >= 2; got "
            f"{batch_size}, {kid_subsets}, {kid_subset_size}"
        )
    low, high = check_data_range(data_range)
    actual = {n: n if max_generated is None else min(n, int(max_generated)) for n in counts}
    n_generated = max(actual.values())

    features = _FeaturesOnce(extractor)
    parameter = next(extractor.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    fid = FrechetInceptionDistance(feature=features, reset_real_features=False).to(device)
    # subset_size is checked against the data only in compute(); set there once the sizes are known
    with warnings.catch_warnings():  # its note that KID keeps all features in memory: expected
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        kid = KernelInceptionDistance(feature=features, subsets=kid_subsets, subset_size=2).to(
            device
        )

    results: dict[str, Any] = {}
    cuda_devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        n_real = 0
        image_shape = None
        bar = tqdm(
            desc="FID/KID features", unit="img", disable=None if progress is None else not progress
        )
        with bar:
            for images in _real_batches(real, batch_size):
                images = _check_batch(images, "real images", image_shape)
                image_shape = tuple(images.shape[1:])
                unit = to_unit_range(images.to(device).float(), (low, high))
                fid.update(unit, real=True)
                kid.update(unit, real=True)
                n_real += images.shape[0]
                bar.update(images.shape[0])
            if n_real < 2:
                raise SpikelatentError(f"FID/KID need at least 2 real images; got {n_real}")

            produced = 0
            for n in sorted(set(actual.values())):
                while produced < n:
                    count = min(batch_size, n - produced)
                    images = _check_batch(generate_fn(count), "generated images", image_shape)
                    if images.shape[0] != count:
                        raise SpikelatentError(
                            f"generate_fn({count}) returned {images.shape[0]} images"
                        )
                    unit = to_unit_range(images.to(device).float(), (low, high))
                    fid.update(unit, real=False)
                    kid.update(unit, real=False)
                    produced += count
                    bar.update(count)
                value = float(fid.compute())
                for nominal, used in actual.items():
                    if used == n:
                        label = sample_count_label(nominal)
                        results[f"fid_{label}"] = value
                        results[f"n_generated_{label}"] = used
        features.forget()
        kid.subset_size = min(kid_subset_size, n_real, n_generated)
        kid_mean, kid_std = kid.compute()

    ordered: dict[str, Any] = {}
    for nominal in counts:
        label = sample_count_label(nominal)
        ordered[f"fid_{label}"] = results[f"fid_{label}"]
    ordered["kid_mean"] = float(kid_mean)
    ordered["kid_std"] = float(kid_std)
    for nominal in counts:
        label = sample_count_label(nominal)
        ordered[f"n_generated_{label}"] = results[f"n_generated_{label}"]
    ordered.update(
        n_real=n_real,
        n_generated=n_generated,
        kid_subsets=kid_subsets,
        kid_subset_size=kid.subset_size,
        features=getattr(extractor, "description", type(extractor).__name__),
    )
    return ordered

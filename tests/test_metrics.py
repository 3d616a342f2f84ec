"""Reconstruction (MSE, SSIM) and generation (FID, KID) metrics against independent oracles:
skimage's SSIM, numpy's MSE, and FID / unbiased KID written out with numpy and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from skimage.metrics import structural_similarity
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from spikelatent.errors import SpikelatentError
from spikelatent.metrics import generation_metrics, reconstruction_metrics

# --------------------------------------------------------------------------- helpers


class RandomConvFeatures(nn.Module):
    """A fixed random-convolution extractor: cheap, deterministic, 32-d features."""

    num_features = 32

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(1234)
        self.conv = nn.Conv2d(channels, 8, kernel_size=5, stride=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator) / 5)
            self.conv.bias.copy_(torch.randn(self.conv.bias.shape, generator=generator) / 5)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.requires_grad_(False)
        self.description = "random conv (test)"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # tanh, not ReLU: no dead units, so the feature covariances are full rank
        return self.pool(torch.tanh(self.conv(images))).flatten(1)


def serve(images: torch.Tensor):
    """A generate_fn handing out ``images`` in order."""
    position = [0]

    def generate(n: int) -> torch.Tensor:
        batch = images[position[0] : position[0] + n]
        position[0] += n
        return batch

    return generate


def features_numpy(extractor: nn.Module, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return extractor(images).double().numpy()


def fid_oracle(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance of Gaussians fitted to two feature sets (paper App. B.2.5), via scipy."""
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root = scipy.linalg.sqrtm(cov_r @ cov_f).real
    return float(((mu_r - mu_f) ** 2).sum() + np.trace(cov_r + cov_f - 2 * root))


def kid_oracle(real: np.ndarray, fake: np.ndarray) -> float:
    """Unbiased MMD² with the polynomial kernel (x·y / d + 1)³ over whole sets."""
    d = real.shape[1]

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a @ b.T / d + 1) ** 3

    m, n = len(real), len(fake)
    k_rr, k_ff, k_rf = kernel(real, real), kernel(fake, fake), kernel(real, fake)
    return float(
        (k_rr.sum() - np.trace(k_rr)) / (m * (m - 1))
        + (k_ff.sum() - np.trace(k_ff)) / (n * (n - 1))
        - 2 * k_rf.mean()
    )


def smooth_images(n: int, seed: int, channels: int = 1, size: int = 28) -> torch.Tensor:
    """Images on [0, 1] with image-like spatial correlation (blurred noise)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, channels, size // 4, size // 4, generator=generator)
    return nn.functional.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- reconstruction


@pytest.mark.parametrize("data_range", [(0.0, 1.0), (-1.0, 1.0)])
@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_and_mse_match_skimage_and_numpy(data_range, channels):
    low, high = data_range
    unit = smooth_images(6, seed=0, channels=channels)
    generator = torch.Generator().manual_seed(1)
    noisy = (unit + 0.1 * torch.randn(unit.shape, generator=generator)).clamp(0, 1)
    inputs, recons = low + (high - low) * unit, low + (high - low) * noisy

    result = reconstruction_metrics(inputs, recons, data_range, batch_size=4)

    expected_ssim = np.mean(
        [
            structural_similarity(
                x.numpy(),
                y.numpy(),
                data_range=high - low,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                channel_axis=0,
            )
            for x, y in zip(inputs, recons, strict=True)
        ]
    )
    assert result["ssim"] == pytest.approx(expected_ssim, abs=1e-3)
    assert 0.2 < result["ssim"] < 0.99  # a non-trivial value, not a saturated one
    a, b = inputs.double().numpy(), recons.double().numpy()
    assert result["mse"] == pytest.approx(np.mean((a - b) ** 2), rel=1e-5)
    a01, b01 = (a - low) / (high - low), (b - low) / (high - low)
    assert result["mse_01"] == pytest.approx(np.mean((a01 - b01) ** 2), rel=1e-5)
    assert result["n_images"] == 6


def test_identical_images_have_ssim_one_and_mse_zero():
    images = smooth_images(3, seed=2)
    result = reconstruction_metrics(images, images.clone(), (0, 1))
    assert result["mse"] == 0.0
    assert result["ssim"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    "inputs, recons, data_range",
    [
        (torch.zeros(2, 1, 28, 28), torch.zeros(2, 1, 27, 28), (0, 1)),  # shapes differ
        (torch.zeros(2, 1, 28, 28), torch.full((2, 1, 28, 28), float("nan")), (0, 1)),  # NaN
        (torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8), (0, 1)),  # smaller than the window
        (torch.zeros(2, 28, 28), torch.zeros(2, 28, 28), (0, 1)),  # not (N, C, H, W)
        (torch.zeros(2, 1, 28, 28), torch.zeros(2, 1, 28, 28), (1, 0)),  # empty range
    ],
)
def test_reconstruction_metrics_reject_bad_input(inputs, recons, data_range):
    with pytest.raises(SpikelatentError) as error:
        reconstruction_metrics(inputs, recons, data_range)
    assert "\n" not in str(error.value)


# --------------------------------------------------------------------------- FID


def test_fid_of_a_set_against_itself_is_zero():
    real = smooth_images(200, seed=3)
    result = generation_metrics(
        real, serve(real), RandomConvFeatures(), n_samples=(200,), kid_subsets=5, kid_subset_size=50
    )
    assert abs(result["fid_200"]) < 1e-3
    assert result["n_real"] == 200 and result["n_generated_200"] == 200


def test_fid_matches_scipy_and_grows_with_noise():
    extractor = RandomConvFeatures()
    real = smooth_images(300, seed=4)
    generator = torch.Generator().manual_seed(5)
    noise = torch.randn(real.shape, generator=generator)
    real_features = features_numpy(extractor, real)
    values = []
    for sigma in (0.0, 0.05, 0.1, 0.2, 0.4):
        fake = real + sigma * noise
        result = generation_metrics(
            real,
            serve(fake),
            extractor,
            n_samples=(300,),
            kid_subsets=5,
            kid_subset_size=100,
            batch_size=64,
        )
        expected = fid_oracle(real_features, features_numpy(extractor, fake))
        assert result["fid_300"] == pytest.approx(expected, rel=1e-3, abs=1e-4)
        values.append(result["fid_300"])
    assert abs(values[0]) < 1e-3
    assert all(later > earlier for earlier, later in zip(values, values[1:], strict=False))


def test_fid_at_each_sample_count_uses_the_first_generated_images():
    """FID@n streams the generated images: FID@100 is the FID of the first 100 of 250."""
    extractor = RandomConvFeatures()
    real = smooth_images(200, seed=6)
    fake = smooth_images(250, seed=7) ** 2  # a different distribution
    result = generation_metrics(
        real,
        serve(fake),
        extractor,
        n_samples=(100, 250),
        kid_subsets=5,
        kid_subset_size=50,
        batch_size=64,
    )
    real_features = features_numpy(extractor, real)
    fake_features = features_numpy(extractor, fake)
    assert result["fid_100"] == pytest.approx(
        fid_oracle(real_features, fake_features[:100]), rel=1e-3
    )
    assert result["fid_250"] == pytest.approx(fid_oracle(real_features, fake_features), rel=1e-3)
    assert result["n_generated"] == 250


def test_sample_counts_are_capped_and_recorded():
    extractor = RandomConvFeatures()
    real = smooth_images(120, seed=8)
    fake = smooth_images(200, seed=9)
    result = generation_metrics(
        real,
        serve(fake),
        extractor,
        n_samples=(5000, 10000),
        max_generated=150,
        kid_subsets=3,
        kid_subset_size=1000,
    )
    assert result["n_generated_5k"] == 150 and result["n_generated_10k"] == 150
    assert result["fid_5k"] == result["fid_10k"]
    expected = fid_oracle(features_numpy(extractor, real), features_numpy(extractor, fake[:150]))
    assert result["fid_5k"] == pytest.approx(expected, rel=1e-3)
    # KID subsets cannot be larger than the smaller set
    assert result["kid_subset_size"] == 120


def test_real_images_from_a_dataloader_give_the_same_fid_as_a_tensor():
    extractor = RandomConvFeatures()
    real = smooth_images(150, seed=10)
    fake = smooth_images(150, seed=11)
    loader = DataLoader(TensorDataset(real, torch.zeros(150, dtype=torch.long)), batch_size=40)
    kwargs = dict(n_samples=(150,), kid_subsets=3, kid_subset_size=50)
    from_tensor = generation_metrics(real, serve(fake), extractor, **kwargs)
    from_loader = generation_metrics(loader, serve(fake), extractor, **kwargs)
    assert from_loader["fid_150"] == pytest.approx(from_tensor["fid_150"], rel=1e-6)


def test_data_range_minus_one_to_one_is_mapped_to_unit_range():
    """Images on [-1, 1] are rescaled to [0, 1] before the extractor sees them."""
    extractor = RandomConvFeatures()
    real, fake = smooth_images(100, seed=12), smooth_images(100, seed=13)
    result = generation_metrics(
        2 * real - 1,
        serve(2 * fake - 1),
        extractor,
        n_samples=(100,),
        data_range=(-1, 1),
        kid_subsets=3,
        kid_subset_size=50,
    )
    expected = fid_oracle(features_numpy(extractor, real), features_numpy(extractor, fake))
    assert result["fid_100"] == pytest.approx(expected, rel=1e-3)


# --------------------------------------------------------------------------- KID


def test_kid_matches_unbiased_mmd_with_one_full_subset():
    """With subset size = set size every subset is the whole set: KID = the unbiased MMD²."""
    extractor = RandomConvFeatures()
    real = smooth_images(80, seed=14)
    fake = smooth_images(80, seed=15) ** 1.5
    result = generation_metrics(
        real, serve(fake), extractor, n_samples=(80,), kid_subsets=4, kid_subset_size=80
    )
    expected = kid_oracle(features_numpy(extractor, real), features_numpy(extractor, fake))
    assert result["kid_mean"] == pytest.approx(expected, rel=1e-3, abs=1e-7)
    assert result["kid_std"] == pytest.approx(0.0, abs=1e-6 + 1e-4 * abs(expected))


def test_kid_of_two_samples_of_one_distribution_is_near_zero_and_not_otherwise():
    extractor = RandomConvFeatures()
    real = smooth_images(400, seed=16)
    same = smooth_images(400, seed=17)
    different = smooth_images(400, seed=18) ** 3
    kwargs = dict(n_samples=(400,), kid_subsets=50, kid_subset_size=100, batch_size=100)
    result = generation_metrics(real, serve(same), extractor, **kwargs)
    assert abs(result["kid_mean"]) < 2 * result["kid_std"]
    contrast = generation_metrics(real, serve(different), extractor, **kwargs)
    assert contrast["kid_mean"] > 2 * contrast["kid_std"] > 0


def test_kid_subsets_are_seeded_and_the_callers_rng_is_left_alone():
    extractor = RandomConvFeatures()
    real, fake = smooth_images(100, seed=19), smooth_images(100, seed=20) ** 2
    kwargs = dict(n_samples=(100,), kid_subsets=10, kid_subset_size=30, seed=3)
    state = torch.get_rng_state()
    first = generation_metrics(real, serve(fake), extractor, **kwargs)
    assert torch.equal(torch.get_rng_state(), state)
    second = generation_metrics(real, serve(fake), extractor, **kwargs)
    assert first["kid_mean"] == second["kid_mean"] and first["kid_std"] == second["kid_std"]


# --------------------------------------------------------------------------- errors


def test_generation_metrics_reject_bad_generators_and_extractors():
    real = smooth_images(20, seed=21)
    extractor = RandomConvFeatures()
    with pytest.raises(SpikelatentError, match="generated images have shape"):
        generation_metrics(real, lambda n: torch.zeros(n, 1, 16, 16), extractor, n_samples=(20,))
    with pytest.raises(SpikelatentError, match="NaN"):
        generation_metrics(
            real, lambda n: torch.full((n, 1, 28, 28), float("nan")), extractor, n_samples=(20,)
        )

    class NoSize(nn.Module):
        def forward(self, images):
            return images.flatten(1)

    with pytest.raises(SpikelatentError, match="num_features"):
        generation_metrics(real, serve(real), NoSize(), n_samples=(20,))
    with pytest.raises(SpikelatentError, match="n_samples"):
        generation_metrics(real, serve(real), extractor, n_samples=(1,))
    with pytest.raises(SpikelatentError, match="at least 2 real"):
        generation_metrics(real[:1], serve(real), extractor, n_samples=(20,))

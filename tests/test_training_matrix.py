"""Training matrix: every latent family x every architecture learns; the KL in the loss is exact.

Oracles are independent of spikelatent's own maths: closed forms evaluated by hand in numpy
float64, exact series sums of ``scipy.stats`` pmfs, and parameter counts of the layers by hand.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import expit

from spikelatent.checkpoints import load
from spikelatent.config import FitConfig
from spikelatent.data import make_datamodule
from spikelatent.model import VAE

# (model, kl, relax) for the eight models of the paper.
VARIANTS = [
    ("gaussian", "ds", "ct"),
    ("laplace", "ds", "ct"),
    ("categorical", "ds", "ct"),
    ("poisson", "ds", "ct"),
    ("negbio", "mc", "gumbel"),
    ("negbio", "mc", "ct"),
    ("negbio", "ds", "gumbel"),
    ("negbio", "ds", "ct"),
]
ARCHITECTURES = ["linear", "mlp", "conv"]
IMAGE_SHAPE = (1, 28, 28)
# training_step logs through self.log; without a Trainer Lightning only warns.
NO_TRAINER_LOG = "ignore:You are trying to `self.log\\(\\)`"


def tiny_vae(model: str, kl: str, relax: str, arch: str, latent_dim: int = 16, **overrides) -> VAE:
    """A small VAE whose schedules are frozen: temperature = temperature_start, beta = 1.

    Without a Trainer ``global_step`` is 0; with a huge ``_total_steps`` the anneals sit at their
    start values, and ``beta_start = beta`` makes the KL weight 1 from the first step.
    """
    config = FitConfig(model=model, kl=kl, relax=relax, arch=arch, latent_dim=latent_dim,
                       batch_size=16, beta=1.0, beta_start=1.0, **overrides)
    vae = VAE(config.resolved().to_dict(), IMAGE_SHAPE, (0.0, 1.0))
    vae._total_steps = 10**6
    return vae


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; two OpenMP threads on a busy 2-core machine spin
    (measured: 0.14 s vs 4.4 s for 12 MLP steps). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """16 fixed synthetic images (1, 28, 28) on [0, 1]."""
    x, _ = make_datamodule("synthetic", n=64, batch_size=16).split_tensors("train")
    return x[:16].clone()


# --------------------------------------------------------------------------- 1. training matrix
@pytest.mark.filterwarnings(NO_TRAINER_LOG)
@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize(("model", "kl", "relax"), VARIANTS)
def test_every_family_and_architecture_lowers_the_loss(model, kl, relax, arch, images):
    torch.manual_seed(0)
    vae = tiny_vae(model, kl, relax, arch)
    assert vae.beta() == 1.0 and vae.temperature() == pytest.approx(1.0)
    optimizer = torch.optim.Adam(vae.parameters(), lr=2e-3)
    labels = torch.zeros(len(images), dtype=torch.long)
    losses = []
    for step in range(24):
        optimizer.zero_grad()
        loss = vae.training_step((images, labels), step)
        assert torch.isfinite(loss), f"step {step}: loss {loss}"
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    # Relaxed samplers make single steps noisy: compare 3-step averages, and ask for a real drop.
    assert last < 0.95 * first, f"{vae.variant}/{arch}: loss {first:.2f} -> {last:.2f} ({losses})"


# --------------------------------------------------------------------------- 2. closed-form KLs
def _spread_parameters(vae: VAE, seed: int) -> None:
    """Move the learnable prior and the encoder's bias away from their initial values so that
    units differ in dispersion/rate and the posterior is far from the prior (KL not ~0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in vae.family.latent.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator))
        bias = vae.family.encoder.projection.bias
        bias.copy_(1.5 * torch.randn(bias.shape, generator=generator))


def _nb_params(distribution) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(r, p, 1 - p) in float64; p from the logits so that 1 - p keeps its digits near p = 1."""
    logits = distribution.logits.detach().double().numpy()
    return distribution.total_count.detach().double().numpy(), expit(logits), expit(-logits)


def _reference_loss(vae: VAE, x: torch.Tensor, seed: int, kl_per_image: np.ndarray) -> float:
    """SSE + beta * KL averaged over the batch, replaying training_step's random draws."""
    torch.manual_seed(seed)
    with torch.no_grad():
        posterior = vae.posterior(x)
        z = vae.family.latent.rsample(posterior, vae.temperature())
        sse = (vae.decode(z) - x).pow(2).flatten(1).sum(-1).double().numpy()
    return float(np.mean(sse + vae.beta() * kl_per_image))


@pytest.mark.filterwarnings(NO_TRAINER_LOG)
@pytest.mark.parametrize("relax", ["ct", "gumbel"])
def test_ds_kl_in_the_loss_is_the_shared_dispersion_closed_form(relax, images):
    torch.manual_seed(1)
    vae = tiny_vae("negbio", "ds", relax, "linear")
    _spread_parameters(vae, seed=11)
    with torch.no_grad():
        posterior, prior = vae.posterior(images), vae.prior()
        kl_used = vae.family.latent.kl(posterior, vae.temperature())
        kl_torch = torch.distributions.kl_divergence(posterior, prior).sum(-1)
    r_q, q, one_minus_q = _nb_params(posterior)
    r_p, p, one_minus_p = _nb_params(prior)
    np.testing.assert_array_equal(r_q, np.broadcast_to(r_p, r_q.shape))  # DS: one dispersion
    assert np.ptp(r_p) > 0.5, "units should differ in dispersion"
    by_hand = (r_q * (np.log(q / p) + one_minus_q / q * np.log(one_minus_q / one_minus_p))).sum(-1)
    assert by_hand.min() > 0.1, "posterior should be far from the prior"
    np.testing.assert_allclose(kl_used.double().numpy(), by_hand, rtol=1e-5)
    np.testing.assert_allclose(kl_torch.double().numpy(), by_hand, rtol=1e-5)

    # Series oracle for the first image: sum_z q(z) log(q(z) / p(z)) with scipy's NB pmf
    # (scipy's nbinom(n, p) has p = success probability, the paper's convention).
    support = np.arange(0, 5000)[:, None]
    log_q = stats.nbinom.logpmf(support, r_q[0], q[0])
    log_p = stats.nbinom.logpmf(support, r_p, p)
    series = (np.exp(log_q) * (log_q - log_p)).sum()
    assert stats.nbinom.sf(support[-1, 0], r_q[0], q[0]).max() < 1e-12  # truncation negligible
    np.testing.assert_allclose(by_hand[0], series, rtol=1e-6)

    # The loss returned by training_step is SSE + beta * (this KL), averaged over the batch.
    seed = 5
    torch.manual_seed(seed)
    loss = vae.training_step((images, torch.zeros(len(images), dtype=torch.long)), 0)
    assert float(loss.detach()) == pytest.approx(_reference_loss(vae, images, seed, by_hand), rel=1e-5)


@pytest.mark.filterwarnings(NO_TRAINER_LOG)
def test_poisson_kl_in_the_loss_is_the_closed_form(images):
    torch.manual_seed(2)
    vae = tiny_vae("poisson", "ds", "ct", "linear")
    _spread_parameters(vae, seed=12)
    with torch.no_grad():
        posterior, prior = vae.posterior(images), vae.prior()
        kl_used = vae.family.latent.kl(posterior, vae.temperature())
    a = posterior.rate.double().numpy()
    b = prior.rate.double().numpy()
    by_hand = (a * np.log(a / b) - a + b).sum(-1)
    assert by_hand.min() > 0.1, "posterior should be far from the prior"
    np.testing.assert_allclose(kl_used.double().numpy(), by_hand, rtol=1e-5)
    # Series oracle on the first image with scipy's Poisson pmf.
    support = np.arange(0, 2000)[:, None]
    log_q, log_p = stats.poisson.logpmf(support, a[0]), stats.poisson.logpmf(support, b)
    np.testing.assert_allclose(by_hand[0], (np.exp(log_q) * (log_q - log_p)).sum(), rtol=1e-6)

    seed = 6
    torch.manual_seed(seed)
    loss = vae.training_step((images, torch.zeros(len(images), dtype=torch.long)), 0)
    assert float(loss.detach()) == pytest.approx(_reference_loss(vae, images, seed, by_hand), rel=1e-5)


# --------------------------------------------------------------------------- 3. MC KL is unbiased
@pytest.mark.parametrize("temperature", [0.0, 0.01])
def test_mc_kl_with_hard_samples_matches_the_exact_series(images, temperature):
    """NegBio MC: the estimator with exact counts (temperature 0) averages to the true KL between
    NBs of *different* dispersions, which has no closed form: sum the pmf series per unit. At a low
    temperature the training path (relaxed samples, the first one decoded) does too, up to the
    relaxation's small bias."""
    torch.manual_seed(3)
    vae = tiny_vae("negbio", "mc", "ct", "linear", latent_dim=4)
    with torch.no_grad():  # prior r and mean r(1-p)/p per unit; logit p = log r - log mean
        log_r = torch.log(torch.tensor([0.5, 1.0, 2.0, 4.0]))
        vae.family.latent.prior_log_dispersion.copy_(log_r)
        vae.family.latent.prior_logit_prob.copy_(log_r - torch.log(torch.tensor([0.5, 2.0, 1.0, 3.0])))
        # Encoder output (u_p, u_r): move every unit's success probability and dispersion.
        vae.family.encoder.projection.weight.mul_(0.01)
        vae.family.encoder.projection.bias.copy_(torch.tensor([-1.0, 0.8, -0.6, 1.2, 0.7, -0.9, 1.1, -0.5]))
    repeats = 2000
    batch = images[:1].expand(repeats, *IMAGE_SHAPE)
    with torch.no_grad():
        posterior, prior = vae.posterior(batch), vae.prior()
        if temperature == 0.0:
            estimates = vae.family.latent.kl(posterior, 0.0)  # (repeats,), one per copy
        else:
            decoded, estimates = vae.family.latent.rsample_with_kl(posterior, temperature)
            assert decoded.shape == (repeats, 4) and torch.isfinite(decoded).all()
        estimates = estimates.double().numpy()
    r_q, q, _ = _nb_params(posterior)
    r_p, p, _ = _nb_params(prior)
    r_q, q = r_q[0], q[0]
    # The regime the MC estimator exists for: every unit's posterior dispersion differs.
    assert np.all(np.abs(np.log(r_q / r_p)) > 0.1), (r_q, r_p)

    support = np.arange(0, 20000)[:, None]
    assert stats.nbinom.sf(support[-1, 0], r_q, q).max() < 1e-12  # truncation negligible
    log_q = stats.nbinom.logpmf(support, r_q, q)
    log_p = stats.nbinom.logpmf(support, r_p, p)
    exact = float((np.exp(log_q) * (log_q - log_p)).sum())

    mean = estimates.mean()
    standard_error = estimates.std(ddof=1) / math.sqrt(repeats)
    assert exact > 0.5 and standard_error < 0.05 * exact, (exact, standard_error)
    relaxation_bias = 0.0 if temperature == 0.0 else 0.02 * exact
    assert abs(mean - exact) < 3 * standard_error + relaxation_bias, (mean, exact, standard_error)


# --------------------------------------------------------------------------- 4. two-process DDP
@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_matrix") / "run"
    command = [sys.executable, "-m", "spikelatent.cli", "fit", "--data", "synthetic",
               "--data-option", "n=128", "--latent-dim", "8", "--arch", "linear", "--epochs", "1",
               "--batch-size", "32", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
               "--out", str(out), "--no-progress"]
    # One OpenMP thread per process: two processes already fill two cores.
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_ddp_checkpoint_has_the_single_process_parameters_and_finite_losses(ddp_run):
    model = load(ddp_run)
    fresh = VAE(model.config, IMAGE_SHAPE)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    # By hand (negbio DS, linear, latent 8): encoder 784*8 + 8, decoder 8*784 + 784,
    # prior log r and logit p: 8 + 8.
    by_hand = (784 * 8 + 8) + (8 * 784 + 784) + 2 * 8
    assert count(fresh) == by_hand
    assert count(model) == by_hand
    # The raw checkpoint holds exactly the single-process model's tensors (no DDP "module." prefix).
    state = torch.load(ddp_run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    fresh_state = fresh.state_dict()
    assert set(state) == set(fresh_state)
    assert all(state[key].shape == fresh_state[key].shape for key in state)
    # ...plus the preprocessor's four scalar buffers (contrast epsilon, offset, scale, fitted).
    assert sum(tensor.numel() for tensor in state.values()) == by_hand + 4
    assert {key for key in state if key.startswith("preprocessor.")} == {
        "preprocessor.contrast_epsilon", "preprocessor.offset", "preprocessor.scale",
        "preprocessor.fitted"}

    rows = list(csv.DictReader((ddp_run / "metrics.csv").open()))
    assert len(rows) == 1
    for column in ("train_loss", "val_loss"):
        assert rows[0][column] != "" and math.isfinite(float(rows[0][column])), (column, rows[0])

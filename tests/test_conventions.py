"""Training conventions as options: objective scale, prior start, presets, networks, collapse guard.

Oracles: the published loss written out by hand, scipy.stats for the prior's moments, the YAML
files themselves for the presets, and metrics.csv / stderr for the collapse guard.
"""

from __future__ import annotations

import csv
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.stats
import torch
import yaml
from lightning.pytorch.callbacks import Timer
from scipy.special import digamma, gammaln

from spikelatent.callbacks import CollapseWarning
from spikelatent.cli import build_parser, main
from spikelatent.commands.fit import config_from_args
from spikelatent.config import PRESET_DIR, FitConfig, available_presets, load_preset
from spikelatent.errors import SpikelatentError
from spikelatent.model import VAE
from spikelatent.workflows.fit import fit

IMAGE_SHAPE = (1, 28, 28)


def _vae(**options) -> VAE:
    config = FitConfig.from_dict({"latent_dim": 16, **options}).resolved()
    vae = VAE(config.to_dict(), IMAGE_SHAPE, (0.0, 1.0))
    vae._total_steps = 100
    return vae


@pytest.mark.parametrize(("arch", "divisor"), [("conv", 1 * 28), ("mlp", 1), ("linear", 1)])
def test_published_objective_is_the_published_formula(arch, divisor):
    torch.manual_seed(0)
    vae = _vae(objective="published", arch=arch)
    x, y = torch.rand(6, *IMAGE_SHAPE), torch.rand(6, *IMAGE_SHAPE)
    kl = torch.rand(6, 16) * 3  # (batch, unit)
    beta = 0.7
    sse = (y - x).pow(2).flatten(1).sum(-1)
    ours = vae.objective(sse, kl.sum(-1), beta)
    # The published code: ((y - x)**2).sum(-1).mean() + beta * kl.mean() on (batch, C, H, W)
    # images for conv, on flattened (batch, C*H*W) images for linear/mlp.
    shaped = (y, x) if arch == "conv" else (y.flatten(1), x.flatten(1))
    published = ((shaped[0] - shaped[1]) ** 2).sum(-1).mean() + beta * kl.mean()
    torch.testing.assert_close(ours, published, rtol=1e-6, atol=0)
    # The documented mapping: C*H times the published loss is the sum objective at
    # beta_eff = beta * C*H / K.
    summed = _vae(objective="sum", arch=arch).objective(sse, kl.sum(-1), beta * divisor / 16)
    torch.testing.assert_close(summed, divisor * published, rtol=1e-6, atol=0)


@pytest.mark.parametrize(("kl", "relax"), [("ds", "ct"), ("mc", "gumbel")])
def test_unit_prior_start_has_mean_one_and_fano_two(kl, relax):
    prior = _vae(model="negbio", kl=kl, relax=relax, prior_init="unit").prior()
    r = prior.total_count.detach().double().numpy()
    p = prior.probs.detach().double().numpy()
    oracle = scipy.stats.nbinom(n=r, p=p)
    assert oracle.mean() == pytest.approx([1.0] * 16, rel=1e-6)
    assert (oracle.var() / oracle.mean()) == pytest.approx([2.0] * 16, rel=1e-6)
    poisson = _vae(model="poisson", prior_init="unit").prior()
    assert poisson.mean.detach().numpy() == pytest.approx([1.0] * 16, rel=1e-6)


def test_sparse_prior_start_is_the_reference_range():
    prior = _vae(model="negbio", prior_init="sparse").prior()
    log_mean = prior.mean.detach().log()
    assert log_mean.min() >= -6 - 1e-5 and log_mean.max() <= -2 + 1e-5


def test_absolute_posterior_logits_ignore_the_prior():
    vae = _vae(model="negbio", posterior_logits="absolute", modulation_bound=5.0)
    with torch.no_grad():
        vae.family.latent.prior_logit_prob.fill_(2.0)
    h = torch.tensor([[-100.0, -1.0, 0.0, 1.0, 100.0] + [0.0] * 11])
    with torch.no_grad():
        logit_q = vae.family.latent.posterior(h).logits[0, :5]
    # clamp(u, -5, 5), softly: identity inside, saturating at the bound.
    torch.testing.assert_close(logit_q[1:4], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-4, rtol=0)
    assert -5.0 <= float(logit_q[0]) < -4.8 and 4.8 < float(logit_q[4]) <= 5.0


def test_gamma_mixer_kl_is_the_closed_form_gamma_kl_and_bounds_the_nb_kl():
    torch.manual_seed(1)
    vae = _vae(model="negbio", kl="mc", mc_kl="gamma")
    h = torch.randn(4, 32) * 0.5
    with torch.no_grad():
        posterior = vae.family.latent.posterior(h)
        kl = vae.family.latent.kl(posterior, 0.0).double()
        prior = vae.prior()
    # Oracle: the KL of the two Gamma rate distributions written out (shape a, rate b):
    # (a_q - a_p) psi(a_q) - lgamma(a_q) + lgamma(a_p) + a_p (log b_q - log b_p) + a_q (b_p - b_q) / b_q.
    a_q = posterior.total_count.detach().double().numpy()
    b_q = (posterior.probs / (1 - posterior.probs)).detach().double().numpy()
    a_p = prior.total_count.detach().double().numpy()
    b_p = (prior.probs / (1 - prior.probs)).detach().double().numpy()
    oracle = ((a_q - a_p) * digamma(a_q) - gammaln(a_q) + gammaln(a_p)
              + a_p * (np.log(b_q) - np.log(b_p)) + a_q * (b_p - b_q) / b_q).sum(-1)
    assert kl.numpy() == pytest.approx(oracle, rel=1e-4)
    # The data-processing inequality: above the exact NB KL (series over counts, scipy pmfs).
    z = np.arange(0, 400)[:, None, None]
    q_logpmf = scipy.stats.nbinom(n=a_q, p=posterior.probs.double().numpy()).logpmf(z)
    p_logpmf = scipy.stats.nbinom(n=a_p, p=prior.probs.double().numpy()).logpmf(z)
    exact = (np.exp(q_logpmf) * (q_logpmf - p_logpmf)).sum(0).sum(-1)
    assert (kl.numpy() >= exact - 1e-9).all()


def test_fixed_gumbel_support_keeps_counts_within_it():
    torch.manual_seed(0)
    vae = _vae(model="negbio", relax="gumbel", gumbel_support=4)
    h = torch.full((64, 16), -8.0)  # logit q very low: posterior means far above 4
    with torch.no_grad():
        z = vae.family.latent.rsample(vae.family.latent.posterior(h), 0.01)
    assert float(z.max()) <= 4.0 + 1e-5
    assert float(z.mean()) > 3.5  # the truncated pmf puts its mass at the top of the support


def test_unit_norm_decoder_columns_and_published_widths():
    vae = _vae(model="negbio", encoder_channels=[32, 64], decoder_channels=[64, 128],
               encoder_layer_norm=True, decoder_unit_norm=True)
    first = vae.family.decoder.expand[0]
    assert first.weight.shape == (128 * 7 * 7, 16)
    torch.testing.assert_close(first.weight.norm(dim=0), torch.ones(16), rtol=1e-5, atol=1e-6)
    assert isinstance(vae.family.decoder.expand[1], torch.nn.Identity)  # no nonlinearity after it
    assert isinstance(vae.family.encoder.norm, torch.nn.LayerNorm)
    convs = [m for m in vae.family.decoder.upsample if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(128, 64), (64, 1)]


def test_adam_and_constant_learning_rate():
    vae = _vae(optimizer="adam", lr=1e-3, lr_schedule="constant", warmup_fraction=0.0)
    optimizer = vae.configure_optimizers()["optimizer"]
    assert type(optimizer) is torch.optim.Adam
    assert [vae.learning_rate_factor(step) for step in (0, 10, 50, 99)] == [1.0] * 4


def test_fused_adam_on_the_cpu_takes_the_same_steps_as_the_reference_loop():
    vae = _vae(optimizer="adam", lr=1e-3)
    optimizer = vae.configure_optimizers()["optimizer"]
    assert optimizer.defaults["fused"] is True
    reference_parameters = [p.detach().clone().requires_grad_() for p in vae.parameters()]
    reference = torch.optim.Adam(reference_parameters, lr=1e-3, betas=(0.9, 0.999), foreach=False)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        for ours, theirs in zip(vae.parameters(), reference_parameters, strict=True):
            ours.grad = torch.randn(ours.shape, generator=generator)
            theirs.grad = ours.grad.clone()
        optimizer.step()
        reference.step()
    for ours, theirs in zip(vae.parameters(), reference_parameters, strict=True):
        torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-5, atol=1e-7)
    assert type(_vae(optimizer="adamax").configure_optimizers()["optimizer"]) is torch.optim.Adamax


def test_presets_hold_only_known_options_and_flags_override_them():
    assert {"paper", "poisson-vae"} <= set(available_presets())
    for name in available_presets():
        values = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())
        assert load_preset(name) == {**values, "preset": name}
    args = build_parser().parse_args(["fit", "--preset", "paper", "--lr", "0.01",
                                      "--no-decoder-unit-norm", "--data", "synthetic"])
    config, _ = config_from_args(args)
    paper = yaml.safe_load((PRESET_DIR / "paper.yaml").read_text())
    assert config.lr == 0.01 and config.decoder_unit_norm is False
    for name, value in paper.items():
        if name not in ("lr", "decoder_unit_norm"):
            assert getattr(config, name) == value, name


def test_preset_round_trips_through_config_yaml(tmp_path):
    args = build_parser().parse_args(["fit", "--preset", "paper", "--data", "synthetic",
                                      "--batch-size", "64"])
    config, _ = config_from_args(args)
    config.save(tmp_path / "config.yaml")
    again, _ = config_from_args(build_parser().parse_args(["fit", "--config",
                                                           str(tmp_path / "config.yaml")]))
    assert again.to_dict() == config.to_dict()
    assert again.preset == "paper" and again.batch_size == 64 and again.optimizer == "adam"


def test_preset_given_to_the_constructor_fills_the_defaults():
    config = FitConfig(preset="paper", lr=0.05).resolved()
    assert config.optimizer == "adam" and config.lr == 0.05 and config.objective == "published"


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--preset", "nope"], "--preset"),
        (["--prior-init", "dense"], "--prior-init"),
        (["--objective", "mean"], "--objective"),
        (["--gumbel-support", "0"], "--gumbel-support"),
        (["--modulation-bound", "-1"], "--modulation-bound"),
        (["--encoder-channels", "32,x"], "--encoder-channels"),
    ],
)
def test_bad_convention_options_exit_2_with_one_line(flags, fragment, capsys, tmp_path):
    try:  # argparse refuses a bad choice itself (SystemExit); validation returns 2
        status = main(["fit", "--data", "synthetic", "--out", str(tmp_path / "run"), *flags])
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert fragment in error[-1]
    assert not (tmp_path / "run").exists()


def test_wrong_width_count_is_one_line_error():
    with pytest.raises(SpikelatentError, match="channels must list 2"):
        _vae(encoder_channels=[32, 64, 64])


SMALL = {"data": "synthetic", "data_options": {"n": 512}, "latent_dim": 16, "batch_size": 32,
         "arch": "mlp", "epochs": 3, "lr": 5e-3, "seed": 0}


def _collapse_column(run_dir):
    with (run_dir / "metrics.csv").open() as stream:
        return [int(row["collapse_warning"]) for row in csv.DictReader(stream)]


def test_collapse_guard_fires_once_on_a_collapsed_model(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_dir = fit({**SMALL, "beta": 1e4, "beta_start": 1e4, "out": str(tmp_path / "run")},
                      progress=False)
    collapse = [w for w in caught if issubclass(w.category, CollapseWarning)]
    assert len(collapse) == 1
    message = str(collapse[0].message)
    assert "\n" not in message and "--beta" in message and "--prior-init" in message
    assert _collapse_column(run_dir) == [1, 1, 1]


def test_collapse_guard_is_silent_on_a_healthy_run(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_dir = fit({**SMALL, "beta": 0.1, "out": str(tmp_path / "run")}, progress=False)
    assert not [w for w in caught if issubclass(w.category, CollapseWarning)]
    assert _collapse_column(run_dir) == [0, 0, 0]
    with (run_dir / "metrics.csv").open() as stream:
        assert float(list(csv.DictReader(stream))[-1]["val_kl"]) > 1.0  # checked, and healthy


def test_cli_prints_the_collapse_warning_as_one_line(tmp_path, capsys):
    status = main(["fit", "--data", "synthetic", "--data-option", "n=96", "--latent-dim", "8",
                   "--arch", "mlp", "--epochs", "1", "--beta", "10000", "--beta-start", "10000",
                   "--out", str(tmp_path / "run"), "--no-progress"])
    assert status == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "posterior collapse" in line]
    assert len(lines) == 1 and lines[0].startswith("spikelatent: warning: posterior collapse")


def test_a_resumed_run_that_had_warned_stays_silent(tmp_path):
    collapsed = {**SMALL, "epochs": 1, "beta": 1e4, "beta_start": 1e4, "out": str(tmp_path / "run")}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_dir = fit(collapsed, progress=False)
    assert len([w for w in caught if issubclass(w.category, CollapseWarning)]) == 1
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]
    assert state["CollapseGuard"] == {"warned": True}

    config = FitConfig.from_yaml(run_dir / "config.yaml")
    config.epochs = 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(config, resume=True, progress=False)
    assert not [w for w in caught if issubclass(w.category, CollapseWarning)]
    assert _collapse_column(run_dir) == [1, 1]  # still collapsed: silent because it had warned


def test_beta_auto_is_the_published_weighting():
    # C * H / K on the sum objective: 28 / 16 for (1, 28, 28) and 16 units; 1 on the published one.
    assert _vae(beta="auto").final_beta == pytest.approx(28 / 16)
    assert _vae(beta="auto", objective="published").final_beta == 1.0
    assert _vae(beta=0.3).final_beta == 0.3
    vae = _vae(beta="auto", beta_start=0.0, beta_hold_fraction=0.0, beta_warmup_fraction=0.5)
    assert vae.beta(0) == 0.0 and vae.beta(50) == pytest.approx(28 / 16)


def test_information_summary_matches_the_scipy_series_kl():
    from spikelatent.analysis.summaries import information_summary

    torch.manual_seed(2)
    vae = _vae(model="negbio", arch="mlp").eval()
    with torch.no_grad():  # half the units pinned to the prior: they carry no information
        vae.family.encoder.projection.weight[8:] = 0.0
        vae.family.encoder.projection.bias[8:] = 0.0
    images = torch.rand(12, *IMAGE_SHAPE)
    summary = information_summary(vae, images, batch_size=5)
    with torch.no_grad():
        posterior, prior = vae.posterior(images), vae.prior()
    z = np.arange(0, 600)[:, None, None]
    q_log = scipy.stats.nbinom(n=posterior.total_count.double().numpy(),
                               p=posterior.probs.double().numpy()).logpmf(z)
    p_log = scipy.stats.nbinom(n=prior.total_count.double().numpy(),
                               p=prior.probs.double().numpy()).logpmf(z)
    per_unit = (np.exp(q_log) * (q_log - p_log)).sum(0)  # (image, unit)
    assert summary["kl_per_image_mean"] == pytest.approx(per_unit.sum(-1).mean(), rel=1e-4)
    assert summary["n_informative"] == int((per_unit.mean(0) > 0.01).sum()) <= 8
    assert summary["n_units"] == 16


def _on_clock(vae: VAE, global_step: int, elapsed_seconds: float) -> VAE:
    """Attach a stand-in trainer at ``global_step`` whose Lightning Timer has run ``elapsed_seconds``."""
    timer = Timer(duration=None)
    timer._offset = elapsed_seconds  # what a resumed Timer reports before its stage starts
    vae._trainer = SimpleNamespace(callbacks=[timer], global_step=global_step)
    return vae


def test_schedules_follow_the_wall_clock_budget_when_it_is_further_on():
    options = dict(model="negbio", max_minutes=10.0, temperature_start=1.0, temperature_end=0.2,
                   temperature_anneal_fraction=1.0, beta=2.0, beta_start=0.0,
                   beta_warmup_fraction=0.5, lr_schedule="cosine", lr=1e-3, lr_min=1e-5)
    # 20 of 100 steps but 6 of 10 minutes: the schedules stand at step 60.
    vae = _on_clock(_vae(**options), global_step=20, elapsed_seconds=360.0)
    assert vae.schedule_step() == 60
    assert vae.temperature() == pytest.approx(1.0 + (0.2 - 1.0) * 60 / 100)
    assert vae.beta() == 2.0  # warm-up over the first 50 steps is done
    cosine = 1e-2 + (1 - 1e-2) * 0.5 * (1 + math.cos(math.pi * 59 / 99))  # warm-up = 1 step
    assert vae._scheduled_learning_rate_factor(20) == pytest.approx(cosine)
    # The steps ahead of the clock: the steps rule; an explicit step is taken as given.
    vae = _on_clock(_vae(**options), global_step=80, elapsed_seconds=60.0)
    assert vae.schedule_step() == 80 and vae.temperature(10) == pytest.approx(1.0 - 0.8 * 0.1)
    # Past the budget the schedules stay at their end.
    assert _on_clock(_vae(**options), global_step=5, elapsed_seconds=9999.0).schedule_step() == 100
    # Without --max-minutes the clock is ignored.
    no_budget = {**options, "max_minutes": None}
    assert _on_clock(_vae(**no_budget), global_step=20, elapsed_seconds=360.0).schedule_step() == 20

"""Models and training: the eight variants, schedules, run directory, resume, failures, CLI errors."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from spikelatent.checkpoints import load
from spikelatent.cli import main
from spikelatent.config import FitConfig
from spikelatent.errors import CheckpointError, SpikelatentError
from spikelatent.latents import PAPER_MODELS
from spikelatent.model import VAE, TrainingDivergedError

VARIANTS = [
    ("gaussian", "ds", "ct", "G-VAE"),
    ("laplace", "ds", "ct", "L-VAE"),
    ("categorical", "ds", "ct", "C-VAE"),
    ("poisson", "ds", "ct", "P-VAE"),
    ("negbio", "mc", "gumbel", "NegBio-VAE MC-G"),
    ("negbio", "mc", "ct", "NegBio-VAE MC-C"),
    ("negbio", "ds", "gumbel", "NegBio-VAE DS-G"),
    ("negbio", "ds", "ct", "NegBio-VAE DS-C"),
]

SMALL = dict(data="synthetic", data_options={"n": 96}, latent_dim=16, batch_size=32,
             arch="mlp", epochs=2, seed=3)


def tiny_model(model: str, kl: str = "ds", relax: str = "ct", **overrides) -> VAE:
    config = FitConfig(model=model, kl=kl, relax=relax, latent_dim=16, arch="mlp", **overrides)
    vae = VAE(config.resolved().to_dict(), (1, 28, 28), (0.0, 1.0))
    vae._total_steps = 100
    return vae


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_the_package_table_of_paper_models_matches_the_variants():
    assert PAPER_MODELS == {variant: (model, kl, relax) for model, kl, relax, variant in VARIANTS}


@pytest.mark.parametrize(("model", "kl", "relax", "variant"), VARIANTS)
def test_every_variant_trains_one_step(model, kl, relax, variant):
    torch.manual_seed(0)
    vae = tiny_model(model, kl, relax)
    assert vae.variant == variant
    x = torch.rand(8, 1, 28, 28)
    loss = vae.training_step((x, torch.zeros(8, dtype=torch.long)), 0)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in vae.family.encoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    if vae.family.latent.is_count:
        # The prior's parameters are learnable and receive gradient through the KL.
        prior_grads = [p.grad for p in vae.family.latent.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in prior_grads)
        assert any(g.abs().sum() > 0 for g in prior_grads)
    assert vae.reconstruct(x).shape == x.shape
    assert vae.generate(3).shape == (3, 1, 28, 28)


def test_negbio_posterior_follows_the_nb_formulas():
    """Posterior mean/variance/Fano computed by hand from (r, q) with q = sigmoid(logit p + u)."""
    torch.manual_seed(1)
    vae = tiny_model("negbio", "ds", "ct")
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        posterior = vae.posterior(x)
        r, logit_q = vae.family.latent.posterior_parameters(vae.family.encode(x))
        q = torch.sigmoid(logit_q.double())  # float64 oracle: 1 - q cancels in float32
        r_prior = vae.prior().total_count
    assert torch.equal(posterior.total_count, r_prior.expand_as(logit_q))  # DS: shared dispersion
    assert torch.all((posterior.probs > 0) & (posterior.probs < 1))
    r = r.double().exp()
    assert torch.allclose(posterior.mean.double(), r * (1 - q) / q, rtol=1e-4)
    assert torch.allclose(posterior.variance.double(), r * (1 - q) / q**2, rtol=1e-4)
    assert torch.allclose(posterior.fano_factor.double(), 1 / q, rtol=1e-5)
    # Posterior mean counts are soft-clamped below e^5 per window.
    assert float(posterior.mean.max()) <= math.exp(5) * 1.0001


def test_default_schedules_are_the_measured_ones():
    vae = tiny_model("negbio", beta=2.0)
    vae._total_steps = 1000
    # Temperature 1 -> 0.24 over the whole run; beta 0 -> 2.0 over the first 250 steps; constant lr.
    assert vae.temperature(0) == pytest.approx(1.0)
    assert vae.temperature(500) == pytest.approx(1.0 - 0.76 * 0.5)
    assert vae.temperature(1000) == pytest.approx(0.24)
    assert vae.beta(0) == 0.0
    assert vae.beta(125) == pytest.approx(1.0)
    assert vae.beta(250) == vae.beta(900) == pytest.approx(2.0)
    assert [vae.learning_rate_factor(step) for step in (0, 500, 1000)] == [1.0, 1.0, 1.0]


def test_schedules_follow_the_reference_conventions():
    vae = tiny_model("negbio", preset="poisson-vae", beta=2.0)
    vae._total_steps = 1000
    # Temperature: 1.0 -> 0.05 linearly over the first 500 steps, then constant.
    assert vae.temperature(0) == pytest.approx(1.0)
    assert vae.temperature(250) == pytest.approx(1.0 - 0.95 * 0.5)
    assert vae.temperature(500) == pytest.approx(0.05)
    assert vae.temperature(900) == pytest.approx(0.05)
    # beta: 1e-4 for 10 steps (1%), then linear to 2.0 over 500 steps.
    assert vae.beta(5) == pytest.approx(1e-4)
    assert vae.beta(10 + 250) == pytest.approx(1e-4 + (2.0 - 1e-4) * 0.5)
    assert vae.beta(600) == pytest.approx(2.0)
    # Learning rate: warm-up over 10 steps, cosine to lr_min at the end.
    assert vae.learning_rate_factor(4) == pytest.approx(0.5)
    assert vae.learning_rate_factor(10) == pytest.approx(1.0)
    assert vae.learning_rate_factor(1000) == pytest.approx(1e-5 / 2e-3)
    midpoint = 10 + (1000 - 10) / 2
    floor = 1e-5 / 2e-3
    assert vae.learning_rate_factor(int(midpoint)) == pytest.approx(
        floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * int(midpoint - 10) / 990)))


def _state(run_dir, which="last"):
    checkpoint = torch.load(run_dir / "checkpoints" / f"{which}.ckpt", weights_only=True)
    return checkpoint["state_dict"]


def test_fit_writes_the_run_and_resume_matches_a_straight_run(tmp_path, monkeypatch):
    from spikelatent.workflows.fit import fit

    straight = fit(FitConfig(**SMALL, out=str(tmp_path / "straight")), progress=False)
    for name in ("config.yaml", "splits.json", "metrics.csv", "reconstructions.png",
                 "samples.png", "loss_curves.png", "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert (straight / name).is_file(), name
    rows = list(csv.DictReader((straight / "metrics.csv").open()))
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    assert all(math.isfinite(float(row["val_loss"])) for row in rows)
    # The default anneal runs over the whole run: the epoch means fall from 1 towards 0.24.
    means = [float(row["temperature"]) for row in rows]
    assert 1.0 > means[0] > means[1] > 0.24

    # The saved configuration repeats the run exactly.
    # Besides the settings it records what the data were (range, and the source for files).
    saved = FitConfig.from_yaml(straight / "config.yaml").to_dict()
    assert saved.pop("data_range") == [0.0, 1.0]
    expected = FitConfig(**SMALL, out=str(straight)).resolved().to_dict()
    assert expected.pop("data_range") is None
    assert saved == expected

    # A crash right after the first epoch's checkpoint, then --resume with the same configuration.
    from spikelatent.workflows import fit as fit_workflow

    def crash_in_second_epoch(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")
    monkeypatch.setattr(fit_workflow.EpochMetricsCSV, "on_train_epoch_start", crash_in_second_epoch,
                        raising=False)
    resumed_dir = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(FitConfig(**SMALL, out=str(resumed_dir)), progress=False)
    assert (resumed_dir / "checkpoints" / "last.ckpt").is_file()
    monkeypatch.undo()
    with pytest.raises(SpikelatentError, match="--resume"):
        fit(FitConfig(**SMALL, out=str(resumed_dir)), progress=False)
    fit(FitConfig.from_yaml(resumed_dir / "config.yaml"), resume=True, progress=False)
    a, b = _state(straight), _state(resumed_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
    rows = list(csv.DictReader((resumed_dir / "metrics.csv").open()))
    assert [int(row["epoch"]) for row in rows] == [0, 1]

    model = load(straight)
    assert not model.training and model.config["data"] == "synthetic"


def test_non_finite_loss_stops_with_the_step_and_checkpoint(tmp_path, monkeypatch):
    from spikelatent.families import SingleLayerModel
    from spikelatent.workflows.fit import fit

    original = SingleLayerModel.decode
    training_calls = []

    def poisoned(self, z):  # NaN from the third optimizer step on (one decode per step)
        out = original(self, z)
        if self.training:
            training_calls.append(1)
            if len(training_calls) > 2:
                return out * float("nan")
        return out
    monkeypatch.setattr(SingleLayerModel, "decode", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"non-finite loss at step 2"):
        fit(FitConfig(**{**SMALL, "epochs": 3}, out=str(tmp_path / "nan")), progress=False)


def test_corrupt_checkpoint_is_a_one_line_error(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.ckpt").write_bytes(b"\x80\x02 not a checkpoint")
    with pytest.raises(CheckpointError) as error:
        load(tmp_path)
    assert "\n" not in str(error.value) and "corrupt" in str(error.value)
    with pytest.raises(CheckpointError, match="no run directory"):
        load(tmp_path / "missing")


@pytest.mark.parametrize("argv, message", [
    (["fit", "--latent-dim", "0"], "--latent-dim must be a positive integer"),
    (["fit", "--beta", "-1"], "--beta must be 'auto' or a finite number >= 0"),
    (["fit", "--lr", "nan"], "--lr must be a finite number > 0"),
    (["fit", "--temperature-end", "0"], "--temperature-end must be > 0"),
    (["fit", "--data", "imagenet"], "imagenet"),
    (["fit", "--model", "categorical", "--latent-dim", "10"], "divisible"),
    (["fit", "--resume", "/nonexistent/run"], "cannot resume: there is no run directory"),
])
def test_invalid_options_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_unknown_model_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model", "transformer"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_config_file_and_flags(tmp_path):
    from spikelatent.cli import build_parser
    from spikelatent.commands.fit import config_from_args

    config_file = tmp_path / "run.yaml"
    config_file.write_text("model: poisson\nlatent_dim: 32\nepochs: 7\n")
    args = build_parser().parse_args(["fit", "--config", str(config_file), "--epochs", "3",
                                      "--data-option", "n=64", "--devices", "0,1"])
    config, resume = config_from_args(args)
    assert (config.model, config.latent_dim, config.epochs) == ("poisson", 32, 3)
    assert config.data_options == {"n": 64} and config.devices == [0, 1] and not resume
    config_file.write_text("modle: poisson\n")
    with pytest.raises(SpikelatentError, match="unknown configuration option"):
        config_from_args(build_parser().parse_args(["fit", "--config", str(config_file)]))


def test_ddp_on_two_cpu_processes(tmp_path):
    """Lightning DDP with two CPU processes: one run directory, epoch metrics, checkpoints."""
    import subprocess
    import sys

    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "spikelatent.cli", "fit", "--data", "synthetic",
               "--data-option", "n=128", "--latent-dim", "8", "--arch", "linear", "--epochs", "1",
               "--batch-size", "32", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
               "--out", str(out), "--no-progress"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("run written to") + result.stdout.count("run written to") == 1
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    # 128 images, 10% validation -> 116 training images over 2 processes at 32 per batch: 2 steps.
    assert [int(row["epoch"]) for row in rows] == [0] and int(rows[0]["step"]) == 2
    assert load(out).config["strategy"] == "ddp"

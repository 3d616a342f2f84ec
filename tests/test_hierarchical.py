"""The hierarchical NB-VAE (``--model negbio-hierarchical``), against independent oracles.

Oracles: ``scipy.stats.nbinom`` (same convention as ours: n = r, p = success probability) for
the per-group KL (its pmf summed as a series) and for the prior's law; exact zeros at
initialisation; numpy for shapes and coordinates.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st
import torch

from spikelatent.hierarchical import HierarchicalNB


def tiny_model(kl: str = "series", **options) -> HierarchicalNB:
    """8x8 images, grids 2x2 and 4x4, one group per scale, 2 latent channels: 40 units."""
    torch.manual_seed(0)
    defaults = dict(scales=2, groups=1, channels=8, latent_channels=2, kl=kl)
    return HierarchicalNB((1, 8, 8), **{**defaults, **options}).eval()


def perturb_posteriors(model: HierarchicalNB, scale: float = 0.3) -> None:
    """Move q away from p: both modulations non-zero (unequal dispersions)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for group in model.latent_groups:
            weight = group.posterior_out.weight
            weight.copy_(scale * torch.randn(weight.shape, generator=generator))
            group.posterior_out.bias.copy_(scale * torch.randn(group.posterior_out.bias.shape,
                                                               generator=generator))


def scipy_series_kl(r_q: np.ndarray, q: np.ndarray, r_p: np.ndarray, p: np.ndarray) -> float:
    """Σ over units of Σ_z q(z) log(q(z)/p(z)) with scipy's NB pmf, to the 1 − 1e-13 quantile."""
    total = 0.0
    for a, b, c, d in zip(r_q.ravel(), q.ravel(), r_p.ravel(), p.ravel(), strict=True):
        z = np.arange(int(st.nbinom.ppf(1 - 1e-13, a, b)) + 20)
        log_q, log_p = st.nbinom.logpmf(z, a, b), st.nbinom.logpmf(z, c, d)
        total += float(np.sum(np.exp(log_q) * (log_q - log_p)))
    return total


def _as_numpy(distribution) -> tuple[np.ndarray, np.ndarray]:
    return (distribution.total_count.double().numpy(), distribution.probs.double().numpy())


def test_at_initialisation_q_equals_p_and_the_kl_is_exactly_zero():
    for kl in ("series", "mc"):
        model = tiny_model(kl)
        images = torch.rand(3, 1, 8, 8)
        for mode in ("relaxed", "hard", "mean"):
            with torch.no_grad():
                _, result = model(images, mode=mode, temperature=0.5)
            assert torch.equal(result.kl, torch.zeros(3, model.n_groups))
            for q, p in zip(result.posteriors, result.priors, strict=True):
                assert torch.equal(q.total_count, p.total_count)
                assert torch.equal(q.logits, p.logits)


def test_group_series_kl_equals_the_scipy_nb_series_for_unequal_dispersions():
    model = tiny_model("series")
    perturb_posteriors(model)
    with torch.no_grad():
        _, result = model(torch.rand(2, 1, 8, 8), mode="hard")
    for g, (q, p) in enumerate(zip(result.posteriors, result.priors, strict=True)):
        assert not torch.allclose(q.total_count, p.total_count)  # dispersions really differ
        for image in range(2):
            oracle = scipy_series_kl(*(a[image] for a in (*_as_numpy(q), *_as_numpy(p))))
            assert oracle > 0.05
            assert result.kl[image, g].item() == pytest.approx(oracle, rel=2e-4, abs=1e-4)


def _perturbed_group_and_its_series_kl():
    """A tiny MC-KL model with perturbed posteriors, its group 1's (q, p) on one image, and
    scipy's series KL of that pair (the oracle)."""
    model = tiny_model("mc", mc_samples=4)
    perturb_posteriors(model)
    with torch.no_grad():
        _, result = model(torch.rand(1, 1, 8, 8), mode="hard")
    q, p = result.posteriors[1], result.priors[1]
    return model, q, p, scipy_series_kl(*(a[0] for a in (*_as_numpy(q), *_as_numpy(p))))


def test_monte_carlo_kl_is_unbiased_for_the_series():
    model, q, p, oracle = _perturbed_group_and_its_series_kl()
    torch.manual_seed(2)
    estimates = torch.stack([model.sample_with_kl(q, p, "hard", 0.0)[1].sum() for _ in range(400)])
    mean, standard_error = estimates.mean().item(), estimates.std().item() / 20.0
    assert abs(mean - oracle) < 3 * standard_error
    assert standard_error < 0.1 * oracle  # the test has power


def test_relaxed_monte_carlo_kl_away_from_initialisation_estimates_the_series():
    """Training's estimate (S relaxed samples, tau 0.05) of a perturbed group, averaged over
    repeats, within 3 standard errors plus 5 % (the relaxation's bias) of scipy's series KL."""
    model, q, p, oracle = _perturbed_group_and_its_series_kl()
    with torch.no_grad():
        torch.manual_seed(4)
        estimates = torch.stack([model.sample_with_kl(q, p, "relaxed", 0.05)[1].sum()
                                 for _ in range(300)])
    mean, standard_error = estimates.mean().item(), estimates.std().item() / np.sqrt(300)
    assert oracle > 0.1
    assert abs(mean - oracle) < 3 * standard_error + 0.05 * oracle
    assert standard_error < 0.1 * oracle


def test_a_conditional_group_follows_its_prior_given_the_groups_above():
    """Ancestral draws of group 1 given each draw of group 0: standardised by the NB mean and
    variance (scipy) of that draw's own conditional prior, they have mean 0 and variance 1."""
    model = tiny_model()
    torch.manual_seed(5)
    with torch.no_grad():
        result = model.top_down(None, mode="hard", n=3000)
    prior = result.priors[1]
    r = prior.total_count.double().numpy().ravel()
    probability = prior.probs.double().numpy().ravel()
    counts = result.counts[1].double().numpy().ravel()
    assert np.ptp(r) > 0.01 and np.ptp(probability) > 0.01  # the conditionals really differ
    mean, variance = st.nbinom.mean(r, probability), st.nbinom.var(r, probability)
    z = (counts - mean) / np.sqrt(variance)
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert z.var() == pytest.approx(1.0, abs=0.05)


def test_ancestral_samples_of_the_first_group_follow_its_prior():
    model = tiny_model()
    r, p = 2.5, 0.3
    with torch.no_grad():  # channel 0 of the unconditional prior: NB(2.5, 0.3)
        model.latent_groups[0].prior_raw[0] = np.log(r)
        model.latent_groups[0].prior_raw[model.latent_channels[0]] = np.log(p / (1 - p))
    torch.manual_seed(3)
    images, result = model.sample_prior(2000)
    assert images.shape == (2000, 1, 8, 8)
    counts = result.counts[0][:, 0].flatten().double().numpy()  # 2000 images x 4 positions
    assert np.all(counts == np.round(counts))
    law = st.nbinom(r, p)
    standard_error = np.sqrt(law.var() / counts.size)
    assert abs(counts.mean() - law.mean()) < 4 * standard_error
    fano = counts.var() / counts.mean()
    assert fano == pytest.approx(law.var() / law.mean(), rel=0.08)


def test_unit_coordinates_follow_the_flattened_level_order():
    model = HierarchicalNB((1, 28, 28), scales=2, groups=(2, 1), channels=8, latent_channels=(3, 2))
    coords = model.unit_coords()
    sizes = [3 * 7 * 7, 3 * 7 * 7, 2 * 14 * 14]
    assert model.group_sizes == sizes and model.latent_dim == sum(sizes)
    assert np.array_equal(np.bincount(coords["level"]), sizes)
    assert np.array_equal(np.unique(coords["scale"][coords["level"] == 2]), [1])
    assert np.array_equal(np.unique(coords["group"][coords["level"] == 1]), [1])
    # the flatten order is (level, channel, y, x): unit k of level 1 is channel k // 49, ...
    tensor = torch.arange(3 * 7 * 7).reshape(1, 3, 7, 7)
    flat = model.flatten([tensor])[0].numpy()
    level = coords["level"] == 0
    assert np.array_equal(flat, coords["channel"][level] * 49 + coords["y"][level] * 7 + coords["x"][level])


def test_the_counts_alone_determine_the_reconstruction():
    model = tiny_model()
    perturb_posteriors(model)
    with torch.no_grad():
        reconstruction, result = model(torch.rand(3, 1, 8, 8), mode="hard")
        again = model.decode(model.flatten(result.counts))
    assert torch.equal(reconstruction, again)
    draws = model.sample_counts(torch.rand(3, 1, 8, 8), 4)
    assert draws.shape == (4, 3, model.latent_dim)
    assert torch.equal(draws, draws.round()) and bool((draws >= 0).all())


# ----------------------------------------------------------------------------- through the CLI
TINY_FLAGS = ["--data", "digits", "--model", "negbio-hierarchical", "--limit", "64",
              "--batch-size", "32", "--groups", "1", "--hierarchy-channels", "8",
              "--latent-channels", "2", "--seed", "3", "--no-progress"]


def _rows(run_dir) -> list[dict[str, str]]:
    import csv

    return list(csv.DictReader((run_dir / "metrics.csv").open()))


def test_a_tiny_hierarchical_model_trains_through_the_cli_and_resumes(tmp_path, monkeypatch):
    from spikelatent.cli import main
    from spikelatent.workflows import fit as fit_workflow

    straight = tmp_path / "straight"
    assert main(["fit", *TINY_FLAGS, "--epochs", "2", "--out", str(straight)]) == 0
    rows = _rows(straight)
    assert len(rows) == 2 and all(np.isfinite(float(row["val_loss"])) for row in rows)

    def crash(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")
    resumed = tmp_path / "resumed"
    with monkeypatch.context() as patch:
        patch.setattr(fit_workflow.EpochMetricsCSV, "on_train_epoch_start", crash, raising=False)
        with pytest.raises(RuntimeError, match="simulated crash"):
            main(["fit", *TINY_FLAGS, "--epochs", "2", "--out", str(resumed)])
    assert len(_rows(resumed)) == 1
    assert main(["fit", "--resume", str(resumed), "--no-progress"]) == 0
    for row_a, row_b in zip(rows, _rows(resumed), strict=True):
        for column in ("train_loss", "val_loss", "val_kl", "val_mse", "val_active_fraction"):
            assert float(row_a[column]) == pytest.approx(float(row_b[column]), rel=1e-4, abs=1e-6)

    import spikelatent

    model = spikelatent.load(straight)
    assert model.variant == "HNB-VAE SERIES-C" and model.config.kl == "series"
    images = torch.rand(3, 1, 28, 28)
    assert model.generate(4).shape == (4, 1, 28, 28)
    assert model.reconstruct(images, "mean").shape == (3, 1, 28, 28)
    pop = spikelatent.population(model, images, labels=[0, 1, 2], n_trials=4, seed=0)
    coords = model.family.unit_coords()
    assert pop.sizes["unit"] == model.family.latent_dim == 2 * 7 * 7 + 2 * 14 * 14
    for name in ("level", "scale", "group", "channel", "y", "x"):
        assert pop[name].dims == ("unit",)
        assert np.array_equal(pop[name].values, coords[name])
    assert pop["counts"].dims == ("trial", "stimulus", "unit")
    per_level = pop["counts"].groupby("level").sum(dim="unit")  # (trial, stimulus, level)
    assert per_level.sizes["level"] == 2
    # Oracle: numpy slices of the flattened units by the levels' sizes (level order).
    counts = pop["counts"].values.astype(np.int64)
    edges = np.cumsum([0, 2 * 7 * 7, 2 * 14 * 14])
    for level in range(2):
        expected = counts[..., edges[level]:edges[level + 1]].sum(-1)
        np.testing.assert_array_equal(per_level.sel(level=level).values, expected)
    assert pop["prior_rate"].sizes["unit"] == pop.sizes["unit"]


def test_the_collapse_guard_names_a_silent_level():
    from types import SimpleNamespace

    from spikelatent.callbacks import CollapseGuard, CollapseWarning

    metrics = {"val/kl": torch.tensor(5.0), "val/active_fraction": torch.tensor(0.5),
               "val/kl_level0": torch.tensor(4.99), "val/kl_level1": torch.tensor(0.01)}
    trainer = SimpleNamespace(sanity_checking=False, callback_metrics=metrics,
                              is_global_zero=True, current_epoch=3)
    module = SimpleNamespace(beta=lambda: 1.0, final_beta=1.0)
    guard = CollapseGuard()
    with pytest.warns(CollapseWarning, match=r"level\(s\) 1 of 2.*--free-bits"):
        guard.on_validation_epoch_end(trainer, module)
    assert guard.collapsed


def test_options_presets_and_bad_input():
    from spikelatent.cli import main
    from spikelatent.config import FitConfig
    from spikelatent.errors import SpikelatentError

    config = FitConfig(model="negbio-hierarchical").resolved()
    assert (config.kl, config.scales, config.groups) == ("series", 2, [2])
    paper = FitConfig(preset="hnb-paper").resolved()
    assert (paper.model, paper.kl, paper.mc_samples) == ("negbio-hierarchical", "mc", 5)
    assert (paper.groups, paper.hierarchy_channels, paper.latent_channels) == ([4, 4], [64, 32], [16, 16])
    assert (paper.batch_size, paper.epochs, paper.lr) == (64, 300, 1e-3)
    model = HierarchicalNB.from_config(paper, (1, 28, 28))
    assert model.group_sizes == [16 * 7 * 7] * 4 + [16 * 14 * 14] * 4
    for bad, message in ((dict(objective="published"), "--objective published"),
                         (dict(groups=[1, 2, 3]), "--groups"),
                         (dict(latent_dim=64), "--latent-dim"),
                         (dict(free_bits=-1.0), "--free-bits")):
        with pytest.raises(SpikelatentError, match=message):
            FitConfig(model="negbio-hierarchical", **bad).resolved()
    with pytest.raises(SpikelatentError, match="--scales 3 does not apply to --model negbio"):
        FitConfig(model="negbio", scales=3).resolved()
    with pytest.raises(SpikelatentError, match="halve"):
        HierarchicalNB((1, 8, 8), scales=4)
    assert main(["fit", "--model", "negbio-hierarchical", "--groups", "1,2,3", "--epochs", "1"]) == 2


def _synthetic_level_population(seed: int = 0):
    """Two levels with known laws: level 0 NB(r = 1, p = 0.25) (Fano 4), level 1 Poisson-like
    NB(r = 200, p = 0.98) (Fano ~1.02), 40 trials x 30 stimuli, 6 + 9 units."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    level = np.array([0] * 6 + [1] * 9)
    r = np.where(level == 0, 1.0, 200.0)
    p = np.where(level == 0, 0.25, 0.98)
    counts = rng.negative_binomial(r, p, size=(40, 30, 15))
    fano = np.broadcast_to(1 / p, (30, 15)).astype(np.float32)
    return xr.Dataset({"counts": (("trial", "stimulus", "unit"), counts),
                       "fano_factor": (("stimulus", "unit"), fano)},
                      coords={"unit": np.arange(15), "level": ("unit", level)}), counts, level


def test_level_summary_against_numpy():
    from spikelatent.analysis.levels import level_summary

    pop, counts, level = _synthetic_level_population()
    kl = np.random.default_rng(1).random((30, 15))
    summary = level_summary(pop, kl=kl)
    assert list(summary["level"].values) == [0, 1]
    for g in (0, 1):
        c = counts[:, :, level == g].astype(float)
        assert summary["n_units"].sel(level=g) == (level == g).sum()
        assert summary["zero_fraction"].sel(level=g) == pytest.approx((c == 0).mean())
        fano = c.var(0, ddof=1) / c.mean(0)
        assert summary["fano_empirical_median"].sel(level=g) == pytest.approx(np.nanmedian(fano))
        mean = c.mean(0)  # (stimulus, unit), trial-averaged
        m = mean.shape[0]
        treves_rolls = (1 - mean.sum(0) ** 2 / (m * (mean**2).sum(0))) / (1 - 1 / m)
        assert summary["lifetime_sparsity"].sel(level=g) == pytest.approx(treves_rolls.mean())
        assert summary["kl_per_image"].sel(level=g) == pytest.approx(kl[:, level == g].sum(1).mean())
    assert summary["fano_model_median"].sel(level=0) == pytest.approx(4.0)
    # the overdispersed level is measured as such, the near-Poisson one near 1
    assert summary["fano_empirical_median"].sel(level=0) > 2.5
    assert summary["fano_empirical_median"].sel(level=1) < 1.5


def test_nwb_export_puts_each_level_in_its_own_electrode_group(tmp_path):
    from nwbinspector import Importance, inspect_nwbfile
    from pynwb import NWBHDF5IO

    from spikelatent.nwb import to_nwb

    pop, counts, level = _synthetic_level_population()
    pop = pop.isel(trial=slice(0, 3), stimulus=slice(0, 4))
    pop = pop.assign_coords(channel=("unit", np.arange(15) % 3), y=("unit", np.arange(15) // 3),
                            x=("unit", np.zeros(15, int)))
    pop.attrs = {"model": "negbio-hierarchical", "variant": "HNB-VAE SERIES-C"}
    subject = {"species": "Mus musculus", "age": "P90D", "sex": "F", "subject_id": "m1"}
    path = to_nwb(pop, tmp_path / "levels.nwb", subject=subject)
    serious = (Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION)
    assert [m.message for m in inspect_nwbfile(nwbfile_path=str(path)) if m.importance in serious] == []
    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        assert sorted(nwbfile.electrode_groups) == ["level0", "level1"]
        groups = [group.name for group in nwbfile.units["electrode_group"][:]]
        assert groups == [f"level{g}" for g in level]
        np.testing.assert_array_equal(nwbfile.units["level"][:], level)
        np.testing.assert_array_equal(nwbfile.units["channel"][:], np.arange(15) % 3)

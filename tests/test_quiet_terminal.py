"""A quiet terminal: no third-party warning reaches the user of fit, evaluate, analyze or
export-nwb (advice the user must act on prints as one ``spikelatent: warning:`` line instead).
A newly leaked warning fails here. Statistics that are undefined by design (a unit that never
fires) are NaN and say so, without a numpy warning."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import xarray as xr

from spikelatent.analysis.correlations import noise_correlations


def _run(*args: str, cwd) -> str:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    result = subprocess.run([sys.executable, "-m", "spikelatent.cli", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


def _warning_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "Warning" in line]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quiet")
    # with TensorBoard logging when it is installed (the dev extra), so the logger stays quiet too
    logger = ["--logger", "tensorboard"] if importlib.util.find_spec("tensorboard") else []
    output = _run("fit", "--data", "digits", "--limit", "200", "--latent-dim", "8", "--arch",
                  "mlp", "--epochs", "1", *logger, "--out", str(folder / "run"), "--no-progress",
                  cwd=folder)
    return folder, output


def test_fit_prints_no_library_warning(tiny_run):
    _, output = tiny_run
    assert not _warning_lines(output), output


@pytest.mark.parametrize("command", [
    ["evaluate", "{run}", "--features", "classifier", "--n-samples", "200", "--kid-subsets", "5",
     "--kid-subset-size", "50", "--no-progress"],
    ["analyze", "{run}", "--n-stimuli", "100", "--trials", "5", "--shattering-images", "100",
     "--no-progress"],
    ["export-nwb", "{run}", "--out", "{folder}/run.nwb", "--stimuli", "test:0:10", "--trials", "2"],
], ids=["evaluate", "analyze", "export-nwb"])
def test_later_stages_print_no_library_warning(tiny_run, command):
    folder, _ = tiny_run
    args = [part.format(run=folder / "run", folder=folder) for part in command]
    output = _run(*args, cwd=folder)
    assert not _warning_lines(output), output


def test_noise_correlations_of_a_silent_unit_are_nan_without_a_warning():
    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, (12, 6, 4)).astype(float)
    counts[..., 3] = 0  # a unit that never fires
    data = xr.DataArray(counts, dims=("trial", "stimulus", "unit"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = noise_correlations(data, n_shuffles=30)
    for name in ("noise_correlation", "shuffle_ci_low", "shuffle_ci_high", "p_value"):
        values = result[name].values
        assert np.isnan(values[3]).all() and np.isnan(values[:, 3]).all(), name
        assert np.isfinite(values[:3, :3]).all(), name
    assert "never fires" in result.attrs["undefined_pairs"]
    # The defined pairs are the plain Pearson correlations of the z-scored residuals.
    firing = counts[..., :3]
    mean = firing.mean(axis=0, keepdims=True)
    spread = firing.std(axis=0, ddof=1, keepdims=True)
    residual = ((firing - mean) / spread).reshape(-1, 3)
    np.testing.assert_allclose(result["noise_correlation"].values[:3, :3],
                               np.corrcoef(residual, rowvar=False), atol=1e-12)
    p_values = result["p_value"].values[:3, :3]
    assert ((p_values > 0) & (p_values <= 1)).all()

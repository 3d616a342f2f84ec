"""A quiet terminal: what fit, evaluate, analyze and export-nwb print on stderr is exactly the
lines we mean to print (an allow-list), so any third-party warning, ``logging.warning`` line,
``[W …]`` line from torch's C++ side or Lightning info line fails here; advice the user must act
on prints as one ``spikelatent: warning:`` line. Statistics that are undefined by design (a unit
that never fires) are NaN and say so, without a numpy warning."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import xarray as xr

from spikelatent.analysis.correlations import noise_correlations

#: Lines that may be on stdout of any command must still not look like a warning or a crash.
NOT_ON_STDOUT = re.compile(r"warn|^\[W|^\s*File \"|Traceback", re.IGNORECASE)


def _run(*args: str, cwd) -> tuple[list[str], list[str]]:
    """(stdout lines, stderr lines) of ``spikelatent ARGS`` in a fresh interpreter."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    result = subprocess.run([sys.executable, "-m", "spikelatent.cli", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout.splitlines(), result.stderr.splitlines()


def _assert_lines(lines: list[str], required: list[str], optional: list[str] = ()) -> None:
    """Every line matches one pattern (full match); every ``required`` pattern matches a line."""
    patterns = [re.compile(pattern) for pattern in [*required, *optional]]
    unexpected = [line for line in lines if not any(p.fullmatch(line) for p in patterns)]
    assert not unexpected, "unexpected lines:\n" + "\n".join(unexpected)
    missing = [pattern for pattern in required
               if not any(re.fullmatch(pattern, line) for line in lines)]
    assert not missing, f"expected lines missing: {missing}\n" + "\n".join(lines)


def _assert_quiet_stdout(lines: list[str]) -> None:
    noisy = [line for line in lines if NOT_ON_STDOUT.search(line)]
    assert not noisy, "\n".join(noisy)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quiet")
    # with TensorBoard logging when it is installed (the dev extra), so the logger stays quiet too
    logger = ["--logger", "tensorboard"] if importlib.util.find_spec("tensorboard") else []
    stdout, stderr = _run("fit", "--data", "digits", "--limit", "200", "--latent-dim", "8",
                          "--arch", "mlp", "--epochs", "1", *logger,
                          "--out", str(folder / "run"), cwd=folder)
    return folder, stdout, stderr


def test_fit_prints_its_start_epoch_and_end_lines_only(tiny_run):
    """stderr: the start line, the run directory at the end and (this tiny run collapses at
    epoch 0) the one-line collapse advice; stdout (not a terminal): one line per epoch."""
    _, stdout, stderr = tiny_run
    _assert_lines(stderr, required=[r"training NegBio-VAE DS-C on digits for 1 epochs; run "
                                    r"directory: .*/run \(metrics\.csv and checkpoints/ are "
                                    r"updated every epoch, figures at the end\)",
                                    r"run written to .*/run"],
                  optional=[r"spikelatent: warning: posterior collapse at epoch 0: .*"])
    _assert_lines(stdout, required=[r"epoch 1/1  train_loss \S+  val_loss \S+  val_kl \S+  "
                                    r"val_mse \S+  (val_fano \S+  )?\d+\.\d s"])


@pytest.mark.parametrize(("command", "stderr_lines"), [
    (["evaluate", "{run}", "--features", "classifier", "--n-samples", "200", "--kid-subsets",
      "5", "--kid-subset-size", "50", "--no-progress"], []),
    (["analyze", "{run}", "--n-stimuli", "100", "--trials", "5", "--shattering-images", "100",
      "--no-progress"], []),
    (["export-nwb", "{run}", "--out", "{folder}/run.nwb", "--stimuli", "test:0:10", "--trials",
      "2"], [r"simulating 2 trials of 10 test stimuli \.\.\.",
             r"spikelatent: NWB subject has no species/age/sex \(in-silico population, none "
             r"invented\); if the file should describe an animal, supply .*"]),
], ids=["evaluate", "analyze", "export-nwb"])
def test_later_stages_print_only_their_own_lines(tiny_run, command, stderr_lines):
    folder, _, _ = tiny_run
    args = [part.format(run=folder / "run", folder=folder) for part in command]
    stdout, stderr = _run(*args, cwd=folder)
    _assert_lines(stderr, required=stderr_lines)
    _assert_quiet_stdout(stdout)
    assert stdout, "the command's report is on stdout"


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


def test_the_support_cap_warning_prints_once_as_one_line_saying_what_it_means(capsys):
    """The relaxed sampler's cap (rates above the largest one max_support covers are clamped)
    reaches a CLI user as one ``spikelatent: note:`` line, however often it recurs."""
    import torch

    from spikelatent.cli import _show_advice_in_one_line
    from spikelatent.distributions import relaxed_poisson

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # as in a fresh process: every recurrence is shown
        warnings.showwarning = _show_advice_in_one_line(warnings.showwarning)
        for rate in (600.0, 700.0, 800.0):
            relaxed_poisson(torch.full((3,), rate), "ct", temperature=0.5)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, lines
    assert re.fullmatch(r"spikelatent: note: relaxed spike counts drawn at rates above 429\.3 "
                        r"\(rare draws from the tail of the count distributions\) were capped "
                        r"there in training, the sampler's support being 512 counts; those "
                        r"samples come out a little low — no action needed", lines[0]), lines[0]


def test_a_torch_torchvision_mismatch_is_one_line_saying_how_to_fix_it(monkeypatch, capsys):
    """torch's error for a torchvision built against another torch, raised where a command
    imports torchvision, becomes one line with the reinstall command (pins of this install)."""
    from importlib import metadata

    import spikelatent.commands.evaluate
    from spikelatent.cli import main

    def mismatched(args):
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(spikelatent.commands.evaluate, "run", mismatched)
    assert main(["evaluate", "runs/none"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1, captured.err
    pins = {requirement.split("<")[0].split(">")[0]: requirement
            for requirement in metadata.requires("spikelatent")}
    assert captured.err.startswith(
        f"spikelatent evaluate: error: torch {metadata.version('torch')} and torchvision "
        f"{metadata.version('torchvision')} do not belong together (operator torchvision::nms "
        f"does not exist); reinstall them as a pair: pip install --force-reinstall "
        f"\"{pins['torch']}\" \"{pins['torchvision']}\"")
    # any other RuntimeError is not ours to translate
    monkeypatch.setattr(spikelatent.commands.evaluate, "run",
                        lambda args: (_ for _ in ()).throw(RuntimeError("CUDA out of memory")))
    with pytest.raises(RuntimeError, match="out of memory"):
        main(["evaluate", "runs/none"])

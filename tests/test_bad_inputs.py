"""What a new user hits on the first run: every bad input is one line and exit status 2, found
before any work is done; the defaults work on the default dataset; piped output stays short."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spikelatent.cli import main
from spikelatent.config import MODEL_SPECIFIC_OPTIONS, FitConfig

TINY = ["--data", "synthetic", "--data-option", "n=64", "--latent-dim", "8", "--arch", "mlp",
        "--epochs", "1", "--no-progress"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


#: whichever posterior parameterization is not the default (the default may change)
_OTHER_LOGITS = next(v for v in ("relative", "absolute") if v != FitConfig().posterior_logits)
# (flags, the start of the message). Each option away from its default, on a model that does not
# use it; the messages name the option and the models it applies to.
MISMATCHES = [
    (["--model", "poisson", "--kl", "mc"], "--kl mc does not apply to --model poisson"),
    (["--model", "gaussian", "--kl", "mc"], "--kl mc does not apply to --model gaussian"),
    (["--model", "laplace", "--relax", "gumbel"], "--relax gumbel does not apply to --model laplace"),
    (["--model", "categorical", "--relax", "gumbel"], "--relax gumbel does not apply"),
    (["--model", "poisson", "--mc-samples", "3"], "--mc-samples 3 does not apply to --model poisson"),
    (["--model", "negbio", "--kl", "ds", "--mc-samples", "3"], "--mc-samples 3 applies only with --kl mc"),
    (["--model", "negbio", "--mc-kl", "gamma"], "--mc-kl gamma applies only with --kl mc"),
    (["--model", "negbio", "--categories", "4"], "--categories 4 does not apply to --model negbio"),
    (["--model", "gaussian", "--temperature-end", "0.2"], "--temperature-end 0.2 does not apply"),
    (["--model", "laplace", "--temperature-start", "2"], "--temperature-start 2.0 does not apply"),
    (["--model", "gaussian", "--prior-init", "sparse"], "--prior-init sparse does not apply"),
    (["--model", "poisson", "--posterior-logits", _OTHER_LOGITS],
     f"--posterior-logits {_OTHER_LOGITS} does not apply"),
    (["--model", "negbio", "--relax", "ct", "--gumbel-support", "4"], "--gumbel-support 4 applies only with --relax gumbel"),
    (["--arch", "mlp", "--encoder-channels", "8,16"], "--encoder-channels 8,16 applies only with --encoder conv"),
    # asked for by name (the unset --kl becomes series for this model, docs/hierarchical.md)
    (["--model", "negbio-hierarchical", "--kl", "ds"], "--kl ds does not apply to --model negbio-hierarchical"),
]


@pytest.mark.parametrize(("flags", "message"), MISMATCHES)
def test_an_option_the_model_does_not_use_is_one_line_exit_2(flags, message, capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["fit", *TINY, *flags, "--out", str(out)]) == 2
    assert _one_line_error(capsys).startswith(f"spikelatent fit: error: {message}")
    assert not out.exists()  # rejected before anything is written


def _other_value(name: str, default):
    """A value of option ``name`` different from its default (for the table's every row)."""
    from spikelatent.config import OPTION_CHOICES

    choices = {**OPTION_CHOICES, "kl": ("ds", "mc"), "relax": ("ct", "gumbel")}
    if name in choices:
        return next(choice for choice in choices[name] if choice != default)
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    if isinstance(default, float):
        return default / 2 if default else 0.5  # a zero default (e.g. --free-bits 0) needs another value
    return [8] if name.endswith("_channels") else 0.2 if name.startswith("temperature") else 3


@pytest.mark.parametrize("name", sorted(MODEL_SPECIFIC_OPTIONS))
def test_every_row_of_the_table_is_enforced(name):
    """For each model-specific option: accepted where the table says it applies, a one-line
    error on a model (or with an option value) where it does not."""
    from spikelatent.errors import SpikelatentError

    models, needs = MODEL_SPECIFIC_OPTIONS[name]
    value = _other_value(name, getattr(FitConfig(), name))
    base = dict(latent_dim=72, **{"encoder": "conv", "decoder": "conv", **needs})  # 72 = 8 x 9
    for model in ("gaussian", "laplace", "categorical", "poisson", "negbio"):
        config = FitConfig(model=model, **{**base, name: value})
        if model in models:
            config.resolved()
            for other, wanted in needs.items():  # and the option's own condition is enforced
                alternatives = [v for v in ("ds", "mc", "ct", "gumbel", "linear", "mlp") if
                                v != wanted and v in {"kl": ("ds", "mc"), "relax": ("ct", "gumbel"),
                                                      "encoder": ("linear", "mlp"),
                                                      "decoder": ("linear", "mlp")}[other]]
                broken = FitConfig(model=model, **{**base, other: alternatives[0], name: value})
                with pytest.raises(SpikelatentError, match=f"applies only with --{other}"):
                    broken.resolved()
        else:  # the other options at their defaults: only this one is out of place
            config = FitConfig(model=model, latent_dim=72, **{name: value})
            with pytest.raises(SpikelatentError, match=f"does not apply to --model {model}") as error:
                config.resolved()
            assert f"--{name.replace('_', '-')}" in str(error.value)


def test_defaults_and_presets_are_never_flagged():
    fields = set(FitConfig().to_dict())
    assert set(MODEL_SPECIFIC_OPTIONS) <= fields
    # Every model accepts every option at its default, and a preset's values count as defaults.
    for model in ("gaussian", "laplace", "categorical", "poisson", "negbio"):
        FitConfig(model=model).resolved()
        FitConfig(model=model, preset="paper").resolved()
        FitConfig(model=model, preset="poisson-vae").resolved()
    # The options do apply where the table says they do.
    FitConfig(model="negbio", kl="mc", mc_samples=3, mc_kl="gamma").resolved()
    FitConfig(model="poisson", relax="gumbel", gumbel_support=4, temperature_end=0.2).resolved()
    FitConfig(model="categorical", categories=4, latent_dim=16, temperature_start=2.0).resolved()


def test_resume_of_something_that_is_not_a_run(tmp_path, capsys):
    assert main(["fit", "--resume", str(tmp_path / "nonexistent")]) == 2
    assert "cannot resume: there is no run directory" in _one_line_error(capsys)
    assert main(["fit", "--resume", str(tmp_path)]) == 2
    assert "is not a run directory (no config.yaml)" in _one_line_error(capsys)


def test_invalid_yaml_names_the_line(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("model: poisson\nlatent_dim: [16\nepochs: 1\n")
    assert main(["fit", "--config", str(config)]) == 2
    err = _one_line_error(capsys)
    assert "is not valid YAML (line 3, column" in err, err


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "run"
    assert main(["fit", "--data", "digits", "--limit", "100", "--latent-dim", "4", "--arch",
                 "linear", "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    return out


def test_a_runs_own_config_repeats_it_in_a_new_directory(digits_run, tmp_path, monkeypatch, capsys):
    from spikelatent.cli import build_parser
    from spikelatent.commands.fit import config_from_args

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["fit", "--config", str(digits_run / "config.yaml")])
    config, resume = config_from_args(args)
    assert config.out is None and not resume  # a fresh runs/<data>-<model>-<time>
    saved = FitConfig.from_yaml(digits_run / "config.yaml")
    assert {k: v for k, v in config.to_dict().items() if k != "out"} == {
        k: v for k, v in saved.to_dict().items() if k != "out"}
    # An explicit --out still wins, and --out onto the run itself is refused (it holds a run).
    assert main(["fit", "--config", str(digits_run / "config.yaml"), "--out", str(digits_run)]) == 2
    assert "already holds a run; continue it with --resume" in _one_line_error(capsys)


def test_resume_of_a_finished_run_says_how_to_extend_it(digits_run, capsys):
    before = (digits_run / "metrics.csv").read_bytes()
    assert main(["fit", "--resume", str(digits_run)]) == 2
    assert "has already trained 1 epoch (--epochs 1); pass --epochs N with N > 1" in (
        _one_line_error(capsys))
    assert (digits_run / "metrics.csv").read_bytes() == before


def test_export_nwb_defaults_work_on_a_digits_run(digits_run, tmp_path, capsys):
    from spikelatent.data import make_datamodule

    n_test = len(make_datamodule("digits").split_tensors("test")[0])
    assert n_test < 1000  # the default asks for up to 1000: the test split has fewer
    out = tmp_path / "latents.nwb"
    assert main(["export-nwb", str(digits_run), "--out", str(out), "--trials", "2"]) == 0
    captured = capsys.readouterr()
    assert f"the first {n_test} images of the digits test split" in captured.err
    assert f"({n_test} stimuli x 2 trials)" in captured.out
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(out), "r") as io:
        nwbfile = io.read()
        assert len(nwbfile.trials) == 2 * n_test
        assert len(nwbfile.units) == 4


def test_export_nwb_checks_its_output_before_simulating(digits_run, tmp_path, capsys, monkeypatch):
    import spikelatent.populations

    def never(*args, **kwargs):
        raise AssertionError("simulated before checking --out")
    monkeypatch.setattr(spikelatent.populations, "population", never)
    assert main(["export-nwb", str(digits_run), "--out", str(tmp_path / "missing" / "f.nwb")]) == 2
    err = _one_line_error(capsys)
    assert "the folder" in err and "does not exist; create it first" in err
    assert main(["export-nwb", str(digits_run), "--out", str(tmp_path)]) == 2
    assert "is a folder" in _one_line_error(capsys)


def _unwritable_folders(tmp_path):
    """Folders that take no new file: a read-only one (not for root, whom permission bits do not
    stop) and /proc (stops root too)."""
    folders = []
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        folders.append(locked)
    if Path("/proc").is_dir():
        folders.append(Path("/proc"))
    return folders


def test_export_nwb_into_a_folder_that_takes_no_files_is_one_line(digits_run, tmp_path, capsys,
                                                                  monkeypatch):
    import spikelatent.populations

    def never(*args, **kwargs):
        raise AssertionError("simulated before checking --out")
    monkeypatch.setattr(spikelatent.populations, "population", never)
    folders = _unwritable_folders(tmp_path)
    if not folders:
        pytest.skip("no folder here refuses new files")
    for folder in folders:
        before = sorted(p.name for p in folder.iterdir()) if folder != Path("/proc") else None
        assert main(["export-nwb", str(digits_run), "--out", str(folder / "x.nwb")]) == 2
        err = _one_line_error(capsys)
        assert err.startswith(f"spikelatent export-nwb: error: cannot write {folder / 'x.nwb'}")
        assert "choose another --out" in err
        assert not (folder / "x.nwb").exists()
        if before is not None:
            assert sorted(p.name for p in folder.iterdir()) == before  # nothing written


@pytest.mark.parametrize("flags", [["--bin-size", "-1"], ["--bin-size", "0.05"],
                                   ["--intervals", "trials"]])
def test_analyze_refuses_recording_options_on_a_model_run(digits_run, capsys, flags):
    before = sorted(p.name for p in digits_run.iterdir())
    assert main(["analyze", str(digits_run), *flags]) == 2
    err = _one_line_error(capsys)
    assert f"{flags[0]} is an option for NWB files only; {digits_run} is a run directory" in err
    assert sorted(p.name for p in digits_run.iterdir()) == before  # nothing written


def test_evaluate_of_a_folder_that_is_not_a_run_says_so(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.png").write_bytes(b"not a run")
    assert main(["evaluate", str(folder)]) == 2
    err = _one_line_error(capsys)
    assert f"{folder} is not a run directory" in err and "FID" not in err
    assert sorted(p.name for p in folder.iterdir()) == ["cat.png"]


def test_piped_fit_prints_one_short_line_per_epoch(tmp_path):
    """stdout not a terminal: no progress-bar redraws, one summary line per epoch, and the run
    directory named before training starts."""
    out = tmp_path / "piped"
    command = [sys.executable, "-m", "spikelatent.cli", "fit", "--data", "synthetic",
               "--data-option", "n=128", "--latent-dim", "8", "--arch", "linear", "--epochs", "3",
               "--batch-size", "8", "--accelerator", "cpu", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert len(result.stdout) + len(result.stderr) < 2000 * 3, (result.stdout, result.stderr)
    # The run directory is announced first, before any epoch.
    first = result.stderr.splitlines()[0]
    assert f"run directory: {out}" in first
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 3 and Path(out / "checkpoints" / "last.ckpt").is_file()

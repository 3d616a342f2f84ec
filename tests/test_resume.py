"""Resume from the last completed epoch, and every bad input to ``fit --resume`` is one line.

Oracles: a straight run of the same configuration (weights and every metrics row), the epoch
counter Lightning stores in each checkpoint, and the bytes of the run directory.
"""

from __future__ import annotations

import csv
import hashlib
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spikelatent.checkpoints import load
from spikelatent.cli import main
from spikelatent.config import FitConfig
from spikelatent.errors import CheckpointError
from spikelatent.model import VAE

SMALL = dict(data="synthetic", data_options={"n": 96}, latent_dim=8, batch_size=32,
             arch="mlp", seed=5)


def _rows(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "metrics.csv").open()))


def _epoch(run_dir: Path, which: str) -> int:
    checkpoint = torch.load(run_dir / "checkpoints" / f"{which}.ckpt", weights_only=True)
    return int(checkpoint["epoch"])


def _state(run_dir: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / f"{which}.ckpt", weights_only=True)["state_dict"]


def _validation_worsens_after_the_first_epoch(monkeypatch):
    """The validation loss is pushed up by 200 per epoch after the first, so the validation loss
    of epochs 1, 2, ... is worse than epoch 0's whatever training does (training is untouched)."""
    original = VAE.objective

    def objective(self, sse, kl, beta):
        out = original(self, sse, kl, beta)
        return out if self.training else out + 200.0 * self.current_epoch
    monkeypatch.setattr(VAE, "objective", objective)


def _same_rows(a, b):
    assert [row["epoch"] for row in a] == [row["epoch"] for row in b]
    for row_a, row_b in zip(a, b, strict=True):
        for column in row_a:
            if column == "elapsed_s" or row_a[column] == "":
                continue
            assert float(row_a[column]) == pytest.approx(float(row_b[column]), rel=1e-4, abs=1e-6), (
                row_a["epoch"], column)


def test_resume_continues_after_the_last_epoch_even_when_validation_got_worse(tmp_path, monkeypatch):
    from spikelatent.workflows import fit as fit_workflow
    from spikelatent.workflows.fit import fit

    _validation_worsens_after_the_first_epoch(monkeypatch)
    straight = fit(FitConfig(**SMALL, epochs=3, out=str(tmp_path / "straight")), progress=False)
    rows = _rows(straight)
    # The set-up really is a non-improving run: epochs 1 and 2 validate worse than epoch 0.
    val = [float(row["val_loss"]) for row in rows]
    assert len(val) == 3 and val[1] > val[0] and val[2] > val[0], val
    assert _epoch(straight, "best") == 0
    assert _epoch(straight, "last") == 2  # the last epoch, not the best one

    # Crash at the start of the third epoch; the last checkpoint holds the second epoch.
    def crash(self, trainer, pl_module):
        if trainer.current_epoch == 2:
            raise RuntimeError("simulated crash")
    with monkeypatch.context() as patch:
        patch.setattr(fit_workflow.EpochMetricsCSV, "on_train_epoch_start", crash, raising=False)
        with pytest.raises(RuntimeError, match="simulated crash"):
            fit(FitConfig(**SMALL, epochs=3, out=str(tmp_path / "resumed")), progress=False)
    resumed = tmp_path / "resumed"
    assert _epoch(resumed, "last") == 1 and [r["epoch"] for r in _rows(resumed)] == ["0", "1"]
    fit(FitConfig.from_yaml(resumed / "config.yaml"), resume=True, progress=False)
    _same_rows(_rows(straight), _rows(resumed))
    a, b = _state(straight), _state(resumed)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
    # elapsed_s keeps counting across the resume.
    elapsed = [float(row["elapsed_s"]) for row in _rows(resumed)]
    assert elapsed == sorted(elapsed) and elapsed[2] > elapsed[1]

    # Extending a finished run trains only the new epoch and keeps every earlier row as it was.
    before = _rows(straight)
    config = FitConfig.from_yaml(straight / "config.yaml")
    config.epochs = 4
    fit(config, resume=True, progress=False)
    after = _rows(straight)
    assert [row["epoch"] for row in after] == ["0", "1", "2", "3"]
    assert after[:3] == before
    assert _epoch(straight, "last") == 3
    assert math.isfinite(float(after[3]["val_loss"]))


def _snapshot(run_dir: Path) -> dict[str, str]:
    return {str(path.relative_to(run_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(run_dir.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from spikelatent.workflows.fit import fit

    out = tmp_path_factory.mktemp("finished") / "run"
    return fit(FitConfig(**SMALL, epochs=1, out=str(out)), progress=False)


def _copy_run(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


class _Hostile:
    def __reduce__(self):
        import os
        return (os.system, ("touch HOSTILE_CODE_RAN",))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _hostile(path: Path) -> None:
    torch.save({"state_dict": {}, "payload": _Hostile()}, path)


def _foreign(path: Path) -> None:
    torch.save({"weights": torch.zeros(3)}, path)


@pytest.mark.parametrize(("damage", "message"), [
    (_truncate, "corrupt or truncated"),
    (_hostile, "not a spikelatent checkpoint or is unsafe"),
    (_foreign, "not a spikelatent checkpoint"),
])
def test_a_bad_last_checkpoint_is_one_line_and_changes_nothing(finished_run, tmp_path, capsys,
                                                               monkeypatch, damage, message):
    run_dir = _copy_run(finished_run, tmp_path / "run")
    damage(run_dir / "checkpoints" / "last.ckpt")
    before = _snapshot(run_dir)
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--resume", str(run_dir), "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert message in err and "last.ckpt" in err
    assert "weights_only" not in err  # never advice to disable the safe loader
    assert "use another checkpoint (e.g. checkpoints/last.ckpt)" not in err
    assert _snapshot(run_dir) == before
    assert not (tmp_path / "HOSTILE_CODE_RAN").exists()


def _drop_a_weight(state_dict: dict[str, torch.Tensor]) -> str:
    key = next(iter(state_dict))
    del state_dict[key]
    return f"missing key '{key}'"


def _add_a_weight(state_dict: dict[str, torch.Tensor]) -> str:
    state_dict["decoder.extra.weight"] = torch.zeros(2, 2)
    return "unexpected key 'decoder.extra.weight'"


def _reshape_a_weight(state_dict: dict[str, torch.Tensor]) -> str:
    key = next(key for key, value in state_dict.items() if value.ndim == 2)
    shape = tuple(state_dict[key].shape)
    state_dict[key] = torch.zeros(shape[0] + 1, shape[1])
    return f"key '{key}' has shape ({shape[0] + 1}, {shape[1]}), the model's {shape}"


@pytest.mark.parametrize("change", [_drop_a_weight, _add_a_weight, _reshape_a_weight])
def test_a_checkpoint_of_another_model_names_the_first_mismatching_key(finished_run, tmp_path,
                                                                       capsys, monkeypatch, change):
    run_dir = _copy_run(finished_run, tmp_path / "run")
    path = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, weights_only=False)
    expected = change(checkpoint["state_dict"])
    torch.save(checkpoint, path)
    before = _snapshot(run_dir)
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--resume", str(run_dir), "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "does not match the run's configuration" in err and "last.ckpt" in err
    assert expected in err, err
    assert "more key" not in err  # exactly one key differs
    assert _snapshot(run_dir) == before


@pytest.mark.parametrize("change", [_drop_a_weight, _add_a_weight, _reshape_a_weight])
def test_loading_a_checkpoint_of_another_model_names_the_first_mismatching_key(finished_run,
                                                                               tmp_path, change):
    run_dir = _copy_run(finished_run, tmp_path / "run")
    path = run_dir / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(path, weights_only=False)
    expected = change(checkpoint["state_dict"])
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError) as error:
        load(run_dir)
    assert "does not match its configuration" in str(error.value)
    assert expected in str(error.value) and len(str(error.value).splitlines()) == 1


def test_importing_the_training_workflow_leaves_logging_and_warnings_alone():
    """The CLI hides Lightning's advertisement and an internal notice while a command runs;
    importing the library (e.g. from a notebook) changes no global filter."""
    probe = (
        "import logging, warnings\n"
        # Third-party imports may set filters of their own (scikit-learn 1.3 does): not ours.
        "import lightning.pytorch, sklearn\n"
        "before = list(warnings.filters)\n"
        "logger = logging.getLogger('lightning.pytorch.utilities.rank_zero')\n"
        "filters = list(logger.filters)\n"
        "import spikelatent.workflows.fit, spikelatent.cli\n"
        "assert list(warnings.filters) == before, 'warning filters changed'\n"
        "assert list(logger.filters) == filters, 'logging filters changed'\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_keep_every_epochs_keeps_loadable_checkpoints_of_those_epochs(tmp_path):
    run_dir = tmp_path / "run"
    flags = ["--data", "synthetic", "--data-option", "n=96", "--latent-dim", "8", "--arch", "mlp",
             "--batch-size", "32", "--epochs", "5", "--keep-every-epochs", "2", "--no-progress"]
    assert main(["fit", *flags, "--out", str(run_dir)]) == 0
    kept = sorted((run_dir / "checkpoints" / "kept").glob("*.ckpt"))
    steps_per_epoch = int(_rows(run_dir)[0]["step"])  # the metrics row of epoch 0
    # epochs 1 and 3 (every 2nd, counted from 1); epoch 4 is the last, kept as last.ckpt anyway
    assert [path.name for path in kept] == [
        f"epoch001-step{2 * steps_per_epoch}.ckpt", f"epoch003-step{4 * steps_per_epoch}.ckpt"]
    for path, epoch in zip(kept, (1, 3), strict=True):
        checkpoint = torch.load(path, weights_only=True)
        assert (checkpoint["epoch"], checkpoint["global_step"]) == (epoch, (epoch + 1) * steps_per_epoch)
        assert load(path).config["keep_every_epochs"] == 2
    assert main(["fit", *flags[:10], "--keep-every-epochs", "0", "--out", str(tmp_path / "x")]) == 2

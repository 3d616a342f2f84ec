"""``spikelatent fit --logger``: Lightning's TensorBoard / W&B loggers inside the run directory,
holding the numbers of metrics.csv and the resolved hyper-parameters; a missing extra is one line."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import scipy.stats
import torch
import yaml

from spikelatent.checkpoints import load
from spikelatent.cli import main
from spikelatent.config import FitConfig
from spikelatent.data import datamodule_from_config

TINY = ["--data", "digits", "--limit", "160", "--latent-dim", "8", "--arch", "mlp",
        "--no-progress"]


def _scalars(folder: Path) -> tuple[dict[str, dict[int, float]], object]:
    """Every scalar tag of the TensorBoard event files in ``folder``: tag -> {step: value}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    scalars = {tag: {event.step: event.value for event in accumulator.Scalars(tag)}
               for tag in accumulator.Tags()["scalars"]}
    return scalars, accumulator


def test_tensorboard_holds_the_metrics_csv_numbers_and_the_hyperparameters(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = tmp_path / "run"
    assert main(["fit", *TINY, "--epochs", "2", "--logger", "tensorboard", "--out", str(out)]) == 0
    scalars, accumulator = _scalars(out / "tensorboard")
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 2
    for column in ("val_mse", "train_loss", "val_kl", "temperature", "beta", "lr"):
        logged = scalars[column]
        expected = {int(row["step"]): float(row[column]) for row in rows}
        assert logged.keys() == expected.keys(), column
        for step, value in expected.items():  # float32 in the event file
            assert math.isclose(logged[step], value, rel_tol=1e-6, abs_tol=1e-9), (column, step)
    assert {"summary/active_units", "summary/median_fano_factor", "summary/kl_per_image"} <= set(scalars)
    # Active units = units with a spike in one hard-count sample of each validation image. Its
    # oracle: P(unit k silent on all images) = prod_n NB pmf(0) (scipy) under the final weights;
    # the logged count lies between the units active with certainty and those that can fire.
    model = load(out, which="last")
    images, _ = datamodule_from_config(model.config).split_tensors("val", count=256)
    with torch.no_grad():
        posterior = model.posterior(images)
    log_silent = scipy.stats.nbinom.logpmf(
        0, posterior.total_count.double().numpy(),
        torch.sigmoid(posterior.logits.double()).numpy()).sum(0)  # (unit,)
    certain = int((log_silent < math.log(1e-9)).sum())  # silent with probability < 1e-9
    possible = int((log_silent < math.log1p(-1e-9)).sum())  # fire with probability > 1e-9
    logged = scalars["summary/active_units"][int(rows[-1]["step"])]
    assert certain <= logged <= possible, (certain, logged, possible)
    assert certain >= 1  # the bound is not vacuous
    assert {"reconstructions", "samples"} <= set(accumulator.Tags()["images"])
    # The resolved configuration, in TensorBoard's hparams plugin (and Lightning's hparams.yaml).
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    resolved = FitConfig.from_yaml(out / "config.yaml")
    assert hparams["config/lr"].number_value == pytest.approx(resolved.lr)
    assert hparams["config/model"].string_value == "negbio"
    assert hparams["config/batch_size"].number_value == resolved.batch_size
    saved = yaml.safe_load((out / "tensorboard" / "hparams.yaml").read_text())
    assert saved["config"] == resolved.to_dict()


def test_a_resumed_run_continues_the_same_logger_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    assert main(["fit", *TINY, "--epochs", "1", "--logger", "wandb", "--out", str(out)]) == 0
    run_id = (out / "wandb" / "spikelatent-run-id").read_text().strip()
    first = sorted((out / "wandb").glob("offline-run-*"))
    assert len(first) == 1 and first[0].name.endswith(run_id)
    assert main(["fit", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(run.name.endswith(run_id) for run in runs)


def test_mlflow_holds_the_metrics_csv_numbers_and_a_resume_continues_its_run(tmp_path):
    """--logger mlflow (the mlflow extra; CI installs it): every metrics.csv number in the run's
    file store, read back with mlflow's own client, and one MLflow run across a resume."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    out = tmp_path / "run"
    assert main(["fit", *TINY, "--epochs", "1", "--logger", "mlflow", "--out", str(out)]) == 0
    run_id = (out / "mlruns" / "spikelatent-run-id").read_text().strip()
    assert main(["fit", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    assert (out / "mlruns" / "spikelatent-run-id").read_text().strip() == run_id
    databases = sorted((out / "mlruns").glob("*.db"))  # a database store, else the file store
    client = MlflowClient(tracking_uri=f"sqlite:///{databases[0].resolve()}" if databases
                          else (out / "mlruns").resolve().as_uri())
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 2
    for column in ("val_mse", "train_loss", "val_kl", "beta", "lr"):
        logged = {metric.step: metric.value for metric in client.get_metric_history(run_id, column)}
        expected = {int(row["step"]): float(row[column]) for row in rows}
        assert logged.keys() == expected.keys(), column
        for step, value in expected.items():
            assert math.isclose(logged[step], value, rel_tol=1e-6, abs_tol=1e-9), (column, step)
    params = client.get_run(run_id).data.params
    assert params["config/model"] == "negbio"
    assert float(params["config/lr"]) == pytest.approx(FitConfig.from_yaml(out / "config.yaml").lr)


def test_a_missing_extra_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    import spikelatent.loggers

    real = spikelatent.loggers.importlib.util.find_spec
    monkeypatch.setattr(spikelatent.loggers.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    out = tmp_path / "run"
    assert main(["fit", *TINY, "--epochs", "1", "--logger", "mlflow", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "--logger mlflow needs the mlflow package" in err and "spikelatent[mlflow]" in err
    assert not out.exists()  # refused before anything is written


def test_logger_is_a_repeatable_flag_and_a_yaml_key(tmp_path):
    from spikelatent.cli import build_parser
    from spikelatent.commands.fit import config_from_args

    args = build_parser().parse_args(["fit", "--logger", "wandb", "--logger", "tensorboard"])
    assert config_from_args(args)[0].logger == ["csv", "wandb", "tensorboard"]
    (tmp_path / "run.yaml").write_text("logger: tensorboard\n")
    assert FitConfig.from_yaml(tmp_path / "run.yaml").resolved().logger == ["csv", "tensorboard"]
    assert FitConfig().resolved().logger == ["csv"]
    with pytest.raises(Exception, match="--logger must be one of csv, tensorboard, wandb, mlflow"):
        FitConfig(logger=["neptune"]).resolved()

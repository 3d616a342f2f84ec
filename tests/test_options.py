"""One home for every option (spikelatent.options, FitConfig): the Python API and the command line
build the same model, the CLI offers exactly the configuration's choices, and one model name."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch
import yaml

from spikelatent import options
from spikelatent.cli import build_parser
from spikelatent.commands.fit import config_from_args
from spikelatent.config import FIELD_OPTIONS, OPTION_CHOICES, FitConfig
from spikelatent.latents import make_latent_family
from spikelatent.model import VAE
from spikelatent.networks import make_decoder, make_encoder

IMAGE_SHAPE = (1, 28, 28)


def _fit_parser() -> argparse.ArgumentParser:
    subparsers = next(action for action in build_parser()._actions
                      if isinstance(action, argparse._SubParsersAction))
    return subparsers.choices["fit"]


def _cli_config(*flags: str) -> FitConfig:
    config, _ = config_from_args(build_parser().parse_args(["fit", *flags]))
    return config


def _structure(module: torch.nn.Module) -> tuple[str, list[tuple[str, tuple[int, ...]]]]:
    return str(module), [(name, tuple(p.shape)) for name, p in module.named_parameters()]


def _built(config: FitConfig) -> VAE:
    torch.manual_seed(0)
    return VAE(config, IMAGE_SHAPE)


@pytest.mark.parametrize("model", options.MODELS)
def test_python_api_and_cli_build_the_same_default_model(model):
    from_python = _built(FitConfig(model=model))
    from_cli = _built(_cli_config("--model", model))
    assert _structure(from_python) == _structure(from_cli)
    assert from_python.hparams == from_cli.hparams
    assert from_python.config.to_dict() == from_cli.config.to_dict()
    assert from_python.final_beta == from_cli.final_beta
    # same seed, same architecture: the very same initial weights
    for (name, ours), (_, theirs) in zip(from_python.state_dict().items(),
                                          from_cli.state_dict().items(), strict=True):
        assert torch.equal(ours, theirs), name


def test_library_factories_default_to_the_configuration():
    """make_latent_family / make_encoder / make_decoder with no options build what fit builds."""
    model = _built(FitConfig())
    latent = make_latent_family(options.MODEL.default)
    assert _structure(latent) == _structure(model.family.latent)
    for name in ("kl_estimator", "relax", "posterior_logits", "modulation_bound", "mc_kl",
                 "nb_sampler", "mc_samples", "gumbel_support", "latent_dim"):
        assert getattr(latent, name) == getattr(model.family.latent, name), name
    assert latent.posterior_logits == FitConfig().posterior_logits == "absolute"
    assert latent.modulation_bound == FitConfig().modulation_bound == 5.0
    encoder = make_encoder(options.ARCH.default, IMAGE_SHAPE, latent.encoder_outputs)
    decoder = make_decoder(options.ARCH.default, latent.latent_dim, IMAGE_SHAPE)
    assert _structure(encoder) == _structure(model.family.encoder)
    assert _structure(decoder) == _structure(model.family.decoder)
    assert isinstance(model.family.encoder.norm, torch.nn.LayerNorm)  # encoder_layer_norm on


def test_every_cli_choice_list_is_the_configurations():
    offered = {action.dest: tuple(action.choices) for action in _fit_parser()._actions
               if action.choices is not None}
    assert offered == OPTION_CHOICES
    for name, choice in options.CHOICES.items():
        assert offered[name] == choice.values == OPTION_CHOICES[name]
    assert offered["preset"] == FIELD_OPTIONS["preset"].values


def test_every_flag_is_a_field_with_its_default_in_the_help():
    parser = _fit_parser()
    flags = {action.dest: action for action in parser._actions if action.option_strings}
    defaults = FitConfig()
    for field in dataclasses.fields(FitConfig):
        declared = FIELD_OPTIONS[field.name]
        if not declared.flag:
            assert field.name not in flags
            continue
        action = flags[field.name]
        assert declared.flag_name in action.option_strings
        assert action.help == declared.help_text()
        default = getattr(defaults, field.name)
        if default is None:
            assert declared.unset, f"{field.name}: say what an unset value means"
        else:
            assert options.format_value(default) in action.help, field.name


def test_aliases_old_files_and_the_model_name_in_outputs(tmp_path):
    assert _cli_config("--model", "negbinomial").model == "negbio"
    old = tmp_path / "config.yaml"
    old.write_text(yaml.safe_dump({"model": "negbinomial", "latent_dim": 8, "arch": "linear"}))
    config = FitConfig.from_yaml(old).resolved()
    assert config.model == "negbio"
    model = VAE(config, IMAGE_SHAPE)
    assert model.family.latent.name == "negbio" == make_latent_family("negbinomial", 4).name
    assert model.variant == "NegBio-VAE DS-C" == options.display_name("negbinomial")
    assert list(options.PAPER_MODELS) == [
        "G-VAE", "L-VAE", "C-VAE", "P-VAE", "NegBio-VAE MC-G", "NegBio-VAE MC-C",
        "NegBio-VAE DS-G", "NegBio-VAE DS-C"]
    for name, (family, kl, relax) in options.PAPER_MODELS.items():
        assert options.display_name(family, kl, relax) == name


def test_sources_precedence_and_an_explicit_default_over_a_preset(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("lr: 0.004\nepochs: 7\nbatch_size: 16\n")
    config = FitConfig.from_sources(preset="poisson-vae", config_file=config_file,
                                    epochs=2, optimizer="adam")
    assert config.lr == 0.004 and config.epochs == 2 and config.batch_size == 16  # file, flag
    assert config.prior_init == "sparse" and config.lr_schedule == "cosine"  # the preset's
    assert config.optimizer == "adam"  # the built-in default, given explicitly, beats the preset
    # Typed all the way: building the model or resolving again keeps every value.
    assert FitConfig.coerce(config).to_dict() == config.to_dict()
    assert config.resolved().to_dict() == config.to_dict()
    assert VAE(config, IMAGE_SHAPE).config.optimizer == "adam"
    # The command line says the same through the same function.
    flags = _cli_config("--preset", "poisson-vae", "--config", str(config_file), "--epochs", "2",
                        "--optimizer", "adam")
    assert flags.to_dict() == config.to_dict()


def test_a_checkpoints_plain_dict_hyperparameters_rebuild_the_model():
    model = _built(FitConfig(latent_dim=8, arch="linear", model="poisson"))
    hparams = dict(model.hparams)
    assert type(hparams["config"]) is dict  # loads with torch.load(weights_only=True)
    again = VAE(hparams["config"], tuple(hparams["image_shape"]))
    assert again.config == model.config and _structure(again) == _structure(model)
    assert model.config["lr"] == model.config.lr and dict(model.config) == model.config.to_dict()

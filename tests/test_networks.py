"""Encoders and decoders: shapes, ranges, hand-computed outputs and parameter counts, errors."""

from __future__ import annotations

import math

import pytest
import torch

from spikelatent.errors import SpikelatentError
from spikelatent.networks import ARCHITECTURES, count_parameters, make_decoder, make_encoder

SHAPES = [(1, 28, 28), (3, 16, 16), (3, 64, 64)]
LATENT_DIM = 12
BATCH = 3


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _sigmoid(x):
    return 1.0 / (1.0 + torch.exp(-x))


def _silu(x):
    return x * _sigmoid(x)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("image_shape", SHAPES)
def test_encoder_output_shape_and_gradients(arch, image_shape):
    encoder = make_encoder(arch, image_shape, out_features=2 * LATENT_DIM)
    images = torch.rand(BATCH, *image_shape, requires_grad=True)
    features = encoder(images)
    assert features.shape == (BATCH, 2 * LATENT_DIM)
    assert torch.isfinite(features).all()
    features.square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("image_shape", SHAPES)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_decoder_output_shape_range_and_gradients(arch, image_shape, activation):
    decoder = make_decoder(arch, LATENT_DIM, image_shape, output_activation=activation)
    # Count-like latent samples, including large counts: no normalisation is expected.
    latents = torch.randint(0, 201, (BATCH, LATENT_DIM)).float().requires_grad_()
    images = decoder(latents)
    assert images.shape == (BATCH, *image_shape)
    assert torch.isfinite(images).all()
    low = 0.0 if activation == "sigmoid" else -1.0
    assert images.min() >= low and images.max() <= 1.0
    # A decoder that forgot its output activation, or used the other one, fails one of these.
    small = decoder(torch.rand(BATCH, LATENT_DIM))
    assert small.min() >= low and small.max() <= 1.0
    if activation == "tanh":
        assert (small < 0).any() or (images < 0).any()
    images.square().sum().backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0
    for name, parameter in decoder.named_parameters():
        assert parameter.grad is not None, name


@pytest.mark.parametrize("arch", ["linear", "mlp"])
def test_linear_and_mlp_accept_any_image_shape_and_flat_input(arch):
    shape = (2, 9, 13)
    encoder = make_encoder(arch, shape, 5)
    images = torch.rand(4, *shape)
    assert torch.allclose(encoder(images), encoder(images.reshape(4, -1)))
    assert make_decoder(arch, 3, shape, "tanh")(torch.rand(4, 3)).shape == (4, *shape)


def test_linear_encoder_matches_hand_computed_affine_map():
    encoder = make_encoder("linear", (1, 4, 5), 3)
    images = torch.rand(2, 1, 4, 5)
    weight, bias = encoder.projection.weight.detach(), encoder.projection.bias.detach()
    expected = torch.stack(
        [
            torch.tensor(
                [
                    sum(weight[o, i] * images[b].flatten()[i] for i in range(20)) + bias[o]
                    for o in range(3)
                ]
            )
            for b in range(2)
        ]
    )
    assert torch.allclose(encoder(images), expected, atol=1e-5)


def test_linear_encoder_weight_norm_is_norm_times_direction():
    encoder = make_encoder("linear", (1, 4, 4), 6, weight_norm=True)
    originals = encoder.projection.parametrizations.weight
    norm, direction = originals.original0, originals.original1  # g (6, 1), v (6, 16)
    effective = norm * direction / direction.norm(dim=1, keepdim=True)
    images = torch.rand(3, 1, 4, 4)
    expected = images.reshape(3, 16) @ effective.T + encoder.projection.bias
    assert torch.allclose(encoder(images), expected, atol=1e-5)
    # Each weight row's norm is the learned g.
    assert torch.allclose(encoder.projection.weight.norm(dim=1), norm.squeeze(1).abs(), atol=1e-5)


def test_linear_decoder_matches_hand_computed_sigmoid_of_affine_map():
    decoder = make_decoder("linear", 4, (1, 2, 3), "sigmoid")
    latents = torch.tensor([[0.0, 3.0, 10.0, 1.0]])
    weight, bias = decoder.projection.weight, decoder.projection.bias
    expected = _sigmoid(latents @ weight.T + bias).reshape(1, 1, 2, 3)
    assert torch.allclose(decoder(latents), expected, atol=1e-6)


def test_mlp_networks_follow_the_residual_recipe():
    encoder = make_encoder("mlp", (1, 5, 5), 7, hidden=16)
    images = torch.rand(3, 1, 5, 5)
    hidden = _silu(encoder.input_layer(images.reshape(3, 25)))
    hidden = hidden + _silu(hidden @ encoder.residual.dense.weight.T + encoder.residual.dense.bias)
    expected = hidden @ encoder.projection.weight.T + encoder.projection.bias
    assert torch.allclose(encoder(images), expected, atol=1e-5)

    decoder = make_decoder("mlp", 6, (1, 5, 5), "tanh", hidden=16)
    latents = torch.rand(3, 6) * 20
    hidden = _silu(decoder.input_layer(latents))
    hidden = hidden + _silu(decoder.residual.dense(hidden))
    expected = torch.tanh(decoder.output_layer(hidden)).reshape(3, 1, 5, 5)
    assert torch.allclose(decoder(latents), expected, atol=1e-5)
    linear_layers = [m for m in decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linear_layers) == 3


def test_mlp_activation_is_configurable():
    encoder = make_encoder("mlp", (1, 3, 3), 2, hidden=8, activation="relu")
    images = torch.rand(2, 1, 3, 3)
    hidden = torch.clamp(encoder.input_layer(images.reshape(2, 9)), min=0)
    hidden = hidden + torch.clamp(encoder.residual.dense(hidden), min=0)
    assert torch.allclose(encoder(images), encoder.projection(hidden), atol=1e-6)


@pytest.mark.parametrize(
    ("image_shape", "encoder_maps", "decoder_start"),
    [
        ((1, 28, 28), [(32, 14, 14), (64, 7, 7)], (128, 7, 7)),
        ((3, 16, 16), [(32, 8, 8), (64, 4, 4)], (128, 4, 4)),
        ((3, 64, 64), [(32, 32, 32), (64, 16, 16), (64, 8, 8), (64, 4, 4)], (128, 4, 4)),
    ],
)
def test_conv_stage_resolutions(image_shape, encoder_maps, decoder_start):
    encoder = make_encoder("conv", image_shape, 10)
    maps, hidden = [], torch.rand(2, *image_shape)
    for layer in encoder.features:
        hidden = layer(hidden)
        if isinstance(layer, torch.nn.Conv2d):
            maps.append(tuple(hidden.shape[1:]))
    assert maps == encoder_maps
    assert encoder.projection.in_features == math.prod(encoder_maps[-1])

    decoder = make_decoder("conv", 5, image_shape, "sigmoid")
    start = decoder.expand(torch.rand(2, 5))
    assert tuple(start.shape[1:]) == decoder_start
    sides, hidden = [], start
    for layer in decoder.upsample:
        hidden = layer(hidden)
        if isinstance(layer, torch.nn.ConvTranspose2d):
            sides.append(hidden.shape[-1])
    assert sides == [decoder_start[-1] * 2 ** (k + 1) for k in range(len(encoder_maps))]
    assert sides[-1] == image_shape[-1]
    assert hidden.shape[1] == image_shape[0]


def test_conv_parameter_counts_match_hand_formula_and_stay_small():
    latent_dim, out_features = 256, 512
    # The plain networks (spikelatent fit's defaults add LayerNorm's 2 * 512 parameters)
    encoder = make_encoder("conv", (1, 28, 28), out_features, layer_norm=False)
    decoder = make_decoder("conv", latent_dim, (1, 28, 28), "sigmoid", unit_norm=False)

    def conv(cin, cout):  # 4x4 kernel + bias
        return cin * cout * 16 + cout

    # Encoder 1 -> 32 -> 64, decoder twice as wide: Linear(256 -> 128*7*7), 128 -> 64 -> 1.
    expected_encoder = conv(1, 32) + conv(32, 64) + (64 * 7 * 7 + 1) * out_features
    expected_decoder = (latent_dim + 1) * 128 * 7 * 7 + conv(128, 64) + conv(64, 1)
    assert count_parameters(encoder) == expected_encoder == 1_639_520
    assert count_parameters(decoder) == expected_decoder == 1_744_065
    assert 1_000_000 < expected_encoder + expected_decoder < 4_000_000


def test_mlp_and_linear_parameter_counts_match_hand_formula():
    pixels, hidden, latent, out = 784, 512, 256, 512
    assert count_parameters(make_encoder("linear", (1, 28, 28), out)) == (pixels + 1) * out
    assert count_parameters(make_decoder("linear", latent, (1, 28, 28))) == (latent + 1) * pixels
    assert count_parameters(make_encoder("mlp", (1, 28, 28), out)) == (
        (pixels + 1) * hidden + (hidden + 1) * hidden + (hidden + 1) * out
    )
    assert count_parameters(make_decoder("mlp", latent, (1, 28, 28))) == (
        (latent + 1) * hidden + (hidden + 1) * hidden + (hidden + 1) * pixels
    )


def test_conv_custom_channels_and_layer_norm():
    encoder = make_encoder("conv", (3, 16, 16), 8, channels=(8, 16), layer_norm=True)
    images = torch.rand(5, 3, 16, 16)
    features = encoder(images)
    # LayerNorm at init (unit gain, zero bias, eps 1e-5) standardises each row by hand:
    raw = encoder.projection(encoder.flatten(encoder.features(images)))
    mean, var = raw.mean(dim=1, keepdim=True), raw.var(dim=1, unbiased=False, keepdim=True)
    assert torch.allclose(features, (raw - mean) / torch.sqrt(var + 1e-5), atol=1e-5)
    assert torch.allclose(features.mean(dim=1), torch.zeros(5), atol=1e-5)
    assert [m.out_channels for m in encoder.features if isinstance(m, torch.nn.Conv2d)] == [8, 16]
    decoder = make_decoder("conv", 4, (3, 16, 16), "tanh", channels=(8, 16))
    assert decoder(torch.rand(2, 4)).shape == (2, 3, 16, 16)


def test_conv_supports_other_halving_resolutions():
    for side in (8, 14, 32, 56):
        encoder = make_encoder("conv", (1, side, side), 3)
        decoder = make_decoder("conv", 2, (1, side, side))
        assert encoder(torch.rand(1, 1, side, side)).shape == (1, 3)
        assert decoder(torch.rand(1, 2)).shape == (1, 1, side, side)


def _assert_one_line_error(call, *fragments):
    with pytest.raises(SpikelatentError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_invalid_arguments_raise_one_line_errors():
    _assert_one_line_error(lambda: make_encoder("resnet", (1, 28, 28), 4), "linear, mlp, conv")
    _assert_one_line_error(lambda: make_decoder("transformer", 4, (1, 28, 28)), "linear, mlp, conv")
    _assert_one_line_error(lambda: make_decoder("mlp", 4, (1, 28, 28), "relu"), "sigmoid, tanh")
    for bad in (0, -3, 2.5, True, "8", None):
        _assert_one_line_error(lambda bad=bad: make_decoder("mlp", bad, (1, 28, 28)), "latent_dim")
        _assert_one_line_error(
            lambda bad=bad: make_encoder("mlp", (1, 28, 28), bad), "out_features"
        )
    for bad_shape in ((28, 28), (1, 0, 28), (1, 28, 28, 1), "abc", None):
        _assert_one_line_error(lambda s=bad_shape: make_encoder("linear", s, 4), "image_shape")
    _assert_one_line_error(lambda: make_encoder("mlp", (1, 28, 28), 4, depth=3), "depth", "hidden")
    _assert_one_line_error(lambda: make_encoder("mlp", (1, 28, 28), 4, activation="nope"), "silu")
    _assert_one_line_error(lambda: make_encoder("conv", (3, 16, 16), 4, channels=(8,)), "2")


@pytest.mark.parametrize(("shape", "stages", "side"), [((1, 12, 12), 1, 6), ((1, 24, 24), 2, 6),
                                                      ((3, 20, 20), 2, 5), ((1, 10, 10), 1, 5)])
def test_conv_halves_any_even_side_down_to_seven_or_less(shape, stages, side):
    """12 x 12 patches (docs/data.md) and 24 x 24 arrays: side / 2**stages, round trip exact."""
    from spikelatent.networks import conv_plan

    assert conv_plan(shape) == (stages, side) and shape[1] == side * 2**stages
    encoder, decoder = make_encoder("conv", shape, 6), make_decoder("conv", 3, shape)
    assert encoder(torch.rand(2, *shape)).shape == (2, 6)
    assert decoder(torch.rand(2, 3)).shape == (2, *shape)


@pytest.mark.parametrize("shape", [(1, 30, 30), (3, 16, 32), (1, 7, 7), (1, 9, 9), (1, 6, 6)])
def test_conv_refuses_unsupported_shapes(shape):
    _assert_one_line_error(lambda: make_encoder("conv", shape, 4), "square", "mlp")
    _assert_one_line_error(lambda: make_decoder("conv", 4, shape), "square", "mlp")


def test_wrong_input_shapes_raise_one_line_errors():
    encoder = make_encoder("conv", (1, 28, 28), 4)
    _assert_one_line_error(lambda: encoder(torch.rand(2, 3, 28, 28)), "(batch, 1, 28, 28)")
    _assert_one_line_error(lambda: encoder(torch.rand(2, 784)), "(batch, 1, 28, 28)")
    decoder = make_decoder("linear", 6, (1, 28, 28))
    _assert_one_line_error(lambda: decoder(torch.rand(2, 5)), "(batch, 6)")

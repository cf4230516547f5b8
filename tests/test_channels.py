"""Channel pruning: exact surgery, the residual/depthwise rule, the MACs it saves, a loadable thinner model."""

import numpy as np
import pytest

from edge_cnn.errors import EdgeCNNError
from edge_cnn.export.channels import kept_count, prunable_convolutions, prune_channels
from edge_cnn.keras import keras, layers
from edge_cnn.keras_file import ALLOWED_LAYERS, load_keras_model
from edge_cnn.train.model import build_model

ZOO_CASES = {
    "conv chain": ("small_convnet", 0.5),
    "residual blocks": ("resnet18", None),
    "depthwise blocks": ("mobilenet_v2", 0.35),
}


def random_inputs(model, count: int = 4) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(count, *model.input_shape[1:])).astype(np.float32)


def with_doomed_channels_silent(model, fraction: float):
    """Random BN statistics and scales everywhere, then gamma = beta = 0 on the channels pruning will
    remove, in every BatchNormalization they pass through: those channels then carry exact zeros."""
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, variance = (w.shape for w in layer.get_weights())
            layer.set_weights([rng.uniform(0.5, 1.5, gamma), rng.normal(0, 0.1, beta),
                               rng.normal(0, 0.1, mean), rng.uniform(0.5, 1.5, variance)])
    for conv, chain in prunable_convolutions(model).items():
        doomed = model.get_layer(conv).filters - kept_count(model.get_layer(conv).filters, fraction)
        for name in chain:
            bn = model.get_layer(name)
            if isinstance(bn, layers.BatchNormalization):
                gamma, beta, mean, variance = bn.get_weights()
                gamma[:doomed] = beta[:doomed] = 0.0
                bn.set_weights([gamma, beta, mean, variance])
    return model


@pytest.mark.parametrize("case", list(ZOO_CASES))
def test_removing_silent_channels_keeps_the_outputs(case):
    name, width = ZOO_CASES[case]
    model = with_doomed_channels_silent(build_model(name, (32, 32, 3), 5, width=width), 0.5)
    thinner, facts = prune_channels(model, 0.5)
    x = random_inputs(model)
    np.testing.assert_allclose(thinner.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    assert facts["channels_kept"] and facts["macs_after"] < facts["macs_before"]
    assert [(l.name, type(l)) for l in thinner.layers] == [(l.name, type(l)) for l in model.layers]


def test_l1_ranking_flatten_and_concatenation_follow_the_kept_channels():
    """No BN: filters ranked by L1 norm; a channel Concatenate and a Flatten before the Dense follow."""
    inputs = keras.Input((6, 6, 3))
    left = layers.Conv2D(8, 3, activation="relu", name="left")(inputs)
    right = layers.Conv2D(4, 3, activation="relu", name="right")(inputs)
    joined = layers.Flatten(name="flat")(layers.Concatenate(name="join")([left, right]))
    model = keras.Model(inputs, layers.Dense(3, name="predictions")(joined))
    for conv in ("left", "right"):
        kernel, bias = model.get_layer(conv).get_weights()
        doomed = kernel.shape[-1] - kept_count(kernel.shape[-1], 0.5)
        kernel[..., :doomed], bias[:doomed] = 0.0, 0.0
        model.get_layer(conv).set_weights([kernel, bias])
    thinner, facts = prune_channels(model, 0.5)
    assert facts["channels_kept"] == {"left": {"kept": 4, "of": 8}, "right": {"kept": 2, "of": 4}}
    x = random_inputs(model)
    np.testing.assert_allclose(thinner.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_convolutions_feeding_an_addition_or_the_output_keep_their_channels():
    resnet = prunable_convolutions(build_model("resnet18", (32, 32, 3), 5))
    assert sorted(resnet) == [f"layer{stage}_{block}_conv1_conv" for stage in range(1, 5) for block in range(2)]
    mobilenet = prunable_convolutions(build_model("mobilenet_v2", (32, 32, 3), 5, width=0.35))
    assert "block2_expand_conv" in mobilenet and "block3_project_conv" not in mobilenet  # block3 ends in an Add
    assert mobilenet["block2_expand_conv"][:4] == ["block2_expand_bn", "block2_expand_relu6", "block2_dw_dwconv",
                                                   "block2_dw_bn"]  # the depthwise follows its input
    inputs = keras.Input((8, 8, 3))
    assert not prunable_convolutions(keras.Model(inputs, layers.Conv2D(4, 3)(inputs)))


def test_half_the_channels_of_small_convnet_cost_about_a_quarter(tmp_path):
    """Halving both sides of every convolution but the first quarters its MACs and parameters."""
    model = build_model("small_convnet", (32, 32, 3), 10, width=0.5)
    thinner, facts = prune_channels(model, 0.5)
    assert {name: kept["kept"] for name, kept in facts["channels_kept"].items()} == {
        "stage1_conv": 8, "stage2_conv": 16, "stage3_conv": 32
    }
    assert 0.25 <= facts["macs_after"] / facts["macs_before"] <= 0.3
    assert 0.25 <= facts["params_after"] / facts["params_before"] <= 0.3
    assert {type(layer).__name__ for layer in thinner.layers} <= ALLOWED_LAYERS
    thinner.save(tmp_path / "thin.keras")
    loaded = load_keras_model(tmp_path / "thin.keras")
    x = random_inputs(model)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), thinner.predict(x, verbose=0), atol=1e-6)


def test_counts_round_half_up_keep_one_and_refuse_impossible_fractions():
    assert [kept_count(channels, 0.5) for channels in (1, 3, 16)] == [1, 2, 8]
    assert kept_count(4, 0.99) == 1
    with pytest.raises(EdgeCNNError, match="between 0 and 1"):
        prune_channels(build_model("small_convnet", (32, 32, 3), 2, width=0.25), 1.0)

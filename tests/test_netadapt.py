"""NetAdapt: per-layer channel pruning, the latency-guided loop on a model whose answer is known, an
unreachable target, `edgecnn export --target-latency` end to end, and its bad values."""

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import tiny_classifier
from edge_cnn.cli import main
from edge_cnn.errors import EdgeCNNError
from edge_cnn.export import netadapt as netadapt_module
from edge_cnn.export.channels import prune_channels
from edge_cnn.export.netadapt import NOTHING_TO_SPARE, netadapt, tflite_latency_ms
from edge_cnn.keras import keras, layers
from edge_cnn.manifest import load_manifest
from edge_cnn.run_dir import RunDir
from edge_cnn.zoo import profile


def macs_ms(model) -> float:
    """A deterministic stand-in for a latency measurement: one millisecond per thousand MACs."""
    return profile(model)["macs"] / 1000.0


def brighter_channel_model():
    """A model whose every weight is set by hand, with a known answer: the label is the brighter of two
    input channels. conv0 (1x1) copies both channels, and both are needed; conv1 (1x1) copies them into
    its first two of four channels, its last two are dead (zero kernel, BN gamma and beta); the Dense
    compares the two live ones. Pruning conv1 twice costs nothing, pruning conv0 at all costs half the
    answers, although a conv0 channel saves more MACs than a conv1 one."""
    inputs = keras.Input((8, 8, 2), name="image")
    h = inputs
    for i, width in enumerate((2, 4)):
        h = layers.Conv2D(width, 1, use_bias=False, name=f"conv{i}")(h)
        h = layers.BatchNormalization(name=f"bn{i}")(h)
        h = layers.ReLU(name=f"relu{i}")(h)
    h = layers.GlobalAveragePooling2D(name="head_pool")(h)
    model = keras.Model(inputs, layers.Dense(2, activation="softmax", name="predictions")(h))
    model.get_layer("conv0").set_weights([np.eye(2).reshape(1, 1, 2, 2)])
    copy = np.zeros((1, 1, 2, 4))
    copy[0, 0, 0, 0] = copy[0, 0, 1, 1] = 1.0
    model.get_layer("conv1").set_weights([copy])
    model.get_layer("bn1").set_weights([np.array([1.0, 1.0, 0.0, 0.0]), np.zeros(4), np.zeros(4), np.ones(4)])
    compare = np.zeros((4, 2))
    compare[0], compare[1] = (10.0, -10.0), (-10.0, 10.0)
    model.get_layer("predictions").set_weights([compare, np.zeros(2)])
    return model


def brighter_channel_data(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).uniform(0.0, 1.0, (count, 8, 8, 2)).astype(np.float32)
    return x, (x[..., 1].mean(axis=(1, 2)) > x[..., 0].mean(axis=(1, 2))).astype(np.int64)


def test_per_layer_fractions_prune_only_the_named_convolutions():
    model = tiny_classifier((16, 16, 3), 2)
    bn1 = model.get_layer("bn1")
    bn1.set_weights([np.arange(16, dtype=np.float32), *bn1.get_weights()[1:]])  # the top half has the larger |gamma|
    thinner, facts = prune_channels(model, {"conv1": 0.5})
    assert facts["channels_kept"] == {"conv1": {"kept": 8, "of": 16}} and facts["fraction"] == {"conv1": 0.5}
    assert thinner.get_layer("conv0").filters == 8 and thinner.get_layer("conv1").filters == 8
    kernel = {name: model.get_layer(name).kernel.numpy() for name in ("conv0", "conv1")}
    np.testing.assert_array_equal(thinner.get_layer("conv0").kernel.numpy(), kernel["conv0"])
    np.testing.assert_array_equal(thinner.get_layer("conv1").kernel.numpy(), kernel["conv1"][..., 8:])
    np.testing.assert_array_equal(thinner.get_layer("bn1").gamma.numpy(), np.arange(8, 16))
    assert facts["macs_after"] < facts["macs_before"]
    with pytest.raises(EdgeCNNError, match="predictions cannot lose channels"):
        prune_channels(model, {"predictions": 0.5})
    with pytest.raises(EdgeCNNError, match="between 0 and 1"):
        prune_channels(model, {"conv0": 1.0})


def test_netadapt_prunes_where_accuracy_suffers_least_until_the_target():
    model = brighter_channel_model()
    (x_train, y_train), (x_val, y_val) = brighter_channel_data(32, 0), brighter_channel_data(64, 1)
    conv0_step, _ = prune_channels(model, {"conv0": 0.5})
    conv1_step, _ = prune_channels(model, {"conv1": 0.25})
    assert macs_ms(conv0_step) < macs_ms(conv1_step)  # the greedy latency choice would be conv0
    target = macs_ms(prune_channels(model, {"conv1": 0.5})[0])
    pruned, facts = netadapt(model, x_train, y_train, x_val, y_val, target, macs_ms, short_epochs=0)
    assert [step["layer"] for step in facts["iterations"]] == ["conv1", "conv1"]
    assert [step["kept"] for step in facts["iterations"]] == [3, 2]
    assert facts["met"] and facts["stopped"] == "target met" and facts["latency_after_ms"] == pytest.approx(target)
    assert facts["val_accuracy_before"] == facts["val_accuracy_after"] == 1.0
    assert facts["channels_kept"] == {"conv0": {"kept": 2, "of": 2}, "conv1": {"kept": 2, "of": 4}}
    assert facts["macs_after"] < facts["macs_before"] and model.get_layer("conv1").filters == 4  # source untouched
    np.testing.assert_allclose(pruned.predict(x_val, verbose=0), model.predict(x_val, verbose=0), atol=1e-5)


def test_an_unreachable_target_stops_when_no_layer_can_shrink():
    model = brighter_channel_model()
    x, y = brighter_channel_data(16, 0)
    pruned, facts = netadapt(model, x, y, x, y, 1e-6, macs_ms, short_epochs=0)
    assert not facts["met"] and facts["stopped"] == NOTHING_TO_SPARE
    assert len(facts["iterations"]) == 4  # conv1 4 -> 3 -> 2 -> 1 and conv0 2 -> 1, one channel each
    assert {name: kept["kept"] for name, kept in facts["channels_kept"].items()} == {"conv0": 1, "conv1": 1}
    assert facts["latency_after_ms"] == macs_ms(pruned) > 1e-6


def test_tflite_latency_is_a_positive_median():
    latency = tflite_latency_ms(tiny_classifier((16, 16, 3), 2), runs=5)
    assert math.isfinite(latency) and latency > 0


def test_export_target_latency_writes_a_thinner_model_that_passes_parity(tiny_run_dir, tmp_path, monkeypatch):
    """The real measurement is timing noise on a busy CPU; the loop is exercised with the MACs cost."""
    monkeypatch.setattr(netadapt_module, "tflite_latency_ms", macs_ms)
    run = Path(shutil.copytree(tiny_run_dir, tmp_path / "run"))
    target = 0.9 * macs_ms(keras.models.load_model(RunDir(run).model_path))
    args = ["export", str(run), "--target-latency", str(target), "--prune-epochs", "1", "--format", "tflite"]
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 0, outcome.output
    artifact = load_manifest(run / "export" / "manifest.json").artifacts[0]
    assert artifact.path == "model_netadapt_fp32.tflite" and artifact.status == "OK"
    facts = artifact.optimization
    assert facts["method"] == "netadapt" and facts["met"] and facts["iterations"]
    assert facts["validation"] == "val split (8 images)" and len(facts["fine_tune_loss"]) == 1
    assert facts["latency_after_ms"] <= target < facts["latency_before_ms"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target-latency", "0"], "--target-latency 0.0 must be a latency above 0 milliseconds"),
        (["--target-latency", "5", "--prune-channels", "0.5"], "--target-latency and --cluster are exclusive"),
    ],
)
def test_bad_target_latency_exits_2_with_one_line(args, message, tmp_path):
    outcome = CliRunner().invoke(main, ["export", str(tmp_path), *args])
    assert outcome.exit_code == 2, outcome.output
    errors = [line for line in outcome.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]

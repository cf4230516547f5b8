"""Trainer, the less travelled roads: early stopping and the plateau schedule across a
resume, MultiWorkerMirroredStrategy on one CPU worker, ``--weights imagenet`` from a
local Keras cache (a stand-in file: this machine is offline).

Tiny on purpose: small_convnet at width 0.25 on 16x16 squares, MobileNetV2 0.35 at 32x32.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_cnn.cli import main
from edge_cnn.errors import EdgeCNNError
from edge_cnn.train import TrainConfig

TINY = dict(model="small_convnet", width=0.25, img_size="16x16", batch_size=8, lr=0.01, epochs=1,
            fine_tune_epochs=0, seed=0)


def tiny(data, out, **changes) -> TrainConfig:
    return TrainConfig(data=str(data), out=str(out), **{**TINY, **changes})


def _train(config, **kwargs):
    from edge_cnn.train import train

    return train(config, verbose=0, **kwargs)


def _without_time(rows):
    return [{key: value for key, value in row.items() if key != "time_s"} for row in rows]


def _latest(run_dir) -> dict:
    return json.loads((Path(run_dir) / "checkpoints" / "latest.json").read_text())


# --- early stopping and plateau across a resume ------------------------------------------

def test_resume_stops_at_the_same_epoch_with_the_same_history(square_images, tmp_path):
    """A run interrupted right after the plateau rule lowered its rate, then resumed, must stop
    at the same epoch with the same history (losses, rates) and end with the same counters as
    the run that was never interrupted.

    Exact equality holds because the run has no random draws besides the seeded shuffle,
    which a resume continues (dropout 0, no augmentation). lr 0.1 drives the validation loss
    to ~1e-7, then it wobbles: the plateau rule halves the rate and early stopping (patience
    2) ends the stage before its 10 epochs. Were the counters reset on resume, early stopping
    would start from 'nothing seen yet' and could not stop before cut + patience + 1; were
    the rate saved before the plateau rule lowered it, the next epoch would run at the old rate.
    """
    from edge_cnn.keras import keras

    patience = 2
    settings = dict(lr=0.1, epochs=10, dropout=0.0, early_stopping=patience, schedule="plateau")
    whole = _train(tiny(square_images, tmp_path / "whole", **settings))
    stop_epoch = len(whole.history)
    lowered = [row["epoch"] for row, after in zip(whole.history, whole.history[1:]) if after["lr"] < row["lr"]]
    assert stop_epoch < 10, "early stopping did not trigger: the test would prove nothing"
    assert lowered, "the plateau rule never lowered the rate: the test would prove nothing"
    cut = lowered[-1]
    assert stop_epoch <= cut + patience, "a reset early stopping could stop at the same epoch"

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == cut:
                raise KeyboardInterrupt

    first = _train(tiny(square_images, tmp_path / "cut", **settings), callbacks=[CtrlC()])
    assert first.interrupted and _latest(first.run_dir)["epoch"] == cut
    assert _latest(first.run_dir)["lr"] == whole.history[cut]["lr"]  # the lowered rate, for epoch cut + 1

    resumed = _train(TrainConfig(out=str(first.run_dir)), resume=True)
    assert len(resumed.history) == stop_epoch
    assert _without_time(resumed.history) == _without_time(whole.history)
    assert _latest(resumed.run_dir)["counters"] == _latest(whole.run_dir)["counters"]
    assert resumed.metrics["test"] == whole.metrics["test"]


def test_resumable_rules_keep_counters_through_on_train_begin():
    """Keras resets the counters in on_train_begin; loaded ones come back after that reset,
    and a fresh rule (nothing loaded) starts from nothing, as Keras would."""
    from edge_cnn.train.callbacks import ResumableEarlyStopping, ResumableReduceLROnPlateau, restore_counters

    stopping = ResumableEarlyStopping(monitor="val_loss", patience=3)
    plateau = ResumableReduceLROnPlateau(monitor="val_loss", patience=2)
    fresh = ResumableEarlyStopping(monitor="val_loss", patience=3)
    restore_counters([stopping, plateau, fresh], {
        "early_stopping": {"wait": 2, "best": 0.25, "best_epoch": 4},
        "plateau": {"wait": 1, "best": 0.3, "cooldown_counter": 1},
    })
    fresh.load_counters(None)
    for rule in (stopping, plateau, fresh):
        rule.on_train_begin()
    assert stopping.counters() == {"wait": 2, "best": 0.25, "best_epoch": 4}
    assert plateau.counters() == {"wait": 1, "best": 0.3, "cooldown_counter": 1}
    assert fresh.counters() == {"wait": 0, "best": None, "best_epoch": 0}  # +inf is written as null
    stopping.on_train_begin()  # a later fit (the next stage) starts afresh
    assert stopping.counters()["wait"] == 0


def test_flat_validation_accuracy_is_explained_once_for_a_model_with_batch_norm():
    from edge_cnn.keras import keras
    from edge_cnn.train.callbacks import FlatValidationNote

    def run(model, epochs):
        said = []
        note = FlatValidationNote(said.append)
        note.set_model(model)
        for epoch, (accuracy, val_accuracy) in enumerate(epochs):
            note.on_epoch_end(epoch, {"accuracy": accuracy, "val_accuracy": val_accuracy})
        return said

    inputs = keras.Input((4,))
    with_bn = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.BatchNormalization()(inputs)))
    without_bn = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    flat = [(0.5, 0.5), (0.7, 0.5), (0.9, 0.5), (0.95, 0.5), (0.97, 0.5)]
    (line,) = run(with_bn, flat)  # once, after the third flat epoch
    assert "stayed at 0.5000 for 3 epochs" in line and "0.5000 -> 0.9000" in line and "BatchNormalization" in line
    assert run(with_bn, [(0.5, 0.5), (0.7, 0.6), (0.9, 0.5)]) == []  # validation moved
    assert run(with_bn, [(0.5, 0.5)] * 3) == []  # training did not move either: not the warm-up
    assert run(without_bn, flat) == []  # no BatchNormalization: the note would be wrong


# --- MultiWorkerMirroredStrategy ---------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def test_multiworker_strategy_with_one_worker(square_images, tmp_path):
    out = tmp_path / "mw"
    script = textwrap.dedent(f"""
        import json
        from edge_cnn.train import TrainConfig, train
        config = TrainConfig(data={str(square_images)!r}, out={str(out)!r}, model="small_convnet", width=0.25,
                             img_size="16x16", batch_size=8, epochs=1, fine_tune_epochs=1, strategy="multiworker")
        result = train(config, verbose=0)
        print("RESULT", json.dumps({{"strategy": result.strategy, "replicas": result.replicas,
                                     "epochs": len(result.history), "interrupted": result.interrupted}}))
    """)
    tf_config = {"cluster": {"worker": [f"localhost:{_free_port()}"]}, "task": {"type": "worker", "index": 0}}
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CONFIG": json.dumps(tf_config)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    result = json.loads(line[len("RESULT"):])
    assert result == {"strategy": "MultiWorkerMirroredStrategy", "replicas": 1, "epochs": 2, "interrupted": False}
    for name in ("model.keras", "labels.json", "preprocess.json", "config.yaml", "history.csv", "metrics.json",
                 "curves.png", "confusion.png", "splits/train.csv", "splits/test.csv"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["strategy"] == {"name": "MultiWorkerMirroredStrategy", "replicas": 1}
    assert metrics["images"] == {"train": 32, "val": 8, "test": 8} and metrics["test"]["images"] == 8
    assert [row.split(",")[1] for row in (out / "history.csv").read_text().splitlines()[1:]] == ["1", "2"]


def test_multiworker_needs_a_valid_tf_config(square_images, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(EdgeCNNError, match="multiworker needs the TF_CONFIG environment variable"):
        _train(tiny(square_images, tmp_path / "none", strategy="multiworker"))
    assert not (tmp_path / "none").exists()  # it fails before any data work
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(EdgeCNNError, match="TF_CONFIG is not a valid cluster description"):
        _train(tiny(square_images, tmp_path / "bad", strategy="multiworker"))
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1"]},
                                                "task": {"type": "worker", "index": 3}}))
    with pytest.raises(EdgeCNNError, match="task worker 3 is not in its cluster"):
        _train(tiny(square_images, tmp_path / "index", strategy="multiworker"))
    monkeypatch.delenv("TF_CONFIG")
    result = CliRunner().invoke(main, ["train", "--data", str(square_images), "--out", str(tmp_path / "cli"),
                                       "--strategy", "multiworker"])
    assert result.exit_code == 2 and "needs the TF_CONFIG" in result.output and "Traceback" not in result.output


# --- --weights imagenet from the local Keras cache --------------------------------------------

def _stand_in_imagenet_file(keras_home: Path, input_shape) -> list[list[np.ndarray]]:
    """Keras Applications' MobileNetV2 (alpha 0.35, no top) with random weights, BN statistics
    included, saved under the file name Keras' own download would have; returns its weights
    per weighted layer, in order."""
    from edge_cnn.keras import keras

    application = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=input_shape,
                                                  alpha=0.35)
    rng = np.random.default_rng(7)
    values = []
    for weight in application.weights:  # no value left at its initialiser's constant (BN's 0 and 1)
        if "moving_variance" in weight.name:
            values.append(rng.uniform(0.5, 1.5, weight.shape).astype(np.float32))
        else:
            values.append((weight.numpy() + rng.normal(0, 0.05, weight.shape)).astype(np.float32))
    application.set_weights(values)
    folder = keras_home / "models"
    folder.mkdir(parents=True)
    application.save_weights(folder / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5")
    return [layer.get_weights() for layer in application.layers if layer.weights]


def test_imagenet_weights_from_the_keras_cache(square_images, tmp_path, monkeypatch):
    from edge_cnn.keras import keras
    from edge_cnn.train.model import backbone_layers

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    expected = _stand_in_imagenet_file(tmp_path / "keras", (32, 32, 3))
    seen = {}

    class Watch(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["head"] = self.model.get_layer("predictions").get_weights()
            seen["trainable"] = sorted(v.name.split("/")[0] for v in self.model.trainable_variables)

        def on_train_end(self, logs=None):
            seen["backbone"] = [layer.get_weights() for layer in backbone_layers(self.model) if layer.weights]
            seen["head_after"] = self.model.get_layer("predictions").get_weights()

    result = _train(tiny(square_images, tmp_path / "run", model="mobilenet_v2", width=0.35, img_size="32x32",
                         weights="imagenet", batch_size=16), callbacks=[Watch()])
    assert result.transferred["layers"] == result.transferred["backbone_layers"] == len(expected)
    assert result.transferred["source"].endswith("keras/models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_"
                                                 "0.35_224_no_top.h5")
    assert json.loads((Path(result.run_dir) / "metrics.json").read_text())["initial_weights"] == result.transferred
    assert seen["trainable"] == ["predictions", "predictions"]  # stage 1 with initial weights: the head only
    assert len(seen["backbone"]) == len(expected)
    for mine, theirs in zip(seen["backbone"], expected):  # frozen through stage 1: still exactly the file's
        for value, reference in zip(mine, theirs):
            np.testing.assert_array_equal(value, reference)
    assert not np.array_equal(seen["head"][0], seen["head_after"][0])  # the head trained
    spec = json.loads((Path(result.run_dir) / "preprocess.json").read_text())
    assert spec["scale"] == pytest.approx(1 / 127.5) and spec["mean"] == [1.0] and spec["std"] == [1.0]


# --- the head's pooling ---------------------------------------------------------------------

def test_flatten_head_keeps_the_map_and_round_trips(square_images, tmp_path):
    """--pooling flatten: head_pool is a Flatten of the last map (its size = map cells x channels),
    the saved model.keras has it, config.yaml records it, and CAM (which needs global average
    pooling) refuses the model with a clear message."""
    from edge_cnn.explain.class_map import cam_head
    from edge_cnn.keras import keras

    result = _train(tiny(square_images, tmp_path / "flat", pooling="flatten"))
    model = keras.models.load_model(Path(result.run_dir) / "model.keras")
    head = model.get_layer("head_pool")
    assert isinstance(head, keras.layers.Flatten)
    last_map = head.input_shape[1:]
    assert len(last_map) == 3 and head.output_shape[1] == last_map[0] * last_map[1] * last_map[2]
    assert model.get_layer("predictions").kernel.shape[0] == head.output_shape[1]
    assert "pooling: flatten" in (Path(result.run_dir) / "config.yaml").read_text()
    with pytest.raises(EdgeCNNError, match="CAM needs a GlobalAveragePooling2D"):
        cam_head(model)


def test_unknown_pooling_exits_2(square_images, tmp_path):
    with pytest.raises(EdgeCNNError, match="--pooling"):
        tiny(square_images, tmp_path / "x", pooling="mean")
    outcome = CliRunner().invoke(main, ["train", "--data", str(square_images), "--out", str(tmp_path / "y"),
                                        "--pooling", "mean"])
    assert outcome.exit_code == 2 and "--pooling" in outcome.output


def test_a_second_run_to_the_default_folder_gets_a_numbered_one(square_images, tmp_path, monkeypatch):
    from edge_cnn.io import numbered_dir

    monkeypatch.chdir(tmp_path)
    config = dict(TINY, data=str(square_images))
    first = _train(TrainConfig(**config)).run_dir
    second = _train(TrainConfig(**config)).run_dir
    default = f"{square_images.name}-small_convnet"
    assert (first.name, second.name) == (default, f"{default}-2")
    assert (first / "model.keras").is_file() and (second / "model.keras").is_file()
    assert numbered_dir(Path("runs") / default) == Path("runs") / f"{default}-3"


@pytest.mark.parametrize("name, size", [("mobilenet_v3_small", 32)])
def test_imagenet_weights_of_a_new_family_load_into_the_zoo_backbone(name, size, tmp_path, monkeypatch):
    """`--weights imagenet` for the issue-19 families: Keras Applications' own no-top file in the local cache
    (a stand-in saved here, random weights) fills every backbone layer, and the backbone then computes what
    the Keras model computes (Keras rescales inside the model, PreprocessSpec does it before ours)."""
    from edge_cnn.keras import keras
    from edge_cnn.preprocess import PreprocessSpec
    from edge_cnn.train.model import IMAGENET, build_model, imagenet_preprocess, load_initial_weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    constructor, stem, _ = IMAGENET[name]
    keras.utils.set_random_seed(0)
    application = getattr(keras.applications, constructor)(include_top=False, weights=None,
                                                            input_shape=(size, size, 3))
    (tmp_path / "keras" / "models").mkdir(parents=True)
    application.save_weights(tmp_path / "keras" / "models" / stem.format(alpha=1.0))
    model = build_model(name, (size, size, 3), 2)
    copied, total, origin = load_initial_weights(model, "imagenet", model_name=name)
    assert copied == total and origin.endswith(stem.format(alpha=1.0))
    pixels = np.random.default_rng(0).integers(0, 256, (2, size, size, 3)).astype(np.float32)
    spec = PreprocessSpec(size, size, "rgb", **imagenet_preprocess(name))
    ours = keras.Model(model.input, model.get_layer("head_pool").input)(spec.normalize(pixels))
    np.testing.assert_allclose(ours, application(pixels), rtol=1e-4, atol=1e-4)

"""Trainer: both stages, PATH transfer, resume, seed, mirrored strategy, run directory, CLI.

Tiny on purpose: 16x16 inputs, small_convnet at width 0.25, 1-3 epochs on the red/blue
square images.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from edge_cnn.cli import main
from edge_cnn.errors import EdgeCNNError
from edge_cnn.train import TrainConfig

TINY = dict(model="small_convnet", width=0.25, img_size="16x16", batch_size=8, lr=0.01, epochs=2,
            fine_tune_epochs=1, seed=0)


def tiny(data, out, **changes) -> TrainConfig:
    return TrainConfig(data=str(data), out=str(out), **{**TINY, **changes})


def _train(config, **kwargs):
    from edge_cnn.train import train

    return train(config, verbose=0, **kwargs)


@pytest.fixture(scope="module")
def basic_run(square_images, tmp_path_factory):
    """A finished from-scratch run (2 epochs + 1 fine-tuning epoch), shared read-only."""
    return _train(tiny(square_images, tmp_path_factory.mktemp("basic") / "run", hflip=True))


# --- pure functions -------------------------------------------------------------------

def test_metrics_per_class_and_confusion():
    from edge_cnn.tasks.classify import classification_metrics

    truth = np.array([0, 0, 0, 1, 1, 2])
    probabilities = np.eye(3)[[0, 0, 1, 1, 0, 2]] * 0.9 + 0.1 / 3
    metrics = classification_metrics(truth, probabilities, ["a", "b", "c"])
    assert metrics["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["per_class"]["a"]["precision"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["b"]["recall"] == pytest.approx(1 / 2)
    assert metrics["per_class"]["c"]["f1"] == pytest.approx(1.0)
    assert metrics["loss"] == pytest.approx(-np.mean(np.log(probabilities[np.arange(6), truth])), rel=1e-6)


def test_learning_rate_warmup_then_cosine_and_class_weights():
    from edge_cnn.train.callbacks import epoch_learning_rate
    from edge_cnn.train.trainer import class_weights

    rates = [epoch_learning_rate(1.0, i, 6, "cosine", 2) for i in range(6)]
    assert rates[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert rates[3] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert all(a > b for a, b in zip(rates[2:], rates[3:]))
    assert epoch_learning_rate(0.1, 5, 6, "constant", 0) == 0.1
    assert epoch_learning_rate(0.1, 3, 6, "plateau", 1) is None  # ReduceLROnPlateau's turn
    weights = class_weights([("a", 0)] * 30 + [("b", 1)] * 10, 2)
    assert weights == pytest.approx({0: 40 / 60, 1: 40 / 20})


def test_config_yaml_round_trip_and_validation(tmp_path):
    config = TrainConfig(data="face", epochs=3, img_size="24x16", unfreeze="4", group_by="^(\\w+)_")
    config.save(tmp_path / "c.yaml")
    assert TrainConfig.load(tmp_path / "c.yaml") == config
    assert config.unfreeze_layers() == 4
    for bad in (dict(optimizer="rmsprop"), dict(unfreeze="top"), dict(val=0.6, test=0.5), dict(img_size="big")):
        with pytest.raises(EdgeCNNError):
            TrainConfig(**bad)


# --- run directory ---------------------------------------------------------------------

def test_run_directory_contents(basic_run):
    run = Path(basic_run.run_dir)
    for name in ("model.keras", "labels.json", "preprocess.json", "config.yaml", "history.csv", "metrics.json",
                 "data_report.json", "curves.png", "confusion.png", "splits/train.csv", "splits/val.csv",
                 "splits/test.csv"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").rglob("events.out.tfevents*"))
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("train", "val", "test"):
        assert {"accuracy", "loss", "per_class", "confusion_matrix", "images"} <= set(metrics[split])
    assert metrics["images"] == {"train": 32, "val": 8, "test": 8}
    assert metrics["skipped"] == []
    assert set(metrics["test"]["per_class"]["red"]) >= {"precision", "recall", "f1"}
    assert sum(map(sum, metrics["test"]["confusion_matrix"])) == 8
    assert metrics["test"]["accuracy"] >= 0.75  # a red vs blue square is an easy task
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].split(",")[:2] == ["epoch", "stage"]
    assert [row.split(",")[1] for row in history[1:]] == ["1", "1", "2"]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["img_size"] == "16x16" and config["hflip"] is True and config["rotation"] == 0.0
    assert json.loads((run / "preprocess.json").read_text())["height"] == 16


def test_saved_model_has_named_head_and_predicts_like_metrics(basic_run, square_images):
    from edge_cnn.keras import keras
    from edge_cnn.run_dir import RunDir

    run = RunDir(basic_run.run_dir)
    model = keras.models.load_model(run.model_path, compile=False)
    names = [layer.name for layer in model.layers]
    assert names[-3:] == ["head_pool", "head_dropout", "predictions"]
    assert all(layer.trainable for layer in model.layers)  # no stage's freezing leaks into the artifact
    items = run.read_split("test")
    predicted = model.predict(run.preprocess()([p for p, _ in items]), verbose=0).argmax(-1)
    accuracy = float(np.mean(predicted == np.array([label for _, label in items])))
    assert accuracy == pytest.approx(basic_run.metrics["test"]["accuracy"])


def test_same_seed_same_metrics(basic_run, square_images, tmp_path):
    again = _train(tiny(square_images, tmp_path / "again", hflip=True))
    strip = lambda rows: [{k: v for k, v in row.items() if k != "time_s"} for row in rows]  # noqa: E731
    assert strip(again.history) == strip(basic_run.history)
    assert again.metrics["test"] == basic_run.metrics["test"]


# --- transfer learning ----------------------------------------------------------------------

class WeightSnapshots:
    """Backbone and head weights at the start of every stage and at the end of training."""

    def __init__(self):
        from edge_cnn.keras import keras

        snapshots = self.snapshots = []

        class Recorder(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                snapshots.append({layer.name: [w.copy() for w in layer.get_weights()] for layer in self.model.layers})

            def on_train_end(self, logs=None):
                self.on_train_begin()

        self.callback = Recorder()


def _three_class_folder(square_images: Path, root: Path) -> Path:
    """red/ and blue/ from the fixture plus green/: a task with another number of classes."""
    shutil.copytree(square_images, root)
    (root / "green").mkdir()
    rng = np.random.default_rng(1)
    for i in range(24):
        image = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
        y, x = rng.integers(0, 24, 2)
        image[y : y + 8, x : x + 8] = (40, 230, 40)
        Image.fromarray(image).save(root / "green" / f"green_{i:03d}.png")
    return root


def test_path_transfer_then_two_stages(basic_run, square_images, tmp_path):
    from edge_cnn.keras import keras
    from edge_cnn.tasks.classify import Classify

    source = keras.models.load_model(Path(basic_run.run_dir) / "model.keras", compile=False)
    data = _three_class_folder(square_images, tmp_path / "three")
    snapshots = WeightSnapshots()
    result = _train(tiny(data, tmp_path / "b", weights=str(basic_run.run_dir), epochs=1, fine_tune_epochs=1,
                         fine_tune_lr=0.01), callbacks=[snapshots.callback])
    start, stage2, end = snapshots.snapshots[0], snapshots.snapshots[2], snapshots.snapshots[3]
    backbone = [layer for layer in source.layers if layer.weights and layer.name not in Classify.head_layers]
    assert result.transferred["layers"] == len(backbone) > 0
    for layer in backbone:  # B starts from A's backbone
        for mine, theirs in zip(start[layer.name], layer.get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    assert start["predictions"][0].shape[-1] == 3  # new head for 3 classes
    for layer in backbone:  # stage 1 with initial weights: backbone frozen, BN statistics included
        for before, after in zip(start[layer.name], stage2[layer.name]):
            np.testing.assert_array_equal(before, after)
    assert not np.array_equal(start["predictions"][0], stage2["predictions"][0])  # the head trained
    convs = [name for name in stage2 if name.endswith("_conv")]
    bns = [name for name in stage2 if name.endswith("_bn")]
    assert convs and bns
    assert all(not np.array_equal(stage2[n][0], end[n][0]) for n in convs)  # stage 2 fine-tunes them
    for name in bns:  # BatchNormalization stays in inference mode while fine-tuning
        for before, after in zip(stage2[name], end[name]):
            np.testing.assert_array_equal(before, after)


def test_unfreeze_top_layers_only(square_images, tmp_path):
    from edge_cnn.train.model import backbone_layers, build_model, set_stage

    model = build_model("small_convnet", (16, 16, 3), 2, width=0.25)
    set_stage(model, 2, pretrained=True, unfreeze=1)
    trainable = [layer.name for layer in backbone_layers(model) if layer.trainable and layer.weights]
    assert trainable == ["stage3_conv"]
    set_stage(model, 1, pretrained=True, unfreeze=None)
    assert [layer.name for layer in model.layers if layer.trainable and layer.weights] == ["predictions"]


def test_weights_errors(square_images, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(EdgeCNNError, match=r"keras/models/mobilenet_v2_weights.*never downloads"):
        _train(tiny(square_images, tmp_path / "m", model="mobilenet_v2", img_size="32x32", width=0.35,
                    weights="imagenet"))
    with pytest.raises(EdgeCNNError, match="no weights for small_convnet"):
        _train(tiny(square_images, tmp_path / "s", weights="imagenet"))
    with pytest.raises(EdgeCNNError, match="no such run directory"):
        _train(tiny(square_images, tmp_path / "p", weights=str(tmp_path / "nowhere")))


# --- interruption ------------------------------------------------------------------------

def test_interrupt_then_resume(square_images, tmp_path):
    from edge_cnn.keras import keras
    from edge_cnn.run_dir import RunDir

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    class Iterations(keras.callbacks.Callback):
        seen = []

        def on_train_begin(self, logs=None):
            self.seen.append(int(self.model.optimizer.iterations.numpy()))

    config = tiny(square_images, tmp_path / "r", epochs=3, fine_tune_epochs=1)
    first = _train(config, callbacks=[CtrlC()])
    run = RunDir(first.run_dir)
    assert first.interrupted and first.metrics is None
    assert json.loads((run.checkpoints_dir / "latest.json").read_text())["epoch"] == 2
    split_before = run.split_path("train").read_text()
    counter = Iterations()
    resumed = _train(TrainConfig(out=str(run.path)), resume=True, callbacks=[counter])
    assert not resumed.interrupted
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3, 4]  # no epoch twice, none lost
    assert [row["stage"] for row in resumed.history] == [1, 1, 1, 2]
    assert counter.seen[0] == 2 * 4  # optimizer state restored: 2 epochs of 4 steps
    assert run.split_path("train").read_text() == split_before
    assert resumed.metrics["images"]["train"] == 32 and run.model_path.is_file()


# --- distribution --------------------------------------------------------------------------

def test_mirrored_strategy_on_two_cpu_devices(square_images, tmp_path):
    script = textwrap.dedent(f"""
        import json
        from edge_cnn.keras import tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from edge_cnn.train import TrainConfig, train
        config = TrainConfig(data={str(square_images)!r}, out={str(tmp_path / 'm')!r}, model="small_convnet",
                             width=0.25, img_size="16x16", batch_size=8, epochs=1, fine_tune_epochs=0,
                             strategy="mirrored")
        result = train(config, verbose=0)
        print("RESULT", json.dumps({{"replicas": result.replicas, "accuracy": result.metrics["test"]["accuracy"],
                                     "epochs": len(result.history)}}))
    """)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    result = json.loads(line[len("RESULT"):])
    assert result["replicas"] == 2 and result["epochs"] == 1 and result["accuracy"] is not None


# --- CLI ---------------------------------------------------------------------------------

def test_cli_recipe_and_flag_override(square_images, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "data": str(square_images), "epochs": 1, "fine_tune_epochs": 0,
                                      "img_size": "8x8", "rotation": 5.0}))
    out = tmp_path / "cli"
    result = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "--img-size", "12x12", "--out", str(out),
                                       "--quiet"])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["img_size"] == "12x12"  # the flag wins
    assert config["epochs"] == 1 and config["rotation"] == 5.0 and config["width"] == 0.25  # the recipe's
    assert "accuracy" in result.output and (out / "model.keras").is_file()
    assert f"next: edgecnn export {out} --int8" in result.output  # the ending names the next command


def test_evaluate_on_another_folder(basic_run, square_images, tmp_path):
    result = CliRunner().invoke(main, ["evaluate", str(basic_run.run_dir), "--data", str(square_images), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output[result.output.index("{"):])
    assert metrics["images"] == 48 and sum(map(sum, metrics["confusion_matrix"])) == 48
    assert metrics["labels"] == basic_run.metrics["labels"]
    other = tmp_path / "other"
    for name in ("cat", "dog"):
        shutil.copytree(square_images / "red", other / name)
    result = CliRunner().invoke(main, ["evaluate", str(basic_run.run_dir), "--data", str(other)])
    assert result.exit_code == 2 and "was not trained on" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "no_such_net"], "unknown model"),
        (["--img-size", "12xbig"], "HxW"),
        (["--data", "/no/such/folder"], "does not exist"),
        (["--unfreeze", "top"], "--unfreeze"),
        (["--val", "0.7", "--test", "0.5"], "fractions"),
    ],
)
def test_cli_bad_input_exits_2(args, message, square_images, tmp_path):
    base = ["train", "--data", str(square_images), "--out", str(tmp_path / "bad"), "--epochs", "1"]
    result = CliRunner().invoke(main, base + args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_resume_without_checkpoint_and_existing_run(basic_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["train", "--out", str(empty), "--resume"])
    assert result.exit_code == 2 and "no config.yaml" in result.output
    shutil.copy(Path(basic_run.run_dir) / "config.yaml", empty / "config.yaml")
    result = CliRunner().invoke(main, ["train", "--out", str(empty), "--resume"])
    assert result.exit_code == 2 and "holds no checkpoint" in result.output
    result = CliRunner().invoke(main, ["train", "--out", str(basic_run.run_dir)])
    assert result.exit_code == 2 and "already holds a training run" in result.output

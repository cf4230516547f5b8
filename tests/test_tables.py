"""The format and task tables: a format or a task is added by registering it, and training,
export, bench and the runtime take it without a change to their code."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge_cnn.formats import Format, export_formats, get_format, register_format, unregister_format


@pytest.fixture
def onnx_copy_format():
    """A made-up format: an ONNX graph under another name and suffix, run by onnxruntime."""
    from edge_cnn.export.onnx import write_onnx

    written = []

    def write(context, job, path):
        written.append(job)
        write_onnx(context, job, path)

    fmt = register_format(Format("onnx_copy", ".onnxc", ("fp32",), "onnxruntime", writer=write,
                                 compact="edge_cnn.export.compact:compact_onnx_file", description="test only"))
    try:
        yield fmt, written
    finally:
        unregister_format("onnx_copy")


def test_a_registered_format_is_exported_checked_benchmarked_and_run(onnx_copy_format, tiny_run_dir, tmp_path):
    from edge_cnn.bench import run
    from edge_cnn.export import export
    from edge_cnn.runtime import Predictor

    fmt, written = onnx_copy_format
    run_dir = Path(shutil.copytree(tiny_run_dir, tmp_path / "run"))
    result = export(run_dir, format=["onnx_copy"], int8=True)  # int8 is not among its precisions: fp32 only
    assert [(job.format, job.precision) for job in written] == [("onnx_copy", "fp32")]
    (artifact,) = result.manifest.artifacts
    assert (artifact.format, artifact.path, artifact.status) == ("onnx_copy", "model_fp32.onnxc", "OK")
    predictor = Predictor.load(run_dir / "export", backend="onnx_copy")
    test_images = [line.split(",")[0] for line in (run_dir / "splits" / "test.csv").read_text().splitlines()[1:]]
    assert predictor.kind == "onnx_copy fp32" and len(predictor.predict(test_images)) == len(test_images)
    report = run([run_dir / "export"], runs=3, warmup=1, keras=False, progress=False)
    assert [(r.format, r.backend, r.status) for r in report.results] == [("onnx_copy", "onnxruntime", "OK")]


def test_the_table_lists_every_format_once_with_its_runtime_and_providers():
    rows = {row["format"]: row for row in export_formats()}
    assert set(rows) >= {"tflite", "onnx", "saved_model"}
    assert rows["onnx"]["providers"] == "cpu, cuda, tensorrt" and rows["tflite"]["providers"] == "cpu"
    assert get_format("saved_model").embedded is False and get_format("tflite").embedded is True
    with pytest.raises(RuntimeError, match="suffix '.onnx' is taken"):
        register_format(Format("other", ".onnx", ("fp32",), "onnxruntime", writer=print))


@pytest.fixture
def ranking_task():
    """A made-up task: the classify head under other layer names, metrics with one extra figure, and
    answers that are the labels in ranked order."""
    from edge_cnn.tasks import register_task, unregister_task
    from edge_cnn.tasks.classify import Classify

    class Rank(Classify):
        name, model_suffix = "rank", "ranker"
        head_layers = ("rank_pool", "rank_dropout", "rank_scores")
        feature_layer = "rank_pool"

        def build_head(self, features, num_outputs, *, dropout, pooling):
            from edge_cnn.keras import layers

            x = layers.GlobalAveragePooling2D(name="rank_pool")(features)
            x = layers.Dropout(dropout, name="rank_dropout")(x)
            return layers.Dense(num_outputs, activation="softmax", name="rank_scores")(x)

        def evaluate(self, truth, outputs, labels):
            return {**super().evaluate(truth, outputs, labels), "ranked": True}

        def postprocess(self, values, meaning, labels, topk, paths):
            return [[label for label, _ in p.topk] for p in super().postprocess(values, meaning, labels, topk, paths)]

    register_task(Rank())
    try:
        yield
    finally:
        unregister_task("rank")


def test_a_registered_task_is_trained_exported_and_run(ranking_task, square_images, tmp_path):
    import json

    from edge_cnn.export import export
    from edge_cnn.runtime import Predictor
    from edge_cnn.train import TrainConfig, train

    config = TrainConfig(data=str(square_images), out=str(tmp_path / "run"), task="rank", model="small_convnet",
                         width=0.25, img_size="16x16", epochs=1, fine_tune_epochs=0, batch_size=16)
    result = train(config, verbose=0)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["ranked"] is True and "task: rank" in (tmp_path / "run" / "config.yaml").read_text()
    exported = export(result.run_dir, format="onnx", embedding=True)
    assert exported.manifest.task == "rank" and not exported.failed
    assert {o.meaning for o in exported.manifest.artifacts[0].outputs} == {"probabilities", "embedding"}
    image = sorted(square_images.glob("red/*.png"))[0]
    ranked = Predictor.load(result.run_dir / "export").predict([image], topk=2)[0]
    assert sorted(ranked) == ["blue", "red"]

"""edgecnn bench: statistics, backends, manifest mode, inputs, reports and errors on a tiny model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_cnn.bench import inputs as bench_inputs
from edge_cnn.bench import run
from edge_cnn.bench.calls import OnnxCall
from edge_cnn.bench.gpu import IOBindingCall, tensorrt_options
from edge_cnn.machine import cpu_info
from edge_cnn.timing import measure_calls, summarize, time_calls
from edge_cnn.cli import main
from edge_cnn.errors import EdgeCNNError
from edge_cnn.preprocess import PreprocessSpec
from conftest import tiny_classifier

SIZE = 16
FAST = dict(warmup=2, runs=20)


# --- fixtures ----------------------------------------------------------------------------

def _tensor(name, shape, dtype, quant=None, **extra):
    from edge_cnn.manifest import Quantization, TensorSpec

    return TensorSpec(name, list(shape), dtype, quantization=Quantization(*quant) if quant else None, **extra)


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """run/model.keras plus run/export/{fp32.onnx, fp32.tflite, int8.tflite, dynamic.onnx} and a manifest
    written here with edge_cnn.manifest (the export stage is written in parallel)."""
    import tf2onnx

    from edge_cnn.backends import open_backend
    from edge_cnn.io import gzip_size, sha256_file
    from edge_cnn.keras import keras, tf
    from edge_cnn.manifest import Artifact, Manifest

    keras.utils.set_random_seed(0)
    run_dir = tmp_path_factory.mktemp("bench") / "run"
    export = run_dir / "export"
    export.mkdir(parents=True)
    model = tiny_classifier((SIZE, SIZE, 3), 2, filters=(4,))
    model.save(run_dir / "model.keras")
    for name, shape in (("fp32.onnx", (None, SIZE, SIZE, 3)), ("dynamic.onnx", (None, None, None, 3))):
        signature = (tf.TensorSpec(shape, tf.float32, name="image"),)
        tf2onnx.convert.from_keras(model, input_signature=signature, opset=17, output_path=str(export / name))
    (export / "fp32.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.random((1, SIZE, SIZE, 3), np.float32)] for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    (export / "int8.tflite").write_bytes(converter.convert())

    spec = PreprocessSpec(height=SIZE, width=SIZE)
    artifacts = []
    for name, fmt, precision in (("fp32.onnx", "onnx", "fp32"), ("fp32.tflite", "tflite", "fp32"),
                                 ("int8.tflite", "tflite", "int8")):
        backend = open_backend(export / name)
        specs = [
            [_tensor(t.name, t.shape, t.dtype, t.quantization, **extra) for t in tensors]
            for tensors, extra in ((backend.inputs, {"layout": "NHWC"}), (backend.outputs, {"meaning": "probabilities"}))
        ]
        artifacts.append(Artifact(name, fmt, precision, sha256_file(export / name), (export / name).stat().st_size,
                                  gzip_size(export / name), specs[0], specs[1]))
    Manifest(["red", "blue"], spec, sha256_file(run_dir / "model.keras"), artifacts, created_by="test_bench").save(export)
    return export


def _invoke(args):
    result = CliRunner().invoke(main, ["bench", *map(str, args)])
    return result, result.output + (result.stderr if hasattr(result, "stderr") and result.stderr else "")


# --- statistics on a fake clock ------------------------------------------------------------

class FakeClock:
    """A clock that only moves when the timed call runs: known durations in, exact statistics out."""

    def __init__(self, durations_s):
        self.now = 0.0
        self.durations = list(durations_s)
        self.seen = []

    def __call__(self):
        return self.now

    def call(self, item):
        self.seen.append(item)
        self.now += self.durations[(len(self.seen) - 1) % len(self.durations)]


def test_statistics_on_a_fake_clock_are_exact():
    clock = FakeClock([0.004, 0.001, 0.003, 0.002])
    stats = time_calls(clock.call, ["a", "b", "c"], warmup=4, runs=4, clock=clock)
    # warm-up consumed the first four durations; the timed four are the same list again
    assert stats.runs == 4
    assert stats.mean_ms == pytest.approx(2.5)
    assert stats.min_ms == pytest.approx(1.0) and stats.max_ms == pytest.approx(4.0)
    assert stats.p50_ms == pytest.approx(2.5)
    assert stats.p90_ms == pytest.approx(3.7)  # linear interpolation: 3 + 0.7 * (4 - 3)
    assert stats.p99_ms == pytest.approx(3.97)
    assert stats.std_ms == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert stats.total_s == pytest.approx(0.010)
    assert stats.throughput(batch=2) == pytest.approx(800.0)  # 2 images x 4 runs / 10 ms
    assert clock.seen == ["a", "b", "c", "a"] * 2  # inputs rotate in warm-up, and again in the timed runs


def test_duration_mode_stops_on_time_and_excludes_warmup():
    clock = FakeClock([0.125])
    durations = measure_calls(clock.call, [0], warmup=3, runs=None, duration_s=1.0, clock=clock)
    assert durations == [0.125] * 8  # 8 x 125 ms fill exactly one second
    assert len(clock.seen) == 3 + 8


def test_summarize_needs_runs():
    with pytest.raises(ValueError):
        summarize([])


# --- ONNX / TFLite / Keras paths ---------------------------------------------------------------

def test_onnx_and_tflite_batch_sweep(models):
    report = run([models / "fp32.onnx", models / "fp32.tflite"], batch=(1, 3), threads=(1,), keras=False, **FAST)
    assert [(r.format, r.batch) for r in report.results] == [("onnx", 1), ("onnx", 3), ("tflite", 1), ("tflite", 3)]
    for result in report.results:
        assert result.status == "OK", result.error
        assert result.input_shape == [result.batch, SIZE, SIZE, 3] and result.input_dtype == "float32"
        assert result.latency.runs == 20 and len(result.durations_ms) == 20
        assert result.throughput == pytest.approx(result.batch * 20 / result.latency.total_s)
        assert result.latency.min_ms <= result.latency.p50_ms <= result.latency.p99_ms <= result.latency.max_ms
        assert result.session_ms > 0 and result.first_inference_ms > 0 and result.peak_rss_mb > 10
        assert result.threads == 1 and result.model_bytes == Path(result.target).stat().st_size
    assert report.results[0].backend == "onnxruntime" and report.results[2].backend == "litert"
    # speedups are relative to the first entry at the same batch
    assert report.results[0].speedup == pytest.approx(1.0) and report.results[1].speedup == pytest.approx(1.0)
    tflite_b1 = report.results[2]
    assert tflite_b1.speedup == pytest.approx(report.results[0].latency.p50_ms / tflite_b1.latency.p50_ms)
    assert report.machine["onnxruntime"] and "cpu_flags" in report.machine and report.machine["cores"] >= 1


def test_duration_mode_through_the_api(models):
    report = run(models / "fp32.tflite", warmup=1, duration=0.3, keras=False, progress=True)
    latency = report.results[0].latency
    # time spent inside the calls fits in the 0.3 s window (plus at most the one call that crosses its end)
    assert report.results[0].status == "OK" and latency.runs >= 10 and 0 < latency.total_s < 0.3 + latency.max_ms / 1e3
    assert report.settings["runs"] is None and report.settings["duration_s"] == 0.3


def test_manifest_mode_benchmarks_every_artifact_and_keras(models):
    report = run(models, **FAST)
    by_format = [(r.format, r.precision) for r in report.results]
    assert by_format == [("keras", "fp32"), ("onnx", "fp32"), ("tflite", "fp32"), ("tflite", "int8")]
    assert all(r.status == "OK" for r in report.results), [r.error for r in report.results]
    assert report.results[0].speedup == pytest.approx(1.0)  # the Keras model is the baseline
    assert report.results[0].note is None  # model.keras is the one the manifest names
    int8 = report.results[3]
    assert int8.input_dtype == "int8"
    # --baseline picks another entry
    again = run(models, baseline="tflite-int8", keras=False, **FAST)
    assert [r.speedup for r in again.results if r.precision == "int8"] == [pytest.approx(1.0)]


def test_failed_configuration_does_not_stop_the_others(models, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes((models / "fp32.onnx").read_bytes()[:200])
    report = run([broken, models / "fp32.onnx"], keras=False, **FAST)
    assert [r.status for r in report.results] == ["ERROR", "OK"]
    assert "broken.onnx" in report.results[0].error and report.results[0].latency is None


def test_non_finite_outputs_are_an_error(tmp_path):
    from onnx import TensorProto, helper

    path = _onnx_model(
        tmp_path / "inf.onnx",
        [helper.make_node("Mul", ["x", "zero"], ["z"]), helper.make_node("Log", ["z"], ["y"])],  # log(0) = -inf
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])],
    )
    result = run(path, **FAST).results[0]
    assert result.status == "ERROR" and "NaN or infinity" in result.error and result.latency is not None


def _onnx_model(path, nodes, inputs, outputs, initializers=()):
    import onnx
    from onnx import helper

    model = helper.make_model(helper.make_graph(nodes, path.stem, inputs, outputs, list(initializers)),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # one every onnxruntime reads
    onnx.save(model, path)
    return path


def test_int8_onnx_input_takes_quantization_from_the_manifest_beside_it(tmp_path):
    from onnx import TensorProto, helper

    from edge_cnn.io import gzip_size, sha256_file
    from edge_cnn.manifest import Artifact, Manifest

    path = _onnx_model(
        tmp_path / "q.onnx",
        [helper.make_node("DequantizeLinear", ["x", "scale", "zero"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.INT8, ["N", 4, 4, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 4, 1])],
        [helper.make_tensor("scale", TensorProto.FLOAT, [], [1 / 255]), helper.make_tensor("zero", TensorProto.INT8, [], [-128])],
    )
    without = run(path, **FAST).results[0]
    assert without.status == "ERROR" and "without quantization parameters" in without.error
    artifact = Artifact("q.onnx", "onnx", "int8", sha256_file(path), path.stat().st_size, gzip_size(path),
                        [_tensor("x", (-1, 4, 4, 1), "int8", (1 / 255, -128), layout="NHWC")],
                        [_tensor("y", (-1, 4, 4, 1), "float32", meaning="embedding")])
    Manifest(["a"], PreprocessSpec(height=4, width=4, color="grayscale"), "0" * 64, [artifact]).save(tmp_path)
    result = run(path, **FAST).results[0]
    assert result.status == "OK" and result.input_dtype == "int8" and result.precision == "int8"


def test_dynamic_dimensions_need_input_shape(models):
    missing = run(models / "dynamic.onnx", keras=False, **FAST).results[0]
    assert missing.status == "ERROR" and "--input-shape" in missing.error
    filled = run(models / "dynamic.onnx", input_shape="20x24x3", batch=2, **FAST).results[0]
    assert filled.status == "OK" and filled.input_shape == [2, 20, 24, 3]


# --- inputs ------------------------------------------------------------------------------------

def test_int8_inputs_are_quantized_with_the_tensor_parameters():
    scale, zero_point = 1 / 255, -128
    assert bench_inputs.quantize(np.array([0.0, 0.25, 1.0, 2.0]), (scale, zero_point), "int8").tolist() == [
        -128, -64, 127, 127]  # 0.25 / scale = 63.75 -> 64; 2.0 is clipped to the int8 range
    buffers = bench_inputs.random_inputs((2, 8, 8, 3), "int8", value_range=(0.0, 1.0), quantization=(scale, zero_point))
    assert len(buffers) == bench_inputs.BUFFERS
    stacked = np.stack(buffers)
    assert stacked.dtype == np.int8 and stacked.min() >= -128 and stacked.max() <= 127
    assert stacked.min() < -120 and stacked.max() > 120  # spans the quantized range of [0, 1]
    assert not np.array_equal(buffers[0], buffers[1])  # rotating buffers differ
    uint8 = bench_inputs.random_inputs((1, 4), "uint8", value_range=(-1.0, 1.0), quantization=(2 / 255, 128))
    assert uint8[0].dtype == np.uint8
    floats = bench_inputs.random_inputs((1, 4, 4, 3), "float32", value_range=(-2.0, 3.0))
    assert floats[0].dtype == np.float32 and -2.0 <= floats[0].min() and floats[0].max() <= 3.0


def test_real_images_go_through_the_manifest_preprocessing(models, tmp_path):
    from conftest import make_square_images

    items = make_square_images(tmp_path / "imgs", per_class=3, size=32)
    spec = PreprocessSpec(height=SIZE, width=SIZE)
    files = sorted(p for p, _ in items)
    batches = bench_inputs.image_inputs(tmp_path / "imgs", spec, (2, SIZE, SIZE, 3), "float32", count=3)
    np.testing.assert_array_equal(batches[0], spec(files[:2]))
    np.testing.assert_array_equal(batches[2], spec(files[4:6]))
    report = run(models, data=tmp_path / "imgs", keras=False, **FAST)
    assert all(r.status == "OK" for r in report.results)
    with pytest.raises(EdgeCNNError, match="holds no images"):
        (tmp_path / "empty").mkdir()
        run(models, data=tmp_path / "empty", keras=False, **FAST)


def test_wrong_input_shape_names_the_model_shape():
    with pytest.raises(EdgeCNNError, match="takes Nx16x16x3"):
        bench_inputs.resolve_shape((-1, 16, 16, 3), 1, input_shape=(3, 16, 16), model="m.onnx")
    with pytest.raises(EdgeCNNError, match="fixed batch of 1"):
        bench_inputs.resolve_shape((1, 16, 16, 3), 4, model="m.onnx", fixed_batch=True)
    assert bench_inputs.resolve_shape((-1, -1, -1, 3), 2, spec=PreprocessSpec(height=8, width=6)) == (2, 8, 6, 3)


# --- GPU code paths, exercised on the CPU ---------------------------------------------------------

def test_io_binding_path_matches_plain_session_run(models):
    from edge_cnn.backends import open_backend

    session = open_backend(models / "fp32.onnx").session
    batch = np.random.default_rng(1).random((3, SIZE, SIZE, 3), dtype=np.float32)
    expected = OnnxCall(session).fetch(OnnxCall(session).prepare(batch))[0]
    for include_copies in (False, True):
        call = IOBindingCall(session, device="cpu", include_copies=include_copies)
        prepared = call.prepare(batch)
        np.testing.assert_allclose(call.fetch(prepared)[0], expected, rtol=1e-6)
    report = run(models / "fp32.onnx", io_binding=True, batch=(1, 2), **FAST)
    assert all(r.status == "OK" and r.io_binding for r in report.results)


def test_provider_selection_and_tensorrt_options(models, tmp_path):
    with pytest.raises(EdgeCNNError, match="unknown"):
        run(models / "fp32.onnx", provider=("npu",))
    result = run(models / "fp32.onnx", provider=("cuda",), **FAST).results[0]
    assert result.status == "ERROR" and "'cuda' was requested but is not active" in result.error
    assert "CUDA" in result.error  # names the missing libraries
    options = tensorrt_options(fp16=True, int8=True, cache=tmp_path / "trt")
    assert options == {"trt_fp16_enable": True, "trt_int8_enable": True, "trt_engine_cache_enable": True,
                       "trt_engine_cache_path": str(tmp_path / "trt")}
    assert (tmp_path / "trt").is_dir() and tensorrt_options() == {}
    trt = run(models / "fp32.onnx", provider=("tensorrt",), trt_fp16=True, **FAST).results[0]
    assert trt.status == "ERROR" and "'tensorrt' was requested but is not active" in trt.error
    # LiteRT is CPU only: a GPU provider list still benchmarks a .tflite once, on the CPU
    assert [r.provider for r in run(models / "fp32.tflite", provider=("cuda",), **FAST).results] == ["cpu"]


def test_profile_lists_top_operators(models, tmp_path):
    result = run(models / "fp32.onnx", profile=True, profile_dir=tmp_path / "prof", **FAST).results[0]
    assert Path(result.profile_file).is_file() and Path(result.profile_file).parent == tmp_path / "prof"
    ops = [o["op"] for o in result.top_ops]
    assert "Conv" in ops
    assert sum(o["share"] for o in result.top_ops) == pytest.approx(1.0, abs=1e-6)
    assert result.top_ops == sorted(result.top_ops, key=lambda o: -o["total_ms"])
    # a .tflite file: each operator timed alone, written beside ORT's profiles, in the same form
    litert = run(models / "int8.tflite", profile=True, profile_dir=tmp_path / "prof", **FAST).results[0]
    saved = json.loads(Path(litert.profile_file).read_text())
    assert Path(litert.profile_file).parent == tmp_path / "prof" and saved["whole_file_ms"] > 0
    assert Path(litert.profile_file).name.startswith("int8_litert_operators_t") and litert.profile_file.endswith(".json")
    assert "CONV_2D" in [o["op"] for o in litert.top_ops]
    assert sum(o["calls"] for o in litert.top_ops) == len(saved["operators"])
    assert sum(o["share"] for o in litert.top_ops) == pytest.approx(1.0, abs=1e-6)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU 9000\nflags\t\t: fpu sse avx2 avx512f avx512_vnni amx_tile\n")
    assert cpu_info(cpuinfo) == {"model": "Test CPU 9000", "flags": ["avx2", "avx512f", "avx512_vnni", "amx"]}


# --- the CLI: reports and errors ------------------------------------------------------------------

def test_cli_writes_json_csv_md_and_plot(models, tmp_path):
    out = {kind: tmp_path / f"out.{kind}" for kind in ("json", "csv", "md", "png")}
    result, output = _invoke([models / "fp32.onnx", models / "fp32.tflite", "--batch", "1,2", "--runs", "15",
                              "--warmup", "1", "--json", out["json"], "--csv", out["csv"], "--md", out["md"],
                              "--plot", out["png"]])
    assert result.exit_code == 0, output
    assert "p50 (ms)" in output and "images/s" in output and "fp32.tflite" in output  # headings with units
    data = json.loads(out["json"].read_text())
    assert len(data["rows"]) == 4 and data["machine"]["cpu"] and "numpy" in data["machine"]
    assert [len(d) for d in data["durations_ms"]] == [15] * 4
    assert data["rows"][0]["speedup"] == pytest.approx(1.0) and data["rows"][0]["runs"] == 15
    rows = list(csv.DictReader(out["csv"].open()))
    assert len(rows) == 4 and {"model", "provider", "batch", "p50_ms", "p99_ms", "images_per_s"} <= set(rows[0])
    assert [r["batch"] for r in rows] == ["1", "2", "1", "2"]
    assert rows[0]["machine_cpu"] and rows[0]["machine_onnxruntime"]  # machine info travels with every row
    md = out["md"].read_text().strip().splitlines()
    assert md[0].startswith("Machine: ") and "onnxruntime" in md[0]
    table = md[2:]
    assert len(table) == 6 and "p50 (ms)" in table[0] and table[2].count("|") == table[0].count("|")
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out["png"].stat().st_size > 10_000


def test_cli_inactive_provider_exits_2(models):
    result, output = _invoke([models / "fp32.onnx", "--provider", "cuda", "--runs", "3"])
    assert result.exit_code == 2
    assert "'cuda' was requested but is not active" in output and "Traceback" not in output


@pytest.mark.parametrize("case", ["missing", "text", "truncated", "shape", "not_a_model"])
def test_cli_bad_inputs_exit_2_without_traceback(models, tmp_path, case):
    args = {
        "missing": ([tmp_path / "nope.onnx"], "does not exist"),
        "text": ([tmp_path / "text.onnx"], "cannot be loaded by onnxruntime"),
        "truncated": ([tmp_path / "cut.tflite"], "cannot be loaded by LiteRT"),
        "shape": ([models / "fp32.onnx", "--input-shape", "3x16x16"], "--input-shape 3x16x16 does not fit"),
        "not_a_model": ([tmp_path / "notes.txt"], "neither .tflite, .onnx nor .keras"),
    }
    (tmp_path / "text.onnx").write_text("this is not a model\n")
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "cut.tflite").write_bytes((models / "fp32.tflite").read_bytes()[:300])
    argv, message = args[case]
    result, output = _invoke([*argv, "--runs", "3"])
    assert result.exit_code == 2, output
    assert message in output and "Traceback" not in output


def test_cli_help_has_examples():
    result = CliRunner().invoke(main, ["bench", "--help"])
    assert result.exit_code == 0 and "edgecnn bench runs/ped/export" in result.output and "--include-copies" in result.output


def test_cli_recipe_keys_are_flag_names_and_flags_win(models, tmp_path):
    recipe = tmp_path / "bench.yaml"
    recipe.write_text("runs: 7\nwarmup: 0\nbatch: '2'\nthreads: '1'\n")
    result, output = _invoke([models / "fp32.tflite", "--recipe", recipe, "--runs", "5", "--json", tmp_path / "r.json"])
    assert result.exit_code == 0, output
    row = json.loads((tmp_path / "r.json").read_text())["rows"][0]
    assert (row["runs"], row["batch"], row["threads"]) == (5, 2, 1)


def test_select_records_the_fastest_ok_artifact_for_this_cpu(models, tmp_path):
    import shutil

    from edge_cnn.machine import cpu_fingerprint
    from edge_cnn.selection import lookup

    export = Path(shutil.copytree(models, tmp_path / "export"))
    result, output = _invoke([export, "--select", "--runs", "5", "--warmup", "1", "--threads", "1,2"])
    assert result.exit_code == 0, output
    choice = lookup(export, cpu_fingerprint())
    rows = json.loads((export / "selection.json").read_text())["devices"][cpu_fingerprint()]["table"]
    assert {row["threads"] for row in rows} == {1, 2} and len(rows) == 3 * 2  # three artifacts, two thread counts
    fastest = min((r for r in rows if r["batch"] == 1), key=lambda r: r["p50_ms"])
    assert (Path(fastest["model"]).name, fastest["threads"]) == (choice.artifact, choice.threads)
    assert f"selected for {cpu_fingerprint()}: {choice.artifact}" in output
    refused, output = _invoke([models / "fp32.onnx", "--select"])
    assert refused.exit_code == 2 and "--select measures an export folder" in output


def test_cli_table_fits_the_terminal_and_wide_shows_every_column(models, monkeypatch):
    """At a 100-column terminal the key columns fit on each line; --wide adds the rest (p90, peak RSS)."""
    monkeypatch.setenv("COLUMNS", "100")
    for wide in (False, True):
        result, output = _invoke([models / "fp32.onnx", models / "int8.tflite", "--runs", "5", "--warmup", "1",
                                  *(["--wide"] if wide else [])])
        assert result.exit_code == 0, output
        assert (max(len(line) for line in output.splitlines()) <= 100) != wide, output
        assert ("p90" in output) == wide and "p50 (ms)" in output and "images/s" in output


def test_data_with_class_folders_adds_each_models_accuracy(models, tmp_path):
    """`bench EXPORT --data DIR` with one sub-folder per label: every model's top-1 accuracy beside its
    speed. Images are filed so that Keras is right on 8 of 12 (the first 8 in the folder of the class it
    predicts, the last 4 in the other): a folder matched to the wrong label index would give 4 of 12,
    as folders sort blue before red while the manifest says red=0, blue=1."""
    from PIL import Image

    from edge_cnn.keras_file import load_keras_model

    rng = np.random.default_rng(3)
    pixels = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(12)]
    keras_model = load_keras_model(models.parent / "model.keras")
    predicted = np.argmax(keras_model.predict(np.stack(pixels).astype(np.float32) / 255, verbose=0), axis=1)
    for index, (image, label) in enumerate(zip(pixels, predicted)):
        folder = tmp_path / "data" / ["red", "blue"][label if index < 8 else 1 - label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index}.png")
    report = run(models, data=tmp_path / "data", **FAST)
    accuracy = {Path(r.target).name: r.accuracy_pct for r in report.results}
    assert accuracy["model.keras"] == pytest.approx(100 * 8 / 12)
    assert accuracy["fp32.onnx"] == pytest.approx(100 * 8 / 12) and accuracy["fp32.tflite"] == pytest.approx(100 * 8 / 12)
    assert 0.0 <= accuracy["int8.tflite"] <= 100.0
    assert all(row["accuracy_pct"] is not None for row in report.rows())
    (tmp_path / "data" / "green").mkdir()
    Image.fromarray(pixels[0]).save(tmp_path / "data" / "green" / "0.png")
    with pytest.raises(EdgeCNNError, match="green"):  # refused before anything is timed
        run(models, data=tmp_path / "data", **FAST)


# --- LiteRT time per operator --------------------------------------------------------------

@pytest.mark.parametrize("name", ["fp32.tflite", "int8.tflite"])
def test_each_litert_operator_alone_computes_what_it_computes_in_the_whole_file(models, name):
    """The operators cut out one by one, fed the whole file's own intermediate tensors, give the whole file's
    outputs of those operators bit for bit: what is timed alone is the same computation."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edge_cnn.bench.litert_ops import operator_times, single_operator_models, totals_by_type

    builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES  # the same kernels on both sides, op by op
    path = models / name
    whole = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True, experimental_op_resolver_type=builtin)
    whole.allocate_tensors()
    detail = whole.get_input_details()[0]
    whole.set_tensor(detail["index"], np.random.default_rng(1).integers(-100, 100, detail["shape"]).astype(detail["dtype"]))
    whole.invoke()
    operators = whole._get_ops_details()
    cut = list(single_operator_models(path))
    assert [op for _, _, op, _ in cut] == [details["op_name"] for details in operators]
    for (index, content, _, _), details in zip(cut, operators):
        alone = Interpreter(model_content=content, experimental_op_resolver_type=builtin)
        alone.allocate_tensors()
        inputs = [i for i in details["inputs"] if i >= 0 and whole.get_tensor(i) is not None]
        fed = {d["name"]: d for d in alone.get_input_details()}
        names = {t["index"]: t["name"] for t in whole.get_tensor_details()}
        assert set(fed) <= {names[tensor] for tensor in inputs}  # every input of the cut-out model is fed
        for tensor in inputs:
            if names[tensor] in fed:
                alone.set_tensor(fed[names[tensor]]["index"], whole.get_tensor(tensor))
        alone.invoke()
        for out in alone.get_output_details():
            expected = whole.get_tensor(next(i for i in details["outputs"] if names[i] == out["name"]))
            assert np.array_equal(alone.get_tensor(out["index"]), expected), (index, details["op_name"])
    rows, whole_ms = operator_times(path, runs=3, rounds=1, warmup=1)
    assert [row.op for row in rows] == [details["op_name"] for details in operators]
    assert whole_ms > 0 and all(row.ms > 0 for row in rows)
    assert sum(totals_by_type(rows).values()) == pytest.approx(sum(row.ms for row in rows))

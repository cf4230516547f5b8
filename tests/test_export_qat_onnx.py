"""QAT ONNX weights stored as int8 (edge_cnn.export.onnx_qdq): same outputs, int8 size, float biases kept."""

import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_cnn.export import export
from edge_cnn.export.onnx import convert_onnx
from edge_cnn.export.onnx_qdq import fold_constant_quantize, int8_grid, quantize_linear, store_weights_int8
from edge_cnn.export.optimize import quantization_aware
from edge_cnn.keras import keras
from edge_cnn.run_dir import RunDir
from conftest import tiny_classifier

WEIGHT_OPS = {"Conv": 1, "MatMul": 1, "Gemm": 1}


def session(model: onnx.ModelProto, optimized: bool = True) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if not optimized:  # the graph's own semantics, without onnxruntime's rewrites
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run(model: onnx.ModelProto, x: np.ndarray, optimized: bool = True) -> np.ndarray:
    ort_session = session(model, optimized)
    return ort_session.run(None, {ort_session.get_inputs()[0].name: x})[0]


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def weight_inputs(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, str]]:
    return [(n, n.input[WEIGHT_OPS[n.op_type]]) for n in model.graph.node if n.op_type in WEIGHT_OPS]


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {output: node for node in model.graph.node for output in node.output}


def opset17_model(graph: onnx.GraphProto) -> onnx.ModelProto:
    """onnx writes its newest IR version by default, which onnxruntime may not read yet."""
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def wide_classifier(input_shape, num_classes: int):
    """tests/conftest.py's tiny classifier with 32/64 filters: weights, not node names, fill the file."""
    return tiny_classifier(input_shape, num_classes, name="wide", filters=(32, 64))


@pytest.fixture(scope="module")
def wide_run(tiny_run_dir, tmp_path_factory) -> Path:
    """The tiny run directory with a trained wide model in place of its model.keras."""
    run = RunDir(shutil.copytree(tiny_run_dir, tmp_path_factory.mktemp("wide") / "run"))
    x, y = train_split(run)
    keras.utils.set_random_seed(0)
    model = wide_classifier(x.shape[1:], 2)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    model.save(run.model_path)
    return run.path


def train_split(run: RunDir) -> tuple[np.ndarray, np.ndarray]:
    items = run.read_split("train")
    return run.preprocess()([p for p, _ in items]), np.array([label for _, label in items])


@pytest.fixture(scope="module")
def qat_graphs(wide_run):
    """(QAT Keras model, tf2onnx's QAT graph, the same graph with int8 weights, test images)."""
    run = RunDir(wide_run)
    x, y = train_split(run)
    qat, _ = quantization_aware(keras.models.load_model(run.model_path), x, y, epochs=1)
    unfolded = convert_onnx(qat)
    test_items = run.read_split("test")
    low, high = run.preprocess().value_range()
    random = np.random.default_rng(1).uniform(low, high, (8, *x.shape[1:])).astype(np.float32)
    images = np.concatenate([run.preprocess()([p for p, _ in test_items]), random])
    return qat, unfolded, store_weights_int8(unfolded), images


# --- QuantizeLinear's arithmetic ---------------------------------------------------------


def quantize_with_onnxruntime(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int) -> np.ndarray:
    dtype = helper.np_dtype_to_tensor_dtype(zero_point.dtype)
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "scale", "zero_point"], ["y"], axis=axis)],
        "quantize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", dtype, x.shape)],
        [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(zero_point, "zero_point")],
    )
    model = opset17_model(graph)
    return run(model, x, optimized=False)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_offline_quantization_matches_onnxruntime_bit_for_bit(dtype):
    rng = np.random.default_rng(0)
    scale = np.array([0.02, 0.5, 0.125], np.float32)
    halves = (np.arange(-300, 300) + 0.5).astype(np.float32)  # ties: round half to even, then saturate
    x = np.stack([halves * s for s in scale], axis=1)[None]  # (1, 600, 3), channel axis 2
    x = np.concatenate([x, rng.normal(0, 40, x.shape).astype(np.float32)])
    zero_point = np.array([0, 3, -5] if dtype == np.int8 else [128, 0, 7], dtype)
    expected = quantize_with_onnxruntime(x, scale, zero_point, axis=2)
    np.testing.assert_array_equal(quantize_linear(x, scale, zero_point, axis=2), expected)
    assert {expected.min(), expected.max()} == {np.iinfo(dtype).min, np.iinfo(dtype).max}


def test_constant_quantize_dequantize_pair_becomes_int8_initializer():
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    scale = (np.abs(weights).reshape(4, -1).max(1) / 127).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zp"], ["w_q"], axis=0),
            helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w_dq"], axis=0),
            helper.make_node("Conv", ["x", "w_dq"], ["y"], pads=[1, 1, 1, 1]),
        ],
        "qdq_weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [
            numpy_helper.from_array(weights, "w"),
            numpy_helper.from_array(scale, "w_scale"),
            numpy_helper.from_array(np.zeros(4, np.int8), "w_zp"),
        ],
    )
    model = opset17_model(graph)
    folded = store_weights_int8(model)
    assert [n.op_type for n in folded.graph.node] == ["DequantizeLinear", "Conv"]
    stored = initializers(folded)
    assert "w" not in stored and stored["w_q"].dtype == np.int8
    x = rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(run(folded, x, optimized=False), run(model, x, optimized=False))
    assert fold_constant_quantize(folded.graph) == 0  # nothing left to fold


def test_grid_search_recovers_per_tensor_codes_rescaled_per_channel_and_refuses_float_weights():
    rng = np.random.default_rng(0)
    codes = rng.integers(-100, 101, (6, 5, 3, 3)).astype(np.float32)  # per-tensor grid, |code| < 127
    bn_factor = rng.uniform(0.5, 2.0, 6).astype(np.float32)  # a BatchNormalization folded per channel
    weights = (codes * np.float32(0.01)) * bn_factor[:, None, None, None]
    found_codes, scale, axis = int8_grid(weights, output_axis=0)
    assert axis == 0 and scale.shape == (6,)
    np.testing.assert_allclose(found_codes * scale[:, None, None, None], weights, rtol=1e-6, atol=1e-9)
    assert int8_grid(rng.normal(0, 0.1, (6, 5, 3, 3)).astype(np.float32), output_axis=0) is None


# --- a real QAT graph ---------------------------------------------------------------------


def test_int8_weights_compute_what_the_qat_graph_computes(qat_graphs):
    qat, unfolded, folded, images = qat_graphs
    for optimized in (False, True):
        np.testing.assert_allclose(run(folded, images, optimized), run(unfolded, images, False), atol=1e-6)
    np.testing.assert_allclose(run(folded, images), qat.predict(images, verbose=0), atol=1e-5)


def test_weights_are_int8_initializers_feeding_dequantize_linear(qat_graphs):
    _, unfolded, folded, _ = qat_graphs
    stored, produced_by = initializers(folded), producers(folded)
    weights = weight_inputs(folded)
    assert [n.op_type for n, _ in weights] == ["Conv", "Conv", "MatMul"]
    for node, name in weights:
        assert name not in stored, f"{node.op_type} still reads float weights {name}"
        dequantize = produced_by[name]
        assert dequantize.op_type == "DequantizeLinear"
        assert stored[dequantize.input[0]].dtype == np.int8
        assert not stored[dequantize.input[2]].any()  # symmetric: zero point 0
        if node.op_type == "Conv":  # per output channel
            assert stored[dequantize.input[1]].shape == (stored[dequantize.input[0]].shape[0],)
    assert all(name in initializers(unfolded) for _, name in weight_inputs(unfolded))  # what tf2onnx gave
    assert len(folded.SerializeToString()) < 0.5 * len(unfolded.SerializeToString())


def test_biases_and_activation_quantization_are_left_alone(qat_graphs):
    _, unfolded, folded, _ = qat_graphs
    stored = initializers(folded)
    biases = [n.input[2] for n in folded.graph.node if n.op_type == "Conv" and len(n.input) > 2]
    biases += [name for n in folded.graph.node if n.op_type == "Add" for name in n.input if name in stored]
    assert len(biases) == 3 and all(stored[name].dtype == np.float32 for name in biases)
    for name in biases:
        np.testing.assert_array_equal(stored[name], initializers(unfolded)[name])

    def activation_quantizers(model):
        return sorted(n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear")

    assert activation_quantizers(folded) == activation_quantizers(unfolded)


def test_float_weights_off_the_grid_stay_float(wide_run):
    fp32 = convert_onnx(keras.models.load_model(RunDir(wide_run).model_path))
    unchanged = store_weights_int8(fp32)
    assert [n.op_type for n in unchanged.graph.node] == [n.op_type for n in fp32.graph.node]
    assert all(initializers(unchanged)[name].dtype == np.float32 for _, name in weight_inputs(unchanged))


# --- the exporter ---------------------------------------------------------------------------


def test_export_writes_an_int8_sized_qat_onnx(wide_run, tmp_path):
    fp32 = export(shutil.copytree(wide_run, tmp_path / "fp32"), format="onnx")
    qat = export(shutil.copytree(wide_run, tmp_path / "qat"), format="onnx", qat=True, qat_epochs=1)
    (fp32_artifact,) = fp32.manifest.find("onnx", "fp32")
    (qat_artifact,) = qat.manifest.find("onnx", "int8")
    assert qat_artifact.status in ("OK", "WARN"), qat_artifact.parity
    assert qat_artifact.bytes < 0.5 * fp32_artifact.bytes
    written = onnx.load(str(qat.manifest.artifact_path(qat_artifact)))
    assert {t.dtype for t in initializers(written).values()} >= {np.dtype(np.int8)}
    assert all(name not in initializers(written) for _, name in weight_inputs(written))
    assert qat_artifact.parity["max_abs_diff"] <= 1e-5  # onnxruntime runs the QAT Keras model's weights

"""MobileFaceNet (Chen et al. 2018): counts against the paper, the global depthwise convolution in place of
pooling, options, and a full-integer TFLite export whose embedding stays int8 with parity."""

import collections

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from edge_cnn import zoo
from edge_cnn.errors import EdgeCNNError
from edge_cnn.keras import keras, layers
from edge_cnn.keras_file import ALLOWED_LAYERS
from edge_cnn.preprocess import PreprocessSpec
from edge_cnn.run_dir import RunDir

# Chen et al. 2018, Table 2 (and section 3.2): MobileFaceNet 0.99M parameters, 221M MAdds at 112x112.
PAPER_PARAMS = 0.99e6
PAPER_MACS = 221e6


def test_counts_match_the_paper_at_112():
    model = zoo.build("mobilefacenet", include_top=False)
    totals = zoo.profile(model)
    assert model.output_shape == (None, 1, 1, 128)  # the embedding map: the paper's network ends there
    assert totals["params"] == pytest.approx(PAPER_PARAMS, rel=0.02)  # 1,003,136: BN's gamma/beta, PReLU slopes
    assert totals["macs"] == pytest.approx(PAPER_MACS, rel=0.005)  # 220.97M
    keras.backend.clear_session()


def test_global_depthwise_convolution_replaces_pooling():
    model = zoo.build("mobilefacenet", num_classes=10)
    assert zoo.model_info("mobilefacenet").default_input_shape == (112, 112, 3)
    assert not [layer for layer in model.layers if "Pooling" in type(layer).__name__]
    gdconv = model.get_layer("gdconv_dwconv")
    assert tuple(gdconv.kernel_size) == (7, 7) and gdconv.padding == "valid" and not gdconv.use_bias
    assert gdconv.activation is keras.activations.linear
    assert "gdconv_prelu" not in {layer.name for layer in model.layers}  # linear GDConv
    embedding = model.get_layer("embedding_conv")
    assert embedding.filters == 128 and tuple(embedding.kernel_size) == (1, 1)
    assert [type(layer).__name__ for layer in model.layers[-4:]] == ["Conv2D", "BatchNormalization", "Flatten", "Dense"]
    # with the top, the classify task's feature layer is the embedding itself (what --embedding exports)
    assert model.get_layer("head_pool").output.shape[-1] == 128 and model.output_shape == (None, 10)
    assert {type(layer).__name__ for layer in model.layers} <= ALLOWED_LAYERS
    keras.backend.clear_session()


def test_width_embedding_size_and_other_inputs():
    model = zoo.build("mobilefacenet", input_shape=(64, 48, 3), include_top=False, alpha=0.5, embedding_dim=64)
    assert model.output_shape == (None, 1, 1, 64)
    assert tuple(model.get_layer("gdconv_dwconv").kernel_size) == (4, 3)  # the last map, whatever its size
    assert model.get_layer("conv_last_conv").filters == 256
    assert zoo.profile(model)["params"] < 0.4e6
    keras.backend.clear_session()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"alpha": 0}, "alpha"),
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"input_shape": (100, 100, 3)}, "multiples of 16"),
        ({"input_shape": (8, 8, 3)}, "at least 16x16"),
    ],
)
def test_bad_options_are_refused_clearly(options, message):
    with pytest.raises(EdgeCNNError, match=message):
        zoo.build("mobilefacenet", **options)


@pytest.mark.slow
@pytest.mark.heavy  # 70 s on 2 cores (two conversions of 50 layers); the embed export's parity is in test_embed_task
def test_exports_full_integer_tflite_with_an_int8_embedding(square_images, tmp_path):
    """32x32, alpha 0.25: the same layers and ops as at 112; int8 in and out, PReLU run as int8 PRELU,
    and the embedding output's parity (cosine) with Keras recorded."""
    from edge_cnn.export import export

    spec = PreprocessSpec(height=32, width=32, scale=1 / 127.5, mean=(1.0,))
    labels = ["red", "blue"]
    items = [(str(p), labels.index(p.parent.name)) for p in sorted(square_images.glob("*/*.png"))]
    x, y = spec([path for path, _ in items]), np.array([label for _, label in items])
    keras.utils.set_random_seed(0)
    model = zoo.build("mobilefacenet", input_shape=spec.input_shape, num_classes=2, alpha=0.25, embedding_dim=32)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    run = RunDir(tmp_path / "run")
    run.path.mkdir(parents=True)
    model.save(run.model_path)
    run.write_labels(labels)
    spec.save(run.preprocess_path)
    run.write_split("train", items)
    run.write_split("test", items)
    result = export(run.path, format="tflite", int8=True, embedding=True, calib=16)
    keras.backend.clear_session()
    statuses = {row["Precision"]: row["Status"] for row in result.rows}
    assert statuses == {"fp32": "OK", "int8": "OK"}, result.rows
    (artifact,) = result.manifest.find("tflite", "int8")
    assert sorted(output.meaning for output in artifact.outputs) == ["embedding", "logits"]
    assert "embedding_max_cosine_distance" in artifact.parity  # parity compares the embeddings too
    interpreter = Interpreter(
        model_path=str(result.manifest.artifact_path(artifact)),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    ops = collections.Counter(op["op_name"] for op in interpreter._get_ops_details())
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "ADD"} <= set(ops), ops
    assert not {"QUANTIZE", "DEQUANTIZE"} & set(ops), ops
    assert {np.dtype(t["dtype"]).name for t in interpreter.get_input_details() + interpreter.get_output_details()} == {"int8"}

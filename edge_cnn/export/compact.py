"""Shorten the names inside exported artifacts: on a small model they weigh as much as its int8 weights.

tf2onnx and onnxruntime's quantizer name every tensor after its Keras path plus suffixes
("small_convnet_classifier/stage1_conv/Conv2D_weights_fused_bn_quantized_scale"), and the TFLite
converter joins the names of fused ops with ";". That is a fixed cost per tensor, independent of the
precision, so it keeps a 28k-parameter model's int8 file above 0.3x its fp32 size (13.5 kB of names in
a 47 kB ONNX file). Every artifact of both formats is compacted, fp32 included, so size ratios stay
fair; what runs is unchanged (same ops, same weights, same quantization), so outputs are bit-identical.

- ONNX: every tensor except the graph inputs and outputs becomes ``t<N>`` (initializers too), every
  node ``<op_type>_<N>`` (ORT's per-node profile stays readable); doc strings, ``value_info``
  (onnxruntime infers shapes and types on load) and attributes that restate their schema's default
  go; opset imports, metadata and graph I/O stay.
- TFLite: intermediate tensor names are blanked; the subgraph's input and output tensors and the
  signature defs keep theirs (the runtime and the manifest find inputs and outputs by them).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable, Iterator

import onnx
from onnx import helper

from edge_cnn.formats import format_names, get_format



def compact_file(path: str | Path, format: str) -> None:
    """Compact an artifact in place (the exporter's temporary file) with its format's pass."""
    fmt = get_format(format)
    if fmt.compact is None:
        compacting = [name for name in format_names() if get_format(name).compact is not None]
        raise ValueError(f"format {format!r} has no compact pass: one of {tuple(compacting)}")
    fmt.compact_file(Path(path))


def compact_onnx_file(path: Path) -> None:
    onnx.save(compact_onnx(onnx.load(str(path))), str(path))


def compact_tflite_file(path: Path) -> None:
    path.write_bytes(compact_tflite(path.read_bytes()))


# --- ONNX --------------------------------------------------------------------------------------------


def compact_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """A checked copy of ``model`` with short tensor and node names, no doc strings, no value_info and
    no attribute that only restates its operator's default."""
    compacted = onnx.ModelProto()
    compacted.CopyFrom(model)
    graph = compacted.graph
    kept = {value.name for value in itertools.chain(graph.input, graph.output)}
    opsets = {opset.domain or "ai.onnx": opset.version for opset in compacted.opset_import}
    node_numbers = itertools.count()

    def compact_node(node: onnx.NodeProto) -> None:
        node.name = f"{node.op_type}_{next(node_numbers)}"
        node.doc_string = ""
        _drop_default_attributes(node, opsets)

    compacted.doc_string = ""
    _compact_graph(graph, _short_names(kept), compact_node)
    onnx.checker.check_model(compacted)
    return compacted


def _short_names(kept: set[str]) -> Callable[[str], str]:
    """old name -> ``t<N>``, the same each time it is asked; kept names and "" (an absent optional
    input) stay, and no new name collides with a kept one."""
    mapping: dict[str, str] = {}
    fresh = (f"t{n}" for n in itertools.count() if f"t{n}" not in kept)

    def rename(name: str) -> str:
        if not name or name in kept:
            return name
        if name not in mapping:
            mapping[name] = next(fresh)
        return mapping[name]

    return rename


def _compact_graph(
    graph: onnx.GraphProto, rename: Callable[[str], str], compact_node: Callable[[onnx.NodeProto], None]
) -> None:
    """Rename in place, subgraphs (If/Loop/Scan bodies) with the same mapping since they read outer names."""
    graph.doc_string = ""
    del graph.value_info[:]
    for value in itertools.chain(graph.input, graph.output):
        value.name = rename(value.name)
        value.doc_string = ""
    for tensor in graph.initializer:
        tensor.name = rename(tensor.name)
        tensor.doc_string = ""
    for sparse in graph.sparse_initializer:
        sparse.values.name = rename(sparse.values.name)
        sparse.indices.name = rename(sparse.indices.name)
    for node in graph.node:
        compact_node(node)
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
        for attribute in node.attribute:
            attribute.doc_string = ""
            for subgraph in _subgraphs(attribute):
                _compact_graph(subgraph, rename, compact_node)


def _subgraphs(attribute: onnx.AttributeProto) -> Iterator[onnx.GraphProto]:
    if attribute.HasField("g"):
        yield attribute.g
    yield from attribute.graphs


def _drop_default_attributes(node: onnx.NodeProto, opsets: dict[str, int]) -> None:
    """Remove attributes equal to the default of the operator's schema at the model's opset (the
    converters write ``group=1``, ``auto_pad="NOTSET"``, ``alpha=1.0`` ... on every node): a missing
    attribute means exactly that default. Nodes of unknown schemas (local functions) are left alone."""
    domain = node.domain or "ai.onnx"
    try:
        schema = onnx.defs.get_schema(node.op_type, opsets.get(domain, 1), node.domain)
    except onnx.defs.SchemaError:
        return
    defaults = {name: spec.default_value for name, spec in schema.attributes.items() if spec.default_value.type}
    redundant = [
        attribute
        for attribute in node.attribute
        if attribute.name in defaults
        and attribute.type == defaults[attribute.name].type
        and helper.get_attribute_value(attribute) == helper.get_attribute_value(defaults[attribute.name])
    ]
    for attribute in redundant:
        node.attribute.remove(attribute)


# --- TFLite ------------------------------------------------------------------------------------------


def compact_tflite(data: bytes) -> bytes:
    """``data`` with blank names on every tensor that is neither a subgraph input/output nor named by a
    signature def (flatbuffer_utils.strip_strings would drop those too, and the signature defs)."""
    import edge_cnn.keras  # noqa: F401  (sets up TensorFlow before it is first imported)
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    for index, subgraph in enumerate(model.subgraphs):
        kept = _tflite_named_tensors(model, index, subgraph)
        for position, tensor in enumerate(subgraph.tensors):
            if position not in kept:
                tensor.name = None
    return flatbuffer_utils.convert_object_to_bytearray(model)


def _tflite_named_tensors(model, subgraph_index: int, subgraph) -> set[int]:
    """Tensor positions whose names the runtime reads: subgraph inputs/outputs and signature tensors."""
    kept = set(_indices(subgraph.inputs)) | set(_indices(subgraph.outputs))
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex == subgraph_index:
            kept |= {entry.tensorIndex for entry in [*(signature.inputs or []), *(signature.outputs or [])]}
    return kept


def _indices(values) -> list[int]:
    return [] if values is None else [int(v) for v in values]

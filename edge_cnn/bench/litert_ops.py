"""LiteRT's time per operator, measured by running each operator of a ``.tflite`` file alone.

LiteRT's Python interpreter has no operator profiler (its C++ ``benchmark_model`` tool has one, and is not
installed with the wheel), yet issue 17 asks which layers make int8 slower than fp32 on a CPU without VNNI.
TFLite's converter already fuses Conv -> BN -> activation into one ``CONV_2D``, so the file's operators are
the units the interpreter runs. Each one is cut out into a model of its own (the same tensors, its constant
inputs, nothing else) and timed with the interpreter and delegate settings the runtime uses. What this
leaves out is the work between operators in the whole graph (XNNPACK's own layout and fusion across
operators), so the whole file's time is measured beside the sum, and the README reports both.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from edge_cnn.errors import ModelFileError
from edge_cnn.io import write_json
from edge_cnn.timing import time_calls

QUANTIZE_FAMILY = "(quantize/dequantize)"


@dataclasses.dataclass
class OperatorTime:
    """One operator of the file: its position, builtin name, input shapes and median p50 time alone."""

    index: int
    op: str
    input_shapes: list[list[int]]
    ms: float


def operator_times(path: str | Path, threads: int | None = 1, runs: int = 20, rounds: int = 3,
                   warmup: int = 3) -> tuple[list[OperatorTime], float]:
    """(each operator's time run alone, the whole file's time), both the median over ``rounds`` of the p50 of
    ``runs`` calls, every operator timed once per round in turn so that a slow moment of the machine is shared."""
    operators = list(_single_operator_calls(Path(path), threads))
    calls = {index: call for index, _, _, call in operators}
    calls["whole"] = _whole_graph_call(Path(path), threads)
    samples: dict[Any, list[float]] = {key: [] for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            samples[key].append(time_calls(call, [None], warmup=warmup, runs=runs).p50_ms)
    rows = [OperatorTime(index, op, shapes, float(np.median(samples[index]))) for index, op, shapes, _ in operators]
    return rows, float(np.median(samples["whole"]))


def profile_operators(path: Path, threads: int | None, runs: int, profile_file: Path) -> tuple[str, list[dict[str, Any]]]:
    """``bench --profile`` for a .tflite file: every operator's time alone and the whole file's, written to
    ``profile_file`` as JSON -> (that file, the operator types by total time, largest first, in the form of
    onnxruntime's ``top_operators``; ``calls`` there counts the operators of the type)."""
    rows, whole_ms = operator_times(path, threads, runs)
    write_json(profile_file, {"file": str(path), "threads": threads, "whole_file_ms": whole_ms,
                              "operators": [dataclasses.asdict(row) for row in rows]})
    totals, calls = totals_by_type(rows), {}
    for row in rows:
        family = _family(row.op)
        calls[family] = calls.get(family, 0) + 1
    grand = sum(totals.values()) or 1.0
    top = [{"op": op, "total_ms": ms, "calls": calls[op], "share": ms / grand}
           for op, ms in sorted(totals.items(), key=lambda item: -item[1])]
    return str(profile_file), top


def totals_by_type(rows: list[OperatorTime]) -> dict[str, float]:
    """ms per operator type, QUANTIZE and DEQUANTIZE counted together as the conversions int8 adds."""
    totals: dict[str, float] = {}
    for row in rows:
        totals[_family(row.op)] = totals.get(_family(row.op), 0.0) + row.ms
    return totals


def _family(op: str) -> str:
    return QUANTIZE_FAMILY if op in ("QUANTIZE", "DEQUANTIZE") else op


def _interpreter(content: bytes, threads: int | None):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


def _call_with_random_inputs(interpreter, seed: int):
    """A call that runs ``interpreter`` on fixed random inputs of each input's type and shape."""
    rng = np.random.default_rng(seed)
    for detail in interpreter.get_input_details():
        dtype, shape = np.dtype(detail["dtype"]), detail["shape"]
        if np.issubdtype(dtype, np.integer):
            limits = np.iinfo(dtype)
            values = rng.integers(max(limits.min, -128), min(limits.max, 127) + 1, shape).astype(dtype)
        else:
            values = rng.standard_normal(shape).astype(dtype)
        interpreter.set_tensor(detail["index"], values)
    return lambda _: interpreter.invoke()


def _whole_graph_call(path: Path, threads: int | None):
    return _call_with_random_inputs(_interpreter(path.read_bytes(), threads), seed=0)


def _single_operator_calls(path: Path, threads: int | None):
    """(index, builtin name, input shapes, call) per operator of the first subgraph, each in a model of its own."""
    for index, content, op, shapes in single_operator_models(path):
        try:
            interpreter = _interpreter(content, threads)
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{path.name}: operator {index} ({op}) cannot run alone: {exc}") from None
        yield index, op, shapes, _call_with_random_inputs(interpreter, seed=index)


def single_operator_models(path: Path):
    """(index, .tflite bytes, builtin name, input shapes) for each operator of ``path``'s first subgraph: the
    operator alone, its non-constant inputs as the model's inputs, its outputs as the model's outputs, and
    only its own constant buffers kept (the others emptied, so a model does not carry every weight)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    try:
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    except Exception as exc:  # the flatbuffer reader raises whatever a bad byte leads to
        raise ModelFileError(f"{path} is not a readable .tflite file ({type(exc).__name__}): re-export it") from None
    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    subgraph, buffers = model.subgraphs[0], model.buffers
    operators = list(subgraph.operators)
    has_data = [buffer.data is not None and len(buffer.data) > 0 for buffer in buffers]
    constant = {i for i, tensor in enumerate(subgraph.tensors) if has_data[tensor.buffer]}
    model.signatureDefs = []
    try:
        for index, operator in enumerate(operators):
            used = [i for i in operator.inputs if i >= 0]
            own_buffers = {subgraph.tensors[i].buffer for i in used if i in constant}
            subgraph.operators = [operator]
            subgraph.inputs = [i for i in used if i not in constant]
            subgraph.outputs = list(operator.outputs)
            model.buffers = [buffer if number in own_buffers or number == 0 else schema.BufferT()
                             for number, buffer in enumerate(buffers)]
            code = flatbuffer_utils.get_builtin_code_from_operator_code(model.operatorCodes[operator.opcodeIndex])
            shapes = [[int(d) for d in subgraph.tensors[i].shape] for i in subgraph.inputs]
            yield index, bytes(flatbuffer_utils.convert_object_to_bytearray(model)), names.get(code, str(code)), shapes
    finally:
        subgraph.operators, model.buffers = operators, buffers

"""``export()``: optimize (optional), convert to every requested format/precision, prove parity, write the manifest.

One artifact is one job: it is written to a temporary path, loaded back with its own
runtime and compared with Keras there, and only then renamed into place. A job that
raises becomes a FAILED row with its reason; the other jobs go on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge_cnn import __version__
from edge_cnn.errors import EdgeCNNError
from edge_cnn.export import parity
from edge_cnn.export.onnx_quant import OnnxQuantOptions
from edge_cnn.export.source import ExportSource, calibration_items, ends_in_softmax, load_source
from edge_cnn.io import atomic_path, ensure_writable_dir, gzip_size, sha256_file
from edge_cnn.manifest import FORMATS, MANIFEST_NAME, Artifact, Manifest, Quantization, TensorSpec, load_manifest
from edge_cnn.report import write_reports

COLUMNS = [
    "Format",
    "Precision",
    "Status",
    "Size (MB)",
    "Gzip (MB)",
    "Test accuracy (%)",
    "Drop (pp)",
    "Agreement (%)",
    "Max abs diff",
    "Latency p50 (ms)",
    "File",
    "Note",
]
DEFAULT_FINE_TUNE_EPOCHS = 2
MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear
RANDOM_PARITY_IMAGES = 8
EMBEDDING_LAYER = "head_pool"
EMBEDDING_OUTPUT = "embedding"
CENTRE_BATCH = 256  # images per forward pass when averaging the training features
SUFFIX = {"tflite": ".tflite", "onnx": ".onnx", "saved_model": "_savedmodel"}


@dataclasses.dataclass
class ExportResult:
    rows: list[dict[str, Any]]
    manifest: Manifest
    manifest_path: Path
    report_json: Path
    report_md: Path
    summary: dict[str, Any]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["Status"] == "FAILED"]


@dataclasses.dataclass(frozen=True)
class Job:
    format: str
    precision: str

    def filename(self, stem: str) -> str:
        return f"{stem}_{self.precision}{SUFFIX[self.format]}"


def export(
    source: str | os.PathLike,
    out: str | os.PathLike | None = None,
    formats: Sequence[str] | str = ("tflite", "onnx"),
    int8: bool = False,
    fp16: bool = False,
    dynamic: bool = False,
    float_io: bool = False,
    calib: int = 200,
    calib_method: str = "minmax",
    onnx_format: str = "qdq",
    onnx_activations: str = "u8",
    onnx_per_channel: bool = True,
    onnx_reduce_range: bool = True,
    opset: int = 17,
    keep_names: bool = False,
    qat: bool = False,
    qat_epochs: int = DEFAULT_FINE_TUNE_EPOCHS,
    prune: float | None = None,
    prune_epochs: int = DEFAULT_FINE_TUNE_EPOCHS,
    cluster: int | None = None,
    cluster_epochs: int = DEFAULT_FINE_TUNE_EPOCHS,
    preprocess: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    calib_data: str | os.PathLike | None = None,
    embedding: bool = False,
    verbose: int = 0,
    log: Callable[[str], None] = lambda message: None,
) -> ExportResult:
    """Export a run directory (or a bare .keras file with ``preprocess``) and check every artifact.

    TFLite fp32 + ONNX fp32 always; ``fp16``/``dynamic`` add TFLite variants; ``int8`` adds full-integer
    TFLite and ONNX int8 calibrated on ``calib`` training images; ``qat``/``prune``/``cluster`` optimize
    the model first; ``embedding`` adds the ``head_pool`` features minus their mean over the training
    images (meaning "embedding") to every artifact.
    Every ONNX and TFLite artifact gets short internal names (``edge_cnn.export.compact``) unless
    ``keep_names``. Bad input raises EdgeCNNError before any work; a failing artifact is a FAILED row.
    """
    formats = _parse_formats(formats)
    onnx_options = OnnxQuantOptions(
        format=onnx_format,
        calib_method=calib_method,
        per_channel=onnx_per_channel,
        reduce_range=onnx_reduce_range,
        activation_type=onnx_activations,
    ).check()
    _check_options(formats, calib, opset, qat, prune, cluster, fp16, dynamic)
    src = load_source(source, out=out, preprocess=preprocess, labels=labels, calib_data=calib_data)
    int8 = int8 or qat
    optimizing = qat or prune is not None or cluster is not None
    _check_data(src, int8, qat, optimizing)
    if embedding:
        _check_embedding(src)
    ensure_writable_dir(src.out_dir)
    # Readers trust a folder only through its manifest: the old one goes first and the new one is
    # written last, so a re-export killed half-way leaves no manifest beside a mix of artifacts.
    (src.out_dir / MANIFEST_NAME).unlink(missing_ok=True)

    x_test, y_test, parity_data = _parity_images(src)
    model, stem, facts = src.model, "model", {}
    if optimizing:
        accuracy_before = _accuracy(src.model.predict(x_test, verbose=0), y_test)
        log("fine-tuning on the training split")
        epochs = {"qat": qat_epochs, "prune": prune_epochs, "cluster": cluster_epochs}
        model, stem, facts = _optimize(src, qat, prune, cluster, epochs, verbose)
    if embedding:
        log("centring the embedding on the mean feature of the " + centre_images(src)[1])
        centre, facts["embedding"] = embedding_centre(model, src)
        model = with_embedding(model, src.model_path, centre)
        reference, reference_embedding = model.predict(x_test, verbose=0)
    else:
        reference, reference_embedding = model.predict(x_test, verbose=0), None
    reference_accuracy = _accuracy(reference, y_test)
    if optimizing and y_test is not None:
        facts["keras_accuracy_before"] = accuracy_before
        facts["keras_accuracy_after"] = reference_accuracy

    calibration = _calibration(src, calib) if int8 and not qat else None
    context = _Context(src, model, qat, float_io, calibration, onnx_options, opset, keep_names)
    artifacts, rows = [], []
    for job in plan_jobs(formats, int8, fp16, dynamic, qat):
        log(f"{job.format} {job.precision}")
        evaluation = (x_test, y_test, reference, reference_accuracy, reference_embedding)
        artifact, row = _run_job(job, stem, context, evaluation, facts)
        rows.append(row)
        if artifact is not None:
            artifacts.append(artifact)

    manifest = Manifest(
        labels=src.labels,
        preprocess=src.spec,
        source_sha256=src.sha256,
        artifacts=artifacts,
        created_by=f"edgecnn {__version__} export",
    )
    manifest_path = manifest.save(src.out_dir)
    manifest = load_manifest(manifest_path)  # the contract is checked the way its readers check it
    summary = {
        "source": str(src.model_path),
        "source_sha256": src.sha256,
        "parity_data": parity_data,
        "parity_images": int(len(x_test)),
        "keras_accuracy": reference_accuracy,
        "calibration_images": 0 if calibration is None else int(len(calibration)),
        "optimization": facts,
        "failed": [f"{row['Format']} {row['Precision']}: {row['Note']}" for row in rows if row["Status"] == "FAILED"],
    }
    report_json, report_md = src.out_dir / "report.json", src.out_dir / "report.md"
    write_reports(rows, json_path=report_json, md_path=report_md, columns=COLUMNS, extra=summary)
    return ExportResult(rows, manifest, manifest_path, report_json, report_md, summary)


def plan_jobs(formats: Sequence[str], int8: bool, fp16: bool, dynamic: bool, qat: bool) -> list[Job]:
    """QAT models give int8 artifacts only (plus a SavedModel of the fake-quant graph)."""
    jobs = []
    if "tflite" in formats:
        precisions = ["int8"] if qat else ["fp32"] + ["fp16"] * fp16 + ["dynamic"] * dynamic + ["int8"] * int8
        jobs += [Job("tflite", p) for p in precisions]
    if "onnx" in formats:
        jobs += [Job("onnx", p) for p in (["int8"] if qat else ["fp32"] + ["int8"] * int8)]
    if "saved_model" in formats:
        jobs.append(Job("saved_model", "fp32"))
    return jobs


# --- checks before any work ---------------------------------------------------


def _parse_formats(formats: Sequence[str] | str) -> list[str]:
    names = [f.strip() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise EdgeCNNError(
            f"format {', '.join(unknown) or '(none)'} is unknown: use a comma list of {', '.join(FORMATS)}"
        )
    return names


def _check_options(formats, calib, opset, qat, prune, cluster, fp16, dynamic) -> None:
    import onnx

    if (fp16 or dynamic) and "tflite" not in formats:
        raise EdgeCNNError("--fp16 and --dynamic are TFLite precisions: add tflite to --format")
    if sum([qat, prune is not None, cluster is not None]) > 1:
        raise EdgeCNNError("--qat, --prune and --cluster are exclusive: export one optimization per output folder")
    if qat and (fp16 or dynamic):
        raise EdgeCNNError("--qat produces int8 artifacts: drop --fp16/--dynamic")
    if prune is not None and not 0.0 < float(prune) < 1.0:
        raise EdgeCNNError(f"--prune {prune} must be a sparsity between 0 and 1 (e.g. 0.5)")
    if cluster is not None and int(cluster) < 2:
        raise EdgeCNNError(f"--cluster {cluster} must be at least 2 clusters (e.g. 16)")
    if int(calib) < 1:
        raise EdgeCNNError(f"--calib {calib} must be at least 1 image")
    if not MIN_OPSET <= int(opset) <= onnx.defs.onnx_opset_version():
        raise EdgeCNNError(f"--opset {opset} is outside {MIN_OPSET}..{onnx.defs.onnx_opset_version()}")


def _check_data(src: ExportSource, int8: bool, qat: bool, optimizing: bool) -> None:
    if int8 and not qat and not src.calibration:
        raise EdgeCNNError(
            f"int8 needs calibration images and {src.model_path.name} comes without a training split: "
            "pass --calib-data IMAGE_FOLDER"
        )
    if optimizing and (not src.train or any(label < 0 for _, label in src.train)):
        raise EdgeCNNError(
            "QAT, pruning and clustering fine-tune on labelled images: export a run directory with splits/train.csv"
        )
    if qat and not src.trained:
        raise EdgeCNNError(
            f"{src.model_path} was never trained (no metrics.json, optimizer at step 0): QAT starts from a trained "
            "model, whose ranges it learns; train it first with `edgecnn train`"
        )


def _check_embedding(src: ExportSource) -> None:
    embedding_layer(src.model, src.model_path)
    if not centre_images(src)[0]:
        raise EdgeCNNError(
            f"--embedding centres the features on their mean over training images and {src.model_path.name} "
            "comes without a training split: pass --calib-data IMAGE_FOLDER (images like the ones to embed)"
        )


def embedding_layer(model, path: Path):
    """The trainer's ``head_pool`` layer (global average pooling: the penultimate features).
    A QAT model wraps it as ``quant_head_pool``."""
    for name in (EMBEDDING_LAYER, f"quant_{EMBEDDING_LAYER}"):
        if name in {layer.name for layer in model.layers}:
            return model.get_layer(name)
    raise EdgeCNNError(
        f"{Path(path).name} has no {EMBEDDING_LAYER!r} layer, so --embedding does not know which features to "
        f"export: train it with `edgecnn train` (whose head pools into {EMBEDDING_LAYER!r}) "
        "or export without --embedding"
    )


def centre_images(src: ExportSource):
    """The images whose mean feature centres the embedding: the training split, else --calib-data."""
    return (src.train, "training split") if src.train else (src.calibration, "--calib-data images")


def embedding_centre(model, src: ExportSource) -> tuple[np.ndarray, dict[str, Any]]:
    """Mean ``head_pool`` feature of ``model`` over the centring images, and the manifest's record of it.

    Post-ReLU pooled features are all non-negative, so raw vectors of different people point into one
    orthant (cosines of 0.9 between strangers); minus their mean, cosine similarity separates people."""
    from edge_cnn.keras import keras

    items, origin = centre_images(src)
    features = keras.Model(model.input, embedding_layer(model, src.model_path).output)
    total = 0.0
    for start in range(0, len(items), CENTRE_BATCH):
        x, _ = src.load(items[start : start + CENTRE_BATCH])
        total = total + features.predict(x, verbose=0).astype(np.float64).reshape(len(x), -1).sum(axis=0)
    centre = (total / len(items)).astype(np.float32)
    record = {"centred": True, "centre": f"mean {EMBEDDING_LAYER} feature", "centre_images": origin,
              "centre_count": len(items), "centre_norm": float(np.linalg.norm(centre))}
    return centre, record


def with_embedding(model, path: Path, centre: np.ndarray):
    """The same weights with two outputs: (probabilities, head_pool features - centre).

    The subtraction is a layer of the graph, so every format and precision (int8 included, whose output
    quantization then has a zero point inside a signed range) carries it and the runtime stays as it is."""
    from edge_cnn.keras import keras, layers, tf

    class EmbeddingCentre(layers.Layer):
        def build(self, input_shape):
            self.centre = self.add_weight("centre", shape=centre.shape, initializer="zeros", trainable=False)
            self.centre.assign(centre)

        @tf.autograph.experimental.do_not_convert  # nothing to convert; autograph re-reads the source file
        def call(self, inputs, training=None):  # the wrapper takes **kwargs, so Keras passes ``training``
            return inputs - self.centre

    embedding = EmbeddingCentre(name=EMBEDDING_OUTPUT)(embedding_layer(model, path).output)
    return keras.Model(model.input, [model.output, embedding], name=model.name)


def without_softmax(model):
    """The same weights with the class output (the first) taken before its softmax: the logits.

    Full-integer int8 quantizes a softmax output in steps of 1/256, so every confident answer comes out as
    0.996 or 0: on 457 pedestrian windows 303 tied at the top and 86 at 0, which erases the ranking that ROC
    AUC and non-maximum suppression rely on. Logits quantized over their own range keep it, and the runtime
    applies the softmax in float (the manifest says "logits"); the arg-max, hence accuracy, is unchanged."""
    from edge_cnn.keras import keras, layers

    last = model.get_layer(model.output_names[0])
    if type(last).__name__ == "Softmax":
        logits = last.input
    else:
        linear = layers.Dense.from_config({**last.get_config(), "activation": "linear", "name": f"{last.name}_logits"})
        logits = linear(last.input)
        linear.set_weights(last.get_weights())
    return keras.Model(model.inputs, [logits, *model.outputs[1:]], name=model.name)


# --- data -----------------------------------------------------------------------


def _parity_images(src: ExportSource) -> tuple[np.ndarray, np.ndarray | None, str]:
    if src.test:
        x, y = src.load(src.test)
        return (x, y, "test split") if src.test_labelled else (x, None, "--calib-data images (no labels)")
    low, high = src.spec.value_range()
    rng = np.random.default_rng(0)
    x = rng.uniform(low, high, (RANDOM_PARITY_IMAGES, *src.spec.input_shape)).astype(np.float32)
    return x, None, "random inputs (no test split, no --calib-data)"


def _calibration(src: ExportSource, count: int) -> np.ndarray:
    """``count`` training images in a fixed shuffled order, through the run's spec."""
    return src.load(calibration_items(src.calibration, count))[0]


def _accuracy(probabilities: np.ndarray | None, y: np.ndarray | None) -> float | None:
    if probabilities is None or y is None:
        return None
    return 100.0 * float(np.mean(probabilities.argmax(1) == y))


def _optimize(src: ExportSource, qat, prune, cluster, epochs: dict[str, int], verbose: int):
    """Fine-tune on the labelled training split: (model to export, file stem, measured facts)."""
    from edge_cnn.export import optimize

    x, y = src.load(src.train)
    if qat:
        optimized, facts = optimize.quantization_aware(src.model, x, y, int(epochs["qat"]), verbose)
        return optimized, "model_qat", facts
    if prune is not None:
        optimized, facts = optimize.prune(src.model, x, y, float(prune), int(epochs["prune"]), verbose)
        return optimized, f"model_pruned{round(100 * float(prune))}", facts
    optimized, facts = optimize.cluster(src.model, x, y, int(cluster), int(epochs["cluster"]), verbose)
    return optimized, f"model_cluster{int(cluster)}", facts


# --- one artifact -------------------------------------------------------------------


class _Context:
    """What the jobs share: the model, calibration data and the ONNX graphs converted once."""

    def __init__(self, src, model, qat, float_io, calibration, onnx_options, opset, keep_names=False):
        self.src, self.model, self.qat, self.float_io = src, model, qat, float_io
        self.calibration, self.onnx_options, self.opset = calibration, onnx_options, opset
        self.keep_names = keep_names
        # post-training int8 of a softmax classifier outputs its logits (see ``without_softmax``);
        # a QAT model keeps its softmax, whose range it learnt inside its quantize wrappers
        self.int8_logits = not qat and ends_in_softmax(src.model)
        self._logits_model: Any = None
        self._logits_reference: np.ndarray | None = None
        self._onnx: dict[bool, Any] = {}

    def outputs_logits(self, job: Job) -> bool:
        return job.precision == "int8" and self.int8_logits

    def converted_model(self, job: Job):
        """The Keras model a job converts: the logits model for post-training int8, else the model."""
        if not self.outputs_logits(job):
            return self.model
        if self._logits_model is None:
            self._logits_model = without_softmax(self.model)
        return self._logits_model

    def logits_reference(self, x: np.ndarray) -> np.ndarray:
        """Keras' logits on the parity images (an int8 job's class reference), predicted once for all jobs."""
        if self._logits_reference is None:
            self._logits_reference = self._logits_model.predict(x, verbose=0)[0]
        return self._logits_reference

    def onnx_graph(self, job: Job):
        """The float (or QAT fake-quant) ONNX graph of the job's model, converted once; a conversion error
        is re-raised for every ONNX job of that model."""
        logits = self.outputs_logits(job)
        if logits not in self._onnx:
            from edge_cnn.export.onnx import convert_onnx

            try:
                self._onnx[logits] = convert_onnx(self.converted_model(job), opset=self.opset)
            except Exception as exc:  # noqa: BLE001  (kept to fail the int8 job with the same reason)
                self._onnx[logits] = exc
        if isinstance(self._onnx[logits], Exception):
            raise self._onnx[logits]
        return self._onnx[logits]

    def write(self, job: Job, path: Path) -> None:
        if job.format == "tflite":
            from edge_cnn.export.tflite import convert_tflite

            model = self.converted_model(job)
            path.write_bytes(convert_tflite(model, job.precision, self.calibration, self.float_io, self.qat))
        elif job.format == "onnx":
            import onnx

            if job.precision == "int8" and not self.qat:  # a QAT graph already carries its QDQ nodes
                from edge_cnn.export.onnx_quant import quantize_onnx

                quantize_onnx(self.onnx_graph(job), path, self.calibration, self.onnx_options)
            elif job.precision == "int8":  # QAT: tf2onnx folded the fake-quant weights back to float32
                from edge_cnn.export.onnx_qdq import store_weights_int8

                onnx.save(store_weights_int8(self.onnx_graph(job)), str(path))
            else:
                onnx.save(self.onnx_graph(job), str(path))
        else:
            from edge_cnn.keras import tf

            tf.saved_model.save(self.model, str(path))
        if job.format != "saved_model" and not self.keep_names:  # before parity: the checked file ships
            from edge_cnn.export.compact import compact_file

            compact_file(path, job.format)


def _run_job(job: Job, stem: str, context: _Context, evaluation, facts) -> tuple[Artifact | None, dict[str, Any]]:
    x, y, reference, reference_accuracy, reference_embedding = evaluation
    final = context.src.out_dir / job.filename(stem)
    logits = context.outputs_logits(job)
    try:
        with atomic_path(final) as tmp:
            context.write(job, tmp)
            converted = context.converted_model(job)
            loaded = parity.load_artifact(tmp, job.format, parity.keras_outputs(converted), logits=logits)
            if reference_embedding is not None:
                class_reference = context.logits_reference(x) if logits else reference
                references = (class_reference, reference_embedding)
                loaded = parity.resolve_same_shapes(loaded, converted.output_names, x, references)
            checked = parity.compare(loaded, x, y, reference, reference_accuracy, job.precision, reference_embedding)
            digest, size, gzipped = _measure(tmp)
    except EdgeCNNError as exc:
        return None, _failed_row(job, final, str(exc))
    except Exception as exc:  # noqa: BLE001  (any converter/runtime error fails this artifact only)
        return None, _failed_row(job, final, f"{type(exc).__name__}: {_first_line(exc)}")
    class_meaning = "probabilities" if ends_in_softmax(context.src.model) and not logits else "logits"
    meanings = {position: "embedding" if k == 1 else class_meaning for k, position in enumerate(loaded.order)}
    artifact = Artifact(
        path=final.name,
        format=job.format,
        precision=job.precision,
        sha256=digest,
        bytes=size,
        gzip_bytes=gzipped,
        inputs=[_tensor_spec(info, layout=context.src.spec.layout) for info in loaded.inputs],
        outputs=[
            _tensor_spec(info, meaning=meanings.get(position, class_meaning))
            for position, info in enumerate(loaded.outputs)
        ],
        status=checked["status"],
        optimization=dict(facts),
        parity=checked,
    )
    row = {
        "Format": job.format,
        "Precision": job.precision,
        "Status": checked["status"],
        "Size (MB)": size / 1e6,
        "Gzip (MB)": gzipped / 1e6,
        "Test accuracy (%)": checked["accuracy"],
        "Drop (pp)": checked.get("accuracy_drop_pp"),
        "Agreement (%)": checked["agreement"],
        "Max abs diff": checked["max_abs_diff"],
        "Latency p50 (ms)": checked["latency_p50_ms"],
        "File": final.name,
        "Note": checked["note"],
    }
    return artifact, row


def _failed_row(job: Job, final: Path, reason: str) -> dict[str, Any]:
    return {"Format": job.format, "Precision": job.precision, "Status": "FAILED", "File": final.name, "Note": reason}


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else "no message"


def _tensor_spec(info, layout: str | None = None, meaning: str | None = None) -> TensorSpec:
    quant = Quantization(*info.quantization) if info.quantization else None
    return TensorSpec(info.name, [int(d) for d in info.shape], info.dtype, layout, meaning, quant)


def _measure(path: Path) -> tuple[str, int, int]:
    """sha256, bytes and gzip bytes of a file, or of a folder's files in sorted order (SavedModel)."""
    if path.is_file():
        return sha256_file(path), path.stat().st_size, gzip_size(path)
    digest = hashlib.sha256()
    size = gzipped = 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + sha256_file(file).encode())
        size += file.stat().st_size
        gzipped += gzip_size(file)
    return digest.hexdigest(), size, gzipped

"""``export()``: optimize (optional), convert to every requested format/precision, prove parity, write the manifest.

The orchestration only: settings are ``config.ExportConfig``, the jobs ``plan.plan_jobs``, each
format's converter is the format table's writer, graph changes are ``surgery``. One artifact is one job: it is written to a temporary path, loaded back with its own
runtime and compared with Keras there, and only then renamed into place. A job that
raises becomes a FAILED row with its reason; the other jobs go on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_cnn import __version__
from edge_cnn.errors import EdgeCNNError
from edge_cnn.export import parity
from edge_cnn.export.config import ExportConfig, channel_plan_label
from edge_cnn.export.plan import Job, plan_jobs
from edge_cnn.export.report import artifact_row, failed_row, write_export_reports
from edge_cnn.export.source import ExportSource, calibration_items, ends_in_softmax, load_source
from edge_cnn.export.surgery import centre_images, embedding_centre, embedding_layer, with_embedding, without_softmax
from edge_cnn.formats import get_format
from edge_cnn.tasks import get_task
from edge_cnn.io import atomic_path, ensure_writable_dir, gzip_size, sha256_file
from edge_cnn.manifest import MANIFEST_NAME, Artifact, Manifest, Quantization, TensorSpec, load_manifest
from edge_cnn.zoo.profile import profile

RANDOM_PARITY_IMAGES = 8


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


def export(
    source: str | os.PathLike,
    config: ExportConfig | None = None,
    *,
    verbose: int = 0,
    log: Callable[[str], None] = lambda message: None,
    **options: Any,
) -> ExportResult:
    """Export a run directory (or a bare .keras file with ``preprocess``) and check every artifact.

    ``config`` is an ``ExportConfig``; without one, ``options`` are its fields (``int8=True``, ...).
    TFLite fp32 + ONNX fp32 always; ``fp16``/``dynamic`` add TFLite variants; ``int8`` adds full-integer
    TFLite and ONNX int8 calibrated on ``calib`` training images; ``qat``/``prune``/``prune_channels``/
    ``target_latency``/``cluster`` optimize the model first; ``embedding`` adds the ``head_pool`` features minus
    their mean over the training images (meaning "embedding") to every artifact.
    Every ONNX and TFLite artifact gets short internal names (``edge_cnn.export.compact``) unless
    ``keep_names``. Bad input raises EdgeCNNError before any work; a failing artifact is a FAILED row.
    """
    config = (config or ExportConfig(**options)).validate()
    src = load_source(source, out=config.out, preprocess=config.preprocess, labels=config.labels,
                      calib_data=config.calib_data)
    int8, qat = config.int8 or config.qat, config.qat
    _check_data(src, int8, qat, config.optimizing)
    if config.embedding:
        _check_embedding(src)
    ensure_writable_dir(src.out_dir)
    # Readers trust a folder only through its manifest: the old one goes first and the new one is
    # written last, so a re-export killed half-way leaves no manifest beside a mix of artifacts.
    (src.out_dir / MANIFEST_NAME).unlink(missing_ok=True)

    task = get_task(src.task)
    x_test, y_test, parity_data = _parity_images(src)
    model, stem, facts = src.model, "model", {}
    if config.optimizing:
        accuracy_before = task.score(src.model.predict(x_test, verbose=0), y_test)
        log("fine-tuning on the training split")
        model, stem, facts = _optimize(src, config, verbose, log)
    if config.embedding:
        log("centring the embedding on the mean feature of the " + centre_images(src)[1])
        centre, facts["embedding"] = embedding_centre(model, src)
        model = with_embedding(model, src, centre)
        reference, reference_embedding = model.predict(x_test, verbose=0)
    else:
        reference, reference_embedding = model.predict(x_test, verbose=0), None
    reference_accuracy = task.score(reference, y_test)
    if config.optimizing and y_test is not None:
        facts["keras_accuracy_before"] = accuracy_before
        facts["keras_accuracy_after"] = reference_accuracy

    calibration = _calibration(src, config.calib) if int8 and not qat else None
    context = _Context(src, model, config, calibration)
    artifacts, rows = [], []
    for job in plan_jobs(config.formats, int8, config.fp16, config.dynamic_range, qat):
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
        task=src.task,
        decoding=get_task(src.task).decoding((src.spec.height, src.spec.width), model.outputs[0].shape),
        macs=int(profile(model)["macs"]),
    )
    manifest_path = manifest.save(src.out_dir)
    manifest = load_manifest(manifest_path)  # the contract is checked the way its readers check it
    summary = {
        "source": str(src.model_path),
        "source_sha256": src.sha256,
        "parity_data": parity_data,
        "parity_images": int(len(x_test)),
        "keras_accuracy": reference_accuracy,
        "score": task.score_name,
        "calibration_images": 0 if calibration is None else int(len(calibration)),
        "optimization": facts,
    }
    report_json, report_md = write_export_reports(rows, summary, src.out_dir)
    return ExportResult(rows, manifest, manifest_path, report_json, report_md, summary)


# --- checks before any work ---------------------------------------------------


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
    if get_task(src.task).output_meaning(False, False) == "embedding":
        raise EdgeCNNError(f"{src.model_path.name} was trained with --task {src.task}: its one output already is the L2-normalised "
                           "embedding (manifest meaning 'embedding'); export it without --embedding")
    embedding_layer(src.model, src.model_path, src.task)
    if not centre_images(src)[0]:
        raise EdgeCNNError(
            f"--embedding centres the features on their mean over training images and {src.model_path.name} "
            "comes without a training split: pass --calib-data IMAGE_FOLDER (images like the ones to embed)"
        )


# --- data -----------------------------------------------------------------------


def _parity_images(src: ExportSource) -> tuple[np.ndarray, Any, str]:
    if src.test:
        x, y = src.load(src.test)
        return (x, y, src.test_origin) if src.test_labelled else (x, None, f"{src.test_origin} (no labels)")
    low, high = src.spec.value_range()
    rng = np.random.default_rng(0)
    x = rng.uniform(low, high, (RANDOM_PARITY_IMAGES, *src.spec.input_shape)).astype(np.float32)
    return x, None, "random inputs (no test split, no --calib-data)"


def _calibration(src: ExportSource, count: int) -> np.ndarray:
    """``count`` training images in a fixed shuffled order, through the run's spec."""
    return src.load(calibration_items(src.calibration, count))[0]


def _optimize(src: ExportSource, config: ExportConfig, verbose: int, log: Callable[[str], None]):
    """Fine-tune on the labelled training split: (model to export, file stem, measured facts)."""
    from edge_cnn.export import channels, optimize

    x, y = src.load(src.train)
    if config.qat:
        optimized, facts = optimize.quantization_aware(src.model, x, y, int(config.qat_epochs), verbose)
        return optimized, "model_qat", facts
    if config.prune is not None:
        optimized, facts = optimize.prune(src.model, x, y, float(config.prune), int(config.prune_epochs), verbose)
        return optimized, f"model_pruned{round(100 * float(config.prune))}", facts
    plan = config.channel_plan
    if plan is not None:
        optimize.require_tf_keras(src.model)
        if isinstance(plan, dict):
            thinner, facts = channels.keep_channels(src.model, plan)
            kept = {name: layer["kept"] for name, layer in facts["channels_kept"].items()}
            stem = "model_channels_" + channel_plan_label(kept)
        else:
            thinner, facts = channels.prune_channels(src.model, plan)
            stem = "model_channels" + channel_plan_label(plan)
        _fine_tune_thinner(src, thinner, x, y, config, verbose, facts)
        return thinner, stem, facts
    if config.target_latency is not None:
        thinner, facts = _netadapt(src, config, x, y, verbose, log)
        return thinner, "model_netadapt", facts
    optimized, facts = optimize.cluster(src.model, x, y, int(config.cluster), int(config.cluster_epochs), verbose)
    return optimized, f"model_cluster{int(config.cluster)}", facts


def _netadapt(src: ExportSource, config: ExportConfig, x: np.ndarray, y: np.ndarray, verbose: int,
              log: Callable[[str], None]):
    """NetAdapt down to ``--target-latency`` (real fp32 TFLite timings on this CPU), its proposals scored on the
    validation split or, in a run without one, on a fixed held-out fifth of the training split (which the
    proposals then do not train on); then the final fine-tune of ``--prune-epochs`` on the whole training split
    with the run's augmentation, unless nothing was pruned (the source model already met the target and is
    exported as it is)."""
    from edge_cnn.export import netadapt, optimize

    optimize.require_tf_keras(src.model)
    if src.val:
        (x_val, y_val), x_search, y_search = src.load(src.val), x, y
        validation = f"val split ({len(src.val)} images)"
    else:
        order = np.random.default_rng(0).permutation(len(x))
        held, rest = np.split(order, [max(1, len(x) // 5)])
        x_val, y_val, x_search, y_search = x[held], y[held], x[rest], y[rest]
        validation = f"{len(held)} training images held out (the run has no val split)"
    thinner, facts = netadapt.netadapt(
        src.model, x_search, y_search, x_val, y_val, float(config.target_latency), netadapt.tflite_latency_ms, log=log
    )
    facts["validation"] = validation
    if facts["iterations"]:
        _fine_tune_thinner(src, thinner, x, y, config, verbose, facts,
                           val=(x_val, y_val) if src.val else None)
    else:
        facts.update(epochs=0, augment={}, fine_tune_loss=[])
    return thinner, facts


def _fine_tune_thinner(src: ExportSource, thinner, x: np.ndarray, y: np.ndarray, config: ExportConfig, verbose: int,
                       facts: dict[str, Any], val: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """The final fine-tune of a channel-pruned model on the whole training split for ``--prune-epochs``, with
    the run's augmentation (the unpruned model as teacher with ``--distill``; ``--prune-lr``: a cosine decay
    from that rate instead of Adam's constant ``FINE_TUNE_LR``), keeping the epoch of lowest
    val-split loss where the run has one (``optimize.BestOnValidation``; else the last); what it did goes into
    ``facts``. ``val``: the val split's images and labels where the caller has loaded them already
    (NetAdapt's search)."""
    from edge_cnn.export import distill, optimize

    if val is None and src.val:
        val = src.load(src.val)
    keeper = optimize.BestOnValidation(*val) if val is not None else None
    epochs = int(config.prune_epochs)
    facts["epochs"] = epochs
    facts["augment"] = _active(src.augment)
    if config.distill:
        facts["distillation"] = {"teacher": "the unpruned model", "temperature": distill.TEMPERATURE,
                                 "soft_weight": distill.SOFT_WEIGHT}
    facts["learning_rate"] = (f"constant {optimize.FINE_TUNE_LR:g}" if config.prune_lr is None
                              else f"cosine decay from {float(config.prune_lr):g}")
    facts["fine_tune_loss"] = optimize._fine_tune(
        thinner, x, y, epochs, verbose, ends_in_softmax(src.model), callbacks=[keeper] if keeper else (),
        augment=optimize.model_space_augmenter(src.spec, src.augment),
        teacher=src.model if config.distill else None, cosine_from=config.prune_lr,
    )
    facts.update(keeper.facts() if keeper else {"kept_epoch": epochs, "val_loss_per_epoch": [],
                                                "val_accuracy_per_epoch": []})


def _active(augment) -> dict[str, Any]:
    """The augmentation options a fine-tune used, for the manifest (empty: none)."""
    return {key: value for key, value in augment.to_dict().items() if value} if augment is not None else {}


# --- one artifact -------------------------------------------------------------------


class _Context:
    """What the jobs share: the model, calibration data and the ONNX graphs converted once."""

    def __init__(self, src: ExportSource, model, config: ExportConfig, calibration: np.ndarray | None):
        self.src, self.model, self.calibration = src, model, calibration
        self.qat, self.float_io, self.opset = config.qat, config.float_io, config.opset
        self.onnx_options, self.keep_names = config.onnx_options(), config.keep_names
        # post-training int8 of a softmax classifier outputs its logits (see ``without_softmax``);
        # a QAT model keeps its softmax, whose range it learnt inside its quantize wrappers
        self.int8_logits = not self.qat and ends_in_softmax(src.model)
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
        """The job's artifact through its format's writer, then (unless ``keep_names``) its compact
        pass, before parity: the checked file is the one that ships."""
        fmt = get_format(job.format)
        fmt.write(self, job, path)
        if not self.keep_names:
            fmt.compact_file(path)


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
            checked = parity.compare(loaded, x, y, reference, reference_accuracy, job.precision, reference_embedding,
                                     task=context.src.task)
            digest, size, gzipped = _measure(tmp)
    except EdgeCNNError as exc:
        return None, failed_row(job, final.name, str(exc))
    except Exception as exc:  # noqa: BLE001  (any converter/runtime error fails this artifact only)
        return None, failed_row(job, final.name, f"{type(exc).__name__}: {_first_line(exc)}")
    class_meaning = get_task(context.src.task).output_meaning(ends_in_softmax(context.src.model), logits)
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
        optimization=dict(facts) | _onnx_int8_facts(job, context.onnx_options, final),
        parity=checked,
    )
    row = artifact_row(job, checked, size, gzipped, final.name)
    return artifact, row


def _onnx_int8_facts(job, onnx_options, path: Path) -> dict:
    """For the manifest of an ONNX int8 artifact: how many of its nodes run in float between int8 layers
    (``onnx_quant.requantized_float_nodes``, which the runtime's rule reads) and the op types
    ``--onnx-float-ops`` kept in float; {} for other artifacts."""
    if job.format != "onnx" or job.precision != "int8":
        return {}
    import onnx

    from edge_cnn.export.onnx_quant import requantized_float_nodes

    facts = {"float_nodes": len(requantized_float_nodes(onnx.load(str(path))))}
    return facts | ({"float_ops": list(onnx_options.float_ops)} if onnx_options.float_ops else {})


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

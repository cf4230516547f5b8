"""``Predictor``: images in, labelled predictions (or embeddings, or boxes) out, with no TensorFlow.

Everything a model needs around it comes from the export manifest: the ``PreprocessSpec``
(the same object the trainer used, so inputs are identical), the int8 quantization of
the input, the meaning of each output (probabilities, logits, embedding, box_map), the task's
decoding (detect: stride, thresholds) and the labels.

One ``Predictor`` may be shared by threads: it holds no per-call state; onnxruntime
sessions are thread-safe and ``TFLiteBackend`` serialises its interpreter with a lock.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image

from edge_cnn.backends import TensorInfo, match_outputs, open_backend, shapes_fit
from edge_cnn.errors import EdgeCNNError, ImageError, ManifestError
from edge_cnn.manifest import Artifact, Manifest, TensorSpec
from edge_cnn.numerics import dequantize, quantize, softmax, unit_embeddings
from edge_cnn.runtime import artifacts as artifact_files
from edge_cnn.tasks import get_task
from edge_cnn.preprocess import RESAMPLING, to_pil
from edge_cnn.tasks.classify import Prediction
from edge_cnn.tasks.detect import MAX_DETECTIONS, MEANING as BOX_MEANING, letterbox

CLASS_MEANINGS = ("probabilities", "logits", None)  # an output without a meaning is taken as probabilities
DEFAULT_BATCH = 32


class Predictor:
    """A loaded, verified artifact with its manifest. Build it with ``Predictor.load``."""

    def __init__(self, manifest: Manifest, artifact: Artifact, backend: Any):
        self.manifest = manifest
        self.artifact = artifact
        self.reason = ""  # why this artifact (set by ``load``)
        self.backend = backend
        self.spec = manifest.preprocess
        self.task = get_task(manifest.task)  # its post-processing turns the main output into answers
        self.labels = list(manifest.labels)
        self.model_path = manifest.artifact_path(artifact)
        self._input = artifact.inputs[0]
        self._input_quant = _input_quantization(self._input, backend.inputs[0], self.model_path)
        self._pixel_table = self._build_pixel_table() if self._input_quant else None
        self._check_input_shape(backend.inputs[0])
        self._output_order = match_outputs(artifact.outputs, backend.outputs, self.model_path)
        self._output_quant = [
            _output_quantization(spec, backend.outputs[i], self.model_path) for spec, i in zip(artifact.outputs, self._output_order)
        ]
        self._class_output = next((i for i, o in enumerate(artifact.outputs) if o.meaning in CLASS_MEANINGS), None)
        self._embedding_output = next((i for i, o in enumerate(artifact.outputs) if o.meaning == "embedding"), None)
        self._box_output = next((i for i, o in enumerate(artifact.outputs) if o.meaning == BOX_MEANING), None)
        if self._box_output is not None and not {"stride", "score_threshold", "nms_iou"} <= set(manifest.decoding):
            raise ManifestError(f"{self.model_path} outputs a detection map but its manifest's decoding lacks the stride "
                                "or thresholds: re-export the model")
        self._check_labels()
        fixed = backend.inputs[0].shape[0]
        self._fixed_batch = fixed if isinstance(fixed, int) and fixed > 0 else None

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        backend: str = "auto",
        provider: str = "cpu",
        threads: int | None = None,
        precision: str | None = None,
    ) -> "Predictor":
        """``path``: an export folder (or a run folder with ``export/``), its manifest.json, or one
        ``.onnx``/``.tflite`` file of it. From a folder the default pick is what ``bench --select``
        measured fastest on this CPU, else fp32 or int8 by whether the CPU has an int8 dot product
        (``runtime.artifacts``); ``precision`` and ``backend`` narrow the choice. ``reason`` says why."""
        pick = artifact_files.resolve(path, backend, precision, provider, threads)
        model_path = pick.manifest.verified_path(pick.artifact)
        engine = open_backend(model_path, backend=pick.artifact.format, providers=(provider,), threads=pick.threads)
        predictor = cls(pick.manifest, pick.artifact, engine)
        predictor.reason = pick.reason
        return predictor

    # --- description ------------------------------------------------------------
    @property
    def kind(self) -> str:
        return f"{self.artifact.format} {self.artifact.precision}"

    def describe(self) -> str:
        """One line: which artifact runs, on what, and why it was chosen."""
        line = f"{self.model_path} ({self.kind}, {', '.join(self.backend.providers)})"
        return f"{line}: {self.reason}" if self.reason else line

    # --- inference ----------------------------------------------------------------
    def predict(self, images: Any, topk: int = 5, preprocessed: bool = False) -> Prediction | list[Prediction]:
        """Class predictions. A single image (path, PIL image, (H, W[, C]) array) gives one ``Prediction``;
        a list, or a 4-D array (N, H, W, C) of pixel images, gives a list.

        ``preprocessed=True``: ``images`` is a float batch already in the model's input layout and size
        (what ``preprocess`` returns); it is checked, not resized.
        """
        batch, paths, single = self._batch_and_paths(images, preprocessed)
        results = self._classify(batch, paths, topk)
        return results[0] if single else results

    def probabilities(self, images: Any, preprocessed: bool = False) -> np.ndarray:
        """Class probabilities (N, classes) in the labels' order, dequantized (softmax applied to logits)."""
        self._require_classes()
        batch, _, _ = self._batch_and_paths(images, preprocessed)
        return self._probabilities(self._forward(batch)[self._class_output])

    def embed(self, images: Any, preprocessed: bool = False, flip: bool | None = None) -> np.ndarray:
        """L2-normalised embedding vectors: (D,) for a single image, (N, D) for several.

        ``flip``: the "flip test" of face verification: each image and its left-right mirror are embedded
        and the two unit vectors added before normalising (twice the inference, one vector in the same
        space, so galleries stay valid either way). ``None`` does what the artifact's verification threshold
        was measured with (``Verification.flip``; off without one), so the stored threshold fits the scores."""
        if self._embedding_output is None:
            raise EdgeCNNError(
                f"{self.model_path} has no embedding output (no output with meaning 'embedding' in its manifest): "
                "export the model with an embedding output to use embed()"
            )
        if flip is None:
            flip = bool(self.artifact.verification and self.artifact.verification.flip)
        batch, _, single = self._batch_and_paths(images, preprocessed)
        vectors = unit_embeddings(lambda images: self._forward(images)[self._embedding_output], batch,
                                  self.spec.mirror(batch) if flip else None)
        return vectors[0] if single else vectors

    def detect(self, images: Any, threshold: float | None = None, iou_threshold: float | None = None,
               max_detections: int = MAX_DETECTIONS) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Boxes of a detection export: per image a list of {x, y, w, h, score, label} in its original
        pixels, best first (one list for a single image). Each image is letterboxed to the input as in
        training, decoded and suppressed in numpy with the manifest's decoding; ``threshold`` and
        ``iou_threshold`` default to the manifest's."""
        if self._box_output is None:
            raise EdgeCNNError(
                f"{self.model_path} has no detection output (no output with meaning {BOX_MEANING!r} in its manifest): "
                "export a run trained with --task detect, or use predict()"
            )
        items, single = _as_items(images)
        placed = [letterbox(self._pil(item, position), self.spec.height, self.spec.width, self.spec.color,
                            RESAMPLING[self.spec.resize]) for position, item in enumerate(items)]
        values = self._forward(self._encode([pixels for pixels, _ in placed]))[self._box_output]
        options = {"threshold": threshold, "iou_threshold": iou_threshold}
        answers = self.task.postprocess(values, BOX_MEANING, self.labels, max_detections, [None] * len(items),
                                        decoding=self.manifest.decoding, letterboxes=[box for _, box in placed],
                                        **{key: value for key, value in options.items() if value is not None})
        return answers[0] if single else answers

    def predict_files(self, paths: Iterable[str | os.PathLike], topk: int = 5, batch_size: int = DEFAULT_BATCH) -> Iterator[tuple[str, Prediction | None, ImageError | None]]:
        """(path, prediction, None) per readable file and (path, None, error) per unreadable one, in order.

        One bad file does not stop the others (what `edgecnn predict` prints)."""
        chunk: list[tuple[str, np.ndarray]] = []
        for path in paths:
            try:
                chunk.append((str(path), self.spec.load_image(path)))
            except ImageError as exc:
                yield from self._flush(chunk, topk)
                chunk = []
                yield str(path), None, exc
                continue
            if len(chunk) >= batch_size:
                yield from self._flush(chunk, topk)
                chunk = []
        yield from self._flush(chunk, topk)

    def _flush(self, chunk: list[tuple[str, np.ndarray]], topk: int) -> Iterator[tuple[str, Prediction, None]]:
        if not chunk:
            return
        paths = [path for path, _ in chunk]
        for prediction in self._classify(self._encode([pixels for _, pixels in chunk]), paths, topk):
            yield prediction.path, prediction, None

    def preprocess(self, images: Any) -> np.ndarray:
        """Images -> the float32 batch in the model's layout, exactly as the trainer's ``PreprocessSpec``
        makes it (before any int8 quantization)."""
        items, _ = _as_items(images)
        pixels = np.stack([self._load(item, position) for position, item in enumerate(items)])
        return self.spec.to_layout(self.spec.normalize(pixels))

    def quantize_input(self, batch: np.ndarray) -> np.ndarray:
        """Float model values -> what the artifact takes: int8/uint8 with its scale/zero-point, or float."""
        if self._input_quant is None:
            return np.asarray(batch, dtype=self._input.dtype)
        scale, zero_point = self._input_quant
        return quantize(batch, scale, zero_point, self._input.dtype)

    # --- internals ---------------------------------------------------------------
    def _batch_and_paths(self, images: Any, preprocessed: bool) -> tuple[np.ndarray, list[str | None], bool]:
        """-> (the batch as the artifact takes it, the paths, whether one image was given)."""
        if preprocessed:
            batch = self.quantize_input(self._checked_batch(images))
            return batch, [None] * len(batch), False
        if isinstance(images, np.ndarray) and images.ndim == 4 and len(images) and self.spec.is_ready(images[0]):
            return self._encode(images), [None] * len(images), False  # e.g. the detector's windows, already cut
        items, single = _as_items(images)
        pixels = [self._load(item, position) for position, item in enumerate(items)]
        paths = [str(item) if isinstance(item, (str, os.PathLike)) else None for item in items]
        return self._encode(pixels), paths, single

    def _load(self, item: Any, position: int) -> np.ndarray:
        try:
            return self.spec.load_image(item)
        except ImageError as exc:
            if isinstance(item, (str, os.PathLike)):
                raise  # the message names the file
            raise ImageError(f"input {position} ({_describe(item)}): {exc}") from None

    def _pil(self, item: Any, position: int) -> Image.Image:
        try:
            return to_pil(item)
        except ImageError as exc:
            if isinstance(item, (str, os.PathLike)):
                raise  # the message names the file
            raise ImageError(f"input {position} ({_describe(item)}): {exc}") from None

    def _build_pixel_table(self) -> np.ndarray:
        """(channels, 256): what an int8/uint8 artifact takes for each channel's pixel value 0..255, i.e.
        ``quantize_input(spec.normalize(value))`` computed once. Both steps act on each value alone, so
        looking pixels up gives the very numbers the two steps give, in one pass instead of a dozen.
        One row when every channel has the same row (one mean and std)."""
        values = np.repeat(np.arange(256, dtype=np.uint8)[:, None], self.spec.channels, axis=1)
        table = np.ascontiguousarray(self.quantize_input(self.spec.normalize(values)).T)
        return table[:1] if all(np.array_equal(row, table[0]) for row in table[1:]) else table

    def _encode(self, pixels: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """uint8 (H, W, C) images of the spec's size (a list, or one array of them) -> the batch the artifact
        takes (normalized, quantized where the input is int8, in the model's layout). A float input gets the
        spec's own arithmetic, which numpy does in place about 5x faster than a table lookup (it widens uint8
        indices to 64 bits); a quantized input goes through the pixel table."""
        batch = pixels if isinstance(pixels, np.ndarray) else np.stack(pixels)
        table = self._pixel_table
        if table is None:
            encoded = self.spec.normalize(batch)
        elif len(table) == 1:
            encoded = np.take(table[0], batch)
        else:
            encoded = np.empty(batch.shape, table.dtype)
            for channel, row in enumerate(table):
                encoded[..., channel] = np.take(row, batch[..., channel])
        return self.spec.to_layout(encoded)

    def _require_classes(self) -> None:
        if self._class_output is None:
            raise EdgeCNNError(f"{self.model_path} has no classification output (its outputs are embeddings): use embed()")

    def _classify(self, batch: np.ndarray, paths: list[str | None], topk: int) -> list[Prediction]:
        self._require_classes()
        meaning = self.artifact.outputs[self._class_output].meaning
        return self.task.postprocess(self._forward(batch)[self._class_output], meaning, self.labels, topk, paths)

    def _checked_batch(self, batch: Any) -> np.ndarray:
        expected = self.spec.input_shape
        if not isinstance(batch, np.ndarray) or batch.ndim != 4 or tuple(batch.shape[1:]) != expected or len(batch) == 0:
            shape = getattr(batch, "shape", type(batch).__name__)
            raise ImageError(
                f"preprocessed batch of shape {shape} does not fit {self.model_path.name}, which takes "
                f"(N, {', '.join(map(str, expected))}) ({self.spec.layout}): pass images instead, or use Predictor.preprocess"
            )
        if not np.issubdtype(batch.dtype, np.floating):
            raise ImageError(f"preprocessed batch must hold float model values, not {batch.dtype}: pass the pixels as images instead")
        return batch.astype(np.float32, copy=False)

    def _forward(self, batch: np.ndarray) -> list[np.ndarray]:
        """Batch as the artifact takes it -> float outputs in the manifest's output order (run in chunks)."""
        step = self._fixed_batch or DEFAULT_BATCH
        parts = [self._run_chunk(batch[start : start + step]) for start in range(0, len(batch), step)]
        return [np.concatenate([part[i] for part in parts]) for i in range(len(self.artifact.outputs))]

    def _run_chunk(self, chunk: np.ndarray) -> list[np.ndarray]:
        count = len(chunk)
        if self._fixed_batch and count < self._fixed_batch:  # pad a fixed-batch model's last chunk
            padding = np.zeros((self._fixed_batch - count,) + chunk.shape[1:], chunk.dtype)
            chunk = np.concatenate([chunk, padding])
        raw = self.backend.run(chunk)
        outputs = []
        for position, quant in zip(self._output_order, self._output_quant):
            values = raw[position][:count]
            outputs.append(dequantize(values, *quant) if quant else values.astype(np.float32))
        return outputs

    def _probabilities(self, values: np.ndarray) -> np.ndarray:
        values = values.reshape(len(values), -1)
        return softmax(values) if self.artifact.outputs[self._class_output].meaning == "logits" else values

    def _check_input_shape(self, actual: TensorInfo) -> None:
        declared = list(self._input.shape)
        from_spec = [-1, *self.spec.input_shape]
        if not shapes_fit(declared, from_spec):
            raise ManifestError(
                f"manifest input shape {declared} of {self.model_path.name} disagrees with its preprocessing "
                f"{from_spec}: re-export the model"
            )
        if not shapes_fit(declared, list(actual.shape)) or np.dtype(actual.dtype) != np.dtype(self._input.dtype):
            raise ManifestError(
                f"{self.model_path} takes {list(actual.shape)} {actual.dtype} but its manifest says {declared} "
                f"{self._input.dtype}: the file does not match the manifest; re-export the model"
            )

    def _check_labels(self) -> None:
        if self._class_output is None:
            return
        classes = self.artifact.outputs[self._class_output].shape[-1]
        if classes > 0 and classes != len(self.labels):
            raise ManifestError(
                f"{self.model_path.name} outputs {classes} classes but its manifest lists {len(self.labels)} labels: re-export"
            )


def _as_items(images: Any) -> tuple[list[Any], bool]:
    """-> (list of single images, whether one image was given)."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images], True
    if isinstance(images, np.ndarray):
        if images.ndim in (2, 3):
            return [images], True
        if images.ndim == 4 and len(images):
            return list(images), False
        raise ImageError(f"array of shape {images.shape} is neither an image (H, W[, C]) nor a batch of images (N, H, W, C)")
    if isinstance(images, (list, tuple)):
        if not images:
            raise ImageError("no images given: pass a path, a PIL image, an array or a non-empty list of them")
        return list(images), False
    raise ImageError(f"cannot read images from a {type(images).__name__}: pass a path, a PIL image, an array or a list of them")


def _describe(item: Any) -> str:
    if isinstance(item, np.ndarray):
        return f"array {item.shape} {item.dtype}"
    return type(item).__name__



def _input_quantization(spec: TensorSpec, actual: TensorInfo, path: Path) -> tuple[float, int] | None:
    """(scale, zero_point) for an int8/uint8 input; the manifest's and the file's must agree."""
    if spec.dtype not in ("int8", "uint8"):
        return None
    declared = (spec.quantization.scale, spec.quantization.zero_point)
    if actual.quantization is not None and not _same_quant(declared, actual.quantization):
        raise ManifestError(
            f"{path} quantizes its input with scale/zero-point {actual.quantization} but its manifest says {declared}: re-export"
        )
    return declared


def _output_quantization(spec: TensorSpec, actual: TensorInfo, path: Path) -> tuple[float, int] | None:
    if actual.dtype not in ("int8", "uint8"):
        return None
    declared = (spec.quantization.scale, spec.quantization.zero_point) if spec.quantization else None
    if declared and actual.quantization and not _same_quant(declared, actual.quantization):
        raise ManifestError(f"{path} output {spec.name!r} quantization {actual.quantization} differs from its manifest's {declared}: re-export")
    found = declared or actual.quantization
    if found is None:
        raise ManifestError(f"{path} output {spec.name!r} is {actual.dtype} without scale/zero-point in the manifest or the file: re-export")
    return found


def _same_quant(a: tuple[float, int], b: tuple[float, int]) -> bool:
    return int(a[1]) == int(b[1]) and abs(float(a[0]) - float(b[0])) <= 1e-6 * max(abs(float(a[0])), 1e-30)

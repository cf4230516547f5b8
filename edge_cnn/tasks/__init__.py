"""The task table: what a model is trained to do, defined once per task (``classify``, ``detect`` and
``embed``).

A task owns its head (builder and layer names), its loss and metrics, the outputs its export
carries with their manifest meaning and decoding, the model inputs export calibrates and checks
on, the parity figures of an artifact, the runtime's post-processing, and its evaluation. Its
``data_kind`` names the trainer's data route (``folder``: class folders; ``boxes``: box-annotated
photos; ``identities``: one folder per person), so the trainer never asks for a task by name. The
run directory (``config.yaml``) and the manifest record the task's name; the trainer, the
exporter, the runtime, ``evaluate`` and ``predict`` look it up here, so adding a task is one
module that calls ``register_task`` plus its tests. This package is pure Python below every
stage: Keras is imported inside the methods that build or compile a model, so the embedded
runtime reads the table without TensorFlow.
"""

from __future__ import annotations

from typing import Any, Sequence

from edge_cnn.errors import EdgeCNNError

DEFAULT_TASK = "classify"


class Task:
    """The interface every task implements (see ``edge_cnn.tasks.classify`` for the reference)."""

    name: str
    model_suffix: str  # the trained Keras model is named <backbone>_<model_suffix>
    head_layers: tuple[str, ...]  # the head's layer names: every other layer belongs to the backbone
    feature_layer: str | None  # the layer whose output is the image's feature vector (the embedding export); None: none
    data_kind: str = "folder"  # the trainer's data route: "folder" (class folders), "boxes" (annotated photos)
    try_command: str = "edgecnn predict {export} IMAGE"  # what export suggests next on its artifacts
    # or "identities" (one folder per person)

    def build_head(self, features: Any, num_outputs: int, *, dropout: float, pooling: str) -> Any:
        """The head on a backbone's 4-D feature map (a KerasTensor) -> the model's output tensor."""
        raise NotImplementedError

    def loss(self, label_smoothing: float = 0.0) -> Any:
        raise NotImplementedError

    def metrics(self) -> list[Any]:
        raise NotImplementedError

    def evaluate(self, truth: Any, outputs: Any, labels: Sequence[str]) -> dict[str, Any]:
        """What metrics.json holds for one split, from the model's outputs on it."""
        raise NotImplementedError

    def output_meaning(self, ends_in_softmax: bool, logits: bool) -> str:
        """The manifest meaning of the main output of an exported artifact."""
        raise NotImplementedError

    def postprocess(self, values: Any, meaning: str, labels: Sequence[str], topk: int, paths: Sequence[str | None],
                    **options: Any) -> list[Any]:
        """The runtime's answer per image from the main output's values (dequantized float); ``options``
        carry what a task needs beyond them (detect: the manifest's decoding, each image's letterbox)."""
        raise NotImplementedError

    def classes_in_output(self, shape: Sequence[int]) -> int:
        """How many labels the main output of this shape (batch first) stands for."""
        return int(shape[-1])

    def decoding(self, input_size: tuple[int, int], output_shape: Sequence[int]) -> dict[str, Any]:
        """What the manifest records to decode the main output ({}: nothing beyond its meaning)."""
        return {}

    def model_inputs(self, spec: Any, images: Sequence[Any]) -> Any:
        """Images (paths, PIL, arrays) -> the float batch the model takes (export's calibration and parity)."""
        return spec(list(images))

    score_name: str = "accuracy"  # what ``score`` measures (export's "Test accuracy (%)" column)

    def score(self, outputs: Any, truth: Any) -> float | None:
        """The task's figure in % of the main outputs on labelled images (None without ``truth``):
        export's Keras reference and each artifact's, whose difference the parity verdict bounds."""
        raise NotImplementedError

    def parity(self, outputs: Any, reference: Any, truth: Any) -> dict[str, Any]:
        """An artifact's main outputs against Keras' on the parity images: ``accuracy`` (``score``),
        ``agreement`` (%) and ``max_abs_diff``, the figures export's verdict reads."""
        raise NotImplementedError

    def summary(self, split_metrics: dict[str, Any]) -> dict[str, Any]:
        """The terminal row of one split of metrics.json."""
        raise NotImplementedError


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    if task.name in _TASKS:
        raise RuntimeError(f"task {task.name!r} is registered twice")
    _TASKS[task.name] = task
    return task


def unregister_task(name: str) -> None:
    """Remove a task (tests that register their own)."""
    _TASKS.pop(name, None)


def task_names() -> tuple[str, ...]:
    return tuple(_TASKS)


def get_task(name: str | None) -> Task:
    """The task of that name (``None``: the default, what runs and manifests written before tasks existed mean)."""
    name = name or DEFAULT_TASK
    if name not in _TASKS:
        raise EdgeCNNError(f"task {name!r} is unknown: use one of {', '.join(_TASKS)}")
    return _TASKS[name]


from edge_cnn.tasks import classify, detect, embed  # noqa: E402,F401  (registers the built-in tasks)

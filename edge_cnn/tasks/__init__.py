"""The task table: what a model is trained to do, defined once per task (``classify`` today;
``detect`` and ``embed`` next).

A task owns its head (builder and layer names), its loss and metrics, the outputs its export
carries with their manifest meaning, the runtime's post-processing, and its evaluation. The
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
    feature_layer: str  # the layer whose output is the image's feature vector (the embedding export)

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

    def postprocess(self, values: Any, meaning: str, labels: Sequence[str], topk: int, paths: Sequence[str | None]) -> list[Any]:
        """The runtime's answer per image from the main output's values (dequantized float)."""
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


from edge_cnn.tasks import classify  # noqa: E402,F401  (registers the built-in tasks)

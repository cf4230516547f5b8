"""One timed call per backend, behind one small interface.

``prepare(batch)`` does everything that is not the inference (dtype, layout, device upload)
before timing; ``call(prepared)`` is what the clock sees; ``fetch(prepared)`` runs once and
returns host outputs for the untimed finiteness check.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Call(Protocol):
    def prepare(self, batch: np.ndarray) -> Any: ...

    def __call__(self, prepared: Any) -> Any: ...

    def fetch(self, prepared: Any) -> list[np.ndarray]: ...


class OnnxCall:
    """``session.run`` with a prepared feed: the same work as a bare ``session.run`` loop."""

    def __init__(self, session: Any):
        self._run = session.run
        self._input_name = session.get_inputs()[0].name
        self._output_names = [o.name for o in session.get_outputs()]

    def prepare(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return {self._input_name: np.ascontiguousarray(batch)}

    def __call__(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._run(self._output_names, feed)

    def fetch(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self(feed)


class LiteRTCall:
    """``TFLiteBackend.run``: set the input, invoke, copy the outputs out (what a client does)."""

    def __init__(self, backend: Any):
        self._run = backend.run

    def prepare(self, batch: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(batch)

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return self._run(batch)

    def fetch(self, batch: np.ndarray) -> list[np.ndarray]:
        return self(batch)


class KerasCall:
    """A ``tf.function`` of ``model(x, training=False)``, outputs fetched with ``.numpy()`` so the
    time includes the computation finishing (GPU kernels run asynchronously otherwise)."""

    def __init__(self, model: Any):
        from edge_cnn.keras import tf

        self._tf = tf
        self._function = tf.function(lambda x: model(x, training=False))

    def prepare(self, batch: np.ndarray) -> Any:
        return self._tf.constant(batch)

    def __call__(self, x: Any) -> list[np.ndarray]:
        outputs = self._function(x)
        return [o.numpy() for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]

    def fetch(self, x: Any) -> list[np.ndarray]:
        return self(x)

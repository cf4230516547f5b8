"""One registry of architectures (timm-style): the CLI, the trainer and the tests read it."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from typing import Callable

from edge_cnn.errors import EdgeCNNError


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    builder: Callable
    default_input_shape: tuple[int, int, int]
    min_input_size: int  # smallest height and width the network's downsampling accepts
    width_option: str | None  # keyword of the family's width multiplier ("alpha"), if any


_REGISTRY: dict[str, ModelInfo] = {}

# The family modules register their builders when imported; that happens at the first lookup, not at
# `import edge_cnn.zoo`, so `edgecnn zoo --help` and the runtime need no TensorFlow. Their order is
# the order of `edgecnn zoo`.
FAMILY_MODULES = ("lenet", "small_convnet", "alexnet", "vgg", "googlenet", "resnet", "densenet", "mobilenet",
                  "efficientnet", "mobilenet_v3", "mobilefacenet", "nasnet", "inception", "xception")
_families_loaded = False


def _load_families() -> None:
    global _families_loaded
    if not _families_loaded:
        for module in FAMILY_MODULES:
            importlib.import_module(f"edge_cnn.zoo.{module}")
        _families_loaded = True


def register_model(
    family: str,
    default_input_shape: tuple[int, int, int] = (224, 224, 3),
    min_input_size: int = 32,
    width_option: str | None = None,
):
    """Decorator: register a builder under its function name."""

    def decorate(builder: Callable) -> Callable:
        name = builder.__name__
        if name in _REGISTRY:
            raise RuntimeError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelInfo(name, family, builder, tuple(default_input_shape), min_input_size, width_option)
        return builder

    return decorate


def list_models(family: str | None = None) -> list[str]:
    """Registered names in registration order (optionally of one family)."""
    _load_families()
    return [name for name, info in _REGISTRY.items() if family is None or info.family == family]


def model_info(name: str) -> ModelInfo:
    _load_families()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise EdgeCNNError(f"unknown model {name!r}{hint} (`edgecnn zoo` lists them)")
    return _REGISTRY[name]


def check_input_shape(name: str, input_shape) -> tuple[int, int, int]:
    """Validate (H, W, C) against the family's minimum; return it as a tuple of ints."""
    info = model_info(name)
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise EdgeCNNError(f"input_shape {input_shape!r} must be (height, width, channels)") from None
    if len(shape) != 3 or min(shape) < 1:
        raise EdgeCNNError(f"input_shape {input_shape!r} must be (height, width, channels) with positive sizes")
    height, width, _ = shape
    if min(height, width) < info.min_input_size:
        raise EdgeCNNError(
            f"{name} needs an input of at least {info.min_input_size}x{info.min_input_size} "
            f"(its downsampling would leave no pixels); got {height}x{width}"
        )
    return shape


def build(name: str, input_shape=None, num_classes: int = 1000, include_top: bool = True, weights=None, **options):
    """Build a registered model as a tf_keras Functional model.

    ``weights`` is None (random init) or a ``.keras`` model or ``.h5`` weights file of the
    same architecture. ``options`` are the family's own (``alpha``, ``batch_norm``, ...).
    """
    info = model_info(name)
    shape = check_input_shape(name, input_shape or info.default_input_shape)
    if int(num_classes) < 1:
        raise EdgeCNNError(f"num_classes must be at least 1; got {num_classes}")
    try:
        model = info.builder(input_shape=shape, num_classes=int(num_classes), include_top=include_top, **options)
    except TypeError as exc:
        raise EdgeCNNError(f"{name}: {exc}") from None
    if weights is not None:
        _load_weights(model, weights)
    return model


def _load_weights(model, weights) -> None:
    from pathlib import Path

    if not Path(weights).is_file():
        raise EdgeCNNError(f"weights file {weights} does not exist")
    try:
        model.load_weights(str(weights))
    except (ValueError, OSError) as exc:
        raise EdgeCNNError(
            f"weights file {weights} does not fit {model.name} ({str(exc).splitlines()[0][:200]}): "
            "build with the same name, input shape and num_classes as the saved model"
        ) from None

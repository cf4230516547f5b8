"""Model zoo: Keras builders for every CNN family, faithful to the papers and torchvision.

``build(name, input_shape, num_classes, include_top, weights, **options)``,
``list_models()``, ``model_info(name)`` and ``profile(model)`` (parameters and MACs).
"""

from edge_cnn.zoo.registry import build, check_input_shape, list_models, model_info, register_model

# Importing the family modules registers their builders (order = the order of `edgecnn zoo`).
from edge_cnn.zoo import (  # noqa: E402,F401  isort: skip
    lenet,
    small_convnet,
    alexnet,
    vgg,
    googlenet,
    resnet,
    densenet,
    mobilenet,
    efficientnet,
    mobilenet_v3,
    nasnet,
    inception,
    xception,
)
from edge_cnn.zoo.profile import profile  # noqa: E402

__all__ = ["build", "check_input_shape", "list_models", "model_info", "profile", "register_model"]

"""Model zoo: Keras builders for every CNN family, faithful to the papers and torchvision.

``build(name, input_shape, num_classes, include_top, weights, **options)``,
``list_models()``, ``model_info(name)`` and ``profile(model)`` (parameters and MACs).
The family modules (``registry.FAMILY_MODULES``) load on the first lookup, with TensorFlow.
"""

from edge_cnn.zoo.profile import profile
from edge_cnn.zoo.registry import build, check_input_shape, list_models, model_info, register_model

__all__ = ["build", "check_input_shape", "list_models", "model_info", "profile", "register_model"]

"""See what a trained network learned: Grad-CAM, CAM, activations, filter patterns, folder summaries.

The Python API mirrors ``edgecnn explain``. Names are imported on first use, so the CLI's
``--help`` starts without TensorFlow. Module names differ from the function names
(``grad_cam.py`` holds ``gradcam``) so that importing a submodule never replaces the
function ``edge_cnn.explain.gradcam`` by a module of the same name.
"""

from __future__ import annotations

import importlib

_API = {
    "gradcam": "edge_cnn.explain.grad_cam",
    "GradCam": "edge_cnn.explain.grad_cam",
    "Heatmaps": "edge_cnn.explain.grad_cam",
    "cam": "edge_cnn.explain.class_map",
    "Cam": "edge_cnn.explain.class_map",
    "activations": "edge_cnn.explain.feature_maps",
    "activation_grid": "edge_cnn.explain.feature_maps",
    "filter_patterns": "edge_cnn.explain.filters",
    "pattern_grid": "edge_cnn.explain.filters",
    "FilterPatterns": "edge_cnn.explain.filters",
    "overlay": "edge_cnn.explain.drawing",
    "blend": "edge_cnn.explain.drawing",
    "save_png": "edge_cnn.explain.drawing",
    "summary": "edge_cnn.explain.localization",
    "Box": "edge_cnn.explain.localization",
    "CENTER_BAND": "edge_cnn.explain.localization",
    "heat_share": "edge_cnn.explain.localization",
    "share_ceiling": "edge_cnn.explain.localization",
    "open_run": "edge_cnn.explain.graph",
    "feature_layers": "edge_cnn.explain.graph",
    "default_layer": "edge_cnn.explain.graph",
    "explain": "edge_cnn.explain.heatmaps",
    "HeatmapResult": "edge_cnn.explain.heatmaps",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)

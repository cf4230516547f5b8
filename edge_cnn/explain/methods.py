"""The heatmap methods by name, as the CLI and the folder summary pick them."""

from __future__ import annotations

from edge_cnn.errors import EdgeCNNError

METHODS = ("gradcam", "cam")  # importable without TensorFlow (the CLI's choices)


def make_explainer(model, method: str = "gradcam", layer: str | None = None):
    """A ``GradCam`` or ``Cam``: ``(batch, class_index) -> Heatmaps``; CAM has no layer choice (it is the pooled map)."""
    from edge_cnn.explain.class_map import Cam
    from edge_cnn.explain.grad_cam import GradCam

    if method == "gradcam":
        return GradCam(model, layer)
    if method == "cam":
        if layer is not None:
            raise EdgeCNNError("CAM always uses the feature map feeding global average pooling: "
                               "drop --layer or use --method gradcam")
        return Cam(model)
    raise EdgeCNNError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")

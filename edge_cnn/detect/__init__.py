"""Detection on full images, two routes: a window classifier slid over an image pyramid then NMS
(``sliding``, ``detector``), and a dense detection export decoded in numpy (``boxes``); and the
evaluation of a detect run or export on box-annotated photos (``evaluation``, plots in ``curves``).

Numpy and Pillow only (the runtime rule: no TensorFlow on the device).
"""

from edge_cnn.detect.sliding import Box, detect, nms, pyramid_levels, pyramid_scales, window_boxes

__all__ = ["Box", "detect", "nms", "pyramid_levels", "pyramid_scales", "window_boxes"]

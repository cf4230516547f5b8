"""edgecnn: from a Keras CNN builder to a fast, small, verified model on an edge device.

Importing the package is cheap and imports no TensorFlow: the stages load it on use,
and the embedded runtime (``edge_cnn.runtime``) never does.
"""

__version__ = "0.1.0"

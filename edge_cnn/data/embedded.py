"""Data sets that ship inside installed packages: a first training run needs no network.

``face``: scikit-image's ``lfw_subset`` (100 LFW face crops + 100 non-face patches, 25x25
grey) read straight from the ``.npy`` file in the scikit-image wheel (never its download
fetcher), written once as PNGs under ``$EDGECNN_HOME/datasets/face/{face,non_face}/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from edge_cnn.errors import EdgeCNNError
from edge_cnn.io import atomic_path, home_dir

EMBEDDED_DATASETS = {
    "face": "100 LFW face crops + 100 non-face patches, 25x25 grey (scikit-image lfw_subset); classes face, non_face",
}


def resolve_data(source: str | os.PathLike) -> Path:
    """An embedded data set name or a folder path -> the folder to scan."""
    if str(source) in EMBEDDED_DATASETS:
        return _materialise_face()
    folder = Path(source).expanduser()
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise EdgeCNNError(
            f"data {str(source)!r} {what}: pass a folder with one sub-folder per class, "
            f"or an embedded data set: {', '.join(EMBEDDED_DATASETS)}"
        )
    return folder


def _lfw_subset_file() -> Path:
    import skimage.data

    path = Path(skimage.data.__file__).parent / "lfw_subset.npy"
    if not path.is_file():
        raise EdgeCNNError(
            f"the embedded face data set needs {path}, which this scikit-image install lacks: "
            "reinstall scikit-image from a wheel (pip install --force-reinstall scikit-image)"
        )
    return path


def _materialise_face() -> Path:
    """Write the PNGs once; the folder appears whole (temp folder + rename) or not at all."""
    folder = home_dir() / "datasets" / "face"
    if folder.is_dir():
        return folder
    images = np.load(_lfw_subset_file())  # (200, 25, 25) floats in [0, 1]: 100 faces, then 100 non-faces
    pixels = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    half = len(pixels) // 2
    with atomic_path(folder) as tmp:
        for name, block in (("face", pixels[:half]), ("non_face", pixels[half:])):
            (tmp / name).mkdir(parents=True)
            for index, image in enumerate(block):
                Image.fromarray(image).save(tmp / name / f"{name}_{index:03d}.png")
    return folder

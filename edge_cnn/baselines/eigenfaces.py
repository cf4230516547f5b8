"""Eigenfaces (Turk & Pentland 1991): PCA of the training faces, nearest neighbour in face space."""

from __future__ import annotations

import numpy as np


class Eigenfaces:
    def __init__(self, components: int = 50):
        self.components = components

    def fit(self, faces: np.ndarray, labels) -> "Eigenfaces":
        """``faces``: (N, H, W[, C]) arrays of one size; ``labels``: N identities."""
        data = faces.reshape(len(faces), -1).astype(np.float64)
        self.mean_ = data.mean(axis=0)
        _, _, vt = np.linalg.svd(data - self.mean_, full_matrices=False)
        self.basis_ = vt[: min(self.components, len(vt))]
        self.gallery_ = self.project(faces)
        self.labels_ = np.asarray(labels)
        return self

    def project(self, faces: np.ndarray) -> np.ndarray:
        return (faces.reshape(len(faces), -1).astype(np.float64) - self.mean_) @ self.basis_.T

    def predict(self, faces: np.ndarray) -> np.ndarray:
        """Label of the nearest training face (Euclidean distance in face space)."""
        codes = self.project(faces)
        distances = ((codes[:, None, :] - self.gallery_[None, :, :]) ** 2).sum(axis=2)
        return self.labels_[distances.argmin(axis=1)]

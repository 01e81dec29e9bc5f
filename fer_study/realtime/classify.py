"""Emotion classifiers for the pipeline, the face-crop rule, and probability calibration.

* :func:`crop_faces` owns the one rule that turns a face box into model input (square crop
  with a margin, grayscale, resize; models smaller than the 48 px FER2013 face get the
  centre ``size/48`` of it, as they were trained); :func:`face_images_input` applies the
  same rule to images that already are face crops (FER2013-style).
* :func:`load_classifier` gives a :class:`CalibratedClassifier`: a TFLite interpreter
  (:class:`fer_study.export.TFLiteClassifier`, default) or a Keras model behind a compiled
  ``tf.function`` (:class:`KerasClassifier`), with the temperature of the model's sidecar
  JSON applied to its probabilities (:class:`Calibration`).  Never ``model.predict`` per
  frame: its per-call overhead (~100 ms) alone would exceed the frame budget.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from fer_study.export import (
    DEFAULT_KERAS_MODEL,
    DEFAULT_MODEL_META,
    DEFAULT_TFLITE_MODEL,
    ExportError,
    TFLiteClassifier,
    load_keras_model,
    model_input_size,
)
from fer_study.labels import NUM_CLASSES
from fer_study.model_input import crop_side
from fer_study.realtime.faces import Box, RealtimeError

# Crop margin per side, as a fraction of the detector's box: 0 gave the best emotion
# accuracy for both detectors on PublicTest scenes (reports/results/
# benchmark_realtime_tuning.json): the boxes already frame a face as FER2013's crops do.
DEFAULT_MARGIN = 0.0


class Classifier(Protocol):
    """Batch classifier: (N, S, S, 1) float32 pixels in [0, 255] -> (N, 7) probabilities."""

    input_size: int

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


# --------------------------------------------------------------------------- crops


def crop_faces(
    gray: np.ndarray,
    boxes: Sequence[Box],
    size: int,
    margin: float = DEFAULT_MARGIN,
) -> np.ndarray:
    """Square crops around ``boxes`` (grown by ``margin`` per side) -> (N, size, size, 1).

    Crops are square (side = the box's longer side) so faces are never stretched; parts
    outside the frame are filled by edge replication rather than clipped away.  Models
    with inputs smaller than the 48 px FER2013 face are trained and evaluated on centre
    crops of it, so their crop is the matching centre part (:func:`model_input.crop_side`,
    the rule evaluation follows).
    """
    out = np.empty((len(boxes), size, size, 1), np.float32)
    fh, fw = gray.shape[:2]
    for i, b in enumerate(boxes):
        side = crop_side(max(b.w, b.h) * (1.0 + 2.0 * margin), size)
        cx, cy = b.x + b.w / 2.0, b.y + b.h / 2.0
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
        x1, y1 = x0 + max(1, round(side)), y0 + max(1, round(side))
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, fw), min(y1, fh)
        if cx1 <= cx0 or cy1 <= cy0:
            out[i] = 0.0
            continue
        crop = gray[cy0:cy1, cx0:cx1]
        if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
            crop = cv2.copyMakeBorder(
                crop, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1, cv2.BORDER_REPLICATE
            )
        interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
        out[i, :, :, 0] = cv2.resize(crop, (size, size), interpolation=interp)
    return out


def face_images_input(images: np.ndarray, size: int) -> np.ndarray:
    """Images that are already face crops (N, H, W[, 1]) -> model input (N, size, size, 1).

    The same rule as :func:`crop_faces` with the whole image as the box and no margin.
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3:
        raise RealtimeError(f"expected grayscale faces (N, H, W[, 1]), got shape {images.shape}")
    if len(images) == 0:
        return np.zeros((0, size, size, 1), np.float32)
    h, w = images.shape[1:]
    box = [Box(0, 0, w, h)]
    return np.concatenate([crop_faces(im, box, size, margin=0.0) for im in images])


def to_gray(frame: np.ndarray) -> np.ndarray:
    """BGR, BGRA or grayscale image -> 2-D uint8 grayscale."""
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 1:
        return frame[:, :, 0]
    code = cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(frame, code)


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling of a classifier's probabilities: ``softmax(log p / T)``.

    Read from the ``"calibration"`` key of a model's sidecar JSON (``T`` fitted on
    PublicTest by the ship step); without it ``T = 1`` and ``calibrated`` is False.
    """

    temperature: float = 1.0
    fitted_on: str | None = None
    calibrated: bool = False

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Rescale (N, 7) probabilities; the identity when ``T == 1``."""
        probs = np.asarray(probs, np.float32)
        if self.temperature == 1.0 or probs.size == 0:
            return probs
        z = np.log(np.clip(probs, 1e-12, 1.0)) / self.temperature
        z -= z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {
            "calibrated": self.calibrated,
            "temperature": self.temperature,
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_sidecar(cls, path: str | os.PathLike[str] | None) -> Calibration:
        """The calibration recorded in a model's sidecar JSON, or none (T = 1)."""
        if path is None or not Path(path).is_file():
            return cls()
        try:
            meta = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RealtimeError(f"cannot read model metadata {path}: {exc}") from exc
        cal = meta.get("calibration") if isinstance(meta, dict) else None
        if not cal:
            return cls()
        t = cal.get("temperature") if isinstance(cal, dict) else None
        if not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise RealtimeError(f"{path}: calibration temperature must be a positive number, "
                                f"got {t!r}")
        return cls(float(t), cal.get("fitted_on"), True)


def sidecar_path(model: str | os.PathLike[str] | None) -> Path:
    """Where a model's metadata lives: ``default_model.json`` or ``<model>.json``."""
    if model is None or Path(model) in (DEFAULT_TFLITE_MODEL, DEFAULT_KERAS_MODEL):
        return DEFAULT_MODEL_META
    return Path(model).with_suffix(".json")


class CalibratedClassifier:
    """A classifier whose probabilities go through its :class:`Calibration`.

    Anything else (``path``, ``num_threads``, ``model``...) is the wrapped classifier's.
    """

    def __init__(self, inner: Classifier, calibration: Calibration | None = None) -> None:
        self.inner = inner
        self.calibration = calibration or Calibration()
        self.input_size: int = inner.input_size

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.calibration.apply(self.inner.predict(batch))

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


# --------------------------------------------------------------------------- classifiers


class KerasClassifier:
    """A Keras model behind a compiled ``tf.function`` graph.

    Batches are zero-padded to the next power of two so that only a handful of shapes are
    ever traced (1, 2, 4, 8, ... faces) instead of one per face count.  For a ~60k-param
    mini-Xception on 2 CPU cores a call costs ~6 ms (graph), ~18 ms with XLA
    (``jit_compile=True`` is slower on CPU for these small convolutions), ~140 ms eager or
    through ``model.predict``; the TFLite export of the same model takes ~0.3 ms, hence
    TFLite is the default and this class the fallback for ``.keras`` files.
    """

    def __init__(self, model: Any, jit_compile: bool = False) -> None:
        if isinstance(model, (str, os.PathLike)):
            model = load_keras_model(model)
        import tensorflow as tf

        self.model = model
        self.input_size: int = model_input_size(model)
        self._tf = tf
        self._fn = tf.function(lambda x: model(x, training=False), jit_compile=jit_compile)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, S, S, 1) float32 pixels in [0, 255] -> (N, 7) float32 probabilities."""
        x = np.asarray(batch, dtype=np.float32)
        n = len(x)
        if n == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        padded = 1 << (n - 1).bit_length()
        if padded != n:
            x = np.concatenate([x, np.zeros((padded - n, *x.shape[1:]), np.float32)])
        return np.asarray(self._fn(self._tf.constant(x)), dtype=np.float32)[:n]


def _raw_classifier(model: str | os.PathLike[str] | None, num_threads: int) -> Classifier:
    if model is None:
        if DEFAULT_TFLITE_MODEL.is_file():
            return TFLiteClassifier(DEFAULT_TFLITE_MODEL, num_threads=num_threads)
        if DEFAULT_KERAS_MODEL.is_file():
            return KerasClassifier(DEFAULT_KERAS_MODEL)
        raise RealtimeError(
            f"the default model is missing ({DEFAULT_TFLITE_MODEL} or "
            f"{DEFAULT_KERAS_MODEL.name}): pass --model PATH to a .tflite or .keras file"
        )
    path = Path(model)
    if not path.is_file():
        raise RealtimeError(f"model file not found: {path}")
    if path.suffix == ".tflite":
        return TFLiteClassifier(path, num_threads=num_threads)
    if path.suffix in (".keras", ".h5"):
        return KerasClassifier(path)
    raise RealtimeError(f"unsupported model file {path}: expected .tflite or .keras")


def load_classifier(
    model: str | os.PathLike[str] | None = None, num_threads: int = 1
) -> CalibratedClassifier:
    """A classifier from a ``.tflite`` or ``.keras`` file; ``None`` = the shipped model.

    Its probabilities are temperature-scaled when the model's sidecar JSON
    (:func:`sidecar_path`) records a calibration; ``.calibration`` says which.
    """
    try:
        inner = _raw_classifier(model, num_threads)
    except ExportError as exc:
        raise RealtimeError(str(exc)) from exc
    return CalibratedClassifier(inner, Calibration.from_sidecar(sidecar_path(model)))

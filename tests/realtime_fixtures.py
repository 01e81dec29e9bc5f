"""Shared pieces of the real-time tests: a tiny classifier of the model contract and
frames with the astronaut's face pasted in (scikit-image's sample, no downloads)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fer_study.export import export_tflite
from fer_study.labels import NUM_CLASSES


def tiny_model():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((48, 48, 1))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return keras.Model(inp, out)


def make_models(d: Path):
    """(keras model, .keras path, float32 .tflite path) of the project's model contract."""
    model = tiny_model()
    keras_path = d / "tiny.keras"
    model.save(keras_path)
    report = export_tflite(model, d, variants=("float32",), name="tiny")
    return model, keras_path, Path(report["variants"]["float32"]["path"])


def load_head() -> np.ndarray:
    """The astronaut's head, BGR; her face is ~95 px wide at (68, 48) in it."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[15:255, 110:330, ::-1])


def compose(head: np.ndarray, positions, scale: float = 1.25, size=(640, 480)) -> np.ndarray:
    """A BGR frame with copies of the astronaut's head at the given top-left positions."""
    frame = np.full((size[1], size[0], 3), 70, np.uint8)
    frame[:, :, 1] = np.linspace(40, 160, size[0], dtype=np.uint8)[None, :]  # some texture
    h = cv2.resize(head, None, fx=scale, fy=scale)
    for x, y in positions:
        hh, ww = min(h.shape[0], size[1] - y), min(h.shape[1], size[0] - x)
        frame[y : y + hh, x : x + ww] = h[:hh, :ww]
    return frame

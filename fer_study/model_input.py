"""The model-input contract, in one place: FER-style face images -> what a model takes.

Every model takes (N, S, S, 1) float32 grey pixel values in 0..255. A model whose input S is
smaller than the 48 px FER2013 face was trained on S-pixel crops of it, so at test time it
sees the *centre* S/48 of a face (:func:`as_model_input`); a face of any other size is then
resized to S. Evaluation, test-time augmentation, Grad-CAM, the TFLite export and the
real-time crops all follow this rule, so a model sees the same face everywhere.

numpy only at import (OpenCV is imported when a resize is needed): the real-time pipeline
and the exporter import this module without Keras.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fer_study.errors import ModelError
from fer_study.labels import IMAGE_SIZE

__all__ = [
    "as_model_input",
    "center_crop",
    "crop_side",
    "model_input_size",
    "ten_crops",
]


def crop_side(side: float, size: int) -> float:
    """The side of the face region a model of input `size` sees, in a face of side `side`:
    all of it for models of 48 px or more, the centre size/48 of it for smaller ones."""
    return side * size / IMAGE_SIZE if size < IMAGE_SIZE else side


def center_crop(images: np.ndarray, size: int) -> np.ndarray:
    """Central `size` x `size` crop of (N, H, W[, C]) images."""
    h, w = images.shape[1:3]
    if size > min(h, w):
        raise ValueError(f"crop size {size} exceeds image size {h}x{w}")
    top, left = (h - size) // 2, (w - size) // 2
    return images[:, top:top + size, left:left + size]


def ten_crops(images: np.ndarray, size: int) -> list[np.ndarray]:
    """The 10-crop test-time views: 4 corners + centre, and their mirror images."""
    h, w = images.shape[1:3]
    views = [images[:, :size, :size], images[:, :size, w - size:], images[:, h - size:, :size],
             images[:, h - size:, w - size:], center_crop(images, size)]
    return views + [v[:, :, ::-1] for v in views]


def as_model_input(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W) or (N, H, W, 1) face images in [0, 255] -> float32 (N, size, size, 1).

    Square faces keep their centre ``crop_side(H, size)`` pixels (all of a 48 px face for a
    48 px model, its centre 44 px for a 44 px one); what remains is resized to `size` when
    it differs.
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3:
        raise ModelError(f"expected grayscale images (N, H, W[, 1]), got shape {images.shape}")
    h, w = images.shape[1:]
    if size < IMAGE_SIZE and h == w:
        images = center_crop(images, round(crop_side(h, size)))
    if images.shape[1:] != (size, size):
        import cv2

        images = np.stack(
            [cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])
    return images.astype(np.float32)[..., None]


def model_input_size(model: Any) -> int:
    """Side length S of a model with input shape (batch, S, S, 1)."""
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 1:
        raise ModelError(f"model input must be (S, S, 1) grayscale, got {shape[1:]}")
    return int(shape[1])

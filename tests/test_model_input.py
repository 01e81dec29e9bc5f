"""The one input-crop rule: evaluation, TTA, Grad-CAM and the export feed a model the same
centre of the face."""

from __future__ import annotations

import numpy as np
import pytest

from fer_study.errors import ModelError
from fer_study.model_input import (
    as_model_input,
    center_crop,
    crop_side,
    model_input_size,
    ten_crops,
)


def _faces(n: int = 3) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def test_small_models_see_the_centre_of_the_face():
    faces = _faces()
    np.testing.assert_array_equal(as_model_input(faces, 44)[..., 0], faces[:, 2:46, 2:46])
    np.testing.assert_array_equal(center_crop(faces, 44), faces[:, 2:46, 2:46])
    np.testing.assert_array_equal(as_model_input(faces, 48)[..., 0], faces)
    assert as_model_input(faces, 48).dtype == np.float32
    # a 96 px face: the same centre fraction (88 px), resized to the model's 44
    big = np.kron(faces, np.ones((1, 2, 2), np.uint8))
    assert crop_side(96, 44) == 88 and crop_side(96, 64) == 96
    np.testing.assert_allclose(as_model_input(big, 44), as_model_input(faces, 44), atol=1)
    assert as_model_input(faces[..., None], 64).shape == (3, 64, 64, 1)
    with pytest.raises(ModelError, match="grayscale"):
        as_model_input(np.zeros((2, 48, 48, 3)), 48)


def test_ten_crops_are_corners_centre_and_mirrors():
    img = _faces(1)
    views = ten_crops(img, 44)
    assert len(views) == 10 and all(v.shape == (1, 44, 44) for v in views)
    np.testing.assert_array_equal(views[0], img[:, :44, :44])
    np.testing.assert_array_equal(views[4], img[:, 2:46, 2:46])
    np.testing.assert_array_equal(views[5], views[0][:, :, ::-1])


def test_predictions_follow_the_rule():
    """predict_probs on a 44 px model = the model on the rule's crop, with and without flip."""
    import keras

    from fer_study.evaluate import predict_probs

    keras.utils.set_random_seed(0)
    inp = keras.Input((44, 44, 1))
    h = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(inp)
    out = keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(h))
    model = keras.Model(inp, out)
    faces = _faces(5)
    x = as_model_input(faces, model_input_size(model))
    want = np.asarray(model(x, training=False))
    np.testing.assert_allclose(predict_probs(model, faces), want, atol=1e-6)
    flipped = np.asarray(model(x[:, :, ::-1], training=False))
    np.testing.assert_allclose(predict_probs(model, faces, tta="flip"), (want + flipped) / 2,
                               atol=1e-6)


def test_model_input_size_refuses_other_shapes():
    class M:
        input_shape = (None, 48, 48, 3)

    with pytest.raises(ModelError, match="grayscale"):
        model_input_size(M())

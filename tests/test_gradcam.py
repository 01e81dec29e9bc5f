"""Grad-CAM: shape/range, localisation on a model trained where the signal is known, nested
backbones, centre crops, and agreement with tf-keras-vis."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from fer_study import gradcam as G
from fer_study.labels import NUM_CLASSES

SIDE = 10  # the signal square's side in pixels
# tf-keras-vis imports zoom from a scipy namespace that scipy deprecates; not our concern.
pytestmark = pytest.mark.filterwarnings("ignore:Please import `zoom`:DeprecationWarning")


def pattern_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy grey images; class 0 has a bright square in the left half, class 1 a dark square
    in the right half. Returns images, labels and each square's (row, col) corner."""
    rng = np.random.default_rng(seed)
    x = np.clip(rng.normal(128, 8, (n, 48, 48)), 0, 255)
    y = np.arange(n) % 2
    corners = np.zeros((n, 2), np.int64)
    for i in range(n):
        r = rng.integers(2, 46 - SIDE)
        c = rng.integers(1, 23 - SIDE) if y[i] == 0 else rng.integers(25, 47 - SIDE)
        x[i, r:r + SIDE, c:c + SIDE] = 235 if y[i] == 0 else 20
        corners[i] = r, c
    return x.astype(np.uint8), y, corners


def tiny_cnn(size: int = 48) -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, 1))
    h = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inp)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="probs")(h)
    return keras.Model(inp, out, name="tiny")


@pytest.fixture(scope="module")
def trained():
    x, y, _ = pattern_data(256, seed=0)
    model = tiny_cnn()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x[..., None].astype("float32"), y, epochs=6, batch_size=32, verbose=0)
    xt, yt, corners = pattern_data(40, seed=1)
    probs = np.asarray(model(xt[..., None].astype("float32"), training=False))
    result = G.GradCAM(model)(xt, yt)
    return model, xt, yt, corners, probs, result


def test_model_learned_the_pattern(trained):
    _, _, yt, _, probs, _ = trained
    assert (probs.argmax(1) == yt).mean() >= 0.95  # otherwise the localisation test is moot


def test_shape_range_and_metadata(trained):
    model, xt, yt, _, _, r = trained
    assert r.heatmaps.shape == xt.shape and r.heatmaps.dtype == np.float32
    assert r.heatmaps.min() >= 0.0 and r.heatmaps.max() <= 1.0
    assert np.allclose(r.heatmaps.reshape(len(xt), -1).max(axis=1), 1.0)
    assert r.layer == ["last_conv"] and r.score == "logit"
    assert r.cams.shape == (len(xt), 24, 24)
    assert (r.class_idx == yt).all()
    assert G.find_last_conv(model) == ["last_conv"]


def test_heatmap_lies_on_the_signal(trained):
    _, xt, yt, corners, _, r = trained
    h = r.heatmaps
    left = h[:, :, :24].sum(axis=(1, 2)) / h.sum(axis=(1, 2))
    correct_half = np.where(yt == 0, left, 1 - left)
    assert correct_half.min() > 0.5  # most of every map's mass is on the signal's side
    # Above its background floor, nearly all heat is on the signal's side...
    above = np.clip(h - np.median(h, axis=(1, 2), keepdims=True), 0, None)
    left_above = above[:, :, :24].sum(axis=(1, 2)) / above.sum(axis=(1, 2))
    assert np.where(yt == 0, left_above, 1 - left_above).mean() > 0.9
    # ...and each map peaks on the square itself (3 px tolerance for the 2x upsampling).
    for i in range(len(xt)):
        pr, pc = np.unravel_index(h[i].argmax(), h[i].shape)
        r0, c0 = corners[i]
        assert r0 - 3 <= pr < r0 + SIDE + 3 and c0 - 3 <= pc < c0 + SIDE + 3, (i, pr, pc)


def test_maps_are_class_discriminative(trained):
    model, _, _, _, _, _ = trained
    x, _, _ = pattern_data(2, seed=5)  # x[0]: bright square left; x[1]: dark square right
    both = x[0].copy()
    both[:, 24:] = x[1][:, 24:]  # one image with both patterns
    cam = G.GradCAM(model)
    h0 = cam(both[None], class_idx=0).heatmaps[0]
    h1 = cam(both[None], class_idx=1).heatmaps[0]
    # Each class's map peaks on its own square (bright left for 0, dark right for 1).
    assert np.unravel_index(h0.argmax(), h0.shape)[1] < 24
    assert np.unravel_index(h1.argmax(), h1.shape)[1] >= 24

    def left_above_floor(h: np.ndarray) -> float:
        above = np.clip(h - np.median(h), 0, None)
        return float(above[:, :24].sum() / above.sum())

    assert left_above_floor(h0) > 0.6 and left_above_floor(h1) < 0.4


def test_agrees_with_tf_keras_vis(trained):
    model, xt, yt, _, _, r = trained
    theirs = G.gradcam_tfkerasvis(model, xt, yt)
    assert theirs.shape == r.heatmaps.shape
    assert np.nanmin(G.map_correlation(r.heatmaps, theirs)) > 0.9
    raw = G.gradcam_tfkerasvis(model, xt, yt, expand=False)  # no interpolation difference
    assert np.nanmin(G.map_correlation(r.cams, raw)) > 0.999


def test_nested_backbone_gives_the_same_maps(trained):
    model, xt, yt, _, _, r = trained
    backbone = keras.Model(model.inputs, model.get_layer("last_conv").output, name="backbone")
    inp = keras.Input((48, 48, 1))
    h = keras.layers.GlobalAveragePooling2D()(backbone(inp))
    dense = keras.layers.Dense(NUM_CLASSES, activation="softmax")
    nested = keras.Model(inp, dense(h))
    dense.set_weights(model.get_layer("probs").get_weights())
    assert G.find_last_conv(nested) == ["backbone", "last_conv"]
    got = G.GradCAM(nested)(xt, yt)
    assert got.layer == ["backbone", "last_conv"] and got.score == "logit"
    np.testing.assert_allclose(got.heatmaps, r.heatmaps, atol=1e-4)
    with pytest.raises(ValueError, match="nested"):
        G.gradcam_tfkerasvis(nested, xt, yt)


def test_centre_crop_models_are_mapped_back_into_the_frame():
    model = tiny_cnn(size=44)
    x, _, _ = pattern_data(4, seed=2)
    full = G.gradcam(model, x, class_idx=3)
    inside = G.gradcam(model, x[:, 2:46, 2:46], class_idx=3)
    assert full.shape == (4, 48, 48)
    np.testing.assert_allclose(full[:, 2:46, 2:46], inside, atol=1e-6)
    assert not full[:, :2].any() and not full[:, :, 46:].any()


def test_prob_score_and_bad_arguments(trained):
    model, xt, _, _, _, _ = trained
    r = G.GradCAM(model, score="prob")(xt[:4])
    assert r.score == "prob" and r.heatmaps.shape == (4, 48, 48)
    with pytest.raises(ValueError, match="score"):
        G.GradCAM(model, score="bogus")
    with pytest.raises(ValueError, match="class_idx"):
        G.gradcam(model, xt[:4], class_idx=[0, 1])
    with pytest.raises(ValueError, match="0..6"):
        G.gradcam(model, xt[:4], class_idx=7)
    with pytest.raises(ValueError, match="no layer"):
        G.gradcam(model, xt[:4], layer="nope")
    dense_only = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(),
                                   keras.layers.Dense(NUM_CLASSES, activation="softmax")])
    with pytest.raises(ValueError, match="no convolution"):
        G.find_last_conv(dense_only)


def test_analysis_helpers(trained):
    _, xt, yt, _, probs, r = trained
    mass = G.region_mass(r.heatmaps)
    total = mass["eyes"] + mass["mouth"] + mass["other"]
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    table = G.region_table(r.heatmaps, yt, probs.argmax(1))
    assert list(table["class"]) == ["Angry", "Disgust", "(area share)"]
    assert set(table.columns) >= {"eyes_mass", "mouth_mass", "other_mass", "accuracy"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all-zero maps: NaN shares, silently
        zero = G.region_table(np.zeros((2, 48, 48), np.float32), np.array([0, 0]))
    assert np.isnan(zero.iloc[0]["eyes_mass"]) and zero.iloc[0]["n"] == 2
    means, counts = G.class_mean_heatmaps(r.heatmaps, yt)
    assert means.shape == (NUM_CLASSES, 48, 48) and counts[:2].tolist() == [20, 20]
    assert not means[2:].any()
    # A wrong prediction must be listed as wrong, with the most confident first.
    fake = np.tile(np.eye(NUM_CLASSES)[[1]], (4, 1)) * 0.9 + 0.1 / NUM_CLASSES
    fake[0, 1] = 0.5
    ex = G.select_examples(np.array([0, 0, 1, 1]), fake, per_class=1)
    assert ex[0] == {"correct": [], "wrong": [1]} and ex[1]["correct"] == [2]
    rgb = G.overlay(xt[0], r.heatmaps[0])
    assert rgb.shape == (48, 48, 3) and rgb.dtype == np.uint8

"""Grad-CAM: shape/range, localisation on a model trained where the signal is known, the
feature layer (a conv's activation), nested backbones, flip-TTA deployment models, centre
crops, agreement with tf-keras-vis, and the deletion test of faithfulness."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from fer_study import gradcam as G
from fer_study import gradcam_analysis as A
from fer_study.labels import NUM_CLASSES
from fer_study.models import deployment_model, vgg_style

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
    mass = A.region_mass(r.heatmaps)
    total = mass["eyes"] + mass["mouth"] + mass["other"]
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    table = A.region_table(r.heatmaps, yt, probs.argmax(1))
    assert list(table["class"]) == ["Angry", "Disgust", "(area share)"]
    assert set(table.columns) >= {"eyes_mass", "mouth_mass", "other_mass", "accuracy"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all-zero maps: NaN shares, silently
        zero = A.region_table(np.zeros((2, 48, 48), np.float32), np.array([0, 0]))
    assert np.isnan(zero.iloc[0]["eyes_mass"]) and zero.iloc[0]["n"] == 2
    means, counts = A.class_mean_heatmaps(r.heatmaps, yt)
    assert means.shape == (NUM_CLASSES, 48, 48) and counts[:2].tolist() == [20, 20]
    assert not means[2:].any()
    # A wrong prediction must be listed as wrong, with the most confident first.
    fake = np.tile(np.eye(NUM_CLASSES)[[1]], (4, 1)) * 0.9 + 0.1 / NUM_CLASSES
    fake[0, 1] = 0.5
    ex = A.select_examples(np.array([0, 0, 1, 1]), fake, per_class=1)
    assert ex[0] == {"correct": [], "wrong": [1]} and ex[1]["correct"] == [2]
    rgb = G.overlay(xt[0], r.heatmaps[0])
    assert rgb.shape == (48, 48, 3) and rgb.dtype == np.uint8


# --------------------------------------------------------------------------- feature layer

def test_vgg_style_is_explained_at_its_last_relu_not_the_raw_conv():
    model = vgg_style(input_size=24, width=4, blocks=2)
    conv = G.find_last_conv(model)
    feature = G.find_feature_layer(model)
    relu = model.get_layer(feature[0])
    # conv -> BatchNorm -> ReLU: the map is the ReLU's output, on the conv's grid
    assert isinstance(relu, keras.layers.Activation) and relu.activation is \
        keras.activations.relu
    bn = relu._inbound_nodes[0].input_tensors[0]._keras_history.operation
    assert isinstance(bn, keras.layers.BatchNormalization)
    assert bn._inbound_nodes[0].input_tensors[0]._keras_history.operation.name == conv[0]
    assert G.GradCAM(model).layer == feature  # the default everywhere (notebook, serve)


# --------------------------------------------------------------------------- deployment models

def _manual_views(members_views, x, cls):
    """The deployment map from its definition: each member's cams on each view, mirror views
    flipped back, averaged, upsampled and scaled to a maximum of 1."""
    cams = []
    for member, mirrored in members_views:
        view = x[:, :, ::-1] if mirrored else x
        c = G.GradCAM(member)(np.ascontiguousarray(view), cls).cams
        cams.append(c[:, :, ::-1] if mirrored else c)
    mean = np.mean(cams, axis=0)
    maps = np.stack([G._upsample(c, x.shape[1]) for c in mean])
    return maps / maps.reshape(len(maps), -1).max(axis=1)[:, None, None]


def test_flip_tta_deployment_model_is_explained_view_by_view(trained):
    model, xt, _, _, _, _ = trained
    other = tiny_cnn()  # an untrained second member: a two-member ensemble
    deploy = deployment_model([model, other], flip=True)
    views = G.deployment_views(deploy)
    assert [(m.name, f) for m, f in views] == [
        ("member0_tiny", False), ("member0_tiny", True),
        ("member1_tiny", False), ("member1_tiny", True)]
    x = xt[:8]
    r = G.GradCAM(deploy)(x)
    probs = np.asarray(deploy(x[..., None].astype("float32"), training=False))
    np.testing.assert_allclose(r.probs, probs, atol=1e-6)
    assert (r.class_idx == probs.argmax(1)).all()  # the deployment model's own decision
    assert r.layer == ["member0_tiny", "last_conv"] and r.score == "logit"
    assert r.views[1] == "member0_tiny/last_conv (mirrored)" and len(r.views) == 4
    np.testing.assert_allclose(r.heatmaps, _manual_views(views, x, r.class_idx), atol=1e-5)
    # Its prediction is mirror-invariant, so its map must be mirror-equivariant.
    flipped = G.GradCAM(deploy)(np.ascontiguousarray(x[:, :, ::-1]), r.class_idx)
    np.testing.assert_allclose(flipped.heatmaps, r.heatmaps[:, :, ::-1], atol=1e-5)
    # Tracing one nested feature map through a member called twice would mix the views.
    with pytest.raises(ValueError, match="more than once"):
        G._feature_model(deploy, ["member0_tiny", "last_conv"])
    with pytest.raises(ValueError, match="nested"):  # tf-keras-vis cannot reach a member
        G.gradcam_tfkerasvis(deploy, x, 0)


def test_shipped_style_model_vgg_with_flip_and_centre_crop():
    member = vgg_style(input_size=44, width=4, blocks=2)
    deploy = deployment_model([member], flip=True)
    x, _, _ = pattern_data(3, seed=4)
    r = G.GradCAM(deploy)(x)
    assert r.heatmaps.shape == (3, 48, 48) and r.layer[1] == G.find_feature_layer(member)[0]
    assert not r.heatmaps[:, :2].any()  # outside the 44 px centre the model never sees


# --------------------------------------------------------------------------- faithfulness

def _square_maps(corners: np.ndarray) -> np.ndarray:
    maps = np.zeros((len(corners), 48, 48), np.float32)
    for i, (r0, c0) in enumerate(corners):
        maps[i, r0:r0 + SIDE, c0:c0 + SIDE] = 1.0
    return maps


def test_deletion_test_finds_a_planted_signal_and_calls_a_random_map_a_tie(trained):
    model, xt, _, corners, _, r = trained
    grid = r.cams.shape[1:]
    signal = A.deletion_test(model, xt, _square_maps(corners), grid=grid)
    assert signal.drops["Grad-CAM"].shape == (len(xt), len(A.DELETION_FRACTIONS))
    assert signal.compare("uniform")["verdict"] == "Grad-CAM better than uniform"
    assert signal.compare("centre prior")["verdict"] == "Grad-CAM better than centre prior"
    # The model's own Grad-CAM maps point at what it uses, too.
    own = A.deletion_test(model, xt, r.heatmaps, grid=grid)
    assert own.compare("uniform")["low"] > 0
    # A map that knows nothing ties with the uniform one; one that avoids the signal loses.
    rng = np.random.default_rng(3)
    noise = np.stack([G._upsample(c, 48) for c in rng.random((len(xt), *grid), np.float32)])
    random = A.deletion_test(model, xt, noise, grid=grid, seed=2)
    assert random.compare("uniform")["verdict"].startswith("tie")
    avoid = A.deletion_test(model, xt, 1 - _square_maps(corners), grid=grid)
    assert avoid.compare("uniform")["verdict"] == "uniform better than Grad-CAM"
    # The sentence a notebook prints claims no more than the verdicts.
    assert "beat a centre prior too" in signal.claim()
    assert "a tie" in random.claim() and "not shown to be faithful" in random.claim()
    assert "point away" in avoid.claim()
    rows = signal.verdict_rows()
    assert [row["comparison"] for row in rows] == ["Grad-CAM - uniform", "Grad-CAM - centre prior"]
    assert [row["map"] for row in signal.drop_rows()] == ["Grad-CAM", "uniform", "centre prior"]


def test_deletion_test_crops_to_the_model_view_and_checks_arguments():
    model = tiny_cnn(size=44)
    x, _, corners = pattern_data(6, seed=6)
    t = A.deletion_test(model, x, _square_maps(corners), class_idx=2, fractions=(0.1,),
                        fill="blur", n_boot=50)
    assert t.drops["uniform"].shape == (6, 1) and (t.class_idx == 2).all()
    assert np.isfinite(t.base_prob).all() and t.fill == "blur"
    with pytest.raises(ValueError, match="fill"):
        A.deletion_test(model, x, _square_maps(corners), fill="zero")
    with pytest.raises(ValueError, match="fractions"):
        A.deletion_test(model, x, _square_maps(corners), fractions=(0.0,))
    with pytest.raises(ValueError, match="same shape"):
        A.deletion_test(model, x, _square_maps(corners)[:, :44])


# --------------------------------------------------------------------------- figures

def test_figures_note_what_they_cannot_show_and_carry_a_colour_bar():
    import matplotlib

    matplotlib.use("Agg")
    from fer_study import gradcam_plots as GP

    def texts(fig) -> str:
        return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)

    means = np.zeros((NUM_CLASSES, 48, 48), np.float32)
    means[0, 10:20, 10:20] = 0.5
    counts = np.array([3, 2, 0, 4, 4, 4, 4])  # Disgust: two faces, every map all zero
    correct = np.array([0, 0, 0, 1, 1, 1, 1])
    fig = GP.class_means(means, counts, correct=correct)
    assert "no positive evidence\nfor Disgust" in texts(fig)
    assert "no Fear faces" in texts(fig)
    assert "none classified correctly" in texts(fig)  # Angry: drawn, but never right
    assert fig.axes[-1].get_ylabel().startswith("mean heat")  # the colour bar
    labels = np.array([0, 0, 1])
    probs = np.full((3, NUM_CLASSES), 0.1)
    probs[[0, 1, 2], [0, 3, 3]] = 0.4  # Angry: one right, one wrong; Disgust: one wrong
    picked = A.select_examples(labels, probs, per_class=2)
    x = np.full((3, 48, 48), 128, np.uint8)
    fig = GP.examples(x, np.zeros((3, 48, 48), np.float32), labels, probs, picked)
    assert "no other correctly classified\nAngry face" in texts(fig)
    assert "no correctly classified\nDisgust face" in texts(fig)
    assert fig.axes[-1].get_ylabel().startswith("heat of the predicted class")
    rng = np.random.default_rng(0)
    test = A.DeletionTest((0.1, 0.2), "mean", np.zeros(5, np.int64), np.full(5, 0.5),
                          {"Grad-CAM": rng.random((5, 2)), "uniform": rng.random((5, 2)),
                           "centre prior": rng.random((5, 2))}, n_boot=50)
    fig = GP.deletion_curves({"m": test})
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(legend) == 3 and legend[0].startswith("Grad-CAM: ")
    matplotlib.pyplot.close("all")


def test_region_area_share_is_taken_over_the_model_view():
    maps = np.ones((2, 48, 48), np.float32)
    full = A.region_table(maps, np.array([0, 0]))
    view = A.region_table(maps, np.array([0, 0]), view=44)
    # a uniform map inside the view scores exactly the view's area shares
    for band in ("eyes_mass", "mouth_mass"):
        assert full.iloc[0][band] == pytest.approx(full.iloc[-1][band])
    inside = np.zeros_like(maps)
    inside[:, 2:46, 2:46] = 1
    shares = A.region_table(inside, np.array([0, 0]), view=44)
    for band in ("eyes_mass", "mouth_mass"):
        assert shares.iloc[0][band] == pytest.approx(view.iloc[-1][band])
    assert view.iloc[-1]["eyes_mass"] != pytest.approx(full.iloc[-1]["eyes_mass"])

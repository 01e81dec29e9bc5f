"""Tests for the procedurally drawn synthetic expression set."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from fer_study.labels import EMOTIONS, NUM_CLASSES
from fer_study.synthetic import MAX_DIFFICULTY, MIN_SIZE, make_synthetic, render_face

DISGUST = EMOTIONS.index("Disgust")


def _within_class_std(images: np.ndarray, labels: np.ndarray) -> float:
    """Mean per-pixel standard deviation inside each class, averaged over classes."""
    x = images.astype(np.float64)
    return float(np.mean([x[labels == k].std(axis=0).mean() for k in range(NUM_CLASSES)]))


def _hog(images: np.ndarray) -> np.ndarray:
    # Unsigned gradients ignore whether the face is lighter or darker than the background;
    # 12 px cells tolerate the small shifts and rotations of the head.
    hog = cv2.HOGDescriptor((48, 48), (24, 24), (12, 12), (12, 12), 9)
    return np.stack([hog.compute(img).ravel() for img in images])


@pytest.fixture(scope="module")
def default_set() -> tuple[np.ndarray, np.ndarray]:
    return make_synthetic(140, seed=0)


def test_shapes_dtypes_and_range(default_set: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = default_set
    assert images.shape == (140, 48, 48) and images.dtype == np.uint8
    assert labels.shape == (140,) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < NUM_CLASSES
    # Real pictures, not blank or saturated canvases: every image has some contrast.
    per_image_std = images.reshape(len(images), -1).std(axis=1)
    assert per_image_std.min() > 3.0
    assert images.min() < 60 and images.max() > 200

    small, small_labels = make_synthetic(10, seed=1, size=32)
    assert small.shape == (10, 32, 32) and small_labels.shape == (10,)


def test_render_face_single() -> None:
    face = render_face(3, np.random.default_rng(5), size=64)
    assert face.shape == (64, 64) and face.dtype == np.uint8
    again = render_face(3, np.random.default_rng(5), size=64)
    assert np.array_equal(face, again)


@pytest.mark.parametrize("n", [7, 100, 701])
def test_labels_balanced(n: int) -> None:
    _, labels = make_synthetic(n, seed=3, size=24)
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    assert counts.sum() == n
    assert counts.max() - counts.min() <= 1


def test_all_classes_present() -> None:
    _, labels = make_synthetic(NUM_CLASSES, seed=4)
    assert sorted(labels.tolist()) == list(range(NUM_CLASSES))


def test_deterministic_by_seed() -> None:
    a_img, a_lab = make_synthetic(21, seed=7)
    b_img, b_lab = make_synthetic(21, seed=7)
    assert a_img.tobytes() == b_img.tobytes()
    assert a_lab.tobytes() == b_lab.tobytes()


def test_seed_changes_images() -> None:
    a_img, a_lab = make_synthetic(21, seed=7)
    b_img, b_lab = make_synthetic(21, seed=8)
    assert not np.array_equal(a_img, b_img)
    # Even faces of the same class differ between seeds.
    a_first = a_img[np.argmax(a_lab == 0)]
    b_first = b_img[np.argmax(b_lab == 0)]
    assert np.abs(a_first.astype(int) - b_first.astype(int)).mean() > 5.0


def test_class_mean_images_differ() -> None:
    # At difficulty 0 the per-class mean is the canonical face: pure expression signal.
    images, labels = make_synthetic(70, seed=0, difficulty=0.0)
    x = images.astype(np.float64)
    means = [x[labels == k].mean(axis=0) for k in range(NUM_CLASSES)]
    for i, j in itertools.combinations(range(NUM_CLASSES), 2):
        diff = np.abs(means[i] - means[j])
        assert diff.mean() > 1.5, (EMOTIONS[i], EMOTIONS[j], diff.mean())
        assert diff.max() > 40.0, (EMOTIONS[i], EMOTIONS[j], diff.max())


def test_difficulty_scales_variation() -> None:
    stds = [_within_class_std(*make_synthetic(140, seed=2, difficulty=d)) for d in (0, 0.5, 1)]
    assert stds[0] < 1.0  # canonical faces: only the mirror orientation varies
    assert stds[0] < stds[1] < stds[2]
    assert stds[2] > 30.0


def test_horizontal_flip_keeps_label() -> None:
    # A flipped canonical face must look like some face of the same class, never another one.
    images, labels = make_synthetic(70, seed=1, difficulty=0.0)
    x = images.astype(np.float64)
    for k in range(NUM_CLASSES):
        flipped = x[labels == k][0][:, ::-1]
        dist = [
            np.abs(x[labels == j] - flipped).mean(axis=(1, 2)).min() for j in range(NUM_CLASSES)
        ]
        assert int(np.argmin(dist)) == k
        assert dist[k] < 1.0, (EMOTIONS[k], dist[k])
    # Disgust is one-sided, so it must occur in both orientations, and they must differ.
    disgust = x[labels == DISGUST]
    assert len({img.tobytes() for img in disgust}) == 2
    assert np.abs(disgust[0] - disgust[0][:, ::-1]).mean() > 1.0


def test_learnable_but_not_trivial() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    train_x, train_y = make_synthetic(1400, seed=11)
    test_x, test_y = make_synthetic(700, seed=12)  # different seed: unseen faces
    train_f, test_f = _hog(train_x), _hog(test_x)
    scaler = StandardScaler().fit(train_f)
    # One BLAS thread: on a busy shared CPU, threaded BLAS makes this tiny fit ~10x slower.
    with threadpool_limits(limits=1):
        clf = LogisticRegression(C=0.01, max_iter=300).fit(scaler.transform(train_f), train_y)
    accuracy = clf.score(scaler.transform(test_f), test_y)
    assert accuracy > 0.5, accuracy  # chance is 1/7
    assert accuracy < 0.97, accuracy  # nuisances must leave something for a CNN to learn


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be a positive integer"),
        ({"n": -5}, "n must be a positive integer"),
        ({"n": 2.5}, "n must be a positive integer"),
        ({"n": 7, "size": MIN_SIZE - 1}, "size must be an integer >= 24"),
        ({"n": 7, "difficulty": -0.1}, "difficulty must be a number in"),
        ({"n": 7, "difficulty": MAX_DIFFICULTY + 0.5}, "difficulty must be a number in"),
        ({"n": 7, "difficulty": float("nan")}, "difficulty must be a number in"),
    ],
)
def test_make_synthetic_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_synthetic(**kwargs)


@pytest.mark.parametrize("label", [-1, NUM_CLASSES, 3.0, True])
def test_render_face_rejects_bad_label(label: object) -> None:
    with pytest.raises(ValueError, match=r"label must be an integer in \[0, 6\]"):
        render_face(label, np.random.default_rng(0))  # type: ignore[arg-type]


def test_render_face_rejects_bad_size() -> None:
    with pytest.raises(ValueError, match="size must be an integer >= 24"):
        render_face(0, np.random.default_rng(0), size=16)

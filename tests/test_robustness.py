"""Corruptions and robustness evaluation, and the robustness benchmark against `fer`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fer_study import robustness as R
from fer_study.labels import NUM_CLASSES
from fer_study.synthetic import make_synthetic


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray]:
    return make_synthetic(24, seed=3)


@pytest.mark.parametrize("name", list(R.CORRUPTIONS))
def test_distance_from_clean_grows_with_severity(faces, name):
    x = faces[0]
    dist = [np.abs(R.corrupt(x, name, s).astype(float) - x).mean() for s in range(6)]
    assert dist[0] == 0.0
    assert all(b >= a for a, b in zip(dist, dist[1:])), dist  # monotone over the batch...
    per_image = np.stack([np.abs(R.corrupt(x, name, s).astype(float) - x).mean(axis=(1, 2))
                          for s in range(6)])
    assert (np.diff(per_image, axis=0) >= -1e-9).all()  # ...and for every single image
    assert dist[1] > 0 and dist[5] > 1.5 * dist[1]


@pytest.mark.parametrize("name", list(R.CORRUPTIONS))
def test_deterministic_dtype_range_and_identity(faces, name):
    x = faces[0]
    a, b = R.corrupt(x, name, 3, seed=7), R.corrupt(x, name, 3, seed=7)
    assert np.array_equal(a, b)
    assert a.dtype == np.uint8 and a.shape == x.shape
    clean = R.corrupt(x, name, 0)
    assert np.array_equal(clean, x) and clean is not x
    one = R.corrupt(x[0], name, 3, seed=7)  # a single (H, W) face
    assert one.shape == x[0].shape and one.dtype == np.uint8
    if name in ("gaussian_noise", "occlusion_patch"):  # the only random corruptions
        assert not np.array_equal(a, R.corrupt(x, name, 3, seed=8))


def test_corruptions_do_what_they_say(faces):
    x = faces[0]
    assert R.corrupt(x, "brightness", 5).mean() > x.mean() + 60
    assert R.corrupt(x, "gamma", 5).mean() < x.mean() - 30
    assert (R.corrupt(x, "contrast", 5).std(axis=(1, 2)) < 0.3 * x.std(axis=(1, 2))).all()
    eyes = R.corrupt(x, "occlusion_eyes", 5)
    assert (eyes[:, 17, 10:38] == 0).all() and np.array_equal(eyes[:, 40:], x[:, 40:])
    mouth = R.corrupt(x, "occlusion_mouth", 5)
    assert (mouth[:, 36, 12:36] == 0).all() and np.array_equal(mouth[:, :28], x[:, :28])
    assert set(R.GROUPS) == {"lighting", "blur", "noise", "occlusion"}


def test_bad_names_severities_and_images_raise(faces):
    x = faces[0]
    with pytest.raises(ValueError, match="valid: brightness, contrast, gamma"):
        R.corrupt(x, "fog", 1)
    for bad in (6, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=r"one of \[0, 1, 2, 3, 4, 5\]"):
            R.corrupt(x, "contrast", bad)
    with pytest.raises(ValueError, match="uint8"):
        R.corrupt(x.astype(np.float32), "contrast", 1)
    with pytest.raises(ValueError, match="valid:"):
        R.evaluate_robustness(lambda im: None, x, faces[1], corruptions=["fog"])


def _onehot(labels: np.ndarray) -> np.ndarray:
    return np.eye(NUM_CLASSES, dtype=np.float32)[labels]


def test_evaluate_robustness_with_a_callable(faces):
    x, y = faces
    oracle = lambda im: _onehot(np.resize(y, len(im)))  # noqa: E731 - ignores the pixels
    df = R.evaluate_robustness(oracle, x, y, corruptions=["gamma", "occlusion_eyes"],
                               severities=[1, 3, 5])
    assert len(df) == 6
    assert list(zip(df["corruption"], df["severity"])) == [
        ("gamma", 1), ("gamma", 3), ("gamma", 5),
        ("occlusion_eyes", 1), ("occlusion_eyes", 3), ("occlusion_eyes", 5)]
    assert (df["accuracy"] == 1.0).all() and df.attrs["clean_accuracy"] == 1.0
    assert R.relative_robustness(df) == 1.0

    # Predicts class 1 for bright images: brightening dark faces flips them all to 1.
    bright = lambda im: _onehot((im.mean(axis=(1, 2)) > 100).astype(int))  # noqa: E731
    dark = x // 3
    df = R.evaluate_robustness(bright, dark, np.zeros(len(x), int), corruptions=["brightness"])
    acc = df["accuracy"].to_numpy()
    assert df.attrs["clean_accuracy"] == 1.0 and acc[-1] == 0.0
    calls = []
    counted = lambda im: calls.append(len(im)) or bright(im)  # noqa: E731
    one_each = R.evaluate_robustness(counted, dark, np.zeros(len(x), int),
                                     corruptions=["brightness"], max_images_per_call=len(x))
    assert calls == [len(x)] * 6 and one_each.equals(df)  # chunking changes nothing
    assert (np.diff(acc) <= 0).all()
    summary = R.robustness_summary(df)
    assert summary.loc["brightness", 0] == 1.0
    assert summary.loc["brightness", "relative"] == pytest.approx(acc.mean())


def test_evaluate_robustness_on_a_tiny_keras_model(faces):
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((48, 48, 1))
    h = keras.layers.Rescaling(1 / 255.0)(inp)
    h = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(NUM_CLASSES, activation="softmax")(h))
    x, y = faces
    names = ["contrast", "gaussian_blur", "occlusion_patch"]
    df = R.evaluate_robustness(model, x, y, corruptions=names, severities=[2, 4], tta="flip")
    assert len(df) == len(names) * 2
    assert set(df.columns) >= {"corruption", "group", "severity", "param", "accuracy",
                               "relative_accuracy", "n"}
    assert df["n"].eq(len(x)).all() and df["accuracy"].between(0, 1).all()
    assert df.attrs["tta"] == "flip"
    with pytest.raises(ValueError, match="Keras"):
        R.evaluate_robustness(lambda im: _onehot(np.resize(y, len(im))), x, y, tta="flip")




def test_robustness_benchmark_compares_with_fer_in_our_label_order(tmp_path, monkeypatch):
    """The robustness benchmark end to end on a tiny csv: the shipped TFLite model and a
    stand-in for fer's classifier, whose labels come in fer's order and must be re-ordered
    to ours (it always says 'happy', so its accuracy is the share of Happy faces)."""
    from conftest import write_fer_csv

    from fer_study.benchmarks import robustness as bench
    from fer_study.data import random_subset
    from fer_study.labels import EMOTIONS

    rng = np.random.default_rng(0)
    n = 84
    labels = np.arange(n) % NUM_CLASSES
    images = rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8)
    csv = tmp_path / "fer2013.csv"
    write_fer_csv(csv, images, labels, ["PrivateTest"] * n)
    fer_names = {i: e.lower() for i, e in enumerate(reversed(EMOTIONS))}

    class FakeFER:
        def __init__(self, mtcnn=False):
            assert mtcnn is False

        @staticmethod
        def _get_labels():
            return fer_names

        def _classify_emotions(self, faces):
            assert faces.shape[1:3] == (64, 64) and -1.0 <= faces.min() <= faces.max() <= 1.0
            probs = np.full((len(faces), NUM_CLASSES), 0.1)
            probs[:, next(i for i, e in fer_names.items() if e == "happy")] = 0.4
            return probs

    monkeypatch.setattr(bench, "load_fer", lambda: (FakeFER, ["fake fer"]))
    out = tmp_path / "rob.json"
    assert bench.main(["--data", str(csv), "--images", "42", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["images"] == 42 and "--images 42" in res["command"]
    assert res["command"].startswith("python scripts/benchmark_robustness.py --data")
    assert res["fer"]["notes"] == ["fake fer"]
    happy_share = float(np.mean(labels[random_subset(n, 42, seed=0)]
                                == EMOTIONS.index("Happy")))
    assert res["fer"]["clean_accuracy"] == pytest.approx(happy_share)
    assert 0.0 <= res["ours"]["clean_accuracy"] <= 1.0
    assert set(res["ours"]["by_corruption"]) == set(R.CORRUPTIONS)
    assert [r["classifier"] for r in res["summary_table"]][1] == "fer package"
    # a classifier that ignores the image loses nothing to corruptions
    assert res["fer"]["relative_robustness"] == pytest.approx(1.0)
    assert res["ours_more_robust_than_fer"] == (res["ours"]["relative_robustness"] > 1.0)

    # notebook 06 reads the file beside the shipped model's own sweep, for the same data only
    from fer_study.data import load_dataset

    cmp = R.fer_comparison(out, load_dataset(csv).provenance())
    assert cmp["available"] and cmp["images"] == 42 and "--images 42" in cmp["reason"]
    fer = cmp["rows"]["fer"]
    assert fer["retention"] == pytest.approx(1.0)
    assert fer["mean corrupted accuracy"] == pytest.approx(happy_share)
    ours = cmp["rows"]["ours"]
    assert ours["mean corrupted accuracy"] == pytest.approx(
        res["ours"]["relative_robustness"] * res["ours"]["clean_accuracy"])
    assert set(ours) >= {f"{g} accuracy" for g in R.GROUPS}


def test_robustness_row_judges_absolute_accuracy_and_retention(faces):
    x, y = faces
    wrong_half = lambda im: _onehot(np.where(np.arange(len(im)) % 2 == 0,  # noqa: E731
                                             np.resize(y, len(im)), (np.resize(y, len(im)) + 1)
                                             % NUM_CLASSES))
    df = R.evaluate_robustness(wrong_half, x, y, corruptions=["gamma", "gaussian_noise"],
                               severities=[1, 5])
    row = R.robustness_row(df)
    assert row["clean accuracy"] == 0.5 and row["mean corrupted accuracy"] == 0.5
    assert row["retention"] == 1.0 == R.relative_robustness(df)
    assert row["lighting accuracy"] == 0.5 and row["noise accuracy"] == 0.5


def test_fer_comparison_only_for_the_same_data(tmp_path):
    entry = {"clean_accuracy": 0.6, "relative_robustness": 0.5,
             "by_corruption": {c: {"mean": 0.3, "relative": 0.5} for c in R.CORRUPTIONS}}
    f = tmp_path / "benchmark_robustness.json"
    f.write_text(json.dumps({"command": "python scripts/benchmark_robustness.py --data d.csv",
                             "images": 10, "split": "PrivateTest", "seed": 0,
                             "data": {"dataset": "FER2013", "sha256": "abc"},
                             "ours": entry, "fer": {**entry, "clean_accuracy": 0.7}}))
    same = R.fer_comparison(f, {"synthetic": False, "sha256": "abc"})
    assert same["available"] and same["rows"]["fer"]["clean accuracy"] == 0.7
    assert same["rows"]["ours"]["mean corrupted accuracy"] == pytest.approx(0.3)
    assert same["rows"]["ours"]["occlusion accuracy"] == pytest.approx(0.3)
    verdict = R.fer_verdict(same)
    assert "mean corrupted accuracy 0.300 vs 0.300 (not above fer)" in verdict
    assert "retention 0.500 vs 0.500" in verdict and "no corruption group" in verdict
    synthetic = R.fer_comparison(f, {"synthetic": True})
    assert not synthetic["available"] and "synthetic" in synthetic["reason"]
    assert synthetic["rows"] == {} and "synthetic" in R.fer_verdict(synthetic)
    other = R.fer_comparison(f, {"synthetic": False, "sha256": "xyz"})
    assert not other["available"] and "other data" in other["reason"]
    missing = R.fer_comparison(None, {"synthetic": False, "sha256": "abc"})
    assert not missing["available"] and "benchmark_robustness.py" in missing["reason"]

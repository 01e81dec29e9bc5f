"""The one-call API, probability calibration, video analytics and the default pipeline."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from realtime_fixtures import compose, load_head, make_models  # noqa: E402

from fer_study import EmotionRecognizer  # noqa: E402
from fer_study.labels import EMOTIONS, NUM_CLASSES  # noqa: E402
from fer_study.realtime import (  # noqa: E402
    CSV_HEADER,
    Box,
    Calibration,
    Pipeline,
    RealtimeError,
    YuNetDetector,
    classify,
    load_classifier,
    main,
)
from fer_study.realtime.analytics import track_summaries  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def head() -> np.ndarray:
    return load_head()


@pytest.fixture(scope="module")
def recognizer(models) -> EmotionRecognizer:
    return EmotionRecognizer(model=models[2])


def _softmax_t(p: np.ndarray, t: float) -> np.ndarray:
    z = np.log(p) / t
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- calibration


def test_temperature_from_the_sidecar_rescales_probabilities(models, tmp_path):
    tfl = tmp_path / "m.tflite"
    tfl.write_bytes(models[2].read_bytes())
    x = np.random.default_rng(0).uniform(0, 255, (5, 48, 48, 1)).astype(np.float32)
    plain = load_classifier(tfl)
    assert plain.calibration == Calibration() and not plain.calibration.calibrated
    raw = plain.predict(x)
    meta = {"model": "m", "calibration": {"temperature": 0.5, "fitted_on": "PublicTest"}}
    tfl.with_suffix(".json").write_text(json.dumps(meta))
    clf = load_classifier(tfl)
    assert clf.calibration.describe() == {"calibrated": True, "temperature": 0.5,
                                          "fitted_on": "PublicTest"}
    got = clf.predict(x)
    np.testing.assert_allclose(got, _softmax_t(raw, 0.5), atol=1e-5)
    assert (got.argmax(1) == raw.argmax(1)).all() and (got.max(1) > raw.max(1)).all()
    assert clf.input_size == 48 and clf.num_threads == 1  # the wrapped classifier's
    # A sidecar without the key is today's behaviour; a bad temperature is an error.
    tfl.with_suffix(".json").write_text(json.dumps({"model": "m"}))
    np.testing.assert_array_equal(load_classifier(tfl).predict(x), raw)
    tfl.with_suffix(".json").write_text(json.dumps({"calibration": {"temperature": 0}}))
    with pytest.raises(RealtimeError, match="positive number"):
        load_classifier(tfl)


def test_the_shipped_model_reads_its_own_metadata(monkeypatch, tmp_path):
    assert classify.sidecar_path(None) == classify.DEFAULT_MODEL_META
    assert classify.sidecar_path(classify.DEFAULT_TFLITE_MODEL) == classify.DEFAULT_MODEL_META
    meta = tmp_path / "default_model.json"
    meta.write_text(json.dumps({"calibration": {"temperature": 2.0, "fitted_on": "PublicTest"}}))
    monkeypatch.setattr(classify, "DEFAULT_MODEL_META", meta)
    rec = EmotionRecognizer()
    assert rec.calibrated and rec.calibration.temperature == 2.0


# --------------------------------------------------------------------------- one-call API


def test_detect_emotions_takes_paths_arrays_pil_and_batches(recognizer, head, tmp_path):
    from PIL import Image

    frame = compose(head, [(200, 80)])  # BGR, one face ~120 px
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), frame)
    (face,) = recognizer.detect_emotions(frame)
    assert set(face) == {"box", "score", "emotions", "dominant_emotion", "confidence"}
    assert list(face["emotions"]) == list(EMOTIONS)
    assert sum(face["emotions"].values()) == pytest.approx(1.0, abs=1e-4)
    assert face["dominant_emotion"] == max(face["emotions"], key=face["emotions"].get)
    x, y, w, h = face["box"]
    assert 90 < w < 170 and 220 < x + w / 2 < 360  # the face, not the frame
    rgb = np.ascontiguousarray(frame[:, :, ::-1])
    same = [recognizer.detect_emotions(path), recognizer.detect_emotions(rgb, color="rgb"),
            recognizer.detect_emotions(Image.fromarray(rgb)),
            recognizer.detect_emotions(rgb.astype(np.float32) / 255.0, color="rgb")]
    for other in same:
        assert other[0]["box"] == face["box"]
        assert other[0]["dominant_emotion"] == face["dominant_emotion"]
    batch = recognizer.detect_emotions([frame, np.zeros((120, 160, 3), np.uint8)])
    assert [len(r) for r in batch] == [1, 0]
    stacked = recognizer.detect_emotions(np.stack([frame, frame]))
    assert [r[0]["box"] for r in stacked] == [face["box"]] * 2
    gray48 = np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8)
    (whole,) = recognizer.detect_emotions(gray48, whole_image=True)
    assert whole["box"] == [0, 0, 48, 48]
    with pytest.raises(RealtimeError, match="not found"):
        recognizer.detect_emotions(tmp_path / "missing.jpg")
    with pytest.raises(RealtimeError, match="color"):
        recognizer.detect_emotions(frame, color="hsv")


def test_top_emotion_and_analyze(recognizer, head):
    frame = compose(head, [(20, 200), (330, 60)], scale=1.0)
    small = cv2.resize(head, None, fx=0.6, fy=0.6)
    frame[10 : 10 + small.shape[0], 20 : 20 + small.shape[1]] = small
    faces = recognizer.detect_emotions(frame)
    assert len(faces) == 3
    largest = max(faces, key=lambda f: f["box"][2] * f["box"][3])
    assert recognizer.top_emotion(frame) == (largest["dominant_emotion"],
                                             pytest.approx(largest["confidence"]))
    assert recognizer.top_emotion(np.zeros((100, 100, 3), np.uint8)) == (None, None)
    records = recognizer.analyze(frame)
    assert len(records) == 3 and set(records[0]) == {"emotion", "dominant_emotion", "region",
                                                     "face_confidence"}
    assert sum(records[0]["emotion"].values()) == pytest.approx(100.0, abs=1e-2)
    boxes = sorted([r["region"]["x"], r["region"]["y"], r["region"]["w"], r["region"]["h"]]
                   for r in records)
    assert boxes == sorted(f["box"] for f in faces)


def test_analyze_video_returns_one_row_per_face_per_frame(recognizer, head, tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for t in range(8):
        writer.write(compose(head, [(150 + 4 * t, 80)] + ([(420, 200)] if t >= 4 else []),
                             scale=1.0))
    writer.release()
    df = recognizer.analyze_video(path, output=tmp_path / "annotated.avi")
    assert isinstance(df, pd.DataFrame) and list(df.columns) == list(CSV_HEADER)
    assert len(df) == 8 + 4 and df["frame"].max() == 7
    assert df.groupby("track_id")["frame"].count().sort_values().tolist() == [4, 8]
    np.testing.assert_allclose(df[[f"prob_{e}" for e in EMOTIONS]].sum(axis=1), 1.0,
                               atol=1e-4)
    assert cv2.VideoCapture(str(tmp_path / "annotated.avi")).read()[0]


def test_track_summary_counts_the_labels_shown():
    rows = []
    for i, label in enumerate(["Happy"] * 6 + ["Sad"] * 3 + ["Happy"]):
        p = np.full(NUM_CLASSES, 0.05)
        p[EMOTIONS.index(label)] = 0.7
        rows.append({"frame": i, "time_s": i / 10, "track_id": 3, "smoothed_label": label,
                     **{f"prob_{e}": v for e, v in zip(EMOTIONS, p, strict=True)}})
    rows.append({**rows[0], "track_id": 4, "smoothed_label": "Fear"})
    (a, b) = track_summaries(pd.DataFrame(rows))
    assert (a["track_id"], a["frames"], a["dominant_emotion"]) == (3, 10, "Happy")
    assert a["share_of_time"]["Happy"] == 0.7 and a["share_of_time"]["Sad"] == 0.3
    assert (a["first_s"], a["last_s"]) == (0.0, 0.9)
    assert b["dominant_emotion"] == "Fear" and b["frames"] == 1


# --------------------------------------------------------------------------- defaults


def test_predict_with_no_flags_finds_an_80px_face(head, tmp_path, capsys):
    """The issue's first-user check: a 640x480 photo with one ~80 px face (a person a couple
    of metres from a webcam), `predict` with the shipped detector and model, no options."""
    frame = np.full((480, 640, 3), 120, np.uint8)
    frame[:, :, 0] = np.linspace(80, 200, 640, dtype=np.uint8)[None, :]
    s = 80 / 95
    h = cv2.resize(head, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    frame[150 : 150 + h.shape[0], 260 : 260 + h.shape[1]] = h
    truth = Box(260 + round(68 * s), 150 + round(48 * s), 80, 96)
    img = tmp_path / "person.jpg"
    cv2.imwrite(str(img), frame)
    assert main(["predict", str(img)]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["status"] == "ok" and len(record["faces"]) == 1
    assert Box(*record["faces"][0]["box"]).iou(truth) > 0.5
    assert record["faces"][0]["label"] in EMOTIONS and record["calibrated"] in (True, False)


def test_yunet_detect_every_follows_faces_between_full_scans(models, head):
    clf = load_classifier(models[2])
    pipe = Pipeline(YuNetDetector(), clf, detect_every=4, draw=False)
    full = Pipeline(YuNetDetector(), clf, draw=False)
    for t in range(12):
        positions = [(150 + 3 * t, 80)] + ([(420, 200)] if t >= 5 else [])
        frame = compose(head, positions, scale=0.8)
        faces, reference = pipe.process(frame), full.process(frame.copy())
        if t < 5:
            assert len(faces) == 1 and faces[0].track_id == 0
            assert faces[0].box.iou(reference[0].box) > 0.6
        elif t >= 8:  # the face that appeared at frame 5 is found by the full scan at 8
            assert len(faces) == 2 and {f.track_id for f in faces} == {0, 1}
    assert pipe.full_scans == 3


def test_the_readme_api_example_runs(capsys):
    from fer_study.provenance import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    block = readme.split("<!-- api-example:begin -->")[1].split("<!-- api-example:end -->")[0]
    code = block.split("```python")[1].split("```")[0]
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    label, calibrated, n_faces, batch = capsys.readouterr().out.split(" ", 3)
    assert label in EMOTIONS and calibrated in ("True", "False")
    assert n_faces == "1" and batch.strip() == "[1, 1]"  # the astronaut, at two sizes

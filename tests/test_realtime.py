"""Real-time pipeline: detectors, preprocessing, tracking, overlay, and the CLI commands."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from realtime_fixtures import compose, load_head, make_models  # noqa: E402

from fer_study import realtime  # noqa: E402
from fer_study.labels import EMOTIONS, NUM_CLASSES  # noqa: E402
from fer_study.realtime import (  # noqa: E402
    Box,
    FaceResult,
    FaceTracker,
    HaarDetector,
    KerasClassifier,
    Pipeline,
    RealtimeError,
    classify,
    crop_faces,
    detect,
    draw_faces,
    io,
    main,
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def head() -> np.ndarray:
    return load_head()


# --------------------------------------------------------------------------- units


def test_box_iou():
    a = Box(0, 0, 10, 10)
    assert a.iou(a) == 1.0
    assert a.iou(Box(20, 20, 5, 5)) == 0.0
    assert a.iou(Box(5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_crop_faces_square_margin_and_borders():
    gray = np.zeros((100, 200), np.uint8)
    gray[20:60, 50:90] = 200  # a bright 40x40 "face"
    crops = crop_faces(gray, [Box(50, 20, 40, 40)], size=48, margin=0.0)
    assert crops.shape == (1, 48, 48, 1) and crops.dtype == np.float32
    assert crops.min() == 200  # exactly the face region
    with_margin = crop_faces(gray, [Box(50, 20, 40, 40)], size=48, margin=0.25)
    assert with_margin[0, 0, 0, 0] == 0 and with_margin[0, 24, 24, 0] == 200
    # A box hanging over the frame corner is padded by replication, never clipped away.
    corner = crop_faces(gray, [Box(-10, -10, 30, 30), Box(190, 95, 20, 20)], size=48)
    assert corner.shape == (2, 48, 48, 1) and np.isfinite(corner).all()
    assert crop_faces(gray, [], size=48).shape == (0, 48, 48, 1)


def test_crop_for_small_models_is_the_centre_of_the_48px_face():
    face = np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8)
    crop = crop_faces(face, [Box(0, 0, 48, 48)], size=40, margin=0.0)
    np.testing.assert_array_equal(crop[0, :, :, 0], face[4:44, 4:44])  # as in training
    big = crop_faces(face, [Box(0, 0, 48, 48)], size=64, margin=0.0)
    assert big.shape == (1, 64, 64, 1)  # larger models: the whole face, upsampled


def test_tracker_keeps_ids_and_smooths():
    tr = FaceTracker(alpha=0.5, max_missed=1)
    p1 = np.eye(NUM_CLASSES, dtype=np.float32)[[0, 3]]
    p2 = np.eye(NUM_CLASSES, dtype=np.float32)[[6, 3]]
    t = tr.update([Box(0, 0, 50, 50), Box(200, 0, 50, 50)], p1)
    ids = [x.id for x in t]
    assert ids[0] != ids[1]
    # Same faces, moved a little and listed in the other order.
    t = tr.update([Box(204, 2, 50, 50), Box(3, 1, 50, 50)], p2[::-1])
    assert [x.id for x in t] == ids[::-1]
    np.testing.assert_allclose(t[1].probs, 0.5 * p1[0] + 0.5 * p2[0])
    t = tr.update([Box(400, 300, 50, 50)], p1[:1])  # a new face; the old ones are missed
    assert t[0].id not in ids
    tr.update([], np.zeros((0, NUM_CLASSES)))
    assert len(tr.tracks) == 1  # old ones dropped after max_missed; new one kept one frame


def test_haar_finds_one_and_three_faces(head):
    det = HaarDetector()
    assert det.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    one = det.detect(compose(head, [(200, 80)]))
    assert len(one) == 1
    b = one[0]
    # The astronaut's face is ~95 px at scale 1 -> ~120 px here, near (200+55, 80+50).
    assert 90 < b.w < 170 and 220 < b.x + b.w / 2 < 360 and 110 < b.y + b.h / 2 < 250
    three = det.detect(compose(head, [(4, 60), (216, 110), (428, 60)], scale=1.2))
    assert len(three) == 3
    assert sorted(int(b.x) // 200 for b in three) == [0, 1, 2]


def test_draw_faces_marks_the_frame():
    frame = np.zeros((200, 300, 3), np.uint8)
    probs = np.full(NUM_CLASSES, 0.05, np.float32)
    probs[3] = 0.7
    draw_faces(frame, [FaceResult(Box(50, 50, 80, 80), probs, probs)])
    assert frame[50, 50:130].any() and frame[130, 50:130].any()  # box edges
    assert frame[50:130, 140:230].any()  # probability bars to the right
    assert not frame[150:, :40].any()  # nothing drawn far away


def test_pipeline_times_each_stage(models, head):
    clf = realtime.load_classifier(models[2])
    pipe = Pipeline(HaarDetector(), clf)
    for dx in range(0, 12, 3):
        faces = pipe.process(compose(head, [(200 + dx, 80)]))
        assert len(faces) == 1 and faces[0].track_id == 0  # one track throughout
        np.testing.assert_allclose(faces[0].probs.sum(), 1.0, atol=1e-5)
    assert all(len(pipe.timings[s]) == 4 for s in (*realtime.STAGES, "total"))
    summary = pipe.timing_summary()
    assert summary["frames"] == 4 and summary["fps"] > 0
    assert summary["total_ms"] >= summary["detect_ms"] > 0
    pipe.reset_timings()
    assert pipe.timing_summary()["frames"] == 0


class CountingDetector:
    """Wraps a detector and records the size of every image it is asked to scan."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[tuple[int, int]] = []

    def detect(self, frame_bgr, gray=None):
        self.calls.append(frame_bgr.shape[:2])
        return self.inner.detect(frame_bgr, gray=gray)


def test_detect_every_scans_around_known_faces(models, head):
    clf = realtime.load_classifier(models[2])
    det = CountingDetector(HaarDetector())
    pipe = Pipeline(det, clf, detect_every=4, draw=False)
    full = Pipeline(HaarDetector(), clf, draw=False)
    for t in range(12):
        positions = [(150 + 2 * t, 80)] + ([(420, 120)] if t >= 5 else [])
        frame = compose(head, positions, scale=1.0 if t >= 5 else 1.25)
        faces = pipe.process(frame)
        reference = full.process(frame.copy())
        if t < 5:
            assert len(faces) == 1 and faces[0].track_id == 0
            # Region detection finds the same box as a full scan, in frame coordinates.
            assert faces[0].box.iou(reference[0].box) > 0.7
        elif t >= 8:  # the face that appeared at frame 5 is found by the full scan at 8
            assert len(faces) == 2
    assert pipe.full_scans == 3  # frames 0, 4 and 8
    small = [c for c in det.calls if c != (480, 640)]
    assert small and all(h < 480 and w < 640 for h, w in small)


def test_keras_classifier_matches_model(models):
    model, keras_path, tflite_path = models
    clf = KerasClassifier(keras_path)
    assert clf.input_size == 48
    x = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype(np.float32)
    got = clf.predict(x)  # padded to a batch of 4 internally
    assert got.shape == (3, NUM_CLASSES)
    np.testing.assert_allclose(got, np.asarray(model(x)), atol=1e-5)
    np.testing.assert_allclose(realtime.load_classifier(tflite_path).predict(x), got, atol=1e-4)
    assert clf.predict(x[:0]).shape == (0, NUM_CLASSES)


def test_load_classifier_errors(tmp_path, monkeypatch):
    with pytest.raises(RealtimeError, match="not found"):
        realtime.load_classifier(tmp_path / "missing.tflite")
    other = tmp_path / "model.onnx"
    other.write_bytes(b"x")
    with pytest.raises(RealtimeError, match="unsupported"):
        realtime.load_classifier(other)
    monkeypatch.setattr(classify, "DEFAULT_TFLITE_MODEL", tmp_path / "default_model.tflite")
    monkeypatch.setattr(classify, "DEFAULT_KERAS_MODEL", tmp_path / "default_model.keras")
    with pytest.raises(RealtimeError, match="default model is missing.*--model"):
        realtime.load_classifier(None)


# --------------------------------------------------------------------------- YuNet


def test_yunet_is_shipped_and_checked_by_hash(tmp_path, monkeypatch):
    monkeypatch.delenv(realtime.YUNET_ENV, raising=False)
    assert realtime.resolve_yunet_model() == detect.YUNET_ASSET
    assert hashlib.sha256(detect.YUNET_ASSET.read_bytes()).hexdigest() == realtime.YUNET_SHA256
    licence = detect.YUNET_ASSET.with_suffix(".LICENSE").read_text()
    assert "MIT License" in licence and realtime.YUNET_SHA256 in licence
    damaged = tmp_path / realtime.YUNET_FILENAME
    damaged.write_bytes(detect.YUNET_ASSET.read_bytes()[:-10])
    monkeypatch.setattr(detect, "YUNET_ASSET", damaged)
    with pytest.raises(RealtimeError, match="expected 8f2383e4.*damaged install"):
        realtime.YuNetDetector()
    monkeypatch.setattr(detect, "YUNET_ASSET", tmp_path / "gone.onnx")
    with pytest.raises(RealtimeError, match="missing.*--detector haar"):
        realtime.make_pipeline(model=tmp_path / "never_loaded.tflite")


def test_yunet_explicit_paths_must_exist(tmp_path, monkeypatch):
    monkeypatch.delenv(realtime.YUNET_ENV, raising=False)
    with pytest.raises(RealtimeError, match="not found"):
        realtime.resolve_yunet_model(tmp_path / "none.onnx")
    monkeypatch.setenv(realtime.YUNET_ENV, str(tmp_path / "env.onnx"))
    with pytest.raises(RealtimeError, match="FER_STUDY_YUNET"):
        realtime.resolve_yunet_model()
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model")
    monkeypatch.setenv(realtime.YUNET_ENV, str(garbage))
    assert realtime.resolve_yunet_model() == garbage
    with pytest.raises(RealtimeError, match="cannot load YuNet"):
        realtime.YuNetDetector()
    with pytest.raises(RealtimeError, match="unknown detector"):
        realtime.make_detector("mtcnn")


def test_yunet_finds_small_faces_haar_misses(head):
    """Faces of ~60, ~48 and ~40 px in 640x480 (people a few metres from a webcam): YuNet
    (the default) finds all three, the Haar default (faces >= 96 px) none."""
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[:, :, 2] = np.linspace(60, 180, 640, dtype=np.uint8)[None, :]
    truth = []
    for (x, y), face_px in zip([(60, 200), (300, 120), (500, 300)], (60, 48, 40), strict=True):
        s = face_px / 95  # the astronaut's face is ~95 px wide in `head`
        h = cv2.resize(head, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        frame[y : y + h.shape[0], x : x + h.shape[1]] = h
        truth.append(Box(x + round(68 * s), y + round(48 * s), face_px, round(1.2 * face_px)))
    found = realtime.make_detector().detect(frame)
    assert len(found) == 3
    assert all(max(t.iou(b) for b in found) > 0.4 for t in truth)
    assert all(0.0 < b.score <= 1.0 for b in found)
    assert HaarDetector().detect(frame) == []


# --------------------------------------------------------------------------- CLI: video


@pytest.fixture(scope="module")
def test_video(tmp_path_factory, head) -> Path:
    """20 frames of 640x480 with the astronaut's face drifting a few pixels per frame."""
    path = tmp_path_factory.mktemp("video") / "in.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 480))
    assert writer.isOpened()
    for t in range(20):
        writer.write(compose(head, [(180 + 3 * t, 70 + (t % 4))]))
    writer.release()
    return path


def test_video_command_writes_annotated_video_and_csv(models, test_video, tmp_path):
    out, table = tmp_path / "out.mp4", tmp_path / "faces.csv"
    rc = main(["video", str(test_video), "--output", str(out), "--csv", str(table),
               "--model", str(models[2])])  # fmt: skip
    assert rc == 0
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 20
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(realtime.CSV_HEADER)
    assert {f"prob_{e}" for e in EMOTIONS} <= set(rows[0])
    frames = [int(r["frame"]) for r in rows]
    assert len(set(frames)) >= 16  # a face in most frames
    assert len({(r["frame"], r["face"]) for r in rows}) == len(rows)  # one row per face
    assert all(0 <= f < 20 for f in frames)
    for r in rows:
        probs = [float(r[f"prob_{e}"]) for e in EMOTIONS]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert r["label"] == EMOTIONS[int(np.argmax(probs))]
        assert r["smoothed_label"] in EMOTIONS
    assert len({r["track_id"] for r in rows}) == 1  # the drifting face stays one track
    # Beside the CSV: the face's emotion timeline and the summary, from the same rows.
    analytics = tmp_path / "faces_analytics"
    summary = json.loads((analytics / "summary.json").read_text())
    (track,) = summary["per_track"]
    assert track["track_id"] == int(rows[0]["track_id"]) and track["frames"] == len(rows)
    assert sum(track["share_of_time"].values()) == pytest.approx(1.0, abs=1e-3)
    shown = [r["smoothed_label"] for r in rows]
    assert track["share_of_time"][track["dominant_emotion"]] == pytest.approx(
        max(shown.count(e) for e in EMOTIONS) / len(rows), abs=1e-3)
    for png in (track["plot"], "overview.png"):
        assert cv2.imread(str(analytics / png)) is not None
    assert (analytics / "summary.csv").read_text().startswith("track_id,")


def test_video_errors_exit_2(models, tmp_path, capsys):
    rc = main(["video", str(tmp_path / "missing.mp4"), "--csv", str(tmp_path / "a.csv")])
    assert rc == 2 and "not found" in capsys.readouterr().err
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4096))
    rc = main(["video", str(junk), "--csv", str(tmp_path / "a.csv"), "--model", str(models[2])])
    assert rc == 2 and "cannot decode video" in capsys.readouterr().err
    rc = main(["video", str(junk)])
    assert rc == 2 and "--output" in capsys.readouterr().err
    rc = main(["video", str(junk), "--csv", "x.csv", "--model", str(tmp_path / "no.tflite")])
    assert rc == 2 and "model file not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- CLI: predict


@pytest.fixture
def image_dir(tmp_path, head) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    cv2.imwrite(str(d / "face.jpg"), compose(head, [(200, 80)]))
    smooth = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    cv2.imwrite(str(d / "noface.png"), smooth)
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" + os.urandom(64))
    (d / "notes.txt").write_text("not an image; ignored by extension")
    return d


def test_predict_folder_reports_every_image(models, image_dir, tmp_path, capsys):
    out = tmp_path / "pred.json"
    assert main(["predict", str(image_dir), "--model", str(models[2]), "--output", str(out)]) == 0
    records = {Path(r["file"]).name: r for r in json.loads(out.read_text())}
    assert set(records) == {"face.jpg", "noface.png", "corrupt.jpg"}
    assert records["face.jpg"]["status"] == "ok" and len(records["face.jpg"]["faces"]) == 1
    face = records["face.jpg"]["faces"][0]
    assert sum(face["probs"].values()) == pytest.approx(1.0, abs=1e-4)
    assert face["label"] in EMOTIONS and len(face["box"]) == 4
    assert records["noface.png"]["status"] == "no_face" and records["noface.png"]["faces"] == []
    assert records["corrupt.jpg"]["status"] == "unreadable" and records["corrupt.jpg"]["error"]
    assert "1 with faces, 1 without, 1 unreadable" in capsys.readouterr().err


def test_predict_csv_to_stdout(models, image_dir, capsys):
    assert main(["predict", str(image_dir), "--format", "csv", "--model", str(models[2])]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [r["status"] for r in rows] == ["unreadable", "ok", "no_face"]  # sorted by name
    ok = rows[1]
    assert sum(float(ok[f"prob_{e}"]) for e in EMOTIONS) == pytest.approx(1.0, abs=1e-4)
    assert rows[0]["error"] and rows[2]["prob_Happy"] == ""


def test_predict_whole_image_and_errors(models, tmp_path, capsys):
    img = tmp_path / "fer.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8))
    assert main(["predict", str(img), "--whole-image", "--model", str(models[2])]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["status"] == "ok" and record["faces"][0]["box"] == [0, 0, 48, 48]
    assert main(["predict", str(tmp_path / "nothing_here")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty")]) == 2
    assert "no image files" in capsys.readouterr().err


# --------------------------------------------------------------------------- CLI: webcam


def test_gui_detection_reads_the_build_information(monkeypatch):
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  GUI:   NONE\n")
    assert not io.gui_available()
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  GUI:   GTK3\n    GTK+: YES\n")
    assert io.gui_available()


def test_webcam_without_gui_suggests_opencv_python(monkeypatch, capsys):
    monkeypatch.setattr(io, "gui_available", lambda: False)
    assert main(["webcam"]) == 2
    err = capsys.readouterr().err
    assert "pip install" in err and "opencv-python" in err and "video" in err


def test_webcam_missing_camera(monkeypatch, models, capsys):
    with pytest.raises(RealtimeError, match="cannot open camera 99"):
        io.open_camera(99)
    monkeypatch.setattr(io, "gui_available", lambda: True)
    assert main(["webcam", "--camera", "99", "--model", str(models[2])]) == 2
    assert "cannot open camera 99" in capsys.readouterr().err


class FakeCamera:
    def __init__(self, frames: list[np.ndarray]):
        self.frames = list(frames)
        self.released = False

    def read(self):
        return (True, self.frames.pop(0).copy()) if self.frames else (False, None)

    def release(self):
        self.released = True


def test_webcam_loop_shows_annotated_frames_until_q(monkeypatch, models, head):
    camera = FakeCamera([compose(head, [(200 + 4 * i, 80)]) for i in range(5)])
    shown: list[np.ndarray] = []
    keys = iter([-1, -1, ord("q")])
    monkeypatch.setattr(io, "gui_available", lambda: True)
    monkeypatch.setattr(io, "open_camera", lambda index: camera)
    monkeypatch.setattr(cv2, "imshow", lambda name, frame: shown.append(frame.copy()))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: next(keys))
    monkeypatch.setattr(cv2, "getWindowProperty", lambda *args: 1.0)
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    assert main(["webcam", "--model", str(models[2])]) == 0
    assert len(shown) == 3 and camera.released  # stopped at the 'q' key
    plain = compose(head, [(200, 80)])
    assert (shown[0] != plain).any()  # box, label, bars and FPS were drawn


def test_webcam_camera_that_stops_is_an_error(monkeypatch, models, capsys):
    monkeypatch.setattr(io, "gui_available", lambda: True)
    monkeypatch.setattr(io, "open_camera", lambda index: FakeCamera([]))
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    assert main(["webcam", "--camera", "1", "--model", str(models[2])]) == 2
    assert "camera 1 stopped delivering frames" in capsys.readouterr().err

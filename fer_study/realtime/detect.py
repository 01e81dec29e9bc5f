"""Face detectors: YuNet (the default, shipped in the package) and OpenCV's Haar cascade.

Both implement ``detect(frame_bgr, gray=None) -> list[Box]`` in full-frame pixels; YuNet
also scans a region around a known face cheaply (``detect_near``), which the pipeline's
``detect_every`` mode uses between full-frame scans.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from fer_study.data import sha256_file
from fer_study.export import ASSETS_DIR
from fer_study.realtime.faces import Box, RealtimeError

DETECTORS: tuple[str, ...] = ("yunet", "haar")
DEFAULT_DETECTOR = "yunet"
YUNET_FILENAME = "face_detection_yunet_2023mar.onnx"
YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/" + YUNET_FILENAME
)
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
YUNET_ENV = "FER_STUDY_YUNET"
YUNET_ASSET = ASSETS_DIR / YUNET_FILENAME  # shipped; MIT licence notice beside it
# Frames are shrunk to YUNET_WIDTH before YuNet sees them (its cost grows with the area;
# 320 keeps the pipeline >= 10x fer's speed), and detections scoring under YUNET_SCORE are
# dropped: the highest threshold whose recall matches fer's on PublicTest scenes, see
# reports/results/benchmark_realtime_tuning.json (fer_study.benchmarks.tuning).
YUNET_WIDTH = 320
YUNET_SCORE = 0.35


class FaceDetector(Protocol):
    """Anything with ``detect(frame_bgr) -> list[Box]``."""

    def detect(self, frame_bgr: np.ndarray, gray: np.ndarray | None = None) -> list[Box]: ...


class HaarDetector:
    """OpenCV's Viola-Jones frontal-face cascade, tuned for speed.

    The cascade cannot find faces smaller than its 24x24 window, and most of its cost is
    spent at the smallest scales.  So instead of scanning the full frame with ``minSize``,
    the frame is shrunk until ``min_face`` pixels become one window.  At 640x480 with
    ``min_face=96`` the cascade runs on 160x120, ~10x faster than the usual
    full-resolution scan (``scaleFactor=1.1, minSize=50``), but it ignores every face
    under 96 px (a person more than about a metre from a webcam); ``min_face=50`` covers
    the range of that usual scan at ~5x the cost.  ``scale_factor=1.2`` would halve the
    time again but misses faces falling between pyramid levels, and ``min_neighbors=4``
    lost ~2% of test positions.  ``score`` is the number of merged raw detections (higher
    is surer); the cascade has no calibrated confidence.
    """

    def __init__(
        self,
        min_face: int = 96,
        scale_factor: float = 1.1,
        min_neighbors: int = 3,
        cascade_path: str | os.PathLike[str] | None = None,
    ) -> None:
        path = cascade_path or cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise RealtimeError(f"cannot load Haar cascade {path}")
        self.window = int(self._cascade.getOriginalWindowSize()[0])
        self.min_face = max(int(min_face), self.window)
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors

    def detect(self, frame_bgr: np.ndarray, gray: np.ndarray | None = None) -> list[Box]:
        """Faces in a BGR (or grayscale) frame, in full-frame coordinates."""
        if gray is None:
            gray = frame_bgr if frame_bgr.ndim == 2 else cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        scale = self.window / self.min_face
        small = gray
        if scale < 1.0:
            small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        else:
            scale = 1.0
        rects, neighbours = self._cascade.detectMultiScale2(
            small,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.window, self.window),
        )
        inv = 1.0 / scale
        return [
            Box(int(x * inv), int(y * inv), int(w * inv), int(h * inv), float(n))
            for (x, y, w, h), n in zip(rects, np.ravel(neighbours), strict=True)
        ]


def roi_around(box: Box, shape: tuple[int, ...], grow: float = 0.5) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of ``box`` grown by ``grow`` x its longer side per side, clipped."""
    pad = grow * max(box.w, box.h)
    x0, y0 = max(0, int(box.x - pad)), max(0, int(box.y - pad))
    x1, y1 = min(shape[1], int(box.x + box.w + pad)), min(shape[0], int(box.y + box.h + pad))
    return x0, y0, max(x0 + 1, x1), max(y0 + 1, y1)


def detect_near(
    detector: FaceDetector, frame_bgr: np.ndarray, gray: np.ndarray | None, box: Box
) -> list[Box]:
    """Faces in the region around ``box``, in frame coordinates (any detector)."""
    own = getattr(detector, "detect_near", None)
    if own is not None:
        return own(frame_bgr, gray, box)
    x0, y0, x1, y1 = roi_around(box, frame_bgr.shape)
    roi_gray = None if gray is None else gray[y0:y1, x0:x1]
    found = detector.detect(frame_bgr[y0:y1, x0:x1], gray=roi_gray)
    return [Box(b.x + x0, b.y + y0, b.w, b.h, b.score) for b in found]


def dedupe_boxes(boxes: list[Box], iou: float = 0.5) -> list[Box]:
    """Drop boxes overlapping a higher-scored one (two regions can find the same face)."""
    kept: list[Box] = []
    for b in sorted(boxes, key=lambda b: -b.score):
        if all(b.iou(k) < iou for k in kept):
            kept.append(b)
    return kept


def resolve_yunet_model(model_path: str | os.PathLike[str] | None = None) -> Path:
    """The YuNet ONNX file: the argument, else ``$FER_STUDY_YUNET``, else the shipped one.

    The shipped file is checked against :data:`YUNET_SHA256` (a truncated or altered
    install fails loudly instead of detecting nothing); explicit paths are trusted as
    given, since another YuNet build may be wanted on purpose.  Nothing is downloaded.
    """
    for given, origin in ((model_path, "--yunet-model"), (os.environ.get(YUNET_ENV), YUNET_ENV)):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise RealtimeError(f"YuNet model not found at {path} (from {origin})")
            return path
    how = (
        f"reinstall fer-study, or download {YUNET_URL} (sha256 {YUNET_SHA256}) and point "
        f"${YUNET_ENV} or --yunet-model at it; --detector haar needs no file"
    )
    if not YUNET_ASSET.is_file():
        raise RealtimeError(f"the shipped YuNet model {YUNET_ASSET} is missing: {how}")
    digest = sha256_file(YUNET_ASSET)
    if digest != YUNET_SHA256:
        raise RealtimeError(
            f"the shipped YuNet model {YUNET_ASSET} has sha256 {digest}, expected "
            f"{YUNET_SHA256} (damaged install): {how}"
        )
    return YUNET_ASSET


class YuNetDetector:
    """OpenCV's YuNet CNN face detector (``cv2.FaceDetectorYN``), the default.

    Better recall than the Haar cascade on small, turned or badly lit faces, and fast on
    a downscaled frame: frames wider than ``detect_width`` are shrunk first.  At 320 px
    (a 640x480 frame halved) faces under ~40 px are mostly lost; ``detect_width=640``
    finds them at ~3-4x the cost.  ``score`` is the network's confidence in [0, 1].
    """

    ROI_SIZE = 96  # side of the square a face's region is scaled to in detect_near

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        detect_width: int = YUNET_WIDTH,
        score_threshold: float = YUNET_SCORE,
        nms_threshold: float = 0.3,
        top_k: int = 50,
    ) -> None:
        self.model_path = resolve_yunet_model(model_path)
        self.detect_width = detect_width
        self.score_threshold = score_threshold
        self._params = (score_threshold, nms_threshold, top_k)
        self._net = self._create((detect_width, detect_width))
        self._size: tuple[int, int] = (0, 0)
        self._roi_net: Any = None  # a second network with a fixed input size, for regions

    def _create(self, size: tuple[int, int]) -> Any:
        try:
            return cv2.FaceDetectorYN.create(str(self.model_path), "", size, *self._params)
        except cv2.error as exc:
            raise RealtimeError(f"cannot load YuNet model {self.model_path}: {exc}") from exc

    def detect_near(self, frame_bgr: np.ndarray, gray: np.ndarray | None, box: Box) -> list[Box]:
        """Faces in the region around ``box`` (twice its size), in frame coordinates.

        The region is scaled onto a fixed ``ROI_SIZE`` square so the network never has to
        be re-shaped (``setInputSize`` per call would cost more than the detection).
        """
        if frame_bgr.ndim == 2:
            frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
        x0, y0, x1, y1 = roi_around(box, frame_bgr.shape)
        roi = frame_bgr[y0:y1, x0:x1]
        r = self.ROI_SIZE
        scale = r / max(roi.shape[:2])
        sw, sh = (
            min(r, max(1, round(roi.shape[1] * scale))),
            min(r, max(1, round(roi.shape[0] * scale))),
        )
        canvas = np.zeros((r, r, 3), np.uint8)
        canvas[:sh, :sw] = cv2.resize(roi, (sw, sh), interpolation=cv2.INTER_AREA)
        if self._roi_net is None:
            self._roi_net = self._create((r, r))
        _, faces = self._roi_net.detect(canvas)
        return self._boxes(faces, scale, x0, y0)

    @staticmethod
    def _boxes(faces: np.ndarray | None, scale: float, dx: int = 0, dy: int = 0) -> list[Box]:
        if faces is None:
            return []
        inv = 1.0 / scale
        boxes = []
        for f in faces:
            x, y, bw, bh = (float(v) * inv for v in f[:4])
            boxes.append(
                Box(int(max(0.0, x)) + dx, int(max(0.0, y)) + dy, int(bw), int(bh), float(f[-1]))
            )
        return boxes

    def detect(self, frame_bgr: np.ndarray, gray: np.ndarray | None = None) -> list[Box]:
        """Faces in a BGR frame, in full-frame coordinates."""
        if frame_bgr.ndim == 2:
            frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
        h, w = frame_bgr.shape[:2]
        scale = min(1.0, self.detect_width / w)
        small = frame_bgr
        if scale < 1.0:
            small = cv2.resize(
                frame_bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
            )
        size = (small.shape[1], small.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(small)
        return self._boxes(faces, scale)


def make_detector(
    name: str = DEFAULT_DETECTOR,
    yunet_model: str | os.PathLike[str] | None = None,
    min_face: int = 96,
    detect_width: int | None = None,
) -> FaceDetector:
    """``"yunet"`` (default) or ``"haar"``; ``min_face`` applies to Haar only,
    ``detect_width`` (default :data:`YUNET_WIDTH`) to YuNet only."""
    if name == "yunet":
        return YuNetDetector(yunet_model, detect_width=detect_width or YUNET_WIDTH)
    if name == "haar":
        return HaarDetector(min_face=min_face)
    raise RealtimeError(f"unknown detector {name!r}: use {' or '.join(DETECTORS)}")

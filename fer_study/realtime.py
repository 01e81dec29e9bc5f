"""Real-time facial emotion recognition: detect faces, classify them, smooth, draw.

The pipeline per frame is ``detect -> preprocess -> classify -> overlay``:

* detection: :class:`HaarDetector` (default, OpenCV's frontal-face cascade) or
  :class:`YuNetDetector` (OpenCV's small CNN detector, more robust, needs an ONNX file);
* preprocessing: square crop with a margin, grayscale, resize to the model's input size;
* classification: all faces of a frame in one call, through a TFLite interpreter
  (:class:`fer_study.export.TFLiteClassifier`, default) or a Keras model wrapped in a
  compiled ``tf.function`` (:class:`KerasClassifier`) - never ``model.predict`` per frame,
  whose per-call overhead (~100 ms) alone would exceed the frame budget;
* temporal smoothing: faces are tracked across frames by IoU and their probabilities
  averaged exponentially, so labels do not flicker;
* overlay: box, label and per-class probability bars drawn with OpenCV.

:class:`Pipeline` accumulates per-stage timings for ``scripts/benchmark_realtime.py``.
The command-line entry points (``webcam``, ``video``, ``predict``) are registered by
:func:`add_realtime_subcommands`; they report problems as :class:`RealtimeError` and exit
with code 2.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import cv2
import numpy as np

from fer_study.data import sha256_file
from fer_study.export import (
    DEFAULT_KERAS_MODEL,
    DEFAULT_TFLITE_MODEL,
    ExportError,
    TFLiteClassifier,
    load_keras_model,
    model_input_size,
)
from fer_study.labels import EMOTIONS, IMAGE_SIZE, NUM_CLASSES

YUNET_FILENAME = "face_detection_yunet_2023mar.onnx"
YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/" + YUNET_FILENAME
)
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
YUNET_ENV = "FER_STUDY_YUNET"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
PROB_COLUMNS: tuple[str, ...] = tuple(f"prob_{e}" for e in EMOTIONS)
STAGES: tuple[str, ...] = ("detect", "preprocess", "classify", "overlay")


class RealtimeError(RuntimeError):
    """A user-facing failure (missing file, no camera, no GUI, bad model...)."""


# --------------------------------------------------------------------------- boxes


@dataclass(frozen=True)
class Box:
    """A face box in frame pixels; ``score`` is the detector's confidence."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0

    def iou(self, other: Box) -> float:
        """Intersection over union with another box."""
        ix = max(0, min(self.x + self.w, other.x + other.w) - max(self.x, other.x))
        iy = max(0, min(self.y + self.h, other.y + other.h) - max(self.y, other.y))
        inter = ix * iy
        union = self.w * self.h + other.w * other.h - inter
        return inter / union if union > 0 else 0.0


# --------------------------------------------------------------------------- detectors


class FaceDetector(Protocol):
    """Anything with ``detect(frame_bgr) -> list[Box]``."""

    def detect(self, frame_bgr: np.ndarray, gray: np.ndarray | None = None) -> list[Box]: ...


class HaarDetector:
    """OpenCV's Viola-Jones frontal-face cascade, tuned for speed.

    The cascade cannot find faces smaller than its 24x24 window, and most of its cost is
    spent at the smallest scales.  So instead of scanning the full frame with ``minSize``,
    the frame is shrunk until ``min_face`` pixels become one window.  At 640x480 with
    ``min_face=96`` (a webcam user at arm's length has a 150-300 px face) the cascade runs
    on 160x120, ~10x faster than the usual full-resolution scan (``scaleFactor=1.1,
    minSize=50``) with the same recall on faces of >= 96 px in our tests; smaller faces are
    ignored (``min_face=50`` covers that range too, at ~5x the cost).  ``scale_factor=1.2``
    would halve the time again but misses faces falling between pyramid levels, and
    ``min_neighbors=4`` lost ~2% of test positions.  ``score`` is the number of merged raw
    detections (higher is surer); the cascade has no calibrated confidence.
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


def yunet_cache_path() -> Path:
    """Where the downloaded YuNet model is kept (``~/.cache/fer_study/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fer_study" / YUNET_FILENAME


def _yunet_help(dest: Path) -> str:
    return (
        f"download {YUNET_URL} by hand and put it at {dest} (or point ${YUNET_ENV} or "
        f"--yunet-model at it); its sha256 must be {YUNET_SHA256}"
    )


def resolve_yunet_model(
    model_path: str | os.PathLike[str] | None = None,
    download: bool = True,
    cache_path: Path | None = None,
    timeout: float = 30.0,
) -> Path:
    """Find the YuNet ONNX file: argument, then ``$FER_STUDY_YUNET``, then the cache.

    A missing cache file is downloaded once from :data:`YUNET_URL` and kept only if its
    sha256 matches :data:`YUNET_SHA256`.  Offline, or on a checksum mismatch, raises a
    RealtimeError saying where to put the file and which checksum it must have.  Explicit
    paths are trusted as given (another YuNet build may be wanted on purpose).
    """
    for given, origin in ((model_path, "--yunet-model"), (os.environ.get(YUNET_ENV), YUNET_ENV)):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise RealtimeError(f"YuNet model not found at {path} (from {origin})")
            return path
    dest = cache_path or yunet_cache_path()
    if dest.is_file():
        digest = sha256_file(dest)
        if digest != YUNET_SHA256:
            raise RealtimeError(
                f"cached YuNet model {dest} has sha256 {digest}, expected {YUNET_SHA256}: "
                f"delete it to download again, or {_yunet_help(dest)}"
            )
        return dest
    if not download:
        raise RealtimeError(f"YuNet model not found: {_yunet_help(dest)}")
    try:
        with urllib.request.urlopen(YUNET_URL, timeout=timeout) as resp:
            payload = resp.read()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise RealtimeError(
            f"cannot download the YuNet model ({exc}); offline? {_yunet_help(dest)}"
        ) from exc
    digest = hashlib.sha256(payload).hexdigest()
    if digest != YUNET_SHA256:
        raise RealtimeError(
            f"downloaded YuNet model has sha256 {digest}, expected {YUNET_SHA256}; "
            f"not saved. {_yunet_help(dest)}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so an interrupted download never leaves a truncated model behind.
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
        tmp.write(payload)
    os.replace(tmp.name, dest)
    return dest


class YuNetDetector:
    """OpenCV's YuNet CNN face detector (``cv2.FaceDetectorYN``).

    More robust than Haar to pose and light, and fast on a downscaled frame: frames wider
    than ``detect_width`` are shrunk first (YuNet still finds faces of ~10 px there).
    """

    ROI_SIZE = 96  # side of the square a face's region is scaled to in detect_near

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        detect_width: int = 320,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.3,
        top_k: int = 50,
    ) -> None:
        self.model_path = resolve_yunet_model(model_path)
        self.detect_width = detect_width
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
    name: str = "haar", yunet_model: str | os.PathLike[str] | None = None, min_face: int = 96
) -> FaceDetector:
    """``"haar"`` or ``"yunet"`` detector with CLI-level defaults."""
    if name == "haar":
        return HaarDetector(min_face=min_face)
    if name == "yunet":
        return YuNetDetector(yunet_model)
    raise RealtimeError(f"unknown detector {name!r}: use haar or yunet")


# --------------------------------------------------------------------------- classifiers


class Classifier(Protocol):
    """Batch classifier: (N, S, S, 1) float32 pixels in [0, 255] -> (N, 7) probabilities."""

    input_size: int

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


class KerasClassifier:
    """A Keras model behind a compiled ``tf.function`` graph.

    Batches are zero-padded to the next power of two so that only a handful of shapes are
    ever traced (1, 2, 4, 8, ... faces) instead of one per face count.  For a ~60k-param
    mini-Xception on 2 CPU cores a call costs ~6 ms (graph), ~18 ms with XLA
    (``jit_compile=True`` is slower on CPU for these small convolutions), ~140 ms eager or
    through ``model.predict``; the TFLite export of the same model takes ~0.3 ms, hence
    TFLite is the default and this class the fallback for ``.keras`` files.
    """

    def __init__(self, model: Any, jit_compile: bool = False) -> None:
        if isinstance(model, (str, os.PathLike)):
            model = load_keras_model(model)
        import tensorflow as tf

        self.model = model
        self.input_size: int = model_input_size(model)
        self._tf = tf
        self._fn = tf.function(lambda x: model(x, training=False), jit_compile=jit_compile)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, S, S, 1) float32 pixels in [0, 255] -> (N, 7) float32 probabilities."""
        x = np.asarray(batch, dtype=np.float32)
        n = len(x)
        if n == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        padded = 1 << (n - 1).bit_length()
        if padded != n:
            x = np.concatenate([x, np.zeros((padded - n, *x.shape[1:]), np.float32)])
        return np.asarray(self._fn(self._tf.constant(x)), dtype=np.float32)[:n]


def load_classifier(
    model: str | os.PathLike[str] | None = None, num_threads: int = 1
) -> Classifier:
    """A classifier from a ``.tflite`` or ``.keras`` file; ``None`` = the shipped model."""
    try:
        if model is None:
            if DEFAULT_TFLITE_MODEL.is_file():
                return TFLiteClassifier(DEFAULT_TFLITE_MODEL, num_threads=num_threads)
            if DEFAULT_KERAS_MODEL.is_file():
                return KerasClassifier(DEFAULT_KERAS_MODEL)
            raise RealtimeError(
                f"the default model is missing ({DEFAULT_TFLITE_MODEL} or "
                f"{DEFAULT_KERAS_MODEL.name}): pass --model PATH to a .tflite or .keras file"
            )
        path = Path(model)
        if not path.is_file():
            raise RealtimeError(f"model file not found: {path}")
        if path.suffix == ".tflite":
            return TFLiteClassifier(path, num_threads=num_threads)
        if path.suffix in (".keras", ".h5"):
            return KerasClassifier(path)
        raise RealtimeError(f"unsupported model file {path}: expected .tflite or .keras")
    except ExportError as exc:
        raise RealtimeError(str(exc)) from exc


# --------------------------------------------------------------------------- preprocessing


def crop_faces(
    gray: np.ndarray,
    boxes: Sequence[Box],
    size: int,
    margin: float = 0.1,
    native: int = IMAGE_SIZE,
) -> np.ndarray:
    """Square crops around ``boxes`` (grown by ``margin`` per side) -> (N, size, size, 1).

    Crops are square (side = the box's longer side) so faces are never stretched; parts
    outside the frame are filled by edge replication rather than clipped away.  Models
    with inputs smaller than the ``native`` 48 px FER2013 face are trained and evaluated
    on centre crops of it, so their crop is the matching centre part (side x size / 48).
    """
    out = np.empty((len(boxes), size, size, 1), np.float32)
    fh, fw = gray.shape[:2]
    shrink = min(1.0, size / native)
    for i, b in enumerate(boxes):
        side = max(b.w, b.h) * (1.0 + 2.0 * margin) * shrink
        cx, cy = b.x + b.w / 2.0, b.y + b.h / 2.0
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
        x1, y1 = x0 + max(1, round(side)), y0 + max(1, round(side))
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, fw), min(y1, fh)
        if cx1 <= cx0 or cy1 <= cy0:
            out[i] = 0.0
            continue
        crop = gray[cy0:cy1, cx0:cx1]
        if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
            crop = cv2.copyMakeBorder(
                crop, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1, cv2.BORDER_REPLICATE
            )
        interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
        out[i, :, :, 0] = cv2.resize(crop, (size, size), interpolation=interp)
    return out


def to_gray(frame: np.ndarray) -> np.ndarray:
    """BGR, BGRA or grayscale image -> 2-D uint8 grayscale."""
    if frame.ndim == 2:
        return frame
    code = cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(frame, code)


# --------------------------------------------------------------------------- tracking


@dataclass
class Track:
    """A face followed across frames, with exponentially smoothed probabilities."""

    id: int
    box: Box
    probs: np.ndarray
    missed: int = 0
    hits: int = 1


class FaceTracker:
    """Greedy IoU tracker with an exponential moving average of probabilities.

    ``alpha`` is the weight of the newest frame (1.0 = no smoothing).  A track survives
    ``max_missed`` frames without a matching detection, which bridges detector dropouts.
    """

    def __init__(self, iou_threshold: float = 0.3, alpha: float = 0.5, max_missed: int = 5):
        self.iou_threshold = iou_threshold
        self.alpha = alpha
        self.max_missed = max_missed
        self.tracks: list[Track] = []
        self._next_id = 0

    def update(self, boxes: Sequence[Box], probs: np.ndarray) -> list[Track]:
        """Match detections to tracks; returns one track per box, in the boxes' order."""
        pairs = sorted(
            (
                (b.iou(t.box), bi, ti)
                for bi, b in enumerate(boxes)
                for ti, t in enumerate(self.tracks)
            ),
            reverse=True,
        )
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for iou, bi, ti in pairs:
            if iou < self.iou_threshold:
                break
            if bi in assigned or ti in used:
                continue
            track = self.tracks[ti]
            track.box = boxes[bi]
            track.probs = self.alpha * probs[bi] + (1.0 - self.alpha) * track.probs
            track.missed = 0
            track.hits += 1
            assigned[bi] = track
            used.add(ti)
        survivors = []
        for ti, track in enumerate(self.tracks):
            if ti not in used:
                track.missed += 1
            if track.missed <= self.max_missed:
                survivors.append(track)
        for bi, box in enumerate(boxes):
            if bi not in assigned:
                track = Track(self._next_id, box, np.array(probs[bi], np.float32))
                self._next_id += 1
                assigned[bi] = track
                survivors.append(track)
        self.tracks = survivors
        return [assigned[bi] for bi in range(len(boxes))]


# --------------------------------------------------------------------------- overlay

# One BGR colour per class, in EMOTIONS order.
COLORS: tuple[tuple[int, int, int], ...] = (
    (40, 40, 230),  # Angry: red
    (40, 140, 40),  # Disgust: green
    (160, 60, 160),  # Fear: purple
    (40, 200, 250),  # Happy: yellow
    (200, 120, 40),  # Sad: blue
    (40, 140, 250),  # Surprise: orange
    (190, 190, 190),  # Neutral: grey
)


@dataclass
class FaceResult:
    """One classified face: ``probs`` are smoothed, ``raw_probs`` this frame's alone."""

    box: Box
    probs: np.ndarray
    raw_probs: np.ndarray
    track_id: int = -1

    @property
    def label(self) -> str:
        return EMOTIONS[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.probs))


_BAR_W, _ROW, _NAME_W, _PAD = 60, 12, 28, 3
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_panel_cache: list[np.ndarray] = []


def _bar_panel() -> np.ndarray:
    """The static part of the probability panel (class names, bar tracks), drawn once.

    Pasting this template costs a memory copy instead of seven ``putText`` calls per face.
    """
    if not _panel_cache:
        h, w = NUM_CLASSES * _ROW + 2 * _PAD, _NAME_W + _BAR_W + 2 * _PAD
        panel = np.full((h, w, 3), 25, np.uint8)
        for j, name in enumerate(EMOTIONS):
            y = _PAD + j * _ROW
            cv2.putText(panel, name[:3], (_PAD, y + 9), _FONT, 0.33, (235, 235, 235), 1,
                        cv2.LINE_AA)  # fmt: skip
            x = _PAD + _NAME_W
            cv2.rectangle(panel, (x, y + 2), (x + _BAR_W, y + _ROW - 2), (70, 70, 70), -1)
        _panel_cache.append(panel)
    return _panel_cache[0]


def draw_faces(frame: np.ndarray, faces: Iterable[FaceResult], bars: bool = True) -> np.ndarray:
    """Draw boxes, labels and probability bars onto ``frame`` in place; returns it.

    Panels go first and boxes and labels on top, so with faces close together a
    neighbour's panel never hides a label.
    """
    faces = list(faces)
    fh, fw = frame.shape[:2]
    if bars:
        panel = _bar_panel()
        ph, pw = panel.shape[:2]
        for face in faces:
            b = face.box
            # Beside the box, right if it fits, else left; clipped at the frame's edges.
            x0 = b.x + b.w + 6 if b.x + b.w + 6 + pw <= fw else b.x - 6 - pw
            y0 = b.y
            px0, py0 = max(x0, 0), max(y0, 0)
            px1, py1 = min(x0 + pw, fw), min(y0 + ph, fh)
            if px1 <= px0 or py1 <= py0:
                continue
            frame[py0:py1, px0:px1] = panel[py0 - y0 : py1 - y0, px0 - x0 : px1 - x0]
            bx = x0 + _PAD + _NAME_W
            for j, p in enumerate(face.probs):
                y = y0 + _PAD + j * _ROW
                length = int(round(_BAR_W * float(p)))
                if length > 0:
                    cv2.rectangle(frame, (bx, y + 2), (bx + length, y + _ROW - 2), COLORS[j], -1)
    for face in faces:
        b = face.box
        k = int(np.argmax(face.probs))
        color = COLORS[k]
        cv2.rectangle(frame, (b.x, b.y), (b.x + b.w, b.y + b.h), color, 2)
        text = f"{EMOTIONS[k]} {face.probs[k] * 100:.0f}%"
        (tw, th), base = cv2.getTextSize(text, _FONT, 0.6, 2)
        ty = b.y - 6 if b.y - th - base - 6 >= 0 else b.y + b.h + th + 6
        cv2.rectangle(frame, (b.x - 1, ty - th - 4), (b.x + tw + 4, ty + base), color, -1)
        ink = (20, 20, 20) if sum(color) > 300 else (245, 245, 245)  # readable on its colour
        cv2.putText(frame, text, (b.x + 2, ty - 1), _FONT, 0.6, ink, 2, cv2.LINE_AA)
    return frame


# --------------------------------------------------------------------------- pipeline


def _dedupe(boxes: list[Box], iou: float = 0.5) -> list[Box]:
    """Drop boxes overlapping a higher-scored one (two regions can find the same face)."""
    kept: list[Box] = []
    for b in sorted(boxes, key=lambda b: -b.score):
        if all(b.iou(k) < iou for k in kept):
            kept.append(b)
    return kept


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
    margin: float = 0.1
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
            boxes = _dedupe(boxes)
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
    detector: str = "haar",
    model: str | os.PathLike[str] | None = None,
    num_threads: int = 1,
    yunet_model: str | os.PathLike[str] | None = None,
    min_face: int = 96,
    margin: float = 0.1,
    smoothing: float | None = 0.5,
    detect_every: int = 1,
) -> Pipeline:
    """A :class:`Pipeline` from CLI-style options."""
    return Pipeline(
        make_detector(detector, yunet_model, min_face),
        load_classifier(model, num_threads),
        margin=margin,
        smoothing=smoothing,
        detect_every=detect_every,
    )


# --------------------------------------------------------------------------- webcam


def gui_available() -> bool:
    """Whether this OpenCV build can open windows (opencv-python-headless cannot)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() not in ("NONE", "NO", "")
    return False


def require_gui() -> None:
    """Raise a RealtimeError explaining how to get a GUI-capable OpenCV."""
    if not gui_available():
        raise RealtimeError(
            "this OpenCV build has no GUI support (opencv-python-headless), so no window "
            "can be shown: run `pip uninstall -y opencv-python-headless && pip install "
            "'opencv-python<5'`, or process a recording instead with "
            "`python -m fer_study video IN.mp4 --output OUT.mp4`"
        )


def open_camera(index: int = 0) -> cv2.VideoCapture:
    """Open a camera and read one frame from it, or raise a RealtimeError."""
    cap = cv2.VideoCapture(index)
    ok = cap.isOpened()
    if ok:
        ok, _ = cap.read()
    if not ok:
        cap.release()
        raise RealtimeError(
            f"cannot open camera {index}: no such device, or it is busy; try another --camera index"
        )
    return cap


def run_webcam(pipeline: Pipeline, camera: int = 0, window: str = "fer-study (q to quit)") -> None:
    """Show the live annotated camera feed until ``q``/Esc or the window is closed."""
    require_gui()
    cap = open_camera(camera)
    try:
        last = time.perf_counter()
        fps = 0.0
        while True:
            ok, frame = cap.read()
            if not ok:
                raise RealtimeError(f"camera {camera} stopped delivering frames")
            pipeline.process(frame)
            now = time.perf_counter()
            fps = 0.9 * fps + 0.1 / max(now - last, 1e-6)  # smoothed display FPS
            last = now
            cv2.putText(
                frame,
                f"{fps:.0f} FPS",
                (10, 24),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.7,
                (0, 255, 0),
                2,
                cv2.LINE_AA,
            )
            cv2.imshow(window, frame)
            key = cv2.waitKey(1) & 0xFF
            if key in (ord("q"), 27) or cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) < 1:
                break
    finally:
        cap.release()
        cv2.destroyAllWindows()


# --------------------------------------------------------------------------- video


def _video_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    if not writer.isOpened():
        raise RealtimeError(f"cannot write video {path}: use an .mp4 or .avi file name")
    return writer


CSV_HEADER: tuple[str, ...] = (
    "frame",
    "time_s",
    "face",
    "track_id",
    "x",
    "y",
    "w",
    "h",
    "det_score",
    "label",
    "smoothed_label",
    *PROB_COLUMNS,
)


def process_video(
    pipeline: Pipeline,
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    csv_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Annotate a video file and/or log per-frame, per-face probabilities to CSV.

    The CSV has one row per detected face per frame; ``prob_*`` columns are that frame's
    own (unsmoothed) probabilities, ``smoothed_label`` the tracker's label.  Returns a
    summary (frames, frames with faces, faces, fps of processing).
    """
    from tqdm import tqdm

    src = Path(input_path)
    if not src.is_file():
        raise RealtimeError(f"video file not found: {src}")
    cap = cv2.VideoCapture(str(src))
    ok, frame = cap.read() if cap.isOpened() else (False, None)
    if not ok or frame is None:
        cap.release()
        raise RealtimeError(
            f"cannot decode video {src}: not a video file, or a codec this OpenCV build "
            "cannot read (try converting it to H.264 .mp4)"
        )
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps = fps if 0.0 < fps < 1000.0 else 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    writer = None
    if output is not None:
        writer = _video_writer(Path(output), fps, (frame.shape[1], frame.shape[0]))
    csv_file: IO[str] | None = None
    csv_writer = None
    if csv_path is not None:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        csv_file = open(csv_path, "w", newline="")  # noqa: SIM115 - closed in finally
        csv_writer = csv.writer(csv_file)
        csv_writer.writerow(CSV_HEADER)
    pipeline.reset_tracks()
    frames = frames_with_faces = n_faces = 0
    t_start = time.perf_counter()
    bar = tqdm(total=total, unit="frame", desc=src.name, disable=not progress)
    try:
        while ok:
            faces = pipeline.process(frame)
            if writer is not None:
                writer.write(frame)
            if csv_writer is not None:
                for i, f in enumerate(faces):
                    b = f.box
                    csv_writer.writerow(
                        [
                            frames,
                            f"{frames / fps:.3f}",
                            i,
                            f.track_id,
                            b.x,
                            b.y,
                            b.w,
                            b.h,
                            f"{b.score:.3f}",
                            EMOTIONS[int(np.argmax(f.raw_probs))],
                            f.label,
                            *(f"{p:.6f}" for p in f.raw_probs),
                        ]
                    )
            frames += 1
            frames_with_faces += bool(faces)
            n_faces += len(faces)
            bar.update(1)
            ok, frame = cap.read()
    finally:
        bar.close()
        cap.release()
        if writer is not None:
            writer.release()
        if csv_file is not None:
            csv_file.close()
    elapsed = time.perf_counter() - t_start
    return {
        "frames": frames,
        "frames_with_faces": frames_with_faces,
        "faces": n_faces,
        "processing_fps": frames / elapsed if elapsed > 0 else float("nan"),
        "output": None if output is None else str(output),
        "csv": None if csv_path is None else str(csv_path),
    }


# --------------------------------------------------------------------------- still images


def list_images(path: str | os.PathLike[str]) -> list[Path]:
    """An image file itself, or a folder's image files (by extension, sorted)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(
            f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise RealtimeError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {p}")
        return files
    raise RealtimeError(f"no such file or folder: {p}")


def predict_images(
    pipeline: Pipeline,
    path: str | os.PathLike[str],
    whole_image: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Classify the faces of one image or of every image in a folder.

    Each image gives one record ``{"file", "status", "faces", "error"}`` with status
    ``"ok"``, ``"no_face"`` or ``"unreadable"``: problems are reported, not raised.
    ``whole_image`` skips detection and treats each image as one face crop (FER2013-style).
    """
    from tqdm import tqdm

    files = list_images(path)
    records = []
    for f in tqdm(files, unit="img", disable=not progress or len(files) < 2):
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            records.append(
                {
                    "file": str(f),
                    "status": "unreadable",
                    "faces": [],
                    "error": "not an image or corrupt file",
                }
            )
            continue
        if whole_image:
            h, w = img.shape[:2]
            boxes = [Box(0, 0, w, h, 1.0)]
            crops = crop_faces(to_gray(img), boxes, pipeline.classifier.input_size, 0.0)
            probs = pipeline.classifier.predict(crops)
            faces = [FaceResult(boxes[0], probs[0], probs[0], 0)]
        else:
            pipeline.reset_tracks()  # images are unrelated: no smoothing across them
            faces = pipeline.process(img)
        records.append(
            {
                "file": str(f),
                "status": "ok" if faces else "no_face",
                "faces": [
                    {
                        "face": i,
                        "box": [face.box.x, face.box.y, face.box.w, face.box.h],
                        "score": round(face.box.score, 4),
                        "label": face.label,
                        "confidence": round(face.confidence, 6),
                        "probs": {
                            e: round(float(p), 6)
                            for e, p in zip(EMOTIONS, face.raw_probs, strict=True)
                        },
                    }
                    for i, face in enumerate(faces)
                ],
                "error": None,
            }
        )
    return records


PREDICT_CSV_HEADER: tuple[str, ...] = (
    "file",
    "status",
    "face",
    "x",
    "y",
    "w",
    "h",
    "score",
    "label",
    *PROB_COLUMNS,
    "error",
)


def write_predictions(records: list[dict[str, Any]], fmt: str, out: IO[str]) -> None:
    """Write :func:`predict_images` records as JSON (nested) or CSV (one row per face)."""
    if fmt == "json":
        json.dump(records, out, indent=2)
        out.write("\n")
        return
    w = csv.writer(out)
    w.writerow(PREDICT_CSV_HEADER)
    blank = [""] * (7 + NUM_CLASSES)
    for r in records:
        if not r["faces"]:
            w.writerow([r["file"], r["status"], *blank, r["error"] or ""])
        for face in r["faces"]:
            x, y, bw, bh = face["box"]
            w.writerow(
                [
                    r["file"],
                    r["status"],
                    face["face"],
                    x,
                    y,
                    bw,
                    bh,
                    face["score"],
                    face["label"],
                    *(f"{face['probs'][e]:.6f}" for e in EMOTIONS),
                    "",
                ]
            )


# --------------------------------------------------------------------------- CLI


def _pipeline_from_args(args: argparse.Namespace, smoothing: float | None = 0.5) -> Pipeline:
    cv2.setNumThreads(args.threads)  # OpenCV's pool would otherwise take every core
    return make_pipeline(
        detector=args.detector,
        model=args.model,
        num_threads=args.threads,
        yunet_model=args.yunet_model,
        min_face=args.min_face,
        margin=args.margin,
        smoothing=smoothing,
        detect_every=getattr(args, "detect_every", 1),
    )


def _run(func: Any, args: argparse.Namespace) -> int:
    try:
        func(args)
    except RealtimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _webcam(args: argparse.Namespace) -> None:
    require_gui()  # before loading models: fail fast
    run_webcam(_pipeline_from_args(args), camera=args.camera)


def _video(args: argparse.Namespace) -> None:
    if args.output is None and args.csv is None:
        raise RealtimeError("nothing to write: give --output OUT.mp4 and/or --csv OUT.csv")
    if not Path(args.input).is_file():
        raise RealtimeError(f"video file not found: {args.input}")
    pipeline = _pipeline_from_args(args, smoothing=None if args.no_smooth else 0.5)
    summary = process_video(pipeline, args.input, args.output, args.csv)
    print(
        f"{summary['frames']} frames, faces in {summary['frames_with_faces']}, "
        f"{summary['faces']} faces, {summary['processing_fps']:.1f} FPS",
        file=sys.stderr,
    )


def _predict(args: argparse.Namespace) -> None:
    list_images(args.path)  # fail on a bad path before loading the model
    pipeline = _pipeline_from_args(args, smoothing=None)
    pipeline.draw = False  # nothing is displayed or saved
    records = predict_images(pipeline, args.path, whole_image=args.whole_image)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        with open(args.output, "w", newline="") as fh:
            write_predictions(records, args.format, fh)
    else:
        write_predictions(records, args.format, sys.stdout)
    counts = {s: sum(r["status"] == s for r in records) for s in ("ok", "no_face", "unreadable")}
    print(
        f"{len(records)} images: {counts['ok']} with faces, {counts['no_face']} without, "
        f"{counts['unreadable']} unreadable",
        file=sys.stderr,
    )


def cmd_webcam(args: argparse.Namespace) -> int:
    """``webcam`` subcommand; returns the exit code (2 on a handled error)."""
    return _run(_webcam, args)


def cmd_video(args: argparse.Namespace) -> int:
    """``video`` subcommand; returns the exit code (2 on a handled error)."""
    return _run(_video, args)


def cmd_predict(args: argparse.Namespace) -> int:
    """``predict`` subcommand; returns the exit code (2 on a handled error)."""
    return _run(_predict, args)


def _detect_every(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--detect-every",
        type=int,
        default=1,
        metavar="N",
        help="scan the whole frame every N frames, in between only around known faces "
        "(faster; new faces show up to N-1 frames late; default: 1 = every frame)",
    )


def _common(p: argparse.ArgumentParser, min_face: int) -> None:
    p.add_argument(
        "--detector",
        choices=("haar", "yunet"),
        default="haar",
        help="face detector (default: haar)",
    )
    p.add_argument("--model", help=".tflite or .keras classifier (default: the shipped model)")
    p.add_argument("--yunet-model", help=f"YuNet .onnx (default: ${YUNET_ENV} or the cache)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    p.add_argument(
        "--min-face",
        type=int,
        default=min_face,
        help="smallest face in pixels for the Haar detector (default: %(default)s)",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.1,
        help="crop margin per side, fraction of the face box (default: 0.1)",
    )


def add_realtime_subcommands(subparsers: Any) -> None:
    """Register ``webcam``, ``video`` and ``predict`` on an argparse subparsers object.

    Each parser sets ``func``, a callable taking the parsed namespace and returning the
    exit code (0 success, 2 handled error), so a CLI can do ``sys.exit(args.func(args))``.
    """
    p = subparsers.add_parser(
        "webcam",
        help="live emotion recognition from a camera",
        description="Live emotion recognition; press q to quit.",
    )
    p.add_argument("--camera", type=int, default=0, help="camera index (default: 0)")
    _common(p, min_face=96)
    _detect_every(p)
    p.set_defaults(func=cmd_webcam)

    p = subparsers.add_parser(
        "video",
        help="annotate a video file and/or log it to CSV",
        description="Annotate a video; per-frame, per-face CSV.",
    )
    p.add_argument("input", help="input video file")
    p.add_argument("--output", help="annotated output video (.mp4 or .avi)")
    p.add_argument("--csv", help="per-frame, per-face probabilities (.csv)")
    p.add_argument(
        "--no-smooth", action="store_true", help="no temporal smoothing of the drawn labels"
    )
    _common(p, min_face=64)
    _detect_every(p)
    p.set_defaults(func=cmd_video)

    p = subparsers.add_parser(
        "predict",
        help="classify faces in an image or a folder",
        description="Classify the faces of an image or folder of images.",
    )
    p.add_argument("path", help="image file or folder of images")
    p.add_argument(
        "--format", choices=("json", "csv"), default="json", help="output format (default: json)"
    )
    p.add_argument("--output", help="output file (default: standard output)")
    p.add_argument(
        "--whole-image",
        action="store_true",
        help="skip detection: each image is one face crop (e.g. FER2013 images)",
    )
    _common(p, min_face=40)
    p.set_defaults(func=cmd_predict)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m fer_study.realtime {webcam,video,predict} ...``."""
    parser = argparse.ArgumentParser(prog="python -m fer_study.realtime")
    sub = parser.add_subparsers(dest="command", required=True)
    add_realtime_subcommands(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

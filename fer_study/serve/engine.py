"""The inference engine behind the HTTP API: one classifier per process, shared safely.

* The classifier (the shipped TFLite model unless told otherwise) is loaded once and
  shared by every request and connection behind a lock: a TFLite interpreter keeps its
  input and output tensors inside itself and resizes them per batch, so two threads
  invoking it at once would read each other's faces.  A call costs ~1 ms, so the lock is
  not where time goes.
* Face detectors keep per-image state too (OpenCV's cascade stores the image pyramid,
  YuNet its input size), so each in-flight frame borrows one from a small pool
  (``workers``, default 1).  The pool also bounds how many frames are decoded and held in
  memory at once.
* A ``POST`` gets a fresh, untracked :class:`~fer_study.realtime.Pipeline`; a WebSocket
  connection keeps its own (:class:`StreamSession`), so tracking and smoothing never mix
  two users' faces.
* Grad-CAM needs the Keras model and TensorFlow, loaded on the first request that asks.

Calibration is the pipeline's business: probabilities are passed through as it returns
them, and ``calibrated`` only reports whether the model's JSON has a ``calibration`` key.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fer_study.export import DEFAULT_KERAS_MODEL, DEFAULT_MODEL_META, DEFAULT_TFLITE_MODEL
from fer_study.labels import EMOTIONS, IMAGE_SIZE
from fer_study.realtime import Box, FaceResult, Pipeline, RealtimeError, make_pipeline
from fer_study.serve.uploads import ApiError, DecodedImage, UploadLimits, decode_image

GRADCAM_SIZE = 96  # side of the Grad-CAM overlay PNG returned per face


@dataclass
class EngineConfig:
    """How to build the engine; ``None`` fields take :func:`make_pipeline`'s defaults."""

    model: str | None = None  # .tflite or .keras; None = the shipped model
    detector: str | None = None
    yunet_model: str | None = None
    min_face: int | None = None
    margin: float | None = None
    workers: int = 1  # detectors, i.e. frames processed at once
    gradcam: bool = True  # allow ?gradcam=true (loads TensorFlow on first use)
    limits: UploadLimits = field(default_factory=UploadLimits)

    def pipeline_kwargs(self) -> dict[str, Any]:
        given = {
            "model": self.model,
            "detector": self.detector,
            "yunet_model": self.yunet_model,
            "min_face": self.min_face,
            "margin": self.margin,
        }
        return {k: v for k, v in given.items() if v is not None}


class LockedClassifier:
    """A classifier shared between threads: one ``predict`` at a time (see module doc)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.input_size: int = inner.input_size
        self._lock = threading.Lock()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            return self.inner.predict(batch)


# --------------------------------------------------------------------------- model facts


def model_files(model: str | os.PathLike[str] | None) -> tuple[Path, Path | None, Path | None]:
    """(classifier file, metadata JSON or None, Keras file for Grad-CAM or None).

    Mirrors :func:`fer_study.realtime.load_classifier`: ``None`` is the shipped model
    (TFLite first).  A user's model may have ``<stem>.json`` and ``<stem>.keras`` beside it.
    """
    if model is None:
        path = DEFAULT_TFLITE_MODEL if DEFAULT_TFLITE_MODEL.is_file() else DEFAULT_KERAS_MODEL
        meta: Path | None = DEFAULT_MODEL_META
        keras_path: Path | None = DEFAULT_KERAS_MODEL
    else:
        path = Path(model)
        meta = path.with_suffix(".json")
        keras_path = path if path.suffix in (".keras", ".h5") else path.with_suffix(".keras")
    meta = meta if meta is not None and meta.is_file() else None
    keras_path = keras_path if keras_path is not None and keras_path.is_file() else None
    return path, meta, keras_path


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def describe_model(path: Path, meta: dict[str, Any], input_size: int) -> dict[str, Any]:
    """The public description of a model (``GET /v1/model``) from its file and JSON.

    Only chosen fields of the JSON are exposed: its training configs name the trainer's
    folders, which are nobody's business.
    """
    digest = _file_sha256(path)
    metrics = meta.get("metrics") or {}
    accuracy = {
        split: {tta: round(float(m["accuracy"]), 4) for tta, m in by_tta.items()}
        for split, by_tta in metrics.items()
    }
    macro_f1 = {
        split: {tta: round(float(m["macro_f1"]), 4) for tta, m in by_tta.items() if "macro_f1" in m}
        for split, by_tta in metrics.items()
    }
    data = meta.get("data") or {}
    provenance = None
    if meta:
        provenance = {
            "data": {k: data[k] for k in ("dataset", "sha256", "split_sizes") if k in data},
            "training_commands": [m["command"] for m in meta.get("members", []) if "command" in m],
            "made_by": meta.get("command"),
            "selection": meta.get("selection"),
            "created_utc": meta.get("created_utc"),
            "git_commit": (meta.get("git") or {}).get("commit"),
        }
    return {
        "id": f"{path.name}@sha256:{digest[:12]}",
        "name": meta.get("model", path.stem),
        "file": path.name,
        "format": path.suffix.lstrip("."),
        "sha256": digest,
        "labels": list(meta.get("labels", EMOTIONS)),
        "input_size": int(input_size),
        "input": "grayscale face crop, pixel values 0..255",
        "params": meta.get("params"),
        "calibrated": "calibration" in meta,
        "calibration": meta.get("calibration"),
        "accuracy": accuracy or None,
        "macro_f1": macro_f1 or None,
        "tflite": meta.get("tflite"),
        "provenance": provenance,
    }


# --------------------------------------------------------------------------- results


def _probs(p: np.ndarray) -> dict[str, float]:
    return {e: round(float(v), 5) for e, v in zip(EMOTIONS, p, strict=True)}


def face_json(face: FaceResult, raw: bool = False) -> dict[str, Any]:
    """One face as JSON: box in image pixels, probabilities, top emotion."""
    b = face.box
    out: dict[str, Any] = {
        "box": {"x": int(b.x), "y": int(b.y), "w": int(b.w), "h": int(b.h)},
        "detector_score": round(float(b.score), 4),
        "track_id": int(face.track_id),
        "emotion": face.label,
        "confidence": round(face.confidence, 5),
        "probs": _probs(face.probs),
    }
    if raw:  # streams: `probs` are smoothed over the track, `raw_probs` this frame's own
        out["raw_probs"] = _probs(face.raw_probs)
    return out


def _stage_ms(pipeline: Pipeline) -> dict[str, float]:
    """The last frame's stage timings, then forget them: a long stream must not keep a
    growing list per stage."""
    out = {s: round(v[-1] * 1000, 3) for s, v in pipeline.timings.items() if v}
    pipeline.reset_timings()
    return out


def square_crop(gray: np.ndarray, box: Box, margin: float, size: int) -> np.ndarray:
    """The square region the pipeline classifies (box side x (1 + 2 margin), edges
    replicated), resized to ``size``."""
    side = max(box.w, box.h) * (1.0 + 2.0 * margin)
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    x1, y1 = x0 + max(1, round(side)), y0 + max(1, round(side))
    fh, fw = gray.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, fw), min(y1, fh)
    if cx1 <= cx0 or cy1 <= cy0:
        return np.zeros((size, size), np.uint8)
    crop = cv2.copyMakeBorder(
        gray[cy0:cy1, cx0:cx1], cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1, cv2.BORDER_REPLICATE
    )
    interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


class GradcamExplainer:
    """Grad-CAM of the Keras twin of the served model, built on first use (TensorFlow).

    A deployment model (members nested as sub-models, each on the face and its mirror image
    like the shipped model) is explained by :class:`fer_study.gradcam.GradCAM` itself: the
    mean of every member's map on every view (mirror views flipped back), at the activation
    of each member's last convolution.
    """

    def __init__(self, keras_path: Path | None) -> None:
        self.keras_path = keras_path
        self._cam: Any = None
        self._lock = threading.Lock()  # one build, and one graph call at a time

    @property
    def available(self) -> bool:
        return self.keras_path is not None

    def require(self) -> None:
        """Raise a 501 ApiError when this server cannot explain (before any work is done)."""
        if self.keras_path is None:
            raise ApiError(
                501,
                "gradcam_unavailable",
                "Grad-CAM is off on this server, or needs the served model's Keras file "
                "(<model>.keras beside the .tflite), which it does not have",
            )

    def _build(self) -> Any:
        from fer_study.export import load_keras_model
        from fer_study.gradcam import GradCAM

        return GradCAM(load_keras_model(self.keras_path))

    def heatmaps(self, faces48: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, str, str]:
        """(N, 48, 48) maps in [0, 1] for uint8 48 px faces, the layer(s), the score kind."""
        self.require()
        with self._lock:
            if self._cam is None:
                try:
                    self._cam = self._build()
                except Exception as exc:  # a broken model file is the server's problem
                    raise ApiError(500, "gradcam_failed", f"cannot build Grad-CAM: {exc}") \
                        from exc
            result = self._cam(faces48, class_idx=targets)
        return result.heatmaps, " + ".join(result.views), result.score

    def explain(self, gray: np.ndarray, faces: list[FaceResult], margin: float) -> list[dict]:
        """One overlay PNG (base64) per face, explaining the class the pipeline reported."""
        from fer_study.gradcam import overlay

        # The classifier sees the centre of a 48 px face crop (input 44 = 44/48 of it);
        # GradCAM takes 48 px faces and crops the same centre itself.
        crops = np.stack([square_crop(gray, f.box, margin, IMAGE_SIZE) for f in faces])
        targets = np.array([int(np.argmax(f.probs)) for f in faces])
        maps, layers, score = self.heatmaps(crops, targets)
        out = []
        for face, heat, cls in zip(faces, maps, targets, strict=True):
            big = square_crop(gray, face.box, margin, GRADCAM_SIZE)
            heat = cv2.resize(heat, (GRADCAM_SIZE, GRADCAM_SIZE), interpolation=cv2.INTER_LINEAR)
            rgb = overlay(big, heat)
            ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            out.append(
                {
                    "png_base64": base64.b64encode(png.tobytes()).decode("ascii") if ok else None,
                    "explains": EMOTIONS[int(cls)],
                    "layer": layers,
                    "score": score,
                    "size": GRADCAM_SIZE,
                    "peak": round(float(heat.max()), 4),
                }
            )
        return out


# --------------------------------------------------------------------------- engine


class Engine:
    """Shared model + detector pool; thread-safe ``predict`` and per-connection streams."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        kwargs = self.config.pipeline_kwargs()
        workers = max(1, int(self.config.workers))
        first = make_pipeline(**kwargs)  # raises RealtimeError on a bad model or detector
        self.classifier = LockedClassifier(first.classifier)
        self.margin = float(first.margin)
        self.detector_name = type(first.detector).__name__
        self._detectors: queue.Queue[Any] = queue.Queue()
        self._detectors.put(first.detector)
        for _ in range(workers - 1):
            # make_pipeline is the public way to build the configured (or default) detector;
            # it also loads a classifier each time, which is dropped here: every worker
            # shares the one above.
            self._detectors.put(make_pipeline(**kwargs).detector)
        self.workers = workers
        path, meta_path, keras_path = model_files(self.config.model)
        meta = json.loads(meta_path.read_text()) if meta_path is not None else {}
        self.info = describe_model(path, meta, self.classifier.input_size)
        self.model_id: str = self.info["id"]
        self.calibrated: bool = self.info["calibrated"]
        self.gradcam = GradcamExplainer(keras_path if self.config.gradcam else None)
        self.started = time.time()

    @contextlib.contextmanager
    def detector(self) -> Iterator[tuple[Any, float]]:
        """Borrow a detector; yields it and the milliseconds spent waiting for it."""
        t0 = time.perf_counter()
        det = self._detectors.get()
        try:
            yield det, (time.perf_counter() - t0) * 1000
        finally:
            self._detectors.put(det)

    def new_pipeline(self, detector: Any, smoothing: float | None) -> Pipeline:
        return Pipeline(
            detector, self.classifier, margin=self.margin, smoothing=smoothing, draw=False
        )

    def run(
        self, data: bytes, pipeline: Pipeline | None = None
    ) -> tuple[DecodedImage, list[FaceResult], dict[str, float], Pipeline]:
        """Decode ``data`` and run a pipeline on it with a borrowed detector.

        ``pipeline`` None: a fresh one without tracking.  Returns the image, the faces,
        timings in ms (wait for a detector, decode, pipeline stages) and the pipeline.
        """
        with self.detector() as (det, wait_ms):
            t0 = time.perf_counter()
            image = decode_image(data, self.config.limits)
            decode_ms = (time.perf_counter() - t0) * 1000
            if pipeline is None:
                pipeline = self.new_pipeline(det, smoothing=None)
            pipeline.detector = det  # whichever detector is free serves this frame
            faces = pipeline.process(image.bgr)
        timings = {"wait": round(wait_ms, 3), "decode": round(decode_ms, 3)}
        timings.update(_stage_ms(pipeline))
        timings.pop("overlay", None)  # nothing is drawn
        timings["pipeline"] = timings.pop("total", 0.0)
        return image, faces, timings, pipeline

    def result(
        self, image: DecodedImage, faces: list[FaceResult], timings: dict[str, float], raw: bool
    ) -> dict[str, Any]:
        """The JSON answer for one image or frame."""
        return {
            "model": {"id": self.model_id, "calibrated": self.calibrated},
            "image": {"width": image.width, "height": image.height, "format": image.format},
            "faces": [face_json(f, raw=raw) for f in faces],
            "timings_ms": timings,
        }

    def predict(self, data: bytes, gradcam: bool = False) -> dict[str, Any]:
        """Faces in one uploaded image (bytes); raises ApiError for bad uploads."""
        t0 = time.perf_counter()
        if gradcam:
            self.gradcam.require()
        image, faces, timings, _ = self.run(data)
        out = self.result(image, faces, timings, raw=False)
        if gradcam and faces:
            t1 = time.perf_counter()
            gray = cv2.cvtColor(image.bgr, cv2.COLOR_BGR2GRAY)
            cams = self.gradcam.explain(gray, faces, self.margin)
            for face_out, cam in zip(out["faces"], cams, strict=True):
                face_out["gradcam"] = cam
            timings["gradcam"] = round((time.perf_counter() - t1) * 1000, 3)
        timings["total"] = round((time.perf_counter() - t0) * 1000, 3)
        return out

    def stream(self, smoothing: float = 0.5) -> StreamSession:
        """A session for one WebSocket connection, with its own face tracks."""
        return StreamSession(self, smoothing)


class StreamSession:
    """Per-connection state: a tracking, smoothing pipeline fed one frame at a time."""

    def __init__(self, engine: Engine, smoothing: float = 0.5) -> None:
        self.engine = engine
        self.smoothing = smoothing
        self._pipeline: Pipeline | None = None
        self.frames = 0

    def process(self, data: bytes) -> dict[str, Any]:
        """Faces in one encoded frame, tracked across this session's frames."""
        t0 = time.perf_counter()
        if self._pipeline is None:
            self._pipeline = self.engine.new_pipeline(None, self.smoothing)
        image, faces, timings, _ = self.engine.run(data, self._pipeline)
        self.frames += 1
        timings["total"] = round((time.perf_counter() - t0) * 1000, 3)
        return self.engine.result(image, faces, timings, raw=True)


__all__ = [
    "Engine",
    "EngineConfig",
    "GradcamExplainer",
    "LockedClassifier",
    "RealtimeError",
    "StreamSession",
    "describe_model",
    "face_json",
    "model_files",
    "square_crop",
]

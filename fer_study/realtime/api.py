"""The one-call Python API: faces and their emotions from an image, a batch or a video.

    from fer_study import EmotionRecognizer

    rec = EmotionRecognizer()                      # shipped YuNet detector + classifier
    rec.detect_emotions("photo.jpg")               # [{"box": [x, y, w, h], "emotions": {...}, ...}]
    rec.top_emotion(frame_bgr)                     # ("Happy", 0.91) for the largest face
    rec.analyze(pil_image)                         # DeepFace-style records
    rec.analyze_video("clip.mp4")                  # pandas DataFrame, one row per face per frame

Shaped after the calls people already know: the ``fer`` package's ``detect_emotions`` /
``top_emotion`` and DeepFace's ``analyze``.  Emotion names are the project's
(:data:`fer_study.labels.EMOTIONS`, capitalised); probabilities are temperature-calibrated
when the model's metadata records a calibration (``rec.calibrated`` says whether).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from fer_study.labels import EMOTIONS
from fer_study.realtime.classify import DEFAULT_MARGIN, Calibration
from fer_study.realtime.detect import DEFAULT_DETECTOR
from fer_study.realtime.faces import FaceResult
from fer_study.realtime.io import face_rows, faces_dataframe, read_image, run_video
from fer_study.realtime.pipeline import Pipeline, make_pipeline


def _is_batch(images: Any) -> bool:
    """A list/tuple of images, or a 4-D array (N, H, W, C); a 3-D array is one image
    unless its last axis cannot be channels, then it is a batch of grayscale images."""
    if isinstance(images, (list, tuple)):
        return True
    if isinstance(images, np.ndarray):
        return images.ndim == 4 or (images.ndim == 3 and images.shape[2] not in (1, 3, 4))
    return False


class EmotionRecognizer:
    """Face detection + emotion classification in one object.

    ``detector`` is ``"yunet"`` (default, shipped) or ``"haar"``; ``model`` a ``.tflite``
    or ``.keras`` classifier (default: the shipped one).  Images are independent: no
    smoothing across calls; :meth:`analyze_video` tracks and smooths.
    """

    def __init__(
        self,
        detector: str = DEFAULT_DETECTOR,
        model: str | os.PathLike[str] | None = None,
        *,
        num_threads: int = 1,
        margin: float = DEFAULT_MARGIN,
        min_face: int = 40,
        yunet_model: str | os.PathLike[str] | None = None,
    ) -> None:
        self.pipeline: Pipeline = make_pipeline(
            detector, model, num_threads, yunet_model, min_face, margin, smoothing=None
        )
        self.pipeline.draw = False

    @property
    def calibration(self) -> Calibration:
        return self.pipeline.calibration

    @property
    def calibrated(self) -> bool:
        """Whether probabilities are temperature-calibrated (from the model's metadata)."""
        return self.calibration.calibrated

    # ------------------------------------------------------------------ images

    def faces(self, image: Any, color: str = "bgr", whole_image: bool = False) -> list[FaceResult]:
        """The :class:`FaceResult` of every face in one image (see :meth:`detect_emotions`)."""
        img = read_image(image, color)
        if whole_image:
            return self.pipeline.process_face_image(img)
        self.pipeline.reset_tracks()
        return self.pipeline.process(img)

    @staticmethod
    def _record(face: FaceResult) -> dict[str, Any]:
        probs = {e: float(p) for e, p in zip(EMOTIONS, face.raw_probs, strict=True)}
        return {
            "box": [face.box.x, face.box.y, face.box.w, face.box.h],
            "score": float(face.box.score),
            "emotions": probs,
            "dominant_emotion": face.label,
            "confidence": face.confidence,
        }

    def detect_emotions(
        self, images: Any, color: str = "bgr", whole_image: bool = False
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Faces and emotion probabilities of an image, or of each image of a batch.

        ``images``: a file path, a numpy array (``color`` ``"bgr"``, OpenCV's order and the
        default, or ``"rgb"``; grayscale and 0..1 floats work too), a PIL image, or a list
        of those / an (N, H, W, C) array for a batch.  One image gives a list of faces
        ``{"box": [x, y, w, h], "score", "emotions": {name: p}, "dominant_emotion",
        "confidence"}``; a batch gives one such list per image.  ``whole_image=True``
        treats each image as one face crop (e.g. FER2013's 48x48 faces).
        """
        if _is_batch(images):
            return [self.detect_emotions(im, color, whole_image) for im in images]
        return [self._record(f) for f in self.faces(images, color, whole_image)]

    def top_emotion(
        self, image: Any, color: str = "bgr"
    ) -> tuple[str, float] | tuple[None, None]:
        """(emotion, probability) of the largest face of one image; (None, None) if none."""
        faces = self.faces(image, color)
        if not faces:
            return None, None
        face = max(faces, key=lambda f: f.box.w * f.box.h)
        return face.label, face.confidence

    def analyze(self, image: Any, color: str = "bgr") -> list[dict[str, Any]]:
        """DeepFace-style records of one image: ``{"emotion": {name: percent},
        "dominant_emotion", "region": {"x", "y", "w", "h"}, "face_confidence"}``."""
        return [
            {
                "emotion": {e: 100.0 * float(p) for e, p in zip(EMOTIONS, f.raw_probs,
                                                                 strict=True)},
                "dominant_emotion": f.label,
                "region": {"x": f.box.x, "y": f.box.y, "w": f.box.w, "h": f.box.h},
                "face_confidence": float(f.box.score),
            }
            for f in self.faces(image, color)
        ]

    # ------------------------------------------------------------------ video

    def analyze_video(
        self,
        path: str | os.PathLike[str],
        output: str | os.PathLike[str] | None = None,
        smoothing: float = 0.5,
        detect_every: int = 1,
        progress: bool = False,
    ) -> Any:
        """A pandas DataFrame with one row per face per frame of a video file: frame,
        time_s, track_id, box, det_score, label (this frame's), smoothed_label (the
        tracker's) and ``prob_<Emotion>`` columns, as the ``video`` command's CSV.
        ``output`` also writes the annotated video.  Summaries and timelines:
        :mod:`fer_study.realtime.analytics`.
        """
        pipe = Pipeline(self.pipeline.detector, self.pipeline.classifier,
                        margin=self.pipeline.margin, smoothing=smoothing,
                        draw=output is not None, detect_every=detect_every)
        rows: list[list[Any]] = []
        run_video(pipe, path, output, lambda i, t, faces: rows.extend(face_rows(i, t, faces)),
                  progress=progress)
        return faces_dataframe(rows)

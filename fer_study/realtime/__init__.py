"""Real-time facial emotion recognition: detect faces, classify them, smooth, draw.

The pipeline per frame is ``detect -> preprocess -> classify -> overlay``, one module per
responsibility:

* :mod:`~fer_study.realtime.detect`: :class:`YuNetDetector` (default; OpenCV's small CNN
  detector, shipped in ``fer_study/assets`` and checked by sha256 at load) or
  :class:`HaarDetector` (OpenCV's frontal-face cascade);
* :mod:`~fer_study.realtime.classify`: the face-crop rule (:func:`crop_faces`), the
  TFLite / Keras classifiers, run on all faces of a frame in one call, and the
  probability calibration recorded with the model;
* :mod:`~fer_study.realtime.track`: faces followed across frames by IoU, probabilities
  averaged exponentially so labels do not flicker;
* :mod:`~fer_study.realtime.overlay`: box, label and per-class probability bars;
* :mod:`~fer_study.realtime.pipeline`: :class:`Pipeline` ties them together and times
  each stage; :func:`make_pipeline` builds one from CLI-style options;
* :mod:`~fer_study.realtime.io`: still images, video files, the webcam;
  :mod:`~fer_study.realtime.analytics`: per-face emotion timelines and summaries;
* :mod:`~fer_study.realtime.api`: :class:`EmotionRecognizer`, the one-call Python API;
* :mod:`~fer_study.realtime.cli`: the ``webcam``, ``video`` and ``predict`` commands.
"""

from fer_study.realtime.api import EmotionRecognizer
from fer_study.realtime.classify import (
    CalibratedClassifier,
    Calibration,
    Classifier,
    KerasClassifier,
    crop_faces,
    face_images_input,
    load_classifier,
    to_gray,
)
from fer_study.realtime.cli import add_realtime_subcommands, main
from fer_study.realtime.detect import (
    DEFAULT_DETECTOR,
    YUNET_ENV,
    YUNET_FILENAME,
    YUNET_SHA256,
    FaceDetector,
    HaarDetector,
    YuNetDetector,
    make_detector,
    resolve_yunet_model,
)
from fer_study.realtime.faces import Box, FaceResult, RealtimeError
from fer_study.realtime.io import (
    CSV_HEADER,
    PROB_COLUMNS,
    list_images,
    predict_images,
    process_video,
    read_image,
    run_webcam,
    write_predictions,
)
from fer_study.realtime.overlay import COLORS, draw_faces
from fer_study.realtime.pipeline import STAGES, Pipeline, make_pipeline
from fer_study.realtime.track import FaceTracker, Track

__all__ = [
    "COLORS", "CSV_HEADER", "DEFAULT_DETECTOR", "PROB_COLUMNS", "STAGES", "YUNET_ENV",
    "YUNET_FILENAME", "YUNET_SHA256", "Box", "CalibratedClassifier", "Calibration",
    "Classifier", "EmotionRecognizer", "FaceDetector", "FaceResult", "FaceTracker",
    "HaarDetector", "KerasClassifier", "Pipeline", "RealtimeError", "Track", "YuNetDetector",
    "add_realtime_subcommands", "crop_faces", "draw_faces", "face_images_input",
    "list_images", "load_classifier", "main", "make_detector", "make_pipeline",
    "predict_images", "process_video", "read_image", "resolve_yunet_model", "run_webcam",
    "to_gray", "write_predictions",
]

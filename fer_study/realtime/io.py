"""Where frames come from and results go: still images, video files, the webcam.

Problems a user can cause (missing or unreadable files, no camera, no GUI) are raised as
:class:`~fer_study.realtime.faces.RealtimeError` with a message saying what to do.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from fer_study.labels import EMOTIONS, NUM_CLASSES
from fer_study.realtime.faces import FaceResult, RealtimeError
from fer_study.realtime.pipeline import Pipeline

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
PROB_COLUMNS: tuple[str, ...] = tuple(f"prob_{e}" for e in EMOTIONS)


# --------------------------------------------------------------------------- images


def read_image(image: Any, color: str = "bgr") -> np.ndarray:
    """A path, a PIL image or a numpy array -> a uint8 BGR (or 2-D grayscale) array.

    ``color`` says how a 3/4-channel numpy array is ordered: ``"bgr"`` (OpenCV's
    ``imread``, the ``fer`` package's convention) or ``"rgb"`` (PIL, matplotlib,
    scikit-image).  PIL images are converted whatever ``color`` says.  Float arrays are
    taken as 0..1 when their maximum is at most 1, else as 0..255.
    """
    if color not in ("bgr", "rgb"):
        raise RealtimeError(f"color must be 'bgr' or 'rgb', got {color!r}")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise RealtimeError(f"image file not found: {path}")
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise RealtimeError(f"cannot read image {path}: not an image or a corrupt file")
        return img
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image
        return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_:
            raise RealtimeError(f"cannot read an image from an array of {arr.dtype}")
        arr = arr.astype(np.float32)
        if arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return np.ascontiguousarray(arr)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise RealtimeError(
            f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {arr.shape}"
        )
    if arr.shape[2] == 4:
        code = cv2.COLOR_RGBA2BGR if color == "rgb" else cv2.COLOR_BGRA2BGR
        return cv2.cvtColor(arr, code)
    return cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if color == "rgb" else np.ascontiguousarray(arr)


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


def face_record(face: FaceResult, index: int) -> dict[str, Any]:
    """One face as JSON: box [x, y, w, h], detector score, label, probabilities."""
    return {
        "face": index,
        "box": [face.box.x, face.box.y, face.box.w, face.box.h],
        "score": round(face.box.score, 4),
        "label": face.label,
        "confidence": round(face.confidence, 6),
        "probs": {e: round(float(p), 6) for e, p in zip(EMOTIONS, face.raw_probs, strict=True)},
    }


def predict_images(
    pipeline: Pipeline,
    path: str | os.PathLike[str],
    whole_image: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Classify the faces of one image or of every image in a folder.

    Each image gives one record ``{"file", "status", "faces", "error", "calibrated"}``
    with status ``"ok"``, ``"no_face"`` or ``"unreadable"``: problems are reported, not
    raised.  ``whole_image`` skips detection and treats each image as one face crop
    (FER2013-style).
    """
    from tqdm import tqdm

    files = list_images(path)
    calibrated = pipeline.calibration.calibrated
    records = []
    for f in tqdm(files, unit="img", disable=not progress or len(files) < 2):
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            records.append({"file": str(f), "status": "unreadable", "faces": [],
                            "error": "not an image or corrupt file", "calibrated": calibrated})
            continue
        if whole_image:
            faces = pipeline.process_face_image(img)
        else:
            pipeline.reset_tracks()  # images are unrelated: no smoothing across them
            faces = pipeline.process(img)
        records.append({"file": str(f), "status": "ok" if faces else "no_face",
                        "faces": [face_record(face, i) for i, face in enumerate(faces)],
                        "error": None, "calibrated": calibrated})
    return records


PREDICT_CSV_HEADER: tuple[str, ...] = (
    "file", "status", "face", "x", "y", "w", "h", "score", "label", *PROB_COLUMNS, "error",
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
            w.writerow([r["file"], r["status"], face["face"], x, y, bw, bh, face["score"],
                        face["label"], *(f"{face['probs'][e]:.6f}" for e in EMOTIONS), ""])


# --------------------------------------------------------------------------- video

CSV_HEADER: tuple[str, ...] = (
    "frame", "time_s", "face", "track_id", "x", "y", "w", "h", "det_score", "label",
    "smoothed_label", *PROB_COLUMNS,
)
FrameCallback = Callable[[int, float, list[FaceResult]], None]


def face_rows(frame: int, time_s: float, faces: list[FaceResult]) -> list[list[Any]]:
    """The :data:`CSV_HEADER` rows of one frame: ``prob_*`` and ``label`` are the frame's
    own (unsmoothed) result, ``smoothed_label`` the tracker's."""
    return [
        [frame, time_s, i, f.track_id, f.box.x, f.box.y, f.box.w, f.box.h, f.box.score,
         EMOTIONS[int(np.argmax(f.raw_probs))], f.label, *(float(p) for p in f.raw_probs)]
        for i, f in enumerate(faces)
    ]


def faces_dataframe(rows: list[list[Any]]) -> Any:
    """Rows of :func:`face_rows` as a pandas DataFrame with the :data:`CSV_HEADER` columns."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(CSV_HEADER))
    ints = ["frame", "face", "track_id", "x", "y", "w", "h"]
    return df.astype({c: "int64" for c in ints} | {c: "float64" for c in PROB_COLUMNS})


def _video_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    if not writer.isOpened():
        raise RealtimeError(f"cannot write video {path}: use an .mp4 or .avi file name")
    return writer


def run_video(
    pipeline: Pipeline,
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    on_frame: FrameCallback | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``pipeline`` over every frame of a video, writing the annotated video if
    ``output`` is given and calling ``on_frame(index, time_s, faces)`` per frame.

    Returns frames, frames with faces, faces, the video's fps and the processing FPS.
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
    pipeline.reset_tracks()
    frames = frames_with_faces = n_faces = 0
    t_start = time.perf_counter()
    bar = tqdm(total=total, unit="frame", desc=src.name, disable=not progress)
    try:
        while ok:
            faces = pipeline.process(frame)
            if writer is not None:
                writer.write(frame)
            if on_frame is not None:
                on_frame(frames, frames / fps, faces)
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
    elapsed = time.perf_counter() - t_start
    return {
        "frames": frames,
        "frames_with_faces": frames_with_faces,
        "faces": n_faces,
        "video_fps": fps,
        "processing_fps": frames / elapsed if elapsed > 0 else float("nan"),
    }


def default_analytics_dir(
    output: str | os.PathLike[str] | None, csv_path: str | os.PathLike[str] | None
) -> Path | None:
    """``<name>_analytics/`` beside the CSV (else the annotated video), or None."""
    base = csv_path if csv_path is not None else output
    return None if base is None else Path(base).with_name(Path(base).stem + "_analytics")


def process_video(
    pipeline: Pipeline,
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    csv_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
    analytics_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Annotate a video, log per-frame, per-face probabilities to CSV, and draw the
    emotion timelines and summary of every tracked face into ``analytics_dir``.

    The CSV has one row per detected face per frame (:func:`face_rows`).  Returns
    :func:`run_video`'s summary plus the paths written and the number of tracks.
    """
    rows: list[list[Any]] = []
    csv_file: IO[str] | None = None
    csv_writer = None
    if csv_path is not None:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        csv_file = open(csv_path, "w", newline="")  # noqa: SIM115 - closed in finally
        csv_writer = csv.writer(csv_file)
        csv_writer.writerow(CSV_HEADER)

    def on_frame(index: int, time_s: float, faces: list[FaceResult]) -> None:
        new = face_rows(index, time_s, faces)
        if analytics_dir is not None:
            rows.extend(new)
        if csv_writer is not None:
            for r in new:
                csv_writer.writerow([*r[:1], f"{r[1]:.3f}", *r[2:8], f"{r[8]:.3f}", *r[9:11],
                                     *(f"{p:.6f}" for p in r[11:])])

    try:
        summary = run_video(pipeline, input_path, output, on_frame, progress)
    finally:
        if csv_file is not None:
            csv_file.close()
    summary.update(output=None if output is None else str(output),
                   csv=None if csv_path is None else str(csv_path), analytics=None)
    if analytics_dir is not None:
        from fer_study.realtime.analytics import write_video_analytics

        alpha = pipeline.tracker.alpha if pipeline.tracker is not None else 1.0
        written = write_video_analytics(faces_dataframe(rows), analytics_dir, alpha=alpha,
                                        source=Path(input_path).name)
        summary.update(analytics=str(analytics_dir), tracks=written["tracks"])
    return summary


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

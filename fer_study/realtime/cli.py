"""The ``webcam``, ``video`` and ``predict`` commands; handled errors exit with code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2

from fer_study.realtime import io
from fer_study.realtime.classify import DEFAULT_MARGIN
from fer_study.realtime.detect import DEFAULT_DETECTOR, DETECTORS, YUNET_ENV, YUNET_WIDTH
from fer_study.realtime.faces import RealtimeError
from fer_study.realtime.pipeline import Pipeline, make_pipeline


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
        detect_width=args.detect_width,
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


def _calibration_note(pipeline: Pipeline) -> str:
    cal = pipeline.calibration
    if not cal.calibrated:
        return "probabilities not calibrated"
    return f"probabilities calibrated (temperature {cal.temperature:g}, fitted on {cal.fitted_on})"


def _webcam(args: argparse.Namespace) -> None:
    io.require_gui()  # before loading models: fail fast
    io.run_webcam(_pipeline_from_args(args), camera=args.camera)


def _video(args: argparse.Namespace) -> None:
    analytics = None if args.no_analytics else (
        Path(args.analytics) if args.analytics else io.default_analytics_dir(args.output, args.csv))
    if args.output is None and args.csv is None and analytics is None:
        raise RealtimeError("nothing to write: give --output OUT.mp4, --csv OUT.csv and/or "
                            "--analytics DIR")
    if not Path(args.input).is_file():
        raise RealtimeError(f"video file not found: {args.input}")
    # --no-smooth still tracks faces (for the CSV's track_id and the timelines).
    pipeline = _pipeline_from_args(args, smoothing=1.0 if args.no_smooth else 0.5)
    summary = io.process_video(pipeline, args.input, args.output, args.csv,
                               analytics_dir=analytics)
    print(
        f"{summary['frames']} frames, faces in {summary['frames_with_faces']}, "
        f"{summary['faces']} faces, {summary['processing_fps']:.1f} FPS; "
        f"{_calibration_note(pipeline)}",
        file=sys.stderr,
    )
    if analytics is not None:
        print(f"{summary['tracks']} tracked face(s): timelines and summary in {analytics}",
              file=sys.stderr)


def _predict(args: argparse.Namespace) -> None:
    io.list_images(args.path)  # fail on a bad path before loading the model
    pipeline = _pipeline_from_args(args, smoothing=None)
    pipeline.draw = False  # nothing is displayed or saved
    records = io.predict_images(pipeline, args.path, whole_image=args.whole_image)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        with open(args.output, "w", newline="") as fh:
            io.write_predictions(records, args.format, fh)
    else:
        io.write_predictions(records, args.format, sys.stdout)
    counts = {s: sum(r["status"] == s for r in records) for s in ("ok", "no_face", "unreadable")}
    print(
        f"{len(records)} images: {counts['ok']} with faces, {counts['no_face']} without, "
        f"{counts['unreadable']} unreadable; {_calibration_note(pipeline)}",
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
        "(less detection work per frame; a new face shows up to N-1 frames late; "
        "default: 1 = every frame)",
    )


def _common(p: argparse.ArgumentParser, min_face: int) -> None:
    p.add_argument(
        "--detector",
        choices=DETECTORS,
        default=DEFAULT_DETECTOR,
        help="face detector: yunet (the shipped CNN) or haar (OpenCV's cascade, faces from "
        "--min-face px) (default: %(default)s)",
    )
    p.add_argument("--model", help=".tflite or .keras classifier (default: the shipped model)")
    p.add_argument("--yunet-model",
                   help=f"another YuNet .onnx (default: ${YUNET_ENV}, else the shipped file)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    p.add_argument(
        "--min-face",
        type=int,
        default=min_face,
        help="smallest face in pixels for --detector haar (default: %(default)s)",
    )
    p.add_argument(
        "--detect-width",
        type=int,
        default=YUNET_WIDTH,
        metavar="PX",
        help="width frames are shrunk to for --detector yunet: 640 (no shrinking) finds faces "
        "down to ~20 px at ~3-4x the cost (default: %(default)s)",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=DEFAULT_MARGIN,
        help="crop margin per side, fraction of the face box (default: %(default)s)",
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
        help="annotate a video file, log it to CSV, plot each face's emotions over time",
        description="Annotate a video; per-frame, per-face CSV; per-face emotion timelines "
        "and a summary (dominant emotion and share of time per emotion of each tracked face).",
    )
    p.add_argument("input", help="input video file")
    p.add_argument("--output", help="annotated output video (.mp4 or .avi)")
    p.add_argument("--csv", help="per-frame, per-face probabilities (.csv)")
    p.add_argument(
        "--analytics",
        metavar="DIR",
        help="folder for the timelines (track_<id>.png, overview.png) and summary "
        "(summary.json, summary.csv) (default: <csv or output name>_analytics beside it)",
    )
    p.add_argument("--no-analytics", action="store_true", help="no timelines or summary")
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

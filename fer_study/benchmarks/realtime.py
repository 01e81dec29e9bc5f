"""The real-time benchmark: detection recall, end-to-end emotion accuracy, FPS, and the
``detect_every`` trade-off, ours beside the ``fer`` package on the same frames.

* **Recall set** (:func:`fer_study.benchmarks.scenes.recall_scenes`): 640x480 frames of
  real faces with known boxes (FER2013 faces of one split and the astronaut, 24-320 px);
  each detector setting and fer's whole pipeline run on every frame: recall, false
  positives, and emotion accuracy over the labelled faces (detection + crop + classifier).
* **FPS** (:data:`fer_study.benchmarks.scenes.FPS_SCENES`): per-stage latency and
  end-to-end FPS of our pipeline per detector and ``detect_every``, fer's
  ``detect_emotions`` on the same frames, in interleaved rounds so a change of load on a
  shared machine hits both; ratios come from one run.
* **detect_every**: how many frames late a face that walks in is found.

Run it as ``python scripts/benchmark_realtime.py`` (see ``--help``); results go to
``reports/results/benchmark_realtime.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fer_study import export
from fer_study.baselines import (
    FER_CLASSIFIER,
    FER_DETECTOR,
    BaselineUnavailable,
    FerBaseline,
    fer_version,
    load_fer,
)
from fer_study.benchmarks import scenes as S
from fer_study.benchmarks.classifiers import bench_classifiers, crop_accuracy, prepare_model
from fer_study.benchmarks.common import (
    command_line,
    display_path,
    load_average,
    machine_info,
    started,
    stats_ms,
)
from fer_study.benchmarks.scoring import MATCH_IOU, MIN_FACE, match, score
from fer_study.benchmarks.summary import DEFAULT, tables, targets
from fer_study.provenance import REPO_ROOT, write_json
from fer_study.realtime.detect import YUNET_SCORE, YUNET_WIDTH, HaarDetector, YuNetDetector
from fer_study.realtime.faces import Box
from fer_study.realtime.pipeline import STAGES, Pipeline

SCRIPT = "scripts/benchmark_realtime.py"
DEFAULT_OUTPUT = REPO_ROOT / "reports" / "results" / "benchmark_realtime.json"
STANDIN_OUTPUT = REPO_ROOT / "runs" / "benchmark_realtime_standin.json"  # runs/ is git-ignored
TUNING_OUTPUT = REPO_ROOT / "reports" / "results" / "benchmark_realtime_tuning.json"


def detector_settings(yunet_model: str | None, extra_yunet: list[str] | None = None,
                      haar_min50: bool = True) -> dict[str, tuple[str, Any]]:
    """name -> (description, factory) of every detector setting benchmarked."""
    out: dict[str, tuple[str, Any]] = {
        DEFAULT: (f"YuNetDetector() - the default: frame shrunk to {YUNET_WIDTH} px wide, "
                  f"score >= {YUNET_SCORE}", lambda: YuNetDetector(yunet_model)),
        "haar": ("HaarDetector() - the former default: faces >= 96 px, frame shrunk 4x",
                 HaarDetector),
    }
    if haar_min50:
        out["haar_min50"] = ("HaarDetector(min_face=50): fer's face-size range (minSize 50), "
                             "frame shrunk to 307x230", lambda: HaarDetector(min_face=50))
    for spec in extra_yunet or []:
        width, _, thr = spec.partition(":")
        kw = {"detect_width": int(width)} | ({"score_threshold": float(thr)} if thr else {})
        out[f"yunet_{spec.replace(':', '_')}"] = (
            f"YuNetDetector({', '.join(f'{k}={v}' for k, v in kw.items())})",
            lambda kw=kw: YuNetDetector(yunet_model, **kw))
    return out


# --------------------------------------------------------------------------- FPS


def _count(truth: list[Box], found: list[Box]) -> tuple[int, int]:
    """(true faces found, false detections) in one frame."""
    hits = sum(i >= 0 for i in match(truth, found))
    return hits, len(found) - hits


class OursRunner:
    """Our pipeline on a frame sequence; ``run`` can be called in several rounds."""

    def __init__(self, frames: list[np.ndarray], truth: list[list[Box]], detector: Any,
                 clf: Any, detect_every: int):
        self.frames, self.truth = frames, truth
        self.pipe = Pipeline(detector, clf, detect_every=detect_every)
        self.detect_every = detect_every
        self.i = 0
        self.faces: list[int] = []  # true faces found per frame
        self.boxes: list[int] = []  # detections per frame (classified: the per-face cost)
        self.false: list[int] = []
        self.cpu: list[float] = []

    def run(self, n: int) -> None:
        for _ in range(n):
            k = self.i % len(self.frames)
            frame = self.frames[k].copy()  # overlay draws in place
            c0 = time.process_time()
            found = self.pipe.process(frame)
            self.cpu.append(time.process_time() - c0)
            hits, false = _count(self.truth[k], [f.box for f in found])
            self.faces.append(hits)
            self.false.append(false)
            self.boxes.append(len(found))
            self.i += 1

    def warm_up(self, n: int) -> None:
        self.run(n)
        self.pipe.reset_timings()
        self.faces, self.boxes, self.false, self.cpu = [], [], [], []
        self.pipe.full_scans = 0

    def result(self, n_truth: int) -> dict[str, Any]:
        t = self.pipe.timings
        per_face = [c / max(1, n) for c, n in zip(t["classify"], self.boxes, strict=True)]
        total = stats_ms(t["total"])
        return {
            "frames": len(self.faces),
            "detect_every": self.detect_every,
            "full_frame_scans": self.pipe.full_scans,
            "faces_per_frame_median": float(np.median(self.faces)),
            "frames_with_all_faces": int(sum(n >= n_truth for n in self.faces)),
            "false_detections": int(sum(self.false)),
            "stages_ms": {s: stats_ms(t[s]) for s in STAGES},
            "classify_per_face_ms": stats_ms(per_face),
            "total_ms": total,
            "cpu_ms": stats_ms(self.cpu),
            "fps_median": round(1000.0 / total["median"], 2),
            "fps_mean": round(1000.0 / total["mean"], 2),
        }


class FerRunner:
    """``fer.FER(mtcnn=False).detect_emotions`` on the same frames, in rounds."""

    def __init__(self, fer: FerBaseline, frames: list[np.ndarray], truth: list[list[Box]]):
        self.fer = fer
        self.frames, self.truth = frames, truth
        self.i = 0
        self.total: list[float] = []
        self.detect: list[float] = []
        self.cpu: list[float] = []
        self.faces: list[int] = []
        self.false: list[int] = []

    def run(self, n: int) -> None:
        for _ in range(n):
            k = self.i % len(self.frames)
            frame = self.frames[k]
            t0 = time.perf_counter()
            self.fer.detect(frame)  # its detection alone, for the breakdown
            t1, c1 = time.perf_counter(), time.process_time()
            res = self.fer.detect_emotions(frame)  # its whole pipeline (detects again)
            t2, c2 = time.perf_counter(), time.process_time()
            self.cpu.append(c2 - c1)
            self.detect.append(t1 - t0)
            self.total.append(t2 - t1)
            hits, false = _count(self.truth[k], [Box(*b) for b, _ in res])
            self.faces.append(hits)
            self.false.append(false)
            self.i += 1

    def warm_up(self, n: int) -> None:
        self.run(n)
        self.total, self.detect, self.faces, self.false, self.cpu = [], [], [], [], []

    def result(self, n_truth: int) -> dict[str, Any]:
        tot = stats_ms(self.total)
        return {
            "frames": len(self.total),
            "faces_per_frame_median": float(np.median(self.faces)),
            "frames_with_all_faces": int(sum(n >= n_truth for n in self.faces)),
            "false_detections": int(sum(self.false)),
            "detect_ms": stats_ms(self.detect),
            "total_ms": tot,
            "cpu_ms": stats_ms(self.cpu),
            "fps_median": round(1000.0 / tot["median"], 2),
            "fps_mean": round(1000.0 / tot["mean"], 2),
            "note": "detect_emotions() per frame, no drawing (ours includes the overlay)",
        }


def fps_runs(args: argparse.Namespace, settings: dict, deployed: Path,
             fer: FerBaseline | None) -> list[dict[str, Any]]:
    runs = []
    for threads in args.threads:
        cv2.setNumThreads(threads)
        for scene in args.scenes:
            frames, truth = S.fps_frames(scene)
            n_truth = len(truth[0])
            ours = {(name, every): OursRunner(frames, truth, make(),
                                              export.TFLiteClassifier(deployed, threads), every)
                    for name, (_, make) in settings.items() if name in args.fps_detectors
                    for every in args.detect_every}
            runner_fer = FerRunner(fer, frames, truth) if fer is not None else None
            for r in ours.values():
                r.warm_up(args.warmup)
            if runner_fer is not None:
                runner_fer.warm_up(min(args.warmup, 10))
            for _ in range(args.rounds):  # interleaved: a load change hits both sides
                for r in ours.values():
                    r.run(max(1, args.frames // args.rounds))
                if runner_fer is not None:
                    runner_fer.run(max(1, args.fer_frames // args.rounds))
            fer_res = runner_fer.result(n_truth) if runner_fer is not None else None
            for (name, every), r in ours.items():
                res = r.result(n_truth)
                entry: dict[str, Any] = {"scene": scene, "faces": n_truth,
                                         "face_widths_px": [b.w for b in truth[0]],
                                         "threads": threads, "detector": name,
                                         "detect_every": every, "ours": res}
                if fer_res is not None:
                    entry["fer"] = fer_res
                    # Medians: robust to the other load on a shared machine; means: the
                    # throughput when detect_every > 1 makes frame costs alternate.
                    entry["fps_ratio_medians"] = round(res["fps_median"] / fer_res["fps_median"],
                                                       2)
                    entry["fps_ratio_ours_over_fer"] = round(res["fps_mean"] / fer_res["fps_mean"],
                                                             2)
                    entry["cpu_ratio_fer_over_ours"] = round(
                        fer_res["cpu_ms"]["mean"] / res["cpu_ms"]["mean"], 2)
                runs.append(entry)
                st = res["stages_ms"]
                line = (f"threads={threads} {scene} {name} every={every} | "
                        + " ".join(f"{s} {st[s]['median']:.3f}" for s in STAGES)
                        + f" | {res['fps_median']:.0f} FPS median (found "
                        f"{res['faces_per_frame_median']:.0f}/{n_truth})")
                if fer_res is not None:
                    line += (f" | fer {fer_res['fps_median']:.1f} FPS (found "
                             f"{fer_res['faces_per_frame_median']:.0f}) -> "
                             f"x{entry['fps_ratio_medians']}")
                print(line, flush=True)
    cv2.setNumThreads(1)
    return runs


# --------------------------------------------------------------------------- recall


def recall_results(scenes: list[S.Scene], settings: dict, deployed: Path,
                   fer: FerBaseline | None, iou: float) -> dict[str, Any]:
    """Every detector setting (with our classifier) and fer's pipeline on every scene."""
    out: dict[str, Any] = {}
    clf = export.TFLiteClassifier(deployed)
    systems: dict[str, Any] = {}
    for name, (_, make) in settings.items():
        pipe = Pipeline(make(), clf, smoothing=None, draw=False)
        systems[name] = lambda f, p=pipe: [(x.box, x.raw_probs) for x in p.process(f)]
    if fer is not None:
        systems["fer"] = lambda f: [(Box(*b), p) for b, p in fer.detect_emotions(f)]
    from tqdm import tqdm

    for name, run in systems.items():
        outputs, times = [], []
        for s in tqdm(scenes, desc=f"recall set: {name}", unit="frame", leave=False):
            t0 = time.perf_counter()
            outputs.append(run(s.frame))
            times.append(time.perf_counter() - t0)
        out[name] = {**score(scenes, outputs, iou), "ms_per_frame": stats_ms(times)}
        r = out[name]
        print(f"recall {name:16s} >= {MIN_FACE}px {r[f'recall_ge_{MIN_FACE}px']} "
              f"(all {r['recall_all']}), false positives {r['false_positives']}, emotion "
              f"accuracy over all faces {r['emotion_accuracy']['over_all_faces']}", flush=True)
    return out


def new_face_delay(every: int, yunet_model: str | None, deployed: Path,
                   start: int = 10) -> dict[str, Any]:
    """Frames until a face that appears is found, with the default detector, over every
    phase of the full-scan schedule (``every`` trials)."""
    clf = export.TFLiteClassifier(deployed)
    delays = []
    for appear_at in range(start, start + every):
        frames, box = S.appearance_frames(appear_at, appear_at + every + 3)
        pipe = Pipeline(YuNetDetector(yunet_model), clf, detect_every=every, draw=False)
        found = None
        for t, frame in enumerate(frames):
            faces = pipe.process(frame)
            if t >= appear_at and any(f.box.iou(box) >= MATCH_IOU for f in faces):
                found = t - appear_at
                break
        delays.append(found)
    seen = [d for d in delays if d is not None]
    return {"detect_every": every, "trials": len(delays), "missed": len(delays) - len(seen),
            "delay_frames_mean": round(float(np.mean(seen)), 3) if seen else None,
            "delay_frames_max": max(seen) if seen else None}


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=f"python {SCRIPT}", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help=".tflite or .keras model (default: the shipped model)")
    ap.add_argument("--standin", action="store_true",
                    help="benchmark an untrained mini-Xception stand-in (timings only)")
    ap.add_argument("--data", help="dataset to calibrate int8 when exporting a .keras model")
    ap.add_argument("--representative", type=int, default=300)
    ap.add_argument("--accuracy-data", metavar="CSV",
                    help="fer2013.csv: its faces build the recall set and the crop accuracy "
                    "comparison (without it both are skipped)")
    ap.add_argument("--recall-split", default="PrivateTest",
                    help="FER2013 split whose faces go into the recall set (default: "
                    "PrivateTest; PublicTest to choose settings)")
    ap.add_argument("--recall-frames", type=int, default=200)
    ap.add_argument("--recall-seed", type=int,
                    help="seed of the recall scenes (default: 0; 1 with --tune)")
    ap.add_argument("--match-iou", type=float, default=MATCH_IOU)
    ap.add_argument("--yunet", nargs="*", default=["640"], metavar="WIDTH[:SCORE]",
                    help="more YuNet settings for the recall set (default: 640 = full "
                    "resolution)")
    ap.add_argument("--frames", type=int, default=150, help="timed frames per configuration")
    ap.add_argument("--fer-frames", type=int, default=60, help="timed frames for fer")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved ours/fer rounds")
    ap.add_argument("--detect-every", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--scenes", nargs="+", default=list(S.FPS_SCENES), choices=list(S.FPS_SCENES))
    ap.add_argument("--fps-detectors", nargs="+", default=[DEFAULT, "haar", "haar_min50"])
    ap.add_argument("--yunet-model", help="another YuNet .onnx (default: the shipped one)")
    ap.add_argument("--no-fer", action="store_true", help="skip the fer comparison")
    ap.add_argument("--no-fps", action="store_true", help="recall set only")
    ap.add_argument("--tune", action="store_true",
                    help="choose YuNet's score threshold and the crop margin on PublicTest "
                    "scenes instead (see fer_study.benchmarks.tuning)")
    ap.add_argument("--note", help="free text recorded in the JSON (e.g. other load)")
    ap.add_argument("--output", help=f"JSON path (default: {display_path(DEFAULT_OUTPUT)}; "
                    f"{display_path(STANDIN_OUTPUT)} with --standin, "
                    f"{display_path(TUNING_OUTPUT)} with --tune)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cv2.setNumThreads(1)
    t_start = time.perf_counter()
    result: dict[str, Any] = {
        "title": "Real-time pipeline vs the fer package: detection recall, emotion accuracy, "
                 "FPS",
        "command": command_line(SCRIPT, argv), "started": started(), "machine": machine_info(),
        "note": args.note, "frame_size": list(S.FRAME_SIZE),
    }
    fer, notes = None, []
    if not args.no_fer:
        try:
            FER, notes = load_fer()
            fer = FerBaseline(FER)
        except BaselineUnavailable as exc:
            notes = [str(exc)]
            print(f"warning: {exc}; benchmarking ours alone", flush=True)
    result["fer"] = {"available": fer is not None, "version": fer_version(), "notes": notes,
                     "detector": FER_DETECTOR, "classifier": FER_CLASSIFIER}
    settings = detector_settings(args.yunet_model, args.yunet, "haar_min50" in args.fps_detectors)
    with tempfile.TemporaryDirectory() as tmp:
        variants, keras_model, desc = prepare_model(args.model, args.standin, Path(tmp),
                                                    args.data, args.representative)
        deployed = variants.get("deployed") or variants["float32"]
        result["model"] = desc
        if args.tune:
            return _tune(args, result, deployed, fer, t_start)
        result["detectors"] = {k: v[0] for k, v in settings.items()}
        if args.accuracy_data:
            from fer_study.data import load_dataset

            ds = load_dataset(args.accuracy_data)
            x, y = ds.split("PrivateTest")
            result["accuracy"] = crop_accuracy(x, y, deployed, fer, ds.provenance())
            print(f"PrivateTest crop accuracy: {result['accuracy']}", flush=True)
            fx, fy = ds.split(args.recall_split)
            seed = 0 if args.recall_seed is None else args.recall_seed
            scenes = S.recall_scenes(fx, fy, args.recall_frames, seed)
            result["recall"] = {
                "scenes": {"frames": len(scenes), "seed": seed,
                           "fer2013_split": args.recall_split,
                           "data_sha256": ds.provenance().get("sha256"),
                           "faces": sum(len(s.boxes) for s in scenes),
                           "astronaut_faces": sum(s.sources.count("astronaut") for s in scenes),
                           "built_by": "fer_study.benchmarks.scenes.recall_scenes"},
                "match_iou": args.match_iou, "min_face_px": MIN_FACE,
                "results": recall_results(scenes, settings, deployed, fer, args.match_iou)}
        if not args.no_fps:
            result["runs"] = fps_runs(args, settings, deployed, fer)
            result["detect_every_tradeoff"] = [
                new_face_delay(n, args.yunet_model, deployed) for n in args.detect_every]
            for d in result["detect_every_tradeoff"]:
                print(f"detect_every {d['detect_every']}: a new face found "
                      f"{d['delay_frames_mean']} frames late on average (max "
                      f"{d['delay_frames_max']})", flush=True)
        result["classifiers_1thread"] = bench_classifiers(variants, keras_model)
    result["targets"], result["headline"] = targets(result, "deployed" in variants)
    result["summary_table"], result["summary_tables"] = tables(result)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    result["load_average_at_end"] = load_average()
    out = Path(args.output) if args.output else (STANDIN_OUTPUT if args.standin
                                                 else DEFAULT_OUTPUT)
    write_json(out, _finite(result))
    print(f"targets: {result['targets']}\nwrote {display_path(out)}")
    return 0


def _tune(args: argparse.Namespace, result: dict[str, Any], deployed: Path,
          fer: FerBaseline | None, t_start: float) -> int:
    from fer_study.benchmarks.tuning import tune, tuning_scenes

    if not args.accuracy_data:
        raise SystemExit("error: --tune needs --accuracy-data (a fer2013.csv)")
    seed = 1 if args.recall_seed is None else args.recall_seed
    scenes, desc = tuning_scenes(args.accuracy_data, args.recall_frames, seed)
    tuning = tune(scenes, deployed, fer, args.match_iou, args.yunet_model)
    result.update(title="Choosing the real-time defaults on PublicTest scenes",
                  scenes=desc, match_iou=args.match_iou,
                  summary_table=tuning.pop("summary_table"),
                  summary_tables=tuning.pop("summary_tables"), tuning=tuning,
                  seconds=round(time.perf_counter() - t_start, 1),
                  load_average_at_end=load_average())
    out = Path(args.output) if args.output else TUNING_OUTPUT
    write_json(out, _finite(result))
    print(f"wrote {display_path(out)}")
    return 0


def _finite(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj

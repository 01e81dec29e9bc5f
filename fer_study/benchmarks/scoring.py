"""Scoring detections against known faces: recall, false positives, emotion accuracy.

A detection matches a true face when their IoU reaches ``iou`` (greedy, best pairs first,
one-to-one).  The default 0.4 is below the usual 0.5 because detectors draw different
boxes around the same face (Haar: a square from brows to mouth; YuNet: hairline to chin)
while the truth here is one convention; unmatched detections are false positives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fer_study.benchmarks.scenes import Scene
from fer_study.realtime.faces import Box

SIZE_BINS: tuple[int, ...] = (24, 32, 48, 64, 96, 160, 321)  # face width edges, pixels
MIN_FACE = 32  # the recall target counts faces of at least this width
MATCH_IOU = 0.4

# One system's output on one frame: (box, probabilities or None) per detected face.
Detections = Sequence[tuple[Box, np.ndarray | None]]


def match(truth: Sequence[Box], found: Sequence[Box], iou: float = MATCH_IOU) -> list[int]:
    """For each true box, the index of its matched detection, or -1."""
    pairs = sorted(((t.iou(f), ti, fi) for ti, t in enumerate(truth)
                    for fi, f in enumerate(found)), reverse=True)
    out = [-1] * len(truth)
    used: set[int] = set()
    for v, ti, fi in pairs:
        if v < iou:
            break
        if out[ti] == -1 and fi not in used:
            out[ti] = fi
            used.add(fi)
    return out


def _bin(width: int) -> str:
    for lo, hi in zip(SIZE_BINS[:-1], SIZE_BINS[1:], strict=True):
        if lo <= width < hi:
            return f"{lo}-{hi - 1}"
    return f"{SIZE_BINS[-1]}+" if width >= SIZE_BINS[-1] else f"<{SIZE_BINS[0]}"


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def score(scenes: Sequence[Scene], outputs: Sequence[Detections], iou: float = MATCH_IOU,
          min_face: int = MIN_FACE) -> dict[str, Any]:
    """Recall (all faces, faces >= ``min_face`` px, per size bin), false positives, and
    emotion accuracy on the labelled (FER2013) faces >= ``min_face`` px: over the faces
    the system found, and over all of them (a missed face counts as wrong)."""
    if len(scenes) != len(outputs):
        raise ValueError(f"{len(scenes)} scenes but {len(outputs)} outputs")
    bins: dict[str, list[int]] = {}
    found_all = found_big = n_big = fp = n_det = 0
    labelled = detected = correct = 0
    ious: list[float] = []
    for scene, dets in zip(scenes, outputs, strict=True):
        boxes = [d[0] for d in dets]
        m = match(scene.boxes, boxes, iou)
        n_det += len(boxes)
        fp += len(boxes) - sum(i >= 0 for i in m)
        for t, label, fi in zip(scene.boxes, scene.labels, m, strict=True):
            hit = fi >= 0
            b = bins.setdefault(_bin(t.w), [0, 0])
            b[0] += 1
            b[1] += hit
            found_all += hit
            if hit:
                ious.append(t.iou(boxes[fi]))
            if t.w < min_face:
                continue
            n_big += 1
            found_big += hit
            if label >= 0:
                labelled += 1
                probs = dets[fi][1] if hit else None
                if probs is not None:
                    detected += 1
                    correct += int(np.argmax(probs)) == label
    n_all = sum(len(s.boxes) for s in scenes)
    return {
        "faces": n_all,
        "recall_all": _rate(found_all, n_all),
        f"faces_ge_{min_face}px": n_big,
        f"recall_ge_{min_face}px": _rate(found_big, n_big),
        "recall_by_width_px": {k: {"faces": v[0], "recall": _rate(v[1], v[0])}
                               for k, v in sorted(bins.items(), key=lambda kv:
                                                  int(kv[0].split("-")[0].strip("<+")))},
        "detections": n_det,
        "false_positives": fp,
        "false_positives_per_frame": _rate(fp, len(scenes)),
        "precision": _rate(n_det - fp, n_det),
        "median_iou_of_matches": round(float(np.median(ious)), 3) if ious else None,
        "emotion_accuracy": {
            "labelled_faces": labelled,
            "detected": detected,
            "over_detected_faces": _rate(correct, detected),
            "over_all_faces": _rate(correct, labelled),
        },
    }

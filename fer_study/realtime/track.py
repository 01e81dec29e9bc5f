"""Face tracking across frames, with exponentially smoothed probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fer_study.realtime.faces import Box


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

"""The types every stage of the real-time pipeline shares: boxes, results, errors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fer_study.errors import FerStudyError
from fer_study.labels import EMOTIONS


class RealtimeError(FerStudyError, RuntimeError):
    """A user-facing failure (missing file, no camera, no GUI, bad model...)."""


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

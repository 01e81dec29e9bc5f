"""Drawing results onto frames: box, label and per-class probability bars."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from fer_study.labels import EMOTIONS, NUM_CLASSES
from fer_study.realtime.faces import FaceResult

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

"""A short composed video for the real-time deployment's demo (notebook 07), and reading
frames back from a video file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def compose_demo_video(path: str | Path, n_frames: int = 48, fps: float = 12.0,
                       size: tuple[int, int] = (640, 480), face_px: int = 150,
                       seed: int = 0) -> Path:
    """Write a short composed clip: scikit-image's astronaut photo (a real frontal face),
    scaled so her face is about `face_px` wide, sliding across a grey studio background.

    Only a demo input for the deployment pipeline: one face, one expression, synthetic motion.
    """
    import cv2
    from skimage import data as skdata

    w, h = size
    rgb = skdata.astronaut()  # 512x512; the face is at about (177, 66, 95, 95)
    head = cv2.cvtColor(rgb[0:240, 110:350], cv2.COLOR_RGB2BGR)
    scale = face_px / 95.0
    head = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    hh, hw = head.shape[:2]
    if hh >= h or hw >= w:
        raise ValueError(f"face_px={face_px} makes the head ({hw}x{hh}) too big for {w}x{h}")
    # Feathered elliptical mask so the pasted head does not show a hard rectangle.
    mask = np.zeros((hh, hw), np.float32)
    cv2.ellipse(mask, (hw // 2, hh // 2), (int(hw * 0.46), int(hh * 0.48)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=max(2.0, hw / 30))[..., None]
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    background = 90 + 60 * (xx / w) + 30 * (yy / h)
    background = np.repeat(background[..., None], 3, axis=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write video {path}")
    try:
        for k in range(n_frames):
            t = k / max(1, n_frames - 1)
            x0 = int(round(t * (w - hw)))
            y0 = int(round((h - hh) / 2 + 0.15 * (h - hh) * np.sin(2 * np.pi * t)))
            frame = background + rng.normal(0, 3, background.shape)  # sensor-like noise
            roi = frame[y0:y0 + hh, x0:x0 + hw]
            frame[y0:y0 + hh, x0:x0 + hw] = mask * head + (1 - mask) * roi
            writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    return path


def read_frames(path: str | Path, indices: Sequence[int]) -> list[np.ndarray]:
    """The BGR frames at `indices` of a video file (missing indices are skipped)."""
    import cv2

    wanted = set(int(i) for i in indices)
    cap = cv2.VideoCapture(str(path))
    frames, k = [], 0
    try:
        while wanted:
            ok, frame = cap.read()
            if not ok:
                break
            if k in wanted:
                frames.append(frame)
                wanted.discard(k)
            k += 1
    finally:
        cap.release()
    return frames

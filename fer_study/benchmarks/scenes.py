"""Benchmark frames with known face boxes, built from real faces.

Two sources of real faces: FER2013 PrivateTest faces (48x48 gray, with their emotion
labels, upscaled to the size wanted) and scikit-image's astronaut portrait (colour, a real
frontal face; its face box below was annotated by hand, hairline to chin and cheek to
cheek).  They are pasted with feathered edges onto scikit-image's sample photographs and
textures, then the whole frame's lighting is changed, so a detector sees faces of known
size and place on busy, face-free backgrounds.  Nothing is downloaded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from fer_study.realtime.faces import Box

FRAME_SIZE = (640, 480)  # width, height: a webcam frame
ASTRONAUT_FACE = (178, 60, 92, 114)  # x, y, w, h in skimage.data.astronaut() (512x512)
BACKGROUNDS = ("coffee", "rocket", "brick", "grass", "gravel", "immunohistochemistry",
               "hubble_deep_field", "clock", "coins", "page", "moon")


@dataclass
class Scene:
    """A frame and its faces: box, FER2013 label (-1 for the astronaut) and source."""

    frame: np.ndarray
    boxes: list[Box] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


@functools.cache
def _sample(name: str) -> np.ndarray:
    """A scikit-image sample image as uint8 BGR (read once; callers must not modify it)."""
    from skimage import data

    img = np.asarray(getattr(data, name)())
    if img.dtype != np.uint8:
        img = (img * 255 if img.max() <= 1 else img).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(img[:, :, :3], cv2.COLOR_RGB2BGR)


def background(name: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """A 640x480 BGR crop of a scikit-image sample (random crop and flip with ``rng``)."""
    img = _sample(name)
    w, h = FRAME_SIZE
    scale = max(w / img.shape[1], h / img.shape[0])
    if rng is not None:
        scale *= rng.uniform(1.0, 1.5)
    size = (max(w, round(img.shape[1] * scale)), max(h, round(img.shape[0] * scale)))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    x0 = 0 if rng is None else int(rng.integers(0, img.shape[1] - w + 1))
    y0 = 0 if rng is None else int(rng.integers(0, img.shape[0] - h + 1))
    img = img[y0:y0 + h, x0:x0 + w]
    if rng is not None and rng.random() < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def paste(frame: np.ndarray, patch: np.ndarray, x: int, y: int, feather: float = 0.08) -> None:
    """Alpha-blend ``patch`` into ``frame`` at (x, y), its edges faded over ``feather`` x
    its shorter side, so no hard rectangle outline is left for a detector to latch on."""
    h, w = patch.shape[:2]
    f = max(1.0, feather * min(h, w))
    ramp_y = np.clip(np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5) / f, 0, 1)
    ramp_x = np.clip(np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5) / f, 0, 1)
    alpha = (ramp_y[:, None] * ramp_x[None, :])[..., None]
    region = frame[y:y + h, x:x + w].astype(np.float32)
    frame[y:y + h, x:x + w] = (alpha * patch + (1 - alpha) * region).astype(np.uint8)


def fer_patch(face48: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A FER2013 face upscaled to ``size`` px (BGR) and its face box: the whole crop."""
    img = cv2.resize(np.asarray(face48, np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), (0, 0, size, size)


def astronaut_patch(
    face_px: int, grow: float = 0.4, flip: bool = False
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The astronaut's head scaled so her face is ``face_px`` wide, with ``grow`` x the
    face's size of surroundings per side, and the face box inside the patch."""
    img = _sample("astronaut")
    fx, fy, fw, fh = ASTRONAUT_FACE
    x0, y0 = max(0, round(fx - grow * fw)), max(0, round(fy - grow * fh))
    x1, y1 = min(img.shape[1], round(fx + fw + grow * fw)), min(img.shape[0],
                                                               round(fy + fh + grow * fh))
    s = face_px / fw
    region = img[y0:y1, x0:x1]
    size = (max(1, round(region.shape[1] * s)), max(1, round(region.shape[0] * s)))
    patch = cv2.resize(region, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    bx, by, bw, bh = round((fx - x0) * s), round((fy - y0) * s), round(fw * s), round(fh * s)
    if flip:
        patch, bx = patch[:, ::-1], patch.shape[1] - bx - bw
    return np.ascontiguousarray(patch), (bx, by, bw, bh)


def relight(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random exposure, gamma, an illumination gradient on half the frames, sensor noise."""
    img = frame.astype(np.float32) / 255.0
    img = np.clip(img * rng.uniform(0.55, 1.35), 0, 1) ** rng.uniform(0.7, 1.5)
    if rng.random() < 0.5:
        h, w = img.shape[:2]
        axis = np.linspace(rng.uniform(0.45, 0.9), rng.uniform(1.0, 1.3),
                           w if rng.random() < 0.5 else h)
        img = img * (axis[None, :, None] if len(axis) == w else axis[:, None, None])
    img = img * 255 + rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _free_spot(rng: np.random.Generator, pw: int, ph: int, taken: list[Box],
               tries: int = 60) -> tuple[int, int] | None:
    w, h = FRAME_SIZE
    if pw > w or ph > h:
        return None
    for _ in range(tries):
        x, y = int(rng.integers(0, w - pw + 1)), int(rng.integers(0, h - ph + 1))
        if all(Box(x, y, pw, ph).iou(t) == 0 for t in taken):
            return x, y
    return None


def recall_scenes(
    fer_faces: np.ndarray,
    fer_labels: np.ndarray,
    n_frames: int = 200,
    seed: int = 0,
    sizes: tuple[int, int] = (24, 320),
    faces_per_frame: tuple[int, int] = (2, 5),
    astronaut_share: float = 0.25,
) -> list[Scene]:
    """Frames of 2-5 real faces each, face widths log-uniform in ``sizes``, on the sample
    backgrounds in turn, relit.  FER2013 faces are drawn without replacement (in order of
    a seeded permutation); the astronaut appears in ``astronaut_share`` of the places
    where her head fits, mirrored half the time."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(fer_faces))
    next_fer = 0
    scenes = []
    for i in range(n_frames):
        frame = background(BACKGROUNDS[i % len(BACKGROUNDS)], rng)
        scene = Scene(frame)
        taken: list[Box] = []  # pasted patches: faces never overlap
        for _ in range(int(rng.integers(faces_per_frame[0], faces_per_frame[1] + 1))):
            size = int(round(np.exp(rng.uniform(np.log(sizes[0]), np.log(sizes[1])))))
            use_astronaut = rng.random() < astronaut_share
            if use_astronaut:
                patch, (bx, by, bw, bh) = astronaut_patch(size, flip=bool(rng.random() < 0.5))
            if not use_astronaut or _free_spot(rng, patch.shape[1], patch.shape[0], taken) is None:
                use_astronaut = False
                if next_fer >= len(order):
                    break
                k = int(order[next_fer])
                patch, (bx, by, bw, bh) = fer_patch(fer_faces[k], size)
            spot = _free_spot(rng, patch.shape[1], patch.shape[0], taken)
            if spot is None:
                continue
            x, y = spot
            paste(frame, patch, x, y)
            taken.append(Box(x, y, patch.shape[1], patch.shape[0]))
            scene.boxes.append(Box(x + bx, y + by, bw, bh))
            if use_astronaut:
                scene.labels.append(-1)
                scene.sources.append("astronaut")
            else:
                scene.labels.append(int(fer_labels[k]))
                scene.sources.append("fer2013")
                next_fer += 1
        scene.frame = relight(frame, rng)
        scenes.append(scene)
    return scenes


def plain_background() -> np.ndarray:
    """A smooth two-tone gradient: nothing in it a detector could take for a face."""
    w, h = FRAME_SIZE
    img = np.empty((h, w, 3), np.uint8)
    img[:, :, 0] = np.linspace(70, 150, w, dtype=np.uint8)[None, :]
    img[:, :, 1] = np.linspace(90, 130, h, dtype=np.uint8)[:, None]
    img[:, :, 2] = 110
    return img


def drifting_frames(
    face_px: list[int], anchors: list[tuple[int, int]], count: int = 60,
    bg: str | None = "coffee",
) -> tuple[list[np.ndarray], list[list[Box]]]:
    """``count`` frames of astronaut faces of the given widths drifting +-4 px around
    ``anchors`` (top-left of each head patch) on a sample background (``None``: a plain
    one), and their face boxes."""
    base = background(bg) if bg else plain_background()
    patches = [astronaut_patch(px, flip=k % 2 == 1) for k, px in enumerate(face_px)]
    frames, boxes = [], []
    for t in range(count):
        frame, truth = base.copy(), []
        for k, ((patch, (bx, by, bw, bh)), (x0, y0)) in enumerate(zip(patches, anchors,
                                                                      strict=True)):
            x = int(np.clip(x0 + round(4 * np.sin(2 * np.pi * t / count + k)), 0,
                            FRAME_SIZE[0] - patch.shape[1]))
            y = int(np.clip(y0 + round(3 * np.cos(2 * np.pi * t / count + k)), 0,
                            FRAME_SIZE[1] - patch.shape[0]))
            paste(frame, patch, x, y)
            truth.append(Box(x + bx, y + by, bw, bh))
        frames.append(frame)
        boxes.append(truth)
    return frames, boxes


# The frames of the FPS comparison: the "person a couple of metres from a webcam"
# (one face ~80 px wide) and three faces of ~50, ~36 and ~26 px (people further away).
FPS_SCENES: dict[str, tuple[list[int], list[tuple[int, int]]]] = {
    "one_face_80px": ([80], [(250, 140)]),
    "three_faces_50_36_26px": ([50, 36, 26], [(80, 200), (330, 120), (520, 300)]),
}


def fps_frames(name: str, count: int = 60) -> tuple[list[np.ndarray], list[list[Box]]]:
    """The frames of one :data:`FPS_SCENES` entry and their face boxes."""
    sizes, anchors = FPS_SCENES[name]
    return drifting_frames(sizes, anchors, count)


def appearance_frames(appear_at: int, count: int) -> tuple[list[np.ndarray], Box]:
    """A face (80 px) present throughout, a second one (80 px) from frame ``appear_at``:
    how late a pipeline notices a new face.  The background is plain so that only the scan
    schedule is measured (a false detection that comes and goes would force extra full
    scans).  Returns the frames and the new face's box."""
    one, _ = drifting_frames([80], [(60, 140)], count, bg=None)
    two, boxes = drifting_frames([80, 80], [(60, 140), (420, 160)], count, bg=None)
    frames = [one[t] if t < appear_at else two[t] for t in range(count)]
    return frames, boxes[appear_at][1]

"""Procedurally drawn grayscale faces for all seven FER2013 expressions.

The synthetic set stands in for FER2013 where the real data is not available (demo runs,
the test-suite). Faces are drawn with OpenCV primitives on a supersampled canvas and
downscaled with INTER_AREA so strokes come out smooth. Each expression is a set of facial
action parameters (brows, eyes, mouth, nose wrinkles) blended with a neutral face by a random
intensity; nuisance factors (pose, shape, tone, lighting, noise, blur, occlusion) are scaled by
``difficulty`` so that ``difficulty=0`` yields one clean canonical face per class (in its two
mirror orientations).

Expressions are left-right symmetric; one-sided details (Disgust's raised lip, the shaded side
of the nose) are mirrored at random, so a horizontal flip keeps every label valid.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import cv2
import numpy as np

from fer_study.labels import EMOTIONS, NUM_CLASSES

__all__ = ["MAX_DIFFICULTY", "MIN_SIZE", "make_synthetic", "render_face"]

MIN_SIZE: int = 24  # below this the eyes and mouth are only a pixel or two tall
MAX_DIFFICULTY: float = 2.0  # beyond this poses and tones leave the plausible range
_ANGRY, _HAPPY = EMOTIONS.index("Angry"), EMOTIONS.index("Happy")
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel stroke placement
_FIX = 1 << _SHIFT
_LINE = cv2.LINE_8  # plain lines suffice: supersampling + INTER_AREA does the smoothing
# Fixed curve samples, precomputed because per-face numpy set-up dominates the run time.
_T9 = np.linspace(0.0, 1.0, 9)
_T13 = np.linspace(-1.0, 1.0, 13)
_T25 = np.linspace(-1.0, 1.0, 25)
_BUMP13 = 1.0 - _T13**2
_BUMP25 = 1.0 - _T25**2
_SIDES = np.array([[-1.0], [1.0]])  # left / right copies of a feature
_NOSE_U = np.array([[0.02, 0.05, 0.0], [-0.12, 0.0, 0.12]])  # bridge; base
_NOSE_V = np.array([[-0.1, 0.12, 0.18], [0.15, 0.2, 0.15]])
_WRINKLE_U = np.array([[-0.11, 0.0, 0.11]]) * np.array([[1.0], [0.85], [0.7]])
_WRINKLE_V = np.array([[-0.07], [0.0], [0.07]]) + np.array([[0.0, -0.025, 0.0]])

# Facial action parameters, face coordinates: u in [-1, 1] left to right across the face,
# v in [-1, 1] top to bottom (v grows downwards, as in the image).
#   brow_in / brow_out: v of the inner / outer brow end; brow_arch: upward bow of the brow
#   eye_open: eyelid half-opening (fraction of face height); eye_squint: lower lid pushed up
#   mouth_w: half width; curve: corner lift (+ smile, - frown); open_up / open_lo: lip parting
#   round: exponent of the lip-parting profile (0.5 = ellipse, small = box); teeth: 0..1
#   asym: one-sided upper-lip raise (Disgust); wrinkle: nose-bridge wrinkle lines
_NEUTRAL: dict[str, float] = {
    "brow_in": -0.40, "brow_out": -0.40, "brow_arch": 0.03, "eye_open": 0.075,
    "eye_squint": 0.0, "mouth_w": 0.30, "curve": 0.0, "open_up": 0.0, "open_lo": 0.0,
    "round": 0.5, "teeth": 0.0, "asym": 0.0, "wrinkle": 0.0,
}  # fmt: skip
_EXPRESSIONS: tuple[dict[str, float], ...] = (
    # Angry: brows pulled down into a V, narrowed eyes, tight flat mouth.
    {"brow_in": -0.24, "brow_out": -0.46, "brow_arch": -0.02, "eye_open": 0.055,
     "mouth_w": 0.25, "curve": -0.04},
    # Disgust: lowered brows, narrowed eyes, wrinkled nose, one-sided raised upper lip.
    {"brow_in": -0.31, "brow_out": -0.38, "eye_open": 0.04, "eye_squint": 0.3,
     "mouth_w": 0.27, "curve": -0.05, "asym": 0.14, "wrinkle": 1.0},
    # Fear: inner brows up, eyes wide, mouth stretched wide open, box-shaped.
    {"brow_in": -0.56, "brow_out": -0.44, "brow_arch": 0.0, "eye_open": 0.12,
     "mouth_w": 0.36, "curve": -0.05, "open_up": 0.06, "open_lo": 0.09, "round": 0.2,
     "teeth": 0.6},
    # Happy: relaxed arched brows, squinted eyes, upturned smile, often open with teeth.
    {"brow_in": -0.42, "brow_out": -0.42, "brow_arch": 0.05, "eye_open": 0.05,
     "eye_squint": 0.6, "mouth_w": 0.40, "curve": 0.17, "open_up": 0.02, "open_lo": 0.12,
     "round": 0.8, "teeth": 1.0},
    # Sad: inner brows up, slightly lowered lids, downturned closed mouth.
    {"brow_in": -0.52, "brow_out": -0.34, "brow_arch": 0.0, "eye_open": 0.06,
     "mouth_w": 0.28, "curve": -0.15},
    # Surprise: brows raised high and arched, eyes wide, round open mouth.
    {"brow_in": -0.62, "brow_out": -0.58, "brow_arch": 0.10, "eye_open": 0.13,
     "mouth_w": 0.14, "open_up": 0.12, "open_lo": 0.16, "round": 0.5},
    # Neutral: the baseline itself.
    {},
)  # fmt: skip


def _check_size(size: int) -> None:
    if not isinstance(size, Integral) or isinstance(size, bool) or size < MIN_SIZE:
        raise ValueError(f"size must be an integer >= {MIN_SIZE}, got {size!r}")


def _check_difficulty(difficulty: float) -> None:
    if not isinstance(difficulty, Real) or not 0.0 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(
            f"difficulty must be a number in [0, {MAX_DIFFICULTY}], got {difficulty!r}"
        )


def _fx(x: float) -> int:
    return round(x * _FIX)


def _expression(label: int, rng: np.random.Generator, d: float) -> dict[str, float]:
    """Action parameters for one face: neutral blended towards the target by an intensity."""
    target = {**_NEUTRAL, **_EXPRESSIONS[label]}
    # Weaker expressions at higher difficulty make classes overlap, as in real faces.
    k = max(0.35, 1.0 - d * rng.uniform(0.0, 0.45))
    p = {key: _NEUTRAL[key] + k * (target[key] - _NEUTRAL[key]) for key in _NEUTRAL}
    j = rng.normal(0.0, 1.0, 6) * d  # individual differences in resting face
    p["brow_in"] += 0.025 * j[0]
    p["brow_out"] += 0.025 * j[1]
    p["eye_open"] = max(0.02, p["eye_open"] * (1.0 + 0.12 * j[2]))
    p["mouth_w"] = min(0.6, max(0.08, p["mouth_w"] * (1.0 + 0.08 * j[3])))
    p["curve"] += 0.02 * j[4]
    p["open_lo"] = max(0.0, p["open_lo"] * (1.0 + 0.2 * j[5]))
    # Variant forms of the same expression; d = 0 keeps only the canonical form.
    if label == _HAPPY and rng.random() < 0.35 * min(d, 1.0):
        p["open_lo"] = p["open_up"] = 0.0  # closed-mouth smile
    if label == _ANGRY and rng.random() < 0.35 * min(d, 1.0):
        p.update(open_up=0.035, open_lo=0.035, round=0.15, teeth=1.0)  # bared teeth
    p["side"] = 1.0 if rng.random() < 0.5 else -1.0  # mirror asymmetric details at random
    return p


def _draw_face(label: int, rng: np.random.Generator, size: int, d: float) -> np.ndarray:
    """Geometry pass: face, features, pose and occlusion, downscaled to ``size``; uint8."""
    ss = max(2, -(-144 // size))  # supersampling factor: canvas of at least 144 px
    c = size * ss
    p = _expression(label, rng, d)
    u = rng.uniform

    # Tones: face usually lighter than the background, sometimes the reverse.
    skin = min(245.0, max(30.0, 165.0 + d * u(-85.0, 60.0)))
    bg = min(255.0, max(0.0, 55.0 + d * u(-45.0, 45.0)))
    if u() < 0.3 * min(d, 1.0):
        bg = min(255.0, skin + u(30.0, 90.0))
    ink = skin * (0.28 + 0.22 * d * u())  # brow, lid and lip strokes
    dark = ink * 0.6  # mouth interior, pupils
    teeth = min(255.0, skin + 35.0)
    stroke = max(2, round(c * (0.024 + 0.008 * d * u(-1.0, 1.0))))

    # Face frame: centre, half axes and in-plane roll; features live in face coordinates.
    scale = 1.0 + 0.12 * d * u(-1.0, 1.0)
    aspect = 1.0 + 0.10 * d * u(-1.0, 1.0)
    fa, fb = c * 0.33 * scale * aspect, c * 0.41 * scale / aspect
    cx = (c - 1) / 2 + c * 0.06 * d * u(-1.0, 1.0)  # (c - 1) / 2: mirror axis of the pixels
    cy = c * (0.53 + 0.04 * d * u(-1.0, 1.0))
    yaw = math.radians(18.0) * d * u(-1.0, 1.0)  # turn on a cylinder: shifts and foreshortens
    roll = 15.0 * d * u(-1.0, 1.0)  # degrees; cv2.ellipse takes the same sign convention
    cr, sr = math.cos(math.radians(roll)), math.sin(math.radians(roll))

    def pts(uu: np.ndarray, vv: np.ndarray | float) -> np.ndarray:
        """Face coordinates -> cv2 fixed-point points, shape (..., 2), after yaw and roll."""
        x, y = fa * np.sin(np.arcsin(uu) + yaw), fb * np.asarray(vv)
        out = np.empty((*np.broadcast(x, y).shape, 2), np.int32)
        out[..., 0] = (cx + cr * x - sr * y) * _FIX + 0.5
        out[..., 1] = (cy + sr * x + cr * y) * _FIX + 0.5
        return out

    def at(dx: float, dy: float) -> tuple[int, int]:
        """Canvas offset from the face centre (before roll) -> cv2 fixed-point point."""
        return _fx(cx + cr * dx - sr * dy), _fx(cy + sr * dx + cr * dy)

    def pt(uu: float, vv: float) -> tuple[int, int]:
        return at(fa * math.sin(math.asin(uu) + yaw), fb * vv)

    img = np.full((c, c), int(bg), np.uint8)
    hair = u() < 0.5 * min(d, 1.0)
    if hair:  # a cap of hair changes the head outline and the forehead contrast
        tone = int(u(10.0, 240.0))
        cv2.ellipse(img, at(0.0, -0.15 * fb), (_fx(fa * 1.1), _fx(fb)), roll, 180, 360, tone, -1,
                    _LINE, _SHIFT)  # fmt: skip
    neck = np.array([at(-0.45 * fa, 0.0), at(0.45 * fa, 0.0), at(0.5 * fa, 2 * c),
                     at(-0.5 * fa, 2 * c)], np.int32)  # fmt: skip
    cv2.fillPoly(img, [neck], int(skin * 0.85), _LINE, _SHIFT)
    cv2.ellipse(img, at(0.0, 0.0), (_fx(fa), _fx(fb)), roll, 0, 360, int(skin), -1, _LINE, _SHIFT)
    if hair:  # fringe stops above the highest brows so it rarely hides them
        fringe = -fb * u(0.7, 0.9)
        cv2.ellipse(img, at(0.0, fringe), (_fx(fa * 1.02), _fx(fb * 0.4)), roll, 180, 360, tone,
                    -1, _LINE, _SHIFT)  # fmt: skip

    # Brows: inner end at |u| = 0.13, outer at 0.62, bowed upwards by brow_arch.
    t = _T9
    bv = p["brow_in"] + (p["brow_out"] - p["brow_in"]) * t - p["brow_arch"] * 4 * t * (1 - t)
    brows = pts(_SIDES * (0.13 + 0.49 * t), bv)
    cv2.polylines(img, list(brows), False, int(ink), stroke + 1, _LINE, _SHIFT)

    # Eyes: almond of half-height eye_open; a squint lifts the lower lid towards the upper.
    ey, ew, h = -0.17, 0.17, p["eye_open"]
    lower_h = (h - p["eye_squint"] * h * 1.4) * 0.9
    uppers = pts(_SIDES * 0.37 + ew * _T13, ey - h * _BUMP13)
    lowers = pts(_SIDES * 0.37 - ew * _T13, ey + lower_h * _BUMP13)
    almonds = np.concatenate([uppers, lowers], axis=1)
    cv2.fillPoly(img, list(almonds), int(min(255.0, skin + 25.0)), _LINE, _SHIFT)
    iris_r = _fx(min(h * fb * 0.95, fb * 0.075))
    for s in (-1.0, 1.0):
        cv2.circle(img, pt(s * 0.37, ey - h * 0.1), iris_r, int(dark), -1, _LINE, _SHIFT)
    cv2.polylines(img, list(uppers), False, int(ink), stroke, _LINE, _SHIFT)
    cv2.polylines(img, list(lowers), False, int(ink), max(1, stroke - 1), _LINE, _SHIFT)

    # Nose: bridge line and base; Disgust adds wrinkles across the bridge.
    nose = pts(_NOSE_U * np.array([[p["side"]], [1.0]]), _NOSE_V)  # bridge shaded on a side
    cv2.polylines(img, [nose[0]], False, int(ink + 0.4 * (skin - ink)), max(1, stroke - 1), _LINE,
                  _SHIFT)  # fmt: skip
    cv2.polylines(img, [nose[1]], False, int(ink), stroke, _LINE, _SHIFT)
    if p["wrinkle"] > 0.5:
        cv2.polylines(img, list(pts(_WRINKLE_U, _WRINKLE_V)), False,
                      int(ink + 0.25 * (skin - ink)), max(1, stroke - 2), _LINE, _SHIFT)

    # Mouth: lip midline y(t) = v0 - curve * t^2, parted by open_up / open_lo with a
    # (1 - t^2)^round profile; asym lifts one side of the upper lip (Disgust).
    tt = _T25
    mid = 0.50 - p["curve"] * tt**2 + 0.5 * p["curve"]  # keep the mouth centred vertically
    prof = _BUMP25 ** p["round"]
    raise_ = p["asym"] * np.clip(p["side"] * tt + 0.3, 0.0, None) ** 1.5 * _BUMP25**0.3
    top = mid - p["open_up"] * prof - raise_
    bot = mid + p["open_lo"] * prof
    mu = p["mouth_w"] * tt
    if p["open_up"] + p["open_lo"] + p["asym"] > 0.02:
        hole = pts(np.concatenate([mu, mu[::-1]]), np.concatenate([top, bot[::-1]]))
        cv2.fillPoly(img, [hole], int(dark), _LINE, _SHIFT)
        if p["teeth"] > 0.3:  # band of teeth under the upper lip
            low = top + 0.5 * (p["open_up"] + p["open_lo"]) * p["teeth"] * prof
            band = pts(np.concatenate([mu, mu[::-1]]) * 0.9, np.concatenate([top, low[::-1]]))
            cv2.fillPoly(img, [band], int(teeth), _LINE, _SHIFT)
        cv2.polylines(img, [hole], True, int(ink), stroke, _LINE, _SHIFT)
    else:
        cv2.polylines(img, [pts(mu, mid)], False, int(ink), stroke + 1, _LINE, _SHIFT)

    # Occlusion: a bar (glasses frame, microphone, text) or a hand-like blob over the face.
    if u() < 0.25 * min(d, 1.0):
        tone = int(u(0.0, 255.0))
        if u() < 0.5:
            half = u(0.15, 0.45) * c
            th = u(0.0, math.pi)
            ox, oy = cx + u(-0.25, 0.25) * c, cy + u(-0.2, 0.35) * c
            dx, dy = half * math.cos(th), half * math.sin(th)
            cv2.line(img, (_fx(ox - dx), _fx(oy - dy)), (_fx(ox + dx), _fx(oy + dy)), tone,
                     max(2, round(c * u(0.04, 0.1))), _LINE, _SHIFT)  # fmt: skip
        else:
            hx = cx + u(-0.35, 0.35) * c
            hy = cy + u(0.15, 0.45) * c
            r = c * u(0.1, 0.16)
            cv2.ellipse(img, (_fx(hx), _fx(hy)), (_fx(r), _fx(r * 1.3)), 0, 0, 360, tone, -1,
                        _LINE, _SHIFT)  # fmt: skip
            for f in range(4):  # fingers
                cv2.ellipse(img, (_fx(hx + r * (-0.75 + 0.5 * f)), _fx(hy - r * 1.3)),
                            (_fx(r * 0.22), _fx(r * 0.7)), 0, 0, 360, tone, -1, _LINE,
                            _SHIFT)  # fmt: skip

    small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    sigma = 0.9 * d * u()
    if u() < 0.3 * min(d, 1.0) and sigma > 0.2:  # out of focus / low resolution source
        small = cv2.GaussianBlur(small, (0, 0), sigma)
    return small


def _photometric(images: np.ndarray, rng: np.random.Generator, d: float) -> np.ndarray:
    """Vectorised lighting gradient, gain/bias and sensor noise over a (n, s, s) uint8 batch."""
    n, s = images.shape[0], images.shape[1]
    x = np.linspace(-0.5, 0.5, s, dtype=np.float32)
    theta = rng.uniform(0.0, 2 * np.pi, n).astype(np.float32)
    amp = (70.0 * d * rng.uniform(0.0, 1.0, n)).astype(np.float32)
    gain = (1.0 + 0.2 * d * rng.uniform(-1.0, 1.0, n)).astype(np.float32)
    bias = (15.0 * d * rng.uniform(-1.0, 1.0, n)).astype(np.float32)
    sigma = (9.0 * d * rng.uniform(0.0, 1.0, n)).astype(np.float32)
    ramp = (np.cos(theta)[:, None, None] * x[None, None, :]
            + np.sin(theta)[:, None, None] * x[None, :, None])  # fmt: skip
    out = images.astype(np.float32) * gain[:, None, None] + bias[:, None, None]
    out += amp[:, None, None] * ramp
    out += sigma[:, None, None] * rng.standard_normal((n, s, s), dtype=np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def render_face(
    label: int, rng: np.random.Generator, size: int = 48, difficulty: float = 1.0
) -> np.ndarray:
    """Draw one ``size`` x ``size`` uint8 grayscale face showing expression ``label``.

    ``label`` indexes :data:`fer_study.labels.EMOTIONS`; ``rng`` supplies all randomness, so the
    same generator state gives the same face. ``difficulty`` scales nuisance variation
    (0 = clean canonical face, 1 = default, up to :data:`MAX_DIFFICULTY`).
    """
    if not isinstance(label, Integral) or isinstance(label, bool) or not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label must be an integer in [0, {NUM_CLASSES - 1}], got {label!r}")
    _check_size(size)
    _check_difficulty(difficulty)
    face = _draw_face(int(label), rng, int(size), float(difficulty))
    return _photometric(face[None], rng, float(difficulty))[0]


def make_synthetic(
    n: int, seed: int = 0, size: int = 48, difficulty: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Generate a balanced synthetic expression data set.

    Returns ``(images, labels)``: ``images`` uint8 of shape ``(n, size, size)`` and ``labels``
    int64 of shape ``(n,)`` in 0..6 (FER2013 order). Class counts differ by at most one and the
    order is shuffled. The output is a pure function of the arguments: the same ``seed`` gives
    byte-identical arrays.
    """
    if not isinstance(n, Integral) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    _check_size(size)
    _check_difficulty(difficulty)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n, dtype=np.int64) % NUM_CLASSES)
    d = float(difficulty)
    faces = np.stack([_draw_face(int(y), rng, int(size), d) for y in labels])
    return _photometric(faces, rng, d), labels

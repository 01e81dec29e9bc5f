"""Video analytics: what each tracked face felt over time, as plots and a summary.

Input is the per-face DataFrame of a video (:func:`fer_study.realtime.io.faces_dataframe`,
the same columns as the ``video`` command's CSV).  For each track:

* the timeline: its probabilities over time, smoothed as the tracker smooths them
  (exponential moving average with the pipeline's ``alpha``), as a stacked area plot;
* its dominant emotion (the label shown, ``smoothed_label``, for the largest share of its
  frames) and the share of its time under each emotion.

``summary.json`` / ``summary.csv`` hold the numbers, ``track_<id>.png`` the timelines,
``overview.png`` the share of time per emotion of every track side by side.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fer_study.labels import EMOTIONS
from fer_study.realtime.overlay import COLORS

PROBS = [f"prob_{e}" for e in EMOTIONS]
RGB = [tuple(c / 255 for c in bgr[::-1]) for bgr in COLORS]  # the overlay's colours


def smoothed_probs(track: Any, alpha: float) -> np.ndarray:
    """(frames, 7) probabilities of one track's rows, smoothed as the tracker does."""
    raw = track[PROBS].to_numpy(np.float64)
    out = np.empty_like(raw)
    for i, p in enumerate(raw):
        out[i] = p if i == 0 else alpha * p + (1.0 - alpha) * out[i - 1]
    return out


def track_summaries(df: Any) -> list[dict[str, Any]]:
    """One record per track: when it was seen, its dominant emotion, its share of time
    per emotion (by the label shown, ``smoothed_label``) and its mean probabilities."""
    out = []
    for track_id, t in df.sort_values("frame").groupby("track_id", sort=True):
        labels = t["smoothed_label"].map(EMOTIONS.index).to_numpy()
        share = np.bincount(labels, minlength=len(EMOTIONS)) / len(t)
        mean = t[PROBS].to_numpy().mean(axis=0)
        dominant = int(np.lexsort((mean, share))[-1])  # largest share; ties: mean prob
        out.append({
            "track_id": int(track_id),
            "frames": int(len(t)),
            "first_s": round(float(t["time_s"].iloc[0]), 3),
            "last_s": round(float(t["time_s"].iloc[-1]), 3),
            "dominant_emotion": EMOTIONS[dominant],
            "share_of_time": {e: round(float(s), 4) for e, s in zip(EMOTIONS, share, strict=True)},
            "mean_probs": {e: round(float(m), 4) for e, m in zip(EMOTIONS, mean, strict=True)},
        })
    return out


def plot_timeline(track: Any, alpha: float, title: str, path: Path) -> Path:
    """A stacked area plot of one track's smoothed probabilities over time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    t = track["time_s"].to_numpy()
    ax.stackplot(t, smoothed_probs(track, alpha).T, labels=EMOTIONS, colors=RGB, alpha=0.9)
    ax.set(xlim=(t[0], t[-1]) if len(t) > 1 else None, ylim=(0, 1), xlabel="time (s)",
           ylabel="probability", title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_overview(summaries: list[dict[str, Any]], path: Path) -> Path:
    """Share of time per emotion of every track, one horizontal stacked bar each."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, max(2.4, 1.2 + 0.4 * len(summaries))), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names = [f"track {s['track_id']} ({s['last_s'] - s['first_s']:.1f} s)" for s in summaries]
    left = np.zeros(len(summaries))
    for e, color in zip(EMOTIONS, RGB, strict=True):
        share = np.array([s["share_of_time"][e] for s in summaries])
        ax.barh(names, share, left=left, color=color, label=e)
        left += share
    ax.set(xlim=(0, 1), xlabel="share of the track's time", title="Emotion shown per face")
    ax.invert_yaxis()
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_video_analytics(
    df: Any,
    out_dir: str | os.PathLike[str],
    alpha: float = 0.5,
    min_frames: int = 5,
    source: str | None = None,
) -> dict[str, Any]:
    """Write ``summary.json``, ``summary.csv``, ``overview.png`` and one
    ``track_<id>.png`` per track seen in at least ``min_frames`` frames (shorter tracks,
    usually passing false detections, are summarised but not plotted)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tracks = track_summaries(df)
    for s in tracks:
        s["plot"] = None
        if s["frames"] >= min_frames:
            t = df[df["track_id"] == s["track_id"]].sort_values("frame")
            share = s["share_of_time"][s["dominant_emotion"]]
            title = (f"track {s['track_id']}: {s['dominant_emotion']} {share:.0%} of "
                     f"{s['last_s'] - s['first_s']:.1f} s")
            s["plot"] = plot_timeline(t, alpha, title, out / f"track_{s['track_id']}.png").name
    frames = int(df["frame"].nunique()) if len(df) else 0
    overall = {e: 0.0 for e in EMOTIONS}
    total = sum(s["frames"] for s in tracks)
    for s in tracks:
        for e in EMOTIONS:
            overall[e] += s["share_of_time"][e] * s["frames"] / total
    summary = {
        "source": source,
        "frames_with_faces": frames,
        "tracks": len(tracks),
        "smoothing_alpha": alpha,
        "share_of_face_time": {e: round(v, 4) for e, v in overall.items()},
        "per_track": tracks,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    import pandas as pd

    flat = [{k: v for k, v in s.items() if k not in ("share_of_time", "mean_probs")}
            | {f"share_{e}": s["share_of_time"][e] for e in EMOTIONS} for s in tracks]
    pd.DataFrame(flat).to_csv(out / "summary.csv", index=False)
    if tracks:
        plot_overview(tracks, out / "overview.png")
    return summary

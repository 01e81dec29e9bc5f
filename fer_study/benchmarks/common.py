"""What every benchmark records: latency statistics, the machine and its load, paths."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fer_study.provenance import REPO_ROOT, cpu_model, git_commit

PACKAGES = ("numpy", "opencv-python-headless", "opencv-python", "tensorflow-cpu", "tensorflow",
            "keras", "ai-edge-litert", "fer", "scikit-image")


def stats_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p10, p90 and mean of durations in seconds, as milliseconds."""
    a = np.asarray(seconds, dtype=np.float64) * 1000
    if a.size == 0:
        return {"median": float("nan"), "p10": float("nan"), "p90": float("nan"),
                "mean": float("nan")}
    return {
        "median": round(float(np.median(a)), 4),
        "p10": round(float(np.percentile(a, 10)), 4),
        "p90": round(float(np.percentile(a, 90)), 4),
        "mean": round(float(a.mean()), 4),
    }


def load_average() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info() -> dict[str, Any]:
    """CPU, cores, load at the start, platform and package versions."""
    versions = {}
    for pkg in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[pkg] = importlib.metadata.version(pkg)
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_at_start": load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "git": git_commit(),
    }


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the repository when inside it, else as the user gave it: a
    results file never names where this machine keeps the checkout."""
    p = Path(path)
    try:
        return p.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command as typed: ``python <script> <args>``."""
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", script, *args])


def started() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")

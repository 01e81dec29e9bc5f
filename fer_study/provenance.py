"""Where a result came from: code version, environment and machine, for every results file."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
from pathlib import Path

import numpy as np

import fer_study

REPO_ROOT = Path(__file__).resolve().parent.parent
_ROOT_PREFIX = str(REPO_ROOT) + "/"


def git_commit() -> dict:
    """The repo's HEAD commit and whether the working tree had uncommitted changes outside
    ``reports/``: the study's own outputs change while it runs (its manifest is rewritten
    before each stage), so counting them would call every stage's code modified."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no",
                                     "--", ".", ":(exclude)reports"],
                                    cwd=REPO_ROOT, capture_output=True, text=True,
                                    timeout=10).stdout.strip())
        return {"commit": sha, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict:
    import keras

    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "keras_backend": keras.backend.backend()}


def environment() -> dict:
    import keras

    versions = {"python": platform.python_version(), "fer_study": fer_study.__version__,
                "keras": keras.__version__, "numpy": np.__version__}
    try:
        from importlib.metadata import version

        for pkg in ("tensorflow-cpu", "tensorflow", "torch", "jax", "opencv-python-headless"):
            try:
                versions[pkg] = version(pkg)
            except Exception:
                continue
    except ImportError:
        pass
    return versions


def stamp() -> dict:
    """Everything a results JSON records about how it was made, besides the data."""
    return {"created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "git": git_commit(), "environment": environment(), "hardware": hardware()}


def repo_relative(path: str | Path) -> str:
    """`path` relative to the repository root when it lies inside it (results files then
    read the same on every machine), else as given."""
    p = Path(path).resolve()
    try:
        return p.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def finite(obj):
    """NaN / inf -> None, recursively: strict JSON readers reject NaN."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)) and not np.isfinite(obj):
        return None
    return obj


_HOME = str(Path.home())
_TMP = re.compile(r"(?<![\w.])(?:/tmp|/var/folders|/private/var/folders)/[^\s'\"\\]*")


def scrub_paths(text: str, temp: bool = False) -> str:
    """`text` with this machine's paths taken out: the repository's absolute path made
    relative, the home folder as ``~``, and with `temp` temporary files as ``<tmp>``
    (notebook output only: a results file may name a temporary run a test reads back)."""
    text = text.replace(_ROOT_PREFIX, "").replace(str(REPO_ROOT), ".")
    if _HOME not in ("/", ""):
        text = re.sub(re.escape(_HOME) + r"(?=/|\b)", "~", text)
    return _TMP.sub("<tmp>", text) if temp else text


def portable(obj):
    """Every string naming a file inside the repository by its absolute path, relative to
    the repository (and the home folder as ``~``), recursively: what the package writes
    reads the same on every machine."""
    if isinstance(obj, dict):
        return {k: portable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v) for v in obj]
    if isinstance(obj, Path):
        obj = str(obj)
    if isinstance(obj, str):
        return scrub_paths(obj)
    return obj


def write_json(path: str | Path, obj: dict) -> Path:
    """Write JSON atomically (a reader never sees a half-written results file), with the
    repository's absolute paths made relative (:func:`portable`)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(portable(obj), indent=2, default=json_default) + "\n")
    tmp.replace(p)
    return p


def json_default(o):
    """numpy scalars and arrays, and paths, as JSON values (json.dumps' `default`)."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")

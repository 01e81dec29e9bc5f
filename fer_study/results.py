"""The results layer: the study's stages, where their outputs go, and the one results format.

Stages. Each numbered notebook in ``notebooks/`` is a stage (:data:`STAGES`); notebook 03 runs
once per transfer backbone as ``03_transfer_learning__<backbone>``. A stage declares the
notebooks whose results it reads, so the study re-runs it when they change.

Paths. A study writes into one reports folder: ``results/<stage>.json``,
``figures/<stage>_<what>.png``, ``notebooks/<stage>.ipynb|html`` and ``REPORT.md|html``.
Relative paths given to a notebook are taken from the repository root
(:func:`project_path`), so a notebook behaves the same under papermill and Jupyter.

Format. Every stage writes one results file through :func:`write_result`, which stamps it
and validates it before anything reaches the disk (:data:`RESULTS_FORMAT`, version 1):

========================  ============================================================
``format``                int, the version of this format
``notebook``              str, the stage name (the file's stem)
``status``                str: ``"ok"``, or why the stage produced no numbers
``synthetic``             bool, whether the data were the synthetic demo set
(the payload)             the stage's own numbers, any JSON keys not listed here
``figures``               list of ``figures/<stage>_<what>.png`` paths
``study``                 {profile, data, ferplus, seed, command}: how to re-make it
``data``                  the data's provenance (``Dataset.provenance()``)
``created_utc`` ...       ``git``, ``environment``, ``hardware``: provenance.stamp()
``summary_table``         optional list of row dicts, rendered by the report as is
``summary_tables``        optional {title: list of row dicts}
========================  ============================================================

Non-finite floats become ``null`` (strict JSON). Files from before the format existed (no
``format`` key, e.g. the committed real-data study) are read as they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_study.errors import ResultsError
from fer_study.provenance import REPO_ROOT, finite, json_default, stamp, write_json

RESULTS_FORMAT = 1
RESULTS, FIGURES, NOTEBOOKS = "results", "figures", "notebooks"
MANIFEST = "study_manifest.json"
BEST_MODELS = "best_models"  # written by `python -m fer_study leaderboard`
NOTEBOOK_DIR = REPO_ROOT / "notebooks"

# --------------------------------------------------------------------------- banner and goals

SYNTHETIC_BANNER = "SYNTHETIC DEMO DATA — not FER2013 results"
HUMAN_ACCURACY = 0.65  # Goodfellow et al. 2013: human accuracy on FER2013 ~65 +/- 5 %
HUMAN_SOURCE = ("Goodfellow et al. 2013, 'Challenges in representation learning' "
                "(human accuracy ~65 +/- 5 %)")
# The study's goals for its best model, and the best published single network it is
# measured against (references, not results of this repository).
GOAL_ACCURACY = 0.70
GOAL_MACRO_F1 = 0.65
GOAL_DISGUST_RECALL = 0.40
SOTA_SINGLE = 0.7328
SOTA_SOURCE = ("Khaireddin & Chen 2021, 'Facial Emotion Recognition: State of the Art "
               "Performance on FER2013'")

# --------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class StageSpec:
    """One study notebook: its report title, the notebooks whose results it reads, and the
    parameter that makes it one stage per value (``backbone`` for notebook 03)."""

    notebook: str
    title: str
    reads: tuple[str, ...] = ()
    repeat: str | None = None


DATA_EXPLORATION = "01_data_exploration"
BASELINE = "02_baseline_cnn"
TRANSFER = "03_transfer_learning"
COMPARISON = "04_model_comparison"
GRADCAM = "05_gradcam"
ROBUSTNESS = "06_robustness_and_optimisation"
REALTIME = "07_realtime_deployment"
STAGES: dict[str, StageSpec] = {s.notebook: s for s in (
    StageSpec(DATA_EXPLORATION, "Data"),
    StageSpec(BASELINE, "Baseline CNN"),
    StageSpec(TRANSFER, "Transfer learning", repeat="backbone"),
    StageSpec(COMPARISON, "Model comparison", reads=(BASELINE, TRANSFER)),
    StageSpec(GRADCAM, "Grad-CAM: where the models look", reads=(COMPARISON,)),
    StageSpec(ROBUSTNESS, "Robustness, calibration and optimisation of the shipped model",
              reads=(COMPARISON,)),
    StageSpec(REALTIME, "Real-time deployment", reads=(COMPARISON,)),
)}
BASELINE_MODEL = "baseline_cnn"  # the model notebook 02 trains


def stage_name(notebook: str, instance: str | None = None) -> str:
    """The stage (and results file stem) of a notebook, or of one instance of a repeated one."""
    return notebook if instance is None else f"{notebook}__{instance}"


def notebook_of(stage: str) -> str:
    """The notebook a stage runs: ``03_transfer_learning__vgg16`` -> ``03_transfer_learning``."""
    return stage.partition("__")[0]


def run_stage(model: str) -> str:
    """The stage whose results hold the training run of `model`: 02 for the baseline, else 03."""
    return BASELINE if model == BASELINE_MODEL else stage_name(TRANSFER, model)


def is_study_stage(name: str) -> bool:
    """Whether a results file stem belongs to a numbered study notebook."""
    return len(name) > 3 and name[:2].isdigit() and name[2] == "_"


def section_title(name: str, res: Mapping) -> str:
    spec = STAGES.get(notebook_of(name))
    return spec.title if spec else res.get("title") or name.replace("_", " ")


# --------------------------------------------------------------------------- paths


def project_path(path: str | os.PathLike) -> Path:
    """A relative path taken from the repository root when run from `notebooks/` (Jupyter
    starts kernels in the notebook's folder, papermill in the caller's), else from the cwd."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    base = Path.cwd()
    if base.name == "notebooks" and (base.parent / "fer_study").is_dir():
        base = base.parent
    return base / p


def data_path(data: str) -> str:
    """The `data` parameter with a relative file path resolved like :func:`project_path`."""
    return data if str(data) == "synthetic" else str(project_path(data))


def results_path(reports_dir: str | os.PathLike, stage: str) -> Path:
    return project_path(reports_dir) / RESULTS / f"{stage}.json"


def figure_path(reports_dir: str | os.PathLike, stage: str, what: str) -> Path:
    return project_path(reports_dir) / FIGURES / f"{stage}_{what}.png"


def make_command(profile: str, data: str | None, ferplus: str | None = None,
                 only: str | None = None) -> str:
    """The command that (re)makes a study, or one stage of it."""
    cmd = f"make study PROFILE={profile}"
    if data and str(data) != "synthetic":
        cmd += f" DATA={data}"
    if ferplus:
        cmd += f" FERPLUS={ferplus}"
    if only:
        cmd += f' ARGS="--only {only} --force"'
    return cmd


def is_synthetic(obj: Any) -> bool:
    """True for a synthetic Dataset, its provenance dict, or a results dict made from it."""
    if hasattr(obj, "is_synthetic"):
        return bool(obj.is_synthetic)
    if isinstance(obj, Mapping):
        if "synthetic" in obj:
            return bool(obj["synthetic"])
        if isinstance(obj.get("data"), Mapping):
            return bool(obj["data"].get("synthetic"))
    return False


def describe_data(prov: Mapping | None) -> str:
    """A short, comparable name for the data a results file was computed on."""
    if not prov:
        return "unknown"
    if prov.get("synthetic"):
        sizes = prov.get("sizes") or prov.get("split_sizes") or {}
        return (f"synthetic (seed {prov.get('seed')}, sizes "
                f"{'/'.join(str(v) for v in sizes.values())})")
    digest = prov.get("sha256") or prov.get("pixels_sha256") or "?"
    return f"{prov.get('dataset', '?')} {prov.get('format', '')} sha256 {str(digest)[:12]}"


# --------------------------------------------------------------------------- format

# Top-level keys of every stage results file and their types (validated on write).
REQUIRED_KEYS: dict[str, type | tuple[type, ...]] = {
    "format": int, "notebook": str, "status": str, "synthetic": bool, "figures": list,
    "study": dict, "data": dict, "created_utc": str, "git": dict, "environment": dict,
    "hardware": dict,
}
STUDY_KEYS = ("profile", "data", "ferplus", "seed", "command")
# Bookkeeping rather than findings: the report's generic sections leave these keys out.
META_KEYS = frozenset({"format", "notebook", "status", "study", "data", "created_utc", "git",
                       "environment", "hardware", "figures", "summary_table", "summary_tables",
                       "reason", "title"})


def study_block(profile: str, data: str, ferplus: str | None, seed: int) -> dict:
    """The ``study`` entry of a results file: what made it and the command that re-makes it."""
    return {"profile": profile, "data": str(data), "ferplus": ferplus, "seed": seed,
            "command": make_command(profile, data, ferplus)}


def _rows_problem(rows: Any, where: str) -> str | None:
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        return f"{where} must be a list of row objects"
    return None


def validate_result(res: Mapping) -> None:
    """Raise ResultsError listing every way `res` departs from the results format."""
    problems = []
    for key, kind in REQUIRED_KEYS.items():
        if key not in res:
            problems.append(f"missing {key!r}")
        elif not isinstance(res[key], kind) or (kind is int and isinstance(res[key], bool)):
            problems.append(f"{key!r} must be {getattr(kind, '__name__', kind)}, got "
                            f"{type(res[key]).__name__}")
    if res.get("format") not in (None, RESULTS_FORMAT):
        problems.append(f"format {res.get('format')!r} is not {RESULTS_FORMAT}")
    stage = res.get("notebook")
    for f in res.get("figures") or []:
        if not (isinstance(f, str) and f.startswith(f"{FIGURES}/{stage}_")):
            problems.append(f"figure {f!r} is not under {FIGURES}/{stage}_*")
    study = res.get("study")
    if isinstance(study, Mapping) and set(study) != set(STUDY_KEYS):
        problems.append(f"'study' must have exactly the keys {list(STUDY_KEYS)}")
    if "summary_table" in res:
        problems.append(_rows_problem(res["summary_table"], "'summary_table'"))
    tables = res.get("summary_tables", {})
    if not isinstance(tables, Mapping):
        problems.append("'summary_tables' must map titles to row lists")
    else:
        problems += [_rows_problem(v, f"summary table {k!r}") for k, v in tables.items()]
    try:
        json.dumps(res, allow_nan=False)
    except (TypeError, ValueError) as e:
        problems.append(f"not strict JSON: {e}")
    problems = [p for p in problems if p]
    if problems:
        raise ResultsError(f"results of stage {stage!r} do not follow the results format "
                           f"(version {RESULTS_FORMAT}): " + "; ".join(problems))


def write_result(reports_dir: str | os.PathLike, stage: str, payload: Mapping, data: Any,
                 study: Mapping, figures: Sequence[str] = (), status: str = "ok") -> Path:
    """Write ``results/<stage>.json``: the payload with the format's bookkeeping around it
    (status, figures, study, data provenance, stamp), validated before it is written.
    `data` is a Dataset or its provenance dict."""
    prov = data.provenance() if hasattr(data, "provenance") else dict(data)
    clash = sorted(set(payload) & (set(REQUIRED_KEYS) - {"synthetic"}))
    if clash:
        raise ResultsError(f"stage {stage!r}: payload keys {clash} are reserved by the format")
    out = {"format": RESULTS_FORMAT, "notebook": stage, "status": status,
           "synthetic": is_synthetic(prov), **payload, "figures": list(figures),
           "study": dict(study), "data": prov, **stamp()}
    out = finite(json.loads(json.dumps(out, default=json_default)))
    validate_result(out)
    return write_json(results_path(reports_dir, stage), out)


def records(rows: Any, digits: int = 3, ints: Sequence[str] = ("n", "frames")) -> list[dict]:
    """A DataFrame or list of dicts as JSON-ready rows: floats rounded, NaN -> None, numpy
    scalars -> Python, and the `ints` columns as integers (pandas turns them into floats as
    soon as one row lacks a value)."""
    if hasattr(rows, "to_dict"):
        rows = rows.to_dict("records")
    out = []
    for row in rows:
        clean = {}
        for k, v in row.items():
            v = v.item() if isinstance(v, np.generic) else v
            if isinstance(v, float):
                v = None if not np.isfinite(v) else (int(v) if k in ints else round(v, digits))
            clean[k] = v
        out.append(clean)
    return out


def read_result(path: str | os.PathLike) -> dict:
    """One results file. A file of a newer format than this package reads is refused; one
    of this format is validated; older files (no ``format`` key) are read as they are."""
    p = Path(path)
    try:
        res = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ResultsError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(res, dict):
        raise ResultsError(f"{p}: a results file holds one JSON object")
    version = res.get("format")
    if version is not None and is_study_stage(p.stem):
        if not isinstance(version, int) or version > RESULTS_FORMAT:
            raise ResultsError(f"{p}: results format {version!r} is newer than this package "
                               f"reads ({RESULTS_FORMAT}); update fer-study")
        validate_result(res)
    return res


def read_results(reports_dir: str | os.PathLike) -> dict[str, dict]:
    """Every results file by name (the manifest excluded), sorted by name."""
    d = project_path(reports_dir) / RESULTS
    return {f.stem: read_result(f) for f in (sorted(d.glob("*.json")) if d.is_dir() else [])
            if f.name != MANIFEST}


def split_names(metrics: Mapping) -> tuple[str, str, str | None]:
    """(fit, select, report) split names of a training run's metrics.json."""
    p = metrics["protocol"]
    return p["fit"], p["select"], p["report"]

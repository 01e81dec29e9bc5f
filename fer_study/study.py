"""The study runner: `python -m fer_study study` executes the notebooks with papermill.

Stages are the notebooks in ``notebooks/`` (03 once per transfer backbone), run in name order
with the parameters of a *profile* (plain data, :data:`PROFILES`), then ``-p`` overrides.
Each executed notebook goes to ``{reports_dir}/notebooks/<stage>.ipynb`` (+ ``.html``) and
writes ``{reports_dir}/results/<stage>.json``; at the end the report is rebuilt from those.

Incremental: ``{reports_dir}/results/study_manifest.json`` records, per stage, a fingerprint
of the notebook file, its injected parameters, the data's identity (file sha256, or
'synthetic' + sizes + seed) and the results files it reads (04 reads 02/03, 05-07 read 04).
A stage whose fingerprint is unchanged since it last succeeded is skipped; an interrupted run
re-runs only unfinished stages, and training resumes from its last epoch checkpoint
(:func:`fer_study.train.train`). ``--force`` re-runs the selected stages; use it after
changing the ``fer_study`` package itself, whose code is not part of the fingerprint.

This module also holds small helpers the notebooks share (:func:`run_training`,
:func:`measure_latency`); papermill and nbconvert are imported only when the runner runs.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_study.provenance import REPO_ROOT, write_json
from fer_study.report import MANIFEST, NOTEBOOKS, RESULTS, build_report
from fer_study.run_options import (
    DISTRIBUTIONS,
    add_tracking_arguments,
    distribution_settings,
    settings_from_env,
    settings_to_env,
)

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
COMMON_PARAMS = ("profile", "data", "ferplus", "synthetic_sizes", "runs_dir", "reports_dir",
                 "seed")
# Which earlier stages' results a notebook reads (stage-name prefixes): when those results
# change, the notebook is re-run even if its own parameters did not change.
READS = {"04_model_comparison": ("02_", "03_"), "05_gradcam": ("04_",),
         "06_robustness_and_optimisation": ("04_",), "07_realtime_deployment": ("04_",)}
TRANSFER_BACKBONES = ("vggface_vgg16", "vgg16", "resnet50", "mobilenetv2", "efficientnet_lite0",
                      "efficientnet_lite0_scratch")

# --------------------------------------------------------------------------- profiles
#
# A profile is data: parameters for every notebook that declares them ("params"), per
# notebook ("notebooks", whose keys are also the stage list), and per repeated instance
# ("repeat": notebook -> (parameter, {value: extra params})).
#
# Budgets. Costs measured as CPU time per image on an AMD EPYC core with TF 2.21 (frozen
# backbone ~ one forward pass): baseline_cnn 13 ms/train step; VGG16 at 64 px 41 ms frozen,
# 110 ms fine-tuning its last 8 layers; ResNet50 at 96 px 30 / 80 ms (~0.44x that at 64 px);
# MobileNetV2 at 96 px 8 / 11 ms; EfficientNet-Lite0 at 112 px 12 / 18 ms (~0.73x at 96 px),
# 55 ms when trained from scratch. Wall time on 2 idle cores ~ CPU time / 1.8.
# * demo: the synthetic set at 1000/250/250 images; baseline_cnn 3 epochs at 48 px; the
#   ImageNet/VGGFace backbones at 48 px for 2 epochs (offline they report "weights
#   unavailable" and cost only a kernel start); EfficientNet-Lite0 and its scratch twin at
#   48 px, 2 epochs on the same 600 Training images. Graph tracing (~50 s per EfficientNet
#   stage) and kernel starts (~9 s per notebook) cost more than the training itself. A fresh
#   clone's `make study` (set-up included) measured 9 min 22 s and 9 min 30 s on 2 idle
#   cores; README.
# * cpu: real FER2013, about 2 h on 2 cores (~12,000 CPU-s). baseline_cnn: all 28,709
#   Training images, 10 epochs (~4,100 CPU-s, a third of the budget). Backbones on a
#   stratified-random Training subsample, selection on the full PublicTest, no test-time
#   flip: VGG16 and VGG16-face at 64 px, 3,000 images, 1 frozen + 2 fine-tuning epochs of
#   their last 8 layers (~1,700 CPU-s each); ResNet50 at 64 px, 6,000 images, 1 + 2 epochs
#   (~800); MobileNetV2 at 96 px, 8,000 images, 2 + 4 epochs (~750); EfficientNet-Lite0 and
#   its scratch twin at 96 px, 8,000 images, 6 epochs each (the pretrained one 2 frozen + 4
#   fine-tuning; ~850 and ~2,200 CPU-s): equal data and epochs, so pretrained vs scratch is
#   a fair comparison. Needs --data path/to/fer2013.csv.
# * full: the capstone's GPU protocol: all Training images, backbones at 224x224, a frozen
#   warm-up then fine-tuning of all layers, 30 epochs with early stopping; baseline 60 epochs.
#   On N GPUs: `study --devices all` (make study ARGS="--devices all") trains each stage
#   data-parallel with these batch sizes as global batches, split across the GPUs, at the same
#   learning rate: the same protocol, faster (linear scaling is off by default; a stage's
#   run_config may set scale_by_replicas). Several machines: each training as
#   `python -m fer_study train ... --distribution multi_worker` with TF_CONFIG (README, Scale
#   out); the study itself runs on one machine.
# * smoke: a pipeline check in a few minutes (tests, CI): numbers are meaningless.

_DEMO_SIZES = {"Training": 1000, "PublicTest": 250, "PrivateTest": 250}
PROFILES: dict[str, dict[str, Any]] = {
    "demo": {
        "description": "synthetic demo data, small models and few epochs",
        "budget": "<= 10 min on 2 CPU cores",
        "requires_real_data": False,
        "runs_dir": "runs/demo",
        "reports_dir": "reports/demo",  # never over the committed real-data study in reports/
        "params": {"synthetic_sizes": _DEMO_SIZES},
        "notebooks": {
            "01_data_exploration": {},
            "02_baseline_cnn": {"epochs": 3, "batch_size": 64, "max_train_samples": None},
            "03_transfer_learning": {"epochs": 2, "frozen_epochs": 1, "fine_tune": "top_n",
                                     "fine_tune_layers": 30, "batch_size": 64,
                                     "max_train_samples": None},
            "04_model_comparison": {"latency_calls": 30},
            "05_gradcam": {},
            "06_robustness_and_optimisation": {},
            "07_realtime_deployment": {},
        },
        "repeat": {"03_transfer_learning": ("backbone", {
            "vggface_vgg16": {"backbone_size": 48}, "vgg16": {"backbone_size": 48},
            "resnet50": {"backbone_size": 48}, "mobilenetv2": {"backbone_size": 48},
            # equal (sub)samples for the pretrained/scratch pair keep their comparison fair
            "efficientnet_lite0": {"backbone_size": 48, "max_train_samples": 600},
            "efficientnet_lite0_scratch": {"backbone_size": 48, "max_train_samples": 600,
                                           "frozen_epochs": 0},
        })},
    },
    "cpu": {
        "description": "real FER2013 on a CPU: subsampled transfer runs at 64-96 px",
        "budget": "about 2 h on 2 CPU cores",
        "requires_real_data": True,
        "runs_dir": "runs/cpu",
        "params": {},
        "notebooks": {
            "01_data_exploration": {},
            "02_baseline_cnn": {"epochs": 10, "batch_size": 64, "max_train_samples": None},
            "03_transfer_learning": {"epochs": 3, "frozen_epochs": 1, "fine_tune": "top_n",
                                     "fine_tune_layers": 30, "batch_size": 64,
                                     "run_config": {"tta": "none"}},
            "04_model_comparison": {"latency_calls": 100},
            "05_gradcam": {},
            "06_robustness_and_optimisation": {},
            "07_realtime_deployment": {},
        },
        "repeat": {"03_transfer_learning": ("backbone", {
            "vggface_vgg16": {"backbone_size": 64, "max_train_samples": 3000,
                              "fine_tune_layers": 8},
            "vgg16": {"backbone_size": 64, "max_train_samples": 3000, "fine_tune_layers": 8},
            "resnet50": {"backbone_size": 64, "max_train_samples": 6000},
            "mobilenetv2": {"backbone_size": 96, "max_train_samples": 8000, "epochs": 6,
                            "frozen_epochs": 2},
            "efficientnet_lite0": {"backbone_size": 96, "max_train_samples": 8000, "epochs": 6,
                                   "frozen_epochs": 2},
            "efficientnet_lite0_scratch": {"backbone_size": 96, "max_train_samples": 8000,
                                           "epochs": 6, "frozen_epochs": 0},
        })},
    },
    "full": {
        "description": "the capstone GPU protocol: 224x224 backbones, fine-tune all layers",
        "budget": "hours on one GPU (days on a CPU)",
        "requires_real_data": True,
        "runs_dir": "runs/full",
        "params": {},
        "notebooks": {
            "01_data_exploration": {},
            "02_baseline_cnn": {"epochs": 60, "batch_size": 64, "max_train_samples": None,
                                "run_config": {"patience": 15}},
            "03_transfer_learning": {"epochs": 30, "frozen_epochs": 5, "fine_tune": "all",
                                     "fine_tune_layers": 0, "batch_size": 64,
                                     "max_train_samples": None,
                                     "run_config": {"patience": 8}},
            "04_model_comparison": {"latency_calls": 200},
            "05_gradcam": {},
            "06_robustness_and_optimisation": {},
            "07_realtime_deployment": {},
        },
        "repeat": {"03_transfer_learning": ("backbone", {
            b: {"backbone_size": 224, **({"frozen_epochs": 0} if b.endswith("_scratch") else {})}
            for b in TRANSFER_BACKBONES})},
    },
    "smoke": {
        "description": "pipeline check on a few hundred synthetic images; numbers meaningless",
        "budget": "a few minutes",
        "requires_real_data": False,
        "runs_dir": "runs/smoke",
        "reports_dir": "reports/smoke",
        "params": {"synthetic_sizes": {"Training": 140, "PublicTest": 70, "PrivateTest": 70}},
        "notebooks": {
            "01_data_exploration": {"examples_per_class": 4},
            "02_baseline_cnn": {"epochs": 1, "batch_size": 64, "max_train_samples": None,
                                "run_config": {"tta": "none"}},
            "03_transfer_learning": {"epochs": 2, "frozen_epochs": 1, "fine_tune": "top_n",
                                     "fine_tune_layers": 10, "batch_size": 64,
                                     "max_train_samples": None, "run_config": {"tta": "none"}},
            "04_model_comparison": {"latency_calls": 5, "latency_warmup": 2},
            "05_gradcam": {"examples_per_class": 1, "cross_check_images": 8},
            "06_robustness_and_optimisation": {"severities": [2, 5],
                                               "tflite_variants": ["float32", "dynamic"],
                                               "representative_images": 16},
            "07_realtime_deployment": {"demo_frames": 12, "sample_frames": 2},
        },
        "repeat": {"03_transfer_learning": ("backbone", {
            "efficientnet_lite0": {"backbone_size": 32},
            "mobilenetv2": {"backbone_size": 32},
        })},
    },
}


def get_profile(profile: str | Mapping) -> dict:
    """A profile by name (see :data:`PROFILES`), or a profile dict as given (tests)."""
    if isinstance(profile, Mapping):
        return {"name": "custom", "params": {}, "repeat": {}, **copy.deepcopy(dict(profile))}
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return {"name": profile, **copy.deepcopy(PROFILES[profile])}


# --------------------------------------------------------------------------- plan

@dataclass
class Stage:
    """One notebook execution."""

    name: str  # results / output notebook stem, e.g. 03_transfer_learning__vgg16
    notebook: Path
    params: dict  # injected by papermill
    reads: tuple[str, ...] = ()  # stage-name prefixes whose results it reads
    dropped: list[str] = field(default_factory=list)  # profile keys the notebook lacks


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The parameters a notebook declares in its `parameters` cell (name -> default repr)."""
    import papermill as pm

    return {k: v.get("default") for k, v in pm.inspect_notebook(str(path)).items()}


def parse_overrides(items: Sequence[str] | None) -> list[tuple[str | None, str, Any]]:
    """`-p KEY=VALUE` / `-p STAGE:KEY=VALUE` -> (stage selector or None, key, value).
    Values are JSON where they parse (numbers, true, null, lists, dicts), else strings."""
    out = []
    for item in items or []:
        head, sep, value = item.partition("=")
        if not sep or not head:
            raise ValueError(f"-p expects KEY=VALUE or STAGE:KEY=VALUE, got {item!r}")
        scope, _, key = head.rpartition(":")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.append((scope or None, key.strip(), parsed))
    return out


def _matches(stage: str, selector: str) -> bool:
    """`--only` / scoped `-p` selectors: a stage name, a prefix ('03', '03_transfer_learning')
    or a backbone ('vgg16' for 03_transfer_learning__vgg16)."""
    return (stage == selector or stage.startswith(selector + "_")
            or (selector.isdigit() and stage.startswith(selector))
            or stage.partition("__")[2] == selector)


def plan_study(profile: str | Mapping = "demo", data: str = "synthetic",
               ferplus: str | None = None, runs_dir: str | None = None,
               reports_dir: str | None = None, overrides: Sequence[str] | None = None,
               only: Sequence[str] | None = None,
               notebooks_dir: str | os.PathLike | None = None) -> list[Stage]:
    """The stages to run, each with its injected parameters, in order. `runs_dir` and
    `reports_dir` default to the profile's (the demo writes to reports/demo)."""
    prof = get_profile(profile)
    name = prof["name"]
    reports_dir = reports_dir or prof.get("reports_dir", "reports")
    if prof.get("requires_real_data") and str(data) == "synthetic":
        raise ValueError(
            f"profile {name!r} trains on the real FER2013 and refuses the synthetic demo set: "
            f"give --data path/to/fer2013.csv (make study PROFILE={name} "
            f"DATA=path/to/fer2013.csv; see data/README.md). For the synthetic demo use "
            f"--profile demo.")
    nb_dir = Path(notebooks_dir) if notebooks_dir else NOTEBOOK_DIR
    common = {"profile": name, "data": str(data), "ferplus": ferplus,
              "runs_dir": runs_dir or prof.get("runs_dir", f"runs/{name}"),
              "reports_dir": str(reports_dir), "seed": 0, **prof.get("params", {})}
    stages: list[Stage] = []
    for nb_name in sorted(prof["notebooks"]):
        param, values = prof.get("repeat", {}).get(nb_name, (None, {None: {}}))
        for value, extra in values.items():
            stage = nb_name if value is None else f"{nb_name}__{value}"
            params = {**common, **prof["notebooks"][nb_name], **extra}
            if param:
                params[param] = value
            if nb_name == "04_model_comparison" and "03_transfer_learning" in prof["notebooks"]:
                backbones = list(prof.get("repeat", {}).get("03_transfer_learning",
                                                            (None, {}))[1])
                params.setdefault("models", ["baseline_cnn", *backbones])
            stages.append(Stage(stage, nb_dir / f"{nb_name}.ipynb", params,
                                READS.get(nb_name, ())))
    all_names = [s.name for s in stages]
    if only:
        unknown = [o for o in only if not any(_matches(s, o) for s in all_names)]
        if unknown:
            raise ValueError(f"--only {' '.join(unknown)}: no such stage; stages are "
                             f"{', '.join(all_names)}")
        stages = [s for s in stages if any(_matches(s.name, o) for o in only)]
    missing = [str(s.notebook) for s in stages if not s.notebook.is_file()]
    if missing:
        raise FileNotFoundError(f"notebook(s) not found: {', '.join(missing)}")
    _apply_parameters(stages, parse_overrides(overrides))
    return stages


def _apply_parameters(stages: list[Stage], overrides: list[tuple[str | None, str, Any]]
                      ) -> None:
    """Keep the parameters each notebook declares; apply -p overrides where declared."""
    declared = {s.name: set(notebook_parameters(s.notebook)) for s in stages}
    for s in stages:
        s.dropped = sorted(k for k in s.params if k not in declared[s.name]
                           and k not in COMMON_PARAMS)
        s.params = {k: v for k, v in s.params.items() if k in declared[s.name]}
    for scope, key, value in overrides:
        hit = [s for s in stages if (scope is None or _matches(s.name, scope))
               and key in declared[s.name]]
        if not hit:
            where = f"stage(s) matching {scope!r}" if scope else "any selected notebook"
            raise ValueError(f"-p {key}=...: {where} has no parameter {key!r}")
        for s in hit:
            s.params[key] = value


# --------------------------------------------------------------------------- fingerprints

def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def data_identity(data: str, ferplus: str | None = None,
                  synthetic_sizes: Mapping | None = None, seed: int = 0) -> dict:
    """What identifies the data: a file's sha256, a folder listing's hash, or the synthetic
    set's sizes and seed. Raises DataError for a path that does not exist."""
    from fer_study.data import SYNTHETIC_DEFAULT_SIZES, DataError, sha256_file

    if str(data) == "synthetic":
        ident = {"kind": "synthetic", "sizes": {**SYNTHETIC_DEFAULT_SIZES,
                                                **(synthetic_sizes or {})}, "seed": seed}
    else:
        p = Path(data).expanduser()
        if p.is_file():
            ident = {"kind": "file", "name": p.name, "sha256": sha256_file(p)}
        elif p.is_dir():  # image folders: hashing every image is slow; a listing is enough
            h = hashlib.sha256()
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    st = f.stat()
                    h.update(f"{f.relative_to(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            ident = {"kind": "folder", "name": p.name, "listing_sha256": h.hexdigest()}
        else:
            raise DataError(f"data not found: {p}. Give 'synthetic', a fer2013.csv path or a "
                            f"folder with train/ and test/; see data/README.md.")
    if ferplus:
        fp = Path(ferplus).expanduser()
        if not fp.is_file():
            raise DataError(f"FER+ csv not found: {fp}")
        ident["ferplus_sha256"] = sha256_file(fp)
    return ident


def _file_sha(path: Path) -> str:
    return sha256_bytes(path.read_bytes()) if path.is_file() else "missing"


def notebook_sha256(path: Path) -> str:
    """Hash of what a notebook *does*: its cells' types, sources and tags, and its kernel.
    Outputs, execution counts, cell ids and other metadata (which Jupyter rewrites on every
    save) do not count, so opening and saving a notebook does not re-run its stage."""
    if not path.is_file():
        return "missing"
    nb = json.loads(path.read_text())
    cells = [[c.get("cell_type"), "".join(c.get("source", [])),
              sorted(c.get("metadata", {}).get("tags", []))] for c in nb.get("cells", [])]
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    return sha256_bytes(json.dumps([kernel, cells]).encode())


def stage_fingerprint(stage: Stage, data_id: Mapping, results_dir: Path) -> tuple[str, dict]:
    """Hash of everything a stage's outputs depend on; the parts, for the manifest."""
    parts = {"notebook_sha256": notebook_sha256(stage.notebook), "params": stage.params,
             "data": dict(data_id),
             "reads": {f.stem: _file_sha(f) for prefix in stage.reads
                       for f in sorted(results_dir.glob(f"{prefix}*.json"))}}
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return sha256_bytes(blob), parts


def _why_changed(old: Mapping | None, parts: Mapping) -> str:
    if not old:
        return "never run"
    if old.get("status") != "ok":
        return f"last run {old.get('status', '?')}"
    old_parts = old.get("parts", {})
    for key, label in (("notebook_sha256", "notebook changed"), ("data", "data changed"),
                       ("params", "parameters changed"), ("reads", "inputs changed")):
        if old_parts.get(key) != json.loads(json.dumps(parts[key], default=str)):
            return label
    return "changed"


# --------------------------------------------------------------------------- execution

@dataclass
class Outcome:
    stage: str
    status: str  # ok | skipped | failed | interrupted
    seconds: float = 0.0
    result_status: str | None = None
    message: str = ""


class StageFailed(RuntimeError):
    """A notebook cell raised; the message names the notebook, the cell and the error."""


def _load_manifest(path: Path) -> dict:
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            print(f"warning: unreadable manifest {path}; running every stage", file=sys.stderr)
    return {"stages": {}}


def render_html(ipynb: Path) -> Path:
    """An HTML copy of an executed notebook, next to it."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(ipynb), as_version=4)
    exporter = HTMLExporter()
    exporter.log.setLevel("ERROR")  # not one warning per figure about missing alt text
    body, _ = exporter.from_notebook_node(nb)
    out = ipynb.with_suffix(".html")
    out.write_text(body)
    return out


def _failure_message(stage: Stage, out_nb: Path, err: Exception) -> str:
    import papermill as pm

    lines = [f"stage {stage.name} failed",
             f"  notebook: {stage.notebook}",
             f"  executed copy (partial, saved for inspection): {out_nb}"]
    if isinstance(err, pm.PapermillExecutionError):
        # The executed copy has papermill's injected-parameters cell after `parameters`.
        src_index = err.cell_index - 1 if err.cell_index > _parameters_index(stage.notebook) \
            else err.cell_index
        lines += [f"  cell: index {src_index} of {stage.notebook.name} (index {err.cell_index} "
                  f"in the executed copy, execution count {err.exec_count})",
                  *_excerpt(err.source, _failing_line(err.traceback)),
                  f"  error: {err.ename}: {err.evalue}"]
    else:
        lines.append(f"  error: {type(err).__name__}: {err}")
    return "\n".join(lines)


def _failing_line(traceback: Sequence[str]) -> int | None:
    """The line of the cell that raised, from IPython's 'Cell In[n], line k' frame."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(traceback or []))
    m = re.search(r"Cell In\[\d+\], line (\d+)", text)
    return int(m.group(1)) if m else None


def _excerpt(source: str, line: int | None, context: int = 2) -> list[str]:
    src = source.splitlines()
    if line is None or not 1 <= line <= len(src):
        return ["  source:", *[f"    | {ln}" for ln in src[:6]]]
    lo, hi = max(1, line - context), min(len(src), line + context)
    return [f"  source (line {line} raised):",
            *[f"  {'>' if i == line else ' '} {i:3d} | {src[i - 1]}" for i in range(lo, hi + 1)]]


def _parameters_index(path: Path) -> int:
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    return next((i for i, c in enumerate(nb.cells)
                 if "parameters" in c.get("metadata", {}).get("tags", [])), -1)


def execute_stage(stage: Stage, out_nb: Path, cwd: Path, progress: bool = True,
                  log_output: bool = False) -> None:
    """Run one notebook with papermill; raise StageFailed naming the notebook and cell."""
    import papermill as pm

    out_nb.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(str(stage.notebook), str(out_nb), parameters=stage.params,
                            kernel_name="python3", progress_bar=progress,
                            log_output=log_output, cwd=str(cwd))
    except KeyboardInterrupt:
        raise
    except Exception as e:  # a cell error, a dead kernel, a kernel that would not start
        if out_nb.is_file():
            try:
                render_html(out_nb)
            except Exception:  # the partial notebook is what matters; its HTML is a bonus
                pass
        raise StageFailed(_failure_message(stage, out_nb, e)) from e


def run_study(profile: str | Mapping = "demo", data: str = "synthetic",
              ferplus: str | None = None, runs_dir: str | None = None,
              reports_dir: str | None = None, overrides: Sequence[str] | None = None,
              only: Sequence[str] | None = None, force: bool = False, dry_run: bool = False,
              notebooks_dir: str | os.PathLike | None = None, progress: bool = True,
              log_output: bool = False, report: bool = True, mlflow: str | None = None,
              mlflow_experiment: str | None = None) -> int:
    """Run (or resume) the study; returns a process exit status (0 ok, 1 a stage failed).
    With `mlflow` (a tracking URI or folder) each stage is logged as a run of one experiment
    (default fer-study-<profile>), see fer_study.tracking.log_stage."""
    prof = get_profile(profile)
    reports_dir = reports_dir or prof.get("reports_dir", "reports")
    stages = plan_study(profile, data, ferplus, runs_dir, reports_dir, overrides, only,
                        notebooks_dir)
    reports = Path(reports_dir).expanduser()
    results_dir = reports / RESULTS
    manifest_file = results_dir / MANIFEST
    manifest = _load_manifest(manifest_file)
    sizes = stages[0].params.get("synthetic_sizes") if stages else None
    seed = stages[0].params.get("seed", 0) if stages else 0
    data_id = data_identity(data, ferplus, sizes, seed)
    track = _stage_tracker(mlflow, mlflow_experiment or f"fer-study-{prof['name']}",
                           prof["name"], data_id)
    print(f"fer-study: profile {prof['name']} ({prof.get('description', '')}; budget "
          f"{prof.get('budget', '?')}), data {data_id['kind']} "
          f"{data_id.get('sha256', data_id.get('listing_sha256', ''))[:12]}".rstrip())
    print(f"  reports -> {reports}   runs -> {stages[0].params.get('runs_dir') if stages else '-'}"
          f"   {len(stages)} stage(s)")
    if prof["name"] == "full" and not shutil.which("nvidia-smi"):
        print("  warning: the full profile is a GPU protocol; no GPU was found, so expect days")
    for s in stages:
        if s.dropped:
            print(f"  note: {s.notebook.name} declares no parameter(s) {', '.join(s.dropped)}; "
                  f"the profile's values for them are not passed")

    if not dry_run:
        # The report leaves out results files of stages outside the plan (e.g. a backbone
        # that an earlier profile ran): a partial (--only) run keeps the earlier plan.
        plan = [s.name for s in stages]
        manifest["plan"] = sorted(set(manifest.get("plan", [])) | set(plan)) if only else plan
    outcomes: list[Outcome] = []
    t_all = time.perf_counter()
    will_run: set[str] = set()
    for i, stage in enumerate(stages, 1):
        tag = f"[{i}/{len(stages)}] {stage.name}"
        out_nb = reports / NOTEBOOKS / f"{stage.name}.ipynb"
        result_file = results_dir / f"{stage.name}.json"
        fp, parts = stage_fingerprint(stage, data_id, results_dir)
        old = manifest["stages"].get(stage.name)
        upstream_runs = any(any(r.startswith(p) for p in stage.reads) for r in will_run)
        fresh = (old and old.get("status") == "ok" and old.get("fingerprint") == fp
                 and out_nb.is_file() and result_file.is_file())
        if dry_run:
            if fresh and not force and not upstream_runs:
                action = "skip (unchanged)"
            else:
                will_run.add(stage.name)
                action = "run (" + ("forced" if force else "upstream will re-run"
                                    if fresh else _why_changed(old, parts)) + ")"
            print(f"{tag:<48} {action}")
            print(f"    {json.dumps(stage.params, default=str)}")
            continue
        if fresh and not force:
            if not out_nb.with_suffix(".html").is_file():
                render_html(out_nb)
            rs = _result_status(result_file)
            track(stage, old, result_file, out_nb)
            outcomes.append(Outcome(stage.name, "skipped", 0.0, rs))
            print(f"{tag:<48} skipped (unchanged; last: {rs})", flush=True)
            continue
        reason = "forced" if force and fresh else _why_changed(old, parts)
        print(f"{tag:<48} running ({reason}) ...", flush=True)
        entry = {"fingerprint": fp, "parts": parts, "status": "running",
                 "started_utc": _utc(), "output": str(out_nb)}
        manifest["stages"][stage.name] = entry
        manifest.update(profile=prof["name"], data=data_id)
        write_json(manifest_file, manifest)
        t0, started = time.perf_counter(), time.time()
        try:
            execute_stage(stage, out_nb, Path.cwd(), progress=progress, log_output=log_output)
            render_html(out_nb)
            if not result_file.is_file() or result_file.stat().st_mtime < started - 1:
                raise StageFailed(f"stage {stage.name} failed\n  notebook: {stage.notebook}\n"
                                  f"  error: it finished without writing {result_file}")
        except KeyboardInterrupt:
            entry.update(status="interrupted", seconds=round(time.perf_counter() - t0, 1))
            write_json(manifest_file, manifest)
            print(f"\n{tag} interrupted; run the same command again to resume", flush=True)
            return 130
        except StageFailed as e:
            dt = time.perf_counter() - t0
            entry.update(status="failed", seconds=round(dt, 1), error=str(e))
            write_json(manifest_file, manifest)
            track(stage, entry, result_file, out_nb)
            print(f"{tag:<48} FAILED after {dt:.1f}s\n{e}", file=sys.stderr, flush=True)
            print("the report was not rebuilt; fix the error and run the same command again "
                  "(finished stages are skipped)", file=sys.stderr)
            return 1
        dt = time.perf_counter() - t0
        rs = _result_status(result_file)
        entry.update(status="ok", seconds=round(dt, 1), finished_utc=_utc(), result_status=rs,
                     fingerprint=stage_fingerprint(stage, data_id, results_dir)[0])
        write_json(manifest_file, manifest)
        track(stage, entry, result_file, out_nb)
        outcomes.append(Outcome(stage.name, "ok", dt, rs))
        print(f"{tag:<48} done in {dt:.1f}s ({rs})", flush=True)
    if dry_run:
        return 0
    total = time.perf_counter() - t_all
    ran = sum(o.status == "ok" for o in outcomes)
    print(f"study: {ran} stage(s) run, {len(outcomes) - ran} skipped, {total:.1f}s")
    if report:
        # The README's results section is regenerated only from the repository's own
        # reports/ folder, so a study written elsewhere (tests, experiments) leaves it alone.
        readme = REPO_ROOT / "README.md"
        own = reports.resolve() == (REPO_ROOT / "reports").resolve() and readme.is_file()
        path = build_report(reports, readme=readme if own else None)
        print(f"report: {path} and {path.with_suffix('.html')}")
    return 0


def _stage_tracker(target: str | None, experiment: str, profile: str, data_id: Mapping):
    """track(stage, manifest entry, results file, executed notebook): logs the stage to
    MLflow (once per fingerprint and status); does nothing without a target."""
    if not target:
        return lambda *a: None
    from fer_study.run_options import require_mlflow
    from fer_study.tracking import flatten, log_stage

    require_mlflow()  # before the first stage runs, not after it

    def track(stage: Stage, entry: Mapping, result_file: Path, out_nb: Path) -> None:
        log_stage(target, experiment, stage.name, entry["status"], entry["fingerprint"],
                  stage.params, tags={"fer_study.profile": profile,
                                      **flatten(dict(data_id), "data.")},
                  seconds=entry.get("seconds"), results=result_file,
                  files=(out_nb.with_suffix(".html"),), base=Path.cwd())
    return track


def _result_status(path: Path) -> str:
    try:
        return str(json.loads(path.read_text()).get("status", "ok"))
    except (OSError, json.JSONDecodeError):
        return "unreadable results"


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --------------------------------------------------------------------------- CLI

def _cmd_study(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # inherited by the kernels
    os.environ.update(settings_to_env(distribution_settings(args)))  # training stages
    return run_study(args.profile, data=args.data, ferplus=args.ferplus,
                     runs_dir=args.runs_dir, reports_dir=args.reports_dir,
                     overrides=args.param, only=args.only, force=args.force,
                     dry_run=args.dry_run, log_output=args.log_output, mlflow=args.mlflow,
                     mlflow_experiment=args.mlflow_experiment)


def add_study_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    s = subparsers.add_parser(
        "study", help="run the whole study (notebooks 01-07) and build the report",
        description="Execute the study notebooks with papermill (incremental: unchanged "
                    "stages are skipped), render them to HTML and build REPORT.md in the "
                    "reports folder. "
                    "Profiles: " + "; ".join(f"{k}: {v['description']} ({v['budget']})"
                                             for k, v in PROFILES.items()))
    s.add_argument("--profile", default="demo", choices=list(PROFILES))
    s.add_argument("--data", default="synthetic",
                   help="'synthetic' (default), a fer2013.csv path or a Kaggle folder root")
    s.add_argument("--ferplus", help="fer2013new.csv (FER+ votes), for the label analysis")
    s.add_argument("--only", nargs="+", metavar="STAGE",
                   help="run only these stages: names, number prefixes (03) or backbones")
    s.add_argument("--force", action="store_true", help="re-run selected stages even if "
                   "unchanged")
    s.add_argument("-p", dest="param", action="append", metavar="[STAGE:]KEY=VALUE",
                   help="set a notebook parameter (JSON value) in every notebook that has "
                        "it, or only in matching stages; repeatable")
    s.add_argument("--reports-dir", default=None,
                   help="default: reports/ for cpu and full, reports/<profile>/ for demo and "
                        "smoke (so the demo never overwrites the committed real-data study)")
    s.add_argument("--runs-dir", help="training run folders (default runs/<profile>)")
    s.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    s.add_argument("--log-output", action="store_true", help="stream notebook output")
    s.add_argument("--distribution", choices=DISTRIBUTIONS,
                   help="data-parallel training for the training stages (see `train -h`)")
    s.add_argument("--devices", metavar="SPEC", help="devices of the training stages: 'all' "
                   "(every GPU), N, 'GPU:0,GPU:1'; implies --distribution auto")
    s.set_defaults(scale_by_replicas=False)  # a what, not a where: set it per run_config
    add_tracking_arguments(s, experiment=None)
    s.set_defaults(func=_cmd_study)
    return s


# --------------------------------------------------------------------------- notebook helpers

def run_training(cfg: Any, dataset: Any = None) -> Any:
    """`train(cfg)`, starting afresh when the run folder holds a run with another config (a
    changed profile or -p value) and resuming an unfinished run with the same config. A run
    that differs only in where its folder was reached from (or its verbosity) is kept."""
    from dataclasses import replace

    from fer_study.train import EXECUTION_FIELDS, RunConfig, train

    cfg = replace(cfg, **settings_from_env())  # `study --devices ...`
    cfg_file = Path(cfg.run_dir) / "config.json"
    overwrite = False
    if cfg_file.is_file():
        # fields added to RunConfig since the run started read as their defaults (as train())
        old = {**RunConfig().to_json(), **json.loads(cfg_file.read_text())}
        new = json.loads(json.dumps(cfg.to_json()))
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if set(changed) <= {"run_dir", "verbose", *EXECUTION_FIELDS}:
            if changed:
                write_json(cfg_file, new)
        else:
            print(f"{cfg.run_dir}: the previous run had another config ({', '.join(changed)}); "
                  f"starting a fresh run")
            overwrite = True
    return train(cfg, dataset=dataset, overwrite=overwrite)


def load_run_model(run_dir: str | os.PathLike, name: str = "best.keras") -> Any:
    """A run folder's saved model, for inference (custom layers registered first)."""
    import keras

    import fer_study.models  # noqa: F401  (registers GrayToRGB, BackbonePreprocess)

    return keras.saving.load_model(Path(run_dir) / name, compile=False)


def measure_latency(model: Any, calls: int = 50, warmup: int = 5, seed: int = 0) -> dict:
    """Batch-1 CPU latency of a Keras model: the median (and p90) over `calls` calls of a
    compiled forward pass (tf.function) after `warmup` calls, on random face-sized inputs.
    model.predict is avoided on purpose: it adds per-call dataset and callback overhead."""
    import keras
    import numpy as np

    s = int(model.input_shape[1])
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(1, s, s, 1)).astype("float32")
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
        xt = tf.constant(x)

        def call() -> None:
            fn(xt).numpy()
    else:  # other backends: eager call, still without predict()'s overhead
        def call() -> None:
            np.asarray(model(x, training=False))
    for _ in range(max(1, warmup)):
        call()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    t = np.asarray(times)
    return {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)),
            "calls": calls, "warmup": warmup, "input": [1, s, s, 1],
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
